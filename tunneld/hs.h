#ifndef HS_H
#define HS_H

/*
 * The handshake's state machine (wire spec 5), shared by hs.c (the
 * machinery: reading, the step function, the conn callbacks) and the
 * handlers of each role (hs_server.c, hs_client.c).  The public entry
 * points (hs_start, hs_client, hs_close_all) are in tunneld.h.
 *
 * A handshake is a list of phases per role; in each phase one message is
 * expected, and its handler decides.  As OpenSSH's mon_table says what a
 * monitor state permits, hs_rules says what a phase permits: anything
 * else ends the handshake.
 *
 *   server: LACK --lack--> RESPONSE --response--> DONE
 *                                   `--bad response--> REFUSED --3 s--> DONE
 *   client: LACK --lack--> MAGIC --magic--> CHALLENGE --challenge-->
 *           RESULT --result--> DONE
 */

#include <stddef.h>
#include <stdint.h>

#include "aead.h"
#include "tunneld.h"

/* AuthResult of a server that takes no forward list from its client. */
#define HS_NG_FWDS	"ng: the server takes no forward list from the client"

enum hs_phase {
	HS_LACK,		/* reading the peer's lack-offset pattern */
	HS_MAGIC,		/* client: reading the magic */
	HS_CHALLENGE,		/* client: reading the challenge */
	HS_RESULT,		/* client: reading the result */
	HS_RESPONSE,		/* server: reading the response */
	HS_REFUSED,		/* server: answered "ng", closing after a delay */
	HS_DONE			/* handed over or failed: h is being freed */
};

enum hs_role {
	HS_ROLE_SERVER,
	HS_ROLE_CLIENT
};

/* What a phase reads: the raw lack pattern, or one NORMAL packet on CITI 0. */
enum hs_msg {
	HS_MSG_LACK,
	HS_MSG_MAGIC,		/* 32 raw bytes */
	HS_MSG_CHALLENGE,	/* AuthChallenge JSON */
	HS_MSG_RESPONSE,	/* AuthResponse JSON */
	HS_MSG_RESULT		/* AuthResult JSON */
};

/* What a handler decided. */
enum hs_verdict {
	HS_NEXT,	/* go to the rule's next phase and read on */
	HS_HELD,	/* the handler attached, refused or ended h itself */
	HS_FAIL		/* end h: the reason is in err */
};

/*
 * A handler gets the message's payload (decrypted; NULL, 0 for the lack
 * pattern).  It returns HS_FAIL with err set, never frees h on HS_NEXT, and
 * may free h (hs_fail, hs_attach) only when it returns HS_HELD.
 */
typedef enum hs_verdict (*hs_handler)(struct hs *h, const uint8_t *p,
    size_t n, char *err);

struct hs_rule {
	enum hs_phase	 phase;
	enum hs_msg	 expect;
	hs_handler	 handler;
	enum hs_phase	 next;
};

/*
 * The rule of role in phase, or NULL when that role has no such phase
 * (HS_DONE included): the handshake must then end.
 */
const struct hs_rule *hs_rule_find(enum hs_role role, enum hs_phase phase);

/*
 * Whether this side offers and accepts the AEAD mode: not with -noAead,
 * and not with -encCount 0, which asks for no encryption at all.
 */
#define hs_aead_wanted(o)	(!(o)->no_aead && (o)->enc_count != 0)

/*
 * Both run the AEAD mode, so both announce windows (docs/protocol.md,
 * "Window extension"): h->win gets ours (-window) and the peer's, which
 * is announced (0: not announced, kptunnel's) within [TUN_WINDOW,
 * TUN_WINDOW_MAX].  Returns 0, or -1 with err for any other value.
 */
int	 hs_windows(struct hs *h, int64_t announced, char *err);

/* hs.c: for the handlers. */
enum hs_role hs_role(const struct hs *h);
int	 hs_send(struct hs *h, const void *payload, size_t len);
int	 hs_send_lack(struct hs *h);
void	 hs_fail(struct hs *h, const char *why);
void	 hs_refuse(struct hs *h, const char *result, const char *why);
void	 hs_attach(struct hs *h, struct sess *s, uint64_t peer_read_no);

/* hs_server.c */
enum hs_verdict hs_server_challenge(struct hs *h, const uint8_t *p,
	    size_t n, char *err);
enum hs_verdict hs_server_response(struct hs *h, const uint8_t *p,
	    size_t n, char *err);

/* hs_client.c */
/* Why a server of mode theirs cannot serve a client of mode mine, or NULL. */
const char *hs_client_mode_mismatch(enum cli_mode mine, const char *theirs);
enum hs_verdict hs_client_lack(struct hs *h, const uint8_t *p, size_t n,
	    char *err);
enum hs_verdict hs_client_magic(struct hs *h, const uint8_t *p, size_t n,
	    char *err);
enum hs_verdict hs_client_response(struct hs *h, const uint8_t *p,
	    size_t n, char *err);
enum hs_verdict hs_client_result(struct hs *h, const uint8_t *p, size_t n,
	    char *err);

#endif
