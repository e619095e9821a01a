/*
 * libFuzzer target: the HTTP proxy's answer (peer input) and the -proxy
 * URL parser.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "proxy.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		 err[ERR_LEN], *s, out[2048];
	struct proxy	 p;
	ssize_t		 n;

	n = proxy_response((const char *)data, size, err);
	if (n > 0 && ((size_t)n > size || n < 4 ||
	    memcmp(data + n - 4, "\r\n\r\n", 4) != 0))
		abort();
	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (proxy_parse_url(s, &p, err) == 0) {
		if (p.port <= 0 || p.port > 65535 || p.host[0] == '\0' ||
		    strlen(p.auth) > PROXY_B64_LEN(PROXY_CRED_MAX))
			abort();
		(void)proxy_request(out, sizeof(out), &p, "example:1", "ua");
	}
	free(s);
	return 0;
}
