/*
 * cache_http.c - the HTTP cache between the proxy and the store (see
 * cache_http.h). Worker thread (the connection's).
 *
 * Each listener with cache > 0 has one struct cache, made by the first
 * worker that needs it and shared by all of them from then on (a process-
 * wide slot per listener position, which reloads keep; a reload may change
 * the size, and the newest generation's size wins). Caches live until the
 * process exits.
 *
 * This half answers requests: keys, lookups, hits (and 304s to conditional
 * requests), collapsing misses, invalidation. Storing responses is
 * cache_fill.c.
 *
 * Per connection: hc->cache_hit is the entry a hit is being written from (a
 * reference held until the request ends, so eviction meanwhile is safe);
 * hc->cache_fill is a miss that may be stored, with its key copied (the
 * request head is rewritten in place on its way to the server), and, once
 * the response head said it is storable, the entry being filled.
 */
#include "core/http/cache_http.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/cache.h"
#include "core/cache_policy.h"
#include "core/conn.h"
#include "core/http/cache_fill.h"
#include "core/http/forward.h"
#include "core/http/proxy_internal.h"
#include "core/http/reply.h"
#include "core/tls.h"

#define HOST_MAX 256 /* longer Host values are not cached */

static _Atomic(struct cache *) caches[MAX_LISTENERS];
static _Atomic uint64_t budget_gen[MAX_LISTENERS]; /* the generation that set the size */

/* The listener's cache, made on first use; NULL when the listener has
 * none, or on ENOMEM. A reload's new size (0 included: the memory goes) is
 * applied by the first request of the newer generation. */
static struct cache *cache_of(struct conn *c)
{
	_Atomic(struct cache *) *slot = &caches[c->lc->slot];
	struct cache *k = atomic_load_explicit(slot, memory_order_acquire);

	if (likely(k)) {
		uint64_t g = c->gen->number;
		if (unlikely(cache_budget(k) != c->lc->cache_size) &&
		    g > atomic_load_explicit(&budget_gen[c->lc->slot], memory_order_relaxed)) {
			atomic_store_explicit(&budget_gen[c->lc->slot], g, memory_order_relaxed);
			cache_set_budget(k, c->lc->cache_size);
		}
		return c->lc->cache_size ? k : NULL;
	}
	if (!c->lc->cache_size)
		return NULL;
	k = cache_new(c->lc->cache_size);
	if (!k)
		return NULL;
	struct cache *none = NULL;
	if (!atomic_compare_exchange_strong_explicit(slot, &none, k, memory_order_acq_rel,
						     memory_order_acquire)) {
		cache_free(k);
		k = none;
	}
	return k;
}

void cache_http_drop_orphans(const struct gen *g)
{
	bool kept[MAX_LISTENERS] = {false};

	for (size_t i = 0; i < g->cfg->n_listeners; i++)
		kept[g->cfg->listeners[i].slot] = true;
	for (uint32_t slot = 0; slot < MAX_LISTENERS; slot++) {
		struct cache *k = atomic_load_explicit(&caches[slot], memory_order_acquire);
		if (!k || kept[slot])
			continue;
		/* Connections of older generations size it no more (cache_of):
		 * who sees the budget at 0 (a release store) sees this too. */
		atomic_store_explicit(&budget_gen[slot], g->number, memory_order_relaxed);
		cache_set_budget(k, 0);
	}
}

/* ---- keys --------------------------------------------------------------- */

/* Writes authority A[0, n) to HOST (HOST_MAX bytes) as the key has it: the
 * host in lower case, then the port as a number without leading zeros, left
 * out when it is empty or the scheme's default, so "h", "h:", "h:80" and
 * "h:080" are one origin, as they are one address. The parser has checked
 * the form (host, or [literal], then an optional ":" and digits). Returns
 * the length, or -1 when it does not fit. */
