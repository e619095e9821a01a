#ifndef DGRAM_H
#define DGRAM_H

/*
 * UDP datagrams in a stream (docs/protocol.md, "UDP extension"): each is
 * framed as a 2-byte big-endian length and its bytes, and the frames
 * follow each other in the stream whatever its packets are.  Without I/O:
 * dgram_rx takes the peer's stream cut anywhere and gives whole
 * datagrams; dgram_q keeps a local socket's datagrams, bounded, until the
 * stream may carry them.
 */

#include <sys/queue.h>
#include <stddef.h>
#include <stdint.h>

#define DGRAM_HDR	2
/* The largest UDP payload (IPv6's; IPv4's is 65507): longer is an error. */
#define DGRAM_MAX	65527

/* The receiving side of one stream.  Zeroed is ready. */
struct dgram_rx {
	uint8_t	 hdr[DGRAM_HDR];
	size_t	 nhdr;		/* header bytes held */
	size_t	 want;		/* the frame's length, once nhdr is whole */
	uint8_t	*buf;		/* a frame's bytes that came in pieces */
	size_t	 have;
	size_t	 cap;
};

/* Takes one datagram: p[0..n) is valid during the call only. */
typedef void	(*dgram_cb)(void *arg, const uint8_t *p, size_t n);

/*
 * Feeds n bytes of the stream: each datagram they complete goes to cb, in
 * order (from p itself when it lies there whole).  A frame begun and not
 * ended is kept, its bytes as they came (never more than DGRAM_MAX).
 * Returns 0, or -1 with err when a length passes DGRAM_MAX or memory
 * runs out: the stream is then unusable (what it kept is freed).
 */
int	 dgram_feed(struct dgram_rx *rx, const uint8_t *p, size_t n,
	    dgram_cb cb, void *arg, char *err);
/* Bytes of a frame begun and not ended (a stream ending now cuts it). */
size_t	 dgram_rx_pending(const struct dgram_rx *rx);
/* Frees what rx keeps; rx is zeroed (ready again). */
void	 dgram_rx_free(struct dgram_rx *rx);

struct dgram_qe {
	STAILQ_ENTRY(dgram_qe) link;
	size_t	 len;		/* framed: header included */
	uint8_t	 data[];
};

/*
 * The sending side of one stream: framed datagrams in order.  Each costs
 * its framed length plus DGRAM_QE_COST against the bound, so that a flood
 * of empty datagrams is bounded in memory too.
 */
#define DGRAM_QE_COST	((size_t)sizeof(struct dgram_qe) + 16)

struct dgram_q {
	STAILQ_HEAD(, dgram_qe) h;
	size_t	 bytes;		/* framed bytes not yet taken */
	size_t	 count;		/* datagrams not yet wholly taken */
	size_t	 cost;		/* what the bound counts */
	size_t	 off;		/* bytes of the first entry already taken */
	size_t	 max;
};

/* An empty queue of at most max bytes of cost. */
void	 dgram_q_init(struct dgram_q *q, size_t max);
/*
 * Queues p[0..n), framed.  Returns 0, or -1 when it is longer than
 * DGRAM_MAX, would pass the bound, or memory runs out: the caller drops
 * it (and counts it).
 */
int	 dgram_q_push(struct dgram_q *q, const uint8_t *p, size_t n);
/*
 * Moves up to cap framed bytes into out, in order; a frame may be cut
 * (its rest comes first next time).  Returns the bytes moved.
 */
size_t	 dgram_q_take(struct dgram_q *q, uint8_t *out, size_t cap);
/* Framed bytes waiting. */
size_t	 dgram_q_bytes(const struct dgram_q *q);
/* Datagrams waiting (one taken in part counts). */
size_t	 dgram_q_count(const struct dgram_q *q);
/* Frees every entry; q stays usable (empty). */
void	 dgram_q_free(struct dgram_q *q);

/* Frames p[0..n) (n <= DGRAM_MAX) into out[0..DGRAM_HDR + n). */
void	 dgram_frame(uint8_t *out, const uint8_t *p, size_t n);

#endif
