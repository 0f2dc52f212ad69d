/* tests/unit/engine/test_prezero.c — engine/prezero.c: zeros over the never-written
 * free slots ahead of the log, a bounded lead, never in a slot in use, and a store
 * that replays whatever moment a crash comes at. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine_internal.h"
#include "engine_fixture.h"

TestSuite(prezero, .init = setup, .fini = teardown);

#define BIG_SEGS 64u
#define LEAD 16u /* PZ_LEAD_SLOTS */

static int open_big(bool format, bool prezero)
{
	struct engine_opts o;

	opts_for(&o, store_path, meta_path, format);
	o.store_size = QUILL_DATA_OFFSET + (uint64_t)BIG_SEGS * SEG_SIZE;
	o.prezero = prezero;
	return engine_open(&o, &eng);
}

/* Polls until the zeros written stop growing for 300 ms; returns them. */
static uint64_t settle(void)
{
	uint64_t last, now = stats().prezeroed_bytes;

	for (int quiet = 0; quiet < 60;) {
		cr_assert_geq(engine_poll(eng, 5), 0);
		usleep(5000);
		last = now;
		now = stats().prezeroed_bytes;
		quiet = now == last ? quiet + 1 : 0;
	}
	return now;
}

/* Does the store file hold data (written) at off, as the file system says? */
static bool written_at(off_t off)
{
	int fd = open(store_path, O_RDONLY);
	off_t d;

	cr_assert_geq(fd, 0);
	d = lseek(fd, off, SEEK_DATA);
	close(fd);
	return d == off;
}

/* Does slot i of the store file hold data? */
static bool slot_written(unsigned i)
{
	return written_at((off_t)QUILL_DATA_OFFSET + (off_t)i * SEG_SIZE);
}

Test(prezero, free_slots_ahead_of_the_log_are_written_up_to_the_lead)
{
	uint64_t zeroed;
	unsigned written = 0;

	cr_assert_eq(open_big(true, true), 0);
	if (slot_written(BIG_SEGS - 1))
		cr_skip_test("this file system reports no holes or unwritten extents");
	zeroed = settle();
	cr_assert_gt(zeroed, 0, "nothing zeroed");
	for (unsigned i = 0; i < BIG_SEGS; i++)
		written += slot_written(i);
	cr_assert_geq(written, LEAD, "the lead is written: %u slots", written);
	cr_assert_leq(written, LEAD + 4, "and not much more (thin): %u slots", written);
	cr_assert_not(slot_written(BIG_SEGS - 1));
	cr_assert_leq(zeroed, (uint64_t)(LEAD + 4) * SEG_SIZE);
}

Test(prezero, the_lead_follows_the_log)
{
	struct engine_volume *vol;
	uint64_t before;

	cr_assert_eq(open_big(true, true), 0);
	if (slot_written(BIG_SEGS - 1))
		cr_skip_test("this file system reports no holes or unwritten extents");
	before = settle();
	vol = create_and_open("v", (uint64_t)BIG_SEGS * SEG_SIZE);
	write_tagged(vol, 0, 8 * SEG_BLOCKS, 1); /* eight slots of log */
	cr_assert_gt(settle(), before, "the lead moved on");
	cr_assert(slot_written(LEAD + 6));
	expect_tagged(vol, 0, 8 * SEG_BLOCKS, 1);
}

/* Slots of 2 MiB, several chunks each: the file system is asked where the unwritten
 * ranges are once, at open, and never while the zeros go down (each asking is two
 * lseek() calls on the loop thread, which wait behind writes converting unwritten
 * extents: once per slot, they held client I/O behind them). */
Test(prezero, the_file_system_is_asked_only_at_open)
{
	const uint64_t seg = 2u << 20;
	struct engine_opts o;
	uint64_t slots, at_open;

	opts_for(&o, store_path, meta_path, true);
	o.segment_size = seg;
	o.store_size = QUILL_DATA_OFFSET + 24 * seg;
	o.prezero = true;
	cr_assert_eq(engine_open(&o, &eng), 0);
	if (written_at((off_t)(QUILL_DATA_OFFSET + 23 * seg)))
		cr_skip_test("this file system reports no holes or unwritten extents");
	at_open = eng->pz_queries;
	slots = settle() / seg;
	cr_assert_geq(slots, LEAD, "the lead is written: %llu slots", (unsigned long long)slots);
	cr_assert_eq(eng->pz_queries, at_open, "%llu queries while zeroing %llu slots",
		     (unsigned long long)(eng->pz_queries - at_open), (unsigned long long)slots);
}

