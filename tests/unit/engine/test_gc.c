/* tests/unit/engine/test_gc.c — the cleaner's victim choice (eng_gc_pick_victim in
 * engine/gc.c) on hand-built slot tables: cost-benefit (1 - u) * age / (1 + u), only
 * sealed slots that are idle, checksum-clean and at most 90% live; empty sealed slots
 * are counted (a checkpoint frees them), not picked; and on a real engine, that the
 * cleaner moves a victim's live blocks in LBA order, and that trims repeated over the
 * same blocks do not fill the store with carried tombstones.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "engine_fixture.h"
#include "testutil.h"

#define BPS 100u /* blocks per segment */
#define NEXT_SEQ 1000u

static struct slot sealed(uint32_t live, uint64_t last_seq)
{
	return (struct slot){ .state = SLOT_SEALED, .volume_id = 1, .generation = 1,
			      .last_seq = last_seq, .live = live, .used = BPS };
}

static int64_t pick(const struct slot *slots, uint32_t n, uint32_t *empty_waiting)
{
	return eng_gc_pick_victim(slots, n, BPS, NEXT_SEQ, empty_waiting);
}

Test(gc, prefers_low_utilisation)
{
	struct slot s[3] = { sealed(60, 500), sealed(10, 500), sealed(40, 500) };
	uint32_t empty = 99;

	cr_assert_eq(pick(s, 3, &empty), 1);
	cr_assert_eq(empty, 0);
}

Test(gc, prefers_older_at_equal_utilisation)
{
	struct slot s[3] = { sealed(30, 900), sealed(30, 100), sealed(30, 500) };
	uint32_t empty;

	cr_assert_eq(pick(s, 3, &empty), 1);
}

Test(gc, weighs_age_against_utilisation)
{
	/* u = 0.5, age 901: 0.5 * 901 / 1.5 = 300; u = 0.1, age 101: 0.9 * 101 / 1.1 = 83 */
	struct slot s[2] = { sealed(10, 900), sealed(50, 100) };
	uint32_t empty;

	cr_assert_eq(pick(s, 2, &empty), 1, "an old half-full slot beats a young sparse one");
}

Test(gc, skips_open_and_free_slots)
{
	struct slot s[3] = { sealed(1, 1), sealed(1, 1), sealed(50, 500) };
	uint32_t empty;

	s[0].state = SLOT_OPEN;
	memset(&s[1], 0, sizeof(s[1]));
	s[1].state = SLOT_FREE;
	cr_assert_eq(pick(s, 3, &empty), 2);
	cr_assert_eq(empty, 0, "a free slot is not an empty one waiting");
}

Test(gc, skips_slots_with_pending_batches)
{
	struct slot s[2] = { sealed(1, 1), sealed(50, 500) };
	uint32_t empty;

	s[0].pending = 1;
	cr_assert_eq(pick(s, 2, &empty), 1);
}

Test(gc, skips_slots_that_failed_a_checksum)
{
	struct slot s[2] = { sealed(1, 1), sealed(50, 500) };
	uint32_t empty;

	s[0].gc_skip = true;
	cr_assert_eq(pick(s, 2, &empty), 1);
}

Test(gc, skips_slots_more_than_90_percent_live)
{
	struct slot s[2] = { sealed(91, 1), sealed(90, 999) };
	uint32_t empty;

	cr_assert_eq(pick(s, 2, &empty), 1, "exactly 90% is still cleanable");
	s[1].live = 95;
	cr_assert_eq(pick(s, 2, &empty), -1);
}

Test(gc, counts_empty_slots_waiting_for_a_checkpoint)
{
	struct slot s[3] = { sealed(0, 10), sealed(50, 10), sealed(0, 20) };
	uint32_t empty = 99;

	cr_assert_eq(pick(s, 3, &empty), 1, "an empty slot is not a victim: nothing to move");
	cr_assert_eq(empty, 2);
}

Test(gc, pending_empty_slot_is_not_waiting)
{
	struct slot s[1] = { sealed(0, 10) };
	uint32_t empty = 99;

	s[0].pending = 1;
	cr_assert_eq(pick(s, 1, &empty), -1);
	cr_assert_eq(empty, 0);
}

Test(gc, returns_minus_one_when_nothing_qualifies)
{
	struct slot s[4] = { sealed(99, 1), sealed(1, 1), sealed(1, 1), { .state = SLOT_FREE } };
	uint32_t empty = 99;

	s[1].state = SLOT_OPEN;
	s[2].gc_skip = true;
	cr_assert_eq(pick(s, 4, &empty), -1);
	cr_assert_eq(empty, 0);
	cr_assert_eq(pick(s, 0, &empty), -1, "no slots at all");
}

