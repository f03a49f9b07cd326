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
#include "core/stats.h"
#include "core/tls.h"
#include "core/upstream.h"

#define RELAY_BUDGET     (1024 * 1024)
#define LINGER_MS        1000
#define TRAILER_MAX      16384
#define RESP_HEAD_MAX    65536

static void run(struct conn *c);
static void start_request(struct conn *c);
static void new_request(struct conn *c);

struct http_conn *http_conn_new(void)
{
	return calloc(1, sizeof(struct http_conn));
}

static struct http_conn *H(const struct conn *c)
{
	return c->http;
}

/* ---- buffers ---------------------------------------------------------- */

static int rbuf_get(struct conn *c)
{
	struct http_conn *hc = H(c);
	if (hc->rbuf)
		return 0;
	size_t cap = c->w->scratch_cap;
	if (cap < c->lc->max_header_size + 1024)
		cap = c->lc->max_header_size + 1024;
	hc->rbuf = worker_buf_get(c->w, cap);
	if (!hc->rbuf)
		return -ENOMEM;
	hc->rcap = (uint32_t)cap;
	hc->rlen = hc->rpos = hc->rsend = 0;
	return 0;
}

static void rbuf_put(struct conn *c, struct http_conn *hc)
{
	worker_buf_put(c->w, hc->rbuf, hc->rcap);
	hc->rbuf = NULL;
	hc->rlen = hc->rcap = hc->rpos = hc->rsend = 0;
}

static int sbuf_get(struct conn *c)
{
	struct http_conn *hc = H(c);
	if (hc->sbuf)
		return 0;
	size_t cap = c->w->scratch_cap < RESP_HEAD_MAX ? RESP_HEAD_MAX : c->w->scratch_cap;
	hc->sbuf = worker_buf_get(c->w, cap);
	if (!hc->sbuf)
		return -ENOMEM;
	hc->scap = (uint32_t)cap;
	hc->slen = hc->spos = hc->ssend = 0;
	return 0;
}

static void sbuf_put(struct conn *c, struct http_conn *hc)
{
	worker_buf_put(c->w, hc->sbuf, hc->scap);
	hc->sbuf = NULL;
	hc->slen = hc->scap = hc->spos = hc->ssend = 0;
}

/* Reads what S has into BUF: io_recv, with EINTR and EAGAIN folded. */
static ssize_t read_side(struct side *s, char *buf, size_t cap)
{
	return io_recv(s, buf, cap);
}

/* Writes what Q holds to S. Returns 1 when all is written, 0 when S is full,
 * -errno on error. Adds the bytes written to *COUNT. */
static int outq_flush(struct side *s, struct outq *q, uint64_t *count)
{
	while (q->i < q->n) {
		if (!s->wr)
			return 0;
		ssize_t n = io_sendv(s, &q->iov[q->i], q->n - q->i);
		if (n < 0)
			return n == -EAGAIN ? 0 : (int)n;
		*count += (uint64_t)n;
		while (n > 0 && q->i < q->n) {
			struct iovec *v = &q->iov[q->i];
			size_t k = (size_t)n < v->iov_len ? (size_t)n : v->iov_len;
			v->iov_base = (char *)v->iov_base + k;
			v->iov_len -= k;
			n -= (ssize_t)k;
			if (v->iov_len == 0)
				q->i++;
		}
	}
	return 1;
}

static void outq_set(struct outq *q, const void *a, size_t alen, const void *b, size_t blen,
		     const void *c, size_t clen)
{
	q->n = q->i = 0;
	if (alen)
		q->iov[q->n++] = (struct iovec){ (void *)a, alen };
	if (blen)
		q->iov[q->n++] = (struct iovec){ (void *)b, blen };
	if (clen)
		q->iov[q->n++] = (struct iovec){ (void *)c, clen };
}

/* ---- logging and counting --------------------------------------------- */

static void count_response(struct http_conn *hc)
{
	if (!hc->server)
		return;
	int cls = hc->status >= 100 && hc->status < 600 ? hc->status / 100 : 0;
	atomic_fetch_add_explicit(&hc->server->responses[cls], 1, memory_order_relaxed);
}

static void log_request(struct conn *c)
{
	struct http_conn *hc = H(c);
	struct log_record r = {
		.start_wall_ms = hc->req_start_wall_ms,
		.client = &c->peer.sa,
		.listener = c->lc->name,
		.pool = hc->pool ? hc->pool->name : NULL,
		.server = hc->server ? hc->server->name : NULL,
		.method = hc->method,
		.method_len = hc->method_len,
		.target = hc->target,
		.target_len = hc->target_len,
		.proto = hc->minor ? "HTTP/1.1" : "HTTP/1.0",
		.status = hc->status,
		.bytes_in = hc->bytes_in,
		.bytes_out = hc->bytes_out,
		.total_ms = (int64_t)(c->w->now_ms - hc->req_start_ms),
		.ttfb_ms = hc->ttfb_ms,
		.reason = hc->reason,
	};
	STAT_ADD(c->w->stats[c->listener].bytes_in, hc->bytes_in);
	STAT_ADD(c->w->stats[c->listener].bytes_out, hc->bytes_out);
	stats_request_done(c->w, hc->pool, (uint64_t)r.total_ms, hc->n_tried);
	log_access(c->w->log, &r);
}

/* ---- ending things ---------------------------------------------------- */

static void release_server(struct conn *c, bool reuse)
{
	struct http_conn *hc = H(c);
	if (hc->u) {
		if (reuse)
			upstream_release(hc->u, c->gen, hc->pool->cfg->keepalive);
		else
			upstream_close(hc->u);
		hc->u = NULL;
	}
	if (c->server_held) {
		lb_server_put(c->server);
		c->server_held = false;
	}
	relay_half_release(c->w, &c->up);
	relay_half_release(c->w, &c->down);
}

void http_conn_free(struct conn *c, struct http_conn *hc)
{
	if (hc->phase != HP_IDLE && hc->phase != HP_LINGER && hc->method_len) {
		if (!hc->reason)
			hc->reason = close_reason_name(c->reason);
		log_request(c);
	}
	release_server(c, false);
	forward_conn_free(hc->fwd);
	cache_http_free(hc);
	rbuf_put(c, hc);
	sbuf_put(c, hc);
	free(hc->req_extra.data);
	free(hc->resp_extra.data);
	free(hc);
}

static void set_phase(struct conn *c, enum http_phase p)
{
	H(c)->phase = p;
}

