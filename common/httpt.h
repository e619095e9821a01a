#ifndef HTTPT_H
#define HTTPT_H

/*
 * The HTTP transport between two tunneld peers (docs/protocol.md, "HTTP
 * transport"): the kptunnel byte stream carried by plain HTTP/1.1
 * requests, for clients behind a proxy that refuses websocket upgrades.
 * One transport is an open (GET, answered with the transport's id), then
 * polls (GET, answered with the server's bytes from the offset the client
 * acknowledges, held until there are some) and pushes (POST, a bounded
 * body at an offset), and a close.  This module is the wire: requests and
 * answers built and parsed, the chunked coding of answers a proxy
 * re-codes.  No I/O.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http.h"

/* Bytes of a push's body and of a poll's answer, at most. */
#define HTTPT_BODY_MAX		(256 * 1024)
/*
 * How long a poll is held for the server's bytes before an empty answer:
 * at most HTTPT_HOLD_MS, or the hold= the poll asks for, from
 * HTTPT_HOLD_MIN_MS up (a client behind a proxy that cuts requests idle
 * for less asks for less).
 */
#define HTTPT_HOLD_MS		15000
#define HTTPT_HOLD_MIN_MS	1000
/* A transport id: 16 random bytes as lower-case hex. */
#define HTTPT_ID_BYTES		16
#define HTTPT_ID_LEN		(2 * HTTPT_ID_BYTES)
/* The id travels in this header (never in the URL, which proxies log);
 * its value HTTPT_UNKNOWN in an answer: no such transport (any more). */
#define HTTPT_HDR_ID		"Tunnel-Transport"
#define HTTPT_UNKNOWN		"unknown"
/* The offset of a poll answer's first byte, or the bytes a push answer
 * says the server holds. */
#define HTTPT_HDR_OFFSET	"Tunnel-Offset"
/*
 * On the last answer of a transport the server closed, with nothing left
 * to poll: why (printable text, at most HTTPT_CLOSED_MAX bytes), for the
 * client to log as it logs a websocket close frame's reason.
 */
#define HTTPT_HDR_CLOSED	"Tunnel-Closed"
#define HTTPT_CLOSED_MAX	120
/* Offsets stay below this (a transport moves less than 4 EiB). */
#define HTTPT_OFF_MAX		(UINT64_C(1) << 62)

enum httpt_kind {
	HTTPT_NONE,		/* no ht= in the query: not ours */
	HTTPT_OPEN,
	HTTPT_POLL,
	HTTPT_PUSH,
	HTTPT_CLOSE,
	HTTPT_BAD		/* ht= with another value */
};

/* A request of the transport as its server reads it. */
struct httpt_req {
	enum httpt_kind	 kind;
	char		 target[2048];	/* origin-form, as received */
	char		 id[HTTPT_ID_LEN + 1];	/* "" for an open */
	uint64_t	 off;		/* push: the body's; poll: the ack */
	size_t		 clen;		/* Content-Length */
	unsigned	 hold_ms;	/* poll: how long to hold it */
};

/* What a request is made of, for its client (or a relay). */
struct httpt_spec {
	enum httpt_kind	 kind;
	const char	*host_port;	/* Host */
	const char	*prefix;	/* "http://host:port" for a forward
					 * proxy (absolute-form), or "" */
	const char	*path_query;	/* "/path?session=S[&mode=M]" */
	const char	*id;		/* NULL for an open */
	uint64_t	 off;		/* push: the body's offset; poll: ack */
	uint64_t	 n;		/* a counter, so no cache answers */
	size_t		 blen;		/* push: the body's length */
	unsigned	 hold_ms;	/* poll: 0, or the hold= asked for */
	const char	*user_agent;	/* NULL: none */
	const char	*proxy_auth;	/* base64 "user:pass" or NULL */
	const char	*extra_header;	/* "Name: value" or NULL */
};

/* An answer of the server, as its client reads it. */
struct httpt_resp {
	int		 status;
	int64_t		 clen;		/* Content-Length, -1: none */
	int		 chunked;	/* Transfer-Encoding: chunked */
	int		 unknown;	/* HTTPT_HDR_ID: HTTPT_UNKNOWN */
	int		 session_unknown;	/* WSUP_SESSION_HDR: unknown */
	char		 id[HTTPT_ID_LEN + 1];	/* a well-formed id, or "" */
	int64_t		 off;		/* HTTPT_HDR_OFFSET, -1: none */
	int		 closed;	/* HTTPT_HDR_CLOSED was there */
	char		 why[HTTPT_CLOSED_MAX + 1];	/* its text */
};

/* The dechunker of an answer's body (RFC 9112 7.1). */
struct httpt_chunked {
	int		 state;
	uint64_t	 left;		/* bytes of the current chunk */
	size_t		 line;		/* bytes of the current line */
	size_t		 trailer;	/* trailer bytes so far */
	int		 digits;
	int		 done;		/* the last chunk and trailers read */
};

/* The kind a request-target names (its ht= query parameter). */
enum httpt_kind httpt_kind_of(const char *target, size_t n);

/* The name of kind for logs ("open", ...). */
const char *httpt_kind_name(enum httpt_kind kind);

/* The method of kind's requests: "GET" (open, poll) or "POST". */
const char *httpt_method(enum httpt_kind kind);

/*
 * Parses the complete head buf[0..hlen) of a request whose target names
 * a kind: method, target, parameters, Content-Length, the id.  Returns 0,
 * or -1 with *status the answer (400, 405, 411, 413, 414, 431) and the
 * reason in err.
 */
int	 httpt_parse_request(const char *buf, size_t hlen,
	    struct httpt_req *r, int *status, char *err);

/*
 * A request head from s into out[0..cap).  Returns its length, or -1 if
 * cap is short or a field holds CR or LF.
 */
int	 httpt_request(char *out, size_t cap, const struct httpt_spec *s);

/*
 * An answer's head: status, the id header (id, or HTTPT_UNKNOWN, or NULL
 * for none), the offset header (off >= 0), blen body bytes of octets (or
 * of text, with text), the closed header when closed is not NULL (its
 * text made printable and cut to HTTPT_CLOSED_MAX), "Connection: close".
 * Returns its length, or -1.
 */
int	 httpt_response(char *out, size_t cap, int status, const char *id,
	    int64_t off, size_t blen, int text, const char *closed);

/*
 * Parses an answer's head from buf[0..len).  Returns the head's length,
 * 0 if it is incomplete, -1 with err if it is malformed or too long.
 */
ssize_t	 httpt_parse_response(const char *buf, size_t len,
	    struct httpt_resp *r, char *err);

/*
 * Decodes the chunked body bytes in[0..n) into out, after the *outn bytes
 * it holds, up to cap in all.  Returns the bytes of in consumed (all of
 * them, or fewer once d->done), or -1 with err on a malformed coding or a
 * body longer than cap.
 */
ssize_t	 httpt_dechunk(struct httpt_chunked *d, const uint8_t *in, size_t n,
	    uint8_t *out, size_t cap, size_t *outn, char *err);

/* A fresh transport id (NUL-terminated, HTTPT_ID_LEN chars): 0, or -1. */
int	 httpt_new_id(char out[HTTPT_ID_LEN + 1], char *err);

/* Whether s[0..n) is a well-formed id. */
int	 httpt_id_valid(const char *s, size_t n);

#endif
