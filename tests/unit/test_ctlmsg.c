/*
 * Unit tests for common/ctlmsg.c, the dispatcher <-> worker contract:
 * every message survives encode/decode (and the transport), decoders
 * refuse what breaks the bounds, and each receiver's dispatch table
 * refuses types it does not know or does not permit in its state.
 */

#include <sys/socket.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "crypto.h"
#include "ctl.h"
#include "ctlmsg.h"
#include "disp.h"
#include "err.h"
#include "tunneld.h"

static const int all_types[] = {
	CTL_CONFIG, CTL_READY, CTL_CONN, CTL_CONN_OK, CTL_STATS_REQ,
	CTL_STATS, CTL_STOP, CTL_END, CTL_SPAWN, CTL_SPAWNED, CTL_EXITED,
	CTL_TAKEOVER, CTL_TAKEOVER_DONE, CTL_RELEASE, CTL_RELEASED,
	CTL_LISTENER, CTL_AUTHED, CTL_KILL, CTL_JOIN, CTL_JOINED
};
#define NTYPES	(sizeof(all_types) / sizeof(all_types[0]))

static struct ctlmsg	a, b;
static uint8_t		extra[300];

/* A message of type with every field set away from its default. */
static void
fill(struct ctlmsg *m, int type)
{
	size_t i;

	assert_int_equal(ctlmsg_init(m, type), 0);
	switch (type) {
	case CTL_CONFIG:
		strcpy(m->u.config.mode, "r-wsserver");
		strcpy(m->u.config.pass, "p\"a\\s\ns\x01");
		strcpy(m->u.config.encpass, "é-enc");
		m->u.config.enc_count = 7;
		for (i = 0; i < CTLMSG_MAX_FWDS; i++)
			snprintf(m->u.config.forwards[i],
			    sizeof(m->u.config.forwards[i]),
			    "r,127.0.0.1:%zu,127.0.0.1:%zu", 1000 + i, 2000 + i);
		m->u.config.nfwd = CTLMSG_MAX_FWDS;
		m->u.config.oneshot = 1;
		m->u.config.idle_timeout = 0;
		m->u.config.keepalive = 3600;
		strcpy(m->u.config.tenant, "tenant");
		strcpy(m->u.config.id, "id");
		memset(m->u.config.session, 's', CTLMSG_SESSION_LEN - 1);
		strcpy(m->u.config.sock, "0123.sock");
		m->u.config.verbose = 1;
		m->u.config.handshake_timeout = 1;
		m->u.config.limits.max_streams = CTLMSG_STREAMS_MAX;
		m->u.config.limits.rate_up = CTLMSG_RATE_MAX;
		m->u.config.limits.rate_down = 10 * 1000 * 1000;
		m->u.config.limits.max_bytes = CTLMSG_BYTES_MAX;
		m->u.config.limits.max_connect_rate = CTLMSG_CONNRATE_MAX;
		m->u.config.limits.session_timeout = CTLMSG_SESSTO_MAX;
		for (i = 0; i < CTLMSG_MAX_DESTS; i++)
			snprintf(m->u.config.dests[i],
			    sizeof(m->u.config.dests[i]), "%s*.example:%zu",
			    i % 2 ? "!" : "", 1 + i);
		m->u.config.ndest = CTLMSG_MAX_DESTS;
		break;
	case CTL_READY:
		m->u.ready.pid = 42;
		strcpy(m->u.ready.sock, "/x.sock");
		break;
	case CTL_CONN:
		for (i = 0; i < sizeof(extra); i++)
			extra[i] = (uint8_t)(i * 7);
		m->u.conn.extra = malloc(sizeof(extra));
		memcpy(m->u.conn.extra, extra, sizeof(extra));
		m->u.conn.nextra = sizeof(extra) - 1;	/* one '=' */
		m->u.conn.http = 1;
		strcpy(m->u.conn.remote, "[2001:db8::1]");
		break;
	case CTL_STATS:
		m->u.stats.pid = 9;
		strcpy(m->u.stats.tenant, "t");
		strcpy(m->u.stats.id, "i");
		strcpy(m->u.stats.session, "s");
		strcpy(m->u.stats.mode, "server");
		m->u.stats.started = 1700000000;
		m->u.stats.bytes_in = 1LL << 40;
		m->u.stats.bytes_out = 5;
		m->u.stats.streams = 3;
		m->u.stats.reconnects = 2;
		m->u.stats.sessions = 1;
		m->u.stats.connected = 1;
		m->u.stats.authed = 0;
		m->u.stats.limits.max_streams = 4;
		m->u.stats.limits.rate_up = 1;
		m->u.stats.limits.rate_down = 2;
		m->u.stats.limits.max_bytes = 3;
		m->u.stats.limits.max_connect_rate = 5;
		m->u.stats.limits.session_timeout = CTLMSG_SESSTO_MIN;
		m->u.stats.rate_up_now = 1000;
		m->u.stats.rate_down_now = 1LL << 33;
		m->u.stats.refused_streams = 17;
		m->u.stats.payload = 1LL << 50;
		break;
	case CTL_END:
		strcpy(m->u.end.text, "no traffic");
		break;
	case CTL_SPAWN:
		m->u.spawn.uid = 4294967294LL;	/* the largest uid carried */
		m->u.spawn.gid = 70001;
		m->u.spawn.max_files = CTLMSG_NOFILE_MAX;
		m->u.spawn.sandbox = 0;
		m->u.spawn.nproc = 1;
		break;
	case CTL_SPAWNED:
		m->u.spawned.pid = -1;
		break;
	case CTL_KILL:
		m->u.kill.pid = 4242;
		m->u.kill.signal = 15;
		break;
	case CTL_EXITED:
		m->u.exited.pid = 77;
		m->u.exited.code = -1;
		m->u.exited.signal = 9;
		break;
	case CTL_TAKEOVER:
	case CTL_RELEASE:
		m->u.takeover.n = 2;
		strcpy(m->u.takeover.src[0], "127.0.0.1:1");
		strcpy(m->u.takeover.src[1], "[::1]:2");
		break;
	case CTL_TAKEOVER_DONE:
		strcpy(m->u.takeover_done.text, "busy");
		break;
	case CTL_RELEASED:
		m->u.released.ended = 1;
		strcpy(m->u.released.busy, "why");
		m->u.released.listeners = 2;
		break;
	case CTL_LISTENER:
		strcpy(m->u.listener.src, "0.0.0.0:80");
		break;
	case CTL_JOIN:
		strcpy(m->u.join.name, "_abcdefghijklmnopqrstuvwxyz-0123");
		m->u.join.ref = INT64_MAX;
		break;
	case CTL_JOINED:
		m->u.joined.ref = 1;
		strcpy(m->u.joined.error, "tenant 'x' offers no join point");
		break;
	}
}

