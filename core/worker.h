/*
 * worker.h - a worker thread: its epoll instance, its SO_REUSEPORT listening
 * sockets, its timer wheel, pipes, log buffer and counters, and every
 * connection it accepted.
 *
 * Ownership: everything in struct worker belongs to its thread, except the
 * fields marked _Atomic, which the main thread reads (epoch, counters) or
 * writes (cmd) to talk to it. A connection lives its whole life on the
 * worker that accepted it.
 */
#ifndef FULCRUM_WORKER_H
#define FULCRUM_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "balancer/lb.h"
#include "core/gen.h"
#include "core/log.h"
#include "core/pipe_pool.h"
#include "core/stats.h"
#include "core/timer.h"
#include "core/util.h"
#include "core/http/parser.h"

/* Whatever epoll's data.ptr points at starts with this. */
struct ev_handler {
	void (*fn)(struct ev_handler *h, uint32_t events);
};

#define MAX_LISTENERS CFG_MAX_LISTENERS

/* Per-listener counters of one worker. Written only by that worker (relaxed
 * atomics compile to plain loads and stores), summed by readers. */
struct listener_stats {
	_Atomic uint64_t active;
	_Atomic uint64_t total;
	_Atomic uint64_t refused;
	_Atomic uint64_t bytes_in;
	_Atomic uint64_t bytes_out;
};

#define STAT_ADD(field, n)                                                                         \
	atomic_store_explicit(&(field),                                                            \
			      atomic_load_explicit(&(field), memory_order_relaxed) + (n),          \
			      memory_order_relaxed)

/* Spare I/O buffers of one size, so a request does not pay a malloc and a
 * free for each of its two buffers. */
#define BUF_CACHE_SLOTS 64

struct buf_cache {
	void *slots[BUF_CACHE_SLOTS];
	uint32_t n;
	size_t size; /* the size every cached buffer has; set by the first put */
};

/* The idle http server connections of a worker, by server (upstream.c). */
struct upstream_pool {
	struct list buckets[256];
	uint32_t bucket_n[256]; /* connections in each bucket */
	uint32_t count;
};

/* One listening socket of one worker. The main thread opens it, registers
 * it in the worker's epoll and, once the worker can no longer be using it,
 * closes it (core/binds.h); the worker only accepts from it. */
struct listen_sock {
	struct ev_handler h;
	int fd;
	uint32_t bind; /* its bind's id (cfg_addr.bind_id): the listener that has it serves it */
	_Atomic bool live; /* cleared before a reload or a stop drops it */
	struct worker *w;
	/* The worker's: its listeners paused on EMFILE. */
	struct listen_sock *paused_next;
	_Atomic bool paused; /* in that list (the main thread frees it only once out) */
	/* The main thread's (core/binds.c). */
	struct listen_sock *next;
	uint64_t close_after; /* dropped: the worker's epoch once it is done with it */
	/* Removed by a reload (worker_retire): the bind whose listener takes
	 * what is queued on it (its address moved to the wildcard, or back),
	 * 0 for none; done once the worker has emptied and shut it. */
	uint32_t heir;
	bool retiring; /* the main thread's: handed to worker_retire */
	struct listen_sock *retire_next;
	_Atomic bool retired;
};

/* WORKER_HANDOFF (a binary upgrade, core/upgrade.h): close the listeners,
 * which another process now accepts from, and end each connection after
 * its current response, but close none yet: WORKER_GRACEFUL or
 * WORKER_STOP follows. WORKER_DEADLINE (graceful_timeout passed): close
 * every connection but the http requests in flight, which end with their
 * response (SPEC §1: SIGTERM lets them finish). */
enum worker_cmd { WORKER_RUN, WORKER_GRACEFUL, WORKER_STOP, WORKER_HANDOFF, WORKER_DEADLINE };

struct worker {
	int id;
	pthread_t thread;
	int epfd;
	int wake_fd; /* eventfd: the main thread's doorbell */
	struct ev_handler wake_h;

	struct listen_sock *paused; /* listeners paused on EMFILE, until accept_timer */
	_Atomic(struct listen_sock *) retiring; /* worker_retire's, not yet emptied */

	struct gen *gen; /* this worker's snapshot, one reference held */
	struct lb_worker *lbw; /* per pool of gen */
	size_t n_lbw;
	/* For connections of older generations that retry: their pools are
	 * not gen's (there may be none), so they share this one, reset
	 * whenever the pool it serves changes. */
	struct lb_worker foreign_lbw;

	struct timer_wheel timers;
	struct timer accept_timer; /* resumes listeners paused on EMFILE */
	uint64_t now_ms;
	/* Out of descriptors at accept: when it was last said, and the pauses
	 * since, so a long shortage logs every ACCEPT_WARN_EVERY_MS. */
	uint64_t accept_warned_ms;
	unsigned accept_pauses_unsaid;
	struct pipe_pool pipes;
	struct log_buf *log;
	char *scratch; /* relay bounce buffer, gen->cfg->global.buffer_size */
	size_t scratch_cap;

