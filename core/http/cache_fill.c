/*
 * cache_fill.c - storing responses as they pass (see cache_http.h and
 * cache_fill.h). Worker thread (the connection's).
 *
 * A GET that missed has a struct cache_fill (hc->cache_fill) with its key.
 * When the response head arrives, cache_http_response() decides whether it
 * is storable (cache_policy.h); if so the fill gets an entry, which takes
 * the head as it goes to the client and the body bytes (decoded) as they
 * pass, and cache_fill_end() inserts it once the whole response went by.
 * Entries being filled count against the cache's fill budget
 * (cache_fill_reserve), so slow misses cannot hold more than the cache
 * may. A stale entry with validators is revalidated instead: the request
 * carries If-None-Match / If-Modified-Since, and a 304 refreshes the entry
 * and answers with it.
 */
#include "core/http/cache_fill.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "core/http/cache_http.h"
#include "core/http/proxy_internal.h"
#include "core/http/reply.h"

void cache_fill_drop(struct http_conn *hc)
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

void cache_fill_stuck(struct http_conn *hc, bool stuck, uint64_t now_ms)
{
	struct cache_fill *f = hc->cache_fill;

	if (!f || !f->claimed || f->stuck == stuck)
		return;
	f->stuck = stuck;
	cache_pending_stuck(f->cache, &f->key, stuck ? now_ms : 0);
}