static ssize_t key_host(const char *a, size_t n, bool https, char *host)
{
	const char *end = n && a[0] == '[' ? memchr(a, ']', n) : memchr(a, ':', n);
	size_t hn = !end ? n : a[0] == '[' ? (size_t)(end - a) + 1 : (size_t)(end - a);
	const char *port = a + hn;
	size_t pn = n - hn;

	if (pn && port[0] == ':') {
		port++;
		pn--;
	}
	while (pn > 1 && port[0] == '0') {
		port++;
		pn--;
	}
	const char *dflt = https ? "443" : "80";
	if (pn == strlen(dflt) && memcmp(port, dflt, pn) == 0)
		pn = 0;
	size_t len = hn + (pn ? 1 + pn : 0);
	if (len >= HOST_MAX)
		return -1;
	for (size_t i = 0; i < hn; i++)
		host[i] = (char)tolower((unsigned char)a[i]);
	if (pn) {
		host[hn] = ':';
		memcpy(host + hn + 1, port, pn);
	}
	return (ssize_t)len;
}

/*
 * The key of request H: in http mode the route's pool, the scheme, the Host
 * and the request target; in forward mode the absolute URI's authority and
 * path. HOST (HOST_MAX bytes) receives the host as key_host writes it. False
 * when the request is not cached.
 */
static bool request_key(struct conn *c, const struct http_head *h, char *host, struct cache_key *k)
{
	struct http_conn *hc = c->http;
	const char *buf = hc->rbuf;
	struct http_slice hs, ts;
	bool https = false;

	if (c->lc->mode == MODE_FORWARD) {
		hs = h->authority;
		ts = h->path;
		k->scope = 0;
	} else {
		https = tls_side_is_tls(&c->cli);
		hs = http_request_host(h);
		ts = h->target_form == HTTP_TARGET_ABSOLUTE ? h->path : h->target;
		k->scope = (lb_hash(hc->pool->name, strlen(hc->pool->name)) | 1) ^ https;
	}
	ssize_t n = key_host(buf + hs.off, hs.len, https, host);
	if (n < 0)
		return false;
	k->host = host;
	k->host_len = (uint32_t)n;
	/* The target as it is forwarded, where an absolute URI's empty path is
	 * "/" (RFC 9112 §3.2.2: "http://h?q" is "/?q"). Every other target
	 * starts with that "/", so the key leaves it out. */
	const char *t = buf + ts.off;
	size_t tn = ts.len;
	if (tn && t[0] == '/') {
		t++;
		tn--;
	}
	k->target = t;
	k->target_len = (uint32_t)tn;
	cache_key_hash(k);
	return true;
}

/* ---- answering from the cache ----------------------------------------- */

static size_t put_str(char *p, const char *s)
{
	size_t n = strlen(s);
	memcpy(p, s, n);
	return n;
}

static size_t put_u64(char *p, uint64_t v)
{
	char tmp[24];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		p[i] = tmp[n - 1 - i];
	return n;
}

#define EXTRAS_MAX 128 /* what put_extras() writes at most */

/* Writes fulcrum's lines of an answer from E to X, with the empty line
 * that ends the head; returns their length. */
static size_t put_extras(struct conn *c, const struct cache_entry *e, char *x)
{
	struct http_conn *hc = c->http;
	int64_t age = cache_entry_age_ms(e, c->w->now_ms) / 1000;
	size_t n = 0;

	if (c->w->draining || http_client_done(c))
		hc->client_ka = false;
	n += put_str(x + n, "Age: ");
	n += put_u64(x + n, age > 0 ? (uint64_t)age : 0);
	n += put_str(x + n, "\r\nX-Cache: HIT\r\n");
	if (!hc->client_ka)
		n += put_str(x + n, "Connection: close\r\n");
	else if (hc->minor == 0)
		n += put_str(x + n, "Connection: keep-alive\r\n");
	if (c->lc->mode == MODE_FORWARD)
		n += put_str(x + n, "Via: 1.1 fulcrum\r\n");
	n += put_str(x + n, "\r\n");
	return n;
}