void http_set_phase(struct conn *c, enum http_phase p)
{
	set_phase(c, p);
}

/*
 * Answers the current request with STATUS from fulcrum itself. When a
 * response has already started, the client connection can only be closed.
 */
void http_reply_ex(struct conn *c, int status, const char *reason, bool close, const char *headers)
{
	struct http_conn *hc = H(c);

	hc->reason = reason;
	hc->connect_tunnel = false;
	release_server(c, false);
	if (hc->resp_started) {
		conn_close(c, CR_SERVER_RESET);
		return;
	}
	/* A body the client is still sending makes the connection unusable. */
	if (!hc->req_done && hc->req_body != HTTP_BODY_NONE)
		close = true;
	if (c->w->draining || !hc->client_ka)
		close = true;
	hc->status = status;
	hc->reply_close = close;
	hc->client_ka = hc->client_ka && !close;
	size_t n = http_reply_format(hc->reply, sizeof(hc->reply), status, close, headers);
	outq_set(&hc->resp_out, hc->reply, n, NULL, 0, NULL, 0);
	hc->resp_started = true;
	set_phase(c, HP_REPLY);
}

static void reply(struct conn *c, int status, const char *reason, bool close)
{
	http_reply_ex(c, status, reason, close, NULL);
}

static void linger(struct conn *c)
{
	io_shutdown(&c->cli);
	set_phase(c, HP_LINGER);
	timer_add(&c->w->timers, &c->timer, c->w->now_ms + LINGER_MS);
}

/* The current request is over: log it, pool the server connection if it is
 * clean, and either wait for the next request or close. */
static void finish_request(struct conn *c)
{
	struct http_conn *hc = H(c);
	bool reuse = hc->server_ka && hc->req_done && hc->resp_done && hc->slen == hc->spos;

	cache_http_end(c); /* stores a complete response, lets a hit's entry go */
	count_response(hc);
	log_request(c);
	release_server(c, reuse);
	sbuf_put(c, hc);
	hc->method_len = 0;
	if (!hc->client_ka || c->w->draining) {
		conn_close(c, CR_NONE);
		return;
	}
	/* Keep what the client pipelined after this request. */
	if (hc->rbuf && hc->rpos < hc->rlen) {
		memmove(hc->rbuf, hc->rbuf + hc->rpos, hc->rlen - hc->rpos);
		hc->rlen -= hc->rpos;
		hc->rpos = 0;
		new_request(c);
		start_request(c);
		return;
	}
	rbuf_put(c, hc);
	set_phase(c, HP_IDLE);
	c->last_active_ms = c->w->now_ms;
}

/* ---- choosing a server ------------------------------------------------ */

/* The value of cookie NAME in the Cookie fields of H, or NULL. */
static const char *find_cookie(const struct http_head *h, const char *buf, const char *name,
			       size_t *len)
{
	size_t nlen = strlen(name);
	for (int i = http_header_find(h, buf, "cookie", 0); i >= 0;
	     i = http_header_find(h, buf, "cookie", (unsigned)i + 1)) {
		const char *v = buf + h->headers[i].value.off;
		const char *end = v + h->headers[i].value.len;
		while (v < end) {
			while (v < end && (*v == ' ' || *v == ';'))
				v++;
			const char *pair = v;
			while (v < end && *v != ';')
				v++;
			if ((size_t)(v - pair) > nlen && pair[nlen] == '=' &&
			    memcmp(pair, name, nlen) == 0) {
				*len = (size_t)(v - pair) - nlen - 1;
				return pair + nlen + 1;
			}
		}
	}
	return NULL;
}

static uint64_t request_key(const struct conn *c, const struct http_head *h, const char *buf)
{
	const struct cfg_pool *pc = H(c)->pool->cfg;
	const char *v = NULL;
	size_t len = 0;
	int i;

	switch (pc->hash_key) {
	case HKEY_HEADER:
		i = http_header_find(h, buf, pc->hash_key_name, 0);
		if (i >= 0) {
			v = buf + h->headers[i].value.off;
			len = h->headers[i].value.len;
		}
		break;
	case HKEY_COOKIE:
		v = find_cookie(h, buf, pc->hash_key_name, &len);
		break;
	case HKEY_URI:
		v = buf + h->target.off;
		len = h->target.len;
		break;
	case HKEY_PATH:
		v = buf + h->path.off;
		len = h->path.len;
		if (memchr(v, '?', len))
			len = (size_t)((const char *)memchr(v, '?', len) - v);
		break;
	case HKEY_HOST:
		v = buf + h->host.off;
		len = h->host.len;
		break;
	case HKEY_CLIENT_IP:
		break;
	}
	/* SPEC §4: a key absent from the request falls back to the client. */
	return v && len ? lb_hash(v, len) : conn_client_hash(c);
}

/* The server of POOL named NAME (LEN bytes), or NULL. */
static struct lb_server *find_server(const struct lb_pool *pool, const char *name, size_t len)
{
	for (size_t i = 0; i < pool->n_servers; i++) {
		struct lb_server *s = pool->servers[i];
		if (strlen(s->name) == len && memcmp(s->name, name, len) == 0)
			return s;
	}
	return NULL;
}

/* Whether a sticky cookie naming S is valid (SPEC §4): S is up (not down,
 * draining or disabled), and a backup only while no normal server can take
 * traffic, the same tier rule lb_pick follows. */
static bool sticky_is_valid(const struct lb_pool *pool, const struct lb_server *s)
{
	if (atomic_load_explicit(&s->state, memory_order_relaxed) != SRV_UP)
		return false;
	if (!s->backup)
		return true;
	for (size_t i = 0; i < pool->n_servers; i++)
		if (!pool->servers[i]->backup && lb_server_is_usable(pool->servers[i]))
			return false;
	return true;
}

/*
 * The server the request's sticky cookie pins it to, or NULL for the
 * balancer to choose. Sets hc->set_cookie when the cookie is absent or not
 * valid, so the answer pins the client to the server that gives it. A valid
 * cookie whose server is at its maxconn gets NULL and no new cookie: this
 * request goes elsewhere, the client stays pinned.
 */
static struct lb_server *sticky_server(struct conn *c, const struct http_head *h, const char *buf)
{
	struct http_conn *hc = H(c);
	const char *name = hc->pool->cfg->sticky_cookie;
	struct lb_server *s = NULL;
	size_t len;

