/* tests/unit/engine/test_io.c — engine/io.c's reads: one I/O for neighbouring blocks
 * of several batches, and the right bytes whatever a read crosses (holes, zero
 * entries, a clone's parent, blocks written in any order). Random tests print their
 * seed and take QUILL_TEST_SEED. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "engine_fixture.h"
#include "testutil.h"

TestSuite(engine_io, .init = setup, .fini = teardown);

static uint64_t read_ios(void)
{
	return stats().read_ios;
}

/* Reads n blocks at lba into an aligned buffer (unaligned with `off`) and compares
 * each with tags[lba + i] (0: zeros). Returns the store reads it took. */
static uint64_t expect_model(struct engine_volume *vol, uint64_t lba, uint32_t n,
			     const uint32_t *tags, size_t off)
{
	uint8_t *mem = aligned_alloc(BLK, (size_t)(n + 1) * BLK);
	uint8_t *want = malloc(BLK);
	uint64_t before = read_ios();
	int r;

	cr_assert(mem && want);
	memset(mem, 0xee, (size_t)(n + 1) * BLK);
	r = vread(vol, lba, n, mem + off);
	cr_assert_eq(r, 0, "read %u at %llu: %s", n, (unsigned long long)lba, strerror(-r));
	for (uint32_t i = 0; i < n; i++) {
		memset(want, 0, BLK);
		if (tags[lba + i])
			fill(want, lba + i, 1, tags[lba + i]);
		cr_assert_eq(memcmp(mem + off + (size_t)i * BLK, want, BLK), 0,
			     "lba %llu: not tag %u", (unsigned long long)(lba + i), tags[lba + i]);
	}
	free(mem);
	free(want);
	return read_ios() - before;
}

/* One write per block: each is its own batch, a summary block between neighbours. */
static void write_one_by_one(struct engine_volume *vol, const uint64_t *lbas, unsigned n,
			     uint32_t *tags, uint32_t tag)
{
	for (unsigned i = 0; i < n; i++) {
		write_tagged(vol, lbas[i], 1, tag);
		tags[lbas[i]] = tag;
	}
}

/* Ten blocks 0..9 written one by one in the order given (ten batches: [summary][lba]
 * each), then read whole: one I/O, aligned or not, whatever the order. */
static void ten_batches_read_with_one_io(const uint64_t *order, uint32_t tag)
{
	uint32_t tags[16] = { 0 };
	struct engine_volume *vol;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_one_by_one(vol, order, 10, tags, tag);
	cr_assert_eq(expect_model(vol, 0, 10, tags, 0), 1);
	cr_assert_eq(expect_model(vol, 0, 10, tags, 3), 1, "unaligned buffer");
	cr_assert_eq(expect_model(vol, 2, 5, tags, 0), 1);
	/* a hole at the end changes nothing */
	cr_assert_eq(expect_model(vol, 0, 16, tags, 0), 1);
}

Test(engine_io, neighbouring_blocks_of_several_batches_are_read_with_one_io)
{
	static const uint64_t up[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 };

	ten_batches_read_with_one_io(up, 7);
}

Test(engine_io, blocks_written_backwards_are_read_with_one_io)
{
	static const uint64_t down[] = { 9, 8, 7, 6, 5, 4, 3, 2, 1, 0 };

	ten_batches_read_with_one_io(down, 3);
}

Test(engine_io, blocks_far_apart_in_a_slot_are_separate_ios)
{
	static const uint64_t a[] = { 0 }, b[] = { 1 };
	uint32_t tags[64] = { 0 };
	struct engine_volume *vol;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_one_by_one(vol, a, 1, tags, 1);
	write_tagged(vol, 32, 20, 2); /* 20 blocks between lba 0 and lba 1 in the log */
	for (unsigned i = 32; i < 52; i++)
		tags[i] = 2;
	write_one_by_one(vol, b, 1, tags, 1);
	cr_assert_eq(expect_model(vol, 0, 2, tags, 0), 2);
	/* with the blocks between them wanted too, it is one run again */
	cr_assert_eq(expect_model(vol, 0, 52, tags, 0), 1);
}

/* A clone over a snapshot with holes; random single-block writes (in their own
 * batches) and trims (zero entries over the parent) in the clone; every read of the
 * whole range, aligned or not, returns what the model says. */
