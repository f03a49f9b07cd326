/*
 * test_slow_start.c - unit tests of slow_start: lb_server_effective_weight()
 * (the linear ramp from a thousandth to the full weight after a recovery) and what
 * lb_pick makes of it (roundrobin, random, leastconn and p2c ramp a
 * recovered server up; source, maglev and ring ignore the ramp).
 * Pools are built from hand-made cfg_pool structs; no sockets.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <limits.h>
#include <string.h>
#include <time.h>

#include "balancer/lb.h"

/* Two servers, a and b, of weight W each, in a pool with slow_start = SS_MS. */
struct fixture {
	struct cfg_pool cfg;
	struct cfg_server srv[2];
	struct lb_pool *pool;
	struct lb_worker w;
};

static void fx_init(struct fixture *f, enum cfg_balance bal, int w, uint64_t ss_ms)
{
	static char *const names[] = {"a", "b"};

	memset(f, 0, sizeof(*f));
	f->cfg.name = "p";
	f->cfg.balance = bal;
	f->cfg.slow_start_ms = ss_ms;
	f->cfg.servers = f->srv;
	f->cfg.n_servers = 2;
	for (size_t i = 0; i < 2; i++) {
		f->srv[i].name = names[i];
		f->srv[i].weight = w;
	}
	f->pool = lb_pool_new(&f->cfg);
	cr_assert_not_null(f->pool);
	lb_worker_init(&f->w, 7);
}

