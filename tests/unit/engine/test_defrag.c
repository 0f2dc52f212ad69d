/* tests/unit/engine/test_defrag.c — engine/defrag.c, read reallocation: a read whose
 * blocks lie scattered over the log rewrites them once, in LBA order, so that the
 * next read takes few I/Os; a write or trim racing the rewrite wins, at run time,
 * after a crash and after a rebuild of the metadata from the log; snapshots are never
 * rewritten; it is off unless asked for (engine_opts.read_defrag, or seq_defrag: only
 * behind a sequential reader). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine_internal.h"
#include "engine_fixture.h"
#include "testutil.h"

TestSuite(defrag, .init = setup, .fini = teardown);

/* An engine with read reallocation on (it is off by default). */
static int open_defrag(bool format)
{
	struct engine_opts o;

	opts_for(&o, store_path, meta_path, format);
	o.read_defrag = true;
	return engine_open(&o, &eng);
}

static void open_engine_defrag(void)
{
	int r = open_defrag(true);

	cr_assert_eq(r, 0, "engine_open: %s", strerror(-r));
}

#define RUN 8u      /* blocks per run */
#define RUNS 8u     /* runs: lba 0 .. RUN * RUNS - 1 */
#define NBLK (RUN * RUNS)
#define NOISE 600u  /* where the writes between the runs go */

/* lba base..base+63 tag `tag`, written as 8 runs of 8 blocks, last run first, each
 * followed by a 10-block write elsewhere: the runs lie more than the read's join gap
 * apart, so a read of the range takes one I/O per run. */
static void write_scattered(struct engine_volume *vol, uint64_t base, uint32_t tag)
{
	for (uint32_t r = RUNS; r-- > 0;) {
		write_tagged(vol, base + r * RUN, RUN, tag);
		write_tagged(vol, NOISE + r * 10, 10, 99);
	}
}

static struct engine_volume *scattered(uint32_t tag)
{
	struct engine_volume *vol = create_and_open("v", VOL_SIZE);

	write_scattered(vol, 0, tag);
	return vol;
}

/* Runs the engine until the rewrite's MOVEs have retired. */
static void settle(void)
{
	while (eng->defrag_inflight)
		cr_assert_geq(engine_poll(eng, 10), 0);
}

/* Store reads taken by a read of the range, which must carry tag. */
static uint64_t read_range(struct engine_volume *vol, uint32_t tag)
{
	uint64_t before = stats().read_ios;

	expect_tagged(vol, 0, NBLK, tag);
	settle();
	return stats().read_ios - before;
}

Test(defrag, a_scattered_range_is_rewritten_once_and_then_read_with_few_ios)
{
	struct engine_volume *vol;
	uint64_t ios;

	open_engine_defrag();
	vol = scattered(1);
	ios = read_range(vol, 1);
	cr_assert_eq(ios, RUNS, "the scattered read took %llu I/Os", (unsigned long long)ios);
	cr_assert_eq(stats().defrag_blocks, NBLK);
	/* 64 blocks in slots of 32 (header and summary included): three slots */
	ios = read_range(vol, 1);
	cr_assert_leq(ios, 3, "after the rewrite: %llu I/Os", (unsigned long long)ios);
	cr_assert_eq(stats().defrag_blocks, NBLK, "a rewritten range is not rewritten again");
	expect_tagged(vol, NOISE, 10 * RUNS, 99);

	reopen_engine();
	vol = open_vol("v");
	ios = read_range(vol, 1);
	cr_assert_leq(ios, 3, "after a reopen: %llu I/Os", (unsigned long long)ios);
	rebuild_engine();
	vol = open_vol("v");
	cr_assert_leq(read_range(vol, 1), 3);
	cr_assert_eq(stats().defrag_blocks, 0, "nothing rewritten after the rebuild");
}

/* The read's callback writes lba 9: that write is later in the log than the MOVEs. */
struct racing_read {
	struct engine_volume *vol;
	uint8_t *later;
	struct done read, write;
};

