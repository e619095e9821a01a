/*
 * The dispatcher's command line.  See cmdline.h and dispatcher --help.
 */

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmdline.h"
#include "err.h"
#include "log.h"
#include "opt.h"

#ifndef TUNNELD_VERSION
#error "TUNNELD_VERSION is not defined (the Makefile reads it from VERSION)"
#endif

#define CMD_STR2(x)	#x
#define CMD_STR(x)	CMD_STR2(x)

static const char disp_usage_text[] =
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
"                        authenticated) at most [" CMD_STR(DISP_DEF_MAX_SESSION) "]\n"
"  -maxPendingWorkers N  workers waiting for their first client to\n"
"                        authenticate, at most [" CMD_STR(DISP_DEF_MAX_PENDING_WORKERS) "]\n"
"  -spawnRate N          new workers per second per client address (an\n"
"                        IPv6 /64 is one address) that no client\n"
"                        authenticates to [" CMD_STR(DISP_DEF_SPAWN_RATE) "]\n"
"  -spawnBurst N         ... of which at once [" CMD_STR(DISP_DEF_SPAWN_BURST) "]\n"
"  -handshakeTimeout S   for a client to authenticate; a worker with no\n"
"                        authenticated client ends that long after\n"
"                        its last connection [" CMD_STR(DISP_DEF_HANDSHAKE_TIMEOUT) "]\n"
"  -perIp N              requests in progress per client address,\n"
"                        beyond which 503 answers at once [" CMD_STR(DISP_DEF_PER_IP) "]\n"
"  -maxPending N         pending requests in total [" CMD_STR(DISP_DEF_MAX_PENDING) "]\n"
"  -requestTimeout S     idle time allowed in a request [" CMD_STR(DISP_DEF_REQUEST_TIMEOUT) "]\n"
"  -headTimeout S        for a request head to arrive whole, from the\n"
"                        connection's start [" CMD_STR(DISP_DEF_HEAD_TIMEOUT) "]\n"
"  -headPerIp N          connections per client address (an IPv6 /64 is\n"
"                        one) whose request head is incomplete [" CMD_STR(DISP_DEF_HEAD_PER_IP) "]\n"
"  -refuseDelay MS       delay of refusals before the upgrade, as\n"
"                        kptunnel's [" CMD_STR(DISP_DEF_REFUSE_DELAY_MS) "]\n"
"  -reqInfo              answer ?reqinfo with the tunnel count\n"
"  -metricsPerTenant     /metrics also per tenant (a series per tenant)\n"
"  -tunneld PATH         the worker program [tunneld beside dispatcher]\n"
"  -workerUids FIRST-LAST  as root: each worker runs as a uid of its own\n"
"                        from this range (none may be 0); a new worker\n"
"                        when all are taken is refused with 503 [unset]\n"
"  -workerUser NAME      as root, without -workerUids: the one user every\n"
"                        worker runs as (they then share a uid) [nobody]\n"
"  -workerMaxFiles N     descriptors a worker may hold (RLIMIT_NOFILE)\n"
"                        [" CMD_STR(CTLMSG_NOFILE_DEF) "]\n"
"  -user NAME            started as root: run as NAME (or a uid) once the\n"
"                        ports are bound, the state directory opened (it\n"
"                        and its token become NAME's) and the zygote\n"
"                        started; only the zygote keeps root.  NAME must\n"
"                        not be root nor a worker uid, and must be able\n"
"                        to read the policy files for reloads.  Without\n"
"                        the zygote new tunnels then get 503 [unset: as\n"
"                        root, the dispatcher keeps root (warned)]\n"
"  -noSandbox            for debugging only: workers run without rlimits,\n"
"                        seccomp and Landlock (as root they still drop to\n"
"                        their uid)\n"
"  -verbose              debug logs (workers too)\n"
"  -logFormat FORMAT     text: one line per event; json: one JSON object\n"
"                        per line (time, level, prog, pid, msg), the\n"
"                        workers' too [text]\n"
"  -h, -help, --help     print this text\n"
"  -version, --version   print the version\n"
"\n"
"Signals: SIGHUP reloads the scripts (kept only if they load and pass a\n"
"dry call); SIGTERM stops the dispatcher and leaves the workers running.\n"
"Exit status: 0 stopped, 1 runtime error, 2 usage error.\n";

