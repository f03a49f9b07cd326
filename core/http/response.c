/*
 * response.c - http mode, the response side (see proxy.h): the server's
 * head is parsed strictly and rewritten, then the body relayed by its
 * framing: spliced when its length is known, through the buffer and the
 * chunked decoder when chunked, or stored on its way into the cache.
 * Worker thread.
 */
#include "core/http/proxy_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/conn.h"
#include "core/http/cache_http.h"
#include "core/http/forward.h"
#include "core/http/proxy_internal.h"
#include "core/http/reply.h"
#include "core/http/route.h"
#include "core/pp_conn.h"
#include "core/stats.h"
#include "core/tls.h"
#include "core/upstream.h"

/* ---- the response ----------------------------------------------------- */

/* The server is gone or broke the protocol before the response ended. */
static void response_failed(struct conn *c, int status, const char *reason)
{
	struct http_conn *hc = http_of(c);
	if (hc->server && status == 502)
		lb_server_failed(hc->server, c->server_taken_ms);
	if (hc->resp_started) {
		/* Cut short, a storable answer fails its fill as surely as no
		 * answer: the key's waiters go to the server side by side. */
		cache_http_failed(c);
		hc->reason = reason;
		conn_close(c, CR_SERVER_RESET);
		return;
	}
	http_reply(c, status, reason, false);
}

/* RFC 9110 §6.6.1: a final response without Date gets one when it is
 * forwarded or stored. Writes the line into LINE (DATE_LINE_MAX bytes) and
 * returns its length, or 0 when H has a Date that goes on (one that its
 * Connection names is dropped as hop-by-hop). */
#define DATE_LINE_MAX 48
static size_t date_line(const struct http_head *h, const char *buf, char *line)
{
	if (h->status < 200)
		return 0;
	for (unsigned i = 0; i < h->header_count; i++)
		if (http_token_eq(buf + h->headers[i].name.off, h->headers[i].name.len, "date") &&
		    !http_connection_lists(h, buf, "date", 4))
			return 0;
	char date[HTTP_DATE_SIZE];
	http_date_now(date);
	return date[0] ? (size_t)snprintf(line, DATE_LINE_MAX, "Date: %s\r\n", date) : 0;
}

static int build_response_head(struct conn *c, const struct http_head *h, const char *date,
			       size_t date_len)
{
	struct http_conn *hc = http_of(c);
	struct rewrite_extra *x = &hc->resp_extra;
	int err = 0;

	x->len = 0;
	if (date_len)
		err |= rewrite_put(x, date, date_len);
	if (hc->upgrade && h->status == 101)
		err |= rewrite_add(x, "Connection: upgrade\r\n");
	else if (!hc->client_ka)
		err |= rewrite_add(x, "Connection: close\r\n");
	else if (hc->minor == 0)
		err |= rewrite_add(x, "Connection: keep-alive\r\n");
	if (c->lc->mode == MODE_FORWARD)
		err |= rewrite_add(x, "Via: 1.1 fulcrum\r\n"); /* RFC 9110 §7.6.3 */
	if (c->lc->cache_size)
		err |= rewrite_add(x, "X-Cache: MISS\r\n"); /* SPEC §3 "Caching" */
	if (hc->set_cookie && hc->pool->cfg->sticky_cookie)
		err |= rewrite_add(x, "Set-Cookie: %s=%s; Path=/; HttpOnly\r\n",
				   hc->pool->cfg->sticky_cookie, hc->server->name);
	err |= rewrite_add(x, "\r\n");
	return err ? -ENOMEM : 0;
}

/* RFC 9110 §6.2: an intermediary sends its own version on a status line
 * (LINE, a parsed head's first byte), so an HTTP/1.1 client keeps its
 * connection after an HTTP/1.0 server's answer, and an HTTP/1.2 one's is
 * 1.1 too, as parse_version takes it. Interim heads included. */
static void send_own_version(char *line)
{
	if (memcmp(line, "HTTP/1.", 7) == 0)
		line[7] = '1';
}

/* Decides from head H how the response body travels (hc->resp_body,
 * resp_left, dechunk) and whether each connection can carry another
 * exchange after it (server_ka, client_ka). Returns 0, -1 for an answer
 * that is invalid here, or -EOPNOTSUPP when only this client cannot take it
 * (not the server's fault). */