	if (!name)
		return NULL;
	const char *v = find_cookie(h, buf, name, &len);
	if (v)
		s = find_server(hc->pool, v, len);
	hc->set_cookie = !s || !sticky_is_valid(hc->pool, s);
	if (hc->set_cookie || !lb_server_is_usable(s))
		return NULL;
	return s;
}

/* ---- the request ------------------------------------------------------ */

static void copy_log_fields(struct http_conn *hc, const struct http_head *h, const char *buf)
{
	hc->method_len = h->method.len < sizeof(hc->method) ? (uint16_t)h->method.len
							    : sizeof(hc->method);
	memcpy(hc->method, buf + h->method.off, hc->method_len);
	hc->target_len = h->target.len < sizeof(hc->target) ? (uint16_t)h->target.len
							    : sizeof(hc->target);
	memcpy(hc->target, buf + h->target.off, hc->target_len);
	hc->method_id = h->method_id;
	hc->minor = (uint8_t)h->version_minor;
}

/* Builds the head that goes to the server: the kept lines of the client's
 * head, closed up in place, plus fulcrum's lines (see proxy_internal.h). */
int http_build_request_head(struct conn *c, const struct http_head *h,
			    const struct rewrite_opts *more, const char *lines)
{
	struct http_conn *hc = H(c);
	struct rewrite_extra *x = &hc->req_extra;
	char *buf = hc->rbuf;
	char addr[80];
	int err = 0;

	x->len = 0;
	if (c->lc->forwarded_headers) {
		err |= rewrite_add(x, "X-Forwarded-For: ");
		size_t before = x->len;
		err |= rewrite_add_joined(x, h, buf, "x-forwarded-for");
		log_format_addr(&c->peer.sa, addr, sizeof(addr));
		char *colon = strrchr(addr, ':');
		if (colon)
			*colon = '\0';
		const char *ip = addr[0] == '[' ? addr + 1 : addr;
		if (ip[strlen(ip) - 1] == ']')
			((char *)ip)[strlen(ip) - 1] = '\0';
		err |= rewrite_add(x, "%s%s\r\nX-Forwarded-Proto: %s\r\n",
				   x->len > before ? ", " : "", ip,
				   tls_side_is_tls(&c->cli) ? "https" : "http");
		if (h->host.len)
			err |= rewrite_add(x, "X-Forwarded-Host: %.*s\r\n", (int)h->host.len,
					   buf + h->host.off);
	}
	if (hc->upgrade)
		err |= rewrite_add(x, "Connection: upgrade\r\n");
	if (lines)
		err |= rewrite_add(x, "%s", lines);
	err |= cache_http_request_lines(c, x); /* a revalidation's validators */
	err |= rewrite_add(x, "\r\n");
	if (err)
		return -ENOMEM;

	struct rewrite_opts o = {
		.keep_upgrade = hc->upgrade,
		.drop_forwarded = c->lc->forwarded_headers,
		.drop_proxy_auth = more && more->drop_proxy_auth,
		.drop_host = more && more->drop_host,
	};
	size_t start, end;
	rewrite_compact(buf, h, &o, &start, &end);
	hc->head_start = (uint32_t)start;
	hc->head_end = (uint32_t)end;
	return 0;
}

static void set_request_out(struct http_conn *hc)
{
	outq_set(&hc->req_out, hc->rbuf + hc->head_start, hc->head_end - hc->head_start,
		 hc->req_extra.data, hc->req_extra.len, NULL, 0);
}

static void connect_server(struct conn *c);

/* A complete head H is in rbuf: check it, route it, and send it on. */
static void begin_request(struct conn *c, const struct http_head *h)
{
	struct http_conn *hc = H(c);
	const struct cfg_listener *lc = c->lc;

	copy_log_fields(hc, h, hc->rbuf);
	hc->bytes_in = h->head_len;
	hc->rpos = (uint32_t)h->head_len;
	hc->client_ka = http_is_keep_alive(h);
	hc->req_body = http_request_body(h);
	hc->req_left = hc->req_body == HTTP_BODY_LENGTH ? (uint64_t)h->content_length : 0;
	hc->upgrade = h->has_upgrade && h->conn_upgrade;
	if (hc->req_body == HTTP_BODY_CHUNKED)
		http_chunked_init(&hc->req_ch, TRAILER_MAX);

	if (lc->mode == MODE_FORWARD) {
		forward_begin(c, h);
		return;
	}
	if (h->target_form != HTTP_TARGET_ORIGIN && h->target_form != HTTP_TARGET_ASTERISK) {
		reply(c, 400, "bad_target", true);
		return;
	}
	if (lc->max_body_size && hc->req_body == HTTP_BODY_LENGTH &&
	    hc->req_left > lc->max_body_size) {
		reply(c, 413, "body_too_large", true);
		return;
	}
	int pool = route_http(c->gen->cfg, (int)c->listener, h, hc->rbuf);
	hc->pool = gen_pool(c->gen, pool);
	if (!hc->pool) {
		reply(c, 404, "no_route", false);
		return;
	}
	if (cache_http_request(c, h))
		return; /* answered from the cache (cache_http.c) */
	enum cfg_balance b = hc->pool->balance;
	hc->key = b == BAL_SOURCE || b == BAL_MAGLEV || b == BAL_RING
			  ? request_key(c, h, hc->rbuf)
			  : 0;
	struct lb_server *sticky = sticky_server(c, h, hc->rbuf);
	if (http_build_request_head(c, h, NULL, NULL) < 0) {
		reply(c, 500, "no_memory", true);
		return;
	}
	hc->server = sticky;
	connect_server(c);
}

/* Forgets the last request: the connection starts reading a new one. */
static void new_request(struct conn *c)
{
	struct http_conn *hc = H(c);

	set_phase(c, HP_HEAD);
	hc->seq++;
	hc->req_start_ms = c->w->now_ms;
	hc->req_start_wall_ms = wall_ms();
	hc->method_len = hc->target_len = 0;
	hc->method[0] = '\0';
	hc->status = 0;
	hc->reason = NULL;
	hc->pool = NULL;
	hc->server = NULL;
	hc->n_tried = 0;
	hc->set_cookie = false;
	hc->dechunk = false;
	hc->req_body = hc->resp_body = HTTP_BODY_NONE;
	hc->req_left = hc->resp_left = hc->req_body_len = 0;
	hc->req_head_sent = hc->req_done = false;
	hc->resp_started = hc->resp_head_sent = hc->resp_done = false;
	hc->server_ka = false;
	hc->up_armed = hc->down_armed = false;
	hc->upgrade = false;
	hc->rsend = 0;
	hc->ttfb_ms = -1;
	hc->bytes_in = hc->bytes_out = 0;
}

