/* tests/unit/replication/test_scrub.c — replication/scrub.c's pure part: which runs of
 * a segment a holder is asked to verify (only blocks the owner's copy has good, at
 * most one SEG_VERIFY's worth each). */
#include "replication/scrub.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "engine/engine.h"

enum { G = ENGINE_SCRUB_GOOD, B = ENGINE_SCRUB_BAD, F = ENGINE_SCRUB_FIXED,
       U = ENGINE_SCRUB_UNCHECKED };

Test(scrub, runs_cover_good_and_fixed_blocks_only)
{
	static const uint8_t st[] = { G, G, B, F, G, U, U, G };
	uint32_t at = 0, start, n;

	cr_assert_eq(scrub_next_run(st, 8, at, 1024, &start, &n), 0);
	cr_assert(start == 0 && n == 2, "the first run stops before the bad block");
	at = start + n;
	cr_assert_eq(scrub_next_run(st, 8, at, 1024, &start, &n), 0);
	cr_assert(start == 3 && n == 2, "a repaired block is checked on the holders too");
	at = start + n;
	cr_assert_eq(scrub_next_run(st, 8, at, 1024, &start, &n), 0);
	cr_assert(start == 7 && n == 1, "unchecked blocks are skipped: %u %u", start, n);
	cr_assert_eq(scrub_next_run(st, 8, start + n, 1024, &start, &n), -ENOENT);
}

Test(scrub, runs_are_at_most_one_verify)
{
	static uint8_t st[2500];
	uint32_t at = 0, start, n, runs = 0, total = 0;

	memset(st, G, sizeof(st));
	while (scrub_next_run(st, sizeof(st), at, 1024, &start, &n) == 0) {
		cr_assert_eq(start, at, "no block left out");
		cr_assert_leq(n, 1024);
		at = start + n;
		total += n;
		runs++;
	}
	cr_assert_eq(runs, 3);
	cr_assert_eq(total, sizeof(st));
}

Test(scrub, nothing_good_nothing_asked)
{
	static const uint8_t st[] = { B, U, B };
	uint32_t start, n;

	cr_assert_eq(scrub_next_run(st, 3, 0, 1024, &start, &n), -ENOENT);
	cr_assert_eq(scrub_next_run(st, 0, 0, 1024, &start, &n), -ENOENT, "an empty copy");
}

/* A report counts what it found and fixed per kind and over every copy (a copy or
 * fragment not checked is reported, not counted) and keeps at most SCRUB_FINDINGS_MAX
 * findings. */
Test(scrub, report_counts_found_and_fixed_per_kind)
{
	static struct scrub_report r;
	struct scrub_finding f = { .kind = SCRUB_KIND_FRAGMENT, .index = 0, .nbad = 1,
				   .nfixed = 1 };

	scrub_report_add(&r, &f);
	f.kind = SCRUB_KIND_PARITY;
	f.nfixed = 0; /* found, not fixed */
	scrub_report_add(&r, &f);
	f = (struct scrub_finding){ .kind = SCRUB_KIND_REPLICA, .index = -1 }; /* not checked */
	scrub_report_add(&r, &f);
	cr_assert_eq(r.nfind, 3);
	cr_assert(r.found[SCRUB_KIND_FRAGMENT] == 1 && r.fixed[SCRUB_KIND_FRAGMENT] == 1);
	cr_assert(r.found[SCRUB_KIND_PARITY] == 1 && r.fixed[SCRUB_KIND_PARITY] == 0);
	cr_assert(r.found[SCRUB_KIND_REPLICA] == 0, "not checked: not a finding of bad blocks");
	cr_assert(r.copies_bad == 2 && r.copies_fixed == 1, "copies: %u bad, %u fixed",
		  r.copies_bad, r.copies_fixed);
	cr_assert(r.blocks_bad == 2 && r.blocks_fixed == 1);
	f = (struct scrub_finding){ .kind = SCRUB_KIND_REPLICA, .nbad = 2, .nfixed = 2 };
	for (unsigned i = 0; i < SCRUB_FINDINGS_MAX; i++)
		scrub_report_add(&r, &f);
	cr_assert_eq(r.nfind, SCRUB_FINDINGS_MAX, "the findings kept are bounded");
	cr_assert_eq(r.found[SCRUB_KIND_REPLICA], SCRUB_FINDINGS_MAX, "every one counted");
	cr_assert_eq(r.blocks_bad, 2 + 2 * SCRUB_FINDINGS_MAX);
	cr_assert_eq(r.copies_fixed, 1 + SCRUB_FINDINGS_MAX);
}
