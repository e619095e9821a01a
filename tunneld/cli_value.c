/*
 * The values of tunneld's options: numbers and booleans as Go's flag
 * package reads them, and the checked text options (-ip, -header,
 * -session, -wspath).  Each returns 0, or -1 with err naming the option.
 */

#include <netinet/in.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "cli.h"
#include "cli_int.h"
#include "err.h"
#include "http.h"
#include "tunneld.h"

int
cli_int(const char *opt, const char *val, int min, int max, int *out,
    char *err)
{
	const char	*p = val;
	long long	 v = 0;
	int		 neg = 0;

	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (*p == '\0') {
		err_set(err, "-%s: not a number: %s", opt, val);
		return -1;
	}
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9') {
			err_set(err, "-%s: not a number: %s", opt, val);
			return -1;
		}
		if (v <= (long long)INT_MAX + 1)
			v = v * 10 + (*p - '0');
	}
	if (neg)
		v = -v;
	if (v < min || v > max) {
		err_set(err, "-%s: out of range: %s", opt, val);
		return -1;
	}
	*out = (int)v;
	return 0;
}

/* Go's strconv.ParseBool. */
int
cli_bool(const char *opt, const char *val, int *out, char *err)
{
	static const char *const yes[] = { "1", "t", "T", "true", "TRUE",
	    "True" };
	static const char *const no[] = { "0", "f", "F", "false", "FALSE",
	    "False" };
	size_t	 i;

	if (val == NULL) {
		*out = 1;
		return 0;
	}
	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcmp(val, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcmp(val, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	err_set(err, "-%s: not a boolean: %s", opt, val);
	return -1;
}

/* Printable text without controls; space allowed when told. */
static int
cli_text_ok(const char *s, int space)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f || (c == ' ' && !space))
			return 0;
	}
	return 1;
}

/* Copies a value into a fixed field of the options. */
int
cli_copy(const char *opt, const char *val, char *out, size_t cap,
    int space, char *err)
{
	if (!cli_text_ok(val, space)) {
		err_set(err, "-%s: invalid character in value", opt);
		return -1;
	}
	if (strlen(val) >= cap) {
		err_set(err, "-%s: value too long", opt);
		return -1;
	}
	memcpy(out, val, strlen(val) + 1);
	return 0;
}

int
cli_ip(struct cli_opts *o, const char *val, char *err)
{
	char		 one[INET6_ADDRSTRLEN + 8], why[ERR_LEN];
	const char	*p = val, *comma;
	size_t		 n;

	for (;;) {
		comma = strchr(p, ',');
		n = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if (n >= sizeof(one)) {
			err_set(err, "-ip: invalid range: %.*s", (int)(n > 64 ?
			    64 : n), p);
			return -1;
		}
		memcpy(one, p, n);
		one[n] = '\0';
		if (o->ncidr == CLI_MAX_CIDRS) {
			err_set(err, "-ip: too many ranges (at most %d)",
			    CLI_MAX_CIDRS);
			return -1;
		}
		if (cidr_parse(one, &o->cidrs[o->ncidr], why) == -1) {
			err_set(err, "-ip: %s: %s", one, why);
			return -1;
		}
		o->ncidr++;
		if (comma == NULL)
			return 0;
		p = comma + 1;
	}
}

/*
 * The header name b[0..n), canonicalised as Go does (x-test -> X-Test)
 * into name[cap].  Returns 0, or -1 with err when it is no HTTP token.
 */
static int
cli_header_name(const char *b, size_t n, char *name, size_t cap, char *err)
{
	size_t	i;
	int	up = 1;

	if (n == 0 || n >= cap) {
		err_set(err, "-header: invalid header name");
		return -1;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)b[i];

		if (!http_tchar(c)) {
			err_set(err, "-header: invalid header name");
			return -1;
		}
		if (up && c >= 'a' && c <= 'z')
			c = c - 'a' + 'A';
		else if (!up && c >= 'A' && c <= 'Z')
			c = c - 'A' + 'a';
		name[i] = (char)c;
		up = c == '-';
	}
	name[n] = '\0';
	return 0;
}

