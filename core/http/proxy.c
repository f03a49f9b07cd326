/*
 * proxy.c - http mode (see proxy.h). Worker thread.
 *
 * The cost of a proxy is its syscalls, so the common request - a small head
 * in one read, a small response in one read - takes one recv from the
 * client, one writev to a pooled server connection, one recv of the
 * response and one writev of its head and body to the client. Short reads
 * are trusted to have drained the socket (see relay.c); bodies of known
 * length go through relay_half, which splices bulk; chunked bodies go
 * through the buffers, checked by the chunked decoder on their way.
 *
 * This file holds a connection's life: the phases and the loop that runs
 * them, replies, tunnels and the end of a request. closing.c ends a
 * connection after an answer; timeout.c keeps each phase's deadline;
 * request.c reads, routes and sends requests; response.c relays responses;
 * buffers.c lends the buffers and writes out queued bytes; account.c logs
 * and counts.
 */
#include "core/http/proxy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/http/cache_http.h"
#include "core/http/forward.h"
#include "core/http/proxy_internal.h"
#include "core/http/reply.h"
#include "core/http/route.h"
#include "core/pp_conn.h"
#include "core/tls.h"
#include "core/upstream.h"

struct http_conn *http_conn_new(void)
{
	return calloc(1, sizeof(struct http_conn));
}

/* ---- ending things ---------------------------------------------------- */

static void put_server(struct conn *c)
{
	if (c->server_held) {
		lb_server_put(c->server);
		c->server_held = false;
	}
}

void http_release_server(struct conn *c, bool reuse)
{
	struct http_conn *hc = http_of(c);
	if (hc->u) {
		if (reuse)
			upstream_release(hc->u, c->gen, hc->pool->cfg->keepalive);
		else
			upstream_close(hc->u);
		hc->u = NULL;
	}
	put_server(c);
	relay_half_release(c->w, &c->up);
	relay_half_release(c->w, &c->down);
}

/*
 * The request leaves the server's in-flight count (maxconn, leastconn,
 * bounded loads) as soon as its response has all been read, not once the
 * client has it all: a client that sends its next request the moment the
 * last byte arrives, perhaps on a connection another worker serves, must
 * not find the server still busy with the last one. The connection itself
 * stays until the request ends. An answer that came before the request
 * body ended leaves the count to the request's end: the body still goes
 * to the server.
 */
void http_server_done(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	if (hc->req_done || hc->req_body == HTTP_BODY_NONE)
		put_server(c);
}

/* A response was under way when the connection ended. The server's run of
 * passive failures (SPEC §4) ends if the client gave up on a good answer,
 * and grows if the server stalled mid-body (one that closed or broke the
 * framing was counted by response_failed). */
static void judge_unfinished_response(const struct conn *c, const struct http_conn *hc)
{
	if (!hc->server || !hc->resp_started || hc->resp_done)
		return;
	if (c->reason == CR_SERVER_TIMEOUT)
		lb_server_failed(hc->server, c->server_taken_ms);
	else if (c->reason == CR_CLIENT_TIMEOUT || c->reason == CR_CLIENT_RESET)
		lb_server_passed(hc->server);
}

void http_conn_free(struct conn *c, struct http_conn *hc, uint64_t unsent)
{
	judge_unfinished_response(c, hc);
	/* BYTES_OUT is what the client was sent: UNSENT bytes read from the
	 * server for it went with the connection. */
	hc->bytes_out -= unsent < hc->bytes_out ? unsent : hc->bytes_out;
	/* A stop cut a request head short, or a connection that sent none:
	 * logged like a client leaving then, with the reason. */
	if (hc->phase == HP_HEAD && !hc->method_len && c->reason == CR_SHUTDOWN)
		http_note_unparsed_request(c);
	bool logged = hc->phase != HP_IDLE && hc->phase != HP_LINGER && hc->method_len;
	if (logged) {
		if (!hc->reason && c->reason != CR_NONE)
			hc->reason = close_reason_name(c->reason);
		/* Counted as the line shows it, even when the client got
		 * little or none of the answer (the reason says why). */
		if (hc->status)
			http_count_response(c);
		http_log_request(c);
	}
	http_release_server(c, false);
	if (logged && hc->req_done)
		http_log_unanswered(c); /* what was pipelined behind it */
	forward_conn_free(hc->fwd);
	cache_http_free(hc);
	http_rbuf_put(c, hc);
	http_sbuf_put(c, hc);
	free(hc->req_extra.data);
	free(hc->resp_extra.data);
	free(hc);
}

