/*
 * hash_table.h - the consistent-hash lookup tables behind maglev and ring.
 *
 * A struct lb_table is built by pure functions from a pool's servers as they
 * are at build time (the health thread or the main thread builds; nobody
 * else writes), then published in pool->table and never changed: workers
 * read it without locks. Both kinds reduce to one array of positions, each
 * naming a server (slot[]), which lb_pick walks from the key's position:
 *   maglev (Maglev paper §3.4): size = M, a prime; position = key % M.
 *   ring (ketama): size = number of points, sorted by hash[]; position = the
 *   first point whose hash is >= key, wrapping to 0.
 */
#ifndef FULCRUM_HASH_TABLE_H
#define FULCRUM_HASH_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "balancer/lb.h"

/* Points per unit of weight on the ring (SPEC §4: at least 100). */
#define LB_RING_POINTS 100
/* Maglev table size when the configuration gives none. */
#define LB_MAGLEV_DEFAULT_SIZE 65537u

struct lb_table {
	enum cfg_balance kind; /* BAL_MAGLEV or BAL_RING */
	uint32_t size; /* positions in slot[] (and hash[] for a ring) */
	uint32_t *slot; /* server index (into pool->servers) per position */
	uint64_t *hash; /* ring only: point hashes, ascending; NULL for maglev */
	uint32_t *members; /* indexes of the servers entered, sorted by name */
	int *weights; /* each member's weight, as read once at the build */
	size_t n_members;
};

/*
 * Builds the table for POOL's kind (maglev or ring) from the servers that are
 * SRV_UP now: the normal servers, or the backups when no normal server is up.
 * Servers with weight 0 never enter. A table
 * with no member (nothing up) is valid and empty. Returns NULL on allocation
 * failure or when the pool does not balance by maglev or ring; the caller
 * owns the result (lb_table_free).
 */
struct lb_table *lb_table_build(const struct lb_pool *pool);

/* Effective weight of T's member I (at least 1). */
static inline int lb_table_weight(const struct lb_table *t, size_t i)
{
	return t->weights[i];
}

/* Fill T->slot (and T->size) for the members already in T. 0 or -ENOMEM. */
int lb_maglev_fill(struct lb_table *t, const struct lb_pool *pool, uint32_t m);
int lb_ring_fill(struct lb_table *t, const struct lb_pool *pool);

/* The first position a key looks at. T must have size > 0. */
uint32_t lb_ring_start(const struct lb_table *t, uint64_t key);

/* Smallest prime >= N (N >= 2). */
uint32_t lb_next_prime(uint32_t n);

#endif
