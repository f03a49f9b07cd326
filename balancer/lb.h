/*
 * lb.h - pools and servers as the workers see them, and the one interface
 * every balancing algorithm sits behind: lb_pick().
 *
 * Threads: a struct lb_pool and its servers are built by the main thread
 * (from a cfg) and shared read-mostly by every worker, the health thread and
 * the admin API. A server may outlive its pool: a reload hands an unchanged
 * server on to the next generation's pool (refs), and a changed one that
 * is the same backend keeps its predecessor alive for its count of active
 * connections (load_owner). The fields marked _Atomic
 * are the only ones that change after publication: a server's state
 * (written by the health thread and the admin API), its weight (the admin
 * API, a reload), its active and failure counts (every worker, relaxed),
 * the published hash table. Everything else is immutable once the pool is
 * published.
 *
 * Per-worker balancing state (smooth-WRR current weights, the random
 * generator) lives in struct lb_worker, owned by one worker, never shared.
 */
#ifndef FULCRUM_LB_H
#define FULCRUM_LB_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

enum lb_state { SRV_UP, SRV_DOWN, SRV_DRAIN, SRV_DISABLED };

const char *lb_state_name(enum lb_state s);

/* requests_total's status classes: [0] none or out of range, [1..5] 1xx..5xx. */
#define LB_STATUS_CLASSES 6

struct lb_server {
	char *name;
	struct cfg_addr addr;
	_Atomic int weight; /* the admin API may change it at run time */
	int maxconn; /* 0 = unlimited */
	int max_fails; /* its pool's: picks skip it from that many failures on */
	bool backup;
	enum cfg_proxy_proto proxy_protocol;
	uint32_t index; /* position in its pool when made (lb_server_same); tables
			   hold positions in the pool they are built for */
	bool cfg_disabled; /* the file said `disabled` (admin_carry_over) */
	uint64_t name_hash; /* lb_hash(name): seeds source (rendezvous) hashing */
	/* The generations whose pools list it: a reload hands an unchanged
	 * server on to the new generation (lb_server_same), so connections of
	 * the old one see its state and count in its gauges. */
	_Atomic int refs;

	_Atomic int state; /* enum lb_state */
	/* Deleted through the admin API: it drains and is never checked or
	 * handed on to a new generation again. Set once, by the main thread. */
	_Atomic bool removed;
	_Atomic bool health_down; /* the health thread's verdict, whatever the state */
	/* Disabled through the admin API (not by the file): only these have
	 * their connections closed (conn_sweep.c), also those that a reload
	 * left on an older object for the same backend. */
	_Atomic bool admin_disabled;
	/* Connections (tcp) or requests (http) in flight, all workers: points
	 * at own_active, or at the count of the server it took over from at a
	 * reload (load_owner, lb_server_share_load), so that connections of the
	 * old generation still count against maxconn and in leastconn. */
	_Atomic int *active;
	_Atomic int own_active;
	struct lb_server *load_owner; /* a ref, or NULL */
	_Atomic int fails; /* consecutive passive failures seen by traffic */
	_Atomic uint64_t connections_total;
	_Atomic uint64_t checks_ok; /* active health checks passed (health thread writes) */
	_Atomic uint64_t checks_fail; /* active health checks failed (health thread writes) */
	/* http: by status class, [0] = none/other, [1..5] = 1xx..5xx */
	_Atomic uint64_t responses[LB_STATUS_CLASSES];
	/* When it last came back up (CLOCK_MONOTONIC ms), from which slow_start
	 * ramps it; 0 = up since it was created, no slow start. The health
	 * thread writes it at a recovery, the main thread at an admin enable. */
	_Atomic uint64_t up_since_ms;
};

/* A consistent-hash lookup structure (maglev table or ketama ring) over the
 * servers that were usable when it was built. Immutable once published. */
struct lb_table;

struct lb_pool {
	char *name;
	const struct cfg_pool *cfg;
	enum cfg_balance balance;
	struct lb_server **servers;
	size_t n_servers;
	_Atomic(struct lb_table *) table; /* maglev/ring only; NULL otherwise */
	uint32_t stats_slot; /* per-worker request counters (core/stats.h) */
	_Atomic int refs; /* generations listing it (a derived one shares its parent's) */
};

/* One worker's private balancing state for one pool. */
struct lb_worker {
	const struct lb_pool *pool; /* the pool cw belongs to; reset when it changes */
	int64_t *cw; /* smooth-WRR current weight per server */
	size_t n;
	uint64_t rng; /* xorshift state, never 0 */
	uint32_t tie_turn; /* leastconn: whose turn it is among tied servers */
};

/*
 * Picks a server of POOL for a new connection or request.
 *   key:    the request's hash (source, maglev, ring); ignored by the others.
 *   w:      the calling worker's state for this pool (roundrobin,
 *           leastconn, random, p2c); may be NULL for source/maglev/ring.
 *   tried:  servers already tried for this request (retries); skipped.
 * Only usable servers are chosen: state SRV_UP and below maxconn. Backup
 * servers are chosen only while no normal server is usable. Returns NULL when
 * none is usable. Does not change server->active; the caller takes the
 * connection with lb_server_get() and gives it back with lb_server_put().
 */