void http_set_phase(struct conn *c, enum http_phase p)
{
	http_of(c)->phase = p;
}

/* Where a chunked request body that nothing has taken yet (fulcrum
 * answers first) ends in rbuf, so that it counts whole and what the client
 * pipelined behind it is known; 0 when it is not all in, or the decoder
 * has taken some (where it stands is its own). */
static uint32_t chunked_body_end(const struct http_conn *hc)
{
	struct http_chunked ch;
	uint32_t off = hc->rpos;

	if (hc->rpos != hc->body_start || hc->bytes_in != hc->head_in)
		return 0;
	http_chunked_init(&ch, TRAILER_MAX);
	while (off < hc->rlen && ch.state != HTTP_CHUNK_DONE) {
		size_t used = 0, data = 0;
		if (http_is_error(
			    http_chunked_feed(&ch, hc->rbuf + off, hc->rlen - off, &used, &data)) ||
		    used == 0)
			return 0;
		off += (uint32_t)used;
	}
	return ch.state == HTTP_CHUNK_DONE ? off : 0;
}

/*
 * Answers the current request with STATUS from fulcrum itself. When a
 * response has already started, the client connection can only be closed.
 */
void http_reply_ex(struct conn *c, int status, const char *reason, bool close, const char *headers)
{
	struct http_conn *hc = http_of(c);

	hc->reason = reason;
	hc->connect_tunnel = false;
	if (status == 502 || status == 504)
		cache_http_failed(c);
	http_release_server(c, false);
	if (hc->resp_started) {
		conn_close(c, CR_SERVER_RESET);
		return;
	}
	hc->ttfb_ms = -1; /* the answer is fulcrum's own, not a server's */
	/* A body the client is still sending makes the connection unusable.
	 * What of it came in but never went on to a server was received all
	 * the same: BYTES_IN counts it (chunks count as they are checked). */
	if (!hc->req_done && hc->req_body != HTTP_BODY_NONE) {
		close = true;
		if (hc->req_body == HTTP_BODY_LENGTH && !hc->up_armed) {
			uint64_t held = hc->rlen - hc->rpos;
			hc->bytes_in += held < hc->req_left ? held : hc->req_left;
		} else if (hc->req_body == HTTP_BODY_CHUNKED &&
			   hc->req_ch.state == HTTP_CHUNK_DONE) {
			/* checked to its end (a 413 on it): counted already */
			hc->body_end = hc->rpos + hc->rsend;
		} else if (hc->req_body == HTTP_BODY_CHUNKED) {
			hc->body_end = chunked_body_end(hc);
			if (hc->body_end)
				hc->bytes_in += hc->body_end - hc->rpos;
		}
	}
	if (c->w->draining || !hc->client_ka || http_client_done(c))
		close = true;
	/* A refused CONNECT: what the client sent behind it (a TLS hello, sent
	 * optimistically) is no request, so the connection cannot go on. */
	if (hc->method_id == HTTP_M_CONNECT)
		close = true;
	hc->status = status;
	hc->reply_close = close;
	hc->client_ka = hc->client_ka && !close;
	/* An HTTP/1.0 client keeps its connection only when told so. (HEADERS
	 * are fulcrum's own short lines: what fits the reply fits here.) */
	char more[sizeof(hc->reply)];
	snprintf(more, sizeof(more), "%s%s",
		 !close && hc->minor == 0 ? "Connection: keep-alive\r\n" : "",
		 headers ? headers : "");
	char date[HTTP_DATE_SIZE];
	http_date_now(date);
	size_t n = http_reply_format(hc->reply, sizeof(hc->reply), status, close,
				     hc->method_id == HTTP_M_HEAD, date, more);
	http_outq_set(&hc->resp_out, hc->reply, n, NULL, 0, NULL, 0);
	hc->resp_started = true;
	http_set_phase(c, HP_REPLY);
}

