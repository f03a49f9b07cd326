/*
 * leastconn.c - least connections, weighted: the candidate with the lowest
 * active / weight (compared by cross-multiplication, no division). With
 * equal weights that is simply the fewest active connections. Ties take
 * weighted turns, as in nginx: the worker's counter walks the tied
 * candidates' weights, so idle servers of weights 3 and 1 get three
 * connections and one in turn, and servers that are not candidates (down,
 * disabled, backups) tilt nothing.
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
	int active = atomic_load_explicit(s->active, memory_order_relaxed);

	return active > 0 ? active : 0;
}

struct lb_server *lb_leastconn_pick(const struct lb_pool *pool, struct lb_worker *w,
				    const struct lb_cands *c)
{
	/* A turn is one unit of weight. */
	const uint64_t unit = LB_WEIGHT_SCALE;
	int64_t best_load = 0, best_w = 1;
	uint64_t tied_weight = 0;
	bool whole_units = true; /* every tied weight is a whole number of units */
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
			tied_weight = (uint64_t)ew;
			whole_units = (uint64_t)ew % unit == 0;
		} else if (cmp == 0) {
			ties++;
			tied_weight += (uint64_t)ew;
			whole_units = whole_units && (uint64_t)ew % unit == 0;
		}
	}
	if (!ties)
		return NULL;
	/* The tied server whose share of the tied weight holds this turn:
	 * weights 1 and 1 alternate, 3 and 1 go a a a b. A weight part way
	 * through slow start is no whole number of turns: a weighted draw
	 * then. Either way, when other workers' connections changed the
	 * loads meanwhile, the lightest this pass sees. */
	uint64_t turn = whole_units ? (uint64_t)w->tie_turn++ * unit % tied_weight
				    : lb_rng_next(&w->rng) % tied_weight;
	struct lb_server *lightest = NULL;
	int64_t light_load = 0, light_w = 1;
	for (size_t i = 0; i < pool->n_servers; i++) {
		struct lb_server *s = pool->servers[i];
		if (!lb_is_cand(c, s))
			continue;
		int64_t load = load_of(s), ew = lb_cand_weight(c, s);
		if (compare(load, ew, best_load, best_w) <= 0) {
			if (turn < (uint64_t)ew)
				return s;
			turn -= (uint64_t)ew;
		}
		if (!lightest || compare(load, ew, light_load, light_w) < 0) {
			lightest = s;
			light_load = load;
			light_w = ew;
		}
	}
	return lightest;
}
