#ifndef WS_H
#define WS_H

/*
 * RFC 6455 websocket codec for both roles, without I/O.  kptunnel treats the
 * payload of all data frames as one byte stream, so the decoder reports data
 * bytes as they arrive, a frame's payload possibly in several pieces, and
 * never needs a whole data frame in memory.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WS_OP_CONT	0x0
#define WS_OP_TEXT	0x1
#define WS_OP_BINARY	0x2
#define WS_OP_CLOSE	0x8
#define WS_OP_PING	0x9
#define WS_OP_PONG	0xa

/* Close codes the caller sends when ws_dec_next() fails. */
#define WS_CLOSE_NORMAL		1000
#define WS_CLOSE_PROTOCOL	1002
#define WS_CLOSE_TOO_BIG	1009

#define WS_HDR_MAX		14	/* 2 + 8 length + 4 mask */
#define WS_CTL_MAX		125
#define WS_DEFAULT_MAX_FRAME	(16u * 1024 * 1024)

enum ws_role {
	WS_ROLE_SERVER,		/* expects masked frames, sends unmasked */
	WS_ROLE_CLIENT		/* expects unmasked frames, sends masked */
};

enum ws_event_type {
	WS_EV_NONE,		/* bytes consumed (a header), nothing to report */
	WS_EV_DATA,		/* data bytes: ev.data / ev.len, unmasked in place */
	WS_EV_PING,		/* ev.data / ev.len: payload to echo in a pong */
	WS_EV_PONG,
	WS_EV_CLOSE		/* ev.close_code (0 if none), ev.data/len: reason */
};

struct ws_event {
	enum ws_event_type	 type;
	uint8_t			*data;
	size_t			 len;
	int			 close_code;
};

struct ws_dec {
	enum ws_role	role;
	uint64_t	max_frame;	/* largest data payload accepted */
	/* state of the data frame being read, if any */
	int		in_payload;
	uint64_t	remaining;
	uint8_t		mask[4];
	int		masked;
	size_t		mask_off;	/* payload bytes already unmasked, mod 4 */
	int		frag_open;	/* a fragmented message is unfinished */
};

void	ws_dec_init(struct ws_dec *d, enum ws_role role, uint64_t max_frame);

/*
 * Decodes the next event from in[0..len).  Data payload bytes are unmasked in
 * place and returned as WS_EV_DATA pointing into in[].  A control frame is
 * reported only when it is complete in the input.
 * Returns the number of bytes consumed (> 0), 0 when more input is needed
 * (nothing consumed), or -1 on a protocol error with the reason in err and
 * the close code to send in *close_code.
 */
ssize_t	ws_dec_next(struct ws_dec *d, uint8_t *in, size_t len,
	    struct ws_event *ev, int *close_code, char *err);

/*
 * Writes a frame header into out (WS_HDR_MAX bytes) and returns its length.
 * mask is NULL for unmasked (server) frames.
 */
size_t	ws_frame_header(uint8_t *out, int opcode, int fin, uint64_t len,
	    const uint8_t mask[4]);

/* XORs p[0..n) with mask, starting at mask byte (off % 4); word at a time. */
void	ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], size_t off);

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key GUID)), 28 chars + NUL. */
int	ws_accept_key(const char *key, char out[29]);

/*
 * Client handshake, exactly as the Go client writes it (wire spec 2.2):
 * GET <path_query> HTTP/1.1, Host, Upgrade, Connection, Sec-WebSocket-Key,
 * Origin: http://localhost, Sec-WebSocket-Version, then extra_header (a full
 * "Name: value" line without CRLF, or NULL).  key is base64 of 16 bytes.
 * Returns the length written (without NUL) or -1 if cap is too small.
 */
int	ws_client_request(char *out, size_t cap, const char *host_port,
	    const char *path_query, const char *key, const char *extra_header);

/*
 * Checks the server's response to the key sent (status 101, Upgrade
 * websocket, Connection upgrade, Accept correct, no extensions or protocol).
 * Returns the length of the response head including the final CRLFCRLF (the
 * bytes after it are websocket frames), 0 if the head is incomplete, -1 if it
 * is refused (err holds the status line or the reason).  A head longer than
 * WS_HTTP_MAX is an error.
 */
#define WS_HTTP_MAX	16384
ssize_t	ws_client_check_response(const char *buf, size_t len, const char *key,
	    char *err);

/* What the server keeps of an upgrade request. */
struct ws_http_req {
	char	target[2048];		/* request-target, e.g. /?session=x */
	char	key[64];		/* Sec-WebSocket-Key */
	int	have_origin;
};

/*
 * Parses an upgrade request head.  Returns the head length (CRLFCRLF
 * included), 0 if incomplete, -1 if refused with *status the HTTP status to
 * answer (400, 405, 426, 431) and the reason in err.
 */
ssize_t	ws_server_parse_request(const char *buf, size_t len,
	    struct ws_http_req *req, int *status, char *err);

/* The 101 response of the Go server (wire spec 2.2).  Returns length or -1. */
int	ws_server_response(char *out, size_t cap, const char *key);

#endif
