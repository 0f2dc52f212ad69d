/* tests/unit/engine/test_logcheck.c — engine/logcheck.c: the slot walker finds batches,
 * bad data and damaged summaries the way replay needs, and the rule tells a tear
 * (possibly in flight at a crash) from corruption (durable, damaged since). */
#include "engine/logcheck.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"

#define BLOCKS 64u
#define GEN 7u
#define VOL 3u
#define N ONDISK_MAX_INFLIGHT_BATCHES

static uint8_t *slot;
static struct segment_header hdr = { .state = ONDISK_SEG_USED, .volume_id = VOL,
				     .generation = GEN, .first_seq = 10 };

static void setup(void)
{
	slot = calloc(BLOCKS, QUILL_BLOCK_SIZE);
	cr_assert_not_null(slot);
}

static void teardown(void)
{
	free(slot);
}

static uint8_t *blk(uint32_t b)
{
	return slot + (size_t)b * QUILL_BLOCK_SIZE;
}

/* Writes a batch of n DATA blocks at block pos; returns the block after it. */
static uint32_t put_batch(uint32_t pos, uint64_t seq, uint32_t n, uint64_t durable)
{
	static struct summary s;

	memset(&s, 0, sizeof(s));
	s.generation = GEN;
	s.volume_id = VOL;
	s.seq = seq;
	s.open_seq = 1;
	s.durable_seq = durable;
	s.nentries = n;
	s.data_blocks = n;
	for (uint32_t i = 0; i < n; i++) {
		memset(blk(pos + 1 + i), (int)(seq * 16 + i), QUILL_BLOCK_SIZE);
		s.entries[i] = (struct summary_entry){ .lba = seq * 100 + i, .nblocks = 1,
						       .kind = ONDISK_ENTRY_DATA,
						       .data_crc = crc32c(blk(pos + 1 + i),
									  QUILL_BLOCK_SIZE) };
	}
	ondisk_summary_encode(&s, blk(pos));
	return pos + 1 + n;
}

static void next(struct logcheck_walk *w, struct logcheck_item *it)
{
	static struct summary s;

	logcheck_walk_next(w, &s, it);
}

TestSuite(logcheck, .init = setup, .fini = teardown);

Test(logcheck, walk_lists_batches_and_flags_bad_data)
{
	struct logcheck_walk w;
	struct logcheck_item it;
	uint32_t p = put_batch(1, 10, 2, 0);

	p = put_batch(p, 12, 3, 0);
	blk(p - 2)[100] ^= 1; /* second data block of batch 12 */
	p = put_batch(p, 15, 1, 0);
	logcheck_walk_init(&w, slot, BLOCKS, &hdr, 0);
	next(&w, &it);
	cr_assert_eq(it.kind, LOGCHECK_BATCH);
	cr_assert(it.data_ok && it.data_checked);
	next(&w, &it);
	cr_assert_eq(it.kind, LOGCHECK_BATCH);
	cr_assert_not(it.data_ok, "batch 12 has a flipped bit");
	cr_assert_eq(it.bad_entry, 1);
	next(&w, &it);
	cr_assert_eq(it.kind, LOGCHECK_BATCH, "the walk goes on past bad data");
	cr_assert(it.data_ok);
	next(&w, &it);
	cr_assert_eq(it.kind, LOGCHECK_END);
	cr_assert_eq(it.pos, p);
}

Test(logcheck, walk_checks_data_only_above_the_checkpoint)
{
	struct logcheck_walk w;
	struct logcheck_item it;

	put_batch(1, 10, 2, 0);
	blk(2)[0] ^= 1;
	logcheck_walk_init(&w, slot, BLOCKS, &hdr, 10);
	next(&w, &it);
	cr_assert_eq(it.kind, LOGCHECK_BATCH);
	cr_assert(it.data_ok);
	cr_assert_not(it.data_checked);
}

