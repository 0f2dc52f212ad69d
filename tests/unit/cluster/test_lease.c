/* tests/unit/cluster/test_lease.c — the lease deadline (cluster/lease.c): from the
 * monotonic time the granted keepalive was SENT, plus the TTL, minus the margin. */
#include <criterion/criterion.h>

#include "cluster/lease.h"

Test(lease, deadline_counts_from_the_send_time)
{
	/* TTL 10 s: margin 1 s; sent at t=5000 ms → valid until 14000 ms (excluded) */
	cr_assert_eq(lease_margin_ms(10), 1000);
	cr_assert_eq(lease_deadline_ms(5000, 10), 14000);
	cr_assert(lease_valid(lease_deadline_ms(5000, 10), 13999));
	cr_assert_not(lease_valid(lease_deadline_ms(5000, 10), 14000));
	cr_assert_not(lease_valid(lease_deadline_ms(5000, 10), 20000));
}

Test(lease, margin_has_a_floor_and_never_eats_the_ttl)
{
	cr_assert_eq(lease_margin_ms(2), 200);         /* a tenth */
	cr_assert_eq(lease_margin_ms(1), LEASE_MARGIN_MIN_MS);
	cr_assert_eq(lease_deadline_ms(0, 2), 1800);
	cr_assert_eq(lease_margin_ms(3600), 360000);
	cr_assert(lease_deadline_ms(1000, 1) > 1000);  /* some time is left */
}

Test(lease, no_ttl_is_never_valid)
{
	cr_assert_eq(lease_deadline_ms(5000, 0), 5000);
	cr_assert_not(lease_valid(lease_deadline_ms(5000, 0), 5000));
	cr_assert_eq(lease_deadline_ms(5000, -1), 5000);
	cr_assert_not(lease_valid(0, 0)); /* a node that never held a lease */
}

Test(lease, keepalives_come_three_times_per_ttl)
{
	cr_assert_eq(lease_next_keepalive_ms(1000, 3), 2000);
	cr_assert_eq(lease_next_keepalive_ms(1000, 2), 1666);
	/* two keepalives can fail before the deadline passes */
	cr_assert(lease_next_keepalive_ms(0, 2) * 2 < lease_deadline_ms(0, 2));
	cr_assert(lease_next_keepalive_ms(0, 10) * 2 < lease_deadline_ms(0, 10));
}

Test(lease, retry_interval)
{
	cr_assert_eq(lease_retry_ms(2), 200);
	cr_assert_eq(lease_retry_ms(0), 100);
	cr_assert_eq(lease_retry_ms(60), 1000);
}
