/*
 * gen.c - building and releasing configuration generations (see gen.h).
 * Built and published by the main thread; released by whichever thread
 * drops the last reference.
 */
#include "core/gen.h"

#include <stdlib.h>

#include "core/stats.h"
#include "core/tls.h"

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
	g->tls = tls_gen_new(cfg);
	if (!g->tls || stats_assign_slots(g) < 0)
		goto fail;
	return g;
fail:
	/* The caller still owns cfg on failure. */
	for (size_t i = 0; g->pools && i < cfg->n_pools; i++)
		if (g->pools[i])
			lb_pool_free(g->pools[i]);
	tls_gen_free(g->tls);
	free(g->pools);
	free(g);
	return NULL;
}

struct gen *gen_derive(struct gen *parent, size_t index, struct lb_pool *shell)
{
	struct gen *g = calloc(1, sizeof(*g));
	size_t n = parent->cfg->n_pools;

	if (!g)
		return NULL;
	g->pools = calloc(n ? n : 1, sizeof(*g->pools));
	if (!g->pools) {
		free(g);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		g->pools[i] = i == index ? shell : lb_pool_get(parent->pools[i]);
	g->cfg = parent->cfg;
	g->number = parent->number;
	atomic_init(&g->refs, 1);
	g->root = gen_get(parent->root ? parent->root : parent);
	return g;
}

int gen_listener_of_bind(const struct gen *g, uint32_t bind_id)
{
	const struct cfg *cfg = g->cfg;

	for (size_t i = 0; i < cfg->n_listeners; i++)
		for (size_t k = 0; k < cfg->listeners[i].n_binds; k++)
			if (cfg->listeners[i].binds[k].bind_id == bind_id)
				return (int)i;
	return -1;
}

bool gen_lists(const struct gen *g, const struct lb_server *s)
{
	for (size_t i = 0; i < g->cfg->n_pools; i++)
		for (size_t j = 0; j < g->pools[i]->n_servers; j++)
			if (g->pools[i]->servers[j] == s)
				return true;
	return false;
}

void gen_put(struct gen *g)
{
	if (atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (g->pools) {
		for (size_t i = 0; g->cfg && i < g->cfg->n_pools; i++)
			lb_pool_put(g->pools[i]);
		free(g->pools);
	}
	if (g->root) { /* cfg and the TLS contexts are the root's */
		gen_put(g->root);
		free(g);
		return;
	}
	tls_gen_free(g->tls);
	if (g->cfg)
		cfg_free(g->cfg);
	free(g);
}