static void
same(const struct ctlmsg *x, const struct ctlmsg *y)
{
	assert_int_equal(x->type, y->type);
	if (x->type == CTL_CONN) {
		assert_int_equal(x->u.conn.nextra, y->u.conn.nextra);
		assert_memory_equal(x->u.conn.extra, y->u.conn.extra,
		    x->u.conn.nextra);
		assert_int_equal(x->u.conn.http, y->u.conn.http);
		assert_string_equal(x->u.conn.remote, y->u.conn.remote);
	} else
		assert_memory_equal(&x->u, &y->u, sizeof(x->u));
}

static void
test_round_trip(void **state)
{
	char	*buf = malloc(CTL_MSG_MAX), err[ERR_LEN];
	size_t	 i;
	int	 n;

	for (i = 0; i < NTYPES; i++) {
		fill(&a, all_types[i]);
		n = ctlmsg_encode(&a, buf, CTL_MSG_MAX, err);
		assert_true(n > 0);
		assert_int_equal(ctlmsg_decode(buf, (size_t)n, &b, err), 0);
		same(&a, &b);
		ctlmsg_clear(&a);
		ctlmsg_clear(&b);
	}
	free(buf);
}

/* Through the transport, with a descriptor attached. */
static void
test_send_recv(void **state)
{
	char	err[ERR_LEN];
	size_t	i;
	int	sv[2], fd;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	for (i = 0; i < NTYPES; i++) {
		fill(&a, all_types[i]);
		assert_int_equal(ctlmsg_send(sv[0], &a, sv[0], 1000, err), 0);
		assert_int_equal(ctlmsg_recv(sv[1], &b, &fd, err), 1);
		assert_true(fd >= 0);
		close(fd);
		same(&a, &b);
		ctlmsg_clear(&a);
		ctlmsg_clear(&b);
	}
	close(sv[0]);
	assert_int_equal(ctlmsg_recv(sv[1], &b, &fd, err), 0);
	close(sv[1]);
}

