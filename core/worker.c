/*
 * worker.c - a worker thread's event loop (see worker.h).
 *
 * The loop: sleep in epoll_wait until an event or the next timer; handle the
 * batch; resume the connections that used up their budget or held a write
 * back; run due timers; free what closed in the batch; flush the access log.
 *
 * Writes to servers are held back to the end of the batch (conn_defer_write)
 * because waking a peer that sleeps in epoll_wait is the dearest part of a
 * small send on loopback, dearer still in a VM where it takes an IPI. Sent
 * one by one between the batch's reads, the writes of a busy batch each find
 * the server asleep again; sent together, most find it still awake.
 *
 * The epoch counter is odd while a batch runs and even while asleep, which
 * is all the main thread needs to know when a replaced generation can no
 * longer be seen here.
 *
 * Listening sockets are level-triggered, unlike everything else: accepting a
 * bounded number per wakeup then needs no bookkeeping to come back for the
 * rest, and on EMFILE the listener is paused for a moment rather than spun on.
 * The main thread adds and drops them (core/binds.c): a listening socket
 * names its bind, whose listener the worker looks up in its generation.
 */
#include "core/worker.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/http/forward.h"
#include "core/relay.h"
#include "core/upstream.h"

#define EVENTS_PER_BATCH  256
#define ACCEPTS_PER_EVENT 64
/* A removed socket's queue, emptied at once: at most a full backlog. */
#define RETIRE_ACCEPTS_MAX 65536
#define ACCEPT_PAUSE_MS	   100
/* Spreads the per-pool random seeds of workers apart (a prime). */
#define LB_SEED_STRIDE 7919

_Atomic uint64_t worker_conns_total;
_Atomic bool worker_fds_shared;

int worker_watch(struct worker *w, int fd, uint32_t events, struct ev_handler *h)
{
	struct epoll_event ev = {.events = events, .data.ptr = h};
	return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static struct buf_cache *buf_cache_for(struct worker *w, size_t size)
{
	for (size_t i = 0; i < ARRAY_SIZE(w->bufs); i++)
		if (w->bufs[i].size == size || w->bufs[i].size == 0)
			return &w->bufs[i];
	return NULL;
}

void *worker_buf_get(struct worker *w, size_t size)
{
	struct buf_cache *bc = buf_cache_for(w, size);
	if (bc && bc->n)
		return bc->slots[--bc->n];
	return malloc(size);
}

void worker_buf_put(struct worker *w, void *buf, size_t size)
{
	struct buf_cache *bc = buf_cache_for(w, size);
	if (!buf)
		return;
	if (!bc || bc->n == BUF_CACHE_SLOTS) {
		free(buf);
		return;
	}
	bc->size = size;
	bc->slots[bc->n++] = buf;
}

static void buf_caches_free(struct worker *w)
{
	for (size_t i = 0; i < ARRAY_SIZE(w->bufs); i++)
		while (w->bufs[i].n)
			free(w->bufs[i].slots[--w->bufs[i].n]);
}

struct lb_worker *worker_lb(struct worker *w, const struct gen *g, int pool_index)
{
	if (g == w->gen && (size_t)pool_index < w->n_lbw)
		return &w->lbw[pool_index];
	/* A connection from an older generation retrying: its pool is not
	 * one of gen's. */
	return &w->foreign_lbw;
}

static void set_gen(struct worker *w, struct gen *g)
{
	/* Without memory for the new pools' state the old one stays: picks
	 * treat it as foreign and reset it (worker_lb). */
	struct lb_worker *lbw = calloc(g->cfg->n_pools ? g->cfg->n_pools : 1, sizeof(*lbw));
	if (lbw) {
		for (size_t i = 0; i < w->n_lbw; i++)
			lb_worker_deinit(&w->lbw[i]);
		free(w->lbw);
		w->lbw = lbw;
		w->n_lbw = g->cfg->n_pools;
		for (size_t i = 0; i < w->n_lbw; i++)
			lb_worker_init(&w->lbw[i], (uint64_t)w->id * LB_SEED_STRIDE + i + 1);
	}
	if (w->gen)
		gen_put(w->gen);
	w->gen = gen_get(g);
	upstream_close_unserved(w, g);
}

static void refresh_gen(struct worker *w)
{
	struct gen *g = atomic_load_explicit(&gen_current, memory_order_acquire);
	if (g != w->gen)
		set_gen(w, g);
}

#define ACCEPT_WARN_EVERY_MS 10000

/* Says that accept ran out of ERR (descriptors, memory) and the listeners
 * pause: at once the first time, then at most every ACCEPT_WARN_EVERY_MS
 * with the count of pauses in between, not ten lines a second. */
static void warn_accept_paused(struct worker *w, int err)
{
	if (w->accept_warned_ms && w->now_ms - w->accept_warned_ms < ACCEPT_WARN_EVERY_MS) {
		w->accept_pauses_unsaid++;
		return;
	}
	log_warn("worker %d: accept: %s; pausing listeners for %d ms (%u more pauses since the "
		 "last warning)",
		 w->id, strerror(err), ACCEPT_PAUSE_MS, w->accept_pauses_unsaid);
	w->accept_warned_ms = w->now_ms ? w->now_ms : 1;
	w->accept_pauses_unsaid = 0;
}

/* Stops watching LS for ACCEPT_PAUSE_MS. */
static void pause_listener(struct listen_sock *ls)
{
	struct worker *w = ls->w;
	struct epoll_event ev = {.events = 0, .data.ptr = &ls->h};

	epoll_ctl(w->epfd, EPOLL_CTL_MOD, ls->fd, &ev);
	if (!atomic_load(&ls->paused)) {
		atomic_store(&ls->paused, true);
		ls->paused_next = w->paused;
		w->paused = ls;
	}
	timer_add(&w->timers, &w->accept_timer, w->now_ms + ACCEPT_PAUSE_MS);
}

/* Empties W's list of paused listeners, watching them again when ACCEPT.
 * A listener the main thread dropped meanwhile (live false) is left alone:
 * its fd may be closed already. Once paused is false the main thread may
 * free it, so that goes last. */
static void unpause_listeners(struct worker *w, bool accept)
{
	while (w->paused) {
		struct listen_sock *ls = w->paused;
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &ls->h};

		w->paused = ls->paused_next;
		if (accept && atomic_load(&ls->live))
			epoll_ctl(w->epfd, EPOLL_CTL_MOD, ls->fd, &ev);
		atomic_store(&ls->paused, false);
	}
}

