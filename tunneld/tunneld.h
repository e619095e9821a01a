#ifndef TUNNELD_H
#define TUNNELD_H

/*
 * tunneld: one kptunnel-compatible tunnel endpoint.  The process (struct
 * tun) accepts or dials transport connections; each runs a handshake
 * (hs_), then is attached to a session (sess_) that outlives it and carries
 * the CITIs (mux_) across reconnects.
 */

#include <sys/queue.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "addr.h"
#include "buf.h"
#include "cli.h"
#include "conn.h"
#include "enc.h"
#include "msg.h"
#include "pkt.h"
#include "proxy.h"
#include "ratelog.h"
#include "ctlmsg.h"

#define TUN_SYNC_GROUP		30	/* PACKET_NUM_BASE */
#define TUN_WINDOW		59	/* packets beyond the last SYNC group */
#define TUN_COALESCE		(128 * 1024)	/* bytes per transport write */
#define TUN_CONGEST_HIGH	(1024 * 1024)	/* unsent bytes: stop reading */
#define TUN_CONGEST_LOW		(256 * 1024)
#define TUN_HISTORY_MAX		(64u * 1024 * 1024)
/*
 * Our CITI ids: clear of Go's (which count from 1 on both sides) and of
 * each other's when both ends are tunneld and both listen.
 */
#define TUN_CITI_CLIENT		0x80000001u	/* .. 0xbfffffff */
#define TUN_CITI_SERVER		0xc0000001u	/* .. 0xffffffff */
#define TUN_CITI_SPAN		0x3fffffffu
#define TUN_REFUSE_DELAY_MS	3000
/*
 * The AuthResult of a transient refusal: a listener the new session needs
 * is held by a session whose client is still connected.  Our client retries
 * it (for TUN_BUSY_RETRY_INTERVALS keepalive intervals, the time a server
 * takes to see a dead link); Go's client, as for any "ng", gives up.
 */
#define TUN_RESULT_BUSY		"ng: busy: "
#define TUN_BUSY_RETRY_INTERVALS 4
#define TUN_MAX_CITIS		8192	/* open streams per session */
#define TUN_INBUF_MAX		(PKT_NORMAL_HDR + PKT_MAX_PAYLOAD + 65536)
/*
 * Answers to the peer's stream requests (CTRL_RESP_HEADER) kept for resend
 * without proof that the peer read them.  A refusal is never proven read
 * by a Go peer unless later traffic proves it, so a peer that floods
 * refused requests would grow the history without end: past this many,
 * its connection is dropped (a resume proves what it read and trims).
 */
#define TUN_REPLY_BACKLOG	16384

struct sess;
struct citi;

/* The process. */
struct tun {
	uv_loop_t		*loop;
	struct cli_opts		*o;
	uint8_t			 magic[32];
	int			 exit_code;
	int			 stopping;
	int			 worker;	/* run by the dispatcher */
	/* server */
	uv_tcp_t		 listener;
	TAILQ_HEAD(, sess)	 sessions;
	TAILQ_HEAD(, hs)	 handshakes;
	int64_t			 next_session_id;
	/* client */
	struct sess		*csess;		/* the one session */
	void			*ssl_ctx;	/* SSL_CTX for -tls */
	struct proxy		 proxy;
	int			 use_proxy;
	uv_timer_t		 retry_timer;
	int			 attempts;
	uint64_t		 busy_since;	/* first busy refusal, ms; 0 */
	uv_signal_t		 sigint, sigterm;
};

/* An authenticated transport connection and its per-connection state. */
struct xport {
	struct conn	*conn;
	struct enc	*enc;		/* what we send */
	struct enc	*dec;		/* what we receive */
	struct buf	 in;		/* de-framed bytes not yet parsed */
	int		 proven;	/* the peer sent a packet on it */
};

/* A connection during its handshake. */
struct hs {
	TAILQ_ENTRY(hs)	 link;
	struct tun	*tun;
	struct xport	 x;
	int		 phase;
	int		 done;		/* handed over or failed */
	uv_timer_t	 timer;
	char		 challenge[MSG_STR_MAX];
	int		 refused;	/* waiting to close a refused peer */
};

/* A counted packet kept for sending and, once sent, for resend. */
struct opkt {
	TAILQ_ENTRY(opkt) link;
	uint64_t	 seq;		/* session packet number */
	uint32_t	 citi;
	uint8_t		 kind;		/* PKT_NORMAL or PKT_SYNC */
	uint8_t		 reply;		/* counted in sess->hist_replies */
	int64_t		 packno;	/* SYNC */
	uint32_t	 len;
	uint32_t	 cap;
	uint8_t		 data[];
};
TAILQ_HEAD(opkt_list, opkt);

struct lsn {
	SLIST_ENTRY(lsn) link;
	uv_tcp_t	 tcp;
	struct sess	*s;
	struct fwd	 fwd;
};

