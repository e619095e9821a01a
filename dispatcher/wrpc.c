/*
 * Asking a worker: one short-lived connection to its unix socket per
 * exchange (a client's hand-over, its figures, a stop), one deadline for
 * the whole exchange, and the reply checked against the contract
 * (ctlmsg.h).  Called from the front's and the console's threads.
 */

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "ctlmsg.h"
#include "disp.h"
#include "err.h"

int
wrpc_connect(const char *path, uid_t uid, char *err)
{
	struct sockaddr_un	sun;
	int			fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) == -1) {
		err_set(err, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		err_set(err, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	/* A socket another user planted gets neither a client's connection
	 * nor adoption; a worker is the uid we gave it. */
	if (uid != WRPC_ANY_UID && ctl_check_peer(fd, uid, err) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

int
wrpc_wait(int fd, uint64_t deadline)
{
	uint64_t now = disp_now_ms();

	return now < deadline && ctl_wait(fd, (int)(deadline - now));
}

int
wrpc_recv(int fd, uint64_t deadline, int timeout_ms, struct ctlmsg *r,
    int *rfd, char *err)
{
	int rc;

	do
		if (!wrpc_wait(fd, deadline)) {
			err_set(err, "worker did not answer in %d ms",
			    timeout_ms);
			return -1;
		}
	while ((rc = ctlmsg_recv(fd, r, rfd, err)) == -2);
	if (rc == 0)
		err_set(err, "worker closed the control connection");
	return rc == 1 ? 0 : -1;
}

/*
 * Sends req (with fd_attach, -1 for none) to the worker at path and waits,
 * timeout_ms in all, for a reply of type want into *r.  Returns 0, or -1
 * with err (*r is then cleared).
 */
static int
wrpc_ask(const char *path, uid_t uid, const struct ctlmsg *req, int fd_attach, int want,
    int timeout_ms, struct ctlmsg *r, char *err)
{
	uint64_t	deadline = disp_now_ms() + timeout_ms;
	int		fd, rfd, rc = -1;

	memset(r, 0, sizeof(*r));
	if ((fd = wrpc_connect(path, uid, err)) == -1)
		return -1;
	if (ctlmsg_send(fd, req, fd_attach, timeout_ms, err) == -1)
		goto done;
	/* A worker tells every connected dispatcher of CTL_AUTHED, this
	 * short-lived connection too: not the answer. */
	for (;;) {
		if (wrpc_recv(fd, deadline, timeout_ms, r, &rfd, err) == -1)
			goto done;
		if (rfd != -1)
			close(rfd);
		if (r->type != CTL_AUTHED || want == CTL_AUTHED)
			break;
		ctlmsg_clear(r);
	}
	if (r->type != want) {
		err_set(err, "worker answered %s", ctlmsg_name(r->type));
		ctlmsg_clear(r);
		goto done;
	}
	rc = 0;
done:
	close(fd);
	return rc;
}

int
wrpc_handover(struct dworker *w, int fd, const void *extra, size_t n,
    char *err)
{
	struct ctlmsg	*m, *r;
	int		 rc = -1;

	/* Two messages of some 34 KB: off the threads' stacks. */
	m = malloc(sizeof(*m));
	r = malloc(sizeof(*r));
	if (m == NULL || r == NULL) {
		err_set(err, "out of memory");
		goto done;
	}
	ctlmsg_init(m, CTL_CONN);
	m->u.conn.extra = (uint8_t *)extra;	/* borrowed: not cleared */
	m->u.conn.nextra = n;
	rc = wrpc_ask(w->sock, w->uid, m, fd, CTL_CONN_OK, DISP_HANDOVER_MS, r, err);
	ctlmsg_clear(r);
	/* Hand-overs of one session run on several MHD threads at once. */
	if (rc == 0)
		__atomic_fetch_add(&w->handovers, 1, __ATOMIC_RELAXED);
done:
	free(m);
	free(r);
	return rc;
}

int
wrpc_relay(struct dworker *w, int fd, const char *remote, char *err)
{
	struct ctlmsg	*m, *r;
	int		 rc = -1;

	m = malloc(sizeof(*m));
	r = malloc(sizeof(*r));
	if (m == NULL || r == NULL) {
		err_set(err, "out of memory");
		goto done;
	}
	ctlmsg_init(m, CTL_CONN);
	m->u.conn.http = 1;
	snprintf(m->u.conn.remote, sizeof(m->u.conn.remote), "%s", remote);
	rc = wrpc_ask(w->sock, w->uid, m, fd, CTL_CONN_OK, DISP_HANDOVER_MS, r,
	    err);
	ctlmsg_clear(r);
done:
	free(m);
	free(r);
	return rc;
}

int
wrpc_stop(struct dworker *w, char *err)
{
	int fd, rc;

	if ((fd = wrpc_connect(w->sock, w->uid, err)) == -1)
		return -1;
	/* Its CTL_END then counts as stopped (tunneld_worker_exits_total). */
	__atomic_store_n(&w->stop_asked, 1, __ATOMIC_RELAXED);
	rc = ctlmsg_send_type(fd, CTL_STOP, 1000, err);
	close(fd);
	return rc;
}

int
wrpc_stats(const char *sock, uid_t uid, struct ctlmsg_stats *st, char *err)
{
	struct ctlmsg	*req, *r;
	int		 rc = -1;

	/* Two messages of some 34 KB: off the threads' stacks. */
	req = malloc(sizeof(*req));
	r = malloc(sizeof(*r));
	if (req == NULL || r == NULL) {
		err_set(err, "out of memory");
		goto done;
	}
	ctlmsg_init(req, CTL_STATS_REQ);
	if ((rc = wrpc_ask(sock, uid, req, -1, CTL_STATS, 1000, r, err)) == 0)
		*st = r->u.stats;
	ctlmsg_clear(r);
done:
	free(req);
	free(r);
	return rc;
}