/* A slot the cleaner packed itself: every block it holds was live when moved in,
 * in one batch, and nothing died in it since. Moving it again would fill another slot
 * just as full: not a victim, however little of it is data (a TOMB block and
 * summaries take their share, which used to keep such slots under 90% live and
 * cleanable forever). What a move drops: dead blocks, and summaries but one. */
Test(gc, a_slot_where_nothing_died_is_not_a_victim)
{
	struct slot s[2] = { sealed(70, 1), sealed(20, 999) };
	uint32_t empty;

	s[0].dead_known = true;
	s[0].sums = 1;
	cr_assert_eq(pick(s, 2, &empty), 1, "the young sparse slot, not the packed one");
	s[1].dead_known = true;
	s[1].dead = 5;
	s[1].sums = 5;
	cr_assert_eq(pick(s, 2, &empty), -1, "9 of 100 blocks go: not worth a move");
	s[1].sums = 6;
	cr_assert_eq(pick(s, 2, &empty), 1, "10 of 100 do");
	s[0].dead_known = false; /* found at start-up: the 90% rule alone */
	cr_assert_eq(pick(s, 2, &empty), 0);
}

/* A slot whose trims still hide an older slot of its layer is not freed by a
 * checkpoint: the cleaner takes it (and carries its trims); once carried, or with
 * nothing older of its layer left, it is an empty slot like any other. */
Test(gc, empty_slot_with_trims_over_older_blocks_is_a_victim)
{
	struct slot s[2] = { sealed(80, 100), sealed(0, 500) };
	uint32_t empty;

	s[0].first_seq = 90;
	s[1].first_seq = 400;
	s[1].tombs = 3;
	cr_assert(eng_slot_pinned(s, 2, 1));
	cr_assert_not(eng_slot_pinned(s, 2, 0), "no trims");
	cr_assert_eq(pick(s, 2, &empty), 1);
	cr_assert_eq(empty, 0, "pinned: not waiting for a checkpoint");

	s[1].carried = true;
	cr_assert_not(eng_slot_pinned(s, 2, 1));
	cr_assert_eq(pick(s, 2, &empty), 0);
	cr_assert_eq(empty, 1);

	s[1].carried = false;
	s[0].volume_id = 2; /* another layer's blocks are not hidden by these trims */
	cr_assert_not(eng_slot_pinned(s, 2, 1));
	s[0].volume_id = 1;
	s[0].first_seq = 600; /* newer than every trim in slot 1 */
	cr_assert_not(eng_slot_pinned(s, 2, 1));
}

/* Emptied slots wait for a checkpoint; while the automatic cleaner only keeps its
 * lead, it asks for one at most every ENG_GC_CKPT_MIN_MS (each flushes the store and
 * RocksDB: back to back, they stalled a QD32 writer), and at once when space is short. */
Test(gc, asks_for_a_checkpoint_at_most_every_min_ms_while_keeping_its_lead)
{
	struct engine *e = calloc(1, sizeof(*e));
	struct ioreq parked = { 0 };
	const uint64_t t = 100000;

	cr_assert_not_null(e);
	e->gc_reserve = 2;
	e->nfree = 10;
	e->ckpt_last_ms = t;
	cr_assert_not(eng_gc_ckpt_due(e, t));
	cr_assert_not(eng_gc_ckpt_due(e, t + ENG_GC_CKPT_MIN_MS - 1));
	cr_assert(eng_gc_ckpt_due(e, t + ENG_GC_CKPT_MIN_MS));

	e->nfree = e->gc_reserve + 2; /* down to the floor: now */
	cr_assert(eng_gc_ckpt_due(e, t));
	e->nfree = 10;
	e->gc_want_free = 12; /* `quill gc` waits for it: now */
	cr_assert(eng_gc_ckpt_due(e, t));
	e->gc_want_free = 0;
	e->parked.head = &parked; /* a write waits for space: now */
	cr_assert(eng_gc_ckpt_due(e, t));
	free(e);
}

/* ---- the cleaner at work: it moves a victim's live blocks in LBA order ---- */

TestSuite(gc_engine, .init = setup, .fini = teardown);

/* Blocks lba0..lba0+n of vol, where the map puts them, must sit in one slot in
 * ascending order. */
