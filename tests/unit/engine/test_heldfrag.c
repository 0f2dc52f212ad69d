/* tests/unit/engine/test_heldfrag.c — fragments held for other nodes
 * (engine/heldfrag.c): put, read, stat and delete with the bytes compared; the "G"
 * record bringing a fragment back after a reopen; retries, conflicts, sizes and the
 * epoch fence as the contract says; a stale drop (an orphan check's) that leaves a
 * fragment put again at a newer epoch; a copy and a fragment of one segment side by side;
 * a fragment's slot never reused while it is held, free again once it is deleted.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "engine_fixture.h"
#include "testutil.h"

#define UID 0x5eed0002ull

/* The engine does not read the image's format: any bytes do. n blocks at raw + 1
 * (unaligned: the engine must copy). */
static uint8_t *image(uint32_t n, unsigned seed)
{
	uint8_t *raw = malloc((size_t)n * BLK + 1);

	cr_assert_not_null(raw);
	for (size_t i = 0; i < (size_t)n * BLK; i++)
		raw[i + 1] = (uint8_t)(i * 13 + seed * 5 + i / BLK);
	return raw;
}

static struct engine_frag_info frag(uint32_t sno, uint8_t index, uint32_t image_blocks,
				    uint64_t epoch)
{
	return (struct engine_frag_info){ .uid = UID, .sno = sno, .epoch = epoch,
					  .index = index, .k = 2, .m = 1, .seg_blocks = 9,
					  .frag_blocks = 5, .image_blocks = image_blocks,
					  .frag_crc = 0xabc0u + index };
}

static int put(const struct engine_frag_info *fi, const uint8_t *img)
{
	struct done d = { 0 };

	return finish(engine_frag_put_async(eng, fi, img, on_done, &d), &d);
}

static int del(uint32_t sno)
{
	struct done d = { 0 };

	return finish(engine_frag_delete_async(eng, UID, sno, on_done, &d), &d);
}

static int rd(uint32_t sno, uint32_t block, uint32_t n, void *buf)
{
	struct done d = { 0 };

	return finish(engine_frag_read(eng, UID, sno, block, buf, n, on_done, &d), &d);
}

static void expect_image(uint32_t sno, uint32_t block, uint32_t n, const uint8_t *want)
{
	uint8_t *got = seg_buf_alloc((size_t)n * BLK);

	cr_assert_not_null(got);
	cr_assert_eq(rd(sno, block, n, got), 0);
	cr_assert_eq(memcmp(got, want + (size_t)block * BLK, (size_t)n * BLK), 0,
		     "fragment blocks %u..%u differ", block, block + n - 1);
	seg_buf_free(got);
}

TestSuite(heldfrag, .init = setup, .fini = teardown, .timeout = 120);

Test(heldfrag, put_read_stat_delete_round_trip)
{
	struct engine_frag_info fi = frag(4, 1, 7, 3), got;
	uint8_t *raw = image(7, 1);
	uint32_t free0;

	open_engine();
	free0 = stats().segments_free;
	cr_assert_eq(engine_frag_stat(eng, UID, 4, &got), -ENOENT);
	cr_assert_eq(put(&fi, raw + 1), 0);
	cr_assert_eq(engine_frag_stat(eng, UID, 4, &got), 0);
	cr_assert_eq(got.index, 1);
	cr_assert_eq(got.k, 2);
	cr_assert_eq(got.m, 1);
	cr_assert_eq(got.image_blocks, 7);
	cr_assert_eq(got.frag_crc, fi.frag_crc);
	cr_assert_eq(got.epoch, 3);
	cr_assert(eng->slots[got.slot].held);
	cr_assert_eq(eng->slots[got.slot].state, SLOT_SEALED, "a durable fragment is sealed");
	cr_assert_eq(stats().segments_held, 1);
	cr_assert_eq(stats().segments_free, free0 - 1);
	expect_image(4, 0, 7, raw + 1);
	expect_image(4, 3, 2, raw + 1);
	cr_assert_eq(rd(4, 6, 2, seg_buf_alloc(2 * BLK)), -ERANGE, "past the image");

	cr_assert_eq(del(4), 0);
	cr_assert_eq(engine_frag_stat(eng, UID, 4, &got), -ENOENT);
	cr_assert_eq(del(4), 0, "a delete again is a retry");
	cr_assert_eq(stats().segments_held, 0);
	cr_assert_eq(stats().segments_free, free0);
	free(raw);
}