void http_reply(struct conn *c, int status, const char *reason, bool close)
{
	http_reply_ex(c, status, reason, close, NULL);
}

/* The current request is over: log it, pool the server connection if it is
 * clean, and either wait for the next request or close. */
static void finish_request(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	bool reuse = hc->server_ka && hc->req_done && hc->resp_done && hc->slen == hc->spos;

	cache_http_end(c); /* stores a complete response, lets a hit's entry go */
	http_count_response(c);
	http_log_request(c);
	http_release_server(c, reuse);
	http_sbuf_put(c, hc);
	hc->method_len = 0;
	if (!hc->client_ka || c->w->draining) {
		/* A client still sending a body would get a reset on close,
		 * which can destroy the answer in flight: drain it first. */
		if (!hc->req_done)
			http_linger(c);
		else
			http_close_after_answer(c);
		return;
	}
	/* Keep what the client pipelined after this request. */
	if (hc->rbuf) {
		memmove(hc->rbuf, hc->rbuf + hc->rpos, hc->rlen - hc->rpos);
		hc->rlen -= hc->rpos;
		hc->rpos = 0;
	}
	http_set_phase(c, HP_IDLE);
	c->last_active_ms = c->w->now_ms;
	if (!http_between_requests(c)) {
		http_new_request(c);
		http_start_request(c);
	}
}

/* ---- tunnels, replies, lingering -------------------------------------- */

static void run_tunnel(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	/* A budget each: a busy upload must not leave the download unread. */
	size_t up_budget = c->w->turn_budget, down_budget = c->w->turn_budget;
	uint64_t in = c->up.bytes, out = c->down.bytes;
	enum relay_result up = relay_half(c->w, &c->up, &up_budget);
	enum relay_result down = relay_half(c->w, &c->down, &down_budget);

	hc->bytes_in += c->up.bytes - in;
	hc->bytes_out += c->down.bytes - out;
	if (c->up.bytes != in || c->down.bytes != out) {
		c->last_active_ms = c->w->now_ms;
		http_count_bytes(c); /* a tunnel may live for hours: count as it goes */
	}
	if (up == RELAY_ERROR || down == RELAY_ERROR) {
		const struct half *bad = up == RELAY_ERROR ? &c->up : &c->down;
		bool client = (bad->err_on_src ? bad->src : bad->dst) == &c->cli;
		hc->reason = !client		  ? "server_reset"
			     : bad->err == EPROTO ? "client_tls_error"
						  : "client_reset";
		conn_close(c, client ? CR_CLIENT_RESET : CR_SERVER_RESET);
		return;
	}
	if (up == RELAY_DONE && down == RELAY_DONE) {
		hc->reason = NULL;
		conn_close(c, CR_NONE);
		return;
	}
	if (up == RELAY_MORE || down == RELAY_MORE)
		conn_queue_resume(c);
}

