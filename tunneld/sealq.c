/*
 * A transport's outgoing buffers sealed on libuv's threadpool (sealq.h).
 *
 * The buffers wait in a ring.  A job seals them in order for as long as
 * it finds any (up to SEALQ_JOB_MAX bytes, so that other transports get
 * the threadpool too), telling the loop through an async handle after
 * each one, so that the loop writes a buffer while the job seals the
 * next.  Handing each job its buffers and back, one round trip per job,
 * left the job's thread idle half the time: in a VM a wake-up costs about
 * 100 us each way (measured), as much as sealing 128 KiB of CFB.
 *
 * Only the loop thread adds buffers (at the tail) and takes them back (at
 * the head); the job reads the ring and counts what it sealed.  The mutex
 * covers head, count, nsealed, failed and stop.
 */

#include <stdlib.h>

#include "pkt.h"
#include "sealq.h"

/* Bytes a job seals before it gives its thread back to the pool. */
#define SEALQ_JOB_MAX	(1024 * 1024)

struct sealq {
	uv_loop_t	*loop;
	struct xcipher	*xc;
	sealq_cb	 cb;
	void		*arg;
	uv_work_t	 work;
	uv_async_t	 async;		/* the job to the loop: sealed some */
	uv_mutex_t	 mu;
	struct obuf	*ring[SEALQ_SLOTS];
	/* under mu */
	size_t		 head;		/* the oldest buffer */
	size_t		 count;		/* buffers in the ring */
	size_t		 nsealed;	/* the first nsealed are sealed */
	int		 failed;	/* sealing the next one failed */
	int		 stop;		/* closed: the job ends */
	/* the loop's own */
	size_t		 bytes;		/* lengths of the buffers in the ring */
	int		 working;	/* the job is in the pool */
	int		 closed;
	int		 async_open;
	int		 calling;	/* in the owner's callback */
	int		 fail_told;
};

int
sealq_seal(struct xcipher *xc, uint8_t *p, size_t len)
{
	struct pkt	pk;
	size_t		off = 0, ov = xc_overhead(xc);
	ssize_t		n;

	while (off < len) {
		/* Our own packets: a failure here is a broken invariant. */
		if ((n = pkt_parse(p + off, len - off, &pk, NULL)) <= 0)
			return -1;
		if (pk.kind == PKT_NORMAL && (pk.len < ov ||
		    xc_seal(xc, p + off, PKT_NORMAL_HDR, pk.payload,
		    pk.len - ov) == -1))
			return -1;
		off += n;
	}
	return 0;
}

static void	sealq_wake(uv_async_t *);

struct sealq *
sealq_new(uv_loop_t *loop, struct xcipher *xc, sealq_cb cb, void *arg)
{
	struct sealq *q;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	if (uv_mutex_init(&q->mu) != 0) {
		free(q);
		return NULL;
	}
	if (uv_async_init(loop, &q->async, sealq_wake) != 0) {
		uv_mutex_destroy(&q->mu);
		free(q);
		return NULL;
	}
	/* Only a running job keeps the loop alive, not the queue. */
	uv_unref((uv_handle_t *)&q->async);
	q->async.data = q;
	q->async_open = 1;
	q->loop = loop;
	q->xc = xc;
	q->cb = cb;
	q->arg = arg;
	q->work.data = q;
	return q;
}

int
sealq_wants(const struct sealq *q, size_t payload)
{
	/* Behind a queued buffer, even a small one waits its turn. */
	return q->count > 0 || payload > SEALQ_INLINE_MAX;
}

int
sealq_full(const struct sealq *q)
{
	return q != NULL && (q->count == SEALQ_SLOTS ||
	    q->bytes >= SEALQ_AHEAD);
}

size_t
sealq_bytes(const struct sealq *q)
{
	return q != NULL ? q->bytes : 0;
}

/* Frees q once nothing refers to it: no job, no handle, no callback. */
static void
sealq_maybe_free(struct sealq *q)
{
	if (!q->closed || q->working || q->async_open || q->calling)
		return;
	while (q->count > 0) {
		free(q->ring[q->head]);
		q->head = (q->head + 1) % SEALQ_SLOTS;
		q->count--;
	}
	uv_mutex_destroy(&q->mu);
	xc_free(q->xc);
	free(q);
}

