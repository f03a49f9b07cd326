/*
 * timer.c - the per-worker timer wheel (see timer.h). Runs on one worker.
 */
#include "core/timer.h"

#include <string.h>

#define TW_MASK (TW_SLOTS - 1)

void timer_wheel_init(struct timer_wheel *tw, uint64_t now_ms)
{
	memset(tw, 0, sizeof(*tw));
	for (int i = 0; i < TW_SLOTS; i++)
		list_init(&tw->slots[i]);
	tw->now_ms = now_ms;
	tw->tick = now_ms / TW_TICK_MS;
}

void timer_init(struct timer *t, timer_fn *fn)
{
	list_init(&t->node);
	t->fn = fn;
	t->expire_ms = 0;
}

void timer_add(struct timer_wheel *tw, struct timer *t, uint64_t expire_ms)
{
	if (timer_is_armed(t))
		timer_del(tw, t);
	/* Rounded up: the slot of tick T is processed once now >= T * TW_TICK_MS,
	 * so every timer found in a processed slot of the current lap is due. */
	uint64_t tick = (expire_ms + TW_TICK_MS - 1) / TW_TICK_MS;
	/* A timer already due goes into the next slot to be processed, so that
	 * it fires on the next advance instead of a lap later. */
	if (tick < tw->tick)
		tick = tw->tick;
	unsigned slot = tick & TW_MASK;
	t->expire_ms = expire_ms;
	list_add_tail(&tw->slots[slot], &t->node);
	tw->used[slot / 64] |= 1ull << (slot % 64);
	tw->count++;
}

void timer_del(struct timer_wheel *tw, struct timer *t)
{
	if (!timer_is_armed(t))
		return;
	list_del(&t->node);
	tw->count--;
	/* The slot's bit is cleared lazily by advance or timeout scans. */
}

static void run_slot(struct timer_wheel *tw, unsigned slot, uint64_t now_ms)
{
	struct list due;
	struct list *head = &tw->slots[slot];

	/* Take the whole slot first: callbacks may re-arm timers into it. */
	list_init(&due);
	if (list_is_empty(head)) {
		tw->used[slot / 64] &= ~(1ull << (slot % 64));
		return;
	}
	list_take_all(&due, head);
	tw->used[slot / 64] &= ~(1ull << (slot % 64));

	while (!list_is_empty(&due)) {
		struct timer *t = container_of(due.next, struct timer, node);
		list_del(&t->node);
		if (t->expire_ms > now_ms) {
			/* Not due yet: a later lap. Put it back. */
			list_add_tail(head, &t->node);
			tw->used[slot / 64] |= 1ull << (slot % 64);
			continue;
		}
		tw->count--;
		t->fn(t);
	}
}

void timer_wheel_advance(struct timer_wheel *tw, uint64_t now_ms)
{
	uint64_t now_tick = now_ms / TW_TICK_MS;

	tw->now_ms = now_ms;
	/* More than a lap behind (the process was stopped, say): the last lap
	 * of slots holds every timer, so start there. Each slot is visited
	 * once and the loop ends past now, as after a short advance. */
	if (now_tick >= tw->tick && now_tick - tw->tick >= TW_SLOTS)
		tw->tick = now_tick - TW_SLOTS + 1;
	while (tw->tick <= now_tick) {
		unsigned slot = tw->tick & TW_MASK;
		/* Past this slot before its callbacks run: a timer they arm for
		 * now lands in the next slot, not in this one a lap away. */
		tw->tick++;
		if (tw->used[slot / 64] & (1ull << (slot % 64)))
			run_slot(tw, slot, now_ms);
	}
}

int timer_wheel_timeout_ms(const struct timer_wheel *tw)
{
	if (tw->count == 0)
		return -1;
	for (unsigned i = 0; i < TW_SLOTS;) {
		unsigned slot = (tw->tick + i) & TW_MASK;
		uint64_t word = tw->used[slot / 64] >> (slot % 64);
		if (word == 0) {
			i += 64 - slot % 64;
			continue;
		}
		i += (unsigned)__builtin_ctzll(word);
		if (i >= TW_SLOTS)
			break;
		uint64_t at = (tw->tick + i) * TW_TICK_MS;
		return at <= tw->now_ms ? 0 : (int)(at - tw->now_ms);
	}
	return TW_SLOTS * TW_TICK_MS;
}
