/* tests/unit/engine/test_segment_remote.c — a sealed segment without a local slot
 * (engine/remote.c, engine/segment_remote.c): once the owner drops its local copy,
 * the maps name a remote entry, reads go to the copies elsewhere (the mirror's fetch:
 * a run of blocks at a time) and verify, the store slot is freed by the next checkpoint without touching the
 * copies, and a restart finds the entry again from the checkpoint.
 *
 * The mirror is a holder in memory: it keeps the bytes of the dropped segment, read
 * from the store slot before the drop, and answers each fetch from them, from the
 * loop (never inside the engine's call), as replication/readaround.c does.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "common/crc32c.h"
#include "engine/engine_internal.h"
#include "engine/logcheck.h"
#include "engine/segment.h"

#include "engine_fixture.h"

static void fini(void);
TestSuite(segment_remote, .init = setup, .fini = fini);

#define MAX_ASKED 64u


struct holder {
	uint64_t family, uid;
	uint32_t sno;
	uint8_t *copy;       /* the segment as the holders have it */
	unsigned reads, deletes; /* reads: fetches asked */
	unsigned blocks;         /* blocks they wanted */
	uint32_t bad_block;      /* a block whose copy is bad (0: none) */
	uint64_t deleted_uid;
	uint32_t deleted_sno;
	struct seg_fetch *q[MAX_ASKED];
	unsigned nq;
};

static struct holder hd;

static bool fake_wants(void *ctx, uint64_t uid)
{
	(void)ctx;
	return hd.family && uid == hd.family;
}

static void fake_deleted(void *ctx, uint32_t slot, uint64_t uid, uint32_t sno)
{
	(void)ctx;
	(void)slot;
	hd.deletes++;
	hd.deleted_uid = uid;
	hd.deleted_sno = sno;
}

static int fake_fetch(void *ctx, struct seg_fetch *f)
{
	(void)ctx;
	if (f->uid != hd.uid || f->sno != hd.sno || !hd.copy)
		return -ENOENT;
	cr_assert_lt(hd.nq, MAX_ASKED);
	cr_assert(f->remote, "a remote entry's read says so");
	hd.q[hd.nq++] = f;
	hd.reads++;
	for (uint32_t i = 0; i < f->nblocks; i++)
		hd.blocks += f->want[i].dst != NULL;
	return 0;
}

/* Appends the holder has not acknowledged yet (hd_hold): their writes stay in flight. */
static bool hd_hold;
static struct held_append {
	seg_cb cb;
	void *arg;
} hd_held[MAX_ASKED];
static unsigned hd_nheld;

static int fake_append(void *ctx, uint32_t slot, uint32_t block, const struct iovec *iov,
		       int iovcnt, uint32_t nblocks, bool fua, seg_cb cb, void *arg)
{
	if (!hd_hold)
		return mirror_local_append(ctx, slot, block, iov, iovcnt, nblocks, fua, cb, arg);
	cr_assert_lt(hd_nheld, MAX_ASKED);
	hd_held[hd_nheld++] = (struct held_append){ cb, arg };
	return 0;
}

static void hd_release(void)
{
	hd_hold = false;
	for (unsigned i = 0; i < hd_nheld; i++)
		hd_held[i].cb(hd_held[i].arg, 0);
	hd_nheld = 0;
}

/* New segments of the family are copied too: the holder takes the appends and keeps
 * only the dropped segment's bytes, which is all it is asked for. */
static const struct seg_mirror_ops fake_ops = {
	.wants = fake_wants, .opened = mirror_nop_opened, .append = fake_append,
	.flush = mirror_local_flush, .sealed = mirror_nop_sealed, .deleted = fake_deleted,
	.fetch = fake_fetch,
};

/* The holder answers what it was asked, as a fetch does: each wanted block that has
 * the CRC the reader expects lands in its place, the others are -EILSEQ (bad_block
 * reads as junk). */
