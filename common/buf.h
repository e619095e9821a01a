#ifndef BUF_H
#define BUF_H

/* A growable byte buffer: unread data lives in data[off .. len). */

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t	*data;
	size_t	 off;
	size_t	 len;
	size_t	 cap;
};

/* Appends n bytes; -1 if that would exceed max bytes unread or on ENOMEM. */
int	buf_append(struct buf *b, const void *p, size_t n, size_t max);
void	buf_consume(struct buf *b, size_t n);
size_t	buf_unread(const struct buf *b);
uint8_t	*buf_head(const struct buf *b);
void	buf_free(struct buf *b);

#endif
