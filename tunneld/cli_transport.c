/*
 * -transport: how a websocket mode's connection is carried.  A client
 * speaks websocket and, with auto, turns to the HTTP transport when an
 * upgrade (or the proxy's CONNECT) is refused; a server takes both unless
 * told ws.  See docs/protocol.md, "HTTP transport".
 */

#include <string.h>

#include "cli.h"
#include "cli_int.h"
#include "err.h"

int
cli_transport(struct cli_opts *o, const char *val, char *err)
{
	static const struct {
		const char	*name;
		int		 v;
	} names[] = {
		{ "auto",	CLI_TRANSPORT_AUTO },
		{ "ws",		CLI_TRANSPORT_WS },
		{ "http",	CLI_TRANSPORT_HTTP },
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(val, names[i].name) == 0) {
			o->transport = names[i].v;
			return 0;
		}
	err_set(err, "-transport: auto, ws or http, not '%s'", val);
	return -1;
}

int
cli_transport_check(const struct cli_opts *o, char *err)
{
	if (o->transport != CLI_TRANSPORT_AUTO && !cli_mode_is_ws(o->mode)) {
		err_set(err, "-transport: mode %s has no websocket to choose "
		    "for", cli_mode_name(o->mode));
		return -1;
	}
	return 0;
}
