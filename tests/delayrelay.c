/*
 * delayrelay: a TCP relay that adds a fixed delay in each direction, for
 * long-link tests and benchmarks on a machine without netem.
 *
 *   delayrelay [-d MS] [-r MBIT] [-q BYTES] [-c CONNS] LISTEN TARGET
 *
 *	LISTEN	[HOST:]PORT to listen on (PORT 0: any free port).
 *	TARGET	HOST:PORT each accepted connection is forwarded to.
 *	-d MS	added one-way delay in milliseconds, each direction (default
 *		0; fractions allowed): a round trip through the relay gains
 *		2 * MS.
 *	-r MBIT	rate cap per direction and connection in Mbit/s (default 0:
 *		none).
 *	-q BYTES bytes queued per direction and connection at most (default
 *		16 MiB, suffix k or m allowed).  At the cap the relay stops
 *		reading that side, so TCP backpressure reaches the sender.
 *	-c CONNS relayed connections at most (default 64); further clients
 *		are closed at once.
 *
 * Each chunk read is stamped with its arrival time and written out no
 * sooner than arrival + MS (and no sooner than the rate cap allows), in
 * order.  A half close is forwarded after the queued bytes; a reset or a
 * write error closes both sides.
 *
 * NOTE: the relay acknowledges bytes locally (each side is a separate TCP
 * connection on loopback), so a TCP sender's own window never sees the
 * delay: the queue cap is the bytes in flight over the emulated link, and
 * one connection's throughput is at most BYTES / MS.  An application-level
 * window (kptunnel's 60 packets per stream) does see the full round trip.
 *
 * Prints "listening HOST:PORT" on stdout once it listens, and one line per
 * closed connection on stderr: "closed up=N down=N upmax=N downmax=N"
 * (bytes relayed and the largest queue seen each way).  SIGTERM or SIGINT
 * ends it with status 0.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define DR_CHUNK	(256 * 1024)	/* bytes per read at most */
#define DR_QUEUE_DEF	(16u * 1024 * 1024)
#define DR_CONNS_DEF	64
#define DR_LISTEN_ID	UINT64_MAX
#define DR_EVENTS	64
#define DR_WRITE_MAX	(64 * 1024)	/* per write under a rate cap */
#define DR_BURST_NS	2000000ull	/* credit a rate cap keeps, 2 ms */

struct dr_chunk {
	struct dr_chunk	*next;
	uint64_t	 release;	/* ns, CLOCK_MONOTONIC */
	size_t		 len;
	size_t		 off;
	unsigned char	 data[];
};

/* One direction: bytes read from side `from`, written to the other side. */
struct dr_dir {
	struct dr_chunk	*head;
	struct dr_chunk	*tail;
	size_t		 queued;
	size_t		 peak;
	uint64_t	 total;
	uint64_t	 link_free;	/* ns: when the rate cap lets us send */
	int		 eof;		/* read side saw EOF */
	int		 shut;		/* EOF forwarded */
	int		 blocked;	/* last write hit EAGAIN */
};

struct dr_conn {
	int		 fd[2];		/* 0: accepted client, 1: target */
	uint32_t	 mask[2];	/* epoll interest, 0: not in the set */
	struct dr_dir	 dir[2];	/* dir[s]: read from fd[s] */
};

static struct {
	uint64_t	 delay_ns;
	double		 rate_bps;	/* bytes per second, 0: none */
	size_t		 qcap;
	int		 maxconns;
	struct sockaddr_storage target;
	socklen_t	 targetlen;
	int		 ep;
	struct dr_conn	*conns;
	volatile sig_atomic_t stop;
	unsigned char	 buf[DR_CHUNK];
} dr;

static uint64_t
dr_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
dr_onsig(int sig)
{
	(void)sig;
	dr.stop = 1;
}

/*
 * Resolves "HOST:PORT" (or "PORT" when host_opt) into ss.  Returns 0, or
 * -1 with a message on stderr.
 */
