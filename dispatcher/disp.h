#ifndef DISP_H
#define DISP_H

/*
 * dispatcher: the one public port of a multi-tenant host.  Each websocket
 * upgrade is admitted by the operator's Lua policy and its socket handed to
 * the tunneld worker of its session (front.c and the modules of front.h);
 * workers are spawned, registered and watched by wreg.c, wrpc.c, wspawn.c
 * and wmon.c; console.c and its modules (console.h) serve the admin API,
 * the page and the metrics.
 *
 * Threads: libmicrohttpd's thread pools run the port and console.c; the main
 * thread runs a libuv loop that reaps workers, reads their control
 * channels, fires delayed refusals and handles signals.  The registry is
 * shared under disp.lock.
 */

#include <sys/queue.h>
#include <sys/types.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <uv.h>

#include "addr.h"
#include "ctlmsg.h"
#include "tbucket.h"
#include "hist.h"
#include "policy.h"

#define DISP_MAX_CIDRS		32
#define DISP_KEY_LEN		32	/* hex chars of SHA-256(session) */
#define DISP_REFUSE_DELAY_MS	3000	/* kptunnel's */
#define DISP_HANDOVER_MS	2000
#define DISP_SPAWN_MS		5000
#define DISP_POOL		4	/* idle workers kept ready */
#define DISP_RELEASE_MS		1000	/* replaced workers answer a takeover, in all */
#define DISP_REPLACE_MAX	16	/* workers of one tunnel id asked */
#define DISP_TOKEN_NAME		"console.token"	/* in the state directory */
#define DISP_RATE_SLOTS		4096	/* addresses -spawnRate tracks */
#define DISP_MAX_WORKER_UIDS	1000000	/* -workerUids range, at most */
/* CTL_JOINs of a worker a second (burst as many): twice its tunnel's
 * maxConnectRate, which the worker applies first, else this. */
#define DISP_JOIN_RATE		20000
#define DISP_CTL_BATCH		64	/* messages of a worker a loop turn */

/*
 * A worker's lifecycle as the dispatcher counts it: pending until its
 * first client passes the kptunnel challenge (CTL_AUTHED), then a tunnel.
 * Only tunnels count against -maxSession and the tenants' quotas;
 * pending workers have their own cap, -maxPendingWorkers.
 */
enum dworker_state {
	DW_PENDING,
	DW_AUTHED
};

/*
 * Why a worker's tunnel ended, as the dispatcher saw it (the label of
 * tunneld_worker_exits_total): the worker said so (CTL_END) after a
 * console stop or on its own (session over, idle, a limit); another
 * worker of its tunnel replaced it; its process ended without a word
 * (exit status, a signal, its seccomp filter); it broke the control
 * contract; or an adopted worker's channel closed.
 */
enum dworker_end {
	DWE_ENDED,
	DWE_STOPPED,
	DWE_REPLACED,
	DWE_EXITED,
	DWE_KILLED,
	DWE_SECCOMP,
	DWE_BROKE,
	DWE_LOST,
	DWE_COUNT
};

struct MHD_Daemon;
struct MHD_Connection;
struct console;

struct dworker {
	LIST_ENTRY(dworker) link;
	int		 refs;		/* under disp.lock */
	char		 key[DISP_KEY_LEN + 1];
	char		 session[256];
	char		 sock[108];
	char		 tenant[128];
	char		 id[128];
	char		 mode[16];
	char		 connect_mode[16];
	char		 remote[64];	/* client address of the last hand-over */
	char		 spawn_ip[64];	/* -spawnRate's key of its first client */
	pid_t		 pid;
	uid_t		 uid;		/* its control socket's peer */
	int		 adopted;	/* not our child: a previous dispatcher's */
	int		 ctl_fd;	/* watched for CTL_END / EOF */
	uv_poll_t	 poll;
	int		 polling;
	int		 ended;
	int		 stop_asked;	/* the console stopped it (atomic) */
	int64_t		 last_in;	/* its byte counts as last asked */
	int64_t		 last_out;	/* (atomic), for tunneld_bytes_total */
	enum dworker_state state;	/* under disp.lock */
	time_t		 started;
	unsigned	 handovers;
	struct policy_tunnel info;	/* secrets cleansed after spawn */
	struct policy	*policy;	/* the one that started it (+ref) */
	struct tbucket	 join_tb;	/* its CTL_JOINs (loop thread) */
	int		 join_tb_set;
};
LIST_HEAD(dworker_list, dworker);

