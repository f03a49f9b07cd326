/*
 * gen.c - building and releasing configuration generations (see gen.h).
 * Built and published by the main thread; released by whichever thread
 * drops the last reference.
 */
#include "core/gen.h"

#include <stdlib.h>

_Atomic(struct gen *) gen_current;

struct gen *gen_new(struct cfg *cfg, uint64_t number)
{
	struct gen *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->cfg = cfg;
	g->number = number;
	atomic_init(&g->refs, 1);
	g->pools = calloc(cfg->n_pools ? cfg->n_pools : 1, sizeof(*g->pools));
	if (!g->pools)
		goto fail;
	for (size_t i = 0; i < cfg->n_pools; i++) {
		g->pools[i] = lb_pool_new(&cfg->pools[i]);
		if (!g->pools[i])
			goto fail;
	}
	return g;
fail:
	/* The caller still owns cfg on failure. */
	for (size_t i = 0; g->pools && i < cfg->n_pools; i++)
		if (g->pools[i])
			lb_pool_free(g->pools[i]);
	free(g->pools);
	free(g);
	return NULL;
}

void gen_put(struct gen *g)
{
	if (atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (g->pools) {
		for (size_t i = 0; g->cfg && i < g->cfg->n_pools; i++)
			if (g->pools[i])
				lb_pool_free(g->pools[i]);
		free(g->pools);
	}
	if (g->cfg)
		cfg_free(g->cfg);
	free(g);
}
