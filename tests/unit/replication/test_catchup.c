/* tests/unit/replication/test_catchup.c — replication/catchup.c's pure parts: which
 * records want a copy, which node takes it, and the byte budget. */
#include "replication/catchup.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "cluster/placement.h"

static struct layout_segment sealed(uint32_t seq, unsigned nholders, const char *const *h)
{
	struct layout_segment s = { .id = { 0x1234, seq }, .state = LAYOUT_SEG_SEALED,
				    .length = 1 << 20, .epoch = 1, .nholders = nholders };

	for (unsigned i = 0; i < nholders; i++)
		snprintf(s.holders[i], sizeof(s.holders[i]), "%s", h[i]);
	return s;
}

Test(catchup, only_sealed_nonempty_records_below_r_want_a_copy)
{
	const char *h[] = { "n0", "n1", "n2" };
	struct layout_segment s = sealed(1, 2, h);

	cr_assert(catchup_wanted(&s, 3));
	cr_assert_not(catchup_wanted(&s, 2));
	s.nholders = 3;
	cr_assert_not(catchup_wanted(&s, 3));
	s = sealed(1, 2, h);
	s.state = LAYOUT_SEG_OPEN; /* the replica set's: a seal first */
	cr_assert_not(catchup_wanted(&s, 3));
	s = sealed(1, 2, h);
	s.length = 0; /* nothing acknowledged in it: nothing to copy */
	cr_assert_not(catchup_wanted(&s, 3));
}

Test(catchup, picks_a_usable_node_of_a_domain_no_holder_has)
{
	const char *h[] = { "n0", "n1" };
	struct layout_segment s = sealed(7, 2, h);
	struct catchup_cand k[] = {
		{ "n1", "", true },         /* a holder */
		{ "n2", "rack1", true },    /* n1's rack: refused */
		{ "n3", "", false },        /* down or not connected */
		{ "n4", "", true },         /* the only fit */
		{ "n0", "", true },         /* self */
	};

	k[0].domain = "rack1";
	cr_assert_eq(catchup_pick(&s, k, 5, "n0", ""), 3);
	k[3].usable = false;
	cr_assert_eq(catchup_pick(&s, k, 5, "n0", ""), -1);
	/* n2 in the owner's own domain is refused too */
	k[1].domain = "home";
	cr_assert_eq(catchup_pick(&s, k, 5, "n0", "home"), -1);
	k[1].domain = "rack2";
	cr_assert_eq(catchup_pick(&s, k, 5, "n0", "home"), 1);
}

/* Among several fits, the node placement first chose for the segment (the key
 * replica_place uses), so a returning holder gets back what it held. */
static struct layout_segment striped(uint32_t seq, const char *const *frags, unsigned k,
				     unsigned m)
{
	struct layout_segment s = sealed(seq, 0, NULL);

	s.stripe.k = k;
	s.stripe.m = m;
	for (unsigned i = 0; i < k + m; i++) {
		snprintf(s.stripe.frags[i], sizeof(s.stripe.frags[i]), "%s", frags[i]);
		s.stripe.crcs[i] = 0x1000 + i;
	}
	return s;
}

/* A lost fragment goes to a usable node of a failure domain no other fragment's holder
 * has; this node (the owner) may take it like any; none fits: -1 (stays degraded). */
Test(catchup, a_lost_fragment_goes_to_a_domain_the_stripe_does_not_use)
{
	const char *f[] = { "n0", "n3", "n1" }; /* 2+1, n3 gone */
	struct layout_segment s = striped(9, f, 2, 1);
	struct catchup_cand k[] = {
		{ "n1", "", true },       /* holds fragment 2 */
		{ "n2", "rack1", true },  /* n1's rack: refused */
		{ "n3", "", false },      /* the gone one */
		{ "n4", "", true },       /* the only fit */
		{ "n0", "", true },       /* this node: holds fragment 0 */
	};

	k[0].domain = "rack1";
	cr_assert_eq(catchup_pick_frag(&s, 1, k, 5), 3);
	k[3].usable = false;
	cr_assert_eq(catchup_pick_frag(&s, 1, k, 5), -1);
	/* the owner holding none of the stripe takes it itself when it is the only fit */
	f[0] = "n4";
	s = striped(9, f, 2, 1);
	cr_assert_eq(catchup_pick_frag(&s, 1, k, 5), 4);
	/* the lost holder's own domain is free again: a node of it fits */
	k[2] = (struct catchup_cand){ "n5", "home", true };
	k[4].usable = false;
	cr_assert_eq(catchup_pick_frag(&s, 1, k, 5), 2);
}

