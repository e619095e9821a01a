#ifndef CTL_H
#define CTL_H

/*
 * The transport of control messages between the dispatcher and its
 * tunneld workers: one message of bytes per SOCK_SEQPACKET datagram, with
 * at most one file descriptor attached (SCM_RIGHTS).  What the bytes say
 * is ctlmsg.h's business.
 */

#include <stddef.h>
#include <sys/types.h>

#define CTL_MSG_MAX	65536

/*
 * Sends buf[0..n) and fd (-1 for none) as one message.  Retries EINTR
 * and, up to timeout_ms, EAGAIN.  Returns 0, or -1 with err (n of 0 or
 * CTL_MSG_MAX or more, a send error).  Does not close fd.
 */
int	 ctl_send(int sock, const void *buf, size_t n, int fd, int timeout_ms,
	    char *err);

/*
 * Receives one message into buf (cap bytes), its length in *n, and *fd
 * (-1 if none; extra descriptors are closed).  Returns 1, 0 on EOF, -2
 * if nothing is there yet (non-blocking socket), -1 with err on an error
 * or a truncated message (any attached fd is then closed).
 */
int	 ctl_recv(int sock, void *buf, size_t cap, size_t *n, int *fd,
	    char *err);

/*
 * Checks that the process at the other end of unix socket sock ran as uid
 * when it connected or made the pair (SO_PEERCRED): a socket planted in
 * the state directory by another user must never receive a client's
 * connection nor be adopted as a worker.  Returns 0, or -1 with err.
 */
int	 ctl_check_peer(int sock, uid_t uid, char *err);

/*
 * The pid of the process at the other end of unix socket sock, as the
 * kernel recorded it when that process listened, connected or made the
 * pair (SO_PEERCRED), never what the peer says of itself.  Returns 0, or
 * -1 with err.
 */
int	 ctl_peer_pid(int sock, pid_t *pid, char *err);

/* The process and uid at the other end of sock (SO_PEERCRED; of a
 * listening socket: the process that called listen()).  0, or -1 with
 * err. */
int	 ctl_peer_cred(int sock, pid_t *pid, uid_t *uid, char *err);

/* Blocks up to timeout_ms for a message on sock; 0 on timeout. */
int	 ctl_wait(int sock, int timeout_ms);

#endif
