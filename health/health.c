/*
 * health.c - the health-check thread (see health.h): its event loop, the
 * up/down decisions and the handover between generations.
 *
 * Thread: everything here runs on the health thread, except the four hc_*
 * entry points, which the main (or admin) thread calls and which talk to the
 * thread through a mailbox (a mutex-guarded pointer, a stop flag and an
 * eventfd doorbell; never on a worker's path).
 *
 * Invariants:
 * - The health thread keeps its own verdict per server (struct hc_server.up)
 *   and writes server->state for health reasons, only between SRV_UP and
 *   SRV_DOWN, with a compare-and-swap, so a DRAIN or DISABLED set by the
 *   admin API is never overwritten. Workers only report (server->fails);
 *   their picks skip a server whose count reached max_fails until this
 *   thread's next sample marks it down.
 * - Every server's verdict is re-applied after each check and each passive
 *   sample, so a server the admin API enables again converges to it.
 * - A table replaced by lb_pool_rebuild() is freed only after every worker
 *   has passed a quiescent point (retire: the thread does not wait for it).
 * - Active checks: a server's first check starts at a random point of its
 *   interval, later ones every interval +-10%, so checks never run in
 *   lockstep. One timer per server: while idle it is the next check, while a
 *   probe runs it is check_timeout.
 */
#include "health/health.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "core/worker.h"
#include "health/probe.h"
#include "health/sched.h"

/* How often the workers' failure counters are read. */
#define HC_SAMPLE_MS 100
#define HC_EVENTS    64

struct hc_pool;

/* The health thread's record of one server of its generation. Owned and
 * touched by the health thread only; lives until the next generation is
 * adopted. */
struct hc_server {
	struct lb_server *srv; /* borrowed from the generation */
	struct hc_pool *hp;
	struct hc_timer timer;
	struct hc_probe probe;
	struct hc_check check;
	uint64_t check_start_ms;
	/* While a generation is adopted: the record of the same server in the
	 * one replaced (find_old), and when the check taken over from it has
	 * its timer due (take_over; 0 = none taken over). */
	struct hc_server *prev;
	uint64_t resume_ms;

	/* The verdict and what leads to it. */
	bool up;
	bool passive_down; /* marked down by max_fails, not by checks */
	bool probation; /* back after fail_timeout, no success seen yet (sample_passive) */
	int ok_run, fail_run; /* consecutive results, capped at rise/fall */
	uint64_t down_ms; /* when it went down (fail_timeout counts from it) */

	/* A verdict logged only once the tables carry it (announce_verdicts),
	 * so that "UP" in the log means the server takes traffic. */
	bool announce;
	char why[160];
};

struct hc_pool {
	struct lb_pool *pool; /* borrowed from the generation */
	const struct cfg_pool *cfg;
	struct hc_server *servers;
	size_t n;
	SSL_CTX *tls_ctx; /* http checks over TLS; NULL otherwise */
	bool dirty; /* the up-set changed: the table needs a rebuild */
	bool announce; /* some server holds a verdict to log */
};

/* The one health thread. The mailbox fields (under lock) are shared with
 * the calling threads; everything else is the thread's own once it runs. */
static struct {
	pthread_t thread;
	bool running;
	int epfd;
	int wake_fd;
	struct hc_sched sched;
	struct hc_timer sample_timer;
	uint64_t now_ms;
	uint64_t rng;

	struct gen *gen; /* one reference held */
	struct retire_list old_tables; /* replaced, freed once no worker can read them */
	struct hc_pool *pools;
	size_t n_pools;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct gen *pending; /* a generation to adopt, reference included */
	bool stop;
	_Atomic bool rebuild_all;
} hc = {
	.epfd = -1,
	.wake_fd = -1,
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
};

/* xorshift64: jitter only, nothing depends on its quality. */
static uint64_t next_random(void)
{
	uint64_t x = hc.rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	hc.rng = x;
	return x;
}

/* INTERVAL_MS +-10%. */
static uint64_t jittered(uint64_t interval_ms)
{
	uint64_t spread = interval_ms / 10;

	return interval_ms - spread + next_random() % (2 * spread + 1);
}

/* Arms T. The heap grows as it needs to, so this fails only without
 * memory; the timer then stays unarmed until a generation's adoption arms
 * its servers again, and the error log says so. */
