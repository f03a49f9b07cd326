/*
 * closing.c - how an http connection ends after an answer (see
 * proxy_internal.h): whether the client has sent its last byte, the log
 * line of requests left unanswered, and lingering, so that closing on
 * unread bytes never resets an answer still on its way. Worker thread.
 */
#include <errno.h>
#include <string.h>

#include "core/conn.h"
#include "core/http/proxy_internal.h"

/* Where what the client sent after the current request starts, line ends
 * skipped: RFC 9112 §2.2 lets a client send CRLFs between requests (old
 * ones do after a body), and they are no request. */
static uint32_t next_request_at(const struct http_conn *hc)
{
	uint32_t i = hc->rpos;

	while (hc->rbuf && i < hc->rlen && (hc->rbuf[i] == '\r' || hc->rbuf[i] == '\n'))
		i++;
	return i;
}

bool http_client_done(struct conn *c)
{
	const struct http_conn *hc = http_of(c);

	/* The FIN is in, but what the client sent before it may not be read
	 * yet: a request pipelined in a later segment or TLS record. */
	return c->cli.hup && (hc->req_done || hc->req_body == HTTP_BODY_NONE) &&
	       next_request_at(hc) >= hc->rlen && io_peek(&c->cli) <= 0;
}

void http_linger(struct conn *c)
{
	c->last_active_ms = c->w->now_ms; /* LINGER_MS from now, whatever comes */
	http_of(c)->lingered = 0;
	io_shutdown(&c->cli);
	http_set_phase(c, HP_LINGER);
	timer_add(&c->w->timers, &c->timer, c->w->now_ms + LINGER_MS);
}

/* The connection closes after an answer (a stop, Connection: close, or a
 * response cut off) with more requests pipelined behind it. They go
 * unanswered, as RFC 9112 §9.6 lets them, but not unlogged: one line with
 * what came of them. Line ends alone (a client's CRLF after a body) are no
 * request. */
void http_log_unanswered(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	if (!hc->rbuf || next_request_at(hc) >= hc->rlen)
		return;
	memmove(hc->rbuf, hc->rbuf + hc->rpos, hc->rlen - hc->rpos);
	hc->rlen -= hc->rpos;
	hc->rpos = 0;
	http_new_request(c);
	http_note_unparsed_request(c);
	hc->reason =
		c->w->draining || c->reason == CR_SHUTDOWN ? "shutdown" : "unanswered_pipelined";
	http_log_request(c);
	hc->method_len = 0;
}

/* A CONNECT answered with anything but 2xx: what the client sent behind
 * its head, and what has come since, was meant for the tunnel that never
 * opened (a TLS hello sent optimistically), not a request. It counts in
 * the CONNECT's line and is dropped; what comes later is lingered away. */
void http_absorb_tunnel_bytes(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	if (hc->req_body != HTTP_BODY_NONE)
		return; /* a CONNECT with a body: counted as one (http_reply_ex) */
	if (hc->rbuf) {
		hc->bytes_in += hc->rlen - hc->rpos;
		hc->rpos = hc->rlen;
	}
	if (io_peek(&c->cli) > 0) {
		ssize_t n = io_recv(&c->cli, c->w->scratch, c->w->scratch_cap); /* one read */
		if (n > 0)
			hc->bytes_in += (uint64_t)n;
	}
}

/* Ends the connection after a whole exchange. Requests the client
 * pipelined in a later segment, still in the socket, are read in to be
 * logged with the rest; and closing on unread bytes would send a reset,
 * which can destroy the end of the answer still in flight, so then the
 * connection lingers instead (a FIN, then what comes is read and dropped). */
void http_close_after_answer(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	bool unread = io_peek(&c->cli) > 0;

	if (unread && http_rbuf_get(c) == 0 && hc->rlen < hc->rcap) {
		ssize_t n = io_recv(&c->cli, hc->rbuf + hc->rlen, hc->rcap - hc->rlen);
		if (n > 0)
			hc->rlen += (uint32_t)n;
	}
	http_log_unanswered(c);
	if (unread)
		http_linger(c);
	else
		conn_close(c, CR_NONE);
}

/* RFC 9112 §2.2: line ends a client sends between requests (old ones do
 * after a body) are no request. Drops the whole CRLFs at the start of rbuf
 * and tells whether nothing else is there (or only a CR, the first half of
 * the next): then the connection stays idle, under keepalive_timeout. */
bool http_between_requests(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	uint32_t i = 0;

	if (!hc->rbuf)
		return true;
	while (i + 1 < hc->rlen && hc->rbuf[i] == '\r' && hc->rbuf[i + 1] == '\n')
		i += 2;
	if (i > 0) {
		memmove(hc->rbuf, hc->rbuf + i, hc->rlen - i);
		hc->rlen -= i;
	}
	if (hc->rlen > 1 || (hc->rlen == 1 && hc->rbuf[0] != '\r'))
		return false;
	if (hc->rlen == 0)
		http_rbuf_put(c, hc);
	return true;
}

/* What a lingering connection reads and drops at most: a client that
 * goes on sending past it is not waiting for the answer it was sent. */
#define LINGER_DROP_MAX (4 * 1024 * 1024)

/* Reads and drops what the client still sends after an answer that ends
 * the connection, within the worker's turn budget. */
void http_run_linger(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	char *buf = c->w->scratch;
	size_t budget = c->w->turn_budget;

	while (c->cli.rd) {
		if (budget == 0) {
			conn_queue_resume(c);
			return;
		}
		ssize_t n = io_recv(&c->cli, buf, c->w->scratch_cap);
		if (n == -EAGAIN)
			return;
		if (n <= 0 || (hc->lingered += (uint64_t)n) > LINGER_DROP_MAX) {
			conn_close(c, CR_NONE);
			return;
		}
		budget = (size_t)n < budget ? budget - (size_t)n : 0;
	}
}
