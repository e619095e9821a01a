/*
 * Incomplete request heads of the public port.  An address with
 * -headPerIp connections whose head is incomplete gets no more, so that a
 * few addresses dribbling heads (slowloris) can not fill the -maxPending
 * connections; and every head has an absolute deadline (-headTimeout),
 * which libmicrohttpd's idle timeout is not.
 */

#include <sys/socket.h>

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "front.h"
#include "log.h"

/* Two pool threads may each let one more through: counted only once a
 * connection is notified. */
enum MHD_Result
fhead_accept(void *cls, const struct sockaddr *sa, socklen_t len)
{
	struct disp	*d = cls;
	struct ipslot	*sl;
	char		 ip[64];
	int		 ok;

	iplimit_key(sa, ip, sizeof(ip));
	pthread_mutex_lock(&d->lock);
	sl = iplimit_slot(d->headslots, ip, 0);
	ok = sl == NULL || sl->n < d->head_per_ip;
	pthread_mutex_unlock(&d->lock);
	if (!ok)
		log_debug("%s: refused: %d incomplete requests (-headPerIp)",
		    ip, d->head_per_ip);
	return ok ? MHD_YES : MHD_NO;
}

/* Under d->lock: fc's head is complete, or it is closing. */
static void
fhead_done_locked(struct disp *d, struct fconn *fc)
{
	if (fc->listed)
		TAILQ_REMOVE(&d->heads, fc, link);
	fc->listed = 0;
	if (fc->counted)
		iplimit_slot_put(d->headslots, fc->ip);
	fc->counted = 0;
	if (fc->fd != -1)
		close(fc->fd);
	fc->fd = -1;
}

/* A new connection's fconn, counted and listed: NULL without memory. */
static struct fconn *
fhead_open(struct disp *d, struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo	*ci;
	struct fconn			*fc;
	struct ipslot			*sl;

	if ((fc = calloc(1, sizeof(*fc))) == NULL)
		return NULL;
	fc->fd = -1;
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	iplimit_key(ci != NULL ? ci->client_addr : NULL, fc->ip,
	    sizeof(fc->ip));
	/* A descriptor of our own: shutting the socket down at the deadline
	 * never touches a number libmicrohttpd may have closed and reused. */
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci != NULL)
		fc->fd = fcntl(ci->connect_fd, F_DUPFD_CLOEXEC, 0);
	fc->deadline = disp_now_ms() + (uint64_t)d->head_timeout * 1000;
	pthread_mutex_lock(&d->lock);
	if ((sl = iplimit_slot(d->headslots, fc->ip, 1)) != NULL) {
		sl->n++;
		fc->counted = 1;
	}
	if (fc->fd != -1) {
		TAILQ_INSERT_TAIL(&d->heads, fc, link);
		fc->listed = 1;
	}
	pthread_mutex_unlock(&d->lock);
	return fc;
}

void
fhead_notify(void *cls, struct MHD_Connection *c, void **socket_context,
    enum MHD_ConnectionNotificationCode toe)
{
	struct disp	*d = cls;
	struct fconn	*fc = *socket_context;

	if (toe != MHD_CONNECTION_NOTIFY_CLOSED) {
		*socket_context = fhead_open(d, c);
		return;
	}
	if (fc == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	fhead_done_locked(d, fc);
	pthread_mutex_unlock(&d->lock);
	free(fc);
	*socket_context = NULL;
}

void
fhead_done(struct disp *d, struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	if (ci == NULL || ci->socket_context == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	fhead_done_locked(d, ci->socket_context);
	pthread_mutex_unlock(&d->lock);
}

void
fhead_sweep(struct disp *d, uint64_t now)
{
	struct fconn *fc;

	pthread_mutex_lock(&d->lock);
	while ((fc = TAILQ_FIRST(&d->heads)) != NULL && fc->deadline <= now) {
		TAILQ_REMOVE(&d->heads, fc, link);
		fc->listed = 0;
		log_info("%s: request head not complete in %d s "
		    "(-headTimeout): closed", fc->ip, d->head_timeout);
		/* libmicrohttpd reads the end and closes the connection;
		 * it stays counted for its address until then. */
		shutdown(fc->fd, SHUT_RDWR);
		close(fc->fd);
		fc->fd = -1;
	}
	pthread_mutex_unlock(&d->lock);
}