static int
dr_addr(const char *s, int host_opt, struct sockaddr_storage *ss,
    socklen_t *len)
{
	char host[256];
	const char *colon = strrchr(s, ':');
	const char *port = s;
	struct addrinfo hints, *ai = NULL;
	int rc;

	snprintf(host, sizeof(host), "127.0.0.1");
	if (colon != NULL) {
		if ((size_t)(colon - s) >= sizeof(host))
			goto bad;
		memcpy(host, s, colon - s);
		host[colon - s] = '\0';
		port = colon + 1;
	} else if (!host_opt)
		goto bad;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if ((rc = getaddrinfo(host, port, &hints, &ai)) != 0) {
		fprintf(stderr, "delayrelay: %s: %s\n", s, gai_strerror(rc));
		return -1;
	}
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
bad:
	fprintf(stderr, "delayrelay: bad address %s\n", s);
	return -1;
}

static void
dr_nonblock(int fd)
{
	int one = 1;

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	/* the relay adds delay on purpose; Nagle would add more */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void
dr_close(struct dr_conn *c)
{
	int s;
	struct dr_chunk *k, *n;

	fprintf(stderr, "closed up=%llu down=%llu upmax=%zu downmax=%zu\n",
	    (unsigned long long)c->dir[0].total,
	    (unsigned long long)c->dir[1].total, c->dir[0].peak,
	    c->dir[1].peak);
	for (s = 0; s < 2; s++) {
		if (c->fd[s] >= 0)
			close(c->fd[s]);	/* also leaves the epoll set */
		c->fd[s] = -1;
		for (k = c->dir[s].head; k != NULL; k = n) {
			n = k->next;
			free(k);
		}
	}
	memset(c, 0, sizeof(*c));
	c->fd[0] = c->fd[1] = -1;
}

/* Registers what side s of c waits for: reads while its queue has room. */
static void
dr_arm(struct dr_conn *c, int s)
{
	struct epoll_event ev;
	struct dr_dir *in = &c->dir[s], *out = &c->dir[!s];
	uint32_t m = 0;

	if (c->fd[s] < 0)
		return;
	if (!in->eof && in->queued < dr.qcap)
		m |= EPOLLIN;
	if (out->blocked)
		m |= EPOLLOUT;
	if (m == c->mask[s])
		return;
	memset(&ev, 0, sizeof(ev));
	ev.events = m;
	ev.data.u64 = (uint64_t)(c - dr.conns) << 1 | (uint64_t)s;
	/*
	 * A side that wants nothing leaves the set: epoll reports a hang-up
	 * or an error whatever the mask, and it would spin until the queue
	 * drains.
	 */
	if (m == 0)
		epoll_ctl(dr.ep, EPOLL_CTL_DEL, c->fd[s], &ev);
	else
		epoll_ctl(dr.ep, c->mask[s] == 0 ? EPOLL_CTL_ADD :
		    EPOLL_CTL_MOD, c->fd[s], &ev);
	c->mask[s] = m;
}

/* Reads from side s into its queue.  Returns -1 if c must close. */
static int
dr_read(struct dr_conn *c, int s, uint64_t now)
{
	struct dr_dir *d = &c->dir[s];
	struct dr_chunk *k;
	size_t room;
	ssize_t n;

	if (d->eof || d->queued >= dr.qcap)
		return 0;
	room = dr.qcap - d->queued;
	if (room > sizeof(dr.buf))
		room = sizeof(dr.buf);
	n = read(c->fd[s], dr.buf, room);
	if (n < 0)
		return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
	if (n == 0) {
		d->eof = 1;
		return 0;
	}
	if ((k = malloc(sizeof(*k) + (size_t)n)) == NULL)
		return -1;
	memcpy(k->data, dr.buf, (size_t)n);
	k->next = NULL;
	k->release = now + dr.delay_ns;
	k->len = (size_t)n;
	k->off = 0;
	if (d->tail != NULL)
		d->tail->next = k;
	else
		d->head = k;
	d->tail = k;
	d->queued += (size_t)n;
	if (d->queued > d->peak)
		d->peak = d->queued;
	return 0;
}

/*
 * Writes the due chunks of direction s to the other side.  Returns -1 if c
 * must close, else 0; *wake is lowered to the next time this direction
 * has work.
 */
static int
dr_write(struct dr_conn *c, int s, uint64_t now, uint64_t *wake)
{
	struct dr_dir *d = &c->dir[s];
	struct dr_chunk *k;
	size_t len;
	ssize_t n;

	while (!d->blocked && (k = d->head) != NULL) {
		if (k->release > now) {
			if (k->release < *wake)
				*wake = k->release;
			return 0;
		}
		if (dr.rate_bps > 0 && d->link_free > now) {
			if (d->link_free < *wake)
				*wake = d->link_free;
			return 0;
		}
		len = k->len - k->off;
		if (dr.rate_bps > 0 && len > DR_WRITE_MAX)
			len = DR_WRITE_MAX;
		n = send(c->fd[!s], k->data + k->off, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				d->blocked = 1;
				return 0;
			}
			return -1;
		}
		/*
		 * A late wake-up leaves up to DR_BURST_NS of credit, or the
		 * poll's millisecond granularity would lower the rate.
		 */
		if (dr.rate_bps > 0)
			d->link_free = (d->link_free + DR_BURST_NS > now ?
			    d->link_free : now - DR_BURST_NS) +
			    (uint64_t)((double)n * 1e9 / dr.rate_bps);
		d->total += (uint64_t)n;
		d->queued -= (size_t)n;
		k->off += (size_t)n;
		if (k->off == k->len) {
			d->head = k->next;
			if (d->head == NULL)
				d->tail = NULL;
			free(k);
		}
	}
	if (d->head == NULL && d->eof && !d->shut) {
		shutdown(c->fd[!s], SHUT_WR);
		d->shut = 1;
	}
	return 0;
}