enum disp_opt_id {
	DO_U, DO_IP, DO_CONSOLE, DO_CONSOLETOKEN, DO_STATEDIR, DO_TUNNELD,
	DO_REQINFO, DO_METRICSTENANT, DO_VERBOSE, DO_HELP, DO_VERSION,
	DO_WORKERUIDS, DO_WORKERUSER, DO_NOSANDBOX, DO_USER, DO_LOGFORMAT,
	DO_INT
};

/* flag: no separate value (a value after '=' is ignored). */
static const struct opt_def disp_table[] = {
	{ "u",			DO_U,		0 },
	{ "ip",			DO_IP,		0 },
	{ "console",		DO_CONSOLE,	0 },
	{ "consoleToken",	DO_CONSOLETOKEN, 0 },
	{ "stateDir",		DO_STATEDIR,	0 },
	{ "tunneld",		DO_TUNNELD,	0 },
	{ "reqInfo",		DO_REQINFO,	1 },
	{ "metricsPerTenant",	DO_METRICSTENANT, 1 },
	{ "verbose",		DO_VERBOSE,	1 },
	{ "help",		DO_HELP,	1 },
	{ "h",			DO_HELP,	1 },
	{ "version",		DO_VERSION,	1 },
	{ "workerUids",		DO_WORKERUIDS,	0 },
	{ "workerUser",		DO_WORKERUSER,	0 },
	{ "noSandbox",		DO_NOSANDBOX,	1 },
	{ "user",		DO_USER,	0 },
	{ "logFormat",		DO_LOGFORMAT,	0 },
	{ "maxSession",		DO_INT + 0,	0 },
	{ "perIp",		DO_INT + 1,	0 },
	{ "maxPending",		DO_INT + 2,	0 },
	{ "requestTimeout",	DO_INT + 3,	0 },
	{ "maxPendingWorkers",	DO_INT + 4,	0 },
	{ "spawnRate",		DO_INT + 5,	0 },
	{ "spawnBurst",		DO_INT + 6,	0 },
	{ "handshakeTimeout",	DO_INT + 7,	0 },
	{ "headTimeout",	DO_INT + 8,	0 },
	{ "headPerIp",		DO_INT + 9,	0 },
	{ "refuseDelay",	DO_INT + 10,	0 },
	{ "workerMaxFiles",	DO_INT + 11,	0 },
};

/* The integer options, indexed by id - DO_INT: range and field. */
static const struct {
	int	min, max;
	size_t	off;
} disp_ints[] = {
	{ 1, 100000,	offsetof(struct disp, max_session) },
	{ 1, 100000,	offsetof(struct disp, per_ip) },
	{ 1, 100000,	offsetof(struct disp, max_pending) },
	{ 1, 3600,	offsetof(struct disp, request_timeout) },
	{ 1, 100000,	offsetof(struct disp, max_pending_workers) },
	{ 1, 100000,	offsetof(struct disp, spawn_rate) },
	{ 1, 100000,	offsetof(struct disp, spawn_burst) },
	{ 1, 3600,	offsetof(struct disp, handshake_timeout) },
	{ 1, 3600,	offsetof(struct disp, head_timeout) },
	{ 1, 100000,	offsetof(struct disp, head_per_ip) },
	{ 0, 60000,	offsetof(struct disp, refuse_delay_ms) },
	{ CTLMSG_NOFILE_MIN, CTLMSG_NOFILE_MAX,
	    offsetof(struct disp, worker_max_files) },
};

/* What disp_parse's callbacks share. */
struct disp_ctx {
	struct disp	*d;
	int		 npos;
	int		 stop;		/* DO_HELP or DO_VERSION */
};

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

/* -u HANDLER,CANACCEPT */
static int
disp_scripts(struct disp *d, const char *val, char *err)
{
	char	buf[1024], *comma;

	snprintf(buf, sizeof(buf), "%s", val);
	if ((comma = strchr(buf, ',')) == NULL) {
		err_set(err, "-u: expected handler.lua,canAccept.lua");
		return -1;
	}
	*comma = '\0';
	snprintf(d->handler_lua, sizeof(d->handler_lua), "%s", buf);
	snprintf(d->canaccept_lua, sizeof(d->canaccept_lua), "%s", comma + 1);
	return 0;
}

