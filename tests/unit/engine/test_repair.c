/* tests/unit/engine/test_repair.c — read-around and repair (engine/repair.c): a block
 * whose local copy fails its checksum is read from the segment mirror's copy, served,
 * written back and verified; without a good copy the read fails as on a single node.
 *
 * The mirror is a fake that wants the test volume's family (once the test says so:
 * the writes before go to the local store only) and answers its read when the test says, with
 * good data, bad data or an error.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "engine/segment.h"

#include "engine_fixture.h"

static void fini(void);
TestSuite(repair, .init = setup, .fini = fini);

struct fake {
	bool wants;          /* the test volume's family, from now on */
	uint64_t family;
	unsigned reads;
	uint64_t uid;
	uint32_t sno, block, nblocks, crc;
	void *buf;
	struct seg_fetch *f; /* the fetch in flight */
};

static struct fake fk;

static bool fake_wants(void *ctx, uint64_t uid)
{
	(void)ctx;
	return fk.wants && uid == fk.family;
}

static void fake_deleted(void *ctx, uint32_t slot, uint64_t uid, uint32_t sno)
{
	(void)ctx;
	(void)slot;
	(void)uid;
	(void)sno;
}

static int fake_fetch(void *ctx, struct seg_fetch *f)
{
	(void)ctx;
	cr_assert_null(fk.f, "one fetch at a time here");
	fk.reads++;
	fk.uid = f->uid;
	fk.sno = f->sno;
	fk.block = f->block;
	fk.nblocks = f->nblocks;
	fk.crc = f->want[0].crc;
	fk.buf = f->want[0].dst;
	fk.f = f;
	return 0;
}

static const struct seg_mirror_ops fake_ops = {
	.wants = fake_wants, .opened = mirror_nop_opened, .flush = mirror_local_flush,
	.fetch = fake_fetch, .deleted = fake_deleted,
};

static struct engine_volume *vol;
static struct map_loc where;

/* A volume with blocks 0..3 written (tag 1) and durable, then block 1's local copy
 * damaged on disk; the fake mirror then wants the family. */
static void prepare(void)
{
	uint8_t *junk = seg_buf_alloc(BLK);

	memset(&fk, 0, sizeof(fk));
	open_engine();
	seg_mirror_set(eng, &fake_ops, NULL);
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 4, 1);
	cr_assert_eq(eflush(), 0);
	cr_assert(eng_resolve(vol, 1, &where));
	memset(junk, 0xa5, BLK);
	cr_assert_eq(seg_dev_write_sync(eng->segs, seg_dev_slot_offset(eng->segs, where.slot) +
					(uint64_t)where.block * BLK, junk, BLK), 0);
	seg_buf_free(junk);
	fk.family = eng->slots[where.slot].family_uid;
	fk.wants = true;
}

/* Starts a read of blocks 0..3 and runs the engine until it asked the mirror. */
static void read_until_asked(uint8_t *buf, struct done *d)
{
	cr_assert_eq(engine_read(vol, 0, 4, buf, on_done, d), 0);
	while (!fk.f && !d->done)
		cr_assert_geq(engine_poll(eng, 100), 0);
	cr_assert_not(d->done, "the read ended without asking for a copy (res %d)", d->res);
}

/* The mirror's fetch answers res, with the good block (tag 1) or junk in its buffer. */
static void mirror_answers(int res, bool good)
{
	struct seg_fetch *f = fk.f;

	if (good)
		fill(fk.buf, 1, 1, 1);
	else
		memset(fk.buf, 0x3c, BLK);
	fk.f = NULL;
	f->want[0].res = res;
	f->done(f, res);
}

/* A read the test left asked ends as a mirror going away would end it. */
static void fini(void)
{
	if (fk.f)
		mirror_answers(-ESHUTDOWN, false);
	if (eng)
		seg_mirror_set(eng, NULL, NULL);
	teardown();
}

static void run_until(struct done *d)
{
	cr_assert_eq(engine_wait(eng, &d->done), 0);
}

/* Runs the engine until no repair is in flight. */
static void drain_repairs(void)
{
	while (eng->repairs)
		cr_assert_geq(engine_poll(eng, 100), 0);
}

