/* tests/unit/engine/test_segment.c — the segment layer (engine/segment.h) on a scratch
 * store: open, append, read, seal, delete, list, flush, their errors, a full store.
 *
 * The engine is opened on a fresh store for its slot table and its loop (completions
 * run from engine_poll); the segments here belong to a layer the engine does not know
 * (a struct engine_volume of the test's own), so nothing else writes into them.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine_internal.h"
#include "engine/segment.h"
#include "metadata/meta.h"

#include "engine_fixture.h"

TestSuite(segment, .init = setup, .fini = teardown);

#define TEST_LAYER 4242u
#define TEST_FAMILY 0x5eed0f0f1234ull

static struct engine_volume layer;

static void open_scratch(void)
{
	open_engine();
	memset(&layer, 0, sizeof(layer));
	layer.eng = eng;
	layer.rec.volume_id = TEST_LAYER;
	layer.rec.uid = TEST_FAMILY;
	layer.open_slot = -1;
}

static uint32_t open_slot(void)
{
	cr_assert_eq(seg_open(eng, &layer, SLOT_FOR_WRITE), 0);
	cr_assert_geq(layer.open_slot, 0);
	return (uint32_t)layer.open_slot;
}

/* A buffer of n blocks: block 0 left for the header, the others tagged. */
static uint8_t *tagged_blocks(uint32_t n, uint8_t tag)
{
	uint8_t *buf = seg_buf_alloc((size_t)n * BLK);

	cr_assert_not_null(buf);
	for (uint32_t i = 1; i < n; i++)
		memset(buf + (size_t)i * BLK, tag + i, BLK);
	return buf;
}

static void read_blocks(uint32_t slot, uint32_t block, void *buf, uint32_t n)
{
	struct done d = { 0 };
	struct iovec iov = { buf, (size_t)n * BLK };

	cr_assert_eq(finish(seg_read(eng, slot, block, &iov, 1, on_done, &d), &d),
		     (int)(n * BLK));
}

struct listing {
	uint32_t slot;        /* the one looked for */
	bool seen;
	struct segment_header h;
	uint32_t used, unused;
	uint32_t stop_after;  /* fn returns 7 at this many slots (0: never) */
};

static int list_fn(void *arg, uint32_t slot, const struct segment_header *h)
{
	struct listing *l = arg;

	if (h)
		l->used++;
	else
		l->unused++;
	if (h && slot == l->slot) {
		l->seen = true;
		l->h = *h;
	}
	return l->stop_after && l->used + l->unused == l->stop_after ? 7 : 0;
}

Test(segment, open_append_read_round_trip_with_the_header)
{
	struct engine_stats before;
	uint32_t slot, nfree;
	uint8_t *buf, *back;
	struct segment_header h;
	struct done d = { 0 };

	open_scratch();
	engine_get_stats(eng, &before);
	nfree = (uint32_t)before.segments_free;
	slot = open_slot();
	cr_assert_eq(eng->slots[slot].state, SLOT_OPEN);
	cr_assert_eq(eng->slots[slot].volume_id, TEST_LAYER);
	cr_assert_eq(stats().segments_free, nfree - 1);

	buf = tagged_blocks(3, 0x40);
	cr_assert_eq(finish(seg_append(eng, slot, 0, buf, 3, 777, on_done, &d), &d), 3 * BLK);
	back = seg_buf_alloc(3 * BLK);
	read_blocks(slot, 0, back, 3);
	cr_assert_eq(seg_header_decode(eng, back, &h), 0, "the first append carries the header");
	cr_assert_eq(h.state, ONDISK_SEG_USED);
	cr_assert_eq(h.volume_id, TEST_LAYER);
	cr_assert_eq(h.generation, eng->slots[slot].generation);
	cr_assert_eq(h.first_seq, 777);
	cr_assert_arr_eq(back + BLK, buf + BLK, 2 * BLK);

	/* a later append at the write pointer leaves the header alone */
	memset(buf, 0x55, BLK);
	d = (struct done){ 0 };
	cr_assert_eq(finish(seg_append(eng, slot, 3, buf, 1, 778, on_done, &d), &d), BLK);
	read_blocks(slot, 0, back, 1);
	cr_assert_eq(seg_header_decode(eng, back, &h), 0);
	cr_assert_eq(h.first_seq, 777);
	read_blocks(slot, 3, back, 1);
	cr_assert_arr_eq(back, buf, BLK);
	seg_buf_free(back);
	seg_buf_free(buf);
}

