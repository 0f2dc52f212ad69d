/* tests/unit/replication/test_catchup_rate.c — the catch-up's adaptive budget
 * (replication/catchup_rate.c), fed synthetic client figures: it backs off under load,
 * climbs when the clients are idle, measures their base by short probes, and never
 * starves the catch-up. */
#include "replication/catchup_rate.h"

#include <criterion/criterion.h>

#define MB 1000000ull
#define IVL CATCHUP_RATE_INTERVAL_MS

static uint64_t tick(struct catchup_rate *r, uint64_t ops, uint64_t lat_us, bool working)
{
	struct catchup_rate_sample s = { .ms = IVL, .ops = ops, .busy_us = ops * lat_us,
					 .working = working };

	return catchup_rate_tick(r, &s);
}

/* n intervals alike: the rate after the last */
static uint64_t ticks(struct catchup_rate *r, int n, uint64_t ops, uint64_t lat_us,
		      bool working)
{
	uint64_t rate = r->rate;

	while (n-- > 0)
		rate = tick(r, ops, lat_us, working);
	return rate;
}

/* r with a base of base_us learned in one busy interval while nothing was copied (no
 * probe is due until CATCHUP_RATE_PROBE_EVERY_MS of work) */
static void with_base(struct catchup_rate *r, uint64_t ceiling, uint64_t base_us)
{
	catchup_rate_init(r, ceiling, 60);
	tick(r, 100, base_us, false);
	cr_assert_eq(r->base_us, base_us);
	cr_assert_eq(r->why, CATCHUP_RATE_NO_WORK);
}

Test(catchup_rate, climbs_to_the_ceiling_while_clients_are_idle)
{
	struct catchup_rate r;
	uint64_t last = 0;

	catchup_rate_init(&r, 500 * MB, 60);
	cr_assert_eq(r.rate, CATCHUP_RATE_FLOOR);
	for (int i = 0; i < 20; i++) {
		uint64_t rate = tick(&r, 0, 0, true);

		cr_assert_geq(rate, last);
		cr_assert_leq(rate, 500 * MB);
		last = rate;
	}
	cr_assert_eq(last, 500 * MB);
	cr_assert_eq(r.why, CATCHUP_RATE_CLIENTS_IDLE);
	/* a few stray requests are not a busy client */
	cr_assert_eq(tick(&r, CATCHUP_RATE_BUSY_OPS - 1, 50000, true), 500 * MB);
}

Test(catchup_rate, backs_off_while_clients_are_slowed_beyond_their_share)
{
	struct catchup_rate r;
	uint64_t last;

	with_base(&r, 500 * MB, 1000);
	last = ticks(&r, 20, 0, 0, true); /* idle clients: up to the ceiling */
	/* 60%: latency up to 1000 * 100 / 60 = 1666 us is within; 2000 is not */
	for (int i = 0; i < 5; i++) {
		uint64_t rate = tick(&r, 100, 2000, true);

		cr_assert_lt(rate, last, "interval %d: %llu not below %llu", i,
			     (unsigned long long)rate, (unsigned long long)last);
		last = rate;
	}
	cr_assert_eq(r.why, CATCHUP_RATE_THROTTLED);
	cr_assert_str_eq(catchup_rate_why_str(r.why), "throttled: clients busy");
}

Test(catchup_rate, backs_off_when_fewer_requests_end_at_the_same_latency)
{
	struct catchup_rate r;
	uint64_t last;

	with_base(&r, 500 * MB, 1000); /* 100 requests an interval */
	last = ticks(&r, 20, 0, 0, true);
	/* half of them at the same latency (the rest waited unread in their sockets, which
	 * the block layer does not see): they keep 50%, under their 60 */
	for (int i = 0; i < 3; i++) {
		uint64_t rate = tick(&r, 50, 1000, true);

		cr_assert_lt(rate, last);
		last = rate;
	}
	cr_assert_eq(r.kept_pct, 50);
	cr_assert_eq(r.why, CATCHUP_RATE_THROTTLED);
	/* 70 of them: 70%, within */
	cr_assert_gt(tick(&r, 70, 1000, true), last);
	cr_assert_eq(r.kept_pct, 70);
	/* all of them, each twice as slow: 50% again */
	last = r.rate;
	cr_assert_lt(tick(&r, 100, 2000, true), last);
	cr_assert_eq(r.kept_pct, 50);
	/* idle clients are not judged: no stale figure shown (the first quiet interval
	 * after busy ones is: clients_that_stall_look_throttled_not_idle) */
	tick(&r, 0, 0, true);
	tick(&r, 0, 0, true);
	cr_assert_eq(r.kept_pct, 0);
}

