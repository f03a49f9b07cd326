/*
 * cache.h - the store of fulcrum's HTTP cache (SPEC §3 "Caching"): stored
 * responses found by key and Vary, kept within a byte budget, least
 * recently used first out.
 *
 * One struct cache serves one listener (cache = SIZE) and is shared by every
 * worker, so SIZE is the listener's whole budget and a response fetched by
 * one worker is a hit on all of them. It has one mutex, hash table and LRU
 * list, so the LRU order is exact over the whole budget and an object may
 * take all of it (SPEC: "within the size budget, least recently used go
 * first"), as nginx's and HAProxy's caches keep one lock too. The lock is
 * held only for a lookup or an insert (no I/O, no allocation but a rare
 * table growth), never while bytes are written. The store is written as
 * CACHE_SHARDS shards by key hash, each a share of the budget: should lock
 * contention on many cores ever outweigh exact LRU, a split is this
 * constant.
 *
 * Entries are immutable once inserted. A reader holds a reference
 * (cache_lookup .. cache_entry_put) for as long as it writes from the entry,
 * so an entry evicted meanwhile is freed by its last reader.
 *
 * Building an entry (cache_entry_new .. cache_insert) is private to the one
 * worker that receives the response; the pure helpers (keys, Vary) run on
 * any thread.
 */
#ifndef FULCRUM_CACHE_H
#define FULCRUM_CACHE_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/http/parser.h"
#include "core/util.h"

#define CACHE_SHARDS	   1 /* a power of two */
#define CACHE_FIELD_MAX	   1024 /* a request field value that a Vary names, joined */
#define CACHE_VARY_MAX	   2048 /* the Vary record of one entry */
#define CACHE_MAX_VARIANTS 32 /* entries kept per key (Vary); a new one beyond drops an old one */
/* Room for the Content-Length line a decoded body gets, and a Date line
 * fulcrum adds to a response that had none (RFC 9110 §6.6.1). */
#define CACHE_HEAD_RESERVE 80

struct cache;

/* What a stored response is found by: the scope (the route's pool and the
 * scheme, or forward mode), the host (lower-case) and the request target.
 * The strings are borrowed for the call. */
struct cache_key {
	uint64_t scope;
	const char *host;
	uint32_t host_len;
	const char *target;
	uint32_t target_len;
	uint64_t hash; /* set by cache_key_hash() */
};

void cache_key_hash(struct cache_key *k);

/* The request fields Vary compares: either a parsed head H over BUF, or
 * LINES, a run of "Name: value\r\n" field lines (the head as forwarded). */
struct cache_req {
	const struct http_head *h;
	const char *buf;
	const char *lines;
	size_t lines_len;
};

/*
 * Joins the values of every field NAME[0, NAME_LEN) of RQ with ", " into
 * OUT. Returns the length, -1 when there is no such field, -2 when the
 * joined value would not fit in CAP.
 */
int cache_req_field(const struct cache_req *rq, const char *name, size_t name_len, char *out,
		    size_t cap);

/*
 * The Vary record of a response: for each field name its Vary fields list
 * (lower-cased, once each), the value RQ has for it. Writes it to OUT and
 * returns its length (0 without Vary), or -1 when it cannot be kept (Vary: *,
 * a field fulcrum writes itself, a name or value too long, more than CAP
 * bytes).
 */
int cache_vary_build(const struct http_head *resp, const char *buf, const struct cache_req *rq,
		     char *out, size_t cap);

/* Whether RQ has the values recorded in VARY[0, LEN) (RFC 9111 §4.1). */
bool cache_vary_matches(const char *vary, size_t len, const struct cache_req *rq);

/*
 * A stored response. Ownership: while being built, its one worker's; once
 * inserted, the cache's, with readers holding references. Every field but
 * those marked (shard lock) and refs is immutable after cache_insert.
 */
struct cache_entry {
	struct cache_entry *next, **pprev; /* the shard's bucket chain (shard lock) */
	struct list lru; /* the shard's LRU list, least recent first (shard lock) */
	_Atomic uint32_t refs; /* the cache's while linked, and each reader's */
	bool linked; /* (shard lock) */
	bool auth_ok; /* may answer requests with Authorization (RFC 9111 §3.5) */
	bool pass; /* a marker: the key's last response was not storable (no head, no body) */
	bool head_only; /* the answer to a HEAD, without its body: it answers HEADs only */
	uint16_t status;
	/* Forward mode: the origin address it came from, for the deny rules a
	 * reload may add; sa_family 0 on http listeners. */
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} origin;
	uint64_t hash, scope;
	uint64_t charge; /* bytes counted against the budget */
	/* Taken out of the cache while clients still read it: its charge
	 * counts in that cache's held bytes until it is freed. */
	_Atomic uint64_t *held_in;
	uint64_t stored_ms; /* monotonic clock when stored */
	int64_t initial_age_ms, lifetime_ms;
	uint32_t host_len, target_len, vary_len;
	uint32_t head_len, head_cap;
	uint32_t etag_off, etag_len; /* the ETag value in head; len 0 when none */
	uint32_t lm_off, lm_len; /* the Last-Modified value in head; len 0 when none */
	uint64_t body_len, body_cap;
	char *host, *target, *vary;
	char *head; /* status line and fields, each line with its CRLF, no empty line */
	char *body;
	char data[];
};

