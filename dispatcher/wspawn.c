/*
 * Starting workers: forked by the zygote (tunneld zygote, started with
 * posix_spawn) or, failing that, started with posix_spawn; a few wait
 * idle in a pool.  Each is configured (CTL_CONFIG) over a socketpair on
 * its fd 3 and answers CTL_READY once it listens on its unix socket in the
 * state directory.
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"
#include "ctl.h"
#include "ctlmsg.h"
#include "disp.h"
#include "err.h"
#include "log.h"

extern char **environ;

/* The contract's bounds hold what the policy checked. */
_Static_assert(sizeof(((struct policy_tunnel *)0)->pass) <= CTLMSG_SECRET_LEN,
    "pass fits CONFIG");
_Static_assert(POLICY_MAX_FWDS <= CTLMSG_MAX_FWDS, "forwards fit CONFIG");
_Static_assert(POLICY_MAX_DESTS <= CTLMSG_MAX_DESTS &&
    POLICY_DEST_LEN <= CTLMSG_DEST_LEN, "destinations fit CONFIG");
_Static_assert(POLICY_FWD_LEN <= CTLMSG_FWD_LEN, "a forward fits CONFIG");
_Static_assert(POLICY_ID_LEN <= CTLMSG_ID_LEN, "ids fit CONFIG");

pid_t
wspawn_exec(struct disp *d, const char *what, int fd3, int fd4, char *err)
{
	posix_spawn_file_actions_t	 fa;
	char				*argv[10] = { "tunneld", (char *)what };
	char				 uid[24];
	pid_t				 pid;
	int				 rc, i, a = -1, b = -1;

	/* Out of the way of the targets, or one dup2 undoes the other. */
	if ((a = fcntl(fd3, F_DUPFD_CLOEXEC, 5)) == -1 ||
	    (fd4 != -1 && (b = fcntl(fd4, F_DUPFD_CLOEXEC, 5)) == -1)) {
		err_set(err, "fcntl: %s", strerror(errno));
		pid = -1;
		goto done;
	}
	/* A worker reads its CTL_SPAWN first and confines itself; the
	 * zygote confines itself unless told not to. */
	i = 2;
	if (strcmp(what, "worker") == 0)
		argv[i++] = "-confined";
	else {
		if (d->no_sandbox)
			argv[i++] = "-noSandbox";
		/* Its workers take orders from the uid we will run as. */
		if (d->run_drop) {
			snprintf(uid, sizeof(uid), "%ld", (long)d->run_uid);
			argv[i++] = "-ctlUid";
			argv[i++] = uid;
		}
	}
	/* Forked workers keep the zygote's log format. */
	if (d->log_json) {
		argv[i++] = "-logFormat";
		argv[i++] = "json";
	}
	posix_spawn_file_actions_init(&fa);
	/* dup2 clears close-on-exec on the targets; every other fd keeps it. */
	posix_spawn_file_actions_adddup2(&fa, a, 3);
	if (b != -1)
		posix_spawn_file_actions_adddup2(&fa, b, 4);
	rc = posix_spawn(&pid, d->tunneld, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		err_set(err, "spawn %s: %s", d->tunneld, strerror(rc));
		pid = -1;
	}
done:
	if (a != -1)
		close(a);
	if (b != -1)
		close(b);
	return pid;
}

/* Asks the zygote to fork a worker on fd as s says: its pid, or -1. */
static pid_t
wspawn_zygote_fork(struct disp *d, int fd, const struct ctlmsg *s, char *err)
{
	struct ctlmsg	r;
	pid_t		pid = -1;
	int		rfd = -1, rc;

	if (ctlmsg_send(d->zygote_req, s, fd, DISP_SPAWN_MS, err) == -1)
		return -1;
	if (!ctl_wait(d->zygote_req, DISP_SPAWN_MS)) {
		err_set(err, "no answer in %d ms", DISP_SPAWN_MS);
		return -1;
	}
	if ((rc = ctlmsg_recv(d->zygote_req, &r, &rfd, err)) == 0)
		err_set(err, "the zygote is gone");
	if (rfd != -1)
		close(rfd);
	if (rc != 1)
		return -1;
	if (r.type == CTL_SPAWNED && r.u.spawned.pid > 0)
		pid = (pid_t)r.u.spawned.pid;
	else
		err_set(err, "zygote answered %s", r.type == CTL_SPAWNED ?
		    "a failed fork" : ctlmsg_name(r.type));
	ctlmsg_clear(&r);
	return pid;
}

