/*
 * Unit tests for tunneld/citi.c: every legal move of the CITI lifecycle
 * (checked against a list written out here, independently of the table),
 * the refusal of every other pair, and that every state that can be
 * reached can also be left for good.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "citi.h"

#define C	CITI_A_SEND_CLOSE
#define S	CITI_A_SHUTDOWN

static const struct {
	enum citi_state	from;
	enum citi_event	ev;
	enum citi_state	to;
	unsigned	act;
} legal[] = {
	/* dialing side */
	{ CITI_DIALING, CITI_EV_CONNECTED, CITI_OPEN, 0 },
	{ CITI_DIALING, CITI_EV_DIAL_FAILED, CITI_CLOSING, 0 },
	{ CITI_DIALING, CITI_EV_PEER_EOF, CITI_DIAL_ABANDONED, 0 },
	{ CITI_DIALING, CITI_EV_ABORT, CITI_CLOSING, 0 },
	{ CITI_DIALING, CITI_EV_SESSION_STOP, CITI_CLOSING, 0 },
	{ CITI_DIAL_ABANDONED, CITI_EV_CONNECTED, CITI_CLOSING, C },
	{ CITI_DIAL_ABANDONED, CITI_EV_DIAL_FAILED, CITI_CLOSING, 0 },
	{ CITI_DIAL_ABANDONED, CITI_EV_ABORT, CITI_CLOSING, 0 },
	{ CITI_DIAL_ABANDONED, CITI_EV_SESSION_STOP, CITI_CLOSING, 0 },
	/* listening side */
	{ CITI_OPENING, CITI_EV_ANSWER_OK, CITI_OPEN, 0 },
	{ CITI_OPENING, CITI_EV_ANSWER_NG, CITI_CLOSING, C },
	{ CITI_OPENING, CITI_EV_OPEN_TIMEOUT, CITI_CLOSING, C },
	{ CITI_OPENING, CITI_EV_PEER_EOF, CITI_OPENING_PEER_EOF, 0 },
	{ CITI_OPENING, CITI_EV_ABORT, CITI_CLOSING, 0 },
	{ CITI_OPENING, CITI_EV_SESSION_STOP, CITI_CLOSING, 0 },
	{ CITI_OPENING_PEER_EOF, CITI_EV_ANSWER_OK, CITI_PEER_EOF, S },
	{ CITI_OPENING_PEER_EOF, CITI_EV_ANSWER_NG, CITI_CLOSING, C },
	{ CITI_OPENING_PEER_EOF, CITI_EV_OPEN_TIMEOUT, CITI_CLOSING, C },
	{ CITI_OPENING_PEER_EOF, CITI_EV_ABORT, CITI_CLOSING, 0 },
	{ CITI_OPENING_PEER_EOF, CITI_EV_SESSION_STOP, CITI_CLOSING, 0 },
	/* open, and its half-closes */
	{ CITI_OPEN, CITI_EV_LOCAL_EOF, CITI_LOCAL_EOF, C },
	{ CITI_OPEN, CITI_EV_LOCAL_ERROR, CITI_CLOSING, C },
	{ CITI_OPEN, CITI_EV_PEER_EOF, CITI_PEER_EOF, S },
	{ CITI_OPEN, CITI_EV_ABORT, CITI_CLOSING, 0 },
	{ CITI_OPEN, CITI_EV_SESSION_STOP, CITI_CLOSING, 0 },
	{ CITI_LOCAL_EOF, CITI_EV_LOCAL_ERROR, CITI_CLOSING, 0 },
	{ CITI_LOCAL_EOF, CITI_EV_PEER_EOF, CITI_DRAINING, S },
	{ CITI_LOCAL_EOF, CITI_EV_ABORT, CITI_CLOSING, 0 },
	{ CITI_LOCAL_EOF, CITI_EV_SESSION_STOP, CITI_CLOSING, 0 },
	{ CITI_PEER_EOF, CITI_EV_LOCAL_EOF, CITI_DRAINING, C },
	{ CITI_PEER_EOF, CITI_EV_LOCAL_ERROR, CITI_CLOSING, C },
	{ CITI_PEER_EOF, CITI_EV_SHUT_DONE, CITI_PEER_EOF_SHUT, 0 },
	{ CITI_PEER_EOF, CITI_EV_ABORT, CITI_CLOSING, 0 },
	{ CITI_PEER_EOF, CITI_EV_SESSION_STOP, CITI_CLOSING, 0 },
	{ CITI_PEER_EOF_SHUT, CITI_EV_LOCAL_EOF, CITI_CLOSING, C },
	{ CITI_PEER_EOF_SHUT, CITI_EV_LOCAL_ERROR, CITI_CLOSING, C },
	{ CITI_PEER_EOF_SHUT, CITI_EV_ABORT, CITI_CLOSING, 0 },
	{ CITI_PEER_EOF_SHUT, CITI_EV_SESSION_STOP, CITI_CLOSING, 0 },
	/* the end */
	{ CITI_DRAINING, CITI_EV_LOCAL_ERROR, CITI_CLOSING, 0 },
	{ CITI_DRAINING, CITI_EV_SHUT_DONE, CITI_CLOSING, 0 },
	{ CITI_DRAINING, CITI_EV_ABORT, CITI_CLOSING, 0 },
	{ CITI_DRAINING, CITI_EV_SESSION_STOP, CITI_CLOSING, 0 },
	{ CITI_CLOSING, CITI_EV_LOCAL_ERROR, CITI_CLOSING, 0 },
	{ CITI_CLOSING, CITI_EV_SHUT_DONE, CITI_CLOSING, 0 },
	{ CITI_CLOSING, CITI_EV_HANDLE_CLOSED, CITI_CLOSED, 0 },
	{ CITI_CLOSED, CITI_EV_REQ_DONE, CITI_FREED, 0 },
};
#define NLEGAL	(sizeof(legal) / sizeof(legal[0]))