/* While clients are busy, zeros go down only for what small batches took of the log
 * (their first writes pay the conversion most); a large batch earns none: zeroing at
 * its pace doubled a QD32 writer's bytes. The lead is reached first, so that no chunk
 * goes out meanwhile. */
Test(prezero, only_small_batches_earn_zeros_while_clients_are_busy)
{
	struct engine_volume *vol;
	uint64_t before;

	cr_assert_eq(open_big(true, true), 0);
	if (slot_written(BIG_SEGS - 1))
		cr_skip_test("this file system reports no holes or unwritten extents");
	settle();
	vol = create_and_open("v", (uint64_t)BIG_SEGS * SEG_SIZE);
	before = eng->pz_credit;
	write_tagged(vol, 0, 1, 5);
	cr_assert_gt(eng->pz_credit, before, "a one-block batch earns zeros");
	cr_assert_leq(eng->pz_credit - before, 3 * BLK);
	before = eng->pz_credit;
	write_tagged(vol, 64, 20, 5); /* one batch of 21 blocks: 84 KiB */
	cr_assert_eq(eng->pz_credit, before, "a large batch earns none");
	expect_tagged(vol, 64, 20, 5);
}

/* While clients are busy, a chunk waits while one client request is in flight (a QD1
 * client's): its end leaves the disk to the zeros until the next one comes, whereas a
 * chunk sent with it went into the same submit, ahead of the request's write. With two
 * or more in flight (a deep queue, never without one) it goes as before. */
Test(prezero, a_lone_request_in_flight_holds_the_chunk_back)
{
	static uint8_t one[BLK] __attribute__((aligned(4096)));
	uint8_t *big = aligned_alloc(BLK, (size_t)4 * SEG_SIZE);
	struct engine_volume *vol;
	struct done d1 = { 0 }, d2 = { 0 };
	uint64_t cursor;

	cr_assert(big);
	cr_assert_eq(open_big(true, true), 0);
	if (slot_written(BIG_SEGS - 1))
		cr_skip_test("this file system reports no holes or unwritten extents");
	settle();
	vol = create_and_open("v", (uint64_t)BIG_SEGS * SEG_SIZE);
	write_tagged(vol, 0, 4 * SEG_BLOCKS, 1); /* large batches: the lead has room, no credit */

	eng->pz_credit = 1u << 20; /* earned, and due */
	eng->pz_next_ms = 0;
	cursor = eng->pz_cursor;
	fill(one, 1000, 1, 2);
	cr_assert_eq(engine_write(vol, 1000, 1, one, 0, on_done, &d1), 0);
	cr_assert_geq(engine_poll(eng, 0), 0);
	cr_assert_eq(eng->pz_cursor, cursor, "a chunk went out with a lone request in flight");
	cr_assert_eq(engine_wait(eng, &d1.done), 0);
	cr_assert_eq(d1.res, 0);
	cr_assert_geq(engine_poll(eng, 0), 0);
	cr_assert_gt(eng->pz_cursor, cursor, "the chunk waits for nothing once it ended");

	while (eng->pz_inflight)
		cr_assert_geq(engine_poll(eng, 1), 0);
	eng->pz_credit = 1u << 20;
	eng->pz_next_ms = 0;
	cursor = eng->pz_cursor;
	fill(big, 1024, 2 * SEG_BLOCKS, 3); /* two slots each: new ones, the lead moves on */
	fill(big + 2 * SEG_SIZE, 1024 + 2 * SEG_BLOCKS, 2 * SEG_BLOCKS, 3);
	d1 = (struct done){ 0 };
	cr_assert_eq(engine_write(vol, 1024, 2 * SEG_BLOCKS, big, 0, on_done, &d1), 0);
	cr_assert_eq(engine_write(vol, 1024 + 2 * SEG_BLOCKS, 2 * SEG_BLOCKS, big + 2 * SEG_SIZE,
				  0, on_done, &d2), 0);
	cr_assert_geq(engine_poll(eng, 0), 0);
	cr_assert_gt(eng->pz_cursor, cursor, "two requests in flight: no chunk went out");
	cr_assert_eq(engine_wait(eng, &d1.done), 0);
	cr_assert_eq(engine_wait(eng, &d2.done), 0);
	cr_assert_eq(d1.res, 0);
	cr_assert_eq(d2.res, 0);
	expect_tagged(vol, 0, 4 * SEG_BLOCKS, 1);
	expect_tagged(vol, 1000, 1, 2);
	expect_tagged(vol, 1024, 4 * SEG_BLOCKS, 3);
	free(big);
}

