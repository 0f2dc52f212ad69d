/* tests/unit/replication/test_orphans.c — replication/orphans.c: judging a held copy
 * against the segment records (orphans_judge), and the sort it relies on. */
#include "replication/orphans.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define N 6

static struct layout_segment segs[N];
static char vols[N][LAYOUT_ID_MAX + 1];
static struct orphan_records recs = { segs, vols, N };

static void rec(size_t i, const char *vol, uint64_t fam, uint32_t seq, const char *h0,
		const char *h1)
{
	memset(&segs[i], 0, sizeof(segs[i]));
	segs[i].id = (struct layout_segid){ fam, seq };
	segs[i].nholders = h1 ? 2 : 1;
	snprintf(segs[i].holders[0], sizeof(segs[i].holders[0]), "%s", h0);
	if (h1)
		snprintf(segs[i].holders[1], sizeof(segs[i].holders[1]), "%s", h1);
	snprintf(vols[i], sizeof(vols[i]), "%s", vol);
}

/* In key order, as the range answers: by volume name first, so families out of
 * order ("a" has family 9, "b" family 2). */
static void setup(void)
{
	rec(0, "a", 9, 1, "n0", "n1");
	rec(1, "a", 9, 3, "n0", "n2");
	rec(2, "a", 9, 7, "n0", NULL);
	rec(3, "b", 2, 1, "n1", "n2");
	rec(4, "b", 2, 2, "n1", "n2");
	rec(5, "c", 5, 4, "n2", "n0");
	orphans_records_sort(&recs);
}

static bool owns_b(void *arg, const char *vol)
{
	(void)arg;
	return strcmp(vol, "b") == 0;
}

TestSuite(orphans, .init = setup);

Test(orphans, sorted_by_id_with_volumes_along)
{
	for (size_t i = 1; i < N; i++)
		cr_assert(segs[i - 1].id.family < segs[i].id.family ||
			  (segs[i - 1].id.family == segs[i].id.family &&
			   segs[i - 1].id.seq < segs[i].id.seq));
	cr_assert_eq(segs[0].id.family, 2);
	cr_assert_str_eq(vols[0], "b");
	cr_assert_eq(segs[5].id.family, 9);
	cr_assert_str_eq(vols[5], "a");
	cr_assert_str_eq(segs[5].holders[0], "n0");
}

Test(orphans, a_live_record_naming_this_node_keeps_the_copy)
{
	const char *vol;

	cr_assert_eq(orphans_judge(&recs, "n1", 9, 1, NULL, NULL, &vol), ORPHAN_KEPT);
	cr_assert_str_eq(vol, "a");
	cr_assert_eq(orphans_judge(&recs, "n2", 9, 3, NULL, NULL, &vol), ORPHAN_KEPT);
	cr_assert_eq(orphans_judge(&recs, "n0", 5, 4, NULL, NULL, &vol), ORPHAN_KEPT);
	cr_assert_str_eq(vol, "c");
}

Test(orphans, a_record_that_does_not_name_this_node)
{
	const char *vol;

	cr_assert_eq(orphans_judge(&recs, "n2", 9, 1, NULL, NULL, &vol), ORPHAN_NOT_HOLDER);
	cr_assert_eq(orphans_judge(&recs, "n1", 9, 7, NULL, NULL, &vol), ORPHAN_NOT_HOLDER);
	cr_assert_str_eq(vol, "a");
}

Test(orphans, a_segment_without_record_in_a_recorded_family)
{
	const char *vol;

	cr_assert_eq(orphans_judge(&recs, "n1", 9, 2, NULL, NULL, &vol), ORPHAN_NO_RECORD);
	cr_assert_str_eq(vol, "a");
	cr_assert_eq(orphans_judge(&recs, "n1", 9, 8, NULL, NULL, &vol), ORPHAN_NO_RECORD);
	cr_assert_eq(orphans_judge(&recs, "n1", 9, 0, NULL, NULL, &vol), ORPHAN_NO_RECORD);
	cr_assert_eq(orphans_judge(&recs, "n1", 5, 1, NULL, NULL, &vol), ORPHAN_NO_RECORD);
}

Test(orphans, a_family_without_any_record)
{
	const char *vol;

	cr_assert_eq(orphans_judge(&recs, "n1", 3, 1, NULL, NULL, &vol), ORPHAN_NO_FAMILY);
	cr_assert_str_eq(vol, "");
	cr_assert_eq(orphans_judge(&recs, "n1", 1, 0, NULL, NULL, &vol), ORPHAN_NO_FAMILY);
	cr_assert_eq(orphans_judge(&recs, "n1", 10, 1, NULL, NULL, &vol), ORPHAN_NO_FAMILY);
}

Test(orphans, no_records_at_all)
{
	struct orphan_records none = { NULL, NULL, 0 };
	const char *vol;

	cr_assert_eq(orphans_judge(&none, "n1", 9, 1, NULL, NULL, &vol), ORPHAN_NO_FAMILY);
}

Test(orphans, a_volume_this_node_owns_is_its_owners_business)
{
	const char *vol;

	/* not named, or no record, but the node owns b: kept */
	cr_assert_eq(orphans_judge(&recs, "n0", 2, 1, owns_b, NULL, &vol), ORPHAN_OWNED);
	cr_assert_eq(orphans_judge(&recs, "n0", 2, 9, owns_b, NULL, &vol), ORPHAN_OWNED);
	cr_assert_str_eq(vol, "b");
	/* others are judged as before */
	cr_assert_eq(orphans_judge(&recs, "n2", 9, 1, owns_b, NULL, &vol), ORPHAN_NOT_HOLDER);
}

