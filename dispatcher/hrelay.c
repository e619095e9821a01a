/*
 * Requests of the HTTP transport (docs/protocol.md, "HTTP transport"),
 * relayed to the worker of their session.
 *
 * libmicrohttpd hands a socket over only with a 101 answer, which a proxy
 * that refuses upgrades never passes, so each request is relayed instead:
 * the pool thread that admitted it makes a socketpair, hands one end to
 * the worker as it hands an upgraded socket (CTL_CONN, marked http), and
 * suspends the request; the loop thread writes the request (head rebuilt
 * here, body as received) to the other end and reads the worker's answer,
 * which the pool thread then gives as its own.  The worker reads the relay
 * as a standalone server reads a connection it accepted.  The dispatcher
 * moves these bytes but never reads them: the tunnel's payload stays
 * sealed between client and worker.
 *
 * Bounds: a push's body is collected only with a Content-Length of at most
 * HTTPT_BODY_MAX, within HRELAY_BODY_BUDGET in all; relays in progress are
 * at most -maxPending; the worker's answer is read up to its head's and
 * HTTPT_BODY_MAX's bytes, and within HRELAY_MS (a poll's hold and a
 * margin).  A worker holds one poll and one push of a transport, so a
 * client's flood of requests ends in answers, not in relays held.
 *
 * Threads: hrelay_begin, _body, _start, _answer and _release run on pool
 * threads; the I/O on the loop thread.  A relay has two references (the
 * request's and the loop's), taken and dropped under disp.lock.
 */

#include <sys/socket.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#include "err.h"
#include "front.h"
#include "httpt.h"
#include "log.h"

#define HRELAY_BODY_BUDGET	(64u * 1024 * 1024)
#define HRELAY_MS		(HTTPT_HOLD_MS + 10000)
#define HRELAY_HEAD_MAX		4096
#define HRELAY_IN_MAX		(HRELAY_HEAD_MAX + HTTPT_BODY_MAX)

enum hrelay_state {
	HRS_COLLECT,		/* a pool thread reads the body */
	HRS_QUEUED,		/* for the loop thread */
	HRS_RUNNING,		/* the loop thread relays */
	HRS_DONE		/* the answer (or its failure) is in */
};

struct hrelay {
	TAILQ_ENTRY(hrelay) link;	/* d->relays, while queued */
	struct disp	*d;
	struct MHD_Connection *c;
	int		 refs;		/* under d->lock */
	enum hrelay_state state;
	enum httpt_kind	 kind;
	uint8_t		*body;		/* a push's */
	size_t		 clen;		/* bytes announced and reserved */
	size_t		 blen;
	/* loop thread */
	int		 fd;
	uv_poll_t	 poll;
	uv_timer_t	 timer;
	int		 handles;
	int		 polling;	/* poll initialised */
	uint8_t		*out;		/* the request as the worker reads it */
	size_t		 outlen, outoff;
	uint8_t		*in;		/* the worker's answer */
	size_t		 inlen;
	/* the answer */
	struct httpt_resp resp;
	size_t		 hlen;
	int		 failed;	/* 502 */
};

static _Atomic size_t	hrelay_bytes;

enum httpt_kind
hrelay_kind(struct MHD_Connection *c)
{
	const char	*v;
	char		 q[64];

	v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "ht");
	if (v == NULL)
		return HTTPT_NONE;
	snprintf(q, sizeof(q), "/?ht=%s", v);
	return httpt_kind_of(q, strlen(q));
}

/* Drops one reference (under d->lock); the last frees r. */
static void
hrelay_unref_locked(struct hrelay *r)
{
	if (--r->refs > 0)
		return;
	if (r->clen > 0)
		atomic_fetch_sub(&hrelay_bytes, r->clen);
	free(r->body);
	free(r->out);
	free(r->in);
	free(r);
}

static struct hrelay *
hrelay_new(struct freq *f, struct MHD_Connection *c, enum httpt_kind kind)
{
	struct hrelay *r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->d = f->d;
	r->c = c;
	r->refs = 1;
	r->kind = kind;
	r->fd = -1;
	f->relay = r;
	return r;
}

int
hrelay_too_long(struct MHD_Connection *c)
{
	const char		*v;
	char			*end;
	unsigned long long	 n;

	if (hrelay_kind(c) != HTTPT_PUSH)
		return 0;
	if ((v = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_CONTENT_LENGTH)) == NULL)
		return 1;
	errno = 0;
	n = strtoull(v, &end, 10);
	return errno != 0 || *end != '\0' || n > HTTPT_BODY_MAX;
}

