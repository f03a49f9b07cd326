/*
 * tls_peek.c - the SNI passthrough stage of tcp listeners (see tls.h).
 * Worker thread.
 *
 * The ClientHello is read with MSG_PEEK, so it stays in the socket and the
 * relay later moves it to the server with everything else (spliced, as
 * plain tcp). Each event peeks again from the first byte, at most
 * TLS_HELLO_MAX bytes: a hello arriving in many segments costs a few
 * re-parses of at most 16 KiB, and no buffer is held between events.
 * Edge-triggered epoll reports every segment that arrives, even though the
 * earlier ones are still unread, so waiting for the next event is enough.
 * Bytes that are not TLS at all carry no SNI and go to the listener's pool,
 * and so does a ClientHello that is still not whole at handshake_timeout or
 * when the client's FIN comes; one over TLS_HELLO_MAX is closed, and so is
 * one cut off by the client's reset.
 */
#include "core/tls.h"

#include <errno.h>
#include <sys/socket.h>

#include "core/conn.h"
#include "core/http/route.h"
#include "core/log.h"
#include "core/tls_impl.h"
#include "core/tls_sni.h"

bool tls_peek_wanted(const struct conn *c)
{
	const struct cfg *cfg = c->gen->cfg;

	if (c->lc->mode != MODE_TCP || c->cli.io || tls_conn_terminates(c))
		return false;
	for (size_t i = 0; i < cfg->n_routes; i++)
		if (cfg->routes[i].listener == (int)c->listener && cfg->routes[i].host)
			return true;
	return false;
}

static void refuse(struct conn *c, const char *why)
{
	log_debug("tls: passthrough on %s: %s", c->lc->name, why);
	c->up.bytes += tls_drain_socket(c->cli.fd);
	conn_close(c, CR_TLS_BAD_HELLO);
}

/* Picks the pool by SNI (none: the listener's) and starts relaying. */
static void route_and_start(struct conn *c, const char *sni, size_t sni_len)
{
	c->pool = gen_pool(c->gen, route_sni(c->gen->cfg, (int)c->listener, sni, sni_len));
	if (!c->pool) {
		conn_close(c, CR_NO_SERVER);
		return;
	}
	timer_del(&c->w->timers, &c->timer);
	/* What the client sent is still unread in the socket and no new edge
	 * will say so: the relay must read it first thing. */
	c->cli.rd = true;
	conn_start(c);
}

static void peek_step(struct conn *c)
{
	unsigned char buf[TLS_HELLO_MAX];
	struct tls_hello hello;
	ssize_t n;

	do
		n = recv(c->cli.fd, buf, sizeof(buf), MSG_PEEK);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno != EAGAIN)
			conn_close(c, CR_CLIENT_RESET);
		return;
	}
	if (n == 0) {
		conn_close(c, CR_CLIENT_CLOSED); /* not a byte came */
		return;
	}
	enum tls_hello_result r = tls_hello_parse(buf, (size_t)n, sizeof(buf), &hello);
	switch (r) {
	case TLS_HELLO_NEED_MORE:
		if ((size_t)n == sizeof(buf)) {
			refuse(c, "ClientHello too large");
		} else if (conn_client_reset(c)) {
			/* A reset, not a FIN: nothing for a server to see. What
			 * came is counted, as the relay would have. */
			c->up.bytes += (uint64_t)n;
			conn_close(c, CR_CLIENT_RESET);
		} else if (c->cli.hup) {
			/* No more is coming: as at handshake_timeout, what came
			 * goes to the listener's pool, and the FIN after it. */
			log_debug("tls: passthrough on %s: half a ClientHello, then a FIN",
				  c->lc->name);
			route_and_start(c, NULL, 0);
		}
		return;
	case TLS_HELLO_TOO_LARGE:
		refuse(c, "ClientHello too large");
		return;
	case TLS_HELLO_INVALID:
		/* Not TLS: no SNI, so no route matches (SPEC §2) and the
		 * bytes go to the listener's pool, as a plain tcp listener
		 * would send them. */
		log_debug("tls: passthrough on %s: not a TLS ClientHello, no SNI to route by",
			  c->lc->name);
		hello.sni_len = 0;
		break;
	case TLS_HELLO_SNI:
	case TLS_HELLO_NO_SNI:
		break;
	}
	route_and_start(c, hello.sni_len ? hello.sni : NULL, hello.sni_len);
}

/* No whole ClientHello within handshake_timeout (a protocol whose server
 * speaks first, say): no SNI, so the listener's pool, as nginx's preread
 * and HAProxy's inspect-delay fall through to their default. */
static void peek_timeout(struct conn *c)
{
	log_debug("tls: passthrough on %s: no ClientHello within %llu ms: no SNI to route by",
		  c->lc->name, (unsigned long long)c->lc->handshake_timeout_ms);
	route_and_start(c, NULL, 0);
}

/* A stop: a ClientHello on its way is read to its end (under
 * handshake_timeout) and the connection relayed up to graceful_timeout, as
 * a plain tcp connection is; one that has sent nothing is closed. */
static void peek_drain(struct conn *c)
{
	if (!io_unread(&c->cli))
		conn_close(c, CR_SHUTDOWN);
}

static void peek_event(struct conn *c, const struct side *from)
{
	(void)from; /* only the client's socket exists yet */
	peek_step(c);
}

static const struct conn_ops peek_ops = {
	.start = peek_step,
	.process = peek_event,
	.on_timer = peek_timeout,
	.drain = peek_drain,
};

void tls_peek_start(struct conn *c)
{
	c->ops = &peek_ops;
	timer_add(&c->w->timers, &c->timer, c->w->now_ms + c->lc->handshake_timeout_ms);
	peek_step(c);
}