static void holder_answer(void)
{
	uint8_t junk[BLK];

	memset(junk, 0x5a, sizeof(junk));
	while (hd.nq) {
		struct seg_fetch *f = hd.q[--hd.nq];
		int res = 0;

		for (uint32_t i = 0; i < f->nblocks; i++) {
			struct seg_fetch_block *w = &f->want[i];
			uint32_t block = f->block + i;
			const uint8_t *b = hd.bad_block && block == hd.bad_block
						   ? junk : hd.copy + (size_t)block * BLK;

			if (!w->dst)
				continue;
			/* (no_crcs: the cleaner's read of the whole segment, taken as it is) */
			w->res = f->no_crcs || crc32c(b, BLK) == w->crc ? 0 : -EILSEQ;
			if (w->res == 0)
				memcpy(w->dst, b, BLK);
			if (res == 0)
				res = w->res;
		}
		f->done(f, res);
	}
}

static int hread(struct engine_volume *vol, uint64_t lba, uint32_t n, void *buf)
{
	struct done d = { 0 };
	int r = engine_read(vol, lba, n, buf, on_done, &d);

	if (r < 0)
		return r;
	while (!d.done) {
		holder_answer();
		cr_assert_geq(engine_poll(eng, 10), 0);
	}
	return d.res;
}

static void hexpect(struct engine_volume *vol, uint64_t lba, uint32_t n, uint32_t tag)
{
	uint8_t *buf = seg_buf_alloc((size_t)n * BLK), *want = seg_buf_alloc((size_t)n * BLK);

	cr_assert_eq(hread(vol, lba, n, buf), 0);
	fill(want, lba, n, tag);
	for (uint32_t i = 0; i < n; i++)
		cr_assert_eq(memcmp(buf + (size_t)i * BLK, want + (size_t)i * BLK, BLK), 0,
			     "lba %llu", (unsigned long long)(lba + i));
	seg_buf_free(buf);
	seg_buf_free(want);
}

static void checkpoint(void)
{
	struct done d = { 0 };

	cr_assert_eq(engine_checkpoint_async(eng, on_done, &d), 0);
	while (!d.done) {
		holder_answer();
		cr_assert_geq(engine_poll(eng, 10), 0);
	}
	cr_assert_eq(d.res, 0);
}

static void fini(void)
{
	if (eng)
		seg_mirror_set(eng, NULL, NULL);
	free(hd.copy);
	memset(&hd, 0, sizeof(hd));
	hd_hold = false;
	hd_nheld = 0;
	teardown();
}

static struct engine_volume *vol;
static uint32_t dropped_slot; /* the store slot the segment was in */
static uint32_t in_segment;   /* how many of lba 0.. the dropped segment holds */

/* The hint the drop is given: none (a walk of every map), the segment's own
 * (logcheck_image_lbas of its image), or one that names no block (a walk after all). */
enum hint { HINT_NONE, HINT_OWN, HINT_EMPTY };

static int drop(enum hint hint)
{
	uint32_t used = eng->slots[dropped_slot].used;
	uint64_t *lba = calloc(used, sizeof(*lba));
	int r;

	cr_assert_not_null(lba);
	if (hint == HINT_OWN)
		logcheck_image_lbas(hd.copy, used, lba);
	else
		memset(lba, 0xff, used * sizeof(*lba)); /* UINT64_MAX: no data */
	r = engine_segment_drop_local_hinted(eng, hd.uid, hd.sno, hint == HINT_NONE ? NULL : lba,
					     used);
	free(lba);
	return r;
}

/* A volume's first 64 blocks written (tag 1), so that its first segments are sealed;
 * the first sealed one whose blocks the map names is dropped (its bytes kept by the
 * holder first), with the hint given. */
