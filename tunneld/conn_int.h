#ifndef CONN_INT_H
#define CONN_INT_H

/*
 * What the files of the conn module (conn.c: socket, proxy, TLS glue and
 * closing; conn_ws.c: websocket framing and the HTTP upgrade) share, and
 * nobody else sees: the struct and the steps one file calls in the other.
 */

#include <sys/socket.h>

#include "conn.h"
#include "err.h"
#include "ws.h"

#define CONN_RBUF	(256 * 1024)
#define CONN_TBUF	(64 * 1024)

enum conn_state {
	CONN_PROXY,		/* client: CONNECT answer being read */
	CONN_TLS,		/* client: TLS handshake */
	CONN_HANDSHAKE,		/* HTTP upgrade head being read */
	CONN_OPEN,
	CONN_CLOSING
};

struct hts;
struct htc;

struct conn {
	uv_loop_t		*loop;
	uv_tcp_t		*tcp;		/* NULL for the HTTP transport */
	enum conn_kind		 kind;
	enum conn_state		 state;
	const struct conn_cbs	*cbs;
	void			*arg;
	struct ws_dec		 dec;
	char			 key[32];	/* ws client: our key */
	char			*request;	/* ws client: upgrade request */
	struct conn_http	 http;
	int			 refused_status;	/* ws client: see conn.h */
	int			 session_unknown;
	char			 peer[64];
	struct sockaddr_storage	 peer_ss;
	int			 peer_ss_ok;
	enum conn_why		 why;
	char			 reason[ERR_LEN];	/* detail for logs */
	int			 tell;	/* the close frame carries reason */
	uv_timer_t		*linger;	/* a telling close's wait */
	uint8_t			*rbuf;		/* unparsed input at the front */
	size_t			 rlen;
	int			 reading;
	int			 paused;
	int			 throttled;	/* peer not reading: see conn.h */
	size_t			 ctrl_backlog;	/* pong bytes queued */
	uv_shutdown_t		 shutdown;
	struct tls		*tls;		/* client -tls, or NULL */
	uint8_t			*tbuf;		/* TLS records read */
	int			 proxy_status;	/* a refused CONNECT's */
	struct hts		*hts;		/* CONN_HTTP_SERVER */
	struct htc		*htc;		/* CONN_HTTP_CLIENT */
};

/* conn.c */

/* Input is held back: by the owner (conn_pause) or by our output bound. */
int		 conn_held(const struct conn *c);

/* A new buffer holding a copy of n bytes, or NULL. */
struct obuf	*conn_obuf_copy(const void *p, size_t n);

/*
 * Sends b with hlen header bytes in front of its payload (already in the
 * headroom), through TLS if any; takes b.  Returns 0 or -1.
 */
int		 conn_put(struct conn *c, struct obuf *b, size_t hlen);

/* Sends n raw bytes (HTTP heads) without framing.  Returns 0 or -1. */
int		 conn_send_raw(struct conn *c, const void *p, size_t n);

/* Closes c for why, detail for logs (see conn.h's enum conn_why). */
void		 conn_end(struct conn *c, enum conn_why why,
		    const char *detail);

/* The close callback of c's handle (h->data is c): on_close, then free. */
void		 conn_close_cb(uv_handle_t *h);

/* conn_ws.c */

/* A websocket client's key and upgrade request.  Returns 0 or -1. */
int		 conn_ws_client_init(struct conn *c,
		    const struct conn_client_params *cp, char *err);

/*
 * Sends b as one frame of opcode (masked as a client; no header on a raw
 * conn); takes b.  Returns 0 or -1.
 */
int		 conn_ws_frame(struct conn *c, int opcode, struct obuf *b);

/* Sends a control frame with a copy of p (best effort). */
void		 conn_ws_control(struct conn *c, int opcode, const void *p,
		    size_t n);

/*
 * Reads the upgrade head (request or answer) from the input buffer.
 * Returns 0 (open now, or need more), -1 if the conn closed.
 */
int		 conn_ws_upgrade(struct conn *c);

/*
 * Decodes the buffered frames, while the owner takes them.  Returns -1
 * if the conn closed.
 */
int		 conn_ws_deliver(struct conn *c);

/* conn_hts.c: the HTTP transport's server side. */

/*
 * A server conn's complete head c->rbuf[0..hlen): 0 if it is no request
 * of the HTTP transport (the upgrade goes on), else the request is taken:
 * an open makes c a transport (0 with c open), anything else goes to its
 * transport and c ends (-1, as when the request is refused).
 */
int		 conn_hts_take(struct conn *c, size_t hlen);
int		 conn_hts_send(struct conn *c, struct obuf *b);
size_t		 conn_hts_pending(const struct conn *c);
void		 conn_hts_resume(struct conn *c);
/* conn_end's part, c CLOSING with why and reason set. */
void		 conn_hts_end(struct conn *c);
/* What is left once c's handle closed. */
void		 conn_hts_free(struct conn *c);

/* conn_htc.c: the client side; the same, for a CONN_HTTP_CLIENT. */
int		 conn_htc_send(struct conn *c, struct obuf *b);
size_t		 conn_htc_pending(const struct conn *c);
void		 conn_htc_resume(struct conn *c);
void		 conn_htc_end(struct conn *c);
void		 conn_htc_free(struct conn *c);

#endif
