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

#endif
