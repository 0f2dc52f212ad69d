/* tests/unit/cluster/test_placement.c — cluster/placement.c: distinct failure domains,
 * refusals, determinism and order, an even spread, weights, and minimal movement when
 * a node joins or leaves (the fraction of copies moved, over many segment ids). */
#include "cluster/placement.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define SEGS 20000u
#define MAXN 16

static struct placement_node nodes[MAXN];

/* n nodes, ids 100.., weight 1, usable, domain i / per_domain. */
static void cluster_of(size_t n, unsigned per_domain)
{
	memset(nodes, 0, sizeof(nodes));
	for (size_t i = 0; i < n; i++) {
		char name[16];

		snprintf(name, sizeof(name), "rack%zu", i / per_domain);
		nodes[i] = (struct placement_node){ .id = 100 + i, .weight = 1, .usable = true,
						    .domain = placement_domain_id(name) };
	}
}

static uint64_t segment(unsigned i)
{
	return (uint64_t)(i % 97) << 32 | i; /* a volume uid and a sequence, say */
}

static const struct placement_node *node_of(uint64_t id, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (nodes[i].id == id)
			return &nodes[i];
	cr_assert_fail("holder %llu is no node", (unsigned long long)id);
	return NULL;
}

Test(placement, holders_are_in_distinct_domains)
{
	uint64_t out[3];

	cluster_of(9, 3); /* 3 racks of 3 nodes */
	for (unsigned s = 0; s < SEGS; s++) {
		cr_assert_eq(placement_pick(nodes, 9, segment(s), 3, out), 0);
		for (int i = 0; i < 3; i++)
			for (int j = 0; j < i; j++)
				cr_assert_neq(node_of(out[i], 9)->domain, node_of(out[j], 9)->domain,
					      "segment %u: two copies in one domain", s);
	}
}

Test(placement, too_few_domains_refused)
{
	uint64_t out[4];

	cluster_of(4, 2); /* 2 domains */
	cr_assert_eq(placement_domains(nodes, 4), 2);
	cr_assert_eq(placement_pick(nodes, 4, 1, 2, out), 0);
	cr_assert_eq(placement_pick(nodes, 4, 1, 3, out), -ENOSPC);

	cluster_of(6, 2); /* 3 domains, but the last one's nodes are down or out */
	cr_assert_eq(placement_pick(nodes, 6, 1, 3, out), 0);
	nodes[4].usable = false;
	nodes[5].weight = 0;
	cr_assert_eq(placement_domains(nodes, 6), 2);
	cr_assert_eq(placement_pick(nodes, 6, 1, 3, out), -ENOSPC);
	cr_assert_eq(placement_pick(nodes, 0, 1, 1, out), -ENOSPC, "an empty map");
}

Test(placement, bad_arguments_refused)
{
	uint64_t out[PLACEMENT_MAX_COPIES + 1];

	cluster_of(4, 1);
	cr_assert_eq(placement_pick(nodes, 4, 1, 0, out), -EINVAL);
	cr_assert_eq(placement_pick(nodes, 4, 1, PLACEMENT_MAX_COPIES + 1, out), -EINVAL);
	nodes[3].id = nodes[0].id;
	cr_assert_eq(placement_pick(nodes, 4, 1, 1, out), -EINVAL, "a repeated node id");
}

Test(placement, never_picks_an_unusable_node)
{
	uint64_t out[3];

	cluster_of(8, 1);
	nodes[2].usable = false;
	nodes[5].weight = 0;
	for (unsigned s = 0; s < SEGS; s++) {
		cr_assert_eq(placement_pick(nodes, 8, segment(s), 3, out), 0);
		for (int i = 0; i < 3; i++)
			cr_assert(out[i] != nodes[2].id && out[i] != nodes[5].id);
	}
}

