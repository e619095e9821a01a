/*
 * Confinement of workers and of the zygote (confine.h).  The order in a
 * worker matters: the uid goes first (setgroups and setgid need root,
 * which setuid gives up), the limits next, then no_new_privs, which both
 * Landlock and an unprivileged seccomp filter require, and the filter
 * last, since Landlock's own calls are not in it.
 */

#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <linux/netlink.h>
#include <openssl/crypto.h>
#include <seccomp.h>

#include "confine.h"
#include "err.h"

/* The suite's builds run under ASan and UBSan, whose runtimes make calls
 * of their own (at start, on a report, at exit). */
#if defined(__SANITIZE_ADDRESS__)
#define CONFINE_SANITIZERS	1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define CONFINE_SANITIZERS	1
#endif
#endif
#ifndef CONFINE_SANITIZERS
#define CONFINE_SANITIZERS	0
#endif

/* Landlock's values, for a libc header older than the running kernel. */
#define LL_FS_V1		((1ULL << 13) - 1)	/* EXECUTE..MAKE_SYM */
#define LL_FS_REFER		(1ULL << 13)		/* ABI 2 */
#define LL_FS_TRUNCATE		(1ULL << 14)		/* ABI 3 */
#define LL_FS_IOCTL_DEV		(1ULL << 15)		/* ABI 5 */
#define LL_FS_READ_FILE		(1ULL << 2)
#define LL_SCOPE_ABSTRACT_UNIX	(1ULL << 0)		/* ABI 6 */
#define LL_SCOPE_SIGNAL		(1ULL << 1)

/* libseccomp's SCMP_A* leave datum_b to a default, which clang's
 * -Wmissing-field-initializers refuses: every field, spelled out. */
#define CMP_EQ(n, v)	((struct scmp_arg_cmp){ (n), SCMP_CMP_EQ, (v), 0 })
#define CMP_MASKED(n, m, v) \
	((struct scmp_arg_cmp){ (n), SCMP_CMP_MASKED_EQ, (m), (v) })

struct ll_ruleset_attr {
	uint64_t	fs;
	uint64_t	net;
	uint64_t	scoped;
};

/* What name resolution reads after start (glibc's resolver and NSS). */
static const char *const confine_files[] = {
	"/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf",
	"/etc/gai.conf", "/etc/host.conf", "/etc/services",
};

void
confine_warm_up(void)
{
	struct addrinfo	 hints, *res = NULL;

	OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	if (getaddrinfo("localhost", "1", &hints, &res) == 0)
		freeaddrinfo(res);
}

static int
confine_ids(const struct ctlmsg_spawn *s, char *err)
{
	uid_t	uid = (uid_t)s->uid;
	gid_t	gid = (gid_t)s->gid;

	if (s->uid == -1 && s->gid == -1)
		return 0;
	if (s->uid == 0 || s->gid == 0 || s->uid == -1 || s->gid == -1) {
		err_set(err, "refusing to run a worker as uid %lld gid %lld",
		    (long long)s->uid, (long long)s->gid);
		return -1;
	}
	if (setgroups(0, NULL) == -1 || setresgid(gid, gid, gid) == -1 ||
	    setresuid(uid, uid, uid) == -1) {
		err_set(err, "switching to uid %u gid %u: %s", (unsigned)uid,
		    (unsigned)gid, strerror(errno));
		return -1;
	}
	/* No way back: a saved or effective root would undo the drop. */
	if (setresuid(0, 0, 0) != -1 || getuid() != uid || geteuid() != uid ||
	    getgid() != gid || getegid() != gid) {
		err_set(err, "uid %u: the switch did not hold", (unsigned)uid);
		return -1;
	}
	return 0;
}

static int
confine_rlimit(int res, rlim_t v, const char *name, char *err)
{
	struct rlimit rl = { v, v };

	if (setrlimit(res, &rl) == -1) {
		err_set(err, "setrlimit %s %llu: %s", name,
		    (unsigned long long)v, strerror(errno));
		return -1;
	}
	return 0;
}

static int
confine_limits(const struct ctlmsg_spawn *s, char *err)
{
	if (confine_rlimit(RLIMIT_CORE, 0, "RLIMIT_CORE", err) == -1 ||
	    confine_rlimit(RLIMIT_NOFILE, (rlim_t)s->max_files,
	    "RLIMIT_NOFILE", err) == -1)
		return -1;
	/* Counted per real uid: only a uid of its own makes it the
	 * worker's threads rather than every worker's. */
	if (s->nproc && confine_rlimit(RLIMIT_NPROC, CONFINE_NPROC,
	    "RLIMIT_NPROC", err) == -1)
		return -1;
	if (!CONFINE_SANITIZERS && confine_rlimit(RLIMIT_AS, CONFINE_AS_MAX,
	    "RLIMIT_AS", err) == -1)
		return -1;
	return 0;
}

