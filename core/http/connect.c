/*
 * connect.c - http mode, getting the request to a server (see proxy.h): a
 * pooled connection or a new one, the connect's outcome, and the retries on
 * other servers SPEC §3 allows (refused or timed-out connects; for
 * idempotent requests still whole in rbuf, also a server that closed or
 * timed out before answering). Worker thread.
 */
#include "core/http/proxy_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "core/conn.h"
#include "core/http/forward.h"
#include "core/log.h"
#include "core/upstream.h"

static void attach(struct conn *c, struct upstream *u)
{
	struct http_conn *hc = http_of(c);
	hc->u = u;
	u->s.c = c;
	relay_half_init(&c->up, &c->cli, &u->s);
	relay_half_init(&c->down, &u->s, &c->cli);
}

/* A connect that could not even start: this host is out of descriptors or
 * memory, not the server at fault. Nothing counts against it (no failure,
 * no 5xx in its series), and no other server would fare better. */
static void out_of_resources(struct conn *c, int err)
{
	struct http_conn *hc = http_of(c);

	log_info("http %s: connect to %s/%s: %s", c->lc->name, hc->pool->name, hc->server->name,
		 strerror(err));
	http_release_server(c, false);
	hc->server = NULL;
	hc->host_short = true;
	if (err == ENOMEM)
		http_reply(c, 500, "no_memory", false);
	else
		http_reply(c, 503, "out_of_resources", false);
}

static void set_request_out(struct http_conn *hc)
{
	http_outq_set(&hc->req_out, hc->rbuf + hc->head_start, hc->head_end - hc->head_start,
		      hc->req_extra.data, hc->req_extra.len, NULL, 0);
}

void http_server_failed(struct conn *c, int err, const char *what)
{
	struct http_conn *hc = http_of(c);
	lb_server_failed(hc->server, c->server_taken_ms);
	log_info("http %s: %s %s/%s (%s): %s", c->lc->name, what, hc->pool->name, hc->server->name,
		 hc->server->addr.text, strerror(err));
}

bool http_can_retry(const struct conn *c)
{
	const struct http_conn *hc = http_of(c);
	return hc->tried.n <= (unsigned)hc->pool->cfg->retries;
}

/* Whether the request can go out again from its first byte: it has no
 * body, or a Content-Length one that came whole with the head and so is
 * still in rbuf (bytes the relay carried straight from the client are
 * gone). */
static bool request_is_replayable(const struct http_conn *hc)
{
	if (hc->req_body == HTTP_BODY_NONE)
		return true;
	return hc->req_body == HTTP_BODY_LENGTH && !hc->up_armed &&
	       hc->rlen - hc->body_start >= hc->req_length;
}

/* Sets a replayable request up to be sent again from its first byte. */
static void replay_request(struct http_conn *hc)
{
	hc->bytes_in -= hc->rpos - hc->body_start;
	hc->rpos = hc->body_start;
	hc->req_left = hc->req_length;
	hc->req_head_sent = false;
	hc->req_done = false;
	hc->req_write_failed = false;
}

bool http_retry_next(struct conn *c, int err, const char *what)
{
	struct http_conn *hc = http_of(c);

	/* Nothing of the answer may have come, and the request must be whole
	 * in rbuf. An Upgrade request qualifies too: until a 101 comes, the
	 * tunnel bytes a client sends early wait in rbuf behind it. Forward
	 * mode tries an origin's addresses its own way. */
	if (hc->fwd || !hc->u || hc->resp_started || hc->slen || !request_is_replayable(hc) ||
	    !http_method_is_idempotent(hc->method_id))
		return false;
	if (!http_can_retry(c) || !lb_has_untried(hc->pool, hc->tried.s, lb_tried_len(&hc->tried)))
		return false;
	http_server_failed(c, err, what);
	http_release_server(c, false);
	hc->server = NULL;
	hc->try_failure_status = err == ETIMEDOUT ? 504 : 502;
	hc->try_failure = err == ETIMEDOUT ? "server_timeout"
			  : err == EPIPE   ? "server_closed"
					   : "server_reset";
	replay_request(hc);
	c->last_active_ms = c->w->now_ms; /* the next server's own timeouts */
	http_connect_server(c);
	return true;
}

/* An idle pooled connection to S for the request, or NULL. A request that
 * could not be sent again, should the connection turn out closed
 * (http_retry_stale), pays one recv(MSG_PEEK) per reuse: a connection the
 * server closed, or sent bytes on, since it went idle, before its event
 * came in, is closed instead of taken. */
static struct upstream *take_idle(struct conn *c, struct lb_server *s)
{
	struct http_conn *hc = http_of(c);
	bool resendable = http_method_is_idempotent(hc->method_id) && request_is_replayable(hc);
	struct upstream *u;

	/* A tunnel's connection is its own: it never goes back to the pool,
	 * so it does not come from there either. */
	if (hc->connect_tunnel)
		return NULL;
	while ((u = upstream_take_idle(c->w, s)) && !resendable && io_unread(&u->s))
		upstream_close(u);
	return u;
}

/* Picks a server (unless sticky already did) and takes one of its places.
 * Returns it, or NULL after answering the client. */