static void enter_tunnel(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	http_count_response(c); /* a 101: its log line comes when the tunnel ends */
	relay_half_release(c->w, &c->up); /* the body's, if it left anything */
	relay_half_release(c->w, &c->down);
	relay_half_init(&c->up, &c->cli, &hc->u->s);
	relay_half_init(&c->down, &hc->u->s, &c->cli);
	/* Bytes the client sent after its head belong to the new protocol: the
	 * relay sends them first, as fast as the server takes them. */
	uint32_t early = hc->rlen - hc->rpos;
	if (relay_half_hold(&c->up, hc->rbuf + hc->rpos, early) < 0) {
		hc->reason = "no_memory";
		conn_close(c, CR_NO_MEMORY);
		return;
	}
	hc->bytes_in += early;
	http_rbuf_put(c, hc);
	http_sbuf_put(c, hc); /* the 101 and what came behind it have gone out */
	http_set_phase(c, HP_TUNNEL);
	if (c->w->past_deadline) {
		/* A request let finish after the stop's deadline does not
		 * become a tunnel that outlives it. */
		conn_close(c, CR_SHUTDOWN);
		return;
	}
	c->last_active_ms = c->w->now_ms;
	timer_add(&c->w->timers, &c->timer, c->w->now_ms + c->lc->tunnel_timeout_ms);
	run_tunnel(c);
}

/* Whether what follows rpos in rbuf is the next request, the one answered
 * (its head parsed, SENT: its body gone to a server) having been read in
 * whole. A body still in rbuf, of a known length, is stepped over; one
 * that is not all there yet, or chunked, leaves the rest unknown. */
static bool request_read_whole(struct http_conn *hc, bool sent)
{
	if (!hc->head_in)
		return false; /* the head did not parse: the rest is no request */
	if (sent || hc->req_body == HTTP_BODY_NONE)
		return true;
	if (hc->req_body == HTTP_BODY_CHUNKED && hc->body_end) {
		hc->rpos = hc->body_end; /* in BYTES_IN already (http_reply_ex) */
		return true;
	}
	if (hc->req_body != HTTP_BODY_LENGTH || hc->up_armed || hc->rlen - hc->rpos < hc->req_left)
		return false;
	hc->rpos += (uint32_t)hc->req_left; /* in BYTES_IN already (http_reply_ex) */
	hc->req_left = 0;
	return true;
}

static void run_reply(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	int r = http_outq_flush(&c->cli, &hc->resp_out, &hc->bytes_out);
	if (r < 0) {
		conn_close(c, CR_CLIENT_RESET);
		return;
	}
	if (r == 0)
		return;
	bool sent = hc->req_done;
	hc->resp_done = true;
	hc->req_done = true;
	if (hc->connect_tunnel) {
		hc->connect_tunnel = false;
		enter_tunnel(c);
		return;
	}
	if (hc->reply_close) {
		if (hc->method_id == HTTP_M_CONNECT)
			http_absorb_tunnel_bytes(c);
		http_count_response(c);
		http_log_request(c);
		hc->method_len = 0;
		if (request_read_whole(hc, sent))
			http_log_unanswered(c); /* what was pipelined behind it */
		http_linger(c);
		return;
	}
	finish_request(c);
}

/* ---- the event loop's entry points ------------------------------------ */

/* Reads request bytes into rbuf. Returns 1 when something came, 0 to wait,
 * -1 after ending the connection. */
static int read_request(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	if (!c->cli.rd)
		return 0;
	if (http_rbuf_get(c) < 0) {
		conn_close(c, CR_NO_MEMORY);
		return -1;
	}
	if (hc->rlen == hc->rcap)
		return 0; /* the parser answers 431 before this can happen */
	ssize_t n = io_recv(&c->cli, hc->rbuf + hc->rlen, hc->rcap - hc->rlen);
	if (n == -EAGAIN) {
		if (hc->rlen == 0 && hc->phase == HP_IDLE)
			http_rbuf_put(c, hc);
		return 0;
	}
	if (n <= 0) {
		/* A client closing between requests is the normal end (a CR
		 * it sent after the last one is no request: http_between_requests). */
		if (hc->phase == HP_IDLE) {
			conn_close(c, CR_NONE);
		} else {
			hc->reason = n == 0	    ? "client_closed"
				     : n == -EPROTO ? "client_tls_error"
						    : "client_reset";
			if (!hc->method_len)
				http_note_unparsed_request(c);
			conn_close(c, CR_CLIENT_RESET);
		}
		return -1;
	}
	hc->rlen += (uint32_t)n;
	c->last_active_ms = c->w->now_ms;
	return 1;
}

