/*
 * tunneld's command line: kptunnel's (wire spec 8.1-8.3) with Go flag
 * syntax, plus the options tunneld adds (-handshakeTimeout, -openTimeout,
 * -sessionTimeout, -cafile, -insecure).
 *
 * Go's flag package stops at the first positional; kptunnel re-parses so
 * that options and positionals may be mixed, and so does this parser.
 * "--" ends the options; a lone "-" is a positional.
 */

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "addr.h"
#include "cli.h"
#include "cli_int.h"
#include "crypto.h"
#include "err.h"
#include "joinpt.h"
#include "log.h"
#include "mode.h"
#include "msg.h"
#include "opt.h"
#include "text.h"
#include "tunneld.h"

/* mode + server + forwards */
#define CLI_MAX_POS	(2 + MSG_MAX_FWDS)

enum cli_opt_id {
	OPT_PASS, OPT_ENCPASS, OPT_ENCCOUNT, OPT_IP, OPT_INT, OPT_HEADER,
	OPT_PASSFILE, OPT_ENCPASSFILE, OPT_PROXYFILE,
	OPT_WSPATH, OPT_SESSION, OPT_UA, OPT_CTRL, OPT_OMIT, OPT_VERBOSE,
	OPT_INTLOG, OPT_CONSOLE, OPT_PROF, OPT_HSTIMEOUT, OPT_OPENTIMEOUT,
	OPT_SESSTIMEOUT, OPT_PROXY, OPT_TLS, OPT_CAFILE, OPT_INSECURE,
	OPT_HELP, OPT_VERSION, OPT_ALLOWCLIFWD, OPT_ACCEPTSRVFWD,
	OPT_MAXHSADDR, OPT_NOAEAD, OPT_WINDOW, OPT_LOGFORMAT, OPT_RENEW,
	OPT_UDPTIMEOUT, OPT_UDPFLOWS,
	OPT_SOCKS, OPT_SOCKSAUTHFILE, OPT_TRANSPARENT, OPT_DESTINATIONS,
	OPT_TRANSPORT
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
	{ "noAead",		OPT_NOAEAD,		1 },
	{ "window",		OPT_WINDOW,		0 },
	{ "logFormat",		OPT_LOGFORMAT,		0 },
	{ "renew",		OPT_RENEW,		1 },
	{ "h",			OPT_HELP,		1 },
	{ "help",		OPT_HELP,		1 },
	{ "version",		OPT_VERSION,		1 },
	{ "udpTimeout",		OPT_UDPTIMEOUT,		0 },
	{ "udpFlows",		OPT_UDPFLOWS,		0 },
	{ "socks",		OPT_SOCKS,		0 },
	{ "socksAuthFile",	OPT_SOCKSAUTHFILE,	0 },
	{ "transparent",	OPT_TRANSPARENT,	0 },
	{ "destinations",	OPT_DESTINATIONS,	0 },
	{ "transport",		OPT_TRANSPORT,		0 },
};

#define CLI_NOPTS	(sizeof(cli_table) / sizeof(cli_table[0]))

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
	{ OPT_NOAEAD,	offsetof(struct cli_opts, no_aead), CLI_BOOL },
	{ OPT_RENEW,	offsetof(struct cli_opts, renew), CLI_BOOL },
	{ OPT_UDPTIMEOUT, offsetof(struct cli_opts, udp_timeout), 1,
	  CLI_MAX_SECONDS },
	{ OPT_UDPFLOWS,	offsetof(struct cli_opts, udp_flows), 1,
	  CLI_UDP_FLOWS_MAX },
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
	case OPT_WINDOW:
		return cli_window(o, val, err);
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
	case OPT_LOGFORMAT:
		return log_format_parse(val, &o->log_json, err);
	case OPT_SOCKS:
		return cli_dyn(o, CLI_DYN_SOCKS, name, val, err);
	case OPT_TRANSPARENT:
		return cli_dyn(o, CLI_DYN_TRANSPARENT, name, val, err);
	case OPT_SOCKSAUTHFILE:
		return cli_socks_auth_file(o, val, err);
	case OPT_DESTINATIONS:
		return cli_destinations(o, val, err);
	case OPT_TRANSPORT:
		return cli_transport(o, val, err);
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

void
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
	o->window = TUN_WINDOW_DEF;
	o->udp_timeout = CLI_UDP_TIMEOUT;
	o->udp_flows = CLI_UDP_FLOWS;
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
			    cli_usage() : cli_version());
		return want;
	}
	if (cli_apply(c->o, def->id, def->name, val, err) == -1)
		return -1;
	switch (def->id) {
	case OPT_PASS:
		return cli_note_secret(c->o, CLI_ARGV_PASS, val, err);
	case OPT_ENCPASS:
		return cli_note_secret(c->o, CLI_ARGV_ENCPASS, val, err);
	case OPT_PROXY:
		return cli_note_secret(c->o, CLI_ARGV_PROXY, val, err);
	default:
		return 0;
	}
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
		/* A standalone server has no dispatcher to resolve one. */
		if ((mode_flags(o->mode) & MODE_F_SERVER) &&
		    (joinpt_name(&o->fwds.fwds[o->fwds.n].src) != NULL ||
		    joinpt_name(&o->fwds.fwds[o->fwds.n].dst) != NULL)) {
			err_set(err, "forward '%s': join points are offered "
			    "and reached by a dispatcher's workers only (the "
			    "policy's forwards)", pos[i]);
			return -1;
		}
		o->fwds.n++;
	}
	need_fwd = o->mode == MODE_WSCLIENT || o->mode == MODE_CLIENT ||
	    o->mode == MODE_R_WSSERVER || o->mode == MODE_R_SERVER;
	if (need_fwd && o->fwds.n == 0 && !o->omit && o->ctrl[0] == '\0' &&
	    o->ndyn == 0) {
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
	    cli_udp_check(o, err) == -1 || cli_socks_finish(o, err) == -1 ||
	    cli_environment(o, err) == -1 ||
	    cli_transport_check(o, err) == -1) {
		cli_free(o);
		return -1;
	}
	return 0;
}

void
cli_free(struct cli_opts *o)
{
	if (o == NULL)
		return;
	cli_secret_free(&o->pass);
	cli_secret_free(&o->encpass);
	cli_socks_free(o);
	/* The proxy URL may carry user:password. */
	OPENSSL_cleanse(o->proxy, sizeof(o->proxy));
}