/* Absent fields take the contract's defaults. */
static void
test_defaults(void **state)
{
	static const char cfg[] = "{\"type\":2,\"mode\":\"server\","
	    "\"pass\":\"p\",\"encPass\":\"e\",\"sock\":\"s\"}";
	char err[ERR_LEN];

	assert_int_equal(ctlmsg_decode(cfg, strlen(cfg), &b, err), 0);
	assert_int_equal(b.u.config.idle_timeout, CTLMSG_IDLE_DEF);
	assert_int_equal(b.u.config.keepalive, CTLMSG_KEEPALIVE_DEF);
	assert_int_equal(b.u.config.handshake_timeout, CTLMSG_HS_DEF);
	assert_int_equal(b.u.config.enc_count, CTLMSG_ENC_DEF);
	assert_int_equal(b.u.config.oneshot, 0);
	assert_int_equal(b.u.config.nfwd, 0);
	/* No limit unless the policy set one; the detached wait as before. */
	assert_int_equal(b.u.config.limits.max_streams, 0);
	assert_int_equal(b.u.config.limits.rate_up, 0);
	assert_int_equal(b.u.config.limits.rate_down, 0);
	assert_int_equal(b.u.config.limits.max_bytes, 0);
	assert_int_equal(b.u.config.limits.max_connect_rate, 0);
	assert_int_equal(b.u.config.limits.session_timeout, CTLMSG_SESSTO_DEF);
	/* No destination patterns: dynamic forwards are refused. */
	assert_int_equal(b.u.config.ndest, 0);
	ctlmsg_clear(&b);
	assert_int_equal(ctlmsg_decode("{\"type\":9}", 10, &b, err), 0);
	assert_string_equal(b.u.end.text, "ended");
	assert_int_equal(ctlmsg_decode("{\"type\":7,\"pid\":3}", 18, &b,
	    err), 0);
	assert_int_equal(b.u.stats.authed, 1);	/* older workers: tunnels */
	/* A spawn without a body (an older dispatcher): as today, confined. */
	assert_int_equal(ctlmsg_decode("{\"type\":10}", 11, &b, err), 0);
	assert_int_equal(b.u.spawn.uid, -1);
	assert_int_equal(b.u.spawn.gid, -1);
	assert_int_equal(b.u.spawn.max_files, CTLMSG_NOFILE_DEF);
	assert_int_equal(b.u.spawn.sandbox, 1);
	assert_int_equal(b.u.spawn.nproc, 0);
	ctlmsg_clear(&b);
	/* A kill without a signal: SIGKILL. */
	assert_int_equal(ctlmsg_decode("{\"type\":22,\"pid\":7}", 19, &b,
	    err), 0);
	assert_int_equal(b.u.kill.pid, 7);
	assert_int_equal(b.u.kill.signal, 9);
}

static void
refused(const char *text, const char *why)
{
	char err[ERR_LEN] = "";

	if (ctlmsg_decode(text, strlen(text), &b, err) != -1)
		fail_msg("accepted: %s", text);
	if (strstr(err, why) == NULL)
		fail_msg("%s: '%s' does not say '%s'", text, err, why);
}

#define CFG	"{\"type\":2,\"mode\":\"server\",\"pass\":\"p\"," \
		"\"encPass\":\"e\",\"sock\":\"s\""