static struct lb_server *take_server(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	for (unsigned raced = 0;;) {
		struct lb_server *s = hc->server;
		if (!s) {
			struct lb_worker *lw = worker_lb(c->w, c->gen, -1);
			for (size_t i = 0; i < c->gen->cfg->n_pools; i++)
				if (c->gen->pools[i] == hc->pool)
					lw = worker_lb(c->w, c->gen, (int)i);
			s = lb_pick(hc->pool, lw, hc->key, hc->tried.s, lb_tried_len(&hc->tried));
			/* A retry moves a sticky client off its server when
			 * that one failed: the answer pins it to the one that
			 * serves. A client whose server was only full (its
			 * maxconn), sent elsewhere, stays pinned whatever
			 * happens there. */
			if (hc->tried.n && hc->pinned)
				hc->set_cookie = true;
		}
		if (s && lb_server_take(s))
			return s;
		if (s) {
			/* Its last place went to another worker since the pick
			 * (or the sticky check): pick again. A sticky client
			 * whose server filled up stays pinned, as above. */
			hc->server = NULL;
			hc->pinned = false;
			if (++raced < LB_TAKE_TRIES)
				continue;
		}
		if (hc->tried.n)
			http_reply(c, hc->try_failure_status, hc->try_failure, false);
		else if (lb_pool_full(hc->pool))
			http_reply(c, 503, "servers_full", false);
		else
			http_reply(c, 503, "no_server", false);
		return NULL;
	}
}

/* Gets a connection to a server taken by take_server: an idle pooled one,
 * or a new one; on to the next server while connecting fails at once. */
void http_connect_server(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	for (;;) {
		struct lb_server *s = take_server(c);
		if (!s)
			return;
		hc->server = s;
		lb_tried_add(&hc->tried, s);
		c->server = s;
		c->server_held = true;
		c->server_taken_ms = c->w->now_ms;

		struct upstream *u = take_idle(c, s);
		if (u) {
			attach(c, u);
			u->s.wr = true; /* an idle connection has room to write */
			set_request_out(hc);
			http_set_phase(c, HP_EXCHANGE);
			return;
		}
		int err = 0;
		u = upstream_connect(c->w, s, &err);
		if (!u && err_out_of_resources(err)) {
			out_of_resources(c, err);
			return;
		}
		if (u) {
			attach(c, u);
			set_request_out(hc);
			http_set_phase(c, HP_CONNECT);
			timer_add(&c->w->timers, &c->timer,
				  c->w->now_ms + hc->pool->cfg->connect_timeout_ms);
			return;
		}
		if (!http_connect_failed(c, err, "connect_failed"))
			return;
	}
}

bool http_withdraw(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	if (hc->phase != HP_CONNECT || hc->fwd)
		return false;
	log_info("http %s: %s/%s was disabled while connecting to it; trying another server",
		 c->lc->name, hc->pool->name, hc->server->name);
	/* Not the server's failure, and no retry used up. A sticky client's
	 * cookie named a server that is out now: the answer pins it anew. */
	http_release_server(c, false);
	hc->server = NULL;
	if (hc->pinned)
		hc->set_cookie = true;
	hc->pinned = false;
	lb_tried_forget_last(&hc->tried);
	http_connect_server(c);
	/* An idle pooled connection taken there announces nothing (no
	 * connect completes): the request goes out when C runs after this
	 * batch (the sweep runs inside one). */
	if (c->state != CS_CLOSED)
		conn_queue_resume(c);
	return true;
}

bool http_connect_failed(struct conn *c, int err, const char *reason)
{
	struct http_conn *hc = http_of(c);

	http_server_failed(c, err, "connect to");
	http_release_server(c, false);
	hc->server = NULL;
	hc->try_failure = reason;
	hc->try_failure_status = 502;
	if (http_can_retry(c))
		return true;
	http_reply(c, 502, reason, false);
	return false;
}

/* A failed step is retried on another server (conn_connect_step).
 * Forward mode's origins are plain: https goes through CONNECT. */
void http_check_connect(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	int r = conn_connect_step(c, &hc->u->s, hc->pool, hc->server, !hc->fwd);

	if (r == 0)
		return;
	if (r == 1) {
		/* A tunnel has nothing more to judge its server by; an exchange
		 * clears the count only with a valid response (SPEC §4: invalid
		 * responses count too, and the connect before each succeeds). */
		if (hc->connect_tunnel) {
			lb_server_passed(hc->server);
			forward_established(c);
		} else {
			http_set_phase(c, HP_EXCHANGE);
		}
		return;
	}
	if (r == -ENOMEM) {
		http_reply(c, 500, "no_memory", true); /* not the server's fault */
		return;
	}
	/* The side is TLS once its TCP connect and PROXY header went well. */
	const char *reason = hc->u->s.io ? "server_tls_failed" : "connect_failed";
	if (http_connect_failed(c, -r, reason))
		http_connect_server(c);
}

/* A pooled connection failed before any response byte: the server closed
 * it while it sat idle. Safe to send again on a fresh one when the request
 * is idempotent and still whole in rbuf. */
bool http_retry_stale(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	if (!hc->u || !hc->u->reused || hc->slen || hc->resp_started)
		return false;
	if (!http_method_is_idempotent(hc->method_id) || !request_is_replayable(hc))
		return false;
	struct lb_server *s = hc->server;
	int err = 0;
	struct upstream *u = upstream_connect(c->w, s, &err);
	if (!u && err_out_of_resources(err)) {
		out_of_resources(c, err);
		return true;
	}
	if (!u)
		return false;
	/* The same server again, on a fresh connection: not another try, and
	 * the request keeps its place at the server. */
	upstream_close(hc->u);
	hc->u = NULL;
	relay_half_release(c->w, &c->up);
	relay_half_release(c->w, &c->down);
	replay_request(hc);
	attach(c, u);
	set_request_out(hc);
	http_set_phase(c, HP_CONNECT);
	timer_add(&c->w->timers, &c->timer, c->w->now_ms + hc->pool->cfg->connect_timeout_ms);
	return true;
}