/* With the replicas kept beside the stripe (QUILL_EC_KEEP_REPLICAS=1), a node that
 * holds a replica of the segment is no home for a rebuilt fragment: the rebuild's mark
 * cannot name a holder, so its orphan check could drop the fragment before the stripe
 * names it. */
Test(catchup, a_lost_fragment_never_goes_to_a_replica_holder)
{
	const char *f[] = { "n0", "n3", "n1" }; /* 2+1, n3 gone */
	struct layout_segment s = striped(9, f, 2, 1);
	struct catchup_cand k[] = {
		{ "n1", "", true },  /* holds fragment 2 */
		{ "n2", "", true },  /* holds a replica: refused */
		{ "n3", "", false }, /* the gone one */
		{ "n4", "", true },  /* fits */
		{ "n0", "", true },  /* this node: holds fragment 0 */
	};

	s.nholders = 2;
	snprintf(s.holders[0], sizeof(s.holders[0]), "n0");
	snprintf(s.holders[1], sizeof(s.holders[1]), "n2");
	for (uint32_t seq = 1; seq <= 32; seq++) { /* n2 loses whatever the rendezvous says */
		s.id.seq = seq;
		cr_assert_eq(catchup_pick_frag(&s, 1, k, 5), 3, "segment %u", seq);
	}
	k[3].usable = false; /* only the replica holder is left: the stripe stays degraded */
	cr_assert_eq(catchup_pick_frag(&s, 1, k, 5), -1);
	s.nholders = 0; /* the replicas went: n2 fits */
	cr_assert_eq(catchup_pick_frag(&s, 1, k, 5), 1);
}

Test(catchup, prefers_the_rendezvous_choice_of_the_segment)
{
	const char *h[] = { "n0" };
	struct catchup_cand k[] = { { "n1", "", true }, { "n2", "", true }, { "n3", "", true } };
	unsigned hits[3] = { 0 };

	for (uint32_t seq = 1; seq <= 64; seq++) {
		struct layout_segment s = sealed(seq, 1, h);
		struct placement_node pn[3];
		uint64_t picked[2];
		int i = catchup_pick(&s, k, 3, "n0", "");

		for (int j = 0; j < 3; j++)
			pn[j] = (struct placement_node){ placement_domain_id(k[j].id),
							 placement_domain_id(k[j].id), 1, true };
		cr_assert_eq(placement_pick(pn, 3, 0x1234 ^ ((uint64_t)seq << 32 | seq), 2, picked),
			     0);
		cr_assert_geq(i, 0);
		cr_assert_eq(pn[i].id, picked[0], "segment %u", seq);
		hits[i]++;
	}
	cr_assert(hits[0] && hits[1] && hits[2], "every node gets some: %u %u %u", hits[0],
		  hits[1], hits[2]);
}

