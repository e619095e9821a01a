/*
 * tunneld zygote: forks workers for the dispatcher.  Starting a worker
 * with exec costs some 6 ms of CPU, most of it the kernel's exec, the
 * dynamic linker relocating libcrypto and OpenSSL initialising; a fork of
 * this small, already initialised process costs a fraction of that.  The
 * dispatcher sends CTL_SPAWN with the new worker's control socket on fd 3
 * and gets CTL_SPAWNED with its pid; each worker's exit status goes back
 * as CTL_EXITED on fd 4.  A dispatcher that gave up root (-user) cannot
 * signal workers of other uids: it asks with CTL_KILL, which the zygote
 * carries out only for a worker it forked and has not reaped.  The zygote
 * ends when the dispatcher closes fd 3; its workers carry on.
 */

#include <sys/wait.h>

#include <limits.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "confine.h"
#include "crypto.h"
#include "ctl.h"
#include "ctlmsg.h"
#include "aead.h"
#include "enc.h"
#include "err.h"
#include "log.h"
#include "tunneld.h"

#define ZYGOTE_REQ_FD	3
#define ZYGOTE_EXIT_FD	4

struct zygote {
	char	*role;		/* argv[1]: "zygote", "worker" once forked */
	uid_t	 uid;		/* the dispatcher's: ours, or -ctlUid */
};

static void
zygote_reap(void)
{
	struct ctlmsg	m;
	char		err[ERR_LEN];
	pid_t		pid;
	int		status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		ctlmsg_init(&m, CTL_EXITED);
		m.u.exited.pid = pid;
		m.u.exited.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		m.u.exited.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
		if (ctlmsg_send(ZYGOTE_EXIT_FD, &m, -1, 1000, err) == -1)
			log_warnx("zygote: %s", err);
	}
}

/*
 * The worker: it drops to its uid and is confined (s) before it reads a
 * byte; if that fails it ends, and the dispatcher hears of its exit.
 */
static pid_t
zygote_fork(struct zygote *z, int fd, const struct ctlmsg_spawn *s)
{
	char	err[ERR_LEN];
	pid_t	pid;
	int	nolandlock;

	if ((pid = fork()) != 0)
		return pid;
	/* Its control socket becomes its fd 3, and ps shows "tunneld
	 * worker" as for one started with exec. */
	memcpy(z->role, "worker", 6);
	signal(SIGCHLD, SIG_DFL);
	close(ZYGOTE_EXIT_FD);
	if (dup2(fd, 3) == -1)
		_exit(1);
	close(fd);
	if (confine_worker(s, &nolandlock, err) == -1) {
		log_err("worker: %s", err);
		_exit(1);
	}
	/* As an exec'd worker says (worker.c): a service manager's syscall
	 * filter that refuses Landlock's calls shows up here. */
	if (nolandlock)
		log_warnx("worker: Landlock is not available: the worker's "
		    "file system view is not restricted");
	_exit(worker_run(z->uid));
}

static void
zygote_warm_up(void)
{
	struct enc	*e;
	struct aead	*a;
	uint8_t		 b[32], k1[AEAD_KEY_LEN], k2[AEAD_KEY_LEN];
	uint8_t		 gb[16 + AEAD_TAG_LEN] = { 0 };
	char		 mark[45];
	size_t		 n;
	char		 resp[89];
	const uint32_t	 win[2] = { 0, 0 };

	crypto_magic("", "", b);
	crypto_auth_response("", "", "", resp);
	crypto_random(b, sizeof(b), NULL);
	if ((e = enc_new("", -1, 0, NULL)) != NULL) {
		enc_packet(e, b, sizeof(b));
		enc_free(e);
	}
	if ((e = enc_new("", -1, 1, NULL)) != NULL) {
		enc_packet(e, b, sizeof(b));
		enc_free(e);
	}
	/* The AEAD mode's HKDF, HMAC and GCM, fetched before confinement. */
	if (aead_keys("", "", "", "", win, k1, k2, NULL) == 0 &&
	    aead_mark_new("", "", AEAD_MARK_CHALLENGE, "", mark, NULL) == 0 &&
	    aead_mark_check("", "", AEAD_MARK_CHALLENGE, "", mark) &&
	    (a = aead_new(k1, NULL)) != NULL) {
		if (aead_seal(a, b, 7, gb, 16) == 0)
			aead_open(a, b, 7, gb, sizeof(gb), &n);
		aead_free(a);
	}
}

/* CTL_SPAWN: fork a worker on the socket attached, answer its pid. */
static int
zygote_on_spawn(void *ctx, struct ctlmsg *m, int *fdp, char *err)
{
	struct zygote	*z = ctx;
	struct ctlmsg	 r;
	char		 e[ERR_LEN];

	if (*fdp == -1) {
		err_set(err, "spawn without a control socket");
		return CTLMSG_REFUSED;
	}
	ctlmsg_init(&r, CTL_SPAWNED);
	r.u.spawned.pid = zygote_fork(z, *fdp, &m->u.spawn);
	if (ctlmsg_send(ZYGOTE_REQ_FD, &r, -1, 1000, e) == -1)
		log_warnx("%s", e);
	return CTLMSG_OK;
}