int
confine_landlock_abi(void)
{
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0,
	    LANDLOCK_CREATE_RULESET_VERSION);

	return abi < 1 ? 0 : (int)abi;
}

/*
 * No file access but reading the resolver's files; with ABI 6, no
 * signals and no abstract unix sockets outside the worker itself.
 * Returns 0 (*none set if the kernel has no Landlock), or -1 with err.
 */
static int
confine_ruleset(int *none, char *err)
{
	struct ll_ruleset_attr			 a = { 0, 0, 0 };
	struct landlock_path_beneath_attr	 pb;
	size_t					 asz, i;
	long					 abi;
	int					 rs = -1, fd, rc = -1;

	*none = 0;
	if ((abi = confine_landlock_abi()) < 1) {
		*none = 1;
		return -1;
	}
	a.fs = LL_FS_V1;
	if (abi >= 2)
		a.fs |= LL_FS_REFER;
	if (abi >= 3)
		a.fs |= LL_FS_TRUNCATE;
	if (abi >= 5)
		a.fs |= LL_FS_IOCTL_DEV;
	asz = sizeof(a.fs);
	if (abi >= 4)
		asz = sizeof(a.fs) + sizeof(a.net);	/* net left unhandled */
	if (abi >= 6) {
		a.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
		asz = sizeof(a);
	}
	if ((rs = (int)syscall(SYS_landlock_create_ruleset, &a, asz, 0)) ==
	    -1) {
		err_set(err, "landlock_create_ruleset: %s", strerror(errno));
		goto done;
	}
	for (i = 0; i < sizeof(confine_files) / sizeof(confine_files[0]);
	    i++) {
		if ((fd = open(confine_files[i], O_PATH | O_CLOEXEC)) == -1)
			continue;	/* absent here: nothing to allow */
		memset(&pb, 0, sizeof(pb));
		pb.allowed_access = LL_FS_READ_FILE;
		pb.parent_fd = fd;
		if (syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH,
		    &pb, 0) == -1) {
			err_set(err, "landlock_add_rule %s: %s",
			    confine_files[i], strerror(errno));
			close(fd);
			goto done;
		}
		close(fd);
	}
	rc = rs;
	rs = -1;
done:
	if (rs != -1)
		close(rs);
	return rc;
}

/* The worker's ruleset and filter, built once by confine_prepare (the
 * zygote) for every worker it forks: building them costs more than the
 * rest of a worker's start. */
static int			confine_rs = -1;
static struct sock_filter	*confine_bpf;
static unsigned short		 confine_nbpf;

/* Landlock (confine_ruleset): 0, *none set without it, or -1 with err. */
static int
confine_landlock(int *none, char *err)
{
	int rs = confine_rs, rc = 0;

	if (rs == -1 && (rs = confine_ruleset(none, err)) == -1)
		return *none ? 0 : -1;
	if (syscall(SYS_landlock_restrict_self, rs, 0) == -1) {
		err_set(err, "landlock_restrict_self: %s", strerror(errno));
		rc = -1;
	}
	/* A worker keeps no descriptor of it. */
	close(rs);
	confine_rs = -1;
	return rc;
}

/* The calls every worker makes: libuv's loop and threadpool, sockets,
 * descriptors passed over the control socket, timers, memory, OpenSSL. */
