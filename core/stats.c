/*
 * stats.c - per-pool request counters and reload outcomes (see stats.h).
 *
 * stats_request_done/stats_conn_done run on workers and touch only the
 * calling worker's slots; everything else runs on the main thread, which is
 * the only one that assigns slots, so the slot table needs no lock.
 */
#include "core/stats.h"

#include <stdlib.h>
#include <string.h>

#include "core/gen.h"
#include "core/worker.h"

const uint32_t stats_bucket_ms[STATS_BUCKETS - 1] = {5,	  10,	25,   50,   100,  250,
						     500, 1000, 2500, 5000, 10000};

static char *slot_names[STATS_POOL_SLOTS];
static uint32_t n_slots;
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

static uint32_t slot_for(const char *name)
{
	for (uint32_t i = 0; i < n_slots; i++)
		if (strcmp(slot_names[i], name) == 0)
			return i;
	if (n_slots == STATS_POOL_SLOTS)
		return STATS_NO_SLOT;
	slot_names[n_slots] = strdup(name);
	if (!slot_names[n_slots])
		return STATS_NO_SLOT;
	return n_slots++;
}

void stats_assign_slots(struct gen *g)
{
	for (size_t i = 0; i < g->cfg->n_pools; i++)
		g->pools[i]->stats_slot = slot_for(g->pools[i]->name);
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
	for (uint32_t i = 0; i < n_slots; i++)
		free(slot_names[i]);
	n_slots = 0;
}