static void arm(struct hc_timer *t, uint64_t due_ms)
{
	if (hc_sched_add(&hc.sched, t, due_ms) < 0)
		log_error("health: out of memory arming a timer; a check is skipped");
}

/* ------------------------------------------------------------ verdicts -- */

/* Applies HS's verdict to server->state when the state is health's to set,
 * and marks the pool's table stale when the state changed. */
static void publish_state(struct hc_server *hs)
{
	int want = hs->up ? SRV_UP : SRV_DOWN;
	int cur = atomic_load_explicit(&hs->srv->state, memory_order_relaxed);

	/* Kept even while the admin API holds the state, for its enable. */
	atomic_store_explicit(&hs->srv->health_down, !hs->up, memory_order_relaxed);
	if (cur == want || (cur != SRV_UP && cur != SRV_DOWN))
		return;
	/* The recovery time, before the state: the weight-based balances
	 * ramp the server up over slow_start from there. */
	if (want == SRV_UP)
		atomic_store_explicit(&hs->srv->up_since_ms, hc.now_ms ? hc.now_ms : 1,
				      memory_order_relaxed);
	if (atomic_compare_exchange_strong(&hs->srv->state, &cur, want))
		hs->hp->dirty = true;
}

static void set_verdict(struct hc_server *hs, bool up, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Turns HS up or down; why (FMT: the reason, SPEC §6) is logged after the
 * batch's table rebuild. */
static void set_verdict(struct hc_server *hs, bool up, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(hs->why, sizeof(hs->why), fmt, ap);
	va_end(ap);
	hs->announce = true;
	hs->hp->announce = true;
	hs->up = up;
	if (up) {
		hs->passive_down = false;
		/* Failures while down are forgotten; on probation, one more fails it. */
		int fails = hs->probation ? hs->hp->cfg->max_fails - 1 : 0;
		atomic_store_explicit(&hs->srv->fails, fails, memory_order_relaxed);
	} else {
		hs->down_ms = hc.now_ms;
		hs->probation = false;
	}
	publish_state(hs);
}

/* One active check's result: rise/fall hysteresis. */
static void record_result(struct hc_server *hs, bool ok, const char *reason)
{
	const struct cfg_pool *pc = hs->hp->cfg;
	struct lb_server *s = hs->srv;

	atomic_fetch_add_explicit(ok ? &s->checks_ok : &s->checks_fail, 1, memory_order_relaxed);
	if (ok) {
		hs->fail_run = 0;
		if (hs->ok_run < pc->rise)
			hs->ok_run++;
		if (!hs->up && hs->ok_run >= pc->rise)
			set_verdict(hs, true, "check passed (%d/%d)", hs->ok_run, pc->rise);
	} else {
		hs->ok_run = 0;
		if (hs->fail_run < pc->fall)
			hs->fail_run++;
		if (hs->up && hs->fail_run >= pc->fall)
			set_verdict(hs, false, "%s (%d/%d)", reason, hs->fail_run, pc->fall);
		else
			log_debug("server %s/%s check failed: %s", hs->hp->pool->name, s->name,
				  reason);
	}
	publish_state(hs);
}

/* A server deleted through the admin API is left alone: no checks, no
 * verdicts. */
static bool is_removed(const struct hc_server *hs)
{
	return atomic_load_explicit(&hs->srv->removed, memory_order_relaxed);
}

/* Passive health: max_fails failures in a row take an up server down; its
 * check's rise brings it back, or with check = none fail_timeout does, on
 * probation as in nginx (count at max_fails - 1: one failure downs it). */
static void sample_passive(struct hc_server *hs)
{
	const struct cfg_pool *pc = hs->hp->cfg;

	if (is_removed(hs))
		return;

	if (hs->up) {
		int fails = atomic_load_explicit(&hs->srv->fails, memory_order_relaxed);

		if (hs->probation && fails < pc->max_fails - 1)
			hs->probation = false; /* a success cleared the count */
		if (pc->max_fails > 0 && fails >= pc->max_fails) {
			hs->ok_run = hs->fail_run = 0;
			if (hs->probation)
				set_verdict(hs, false, "failed again after fail_timeout (passive)");
			else
				set_verdict(hs, false,
					    "%d consecutive failure%s seen by traffic (passive)",
					    fails, fails == 1 ? "" : "s");
			hs->passive_down = true;
			atomic_store_explicit(&hs->srv->fails, 0, memory_order_relaxed);
		}
	} else if (hs->passive_down && pc->check == CHECK_NONE &&
		   hc.now_ms - hs->down_ms >= pc->fail_timeout_ms) {
		hs->probation = pc->max_fails > 1; /* with 1, any failure does it */
		set_verdict(hs, true, "fail_timeout (%llu ms) passed, trying it again",
			    (unsigned long long)pc->fail_timeout_ms);
	}
	publish_state(hs);
}

static void on_sample_timer(void)
{
	for (size_t i = 0; i < hc.n_pools; i++)
		for (size_t k = 0; k < hc.pools[i].n; k++)
			sample_passive(&hc.pools[i].servers[k]);
	arm(&hc.sample_timer, hc.now_ms + HC_SAMPLE_MS);
}

/* -------------------------------------------------------------- checks -- */

static void check_end(struct hc_server *hs)
{
	uint64_t next = hs->check_start_ms + jittered(hs->hp->cfg->check_interval_ms);

	if (is_removed(hs))
		return; /* and its timer stays unarmed */
	if (hs->probe.no_verdict)
		log_debug("server %s/%s not checked: %s", hs->hp->pool->name, hs->srv->name,
			  hs->probe.reason);
	else
		record_result(hs, hs->probe.ok, hs->probe.reason);
	if (next <= hc.now_ms)
		next = hc.now_ms + 1;
	arm(&hs->timer, next);
}

static void check_begin(struct hc_server *hs)
{
	if (is_removed(hs))
		return; /* and its timer stays unarmed */
	hs->check_start_ms = hc.now_ms;
	if (hc_probe_start(&hs->probe, &hs->check, &hs->srv->addr, hc.epfd, hs)) {
		check_end(hs);
		return;
	}
	arm(&hs->timer, hc.now_ms + hs->hp->cfg->check_timeout_ms);
}

/* The server's one timer: check_timeout of a running probe (or the end of
 * its drain grace), else the next check is due. */
static void on_server_timer(struct hc_server *hs)
{
	if (hc_probe_is_running(&hs->probe)) {
		hc_probe_timeout(&hs->probe);
		check_end(hs);
		return;
	}
	check_begin(hs);
}

static void on_probe_event(struct hc_server *hs, uint32_t events)
{
	struct hc_probe *p = &hs->probe;
	bool judged = p->state == PROBE_DRAINING;

	if (!hc_probe_is_running(p))
		return;
	if (hc_probe_event(p, &hs->check, events)) {
		check_end(hs);
		return;
	}
	if (!judged && p->state == PROBE_DRAINING) {
		uint64_t due = hc.now_ms + HC_DRAIN_GRACE_MS;
		if (due < hs->check_start_ms + hs->hp->cfg->check_timeout_ms)
			arm(&hs->timer, due);
	}
}

/* -------------------------------------------------------------- tables -- */

/* Logs the verdicts of this batch. Called once the tables are rebuilt: a
 * test or an operator who reads "UP" may send traffic at once. */
static void announce_verdicts(void)
{
	for (size_t i = 0; i < hc.n_pools; i++) {
		struct hc_pool *hp = &hc.pools[i];

		if (!hp->announce || hp->dirty) /* dirty: not rebuilt yet */
			continue;
		hp->announce = false;
		for (size_t k = 0; k < hp->n; k++) {
			struct hc_server *hs = &hp->servers[k];

			if (!hs->announce)
				continue;
			hs->announce = false;
			log_warn("server %s/%s %s: %s", hp->pool->name, hs->srv->name,
				 hs->up ? "UP" : "DOWN", hs->why);
		}
	}
}

static void free_table(void *t)
{
	lb_table_free(t);
}

/* Rebuilds the tables of the pools whose up-set changed, logs the verdicts
 * behind them, and retires the old tables, freed once no worker can still
 * read them. A pool whose rebuild failed (ENOMEM) stays dirty: next time. */
static void rebuild_dirty(void)
{
	for (size_t i = 0; i < hc.n_pools; i++) {
		struct hc_pool *hp = &hc.pools[i];
		struct lb_table *t;

		if (!hp->dirty)
			continue;
		if (lb_pool_rebuild(hp->pool, &t) < 0) {
			log_error("pool %s: out of memory rebuilding its table; retrying",
				  hp->pool->name);
			continue;
		}
		hp->dirty = false;
		if (t)
			retire(&hc.old_tables, t, free_table);
	}
	announce_verdicts();
	retire_collect(&hc.old_tables);
}

/* ---------------------------------------------------------- generations -- */

static int server_init(struct hc_server *hs, struct hc_pool *hp, struct lb_server *s)
{
	hs->srv = s;
	hs->hp = hp;
	hs->up = true;
	hc_probe_init(&hs->probe);
	return hc_check_init(&hs->check, hp->cfg, &s->addr, s->proxy_protocol, hp->tls_ctx);
}

static void pools_free(struct hc_pool *pools, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < pools[i].n; k++) {
			struct hc_server *hs = &pools[i].servers[k];

			hc_probe_abort(&hs->probe);
			hc_sched_del(&hc.sched, &hs->timer);
			hc_check_deinit(&hs->check);
		}
		free(pools[i].servers);
		SSL_CTX_free(pools[i].tls_ctx);
	}
	free(pools);
}