Test(catchup, the_budget_lets_rate_bytes_a_second_through)
{
	struct catchup_budget b;
	uint64_t taken = 0, now = 1000;

	catchup_budget_init(&b, 1000000, 100000, now); /* 1 MB/s, 100 kB at once */
	cr_assert_eq(catchup_budget_take(&b, now, 100000), 0); /* a full bucket */
	cr_assert_eq(catchup_budget_take(&b, now, 100000), 100); /* empty: 100 ms */
	cr_assert_eq(catchup_budget_take(&b, now + 50, 100000), 50);
	cr_assert_eq(catchup_budget_take(&b, now + 100, 100000), 0);
	/* over 10 s of 1 ms steps, about 10 MB go through, never much more */
	for (now += 100; now < 11100; now++)
		while (catchup_budget_take(&b, now, 25000) == 0)
			taken += 25000;
	cr_assert_geq(taken, 9900000);
	cr_assert_leq(taken, 10100000);
	/* idle for a minute: the bucket holds one burst, not a minute's worth */
	now += 60000;
	cr_assert_eq(catchup_budget_take(&b, now, 100000), 0);
	cr_assert_neq(catchup_budget_take(&b, now, 1), 0);
}

Test(catchup, a_new_rate_counts_from_when_it_is_set_and_a_hold_stops_every_take)
{
	struct catchup_budget b;

	catchup_budget_init(&b, 1000000, 100000, 0); /* 1 MB/s */
	cr_assert_eq(catchup_budget_take(&b, 0, 100000), 0);
	/* 50 ms at 1 MB/s (50 kB), then 10 MB/s: the other 50 kB in 5 ms */
	catchup_budget_set_rate(&b, 50, 10000000);
	cr_assert_eq(catchup_budget_take(&b, 50, 100000), 5);
	cr_assert_eq(catchup_budget_take(&b, 55, 100000), 0);
	/* held until 300: a full bucket waits all the same, then goes */
	catchup_budget_hold(&b, 300);
	cr_assert_eq(catchup_budget_take(&b, 200, 1), 100);
	cr_assert_eq(catchup_budget_take(&b, 299, 1), 1);
	cr_assert_eq(catchup_budget_take(&b, 300, 100000), 0);
}

Test(catchup, a_take_larger_than_the_burst_waits_for_a_full_bucket)
{
	struct catchup_budget b;

	catchup_budget_init(&b, 1000000, 100000, 0);
	cr_assert_eq(catchup_budget_take(&b, 0, 300000), 0); /* full: allowed, debt of 200 kB */
	cr_assert_eq(catchup_budget_take(&b, 0, 300000), 300); /* 200 kB debt + a full bucket */
	cr_assert_eq(catchup_budget_take(&b, 300, 300000), 0);
}

/* Bytes through in 10 s by `takers` copies of 1 MiB chunks, each trying once per wake
 * of a loop that wakes every wake_ms (a busy machine's late timers). */
static uint64_t through_late_wakes(uint64_t rate, uint64_t burst, unsigned takers,
				  unsigned wake_ms)
{
	struct catchup_budget b;
	uint64_t taken = 0;

	catchup_budget_init(&b, rate, burst, 0);
	for (uint64_t now = wake_ms; now <= 10000; now += wake_ms)
		for (unsigned t = 0; t < takers; t++)
			if (catchup_budget_take(&b, now, 1u << 20) == 0)
				taken += 1u << 20;
	return taken;
}

Test(catchup, the_burst_follows_the_rate_so_late_wakes_lose_nothing)
{
	uint64_t chunk = 1u << 20, rate = 512000000;

	cr_assert_eq(catchup_budget_burst_for(rate, chunk, 8), 8 * chunk, "capped: a chunk a copy");
	cr_assert_eq(catchup_budget_burst_for(200000000, chunk, 8), 200000000 / 1000 * CATCHUP_BURST_MS);
	cr_assert_eq(catchup_budget_burst_for(10000000, chunk, 8), chunk, "at least one chunk");
	cr_assert_eq(catchup_budget_burst_for(rate, chunk, 0), chunk);
	/* 8 copies, a wake every 5 ms: a one-chunk bucket lets 1 MiB through per wake
	 * (~0.4 of the rate), the rate's own burst all of it */
	cr_assert_lt(through_late_wakes(rate, chunk, 8, 5), rate * 10 / 2);
	cr_assert_geq(through_late_wakes(rate, catchup_budget_burst_for(rate, chunk, 8), 8, 5),
		      rate * 10 * 95 / 100);
	cr_assert_leq(through_late_wakes(rate, catchup_budget_burst_for(rate, chunk, 8), 8, 5),
		      rate * 10 + 8 * chunk);
}

