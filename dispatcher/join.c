/*
 * Join points (common/joinpt.h, docs/operations.md "Joining two
 * clients"): a tenant's worker offers one (the Src of an r forward) and
 * another of the same tenant reaches it (the Dst of a t forward), both
 * only through us.  Each point is a unix socket in our own state
 * directory, STATE/join/<tenant>/<NAME>, bound here and listened on by
 * the worker that offers it; a stream to it is connected here and its
 * socket handed to the worker that asked (CTL_JOIN, CTL_JOINED).
 *
 * Why this keeps tenants apart (docs/security.md, "Join points"): the
 * directory is ours, mode 0700, so no worker uid (nor any other local
 * user) can reach a point by itself; a worker names a point, never a
 * tenant, and the tenant is ours: the policy's answer that started the
 * worker, or for a worker a previous dispatcher started, the record that
 * dispatcher left in STATE/join/workers/<key>, never the worker's word.
 * A point is not a TCP port, so no forward to a local port reaches it.
 *
 * <tenant> is the first 32 hex digits of SHA-256(tenant) (wreg_key): a
 * fixed length that keeps sun_path short and lets no tenant name (".."
 * is a valid one) become a path.  <NAME>.by beside a socket holds the key
 * of the worker that offers it, so that a second offer is refused while
 * that worker lives and a stale socket is replaced.
 *
 * Loop thread only (takeovers and CTL_JOIN are served there), but for
 * join_record (any thread: one worker's own file) and what runs at start.
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctlmsg.h"
#include "disp.h"
#include "err.h"
#include "joinpt.h"
#include "log.h"
#include "mode.h"
#include "ratelog.h"

#define JOIN_DIR	"join"
#define JOIN_WORKERS	"workers"	/* in JOIN_DIR: key -> tenant */
#define JOIN_BY		".by"
#define JOIN_RECORD_MAX	(2 + POLICY_ID_LEN + POLICY_MAX_FWDS * POLICY_FWD_LEN)

