/*
 * The workers: one tunneld process per client session, forked by the
 * zygote (tunneld zygote, started with posix_spawn) or, failing that,
 * started with posix_spawn; a few wait idle in a pool.  Each is configured
 * over a socketpair on its fd 3 and found again through its unix socket in
 * the state directory (the filesystem is the registry that survives a
 * dispatcher restart).
 */

#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "crypto.h"
#include "ctl.h"
#include "disp.h"
#include "err.h"
#include "log.h"

extern char **environ;

void
worker_key(const char *session, char *key)
{
	static const char	hex[] = "0123456789abcdef";
	uint8_t			h[32];
	int			i;

	crypto_sha256(session, strlen(session), h);
	for (i = 0; i < DISP_KEY_LEN / 2; i++) {
		key[2 * i] = hex[h[i] >> 4];
		key[2 * i + 1] = hex[h[i] & 15];
	}
	key[DISP_KEY_LEN] = '\0';
}

struct dworker *
worker_find(struct disp *d, const char *key)
{
	struct dworker *w;

	pthread_mutex_lock(&d->lock);
	LIST_FOREACH(w, &d->workers, link)
		if (!w->ended && strcmp(w->key, key) == 0) {
			w->refs++;
			break;
		}
	pthread_mutex_unlock(&d->lock);
	return w;
}

int
worker_count(struct disp *d)
{
	int n;

	pthread_mutex_lock(&d->lock);
	n = d->nworkers;
	pthread_mutex_unlock(&d->lock);
	return n;
}

/*
 * Holds a place for a new, pending worker: refused (-1, with the HTTP
 * status in *status and the reason in err) when -maxSession tunnels run
 * or -maxPendingWorkers workers wait for their client's authentication.
 * worker_spawn() takes the place over; without it, worker_unreserve().
 */
