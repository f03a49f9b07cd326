/*
 * table.c - building maglev/ring tables and picking from the published one,
 * with bounded loads (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing
 * with Bounded Loads", as in HAProxy's hash-balance-factor).
 *
 * lb_table_build runs on the thread that rebuilds (main or health); it reads
 * server states once and the table it returns is immutable. lb_table_pick
 * runs on the workers: one acquire load of pool->table, then
 *   1. the key's position; its server wins when it is a normal, usable,
 *      untried server and no load bound applies (the common, O(1) case);
 *   2. otherwise walk the following positions to the first candidate
 *      (different server, usable, untried, right tier, within the bound);
 *   3. when the table holds no candidate at all (every member down or tried,
 *      or the backups are in use), rendezvous hashing over the candidates.
 */
#include "balancer/lb.h"
#include "balancer/algo.h"
#include "balancer/hash_table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool is_prime(uint32_t n)
{
	if (n < 2)
		return false;
	for (uint32_t d = 2; (uint64_t)d * d <= n; d++)
		if (n % d == 0)
			return false;
	return true;
}

uint32_t lb_next_prime(uint32_t n)
{
	while (!is_prime(n) && n < UINT32_MAX)
		n++;
	return n;
}

void lb_table_free(struct lb_table *t)
{
	if (!t)
		return;
	free(t->slot);
	free(t->hash);
	free(t->members);
	free(t->weights);
	free(t);
}

struct member {
	uint32_t index;
	int weight;
};

static int member_cmp(const void *a, const void *b, void *arg)
{
	const struct lb_pool *pool = arg;
	uint32_t ia = ((const struct member *)a)->index, ib = ((const struct member *)b)->index;
	int r = strcmp(pool->servers[ia]->name, pool->servers[ib]->name);

	if (r)
		return r;
	return ia < ib ? -1 : ia > ib;
}

/* Sorts T's members by name, their weights with them. 0 or -ENOMEM. */
static int sort_members(struct lb_table *t, const struct lb_pool *pool)
{
	struct member *m = malloc((t->n_members ? t->n_members : 1) * sizeof(*m));

	if (!m)
		return -ENOMEM;
	for (size_t i = 0; i < t->n_members; i++)
		m[i] = (struct member){t->members[i], t->weights[i]};
	qsort_r(m, t->n_members, sizeof(*m), member_cmp, (void *)pool);
	for (size_t i = 0; i < t->n_members; i++) {
		t->members[i] = m[i].index;
		t->weights[i] = m[i].weight;
	}
	free(m);
	return 0;
}

/* Chooses the members (the up normal servers with a weight, else the up
 * backups with one) and sorts them by name. Each server's state and
 * weight are read once: the admin API and the health thread change them
 * while this runs, and the counts that size the arrays must be the ones
 * that fill them. 0 or -ENOMEM. */
static int table_members(struct lb_table *t, const struct lb_pool *pool)
{
	size_t n = pool->n_servers ? pool->n_servers : 1;
	int *weight = malloc(n * sizeof(*weight)); /* -1: not up */
	size_t weighted[2] = {0, 0};
	bool backup;

	if (!weight)
		return -ENOMEM;
	for (size_t i = 0; i < pool->n_servers; i++) {
		const struct lb_server *s = pool->servers[i];

		weight[i] = atomic_load_explicit(&s->state, memory_order_relaxed) == SRV_UP
				    ? atomic_load_explicit(&s->weight, memory_order_relaxed)
				    : -1;
		weighted[s->backup] += weight[i] > 0;
	}
	backup = weighted[0] == 0;
	n = weighted[backup] ? weighted[backup] : 1;
	t->members = malloc(n * sizeof(*t->members));
	t->weights = malloc(n * sizeof(*t->weights));
	if (!t->members || !t->weights) {
		free(weight);
		return -ENOMEM;
	}
	for (size_t i = 0; i < pool->n_servers; i++) {
		const struct lb_server *s = pool->servers[i];

		if (s->backup == backup && weight[i] > 0) {
			t->members[t->n_members] = (uint32_t)i;
			t->weights[t->n_members++] = weight[i];
		}
	}
	free(weight);
	return sort_members(t, pool);
}