static void prepare_hinted(enum hint hint)
{
	struct map_loc loc;
	int r = -ENOENT;

	open_engine();
	seg_mirror_set(eng, &fake_ops, NULL);
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 64, 1);
	cr_assert_eq(eflush(), 0);
	cr_assert(eng_resolve(vol, 0, &loc));
	dropped_slot = loc.slot;
	cr_assert_eq(eng->slots[loc.slot].state, SLOT_SEALED, "lba 0's segment is sealed");
	for (in_segment = 0; in_segment < 64; in_segment++)
		if (!eng_resolve(vol, in_segment, &loc) || loc.slot != dropped_slot)
			break;
	cr_assert_gt(in_segment, 0);
	hd.family = hd.uid = eng->slots[dropped_slot].family_uid;
	hd.sno = eng->slots[dropped_slot].sno;
	hd.copy = seg_buf_alloc(SEG_SIZE);
	cr_assert_eq(seg_read_sync(eng, dropped_slot, 0, hd.copy, SEG_BLOCKS), 0);
	for (int tries = 0; tries < 100 && r == -EBUSY ? true : tries == 0; tries++) {
		r = drop(hint);
		if (r == -EBUSY)
			cr_assert_geq(engine_poll(eng, 10), 0);
	}
	cr_assert_eq(r, 0, "drop: %d", r);
}

static void prepare(void)
{
	prepare_hinted(HINT_NONE);
}

Test(segment_remote, reads_go_to_the_copies_once_the_local_copy_is_dropped)
{
	struct map_loc loc;

	prepare();
	cr_assert(eng_resolve(vol, 0, &loc));
	cr_assert_geq(loc.slot, eng->sb.segment_count, "the map names a remote entry");
	cr_assert(seg_is_remote(eng, loc.slot));
	cr_assert_eq(eng->slots[loc.slot].live, in_segment);
	cr_assert_eq(eng->slots[dropped_slot].live, 0, "nothing reads the store slot now");
	hexpect(vol, 0, 64, 1);
	cr_assert_eq(hd.blocks, in_segment, "every block of the segment from the copies");
	cr_assert_eq(stats().blocks_repaired, 0, "nothing is written back");
}

/* The drop with hint h: the map comes out the same whatever the hint; the walk of
 * every map is spared only by a hint that finds every entry naming the slot. */
static void expect_drop(enum hint h)
{
	struct map_loc loc;

	prepare_hinted(h);
	cr_assert_eq(stats().drop_walks, h == HINT_OWN ? 0 : 1);
	cr_assert(eng_resolve(vol, 0, &loc));
	cr_assert(seg_is_remote(eng, loc.slot));
	cr_assert_eq(eng->slots[loc.slot].live, in_segment);
	cr_assert_eq(eng->slots[dropped_slot].live, 0, "nothing reads the store slot now");
	hexpect(vol, 0, 64, 1);
	cr_assert_eq(hd.blocks, in_segment);
}

Test(segment_remote, the_segments_own_lbas_spare_the_walk_of_every_map)
{
	expect_drop(HINT_OWN);
}

Test(segment_remote, a_hint_that_finds_nothing_costs_the_walk)
{
	expect_drop(HINT_EMPTY);
}

Test(segment_remote, no_hint_walks_every_map)
{
	expect_drop(HINT_NONE);
}

/* A read of many blocks of one remote segment is one fetch (one peer request), not
 * one per block; so is a read with an unaligned buffer (no bounce: the blocks land
 * in the caller's buffer, wherever it is). */
