/*
 * tunneld's command line: kptunnel's (wire spec 8.1-8.3) with Go flag
 * syntax, plus the options tunneld adds (-handshakeTimeout, -openTimeout,
 * -sessionTimeout, -cafile, -insecure).
 *
 * Go's flag package stops at the first positional; kptunnel re-parses so
 * that options and positionals may be mixed, and so does this parser.
 * "--" ends the options; a lone "-" is a positional.
 */

#include <netinet/in.h>

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "addr.h"
#include "cli.h"
#include "crypto.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "mode.h"
#include "msg.h"
#include "opt.h"
#include "secret.h"
#include "text.h"

#define CLI_VERSION	"tunneld 0.1.0 (kptunnel 0.2.0 compatible)\n"

/* Upper bound of every seconds option: keeps milliseconds within an int. */
#define CLI_MAX_SECONDS	604800

/* mode + server + forwards */
#define CLI_MAX_POS	(2 + MSG_MAX_FWDS)

static const char cli_usage_text[] =
"usage: tunneld <mode> <server> [forward ...] [options]\n"
"       tunneld --help | --version\n"
"\n"
"A TCP-over-websocket tunnel, wire compatible with kptunnel 0.2.0.\n"
"Options and positional arguments may be mixed.  Options are written\n"
"-name value, --name value, -name=value or --name=value; boolean options\n"
"-name or -name=true|false.  \"--\" ends the options.\n"
"\n"
"Modes:\n"
"  mode        role    transport  default  forwards\n"
"  wsserver    server  websocket  t        optional\n"
"  r-wsserver  server  websocket  r        required\n"
"  server      server  TCP        t        optional\n"
"  r-server    server  TCP        r        required\n"
"  wsclient    client  websocket  t        required\n"
"  r-wsclient  client  websocket  r        optional\n"
"  client      client  TCP        t        required\n"
"  r-client    client  TCP        r        optional\n"
"  Servers listen on <server>; clients connect to it.  Required forwards\n"
"  may be left out with -omit or -ctrl.\n"
"\n"
"Addresses (<server>, forward src and dst):  [host]:port\n"
"  host is a name, an IPv4 address, an IPv6 address in brackets, or empty\n"
"  (all interfaces when listening, the local host when dialing); port is\n"
"  0..65535.  An optional scheme:// prefix is ignored; a /path?query tail\n"
"  is kept and sent as kptunnel does.\n"
"\n"
"Forwards:  [r,|t,]src,dst\n"
"  t  the tunnel client listens on src; the tunnel server dials dst\n"
"  r  the tunnel server listens on src; the tunnel client dials dst\n"
"  Without a prefix a forward is r in the r-* modes and t otherwise.  At\n"
"  most 64.  The server's list is the one both sides use: a server with\n"
"  no list refuses a client that brings one (unless -allowClientForwards),\n"
"  and a client refuses a server list naming a forward it was not given\n"
"  (unless -acceptServerForwards).\n"
"  Examples:\n"
"    tunneld wsserver :8080 :8022,localhost:22 -pass s\n"
"    tunneld wsclient gw.example:8080 :8022,localhost:22 -pass s\n"
"        the client listens on port 8022 of every interface; the server\n"
"        dials localhost:22 for each connection\n"
"    tunneld r-wsserver :8080 r,127.0.0.1:2222,192.168.1.10:22 -pass s\n"
"        the server listens on 127.0.0.1:2222; the client dials\n"
"        192.168.1.10:22\n"
"    t,[::1]:8080,[2001:db8::1]:22      IPv6 literals in brackets\n"
"\n"
"Options (defaults in brackets):\n"
"  -pass PASS            authentication password; see Secrets [\"\"]\n"
"  -passFile FILE        read -pass from FILE\n"
"  -encPass PASS         encryption password; see Secrets [\"\"]\n"
"  -encPassFile FILE     read -encPass from FILE\n"
"  -encCount N           payloads encrypted per direction: -1 all, 0 none,\n"
"                        N > 0 the first N+1 (as kptunnel) [-1]\n"
"  -ip RANGE[,RANGE...]  servers: admit only clients in these ranges,\n"
"                        a.b.c.d[/n] or IPv6[/n]; repeatable, at most 32.\n"
"                        No mask or /0 means a single address, as in\n"
"                        kptunnel [every client]\n"
"  -int SECONDS          keepalive interval, at least 2 [20]\n"
"  -ctrl CMD             clients: \"stop\" ends the server's session (a\n"
"                        kptunnel server exits); kptunnel's \"bench\" is\n"
"                        not implemented; any value makes forwards\n"
"                        optional [\"\"]\n"
"  -omit                 allow running without forwards [false]\n"
"  -allowClientForwards  servers: with no forwards of its own, use the\n"
"                        client's list (kptunnel's behaviour).  DANGEROUS:\n"
"                        every client that knows -pass may then make this\n"
"                        host dial any address it reaches (loopback\n"
"                        included) and listen on any of its ports [false]\n"
"  -acceptServerForwards clients: obey a server list naming forwards not\n"
"                        given here (kptunnel's behaviour).  DANGEROUS: the\n"
"                        server may then make this host dial any address\n"
"                        it reaches and listen on any of its ports [false]\n"
"  -handshakeTimeout S   seconds for the connection handshake [10]\n"
"  -maxHandshakesPerAddr N  servers: connections one address (an IPv6 /64)\n"
"                        may have in their handshake at once; more are\n"
"                        refused [8]\n"
"  -openTimeout S        seconds to wait for the peer to open a forwarded\n"
"                        connection [30]\n"
"  -sessionTimeout S     servers: seconds a disconnected session is kept\n"
"                        for the client to resume it [600]\n"
"  -verbose, -debug      debug logging [false]\n"
"  -intlog               accepted for compatibility; ignored\n"
"  -console ADDR         accepted for compatibility; ignored\n"
"  -prof ADDR            accepted for compatibility; ignored\n"
"  -h, -help, --help     print this text\n"
"  -version, --version   print the version\n"
"\n"
"Websocket client options:\n"
"  -wspath PATH          request path [/]\n"
"  -session ID           session= query value [a random UUIDv4]\n"
"  -header 'NAME: VAL'   one extra handshake header; the last one wins [none]\n"
"  -UA AGENT             User-Agent of the proxy CONNECT [Go Http Client]\n"
"  -proxy URL            HTTP proxy http://[user:pass@]host:port/; user:pass\n"
"                        at most 381 bytes; see Secrets [none]\n"
"  -proxyFile FILE       read -proxy's URL from FILE\n"
"  -tls                  connect with TLS (wss://) [false]\n"
"  -cafile FILE          CA certificates for -tls [the system's]\n"
"  -insecure             with -tls, do not verify the server's certificate\n"
"                        (kptunnel's behaviour) [false]\n"
"\n"
"Secrets (-pass, -encPass, the password of -proxy):\n"
"  A value on the command line can be read by every local user (ps,\n"
"  /proc/PID/cmdline) until tunneld has parsed it and overwritten it.\n"
"  Prefer a file or the environment:\n"
"    -passFile, -encPassFile, -proxyFile FILE\n"
"        the secret is FILE's content less one trailing newline, at most\n"
"        4096 bytes; FILE must be a regular file that its group and\n"
"        others can neither read nor write (chmod 600), or tunneld\n"
"        refuses to start\n"
"    TUNNELD_PASS, TUNNELD_ENCPASS, TUNNELD_PROXY\n"
"        used when the matching option is not given; tunneld wipes the\n"
"        value from its environment once read\n"
"  Of -pass and -passFile (and the others' pairs) the last one given\n"
"  wins.  tunneld warns at start about a secret shorter than 16\n"
"  characters or estimated below 64 bits: one recorded connection lets\n"
"  anyone test guesses offline (docs/security.md).\n"
"  Example:\n"
"    umask 077; head -c 24 /dev/urandom | base64 > ~/.tunnel.pass\n"
"    tunneld wsserver :8080 -passFile ~/.tunnel.pass\n"
"\n"
"Exit status: 0 success (or stopped on request), 1 runtime error,\n"
"2 usage error.\n";

