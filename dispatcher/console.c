/*
 * The admin console: routing and the checks every request passes.  It
 * listens on loopback by default, which a web page in the operator's
 * browser reaches too: so every request needs a Host that names the
 * console itself (DNS rebinding) and no cross-site Origin or
 * Sec-Fetch-Site; everything but the page's own files needs the bearer
 * token (main.c always has one); a POST must say it carries JSON (a form
 * or text/plain POST is sent without a preflight).  The answers are in
 * console_api.c, console_metrics.c, console_events.c and console_page.c.
 */

#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <netdb.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "console.h"
#include "crypto.h"
#include "err.h"
#include "log.h"

void
console_headers(struct MHD_Response *resp)
{
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
}

enum MHD_Result
console_send(struct MHD_Connection *c, int status, const char *type,
    char *body)
{
	struct MHD_Response	*resp;
	enum MHD_Result		 rc;

	resp = MHD_create_response_from_buffer(strlen(body), body,
	    MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", type);
	console_headers(resp);
	if (status == 401)
		MHD_add_response_header(resp, "WWW-Authenticate",
		    "Bearer realm=\"tunneld console\"");
	rc = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

enum MHD_Result
console_json(struct MHD_Connection *c, int status, json_t *v)
{
	char *s = v != NULL ? json_dumps(v, JSON_COMPACT) : NULL;

	json_decref(v);
	if (s == NULL)
		return MHD_NO;
	return console_send(c, status, "application/json", s);
}

enum MHD_Result
console_error(struct MHD_Connection *c, int status, const char *msg)
{
	char text[1024];

	/* A Lua error may quote the script's bytes: JSON wants UTF-8. */
	console_printable(text, sizeof(text), msg);
	return console_json(c, status, json_pack("{ss}", "error", text));
}

void
console_printable(char *out, size_t cap, const char *s)
{
	size_t i;

	if (cap == 0)
		return;
	for (i = 0; s != NULL && s[i] != '\0' && i + 1 < cap; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f) || s[i] == '\n' ||
		    s[i] == '\t' ? s[i] : '?';
	out[i] = '\0';
}

/*
 * The bearer token, compared in constant time: both sides are hashed
 * first, so neither the token's bytes nor its length leak through timing.
 */
static int
console_authorized(struct MHD_Connection *c, struct disp *d)
{
	const char	*h;
	uint8_t		 a[32], b[32];
	int		 ok;

	h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	if (h == NULL || d->console_token[0] == '\0' ||
	    strncasecmp(h, "Bearer ", 7) != 0)
		return 0;
	h += 7;
	while (*h == ' ')
		h++;
	crypto_sha256(h, strlen(h), a);
	crypto_sha256(d->console_token, strlen(d->console_token), b);
	ok = CRYPTO_memcmp(a, b, sizeof(a)) == 0;
	OPENSSL_cleanse(b, sizeof(b));
	return ok;
}

/* Whether host ("name:port", "[v6]:port") is one of the names given. */
static int
console_host_is(const char *host, const char *name, int port)
{
	char	want[300];
	int	v6 = strchr(name, ':') != NULL;

	snprintf(want, sizeof(want), v6 ? "[%s]:%d" : "%s:%d", name, port);
	if (strcasecmp(host, want) == 0)
		return 1;
	/* A browser leaves out the default port. */
	snprintf(want, sizeof(want), v6 ? "[%s]" : "%s", name);
	return port == 80 && strcasecmp(host, want) == 0;
}

/*
 * The console's own names: the -console host as given, the address the
 * connection arrived on (a console on 0.0.0.0 answers to each of the
 * host's addresses), and on loopback "localhost".  Any other Host is a
 * page that made its own name resolve to us (DNS rebinding).
 */
static int
console_host_ok(struct MHD_Connection *c, struct disp *d, const char *host)
{
	const union MHD_ConnectionInfo	*ci;
	struct sockaddr_storage		 ss;
	socklen_t			 len = sizeof(ss);
	char				 ip[INET6_ADDRSTRLEN];
	int				 port = d->console.port, loop = 0;

	if (host == NULL)
		return 0;
	if (console_host_is(host, d->console.name, port))
		return 1;
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci == NULL || getsockname(ci->connect_fd, (struct sockaddr *)&ss,
	    &len) == -1)
		return 0;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		loop = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		loop = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
	} else
		return 0;
	if (console_host_is(host, ip, port))
		return 1;
	return loop && console_host_is(host, "localhost", port);
}

/*
 * 0 if the request may go on, else the status that refuses it: 403 for a
 * foreign Host, a cross-site Origin or Sec-Fetch-Site, 401 without the
 * token (when token: all but the page's files), 415 for a POST that is
 * not JSON.  Checked in this order, so that a page learns nothing about
 * the token.
 */
static int
console_check(struct MHD_Connection *c, struct disp *d, int post,
    int token, const char **why)
{
	const char	*host, *origin, *site, *ct;
	char		 want[320];
	size_t		 n;

	host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
	if (!console_host_ok(c, d, host)) {
		*why = "Host is not this console";
		return 403;
	}
	origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
	snprintf(want, sizeof(want), "http://%s", host);
	if (origin != NULL && strcasecmp(origin, want) != 0) {
		*why = "cross-site request";
		return 403;
	}
	site = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    "Sec-Fetch-Site");
	if (site != NULL && strcmp(site, "same-origin") != 0 &&
	    strcmp(site, "none") != 0) {
		*why = "cross-site request";
		return 403;
	}
	if (token && !console_authorized(c, d)) {
		*why = "bearer token required";
		return 401;
	}
	if (post) {
		ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
		    "Content-Type");
		n = strlen("application/json");
		if (ct == NULL || strncasecmp(ct, "application/json", n) != 0 ||
		    (ct[n] != '\0' && ct[n] != ';' && ct[n] != ' ')) {
			*why = "Content-Type: application/json required";
			return 415;
		}
	}
	return 0;
}

