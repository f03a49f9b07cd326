/*
 * tcp.c - tcp mode (see tcp.h). Worker thread.
 *
 * States: CS_CONNECTING (a non-blocking connect is under way, with the
 * connect_timeout armed) and CS_RELAY (both directions move through
 * relay_half until each has passed its EOF on). A connect that is refused or
 * times out goes to the next server the balancer gives, skipping the ones
 * already tried, up to `retries` more times; a client whose pool has no
 * usable server is closed at once.
 */
#include "core/tcp.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/http/route.h"
#include "core/tls.h"

static uint64_t idle_timeout_ms(const struct conn *c, enum close_reason *why)
{
	uint64_t client = c->lc->client_timeout_ms;
	uint64_t server = c->pool->cfg->server_timeout_ms;

	*why = server < client ? CR_SERVER_TIMEOUT : CR_CLIENT_TIMEOUT;
	return server < client ? server : client;
}

static void arm_idle_timer(struct conn *c)
{
	enum close_reason why;
	uint64_t t = idle_timeout_ms(c, &why);
	timer_add(&c->w->timers, &c->timer, c->last_active_ms + t);
}

static void connect_next(struct conn *c);

static void connect_failed(struct conn *c, int err);

static void connected(struct conn *c)
{
	lb_server_passed(c->server);
	conn_set_state(c, CS_RELAY);
	c->last_active_ms = c->w->now_ms;
	arm_idle_timer(c);
}

static void connect_failed(struct conn *c, int err)
{
	/* The side is TLS once its TCP connect and PROXY header went well. */
	c->reason = err == ETIMEDOUT ? CR_CONNECT_TIMEOUT
		    : c->srv.io	     ? CR_SERVER_TLS
				     : CR_CONNECT_FAILED;
	lb_server_failed(c->server, c->server_taken_ms);
	log_info("tcp %s: connect to %s/%s (%s) failed: %s", c->lc->name, c->pool->name,
		 c->server->name, c->server->addr.text, strerror(err));
	conn_release_server(c);
	c->srv.wr = c->srv.rd = c->srv.hup = false;
	connect_next(c);
}

/* Starts a non-blocking connect to S. Returns 0 when under way or done,
 * -errno when it failed at once. */
static int start_connect(struct conn *c, struct lb_server *s)
{
	const struct cfg_addr *a = &s->addr;
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (a->ss.ss_family != AF_UNIX) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	c->srv.fd = fd;
	if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno != EINPROGRESS)
		return -errno;
	if (worker_watch(c->w, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->srv.h) < 0)
		return -errno;
	conn_set_state(c, CS_CONNECTING);
	timer_add(&c->w->timers, &c->timer, c->w->now_ms + c->pool->cfg->connect_timeout_ms);
	return 0;
}

static void connect_next(struct conn *c)
{
	for (unsigned raced = 0;;) {
		if (c->tried.n > (unsigned)c->pool->cfg->retries) {
			conn_close(c, c->reason);
			return;
		}
		struct lb_worker *lw =
			worker_lb(c->w, c->gen, (int)(c->pool->cfg - c->gen->cfg->pools));
		struct lb_server *s = lb_pick(c->pool, lw, conn_client_hash(c), c->tried.s,
					      lb_tried_len(&c->tried));
		if (s && !lb_server_take(s) && ++raced < LB_TAKE_TRIES)
			continue; /* its last place went to another worker */
		if (!s || raced == LB_TAKE_TRIES) {
			enum close_reason why = c->reason;
			if (!c->tried.n)
				why = lb_pool_full(c->pool) ? CR_SERVERS_FULL : CR_NO_SERVER;
			conn_close(c, why);
			return;
		}
		lb_tried_add(&c->tried, s);
		c->server = s;
		c->server_held = true;
		c->server_taken_ms = c->w->now_ms;
		int err = start_connect(c, s);
		if (err == 0)
			return;
		if (err_out_of_resources(-err)) {
			/* Not the server's doing, and every other would fail
			 * the same way. */
			log_info("tcp %s: connect to %s/%s: %s", c->lc->name, c->pool->name,
				 s->name, strerror(-err));
			conn_release_server(c);
			conn_close(c, CR_OUT_OF_RESOURCES);
			return;
		}
		c->reason = CR_CONNECT_FAILED;
		lb_server_failed(s, c->server_taken_ms);
		log_info("tcp %s: connect to %s/%s (%s) failed: %s", c->lc->name, c->pool->name,
			 s->name, s->addr.text, strerror(-err));
		conn_release_server(c);
	}
}

