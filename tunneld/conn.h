#ifndef CONN_H
#define CONN_H

/*
 * One transport connection: a TCP socket carrying the kptunnel byte stream,
 * raw or inside websocket frames after an HTTP/1.1 upgrade, or a series of
 * plain HTTP/1.1 requests (the HTTP transport, conn_hts.c and conn_htc.c,
 * for proxies that refuse upgrades).  The owner sees only the de-framed
 * byte stream; the conn answers pings and close frames itself and applies
 * framing and client masking to what the owner sends.
 */

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "proxy.h"
#include "ws.h"

#define CONN_HEADROOM	WS_HDR_MAX

/*
 * Output bounds.  The session never queues more than about 2 x its
 * coalescing size (TUN_COALESCE) on a conn, so only what the conn adds by
 * itself (pongs, close frames) can pass CONN_WQ_HIGH: past it the peer is
 * not reading and the conn stops reading it, until the queue is below
 * CONN_WQ_LOW.  Pongs queued behind a peer that does not read close the
 * conn once they pass CONN_CTRL_BACKLOG_MAX.
 */
#define CONN_WQ_HIGH		(1024 * 1024)
#define CONN_WQ_LOW		(256 * 1024)
#define CONN_CTRL_BACKLOG_MAX	(64 * 1024)

struct conn;

/*
 * An output buffer: data starts CONN_HEADROOM bytes into mem so that the
 * conn can put a frame header in front without copying.
 */
struct obuf {
	uv_write_t	 req;		/* first: the write callback casts */
	struct conn	*conn;
	size_t		 len;		/* payload bytes after the headroom */
	size_t		 cap;
	uint8_t		 mem[];
};

struct conn_cbs {
	/* The transport is ready; bytes that followed the HTTP head are
	 * delivered next through on_data. */
	void	(*on_open)(struct conn *c, void *arg);
	void	(*on_data)(struct conn *c, void *arg, uint8_t *p, size_t n);
	/* A write reached the kernel: room to send more, see conn_pending. */
	void	(*on_drain)(struct conn *c, void *arg);
	/* The conn is gone (handle closed); reason says why.  The conn is
	 * freed after this returns. */
	void	(*on_close)(struct conn *c, void *arg, const char *reason);
};

/* What a server-side conn learned from the upgrade request. */
struct conn_http {
	char	target[2048];
};

enum conn_kind {
	CONN_RAW_SERVER,
	CONN_RAW_CLIENT,
	CONN_WS_SERVER,
	CONN_WS_CLIENT,
	CONN_HTTP_SERVER,	/* was a CONN_WS_SERVER: see conn_hts_allow */
	CONN_HTTP_CLIENT	/* conn_new_http */
};

struct conn_client_params {
	const char	*host_port;	/* Host header, CONNECT target */
	const char	*path_query;	/* request-target */
	const char	*extra_header;	/* "Name: value" or NULL */
	const struct proxy *proxy;	/* HTTP CONNECT first, or NULL */
	const char	*user_agent;	/* for the proxy */
	void		*ssl_ctx;	/* SSL_CTX: TLS first, or NULL */
	const char	*tls_host;	/* SNI and certificate name */
	int		 tls_verify_name;
};

/*
 * Takes over an accepted or connected TCP handle (allocated by the caller
 * with malloc, initialised, open).  For a ws client it sends the upgrade
 * request at once; for a ws server it waits for one.  On failure the
 * handle is closed and freed and NULL is returned.
 */
struct conn	*conn_new(uv_loop_t *loop, uv_tcp_t *tcp, enum conn_kind kind,
		    const struct conn_client_params *cp,
		    const struct conn_cbs *cbs, void *arg, char *err);

/*
 * Takes over a websocket whose upgrade someone else (the dispatcher) did,
 * with the npre bytes it had already read.  Nothing is read until
 * conn_kick(), once the owner is set.
 */
struct conn	*conn_adopt(uv_loop_t *loop, uv_tcp_t *tcp, const uint8_t *pre,
		    size_t npre, char *err);
void		 conn_kick(struct conn *c);
int		 conn_is_open(const struct conn *c);

/* A buffer for at least n payload bytes. */
struct obuf	*conn_obuf(size_t n);

/*
 * Sends b (one websocket frame, or raw bytes) and takes ownership of it.
 * Returns 0, or -1 if the conn is closing (b is freed).
 */
int		 conn_send(struct conn *c, struct obuf *b);

/* Bytes handed to the kernel but not yet written. */
size_t		 conn_pending(const struct conn *c);

