/*
 * kptunnel's modes.  See mode.h.
 */

#include <string.h>

#include "mode.h"

static const struct {
	const char	*name;
	int		 flags;
} mode_table[MODE_COUNT] = {
	{ "wsserver",	MODE_F_SERVER | MODE_F_WS },
	{ "r-wsserver",	MODE_F_SERVER | MODE_F_WS | MODE_F_REVERSE },
	{ "server",	MODE_F_SERVER },
	{ "r-server",	MODE_F_SERVER | MODE_F_REVERSE },
	{ "wsclient",	MODE_F_WS },
	{ "r-wsclient",	MODE_F_WS | MODE_F_REVERSE },
	{ "client",	0 },
	{ "r-client",	MODE_F_REVERSE },
};

int
mode_lookup(const char *name)
{
	int	i;

	for (i = 0; name != NULL && i < MODE_COUNT; i++)
		if (strcmp(name, mode_table[i].name) == 0)
			return i;
	return -1;
}

const char *
mode_name(int m)
{
	return m >= 0 && m < MODE_COUNT ? mode_table[m].name : "unknown";
}

int
mode_flags(int m)
{
	return m >= 0 && m < MODE_COUNT ? mode_table[m].flags : 0;
}

int
mode_name_is_server(const char *name)
{
	return (mode_flags(mode_lookup(name)) & MODE_F_SERVER) != 0;
}

int
mode_name_is_reverse_server(const char *name)
{
	int	f = mode_flags(mode_lookup(name));

	return (f & MODE_F_SERVER) && (f & MODE_F_REVERSE);
}