/* enum cli_mode numbers the modes as common/mode.c's table does. */
_Static_assert(MODE_R_CLIENT + 1 == MODE_COUNT, "enum cli_mode is mode.h's");

int
cli_mode_is_server(enum cli_mode m)
{
	return (mode_flags(m) & MODE_F_SERVER) != 0;
}

int
cli_mode_is_ws(enum cli_mode m)
{
	return (mode_flags(m) & MODE_F_WS) != 0;
}

int
cli_mode_is_reverse(enum cli_mode m)
{
	return (mode_flags(m) & MODE_F_REVERSE) != 0;
}

const char *
cli_mode_name(enum cli_mode m)
{
	return mode_name(m);
}

const char *
cli_usage(void)
{
	return cli_usage_text;
}

/* Option handlers: 0, or -1 with err naming the option. */

static int
cli_int(const char *opt, const char *val, int min, int max, int *out,
    char *err)
{
	const char	*p = val;
	long long	 v = 0;
	int		 neg = 0;

	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (*p == '\0') {
		err_set(err, "-%s: not a number: %s", opt, val);
		return -1;
	}
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9') {
			err_set(err, "-%s: not a number: %s", opt, val);
			return -1;
		}
		if (v <= (long long)INT_MAX + 1)
			v = v * 10 + (*p - '0');
	}
	if (neg)
		v = -v;
	if (v < min || v > max) {
		err_set(err, "-%s: out of range: %s", opt, val);
		return -1;
	}
	*out = (int)v;
	return 0;
}

