/*
 * sched.h - the health thread's timers: a binary min-heap of deadlines with
 * millisecond precision.
 *
 * The health thread has one timer per checked server (next check, or the
 * running check's timeout) plus the passive sampler: few timers, each firing
 * about once per check interval, where being exact matters more than O(1)
 * arming, so a heap (O(log n) add, delete and pop) fits better than the
 * workers' timer wheel.
 *
 * Thread: the health thread only. A struct hc_timer is embedded in its
 * owner; the heap holds pointers to it while it is armed.
 */
#ifndef FULCRUM_HEALTH_SCHED_H
#define FULCRUM_HEALTH_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hc_timer {
	uint64_t due_ms;
	size_t pos; /* index in the heap + 1; 0 while not armed */
};

struct hc_sched {
	struct hc_timer **heap;
	size_t len, cap;
};

void hc_sched_init(struct hc_sched *s);
void hc_sched_deinit(struct hc_sched *s);

/* Makes room for N armed timers, so hc_sched_add cannot fail below that.
 * 0 or -ENOMEM. */
int hc_sched_reserve(struct hc_sched *s, size_t n);

/* Arms T (re-arms it if armed) to fire at DUE_MS. 0, or -ENOMEM when the
 * heap is full and cannot grow (T is then not armed). */
int hc_sched_add(struct hc_sched *s, struct hc_timer *t, uint64_t due_ms);
void hc_sched_del(struct hc_sched *s, struct hc_timer *t);

/* Disarms and returns the earliest timer due at NOW_MS, or NULL. */
struct hc_timer *hc_sched_pop_due(struct hc_sched *s, uint64_t now_ms);

/* Milliseconds until the earliest deadline (0 when one is due), or -1 when
 * no timer is armed: the epoll_wait timeout. */
int hc_sched_timeout_ms(const struct hc_sched *s, uint64_t now_ms);

#endif