Test(segment_remote, a_run_of_blocks_is_one_fetch)
{
	uint8_t *mem, *want;

	prepare();
	mem = seg_buf_alloc((size_t)(in_segment + 1) * BLK);
	want = seg_buf_alloc((size_t)in_segment * BLK);
	cr_assert_gt(in_segment, 1, "the segment holds a run");
	hexpect(vol, 0, in_segment, 1);
	cr_assert_eq(hd.reads, 1, "%u fetches for a run of %u blocks", hd.reads, in_segment);
	cr_assert_eq(hd.blocks, in_segment);
	cr_assert_eq(stats().fetches, 1);
	cr_assert_eq(stats().fetch_blocks, in_segment);
	cr_assert_eq(hread(vol, 0, in_segment, mem + 100), 0);
	cr_assert_eq(hd.reads, 2, "an unaligned buffer's run is one fetch too");
	fill(want, 0, in_segment, 1);
	cr_assert_eq(memcmp(mem + 100, want, (size_t)in_segment * BLK), 0);
	seg_buf_free(mem);
	seg_buf_free(want);
}

/* A block no copy has good fails the read (never junk), counted unrecoverable; the
 * other blocks of the run are served. */
Test(segment_remote, a_block_with_no_good_copy_fails_the_read)
{
	uint8_t *buf;
	struct map_loc loc;

	prepare();
	buf = seg_buf_alloc((size_t)in_segment * BLK);
	cr_assert(eng_resolve(vol, 1, &loc));
	hd.bad_block = loc.block;
	cr_assert_eq(hread(vol, 0, in_segment, buf), -EILSEQ);
	cr_assert_eq(stats().blocks_unrecoverable, 1);
	cr_assert_eq(hread(vol, 1, 1, buf), -EILSEQ);
	hd.bad_block = 0;
	hexpect(vol, 0, in_segment, 1);
	seg_buf_free(buf);
}

Test(segment_remote, a_checkpoint_frees_the_store_slot_and_leaves_the_copies)
{
	uint32_t free_before;

	prepare();
	free_before = eng->nfree;
	checkpoint();
	cr_assert_eq(eng->slots[dropped_slot].state, SLOT_FREE);
	cr_assert_eq(eng->nfree, free_before + 1);
	cr_assert_eq(hd.deletes, 0, "the copies are the segment now: not deleted");
	/* the store slot takes new data; the old blocks still read from the copies */
	write_tagged(vol, 64, 96, 2);
	cr_assert_eq(eflush(), 0);
	hexpect(vol, 0, 64, 1);
	hexpect(vol, 64, 96, 2);
}

/* A drop asks for no checkpoint of its own (an EC owner drops a segment as each is
 * encoded: one checkpoint each, a store flush and an SST, cost more than the encoding):
 * the store slot counts as empty, freed by the next checkpoint there is anyway. */
Test(segment_remote, a_drop_asks_for_no_checkpoint)
{
	prepare();
	cr_assert_not(eng->ckpt_wanted, "the drop asked for a checkpoint");
	cr_assert(eng_slot_frees_at_checkpoint(eng->slots, eng->sb.segment_count, dropped_slot),
		  "the store slot waits for a checkpoint, empty");
	for (int i = 0; i < 20; i++) {
		holder_answer();
		cr_assert_geq(engine_poll(eng, 1), 0);
	}
	cr_assert_eq(eng->slots[dropped_slot].state, SLOT_SEALED, "no checkpoint came");
}

/* ... and once space is wanted, the cleaner asks for the checkpoint that frees it. */
Test(segment_remote, a_dropped_store_slot_is_freed_once_space_is_wanted)
{
	struct done d = { 0 };
	uint32_t free_before;

	prepare();
	free_before = eng->nfree;
	cr_assert_eq(engine_gc_async(eng, eng->nfree + 1, on_done, &d), 0); /* `quill gc` */
	while (!d.done) {
		holder_answer();
		cr_assert_geq(engine_poll(eng, 10), 0);
	}
	cr_assert_eq(d.res, 1, "one slot freed: %d", d.res);
	cr_assert_eq(eng->slots[dropped_slot].state, SLOT_FREE);
	cr_assert_geq(eng->nfree, free_before + 1);
}