#define DISP_IPSLOTS	256	/* buckets of the per-address tables */

/* Live tunnels of one tenant (policy req.tunnels), under disp.lock. */
struct dtenant {
	struct dtenant	*next;
	int		 n;
	char		 name[POLICY_ID_LEN];
};
#define DISP_TENANT_BUCKETS	256
struct ipslot;
struct rateslot;
struct fconn;
struct delayed;
struct hrelay;

/* The policy's calls, timed each (tunneld_policy_seconds{call}). */
enum disp_policy_call {
	DPC_CAN_ACCEPT,
	DPC_GET_TUNNEL,
	DPC_END_TUNNEL,
	DPC_COUNT
};

/* Admissions that reached a worker: a new one, or the session's own. */
enum disp_route {
	DRT_NEW,
	DRT_SESSION,
	DRT_COUNT
};

struct disp_metrics {
	atomic_ulong	 admissions[6];	/* 101, 4xx policy, 400, 404, 5xx, other */
	atomic_ulong	 policy_errors;
	struct hist	 policy[DPC_COUNT];	/* time per call */
	struct hist	 admission[DRT_COUNT];	/* upgrade request to hand-over */
	atomic_ulong	 spawned;
	atomic_ulong	 ended;
	atomic_ulong	 exits[DWE_COUNT];	/* ended, by why */
	atomic_ullong	 ended_in;	/* bytes of ended tunnels, as last */
	atomic_ullong	 ended_out;	/* asked (dworker.last_in/out) */
};

/* The policy files and the last reload, for the console (under lock). */
struct disp_reload {
	time_t		 loaded;	/* when the policy in use was loaded */
	time_t		 at;		/* the last reload asked, 0: none */
	int		 ok;		/* ... and whether it loaded */
	char		 error[256];	/* its error (ERR_LEN) */
};

