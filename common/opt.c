/*
 * Go flag-style command lines.  See opt.h.
 */

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "opt.h"

/* The table entry spelt name[0..n), or NULL. */
static const struct opt_def *
opt_find(const struct opt_parser *p, const char *name, size_t n)
{
	size_t	i;

	for (i = 0; i < p->ndefs; i++)
		if (strlen(p->defs[i].name) == n &&
		    strncmp(p->defs[i].name, name, n) == 0)
			return &p->defs[i];
	return NULL;
}

/*
 * One option at argv[*a], its value possibly the next argument (then *a
 * moves past it).  Returns what the callback does, or -1 with err.
 */
static int
opt_one(const struct opt_parser *p, int argc, char **argv, int *a,
    char *err)
{
	const struct opt_def *def;
	const char	*arg = argv[*a], *name, *eq, *val;
	char		 nbuf[64];
	size_t		 nlen;

	name = arg + (arg[1] == '-' ? 2 : 1);
	if ((p->flags & OPT_GO_SYNTAX) &&
	    (*name == '\0' || *name == '-' || *name == '=')) {
		err_set(err, "bad option syntax: %s", arg);
		return -1;
	}
	eq = strchr(name, '=');
	nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
	if ((def = opt_find(p, name, nlen)) == NULL) {
		snprintf(nbuf, sizeof(nbuf), "%.*s", (int)nlen, name);
		err_set(err, "unknown option -%s", nbuf);
		return -1;
	}
	if (eq != NULL)
		val = eq + 1;
	else if (def->flag)
		val = NULL;
	else if (*a + 1 < argc && argv[*a + 1] != NULL)
		val = argv[++*a];
	else {
		err_set(err, "option -%s needs a value", def->name);
		return -1;
	}
	return p->option(p->arg, def, val, err);
}

int
opt_parse(const struct opt_parser *p, int argc, char **argv, char *err)
{
	const char	*arg;
	int		 a, only_pos = 0, rc;

	for (a = 1; a < argc && argv != NULL && argv[a] != NULL; a++) {
		arg = argv[a];
		if (only_pos || arg[0] != '-' || arg[1] == '\0') {
			if (p->positional(p->arg, arg, err) == -1)
				return -1;
			continue;
		}
		if ((p->flags & OPT_GO_SYNTAX) && strcmp(arg, "--") == 0) {
			only_pos = 1;
			continue;
		}
		if ((rc = opt_one(p, argc, argv, &a, err)) != 0)
			return rc;
	}
	return 0;
}