/*
 * A worker on the socketpair sv (sv[1] its fd 3): forked by the zygote,
 * else exec'd, as uid and confinement s (wuid_take) say.  An exec'd
 * worker reads s as its first message and confines itself before it
 * reads anything else.  Its pid, or -1 with err; -2 with err when only
 * the zygote could start it (we gave up root: an exec'd worker could not
 * switch to its uid).
 */
static pid_t
wspawn_fork(struct disp *d, int sv[2], const struct ctlmsg_spawn *s,
    char *err)
{
	struct ctlmsg	m;
	pid_t		pid = -1;

	ctlmsg_init(&m, CTL_SPAWN);
	m.u.spawn = *s;
	pthread_mutex_lock(&d->zlock);
	if (d->zygote_req != -1 &&
	    (pid = wspawn_zygote_fork(d, sv[1], &m, err)) == -1) {
		log_warnx("zygote failed (%s): starting workers with exec "
		    "from now on", err);
		close(d->zygote_req);
		d->zygote_req = -1;
	}
	pthread_mutex_unlock(&d->zlock);
	if (pid > 0)
		return pid;
	if (d->dropped) {
		err_set(err, "no zygote, and the dispatcher gave up root "
		    "(-user): it cannot start workers of other uids; restart "
		    "it to start a new zygote");
		return -2;
	}
	if (ctlmsg_send(sv[0], &m, -1, DISP_SPAWN_MS, err) == -1)
		return -1;
	return wspawn_exec(d, "worker", sv[1], -1, err);
}

/*
 * A new worker on a new socketpair: *fd our end, *uid what it runs as.
 * Returns its pid, -1 with err, or -2 with err when no uid is free.
 */
static pid_t
wspawn_new(struct disp *d, int *fd, uid_t *uid, char *err)
{
	struct ctlmsg_spawn	s;
	pid_t			pid;
	int			sv[2], slot;

	memset(&s, 0, sizeof(s));
	if ((slot = wuid_take(d, &s, err)) == -2)
		return -2;
	s.max_files = d->worker_max_files;
	s.sandbox = !d->no_sandbox;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		err_set(err, "socketpair: %s", strerror(errno));
		wuid_untake(d, slot);
		return -1;
	}
	pid = wspawn_fork(d, sv, &s, err);
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		wuid_untake(d, slot);
		return pid;
	}
	wuid_bind(d, slot, pid);
	*fd = sv[0];
	*uid = s.uid == -1 ? geteuid() : (uid_t)s.uid;
	return pid;
}

