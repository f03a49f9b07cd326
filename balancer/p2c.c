/*
 * p2c.c - power of two choices (Mitzenmacher): draw two distinct candidates
 * at random and take the less loaded one, load being (active + 1) / weight,
 * the weighted load the server would have with this connection. On a tie the
 * heavier server wins, then the first drawn.
 *
 * Runs on one worker; `active` is read relaxed, as counted by all workers.
 */
#include "balancer/lb.h"
#include "balancer/algo.h"

/* The candidate at rank K (0-based, in server order), or NULL. */
static struct lb_server *nth_cand(const struct lb_pool *pool, const struct lb_cands *c, size_t k)
{
	for (size_t i = 0; i < pool->n_servers; i++) {
		struct lb_server *s = pool->servers[i];

		if (lb_is_cand(c, s) && k-- == 0)
			return s;
	}
	return NULL;
}

/* True when A is strictly less loaded than B, weights considered. */
static bool less_loaded(const struct lb_cands *c, const struct lb_server *a,
			const struct lb_server *b)
{
	int64_t la = (int64_t)atomic_load_explicit(&a->active, memory_order_relaxed) + 1;
	int64_t lb = (int64_t)atomic_load_explicit(&b->active, memory_order_relaxed) + 1;
	int64_t wa = lb_cand_weight(c, a), wb = lb_cand_weight(c, b);

	if (la * wb != lb * wa)
		return la * wb < lb * wa;
	return wa > wb;
}

struct lb_server *lb_p2c_pick(const struct lb_pool *pool, struct lb_worker *w,
			      const struct lb_cands *c)
{
	struct lb_server *a, *b;
	size_t i, j;

	if (c->n <= 1)
		return nth_cand(pool, c, 0);
	i = lb_rng_next(&w->rng) % c->n;
	j = lb_rng_next(&w->rng) % (c->n - 1);
	if (j >= i)
		j++;
	a = nth_cand(pool, c, i);
	b = nth_cand(pool, c, j);
	if (!a || !b)
		return a ? a : nth_cand(pool, c, 0);
	return less_loaded(c, b, a) ? b : a;
}
