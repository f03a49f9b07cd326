/*
 * io.h - the one small interface between a connection's protocol code and
 * its sockets, so that tcp and http code never know whether a side is plain
 * or TLS.
 *
 * A side with io == NULL is a plain socket: recv/send, and the relay may
 * splice it. A side with io set (TLS, see core/tls.h) reads and writes
 * through those callbacks, and never splices.
 *
 * Edge-triggered epoll: every call that meets EAGAIN clears the side's rd or
 * wr flag, which the next event sets again. A plain short read also clears
 * rd (it drained the socket, see relay.c); a TLS read does not, because a
 * record boundary says nothing about the socket.
 */
#ifndef FULCRUM_IO_H
#define FULCRUM_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

struct side;

/*
 * The data path enters the kernel through syscall(2), not glibc's recv,
 * send, sendmsg and splice: those are pthread cancellation points, and each
 * call switches asynchronous cancellation on and off around the syscall,
 * about 1% of a worker's time in tcp-small. Workers are never cancelled.
 * Same returns and errno as the wrappers.
 */
static inline ssize_t sys_recv(int fd, void *buf, size_t len, int flags)
{
	return syscall(SYS_recvfrom, fd, buf, len, flags, NULL, NULL);
}

static inline ssize_t sys_send(int fd, const void *buf, size_t len, int flags)
{
	return syscall(SYS_sendto, fd, buf, len, flags, NULL, 0);
}

static inline ssize_t sys_sendmsg(int fd, const struct msghdr *m, int flags)
{
	return syscall(SYS_sendmsg, fd, m, flags);
}

static inline ssize_t sys_splice(int fd_in, int fd_out, size_t len, unsigned flags)
{
	return syscall(SYS_splice, fd_in, NULL, fd_out, NULL, len, flags);
}

struct io_ops {
	/* Same contract as io_recv / io_send below. */
	ssize_t (*recv)(struct side *s, void *buf, size_t cap);
	ssize_t (*send)(struct side *s, const void *buf, size_t len);
	/* Ends the layer's writing (TLS: close_notify) before io_shutdown's
	 * shutdown(SHUT_WR); never blocks. */
	void (*shutdown)(struct side *s);
	/* Frees the layer's state; the caller closes the fd afterwards. */
	void (*free)(struct side *s);
	/* Whether the layer holds bytes taken from the socket but not yet
	 * returned by recv (TLS: a record read ahead). */
	bool (*pending)(const struct side *s);
	/* Same contract as io_peek below. */
	ssize_t (*peek)(struct side *s);
};

/* Reads into BUF. Returns the bytes read (> 0), 0 at EOF, -EAGAIN when there
 * is nothing now, another -errno on error. */
ssize_t io_recv(struct side *s, void *buf, size_t cap);
/* Writes up to LEN bytes. Returns the bytes written (> 0, maybe fewer than
 * LEN), -EAGAIN when nothing could be written now, another -errno on error. */
ssize_t io_send(struct side *s, const void *buf, size_t len);
/* Writes the IOV array like io_send (one writev on a plain socket). */
ssize_t io_sendv(struct side *s, const struct iovec *iov, int n);
/* Half-closes S for writing: the layer's end of stream, then the FIN. */
void io_shutdown(struct side *s);
/* Frees the side's I/O layer, if any. */
void io_free(struct side *s);
/* Whether S still has bytes, or a FIN, to read now: the layer's own or the
 * socket's (one recv with MSG_PEEK). For a socket about to wait idle, whose
 * waiting bytes no new edge would announce. */
bool io_unread(const struct side *s);
/* What the next io_recv would give, without taking it: > 0 when bytes wait
 * (the layer's payload, not its records: a TLS close_notify is an EOF), 0
 * at EOF, -EAGAIN when nothing has come, another -errno on error. Once a
 * FIN has come, tells whether the peer sent anything before it. */
ssize_t io_peek(struct side *s);

#endif