static void exchange(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	if (!hc->req_head_sent && conn_defer_write(c))
		return;
	int sent = http_send_request(c);
	if (sent < 0 || hc->phase != HP_EXCHANGE)
		return;
	int got = http_relay_response(c);
	if (got < 0 || hc->phase != HP_EXCHANGE)
		return;
	if (got == 1 && hc->resp_body == HTTP_BODY_TUNNEL) {
		enter_tunnel(c);
		return;
	}
	if (got == 1 && sent == 1) {
		finish_request(c);
		return;
	}
	if (got == 1 && !hc->req_done) {
		/* The server answered before the request ended: the request
		 * body cannot be trusted to end where the server thinks. */
		hc->client_ka = false;
		hc->server_ka = false;
		hc->reason = "answered_before_request_end";
		finish_request(c);
	}
}

/* While a request waits on a name, another request's cache fill, a
 * server's connect or its answer, a client that resets ends it at once
 * rather than hold its place (and a server slot) until then. */
static bool client_reset_while_waiting(struct conn *c)
{
	if (!conn_client_reset(c))
		return false;
	http_of(c)->reason = "client_reset";
	conn_close(c, CR_CLIENT_RESET);
	return true;
}

/* http_drain resumed C for what seemed to wait in its socket, but no
 * request byte came of it: it ends as it would have had nothing been there.
 * A TLS record not yet whole is the exception: its rest raises an edge, and
 * the request is served then (graceful_timeout bounds the wait). */
static void drained_unread(struct conn *c)
{
	if (c->cli.io)
		return;
	if (http_of(c)->phase == HP_IDLE)
		http_linger(c);
	else
		conn_close(c, CR_SHUTDOWN);
}

/* HP_IDLE, HP_HEAD: reads the client's next request head and, once it is
 * whole, starts the request. Returns false when there is nothing more to do
 * until the next event (or the connection closed). */
static bool run_request_head(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	/* Before any of the request is read: a reload since the last one (or
	 * since the accept) applies to it. */
	bool first_bytes = hc->phase == HP_IDLE || (hc->rlen == 0 && !hc->method_len);
	if (first_bytes)
		http_take_current_gen(c);
	bool resumed = hc->drain_resumed;
	uint64_t idle_since = c->last_active_ms;
	hc->drain_resumed = false;
	if (read_request(c) <= 0) {
		if (c->state != CS_CLOSED && resumed)
			drained_unread(c);
		return false;
	}
	if (hc->phase == HP_IDLE && http_between_requests(c)) {
		/* Line ends are no activity: a client sending only those is
		 * idle, and closed at keepalive_timeout. */
		c->last_active_ms = idle_since;
		return false;
	}
	if (hc->phase == HP_IDLE)
		http_new_request(c);
	else if (first_bytes)
		http_request_clock(c); /* not the client's idle time */
	http_start_request(c);
	return true;
}

/* One step of C in its current phase. Returns false when C waits (or is
 * closed), true when the step may have moved it on. */
static bool run_phase(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	switch (hc->phase) {
	case HP_IDLE:
	case HP_HEAD:
		return run_request_head(c);
	case HP_AUTH:
	case HP_RESOLVE:
		/* forward.c resumes the connection with the answer */
		client_reset_while_waiting(c);
		return false;
	case HP_CACHE_WAIT:
		/* the timer tries again (http_on_timer) */
		client_reset_while_waiting(c);
		return false;
	case HP_CONNECT:
		if (client_reset_while_waiting(c))
			return false;
		http_check_connect(c);
		return c->state != CS_CLOSED && hc->phase != HP_CONNECT;
	case HP_EXCHANGE:
		/* Waiting for the answer: a client that reset is gone (a FIN
		 * may be a half-close, as HAProxy reads it too). */
		if (hc->req_done && !hc->resp_started && client_reset_while_waiting(c))
			return false;
		exchange(c);
		return true;
	case HP_TUNNEL:
		run_tunnel(c);
		return false;
	case HP_REPLY:
		run_reply(c);
		return true;
	case HP_LINGER:
		http_run_linger(c);
		return false;
	default:
		return false;
	}
}

