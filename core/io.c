/*
 * io.c - plain-socket I/O and the dispatch to a side's I/O layer (see io.h).
 * Worker threads.
 */
#include "core/io.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "core/relay.h"

ssize_t io_recv(struct side *s, void *buf, size_t cap)
{
	if (s->io)
		return s->io->recv(s, buf, cap);
	for (;;) {
		ssize_t n = sys_recv(s->fd, buf, cap, 0);
		if (n > 0) {
			/* A short read drained the socket, unless a FIN or an
			 * error came with it: then read on to see it. */
			if ((size_t)n < cap && !s->hup)
				s->rd = false;
			return n;
		}
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			s->rd = false;
		return -errno;
	}
}

bool io_unread(const struct side *s)
{
	char b;

	if (s->io && s->io->pending(s))
		return true;
	ssize_t n;
	do
		n = recv(s->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	return n >= 0 || errno != EAGAIN;
}

ssize_t io_peek(struct side *s)
{
	char b;
	ssize_t n;

	if (s->io)
		return s->io->peek(s);
	do
		n = recv(s->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

ssize_t io_send(struct side *s, const void *buf, size_t len)
{
	if (s->io)
		return s->io->send(s, buf, len);
	for (;;) {
		ssize_t n = sys_send(s->fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0) {
			if ((size_t)n < len)
				s->wr = false; /* the socket buffer is full */
			return n;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			s->wr = false;
		return -errno;
	}
}

ssize_t io_sendv(struct side *s, const struct iovec *iov, int n)
{
	if (s->io) {
		/* TLS: one record per slice would be wasteful for a head and
		 * its small body; gather small slices first. */
		char tmp[16384];
		size_t len = 0;
		int i = 0;
		for (; i < n && len + iov[i].iov_len <= sizeof(tmp); i++) {
			memcpy(tmp + len, iov[i].iov_base, iov[i].iov_len);
			len += iov[i].iov_len;
		}
		if (len)
			return s->io->send(s, tmp, len);
		return s->io->send(s, iov[0].iov_base, iov[0].iov_len);
	}
	for (;;) {
		struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
		ssize_t w = sys_sendmsg(s->fd, &m, MSG_NOSIGNAL);
		if (w >= 0)
			return w;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			s->wr = false;
		return -errno;
	}
}

void io_shutdown(struct side *s)
{
	if (s->io && s->io->shutdown)
		s->io->shutdown(s);
	shutdown(s->fd, SHUT_WR);
}

void io_free(struct side *s)
{
	if (s->io) {
		s->io->free(s);
		s->io = NULL;
		s->io_ctx = NULL;
	}
}
