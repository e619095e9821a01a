/*
 * The uids workers run as (disp.h, wuid_).  One uid per worker is what
 * keeps tenants apart: a process can ptrace, signal and read the memory
 * of processes of its own uid.  A uid is taken before its worker is
 * forked and given back only once the process is gone (reaped, or for an
 * adopted worker found gone with kill(pid, 0)), never while one could
 * still run with it.
 */

#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctlmsg.h"
#include "disp.h"
#include "err.h"

int
wuid_setup(struct disp *d, char *warn, char *err)
{
	struct passwd	*pw;
	size_t		 n;

	warn[0] = '\0';
	if (geteuid() != 0) {
		d->wuid_mode = WUID_SAME;
		if (d->worker_uid_first != -1)
			err_set(warn, "-workerUids ignored: not running as "
			    "root, workers run as uid %ld", (long)geteuid());
		return 0;
	}
	if (d->worker_uid_first != -1) {
		n = (size_t)(d->worker_uid_last - d->worker_uid_first + 1);
		if ((d->wuid_pid = calloc(n, sizeof(pid_t))) == NULL) {
			err_set(err, "out of memory");
			return -1;
		}
		d->wuid_mode = WUID_RANGE;
		return 0;
	}
	if ((pw = getpwnam(d->worker_user)) == NULL) {
		err_set(err, "-workerUser %s: no such user", d->worker_user);
		return -1;
	}
	if (pw->pw_uid == 0 || pw->pw_gid == 0) {
		err_set(err, "-workerUser %s has uid %ld gid %ld: workers never "
		    "run as root", d->worker_user, (long)pw->pw_uid,
		    (long)pw->pw_gid);
		return -1;
	}
	d->wuid_mode = WUID_USER;
	d->wuid_user = pw->pw_uid;
	d->wuid_group = pw->pw_gid;
	err_set(warn, "workers share uid %ld (-workerUser %s): they are not "
	    "kept apart from each other; give -workerUids FIRST-LAST",
	    (long)pw->pw_uid, d->worker_user);
	return 0;
}

/* Under lock: slot i is free (never taken, or its process is gone). */
static int
wuid_free_slot(struct disp *d, size_t i)
{
	pid_t p = d->wuid_pid[i];

	if (p == 0)
		return 1;
	if (p > 0 && kill(p, 0) == -1 && errno == ESRCH) {
		d->wuid_pid[i] = 0;
		return 1;
	}
	return 0;
}

int
wuid_take(struct disp *d, struct ctlmsg_spawn *s, char *err)
{
	size_t	n, i;
	int	slot = -1;

	s->uid = s->gid = -1;
	s->nproc = 0;
	if (d->wuid_mode == WUID_SAME)
		return -1;
	if (d->wuid_mode == WUID_USER) {
		s->uid = d->wuid_user;
		s->gid = d->wuid_group;
		return -1;
	}
	n = (size_t)(d->worker_uid_last - d->worker_uid_first + 1);
	pthread_mutex_lock(&d->lock);
	/* Round robin from the last one taken: the slots behind it are
	 * mostly taken, those ahead mostly free, so a spawn checks few. */
	for (i = 0; i < n; i++) {
		size_t k = (d->wuid_next + i) % n;

		if (wuid_free_slot(d, k)) {
			d->wuid_pid[k] = -1;
			d->wuid_next = (k + 1) % n;
			slot = (int)k;
			break;
		}
	}
	pthread_mutex_unlock(&d->lock);
	if (slot == -1) {
		err_set(err, "no worker uid free: all %zu of -workerUids "
		    "%lld-%lld are taken", n, d->worker_uid_first,
		    d->worker_uid_last);
		return -2;
	}
	s->uid = s->gid = d->worker_uid_first + slot;
	s->nproc = 1;
	return slot;
}

void
wuid_bind(struct disp *d, int slot, pid_t pid)
{
	if (slot < 0 || d->wuid_mode != WUID_RANGE)
		return;
	pthread_mutex_lock(&d->lock);
	d->wuid_pid[slot] = pid;
	pthread_mutex_unlock(&d->lock);
}

void
wuid_untake(struct disp *d, int slot)
{
	wuid_bind(d, slot, 0);
}

void
wuid_reaped(struct disp *d, pid_t pid)
{
	size_t n, i;

	if (d->wuid_mode != WUID_RANGE || pid <= 0)
		return;
	n = (size_t)(d->worker_uid_last - d->worker_uid_first + 1);
	pthread_mutex_lock(&d->lock);
	for (i = 0; i < n; i++)
		if (d->wuid_pid[i] == pid) {
			d->wuid_pid[i] = 0;
			break;
		}
	pthread_mutex_unlock(&d->lock);
}

int
wuid_ours(struct disp *d, uid_t uid)
{
	/* Ours too: workers a dispatcher of an older build left, which
	 * ran as its uid (only we can bind in our 0700 directory). */
	return uid == geteuid() || wuid_is_worker(d, uid);
}

int
wuid_is_worker(const struct disp *d, uid_t uid)
{
	switch (d->wuid_mode) {
	case WUID_RANGE:
		return (long long)uid >= d->worker_uid_first &&
		    (long long)uid <= d->worker_uid_last;
	case WUID_USER:
		return uid == d->wuid_user;
	default:
		return 0;
	}
}

void
wuid_adopted(struct disp *d, uid_t uid, pid_t pid)
{
	if (d->wuid_mode == WUID_RANGE && wuid_ours(d, uid))
		wuid_bind(d, (int)((long long)uid - d->worker_uid_first), pid);
}

void
wuid_free(struct disp *d)
{
	free(d->wuid_pid);
	d->wuid_pid = NULL;
}
