/*
 * buffers.c - the http proxy's buffers and output queues (see
 * proxy_internal.h). A connection holds its client buffer (rbuf) and its
 * server buffer (sbuf) only while bytes wait in them; both come from the
 * worker's free lists. Worker thread.
 */
#include <errno.h>

#include "core/http/proxy_internal.h"
#include "core/io.h"
#include "core/worker.h"

int http_rbuf_get(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	if (hc->rbuf)
		return 0;
	size_t cap = c->w->scratch_cap;
	if (cap < c->lc->max_header_size + 1024)
		cap = c->lc->max_header_size + 1024;
	hc->rbuf = worker_buf_get(c->w, cap);
	if (!hc->rbuf)
		return -ENOMEM;
	hc->rcap = (uint32_t)cap;
	hc->rlen = hc->rpos = hc->rsend = 0;
	return 0;
}

void http_rbuf_put(struct conn *c, struct http_conn *hc)
{
	worker_buf_put(c->w, hc->rbuf, hc->rcap);
	hc->rbuf = NULL;
	hc->rlen = hc->rcap = hc->rpos = hc->rsend = 0;
}

int http_sbuf_get(struct conn *c)
{
	struct http_conn *hc = http_of(c);
	if (hc->sbuf)
		return 0;
	size_t cap = c->w->scratch_cap < RESP_HEAD_MAX ? RESP_HEAD_MAX : c->w->scratch_cap;
	hc->sbuf = worker_buf_get(c->w, cap);
	if (!hc->sbuf)
		return -ENOMEM;
	hc->scap = (uint32_t)cap;
	hc->slen = hc->spos = hc->ssend = 0;
	return 0;
}

void http_sbuf_put(struct conn *c, struct http_conn *hc)
{
	worker_buf_put(c->w, hc->sbuf, hc->scap);
	hc->sbuf = NULL;
	hc->slen = hc->scap = hc->spos = hc->ssend = 0;
}

/* Writes what Q holds to S. Returns 1 when all is written, 0 when S is full,
 * -errno on error. Adds the bytes written to *COUNT. */
int http_outq_flush(struct side *s, struct outq *q, uint64_t *count)
{
	for (;;) {
		/* An empty entry would make no progress, last in the queue. */
		while (q->i < q->n && q->iov[q->i].iov_len == 0)
			q->i++;
		if (q->i == q->n)
			return 1;
		if (!s->wr)
			return 0;
		ssize_t n = io_sendv(s, &q->iov[q->i], q->n - q->i);
		if (n < 0)
			return n == -EAGAIN ? 0 : (int)n;
		*count += (uint64_t)n;
		while (n > 0 && q->i < q->n) {
			struct iovec *v = &q->iov[q->i];
			size_t k = (size_t)n < v->iov_len ? (size_t)n : v->iov_len;
			v->iov_base = (char *)v->iov_base + k;
			v->iov_len -= k;
			n -= (ssize_t)k;
			if (v->iov_len == 0)
				q->i++;
		}
	}
}

void http_outq_set(struct outq *q, const void *a, size_t alen, const void *b, size_t blen,
		   const void *c, size_t clen)
{
	q->n = q->i = 0;
	if (alen)
		q->iov[q->n++] = (struct iovec){(void *)a, alen};
	if (blen)
		q->iov[q->n++] = (struct iovec){(void *)b, blen};
	if (clen)
		q->iov[q->n++] = (struct iovec){(void *)c, clen};
}
