/*
 * lb.c - runtime pools and servers, per-worker balancing state, the candidate
 * set every algorithm picks from, and lb_pick's dispatch to the algorithms
 * (one file each: roundrobin.c, leastconn.c, random.c, p2c.c, source.c,
 * maglev.c and ring.c behind table.c).
 *
 * Threads: lb_pool_new runs on the main thread, lb_pool_free and
 * lb_server_unref on whichever thread drops a generation's last reference;
 * lb_pool_rebuild, which writes pool->table, on the main thread while the
 * pool is not published yet and on the health thread after (see lb.h);
 * lb_pick on any worker, reading shared state with relaxed loads and the
 * table with one acquire load.
 */
#include "balancer/lb.h"
#include "balancer/algo.h"
#include "balancer/hash_table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *lb_state_name(enum lb_state s)
{
	switch (s) {
	case SRV_UP:
		return "up";
	case SRV_DOWN:
		return "down";
	case SRV_DRAIN:
		return "drain";
	case SRV_DISABLED:
		return "disabled";
	}
	return "unknown";
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* Servers sit on their own cache lines: every worker bumps `active`. */
struct lb_server *lb_server_new(const struct cfg_server *cs, uint32_t index)
{
	size_t size = (sizeof(struct lb_server) + 63) / 64 * 64;
	struct lb_server *s = aligned_alloc(64, size);

	if (!s)
		return NULL;
	memset(s, 0, size);
	s->name = strdup(cs->name ? cs->name : "");
	s->addr = cs->addr;
	s->addr.text = dup_or_null(cs->addr.text);
	if (!s->name || (cs->addr.text && !s->addr.text)) {
		lb_server_unref(s);
		return NULL;
	}
	s->weight = cs->weight;
	s->cfg_disabled = cs->disabled;
	s->maxconn = cs->maxconn;
	s->backup = cs->backup;
	s->proxy_protocol = cs->proxy_protocol;
	s->index = index;
	s->name_hash = lb_hash(s->name, strlen(s->name));
	atomic_init(&s->state, cs->disabled ? SRV_DISABLED : SRV_UP);
	atomic_init(&s->admin_disabled, false);
	atomic_init(&s->own_active, 0);
	s->active = &s->own_active;
	atomic_init(&s->fails, 0);
	atomic_init(&s->connections_total, 0);
	atomic_init(&s->refs, 1);
	return s;
}

struct lb_server *lb_server_ref(struct lb_server *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

bool lb_server_same(const struct lb_server *new_, const struct lb_server *old)
{
	return new_->index == old->index && strcmp(new_->name, old->name) == 0 &&
	       new_->addr.len == old->addr.len &&
	       memcmp(&new_->addr.ss, &old->addr.ss, new_->addr.len) == 0 &&
	       (new_->addr.text && old->addr.text ? strcmp(new_->addr.text, old->addr.text) == 0
						  : new_->addr.text == old->addr.text) &&
	       new_->maxconn == old->maxconn && new_->max_fails == old->max_fails &&
	       new_->backup == old->backup && new_->proxy_protocol == old->proxy_protocol &&
	       new_->cfg_disabled == old->cfg_disabled;
}

void lb_server_unref(struct lb_server *s)
{
	if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	lb_server_unref(s->load_owner);
	free(s->name);
	free(s->addr.text);
	free(s);
}

void lb_server_share_load(struct lb_server *new_, struct lb_server *old)
{
	struct lb_server *owner = old->load_owner ? old->load_owner : old;

	lb_server_unref(new_->load_owner);
	new_->load_owner = lb_server_ref(owner);
	new_->active = &owner->own_active;
}

static bool balance_uses_table(enum cfg_balance b)
{
	return b == BAL_MAGLEV || b == BAL_RING;
}

struct lb_pool *lb_pool_new(const struct cfg_pool *cfg)
{
	struct lb_pool *pool = calloc(1, sizeof(*pool));

	if (!pool)
		return NULL;
	pool->cfg = cfg;
	pool->balance = cfg->balance;
	atomic_init(&pool->refs, 1);
	pool->name = strdup(cfg->name ? cfg->name : "");
	pool->servers = calloc(cfg->n_servers ? cfg->n_servers : 1, sizeof(*pool->servers));
	if (!pool->name || !pool->servers)
		goto fail;
	for (size_t i = 0; i < cfg->n_servers; i++) {
		pool->servers[i] = lb_server_new(&cfg->servers[i], (uint32_t)i);
		if (pool->servers[i])
			pool->servers[i]->max_fails = cfg->max_fails;
		if (!pool->servers[i])
			goto fail;
		pool->n_servers = i + 1;
	}
	atomic_init(&pool->table, NULL);
	if (balance_uses_table(pool->balance)) {
		struct lb_table *t = lb_table_build(pool);

		if (!t)
			goto fail;
		atomic_store_explicit(&pool->table, t, memory_order_release);
	}
	return pool;
fail:
	lb_pool_free(pool);
	return NULL;
}

/* The caller guarantees no thread can still reach POOL or its table. */
void lb_pool_free(struct lb_pool *pool)
{
	if (!pool)
		return;
	lb_table_free(atomic_load_explicit(&pool->table, memory_order_acquire));
	for (size_t i = 0; i < pool->n_servers; i++)
		lb_server_unref(pool->servers[i]);
	free(pool->servers);
	free(pool->name);
	free(pool);
}

int lb_pool_rebuild(struct lb_pool *pool, struct lb_table **old)
{
	struct lb_table *t;

	*old = NULL;
	if (!balance_uses_table(pool->balance))
		return 0;
	t = lb_table_build(pool);
	if (!t)
		return -ENOMEM;
	*old = atomic_exchange_explicit(&pool->table, t, memory_order_acq_rel);
	return 0;
}

void lb_worker_init(struct lb_worker *w, uint64_t seed)
{
	memset(w, 0, sizeof(*w));
	/* xorshift must not start at 0; mix so nearby seeds diverge at once. */
	w->rng = lb_mix64(seed ^ 0x9E3779B97F4A7C15ULL);
	if (w->rng == 0)
		w->rng = 0x9E3779B97F4A7C15ULL;
}

void lb_worker_deinit(struct lb_worker *w)
{
	free(w->cw);
	w->cw = NULL;
	w->n = 0;
	w->pool = NULL;
}

bool lb_is_tried(const struct lb_server *s, struct lb_server *const *tried, size_t n_tried)
{
	for (size_t i = 0; i < n_tried; i++)
		if (tried[i] == s)
			return true;
	return false;
}

bool lb_has_untried(const struct lb_pool *pool, struct lb_server *const *tried, size_t n_tried)
{
	for (size_t i = 0; i < pool->n_servers; i++)
		if (lb_server_is_usable(pool->servers[i]) &&
		    !lb_is_tried(pool->servers[i], tried, n_tried))
			return true;
	return false;
}

/* Per tier (0 normal, 1 backup): usable untried servers with a weight, and
 * the sum of those weights. */
struct tier_count {
	size_t n;
	int64_t weight;
};

/* The balances whose weights slow_start ramps up. */
static bool balance_uses_slow_start(enum cfg_balance b)
{
	return b == BAL_ROUNDROBIN || b == BAL_LEASTCONN || b == BAL_RANDOM || b == BAL_P2C;
}

static uint64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

size_t lb_cands_init(struct lb_cands *c, const struct lb_pool *pool, struct lb_server *const *tried,
		     size_t n_tried)
{
	struct tier_count tc[2] = {{0, 0}, {0, 0}};

	c->slow_start_ms =
		pool->cfg && balance_uses_slow_start(pool->balance) ? pool->cfg->slow_start_ms : 0;
	c->now_ms = c->slow_start_ms ? monotonic_ms() : 0;
	for (size_t i = 0; i < pool->n_servers; i++) {
		const struct lb_server *s = pool->servers[i];

		if (!lb_server_is_usable(s) || lb_is_tried(s, tried, n_tried))
			continue;
		struct tier_count *t = &tc[s->backup];
		int w = lb_server_effective_weight(s, c->slow_start_ms, c->now_ms);

		/* Weight 0 takes no new traffic, as in HAProxy. */
		if (w > 0) {
			t->n++;
			t->weight += w;
		}
	}
	const struct tier_count *t = &tc[tc[0].n == 0];

	c->tried = tried;
	c->n_tried = n_tried;
	c->backup = tc[0].n == 0;
	c->n = t->n;
	c->weight = t->weight;
	return c->n;
}

void lb_bound_init(struct lb_bound *b, const struct lb_pool *pool, const struct lb_cands *c,
		   int factor)
{
	uint64_t load = 0, up = 0;

	for (size_t i = 0; i < pool->n_servers; i++) {
		const struct lb_server *s = pool->servers[i];
		int active = atomic_load_explicit(s->active, memory_order_relaxed);

		if (s->backup != c->backup || lb_cand_weight(c, s) <= 0 ||
		    atomic_load_explicit(&s->state, memory_order_relaxed) != SRV_UP)
			continue;
		load += active > 0 ? (uint64_t)active : 0;
		up++;
	}
	b->num = (uint64_t)factor * (load + 1);
	b->den = 100 * (up ? up : 1);
}

bool lb_bound_admits(const struct lb_bound *b, const struct lb_server *s)
{
	uint64_t cap = (b->num + b->den - 1) / b->den;
	int active = atomic_load_explicit(s->active, memory_order_relaxed);

	return (uint64_t)(active > 0 ? active : 0) + 1 <= cap;
}

bool lb_pool_full(const struct lb_pool *pool)
{
	for (size_t i = 0; i < pool->n_servers; i++) {
		const struct lb_server *s = pool->servers[i];
		if (s->maxconn > 0 &&
		    atomic_load_explicit(&s->state, memory_order_relaxed) == SRV_UP &&
		    !lb_server_is_failing(s) &&
		    atomic_load_explicit(&s->weight, memory_order_relaxed) > 0 &&
		    atomic_load_explicit(s->active, memory_order_relaxed) >= s->maxconn)
			return true;
	}
	return false;
}

struct lb_server *lb_pick(const struct lb_pool *pool, struct lb_worker *w, uint64_t key,
			  struct lb_server *const *tried, size_t n_tried)
{
	struct lb_cands c;

	if (balance_uses_table(pool->balance))
		return lb_table_pick(pool, key, tried, n_tried);
	if (lb_cands_init(&c, pool, tried, n_tried) == 0)
		return NULL;
	switch (pool->balance) {
	case BAL_ROUNDROBIN:
		return lb_rr_pick(pool, w, &c);
	case BAL_LEASTCONN:
		return lb_leastconn_pick(pool, w, &c);
	case BAL_RANDOM:
		return lb_random_pick(pool, w, &c);
	case BAL_P2C:
		return lb_p2c_pick(pool, w, &c);
	case BAL_SOURCE:
	case BAL_MAGLEV:
	case BAL_RING:
		break;
	}
	return lb_hrw_pick(pool, &c, key, NULL);
}
