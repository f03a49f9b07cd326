/*
 * request.c - http mode, the request side (see proxy.h): a parsed head is
 * checked and routed, a server chosen (balancer; hash keys and sticky
 * cookies in pick.c), and once connect.c has a connection to it, the rewritten head and the
 * body sent on. Worker thread.
 */
#include "core/http/proxy_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/conn.h"
#include "core/dns.h"
#include "core/http/cache_http.h"
#include "core/http/forward.h"
#include "core/http/proxy_internal.h"
#include "core/http/reply.h"
#include "core/http/route.h"
#include "core/pp_conn.h"
#include "core/stats.h"
#include "core/tls.h"
#include "core/upstream.h"

/* ---- the request ------------------------------------------------------ */

/* Keeps the target of LEN bytes at T for the log. A longer one than the log
 * takes is cut at a character boundary (a cut UTF-8 sequence would log as
 * bytes the client never sent) and ends in "..." to show it was. */
static void keep_log_target(struct http_conn *hc, const char *t, size_t len)
{
	if (len > sizeof(hc->target)) {
		len = sizeof(hc->target) - 3;
		/* Back to the lead byte of a sequence the cut would split. */
		size_t k = len;
		while (k > 0 && len - k < 4 && ((unsigned char)t[k] & 0xC0) == 0x80)
			k--;
		if (len - k < 4)
			len = k;
		memcpy(hc->target + len, "...", 3);
		memcpy(hc->target, t, len);
		hc->target_len = (uint16_t)(len + 3);
		return;
	}
	memcpy(hc->target, t, len);
	hc->target_len = (uint16_t)len;
}

/* Keeps the method for the log; a longer one than it takes ends in "...".
 * Methods are tokens (or, for a line that failed to parse, are escaped by
 * the log), so a byte cut needs no care for UTF-8. */
static void keep_log_method(struct http_conn *hc, const char *m, size_t len)
{
	if (len > sizeof(hc->method)) {
		len = sizeof(hc->method) - 3;
		memcpy(hc->method + len, "...", 3);
		hc->method_len = (uint16_t)(len + 3);
	} else {
		hc->method_len = (uint16_t)len;
	}
	memcpy(hc->method, m, len);
}

static void copy_log_fields(struct http_conn *hc, const struct http_head *h, const char *buf)
{
	keep_log_method(hc, buf + h->method.off, h->method.len);
	keep_log_target(hc, buf + h->target.off, h->target.len);
	hc->method_id = h->method_id;
	hc->minor = (uint8_t)h->version_minor;
}

/* Length of the word at the start of P: bytes up to a space or a line end.
 * Control bytes and non-ASCII ones belong to it: the log escapes them. */
static size_t word_run(const char *p, size_t len)
{
	size_t i = 0;

	while (i < len && p[i] != ' ' && p[i] != '\r' && p[i] != '\n')
		i++;
	return i;
}

void http_note_unparsed_request(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	const char *b = hc->rbuf;
	size_t len = b ? hc->rlen : 0;
	size_t m = word_run(b, len), t = 0;

	hc->bytes_in = len;
	if (m < len && b[m] == ' ')
		t = word_run(b + m + 1, len - m - 1);
	size_t v = m + 1 + t; /* where " HTTP/1.x" and a line end must be */
	if (m && t && v + 10 <= len && memcmp(b + v, " HTTP/1.", 8) == 0 &&
	    (b[v + 8] == '0' || b[v + 8] == '1') && (b[v + 9] == '\r' || b[v + 9] == '\n')) {
		keep_log_method(hc, b, m);
		keep_log_target(hc, b + m + 1, t);
		hc->minor = (uint8_t)(b[v + 8] - '0');
		if (m == 4 && memcmp(b, "HEAD", 4) == 0)
			hc->method_id = HTTP_M_HEAD; /* its error reply has no body */
		return;
	}
	hc->method_len = 1; /* a request was begun: it is logged */
	hc->method[0] = '-';
	hc->target_len = 1;
	hc->target[0] = '-';
	hc->minor = 1;
	hc->line_unknown = true;
}

