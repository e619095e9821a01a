#ifndef OPT_H
#define OPT_H

/*
 * Table-driven command lines in Go's flag style, shared by tunneld and the
 * dispatcher: options written -name value, --name value or -name=value
 * (a boolean takes a value only after '='), interleaved with positionals
 * in any order.  Each program keeps its own table and callbacks; this
 * module only walks argv.
 */

#include <stddef.h>

struct opt_def {
	const char	*name;		/* as typed after the dashes */
	int		 id;		/* the program's own number */
	int		 flag;		/* boolean: no separate value */
};

/* opt_parser.flags */
#define OPT_GO_SYNTAX	0x1	/* "--" ends the options; "---x" and "-=x"
				 * are syntax errors, as Go's flag has it */

struct opt_parser {
	const struct opt_def	*defs;
	size_t			 ndefs;
	int			 flags;		/* OPT_* */
	/*
	 * Applies one option; val is NULL for a flag written without '=',
	 * else points into argv.  Returns 0 to go on, 1 to stop at once
	 * (--help), -1 on an error written to err.
	 */
	int	(*option)(void *arg, const struct opt_def *def,
		    const char *val, char *err);
	/* Takes the next positional argument: 0, or -1 with err. */
	int	(*positional)(void *arg, const char *s, char *err);
	void	*arg;
};

/*
 * Walks argv[1..argc) (a NULL entry ends it early).  Returns 0 when every
 * argument was taken, 1 when an option callback asked to stop, -1 on an
 * error: an unknown option ("unknown option -NAME"), a missing value
 * ("option -NAME needs a value"), bad syntax ("bad option syntax: ARG",
 * with OPT_GO_SYNTAX) or a callback's own, with the message in err.
 */
int	opt_parse(const struct opt_parser *p, int argc, char **argv,
	    char *err);

#endif