/* Stops delivering data until conn_resume(); used for back-pressure. */
void		 conn_pause(struct conn *c);
void		 conn_resume(struct conn *c);

/*
 * Why a conn closed.  The reason, not its text, decides how it closes:
 * see conn_why_sends_close().  The text given with it (on_close's reason)
 * is only for logs.
 */
enum conn_why {
	CONN_WHY_OWNER,		/* the owner called conn_close() */
	CONN_WHY_PEER_EOF,	/* the peer closed TCP */
	CONN_WHY_PEER_CLOSE,	/* the peer's websocket close (answered) */
	CONN_WHY_IO,		/* a read or write failed */
	CONN_WHY_PROTOCOL,	/* the peer broke HTTP, websocket or proxy
				 * rules (for websocket, a close frame with
				 * the code was sent first) */
	CONN_WHY_TLS,		/* TLS failed, or the peer closed it */
	CONN_WHY_REFUSED,	/* we refused the upgrade (HTTP status) */
	CONN_WHY_BACKLOG,	/* the peer does not read what it asked for */
	CONN_WHY_RESOURCE,	/* out of memory, or a request we cannot send */
	CONN_WHY_HANDED,	/* its request belonged to an HTTP transport
				 * that exists: the owner just lets it go */
	CONN_NWHY
};

/* The reason's name for logs; "?" if out of range. */
const char	*conn_why_name(enum conn_why why);

/*
 * 1 if an open websocket conn closing for this reason sends a close frame
 * (code 1000) first, 0 if not: the peer's own close was answered already.
 */
int		 conn_why_sends_close(enum conn_why why);

/* Why c is closing; meaningful once conn_close or a failure closed it. */
enum conn_why	 conn_why(const struct conn *c);

/*
 * The owner closes: with a websocket close frame if open (CONN_WHY_OWNER);
 * reason is the text on_close gets.  on_close follows.
 */
void		 conn_close(struct conn *c, const char *reason);
/* As conn_close, with reason (up to 123 bytes) in the close frame, for
 * the peer to log; what the peer still sends is read and dropped until
 * it closes, CONN_LINGER_MS at most, so that it reads the frame. */
#define CONN_LINGER_MS	2000
void		 conn_close_telling(struct conn *c, const char *reason);

/* Replaces the callbacks' argument (a conn moves from listener to session). */
void		 conn_set_owner(struct conn *c, const struct conn_cbs *cbs,
		    void *arg);

const struct conn_http *conn_http(const struct conn *c);
const char	*conn_peer(const struct conn *c);	/* "addr:port" */
int		 conn_is_ws(const struct conn *c);

/* The peer's address (getpeername at accept); -1 if unknown. */
int		 conn_peer_addr(const struct conn *c,
		    struct sockaddr_storage *ss);

/*
 * A ws client whose upgrade the server answered with another status than
 * 101: that status, and in *session_unknown whether the answer said the
 * session is unknown there (wsup.h, WSUP_SESSION_HDR).  0 when the
 * upgrade was not refused by an HTTP answer.
 */
int		 conn_upgrade_refusal(const struct conn *c,
		    int *session_unknown);

/* Refuses a server-side ws request with an HTTP status and closes. */
void		 conn_http_refuse(struct conn *c, int status, const char *body);

/*
 * The HTTP transport (docs/protocol.md).  A client transport dials sa
 * (the server, or the -proxy) for each request; the open request goes on
 * tcp, connected to sa already.  Through a proxy, plain HTTP requests go
 * in a forward proxy's absolute-form, TLS ones through CONNECT.  The conn
 * is open once the server answered the open; a refused open reads as a
 * refused upgrade (conn_upgrade_refusal).  On failure tcp is closed and
 * freed and NULL is returned.
 */
struct conn	*conn_new_http(uv_loop_t *loop, uv_tcp_t *tcp,
		    const struct sockaddr *sa,
		    const struct conn_client_params *cp,
		    const struct conn_cbs *cbs, void *arg, char *err);
int		 conn_is_http(const struct conn *c);

/*
 * Whether websocket server conns take the HTTP transport's requests too
 * (1, the default) or refuse them (0: -transport ws).  Per process.
 */
void		 conn_hts_allow(int on);

/* The peer's name for logs, when getpeername cannot tell (a relay). */
void		 conn_set_peer_name(struct conn *c, const char *name);

/* The status with which an HTTP proxy refused our CONNECT, or 0. */
int		 conn_proxy_refusal(const struct conn *c);

#endif
