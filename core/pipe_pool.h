/*
 * pipe_pool.h - a worker's pool of splice pipes.
 *
 * A relay direction takes a pipe only while bytes sit in it and gives it back
 * as soon as it is empty, so idle connections hold no pipe. A pipe that still
 * holds bytes is never returned: pipe_pool_put() closes it instead, so bytes
 * can never leak from one connection into another.
 *
 * Thread: one worker only.
 */
#ifndef FULCRUM_PIPE_POOL_H
#define FULCRUM_PIPE_POOL_H

#include <stddef.h>
#include <stdint.h>

struct pipe {
	int rd, wr;
	uint32_t cap; /* capacity after F_SETPIPE_SZ */
	uint32_t len; /* bytes in the pipe, kept by the relay */
	struct pipe *next; /* free list */
};

struct pipe_pool {
	struct pipe *free;
	size_t n_free;
	size_t free_bytes; /* the spares' capacity */
	size_t size; /* requested capacity */
	size_t in_use;
};

/* Spare pipes are kept up to PIPE_POOL_SPARE_BYTES of capacity, or one
 * pipe if it is larger (at most PIPE_POOL_SPARE_MAX pipes): Linux counts a
 * pipe's capacity, used or not, against an unprivileged user's pipe
 * allowance (fs.pipe-user-pages-soft, 64 MiB), past which new pipes get
 * two pages. */
#define PIPE_POOL_SPARE_BYTES (16u << 20)
#define PIPE_POOL_SPARE_MAX   64u

void pipe_pool_init(struct pipe_pool *pp, size_t size);
void pipe_pool_deinit(struct pipe_pool *pp);
/* An empty pipe, or NULL (out of fds or memory). */
struct pipe *pipe_pool_get(struct pipe_pool *pp);
void pipe_pool_put(struct pipe_pool *pp, struct pipe *p);

#endif
