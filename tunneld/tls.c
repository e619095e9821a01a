/*
 * TLS client over OpenSSL memory BIOs.  See tls.h.
 */

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "err.h"
#include "tls.h"

struct tls {
	SSL	*ssl;
	BIO	*rbio;		/* records read, for OpenSSL */
	BIO	*wbio;		/* records OpenSSL wrote, to send */
};

struct tls *
tls_new(void *ssl_ctx, const char *host, int verify_name, char *err)
{
	struct tls	*t;
	struct in6_addr	 a6;
	struct in_addr	 a4;
	BIO		*rbio, *wbio;
	int		 is_ip;

	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->ssl = SSL_new(ssl_ctx)) == NULL)
		goto fail;
	rbio = BIO_new(BIO_s_mem());
	wbio = BIO_new(BIO_s_mem());
	if (rbio == NULL || wbio == NULL) {
		BIO_free(rbio);
		BIO_free(wbio);
		goto fail;
	}
	BIO_set_mem_eof_return(rbio, -1);
	SSL_set_bio(t->ssl, rbio, wbio);	/* the SSL owns them now */
	t->rbio = rbio;
	t->wbio = wbio;
	SSL_set_connect_state(t->ssl);
	is_ip = inet_pton(AF_INET, host, &a4) == 1 ||
	    inet_pton(AF_INET6, host, &a6) == 1;
	/* SNI is sent through a proxy too, unlike kptunnel. */
	if (!is_ip)
		SSL_set_tlsext_host_name(t->ssl, host);
	if (verify_name) {
		if (is_ip)
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl),
			    host);
		else
			SSL_set1_host(t->ssl, host);
	}
	return t;
fail:
	err_set(err, "cannot set up TLS");
	tls_free(t);
	return NULL;
}

void
tls_free(struct tls *t)
{
	if (t == NULL)
		return;
	SSL_free(t->ssl);	/* frees the BIOs */
	free(t);
}

/* Why the session failed, from the verify result and OpenSSL's queue. */
static void
tls_error(struct tls *t, char *err)
{
	long		vr = SSL_get_verify_result(t->ssl);
	unsigned long	e = ERR_get_error();

	if (vr != X509_V_OK)
		err_set(err, "TLS: certificate verification failed: %s",
		    X509_verify_cert_error_string(vr));
	else if (e != 0)
		err_set(err, "TLS: %s", ERR_reason_error_string(e));
	else
		err_set(err, "TLS: connection closed");
	ERR_clear_error();
}

int
tls_feed(struct tls *t, const void *p, size_t n)
{
	return BIO_write(t->rbio, p, (int)n) == (int)n ? 0 : -1;
}

int
tls_handshake(struct tls *t, char *err)
{
	int rc;

	if ((rc = SSL_do_handshake(t->ssl)) == 1)
		return 1;
	if (SSL_get_error(t->ssl, rc) == SSL_ERROR_WANT_READ)
		return 0;
	tls_error(t, err);
	return -1;
}

ssize_t
tls_read(struct tls *t, void *p, size_t cap, char *err)
{
	int rc, e;

	if ((rc = SSL_read(t->ssl, p, (int)cap)) > 0)
		return rc;
	e = SSL_get_error(t->ssl, rc);
	if (e == SSL_ERROR_WANT_READ)
		return 0;
	if (e == SSL_ERROR_ZERO_RETURN)
		err_set(err, "TLS closed by peer");
	else
		tls_error(t, err);
	return -1;
}

int
tls_write(struct tls *t, const void *p, size_t n)
{
	return SSL_write(t->ssl, p, (int)n) > 0 ? 0 : -1;
}

void
tls_shutdown(struct tls *t)
{
	SSL_shutdown(t->ssl);
}

size_t
tls_pending(const struct tls *t)
{
	return BIO_ctrl_pending(t->wbio);
}

ssize_t
tls_take(struct tls *t, void *p, size_t cap)
{
	int got;

	if (BIO_ctrl_pending(t->wbio) == 0)
		return 0;
	got = BIO_read(t->wbio, p, (int)cap);
	return got > 0 ? got : -1;
}
