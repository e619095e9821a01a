/*
 * What the page hears live: a ring of recent events (refused admissions
 * with their reason, ended workers with theirs, reloads), a sample of
 * every tunnel's figures once a second, and the event streams
 * (server-sent events, GET /api/events) that carry both.
 *
 * Bounds, because a stream is a connection a page or a local user could
 * hold open: at most CONSOLE_MAX_STREAMS streams (then 503; they need the
 * token like any request); each stream's queue is the one message being
 * sent (a sample and the events since the last one), refilled only once
 * it is out, so a slow reader skips samples rather than queueing them and
 * one that falls CONSOLE_RING events behind is told how many it missed; a
 * reader that takes no byte for CONSOLE_STREAM_TIMEOUT seconds (its
 * socket's send buffer, CONSOLE_STREAM_SNDBUF, full) is dropped by
 * libmicrohttpd.  Every stream says something at least every
 * CONSOLE_HEARTBEAT_MS.  The sampler thread asks the workers for their
 * figures only while a stream is open.
 */

#include <sys/socket.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "console.h"
#include "err.h"
#include "log.h"

#define CONSOLE_STREAM_MAX_QUEUE	(64u << 20)	/* sanity, never reached */

struct console_event {
	uint64_t	 seq;
	char		 text[CONSOLE_EVENT_LEN];	/* a JSON object */
};

struct console_events {
	pthread_mutex_t	 lock;
	pthread_cond_t	 news;		/* streams wait for it */
	pthread_cond_t	 wake;		/* the sampler waits for it */
	struct console_event ring[CONSOLE_RING];
	uint64_t	 next_seq;	/* of the next event; ring[seq % RING] */
	char		*sample;	/* the latest sample, JSON */
	size_t		 sample_len;
	uint64_t	 sample_seq;
	int		 nstreams;
	int		 closing;
	int		 running;	/* the sampler thread */
	pthread_t	 thread;
};

/* One stream: libmicrohttpd's callback argument. */
struct console_stream {
	struct console_events *ev;
	int		 hello;		/* its first message went out */
	uint64_t	 next_ev;	/* seq of the next event it sends */
	uint64_t	 sample_seq;	/* of the last sample it sent */
	struct buf	 out;		/* what is being sent */
};