/* Go's strconv.ParseBool. */
static int
cli_bool(const char *opt, const char *val, int *out, char *err)
{
	static const char *const yes[] = { "1", "t", "T", "true", "TRUE",
	    "True" };
	static const char *const no[] = { "0", "f", "F", "false", "FALSE",
	    "False" };
	size_t	 i;

	if (val == NULL) {
		*out = 1;
		return 0;
	}
	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcmp(val, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcmp(val, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	err_set(err, "-%s: not a boolean: %s", opt, val);
	return -1;
}

/* Printable text without controls; space allowed when told. */
static int
cli_text_ok(const char *s, int space)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f || (c == ' ' && !space))
			return 0;
	}
	return 1;
}

/* Copies a value into a fixed field of the options. */
static int
cli_copy(const char *opt, const char *val, char *out, size_t cap,
    int space, char *err)
{
	if (!cli_text_ok(val, space)) {
		err_set(err, "-%s: invalid character in value", opt);
		return -1;
	}
	if (strlen(val) >= cap) {
		err_set(err, "-%s: value too long", opt);
		return -1;
	}
	memcpy(out, val, strlen(val) + 1);
	return 0;
}

static void
cli_secret_free(char **p)
{
	if (*p != NULL) {
		OPENSSL_cleanse(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

static int
cli_secret(const char *opt, const char *val, char **out, char *err)
{
	char	*s;

	if ((s = strdup(val)) == NULL) {
		err_set(err, "-%s: out of memory", opt);
		return -1;
	}
	cli_secret_free(out);
	*out = s;
	return 0;
}

/* -passFile, -encPassFile: the secret in a file, replacing *out. */
static int
cli_secret_file(const char *opt, const char *val, char **out, char *err)
{
	char	*s, why[ERR_LEN];

	if (secret_read_file(val, &s, why) == -1) {
		err_set(err, "-%s: %s", opt, why);
		return -1;
	}
	cli_secret_free(out);
	*out = s;
	return 0;
}

/* Sets -proxy's URL from a secret string, which it cleanses and frees. */
static int
cli_proxy_take(struct cli_opts *o, const char *opt, char *s, char *err)
{
	int	 rc;

	rc = cli_copy(opt, s, o->proxy, sizeof(o->proxy), 0, err);
	OPENSSL_cleanse(s, strlen(s));
	free(s);
	return rc;
}

/* -proxyFile: -proxy's URL, which may hold user:password, from a file. */
static int
cli_proxy_file(struct cli_opts *o, const char *val, char *err)
{
	char	*s, why[ERR_LEN];

	if (secret_read_file(val, &s, why) == -1) {
		err_set(err, "-proxyFile: %s", why);
		return -1;
	}
	return cli_proxy_take(o, "proxyFile", s, err);
}

/* TUNNELD_PROXY, when neither -proxy nor -proxyFile gave a URL. */
static int
cli_proxy_env(struct cli_opts *o, char *err)
{
	char	*s;

	if (secret_from_env("TUNNELD_PROXY", &s, err) == -1)
		return -1;
	return s == NULL ? 0 : cli_proxy_take(o, "TUNNELD_PROXY", s, err);
}

/*
 * TUNNELD_PASS and the like, for a secret no option gave: *out is set
 * from the environment when the variable exists, and left alone if not.
 */
static int
cli_secret_env(const char *var, char **out, char *err)
{
	char	*s;

	if (secret_from_env(var, &s, err) == -1)
		return -1;
	if (s != NULL) {
		cli_secret_free(out);
		*out = s;
	}
	return 0;
}

static int
cli_ip(struct cli_opts *o, const char *val, char *err)
{
	char		 one[INET6_ADDRSTRLEN + 8], why[ERR_LEN];
	const char	*p = val, *comma;
	size_t		 n;

	for (;;) {
		comma = strchr(p, ',');
		n = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if (n >= sizeof(one)) {
			err_set(err, "-ip: invalid range: %.*s", (int)(n > 64 ?
			    64 : n), p);
			return -1;
		}
		memcpy(one, p, n);
		one[n] = '\0';
		if (o->ncidr == CLI_MAX_CIDRS) {
			err_set(err, "-ip: too many ranges (at most %d)",
			    CLI_MAX_CIDRS);
			return -1;
		}
		if (cidr_parse(one, &o->cidrs[o->ncidr], why) == -1) {
			err_set(err, "-ip: %s: %s", one, why);
			return -1;
		}
		o->ncidr++;
		if (comma == NULL)
			return 0;
		p = comma + 1;
	}
}

/*
 * "NAME: VAL" as Go's http.Header.Add stores it: the name canonicalised
 * (x-test -> X-Test), the value trimmed.  Names that are not HTTP tokens
 * and values with line breaks are refused, since they would corrupt or
 * inject handshake lines.
 */
static int
cli_header(struct cli_opts *o, const char *val, char *err)
{
	char		 name[256];
	const char	*colon, *b, *e, *v, *ve;
	size_t		 nlen, i;
	int		 up = 1;

	if ((colon = strchr(val, ':')) == NULL) {
		err_set(err, "-header: '%s' is not 'NAME: VALUE'", val);
		return -1;
	}
	for (b = val; b < colon && (*b == ' ' || *b == '\t'); b++)
		;
	for (e = colon; e > b && (e[-1] == ' ' || e[-1] == '\t'); e--)
		;
	nlen = (size_t)(e - b);
	if (nlen == 0 || nlen >= sizeof(name)) {
		err_set(err, "-header: invalid header name");
		return -1;
	}
	for (i = 0; i < nlen; i++) {
		unsigned char c = (unsigned char)b[i];

		if (!http_tchar(c)) {
			err_set(err, "-header: invalid header name");
			return -1;
		}
		if (up && c >= 'a' && c <= 'z')
			c = c - 'a' + 'A';
		else if (!up && c >= 'A' && c <= 'Z')
			c = c - 'A' + 'a';
		name[i] = (char)c;
		up = c == '-';
	}
	name[nlen] = '\0';
	for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
		;
	for (ve = v + strlen(v); ve > v && (ve[-1] == ' ' || ve[-1] == '\t');
	    ve--)
		;
	for (b = v; b < ve; b++) {
		unsigned char c = (unsigned char)*b;

		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			err_set(err, "-header: invalid character in value");
			return -1;
		}
	}
	if (nlen + 2 + (size_t)(ve - v) >= sizeof(o->header)) {
		err_set(err, "-header: value too long");
		return -1;
	}
	snprintf(o->header, sizeof(o->header), "%s: %.*s", name,
	    (int)(ve - v), v);
	return 0;
}

/*
 * The session id goes into the URL query verbatim (as kptunnel sends it),
 * so characters that would end or extend the query are refused.
 */
static int
cli_session(struct cli_opts *o, const char *val, char *err)
{
	const char	*p;

	if (*val == '\0') {
		err_set(err, "-session: empty value");
		return -1;
	}
	for (p = val; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') ||
		    strchr("-._~%!$'()*+,;:@/?", c) != NULL)) {
			err_set(err, "-session: invalid character in value");
			return -1;
		}
	}
	return cli_copy("session", val, o->session, sizeof(o->session), 0,
	    err);
}

