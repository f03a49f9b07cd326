/*
 * p2c.c - power of two choices (Mitzenmacher): draw two distinct candidates,
 * each with probability proportional to its weight (as HAProxy's
 * random(2)), and take the less loaded one, load being active / weight. On
 * a tie the first drawn wins, so idle servers share by weight.
 *
 * Runs on one worker; `active` is read relaxed, as counted by all workers.
 */
#include "balancer/lb.h"
#include "balancer/algo.h"

/* True when A is strictly less loaded than B, weights considered. */
static bool less_loaded(const struct lb_cands *c, const struct lb_server *a,
			const struct lb_server *b)
{
	int la = atomic_load_explicit(a->active, memory_order_relaxed);
	int lb = atomic_load_explicit(b->active, memory_order_relaxed);
	int64_t wa = lb_cand_weight(c, a), wb = lb_cand_weight(c, b);

	return (int64_t)(la > 0 ? la : 0) * wb < (int64_t)(lb > 0 ? lb : 0) * wa;
}

struct lb_server *lb_p2c_pick(const struct lb_pool *pool, struct lb_worker *w,
			      const struct lb_cands *c)
{
	uint64_t total = (uint64_t)(c->weight > 0 ? c->weight : 1);
	struct lb_server *a = lb_weighted_draw(pool, w, c, NULL, total), *b;

	if (!a || c->n <= 1)
		return a;
	/* (A weight the admin API raised since lb_cands_init may pass the
	 * total: the draw then takes 0 as 1.) */
	uint64_t wa = (uint64_t)lb_cand_weight(c, a);
	b = lb_weighted_draw(pool, w, c, a, total > wa ? total - wa : 0);
	return b && less_loaded(c, b, a) ? b : a;
}