Test(logcheck, walk_steps_over_a_damaged_summary_to_the_next_batch)
{
	struct logcheck_walk w;
	struct logcheck_item it;
	uint32_t p = put_batch(1, 10, 2, 0);
	uint32_t damaged = p;

	p = put_batch(p, 11, 4, 0);
	blk(damaged)[300] ^= 0x10; /* inside an entry: CRC mismatch */
	p = put_batch(p, 14, 1, 0);
	logcheck_walk_init(&w, slot, BLOCKS, &hdr, 0);
	next(&w, &it);
	next(&w, &it);
	cr_assert_eq(it.kind, LOGCHECK_DAMAGED);
	cr_assert_eq(it.pos, damaged);
	cr_assert_eq(it.next, damaged + 5);
	cr_assert_eq(it.seq_lo, 11);
	cr_assert_eq(it.seq_hi, 13);
	next(&w, &it);
	cr_assert_eq(it.kind, LOGCHECK_BATCH);
	cr_assert_eq(it.pos, damaged + 5);
	next(&w, &it);
	cr_assert_eq(it.kind, LOGCHECK_END);
}

Test(logcheck, damaged_last_summary_is_damage_not_the_end)
{
	struct logcheck_walk w;
	struct logcheck_item it;
	uint32_t p = put_batch(1, 10, 2, 0);

	put_batch(p, 11, 2, 0);
	blk(p)[0] ^= 0xff; /* the magic: only generation and volume still say whose it is */
	logcheck_walk_init(&w, slot, BLOCKS, &hdr, 0);
	next(&w, &it);
	next(&w, &it);
	cr_assert_eq(it.kind, LOGCHECK_DAMAGED);
	cr_assert_eq(it.seq_lo, 11);
	cr_assert_eq(it.seq_hi, UINT64_MAX);
	next(&w, &it);
	cr_assert_eq(it.kind, LOGCHECK_END);
}

Test(logcheck, old_batches_of_a_reused_slot_end_the_log)
{
	struct logcheck_walk w;
	struct logcheck_item it;
	struct segment_header newer = hdr;
	uint32_t p = put_batch(1, 10, 2, 0);

	put_batch(p, 11, 2, 0);
	newer.generation = GEN + 1; /* the slot's new life wrote only... */
	newer.first_seq = 20;
	logcheck_walk_init(&w, slot, BLOCKS, &newer, 0);
	next(&w, &it); /* ...nothing we can see: the old batches are garbage */
	cr_assert_eq(it.kind, LOGCHECK_END);
	cr_assert_eq(it.pos, 1);
}

Test(logcheck, data_ok_finds_the_flipped_block)
{
	static struct summary s;
	static uint8_t data[3 * QUILL_BLOCK_SIZE];
	uint32_t bad = UINT32_MAX;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + i / QUILL_BLOCK_SIZE);
	memset(&s, 0, sizeof(s));
	s.nentries = 4; /* DATA, TRIM (no block), DATA, MOVE */
	s.entries[0] = (struct summary_entry){ .lba = 1, .nblocks = 1, .kind = ONDISK_ENTRY_DATA };
	s.entries[1] = (struct summary_entry){ .lba = 0, .nblocks = 9, .kind = ONDISK_ENTRY_TRIM };
	s.entries[2] = (struct summary_entry){ .lba = 2, .nblocks = 1, .kind = ONDISK_ENTRY_DATA };
	s.entries[3] = (struct summary_entry){ .lba = 3, .nblocks = 1, .kind = ONDISK_ENTRY_MOVE };
	s.entries[0].data_crc = crc32c(data, QUILL_BLOCK_SIZE);
	s.entries[2].data_crc = crc32c(data + QUILL_BLOCK_SIZE, QUILL_BLOCK_SIZE);
	s.entries[3].data_crc = crc32c(data + 2 * QUILL_BLOCK_SIZE, QUILL_BLOCK_SIZE);
	s.data_blocks = 3;
	cr_assert(logcheck_data_ok(&s, data, &bad));
	cr_assert_eq(bad, UINT32_MAX, "bad_entry untouched when the batch is whole");

	data[QUILL_BLOCK_SIZE + 17] ^= 0x04; /* second data block: entry 2 */
	cr_assert_not(logcheck_data_ok(&s, data, &bad));
	cr_assert_eq(bad, 2);
	data[QUILL_BLOCK_SIZE + 17] ^= 0x04;

	data[3 * QUILL_BLOCK_SIZE - 1] ^= 0xff; /* the MOVE's block */
	cr_assert_not(logcheck_data_ok(&s, data, NULL));
}

