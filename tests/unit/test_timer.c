/*
 * test_timer.c - the per-worker timer wheel (core/timer.c): timers fire at
 * their time and never before, across laps, after deletes and re-arms, and
 * timer_wheel_timeout_ms() bounds the sleep until the next one.
 */
#include <criterion/criterion.h>

#include "core/timer.h"

struct probe {
	struct timer t;
	int fired;
	uint64_t fired_at;
	struct timer_wheel *tw; /* for callbacks that re-arm */
	uint64_t rearm_ms; /* 0: do not re-arm */
	struct timer *then; /* armed for now when this one fires */
};

static uint64_t now;

static void on_fire(struct timer *t)
{
	struct probe *p = container_of(t, struct probe, t);
	p->fired++;
	p->fired_at = now;
	if (p->rearm_ms) {
		timer_add(p->tw, &p->t, now + p->rearm_ms);
		p->rearm_ms = 0;
	}
	if (p->then)
		timer_add(p->tw, p->then, now);
}

/* Advances the wheel one millisecond at a time up to TO. */
static void run_to(struct timer_wheel *tw, uint64_t to)
{
	while (now < to) {
		now++;
		timer_wheel_advance(tw, now);
	}
}

static struct timer_wheel tw;

static void setup(void)
{
	now = 1000000;
	timer_wheel_init(&tw, now);
}

TestSuite(timer, .init = setup);

Test(timer, fires_at_its_time_not_before)
{
	static const uint64_t delays[] = {1, 7, 8, 9, 100, 999, 1000, 8191, 8192, 8193, 30000};
	struct probe p[ARRAY_SIZE(delays)] = {0};
	uint64_t start = now;

	for (size_t i = 0; i < ARRAY_SIZE(delays); i++) {
		timer_init(&p[i].t, on_fire);
		timer_add(&tw, &p[i].t, start + delays[i]);
	}
	run_to(&tw, start + 31000);
	for (size_t i = 0; i < ARRAY_SIZE(delays); i++) {
		cr_expect_eq(p[i].fired, 1, "timer +%lu fired %d times", (unsigned long)delays[i],
			     p[i].fired);
		cr_expect_geq(p[i].fired_at, start + delays[i], "timer +%lu fired early at +%lu",
			      (unsigned long)delays[i], (unsigned long)(p[i].fired_at - start));
		cr_expect_leq(p[i].fired_at, start + delays[i] + TW_TICK_MS,
			      "timer +%lu fired late at +%lu", (unsigned long)delays[i],
			      (unsigned long)(p[i].fired_at - start));
	}
	cr_expect_eq(tw.count, 0);
}

Test(timer, large_jump_fires_everything_due_once)
{
	struct probe a = {0}, b = {0};
	timer_init(&a.t, on_fire);
	timer_init(&b.t, on_fire);
	timer_add(&tw, &a.t, now + 50);
	timer_add(&tw, &b.t, now + 3600000); /* an hour: many laps away */
	now += 20000;
	timer_wheel_advance(&tw, now);
	cr_expect_eq(a.fired, 1);
	cr_expect_eq(b.fired, 0, "a timer an hour away fired after 20 s");
	cr_expect(timer_is_armed(&b.t));
	now += 3600000;
	timer_wheel_advance(&tw, now);
	cr_expect_eq(b.fired, 1);
}

Test(timer, deleted_timer_never_fires)
{
	struct probe a = {0};
	timer_init(&a.t, on_fire);
	timer_add(&tw, &a.t, now + 10);
	timer_del(&tw, &a.t);
	timer_del(&tw, &a.t); /* twice is harmless */
	cr_expect(!timer_is_armed(&a.t));
	run_to(&tw, now + 100);
	cr_expect_eq(a.fired, 0);
	cr_expect_eq(tw.count, 0);
}