static void
test_refusals(void **state)
{
	char big[600], *list;
	size_t i, len;

	/* not a message */
	refused("", "malformed");
	refused("[]", "not an object");
	refused("{}", "no type");
	refused("{\"type\":1}", "unknown type");
	refused("{\"type\":\"2\"}", "unknown type");
	refused("{\"type\":9,\"type\":9}", "malformed");
	/* a required field missing */
	refused("{\"type\":2,\"pass\":\"p\",\"encPass\":\"e\",\"sock\":\"s\"}",
	    "mode is required");
	refused("{\"type\":2,\"mode\":\"server\",\"encPass\":\"e\","
	    "\"sock\":\"s\"}", "pass is required");
	refused("{\"type\":2,\"mode\":\"server\",\"pass\":\"p\","
	    "\"encPass\":\"e\",\"sock\":\"\"}", "sock is required");
	refused("{\"type\":7}", "pid is required");
	refused("{\"type\":11}", "pid is required");
	refused("{\"type\":13}", "pid is required");
	refused("{\"type\":19}", "src is required");
	refused("{\"type\":22}", "pid is required");
	refused("{\"type\":22,\"pid\":1}", "pid 1 is not in");
	refused("{\"type\":22,\"pid\":0}", "pid 0 is not in");
	refused("{\"type\":22,\"pid\":-1}", "pid -1 is not in");
	refused("{\"type\":22,\"pid\":5,\"signal\":19}", "only SIGKILL");
	refused("{\"type\":22,\"pid\":5,\"signal\":0}", "signal 0 is not");
	/* out of range */
	refused(CFG ",\"idleTimeout\":-1}", "idleTimeout -1 is not in");
	refused(CFG ",\"idleTimeout\":2592001}", "idleTimeout");
	refused(CFG ",\"keepalive\":1}", "keepalive 1 is not in");
	refused(CFG ",\"handshakeTimeout\":0}", "handshakeTimeout");
	refused(CFG ",\"encCount\":-2}", "encCount");
	refused(CFG ",\"maxStreams\":-1}", "maxStreams -1 is not in");
	refused(CFG ",\"maxStreams\":8193}", "maxStreams");
	refused(CFG ",\"rateUp\":-5}", "rateUp");
	refused(CFG ",\"rateDown\":1099511627777}", "rateDown");
	refused(CFG ",\"maxBytes\":-1}", "maxBytes");
	refused(CFG ",\"maxConnectRate\":100001}", "maxConnectRate");
	refused(CFG ",\"sessionTimeout\":0}", "sessionTimeout 0 is not in");
	refused(CFG ",\"rateUp\":1.5}", "rateUp must be an integer");
	refused("{\"type\":7,\"pid\":3,\"rateUpNow\":-1}", "rateUpNow");
	refused("{\"type\":13,\"pid\":5,\"signal\":300}", "signal");
	refused("{\"type\":3,\"pid\":0}", "pid 0 is not in");
	refused("{\"type\":10,\"uid\":-2}", "uid -2 is not in");
	refused("{\"type\":10,\"uid\":4294967295}", "uid");
	refused("{\"type\":10,\"gid\":4294967295}", "gid");
	refused("{\"type\":10,\"maxFiles\":63}", "maxFiles");
	refused("{\"type\":10,\"maxFiles\":1048577}", "maxFiles");
	refused("{\"type\":10,\"sandbox\":0}", "must be true or false");
	/* wrong type */
	refused(CFG ",\"idleTimeout\":\"600\"}", "must be an integer");
	refused(CFG ",\"verbose\":1}", "must be true or false");
	refused(CFG ",\"forwards\":\"t,1,2\"}", "forwards must be a list");
	refused(CFG ",\"forwards\":[1]}", "forwards[0]");
	refused(CFG ",\"destinations\":\"*:*\"}", "destinations must be a "
	    "list");
	refused(CFG ",\"destinations\":[\"*:*\",2]}", "destinations[1]");
	refused("{\"type\":2,\"mode\":1,\"pass\":\"p\",\"encPass\":\"e\","
	    "\"sock\":\"s\"}", "mode must be a string");
	refused(CFG ",\"connectMode\":\"Sometimes\"}", "connectMode");
	refused("{\"type\":4,\"extra\":\"abc\"}", "not base64");
	refused("{\"type\":4,\"extra\":\"a=bc\"}", "not base64");
	refused("{\"type\":4,\"extra\":7}", "extra must be a string");
	refused("{\"type\":4,\"http\":1}", "http must be true or false");
	refused("{\"type\":4,\"http\":true,\"remote\":\"0123456789012345"
	    "6789012345678901234567890123456789012345678901234\"}",
	    "remote is too long");
	/* oversize strings and lists */
	memset(big, 'x', sizeof(big));
	snprintf(big, sizeof(big), "{\"type\":19,\"src\":\"%0*d\"}",
	    CTLMSG_SRC_LEN, 0);
	refused(big, "src is too long");
	refused(CFG ",\"tenant\":\"a\\u0000b\"}", "malformed");
	len = 64 + (CTLMSG_MAX_SRCS + 1) * 8;
	list = malloc(len);
	i = (size_t)snprintf(list, len, "{\"type\":16,\"srcs\":[");
	for (int k = 0; k <= CTLMSG_MAX_SRCS; k++)
		i += (size_t)snprintf(list + i, len - i, "%s\"a:%d\"",
		    k ? "," : "", k);
	snprintf(list + i, len - i, "]}");
	refused(list, "srcs must be a list of at most");
	free(list);
	/* A join names a point by a name a file can have, nothing more. */
	refused("{\"type\":24,\"ref\":1}", "name is required");
	refused("{\"type\":24,\"name\":\"web\"}", "ref is required");
	refused("{\"type\":24,\"name\":\"web\",\"ref\":0}", "ref 0");
	refused("{\"type\":24,\"name\":\"..\",\"ref\":1}",
	    "not a join point's");
	refused("{\"type\":24,\"name\":\"a/b\",\"ref\":1}",
	    "not a join point's");
	refused("{\"type\":24,\"name\":\"\",\"ref\":1}",
	    "not a join point's");
	refused("{\"type\":24,\"name\":\"1a\",\"ref\":1}",
	    "not a join point's");
	refused("{\"type\":24,\"name\":\"abcdefghijklmnopqrstuvwxyz0123456\","
	    "\"ref\":1}", "name is too long");
	refused("{\"type\":25}", "ref is required");
	refused("{\"type\":25,\"ref\":2,\"error\":\"\"}", "must say why");
}

