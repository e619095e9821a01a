/*
 * Unit tests for tunneld/mux.c's flow control, on a real libuv loop and
 * real sockets: a CITI's send window (it stops reading its local socket
 * after TUN_WINDOW packets and resumes on the peer's SYNC), and the
 * session's congestion marks (reading pauses past TUN_CONGEST_HIGH unsent
 * bytes and resumes once the transport drained below TUN_CONGEST_LOW).
 */

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "tunneld.h"

#define CITI_ID		5
/* Generous: the machine may be loaded. */
#define SPIN_MS		10000
/* Time given to something that must not happen. */
#define QUIET_MS	300

struct fixture {
	uv_loop_t	 loop;
	struct cli_opts	 o;
	struct tun	 t;
	struct sess	*s;
	int		 lsn;		/* what the CITI dials */
	int		 local;		/* its accepted end */
	int		 peer;		/* far end of the transport */
};

static void
nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* A listening socket on 127.0.0.1; its port in *port. */
static int
listen_local(int *port)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof(sin);
	int			fd;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	nonblock(fd);
	return fd;
}

/* Packets the session queued for CITI id (sent or not: none is acked). */
static int
queued(struct sess *s, uint32_t id)
{
	struct opkt	*p;
	int		 n = 0;

	TAILQ_FOREACH(p, &s->out, link)
		if (p->citi == id && p->kind == PKT_NORMAL)
			n++;
	return n;
}