/*
 * Queues E (a reference the request now holds) as the answer: the stored
 * head, fulcrum's lines in hc->reply, the body unless HEAD_ONLY. The caller
 * makes it go out (the HP_REPLY phase, or the exchange after a 304).
 */
void cache_http_queue_entry(struct conn *c, struct cache_entry *e, bool head_only)
{
	struct http_conn *hc = c->http;
	struct outq *q = &hc->resp_out;
	char *x = hc->reply;
	size_t n = put_extras(c, e, x);

	q->n = q->i = 0;
	q->iov[q->n++] = (struct iovec){e->head, e->head_len};
	q->iov[q->n++] = (struct iovec){x, n};
	if (!head_only && e->body_len)
		q->iov[q->n++] = (struct iovec){e->body, e->body_len};
	hc->cache_hit = e;
	hc->status = e->status;
	hc->resp_started = true;
}

/* Where the Content-Length line of E's head is: [*AT, *AT + *LEN). False
 * when there is none. */
static bool find_length_line(const struct cache_entry *e, size_t *at, size_t *len)
{
	const char *p = memchr(e->head, '\n', e->head_len), *end = e->head + e->head_len;

	for (p = p ? p + 1 : end; p < end;) {
		size_t n = http_line_len(p, end);
		if (http_line_is(p, n, "content-length")) {
			*at = (size_t)(p - e->head);
			*len = n;
			return true;
		}
		p += n;
	}
	return false;
}

/*
 * Queues the part [FIRST, LAST] of E's body as a 206 (RFC 9110 §15.3.7):
 * the stored head with its status line and Content-Length replaced, then
 * Content-Range and fulcrum's lines. False when E's head has no length to
 * replace; the caller answers with the whole body then.
 */
static bool queue_part(struct conn *c, struct cache_entry *e, uint64_t first, uint64_t last)
{
	static const char status[] = "HTTP/1.1 206 Partial Content\r\n";
	struct http_conn *hc = c->http;
	struct outq *q = &hc->resp_out;
	const char *sl_end = memchr(e->head, '\n', e->head_len);
	size_t cl_at, cl_len;

	if (!sl_end || !find_length_line(e, &cl_at, &cl_len))
		return false;
	size_t from = (size_t)(sl_end + 1 - e->head), after = cl_at + cl_len;
	char *x = hc->reply;
	int n = snprintf(x, sizeof(hc->reply) - EXTRAS_MAX,
			 "Content-Length: %llu\r\nContent-Range: bytes %llu-%llu/%llu\r\n",
			 (unsigned long long)(last - first + 1), (unsigned long long)first,
			 (unsigned long long)last, (unsigned long long)e->body_len);
	size_t xn = (size_t)n + put_extras(c, e, x + n);

	q->n = q->i = 0;
	q->iov[q->n++] = (struct iovec){(void *)status, sizeof(status) - 1};
	if (cl_at > from)
		q->iov[q->n++] = (struct iovec){e->head + from, cl_at - from};
	if (after < e->head_len)
		q->iov[q->n++] = (struct iovec){e->head + after, e->head_len - after};
	q->iov[q->n++] = (struct iovec){x, xn};
	q->iov[q->n++] = (struct iovec){e->body + first, (size_t)(last - first + 1)};
	hc->cache_hit = e;
	hc->status = 206;
	hc->resp_started = true;
	return true;
}

/* Queues a 416 for a range past the end of E's body (a reference the
 * request holds): an answer from the cache like the others, with Age and
 * X-Cache: HIT. */