Test(catchup, a_smaller_burst_keeps_only_itself)
{
	struct catchup_budget b;

	catchup_budget_init(&b, 1000000, 300000, 0);
	catchup_budget_set_burst(&b, 100000);
	cr_assert_eq(catchup_budget_take(&b, 0, 100000), 0);
	cr_assert_neq(catchup_budget_take(&b, 0, 1), 0, "the bucket held 100 kB, not 300");
}

Test(catchup, a_charge_is_a_debt_the_next_take_waits_for)
{
	struct catchup_budget b;

	catchup_budget_init(&b, 1000000, 100000, 0);
	catchup_budget_charge(&b, 0, 1000000); /* 1 MB read for nothing, the bucket full */
	cr_assert_eq(catchup_budget_take(&b, 0, 100000), 1000, "900 kB of debt + one burst");
	cr_assert_eq(catchup_budget_take(&b, 999, 100000), 1);
	cr_assert_eq(catchup_budget_take(&b, 1000, 100000), 0);
}

/* ---- rebuild: holders gone for good ---- */

Test(catchup, a_node_is_gone_when_out_or_down_past_out_after)
{
	uint64_t left = 99;

	cr_assert(catchup_node_gone(true, 0, 1000, 600000, &left), "out: gone at once");
	cr_assert_eq(left, 0);
	cr_assert_not(catchup_node_gone(false, 0, 1000, 600000, &left), "up");
	cr_assert_eq(left, 0);
	cr_assert_not(catchup_node_gone(false, 1000, 5000, 10000, &left), "down 4 s of 10");
	cr_assert_eq(left, 6000);
	cr_assert(catchup_node_gone(false, 1000, 11000, 10000, &left), "down 10 s of 10");
	cr_assert_eq(left, 0);
	cr_assert_not(catchup_node_gone(false, 1000, 500, 10000, NULL), "a clock before it");
}

static bool gone_if_n2(void *ctx, const char *id)
{
	(*(unsigned *)ctx)++;
	return strcmp(id, "n2") == 0;
}

Test(catchup, a_gone_holder_counts_as_none_so_the_record_wants_a_copy)
{
	const char *h[] = { "n0", "n2", "n1" };
	struct layout_segment s = sealed(1, 3, h), live;
	unsigned asked = 0;

	cr_assert_not(catchup_wanted(&s, 3));
	cr_assert_eq(catchup_without_gone(&s, gone_if_n2, &asked, &live), 1);
	cr_assert_eq(asked, 3);
	cr_assert_eq(live.nholders, 2);
	cr_assert(layout_segment_names(&live, "n0") && layout_segment_names(&live, "n1"));
	cr_assert_not(layout_segment_names(&live, "n2"));
	cr_assert(catchup_wanted(&live, 3), "two live holders of three: a copy");
	cr_assert_eq(live.id.seq, 1);
	cr_assert_eq(live.length, s.length);
}

Test(catchup, the_bytes_copied_count_again_when_a_new_catch_up_begins)
{
	struct catchup_status prev = { .segs_left = 2, .copying = 1, .copied = 4096 };
	struct catchup_status now = { .segs_left = 1 };

	catchup_status_carry(&now, &prev);
	cr_assert_eq(now.copying, 1);
	cr_assert_eq(now.copied, 4096, "under way: the count goes on");
	prev = (struct catchup_status){ .segs_left = 1, .copied = 8192 };
	now = (struct catchup_status){ 0 };
	catchup_status_carry(&now, &prev);
	cr_assert_eq(now.copied, 8192, "done: what it copied stays shown");
	prev = now;
	now = (struct catchup_status){ .segs_left = 3 };
	catchup_status_carry(&now, &prev);
	cr_assert_eq(now.copied, 0, "a new catch-up counts from 0, not on top of the last one");
}