static void expect_ascending_in_one_slot(struct engine_volume *vol, uint64_t lba0, uint32_t n)
{
	struct map_loc first, loc, prev;

	cr_assert(eng_resolve(vol, lba0, &first));
	prev = first;
	for (uint32_t i = 1; i < n; i++) {
		cr_assert(eng_resolve(vol, lba0 + i, &loc));
		cr_assert_eq(loc.slot, first.slot, "lba %llu in slot %u, lba %llu in slot %u",
			     (unsigned long long)lba0, first.slot,
			     (unsigned long long)(lba0 + i), loc.slot);
		cr_assert_gt(loc.block, prev.block, "lba %llu at block %u, after lba %llu at %u",
			     (unsigned long long)(lba0 + i), loc.block,
			     (unsigned long long)(lba0 + i - 1), prev.block);
		prev = loc;
	}
}

Test(gc_engine, relocated_blocks_are_written_in_lba_order)
{
	enum { N = 15 }; /* one write each: header + 15 x (summary, block) fill a slot */
	unsigned seed = testutil_seed();
	uint64_t order[N];
	struct engine_volume *vol;
	struct map_loc loc;
	uint32_t victim;

	srand(seed);
	for (unsigned i = 0; i < N; i++)
		order[i] = N - 1 - i; /* backwards, then shuffled a little */
	for (unsigned i = 0; i < N; i++) {
		unsigned j = (unsigned)rand() % N;
		uint64_t t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	if (order[0] < order[1]) { /* never ascending by chance */
		uint64_t t = order[0];

		order[0] = order[1];
		order[1] = t;
	}
	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	for (unsigned i = 0; i < N; i++)
		write_tagged(vol, order[i], 1, 1);
	cr_assert(eng_resolve(vol, order[0], &loc));
	victim = loc.slot;
	write_tagged(vol, 100, 1, 2); /* seals the victim: it does not fit there */
	cr_assert(eng_resolve(vol, 100, &loc));
	cr_assert_neq(loc.slot, victim);

	cr_assert_gt(engine_gc(eng, NSEGS), 0);
	cr_assert_geq(stats().gc_blocks_moved, N);
	cr_assert(eng_resolve(vol, 0, &loc));
	cr_assert_neq(loc.slot, victim, "moved");
	expect_ascending_in_one_slot(vol, 0, N);
	expect_tagged(vol, 0, N, 1);
	expect_tagged(vol, 100, 1, 2);

	engine_volume_close(vol);
	reopen_engine();
	vol = open_vol("v");
	expect_tagged(vol, 0, N, 1);
	expect_ascending_in_one_slot(vol, 0, N);
}

/* ---- the cleaner leaves the clients their pipeline ---- */

/* A victim of ~900 live blocks (slots of 1024): its moves go in slices, and the volume
 * never has more than ENG_GC_MAX_INFLIGHT (+ the one a slice spills into) batches of
 * them in flight, where appending
 * them at once filled the whole pipeline (ONDISK_MAX_INFLIGHT_BATCHES) and held every
 * client write of the volume behind ~3.5 MiB of the cleaner's writes. The data reads
 * back, after a reopen too. */
#define BIG_BPS 1024u

static void open_big_slots(bool format)
{
	struct engine_opts o;

	opts_for(&o, store_path, meta_path, format);
	o.segment_size = (uint64_t)BIG_BPS * BLK;
	o.store_size = QUILL_DATA_OFFSET + 12ull * BIG_BPS * BLK;
	cr_assert_eq(engine_open(&o, &eng), 0);
}

Test(gc_engine, a_big_victim_is_moved_in_slices_leaving_the_pipeline_to_clients)
{
	const uint32_t nlba = 1800;
	struct engine_volume *vol;
	struct done d = { 0 };
	unsigned most = 0;
	uint64_t moved;

	open_big_slots(true);
	vol = create_and_open("v", (uint64_t)2 * nlba * BLK);
	for (uint32_t lba = 0; lba < nlba; lba += 100)
		write_tagged(vol, lba, 100, 1);
	write_tagged(vol, 0, 100, 2); /* the first slot: ~90% live, cleanable */

	cr_assert_eq(engine_gc_async(eng, eng->nfree + 1, on_done, &d), 0);
	while (!d.done) {
		cr_assert_geq(engine_poll(eng, 1), 0);
		if (eng->gc_busy && vol->ninflight > most)
			most = vol->ninflight;
	}
	cr_assert_geq(d.res, 0);
	moved = stats().gc_blocks_moved;
	cr_assert_gt(moved, 2 * ENG_GC_SLICE_BLOCKS, "a victim of %llu live blocks only",
		     (unsigned long long)moved);
	/* (a slice may spill over into one more batch) */
	cr_assert_leq(most, ENG_GC_MAX_INFLIGHT + 1, "the cleaner's batches took %u of the "
		      "pipeline", most);
	cr_assert_lt(most, ONDISK_MAX_INFLIGHT_BATCHES, "no room left for a client's batch");
	expect_tagged(vol, 0, 100, 2);
	expect_tagged(vol, 100, nlba - 100, 1);

	engine_volume_close(vol);
	engine_close(eng);
	eng = NULL;
	open_big_slots(false);
	vol = open_vol("v");
	expect_tagged(vol, 0, 100, 2);
	expect_tagged(vol, 100, nlba - 100, 1);
}

/* ---- carried trims stay bounded ---- */

struct burst {
	unsigned left;
	int err;
};

static void burst_done(void *arg, int res)
{
	struct burst *b = arg;

	b->left--;
	if (res < 0 && !b->err)
		b->err = res;
}

/* n one-block trims at once (they share batches), over lba0 .. lba0 + span. */
static void trim_burst(struct engine_volume *vol, uint64_t lba0, unsigned span, unsigned n,
		       unsigned first)
{
	struct burst b = { 0 };

	for (unsigned i = 0; i < n; i++) {
		int r = engine_trim(vol, lba0 + (first + i) % span, 1, 0, burst_done, &b);

		cr_assert_eq(r, 0, "trim: %d", r);
		b.left++;
	}
	while (b.left)
		cr_assert_geq(engine_poll(eng, 100), 0);
	cr_assert_eq(b.err, 0, "a trim failed: %d", b.err);
}

static void expect_zeros(struct engine_volume *vol, uint64_t lba, uint32_t n)
{
	static uint8_t buf[64 * BLK], zero[64 * BLK];

	cr_assert_leq(n, 64);
	cr_assert_eq(vread(vol, lba, n, buf), 0);
	cr_assert(memcmp(buf, zero, (size_t)n * BLK) == 0, "lba %llu..+%u reads zeros",
		  (unsigned long long)lba, n);
}

/* The crash_loop bug: the same blocks trimmed over and over while an older slot of
 * the layer lives (cold data) were all carried, each trim at each cleaning, and the
 * store filled up with tombstones at a third live. Over each block only the newest
 * trim counts: once everything is cleaned, the store is nearly empty again, and a
 * rebuild from the log still hides the old data the trims hid. */
/* snap: a snapshot "s" of the volume is taken and removed again every 40 cycles, so
 * its layer is merged into the volume's (an alias) while the trims go on. */
static void trim_the_same_blocks(bool snap)
{
	/* one write fills a slot (header, summary, 30 blocks): 29 cold blocks keep it
	 * over 90% live, never cleaned, older than every trim; its 30th is old data at
	 * the start of the trimmed region, which the trims must keep hiding */
	enum { COLD = 29, REGION = COLD, SPAN = 32, CYCLES = 160, BURST = 96 };
	struct engine_volume *vol;
	struct engine_stats st;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, COLD + 1, 1);
	for (unsigned c = 0; c < CYCLES; c++) {
		trim_burst(vol, REGION, SPAN, BURST, c);
		write_tagged(vol, 512 + c % 16, 1, 3 + c); /* and some garbage */
		if (snap && c % 40 == 9)
			cr_assert_eq(engine_snap_create(eng, "v", "s"), 0);
		if (snap && c % 40 == 29)
			cr_assert_eq(engine_snap_delete(eng, "v", "s"), 0);
		if (c % 20 == 19) { /* a restart forgets what was carried */
			engine_volume_close(vol);
			reopen_engine();
			vol = open_vol("v");
		}
	}
	engine_gc(eng, NSEGS - 3);
	cr_assert_eq(engine_checkpoint(eng), 0);
	engine_get_stats(eng, &st);
	cr_log_info("after %u trims: %u of %u segments free, %llu live blocks", CYCLES * BURST,
		    st.segments_free, st.segments_total, (unsigned long long)st.live_blocks);
	cr_assert_lt(st.live_blocks, 2 * SEG_BLOCKS, "little is live");
	cr_assert_geq(st.segments_free, NSEGS - 4,
		      "%u of %u segments free with %llu blocks live: the rest holds trims",
		      st.segments_free, NSEGS, (unsigned long long)st.live_blocks);
	expect_tagged(vol, 0, COLD, 1);
	expect_zeros(vol, REGION, SPAN);

	engine_volume_close(vol);
	rebuild_engine();
	vol = open_vol("v");
	expect_tagged(vol, 0, COLD, 1);
	expect_zeros(vol, REGION, SPAN);
	expect_tagged(vol, 512 + (CYCLES - 1) % 16, 1, 3 + CYCLES - 1);
}