/*
 * "NAME: VAL" as Go's http.Header.Add stores it: the name canonicalised
 * (x-test -> X-Test), the value trimmed.  Names that are not HTTP tokens
 * and values with line breaks are refused, since they would corrupt or
 * inject handshake lines.
 */
int
cli_header(struct cli_opts *o, const char *val, char *err)
{
	char		 name[256];
	const char	*colon, *b, *e, *v, *ve;

	if ((colon = strchr(val, ':')) == NULL) {
		err_set(err, "-header: '%s' is not 'NAME: VALUE'", val);
		return -1;
	}
	for (b = val; b < colon && (*b == ' ' || *b == '\t'); b++)
		;
	for (e = colon; e > b && (e[-1] == ' ' || e[-1] == '\t'); e--)
		;
	if (cli_header_name(b, (size_t)(e - b), name, sizeof(name), err) == -1)
		return -1;
	for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
		;
	for (ve = v + strlen(v); ve > v && (ve[-1] == ' ' || ve[-1] == '\t');
	    ve--)
		;
	for (b = v; b < ve; b++) {
		unsigned char c = (unsigned char)*b;

		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			err_set(err, "-header: invalid character in value");
			return -1;
		}
	}
	if (strlen(name) + 2 + (size_t)(ve - v) >= sizeof(o->header)) {
		err_set(err, "-header: value too long");
		return -1;
	}
	snprintf(o->header, sizeof(o->header), "%s: %.*s", name,
	    (int)(ve - v), v);
	return 0;
}

/*
 * The session id goes into the URL query verbatim (as kptunnel sends it),
 * so characters that would end or extend the query are refused.
 */
int
cli_session(struct cli_opts *o, const char *val, char *err)
{
	const char	*p;

	if (*val == '\0') {
		err_set(err, "-session: empty value");
		return -1;
	}
	for (p = val; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') ||
		    strchr("-._~%!$'()*+,;:@/?", c) != NULL)) {
			err_set(err, "-session: invalid character in value");
			return -1;
		}
	}
	return cli_copy("session", val, o->session, sizeof(o->session), 0,
	    err);
}

int
cli_wspath(struct cli_opts *o, const char *val, char *err)
{
	if (val[0] != '/') {
		err_set(err, "-wspath: must start with '/': %s", val);
		return -1;
	}
	return cli_copy("wspath", val, o->wspath, sizeof(o->wspath), 0, err);
}


int
cli_window(struct cli_opts *o, const char *val, char *err)
{
	const uint64_t	 unit = 65536;	/* a full packet, rounded */
	const char	*p = val;
	uint64_t	 v = 0, mult = 1, pk;

	for (; *p >= '0' && *p <= '9'; p++)	/* saturates: out of range */
		if (v < (1ull << 40))
			v = v * 10 + (uint64_t)(*p - '0');
	if (*p == 'k' || *p == 'K')
		mult = 1024, p++;
	else if (*p == 'm' || *p == 'M')
		mult = 1024 * 1024, p++;
	else if (*p == 'g' || *p == 'G')
		mult = 1024 * 1024 * 1024, p++;
	if (p == val || *p != '\0' || !(val[0] >= '0' && val[0] <= '9')) {
		err_set(err, "-window: not a size (bytes, or with k or M): %s",
		    val);
		return -1;
	}
	pk = (v * mult + unit - 1) / unit;
	if (pk < TUN_WINDOW || pk > TUN_WINDOW_MAX) {
		err_set(err, "-window: %s is out of range (%lluk to %lluM)",
		    val, (unsigned long long)(TUN_WINDOW * unit / 1024),
		    (unsigned long long)(TUN_WINDOW_MAX * unit >> 20));
		return -1;
	}
	o->window = (int)pk;
	return 0;
}
