/*
 * probe.c - one active health check over a fresh non-blocking connection
 * (see probe.h). Health thread only.
 *
 * States: CONNECTING (until the socket is writable; SO_ERROR says how it
 * went) -> tcp: done. http: SENDING (the whole request, resumed on EPOLLOUT)
 * -> READING (until the status line is in) -> DRAINING (verdict known; read
 * and drop the rest until the server closes, HC_DRAIN_MAX bytes at most, so
 * a well-behaved server sees an orderly close rather than a reset).
 * Every end goes through finish(), which closes the socket (that also takes
 * it out of epoll) and leaves the probe IDLE with its result.
 */
#include "health/probe.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Drained bytes land here; nobody reads them. One thread uses it. */
static char drain_buf[16384];

void hc_probe_init(struct hc_probe *p)
{
	memset(p, 0, sizeof(*p));
	p->fd = -1;
	p->state = PROBE_IDLE;
}

static bool finish(struct hc_probe *p, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Ends the probe with a verdict. Returns true (for "it ended"). */
static bool finish(struct hc_probe *p, bool ok, const char *fmt, ...)
{
	va_list ap;

	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	p->state = PROBE_IDLE;
	p->ok = ok;
	va_start(ap, fmt);
	vsnprintf(p->reason, sizeof(p->reason), fmt, ap);
	va_end(ap);
	return true;
}

/* Ends the probe with the verdict already stored (DRAINING). */
static bool finish_verdict(struct hc_probe *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	p->state = PROBE_IDLE;
	return true;
}

static bool fail_connect(struct hc_probe *p, int err)
{
	if (err == ECONNREFUSED)
		return finish(p, false, "connect refused");
	return finish(p, false, "connect: %s", strerror(err));
}

int hc_parse_status(const char *buf, size_t len)
{
	/* "HTTP/1.x DDD" then SP or CR (RFC 9112 §4: the reason may be empty). */
	if (len < 13 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') ||
	    buf[8] != ' ')
		return -1;
	int code = 0;
	for (int i = 9; i < 12; i++) {
		if (buf[i] < '0' || buf[i] > '9')
			return -1;
		code = code * 10 + (buf[i] - '0');
	}
	if (buf[12] != ' ' && buf[12] != '\r')
		return -1;
	return code < 100 ? -1 : code;
}

/* Judges the status line once it is complete (or line[] is full) and moves
 * to DRAINING; does nothing while more bytes are needed. */
static void judge(struct hc_probe *p, const struct hc_check *chk)
{
	if (!memchr(p->line, '\n', p->got) && p->got < sizeof(p->line))
		return;
	int code = hc_parse_status(p->line, p->got);
	if (code < 0) {
		p->ok = false;
		snprintf(p->reason, sizeof(p->reason), "invalid HTTP response");
	} else if (code < chk->expect_lo || code > chk->expect_hi) {
		p->ok = false;
		snprintf(p->reason, sizeof(p->reason), "HTTP status %d", code);
	} else {
		p->ok = true;
		snprintf(p->reason, sizeof(p->reason), "check passed");
	}
	p->state = PROBE_DRAINING;
}

/* READING and DRAINING: reads until EAGAIN. Returns true when it ended. */
static bool do_read(struct hc_probe *p, const struct hc_check *chk)
{
	for (;;) {
		char *dst = drain_buf;
		size_t cap = sizeof(drain_buf);

		if (p->state == PROBE_READING) {
			dst = p->line + p->got;
			cap = sizeof(p->line) - p->got;
		}
		ssize_t n = recv(p->fd, dst, cap, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return false;
		if (p->state == PROBE_DRAINING) {
			/* EOF or an error after the verdict: the verdict stands. */
			if (n <= 0)
				return finish_verdict(p);
			p->drained += (size_t)n;
			if (p->drained >= HC_DRAIN_MAX)
				return finish_verdict(p);
			continue;
		}
		if (n == 0)
			return finish(p, false, "connection closed before the status line");
		if (n < 0)
			return finish(p, false, "read: %s", strerror(errno));
		p->got += (size_t)n;
		judge(p, chk);
	}
}

/* SENDING: writes the rest of the request, then reads. */
static bool do_send(struct hc_probe *p, const struct hc_check *chk)
{
	while (p->sent < chk->request_len) {
		ssize_t n = send(p->fd, chk->request + p->sent, chk->request_len - p->sent,
				 MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return false;
		if (n < 0)
			return finish(p, false, "send: %s", strerror(errno));
		p->sent += (size_t)n;
	}
	p->state = PROBE_READING;
	return do_read(p, chk);
}

static bool connected(struct hc_probe *p, const struct hc_check *chk)
{
	if (chk->kind != CHECK_HTTP)
		return finish(p, true, "check passed");
	p->state = PROBE_SENDING;
	return do_send(p, chk);
}

bool hc_probe_start(struct hc_probe *p, const struct hc_check *chk, const struct cfg_addr *addr,
		    int epfd, void *ptr)
{
	hc_probe_init(p);
	p->fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0)
		return finish(p, false, "socket: %s", strerror(errno));
	p->state = PROBE_CONNECTING;
	int rc = connect(p->fd, (const struct sockaddr *)&addr->ss, addr->len);
	if (rc < 0 && errno != EINPROGRESS)
		return fail_connect(p, errno);
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
		.data.ptr = ptr,
	};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, p->fd, &ev) < 0)
		return finish(p, false, "epoll_ctl: %s", strerror(errno));
	if (rc == 0)
		return connected(p, chk);
	return false;
}

bool hc_probe_event(struct hc_probe *p, const struct hc_check *chk, uint32_t events)
{
	switch (p->state) {
	case PROBE_IDLE:
		return false; /* a stale event after the probe ended */
	case PROBE_CONNECTING: {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err)
			return fail_connect(p, err);
		if (!(events & EPOLLOUT))
			return false;
		return connected(p, chk);
	}
	case PROBE_SENDING:
		return do_send(p, chk);
	case PROBE_READING:
	case PROBE_DRAINING:
		return do_read(p, chk);
	}
	return false;
}

void hc_probe_timeout(struct hc_probe *p)
{
	switch (p->state) {
	case PROBE_IDLE:
		return;
	case PROBE_CONNECTING:
		finish(p, false, "connect timed out");
		return;
	case PROBE_SENDING:
	case PROBE_READING:
		finish(p, false, "no response within check_timeout");
		return;
	case PROBE_DRAINING:
		finish_verdict(p);
		return;
	}
}

void hc_probe_abort(struct hc_probe *p)
{
	if (hc_probe_is_running(p))
		finish(p, false, "aborted");
}
