#ifndef CLI_INT_H
#define CLI_INT_H

/*
 * What the command line's files (cli.c, cli_value.c, cli_secret.c,
 * cli_usage.c, cli_mode.c) share, and only they.
 */

#include <stddef.h>

#include "cli.h"

/* Upper bound of every seconds option: keeps milliseconds within an int. */
#define CLI_MAX_SECONDS	604800

/* cli_value.c: an option's value into o or out.  Each returns 0, or -1
 * with err naming the option opt. */
/* A decimal integer in [min, max], as Go's strconv.Atoi reads it. */
int	 cli_int(const char *opt, const char *val, int min, int max, int *out,
	    char *err);
/* Go's strconv.ParseBool; val NULL (a bare -flag) is true. */
int	 cli_bool(const char *opt, const char *val, int *out, char *err);
/* Printable text (space allowed when told) that fits in out[cap]. */
int	 cli_copy(const char *opt, const char *val, char *out, size_t cap,
	    int space, char *err);
/* -ip: comma-separated CIDR ranges, appended to o->cidrs. */
int	 cli_ip(struct cli_opts *o, const char *val, char *err);
/* -header "NAME: VALUE", canonicalised into o->header. */
int	 cli_header(struct cli_opts *o, const char *val, char *err);
/* -session: characters a URL query carries verbatim. */
int	 cli_session(struct cli_opts *o, const char *val, char *err);
/* -window SIZE: bytes (suffix k, M: binary) into o->window, packets of
 * 64 KiB rounded up, within [TUN_WINDOW, TUN_WINDOW_MAX]. */
int	 cli_window(struct cli_opts *o, const char *val, char *err);
/* -wspath: starts with '/'. */
int	 cli_wspath(struct cli_opts *o, const char *val, char *err);

/* cli_secret.c.  *out is a malloc'd secret, cleansed and freed before it
 * is replaced; each returns 0, or -1 with err. */
void	 cli_secret_free(char **p);
/* -pass, -encPass: a copy of val. */
int	 cli_secret(const char *opt, const char *val, char **out, char *err);
/* -passFile, -encPassFile: the secret in the file val names. */
int	 cli_secret_file(const char *opt, const char *val, char **out,
	    char *err);
/* -proxyFile: -proxy's URL from a file. */
int	 cli_proxy_file(struct cli_opts *o, const char *val, char *err);
/* TUNNELD_PROXY into o->proxy when set. */
int	 cli_proxy_env(struct cli_opts *o, char *err);
/* TUNNELD_PASS and the like into *out when set; *out left alone if not. */
int	 cli_secret_env(const char *var, char **out, char *err);
/*
 * Remembers where val, the argv text of a secret of kind CLI_ARGV_*,
 * lies, for cli_scrub_argv, and marks kind in o->argv_secrets.
 */
int	 cli_note_secret(struct cli_opts *o, int kind, const char *val,
	    char *err);

/* cli_socks.c: the dynamic forwards' options.  Each returns 0, or -1
 * with err. */
/* -socks, -transparent: a listening address (empty host: 127.0.0.1). */
int	 cli_dyn(struct cli_opts *o, int kind, const char *opt,
	    const char *val, char *err);
/* -socksAuthFile: the SOCKS5 listeners' "user:password". */
int	 cli_socks_auth_file(struct cli_opts *o, const char *val, char *err);
/* -destinations: comma-separated patterns (destpat.h). */
int	 cli_destinations(struct cli_opts *o, const char *val, char *err);
/* Once the mode is known: each option is one of its role's, and
 * TUNNELD_SOCKS_AUTH is read when no file gave the credentials. */
int	 cli_socks_finish(struct cli_opts *o, char *err);
/* Cleanses and frees the credentials; frees the patterns. */
void	 cli_socks_free(struct cli_opts *o);

/* cli_usage.c: --version's text. */
const char *cli_version(void);

/* cli_udp.c: UDP forwards need what carries them: 0, or -1 with err. */
int	 cli_udp_check(const struct cli_opts *o, char *err);
/* cli_transport.c: -transport auto|ws|http into o->transport; and,
 * once the mode is known, whether it has a choice.  0, or -1 with err. */
int	 cli_transport(struct cli_opts *o, const char *val, char *err);
int	 cli_transport_check(const struct cli_opts *o, char *err);

#endif