static void resume_listeners(struct timer *t)
{
	unpause_listeners(container_of(t, struct worker, accept_timer), true);
}

static void refuse(struct worker *w, const struct cfg_listener *lc, int fd,
		   const union conn_addr *peer)
{
	struct log_record r = {
		.start_wall_ms = wall_ms(),
		.client = &peer->sa,
		.listener = lc->name,
		.ttfb_ms = -1,
		.reason = close_reason_name(CR_MAX_CONNECTIONS),
	};
	/* What the client sent already would make close() answer with a
	 * reset; taken out first, the client sees a plain end of stream. */
	char junk[4096];
	(void)recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
	close(fd);
	STAT_ADD(w->stats[lc->slot].refused, 1);
	log_access(w->log, &r);
}

/* Accepts one connection from LS for listener LI, as bind BIND; false when
 * there was none (or accept failed: out of descriptors pauses LS). */
static bool accept_one(struct worker *w, struct listen_sock *ls, int li, uint32_t bind)
{
	union conn_addr peer;
	socklen_t len = sizeof(peer);
	int fd = accept4(ls->fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0) {
		if (err_out_of_resources(errno)) {
			warn_accept_paused(w, errno);
			pause_listener(ls);
		}
		return false;
	}
	if (len < sizeof(peer.sa) || peer.sa.sa_family == AF_UNIX)
		peer.sa.sa_family = AF_UNIX;
	if (atomic_fetch_add_explicit(&worker_conns_total, 1, memory_order_relaxed) >=
	    w->gen->cfg->global.max_connections) {
		atomic_fetch_sub_explicit(&worker_conns_total, 1, memory_order_relaxed);
		refuse(w, &w->gen->cfg->listeners[li], fd, &peer);
		return true;
	}
	conn_accept(w, (uint32_t)li, bind, fd, &peer);
	return true;
}

static void on_accept(struct ev_handler *h, uint32_t events)
{
	struct listen_sock *ls = container_of(h, struct listen_sock, h);
	struct worker *w = ls->w;
	int li = gen_listener_of_bind(w->gen, ls->bind);
	(void)events;

	/* A socket on its way out (its bind gone from the generation just
	 * published, or a stop) until the main thread takes it from the
	 * epoll: held back rather than spun on, level-triggered as it is. */
	if (li < 0 || w->draining || !atomic_load(&ls->live)) {
		pause_listener(ls);
		return;
	}
	for (int i = 0; i < ACCEPTS_PER_EVENT; i++)
		if (!accept_one(w, ls, li, ls->bind))
			return; /* EAGAIN, or a transient error: level-triggered */
}