static const int confine_worker_calls[] = {
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev),
	SCMP_SYS(pread64), SCMP_SYS(close), SCMP_SYS(fstat),
	SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(lseek),
	SCMP_SYS(openat), SCMP_SYS(fcntl), SCMP_SYS(dup), SCMP_SYS(dup2),
	SCMP_SYS(dup3), SCMP_SYS(pipe2), SCMP_SYS(eventfd2),
	SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait),
	SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_pwait2), SCMP_SYS(poll),
	SCMP_SYS(ppoll), SCMP_SYS(connect), SCMP_SYS(accept),
	SCMP_SYS(accept4), SCMP_SYS(bind), SCMP_SYS(listen),
	SCMP_SYS(getsockname), SCMP_SYS(getpeername), SCMP_SYS(setsockopt),
	SCMP_SYS(getsockopt), SCMP_SYS(shutdown), SCMP_SYS(sendto),
	SCMP_SYS(recvfrom), SCMP_SYS(sendmsg), SCMP_SYS(recvmsg),
	SCMP_SYS(sendmmsg), SCMP_SYS(recvmmsg), SCMP_SYS(mmap),
	SCMP_SYS(munmap), SCMP_SYS(mprotect), SCMP_SYS(mremap),
	SCMP_SYS(madvise), SCMP_SYS(brk), SCMP_SYS(rt_sigaction),
	SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
	SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres),
	SCMP_SYS(gettimeofday), SCMP_SYS(nanosleep),
	SCMP_SYS(clock_nanosleep), SCMP_SYS(getpid), SCMP_SYS(gettid),
	SCMP_SYS(getuid), SCMP_SYS(geteuid), SCMP_SYS(getgid),
	SCMP_SYS(getegid), SCMP_SYS(getrandom), SCMP_SYS(futex),
	SCMP_SYS(set_robust_list), SCMP_SYS(rseq), SCMP_SYS(exit),
	SCMP_SYS(exit_group), SCMP_SYS(tgkill), SCMP_SYS(uname),
	SCMP_SYS(sched_getaffinity), SCMP_SYS(sched_yield),
	SCMP_SYS(getrlimit), SCMP_SYS(sysinfo), SCMP_SYS(restart_syscall),
	SCMP_SYS(membarrier),
};

/* ASan and UBSan only: their runtimes' calls at start, when they report,
 * and at exit.  A release build does not allow these. */
static const int confine_sanitizer_calls[] = {
	SCMP_SYS(sigaltstack), SCMP_SYS(prctl), SCMP_SYS(readlink),
	SCMP_SYS(readlinkat), SCMP_SYS(getppid), SCMP_SYS(kill),
	SCMP_SYS(getdents64), SCMP_SYS(sched_getparam),
	SCMP_SYS(pipe), SCMP_SYS(wait4), SCMP_SYS(ptrace),
};

/* The zygote's own: fork, wait, drop, confine the child. */
static const int confine_zygote_calls[] = {
	SCMP_SYS(clone), SCMP_SYS(wait4), SCMP_SYS(waitid),
	SCMP_SYS(setgroups),
	SCMP_SYS(setresuid), SCMP_SYS(setresgid), SCMP_SYS(setuid),
	SCMP_SYS(setgid), SCMP_SYS(prctl), SCMP_SYS(seccomp),
	SCMP_SYS(setrlimit), SCMP_SYS(prlimit64),
	SCMP_SYS(landlock_create_ruleset), SCMP_SYS(landlock_add_rule),
	SCMP_SYS(landlock_restrict_self), SCMP_SYS(getppid),
};

static int
confine_add(scmp_filter_ctx f, const int *calls, size_t n, char *err)
{
	size_t	i;
	int	rc;

	for (i = 0; i < n; i++)
		if ((rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, calls[i], 0)) < 0 &&
		    rc != -EEXIST) {
			err_set(err, "seccomp rule %d: %s", calls[i],
			    strerror(-rc));
			return -1;
		}
	return 0;
}

/*
 * The calls allowed only with some arguments.  zygote: clone as fork
 * too; a worker may create threads only (CLONE_THREAD), never a process.
 */
static int
confine_add_args(scmp_filter_ctx f, int zygote, char *err)
{
	static const unsigned long ioctls[] = {
		FIONBIO, FIOCLEX, FIONCLEX, FIONREAD, TCGETS
	};
	size_t	i;
	int	rc = 0;

	/* libuv sets non-blocking and close-on-exec with ioctl. */
	for (i = 0; i < sizeof(ioctls) / sizeof(ioctls[0]) && rc >= 0; i++)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
		    CMP_EQ(1, ioctls[i]));
	/* Sockets of the families a tunnel uses, and the routing netlink
	 * getaddrinfo's AI_ADDRCONFIG asks. */
	if (rc >= 0)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
		    CMP_EQ(0, AF_INET));
	if (rc >= 0)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
		    CMP_EQ(0, AF_INET6));
	if (rc >= 0)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
		    CMP_EQ(0, AF_UNIX));
	if (rc >= 0)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2,
		    CMP_EQ(0, AF_NETLINK),
		    CMP_EQ(2, NETLINK_ROUTE));
	if (rc >= 0)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(socketpair),
		    1, CMP_EQ(0, AF_UNIX));
	/* Reading a limit (pthread_create's stack size), never setting. */
	if (rc >= 0)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64),
		    2, CMP_EQ(0, 0), CMP_EQ(2, 0));
	if (rc >= 0 && !zygote)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
		    CMP_MASKED(0, CLONE_THREAD, CLONE_THREAD));
	/* clone3's flags sit in memory a filter cannot read: "not
	 * implemented" makes glibc fall back to clone. */
	if (rc >= 0)
		rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOSYS),
		    SCMP_SYS(clone3), 0);
	/* The zygote signals its workers for a dispatcher without root
	 * (CTL_KILL): these two signals only.  (Sanitizer builds allow any
	 * kill already: then these exist.) */
	for (i = 0; zygote && i < 2 && (rc >= 0 || rc == -EEXIST); i++)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1,
		    CMP_EQ(1, i == 0 ? SIGKILL : SIGTERM));
	if (rc < 0 && rc != -EEXIST) {
		err_set(err, "seccomp rule: %s", strerror(-rc));
		return -1;
	}
	return 0;
}