/* The threadpool side: seals buffers in order while there are any. */
static void
sealq_work(uv_work_t *w)
{
	struct sealq	*q = w->data;
	struct obuf	*b;
	size_t		 done = 0;
	int		 rc;

	uv_mutex_lock(&q->mu);
	while (!q->stop && !q->failed && q->nsealed < q->count &&
	    done < SEALQ_JOB_MAX) {
		b = q->ring[(q->head + q->nsealed) % SEALQ_SLOTS];
		uv_mutex_unlock(&q->mu);
		rc = sealq_seal(q->xc, b->mem + CONN_HEADROOM, b->len);
		done += b->len;
		uv_mutex_lock(&q->mu);
		if (rc == -1)
			q->failed = 1;
		else
			q->nsealed++;
		uv_mutex_unlock(&q->mu);
		uv_async_send(&q->async);
		uv_mutex_lock(&q->mu);
	}
	uv_mutex_unlock(&q->mu);
}

/* Hands the sealed buffers back, in order; tells room or failure. */
static void
sealq_hand_back(struct sealq *q)
{
	struct obuf	*out[SEALQ_SLOTS];
	size_t		 i, n;
	int		 failed;

	uv_mutex_lock(&q->mu);
	n = q->nsealed;
	for (i = 0; i < n; i++) {
		out[i] = q->ring[q->head];
		q->ring[q->head] = NULL;
		q->head = (q->head + 1) % SEALQ_SLOTS;
	}
	q->count -= n;
	q->nsealed = 0;
	failed = q->failed;
	uv_mutex_unlock(&q->mu);

	q->calling = 1;
	for (i = 0; i < n; i++) {
		q->bytes -= out[i]->len;
		if (q->closed)
			free(out[i]);
		else
			q->cb(q->arg, out[i], 0);
	}
	if (!q->closed && failed && !q->fail_told) {
		q->fail_told = 1;
		q->cb(q->arg, NULL, -1);
	} else if (!q->closed && n > 0)
		q->cb(q->arg, NULL, 0);
	q->calling = 0;
}

static void	sealq_after(uv_work_t *, int);

/* uv_queue_work fails only without a work callback: never here. */
static int
sealq_start(struct sealq *q)
{
	if (uv_queue_work(q->loop, &q->work, sealq_work, sealq_after) != 0)
		return -1;
	q->working = 1;
	return 0;
}

static void
sealq_wake(uv_async_t *a)
{
	struct sealq *q = a->data;

	if (q->closed)
		return;
	sealq_hand_back(q);
	sealq_maybe_free(q);
}

/*
 * The job is over (out of buffers, or past SEALQ_JOB_MAX): hands back
 * what the async handle has not yet, and starts another job for buffers
 * that came in after this one looked.
 */
static void
sealq_after(uv_work_t *w, int status)
{
	struct sealq	*q = w->data;
	int		 more;

	q->working = 0;
	if (!q->closed)
		sealq_hand_back(q);
	if (q->closed) {
		sealq_maybe_free(q);
		return;
	}
	if (q->working)		/* the owner queued more and started one */
		return;
	uv_mutex_lock(&q->mu);
	more = !q->failed && q->nsealed < q->count;
	uv_mutex_unlock(&q->mu);
	if (more && sealq_start(q) == -1 && !q->fail_told) {
		q->fail_told = 1;
		q->cb(q->arg, NULL, -1);
	}
}

int
sealq_push(struct sealq *q, struct obuf *b)
{
	if (q->count == SEALQ_SLOTS) {
		free(b);
		return -1;
	}
	uv_mutex_lock(&q->mu);
	q->ring[(q->head + q->count) % SEALQ_SLOTS] = b;
	q->count++;
	uv_mutex_unlock(&q->mu);
	q->bytes += b->len;
	/* A running job finds b; its end starts another if it did not. */
	if (q->working)
		return 0;
	return sealq_start(q);
}

static void
sealq_async_closed(uv_handle_t *h)
{
	struct sealq *q = h->data;

	q->async_open = 0;
	sealq_maybe_free(q);
}

void
sealq_close(struct sealq *q)
{
	if (q == NULL || q->closed)
		return;
	q->closed = 1;
	uv_mutex_lock(&q->mu);
	q->stop = 1;
	uv_mutex_unlock(&q->mu);
	/* The job and the handle end first: the last of them frees q. */
	uv_close((uv_handle_t *)&q->async, sealq_async_closed);
}
