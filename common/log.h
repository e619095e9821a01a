#ifndef LOG_H
#define LOG_H

/*
 * One line per event on stderr: "<time> <prog>[pid] <level>: message",
 * or with -logFormat json one JSON object per line with fixed keys, for a
 * log shipper:
 *   {"time":"2025-01-31T12:00:00.123Z","level":"info","prog":"dispatcher",
 *    "pid":1234,"msg":"..."}
 * (time in UTC, level one of error/warn/info/debug, msg valid UTF-8: a
 * byte that is not is written as U+FFFD).  Only the programs' edges (main
 * loops, session handlers) log; common/ modules return their reasons in
 * a caller's buffer instead.
 */

#include <stdarg.h>

enum log_level {
	LOG_LVL_ERR = 0,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG
};

void	log_init(const char *prog, int verbose);
void	log_set_prefix(const char *prefix);
/* 1: JSON lines from now on, 0: text (the default).  Kept by log_init. */
void	log_set_json(int on);
int	log_is_json(void);
/* -logFormat's value ("text" or "json") into *json: 0, or -1 with err. */
int	log_format_parse(const char *val, int *json, char *err);
int	log_verbose(void);
void	log_msg(enum log_level lvl, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

#define log_err(...)	log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warnx(...)	log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)	do { if (log_verbose()) \
	log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

/* Startup failures and broken invariants only, never peer input. */
void	fatalx(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

#endif