/* Writes the client's address without its port (no brackets around IPv6)
 * to BUF. Returns its length. */
static uint8_t format_client_ip(const struct conn *c, char *buf, size_t cap)
{
	const void *addr = &c->peer.in.sin_addr;
	if (c->peer.sa.sa_family == AF_INET6)
		addr = &c->peer.in6.sin6_addr;
	else if (c->peer.sa.sa_family != AF_INET)
		addr = NULL; /* a unix socket: no address */
	if (!addr)
		snprintf(buf, cap, "unix");
	else if (!inet_ntop(c->peer.sa.sa_family, addr, buf, (socklen_t)cap))
		snprintf(buf, cap, "-");
	return (uint8_t)strlen(buf);
}

/*
 * Turns the absolute-form request line in rbuf into origin-form, in place:
 * "GET http://h:p/x?q HTTP/1.1" becomes "GET /x?q HTTP/1.1". The path and
 * everything after it stay where they are; the method moves right, over the
 * scheme and authority, which are always longer than the "/" or "*" that may
 * have to be added (an empty path is "/", or "*" for OPTIONS, RFC 9112
 * §3.2.4).
 */
void http_origin_form(struct http_conn *hc, const struct http_head *h)
{
	char *buf = hc->rbuf;
	const char *fill = "";

	if (h->path.len == 0)
		fill = h->method_id == HTTP_M_OPTIONS ? "*" : "/";
	else if (buf[h->path.off] == '?')
		fill = "/";
	size_t flen = strlen(fill);
	size_t start = h->path.off - flen - 1 - h->method.len;
	memmove(buf + start, buf + h->method.off, h->method.len);
	buf[start + h->method.len] = ' ';
	memcpy(buf + start + h->method.len + 1, fill, flen);
	hc->head_start = (uint32_t)start;
}

/* The values of the client's NAME fields (X-Forwarded-For, Via), joined,
 * to which fulcrum appends its own hop; none when the client's Connection
 * names the field, which makes it hop-by-hop: it ends here. */
static int add_previous_hops(struct rewrite_extra *x, const struct http_head *h, const char *buf,
			     const char *name)
{
	if (http_connection_lists(h, buf, name, strlen(name)))
		return 0;
	return rewrite_add_joined(x, h, buf, name);
}

/* X-Forwarded-For (the client's hops, then the client), -Proto and -Host,
 * for a listener with forwarded_headers. Returns nonzero when X is full. */
static int put_forwarded(struct conn *c, struct rewrite_extra *x, const struct http_head *h)
{
	static const char xff[] = "X-Forwarded-For: ";
	static const char https[] = "\r\nX-Forwarded-Proto: https\r\n";
	static const char http[] = "\r\nX-Forwarded-Proto: http\r\n";
	static const char xfh[] = "X-Forwarded-Host: ";
	struct http_conn *hc = http_of(c);
	const char *buf = hc->rbuf;
	int err = rewrite_put(x, xff, sizeof(xff) - 1);

	size_t before = x->len;
	err |= add_previous_hops(x, h, buf, "x-forwarded-for");
	if (x->len > before)
		err |= rewrite_put(x, ", ", 2);
	if (!hc->client_ip_len)
		hc->client_ip_len = format_client_ip(c, hc->client_ip, sizeof(hc->client_ip));
	err |= rewrite_put(x, hc->client_ip, hc->client_ip_len);
	if (tls_side_is_tls(&c->cli))
		err |= rewrite_put(x, https, sizeof(https) - 1);
	else
		err |= rewrite_put(x, http, sizeof(http) - 1);
	struct http_slice host = http_request_host(h);
	if (host.len) {
		err |= rewrite_put(x, xfh, sizeof(xfh) - 1);
		err |= rewrite_put(x, buf + host.off, host.len);
		err |= rewrite_put(x, "\r\n", 2);
	}
	return err;
}

/* The Connection line fulcrum sends, if any. Returns nonzero when X is
 * full. */