Test(catchup_rate, clients_that_stall_look_throttled_not_idle)
{
	struct catchup_rate r;
	uint64_t rate;

	with_base(&r, 500 * MB, 1000);
	r.rate = 200 * MB;
	cr_assert_gt(tick(&r, 100, 1000, true), 200 * MB); /* busy, within their share */
	rate = r.rate;
	/* then not one request ends in an interval: all wait behind the copies (a
	 * closed-loop client), or the clients stopped: cut, not doubled */
	cr_assert_eq(tick(&r, 0, 0, true), rate * 25 / 100);
	cr_assert_eq(r.why, CATCHUP_RATE_THROTTLED);
	/* still none: idle after all, the rate doubles again */
	cr_assert_eq(tick(&r, 0, 0, true), rate * 25 / 100 * 2);
	cr_assert_eq(r.why, CATCHUP_RATE_CLIENTS_IDLE);
}

Test(catchup_rate, clients_gone_idle_in_a_probe_are_idle_after_it)
{
	struct catchup_rate r;

	catchup_rate_init(&r, 500 * MB, 60);
	r.rate = 100 * MB;
	/* busy clients, no base: a probe; they stop while it holds the copies */
	cr_assert_eq(tick(&r, 100, 1000, true), 0);
	cr_assert_eq(r.why, CATCHUP_RATE_PROBING);
	cr_assert_eq(ticks(&r, CATCHUP_RATE_PROBE_INTERVALS, 0, 0, true), 100 * MB);
	/* the quiet interval after the probe follows quiet ones: idle, not a stall */
	cr_assert_eq(tick(&r, 0, 0, true), 200 * MB);
	cr_assert_eq(r.why, CATCHUP_RATE_CLIENTS_IDLE);
}

Test(catchup_rate, grows_again_while_clients_are_within_their_share)
{
	struct catchup_rate r;
	uint64_t last;

	with_base(&r, 500 * MB, 1000);
	last = ticks(&r, 10, 100, 3000, true);
	for (int i = 0; i < 5; i++) {
		uint64_t rate = tick(&r, 100, 1600, true);

		cr_assert_gt(rate, last);
		last = rate;
	}
	cr_assert_eq(r.why, CATCHUP_RATE_WITHIN_SHARE);
}

/* Intervals from a cut (20 MB/s) back to the ceiling while the clients see lat_us of
 * latency against a base of 1000 us (a share of 60%). */
static int intervals_back(uint64_t lat_us)
{
	struct catchup_rate r;
	int n = 0;

	with_base(&r, 512 * MB, 1000);
	r.rate = 20 * MB;
	while (r.rate < 512 * MB && n < 100) {
		tick(&r, 100, lat_us, true);
		n++;
	}
	cr_assert_eq(r.why, CATCHUP_RATE_WITHIN_SHARE);
	return n;
}

Test(catchup_rate, grows_by_a_quarter_while_clients_keep_well_above_their_share)
{
	/* 1000/1250 = 80% kept, 20 above 60: a quarter a time; 1000/1550 = 64%: steps of
	 * the ceiling / 32 */
	int fast = intervals_back(1250), slow = intervals_back(1550);

	cr_assert_leq(fast, 16, "%d intervals", fast);
	cr_assert_geq(slow, 30, "%d intervals", slow);
}

Test(catchup_rate, never_starves_the_catchup)
{
	struct catchup_rate r;
	unsigned held = 0, n = 0;
	uint64_t rate = 1;

	with_base(&r, 500 * MB, 1000);
	/* for a minute the clients are 100 times slower whenever the catch-up runs at
	 * all (1000 us alone, in the probes): the floor, and only the probes hold it */
	for (; n < 60000 / IVL; n++) {
		rate = tick(&r, 100, rate ? 100000 : 1000, true);
		if (!rate) {
			held++;
			cr_assert_eq(r.why, CATCHUP_RATE_PROBING);
		} else {
			cr_assert_geq(rate, CATCHUP_RATE_FLOOR);
		}
	}
	cr_assert_eq(r.rate, CATCHUP_RATE_FLOOR);
	cr_assert_eq(r.base_us, 1000);
	/* held at most the probes' intervals in every 10 s of work */
	cr_assert_leq(held, (n * IVL / CATCHUP_RATE_PROBE_EVERY_MS + 1) *
				    CATCHUP_RATE_PROBE_INTERVALS);
	cr_assert_gt(held, 0);
	/* a ceiling under the floor: the floor is the ceiling, busy or not */
	catchup_rate_init(&r, 4 * MB, 60);
	tick(&r, 100, 1000, false);
	for (int i = 0; i < 10; i++) {
		rate = tick(&r, 100, i % 2 ? 100000 : 1000, true);
		cr_assert(rate == 0 || rate == 4 * MB, "%llu", (unsigned long long)rate);
	}
}