static int response_framing(struct conn *c, const struct http_head *h)
{
	struct http_conn *hc = http_of(c);

	hc->status = h->status;
	hc->resp_body = http_response_body(h, hc->method_id);
	/* After an HTTP/1.0 request, only an explicit keep-alive keeps it. */
	hc->server_ka =
		hc->minor == 1 ? http_is_keep_alive(h) : h->conn_keep_alive && !h->conn_close;
	if (hc->resp_body == HTTP_BODY_UNTIL_CLOSE) {
		hc->server_ka = false;
		hc->client_ka = false;
	}
	if (hc->resp_body == HTTP_BODY_TUNNEL) {
		if (!(hc->upgrade && h->status == 101)) {
			/* A 2xx to CONNECT never happens here (CONNECT is refused
			 * in http mode); treat other tunnels as invalid. */
			return -1;
		}
		/* A switch while the request body is still coming: what the
		 * client sends next cannot be both body and tunnel. */
		if (!hc->req_done && hc->req_body != HTTP_BODY_NONE)
			return -1;
		hc->server_ka = false;
		hc->client_ka = false;
	}
	if (c->w->draining || http_client_done(c))
		hc->client_ka = false;
	/* An answer before the request body ended: the client connection
	 * ends with it (RFC 9112 §9.6), and says so. */
	if (!hc->req_done && hc->req_body != HTTP_BODY_NONE)
		hc->client_ka = false;
	hc->resp_left = hc->resp_body == HTTP_BODY_LENGTH ? (uint64_t)h->content_length : 0;
	if (hc->resp_body == HTTP_BODY_CHUNKED)
		http_chunked_init(&hc->resp_ch, TRAILER_MAX);
	/* RFC 9112 §6.1: no Transfer-Encoding to an HTTP/1.0 client; the
	 * payload goes out decoded and the close ends it. A coding other than
	 * chunked (gzip) cannot be undone here, and dropped it would leave the
	 * client bytes it cannot read: that answer is refused, as nginx
	 * refuses any Transfer-Encoding but chunked. */
	if (hc->minor == 0 && h->te_other && hc->resp_body != HTTP_BODY_NONE)
		return -EOPNOTSUPP;
	hc->dechunk = hc->resp_body == HTTP_BODY_CHUNKED && hc->minor == 0;
	if (hc->dechunk)
		hc->client_ka = false;
	return 0;
}

/* The body bytes that came in sbuf with the head (from hc->spos) and can
 * go out with it: counted off the length, or fed through the chunk parser,
 * and offered to the cache. Returns how many, or -1 for a bad chunk. */
static ssize_t body_with_head(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	size_t body = hc->slen - hc->spos;

	switch (hc->resp_body) {
	case HTTP_BODY_LENGTH:
		if (body > hc->resp_left)
			body = (size_t)hc->resp_left;
		hc->resp_left -= body;
		break;
	case HTTP_BODY_CHUNKED: {
		if (hc->dechunk)
			return 0; /* relay_chunked_response decodes what is in sbuf */
		size_t used = 0, data = 0, off = 0;
		enum http_result r = HTTP_NEED_MORE;
		while (off < body && r == HTTP_NEED_MORE) {
			r = http_chunked_feed(&hc->resp_ch, hc->sbuf + hc->spos + off, body - off,
					      &used, &data);
			cache_http_body(c, hc->sbuf + hc->spos + off + used - data, data);
			off += used;
		}
		if (http_is_error(r))
			return -1;
		return (ssize_t)off;
	}
	case HTTP_BODY_NONE:
		return 0;
	case HTTP_BODY_TUNNEL:
		return (ssize_t)body; /* the new protocol's first bytes */
	case HTTP_BODY_UNTIL_CLOSE:
		break;
	}
	cache_http_body(c, hc->sbuf + hc->spos, body);
	return (ssize_t)body;
}

/* Decides how the response body travels and queues the head, with the
 * body bytes that came in the same read, for the client. Returns 0, or
 * below 0 for an answer that cannot go on: -EOPNOTSUPP when only this
 * client cannot take it (not the server's fault). */