/* A directory of ours (at fd/name, created 0700 if missing): its fd. */
static int
join_dir(struct disp *d, int at, const char *name, int flags, char *err)
{
	struct stat	st;
	int		fd;

	if (mkdirat(at, name, 0700) == -1 && errno != EEXIST) {
		err_set(err, "%s: %s", name, strerror(errno));
		return -1;
	}
	if ((fd = openat(at, name, flags | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) == -1) {
		err_set(err, "%s: %s", name, errno == ELOOP ? "a symlink" :
		    strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !dpriv_owner_ok(d, st.st_uid)) {
		err_set(err, "%s: not ours", name);
		close(fd);
		return -1;
	}
	/* Ours: a mode someone widened is narrowed again. */
	if ((st.st_mode & 077) != 0 && !(flags & O_PATH) &&
	    fchmod(fd, 0700) == -1) {
		err_set(err, "%s: chmod: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int
join_setup(struct disp *d, char *err)
{
	char e[ERR_LEN];

	d->join_fd = d->join_wfd = -1;
	if ((d->join_fd = join_dir(d, d->state_fd, JOIN_DIR, O_RDONLY,
	    e)) == -1 ||
	    (d->join_wfd = join_dir(d, d->join_fd, JOIN_WORKERS, O_RDONLY,
	    e)) == -1) {
		err_set(err, "%s/%s", d->state_dir, e);
		join_close(d);
		return -1;
	}
	return 0;
}

void
join_close(struct disp *d)
{
	if (d->join_wfd != -1)
		close(d->join_wfd);
	if (d->join_fd != -1)
		close(d->join_fd);
	d->join_fd = d->join_wfd = -1;
}

/* chown of every entry of directory fd (one level). */
static int
join_chown_dir(struct disp *d, int fd, int depth, char *err)
{
	struct dirent	*e;
	DIR		*dir;
	int		 dfd, sub, rc = 0;

	if (fchown(fd, d->run_uid, d->run_gid) == -1) {
		err_set(err, "chown: %s", strerror(errno));
		return -1;
	}
	if ((dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1 || (dir = fdopendir(dfd)) == NULL) {
		err_set(err, "%s", strerror(errno));
		if (dfd != -1)
			close(dfd);
		return -1;
	}
	while (rc == 0 && (e = readdir(dir)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (depth > 0 && (sub = openat(fd, e->d_name, O_RDONLY |
		    O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) != -1) {
			rc = join_chown_dir(d, sub, depth - 1, err);
			close(sub);
		} else if (fchownat(fd, e->d_name, d->run_uid, d->run_gid,
		    AT_SYMLINK_NOFOLLOW) == -1) {
			err_set(err, "chown %s: %s", e->d_name,
			    strerror(errno));
			rc = -1;
		}
	}
	closedir(dir);
	return rc;
}

int
join_chown(struct disp *d, char *err)
{
	char e[ERR_LEN];

	if (d->join_fd == -1 || join_chown_dir(d, d->join_fd, 1, e) == 0)
		return 0;
	err_set(err, "%s/%s: %s", d->state_dir, JOIN_DIR, e);
	return -1;
}

/*
 * Whether forward (of a worker in mode) has a join point at its Src (src)
 * or its Dst: 1 with its NAME in name, else 0.
 */
static int
join_end(const char *forward, const char *mode, int src,
    char name[JOINPT_NAME_MAX + 1])
{
	struct fwd	 f;
	const char	*n;
	char		 e[ERR_LEN];

	if (fwd_parse(forward, mode_name_is_reverse_server(mode), &f, e) == -1)
		return 0;
	if ((n = src ? (f.reverse ? joinpt_name(&f.src) : NULL) :
	    (f.reverse ? NULL : joinpt_name(&f.dst))) == NULL)
		return 0;
	snprintf(name, JOINPT_NAME_MAX + 1, "%s", n);
	return 1;
}

/*
 * Whether w's policy names join point name: offered (an r forward's Src)
 * or reached (a t forward's Dst).  Compared exactly, as the worker does.
 */
static int
join_granted(const struct dworker *w, const char *name, int offer)
{
	char	n[JOINPT_NAME_MAX + 1];
	size_t	i;

	for (i = 0; i < w->info.nfwd; i++)
		if (join_end(w->info.forwards[i], w->mode, offer, n) &&
		    strcmp(n, name) == 0)
			return 1;
	return 0;
}

/* Whether w's policy names any join point (its record is then kept). */
static int
join_any(const struct dworker *w)
{
	char	n[JOINPT_NAME_MAX + 1];
	size_t	i;

	for (i = 0; i < w->info.nfwd; i++)
		if (join_end(w->info.forwards[i], w->mode, 1, n) ||
		    join_end(w->info.forwards[i], w->mode, 0, n))
			return 1;
	return 0;
}

/* Writes data to dir/name through a temporary name: 0, or -1 with err. */
static int
join_write(int dir, const char *name, const char *data, size_t n, char *err)
{
	char	tmp[NAME_MAX + 1];
	int	fd, rc = -1;

	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	if ((fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) == -1) {
		err_set(err, "%s: %s", tmp, strerror(errno));
		return -1;
	}
	if (write(fd, data, n) != (ssize_t)n)
		err_set(err, "%s: write: %s", tmp, strerror(errno));
	else if (renameat(dir, tmp, dir, name) == -1)
		err_set(err, "%s: %s", name, strerror(errno));
	else
		rc = 0;
	close(fd);
	if (rc == -1)
		unlinkat(dir, tmp, 0);
	return rc;
}

/* Reads at most cap - 1 bytes of dir/name, NUL-terminated: the length,
 * or -1. */
static ssize_t
join_read(int dir, const char *name, char *buf, size_t cap)
{
	ssize_t	n;
	int	fd;

	if ((fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return n;
}

int
join_record(struct disp *d, const struct dworker *w, char *err)
{
	char	*buf;
	size_t	 i, n;
	int	 rc;

	if (!join_any(w))
		return 0;
	if ((buf = malloc(JOIN_RECORD_MAX)) == NULL) {
		err_set(err, "out of memory");
		return -1;
	}
	/* The tenant, the mode, maxConnectRate, then the forwards. */
	n = (size_t)snprintf(buf, JOIN_RECORD_MAX, "%s\n%s\n%d\n", w->tenant,
	    w->mode, w->info.limits.max_connect_rate);
	for (i = 0; i < w->info.nfwd && n < JOIN_RECORD_MAX; i++)
		n += (size_t)snprintf(buf + n, JOIN_RECORD_MAX - n, "%s\n",
		    w->info.forwards[i]);
	rc = n < JOIN_RECORD_MAX ? join_write(d->join_wfd, w->key, buf, n,
	    err) : -1;
	if (n >= JOIN_RECORD_MAX)
		err_set(err, "the record does not fit");
	free(buf);
	return rc;
}

void
join_forget(struct disp *d, const struct dworker *w)
{
	if (d->join_wfd != -1)
		unlinkat(d->join_wfd, w->key, 0);
}

/* A tenant name as the policy's rule has it (policy.h). */
static int
join_tenant_ok(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n < POLICY_ID_LEN &&
	    strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789._:@+-") == n;
}

int
join_adopted(struct disp *d, struct dworker *w, char *err)
{
	char	*buf, *line, *next, *end, tenant[POLICY_ID_LEN], mode[16];
	size_t	 k;
	long	 rate = -1;
	int	 rc = -1;

	if ((buf = malloc(JOIN_RECORD_MAX + 1)) == NULL) {
		err_set(err, "out of memory");
		return -1;
	}
	if (join_read(d->join_wfd, w->key, buf, JOIN_RECORD_MAX + 1) < 0) {
		rc = 0;		/* none: no join point, as before */
		goto done;
	}
	for (k = 0, line = buf; line != NULL && *line != '\0'; line = next,
	    k++) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if (k == 0)
			snprintf(tenant, sizeof(tenant), "%s", line);
		else if (k == 1)
			snprintf(mode, sizeof(mode), "%s", line);
		else if (k == 2) {
			rate = strtol(line, &end, 10);
			if (*end != '\0' || end == line)
				rate = -1;
		} else if (w->info.nfwd < POLICY_MAX_FWDS &&
		    strlen(line) < POLICY_FWD_LEN)
			snprintf(w->info.forwards[w->info.nfwd++],
			    POLICY_FWD_LEN, "%s", line);
	}
	if (k < 3 || !join_tenant_ok(tenant) || !mode_name_is_server(mode) ||
	    rate < 0 || rate > CTLMSG_CONNRATE_MAX) {
		w->info.nfwd = 0;
		err_set(err, "record %s/%s/%s/%s is not one of ours",
		    d->state_dir, JOIN_DIR, JOIN_WORKERS, w->key);
		goto done;
	}
	if (strcmp(tenant, w->tenant) != 0)
		log_warnx("worker %d says it serves tenant '%s'; it was "
		    "started for tenant '%s', which it stays", (int)w->pid,
		    w->tenant, tenant);
	snprintf(w->tenant, sizeof(w->tenant), "%s", tenant);
	snprintf(w->info.tenant, sizeof(w->info.tenant), "%s", tenant);
	snprintf(w->mode, sizeof(w->mode), "%s", mode);
	w->info.limits.max_connect_rate = (int)rate;
	rc = 1;
done:
	free(buf);
	return rc;
}

void
join_sweep(struct disp *d)
{
	struct dworker	*w;
	struct dirent	*e;
	DIR		*dir;
	int		 fd;

	if ((fd = openat(d->join_wfd, ".", O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) == -1 || (dir = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		return;
	}
	while ((e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp") == NULL)
			continue;
		if ((w = wreg_find(d, e->d_name)) != NULL) {
			wreg_unref(d, w);
			continue;
		}
		unlinkat(d->join_wfd, e->d_name, 0);
	}
	closedir(dir);
}

/* The directory of tenant's points (made if create): its O_PATH fd, or
 * -1 with errno. */
static int
join_tenant_dir(struct disp *d, const char *tenant, int create)
{
	char	hex[DISP_KEY_LEN + 1], e[ERR_LEN];

	wreg_key(tenant, hex);
	if (create)
		return join_dir(d, d->join_fd, hex, O_PATH, e);
	return openat(d->join_fd, hex, O_PATH | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
}

/* A unix address for name in directory fd dir (our own descriptor). */
static void
join_addr(struct sockaddr_un *sun, int dir, const char *name)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	snprintf(sun->sun_path, sizeof(sun->sun_path), "/proc/self/fd/%d/%s",
	    dir, name);
}

/*
 * Whether another live worker than w offers name in dir: its .by file
 * names it (a stale file names a worker that is gone).
 */
static int
join_held(struct disp *d, struct dworker *w, int dir, const char *name)
{
	struct dworker	*o;
	char		 by[NAME_MAX + 1], key[DISP_KEY_LEN + 2];
	int		 held;

	snprintf(by, sizeof(by), "%s%s", name, JOIN_BY);
	if (join_read(dir, by, key, sizeof(key)) != DISP_KEY_LEN ||
	    strcmp(key, w->key) == 0 || (o = wreg_find(d, key)) == NULL)
		return 0;
	held = !o->ended;
	wreg_unref(d, o);
	return held;
}

int
join_offer(struct disp *d, struct dworker *w, const char *src, int *lfd,
    char *busy, char *err)
{
	struct sockaddr_un	 sun;
	struct hostinfo		 h;
	const char		*name;
	char			 by[NAME_MAX + 1];
	int			 dir = -1, fd = -1, rc = -1;

	*lfd = -1;
	if (joinpt_parse(src, strlen(src), &h, err) == -1)
		return -1;
	name = joinpt_name(&h);
	if (!join_granted(w, name, 1)) {
		err_set(err, "%s is not offered by its policy's forwards", src);
		return -1;
	}
	if ((dir = join_tenant_dir(d, w->tenant, 1)) == -1) {
		err_set(err, "%s: the tenant's directory: %s", src,
		    strerror(errno));
		return -1;
	}
	if (join_held(d, w, dir, name)) {
		err_set(busy, "%s is offered by another tunnel of tenant '%s'",
		    src, w->tenant);
		rc = 0;
		goto done;
	}
	/* A socket left by a worker that is gone: nobody listens on it. */
	unlinkat(dir, name, 0);
	join_addr(&sun, dir, name);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    fchmodat(dir, name, 0600, 0) == -1) {
		err_set(err, "%s: %s", src, strerror(errno));
		goto done;
	}
	snprintf(by, sizeof(by), "%s%s", name, JOIN_BY);
	if (join_write(dir, by, w->key, DISP_KEY_LEN, err) == -1)
		goto done;
	*lfd = fd;
	fd = -1;
	rc = 0;
done:
	if (fd != -1) {
		close(fd);
		unlinkat(dir, name, 0);
	}
	close(dir);
	return rc;
}

void
join_moved(struct disp *d, struct dworker *w, const char *src)
{
	struct hostinfo	 h;
	char		 by[NAME_MAX + 1], e[ERR_LEN];
	int		 dir;

	if (joinpt_parse(src, strlen(src), &h, e) == -1 ||
	    (dir = join_tenant_dir(d, w->tenant, 0)) == -1)
		return;
	snprintf(by, sizeof(by), "%s%s", joinpt_name(&h), JOIN_BY);
	if (join_write(dir, by, w->key, DISP_KEY_LEN, e) == -1)
		log_warnx("worker %d: %s", (int)w->pid, e);
	close(dir);
}

/*
 * A stream to tenant's join point name: the connected socket, or -1 with
 * err.  Never blocks: a point whose backlog is full is busy.
 */
static int
join_connect(struct disp *d, const char *tenant, const char *name, char *err)
{
	struct sockaddr_un	sun;
	int			dir, fd;

	if ((dir = join_tenant_dir(d, tenant, 0)) == -1) {
		err_set(err, "tenant '%s' offers no join point", tenant);
		return -1;
	}
	join_addr(&sun, dir, name);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		err_set(err, "socket: %s", strerror(errno));
		close(dir);
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		if (errno == ENOENT || errno == ECONNREFUSED)
			err_set(err, "tenant '%s' does not offer join:%s%s",
			    tenant, name, errno == ECONNREFUSED ?
			    " any more" : "");
		else if (errno == EAGAIN)
			err_set(err, "join:%s of tenant '%s' is busy (its "
			    "backlog is full)", name, tenant);
		else
			err_set(err, "join:%s: %s", name, strerror(errno));
		close(fd);
		fd = -1;
	}
	close(dir);
	return fd;
}

void
join_answer(struct disp *d, struct dworker *w, const struct ctlmsg_join *req)
{
	static struct ratelog	 rl;
	struct ctlmsg		 m;
	unsigned long		 more = 0;
	uint64_t		 now = disp_now_ms();
	int64_t			 rate;
	char			 why[ERR_LEN], e[ERR_LEN];
	int			 fd = -1;

	/* The worker limits its streams first; a compromised one would
	 * not, so we hold it to the same rate (with room for the two
	 * buckets' jitter), or to a ceiling for a tunnel without one. */
	if (!w->join_tb_set) {
		rate = w->info.limits.max_connect_rate > 0 ?
		    2 * (int64_t)w->info.limits.max_connect_rate :
		    DISP_JOIN_RATE;
		tbucket_init(&w->join_tb, rate, rate, now);
		w->join_tb_set = 1;
	}
	if (rl.burst == 0)
		ratelog_init(&rl, 0, 0);
	ctlmsg_init(&m, CTL_JOINED);
	m.u.joined.ref = req->ref;
	if (!tbucket_take(&w->join_tb, now, 1))
		err_set(why, "more than %lld join requests a second",
		    (long long)w->join_tb.rate);
	else if (!join_granted(w, req->name, 0))
		err_set(why, "join:%s is not a forward of its policy",
		    req->name);
	else
		fd = join_connect(d, w->tenant, req->name, why);
	if (fd == -1) {
		snprintf(m.u.joined.error, sizeof(m.u.joined.error), "%s",
		    why);
		/* A tenant's workers can ask as fast as they like. */
		if (!ratelog_allow(&rl, now, &more))
			;
		else if (more > 0)
			log_warnx("worker %d (tenant '%s'): join:%s refused: "
			    "%s (%lu more suppressed)", (int)w->pid, w->tenant,
			    req->name, why, more);
		else
			log_warnx("worker %d (tenant '%s'): join:%s refused: "
			    "%s", (int)w->pid, w->tenant, req->name, why);
	} else
		log_debug("worker %d (tenant '%s'): join:%s connected",
		    (int)w->pid, w->tenant, req->name);
	/* Never waits: a worker that does not read loses its answers. */
	if (w->ctl_fd == -1 || ctlmsg_send(w->ctl_fd, &m, fd, 0, e) == -1)
		log_debug("worker %d: join answer lost: %s", (int)w->pid,
		    w->ctl_fd == -1 ? "no channel" : e);
	if (fd != -1)
		close(fd);
}
