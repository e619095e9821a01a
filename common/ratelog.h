#ifndef RATELOG_H
#define RATELOG_H

/*
 * A small rate limiter for log lines that a peer can cause: at most
 * `burst` lines per window of `window_ms`; the lines dropped meanwhile are
 * counted so that the next line allowed (or the owner, when it goes away)
 * can say "N more suppressed".  No I/O and no clock of its own: the caller
 * passes the time, so it is a pure function of its inputs.
 */

#include <stdint.h>

struct ratelog {
	uint64_t	window_ms;
	uint64_t	start;		/* ms, when the current window began */
	unsigned	burst;
	unsigned	used;		/* lines allowed in the current window */
	unsigned long	suppressed;	/* dropped since the last allowed line */
	int		started;
};

#define RATELOG_BURST		5
#define RATELOG_WINDOW_MS	10000

/* Sets r up to allow burst lines per window_ms (0s take the defaults). */
void	ratelog_init(struct ratelog *r, unsigned burst, uint64_t window_ms);

/*
 * Asks whether a line may be logged at time now_ms.  Returns 1 if so, and
 * then *suppressed (if not NULL) is the number of lines dropped since the
 * last allowed one, to append to the line, and the count restarts; returns
 * 0 if the line should be dropped (it is counted).
 */
int	ratelog_allow(struct ratelog *r, uint64_t now_ms,
	    unsigned long *suppressed);

/* Lines dropped and not yet reported; the count restarts. */
unsigned long ratelog_take(struct ratelog *r);

#endif
