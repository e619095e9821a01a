/*
 * dispatcher: the public port of a multi-tenant tunnel host.  See
 * dispatcher --help and docs/operations.md.
 */

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "crypto.h"
#include "disp.h"
#include "err.h"
#include "cmdline.h"
#include "log.h"
#include "notify.h"
#include "text.h"

static struct disp	*disp_self;

static void
disp_policy_log(int level, const char *msg)
{
	log_msg(level <= LOG_LVL_DEBUG ? level : LOG_LVL_INFO, "lua: %s", msg);
}

/*
 * The console's token from an open file: it must be a regular file of
 * ours that no one else can read or write (the token is a password).
 */
static int
disp_token_read(struct disp *d, int fd, const char *path, char *err)
{
	struct stat	st;
	ssize_t		n;
	size_t		len;

	if (fstat(fd, &st) == -1) {
		err_set(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode) || !dpriv_owner_ok(d, st.st_uid) ||
	    (st.st_mode & 077) != 0) {
		err_set(err, "console token %s: must be a regular file of uid "
		    "%ld with mode 0600 or stricter (it is uid %ld, mode %04o)",
		    path, (long)geteuid(), (long)st.st_uid,
		    (unsigned)(st.st_mode & 07777));
		return -1;
	}
	do
		n = read(fd, d->console_token, sizeof(d->console_token) - 1);
	while (n == -1 && errno == EINTR);
	if (n < 0) {
		err_set(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	len = (size_t)n;
	d->console_token[len] = '\0';
	while (len > 0 && (d->console_token[len - 1] == '\n' ||
	    d->console_token[len - 1] == '\r' ||
	    d->console_token[len - 1] == ' '))
		d->console_token[--len] = '\0';
	if (len < 16 || strlen(d->console_token) != len) {
		OPENSSL_cleanse(d->console_token, sizeof(d->console_token));
		err_set(err, "console token %s: a token of 16 to %zu "
		    "characters is needed", path, sizeof(d->console_token) - 1);
		return -1;
	}
	return 0;
}

/*
 * A new random token, written to DISP_TOKEN_NAME in the state directory
 * (shown as path), which must not exist: 0 with d->console_token, or -1
 * with err (no file left behind).
 */
static int
disp_token_new(struct disp *d, const char *path, char *err)
{
	uint8_t	raw[32];
	char	tok[2 * sizeof(raw) + 2];
	size_t	i;
	ssize_t	n;
	int	fd, rc = -1;

	if (crypto_random(raw, sizeof(raw), err) == -1)
		return -1;
	for (i = 0; i < sizeof(raw); i++) {
		tok[2 * i] = text_hexdigit(raw[i] >> 4, 0);
		tok[2 * i + 1] = text_hexdigit(raw[i], 0);
	}
	tok[2 * sizeof(raw)] = '\n';
	tok[2 * sizeof(raw) + 1] = '\0';
	OPENSSL_cleanse(raw, sizeof(raw));
	fd = openat(d->state_fd, DISP_TOKEN_NAME, O_WRONLY | O_CREAT | O_EXCL |
	    O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd == -1) {
		err_set(err, "%s: %s", path, strerror(errno));
		goto done;
	}
	n = write(fd, tok, strlen(tok));
	if (n != (ssize_t)strlen(tok) || fsync(fd) == -1) {
		err_set(err, "%s: cannot write the token", path);
		close(fd);
		unlinkat(d->state_fd, DISP_TOKEN_NAME, 0);
		goto done;
	}
	close(fd);
	tok[2 * sizeof(raw)] = '\0';
	snprintf(d->console_token, sizeof(d->console_token), "%s", tok);
	log_info("console token written to %s", path);
	rc = 0;
done:
	OPENSSL_cleanse(tok, sizeof(tok));
	return rc;
}

/*
 * The console always needs a token: -consoleToken FILE, else
 * STATEDIR/console.token, written with 32 random bytes (hex) and mode
 * 0600 at the first start.  Opened relative to the checked state
 * directory, never through a symlink.
 */
static int
disp_token_load(struct disp *d, char *err)
{
	char	path[1100];
	int	fd, rc;

	if (d->console_token_file[0] != '\0') {
		fd = open(d->console_token_file,
		    O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd == -1) {
			err_set(err, "-consoleToken %s: %s",
			    d->console_token_file, strerror(errno));
			return -1;
		}
		rc = disp_token_read(d, fd, d->console_token_file, err);
		close(fd);
		return rc;
	}
	snprintf(path, sizeof(path), "%s/%s", d->state_dir, DISP_TOKEN_NAME);
	snprintf(d->console_token_file, sizeof(d->console_token_file), "%s",
	    path);
	fd = openat(d->state_fd, DISP_TOKEN_NAME,
	    O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd != -1) {
		rc = disp_token_read(d, fd, path, err);
		close(fd);
		return rc;
	}
	if (errno != ENOENT) {
		err_set(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	return disp_token_new(d, path, err);
}

/*
 * The default state directory: /run/tunneld as root, else
 * $XDG_RUNTIME_DIR/tunneld (a per-user directory of mode 0700 that
 * systemd-logind makes).  No fallback under /tmp: that is where another
 * user can be first.
 */
static int
disp_state_default(struct disp *d, char *err)
{
	const char *xdg;

	if (d->state_dir[0] != '\0')
		return 0;
	if (geteuid() == 0) {
		snprintf(d->state_dir, sizeof(d->state_dir), "/run/tunneld");
		return 0;
	}
	if ((xdg = getenv("XDG_RUNTIME_DIR")) == NULL || xdg[0] != '/') {
		err_set(err, "XDG_RUNTIME_DIR is not set: give a -stateDir "
		    "of your own (mode 0700)");
		return -1;
	}
	if (strlen(xdg) + sizeof("/tunneld") > sizeof(d->state_dir)) {
		err_set(err, "XDG_RUNTIME_DIR is too long");
		return -1;
	}
	snprintf(d->state_dir, sizeof(d->state_dir), "%s/tunneld", xdg);
	return 0;
}

/*
 * The opened state directory fd (dir, for messages) is a directory of
 * ours that only we may write: 0, or -1 with err.
 */
static int
disp_state_check(const struct disp *d, int fd, const char *dir, char *err)
{
	struct stat st;

	if (fstat(fd, &st) == -1) {
		err_set(err, "-stateDir %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		err_set(err, "-stateDir %s is not a directory", dir);
		return -1;
	}
	/* As root with -user it becomes -user's (dpriv_drop). */
	if (!dpriv_owner_ok(d, st.st_uid)) {
		err_set(err, "-stateDir %s belongs to uid %ld, not to us (uid "
		    "%ld): refusing it", dir, (long)st.st_uid,
		    (long)geteuid());
		return -1;
	}
	if ((st.st_mode & 022) != 0) {
		err_set(err, "-stateDir %s has mode %04o: group or others can "
		    "write it; refusing it (chmod 700)", dir,
		    (unsigned)(st.st_mode & 07777));
		return -1;
	}
	return 0;
}

/*
 * Opens the state directory, the registry of running workers, once: it
 * must be a directory (not a symlink) owned by our uid that neither group
 * nor others can write, or another user could rename a worker's socket
 * and plant his own.  Everything later goes through d->state_fd, so a
 * rename of the path after this check changes nothing.  A missing
 * directory is made with mode 0700 (its parent must exist).
 */
static int
disp_state_open(struct disp *d, char *err)
{
	struct stat	st;
	const char	*dir = d->state_dir;
	int		fd;

	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		err_set(err, "-stateDir %s: %s", dir, strerror(errno));
		return -1;
	}
	if (lstat(dir, &st) == -1) {
		err_set(err, "-stateDir %s: %s", dir, strerror(errno));
		return -1;
	}
	if (S_ISLNK(st.st_mode)) {
		err_set(err, "-stateDir %s is a symlink: refusing it (give "
		    "the real directory)", dir);
		return -1;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1) {
		err_set(err, "-stateDir %s: %s", dir, errno == ELOOP ?
		    "is a symlink" : strerror(errno));
		return -1;
	}
	if (disp_state_check(d, fd, dir, err) == -1) {
		close(fd);
		return -1;
	}
	d->state_fd = fd;
	return 0;
}

static void
disp_wake_cb(uv_async_t *a)
{
	struct disp	*d = a->data;
	char		 err[ERR_LEN];

	wmon_watch_pending(d);
	wspawn_pool_refill(d);
	if (d->reload_asked) {
		d->reload_asked = 0;
		if (disp_reload(d, err) == -1)
			log_err("reload failed, keeping the old policy: %s",
			    err);
		else
			log_info("policy reloaded");
	}
}

static void
disp_tick_cb(uv_timer_t *t)
{
	front_delay_tick(t->data);
}

static void
disp_signal_cb(uv_signal_t *s, int signum)
{
	struct disp	*d = s->data;
	char		 err[ERR_LEN];

	switch (signum) {
	case SIGCHLD:
		wmon_reap(d);
		break;
	case SIGHUP:
		d->reload_asked = 1;
		disp_wake_cb(&d->wake);
		break;
	default:
		log_info("signal %d: stopping (workers keep running)", signum);
		if (notify_stopping(err) == -1)
			log_warnx("%s", err);
		uv_stop(d->loop);
		break;
	}
}

static void
disp_close_walk(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Locks, lists and counters of an empty registry. */
static void
disp_init_state(struct disp *d)
{
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->zlock, NULL);
	pthread_mutex_init(&d->admit, NULL);
	d->counter.count = disp_tenant_count;
	d->counter.arg = d;
	d->zygote_req = d->zygote_exit = -1;
	d->front_lfd = d->console_lfd = -1;
	LIST_INIT(&d->workers);
	TAILQ_INIT(&d->delayed);
	TAILQ_INIT(&d->heads);
	if (d->console_on && strcmp(d->console.name, "127.0.0.1") != 0 &&
	    strcmp(d->console.name, "::1") != 0 &&
	    strcmp(d->console.name, "localhost") != 0)
		d->console_public = 1;
}

/* The console's state, before any thread that notes events in it. */
static void
disp_init_console(struct disp *d)
{
	char err[ERR_LEN];

	if (d->console_on && console_init(d, err) == -1)
		fatalx("%s", err);
}

/* The worker program, the state directory, the token and the policy. */
static void
disp_load(struct disp *d)
{
	char err[ERR_LEN], warn[ERR_LEN];

	if (access(d->tunneld, X_OK) == -1)
		fatalx("worker program %s: %s (use -tunneld)", d->tunneld,
		    strerror(errno));
	/* Before anything listens: a worker must never run as root. */
	if (wuid_setup(d, warn, err) == -1)
		fatalx("%s", err);
	if (warn[0] != '\0')
		log_warnx("%s", warn);
	/* Before any thread: no_new_privs is per thread. */
	if (dpriv_setup(d, warn, err) == -1)
		fatalx("%s", err);
	if (warn[0] != '\0')
		log_warnx("%s", warn);
	if (d->no_sandbox)
		log_warnx("-noSandbox: workers run without rlimits, seccomp "
		    "and Landlock (for debugging only)");
	if (disp_state_default(d, err) == -1 || disp_state_open(d, err) == -1 ||
	    join_setup(d, err) == -1)
		fatalx("%s", err);
	if (d->console_on && disp_token_load(d, err) == -1)
		fatalx("%s", err);
	policy_set_logger(disp_policy_log);
	if (disp_reload(d, err) == -1)
		fatalx("policy: %s", err);
}

/* The loop thread's handles: wake-ups, the delay tick, signals. */
static void
disp_loop_init(struct disp *d)
{
	d->loop = uv_default_loop();
	d->loop->data = d;
	uv_async_init(d->loop, &d->wake, disp_wake_cb);
	d->wake.data = d;
	hrelay_init(d);
	uv_timer_init(d->loop, &d->tick);
	d->tick.data = d;
	uv_timer_start(&d->tick, disp_tick_cb, 100, 100);
	uv_signal_init(d->loop, &d->sigchld);
	uv_signal_init(d->loop, &d->sighup);
	uv_signal_init(d->loop, &d->sigint);
	uv_signal_init(d->loop, &d->sigterm);
	d->sigchld.data = d->sighup.data = d->sigint.data = d->sigterm.data = d;
	uv_signal_start(&d->sigchld, disp_signal_cb, SIGCHLD);
	uv_signal_start(&d->sighup, disp_signal_cb, SIGHUP);
	uv_signal_start(&d->sigint, disp_signal_cb, SIGINT);
	uv_signal_start(&d->sigterm, disp_signal_cb, SIGTERM);
}

/* Workers (the zygote, adopted ones, the pool), then the two ports. */
static void
disp_serve(struct disp *d)
{
	char err[ERR_LEN], status[1200];

	if (wspawn_zygote_start(d, err) == -1)
		log_warnx("no zygote, workers start with exec: %s", err);
	if (wmon_adopt(d, err) == -1)
		fatalx("%s", err);
	join_sweep(d);
	wmon_watch_pending(d);
	wspawn_pool_refill(d);
	/* With -user: the ports bound as root, then everything that needs
	 * root is done, and only the zygote keeps it; libmicrohttpd's
	 * threads start after that. */
	if (dpriv_listen(d, err) == -1 || dpriv_drop(d, err) == -1)
		fatalx("%s", err);
	if (front_start(d, err) == -1)
		fatalx("%s", err);
	if (d->console_on && console_start(d, err) == -1)
		fatalx("%s", err);
	log_info("listening on %s:%d%s (policy %s, %s)%s%s",
	    d->listen.name[0] ? d->listen.name : "*", d->listen.port, d->path,
	    d->handler_lua, d->canaccept_lua,
	    d->console_on ? ", console on " : "",
	    d->console_on ? d->console.name : "");
	/* After the line above: a test that reads both sees this one last. */
	snprintf(status, sizeof(status), "listening on %s:%d%s",
	    d->listen.name[0] ? d->listen.name : "*", d->listen.port, d->path);
	if (notify_ready(status, err) == -1)
		log_warnx("%s", err);
}

/* Stops serving and frees everything; the workers keep running. */
static void
disp_shutdown(struct disp *d)
{
	hrelay_stop(d);
	front_stop(d);
	console_stop(d);
	wspawn_pool_close(d);
	wspawn_zygote_stop(d);
	/* Workers outlive us; close our side of their channels. */
	uv_walk(d->loop, disp_close_walk, NULL);
	uv_run(d->loop, UV_RUN_DEFAULT);
	uv_loop_close(d->loop);
	wreg_free_all(d);
	wuid_free(d);
	if (d->policy != NULL)
		policy_unref(d->policy);
	if (d->zygote_exit != -1)
		close(d->zygote_exit);
	disp_tenant_free(d);
	console_free(d);
	pthread_mutex_destroy(&d->admit);
	pthread_mutex_destroy(&d->zlock);
	pthread_mutex_destroy(&d->lock);
	OPENSSL_cleanse(d->console_token, sizeof(d->console_token));
	notify_close();
	join_close(d);
	if (d->state_fd != -1)
		close(d->state_fd);
	free(d);
}

int
main(int argc, char **argv)
{
	struct disp	*d;
	char		 err[ERR_LEN];

	if ((d = calloc(1, sizeof(*d))) == NULL)
		return 1;
	disp_self = d;
	disp_defaults(d, argv[0]);
	if (disp_parse(d, argc, argv, err) == -1) {
		fprintf(stderr, "dispatcher: %s\nTry 'dispatcher --help'.\n",
		    err);
		free(d);
		return 2;
	}
	log_init("dispatcher", d->verbose);
	log_set_json(d->log_json);
	/* Before the zygote and the workers could inherit $NOTIFY_SOCKET. */
	if (notify_init(err) == -1)
		log_warnx("%s", err);
	signal(SIGPIPE, SIG_IGN);
	/* Once, here, rather than lazily in whichever thread hashes first. */
	OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL);
	disp_init_state(d);
	disp_init_console(d);
	disp_load(d);
	disp_loop_init(d);
	disp_serve(d);
	uv_run(d->loop, UV_RUN_DEFAULT);
	disp_shutdown(d);
	return 0;
}
