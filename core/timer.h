/*
 * timer.h - the per-worker timer wheel that holds every timeout of the
 * connections a worker owns (no timerfd per connection).
 *
 * One level of TW_SLOTS slots, TW_TICK_MS wide. A timer lands in the slot of
 * its expiry tick; timers further away than one lap share slots with nearer
 * ones and are skipped until their time comes. A bitmap of non-empty slots
 * makes "when is the next expiry" a few word scans, so an idle worker sleeps
 * until then instead of ticking.
 *
 * Thread: one worker only. Callbacks run from timer_wheel_advance() and may
 * add or delete any timer, including their own.
 */
#ifndef FULCRUM_TIMER_H
#define FULCRUM_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/util.h"

#define TW_SLOTS   1024
#define TW_TICK_MS 8

struct timer;
typedef void timer_fn(struct timer *t);

struct timer {
	struct list node; /* self-linked when not armed */
	uint64_t expire_ms;
	timer_fn *fn;
};

struct timer_wheel {
	struct list slots[TW_SLOTS];
	uint64_t used[TW_SLOTS / 64]; /* bit set: slot may be non-empty */
	uint64_t tick; /* next tick to process */
	uint64_t now_ms;
	uint32_t count;
};

void timer_wheel_init(struct timer_wheel *tw, uint64_t now_ms);
void timer_init(struct timer *t, timer_fn *fn);
/* Arms T to fire at EXPIRE_MS (re-arms it if already armed). */
void timer_add(struct timer_wheel *tw, struct timer *t, uint64_t expire_ms);
void timer_del(struct timer_wheel *tw, struct timer *t);
static inline bool timer_is_armed(const struct timer *t)
{
	return !list_is_empty(&t->node);
}
/* Runs every timer that expired at or before NOW_MS. */
void timer_wheel_advance(struct timer_wheel *tw, uint64_t now_ms);
/* Milliseconds until the earliest slot that holds a timer (0 if one is due),
 * or -1 when no timer is armed. An upper bound for epoll_wait. */
int timer_wheel_timeout_ms(const struct timer_wheel *tw);

#endif
