/*
 * conn.c - a connection's lifecycle on its worker: accept, event dispatch,
 * the timeout timer, and the one place that ends it (see conn.h).
 * What happens in between belongs to the listener's mode (tcp.c, ...).
 */
#include "core/conn.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/http/proxy.h"
#include "core/pp_conn.h"
#include "core/stats.h"
#include "core/tcp.h"
#include "core/tls.h"

/* An idle relayed connection costs its struct conn and little else (bench
 * idle-mem, about 660 bytes a connection): keep it within jemalloc's
 * 640-byte size class. */
_Static_assert(sizeof(struct conn) <= 640, "struct conn outgrew its 640-byte size class");

#define CR_NAME(e, s) s,
static const char *const close_reason_names[] = {CLOSE_REASONS(CR_NAME)};
#undef CR_NAME

const char *close_reason_name(enum close_reason r)
{
	return (unsigned)r < CR_COUNT ? close_reason_names[r] : "?";
}

uint64_t conn_client_hash(const struct conn *c)
{
	const struct in6_addr *a6 = &c->peer.in6.sin6_addr;

	switch (c->peer.sa.sa_family) {
	case AF_INET:
		return lb_hash(&c->peer.in.sin_addr, sizeof(c->peer.in.sin_addr));
	case AF_INET6:
		/* ::ffff:a.b.c.d (a dual-stack tier's PROXY header) is the IPv4
		 * client a.b.c.d, and goes where that one goes. */
		if (IN6_IS_ADDR_V4MAPPED(a6))
			return lb_hash(&a6->s6_addr[12], 4);
		return lb_hash(a6, sizeof(*a6));
	default:
		return 0;
	}
}

void conn_set_state(struct conn *c, enum conn_state s)
{
	c->state = s;
}

static const struct conn_ops tcp_ops = {
	.start = tcp_start,
	.process = tcp_process,
	.on_timer = tcp_on_timer,
	.drain = NULL,
	.withdraw = tcp_withdraw,
};

static const struct conn_ops http_ops = {
	.start = http_start,
	.process = http_process,
	.on_timer = http_on_timer,
	.drain = http_drain,
	.answering = http_answering,
	.withdraw = http_withdraw,
};

void conn_side_event(struct side *s, uint32_t events)
{
	struct conn *c = s->c;

	if (c->state == CS_CLOSED)
		return; /* a stale event of this batch */
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		s->rd = true;
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		s->hup = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		s->wr = true;
	/* A TLS read may wait for writability and a write for readability:
	 * any event may unblock either. */
	if (s->io)
		s->rd = s->wr = true;
	c->ops->process(c, s);
}

int conn_connect_step(struct conn *c, struct side *s, const struct lb_pool *pool,
		      const struct lb_server *srv, bool tls)
{
	if (!s->io) { /* not yet TLS: the TCP connect is what waits */
		int err = 0, r;
		socklen_t len = sizeof(err);
		if (!s->wr)
			return 0;
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err)
			return -err;
		if ((r = pp_send_header(c, srv, s->fd)) < 0)
			return r;
		if (tls && (r = tls_server_side(s, c->gen, pool, srv)) < 0)
			return r;
	}
	return tls_side_handshake(s);
}

bool conn_client_reset(const struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (!c->cli.hup)
		return false;
	if (getsockopt(c->cli.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return false;
	return err != 0;
}

static void on_side_event(struct ev_handler *h, uint32_t events)
{
	conn_side_event(container_of(h, struct side, h), events);
}

void conn_resume(struct conn *c)
{
	if (c->state != CS_CLOSED)
		c->ops->process(c, NULL);
}

void conn_queue_resume(struct conn *c)
{
	if (list_is_empty(&c->pending_node))
		list_add_tail(&c->w->pending, &c->pending_node);
}

bool conn_defer_write(struct conn *c)
{
	if (!c->w->in_batch)
		return false;
	conn_queue_resume(c);
	return true;
}

void conn_drain(struct conn *c)
{
	if (c->state != CS_CLOSED && c->ops->drain)
		c->ops->drain(c);
}

bool conn_answering(const struct conn *c)
{
	return c->state != CS_CLOSED && c->ops->answering && c->ops->answering(c);
}

static void on_timer(struct timer *t)
{
	struct conn *c = container_of(t, struct conn, timer);
	c->ops->on_timer(c);
}

void conn_side_init(struct conn *c, struct side *s, int fd)
{
	s->h.fn = on_side_event;
	s->fd = fd;
	s->rd = s->wr = s->hup = false;
	s->c = c;
}

void conn_accept(struct worker *w, uint32_t listener, uint32_t bind, int fd,
		 const union conn_addr *peer)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		log_warn("worker %d: out of memory, dropping a new connection", w->id);
		close(fd);
		atomic_fetch_sub_explicit(&worker_conns_total, 1, memory_order_relaxed);
		return;
	}
	c->w = w;
	c->ops = &tcp_ops;
	c->gen = gen_get(w->gen);
	c->listener = listener;
	c->bind = bind;
	c->lc = &c->gen->cfg->listeners[listener];
	c->peer = *peer;
	c->start_ms = c->last_active_ms = w->now_ms;
	c->start_wall_ms = wall_ms();
	list_init(&c->pending_node);
	list_add_tail(&w->conns, &c->node);
	w->n_conns++;
	timer_init(&c->timer, on_timer);
	conn_side_init(c, &c->cli, fd);
	conn_side_init(c, &c->srv, -1);
	relay_half_init(&c->up, &c->cli, &c->srv);
	relay_half_init(&c->down, &c->srv, &c->cli);
	STAT_ADD(w->stats[c->lc->slot].active, 1);
	STAT_ADD(w->stats[c->lc->slot].total, 1);

	if (peer->sa.sa_family != AF_UNIX) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (worker_watch(w, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->cli.h) < 0) {
		conn_close(c, CR_INTERNAL);
		return;
	}
	if (c->lc->proxy_protocol_accept)
		pp_accept_start(c); /* calls conn_start() once the header is in */
	else
		conn_start(c);
}

