/*
 * gen.h - a published configuration generation: the parsed cfg plus the
 * runtime pools built from it.
 *
 * The main thread builds a generation completely, then publishes it with one
 * release store into gen_current. Workers take one acquire load per event
 * batch (refresh_gen in worker.c) and hold a reference for every connection that
 * started under it, so a long tunnel keeps its generation alive across
 * reloads. Lifetime: reference counted; the main thread's reference on the
 * published generation is dropped only after every worker has passed a
 * quiescent point (retire in worker.h: not waited for, the main loop drops
 * it then), so a worker never loads a pointer whose last reference is
 * already gone.
 *
 * A generation built from the file owns its cfg and pools. One derived at
 * run time by the admin API (gen_derive, adding a server) shares the cfg and
 * every pool but one with its parent, on which it holds a reference; the
 * replaced pool is a shell listing the parent pool's servers (the same
 * objects, so their state, counters and active counts carry on) plus the new
 * one, which the derived generation owns.
 */
#ifndef FULCRUM_GEN_H
#define FULCRUM_GEN_H

#include <stdatomic.h>
#include <stdint.h>

#include "balancer/lb.h"
#include "config/config.h"

struct tls_gen;

struct gen {
	struct cfg *cfg;
	struct lb_pool **pools; /* one per cfg->pools, same order */
	uint64_t number;
	_Atomic long refs;
	struct tls_gen *tls; /* TLS contexts (core/tls.h); NULL in a derived one */
	/* Derived (gen_derive): the generation built from the file, which
	 * owns cfg and the TLS contexts; NULL in that one. Not the parent: a
	 * chain of parents would keep every pool an admin API change ever
	 * replaced. */
	struct gen *root;
};

extern _Atomic(struct gen *) gen_current;

/* Builds a generation from CFG (takes ownership of it). NULL on ENOMEM. */
struct gen *gen_new(struct cfg *cfg, uint64_t number);

static inline struct gen *gen_get(struct gen *g)
{
	atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
	return g;
}

void gen_put(struct gen *g);

/* Main thread: a generation like PARENT whose pool INDEX is SHELL (its
 * reference handed over), sharing PARENT's other pools and its root. Same
 * number as PARENT. NULL on ENOMEM (nothing is taken over then). */
struct gen *gen_derive(struct gen *parent, size_t index, struct lb_pool *shell);

/* The index in G's cfg->listeners of the listener that has the bind
 * BIND_ID (cfg_addr.bind_id), or -1 when G has no such bind. */
int gen_listener_of_bind(const struct gen *g, uint32_t bind_id);

/* Whether S is in one of G's pools (forward-mode origins are in none). */
bool gen_lists(const struct gen *g, const struct lb_server *s);

/* The pool a listener or route points at, or NULL for index -1. */
static inline struct lb_pool *gen_pool(const struct gen *g, int index)
{
	return index < 0 ? NULL : g->pools[index];
}

#endif