Test(catchup_rate, probes_for_the_base_when_none_is_known)
{
	struct catchup_rate r;
	uint64_t before;

	catchup_rate_init(&r, 500 * MB, 60);
	before = ticks(&r, 5, 0, 0, true);
	/* busy clients, no base: held for the probe's intervals */
	cr_assert_eq(tick(&r, 100, 5000, true), 0);
	/* the first ones settle (what the catch-up had in flight slows the clients) */
	cr_assert_eq(ticks(&r, CATCHUP_RATE_PROBE_INTERVALS - CATCHUP_RATE_PROBE_MEASURED, 100,
			   2000, true), 0);
	/* the last ones measure the clients alone: base 1000 (800 and 1200, as many
	 * requests in each), back at the rate it had */
	cr_assert_eq(ticks(&r, CATCHUP_RATE_PROBE_MEASURED - 1, 100, 800, true), 0);
	cr_assert_eq(tick(&r, 100, 1200, true), before);
	cr_assert_eq(r.base_us, 1000);
	/* now 1500 us is within 60%, 1700 is not */
	cr_assert_gt(tick(&r, 100, 1500, true), before);
	before = r.rate;
	cr_assert_lt(tick(&r, 100, 1700, true), before);
}

Test(catchup_rate, measures_the_base_again_when_it_is_old)
{
	struct catchup_rate r;
	unsigned n = 0;

	with_base(&r, 500 * MB, 1000);
	while (tick(&r, 100, 1200, true) != 0)
		n++;
	cr_assert_eq(n + 1, CATCHUP_RATE_PROBE_EVERY_MS / IVL);
	/* the clients' workload changed: 3000 us alone is their new base, and 3000 with
	 * the catch-up is within it */
	ticks(&r, CATCHUP_RATE_PROBE_INTERVALS, 100, 3000, true);
	cr_assert_eq(r.base_us, 3000);
	tick(&r, 100, 3000, true);
	cr_assert_eq(r.why, CATCHUP_RATE_WITHIN_SHARE);
}

Test(catchup_rate, fixed_at_the_ceiling_when_not_adaptive)
{
	struct catchup_rate r;

	catchup_rate_init(&r, 64 * MB, 0);
	cr_assert_eq(r.rate, 64 * MB);
	cr_assert_eq(tick(&r, 1000, 100000, true), 64 * MB);
	cr_assert_eq(tick(&r, 0, 0, true), 64 * MB);
	cr_assert_eq(r.why, CATCHUP_RATE_FIXED);
}

Test(catchup_rate, cuts_from_what_the_copies_spent_and_deeper_the_further_under)
{
	struct catchup_rate r;
	struct catchup_rate_sample s = { .ms = IVL, .ops = 100, .busy_us = 100 * 1000,
					  .working = true };

	with_base(&r, 500 * MB, 1000);
	ticks(&r, 20, 0, 0, true); /* idle clients: the budget at the ceiling, 500 MB/s */
	/* the copies spent 25 MB in the interval (100 MB/s: the CPU's pace, not the
	 * budget's) and the clients kept 50 of their 60%: the cut is from 100 MB/s */
	s.ops = 50;
	s.busy_us = 50 * 1000;
	s.bytes = 25 * MB;
	cr_assert_eq(catchup_rate_tick(&r, &s), 100 * MB * 70 / 100);
	cr_assert_eq(r.why, CATCHUP_RATE_THROTTLED);
	/* 20% kept of their 60: a third of it (33%), not 70% */
	r.rate = 200 * MB;
	s.ops = 20;
	s.busy_us = 20 * 1000;
	s.bytes = 0; /* not known: from the rate */
	cr_assert_eq(catchup_rate_tick(&r, &s), 200 * MB * 33 / 100);
	/* 5%: never below a quarter */
	r.rate = 200 * MB;
	s.ops = 5 * 4; /* busy: at least CATCHUP_RATE_BUSY_OPS */
	s.busy_us = s.ops * 1000 * 20; /* 20x slower: 5% by latency */
	cr_assert_eq(catchup_rate_tick(&r, &s), 200 * MB * 25 / 100);
}
