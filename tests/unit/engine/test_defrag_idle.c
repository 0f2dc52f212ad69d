/* tests/unit/engine/test_defrag_idle.c — engine/defrag.c, the idle defragmenter: once
 * no client request came for a while, a volume's scattered windows are rewritten in
 * LBA order, so that each is one run in the log and a read of it one or two I/Os; the
 * data reads back unchanged, after a reopen and after a crash in the middle of a pass;
 * it waits for a quiet spell, never touches snapshots, and is off when asked. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "engine_fixture.h"
#include "testutil.h"

TestSuite(defrag_idle, .init = setup, .fini = teardown);

/* Slots of 128 blocks: a window is 64 blocks (half a slot), enough to be worth it
 * (the fixture's 32-block slots are too small: the idle defragmenter stays off). */
#define IDLE_SEG_BLOCKS 128u
#define IDLE_NSEGS 40u
#define WIN 64u
#define WINDOWS 2u
#define NBLK (WIN * WINDOWS) /* lba 0 .. 127: the scattered range */
#define RUN 4u
#define NOISE 512u          /* where the writes between the runs go */
#define NOISE_RUN 10u

#define BUSY_MS (3600u * 1000u) /* a quiet spell no test waits for */

static int open_idle(bool format, bool on)
{
	struct engine_opts o;
	int r;

	opts_for(&o, store_path, meta_path, format);
	o.segment_size = IDLE_SEG_BLOCKS * BLK;
	o.store_size = QUILL_DATA_OFFSET + (uint64_t)IDLE_NSEGS * IDLE_SEG_BLOCKS * BLK;
	o.idle_defrag = on;
	r = engine_open(&o, &eng);
	if (r == 0) /* busy until a test says idle (run_idle): the writes poll too */
		eng->idle.quiet_ms = BUSY_MS;
	return r;
}

static void open_engine_idle(bool format)
{
	int r = open_idle(format, true);

	cr_assert_eq(r, 0, "engine_open: %s", strerror(-r));
}

static void reopen_idle(void)
{
	engine_close(eng);
	eng = NULL;
	open_engine_idle(false);
}

/* lba 0..127 tag `tag`, written as runs of 4 blocks, last run first, each followed by
 * a 10-block write elsewhere: every run lies farther from the next than a read joins,
 * so each 64-block window is 16 pieces in the log. */
static struct engine_volume *scattered(uint32_t tag)
{
	struct engine_volume *vol = create_and_open("v", VOL_SIZE);

	for (uint32_t r = NBLK / RUN; r-- > 0;) {
		write_tagged(vol, r * RUN, RUN, tag);
		write_tagged(vol, NOISE + r * NOISE_RUN, NOISE_RUN, 99);
	}
	return vol;
}

static void expect_data(struct engine_volume *vol)
{
	expect_tagged(vol, 0, NBLK, 1);
	expect_tagged(vol, NOISE, NOISE_RUN * (NBLK / RUN), 99);
}

static bool settled(void)
{
	return !eng->idle.reading && eng->defrag_inflight == 0 && !eng->done.head;
}

/* Idle from now on (no quiet spell to wait for); polls until the idle defragmenter
 * found nothing more to do (a clean pass). */
static void run_idle(void)
{
	eng->idle.quiet_ms = 0;
	for (unsigned i = 0; !(eng->idle.clean && settled()); i++) {
		cr_assert_lt(i, 10000, "the idle defragmenter never finished its pass");
		cr_assert_geq(engine_poll(eng, 1), 0);
	}
}

/* Store reads a read of window w takes (its data checked). */
static uint64_t window_ios(struct engine_volume *vol, uint32_t w)
{
	uint64_t before = stats().read_ios;

	expect_tagged(vol, w * WIN, WIN, 1);
	return stats().read_ios - before;
}

/* Window w's blocks lie in ascending order in the log: one run, split at most by the
 * end of a slot (the rewrite goes on in the next one). */