/* The record of the same server (pool name, server name, address) in the
 * generation being replaced, or NULL. */
static struct hc_server *find_old(const struct hc_pool *hp, const struct lb_server *s)
{
	for (size_t i = 0; i < hc.n_pools; i++) {
		const struct hc_pool *op = &hc.pools[i];

		if (strcmp(op->pool->name, hp->pool->name) != 0)
			continue;
		for (size_t k = 0; k < op->n; k++) {
			const struct lb_server *os = op->servers[k].srv;

			/* A deleted server's verdict froze when its checks
			 * stopped: one re-added in its place starts afresh. */
			if (os != s && atomic_load_explicit(&os->removed, memory_order_relaxed))
				continue;
			if (strcmp(os->name, s->name) == 0 && os->addr.text && s->addr.text &&
			    strcmp(os->addr.text, s->addr.text) == 0)
				return &op->servers[k];
		}
		return NULL;
	}
	return NULL;
}

static void carry_over(struct hc_server *hs, const struct hc_server *old)
{
	const struct cfg_pool *pc = hs->hp->cfg;

	hs->up = old->up;
	hs->passive_down = old->passive_down;
	hs->down_ms = old->down_ms;
	/* Still on probation (the count the main thread copied may predate it). */
	hs->probation = old->probation && hs->up && pc->max_fails > 1;
	if (hs->probation)
		atomic_store_explicit(&hs->srv->fails, pc->max_fails - 1, memory_order_relaxed);
	hs->ok_run = old->ok_run < pc->rise ? old->ok_run : pc->rise;
	hs->fail_run = old->fail_run < pc->fall ? old->fail_run : pc->fall;
	/* A server still ramping up (slow_start) goes on ramping. */
	atomic_store_explicit(&hs->srv->up_since_ms,
			      atomic_load_explicit(&old->srv->up_since_ms, memory_order_relaxed),
			      memory_order_relaxed);
	/* Down by active checks that the new file turned off: nothing would
	 * ever bring it back (fail_timeout is for what traffic saw). */
	if (!hs->up && !hs->passive_down && pc->check == CHECK_NONE) {
		set_verdict(hs, true, "active checks turned off (check = none)");
		return;
	}
	publish_state(hs);
}

