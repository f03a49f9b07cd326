/*
 * test_balancer.c - unit tests of balancer/: lb_pick for every algorithm
 * (exact smooth round-robin order, shares, skipping down/disabled/tried/full
 * servers, backups, leastconn, p2c, source stability) and lb_hash.
 * Pools are built from hand-made cfg_pool structs; no sockets.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "balancer/lb.h"

#define MAX_SRV 16

/* A hand-built configuration and the pool made from it. */
struct fixture {
	struct cfg_pool cfg;
	struct cfg_server srv[MAX_SRV];
	char names[MAX_SRV][16];
	struct lb_pool *pool;
	struct lb_worker w;
};

/* SPEC: "name:weight[:b][:d][:mN]" per server (b backup, d disabled, mN maxconn). */
static void fx_init(struct fixture *f, enum cfg_balance bal, const char *const *spec, size_t n)
{
	memset(f, 0, sizeof(*f));
	cr_assert(n <= MAX_SRV);
	f->cfg.name = "p";
	f->cfg.balance = bal;
	f->cfg.servers = f->srv;
	f->cfg.n_servers = n;
	for (size_t i = 0; i < n; i++) {
		const char *p = strchr(spec[i], ':');

		snprintf(f->names[i], sizeof(f->names[i]), "%.*s", (int)(p - spec[i]), spec[i]);
		f->srv[i].name = f->names[i];
		f->srv[i].weight = atoi(p + 1);
		f->srv[i].backup = strstr(p, ":b") != NULL;
		f->srv[i].disabled = strstr(p, ":d") != NULL;
		if (strstr(p, ":m"))
			f->srv[i].maxconn = atoi(strstr(p, ":m") + 2);
	}
	f->pool = lb_pool_new(&f->cfg);
	cr_assert_not_null(f->pool);
	lb_worker_init(&f->w, 42);
}

static void fx_deinit(struct fixture *f)
{
	lb_worker_deinit(&f->w);
	lb_pool_free(f->pool);
}

static struct lb_server *srv(struct fixture *f, size_t i)
{
	return f->pool->servers[i];
}

static void set_state(struct fixture *f, size_t i, enum lb_state st)
{
	atomic_store(&srv(f, i)->state, st);
}

static struct lb_server *pick(struct fixture *f, uint64_t key)
{
	return lb_pick(f->pool, &f->w, key, NULL, 0);
}

/* Counts N picks per server index (keys i * 7919 hashed, for the hashers). */
static void count_picks(struct fixture *f, size_t n, unsigned *counts)
{
	memset(counts, 0, MAX_SRV * sizeof(*counts));
	for (size_t i = 0; i < n; i++) {
		uint64_t k = i * 7919;
		struct lb_server *s = pick(f, lb_hash(&k, sizeof(k)));

		cr_assert_not_null(s);
		counts[s->index]++;
	}
}

static const enum cfg_balance all_algos[] = {BAL_ROUNDROBIN, BAL_LEASTCONN, BAL_RANDOM, BAL_P2C,
					     BAL_SOURCE,     BAL_MAGLEV,    BAL_RING};
#define N_ALGOS (sizeof(all_algos) / sizeof(all_algos[0]))

/* Local, so these tests do not depend on config/. */
static const char *algo_name(enum cfg_balance b)
{
	static const char *const names[] = {"roundrobin", "leastconn", "random", "p2c",
					    "source",	  "maglev",    "ring"};

	return names[b];
}

Test(roundrobin, nginx_sequence_5_1_1)
{
	const char *spec[] = {"a:5", "b:1", "c:1"};
	struct fixture f;
	char seq[15] = {0};

	fx_init(&f, BAL_ROUNDROBIN, spec, 3);
	for (int i = 0; i < 14; i++)
		seq[i] = pick(&f, 0)->name[0];
	cr_log_info("smooth WRR 5,1,1: %s", seq);
	cr_expect_str_eq(seq, "aabacaaaabacaa");
	fx_deinit(&f);
}

