/*
 * Datagram framing of a UDP stream.  See dgram.h; the wire format is
 * docs/protocol.md's "UDP extension".
 */

#include <stdlib.h>
#include <string.h>

#include "dgram.h"
#include "err.h"

/* Holds n more bytes of the current frame, growing as they come. */
static int
dgram_keep(struct dgram_rx *rx, const uint8_t *p, size_t n)
{
	uint8_t	*nb;
	size_t	 ncap;

	if (n == 0)
		return 0;
	if (rx->have + n > rx->cap) {
		/* Doubling, but never past the frame: a peer that
		 * announces 64 KiB and sends 1 byte costs 1 byte. */
		ncap = rx->cap ? rx->cap * 2 : 256;
		if (ncap < rx->have + n)
			ncap = rx->have + n;
		if (ncap > rx->want)
			ncap = rx->want;
		if ((nb = realloc(rx->buf, ncap)) == NULL)
			return -1;
		rx->buf = nb;
		rx->cap = ncap;
	}
	memcpy(rx->buf + rx->have, p, n);
	rx->have += n;
	return 0;
}

int
dgram_feed(struct dgram_rx *rx, const uint8_t *p, size_t n, dgram_cb cb,
    void *arg, char *err)
{
	size_t	 k;

	while (n > 0) {
		if (rx->nhdr < DGRAM_HDR) {
			rx->hdr[rx->nhdr++] = *p++;
			n--;
			if (rx->nhdr < DGRAM_HDR)
				continue;
			rx->want = (size_t)rx->hdr[0] << 8 | rx->hdr[1];
			if (rx->want > DGRAM_MAX) {
				err_set(err, "datagram of %zu bytes (at most "
				    "%d)", rx->want, DGRAM_MAX);
				dgram_rx_free(rx);
				return -1;
			}
		}
		/* Whole in the input and nothing kept: no copy. */
		if (rx->have == 0 && n >= rx->want) {
			cb(arg, p, rx->want);
			p += rx->want;
			n -= rx->want;
			rx->nhdr = 0;
			continue;
		}
		k = rx->want - rx->have;
		if (k > n)
			k = n;
		if (dgram_keep(rx, p, k) == -1) {
			err_set(err, "out of memory");
			dgram_rx_free(rx);
			return -1;
		}
		p += k;
		n -= k;
		if (rx->have == rx->want) {
			cb(arg, rx->buf, rx->have);
			rx->have = 0;
			rx->nhdr = 0;
		}
	}
	return 0;
}

size_t
dgram_rx_pending(const struct dgram_rx *rx)
{
	return rx->nhdr + rx->have;
}

void
dgram_rx_free(struct dgram_rx *rx)
{
	free(rx->buf);
	memset(rx, 0, sizeof(*rx));
}

void
dgram_q_init(struct dgram_q *q, size_t max)
{
	memset(q, 0, sizeof(*q));
	STAILQ_INIT(&q->h);
	q->max = max;
}

void
dgram_frame(uint8_t *out, const uint8_t *p, size_t n)
{
	out[0] = (uint8_t)(n >> 8);
	out[1] = (uint8_t)n;
	if (n > 0)
		memcpy(out + DGRAM_HDR, p, n);
}

int
dgram_q_push(struct dgram_q *q, const uint8_t *p, size_t n)
{
	struct dgram_qe	*e;
	size_t		 cost = DGRAM_HDR + n + DGRAM_QE_COST;

	if (n > DGRAM_MAX || q->cost + cost > q->max)
		return -1;
	if ((e = malloc(sizeof(*e) + DGRAM_HDR + n)) == NULL)
		return -1;
	e->len = DGRAM_HDR + n;
	dgram_frame(e->data, p, n);
	STAILQ_INSERT_TAIL(&q->h, e, link);
	q->bytes += e->len;
	q->cost += cost;
	q->count++;
	return 0;
}

size_t
dgram_q_take(struct dgram_q *q, uint8_t *out, size_t cap)
{
	struct dgram_qe	*e;
	size_t		 done = 0, k;

	while (done < cap && (e = STAILQ_FIRST(&q->h)) != NULL) {
		k = e->len - q->off;
		if (k > cap - done)
			k = cap - done;
		memcpy(out + done, e->data + q->off, k);
		done += k;
		q->off += k;
		q->bytes -= k;
		if (q->off == e->len) {
			STAILQ_REMOVE_HEAD(&q->h, link);
			q->cost -= e->len + DGRAM_QE_COST;
			q->count--;
			q->off = 0;
			free(e);
		}
	}
	return done;
}

size_t
dgram_q_bytes(const struct dgram_q *q)
{
	return q->bytes;
}

size_t
dgram_q_count(const struct dgram_q *q)
{
	return q->count;
}

void
dgram_q_free(struct dgram_q *q)
{
	struct dgram_qe *e;

	while ((e = STAILQ_FIRST(&q->h)) != NULL) {
		STAILQ_REMOVE_HEAD(&q->h, link);
		free(e);
	}
	q->bytes = q->cost = q->off = q->count = 0;
}
