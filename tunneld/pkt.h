#ifndef PKT_H
#define PKT_H

/*
 * The kptunnel packet stream (wire spec 3 and 5.1), without I/O.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PKT_NORMAL	0x00
#define PKT_DUMMY	0x01
#define PKT_SYNC	0x03

#define PKT_NORMAL_HDR	7		/* kind, citi u32, len u16 */
#define PKT_SYNC_LEN	13		/* kind, citi u32, packNo i64 */
#define PKT_MAX_PAYLOAD	65535
#define PKT_LACK_LEN	20

#define PKT_CITI_CTRL	0

struct pkt {
	int		 kind;
	uint32_t	 citi;
	uint16_t	 len;		/* NORMAL */
	int64_t		 packno;	/* SYNC */
	uint8_t		*payload;	/* NORMAL: points into the input */
};

/*
 * Parses one packet from in[0..len).  Returns the bytes it occupies (> 0),
 * 0 if the packet is not complete yet, -1 on an unknown kind (err set).
 * A NORMAL packet is returned only when its whole payload is present, so a
 * caller needs at most PKT_NORMAL_HDR + PKT_MAX_PAYLOAD bytes buffered.
 */
ssize_t	pkt_parse(uint8_t *in, size_t len, struct pkt *p, char *err);
/*
 * As pkt_parse, where tag bytes follow every SYNC's 13 (the AEAD mode
 * between tunneld peers seals SYNCs too: docs/protocol.md): a SYNC is
 * returned once they are present, with payload pointing at them and len
 * = tag.  pkt_parse is pkt_parse_tagged with tag 0 (kptunnel's SYNC).
 */
ssize_t	pkt_parse_tagged(uint8_t *in, size_t len, size_t tag, struct pkt *p,
	    char *err);

void	pkt_put_normal_hdr(uint8_t out[PKT_NORMAL_HDR], uint32_t citi,
	    uint16_t len);
void	pkt_put_sync(uint8_t out[PKT_SYNC_LEN], uint32_t citi, int64_t packno);

/* The 20-byte lack-offset pattern every side sends first. */
extern const uint8_t pkt_lack_pattern[PKT_LACK_LEN];

/*
 * kptunnel's lack-offset reader (wire spec 5.1) over in[0..len): returns the
 * bytes consumed once the pattern is complete (10 + 10 - offset), 0 if more
 * bytes are needed, -1 with err if it does not match.
 */
ssize_t	pkt_lack_parse(const uint8_t *in, size_t len, char *err);

#endif
