/*
 * tunneld's modes: enum cli_mode is common/mode.h's table, whose flags
 * say what each mode is.
 */

#include "cli.h"
#include "mode.h"

/* enum cli_mode numbers the modes as common/mode.c's table does. */
_Static_assert(MODE_R_CLIENT + 1 == MODE_COUNT, "enum cli_mode is mode.h's");

int
cli_mode_is_server(enum cli_mode m)
{
	return (mode_flags(m) & MODE_F_SERVER) != 0;
}

int
cli_mode_is_ws(enum cli_mode m)
{
	return (mode_flags(m) & MODE_F_WS) != 0;
}

int
cli_mode_is_reverse(enum cli_mode m)
{
	return (mode_flags(m) & MODE_F_REVERSE) != 0;
}

const char *
cli_mode_name(enum cli_mode m)
{
	return mode_name(m);
}

