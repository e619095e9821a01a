/*
 * Answers of the public port: at once, or after kptunnel's refusal delay
 * with the connection suspended, so that a client probing sessions or
 * passwords learns slowly and no handler thread sleeps meanwhile.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "front.h"
#include "wsup.h"

enum reply_metric { M_101, M_POLICY, M_400, M_404, M_5XX, M_OTHER };

void
reply_count(struct disp *d, int status)
{
	int i;

	if (status == 101)
		i = M_101;
	else if (status == 400)
		i = M_400;
	else if (status == 404)
		i = M_404;
	else if (status >= 500)
		i = M_5XX;
	else if (status == 403 || status == 406 || status == 401)
		i = M_POLICY;
	else
		i = M_OTHER;
	atomic_fetch_add(&d->m.admissions[i], 1);
}

/* status and body, with hdr ("Name", "value") unless NULL. */
static enum MHD_Result
reply_make(struct MHD_Connection *c, struct disp *d, int status,
    const char *body, const char *const *hdr)
{
	struct MHD_Response	*resp;
	struct sockaddr_storage	 ss;
	enum MHD_Result		 rc;
	char			 remote[64];

	reply_count(d, status);
	if (status >= 400 && d->con != NULL) {
		admit_remote(c, remote, sizeof(remote), &ss);
		console_note_refusal(d, remote, status, body);
	}
	resp = MHD_create_response_from_buffer(strlen(body), (void *)body,
	    MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type",
	    "text/plain; charset=utf-8");
	/* One request per connection: a second head would escape the
	 * -headTimeout deadline, which only the first one has. */
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	if (hdr != NULL)
		MHD_add_response_header(resp, hdr[0], hdr[1]);
	rc = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

static const char *const reply_unknown_hdr[] = {
	WSUP_SESSION_HDR, WSUP_SESSION_UNKNOWN
};
/* For a request of the HTTP transport: its transport is gone. */
static const char *const reply_ht_unknown_hdr[] = {
	HTTPT_HDR_ID, HTTPT_UNKNOWN
};

/* The marker header of r's refusal, or NULL. */
static const char *const *
reply_hdr(const struct freq *r)
{
	if (r->unknown)
		return reply_unknown_hdr;
	return r->ht_unknown ? reply_ht_unknown_hdr : NULL;
}

enum MHD_Result
reply_now(struct MHD_Connection *c, struct disp *d, int status,
    const char *body)
{
	return reply_make(c, d, status, body, NULL);
}

enum MHD_Result
reply_delayed(struct MHD_Connection *c, struct freq *r)
{
	return reply_make(c, r->d, r->status, r->body, reply_hdr(r));
}

enum MHD_Result
reply_later(struct MHD_Connection *c, struct freq *r, int status,
    const char *body)
{
	struct disp	*d = r->d;
	struct delayed	*dl;

	if (d->refuse_delay_ms == 0 || (dl = calloc(1, sizeof(*dl))) == NULL)
		return reply_make(c, d, status, body, reply_hdr(r));
	r->status = status;
	snprintf(r->body, sizeof(r->body), "%s", body);
	dl->conn = c;
	dl->due = disp_now_ms() + d->refuse_delay_ms;
	pthread_mutex_lock(&d->lock);
	TAILQ_INSERT_TAIL(&d->delayed, dl, link);
	MHD_suspend_connection(c);
	pthread_mutex_unlock(&d->lock);
	return MHD_YES;
}

enum MHD_Result
reply_unknown_session(struct MHD_Connection *c, struct freq *r)
{
	r->unknown = 1;
	return reply_later(c, r, 404, "unknown session");
}

/* Under d->lock: resumes the first waiting request if it is due at now
 * (every one when now is UINT64_MAX); 0 once none is. */
static int
reply_resume_first(struct disp *d, uint64_t now)
{
	struct delayed *dl;

	if ((dl = TAILQ_FIRST(&d->delayed)) == NULL || dl->due > now)
		return 0;
	TAILQ_REMOVE(&d->delayed, dl, link);
	MHD_resume_connection(dl->conn);
	free(dl);
	return 1;
}

void
reply_tick(struct disp *d, uint64_t now)
{
	pthread_mutex_lock(&d->lock);
	while (reply_resume_first(d, now))
		;
	pthread_mutex_unlock(&d->lock);
}

void
reply_resume_all(struct disp *d)
{
	reply_tick(d, UINT64_MAX);
}