static void queue_unsatisfiable(struct conn *c, struct cache_entry *e)
{
	struct http_conn *hc = c->http;
	char *x = hc->reply, date[HTTP_DATE_SIZE];
	http_date_now(date); /* fulcrum's own answer: dated now (RFC 9110 §6.6.1) */
	int n = snprintf(
		x, sizeof(hc->reply) - EXTRAS_MAX,
		"HTTP/1.1 416 Range Not Satisfiable\r\n%s%s%sContent-Range: bytes */%llu\r\n"
		"Content-Length: 0\r\n",
		date[0] ? "Date: " : "", date, date[0] ? "\r\n" : "",
		(unsigned long long)e->body_len);
	size_t xn = (size_t)n + put_extras(c, e, x + n);

	hc->resp_out.n = hc->resp_out.i = 0;
	hc->resp_out.iov[hc->resp_out.n++] = (struct iovec){x, xn};
	hc->cache_hit = e;
	hc->status = 416;
	hc->resp_started = true;
}

/*
 * Answers the request from E, a fresh entry: the HP_REPLY phase writes it
 * and ends the request like any other reply. A GET with one byte range gets
 * that part of a stored 200, or 416 when it lies past the end, as nginx
 * answers from its cache; with If-Range, or several ranges, the whole body
 * (RFC 9110 §14.2 lets a server ignore Range).
 */
static void serve(struct conn *c, struct cache_entry *e, const struct http_head *h,
		  const struct cache_req_policy *rp)
{
	struct http_conn *hc = c->http;
	bool head_only = h->method_id == HTTP_M_HEAD;
	uint64_t first, last;
	int r = 0;

	if (!head_only && rp->range_field >= 0 && !rp->if_range && e->status == 200) {
		const struct http_slice *v = &h->headers[rp->range_field].value;
		r = cache_byte_range(hc->rbuf + v->off, v->len, e->body_len, &first, &last);
	}
	if (r < 0)
		queue_unsatisfiable(c, e);
	else if (r == 0 || !queue_part(c, e, first, last))
		cache_http_queue_entry(c, e, head_only);
	hc->ttfb_ms = (int64_t)(c->w->now_ms - hc->req_start_ms);
	hc->reply_close = false;
	http_set_phase(c, HP_REPLY);
}

/* Whether the stored field line LINE[0, LEN) goes into a 304 (RFC 9110
 * §15.4.5: the fields a 200 would have had that describe the cache). */
static bool line_in_304(const char *line, size_t len)
{
	static const char *const names[] = {"date", "etag",	     "cache-control",	"expires",
					    "vary", "last-modified", "content-location"};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (http_line_is(line, len, names[i]))
			return true;
	return false;
}

/*
 * Answers a conditional request whose validators match E (a reference the
 * request holds) with 304 Not Modified, built in hc->reply. False when the
 * head would not fit there; the caller then sends the whole response.
 */
static bool serve_not_modified(struct conn *c, struct cache_entry *e)
{
	static const char status[] = "HTTP/1.1 304 Not Modified\r\n";
	struct http_conn *hc = c->http;
	char *x = hc->reply;
	size_t n = sizeof(status) - 1, cap = sizeof(hc->reply) - EXTRAS_MAX;
	const char *p = memchr(e->head, '\n', e->head_len), *end = e->head + e->head_len;

	memcpy(x, status, n);
	for (p = p ? p + 1 : end; p < end;) {
		size_t len = http_line_len(p, end);
		if (line_in_304(p, len)) {
			if (n + len > cap)
				return false;
			memcpy(x + n, p, len);
			n += len;
		}
		p += len;
	}
	n += put_extras(c, e, x + n);
	hc->resp_out.n = hc->resp_out.i = 0;
	hc->resp_out.iov[hc->resp_out.n++] = (struct iovec){x, n};
	hc->cache_hit = e;
	hc->status = 304;
	hc->resp_started = true;
	hc->ttfb_ms = (int64_t)(c->w->now_ms - hc->req_start_ms);
	hc->reply_close = false;
	http_set_phase(c, HP_REPLY);
	return true;
}

/* ---- misses ------------------------------------------------------------- */

static bool method_is_safe(enum http_method m)
{
	return m == HTTP_M_GET || m == HTTP_M_HEAD || m == HTTP_M_OPTIONS || m == HTTP_M_TRACE;
}