void conn_start(struct conn *c)
{
	/* TLS termination comes first; the handshake stage calls back here
	 * with the client side made TLS. */
	if (!c->cli.io && tls_conn_terminates(c)) {
		tls_accept_start(c);
		return;
	}
	c->ops = &tcp_ops;
	if (c->lc->mode != MODE_TCP) {
		c->ops = &http_ops;
		c->http = http_conn_new();
		if (!c->http) {
			conn_close(c, CR_NO_MEMORY);
			return;
		}
	}
	c->ops->start(c);
}

/* The server of a connection's log line: its server, or the last one tried
 * when none could be reached. */
static const struct lb_server *logged_server(const struct conn *c)
{
	if (c->server)
		return c->server;
	return lb_tried_last(&c->tried);
}

static void log_conn(struct conn *c)
{
	const struct lb_server *srv = logged_server(c);
	struct log_record r = {
		.start_wall_ms = c->start_wall_ms,
		.client = &c->peer.sa,
		.listener = c->lc->name,
		.pool = c->pool ? c->pool->name : NULL,
		.server = srv ? srv->name : NULL,
		.bytes_in = c->up.bytes,
		.bytes_out = c->down.bytes,
		.status = c->status,
		.total_ms = (int64_t)(c->w->now_ms - c->start_ms),
		.ttfb_ms = c->ttfb_ms ? (int64_t)c->ttfb_ms - 1 : -1,
		.reason = c->reason == CR_NONE ? NULL : close_reason_name(c->reason),
	};
	stats_conn_done(c->w, c->pool, c->tried.n);
	log_access(c->w->log, &r);
}

void conn_count_bytes(struct conn *c)
{
	struct listener_stats *st = &c->w->stats[c->lc->slot];

	/* Unsigned: BYTES_OUT taken back at the close (bytes read for a client
	 * that left) counts down. */
	STAT_ADD(st->bytes_in, c->up.bytes - c->counted_in);
	STAT_ADD(st->bytes_out, c->down.bytes - c->counted_out);
	c->counted_in = c->up.bytes;
	c->counted_out = c->down.bytes;
}

void conn_release_server(struct conn *c)
{
	if (c->srv.fd >= 0) {
		io_free(&c->srv);
		worker_close(c->w, c->srv.fd);
		c->srv.fd = -1;
	}
	if (c->server_held) {
		lb_server_put(c->server);
		c->server_held = false;
	}
}

/* What a client closed early still had on its way in is read and dropped
 * (up to CLOSE_DRAIN_MAX bytes): closing a socket with unread input sends a
 * reset instead of a FIN, and the client would see "connection reset" where
 * SPEC §3 promises it a closed connection. Plain bytes count as received. */
#define CLOSE_DRAIN_MAX (64 * 1024)

static void drain_client(struct conn *c)
{
	size_t left = CLOSE_DRAIN_MAX;

	while (left) {
		size_t want = left < c->w->scratch_cap ? left : c->w->scratch_cap;
		ssize_t n = recv(c->cli.fd, c->w->scratch, want, MSG_DONTWAIT);

		if (n <= 0)
			break;
		if (!c->cli.io)
			c->up.bytes += (uint64_t)n;
		left -= (size_t)n;
	}
}

void conn_close(struct conn *c, enum close_reason reason)
{
	struct worker *w = c->w;

	if (c->state == CS_CLOSED)
		return;
	conn_set_state(c, CS_CLOSED);
	c->reason = reason;
	/* http answers and lingers on its own; a reset client has nothing. */
	if (!c->http && reason != CR_NONE && reason != CR_CLIENT_RESET)
		drain_client(c);
	io_free(&c->cli);
	worker_close(c->w, c->cli.fd);
	c->cli.fd = -1;
	/* A tcp client's reset (or broken TLS stream) goes on to the server as
	 * one, as HAProxy passes an abort on: a FIN would say the client had
	 * finished sending. */
	if ((reason == CR_CLIENT_RESET || reason == CR_CLIENT_TLS) && !c->http && c->srv.fd >= 0) {
		struct linger rst = {.l_onoff = 1, .l_linger = 0};
		setsockopt(c->srv.fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
	}
	conn_release_server(c);
	/* BYTES_OUT counts what the client was sent, not what was read for it. */
	uint64_t unsent = relay_half_pending(&c->down);
	c->down.bytes -= unsent;
	relay_half_release(w, &c->up);
	relay_half_release(w, &c->down);
	timer_del(&w->timers, &c->timer);
	list_del(&c->pending_node);
	list_del(&c->node);
	list_add_tail(&w->closed, &c->node);
	w->n_conns--;
	atomic_fetch_sub_explicit(&worker_conns_total, 1, memory_order_relaxed);
	STAT_ADD(w->stats[c->lc->slot].active, -1);
	if (c->http) {
		/* http logs requests, not connections. */
		http_conn_free(c, c->http, unsent);
		c->http = NULL;
	} else {
		/* Bytes of connections that never relayed (a client's data
		 * before a failed connect, a refused TLS or PROXY start) too. */
		conn_count_bytes(c);
		log_conn(c);
	}
}