static void
dr_accept(int ls)
{
	struct epoll_event ev;
	struct dr_conn *c = NULL;
	int fd, t, i, s;

	while ((fd = accept(ls, NULL, NULL)) >= 0) {
		for (i = 0; i < dr.maxconns; i++)
			if (dr.conns[i].fd[0] < 0) {
				c = &dr.conns[i];
				break;
			}
		if (i == dr.maxconns) {
			fprintf(stderr, "delayrelay: %d connections, refusing\n",
			    dr.maxconns);
			close(fd);
			continue;
		}
		/* loopback targets: a blocking connect is short */
		if ((t = socket(dr.target.ss_family, SOCK_STREAM, 0)) < 0 ||
		    connect(t, (struct sockaddr *)&dr.target,
		    dr.targetlen) < 0) {
			fprintf(stderr, "delayrelay: target: %s\n",
			    strerror(errno));
			if (t >= 0)
				close(t);
			close(fd);
			continue;
		}
		memset(c, 0, sizeof(*c));
		c->fd[0] = fd;
		c->fd[1] = t;
		for (s = 0; s < 2; s++) {
			dr_nonblock(c->fd[s]);
			memset(&ev, 0, sizeof(ev));
			ev.events = c->mask[s] = EPOLLIN;
			ev.data.u64 = (uint64_t)i << 1 | (uint64_t)s;
			epoll_ctl(dr.ep, EPOLL_CTL_ADD, c->fd[s], &ev);
		}
	}
}

static int
dr_size(const char *s, size_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s)
		return -1;
	if (*end == 'k' || *end == 'K')
		v *= 1024, end++;
	else if (*end == 'm' || *end == 'M')
		v *= 1024 * 1024, end++;
	if (*end != '\0' || v == 0 || v > SIZE_MAX / 2)
		return -1;
	*out = (size_t)v;
	return 0;
}