static int pool_init(struct hc_pool *hp, struct lb_pool *pool)
{
	char why[128];

	hp->pool = pool;
	hp->cfg = pool->cfg;
	hp->servers = calloc(pool->n_servers ? pool->n_servers : 1, sizeof(*hp->servers));
	if (!hp->servers)
		return -ENOMEM;
	if (hc_check_uses_tls(hp->cfg)) {
		hp->tls_ctx = hc_tls_ctx_new(hp->cfg, why, sizeof(why));
		if (!hp->tls_ctx)
			log_error("pool %s: cannot set up TLS for its health checks (%s); they "
				  "will fail",
				  pool->name, why);
	}
	return 0;
}

/* Builds the records for generation G into *OUT, carrying over what the
 * current generation knows. 0 or -ENOMEM (nothing allocated then). */
static int pools_build(struct gen *g, struct hc_pool **out)
{
	size_t n = g->cfg->n_pools;
	struct hc_pool *pools = calloc(n ? n : 1, sizeof(*pools));

	if (!pools)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct hc_pool *hp = &pools[i];

		if (pool_init(hp, g->pools[i]) < 0)
			goto fail;
		for (size_t k = 0; k < hp->pool->n_servers; k++) {
			struct hc_server *hs = &hp->servers[k];

			hp->n = k + 1;
			if (server_init(hs, hp, hp->pool->servers[k]) < 0)
				goto fail;
			hs->prev = find_old(hp, hs->srv);
			if (hs->prev)
				carry_over(hs, hs->prev);
		}
	}
	*out = pools;
	return 0;