Test(gc_engine, repeated_trims_of_the_same_blocks_leave_the_store_free, .timeout = 120)
{
	trim_the_same_blocks(false);
}

Test(gc_engine, repeated_trims_across_a_merged_snapshot_leave_the_store_free, .timeout = 120)
{
	trim_the_same_blocks(true);
}

/* snap rm merges the snapshot into the volume's layer; the cleaner then keeps only
 * that layer's newest record, which names no parent. A rebuild from the log must
 * still fold the snapshot's blocks into the layer, under the trims the layer made
 * while it read through the snapshot. */
Test(gc_engine, a_rebuild_merges_a_snapshot_whose_childs_first_record_was_cleaned,
     .timeout = 120)
{
	struct engine_volume *vol;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 30, 1); /* fills a slot: the records go to later ones */
	cr_assert_eq(engine_snap_create(eng, "v", "s"), 0);
	for (unsigned c = 0; c < 2 * SEG_BLOCKS; c++) /* the layer's first SET's slot fills */
		write_tagged(vol, 512 + c % 16, 1, 3 + c);
	cr_assert_eq(vtrim(vol, 1, 1), 0);
	cr_assert_eq(engine_snap_delete(eng, "v", "s"), 0);
	for (unsigned c = 0; c < 8 * SEG_BLOCKS; c++) /* garbage: the first slots go */
		write_tagged(vol, 512 + c % 16, 1, 3 + c);
	engine_volume_close(vol);
	reopen_engine(); /* seals the slot the records went to */
	for (int i = 0; i < 3; i++) { /* emptied slots wait for a checkpoint */
		engine_gc(eng, NSEGS - 2);
		cr_assert_eq(engine_checkpoint(eng), 0);
	}

	rebuild_engine();
	vol = open_vol("v");
	expect_tagged(vol, 0, 1, 1);
	expect_zeros(vol, 1, 1);
	expect_tagged(vol, 2, 28, 1);
	cr_assert_eq(info("v").snapshots, 0);
	engine_volume_close(vol);
}