static int count(void *arg, const struct engine_frag_info *f)
{
	unsigned *n = arg;

	cr_assert_eq(f->uid, UID);
	cr_assert_eq(f->sno, 10 + *n, "listed in (uid, sno) order");
	(*n)++;
	return 0;
}

Test(heldfrag, a_fragment_comes_back_after_a_reopen_from_its_record)
{
	struct engine_frag_info a = frag(11, 0, 7, 3), b = frag(10, 2, 6, 4), got;
	uint8_t *ra = image(7, 2), *rb = image(6, 3);
	uint32_t slot;
	unsigned n = 0;

	open_engine();
	cr_assert_eq(put(&a, ra + 1), 0);
	cr_assert_eq(put(&b, rb + 1), 0);
	cr_assert_eq(engine_frag_stat(eng, UID, 11, &got), 0);
	slot = got.slot;
	reopen_engine();
	cr_assert_eq(engine_frag_stat(eng, UID, 11, &got), 0, "the G record brings it back");
	cr_assert_eq(got.slot, slot);
	cr_assert_eq(got.index, 0);
	cr_assert_eq(got.image_blocks, 7);
	cr_assert_eq(got.frag_crc, a.frag_crc);
	cr_assert_eq(got.seg_blocks, 9);
	cr_assert_eq(got.frag_blocks, 5);
	cr_assert(eng->slots[slot].held, "its slot is held again before replay sees it");
	cr_assert_eq(stats().segments_held, 2);
	expect_image(11, 0, 7, ra + 1);
	expect_image(10, 0, 6, rb + 1);
	cr_assert_eq(engine_frag_list(eng, count, &n), 0);
	cr_assert_eq(n, 2);

	cr_assert_eq(del(11), 0);
	reopen_engine();
	cr_assert_eq(engine_frag_stat(eng, UID, 11, &got), -ENOENT, "deleted for good");
	cr_assert_eq(stats().segments_held, 1);
	free(ra);
	free(rb);
}

Test(heldfrag, retries_conflicts_sizes_and_the_fence_answer_as_the_contract_says)
{
	struct engine_frag_info fi = frag(1, 0, 7, 5), other = frag(1, 2, 7, 5);
	struct engine_frag_info big = frag(2, 0, SEG_BLOCKS + 1, 5), old = frag(3, 0, 7, 4);
	struct engine_frag_info bad = frag(4, 3, 7, 5);
	uint8_t *raw = image(SEG_BLOCKS + 1, 4);
	struct done d = { 0 };

	open_engine();
	cr_assert_eq(put(&fi, raw + 1), 0);
	cr_assert_eq(put(&fi, raw + 1), 0, "the same fragment again is a retry");
	cr_assert_eq(engine_frag_put_async(eng, &other, raw + 1, on_done, &(struct done){ 0 }),
		     -EEXIST, "one fragment of a segment per node");
	cr_assert_eq(engine_frag_put_async(eng, &big, raw + 1, on_done, &(struct done){ 0 }),
		     -EFBIG);
	cr_assert_eq(engine_frag_put_async(eng, &bad, raw + 1, on_done, &(struct done){ 0 }),
		     -EINVAL, "index 3 of 2+1");
	cr_assert_eq(finish(engine_held_epoch_raise_async(eng, UID, 5, on_done, &d), &d), 0);
	cr_assert_eq(engine_frag_put_async(eng, &old, raw + 1, on_done, &(struct done){ 0 }),
		     -ESTALE, "an epoch below the family's fence");
	cr_assert_eq(stats().segments_held, 1, "nothing refused took a slot");
	free(raw);
}

static int drop_stale(uint32_t sno, uint64_t epoch)
{
	struct done d = { 0 };

	return finish(engine_frag_drop_stale_async(eng, UID, sno, epoch, on_done, &d), &d);
}

/* An orphan check judges a fragment of an encoding never recorded (epoch 2) while the
 * owner's next encoding, at epoch 3, finds the same image and puts it again: the drop
 * must not take it from under the stripe about to name it, whichever comes first. */