/*
 * CTL_KILL: a child of ours not reaped yet (waitid with WNOWAIT asks the
 * kernel, which knows our children exactly; only this thread reaps them,
 * so the pid cannot be reused between the check and the kill).  Anything
 * else is refused and logged, but the channel stays: a worker that ended
 * just before the dispatcher asked is a race, not a breach.
 */
static int
zygote_on_kill(void *ctx, struct ctlmsg *m, int *fdp, char *err)
{
	siginfo_t	si;
	pid_t		pid = (pid_t)m->u.kill.pid;

	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == -1) {
		log_warnx("kill of pid %d refused: %s", (int)pid,
		    errno == ECHILD ? "not a worker of ours" : strerror(errno));
		return CTLMSG_OK;
	}
	if (kill(pid, m->u.kill.signal) == -1)
		log_warnx("kill %d: %s", (int)pid, strerror(errno));
	return CTLMSG_OK;
}

/*
 * The end.  Confined, it leaves with _exit: the exit handlers include
 * LeakSanitizer's check in the suite's builds, which needs ptrace and
 * /proc, and would be killed by the filter (its tracer) or wait forever.
 */
static int
zygote_exit(int confined, int rc)
{
	if (confined)
		_exit(rc);
	return rc;
}

const struct ctlmsg_rule zygote_rules[] = {
	{ CTL_SPAWN,	ZS_RUN,	zygote_on_spawn },
	{ CTL_KILL,	ZS_RUN,	zygote_on_kill },
};
const size_t zygote_nrules = sizeof(zygote_rules) / sizeof(zygote_rules[0]);

int
zygote_main(int argc, char **argv)
{
	struct pollfd	 pfd = { .fd = ZYGOTE_REQ_FD, .events = POLLIN };
	struct zygote	 z = { .role = argv[1], .uid = getuid() };
	char		 err[ERR_LEN], *end;
	unsigned long	 v;
	int		 rc, i, sandbox = 1, json;

	/* -noSandbox; -ctlUid N: the uid the dispatcher will run as once it
	 * gives up root, the one its workers take orders from; -logFormat:
	 * the dispatcher's, which forked workers keep. */
	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], "-noSandbox") == 0) {
			sandbox = 0;
			continue;
		}
		if (strcmp(argv[i], "-logFormat") == 0 && i + 1 < argc &&
		    log_format_parse(argv[i + 1], &json, err) == 0) {
			log_set_json(json);
			i++;
			continue;
		}
		if (strcmp(argv[i], "-ctlUid") == 0 && i + 1 < argc) {
			errno = 0;
			v = strtoul(argv[++i], &end, 10);
			if (errno == 0 && *end == '\0' && end != argv[i] &&
			    v < UINT_MAX) {
				z.uid = (uid_t)v;
				continue;
			}
		}
		fprintf(stderr, "tunneld zygote: bad argument %s\n", argv[i]);
		return 2;
	}

	if (fcntl(ZYGOTE_REQ_FD, F_GETFD) == -1 ||
	    fcntl(ZYGOTE_EXIT_FD, F_GETFD) == -1) {
		fprintf(stderr, "tunneld zygote: started by the dispatcher "
		    "only (no control sockets on fds 3 and 4)\n");
		return 2;
	}
	log_init("tunneld", 0);
	log_set_prefix("zygote: ");
	signal(SIGPIPE, SIG_IGN);
	/*
	 * What every worker would do first, done once: OpenSSL's start and
	 * its first fetch of each algorithm cost milliseconds per process.
	 * (Its random generator reseeds itself in each forked child.)
	 */
	OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL);
	zygote_warm_up();
	/* The workers' name lookups, warmed up here: glibc reads its NSS
	 * configuration once, before Landlock hides the rest. */
	confine_warm_up();
	if (sandbox && confine_landlock_abi() < 1)
		log_warnx("Landlock is not available: workers' file system "
		    "view is not restricted");
	if (sandbox && confine_prepare(err) == -1)
		log_warnx("%s: each worker builds its own", err);
	if (sandbox && confine_zygote(err) == -1) {
		log_err("%s", err);
		return 1;
	}
	for (;;) {
		zygote_reap();
		rc = poll(&pfd, 1, 200);
		if (rc == -1 && errno != EINTR)
			return zygote_exit(sandbox, 1);
		if (rc <= 0)
			continue;
		rc = ctlmsg_serve(ZYGOTE_REQ_FD, zygote_rules, zygote_nrules,
		    ZS_RUN, &z, err);
		/* The dispatcher is gone, or broke the contract: the
		 * workers carry on without us. */
		if (rc == CTLMSG_REFUSED)
			log_warnx("dispatcher: %s, closing the control "
			    "channel", err);
		if (rc == 0 || rc == CTLMSG_REFUSED)
			return zygote_exit(sandbox, rc == 0 ? 0 : 1);
	}
}
