/*
 * libFuzzer target for the kptunnel JSON messages: every decoder reads the
 * input; whatever decodes must encode and decode back to the same struct,
 * and gojson_dump's text must load back to the same JSON value.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "gojson.h"
#include "msg.h"

/* gojson_load refuses more; longer re-encodings cannot be read back. */
#define FUZZ_JSON_MAX	65535

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)	do { if (!(c)) __builtin_trap(); } while (0)

/*
 * Encodes the decoded struct a, decodes the text into b and requires
 * a == b.  The structs are zeroed by the decoders, so memcmp is exact.
 */
#define ROUNDTRIP(type, a, b, enc, dec) do {				\
	size_t	 _n;							\
	char	*_s = enc(&(a), &_n);					\
									\
	CHECK(_s != NULL);						\
	CHECK(strlen(_s) == _n);					\
	if (_n <= FUZZ_JSON_MAX) {					\
		CHECK(dec((const uint8_t *)_s, _n, &(b), err) == 0);	\
		CHECK(memcmp(&(a), &(b), sizeof(type)) == 0);		\
	}								\
	free(_s);							\
} while (0)

static void
fuzz_ctrl(const uint8_t *data, size_t size)
{
	static struct msg_header h, h2;
	static struct msg_resp_header r, r2;
	char	 err[ERR_LEN], *s;
	size_t	 n;
	int	 type;

	memset(&h, 0, sizeof(h));
	memset(&r, 0, sizeof(r));
	type = msg_ctrl_decode(data, size, &h, &r, err);
	if (type == -1)
		return;
	CHECK(size > 0 && type == data[0]);
	if (type == MSG_CTRL_HEADER || type == MSG_CTRL_UDP_HEADER) {
		CHECK(h.udp == (type == MSG_CTRL_UDP_HEADER));
		s = msg_header_encode(&h, &n);
		CHECK(s != NULL && (uint8_t)s[0] == type);
		if (n <= FUZZ_JSON_MAX + 1) {
			CHECK(msg_ctrl_decode((const uint8_t *)s, n, &h2, NULL,
			    err) == type);
			CHECK(memcmp(&h, &h2, sizeof(h)) == 0);
		}
		free(s);
	} else if (type == MSG_CTRL_RESP_HEADER) {
		s = msg_resp_header_encode(&r, &n);
		CHECK(s != NULL && (uint8_t)s[0] == MSG_CTRL_RESP_HEADER);
		if (n <= FUZZ_JSON_MAX + 1) {
			CHECK(msg_ctrl_decode((const uint8_t *)s, n, NULL, &r2,
			    err) == MSG_CTRL_RESP_HEADER);
			CHECK(memcmp(&r, &r2, sizeof(r)) == 0);
		}
		free(s);
	}
}

static void
fuzz_gojson(const uint8_t *data, size_t size)
{
	json_t	*v, *w;
	char	 err[ERR_LEN], *s;
	size_t	 n;

	if ((v = gojson_load(data, size, err)) == NULL)
		return;
	s = gojson_dump(v, &n);
	CHECK(s != NULL && strlen(s) == n);
	/* Go's escapes leave none of these raw. */
	CHECK(strpbrk(s, "<>&") == NULL);
	CHECK(strstr(s, "\xe2\x80\xa8") == NULL);
	if (n <= FUZZ_JSON_MAX) {
		w = gojson_load(s, n, err);
		CHECK(w != NULL);
		CHECK(json_equal(v, w));
		json_decref(w);
	}
	free(s);
	json_decref(v);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Static: the structs are large for a fuzzer's stack. */
	static struct msg_challenge c, c2;
	static struct msg_response m, m2;
	static struct msg_result r, r2;
	char	 err[ERR_LEN];

	if (msg_challenge_decode(data, size, &c, err) == 0)
		ROUNDTRIP(struct msg_challenge, c, c2, msg_challenge_encode,
		    msg_challenge_decode);
	if (msg_response_decode(data, size, &m, err) == 0) {
		CHECK(m.fwds.n <= MSG_MAX_FWDS);
		CHECK(!m.fwds.null || m.fwds.n == 0);
		ROUNDTRIP(struct msg_response, m, m2, msg_response_encode,
		    msg_response_decode);
	}
	if (msg_result_decode(data, size, &r, err) == 0) {
		CHECK(r.fwds.n <= MSG_MAX_FWDS);
		ROUNDTRIP(struct msg_result, r, r2, msg_result_encode,
		    msg_result_decode);
	}
	fuzz_ctrl(data, size);
	fuzz_gojson(data, size);
	return 0;
}
