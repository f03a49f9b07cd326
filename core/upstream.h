/*
 * upstream.h - server connections of http mode, and the per-worker pool of
 * idle keep-alive ones.
 *
 * An upstream is attached to at most one client connection at a time (a
 * server connection is never shared by two requests at once). When a
 * response ends cleanly and both sides allow it, the upstream goes back to
 * its worker's idle pool, keyed by server, at most `keepalive` per server;
 * bytes, a FIN or an error on an idle upstream (the server closed it, or
 * sent what nobody asked for) close it, and so does an idle timer.
 *
 * Ownership: the worker that created it. An idle upstream holds a reference
 * on a generation that lists its server, so the lb_server outlives it (a
 * reload may hand the server on to the next generation, only when the pool
 * still connects to it the same way: admin_carry_over).
 */
#ifndef FULCRUM_UPSTREAM_H
#define FULCRUM_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/relay.h"
#include "core/timer.h"
#include "core/worker.h"

#define UPSTREAM_IDLE_TIMEOUT_MS 30000

struct upstream {
	struct side s; /* s.c is the attached conn, NULL while idle */
	struct lb_server *server;
	struct gen *gen; /* held while idle */
	struct worker *w;
	struct list idle_node; /* in the worker's bucket while idle */
	struct timer idle_timer;
	bool reused; /* came from the idle pool: a failure may be a stale close */
};

void upstream_pool_init(struct upstream_pool *up);
/* Closes every idle upstream; the memory goes with the batch's closed ones
 * (upstream_free_closed), as events of this batch may still name them. */
void upstream_pool_deinit(struct upstream_pool *up);

/* An idle connection to S, detached from the pool, or NULL. */
struct upstream *upstream_take_idle(struct worker *w, struct lb_server *s);
/* A new upstream for S with a non-blocking connect under way (or done).
 * Returns NULL with *ERR set when the socket or connect failed at once. */
struct upstream *upstream_connect(struct worker *w, struct lb_server *s, int *err);
/* Puts U in the idle pool if there is room, else closes it. G is the
 * generation U's server belongs to; the pool holds a reference on it. */
void upstream_release(struct upstream *u, struct gen *g, int keepalive);
void upstream_close(struct upstream *u);
/* Closes the idle upstreams to pool servers G does not list (dropped by a
 * reload) or that the admin API deleted: nothing could reuse them, and
 * each would hold its fd and an old generation until its idle timeout. */
void upstream_close_unserved(struct worker *w, const struct gen *g);
/* Frees the upstreams closed during this batch. */
void upstream_free_closed(struct worker *w);

#endif
