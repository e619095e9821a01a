/*
 * Supervision of the workers, on the loop thread: their control channels
 * (CTL_AUTHED, CTL_END, CTL_TAKEOVER, served through one dispatch table),
 * their exits (our children reaped here, the zygote's reported with
 * CTL_EXITED), the takeover of a tunnel's listeners from the workers it
 * replaces, and the adoption of the workers a previous dispatcher left.
 */

#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "ctlmsg.h"
#include "disp.h"
#include "err.h"
#include "joinpt.h"
#include "log.h"
#include "ratelog.h"

/* What a handler of a worker's channel is given. */
struct wmon_ctx {
	struct disp	*d;
	struct dworker	*w;
};

static void
wmon_poll_closed(uv_handle_t *h)
{
	wreg_unref(h->loop->data, h->data);
}

const char *
wmon_end_name(enum dworker_end why)
{
	static const char *const names[DWE_COUNT] = {
		[DWE_ENDED] = "ended", [DWE_STOPPED] = "stopped",
		[DWE_REPLACED] = "replaced", [DWE_EXITED] = "exited",
		[DWE_KILLED] = "killed", [DWE_SECCOMP] = "seccomp",
		[DWE_BROKE] = "protocol_error", [DWE_LOST] = "lost",
	};

	return (unsigned)why < DWE_COUNT ? names[why] : "ended";
}

void
wmon_ended(struct disp *d, struct dworker *w, enum dworker_end why,
    const char *reason)
{
	struct policy	*p;
	char		 err[ERR_LEN];
	uint64_t	 t0;

	if (!wreg_remove(d, w))
		return;
	log_info("worker %d (tenant '%s', session %s) ended: %s", (int)w->pid,
	    w->tenant, w->key, reason);
	atomic_fetch_add(&d->m.ended, 1);
	atomic_fetch_add(&d->m.exits[(unsigned)why < DWE_COUNT ? why :
	    DWE_ENDED], 1);
	console_note_exit(d, w, why, reason);
	/* tunneld_bytes_total stays a counter when a tunnel goes. */
	atomic_fetch_add(&d->m.ended_in, (unsigned long long)__atomic_load_n(
	    &w->last_in, __ATOMIC_RELAXED));
	atomic_fetch_add(&d->m.ended_out, (unsigned long long)__atomic_load_n(
	    &w->last_out, __ATOMIC_RELAXED));
	/* A crashed worker leaves its socket behind. */
	unlink(w->sock);
	join_forget(d, w);
	if (w->polling) {
		uv_poll_stop(&w->poll);
		uv_close((uv_handle_t *)&w->poll, wmon_poll_closed);
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
		t0 = disp_now_us();
		if (policy_end_tunnel(p, &w->info, reason, err) == -1) {
			atomic_fetch_add(&d->m.policy_errors, 1);
			log_warnx("onEndTunnel: %s", err);
		}
		hist_observe(&d->m.policy[DPC_END_TUNNEL], disp_now_us() - t0);
		policy_unref(p);
	}
	wreg_unref(d, w);	/* the registry's */
}

/* 1 if src is one of the sources asked for. */
static int
wmon_src_asked(const struct ctlmsg_srcs *srcs, const char *src)
{
	size_t i;

	for (i = 0; i < srcs->n; i++)
		if (strcmp(src, srcs->src[i]) == 0)
			return 1;
	return 0;
}

/* A listener of src reached w: marked in handed; a join point's
 * socket is w's from now on. */
static void
wmon_handed(struct disp *d, struct dworker *w, const struct ctlmsg_srcs *srcs,
    const char *src, char *handed)
{
	size_t i;

	for (i = 0; i < srcs->n; i++)
		if (strcmp(src, srcs->src[i]) == 0)
			handed[i] = 1;
	if (strncmp(src, JOINPT_PREFIX, JOINPT_PREFIX_LEN) == 0)
		join_moved(d, w, src);
}