Test(segment_remote, a_restart_reads_the_copies_again)
{
	prepare();
	checkpoint();
	seg_mirror_set(eng, NULL, NULL);
	reopen_engine();
	seg_mirror_set(eng, &fake_ops, NULL);
	vol = open_vol("v");
	hd.blocks = 0;
	hexpect(vol, 0, 64, 1);
	cr_assert_eq(hd.blocks, in_segment, "the remote entry came back from the checkpoint");
}

/* A grow would turn the remote entry's number into a new store slot's: refused, and
 * the store opens as it was. */
Test(segment_remote, a_grow_is_refused_while_a_remote_entry_is_recorded)
{
	struct engine_opts o;

	prepare();
	checkpoint();
	seg_mirror_set(eng, NULL, NULL);
	engine_close(eng);
	eng = NULL;
	opts_for(&o, store_path, meta_path, false);
	o.store_size = STORE_SIZE + 8 * (uint64_t)SEG_SIZE;
	o.grow = true;
	cr_assert_eq(engine_open(&o, &eng), -EBUSY);
	eng = NULL;
	open_engine();
	seg_mirror_set(eng, &fake_ops, NULL);
	vol = open_vol("v");
	hd.blocks = 0;
	hexpect(vol, 0, 64, 1);
	cr_assert_eq(hd.blocks, in_segment, "the remote entry is still the segment");
}

Test(segment_remote, an_overwritten_remote_segment_is_deleted_with_its_copies)
{
	prepare();
	checkpoint();
	write_tagged(vol, 0, in_segment, 3); /* nothing of it is live any more */
	cr_assert_eq(eflush(), 0);
	checkpoint();
	checkpoint(); /* the first may have begun before the writes retired */
	cr_assert_eq(hd.deletes, 1, "the empty remote segment's copies go");
	cr_assert_eq(hd.deleted_uid, hd.uid);
	cr_assert_eq(hd.deleted_sno, hd.sno);
	hd.reads = 0;
	hexpect(vol, 0, in_segment, 3);
	cr_assert_eq(hd.reads, 0);
}

/* Drops the local copy of the sealed segment that holds lba (not the holder's: never
 * read here). */
static void drop_segment_of(uint64_t lba)
{
	struct map_loc loc;
	int r = -EBUSY;

	cr_assert(eng_resolve(vol, lba, &loc));
	cr_assert_lt(loc.slot, eng->sb.segment_count, "lba %llu is in a store slot",
		     (unsigned long long)lba);
	cr_assert_eq(eng->slots[loc.slot].state, SLOT_SEALED);
	for (int tries = 0; tries < 100 && r == -EBUSY; tries++) {
		r = engine_segment_drop_local(eng, eng->slots[loc.slot].family_uid,
					      eng->slots[loc.slot].sno);
		if (r == -EBUSY)
			cr_assert_geq(engine_poll(eng, 10), 0);
	}
	cr_assert_eq(r, 0, "drop: %d", r);
}

static void poll_for_remote_runs(unsigned ms)
{
	for (uint64_t t0 = eng_now_ms(); !stats().gc_remote_runs && eng_now_ms() - t0 < ms;) {
		holder_answer();
		cr_assert_geq(engine_poll(eng, 10), 0);
	}
}

/* Remote entries are cleaned for the cluster's space only while their dead blocks are
 * over ENG_GC_REMOTE_DEAD_PCT of theirs: the half-dead entry beside two whole ones
 * (~19% dead) is left; once one of those is overwritten whole (nothing live: the next
 * checkpoint frees it, it counts no more) the other two are ~28% dead and it is taken. */