static void
dr_usage(void)
{
	fprintf(stderr, "usage: delayrelay [-d MS] [-r MBIT] [-q BYTES] "
	    "[-c CONNS] [HOST:]PORT HOST:PORT\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct epoll_event evs[DR_EVENTS], ev;
	struct sockaddr_storage la;
	socklen_t lalen;
	char host[NI_MAXHOST], serv[NI_MAXSERV];
	double ms = 0, mbit = 0;
	uint64_t now, wake;
	int ch, ls, one = 1, i, n, s, timeout;
	char *end;

	dr.qcap = DR_QUEUE_DEF;
	dr.maxconns = DR_CONNS_DEF;
	while ((ch = getopt(argc, argv, "d:r:q:c:h")) != -1) {
		switch (ch) {
		case 'd':
			ms = strtod(optarg, &end);
			if (*end != '\0' || !(ms >= 0 && ms <= 60000))
				dr_usage();
			break;
		case 'r':
			mbit = strtod(optarg, &end);
			if (*end != '\0' || !(mbit >= 0 && mbit <= 1e6))
				dr_usage();
			break;
		case 'q':
			if (dr_size(optarg, &dr.qcap) < 0)
				dr_usage();
			break;
		case 'c':
			dr.maxconns = atoi(optarg);
			if (dr.maxconns < 1 || dr.maxconns > 65536)
				dr_usage();
			break;
		default:
			dr_usage();
		}
	}
	if (argc - optind != 2)
		dr_usage();
	dr.delay_ns = (uint64_t)(ms * 1e6);
	dr.rate_bps = mbit * 1e6 / 8;
	if (dr_addr(argv[optind], 1, &la, &lalen) < 0 ||
	    dr_addr(argv[optind + 1], 0, &dr.target, &dr.targetlen) < 0)
		return 1;
	if ((dr.conns = calloc((size_t)dr.maxconns, sizeof(*dr.conns))) ==
	    NULL)
		return 1;
	for (i = 0; i < dr.maxconns; i++)
		dr.conns[i].fd[0] = dr.conns[i].fd[1] = -1;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, dr_onsig);
	signal(SIGINT, dr_onsig);
	if ((ls = socket(la.ss_family, SOCK_STREAM, 0)) < 0 ||
	    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(ls, (struct sockaddr *)&la, lalen) < 0 ||
	    listen(ls, 128) < 0 ||
	    getsockname(ls, (struct sockaddr *)&la, &lalen) < 0) {
		fprintf(stderr, "delayrelay: listen: %s\n", strerror(errno));
		return 1;
	}
	fcntl(ls, F_SETFL, fcntl(ls, F_GETFL) | O_NONBLOCK);
	if ((dr.ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		return 1;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.u64 = DR_LISTEN_ID;
	epoll_ctl(dr.ep, EPOLL_CTL_ADD, ls, &ev);
	getnameinfo((struct sockaddr *)&la, lalen, host, sizeof(host), serv,
	    sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV);
	printf("listening %s:%s\n", host, serv);
	fflush(stdout);

	while (!dr.stop) {
		/* write what is due, then sleep until the next release */
		now = dr_now();
		wake = UINT64_MAX;
		for (i = 0; i < dr.maxconns; i++) {
			struct dr_conn *c = &dr.conns[i];

			if (c->fd[0] < 0)
				continue;
			if (dr_write(c, 0, now, &wake) < 0 ||
			    dr_write(c, 1, now, &wake) < 0 ||
			    (c->dir[0].shut && c->dir[1].shut)) {
				dr_close(c);
				continue;
			}
			dr_arm(c, 0);
			dr_arm(c, 1);
		}
		timeout = -1;
		if (wake != UINT64_MAX) {
			/* round up: waking early would only spin */
			uint64_t d = wake > now ? wake - now : 0;

			timeout = (int)((d + 999999) / 1000000);
		}
		n = epoll_wait(dr.ep, evs, DR_EVENTS, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "delayrelay: epoll: %s\n",
			    strerror(errno));
			return 1;
		}
		now = dr_now();
		for (i = 0; i < n; i++) {
			struct dr_conn *c;

			if (evs[i].data.u64 == DR_LISTEN_ID) {
				dr_accept(ls);
				continue;
			}
			c = &dr.conns[evs[i].data.u64 >> 1];
			s = (int)(evs[i].data.u64 & 1);
			if (c->fd[s] < 0)
				continue;	/* closed earlier in this batch */
			if (evs[i].events & EPOLLOUT)
				c->dir[!s].blocked = 0;
			if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
			    dr_read(c, s, now) < 0)
				dr_close(c);
		}
	}
	for (i = 0; i < dr.maxconns; i++)
		if (dr.conns[i].fd[0] >= 0)
			dr_close(&dr.conns[i]);
	free(dr.conns);
	close(ls);
	close(dr.ep);
	return 0;
}