	struct list conns; /* live connections */
	struct list closed; /* closed this batch; freed after it */
	struct list pending; /* resumed after the batch: out of budget, or a write held back */
	struct list closed_upstreams; /* freed after the batch, like closed */
	struct upstream_pool upstreams; /* idle http server connections */
	struct fwd_worker *fwd; /* forward mode: resolver, origins (core/http/forward.c) */
	struct http_head head; /* parse results, used within one call */
	struct buf_cache bufs[2]; /* by size: request buffers, response buffers */
	uint64_t n_conns;
	bool draining; /* listeners closed; each response closes its connection */
	bool in_batch; /* handling epoll_wait's events */
	size_t turn_budget; /* bytes a connection may relay per turn this round (relay.h) */
	bool swept; /* WORKER_GRACEFUL or WORKER_STOP closed the idle connections */
	bool past_deadline; /* WORKER_DEADLINE came: no new tunnel may start */

	_Atomic uint64_t epoch; /* odd while handling events, even while asleep */
	_Atomic int cmd; /* enum worker_cmd, set by the main thread */
	_Atomic bool exited;
	_Atomic bool sweep; /* set by the admin API: close connections to disabled servers */

	/* By cfg_listener.slot. */
	struct listener_stats stats[MAX_LISTENERS] __attribute__((aligned(CACHE_LINE)));
	struct pool_stats pool_stats[STATS_POOL_SLOTS]; /* by pool->stats_slot */
};

/* Connections across all workers, for max_connections. */
extern _Atomic uint64_t worker_conns_total;

/* Set by the main thread while a binary upgrade's child may hold a copy of
 * every fd (from its spawn until it says it runs, or is gone; see
 * core/upgrade.c). Closing an fd then
 * does not end its epoll registration, which the copy keeps alive, and
 * epoll would go on reporting events for a freed connection: worker_close
 * takes the fd out of the epoll first. */
extern _Atomic bool worker_fds_shared;

/* Worker thread: closes FD, watched in W's epoll. */
static inline void worker_close(struct worker *w, int fd)
{
	if (atomic_load(&worker_fds_shared))
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
}

/* Main thread: set up W (epoll, doorbell, buffers) for generation G. */
int worker_init(struct worker *w, int id, struct gen *g);
/* Main thread: LS (its fd open, its bind set) becomes one of W's listening
 * sockets; 0 or -errno. */
int worker_listen(struct worker *w, struct listen_sock *ls);
/* Main thread: LS is no longer W's to accept from (its fd stays open).
 * Returns the epoch of W past which W no longer touches it. */
uint64_t worker_unlisten(struct worker *w, struct listen_sock *ls);
/* Main thread, for a reload that removes LS's address: W accepts what is
 * queued on LS for its heir's listener (or for none), then shuts it, at
 * once, so that nothing queued in between is reset; LS->retired says when.
 * Call before worker_unlisten; the fd must stay open until retired or W
 * has exited. */
void worker_retire(struct worker *w, struct listen_sock *ls);
/* Whether W has run past EPOCH (as worker_unlisten gave it), or exited. */
bool worker_past(struct worker *w, uint64_t epoch);
/* Main thread: wakes W, so that it runs a batch. */
void worker_poke(struct worker *w);
/* Starts W's thread; PIN: bind it to one CPU (cpu_affinity = auto). */
int worker_start(struct worker *w, bool pin);
void worker_send(struct worker *w, enum worker_cmd cmd);
/* Main thread (admin API): asks W to close its connections, active and
 * idle pooled, to servers now in SRV_DISABLED (conn_sweep_disabled). */
void worker_request_sweep(struct worker *w);
/* Main thread: waits until W has passed a quiescent point (asleep in
 * epoll_wait, or one more batch done) after this call began. */
void worker_wait_quiescent(struct worker *w);
void worker_join(struct worker *w);

/* --- Registry of the running workers (for the health thread and retire) --
 * Main thread: workers_register() records the started workers (N of them at
 * WS; N = 0 clears it, before WS is freed). Any other thread may then call
 * workers_wait_quiescent(): it returns once every registered worker has
 * passed a quiescent point after the call began, so an object unpublished
 * before the call can be freed after it. */
void workers_register(struct worker *ws, int n);
void workers_wait_quiescent(void);

/* A thread's list of objects it unpublished, each freed once every
 * registered worker has passed a quiescent point after it went on the
 * list: workers_wait_quiescent without the wait, so that a worker held up
 * (by a log nobody reads, say) holds up nobody else. Zero-initialised. */
struct retire_list {
	struct retired *head;
};
/* Puts OBJ on L, to be freed with FREE_FN; the unpublishing store comes
 * first. Without memory for that, waits and frees OBJ at once. */
void retire(struct retire_list *l, void *obj, void (*free_fn)(void *));
/* Frees what every worker is past; returns whether anything is left. */
bool retire_collect(struct retire_list *l);
/* Waits for the workers, then frees everything on L. */
void retire_drain(struct retire_list *l);
/* --- end of registry --- */
void worker_deinit(struct worker *w);

/* Worker thread: a buffer of SIZE bytes (NULL when out of memory), and
 * giving it back. Buffers of the sizes in use come from a small cache. */
void *worker_buf_get(struct worker *w, size_t size);
void worker_buf_put(struct worker *w, void *buf, size_t size);

/* Worker thread: register FD with events pointing at H. */
int worker_watch(struct worker *w, int fd, uint32_t events, struct ev_handler *h);
/* The balancing state of pool INDEX of the worker's generation. */
struct lb_worker *worker_lb(struct worker *w, const struct gen *g, int pool_index);

#endif