struct lb_server *lb_pick(const struct lb_pool *pool, struct lb_worker *w, uint64_t key,
			  struct lb_server *const *tried, size_t n_tried);

/* After lb_pick found nothing for a first try: whether a server of POOL
 * would have taken it but for its maxconn (the pool is full, not down),
 * which the log tells apart from a pool with no server up. */
bool lb_pool_full(const struct lb_pool *pool);

/* The servers one connection or request has tried (retries). The last
 * LB_TRIED_KEEP of them are remembered for lb_pick to skip; n counts every
 * try, so a `retries` longer than that may go back to the oldest. */
#define LB_TRIED_KEEP 8
struct lb_tried {
	struct lb_server *s[LB_TRIED_KEEP];
	uint8_t n; /* retries is at most 100 */
};

static inline void lb_tried_add(struct lb_tried *t, struct lb_server *s)
{
	t->s[t->n % LB_TRIED_KEEP] = s;
	t->n++;
}

/* How many of t->s hold servers. */
static inline size_t lb_tried_len(const struct lb_tried *t)
{
	return t->n < LB_TRIED_KEEP ? t->n : LB_TRIED_KEEP;
}

/* The last try does not count: it was called off before it could fail.
 * (Its server may stay among those skipped; it is unusable anyway.) */
static inline void lb_tried_forget_last(struct lb_tried *t)
{
	if (t->n)
		t->n--;
}

static inline struct lb_server *lb_tried_last(const struct lb_tried *t)
{
	return t->n ? t->s[(t->n - 1) % LB_TRIED_KEEP] : NULL;
}

/* Whether POOL has a usable server that is not among TRIED: a retry has
 * somewhere to go. */
bool lb_has_untried(const struct lb_pool *pool, struct lb_server *const *tried, size_t n_tried);

/* Whether traffic has failed on S max_fails times in a row, which the health
 * thread (it samples every 100 ms) has not yet judged: until it marks S down,
 * S is treated as down, so back-to-back traffic cannot get past max_fails. */
static inline bool lb_server_is_failing(const struct lb_server *s)
{
	return s->max_fails > 0 &&
	       atomic_load_explicit(&s->fails, memory_order_relaxed) >= s->max_fails;
}

static inline bool lb_server_is_usable(const struct lb_server *s)
{
	if (atomic_load_explicit(&s->state, memory_order_relaxed) != SRV_UP ||
	    lb_server_is_failing(s))
		return false;
	return s->maxconn == 0 ||
	       atomic_load_explicit(s->active, memory_order_relaxed) < s->maxconn;
}

/* Effective weights are in thousandths of a configured weight, so that
 * slow_start can ramp a weight-1 server as smoothly as a weight-100 one.
 * Every weighted balance compares weights only with each other. */
#define LB_WEIGHT_SCALE 1000

/*
 * S's weight at NOW_MS (CLOCK_MONOTONIC ms), in LB_WEIGHT_SCALE units, in a
 * pool whose slow_start is SLOW_START_MS: its full weight, or, for
 * SLOW_START_MS after it came back up, that weight times the elapsed share of
 * SLOW_START_MS (SPEC §2 slow_start, as HAProxy's slowstart), never below 1
 * unit. A weight of 0 stays 0; slow_start 0 means no ramp.
 */
static inline int lb_server_effective_weight(const struct lb_server *s, uint64_t slow_start_ms,
					     uint64_t now_ms)
{
	int w = atomic_load_explicit(&s->weight, memory_order_relaxed);
	uint64_t up = atomic_load_explicit(&s->up_since_ms, memory_order_relaxed);
	uint64_t elapsed, ramped;

	if (w <= 0)
		return w;
	if (w > INT_MAX / LB_WEIGHT_SCALE) /* the API and the file allow 256 */
		w = INT_MAX / LB_WEIGHT_SCALE;
	w *= LB_WEIGHT_SCALE;
	if (slow_start_ms == 0 || up == 0)
		return w;
	/* The clock may have been read just before the health thread's. */
	elapsed = now_ms > up ? now_ms - up : 0;
	if (elapsed >= slow_start_ms)
		return w;
	ramped = (uint64_t)w * elapsed / slow_start_ms;
	return ramped > 1 ? (int)ramped : 1;
}

/* A failure seen by traffic (SPEC §4 passive health), reported to the
 * health thread through the count. From max_fails in a row on, picks skip
 * the server (lb_server_is_usable) until the health thread, which alone
 * decides its state, has marked it down. Work the server was given at
 * TAKEN_MS, before it last came back up (a request that hung while it was
 * down), is not held against it: back after fail_timeout, one failure
 * would take it down again. */
static inline void lb_server_failed(struct lb_server *s, uint64_t taken_ms)
{
	if (taken_ms < atomic_load_explicit(&s->up_since_ms, memory_order_relaxed))
		return;
	atomic_fetch_add_explicit(&s->fails, 1, memory_order_relaxed);
}

