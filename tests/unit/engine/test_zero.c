/* tests/unit/engine/test_zero.c — allocated zeros (engine_zero, ZERO entries): they read
 * as zeros, hold no data block, and block status reports them allocated
 * (ENGINE_BLOCK_ZERO), unlike a trim's hole; across replay after a crash, a checkpoint,
 * the cleaner relocating around them, snapshots read by a clone, diff, and a rebuild of
 * the metadata from the log alone. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine_internal.h"
#include "engine_fixture.h"
#include "testutil.h"

TestSuite(zero, .init = setup, .fini = teardown);

static void expect_state(struct engine_volume *vol, uint64_t lba, uint64_t n,
			 enum engine_block_state want)
{
	for (uint64_t i = lba; i < lba + n; i++)
		cr_assert_eq(engine_block_state(vol, i), want, "lba %llu: state %d, want %d",
			     (unsigned long long)i, engine_block_state(vol, i), want);
}

/* 0..99 tag 1 and then 10..29 allocated zeros: the layout most tests check. */
static struct engine_volume *zeroed_volume(void)
{
	struct engine_volume *vol;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 100, 1);
	cr_assert_eq(vzero(vol, 10, 20), 0);
	return vol;
}

/* more: data blocks the test wrote past block 100 */
static void expect_zeroed(struct engine_volume *vol, uint64_t more)
{
	expect_tagged(vol, 0, 10, 1);
	expect_tagged(vol, 10, 20, 0);
	expect_tagged(vol, 30, 70, 1);
	expect_state(vol, 0, 10, ENGINE_BLOCK_DATA);
	expect_state(vol, 10, 20, ENGINE_BLOCK_ZERO);
	expect_state(vol, 30, 70, ENGINE_BLOCK_DATA);
	expect_state(vol, 100, 10, ENGINE_BLOCK_HOLE);
	cr_assert_eq(info("v").mapped_blocks, 80 + more, "allocated zeros hold no data");
}

Test(zero, allocated_zeros_read_as_zeros_and_report_allocated)
{
	struct engine_volume *vol = zeroed_volume();

	expect_zeroed(vol, 0);
	cr_assert_not(engine_block_mapped(vol, 10), "no data block behind it");
	cr_assert_eq(stats().live_blocks, 80, "the zeroed blocks were freed");
	/* in a hole too: never written, now allocated */
	cr_assert_eq(vzero(vol, 500, 3), 0);
	expect_state(vol, 500, 3, ENGINE_BLOCK_ZERO);
	expect_tagged(vol, 500, 3, 0);
	/* a trim makes a hole of it; a write makes data */
	cr_assert_eq(vtrim(vol, 500, 1), 0);
	expect_state(vol, 500, 1, ENGINE_BLOCK_HOLE);
	write_tagged(vol, 501, 1, 7);
	expect_state(vol, 501, 1, ENGINE_BLOCK_DATA);
	expect_tagged(vol, 501, 1, 7);
	expect_state(vol, 502, 1, ENGINE_BLOCK_ZERO);
	cr_assert_eq(engine_zero(vol, VOL_BLOCKS - 1, 2, 0, on_done, NULL), -ERANGE);
}

Test(zero, allocated_zeros_survive_a_checkpoint_and_reopen)
{
	zeroed_volume();
	cr_assert_eq(engine_checkpoint(eng), 0);
	reopen_engine();
	cr_assert_eq(stats().replayed_batches, 0, "read from the stored map");
	expect_zeroed(open_vol("v"), 0);
}

static int zero_flush_crash(void)
{
	struct engine_volume *vol;

	CHILD_CHECK(try_open(false) == 0);
	CHILD_CHECK(engine_volume_open(eng, "v", &vol) == 0);
	CHILD_CHECK(vzero(vol, 10, 20) == 0);
	CHILD_CHECK(eflush() == 0);
	return 0; /* dies without a checkpoint */
}

static int write_close(void)
{
	struct engine_volume *vol;
	static uint8_t buf[100 * BLK];

	CHILD_CHECK(try_open(true) == 0);
	CHILD_CHECK(engine_volume_create(eng, "v", VOL_SIZE) == 0);
	CHILD_CHECK(engine_volume_open(eng, "v", &vol) == 0);
	fill(buf, 0, 100, 1);
	CHILD_CHECK(vwrite(vol, 0, 100, buf) == 0);
	engine_close(eng);
	return 0;
}

Test(zero, allocated_zeros_are_replayed_after_a_crash)
{
	in_child(write_close);
	in_child(zero_flush_crash);
	open_engine();
	cr_assert_geq(stats().replayed_batches, 1);
	expect_zeroed(open_vol("v"), 0);
}

Test(zero, allocated_zeros_survive_a_rebuild_of_the_metadata)
{
	zeroed_volume();
	rebuild_engine();
	expect_zeroed(open_vol("v"), 0);
}

/* The slot holding the ZERO entry is emptied by the cleaner while older slots still
 * hold the blocks it replaced: it is carried forward (a flagged tomb), so that the
 * stored map, a reopen and a rebuild all still say allocated zeros. */
