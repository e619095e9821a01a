/*
 * libFuzzer target: command lines.  The input is argv, NUL-separated; it
 * goes through opt_parse() with a small table (every value handed to a
 * callback must be an argument or a part of one) and through tunneld's
 * cli_parse().  Options that read files are left out: a fuzzer must not
 * open whatever path it makes up.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "err.h"
#include "opt.h"

#define FZ_ARGS	32

struct fz {
	char	**argv;
	int	  argc;
	int	  npos;
};

static const struct opt_def fz_defs[] = {
	{ "a", 1, 0 }, { "bb", 2, 1 }, { "stop", 3, 1 }, { "", 4, 0 },
};

/* True if p points into one of the arguments. */
static int
fz_inside(const struct fz *f, const char *p)
{
	int	i;

	for (i = 0; i < f->argc; i++)
		if (p >= f->argv[i] && p <= f->argv[i] + strlen(f->argv[i]))
			return 1;
	return 0;
}

static int
fz_option(void *arg, const struct opt_def *def, const char *val, char *err)
{
	struct fz	*f = arg;

	if ((val != NULL && !fz_inside(f, val)) ||
	    (val == NULL && !def->flag))
		abort();
	return def->id == 3;
}

static int
fz_positional(void *arg, const char *s, char *err)
{
	struct fz	*f = arg;

	if (!fz_inside(f, s))
		abort();
	return ++f->npos > 20 ? -1 : 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cli_opts	 o;
	struct opt_parser p = { fz_defs, 4, 0, fz_option, fz_positional, NULL };
	struct fz	 f;
	char		*buf, *argv[FZ_ARGS + 1], out[64], err[ERR_LEN];
	size_t		 i;
	int		 argc = 1, rc, filed = 0;

	if ((buf = malloc(size + 1)) == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	argv[0] = "tunneld";
	for (i = 0; i < size && argc < FZ_ARGS; i += strlen(buf + i) + 1) {
		filed |= strstr(buf + i, "ile") != NULL;
		argv[argc++] = buf + i;
	}
	argv[argc] = NULL;
	memset(&f, 0, sizeof(f));
	f.argv = argv;
	f.argc = argc;
	p.arg = &f;
	p.flags = size > 0 && (data[0] & 1) ? OPT_GO_SYNTAX : 0;
	rc = opt_parse(&p, argc, argv, err);
	if (rc < -1 || rc > 1)
		abort();
	if (!filed) {
		rc = cli_parse(argc, argv, &o, out, sizeof(out), err);
		if (rc == 0)
			cli_free(&o);
		else if (rc != 1 && rc != -1)
			abort();
	}
	free(buf);
	return 0;
}