static void read_then_write(void *arg, int res)
{
	struct racing_read *rr = arg;

	on_done(&rr->read, res);
	cr_assert_eq(engine_write(rr->vol, 9, 1, rr->later, 0, on_done, &rr->write), 0);
}

static void expect_race_result(struct engine_volume *vol)
{
	expect_tagged(vol, 0, 5, 1);
	expect_tagged(vol, 5, 1, 2);   /* written before the rewrite was appended */
	expect_tagged(vol, 6, 3, 1);
	expect_tagged(vol, 9, 1, 3);   /* written after it */
	expect_tagged(vol, 10, 10, 1);
	expect_tagged(vol, 20, 2, 0);  /* trimmed before it */
	expect_tagged(vol, 22, NBLK - 22, 1);
}

Test(defrag, writes_and_trims_racing_the_rewrite_win)
{
	struct racing_read rr = { 0 };
	struct done w = { 0 }, t = { 0 };
	uint8_t *buf = aligned_alloc(BLK, (size_t)NBLK * BLK), *early = malloc(BLK);

	rr.later = malloc(BLK);
	cr_assert(buf && early && rr.later);
	fill(early, 5, 1, 2);
	fill(rr.later, 9, 1, 3);
	open_engine_defrag();
	rr.vol = scattered(1);
	/* the read is queued first, the write and the trim behind it, before the engine runs:
	 * they retire, or are in flight, when the read ends and its rewrite is appended */
	cr_assert_eq(engine_read(rr.vol, 0, NBLK, buf, read_then_write, &rr), 0);
	cr_assert_eq(engine_write(rr.vol, 5, 1, early, 0, on_done, &w), 0);
	cr_assert_eq(engine_trim(rr.vol, 20, 2, 0, on_done, &t), 0);
	cr_assert_eq(engine_wait(eng, &rr.read.done), 0);
	cr_assert_eq(rr.read.res, 0);
	cr_assert_eq(finish(0, &rr.write), 0);
	cr_assert_eq(finish(0, &w), 0);
	cr_assert_eq(finish(0, &t), 0);
	settle();
	cr_assert_eq(stats().defrag_blocks, NBLK - 3, "all but lba 5, 20 and 21 rewritten");
	expect_race_result(rr.vol);

	reopen_engine();
	expect_race_result(open_vol("v"));
	rebuild_engine();
	expect_race_result(open_vol("v"));
	free(buf);
	free(early);
	free(rr.later);
}

/* The same with the write and the trim appended and not retired when the rewrite is
 * (the read's end is driven by hand: which of the two a real race gives depends on the
 * order of completions): the rewrite leaves their blocks out, or a rebuild, which
 * applies every MOVE as DATA, would bring the old data back. */
Test(defrag, a_write_or_trim_pending_when_the_rewrite_is_appended_wins)
{
	struct read_block b[NBLK];
	struct done w = { 0 }, t = { 0 }, rd = { 0 }, later = { 0 };
	uint8_t *buf = aligned_alloc(BLK, (size_t)NBLK * BLK), *early = malloc(BLK);
	uint8_t *late = malloc(BLK);
	struct engine_volume *vol;
	struct ioreq *req;

	cr_assert(buf && early && late);
	fill(early, 5, 1, 2);
	fill(late, 9, 1, 3);
	open_engine_defrag();
	vol = scattered(1);
	eng->opts.read_defrag = false;
	cr_assert_eq(vread(vol, 0, NBLK, buf), 0);
	eng->opts.read_defrag = true;
	for (uint32_t i = 0; i < NBLK; i++) {
		struct map_loc loc;

		cr_assert(map_get(vol->map, i, &loc));
		b[i] = (struct read_block){ .slot = loc.slot, .block = loc.block, .idx = i,
					    .crc = loc.crc };
	}
	req = eng_req_alloc(eng, on_done, &rd);
	cr_assert_not_null(req);
	eng_defrag_note(vol, req, 0, buf, b, NBLK);
	cr_assert_not_null(req->defrag);
	cr_assert_eq(engine_write(vol, 5, 1, early, 0, on_done, &w), 0);
	cr_assert_eq(engine_trim(vol, 20, 2, 0, on_done, &t), 0);
	cr_assert(eng_lba_pending(vol, 5) && eng_lba_pending(vol, 20));
	eng_defrag_finish(eng, req);
	cr_assert_null(req->defrag);
	cr_assert_eq(eng->defrag_inflight, NBLK - 3, "lba 5, 20 and 21 left out");
	cr_assert_eq(engine_write(vol, 9, 1, late, 0, on_done, &later), 0);
	eng_req_put(eng, req, 0);
	cr_assert_eq(finish(0, &rd), 0);
	cr_assert_eq(finish(0, &w), 0);
	cr_assert_eq(finish(0, &t), 0);
	cr_assert_eq(finish(0, &later), 0);
	settle();
	expect_race_result(vol);
	reopen_engine();
	expect_race_result(open_vol("v"));
	rebuild_engine();
	expect_race_result(open_vol("v"));
	free(buf);
	free(early);
	free(late);
}