static int
cli_wspath(struct cli_opts *o, const char *val, char *err)
{
	if (val[0] != '/') {
		err_set(err, "-wspath: must start with '/': %s", val);
		return -1;
	}
	return cli_copy("wspath", val, o->wspath, sizeof(o->wspath), 0, err);
}

enum cli_opt_id {
	OPT_PASS, OPT_ENCPASS, OPT_ENCCOUNT, OPT_IP, OPT_INT, OPT_HEADER,
	OPT_PASSFILE, OPT_ENCPASSFILE, OPT_PROXYFILE,
	OPT_WSPATH, OPT_SESSION, OPT_UA, OPT_CTRL, OPT_OMIT, OPT_VERBOSE,
	OPT_INTLOG, OPT_CONSOLE, OPT_PROF, OPT_HSTIMEOUT, OPT_OPENTIMEOUT,
	OPT_SESSTIMEOUT, OPT_PROXY, OPT_TLS, OPT_CAFILE, OPT_INSECURE,
	OPT_HELP, OPT_VERSION, OPT_ALLOWCLIFWD, OPT_ACCEPTSRVFWD,
	OPT_MAXHSADDR
};

/* flag: boolean, value optional (only after '='). */
static const struct opt_def cli_table[] = {
	{ "pass",		OPT_PASS,		0 },
	{ "encPass",		OPT_ENCPASS,		0 },
	{ "passFile",		OPT_PASSFILE,		0 },
	{ "encPassFile",	OPT_ENCPASSFILE,	0 },
	{ "proxyFile",		OPT_PROXYFILE,		0 },
	{ "encCount",		OPT_ENCCOUNT,		0 },
	{ "ip",			OPT_IP,			0 },
	{ "int",		OPT_INT,		0 },
	{ "header",		OPT_HEADER,		0 },
	{ "wspath",		OPT_WSPATH,		0 },
	{ "session",		OPT_SESSION,		0 },
	{ "UA",			OPT_UA,			0 },
	{ "ctrl",		OPT_CTRL,		0 },
	{ "omit",		OPT_OMIT,		1 },
	{ "verbose",		OPT_VERBOSE,		1 },
	{ "debug",		OPT_VERBOSE,		1 },
	{ "intlog",		OPT_INTLOG,		1 },
	{ "console",		OPT_CONSOLE,		0 },
	{ "prof",		OPT_PROF,		0 },
	{ "handshakeTimeout",	OPT_HSTIMEOUT,		0 },
	{ "openTimeout",	OPT_OPENTIMEOUT,	0 },
	{ "sessionTimeout",	OPT_SESSTIMEOUT,	0 },
	{ "maxHandshakesPerAddr", OPT_MAXHSADDR,	0 },
	{ "proxy",		OPT_PROXY,		0 },
	{ "tls",		OPT_TLS,		1 },
	{ "cafile",		OPT_CAFILE,		0 },
	{ "insecure",		OPT_INSECURE,		1 },
	{ "allowClientForwards", OPT_ALLOWCLIFWD,	1 },
	{ "acceptServerForwards", OPT_ACCEPTSRVFWD,	1 },
	{ "h",			OPT_HELP,		1 },
	{ "help",		OPT_HELP,		1 },
	{ "version",		OPT_VERSION,		1 },
};

