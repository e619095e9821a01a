#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "log.h"

static const char	*log_prog = "?";
static char		 log_prefix[64];
static int		 log_verbosity;
static int		 log_json;

static const char *const log_names[] = { "error", "warn", "info", "debug" };

void
log_init(const char *prog, int verbose)
{
	log_prog = prog;
	log_verbosity = verbose;
}

void
log_set_prefix(const char *prefix)
{
	snprintf(log_prefix, sizeof(log_prefix), "%s", prefix ? prefix : "");
}

int
log_verbose(void)
{
	return log_verbosity;
}

void
log_set_json(int on)
{
	log_json = on != 0;
}

int
log_is_json(void)
{
	return log_json;
}

int
log_format_parse(const char *val, int *json, char *err)
{
	if (strcmp(val, "text") == 0)
		*json = 0;
	else if (strcmp(val, "json") == 0)
		*json = 1;
	else {
		err_set(err, "-logFormat: expected text or json, got '%s'",
		    val);
		return -1;
	}
	return 0;
}

/* The length of the well-formed UTF-8 sequence at s (n bytes left), or 0. */
static size_t
log_utf8_len(const unsigned char *s, size_t n)
{
	size_t	len, i;
	unsigned c = s[0];

	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	/* No overlong forms, surrogates or code points past U+10FFFF. */
	if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) ||
	    (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
		return 0;
	return len;
}

/*
 * s as the body of a JSON string into out (cap bytes, NUL-terminated);
 * cut at an escape's boundary when out is full.  Returns the length.
 */
static size_t
log_json_escape(char *out, size_t cap, const char *s)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 o = 0, n = strlen(s), k;
	char			 esc[8];
	const char		*e;

	while (*p != '\0') {
		e = esc;
		k = 0;
		if (*p == '"' || *p == '\\')
			snprintf(esc, sizeof(esc), "\\%c", *p);
		else if (*p == '\n')
			e = "\\n";
		else if (*p == '\t')
			e = "\\t";
		else if (*p == '\r')
			e = "\\r";
		else if (*p < 0x20 || *p == 0x7f)
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
		else if (*p < 0x80)
			snprintf(esc, sizeof(esc), "%c", *p);
		else if ((k = log_utf8_len(p, n - (size_t)(p -
		    (const unsigned char *)s))) == 0)
			e = "\\ufffd";
		if (k > 0) {
			if (o + k + 1 > cap)
				break;
			memcpy(out + o, p, k);
			o += k;
			p += k;
			continue;
		}
		if (o + strlen(e) + 1 > cap)
			break;
		memcpy(out + o, e, strlen(e));
		o += strlen(e);
		p++;
	}
	out[o] = '\0';
	return o;
}

/* One JSON line: the message is already formatted (msg). */
static void
log_json_line(enum log_level lvl, const struct timespec *now,
    const char *msg)
{
	char		 line[6 * 1024 + 256], ts[32];
	struct tm	 tm;
	int		 n;

	gmtime_r(&now->tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "{\"time\":\"%s.%03ldZ\",\"level\":"
	    "\"%s\",\"prog\":\"%s\",\"pid\":%d,\"msg\":\"", ts,
	    now->tv_nsec / 1000000, log_names[lvl], log_prog, (int)getpid());
	if (n < 0 || (size_t)n >= sizeof(line) - 4)
		return;
	n += log_json_escape(line + n, sizeof(line) - n - 3, msg);
	memcpy(line + n, "\"}\n", 3);
	n += 3;
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nothing sensible left to do */
	}
}

static void
log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
	char		 line[1024];
	char		 ts[32];
	struct timespec	 now;
	struct tm	 tm;
	int		 n;

	clock_gettime(CLOCK_REALTIME, &now);
	if (log_json) {
		/* The same message, prefix included; the keys are fixed. */
		n = snprintf(line, sizeof(line), "%s", log_prefix);
		vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		log_json_line(lvl, &now, line);
		return;
	}
	localtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "%s.%03ld %s[%d] %s: %s",
	    ts, now.tv_nsec / 1000000, log_prog, (int)getpid(),
	    log_names[lvl], log_prefix);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	/* One write per line so that lines of concurrent processes do not mix. */
	n = strlen(line);
	if ((size_t)n < sizeof(line) - 1)
		line[n++] = '\n';
	else
		line[sizeof(line) - 2] = '\n', n = sizeof(line) - 1;
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nothing sensible left to do */
	}
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	if (lvl == LOG_LVL_DEBUG && !log_verbosity)
		return;
	va_start(ap, fmt);
	log_vmsg(lvl, fmt, ap);
	va_end(ap);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERR, fmt, ap);
	va_end(ap);
	exit(1);
}