Test(segment, a_read_into_several_buffers_is_one_range)
{
	uint32_t slot;
	uint8_t *buf = tagged_blocks(4, 0x10), *a = seg_buf_alloc(BLK), *b = seg_buf_alloc(2 * BLK);
	struct iovec iov[2] = { { a, BLK }, { b, 2 * BLK } };
	struct done d = { 0 };

	open_scratch();
	slot = open_slot();
	cr_assert_eq(finish(seg_append(eng, slot, 0, buf, 4, 1, on_done, &d), &d), 4 * BLK);
	d = (struct done){ 0 };
	cr_assert_eq(finish(seg_read(eng, slot, 1, iov, 2, on_done, &d), &d), 3 * BLK);
	cr_assert_arr_eq(a, buf + BLK, BLK);
	cr_assert_arr_eq(b, buf + 2 * BLK, 2 * BLK);
	seg_buf_free(a);
	seg_buf_free(b);
	seg_buf_free(buf);
}

Test(segment, opening_the_next_segment_seals_the_last)
{
	uint32_t first, second;

	open_scratch();
	first = open_slot();
	second = open_slot();
	cr_assert_neq(first, second);
	cr_assert_eq(eng->slots[first].state, SLOT_SEALED);
	cr_assert_eq(eng->slots[second].state, SLOT_OPEN);
	cr_assert_gt(eng->slots[second].generation, eng->slots[first].generation);
	seg_seal(eng, second);
	cr_assert_eq(eng->slots[second].state, SLOT_SEALED);
}

Test(segment, delete_writes_a_free_header_and_release_frees_the_slot)
{
	uint32_t slot, nfree;
	uint8_t *buf, *hdr = seg_buf_alloc(BLK);
	struct listing l = { 0 };
	struct done d = { 0 };

	open_scratch();
	slot = open_slot();
	buf = tagged_blocks(2, 0x20);
	cr_assert_eq(finish(seg_append(eng, slot, 0, buf, 2, 5, on_done, &d), &d), 2 * BLK);
	seg_seal(eng, slot);
	l.slot = slot;
	cr_assert_eq(seg_list_sync(eng, list_fn, &l), 0);
	cr_assert(l.seen);
	cr_assert_eq(l.h.state, ONDISK_SEG_USED);

	d = (struct done){ 0 };
	cr_assert_eq(finish(seg_delete(eng, slot, hdr, on_done, &d), &d), BLK);
	d = (struct done){ 0 };
	cr_assert_eq(finish(seg_flush(eng, on_done, &d), &d), 0);
	nfree = (uint32_t)stats().segments_free;
	seg_release(eng, slot);
	cr_assert_eq(eng->slots[slot].state, SLOT_FREE);
	cr_assert_eq(stats().segments_free, nfree + 1);
	seg_release(eng, slot); /* twice: nothing more */
	cr_assert_eq(stats().segments_free, nfree + 1);

	l = (struct listing){ .slot = slot };
	cr_assert_eq(seg_list_sync(eng, list_fn, &l), 0);
	cr_assert(l.seen);
	cr_assert_eq(l.h.state, ONDISK_SEG_FREE);
	cr_assert_eq(l.h.volume_id, TEST_LAYER);
	seg_buf_free(hdr);
	seg_buf_free(buf);
}

Test(segment, a_slot_with_reads_in_flight_is_released_after_them)
{
	uint32_t slot;

	open_scratch();
	slot = open_slot();
	seg_seal(eng, slot);
	eng->slots[slot].readers = 1;
	seg_release(eng, slot);
	cr_assert_eq(eng->slots[slot].state, SLOT_SEALED, "not reused under a read");
	eng->slots[slot].readers = 0;
	seg_release_deferred(eng);
	cr_assert_eq(eng->slots[slot].state, SLOT_FREE);
}

Test(segment, list_names_only_this_stores_headers_and_stops_on_request)
{
	struct listing l = { 0 };
	uint8_t *buf, *other = seg_buf_alloc(BLK);
	struct segment_header h = { .state = ONDISK_SEG_USED, .volume_id = 1, .generation = 1,
				    .family_uid = TEST_FAMILY };
	uint32_t slot, used_before;
	struct done d = { 0 };

	open_scratch();
	cr_assert_eq(seg_list_sync(eng, list_fn, &l), 0);
	cr_assert_eq(l.used + l.unused, NSEGS);
	used_before = l.used;

	slot = open_slot();
	buf = tagged_blocks(1, 0);
	cr_assert_eq(finish(seg_append(eng, slot, 0, buf, 1, 9, on_done, &d), &d), BLK);
	l = (struct listing){ .slot = slot };
	cr_assert_eq(seg_list_sync(eng, list_fn, &l), 0);
	cr_assert_eq(l.used, used_before + 1);
	cr_assert(l.seen);

	/* a header of another store (another uuid) is not one of ours */
	memset(h.uuid, 0xee, sizeof(h.uuid));
	ondisk_segment_header_encode(&h, other);
	cr_assert_eq(seg_header_decode(eng, other, &h), -EINVAL);
	d = (struct done){ 0 };
	cr_assert_eq(finish(seg_append(eng, slot, 1, other, 1, 10, on_done, &d), &d), BLK);
	cr_assert_eq(seg_read_sync(eng, slot, 1, other, 1), 0);
	cr_assert_eq(seg_header_decode(eng, other, &h), -EINVAL);

	l = (struct listing){ .stop_after = 3 };
	cr_assert_eq(seg_list_sync(eng, list_fn, &l), 7);
	cr_assert_eq(l.used + l.unused, 3);
	seg_buf_free(other);
	seg_buf_free(buf);
}