/* A crash after the rewrite, flushed or not: replay gives the same data either way. */
static int rewrite_crash(bool flushed)
{
	struct engine_volume *vol;
	uint8_t *buf = malloc((size_t)NBLK * BLK);

	CHILD_CHECK(buf && open_defrag(true) == 0);
	vol = scattered(1);
	CHILD_CHECK(eflush() == 0);
	CHILD_CHECK(vread(vol, 0, NBLK, buf) == 0);
	while (eng->defrag_inflight)
		CHILD_CHECK(engine_poll(eng, 10) >= 0);
	CHILD_CHECK(eng->stats.defrag_blocks == NBLK);
	if (flushed)
		CHILD_CHECK(eflush() == 0);
	return 0; /* no engine_close: a crash */
}

static int rewrite_flush_crash(void) { return rewrite_crash(true); }
static int rewrite_crash_unflushed(void) { return rewrite_crash(false); }

Test(defrag, a_crash_after_a_flushed_rewrite_replays_it)
{
	struct engine_volume *vol;

	in_child(rewrite_flush_crash);
	open_engine();
	cr_assert_geq(stats().replayed_batches, 1);
	vol = open_vol("v");
	cr_assert_leq(read_range(vol, 1), 3, "the MOVEs were replayed");
}

Test(defrag, a_crash_before_the_rewrite_is_flushed_loses_nothing)
{
	struct engine_volume *vol;

	in_child(rewrite_crash_unflushed);
	open_engine();
	vol = open_vol("v");
	read_range(vol, 1);
	expect_tagged(vol, NOISE, 10 * RUNS, 99);
}

Test(defrag, snapshots_are_never_rewritten)
{
	struct engine_volume *vol, *s;

	open_engine_defrag();
	vol = scattered(1);
	engine_volume_close(vol);
	cr_assert_eq(engine_snap_create(eng, "v", "s"), 0);
	s = open_vol("v@s");
	cr_assert_eq(read_range(s, 1), RUNS);
	cr_assert_eq(read_range(s, 1), RUNS);
	cr_assert_eq(stats().defrag_blocks, 0);
	/* the volume reads them through its snapshot: not its own blocks either */
	vol = open_vol("v");
	cr_assert_eq(read_range(vol, 1), RUNS);
	cr_assert_eq(stats().defrag_blocks, 0);
}

Test(defrag, off_by_default)
{
	struct engine_volume *vol;

	open_engine();
	vol = scattered(1);
	cr_assert_eq(read_range(vol, 1), RUNS);
	cr_assert_eq(read_range(vol, 1), RUNS);
	cr_assert_eq(stats().defrag_blocks, 0);
}