static void fx_deinit(struct fixture *f)
{
	lb_worker_deinit(&f->w);
	lb_pool_free(f->pool);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Server b came back up AGO_MS ago. */
static void recovered(struct fixture *f, uint64_t ago_ms)
{
	atomic_store(&f->pool->servers[1]->up_since_ms, now_ms() - ago_ms);
}

/* Picks N times (key i hashed); returns how many went to b. Leastconn and
 * p2c see every pick as a connection still open. */
static unsigned picks_of_b(struct fixture *f, unsigned n)
{
	unsigned b = 0;

	for (unsigned i = 0; i < n; i++) {
		uint64_t k = i;
		struct lb_server *s = lb_pick(f->pool, &f->w, lb_hash(&k, sizeof(k)), NULL, 0);

		cr_assert_not_null(s);
		b += s->index == 1;
		lb_server_get(s);
	}
	for (size_t i = 0; i < 2; i++)
		atomic_store(f->pool->servers[i]->active, 0);
	return b;
}

/* ---- lb_server_effective_weight ---------------------------------------- */

static struct lb_server *server(int weight, uint64_t up_since_ms)
{
	struct cfg_server cs = {.name = "s", .weight = weight};
	struct lb_server *s = lb_server_new(&cs, 0);

	cr_assert_not_null(s);
	atomic_store(&s->up_since_ms, up_since_ms);
	return s;
}

Test(effective_weight, linear_ramp)
{
	struct lb_server *s = server(100, 5000);

	cr_expect_eq(lb_server_effective_weight(s, 1000, 5000), 1, "at the recovery: 1 unit");
	cr_expect_eq(lb_server_effective_weight(s, 1000, 5100), 10000);
	cr_expect_eq(lb_server_effective_weight(s, 1000, 5500), 50000);
	cr_expect_eq(lb_server_effective_weight(s, 1000, 5999), 99900);
	cr_expect_eq(lb_server_effective_weight(s, 1000, 6000), 100000, "ramp over: full");
	cr_expect_eq(lb_server_effective_weight(s, 1000, 90000), 100000);
	lb_server_unref(s);
}

Test(effective_weight, weight_one_ramps_too)
{
	struct lb_server *s = server(1, 5000);

	cr_expect_eq(lb_server_effective_weight(s, 20000, 5000), 1, "at the recovery: 1 unit");
	cr_expect_eq(lb_server_effective_weight(s, 20000, 5020), 1, "below one unit: 1, never 0");
	cr_expect_eq(lb_server_effective_weight(s, 20000, 7000), 100, "a tenth of the way");
	cr_expect_eq(lb_server_effective_weight(s, 20000, 15000), 500);
	cr_expect_eq(lb_server_effective_weight(s, 20000, 25000), LB_WEIGHT_SCALE, "ramp over");
	lb_server_unref(s);
}

Test(effective_weight, clock_read_before_the_recovery)
{
	struct lb_server *s = server(100, 5000);

	cr_expect_eq(lb_server_effective_weight(s, 1000, 4990), 1);
	lb_server_unref(s);
}

Test(effective_weight, no_ramp)
{
	struct lb_server *s = server(100, 0);

	cr_expect_eq(lb_server_effective_weight(s, 1000, 5000), 100 * LB_WEIGHT_SCALE,
		     "up from the start");
	atomic_store(&s->up_since_ms, 5000);
	cr_expect_eq(lb_server_effective_weight(s, 0, 5000), 100 * LB_WEIGHT_SCALE, "slow_start 0");
	lb_server_unref(s);
}

Test(effective_weight, zero_and_one)
{
	struct lb_server *z = server(0, 5000), *one = server(1, 5000);

	cr_expect_eq(lb_server_effective_weight(z, 1000, 5500), 0, "weight 0 stays 0");
	cr_expect_eq(lb_server_effective_weight(one, 1000, 5000), 1);
	cr_expect_eq(lb_server_effective_weight(one, 1000, 5999), 999);
	lb_server_unref(z);
	lb_server_unref(one);
}

Test(effective_weight, weight_changed_while_ramping)
{
	struct lb_server *s = server(10, 5000);

	cr_expect_eq(lb_server_effective_weight(s, 1000, 5500), 5000);
	atomic_store(&s->weight, 200);
	cr_expect_eq(lb_server_effective_weight(s, 1000, 5500), 100000,
		     "the admin API's new weight");
	lb_server_unref(s);
}

Test(effective_weight, large_values_do_not_overflow)
{
	uint64_t day_ms = 86400000ULL;
	struct lb_server *s = server(INT_MAX, 1);

	int cap = INT_MAX / LB_WEIGHT_SCALE * LB_WEIGHT_SCALE;

	cr_expect_eq(lb_server_effective_weight(s, 100 * day_ms, 1 + 50 * day_ms), cap / 2);
	cr_expect_eq(lb_server_effective_weight(s, 100 * day_ms, 1 + 100 * day_ms), cap);
	lb_server_unref(s);
}

/* ---- lb_pick ------------------------------------------------------------ */

/* Weights 100 each, slow_start 100 s: b, back 1 s ago, weighs 1 against 100;
 * back 100 s ago, its full share. */
static void ramps(enum cfg_balance bal, const char *name)
{
	struct fixture f;
	unsigned early, late, start;

	fx_init(&f, bal, 100, 100000);
	start = picks_of_b(&f, 1000);
	recovered(&f, 1000);
	early = picks_of_b(&f, 1000);
	recovered(&f, 100000);
	late = picks_of_b(&f, 1000);
	cr_log_info("%s: b got %u, then %u just back, then %u of 1000", name, start, early, late);
	cr_expect(start >= 400 && start <= 600, "%s: up from the start: %u of 1000", name, start);
	cr_expect(early <= 50, "%s: 1 s into a 100 s ramp: %u of 1000", name, early);
	cr_expect(late >= 400 && late <= 600, "%s: ramp over: %u of 1000", name, late);
	fx_deinit(&f);
}

Test(pick, roundrobin_ramps)
{
	ramps(BAL_ROUNDROBIN, "roundrobin");
}

Test(pick, random_ramps)
{
	ramps(BAL_RANDOM, "random");
}

Test(pick, leastconn_ramps)
{
	ramps(BAL_LEASTCONN, "leastconn");
}

Test(pick, p2c_ramps)
{
	ramps(BAL_P2C, "p2c");
}

Test(pick, roundrobin_halfway)
{
	struct fixture f;
	unsigned b;

	fx_init(&f, BAL_ROUNDROBIN, 100, 100000);
	recovered(&f, 50000);
	b = picks_of_b(&f, 1500);
	/* b weighs 50 against 100: a third of the picks. */
	cr_expect(b >= 480 && b <= 520, "halfway through the ramp: %u of 1500", b);
	fx_deinit(&f);
}

Test(pick, roundrobin_without_slow_start_ignores_recovery)
{
	struct fixture f;

	fx_init(&f, BAL_ROUNDROBIN, 100, 0);
	recovered(&f, 0);
	cr_expect_eq(picks_of_b(&f, 1000), 500);
	fx_deinit(&f);
}

/* The hashing balances place keys the same while a server ramps: a table
 * (maglev, ring) built while it ramps is built from its full weight. */
static void hashing_ignores(enum cfg_balance bal, const char *name)
{
	struct fixture f;
	struct lb_server *before[200];
	struct lb_table *old = NULL;

	fx_init(&f, bal, 100, 100000);
	for (uint64_t k = 0; k < 200; k++)
		before[k] = lb_pick(f.pool, &f.w, lb_hash(&k, sizeof(k)), NULL, 0);
	recovered(&f, 0);
	cr_assert_eq(lb_pool_rebuild(f.pool, &old), 0);
	lb_table_free(old); /* no worker thread reads it */
	for (uint64_t k = 0; k < 200; k++)
		cr_expect_eq(lb_pick(f.pool, &f.w, lb_hash(&k, sizeof(k)), NULL, 0), before[k],
			     "%s: key %llu moved while b ramps", name, (unsigned long long)k);
	fx_deinit(&f);
}

Test(pick, source_ignores_ramp)
{
	hashing_ignores(BAL_SOURCE, "source");
}

Test(pick, maglev_ignores_ramp)
{
	hashing_ignores(BAL_MAGLEV, "maglev");
}

Test(pick, ring_ignores_ramp)
{
	hashing_ignores(BAL_RING, "ring");
}
