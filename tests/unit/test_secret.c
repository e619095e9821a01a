/*
 * secret_*: secret files (permissions, newline, size), environment
 * variables (wiped after reading), and the strength estimate behind the
 * weak-secret warnings.
 */

#include <sys/stat.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "secret.h"

static char	dir[] = "/tmp/test_secret.XXXXXX";

extern char **environ;

static const char *
put(const char *name, const char *content, size_t len, mode_t mode)
{
	static char	 path[512];
	FILE		*f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(fwrite(content, 1, len, f), len);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static void
test_file(void **state)
{
	char	*s, err[ERR_LEN], big[SECRET_FILE_MAX + 2];

	assert_int_equal(secret_read_file(put("a", "s3cret\n", 7, 0600), &s,
	    err), 0);
	assert_string_equal(s, "s3cret");
	free(s);
	assert_int_equal(secret_read_file(put("b", "s3 cret \r\n", 10, 0400),
	    &s, err), 0);
	assert_string_equal(s, "s3 cret ");	/* only the newline goes */
	free(s);
	assert_int_equal(secret_read_file(put("c", "x\n\n", 3, 0600), &s,
	    err), 0);
	assert_string_equal(s, "x\n");		/* one newline only */
	free(s);
	memset(big, 'k', sizeof(big));
	assert_int_equal(secret_read_file(put("d", big, SECRET_FILE_MAX,
	    0600), &s, err), 0);
	assert_int_equal(strlen(s), SECRET_FILE_MAX);
	free(s);
}

static void
test_file_refused(void **state)
{
	char	*s = (char *)"x", err[ERR_LEN], big[SECRET_FILE_MAX + 2];

	/* Group or others may read it: refused, and the mode is named. */
	assert_int_equal(secret_read_file(put("g", "s\n", 2, 0640), &s, err),
	    -1);
	assert_null(s);
	assert_non_null(strstr(err, "mode 0640"));
	assert_int_equal(secret_read_file(put("o", "s\n", 2, 0604), &s, err),
	    -1);
	assert_int_equal(secret_read_file(put("w", "s\n", 2, 0620), &s, err),
	    -1);
	assert_int_equal(secret_read_file(put("e", "\n", 1, 0600), &s, err),
	    -1);
	assert_non_null(strstr(err, "empty"));
	assert_int_equal(secret_read_file(put("n", "a\0b", 3, 0600), &s, err),
	    -1);
	memset(big, 'k', sizeof(big));
	assert_int_equal(secret_read_file(put("l", big, SECRET_FILE_MAX + 1,
	    0600), &s, err), -1);
	assert_non_null(strstr(err, "longer"));
	assert_int_equal(secret_read_file(dir, &s, err), -1);
	assert_non_null(strstr(err, "not a regular file"));
	assert_int_equal(secret_read_file("/nonexistent/x", &s, err), -1);
	assert_null(s);
}

static void
test_env(void **state)
{
	char	*s, err[ERR_LEN];
	char	 var[] = "TEST_SECRET_VAR=hunter2hunter2";
	size_t	 i;

	/* putenv keeps our buffer: it stands for /proc/PID/environ. */
	assert_int_equal(putenv(var), 0);
	assert_int_equal(secret_from_env("TEST_SECRET_VAR", &s, err), 0);
	assert_string_equal(s, "hunter2hunter2");
	free(s);
	assert_null(getenv("TEST_SECRET_VAR"));
	assert_null(strstr(var + 16, "hunter2"));
	for (i = 16; i < sizeof(var) - 1; i++)
		assert_int_equal(var[i], '\0');
	for (i = 0; environ[i] != NULL; i++)
		assert_null(strstr(environ[i], "hunter2"));
	assert_int_equal(secret_from_env("TEST_SECRET_VAR", &s, err), 0);
	assert_null(s);
}

static void
test_entropy(void **state)
{
	char	 why[ERR_LEN];

	assert_true(secret_entropy_bits("") == 0);
	/* 26 letters: log2(26) = 4.70 per byte. */
	assert_true(secret_entropy_bits("q") > 4.69 &&
	    secret_entropy_bits("q") < 4.71);
	/* Repeats and runs cost 1 bit each. */
	assert_true(secret_entropy_bits("aaaaaaaaaaaaaaaaaaaaaaaa") < 28);
	assert_true(secret_entropy_bits("abcdefghijklmnopqrstuvwxyz") < 31);
	assert_true(secret_entropy_bits("9876543210") < 13);
	/* 22 random base64 characters: 22 * log2(95) ~ 144. */
	assert_true(secret_entropy_bits("Qx7vK2pLm9Rz4TnW8yHc3F") > 128);

	assert_int_equal(secret_weak("", why), 0);
	assert_int_equal(secret_weak("alpha-pass-CHANGE-ME", why), 0);
	assert_int_equal(secret_weak("CHANGE-ME", why), 1);
	assert_non_null(strstr(why, "9 characters"));
	assert_int_equal(secret_weak("aaaaaaaaaaaaaaaaaaaaaaaa", why), 1);
	assert_non_null(strstr(why, "bits"));
	assert_int_equal(secret_weak("password1234567890abc", why), 1);
	assert_int_equal(secret_weak("Qx7vK2pLm9Rz4TnW8yHc3F", why), 0);
	/* 16 random lower-case letters: 75 bits, just enough. */
	assert_int_equal(secret_weak("qmzkvhtrlwxpgfjd", why), 0);
}

static int
setup(void **state)
{
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	char	 cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file),
		cmocka_unit_test(test_file_refused),
		cmocka_unit_test(test_env),
		cmocka_unit_test(test_entropy),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