/* The same map in another order gives the same holders in the same order. */
Test(placement, deterministic_whatever_the_map_order)
{
	struct placement_node reversed[MAXN];
	uint64_t a[3], b[3];

	cluster_of(10, 2);
	for (size_t i = 0; i < 10; i++)
		reversed[i] = nodes[9 - i];
	for (unsigned s = 0; s < SEGS; s++) {
		cr_assert_eq(placement_pick(nodes, 10, segment(s), 3, a), 0);
		cr_assert_eq(placement_pick(reversed, 10, segment(s), 3, b), 0);
		cr_assert_eq(memcmp(a, b, sizeof(a)), 0, "segment %u", s);
	}
	/* and a first copy of r = 3 is the copy of r = 1: asking for more adds, never
	 * reshuffles */
	for (unsigned s = 0; s < 1000; s++) {
		cr_assert_eq(placement_pick(nodes, 10, segment(s), 3, a), 0);
		cr_assert_eq(placement_pick(nodes, 10, segment(s), 1, b), 0);
		cr_assert_eq(a[0], b[0]);
	}
}

/* How many copies each node holds, over SEGS segments. */
static void tally(size_t n, unsigned r, unsigned *count)
{
	uint64_t out[PLACEMENT_MAX_COPIES];

	memset(count, 0, n * sizeof(*count));
	for (unsigned s = 0; s < SEGS; s++) {
		cr_assert_eq(placement_pick(nodes, n, segment(s), r, out), 0);
		for (unsigned i = 0; i < r; i++)
			count[node_of(out[i], n) - nodes]++;
	}
}

Test(placement, spread_evenly)
{
	unsigned count[MAXN];
	double mean = SEGS * 3.0 / 10;

	cluster_of(10, 1);
	tally(10, 3, count);
	for (size_t i = 0; i < 10; i++)
		cr_assert(count[i] > mean * 0.9 && count[i] < mean * 1.1,
			  "node %zu holds %u copies, the mean is %.0f", i, count[i], mean);
}

Test(placement, weights_set_the_share)
{
	unsigned count[MAXN];
	double unit;

	cluster_of(6, 1);
	nodes[0].weight = 2;
	nodes[1].weight = 4;
	tally(6, 1, count);
	unit = SEGS / 10.0; /* total weight 2 + 4 + 4 × 1 */
	cr_assert(count[0] > 2 * unit * 0.9 && count[0] < 2 * unit * 1.1, "weight 2: %u", count[0]);
	cr_assert(count[1] > 4 * unit * 0.9 && count[1] < 4 * unit * 1.1, "weight 4: %u", count[1]);
	for (size_t i = 2; i < 6; i++)
		cr_assert(count[i] > unit * 0.85 && count[i] < unit * 1.15, "weight 1: %u",
			  count[i]);
}

static uint64_t before[SEGS][3], after[SEGS][3];

static void pick_all(size_t n, uint64_t (*out)[3])
{
	for (unsigned s = 0; s < SEGS; s++)
		cr_assert_eq(placement_pick(nodes, n, segment(s), 3, out[s]), 0);
}

static bool holds(const uint64_t *set, uint64_t id)
{
	return set[0] == id || set[1] == id || set[2] == id;
}

/* The fraction of copies whose holder changed between before and after (each
 * (segment, new holder) once) is within [0.9, high] × ideal. */
static void check_moved(const char *what, double ideal, double high)
{
	unsigned m = 0;
	double fraction;

	for (unsigned s = 0; s < SEGS; s++)
		for (int i = 0; i < 3; i++)
			m += !holds(before[s], after[s][i]);
	fraction = (double)m / (SEGS * 3);
	cr_log_info("%s: %.4f of the copies moved (ideal %.4f)", what, fraction, ideal);
	cr_assert(fraction > ideal * 0.9 && fraction < ideal * high, "%s: moved %.4f", what,
		  fraction);
}

/* One node per domain: a newcomer takes its fair share, 1/(n+1) of the copies, and
 * every copy that moves, moves to it. */
Test(placement, a_joining_node_takes_only_its_share)
{
	cluster_of(11, 1);
	pick_all(10, before);
	pick_all(11, after);
	for (unsigned s = 0; s < SEGS; s++)
		for (int i = 0; i < 3; i++)
			cr_assert(holds(before[s], after[s][i]) || after[s][i] == nodes[10].id,
				  "segment %u moved a copy between old nodes", s);
	check_moved("join", 1.0 / 11, 1.1);
}