/* -ip RANGE[,RANGE...], repeatable. */
static int
disp_ranges(struct disp *d, const char *val, char *err)
{
	char	buf[1024], *r;

	snprintf(buf, sizeof(buf), "%s", val);
	for (r = strtok(buf, ","); r != NULL; r = strtok(NULL, ",")) {
		if (d->ncidr == DISP_MAX_CIDRS) {
			err_set(err, "-ip: at most %d ranges", DISP_MAX_CIDRS);
			return -1;
		}
		if (cidr_parse(r, &d->cidrs[d->ncidr++], err) == -1)
			return -1;
	}
	return 0;
}

static int
disp_console(struct disp *d, const char *val, char *err)
{
	if (addr_parse(val, &d->console, err) == -1)
		return -1;
	if (d->console.name[0] == '\0')
		snprintf(d->console.name, sizeof(d->console.name),
		    "127.0.0.1");
	d->console_on = 1;
	return 0;
}

/* -workerUids FIRST-LAST: uids, 0 refused (workers never run as root). */
static int
disp_uids(struct disp *d, const char *val, char *err)
{
	unsigned long long	 a, b;
	char			*ep;

	errno = 0;
	a = strtoull(val, &ep, 10);
	if (errno || ep == val || *ep != '-' || val[0] == '-')
		goto bad;
	val = ep + 1;
	b = strtoull(val, &ep, 10);
	if (errno || ep == val || *ep != '\0' || val[0] == '-' || a > b ||
	    b >= UINT32_MAX)
		goto bad;
	if (a == 0) {
		err_set(err, "-workerUids: the range contains uid 0: workers "
		    "never run as root");
		return -1;
	}
	if (b - a >= DISP_MAX_WORKER_UIDS) {
		err_set(err, "-workerUids: at most %d uids",
		    DISP_MAX_WORKER_UIDS);
		return -1;
	}
	d->worker_uid_first = (long long)a;
	d->worker_uid_last = (long long)b;
	return 0;
bad:
	err_set(err, "-workerUids: expected FIRST-LAST (uids, FIRST <= LAST), "
	    "got '%s'", val);
	return -1;
}

/* A path option into a field of cap bytes; the messages are the old ones. */
static int
disp_path(const char *name, const char *val, char *out, size_t cap,
    const char *toolong, char *err)
{
	if (strlen(val) >= cap) {
		err_set(err, "-%s: %s", name, toolong);
		return -1;
	}
	snprintf(out, cap, "%s", val);
	return 0;
}

static int
disp_option(void *arg, const struct opt_def *def, const char *val, char *err)
{
	struct disp_ctx	*c = arg;
	struct disp	*d = c->d;
	char		 cap[64];

	if (def->id >= DO_INT)
		return disp_int(def->name, val, disp_ints[def->id - DO_INT].min,
		    disp_ints[def->id - DO_INT].max, (int *)(void *)((char *)d +
		    disp_ints[def->id - DO_INT].off), err);
	switch (def->id) {
	case DO_U:
		return disp_scripts(d, val, err);
	case DO_IP:
		return disp_ranges(d, val, err);
	case DO_CONSOLE:
		return disp_console(d, val, err);
	case DO_CONSOLETOKEN:
		return disp_path(def->name, val, d->console_token_file,
		    sizeof(d->console_token_file), "path too long", err);
	case DO_STATEDIR:
		snprintf(cap, sizeof(cap), "at most %zu characters",
		    sizeof(d->state_dir) - 1);
		return disp_path(def->name, val, d->state_dir,
		    sizeof(d->state_dir), cap, err);
	case DO_TUNNELD:
		snprintf(d->tunneld, sizeof(d->tunneld), "%s", val);
		return 0;
	case DO_REQINFO:
		d->reqinfo = 1;
		return 0;
	case DO_METRICSTENANT:
		d->metrics_per_tenant = 1;
		return 0;
	case DO_VERBOSE:
		d->verbose = 1;
		return 0;
	case DO_WORKERUIDS:
		return disp_uids(d, val, err);
	case DO_WORKERUSER:
		return disp_path(def->name, val, d->worker_user,
		    sizeof(d->worker_user), "name too long", err);
	case DO_NOSANDBOX:
		d->no_sandbox = 1;
		return 0;
	case DO_LOGFORMAT:
		return log_format_parse(val, &d->log_json, err);
	case DO_USER:
		if (val[0] == '\0') {
			err_set(err, "-user: a user name or uid is needed");
			return -1;
		}
		return disp_path(def->name, val, d->run_user,
		    sizeof(d->run_user), "name too long", err);
	default:	/* DO_HELP, DO_VERSION: answered by disp_parse */
		c->stop = def->id;
		return 1;
	}
}

