/*
 * stats.c - per-pool request counters and reload outcomes (see stats.h).
 *
 * stats_request_done, stats_conn_done and stats_unserved run on workers and
 * touch only the
 * calling worker's slots; everything else runs on the main thread, which is
 * the only one that assigns slots, so the slot table needs no lock.
 */
#include "core/stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/gen.h"
#include "core/worker.h"

const uint32_t stats_bucket_ms[STATS_BUCKETS - 1] = {5,	  10,	25,   50,   100,  250,
						     500, 1000, 2500, 5000, 10000};

/* Names by slot: pools', listeners'. */
struct slot_table {
	char **names;
	uint32_t n, cap;
};

static char *pool_names[STATS_POOL_SLOTS], *listener_names[STATS_LISTENER_SLOTS];
static struct slot_table pool_slots = {pool_names, 0, STATS_POOL_SLOTS};
static struct slot_table listener_slots = {listener_names, 0, STATS_LISTENER_SLOTS};
static uint64_t reloads_ok, reloads_error;

static struct pool_stats *slot_of(struct worker *w, const struct lb_pool *pool)
{
	if (!pool || pool->stats_slot >= STATS_POOL_SLOTS)
		return NULL;
	return &w->pool_stats[pool->stats_slot];
}

void stats_request_done(struct worker *w, const struct lb_pool *pool, uint64_t us, unsigned n_tried)
{
	struct pool_stats *ps = slot_of(w, pool);
	size_t b = 0;

	if (!ps)
		return;
	while (b < STATS_BUCKETS - 1 && us > stats_bucket_ms[b] * 1000ULL)
		b++;
	STAT_ADD(ps->buckets[b], 1);
	STAT_ADD(ps->sum_us, us);
	STAT_ADD(ps->count, 1);
	if (n_tried > 1)
		STAT_ADD(ps->retries, n_tried - 1);
}

void stats_conn_done(struct worker *w, const struct lb_pool *pool, unsigned n_tried)
{
	struct pool_stats *ps = slot_of(w, pool);

	if (ps && n_tried > 1)
		STAT_ADD(ps->retries, n_tried - 1);
}

void stats_unserved(struct worker *w, const struct lb_pool *pool, int cls)
{
	struct pool_stats *ps = slot_of(w, pool);

	if (ps)
		STAT_ADD(ps->unserved[cls], 1);
}

static uint32_t slot_find(const struct slot_table *t, const char *name)
{
	for (uint32_t i = 0; i < t->n; i++)
		if (strcmp(t->names[i], name) == 0)
			return i;
	return STATS_NO_SLOT;
}

static uint32_t slot_for(struct slot_table *t, const char *name)
{
	uint32_t i = slot_find(t, name);

	if (i != STATS_NO_SLOT || t->n == t->cap)
		return i;
	t->names[t->n] = strdup(name);
	if (!t->names[t->n])
		return STATS_NO_SLOT;
	return t->n++;
}

int stats_assign_slots(struct gen *g)
{
	for (size_t i = 0; i < g->cfg->n_pools; i++)
		g->pools[i]->stats_slot = slot_for(&pool_slots, g->pools[i]->name);
	for (size_t i = 0; i < g->cfg->n_listeners; i++) {
		struct cfg_listener *lc = &g->cfg->listeners[i];
		lc->slot = slot_for(&listener_slots, lc->name);
		if (lc->slot == STATS_NO_SLOT)
			return -ENOSPC;
	}
	return 0;
}

bool stats_listener_names_fit(const struct cfg *cfg)
{
	uint32_t fresh = 0;

	for (size_t i = 0; i < cfg->n_listeners; i++)
		fresh += slot_find(&listener_slots, cfg->listeners[i].name) == STATS_NO_SLOT;
	return listener_slots.n + fresh <= listener_slots.cap;
}

const char *stats_listener_name(uint32_t slot)
{
	return slot < listener_slots.n ? listener_slots.names[slot] : NULL;
}

void stats_sum_pool(const struct worker *ws, int n, uint32_t slot, struct pool_totals *out)
{
	memset(out, 0, sizeof(*out));
	if (slot >= STATS_POOL_SLOTS)
		return;
	for (int i = 0; i < n; i++) {
		const struct pool_stats *ps = &ws[i].pool_stats[slot];
		for (size_t b = 0; b < STATS_BUCKETS; b++)
			out->buckets[b] +=
				atomic_load_explicit(&ps->buckets[b], memory_order_relaxed);
		out->sum_us += atomic_load_explicit(&ps->sum_us, memory_order_relaxed);
		out->count += atomic_load_explicit(&ps->count, memory_order_relaxed);
		out->retries += atomic_load_explicit(&ps->retries, memory_order_relaxed);
		for (size_t c = 0; c < LB_STATUS_CLASSES; c++)
			out->unserved[c] +=
				atomic_load_explicit(&ps->unserved[c], memory_order_relaxed);
	}
}

void stats_note_reload(bool ok)
{
	if (ok)
		reloads_ok++;
	else
		reloads_error++;
}

uint64_t stats_reloads(bool ok)
{
	return ok ? reloads_ok : reloads_error;
}

void stats_deinit(void)
{
	struct slot_table *tables[] = {&pool_slots, &listener_slots};

	for (size_t t = 0; t < 2; t++) {
		for (uint32_t i = 0; i < tables[t]->n; i++)
			free(tables[t]->names[i]);
		tables[t]->n = 0;
	}
}