#define CLI_NOPTS	(sizeof(cli_table) / sizeof(cli_table[0]))

/*
 * Remembers where in argv a secret lies, for cli_scrub_argv.  For -proxy
 * only the user:password part is a secret; a URL without one needs
 * nothing.
 */
static int
cli_note_secret(struct cli_opts *o, enum cli_opt_id id, const char *val,
    char *err)
{
	const char	*auth, *end, *at = NULL, *p;

	if (id == OPT_PROXY) {
		auth = strstr(val, "://");
		auth = auth != NULL ? auth + 3 : val;
		end = auth + strcspn(auth, "/?#");
		for (p = auth; p < end; p++)
			if (*p == '@')
				at = p;
		if (at == NULL)
			return 0;
		val = auth;
	} else if (*val == '\0')
		return 0;	/* nothing to hide */
	if (o->nscrub == CLI_MAX_SCRUB) {
		err_set(err, "secrets given more than %d times on the command "
		    "line", CLI_MAX_SCRUB);
		return -1;
	}
	o->scrub[o->nscrub].p = (char *)val;
	o->scrub[o->nscrub].len = at != NULL ? (size_t)(at - val) :
	    strlen(val);
	o->nscrub++;
	o->argv_secrets |= id == OPT_PASS ? CLI_ARGV_PASS :
	    id == OPT_ENCPASS ? CLI_ARGV_ENCPASS : CLI_ARGV_PROXY;
	return 0;
}

