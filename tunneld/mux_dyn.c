/*
 * A client's dynamic forwards: listeners whose connections each name
 * their destination, by a SOCKS5 request (socks.c) or by where they were
 * going before a firewall redirected them here (tproxy.c).  The server
 * decides what it dials (its destination patterns, mux_dial.c).  Like
 * the forward listeners of mux_lsn.c they belong to the session and open
 * once it is established.  See mux.c.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mux_int.h"
#include "tunneld.h"

struct dlsn {
	SLIST_ENTRY(dlsn) link;
	uv_tcp_t	 tcp;
	struct sess	*s;
	int		 kind;		/* CLI_DYN_* */
};

static void
mux_dyn_accept_cb(uv_stream_t *server, int status)
{
	struct dlsn	*l = server->data;

	if (status < 0 || l->s->closing)
		return;
	if (l->kind == CLI_DYN_SOCKS)
		socks_accept(l->s, server);
	else
		tproxy_accept(l->s, server);
}

static void
mux_dyn_closed(uv_handle_t *h)
{
	struct dlsn	*l = h->data;
	struct sess	*s = l->s;

	free(l);
	sess_unref(s);
}

static const char *
mux_dyn_name(int kind)
{
	return kind == CLI_DYN_SOCKS ? "SOCKS5" : "transparent";
}

static int
mux_dyn_listen(struct sess *s, const struct cli_dyn *d)
{
	struct dlsn	*l;
	struct addrinfo	 hints;
	struct hostinfo	 h;
	uv_getaddrinfo_t req;
	char		 host[ADDR_NAME_MAX + 16], port[16];
	int		 rc;

	memset(&h, 0, sizeof(h));
	snprintf(h.name, sizeof(h.name), "%s", d->host);
	h.port = d->port;
	addr_format(&h, host, sizeof(host));
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", d->port);
	rc = uv_getaddrinfo(s->tun->loop, &req, NULL, d->host, port, &hints);
	if (rc < 0) {
		log_err("%s listener %s: %s", mux_dyn_name(d->kind), host,
		    uv_strerror(rc));
		return -1;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL) {
		uv_freeaddrinfo(req.addrinfo);
		return -1;
	}
	l->s = s;
	l->kind = d->kind;
	uv_tcp_init(s->tun->loop, &l->tcp);
	l->tcp.data = l;
	s->handles++;
	SLIST_INSERT_HEAD(&s->dlsns, l, link);
	rc = uv_tcp_bind(&l->tcp, req.addrinfo->ai_addr, 0);
	uv_freeaddrinfo(req.addrinfo);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&l->tcp, 128, mux_dyn_accept_cb);
	if (rc < 0) {
		log_err("%s listener %s: %s", mux_dyn_name(d->kind), host,
		    uv_strerror(rc));
		return -1;
	}
	if (d->kind == CLI_DYN_SOCKS && s->tun->o->socks_auth == NULL &&
	    strcmp(d->host, "127.0.0.1") != 0 && strcmp(d->host, "::1") != 0 &&
	    strcmp(d->host, "localhost") != 0)
		log_warnx("SOCKS5 listener %s takes clients without a "
		    "password: whoever reaches it uses the tunnel (see "
		    "-socksAuthFile)", host);
	log_info("%s: listening on %s", d->kind == CLI_DYN_SOCKS ? "socks" :
	    "transparent", host);
	return 0;
}

int
mux_dyn_start(struct sess *s)
{
	const struct cli_opts	*o = s->tun->o;
	size_t			 i;

	for (i = 0; i < o->ndyn; i++)
		if (mux_dyn_listen(s, &o->dyn[i]) == -1)
			return -1;
	return 0;
}

void
mux_dyn_stop(struct sess *s)
{
	struct dlsn *l;

	while ((l = SLIST_FIRST(&s->dlsns)) != NULL) {
		SLIST_REMOVE_HEAD(&s->dlsns, link);
		uv_close((uv_handle_t *)&l->tcp, mux_dyn_closed);
	}
	socks_stop(s);
}

void
mux_dyn_tick(struct sess *s, uint64_t now)
{
	socks_tick(s, now);
}