/*
 * One message of o's answer to CTL_RELEASE: a listener goes on to w as it
 * comes (only of srcs, no more than srcs has; marked in handed),
 * CTL_RELEASED ends the exchange (returns 1), anything else is ignored.
 * -1 with err: o sent a listener not asked for.
 */
static int
wmon_release_step(struct disp *d, struct dworker *o, struct dworker *w,
    const struct ctlmsg_srcs *srcs, struct ctlmsg *m, int lfd, int *n,
    char *handed, char *busy, char *err)
{
	char e2[ERR_LEN];

	if (m->type == CTL_LISTENER && lfd != -1) {
		if ((size_t)*n >= srcs->n ||
		    !wmon_src_asked(srcs, m->u.listener.src)) {
			err_set(err, "sent a listener not asked for");
			return -1;
		}
		if (w->ctl_fd == -1 ||
		    ctlmsg_send(w->ctl_fd, m, lfd, 1000, e2) == -1)
			log_warnx("worker %d: listener lost in the takeover: "
			    "%s", (int)w->pid, w->ctl_fd == -1 ? "it ended" :
			    e2);
		else {
			(*n)++;
			wmon_handed(d, w, srcs, m->u.listener.src, handed);
		}
		return 0;
	}
	if (m->type != CTL_RELEASED)
		return 0;
	if (m->u.released.busy[0] != '\0')
		err_set(busy, "%s", m->u.released.busy);
	else if (m->u.released.ended) {
		log_info("tunnel '%s': worker %d replaces worker %d, %d "
		    "listener%s handed over", w->id, (int)w->pid, (int)o->pid,
		    *n, *n == 1 ? "" : "s");
		wmon_ended(d, o, DWE_REPLACED, "replaced");
	}
	return 1;
}

/*
 * Asks o, another worker of w's tunnel, to hand its listeners over and
 * end; each listening socket it sends goes on to w as it comes, so the port
 * never closes.  busy gets o's reason to refuse (its client is connected).
 * o has until deadline, and may send only listeners of srcs: the loop
 * thread waits on it, and o may be a compromised tenant's.
 */
static void
wmon_release(struct disp *d, struct dworker *o, struct dworker *w,
    const struct ctlmsg *req, uint64_t deadline, char *handed, char *busy)
{
	struct ctlmsg	*m;
	char		 err[ERR_LEN];
	int		 fd = -1, lfd, rc = -1, n = 0;

	if ((m = malloc(sizeof(*m))) == NULL) {
		err_set(err, "out of memory");
		goto done;
	}
	if ((fd = wrpc_connect(o->sock, o->uid, err)) == -1 ||
	    ctlmsg_send(fd, req, -1, DISP_RELEASE_MS, err) == -1)
		goto done;
	for (rc = 0; rc == 0;) {
		if (!wrpc_wait(fd, deadline)) {
			err_set(err, "no answer in time (%d ms for the "
			    "takeover)", DISP_RELEASE_MS);
			rc = -1;
			break;
		}
		if ((rc = ctlmsg_recv(fd, m, &lfd, err)) == -2) {
			rc = 0;
			continue;
		}
		if (rc <= 0) {
			if (rc == 0)
				err_set(err, "control connection closed");
			rc = -1;
			break;
		}
		rc = wmon_release_step(d, o, w, &req->u.release, m, lfd, &n,
		    handed, busy, err);
		ctlmsg_clear(m);
		if (lfd != -1)
			close(lfd);
	}
done:
	if (rc == -1)
		log_warnx("tunnel '%s': worker %d does not hand its listeners "
		    "over: %s", o->id, (int)o->pid, err);
	if (fd != -1)
		close(fd);
	free(m);
}

/*
 * The join points of srcs that no replaced worker handed over: a new
 * socket each (join_offer), sent to w as a listener; busy says why not
 * when another tunnel of the tenant offers one.
 */