Test(segment, list_reads_every_header_of_a_store_larger_than_one_batch)
{
	struct engine_opts o;
	struct listing l = { .slot = 130 };
	uint8_t *buf = tagged_blocks(1, 0);
	struct done d = { 0 };

	opts_for(&o, store_path, meta_path, true);
	o.store_size = QUILL_DATA_OFFSET + 150ull * SEG_SIZE; /* headers read 64 at a time */
	cr_assert_eq(engine_open(&o, &eng), 0);
	eng->slots[130].volume_id = TEST_LAYER;
	eng->slots[130].family_uid = TEST_FAMILY;
	eng->slots[130].generation = 77;
	cr_assert_eq(finish(seg_append(eng, 130, 0, buf, 1, 5, on_done, &d), &d), BLK);
	cr_assert_eq(seg_list_sync(eng, list_fn, &l), 0);
	cr_assert_eq(l.used + l.unused, 150);
	cr_assert(l.seen, "slot 130, in the third batch");
	cr_assert_eq(l.h.generation, 77);
	cr_assert_eq(l.h.first_seq, 5);
	eng->slots[130].volume_id = 0;
	eng->slots[130].generation = 0;
	seg_buf_free(buf);
}

Test(segment, ranges_outside_a_segment_are_refused_without_a_callback)
{
	uint32_t slot;
	uint8_t *buf = seg_buf_alloc(2 * BLK);
	struct iovec iov = { buf, 2 * BLK };
	struct done d = { 0 };

	open_scratch();
	slot = open_slot();
	cr_assert_eq(seg_read(eng, slot, SEG_BLOCKS - 1, &iov, 1, on_done, &d), -EINVAL);
	cr_assert_eq(seg_append(eng, NSEGS, 1, buf, 1, 1, on_done, &d), -EINVAL);
	cr_assert_eq(seg_read(eng, slot, SEG_BLOCKS + 1, &iov, 1, on_done, &d), -EINVAL);
	cr_assert_eq(seg_read_sync(eng, NSEGS, 0, buf, 1), -EINVAL);
	cr_assert_eq(seg_zero_block_sync(eng, slot, SEG_BLOCKS), -EINVAL);
	for (int i = 0; i < 20; i++)
		cr_assert_geq(engine_poll(eng, 0), 0);
	cr_assert_not(d.done, "a refused call never calls back");
	seg_buf_free(buf);
}

Test(segment, zero_block_repair_reads_back_zeros)
{
	uint32_t slot;
	uint8_t *buf = tagged_blocks(3, 0x70), *zeros = seg_buf_alloc(BLK);
	struct done d = { 0 };

	open_scratch();
	slot = open_slot();
	cr_assert_eq(finish(seg_append(eng, slot, 0, buf, 3, 1, on_done, &d), &d), 3 * BLK);
	cr_assert_eq(seg_zero_block_sync(eng, slot, 1), 0);
	cr_assert_eq(seg_read_sync(eng, slot, 0, buf, 3), 0);
	cr_assert_arr_eq(buf + BLK, zeros, BLK);
	cr_assert_eq(buf[2 * BLK], 0x72, "the next block is untouched");
	seg_buf_free(zeros);
	seg_buf_free(buf);
}

Test(segment, a_full_store_keeps_the_reserve_for_the_cleaner)
{
	uint32_t opened = 0;
	int r;

	open_scratch();
	while ((r = seg_open(eng, &layer, SLOT_FOR_WRITE)) == 0)
		opened++;
	cr_assert_eq(r, -ENOSPC);
	cr_assert_gt(opened, 0);
	cr_assert_eq(eng->nfree, eng->gc_reserve, "writes leave the reserve");
	cr_assert_eq(seg_open(eng, &layer, SLOT_FOR_TRIM), 0, "trims may go deeper");
	while (seg_open(eng, &layer, SLOT_FOR_GC) == 0)
		opened++;
	cr_assert_eq(eng->nfree, 0, "the cleaner takes the last");
	cr_assert_eq(seg_open(eng, &layer, SLOT_FOR_GC), -ENOSPC);
	cr_assert_eq(seg_open(eng, &layer, SLOT_FOR_TRIM), -ENOSPC);
}

/* ---- the segment table in the checkpoint ---- */

#define TABLE_LBAS 150u /* about six segments of the fixture's store per pass */