/* With the store down to the cleaner's free slots, nothing is rewritten. */
Test(defrag, no_rewrite_when_free_slots_are_scarce)
{
	struct engine_volume *vol;

	open_engine_defrag();
	vol = scattered(1);
	/* fill the store with live data until free slots are at the cleaner's mark */
	for (uint64_t lba = 100; eng->nfree > eng_gc_low_water(eng) && lba < 500; lba += 20)
		write_tagged(vol, lba, 20, 5);
	cr_assert_leq(eng->nfree, eng_gc_low_water(eng), "free slots: %u", eng->nfree);
	cr_assert_eq(read_range(vol, 1), RUNS);
	cr_assert_eq(stats().defrag_blocks, 0);
	cr_assert_geq(stats().defrag_skipped, 1);
}

/* ---- sequential readers (engine_opts.seq_defrag) ---- */

static void open_engine_seq(void)
{
	struct engine_opts o;
	int r;

	opts_for(&o, store_path, meta_path, true);
	o.seq_defrag = true;
	r = engine_open(&o, &eng);
	cr_assert_eq(r, 0, "engine_open: %s", strerror(-r));
}

#define SEQ_BASE 1024u /* the scattered range of a volume of 2 x VOL_BLOCKS */

/* Reads [from, to) in order, 128 blocks at a time (the noise at NOISE among them). */
static void read_in_order(struct engine_volume *vol, uint64_t from, uint64_t to)
{
	uint8_t *buf = aligned_alloc(BLK, 128u * BLK);

	cr_assert_not_null(buf);
	for (uint64_t lba = from; lba < to; lba += 128)
		cr_assert_eq(vread(vol, lba, to - lba < 128 ? (uint32_t)(to - lba) : 128, buf), 0);
	free(buf);
}

/* Store reads taken by a read of the scattered range at SEQ_BASE. */
static uint64_t read_seq_range(struct engine_volume *vol)
{
	uint64_t before = stats().read_ios;

	expect_tagged(vol, SEQ_BASE, NBLK, 1);
	settle();
	return stats().read_ios - before;
}

Test(defrag, a_sequential_reader_rewrites_a_scattered_range)
{
	struct engine_volume *vol;
	uint64_t ios;

	open_engine_seq();
	vol = create_and_open("v", 2 * VOL_SIZE);
	write_scattered(vol, SEQ_BASE, 1);
	read_in_order(vol, 0, SEQ_BASE); /* 4 MiB in order: a stream */
	ios = read_seq_range(vol);
	cr_assert_eq(ios, RUNS, "the scattered read took %llu I/Os", (unsigned long long)ios);
	cr_assert_eq(stats().defrag_blocks, NBLK, "the stream's scattered window is rewritten");
	ios = read_seq_range(vol);
	cr_assert_leq(ios, 3, "after the rewrite: %llu I/Os", (unsigned long long)ios);
	expect_tagged(vol, NOISE, 10 * RUNS, 99);
	reopen_engine();
	vol = open_vol("v");
	cr_assert_leq(read_seq_range(vol), 3);
}

Test(defrag, a_read_that_does_not_continue_a_long_stream_is_not_rewritten)
{
	struct engine_volume *vol;

	open_engine_seq();
	vol = create_and_open("v", 2 * VOL_SIZE);
	write_scattered(vol, SEQ_BASE, 1);
	read_in_order(vol, SEQ_BASE / 2 + 1, SEQ_BASE); /* just under 4 MiB */
	cr_assert_eq(read_seq_range(vol), RUNS);
	read_in_order(vol, 0, SEQ_BASE - 8); /* a stream, but the read skips 8 blocks */
	cr_assert_eq(read_seq_range(vol), RUNS);
	read_in_order(vol, 0, SEQ_BASE); /* a stream broken by a read elsewhere */
	read_in_order(vol, 2000, 2001);
	cr_assert_eq(read_seq_range(vol), RUNS);
	cr_assert_eq(stats().defrag_blocks, 0);
}

Test(defrag, no_rewrite_behind_a_sequential_reader_by_default)
{
	struct engine_volume *vol;

	open_engine();
	vol = create_and_open("v", 2 * VOL_SIZE);
	write_scattered(vol, SEQ_BASE, 1);
	read_in_order(vol, 0, SEQ_BASE);
	cr_assert_eq(read_seq_range(vol), RUNS);
	cr_assert_eq(stats().defrag_blocks, 0);
}