Test(roundrobin, equal_weights_spread_exactly)
{
	const char *spec[] = {"a:1", "b:1", "c:1", "d:1"};
	struct fixture f;
	unsigned counts[MAX_SRV];

	fx_init(&f, BAL_ROUNDROBIN, spec, 4);
	count_picks(&f, 400, counts);
	cr_log_info("rr equal: %u %u %u %u", counts[0], counts[1], counts[2], counts[3]);
	for (int i = 0; i < 4; i++)
		cr_expect_eq(counts[i], 100);
	fx_deinit(&f);
}

Test(roundrobin, weights_3_1_share)
{
	const char *spec[] = {"a:3", "b:1"};
	struct fixture f;
	unsigned counts[MAX_SRV];

	fx_init(&f, BAL_ROUNDROBIN, spec, 2);
	count_picks(&f, 4000, counts);
	cr_log_info("rr 3:1 -> %u:%u", counts[0], counts[1]);
	cr_expect_eq(counts[0], 3000);
	cr_expect_eq(counts[1], 1000);
	fx_deinit(&f);
}

Test(roundrobin, state_reset_when_pool_changes)
{
	const char *spec[] = {"a:5", "b:1", "c:1"};
	struct fixture f, g;

	fx_init(&f, BAL_ROUNDROBIN, spec, 3);
	fx_init(&g, BAL_ROUNDROBIN, spec, 2);
	pick(&f, 0);
	/* Same worker state used on another pool: starts over from zero. */
	cr_expect_str_eq(lb_pick(g.pool, &f.w, 0, NULL, 0)->name, "a");
	cr_expect_eq(f.w.pool, g.pool);
	cr_expect_eq(f.w.n, 2);
	fx_deinit(&f);
	fx_deinit(&g);
}

Test(random, weights_3_1_share)
{
	const char *spec[] = {"a:3", "b:1"};
	struct fixture f;
	unsigned counts[MAX_SRV];

	fx_init(&f, BAL_RANDOM, spec, 2);
	count_picks(&f, 100000, counts);
	cr_log_info("random 3:1 -> %u:%u (ratio %.3f)", counts[0], counts[1],
		    (double)counts[0] / counts[1]);
	cr_expect(counts[0] > 73000 && counts[0] < 77000);
	fx_deinit(&f);
}

Test(all, down_drain_disabled_skipped)
{
	const char *spec[] = {"a:1:d", "b:1", "c:1", "d:1"};
	unsigned counts[MAX_SRV];

	for (size_t k = 0; k < N_ALGOS; k++) {
		struct fixture f;

		fx_init(&f, all_algos[k], spec, 4);
		cr_expect_eq(atomic_load(&srv(&f, 0)->state), SRV_DISABLED);
		set_state(&f, 1, SRV_DOWN);
		set_state(&f, 2, SRV_DRAIN);
		count_picks(&f, 2000, counts);
		cr_expect_eq(counts[3], 2000, "%s: only d is up, got %u", algo_name(all_algos[k]),
			     counts[3]);
		set_state(&f, 3, SRV_DOWN);
		cr_expect_null(pick(&f, 1), "%s: nothing up", algo_name(all_algos[k]));
		fx_deinit(&f);
	}
}

Test(all, backup_only_when_no_normal_usable)
{
	const char *spec[] = {"a:1", "b:1", "bk:1:b"};
	unsigned counts[MAX_SRV];

	for (size_t k = 0; k < N_ALGOS; k++) {
		struct fixture f;
		const char *name = algo_name(all_algos[k]);

		fx_init(&f, all_algos[k], spec, 3);
		count_picks(&f, 1000, counts);
		cr_expect_eq(counts[2], 0, "%s: backup used while normals are up", name);
		set_state(&f, 0, SRV_DOWN);
		count_picks(&f, 1000, counts);
		cr_expect_eq(counts[1], 1000, "%s: b is the only normal server up", name);
		set_state(&f, 1, SRV_DOWN);
		count_picks(&f, 1000, counts);
		cr_expect_eq(counts[2], 1000, "%s: backup when all normals are down", name);
		set_state(&f, 0, SRV_UP);
		count_picks(&f, 1000, counts);
		cr_expect_eq(counts[0], 1000, "%s: a is back", name);
		fx_deinit(&f);
	}
}