static int begin_response(struct conn *c, struct http_head *h)
{
	struct http_conn *hc = http_of(c);

	int err = response_framing(c, h);
	if (err < 0)
		return err;
	char date[DATE_LINE_MAX];
	size_t date_len = date_line(h, hc->sbuf, date);
	if (build_response_head(c, h, date, date_len) < 0)
		return -1;
	cache_http_response(c, h); /* storable? (before the rewrite moves fields) */

	struct rewrite_opts o = {
		.keep_upgrade = hc->upgrade && h->status == 101,
		/* also from a HEAD's answer, which has no body to decode */
		.drop_transfer_encoding = hc->dechunk || hc->minor == 0,
		/* a server's own X-Cache would contradict ours (a hit drops it too) */
		.drop_x_cache = c->lc->cache_size != 0,
		/* RFC 9110 §8.6, RFC 9112 §6.1: none on a 204 or a 101 (whose
		 * next bytes are the new protocol's, no body) */
		.drop_framing = h->status == 204 || h->status == 101,
		/* an origin's challenge is not the forward proxy's own */
		.drop_proxy_auth = c->lc->mode == MODE_FORWARD,
		/* the server's would move the client off its pin (HAProxy's
		 * cookie insert drops it too) */
		.drop_cookie = hc->pool ? hc->pool->cfg->sticky_cookie : NULL,
	};
	size_t start, end;
	rewrite_compact(hc->sbuf, h, &o, &start, &end);
	send_own_version(hc->sbuf + start);
	cache_http_response_head(c, hc->sbuf + start, end - start, date, date_len);
	hc->spos = (uint32_t)h->head_len;

	/* Body bytes that came with the head go out in the same writev. */
	ssize_t body = body_with_head(c);
	if (body < 0)
		return -1;
	http_outq_set(&hc->resp_out, hc->sbuf + start, end - start, hc->resp_extra.data,
		      hc->resp_extra.len, hc->sbuf + hc->spos, (size_t)body);
	hc->spos += (uint32_t)body;
	hc->resp_started = true;
	if (hc->resp_body == HTTP_BODY_NONE ||
	    (hc->resp_body == HTTP_BODY_LENGTH && hc->resp_left == 0) ||
	    (hc->resp_body == HTTP_BODY_CHUNKED && hc->resp_ch.state == HTTP_CHUNK_DONE))
		http_server_done(c);
	cache_http_response_queued(c); /* a 304 to a revalidation: the stored answer */
	return 0;
}

/* Interim heads one request may get (nginx and HAProxy pass a handful);
 * a server sending more is broken, or means to hold the worker. */
#define INTERIM_MAX 32

/* Passes on the interim response (100 Continue, 103 Early Hints) parsed
 * into H at hc->spos, without its hop-by-hop fields, but never to an
 * HTTP/1.0 client (RFC 9110 §15.2). Returns 1 to read on, 0 when the
 * connection waits (its turn is used up), -1 when it was closed. */
static int pass_interim(struct conn *c, struct http_head *h, size_t *budget)
{
	struct http_conn *hc = http_of(c);

	if (h->head_len >= *budget && *budget < c->w->turn_budget) {
		conn_queue_resume(c); /* the others' turn first */
		return 0;
	}
	*budget = h->head_len < *budget ? *budget - h->head_len : 0;
	if (++hc->interim > INTERIM_MAX) {
		response_failed(c, 502, "too_many_interim");
		return -1;
	}
	if (h->status == 100)
		hc->awaits_continue = false; /* the body may come */
	if (hc->minor == 0) {
		hc->spos += (uint32_t)h->head_len;
		return 1;
	}
	static const struct rewrite_opts interim = {.drop_framing = true};
	char *head = hc->sbuf + hc->spos;
	size_t start, end;
	rewrite_compact(head, h, &interim, &start, &end);
	send_own_version(head + start);
	http_outq_set(&hc->resp_out, head + start, end - start, "\r\n", 2, NULL, 0);
	hc->spos += (uint32_t)h->head_len;
	if (http_outq_flush(&c->cli, &hc->resp_out, &hc->bytes_out) <= 0) {
		/* Rare (the client does not take even an interim head): give
		 * up the exchange. It is the client's doing, not the server's,
		 * and bytes of the head may be out: no answer can follow. */
		hc->reason = "client_slow_interim";
		conn_close(c, CR_CLIENT_RESET);
		return -1;
	}
	return 1;
}

