/*
 * The command line's UDP forwards ("u", "ut", "ur"): they travel only
 * between tunneld peers that run the AEAD mode (docs/protocol.md, "UDP
 * extension"), so options that turn it off leave them nothing to ride on.
 */

#include "cli.h"
#include "cli_int.h"
#include "err.h"

int
cli_udp_check(const struct cli_opts *o, char *err)
{
	size_t i;

	for (i = 0; i < o->fwds.n; i++)
		if (o->fwds.fwds[i].udp)
			break;
	if (i == o->fwds.n)
		return 0;
	if (o->no_aead || o->enc_count == 0) {
		err_set(err, "UDP forwards travel only in the AEAD mode between "
		    "tunneld peers: not with %s", o->no_aead ? "-noAead" :
		    "-encCount 0");
		return -1;
	}
	return 0;
}
