/* tests/unit/engine/test_checkpoint.c — engine/checkpoint.c: a checkpoint takes its
 * map chunks in slices, a few per poll, while writes, trims and allocated zeros go on;
 * what it stores, plus replay of the log after it, must give the map a checkpoint
 * taken at once gives, across a crash at any point.
 *
 * Crashes are simulated as in test_engine.c: a child process works and _exit()s
 * without closing the engine; the parent opens the store and checks every block.
 */
#include "engine/engine.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine_internal.h"
#include "engine/map.h"

#include "engine_fixture.h"

TestSuite(checkpoint, .init = setup, .fini = teardown);

/* A thin volume of many map leaves, one block written in each: a sliced capture of one
 * leaf per poll lasts longer than the writes made during it. */
#define LEAVES 64u
#define BIG_BLOCKS ((uint64_t)LEAVES * MAPX_LEAF_BLOCKS)
#define AT(leaf) ((uint64_t)(leaf) * MAPX_LEAF_BLOCKS + 7)
#define NEW_LBA (5u * MAPX_LEAF_BLOCKS + 300) /* a chunk first written during the capture */

enum crash_point { CRASH_AFTER_LANDING, CRASH_DURING_CAPTURE };

static size_t slice_chunks; /* for the child: 1, or SIZE_MAX (all at once) */
static enum crash_point crash_point;

static int child_write_async(struct engine_volume *vol, uint64_t lba, uint32_t tag,
			     struct done *d)
{
	static uint8_t bufs[4][BLK] __attribute__((aligned(BLK)));
	static unsigned next;
	uint8_t *buf = bufs[next++ % 4];

	fill(buf, lba, 1, tag);
	return engine_write(vol, lba, 1, buf, 0, on_done, d);
}

static int wait_all(struct done *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (engine_wait(eng, &d[i].done) < 0 || d[i].res < 0)
			return -1;
	}
	return 0;
}

/* Tag 1 in every leaf, flushed; a checkpoint; during its capture: tag 2 over leaves 0
 * (taken first) and 60 (taken late), a trim of leaf 40, allocated zeros over leaf 1,
 * tag 2 on a block never written; then (after it landed) tag 3 over leaf 2. Flushed,
 * and the process dies. */
static int write_during_capture_and_crash(void)
{
	struct engine_volume *vol;
	struct done ck = { 0 }, mid[5] = { 0 };
	uint64_t mid_seq;
	uint8_t buf[BLK];

	CHILD_CHECK(try_open(true) == 0);
	CHILD_CHECK(engine_volume_create(eng, "v", BIG_BLOCKS * BLK) == 0);
	CHILD_CHECK(engine_volume_open(eng, "v", &vol) == 0);
	for (uint32_t leaf = 0; leaf < LEAVES; leaf++) {
		fill(buf, AT(leaf), 1, 1);
		CHILD_CHECK(vwrite(vol, AT(leaf), 1, buf) == 0);
	}
	CHILD_CHECK(eflush() == 0);

	eng->ckpt_slice_chunks = slice_chunks;
	CHILD_CHECK(engine_checkpoint_async(eng, on_done, &ck) == 0);
	/* sliced: a few leaves taken (the catalog layer's and the first of "v"), then the
	 * capture held (0 chunks a slice), so that the writes below land between slices
	 * however fast the polls turn */
	while (!ck.done && (!eng->ckpt_capturing || eng->ckpt_capturing->slices < 4))
		CHILD_CHECK(engine_poll(eng, 0) >= 0);
	CHILD_CHECK((eng->ckpt_capturing != NULL) == (slice_chunks == 1));
	if (eng->ckpt_capturing)
		eng->ckpt_slice_chunks = 0;
	mid_seq = eng->next_seq;
	CHILD_CHECK(child_write_async(vol, AT(0), 2, &mid[0]) == 0);
	CHILD_CHECK(child_write_async(vol, AT(60), 2, &mid[1]) == 0);
	CHILD_CHECK(engine_trim(vol, AT(40), 1, 0, on_done, &mid[2]) == 0);
	CHILD_CHECK(engine_zero(vol, AT(1), 1, 0, on_done, &mid[3]) == 0);
	CHILD_CHECK(child_write_async(vol, NEW_LBA, 2, &mid[4]) == 0);
	CHILD_CHECK(wait_all(mid, 5) == 0);
	/* sliced: they retired while the capture was still taking leaves */
	CHILD_CHECK((eng->ckpt_capturing != NULL) == (slice_chunks == 1));
	if (crash_point == CRASH_DURING_CAPTURE) {
		CHILD_CHECK(eflush() == 0); /* engine_flush waits for no checkpoint */
		CHILD_CHECK(slice_chunks != 1 || eng->ckpt_capturing);
		return 0;
	}
	eng->ckpt_slice_chunks = slice_chunks;
	CHILD_CHECK(engine_wait(eng, &ck.done) == 0 && ck.res == 0);
	CHILD_CHECK(eng->stats.last_checkpoint_seq < mid_seq); /* replay needs them */

	fill(buf, AT(2), 1, 3);
	CHILD_CHECK(vwrite(vol, AT(2), 1, buf) == 0);
	CHILD_CHECK(eflush() == 0);
	return 0;
}