/* H is a complete final head at spos. Moves it to the start of sbuf when
 * interim heads went before it (the body code expects it there) and starts
 * the response. Returns 1, or -1 after ending. */
static int take_final_head(struct conn *c, struct http_conn *hc, struct http_head *h,
			   const struct http_limits *lim)
{
	if (hc->spos) {
		memmove(hc->sbuf, hc->sbuf + hc->spos, hc->slen - hc->spos);
		hc->slen -= hc->spos;
		hc->spos = 0;
		(void)http_parse_response(hc->sbuf, hc->slen, lim, h); /* re-points H */
	}
	if (hc->ttfb_ms < 0)
		hc->ttfb_ms = (int64_t)(c->w->now_ms - hc->req_start_ms);
	int err = begin_response(c, h);
	if (err == -EOPNOTSUPP) {
		http_reply(c, 502, "bad_response", false);
		return -1;
	}
	if (err < 0) {
		response_failed(c, 502, "bad_response");
		return -1;
	}
	return 1;
}

/* Reads more of a response head into sbuf. Returns 1 when bytes came, 0 to
 * wait (or after a retry began), -1 after ending. */
static int recv_head(struct conn *c, struct http_conn *hc)
{
	struct side *srv = &hc->u->s;

	if (hc->spos && hc->slen == hc->scap) {
		/* Interim heads went out: their room is free again. */
		memmove(hc->sbuf, hc->sbuf + hc->spos, hc->slen - hc->spos);
		hc->slen -= hc->spos;
		hc->spos = 0;
	}
	if (!srv->rd)
		return 0;
	ssize_t n = io_recv(srv, hc->sbuf + hc->slen, hc->scap - hc->slen);
	if (n == -EAGAIN)
		return 0;
	if (n <= 0) {
		if (http_retry_stale(c) ||
		    http_retry_next(c, n == 0 ? EPIPE : (int)-n, "no answer from"))
			return 0;
		response_failed(c, 502,
				hc->req_write_failed ? "server_write_failed"
				: n == 0	     ? "server_closed"
						     : "server_reset");
		return -1;
	}
	if (hc->ttfb_ms < 0)
		hc->ttfb_ms = (int64_t)(c->w->now_ms - hc->req_start_ms);
	hc->slen += (uint32_t)n;
	return 1;
}

/* Reads and parses response heads until a final one is queued. Returns 1
 * when it is, 0 to wait, -1 after ending. 1xx heads go on as they come,
 * within the worker's turn budget and at most INTERIM_MAX of them. */
static int read_response_head(struct conn *c, struct http_conn *hc)
{
	static const struct http_limits lim = {.max_uri_size = HTTP_DEFAULT_URI_SIZE,
					       .max_header_size = RESP_HEAD_MAX};
	struct http_head *h = &c->w->head;
	size_t budget = c->w->turn_budget;

	for (;;) {
		if (hc->slen > hc->spos) {
			enum http_result r = http_parse_response(hc->sbuf + hc->spos,
								 hc->slen - hc->spos, &lim, h);
			if (http_is_error(r)) {
				response_failed(c, 502,
						r == HTTP_E_HEAD_TOO_LARGE
							? "response_head_too_large"
							: "bad_response");
				return -1;
			}
			if (r == HTTP_DONE && h->status >= 100 && h->status < 200 &&
			    h->status != 101) {
				int k = pass_interim(c, h, &budget);
				if (k <= 0)
					return k;
				continue;
			}
			if (r == HTTP_DONE)
				return take_final_head(c, hc, h, &lim);
			if (hc->slen - hc->spos >= RESP_HEAD_MAX) {
				response_failed(c, 502, "response_head_too_large");
				return -1;
			}
		}
		int k = recv_head(c, hc);
		if (k <= 0)
			return k;
	}
}

/* Sends the ssend bytes at spos in sbuf to the client: 1 when they are all
 * gone, 0 when the client is full, -1 after ending the connection. */
static int send_held(struct conn *c, struct http_conn *hc)
{
	while (hc->ssend) {
		if (!c->cli.wr)
			return 0;
		ssize_t n = io_send(&c->cli, hc->sbuf + hc->spos, hc->ssend);
		if (n < 0) {
			if (n == -EAGAIN)
				return 0;
			hc->reason = "client_write_failed";
			conn_close(c, CR_CLIENT_RESET);
			return -1;
		}
		hc->spos += (uint32_t)n;
		hc->ssend -= (uint32_t)n;
		hc->bytes_out += (uint64_t)n;
	}
	return 1;
}