/* ---- the rule ---- */

static struct logcheck_facts facts;

static void note(uint64_t vol, uint64_t seq, uint64_t open_seq, uint64_t durable)
{
	struct summary s = { .volume_id = vol, .seq = seq, .open_seq = open_seq,
			     .durable_seq = durable };

	cr_assert_eq(logcheck_note_batch(&facts, &s), 0);
}

static bool corrupt(uint64_t vol, uint64_t lo, uint64_t hi)
{
	struct logcheck_verdict v;

	logcheck_judge(&facts, vol, lo, hi, &v);
	return v.corrupt;
}

static void facts_fini(void)
{
	logcheck_facts_free(&facts);
}

TestSuite(logcheck_rule, .fini = facts_fini);

Test(logcheck_rule, fewer_than_the_inflight_bound_behind_it_is_a_tear)
{
	note(1, 50, 1, 0); /* the bad one itself */
	for (uint64_t i = 1; i < N; i++)
		note(1, 50 + i, 1, 0);
	cr_assert_not(corrupt(1, 50, 50), "%u batches behind it could have been in flight", N - 1);
	note(1, 50 + N, 1, 0);
	cr_assert(corrupt(1, 50, 50), "%u batches behind it: it had completed", N);
}

Test(logcheck_rule, only_batches_of_the_same_volume_count)
{
	for (uint64_t i = 1; i <= 2 * N; i++)
		note(2, 50 + i, 1, 0);
	cr_assert_not(corrupt(1, 50, 50));
}

Test(logcheck_rule, a_durable_mark_at_or_above_it_makes_it_corruption)
{
	note(1, 51, 1, 49);
	cr_assert_not(corrupt(1, 50, 50));
	note(2, 60, 1, 50); /* another volume's summary: marks are store-wide */
	cr_assert(corrupt(1, 50, 50));
}

Test(logcheck_rule, a_later_run_says_nothing_about_an_older_batch)
{
	/* a batch torn in run 1 (seqs 1..99), dropped by the replay that started run 2 */
	for (uint64_t i = 0; i < 3 * N; i++)
		note(1, 100 + i, 100, 100 + i - 1);
	cr_assert_not(corrupt(1, 60, 60));
	note(1, 61, 1, 0); /* run 1 went on: those count */
	cr_assert_not(corrupt(1, 60, 60));
}

Test(logcheck_rule, a_damaged_summary_needs_the_whole_gap_covered)
{
	/* its seq lies somewhere in 51..54 */
	note(3, 70, 1, 53);
	cr_assert_not(corrupt(1, 51, 54), "the mark covers only part of the gap");
	note(3, 71, 1, 54);
	cr_assert(corrupt(1, 51, 54));
	cr_assert_not(corrupt(1, 51, UINT64_MAX), "nothing known after it");
}