void
hrelay_begin(struct MHD_Connection *c, struct freq *f)
{
	const char	*v;
	char		*end;
	unsigned long long n;

	if (f->relay != NULL || f->relay_refused)
		return;
	f->relay_refused = 1;
	if (hrelay_kind(c) != HTTPT_PUSH ||
	    (v = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_CONTENT_LENGTH)) == NULL)
		return;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno != 0 || *end != '\0' || n == 0 || n > HTTPT_BODY_MAX)
		return;
	/* What pushes may hold before their worker takes them, in all. */
	if (atomic_fetch_add(&hrelay_bytes, n) + n > HRELAY_BODY_BUDGET) {
		atomic_fetch_sub(&hrelay_bytes, n);
		return;
	}
	if (hrelay_new(f, c, HTTPT_PUSH) == NULL ||
	    (f->relay->body = malloc(n)) == NULL) {
		atomic_fetch_sub(&hrelay_bytes, n);
		free(f->relay);
		f->relay = NULL;
		return;
	}
	f->relay->clen = n;
	f->relay_refused = 0;
}

void
hrelay_body(struct freq *f, const char *data, size_t n)
{
	struct hrelay *r = f->relay;

	if (r == NULL || r->state != HRS_COLLECT || n > r->clen - r->blen)
		return;		/* libmicrohttpd holds it to the length */
	memcpy(r->body + r->blen, data, n);
	r->blen += n;
}

/* The request as the worker reads it: 0, or -1. */
static int
hrelay_request(struct hrelay *r, struct MHD_Connection *c, const char *id)
{
	struct httpt_spec	 s;
	const char		*v;
	char			 head[1024], *end;

	memset(&s, 0, sizeof(s));
	s.kind = r->kind;
	s.host_port = "dispatcher";
	s.prefix = "";
	s.path_query = r->d->path;
	s.id = id;
	s.blen = r->blen;
	if (r->kind == HTTPT_PUSH || r->kind == HTTPT_POLL) {
		v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
		    r->kind == HTTPT_PUSH ? "off" : "ack");
		if (v == NULL || *v < '0' || *v > '9')
			return -1;
		errno = 0;
		s.off = strtoull(v, &end, 10);
		if (errno != 0 || *end != '\0' || s.off >= HTTPT_OFF_MAX)
			return -1;
	}
	/* The worker clamps it; a malformed one it refuses. */
	if (r->kind == HTTPT_POLL && (v = MHD_lookup_connection_value(c,
	    MHD_GET_ARGUMENT_KIND, "hold")) != NULL) {
		unsigned long h;

		errno = 0;
		h = strtoul(v, &end, 10);
		if (*v < '0' || *v > '9' || errno != 0 || *end != '\0')
			return -1;
		s.hold_ms = h < HTTPT_HOLD_MIN_MS ? HTTPT_HOLD_MIN_MS :
		    h > HTTPT_HOLD_MS ? HTTPT_HOLD_MS : (unsigned)h;
	}
	if ((r->outlen = httpt_request(head, sizeof(head), &s)) == (size_t)-1 ||
	    (r->out = malloc(r->outlen + r->blen)) == NULL)
		return -1;
	memcpy(r->out, head, r->outlen);
	if (r->blen > 0)
		memcpy(r->out + r->outlen, r->body, r->blen);
	r->outlen += r->blen;
	return 0;
}