/* The filter of a worker (or, zygote, of the zygote), built: NULL and
 * err on failure; the caller seccomp_release()s it. */
static scmp_filter_ctx
confine_filter(int zygote, char *err)
{
	scmp_filter_ctx f;

	if ((f = seccomp_init(SCMP_ACT_KILL_PROCESS)) == NULL) {
		err_set(err, "seccomp_init failed");
		return NULL;
	}
	if (confine_add(f, confine_worker_calls, sizeof(confine_worker_calls) /
	    sizeof(confine_worker_calls[0]), err) == -1 ||
	    (CONFINE_SANITIZERS && confine_add(f, confine_sanitizer_calls,
	    sizeof(confine_sanitizer_calls) /
	    sizeof(confine_sanitizer_calls[0]), err) == -1) ||
	    (zygote && confine_add(f, confine_zygote_calls,
	    sizeof(confine_zygote_calls) / sizeof(confine_zygote_calls[0]),
	    err) == -1) ||
	    confine_add_args(f, zygote, err) == -1) {
		seccomp_release(f);
		return NULL;
	}
	return f;
}

static int
confine_seccomp(int zygote, char *err)
{
	struct sock_fprog	prog = { confine_nbpf, confine_bpf };
	scmp_filter_ctx		f;
	int			r;

	if (!zygote && confine_bpf != NULL) {
		if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) ==
		    -1) {
			err_set(err, "PR_SET_SECCOMP: %s", strerror(errno));
			return -1;
		}
		return 0;
	}
	if ((f = confine_filter(zygote, err)) == NULL)
		return -1;
	if ((r = seccomp_load(f)) < 0)
		err_set(err, "seccomp_load: %s", strerror(-r));
	seccomp_release(f);
	return r < 0 ? -1 : 0;
}

int
confine_prepare(char *err)
{
	scmp_filter_ctx	 f;
	struct stat	 st;
	int		 fd = -1, none, rc = -1;

	if ((f = confine_filter(0, err)) == NULL)
		return -1;
	if ((fd = memfd_create("bpf", MFD_CLOEXEC)) == -1 ||
	    seccomp_export_bpf(f, fd) < 0 || fstat(fd, &st) == -1 ||
	    st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) != 0 ||
	    st.st_size / sizeof(struct sock_filter) > BPF_MAXINSNS ||
	    (confine_bpf = malloc((size_t)st.st_size)) == NULL ||
	    pread(fd, confine_bpf, (size_t)st.st_size, 0) != st.st_size) {
		err_set(err, "the workers' seccomp filter: %s",
		    strerror(errno));
		free(confine_bpf);
		confine_bpf = NULL;
		goto done;
	}
	confine_nbpf = (unsigned short)(st.st_size / sizeof(struct sock_filter));
	if ((confine_rs = confine_ruleset(&none, err)) == -1 && !none)
		goto done;
	rc = 0;
done:
	if (fd != -1)
		close(fd);
	seccomp_release(f);
	return rc;
}

int
confine_worker(const struct ctlmsg_spawn *s, int *no_landlock, char *err)
{
	*no_landlock = 0;
	if (confine_ids(s, err) == -1)
		return -1;
	if (!s->sandbox) {
		if (confine_rs != -1)
			close(confine_rs);
		confine_rs = -1;
		return 0;
	}
	if (confine_limits(s, err) == -1)
		return -1;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1 ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		err_set(err, "prctl: %s", strerror(errno));
		return -1;
	}
	if (confine_landlock(no_landlock, err) == -1 ||
	    confine_seccomp(0, err) == -1)
		return -1;
	return 0;
}

int
confine_zygote(char *err)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		err_set(err, "prctl: %s", strerror(errno));
		return -1;
	}
	return confine_seccomp(1, err);
}
