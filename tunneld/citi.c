/*
 * The CITI lifecycle table.  See citi.h.
 *
 * States (rows) x events (columns).  An entry is the next state; "+c"
 * sends our zero-length packet (the stream's close, wire spec 6.6), "+s"
 * shuts the local socket for writing once its queued data is written; "="
 * is a legal self-move with no action (a late callback); blank is illegal.
 * Every state from DIAL to DRN also goes to CLG on ABORT and SESSION_STOP.
 *
 *       CONN  DFAIL AOK   ANG   TMO   LEOF  LERR  PEOF  SHUT  HCL   REQ
 * DIAL  OPEN  CLG                                 DAB
 * DAB   CLG+c CLG
 * OPNG              OPEN  CLG+c CLG+c             OPE
 * OPE               PEO+s CLG+c CLG+c
 * OPEN                                LEO+c CLG+c PEO+s
 * LEO                                       CLG   DRN+s
 * PEO                                 DRN+c CLG+c       PSH
 * PSH                                 CLG+c CLG+c
 * DRN                                       CLG         CLG
 * CLG                                       =           =     CLD
 * CLD                                                               FREED
 *
 * DIAL dialing, DAB dial-abandoned, OPNG opening, OPE opening-peer-eof,
 * LEO local-eof, PEO peer-eof, PSH peer-eof-shut, DRN draining, CLG
 * closing, CLD closed.  Events: CONNECTED, DIAL_FAILED, ANSWER_OK,
 * ANSWER_NG, OPEN_TIMEOUT, LOCAL_EOF, LOCAL_ERROR, PEER_EOF, SHUT_DONE,
 * HANDLE_CLOSED, REQ_DONE.
 *
 * The resolver request of a dial can outlive the socket (uv_cancel may come
 * too late), hence CLOSED; the memory is freed on FREED.  Detaching and
 * resuming the session move no CITI: its streams wait, their packets kept
 * in the session's history.
 */

#include <stddef.h>

#include "citi.h"

struct citi_move {
	uint8_t	legal;
	uint8_t	to;
	uint8_t	act;
};

#define M(t, a)	{ 1, (t), (a) }
#define C	CITI_A_SEND_CLOSE
#define S	CITI_A_SHUTDOWN
/* Every live state may be forgotten without a word to the peer. */
#define FORGET \
	[CITI_EV_ABORT] = M(CITI_CLOSING, 0), \
	[CITI_EV_SESSION_STOP] = M(CITI_CLOSING, 0)

static const struct citi_move citi_table[CITI_NSTATES][CITI_NEVENTS] = {
	[CITI_DIALING] = {
		[CITI_EV_CONNECTED] = M(CITI_OPEN, 0),
		[CITI_EV_DIAL_FAILED] = M(CITI_CLOSING, 0),
		[CITI_EV_PEER_EOF] = M(CITI_DIAL_ABANDONED, 0),
		FORGET,
	},
	[CITI_DIAL_ABANDONED] = {
		/* Answered, then closed at once: the peer gave up waiting. */
		[CITI_EV_CONNECTED] = M(CITI_CLOSING, C),
		[CITI_EV_DIAL_FAILED] = M(CITI_CLOSING, 0),
		FORGET,
	},
	[CITI_OPENING] = {
		[CITI_EV_ANSWER_OK] = M(CITI_OPEN, 0),
		/* Lets a peer that registers failed CITIs forget this one. */
		[CITI_EV_ANSWER_NG] = M(CITI_CLOSING, C),
		[CITI_EV_OPEN_TIMEOUT] = M(CITI_CLOSING, C),
		[CITI_EV_PEER_EOF] = M(CITI_OPENING_PEER_EOF, 0),
		FORGET,
	},
	[CITI_OPENING_PEER_EOF] = {
		[CITI_EV_ANSWER_OK] = M(CITI_PEER_EOF, S),
		[CITI_EV_ANSWER_NG] = M(CITI_CLOSING, C),
		[CITI_EV_OPEN_TIMEOUT] = M(CITI_CLOSING, C),
		FORGET,
	},
	[CITI_OPEN] = {
		[CITI_EV_LOCAL_EOF] = M(CITI_LOCAL_EOF, C),
		[CITI_EV_LOCAL_ERROR] = M(CITI_CLOSING, C),
		[CITI_EV_PEER_EOF] = M(CITI_PEER_EOF, S),
		FORGET,
	},
	[CITI_LOCAL_EOF] = {
		[CITI_EV_LOCAL_ERROR] = M(CITI_CLOSING, 0),
		[CITI_EV_PEER_EOF] = M(CITI_DRAINING, S),
		FORGET,
	},
	[CITI_PEER_EOF] = {
		[CITI_EV_LOCAL_EOF] = M(CITI_DRAINING, C),
		[CITI_EV_LOCAL_ERROR] = M(CITI_CLOSING, C),
		[CITI_EV_SHUT_DONE] = M(CITI_PEER_EOF_SHUT, 0),
		FORGET,
	},
	[CITI_PEER_EOF_SHUT] = {
		[CITI_EV_LOCAL_EOF] = M(CITI_CLOSING, C),
		[CITI_EV_LOCAL_ERROR] = M(CITI_CLOSING, C),
		FORGET,
	},
	[CITI_DRAINING] = {
		[CITI_EV_LOCAL_ERROR] = M(CITI_CLOSING, 0),
		[CITI_EV_SHUT_DONE] = M(CITI_CLOSING, 0),
		FORGET,
	},
	[CITI_CLOSING] = {
		/* Requests the close cancelled report late. */
		[CITI_EV_LOCAL_ERROR] = M(CITI_CLOSING, 0),
		[CITI_EV_SHUT_DONE] = M(CITI_CLOSING, 0),
		[CITI_EV_HANDLE_CLOSED] = M(CITI_CLOSED, 0),
	},
	[CITI_CLOSED] = {
		[CITI_EV_REQ_DONE] = M(CITI_FREED, 0),
	},
};