/* A node that leaves gives up its copies, 1/n of them; nothing else moves. */
Test(placement, a_leaving_node_gives_up_only_its_copies)
{
	cluster_of(10, 1);
	pick_all(10, before);
	nodes[4].usable = false; /* down or out */
	pick_all(10, after);
	for (unsigned s = 0; s < SEGS; s++)
		for (int i = 0; i < 3; i++)
			cr_assert(holds(before[s], after[s][i]) || holds(before[s], nodes[4].id),
				  "segment %u moved without losing a holder", s);
	check_moved("leave", 1.0 / 10, 1.1);
}

/* With several nodes per domain, a newcomer takes a share of its own domain's copies,
 * and can also push a copy to another domain (its domain is then taken): close to its
 * share still. 4 racks of 3 and r = 3: each rack holds 1/4 of the copies; a fourth node
 * in rack 0 should take a quarter of those, 1/16 of all. */
Test(placement, joining_a_shared_domain_moves_little)
{
	cluster_of(13, 3);
	nodes[12].domain = nodes[0].domain; /* the 13th node joins rack 0 */
	pick_all(12, before);
	pick_all(13, after);
	check_moved("join a shared domain", 1.0 / 16, 1.25);
}

/* ---- placement_usable: what failure domains of given capacities hold ---- */

/* The largest F with copies·F <= sum of min(cap, F), by bisection: the definition,
 * computed another way than the closed form. */
static uint64_t usable_by_search(const uint64_t *cap, size_t n, unsigned copies, unsigned k)
{
	uint64_t lo = 0, hi = 0;

	for (size_t i = 0; i < n; i++)
		hi += cap[i];
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo + 1) / 2, sum = 0;

		for (size_t i = 0; i < n; i++)
			sum += cap[i] < mid ? cap[i] : mid;
		if ((uint64_t)copies * mid <= sum)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo * k;
}

Test(placement, usable_is_bounded_by_the_smallest_of_as_many_domains_as_copies)
{
	const uint64_t three[] = { 900, 500, 300 };

	cr_assert_eq(placement_usable(three, 3, 3, 1), 300);    /* replicas 3 */
	cr_assert_eq(placement_usable(three, 3, 3, 2), 600);    /* ec 2+1 */
	cr_assert_eq(placement_usable(three, 3, 2, 1), 800);    /* replicas 2: 1700/2 > 800 */
	cr_assert_eq(placement_usable(three, 3, 1, 1), 1700);   /* replicas 1: all of it */
	cr_assert_eq(placement_usable(three, 3, 4, 1), 0);      /* 4 copies, 3 domains */
	cr_assert_eq(placement_usable(three, 2, 3, 1), 0);
}

Test(placement, usable_of_equal_domains_is_total_over_copies)
{
	const uint64_t six[] = { 600, 600, 600, 600, 600, 600, 0 }; /* 0: no capacity */

	cr_assert_eq(placement_usable(six, 7, 3, 1), 1200);
	cr_assert_eq(placement_usable(six, 7, 6, 4), 2400);     /* ec 4+2: 2/3 of 3600 */
	cr_assert_eq(placement_usable(six, 7, 7, 1), 0);
	cr_assert_eq(placement_usable(six, 7, 0, 1), 0);
}

Test(placement, usable_matches_its_definition)
{
	uint64_t cap[12], x = 88172645463325252ull;

	for (unsigned round = 0; round < 2000; round++) {
		size_t n = 1 + round % 12;

		for (size_t i = 0; i < n; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			cap[i] = x % 4 == 0 ? 0 : 1 + x % (round % 2 ? 1000 : 1000000007ull);
		}
		for (unsigned copies = 1; copies <= 8; copies++)
			for (unsigned k = 1; k <= copies; k += 3)
				cr_assert_eq(placement_usable(cap, n, copies, k),
					     usable_by_search(cap, n, copies, k),
					     "round %u copies %u k %u", round, copies, k);
	}
}