static int put_connection(struct conn *c, struct rewrite_extra *x)
{
	struct http_conn *hc = http_of(c);

	if (hc->upgrade)
		return rewrite_add(x, "Connection: upgrade\r\n");
	if (c->lc->mode == MODE_HTTP && hc->pool && hc->pool->cfg->keepalive == 0)
		/* The connection will not be kept: the server may close at once
		 * after its answer, as nginx tells it without upstream keepalive. */
		return rewrite_add(x, "Connection: close\r\n");
	if (hc->minor == 0)
		/* An HTTP/1.0 request closes by default: ask for the pooled
		 * connection's keep-alive, as HAProxy does (response.c keeps it
		 * only when the server says so). */
		return rewrite_add(x, "Connection: keep-alive\r\n");
	return 0;
}

/* Builds the head that goes to the server: the kept lines of the client's
 * head, closed up in place, plus fulcrum's lines (see proxy_internal.h). */
int http_build_request_head(struct conn *c, const struct http_head *h,
			    const struct rewrite_opts *more, const char *lines)
{
	struct http_conn *hc = http_of(c);
	struct rewrite_extra *x = &hc->req_extra;
	char *buf = hc->rbuf;
	int err = 0;

	x->len = 0;
	if (c->lc->forwarded_headers)
		err |= put_forwarded(c, x, h);
	err |= put_connection(c, x);
	if (lines)
		err |= rewrite_add(x, "%s", lines);
	if (more && more->via) {
		/* One field: the hops before, then this one (RFC 9110 §7.6.3).
		 * An origin that reads only one Via field sees them all. */
		err |= rewrite_put(x, "Via: ", 5);
		size_t before = x->len;
		err |= add_previous_hops(x, h, buf, "via");
		if (x->len > before)
			err |= rewrite_put(x, ", ", 2);
		err |= rewrite_add(x, "1.1 fulcrum\r\n");
	}
	err |= cache_http_request_lines(c, x); /* a revalidation's validators */
	err |= rewrite_add(x, "\r\n");
	if (err)
		return -ENOMEM;

	struct rewrite_opts o = {
		.keep_upgrade = hc->upgrade,
		.drop_forwarded = c->lc->forwarded_headers,
		.drop_proxy_auth = more && more->drop_proxy_auth,
		.drop_host = more && more->drop_host,
		.drop_max_forwards = more && more->drop_max_forwards,
		.via = more && more->via,
	};
	size_t start, end;
	rewrite_compact(buf, h, &o, &start, &end);
	hc->head_start = (uint32_t)start;
	hc->head_end = (uint32_t)end;
	return 0;
}

/* Longest authority a Host line is built from: a DNS name and a port. */
#define AUTHORITY_MAX (DNS_NAME_MAX + 6)

/* RFC 9113 §3.1 retired the upgrade to h2c, and its HTTP2-Settings field is
 * hop-by-hop (named in Connection), so it could not be passed on: an Upgrade
 * that offers nothing but h2c is dropped, and the request goes on as plain
 * HTTP/1.1, as nginx sends it. */
static bool upgrade_offers_only_h2c(const struct http_head *h, const char *buf)
{
	const char *el;
	size_t el_len;

	for (int i = http_header_find(h, buf, "upgrade", 0); i >= 0;
	     i = http_header_find(h, buf, "upgrade", (unsigned)i + 1)) {
		size_t pos = 0;
		const char *v = buf + h->headers[i].value.off;
		while (http_list_next(v, h->headers[i].value.len, &pos, &el, &el_len))
			if (!http_token_eq(el, el_len, "h2c"))
				return false;
	}
	return true;
}

/* An absolute-form target an http listener serves: http or https, with an
 * authority that can be a host name. */
static bool is_http_uri(const struct http_head *h, const char *buf)
{
	const char *t = buf + h->target.off;

	if (h->authority.len > AUTHORITY_MAX)
		return false;
	return (h->target.len >= 7 && strncasecmp(t, "http://", 7) == 0) ||
	       (h->target.len >= 8 && strncasecmp(t, "https://", 8) == 0);
}

/* The head for the server. An absolute-form request goes on in origin-form
 * with a Host built from its authority (RFC 9112 §3.2.2), as nginx and
 * HAProxy do for a reverse proxy. */