#undef M
#undef C
#undef S
#undef FORGET

static const char *const citi_state_names[CITI_NSTATES] = {
	[CITI_DIALING] = "dialing",
	[CITI_DIAL_ABANDONED] = "dial-abandoned",
	[CITI_OPENING] = "opening",
	[CITI_OPENING_PEER_EOF] = "opening-peer-eof",
	[CITI_OPEN] = "open",
	[CITI_LOCAL_EOF] = "local-eof",
	[CITI_PEER_EOF] = "peer-eof",
	[CITI_PEER_EOF_SHUT] = "peer-eof-shut",
	[CITI_DRAINING] = "draining",
	[CITI_CLOSING] = "closing",
	[CITI_CLOSED] = "closed",
	[CITI_FREED] = "freed",
};

static const char *const citi_event_names[CITI_NEVENTS] = {
	[CITI_EV_CONNECTED] = "connected",
	[CITI_EV_DIAL_FAILED] = "dial-failed",
	[CITI_EV_ANSWER_OK] = "answer-ok",
	[CITI_EV_ANSWER_NG] = "answer-ng",
	[CITI_EV_OPEN_TIMEOUT] = "open-timeout",
	[CITI_EV_LOCAL_EOF] = "local-eof",
	[CITI_EV_LOCAL_ERROR] = "local-error",
	[CITI_EV_PEER_EOF] = "peer-eof",
	[CITI_EV_SHUT_DONE] = "shut-done",
	[CITI_EV_ABORT] = "abort",
	[CITI_EV_SESSION_STOP] = "session-stop",
	[CITI_EV_HANDLE_CLOSED] = "handle-closed",
	[CITI_EV_REQ_DONE] = "req-done",
};

int
citi_next(enum citi_state from, enum citi_event ev, enum citi_state *to,
    unsigned *act)
{
	const struct citi_move *m;

	if ((unsigned)from >= CITI_NSTATES || (unsigned)ev >= CITI_NEVENTS)
		return -1;
	m = &citi_table[from][ev];
	if (!m->legal)
		return -1;
	*to = (enum citi_state)m->to;
	*act = m->act;
	return 0;
}

const char *
citi_state_name(enum citi_state st)
{
	if ((unsigned)st >= CITI_NSTATES)
		return "?";
	return citi_state_names[st];
}

const char *
citi_event_name(enum citi_event ev)
{
	if ((unsigned)ev >= CITI_NEVENTS)
		return "?";
	return citi_event_names[ev];
}

int
citi_in_table(enum citi_state st)
{
	return st <= CITI_PEER_EOF_SHUT;
}

int
citi_is_opening(enum citi_state st)
{
	return st == CITI_OPENING || st == CITI_OPENING_PEER_EOF;
}

int
citi_reads(enum citi_state st)
{
	return st == CITI_OPEN || st == CITI_PEER_EOF ||
	    st == CITI_PEER_EOF_SHUT;
}

int
citi_takes_data(enum citi_state st)
{
	return st == CITI_OPEN || st == CITI_LOCAL_EOF;
}

int
citi_is_gone(enum citi_state st)
{
	return st >= CITI_CLOSING;
}
