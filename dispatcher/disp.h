#ifndef DISP_H
#define DISP_H

/*
 * dispatcher: the one public port of a multi-tenant host.  Each websocket
 * upgrade is admitted by the operator's Lua policy and its socket handed to
 * the tunneld worker of its session (front.c); workers are spawned,
 * registered and watched by workers.c; console.c serves the admin API.
 *
 * Threads: libmicrohttpd's thread pools run front.c and console.c; the main
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

struct MHD_Daemon;
struct MHD_Connection;

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
	int		 adopted;	/* not our child: a previous dispatcher's */
	int		 ctl_fd;	/* watched for CTL_END / EOF */
	uv_poll_t	 poll;
	int		 polling;
	int		 ended;
	enum dworker_state state;	/* under disp.lock */
	time_t		 started;
	unsigned	 handovers;
	struct policy_tunnel info;	/* secrets cleansed after spawn */
	struct policy	*policy;	/* the one that started it (+ref) */
};
LIST_HEAD(dworker_list, dworker);

/* Requests in progress from one client address (-perIp). */
struct ipslot {
	struct ipslot	*next;
	int		 n;
	char		 ip[64];
};
#define DISP_IPSLOTS	256

/* Live tunnels of one tenant (policy req.tunnels), under disp.lock. */
struct dtenant {
	struct dtenant	*next;
	int		 n;
	char		 name[POLICY_ID_LEN];
};
#define DISP_TENANT_BUCKETS	256
/* New workers started for one address (-spawnRate): a token bucket. */
struct rateslot {
	struct rateslot	*next;
	uint64_t	 at;		/* ms of the last refill */
	uint64_t	 mtokens;	/* thousandths of a spawn */
	char		 ip[64];
};

/* A public connection whose request head is not complete yet. */
struct fconn {
	TAILQ_ENTRY(fconn) link;	/* d->heads, by deadline */
	int		 listed;	/* in d->heads */
	int		 counted;	/* in d->headslots */
	int		 fd;		/* our dup, to shut it down */
	uint64_t	 deadline;	/* ms, CLOCK_MONOTONIC */
	char		 ip[64];	/* front_addr_key() */
};

/* A request waiting out the refusal delay. */
struct delayed {
	TAILQ_ENTRY(delayed) link;
	struct MHD_Connection *conn;
	uint64_t	 due;		/* ms, CLOCK_MONOTONIC */
};

struct disp_metrics {
	atomic_ulong	 admissions[6];	/* 101, 4xx policy, 400, 404, 5xx, other */
	atomic_ulong	 policy_errors;
	atomic_ulong	 policy_calls;
	atomic_ulong	 policy_usec;	/* total time in the policy */
	atomic_ulong	 spawned;
	atomic_ulong	 ended;
};

struct disp {
	/* configuration */
	struct hostinfo	 listen;
	char		 path[256];
	char		 handler_lua[1024];
	char		 canaccept_lua[1024];
	char		 state_dir[1024];
	int		 state_fd;	/* O_DIRECTORY|O_NOFOLLOW, checked */
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
	int		 verbose;
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
	int		 npool;
	int		 pool_closed;
	uv_poll_t	 zpoll;
	int		 reload_asked;
	struct disp_metrics m;
};

/* front.c */
int	 front_start(struct disp *d, char *err);
/* Without a listening socket, fed by front_add_connection (the fuzzer). */
int	 front_start_unlisted(struct disp *d, char *err);
int	 front_add_connection(struct disp *d, int fd,
	    const struct sockaddr *sa, socklen_t len);
void	 front_stop(struct disp *d);
void	 front_delay_tick(struct disp *d);
void	 front_rate_refund(struct disp *d, const char *ip);

/* workers.c */
void	 worker_key(const char *session, char *key);
struct dworker *worker_find(struct disp *d, const char *key);	/* +ref */
void	 worker_unref(struct disp *d, struct dworker *w);
int	 worker_spawn(struct disp *d, struct policy *p,
	    const struct policy_tunnel *ti, const char *session,
	    struct dworker **out, char *err);
int	 worker_handover(struct dworker *w, int fd, const void *extra,
	    size_t n, char *err);
int	 worker_stop(struct dworker *w, char *err);
json_t	*worker_stats(struct dworker *w, char *err);
void	 worker_watch_pending(struct disp *d);
void	 worker_reap(struct disp *d);
int	 worker_scan(struct disp *d, char *err);
int	 worker_count(struct disp *d);
int	 worker_reserve(struct disp *d, int *status, char *err);
void	 worker_unreserve(struct disp *d);
const char *worker_state_name(const struct dworker *w, const json_t *stats);
int	 worker_zygote_start(struct disp *d, char *err);
void	 worker_zygote_stop(struct disp *d);
void	 worker_pool_refill(struct disp *d);
void	 worker_pool_close(struct disp *d);

/* console.c */
int	 console_start(struct disp *d, char *err);
void	 console_stop(struct disp *d);

/* state.c */
unsigned disp_hash(const char *s, unsigned n);
void	 disp_tenant_add(struct disp *d, const char *tenant, int delta);
int	 disp_tenant_count(void *d, const char *tenant);
void	 disp_tenant_free(struct disp *d);

/* main.c */
int	 disp_reload(struct disp *d, char *err);
struct policy *disp_policy(struct disp *d);	/* +ref */
uint64_t disp_now_ms(void);

#endif