Test(all, maxconn_respected)
{
	const char *spec[] = {"a:1:m2", "b:1"};
	unsigned counts[MAX_SRV];

	for (size_t k = 0; k < N_ALGOS; k++) {
		struct fixture f;

		fx_init(&f, all_algos[k], spec, 2);
		lb_server_get(srv(&f, 0));
		lb_server_get(srv(&f, 0));
		count_picks(&f, 1000, counts);
		cr_expect_eq(counts[0], 0, "%s: a is full", algo_name(all_algos[k]));
		/* Room again; b as loaded, so leastconn and p2c may pick a too. */
		lb_server_put(srv(&f, 0));
		lb_server_get(srv(&f, 1));
		count_picks(&f, 1000, counts);
		cr_expect(counts[0] > 0, "%s: a has room again", algo_name(all_algos[k]));
		fx_deinit(&f);
	}
}

/* Two threads (two workers) take and give back places of a maxconn=1
 * server as fast as they can: a pick that saw the place free and lost it
 * to the other must be refused, never counted past the cap. Each thread
 * goes on until both have had places (a thread may finish a fixed count
 * before the other is even scheduled), up to a bound. A thread yields
 * after giving its place back: without it, the core that last wrote the
 * counter can win every race for it, and the other thread never gets a
 * place at all (seen on a CI machine: 20000000 to 0). */
#define TAKE_MIN_TRIES	200000
#define TAKE_MAX_TRIES	20000000
#define TAKE_MIN_PLACES 1000

struct taker {
	struct lb_server *s;
	_Atomic unsigned taken;
	unsigned over;
	const struct taker *peer;
};

static void *take_and_put(void *arg)
{
	struct taker *t = arg;

	for (long i = 0; i < TAKE_MAX_TRIES; i++) {
		if (i >= TAKE_MIN_TRIES && atomic_load(&t->taken) >= TAKE_MIN_PLACES &&
		    atomic_load(&t->peer->taken) >= TAKE_MIN_PLACES)
			break;
		if (!lb_server_take(t->s))
			continue;
		atomic_fetch_add(&t->taken, 1);
		if (atomic_load(t->s->active) > t->s->maxconn)
			t->over++;
		lb_server_put(t->s);
		sched_yield();
	}
	return NULL;
}

