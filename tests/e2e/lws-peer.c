/*
 * lws-peer: a libwebsockets (4.1) peer for tunneld's end-to-end tests, an
 * independent websocket implementation to check tunneld's handshakes
 * against.
 *
 *   lws-peer client HOST PORT PATH [N [SECONDS]]
 *	Connects as a websocket client (no TLS, Origin http://localhost).
 *	Prints "ESTABLISHED" once the handshake completed, then the first N
 *	bytes received (default 20) as "RX" lines of hex, and exits 0.
 *
 *   lws-peer server PORT [N [SECONDS]]
 *	Serves websocket on 127.0.0.1:PORT.  When a client connects, prints
 *	"ESTABLISHED", sends kptunnel's 20-byte lack-offset pattern
 *	(00..09 00..09) as one binary frame, prints what it receives as "RX"
 *	lines of hex, and exits 0 once it has at least N bytes (default 20).
 *
 * Either mode gives up after SECONDS (default 10), printing "TIMEOUT" and
 * exiting 1; a failed connection prints "ERROR <reason>" and exits 1.
 * stdout is flushed after every line.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#define PEER_LACK_LEN	20

static struct {
	int			 server;
	size_t			 want;		/* bytes to receive */
	size_t			 got;
	int			 sent;		/* server: pattern written */
	int			 done;
	int			 status;
	lws_sorted_usec_list_t	 deadline;
} peer = { .want = PEER_LACK_LEN, .status = 1 };

static void
peer_finish(int status)
{
	if (peer.done)
		return;
	peer.done = 1;
	peer.status = status;
}

static void
peer_timeout(lws_sorted_usec_list_t *sul)
{
	(void)sul;
	printf("TIMEOUT after %zu bytes\n", peer.got);
	fflush(stdout);
	peer_finish(1);
}

/* Prints one "RX" line; the client stops after the first want bytes. */
static void
peer_dump(const unsigned char *p, size_t n)
{
	size_t i;

	if (!peer.server && peer.got + n > peer.want)
		n = peer.want - peer.got;
	if (n == 0)
		return;
	fputs("RX", stdout);
	for (i = 0; i < n; i++)
		printf(" %02x", p[i]);
	putchar('\n');
	fflush(stdout);
	peer.got += n;
}

static int
peer_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	unsigned char	 buf[LWS_PRE + PEER_LACK_LEN];
	int		 i;

	(void)user;
	switch (reason) {
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
	case LWS_CALLBACK_ESTABLISHED:
		puts("ESTABLISHED");
		fflush(stdout);
		if (peer.server)
			lws_callback_on_writable(wsi);
		break;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (peer.sent)
			break;
		for (i = 0; i < PEER_LACK_LEN; i++)
			buf[LWS_PRE + i] = (unsigned char)(i % 10);
		if (lws_write(wsi, buf + LWS_PRE, PEER_LACK_LEN,
		    LWS_WRITE_BINARY) != PEER_LACK_LEN) {
			puts("ERROR write failed");
			fflush(stdout);
			peer_finish(1);
			return -1;
		}
		peer.sent = 1;
		puts("SENT lack pattern");
		fflush(stdout);
		break;
	case LWS_CALLBACK_CLIENT_RECEIVE:
	case LWS_CALLBACK_RECEIVE:
		peer_dump(in, len);
		if (peer.got >= peer.want)
			peer_finish(0);
		break;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		printf("ERROR %s\n", in != NULL ? (const char *)in :
		    "connection failed");
		fflush(stdout);
		peer_finish(1);
		break;
	case LWS_CALLBACK_CLIENT_CLOSED:
	case LWS_CALLBACK_CLOSED:
		puts("CLOSED");
		fflush(stdout);
		peer_finish(peer.got >= peer.want ? 0 : 1);
		break;
	default:
		break;
	}
	return 0;
}

static const struct lws_protocols peer_protocols[] = {
	{ .name = "kptunnel", .callback = peer_callback,
	    .rx_buffer_size = 65536 },
	{ .name = NULL }
};

static int
peer_number(const char *s, long min, long max, long *out)
{
	char	*end;
	long	 v;

	v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static _Noreturn void
peer_usage(void)
{
	fputs("usage: lws-peer client HOST PORT PATH [N [SECONDS]]\n"
	    "       lws-peer server PORT [N [SECONDS]]\n", stderr);
	exit(2);
}

int
main(int argc, char **argv)
{
	struct lws_context_creation_info	 info;
	struct lws_client_connect_info		 ci;
	struct lws_context			*ctx;
	char					 host[300];
	long					 port, n = PEER_LACK_LEN;
	long					 secs = 10;
	int					 extra = 0;

	if (argc < 3)
		peer_usage();
	if (strcmp(argv[1], "server") == 0) {
		peer.server = 1;
		extra = 3;
		if (argc > 5 || peer_number(argv[2], 1, 65535, &port) == -1)
			peer_usage();
	} else if (strcmp(argv[1], "client") == 0) {
		extra = 5;
		if (argc < 5 || argc > 7 ||
		    peer_number(argv[3], 1, 65535, &port) == -1)
			peer_usage();
	} else
		peer_usage();
	if (argc > extra && peer_number(argv[extra], 1, 1 << 30, &n) == -1)
		peer_usage();
	if (argc > extra + 1 &&
	    peer_number(argv[extra + 1], 1, 3600, &secs) == -1)
		peer_usage();
	peer.want = (size_t)n;

	lws_set_log_level(LLL_ERR, NULL);
	memset(&info, 0, sizeof(info));
	info.protocols = peer_protocols;
	info.gid = -1;
	info.uid = -1;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
	if (peer.server) {
		info.port = (int)port;
		info.iface = "127.0.0.1";
	} else
		info.port = CONTEXT_PORT_NO_LISTEN;
	if ((ctx = lws_create_context(&info)) == NULL) {
		puts("ERROR cannot create the lws context");
		return 1;
	}
	if (peer.server) {
		printf("LISTENING 127.0.0.1:%ld\n", port);
		fflush(stdout);
	} else {
		snprintf(host, sizeof(host), "%s:%ld", argv[2], port);
		memset(&ci, 0, sizeof(ci));
		ci.context = ctx;
		ci.address = argv[2];
		ci.port = (int)port;
		ci.path = argv[4];
		ci.host = host;
		ci.origin = "http://localhost";
		ci.ietf_version_or_minus_one = -1;
		ci.local_protocol_name = peer_protocols[0].name;
		if (lws_client_connect_via_info(&ci) == NULL) {
			puts("ERROR cannot start the connection");
			fflush(stdout);
			peer_finish(1);
		}
	}
	lws_sul_schedule(ctx, 0, &peer.deadline, peer_timeout,
	    (lws_usec_t)secs * LWS_US_PER_SEC);
	while (!peer.done)
		if (lws_service(ctx, 0) < 0)
			break;
	lws_sul_cancel(&peer.deadline);
	lws_context_destroy(ctx);
	return peer.status;
}
