/*
 * timeout.c - the deadline of each phase of an http connection, and what
 * happens when it passes (see proxy.c for the phases). Worker thread.
 *
 * One timer per connection, kept no later than the current phase's
 * deadline; it may fire early, and then only re-arms. Whose silence ends an
 * exchange - the client's or the server's - decides both the deadline
 * (client_timeout or server_timeout) and the answer (408 or 504).
 */
#include <errno.h>

#include "core/conn.h"
#include "core/http/cache_http.h"
#include "core/http/forward.h"
#include "core/http/proxy_internal.h"
#include "core/upstream.h"
#include "core/worker.h"

/* The server's socket has room for the rest of the request, if any. */
bool http_server_takes_request(const struct conn *c)
{
	const struct http_conn *hc = http_of(c);

	return !hc->u || hc->u->s.wr;
}

/* The exchange waits for the client: to send the rest of its request
 * (unless the server's socket is full, so it is the server that does not
 * read it), or to take more of the answer (its socket is full; the server
 * is not read meanwhile, so its silence is not its fault). */
static bool waits_for_client(const struct conn *c)
{
	const struct http_conn *hc = http_of(c);

	if (hc->resp_started && !c->cli.wr)
		return true;
	/* A client that asked for 100-continue and has sent nothing of its
	 * body waits on the server, which owes it the 100 or an answer: the
	 * silence is the server's (HAProxy answers it 504 at its server
	 * timeout too; nginx sends its own 100). */
	if (hc->awaits_continue && hc->bytes_in == hc->head_in)
		return false;
	/* The server stopped taking the body: its answer, or its close, is
	 * what is awaited. */
	if (hc->req_write_failed)
		return false;
	return !hc->req_done && http_server_takes_request(c);
}

/* The deadline of the current phase, and what happens when it passes. */
static uint64_t deadline(const struct conn *c)
{
	const struct http_conn *hc = http_of(c);
	const struct cfg_listener *lc = c->lc;

	switch (hc->phase) {
	case HP_IDLE:
		return c->last_active_ms + lc->keepalive_timeout_ms;
	case HP_HEAD:
	case HP_AUTH:
		return hc->head_since_ms + lc->request_timeout_ms;
	case HP_RESOLVE:
	case HP_CONNECT:
		return c->last_active_ms + hc->pool->cfg->connect_timeout_ms;
	case HP_CACHE_WAIT:
		return c->last_active_ms + CACHE_HTTP_POLL_MS;
	case HP_EXCHANGE:
		if (!waits_for_client(c) && !hc->resp_done)
			return c->last_active_ms + hc->pool->cfg->server_timeout_ms;
		return c->last_active_ms + lc->client_timeout_ms;
	case HP_TUNNEL:
		return c->last_active_ms + lc->tunnel_timeout_ms;
	case HP_REPLY:
		return c->last_active_ms + lc->client_timeout_ms;
	default:
		return c->last_active_ms + LINGER_MS;
	}
}

/* Keeps the timer no later than the phase's deadline. The timer firing
 * early is harmless: http_on_timer checks again and re-arms. */
void http_arm_timer(struct conn *c)
{
	uint64_t d = deadline(c);
	if (!timer_is_armed(&c->timer) || c->timer.expire_ms > d)
		timer_add(&c->w->timers, &c->timer, d);
}

/* The timer of an exchange with a server ran out: retries, answers 504 or
 * 408, or closes, by who kept the other waiting. Returns true when the
 * connection runs on (an answer or a retry is under way), false when it
 * was closed. */
static bool exchange_timed_out(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	if (hc->req_done && !hc->resp_started) {
		if (http_retry_next(c, ETIMEDOUT, "server_timeout waiting for"))
			return true;
		/* The last try counts against the server as a retried one
		 * does: a hung server leaves at max_fails. */
		if (!hc->fwd)
			http_server_failed(c, ETIMEDOUT, "server_timeout waiting for");
		http_reply(c, 504, "server_timeout", false);
		return true;
	}
	if (waits_for_client(c) && !hc->resp_started) {
		/* A request body that stopped coming: 408, as nginx's
		 * client_body_timeout; the server's half goes. */
		http_reply(c, 408, "client_timeout", true);
		return true;
	}
	if (waits_for_client(c)) {
		hc->reason = "client_timeout";
		conn_close(c, CR_CLIENT_TIMEOUT);
		return false;
	}
	if (!hc->resp_started) {
		/* A server that stopped reading the request body. One that
		 * owed a 100-continue is answered 504 all the same, but not
		 * counted against: many wait for the body instead (RFC 9110
		 * §10.1.1 lets them), and a client holding its body back must
		 * not take servers down. */
		if (!hc->fwd && !(hc->awaits_continue && hc->bytes_in == hc->head_in))
			http_server_failed(c, ETIMEDOUT, "server_timeout sending to");
		http_reply(c, 504, "server_timeout", true);
		return true;
	}
	hc->reason = "server_timeout";
	conn_close(c, CR_SERVER_TIMEOUT);
	return false;
}

void http_on_timer(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	if (c->w->now_ms < deadline(c)) {
		http_arm_timer(c);
		return;
	}
	switch (hc->phase) {
	case HP_IDLE:
		conn_close(c, CR_NONE);
		return;
	case HP_HEAD:
		if (!hc->method_len)
			http_note_unparsed_request(c);
		http_reply(c, 408, "request_timeout", true);
		break;
	case HP_AUTH:
		forward_auth_timeout(c);
		break;
	case HP_RESOLVE:
		forward_on_timer(c);
		break;
	case HP_CACHE_WAIT:
		/* Look in the cache again, or wait on, or go to the server. */
		http_set_phase(c, HP_HEAD);
		http_start_request(c);
		break;
	case HP_CONNECT:
		if (http_connect_failed(c, ETIMEDOUT, "connect_timeout"))
			http_connect_server(c);
		break;
	case HP_EXCHANGE:
		if (!exchange_timed_out(c))
			return;
		break;
	case HP_TUNNEL:
		hc->reason = "tunnel_timeout";
		conn_close(c, CR_CLIENT_TIMEOUT);
		return;
	case HP_REPLY:
		conn_close(c, CR_CLIENT_TIMEOUT);
		return;
	default:
		conn_close(c, CR_NONE);
		return;
	}
	c->last_active_ms = c->w->now_ms;
	http_run(c);
	if (c->state != CS_CLOSED)
		http_arm_timer(c);
}