/* Integer and boolean options: their field, and an integer's range. */
#define CLI_BOOL	1, 0		/* min > max: a boolean */
static const struct {
	enum cli_opt_id	 id;
	size_t		 off;
	int		 min, max;
} cli_fields[] = {
	{ OPT_ENCCOUNT,	offsetof(struct cli_opts, enc_count), INT_MIN, INT_MAX },
	{ OPT_INT,	offsetof(struct cli_opts, interval), INT_MIN,
	  CLI_MAX_SECONDS },
	{ OPT_HSTIMEOUT, offsetof(struct cli_opts, handshake_timeout), 1,
	  CLI_MAX_SECONDS },
	{ OPT_OPENTIMEOUT, offsetof(struct cli_opts, open_timeout), 1,
	  CLI_MAX_SECONDS },
	{ OPT_SESSTIMEOUT, offsetof(struct cli_opts, session_timeout), 1,
	  CLI_MAX_SECONDS },
	{ OPT_MAXHSADDR, offsetof(struct cli_opts, max_hs_per_addr), 1, 65536 },
	{ OPT_OMIT,	offsetof(struct cli_opts, omit), CLI_BOOL },
	{ OPT_VERBOSE,	offsetof(struct cli_opts, verbose), CLI_BOOL },
	{ OPT_TLS,	offsetof(struct cli_opts, tls), CLI_BOOL },
	{ OPT_INSECURE,	offsetof(struct cli_opts, insecure), CLI_BOOL },
	{ OPT_ALLOWCLIFWD, offsetof(struct cli_opts, allow_client_fwds),
	  CLI_BOOL },
	{ OPT_ACCEPTSRVFWD, offsetof(struct cli_opts, accept_server_fwds),
	  CLI_BOOL },
};

/*
 * An integer or boolean option into its field.  Returns 0 or -1 as the
 * handlers do, or 1 if id is no such option.
 */
static int
cli_field(struct cli_opts *o, enum cli_opt_id id, const char *name,
    const char *val, char *err)
{
	size_t	 i;
	int	*out;

	for (i = 0; i < sizeof(cli_fields) / sizeof(cli_fields[0]); i++) {
		if (cli_fields[i].id != id)
			continue;
		out = (int *)(void *)((char *)o + cli_fields[i].off);
		if (cli_fields[i].min > cli_fields[i].max)
			return cli_bool(name, val, out, err);
		if (cli_int(name, val, cli_fields[i].min, cli_fields[i].max,
		    out, err) == -1)
			return -1;
		/* kptunnel forces short intervals up to 2 s. */
		if (id == OPT_INT && o->interval < 2)
			o->interval = 2;
		return 0;
	}
	return 1;
}

/* Applies one option; name is the table's spelling, val NULL for -flag. */
static int
cli_apply(struct cli_opts *o, enum cli_opt_id id, const char *name,
    const char *val, char *err)
{
	int	 rc, ignored;

	if ((rc = cli_field(o, id, name, val, err)) != 1)
		return rc;
	switch (id) {
	case OPT_PASS:
		return cli_secret(name, val, &o->pass, err);
	case OPT_ENCPASS:
		return cli_secret(name, val, &o->encpass, err);
	case OPT_PASSFILE:
		return cli_secret_file(name, val, &o->pass, err);
	case OPT_ENCPASSFILE:
		return cli_secret_file(name, val, &o->encpass, err);
	case OPT_PROXYFILE:
		return cli_proxy_file(o, val, err);
	case OPT_IP:
		return cli_ip(o, val, err);
	case OPT_HEADER:
		return cli_header(o, val, err);
	case OPT_WSPATH:
		return cli_wspath(o, val, err);
	case OPT_SESSION:
		return cli_session(o, val, err);
	case OPT_UA:
		return cli_copy(name, val, o->ua, sizeof(o->ua), 1, err);
	case OPT_CTRL:
		return cli_copy(name, val, o->ctrl, sizeof(o->ctrl), 0, err);
	case OPT_PROXY:
		return cli_copy(name, val, o->proxy, sizeof(o->proxy), 0, err);
	case OPT_CAFILE:
		if (*val == '\0') {
			err_set(err, "-cafile: empty value");
			return -1;
		}
		return cli_copy(name, val, o->cafile, sizeof(o->cafile), 1,
		    err);
	case OPT_INTLOG:
		return cli_bool(name, val, &ignored, err);
	default:
		/* -console, -prof: kptunnel's debug console and Go profiler,
		 * no equivalent; -help, -version: answered by cli_option. */
		return 0;
	}
}

