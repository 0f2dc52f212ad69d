/* tests/unit/replication/test_reconcile.c — replication/reconcile.c: the rule table a
 * reconciliation applies to each segment record (recon_rule), every row of
 * docs/replication.md's table. */
#include "replication/reconcile.h"

#include <criterion/criterion.h>

#define K RECON_KEEP
#define S RECON_SEAL
#define D RECON_DELETE
#define R RECON_RESEAL

/* [record][log] for a segment this process knows nothing of; columns: sealed in the
 * log, open in the log, gone and older than the log's newest, gone and newer */
static const enum recon_action none_table[3][4] = {
	[RECON_REC_OPEN]         = { S, K, D, D },
	[RECON_REC_SEALED_EMPTY] = { R, K, D, D },
	[RECON_REC_SEALED]       = { R, K, D, K },
};

static const char *const rec_names[] = { "open", "sealed empty", "sealed" };
static const char *const log_names[] = { "sealed", "open", "gone older", "gone newer" };

Test(reconcile, unknown_segment_follows_the_table)
{
	for (int rec = 0; rec < 3; rec++)
		for (int lg = 0; lg < 4; lg++)
			cr_expect_eq(recon_rule(rec, lg, RECON_PROC_NONE), none_table[rec][lg],
				     "record %s, log %s: %s, want %s", rec_names[rec], log_names[lg],
				     recon_action_name(recon_rule(rec, lg, RECON_PROC_NONE)),
				     recon_action_name(none_table[rec][lg]));
}

Test(reconcile, open_record_sealed_in_log_is_sealed)
{
	cr_assert_eq(recon_rule(RECON_REC_OPEN, RECON_LOG_SEALED, RECON_PROC_NONE), RECON_SEAL);
}

Test(reconcile, sealed_record_in_log_is_sealed_again_on_holders)
{
	cr_assert_eq(recon_rule(RECON_REC_SEALED, RECON_LOG_SEALED, RECON_PROC_NONE),
		     RECON_RESEAL);
}

/* A restart does not seal every copy again: a holder whose copy is sealed at the
 * record's length is owed nothing (one SEG_STAT, no SEG_SEAL, no engine job there). */
Test(reconcile, a_reseal_is_owed_only_to_a_copy_not_sealed_at_the_records_length)
{
	cr_assert_not(recon_seal_owed(true, 7, 7), "sealed at the length: nothing owed");
	cr_assert(recon_seal_owed(false, 7, 7), "open (the owner died before SEG_SEAL)");
	cr_assert(recon_seal_owed(false, 9, 7), "open and longer: cut at the record's length");
	cr_assert(recon_seal_owed(true, 9, 7), "sealed elsewhere: sent, refused, logged");
	cr_assert_not(recon_seal_owed(true, 0, 0), "an empty one sealed empty");
}

Test(reconcile, never_written_records_are_deleted)
{
	cr_assert_eq(recon_rule(RECON_REC_OPEN, RECON_LOG_GONE_NEWER, RECON_PROC_NONE),
		     RECON_DELETE);
	cr_assert_eq(recon_rule(RECON_REC_SEALED_EMPTY, RECON_LOG_GONE_NEWER, RECON_PROC_NONE),
		     RECON_DELETE);
}

Test(reconcile, written_record_past_the_log_is_kept)
{
	cr_assert_eq(recon_rule(RECON_REC_SEALED, RECON_LOG_GONE_NEWER, RECON_PROC_NONE),
		     RECON_KEEP);
}

Test(reconcile, freed_segments_are_deleted_whatever_the_record)
{
	for (int rec = 0; rec < 3; rec++) {
		cr_expect_eq(recon_rule(rec, RECON_LOG_GONE_OLDER, RECON_PROC_NONE), RECON_DELETE);
		cr_expect_eq(recon_rule(rec, RECON_LOG_GONE_OLDER, RECON_PROC_DEAD), RECON_DELETE);
	}
}

Test(reconcile, this_process_segments_are_kept)
{
	for (int rec = 0; rec < 3; rec++)
		for (int lg = 0; lg < 4; lg++)
			cr_expect_eq(recon_rule(rec, lg, RECON_PROC_LIVE), RECON_KEEP,
				     "record %s, log %s", rec_names[rec], log_names[lg]);
}

Test(reconcile, lost_epoch_segments_are_deleted_only_when_freed)
{
	for (int rec = 0; rec < 3; rec++)
		for (int lg = 0; lg < 4; lg++)
			cr_expect_eq(recon_rule(rec, lg, RECON_PROC_DEAD),
				     lg == RECON_LOG_GONE_OLDER ? RECON_DELETE : RECON_KEEP,
				     "record %s, log %s", rec_names[rec], log_names[lg]);
}

Test(reconcile, action_names)
{
	cr_assert_str_eq(recon_action_name(RECON_KEEP), "keep");
	cr_assert_str_eq(recon_action_name(RECON_SEAL), "seal");
	cr_assert_str_eq(recon_action_name(RECON_DELETE), "delete");
	cr_assert_str_eq(recon_action_name(RECON_RESEAL), "reseal");
}
