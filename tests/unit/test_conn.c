/*
 * Unit tests for tunneld/conn.c's closing, on a real libuv loop and a
 * loopback TCP pair: what an open websocket sends when it closes depends
 * on the reason (enum conn_why), never on the reason's text.
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

#include "conn.h"
#include "err.h"

#define SPIN_MS		10000

struct fixture {
	uv_loop_t	 loop;
	struct conn	*c;
	int		 far;		/* the peer's end, blocking */
	int		 closed;
	enum conn_why	 why;
	char		 reason[ERR_LEN];
};

static void
on_data(struct conn *c, void *arg, uint8_t *p, size_t n)
{
}

static void
on_close(struct conn *c, void *arg, const char *reason)
{
	struct fixture *f = arg;

	f->closed = 1;
	f->why = conn_why(c);
	snprintf(f->reason, sizeof(f->reason), "%s", reason);
}

static const struct conn_cbs cbs = {
	.on_data = on_data,
	.on_close = on_close,
};

/* A connected loopback pair: our end in *ours, the far end returned. */
static int
tcp_pair(int *ours)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof(sin);
	int			lfd, far;

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	far = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(far, (struct sockaddr *)&sin, sizeof(sin)),
	    0);
	*ours = accept(lfd, NULL, NULL);
	assert_true(*ours >= 0);
	close(lfd);
	return far;
}

/* A websocket server conn past its upgrade, as the dispatcher hands it. */
static int
setup(void **state)
{
	struct fixture	*f;
	uv_tcp_t	*tcp;
	char		 err[ERR_LEN];
	int		 fd;

	f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	f->far = tcp_pair(&fd);
	tcp = malloc(sizeof(*tcp));
	assert_non_null(tcp);
	uv_tcp_init(&f->loop, tcp);
	assert_int_equal(uv_tcp_open(tcp, fd), 0);
	f->c = conn_adopt(&f->loop, tcp, NULL, 0, err);
	assert_non_null(f->c);
	conn_set_owner(f->c, &cbs, f);
	conn_kick(f->c);
	assert_true(conn_is_open(f->c));
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	close(f->far);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
	return 0;
}