static void
wmon_join_offers(struct disp *d, struct dworker *w,
    const struct ctlmsg_srcs *srcs, const char *handed, char *busy)
{
	struct ctlmsg	m;
	char		err[ERR_LEN];
	size_t		i;
	int		fd;

	for (i = 0; i < srcs->n && busy[0] == '\0'; i++) {
		if (handed[i] || strncmp(srcs->src[i], JOINPT_PREFIX,
		    JOINPT_PREFIX_LEN) != 0)
			continue;
		if (join_offer(d, w, srcs->src[i], &fd, busy, err) == -1) {
			log_warnx("worker %d (tenant '%s'): %s", (int)w->pid,
			    w->tenant, err);
			continue;
		}
		if (fd == -1)
			continue;
		ctlmsg_init(&m, CTL_LISTENER);
		snprintf(m.u.listener.src, sizeof(m.u.listener.src), "%s",
		    srcs->src[i]);
		if (w->ctl_fd == -1 ||
		    ctlmsg_send(w->ctl_fd, &m, fd, 1000, err) == -1)
			log_warnx("worker %d: %s lost: %s", (int)w->pid,
			    srcs->src[i], w->ctl_fd == -1 ? "it ended" : err);
		else
			log_info("worker %d (tenant '%s'): offers %s",
			    (int)w->pid, w->tenant, srcs->src[i]);
		close(fd);
	}
}

/*
 * w has authenticated a new client whose session needs its tunnel's
 * listeners (CTL_TAKEOVER).  The other workers of the same tunnel id give
 * theirs over and end (wmon_release), unless one's client is connected:
 * then w is told why and refuses its client for now.
 */
static int
wmon_on_takeover(void *ctx, struct ctlmsg *m, int *fdp, char *e)
{
	struct wmon_ctx	*x = ctx;
	struct dworker	*w = x->w, *old[DISP_REPLACE_MAX];
	struct ctlmsg	 done;
	uint64_t	 deadline;
	char		 err[ERR_LEN], busy[ERR_LEN] = "";
	char		 handed[CTLMSG_MAX_SRCS] = { 0 };
	size_t		 i, n;

	n = wreg_same_tunnel(x->d, w, old, DISP_REPLACE_MAX);
	/* The same sources, asked of each of them. */
	m->type = CTL_RELEASE;
	/* One deadline for all of them: the loop thread waits meanwhile. */
	deadline = disp_now_ms() + DISP_RELEASE_MS;
	for (i = 0; i < n; i++) {
		if (busy[0] == '\0' && !old[i]->ended)
			wmon_release(x->d, old[i], w, m, deadline, handed,
			    busy);
		wreg_unref(x->d, old[i]);
	}
	/* Join points nobody handed over: new sockets, ours to bind. */
	if (busy[0] == '\0' && !w->ended)
		wmon_join_offers(x->d, w, &m->u.release, handed, busy);
	if (busy[0] != '\0')
		log_info("tunnel '%s': worker %d refused for now: %s", w->id,
		    (int)w->pid, busy);
	ctlmsg_init(&done, CTL_TAKEOVER_DONE);
	snprintf(done.u.takeover_done.text, sizeof(done.u.takeover_done.text),
	    "%s", busy);
	if (w->ctl_fd != -1 &&
	    ctlmsg_send(w->ctl_fd, &done, -1, 1000, err) == -1)
		log_warnx("worker %d: %s", (int)w->pid, err);
	return w->ended || !w->polling ? CTLMSG_STOP : CTLMSG_OK;
}

/*
 * w's first client authenticated; the worker becomes a tunnel.  Pending
 * workers are admitted while tunnels are below -maxSession, so a few may
 * authenticate at once past it: those are stopped, the limit holds.
 */
