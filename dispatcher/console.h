#ifndef CONSOLE_H
#define CONSOLE_H

/*
 * The admin console's own modules, internal to it (disp.h has what the
 * rest of the dispatcher calls: console_init, _start, _stop, _free and
 * console_note_*):
 *
 *   console.c          the daemon, routing, the checks every request
 *                      passes (Host, Origin, Sec-Fetch-Site, token, JSON)
 *   console_api.c      JSON answers: tunnels, stop, reload, status
 *   console_metrics.c  /metrics, Prometheus text
 *   console_events.c   the ring of recent events, the sampler, the event
 *                      streams (server-sent events) the page listens to
 *   console_page.c     the page's files, compiled in
 *
 * Threads: libmicrohttpd runs a thread per connection (at most
 * CONSOLE_MAX_CONN), so a handler may block (a worker's figures, an
 * event stream waiting for news); console_events.c adds one sampler
 * thread while a stream is open.  struct console is shared under its own
 * lock, never taken together with disp.lock.
 */

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "disp.h"

#define CONSOLE_MAX_CONN	64	/* connections, streams included */
#define CONSOLE_CONN_TIMEOUT	30	/* s idle, an API connection */
#define CONSOLE_MAX_STREAMS	8	/* event streams at once */
#define CONSOLE_STREAM_TIMEOUT	15	/* s without a byte sent: dropped */
#define CONSOLE_STREAM_SNDBUF	65536	/* a stream's socket send buffer */
#define CONSOLE_HEARTBEAT_MS	5000	/* a stream says something this often */
#define CONSOLE_SAMPLE_MS	1000	/* figures of every tunnel, this often */
#define CONSOLE_RING		64	/* recent events kept */
#define CONSOLE_EVENT_LEN	640	/* one event as JSON, at most */
#define CONSOLE_SAMPLE_TUNNELS	1000	/* tunnels listed in a sample */
#define CONSOLE_REASON_LEN	200	/* of a refusal's or an exit's reason */

/*
 * console.c: answers.  console_send queues body (malloc'd, freed whatever
 * happens) with type and the console's headers: what to give
 * libmicrohttpd.
 */
enum MHD_Result console_send(struct MHD_Connection *c, int status,
	    const char *type, char *body);
/* v as JSON (its reference taken). */
enum MHD_Result console_json(struct MHD_Connection *c, int status,
	    json_t *v);
/* {"error": msg} */
enum MHD_Result console_error(struct MHD_Connection *c, int status,
	    const char *msg);
/* The headers of every answer: no caching, no sniffing, no framing, no
 * referrer. */
void	 console_headers(struct MHD_Response *resp);
/* s as printable ASCII (newlines and tabs kept) into out (cap bytes,
 * NUL-terminated): anything else becomes '?', so that a peer's or a
 * script's text is valid in JSON. */
void	 console_printable(char *out, size_t cap, const char *s);

/*
 * console_api.c.  console_snapshot: the registry's workers, each
 * referenced, into *out (the caller's to console_release): their number.
 */
size_t	 console_snapshot(struct disp *d, struct dworker ***out);
void	 console_release(struct disp *d, struct dworker **v, size_t n);
/* w's byte counts as its figures say, kept for when it ends (the
 * counters of /metrics count ended tunnels too). */
struct ctlmsg_stats;
void	 console_remember(struct dworker *w, const struct ctlmsg_stats *st);
/* w as the API lists it, with its figures (asked of the worker, which may
 * block up to its deadline).  NULL without memory. */
json_t	*console_tunnel(struct dworker *w);
/* The dispatcher's counters and its policy (files, load, last reload). */
json_t	*console_status(struct disp *d);
/* GET /api/tunnels, GET /api/status, POST /api/tunnels/ID/stop,
 * POST /api/reload. */
enum MHD_Result console_tunnels(struct MHD_Connection *c, struct disp *d);
enum MHD_Result console_status_answer(struct MHD_Connection *c,
	    struct disp *d);
enum MHD_Result console_stop_tunnel(struct MHD_Connection *c,
	    struct disp *d, const char *id);
enum MHD_Result console_reload(struct MHD_Connection *c, struct disp *d);

/* console_metrics.c: GET /metrics. */
enum MHD_Result console_metrics(struct MHD_Connection *c, struct disp *d);

/*
 * console_events.c.  console_events_new: the ring and the sampler's state
 * (not its thread): NULL without memory.
 */
struct console_events *console_events_new(void);
/* Starts the sampler thread: 0, or -1 with err. */
int	 console_events_start(struct disp *d, char *err);
/* Ends every stream's wait and the sampler thread (joined), before
 * libmicrohttpd's daemon stops. */
void	 console_events_stop(struct disp *d);
void	 console_events_free(struct console_events *ev);
/* GET /api/events: a stream of server-sent events, or 503 when
 * CONSOLE_MAX_STREAMS are open. */
enum MHD_Result console_stream(struct MHD_Connection *c, struct disp *d);
/* GET /api/events/recent: the ring as a JSON list. */
enum MHD_Result console_recent(struct MHD_Connection *c, struct disp *d);
/* Adds one event to the ring and wakes the streams; v's reference is
 * taken.  Any thread. */
void	 console_events_push(struct disp *d, const char *kind, json_t *v);

/*
 * console_page.c: the page's file at url ("/", "/console.js",
 * "/console.css"), answered with its type and the page's content security
 * policy; MHD_NO with *found 0 if url is none of them.
 */
enum MHD_Result console_page(struct MHD_Connection *c, const char *url,
	    int *found);

/* The console's state (d->con). */
struct console {
	struct console_events	*ev;
};

#endif