static void expect_one_run(struct engine_volume *vol, uint32_t w)
{
	struct map_loc prev, loc;
	unsigned slots = 1;

	cr_assert(map_get(vol->map, w * WIN, &prev));
	for (uint32_t i = 1; i < WIN; i++) {
		uint64_t lba = w * WIN + i;

		cr_assert(map_get(vol->map, lba, &loc));
		if (loc.slot != prev.slot) {
			slots++;
		} else {
			cr_assert_gt(loc.block, prev.block, "lba %llu at block %u, before it %u",
				     (unsigned long long)lba, loc.block, prev.block);
			/* summaries only in between: a batch holds up to 168 blocks */
			cr_assert_leq(loc.block - prev.block, 2, "lba %llu: a gap of %u blocks",
				      (unsigned long long)lba, loc.block - prev.block - 1);
		}
		prev = loc;
	}
	cr_assert_leq(slots, 2, "window %u spread over %u slots", w, slots);
	cr_assert_leq(window_ios(vol, w), slots);
}

Test(defrag_idle, scattered_windows_become_one_run_with_the_data_unchanged)
{
	struct engine_volume *vol;

	open_engine_idle(true);
	vol = scattered(1);
	for (uint32_t w = 0; w < WINDOWS; w++)
		cr_assert_eq(window_ios(vol, w), WIN / RUN, "window %u scattered", w);
	run_idle();
	/* (and a window of the noise that the ends of slots cut in four) */
	cr_assert_geq(stats().defrag_idle_reads, WINDOWS);
	cr_assert_eq(stats().defrag_blocks, stats().defrag_idle_reads * WIN,
		     "every window read was rewritten, once");
	expect_data(vol);
	for (uint32_t w = 0; w < WINDOWS; w++)
		expect_one_run(vol, w);

	/* the rewrite is in the log: a reopen and a rebuild of the metadata keep it */
	engine_volume_close(vol);
	reopen_idle();
	vol = open_vol("v");
	expect_data(vol);
	for (uint32_t w = 0; w < WINDOWS; w++)
		expect_one_run(vol, w);
	run_idle();
	cr_assert_eq(stats().defrag_idle_reads, 0, "nothing left to rewrite");
}

Test(defrag_idle, waits_for_a_quiet_spell_and_stops_at_a_client_request)
{
	struct engine_volume *vol;

	open_engine_idle(true);
	vol = scattered(1);
	for (unsigned i = 0; i < 50; i++)
		cr_assert_geq(engine_poll(eng, 0), 0);
	cr_assert_eq(stats().defrag_idle_reads, 0, "a window was read while clients were busy");
	cr_assert(eng_defrag_idle_timeout(eng) > 1000, "no wake-up before the quiet spell ends");

	eng->idle.quiet_ms = 0;
	while (stats().defrag_idle_reads == 0)
		cr_assert_geq(engine_poll(eng, 1), 0);
	/* a client request now: the window under way finishes, no other starts */
	eng->idle.quiet_ms = BUSY_MS;
	expect_tagged(vol, NOISE, NOISE_RUN, 99);
	for (unsigned i = 0; i < 1000 && !settled(); i++)
		cr_assert_geq(engine_poll(eng, 1), 0);
	cr_assert(settled());
	for (unsigned i = 0; i < 50; i++)
		cr_assert_geq(engine_poll(eng, 0), 0);
	cr_assert_eq(stats().defrag_idle_reads, 1);
	expect_data(vol);

	run_idle();
	cr_assert_geq(stats().defrag_idle_reads, WINDOWS);
	expect_one_run(vol, 0);
	expect_one_run(vol, 1);
}

/* A client request the engine (or a slow disk) holds is in flight: the node is not
 * idle however long it waits, and no window is read until it ended. */
Test(defrag_idle, a_request_in_flight_is_no_quiet_spell)
{
	struct engine_volume *vol;
	uint8_t *buf = calloc(1, BLK);
	struct done d = { 0 };

	cr_assert_not_null(buf);
	open_engine_idle(true);
	vol = scattered(1);
	for (unsigned i = 0; i < 50; i++) /* everything written retired */
		cr_assert_geq(engine_poll(eng, 0), 0);
	eng_hold_writes(vol);
	cr_assert_eq(engine_write(vol, NOISE, 1, buf, 0, on_done, &d), 0);
	eng->idle.quiet_ms = 0;
	for (unsigned i = 0; i < 200; i++)
		cr_assert_geq(engine_poll(eng, 1), 0);
	cr_assert_not(d.done);
	cr_assert_eq(stats().defrag_idle_reads, 0, "a window was read with a client's write "
		     "in flight");
	cr_assert_eq(eng_defrag_idle_timeout(eng), INT_MAX, "woken by the write's end only");

	eng_release_writes(vol);
	while (!d.done)
		cr_assert_geq(engine_poll(eng, 1), 0);
	cr_assert_eq(d.res, 0);
	run_idle();
	cr_assert_geq(stats().defrag_idle_reads, WINDOWS);
	expect_tagged(vol, 0, NBLK, 1);
	free(buf);
}

