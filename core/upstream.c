/*
 * upstream.c - http server connections and the idle pool (see upstream.h).
 * Worker thread.
 */
#include "core/upstream.h"

#include "core/conn.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

static size_t bucket_of(const struct lb_server *s)
{
	uintptr_t h = (uintptr_t)s;
	h ^= h >> 17;
	h *= 0x9e3779b97f4a7c15ull;
	return (h >> 56) & 255;
}

static void idle_unlink(struct worker *w, struct upstream *u)
{
	list_del(&u->idle_node);
	w->upstreams.bucket_n[bucket_of(u->server)]--;
	w->upstreams.count--;
}

void upstream_pool_init(struct upstream_pool *up)
{
	for (size_t i = 0; i < 256; i++) {
		list_init(&up->buckets[i]);
		up->bucket_n[i] = 0;
	}
	up->count = 0;
}

void upstream_close(struct upstream *u)
{
	struct worker *w = u->w;
	if (!list_is_empty(&u->idle_node))
		idle_unlink(w, u);
	timer_del(&w->timers, &u->idle_timer);
	if (u->s.fd >= 0) {
		io_free(&u->s);
		worker_close(w, u->s.fd);
	}
	if (u->gen)
		gen_put(u->gen);
	/* A stale event of this batch may still name u: free it with the
	 * batch's closed connections. */
	u->s.fd = -1;
	u->s.c = NULL;
	list_add_tail(&w->closed_upstreams, &u->idle_node);
}

void upstream_pool_deinit(struct upstream_pool *up)
{
	for (size_t i = 0; i < 256; i++)
		while (!list_is_empty(&up->buckets[i]))
			upstream_close(
				container_of(up->buckets[i].next, struct upstream, idle_node));
}

void upstream_close_unserved(struct worker *w, const struct gen *g)
{
	for (size_t i = 0; i < ARRAY_SIZE(w->upstreams.buckets); i++) {
		struct list *b = &w->upstreams.buckets[i];
		for (struct list *n = b->next, *next; n != b; n = next) {
			struct upstream *u = container_of(n, struct upstream, idle_node);
			next = n->next;
			const struct lb_server *s = u->server;
			if (atomic_load_explicit(&s->removed, memory_order_relaxed) ||
			    (u->gen != g && gen_lists(u->gen, s) && !gen_lists(g, s)))
				upstream_close(u);
		}
	}
}

void upstream_free_closed(struct worker *w)
{
	while (!list_is_empty(&w->closed_upstreams)) {
		struct upstream *u =
			container_of(w->closed_upstreams.next, struct upstream, idle_node);
		list_del(&u->idle_node);
		free(u);
	}
}

static void on_idle_timer(struct timer *t)
{
	upstream_close(container_of(t, struct upstream, idle_timer));
}

/* Events of an upstream: while attached they belong to its connection;
 * while idle, bytes or a FIN (or an error) mean the server closed it or
 * sent what nobody asked for, and it is no longer usable. An idle
 * connection has nothing to write, and epoll reports the state when it
 * collects an event, not the cause: the wake-up for the last bytes of an
 * answer that were read before the connection went idle comes in as
 * writable only. Closing on that threw away most connections that had
 * carried a large answer. */
static void on_event(struct ev_handler *h, uint32_t events)
{
	struct upstream *u = container_of(h, struct upstream, s.h);
	if (u->s.fd < 0)
		return; /* closed earlier in this batch */
	if (u->s.c)
		conn_side_event(&u->s, events);
	else if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		upstream_close(u);
}

struct upstream *upstream_take_idle(struct worker *w, struct lb_server *s)
{
	struct list *b = &w->upstreams.buckets[bucket_of(s)];
	for (struct list *n = b->next; n != b; n = n->next) {
		struct upstream *u = container_of(n, struct upstream, idle_node);
		if (u->server != s)
			continue;
		idle_unlink(w, u);
		timer_del(&w->timers, &u->idle_timer);
		gen_put(u->gen);
		u->gen = NULL;
		u->reused = true;
		return u;
	}
	return NULL;
}

struct upstream *upstream_connect(struct worker *w, struct lb_server *s, int *err)
{
	const struct cfg_addr *a = &s->addr;
	struct upstream *u = calloc(1, sizeof(*u));
	if (!u) {
		*err = ENOMEM;
		return NULL;
	}
	u->w = w;
	u->server = s;
	list_init(&u->idle_node);
	timer_init(&u->idle_timer, on_idle_timer);
	u->s.fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->s.fd < 0)
		goto fail;
	if (a->ss.ss_family != AF_UNIX) {
		int one = 1;
		setsockopt(u->s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (connect(u->s.fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno != EINPROGRESS)
		goto fail;
	u->s.h.fn = on_event;
	if (worker_watch(w, u->s.fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &u->s.h) < 0)
		goto fail;
	return u;
fail:
	*err = errno;
	if (u->s.fd >= 0)
		close(u->s.fd);
	free(u);
	return NULL;
}

void upstream_release(struct upstream *u, struct gen *g, int keepalive)
{
	struct worker *w = u->w;
	size_t i = bucket_of(u->server);
	struct list *b = &w->upstreams.buckets[i];
	unsigned same = 0;

	/* A FIN or an error already seen makes it useless, and its edge has
	 * passed: no event would come to tell the idle pool. */
	if (u->s.hup)
		keepalive = 0;
	/* Bytes the server sent past its response may wait in the socket,
	 * their edge gone with the last read, when that read did not prove the
	 * socket dry (rd still set: a read stopped at the body's length). No
	 * event would tell; the next request would take them for its answer. */
	if (keepalive > 0 && u->s.rd && io_unread(&u->s))
		keepalive = 0;
	u->s.c = NULL;
	u->s.rd = u->s.wr = u->s.hup = false;
	/* It carries one client's address in its PROXY header: never reuse it.
	 * Nor one to a server disabled while its answer went to a slow client
	 * (the sweep has closed the others: none may come back at an enable),
	 * or drained, which takes no new request: its connections fall to
	 * none as its answers end. */
	int state = atomic_load_explicit(&u->server->state, memory_order_relaxed);
	if (u->server->proxy_protocol != PROXY_PROTO_NONE || state == SRV_DISABLED ||
	    state == SRV_DRAIN || atomic_load_explicit(&u->server->removed, memory_order_relaxed))
		keepalive = 0;
	/* Count the server's idle connections only when the bucket (which
	 * servers may share) holds enough for it to matter. */
	if (keepalive > 0 && w->upstreams.bucket_n[i] >= (unsigned)keepalive)
		for (struct list *n = b->next; n != b && same < (unsigned)keepalive; n = n->next)
			if (container_of(n, struct upstream, idle_node)->server == u->server)
				same++;
	if (keepalive <= 0 || same >= (unsigned)keepalive || w->draining) {
		upstream_close(u);
		return;
	}
	u->gen = gen_get(g);
	/* Last in, first out: the connection just used is the one whose
	 * server thread is likeliest awake, and the ones at the tail are
	 * left to time out when the load falls. */
	list_add_head(b, &u->idle_node);
	w->upstreams.bucket_n[i]++;
	w->upstreams.count++;
	timer_add(&w->timers, &u->idle_timer, w->now_ms + UPSTREAM_IDLE_TIMEOUT_MS);
}