struct sess {
	TAILQ_ENTRY(sess) link;
	struct tun	*tun;
	int		 server;
	int64_t		 id;
	char		 token[MSG_STR_MAX];
	struct xport	*x;		/* NULL while detached */
	struct msg_fwdlist eff;		/* effective forward list */
	/* sending */
	struct opkt_list out;		/* unacknowledged, sent or not */
	struct opkt	*cursor;	/* first packet not yet sent */
	uint64_t	 next_seq;	/* seq of the next packet queued */
	uint64_t	 write_no;	/* packets handed to the transport */
	uint64_t	 hist_floor;	/* lowest seq still kept */
	size_t		 hist_bytes;	/* payload bytes kept */
	size_t		 hist_replies;	/* opkts with reply set kept */
	size_t		 unsent_bytes;
	int		 dummy_due;
	int		 congested;
	/* receiving */
	uint64_t	 read_no;
	/* CITIs */
	struct citi	**tab;
	size_t		 tabsz;
	size_t		 nciti;
	uint32_t	 next_citi;
	TAILQ_HEAD(, citi) opening;	/* waiting for CTRL_RESP_HEADER */
	SLIST_HEAD(, lsn) lsns;
	/* timing */
	uv_timer_t	 tick;
	uint64_t	 last_rx;	/* ms, loop time */
	uint64_t	 last_ka;
	uint64_t	 detached_at;
	int		 closing;
	int		 started;	/* listeners opened */
	int		 handles;	/* open libuv handles owned */
	/* counters for logs */
	uint64_t	 bytes_in, bytes_out;
	uint64_t	 bytes_at_tick;	/* activity seen by the last tick */
	int		 trimmed;
	int		 reconnects;
	struct ratelog	 peer_log;	/* warnings the peer can cause */
};

/* hs.c */
void	 hs_start(struct tun *t, struct conn *c);	/* server side */
void	 hs_client(struct tun *t, struct conn *c);
void	 hs_close_all(struct tun *t);

/* sess.c */
struct sess *sess_new(struct tun *t, int server);
void	 sess_attach(struct sess *s, struct xport *x, uint64_t peer_read_no);
void	 sess_detach(struct sess *s, const char *why);
void	 sess_free(struct sess *s, const char *why);
void	 sess_unref(struct sess *s);
int	 sess_can_resume(const struct sess *s, uint64_t peer_read_no,
	    uint64_t peer_write_no, char *err);
struct opkt *sess_opkt_new(size_t cap);
void	 sess_enqueue(struct sess *s, struct opkt *p);
int	 sess_send_ctrl(struct sess *s, const char *p, size_t n);
int	 sess_send_reply(struct sess *s, const char *p, size_t n);
void	 sess_send_sync(struct sess *s, uint32_t citi, int64_t packno);
void	 sess_acked(struct sess *s, uint64_t seq);
void	 sess_on_data(struct sess *s, uint8_t *p, size_t n);
void	 sess_flush(struct sess *s);
void	 xport_free(struct xport *x);

/* mux.c */
void	 mux_init(struct sess *s);
int	 mux_start(struct sess *s);		/* open listeners */
void	 mux_stop(struct sess *s);		/* close everything */
int	 mux_ctrl(struct sess *s, uint8_t *p, size_t n, char *err);
int	 mux_data(struct sess *s, uint32_t id, uint8_t *p, size_t n,
	    char *err);
int	 mux_sync(struct sess *s, uint32_t id, int64_t packno, char *err);
void	 mux_congestion(struct sess *s, int congested);
void	 mux_tick(struct sess *s, uint64_t now);
struct lsn *mux_lsn_find(struct sess *s, const struct fwd *f);
void	 mux_lsn_move(struct lsn *l, struct sess *to);
size_t	 mux_count(const struct sess *s);

/* server.c / client.c */
int	 server_start(struct tun *t, char *err);
void	 server_session_ended(struct tun *t, struct sess *s, const char *why);
struct sess *server_find(struct tun *t, const char *token);
int	 server_claim_listeners(struct tun *t, const struct msg_fwdlist *eff,
	    char *err);
void	 server_take_listeners(struct tun *t, struct sess *s);
void	 client_refused_busy(struct tun *t, const char *result);
int	 client_start(struct tun *t, char *err);
void	 client_free(struct tun *t);
void	 client_connection_lost(struct tun *t, const char *why);
void	 client_transport_proven(struct tun *t);
void	 client_session_ended(struct tun *t, struct sess *s);
void	 client_fatal(struct tun *t, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
void	 tun_stop(struct tun *t, int code);

/* worker.c */
struct worker_config {			/* what CTL_CONFIG names */
	char	sock_path[108];
	char	tenant[128];
	char	id[128];
	char	session[256];
	int	oneshot;
	int	idle_timeout;		/* s without traffic; 0: never */
};

int	 worker_main(int argc, char **argv);
int	 zygote_main(int argc, char **argv);	/* argv[1] "zygote" */
/*
 * What a worker accepts from its dispatcher (ctlmsg_dispatch), in which
 * of a control channel's states: WS_IDLE (fd 3 before CONFIG, a pooled
 * worker), WS_READY (configured), WS_TAKEOVER (fd 3 while a takeover
 * waits for the dispatcher's answer).  A handler's ctx is the channel.
 */
#define WS_IDLE		0x1
#define WS_READY	0x2
#define WS_TAKEOVER	0x4
extern const struct ctlmsg_rule worker_rules[];
extern const size_t worker_nrules;
/* The zygote's: CTL_SPAWN in its one state, ZS_RUN. */
#define ZS_RUN		0x1
extern const struct ctlmsg_rule zygote_rules[];
extern const size_t zygote_nrules;

struct ctlmsg_config;
int	 worker_apply_config(const struct ctlmsg_config *c,
	    struct cli_opts *o, struct worker_config *wc, char *err);
void	 worker_session_ended(struct tun *t, const char *why);
void	 worker_session_authed(struct tun *t);
int	 worker_is_oneshot(const struct tun *t);
void	 worker_stop(struct tun *t);
int	 worker_takeover(struct tun *t, const struct msg_fwdlist *eff,
	    char *err);
int	 worker_listener_take(struct tun *t, const char *src);
void	 worker_listeners_drop(struct tun *t);

#endif