static int
find_legal(enum citi_state from, enum citi_event ev)
{
	size_t i;

	for (i = 0; i < NLEGAL; i++)
		if (legal[i].from == from && legal[i].ev == ev)
			return (int)i;
	return -1;
}

/* Each listed move is legal, goes where listed and does what is listed. */
static void
test_citi_legal_moves(void **state)
{
	enum citi_state	to;
	unsigned	act;
	size_t		i;

	for (i = 0; i < NLEGAL; i++) {
		to = CITI_NSTATES;
		act = 0xff;
		assert_int_equal(citi_next(legal[i].from, legal[i].ev, &to,
		    &act), 0);
		assert_int_equal(to, legal[i].to);
		assert_int_equal(act, legal[i].act);
	}
}

/* Every other pair is refused and leaves the outputs alone. */
static void
test_citi_refusals(void **state)
{
	enum citi_state	from, to;
	enum citi_event	ev;
	unsigned	act;
	int		refused = 0;

	for (from = 0; from < CITI_NSTATES; from++)
		for (ev = 0; ev < CITI_NEVENTS; ev++) {
			if (find_legal(from, ev) != -1)
				continue;
			to = CITI_NSTATES;
			act = 0xff;
			assert_int_equal(citi_next(from, ev, &to, &act), -1);
			assert_int_equal(to, CITI_NSTATES);
			assert_int_equal(act, 0xff);
			refused++;
		}
	assert_int_equal(refused + (int)NLEGAL, CITI_NSTATES * CITI_NEVENTS);
	/* Out of range, as a corrupted value would be. */
	assert_int_equal(citi_next(CITI_NSTATES, CITI_EV_ABORT, &to, &act), -1);
	assert_int_equal(citi_next(CITI_OPEN, CITI_NEVENTS, &to, &act), -1);
	assert_int_equal(citi_next((enum citi_state)-1, 0, &to, &act), -1);
}

/* Impossible moves a hostile peer could ask for are refused. */
static void
test_citi_peer_cannot(void **state)
{
	enum citi_state	to;
	unsigned	act;

	/* A second close of the same direction. */
	assert_int_equal(citi_next(CITI_PEER_EOF, CITI_EV_PEER_EOF, &to,
	    &act), -1);
	assert_int_equal(citi_next(CITI_DIAL_ABANDONED, CITI_EV_PEER_EOF,
	    &to, &act), -1);
	/* An answer to a stream it dials itself, or already answered. */
	assert_int_equal(citi_next(CITI_DIALING, CITI_EV_ANSWER_OK, &to,
	    &act), -1);
	assert_int_equal(citi_next(CITI_OPEN, CITI_EV_ANSWER_NG, &to,
	    &act), -1);
	/* Nothing brings a closing stream back. */
	assert_int_equal(citi_next(CITI_CLOSING, CITI_EV_ANSWER_OK, &to,
	    &act), -1);
	assert_int_equal(citi_next(CITI_CLOSING, CITI_EV_ABORT, &to,
	    &act), -1);
	assert_int_equal(citi_next(CITI_FREED, CITI_EV_HANDLE_CLOSED, &to,
	    &act), -1);
}

/*
 * From every state but FREED some sequence of events ends in FREED (no
 * CITI can be stuck), and each state's predicates agree with the moves.
 */
static void
test_citi_always_ends(void **state)
{
	int		 ends[CITI_NSTATES], changed = 1;
	enum citi_state	 st, to;
	enum citi_event	 ev;
	unsigned	 act;

	memset(ends, 0, sizeof(ends));
	ends[CITI_FREED] = 1;
	while (changed) {
		changed = 0;
		for (st = 0; st < CITI_NSTATES; st++)
			for (ev = 0; ev < CITI_NEVENTS && !ends[st]; ev++)
				if (citi_next(st, ev, &to, &act) == 0 &&
				    ends[to]) {
					ends[st] = 1;
					changed = 1;
				}
	}
	for (st = 0; st < CITI_NSTATES; st++)
		assert_true(ends[st]);
	for (st = 0; st < CITI_NSTATES; st++) {
		/* Every live state can be forgotten, no dead one. */
		assert_int_equal(citi_next(st, CITI_EV_SESSION_STOP, &to,
		    &act) == 0, citi_in_table(st) || st == CITI_DRAINING);
		/* Only states in the table take the peer's data. */
		if (citi_takes_data(st) || citi_reads(st) ||
		    citi_is_opening(st))
			assert_true(citi_in_table(st));
		assert_int_equal(citi_is_gone(st), st >= CITI_CLOSING);
		assert_string_not_equal(citi_state_name(st), "?");
	}
	for (ev = 0; ev < CITI_NEVENTS; ev++)
		assert_string_not_equal(citi_event_name(ev), "?");
	assert_string_equal(citi_state_name(CITI_NSTATES), "?");
	assert_string_equal(citi_event_name(CITI_NEVENTS), "?");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_citi_legal_moves),
		cmocka_unit_test(test_citi_refusals),
		cmocka_unit_test(test_citi_peer_cannot),
		cmocka_unit_test(test_citi_always_ends),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