static int build_head(struct conn *c, const struct http_head *h)
{
	struct http_conn *hc = http_of(c);

	if (h->target_form != HTTP_TARGET_ABSOLUTE)
		return http_build_request_head(c, h, NULL, NULL);

	struct rewrite_opts more = {.drop_host = true};
	char lines[AUTHORITY_MAX + 16];

	snprintf(lines, sizeof(lines), "Host: %.*s\r\n", (int)h->authority.len,
		 hc->rbuf + h->authority.off);
	if (http_build_request_head(c, h, &more, lines) < 0)
		return -ENOMEM;
	http_origin_form(hc, h);
	return 0;
}

/* The request is the whole head H in rbuf (for the log too) and then a
 * body as H frames it. */
static void take_head(struct http_conn *hc, const struct http_head *h)
{
	copy_log_fields(hc, h, hc->rbuf);
	hc->bytes_in = h->head_len;
	hc->rpos = (uint32_t)h->head_len;
	hc->head_in = (uint32_t)h->head_len;
	hc->req_body = http_request_body(h);
	hc->req_left = hc->req_body == HTTP_BODY_LENGTH ? (uint64_t)h->content_length : 0;
	hc->req_length = hc->req_left;
	hc->body_start = hc->rpos;
	if (hc->req_body == HTTP_BODY_CHUNKED)
		http_chunked_init(&hc->req_ch, TRAILER_MAX);
}

/* A complete head H is in rbuf: check it, route it, and send it on. */
static void begin_request(struct conn *c, const struct http_head *h)
{
	struct http_conn *hc = http_of(c);
	const struct cfg_listener *lc = c->lc;

	take_head(hc, h);
	/* HTTP/1.2 and up go on as what they are taken for (parse_version). */
	char *minor = hc->rbuf + h->target.off + h->target.len + sizeof(" HTTP/1.") - 1;
	if (*minor > '1')
		*minor = '1';
	/* Still on an older generation (http_take_current_gen): the last
	 * request. */
	hc->client_ka = http_client_keep_alive(h, hc->rbuf, lc->mode == MODE_FORWARD) &&
			c->gen == c->w->gen;
	hc->awaits_continue = h->expect_continue && hc->req_body != HTTP_BODY_NONE;
	hc->continue_here = hc->awaits_continue && h->version_minor == 1 &&
			    http_connection_lists(h, hc->rbuf, "expect", 6);
	/* RFC 9110 §7.8: an HTTP/1.0 request's Upgrade is ignored. */
	hc->upgrade = h->has_upgrade && h->conn_upgrade && h->version_minor == 1 &&
		      !upgrade_offers_only_h2c(h, hc->rbuf);

	if (lc->mode == MODE_FORWARD) {
		forward_begin(c, h);
		return;
	}
	if (h->target_form == HTTP_TARGET_AUTHORITY ||
	    (h->target_form == HTTP_TARGET_ABSOLUTE && !is_http_uri(h, hc->rbuf))) {
		http_reply(c, 400, "bad_target", true);
		return;
	}
	int pool = route_http(c->gen->cfg, (int)c->listener, h, hc->rbuf);
	hc->pool = gen_pool(c->gen, pool);
	if (!hc->pool) {
		http_reply(c, 404, "no_route", false);
		return;
	}
	/* After routing, so the log names the pool, as for a chunked body. */
	if (lc->max_body_size && hc->req_body == HTTP_BODY_LENGTH &&
	    hc->req_left > lc->max_body_size) {
		http_reply(c, 413, "body_too_large", true);
		return;
	}
	if (cache_http_request(c, h))
		return; /* answered from the cache (cache_http.c) */
	enum cfg_balance b = hc->pool->balance;
	hc->key = b == BAL_SOURCE || b == BAL_MAGLEV || b == BAL_RING
			  ? http_request_key(c, h, hc->rbuf)
			  : 0;
	struct lb_server *sticky = http_sticky_server(c, h, hc->rbuf);
	if (build_head(c, h) < 0) {
		http_reply(c, 500, "no_memory", true);
		return;
	}
	hc->server = sticky;
	hc->pinned = sticky != NULL;
	http_connect_server(c);
}

