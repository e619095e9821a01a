#ifndef MSG_H
#define MSG_H

/*
 * The JSON messages of the kptunnel protocol (wire spec 5.3-5.5, 6.3):
 * AuthChallenge, AuthResponse, AuthResult, and the control channel's
 * CTRL_HEADER / CTRL_RESP_HEADER.  Encoders return a malloc'd buffer and its
 * length (NULL on allocation failure); decoders take untrusted bytes and
 * return 0, or -1 with err.
 */

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define MSG_STR_MAX		256
#define MSG_MAX_FWDS		64
/* The window extension's member (a Go peer never gets one). */
#define MSG_WINDOW_KEY		"TunneldWindow"
/* The UDP extension's member: the UDP forwards (docs/protocol.md). */
#define MSG_UDP_KEY		"TunneldUdp"

#define MSG_CTRL_NONE		0
#define MSG_CTRL_BENCH		1
#define MSG_CTRL_STOP		2

#define MSG_CTRL_HEADER		0x00	/* first payload byte on CITI 0 */
#define MSG_CTRL_RESP_HEADER	0x01
/* A UDP stream's CTRL_HEADER, only between tunneld peers that agreed
 * on UDP forwards (docs/protocol.md, "UDP extension"). */
#define MSG_CTRL_UDP_HEADER	0x80

struct msg_challenge {
	char	ver[MSG_STR_MAX];
	char	challenge[MSG_STR_MAX];
	char	mode[MSG_STR_MAX];
};

/*
 * A forward list in memory holds both kinds: TCP forwards travel in
 * "ForwardList" (null encodes as null), UDP ones (fwd.udp) in
 * "TunneldUdp", which only tunneld peers write.
 */
struct msg_fwdlist {
	int		null;		/* encoded as null rather than [] */
	size_t		n;
	struct fwd	fwds[MSG_MAX_FWDS];
};

struct msg_response {
	char			response[MSG_STR_MAX];
	char			hint[MSG_STR_MAX];
	char			token[MSG_STR_MAX];
	int64_t			write_no;
	int64_t			read_no;
	int			ctrl;
	struct msg_fwdlist	fwds;
	/* "TunneldWindow", only between tunneld peers (docs/protocol.md,
	 * "Window extension"): 0 when absent, and then not written. */
	int64_t			window;
	/* "TunneldUdp": written with fwds' UDP forwards when set (UDP
	 * forwards are never written without it); decoded, the member was
	 * there. */
	int			udp;
};

struct msg_result {
	char			result[MSG_STR_MAX];
	int64_t			session_id;
	char			token[MSG_STR_MAX];
	int64_t			write_no;
	int64_t			read_no;
	struct msg_fwdlist	fwds;
	int64_t			window;		/* as msg_response's */
	int			udp;		/* as msg_response's */
};

struct msg_header {
	struct hostinfo	host;
	uint32_t	citi;
	int		udp;		/* MSG_CTRL_UDP_HEADER */
};

struct msg_resp_header {
	int		result;
	char		mess[MSG_STR_MAX];
	uint32_t	citi;
};

char	*msg_challenge_encode(const struct msg_challenge *m, size_t *len);
int	 msg_challenge_decode(const uint8_t *p, size_t n,
	    struct msg_challenge *m, char *err);
char	*msg_response_encode(const struct msg_response *m, size_t *len);
int	 msg_response_decode(const uint8_t *p, size_t n,
	    struct msg_response *m, char *err);
char	*msg_result_encode(const struct msg_result *m, size_t *len);
int	 msg_result_decode(const uint8_t *p, size_t n, struct msg_result *m,
	    char *err);

/* The UDP forwards of l. */
size_t	 msg_fwdlist_udp(const struct msg_fwdlist *l);
/* Removes l's UDP forwards, keeping the order of the others; how many. */
size_t	 msg_fwdlist_strip_udp(struct msg_fwdlist *l);

/* Control messages include their leading type byte. */
char	*msg_header_encode(const struct msg_header *m, size_t *len);
char	*msg_resp_header_encode(const struct msg_resp_header *m, size_t *len);
/* Returns the type byte (MSG_CTRL_*) and fills the matching struct
 * (MSG_CTRL_UDP_HEADER fills h, with udp set). */
int	 msg_ctrl_decode(const uint8_t *p, size_t n, struct msg_header *h,
	    struct msg_resp_header *r, char *err);

#endif
