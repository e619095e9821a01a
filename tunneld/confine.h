#ifndef CONFINE_H
#define CONFINE_H

/*
 * Confinement of the processes the dispatcher starts: a worker drops to
 * its own uid, gets resource limits, no_new_privs, a non-dumpable
 * address space, a Landlock view of the few files name resolution reads
 * and a seccomp filter of the system calls it uses; the zygote, which
 * keeps root to switch uids, gets a filter of its own (what it needs to
 * fork, drop and talk to the dispatcher, and the workers' calls, since a
 * filter is inherited and stacked).  See docs/security.md.
 */

#include "ctlmsg.h"

/* Address space of a worker (RLIMIT_AS); not set under sanitizers, whose
 * shadow memory reserves terabytes of it. */
#define CONFINE_AS_MAX		(2ULL << 30)
/* RLIMIT_NPROC of a worker with a uid of its own: its threads. */
#define CONFINE_NPROC		CTLMSG_NPROC_MAX

/*
 * What a process does before it is confined and can no longer: OpenSSL's
 * configuration, one name lookup (glibc loads its NSS modules and reads
 * its files once).  Harmless to call twice.
 */
void	 confine_warm_up(void);

/*
 * Confines the calling process as a worker as s says: its uid and gid
 * (when not -1: setgroups to none, then gid, then uid; refused for 0),
 * then, if s->sandbox, rlimits, dumpable 0, no_new_privs, Landlock and
 * seccomp; without s->sandbox only the uid changes.  Returns 0, or -1 with
 * err (the caller must not run the worker then).  A kernel without
 * Landlock is no error: *no_landlock is set to 1 for the caller to log.
 */
int	 confine_worker(const struct ctlmsg_spawn *s, int *no_landlock,
	    char *err);

/* The kernel's Landlock ABI version, or 0 without Landlock. */
int	 confine_landlock_abi(void);

/*
 * Builds the workers' Landlock ruleset and seccomp filter once, for
 * confine_worker in every process forked afterwards (the zygote, before
 * its own filter).  Returns 0, or -1 with err (each worker then builds
 * its own).
 */
int	 confine_prepare(char *err);

/*
 * The zygote's confinement: no_new_privs and its own seccomp filter.
 * Returns 0, or -1 with err.
 */
int	 confine_zygote(char *err);

#endif