Test(all, maxconn_holds_across_threads)
{
	const char *spec[] = {"a:1:m1"};
	struct fixture f;
	struct taker t[2];
	pthread_t th[2];

	fx_init(&f, BAL_ROUNDROBIN, spec, 1);
	for (int i = 0; i < 2; i++) {
		t[i].s = srv(&f, 0);
		atomic_init(&t[i].taken, 0);
		t[i].over = 0;
		t[i].peer = &t[1 - i];
	}
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, take_and_put, &t[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	unsigned a = atomic_load(&t[0].taken), b = atomic_load(&t[1].taken);
	cr_expect(a > 0 && b > 0, "each thread got places: %u %u", a, b);
	cr_expect_eq(t[0].over + t[1].over, 0, "%u times past maxconn=1", t[0].over + t[1].over);
	cr_expect_eq(atomic_load(srv(&f, 0)->active), 0);
	fx_deinit(&f);
}

Test(all, tried_servers_skipped)
{
	const char *spec[] = {"a:1", "b:1", "c:1"};

	for (size_t k = 0; k < N_ALGOS; k++) {
		struct fixture f;
		const char *name = algo_name(all_algos[k]);

		fx_init(&f, all_algos[k], spec, 3);
		struct lb_server *tried[2] = {srv(&f, 0), srv(&f, 2)};

		for (uint64_t i = 0; i < 1000; i++) {
			uint64_t key = lb_hash(&i, sizeof(i));

			cr_assert_eq(lb_pick(f.pool, &f.w, key, tried, 1)->index == 0, 0, "%s",
				     name);
			cr_assert_eq(lb_pick(f.pool, &f.w, key, tried, 2)->index, 1, "%s", name);
		}
		struct lb_server *all3[3] = {srv(&f, 0), srv(&f, 1), srv(&f, 2)};

		cr_expect_null(lb_pick(f.pool, &f.w, 5, all3, 3), "%s", name);
		fx_deinit(&f);
	}
}

Test(all, backup_after_every_normal_tried)
{
	const char *spec[] = {"a:1", "bk:1:b"};

	for (size_t k = 0; k < N_ALGOS; k++) {
		struct fixture f;

		fx_init(&f, all_algos[k], spec, 2);
		struct lb_server *tried[1] = {srv(&f, 0)};

		cr_expect_eq(lb_pick(f.pool, &f.w, 9, tried, 1), srv(&f, 1), "%s",
			     algo_name(all_algos[k]));
		fx_deinit(&f);
	}
}

/* What the health thread does after a change of state, for the hashers. */
static void rebuild_if_table(struct fixture *f)
{
	struct lb_table *old;

	if (f->pool->balance == BAL_MAGLEV || f->pool->balance == BAL_RING) {
		cr_assert_eq(lb_pool_rebuild(f->pool, &old), 0);
		lb_table_free(old);
	}
}

/* Weight 0 takes no new traffic, as in HAProxy: not when its peers are
 * down, and not in place of the backups. */
Test(all, zero_weight_gets_nothing)
{
	const char *spec[] = {"a:0", "b:1", "c:1:b"};
	unsigned counts[MAX_SRV];

	for (size_t k = 0; k < N_ALGOS; k++) {
		struct fixture f;
		const char *name = algo_name(all_algos[k]);

		fx_init(&f, all_algos[k], spec, 3);
		count_picks(&f, 1000, counts);
		cr_expect_eq(counts[0], 0, "%s: weight 0 picked", name);
		cr_expect_eq(counts[1], 1000, "%s: b got %u", name, counts[1]);
		set_state(&f, 1, SRV_DOWN);
		rebuild_if_table(&f);
		count_picks(&f, 1000, counts);
		cr_expect_eq(counts[0], 0, "%s: weight 0 picked when its peer is down", name);
		cr_expect_eq(counts[2], 1000, "%s: the backup got %u", name, counts[2]);
		set_state(&f, 2, SRV_DOWN);
		rebuild_if_table(&f);
		cr_expect_null(pick(&f, 7), "%s: only weight 0 is left: no pick", name);
		fx_deinit(&f);
	}
}

Test(leastconn, prefers_lowest_active)
{
	const char *spec[] = {"a:1", "b:1", "c:1"};
	struct fixture f;

	fx_init(&f, BAL_LEASTCONN, spec, 3);
	atomic_store(srv(&f, 0)->active, 5);
	atomic_store(srv(&f, 1)->active, 2);
	atomic_store(srv(&f, 2)->active, 7);
	cr_expect_str_eq(pick(&f, 0)->name, "b");
	/* Taking connections as picked evens the loads out: a and b reach 7. */
	for (int i = 0; i < 7; i++)
		lb_server_get(pick(&f, 0));
	cr_expect_eq(atomic_load(srv(&f, 0)->active), 7);
	cr_expect_eq(atomic_load(srv(&f, 1)->active), 7);
	cr_expect_eq(atomic_load(srv(&f, 2)->active), 7);
	/* Equal loads: ties rotate instead of always taking the first. */
	unsigned seen[3] = {0, 0, 0};

	for (int i = 0; i < 30; i++)
		seen[pick(&f, 0)->index]++;
	cr_log_info("leastconn ties: %u %u %u", seen[0], seen[1], seen[2]);
	cr_expect(seen[0] && seen[1] && seen[2]);
	fx_deinit(&f);
}

Test(leastconn, ties_alternate_past_servers_that_are_not_candidates)
{
	/* A disabled server and a backup between and after the two that can
	 * take traffic: with no load anywhere the picks alternate a, b, a, b. */
	const char *spec[] = {"a:1", "x:1:d", "b:1", "y:1:b", "z:1:d"};
	struct fixture f;
	unsigned seen[5] = {0};

	fx_init(&f, BAL_LEASTCONN, spec, 5);
	struct lb_server *prev = NULL;
	for (int i = 0; i < 30; i++) {
		struct lb_server *s = pick(&f, 0);
		cr_assert(s);
		cr_expect_neq(s, prev, "pick %d repeated %s", i, s->name);
		prev = s;
		seen[s->index]++;
	}
	cr_expect_eq(seen[0], 15);
	cr_expect_eq(seen[2], 15);
	fx_deinit(&f);
}

Test(leastconn, honours_weight)
{
	const char *spec[] = {"a:3", "b:1"};
	struct fixture f;

	fx_init(&f, BAL_LEASTCONN, spec, 2);
	for (int i = 0; i < 400; i++)
		lb_server_get(pick(&f, 0));
	cr_log_info("leastconn 3:1 after 400: %d:%d", atomic_load(srv(&f, 0)->active),
		    atomic_load(srv(&f, 1)->active));
	cr_expect_eq(atomic_load(srv(&f, 0)->active), 300);
	cr_expect_eq(atomic_load(srv(&f, 1)->active), 100);
	fx_deinit(&f);
}

Test(p2c, spread_over_three)
{
	const char *spec[] = {"a:1", "b:1", "c:1"};
	struct fixture f;
	struct lb_server *inflight[16] = {0};
	unsigned counts[3] = {0, 0, 0};
	const int n = 30000;

	fx_init(&f, BAL_P2C, spec, 3);
	/* Connections live for 16 picks: loads matter and change. */
	for (int i = 0; i < n; i++) {
		struct lb_server *s = pick(&f, 0);

		if (inflight[i % 16])
			lb_server_put(inflight[i % 16]);
		lb_server_get(s);
		inflight[i % 16] = s;
		counts[s->index]++;
	}
	cr_log_info("p2c 3 servers, %d picks: %u %u %u", n, counts[0], counts[1], counts[2]);
	for (int i = 0; i < 3; i++)
		cr_expect(counts[i] > n / 3 * 0.9 && counts[i] < n / 3 * 1.1, "server %d: %u", i,
			  counts[i]);
	/* Without any load it is still spread (first drawn wins the tie). */
	for (int i = 0; i < 16; i++)
		if (inflight[i])
			lb_server_put(inflight[i]);
	memset(counts, 0, sizeof(counts));
	for (int i = 0; i < n; i++)
		counts[pick(&f, 0)->index]++;
	cr_log_info("p2c idle: %u %u %u", counts[0], counts[1], counts[2]);
	for (int i = 0; i < 3; i++)
		cr_expect(counts[i] > n / 3 * 0.9 && counts[i] < n / 3 * 1.1);
	fx_deinit(&f);
}

Test(p2c, less_loaded_of_two_wins)
{
	const char *spec[] = {"a:1", "b:1"};
	struct fixture f;

	fx_init(&f, BAL_P2C, spec, 2);
	atomic_store(srv(&f, 0)->active, 3);
	for (int i = 0; i < 100; i++)
		cr_assert_str_eq(pick(&f, 0)->name, "b");
	fx_deinit(&f);
}

/* Idle servers (every request over before the next, as sequential
 * keep-alive traffic is) tie at no load: leastconn and p2c then share by
 * weight, as nginx's least_conn and HAProxy's random(2) do, instead of
 * sending everything to the heaviest server. */
Test(all, idle_servers_share_by_weight)
{
	static const enum cfg_balance kinds[] = {BAL_LEASTCONN, BAL_P2C};
	const char *spec[] = {"a:3", "b:2", "c:1"};
	const int n = 6000;

	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		unsigned counts[3] = {0, 0, 0};
		struct fixture f;

		fx_init(&f, kinds[k], spec, 3);
		for (int i = 0; i < n; i++)
			counts[pick(&f, 0)->index]++;
		cr_log_info("%s idle 3:2:1: %u %u %u", kinds[k] == BAL_P2C ? "p2c" : "leastconn",
			    counts[0], counts[1], counts[2]);
		for (int i = 0; i < 3; i++) {
			double want = n * (3 - i) / 6.0;
			cr_expect(counts[i] > want * 0.9 && counts[i] < want * 1.1,
				  "%s server %d: %u of %d, want about %.0f",
				  kinds[k] == BAL_P2C ? "p2c" : "leastconn", i, counts[i], n, want);
		}
		fx_deinit(&f);
	}
}

