/*
 * libFuzzer target: the control contract's decoders (ctlmsg_decode) on
 * any bytes.  What decodes must encode again within CTL_MSG_MAX and decode
 * to the same message: the bounds the decoder checks are the ones the
 * encoder relies on.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctlmsg.h"
#include "err.h"

static struct ctlmsg	a, b;
static char		buf[CTL_MSG_MAX];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	err[ERR_LEN];
	int	n;

	if (ctlmsg_decode(data, size, &a, err) == -1)
		return 0;
	if ((n = ctlmsg_encode(&a, buf, sizeof(buf), err)) < 0)
		abort();
	if (ctlmsg_decode(buf, (size_t)n, &b, err) == -1)
		abort();
	if (a.type != b.type)
		abort();
	if (a.type == CTL_CONN) {
		if (a.u.conn.nextra != b.u.conn.nextra ||
		    (a.u.conn.nextra > 0 && memcmp(a.u.conn.extra,
		    b.u.conn.extra, a.u.conn.nextra) != 0))
			abort();
	} else if (memcmp(&a.u, &b.u, sizeof(a.u)) != 0)
		abort();
	ctlmsg_clear(&a);
	ctlmsg_clear(&b);
	return 0;
}