static void write_pass(struct engine_volume *vol, uint32_t tag)
{
	for (uint32_t lba = 0; lba < TABLE_LBAS; lba += 10)
		write_tagged(vol, lba, 10, tag);
}

/* The state of a slot that start-up rebuilds, whichever way. */
struct slot_view {
	enum slot_state state;
	uint64_t volume_id, generation, first_seq, last_seq;
	uint32_t used, live, tombs, records;
};

static void view_slots(struct slot_view *v)
{
	for (uint32_t i = 0; i < NSEGS; i++) {
		const struct slot *s = &eng->slots[i];

		v[i] = (struct slot_view){ .state = s->state == SLOT_FREE ? SLOT_FREE : SLOT_SEALED,
					   .volume_id = s->volume_id, .generation = s->generation,
					   .first_seq = s->first_seq, .last_seq = s->last_seq,
					   .used = s->used, .live = s->live, .tombs = s->tombs,
					   .records = s->records };
	}
}

/* Slot by slot, what start-up gave (a) is what b says. exact: b is another start-up,
 * so first_seq must match too (a running engine's is only a lower bound). */
static void expect_same_slots(const struct slot_view *a, const struct slot_view *b, bool exact)
{
	for (uint32_t i = 0; i < NSEGS; i++) {
		cr_assert_eq(a[i].state, b[i].state, "slot %u state", i);
		if (b[i].state == SLOT_FREE)
			continue;
		cr_assert_eq(a[i].generation, b[i].generation, "slot %u", i);
		cr_assert_eq(a[i].volume_id, b[i].volume_id, "slot %u", i);
		cr_assert_eq(a[i].used, b[i].used, "slot %u used", i);
		cr_assert_eq(a[i].last_seq, b[i].last_seq, "slot %u last_seq", i);
		cr_assert_eq(a[i].live, b[i].live, "slot %u live", i);
		cr_assert_eq(a[i].tombs, b[i].tombs, "slot %u tombs", i);
		cr_assert_eq(a[i].records, b[i].records, "slot %u records", i);
		if (exact)
			cr_assert_eq(a[i].first_seq, b[i].first_seq, "slot %u first_seq", i);
	}
}

Test(segment, a_clean_stop_reads_only_unsettled_logs_and_restores_the_same_slots)
{
	struct engine_volume *vol;
	struct slot_view before[NSEGS], after[NSEGS];
	struct engine_stats st;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_pass(vol, 1);
	cr_assert_eq(vtrim(vol, 200, 8), 0); /* a TRIM entry: a settled slot with tombs */
	write_tagged(vol, 300, 10, 1);
	write_tagged(vol, 400, 10, 1);
	cr_assert_eq(engine_checkpoint(eng), 0);
	engine_volume_close(vol);
	/* the volume's open slot and the catalog's (LAYER entries) are read again at
	 * start-up; every slot must come back as it is now */
	view_slots(before);
	reopen_engine();
	st = stats();
	cr_assert_geq(st.segments_settled_at_open, 4, "settled %u", st.segments_settled_at_open);
	cr_assert_leq(st.segments_read_at_open, 2, "read %u", st.segments_read_at_open);
	cr_assert_eq(st.replayed_batches, 0);
	view_slots(after);
	expect_same_slots(after, before, false);
	vol = open_vol("v");
	expect_tagged(vol, 0, TABLE_LBAS, 1);
	expect_tagged(vol, 200, 8, 0);
	expect_tagged(vol, 300, 10, 1);
	/* and the log goes on after them */
	write_tagged(vol, 500, 10, 2);
	expect_tagged(vol, 500, 10, 2);
}

/* Checkpoint with the volume's slot open, then more batches into that slot, flushed,
 * and a crash: the table must not have settled the slot. */
static int append_to_open_slot_crash(void)
{
	struct engine_volume *vol;
	int64_t slot;

	CHILD_CHECK(try_open(true) == 0);
	CHILD_CHECK(engine_volume_create(eng, "v", VOL_SIZE) == 0);
	CHILD_CHECK(engine_volume_open(eng, "v", &vol) == 0);
	write_tagged(vol, 0, 10, 1);
	CHILD_CHECK(engine_checkpoint(eng) == 0);
	slot = vol->open_slot;
	CHILD_CHECK(slot >= 0 && eng->slots[slot].state == SLOT_OPEN);
	write_tagged(vol, 20, 5, 2);
	write_tagged(vol, 0, 3, 2);
	CHILD_CHECK(vol->open_slot == slot); /* the same slot took them */
	CHILD_CHECK(eflush() == 0);
	return 0;
}

Test(segment, a_crash_after_appends_to_a_slot_the_checkpoint_saw_open)
{
	struct engine_volume *vol;

	in_child(append_to_open_slot_crash);
	open_engine();
	cr_assert_geq(stats().replayed_batches, 2);
	vol = open_vol("v");
	expect_tagged(vol, 0, 3, 2);
	expect_tagged(vol, 3, 7, 1);
	expect_tagged(vol, 20, 5, 2);
}