int
worker_reserve(struct disp *d, int *status, char *err)
{
	int rc = -1;

	pthread_mutex_lock(&d->lock);
	if (d->nauthed >= d->max_session) {
		*status = 503;
		err_set(err, "%d tunnels already (-maxSession)", d->nauthed);
	} else if (d->npending >= d->max_pending_workers) {
		*status = 503;
		err_set(err, "%d workers wait for authentication "
		    "(-maxPendingWorkers)", d->npending);
	} else {
		d->npending++;
		rc = 0;
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

void
worker_unreserve(struct disp *d)
{
	pthread_mutex_lock(&d->lock);
	d->npending--;
	pthread_mutex_unlock(&d->lock);
}

/*
 * For the console: "pending" (no client authenticated yet), else
 * "connected" or "detached" (the session waits for its client to come
 * back) as the worker's stats say.
 */
const char *
worker_state_name(const struct dworker *w, const json_t *stats)
{
	/* Written under disp.lock by the loop thread; one word read. */
	if (__atomic_load_n(&w->state, __ATOMIC_RELAXED) == DW_PENDING)
		return "pending";
	return json_is_true(json_object_get(stats, "connected")) ?
	    "connected" : "detached";
}

static void
worker_free(struct dworker *w)
{
	OPENSSL_cleanse(&w->info, sizeof(w->info));
	policy_unref(w->policy);
	free(w);
}

void
worker_unref(struct disp *d, struct dworker *w)
{
	int last;

	pthread_mutex_lock(&d->lock);
	last = --w->refs == 0;
	pthread_mutex_unlock(&d->lock);
	if (last)
		worker_free(w);
}

/*
 * Opens a control connection to a worker's unix socket (a path through
 * /proc/self/fd/<state dir fd>, see worker_spawn), and makes sure the
 * process listening there runs as we do: a socket another user planted
 * gets neither a client's connection nor adoption.
 */
static int
worker_connect(const char *path, char *err)
{
	struct sockaddr_un	sun;
	int			fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) == -1) {
		err_set(err, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		err_set(err, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (ctl_check_peer(fd, geteuid(), err) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Waits for a message on fd until deadline (disp_now_ms()): 1 if one is
 * there, 0 once the deadline has passed.  A deadline for the whole
 * exchange, not a timeout per message, so that a worker dribbling
 * messages cannot hold the caller's thread.
 */
static int
worker_wait(int fd, uint64_t deadline)
{
	uint64_t now = disp_now_ms();

	return now < deadline && ctl_wait(fd, (int)(deadline - now));
}

/* Sends one request and waits, timeout_ms in all, for a reply of type want. */
static json_t *
worker_ask(const char *path, json_t *req, int fd_attach, int want,
    int timeout_ms, char *err)
{
	json_t		*reply = NULL;
	uint64_t	 deadline = disp_now_ms() + timeout_ms;
	int		 fd, rfd, rc;

	if ((fd = worker_connect(path, err)) == -1)
		return NULL;
	if (ctl_send(fd, req, fd_attach, timeout_ms, err) == -1)
		goto done;
	/* A worker tells every connected dispatcher of CTL_AUTHED, this
	 * short-lived connection too: not the answer. */
	do {
		json_decref(reply);
		reply = NULL;
		if (!worker_wait(fd, deadline)) {
			err_set(err, "worker did not answer in %d ms",
			    timeout_ms);
			goto done;
		}
		rc = ctl_recv(fd, &reply, &rfd, err);
		if (rfd != -1)
			close(rfd);
		if (rc != 1) {
			if (rc == 0)
				err_set(err, "worker closed the control "
				    "connection");
			goto done;
		}
	} while (ctl_type(reply) == CTL_AUTHED && want != CTL_AUTHED);
	if (ctl_type(reply) != want) {
		err_set(err, "worker answered %s", ctl_type_name(
		    ctl_type(reply)));
		json_decref(reply);
		reply = NULL;
	}
done:
	close(fd);
	return reply;
}

int
worker_handover(struct dworker *w, int fd, const void *extra, size_t n,
    char *err)
{
	json_t	*m, *r;
	char	*b64;

	if ((b64 = malloc(4 * ((n + 2) / 3) + 1)) == NULL) {
		err_set(err, "out of memory");
		return -1;
	}
	crypto_b64(extra, n, b64);
	m = ctl_new(CTL_CONN);
	json_object_set_new(m, "extra", json_string(b64));
	free(b64);
	r = worker_ask(w->sock, m, fd, CTL_CONN_OK, DISP_HANDOVER_MS, err);
	json_decref(m);
	if (r == NULL)
		return -1;
	json_decref(r);
	/* Hand-overs of one session run on several MHD threads at once. */
	__atomic_fetch_add(&w->handovers, 1, __ATOMIC_RELAXED);
	return 0;
}

int
worker_stop(struct dworker *w, char *err)
{
	json_t	*m = ctl_new(CTL_STOP);
	int	 fd, rc = -1;

	if ((fd = worker_connect(w->sock, err)) == -1)
		goto done;
	rc = ctl_send(fd, m, -1, 1000, err);
	close(fd);
done:
	json_decref(m);
	return rc;
}

json_t *
worker_stats(struct dworker *w, char *err)
{
	json_t *m = ctl_new(CTL_STATS_REQ), *r;

	r = worker_ask(w->sock, m, -1, CTL_STATS, 1000, err);
	json_decref(m);
	return r;
}

static json_t *
worker_config(const struct policy_tunnel *ti, const char *session,
    const char *sock, int verbose, int hs_timeout)
{
	json_t	*m = ctl_new(CTL_CONFIG), *fwds = json_array();
	size_t	 i;

	for (i = 0; i < ti->nfwd; i++)
		json_array_append_new(fwds, json_string(ti->forwards[i]));
	json_object_set_new(m, "mode", json_string(ti->mode));
	json_object_set_new(m, "pass", json_string(ti->pass));
	json_object_set_new(m, "encPass", json_string(ti->encpass));
	json_object_set_new(m, "encCount", json_integer(ti->enc_count));
	json_object_set_new(m, "forwards", fwds);
	json_object_set_new(m, "connectMode", json_string(ti->connect_mode));
	json_object_set_new(m, "idleTimeout", json_integer(ti->idle_timeout));
	json_object_set_new(m, "keepalive", json_integer(ti->keepalive));
	json_object_set_new(m, "tenant", json_string(ti->tenant));
	json_object_set_new(m, "id", json_string(ti->id));
	json_object_set_new(m, "session", json_string(session));
	json_object_set_new(m, "sock", json_string(sock));
	json_object_set_new(m, "verbose", json_boolean(verbose));
	json_object_set_new(m, "handshakeTimeout", json_integer(hs_timeout));
	return m;
}

/*
 * Registers w and asks the loop thread to watch its control channel.  A
 * pending worker of ours fills the place worker_reserve() held.
 */
static void
worker_register(struct disp *d, struct dworker *w, int reserved)
{
	pthread_mutex_lock(&d->lock);
	w->refs++;		/* the registry's */
	LIST_INSERT_HEAD(&d->workers, w, link);
	d->nworkers++;
	/* Only tunnels count against the tenants' quotas (req.tunnels). */
	if (w->state == DW_AUTHED) {
		d->nauthed++;
		disp_tenant_add(d, w->tenant, 1);
	} else if (!reserved)
		d->npending++;
	pthread_mutex_unlock(&d->lock);
	uv_async_send(&d->wake);
}

/* Starts a program with the given fds as its 3 (and 4). */
static pid_t
worker_exec(struct disp *d, const char *what, int fd3, int fd4, char *err)
{
	posix_spawn_file_actions_t	 fa;
	char				*argv[] = { "tunneld", (char *)what,
					    NULL };
	pid_t				 pid;
	int				 rc, a = -1, b = -1;

	/* Out of the way of the targets, or one dup2 undoes the other. */
	if ((a = fcntl(fd3, F_DUPFD_CLOEXEC, 5)) == -1 ||
	    (fd4 != -1 && (b = fcntl(fd4, F_DUPFD_CLOEXEC, 5)) == -1)) {
		err_set(err, "fcntl: %s", strerror(errno));
		pid = -1;
		goto done;
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

/* A worker on control socket fd: forked by the zygote, else exec'd. */
static pid_t
worker_fork(struct disp *d, int fd, char *err)
{
	json_t	*m, *r = NULL;
	pid_t	 pid = -1;
	int	 rfd = -1;

	pthread_mutex_lock(&d->zlock);
	if (d->zygote_req != -1) {
		m = ctl_new(CTL_SPAWN);
		if (ctl_send(d->zygote_req, m, fd, DISP_SPAWN_MS, err) == 0 &&
		    ctl_wait(d->zygote_req, DISP_SPAWN_MS) &&
		    ctl_recv(d->zygote_req, &r, &rfd, err) == 1 &&
		    ctl_type(r) == CTL_SPAWNED)
			pid = json_integer_value(json_object_get(r, "pid"));
		json_decref(m);
		json_decref(r);
		if (rfd != -1)
			close(rfd);
		if (pid <= 0) {
			log_warnx("zygote failed (%s): starting workers with "
			    "exec from now on", err);
			close(d->zygote_req);
			d->zygote_req = -1;
			pid = -1;
		}
	}
	pthread_mutex_unlock(&d->zlock);
	if (pid > 0)
		return pid;
	return worker_exec(d, "worker", fd, -1, err);
}

/*
 * Sends a started worker its tunnel and waits until it listens.  On
 * failure the worker is killed (its exit is reaped as any other).
 */
static int
worker_setup(struct disp *d, int fd, pid_t pid, const struct policy_tunnel *ti,
    const char *session, const char *sock, char *err)
{
	json_t	*cfg, *r = NULL;
	int	 rfd = -1, rc;

	cfg = worker_config(ti, session, sock, d->verbose,
	    d->handshake_timeout);
	/* The socket's name, bound by the worker in the directory we
	 * checked, through the descriptor attached. */
	rc = ctl_send(fd, cfg, d->state_fd, DISP_SPAWN_MS, err);
	json_object_clear(cfg);		/* drops the secrets' copies */
	json_decref(cfg);
	if (rc == -1)
		goto kill;
	if (!ctl_wait(fd, DISP_SPAWN_MS)) {
		err_set(err, "worker %d not ready in %d ms", (int)pid,
		    DISP_SPAWN_MS);
		goto kill;
	}
	if (ctl_recv(fd, &r, &rfd, err) != 1 || ctl_type(r) != CTL_READY) {
		if (r != NULL)
			err_set(err, "worker %d: %s", (int)pid,
			    json_string_value(json_object_get(r, "reason")) ?
			    json_string_value(json_object_get(r, "reason")) :
			    "not ready");
		else if (rfd == -1)
			err_set(err, "worker %d closed its control socket",
			    (int)pid);
		goto kill;
	}
	json_decref(r);
	return 0;
kill:
	json_decref(r);
	if (rfd != -1)
		close(rfd);
	kill(pid, SIGKILL);
	return -1;
}

/*
 * A worker waiting for its config: from the pool of idle ones (returns 1)
 * or started now (0), or -1 with err.  Taking from the pool asks the loop
 * thread to refill it, so that forking stays off the admission path.
 */
static int
worker_take(struct disp *d, int *fd, pid_t *pid, char *err)
{
	int sv[2];

	pthread_mutex_lock(&d->lock);
	if (d->npool > 0) {
		d->npool--;
		*fd = d->pool_fd[d->npool];
		*pid = d->pool_pid[d->npool];
		pthread_mutex_unlock(&d->lock);
		uv_async_send(&d->wake);
		return 1;
	}
	pthread_mutex_unlock(&d->lock);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		err_set(err, "socketpair: %s", strerror(errno));
		return -1;
	}
	*pid = worker_fork(d, sv[1], err);
	close(sv[1]);
	if (*pid == -1) {
		close(sv[0]);
		return -1;
	}
	*fd = sv[0];
	return 0;
}

/* Loop thread: keeps DISP_POOL idle workers ready. */
void
worker_pool_refill(struct disp *d)
{
	char	err[ERR_LEN];
	pid_t	pid;
	int	sv[2], full;

	for (;;) {
		pthread_mutex_lock(&d->lock);
		full = d->npool >= DISP_POOL || d->pool_closed;
		pthread_mutex_unlock(&d->lock);
		if (full)
			return;
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0,
		    sv) == -1)
			return;
		pid = worker_fork(d, sv[1], err);
		close(sv[1]);
		if (pid == -1) {
			log_warnx("worker pool: %s", err);
			close(sv[0]);
			return;
		}
		pthread_mutex_lock(&d->lock);
		d->pool_fd[d->npool] = sv[0];
		d->pool_pid[d->npool] = pid;
		d->npool++;
		pthread_mutex_unlock(&d->lock);
	}
}

/* Idle workers end when their control socket closes. */
void
worker_pool_close(struct disp *d)
{
	pthread_mutex_lock(&d->lock);
	while (d->npool > 0)
		close(d->pool_fd[--d->npool]);
	d->pool_closed = 1;
	pthread_mutex_unlock(&d->lock);
}

int
worker_spawn(struct disp *d, struct policy *p, const struct policy_tunnel *ti,
    const char *session, struct dworker **out, char *err)
{
	struct dworker	*w;
	char		 rnd[32], name[DISP_KEY_LEN + 6];
	uint8_t		 raw[16];
	int		 sv[1] = { -1 }, pooled, attempt;
	pid_t		 pid;

	*out = NULL;
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		err_set(err, "out of memory");
		worker_unreserve(d);
		return -1;
	}
	w->ctl_fd = -1;
	w->state = DW_PENDING;
	w->info = *ti;
	snprintf(w->session, sizeof(w->session), "%s", session);
	if (session[0] == '\0') {
		/* No session to come back with: a key nobody can guess. */
		if (crypto_random(raw, sizeof(raw), err) == -1)
			goto fail;
		crypto_b64(raw, sizeof(raw), rnd);
		worker_key(rnd, w->key);
	} else
		worker_key(session, w->key);
	snprintf(name, sizeof(name), "%s.sock", w->key);
	snprintf(w->sock, sizeof(w->sock), "/proc/self/fd/%d/%s", d->state_fd,
	    name);
	snprintf(w->tenant, sizeof(w->tenant), "%s", ti->tenant);
	snprintf(w->id, sizeof(w->id), "%s", ti->id);
	snprintf(w->mode, sizeof(w->mode), "%s", ti->mode);
	snprintf(w->connect_mode, sizeof(w->connect_mode), "%s",
	    ti->connect_mode);
	w->started = time(NULL);
	for (attempt = 0;; attempt++) {
		if ((pooled = worker_take(d, &sv[0], &pid, err)) == -1)
			goto fail;
		if (worker_setup(d, sv[0], pid, ti, session, name, err) == 0)
			break;
		close(sv[0]);
		sv[0] = -1;
		/* A pooled worker may have died waiting: try a fresh one. */
		if (!pooled || attempt > 0)
			goto fail;
	}
	w->pid = pid;
	policy_tunnel_cleanse(&w->info);
	policy_ref(p);
	w->policy = p;
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	w->ctl_fd = sv[0];
	w->refs = 1;		/* the caller's */
	atomic_fetch_add(&d->m.spawned, 1);
	worker_register(d, w, 1);
	*out = w;
	return 0;
fail:
	if (sv[0] != -1)
		close(sv[0]);
	worker_free(w);
	worker_unreserve(d);
	return -1;
}

static void
worker_poll_closed(uv_handle_t *h)
{
	worker_unref(h->loop->data, h->data);
}

static void
worker_ended(struct disp *d, struct dworker *w, const char *reason)
{
	struct policy	*p;
	char		 err[ERR_LEN];

	pthread_mutex_lock(&d->lock);
	if (w->ended) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	w->ended = 1;
	LIST_REMOVE(w, link);
	d->nworkers--;
	if (w->state == DW_AUTHED) {
		d->nauthed--;
		disp_tenant_add(d, w->tenant, -1);
	} else
		d->npending--;
	pthread_mutex_unlock(&d->lock);
	log_info("worker %d (tenant '%s', session %s) ended: %s", (int)w->pid,
	    w->tenant, w->key, reason);
	atomic_fetch_add(&d->m.ended, 1);
	/* A crashed worker leaves its socket behind. */
	unlink(w->sock);
	if (w->polling) {
		uv_poll_stop(&w->poll);
		uv_close((uv_handle_t *)&w->poll, worker_poll_closed);
		w->polling = 0;
	}
	if (w->ctl_fd != -1)
		close(w->ctl_fd);
	w->ctl_fd = -1;
	/* The policy that counted the tunnel hears of its end. */
	if ((p = w->policy) != NULL)
		policy_ref(p);
	else
		p = disp_policy(d);
	if (p != NULL) {
		if (policy_end_tunnel(p, &w->info, reason, err) == -1)
			log_warnx("onEndTunnel: %s", err);
		policy_unref(p);
	}
	worker_unref(d, w);	/* the registry's */
}

/* 1 if the listener message m names one of srcs, a JSON array of strings. */
static int
worker_src_asked(const json_t *srcs, const json_t *m)
{
	const char	*src = json_string_value(json_object_get(m, "src"));
	json_t		*v;
	size_t		 i;

	json_array_foreach(srcs, i, v)
		if (src != NULL && json_is_string(v) &&
		    strcmp(src, json_string_value(v)) == 0)
			return 1;
	return 0;
}

/*
 * Asks o, another worker of w's tunnel, to hand its listeners over and
 * end; each listening socket it sends goes on to w as it comes, so the port
 * never closes.  busy gets o's reason to refuse (its client is connected).
 * o has until deadline, and may send only listeners of srcs, no more of
 * them than srcs has: the loop thread waits on it, and o may be a
 * compromised tenant's.
 */
static void
worker_release(struct disp *d, struct dworker *o, struct dworker *w,
    json_t *srcs, uint64_t deadline, char *busy)
{
	json_t		*m, *req = ctl_new(CTL_RELEASE);
	const char	*why;
	char		 err[ERR_LEN];
	int		 fd, lfd, rc, n = 0;

	json_object_set(req, "srcs", srcs);
	if ((fd = worker_connect(o->sock, err)) == -1 ||
	    ctl_send(fd, req, -1, DISP_RELEASE_MS, err) == -1)
		goto fail;
	for (;;) {
		if (!worker_wait(fd, deadline)) {
			err_set(err, "no answer in time (%d ms for the "
			    "takeover)", DISP_RELEASE_MS);
			goto fail;
		}
		if ((rc = ctl_recv(fd, &m, &lfd, err)) == -2)
			continue;
		if (rc <= 0) {
			if (rc == 0)
				err_set(err, "control connection closed");
			goto fail;
		}
		if (ctl_type(m) == CTL_LISTENER && lfd != -1 &&
		    ((size_t)n >= json_array_size(srcs) ||
		    !worker_src_asked(srcs, m))) {
			err_set(err, "sent a listener not asked for");
			json_decref(m);
			close(lfd);
			goto fail;
		}
		if (ctl_type(m) == CTL_LISTENER && lfd != -1) {
			if (w->ctl_fd == -1 ||
			    ctl_send(w->ctl_fd, m, lfd, 1000, err) == -1)
				log_warnx("worker %d: listener lost in the "
				    "takeover: %s", (int)w->pid,
				    w->ctl_fd == -1 ? "it ended" : err);
			else
				n++;
		} else if (ctl_type(m) == CTL_RELEASED) {
			if ((why = json_string_value(json_object_get(m,
			    "busy"))) != NULL)
				err_set(busy, "%s", why);
			else if (json_is_true(json_object_get(m, "ended"))) {
				log_info("tunnel '%s': worker %d replaces "
				    "worker %d, %d listener%s handed over",
				    w->id, (int)w->pid, (int)o->pid, n,
				    n == 1 ? "" : "s");
				worker_ended(d, o, "replaced");
			}
			json_decref(m);
			if (lfd != -1)
				close(lfd);
			break;
		}
		json_decref(m);
		if (lfd != -1)
			close(lfd);
	}
	close(fd);
	json_decref(req);
	return;
fail:
	log_warnx("tunnel '%s': worker %d does not hand its listeners over: "
	    "%s", o->id, (int)o->pid, err);
	if (fd != -1)
		close(fd);
	json_decref(req);
}

/*
 * Loop thread: w has authenticated a new client whose session needs its
 * tunnel's listeners (CTL_TAKEOVER).  The other workers of the same tunnel
 * id give theirs over and end (worker_release), unless one's client is
 * connected: then w is told why and refuses its client for now.
 */
static void
worker_replace(struct disp *d, struct dworker *w, json_t *srcs)
{
	struct dworker	*o, *old[DISP_REPLACE_MAX];
	json_t		*done;
	uint64_t	 deadline;
	char		 err[ERR_LEN], busy[ERR_LEN] = "";
	int		 i, n = 0;

	pthread_mutex_lock(&d->lock);
	LIST_FOREACH(o, &d->workers, link)
		if (o != w && !o->ended && w->id[0] != '\0' &&
		    strcmp(o->id, w->id) == 0 && n < DISP_REPLACE_MAX) {
			o->refs++;
			old[n++] = o;
		}
	pthread_mutex_unlock(&d->lock);
	/* One deadline for all of them: the loop thread waits meanwhile. */
	deadline = disp_now_ms() + DISP_RELEASE_MS;
	for (i = 0; i < n; i++) {
		if (busy[0] == '\0' && !old[i]->ended)
			worker_release(d, old[i], w, srcs, deadline, busy);
		worker_unref(d, old[i]);
	}
	if (busy[0] != '\0')
		log_info("tunnel '%s': worker %d refused for now: %s", w->id,
		    (int)w->pid, busy);
	done = ctl_new(CTL_TAKEOVER_DONE);
	if (busy[0] != '\0')
		json_object_set_new(done, "busy", json_string(busy));
	if (w->ctl_fd != -1 && ctl_send(w->ctl_fd, done, -1, 1000, err) == -1)
		log_warnx("worker %d: %s", (int)w->pid, err);
	json_decref(done);
}

/*
 * Loop thread: w's first client authenticated; the worker becomes a
 * tunnel.  Pending workers are admitted while tunnels are below
 * -maxSession, so a few may authenticate at once past it: those are
 * stopped, the limit holds.
 */
static void
worker_authed(struct disp *d, struct dworker *w)
{
	char	err[ERR_LEN];
	int	over = 0;

	pthread_mutex_lock(&d->lock);
	if (w->ended || w->state != DW_PENDING) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	w->state = DW_AUTHED;
	d->npending--;
	d->nauthed++;
	disp_tenant_add(d, w->tenant, 1);
	over = d->nauthed > d->max_session;
	pthread_mutex_unlock(&d->lock);
	log_info("worker %d (tenant '%s', session %s): client authenticated",
	    (int)w->pid, w->tenant, w->key);
	front_rate_refund(d, w->spawn_ip);
	if (over) {
		log_warnx("worker %d: stopped: more than %d tunnels "
		    "(-maxSession)", (int)w->pid, d->max_session);
		if (worker_stop(w, err) == -1)
			log_warnx("worker %d: %s", (int)w->pid, err);
	}
}

static void
worker_ctl_cb(uv_poll_t *p, int status, int events)
{
	struct dworker	*w = p->data;
	struct disp	*d = p->loop->data;
	json_t		*m, *srcs;
	char		 err[ERR_LEN], reason[ERR_LEN];
	int		 fd, rc;

	for (;;) {
		rc = ctl_recv(w->ctl_fd, &m, &fd, err);
		if (fd != -1)
			close(fd);
		if (rc == -2)
			return;
		if (rc == 1 && ctl_type(m) == CTL_AUTHED) {
			json_decref(m);
			worker_authed(d, w);
			continue;
		}
		if (rc == 1 && ctl_type(m) == CTL_END) {
			snprintf(reason, sizeof(reason), "%s",
			    json_string_value(json_object_get(m, "reason")) ?
			    json_string_value(json_object_get(m, "reason")) :
			    "ended");
			json_decref(m);
			worker_ended(d, w, reason);
			return;
		}
		if (rc == 1 && ctl_type(m) == CTL_TAKEOVER) {
			srcs = json_object_get(m, "srcs");
			worker_replace(d, w, json_is_array(srcs) ? srcs :
			    NULL);
			json_decref(m);
			if (w->ended || !w->polling)
				return;
			continue;
		}
		json_decref(m);
		if (rc <= 0) {
			/* Our own children are reaped with their status. */
			if (w->adopted)
				worker_ended(d, w, rc == 0 ? "control channel "
				    "closed" : err);
			else if (w->polling) {
				uv_poll_stop(&w->poll);
			}
			return;
		}
	}
}

/* Loop thread: watch the control channels of newly registered workers. */
void
worker_watch_pending(struct disp *d)
{
	struct dworker *w;

	pthread_mutex_lock(&d->lock);
	LIST_FOREACH(w, &d->workers, link)
		if (!w->polling && w->ctl_fd != -1) {
			uv_poll_init(d->loop, &w->poll, w->ctl_fd);
			w->poll.data = w;
			uv_poll_start(&w->poll, UV_READABLE, worker_ctl_cb);
			w->polling = 1;
			w->refs++;	/* the poll handle's */
		}
	pthread_mutex_unlock(&d->lock);
}

/* A worker process ended (sig > 0: killed by it, else exit code). */
static void
worker_exited(struct disp *d, pid_t pid, int sig, int code)
{
	struct dworker	*w;
	char		 reason[64];

	if (sig > 0)
		snprintf(reason, sizeof(reason), "killed by signal %d", sig);
	else
		snprintf(reason, sizeof(reason), "exited with status %d", code);
	pthread_mutex_lock(&d->lock);
	LIST_FOREACH(w, &d->workers, link)
		if (w->pid == pid && !w->adopted)
			break;
	if (w != NULL)
		w->refs++;
	pthread_mutex_unlock(&d->lock);
	if (w == NULL)
		return;
	worker_ended(d, w, reason);
	worker_unref(d, w);
}

/* Loop thread, on SIGCHLD: a worker's exit, clean or not. */
void
worker_reap(struct disp *d)
{
	pid_t	pid;
	int	status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		worker_exited(d, pid, WIFSIGNALED(status) ? WTERMSIG(status) : 0,
		    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/*
 * At start: adopt the workers a previous dispatcher left running, found by
 * their sockets; stale sockets are removed.
 */
int
worker_scan(struct disp *d, char *err)
{
	struct dirent	*de;
	struct dworker	*w;
	DIR		*dir;
	json_t		*st;
	char		 path[sizeof(((struct dworker *)0)->sock)], e2[ERR_LEN];
	const char	*s;
	size_t		 len;
	int		 fd, n = 0;

	/* The checked directory, not its path (which may have moved). */
	if ((fd = openat(d->state_fd, ".", O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) == -1 || (dir = fdopendir(fd)) == NULL) {
		err_set(err, "%s: %s", d->state_dir, strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	while ((de = readdir(dir)) != NULL) {
		len = strlen(de->d_name);
		if (len != DISP_KEY_LEN + 5 ||
		    strcmp(de->d_name + DISP_KEY_LEN, ".sock") != 0)
			continue;
		if ((w = calloc(1, sizeof(*w))) == NULL)
			break;
		snprintf(w->sock, sizeof(w->sock), "/proc/self/fd/%d/%.*s",
		    d->state_fd, DISP_KEY_LEN + 5, de->d_name);
		snprintf(path, sizeof(path), "%s", w->sock);
		memcpy(w->key, de->d_name, DISP_KEY_LEN);
		if ((st = worker_stats(w, e2)) == NULL ||
		    (fd = worker_connect(path, e2)) == -1) {
			log_info("removing stale worker socket %s/%s: %s",
			    d->state_dir, de->d_name, e2);
			unlinkat(d->state_fd, de->d_name, 0);
			json_decref(st);
			free(w);
			continue;
		}
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		w->ctl_fd = fd;
#define STR(k, f) if ((s = json_string_value(json_object_get(st, k)))) \
	snprintf(w->f, sizeof(w->f), "%s", s)
		STR("tenant", tenant);
		STR("id", id);
		STR("session", session);
		STR("mode", mode);
#undef STR
		snprintf(w->info.tenant, sizeof(w->info.tenant), "%s",
		    w->tenant);
		snprintf(w->info.id, sizeof(w->info.id), "%s", w->id);
		snprintf(w->info.mode, sizeof(w->info.mode), "%s", w->mode);
		w->started = json_integer_value(json_object_get(st, "started"));
		w->pid = json_integer_value(json_object_get(st, "pid"));
		w->adopted = 1;
		/* Workers older than CTL_AUTHED do not say: tunnels. */
		w->state = json_is_false(json_object_get(st, "authed")) ?
		    DW_PENDING : DW_AUTHED;
		json_decref(st);
		worker_register(d, w, 0);
		n++;
	}
	closedir(dir);
	if (n > 0)
		log_info("adopted %d running workers from %s", n, d->state_dir);
	return 0;
}

/* Loop thread: exit statuses of the workers the zygote forked. */
static void
worker_zygote_cb(uv_poll_t *p, int status, int events)
{
	struct disp	*d = p->data;
	json_t		*m;
	char		 err[ERR_LEN];
	int		 fd, rc;

	for (;;) {
		rc = ctl_recv(d->zygote_exit, &m, &fd, err);
		if (fd != -1)
			close(fd);
		if (rc == -2)
			return;
		if (rc <= 0) {
			log_warnx("zygote gone%s%s", rc < 0 ? ": " : "",
			    rc < 0 ? err : "");
			uv_poll_stop(&d->zpoll);
			return;
		}
		if (ctl_type(m) == CTL_EXITED)
			worker_exited(d, json_integer_value(json_object_get(m,
			    "pid")), json_integer_value(json_object_get(m,
			    "signal")), json_integer_value(json_object_get(m,
			    "code")));
		json_decref(m);
	}
}

int
worker_zygote_start(struct disp *d, char *err)
{
	int	req[2] = { -1, -1 }, ex[2] = { -1, -1 };
	pid_t	pid;

	d->zygote_req = d->zygote_exit = -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, req) == -1 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ex) == -1) {
		err_set(err, "socketpair: %s", strerror(errno));
		goto fail;
	}
	if ((pid = worker_exec(d, "zygote", req[1], ex[1], err)) == -1)
		goto fail;
	close(req[1]);
	close(ex[1]);
	d->zygote_req = req[0];
	d->zygote_exit = ex[0];
	fcntl(ex[0], F_SETFL, fcntl(ex[0], F_GETFL) | O_NONBLOCK);
	uv_poll_init(d->loop, &d->zpoll, ex[0]);
	d->zpoll.data = d;
	uv_poll_start(&d->zpoll, UV_READABLE, worker_zygote_cb);
	return 0;
fail:
	for (pid = 0; pid < 2; pid++) {
		if (req[pid] != -1)
			close(req[pid]);
		if (ex[pid] != -1)
			close(ex[pid]);
	}
	return -1;
}

/* The zygote ends when its request socket closes; workers stay. */
void
worker_zygote_stop(struct disp *d)
{
	pthread_mutex_lock(&d->zlock);
	if (d->zygote_req != -1)
		close(d->zygote_req);
	d->zygote_req = -1;
	pthread_mutex_unlock(&d->zlock);
}