/* Main thread or any worker: a cache of BUDGET bytes. NULL on ENOMEM. */
struct cache *cache_new(uint64_t budget);
/* Frees C and every entry; no reader may hold one. */
void cache_free(struct cache *c);
/* A reload changed the size: evicts down to it (0 empties the cache). */
void cache_set_budget(struct cache *c, uint64_t budget);
uint64_t cache_budget(const struct cache *c);
/* The largest entry C takes (one shard's budget), overhead included. */
uint64_t cache_max_object(const struct cache *c);
/* Bytes and entries stored now (for tests and metrics). */
void cache_usage(struct cache *c, uint64_t *bytes, uint64_t *entries);

/*
 * Entries being filled are outside the budget until inserted; these bound
 * them all together by the budget too, so many slow misses of large
 * responses cannot hold more memory than the cache may. True when N more
 * bytes may be taken; release what was taken when the fill ends.
 */
bool cache_fill_reserve(struct cache *c, uint64_t n);
void cache_fill_release(struct cache *c, uint64_t n);

/*
 * The newest entry for K whose Vary record RQ matches and that may answer
 * it (AUTHORIZED: the request has Authorization). Returns it with a
 * reference the caller drops with cache_entry_put(), or NULL. A fresh one
 * becomes the most recently used. When STALE is not NULL a stale match is
 * returned too, with *STALE set; else stale entries are misses. With no
 * match, a fresh pass marker for K is returned (e->pass), if there is one.
 */
struct cache_entry *cache_lookup(struct cache *c, const struct cache_key *k,
				 const struct cache_req *rq, bool authorized, uint64_t now_ms,
				 bool *stale);
void cache_entry_put(struct cache_entry *e);
/* Whether anything fresh is stored for K: an answer for any Vary variant,
 * or a pass marker. */
bool cache_has_key(struct cache *c, const struct cache_key *k, uint64_t now_ms);

/* Another reference on E, which the caller already holds one of. */
static inline struct cache_entry *cache_entry_get(struct cache_entry *e)
{
	atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
	return e;
}

/*
 * Collapsing misses: the first worker to miss K claims it (1) and releases
 * it once its response is stored or proved not storable; meanwhile others
 * get 0 and wait for the entry instead of asking the server too. -ENOMEM:
 * neither (go to the server, claim nothing). -EBUSY: neither either, the
 * fill having been held up by its own client (cache_pending_stuck) for
 * CACHE_PENDING_STUCK_MS at NOW_MS: a client that reads slowly, or not at
 * all, must not hold up the others.
 */
#define CACHE_PENDING_STUCK_MS 200
int cache_pending_claim(struct cache *c, const struct cache_key *k, uint64_t now_ms);
void cache_pending_release(struct cache *c, const struct cache_key *k);
/* The claim of K is held up by its client since SINCE_MS (0: no more). */
void cache_pending_stuck(struct cache *c, const struct cache_key *k, uint64_t since_ms);

/*
 * Notes for LIFETIME_MS that K's responses are not storable (like Varnish's
 * hit-for-miss objects), so that its misses go to the server at once
 * instead of waiting behind each other (cache_pending_claim). A storable
 * response for K replaces the marker.
 */
void cache_insert_pass(struct cache *c, const struct cache_key *k, uint64_t now_ms,
		       int64_t lifetime_ms);

/* Drops every entry stored for K, whatever its Vary (RFC 9111 §4.4). */
void cache_invalidate(struct cache *c, const struct cache_key *k);

/*
 * A new, unlinked entry for K with the Vary record VARY[0, VARY_LEN), room
 * for a head of HEAD_CAP bytes (CACHE_HEAD_RESERVE is added) and BODY_CAP
 * body bytes. The caller owns it (one reference). NULL on ENOMEM.
 */
struct cache_entry *cache_entry_new(const struct cache_key *k, const char *vary, size_t vary_len,
				    size_t head_cap, uint64_t body_cap);

/* Copies the head lines HEAD[0, LEN) (status line and fields with CRLFs, no
 * empty line), leaving out Age, Transfer-Encoding and X-Cache, then the
 * lines MORE[0, MORE_LEN) (at most 40 bytes), and notes where ETag and
 * Last-Modified are. 0 or -ENOSPC. */
int cache_entry_set_head(struct cache_entry *e, const char *head, size_t len, const char *more,
			 size_t more_len);

/* Appends body bytes, growing the entry up to MAX bytes in all (it may
 * move: *EP is updated). 0, -EFBIG past MAX, or -ENOMEM. */
int cache_entry_append(struct cache_entry **ep, const void *p, size_t n, uint64_t max);

/* The memory E takes now, all of it. */
uint64_t cache_entry_size(const struct cache_entry *e);

/* The body is complete. ADD_LENGTH: its length was not in the head (it
 * came chunked or until the close), so a Content-Length line is added. The
 * room grown for a body of unknown length is given back (*EP may move), so
 * the entry is charged what it holds. */
void cache_entry_end(struct cache_entry **ep, bool add_length);

/* Links E (the caller's reference passes to the cache), replacing entries
 * with the same key and Vary record and evicting the least recently used
 * until it fits. An entry over the budget is freed instead. */
void cache_insert(struct cache *c, struct cache_entry *e);

static inline int64_t cache_entry_age_ms(const struct cache_entry *e, uint64_t now_ms)
{
	return e->initial_age_ms + (int64_t)(now_ms - e->stored_ms);
}

static inline bool cache_entry_is_fresh(const struct cache_entry *e, uint64_t now_ms)
{
	return e->lifetime_ms > cache_entry_age_ms(e, now_ms);
}

#endif
