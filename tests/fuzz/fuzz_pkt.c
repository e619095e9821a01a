/*
 * libFuzzer target for tunneld/pkt.c.  The input is what a peer sends after
 * the websocket layer: the lack-offset pattern, then packets (with SYNCs
 * tagged as in the AEAD mode when the first byte is odd).  Checks that
 * the parsers stay inside the input, agree with themselves when the input
 * arrives in two pieces, and report errors only through their return
 * value.  Any input is acceptable; only a parser bug aborts.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "pkt.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define FUZZ_CHECK(c)	do { if (!(c)) abort(); } while (0)

/* One parsed packet, as offsets, to compare two runs. */
struct fuzz_rec {
	int		kind;
	uint32_t	citi;
	uint16_t	len;
	int64_t		packno;
	size_t		off;
	size_t		size;
};

#define FUZZ_MAXREC	4096

static struct fuzz_rec	fuzz_whole[FUZZ_MAXREC], fuzz_split[FUZZ_MAXREC];
/* Bytes after a SYNC: 0 (kptunnel) or 16 (the AEAD mode's tag). */
static size_t		fuzz_tag;

/*
 * Parses data[0..have) from *off on, as a caller would after each append,
 * recording at most FUZZ_MAXREC packets.  Returns -1 once the stream is
 * broken (illegal kind), 0 otherwise.
 */
static int
fuzz_parse(uint8_t *data, size_t have, size_t *off, struct fuzz_rec *rec,
    size_t *n)
{
	struct pkt	p;
	char		err[ERR_LEN];
	ssize_t		r;

	while (*n < FUZZ_MAXREC) {
		err[0] = '\0';
		r = pkt_parse_tagged(data + *off, have - *off, fuzz_tag, &p,
		    err);
		if (r == -1) {
			FUZZ_CHECK(err[0] != '\0');
			FUZZ_CHECK(*off < have);
			FUZZ_CHECK(data[*off] != PKT_NORMAL &&
			    data[*off] != PKT_DUMMY &&
			    data[*off] != PKT_SYNC);
			return -1;
		}
		FUZZ_CHECK(r >= 0 && (size_t)r <= have - *off);
		if (r == 0)
			return 0;
		switch (p.kind) {
		case PKT_NORMAL:
			FUZZ_CHECK((size_t)r == (size_t)PKT_NORMAL_HDR + p.len);
			FUZZ_CHECK(p.payload == data + *off + PKT_NORMAL_HDR);
			break;
		case PKT_DUMMY:
			FUZZ_CHECK(r == 1);
			break;
		case PKT_SYNC:
			FUZZ_CHECK((size_t)r == PKT_SYNC_LEN + fuzz_tag);
			FUZZ_CHECK(p.len == fuzz_tag);
			FUZZ_CHECK(p.payload == data + *off + PKT_SYNC_LEN);
			break;
		default:
			abort();
		}
		rec[*n].kind = p.kind;
		rec[*n].citi = p.citi;
		rec[*n].len = p.len;
		rec[*n].packno = p.packno;
		rec[*n].off = *off;
		rec[*n].size = r;
		(*n)++;
		*off += r;
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
	uint8_t		*data;
	char		 err[ERR_LEN];
	ssize_t		 lack;
	size_t		 start, split, k, off, n, off2, n2;
	int		 bad, bad2;

	/* A copy of exactly size bytes, so ASan sees any over-read. */
	if ((data = malloc(size > 0 ? size : 1)) == NULL)
		return 0;
	memcpy(data, in, size);

	/* The first byte's low bit: SYNCs with the AEAD mode's tag. */
	fuzz_tag = size > 0 && (data[0] & 1) ? 16 : 0;

	/* The lack-offset reader on the prefix; 0 until complete. */
	lack = pkt_lack_parse(data, size, err);
	FUZZ_CHECK(lack == -1 || lack == 0 ||
	    (lack >= PKT_LACK_LEN / 2 + 1 && lack <= PKT_LACK_LEN &&
	    (size_t)lack <= size));
	if (lack > 0)
		for (k = 0; k < (size_t)lack; k++)
			FUZZ_CHECK(pkt_lack_parse(data, k, err) == 0);
	start = lack > 0 ? (size_t)lack : 0;

	/* The packet stream after it, whole. */
	off = start;
	n = 0;
	bad = fuzz_parse(data, size, &off, fuzz_whole, &n);

	/* Again in two pieces, split where the last byte says. */
	split = size > start ? start + (size > 0 ? data[size - 1] *
	    (size - start) / 256 : 0) : start;
	off2 = start;
	n2 = 0;
	bad2 = fuzz_parse(data, split, &off2, fuzz_split, &n2);
	if (bad2 == 0)
		bad2 = fuzz_parse(data, size, &off2, fuzz_split, &n2);
	FUZZ_CHECK(bad == bad2);
	FUZZ_CHECK(n == n2 && off == off2);
	for (k = 0; k < n; k++) {
		FUZZ_CHECK(fuzz_whole[k].kind == fuzz_split[k].kind);
		FUZZ_CHECK(fuzz_whole[k].citi == fuzz_split[k].citi);
		FUZZ_CHECK(fuzz_whole[k].len == fuzz_split[k].len);
		FUZZ_CHECK(fuzz_whole[k].packno == fuzz_split[k].packno);
		FUZZ_CHECK(fuzz_whole[k].off == fuzz_split[k].off);
		FUZZ_CHECK(fuzz_whole[k].size == fuzz_split[k].size);
	}

	free(data);
	return 0;
}