Test(repair, a_bad_block_is_served_from_a_copy_and_written_back)
{
	uint8_t *buf = seg_buf_alloc(4 * BLK);
	uint8_t want[4 * BLK];
	struct done d = { 0 };

	prepare();
	read_until_asked(buf, &d);
	cr_assert_eq(fk.sno, eng->slots[where.slot].sno);
	cr_assert_eq(fk.uid, eng->slots[where.slot].family_uid);
	cr_assert_eq(fk.block, where.block);
	cr_assert_eq(fk.nblocks, 1, "a repair fetches its one block");
	cr_assert_eq(fk.crc, where.crc, "the map's CRC goes to the mirror");
	mirror_answers(0, true);
	run_until(&d);
	cr_assert_eq(d.res, 0);
	fill(want, 0, 4, 1);
	cr_assert_eq(memcmp(buf, want, sizeof(want)), 0, "the good copy was served");
	drain_repairs();
	cr_assert_eq(stats().blocks_repaired, 1);
	cr_assert_eq(stats().blocks_unrecoverable, 0);

	/* the local copy is good now: without any mirror it reads back */
	seg_mirror_set(eng, NULL, NULL);
	memset(buf, 0, 4 * BLK);
	cr_assert_eq(vread(vol, 0, 4, buf), 0);
	cr_assert_eq(memcmp(buf, want, sizeof(want)), 0);
	seg_buf_free(buf);
}

Test(repair, an_unaligned_buffer_gets_the_good_copy_too)
{
	uint8_t *mem = seg_buf_alloc(5 * BLK);
	uint8_t *buf = mem + 512; /* through the bounce buffer */
	uint8_t want[4 * BLK];
	struct done d = { 0 };

	prepare();
	read_until_asked(buf, &d);
	mirror_answers(0, true);
	run_until(&d);
	cr_assert_eq(d.res, 0);
	fill(want, 0, 4, 1);
	cr_assert_eq(memcmp(buf, want, sizeof(want)), 0);
	drain_repairs();
	cr_assert_eq(stats().blocks_repaired, 1);
	seg_buf_free(mem);
}

/* The mirror answers res (with junk in the buffer): the read fails with the local
 * error, counted unrecoverable, and nothing is written back. */
static void expect_unrecoverable(int res)
{
	uint8_t *buf = seg_buf_alloc(4 * BLK);
	struct done d = { 0 };

	prepare();
	read_until_asked(buf, &d);
	mirror_answers(res, false);
	run_until(&d);
	cr_assert_eq(d.res, -EILSEQ, "the local failure is the answer, not %d", d.res);
	cr_assert_eq(stats().blocks_unrecoverable, 1);
	cr_assert_eq(stats().blocks_repaired, 0);
	drain_repairs();
	seg_mirror_set(eng, NULL, NULL);
	cr_assert_eq(vread(vol, 1, 1, buf), -EILSEQ, "the local copy is still the junk");
	seg_buf_free(buf);
}

Test(repair, no_good_copy_fails_the_read_with_the_local_error)
{
	expect_unrecoverable(-EILSEQ);
}

Test(repair, no_copy_reachable_fails_the_read)
{
	expect_unrecoverable(-EIO);
}

Test(repair, a_copy_that_fails_the_crc_is_never_served)
{
	expect_unrecoverable(0); /* a mirror that says yes with the wrong bytes */
}

Test(repair, a_family_the_mirror_does_not_want_keeps_the_local_answer)
{
	uint8_t *buf = seg_buf_alloc(4 * BLK);

	prepare();
	fk.wants = false;
	cr_assert_eq(vread(vol, 0, 4, buf), -EILSEQ);
	cr_assert_eq(fk.reads, 0);
	cr_assert_eq(stats().blocks_unrecoverable, 0, "nothing was tried");
	seg_buf_free(buf);
}

Test(repair, a_mirror_without_fetch_keeps_the_local_answer)
{
	static const struct seg_mirror_ops no_fetch = {
		.wants = fake_wants, .opened = mirror_nop_opened, .flush = mirror_local_flush,
		.deleted = fake_deleted,
	};
	uint8_t *buf = seg_buf_alloc(4 * BLK);

	prepare();
	seg_mirror_set(eng, &no_fetch, NULL);
	cr_assert_eq(vread(vol, 1, 1, buf), -EILSEQ);
	seg_buf_free(buf);
}

Test(repair, a_slot_being_freed_is_not_written_back)
{
	uint8_t *buf = seg_buf_alloc(4 * BLK);
	struct done d = { 0 };

	prepare();
	read_until_asked(buf, &d);
	eng->slots[where.slot].freeing = true; /* the cleaner's FREE header goes out */
	mirror_answers(0, true);
	run_until(&d);
	cr_assert_eq(d.res, 0, "the client still gets the good copy");
	drain_repairs();
	eng->slots[where.slot].freeing = false;
	cr_assert_eq(stats().blocks_repaired, 0);
	seg_mirror_set(eng, NULL, NULL);
	cr_assert_eq(vread(vol, 1, 1, buf), -EILSEQ, "the slot was left alone");
	seg_buf_free(buf);
}