struct disp {
	/* configuration */
	struct hostinfo	 listen;
	char		 path[256];
	char		 handler_lua[1024];
	char		 canaccept_lua[1024];
	char		 state_dir[1024];
	int		 state_fd;	/* O_DIRECTORY|O_NOFOLLOW, checked */
	int		 join_fd;	/* STATE/join (join.c), -1: none */
	int		 join_wfd;	/* STATE/join/workers */
	char		 tunneld[1024];
	struct hostinfo	 console;
	int		 console_on;
	char		 console_token[256];
	char		 console_token_file[1100];	/* "": in stateDir */
	int		 console_public;
	struct cidr	 cidrs[DISP_MAX_CIDRS];
	size_t		 ncidr;
	int		 max_session;
	int		 reqinfo;
	int		 metrics_per_tenant;	/* -metricsPerTenant */
	int		 verbose;
	int		 log_json;	/* -logFormat json (workers too) */
	int		 per_ip;
	int		 max_pending;
	int		 request_timeout;
	int		 refuse_delay_ms;
	int		 max_pending_workers;
	int		 spawn_rate;	/* per address and second */
	int		 spawn_burst;
	int		 handshake_timeout;
	int		 head_timeout;	/* s, for a whole request head */
	int		 head_per_ip;	/* incomplete heads per address */
	long long	 worker_uid_first;	/* -workerUids, -1: unset */
	long long	 worker_uid_last;
	char		 worker_user[64];	/* -workerUser */
	int		 worker_max_files;	/* -workerMaxFiles */
	int		 no_sandbox;		/* -noSandbox */
	char		 run_user[64];		/* -user, "": unset */
	/* dpriv.c: the user we drop to once the ports are bound */
	int		 run_drop;	/* root with -user: we will drop */
	uid_t		 run_uid;
	gid_t		 run_gid;
	int		 dropped;	/* done: no root any more */
	int		 front_lfd;	/* bound before the drop, -1: none */
	int		 console_lfd;
	/* state */
	pthread_mutex_t	 lock;
	struct policy	*policy;	/* under lock; refcounted */
	struct dworker_list workers;
	int		 nworkers;
	struct dtenant	*tenants[DISP_TENANT_BUCKETS];	/* under lock */
	struct policy_counter counter;	/* req.tunnels: disp_tenant_count */
	pthread_mutex_t	 admit;	/* getTunnelInfo + its reservation */
	int		 nauthed;	/* DW_AUTHED workers */
	int		 npending;	/* DW_PENDING ones and spawns under way */
	TAILQ_HEAD(, delayed) delayed;
	TAILQ_HEAD(, hrelay) relays;	/* HTTP transport, under lock */
	int		 nrelays;	/* relays in progress, under lock */
	uv_async_t	 relay_wake;	/* relays queued for the loop */
	struct ipslot	*ipslots[DISP_IPSLOTS];	/* under lock */
	struct ipslot	*headslots[DISP_IPSLOTS];	/* under lock */
	TAILQ_HEAD(, fconn) heads;	/* under lock */
	struct rateslot	*rateslots[DISP_IPSLOTS];	/* under lock */
	size_t		 nrateslots;
	struct MHD_Daemon *front;
	struct MHD_Daemon *admin;
	uv_loop_t	*loop;
	uv_async_t	 wake;		/* new workers to watch, reload */
	uv_timer_t	 tick;
	uv_signal_t	 sigchld, sighup, sigint, sigterm;
	/* the fork server (tunneld zygote) */
	pthread_mutex_t	 zlock;		/* one spawn request at a time */
	int		 zygote_req;	/* -1: spawn with exec instead */
	int		 zygote_exit;
	int		 pool_fd[DISP_POOL];	/* under lock */
	pid_t		 pool_pid[DISP_POOL];
	uid_t		 pool_uid[DISP_POOL];
	int		 npool;
	int		 pool_closed;
	uv_poll_t	 zpoll;
	/* worker uids (wuid.c): under lock */
	int		 wuid_mode;	/* WUID_SAME, WUID_USER, WUID_RANGE */
	uid_t		 wuid_user;	/* WUID_USER's uid and gid */
	gid_t		 wuid_group;
	pid_t		*wuid_pid;	/* WUID_RANGE: per uid, 0 free, -1 taken */
	size_t		 wuid_next;	/* where wuid_take looks first */
	int		 reload_asked;
	struct disp_reload reload;	/* under lock */
	struct console	*con;		/* the console's state, NULL: off */
	struct disp_metrics m;
};

/*
 * front.c: the public port (its own modules: front.h).  front_start
 * listens on d->listen with libmicrohttpd's pool threads: 0, or -1 with
 * err.  Main thread, at start.
 */
int	 front_start(struct disp *d, char *err);
/* The same without a listening socket, fed by front_add_connection (the
 * fuzzer): 0, or -1 with err. */
int	 front_start_unlisted(struct disp *d, char *err);
/* Gives the connected socket fd (now the daemon's, whatever the result)
 * to an unlisted port: 0, or -1 if libmicrohttpd refused it. */
int	 front_add_connection(struct disp *d, int fd,
	    const struct sockaddr *sa, socklen_t len);
/* Stops the port and frees its per-address tables; a no-op if it is not
 * running.  Main thread, with the loop no longer ticking. */
void	 front_stop(struct disp *d);
/* Loop thread, every tick: head deadlines, -spawnRate buckets and the
 * refusals whose delay is over.  Takes disp.lock itself. */
void	 front_delay_tick(struct disp *d);
/* hrelay.c, loop thread: at start, the relays' queue and wake-up; when
 * stopping, before front_stop, every relay ends (answered 502). */
void	 hrelay_init(struct disp *d);
void	 hrelay_stop(struct disp *d);

/*
 * srate.c (-spawnRate): gives a token back to the bucket of ip (a key
 * srate_take() wrote, kept in dworker.spawn_ip): no worker was started,
 * or its client authenticated.  NULL, "" or an address no longer tracked:
 * a no-op.  Any thread; takes disp.lock.
 */
void	 srate_refund(struct disp *d, const char *ip);