Test(zero, the_cleaner_carries_allocated_zeros_forward)
{
	struct engine_volume *vol = zeroed_volume();
	uint64_t zseq = eng->next_seq - 1;
	uint32_t zslot = UINT32_MAX;
	uint64_t zgen;

	for (uint32_t s = 0; s < eng->sb.segment_count; s++)
		if (eng->slots[s].state != SLOT_FREE && eng->slots[s].first_seq <= zseq &&
		    eng->slots[s].last_seq >= zseq)
			zslot = s;
	cr_assert_neq(zslot, UINT32_MAX, "the slot of the ZERO entry");
	zgen = eng->slots[zslot].generation;
	/* the rest of that slot and the next: written twice, so they are garbage */
	write_tagged(vol, 200, 2 * SEG_BLOCKS, 2);
	write_tagged(vol, 200, 2 * SEG_BLOCKS, 3);
	cr_assert_gt(engine_gc(eng, NSEGS), 0);
	cr_assert(eng->slots[zslot].state == SLOT_FREE || eng->slots[zslot].generation != zgen,
		  "the cleaner emptied slot %u", zslot);
	expect_zeroed(vol, 2 * SEG_BLOCKS);
	expect_tagged(vol, 200, 2 * SEG_BLOCKS, 3);
	reopen_engine();
	vol = open_vol("v");
	expect_zeroed(vol, 2 * SEG_BLOCKS);
	engine_volume_close(vol);
	rebuild_engine();
	vol = open_vol("v");
	expect_zeroed(vol, 2 * SEG_BLOCKS);
	expect_tagged(vol, 200, 2 * SEG_BLOCKS, 3);
}

static int count_blocks(const struct engine_extent *ext, void *arg)
{
	uint64_t *d = arg;

	d[ext->data] += ext->length / BLK;
	return 0;
}

Test(zero, a_trim_in_a_clone_stays_a_hole_and_allocated_zeros_read_through)
{
	struct engine_volume *vol = zeroed_volume(), *c;
	uint64_t d[2] = { 0, 0 }; /* blocks reading zeros, blocks of data */

	cr_assert_eq(engine_snap_create(eng, "v", "s1"), 0);
	write_tagged(vol, 10, 20, 2); /* the volume moves on; the snapshot keeps zeros */
	cr_assert_eq(engine_clone(eng, "v@s1", "c"), 0);
	c = open_vol("c");
	expect_tagged(c, 10, 20, 0);
	expect_state(c, 10, 20, ENGINE_BLOCK_ZERO);
	expect_state(c, 0, 10, ENGINE_BLOCK_DATA);
	/* a trim over the parent's data: a zero entry, and still a hole */
	cr_assert_eq(vtrim(c, 40, 5), 0);
	expect_state(c, 40, 5, ENGINE_BLOCK_HOLE);
	expect_tagged(c, 40, 5, 0);
	/* allocated zeros over the parent's data hide it */
	cr_assert_eq(vzero(c, 50, 5), 0);
	expect_state(c, 50, 5, ENGINE_BLOCK_ZERO);
	expect_tagged(c, 50, 5, 0);
	/* diff: allocated zeros are zeros, not data */
	cr_assert_eq(engine_diff(eng, NULL, "c", count_blocks, d), 0);
	cr_assert_eq(d[1], 100 - 20 - 5 - 5, "data blocks");
	d[0] = d[1] = 0;
	cr_assert_eq(engine_diff(eng, "v@s1", "c", count_blocks, d), 0);
	cr_assert_eq(d[0], 10, "the trim and the zeros differ, as zeros");
	cr_assert_eq(d[1], 0);
	engine_volume_close(c);
	reopen_engine();
	c = open_vol("c");
	expect_state(c, 10, 20, ENGINE_BLOCK_ZERO);
	expect_state(c, 40, 5, ENGINE_BLOCK_HOLE);
	expect_state(c, 50, 5, ENGINE_BLOCK_ZERO);
	expect_tagged(c, 50, 5, 0);
}

static void expect_flattened(struct engine_volume *c)
{
	expect_tagged(c, 0, 10, 1);
	expect_state(c, 0, 10, ENGINE_BLOCK_DATA);
	expect_state(c, 10, 2, ENGINE_BLOCK_ZERO);
	expect_tagged(c, 12, 2, 5);
	expect_state(c, 12, 2, ENGINE_BLOCK_DATA);
	expect_state(c, 14, 6, ENGINE_BLOCK_ZERO);
	expect_state(c, 20, 2, ENGINE_BLOCK_HOLE);
	expect_state(c, 22, 8, ENGINE_BLOCK_ZERO);
	expect_tagged(c, 14, 16, 0);
	expect_tagged(c, 30, 70, 1);
	expect_state(c, 100, 10, ENGINE_BLOCK_HOLE);
}

/* Flatten keeps the parent's allocated zeros allocated in the clone (ZERO entries of
 * its own, which lose to the clone's earlier write or trim), across a reopen and a
 * rebuild, and with the snapshot gone. */
Test(zero, flatten_keeps_the_parents_allocated_zeros)
{
	struct engine_volume *c;

	zeroed_volume();
	cr_assert_eq(engine_snap_create(eng, "v", "s1"), 0);
	cr_assert_eq(engine_clone(eng, "v@s1", "c"), 0);
	c = open_vol("c");
	write_tagged(c, 12, 2, 5);
	cr_assert_eq(vtrim(c, 20, 2), 0);
	cr_assert_eq(engine_flatten_start(eng, "c"), 0);
	cr_assert_eq(flatten_wait("c"), 0);
	cr_assert_str_empty(info("c").parent, "flattened");
	expect_flattened(c);
	engine_volume_close(c);
	cr_assert_eq(engine_snap_delete(eng, "v", "s1"), 0);
	reopen_engine();
	c = open_vol("c");
	expect_flattened(c);
	engine_volume_close(c);
	rebuild_engine();
	expect_flattened(open_vol("c"));
}