/* A random lower-case UUIDv4 (RFC 9562), as kptunnel's default -session. */
static int
cli_uuid(char *out, size_t cap, char *err)
{
	uint8_t	 b[16];
	size_t	 i, o = 0;
	char	 why[ERR_LEN];

	if (cap < 37) {
		err_set(err, "no room for a session id");
		return -1;
	}
	if (crypto_random(b, sizeof(b), why) == -1) {
		err_set(err, "cannot make a session id: %s", why);
		return -1;
	}
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	for (i = 0; i < sizeof(b); i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = text_hexdigit(b[i] >> 4, 0);
		out[o++] = text_hexdigit(b[i], 0);
	}
	out[o] = '\0';
	return 0;
}

static void
cli_defaults(struct cli_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->mode = MODE_WSSERVER;
	o->enc_count = -1;
	o->interval = 20;
	strcpy(o->wspath, "/");
	strcpy(o->ua, "Go Http Client");
	o->handshake_timeout = 10;
	o->open_timeout = 30;
	o->session_timeout = 600;
	o->max_hs_per_addr = CLI_MAX_HS_PER_ADDR;
}

static void
cli_text(char *out, size_t outcap, const char *text)
{
	if (out != NULL && outcap > 0)
		snprintf(out, outcap, "%s", text);
}

/* What cli_parse's callbacks share. */
struct cli_ctx {
	struct cli_opts	*o;
	const char	*pos[CLI_MAX_POS];
	size_t		 npos;
	char		*out;
	size_t		 outcap;
};

static int
cli_positional(void *arg, const char *s, char *err)
{
	struct cli_ctx	*c = arg;

	if (c->npos == CLI_MAX_POS) {
		err_set(err, "too many forwards (at most %d)", MSG_MAX_FWDS);
		return -1;
	}
	c->pos[c->npos++] = s;
	return 0;
}

static int
cli_option(void *arg, const struct opt_def *def, const char *val, char *err)
{
	struct cli_ctx	*c = arg;
	int		 want;

	if (def->id == OPT_HELP || def->id == OPT_VERSION) {
		/*
		 * Answered at once, whatever follows, as Go's flag package
		 * does; -help=false asks for nothing.
		 */
		if (cli_bool(def->name, val, &want, err) == -1)
			return -1;
		if (want)
			cli_text(c->out, c->outcap, def->id == OPT_HELP ?
			    cli_usage_text : CLI_VERSION);
		return want;
	}
	if (cli_apply(c->o, def->id, def->name, val, err) == -1)
		return -1;
	if (def->id == OPT_PASS || def->id == OPT_ENCPASS ||
	    def->id == OPT_PROXY)
		return cli_note_secret(c->o, def->id, val, err);
	return 0;
}

/* The mode, the server address and the forwards. */
static int
cli_positionals(struct cli_opts *o, const char **pos, size_t npos,
    char *err)
{
	char	 why[ERR_LEN];
	size_t	 i;
	int	 m, need_fwd;

	if (npos == 0) {
		err_set(err, "missing mode");
		return -1;
	}
	if ((m = mode_lookup(pos[0])) == -1) {
		err_set(err, "unknown mode '%s'", pos[0]);
		return -1;
	}
	o->mode = (enum cli_mode)m;
	if (npos < 2) {
		err_set(err, "missing server address");
		return -1;
	}
	if (addr_parse(pos[1], &o->server, why) == -1) {
		err_set(err, "server address '%s': %s", pos[1], why);
		return -1;
	}
	for (i = 2; i < npos; i++) {
		if (fwd_parse(pos[i], cli_mode_is_reverse(o->mode),
		    &o->fwds.fwds[o->fwds.n], why) == -1) {
			err_set(err, "forward '%s': %s", pos[i], why);
			return -1;
		}
		o->fwds.n++;
	}
	need_fwd = o->mode == MODE_WSCLIENT || o->mode == MODE_CLIENT ||
	    o->mode == MODE_R_WSSERVER || o->mode == MODE_R_SERVER;
	if (need_fwd && o->fwds.n == 0 && !o->omit && o->ctrl[0] == '\0') {
		err_set(err, "mode %s needs at least one forward",
		    cli_mode_name(o->mode));
		return -1;
	}
	return 0;
}

