/*
 * account.c - what an http request leaves behind (see proxy_internal.h):
 * its access-log line (SPEC §6) and its counters (§5 metrics). Worker
 * thread.
 */
#include <stdatomic.h>

#include "core/http/proxy_internal.h"
#include "core/log.h"
#include "core/stats.h"
#include "core/worker.h"

/* The server of a request's log line and counters: its server, or the last
 * one tried when none could be reached (forward mode: the origin's
 * "host:port", which the connection holds until its next request). */
static struct lb_server *logged_server(const struct http_conn *hc)
{
	if (hc->server || !hc->tried.n || hc->host_short)
		return hc->server;
	return lb_tried_last(&hc->tried);
}

/* requests_total: a 502 after failed connects counts against the last
 * server tried, and an answer with no server at all (a 503 when none is up
 * or free, a cache hit, an error after routing) in the pool's series with
 * an empty server, so an outage shows in the 5xx series. Forward mode's
 * origins are no pool's servers. */
void http_count_response(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	struct lb_server *s = logged_server(hc);
	if (hc->counted || (!s && (!hc->pool || hc->fwd)))
		return;
	hc->counted = true;
	int cls = hc->status >= 100 && hc->status < 600 ? hc->status / 100 : 0;
	if (s)
		atomic_fetch_add_explicit(&s->responses[cls], 1, memory_order_relaxed);
	else
		stats_unserved(c->w, hc->pool, cls);
}

void http_count_bytes(struct conn *c)
{
	struct http_conn *hc = http_of(c);

	STAT_ADD(c->w->stats[c->lc->slot].bytes_in, hc->bytes_in - hc->counted_in);
	STAT_ADD(c->w->stats[c->lc->slot].bytes_out, hc->bytes_out - hc->counted_out);
	hc->counted_in = hc->bytes_in;
	hc->counted_out = hc->bytes_out;
}

void http_log_request(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	const struct lb_server *srv = logged_server(hc);
	const char *proto = hc->minor ? "HTTP/1.1" : "HTTP/1.0";
	struct log_record r = {
		.start_wall_ms = hc->req_start_wall_ms,
		.client = &c->peer.sa,
		.listener = c->lc->name,
		.pool = hc->pool && !hc->fwd ? hc->pool->name : NULL, /* forward: no pool */
		.server = srv ? srv->name : NULL,
		.method = hc->line_unknown ? NULL : hc->method,
		.method_len = hc->method_len,
		.target = hc->line_unknown ? NULL : hc->target,
		.target_len = hc->target_len,
		.proto = hc->line_unknown ? NULL : proto,
		.status = hc->status,
		.bytes_in = hc->bytes_in,
		.bytes_out = hc->bytes_out,
		.total_ms = (int64_t)(c->w->now_ms - hc->req_start_ms),
		.ttfb_ms = hc->ttfb_ms,
		.reason = hc->reason,
	};
	http_count_bytes(c);
	stats_request_done(c->w, hc->pool, clock_us() - hc->req_start_us, hc->tried.n);
	log_access(c->w->log, &r);
}