Test(logcheck_rule, seq_hi_looks_at_the_volume_s_next_slot)
{
	struct segment_header a = { .volume_id = 1, .first_seq = 10 };
	struct segment_header b = { .volume_id = 1, .first_seq = 40 };
	struct segment_header c = { .volume_id = 1, .first_seq = 90 };
	struct segment_header other = { .volume_id = 2, .first_seq = 30 };

	cr_assert_eq(logcheck_note_slot(&facts, &a), 0);
	cr_assert_eq(logcheck_note_slot(&facts, &c), 0);
	cr_assert_eq(logcheck_note_slot(&facts, &b), 0);
	cr_assert_eq(logcheck_note_slot(&facts, &other), 0);
	cr_assert_eq(logcheck_seq_hi(&facts, 1, 20), 39);
	cr_assert_eq(logcheck_seq_hi(&facts, 1, 40), 89);
	cr_assert_eq(logcheck_seq_hi(&facts, 1, 95), UINT64_MAX);
}

/* ---- scrub: every block judged ---- */

/* The slot's header block (the USED header of this life). */
static void put_header(void)
{
	struct segment_header h = hdr;

	h.family_uid = 5; /* a segment has an id */
	ondisk_segment_header_encode(&h, blk(0));
}

Test(logcheck, classify_judges_every_block_of_a_whole_log)
{
	uint8_t state[BLOCKS];
	uint32_t crcs[BLOCKS];
	uint32_t p;

	put_header();
	p = put_batch(1, 10, 2, 0);
	p = put_batch(p, 12, 3, 0);
	logcheck_classify(slot, p, GEN, state, crcs);
	for (uint32_t b = 0; b < p; b++) {
		cr_assert_eq(state[b], LOGCHECK_B_GOOD, "block %u", b);
		cr_assert_eq(crcs[b], crc32c(blk(b), QUILL_BLOCK_SIZE), "block %u's CRC", b);
	}
}

Test(logcheck, classify_names_a_bad_data_block_and_what_it_must_be)
{
	uint8_t state[BLOCKS];
	uint32_t crcs[BLOCKS], want;
	uint32_t p;

	put_header();
	p = put_batch(1, 10, 2, 0);
	p = put_batch(p, 12, 3, 0);
	want = crc32c(blk(p - 2), QUILL_BLOCK_SIZE);
	blk(p - 2)[100] ^= 1;
	logcheck_classify(slot, p, GEN, state, crcs);
	cr_assert_eq(state[p - 2], LOGCHECK_B_BAD);
	cr_assert_eq(crcs[p - 2], want, "the summary's CRC: what a repair must bring");
	cr_assert_eq(state[p - 1], LOGCHECK_B_GOOD, "its neighbours are judged apart");
	cr_assert_eq(state[p - 3], LOGCHECK_B_GOOD);
}

Test(logcheck, classify_flags_a_damaged_summary_and_its_data_unchecked)
{
	uint8_t state[BLOCKS];
	uint32_t crcs[BLOCKS];
	uint32_t p, damaged;

	put_header();
	p = put_batch(1, 10, 2, 0);
	damaged = p;
	p = put_batch(p, 11, 4, 0);
	p = put_batch(p, 15, 1, 0);
	blk(damaged)[300] ^= 0x10;
	logcheck_classify(slot, p, GEN, state, crcs);
	cr_assert_eq(state[damaged], LOGCHECK_B_DAMAGED);
	for (uint32_t b = damaged + 1; b < damaged + 5; b++)
		cr_assert_eq(state[b], LOGCHECK_B_UNCHECKED, "block %u: no summary names it", b);
	cr_assert_eq(state[p - 2], LOGCHECK_B_GOOD, "the batch after it is judged");
	cr_assert_eq(state[p - 1], LOGCHECK_B_GOOD);
}

Test(logcheck, classify_flags_a_damaged_header_and_judges_on)
{
	uint8_t state[BLOCKS];
	uint32_t crcs[BLOCKS];
	uint32_t p;

	put_header();
	p = put_batch(1, 10, 2, 0);
	blk(0)[2000] ^= 4;
	logcheck_classify(slot, p, GEN, state, crcs);
	cr_assert_eq(state[0], LOGCHECK_B_DAMAGED);
	cr_assert_eq(state[1], LOGCHECK_B_GOOD, "its volume is still read from the header");
	cr_assert_eq(state[2], LOGCHECK_B_GOOD);
}

