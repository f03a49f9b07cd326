/*
 * roundrobin.c - smooth weighted round robin (nginx's algorithm).
 *
 * Each pick adds every candidate's weight to its current weight, takes the
 * candidate with the highest current weight (the lowest index on a tie) and
 * subtracts the candidates' total weight from it. Weights 5,1,1 give
 * a a b a c a a: the heavy server's turns are spread out, not bunched.
 *
 * Runs on one worker: the current weights live in that worker's struct
 * lb_worker (SPEC §3: round-robin state is per worker). Servers that are not
 * candidates keep their current weight untouched while they are out.
 */
#include "balancer/lb.h"
#include "balancer/algo.h"

#include <stdlib.h>

/* (Re)sizes W's current weights for POOL, all zero. 0, or -1 without
 * memory. */
static int rr_attach(struct lb_worker *w, const struct lb_pool *pool)
{
	if (w->pool == pool && w->n == pool->n_servers && w->cw)
		return 0;
	free(w->cw);
	w->pool = NULL;
	w->n = 0;
	w->cw = calloc(pool->n_servers ? pool->n_servers : 1, sizeof(*w->cw));
	if (!w->cw)
		return -1;
	w->pool = pool;
	w->n = pool->n_servers;
	return 0;
}

struct lb_server *lb_rr_pick(const struct lb_pool *pool, struct lb_worker *w,
			     const struct lb_cands *c)
{
	struct lb_server *best = NULL;
	size_t best_i = 0;
	int64_t total = 0;

	/* Without memory for the state, weighted random keeps the shares. */
	if (rr_attach(w, pool) < 0)
		return lb_random_pick(pool, w, c);
	for (size_t i = 0; i < pool->n_servers; i++) {
		struct lb_server *s = pool->servers[i];

		if (!lb_is_cand(c, s))
			continue;
		w->cw[i] += lb_cand_weight(c, s);
		total += lb_cand_weight(c, s);
		if (!best || w->cw[i] > w->cw[best_i]) {
			best = s;
			best_i = i;
		}
	}
	if (best)
		w->cw[best_i] -= total;
	return best;
}