Test(segment_remote, remote_entries_are_cleaned_only_when_enough_of_them_is_dead)
{
	uint64_t b_lba, c_lba;
	struct map_loc loc;

	prepare();
	checkpoint();
	b_lba = in_segment;
	write_tagged(vol, 64, 64, 1); /* more sealed segments */
	cr_assert_eq(eflush(), 0);
	drop_segment_of(b_lba);
	cr_assert(eng_resolve(vol, b_lba, &loc));
	for (c_lba = b_lba; eng_resolve(vol, c_lba, &loc) && seg_is_remote(eng, loc.slot);)
		c_lba++;
	drop_segment_of(c_lba);
	write_tagged(vol, 0, in_segment / 2, 3); /* the first entry half dead */
	cr_assert_eq(eflush(), 0);
	poll_for_remote_runs(1000);
	cr_assert_eq(stats().gc_remote_runs, 0, "a remote entry was cleaned though ~19%% of "
		     "the remote blocks are dead");
	cr_assert(eng_resolve(vol, b_lba, &loc));
	write_tagged(vol, b_lba, eng->slots[loc.slot].live, 4); /* the second one dead whole */
	cr_assert_eq(eflush(), 0);
	poll_for_remote_runs(10000);
	cr_assert_eq(stats().gc_remote_runs, 1, "the half-dead entry was not cleaned");
	hexpect(vol, 0, in_segment / 2, 3);
	hexpect(vol, in_segment / 2, in_segment - in_segment / 2, 1);
}

/* The cleaner picks a remote entry by the rules of a slot (half of it overwritten:
 * cleanable), fetches it whole (one fetch of every block, no CRCs: summaries have
 * none), moves its live blocks into the log; the checkpoint after frees it (the test
 * takes it; the periodic one would): the copies go, and every block reads back from
 * the local log. */
Test(segment_remote, a_partly_overwritten_remote_segment_is_cleaned)
{
	uint32_t half;
	unsigned reads;

	prepare();
	half = in_segment / 2;
	checkpoint();
	write_tagged(vol, 0, half, 3);
	cr_assert_eq(eflush(), 0);
	hd.reads = 0;
	/* (bounded by time: a remote victim is looked for every ENG_GC_REMOTE_GAP_MS) */
	for (uint64_t t0 = eng_now_ms(); !stats().gc_remote_runs && eng_now_ms() - t0 < 10000;) {
		holder_answer();
		cr_assert_geq(engine_poll(eng, 10), 0);
	}
	cr_assert_eq(stats().gc_remote_runs, 1, "the cleaner took the remote entry");
	cr_assert_eq(hd.reads, 1, "the whole segment in one fetch");
	cr_assert_eq(stats().gc_remote_blocks, eng->slots[eng->gc_victim].used);
	cr_assert_eq(eflush(), 0);
	checkpoint();
	checkpoint(); /* the first may have begun before the moves retired */
	cr_assert_eq(hd.deletes, 1, "the cleaned remote segment's copies go");
	cr_assert_eq(hd.deleted_sno, hd.sno);
	reads = hd.reads;
	hexpect(vol, 0, half, 3);
	hexpect(vol, half, in_segment - half, 1);
	cr_assert_eq(hd.reads, reads, "every block is in the local log again");
}

/* Polls (the holder answering) until the cleaner took `runs` remote victims, or ms. */
static void remote_runs_wait(uint64_t runs, uint64_t ms)
{
	for (uint64_t t0 = eng_now_ms(); stats().gc_remote_runs < runs && eng_now_ms() - t0 < ms;) {
		holder_answer();
		cr_assert_geq(engine_poll(eng, 10), 0);
	}
}

/* A remote victim whose live blocks are all being written over when the cleaner walks
 * it (a sequential writer sweeping it: bench.sh --cluster) has nothing to move: that
 * is no count disagreeing with its log, and it is not left as is for good. While
 * those writes stay in flight (their holder has not acknowledged them) the cleaner
 * takes it again; once they retire it holds nothing live and its copies go. */