/* Encoding refuses what it cannot carry. */
static void
test_encode_limits(void **state)
{
	char	buf[64], big[4096], err[ERR_LEN];

	fill(&a, CTL_STATS);
	assert_int_equal(ctlmsg_encode(&a, buf, sizeof(buf), err), -1);
	ctlmsg_clear(&a);
	ctlmsg_init(&a, CTL_CONN);
	a.u.conn.nextra = CTLMSG_EXTRA_MAX + 1;
	assert_int_equal(ctlmsg_encode(&a, buf, sizeof(buf), err), -1);
	a.type = 99;
	assert_int_equal(ctlmsg_encode(&a, buf, sizeof(buf), err), -1);
	/* A limit out of its bounds is not sent. */
	ctlmsg_init(&a, CTL_CONFIG);
	a.u.config.limits.rate_up = -1;
	assert_int_equal(ctlmsg_encode(&a, big, sizeof(big), err), -1);
	ctlmsg_init(&a, CTL_CONFIG);
	a.u.config.limits.session_timeout = 0;
	assert_int_equal(ctlmsg_encode(&a, big, sizeof(big), err), -1);
	assert_int_equal(ctlmsg_init(&a, 99), -1);
	ctlmsg_init(&a, CTL_CONN);
}

/* The biggest messages within the bounds fit the transport. */
static void
test_maximal_fit(void **state)
{
	char	*buf = malloc(CTL_MSG_MAX), err[ERR_LEN];
	size_t	 i;

	fill(&a, CTL_CONFIG);
	memset(a.u.config.pass, '\x01', CTLMSG_SECRET_LEN - 1);	/* \u0001 */
	memset(a.u.config.encpass, '"', CTLMSG_SECRET_LEN - 1);
	for (i = 0; i < CTLMSG_MAX_FWDS; i++)
		memset(a.u.config.forwards[i], 'f', CTLMSG_FWD_LEN - 1);
	for (i = 0; i < CTLMSG_MAX_DESTS; i++)
		memset(a.u.config.dests[i], 'd', CTLMSG_DEST_LEN - 1);
	/* forwards alone: 64 * 511 bytes, destinations 64 * 271; with the
	 * rest, under 64 KiB */
	assert_true(ctlmsg_encode(&a, buf, CTL_MSG_MAX, err) > 0);
	ctlmsg_clear(&a);
	ctlmsg_init(&a, CTL_CONN);
	a.u.conn.extra = calloc(1, CTLMSG_EXTRA_MAX);
	a.u.conn.nextra = CTLMSG_EXTRA_MAX;
	assert_true(ctlmsg_encode(&a, buf, CTL_MSG_MAX, err) > 0);
	ctlmsg_clear(&a);
	free(buf);
}

