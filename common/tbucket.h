#ifndef TBUCKET_H
#define TBUCKET_H

/*
 * A token bucket: `rate` tokens a second, at most `burst` saved up.  Used
 * for bytes (a tenant's rateUp / rateDown) and for events (maxConnectRate).
 * Tokens may be spent past zero: a read of n bytes is known only once it
 * happened, so the bucket goes into debt and the caller waits until it is
 * positive again (tbucket_wait_ms); over time the spending still follows
 * the rate.  No I/O and no clock of its own: the caller passes the time
 * in milliseconds, so it is a pure function of its inputs.
 */

#include <stdint.h>

struct tbucket {
	int64_t		rate;		/* tokens per second; 0: unlimited */
	int64_t		burst;		/* most tokens saved up */
	int64_t		tokens;		/* may be negative (debt) */
	uint64_t	last_ms;	/* time of the last refill */
	int64_t		frac;		/* rate * ms not yet a whole token */
};

/*
 * Sets b up for rate tokens a second (0: unlimited, then every call
 * allows) with burst saved up at most (<= 0: one second's worth, at
 * least 1); the bucket starts full at now_ms.
 */
void	tbucket_init(struct tbucket *b, int64_t rate, int64_t burst,
	    uint64_t now_ms);

/* 1 if the bucket limits anything (rate > 0). */
int	tbucket_limited(const struct tbucket *b);

/* Adds the tokens earned since the last call (time never goes back). */
void	tbucket_refill(struct tbucket *b, uint64_t now_ms);

/* Tokens available at now_ms (refilled first); may be <= 0. */
int64_t	tbucket_avail(struct tbucket *b, uint64_t now_ms);

/* Spends n tokens, into debt if need be. */
void	tbucket_spend(struct tbucket *b, int64_t n);

/*
 * Takes n tokens if that many are there at now_ms: returns 1, or 0 and
 * takes nothing (for events: refuse the one that does not fit).
 */
int	tbucket_take(struct tbucket *b, uint64_t now_ms, int64_t n);

/* Milliseconds until the bucket holds at least one token (0: now). */
uint64_t tbucket_wait_ms(struct tbucket *b, uint64_t now_ms);

#endif