Test(timer, rearm_moves_the_deadline)
{
	struct probe a = {0};
	uint64_t start = now;
	timer_init(&a.t, on_fire);
	timer_add(&tw, &a.t, start + 10);
	timer_add(&tw, &a.t, start + 500); /* re-arming replaces the first time */
	cr_expect_eq(tw.count, 1);
	run_to(&tw, start + 400);
	cr_expect_eq(a.fired, 0);
	run_to(&tw, start + 600);
	cr_expect_eq(a.fired, 1);
	cr_expect_geq(a.fired_at, start + 500);
}

Test(timer, callback_may_rearm_itself)
{
	struct probe a = {.tw = &tw, .rearm_ms = 200};
	uint64_t start = now;
	timer_init(&a.t, on_fire);
	timer_add(&tw, &a.t, start + 100);
	run_to(&tw, start + 150);
	cr_expect_eq(a.fired, 1);
	cr_expect(timer_is_armed(&a.t));
	run_to(&tw, start + 400);
	cr_expect_eq(a.fired, 2);
	cr_expect_geq(a.fired_at, start + 300);
}

Test(timer, timeout_bounds_the_sleep)
{
	struct probe a = {0};
	cr_expect_eq(timer_wheel_timeout_ms(&tw), -1, "no timer: sleep without a bound");
	timer_init(&a.t, on_fire);
	timer_add(&tw, &a.t, now + 250);
	int t = timer_wheel_timeout_ms(&tw);
	cr_expect(t >= 250 && t <= 250 + TW_TICK_MS, "timeout %d for a timer 250 ms away", t);
	/* Sleeping that long and advancing fires it. */
	now += (uint64_t)t;
	timer_wheel_advance(&tw, now);
	cr_expect_eq(a.fired, 1);
	cr_expect_eq(timer_wheel_timeout_ms(&tw), -1);
}

Test(timer, past_deadline_fires_on_next_advance)
{
	struct probe a = {0};
	timer_init(&a.t, on_fire);
	timer_add(&tw, &a.t, now - 5000);
	cr_expect_eq(timer_wheel_timeout_ms(&tw), 0);
	timer_wheel_advance(&tw, now);
	cr_expect_eq(a.fired, 1);
}

/* A timer armed for "now" by a callback that runs when now is exactly on a
 * tick boundary fires on the next advance, not a lap (8 s) later: the slot
 * being run is not the one it lands in. */
Test(timer, armed_for_now_inside_a_callback_on_a_tick_boundary)
{
	struct probe a = {.tw = &tw}, b = {0};
	uint64_t start = now;

	cr_assert_eq(start % TW_TICK_MS, 0);
	timer_init(&a.t, on_fire);
	timer_init(&b.t, on_fire);
	a.then = &b.t;
	timer_add(&tw, &a.t, start + TW_TICK_MS);
	run_to(&tw, start + TW_TICK_MS);
	cr_expect_eq(a.fired, 1);
	cr_expect_eq(b.fired, 0);
	int t = timer_wheel_timeout_ms(&tw);
	cr_expect(t >= 0 && t <= TW_TICK_MS, "sleep of %d ms for a due timer", t);
	run_to(&tw, start + 2 * TW_TICK_MS);
	cr_expect_eq(b.fired, 1, "the timer armed for now waited for a later lap");
}

/* The same after a jump of more than a lap (a stopped process): the timer
 * that fires in the catch-up arms one for now, which fires on the next
 * advance. */
Test(timer, armed_for_now_inside_a_callback_after_a_long_stall)
{
	struct probe a = {.tw = &tw}, b = {0};
	uint64_t start = now;

	timer_init(&a.t, on_fire);
	timer_init(&b.t, on_fire);
	a.then = &b.t;
	timer_add(&tw, &a.t, start + 20000);
	now = start + 20000; /* 2.4 laps at once */
	timer_wheel_advance(&tw, now);
	cr_expect_eq(a.fired, 1);
	run_to(&tw, now + 2 * TW_TICK_MS);
	cr_expect_eq(b.fired, 1, "the timer armed for now waited for a later lap");
}