enum MHD_Result
hrelay_start(struct MHD_Connection *c, struct freq *f, const char *method)
{
	struct disp	*d = f->d;
	struct hrelay	*r = f->relay;
	enum httpt_kind	 kind = hrelay_kind(c);
	const char	*id = NULL, *want = httpt_method(kind);
	char		 err[ERR_LEN];
	int		 sv[2] = { -1, -1 }, full;

	if (strcmp(method, want) != 0)
		return reply_now(c, d, 405, strcmp(want, "GET") == 0 ?
		    "this is a GET" : "this is a POST");
	if (kind == HTTPT_PUSH && (r == NULL || r->blen != r->clen))
		return reply_now(c, d, r == NULL ? 413 : 400, r == NULL ?
		    "a push needs a Content-Length of at most 262144 bytes "
		    "(or the server is busy)" : "incomplete body");
	if (kind != HTTPT_OPEN &&
	    ((id = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    HTTPT_HDR_ID)) == NULL || !httpt_id_valid(id, strlen(id))))
		return reply_now(c, d, 400, "a well-formed " HTTPT_HDR_ID
		    " header is needed");
	if (r == NULL && (r = hrelay_new(f, c, kind)) == NULL)
		return reply_now(c, d, 503, "out of memory");
	pthread_mutex_lock(&d->lock);
	full = d->nrelays >= d->max_pending;
	pthread_mutex_unlock(&d->lock);
	if (full)
		return reply_now(c, d, 503, "too many requests in progress");
	if (hrelay_request(r, c, id) == -1)
		return reply_now(c, d, 400, "bad request of the HTTP transport");
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0,
	    sv) == -1)
		return reply_now(c, d, 503, "out of descriptors");
	if (wrpc_relay(f->w, sv[1], f->remote, err) == -1) {
		log_warnx("%s: relay to worker %d failed: %s", f->remote,
		    (int)f->w->pid, err);
		close(sv[0]);
		close(sv[1]);
		return reply_now(c, d, 502, "the tunnel did not answer");
	}
	close(sv[1]);
	r->fd = sv[0];
	/* Admitted: its address's count goes, as a hand-over's does. */
	iplimit_release(d, f);
	pthread_mutex_lock(&d->lock);
	r->state = HRS_QUEUED;
	r->refs++;		/* the loop's */
	d->nrelays++;
	TAILQ_INSERT_TAIL(&d->relays, r, link);
	MHD_suspend_connection(c);
	pthread_mutex_unlock(&d->lock);
	uv_async_send(&d->relay_wake);
	return MHD_YES;
}

int
hrelay_started(const struct freq *f)
{
	return f->relay != NULL && f->relay->state != HRS_COLLECT;
}

enum MHD_Result
hrelay_answer(struct MHD_Connection *c, struct freq *f)
{
	struct hrelay		*r = f->relay;
	struct disp		*d = f->d;
	struct MHD_Response	*resp;
	const uint8_t		*body;
	char			 off[32];
	enum MHD_Result		 rc;
	size_t			 blen;

	if (r->failed || r->resp.status < 200)
		return reply_now(c, d, 502, "the tunnel did not answer");
	/* An unknown transport as an unknown session: after the delay, so
	 * that neither tells a prober more than the other. */
	if (r->resp.status == 404 && r->resp.unknown) {
		f->ht_unknown = 1;
		return reply_later(c, f, 404, "unknown transport");
	}
	body = r->in + r->hlen;
	blen = r->resp.clen > 0 ? (size_t)r->resp.clen : 0;
	if (r->kind == HTTPT_OPEN && r->resp.status == 200)
		reply_count(d, 101);
	resp = MHD_create_response_from_buffer(blen, (void *)body,
	    MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", r->resp.status == 200 ?
	    "application/octet-stream" : "text/plain; charset=utf-8");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	if (r->resp.id[0] != '\0')
		MHD_add_response_header(resp, HTTPT_HDR_ID, r->resp.id);
	if (r->resp.off >= 0) {
		snprintf(off, sizeof(off), "%" PRId64, r->resp.off);
		MHD_add_response_header(resp, HTTPT_HDR_OFFSET, off);
	}
	if (r->resp.closed)
		MHD_add_response_header(resp, HTTPT_HDR_CLOSED, r->resp.why);
	rc = MHD_queue_response(c, (unsigned)r->resp.status, resp);
	MHD_destroy_response(resp);
	return rc;
}