/*
 * wreg.c: the registry.  Any thread; every function takes disp.lock
 * itself (none may be called with it held) unless it says otherwise.
 * References: wreg_find, wreg_find_pid and wreg_same_tunnel return
 * workers with a reference the caller drops with wreg_unref; the last
 * reference frees the entry (its policy reference and its secrets with
 * it), never the process.
 */
/* key (DISP_KEY_LEN + 1 bytes) = the first DISP_KEY_LEN hex chars of
 * SHA-256(session), NUL-terminated.  No lock. */
void	 wreg_key(const char *session, char *key);
/* The live worker of key (+ref), or NULL. */
struct dworker *wreg_find(struct disp *d, const char *key);
/* Our live worker of pid, not adopted (+ref), or NULL. */
struct dworker *wreg_find_pid(struct disp *d, pid_t pid);
/* Up to max other live workers of w's tunnel id into out (+ref each):
 * their number. */
size_t	 wreg_same_tunnel(struct disp *d, struct dworker *w,
	    struct dworker **out, size_t max);
/* Drops one reference to w; the last one frees it (wreg_free). */
void	 wreg_unref(struct disp *d, struct dworker *w);
/* Frees w regardless of references (an entry never registered, or at
 * exit): its secrets cleansed, its policy reference dropped.  NULL: a
 * no-op.  No lock. */
void	 wreg_free(struct dworker *w);
/* Workers registered, pending ones included. */
int	 wreg_count(struct disp *d);
/*
 * Holds a place for a new, pending worker: 0, or -1 (with the HTTP
 * status in *status and the reason in err) when -maxSession tunnels run
 * or -maxPendingWorkers workers wait for their client's authentication.
 * wspawn_start() takes the place over; without it, wreg_unreserve().
 */
int	 wreg_reserve(struct disp *d, int *status, char *err);
/* Gives back a place wreg_reserve() held. */
void	 wreg_unreserve(struct disp *d);
/* Lists w (+ the registry's ref) and wakes the loop to watch it; a
 * pending worker of ours (reserved) fills its wreg_reserve() place. */
void	 wreg_add(struct disp *d, struct dworker *w, int reserved);
/* Unlists w and uncounts it: 1, or 0 if it had ended already.  The
 * registry's reference stays with the caller (wmon_ended drops it). */
int	 wreg_remove(struct disp *d, struct dworker *w);
/* A pending w becomes a tunnel: 1 if that is past -maxSession, 0 if
 * not, -1 if w is not pending (any more). */
int	 wreg_set_authed(struct disp *d, struct dworker *w);
/* For the console: "pending" (no client authenticated yet), else
 * "connected" or "detached" as the worker's figures say.  A static
 * string; reads w->state, so the caller holds disp.lock or a snapshot. */
const char *wreg_state_name(const struct dworker *w, int connected);
/* Main thread at exit, with no other thread left: frees every entry and
 * closes our side of their control channels; the workers keep running. */
void	 wreg_free_all(struct disp *d);

/*
 * wrpc.c: asking a worker, over a connection of its own per exchange.
 * Any thread, no lock held: each call blocks until the worker answers or
 * its deadline passes.
 */
struct ctlmsg;
struct ctlmsg_stats;
/* A control connection to the worker socket at path, checked to be
 * uid's (SO_PEERCRED; WRPC_ANY_UID: the caller checks): the fd (the
 * caller's to close), or -1 with err. */
#define WRPC_ANY_UID	((uid_t)-1)
int	 wrpc_connect(const char *path, uid_t uid, char *err);
/* 1 if a message waits on fd before deadline (disp_now_ms()), else 0
 * (timed out, or poll failed). */
int	 wrpc_wait(int fd, uint64_t deadline);
/* Hands a client socket fd and the bytes read past its request over
 * (CTL_CONN, answered CTL_CONN_OK).  0, or -1 with err.  fd stays the
 * caller's to close either way (the worker holds its own copy). */
int	 wrpc_handover(struct dworker *w, int fd, const void *extra,
	    size_t n, char *err);
