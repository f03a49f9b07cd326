/*
 * probe.c - one active health check over a fresh non-blocking connection
 * (see probe.h). Health thread only.
 *
 * States: CONNECTING (until the socket is writable; SO_ERROR says how it
 * went) -> tcp: done. http: [HANDSHAKE when the pool talks TLS] -> SENDING
 * (the whole request, resumed on EPOLLOUT) -> READING (until the head of the
 * final answer is in, parsed as traffic's responses are: a server whose
 * answers traffic refuses with 502 must not pass its check, or it would
 * flap between the check's UP and traffic's DOWN) -> DRAINING (verdict
 * known; read and drop the rest until the server
 * closes, HC_DRAIN_MAX bytes at most, so a well-behaved server sees an
 * orderly close rather than a reset; the health thread cuts it short after
 * HC_DRAIN_GRACE_MS).
 * Every end goes through finish(), which frees the TLS state, takes the
 * socket out of epoll, closes it and leaves the probe IDLE with its result.
 */
#include "health/probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/http/parser.h"
#include "core/util.h"

/* Drained bytes land here; nobody reads them. One thread uses it. */
static char drain_buf[16384];

#define PROBE_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

void hc_probe_init(struct hc_probe *p)
{
	memset(p, 0, sizeof(*p));
	p->fd = -1;
	p->epfd = -1;
	p->state = PROBE_IDLE;
}

/* Ends the probe with the verdict already stored. Returns true (for "it
 * ended"). */
static bool finish_verdict(struct hc_probe *p)
{
	free(p->head);
	p->head = NULL;
	p->head_cap = 0;
	if (p->ssl)
		SSL_free(p->ssl);
	p->ssl = NULL;
	/* Out of the epoll before the close: a binary upgrade's child may
	 * hold a copy of the fd for a moment (core/upgrade.h), and the
	 * registration would outlive the close. A check is rare enough. */
	if (p->fd >= 0 && p->epfd >= 0)
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->fd, NULL);
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	p->epfd = -1;
	p->state = PROBE_IDLE;
	return true;
}

