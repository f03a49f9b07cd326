/*
 * cache_http.h - the HTTP cache on http and forward listeners with
 * cache > 0 (SPEC §3 "Caching"): the few calls the proxy (proxy.c,
 * forward.c) makes to answer requests from the cache (cache_http.c) and to
 * store responses as they pass (cache_fill.c). The store itself is
 * core/cache.h, the RFC 9111 rules core/cache_policy.h.
 *
 * A request's way: cache_http_request() after routing either answers a GET
 * or HEAD from a fresh entry (the stored head, an Age and X-Cache: HIT
 * line, the stored body: one writev from the phase HP_REPLY, no allocation)
 * or notes that the response may be stored. The response head then goes
 * through cache_http_response() (storable?) and cache_http_response_head()
 * (the head as the client gets it), its body bytes through
 * cache_http_body(), and cache_http_end() at the end of the request stores
 * a complete response. Every response from a server on such a listener
 * gets X-Cache: MISS; fulcrum's own errors get neither.
 *
 * Thread: the worker owning the connection (cache_http_drop_orphans: the
 * main thread).
 */
#ifndef FULCRUM_HTTP_CACHE_HTTP_H
#define FULCRUM_HTTP_CACHE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

/* Misses of one key are collapsed: while one request fetches it, the
 * others wait (phase HP_CACHE_WAIT), looking again every POLL_MS, for up
 * to WAIT_MS (nginx's proxy_cache_lock_timeout is 5 s too). */
#define CACHE_HTTP_POLL_MS 16
#define CACHE_HTTP_WAIT_MS 5000

struct conn;
struct gen;
struct http_conn;
struct http_head;
struct rewrite_extra;

/*
 * A request head H was parsed (and, in http mode, routed). Returns true when
 * the cache answers it (hc->resp_out holds the response and the phase is
 * HP_REPLY) or when it waits for another request's fetch of the same key
 * (phase HP_CACHE_WAIT: when its timer fires, the proxy starts the request
 * again from the head in rbuf). False: go on to a server.
 */
bool cache_http_request(struct conn *c, const struct http_head *h);

/* Lines the request to the server gets (http_build_request_head): the
 * validators of a stale entry being revalidated. 0 or -ENOMEM. */
int cache_http_request_lines(struct conn *c, struct rewrite_extra *x);

/* The server's response head H, before it is rewritten: decides whether the
 * response is stored, or, for a 304 to a revalidation, refreshes the entry. */
void cache_http_response(struct conn *c, const struct http_head *h);

/* The response head's kept lines, HEAD[0, LEN), as they go to the client,
 * and lines fulcrum adds that belong to the stored answer too, MORE[0,
 * MORE_LEN) (a Date the server did not send). */
void cache_http_response_head(struct conn *c, const char *head, size_t len, const char *more,
			      size_t more_len);

/* The response head is queued in hc->resp_out: after a 304 to a
 * revalidation, the stored response replaces it there. */
void cache_http_response_queued(struct conn *c);

/* Whether the current response is being stored: its body must then pass
 * through cache_http_body() rather than be spliced. */
bool cache_http_is_storing(const struct http_conn *hc);

/* Body bytes (payload only: chunked framing removed) as they pass. */
void cache_http_body(struct conn *c, const char *p, size_t n);

/* The response waits (again, or no more) on the client with server bytes
 * held for it: a fill others wait for is held up by a slow reader. */
void cache_http_client_holds_up(struct conn *c, bool held);

/* The exchange failed without a response to pass on (fulcrum answers 502
 * or 504 itself): a miss it was filling for others lets them go to the
 * server at once, as after a server's own error, rather than one by one. */
void cache_http_failed(struct conn *c);

/* The request is over: a complete response is stored; a cache entry the
 * answer was written from is let go. */
void cache_http_end(struct conn *c);

/* The connection is closing: drops whatever the cache state of HC holds. */
void cache_http_free(struct http_conn *hc);

/* Main thread, once G is published: empties the caches of listeners G no
 * longer has (a reload removed or renamed them), which no request of G
 * will size again. Connections of theirs still running find them empty. */
void cache_http_drop_orphans(const struct gen *g);

#endif