/* Settles slots in one checkpoint, empties them (their records stay: the next
 * checkpoint frees them after it lands), reuses them for new batches, flushes and
 * crashes before another checkpoint: start-up finds records of older generations. */
static int reuse_settled_slot_crash(void)
{
	struct engine_volume *vol;
	bool stale = false;

	CHILD_CHECK(try_open(true) == 0);
	CHILD_CHECK(engine_volume_create(eng, "v", VOL_SIZE) == 0);
	CHILD_CHECK(engine_volume_open(eng, "v", &vol) == 0);
	write_pass(vol, 1);
	CHILD_CHECK(engine_checkpoint(eng) == 0);
	write_pass(vol, 2);
	CHILD_CHECK(engine_checkpoint(eng) == 0); /* pass 1's slots: empty, freed after it */
	for (int i = 0; i < 100 && eng->free_jobs; i++)
		CHILD_CHECK(engine_poll(eng, 10) >= 0);
	write_pass(vol, 3);
	CHILD_CHECK(eflush() == 0);
	for (uint32_t i = 0; i < NSEGS; i++)
		stale |= eng->seg_table[i].used && eng->slots[i].state != SLOT_FREE &&
			 eng->seg_table[i].generation != eng->slots[i].generation;
	CHILD_CHECK(stale); /* the case under test happened */
	return 0;
}

Test(segment, a_crash_after_a_settled_slot_was_freed_and_reused)
{
	struct engine_volume *vol;

	in_child(reuse_settled_slot_crash);
	open_engine();
	cr_assert_gt(stats().replayed_batches, 0);
	vol = open_vol("v");
	expect_tagged(vol, 0, TABLE_LBAS, 3);
	write_tagged(vol, 0, 10, 4);
	reopen_engine();
	vol = open_vol("v");
	expect_tagged(vol, 0, 10, 4);
	expect_tagged(vol, 10, TABLE_LBAS - 10, 3);
}

Test(segment, a_record_counts_only_for_its_generation_under_its_checkpoint)
{
	struct segment_header h = { .state = ONDISK_SEG_USED, .volume_id = TEST_LAYER,
				    .generation = 9, .first_seq = 3, .family_uid = TEST_FAMILY,
				    .sno = 5 };
	struct slot_record rec = { .volume_id = TEST_LAYER, .generation = 9, .last_seq = 40,
				   .used = 12, .tombs = 2, .family_uid = TEST_FAMILY, .sno = 5,
				   .slot = 3 };

	open_scratch();
	cr_assert_not(seg_table_restore(eng, 3, &h, 100, TEST_LAYER), "no record");
	cr_assert_not_null(eng->seg_table, "start-up loaded the (empty) table");
	eng->seg_table[3] = rec;
	h.generation = 10;
	cr_assert_not(seg_table_restore(eng, 3, &h, 100, TEST_LAYER), "another generation");
	h.generation = 9;
	h.sno = 6;
	cr_assert_not(seg_table_restore(eng, 3, &h, 100, TEST_LAYER), "another segment");
	h.sno = 5;
	h.family_uid = TEST_FAMILY + 1;
	cr_assert_not(seg_table_restore(eng, 3, &h, 100, TEST_LAYER), "another family's");
	h.family_uid = TEST_FAMILY;
	cr_assert_not(seg_table_restore(eng, 3, &h, 39, TEST_LAYER),
		      "a record newer than the checkpoint loaded");
	h.state = ONDISK_SEG_FREE;
	cr_assert_not(seg_table_restore(eng, 3, &h, 100, TEST_LAYER), "a freed segment");
	h.state = ONDISK_SEG_USED;
	cr_assert(seg_table_restore(eng, 3, &h, 40, TEST_LAYER + 1));
	cr_assert_eq(eng->slots[3].state, SLOT_SEALED);
	cr_assert_eq(eng->slots[3].volume_id, TEST_LAYER + 1, "the layer that owns it now");
	cr_assert_eq(eng->slots[3].used, 12);
	cr_assert_eq(eng->slots[3].last_seq, 40);
	cr_assert_eq(eng->slots[3].first_seq, 3, "the header's");
	cr_assert_eq(eng->slots[3].tombs, 2);
	cr_assert_eq(eng->slots[3].family_uid, TEST_FAMILY, "the segment's id");
	cr_assert_eq(eng->slots[3].sno, 5);
}

/* Deletes the segment table from the closed engine's metadata: the next start-up
 * walks every log, as before the table existed. */
static void drop_table(void)
{
	struct meta *m;
	struct meta_batch *mb;

	cr_assert_eq(meta_open(meta_path, &m), 0);
	cr_assert_eq(meta_batch_create(&mb), 0);
	meta_batch_delete_range(mb, "T", 1, "U", 1);
	cr_assert_eq(meta_batch_commit(m, mb, META_SYNC), 0);
	meta_batch_destroy(mb);
	meta_close(m);
}

