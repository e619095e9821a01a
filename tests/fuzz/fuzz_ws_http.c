/*
 * libFuzzer target for the websocket handshake parsers:
 * wsup_server_parse_request(), wsup_client_check_response() and
 * wsup_client_refusal() on the same input.  The input is copied into a buffer of its exact size, without NUL,
 * so that ASan catches any read past len.  Invariants are checked with
 * abort(): a failure is a parser bug, never a property of the input.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "wsup.h"

#define CHECK(x)	do { if (!(x)) abort(); } while (0)

/* RFC 6455 key; its accept is s3pPLMBiTxaQ9kYGzzhZRbK+xOo= (seeds use it). */
#define KEY	"dGhlIHNhbXBsZSBub25jZQ=="

static int
err_ok(const char *err)
{
	return memchr(err, '\0', ERR_LEN) != NULL && err[0] != '\0';
}

static void
check_server(const char *buf, size_t len)
{
	struct wsup_req	 req;
	char			 err[ERR_LEN];
	ssize_t			 n, m;
	int			 status;

	err[0] = '\0';
	status = -1;
	n = wsup_server_parse_request(buf, len, &req, &status, err);
	CHECK(n >= -1 && n <= (ssize_t)len && n <= WSUP_HEAD_MAX);
	if (n == -1) {
		CHECK(status == 400 || status == 405 || status == 414 ||
		    status == 426 || status == 431);
		CHECK(err_ok(err));
		return;
	}
	if (n == 0) {
		CHECK(len < WSUP_HEAD_MAX);
		return;
	}
	CHECK(status == 101);
	CHECK(n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
	CHECK(memchr(req.target, '\0', sizeof(req.target)) != NULL);
	CHECK(req.target[0] != '\0');
	CHECK(strlen(req.key) == 24);
	CHECK(req.have_origin == 0 || req.have_origin == 1);
	/* The head alone gives the same answer; one byte less, none yet. */
	CHECK(wsup_server_parse_request(buf, n, &req, &status, err) == n);
	m = wsup_server_parse_request(buf, n - 1, &req, &status, err);
	CHECK(m == 0);
}

static void
check_client(const char *buf, size_t len)
{
	char	err[ERR_LEN];
	ssize_t	n;
	int	status, unknown;

	err[0] = '\0';
	n = wsup_client_check_response(buf, len, KEY, err);
	CHECK(n >= -1 && n <= (ssize_t)len && n <= WSUP_HEAD_MAX);
	status = wsup_client_refusal(buf, len, &unknown);
	CHECK(status == -1 || (status >= 100 && status <= 999));
	CHECK(unknown == 0 || (unknown == 1 && status != -1));
	if (n == -1) {
		CHECK(err_ok(err));
		return;
	}
	/* A head the client takes has a status line the refusal reads. */
	if (n > 0)
		CHECK(status == 101);
	if (n == 0) {
		CHECK(len < WSUP_HEAD_MAX);
		return;
	}
	CHECK(n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
	CHECK(n >= 12 && memcmp(buf, "HTTP/1.1 101", 12) == 0);
	CHECK(wsup_client_check_response(buf, n, KEY, err) == n);
	CHECK(wsup_client_check_response(buf, n - 1, KEY, err) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*buf;

	buf = malloc(size ? size : 1);
	CHECK(buf != NULL);
	memcpy(buf, data, size);
	check_server(buf, size);
	check_client(buf, size);
	free(buf);
	return 0;
}
