#ifndef CMDLINE_H
#define CMDLINE_H

/*
 * The dispatcher's command line: "wsserver [host]:port[/path]" and its
 * options (see dispatcher --help), parsed with common/opt.h.  The
 * defaults are defined here once: the parser, --help and the tests take
 * them from here.
 */

#include "disp.h"

#define DISP_DEF_MAX_SESSION		1000
#define DISP_DEF_PER_IP			16
#define DISP_DEF_MAX_PENDING		1024
#define DISP_DEF_REQUEST_TIMEOUT	10
#define DISP_DEF_REFUSE_DELAY_MS	DISP_REFUSE_DELAY_MS
#define DISP_DEF_MAX_PENDING_WORKERS	64
#define DISP_DEF_SPAWN_RATE		4
#define DISP_DEF_SPAWN_BURST		32
#define DISP_DEF_HANDSHAKE_TIMEOUT	10
#define DISP_DEF_HEAD_TIMEOUT		10
#define DISP_DEF_HEAD_PER_IP		16

/*
 * Sets every option of d to its default (d is otherwise left alone); the
 * worker program defaults to tunneld beside this executable.  argv0 is
 * unused and may be NULL.
 */
void	disp_defaults(struct disp *d, const char *argv0);

/*
 * Parses argv into d (after disp_defaults).  Returns 0, or -1 on a usage
 * error with err naming it.  --help and --version print on stdout and
 * exit(0), as Go's flag package does.
 */
int	disp_parse(struct disp *d, int argc, char **argv, char *err);

#endif
