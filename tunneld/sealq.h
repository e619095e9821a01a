#ifndef SEALQ_H
#define SEALQ_H

/*
 * Sealing a transport's outgoing buffers off the event loop.  kptunnel's
 * CFB encrypts serially at about 0.8 GB/s, so on the loop it leaves the
 * loop no time for the sockets; the AEAD mode's GCM is faster but still
 * a third of the sending side's work.  A bulk buffer goes to libuv's
 * threadpool while the loop reads and writes; small ones (a keystroke, a
 * ping) are sealed on the loop, where a thread hop would only add
 * latency.  One job per transport runs at a time and buffers come back
 * in the order they were queued, so the CFB stream and the AEAD nonce
 * counter advance in wire order; the loop writes each buffer while the
 * job seals the next.
 */

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "conn.h"
#include "xcipher.h"

#define SEALQ_SLOTS		32		/* buffers queued per transport */
#define SEALQ_AHEAD		(512 * 1024)	/* bytes queued per transport */
/* Payload bytes a buffer may hold and still be sealed on the loop. */
#define SEALQ_INLINE_MAX	(16 * 1024)

struct sealq;

/*
 * Called on the loop thread with each buffer sealed (rc 0), in queue
 * order; b is the callee's.  After some were handed back, once with b
 * NULL and rc 0: there is room.  With b NULL and rc -1: sealing failed,
 * the transport must end.  The callee may push or close from any call.
 */
typedef void	(*sealq_cb)(void *arg, struct obuf *b, int rc);

/*
 * Seals, in place, the payload of every NORMAL packet in p[0..len), a run
 * of whole packets of our own making whose length fields already count
 * xc_overhead().  Returns 0, or -1 when the transport must end.
 */
int		 sealq_seal(struct xcipher *xc, uint8_t *p, size_t len);

/*
 * A queue that takes over xc (sealq_close frees it, once no job uses it).
 * NULL if out of memory: xc stays the caller's.
 */
struct sealq	*sealq_new(uv_loop_t *loop, struct xcipher *xc, sealq_cb cb,
		    void *arg);

/* Whether a buffer of payload bytes to seal should go to the queue. */
int		 sealq_wants(const struct sealq *q, size_t payload);

/* 1 when another buffer would pass the queue's bounds. */
int		 sealq_full(const struct sealq *q);

/* Bytes queued and not yet handed back (0 for NULL). */
size_t		 sealq_bytes(const struct sealq *q);

/*
 * Queues b (b->len bytes of packets after the headroom) to be sealed;
 * the queue owns it from now on.  Returns 0, or -1 when the queue is full
 * or the threadpool refused the job: the transport must end (b is freed,
 * now or with the queue).
 */
int		 sealq_push(struct sealq *q, struct obuf *b);

/*
 * Ends q (NULL allowed): no callback runs any more, buffers not handed
 * back are freed, and q and its cipher go once the running job is over.
 */
void		 sealq_close(struct sealq *q);

#endif