static void
spin_until_closed(struct fixture *f)
{
	int i;

	for (i = 0; i < SPIN_MS && !f->closed; i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	assert_true(f->closed);
}

/* Everything the far end receives until our FIN. */
static size_t
read_all(int fd, uint8_t *buf, size_t cap)
{
	size_t	got = 0;
	ssize_t	n;

	while (got < cap && (n = read(fd, buf + got, cap - got)) > 0)
		got += n;
	return got;
}

/* The owner closes: one close frame, code 1000, then FIN. */
static void
test_conn_owner_close(void **state)
{
	struct fixture	*f = *state;
	uint8_t		 buf[64];
	static const uint8_t want[] = { 0x88, 0x02, 0x03, 0xe8 };

	conn_close(f->c, "the owner is done");
	spin_until_closed(f);
	assert_int_equal(f->why, CONN_WHY_OWNER);
	assert_string_equal(f->reason, "the owner is done");
	assert_int_equal(read_all(f->far, buf, sizeof(buf)), sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
}

/*
 * The peer closes with 1001: its code is echoed in the one close frame we
 * send, and no second (normal) one follows, which is what the reason (not
 * its text) decides.
 */
static void
test_conn_peer_close_answered_once(void **state)
{
	struct fixture	*f = *state;
	uint8_t		 buf[64];
	static const uint8_t want[] = { 0x88, 0x02, 0x03, 0xe9 };
	uint8_t		 frame[8] = { 0x88, 0x82, 1, 2, 3, 4, 0x03, 0xe9 };

	frame[6] ^= 1;
	frame[7] ^= 2;
	assert_int_equal(write(f->far, frame, sizeof(frame)), sizeof(frame));
	spin_until_closed(f);
	assert_int_equal(f->why, CONN_WHY_PEER_CLOSE);
	assert_string_equal(f->reason, "peer sent websocket close 1001");
	assert_int_equal(read_all(f->far, buf, sizeof(buf)), sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
}

/*
 * With a reason text after the code, the echo is still the code (not the
 * text's first two bytes); a close without a code is answered without one.
 */
static void
test_conn_peer_close_echo(void **state)
{
	struct fixture	*f = *state;
	uint8_t		 buf[64];
	static const uint8_t want[] = { 0x88, 0x02, 0x03, 0xe9 };
	uint8_t		 frame[11] = { 0x88, 0x85, 0, 0, 0, 0, 0x03, 0xe9,
			    'b', 'y', 'e' };

	assert_int_equal(write(f->far, frame, sizeof(frame)), sizeof(frame));
	spin_until_closed(f);
	assert_int_equal(read_all(f->far, buf, sizeof(buf)), sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
}

static void
test_conn_peer_close_without_code(void **state)
{
	struct fixture	*f = *state;
	uint8_t		 buf[64];
	static const uint8_t want[] = { 0x88, 0x00 };
	static const uint8_t frame[] = { 0x88, 0x80, 9, 9, 9, 9 };

	assert_int_equal(write(f->far, frame, sizeof(frame)), sizeof(frame));
	spin_until_closed(f);
	assert_int_equal(f->why, CONN_WHY_PEER_CLOSE);
	assert_int_equal(read_all(f->far, buf, sizeof(buf)), sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
}

/*
 * The owner's reason text cannot pass for the peer's close: it still
 * gets the normal close frame (the text was once compared).
 */
static void
test_conn_reason_text_decides_nothing(void **state)
{
	struct fixture	*f = *state;
	uint8_t		 buf[64];
	static const uint8_t want[] = { 0x88, 0x02, 0x03, 0xe8 };

	conn_close(f->c, "peer sent websocket close 1000");
	spin_until_closed(f);
	assert_int_equal(f->why, CONN_WHY_OWNER);
	assert_int_equal(read_all(f->far, buf, sizeof(buf)), sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
}

/* The peer's FIN: the conn closes for PEER_EOF, telling the peer so. */
static void
test_conn_peer_eof(void **state)
{
	struct fixture	*f = *state;
	uint8_t		 buf[64];
	static const uint8_t want[] = { 0x88, 0x02, 0x03, 0xe8 };

	shutdown(f->far, SHUT_WR);
	spin_until_closed(f);
	assert_int_equal(f->why, CONN_WHY_PEER_EOF);
	assert_string_equal(f->reason, "connection closed by peer");
	assert_int_equal(read_all(f->far, buf, sizeof(buf)), sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
}

/* A frame breaking the protocol: why PROTOCOL, its code sent first. */
static void
test_conn_protocol_error(void **state)
{
	struct fixture	*f = *state;
	uint8_t		 buf[64];
	/* Unmasked, which a server must refuse (RFC 6455 5.1): 1002. */
	static const uint8_t frame[] = { 0x82, 0x01, 'x' };

	assert_int_equal(write(f->far, frame, sizeof(frame)), sizeof(frame));
	spin_until_closed(f);
	assert_int_equal(f->why, CONN_WHY_PROTOCOL);
	assert_true(read_all(f->far, buf, sizeof(buf)) >= 4);
	assert_int_equal(buf[0], 0x88);
	assert_int_equal(buf[1], 0x02);
	assert_int_equal((buf[2] << 8) | buf[3], 1002);
}

static void
test_conn_why_table(void **state)
{
	int why;

	for (why = 0; why < CONN_NWHY; why++) {
		assert_string_not_equal(conn_why_name(why), "?");
		/* A handed conn has no socket left to send one on. */
		assert_int_equal(conn_why_sends_close(why),
		    why != CONN_WHY_PEER_CLOSE && why != CONN_WHY_HANDED);
	}
	assert_string_equal(conn_why_name(CONN_NWHY), "?");
	assert_int_equal(conn_why_sends_close(CONN_NWHY), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_conn_owner_close, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_conn_peer_close_answered_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conn_peer_close_echo,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_conn_peer_close_without_code, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_conn_reason_text_decides_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conn_peer_eof, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_conn_protocol_error,
		    setup, teardown),
		cmocka_unit_test(test_conn_why_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