static bool finish(struct hc_probe *p, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Ends the probe with a verdict and its reason. Returns true. */
static bool finish(struct hc_probe *p, bool ok, const char *fmt, ...)
{
	va_list ap;

	p->ok = ok;
	va_start(ap, fmt);
	vsnprintf(p->reason, sizeof(p->reason), fmt, ap);
	va_end(ap);
	return finish_verdict(p);
}

static bool fail_connect(struct hc_probe *p, int err)
{
	if (err == ECONNREFUSED)
		return finish(p, false, "connect refused");
	return finish(p, false, "connect: %s", strerror(err));
}

/* The reason for the last TLS failure on this thread; clears the queue. */
static const char *tls_error(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *why = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return why ? why : "connection closed";
}

/* An SSL_read/SSL_write result RC <= 0 as: 0 (EOF), -EAGAIN (wait for
 * the socket), -EPROTO or another -errno. */
static ssize_t tls_result(struct hc_probe *p, int rc)
{
	switch (SSL_get_error(p->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		return errno ? -errno : 0;
	default:
		ERR_clear_error();
		return -EPROTO;
	}
}

/* Reads up to CAP bytes, through TLS when the probe has it: n > 0, 0 at
 * EOF, -EAGAIN when nothing is ready, another -errno on error. */
static ssize_t io_read(struct hc_probe *p, void *buf, size_t cap)
{
	if (p->ssl) {
		int n = SSL_read(p->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
		return n > 0 ? n : tls_result(p, n);
	}
	for (;;) {
		ssize_t n = recv(p->fd, buf, cap, 0);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

/* Writes up to LEN bytes: n > 0, -EAGAIN, or another -errno. */
static ssize_t io_write(struct hc_probe *p, const void *buf, size_t len)
{
	if (p->ssl) {
		int n = SSL_write(p->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
		if (n > 0)
			return n;
		n = (int)tls_result(p, n);
		return n == 0 ? -EPIPE : n;
	}
	for (;;) {
		ssize_t n = send(p->fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

/* Interim answers skipped before a check fails. */
#define HC_INTERIMS_MAX 8

/* The verdict on a final answer with status CODE; on to DRAINING. */
static void judge_status(struct hc_probe *p, const struct hc_check *chk, int code)
{
	p->ok = code >= chk->expect_lo && code <= chk->expect_hi;
	if (p->ok)
		snprintf(p->reason, sizeof(p->reason), "check passed");
	else
		snprintf(p->reason, sizeof(p->reason), "HTTP status %d", code);
	p->state = PROBE_DRAINING;
}

/* Judges the answer once its final head is in; does nothing while more
 * bytes are needed. Interim answers (100, 103) are skipped to the final
 * one (RFC 9110 §15.2). Returns true when it ended the probe. */
static bool judge(struct hc_probe *p, const struct hc_check *chk)
{
	static const struct http_limits lim = {.max_uri_size = HTTP_DEFAULT_URI_SIZE,
					       .max_header_size = HC_HEAD_MAX};
	static struct http_head h; /* one health thread */

	for (;;) {
		enum http_result r = http_parse_response(p->head, p->got, &lim, &h);
		if (r == HTTP_NEED_MORE)
			return false;
		if (http_is_error(r))
			return finish(p, false, "invalid HTTP response%s",
				      r == HTTP_E_HEAD_TOO_LARGE ? " (head too large)" : "");
		if (h.status >= 200 || h.status == 101) {
			judge_status(p, chk, h.status);
			return false;
		}
		if (p->interims++ == HC_INTERIMS_MAX)
			return finish(p, false, "more than %d interim answers", HC_INTERIMS_MAX);
		memmove(p->head, p->head + h.head_len, p->got - h.head_len);
		p->got -= h.head_len;
	}
}

/* Room for more of the head: grows it up to HC_HEAD_MAX. Returns false
 * when it cannot (then the parser has already refused a head that long). */
static bool head_room(struct hc_probe *p)
{
	if (p->got < p->head_cap)
		return true;
	size_t cap = p->head_cap ? p->head_cap * 2 : HC_HEAD_MIN;
	if (cap > HC_HEAD_MAX)
		return false;
	char *head = realloc(p->head, cap);
	if (!head) {
		p->no_verdict = true; /* out of memory here: nothing the server did */
		return false;
	}
	p->head = head;
	p->head_cap = cap;
	return true;
}

/* READING and DRAINING: reads until EAGAIN. Returns true when it ended. */
static bool do_read(struct hc_probe *p, const struct hc_check *chk)
{
	for (;;) {
		char *dst = drain_buf;
		size_t cap = sizeof(drain_buf);

		if (p->state == PROBE_READING) {
			if (!head_room(p))
				return finish(p, false, "no room for the answer's head");
			dst = p->head + p->got;
			cap = p->head_cap - p->got;
		}
		ssize_t n = io_read(p, dst, cap);
		if (n == -EAGAIN)
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
			return finish(p, false, "connection closed before the end of the head");
		if (n < 0)
			return finish(p, false, "read: %s", strerror((int)-n));
		p->got += (size_t)n;
		if (judge(p, chk))
			return true;
	}
}

/* SENDING: writes the rest of the request, then reads. */
static bool do_send(struct hc_probe *p, const struct hc_check *chk)
{
	while (p->sent < chk->request_len) {
		ssize_t n = io_write(p, chk->request + p->sent, chk->request_len - p->sent);
		if (n == -EAGAIN)
			return false;
		if (n < 0)
			return finish(p, false, "send: %s", strerror((int)-n));
		p->sent += (size_t)n;
	}
	p->state = PROBE_READING;
	return do_read(p, chk);
}

/* HANDSHAKE: drives SSL_connect; on success sends the request. */
static bool do_handshake(struct hc_probe *p, const struct hc_check *chk)
{
	int rc = SSL_connect(p->ssl);

	if (rc == 1) {
		p->state = PROBE_SENDING;
		return do_send(p, chk);
	}
	int e = SSL_get_error(p->ssl, rc);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return false;
	long v = SSL_get_verify_result(p->ssl);
	if (v != X509_V_OK) {
		ERR_clear_error();
		return finish(p, false, "TLS handshake: %s", X509_verify_cert_error_string(v));
	}
	return finish(p, false, "TLS handshake: %s", tls_error());
}

/* Sets up TLS on the connected socket: SNI, and the name or address the
 * certificate must match. */
static bool start_tls(struct hc_probe *p, const struct hc_check *chk)
{
	unsigned char ip[16];

	if (!chk->tls_ctx)
		return finish(p, false, "TLS for checks is not set up");
	p->ssl = SSL_new(chk->tls_ctx);
	if (!p->ssl || !SSL_set_fd(p->ssl, p->fd)) {
		p->no_verdict = true; /* out of memory here: nothing the server did */
		return finish(p, false, "TLS: %s", tls_error());
	}
	if (chk->tls_sni && !SSL_set_tlsext_host_name(p->ssl, chk->tls_sni))
		return finish(p, false, "TLS SNI: %s", tls_error());
	if (chk->tls_name) {
		bool is_ip = inet_pton(AF_INET, chk->tls_name, ip) == 1 ||
			     inet_pton(AF_INET6, chk->tls_name, ip) == 1;
		int ok =
			is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(p->ssl), chk->tls_name)
			      : SSL_set1_host(p->ssl, chk->tls_name);
		if (!ok)
			return finish(p, false, "TLS name: %s", tls_error());
	}
	p->state = PROBE_HANDSHAKE;
	return do_handshake(p, chk);
}

static bool connected(struct hc_probe *p, const struct hc_check *chk)
{
	if (chk->proxy_header_len) {
		/* A fresh socket takes a few bytes at once: short is broken. */
		ssize_t n = send(p->fd, chk->proxy_header, chk->proxy_header_len, MSG_NOSIGNAL);
		if (n != (ssize_t)chk->proxy_header_len)
			return finish(p, false, "send: %s",
				      n < 0 ? strerror(errno) : "short write");
	}
	if (chk->kind != CHECK_HTTP)
		return finish(p, true, "check passed");
	if (chk->tls)
		return start_tls(p, chk);
	p->state = PROBE_SENDING;
	return do_send(p, chk);
}

bool hc_probe_start(struct hc_probe *p, const struct hc_check *chk, const struct cfg_addr *addr,
		    int epfd, void *ptr)
{
	hc_probe_init(p);
	p->fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0) {
		p->no_verdict = err_out_of_resources(errno);
		return finish(p, false, "socket: %s", strerror(errno));
	}
	p->state = PROBE_CONNECTING;
	int rc = connect(p->fd, (const struct sockaddr *)&addr->ss, addr->len);
	if (rc < 0 && errno != EINPROGRESS) {
		p->no_verdict = err_out_of_resources(errno);
		return fail_connect(p, errno);
	}
	struct epoll_event ev = {.events = PROBE_EVENTS, .data.ptr = ptr};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, p->fd, &ev) < 0) {
		p->no_verdict = err_out_of_resources(errno);
		return finish(p, false, "epoll_ctl: %s", strerror(errno));
	}
	p->epfd = epfd;
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
	case PROBE_HANDSHAKE:
		return do_handshake(p, chk);
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
	case PROBE_HANDSHAKE:
		finish(p, false, "TLS handshake timed out");
		return;
	case PROBE_SENDING:
	case PROBE_READING:
		finish(p, false,
		       p->got ? "response head incomplete within check_timeout"
			      : "no response within check_timeout");
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

bool hc_probe_move(struct hc_probe *to, struct hc_probe *from, void *ptr)
{
	struct epoll_event ev = {.events = PROBE_EVENTS, .data.ptr = ptr};

	/* Edge-triggered: the new registration reports what is ready now,
	 * which the state's handler takes as it would a late event. */
	if (from->epfd >= 0 && epoll_ctl(from->epfd, EPOLL_CTL_MOD, from->fd, &ev) < 0)
		return false;
	*to = *from;
	hc_probe_init(from);
	return true;
}