static int
wmon_on_authed(void *ctx, struct ctlmsg *m, int *fdp, char *e)
{
	struct wmon_ctx	*x = ctx;
	struct dworker	*w = x->w;
	char		 err[ERR_LEN];
	int		 over;

	if ((over = wreg_set_authed(x->d, w)) == -1)
		return CTLMSG_OK;
	log_info("worker %d (tenant '%s', session %s): client authenticated",
	    (int)w->pid, w->tenant, w->key);
	srate_refund(x->d, w->spawn_ip);
	if (over) {
		log_warnx("worker %d: stopped: more than %d tunnels "
		    "(-maxSession)", (int)w->pid, x->d->max_session);
		if (wrpc_stop(w, err) == -1)
			log_warnx("worker %d: %s", (int)w->pid, err);
	}
	return CTLMSG_OK;
}

/* A stream to a join point of w's tenant (join.c decides). */
static int
wmon_on_join(void *ctx, struct ctlmsg *m, int *fdp, char *e)
{
	struct wmon_ctx *x = ctx;

	join_answer(x->d, x->w, &m->u.join);
	return CTLMSG_OK;
}

static int
wmon_on_end(void *ctx, struct ctlmsg *m, int *fdp, char *e)
{
	struct wmon_ctx *x = ctx;

	/* A stop the console asked for, or the worker's own reason. */
	wmon_ended(x->d, x->w, __atomic_load_n(&x->w->stop_asked,
	    __ATOMIC_RELAXED) ? DWE_STOPPED : DWE_ENDED, m->u.end.text);
	return CTLMSG_STOP;
}

/* What the dispatcher accepts on a worker's control channel. */
const struct ctlmsg_rule wmon_rules[] = {
	{ CTL_AUTHED,	WMON_PENDING,			wmon_on_authed },
	{ CTL_END,	WMON_PENDING | WMON_AUTHED,	wmon_on_end },
	/* A takeover comes before CTL_AUTHED: the worker asks for the
	 * listeners before it answers its client's challenge. */
	{ CTL_TAKEOVER,	WMON_PENDING | WMON_AUTHED,	wmon_on_takeover },
	/* Streams come only once a client authenticated. */
	{ CTL_JOIN,	WMON_AUTHED,			wmon_on_join },
};
const size_t wmon_nrules = sizeof(wmon_rules) / sizeof(wmon_rules[0]);

/*
 * The channel is closed, or the worker broke the contract (logged).  A
 * worker that broke it is compromised or broken: it is killed and its
 * tunnel ends now, with that reason.  Otherwise an adopted worker is gone
 * for us, and our own children are reaped with their status, meanwhile
 * nothing more is read from them.
 */
static void
wmon_lost(struct disp *d, struct dworker *w, int broke, const char *why)
{
	char err[ERR_LEN];

	/* Without root, an adopted worker cannot be killed: its channel
	 * closes and its tunnel ends for us all the same. */
	if (broke && wspawn_signal(d, w->pid, w->adopted, SIGKILL, err) == -1)
		log_warnx("worker %d: %s", (int)w->pid, err);
	if (broke || w->adopted)
		wmon_ended(d, w, broke ? DWE_BROKE : DWE_LOST, why);
	else if (w->polling)
		uv_poll_stop(&w->poll);
}

/*
 * A worker or the zygote broke the contract; the caller closes the
 * channel.  Rate-limited: a host's workers could all be made to say the
 * same thing.  Loop thread only.
 */
static void
wmon_refused(const char *who, const char *why)
{
	static struct ratelog	rl;
	unsigned long		more = 0;

	if (rl.burst == 0)
		ratelog_init(&rl, 0, 0);
	if (!ratelog_allow(&rl, uv_hrtime() / 1000000, &more))
		return;
	if (more > 0)
		log_warnx("%s: %s, closing the control channel (%lu more "
		    "suppressed)", who, why, more);
	else
		log_warnx("%s: %s, closing the control channel", who, why);
}