/* Empties LS, a socket a reload removed, into its heir's listener (see
 * worker_retire), then shuts it: the kernel resets what is still queued on
 * a listening socket it closes, and would on the old one of a bind moved
 * from 127.0.0.1:P to 0.0.0.0:P, which takes every new connection to
 * 127.0.0.1 until it goes. The last accept and the shutdown follow each
 * other, so next to nothing can slip in between. */
static void empty_retired(struct worker *w, struct listen_sock *ls)
{
	int li = ls->heir && !w->draining ? gen_listener_of_bind(w->gen, ls->heir) : -1;

	/* Bounded: a flood must not hold the worker here. */
	for (int i = 0; li >= 0 && i < RETIRE_ACCEPTS_MAX; i++)
		if (!accept_one(w, ls, li, ls->heir))
			break;
	shutdown(ls->fd, SHUT_RD);
	atomic_store_explicit(&ls->retired, true, memory_order_release);
}

static void take_retiring(struct worker *w)
{
	/* A plain load first: this runs every batch. A push it misses rang
	 * the doorbell, so the next batch takes it. */
	if (!atomic_load_explicit(&w->retiring, memory_order_relaxed))
		return;
	struct listen_sock *ls = atomic_exchange(&w->retiring, NULL);

	refresh_gen(w); /* the generation without LS's bind came first */
	while (ls) {
		struct listen_sock *next = ls->retire_next;
		empty_retired(w, ls);
		ls = next;
	}
}

static void on_wake(struct ev_handler *h, uint32_t events)
{
	struct worker *w = container_of(h, struct worker, wake_h);
	uint64_t v;
	(void)events;
	while (read(w->wake_fd, &v, sizeof(v)) == sizeof(v))
		;
	forward_collect(w); /* the doorbell also rings for verdicts on credentials */
	if (atomic_exchange(&w->sweep, false))
		conn_sweep_disabled(w);
	int cmd = atomic_load(&w->cmd);
	if (cmd == WORKER_RUN || (w->swept && cmd == WORKER_GRACEFUL) ||
	    (w->past_deadline && cmd == WORKER_DEADLINE))
		return;
	/* The main thread drops the listening sockets (binds_drop_all). */
	w->draining = true;
	/* No more accepting: the main thread may free what was paused. */
	timer_del(&w->timers, &w->accept_timer);
	unpause_listeners(w, false);
	/* Hand-off: every response from now on closes its connection, so
	 * clients move to the new process as they go; what is still here at
	 * WORKER_GRACEFUL has been idle since, which a close hardly races. */
	if (cmd == WORKER_HANDOFF)
		return;
	w->swept = true;
	upstream_pool_deinit(&w->upstreams);
	if (cmd == WORKER_STOP) {
		while (!list_is_empty(&w->conns)) {
			struct conn *c = container_of(w->conns.next, struct conn, node);
			conn_close(c, CR_SHUTDOWN);
		}
		return;
	}
	if (cmd == WORKER_DEADLINE) {
		/* Tunnels, tcp connections and unfinished heads go; requests
		 * in flight finish, and the drain below ends their connection
		 * after the response (the same, when no graceful stop came
		 * before: graceful_timeout = 0). */
		w->past_deadline = true;
		for (struct list *n = w->conns.next, *next; n != &w->conns; n = next) {
			next = n->next;
			struct conn *c = container_of(n, struct conn, node);
			if (!conn_answering(c))
				conn_close(c, CR_SHUTDOWN);
		}
	}
	/* Graceful: connections between requests go now, the others after
	 * their current response. */
	for (struct list *n = w->conns.next, *next; n != &w->conns; n = next) {
		next = n->next;
		conn_drain(container_of(n, struct conn, node));
	}
}

static void free_closed(struct worker *w)
{
	while (!list_is_empty(&w->closed)) {
		struct conn *c = container_of(w->closed.next, struct conn, node);
		list_del(&c->node);
		gen_put(c->gen);
		free(c);
	}
}

