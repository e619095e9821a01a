#ifndef CTL_H
#define CTL_H

/*
 * Control messages between the dispatcher and its tunneld workers: one
 * JSON object per SOCK_SEQPACKET message, {"type": N, ...}, with at most
 * one file descriptor attached (SCM_RIGHTS).  Requests are even, replies
 * odd; values never change.
 */

#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

#define CTL_MSG_MAX	65536

enum ctl_type {
	CTL_CONFIG	= 2,	/* d->w: tunnel parameters (secrets) */
	CTL_READY	= 3,	/* w->d: listening; pid, socket path */
	CTL_CONN	= 4,	/* d->w: a client socket + bytes already read */
	CTL_CONN_OK	= 5,	/* w->d: taken */
	CTL_STATS_REQ	= 6,	/* d->w */
	CTL_STATS	= 7,	/* w->d: counters */
	CTL_STOP	= 8,	/* d->w: end the tunnel */
	CTL_END		= 9,	/* w->d: the worker is ending; reason */
	CTL_SPAWN	= 10,	/* d->zygote: fork a worker on this fd */
	CTL_SPAWNED	= 11,	/* zygote->d: its pid */
	CTL_EXITED	= 13,	/* zygote->d: a worker's pid and status */
	/* Takeover of a tunnel's listeners by its new worker: */
	CTL_TAKEOVER	= 14,	/* w->d: a new session needs "srcs" */
	CTL_TAKEOVER_DONE = 15,	/* d->w: after the listeners; "busy" why */
	CTL_RELEASE	= 16,	/* d->w: hand the listeners over and end */
	CTL_RELEASED	= 17,	/* w->d: after them; "ended" or "busy" */
	CTL_LISTENER	= 19,	/* both ways: a listening socket, its "src" */
	CTL_AUTHED	= 21	/* w->d: a client authenticated (once) */
};

/* Name of a type, for logs; "unknown" otherwise. */
const char	*ctl_type_name(int type);

/*
 * Sends msg (a JSON object, "type" included) and fd (-1 for none) as one
 * message.  Retries EINTR and, up to timeout_ms, EAGAIN.  Returns 0, or
 * -1 with err.  Does not close fd.
 */
int	 ctl_send(int sock, const json_t *msg, int fd, int timeout_ms,
	    char *err);

/*
 * Receives one message: *msg (new reference, an object with an integer
 * "type") and *fd (-1 if none; extra descriptors are closed).  Returns 1,
 * 0 on EOF, -2 if nothing is there yet (non-blocking socket), -1 with err
 * on a malformed message (any attached fd is closed).
 */
int	 ctl_recv(int sock, json_t **msg, int *fd, char *err);

/* Builds {"type": type} plus the pairs of fmt as json_pack would. */
json_t	*ctl_new(int type);

/* The message type, or -1. */
int	 ctl_type(const json_t *msg);

/*
 * Checks that the process at the other end of unix socket sock ran as uid
 * when it connected or made the pair (SO_PEERCRED): a socket planted in
 * the state directory by another user must never receive a client's
 * connection nor be adopted as a worker.  Returns 0, or -1 with err.
 */
int	 ctl_check_peer(int sock, uid_t uid, char *err);

/* Blocks up to timeout_ms for a message on sock; 0 on timeout. */
int	 ctl_wait(int sock, int timeout_ms);

#endif
