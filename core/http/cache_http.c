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

#include <errno.h>

#include "core/cache.h"
#include "core/cache_policy.h"
#include "core/conn.h"
#include "core/http/proxy_internal.h"
#include "core/tls.h"

#define HOST_MAX 256 /* longer Host values are not cached */
#define PASS_MS	 30000 /* how long a key whose response was not storable is not collapsed */

/* A miss whose response may be stored. Owned by its http_conn, for one
 * request. */
struct cache_fill {
	struct cache *cache;
	struct cache_entry *e; /* NULL until the response head proved storable */
	struct cache_entry *stale; /* a stale entry the request revalidates (a reference) */
	struct cache_entry *answer; /* the entry a 304 confirmed, to answer with (a reference) */
	uint64_t reserved; /* bytes taken with cache_fill_reserve() */
	uint64_t wait_since_ms; /* waiting for another worker's fill of the key since; 0: not */
	bool claimed; /* this request fetches the key for the others (cache_pending_claim) */
	uint64_t request_wall_ms;
	int64_t expect; /* body bytes the head announced; -1: until the end */
	bool authorized;
	bool plain; /* no Authorization, Range or conditional: its answer speaks for the key */
	struct cache_key key; /* host and target point into key_data */
	char key_data[];
};

static _Atomic(struct cache *) caches[MAX_LISTENERS];
static _Atomic uint64_t budget_gen[MAX_LISTENERS]; /* the generation that set the size */

/* The listener's cache, made on first use; NULL when the listener has
 * none, or on ENOMEM. A reload's new size (0 included: the memory goes) is
 * applied by the first request of the newer generation. */
static struct cache *cache_of(struct conn *c)
{
	_Atomic(struct cache *) *slot = &caches[c->listener];
	struct cache *k = atomic_load_explicit(slot, memory_order_acquire);

