/*
 * algo.h - what the balancing algorithms share inside balancer/: the
 * candidate set of one pick, the bounded-load test, the random generator and
 * each algorithm's entry point (lb_pick dispatches to them).
 *
 * Everything here runs on the worker that calls lb_pick, reads the shared
 * pool with relaxed atomic loads, and never blocks or allocates (except the
 * round-robin state of a worker, on its first pick for a pool).
 */
#ifndef FULCRUM_ALGO_H
#define FULCRUM_ALGO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "balancer/lb.h"

/*
 * The servers one pick may choose. A server is a candidate when it is
 * usable (SRV_UP, below maxconn), was not tried yet for this request, belongs
 * to the tier in use (normal servers; backups only when no normal server is a
 * candidate) and has a weight above 0 (unless every one of the tier has 0,
 * then each counts as 1). roundrobin, leastconn, random and p2c ramp the
 * weight of a recovered server up over the pool's slow_start; the hashing
 * balances do not, so that keys do not wander while a server ramps.
 * Filled by lb_cands_init; the state of a server may change right after, so
 * users tolerate finding fewer candidates than n.
 */
struct lb_cands {
	struct lb_server *const *tried;
	size_t n_tried;
	bool backup; /* the tier in use */
	size_t n; /* candidates */
	int64_t weight; /* sum of their effective weights */
	uint64_t slow_start_ms; /* the pool's slow_start, 0 for the hashing balances */
	uint64_t now_ms; /* CLOCK_MONOTONIC at lb_cands_init, when slow_start_ms */
};

/* Returns the number of candidates (0: none, the pick returns NULL). */
size_t lb_cands_init(struct lb_cands *c, const struct lb_pool *pool, struct lb_server *const *tried,
		     size_t n_tried);

bool lb_is_tried(const struct lb_server *s, struct lb_server *const *tried, size_t n_tried);

/* S's weight for this pick: its weight, ramped up after a recovery by
 * slow_start. 0 takes nothing. */
static inline int lb_cand_weight(const struct lb_cands *c, const struct lb_server *s)
{
	return lb_server_effective_weight(s, c->slow_start_ms, c->now_ms);
}

static inline bool lb_is_cand(const struct lb_cands *c, const struct lb_server *s)
{
	if (s->backup != c->backup || lb_cand_weight(c, s) <= 0)
		return false;
	return lb_server_is_usable(s) && !lb_is_tried(s, c->tried, c->n_tried);
}

/*
 * Bounded-load consistent hashing (SPEC §4): a server may take one more
 * connection only while active + 1 <= ceil(factor/100 * (load + 1) / up),
 * load being the active connections of the tier's up servers and up their
 * number (servers of weight 0, which take nothing, not counted). Weights
 * shape which keys a server gets, not its cap.
 */
struct lb_bound {
	uint64_t num; /* factor * (load + 1) */
	uint64_t den; /* 100 * servers up */
};

void lb_bound_init(struct lb_bound *b, const struct lb_pool *pool, const struct lb_cands *c,
		   int factor);
bool lb_bound_admits(const struct lb_bound *b, const struct lb_server *s);

/* A candidate other than SKIP (may be NULL), each drawn with probability
 * weight / TOTAL, TOTAL being the candidates' weight without SKIP's. */
struct lb_server *lb_weighted_draw(const struct lb_pool *pool, struct lb_worker *w,
				   const struct lb_cands *c, const struct lb_server *skip,
				   uint64_t total);

/* xorshift64*: STATE must not be 0. */
uint64_t lb_rng_next(uint64_t *state);

/* murmur3's fmix64 finalizer: a bijective avalanche of X. */
uint64_t lb_mix64(uint64_t x);
uint64_t lb_hash_seeded(const void *data, size_t len, uint64_t seed);

struct lb_server *lb_rr_pick(const struct lb_pool *pool, struct lb_worker *w,
			     const struct lb_cands *c);
struct lb_server *lb_leastconn_pick(const struct lb_pool *pool, struct lb_worker *w,
				    const struct lb_cands *c);
struct lb_server *lb_random_pick(const struct lb_pool *pool, struct lb_worker *w,
				 const struct lb_cands *c);
struct lb_server *lb_p2c_pick(const struct lb_pool *pool, struct lb_worker *w,
			      const struct lb_cands *c);
/* Weighted rendezvous hashing of KEY over the candidates; with B, the best
 * in-bound candidate (or the best one when none is in bound). */
struct lb_server *lb_hrw_pick(const struct lb_pool *pool, const struct lb_cands *c, uint64_t key,
			      const struct lb_bound *b);
/* maglev and ring: the published table, then the walk, then rendezvous. */
struct lb_server *lb_table_pick(const struct lb_pool *pool, uint64_t key,
				struct lb_server *const *tried, size_t n_tried);

#endif
