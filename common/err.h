#ifndef ERR_H
#define ERR_H

/*
 * common/ functions write a human readable reason into a caller's buffer of
 * ERR_LEN bytes (NULL allowed) and return -1 or a negative errno.
 */
#define ERR_LEN	256

void	err_set(char *err, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

#endif