/* The page's files: no token (the login form is one of them). */
static int
console_is_page(const char *url)
{
	return strcmp(url, "/") == 0 || strcmp(url, "/console.js") == 0 ||
	    strcmp(url, "/console.css") == 0;
}

static enum MHD_Result
console_route(struct MHD_Connection *c, struct disp *d, const char *url,
    int get, int post)
{
	char	id[DISP_KEY_LEN + 1];
	int	found;

	if (get && console_is_page(url))
		return console_page(c, url, &found);
	if (get && strcmp(url, "/api") == 0)
		return console_json(c, 200, json_pack("{ssss}", "program",
		    "dispatcher", "version", TUNNELD_VERSION));
	if (get && strcmp(url, "/api/tunnels") == 0)
		return console_tunnels(c, d);
	if (get && strcmp(url, "/api/status") == 0)
		return console_status_answer(c, d);
	if (get && strcmp(url, "/api/events") == 0)
		return console_stream(c, d);
	if (get && strcmp(url, "/api/events/recent") == 0)
		return console_recent(c, d);
	if (get && strcmp(url, "/metrics") == 0)
		return console_metrics(c, d);
	if (post && strcmp(url, "/api/reload") == 0)
		return console_reload(c, d);
	if (post && strncmp(url, "/api/tunnels/", 13) == 0 &&
	    strlen(url) == 13 + DISP_KEY_LEN + 5 &&
	    strcmp(url + 13 + DISP_KEY_LEN, "/stop") == 0) {
		memcpy(id, url + 13, DISP_KEY_LEN);
		id[DISP_KEY_LEN] = '\0';
		return console_stop_tunnel(c, d, id);
	}
	if (get || post)
		return console_error(c, 404, "not found");
	return console_error(c, 405, "method not allowed");
}

static enum MHD_Result
console_access(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **req_cls)
{
	struct disp	*d = cls;
	const char	*why;
	int		 status;
	int		 get = strcmp(method, "GET") == 0;
	int		 post = strcmp(method, "POST") == 0;

	if (*req_cls == NULL) {
		*req_cls = (void *)1;
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	if ((status = console_check(c, d, post, !(get &&
	    console_is_page(url)), &why)) != 0)
		return console_error(c, status, why);
	return console_route(c, d, url, get, post);
}

int
console_init(struct disp *d, char *err)
{
	if ((d->con = calloc(1, sizeof(*d->con))) == NULL ||
	    (d->con->ev = console_events_new()) == NULL) {
		free(d->con);
		d->con = NULL;
		err_set(err, "console: out of memory");
		return -1;
	}
	return 0;
}

void
console_free(struct disp *d)
{
	if (d->con == NULL)
		return;
	console_events_free(d->con->ev);
	free(d->con);
	d->con = NULL;
}

int
console_start(struct disp *d, char *err)
{
	struct addrinfo	 hints, *res = NULL;
	char		 port[16];
	int		 rc, v6;
	struct MHD_OptionItem lo[] = {
		{ MHD_OPTION_LISTEN_SOCKET, d->console_lfd, NULL },
		{ MHD_OPTION_END, 0, NULL }
	};

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%d", d->console.port);
	/* Bound before we gave up root (dpriv_listen): served now. */
	if (d->console_lfd != -1)
		v6 = dpriv_family(d->console_lfd) == AF_INET6;
	else if ((rc = getaddrinfo(d->console.name, port, &hints, &res)) != 0) {
		err_set(err, "-console %s: %s", d->console.name,
		    gai_strerror(rc));
		return -1;
	} else {
		v6 = res->ai_family == AF_INET6;
		lo[0].option = MHD_OPTION_SOCK_ADDR;
		lo[0].value = 0;
		lo[0].ptr_value = res->ai_addr;
	}
	if (console_events_start(d, err) == -1) {
		if (res != NULL)
			freeaddrinfo(res);
		return -1;
	}
	/* A thread per connection: a handler may wait on a worker, and an
	 * event stream waits for news in its own thread. */
	d->admin = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
	    MHD_USE_THREAD_PER_CONNECTION |
	    (v6 ? MHD_USE_IPv6 : 0), 0, NULL, NULL,
	    console_access, d, MHD_OPTION_ARRAY, lo,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONSOLE_MAX_CONN,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONSOLE_CONN_TIMEOUT,
	    MHD_OPTION_END);
	if (res != NULL)
		freeaddrinfo(res);
	d->console_lfd = -1;	/* libmicrohttpd's now, or closed by it */
	if (d->admin == NULL) {
		console_events_stop(d);
		err_set(err, "cannot listen on console %s:%d", d->console.name,
		    d->console.port);
		return -1;
	}
	return 0;
}

void
console_stop(struct disp *d)
{
	if (d->admin == NULL)
		return;
	/* Streams waiting for news end first: the daemon joins them. */
	console_events_stop(d);
	MHD_stop_daemon(d->admin);
	d->admin = NULL;
}
