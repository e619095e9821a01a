/*
 * tunneld's secrets (-pass, -encPass, -proxy's user:password): read from
 * the command line, a file or the environment, kept in memory that is
 * cleansed before it is freed, hidden from /proc/PID/cmdline, and checked
 * for weakness.
 */

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cli.h"
#include "cli_int.h"
#include "err.h"
#include "log.h"
#include "secret.h"

void
cli_secret_free(char **p)
{
	if (*p != NULL) {
		OPENSSL_cleanse(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

int
cli_secret(const char *opt, const char *val, char **out, char *err)
{
	char	*s;

	if ((s = strdup(val)) == NULL) {
		err_set(err, "-%s: out of memory", opt);
		return -1;
	}
	cli_secret_free(out);
	*out = s;
	return 0;
}

/* -passFile, -encPassFile: the secret in a file, replacing *out. */
int
cli_secret_file(const char *opt, const char *val, char **out, char *err)
{
	char	*s, why[ERR_LEN];

	if (secret_read_file(val, &s, why) == -1) {
		err_set(err, "-%s: %s", opt, why);
		return -1;
	}
	cli_secret_free(out);
	*out = s;
	return 0;
}

/* Sets -proxy's URL from a secret string, which it cleanses and frees. */
static int
cli_proxy_take(struct cli_opts *o, const char *opt, char *s, char *err)
{
	int	 rc;

	rc = cli_copy(opt, s, o->proxy, sizeof(o->proxy), 0, err);
	OPENSSL_cleanse(s, strlen(s));
	free(s);
	return rc;
}

/* -proxyFile: -proxy's URL, which may hold user:password, from a file. */
int
cli_proxy_file(struct cli_opts *o, const char *val, char *err)
{
	char	*s, why[ERR_LEN];

	if (secret_read_file(val, &s, why) == -1) {
		err_set(err, "-proxyFile: %s", why);
		return -1;
	}
	return cli_proxy_take(o, "proxyFile", s, err);
}

/* TUNNELD_PROXY, when neither -proxy nor -proxyFile gave a URL. */
int
cli_proxy_env(struct cli_opts *o, char *err)
{
	char	*s;

	if (secret_from_env("TUNNELD_PROXY", &s, err) == -1)
		return -1;
	return s == NULL ? 0 : cli_proxy_take(o, "TUNNELD_PROXY", s, err);
}

/*
 * TUNNELD_PASS and the like, for a secret no option gave: *out is set
 * from the environment when the variable exists, and left alone if not.
 */
int
cli_secret_env(const char *var, char **out, char *err)
{
	char	*s;

	if (secret_from_env(var, &s, err) == -1)
		return -1;
	if (s != NULL) {
		cli_secret_free(out);
		*out = s;
	}
	return 0;
}

/*
 * Remembers where in argv a secret lies, for cli_scrub_argv.  For -proxy
 * only the user:password part is a secret; a URL without one needs
 * nothing.
 */
int
cli_note_secret(struct cli_opts *o, int kind, const char *val, char *err)
{
	const char	*auth, *end, *at = NULL, *p;

	if (kind == CLI_ARGV_PROXY) {
		auth = strstr(val, "://");
		auth = auth != NULL ? auth + 3 : val;
		end = auth + strcspn(auth, "/?#");
		for (p = auth; p < end; p++)
			if (*p == '@')
				at = p;
		if (at == NULL)
			return 0;
		val = auth;
	} else if (*val == '\0')
		return 0;	/* nothing to hide */
	if (o->nscrub == CLI_MAX_SCRUB) {
		err_set(err, "secrets given more than %d times on the command "
		    "line", CLI_MAX_SCRUB);
		return -1;
	}
	o->scrub[o->nscrub].p = (char *)val;
	o->scrub[o->nscrub].len = at != NULL ? (size_t)(at - val) :
	    strlen(val);
	o->nscrub++;
	o->argv_secrets |= kind;
	return 0;
}

void
cli_scrub_argv(struct cli_opts *o)
{
	size_t	 i;

	/*
	 * The kernel shows the bytes argv points to in /proc/PID/cmdline:
	 * overwriting them hides the value from then on (not its length,
	 * nor from whoever read it before).
	 */
	for (i = 0; i < o->nscrub; i++)
		memset(o->scrub[i].p, '*', o->scrub[i].len);
	o->nscrub = 0;
}

void
cli_check_secrets(const struct cli_opts *o)
{
	char	 why[ERR_LEN];

	if (o->pass[0] == '\0')
		log_warnx("-pass is empty: anyone can use this tunnel");
	else if (secret_weak(o->pass, why))
		log_warnx("-pass is weak (%s): a recorded handshake lets "
		    "anyone test guesses offline; use a random one, e.g. "
		    "head -c 24 /dev/urandom | base64", why);
	if (o->encpass[0] == '\0' && o->enc_count != 0)
		log_warnx("-encPass is empty: the traffic is only obfuscated");
	else if (o->enc_count != 0 && secret_weak(o->encpass, why))
		log_warnx("-encPass is weak (%s): one connection lets anyone "
		    "test guesses offline; use a random one", why);
	if (o->argv_secrets & CLI_ARGV_PASS)
		log_warnx("-pass was given on the command line, which local "
		    "users can read: prefer -passFile or TUNNELD_PASS");
	if (o->argv_secrets & CLI_ARGV_ENCPASS)
		log_warnx("-encPass was given on the command line, which "
		    "local users can read: prefer -encPassFile or "
		    "TUNNELD_ENCPASS");
	if (o->argv_secrets & CLI_ARGV_PROXY)
		log_warnx("-proxy's password was given on the command line, "
		    "which local users can read: prefer -proxyFile or "
		    "TUNNELD_PROXY");
}

