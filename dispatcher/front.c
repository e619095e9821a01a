/*
 * The public port: a libmicrohttpd daemon with upgrades and suspended
 * connections.  It calls fhead.c as connections come and go, admit.c once
 * a request head is complete, and reply.c for a refusal whose delay is
 * over; the loop thread's tick drives the deadlines (front_delay_tick).
 */

#include <sys/socket.h>

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "err.h"
#include "front.h"

void
front_delay_tick(struct disp *d)
{
	static uint64_t	 swept;
	uint64_t	 now = disp_now_ms();

	fhead_sweep(d, now);
	if (now - swept >= 1000) {
		srate_sweep(d, now);
		swept = now;
	}
	reply_tick(d, now);
}

/* The first call of a request: its freq and its -perIp count. */
static enum MHD_Result
front_first_call(struct disp *d, struct MHD_Connection *c, void **req_cls)
{
	struct sockaddr_storage	 ss;
	struct freq		*r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return MHD_NO;
	r->d = d;
	*req_cls = r;
	fhead_done(d, c);
	admit_remote(c, r->remote, sizeof(r->remote), &ss);
	if (!iplimit_take(d, r))
		return reply_now(c, d, 503,
		    "too many requests from this address");
	/* Before a body is read: one too long is refused unread. */
	if (hrelay_too_long(c))
		return reply_now(c, d, 413, "a body of the HTTP transport is "
		    "at most 262144 bytes, with a Content-Length");
	return MHD_YES;		/* headers are all here next call */
}

static enum MHD_Result
front_access(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **req_cls)
{
	struct disp *d = cls;
	struct freq *r = *req_cls;

	if (r == NULL)
		return front_first_call(d, c, req_cls);
	if (r->status != 0)		/* back from the refusal delay */
		return reply_delayed(c, r);
	if (hrelay_started(r))		/* back from the worker */
		return hrelay_answer(c, r);
	if (*upload_data_size != 0) {
		/* Only a push of the HTTP transport has one to keep. */
		hrelay_begin(c, r);
		hrelay_body(r, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (!r->counted)	/* refused at the first call */
		return MHD_NO;
	return admit_request(c, r, url, method);
}

static void
front_completed(void *cls, struct MHD_Connection *c, void **req_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct freq *r = *req_cls;

	if (r == NULL)
		return;
	iplimit_release(r->d, r);
	hrelay_release(r);
	if (r->w != NULL)
		wreg_unref(r->d, r->w);
	free(r);
	*req_cls = NULL;
}

/* On sa, on the listening socket lfd (-1: none), or on neither. */
static struct MHD_Daemon *
front_daemon(struct disp *d, unsigned flags, const struct sockaddr *sa,
    int lfd)
{
	struct MHD_OptionItem	lo[] = {
		{ MHD_OPTION_SOCK_ADDR, 0, (void *)sa },
		{ MHD_OPTION_END, 0, NULL }
	};

	if (lfd != -1) {
		lo[0].option = MHD_OPTION_LISTEN_SOCKET;
		lo[0].value = lfd;
		lo[0].ptr_value = NULL;
	}
	TAILQ_INIT(&d->heads);
	return MHD_start_daemon(flags | MHD_ALLOW_UPGRADE |
	    MHD_ALLOW_SUSPEND_RESUME, 0, fhead_accept, d, front_access,
	    d, MHD_OPTION_ARRAY, lo,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)d->max_pending,
	    /* A bound on idle connections; requests are counted above. */
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	    (unsigned)(d->per_ip < 64 ? 256 : 4 * d->per_ip),
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)d->request_timeout,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
	    MHD_OPTION_NOTIFY_COMPLETED, front_completed, d,
	    MHD_OPTION_NOTIFY_CONNECTION, fhead_notify, d,
	    sa != NULL || lfd != -1 ? MHD_OPTION_THREAD_POOL_SIZE :
	    MHD_OPTION_END, 2u,
	    MHD_OPTION_LISTEN_BACKLOG_SIZE, 511u,
	    MHD_OPTION_END);
}

int
front_start(struct disp *d, char *err)
{
	struct addrinfo	 hints, *res = NULL;
	char		 port[16];
	int		 rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	/* Bound before we gave up root (dpriv_listen): served now. */
	if (d->front_lfd != -1) {
		d->front = front_daemon(d, MHD_USE_EPOLL_INTERNAL_THREAD |
		    (dpriv_family(d->front_lfd) == AF_INET6 ?
		    MHD_USE_DUAL_STACK : 0), NULL, d->front_lfd);
		d->front_lfd = -1;	/* libmicrohttpd's now */
		goto started;
	}
	snprintf(port, sizeof(port), "%d", d->listen.port);
	rc = getaddrinfo(d->listen.name[0] ? d->listen.name : NULL, port,
	    &hints, &res);
	if (rc != 0) {
		err_set(err, "%s: %s", d->listen.name, gai_strerror(rc));
		return -1;
	}
	d->front = front_daemon(d, MHD_USE_EPOLL_INTERNAL_THREAD |
	    (res->ai_family == AF_INET6 ? MHD_USE_DUAL_STACK : 0),
	    res->ai_addr, -1);
	freeaddrinfo(res);
started:
	if (d->front == NULL) {
		err_set(err, "cannot listen on %s:%d", d->listen.name,
		    d->listen.port);
		return -1;
	}
	return 0;
}

int
front_start_unlisted(struct disp *d, char *err)
{
	d->front = front_daemon(d, MHD_USE_INTERNAL_POLLING_THREAD |
	    MHD_USE_NO_LISTEN_SOCKET, NULL, -1);
	if (d->front == NULL) {
		err_set(err, "cannot start libmicrohttpd");
		return -1;
	}
	return 0;
}

int
front_add_connection(struct disp *d, int fd, const struct sockaddr *sa,
    socklen_t len)
{
	return MHD_add_connection(d->front, fd, sa, len) == MHD_YES ? 0 : -1;
}

void
front_stop(struct disp *d)
{
	if (d->front == NULL)
		return;
	/* Suspended connections must be resumed before the daemon stops. */
	reply_resume_all(d);
	MHD_stop_daemon(d->front);
	d->front = NULL;
	/* Closing connections emptied the head counts, not these. */
	iplimit_slots_free(d->ipslots);
	srate_free(d);
}