Test(prezero, off_when_asked)
{
	cr_assert_eq(open_big(true, false), 0);
	cr_assert_eq(settle(), 0);
	cr_assert_not(slot_written(LEAD));
}

/* Writes one block at a time, polling between, while zeros go down ahead: every
 * block reads back, before and after a reopen (replay over the zeroed slots). */
Test(prezero, writes_while_zeroing_read_back_and_replay)
{
	struct engine_volume *vol;

	cr_assert_eq(open_big(true, true), 0);
	vol = create_and_open("v", (uint64_t)BIG_SEGS * SEG_SIZE);
	for (uint64_t lba = 0; lba < 6 * SEG_BLOCKS; lba++) {
		write_tagged(vol, lba, 1, 3);
		cr_assert_geq(engine_poll(eng, 0), 0);
	}
	cr_assert_gt(stats().prezeroed_bytes, 0);
	expect_tagged(vol, 0, 6 * SEG_BLOCKS, 3);
	cr_assert_eq(eflush(), 0);
	engine_volume_close(vol);
	engine_close(eng);
	eng = NULL;
	cr_assert_eq(open_big(false, true), 0);
	vol = open_vol("v");
	expect_tagged(vol, 0, 6 * SEG_BLOCKS, 3);
}

/* A crash (no close, no checkpoint) with zero writes in flight or just done. */
static int crash_while_zeroing(void)
{
	struct engine_volume *vol = NULL;
	static uint8_t buf[2 * BLK] __attribute__((aligned(4096)));
	struct done d = { 0 };

	CHILD_CHECK(open_big(true, true) == 0);
	CHILD_CHECK(engine_volume_create(eng, "v", (uint64_t)BIG_SEGS * SEG_SIZE) == 0);
	CHILD_CHECK(engine_volume_open(eng, "v", &vol) == 0);
	fill(buf, 0, 2, 9);
	CHILD_CHECK(engine_write(vol, 0, 2, buf, ENGINE_FUA, on_done, &d) == 0);
	CHILD_CHECK(engine_wait(eng, &d.done) == 0 && d.res == 0);
	while (stats().prezeroed_bytes < 3 * SEG_SIZE)
		CHILD_CHECK(engine_poll(eng, 1) >= 0);
	d = (struct done){ 0 };
	CHILD_CHECK(engine_write(vol, 2, 2, buf, ENGINE_FUA, on_done, &d) == 0);
	CHILD_CHECK(engine_wait(eng, &d.done) == 0 && d.res == 0);
	engine_poll(eng, 0); /* the next chunk goes out: the crash comes with it in flight */
	return 0;
}

Test(prezero, a_crash_while_zeroing_leaves_a_store_that_replays)
{
	struct engine_volume *vol;
	uint8_t *want = malloc(2 * BLK), *got = aligned_alloc(BLK, 4 * BLK);

	cr_assert(want && got);
	in_child(crash_while_zeroing);
	cr_assert_eq(open_big(false, true), 0);
	vol = open_vol("v");
	cr_assert_eq(vread(vol, 0, 4, got), 0);
	fill(want, 0, 2, 9);
	cr_assert_eq(memcmp(got, want, 2 * BLK), 0);
	cr_assert_eq(memcmp(got + 2 * BLK, want, 2 * BLK), 0);
	cr_assert_eq(stats().torn_batches, 0);
	cr_assert_eq(stats().corrupt_batches, 0);
	free(want);
	free(got);
}
