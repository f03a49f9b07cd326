/*
 * leastconn.c - least connections, weighted: the candidate with the lowest
 * (active + 1) / weight, the weighted load it would have with this
 * connection (compared by cross-multiplication, no division). With equal
 * weights that is simply the fewest active connections. Ties take turns:
 * the worker's counter picks which of the tied candidates goes, so servers
 * that are not candidates (down, disabled, backups) tilt nothing.
 *
 * Runs on one worker; `active` counts connections of all workers (relaxed
 * atomics), so the choice is pool-wide (SPEC §3). A count may change
 * between the two passes; the pick then still takes a server, the lightest
 * the second pass saw.
 */
#include "balancer/lb.h"
#include "balancer/algo.h"

/* Compares S's load with the best so far: <0 lighter, 0 tied, >0 heavier. */
static int compare(int64_t load, int64_t w, int64_t best_load, int64_t best_w)
{
	int64_t a = load * best_w, b = best_load * w;
	return a < b ? -1 : a > b;
}

static int64_t load_of(const struct lb_server *s)
{
	return (int64_t)atomic_load_explicit(&s->active, memory_order_relaxed) + 1;
}

struct lb_server *lb_leastconn_pick(const struct lb_pool *pool, struct lb_worker *w,
				    const struct lb_cands *c)
{
	int64_t best_load = 0, best_w = 1;
	size_t ties = 0;

	for (size_t i = 0; i < pool->n_servers; i++) {
		const struct lb_server *s = pool->servers[i];
		if (!lb_is_cand(c, s))
			continue;
		int64_t load = load_of(s), ew = lb_cand_weight(c, s);
		int cmp = ties ? compare(load, ew, best_load, best_w) : -1;
		if (cmp < 0) {
			best_load = load;
			best_w = ew;
			ties = 1;
		} else if (cmp == 0) {
			ties++;
		}
	}
	if (!ties)
		return NULL;
	/* The turn-th of the tied; or, when other workers' connections
	 * changed the loads meanwhile, the lightest this pass sees. */
	size_t turn = w->rr++ % ties;
	struct lb_server *lightest = NULL;
	int64_t light_load = 0, light_w = 1;
	for (size_t i = 0; i < pool->n_servers; i++) {
		struct lb_server *s = pool->servers[i];
		if (!lb_is_cand(c, s))
			continue;
		int64_t load = load_of(s), ew = lb_cand_weight(c, s);
		if (compare(load, ew, best_load, best_w) <= 0 && turn-- == 0)
			return s;
		if (!lightest || compare(load, ew, light_load, light_w) < 0) {
			lightest = s;
			light_load = load;
			light_w = ew;
		}
	}
	return lightest;
}
