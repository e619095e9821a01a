#include <stdlib.h>
#include <string.h>

#include "buf.h"

int
buf_append(struct buf *b, const void *p, size_t n, size_t max)
{
	size_t	 unread = b->len - b->off, ncap;
	uint8_t	*nd;

	if (n > max || unread > max - n)
		return -1;
	if (b->len + n > b->cap && b->off > 0) {
		memmove(b->data, b->data + b->off, unread);
		b->off = 0;
		b->len = unread;
	}
	if (b->len + n > b->cap) {
		ncap = b->cap ? b->cap : 4096;
		while (ncap < b->len + n)
			ncap *= 2;
		if ((nd = realloc(b->data, ncap)) == NULL)
			return -1;
		b->data = nd;
		b->cap = ncap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

void
buf_consume(struct buf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len) {
		b->off = b->len = 0;
		/* Give a large idle buffer back: sessions are mostly idle. */
		if (b->cap > 256 * 1024) {
			free(b->data);
			b->data = NULL;
			b->cap = 0;
		}
	}
}

size_t
buf_unread(const struct buf *b)
{
	return b->len - b->off;
}

uint8_t *
buf_head(const struct buf *b)
{
	return b->data + b->off;
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}