void
hrelay_release(struct freq *f)
{
	struct disp *d = f->d;

	if (f->relay == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	hrelay_unref_locked(f->relay);
	pthread_mutex_unlock(&d->lock);
	f->relay = NULL;
}

/* Loop thread: r is over; its request gets the answer. */
static void
hrelay_handle_closed(uv_handle_t *h)
{
	struct hrelay	*r = h->data;
	struct disp	*d = r->d;

	if (--r->handles > 0)
		return;
	pthread_mutex_lock(&d->lock);
	hrelay_unref_locked(r);
	pthread_mutex_unlock(&d->lock);
}

/* Loop thread: r is over (failed or answered); its request resumes. */
static void
hrelay_done(struct hrelay *r, int failed)
{
	struct disp *d = r->d;

	if (r->state == HRS_DONE)
		return;
	r->failed = failed;
	if (r->polling) {
		uv_poll_stop(&r->poll);
		uv_close((uv_handle_t *)&r->poll, hrelay_handle_closed);
	}
	uv_timer_stop(&r->timer);
	uv_close((uv_handle_t *)&r->timer, hrelay_handle_closed);
	close(r->fd);
	r->fd = -1;
	pthread_mutex_lock(&d->lock);
	TAILQ_REMOVE(&d->relays, r, link);
	r->state = HRS_DONE;
	d->nrelays--;
	MHD_resume_connection(r->c);
	pthread_mutex_unlock(&d->lock);
}

static void
hrelay_timeout(uv_timer_t *t)
{
	hrelay_done(t->data, 1);
}

/* The answer so far: 1 once complete, 0 for more, -1 if malformed. */
static int
hrelay_parse(struct hrelay *r, int eof)
{
	char	err[ERR_LEN];
	ssize_t	n;

	if (r->hlen == 0) {
		n = httpt_parse_response((char *)r->in, r->inlen, &r->resp,
		    err);
		if (n < 0 || (n == 0 && (eof || r->inlen >= HRELAY_HEAD_MAX)))
			return -1;
		if (n == 0)
			return 0;
		/* The worker always says how long, never codes. */
		if (r->resp.chunked || r->resp.clen < 0 ||
		    r->resp.clen > HTTPT_BODY_MAX || n > HRELAY_HEAD_MAX)
			return -1;
		r->hlen = n;
	}
	if (r->inlen - r->hlen >= (size_t)r->resp.clen)
		return 1;
	return eof ? -1 : 0;
}

static void
hrelay_io(uv_poll_t *p, int status, int events)
{
	struct hrelay	*r = p->data;
	ssize_t		 n;
	int		 rc;

	if (status < 0) {
		hrelay_done(r, 1);
		return;
	}
	if ((events & UV_WRITABLE) && r->outoff < r->outlen) {
		n = write(r->fd, r->out + r->outoff, r->outlen - r->outoff);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			hrelay_done(r, 1);
			return;
		}
		if (n > 0)
			r->outoff += n;
		if (r->outoff == r->outlen)
			uv_poll_start(&r->poll, UV_READABLE, hrelay_io);
	}
	if (!(events & UV_READABLE))
		return;
	n = read(r->fd, r->in + r->inlen, HRELAY_IN_MAX - r->inlen);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0 || (n == 0 && r->inlen == HRELAY_IN_MAX)) {
		hrelay_done(r, 1);
		return;
	}
	r->inlen += n;
	if ((rc = hrelay_parse(r, n == 0)) != 0)
		hrelay_done(r, rc < 0);
}

/* Loop thread: starts r (RUNNING already). */
static void
hrelay_run(struct disp *d, struct hrelay *r)
{
	r->handles = 1;
	uv_timer_init(d->loop, &r->timer);
	r->timer.data = r;
	if ((r->in = malloc(HRELAY_IN_MAX)) == NULL ||
	    uv_poll_init(d->loop, &r->poll, r->fd) != 0) {
		hrelay_done(r, 1);
		return;
	}
	r->handles++;
	r->polling = 1;
	r->poll.data = r;
	uv_timer_start(&r->timer, hrelay_timeout, HRELAY_MS, 0);
	uv_poll_start(&r->poll, UV_READABLE | UV_WRITABLE, hrelay_io);
}

/* Loop thread: the first queued relay, now RUNNING, or NULL. */
static struct hrelay *
hrelay_next(struct disp *d)
{
	struct hrelay *r;

	pthread_mutex_lock(&d->lock);
	TAILQ_FOREACH(r, &d->relays, link)
		if (r->state == HRS_QUEUED)
			break;
	if (r != NULL)
		r->state = HRS_RUNNING;
	pthread_mutex_unlock(&d->lock);
	return r;
}

static void
hrelay_wake_cb(uv_async_t *a)
{
	struct disp	*d = a->data;
	struct hrelay	*r;

	while ((r = hrelay_next(d)) != NULL)
		hrelay_run(d, r);
}

void
hrelay_init(struct disp *d)
{
	TAILQ_INIT(&d->relays);
	uv_async_init(d->loop, &d->relay_wake, hrelay_wake_cb);
	d->relay_wake.data = d;
}

void
hrelay_stop(struct disp *d)
{
	struct hrelay *r;

	hrelay_wake_cb(&d->relay_wake);
	for (;;) {
		pthread_mutex_lock(&d->lock);
		r = TAILQ_FIRST(&d->relays);
		pthread_mutex_unlock(&d->lock);
		if (r == NULL)
			return;
		hrelay_done(r, 1);
	}
}