/* RFC 9111 §4.4: an unsafe method on a URI makes what is stored for it
 * stale; fulcrum drops it at once, before the answer (dropping too much is
 * only a miss). */
static void invalidate(struct conn *c, const struct http_head *h)
{
	struct cache *cache = atomic_load_explicit(&caches[c->lc->slot], memory_order_acquire);
	struct cache_key k;
	char host[HOST_MAX];

	if (cache && request_key(c, h, host, &k))
		cache_invalidate(cache, &k);
}

/*
 * A GET that the cache cannot answer now: the first request for K fetches
 * it and notes the fill; while that fill is under way (on any worker) the
 * others wait in HP_CACHE_WAIT, trying again every CACHE_HTTP_POLL_MS, for
 * up to CACHE_HTTP_WAIT_MS, then go to the server themselves. Returns true
 * when the request waits. STALE (a reference, or NULL) is revalidated.
 */
static bool miss(struct conn *c, struct cache *cache, const struct cache_key *k,
		 const struct cache_req_policy *rp, struct cache_entry *stale)
{
	struct http_conn *hc = c->http;
	uint64_t since = hc->cache_fill ? hc->cache_fill->wait_since_ms : 0;
	bool pass = stale && stale->pass;
	/* A request that could not take another's answer (credentials, a
	 * range, its own conditions, no-cache) neither waits nor makes others
	 * wait: its answer is stored if it may be, that is all. */
	bool shares = !rp->authorized && !rp->range && !rp->conditional && !rp->no_cache;
	int claim = pass || !shares ? -1 : cache_pending_claim(cache, k, c->w->now_ms);

	if (pass) {
		cache_entry_put(stale);
		stale = NULL;
	}
	if (claim == 0 && (!since || c->w->now_ms - since < CACHE_HTTP_WAIT_MS)) {
		cache_entry_put(stale);
		cache_fill_note(hc, cache, k, rp, NULL);
		if (!hc->cache_fill)
			return false;
		hc->cache_fill->wait_since_ms = since ? since : c->w->now_ms;
		http_set_phase(c, HP_CACHE_WAIT);
		return true;
	}
	if (claim == 1 && hc->method_id == HTTP_M_HEAD) {
		/* What a HEAD stores answers HEADs only: the GETs it would
		 * hold up would all go to the server after it anyway. It
		 * waits on a GET's fill, but makes nobody wait on its own. */
		cache_pending_release(cache, k);
		claim = -1;
	}
	if (claim == 1 && since && cache_has_key(cache, k, c->w->now_ms)) {
		/* The fill this request waited for stored an answer for another
		 * Vary variant: were it the next filler, the other waiters would
		 * queue behind it one by one. (A fill whose client left stored
		 * nothing: this request takes it over, the others wait on.) */
		cache_pending_release(cache, k);
		claim = -1;
	}
	cache_fill_note(hc, cache, k, rp, stale);
	if (hc->cache_fill)
		hc->cache_fill->claimed = claim == 1;
	else if (claim == 1)
		cache_pending_release(cache, k);
	return false;
}

/* The client's own limits on a stored answer (RFC 9111 §5.2.1.1 max-age,
 * §5.2.1.3 min-fresh), in whole seconds as Age shows them. */
static bool client_accepts(const struct cache_entry *e, const struct cache_req_policy *rp,
			   uint64_t now_ms)
{
	int64_t age_ms = cache_entry_age_ms(e, now_ms);

	if (rp->max_age_s >= 0 && age_ms / 1000 > rp->max_age_s)
		return false;
	if (rp->min_fresh_s >= 0 && (e->lifetime_ms - age_ms) / 1000 < rp->min_fresh_s)
		return false;
	return true;
}

/* Whether E, an entry a forward listener stored, came from an origin that
 * a reload has denied since: then it is answered 403. */
