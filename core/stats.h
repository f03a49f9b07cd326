/*
 * stats.h - counters kept for /metrics that no other struct holds: per-pool
 * request durations, retries and answers given with no server (per worker),
 * and the reload outcomes.
 *
 * Per-pool counters live in every worker (struct worker.pool_stats), one slot
 * per pool name: the main thread gives each pool name a slot the first time a
 * generation carries it (stats_assign_slots) and keeps it for the process's
 * life, so counters survive reloads and pools keep their series when the
 * file reorders them. Listeners get slots the same way, by name, for their
 * counters (struct worker.stats) and their cache, since a reload may add,
 * remove, rename or reorder listeners. A worker writes only its own slots
 * (relaxed stores, no locked instruction); the main thread sums them when
 * /metrics is read.
 */
#ifndef FULCRUM_STATS_H
#define FULCRUM_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "balancer/lb.h"

struct cfg;
struct gen;
struct lb_pool;
struct worker;

/* Distinct pool names a process can count; later ones are not counted. */
#define STATS_POOL_SLOTS 256
#define STATS_NO_SLOT	 UINT32_MAX

/* Request duration buckets (upper bounds, ms); the last bucket is +Inf. */
#define STATS_BUCKETS 12
extern const uint32_t stats_bucket_ms[STATS_BUCKETS - 1];

/* One pool's counters in one worker: 21 words, three cache lines. */
struct pool_stats {
	_Atomic uint64_t buckets[STATS_BUCKETS]; /* requests by duration, not cumulative */
	_Atomic uint64_t sum_us; /* microseconds: most requests take less than 1 ms */
	_Atomic uint64_t count;
	_Atomic uint64_t retries; /* servers tried after the first, per request or connection */
	/* Answers given for the pool without a server (a 503 when none is up
	 * or free, a cache hit, an error after routing), by status class as
	 * requests_total counts them. */
	_Atomic uint64_t unserved[LB_STATUS_CLASSES];
} __attribute__((aligned(64)));

/* Worker thread: an http request of POOL ended after US microseconds,
 * having tried N_TRIED servers. */
void stats_request_done(struct worker *w, const struct lb_pool *pool, uint64_t us,
			unsigned n_tried);
/* Worker thread: a tcp connection of POOL ended, having tried N_TRIED
 * servers. */
void stats_conn_done(struct worker *w, const struct lb_pool *pool, unsigned n_tried);
/* Worker thread: an http request of POOL was answered with status class
 * CLS (0..5, as lb_server.responses) and no server. */
void stats_unserved(struct worker *w, const struct lb_pool *pool, int cls);

/* Distinct listener names a process can serve; a reload that would make
 * more fails (stats_listener_names_fit). */
#define STATS_LISTENER_SLOTS 256

/* Main thread: gives every pool of G its slot (pool->stats_slot) and every
 * listener its own (cfg_listener.slot). -ENOSPC when a listener found none
 * (check with stats_listener_names_fit first). */
int stats_assign_slots(struct gen *g);
/* Main thread: whether CFG's listener names, with the ones seen before,
 * fit in STATS_LISTENER_SLOTS. */
bool stats_listener_names_fit(const struct cfg *cfg);
/* Main thread: the listener name of slot SLOT, or NULL past the last slot
 * given out. */
const char *stats_listener_name(uint32_t slot);
/* One pool's counters summed over the workers. */
struct pool_totals {
	uint64_t buckets[STATS_BUCKETS];
	uint64_t sum_us, count, retries;
	uint64_t unserved[LB_STATUS_CLASSES];
};

/* Main thread: sums slot SLOT over the N workers at WS into *OUT (zeros for
 * STATS_NO_SLOT). */
void stats_sum_pool(const struct worker *ws, int n, uint32_t slot, struct pool_totals *out);

/* Main thread: reload outcomes (fulcrum_config_reloads_total). */
void stats_note_reload(bool ok);
uint64_t stats_reloads(bool ok);

/* Main thread, at exit: forgets the slot names. */
void stats_deinit(void);

#endif
