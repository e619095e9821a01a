#ifndef SOCKS5_H
#define SOCKS5_H

/*
 * The SOCKS5 protocol of a local listener (RFC 1928, and RFC 1929's
 * username/password): the three messages a client sends, parsed from
 * untrusted bytes, and the answers.  No I/O.  Each parser returns the
 * bytes it consumed, 0 when it needs more, or -1 with the reason in err
 * (and, for a request, the reply code to send before closing).
 */

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define SOCKS5_VERSION		5
#define SOCKS5_AUTH_VERSION	1	/* RFC 1929's sub-negotiation */

/* Methods (RFC 1928 3). */
#define SOCKS5_M_NONE		0x00
#define SOCKS5_M_USERPASS	0x02
#define SOCKS5_M_REFUSED	0xff

/* Commands (RFC 1928 4): only CONNECT is served. */
#define SOCKS5_CMD_CONNECT	0x01

/* Address types. */
#define SOCKS5_ATYP_IPV4	0x01
#define SOCKS5_ATYP_NAME	0x03
#define SOCKS5_ATYP_IPV6	0x04

/* Reply codes (RFC 1928 6). */
#define SOCKS5_REP_OK		0x00
#define SOCKS5_REP_FAILURE	0x01	/* general SOCKS server failure */
#define SOCKS5_REP_NOT_ALLOWED	0x02	/* connection not allowed by ruleset */
#define SOCKS5_REP_NET_UNREACH	0x03
#define SOCKS5_REP_HOST_UNREACH	0x04
#define SOCKS5_REP_REFUSED	0x05	/* connection refused */
#define SOCKS5_REP_TTL		0x06	/* TTL expired: a timeout */
#define SOCKS5_REP_COMMAND	0x07	/* command not supported */
#define SOCKS5_REP_ATYP		0x08	/* address type not supported */

/* The largest messages: greeting 2 + 255, auth 3 + 2 * 255, request
 * 4 + 1 + 255 + 2. */
#define SOCKS5_MSG_MAX		513
#define SOCKS5_REPLY_LEN	10	/* ours: an IPv4 BND.ADDR of 0.0.0.0:0 */
#define SOCKS5_CRED_MAX		255

/* The methods a greeting offers, as bits: 1 << SOCKS5_M_NONE, ... */
#define SOCKS5_OFFERS(m)	(1u << (m))

/*
 * The greeting: VER NMETHODS METHODS.  *offered gets the bits of the
 * methods 0..31 offered (others are ignored).
 */
int	socks5_greeting(const uint8_t *p, size_t n, unsigned *offered,
	    char *err);

/* The method selection we answer a greeting with: 2 bytes. */
void	socks5_method_reply(uint8_t out[2], int method);

/*
 * RFC 1929: VER ULEN UNAME PLEN PASSWD into user and pass (each
 * SOCKS5_CRED_MAX + 1 bytes, NUL-terminated; a name or password holding a
 * NUL is refused).  The caller cleanses pass.
 */
int	socks5_auth(const uint8_t *p, size_t n, char *user, char *pass,
	    char *err);

/* The answer to the sub-negotiation: 2 bytes, status 0 for success. */
void	socks5_auth_reply(uint8_t out[2], int ok);

/*
 * The request: VER CMD RSV ATYP DST.ADDR DST.PORT into dst (name: the
 * IPv4 dotted quad, the IPv6 text without brackets, or the domain name,
 * which must be a plain DNS name).  On -1, *rep is the reply to send:
 * SOCKS5_REP_COMMAND, SOCKS5_REP_ATYP, SOCKS5_REP_HOST_UNREACH (a name
 * that is not one) or SOCKS5_REP_FAILURE (malformed).
 */
int	socks5_request(const uint8_t *p, size_t n, struct hostinfo *dst,
	    int *rep, char *err);

/* A reply with code rep (BND.ADDR 0.0.0.0, port 0): SOCKS5_REPLY_LEN. */
void	socks5_reply(uint8_t out[SOCKS5_REPLY_LEN], int rep);

/*
 * The reply code for a tunnel's refusal of a stream: the text of the
 * peer's CTRL_RESP_HEADER (a tunneld's or Go kptunnel's dial error, or a
 * tunneld refusal "refused: ..."), or "timed out" for no answer.
 */
int	socks5_rep_for(const char *mess);

#endif
