/*
 * relay.h - moving a byte stream one way between two sockets: one routine,
 * relay_half(), serves both directions of a tcp connection or tunnel.
 *
 * A direction (struct half) reads from its source side and writes to its
 * destination side. Small exchanges go through the worker's bounce buffer:
 * one recv, one send, and nothing is held afterwards. As soon as a read fills
 * the bounce buffer the direction is a bulk stream and switches to splice(2)
 * through a pipe from the worker's pool, so bulk bytes never cross user
 * space; it switches back (and returns the pipe) once the source runs dry.
 * Bytes that the destination could not take yet are kept in a buffer or the
 * pipe, and the source is not read again until they are gone.
 *
 * Half-close is a state of the half: after the source's EOF and the last
 * byte written, the destination gets shutdown(SHUT_WR); the other direction
 * goes on.
 *
 * Thread: the worker owning the connection.
 */
#ifndef FULCRUM_RELAY_H
#define FULCRUM_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/io.h"
#include "core/pipe_pool.h"
#include "core/worker.h"

struct conn;

/* One socket of a connection. Edge-triggered epoll: rd/wr remember that the
 * socket was reported ready and has not returned EAGAIN since. */
struct side {
	struct ev_handler h;
	int fd;
	bool rd, wr;
	bool hup; /* EPOLLRDHUP, EPOLLHUP or EPOLLERR seen: read to the end */
	struct conn *c;
	const struct io_ops *io; /* NULL: plain socket (see io.h) */
	void *io_ctx; /* the layer's state, e.g. the SSL object */
};

struct half {
	struct side *src, *dst;
	char *buf; /* bytes not yet written to dst; NULL when none */
	uint32_t buf_off, buf_len;
	struct pipe *pipe; /* splice mode only, and only while bytes wait */
	bool splice; /* the source streams in bulk: use splice */
	bool eof; /* the source has sent FIN */
	bool shut; /* dst got shutdown(SHUT_WR) */
	uint64_t left; /* bytes this direction may still move (body length);
			  RELAY_UNLIMITED for a stream that ends with EOF */
	int err; /* errno of a failed read (src) or write (dst), 0 if none */
	bool err_on_src;
	uint64_t bytes;
	/* Called once the last of `left` bytes has been read, before it is
	 * written: the source is done with this direction. NULL: nothing. */
	void (*read_all)(struct half *h);
};

#define RELAY_UNLIMITED UINT64_MAX

/* Bytes one pass may move for a connection before others get their turn
 * (worker->turn_budget): RELAY_BUDGET while few connections are ready. A
 * round (one epoll batch, or the connections resumed after it) moves about
 * RELAY_ROUND_BUDGET in all, so hundreds of ready bulk connections cannot
 * keep their worker from its other clients for long, but each moves at
 * least RELAY_MIN_TURN. */
#define RELAY_BUDGET	   (1024 * 1024)
#define RELAY_ROUND_BUDGET (16 * 1024 * 1024)
#define RELAY_MIN_TURN	   (64 * 1024)

static inline size_t relay_turn_budget(size_t ready)
{
	size_t share = ready ? RELAY_ROUND_BUDGET / ready : RELAY_BUDGET;

	if (share > RELAY_BUDGET)
		return RELAY_BUDGET;
	return share < RELAY_MIN_TURN ? RELAY_MIN_TURN : share;
}

enum relay_result {
	RELAY_WAIT, /* nothing more to do until the next event */
	RELAY_MORE, /* budget used up; more may be ready */
	RELAY_DONE, /* EOF passed on, or `left` bytes moved: this direction is finished */
	RELAY_ERROR, /* h->err says what */
};

void relay_half_init(struct half *h, struct side *src, struct side *dst);
/* Sets up H to move exactly LEN bytes (a body) and then stop, without
 * passing any EOF on. An EOF before that is an error (EPIPE on the source).
 * READ_ALL, when not NULL, is told when the last byte is read. */
void relay_half_limit(struct half *h, uint64_t len, void (*read_all)(struct half *h));
/* Queues LEN bytes already taken from H's source (for instance read past a
 * request head) to go out before anything read later. Returns 0 or -ENOMEM. */
int relay_half_hold(struct half *h, const char *data, size_t len);
/* Moves bytes until EAGAIN, EOF, an error, or *BUDGET bytes; decrements
 * *BUDGET by what it moved. */
enum relay_result relay_half(struct worker *w, struct half *h, size_t *budget);
/* Frees the buffer and gives back (or closes) the pipe. */
void relay_half_release(struct worker *w, struct half *h);
/* Bytes read from H's source that its destination has not taken yet. */
static inline uint64_t relay_half_pending(const struct half *h)
{
	return (uint64_t)h->buf_len + (h->pipe ? h->pipe->len : 0);
}

#endif
