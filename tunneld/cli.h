#ifndef CLI_H
#define CLI_H

/*
 * tunneld's command line, kptunnel's (wire spec 8): a mode, a server
 * address, forwards, and options written -name value, --name value or
 * -name=value, interleaved with the positionals in any order.
 */

#include "addr.h"
#include "ctlmsg.h"
#include "destpat.h"
#include "msg.h"

#define CLI_MAX_HS_PER_ADDR	8	/* default of -maxHandshakesPerAddr */
#define CLI_MAX_CIDRS	32
/* Secret-bearing arguments (-pass, -encPass, -proxy) cli_scrub_argv wipes. */
#define CLI_MAX_SCRUB	16

/* -udpTimeout and -udpFlows: defaults, and the most flows one forward
 * may have. */
#define CLI_UDP_TIMEOUT		60
#define CLI_UDP_FLOWS		256
#define CLI_UDP_FLOWS_MAX	8192
/* -socks and -transparent listeners, together. */
#define CLI_MAX_DYN	8

/* cli_opts.argv_secrets: which secrets came from the command line. */
#define CLI_ARGV_PASS		0x1
#define CLI_ARGV_ENCPASS	0x2
#define CLI_ARGV_PROXY		0x4

/* -transport (cli_opts.transport). */
#define CLI_TRANSPORT_AUTO	0	/* websocket, HTTP once refused */
#define CLI_TRANSPORT_WS	1
#define CLI_TRANSPORT_HTTP	2

/* Indices of common/mode.c's table (mode_flags, mode_name). */
enum cli_mode {
	MODE_WSSERVER,
	MODE_R_WSSERVER,
	MODE_SERVER,
	MODE_R_SERVER,
	MODE_WSCLIENT,
	MODE_R_WSCLIENT,
	MODE_CLIENT,
	MODE_R_CLIENT
};

struct cli_opts {
	enum cli_mode	 mode;
	struct hostinfo	 server;
	struct msg_fwdlist fwds;	/* .null unused */
	char		*pass;		/* malloc'd, cleansed by cli_free */
	char		*encpass;
	int		 enc_count;	/* -encCount, default -1 */
	size_t		 ncidr;
	struct cidr	 cidrs[CLI_MAX_CIDRS];	/* -ip, repeatable */
	int		 interval;	/* -int seconds, default 20, min 2 */
	char		 header[1024];	/* -header canonicalised "Name: value", or "" */
	char		 wspath[1024];	/* -wspath, default "/" */
	char		 session[256];	/* -session, default a random UUIDv4 */
	char		 ua[256];	/* -UA, default "Go Http Client" */
	char		 ctrl[32];	/* -ctrl: "", "stop", "bench", ... */
	int		 omit;		/* -omit */
	int		 verbose;	/* -verbose / -debug */
	int		 log_json;	/* -logFormat json */
	int		 handshake_timeout;	/* -handshakeTimeout s, default 10 */
	int		 open_timeout;	/* -openTimeout s, CTRL_RESP_HEADER, default 30 */
	int		 session_timeout;	/* -sessionTimeout s, default 600 */
	int		 max_hs_per_addr;	/* -maxHandshakesPerAddr, default 8 */
	char		 proxy[1024];	/* -proxy URL or ""; cleansed */
	int		 tls;		/* -tls: wss:// */
	char		 cafile[1024];	/* -cafile, "" for the system's */
	int		 insecure;	/* -insecure: no certificate check */
	int		 allow_client_fwds;	/* -allowClientForwards (servers) */
	int		 accept_server_fwds;	/* -acceptServerForwards (clients) */
	int		 no_aead;	/* -noAead: never offer the AEAD mode */
	int		 window;	/* -window, in packets (TUN_WINDOW_*) */
	int		 renew;		/* -renew: a gone session is replaced */
	int		 transport;	/* -transport: CLI_TRANSPORT_* */
	/* Per-tenant limits (worker: the policy's; 0: none); its
	 * session_timeout is unused, session_timeout above is the one. */
	struct ctlmsg_limits lim;
	struct {
		char	*p;		/* into argv */
		size_t	 len;
	}		 scrub[CLI_MAX_SCRUB];	/* secrets in argv */
	size_t		 nscrub;
	int		 argv_secrets;	/* CLI_ARGV_* */
	int		 udp_timeout;	/* -udpTimeout s: an idle UDP flow ends */
	int		 udp_flows;	/* -udpFlows: flows per UDP forward */
	/*
	 * Dynamic forwards (cli_socks.c): a client's listeners whose
	 * connections each name their own destination, and the rules a
	 * server dials such destinations by.
	 */
	struct cli_dyn {
		int	 kind;		/* CLI_DYN_* */
		char	 host[ADDR_NAME_MAX];	/* where it listens */
		int	 port;
	}		 dyn[CLI_MAX_DYN];
	size_t		 ndyn;
	char		*socks_auth;	/* "user:password" or NULL; cleansed */
	struct destpat_list dests;	/* -destinations, or the policy's */
};

/* cli_dyn.kind */
#define CLI_DYN_SOCKS		1	/* -socks: SOCKS5 CONNECT */
#define CLI_DYN_TRANSPARENT	2	/* -transparent: SO_ORIGINAL_DST */

/* Mode helpers. */
int		 cli_mode_is_server(enum cli_mode m);
int		 cli_mode_is_ws(enum cli_mode m);
int		 cli_mode_is_reverse(enum cli_mode m);
const char	*cli_mode_name(enum cli_mode m);

/*
 * Parses argv.  Returns 0 when the options are complete, 1 when --help or
 * --version was asked for (out holds the text to print on stdout), -1 on a
 * usage error (err names the bad argument).
 */
int	cli_parse(int argc, char **argv, struct cli_opts *o, char *out,
	    size_t outcap, char *err);
void	cli_free(struct cli_opts *o);
/* o with every default of the command line and no secret (a worker's
 * starting point before its CONFIG). */
void	cli_defaults(struct cli_opts *o);
/*
 * Overwrites the secrets cli_parse found in the argv it was given (which
 * must be writable and still alive), so /proc/PID/cmdline stops showing
 * them.
 */
void	cli_scrub_argv(struct cli_opts *o);
/*
 * Logs a warning for each empty, weak (secret_weak) or command-line
 * secret of o.
 */
void	cli_check_secrets(const struct cli_opts *o);
/* The usage text. */
const char *cli_usage(void);

#endif
