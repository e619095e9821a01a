/*
 * libFuzzer target: the public port as a client reaches it.  Each input is
 * one connection's bytes, fed to a real libmicrohttpd daemon of the
 * dispatcher (without a listening socket) through a socketpair; the
 * request goes through admission, the Lua policy and the upgrade checks.
 * The policy never starts a worker, and refusals are answered at once.
 */

#include <sys/socket.h>

#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cmdline.h"
#include "disp.h"
#include "err.h"

static struct disp	*fz;
static char		 fzdir[64];

static const char canaccept[] =
    "function canAccept(req)\n"
    "  if req.headers['x-deny'] then return false, 451, req.headers['x-deny'] end\n"
    "  if req.query.loop then while true do end end\n"
    "  return true\n"
    "end\n";
static const char handler[] =
    "function getTunnelInfo(req)\n"
    "  return nil, 'no tunnels here: ' .. req.session\n"
    "end\n";

static void
fz_write(const char *name, const char *text)
{
	char	 path[128];
	FILE	*f;

	snprintf(path, sizeof(path), "%s/%s", fzdir, name);
	if ((f = fopen(path, "w")) == NULL)
		abort();
	fputs(text, f);
	fclose(f);
}

static void
fz_fini(void)
{
	char path[128];

	front_stop(fz);
	policy_unref(fz->policy);
	snprintf(path, sizeof(path), "%s/h.lua", fzdir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/c.lua", fzdir);
	unlink(path);
	rmdir(fzdir);
	free(fz);
}

static void
fz_init(void)
{
	char err[ERR_LEN], h[128], c[128];

	/* As the dispatcher does: OpenSSL set up before any thread uses it. */
	OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL);
	snprintf(fzdir, sizeof(fzdir), "/tmp/fuzz-front-XXXXXX");
	if (mkdtemp(fzdir) == NULL || (fz = calloc(1, sizeof(*fz))) == NULL)
		abort();
	fz_write("h.lua", handler);
	fz_write("c.lua", canaccept);
	snprintf(h, sizeof(h), "%s/h.lua", fzdir);
	snprintf(c, sizeof(c), "%s/c.lua", fzdir);
	/* The dispatcher's defaults, but for what a fuzzer needs: one
	 * address sending everything, no refusal delay, short timeouts. */
	disp_defaults(fz, NULL);
	snprintf(fz->state_dir, sizeof(fz->state_dir), "%s", fzdir);
	fz->max_session = 10;
	fz->per_ip = 1000;
	fz->max_pending = 1000;
	fz->request_timeout = 2;
	fz->refuse_delay_ms = 0;
	fz->max_pending_workers = 10;
	fz->spawn_rate = 1000;
	fz->spawn_burst = 1000;
	fz->handshake_timeout = 2;
	fz->head_timeout = 2;
	fz->head_per_ip = 1000;
	pthread_mutex_init(&fz->lock, NULL);
	pthread_mutex_init(&fz->zlock, NULL);
	fz->zygote_req = fz->zygote_exit = -1;
	LIST_INIT(&fz->workers);
	TAILQ_INIT(&fz->delayed);
	if (policy_load(h, c, NULL, &fz->policy, err) == -1 ||
	    front_start_unlisted(fz, err) == -1) {
		fprintf(stderr, "fuzz_front: %s\n", err);
		abort();
	}
	atexit(fz_fini);
}

static void	fz_one(const uint8_t *, size_t);

/*
 * OpenSSL keeps a per-thread state, allocated the first time the daemon's
 * thread hashes a Sec-WebSocket-Key: let that happen before the inputs, or
 * every input that first reaches it would look like a leak.
 */
static void
fz_warm_up(void)
{
	static const char req[] = "GET /?session=w HTTP/1.1\r\nHost: a\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n";

	fz_one((const uint8_t *)req, sizeof(req) - 1);
}

static void
fz_one(const uint8_t *data, size_t size)
{
	struct sockaddr_in	sin;
	struct pollfd		pfd;
	char			buf[4096];
	int			sv[2];
	ssize_t			n;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		return;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(40000);
	sin.sin_addr.s_addr = htonl(0x7f000001);
	if (front_add_connection(fz, sv[1], (struct sockaddr *)&sin,
	    sizeof(sin)) == -1) {
		close(sv[0]);
		return;
	}
	if (size > 0 && write(sv[0], data, size) < 0)
		goto done;
	shutdown(sv[0], SHUT_WR);
	/* Drain the answer; the daemon's timeout bounds a stuck request. */
	pfd.fd = sv[0];
	pfd.events = POLLIN;
	while (poll(&pfd, 1, 3000) > 0 &&
	    (n = read(sv[0], buf, sizeof(buf))) > 0)
		;
done:
	close(sv[0]);
}

/* Outside any input, so that what lives for the whole run is no leak. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fz_init();
	fz_warm_up();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_one(data, size);
	return 0;
}