Test(engine_io, a_read_across_batches_holes_zero_entries_and_the_parent_is_exact)
{
	enum { N = 48 };
	unsigned seed = testutil_seed();
	uint32_t parent[N] = { 0 }, tags[N];
	struct engine_volume *vol, *c;

	srand(seed);
	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 40, 1); /* 40..47: holes in the parent */
	for (unsigned i = 0; i < 40; i++)
		parent[i] = 1;
	for (unsigned i = 0; i < 6; i++) {
		uint64_t lba = (uint64_t)(rand() % 40);

		write_tagged(vol, lba, 1, 2);
		parent[lba] = 2;
	}
	cr_assert_eq(engine_snap_create(eng, "v", "s"), 0);
	cr_assert_eq(engine_clone(eng, "v@s", "c"), 0);
	c = open_vol("c");
	memcpy(tags, parent, sizeof(tags));
	for (uint32_t op = 0; op < 40; op++) {
		uint64_t lba = (uint64_t)(rand() % N);
		uint32_t n = 1 + (uint32_t)(rand() % 3);

		if (lba + n > N)
			n = (uint32_t)(N - lba);
		if (rand() % 4 == 0) {
			cr_assert_eq(vtrim(c, lba, n), 0);
			for (uint32_t i = 0; i < n; i++)
				tags[lba + i] = 0;
		} else {
			write_tagged(c, lba, 1, 10 + op);
			tags[lba] = 10 + op;
		}
		if (op % 8 == 7)
			expect_model(c, 0, N, tags, op % 16 == 7 ? 0 : 1);
	}
	expect_model(c, 0, N, tags, 0);
	expect_model(c, 0, N, tags, 2);
	expect_model(c, 5, N - 9, tags, 0);
	expect_model(vol, 0, N, parent, 0);
	reopen_engine();
	c = open_vol("c");
	expect_model(c, 0, N, tags, 0);
}

/* An engine on a store of nsegs slots of seg_size bytes (the fixture's are 32 blocks:
 * too small for a window), with volume "v" open. */
static struct engine_volume *open_big_slots(uint32_t seg_size, unsigned nsegs)
{
	struct engine_opts o;

	opts_for(&o, store_path, meta_path, true);
	o.segment_size = seg_size;
	o.store_size = QUILL_DATA_OFFSET + (uint64_t)nsegs * seg_size;
	cr_assert_eq(engine_open(&o, &eng), 0);
	return create_and_open("v", VOL_SIZE);
}

/* A window of 256 blocks written by two writes (two batches, a summary between them
 * and before each) spans 257 blocks of one slot: still one I/O. */
Test(engine_io, a_window_written_by_two_batches_is_one_io)
{
	static uint32_t tags[512];
	/* 512 blocks: the window and its summaries fit */
	struct engine_volume *vol = open_big_slots(2u << 20, 8);

	write_tagged(vol, 0, 128, 4);
	write_tagged(vol, 128, 128, 5);
	for (unsigned i = 0; i < 256; i++)
		tags[i] = i < 128 ? 4 : 5;
	cr_assert_eq(expect_model(vol, 0, 256, tags, 0), 1);
	cr_assert_eq(expect_model(vol, 0, 256, tags, 5), 1, "unaligned buffer");
}

/* 400 blocks written by one write lie in order in one slot (three batches, a summary
 * before each): a read of them crosses a window boundary (256 blocks), and the span
 * that reaches it joins the next window's: one I/O, not one per window. */
Test(engine_io, a_range_in_order_across_two_windows_is_one_io)
{
	static uint32_t tags[512];
	/* 1024 blocks: the range and its summaries fit */
	struct engine_volume *vol = open_big_slots(4u << 20, 4);

	write_tagged(vol, 0, 400, 6);
	for (unsigned i = 0; i < 400; i++)
		tags[i] = 6;
	cr_assert_eq(expect_model(vol, 0, 400, tags, 0), 1);
	cr_assert_eq(expect_model(vol, 0, 400, tags, 7), 1, "unaligned buffer");
	cr_assert_eq(expect_model(vol, 100, 300, tags, 0), 1, "a window that starts mid-range");
	/* past READ_MAX_SPAN (512 blocks): two I/Os, the second carried over windows */
	write_tagged(vol, 400, 112, 7);
	for (unsigned i = 400; i < 512; i++)
		tags[i] = 7;
	cr_assert_eq(expect_model(vol, 0, 512, tags, 0), 2);
}
