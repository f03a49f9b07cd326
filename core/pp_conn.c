/*
 * pp_conn.c - the PROXY protocol on connections (see pp_conn.h). Worker
 * thread.
 *
 * Reading: the header is peeked (MSG_PEEK) until pp_parse() finds it whole,
 * then exactly its bytes are consumed, so whatever the client sent after it
 * stays in the socket for the mode to read. Nothing is buffered between
 * events: each event peeks again from the start, which costs a few hundred
 * bytes of copying at most. A header larger than PP_ACCEPT_MAX (a v2 header
 * with many TLVs) is refused.
 *
 * Sending: a header is at most 108 bytes and goes on a socket whose connect
 * just completed, with an empty send buffer, so one send() writes it whole;
 * anything else counts as a failed connection.
 */
#include "core/pp_conn.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "core/conn.h"
#include "core/proxy_proto.h"

#define PP_ACCEPT_MAX 2048

static void pp_process(struct conn *c);
static void pp_event(struct conn *c, const struct side *from);
static void pp_on_timer(struct conn *c);
static void pp_drain(struct conn *c);

static const struct conn_ops pp_ops = {
	.start = pp_accept_start,
	.process = pp_event,
	.on_timer = pp_on_timer,
	.drain = pp_drain,
};

static void refuse(struct conn *c, const char *why)
{
	char addr[64];

	log_info("listener %s: closing connection from %s: %s", c->lc->name,
		 log_format_addr(&c->peer.sa, addr, sizeof(addr)), why);
	conn_close(c, CR_PROXY_PROTOCOL);
}

void pp_accept_start(struct conn *c)
{
	c->ops = &pp_ops;
	timer_add(&c->w->timers, &c->timer, c->start_ms + c->lc->request_timeout_ms);
	pp_process(c);
}

static void copy_addr(union conn_addr *to, const struct sockaddr_storage *from)
{
	memset(to, 0, sizeof(*to));
	if (from->ss_family == AF_INET)
		memcpy(&to->in, from, sizeof(to->in));
	else
		memcpy(&to->in6, from, sizeof(to->in6));
}

/* The header's addresses replace the peer's; its destination is kept for
 * a header sent on to a server. */
static void take_addresses(struct conn *c, const struct pp_info *info)
{
	if (info->local)
		return;
	copy_addr(&c->peer, &info->src);
	copy_addr(&c->pp_dst, &info->dst);
}

/* The header is whole in the socket: consume exactly its LEN bytes. */
static int consume(struct conn *c, size_t len)
{
	char buf[PP_ACCEPT_MAX];
	ssize_t n = recv(c->cli.fd, buf, len, 0);

	return n == (ssize_t)len ? 0 : -EIO;
}

static void pp_process(struct conn *c)
{
	char buf[PP_ACCEPT_MAX];
	struct pp_info info;

	if (!c->cli.rd)
		return;
	ssize_t n = recv(c->cli.fd, buf, sizeof(buf), MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		c->cli.rd = false;
		return;
	}
	if (n == 0 || (n < 0 && errno == ECONNRESET)) {
		/* Not a byte came (a port probe, a load balancer's tcp check,
		 * closed or reset): no PROXY error, the client just left. */
		conn_close(c, n == 0 ? CR_CLIENT_CLOSED : CR_CLIENT_RESET);
		return;
	}
	if (n < 0) {
		refuse(c, strerror(errno));
		return;
	}
	switch (pp_parse(buf, (size_t)n, &info)) {
	case PP_ERROR:
		refuse(c, info.error);
		return;
	case PP_MORE:
		if ((size_t)n == sizeof(buf) || info.len > sizeof(buf))
			refuse(c, "PROXY header too large");
		else if (c->cli.hup)
			refuse(c, "closed before a whole PROXY header");
		else
			c->cli.rd = false; /* the next bytes bring an event */
		return;
	case PP_DONE:
		break;
	}
	if (consume(c, info.len) < 0) {
		refuse(c, "cannot read the PROXY header");
		return;
	}
	take_addresses(c, &info);
	timer_del(&c->w->timers, &c->timer);
	conn_start(c);
	/* Bytes after the header came with the same event: no new edge will
	 * announce them, so let the mode look now. */
	if (c->state != CS_CLOSED)
		c->ops->process(c, NULL);
}

static void pp_event(struct conn *c, const struct side *from)
{
	(void)from; /* only the client's socket exists yet */
	pp_process(c);
}

static void pp_on_timer(struct conn *c)
{
	refuse(c, "no whole PROXY header within request_timeout");
}

static void pp_drain(struct conn *c)
{
	conn_close(c, CR_SHUTDOWN);
}

int pp_send_header(const struct conn *c, const struct lb_server *s, int fd)
{
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	char buf[PP_BUILD_MAX];
	int n;

	if (s->proxy_protocol == PROXY_PROTO_NONE)
		return 0;
	if (c->pp_dst.sa.sa_family != AF_UNSPEC)
		memcpy(&local, &c->pp_dst, sizeof(c->pp_dst));
	else if (getsockname(c->cli.fd, (struct sockaddr *)&local, &len) < 0)
		local.ss_family = AF_UNSPEC;
	/* An IP client with no address of ours to name (getsockname failed):
	 * its address still goes on, with an unspecified destination of its
	 * family rather than none at all (which would be UNKNOWN). */
	if (local.ss_family != AF_INET && local.ss_family != AF_INET6 &&
	    (c->peer.sa.sa_family == AF_INET || c->peer.sa.sa_family == AF_INET6)) {
		memset(&local, 0, sizeof(local));
		local.ss_family = c->peer.sa.sa_family;
	}
	if (s->proxy_protocol == PROXY_PROTO_V1)
		n = pp_build_v1(buf, sizeof(buf), &c->peer.sa, (struct sockaddr *)&local);
	else
		n = pp_build_v2(buf, sizeof(buf), &c->peer.sa, (struct sockaddr *)&local);
	if (n < 0)
		return n;
	ssize_t sent = send(fd, buf, (size_t)n, MSG_NOSIGNAL);
	if (sent == n)
		return 0;
	return sent < 0 ? -errno : -EIO;
}