/* Hands the worker one end of a relay of a request of the HTTP
 * transport (CTL_CONN marked http, with the client's address remote, for
 * its logs).  As wrpc_handover. */
int	 wrpc_relay(struct dworker *w, int fd, const char *remote, char *err);
/* Asks w to end its tunnel (CTL_STOP, no answer).  0, or -1 with err. */
int	 wrpc_stop(struct dworker *w, char *err);
/* The figures (CTL_STATS) of the worker at sock into st.  0, or -1 with
 * err (st undefined). */
int	 wrpc_stats(const char *sock, uid_t uid, struct ctlmsg_stats *st,
	    char *err);

/* wspawn.c: starting workers (pool, zygote, exec). */
/*
 * Starts ti's worker for session (a place held by wreg_reserve(), given
 * back on failure), configures it and registers it: 0 with *out (+ref,
 * the caller's), or -1 with err (-2: no worker uid is free).  Pool thread, no lock held (it takes
 * disp.lock and disp.zlock itself); p is the caller's (the worker takes
 * a reference of its own), ti's secrets the caller's to cleanse.
 */
int	 wspawn_start(struct disp *d, struct policy *p,
	    const struct policy_tunnel *ti, const char *session,
	    struct dworker **out, char *err);
/* Runs the tunneld program as "tunneld what" with fd3 (and fd4, -1 for
 * none) as its fds 3 (and 4), which stay the caller's: its pid, or -1
 * with err. */
pid_t	 wspawn_exec(struct disp *d, const char *what, int fd3, int fd4,
	    char *err);
/* Loop thread: keeps DISP_POOL idle workers ready (a failed spawn is
 * logged and retried at the next call). */
void	 wspawn_pool_refill(struct disp *d);
/* At exit: closes the idle workers' control sockets, which ends them;
 * no refill afterwards. */
void	 wspawn_pool_close(struct disp *d);
/* Main thread, at start: starts the zygote.  0, or -1 with err (then
 * workers start with exec). */
int	 wspawn_zygote_start(struct disp *d, char *err);
/* The zygote ends when its request socket closes; workers stay. */
void	 wspawn_zygote_stop(struct disp *d);
/*
 * Sends sig to worker pid (adopted: not one the zygote forked).  With
 * root (or workers of our uid), kill(2); once we dropped root, the zygote
 * signals its own workers for us (CTL_KILL).  0, or -1 with err (an
 * adopted worker of another uid, or no zygote, after the drop).  Any
 * thread; takes disp.zlock.
 */
int	 wspawn_signal(struct disp *d, pid_t pid, int adopted, int sig,
	    char *err);

/*
 * dpriv.c: the dispatcher gives up root (-user).  It may start as root to
 * bind a low port and switch worker uids; once the ports are bound, the
 * state directory opened and the zygote started, only the zygote keeps
 * root.  Main thread.
 */
/* At start, before any thread: checks -user (not root, not a worker
 * uid) and sets no_new_privs.  0 (warn: a warning to log, or ""), or -1
 * with err. */
int	 dpriv_setup(struct disp *d, char *warn, char *err);
/* The state directory (and its console token) owned by -user, then the
 * drop: groups, gid, uid, no way back.  0 (nothing to do without -user),
 * or -1 with err. */
int	 dpriv_drop(struct disp *d, char *err);
/*
 * With -user, before the drop: binds and listens on the public port and
 * the console's (d->front_lfd, d->console_lfd), which front_start and
 * console_start then serve, so that libmicrohttpd's threads start only
 * after the drop.  0 (nothing to do without -user), or -1 with err.
 */
int	 dpriv_listen(struct disp *d, char *err);
/* The address family of a bound socket, or -1. */
int	 dpriv_family(int fd);
/* 1 if uid may own our state directory and token: ours, or -user's. */
int	 dpriv_owner_ok(const struct disp *d, uid_t uid);

/*
 * wmon.c: supervision, on the loop thread only.
 * What the dispatcher accepts on a worker's control channel, in the
 * worker's state (WMON_PENDING, WMON_AUTHED: 1 << its dworker_state), and
 * from the zygote (WMON_RUN).  Handlers' ctx: internal to wmon.c.
 */