/* A reload applies from the next request of a kept-alive connection on:
 * its routes, pools, ACLs and credentials, as Squid re-checks a request
 * after a reconfigure. The listener is the one that has the address the
 * connection came in on now, as for a new connection there. An address
 * the reload removed, or a listener of another mode or with TLS where
 * there was none (or the reverse), cannot be taken over: the connection
 * ends after this request. */
void http_take_current_gen(struct conn *c)
{
	struct gen *g = c->w->gen;

	if (c->gen == g)
		return;
	int li = gen_listener_of_bind(g, c->bind);
	if (li < 0 || c->server_held)
		return;
	const struct cfg_listener *lc = &g->cfg->listeners[li];
	if (lc->mode != c->lc->mode || (lc->n_tls_certs > 0) != (c->lc->n_tls_certs > 0))
		return;
	if (lc->slot != c->lc->slot) { /* the address moved to another listener */
		STAT_ADD(c->w->stats[c->lc->slot].active, -1);
		STAT_ADD(c->w->stats[lc->slot].active, 1);
	}
	c->server = NULL; /* the last request's, which the old generation owns */
	gen_put(c->gen);
	c->gen = gen_get(g);
	c->listener = (uint32_t)li;
	c->lc = lc;
}

void http_request_clock(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	hc->req_start_ms = c->w->now_ms;
	hc->req_start_wall_ms = wall_ms();
	hc->req_start_us = clock_us();
}

void http_new_request(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	http_take_current_gen(c);

	http_set_phase(c, HP_HEAD);
	hc->seq++;
	http_request_clock(c);
	hc->head_since_ms = c->w->now_ms;
	hc->method_len = hc->target_len = 0;
	hc->head_seen = 0;
	hc->method[0] = '\0';
	hc->method_id = HTTP_M_OTHER;
	hc->line_unknown = false;
	hc->status = 0;
	hc->counted = false;
	hc->reason = NULL;
	hc->pool = NULL;
	hc->server = NULL;
	hc->tried.n = 0;
	hc->try_failure = "connect_failed";
	hc->try_failure_status = 502;
	hc->set_cookie = hc->pinned = false;
	hc->host_short = false;
	hc->dechunk = false;
	hc->req_body = hc->resp_body = HTTP_BODY_NONE;
	hc->req_left = hc->resp_left = hc->req_body_len = hc->req_length = 0;
	hc->req_head_sent = hc->req_done = hc->req_body_flowed = hc->awaits_continue = false;
	hc->continue_here = false;
	hc->req_write_failed = false;
	hc->interim = 0;
	hc->body_end = 0;
	hc->resp_started = hc->resp_head_sent = hc->resp_done = false;
	hc->server_ka = false;
	hc->up_armed = hc->down_armed = false;
	hc->upgrade = false;
	hc->rsend = 0;
	hc->ttfb_ms = -1;
	hc->bytes_in = hc->bytes_out = 0;
	hc->counted_in = hc->counted_out = 0;
	hc->head_in = 0;
}

/* Whether the head, incomplete at the last look, must still be: once the
 * method has ended (at its space), the parser's answer to a prefix changes
 * only with a CR or LF (a line ends, or a bare one) or a length limit, and
 * it rescans from the start. So a client sending its head a byte per
 * segment costs a look at each new byte, not a rescan of all it sent (up
 * to max_uri_size, past which every read parses). */
static bool head_still_incomplete(const struct http_conn *hc, const struct http_limits *lim)
{
	size_t line =
		lim->max_uri_size < lim->max_header_size ? lim->max_uri_size : lim->max_header_size;
	if (!hc->head_seen || hc->rlen >= line)
		return false;
	if (!memchr(hc->rbuf, ' ', hc->head_seen) && !memchr(hc->rbuf, '\t', hc->head_seen))
		return false; /* the method goes on: each byte of it is judged */
	/* From the last byte seen: a CR there is judged by the byte after it. */
	const char *fresh = hc->rbuf + hc->head_seen - 1;
	size_t n = hc->rlen - hc->head_seen + 1;
	return !memchr(fresh, '\n', n) && !memchr(fresh, '\r', n);
}

