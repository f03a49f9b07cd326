/*
 * util.h - small helpers every module uses: container_of, an intrusive
 * doubly linked list, BUG_ON, branch hints, the monotonic clock.
 */
#ifndef FULCRUM_UTIL_H
#define FULCRUM_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define likely(x)			__builtin_expect(!!(x), 1)
#define unlikely(x)			__builtin_expect(!!(x), 0)
#define ARRAY_SIZE(a)			(sizeof(a) / sizeof((a)[0]))
#define CACHE_LINE			64

/* An internal invariant. Fatal in debug (sanitizer) builds, where CI runs the
 * tests; logged in release builds, where a server must keep serving. */
#ifdef FULCRUM_DEBUG
#define BUG_ON(cond)                                                                               \
	do {                                                                                       \
		if (unlikely(cond)) {                                                              \
			fprintf(stderr, "BUG at %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
			abort();                                                                   \
		}                                                                                  \
	} while (0)
#else
#define BUG_ON(cond)                                                                               \
	do {                                                                                       \
		if (unlikely(cond))                                                                \
			fprintf(stderr, "BUG at %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
	} while (0)
#endif

/* Whether ERR says this whole host ran short (descriptors, memory, socket
 * buffers), not that a peer failed: no other peer would fare better.
 * (EADDRNOTAVAIL is not one: local ports run out per destination.) */
static inline bool err_out_of_resources(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

struct list {
	struct list *next, *prev;
};

static inline void list_init(struct list *l)
{
	l->next = l->prev = l;
}

static inline int list_is_empty(const struct list *l)
{
	return l->next == l;
}

/* Inserts N before HEAD, i.e. at the tail of the list HEAD anchors. */
static inline void list_add_tail(struct list *head, struct list *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

/* Inserts N after HEAD, i.e. at the head of the list HEAD anchors. */
static inline void list_add_head(struct list *head, struct list *n)
{
	list_add_tail(head->next, n);
}

/* Unlinks N and leaves it self-linked, so unlinking twice is harmless. */
static inline void list_del(struct list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}

/* Moves every entry of FROM (in order) to the empty list TO, leaving FROM
 * empty: the way to walk a list whose callbacks may add to it again. */
static inline void list_take_all(struct list *to, struct list *from)
{
	list_init(to);
	if (list_is_empty(from))
		return;
	to->next = from->next;
	to->prev = from->prev;
	to->next->prev = to;
	to->prev->next = to;
	list_init(from);
}

static inline uint64_t clock_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline uint64_t clock_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static inline uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#endif