/* CONFIG for ti's worker; wiped by the caller (ctlmsg_clear). */
static void
wspawn_config(struct disp *d, const struct policy_tunnel *ti,
    const char *session, const char *sock, struct ctlmsg *m)
{
	struct ctlmsg_config	*c = &m->u.config;
	size_t			 i;

	ctlmsg_init(m, CTL_CONFIG);
	snprintf(c->mode, sizeof(c->mode), "%s", ti->mode);
	snprintf(c->pass, sizeof(c->pass), "%s", ti->pass);
	snprintf(c->encpass, sizeof(c->encpass), "%s", ti->encpass);
	c->enc_count = ti->enc_count;
	for (i = 0; i < ti->nfwd && i < CTLMSG_MAX_FWDS; i++)
		snprintf(c->forwards[i], sizeof(c->forwards[i]), "%s",
		    ti->forwards[i]);
	c->nfwd = i;
	c->oneshot = strcmp(ti->connect_mode, "OneShot") == 0;
	c->idle_timeout = ti->idle_timeout;
	c->keepalive = ti->keepalive;
	c->limits = ti->limits;
	for (i = 0; i < ti->ndest && i < CTLMSG_MAX_DESTS; i++)
		snprintf(c->dests[i], sizeof(c->dests[i]), "%s", ti->dests[i]);
	c->ndest = i;
	snprintf(c->tenant, sizeof(c->tenant), "%s", ti->tenant);
	snprintf(c->id, sizeof(c->id), "%s", ti->id);
	snprintf(c->session, sizeof(c->session), "%s", session);
	snprintf(c->sock, sizeof(c->sock), "%s", sock);
	c->verbose = d->verbose;
	c->handshake_timeout = d->handshake_timeout;
}

/*
 * A unix socket bound to name in the state directory (through its
 * checked descriptor), for a worker to listen on: its fd, or -1 with err.
 * A leftover of that name is stale: we picked the name.
 */
static int
wspawn_sock(struct disp *d, const char *name, char *err)
{
	struct sockaddr_un	sun;
	int			fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path),
	    "/proc/self/fd/%d/%s", d->state_fd, name) >= sizeof(sun.sun_path)) {
		err_set(err, "socket name too long");
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) == -1) {
		err_set(err, "socket: %s", strerror(errno));
		return -1;
	}
	unlinkat(d->state_fd, name, 0);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    fchmodat(d->state_fd, name, 0600, 0) == -1) {
		err_set(err, "%s/%s: %s", d->state_dir, name, strerror(errno));
		unlinkat(d->state_fd, name, 0);
		close(fd);
		return -1;
	}
	return fd;
}

/* The worker's answer to CONFIG: 0 on CTL_READY, else -1 with err. */
static int
wspawn_ready(int fd, pid_t pid, struct ctlmsg *r, char *err)
{
	int rfd = -1, rc;

	if (!ctl_wait(fd, DISP_SPAWN_MS)) {
		err_set(err, "worker %d not ready in %d ms", (int)pid,
		    DISP_SPAWN_MS);
		return -1;
	}
	rc = ctlmsg_recv(fd, r, &rfd, err);
	if (rfd != -1)
		close(rfd);
	if (rc == 1 && r->type == CTL_READY)
		return 0;
	if (rc == 1)
		err_set(err, "worker %d: %s", (int)pid, r->type == CTL_END ?
		    r->u.end.text : "not ready");
	else if (rc == 0)
		err_set(err, "worker %d closed its control socket", (int)pid);
	return -1;
}

/*
 * Sends a started worker its tunnel and waits until it listens.  On
 * failure the worker is killed (its exit is reaped as any other).
 */
static int
wspawn_setup(struct disp *d, int fd, pid_t pid, const struct policy_tunnel *ti,
    const char *session, const char *sock, char *err)
{
	struct ctlmsg	*m;
	char		 e[ERR_LEN];
	int		 rc = -1, lfd;

	if ((m = malloc(sizeof(*m))) == NULL) {
		err_set(err, "out of memory");
		goto kill;
	}
	wspawn_config(d, ti, session, sock, m);
	/* The worker's socket, bound by us in the directory we checked (a
	 * worker of another uid cannot create files there); the worker
	 * listens on it, so that its SO_PEERCRED names the worker. */
	if ((lfd = wspawn_sock(d, sock, err)) == -1) {
		ctlmsg_clear(m);
		free(m);
		goto kill;
	}
	rc = ctlmsg_send(fd, m, lfd, DISP_SPAWN_MS, err);
	close(lfd);
	ctlmsg_clear(m);	/* wipes the secrets */
	if (rc == 0)
		rc = wspawn_ready(fd, pid, m, err);
	ctlmsg_clear(m);
	free(m);
	if (rc == 0)
		return 0;
	unlinkat(d->state_fd, sock, 0);
kill:
	if (wspawn_signal(d, pid, 0, SIGKILL, e) == -1)
		log_warnx("worker %d: %s", (int)pid, e);
	return -1;
}

