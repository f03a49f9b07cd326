/*
 * random.c - weighted random choice, and the xorshift64* generator that
 * random and p2c draw from.
 *
 * Runs on one worker; the generator state is that worker's (struct
 * lb_worker.rng), so workers never share a cache line for it.
 */
#include "balancer/lb.h"
#include "balancer/algo.h"

/* xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift
 * generators"): the high bits are good, so callers reduce with modulo of the
 * full 64-bit output. */
uint64_t lb_rng_next(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

struct lb_server *lb_weighted_draw(const struct lb_pool *pool, struct lb_worker *w,
				   const struct lb_cands *c, const struct lb_server *skip,
				   uint64_t total)
{
	struct lb_server *last = NULL;
	uint64_t r = lb_rng_next(&w->rng) % (total ? total : 1);

	for (size_t i = 0; i < pool->n_servers; i++) {
		struct lb_server *s = pool->servers[i];
		uint64_t ew;

		if (s == skip || !lb_is_cand(c, s))
			continue;
		ew = (uint64_t)lb_cand_weight(c, s);
		if (r < ew)
			return s;
		r -= ew;
		last = s;
	}
	/* A server left the set since lb_cands_init counted it. */
	return last;
}

/* Each candidate with probability weight / total weight. */
struct lb_server *lb_random_pick(const struct lb_pool *pool, struct lb_worker *w,
				 const struct lb_cands *c)
{
	return lb_weighted_draw(pool, w, c, NULL, (uint64_t)(c->weight > 0 ? c->weight : 1));
}