Test(orphans, every_reason_has_words)
{
	for (int w = ORPHAN_KEPT; w <= ORPHAN_UNRECORDED; w++)
		cr_assert_neq(strcmp(orphans_why_str(w), "?"), 0);
}

Test(orphans, a_copy_being_made_here_is_kept, .init = setup)
{
	const char *vol;

	/* "a" 9.3 is on n0 and n2; n1 is having it copied to it (catch-up) */
	for (size_t i = 0; i < N; i++)
		if (segs[i].id.family == 9 && segs[i].id.seq == 3) {
			segs[i].ncopying = 1;
			strcpy(segs[i].copying[0], "n1");
		}
	cr_assert_eq(orphans_judge(&recs, "n1", 9, 3, NULL, NULL, &vol), ORPHAN_KEPT);
	/* its neighbour, not being copied there, is still an orphan on n1 */
	cr_assert_eq(orphans_judge(&recs, "n1", 9, 7, NULL, NULL, &vol), ORPHAN_NOT_HOLDER);
}

/* "a" 9.1 (record index i) encoded 2+1: fragment 0 on n1, 1 on n2, 2 on n0. */
static void stripe_9_1(void)
{
	for (size_t i = 0; i < N; i++)
		if (segs[i].id.family == 9 && segs[i].id.seq == 1) {
			struct layout_stripe *st = &segs[i].stripe;

			st->k = 2;
			st->m = 1;
			strcpy(st->frags[0], "n1");
			strcpy(st->frags[1], "n2");
			strcpy(st->frags[2], "n0");
			st->crcs[0] = 0x10;
			st->crcs[1] = 0x11;
			st->crcs[2] = 0x12;
		}
}

static int64_t epoch_7(void *arg, const char *vol)
{
	(void)arg;
	return strcmp(vol, "a") == 0 ? 7 : 0;
}

Test(orphans, a_fragment_its_stripe_names_is_kept_any_other_goes, .init = setup)
{
	const char *vol;

	stripe_9_1();
	cr_assert_eq(orphans_judge_frag(&recs, "n2", 9, 1, 1, 0x11, 3, epoch_7, NULL, &vol),
		     ORPHAN_KEPT);
	cr_assert_str_eq(vol, "a");
	/* another index, another CRC, another node: not the stripe's */
	cr_assert_eq(orphans_judge_frag(&recs, "n2", 9, 1, 0, 0x11, 7, epoch_7, NULL, &vol),
		     ORPHAN_NOT_IN_STRIPE);
	cr_assert_eq(orphans_judge_frag(&recs, "n2", 9, 1, 1, 0x99, 7, epoch_7, NULL, &vol),
		     ORPHAN_NOT_IN_STRIPE);
	cr_assert_eq(orphans_judge_frag(&recs, "n3", 9, 1, 1, 0x11, 7, epoch_7, NULL, &vol),
		     ORPHAN_NOT_IN_STRIPE);
}

/* A fragment being rebuilt on n3 (its record's "copying" names n3, the stripe still
 * names the gone holder) is kept until the stripe names it or the mark goes. */
Test(orphans, a_fragment_being_rebuilt_here_is_kept_while_marked, .init = setup)
{
	const char *vol;
	struct layout_segment *s = NULL;

	stripe_9_1();
	for (size_t i = 0; i < recs.n; i++)
		if (recs.segs[i].id.family == 9 && recs.segs[i].id.seq == 1)
			s = &recs.segs[i];
	cr_assert_not_null(s);
	cr_assert_eq(orphans_judge_frag(&recs, "n3", 9, 1, 1, 0x11, 7, epoch_7, NULL, &vol),
		     ORPHAN_NOT_IN_STRIPE);
	strcpy(s->copying[s->ncopying++], "n3");
	cr_assert_eq(orphans_judge_frag(&recs, "n3", 9, 1, 1, 0x11, 7, epoch_7, NULL, &vol),
		     ORPHAN_KEPT);
	/* recorded: the stripe names it, the mark is gone */
	s->ncopying = 0;
	strcpy(s->stripe.frags[1], "n3");
	cr_assert_eq(orphans_judge_frag(&recs, "n3", 9, 1, 1, 0x11, 7, epoch_7, NULL, &vol),
		     ORPHAN_KEPT);
	cr_assert_eq(orphans_judge_frag(&recs, "n2", 9, 1, 1, 0x11, 7, epoch_7, NULL, &vol),
		     ORPHAN_NOT_IN_STRIPE);
}

Test(orphans, a_fragment_without_a_stripe_waits_for_its_epoch_to_pass, .init = setup)
{
	const char *vol;

	/* 9.3 has no stripe: put under the volume's epoch now (7), its encoding may still
	 * record it; put under 6, the owner that put it is gone */
	cr_assert_eq(orphans_judge_frag(&recs, "n1", 9, 3, 0, 1, 7, epoch_7, NULL, &vol),
		     ORPHAN_KEPT);
	cr_assert_eq(orphans_judge_frag(&recs, "n1", 9, 3, 0, 1, 6, epoch_7, NULL, &vol),
		     ORPHAN_UNRECORDED);
	/* the epoch not known (the map has no such volume yet): kept */
	cr_assert_eq(orphans_judge_frag(&recs, "n1", 9, 3, 0, 1, 6, NULL, NULL, &vol),
		     ORPHAN_KEPT);
	/* no record, no family: orphans whatever the epoch; owning the volume changes
	 * nothing for a fragment */
	cr_assert_eq(orphans_judge_frag(&recs, "n1", 9, 4, 0, 1, 99, epoch_7, NULL, &vol),
		     ORPHAN_NO_RECORD);
	cr_assert_eq(orphans_judge_frag(&recs, "n1", 77, 1, 0, 1, 99, epoch_7, NULL, &vol),
		     ORPHAN_NO_FAMILY);
}
