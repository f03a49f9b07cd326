/*
 * cache.c - the cache store (see cache.h): shards, entries, LRU eviction.
 * Any worker thread; the main thread only creates and frees a cache.
 *
 * Invariants, per shard and under its lock: every linked entry is on one
 * bucket chain and on the LRU list, and its charge is in bytes; bytes stays
 * within budget after every insert (a reload that shrinks the budget is
 * caught up by the next insert). An entry's memory is one block: the
 * struct, then host, target, Vary record, head (head_cap) and body
 * (body_cap), so a hit touches one allocation.
 */
#include "core/cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define INITIAL_BUCKETS 256
#define INITIAL_BODY	16384 /* first body capacity when the length is unknown */

/* A key some worker is fetching (cache_pending_claim). Owned by its shard. */
struct cache_pending {
	struct cache_pending *next;
	uint64_t hash, scope;
	uint64_t stuck_since_ms; /* cache_pending_stuck; 0: the fill moves */
	uint32_t host_len, target_len;
	char key[]; /* host, then target */
};

/* One shard. Owned by its cache; every field under lock. */
struct cache_shard {
	pthread_mutex_t lock;
	struct cache_pending *pending; /* a short list: the misses in flight */
	struct cache_entry **buckets;
	size_t n_buckets; /* a power of two */
	size_t n_entries;
	struct list lru;
	uint64_t bytes, budget;
	_Atomic uint64_t *held; /* its cache's */
} __attribute__((aligned(CACHE_LINE)));

/* Shared by the workers; lives from the first request on its listener to
 * the end of the process. n_shards is immutable. */
struct cache {
	unsigned n_shards;
	_Atomic uint64_t budget;
	_Atomic uint64_t filling; /* bytes of entries being filled (cache_fill_reserve) */
	/* Bytes of entries evicted or replaced while clients still read them
	 * (a slow reader keeps its entry): they count against the budget too,
	 * or slow readers could hold any number of evicted answers. */
	_Atomic uint64_t held;
	struct cache_shard shards[];
};

static struct cache_shard *shard_of(struct cache *c, uint64_t hash)
{
	return &c->shards[(hash >> 48) & (c->n_shards - 1)];
}

struct cache *cache_new(uint64_t budget)
{
	unsigned n = CACHE_SHARDS;

	struct cache *c =
		aligned_alloc(CACHE_LINE, (sizeof(*c) + n * sizeof(c->shards[0]) + CACHE_LINE - 1) /
						  CACHE_LINE * CACHE_LINE);
	if (!c)
		return NULL;
	memset(c, 0, sizeof(*c) + n * sizeof(c->shards[0]));
	c->n_shards = n;
	atomic_init(&c->budget, budget);
	for (unsigned i = 0; i < n; i++) {
		struct cache_shard *s = &c->shards[i];
		s->buckets = calloc(INITIAL_BUCKETS, sizeof(*s->buckets));
		if (!s->buckets) {
			c->n_shards = i;
			cache_free(c);
			return NULL;
		}
		pthread_mutex_init(&s->lock, NULL);
		s->n_buckets = INITIAL_BUCKETS;
		s->budget = budget / n;
		s->held = &c->held;
		list_init(&s->lru);
	}
	return c;
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->n_shards; i++) {
		struct cache_shard *s = &c->shards[i];
		while (!list_is_empty(&s->lru)) {
			struct cache_entry *e = container_of(s->lru.next, struct cache_entry, lru);
			list_del(&e->lru);
			free(e);
		}
		while (s->pending) {
			struct cache_pending *p = s->pending;
			s->pending = p->next;
			free(p);
		}
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
	}
	free(c);
}

static void unlink_entry(struct cache_shard *s, struct cache_entry *e);

void cache_set_budget(struct cache *c, uint64_t budget)
{
	if (atomic_load_explicit(&c->budget, memory_order_relaxed) == budget)
		return;
	atomic_store_explicit(&c->budget, budget, memory_order_release);
	for (unsigned i = 0; i < c->n_shards; i++) {
		struct cache_shard *s = &c->shards[i];
		pthread_mutex_lock(&s->lock);
		s->budget = budget / c->n_shards;
		while (s->bytes > s->budget && !list_is_empty(&s->lru))
			unlink_entry(s, container_of(s->lru.next, struct cache_entry, lru));
		pthread_mutex_unlock(&s->lock);
	}
}

uint64_t cache_budget(const struct cache *c)
{
	return atomic_load_explicit(&c->budget, memory_order_acquire);
}

