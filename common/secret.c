#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "err.h"
#include "secret.h"

extern char **environ;

/*
 * Whether the open file fd (named path) may hold a secret: a regular
 * file that only its owner may access.  Returns 0, or -1 with err.
 */
static int
secret_file_check(int fd, const char *path, char *err)
{
	struct stat st;

	if (fstat(fd, &st) == -1) {
		err_set(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		err_set(err, "%s: not a regular file", path);
		return -1;
	}
	/*
	 * Another local user who can read the file has the secret; one who
	 * can write it chooses it.  Refuse, as ssh does with private keys.
	 */
	if ((st.st_mode & 077) != 0) {
		err_set(err, "%s: group or others may access it (mode %04o); "
		    "chmod 600 it", path, (unsigned)(st.st_mode & 07777));
		return -1;
	}
	return 0;
}

/*
 * Reads fd into buf (SECRET_FILE_MAX + 1 bytes at most: one byte more
 * than allowed tells a long file from a full one).  Returns the length,
 * or -1 with err.
 */
static ssize_t
secret_file_slurp(int fd, const char *path, char *buf, char *err)
{
	size_t	 len = 0;
	ssize_t	 n;

	while (len < SECRET_FILE_MAX + 1) {
		n = read(fd, buf + len, SECRET_FILE_MAX + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			err_set(err, "%s: %s", path, strerror(errno));
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	return (ssize_t)len;
}

/*
 * The secret in buf[0..len): one trailing line end dropped, then
 * NUL-terminated.  Returns 0, or -1 with err when it is too long, empty
 * or holds a NUL byte.
 */
static int
secret_file_text(char *buf, size_t len, const char *path, char *err)
{
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len > SECRET_FILE_MAX) {
		err_set(err, "%s: longer than %d bytes", path,
		    SECRET_FILE_MAX);
		return -1;
	}
	if (len == 0) {
		err_set(err, "%s: empty", path);
		return -1;
	}
	if (memchr(buf, '\0', len) != NULL) {
		err_set(err, "%s: holds a NUL byte", path);
		return -1;
	}
	buf[len] = '\0';
	return 0;
}

int
secret_read_file(const char *path, char **out, char *err)
{
	char	*buf = NULL;
	ssize_t	 len;
	int	 fd, rc = -1;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		err_set(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (secret_file_check(fd, path, err) == -1)
		goto done;
	if ((buf = malloc(SECRET_FILE_MAX + 2)) == NULL) {
		err_set(err, "%s: out of memory", path);
		goto done;
	}
	if ((len = secret_file_slurp(fd, path, buf, err)) == -1 ||
	    secret_file_text(buf, (size_t)len, path, err) == -1)
		goto done;
	*out = buf;
	buf = NULL;
	rc = 0;
done:
	if (buf != NULL) {
		OPENSSL_cleanse(buf, SECRET_FILE_MAX + 2);
		free(buf);
	}
	close(fd);
	return rc;
}

int
secret_from_env(const char *name, char **out, char *err)
{
	size_t	 nlen = strlen(name), i;
	char	*v;

	*out = NULL;
	if ((v = getenv(name)) == NULL)
		return 0;
	if ((*out = strdup(v)) == NULL) {
		err_set(err, "%s: out of memory", name);
		return -1;
	}
	/*
	 * getenv points into environ, which for the variables tunneld was
	 * started with is the memory /proc/PID/environ shows: wipe every
	 * copy there before unsetenv drops the pointers.
	 */
	for (i = 0; environ != NULL && environ[i] != NULL; i++)
		if (strncmp(environ[i], name, nlen) == 0 &&
		    environ[i][nlen] == '=')
			OPENSSL_cleanse(environ[i] + nlen + 1,
			    strlen(environ[i] + nlen + 1));
	unsetenv(name);
	return 0;
}

/* Character classes: which class c is in, and the size of each. */
static int
secret_class(unsigned char c)
{
	if (c >= 'a' && c <= 'z')
		return 0;
	if (c >= 'A' && c <= 'Z')
		return 1;
	if (c >= '0' && c <= '9')
		return 2;
	if (c >= 0x20 && c < 0x7f)
		return 3;
	return 4;
}

/* log2(x) for x >= 1, to about 20 bits, without libm. */
static double
secret_log2(double x)
{
	double	 r = 0, f = 1;
	int	 i;

	while (x >= 2) {
		x /= 2;
		r += 1;
	}
	for (i = 0; i < 20; i++) {
		x *= x;
		f /= 2;
		if (x >= 2) {
			x /= 2;
			r += f;
		}
	}
	return r;
}

double
secret_entropy_bits(const char *s)
{
	static const int	 size[5] = { 26, 26, 10, 33, 128 };
	const unsigned char	*p = (const unsigned char *)s;
	int			 used[5] = { 0 }, pool = 0, k;
	double			 per, bits = 0;
	size_t			 i;

	for (i = 0; p[i] != '\0'; i++)
		used[secret_class(p[i])] = 1;
	for (k = 0; k < 5; k++)
		if (used[k])
			pool += size[k];
	if (pool == 0)
		return 0;
	per = secret_log2((double)pool);
	for (i = 0; p[i] != '\0'; i++) {
		/* "aaaa", "1234", "zyx": each step is nearly free to guess. */
		if (i > 0 && (p[i] == p[i - 1] || p[i] == p[i - 1] + 1 ||
		    p[i] + 1 == p[i - 1]))
			bits += 1;
		else
			bits += per;
	}
	return bits;
}

int
secret_weak(const char *s, char *why)
{
	size_t	 len = strlen(s);
	double	 bits;

	if (len == 0)
		return 0;
	if (len < SECRET_MIN_LEN) {
		err_set(why, "%zu characters, fewer than %d", len,
		    SECRET_MIN_LEN);
		return 1;
	}
	bits = secret_entropy_bits(s);
	if (bits < SECRET_MIN_BITS) {
		err_set(why, "about %.0f bits of entropy, less than %d",
		    bits, SECRET_MIN_BITS);
		return 1;
	}
	return 0;
}
