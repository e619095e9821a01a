/*
 * tunneld: a kptunnel-compatible tunnel endpoint.  See tunneld --help.
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "tunneld.h"

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
	log_set_json(o.log_json);
	signal(SIGPIPE, SIG_IGN);
	cli_check_secrets(&o);

	tun_init(&t, uv_default_loop(), &o, NULL);
	if (tun_start(&t, err) == -1) {
		log_err("%s", err);
		tun_stop(&t, 1);
	}
	rc = tun_run(&t);
	tun_free(&t);
	cli_free(&o);
	return rc;
}