/* Start-up from the table and start-up from every log give the same slots, down to
 * what the cleaner's pins read (first_seq, tombs), on a log with overwrites, trims
 * and a snapshot; and the same free slots once their start-up checkpoints ran. */
Test(segment, start_up_from_the_table_equals_start_up_from_every_log)
{
	struct engine_volume *vol;
	struct slot_view table[NSEGS], walked[NSEGS];
	uint32_t free_table;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_pass(vol, 1);
	cr_assert_eq(engine_checkpoint(eng), 0);
	for (uint32_t lba = 0; lba < TABLE_LBAS; lba += 20) {
		write_tagged(vol, lba, 10, 2);
		cr_assert_eq(vtrim(vol, lba + 10, 3), 0);
	}
	cr_assert_eq(engine_snap_create(eng, "v", "s"), 0);
	write_tagged(vol, 0, 10, 3);
	cr_assert_eq(engine_checkpoint(eng), 0);
	engine_volume_close(vol);
	engine_close(eng);
	eng = NULL;

	/* the same store twice: one copy of the metadata keeps its table */
	open_engine();
	cr_assert_geq(stats().segments_settled_at_open, 3);
	view_slots(table);
	free_table = (uint32_t)stats().segments_free;
	engine_close(eng);
	eng = NULL;
	drop_table();
	open_engine();
	cr_assert_eq(stats().segments_settled_at_open, 0);
	view_slots(walked);
	cr_assert_eq(stats().segments_free, free_table);
	expect_same_slots(table, walked, true);
	vol = open_vol("v");
	expect_tagged(vol, 0, 10, 3);
	expect_tagged(vol, 10, 3, 0);
	expect_tagged(vol, 20, 10, 2);
}

/* ---- segment ids: (family uid, number) ---- */

static const struct seg_family *family(uint64_t uid)
{
	for (size_t i = 0; i < eng->nfamilies; i++)
		if (eng->families[i].uid == uid)
			return &eng->families[i];
	return NULL;
}

/* Opens a segment of `l` and writes its header (one block). */
static uint32_t open_written(struct engine_volume *l, uint64_t seq)
{
	uint8_t *buf = tagged_blocks(1, 0);
	struct done d = { 0 };
	uint32_t slot;

	cr_assert_eq(seg_open(eng, l, SLOT_FOR_WRITE), 0);
	slot = (uint32_t)l->open_slot;
	cr_assert_eq(finish(seg_append(eng, slot, 0, buf, 1, seq, on_done, &d), &d), BLK);
	seg_buf_free(buf);
	return slot;
}

Test(segment, numbers_count_per_family_and_restart_past_every_header)
{
	struct engine_volume other;
	struct segment_header h;
	uint8_t *buf = seg_buf_alloc(BLK);
	uint32_t a0, a1, b0, a2;
	struct done d = { 0 };

	open_scratch();
	other = layer;
	other.rec.volume_id = TEST_LAYER + 1;
	other.rec.uid = TEST_FAMILY + 1;
	a0 = open_written(&layer, 5);
	a1 = open_written(&layer, 6);
	b0 = open_written(&other, 7);
	cr_assert_eq(eng->slots[a0].sno, 0);
	cr_assert_eq(eng->slots[a1].sno, 1);
	cr_assert_eq(eng->slots[b0].sno, 0, "each family counts on its own");
	cr_assert_eq(eng->slots[b0].family_uid, TEST_FAMILY + 1);
	cr_assert_eq(seg_read_sync(eng, a1, 0, buf, 1), 0);
	cr_assert_eq(seg_header_decode(eng, buf, &h), 0);
	cr_assert_eq(h.family_uid, TEST_FAMILY, "the header names the segment");
	cr_assert_eq(h.sno, 1);
	cr_assert_eq(h.epoch, 0, "no cluster: epoch 0");

	/* the newest segment of the family is deleted: its FREE header keeps its number */
	seg_seal(eng, a1);
	cr_assert_eq(finish(seg_delete(eng, a1, buf, on_done, &d), &d), BLK);
	cr_assert_eq(seg_flush_sync(eng), 0);
	cr_assert_eq(seg_read_sync(eng, a1, 0, buf, 1), 0);
	cr_assert_eq(seg_header_decode(eng, buf, &h), 0);
	cr_assert_eq(h.state, ONDISK_SEG_FREE);
	cr_assert_eq(h.sno, 1);
	seg_buf_free(buf);

	/* the engine does not know these layers: start-up frees their segments, and the
	 * families' counters restart past every number a header shows */
	reopen_engine();
	cr_assert_not_null(family(TEST_FAMILY));
	cr_assert_eq(family(TEST_FAMILY)->next_sno, 2, "past the freed segment's number");
	cr_assert_eq(family(TEST_FAMILY + 1)->next_sno, 1);
	layer.eng = eng;
	layer.open_slot = -1;
	a2 = open_written(&layer, 8);
	cr_assert_eq(eng->slots[a2].sno, 2, "number 1 is never given out again");
}

