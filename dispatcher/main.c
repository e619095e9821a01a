/*
 * dispatcher: the public port of a multi-tenant tunnel host.  See
 * dispatcher --help and docs/operations.md.
 */

#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

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
"                        host defaults to 127.0.0.1\n"
"  -consoleToken FILE    bearer token for the console; required when it\n"
"                        listens beyond loopback\n"
"  -stateDir DIR         worker sockets, found again after a restart\n"
"                        [/tmp/tunneld-dispatcher]\n"
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

static int
disp_read_token(struct disp *d, const char *path, char *err)
{
	FILE	*f;
	size_t	 n;

	if ((f = fopen(path, "r")) == NULL) {
		err_set(err, "-consoleToken %s: %s", path, strerror(errno));
		return -1;
	}
	n = fread(d->console_token, 1, sizeof(d->console_token) - 1, f);
	fclose(f);
	d->console_token[n] = '\0';
	while (n > 0 && (d->console_token[n - 1] == '\n' ||
	    d->console_token[n - 1] == '\r' || d->console_token[n - 1] == ' '))
		d->console_token[--n] = '\0';
	if (n < 16) {
		err_set(err, "-consoleToken %s: a token of at least 16 "
		    "characters is needed", path);
		return -1;
	}
	return 0;
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
			if (disp_read_token(d, val, err) == -1)
				return -1;
		} else if (strcmp(name, "stateDir") == 0) {
			if (strlen(val) >= sizeof(d->state_dir)) {
				err_set(err, "-stateDir: at most %zu characters"
				    " (unix socket paths are short)",
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
	snprintf(d->state_dir, sizeof(d->state_dir),
	    "/tmp/tunneld-dispatcher");
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

	worker_watch_pending(d);
	worker_pool_refill(d);
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
		worker_reap(d);
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

int
main(int argc, char **argv)
{
	struct disp	*d;
	struct dworker	*w;
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
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->zlock, NULL);
	d->zygote_req = d->zygote_exit = -1;
	LIST_INIT(&d->workers);
	TAILQ_INIT(&d->delayed);
	TAILQ_INIT(&d->heads);
	if (d->console_on && strcmp(d->console.name, "127.0.0.1") != 0 &&
	    strcmp(d->console.name, "::1") != 0 &&
	    strcmp(d->console.name, "localhost") != 0) {
		d->console_public = 1;
		if (d->console_token[0] == '\0')
			fatalx("-console %s listens beyond loopback: a "
			    "-consoleToken file is required", d->console.name);
	}
	if (access(d->tunneld, X_OK) == -1)
		fatalx("worker program %s: %s (use -tunneld)", d->tunneld,
		    strerror(errno));
	if (mkdir(d->state_dir, 0700) == -1 && errno != EEXIST)
		fatalx("-stateDir %s: %s", d->state_dir, strerror(errno));
	policy_set_logger(disp_policy_log);
	if (disp_reload(d, err) == -1)
		fatalx("policy: %s", err);

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

	if (worker_zygote_start(d, err) == -1)
		log_warnx("no zygote, workers start with exec: %s", err);
	if (worker_scan(d, err) == -1)
		fatalx("%s", err);
	worker_watch_pending(d);
	worker_pool_refill(d);
	if (front_start(d, err) == -1)
		fatalx("%s", err);
	if (d->console_on && console_start(d, err) == -1)
		fatalx("%s", err);
	log_info("listening on %s:%d%s (policy %s, %s)%s%s",
	    d->listen.name[0] ? d->listen.name : "*", d->listen.port, d->path,
	    d->handler_lua, d->canaccept_lua,
	    d->console_on ? ", console on " : "",
	    d->console_on ? d->console.name : "");
	uv_run(d->loop, UV_RUN_DEFAULT);

	front_stop(d);
	console_stop(d);
	worker_pool_close(d);
	worker_zygote_stop(d);
	/* Workers outlive us; close our side of their channels. */
	uv_walk(d->loop, disp_close_walk, NULL);
	uv_run(d->loop, UV_RUN_DEFAULT);
	uv_loop_close(d->loop);
	while ((w = LIST_FIRST(&d->workers)) != NULL) {
		LIST_REMOVE(w, link);
		if (w->ctl_fd != -1)
			close(w->ctl_fd);
		OPENSSL_cleanse(&w->info, sizeof(w->info));
		free(w);
	}
	if (d->policy != NULL)
		policy_unref(d->policy);
	if (d->zygote_exit != -1)
		close(d->zygote_exit);
	pthread_mutex_destroy(&d->zlock);
	pthread_mutex_destroy(&d->lock);
	free(d);
	return 0;
}
