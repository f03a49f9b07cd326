/*
 * sched.c - the health thread's timer heap (see sched.h). Health thread only.
 *
 * A 0-based binary min-heap on due_ms; every timer knows its position, so
 * deleting or re-arming one is a sift from where it sits.
 */
#include "health/sched.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

void hc_sched_init(struct hc_sched *s)
{
	s->heap = NULL;
	s->len = s->cap = 0;
}

void hc_sched_deinit(struct hc_sched *s)
{
	for (size_t i = 0; i < s->len; i++)
		s->heap[i]->pos = 0;
	free(s->heap);
	hc_sched_init(s);
}

int hc_sched_reserve(struct hc_sched *s, size_t n)
{
	if (n <= s->cap)
		return 0;
	struct hc_timer **h = realloc(s->heap, n * sizeof(*h));
	if (!h)
		return -ENOMEM;
	s->heap = h;
	s->cap = n;
	return 0;
}

static void place(struct hc_sched *s, size_t i, struct hc_timer *t)
{
	s->heap[i] = t;
	t->pos = i + 1;
}

static void sift_up(struct hc_sched *s, size_t i)
{
	struct hc_timer *t = s->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (s->heap[parent]->due_ms <= t->due_ms)
			break;
		place(s, i, s->heap[parent]);
		i = parent;
	}
	place(s, i, t);
}

static void sift_down(struct hc_sched *s, size_t i)
{
	struct hc_timer *t = s->heap[i];

	for (;;) {
		size_t child = 2 * i + 1;

		if (child >= s->len)
			break;
		if (child + 1 < s->len && s->heap[child + 1]->due_ms < s->heap[child]->due_ms)
			child++;
		if (t->due_ms <= s->heap[child]->due_ms)
			break;
		place(s, i, s->heap[child]);
		i = child;
	}
	place(s, i, t);
}

void hc_sched_del(struct hc_sched *s, struct hc_timer *t)
{
	if (!t->pos)
		return;
	size_t i = t->pos - 1;
	struct hc_timer *last = s->heap[--s->len];

	t->pos = 0;
	if (last == t)
		return;
	place(s, i, last);
	sift_down(s, i);
	sift_up(s, last->pos - 1);
}

int hc_sched_add(struct hc_sched *s, struct hc_timer *t, uint64_t due_ms)
{
	hc_sched_del(s, t);
	if (s->len == s->cap && hc_sched_reserve(s, s->cap ? 2 * s->cap : 16) < 0)
		return -ENOMEM;
	t->due_ms = due_ms;
	place(s, s->len++, t);
	sift_up(s, s->len - 1);
	return 0;
}

struct hc_timer *hc_sched_pop_due(struct hc_sched *s, uint64_t now_ms)
{
	if (s->len == 0 || s->heap[0]->due_ms > now_ms)
		return NULL;
	struct hc_timer *t = s->heap[0];
	hc_sched_del(s, t);
	return t;
}

int hc_sched_timeout_ms(const struct hc_sched *s, uint64_t now_ms)
{
	if (s->len == 0)
		return -1;
	uint64_t due = s->heap[0]->due_ms;
	if (due <= now_ms)
		return 0;
	return due - now_ms > INT_MAX ? INT_MAX : (int)(due - now_ms);
}
