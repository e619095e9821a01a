/*
 * The token bucket of tbucket.h.  Whole tokens only; what rate * ms
 * leaves over a whole token is kept (frac), so that refilling every
 * millisecond earns what refilling once a second does.
 */

#include "tbucket.h"

void
tbucket_init(struct tbucket *b, int64_t rate, int64_t burst, uint64_t now_ms)
{
	b->rate = rate > 0 ? rate : 0;
	if (burst <= 0)
		burst = b->rate > 0 ? b->rate : 1;
	b->burst = burst;
	b->tokens = burst;
	b->last_ms = now_ms;
	b->frac = 0;
}

int
tbucket_limited(const struct tbucket *b)
{
	return b->rate > 0;
}

void
tbucket_refill(struct tbucket *b, uint64_t now_ms)
{
	uint64_t	dt;
	int64_t		earned;

	if (b->rate == 0 || now_ms <= b->last_ms)
		return;
	dt = now_ms - b->last_ms;
	b->last_ms = now_ms;
	/* A long pause fills the bucket; no need to multiply huge numbers. */
	if (dt >= 1000 * (uint64_t)(b->burst / b->rate + 1) + 1000) {
		b->tokens = b->burst;
		b->frac = 0;
		return;
	}
	b->frac += b->rate * (int64_t)dt;
	earned = b->frac / 1000;
	b->frac %= 1000;
	b->tokens += earned;
	if (b->tokens >= b->burst) {
		b->tokens = b->burst;
		b->frac = 0;
	}
}

int64_t
tbucket_avail(struct tbucket *b, uint64_t now_ms)
{
	if (b->rate == 0)
		return INT64_MAX;
	tbucket_refill(b, now_ms);
	return b->tokens;
}

void
tbucket_spend(struct tbucket *b, int64_t n)
{
	if (b->rate == 0 || n <= 0)
		return;
	/* Debt is bounded by what one call can spend; keep it finite. */
	if (b->tokens < INT64_MIN / 4 + n)
		b->tokens = INT64_MIN / 4;
	else
		b->tokens -= n;
}

int
tbucket_take(struct tbucket *b, uint64_t now_ms, int64_t n)
{
	if (b->rate == 0)
		return 1;
	if (tbucket_avail(b, now_ms) < n)
		return 0;
	b->tokens -= n;
	return 1;
}

uint64_t
tbucket_wait_ms(struct tbucket *b, uint64_t now_ms)
{
	int64_t	need;

	if (tbucket_avail(b, now_ms) > 0)
		return 0;
	/* Tokens to earn to hold one, less the part of one already earned. */
	need = (1 - b->tokens) * 1000 - b->frac;
	if (need <= 0)
		return 1;
	return (uint64_t)((need + b->rate - 1) / b->rate);
}