Test(defrag_idle, snapshots_are_never_rewritten)
{
	struct engine_volume *vol;

	open_engine_idle(true);
	vol = scattered(1);
	engine_volume_close(vol);
	cr_assert_eq(engine_snap_create(eng, "v", "s"), 0);
	run_idle();
	cr_assert_eq(stats().defrag_idle_reads, 0, "the volume's blocks are its snapshot's now");
	vol = open_vol("v");
	cr_assert_eq(window_ios(vol, 0), WIN / RUN);
}

Test(defrag_idle, off_when_asked)
{
	struct engine_volume *vol;
	int r = open_idle(true, false);

	cr_assert_eq(r, 0, "engine_open: %s", strerror(-r));
	vol = scattered(1);
	for (unsigned i = 0; i < 200; i++)
		cr_assert_geq(engine_poll(eng, 0), 0);
	cr_assert_eq(stats().defrag_idle_reads, 0);
	cr_assert_eq(window_ios(vol, 0), WIN / RUN);
	cr_assert_eq(eng_defrag_idle_timeout(eng), INT_MAX, "no wake-ups for it");
}

/* A crash in the middle of a pass: the first window's rewrite retired (not flushed),
 * the second's read or MOVEs in flight, or (moves_in_flight) the first's MOVEs not
 * yet retired. */
static int crash_mid_pass(bool moves_in_flight)
{
	struct engine_volume *vol;

	CHILD_CHECK(open_idle(true, true) == 0);
	vol = scattered(1);
	(void)vol;
	CHILD_CHECK(eflush() == 0);
	eng->idle.quiet_ms = 0;
	for (unsigned i = 0; i < 10000; i++) {
		if (moves_in_flight ? eng->defrag_inflight > 0 : eng->stats.defrag_blocks >= WIN)
			return 0; /* no engine_close: a crash */
		CHILD_CHECK(engine_poll(eng, 1) >= 0);
	}
	return 1;
}

static int crash_after_one_window(void) { return crash_mid_pass(false); }
static int crash_with_moves_in_flight(void) { return crash_mid_pass(true); }

static void expect_nothing_lost(void)
{
	struct engine_volume *vol;

	open_engine_idle(false);
	vol = open_vol("v");
	expect_data(vol);
	run_idle(); /* the pass goes on from what survived */
	expect_data(vol);
	for (uint32_t w = 0; w < WINDOWS; w++)
		expect_one_run(vol, w);
	engine_volume_close(vol);
	reopen_idle();
	expect_data(open_vol("v"));
}

Test(defrag_idle, a_crash_after_a_window_of_a_pass_loses_nothing)
{
	in_child(crash_after_one_window);
	expect_nothing_lost();
}

Test(defrag_idle, a_crash_with_moves_in_flight_loses_nothing)
{
	in_child(crash_with_moves_in_flight);
	expect_nothing_lost();
}

/* A management job that waits for a volume to be quiet (a snapshot of w) waits for
 * the reads in flight, of any volume, and no new one starts meanwhile (v has more
 * scattered windows): a long pass cannot starve it. */
Test(defrag_idle, a_job_waits_for_the_reads_in_flight_and_no_new_one_starts)
{
	struct engine_volume *vol;
	uint64_t reads;

	open_engine_idle(true);
	vol = scattered(1);
	engine_volume_close(create_and_open("w", VOL_SIZE));
	eng->idle.quiet_ms = 0;
	/* a read started and not submitted yet (a poll could start and finish it) */
	for (unsigned i = 0; i < 3 && !eng->idle.reading; i++)
		eng_defrag_idle_maybe(eng);
	cr_assert_eq(eng->idle.reading, 1);
	reads = stats().defrag_idle_reads;
	cr_assert_eq(engine_snap_create(eng, "w", "s"), 0);
	cr_assert_eq(stats().defrag_idle_reads, reads, "a window was read while the job waited");
	run_idle();
	cr_assert_gt(stats().defrag_idle_reads, reads, "the pass goes on after the job");
	expect_data(vol);
	expect_one_run(vol, 1);
}