/* Wall-clock milliseconds: the page draws its graphs against them. */
static json_int_t
console_epoch_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (json_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
console_deadline(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

struct console_events *
console_events_new(void)
{
	struct console_events *ev;

	if ((ev = calloc(1, sizeof(*ev))) == NULL)
		return NULL;
	pthread_mutex_init(&ev->lock, NULL);
	pthread_cond_init(&ev->news, NULL);
	pthread_cond_init(&ev->wake, NULL);
	ev->next_seq = 1;
	return ev;
}

void
console_events_free(struct console_events *ev)
{
	if (ev == NULL)
		return;
	free(ev->sample);
	pthread_cond_destroy(&ev->wake);
	pthread_cond_destroy(&ev->news);
	pthread_mutex_destroy(&ev->lock);
	free(ev);
}

void
console_events_push(struct disp *d, const char *kind, json_t *v)
{
	struct console_events	*ev;
	struct console_event	*e;
	char			*s;

	if (d->con == NULL || v == NULL) {
		json_decref(v);
		return;
	}
	ev = d->con->ev;
	json_object_set_new(v, "kind", json_string(kind));
	json_object_set_new(v, "time", json_integer(console_epoch_ms()));
	pthread_mutex_lock(&ev->lock);
	json_object_set_new(v, "seq", json_integer((json_int_t)ev->next_seq));
	e = &ev->ring[ev->next_seq % CONSOLE_RING];
	e->seq = ev->next_seq++;
	s = json_dumps(v, JSON_COMPACT);
	if (s != NULL && strlen(s) < sizeof(e->text))
		memcpy(e->text, s, strlen(s) + 1);
	else
		snprintf(e->text, sizeof(e->text), "{\"kind\":\"%s\","
		    "\"seq\":%llu,\"time\":%lld,\"truncated\":true}", kind,
		    (unsigned long long)e->seq, (long long)console_epoch_ms());
	pthread_cond_broadcast(&ev->news);
	pthread_mutex_unlock(&ev->lock);
	free(s);
	json_decref(v);
}

void
console_note_refusal(struct disp *d, const char *remote, int status,
    const char *reason)
{
	char why[CONSOLE_REASON_LEN], who[64];

	if (d->con == NULL)
		return;
	console_printable(why, sizeof(why), reason);
	console_printable(who, sizeof(who), remote);
	console_events_push(d, "refusal", json_pack("{ss si ss}", "client",
	    who, "status", status, "reason", why));
}

void
console_note_exit(struct disp *d, const struct dworker *w,
    enum dworker_end why, const char *reason)
{
	char text[CONSOLE_REASON_LEN], tenant[sizeof(w->tenant)],
	    id[sizeof(w->id)];

	if (d->con == NULL)
		return;
	console_printable(text, sizeof(text), reason);
	console_printable(tenant, sizeof(tenant), w->tenant);
	console_printable(id, sizeof(id), w->id);
	console_events_push(d, "exit", json_pack("{ss ss ss si ss ss}",
	    "tenant", tenant, "tunnel", id, "id", w->key, "pid", (int)w->pid,
	    "why", wmon_end_name(why), "reason", text));
}

void
console_note_reload(struct disp *d, int ok, const char *error)
{
	char text[CONSOLE_REASON_LEN];

	if (d->con == NULL)
		return;
	console_printable(text, sizeof(text), error);
	console_events_push(d, "reload", json_pack("{sb ss}", "ok", ok,
	    "error", text));
}

/* Under ev->lock: the events of the ring from seq on, as a JSON list. */
static int
console_ring_list(struct console_events *ev, uint64_t seq, struct buf *b)
{
	const char	*sep = "";
	int		 rc;

	if (seq + CONSOLE_RING < ev->next_seq)
		seq = ev->next_seq - CONSOLE_RING;
	if (seq == 0)
		seq = 1;	/* the first event's */
	rc = buf_append(b, "[", 1, CONSOLE_STREAM_MAX_QUEUE);
	for (; rc == 0 && seq < ev->next_seq; seq++) {
		rc = buf_append(b, sep, strlen(sep), CONSOLE_STREAM_MAX_QUEUE);
		if (rc == 0)
			rc = buf_append(b, ev->ring[seq % CONSOLE_RING].text,
			    strlen(ev->ring[seq % CONSOLE_RING].text),
			    CONSOLE_STREAM_MAX_QUEUE);
		sep = ",";
	}
	if (rc == 0)
		rc = buf_append(b, "]", 1, CONSOLE_STREAM_MAX_QUEUE);
	return rc;
}

enum MHD_Result
console_recent(struct MHD_Connection *c, struct disp *d)
{
	struct console_events	*ev = d->con->ev;
	struct buf		 b = { 0 };
	char			*s;
	int			 rc;

	pthread_mutex_lock(&ev->lock);
	rc = console_ring_list(ev, 0, &b);
	pthread_mutex_unlock(&ev->lock);
	if (rc == -1 || (s = malloc(buf_unread(&b) + 1)) == NULL) {
		buf_free(&b);
		return MHD_NO;
	}
	memcpy(s, buf_head(&b), buf_unread(&b));
	s[buf_unread(&b)] = '\0';
	buf_free(&b);
	return console_send(c, 200, "application/json", s);
}

/* One server-sent event: "event: NAME", the data on one line. */
static int
console_sse(struct buf *b, const char *name, const char *data, size_t n)
{
	char head[64];

	snprintf(head, sizeof(head), "event: %s\ndata: ", name);
	if (buf_append(b, head, strlen(head), CONSOLE_STREAM_MAX_QUEUE) == -1 ||
	    buf_append(b, data, n, CONSOLE_STREAM_MAX_QUEUE) == -1 ||
	    buf_append(b, "\n\n", 2, CONSOLE_STREAM_MAX_QUEUE) == -1)
		return -1;
	return 0;
}

/*
 * Under ev->lock: what s has not sent yet into s->out (its first message:
 * hello, with the ring; then the events since, a gap when it fell more
 * than the ring behind, and the newest sample).  1 if there was news,
 * 0 if not, -1 without memory.
 */
static int
console_stream_news(struct console_stream *s)
{
	struct console_events	*ev = s->ev;
	struct console_event	*e;
	struct buf		 list = { 0 };
	char			 gap[64];
	int			 rc = 0, any = 0;

	if (!s->hello) {
		s->hello = any = 1;
		if ((rc = console_ring_list(ev, 0, &list)) == 0)
			rc = console_sse(&s->out, "hello", (char *)
			    buf_head(&list), buf_unread(&list));
		buf_free(&list);
		s->next_ev = ev->next_seq;
	}
	if (rc == 0 && s->next_ev + CONSOLE_RING < ev->next_seq) {
		snprintf(gap, sizeof(gap), "{\"missed\":%llu}",
		    (unsigned long long)(ev->next_seq - CONSOLE_RING -
		    s->next_ev));
		rc = console_sse(&s->out, "gap", gap, strlen(gap));
		s->next_ev = ev->next_seq - CONSOLE_RING;
	}
	for (; rc == 0 && s->next_ev < ev->next_seq; s->next_ev++) {
		e = &ev->ring[s->next_ev % CONSOLE_RING];
		rc = console_sse(&s->out, "event", e->text, strlen(e->text));
		any = 1;
	}
	if (rc == 0 && ev->sample != NULL && s->sample_seq < ev->sample_seq) {
		rc = console_sse(&s->out, "sample", ev->sample,
		    ev->sample_len);
		s->sample_seq = ev->sample_seq;
		any = 1;
	}
	return rc == -1 ? -1 : any;
}

/*
 * libmicrohttpd's content reader, on the stream's own thread: sends what
 * is queued, else waits for news (a heartbeat comment once
 * CONSOLE_HEARTBEAT_MS passed without any).  The end of the stream when
 * the console stops.
 */
static ssize_t
console_stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct console_stream	*s = cls;
	struct console_events	*ev = s->ev;
	struct timespec		 until;
	size_t			 n;
	int			 rc = 0;

	if (buf_unread(&s->out) == 0) {
		console_deadline(&until, CONSOLE_HEARTBEAT_MS);
		pthread_mutex_lock(&ev->lock);
		while (!ev->closing && (rc = console_stream_news(s)) == 0)
			if (pthread_cond_timedwait(&ev->news, &ev->lock,
			    &until) == ETIMEDOUT) {
				rc = buf_append(&s->out, ": alive\n\n", 9,
				    CONSOLE_STREAM_MAX_QUEUE) == 0 ? 1 : -1;
				break;
			}
		pthread_mutex_unlock(&ev->lock);
		if (ev->closing || rc == -1)
			return MHD_CONTENT_READER_END_OF_STREAM;
	}
	n = buf_unread(&s->out) < max ? buf_unread(&s->out) : max;
	memcpy(out, buf_head(&s->out), n);
	buf_consume(&s->out, n);
	return (ssize_t)n;
}

static void
console_stream_free(void *cls)
{
	struct console_stream	*s = cls;
	struct console_events	*ev = s->ev;

	pthread_mutex_lock(&ev->lock);
	ev->nstreams--;
	pthread_mutex_unlock(&ev->lock);
	buf_free(&s->out);
	free(s);
}

/* A stream's connection: its own idle timeout and a bounded send buffer. */
static void
console_stream_socket(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo	*ci;
	int				 sz = CONSOLE_STREAM_SNDBUF;

	MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT,
	    (unsigned)CONSOLE_STREAM_TIMEOUT);
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci != NULL)
		(void)setsockopt(ci->connect_fd, SOL_SOCKET, SO_SNDBUF, &sz,
		    sizeof(sz));
}