static void
wmon_ctl_cb(uv_poll_t *p, int status, int events)
{
	struct wmon_ctx	 x = { p->loop->data, p->data };
	char		 who[64], err[ERR_LEN];
	int		 rc, n;

	snprintf(who, sizeof(who), "worker %d", (int)x.w->pid);
	/* A worker that keeps writing (CTL_JOIN is one a stream) gets a
	 * batch a turn: the poll is level-triggered, the rest waits for the
	 * next one, and the other workers' channels are served meanwhile. */
	for (n = 0; n < DISP_CTL_BATCH; n++) {
		rc = ctlmsg_serve(x.w->ctl_fd, wmon_rules, wmon_nrules,
		    1u << __atomic_load_n(&x.w->state, __ATOMIC_RELAXED), &x,
		    err);
		if (rc == -2 || rc == CTLMSG_STOP)
			return;
		if (rc == CTLMSG_REFUSED)
			wmon_refused(who, err);
		if (rc == 0 || rc == CTLMSG_REFUSED) {
			wmon_lost(x.d, x.w, rc == CTLMSG_REFUSED, rc == 0 ?
			    "control channel closed" : "control protocol error");
			return;
		}
	}
}

void
wmon_watch_pending(struct disp *d)
{
	struct dworker *w;

	pthread_mutex_lock(&d->lock);
	LIST_FOREACH(w, &d->workers, link)
		if (!w->polling && w->ctl_fd != -1) {
			uv_poll_init(d->loop, &w->poll, w->ctl_fd);
			w->poll.data = w;
			uv_poll_start(&w->poll, UV_READABLE, wmon_ctl_cb);
			w->polling = 1;
			w->refs++;	/* the poll handle's */
		}
	pthread_mutex_unlock(&d->lock);
}

/* A worker process ended (sig > 0: killed by it, else exit code). */
static void
wmon_exited(struct disp *d, pid_t pid, int sig, int code)
{
	struct dworker	*w;
	char		 reason[64];
	enum dworker_end why = sig == SIGSYS ? DWE_SECCOMP : sig > 0 ?
			    DWE_KILLED : DWE_EXITED;

	if (sig == SIGSYS)
		/* Its seccomp filter's verdict (SCMP_ACT_KILL_PROCESS). */
		snprintf(reason, sizeof(reason), "killed by signal %d "
		    "(seccomp: a forbidden system call)", sig);
	else if (sig > 0)
		snprintf(reason, sizeof(reason), "killed by signal %d", sig);
	else
		snprintf(reason, sizeof(reason), "exited with status %d", code);
	/* Its uid is free again, whether it was a pooled worker or not. */
	wuid_reaped(d, pid);
	if ((w = wreg_find_pid(d, pid)) == NULL)
		return;
	wmon_ended(d, w, why, reason);
	wreg_unref(d, w);
}