/* "wsserver", then [host]:port[/path]. */
static int
disp_positional(void *arg, const char *s, char *err)
{
	struct disp_ctx	*c = arg;
	struct disp	*d = c->d;
	char		 buf[1024], *slash;

	if (c->npos == 0 && strcmp(s, "wsserver") != 0) {
		err_set(err, "unknown mode '%s' (only wsserver)", s);
		return -1;
	}
	if (c->npos == 1) {
		snprintf(buf, sizeof(buf), "%s", s);
		if ((slash = strchr(buf, '/')) != NULL) {
			snprintf(d->path, sizeof(d->path), "%s", slash);
			*slash = '\0';
		}
		if (addr_parse(buf, &d->listen, err) == -1)
			return -1;
	}
	if (c->npos > 1) {
		err_set(err, "unexpected argument '%s'", s);
		return -1;
	}
	c->npos++;
	return 0;
}

int
disp_parse(struct disp *d, int argc, char **argv, char *err)
{
	struct disp_ctx	 c = { .d = d };
	struct opt_parser p = {
		.defs = disp_table,
		.ndefs = sizeof(disp_table) / sizeof(disp_table[0]),
		.option = disp_option, .positional = disp_positional, .arg = &c
	};
	int		 rc;

	if ((rc = opt_parse(&p, argc, argv, err)) == -1)
		return -1;
	if (rc == 1 && c.stop == DO_HELP) {
		fputs(disp_usage_text, stdout);
		exit(0);
	}
	if (rc == 1) {
		puts("dispatcher " TUNNELD_VERSION);
		exit(0);
	}
	if (c.npos < 2) {
		err_set(err, c.npos == 0 ? "missing mode (wsserver)" :
		    "missing [host]:port[/path]");
		return -1;
	}
	return 0;
}

void
disp_defaults(struct disp *d, const char *argv0)
{
	char	self[PATH_MAX], *slash;
	ssize_t	n;

	snprintf(d->path, sizeof(d->path), "/");
	snprintf(d->handler_lua, sizeof(d->handler_lua), "lua/handler.lua");
	snprintf(d->canaccept_lua, sizeof(d->canaccept_lua),
	    "lua/canAccept.lua");
	d->state_fd = -1;	/* -stateDir or disp_state_default() */
	d->join_fd = d->join_wfd = -1;	/* join_setup() */
	d->max_session = DISP_DEF_MAX_SESSION;
	d->per_ip = DISP_DEF_PER_IP;
	d->max_pending = DISP_DEF_MAX_PENDING;
	d->request_timeout = DISP_DEF_REQUEST_TIMEOUT;
	d->refuse_delay_ms = DISP_DEF_REFUSE_DELAY_MS;
	d->max_pending_workers = DISP_DEF_MAX_PENDING_WORKERS;
	d->spawn_rate = DISP_DEF_SPAWN_RATE;
	d->spawn_burst = DISP_DEF_SPAWN_BURST;
	d->handshake_timeout = DISP_DEF_HANDSHAKE_TIMEOUT;
	d->head_timeout = DISP_DEF_HEAD_TIMEOUT;
	d->head_per_ip = DISP_DEF_HEAD_PER_IP;
	d->worker_max_files = CTLMSG_NOFILE_DEF;
	d->worker_uid_first = d->worker_uid_last = -1;
	snprintf(d->worker_user, sizeof(d->worker_user), "nobody");
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
