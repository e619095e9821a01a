/*
 * tunneld: a kptunnel-compatible tunnel endpoint.  See tunneld --help.
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "err.h"
#include "log.h"
#include "tunneld.h"

static void
tun_signal(uv_signal_t *sig, int signum)
{
	struct tun *t = sig->data;

	log_info("signal %d: stopping", signum);
	tun_stop(t, 0);
}

int
main(int argc, char **argv)
{
	struct cli_opts	 o;
	struct tun	 t;
	char		 err[ERR_LEN], out[16384];
	int		 rc;

	if (argc > 1 && strcmp(argv[1], "worker") == 0)
		return worker_main(argc, argv);
	if (argc > 1 && strcmp(argv[1], "zygote") == 0)
		return zygote_main(argc, argv);
	memset(&o, 0, sizeof(o));
	rc = cli_parse(argc, argv, &o, out, sizeof(out), err);
	if (rc == 1) {
		fputs(out, stdout);
		return 0;
	}
	if (rc == -1) {
		fprintf(stderr, "tunneld: %s\nTry 'tunneld --help'.\n", err);
		return 2;
	}
	cli_scrub_argv(&o);
	log_init("tunneld", o.verbose);
	signal(SIGPIPE, SIG_IGN);
	cli_check_secrets(&o);

	memset(&t, 0, sizeof(t));
	t.loop = uv_default_loop();
	t.o = &o;
	TAILQ_INIT(&t.sessions);
	TAILQ_INIT(&t.handshakes);
	crypto_magic(o.pass, o.encpass, t.magic);
	uv_signal_init(t.loop, &t.sigint);
	uv_signal_init(t.loop, &t.sigterm);
	t.sigint.data = t.sigterm.data = &t;
	uv_signal_start(&t.sigint, tun_signal, SIGINT);
	uv_signal_start(&t.sigterm, tun_signal, SIGTERM);

	if (cli_mode_is_server(o.mode))
		rc = server_start(&t, err);
	else
		rc = client_start(&t, err);
	if (rc == -1) {
		log_err("%s", err);
		tun_stop(&t, 1);
	}
	uv_run(t.loop, UV_RUN_DEFAULT);
	uv_loop_close(t.loop);
	client_free(&t);
	cli_free(&o);
	return t.exit_code;
}