Test(source, stable_and_spread)
{
	const char *spec[] = {"a:1", "b:1", "c:1", "d:1"};
	struct fixture f;
	unsigned counts[MAX_SRV];
	const size_t n = 40000;
	uint32_t *first = malloc(n * sizeof(*first));
	size_t moved_other = 0, moved_own = 0;

	fx_init(&f, BAL_SOURCE, spec, 4);
	for (size_t i = 0; i < n; i++) {
		uint32_t ip = 0x0a000000u + (uint32_t)i;
		uint64_t key = lb_hash(&ip, sizeof(ip));

		first[i] = pick(&f, key)->index;
		for (int r = 0; r < 3; r++)
			cr_assert_eq(pick(&f, key)->index, first[i]);
	}
	count_picks(&f, n, counts);
	cr_log_info("source 4 servers, %zu keys: %u %u %u %u", n, counts[0], counts[1], counts[2],
		    counts[3]);
	for (int i = 0; i < 4; i++)
		cr_expect(counts[i] > n / 4 * 0.95 && counts[i] < n / 4 * 1.05);
	/* Server c leaves: only its keys move. */
	set_state(&f, 2, SRV_DOWN);
	for (size_t i = 0; i < n; i++) {
		uint32_t ip = 0x0a000000u + (uint32_t)i;
		uint32_t now = pick(&f, lb_hash(&ip, sizeof(ip)))->index;

		moved_own += first[i] == 2;
		moved_other += first[i] != 2 && now != first[i];
	}
	cr_log_info("source: c down moves %zu own keys, %zu of the others", moved_own, moved_other);
	cr_expect_eq(moved_other, 0);
	free(first);
	fx_deinit(&f);
}

