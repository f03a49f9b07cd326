/*
 * relay.c - one direction of a byte stream (see relay.h). Worker thread.
 *
 * Syscalls are the cost of a proxy, so the read side trusts a short read: a
 * recv() that returns less than it asked for emptied the socket's receive
 * queue at that instant, and any byte that arrives later raises a new edge,
 * so there is no extra read just to see EAGAIN. splice() gives no such
 * promise (it also stops when the pipe runs out of slots), so in splice mode
 * the source is read until EAGAIN; bulk transfers amortise that call.
 */
#include "core/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void relay_half_init(struct half *h, struct side *src, struct side *dst)
{
	memset(h, 0, sizeof(*h));
	h->src = src;
	h->dst = dst;
	h->left = RELAY_UNLIMITED;
}

void relay_half_limit(struct half *h, uint64_t len, void (*read_all)(struct half *h))
{
	h->left = len;
	h->read_all = read_all;
	h->eof = false;
	h->shut = false;
	h->err = 0;
}

void relay_half_release(struct worker *w, struct half *h)
{
	free(h->buf);
	h->buf = NULL;
	h->buf_len = h->buf_off = 0;
	if (h->pipe) {
		pipe_pool_put(&w->pipes, h->pipe);
		h->pipe = NULL;
	}
}

/* copy_once's return when the write side failed and h->err is set. */
#define ALREADY_FAILED (-ECANCELED)

static void fail(struct half *h, int err, bool on_src)
{
	h->err = err;
	h->err_on_src = on_src;
}

/* Writes what waits in the buffer or the pipe. Returns 1 when nothing waits
 * any more, 0 when the destination is full, -1 on error. */
static int flush(struct half *h)
{
	while (h->buf_len > 0) {
		ssize_t n = io_send(h->dst, h->buf + h->buf_off, h->buf_len);
		if (n < 0) {
			if (n == -EAGAIN)
				return 0;
			fail(h, (int)-n, false);
			return -1;
		}
		h->buf_off += (uint32_t)n;
		h->buf_len -= (uint32_t)n;
	}
	if (h->buf) {
		free(h->buf);
		h->buf = NULL;
		h->buf_off = 0;
	}
	while (h->pipe && h->pipe->len > 0) {
		ssize_t n = sys_splice(h->pipe->rd, h->dst->fd, h->pipe->len,
				       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0) {
			if (errno == EAGAIN) {
				h->dst->wr = false;
				return 0;
			}
			if (errno == EINTR)
				continue;
			fail(h, errno, false);
			return -1;
		}
		h->pipe->len -= (uint32_t)n;
	}
	return 1;
}

/* Keeps the unsent tail of the bounce buffer. Returns 0 or -ENOMEM. */
static int keep(struct half *h, const char *data, size_t len)
{
	h->buf = malloc(len);
	if (!h->buf)
		return -ENOMEM;
	memcpy(h->buf, data, len);
	h->buf_off = 0;
	h->buf_len = (uint32_t)len;
	return 0;
}

int relay_half_hold(struct half *h, const char *data, size_t len)
{
	return len ? keep(h, data, len) : 0;
}

/* N bytes were read from the source: tells read_all when they were the
 * last ones, before they go out. */
static void took(struct half *h, ssize_t n)
{
	if (h->read_all && h->left != RELAY_UNLIMITED && (uint64_t)n == h->left)
		h->read_all(h);
}

/* One read through the bounce buffer and its write. Returns the bytes read,
 * 0 on EOF, -EAGAIN when there was nothing, another -errno on error. */
static ssize_t copy_once(struct worker *w, struct half *h)
{
	size_t want = h->left < w->scratch_cap ? (size_t)h->left : w->scratch_cap;
	ssize_t n = io_recv(h->src, w->scratch, want);
	if (n <= 0)
		return n;
	took(h, n);
	/* A full read means bulk is coming: splice it, if both sides can. */
	if ((size_t)n == w->scratch_cap && !h->src->io && !h->dst->io)
		h->splice = true;

	ssize_t sent = 0;
	if (h->dst->wr) {
		sent = io_send(h->dst, w->scratch, (size_t)n);
		if (sent < 0) {
			if (sent != -EAGAIN) {
				fail(h, (int)-sent, false);
				return ALREADY_FAILED;
			}
			sent = 0;
		}
	}
	if (sent < n) {
		if (keep(h, w->scratch + sent, (size_t)(n - sent)) < 0) {
			fail(h, ENOMEM, false);
			return ALREADY_FAILED;
		}
	}
	return n;
}

/* One splice from the source into the pipe. Same returns as copy_once. */
static ssize_t splice_once(struct worker *w, struct half *h)
{
	if (!h->pipe) {
		h->pipe = pipe_pool_get(&w->pipes);
		if (!h->pipe) {
			/* No pipe to be had (fd limit): stay on the bounce buffer. */
			h->splice = false;
			return copy_once(w, h);
		}
	}
	size_t want = h->pipe->cap - h->pipe->len;
	if (h->left < want)
		want = (size_t)h->left;
	ssize_t n = sys_splice(h->src->fd, h->pipe->wr, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n <= 0) {
		int err = errno; /* before pipe_pool_put's calls */
		if (n == 0)
			return 0;
		if (err == EAGAIN) {
			/* The socket is dry (or the pipe full, which flush sorts
			 * out). Back to the cheap path for what comes next. */
			if (h->pipe->len == 0) {
				h->src->rd = false;
				h->splice = false;
				pipe_pool_put(&w->pipes, h->pipe);
				h->pipe = NULL;
			}
		}
		return -err;
	}
	h->pipe->len += (uint32_t)n;
	took(h, n);
	return n;
}

enum relay_result relay_half(struct worker *w, struct half *h, size_t *budget)
{
	for (;;) {
		if (h->buf_len || (h->pipe && h->pipe->len)) {
			if (!h->dst->wr)
				return RELAY_WAIT;
			int r = flush(h);
			if (r < 0)
				return RELAY_ERROR;
			if (r == 0)
				return RELAY_WAIT;
		}
		if (h->left == 0) {
			relay_half_release(w, h);
			return RELAY_DONE;
		}
		if (h->eof) {
			if (h->left != RELAY_UNLIMITED) {
				/* The peer closed in the middle of a body. */
				fail(h, EPIPE, true);
				return RELAY_ERROR;
			}
			if (!h->shut) {
				relay_half_release(w, h);
				io_shutdown(h->dst);
				h->shut = true;
			}
			return RELAY_DONE;
		}
		if (!h->src->rd)
			return RELAY_WAIT;
		if (*budget == 0)
			return RELAY_MORE;

		ssize_t n = h->splice ? splice_once(w, h) : copy_once(w, h);
		if (n == 0) {
			h->eof = true;
			continue;
		}
		if (n < 0) {
			if (n == -EAGAIN || n == -EINTR)
				continue;
			if (n != ALREADY_FAILED)
				fail(h, (int)-n, true);
			return RELAY_ERROR;
		}
		h->bytes += (uint64_t)n;
		if (h->left != RELAY_UNLIMITED)
			h->left -= (uint64_t)n;
		*budget = (size_t)n >= *budget ? 0 : *budget - (size_t)n;
	}
}