void
wmon_reap(struct disp *d)
{
	pid_t	pid;
	int	status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		wmon_exited(d, pid, WIFSIGNALED(status) ? WTERMSIG(status) : 0,
		    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* A worker of the state directory's socket name, as its figures say. */
static struct dworker *
wmon_adoptee(struct disp *d, const char *name, char *err)
{
	struct ctlmsg_stats	 st;
	struct dworker		*w;
	int			 fd;

	memset(&st, 0, sizeof(st));
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		err_set(err, "out of memory");
		return NULL;
	}
	snprintf(w->sock, sizeof(w->sock), "/proc/self/fd/%d/%.*s",
	    d->state_fd, DISP_KEY_LEN + 5, name);
	memcpy(w->key, name, DISP_KEY_LEN);
	/*
	 * The pid and uid are the kernel's, not the worker's word: the
	 * dispatcher signals the pid (a stop, a broken contract), and a
	 * worker that named another process could have that one killed.
	 * The uid must be one we give workers; it stays taken.
	 */
	if ((fd = wrpc_connect(w->sock, WRPC_ANY_UID, err)) == -1) {
		free(w);
		return NULL;
	}
	if (ctl_peer_cred(fd, &w->pid, &w->uid, err) == -1 ||
	    !wuid_ours(d, w->uid) ||
	    wrpc_stats(w->sock, w->uid, &st, err) == -1 || w->pid != st.pid) {
		if (w->pid > 0 && !wuid_ours(d, w->uid))
			err_set(err, "peer runs as uid %ld, not one of our "
			    "workers' uids", (long)w->uid);
		else if (w->pid > 0 && st.pid > 0 && w->pid != st.pid)
			err_set(err, "says it is pid %lld, its socket's "
			    "listener is pid %ld", (long long)st.pid,
			    (long)w->pid);
		close(fd);
		free(w);
		return NULL;
	}
	wuid_adopted(d, w->uid, w->pid);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	w->ctl_fd = fd;
	snprintf(w->tenant, sizeof(w->tenant), "%s", st.tenant);
	snprintf(w->id, sizeof(w->id), "%s", st.id);
	snprintf(w->session, sizeof(w->session), "%s", st.session);
	snprintf(w->mode, sizeof(w->mode), "%s", st.mode);
	snprintf(w->info.tenant, sizeof(w->info.tenant), "%s", w->tenant);
	snprintf(w->info.id, sizeof(w->info.id), "%s", w->id);
	snprintf(w->info.mode, sizeof(w->info.mode), "%s", w->mode);
	w->started = (time_t)st.started;
	w->adopted = 1;
	/* Its tenant is our record's, if it has join points. */
	if (join_adopted(d, w, err) == -1)
		log_warnx("worker %d: %s: no join point for it", (int)w->pid,
		    err);
	/* Workers older than CTL_AUTHED do not say: tunnels. */
	w->state = st.authed ? DW_AUTHED : DW_PENDING;
	return w;
}

int
wmon_adopt(struct disp *d, char *err)
{
	struct dirent	*de;
	struct dworker	*w;
	DIR		*dir;
	char		 e2[ERR_LEN];
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
		if (strlen(de->d_name) != DISP_KEY_LEN + 5 ||
		    strcmp(de->d_name + DISP_KEY_LEN, ".sock") != 0)
			continue;
		if ((w = wmon_adoptee(d, de->d_name, e2)) == NULL) {
			log_info("removing stale worker socket %s/%s: %s",
			    d->state_dir, de->d_name, e2);
			unlinkat(d->state_fd, de->d_name, 0);
			continue;
		}
		wreg_add(d, w, 0);
		n++;
	}
	closedir(dir);
	if (n > 0)
		log_info("adopted %d running workers from %s", n, d->state_dir);
	return 0;
}

static int
wmon_on_exited(void *ctx, struct ctlmsg *m, int *fdp, char *err)
{
	wmon_exited(ctx, (pid_t)m->u.exited.pid, m->u.exited.signal,
	    m->u.exited.code);
	return CTLMSG_OK;
}

/* What the dispatcher accepts from the zygote. */
const struct ctlmsg_rule wmon_zygote_rules[] = {
	{ CTL_EXITED,	WMON_RUN,	wmon_on_exited },
};
const size_t wmon_zygote_nrules =
    sizeof(wmon_zygote_rules) / sizeof(wmon_zygote_rules[0]);

static void
wmon_zygote_cb(uv_poll_t *p, int status, int events)
{
	struct disp	*d = p->data;
	char		 err[ERR_LEN];
	int		 rc;

	for (;;) {
		rc = ctlmsg_serve(d->zygote_exit, wmon_zygote_rules,
		    wmon_zygote_nrules, WMON_RUN, d, err);
		if (rc == -2)
			return;
		if (rc == CTLMSG_REFUSED)
			wmon_refused("zygote", err);
		if (rc == 0 || rc == CTLMSG_REFUSED) {
			if (rc == 0)
				log_warnx("zygote gone");
			/* Workers start with exec from now on. */
			uv_poll_stop(&d->zpoll);
			wspawn_zygote_stop(d);
			return;
		}
	}
}

void
wmon_watch_zygote(struct disp *d)
{
	uv_poll_init(d->loop, &d->zpoll, d->zygote_exit);
	d->zpoll.data = d;
	uv_poll_start(&d->zpoll, UV_READABLE, wmon_zygote_cb);
}