	if (likely(k)) {
		uint64_t g = c->gen->number;
		if (unlikely(cache_budget(k) != c->lc->cache_size) &&
		    g > atomic_load_explicit(&budget_gen[c->listener], memory_order_relaxed)) {
			atomic_store_explicit(&budget_gen[c->listener], g, memory_order_relaxed);
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

/* ---- keys --------------------------------------------------------------- */

/* Drops a port that is the scheme's default, and an empty one. */
static size_t strip_default_port(const char *h, size_t n, bool https)
{
	const char *port = https ? ":443" : ":80";
	size_t pn = strlen(port);

	if (n > pn && memcmp(h + n - pn, port, pn) == 0)
		return n - pn;
	if (n > 1 && h[n - 1] == ':')
		return n - 1;
	return n;
}

/*
 * The key of request H: in http mode the route's pool, the scheme, the Host
 * and the request target; in forward mode the absolute URI's authority and
 * path. HOST (HOST_MAX bytes) receives the lower-cased host. False when the
 * request is not cached.
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
		hs = h->host;
		ts = h->target;
		k->scope = (lb_hash(hc->pool->name, strlen(hc->pool->name)) | 1) ^ https;
	}
	size_t n = strip_default_port(buf + hs.off, hs.len, https);
	if (n >= HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		host[i] = (char)tolower((unsigned char)buf[hs.off + i]);
	k->host = host;
	k->host_len = (uint32_t)n;
	/* RFC 9112 §3.2.2: an empty path of an absolute URI is "/". */
	k->target = ts.len ? buf + ts.off : "/";
	k->target_len = ts.len ? ts.len : 1;
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

/*
 * Queues E (a reference the request now holds) as the answer: the stored
 * head, fulcrum's lines in hc->reply, the body unless HEAD_ONLY. The caller
 * makes it go out (the HP_REPLY phase, or the exchange after a 304).
 */
static void queue_entry(struct conn *c, struct cache_entry *e, bool head_only)
{
	struct http_conn *hc = c->http;
	struct outq *q = &hc->resp_out;
	char *x = hc->reply;
	int64_t age = cache_entry_age_ms(e, c->w->now_ms) / 1000;
	size_t n = 0;

	if (c->w->draining)
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

	q->n = q->i = 0;
	q->iov[q->n++] = (struct iovec){e->head, e->head_len};
	q->iov[q->n++] = (struct iovec){x, n};
	if (!head_only && e->body_len)
		q->iov[q->n++] = (struct iovec){e->body, e->body_len};
	hc->cache_hit = e;
	hc->status = e->status;
	hc->resp_started = true;
}

/* Answers the request from E, a fresh entry: the HP_REPLY phase writes it
 * and ends the request like any other reply. */
static void serve(struct conn *c, struct cache_entry *e, bool head_only)
{
	struct http_conn *hc = c->http;

	queue_entry(c, e, head_only);
	hc->reason = "cache_hit";
	hc->ttfb_ms = (int64_t)(c->w->now_ms - hc->req_start_ms);
	hc->reply_close = false;
	http_set_phase(c, HP_REPLY);
}

/* ---- misses ------------------------------------------------------------- */

static void drop_fill(struct http_conn *hc)
{
	struct cache_fill *f = hc->cache_fill;

	if (!f)
		return;
	if (f->claimed)
		cache_pending_release(f->cache, &f->key);
	cache_fill_release(f->cache, f->reserved);
	cache_entry_put(f->e);
	cache_entry_put(f->stale);
	cache_entry_put(f->answer);
	free(f);
	hc->cache_fill = NULL;
}

/* Notes that the response to this GET may be stored under K. STALE, when
 * not NULL, is a stale entry to revalidate; the fill takes its reference. */
static void note_fill(struct http_conn *hc, struct cache *cache, const struct cache_key *k,
		      const struct cache_req_policy *rp, struct cache_entry *stale)
{
	struct cache_fill *f = malloc(sizeof(*f) + k->host_len + k->target_len);

	drop_fill(hc);
	if (!f) {
		cache_entry_put(stale);
		return; /* not stored, that is all */
	}
	f->cache = cache;
	f->e = NULL;
	f->stale = stale;
	f->answer = NULL;
	f->reserved = 0;
	f->wait_since_ms = 0;
	f->claimed = false;
	f->request_wall_ms = hc->req_start_wall_ms;
	f->expect = -1;
	f->authorized = rp->authorized;
	f->plain = !rp->authorized && !rp->range && !rp->conditional;
	f->key = *k;
	memcpy(f->key_data, k->host, k->host_len);
	memcpy(f->key_data + k->host_len, k->target, k->target_len);
	f->key.host = f->key_data;
	f->key.target = f->key_data + k->host_len;
	hc->cache_fill = f;
}

/*
 * The response is not stored. MARK: it never will be, so when this request
 * fetched the key for others and was a plain GET (one client's credentials,
 * range or validators say nothing about the others' answers), a pass marker
 * lets the key's next misses go to the server at once rather than queue
 * behind each other.
 */
static void not_storable(struct conn *c, bool mark)
{
	struct http_conn *hc = c->http;
	struct cache_fill *f = hc->cache_fill;

	if (mark && f->claimed && f->plain)
		cache_insert_pass(f->cache, &f->key, c->w->now_ms, PASS_MS);
	drop_fill(hc);
}

static bool method_is_safe(enum http_method m)
{
	return m == HTTP_M_GET || m == HTTP_M_HEAD || m == HTTP_M_OPTIONS || m == HTTP_M_TRACE;
}

/* RFC 9111 §4.4: an unsafe method on a URI makes what is stored for it
 * stale; fulcrum drops it at once, before the answer (dropping too much is
 * only a miss). */
static void invalidate(struct conn *c, const struct http_head *h)
{
	struct cache *cache = atomic_load_explicit(&caches[c->listener], memory_order_acquire);
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
	int claim = pass ? -1 : cache_pending_claim(cache, k);

	if (pass) {
		cache_entry_put(stale);
		stale = NULL;
	}
	if (claim == 0 && (!since || c->w->now_ms - since < CACHE_HTTP_WAIT_MS)) {
		cache_entry_put(stale);
		note_fill(hc, cache, k, rp, NULL);
		if (!hc->cache_fill)
			return false;
		hc->cache_fill->wait_since_ms = since ? since : c->w->now_ms;
		http_set_phase(c, HP_CACHE_WAIT);
		return true;
	}
	note_fill(hc, cache, k, rp, stale);
	if (hc->cache_fill)
		hc->cache_fill->claimed = claim == 1;
	else if (claim == 1)
		cache_pending_release(cache, k);
	return false;
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
	if (rp.no_store || !request_key(c, h, host, &k))
		return false;
	struct cache *cache = cache_of(c);
	if (!cache)
		return false;
	struct cache_req rq = {.h = h, .buf = hc->rbuf};
	bool stale = false;
	struct cache_entry *e = cache_lookup(cache, &k, &rq, rp.authorized, c->w->now_ms, &stale);
	if (e && !stale && !rp.no_cache && !e->pass) {
		drop_fill(hc); /* a wait for it is over */
		serve(c, e, h->method_id == HTTP_M_HEAD);
		return true;
	}
	/* Stale, or the client wants it checked: ask the server whether it
	 * changed, when it can tell (RFC 9111 §4.3.1) and the client did not
	 * make the request conditional itself. A pass marker goes on to miss(). */
	if (e && !e->pass &&
	    (h->method_id != HTTP_M_GET || rp.conditional || !(e->etag_len || e->lm_len))) {
		cache_entry_put(e);
		e = NULL;
	}
	if (h->method_id != HTTP_M_GET) {
		cache_entry_put(e);
		return false;
	}
	return miss(c, cache, &k, &rp, e);
}

int cache_http_request_lines(struct conn *c, struct rewrite_extra *x)
{
	struct cache_fill *f = c->http->cache_fill;
	int err = 0;

	if (!f || !f->stale)
		return 0;
	if (f->stale->etag_len)
		err |= rewrite_add(x, "If-None-Match: %.*s\r\n", (int)f->stale->etag_len,
				   f->stale->head + f->stale->etag_off);
	if (f->stale->lm_len)
		err |= rewrite_add(x, "If-Modified-Since: %.*s\r\n", (int)f->stale->lm_len,
				   f->stale->head + f->stale->lm_off);
	return err ? -ENOMEM : 0;
}

/* Takes what F's entry has grown to since the last call out of the fill
 * budget. False when the cache cannot take it. */
static bool reserve(struct cache_fill *f)
{
	uint64_t size = cache_entry_size(f->e);

	if (size <= f->reserved)
		return true;
	if (!cache_fill_reserve(f->cache, size - f->reserved))
		return false;
	f->reserved = size;
	return true;
}

/*
 * A copy of OLD refreshed by the 304 H (RFC 9111 §4.3.4): its head updated
 * with the 304's fields and its freshness worked out again from the result.
 * Returns it inserted in the cache, with a reference for the caller, or
 * NULL (the caller then answers with OLD, which the 304 confirmed).
 */
static struct cache_entry *refresh(struct conn *c, struct cache_fill *f,
				   const struct cache_entry *old, const struct http_head *h)
{
	size_t cap = old->head_len + h->head_len + 2 * h->header_count + 2;
	char *m = malloc(cap);
	struct http_head mh;
	struct cache_resp_policy p;
	struct cache_entry *e = NULL;

	size_t n = m ? cache_merge_head(old->head, old->head_len, h, c->http->sbuf, m, cap) : 0;
	struct http_limits lim = {.max_uri_size = HTTP_DEFAULT_URI_SIZE, .max_header_size = n + 1};
	if (n == 0 || http_parse_response(m, n, &lim, &mh) != HTTP_DONE)
		goto out;
	cache_response_policy(&mh, m, f->request_wall_ms, wall_ms(), f->authorized, &p);
	if (p.why_not)
		goto out;
	e = cache_entry_new(&f->key, old->vary, old->vary_len, n, old->body_len);
	if (!e || cache_entry_set_head(e, m, n - 2) < 0 ||
	    cache_entry_append(&e, old->body, old->body_len, UINT64_MAX) < 0) {
		cache_entry_put(e);
		e = NULL;
		goto out;
	}
	e->status = old->status;
	e->auth_ok = p.auth_ok;
	e->stored_ms = c->w->now_ms;
	e->initial_age_ms = p.initial_age_s * 1000;
	e->lifetime_ms = p.lifetime_s * 1000;
	cache_entry_end(e, false);
	cache_insert(f->cache, cache_entry_get(e));
out:
	free(m);
	return e;
}

/* The server says the stale entry is still good: answer with it, refreshed. */
static void revalidated(struct conn *c, struct cache_fill *f, const struct http_head *h)
{
	struct cache_entry *e = refresh(c, f, f->stale, h);

	if (e) {
		cache_entry_put(f->stale);
		f->answer = e;
	} else {
		f->answer = f->stale;
	}
	f->stale = NULL;
}

/* The request's fields as they went to the server, for Vary: the kept
 * lines of the rewritten head in rbuf, after its request line. */
static void forwarded_fields(const struct http_conn *hc, struct cache_req *rq)
{
	const char *p = hc->rbuf + hc->head_start, *end = hc->rbuf + hc->head_end;
	const char *lf = memchr(p, '\n', (size_t)(end - p));

	memset(rq, 0, sizeof(*rq));
	rq->lines = lf ? lf + 1 : end;
	rq->lines_len = (size_t)(end - rq->lines);
}

void cache_http_response(struct conn *c, const struct http_head *h)
{
	struct http_conn *hc = c->http;
	struct cache_fill *f = hc->cache_fill;
	struct cache_resp_policy p;
	struct cache_req rq;
	char vary[CACHE_VARY_MAX];

	if (!f)
		return;
	if (f->stale && h->status == 304) {
		revalidated(c, f, h);
		return;
	}
	cache_entry_put(f->stale); /* a full answer replaces it */
	f->stale = NULL;
	cache_response_policy(h, hc->sbuf, f->request_wall_ms, wall_ms(), f->authorized, &p);
	if (p.why_not || hc->resp_body == HTTP_BODY_TUNNEL) {
		not_storable(c, h->status < 500); /* a server error may pass */
		return;
	}
	uint64_t body_cap = hc->resp_body == HTTP_BODY_LENGTH ? (uint64_t)h->content_length : 0;
	if (body_cap + h->head_len + sizeof(struct cache_entry) > cache_max_object(f->cache)) {
		not_storable(c, true);
		return;
	}
	forwarded_fields(hc, &rq);
	int vlen = cache_vary_build(h, hc->sbuf, &rq, vary, sizeof(vary));
	if (vlen < 0) {
		not_storable(c, true);
		return;
	}
	struct cache_entry *e = cache_entry_new(&f->key, vary, (size_t)vlen, h->head_len, body_cap);
	if (!e) {
		drop_fill(hc);
		return;
	}
	e->status = (uint16_t)h->status;
	e->auth_ok = p.auth_ok;
	e->stored_ms = c->w->now_ms;
	e->initial_age_ms = p.initial_age_s * 1000;
	e->lifetime_ms = p.lifetime_s * 1000;
	f->e = e;
	if (!reserve(f)) {
		drop_fill(hc);
		return;
	}
	f->expect = hc->resp_body == HTTP_BODY_LENGTH ? h->content_length
		    : hc->resp_body == HTTP_BODY_NONE ? 0
						      : -1;
}

void cache_http_response_head(struct conn *c, const char *head, size_t len)
{
	struct http_conn *hc = c->http;

	if (cache_http_is_storing(hc) && cache_entry_set_head(hc->cache_fill->e, head, len) < 0)
		drop_fill(hc);
}

bool cache_http_is_storing(const struct http_conn *hc)
{
	return hc->cache_fill && hc->cache_fill->e;
}

void cache_http_body(struct conn *c, const char *p, size_t n)
{
	struct http_conn *hc = c->http;
	struct cache_fill *f = hc->cache_fill;

	if (!f || !f->e || n == 0)
		return;
	/* Past the largest object, or out of memory: the response still goes
	 * to the client, it is just not kept. */
	int err = cache_entry_append(&f->e, p, n, cache_max_object(f->cache));
	if (err == -EFBIG)
		not_storable(c, true);
	else if (err < 0 || !reserve(f))
		drop_fill(hc);
}

void cache_http_response_queued(struct conn *c)
{
	struct cache_fill *f = c->http->cache_fill;

	if (!f || !f->answer)
		return;
	queue_entry(c, f->answer, false);
	f->answer = NULL; /* the reference is hc->cache_hit's now */
	c->http->reason = "cache_revalidated";
}

/* Whether the server's whole response went by: not an error of fulcrum's
 * that ended the exchange early (a 502 for a bad chunk, say). */
static bool body_is_complete(const struct http_conn *hc, const struct cache_fill *f)
{
	if (!hc->resp_done || hc->status != f->e->status)
		return false;
	if (hc->resp_body == HTTP_BODY_CHUNKED)
		return hc->resp_ch.state == HTTP_CHUNK_DONE;
	return f->expect < 0 || f->e->body_len == (uint64_t)f->expect;
}

void cache_http_end(struct conn *c)
{
	struct http_conn *hc = c->http;
	struct cache_fill *f = hc->cache_fill;

	if (hc->cache_hit) {
		cache_entry_put(hc->cache_hit);
		hc->cache_hit = NULL;
	}
	if (!f)
		return;
	if (f->e && body_is_complete(hc, f)) {
		cache_entry_end(f->e, f->expect < 0);
		cache_insert(f->cache, f->e);
		f->e = NULL;
	}
	drop_fill(hc);
}

void cache_http_free(struct http_conn *hc)
{
	if (hc->cache_hit) {
		cache_entry_put(hc->cache_hit);
		hc->cache_hit = NULL;
	}
	drop_fill(hc);
}