/* Looks for a complete request head in rbuf and starts it. */
void http_start_request(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	struct http_head *h = &c->w->head;
	struct http_limits lim = {
		.max_uri_size = c->lc->max_uri_size,
		.max_header_size = c->lc->max_header_size,
	};

	if (hc->rlen == 0 || head_still_incomplete(hc, &lim))
		return;
	enum http_result r = http_parse_request(hc->rbuf, hc->rlen, &lim, h);
	hc->head_seen = r == HTTP_NEED_MORE ? hc->rlen : 0;
	if (r == HTTP_NEED_MORE)
		return;
	if (http_is_error(r)) {
		/* A head refused for its Host alone is known whole: what is
		 * pipelined behind it gets its own line (run_reply). */
		if (http_error_after_framing(r))
			take_head(hc, h);
		else
			http_note_unparsed_request(c);
		http_reply(c, http_result_status(r), http_result_name(r), true);
		return;
	}
	begin_request(c, h);
}

/* ---- sending the request ---------------------------------------------- */

/* A write of the body to the server failed with ERR. A server that closed
 * or reset the connection (often right after an early answer such as a
 * 413) may have sent something before: that is still to be read, and the
 * response side relays it, or finds nothing and retries a stale pooled
 * connection or answers 502 server_write_failed; 0 (wait). Any other
 * failure ends the request at once; -1. */
static int body_write_failed(struct conn *c, struct http_conn *hc, int err)
{
	if (err == EPIPE || err == ECONNRESET) {
		hc->req_write_failed = true;
		return 0;
	}
	if (err == ENOMEM)
		http_reply(c, 500, "no_memory", true); /* not the server's fault */
	else
		http_reply(c, 502, "server_write_failed", true);
	return -1;
}

/* Runs the buffered body bytes from rpos through the chunk decoder and
 * marks those it took to be sent (rsend). All that is buffered is checked
 * before any of it goes, so a body whose buffered chunks already pass
 * max_body_size gets its 413 before a byte reaches the server. Returns 0,
 * or -1 after answering or closing. */
static int check_chunks(struct conn *c, struct http_conn *hc)
{
	size_t off = hc->rpos;
	while (off < hc->rlen && hc->req_ch.state != HTTP_CHUNK_DONE) {
		size_t used = 0, data = 0;
		enum http_result r = http_chunked_feed(&hc->req_ch, hc->rbuf + off, hc->rlen - off,
						       &used, &data);
		if (http_is_error(r)) {
			http_reply(c, 400, http_result_name(r), true);
			return -1;
		}
		off += used;
		hc->bytes_in += used;
		hc->req_body_len += data;
		if (used == 0)
			break;
	}
	hc->rsend = (uint32_t)(off - hc->rpos);
	/* A chunk's size line says how much is coming: a body it takes past
	 * the limit is refused before its data. */
	uint64_t declared = hc->req_body_len;
	if (hc->req_ch.state == HTTP_CHUNK_DATA)
		declared += hc->req_ch.left;
	if (c->lc->max_body_size && declared > c->lc->max_body_size) {
		/* Part of the body is at the server already: SPEC §3 says
		 * close both (no 413 goes out). Else the client gets its 413,
		 * and the server connection, which has a head waiting for a
		 * body, is closed. */
		if (hc->req_body_flowed) {
			hc->reason = "body_too_large";
			conn_close(c, CR_CLIENT_RESET);
			return -1;
		}
		http_reply(c, 413, "body_too_large", true);
		return -1;
	}
	return 0;
}

/* Moves a chunked request body: reads into rbuf, checks it with the decoder,
 * and sends the checked bytes on as they came. Returns 1 when the body has
 * ended, 0 to wait, -1 after ending the connection. */
