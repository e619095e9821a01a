/*
 * The kptunnel packet stream (wire spec 3) and the lack-offset pattern that
 * precedes it (wire spec 5.1).  Pure byte handling, no I/O: the caller
 * buffers input and calls again when more arrives.
 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "err.h"
#include "pkt.h"

#define PKT_LACK_HALF	(PKT_LACK_LEN / 2)

const uint8_t pkt_lack_pattern[PKT_LACK_LEN] = {
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
};

static uint32_t
pkt_get32(const uint8_t *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
	    (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

static uint64_t
pkt_get64(const uint8_t *b)
{
	return (uint64_t)pkt_get32(b) << 32 | pkt_get32(b + 4);
}

static void
pkt_put32(uint8_t *b, uint32_t v)
{
	b[0] = v >> 24;
	b[1] = v >> 16;
	b[2] = v >> 8;
	b[3] = v;
}

ssize_t
pkt_parse(uint8_t *in, size_t len, struct pkt *p, char *err)
{
	return pkt_parse_tagged(in, len, 0, p, err);
}

ssize_t
pkt_parse_tagged(uint8_t *in, size_t len, size_t tag, struct pkt *p,
    char *err)
{
	uint64_t	u;
	size_t		plen;

	memset(p, 0, sizeof(*p));
	if (len < 1)
		return 0;
	p->kind = in[0];
	switch (in[0]) {
	case PKT_NORMAL:
		if (len < PKT_NORMAL_HDR)
			return 0;
		plen = (size_t)in[5] << 8 | in[6];
		if (len - PKT_NORMAL_HDR < plen)
			return 0;
		p->citi = pkt_get32(in + 1);
		p->len = plen;
		p->payload = in + PKT_NORMAL_HDR;
		return PKT_NORMAL_HDR + plen;
	case PKT_DUMMY:
		return 1;
	case PKT_SYNC:
		if (len < PKT_SYNC_LEN + tag)
			return 0;
		p->citi = pkt_get32(in + 1);
		/* Two's complement on the wire; avoid an out-of-range cast. */
		u = pkt_get64(in + 5);
		if (u <= INT64_MAX)
			p->packno = (int64_t)u;
		else
			p->packno = -(int64_t)(~u) - 1;
		p->payload = in + PKT_SYNC_LEN;
		p->len = (uint16_t)tag;
		return PKT_SYNC_LEN + tag;
	default:
		/* EOS (2) and NORMAL_DIRECT (4) are internal to Go, never sent. */
		err_set(err, "illegal kind 0x%02x", in[0]);
		return -1;
	}
}

void
pkt_put_normal_hdr(uint8_t out[PKT_NORMAL_HDR], uint32_t citi, uint16_t len)
{
	out[0] = PKT_NORMAL;
	pkt_put32(out + 1, citi);
	out[5] = len >> 8;
	out[6] = len;
}

void
pkt_put_sync(uint8_t out[PKT_SYNC_LEN], uint32_t citi, int64_t packno)
{
	uint64_t	u = (uint64_t)packno;

	out[0] = PKT_SYNC;
	pkt_put32(out + 1, citi);
	pkt_put32(out + 5, u >> 32);
	pkt_put32(out + 9, u);
}

/*
 * Mirrors Go's CorrectLackOffsetRead: a first read of 10 bytes whose first
 * byte is the number of bytes lost in front (only that byte is looked at),
 * then 10 - offset bytes that must continue the pattern.  Nothing is judged
 * before each read is complete, as in Go, so a prefix always gives 0.
 */
ssize_t
pkt_lack_parse(const uint8_t *in, size_t len, char *err)
{
	size_t	off, i, total;

	if (len < PKT_LACK_HALF)
		return 0;
	off = in[0];
	if (off >= PKT_LACK_HALF) {
		err_set(err, "lack offset: illegal offset %zu", off);
		return -1;
	}
	total = PKT_LACK_LEN - off;
	if (len < total)
		return 0;
	for (i = 0; i < PKT_LACK_HALF - off; i++) {
		if (in[PKT_LACK_HALF + i] != off + i) {
			err_set(err, "lack offset: byte %zu is 0x%02x, "
			    "expected 0x%02zx", PKT_LACK_HALF + i,
			    in[PKT_LACK_HALF + i], off + i);
			return -1;
		}
	}
	return total;
}