Test(heldfrag, a_fragment_put_again_at_a_newer_epoch_survives_a_stale_drop)
{
	struct engine_frag_info e2 = frag(1, 0, 7, 2), e3 = frag(1, 0, 7, 3);
	struct engine_frag_info got;
	uint8_t *raw = image(7, 6);
	struct done dd = { 0 }, dp = { 0 };

	open_engine();
	cr_assert_eq(put(&e2, raw + 1), 0);
	cr_assert_eq(put(&e3, raw + 1), 0, "the same image again is a retry");
	cr_assert_eq(engine_frag_stat(eng, UID, 1, &got), 0);
	cr_assert_eq(got.epoch, 3, "the retry at epoch 3 makes it epoch 3's");
	cr_assert_eq(drop_stale(1, 2), -ESTALE, "judged at epoch 2: kept");
	cr_assert_eq(engine_frag_stat(eng, UID, 1, &got), 0, "still held");
	expect_image(1, 0, 7, raw + 1);

	/* the drop asked first, the put again before the drop ran */
	e3.epoch = 4;
	cr_assert_eq(engine_frag_drop_stale_async(eng, UID, 1, 3, on_done, &dd), 0);
	cr_assert_eq(finish(engine_frag_put_async(eng, &e3, raw + 1, on_done, &dp), &dp), 0);
	cr_assert_eq(finish(0, &dd), -ESTALE, "put again at epoch 4 before the drop ran");
	cr_assert_eq(engine_frag_stat(eng, UID, 1, &got), 0);
	cr_assert_eq(got.epoch, 4);

	cr_assert_eq(drop_stale(1, 4), 0, "judged at its own epoch: dropped");
	cr_assert_eq(engine_frag_stat(eng, UID, 1, &got), -ENOENT);
	free(raw);
}

Test(heldfrag, a_copy_and_a_fragment_of_one_segment_live_side_by_side)
{
	struct engine_frag_info fi = frag(3, 1, 7, 5), got;
	struct engine_held_info hi;
	uint8_t *raw = image(7, 6);
	struct done d = { 0 };

	open_engine();
	cr_assert_eq(finish(engine_held_open_async(eng, UID, 3, 5, on_done, &d), &d), 0);
	cr_assert_eq(put(&fi, raw + 1), 0);
	cr_assert_eq(engine_held_stat(eng, UID, 3, &hi), 0);
	cr_assert_eq(engine_frag_stat(eng, UID, 3, &got), 0);
	cr_assert_neq(hi.slot, got.slot);
	cr_assert_eq(stats().segments_held, 2);
	d = (struct done){ 0 };
	cr_assert_eq(finish(engine_held_delete_async(eng, UID, 3, on_done, &d), &d), 0);
	cr_assert_eq(engine_frag_stat(eng, UID, 3, &got), 0, "the copy's delete leaves it");
	reopen_engine();
	expect_image(3, 0, 7, raw + 1);
	free(raw);
}

Test(heldfrag, the_cleaner_running_hard_never_touches_a_held_fragment)
{
	struct engine_frag_info fi = frag(8, 0, 7, 1), got;
	uint8_t *raw = image(7, 7);
	struct engine_volume *vol;
	uint64_t freed;

	open_engine();
	cr_assert_eq(put(&fi, raw + 1), 0);
	vol = create_and_open("v", VOL_SIZE);
	/* 30 rounds of 96 blocks over a store of 20 x 31 data blocks, one of them held */
	for (uint32_t round = 0; round < 30; round++) {
		for (uint32_t lba = 0; lba < 96; lba += 8)
			write_tagged(vol, lba, 8, round);
		if (round % 8 == 7) {
			cr_assert_geq(engine_gc(eng, 4), 0);
			cr_assert_eq(engine_checkpoint(eng), 0);
			expect_image(8, 0, 7, raw + 1);
		}
	}
	freed = stats().gc_segments_freed;
	cr_assert_gt(freed, 10, "the cleaner ran (freed %llu)", (unsigned long long)freed);
	engine_volume_close(vol);
	reopen_engine();
	cr_assert_eq(engine_frag_stat(eng, UID, 8, &got), 0);
	expect_image(8, 0, 7, raw + 1);
	cr_assert_eq(stats().segments_held, 1);
	free(raw);
}