/* A success ends the run of failures. It reads before it writes, so servers
 * that keep succeeding cost no shared cache-line writes. */
static inline void lb_server_passed(struct lb_server *s)
{
	if (atomic_load_explicit(&s->fails, memory_order_relaxed) != 0)
		atomic_store_explicit(&s->fails, 0, memory_order_relaxed);
}

static inline void lb_server_get(struct lb_server *s)
{
	atomic_fetch_add_explicit(s->active, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->connections_total, 1, memory_order_relaxed);
}

/* Takes one of S's places, as lb_server_get, unless S has a maxconn and
 * its places are all taken: a pick saw one free, but a pick on another
 * worker may have taken the last since. Returns whether it did. Callers
 * pick again (at most LB_TAKE_TRIES times) when it did not. */
static inline bool lb_server_take(struct lb_server *s)
{
	if (s->maxconn > 0) {
		int n = atomic_load_explicit(s->active, memory_order_relaxed);
		do {
			if (n >= s->maxconn)
				return false;
		} while (!atomic_compare_exchange_weak_explicit(
			s->active, &n, n + 1, memory_order_relaxed, memory_order_relaxed));
		atomic_fetch_add_explicit(&s->connections_total, 1, memory_order_relaxed);
		return true;
	}
	lb_server_get(s);
	return true;
}

#define LB_TAKE_TRIES 8

static inline void lb_server_put(struct lb_server *s)
{
	atomic_fetch_sub_explicit(s->active, 1, memory_order_relaxed);
}

/* Builds the runtime pool for CFG (servers start SRV_UP, or SRV_DISABLED).
 * Returns NULL on allocation failure. */
struct lb_pool *lb_pool_new(const struct cfg_pool *cfg);
void lb_pool_free(struct lb_pool *pool);

/* References on a pool (1 from lb_pool_new); the last put frees it, with
 * the references it holds on its servers. */
static inline struct lb_pool *lb_pool_get(struct lb_pool *pool)
{
	atomic_fetch_add_explicit(&pool->refs, 1, memory_order_relaxed);
	return pool;
}

static inline void lb_pool_put(struct lb_pool *pool)
{
	if (pool && atomic_fetch_sub_explicit(&pool->refs, 1, memory_order_acq_rel) == 1)
		lb_pool_free(pool);
}

/*
 * Maglev and ring pools: builds a new lookup table from the servers that are
 * SRV_UP now (the normal ones, or the backups when no normal server is up)
 * and publishes it with one release store. On success *old receives the
 * table it replaced (or NULL): workers may still be reading it, so the caller
 * frees it with lb_table_free() only once every worker has passed a
 * quiescent point. Other pools: nothing to do, *old = NULL. Returns 0 or
 * -ENOMEM (the published table is then unchanged). Calls for one pool must
 * not overlap (a slower build could publish an older view last), so one
 * thread rebuilds each pool: the health thread once the pool is published
 * (on a change of the up-set or, asked by the admin API, of a weight), the
 * main thread before that, while no worker can see the pool yet.
 */
int lb_pool_rebuild(struct lb_pool *pool, struct lb_table **old);
/* Whether POOL's published table has the members and weights the server
 * states give now (always, for pools without a table): false when a
 * rebuild is due, or when that cannot be told (no memory). */
bool lb_table_is_current(const struct lb_pool *pool);
void lb_table_free(struct lb_table *t);

/* One runtime server from its configuration, at position INDEX of its pool
 * (state SRV_UP, or SRV_DISABLED). NULL on allocation failure. */
struct lb_server *lb_server_new(const struct cfg_server *cs, uint32_t index);
/* Takes a reference on S for another generation's pool. */
struct lb_server *lb_server_ref(struct lb_server *s);
/* Drops a reference; the last one frees S. NULL is fine. */
void lb_server_unref(struct lb_server *s);
/* Whether NEW (just built from the file) describes OLD exactly but for its
 * weight: same name, address, position and options. OLD may then stand for
 * NEW in the next generation. */
bool lb_server_same(const struct lb_server *new_, const struct lb_server *old);
/* NEW (not published yet) is OLD with other options or another position in
 * the file: the same backend. NEW counts its load where OLD does. */
void lb_server_share_load(struct lb_server *new_, struct lb_server *old);

/* W starts empty; SEED (any value, e.g. the worker id mixed with the time)
 * seeds its random generator. */
void lb_worker_init(struct lb_worker *w, uint64_t seed);
void lb_worker_deinit(struct lb_worker *w);

/* 64-bit hash of a byte string (client address, header value, ...). Stable
 * across processes and hosts: two fulcrum instances agree on it. */
uint64_t lb_hash(const void *data, size_t len);

/* 64-bit hash for this process's own tables keyed by what clients send
 * (cache keys, host names, credentials). Its seed comes from getrandom(2) at
 * lb_hash_local_seed(), called once at start, so keys that share a bucket
 * cannot be worked out offline to grow one chain. Differs between processes:
 * never use it for a server pick. */
uint64_t lb_hash_local(const void *data, size_t len);
void lb_hash_local_seed(void);

#endif