bool tcp_withdraw(struct conn *c)
{
	if (c->state != CS_CONNECTING)
		return false;
	log_info("tcp %s: %s/%s was disabled while connecting to it; trying another server",
		 c->lc->name, c->pool->name, c->server->name);
	/* Not the server's failure, and no retry used up. */
	conn_release_server(c);
	c->srv.wr = c->srv.rd = c->srv.hup = false;
	lb_tried_forget_last(&c->tried);
	connect_next(c);
	return true;
}

void tcp_start(struct conn *c)
{
	/* The pool: by the SNI when the listener routes by it (the TLS
	 * passthrough stage peeks at it, then calls back here with c->pool
	 * set; a terminated connection has it from its handshake), else the
	 * listener's. */
	if (!c->pool) {
		if (tls_peek_wanted(c)) {
			tls_peek_start(c);
			return;
		}
		size_t len = 0;
		const char *sni = tls_side_sni(&c->cli, &len);
		c->pool = gen_pool(c->gen, route_sni(c->gen->cfg, (int)c->listener, sni, len));
	}
	if (!c->pool) {
		conn_close(c, CR_NO_SERVER);
		return;
	}
	connect_next(c);
}

static enum close_reason error_reason(const struct conn *c, const struct half *h)
{
	const struct side *s = h->err_on_src ? h->src : h->dst;
	if (h->err == ENOMEM)
		return CR_NO_MEMORY;
	if (s == &c->cli && h->err == EPROTO)
		return CR_CLIENT_TLS; /* a record that failed to decrypt, an alert */
	return s == &c->cli ? CR_CLIENT_RESET : CR_SERVER_RESET;
}

static void relay(struct conn *c)
{
	struct worker *w = c->w;
	/* A budget each: a busy upload must not leave the download unread. */
	size_t up_budget = w->turn_budget, down_budget = w->turn_budget;
	uint64_t in = c->up.bytes, out = c->down.bytes;
	enum relay_result up = relay_half(w, &c->up, &up_budget);
	enum relay_result down = relay_half(w, &c->down, &down_budget);

	if (c->up.bytes != in || c->down.bytes != out) {
		if (out == 0 && c->down.bytes && !c->ttfb_ms) {
			uint64_t ms = w->now_ms - c->start_ms;
			c->ttfb_ms = ms < UINT32_MAX ? (uint32_t)ms + 1 : UINT32_MAX;
		}
		c->last_active_ms = w->now_ms;
		conn_count_bytes(c);
	}
	if (up == RELAY_ERROR || down == RELAY_ERROR) {
		conn_close(c, error_reason(c, up == RELAY_ERROR ? &c->up : &c->down));
		return;
	}
	if (up == RELAY_DONE && down == RELAY_DONE) {
		conn_close(c, CR_NONE);
		return;
	}
	if (up == RELAY_MORE || down == RELAY_MORE) {
		conn_queue_resume(c);
	}
}

/* A failed step is retried on another server (conn_connect_step). */
static void check_connect(struct conn *c)
{
	int r = conn_connect_step(c, &c->srv, c->pool, c->server, true);

	if (r == 0)
		return;
	if (r == -ENOMEM) {
		conn_close(c, CR_NO_MEMORY); /* fulcrum's shortage, not the server's fault */
		return;
	}
	if (r < 0) {
		connect_failed(c, -r);
		return;
	}
	connected(c);
}

void tcp_process(struct conn *c, const struct side *from)
{
	(void)from; /* client_timeout counts bytes either way */
	if (c->state == CS_CONNECTING) {
		if (conn_client_reset(c)) {
			conn_close(c, CR_CLIENT_RESET);
			return;
		}
		check_connect(c);
		if (c->state != CS_RELAY)
			return;
	}
	relay(c);
}

void tcp_on_timer(struct conn *c)
{
	struct worker *w = c->w;
	enum close_reason why;

	if (c->state == CS_CONNECTING) {
		connect_failed(c, ETIMEDOUT);
		return;
	}
	uint64_t t = idle_timeout_ms(c, &why);
	if (w->now_ms - c->last_active_ms >= t) {
		conn_close(c, why);
		return;
	}
	arm_idle_timer(c);
}
