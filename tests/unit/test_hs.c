/*
 * The handshake's phases (tunneld/hs*.c), driven through hs_start and
 * hs_client on a real libuv loop over a loopback TCP pair: the test plays
 * the peer with messages built by tunneld/msg.c, as a Go peer would send
 * them.  Also the phase table itself.
 */

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "crypto.h"
#include "err.h"
#include "hs.h"

#define ARGV(...)	((char *[]){ "tunneld", __VA_ARGS__, NULL })
#define PASS		"hs-test-pass"
#define WAIT_MS		5000

struct fx {
	uv_loop_t	 loop;
	struct cli_opts	 o;
	struct tun	 t;
	int		 peer;		/* the test's end, blocking */
	struct enc	*enc, *dec;	/* the peer's */
	uint8_t		 in[70000];
	size_t		 nin;
};

/* Standalone options from a command line, as main() gets them. */
static void
fx_opts(struct fx *f, char **argv)
{
	char	out[8192], err[ERR_LEN];
	int	argc = 0;

	while (argv[argc] != NULL)
		argc++;
	if (cli_parse(argc, argv, &f->o, out, sizeof(out), err) != 0)
		fail_msg("cli_parse: %s", err);
}

/* A connected loopback pair: *mine is the tunnel's, the peer's is f->peer. */
static int
fx_pair(struct fx *f)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof(sin);
	int			l, fd;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true((l = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&sin, &len), 0);
	assert_true((f->peer = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(connect(f->peer, (struct sockaddr *)&sin,
	    sizeof(sin)), 0);
	assert_true((fd = accept(l, NULL, NULL)) >= 0);
	close(l);
	return fd;
}

/* A tunnel of the command line argv with one handshake on a fresh pair. */
static void
fx_start(struct fx *f, char **argv)
{
	struct conn_client_params	 cp;
	struct conn			*c;
	uv_tcp_t			*tcp;
	char				 err[ERR_LEN];
	int				 fd, server;

	memset(f, 0, sizeof(*f));
	fx_opts(f, argv);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	tun_init(&f->t, &f->loop, &f->o, NULL);
	server = cli_mode_is_server(f->o.mode);
	fd = fx_pair(f);
	assert_non_null(tcp = malloc(sizeof(*tcp)));
	uv_tcp_init(&f->loop, tcp);
	assert_int_equal(uv_tcp_open(tcp, fd), 0);
	memset(&cp, 0, sizeof(cp));
	c = conn_new(&f->loop, tcp, server ? CONN_RAW_SERVER : CONN_RAW_CLIENT,
	    &cp, NULL, NULL, err);
	assert_non_null(c);
	if (server)
		hs_start(&f->t, c);
	else
		hs_client(&f->t, c);
	assert_non_null(f->enc = enc_new(f->o.encpass, f->o.enc_count, 0,
	    err));
	assert_non_null(f->dec = enc_new(f->o.encpass, f->o.enc_count, 1,
	    err));
}

/* Stops the tunnel and runs its loop until every handle is closed. */
static void
fx_end(struct fx *f)
{
	tun_stop(&f->t, f->t.exit_code);
	if (f->peer >= 0)
		close(f->peer);
	/* A client's handshake is not on t->handshakes: the peer's close
	 * (or its timer) ends it. */
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	tun_free(&f->t);
	enc_free(f->enc);
	enc_free(f->dec);
	cli_free(&f->o);
}

/* Runs the loop until the peer has n bytes buffered; 0, or -1 on EOF. */
static int
fx_fill(struct fx *f, size_t n)
{
	struct pollfd	pfd = { .fd = f->peer, .events = POLLIN };
	ssize_t		r;
	int		i;

	for (i = 0; i < WAIT_MS / 5 && f->nin < n; i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		if (poll(&pfd, 1, 5) != 1)
			continue;
		r = read(f->peer, f->in + f->nin, sizeof(f->in) - f->nin);
		if (r <= 0)
			return -1;
		f->nin += r;
	}
	return f->nin >= n ? 0 : -1;
}

/* Runs the loop until the tunnel closes the peer's connection. */
static int
fx_wait_eof(struct fx *f)
{
	struct pollfd	pfd = { .fd = f->peer, .events = POLLIN };
	uint8_t		b[4096];
	int		i;

	for (i = 0; i < 2 * WAIT_MS / 5; i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		if (poll(&pfd, 1, 5) == 1 && read(f->peer, b, sizeof(b)) <= 0)
			return 0;
	}
	return -1;
}

static void
fx_take(struct fx *f, size_t n)
{
	memmove(f->in, f->in + n, f->nin - n);
	f->nin -= n;
}

static void
fx_expect_lack(struct fx *f)
{
	assert_int_equal(fx_fill(f, PKT_LACK_LEN), 0);
	assert_memory_equal(f->in, pkt_lack_pattern, PKT_LACK_LEN);
	fx_take(f, PKT_LACK_LEN);
}

static void
fx_send_raw(struct fx *f, const void *p, size_t n)
{
	assert_int_equal(write(f->peer, p, n), (ssize_t)n);
}

/* One NORMAL packet on CITI 0, encrypted as the peer would. */
static void
fx_send(struct fx *f, const void *payload, size_t n)
{
	uint8_t b[PKT_NORMAL_HDR + 4096];

	assert_true(n <= sizeof(b) - PKT_NORMAL_HDR);
	pkt_put_normal_hdr(b, PKT_CITI_CTRL, n);
	memcpy(b + PKT_NORMAL_HDR, payload, n);
	enc_packet(f->enc, b + PKT_NORMAL_HDR, n);
	fx_send_raw(f, b, PKT_NORMAL_HDR + n);
}

/* The next packet from the tunnel, decrypted, NUL-terminated in out. */
static size_t
fx_recv(struct fx *f, uint8_t *out, size_t cap)
{
	struct pkt	p;
	char		err[ERR_LEN];
	ssize_t		n;
	size_t		len;

	for (;;) {
		n = pkt_parse(f->in, f->nin, &p, err);
		assert_true(n >= 0);
		if (n > 0)
			break;
		assert_int_equal(fx_fill(f, f->nin + 1), 0);
	}
	assert_int_equal(p.kind, PKT_NORMAL);
	assert_int_equal(p.citi, PKT_CITI_CTRL);
	assert_true(p.len < cap);
	enc_packet(f->dec, p.payload, p.len);
	memcpy(out, p.payload, p.len);
	out[p.len] = '\0';
	len = p.len;
	fx_take(f, n);
	return len;
}

/* Server side: lack both ways, then the magic and the challenge. */
static void
fx_server_hello(struct fx *f, struct msg_challenge *ch)
{
	uint8_t	b[4096], magic[32];
	char	err[ERR_LEN];
	size_t	n;

	fx_expect_lack(f);
	fx_send_raw(f, pkt_lack_pattern, PKT_LACK_LEN);
	n = fx_recv(f, b, sizeof(b));
	crypto_magic(PASS, f->o.encpass, magic);
	assert_int_equal(n, 32);
	assert_memory_equal(b, magic, 32);
	n = fx_recv(f, b, sizeof(b));
	if (msg_challenge_decode(b, n, ch, err) == -1)
		fail_msg("challenge: %s", err);
	assert_string_equal(ch->mode, "server");
}

static void
fx_send_response(struct fx *f, const struct msg_challenge *ch,
    const char *pass, const char *token, int64_t read_no)
{
	struct msg_response	 m;
	char			*json, err[ERR_LEN];
	size_t			 len;

	memset(&m, 0, sizeof(m));
	assert_int_equal(crypto_nonce(m.hint, err), 0);
	crypto_auth_response(ch->challenge, pass, m.hint, m.response);
	snprintf(m.token, sizeof(m.token), "%s", token);
	m.read_no = read_no;
	m.fwds.null = 1;
	assert_non_null(json = msg_response_encode(&m, &len));
	fx_send(f, json, len);
	free(json);
}

static void
fx_recv_result(struct fx *f, struct msg_result *r)
{
	uint8_t	b[4096];
	char	err[ERR_LEN];
	size_t	n;

	n = fx_recv(f, b, sizeof(b));
	if (msg_result_decode(b, n, r, err) == -1)
		fail_msg("result: %s", err);
}

static size_t
fx_sessions(struct fx *f)
{
	struct sess	*s;
	size_t		 n = 0;

	TAILQ_FOREACH(s, &f->t.sessions, link)
		n++;
	return n;
}

/* The table: each role's phases chain from HS_LACK to HS_DONE. */
static void
test_table(void **state)
{
	static const enum hs_phase server[] = { HS_LACK, HS_RESPONSE, HS_DONE };
	static const enum hs_phase client[] = { HS_LACK, HS_MAGIC,
	    HS_CHALLENGE, HS_RESULT, HS_DONE };
	static const enum hs_msg server_msg[] = { HS_MSG_LACK, HS_MSG_RESPONSE };
	static const enum hs_msg client_msg[] = { HS_MSG_LACK, HS_MSG_MAGIC,
	    HS_MSG_CHALLENGE, HS_MSG_RESULT };
	const struct hs_rule	*r;
	size_t			 i;

	for (i = 0; i + 1 < sizeof(server) / sizeof(server[0]); i++) {
		assert_non_null(r = hs_rule_find(HS_ROLE_SERVER, server[i]));
		assert_int_equal(r->expect, server_msg[i]);
		assert_int_equal(r->next, server[i + 1]);
	}
	for (i = 0; i + 1 < sizeof(client) / sizeof(client[0]); i++) {
		assert_non_null(r = hs_rule_find(HS_ROLE_CLIENT, client[i]));
		assert_int_equal(r->expect, client_msg[i]);
		assert_int_equal(r->next, client[i + 1]);
	}
	/* What a role does not read, and the ends, permit nothing. */
	assert_null(hs_rule_find(HS_ROLE_SERVER, HS_MAGIC));
	assert_null(hs_rule_find(HS_ROLE_SERVER, HS_CHALLENGE));
	assert_null(hs_rule_find(HS_ROLE_SERVER, HS_RESULT));
	assert_null(hs_rule_find(HS_ROLE_CLIENT, HS_RESPONSE));
	assert_null(hs_rule_find(HS_ROLE_SERVER, HS_REFUSED));
	assert_null(hs_rule_find(HS_ROLE_SERVER, HS_DONE));
	assert_null(hs_rule_find(HS_ROLE_CLIENT, HS_DONE));
}

static void
test_mode_mismatch_rule(void **state)
{
	assert_null(hs_client_mode_mismatch(MODE_CLIENT, "server"));
	assert_null(hs_client_mode_mismatch(MODE_WSCLIENT, "wsserver"));
	assert_null(hs_client_mode_mismatch(MODE_R_CLIENT, "r-server"));
	assert_non_null(hs_client_mode_mismatch(MODE_CLIENT, "r-server"));
	assert_non_null(hs_client_mode_mismatch(MODE_R_WSCLIENT, "wsserver"));
}

/* Server: challenge -> right response -> "ok", then the same token resumes. */
static void
test_server_new_and_resume(void **state)
{
	struct fx		 f;
	struct msg_challenge	 ch;
	struct msg_result	 r;
	char			 token[MSG_STR_MAX];
	int64_t			 id;

	fx_start(&f, ARGV("server", "127.0.0.1:1", "-pass", PASS));
	fx_server_hello(&f, &ch);
	fx_send_response(&f, &ch, PASS, "", 0);
	fx_recv_result(&f, &r);
	assert_string_equal(r.result, "ok");
	assert_true(r.token[0] != '\0');
	assert_int_equal(fx_sessions(&f), 1);
	assert_true(TAILQ_EMPTY(&f.t.handshakes));
	snprintf(token, sizeof(token), "%s", r.token);
	id = r.session_id;
	close(f.peer);
	f.nin = 0;

	/* The session waits detached; a second connection resumes it. */
	{
		struct conn	*c;
		uv_tcp_t	*tcp;
		char		 err[ERR_LEN];
		int		 fd = fx_pair(&f);

		enc_free(f.enc);
		enc_free(f.dec);
		f.enc = enc_new(f.o.encpass, f.o.enc_count, 0, err);
		f.dec = enc_new(f.o.encpass, f.o.enc_count, 1, err);
		assert_non_null(tcp = malloc(sizeof(*tcp)));
		uv_tcp_init(&f.loop, tcp);
		assert_int_equal(uv_tcp_open(tcp, fd), 0);
		assert_non_null(c = conn_new(&f.loop, tcp, CONN_RAW_SERVER,
		    NULL, NULL, NULL, err));
		hs_start(&f.t, c);
	}
	fx_server_hello(&f, &ch);
	fx_send_response(&f, &ch, PASS, token, 0);
	fx_recv_result(&f, &r);
	assert_string_equal(r.result, "ok");
	assert_int_equal(r.session_id, id);
	assert_string_equal(r.token, token);
	assert_int_equal(fx_sessions(&f), 1);
	assert_non_null(TAILQ_FIRST(&f.t.sessions)->x);
	fx_end(&f);
}

/* Server: a response made with another password is answered "ng". */
static void
test_server_bad_response(void **state)
{
	struct fx		 f;
	struct msg_challenge	 ch;
	struct msg_result	 r;

	fx_start(&f, ARGV("server", "127.0.0.1:1", "-pass", PASS));
	fx_server_hello(&f, &ch);
	fx_send_response(&f, &ch, "another-pass", "", 0);
	fx_recv_result(&f, &r);
	assert_string_equal(r.result, "ng");
	assert_int_equal(fx_sessions(&f), 0);
	/* Held for the refusal delay, then closed. */
	assert_int_equal(TAILQ_FIRST(&f.t.handshakes)->phase, HS_REFUSED);
	assert_int_equal(fx_wait_eof(&f), 0);
	assert_true(TAILQ_EMPTY(&f.t.handshakes));
	fx_end(&f);
}

/* Server: an unknown token is refused with Go's text. */
static void
test_server_unknown_token(void **state)
{
	struct fx		 f;
	struct msg_challenge	 ch;
	struct msg_result	 r;

	fx_start(&f, ARGV("server", "127.0.0.1:1", "-pass", PASS));
	fx_server_hello(&f, &ch);
	fx_send_response(&f, &ch, PASS, "no-such-token", 0);
	fx_recv_result(&f, &r);
	assert_string_equal(r.result,
	    "ng: not found session -- %!d(string=no-such-token)");
	assert_int_equal(fx_sessions(&f), 0);
	fx_end(&f);
}

/*
 * Server: messages out of phase.  A packet where the lack pattern is due
 * ends the handshake; so does a challenge where a response is due (it is
 * refused: it is no response).
 */
static void
test_server_out_of_phase(void **state)
{
	struct fx		 f;
	struct msg_challenge	 ch;
	struct msg_result	 r;
	char			*json;
	size_t			 len;

	fx_start(&f, ARGV("server", "127.0.0.1:1", "-pass", PASS));
	fx_expect_lack(&f);
	fx_send(&f, "{\"Ver\": \"1.00\", \"Mode\": \"server\"}", 32);
	assert_int_equal(fx_wait_eof(&f), 0);
	assert_true(TAILQ_EMPTY(&f.t.handshakes));
	fx_end(&f);

	fx_start(&f, ARGV("server", "127.0.0.1:1", "-pass", PASS));
	fx_server_hello(&f, &ch);
	assert_non_null(json = msg_challenge_encode(&ch, &len));
	fx_send(&f, json, len);
	free(json);
	fx_recv_result(&f, &r);
	assert_string_equal(r.result, "ng");
	assert_int_equal(fx_sessions(&f), 0);
	fx_end(&f);
}

/* Server: a peer that stops talking is dropped after -handshakeTimeout. */
static void
test_server_timeout(void **state)
{
	struct fx f;

	fx_start(&f, ARGV("server", "127.0.0.1:1", "-pass", PASS,
	    "-handshakeTimeout", "1"));
	fx_expect_lack(&f);
	assert_false(TAILQ_EMPTY(&f.t.handshakes));
	assert_int_equal(fx_wait_eof(&f), 0);
	assert_true(TAILQ_EMPTY(&f.t.handshakes));
	fx_end(&f);
}

/* The server's half as a Go server sends it, mode as given. */
static void
fx_client_hello(struct fx *f, const char *mode, struct msg_challenge *ch)
{
	uint8_t	magic[32];
	char	err[ERR_LEN], *json;
	size_t	len;

	fx_send_raw(f, pkt_lack_pattern, PKT_LACK_LEN);
	fx_expect_lack(f);
	crypto_magic(PASS, f->o.encpass, magic);
	fx_send(f, magic, 32);
	memset(ch, 0, sizeof(*ch));
	snprintf(ch->ver, sizeof(ch->ver), "1.00");
	snprintf(ch->mode, sizeof(ch->mode), "%s", mode);
	assert_int_equal(crypto_nonce(ch->challenge, err), 0);
	assert_non_null(json = msg_challenge_encode(ch, &len));
	fx_send(f, json, len);
	free(json);
}

/* The peer answers the client's response with result r (its text). */
static void
fx_client_result(struct fx *f, const char *result, int64_t id,
    const char *token)
{
	struct msg_result	 r;
	char			*json;
	size_t			 len;

	memset(&r, 0, sizeof(r));
	snprintf(r.result, sizeof(r.result), "%s", result);
	r.session_id = id;
	snprintf(r.token, sizeof(r.token), "%s", token);
	r.fwds.null = 1;
	assert_non_null(json = msg_result_encode(&r, &len));
	fx_send(f, json, len);
	free(json);
}

/*
 * A second connection of f's client, as its redial makes one: the peer's
 * end of it replaces f->peer; the first one's stays open in *old.
 */
static void
fx_client_redial(struct fx *f, int *old)
{
	struct conn_client_params	 cp;
	struct conn			*c;
	uv_tcp_t			*tcp;
	char				 err[ERR_LEN];
	int				 fd;

	*old = f->peer;
	fd = fx_pair(f);
	assert_non_null(tcp = malloc(sizeof(*tcp)));
	uv_tcp_init(&f->loop, tcp);
	assert_int_equal(uv_tcp_open(tcp, fd), 0);
	memset(&cp, 0, sizeof(cp));
	assert_non_null(c = conn_new(&f->loop, tcp, CONN_RAW_CLIENT, &cp,
	    NULL, NULL, err));
	hs_client(&f->t, c);
	enc_free(f->enc);
	enc_free(f->dec);
	assert_non_null(f->enc = enc_new(f->o.encpass, f->o.enc_count, 0,
	    err));
	assert_non_null(f->dec = enc_new(f->o.encpass, f->o.enc_count, 1,
	    err));
	f->nin = 0;
}

/*
 * Client: a resume answered "ng: not found session" (a restarted server)
 * ends the client with status 3 at once; with -renew the session is
 * given up and a new one dialed after the first renewal's delay.
 */
static void
client_not_found(int renew)
{
	struct fx		 f;
	struct msg_challenge	 ch;
	struct msg_response	 m;
	uint8_t			 b[4096];
	char			 err[ERR_LEN];
	size_t			 n;
	int			 i, old;

	if (renew)
		fx_start(&f, ARGV("r-client", "127.0.0.1:1",
		    "127.0.0.1:40000,127.0.0.1:22", "-pass", PASS, "-renew"));
	else
		fx_start(&f, ARGV("r-client", "127.0.0.1:1",
		    "127.0.0.1:40000,127.0.0.1:22", "-pass", PASS));
	fx_client_hello(&f, "r-server", &ch);
	fx_recv(&f, b, sizeof(b));
	fx_client_result(&f, "ok", 7, "tok7");
	for (i = 0; i < 100 && f.t.csess == NULL; i++)
		uv_run(&f.loop, UV_RUN_NOWAIT), usleep(5000);
	assert_non_null(f.t.csess);

	fx_client_redial(&f, &old);
	fx_client_hello(&f, "r-server", &ch);
	n = fx_recv(&f, b, sizeof(b));
	if (msg_response_decode(b, n, &m, err) == -1)
		fail_msg("response: %s", err);
	assert_string_equal(m.token, "tok7");
	fx_client_result(&f, "ng: not found session -- %!d(string=tok7)", 0,
	    "");
	for (i = 0; i < 200 && f.t.csess != NULL && !f.t.stopping; i++)
		uv_run(&f.loop, UV_RUN_NOWAIT), usleep(5000);
	if (!renew) {
		assert_true(f.t.stopping);
		assert_int_equal(f.t.exit_code, TUN_EXIT_GONE);
	} else {
		assert_false(f.t.stopping);
		assert_null(f.t.csess);
		assert_int_equal(f.t.renewals, 1);
		assert_int_equal(f.t.renewed_from, 7);
		assert_true(uv_is_active((uv_handle_t *)&f.t.retry_timer));
		assert_true(uv_timer_get_due_in(&f.t.retry_timer) <=
		    TUN_RENEW_FIRST_MS);
		assert_true(uv_timer_get_due_in(&f.t.retry_timer) >
		    TUN_RENEW_FIRST_MS - 500);
	}
	close(old);
	fx_end(&f);
}

static void
test_client_not_found(void **state)
{
	client_not_found(0);
}

static void
test_client_not_found_renew(void **state)
{
	client_not_found(1);
}

/*
 * Client: the dispatcher's "unknown session" is the end of the session
 * only once it has lasted TUN_GONE_GRACE_MS; an upgrade in between (a
 * dispatcher that knows the session) starts the count over.  The
 * retries meanwhile are not scheduled past the grace's end.
 */
static void
test_client_unknown_grace(void **state)
{
	struct fx		 f;
	struct msg_challenge	 ch;
	uint8_t			 b[4096];
	uint64_t		 now;
	int			 i;

	fx_start(&f, ARGV("r-client", "127.0.0.1:1",
	    "127.0.0.1:40000,127.0.0.1:22", "-pass", PASS));
	fx_client_hello(&f, "r-server", &ch);
	fx_recv(&f, b, sizeof(b));
	fx_client_result(&f, "ok", 9, "tok9");
	for (i = 0; i < 100 && f.t.csess == NULL; i++)
		uv_run(&f.loop, UV_RUN_NOWAIT), usleep(5000);
	assert_non_null(f.t.csess);

	uv_update_time(&f.loop);
	now = uv_now(&f.loop);
	client_session_unknown(&f.t, "HTTP/1.1 404 Not Found");
	assert_false(f.t.stopping);
	assert_int_equal(f.t.unknown_since, now);
	/* An upgrade went through: the count starts over. */
	client_upgraded(&f.t);
	assert_int_equal(f.t.unknown_since, 0);
	client_session_unknown(&f.t, "HTTP/1.1 404 Not Found");
	assert_false(f.t.stopping);
	/* A retry is not put off past the end of the grace. */
	f.t.unknown_since = now - (TUN_GONE_GRACE_MS - 200);
	f.t.attempts = 4;
	client_connection_lost(&f.t, "404");
	assert_true(uv_timer_get_due_in(&f.t.retry_timer) <= 200);
	/* Lasted the grace: gone. */
	f.t.unknown_since = now - TUN_GONE_GRACE_MS;
	client_session_unknown(&f.t, "HTTP/1.1 404 Not Found");
	assert_true(f.t.stopping);
	assert_int_equal(f.t.exit_code, TUN_EXIT_GONE);
	fx_end(&f);
}

/* Client: lack -> magic -> challenge -> response -> result "ok". */
static void
test_client_new(void **state)
{
	struct fx		 f;
	struct msg_challenge	 ch;
	struct msg_response	 m;
	struct msg_result	 r;
	uint8_t			 b[4096];
	char			 err[ERR_LEN], expect[89], *json;
	size_t			 n, len;

	fx_start(&f, ARGV("r-client", "127.0.0.1:1", "127.0.0.1:40000,127.0.0.1:22", "-pass", PASS));
	fx_client_hello(&f, "r-server", &ch);
	n = fx_recv(&f, b, sizeof(b));
	if (msg_response_decode(b, n, &m, err) == -1)
		fail_msg("response: %s", err);
	crypto_auth_response(ch.challenge, PASS, m.hint, expect);
	assert_string_equal(m.response, expect);
	assert_string_equal(m.token, "");
	assert_true(m.fwds.null);	/* an r-client brings none */
	memset(&r, 0, sizeof(r));
	snprintf(r.result, sizeof(r.result), "ok");
	r.session_id = 7;
	snprintf(r.token, sizeof(r.token), "tok7");
	assert_non_null(json = msg_result_encode(&r, &len));
	fx_send(&f, json, len);
	free(json);
	for (n = 0; n < 100 && f.t.csess == NULL; n++)
		uv_run(&f.loop, UV_RUN_NOWAIT), usleep(5000);
	assert_non_null(f.t.csess);
	assert_int_equal(f.t.csess->id, 7);
	assert_string_equal(f.t.csess->token, "tok7");
	assert_false(f.t.stopping);
	fx_end(&f);
}

/* Client: a forward server ends a reverse client (no retry). */
static void
test_client_mode_mismatch(void **state)
{
	struct fx		 f;
	struct msg_challenge	 ch;
	int			 i;

	fx_start(&f, ARGV("r-client", "127.0.0.1:1", "127.0.0.1:40000,127.0.0.1:22", "-pass", PASS));
	fx_client_hello(&f, "server", &ch);
	for (i = 0; i < 200 && !f.t.stopping; i++)
		uv_run(&f.loop, UV_RUN_NOWAIT), usleep(5000);
	assert_true(f.t.stopping);
	assert_int_equal(f.t.exit_code, 1);
	assert_null(f.t.csess);
	fx_end(&f);
}

/* Client: a magic of other secrets ends a new tunnel. */
static void
test_client_bad_magic(void **state)
{
	struct fx	f;
	uint8_t		magic[32];
	int		i;

	fx_start(&f, ARGV("r-client", "127.0.0.1:1", "127.0.0.1:40000,127.0.0.1:22", "-pass", PASS));
	fx_send_raw(&f, pkt_lack_pattern, PKT_LACK_LEN);
	fx_expect_lack(&f);
	crypto_magic("other", f.o.encpass, magic);
	fx_send(&f, magic, 32);
	for (i = 0; i < 200 && !f.t.stopping; i++)
		uv_run(&f.loop, UV_RUN_NOWAIT), usleep(5000);
	assert_true(f.t.stopping);
	assert_int_equal(f.t.exit_code, 1);
	fx_end(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_mode_mismatch_rule),
		cmocka_unit_test(test_server_new_and_resume),
		cmocka_unit_test(test_server_bad_response),
		cmocka_unit_test(test_server_unknown_token),
		cmocka_unit_test(test_server_out_of_phase),
		cmocka_unit_test(test_server_timeout),
		cmocka_unit_test(test_client_new),
		cmocka_unit_test(test_client_mode_mismatch),
		cmocka_unit_test(test_client_not_found),
		cmocka_unit_test(test_client_not_found_renew),
		cmocka_unit_test(test_client_unknown_grace),
		cmocka_unit_test(test_client_bad_magic),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
