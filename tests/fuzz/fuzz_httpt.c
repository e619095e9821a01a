/*
 * libFuzzer target: the HTTP transport's wire (common/httpt.c), all of it
 * peer input: a request head as a server reads it, an answer head as a
 * client (or the dispatcher, from a worker) reads it, and a chunked body
 * fed in two pieces split where the first byte says.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "http.h"
#include "httpt.h"

static void
fuzz_request(const char *buf, size_t size)
{
	struct httpt_req r;
	char		 err[ERR_LEN];
	ssize_t		 hlen;
	int		 status = 0;

	if ((hlen = http_head_end(buf, size, &status, err)) <= 0)
		return;
	(void)httpt_kind_of(buf, (size_t)hlen);
	if (httpt_parse_request(buf, (size_t)hlen, &r, &status, err) == -1) {
		if (status < 400 || status > 431)
			abort();
		return;
	}
	if (r.kind < HTTPT_OPEN || r.kind > HTTPT_CLOSE ||
	    r.clen > HTTPT_BODY_MAX || r.off >= HTTPT_OFF_MAX ||
	    (r.kind != HTTPT_OPEN && !httpt_id_valid(r.id, strlen(r.id))) ||
	    (r.kind != HTTPT_PUSH && r.clen != 0))
		abort();
}

static void
fuzz_response(const char *buf, size_t size)
{
	struct httpt_resp r;
	char		 err[ERR_LEN];
	ssize_t		 n;

	n = httpt_parse_response(buf, size, &r, err);
	if (n > 0 && ((size_t)n > size || n < 4 ||
	    memcmp(buf + n - 4, "\r\n\r\n", 4) != 0 || r.status < 100 ||
	    r.status > 999 || (r.chunked && r.clen != -1) ||
	    r.off >= (int64_t)HTTPT_OFF_MAX ||
	    (r.id[0] != '\0' && !httpt_id_valid(r.id, strlen(r.id)))))
		abort();
}

static void
fuzz_chunked(const uint8_t *data, size_t size)
{
	struct httpt_chunked d;
	uint8_t		 out[4096];
	size_t		 outn = 0, cut;
	ssize_t		 a, b = 0;
	char		 err[ERR_LEN];

	if (size == 0)
		return;
	cut = data[0] % size;
	data++;
	size--;
	if (cut > size)
		cut = size;
	memset(&d, 0, sizeof(d));
	a = httpt_dechunk(&d, data, cut, out, sizeof(out), &outn, err);
	if (a < 0)
		return;
	if ((size_t)a > cut || (!d.done && (size_t)a != cut))
		abort();
	if (!d.done) {
		b = httpt_dechunk(&d, data + a, size - a, out, sizeof(out),
		    &outn, err);
		if (b < 0)
			return;
		if ((size_t)b > size - a || (!d.done && (size_t)b != size - a))
			abort();
	}
	if (outn > sizeof(out))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_request((const char *)data, size);
	fuzz_response((const char *)data, size);
	fuzz_chunked(data, size);
	return 0;
}