/* The checkpoint keeps a family's counter ("F" record): numbers whose headers are
 * gone (their slots reused) are not given out again. */
Test(segment, a_familys_counter_outlives_its_headers)
{
	struct engine_volume *vol;
	uint64_t uid;
	uint32_t top = 0, n = 0;
	int fd;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	uid = info("v").id;
	for (uint32_t lba = 0; lba < 3 * SEG_BLOCKS; lba += 16)
		write_tagged(vol, lba, 16, 1);
	cr_assert_eq(engine_checkpoint(eng), 0);
	for (uint32_t i = 0; i < NSEGS; i++)
		if (eng->slots[i].state != SLOT_FREE && eng->slots[i].family_uid == uid) {
			top = eng->slots[i].sno > top ? eng->slots[i].sno : top;
			n++;
		}
	cr_assert_geq(n, 3, "the writes took several segments");
	cr_assert_eq(top, n - 1, "numbered 0, 1, 2, ... in the family");
	engine_volume_close(vol);
	engine_close(eng);
	eng = NULL;

	/* every header of the family gone (as if the slots were reused elsewhere) */
	fd = open(store_path, O_RDWR);
	cr_assert_geq(fd, 0);
	for (uint32_t i = 0; i < NSEGS; i++) {
		static const uint8_t zero[BLK];

		cr_assert_eq(pwrite(fd, zero, BLK, (off_t)(QUILL_DATA_OFFSET + (uint64_t)i * SEG_SIZE)),
			     (ssize_t)BLK);
	}
	close(fd);
	open_engine();
	for (uint32_t i = 0; i < NSEGS; i++) /* start-up may have logged records anew */
		if (eng->slots[i].family_uid == uid)
			cr_assert_gt(eng->slots[i].sno, top, "slot %u: a number given out twice", i);
	cr_assert_not_null(family(uid), "the checkpoint's record");
	cr_assert_gt(family(uid)->next_sno, top);
}

/* --rebuild-meta has no checkpoint: the headers alone give the counters. */
Test(segment, rebuild_restarts_the_counters_from_the_headers)
{
	struct engine_volume *vol;
	uint64_t uid;
	uint32_t top = 0;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	uid = info("v").id;
	for (uint32_t lba = 0; lba < 3 * SEG_BLOCKS; lba += 16)
		write_tagged(vol, lba, 16, 1);
	cr_assert_eq(eflush(), 0);
	for (uint32_t i = 0; i < NSEGS; i++)
		if (eng->slots[i].state != SLOT_FREE && eng->slots[i].family_uid == uid &&
		    eng->slots[i].sno > top)
			top = eng->slots[i].sno;
	cr_assert_gt(top, 0);
	engine_volume_close(vol);
	rebuild_engine();
	cr_assert_eq(info("v").id, uid, "the family keeps its uid");
	cr_assert_not_null(family(uid));
	cr_assert_gt(family(uid)->next_sno, top);
}

/* ---- reserved numbers (engine_family_reserve_sno): a number a segment record names
 * elsewhere is never drawn again, even if no segment of it reached the log ---- */

static uint64_t reserve_uid;
static uint32_t reserve_top; /* the family's counter before the reservation */

/* A volume with one segment written; its family and counter in reserve_*. */
static struct engine_volume *written_family(void)
{
	struct engine_volume *vol = create_and_open("v", VOL_SIZE);

	reserve_uid = info("v").id;
	write_tagged(vol, 0, 4, 1);
	cr_assert_eq(eflush(), 0);
	reserve_top = engine_family_next_sno(eng, reserve_uid);
	cr_assert_gt(reserve_top, 0, "the write opened a segment");
	return vol;
}

/* The sno of the segment the family's next write opens. */
static uint32_t next_segment_sno(struct engine_volume *vol)
{
	int32_t slot;

	/* fill the open segment so that the next write takes a new one */
	for (uint32_t lba = 16; lba < 16 + 2 * SEG_BLOCKS; lba += 8)
		write_tagged(vol, lba, 8, 2);
	slot = vol->open_slot;
	cr_assert_geq(slot, 0);
	return eng->slots[slot].sno;
}