static void expect_after_crash(void)
{
	struct engine_volume *vol;

	open_engine();
	vol = open_vol("v");
	for (uint32_t leaf = 0; leaf < LEAVES; leaf++) {
		uint32_t tag = 1;

		if (leaf == 0 || leaf == 60)
			tag = 2;
		else if (leaf == 1 || leaf == 40)
			tag = 0;
		else if (leaf == 2 && crash_point == CRASH_AFTER_LANDING)
			tag = 3;
		expect_tagged(vol, AT(leaf), 1, tag);
	}
	expect_tagged(vol, NEW_LBA, 1, 2);
	expect_tagged(vol, NEW_LBA + 1, 1, 0);
	/* 64 written, one trimmed, one now allocated zeros, one new */
	cr_assert_eq(info("v").mapped_blocks, LEAVES - 2 + 1);
	cr_assert_eq(stats().live_blocks, LEAVES - 2 + 1, "live counts from the stored map");
	engine_volume_close(vol);
	/* and once more, from the checkpoint this open wrote */
	reopen_engine();
	vol = open_vol("v");
	expect_tagged(vol, AT(60), 1, 2);
	expect_tagged(vol, AT(40), 1, 0);
	cr_assert_eq(info("v").mapped_blocks, LEAVES - 2 + 1);
}

static void crash_and_check(size_t slices, enum crash_point at)
{
	slice_chunks = slices;
	crash_point = at;
	in_child(write_during_capture_and_crash);
	expect_after_crash();
}

Test(checkpoint, a_capture_in_slices_with_writes_during_it_replays_to_the_right_map)
{
	crash_and_check(1, CRASH_AFTER_LANDING);
}

Test(checkpoint, a_capture_at_once_gives_the_same_map)
{
	crash_and_check(SIZE_MAX, CRASH_AFTER_LANDING);
}

Test(checkpoint, a_crash_during_a_sliced_capture_keeps_every_flushed_write)
{
	crash_and_check(1, CRASH_DURING_CAPTURE);
}

/* No job step runs while a capture is open: a resize (a map change outside the log,
 * with its record) lands wholly in one checkpoint or the next, never across both. */
Test(checkpoint, a_job_waits_for_a_sliced_capture)
{
	struct engine_volume *vol;
	struct done ck = { 0 }, rs = { 0 };
	unsigned polls_while_capturing = 0;

	open_engine();
	vol = create_and_open("v", BIG_BLOCKS * BLK);
	for (uint32_t leaf = 0; leaf < LEAVES; leaf++)
		write_tagged(vol, AT(leaf), 1, 1);
	eng->ckpt_slice_chunks = 1;
	cr_assert_eq(engine_checkpoint_async(eng, on_done, &ck), 0);
	while (!eng->ckpt_capturing)
		cr_assert_geq(engine_poll(eng, 0), 0);
	cr_assert_eq(engine_volume_resize_async(eng, "v", 2 * BIG_BLOCKS * BLK, on_done, &rs), 0);
	while (eng->ckpt_capturing) {
		cr_assert_geq(engine_poll(eng, 0), 0);
		cr_assert_eq(engine_volume_size(vol), BIG_BLOCKS * BLK, "resized mid-capture");
		cr_assert_not(rs.done);
		polls_while_capturing++;
	}
	cr_assert_gt(polls_while_capturing, 8, "the capture took many polls");
	cr_assert_eq(finish(0, &ck), 0);
	cr_assert_eq(finish(0, &rs), 0);
	cr_assert_eq(engine_volume_size(vol), 2 * BIG_BLOCKS * BLK);
	engine_volume_close(vol);
}