enum MHD_Result
console_stream(struct MHD_Connection *c, struct disp *d)
{
	struct console_events	*ev = d->con->ev;
	struct console_stream	*s;
	struct MHD_Response	*resp;
	enum MHD_Result		 rc;
	int			 full;

	pthread_mutex_lock(&ev->lock);
	if (!(full = ev->closing || ev->nstreams >= CONSOLE_MAX_STREAMS))
		ev->nstreams++;
	pthread_cond_signal(&ev->wake);		/* a sample now */
	pthread_mutex_unlock(&ev->lock);
	if (full)
		return console_error(c, 503, "too many event streams");
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		pthread_mutex_lock(&ev->lock);
		ev->nstreams--;
		pthread_mutex_unlock(&ev->lock);
		return MHD_NO;
	}
	s->ev = ev;
	/* From here on console_stream_free gives the place back. */
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384,
	    console_stream_read, s, console_stream_free);
	if (resp == NULL) {
		console_stream_free(s);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "text/event-stream");
	console_headers(resp);
	console_stream_socket(c);
	rc = MHD_queue_response(c, 200, resp);
	MHD_destroy_response(resp);
	return rc;
}

/* Every tunnel's figures (the first CONSOLE_SAMPLE_TUNNELS), the
 * dispatcher's counters and policy, as one JSON text; NULL without
 * memory. */