static bool origin_now_denied(struct conn *c, const struct cache_entry *e)
{
	return e && !e->pass && c->http->fwd && e->origin.sa.sa_family &&
	       forward_denies_origin(c, &e->origin.sa);
}

/* Answers from E, fresh and acceptable to the client: a 304 when the
 * client's own validators match it. RFC 9110 §13.2.1: preconditions hold
 * for a 2xx only; a stored 404 is sent whole. */
static void serve_hit(struct conn *c, struct cache_entry *e, const struct http_head *h,
		      const struct cache_req_policy *rp)
{
	struct http_conn *hc = c->http;

	cache_fill_drop(hc); /* a wait for it is over */
	if (rp->conditional && e->status >= 200 && e->status < 300 &&
	    cache_not_modified(rp, h, hc->rbuf, e->head + e->etag_off, e->etag_len,
			       e->head + e->lm_off, e->lm_len) &&
	    serve_not_modified(c, e))
		return;
	serve(c, e, h, rp);
}

bool cache_http_request(struct conn *c, const struct http_head *h)
{
	struct http_conn *hc = c->http;
	struct cache_req_policy rp;
	struct cache_key k;
	char host[HOST_MAX];

	if (!c->lc->cache_size) {
		cache_of(c); /* a reload may have turned the cache off: empty it */
		return false;
	}
	if (h->target_form == HTTP_TARGET_ASTERISK || h->target_form == HTTP_TARGET_AUTHORITY)
		return false;
	if (!method_is_safe(h->method_id)) {
		invalidate(c, h);
		return false;
	}
	if ((h->method_id != HTTP_M_GET && h->method_id != HTTP_M_HEAD) ||
	    hc->req_body != HTTP_BODY_NONE || hc->upgrade)
		return false;
	cache_request_policy(h, hc->rbuf, &rp);
	if (rp.no_store || rp.precondition || !request_key(c, h, host, &k))
		return false; /* If-Match and If-Unmodified-Since: the server judges */
	struct cache *cache = cache_of(c);
	if (!cache)
		return false;
	struct cache_req rq = {.h = h, .buf = hc->rbuf};
	bool stale = false;
	struct cache_entry *e = cache_lookup(cache, &k, &rq, rp.authorized, c->w->now_ms, &stale);
	if (origin_now_denied(c, e)) {
		cache_entry_put(e);
		cache_fill_drop(hc);
		http_reply_ex(c, 403, "denied_address", false, NULL);
		return true;
	}
	if (e && !stale && !rp.no_cache && !e->pass && client_accepts(e, &rp, c->w->now_ms)) {
		serve_hit(c, e, h, &rp);
		return true;
	}
	if (rp.only_if_cached) {
		/* RFC 9111 §5.2.1.7: nothing stored will do, and the server
		 * may not be asked. */
		cache_entry_put(e);
		cache_fill_drop(hc);
		http_reply_ex(c, 504, "not_in_cache", false, NULL);
		return true;
	}
	/* Stale, or the client wants it checked: ask the server whether it
	 * changed, when it can tell (RFC 9111 §4.3.1). A client that made the
	 * request conditional itself has it go as it is, and the server's 304
	 * to it updates the entry when it names it (cache_fill.c). A pass
	 * marker goes on to miss(). */
	if (e && !e->pass && (h->method_id != HTTP_M_GET || !(e->etag_len || e->lm_len))) {
		cache_entry_put(e);
		e = NULL;
	}
	return miss(c, cache, &k, &rp, e); /* GET or HEAD (SPEC: both are stored) */
}

void cache_http_end(struct conn *c)
{
	struct http_conn *hc = c->http;

	if (hc->cache_hit) {
		cache_entry_put(hc->cache_hit);
		hc->cache_hit = NULL;
	}
	cache_fill_end(c);
}

void cache_http_free(struct http_conn *hc)
{
	if (hc->cache_hit) {
		cache_entry_put(hc->cache_hit);
		hc->cache_hit = NULL;
	}
	cache_fill_drop(hc);
}
