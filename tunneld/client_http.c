/*
 * The client's choice of transport (-transport): websocket, or the HTTP
 * transport (docs/protocol.md, "HTTP transport") once a websocket upgrade
 * or the proxy's CONNECT is refused, with auto.  The choice stays once an
 * HTTP transport opened; while none has, a server that refuses the HTTP
 * transport too sends us back to websocket, so that a refusal that was
 * the server's verdict (its policy, a limit) costs one more attempt and
 * never strands a client on a transport its server lacks.
 */

#include "log.h"
#include "tunneld.h"

/* Answers of a proxy (or a server behind one) that will not upgrade. */
static int
client_refusal_is_upgrade(int status)
{
	switch (status) {
	case 400:	/* the upgrade headers were stripped on the way */
	case 403:
	case 405:
	case 426:
	case 501:
	case 502:
		return 1;
	default:
		return 0;
	}
}

int
client_use_http(const struct tun *t)
{
	switch (t->o->transport) {
	case CLI_TRANSPORT_HTTP:
		return 1;
	case CLI_TRANSPORT_WS:
		return 0;
	default:
		return t->http_now;
	}
}

void
client_transport_refused(struct tun *t, const struct conn *c)
{
	int	unknown, status, proxy = 0;

	if (t->o->transport != CLI_TRANSPORT_AUTO || t->stopping)
		return;
	status = conn_upgrade_refusal(c, &unknown);
	if (conn_is_http(c)) {
		if (status == 0 || unknown || t->http_proven || !t->http_now)
			return;
		t->http_now = 0;
		log_warnx("the HTTP transport was refused too (HTTP %d): "
		    "back to websocket", status);
		return;
	}
	if (status == 0 && (status = conn_proxy_refusal(c)) != 0)
		proxy = 1;
	if (status == 0 || unknown || t->http_now ||
	    (!proxy && !client_refusal_is_upgrade(status)) ||
	    (proxy && status == 407))
		return;
	t->http_now = 1;
	log_warnx("%s refused the websocket %s (HTTP %d): trying the HTTP "
	    "transport", proxy ? "the proxy" : "the server", proxy ?
	    "CONNECT" : "upgrade", status);
}

void
client_transport_opened(struct tun *t, const struct conn *c)
{
	if (conn_is_http(c) && !t->http_proven) {
		t->http_proven = 1;
		log_info("HTTP transport open (%s)", t->o->transport ==
		    CLI_TRANSPORT_HTTP ? "-transport http" :
		    "websocket refused");
	}
}