fail:
	pools_free(pools, n);
	return -ENOMEM;
}

/* HS takes over the check of its record in the generation being replaced
 * when it checks the same server the same way: a running probe goes on in
 * HS, and the next check stays due when it was. Otherwise generations
 * coming faster than a check takes (servers added through the API every few
 * hundred ms, reloads) would abort every check before its verdict. */
static void take_over(struct hc_server *hs)
{
	struct hc_server *prev = hs->prev;

	hs->prev = NULL;
	hs->resume_ms = 0;
	if (!prev || !prev->timer.pos ||
	    !hc_check_same(&prev->check, prev->hp->cfg, &hs->check, hs->hp->cfg))
		return;
	if (hc_probe_is_running(&prev->probe) && !hc_probe_move(&hs->probe, &prev->probe, hs))
		return;
	hs->check_start_ms = prev->check_start_ms;
	hs->resume_ms = prev->timer.due_ms;
}

/* Makes G (whose reference the caller hands over) the generation checked,
 * dropping the previous one. On ENOMEM G's servers go unchecked (and stay
 * as their configuration says), which is logged. */
static void adopt(struct gen *g)
{
	struct hc_pool *pools = NULL;

	if (pools_build(g, &pools) < 0)
		log_error("health: out of memory; the servers of generation %llu are not checked",
			  (unsigned long long)g->number);
	for (size_t i = 0; pools && i < g->cfg->n_pools; i++)
		for (size_t k = 0; k < pools[i].n; k++)
			take_over(&pools[i].servers[k]);
	if (hc.pools)
		pools_free(hc.pools, hc.n_pools);
	if (hc.gen)
		gen_put(hc.gen);
	hc.gen = g;
	hc.pools = pools;
	hc.n_pools = pools ? g->cfg->n_pools : 0;
	size_t n_timers = 1;
	for (size_t i = 0; i < hc.n_pools; i++)
		n_timers += hc.pools[i].n;
	if (hc_sched_reserve(&hc.sched, n_timers) < 0)
		log_error("health: out of memory; some checks may not run");
	for (size_t i = 0; i < hc.n_pools; i++) {
		struct hc_pool *hp = &hc.pools[i];

		if (hp->cfg->check == CHECK_NONE || hp->cfg->check_interval_ms == 0)
			continue;
		/* A new server's first check at a random point of the interval. */
		for (size_t k = 0; k < hp->n; k++) {
			struct hc_server *hs = &hp->servers[k];
			arm(&hs->timer,
			    hs->resume_ms ? hs->resume_ms
					  : hc.now_ms + next_random() % hp->cfg->check_interval_ms);
		}
	}
	/* G's tables were built on the main thread, and may predate a verdict
	 * given since; the main thread waits, so only those are rebuilt. */
	for (size_t i = 0; i < hc.n_pools; i++)
		hc.pools[i].dirty = !lb_table_is_current(hc.pools[i].pool);
	rebuild_dirty();
}

/* --------------------------------------------------------------- loop -- */

/* The doorbell rang: a generation to adopt, a stop, or a rebuild request.
 * Returns false when the thread must stop. */