uint64_t cache_max_object(const struct cache *c)
{
	return cache_budget(c) / c->n_shards;
}

void cache_usage(struct cache *c, uint64_t *bytes, uint64_t *entries)
{
	*bytes = *entries = 0;
	for (unsigned i = 0; i < c->n_shards; i++) {
		pthread_mutex_lock(&c->shards[i].lock);
		*bytes += c->shards[i].bytes;
		*entries += c->shards[i].n_entries;
		pthread_mutex_unlock(&c->shards[i].lock);
	}
}

bool cache_fill_reserve(struct cache *c, uint64_t n)
{
	uint64_t cur = atomic_load_explicit(&c->filling, memory_order_relaxed);

	do {
		if (cur + n > cache_budget(c))
			return false;
	} while (!atomic_compare_exchange_weak_explicit(
		&c->filling, &cur, cur + n, memory_order_relaxed, memory_order_relaxed));
	return true;
}

void cache_fill_release(struct cache *c, uint64_t n)
{
	atomic_fetch_sub_explicit(&c->filling, n, memory_order_relaxed);
}

/* ---- entries ---------------------------------------------------------- */

void cache_entry_put(struct cache_entry *e)
{
	if (!e || atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (e->held_in)
		atomic_fetch_sub_explicit(e->held_in, e->charge, memory_order_relaxed);
	free(e);
}

/* Points host .. body into the block (again, after it moved). */
static void place(struct cache_entry *e)
{
	e->host = e->data;
	e->target = e->host + e->host_len;
	e->vary = e->target + e->target_len;
	e->head = e->vary + e->vary_len;
	e->body = e->head + e->head_cap;
}

static size_t block_size(const struct cache_entry *e)
{
	return sizeof(*e) + e->host_len + e->target_len + e->vary_len + e->head_cap + e->body_cap;
}

uint64_t cache_entry_size(const struct cache_entry *e)
{
	return block_size(e);
}

struct cache_entry *cache_entry_new(const struct cache_key *k, const char *vary, size_t vary_len,
				    size_t head_cap, uint64_t body_cap)
{
	struct cache_entry tmp = {
		.host_len = k->host_len,
		.target_len = k->target_len,
		.vary_len = (uint32_t)vary_len,
		.head_cap = (uint32_t)(head_cap + CACHE_HEAD_RESERVE),
		.body_cap = body_cap,
	};
	struct cache_entry *e = malloc(block_size(&tmp));

	if (!e)
		return NULL;
	*e = tmp;
	atomic_init(&e->refs, 1);
	e->hash = k->hash;
	e->scope = k->scope;
	e->pprev = NULL;
	list_init(&e->lru);
	place(e);
	memcpy(e->host, k->host, k->host_len);
	memcpy(e->target, k->target, k->target_len);
	if (vary_len)
		memcpy(e->vary, vary, vary_len);
	return e;
}

/* Whether the head line LINE[0, LEN) is one fulcrum writes itself on the
 * way out (Age, X-Cache) or one that no longer applies to a stored, decoded
 * body (Transfer-Encoding). */
static bool line_is_dropped(const char *line, size_t len)
{
	return http_line_is(line, len, "age") || http_line_is(line, len, "x-cache") ||
	       http_line_is(line, len, "transfer-encoding");
}

/* Notes where the value of the field line at E->head + AT (LEN bytes, CRLF
 * included) is, trimmed, in *OFF and *VLEN. */
static void note_value(const struct cache_entry *e, size_t at, size_t len, uint32_t *off,
		       uint32_t *vlen)
{
	const char *p = e->head + at, *colon = memchr(p, ':', len);
	size_t s = (size_t)(colon + 1 - p), end = len;

	while (end > s && (p[end - 1] == '\r' || p[end - 1] == '\n' || http_is_ows(p[end - 1])))
		end--;
	while (s < end && http_is_ows(p[s]))
		s++;
	*off = (uint32_t)(at + s);
	*vlen = (uint32_t)(end - s);
}

int cache_entry_set_head(struct cache_entry *e, const char *head, size_t len, const char *more,
			 size_t more_len)
{
	const char *p = head, *end = head + len;
	size_t out = 0;

	if (len + CACHE_HEAD_RESERVE > e->head_cap || more_len > CACHE_HEAD_RESERVE / 2)
		return -ENOSPC;
	while (p < end) {
		size_t n = http_line_len(p, end);
		/* The first line is the status line and always stays. */
		if (p == head || !line_is_dropped(p, n)) {
			memcpy(e->head + out, p, n);
			if (p != head && http_line_is(p, n, "etag"))
				note_value(e, out, n, &e->etag_off, &e->etag_len);
			else if (p != head && http_line_is(p, n, "last-modified"))
				note_value(e, out, n, &e->lm_off, &e->lm_len);
			out += n;
		}
		p += n;
	}
	if (more_len)
		memcpy(e->head + out, more, more_len);
	e->head_len = (uint32_t)(out + more_len);
	return 0;
}

int cache_entry_append(struct cache_entry **ep, const void *p, size_t n, uint64_t max)
{
	struct cache_entry *e = *ep;

	if (e->body_len + n > e->body_cap) {
		uint64_t fixed = block_size(e) - e->body_cap;
		uint64_t cap = e->body_cap ? e->body_cap : INITIAL_BODY;
		while (cap < e->body_len + n)
			cap *= 2;
		if (fixed + e->body_len + n > max)
			return -EFBIG;
		if (fixed + cap > max)
			cap = max - fixed;
		struct cache_entry *ne = realloc(e, fixed + cap);
		if (!ne)
			return -ENOMEM;
		ne->body_cap = cap;
		place(ne);
		list_init(&ne->lru);
		*ep = e = ne;
	}
	memcpy(e->body + e->body_len, p, n);
	e->body_len += n;
	return 0;
}

void cache_entry_end(struct cache_entry **ep, bool add_length)
{
	struct cache_entry *e = *ep;

	if (e->body_cap > e->body_len) {
		struct cache_entry *ne = realloc(e, block_size(e) - (e->body_cap - e->body_len));
		if (ne) { /* else it keeps its room, and is charged for it */
			ne->body_cap = ne->body_len;
			place(ne);
			list_init(&ne->lru);
			*ep = e = ne;
		}
	}
	if (add_length) {
		int n = snprintf(e->head + e->head_len, e->head_cap - e->head_len,
				 "Content-Length: %llu\r\n", (unsigned long long)e->body_len);
		if (n > 0 && (uint32_t)n < e->head_cap - e->head_len)
			e->head_len += (uint32_t)n;
	}
	e->charge = block_size(e);
}

/* ---- the table -------------------------------------------------------- */

static bool key_equals(const struct cache_entry *e, const struct cache_key *k)
{
	return e->hash == k->hash && e->scope == k->scope && e->host_len == k->host_len &&
	       e->target_len == k->target_len && memcmp(e->target, k->target, k->target_len) == 0 &&
	       memcmp(e->host, k->host, k->host_len) == 0;
}

static void chain_add(struct cache_entry **head, struct cache_entry *e)
{
	e->next = *head;
	if (e->next)
		e->next->pprev = &e->next;
	e->pprev = head;
	*head = e;
}

static void chain_del(struct cache_entry *e)
{
	*e->pprev = e->next;
	if (e->next)
		e->next->pprev = e->pprev;
	e->next = NULL;
	e->pprev = NULL;
}

/* Takes E out of S and drops the cache's reference. Lock held. */
static void unlink_entry(struct cache_shard *s, struct cache_entry *e)
{
	chain_del(e);
	list_del(&e->lru);
	s->bytes -= e->charge;
	s->n_entries--;
	e->linked = false;
	/* Readers take their references under the lock, so none comes now;
	 * the last one out gives the charge back (cache_entry_put). */
	if (atomic_load_explicit(&e->refs, memory_order_acquire) > 1) {
		e->held_in = s->held;
		atomic_fetch_add_explicit(s->held, e->charge, memory_order_relaxed);
	}
	cache_entry_put(e);
}

/* Doubles the bucket array when chains grow long; on ENOMEM they just stay
 * longer. Lock held. */
static void maybe_grow(struct cache_shard *s)
{
	if (s->n_entries <= 2 * s->n_buckets)
		return;
	size_t n = s->n_buckets * 2;
	struct cache_entry **b = calloc(n, sizeof(*b));
	if (!b)
		return;
	for (size_t i = 0; i < s->n_buckets; i++) {
		while (s->buckets[i]) {
			struct cache_entry *e = s->buckets[i];
			chain_del(e);
			chain_add(&b[e->hash & (n - 1)], e);
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->n_buckets = n;
}

struct cache_entry *cache_lookup(struct cache *c, const struct cache_key *k,
				 const struct cache_req *rq, bool authorized, uint64_t now_ms,
				 bool *stale)
{
	struct cache_shard *s = shard_of(c, k->hash);
	struct cache_entry *found = NULL, *pass = NULL;

	pthread_mutex_lock(&s->lock);
	for (struct cache_entry *e = s->buckets[k->hash & (s->n_buckets - 1)]; e; e = e->next) {
		if (!key_equals(e, k) || (authorized && !e->auth_ok))
			continue;
		if (e->pass) {
			/* A response stored for another variant still answers. */
			if (!pass && cache_entry_is_fresh(e, now_ms))
				pass = e;
			continue;
		}
		if (e->vary_len && !cache_vary_matches(e->vary, e->vary_len, rq))
			continue;
		if (e->head_only && (!rq || !rq->h || rq->h->method_id != HTTP_M_HEAD))
			continue;
		found = e;
		break;
	}
	if (found) {
		bool fresh = cache_entry_is_fresh(found, now_ms);
		if (fresh || stale) {
			atomic_fetch_add_explicit(&found->refs, 1, memory_order_relaxed);
			if (fresh && found->lru.next != &s->lru) {
				list_del(&found->lru);
				list_add_tail(&s->lru, &found->lru);
			}
			if (stale)
				*stale = !fresh;
		} else {
			found = NULL;
		}
	}
	if (!found && pass) {
		found = cache_entry_get(pass);
		if (stale)
			*stale = false;
	}
	pthread_mutex_unlock(&s->lock);
	return found;
}

bool cache_has_key(struct cache *c, const struct cache_key *k, uint64_t now_ms)
{
	struct cache_shard *s = shard_of(c, k->hash);
	bool has = false;

	pthread_mutex_lock(&s->lock);
	for (struct cache_entry *e = s->buckets[k->hash & (s->n_buckets - 1)]; e && !has;
	     e = e->next)
		has = key_equals(e, k) && cache_entry_is_fresh(e, now_ms);
	pthread_mutex_unlock(&s->lock);
	return has;
}

void cache_invalidate(struct cache *c, const struct cache_key *k)
{
	struct cache_shard *s = shard_of(c, k->hash);

	pthread_mutex_lock(&s->lock);
	struct cache_entry *e = s->buckets[k->hash & (s->n_buckets - 1)];
	while (e) {
		struct cache_entry *next = e->next;
		if (key_equals(e, k))
			unlink_entry(s, e);
		e = next;
	}
	pthread_mutex_unlock(&s->lock);
}

/* A and B carry the same ETag and Last-Modified (or neither). */
static bool same_validators(const struct cache_entry *a, const struct cache_entry *b)
{
	return a->etag_len == b->etag_len && a->lm_len == b->lm_len &&
	       memcmp(a->head + a->etag_off, b->head + b->etag_off, a->etag_len) == 0 &&
	       memcmp(a->head + a->lm_off, b->head + b->lm_off, a->lm_len) == 0;
}

static bool same_variant(const struct cache_entry *a, const struct cache_entry *b)
{
	return a->vary_len == b->vary_len && memcmp(a->vary, b->vary, a->vary_len) == 0;
}

/* Whether E, the answer to a HEAD that went to the server (the client asked
 * for no-cache, or the entry was stale), would replace a stored GET with the
 * same validators, whose body it lacks: then it is dropped (RFC 9111 §4.3.5
 * would merge its fields). New validators mean the stored body is out of
 * date: then the GET goes (drop_replaced). Under the shard's lock. */
static bool head_adds_nothing(const struct cache_entry *chain, const struct cache_entry *e,
			      const struct cache_key *k)
{
	if (!e->head_only)
		return false;
	for (const struct cache_entry *o = chain; o; o = o->next)
		if (key_equals(o, k) && !o->pass && !o->head_only && same_variant(o, e) &&
		    same_validators(o, e))
			return true;
	return false;
}

/* Unlinks the entries of S's chain HEAD that E replaces: the same variant,
 * or a pass marker when E is none; and the oldest variant when the key has
 * CACHE_MAX_VARIANTS. Under the shard's lock. */
static void drop_replaced(struct cache_shard *s, struct cache_entry *head,
			  const struct cache_entry *e, const struct cache_key *k)
{
	struct cache_entry *oldest = NULL;
	unsigned variants = 0;

	for (struct cache_entry *o = head, *next; o; o = next) {
		next = o->next;
		if (!key_equals(o, k))
			continue;
		if ((o->pass && !e->pass) || same_variant(o, e)) {
			unlink_entry(s, o);
		} else if (!o->pass) {
			variants++;
			oldest = o; /* new entries go to the chain's head, so near enough */
		}
	}
	/* Each lookup of the key walks its variants under the lock: a client
	 * sending a new value of a Vary field with every request must not make
	 * that walk as long as it likes. */
	if (variants >= CACHE_MAX_VARIANTS && oldest)
		unlink_entry(s, oldest);
}

void cache_insert(struct cache *c, struct cache_entry *e)
{
	struct cache_shard *s = shard_of(c, e->hash);
	struct cache_key k = {
		.scope = e->scope,
		.host = e->host,
		.host_len = e->host_len,
		.target = e->target,
		.target_len = e->target_len,
		.hash = e->hash,
	};

	if (!e->charge)
		e->charge = block_size(e);
	pthread_mutex_lock(&s->lock);
	/* With a budget's worth held by readers of evicted entries, nothing
	 * new goes in (it would evict more for them to hold): the answer is
	 * passed on without being stored. */
	if (e->charge > s->budget ||
	    atomic_load_explicit(&c->held, memory_order_relaxed) + e->charge > cache_budget(c)) {
		pthread_mutex_unlock(&s->lock);
		cache_entry_put(e);
		return;
	}
	struct cache_entry **head = &s->buckets[e->hash & (s->n_buckets - 1)];
	if (head_adds_nothing(*head, e, &k)) {
		pthread_mutex_unlock(&s->lock);
		cache_entry_put(e);
		return;
	}
	drop_replaced(s, *head, e, &k);
	while (s->bytes + e->charge > s->budget && !list_is_empty(&s->lru))
		unlink_entry(s, container_of(s->lru.next, struct cache_entry, lru));
	chain_add(head, e);
	list_add_tail(&s->lru, &e->lru);
	s->bytes += e->charge;
	s->n_entries++;
	e->linked = true;
	maybe_grow(s);
	pthread_mutex_unlock(&s->lock);
}

void cache_insert_pass(struct cache *c, const struct cache_key *k, uint64_t now_ms,
		       int64_t lifetime_ms)
{
	struct cache_entry *e = cache_entry_new(k, NULL, 0, 0, 0);

	if (!e)
		return;
	e->pass = true;
	e->auth_ok = true;
	e->stored_ms = now_ms;
	e->lifetime_ms = lifetime_ms;
	cache_entry_end(&e, false);
	cache_insert(c, e);
}

/* ---- misses in flight ------------------------------------------------- */

static bool pending_is(const struct cache_pending *p, const struct cache_key *k)
{
	return p->hash == k->hash && p->scope == k->scope && p->host_len == k->host_len &&
	       p->target_len == k->target_len && memcmp(p->key, k->host, k->host_len) == 0 &&
	       memcmp(p->key + k->host_len, k->target, k->target_len) == 0;
}

static struct cache_pending *pending_find(struct cache_shard *s, const struct cache_key *k)
{
	for (struct cache_pending *p = s->pending; p; p = p->next)
		if (pending_is(p, k))
			return p;
	return NULL;
}

int cache_pending_claim(struct cache *c, const struct cache_key *k, uint64_t now_ms)
{
	struct cache_shard *s = shard_of(c, k->hash);
	int r = 1;

	pthread_mutex_lock(&s->lock);
	struct cache_pending *other = pending_find(s, k); /* another request's claim */
	if (other)
		r = other->stuck_since_ms &&
				    now_ms - other->stuck_since_ms >= CACHE_PENDING_STUCK_MS
			    ? -EBUSY
			    : 0;
	if (r == 1) {
		struct cache_pending *p = malloc(sizeof(*p) + k->host_len + k->target_len);
		if (p) {
			p->hash = k->hash;
			p->scope = k->scope;
			p->stuck_since_ms = 0;
			p->host_len = k->host_len;
			p->target_len = k->target_len;
			memcpy(p->key, k->host, k->host_len);
			memcpy(p->key + k->host_len, k->target, k->target_len);
			p->next = s->pending;
			s->pending = p;
		} else {
			r = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

void cache_pending_stuck(struct cache *c, const struct cache_key *k, uint64_t since_ms)
{
	struct cache_shard *s = shard_of(c, k->hash);

	pthread_mutex_lock(&s->lock);
	struct cache_pending *p = pending_find(s, k);
	if (p)
		p->stuck_since_ms = since_ms;
	pthread_mutex_unlock(&s->lock);
}

void cache_pending_release(struct cache *c, const struct cache_key *k)
{
	struct cache_shard *s = shard_of(c, k->hash);

	pthread_mutex_lock(&s->lock);
	for (struct cache_pending **pp = &s->pending; *pp; pp = &(*pp)->next) {
		if (pending_is(*pp, k)) {
			struct cache_pending *p = *pp;
			*pp = p->next;
			free(p);
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
}