/* A table's refusal: the type unknown to it, or not in this state. */
static void
expect_refused(const struct ctlmsg_rule *tab, size_t n, unsigned state,
    int type)
{
	char	err[ERR_LEN] = "";
	int	sv[2];

	ctlmsg_init(&a, type);
	/* A descriptor attached is closed on refusal. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	assert_int_equal(ctlmsg_dispatch(tab, n, state, NULL, &a, sv[0], err),
	    CTLMSG_REFUSED);
	assert_true(strstr(err, ctlmsg_name(type)) != NULL);
	assert_int_equal(send(sv[1], "x", 1, MSG_NOSIGNAL), -1);
	close(sv[1]);
}

/* Every type but those of the table is refused in every state. */
static void
refuses_others(const struct ctlmsg_rule *tab, size_t n, unsigned states)
{
	size_t	i, j;
	int	known;

	for (i = 0; i < NTYPES; i++) {
		for (known = 0, j = 0; j < n; j++)
			known |= tab[j].type == all_types[i];
		if (!known)
			expect_refused(tab, n, states, all_types[i]);
	}
	expect_refused(tab, n, states, 1000);
}

static void
test_worker_table(void **state)
{
	refuses_others(worker_rules, worker_nrules,
	    WS_IDLE | WS_READY | WS_TAKEOVER);
	/* A pooled worker takes only its CONFIG, and that only once. */
	expect_refused(worker_rules, worker_nrules, WS_IDLE, CTL_CONN);
	expect_refused(worker_rules, worker_nrules, WS_IDLE, CTL_STATS_REQ);
	expect_refused(worker_rules, worker_nrules, WS_IDLE, CTL_STOP);
	expect_refused(worker_rules, worker_nrules, WS_IDLE, CTL_RELEASE);
	expect_refused(worker_rules, worker_nrules, WS_READY, CTL_CONFIG);
	/* A takeover's wait takes listeners and its answer, no more. */
	expect_refused(worker_rules, worker_nrules, WS_TAKEOVER, CTL_CONFIG);
	expect_refused(worker_rules, worker_nrules, WS_TAKEOVER, CTL_STOP);
	expect_refused(worker_rules, worker_nrules, WS_TAKEOVER, CTL_CONN);
	/* The replies a worker sends are never taken from the dispatcher. */
	expect_refused(worker_rules, worker_nrules, WS_READY, CTL_STATS);
	expect_refused(worker_rules, worker_nrules, WS_READY, CTL_AUTHED);
	expect_refused(worker_rules, worker_nrules, WS_READY, CTL_JOIN);
	/* A join's answer comes to a configured worker only. */
	expect_refused(worker_rules, worker_nrules, WS_IDLE, CTL_JOINED);
}

static void
test_dispatcher_table(void **state)
{
	refuses_others(wmon_rules, wmon_nrules, WMON_PENDING | WMON_AUTHED);
	/* A tunnel says CTL_AUTHED once, before it is one. */
	expect_refused(wmon_rules, wmon_nrules, WMON_AUTHED, CTL_AUTHED);
	expect_refused(wmon_rules, wmon_nrules, WMON_AUTHED, CTL_CONFIG);
	expect_refused(wmon_rules, wmon_nrules, WMON_PENDING, CTL_STATS);
	expect_refused(wmon_rules, wmon_nrules, WMON_PENDING, CTL_LISTENER);
	/* Streams, and so joins, come after a client authenticated. */
	expect_refused(wmon_rules, wmon_nrules, WMON_PENDING, CTL_JOIN);
	expect_refused(wmon_rules, wmon_nrules, WMON_AUTHED, CTL_JOINED);
}

static void
test_zygote_tables(void **state)
{
	refuses_others(zygote_rules, zygote_nrules, ZS_RUN);
	expect_refused(zygote_rules, zygote_nrules, 0, CTL_SPAWN);
	expect_refused(zygote_rules, zygote_nrules, 0, CTL_KILL);
	/* Only the zygote takes a kill, never a worker. */
	expect_refused(worker_rules, worker_nrules, WS_READY, CTL_KILL);
	refuses_others(wmon_zygote_rules, wmon_zygote_nrules, WMON_RUN);
	expect_refused(wmon_zygote_rules, wmon_zygote_nrules, WMON_RUN,
	    CTL_SPAWNED);
	expect_refused(wmon_zygote_rules, wmon_zygote_nrules, 0, CTL_EXITED);
}

static void
test_unb64(void **state)
{
	uint8_t	out[16];
	size_t	n;

	assert_int_equal(crypto_unb64("", 0, out, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(crypto_unb64("YQ==", 4, out, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0], 'a');
	assert_int_equal(crypto_unb64("YWI=", 4, out, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(crypto_unb64("YWJj", 4, out, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(crypto_unb64("YWJ", 3, out, &n), -1);
	assert_int_equal(crypto_unb64("Y===", 4, out, &n), -1);
	assert_int_equal(crypto_unb64("Y=Jj", 4, out, &n), -1);
	assert_int_equal(crypto_unb64("YW J", 4, out, &n), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_send_recv),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_encode_limits),
		cmocka_unit_test(test_maximal_fit),
		cmocka_unit_test(test_worker_table),
		cmocka_unit_test(test_dispatcher_table),
		cmocka_unit_test(test_zygote_tables),
		cmocka_unit_test(test_unb64),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