static char *
console_sample_make(struct disp *d, int nstreams)
{
	struct dworker	**v;
	json_t		 *o, *a = json_array();
	size_t		  n, i;
	char		 *s;

	n = console_snapshot(d, &v);
	for (i = 0; i < n && i < CONSOLE_SAMPLE_TUNNELS; i++)
		json_array_append_new(a, console_tunnel(v[i]));
	console_release(d, v, n);
	o = json_pack("{sI so sI so si}", "time", console_epoch_ms(),
	    "tunnels", a, "total", (json_int_t)n, "status", console_status(d),
	    "streams", nstreams);
	s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return s;
}

/* The sampler thread: a sample every CONSOLE_SAMPLE_MS while a stream is
 * open (and at once for a new one), none otherwise. */
static void *
console_sampler(void *arg)
{
	struct disp		*d = arg;
	struct console_events	*ev = d->con->ev;
	struct timespec		 until;
	char			*s;
	int			 n;

	pthread_mutex_lock(&ev->lock);
	for (;;) {
		while (!ev->closing && ev->nstreams == 0)
			pthread_cond_wait(&ev->wake, &ev->lock);
		if (ev->closing)
			break;
		n = ev->nstreams;
		pthread_mutex_unlock(&ev->lock);
		s = console_sample_make(d, n);
		pthread_mutex_lock(&ev->lock);
		if (s != NULL) {
			free(ev->sample);
			ev->sample = s;
			ev->sample_len = strlen(s);
			ev->sample_seq++;
			pthread_cond_broadcast(&ev->news);
		}
		if (ev->closing)
			break;
		console_deadline(&until, CONSOLE_SAMPLE_MS);
		pthread_cond_timedwait(&ev->wake, &ev->lock, &until);
	}
	pthread_mutex_unlock(&ev->lock);
	return NULL;
}

int
console_events_start(struct disp *d, char *err)
{
	struct console_events	*ev = d->con->ev;
	int			 rc;

	if ((rc = pthread_create(&ev->thread, NULL, console_sampler, d)) != 0) {
		err_set(err, "console: sampler thread: %s", strerror(rc));
		return -1;
	}
	ev->running = 1;
	return 0;
}

void
console_events_stop(struct disp *d)
{
	struct console_events *ev;

	if (d->con == NULL)
		return;
	ev = d->con->ev;
	pthread_mutex_lock(&ev->lock);
	ev->closing = 1;
	pthread_cond_broadcast(&ev->news);
	pthread_cond_broadcast(&ev->wake);
	pthread_mutex_unlock(&ev->lock);
	if (ev->running)
		pthread_join(ev->thread, NULL);
	ev->running = 0;
}
