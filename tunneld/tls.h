#ifndef TLS_H
#define TLS_H

/*
 * A TLS client over memory buffers: the caller moves the ciphertext
 * between the socket and this module (tls_feed in, tls_take out), so TLS
 * runs on the same event loop and buffers as plain TCP and never touches
 * a file descriptor.  All of tunneld's OpenSSL session code is here.
 */

#include <stddef.h>
#include <sys/types.h>

struct tls;

/*
 * A client session on ssl_ctx (an SSL_CTX) for host: SNI unless host is an
 * IP address, and the certificate's name or address checked if
 * verify_name.  Returns NULL with the reason in err.
 */
struct tls	*tls_new(void *ssl_ctx, const char *host, int verify_name,
		    char *err);

/* Frees the session (NULL allowed). */
void		 tls_free(struct tls *t);

/* Hands n bytes of ciphertext read from the peer.  Returns 0 or -1. */
int		 tls_feed(struct tls *t, const void *p, size_t n);

/*
 * Moves the handshake on.  Returns 1 once it is done, 0 if it needs more
 * of the peer's bytes, -1 on failure with the reason in err.  Its output
 * waits in tls_pending().
 */
int		 tls_handshake(struct tls *t, char *err);

/*
 * Decrypts into p (cap bytes).  Returns the count, 0 if more ciphertext is
 * needed, -1 if the session ended (err: closed by the peer, or why it
 * failed).
 */
ssize_t		 tls_read(struct tls *t, void *p, size_t cap, char *err);

/* Encrypts n bytes; the records wait in tls_pending().  Returns 0 or -1. */
int		 tls_write(struct tls *t, const void *p, size_t n);

/* Queues close_notify (its record waits in tls_pending()). */
void		 tls_shutdown(struct tls *t);

/* Ciphertext bytes waiting to be written to the peer. */
size_t		 tls_pending(const struct tls *t);

/*
 * Moves up to cap bytes of waiting ciphertext into p.  Returns the count
 * (0 if none), or -1 on failure.
 */
ssize_t		 tls_take(struct tls *t, void *p, size_t cap);

#endif