Test(source, weights_2_1)
{
	const char *spec[] = {"a:2", "b:1"};
	struct fixture f;
	unsigned counts[MAX_SRV];

	fx_init(&f, BAL_SOURCE, spec, 2);
	count_picks(&f, 90000, counts);
	cr_log_info("source 2:1 -> %u:%u (ratio %.3f)", counts[0], counts[1],
		    (double)counts[0] / counts[1]);
	cr_expect(counts[0] > 59000 && counts[0] < 61000);
	fx_deinit(&f);
}

Test(hash, xxh64_vectors_and_names)
{
	cr_expect_eq(lb_hash("", 0), 0xEF46DB3751D8E999ULL);
	cr_expect_eq(lb_hash("a", 1), 0xD24EC4F1A98C6E5BULL);
	cr_expect_eq(lb_hash("abc", 3), 0x44BC2CF5AD770999ULL);
	/* Long inputs exercise the 32-byte stripes. */
	char buf[4000];

	for (int i = 0; i < 999; i++)
		memcpy(buf + 3 * i, "abc", 3);
	cr_expect_eq(lb_hash(buf, 2997), 0x933EB85613976467ULL);
	for (int i = 0; i < 1000; i++)
		memcpy(buf + 4 * i, "abcd", 4);
	cr_expect_eq(lb_hash(buf, 4000), 0x205219D38E8898BCULL);
	cr_expect_str_eq(lb_state_name(SRV_UP), "up");
	cr_expect_str_eq(lb_state_name(SRV_DOWN), "down");
	cr_expect_str_eq(lb_state_name(SRV_DRAIN), "drain");
	cr_expect_str_eq(lb_state_name(SRV_DISABLED), "disabled");
}

Test(hash, local_hash_is_seeded_at_start)
{
	const char key[] = "www.example.com";
	uint64_t fixed = lb_hash_local(key, sizeof(key) - 1); /* with the fixed seed */

	lb_hash_local_seed();
	uint64_t first = lb_hash_local(key, sizeof(key) - 1);
	/* The drawn seed holds until the next draw: a table keyed by the hash
	 * finds its keys again. */
	for (int i = 0; i < 3; i++)
		cr_expect_eq(lb_hash_local(key, sizeof(key) - 1), first,
			     "the seed changed between calls");
	lb_hash_local_seed();
	uint64_t second = lb_hash_local(key, sizeof(key) - 1);
	/* Two draws of 64 random bits agree with probability 2^-64. */
	cr_expect_neq(first, fixed);
	cr_expect_neq(second, first);
	cr_expect_neq(lb_hash(key, sizeof(key) - 1), second, "server picks keep the fixed hash");
}