static void run_pending(struct worker *w)
{
	struct list todo;

	/* Take the list: resuming may put a conn back for the next round. */
	list_take_all(&todo, &w->pending);
	size_t n = 0;
	for (struct list *i = todo.next; i != &todo; i = i->next)
		n++;
	w->turn_budget = relay_turn_budget(n);
	while (!list_is_empty(&todo)) {
		struct conn *c = container_of(todo.next, struct conn, pending_node);
		list_del(&c->pending_node);
		conn_resume(c);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event events[EVENTS_PER_BATCH];

	for (;;) {
		int timeout = list_is_empty(&w->pending) ? timer_wheel_timeout_ms(&w->timers) : 0;
		atomic_fetch_add_explicit(&w->epoch, 1, memory_order_release); /* even: asleep */
		int n = epoll_wait(w->epfd, events, EVENTS_PER_BATCH, timeout);
		/* odd: busy. seq_cst pairs with the publisher's fence: either it
		 * sees this worker busy, or this worker sees the new generation. */
		atomic_fetch_add_explicit(&w->epoch, 1, memory_order_seq_cst);
		/* A seq_cst RMW alone does not order the acquire loads after it
		 * against the publisher's store-fence-load (store buffering). */
		atomic_thread_fence(memory_order_seq_cst);
		w->now_ms = clock_ms();
		refresh_gen(w);
		take_retiring(w);
		w->in_batch = true;
		w->turn_budget = relay_turn_budget((size_t)(n > 0 ? n : 0));
		for (int i = 0; i < n; i++) {
			struct ev_handler *h = events[i].data.ptr;
			h->fn(h, events[i].events);
		}
		w->in_batch = false;
		run_pending(w);
		timer_wheel_advance(&w->timers, w->now_ms);
		free_closed(w);
		upstream_free_closed(w);
		/* With no connection left, give back the spare pipes' fds. */
		if (w->n_conns == 0 && w->pipes.n_free)
			pipe_pool_deinit(&w->pipes);
		/* Last: once a connection's line is in the log, everything it
		 * held is closed. */
		log_flush(w->log);
		if (w->draining && w->n_conns == 0)
			break;
	}
	atomic_fetch_add_explicit(&w->epoch, 1, memory_order_release);
	atomic_store(&w->exited, true);
	return NULL;
}

int worker_init(struct worker *w, int id, struct gen *g)
{
	memset(w, 0, sizeof(*w));
	/* Even while asleep: the loop adds 1 before epoll_wait, so start odd. */
	atomic_init(&w->epoch, 1);
	w->id = id;
	list_init(&w->conns);
	list_init(&w->closed);
	list_init(&w->pending);
	w->turn_budget = RELAY_BUDGET;
	list_init(&w->closed_upstreams);
	upstream_pool_init(&w->upstreams);
	w->now_ms = clock_ms();
	timer_wheel_init(&w->timers, w->now_ms);
	timer_init(&w->accept_timer, resume_listeners);
	pipe_pool_init(&w->pipes, g->cfg->global.pipe_size);
	w->scratch_cap = g->cfg->global.buffer_size;
	w->scratch = malloc(w->scratch_cap);
	w->log = calloc(1, sizeof(*w->log));
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!w->scratch || !w->log || w->epfd < 0 || w->wake_fd < 0)
		return -ENOMEM;
	set_gen(w, g);
	lb_worker_init(&w->foreign_lbw, (uint64_t)w->id * LB_SEED_STRIDE);
	w->wake_h.fn = on_wake;
	return worker_watch(w, w->wake_fd, EPOLLIN | EPOLLET, &w->wake_h);
}

int worker_listen(struct worker *w, struct listen_sock *ls)
{
	ls->w = w;
	ls->h.fn = on_accept;
	atomic_store(&ls->live, true);
	return worker_watch(w, ls->fd, EPOLLIN, &ls->h);
}

uint64_t worker_unlisten(struct worker *w, struct listen_sock *ls)
{
	atomic_store(&ls->live, false);
	epoll_ctl(w->epfd, EPOLL_CTL_DEL, ls->fd, NULL);
	/* Even: asleep, or just back from an epoll_wait whose events may still
	 * name LS; past the batch that follows, it is gone. Odd: in a batch
	 * that may hold an event of LS; past its end. */
	uint64_t e = atomic_load(&w->epoch);
	return e % 2 == 0 ? e + 2 : e + 1;
}

void worker_retire(struct worker *w, struct listen_sock *ls)
{
	atomic_store(&ls->retired, false);
	ls->retire_next = atomic_load(&w->retiring);
	while (!atomic_compare_exchange_weak(&w->retiring, &ls->retire_next, ls))
		;
	worker_poke(w);
}

bool worker_past(struct worker *w, uint64_t epoch)
{
	return atomic_load(&w->epoch) >= epoch || atomic_load(&w->exited);
}

