/*
 * libFuzzer target: control messages as a worker or the dispatcher
 * receives them (ctlmsg_recv over a real SOCK_SEQPACKET pair), and a
 * worker's reading of CTL_CONFIG.
 */

#include <sys/socket.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "ctlmsg.h"
#include "err.h"
#include "tunneld.h"

static struct ctlmsg m;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct worker_config	 wc;
	struct cli_opts		 o;
	char			 err[ERR_LEN];
	int			 sv[2], fd = -1, rc;

	if (size == 0 || size >= CTL_MSG_MAX ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == -1)
		return 0;
	if (send(sv[0], data, size, 0) != (ssize_t)size)
		goto done;
	rc = ctlmsg_recv(sv[1], &m, &fd, err);
	if (rc == 1 && ctlmsg_init(&(struct ctlmsg){ 0 }, m.type) == -1)
		abort();
	if (rc == 1 && m.type == CTL_CONFIG) {
		memset(&o, 0, sizeof(o));
		memset(&wc, 0, sizeof(wc));
		o.enc_count = -1;
		o.interval = 20;
		o.pass = strdup("");
		o.encpass = strdup("");
		if (worker_apply_config(&m.u.config, &o, &wc, err) == 0 &&
		    (o.pass == NULL || o.encpass == NULL ||
		    o.fwds.n > MSG_MAX_FWDS || wc.sock_path[0] == '\0'))
			abort();
		cli_free(&o);
	}
	if (rc == 1)
		ctlmsg_clear(&m);
done:
	if (fd != -1)
		close(fd);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
