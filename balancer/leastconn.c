/*
 * leastconn.c - least connections, weighted: the candidate with the lowest
 * (active + 1) / weight, the weighted load it would have with this
 * connection (compared by cross-multiplication, no division). With equal
 * weights that is simply the fewest active connections. Ties go round robin:
 * each pick starts its scan one server further along.
 *
 * Runs on one worker; `active` counts connections of all workers (relaxed
 * atomics), so the choice is pool-wide (SPEC §3).
 */
#include "balancer/lb.h"
#include "balancer/algo.h"

struct lb_server *lb_leastconn_pick(const struct lb_pool *pool, struct lb_worker *w,
				    const struct lb_cands *c)
{
	struct lb_server *best = NULL;
	int64_t best_load = 0, best_w = 1;
	size_t n = pool->n_servers;
	size_t start = n ? w->rr++ % n : 0;

	for (size_t k = 0; k < n; k++) {
		struct lb_server *s = pool->servers[(start + k) % n];
		int64_t load, ew;

		if (!lb_is_cand(c, s))
			continue;
		load = (int64_t)atomic_load_explicit(&s->active, memory_order_relaxed) + 1;
		ew = lb_cand_weight(c, s);
		if (!best || load * best_w < best_load * ew) {
			best = s;
			best_load = load;
			best_w = ew;
		}
	}
	return best;
}