/* Runs the loop until queued() reaches want or SPIN_MS pass. */
static int
spin_until_queued(struct fixture *f, int want)
{
	int i;

	for (i = 0; i < SPIN_MS && queued(f->s, CITI_ID) < want; i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	return queued(f->s, CITI_ID);
}

/* Runs the loop about ms milliseconds. */
static void
spin(struct fixture *f, int ms)
{
	int i;

	for (i = 0; i < ms; i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
}

/*
 * A detached server session with one forward to a local listener, and a
 * CITI the peer asked for (CTRL_HEADER), dialed and connected.
 */
static int
setup(void **state)
{
	struct fixture		*f;
	struct msg_header	 m;
	struct fwd		*fw;
	char			 err[ERR_LEN], *json;
	size_t			 len;
	int			 port, i;

	f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	f->o.open_timeout = 30;
	f->t.loop = &f->loop;
	f->t.o = &f->o;
	TAILQ_INIT(&f->t.sessions);
	TAILQ_INIT(&f->t.handshakes);
	f->peer = -1;
	f->lsn = listen_local(&port);
	f->s = sess_new(&f->t, 1);
	assert_non_null(f->s);
	fw = &f->s->eff.fwds[0];
	fw->reverse = 0;		/* the client listens, we dial */
	snprintf(fw->dst.name, sizeof(fw->dst.name), "127.0.0.1");
	fw->dst.port = port;
	f->s->eff.n = 1;

	memset(&m, 0, sizeof(m));
	m.host = fw->dst;
	m.citi = CITI_ID;
	json = msg_header_encode(&m, &len);
	assert_non_null(json);
	assert_int_equal(mux_ctrl(f->s, (uint8_t *)json, len, err), 0);
	free(json);
	f->local = -1;
	for (i = 0; i < SPIN_MS && f->local < 0; i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		f->local = accept(f->lsn, NULL, NULL);
		usleep(1000);
	}
	assert_true(f->local >= 0);
	nonblock(f->local);
	/* Connected once our answer (CTRL_RESP_HEADER, CITI 0) is queued. */
	for (i = 0; i < SPIN_MS && queued(f->s, PKT_CITI_CTRL) < 1; i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	assert_int_equal(queued(f->s, PKT_CITI_CTRL), 1);
	assert_int_equal(mux_count(f->s), 1);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	sess_free(f->s, "test over");
	close(f->local);
	close(f->lsn);
	if (f->peer >= 0)
		close(f->peer);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
	return 0;
}

/*
 * One packet per chunk written: the window lets TUN_WINDOW through, holds
 * the next, and the peer's SYNC for the first group lets it go.
 */
static void
test_mux_window_stops_and_resumes(void **state)
{
	struct fixture	*f = *state;
	char		 err[ERR_LEN];
	int		 i;

	for (i = 0; i < TUN_WINDOW; i++) {
		assert_int_equal(write(f->local, "0123456789", 10), 10);
		assert_int_equal(spin_until_queued(f, i + 1), i + 1);
	}
	assert_int_equal(write(f->local, "held back!", 10), 10);
	spin(f, QUIET_MS);
	assert_int_equal(queued(f->s, CITI_ID), TUN_WINDOW);

	/* A SYNC for a packet that ends no group is a protocol error. */
	assert_int_equal(mux_sync(f->s, CITI_ID, TUN_SYNC_GROUP, err), -1);
	/* The one for the first group opens the window by a group. */
	assert_int_equal(mux_sync(f->s, CITI_ID, TUN_SYNC_GROUP - 1, err), 0);
	assert_int_equal(spin_until_queued(f, TUN_WINDOW + 1), TUN_WINDOW + 1);
	/* The same SYNC again is not the next one. */
	assert_int_equal(mux_sync(f->s, CITI_ID, TUN_SYNC_GROUP - 1, err), -1);
	/* A SYNC for a packet never sent is refused. */
	assert_int_equal(mux_sync(f->s, CITI_ID, 2 * TUN_SYNC_GROUP + 29,
	    err), -1);
	/* So is a SYNC for a CITI that does not exist: ignored, no error. */
	assert_int_equal(mux_sync(f->s, CITI_ID + 1, 29, err), 0);
}

/* Writes as much as the socket takes of 64 KiB chunks. */
static void
feed(int fd)
{
	static char	chunk[64 * 1024];
	ssize_t		n;

	do
		n = write(fd, chunk, sizeof(chunk));
	while (n > 0);
	assert_true(n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

/* Reads and drops what the session sent on the transport. */
static void
drain(int fd)
{
	static char	buf[256 * 1024];

	while (read(fd, buf, sizeof(buf)) > 0)
		continue;
}

/* A TCP connection on the loopback: the session's end in *ours. */
static int
tcp_pair(int *ours)
{
	int	port, lfd, far;
	struct sockaddr_in sin;

	lfd = listen_local(&port);
	far = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	assert_int_equal(connect(far, (struct sockaddr *)&sin, sizeof(sin)),
	    0);
	do
		*ours = accept(lfd, NULL, NULL);
	while (*ours < 0 && errno == EAGAIN);
	assert_true(*ours >= 0);
	close(lfd);
	nonblock(far);
	return far;
}

/* Gives the detached session a raw transport whose far end is f->peer. */
static void
attach(struct fixture *f)
{
	struct xport	*x;
	uv_tcp_t	*tcp;
	char		 err[ERR_LEN];
	int		 fd;

	f->peer = tcp_pair(&fd);
	tcp = malloc(sizeof(*tcp));
	assert_non_null(tcp);
	uv_tcp_init(&f->loop, tcp);
	assert_int_equal(uv_tcp_open(tcp, fd), 0);
	x = calloc(1, sizeof(*x));
	assert_non_null(x);
	x->conn = conn_new(&f->loop, tcp, CONN_RAW_SERVER, NULL, NULL, NULL,
	    err);
	assert_non_null(x->conn);
	x->enc = xc_cfb_new("", 0, 0, err);
	x->dec = xc_cfb_new("", 0, 1, err);
	assert_non_null(x->enc);
	assert_non_null(x->dec);
	sess_attach(f->s, x, 0);
	assert_ptr_equal(f->s->x, x);
}

/*
 * Detached, the session keeps what the CITI reads: past TUN_CONGEST_HIGH
 * unsent bytes it stops reading (well inside the window); once a transport
 * takes the bytes, reading resumes.
 */
static void
test_mux_congestion_pauses_and_resumes(void **state)
{
	struct fixture	*f = *state;
	int		 held, i;

	for (i = 0; i < SPIN_MS && !f->s->congested; i++) {
		feed(f->local);
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	assert_true(f->s->congested);
	assert_true(f->s->unsent_bytes > TUN_CONGEST_HIGH);
	feed(f->local);
	spin(f, QUIET_MS);
	held = queued(f->s, CITI_ID);
	assert_true(held > 0 && held < TUN_WINDOW);
	feed(f->local);
	spin(f, QUIET_MS);
	assert_int_equal(queued(f->s, CITI_ID), held);

	attach(f);
	for (i = 0; i < SPIN_MS && (f->s->congested ||
	    queued(f->s, CITI_ID) <= held); i++) {
		drain(f->peer);
		feed(f->local);
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	assert_false(f->s->congested);
	assert_true(queued(f->s, CITI_ID) > held);
}

/*
 * The stream's lifecycle seen from outside: the peer's close shuts the
 * local socket for writing (EOF there), our local EOF then ends it.
 */
static void
test_mux_half_closes(void **state)
{
	struct fixture	*f = *state;
	char		 err[ERR_LEN], c;
	ssize_t		 n = -1;
	int		 i;

	assert_int_equal(mux_data(f->s, CITI_ID, (uint8_t *)"", 0, err), 0);
	for (i = 0; i < SPIN_MS; i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		if ((n = read(f->local, &c, 1)) == 0)
			break;
		usleep(1000);
	}
	assert_int_equal(n, 0);		/* the FIN reached it */
	assert_int_equal(mux_count(f->s), 1);
	/* Data after the peer's close is a protocol error. */
	assert_int_equal(mux_data(f->s, CITI_ID, (uint8_t *)"x", 1, err), -1);
	shutdown(f->local, SHUT_WR);
	for (i = 0; i < SPIN_MS && mux_count(f->s) > 0; i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	assert_int_equal(mux_count(f->s), 0);
	/* Our close went out: one zero-length packet on the CITI. */
	assert_int_equal(queued(f->s, CITI_ID), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_mux_window_stops_and_resumes, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_mux_congestion_pauses_and_resumes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mux_half_closes, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