/* Looks for a complete request head in rbuf and starts it. */
static void start_request(struct conn *c)
{
	struct http_conn *hc = H(c);
	struct http_head *h = &c->w->head;
	struct http_limits lim = {
		.max_uri_size = c->lc->max_uri_size,
		.max_header_size = c->lc->max_header_size,
	};

	if (hc->rlen == 0)
		return;
	enum http_result r = http_parse_request(hc->rbuf, hc->rlen, &lim, h);
	if (r == HTTP_NEED_MORE)
		return;
	if (http_is_error(r)) {
		hc->method_len = 1;
		hc->method[0] = '-';
		hc->target_len = 1;
		hc->target[0] = '-';
		hc->minor = 1;
		hc->bytes_in = hc->rlen;
		reply(c, http_result_status(r), http_result_name(r), true);
		return;
	}
	begin_request(c, h);
}

/* ---- connecting ------------------------------------------------------- */

static void attach(struct conn *c, struct upstream *u)
{
	struct http_conn *hc = H(c);
	hc->u = u;
	u->s.c = c;
	relay_half_init(&c->up, &c->cli, &u->s);
	relay_half_init(&c->down, &u->s, &c->cli);
}

static void server_failed(struct conn *c, int err, const char *what)
{
	struct http_conn *hc = H(c);
	atomic_fetch_add_explicit(&hc->server->fails, 1, memory_order_relaxed);
	log_info("http %s: %s %s/%s (%s): %s", c->lc->name, what, hc->pool->name, hc->server->name,
		 hc->server->addr.text, strerror(err));
}

static bool can_retry(const struct conn *c)
{
	const struct http_conn *hc = H(c);
	return hc->n_tried <= (unsigned)hc->pool->cfg->retries && hc->n_tried < HTTP_MAX_TRIES;
}

/* Picks a server (unless sticky already did) and gets a connection to it:
 * an idle pooled one, or a new one. */
static void connect_server(struct conn *c)
{
	struct http_conn *hc = H(c);

	for (;;) {
		struct lb_server *s = hc->server;
		if (!s) {
			struct lb_worker *lw = worker_lb(c->w, c->gen, -1);
			for (size_t i = 0; i < c->gen->cfg->n_pools; i++)
				if (c->gen->pools[i] == hc->pool)
					lw = worker_lb(c->w, c->gen, (int)i);
			s = lb_pick(hc->pool, lw, hc->key, hc->tried, hc->n_tried);
			/* A retry moves a sticky client off the server that
			 * failed: the answer pins it to the one that serves. */
			if (hc->n_tried)
				hc->set_cookie = true;
		}
		if (!s) {
			if (hc->n_tried)
				reply(c, 502, "connect_failed", false);
			else
				reply(c, 503, "no_server", false);
			return;
		}
		hc->server = s;
		hc->tried[hc->n_tried++] = s;
		c->server = s;
		c->server_held = true;
		lb_server_get(s);

		/* A tunnel's connection is its own: it never goes back to the pool,
		 * so it does not come from there either. */
		struct upstream *u = hc->connect_tunnel ? NULL : upstream_take_idle(c->w, s);
		if (u) {
			attach(c, u);
			u->s.wr = true; /* an idle connection has room to write */
			set_request_out(hc);
			set_phase(c, HP_EXCHANGE);
			return;
		}
		int err = 0;
		u = upstream_connect(c->w, s, &err);
		if (u) {
			attach(c, u);
			set_request_out(hc);
			set_phase(c, HP_CONNECT);
			timer_add(&c->w->timers, &c->timer,
				  c->w->now_ms + hc->pool->cfg->connect_timeout_ms);
			return;
		}
		server_failed(c, err, "connect to");
		release_server(c, false);
		hc->server = NULL;
		if (!can_retry(c)) {
			reply(c, 502, "connect_failed", false);
			return;
		}
	}
}

void http_connect_server(struct conn *c)
{
	connect_server(c);
}

