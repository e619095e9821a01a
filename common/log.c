#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char	*log_prog = "?";
static char		 log_prefix[64];
static int		 log_verbosity;

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

static void
log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
	char		 line[1024];
	char		 ts[32];
	struct timespec	 now;
	struct tm	 tm;
	int		 n;

	clock_gettime(CLOCK_REALTIME, &now);
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
