/*
 * The options of dynamic forwards: a client's -socks and -transparent
 * listeners, the SOCKS5 listeners' credentials (a file or the
 * environment, never the command line, which every local user reads),
 * and a server's -destinations.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "addr.h"
#include "cli.h"
#include "cli_int.h"
#include "destpat.h"
#include "err.h"
#include "secret.h"
#include "socks5.h"

int
cli_dyn(struct cli_opts *o, int kind, const char *opt, const char *val,
    char *err)
{
	struct cli_dyn	*d;
	struct hostinfo	 h;
	char		 why[ERR_LEN];

	if (o->ndyn == CLI_MAX_DYN) {
		err_set(err, "-%s: at most %d -socks and -transparent "
		    "listeners", opt, CLI_MAX_DYN);
		return -1;
	}
	if (addr_parse(val, &h, why) == -1) {
		err_set(err, "-%s: '%s': %s", opt, val, why);
		return -1;
	}
	if (h.path[0] != '\0' || h.query[0] != '\0') {
		err_set(err, "-%s: '%s': a listening address has no path",
		    opt, val);
		return -1;
	}
	d = &o->dyn[o->ndyn++];
	d->kind = kind;
	d->port = h.port;
	/*
	 * Whoever reaches the port may use the tunnel (and through it what
	 * the server's patterns allow): other hosts only when asked for.
	 */
	snprintf(d->host, sizeof(d->host), "%s", h.name[0] != '\0' ?
	    h.name : "127.0.0.1");
	return 0;
}

/*
 * "user:password": the first colon ends the user name; each part 1 to
 * 255 bytes (RFC 1929).  Takes s (cleansed and freed on error).
 */
static int
cli_socks_take(struct cli_opts *o, const char *from, char *s, char *err)
{
	char	*colon = strchr(s, ':');
	size_t	 ulen, plen;

	ulen = colon != NULL ? (size_t)(colon - s) : 0;
	plen = colon != NULL ? strlen(colon + 1) : 0;
	if (colon == NULL || ulen == 0 || ulen > SOCKS5_CRED_MAX ||
	    plen == 0 || plen > SOCKS5_CRED_MAX) {
		err_set(err, "%s: not user:password (each 1 to %d bytes)",
		    from, SOCKS5_CRED_MAX);
		OPENSSL_cleanse(s, strlen(s));
		free(s);
		return -1;
	}
	cli_secret_free(&o->socks_auth);
	o->socks_auth = s;
	return 0;
}

int
cli_socks_auth_file(struct cli_opts *o, const char *val, char *err)
{
	char	*s, why[ERR_LEN];

	if (secret_read_file(val, &s, why) == -1) {
		err_set(err, "-socksAuthFile: %s", why);
		return -1;
	}
	return cli_socks_take(o, "-socksAuthFile", s, err);
}

int
cli_destinations(struct cli_opts *o, const char *val, char *err)
{
	char why[ERR_LEN];

	if (destpat_list_add(&o->dests, val, why) == -1) {
		err_set(err, "-destinations: %s", why);
		return -1;
	}
	return 0;
}

int
cli_socks_finish(struct cli_opts *o, char *err)
{
	char	*s;
	size_t	 i;
	int	 socks = 0;

	for (i = 0; i < o->ndyn; i++)
		socks |= o->dyn[i].kind == CLI_DYN_SOCKS;
	if (cli_mode_is_server(o->mode)) {
		if (o->ndyn > 0 || o->socks_auth != NULL) {
			err_set(err, "-socks, -transparent and -socksAuthFile "
			    "are client options");
			return -1;
		}
		return 0;
	}
	if (o->dests.n > 0) {
		err_set(err, "-destinations is a server option (the server "
		    "decides what it dials)");
		return -1;
	}
	if (o->socks_auth != NULL && !socks) {
		err_set(err, "-socksAuthFile without a -socks listener");
		return -1;
	}
	/* The variable is wiped whether used or not. */
	if (o->socks_auth == NULL) {
		if (secret_from_env("TUNNELD_SOCKS_AUTH", &s, err) == -1)
			return -1;
		if (s != NULL && !socks) {
			OPENSSL_cleanse(s, strlen(s));
			free(s);
		} else if (s != NULL && cli_socks_take(o, "TUNNELD_SOCKS_AUTH",
		    s, err) == -1)
			return -1;
	}
	return 0;
}

void
cli_socks_free(struct cli_opts *o)
{
	cli_secret_free(&o->socks_auth);
	destpat_list_free(&o->dests);
}