struct lb_table *lb_table_build(const struct lb_pool *pool)
{
	struct lb_table *t;
	uint32_t m = pool->cfg && pool->cfg->maglev_table_size ? pool->cfg->maglev_table_size
							       : LB_MAGLEV_DEFAULT_SIZE;
	int err;

	if (pool->balance != BAL_MAGLEV && pool->balance != BAL_RING)
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	err = table_members(t, pool);
	if (!err && pool->balance == BAL_MAGLEV)
		err = lb_maglev_fill(t, pool, m);
	else if (!err)
		err = lb_ring_fill(t, pool);
	if (err) {
		lb_table_free(t);
		return NULL;
	}
	return t;
}

bool lb_table_is_current(const struct lb_pool *pool)
{
	const struct lb_table *t = atomic_load_explicit(&pool->table, memory_order_acquire);
	struct lb_table now = {0};
	bool same;

	if (pool->balance != BAL_MAGLEV && pool->balance != BAL_RING)
		return true;
	if (!t)
		return false;
	same = table_members(&now, pool) == 0 && now.n_members == t->n_members &&
	       memcmp(now.members, t->members, now.n_members * sizeof(*now.members)) == 0 &&
	       memcmp(now.weights, t->weights, now.n_members * sizeof(*now.weights)) == 0;
	free(now.members);
	free(now.weights);
	return same;
}

static uint32_t table_start(const struct lb_table *t, uint64_t key)
{
	if (t->kind == BAL_RING)
		return lb_ring_start(t, key);
	return (uint32_t)(key % t->size);
}

/* Whether a walk of T would find a candidate (under bound B, when not
 * NULL): when none is there, it would visit every slot for nothing. */
static bool table_has_cand(const struct lb_table *t, const struct lb_pool *pool,
			   const struct lb_cands *c, const struct lb_bound *b)
{
	for (size_t i = 0; i < t->n_members; i++) {
		const struct lb_server *s = pool->servers[t->members[i]];
		if (lb_is_cand(c, s) && (!b || lb_bound_admits(b, s)))
			return true;
	}
	return false;
}

/* Step 2: the first candidate at or after START; NULL after a full turn. */
static struct lb_server *table_walk(const struct lb_table *t, const struct lb_pool *pool,
				    uint32_t start, const struct lb_cands *c,
				    const struct lb_bound *b)
{
	uint32_t rejected = UINT32_MAX;
	uint32_t pos = start;

	for (uint32_t k = 0; k < t->size; k++) {
		uint32_t idx = t->slot[pos];

		if (idx != rejected) {
			struct lb_server *s = pool->servers[idx];

			if (lb_is_cand(c, s) && (!b || lb_bound_admits(b, s)))
				return s;
			rejected = idx;
		}
		if (++pos == t->size)
			pos = 0;
	}
	return NULL;
}

struct lb_server *lb_table_pick(const struct lb_pool *pool, uint64_t key,
				struct lb_server *const *tried, size_t n_tried)
{
	const struct lb_table *t = atomic_load_explicit(&pool->table, memory_order_acquire);
	int factor = pool->cfg ? pool->cfg->hash_balance_factor : 0;
	uint32_t start = 0;
	struct lb_cands c;
	struct lb_bound b;

	if (t && t->size) {
		struct lb_server *s = pool->servers[t->slot[start = table_start(t, key)]];

		if (factor <= 0 && !s->backup && lb_server_is_usable(s) &&
		    !lb_is_tried(s, tried, n_tried))
			return s;
	}
	if (lb_cands_init(&c, pool, tried, n_tried) == 0)
		return NULL;
	if (factor > 0)
		lb_bound_init(&b, pool, &c, factor);
	if (t && t->size && table_has_cand(t, pool, &c, factor > 0 ? &b : NULL)) {
		struct lb_server *s = table_walk(t, pool, start, &c, factor > 0 ? &b : NULL);

		if (s)
			return s;
	}
	return lb_hrw_pick(pool, &c, key, factor > 0 ? &b : NULL);
}
