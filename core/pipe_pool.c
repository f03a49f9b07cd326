/*
 * pipe_pool.c - per-worker splice pipes (see pipe_pool.h).
 */
#include "core/pipe_pool.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

void pipe_pool_init(struct pipe_pool *pp, size_t size)
{
	pp->free = NULL;
	pp->n_free = 0;
	pp->free_bytes = 0;
	pp->size = size;
	pp->in_use = 0;
}

static void pipe_destroy(struct pipe *p)
{
	close(p->rd);
	close(p->wr);
	free(p);
}

void pipe_pool_deinit(struct pipe_pool *pp)
{
	while (pp->free) {
		struct pipe *p = pp->free;
		pp->free = p->next;
		pipe_destroy(p);
	}
	pp->n_free = 0;
	pp->free_bytes = 0;
}

struct pipe *pipe_pool_get(struct pipe_pool *pp)
{
	struct pipe *p = pp->free;
	if (p) {
		pp->free = p->next;
		pp->n_free--;
		pp->free_bytes -= p->cap;
		pp->in_use++;
		return p;
	}

	int fds[2];
	p = malloc(sizeof(*p));
	if (!p)
		return NULL;
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
		free(p);
		return NULL;
	}
	p->rd = fds[0];
	p->wr = fds[1];
	p->len = 0;
	p->next = NULL;
	/* The system caps the size at /proc/sys/fs/pipe-max-size; the default
	 * 64k is kept when the request fails. */
	int cap = fcntl(p->wr, F_SETPIPE_SZ, (int)pp->size);
	if (cap < 0)
		cap = fcntl(p->wr, F_GETPIPE_SZ);
	p->cap = cap > 0 ? (uint32_t)cap : 65536;
	pp->in_use++;
	return p;
}

void pipe_pool_put(struct pipe_pool *pp, struct pipe *p)
{
	pp->in_use--;
	/* Sized by what the pipes really hold (the system may have capped
	 * pipe_size); one spare is kept whatever its size. */
	if (p->len != 0 || pp->n_free >= PIPE_POOL_SPARE_MAX ||
	    (pp->n_free && pp->free_bytes + p->cap > PIPE_POOL_SPARE_BYTES)) {
		pipe_destroy(p);
		return;
	}
	p->next = pp->free;
	pp->free = p;
	pp->n_free++;
	pp->free_bytes += p->cap;
}