/* Checks the chunked bytes held in sbuf from spos and makes them the next
 * ssend bytes to go: as they came, or the payload alone for an HTTP/1.0
 * client (dechunk: each run moves left, over the framing before it). All
 * that was read goes in one send, however small its chunks: a send per
 * chunk would let a server of 1-byte chunks hold the worker. Returns 0, or
 * -1 after ending. */
static int decode_held(struct conn *c, struct http_conn *hc)
{
	uint32_t start = hc->spos, end = hc->spos;

	while (hc->spos < hc->slen && hc->resp_ch.state != HTTP_CHUNK_DONE) {
		size_t used = 0, data = 0;
		enum http_result r = http_chunked_feed(&hc->resp_ch, hc->sbuf + hc->spos,
						       hc->slen - hc->spos, &used, &data);
		if (http_is_error(r)) {
			response_failed(c, 502, http_result_name(r));
			return -1;
		}
		if (hc->resp_ch.state == HTTP_CHUNK_DONE)
			http_server_done(c);
		const char *run = hc->sbuf + hc->spos + used - data;
		cache_http_body(c, run, data);
		hc->spos += (uint32_t)used;
		if (hc->dechunk) {
			memmove(hc->sbuf + end, run, data);
			end += (uint32_t)data;
		} else {
			end = hc->spos;
		}
	}
	if (hc->dechunk) {
		/* What follows the body (none, from a sound server) follows
		 * the payload now. */
		uint32_t rest = hc->slen - hc->spos;
		memmove(hc->sbuf + end, hc->sbuf + hc->spos, rest);
		hc->slen = end + rest;
	}
	hc->spos = start;
	hc->ssend = end - start;
	return 0;
}

/* Relays a chunked response body through sbuf. 1 done, 0 wait, -1 ended. */
static int relay_chunked_response(struct conn *c, struct http_conn *hc)
{
	struct side *srv = &hc->u->s;
	size_t budget = c->w->turn_budget; /* then the worker's other connections */

	for (;;) {
		if (hc->ssend) {
			int r = send_held(c, hc);
			if (r <= 0)
				return r;
			continue;
		}
		if (hc->resp_ch.state == HTTP_CHUNK_DONE)
			return 1;
		if (hc->spos < hc->slen) {
			if (decode_held(c, hc) < 0)
				return -1;
			continue;
		}
		if (budget == 0) {
			conn_queue_resume(c);
			return 0;
		}
		hc->spos = hc->slen = 0;
		if (!srv->rd)
			return 0;
		ssize_t n = io_recv(srv, hc->sbuf, hc->scap);
		if (n == -EAGAIN)
			return 0;
		if (n <= 0) {
			response_failed(c, 502,
					hc->req_write_failed ? "server_write_failed"
					: n == 0	     ? "server_closed"
							     : "server_reset");
			return -1;
		}
		hc->slen = (uint32_t)n;
		budget = (size_t)n < budget ? budget - (size_t)n : 0;
	}
}

static void body_read_all(struct half *h)
{
	http_server_done(container_of(h, struct conn, down));
}

/* Relays a Content-Length or read-until-close body with relay_half. */
static int relay_plain_response(struct conn *c, struct http_conn *hc)
{
	/* A cache fill that stopped (the body outgrew what may be stored) may
	 * leave bytes read for the client in sbuf: they go first. */
	if (hc->ssend) {
		int r = send_held(c, hc);
		if (r <= 0)
			return r;
	}
	/* Once the half is armed, only it knows whether bytes still wait in
	 * its pipe or buffer: resp_left reaching 0 means read, not written. */
	if (!hc->down_armed) {
		if (hc->resp_body == HTTP_BODY_LENGTH && hc->resp_left == 0)
			return 1;
		if (hc->resp_body == HTTP_BODY_LENGTH)
			relay_half_limit(&c->down, hc->resp_left, body_read_all);
		else
			relay_half_limit(&c->down, RELAY_UNLIMITED, NULL);
		hc->down_armed = true;
	}
	size_t budget = c->w->turn_budget;
	uint64_t before = c->down.bytes;
	enum relay_result r = relay_half(c->w, &c->down, &budget);
	hc->bytes_out += c->down.bytes - before;
	if (hc->resp_body == HTTP_BODY_LENGTH)
		hc->resp_left = c->down.left;
	if (r == RELAY_ERROR) {
		/* The relay says EPIPE for a body cut short by a close. */
		if (c->down.err_on_src)
			response_failed(c, 502,
					c->down.err == EPIPE ? "server_closed" : "server_reset");
		else {
			hc->reason = "client_write_failed";
			conn_close(c, CR_CLIENT_RESET);
		}
		return -1;
	}
	if (r == RELAY_MORE)
		conn_queue_resume(c);
	return r == RELAY_DONE ? 1 : 0;
}