#define WMON_PENDING	(1u << DW_PENDING)
#define WMON_AUTHED	(1u << DW_AUTHED)
#define WMON_RUN	1u
extern const struct ctlmsg_rule wmon_rules[];
extern const size_t wmon_nrules;
extern const struct ctlmsg_rule wmon_zygote_rules[];
extern const size_t wmon_zygote_nrules;
/* Watches the control channels of newly registered workers (on the
 * loop's wake-up; takes disp.lock). */
void	 wmon_watch_pending(struct disp *d);
/* Watches the zygote's reports of exits (CTL_EXITED). */
void	 wmon_watch_zygote(struct disp *d);
/* On SIGCHLD: reaps our children and ends their workers. */
void	 wmon_reap(struct disp *d);
/* w ended (why, and reason in words): unlisted (a no-op if it was
 * already), counted, its socket and channel closed, its policy's
 * onEndTunnel called, the registry's reference dropped.  The caller keeps
 * its own reference, if any. */
void	 wmon_ended(struct disp *d, struct dworker *w, enum dworker_end why,
	    const char *reason);
/* The label of why in tunneld_worker_exits_total: a static string. */
const char *wmon_end_name(enum dworker_end why);
/* At start: adopts the workers a previous dispatcher left running, found
 * by their sockets; stale sockets are removed.  0, or -1 with err. */
int	 wmon_adopt(struct disp *d, char *err);

/*
 * console.c: the admin API, the page and the metrics on d->console, with
 * libmicrohttpd's threads (its modules: console.h).  console_init: main
 * thread, before any other thread, when the console is on: its state
 * (d->con) and the ring of recent events, which console_note_* fill from
 * then on.  0, or -1 with err.
 */
int	 console_init(struct disp *d, char *err);
/* Serves it: main thread at start; 0, or -1 with err. */
int	 console_start(struct disp *d, char *err);
/* Stops serving (event streams and the sampler end first); a no-op if it
 * is not running.  Main thread. */
void	 console_stop(struct disp *d);
/* Frees d->con, after console_stop; NULL: a no-op. */
void	 console_free(struct disp *d);
/* An admission was refused (status >= 400; remote, the answer's body as
 * the reason): a recent event.  Any thread; a no-op with the console off. */
void	 console_note_refusal(struct disp *d, const char *remote, int status,
	    const char *reason);
/* w's tunnel ended (why, reason): a recent event.  Any thread. */
void	 console_note_exit(struct disp *d, const struct dworker *w,
	    enum dworker_end why, const char *reason);
/* A policy reload: loaded (ok) or not (error).  Any thread. */
void	 console_note_reload(struct disp *d, int ok, const char *error);

/*
 * wuid.c: the uids workers run as.  As root, each worker gets a uid of
 * its own from -workerUids (taken at spawn, pool workers included, given
 * back when the process is reaped, or found gone), else every worker runs
 * as -workerUser; not as root, workers keep our uid.  Any thread; each
 * function takes disp.lock itself unless it says otherwise.
 */
#define WUID_SAME	0	/* not root: our own uid */
#define WUID_USER	1	/* -workerUser, shared */
#define WUID_RANGE	2	/* -workerUids, one each */
/* Main thread, at start: picks the mode.  0, or -1 with err (a worker
 * would run as root, an unknown user).  warn gets a warning to log, or "". */
int	 wuid_setup(struct disp *d, char *warn, char *err);
/*
 * A uid for a new worker into s (uid, gid, nproc; -1 each: ours): its
 * slot (>= 0, or -1 when there is nothing to take back), or -2 with err
 * when every uid of -workerUids is taken.
 */
int	 wuid_take(struct disp *d, struct ctlmsg_spawn *s, char *err);
/* The worker of slot (from wuid_take) is pid; slot -1: a no-op. */
void	 wuid_bind(struct disp *d, int slot, pid_t pid);
/* No process was started for slot: it is free again. */
void	 wuid_untake(struct disp *d, int slot);
/* pid ended (reaped): its uid is free again. */
void	 wuid_reaped(struct disp *d, pid_t pid);
/* 1 if uid is one a worker of ours may run as (adoption): a worker uid,
 * or ours (a worker an older build left running as its uid), else 0. */
