#ifndef WSUP_H
#define WSUP_H

/*
 * The websocket opening handshake (RFC 6455 4) of both roles, as
 * golang.org/x/net/websocket speaks it (wire spec 2.2, 2.3): the client's
 * request and the check of the server's answer, the server's parse of the
 * request and its 101 answer.  No I/O; heads are read with http.h.
 */

#include <stddef.h>
#include <sys/types.h>

#include "http.h"

/* Longest head either side reads; a longer one is refused. */
#define WSUP_HEAD_MAX	HTTP_HEAD_MAX

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key GUID)), 28 chars + NUL. */
int	wsup_accept_key(const char *key, char out[29]);

/*
 * Client handshake, exactly as the Go client writes it (wire spec 2.2):
 * GET <path_query> HTTP/1.1, Host, Upgrade, Connection, Sec-WebSocket-Key,
 * Origin: http://localhost, Sec-WebSocket-Version, then extra_header (a full
 * "Name: value" line without CRLF, or NULL).  key is base64 of 16 bytes.
 * Returns the length written (without NUL) or -1 if cap is too small, an
 * argument is missing, or one holds CR or LF (header injection).
 */
int	wsup_client_request(char *out, size_t cap, const char *host_port,
	    const char *path_query, const char *key, const char *extra_header);

/*
 * Checks the server's response to the key sent (status 101, Upgrade
 * websocket, Connection upgrade, Accept correct, no extensions or protocol).
 * Returns the length of the response head including the final CRLFCRLF (the
 * bytes after it are websocket frames), 0 if the head is incomplete, -1 if it
 * is refused (err holds the status line or the reason).  A head longer than
 * WSUP_HEAD_MAX is an error.
 */
ssize_t	wsup_client_check_response(const char *buf, size_t len,
	    const char *key, char *err);

/*
 * A dispatcher answers a Reconnect or Disconnect of a session that no
 * worker of its holds with 404 and this header, so that a client tells
 * "this host does not know the session" from any other 404 (a proxy's, a
 * wrong path's).  Other peers never send it.
 */
#define WSUP_SESSION_HDR	"Tunnel-Session"
#define WSUP_SESSION_UNKNOWN	"unknown"

/*
 * What a refused answer says, once wsup_client_check_response() refused a
 * complete head for its status: its status code, and in *session_unknown
 * 1 when it carries WSUP_SESSION_HDR: WSUP_SESSION_UNKNOWN (0 otherwise).
 * Returns the status (100..999), or -1 when buf holds no complete head
 * with an "HTTP/1.x DDD" status line and well-formed header lines.
 */
int	wsup_client_refusal(const char *buf, size_t len, int *session_unknown);

/* What the server keeps of an upgrade request. */
struct wsup_req {
	char	target[2048];		/* request-target, e.g. /?session=x */
	char	key[64];		/* Sec-WebSocket-Key */
	int	have_origin;
};

/*
 * The RFC 6455 (4.2.1) checks of an upgrade request's header lines, the
 * one rule both tunneld's server and the dispatcher's public port apply:
 * some Upgrade holds the token websocket and some Connection the token
 * upgrade, every Sec-WebSocket-Version is 13, and there is exactly one
 * Sec-WebSocket-Key, padded base64 of 16 bytes.  The method is the
 * caller's to check.  Returns the index in hs of the key, or -1 with
 * *status 400 (not a websocket upgrade) or 426 (version: the answer names
 * the one we speak, RFC 6455 4.4) and the reason in err.
 */
int	wsup_check_headers(const struct http_hdrs *hs, int *status,
	    char *err);

/*
 * Parses an upgrade request head.  Returns the head length (CRLFCRLF
 * included), 0 if incomplete, -1 if refused with *status the HTTP status to
 * answer (400, 405, 414, 426, 431) and the reason in err.
 */
ssize_t	wsup_server_parse_request(const char *buf, size_t len,
	    struct wsup_req *req, int *status, char *err);

/* The 101 response of the Go server (wire spec 2.2).  Returns length or -1. */
int	wsup_server_response(char *out, size_t cap, const char *key);

#endif