Test(segment, a_reservation_raises_the_counter_at_once_and_durably)
{
	struct engine_volume *vol;

	open_engine();
	vol = written_family();
	cr_assert_eq(engine_family_reserve_sno(eng, reserve_uid, reserve_top + 5, reserve_top + 5),
		     0);
	cr_assert_eq(engine_family_next_sno(eng, reserve_uid), reserve_top + 5);
	cr_assert_eq(engine_family_durable_sno(eng, reserve_uid), reserve_top + 5,
		     "the F record says so before the callback");
	cr_assert_geq(next_segment_sno(vol), reserve_top + 5, "numbers below it are spent");
	/* lower reservations change nothing */
	cr_assert_eq(engine_family_reserve_sno(eng, reserve_uid, 1, 1), 0);
	cr_assert_geq(engine_family_next_sno(eng, reserve_uid), reserve_top + 5);
	engine_volume_close(vol);
}

static int crash_after_reserving(void)
{
	struct engine_volume *vol;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 4, 1);
	CHILD_CHECK(eflush() == 0);
	CHILD_CHECK(engine_checkpoint(eng) == 0); /* the F record as the checkpoint writes it */
	reserve_uid = info("v").id;
	reserve_top = engine_family_next_sno(eng, reserve_uid);
	/* ahead: the counter stays, the record goes past it */
	CHILD_CHECK(engine_family_reserve_sno(eng, reserve_uid, 0, reserve_top + 64) == 0);
	CHILD_CHECK(engine_family_next_sno(eng, reserve_uid) == reserve_top);
	return 0; /* _exit without closing: a crash, no checkpoint after the reservation */
}

Test(segment, a_reservation_ahead_survives_a_crash_and_restarts_the_counter_past_it)
{
	struct engine_volume *vol;
	uint64_t uid;
	uint32_t top;

	in_child(crash_after_reserving);
	open_engine();
	vol = open_vol("v");
	uid = info("v").id;
	top = engine_family_next_sno(eng, uid);
	/* the child's values are not ours: the log's counter is 1 (one segment) */
	cr_assert_geq(top, 1 + 64, "the reservation's record, not the log's %u", top);
	cr_assert_eq(engine_family_durable_sno(eng, uid), top);
	cr_assert_geq(next_segment_sno(vol), top);
	engine_volume_close(vol);
}

Test(segment, a_checkpoint_never_lowers_a_reservation)
{
	struct engine_volume *vol;

	open_engine();
	vol = written_family();
	cr_assert_eq(engine_family_reserve_sno(eng, reserve_uid, 0, reserve_top + 64), 0);
	(void)next_segment_sno(vol); /* the counter moves on below the reservation */
	cr_assert_lt(engine_family_next_sno(eng, reserve_uid), reserve_top + 64);
	cr_assert_eq(engine_checkpoint(eng), 0);
	cr_assert_eq(engine_family_durable_sno(eng, reserve_uid), reserve_top + 64,
		     "the checkpoint's F record keeps the reservation");
	engine_volume_close(vol);
	reopen_engine();
	cr_assert_eq(engine_family_next_sno(eng, reserve_uid), reserve_top + 64);
}

Test(segment, segment_here_names_only_segments_of_this_log)
{
	struct engine_volume *vol;

	open_engine();
	vol = written_family();
	cr_assert(engine_segment_here(eng, reserve_uid, reserve_top - 1));
	cr_assert_not(engine_segment_here(eng, reserve_uid, reserve_top), "never opened");
	cr_assert_eq(engine_family_reserve_sno(eng, reserve_uid, reserve_top + 3, reserve_top + 3),
		     0);
	cr_assert_not(engine_segment_here(eng, reserve_uid, reserve_top + 1),
		      "a reserved number is not a segment");
	cr_assert_not(engine_segment_here(eng, reserve_uid + 1, reserve_top - 1));
	cr_assert_eq(engine_family_reserve_sno(eng, 0, 1, 1), -EINVAL);
	engine_volume_close(vol);
}

/* --rebuild-meta loses the "F" records: a reservation past the log (numbers a segment
 * record elsewhere may name) must not be drawn again after it, nor after the next
 * start (the rebuild writes the counters as "F" records). */
Test(segment, a_reservation_ahead_survives_a_metadata_rebuild)
{
	struct engine_volume *vol;

	open_engine();
	vol = written_family();
	cr_assert_eq(engine_family_reserve_sno(eng, reserve_uid, 0, reserve_top + 64), 0);
	cr_assert_eq(engine_family_next_sno(eng, reserve_uid), reserve_top);
	engine_volume_close(vol);
	rebuild_engine();
	cr_assert_geq(engine_family_next_sno(eng, reserve_uid), reserve_top + 64,
		      "the log names numbers below %u only", reserve_top);
	cr_assert_eq(engine_family_durable_sno(eng, reserve_uid),
		     engine_family_next_sno(eng, reserve_uid), "its F record is written");
	vol = open_vol("v");
	cr_assert_geq(next_segment_sno(vol), reserve_top + 64);
	engine_volume_close(vol);
	reopen_engine();
	cr_assert_geq(engine_family_next_sno(eng, reserve_uid), reserve_top + 64,
		      "the next start keeps it");
}