/* test_adopt's hang: a family with family checkpoints (their MAPS slot is old and
 * kept, so every trim the cleaner carries still hides something and goes into a
 * TOMB block), a snapshot, overwrites and trims; then `quill gc` asks for more free
 * slots than the live data leaves. The cleaner used to move the same ~26 live blocks
 * from slot to slot forever; now it packs them once and stops, saying it cannot. */
Test(gc_engine, an_unreachable_goal_stalls_instead_of_cycling, .timeout = 120)
{
	enum { SEGS = 64 };
	struct engine_volume *vol;
	struct engine_stats st;
	struct engine_opts o;
	uint64_t runs;

	opts_for(&o, store_path, meta_path, true);
	o.store_size = QUILL_DATA_OFFSET + (uint64_t)SEGS * SEG_SIZE;
	o.family_records = true;
	cr_assert_eq(engine_open(&o, &eng), 0);
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 64, 1);
	cr_assert_eq(engine_snap_create(eng, "v", "s1"), 0);
	write_tagged(vol, 0, 32, 2);
	cr_assert_eq(vtrim(vol, 40, 8), 0);
	write_tagged(vol, 100, 60, 3);
	write_tagged(vol, 100, 60, 4);
	write_tagged(vol, 200, 40, 5);
	write_tagged(vol, 200, 30, 6);
	cr_assert_eq(vtrim(vol, 235, 3), 0);
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(engine_checkpoint(eng), 0);
	cr_assert_geq(engine_gc(eng, SEGS - 4), 0, "returns though the goal is out of reach");
	engine_get_stats(eng, &st);
	runs = st.gc_runs;
	cr_log_info("%llu cleaner runs, %u of %u segments free", (unsigned long long)runs,
		    st.segments_free, st.segments_total);
	cr_assert_lt(st.segments_free, SEGS - 4, "(the goal is out of reach)");
	cr_assert_lt(runs, 2 * SEGS, "each slot moved about once, not round and round");
	/* and asked again, nothing is worth moving */
	cr_assert_geq(engine_gc(eng, SEGS - 4), 0);
	engine_get_stats(eng, &st);
	cr_assert_lt(st.gc_runs - runs, SEGS / 4);
	expect_tagged(vol, 0, 32, 2);
	expect_zeros(vol, 40, 8);
	expect_tagged(vol, 100, 60, 4);
	expect_tagged(vol, 230, 5, 5);
	expect_zeros(vol, 235, 3);
	engine_volume_close(vol);
}