int	 wuid_ours(struct disp *d, uid_t uid);
/* 1 if uid is one our workers run as (-workerUids, -workerUser), else 0. */
int	 wuid_is_worker(const struct disp *d, uid_t uid);
/* An adopted worker pid runs as uid: that uid is taken until it is gone. */
void	 wuid_adopted(struct disp *d, uid_t uid, pid_t pid);
/* At exit, no other thread left. */
void	 wuid_free(struct disp *d);

/*
 * join.c: the tenants' join points (common/joinpt.h), unix sockets in
 * STATE/join that we bind, workers listen on and we connect to.  Loop
 * thread, but join_setup, join_chown, join_adopted and join_sweep (main
 * thread, at start) and join_record (any thread).
 */
/* STATE/join and STATE/join/workers, made 0700 if missing, ours: 0, or
 * -1 with err. */
int	 join_setup(struct disp *d, char *err);
/* Closes what join_setup opened. */
void	 join_close(struct disp *d);
/* With -user, before the drop: the join tree becomes -user's.  0, or -1
 * with err. */
int	 join_chown(struct disp *d, char *err);
/* A new worker whose policy names a join point: its tenant, mode,
 * maxConnectRate and forwards recorded under its key, for a dispatcher
 * that adopts it after a restart.  0 (nothing to record, or recorded),
 * or -1 with err. */
int	 join_record(struct disp *d, const struct dworker *w, char *err);
/* w ended: its record goes. */
void	 join_forget(struct disp *d, const struct dworker *w);
/* An adopted w: its tenant, mode, maxConnectRate and forwards from its
 * record, whatever it says itself (a mismatch is logged).  1 if it had one, 0 if not (no
 * join point then), -1 with err (a record that is not ours). */
int	 join_adopted(struct disp *d, struct dworker *w, char *err);
/* After adoption: the records of workers that are gone go. */
void	 join_sweep(struct disp *d);
/*
 * A takeover of w asks for src ("join:NAME"), which no replaced worker
 * handed over: a new socket for it in w's tenant's directory, for w to
 * listen on, in *fd.  0 with *fd, or with busy set when another live
 * worker offers the point; -1 with err (not one w's policy offers, or a
 * system error).
 */
int	 join_offer(struct disp *d, struct dworker *w, const char *src,
	    int *fd, char *busy, char *err);
/* The socket of src came to w from the worker it replaces. */
void	 join_moved(struct disp *d, struct dworker *w, const char *src);
/* CTL_JOIN of w: answers CTL_JOINED, with the connected socket when the
 * point is one of w's policy, of its tenant, and offered. */
void	 join_answer(struct disp *d, struct dworker *w,
	    const struct ctlmsg_join *req);

/* state.c: state shared by the threads. */
/* djb2 of s, in [0, n): the buckets of the dispatcher's small tables. */
unsigned disp_hash(const char *s, unsigned n);
/* Under disp.lock: delta more (or fewer) live tunnels for tenant; a
 * tenant at 0 is forgotten.  Without memory a new tenant goes uncounted. */
void	 disp_tenant_add(struct disp *d, const char *tenant, int delta);
/* struct policy_counter's count (d is a struct disp): tenant's live
 * tunnels.  Any thread; takes disp.lock. */
int	 disp_tenant_count(void *d, const char *tenant);
/* At exit, with no other thread left: frees the tenant table. */
void	 disp_tenant_free(struct disp *d);
/* Loads the policy scripts and swaps them in once they loaded and passed
 * their dry calls: 0, or -1 with err and the old policy kept.  Loop or
 * console thread, no lock held; requests in progress keep theirs. */
int	 disp_reload(struct disp *d, char *err);
/* The current policy (+ref, the caller's to policy_unref), or NULL if
 * none is loaded.  Any thread; takes disp.lock. */
struct policy *disp_policy(struct disp *d);
/* Milliseconds of CLOCK_MONOTONIC, for deadlines. */
uint64_t disp_now_ms(void);
/* Microseconds of CLOCK_MONOTONIC, for the histograms. */
uint64_t disp_now_us(void);

#endif