Test(segment_remote, a_remote_victim_being_written_over_is_not_given_up)
{
	uint32_t half, rest;
	uint8_t *buf;
	struct done d = { 0 };

	prepare();
	half = in_segment / 2;
	rest = in_segment - half;
	checkpoint();
	write_tagged(vol, 0, half, 3);
	cr_assert_eq(eflush(), 0);
	/* the rest of its blocks written over, held in flight */
	buf = seg_buf_alloc((size_t)rest * BLK);
	fill(buf, half, rest, 4);
	hd_hold = true;
	cr_assert_eq(engine_write(vol, half, rest, buf, 0, on_done, &d), 0);
	remote_runs_wait(1, 10000);
	cr_assert_eq(stats().gc_remote_runs, 1, "the cleaner took the remote entry");
	cr_assert(!d.done, "the writes over it are still in flight");
	cr_assert_gt(eng->slots[eng->gc_victim].live, 0);
	remote_runs_wait(2, 5000);
	cr_assert_eq(stats().gc_remote_runs, 2, "the cleaner takes it again (not left as is)");
	hd_release();
	while (!d.done)
		cr_assert_geq(engine_poll(eng, 10), 0);
	cr_assert_eq(d.res, 0);
	seg_buf_free(buf);
	cr_assert_eq(eflush(), 0);
	checkpoint();
	checkpoint(); /* the first may have begun before the writes retired */
	cr_assert_eq(hd.deletes, 1, "the remote segment's copies go");
	cr_assert_eq(hd.deleted_sno, hd.sno);
	hexpect(vol, 0, half, 3);
	hexpect(vol, half, rest, 4);
}

Test(segment_remote, without_copies_to_read_nothing_is_dropped)
{
	struct map_loc loc;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 64, 1);
	cr_assert_eq(eflush(), 0);
	cr_assert(eng_resolve(vol, 0, &loc));
	cr_assert_eq(engine_segment_drop_local(eng, eng->slots[loc.slot].family_uid,
					       eng->slots[loc.slot].sno),
		     -EOPNOTSUPP);
	expect_tagged(vol, 0, 64, 1);
}

/* The child: a segment dropped, then killed before any checkpoint (no engine_close). */
static int drop_and_crash(void)
{
	struct map_loc loc;
	int r = -EBUSY;

	CHILD_CHECK(try_open(true) == 0);
	seg_mirror_set(eng, &fake_ops, NULL);
	CHILD_CHECK(engine_volume_create(eng, "v", VOL_SIZE) == 0);
	CHILD_CHECK(engine_volume_open(eng, "v", &vol) == 0);
	write_tagged(vol, 0, 64, 1);
	write_tagged(vol, 64, 96, 2); /* the log went on: lba 0's segment is sealed */
	CHILD_CHECK(eflush() == 0);
	CHILD_CHECK(eng_resolve(vol, 0, &loc));
	hd.family = eng->slots[loc.slot].family_uid;
	for (int tries = 0; tries < 100 && r == -EBUSY; tries++) {
		r = engine_segment_drop_local(eng, hd.family, eng->slots[loc.slot].sno);
		if (r == -EBUSY)
			CHILD_CHECK(engine_poll(eng, 10) >= 0);
	}
	CHILD_CHECK(r == 0);
	CHILD_CHECK(eng_resolve(vol, 0, &loc) && seg_is_remote(eng, loc.slot));
	/* killed now: no poll after the drop (a poll could start a checkpoint, the
	 * periodic one, and it could land before the end: the test would see the entry) */
	return 0;
}

/* A crash between the drop and the checkpoint that records it: the last checkpoint's
 * maps (none here: the log replayed) name the store slot, which still holds the
 * segment: it is not freed before then, and no copy is needed. */
Test(segment_remote, a_crash_before_the_checkpoint_keeps_the_local_copy)
{
	struct map_loc loc;

	in_child(drop_and_crash);
	open_engine(); /* no mirror: nothing could be read elsewhere */
	vol = open_vol("v");
	cr_assert(eng_resolve(vol, 0, &loc));
	cr_assert_lt(loc.slot, eng->sb.segment_count, "the map names the store slot again");
	expect_tagged(vol, 0, 64, 1);
	expect_tagged(vol, 64, 96, 2);
}