void cache_fill_note(struct http_conn *hc, struct cache *cache, const struct cache_key *k,
		     const struct cache_req_policy *rp, struct cache_entry *stale)
{
	struct cache_fill *f = malloc(sizeof(*f) + k->host_len + k->target_len);

	cache_fill_drop(hc);
	if (!f) {
		cache_entry_put(stale);
		return; /* not stored, that is all */
	}
	f->cache = cache;
	f->e = NULL;
	f->stale = stale;
	f->client_validates = stale && rp->conditional;
	f->answer = NULL;
	f->reserved = 0;
	f->wait_since_ms = 0;
	f->claimed = f->stuck = false;
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
 * The response is not stored. When this request fetched the key for others
 * and was a plain GET (one client's credentials, range or validators say
 * nothing about the others' answers), a pass marker lets the key's waiters
 * and next misses go to the server at once rather than queue behind each
 * other, for MARK_MS (0: no marker).
 */
static void not_storable(struct conn *c, uint64_t mark_ms)
{
	struct http_conn *hc = c->http;
	struct cache_fill *f = hc->cache_fill;

	if (mark_ms && f->claimed && f->plain)
		cache_insert_pass(f->cache, &f->key, c->w->now_ms, mark_ms);
	cache_fill_drop(hc);
}

void cache_http_failed(struct conn *c)
{
	struct cache_fill *f = c->http->cache_fill;

	/* A stale entry being revalidated stays: a marker would replace it,
	 * and the next request would fetch it whole. */
	if (f && !f->stale)
		not_storable(c, CACHE_PASS_ERROR_MS);
}

int cache_http_request_lines(struct conn *c, struct rewrite_extra *x)
{
	struct cache_fill *f = c->http->cache_fill;
	int err = 0;

	if (!f || !f->stale || f->client_validates)
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

/* Whether the refreshed head MH (in BUF) varies on what OLD's does, with the
 * same values in the request that went to the server. */
static bool same_vary(const struct conn *c, const struct http_head *mh, const char *buf,
		      const struct cache_entry *old)
{
	struct cache_req rq;
	char vary[CACHE_VARY_MAX];

	forwarded_fields(c->http, &rq);
	int n = cache_vary_build(mh, buf, &rq, vary, sizeof(vary));
	return n >= 0 && (size_t)n == old->vary_len && memcmp(vary, old->vary, old->vary_len) == 0;
}

/*
 * A copy of OLD refreshed by the 304 H (RFC 9111 §4.3.4): its head updated
 * with the 304's fields and its freshness worked out again from the result.
 * Returns it with a reference for the caller, or NULL (the caller then
 * answers with OLD, which the 304 confirmed). The copy replaces OLD in the
 * cache, unless the updated head forbids storing (no-store, Vary: * ...)
 * or changes what it varies on (its Vary, or the request's values for it:
 * lookups would still match on the old ones): then OLD goes too, and the
 * copy only answers this request.
 */
static struct cache_entry *refresh(struct conn *c, struct cache_fill *f,
				   const struct cache_entry *old, const struct http_head *h)
{
	char date[HTTP_DATE_SIZE];
	size_t cap = old->head_len + h->head_len + 2 * h->header_count + sizeof("Date: \r\n") +
		     sizeof(date) + 2;
	char *m = malloc(cap);
	struct http_head mh;
	struct cache_resp_policy p;
	struct cache_entry *e = NULL;

	http_date_now(date);
	size_t n =
		m ? cache_merge_head(old->head, old->head_len, h, c->http->sbuf, date, m, cap) : 0;
	struct http_limits lim = {.max_uri_size = HTTP_DEFAULT_URI_SIZE, .max_header_size = n + 1};
	if (n == 0 || http_parse_response(m, n, &lim, &mh) != HTTP_DONE)
		goto out;
	cache_response_policy(&mh, m, f->request_wall_ms, wall_ms(), f->authorized, &p);
	e = cache_entry_new(&f->key, old->vary, old->vary_len, n, old->body_len);
	if (!e || cache_entry_set_head(e, m, n - 2, NULL, 0) < 0 ||
	    cache_entry_append(&e, old->body, old->body_len, UINT64_MAX) < 0) {
		cache_entry_put(e);
		e = NULL;
		goto out;
	}
	e->status = old->status;
	e->head_only = old->head_only;
	e->origin = old->origin;
	e->auth_ok = p.auth_ok;
	e->stored_ms = c->w->now_ms;
	e->initial_age_ms = p.initial_age_ms;
	e->lifetime_ms = p.lifetime_s * 1000;
	cache_entry_end(&e, false);
	if (p.why_not || !same_vary(c, &mh, m, old))
		cache_invalidate(f->cache, &f->key);
	else
		cache_insert(f->cache, cache_entry_get(e));
out:
	free(m);
	return e;
}

/* Whether the 304 H names by a strong ETag another representation than the
 * stored OLD (RFC 9111 §4.3.4: then it updates nothing). */
static bool names_another(const struct http_head *h, const char *buf, const struct cache_entry *old)
{
	int i = http_header_find(h, buf, "etag", 0);
	if (i < 0)
		return false;
	const char *v = buf + h->headers[i].value.off;
	size_t n = h->headers[i].value.len;
	if (n >= 2 && v[0] == 'W' && v[1] == '/')
		return false;
	return n != old->etag_len || memcmp(v, old->head + old->etag_off, n) != 0;
}

/* The server says the stale entry is still good: answer with it, refreshed.
 * A 304 that names another representation refreshes nothing: this request
 * gets the stored answer as it is, and the entry goes, so that the next
 * one fetches it whole. */
static void revalidated(struct conn *c, struct cache_fill *f, const struct http_head *h)
{
	if (names_another(h, c->http->sbuf, f->stale)) {
		cache_invalidate(f->cache, &f->key);
		f->answer = f->stale;
		f->stale = NULL;
		return;
	}
	struct cache_entry *e = refresh(c, f, f->stale, h);

	if (e) {
		cache_entry_put(f->stale);
		f->answer = e;
	} else {
		f->answer = f->stale;
	}
	f->stale = NULL;
}

/* Whether the 304 H to a client's own conditional request identifies the
 * stored OLD for update (RFC 9111 §4.3.4): by its ETag, equal to OLD's, or
 * without one by a Last-Modified equal to OLD's. The client's validators
 * may name a copy of its own, which the 304 says nothing of ours about. */
static bool identifies(const struct http_head *h, const char *buf, const struct cache_entry *old)
{
	int i = http_header_find(h, buf, "etag", 0);
	const char *mine = old->head + old->etag_off;
	size_t mine_len = old->etag_len;

	if (i < 0) {
		i = http_header_find(h, buf, "last-modified", 0);
		mine = old->head + old->lm_off;
		mine_len = old->lm_len;
	}
	if (i < 0 || mine_len == 0)
		return false;
	return h->headers[i].value.len == mine_len &&
	       memcmp(buf + h->headers[i].value.off, mine, mine_len) == 0;
}

/* A new entry for the response H, storable by the policy P, with room for
 * its head and a body of BODY_CAP bytes. NULL when its Vary fields do not
 * fit (*VARY_FAILED set) or memory ran out. */
static struct cache_entry *new_entry(struct conn *c, const struct http_head *h,
				     const struct cache_resp_policy *p, uint64_t body_cap,
				     bool *vary_failed)
{
	struct http_conn *hc = c->http;
	struct cache_req rq;
	char vary[CACHE_VARY_MAX];

	forwarded_fields(hc, &rq);
	int vlen = cache_vary_build(h, hc->sbuf, &rq, vary, sizeof(vary));
	*vary_failed = vlen < 0;
	if (vlen < 0)
		return NULL;
	struct cache_entry *e =
		cache_entry_new(&hc->cache_fill->key, vary, (size_t)vlen, h->head_len, body_cap);
	if (!e)
		return NULL;
	e->status = (uint16_t)h->status;
	e->head_only = hc->method_id == HTTP_M_HEAD;
	if (hc->fwd && c->server)
		memcpy(&e->origin, &c->server->addr.ss,
		       c->server->addr.len < sizeof(e->origin) ? c->server->addr.len
							       : sizeof(e->origin));
	e->auth_ok = p->auth_ok;
	e->stored_ms = c->w->now_ms;
	e->initial_age_ms = p->initial_age_ms;
	e->lifetime_ms = p->lifetime_s * 1000;
	return e;
}

void cache_http_response(struct conn *c, const struct http_head *h)
{
	struct http_conn *hc = c->http;
	struct cache_fill *f = hc->cache_fill;
	struct cache_resp_policy p;

	if (!f)
		return;
	if (f->stale && h->status == 304 && f->client_validates) {
		if (identifies(h, hc->sbuf, f->stale))
			cache_entry_put(refresh(c, f, f->stale, h));
		cache_fill_drop(hc);
		return;
	}
	if (f->stale && h->status == 304) {
		revalidated(c, f, h);
		return;
	}
	cache_entry_put(f->stale); /* a full answer replaces it */
	f->stale = NULL;
	cache_response_policy(h, hc->sbuf, f->request_wall_ms, wall_ms(), f->authorized, &p);
	if (p.why_not || hc->resp_body == HTTP_BODY_TUNNEL) {
		/* A server error may pass: its marker only lets the waiters go. */
		not_storable(c, h->status < 500 ? CACHE_PASS_MS : CACHE_PASS_ERROR_MS);
		return;
	}
	if (h->te_other) {
		/* gzip and the like stay on the body, which a hit would serve
		 * without its Transfer-Encoding: not stored. */
		not_storable(c, CACHE_PASS_MS);
		return;
	}
	uint64_t body_cap = hc->resp_body == HTTP_BODY_LENGTH ? (uint64_t)h->content_length : 0;
	if (body_cap + h->head_len + sizeof(struct cache_entry) > cache_max_object(f->cache)) {
		not_storable(c, CACHE_PASS_MS);
		return;
	}
	bool vary_failed;
	struct cache_entry *e = new_entry(c, h, &p, body_cap, &vary_failed);
	if (vary_failed) {
		not_storable(c, CACHE_PASS_MS);
		return;
	}
	if (!e) {
		cache_fill_drop(hc);
		return;
	}
	f->e = e;
	if (!reserve(f)) {
		cache_fill_drop(hc);
		return;
	}
	f->expect = hc->resp_body == HTTP_BODY_LENGTH ? h->content_length
		    : hc->resp_body == HTTP_BODY_NONE ? 0
						      : -1;
}

void cache_http_response_head(struct conn *c, const char *head, size_t len, const char *more,
			      size_t more_len)
{
	struct http_conn *hc = c->http;

	if (cache_http_is_storing(hc) &&
	    cache_entry_set_head(hc->cache_fill->e, head, len, more, more_len) < 0)
		cache_fill_drop(hc);
}

bool cache_http_is_storing(const struct http_conn *hc)
{
	return hc->cache_fill && hc->cache_fill->e;
}

void cache_http_client_holds_up(struct conn *c, bool held)
{
	cache_fill_stuck(c->http, held, c->w->now_ms);
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
		not_storable(c, CACHE_PASS_MS);
	else if (err < 0 || !reserve(f))
		cache_fill_drop(hc);
}

void cache_http_response_queued(struct conn *c)
{
	struct cache_fill *f = c->http->cache_fill;

	if (!f || !f->answer)
		return;
	cache_http_queue_entry(c, f->answer, false);
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

void cache_fill_end(struct conn *c)
{
	struct http_conn *hc = c->http;
	struct cache_fill *f = hc->cache_fill;

	if (!f)
		return;
	if (f->e && body_is_complete(hc, f)) {
		cache_entry_end(&f->e, f->expect < 0);
		cache_insert(f->cache, f->e);
		f->e = NULL;
	}
	cache_fill_drop(hc);
}
