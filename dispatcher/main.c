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
#include "log.h"

static const char usage[] =
"usage: dispatcher wsserver [host]:port[/path] [options]\n"
"\n"
"The one public port of a multi-tenant tunnel host.  Every websocket\n"
"upgrade on [host]:port/path is admitted by a Lua policy (canAccept, in a\n"
"fresh state per request), a new session gets its own tunneld worker with\n"
"the parameters getTunnelInfo chose, and the upgraded socket is handed to\n"
"that worker; reconnects of the session go to the same worker.\n"
"\n"
"Options (defaults in brackets):\n"
"  -u HANDLER,CANACCEPT  the policy scripts [lua/handler.lua,lua/canAccept.lua]\n"
"  -ip RANGE[,RANGE...]  admit only clients in these ranges (repeatable)\n"
"  -console [host]:port  admin console: JSON API and /metrics [off];\n"
"                        host defaults to 127.0.0.1.  Every request needs\n"
"                        \"Authorization: Bearer TOKEN\", a Host naming the\n"
"                        console, no cross-site Origin or Sec-Fetch-Site,\n"
"                        and POSTs \"Content-Type: application/json\"\n"
"  -consoleToken FILE    read the console's token from FILE (16 to 255\n"
"                        characters, mode 0600 or stricter) [STATEDIR/\n"
"                        console.token, made with a random token at\n"
"                        the first start]\n"
"  -stateDir DIR         worker sockets, found again after a restart; it\n"
"                        must be ours, mode 0700 (no group or other\n"
"                        write), not a symlink; made 0700 if missing\n"
"                        [/run/tunneld as root, else $XDG_RUNTIME_DIR/\n"
"                        tunneld; refused without XDG_RUNTIME_DIR]\n"
"  -maxSession N         live tunnels (workers whose client has\n"
"                        authenticated) at most [1000]\n"
"  -maxPendingWorkers N  workers waiting for their first client to\n"
"                        authenticate, at most [64]\n"
"  -spawnRate N          new workers per second per client address (an\n"
"                        IPv6 /64 is one address) that no client\n"
"                        authenticates to [4]\n"
"  -spawnBurst N         ... of which at once [32]\n"
"  -handshakeTimeout S   for a client to authenticate; a worker with no\n"
"                        authenticated client ends that long after\n"
"                        its last connection [10]\n"
"  -perIp N              requests in progress per client address,\n"
"                        beyond which 503 answers at once [16]\n"
"  -maxPending N         pending requests in total [1024]\n"
"  -requestTimeout S     idle time allowed in a request [10]\n"
"  -headTimeout S        for a request head to arrive whole, from the\n"
"                        connection's start [10]\n"
"  -headPerIp N          connections per client address (an IPv6 /64 is\n"
"                        one) whose request head is incomplete [16]\n"
"  -refuseDelay MS       delay of refusals before the upgrade, as\n"
"                        kptunnel's [3000]\n"
"  -reqInfo              answer ?reqinfo with the tunnel count\n"
"  -tunneld PATH         the worker program [tunneld beside dispatcher]\n"
"  -verbose              debug logs (workers too)\n"
"  --help, --version\n"
"\n"
"Signals: SIGHUP reloads the scripts (kept only if they load and pass a\n"
"dry call); SIGTERM stops the dispatcher and leaves the workers running.\n"
"Exit status: 0 stopped, 1 runtime error, 2 usage error.\n";

static struct disp	*disp_self;

static void
disp_policy_log(int level, const char *msg)
{
	log_msg(level <= LOG_LVL_DEBUG ? level : LOG_LVL_INFO, "lua: %s", msg);
}

static int
disp_opt(int argc, char **argv, int *i, const char **name, const char **val,
    char *err)
{
	const char *a = argv[*i], *eq;
	static char namebuf[64];

	if (a[0] != '-' || a[1] == '\0')
		return 0;
	a += a[1] == '-' ? 2 : 1;
	if ((eq = strchr(a, '=')) != NULL) {
		snprintf(namebuf, sizeof(namebuf), "%.*s", (int)(eq - a), a);
		*name = namebuf;
		*val = eq + 1;
		return 1;
	}
	*name = a;
	*val = NULL;
	if (strcmp(a, "reqInfo") == 0 || strcmp(a, "verbose") == 0 ||
	    strcmp(a, "help") == 0 || strcmp(a, "version") == 0 ||
	    strcmp(a, "h") == 0)
		return 1;
	if (*i + 1 >= argc) {
		err_set(err, "option -%s needs a value", a);
		return -1;
	}
	*val = argv[++*i];
	return 1;
}

