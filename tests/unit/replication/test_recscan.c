/* tests/unit/replication/test_recscan.c — replication/recscan.c: a round's end. */
#include "replication/recscan.h"

#include <criterion/criterion.h>

#include "common/loop.h"
#include "replication/replica_internal.h"

static struct loop *lp;
static unsigned rounds;

static bool wants(void *ctx, const struct family *f)
{
	(void)ctx;
	(void)f;
	return true;
}

static bool scanned(void *ctx, struct family *f, const struct layout_segment *segs, size_t n)
{
	(void)ctx;
	(void)f;
	(void)segs;
	(void)n;
	return false;
}

static void round_end(void *ctx, bool busy)
{
	(void)ctx;
	(void)busy;
	if (++rounds == 2)
		loop_stop(lp);
}

static void too_long(void *arg)
{
	(void)arg;
	loop_stop(lp);
}

/* A round with no family to scan (the last one gone) ends too: the user's round_end
 * runs, as after any round (the encoder frees its idle buffers there; it ran only
 * after a family's answer, so the pool stayed once the last EC family went), and the
 * rounds go on. */
Test(recscan, a_round_with_no_family_to_scan_ends_too)
{
	static const struct recscan_ops ops = { wants, scanned, round_end };
	static const struct recscan_periods p = { 10, 10, 10 };
	struct replicas rs = { 0 };
	struct loop_timer *t;
	struct recscan *sc;

	cr_assert_eq(loop_create(&lp), 0);
	rs.loop = lp;
	cr_assert_eq(recscan_create(&rs, "test", &p, &ops, NULL, &sc), 0);
	cr_assert_eq(loop_timer_add(lp, 2000, too_long, NULL, &t), 0);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(rounds, 2, "round_end ran %u times in 2 s of 10 ms rounds", rounds);
	loop_timer_cancel(t);
	recscan_destroy(sc);
	loop_destroy(lp);
}