/*
 * A worker waiting for its config: from the pool of idle ones (returns 1)
 * or started now (0), or -1 with err (-2: no worker uid free).  Taking from the pool asks the loop
 * thread to refill it, so that forking stays off the admission path.
 */
static int
wspawn_take(struct disp *d, int *fd, pid_t *pid, uid_t *uid, char *err)
{
	pthread_mutex_lock(&d->lock);
	if (d->npool > 0) {
		d->npool--;
		*fd = d->pool_fd[d->npool];
		*pid = d->pool_pid[d->npool];
		*uid = d->pool_uid[d->npool];
		pthread_mutex_unlock(&d->lock);
		uv_async_send(&d->wake);
		return 1;
	}
	pthread_mutex_unlock(&d->lock);
	if ((*pid = wspawn_new(d, fd, uid, err)) < 0)
		return *pid == -2 ? -2 : -1;
	return 0;
}

void
wspawn_pool_refill(struct disp *d)
{
	static int	 short_of_uids;
	char		 err[ERR_LEN];
	pid_t		 pid;
	uid_t		 uid;
	int		 fd, full;

	for (;;) {
		pthread_mutex_lock(&d->lock);
		full = d->npool >= DISP_POOL || d->pool_closed;
		pthread_mutex_unlock(&d->lock);
		if (full)
			return;
		if ((pid = wspawn_new(d, &fd, &uid, err)) < 0) {
			/* Said once, not at every refill, until it ends. */
			if (pid == -1 || !short_of_uids)
				log_warnx("worker pool: %s", err);
			short_of_uids = pid == -2;
			return;
		}
		short_of_uids = 0;
		pthread_mutex_lock(&d->lock);
		d->pool_fd[d->npool] = fd;
		d->pool_pid[d->npool] = pid;
		d->pool_uid[d->npool] = uid;
		d->npool++;
		pthread_mutex_unlock(&d->lock);
	}
}

void
wspawn_pool_close(struct disp *d)
{
	pthread_mutex_lock(&d->lock);
	while (d->npool > 0)
		close(d->pool_fd[--d->npool]);
	d->pool_closed = 1;
	pthread_mutex_unlock(&d->lock);
}

/* A new registry entry for ti's worker, its key and socket name. */
static struct dworker *
wspawn_entry(struct disp *d, const struct policy_tunnel *ti,
    const char *session, char *err)
{
	struct dworker	*w;
	char		 rnd[32];
	uint8_t		 raw[16];

	if ((w = calloc(1, sizeof(*w))) == NULL) {
		err_set(err, "out of memory");
		return NULL;
	}
	w->ctl_fd = -1;
	w->state = DW_PENDING;
	w->info = *ti;
	snprintf(w->session, sizeof(w->session), "%s", session);
	if (session[0] == '\0') {
		/* No session to come back with: a key nobody can guess. */
		if (crypto_random(raw, sizeof(raw), err) == -1) {
			wreg_free(w);
			return NULL;
		}
		crypto_b64(raw, sizeof(raw), rnd);
		wreg_key(rnd, w->key);
	} else
		wreg_key(session, w->key);
	snprintf(w->sock, sizeof(w->sock), "/proc/self/fd/%d/%s.sock",
	    d->state_fd, w->key);
	snprintf(w->tenant, sizeof(w->tenant), "%s", ti->tenant);
	snprintf(w->id, sizeof(w->id), "%s", ti->id);
	snprintf(w->mode, sizeof(w->mode), "%s", ti->mode);
	snprintf(w->connect_mode, sizeof(w->connect_mode), "%s",
	    ti->connect_mode);
	w->started = time(NULL);
	return w;
}

