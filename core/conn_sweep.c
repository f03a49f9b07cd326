/*
 * conn_sweep.c - closing what a worker holds to servers the admin API
 * disabled (SPEC §5: "out, with existing connections closed").
 *
 * Thread: the worker, when the main thread rings its doorbell after setting
 * worker->sweep (worker_request_sweep). A connection counts as "to" a server
 * while it holds that server (conn->server_held): a tcp connection for its
 * whole life, an http one while a request is with the server (until its
 * whole answer has been read; the client may still be taking it). Idle
 * keep-alive client connections hold no server and stay; idle pooled server
 * connections to the server are closed too, so none is reused after an
 * enable. A sweep after a server was deleted closes only those: its
 * requests finish.
 */
#include "core/conn.h"
#include "core/upstream.h"

static bool is_disabled(const struct lb_server *s)
{
	return atomic_load_explicit(&s->state, memory_order_relaxed) == SRV_DISABLED;
}

void conn_sweep_disabled(struct worker *w)
{
	for (struct list *n = w->conns.next, *next; n != &w->conns; n = next) {
		struct conn *c = container_of(n, struct conn, node);

		next = n->next;
		if (c->server_held && c->server && is_disabled(c->server))
			conn_close(c, CR_SERVER_DISABLED);
	}
	for (size_t i = 0; i < ARRAY_SIZE(w->upstreams.buckets); i++) {
		struct list *b = &w->upstreams.buckets[i];

		for (struct list *n = b->next, *next; n != b; n = next) {
			struct upstream *u = container_of(n, struct upstream, idle_node);

			next = n->next;
			if (is_disabled(u->server) ||
			    atomic_load_explicit(&u->server->removed, memory_order_relaxed))
				upstream_close(u);
		}
	}
}