static bool on_wake(void)
{
	uint64_t v;
	bool stop;

	while (read(hc.wake_fd, &v, sizeof(v)) == sizeof(v))
		;
	pthread_mutex_lock(&hc.lock);
	if (hc.pending) {
		adopt(hc.pending);
		hc.pending = NULL;
		pthread_cond_broadcast(&hc.cond);
	}
	stop = hc.stop;
	pthread_mutex_unlock(&hc.lock);
	if (atomic_exchange(&hc.rebuild_all, false))
		for (size_t i = 0; i < hc.n_pools; i++)
			hc.pools[i].dirty = true;
	return !stop;
}

static void *hc_main(void *arg)
{
	struct epoll_event events[HC_EVENTS];
	(void)arg;

	for (;;) {
		int timeout = hc_sched_timeout_ms(&hc.sched, clock_ms());
		/* Replaced tables go as soon as the workers let go of them. */
		if (retire_collect(&hc.old_tables) && (timeout < 0 || timeout > 2))
			timeout = 2;
		int n = epoll_wait(hc.epfd, events, HC_EVENTS, timeout);
		struct hc_timer *t;
		bool woken = false;

		hc.now_ms = clock_ms();
		for (int i = 0; i < n; i++) {
			if (events[i].data.ptr)
				on_probe_event(events[i].data.ptr, events[i].events);
			else
				woken = true;
		}
		while ((t = hc_sched_pop_due(&hc.sched, hc.now_ms))) {
			if (t == &hc.sample_timer)
				on_sample_timer();
			else
				on_server_timer(container_of(t, struct hc_server, timer));
		}
		rebuild_dirty();
		/* Records are replaced only here, after the batch (and after
		 * its verdicts are logged): no event above can point at a
		 * freed one. */
		if (woken) {
			if (!on_wake())
				break;
			rebuild_dirty();
		}
	}
	return NULL;
}

static void ring(void)
{
	uint64_t one = 1;
	ssize_t n = write(hc.wake_fd, &one, sizeof(one));
	(void)n;
}

/* ---------------------------------------------------------------- API -- */

/* Releases what the thread used; it is not running (joined, or never
 * started). */
static void teardown(void)
{
	retire_drain(&hc.old_tables);
	if (hc.pools)
		pools_free(hc.pools, hc.n_pools);
	hc.pools = NULL;
	hc.n_pools = 0;
	if (hc.gen)
		gen_put(hc.gen);
	hc.gen = NULL;
	if (hc.epfd >= 0)
		close(hc.epfd);
	if (hc.wake_fd >= 0)
		close(hc.wake_fd);
	hc.epfd = hc.wake_fd = -1;
	hc_sched_deinit(&hc.sched);
}

int hc_start(struct gen *g)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	int err;

	hc.now_ms = clock_ms();
	hc.rng = (wall_ms() ^ ((uint64_t)getpid() << 32)) | 1;
	hc.stop = false;
	hc_sched_init(&hc.sched);
	hc.epfd = epoll_create1(EPOLL_CLOEXEC);
	hc.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (hc.epfd < 0 || hc.wake_fd < 0 ||
	    epoll_ctl(hc.epfd, EPOLL_CTL_ADD, hc.wake_fd, &ev) < 0) {
		err = -errno;
		teardown();
		return err;
	}
	/* No thread yet: the first adoption runs here. */
	adopt(gen_get(g));
	arm(&hc.sample_timer, hc.now_ms + HC_SAMPLE_MS);
	err = -pthread_create(&hc.thread, NULL, hc_main, NULL);
	if (err < 0) {
		teardown();
		return err;
	}
	hc.running = true;
	return 0;
}

void hc_set_gen(struct gen *g)
{
	if (!hc.running)
		return;
	pthread_mutex_lock(&hc.lock);
	hc.pending = gen_get(g);
	ring();
	while (hc.pending)
		pthread_cond_wait(&hc.cond, &hc.lock);
	pthread_mutex_unlock(&hc.lock);
}

void hc_rebuild_tables(void)
{
	if (!hc.running)
		return;
	atomic_store(&hc.rebuild_all, true);
	ring();
}

void hc_stop(void)
{
	if (!hc.running)
		return;
	pthread_mutex_lock(&hc.lock);
	hc.stop = true;
	pthread_mutex_unlock(&hc.lock);
	ring();
	pthread_join(hc.thread, NULL);
	hc.running = false;
	teardown();
}