static int
disp_int(const char *name, const char *val, int min, int max, int *out,
    char *err)
{
	char	*ep;
	long	 v;

	errno = 0;
	v = strtol(val, &ep, 10);
	if (errno || *ep || ep == val || v < min || v > max) {
		err_set(err, "-%s: expected a number in %d..%d, got '%s'", name,
		    min, max, val);
		return -1;
	}
	*out = (int)v;
	return 0;
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
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
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
 * The console always needs a token: -consoleToken FILE, else
 * STATEDIR/console.token, written with 32 random bytes (hex) and mode
 * 0600 at the first start.  Opened relative to the checked state
 * directory, never through a symlink.
 */
static int
disp_token_load(struct disp *d, char *err)
{
	static const char	 hex[] = "0123456789abcdef";
	uint8_t			 raw[32];
	char			 tok[2 * sizeof(raw) + 2], path[1100];
	size_t			 i;
	ssize_t			 n;
	int			 fd, rc;

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
	if (crypto_random(raw, sizeof(raw), err) == -1)
		return -1;
	for (i = 0; i < sizeof(raw); i++) {
		tok[2 * i] = hex[raw[i] >> 4];
		tok[2 * i + 1] = hex[raw[i] & 15];
	}
	tok[2 * sizeof(raw)] = '\n';
	tok[2 * sizeof(raw) + 1] = '\0';
	OPENSSL_cleanse(raw, sizeof(raw));
	fd = openat(d->state_fd, DISP_TOKEN_NAME, O_WRONLY | O_CREAT | O_EXCL |
	    O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd == -1) {
		err_set(err, "%s: %s", path, strerror(errno));
		rc = -1;
		goto done;
	}
	n = write(fd, tok, strlen(tok));
	if (n != (ssize_t)strlen(tok) || fsync(fd) == -1) {
		err_set(err, "%s: cannot write the token", path);
		close(fd);
		unlinkat(d->state_fd, DISP_TOKEN_NAME, 0);
		rc = -1;
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
	if (fstat(fd, &st) == -1) {
		err_set(err, "-stateDir %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (!S_ISDIR(st.st_mode)) {
		err_set(err, "-stateDir %s is not a directory", dir);
		goto fail;
	}
	if (st.st_uid != geteuid()) {
		err_set(err, "-stateDir %s belongs to uid %ld, not to us (uid "
		    "%ld): refusing it", dir, (long)st.st_uid,
		    (long)geteuid());
		goto fail;
	}
	if ((st.st_mode & 022) != 0) {
		err_set(err, "-stateDir %s has mode %04o: group or others can "
		    "write it; refusing it (chmod 700)", dir,
		    (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	d->state_fd = fd;
	return 0;
fail:
	close(fd);
	return -1;
}

static int
disp_parse(struct disp *d, int argc, char **argv, char *err)
{
	const char	*name, *val;
	char		*slash, buf[1024], *comma;
	int		 i, rc, pos = 0;

	for (i = 1; i < argc; i++) {
		rc = disp_opt(argc, argv, &i, &name, &val, err);
		if (rc == -1)
			return -1;
		if (rc == 0) {
			if (pos == 0 && strcmp(argv[i], "wsserver") != 0) {
				err_set(err, "unknown mode '%s' (only wsserver)",
				    argv[i]);
				return -1;
			}
			if (pos == 1) {
				snprintf(buf, sizeof(buf), "%s", argv[i]);
				if ((slash = strchr(buf, '/')) != NULL) {
					snprintf(d->path, sizeof(d->path), "%s",
					    slash);
					*slash = '\0';
				}
				if (addr_parse(buf, &d->listen, err) == -1)
					return -1;
			}
			if (pos > 1) {
				err_set(err, "unexpected argument '%s'", argv[i]);
				return -1;
			}
			pos++;
			continue;
		}
		if (strcmp(name, "help") == 0 || strcmp(name, "h") == 0) {
			fputs(usage, stdout);
			exit(0);
		} else if (strcmp(name, "version") == 0) {
			puts("dispatcher 0.1.0 (tunneld 0.1.0)");
			exit(0);
		} else if (strcmp(name, "u") == 0) {
			snprintf(buf, sizeof(buf), "%s", val);
			if ((comma = strchr(buf, ',')) == NULL) {
				err_set(err, "-u: expected handler.lua,"
				    "canAccept.lua");
				return -1;
			}
			*comma = '\0';
			snprintf(d->handler_lua, sizeof(d->handler_lua), "%s",
			    buf);
			snprintf(d->canaccept_lua, sizeof(d->canaccept_lua),
			    "%s", comma + 1);
		} else if (strcmp(name, "ip") == 0) {
			snprintf(buf, sizeof(buf), "%s", val);
			for (comma = strtok(buf, ","); comma != NULL;
			    comma = strtok(NULL, ",")) {
				if (d->ncidr == DISP_MAX_CIDRS) {
					err_set(err, "-ip: at most %d ranges",
					    DISP_MAX_CIDRS);
					return -1;
				}
				if (cidr_parse(comma, &d->cidrs[d->ncidr++],
				    err) == -1)
					return -1;
			}
		} else if (strcmp(name, "console") == 0) {
			if (addr_parse(val, &d->console, err) == -1)
				return -1;
			if (d->console.name[0] == '\0')
				snprintf(d->console.name,
				    sizeof(d->console.name), "127.0.0.1");
			d->console_on = 1;
		} else if (strcmp(name, "consoleToken") == 0) {
			if (strlen(val) >= sizeof(d->console_token_file)) {
				err_set(err, "-consoleToken: path too long");
				return -1;
			}
			snprintf(d->console_token_file,
			    sizeof(d->console_token_file), "%s", val);
		} else if (strcmp(name, "stateDir") == 0) {
			if (strlen(val) >= sizeof(d->state_dir)) {
				err_set(err, "-stateDir: at most %zu characters",
				    sizeof(d->state_dir) - 1);
				return -1;
			}
			snprintf(d->state_dir, sizeof(d->state_dir), "%s", val);
		} else if (strcmp(name, "maxSession") == 0) {
			if (disp_int(name, val, 1, 100000, &d->max_session,
			    err) == -1)
				return -1;
		} else if (strcmp(name, "perIp") == 0) {
			if (disp_int(name, val, 1, 100000, &d->per_ip,
			    err) == -1)
				return -1;
		} else if (strcmp(name, "maxPending") == 0) {
			if (disp_int(name, val, 1, 100000, &d->max_pending,
			    err) == -1)
				return -1;
		} else if (strcmp(name, "requestTimeout") == 0) {
			if (disp_int(name, val, 1, 3600, &d->request_timeout,
			    err) == -1)
				return -1;
		} else if (strcmp(name, "maxPendingWorkers") == 0) {
			if (disp_int(name, val, 1, 100000,
			    &d->max_pending_workers, err) == -1)
				return -1;
		} else if (strcmp(name, "spawnRate") == 0) {
			if (disp_int(name, val, 1, 100000, &d->spawn_rate,
			    err) == -1)
				return -1;
		} else if (strcmp(name, "spawnBurst") == 0) {
			if (disp_int(name, val, 1, 100000, &d->spawn_burst,
			    err) == -1)
				return -1;
		} else if (strcmp(name, "handshakeTimeout") == 0) {
			if (disp_int(name, val, 1, 3600, &d->handshake_timeout,
			    err) == -1)
				return -1;
		} else if (strcmp(name, "headTimeout") == 0) {
			if (disp_int(name, val, 1, 3600, &d->head_timeout,
			    err) == -1)
				return -1;
		} else if (strcmp(name, "headPerIp") == 0) {
			if (disp_int(name, val, 1, 100000, &d->head_per_ip,
			    err) == -1)
				return -1;
		} else if (strcmp(name, "refuseDelay") == 0) {
			if (disp_int(name, val, 0, 60000, &d->refuse_delay_ms,
			    err) == -1)
				return -1;
		} else if (strcmp(name, "tunneld") == 0) {
			snprintf(d->tunneld, sizeof(d->tunneld), "%s", val);
		} else if (strcmp(name, "reqInfo") == 0) {
			d->reqinfo = 1;
		} else if (strcmp(name, "verbose") == 0) {
			d->verbose = 1;
		} else {
			err_set(err, "unknown option -%s", name);
			return -1;
		}
	}
	if (pos < 2) {
		err_set(err, pos == 0 ? "missing mode (wsserver)" :
		    "missing [host]:port[/path]");
		return -1;
	}
	return 0;
}

static void
disp_defaults(struct disp *d, const char *argv0)
{
	char	self[PATH_MAX], *slash;
	ssize_t	n;

	snprintf(d->path, sizeof(d->path), "/");
	snprintf(d->handler_lua, sizeof(d->handler_lua), "lua/handler.lua");
	snprintf(d->canaccept_lua, sizeof(d->canaccept_lua),
	    "lua/canAccept.lua");
	d->state_fd = -1;	/* -stateDir or disp_state_default() */
	d->max_session = 1000;
	d->per_ip = 16;
	d->max_pending = 1024;
	d->request_timeout = 10;
	d->refuse_delay_ms = DISP_REFUSE_DELAY_MS;
	d->max_pending_workers = 64;
	d->spawn_rate = 4;
	d->spawn_burst = 32;
	d->handshake_timeout = 10;
	d->head_timeout = 10;
	d->head_per_ip = 16;
	/* The worker program sits beside the dispatcher by default. */
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) != NULL)
			*slash = '\0';
		snprintf(d->tunneld, sizeof(d->tunneld), "%.1000s/tunneld",
		    self);
	} else
		snprintf(d->tunneld, sizeof(d->tunneld), "tunneld");
	(void)argv0;
}

static void
disp_wake_cb(uv_async_t *a)
{
	struct disp	*d = a->data;
	char		 err[ERR_LEN];

	wsup_watch_pending(d);
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
	struct disp *d = s->data;

	switch (signum) {
	case SIGCHLD:
		wsup_reap(d);
		break;
	case SIGHUP:
		d->reload_asked = 1;
		disp_wake_cb(&d->wake);
		break;
	default:
		log_info("signal %d: stopping (workers keep running)", signum);
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
	LIST_INIT(&d->workers);
	TAILQ_INIT(&d->delayed);
	TAILQ_INIT(&d->heads);
	if (d->console_on && strcmp(d->console.name, "127.0.0.1") != 0 &&
	    strcmp(d->console.name, "::1") != 0 &&
	    strcmp(d->console.name, "localhost") != 0)
		d->console_public = 1;
}

/* The worker program, the state directory, the token and the policy. */
static void
disp_load(struct disp *d)
{
	char err[ERR_LEN];

	if (access(d->tunneld, X_OK) == -1)
		fatalx("worker program %s: %s (use -tunneld)", d->tunneld,
		    strerror(errno));
	if (disp_state_default(d, err) == -1 || disp_state_open(d, err) == -1)
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
	char err[ERR_LEN];

	if (wspawn_zygote_start(d, err) == -1)
		log_warnx("no zygote, workers start with exec: %s", err);
	if (wsup_adopt(d, err) == -1)
		fatalx("%s", err);
	wsup_watch_pending(d);
	wspawn_pool_refill(d);
	if (front_start(d, err) == -1)
		fatalx("%s", err);
	if (d->console_on && console_start(d, err) == -1)
		fatalx("%s", err);
	log_info("listening on %s:%d%s (policy %s, %s)%s%s",
	    d->listen.name[0] ? d->listen.name : "*", d->listen.port, d->path,
	    d->handler_lua, d->canaccept_lua,
	    d->console_on ? ", console on " : "",
	    d->console_on ? d->console.name : "");
}

/* Stops serving and frees everything; the workers keep running. */
static void
disp_shutdown(struct disp *d)
{
	front_stop(d);
	console_stop(d);
	wspawn_pool_close(d);
	wspawn_zygote_stop(d);
	/* Workers outlive us; close our side of their channels. */
	uv_walk(d->loop, disp_close_walk, NULL);
	uv_run(d->loop, UV_RUN_DEFAULT);
	uv_loop_close(d->loop);
	wreg_free_all(d);
	if (d->policy != NULL)
		policy_unref(d->policy);
	if (d->zygote_exit != -1)
		close(d->zygote_exit);
	disp_tenant_free(d);
	pthread_mutex_destroy(&d->admit);
	pthread_mutex_destroy(&d->zlock);
	pthread_mutex_destroy(&d->lock);
	OPENSSL_cleanse(d->console_token, sizeof(d->console_token));
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
		return 2;
	}
	log_init("dispatcher", d->verbose);
	signal(SIGPIPE, SIG_IGN);
	/* Once, here, rather than lazily in whichever thread hashes first. */
	OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL);
	disp_init_state(d);
	disp_load(d);
	disp_loop_init(d);
	disp_serve(d);
	uv_run(d->loop, UV_RUN_DEFAULT);
	disp_shutdown(d);
	return 0;
}
