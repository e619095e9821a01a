/*
 * The notify-socket protocol of systemd's Type=notify services (see
 * notify.h).  Written out rather than linked from libsystemd: it is one
 * datagram, and the dispatcher then needs no library that only systemd
 * hosts have.
 */

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "notify.h"

/* A STATUS= line longer than this is cut (systemctl shows one line). */
#define NOTIFY_STATUS_MAX	200

static int			 notify_fd = -1;
static struct sockaddr_un	 notify_addr;
static socklen_t		 notify_addrlen;
/* READY=1 was sent: reloads are reported from then on. */
static atomic_int		 notify_is_ready;

int
notify_init(char *err)
{
	const char	*e;
	size_t		 len;
	int		 rc = -1;

	if ((e = getenv("NOTIFY_SOCKET")) == NULL || e[0] == '\0') {
		unsetenv("NOTIFY_SOCKET");
		return 0;
	}
	len = strlen(e);
	memset(&notify_addr, 0, sizeof(notify_addr));
	notify_addr.sun_family = AF_UNIX;
	if ((e[0] != '/' && e[0] != '@') || len >= sizeof(notify_addr.sun_path)) {
		err_set(err, "NOTIFY_SOCKET: not a unix socket path or an "
		    "abstract name (@...) shorter than %zu bytes",
		    sizeof(notify_addr.sun_path));
		goto done;
	}
	memcpy(notify_addr.sun_path, e, len);
	/* An abstract name: a leading NUL, and no terminating one. */
	if (e[0] == '@')
		notify_addr.sun_path[0] = '\0';
	notify_addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
	    len + (e[0] == '/'));
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (notify_fd == -1) {
		err_set(err, "NOTIFY_SOCKET: socket: %s", strerror(errno));
		goto done;
	}
	rc = 0;
done:
	unsetenv("NOTIFY_SOCKET");
	return rc;
}

/* One datagram; EINTR retried, nothing else (never blocks). */
static int
notify_send(const char *msg, char *err)
{
	ssize_t	n;

	if (notify_fd == -1)
		return 0;
	do
		n = sendto(notify_fd, msg, strlen(msg),
		    MSG_NOSIGNAL | MSG_DONTWAIT,
		    (const struct sockaddr *)&notify_addr, notify_addrlen);
	while (n == -1 && errno == EINTR);
	if (n == -1) {
		err_set(err, "NOTIFY_SOCKET: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* READY=1 with an optional status, its newlines made spaces. */
static int
notify_send_ready(const char *status, char *err)
{
	char	msg[32 + NOTIFY_STATUS_MAX], *p;

	if (status == NULL)
		return notify_send("READY=1", err);
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%.*s", NOTIFY_STATUS_MAX,
	    status);
	for (p = msg + sizeof("READY=1\nSTATUS=") - 1; *p != '\0'; p++)
		if (*p == '\n')
			*p = ' ';
	return notify_send(msg, err);
}

int
notify_ready(const char *status, char *err)
{
	atomic_store(&notify_is_ready, 1);
	return notify_send_ready(status, err);
}

int
notify_reloading(char *err)
{
	struct timespec	ts;
	char		msg[64];

	if (!atomic_load(&notify_is_ready))
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL);
	return notify_send(msg, err);
}

int
notify_reloaded(const char *status, char *err)
{
	if (!atomic_load(&notify_is_ready))
		return 0;
	return notify_send_ready(status, err);
}

int
notify_stopping(char *err)
{
	return notify_send("STOPPING=1", err);
}

void
notify_close(void)
{
	if (notify_fd != -1)
		close(notify_fd);
	notify_fd = -1;
}