static int send_chunked(struct conn *c, struct http_conn *hc)
{
	struct side *srv = &hc->u->s;
	/* A client sending as fast as the server takes would otherwise hold
	 * the worker for its whole upload. */
	size_t budget = c->w->turn_budget;

	for (;;) {
		if (hc->rsend) {
			if (!srv->wr)
				return 0;
			ssize_t n = io_send(srv, hc->rbuf + hc->rpos, hc->rsend);
			if (n < 0)
				return n == -EAGAIN ? 0 : body_write_failed(c, hc, (int)-n);
			hc->rpos += (uint32_t)n;
			hc->rsend -= (uint32_t)n;
			hc->req_body_flowed = true;
			continue;
		}
		if (hc->req_ch.state == HTTP_CHUNK_DONE)
			return 1;
		if (hc->rpos < hc->rlen) {
			if (check_chunks(c, hc) < 0)
				return -1;
			continue;
		}
		/* All of rbuf is used: read more into it from the start. */
		if (budget == 0) {
			conn_queue_resume(c);
			return 0;
		}
		hc->rpos = hc->rlen = 0;
		if (!c->cli.rd)
			return 0;
		ssize_t n = io_recv(&c->cli, hc->rbuf, hc->rcap);
		if (n == -EAGAIN)
			return 0;
		if (n <= 0) {
			hc->reason = n == -EPROTO ? "client_tls_error" : "client_aborted";
			conn_close(c, CR_CLIENT_RESET);
			return -1;
		}
		hc->rlen = (uint32_t)n;
		budget = (size_t)n < budget ? budget - (size_t)n : 0;
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
		if (n < 0)
			return n == -EAGAIN ? 0 : body_write_failed(c, hc, (int)-n);
		hc->rpos += (uint32_t)n;
		hc->req_left -= (uint64_t)n;
		hc->bytes_in += (uint64_t)n;
	}
	if (!hc->up_armed) {
		if (hc->req_left == 0)
			return 1;
		relay_half_limit(&c->up, hc->req_left, NULL);
		hc->up_armed = true;
	}
	size_t budget = c->w->turn_budget;
	uint64_t before = c->up.bytes;
	enum relay_result r = relay_half(c->w, &c->up, &budget);
	hc->bytes_in += c->up.bytes - before;
	hc->req_left = c->up.left;
	if (r == RELAY_ERROR) {
		if (!c->up.err_on_src)
			return body_write_failed(c, hc, c->up.err);
		hc->reason = c->up.err == EPROTO ? "client_tls_error" : "client_aborted";
		conn_close(c, CR_CLIENT_RESET);
		return -1;
	}
	if (r == RELAY_MORE)
		conn_queue_resume(c);
	return r == RELAY_DONE ? 1 : 0;
}

/* The client's 100-continue expectation was its hop's alone (named in
 * Connection, so the server never saw it): with the head on its way, fulcrum
 * lets the body come as the server would have, as nginx does. Returns 0, or
 * -1 after ending a client that does not take even these 25 bytes. */
static int continue_client(struct conn *c, struct http_conn *hc)
{
	static const char go_on[] = "HTTP/1.1 100 Continue\r\n\r\n";

	hc->continue_here = hc->awaits_continue = false;
	http_outq_set(&hc->resp_out, go_on, sizeof(go_on) - 1, NULL, 0, NULL, 0);
	if (http_outq_flush(&c->cli, &hc->resp_out, &hc->bytes_out) > 0)
		return 0;
	hc->reason = "client_slow_interim";
	conn_close(c, CR_CLIENT_RESET);
	return -1;
}

/* Returns 1 when the request is all sent, 0 to wait, -1 after ending. */
int http_send_request(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	uint64_t ignored = 0;

	if (hc->req_done)
		return 1;
	if (hc->req_write_failed)
		return 0;
	if (!hc->req_head_sent) {
		int r = http_outq_flush(&hc->u->s, &hc->req_out, &ignored);
		if (r < 0) {
			if (http_retry_stale(c))
				return 0;
			http_server_failed(c, -r, "write to");
			http_reply(c, 502, "server_write_failed", true);
			return -1;
		}
		if (r == 0)
			return 0;
		hc->req_head_sent = true;
		if (hc->continue_here && continue_client(c, hc) < 0)
			return -1;
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