static void check_connect(struct conn *c)
{
	struct http_conn *hc = H(c);
	int err = 0;
	socklen_t len = sizeof(err);

	if (!hc->u->s.wr)
		return;
	if (getsockopt(hc->u->s.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == 0)
		err = -pp_send_header(c, hc->server, hc->u->s.fd); /* PROXY header first */
	/* then TLS, when the pool has tls = on; forward mode's origins are plain
	 * (https goes through CONNECT) and their pools are not the generation's */
	if (err == 0 && !hc->fwd)
		err = -tls_server_side(&hc->u->s, c->gen, hc->pool, hc->server);
	if (err == 0) {
		hc->u->connected = true;
		atomic_store_explicit(&hc->server->fails, 0, memory_order_relaxed);
		if (hc->connect_tunnel)
			forward_established(c);
		else
			set_phase(c, HP_EXCHANGE);
		return;
	}
	server_failed(c, err, "connect to");
	release_server(c, false);
	hc->server = NULL;
	if (!can_retry(c)) {
		reply(c, 502, "connect_failed", false);
		return;
	}
	connect_server(c);
}

/* A pooled connection failed before any response byte: the server closed
 * it while it sat idle. Safe to send again on a fresh one when the request
 * is idempotent and had no body. */
static bool retry_stale(struct conn *c)
{
	struct http_conn *hc = H(c);
	if (!hc->u || !hc->u->reused || hc->slen || hc->resp_started)
		return false;
	if (!http_method_is_idempotent(hc->method_id) || hc->req_body != HTTP_BODY_NONE)
		return false;
	struct lb_server *s = hc->server;
	release_server(c, false);
	hc->n_tried--;
	hc->server = s;
	hc->req_head_sent = false;
	hc->req_done = false;
	int err = 0;
	struct upstream *u = upstream_connect(c->w, s, &err);
	if (!u)
		return false;
	c->server_held = true;
	lb_server_get(s);
	hc->tried[hc->n_tried++] = s;
	attach(c, u);
	set_request_out(hc);
	set_phase(c, HP_CONNECT);
	timer_add(&c->w->timers, &c->timer, c->w->now_ms + hc->pool->cfg->connect_timeout_ms);
	return true;
}

/* ---- sending the request ---------------------------------------------- */

/* Moves a chunked request body: reads into rbuf, checks it with the decoder,
 * and sends the checked bytes on as they came. Returns 1 when the body has
 * ended, 0 to wait, -1 after ending the connection. */
static int send_chunked(struct conn *c, struct http_conn *hc)
{
	struct side *srv = &hc->u->s;

	for (;;) {
		if (hc->rsend) {
			if (!srv->wr)
				return 0;
			ssize_t n = io_send(srv, hc->rbuf + hc->rpos, hc->rsend);
			if (n < 0) {
				if (n == -EAGAIN)
					return 0;
				reply(c, 502, "server_write_failed", true);
				return -1;
			}
			hc->rpos += (uint32_t)n;
			hc->rsend -= (uint32_t)n;
			continue;
		}
		if (hc->req_ch.state == HTTP_CHUNK_DONE)
			return 1;
		if (hc->rpos < hc->rlen) {
			size_t used = 0, data = 0;
			enum http_result r = http_chunked_feed(&hc->req_ch, hc->rbuf + hc->rpos,
							       hc->rlen - hc->rpos, &used, &data);
			if (http_is_error(r)) {
				reply(c, 400, http_result_name(r), true);
				return -1;
			}
			hc->rsend = (uint32_t)used;
			hc->bytes_in += used;
			hc->req_body_len += data;
			if (c->lc->max_body_size && hc->req_body_len > c->lc->max_body_size) {
				/* Part of the body may be at the server already:
				 * SPEC §3 says close both. */
				if (hc->req_head_sent) {
					hc->status = 413;
					hc->reason = "body_too_large";
					conn_close(c, CR_CLIENT_RESET);
					return -1;
				}
				reply(c, 413, "body_too_large", true);
				return -1;
			}
			continue;
		}
		/* All of rbuf is used: read more into it from the start. */
		hc->rpos = hc->rlen = 0;
		if (!c->cli.rd)
			return 0;
		ssize_t n = read_side(&c->cli, hc->rbuf, hc->rcap);
		if (n == -EAGAIN)
			return 0;
		if (n <= 0) {
			hc->reason = "client_aborted";
			conn_close(c, CR_CLIENT_RESET);
			return -1;
		}
		hc->rlen = (uint32_t)n;
	}
}

/* Sends the body bytes of a Content-Length request: first what came with
 * the head, then the rest straight from the client socket. */
static int send_length(struct conn *c, struct http_conn *hc)
{
	while (hc->rpos < hc->rlen && hc->req_left) {
		if (!hc->u->s.wr)
			return 0;
		size_t k = hc->rlen - hc->rpos;
		if (k > hc->req_left)
			k = (size_t)hc->req_left;
		ssize_t n = io_send(&hc->u->s, hc->rbuf + hc->rpos, k);
		if (n < 0) {
			if (n == -EAGAIN)
				return 0;
			reply(c, 502, "server_write_failed", true);
			return -1;
		}
		hc->rpos += (uint32_t)n;
		hc->req_left -= (uint64_t)n;
		hc->bytes_in += (uint64_t)n;
	}
	if (!hc->up_armed) {
		if (hc->req_left == 0)
			return 1;
		relay_half_limit(&c->up, hc->req_left);
		hc->up_armed = true;
	}
	size_t budget = RELAY_BUDGET;
	uint64_t before = c->up.bytes;
	enum relay_result r = relay_half(c->w, &c->up, &budget);
	hc->bytes_in += c->up.bytes - before;
	hc->req_left = c->up.left;
	if (r == RELAY_ERROR) {
		if (c->up.err_on_src) {
			hc->reason = "client_aborted";
			conn_close(c, CR_CLIENT_RESET);
		} else {
			reply(c, 502, "server_write_failed", true);
		}
		return -1;
	}
	if (r == RELAY_MORE && list_is_empty(&c->pending_node))
		list_add_tail(&c->w->pending, &c->pending_node);
	return r == RELAY_DONE ? 1 : 0;
}

/* Returns 1 when the request is all sent, 0 to wait, -1 after ending. */
static int send_request(struct conn *c)
{
	struct http_conn *hc = H(c);
	uint64_t ignored = 0;

	if (hc->req_done)
		return 1;
	if (!hc->req_head_sent) {
		int r = outq_flush(&hc->u->s, &hc->req_out, &ignored);
		if (r < 0) {
			if (retry_stale(c))
				return 0;
			server_failed(c, -r, "write to");
			reply(c, 502, "server_write_failed", true);
			return -1;
		}
		if (r == 0)
			return 0;
		hc->req_head_sent = true;
	}
	int r = 1;
	if (hc->req_body == HTTP_BODY_LENGTH)
		r = send_length(c, hc);
	else if (hc->req_body == HTTP_BODY_CHUNKED)
		r = send_chunked(c, hc);
	if (r == 1)
		hc->req_done = true;
	return r;
}

/* ---- the response ----------------------------------------------------- */

/* The server is gone or broke the protocol before the response ended. */
static void response_failed(struct conn *c, int status, const char *reason)
{
	struct http_conn *hc = H(c);
	if (hc->server && status == 502)
		atomic_fetch_add_explicit(&hc->server->fails, 1, memory_order_relaxed);
	if (hc->resp_started) {
		hc->reason = reason;
		conn_close(c, CR_SERVER_RESET);
		return;
	}
	reply(c, status, reason, false);
}

static int build_response_head(struct conn *c, const struct http_head *h)
{
	struct http_conn *hc = H(c);
	struct rewrite_extra *x = &hc->resp_extra;
	int err = 0;

	x->len = 0;
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

/* Decides how the response body travels and queues the head, with the
 * body bytes that came in the same read, for the client. */
static int begin_response(struct conn *c, struct http_head *h)
{
	struct http_conn *hc = H(c);

	hc->status = h->status;
	hc->resp_body = http_response_body(h, hc->method_id);
	hc->server_ka = http_is_keep_alive(h) && hc->minor == 1;
	if (hc->resp_body == HTTP_BODY_UNTIL_CLOSE) {
		hc->server_ka = false;
		hc->client_ka = false;
	}
	if (hc->resp_body == HTTP_BODY_TUNNEL) {
		if (!(hc->upgrade && h->status == 101) ) {
			/* A 2xx to CONNECT never happens here (CONNECT is refused
			 * in http mode); treat other tunnels as invalid. */
			return -1;
		}
		hc->server_ka = false;
		hc->client_ka = false;
	}
	if (c->w->draining)
		hc->client_ka = false;
	hc->resp_left = hc->resp_body == HTTP_BODY_LENGTH ? (uint64_t)h->content_length : 0;
	if (hc->resp_body == HTTP_BODY_CHUNKED)
		http_chunked_init(&hc->resp_ch, TRAILER_MAX);
	/* RFC 9112 §6.1: no Transfer-Encoding to an HTTP/1.0 client; the
	 * payload goes out decoded and the close ends it. */
	hc->dechunk = hc->resp_body == HTTP_BODY_CHUNKED && hc->minor == 0;
	if (hc->dechunk)
		hc->client_ka = false;
	if (build_response_head(c, h) < 0)
		return -1;
	cache_http_response(c, h); /* storable? (before the rewrite moves fields) */

	struct rewrite_opts o = {
		.keep_upgrade = hc->upgrade && h->status == 101,
		.drop_transfer_encoding = hc->dechunk,
	};
	size_t start, end;
	rewrite_compact(hc->sbuf, h, &o, &start, &end);
	cache_http_response_head(c, hc->sbuf + start, end - start);
	hc->spos = (uint32_t)h->head_len;

	/* Body bytes that came with the head go out in the same writev. */
	size_t body = hc->slen - hc->spos;
	if (hc->resp_body == HTTP_BODY_LENGTH) {
		if (body > hc->resp_left)
			body = (size_t)hc->resp_left;
		hc->resp_left -= body;
	} else if (hc->dechunk) {
		body = 0; /* relay_chunked_response decodes what is in sbuf */
	} else if (hc->resp_body == HTTP_BODY_CHUNKED) {
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
		body = off;
	} else if (hc->resp_body == HTTP_BODY_NONE) {
		body = 0;
	}
	if (hc->resp_body == HTTP_BODY_LENGTH || hc->resp_body == HTTP_BODY_UNTIL_CLOSE)
		cache_http_body(c, hc->sbuf + hc->spos, body);
	outq_set(&hc->resp_out, hc->sbuf + start, end - start, hc->resp_extra.data,
		 hc->resp_extra.len, hc->sbuf + hc->spos, body);
	hc->spos += (uint32_t)body;
	hc->resp_started = true;
	cache_http_response_queued(c); /* a 304 to a revalidation: the stored answer */
	return 0;
}

/* Reads and parses response heads until a final one is queued. Returns 1
 * when it is, 0 to wait, -1 after ending. 1xx heads pass through as read. */
static int read_response_head(struct conn *c, struct http_conn *hc)
{
	struct http_head *h = &c->w->head;
	struct side *srv = &hc->u->s;

	for (;;) {
		if (hc->slen > hc->spos) {
			/* A response head may fill the whole buffer. */
			struct http_limits lim = { .max_uri_size = HTTP_DEFAULT_URI_SIZE,
						   .max_header_size = hc->scap };
			enum http_result r = http_parse_response(hc->sbuf + hc->spos,
								 hc->slen - hc->spos, &lim, h);
			if (http_is_error(r)) {
				response_failed(c, 502, "bad_response");
				return -1;
			}
			if (r == HTTP_DONE && h->status >= 100 && h->status < 200 &&
			    h->status != 101) {
				/* An interim response (100 Continue): pass it on as is. */
				outq_set(&hc->resp_out, hc->sbuf + hc->spos, h->head_len, NULL, 0,
					 NULL, 0);
				hc->spos += (uint32_t)h->head_len;
				int w = outq_flush(&c->cli, &hc->resp_out, &hc->bytes_out);
				if (w <= 0) {
					/* Rare: keep it simple and give up the exchange. */
					response_failed(c, 502, "client_slow_interim");
					return -1;
				}
				continue;
			}
			if (r == HTTP_DONE) {
				if (hc->spos) {
					memmove(hc->sbuf, hc->sbuf + hc->spos, hc->slen - hc->spos);
					hc->slen -= hc->spos;
					hc->spos = 0;
					r = http_parse_response(hc->sbuf, hc->slen, &lim, h);
				}
				if (hc->ttfb_ms < 0)
					hc->ttfb_ms = (int64_t)(c->w->now_ms - hc->req_start_ms);
				if (begin_response(c, h) < 0) {
					response_failed(c, 502, "bad_response");
					return -1;
				}
				return 1;
			}
			if (hc->slen == hc->scap) {
				response_failed(c, 502, "response_head_too_large");
				return -1;
			}
		}
		if (!srv->rd)
			return 0;
		ssize_t n = read_side(srv, hc->sbuf + hc->slen, hc->scap - hc->slen);
		if (n == -EAGAIN)
			return 0;
		if (n <= 0) {
			if (retry_stale(c))
				return 0;
			response_failed(c, 502, n == 0 ? "server_closed" : "server_reset");
			return -1;
		}
		if (hc->ttfb_ms < 0)
			hc->ttfb_ms = (int64_t)(c->w->now_ms - hc->req_start_ms);
		hc->slen += (uint32_t)n;
	}
}

/* Relays a chunked response body through sbuf. 1 done, 0 wait, -1 ended. */
static int relay_chunked_response(struct conn *c, struct http_conn *hc)
{
	struct side *srv = &hc->u->s;

	for (;;) {
		if (hc->ssend) {
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
			continue;
		}
		if (hc->resp_ch.state == HTTP_CHUNK_DONE)
			return 1;
		if (hc->spos < hc->slen) {
			size_t used = 0, data = 0;
			enum http_result r = http_chunked_feed(&hc->resp_ch, hc->sbuf + hc->spos,
							       hc->slen - hc->spos, &used, &data);
			if (http_is_error(r)) {
				response_failed(c, 502, http_result_name(r));
				return -1;
			}
			cache_http_body(c, hc->sbuf + hc->spos + used - data, data);
			if (hc->dechunk) {
				/* An HTTP/1.0 client gets the payload only. */
				hc->spos += (uint32_t)(used - data);
				hc->ssend = (uint32_t)data;
			} else {
				hc->ssend = (uint32_t)used;
			}
			continue;
		}
		hc->spos = hc->slen = 0;
		if (!srv->rd)
			return 0;
		ssize_t n = read_side(srv, hc->sbuf, hc->scap);
		if (n == -EAGAIN)
			return 0;
		if (n <= 0) {
			response_failed(c, 502, "server_closed");
			return -1;
		}
		hc->slen = (uint32_t)n;
	}
}

/* Relays a Content-Length or read-until-close body with relay_half. */
static int relay_plain_response(struct conn *c, struct http_conn *hc)
{
	/* Once the half is armed, only it knows whether bytes still wait in
	 * its pipe or buffer: resp_left reaching 0 means read, not written. */
	if (!hc->down_armed) {
		if (hc->resp_body == HTTP_BODY_LENGTH && hc->resp_left == 0)
			return 1;
		relay_half_limit(&c->down, hc->resp_body == HTTP_BODY_LENGTH ? hc->resp_left
									      : RELAY_UNLIMITED);
		hc->down_armed = true;
	}
	size_t budget = RELAY_BUDGET;
	uint64_t before = c->down.bytes;
	enum relay_result r = relay_half(c->w, &c->down, &budget);
	hc->bytes_out += c->down.bytes - before;
	if (hc->resp_body == HTTP_BODY_LENGTH)
		hc->resp_left = c->down.left;
	if (r == RELAY_ERROR) {
		if (c->down.err_on_src && hc->resp_body == HTTP_BODY_LENGTH)
			response_failed(c, 502, "server_closed");
		else if (c->down.err_on_src)
			response_failed(c, 502, "server_reset");
		else {
			hc->reason = "client_write_failed";
			conn_close(c, CR_CLIENT_RESET);
		}
		return -1;
	}
	if (r == RELAY_MORE && list_is_empty(&c->pending_node))
		list_add_tail(&c->w->pending, &c->pending_node);
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
	size_t budget = RELAY_BUDGET;

	for (;;) {
		if (hc->ssend) {
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
			continue;
		}
		if (hc->resp_body == HTTP_BODY_LENGTH && hc->resp_left == 0)
			return 1;
		if (budget == 0) {
			if (list_is_empty(&c->pending_node))
				list_add_tail(&c->w->pending, &c->pending_node);
			return 0;
		}
		hc->spos = hc->slen = 0;
		if (!srv->rd)
			return 0;
		size_t want = hc->scap;
		if (hc->resp_body == HTTP_BODY_LENGTH && hc->resp_left < want)
			want = (size_t)hc->resp_left;
		ssize_t n = read_side(srv, hc->sbuf, want);
		if (n == -EAGAIN)
			return 0;
		if (n == 0 && hc->resp_body == HTTP_BODY_UNTIL_CLOSE)
			return 1;
		if (n <= 0) {
			response_failed(c, 502, n == 0 ? "server_closed" : "server_reset");
			return -1;
		}
		hc->slen = hc->ssend = (uint32_t)n;
		if (hc->resp_body == HTTP_BODY_LENGTH)
			hc->resp_left -= (uint64_t)n;
		budget = (size_t)n < budget ? budget - (size_t)n : 0;
		cache_http_body(c, hc->sbuf, (size_t)n);
	}
}

/* Returns 1 when the response has all gone to the client, 0 to wait. */
static int relay_response(struct conn *c)
{
	struct http_conn *hc = H(c);

	if (hc->resp_done)
		return 1;
	if (!hc->resp_head_sent) {
		if (!hc->resp_started) {
			if (sbuf_get(c) < 0) {
				reply(c, 500, "no_memory", true);
				return -1;
			}
			int r = read_response_head(c, hc);
			if (r <= 0)
				return r;
		}
		int r = outq_flush(&c->cli, &hc->resp_out, &hc->bytes_out);
		if (r < 0) {
			hc->reason = "client_write_failed";
			conn_close(c, CR_CLIENT_RESET);
			return -1;
		}
		if (r == 0)
			return 0;
		hc->resp_head_sent = true;
		if (hc->resp_body == HTTP_BODY_TUNNEL)
			return 1;
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
	if (r == 1)
		hc->resp_done = true;
	return r;
}

/* ---- tunnels, replies, lingering -------------------------------------- */

static void run_tunnel(struct conn *c)
{
	struct http_conn *hc = H(c);
	size_t budget = RELAY_BUDGET;
	uint64_t in = c->up.bytes, out = c->down.bytes;
	enum relay_result up = relay_half(c->w, &c->up, &budget);
	enum relay_result down = relay_half(c->w, &c->down, &budget);

	hc->bytes_in += c->up.bytes - in;
	hc->bytes_out += c->down.bytes - out;
	if (c->up.bytes != in || c->down.bytes != out)
		c->last_active_ms = c->w->now_ms;
	if (up == RELAY_ERROR || down == RELAY_ERROR) {
		const struct half *bad = up == RELAY_ERROR ? &c->up : &c->down;
		bool client = (bad->err_on_src ? bad->src : bad->dst) == &c->cli;
		hc->reason = client ? "client_reset" : "server_reset";
		conn_close(c, client ? CR_CLIENT_RESET : CR_SERVER_RESET);
		return;
	}
	if (up == RELAY_DONE && down == RELAY_DONE) {
		hc->reason = NULL;
		conn_close(c, CR_NONE);
		return;
	}
	if ((up == RELAY_MORE || down == RELAY_MORE) && list_is_empty(&c->pending_node))
		list_add_tail(&c->w->pending, &c->pending_node);
}

static void enter_tunnel(struct conn *c)
{
	struct http_conn *hc = H(c);
	/* Bytes the client sent after its head belong to the new protocol. */
	if (hc->rpos < hc->rlen) {
		ssize_t n = io_send(&hc->u->s, hc->rbuf + hc->rpos, hc->rlen - hc->rpos);
		if (n != (ssize_t)(hc->rlen - hc->rpos)) {
			hc->reason = "server_write_failed";
			conn_close(c, CR_SERVER_RESET);
			return;
		}
		hc->bytes_in += (uint64_t)n;
	}
	rbuf_put(c, hc);
	relay_half_init(&c->up, &c->cli, &hc->u->s);
	relay_half_init(&c->down, &hc->u->s, &c->cli);
	set_phase(c, HP_TUNNEL);
	c->last_active_ms = c->w->now_ms;
	timer_add(&c->w->timers, &c->timer, c->w->now_ms + c->lc->tunnel_timeout_ms);
	run_tunnel(c);
}

static void run_reply(struct conn *c)
{
	struct http_conn *hc = H(c);
	int r = outq_flush(&c->cli, &hc->resp_out, &hc->bytes_out);
	if (r < 0) {
		conn_close(c, CR_CLIENT_RESET);
		return;
	}
	if (r == 0)
		return;
	hc->resp_done = true;
	hc->req_done = true;
	if (hc->connect_tunnel) {
		hc->connect_tunnel = false;
		enter_tunnel(c);
		return;
	}
	if (hc->reply_close) {
		count_response(hc);
		log_request(c);
		hc->method_len = 0;
		linger(c);
		return;
	}
	finish_request(c);
}

/* Reads and drops what the client still sends after an error reply. */
static void run_linger(struct conn *c)
{
	char *buf = c->w->scratch;
	while (c->cli.rd) {
		ssize_t n = read_side(&c->cli, buf, c->w->scratch_cap);
		if (n == -EAGAIN)
			return;
		if (n <= 0) {
			conn_close(c, CR_NONE);
			return;
		}
	}
}

/* ---- the event loop's entry points ------------------------------------ */

/* Reads request bytes into rbuf. Returns 1 when something came, 0 to wait,
 * -1 after ending the connection. */
static int read_request(struct conn *c)
{
	struct http_conn *hc = H(c);

	if (!c->cli.rd)
		return 0;
	if (rbuf_get(c) < 0) {
		conn_close(c, CR_NO_MEMORY);
		return -1;
	}
	if (hc->rlen == hc->rcap)
		return 0; /* the parser answers 431 before this can happen */
	ssize_t n = read_side(&c->cli, hc->rbuf + hc->rlen, hc->rcap - hc->rlen);
	if (n == -EAGAIN) {
		if (hc->rlen == 0 && hc->phase == HP_IDLE)
			rbuf_put(c, hc);
		return 0;
	}
	if (n <= 0) {
		/* A client closing between requests is the normal end. */
		if (hc->rlen == 0 && hc->phase == HP_IDLE) {
			conn_close(c, CR_NONE);
		} else {
			hc->reason = n == 0 ? "client_closed" : "client_reset";
			hc->method_len = hc->method_len ? hc->method_len : 1;
			if (hc->method[0] == '\0')
				hc->method[0] = '-';
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
	struct http_conn *hc = H(c);

	int sent = send_request(c);
	if (sent < 0 || hc->phase != HP_EXCHANGE)
		return;
	int got = relay_response(c);
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
		finish_request(c);
	}
}

static void run(struct conn *c)
{
	struct http_conn *hc = H(c);

	for (int guard = 0; c->state != CS_CLOSED; guard++) {
		enum http_phase before = hc->phase;
		uint32_t seq = hc->seq;
		if (guard == 64) {
			/* Many pipelined requests: let other connections run. */
			if (list_is_empty(&c->pending_node))
				list_add_tail(&c->w->pending, &c->pending_node);
			return;
		}
		switch (hc->phase) {
		case HP_IDLE:
		case HP_HEAD:
			if (read_request(c) <= 0)
				return;
			if (hc->phase == HP_IDLE)
				new_request(c);
			start_request(c);
			break;
		case HP_RESOLVE:
			return; /* forward.c resumes the connection with the answer */
		case HP_CACHE_WAIT:
			return; /* the timer tries again (http_on_timer) */
		case HP_CONNECT:
			check_connect(c);
			if (hc->phase == HP_CONNECT)
				return;
			break;
		case HP_EXCHANGE:
			exchange(c);
			break;
		case HP_TUNNEL:
			run_tunnel(c);
			return;
		case HP_REPLY:
			run_reply(c);
			break;
		case HP_LINGER:
			run_linger(c);
			return;
		default:
			return;
		}
		if (c->state == CS_CLOSED)
			return; /* conn_close freed hc */
		/* Go on while something changed: the phase, or a pipelined
		 * request that started in the same phase. */
		if (hc->phase == before && hc->seq == seq && before != HP_HEAD)
			return;
	}
}

/* The deadline of the current phase, and what happens when it passes. */
static uint64_t deadline(const struct conn *c)
{
	const struct http_conn *hc = H(c);
	const struct cfg_listener *lc = c->lc;

	switch (hc->phase) {
	case HP_IDLE:
		return c->last_active_ms + lc->keepalive_timeout_ms;
	case HP_HEAD:
		return hc->req_start_ms + lc->request_timeout_ms;
	case HP_RESOLVE:
	case HP_CONNECT:
		return c->last_active_ms + hc->pool->cfg->connect_timeout_ms;
	case HP_CACHE_WAIT:
		return c->last_active_ms + CACHE_HTTP_POLL_MS;
	case HP_EXCHANGE:
		if (hc->req_done && !hc->resp_done)
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
static void arm_timer(struct conn *c)
{
	uint64_t d = deadline(c);
	if (!timer_is_armed(&c->timer) || c->timer.expire_ms > d)
		timer_add(&c->w->timers, &c->timer, d);
}

void http_on_timer(struct conn *c)
{
	struct http_conn *hc = H(c);

	if (c->w->now_ms < deadline(c)) {
		arm_timer(c);
		return;
	}
	switch (hc->phase) {
	case HP_IDLE:
		conn_close(c, CR_NONE);
		return;
	case HP_HEAD:
		if (!hc->method_len) {
			hc->method_len = 1;
			hc->method[0] = '-';
			hc->target_len = 1;
			hc->target[0] = '-';
			hc->minor = 1;
		}
		reply(c, 408, "request_timeout", true);
		break;
	case HP_RESOLVE:
		forward_on_timer(c);
		break;
	case HP_CACHE_WAIT:
		/* Look in the cache again, or wait on, or go to the server. */
		set_phase(c, HP_HEAD);
		start_request(c);
		break;
	case HP_CONNECT:
		server_failed(c, ETIMEDOUT, "connect to");
		release_server(c, false);
		hc->server = NULL;
		if (can_retry(c))
			connect_server(c);
		else
			reply(c, 502, "connect_timeout", false);
		break;
	case HP_EXCHANGE:
		if (hc->req_done && !hc->resp_started) {
			reply(c, 504, "server_timeout", false);
			break;
		}
		hc->reason = hc->req_done ? "server_timeout" : "client_timeout";
		conn_close(c, hc->req_done ? CR_SERVER_TIMEOUT : CR_CLIENT_TIMEOUT);
		return;
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
	run(c);
	if (c->state != CS_CLOSED)
		arm_timer(c);
}

void http_start(struct conn *c)
{
	new_request(c);
	set_phase(c, HP_HEAD);
	arm_timer(c);
	/* Edge-triggered: the request may be there already, or arrive later. */
}

void http_process(struct conn *c)
{
	c->last_active_ms = c->w->now_ms;
	run(c);
	if (c->state != CS_CLOSED)
		arm_timer(c);
}

void http_drain(struct conn *c)
{
	struct http_conn *hc = H(c);
	if (hc->phase == HP_IDLE || (hc->phase == HP_HEAD && hc->rlen == 0))
		conn_close(c, CR_NONE);
	else
		hc->client_ka = false;
}