int worker_start(struct worker *w, bool pin)
{
	int err = pthread_create(&w->thread, NULL, worker_main, w);
	if (err)
		return -err;
	/* cpu_affinity = auto: worker i on the i-th online CPU, so each core
	 * keeps its own connections, caches and softirq work. */
	if (pin) {
		cpu_set_t online, one;
		int n = 0;
		CPU_ZERO(&one);
		if (sched_getaffinity(0, sizeof(online), &online) == 0) {
			for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
				if (CPU_ISSET(cpu, &online) && n++ == w->id % CPU_COUNT(&online))
					CPU_SET(cpu, &one);
			if (CPU_COUNT(&one))
				pthread_setaffinity_np(w->thread, sizeof(one), &one);
		}
	}
	return 0;
}

void worker_poke(struct worker *w)
{
	uint64_t one = 1;
	ssize_t n = write(w->wake_fd, &one, sizeof(one));
	(void)n;
}

void worker_send(struct worker *w, enum worker_cmd cmd)
{
	atomic_store(&w->cmd, cmd);
	worker_poke(w);
}

void worker_request_sweep(struct worker *w)
{
	atomic_store(&w->sweep, true);
	worker_poke(w);
}

/* The epoch past which (worker_past) W has passed a quiescent point after
 * this call: worker_wait_quiescent without the wait. */
static uint64_t worker_quiescent_epoch(struct worker *w)
{
	uint64_t e = atomic_load_explicit(&w->epoch, memory_order_acquire);
	return e % 2 == 0 ? e : e + 1;
}

void worker_wait_quiescent(struct worker *w)
{
	uint64_t e = atomic_load_explicit(&w->epoch, memory_order_acquire);
	if (e % 2 == 0 || atomic_load(&w->exited))
		return;
	while (atomic_load_explicit(&w->epoch, memory_order_acquire) == e &&
	       !atomic_load(&w->exited))
		usleep(100);
}

/* --- Registry of the running workers (see worker.h) --- */
static struct worker *registry;
static int registry_n;

void workers_register(struct worker *ws, int n)
{
	registry = ws;
	registry_n = n;
}

void workers_wait_quiescent(void)
{
	/* Orders the caller's unpublishing store before the epoch loads below
	 * (store-load), so a worker seen asleep cannot still hold the old
	 * pointer once it wakes. */
	atomic_thread_fence(memory_order_seq_cst);
	for (int i = 0; i < registry_n; i++)
		worker_wait_quiescent(&registry[i]);
}

struct retired {
	void *obj;
	void (*free_fn)(void *);
	struct retired *next;
	struct worker *ws; /* the registry when it was retired */
	int n;
	uint64_t after[]; /* per worker: the epoch past which it cannot hold OBJ */
};

void retire(struct retire_list *l, void *obj, void (*free_fn)(void *))
{
	struct retired *r = malloc(sizeof(*r) + (size_t)registry_n * sizeof(r->after[0]));

	if (!r) {
		workers_wait_quiescent();
		free_fn(obj);
		return;
	}
	*r = (struct retired){.obj = obj, .free_fn = free_fn, .ws = registry, .n = registry_n};
	/* As in workers_wait_quiescent: the unpublishing store, then the
	 * epoch loads. */
	atomic_thread_fence(memory_order_seq_cst);
	for (int i = 0; i < r->n; i++)
		r->after[i] = worker_quiescent_epoch(&r->ws[i]);
	r->next = l->head;
	l->head = r;
}

bool retire_collect(struct retire_list *l)
{
	for (struct retired **pp = &l->head; *pp;) {
		struct retired *r = *pp;
		int i = 0;
		while (i < r->n && worker_past(&r->ws[i], r->after[i]))
			i++;
		if (i < r->n) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		r->free_fn(r->obj);
		free(r);
	}
	return l->head != NULL;
}

void retire_drain(struct retire_list *l)
{
	while (retire_collect(l))
		usleep(1000);
}
/* --- end of registry --- */

void worker_join(struct worker *w)
{
	pthread_join(w->thread, NULL);
}

void worker_deinit(struct worker *w)
{
	for (size_t i = 0; i < w->n_lbw; i++)
		lb_worker_deinit(&w->lbw[i]);
	free(w->lbw);
	lb_worker_deinit(&w->foreign_lbw);
	if (w->gen)
		gen_put(w->gen);
	upstream_pool_deinit(&w->upstreams);
	upstream_free_closed(w);
	forward_worker_free(w);
	buf_caches_free(w);
	pipe_pool_deinit(&w->pipes);
	free(w->scratch);
	free(w->log);
	if (w->epfd >= 0)
		close(w->epfd);
	if (w->wake_fd >= 0)
		close(w->wake_fd);
}