void http_run(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	for (int guard = 0; c->state != CS_CLOSED; guard++) {
		enum http_phase before = hc->phase;
		uint32_t seq = hc->seq;
		unsigned tries = hc->tried.n;
		if (guard == 64) {
			/* Many pipelined requests: let other connections run. */
			conn_queue_resume(c);
			return;
		}
		if (!run_phase(c) || c->state == CS_CLOSED)
			return; /* conn_close freed hc */
		/* Go on while something changed: the phase, a pipelined
		 * request that started in the same phase, or a retry that
		 * went straight to another server's idle connection (no
		 * connect will announce that one). */
		if (hc->phase == before && hc->seq == seq && hc->tried.n == tries &&
		    before != HP_HEAD)
			return;
	}
}

void http_start(struct conn *c)
{
	http_new_request(c);
	http_set_phase(c, HP_HEAD);
	http_arm_timer(c);
	/* Edge-triggered: the request may be there already, or arrive later. */
}

/* The request is with the server (or on its way) and nothing of the answer
 * has come: a client's bytes meanwhile (say, its next pipelined request)
 * are no progress and must not push back connect_timeout or server_timeout. */
static bool awaits_answer(const struct conn *c)
{
	const struct http_conn *hc = http_of(c);

	switch (hc->phase) {
	case HP_RESOLVE:
	case HP_CONNECT:
		return true;
	case HP_EXCHANGE:
		/* Also while the server leaves the body unread: bytes a
		 * client trickles into its socket meanwhile are not read. */
		return (hc->req_done || hc->req_write_failed || !http_server_takes_request(c)) &&
		       !hc->resp_started;
	default:
		return false;
	}
}

void http_process(struct conn *c, const struct side *from)
{
	/* Idle (what a client sends then starts a request, line ends aside)
	 * and lingering keep the deadline they began with. */
	enum http_phase phase = http_of(c)->phase;
	if (phase != HP_IDLE && phase != HP_LINGER && (from != &c->cli || !awaits_answer(c)))
		c->last_active_ms = c->w->now_ms;
	http_run(c);
	if (c->state != CS_CLOSED)
		http_arm_timer(c);
}

bool http_answering(const struct conn *c)
{
	switch (http_of(c)->phase) {
	case HP_AUTH:
	case HP_RESOLVE:
	case HP_CACHE_WAIT:
	case HP_CONNECT:
	case HP_EXCHANGE:
	case HP_REPLY:
		return true;
	default: /* between requests, a head still coming, a tunnel, lingering */
		return false;
	}
}

void http_drain(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	bool nothing_read = hc->phase == HP_IDLE || (hc->phase == HP_HEAD && hc->rlen == 0);

	/* A request may be in already, unseen by this worker yet: it is
	 * served, with Connection: close (the worker is draining). */
	if (nothing_read && io_unread(&c->cli)) {
		c->cli.rd = true; /* its edge may wait in this batch still */
		hc->drain_resumed = true;
		conn_queue_resume(c);
	}
	/* Else a FIN ends a connection between requests, and what a client
	 * sends before it sees that is read and dropped, not met with a
	 * reset. */
	else if (hc->phase == HP_IDLE)
		http_linger(c);
	else if (nothing_read)
		conn_close(c, CR_SHUTDOWN); /* accepted, nothing sent yet */
	else
		hc->client_ka = false;
}