Test(logcheck, classify_leaves_blocks_past_the_log_unchecked)
{
	uint8_t state[BLOCKS];
	uint32_t crcs[BLOCKS];
	uint32_t p;

	put_header();
	p = put_batch(1, 10, 2, 0);
	memset(blk(p), 0x33, QUILL_BLOCK_SIZE); /* written past the last batch */
	logcheck_classify(slot, p + 1, GEN, state, crcs);
	cr_assert_eq(state[p], LOGCHECK_B_UNCHECKED);
	cr_assert_eq(crcs[p], 0);
}

Test(logcheck, classify_refuses_another_life_of_the_slot)
{
	uint8_t state[BLOCKS];
	uint32_t crcs[BLOCKS];
	uint32_t p;

	put_header();
	p = put_batch(1, 10, 2, 0);
	logcheck_classify(slot, p, GEN + 1, state, crcs);
	cr_assert_eq(state[0], LOGCHECK_B_DAMAGED, "a header of another generation");
	cr_assert_eq(state[1], LOGCHECK_B_UNCHECKED, "summaries of another life are not its");
}

/* ---- logcheck_image_check: a whole segment read from a holder ---- */

#define UID 0x1234u
#define SNO 9u

/* The header of segment (UID, SNO) at block 0, then batches; returns the length. */
static uint32_t put_image(void)
{
	struct segment_header h = hdr;
	uint32_t p;

	h.family_uid = UID;
	h.sno = SNO;
	ondisk_segment_header_encode(&h, blk(0));
	p = put_batch(1, 10, 2, 0);
	p = put_batch(p, 12, 3, 0);
	return put_batch(p, 15, 1, 0);
}

Test(logcheck, image_check_takes_a_whole_segment)
{
	uint32_t len = put_image(), a = 99, b = 99;

	cr_assert_eq(logcheck_image_check(slot, len, UID, SNO, &a, &b), 0);
}

/* The blocks that fail their CRCs are named, not their whole batch (an encoder's
 * refusal said "blocks 1-169" for one damaged block). */
Test(logcheck, image_check_names_the_flipped_blocks_of_a_batch)
{
	uint32_t len = put_image(), a, b;

	blk(6)[7] ^= 0x40; /* batch 12: summary at 4, data 5..7 */
	cr_assert_eq(logcheck_image_check(slot, len, UID, SNO, &a, &b), -EILSEQ);
	cr_assert_eq(a, 6);
	cr_assert_eq(b, 7);
	blk(7)[9] ^= 0x01; /* and its last: from the first bad to the last */
	cr_assert_eq(logcheck_image_check(slot, len, UID, SNO, &a, &b), -EILSEQ);
	cr_assert_eq(a, 6);
	cr_assert_eq(b, 8);
}

Test(logcheck, image_check_refuses_another_segment_s_header)
{
	uint32_t len = put_image(), a, b;

	cr_assert_eq(logcheck_image_check(slot, len, UID, SNO + 1, &a, &b), -EILSEQ);
	cr_assert_eq(a, 0);
	cr_assert_eq(b, 1);
	blk(0)[40] ^= 1;
	cr_assert_eq(logcheck_image_check(slot, len, UID, SNO, &a, &b), -EILSEQ);
}

Test(logcheck, image_check_refuses_a_log_that_ends_early)
{
	uint32_t len = put_image(), a, b;

	memset(blk(len - 2), 0, QUILL_BLOCK_SIZE); /* the last summary is gone */
	cr_assert_eq(logcheck_image_check(slot, len, UID, SNO, &a, &b), -EILSEQ);
	cr_assert_eq(a, len - 2);
	cr_assert_eq(b, len);
	/* and a length past the log's end: blocks nothing describes */
	len = put_image();
	cr_assert_eq(logcheck_image_check(slot, len + 2, UID, SNO, &a, &b), -EILSEQ);
	cr_assert_eq(a, len);
}
