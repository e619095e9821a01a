/*
 * Control messages over SOCK_SEQPACKET unix sockets, with descriptor
 * passing in the manner of OpenSSH's monitor_fdpass.c: the receiver checks
 * every field of what arrived and closes anything it did not ask for.
 */

#include <sys/socket.h>
#include <sys/uio.h>

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "err.h"

int
ctl_check_peer(int sock, uid_t uid, char *err)
{
	struct ucred	uc;
	socklen_t	len = sizeof(uc);

	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &uc, &len) == -1) {
		err_set(err, "SO_PEERCRED: %s", strerror(errno));
		return -1;
	}
	if (len != sizeof(uc) || uc.uid != uid) {
		err_set(err, "peer runs as uid %ld (pid %ld), not %ld",
		    (long)uc.uid, (long)uc.pid, (long)uid);
		return -1;
	}
	return 0;
}

int
ctl_peer_pid(int sock, pid_t *pid, char *err)
{
	struct ucred	uc;
	socklen_t	len = sizeof(uc);

	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &uc, &len) == -1 ||
	    len != sizeof(uc) || uc.pid <= 0) {
		err_set(err, "SO_PEERCRED: %s", len != sizeof(uc) ? "short" :
		    strerror(errno));
		return -1;
	}
	*pid = uc.pid;
	return 0;
}

int
ctl_peer_cred(int sock, pid_t *pid, uid_t *uid, char *err)
{
	struct ucred	uc;
	socklen_t	len = sizeof(uc);

	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &uc, &len) == -1 ||
	    len != sizeof(uc) || uc.pid <= 0) {
		err_set(err, "SO_PEERCRED: %s", len != sizeof(uc) ? "short" :
		    uc.pid <= 0 ? "no process" : strerror(errno));
		return -1;
	}
	*pid = uc.pid;
	*uid = uc.uid;
	return 0;
}

int
ctl_wait(int sock, int timeout_ms)
{
	struct pollfd	pfd = { .fd = sock, .events = POLLIN };
	int		rc;

	do
		rc = poll(&pfd, 1, timeout_ms);
	while (rc == -1 && errno == EINTR);
	return rc > 0;
}

/*
 * Sends mh whole, retrying EINTR, and EAGAIN for up to timeout_ms per
 * wait.  Returns 0, or -1 with err.
 */
static int
ctl_sendmsg(int sock, struct msghdr *mh, int timeout_ms, char *err)
{
	struct pollfd	pfd = { .fd = sock, .events = POLLOUT };
	ssize_t		n;

	for (;;) {
		n = sendmsg(sock, mh, MSG_NOSIGNAL);
		if (n >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN && timeout_ms > 0 &&
		    poll(&pfd, 1, timeout_ms) > 0)
			continue;
		err_set(err, "sendmsg: %s", strerror(errno));
		return -1;
	}
	if ((size_t)n != mh->msg_iov[0].iov_len) {
		err_set(err, "sendmsg: short write");
		return -1;
	}
	return 0;
}

/*
 * The descriptors mh carries: returns the first (the caller's), or -1,
 * and closes the others, since a message passes one fd at most.
 */
static int
ctl_take_fds(struct msghdr *mh)
{
	struct cmsghdr	*cm;
	size_t		 i, nfd;
	int		 fds[4], got = -1;

	for (cm = CMSG_FIRSTHDR(mh); cm != NULL; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET ||
		    cm->cmsg_type != SCM_RIGHTS ||
		    cm->cmsg_len < CMSG_LEN(0))
			continue;
		nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (nfd > 4)
			nfd = 4;
		memcpy(fds, CMSG_DATA(cm), nfd * sizeof(int));
		for (i = 0; i < nfd; i++) {
			if (got == -1)
				got = fds[i];
			else
				close(fds[i]);	/* one fd per message */
		}
	}
	return got;
}

int
ctl_send(int sock, const void *buf, size_t len, int fd, int timeout_ms,
    char *err)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cmsgbuf;
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*cm;

	if (len == 0 || len >= CTL_MSG_MAX) {
		err_set(err, "control message of %zu bytes", len);
		return -1;
	}
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = (void *)buf;
	iov.iov_len = len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (fd >= 0) {
		memset(&cmsgbuf, 0, sizeof(cmsgbuf));
		mh.msg_control = cmsgbuf.buf;
		mh.msg_controllen = sizeof(cmsgbuf.buf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	return ctl_sendmsg(sock, &mh, timeout_ms, err);
}

int
ctl_recv(int sock, void *buf, size_t cap, size_t *len, int *fd, char *err)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(4 * sizeof(int))];
	} cmsgbuf;
	struct msghdr	 mh;
	struct iovec	 iov;
	ssize_t		 n;
	int		 got = -1, rc = -1;

	*len = 0;
	*fd = -1;
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = buf;
	iov.iov_len = cap;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cmsgbuf.buf;
	mh.msg_controllen = sizeof(cmsgbuf.buf);
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n == -1 && errno == EINTR);
	if (n == -1) {
		if (errno == EAGAIN) {
			rc = -2;
			goto done;
		}
		err_set(err, "recvmsg: %s", strerror(errno));
		goto done;
	}
	got = ctl_take_fds(&mh);
	if (n == 0) {
		rc = 0;
		goto done;
	}
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		err_set(err, "control message truncated");
		goto done;
	}
	*len = (size_t)n;
	*fd = got;
	got = -1;
	rc = 1;
done:
	if (got != -1)
		close(got);
	return rc;
}