int
wspawn_start(struct disp *d, struct policy *p, const struct policy_tunnel *ti,
    const char *session, struct dworker **out, char *err)
{
	struct dworker	*w;
	char		 name[DISP_KEY_LEN + 6];
	int		 fd = -1, pooled, attempt, rc = -1;
	pid_t		 pid;
	uid_t		 uid;

	*out = NULL;
	if ((w = wspawn_entry(d, ti, session, err)) == NULL)
		goto fail;
	snprintf(name, sizeof(name), "%s.sock", w->key);
	for (attempt = 0;; attempt++) {
		if ((pooled = wspawn_take(d, &fd, &pid, &uid, err)) < 0) {
			rc = pooled;
			goto fail;
		}
		if (wspawn_setup(d, fd, pid, ti, session, name, err) == 0)
			break;
		close(fd);
		fd = -1;
		/* A pooled worker may have died waiting: try a fresh one. */
		if (!pooled || attempt > 0)
			goto fail;
	}
	w->pid = pid;
	w->uid = uid;
	policy_tunnel_cleanse(&w->info);
	/* Only a dispatcher restarted meanwhile needs it: not fatal. */
	if (join_record(d, w, err) == -1)
		log_warnx("worker %d: join points: %s", (int)pid, err);
	policy_ref(p);
	w->policy = p;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	w->ctl_fd = fd;
	w->refs = 1;		/* the caller's */
	atomic_fetch_add(&d->m.spawned, 1);
	wreg_add(d, w, 1);
	*out = w;
	return 0;
fail:
	if (fd != -1)
		close(fd);
	if (w != NULL)
		wreg_free(w);
	wreg_unreserve(d);
	return rc;
}

int
wspawn_zygote_start(struct disp *d, char *err)
{
	int	req[2] = { -1, -1 }, ex[2] = { -1, -1 }, i;
	pid_t	pid;

	d->zygote_req = d->zygote_exit = -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, req) == -1 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ex) == -1) {
		err_set(err, "socketpair: %s", strerror(errno));
		goto fail;
	}
	if ((pid = wspawn_exec(d, "zygote", req[1], ex[1], err)) == -1)
		goto fail;
	close(req[1]);
	close(ex[1]);
	d->zygote_req = req[0];
	d->zygote_exit = ex[0];
	fcntl(ex[0], F_SETFL, fcntl(ex[0], F_GETFL) | O_NONBLOCK);
	wmon_watch_zygote(d);
	return 0;
fail:
	for (i = 0; i < 2; i++) {
		if (req[i] != -1)
			close(req[i]);
		if (ex[i] != -1)
			close(ex[i]);
	}
	return -1;
}

void
wspawn_zygote_stop(struct disp *d)
{
	pthread_mutex_lock(&d->zlock);
	if (d->zygote_req != -1)
		close(d->zygote_req);
	d->zygote_req = -1;
	pthread_mutex_unlock(&d->zlock);
}

int
wspawn_signal(struct disp *d, pid_t pid, int adopted, int sig, char *err)
{
	struct ctlmsg	m;
	int		rc = -1;

	if (!d->dropped) {
		if (kill(pid, sig) == -1 && errno != ESRCH) {
			err_set(err, "kill: %s", strerror(errno));
			return -1;
		}
		return 0;
	}
	if (adopted) {
		err_set(err, "cannot signal it: adopted (not forked by our "
		    "zygote) and the dispatcher gave up root (-user)");
		return -1;
	}
	ctlmsg_init(&m, CTL_KILL);
	m.u.kill.pid = pid;
	m.u.kill.signal = sig;
	pthread_mutex_lock(&d->zlock);
	if (d->zygote_req == -1)
		err_set(err, "cannot signal it: no zygote, and the dispatcher "
		    "gave up root (-user)");
	else
		rc = ctlmsg_send(d->zygote_req, &m, -1, DISP_SPAWN_MS, err);
	pthread_mutex_unlock(&d->zlock);
	return rc;
}
