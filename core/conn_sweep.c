/*
 * conn_sweep.c - closing what a worker holds to servers the admin API
 * disabled (SPEC §5: "out, with existing connections closed").
 *
 * Only what the API disabled is swept: a server the file disables at a
 * reload lets the connections made before it finish, as any reload does.
 *
 * Thread: the worker, when the main thread rings its doorbell after setting
 * worker->sweep (worker_request_sweep). A connection counts as "to" a server
 * while it holds that server (conn->server_held): a tcp connection for its
 * whole life, an http one while a request is with the server (until its
 * whole answer has been read; the client may still be taking it). Idle
 * keep-alive client connections hold no server and stay; idle pooled server
 * connections to the server are closed too, so none is reused after an
 * enable. A connection still connecting to the server has sent it nothing
 * of the client's: it goes to another server instead (conn_ops.withdraw).
 * A sweep after a server was drained or deleted closes only the idle
 * pooled ones, which would carry nothing more: its requests finish.
 */
#include <stdlib.h>

#include "core/conn.h"
#include "core/upstream.h"

static bool is_disabled(const struct lb_server *s)
{
	return atomic_load_explicit(&s->state, memory_order_relaxed) == SRV_DISABLED;
}

/* Drained or disabled: no new request goes to it. */
static bool takes_nothing(const struct lb_server *s)
{
	int st = atomic_load_explicit(&s->state, memory_order_relaxed);
	return st == SRV_DISABLED || st == SRV_DRAIN;
}

static bool api_disabled(const struct lb_server *s)
{
	return is_disabled(s) && atomic_load_explicit(&s->admin_disabled, memory_order_relaxed);
}

/* A reload that changed a server's line (weight aside) made a new object
 * for the same backend, and what was opened before it holds the old one;
 * both lead to the first object made for the backend (lb_server_share_load),
 * which names it here. */
static const struct lb_server *backend_of(const struct lb_server *s)
{
	return s->load_owner ? s->load_owner : s;
}

/* The backends of the generation's API-disabled (or, with REMOVED, deleted)
 * servers, into a malloc'd array; *N its length. NULL when there are none
 * or no memory (then only the objects themselves are looked at). */
static const struct lb_server **backends_out(const struct gen *g, bool removed, size_t *n)
{
	const struct lb_server **out = NULL;
	size_t cap = 0;

	*n = 0;
	for (size_t i = 0; i < g->cfg->n_pools; i++) {
		const struct lb_pool *p = g->pools[i];
		for (size_t j = 0; j < p->n_servers; j++) {
			const struct lb_server *s = p->servers[j];
			if (!api_disabled(s) &&
			    !(removed && atomic_load_explicit(&s->removed, memory_order_relaxed)))
				continue;
			if (*n == cap) {
				size_t ncap = cap ? 2 * cap : 8;
				const struct lb_server **bigger = realloc(out, ncap * sizeof(*out));
				if (!bigger)
					return out;
				out = bigger;
				cap = ncap;
			}
			out[(*n)++] = backend_of(s);
		}
	}
	return out;
}

static bool listed(const struct lb_server *s, const struct lb_server **set, size_t n)
{
	const struct lb_server *b = backend_of(s);
	for (size_t i = 0; i < n; i++)
		if (set[i] == b)
			return true;
	return false;
}

void conn_sweep_disabled(struct worker *w)
{
	size_t n_off, n_gone;
	const struct lb_server **off = backends_out(w->gen, false, &n_off);
	const struct lb_server **gone = backends_out(w->gen, true, &n_gone);

	for (struct list *n = w->conns.next, *next; n != &w->conns; n = next) {
		struct conn *c = container_of(n, struct conn, node);

		next = n->next;
		if (c->server_held && c->server &&
		    (api_disabled(c->server) || listed(c->server, off, n_off)) &&
		    (!c->ops->withdraw || !c->ops->withdraw(c)))
			conn_close(c, CR_SERVER_DISABLED);
	}
	for (size_t i = 0; i < ARRAY_SIZE(w->upstreams.buckets); i++) {
		struct list *b = &w->upstreams.buckets[i];

		for (struct list *n = b->next, *next; n != b; n = next) {
			struct upstream *u = container_of(n, struct upstream, idle_node);

			next = n->next;
			if (takes_nothing(u->server) ||
			    atomic_load_explicit(&u->server->removed, memory_order_relaxed) ||
			    listed(u->server, gone, n_gone))
				upstream_close(u);
		}
	}
	free(off);
	free(gone);
}