/* The environment fills in what no option gave; then the defaults. */
static int
cli_environment(struct cli_opts *o, char *err)
{
	if ((o->pass == NULL &&
	    cli_secret_env("TUNNELD_PASS", &o->pass, err) == -1) ||
	    (o->encpass == NULL &&
	    cli_secret_env("TUNNELD_ENCPASS", &o->encpass, err) == -1))
		return -1;
	if (o->proxy[0] == '\0' && cli_proxy_env(o, err) == -1)
		return -1;
	if ((o->pass == NULL && cli_secret("pass", "", &o->pass, err) == -1) ||
	    (o->encpass == NULL &&
	    cli_secret("encPass", "", &o->encpass, err) == -1))
		return -1;
	if (o->session[0] == '\0' &&
	    cli_uuid(o->session, sizeof(o->session), err) == -1)
		return -1;
	return 0;
}

/*
 * On -1 and 1 nothing is left allocated in o (cli_free is harmless but not
 * needed); on 0 the caller owns o and releases it with cli_free.
 */
int
cli_parse(int argc, char **argv, struct cli_opts *o, char *out,
    size_t outcap, char *err)
{
	struct cli_ctx	 c = { .o = o, .out = out, .outcap = outcap };
	struct opt_parser p = {
		.defs = cli_table, .ndefs = CLI_NOPTS, .flags = OPT_GO_SYNTAX,
		.option = cli_option, .positional = cli_positional, .arg = &c
	};
	int		 rc;

	cli_defaults(o);
	if (out != NULL && outcap > 0)
		out[0] = '\0';
	rc = opt_parse(&p, argc, argv, err);
	if (rc == 1) {
		cli_free(o);
		cli_defaults(o);
		return 1;
	}
	if (rc == -1 || cli_positionals(o, c.pos, c.npos, err) == -1 ||
	    cli_environment(o, err) == -1) {
		cli_free(o);
		return -1;
	}
	return 0;
}

void
cli_scrub_argv(struct cli_opts *o)
{
	size_t	 i;

	/*
	 * The kernel shows the bytes argv points to in /proc/PID/cmdline:
	 * overwriting them hides the value from then on (not its length,
	 * nor from whoever read it before).
	 */
	for (i = 0; i < o->nscrub; i++)
		memset(o->scrub[i].p, '*', o->scrub[i].len);
	o->nscrub = 0;
}

void
cli_check_secrets(const struct cli_opts *o)
{
	char	 why[ERR_LEN];

	if (o->pass[0] == '\0')
		log_warnx("-pass is empty: anyone can use this tunnel");
	else if (secret_weak(o->pass, why))
		log_warnx("-pass is weak (%s): a recorded handshake lets "
		    "anyone test guesses offline; use a random one, e.g. "
		    "head -c 24 /dev/urandom | base64", why);
	if (o->encpass[0] == '\0' && o->enc_count != 0)
		log_warnx("-encPass is empty: the traffic is only obfuscated");
	else if (o->enc_count != 0 && secret_weak(o->encpass, why))
		log_warnx("-encPass is weak (%s): one connection lets anyone "
		    "test guesses offline; use a random one", why);
	if (o->argv_secrets & CLI_ARGV_PASS)
		log_warnx("-pass was given on the command line, which local "
		    "users can read: prefer -passFile or TUNNELD_PASS");
	if (o->argv_secrets & CLI_ARGV_ENCPASS)
		log_warnx("-encPass was given on the command line, which "
		    "local users can read: prefer -encPassFile or "
		    "TUNNELD_ENCPASS");
	if (o->argv_secrets & CLI_ARGV_PROXY)
		log_warnx("-proxy's password was given on the command line, "
		    "which local users can read: prefer -proxyFile or "
		    "TUNNELD_PROXY");
}

void
cli_free(struct cli_opts *o)
{
	if (o == NULL)
		return;
	cli_secret_free(&o->pass);
	cli_secret_free(&o->encpass);
	/* The proxy URL may carry user:password. */
	OPENSSL_cleanse(o->proxy, sizeof(o->proxy));
}