/*
 * Relays a Content-Length or read-until-close body through sbuf, for a
 * response the cache stores: its bytes must be seen, so no splice. 1 done,
 * 0 wait, -1 ended.
 */
static int relay_copied_response(struct conn *c, struct http_conn *hc)
{
	struct side *srv = &hc->u->s;
	size_t budget = c->w->turn_budget;

	for (;;) {
		if (hc->ssend) {
			int r = send_held(c, hc);
			if (r <= 0)
				return r;
			continue;
		}
		if (hc->resp_body == HTTP_BODY_LENGTH && hc->resp_left == 0)
			return 1;
		if (budget == 0) {
			conn_queue_resume(c);
			return 0;
		}
		hc->spos = hc->slen = 0;
		if (!srv->rd)
			return 0;
		size_t want = hc->scap;
		if (hc->resp_body == HTTP_BODY_LENGTH && hc->resp_left < want)
			want = (size_t)hc->resp_left;
		ssize_t n = io_recv(srv, hc->sbuf, want);
		if (n == -EAGAIN)
			return 0;
		if (n == 0 && hc->resp_body == HTTP_BODY_UNTIL_CLOSE)
			return 1;
		if (n <= 0) {
			response_failed(c, 502,
					hc->req_write_failed ? "server_write_failed"
					: n == 0	     ? "server_closed"
							     : "server_reset");
			return -1;
		}
		hc->slen = hc->ssend = (uint32_t)n;
		if (hc->resp_body == HTTP_BODY_LENGTH && (hc->resp_left -= (uint64_t)n) == 0)
			http_server_done(c);
		budget = (size_t)n < budget ? budget - (size_t)n : 0;
		cache_http_body(c, hc->sbuf, (size_t)n);
	}
}

/* The server gave a whole, valid response (or its 101): that ends its run
 * of passive failures (SPEC §4). A response cut short or broken midway
 * counts as one (response_failed). */
static void server_answered(struct http_conn *hc)
{
	if (hc->server)
		lb_server_passed(hc->server);
}

/* Returns 1 when the response has all gone to the client, 0 to wait. */
int http_relay_response(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	if (hc->resp_done)
		return 1;
	if (!hc->resp_head_sent) {
		if (!hc->resp_started) {
			if (http_sbuf_get(c) < 0) {
				http_reply(c, 500, "no_memory", true);
				return -1;
			}
			int r = read_response_head(c, hc);
			if (r <= 0)
				return r;
		}
		int r = http_outq_flush(&c->cli, &hc->resp_out, &hc->bytes_out);
		if (r < 0) {
			hc->reason = "client_write_failed";
			conn_close(c, CR_CLIENT_RESET);
			return -1;
		}
		if (r == 0)
			return 0;
		hc->resp_head_sent = true;
		if (hc->resp_body == HTTP_BODY_TUNNEL) {
			server_answered(hc);
			return 1;
		}
	}
	int r = 1;
	switch (hc->resp_body) {
	case HTTP_BODY_CHUNKED:
		r = relay_chunked_response(c, hc);
		break;
	case HTTP_BODY_LENGTH:
	case HTTP_BODY_UNTIL_CLOSE:
		r = cache_http_is_storing(hc) ? relay_copied_response(c, hc)
					      : relay_plain_response(c, hc);
		break;
	default:
		break;
	}
	if (r == 1) {
		hc->resp_done = true;
		server_answered(hc);
	}
	if (r >= 0) /* waiting with server bytes held: on the client */
		cache_http_client_holds_up(c, r == 0 && hc->ssend);
	return r;
}
