/* tests/unit/engine/test_adopt.c — a family adopted from held copies (engine/adopt.c):
 * two engines on two stores in one process. Engine 1 writes a volume with a snapshot,
 * overwrites and trims over several segments, some cleaned by its cleaner; every live
 * segment of the family is copied into held copies on engine 2 (held open, write,
 * seal with the bytes of engine 1's slots) and adopted there. Every block of the
 * volume and the snapshot then reads as on engine 1, after a reopen too and after a
 * rebuild of the metadata from the log; new writes take segment numbers past the
 * adopted ones. A colliding layer id or volume name is refused with nothing changed.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "engine/engine_internal.h"
#include "engine/logcheck.h"
#include "engine_fixture.h"
#include "testutil.h"

#define SRC_SEGS 64u
#define MAX_COPIES 64u

/* engine 1's family: its segments' bytes and what its layers read */
struct family {
	uint64_t uid;
	size_t n;
	uint32_t sno[MAX_COPIES], len[MAX_COPIES];
	uint8_t *seg[MAX_COPIES];
	uint8_t *vol, *snap; /* VOL_BLOCKS blocks each */
	uint8_t *snap2;      /* v@s2's, if there is one */
	uint64_t ids[8];     /* its layer ids */
	size_t nids;
	uint64_t alias_from[8], alias_to[8]; /* merged snapshots -> the layer they lead to */
	size_t naliases;
};

/* Reads of remote entries (segments adopted with no copy here) are fetches: the
 * test answers them from engine 1's bytes (far_answer), from its loop, never inside
 * the engine's call. */
#define MAX_FETCHES 64u

static struct {
	const struct family *f;
	struct seg_fetch *q[MAX_FETCHES];
	unsigned nq, asked;
} far;

static bool far_wants(void *ctx, uint64_t uid)
{
	(void)ctx;
	return far.f && uid == far.f->uid;
}

static void far_deleted(void *ctx, uint32_t slot, uint64_t uid, uint32_t sno)
{
	(void)ctx;
	(void)slot;
	(void)uid;
	(void)sno;
}

static int far_fetch(void *ctx, struct seg_fetch *f)
{
	(void)ctx;
	cr_assert_lt(far.nq, MAX_FETCHES);
	far.q[far.nq++] = f;
	far.asked++;
	return 0;
}

static const struct seg_mirror_ops far_ops = {
	.wants = far_wants, .opened = mirror_nop_opened, .append = mirror_local_append,
	.flush = mirror_local_flush, .sealed = mirror_nop_sealed, .deleted = far_deleted,
	.fetch = far_fetch,
};

static const uint8_t *far_segment(uint32_t sno)
{
	for (size_t i = 0; i < far.f->n; i++)
		if (far.f->sno[i] == sno)
			return far.f->seg[i];
	return NULL;
}

/* Each fetch asked: its wanted blocks from engine 1's bytes, checked as a mirror does. */
static void far_answer(void)
{
	while (far.nq) {
		struct seg_fetch *f = far.q[--far.nq];
		const uint8_t *seg = far_segment(f->sno);
		int res = 0;

		for (uint32_t i = 0; i < f->nblocks; i++) {
			struct seg_fetch_block *w = &f->want[i];
			const uint8_t *b = seg ? seg + (size_t)(f->block + i) * BLK : NULL;

			if (!w->dst)
				continue;
			w->res = b && crc32c(b, BLK) == w->crc ? 0 : -EILSEQ;
			if (w->res == 0)
				memcpy(w->dst, b, BLK);
			if (res == 0)
				res = w->res;
		}
		f->done(f, res);
	}
}

static void read_all(struct engine_volume *v, uint8_t *out)
{
	struct done d = { 0 };

	cr_assert_eq(engine_read(v, 0, VOL_BLOCKS, out, on_done, &d), 0);
	while (!d.done) {
		far_answer(); /* (none asked but by a remote entry's read) */
		cr_assert_geq(engine_poll(eng, 10), 0);
	}
	cr_assert_eq(d.res, 0, "the layer reads");
}

/* Every writer's start: "v" written, snapshot s1, overwrites and a trim. */
static struct engine_volume *src_begin(void)
{
	struct engine_volume *vol = create_and_open("v", VOL_SIZE);

	write_tagged(vol, 0, 64, 1);
	cr_assert_eq(engine_snap_create(eng, "v", "s1"), 0);
	write_tagged(vol, 0, 32, 2);
	cr_assert_eq(vtrim(vol, 40, 8), 0);
	return vol;
}

/* Engine 1's volume "v": a snapshot, overwrites, trims, the cleaner. */
static void src_write(void)
{
	struct engine_volume *vol = src_begin();
	struct engine_stats st;

	write_tagged(vol, 100, 60, 3);
	write_tagged(vol, 100, 60, 4);
	write_tagged(vol, 200, 40, 5);
	write_tagged(vol, 200, 30, 6);
	cr_assert_eq(vtrim(vol, 235, 3), 0);
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(engine_checkpoint(eng), 0);
	cr_assert_geq(engine_gc(eng, SRC_SEGS - 4), 0);
	cr_assert_eq(engine_checkpoint(eng), 0);
	engine_get_stats(eng, &st);
	cr_assert_gt(st.gc_blocks_moved, 0, "the cleaner moved blocks of the family");
	write_tagged(vol, 300, 8, 7);
	cr_assert_eq(vtrim(vol, 302, 2), 0);
	write_tagged(vol, 400, 4 * SEG_BLOCKS, 8); /* more copies than an adoption reads at once */
	cr_assert_eq(eflush(), 0);
	engine_volume_close(vol);
}

/* Runs engine 1 on its own store (writer writes), then copies out what engine 2
 * needs. */
static void src_family_with(struct family *f, void (*writer)(void))
{
	char store1[PATH_MAX + 16], meta1[PATH_MAX + 16];
	struct engine *mine = eng;
	struct engine_volume *v;
	struct engine_opts o;

	memset(f, 0, sizeof(*f));
	snprintf(store1, sizeof(store1), "%s/src.img", dir);
	snprintf(meta1, sizeof(meta1), "%s/src-meta", dir);
	opts_for(&o, store1, meta1, true);
	o.store_size = QUILL_DATA_OFFSET + (uint64_t)SRC_SEGS * SEG_SIZE;
	o.family_records = true;
	eng = NULL;
	cr_assert_eq(engine_open(&o, &eng), 0);
	writer();
	cr_assert_eq(engine_volume_family(eng, "v", &f->uid), 0);
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->rec.uid == f->uid)
			f->ids[f->nids++] = eng->vols[i]->rec.volume_id;
	for (size_t i = 0; i < eng->naliases; i++) {
		struct engine_volume *to = eng_layer_for_owner(eng, eng->aliases[i].from);

		cr_assert_not_null(to, "alias of %llu leads nowhere on engine 1",
				   (unsigned long long)eng->aliases[i].from);
		cr_assert_lt(f->naliases, 8);
		f->alias_from[f->naliases] = eng->aliases[i].from;
		f->alias_to[f->naliases++] = to->rec.volume_id;
	}
	for (uint32_t i = 0; i < eng->sb.segment_count; i++) {
		struct slot *s = &eng->slots[i];

		if (s->state == SLOT_FREE || s->held || s->family_uid != f->uid)
			continue;
		cr_assert_lt(f->n, MAX_COPIES);
		f->sno[f->n] = s->sno;
		f->len[f->n] = s->used;
		f->seg[f->n] = seg_buf_alloc((size_t)s->used * BLK);
		cr_assert_eq(seg_read_sync(eng, i, 0, f->seg[f->n], s->used), 0);
		f->n++;
	}
	cr_assert_geq(f->n, 3, "several segments (%zu)", f->n);
	f->vol = malloc((size_t)VOL_BLOCKS * BLK);
	f->snap = malloc((size_t)VOL_BLOCKS * BLK);
	cr_assert(f->vol && f->snap);
	v = open_vol("v");
	read_all(v, f->vol);
	engine_volume_close(v);
	if (eng_layer_by_spec(eng, "v@s1")) {
		v = open_vol("v@s1");
		read_all(v, f->snap);
		engine_volume_close(v);
	} else { /* merged away */
		free(f->snap);
		f->snap = NULL;
	}
	if (eng_layer_by_spec(eng, "v@s2")) {
		f->snap2 = malloc((size_t)VOL_BLOCKS * BLK);
		cr_assert_not_null(f->snap2);
		v = open_vol("v@s2");
		read_all(v, f->snap2);
		engine_volume_close(v);
	}
	engine_close(eng);
	eng = mine;
}

static void src_family(struct family *f)
{
	src_family_with(f, src_write);
}

static void family_free(struct family *f)
{
	for (size_t i = 0; i < f->n; i++)
		seg_buf_free(f->seg[i]);
	free(f->vol);
	free(f->snap);
	free(f->snap2);
}

static int sync_call(int r, struct done *d)
{
	return finish(r, d);
}

/* Engine 2 holds every copy, sealed. */
static void hold_copies(const struct family *f)
{
	for (size_t i = 0; i < f->n; i++) {
		struct iovec iov = { f->seg[i], (size_t)f->len[i] * BLK };
		struct done d1 = { 0 }, d2 = { 0 }, d3 = { 0 };

		cr_assert_eq(sync_call(engine_held_open_async(eng, f->uid, f->sno[i], 1, on_done,
							      &d1), &d1), 0);
		cr_assert_eq(sync_call(engine_held_write(eng, f->uid, f->sno[i], 0, &iov, 1,
							 f->len[i], on_done, &d2), &d2), 0);
		cr_assert_eq(sync_call(engine_held_seal_async(eng, f->uid, f->sno[i], f->len[i],
							      on_done, &d3), &d3), 0);
	}
}

static void expect_layer(const char *name, const uint8_t *want)
{
	struct engine_volume *v = open_vol(name);
	uint8_t *got = malloc((size_t)VOL_BLOCKS * BLK);

	cr_assert_not_null(got);
	read_all(v, got);
	for (uint32_t b = 0; b < VOL_BLOCKS; b++)
		cr_assert_eq(memcmp(got + (size_t)b * BLK, want + (size_t)b * BLK, BLK), 0,
			     "%s: lba %u differs from engine 1's", name, b);
	engine_volume_close(v);
	free(got);
}

static void expect_family(const struct family *f)
{
	uint64_t uid = 0;

	expect_layer("v", f->vol);
	if (f->snap)
		expect_layer("v@s1", f->snap);
	if (f->snap2)
		expect_layer("v@s2", f->snap2);
	cr_assert_eq(engine_volume_family(eng, "v", &uid), 0);
	cr_assert_eq(uid, f->uid);
}

static uint32_t max_sno(const struct family *f)
{
	uint32_t m = 0;

	for (size_t i = 0; i < f->n; i++)
		if (f->sno[i] > m)
			m = f->sno[i];
	return m;
}

/* An own volume of engine 2, written before the adoption: it must not change. */
static void own_volume(void)
{
	struct engine_volume *v = create_and_open("mine", VOL_SIZE);

	write_tagged(v, 0, 20, 50);
	engine_volume_close(v);
}

static void expect_own_volume(void)
{
	struct engine_volume *v = open_vol("mine");

	expect_tagged(v, 0, 20, 50);
	engine_volume_close(v);
}

TestSuite(adopt, .init = setup, .fini = teardown);

Test(adopt, every_block_reads_as_on_the_old_owner_and_stays_so)
{
	struct family f;
	struct engine_volume *v;
	uint32_t top = 0;

	src_family(&f);
	/* read ENG_ADOPT_READS at a time: every read's copies are walked */
	cr_assert_gt(f.n, ENG_ADOPT_READS, "more copies (%zu) than one read takes", f.n);
	open_engine();
	own_volume();
	hold_copies(&f);
	cr_assert_eq(stats().segments_held, f.n);
	cr_assert_eq(engine_family_adopt(eng, f.uid, f.sno, f.n), 0);
	cr_assert_eq(stats().segments_held, 0, "the copies are the family's log now");
	expect_family(&f);
	expect_own_volume();
	cr_assert_gt(eng->next_volume_id, f.ids[0]);

	reopen_engine();
	expect_family(&f);
	expect_own_volume();

	/* new writes: segments numbered past every adopted one */
	v = open_vol("v");
	write_tagged(v, 600, 80, 9);
	fill(f.vol + (size_t)600 * BLK, 600, 80, 9);
	for (uint32_t i = 0; i < eng->sb.segment_count; i++)
		if (eng->slots[i].state != SLOT_FREE && eng->slots[i].family_uid == f.uid &&
		    eng->slots[i].sno > top)
			top = eng->slots[i].sno;
	cr_assert_gt(top, max_sno(&f), "a new segment takes a number past the adopted ones");
	engine_volume_close(v);
	cr_assert_eq(eflush(), 0);
	reopen_engine();
	expect_family(&f);
	/* the store alone says the same: the copies' headers are this store's now */
	rebuild_engine();
	expect_family(&f);
	expect_own_volume();
	family_free(&f);
}

Test(adopt, a_colliding_layer_id_or_name_is_refused_and_nothing_changes)
{
	struct family f;
	struct engine_held_info hi;

	src_family(&f);
	open_engine();
	/* a volume named like the family's */
	cr_assert_eq(engine_volume_create(eng, "v", VOL_SIZE), 0);
	hold_copies(&f);
	cr_assert_eq(engine_family_adopt(eng, f.uid, f.sno, f.n), -EEXIST);
	cr_assert_eq(engine_volume_delete(eng, "v"), 0);
	/* a layer with one of the family's ids */
	eng->next_volume_id = f.ids[0];
	cr_assert_eq(engine_volume_create(eng, "other", VOL_SIZE), 0);
	cr_assert_eq(engine_family_adopt(eng, f.uid, f.sno, f.n), -EEXIST);
	/* nothing changed: the copies are held, sealed, byte for byte */
	cr_assert_eq(stats().segments_held, f.n);
	for (size_t i = 0; i < f.n; i++) {
		uint8_t *got = seg_buf_alloc((size_t)f.len[i] * BLK);
		struct iovec iov = { got, (size_t)f.len[i] * BLK };
		struct done d = { 0 };

		cr_assert_eq(engine_held_stat(eng, f.uid, f.sno[i], &hi), 0);
		cr_assert(hi.sealed);
		cr_assert_eq(hi.length, f.len[i]);
		cr_assert_eq(sync_call(engine_held_read(eng, f.uid, f.sno[i], 0, &iov, 1,
							f.len[i], on_done, &d), &d), 0);
		cr_assert_eq(memcmp(got, f.seg[i], (size_t)f.len[i] * BLK), 0);
		seg_buf_free(got);
	}
	cr_assert_eq(engine_volume_family(eng, "v", &(uint64_t){ 0 }), -ENOENT);
	family_free(&f);
}

Test(adopt, a_copy_not_held_or_not_sealed_is_refused)
{
	struct family f;
	struct done d = { 0 };

	src_family(&f);
	open_engine();
	hold_copies(&f);
	cr_assert_eq(engine_family_adopt(eng, f.uid, (uint32_t[]){ max_sno(&f) + 5 }, 1),
		     -ENOENT);
	cr_assert_eq(sync_call(engine_held_open_async(eng, f.uid, max_sno(&f) + 1, 1, on_done,
						      &d), &d), 0);
	cr_assert_eq(engine_family_adopt(eng, f.uid, (uint32_t[]){ max_sno(&f) + 1 }, 1),
		     -EBUSY);
	cr_assert_eq(engine_family_adopt(eng, 0, f.sno, f.n), -EINVAL);
	cr_assert_eq(stats().segments_held, f.n + 1);
	family_free(&f);
}

/* The copies are read ENG_ADOPT_READS at a time: a copy with a wrong header in a
 * later read refuses the adoption as one in the first would, with every copy still
 * held and nothing of the family here. */
Test(adopt, a_wrong_copy_past_the_first_reads_is_refused)
{
	struct family f;
	struct segment_header h;
	size_t last;

	src_family(&f);
	cr_assert_gt(f.n, ENG_ADOPT_READS, "more copies (%zu) than one read takes", f.n);
	last = f.n - 1;
	open_engine();
	cr_assert_eq(ondisk_segment_header_decode(f.seg[last], BLK, &h), 0);
	h.sno++; /* the bytes of another segment */
	ondisk_segment_header_encode(&h, f.seg[last]);
	hold_copies(&f);
	cr_assert_eq(engine_family_adopt(eng, f.uid, f.sno, f.n), -EILSEQ);
	cr_assert_eq(stats().segments_held, f.n, "every copy is held as before");
	cr_assert_eq(engine_volume_family(eng, "v", &(uint64_t){ 0 }), -ENOENT);
	family_free(&f);
}

/* ---- a crash in the middle: the held copies, or the family, never neither ---- */

enum crash_at { CRASH_HEADERS, CRASH_COMMITTED };
static enum crash_at crash_at;

/* What the parent needs of the family, across the fork. */
static void family_save(const struct family *f)
{
	char p[PATH_MAX + 16];
	FILE *fp;

	snprintf(p, sizeof(p), "%s/family.bin", dir);
	fp = fopen(p, "w");
	cr_assert_not_null(fp);
	cr_assert_eq(fwrite(f, sizeof(*f), 1, fp), 1);
	cr_assert_eq(fwrite(f->vol, BLK, VOL_BLOCKS, fp), VOL_BLOCKS);
	cr_assert_eq(fwrite(f->snap, BLK, VOL_BLOCKS, fp), VOL_BLOCKS);
	fclose(fp);
}

static void family_load(struct family *f)
{
	char p[PATH_MAX + 16];
	FILE *fp;

	snprintf(p, sizeof(p), "%s/family.bin", dir);
	fp = fopen(p, "r");
	cr_assert_not_null(fp);
	cr_assert_eq(fread(f, sizeof(*f), 1, fp), 1);
	f->vol = malloc((size_t)VOL_BLOCKS * BLK);
	f->snap = malloc((size_t)VOL_BLOCKS * BLK);
	cr_assert(f->vol && f->snap);
	cr_assert_eq(fread(f->vol, BLK, VOL_BLOCKS, fp), VOL_BLOCKS);
	cr_assert_eq(fread(f->snap, BLK, VOL_BLOCKS, fp), VOL_BLOCKS);
	fclose(fp);
	memset(f->seg, 0, sizeof(f->seg)); /* the parent has none of the bytes */
}

/* Has copy i's slot this store's header on disk yet? */
static bool header_rewritten(const struct family *f, uint32_t slot)
{
	uint8_t *b = seg_buf_alloc(BLK);
	struct segment_header h;
	bool ours;

	(void)f;
	ours = b && seg_read_sync(eng, slot, 0, b, 1) == 0 &&
	       ondisk_segment_header_decode(b, BLK, &h) == 0 &&
	       memcmp(h.uuid, eng->sb.uuid, sizeof(h.uuid)) == 0;
	seg_buf_free(b);
	return ours;
}

/* The child: engine 1's family held on engine 2, an adoption that stops at the crash
 * point: the process ends without closing the engine. */
static int adopt_and_crash(void)
{
	struct family f;
	struct engine_held_info hi;
	struct done d = { 0 };
	uint32_t slot;

	src_family(&f);
	family_save(&f);
	open_engine();
	hold_copies(&f);
	CHILD_CHECK(engine_held_stat(eng, f.uid, f.sno[f.n - 1], &hi) == 0);
	slot = hi.slot;
	CHILD_CHECK(engine_family_adopt_async(eng, f.uid, f.sno, f.n, on_done, &d) == 0);
	for (;;) {
		CHILD_CHECK(!d.done); /* the crash point comes before the answer */
		CHILD_CHECK(engine_poll(eng, 1) >= 0);
		if (crash_at == CRASH_HEADERS && header_rewritten(&f, slot))
			break; /* headers written, nothing committed */
		if (crash_at == CRASH_COMMITTED &&
		    engine_held_stat(eng, f.uid, f.sno[0], &hi) == -ENOENT)
			break; /* committed, no checkpoint yet */
	}
	return 0;
}

static void crash_then_check(enum crash_at at)
{
	struct family f;

	crash_at = at;
	in_child(adopt_and_crash);
	family_load(&f);
	cr_assert_eq(try_open(false), 0);
	if (at == CRASH_HEADERS) {
		cr_assert_eq(stats().segments_held, f.n, "the copies are still held");
		cr_assert_eq(engine_volume_family(eng, "v", &(uint64_t){ 0 }), -ENOENT);
		cr_assert_eq(engine_family_adopt(eng, f.uid, f.sno, f.n), 0, "adopted again");
	} else {
		cr_assert_eq(stats().segments_held, 0, "the family is adopted");
	}
	expect_family(&f);
	reopen_engine();
	expect_family(&f);
	family_free(&f);
}

Test(adopt, a_crash_after_the_headers_leaves_the_held_copies)
{
	crash_then_check(CRASH_HEADERS);
}

Test(adopt, a_crash_after_the_commit_leaves_the_family)
{
	crash_then_check(CRASH_COMMITTED);
}

/* ---- release, and adopt again ---- */

static int release(uint64_t uid, const uint32_t *keep, size_t n)
{
	return engine_family_release(eng, uid, keep, n);
}

Test(adopt, released_then_adopted_again_reads_the_same)
{
	struct family f;
	struct engine_volume *v;
	uint32_t snos[NSEGS];
	size_t n = 0;

	src_family(&f);
	open_engine();
	own_volume();
	hold_copies(&f);
	cr_assert_eq(engine_family_adopt(eng, f.uid, f.sno, f.n), 0);
	v = open_vol("v"); /* a write of its own: an open segment, sealed by the release */
	write_tagged(v, 700, 10, 11);
	fill(f.vol + (size_t)700 * BLK, 700, 10, 11);
	cr_assert_eq(release(f.uid, NULL, 0), -EBUSY, "the volume is open");
	engine_volume_close(v);
	for (uint32_t i = 0; i < eng->sb.segment_count; i++)
		if (eng->slots[i].state != SLOT_FREE && eng->slots[i].family_uid == f.uid)
			snos[n++] = eng->slots[i].sno;
	cr_assert_eq(release(f.uid, snos, n), 0);
	cr_assert_eq(stats().segments_held, n, "every segment is a held copy");
	cr_assert_eq(engine_volume_family(eng, "v", &(uint64_t){ 0 }), -ENOENT);
	cr_assert_eq(release(f.uid, snos, n), -ENOENT, "released already");
	expect_own_volume();
	reopen_engine();
	cr_assert_eq(stats().segments_held, n);
	cr_assert_eq(engine_volume_family(eng, "v", &(uint64_t){ 0 }), -ENOENT);
	cr_assert_eq(engine_family_adopt(eng, f.uid, snos, n), 0);
	expect_family(&f);
	expect_own_volume();
	family_free(&f);
}

/* A clone made here is a family of its own reading through a snapshot of the one
 * released: the release is refused and changes nothing (the clone's parent would
 * dangle: quilld crashed on the next use of it), and goes once the clone is gone. */
Test(adopt, a_release_under_a_local_clone_of_another_family_is_refused)
{
	struct family f;
	struct engine_volume *c;
	char names[64];
	uint64_t cuid;

	src_family(&f);
	open_engine();
	hold_copies(&f);
	cr_assert_eq(engine_family_adopt(eng, f.uid, f.sno, f.n), 0);
	cr_assert_eq(engine_clone(eng, "v@s1", "c"), 0);
	cr_assert_eq(engine_volume_family(eng, "c", &cuid), 0);
	cr_assert_neq(cuid, f.uid, "a clone is a family of its own");
	cr_assert_eq(engine_family_clones(eng, f.uid, names, sizeof(names)), 1);
	cr_assert_str_eq(names, "c (of v@s1)");
	cr_assert_eq(engine_family_clones(eng, cuid, names, sizeof(names)), 0);
	cr_assert_eq(release(f.uid, f.sno, f.n), -EMLINK);
	cr_assert_eq(stats().segments_held, 0, "nothing released");
	expect_family(&f);
	c = open_vol("c");
	cr_assert_eq(vread(c, 0, 1, &(uint8_t[BLK]){ 0 }), 0, "the clone still reads");
	engine_volume_close(c);
	cr_assert_eq(engine_volume_delete(eng, "c"), 0);
	cr_assert_eq(release(f.uid, f.sno, f.n), 0);
	cr_assert_eq(stats().segments_held, f.n);
	family_free(&f);
}

Test(adopt, a_release_frees_the_segments_it_does_not_keep)
{
	struct family f;
	uint32_t free0;

	src_family(&f);
	open_engine();
	free0 = stats().segments_free;
	hold_copies(&f);
	cr_assert_eq(engine_family_adopt(eng, f.uid, f.sno, f.n), 0);
	cr_assert_eq(release(f.uid, f.sno, 1), 0);
	cr_assert_eq(stats().segments_held, 1);
	cr_assert_eq(stats().segments_free, free0 - 1, "the others are free again");
	reopen_engine();
	cr_assert_eq(stats().segments_held, 1);
	cr_assert_eq(stats().segments_free, free0 - 1);
	family_free(&f);
}

/* A family released here and taken over again by this same engine, without a restart
 * in between (a node that lost a volume and claims it back): its old blocks still read,
 * and new writes do not land in the slots its copies occupy. */
Test(adopt, released_then_adopted_again_without_a_restart_takes_writes)
{
	struct family f;
	struct engine_volume *v;
	uint32_t snos[NSEGS + 8];
	size_t n = 0;

	src_family(&f);
	open_engine();
	hold_copies(&f);
	cr_assert_eq(engine_family_adopt(eng, f.uid, f.sno, f.n), 0);
	for (uint32_t i = 0; i < eng->sb.segment_count; i++)
		if (eng->slots[i].state != SLOT_FREE && eng->slots[i].family_uid == f.uid)
			snos[n++] = eng->slots[i].sno;
	cr_assert_eq(release(f.uid, snos, n), 0);
	cr_assert_eq(engine_family_adopt(eng, f.uid, snos, n), 0);
	v = open_vol("v");
	for (uint32_t b = 0; b < 4; b++) /* enough for new segments */
		write_tagged(v, 700 + b * 40, 40, 21 + b);
	engine_volume_close(v);
	for (uint32_t b = 0; b < 4; b++)
		fill(f.vol + (size_t)(700 + b * 40) * BLK, 700 + b * 40, 40, 21 + b);
	expect_family(&f);
	family_free(&f);
}

/* ---- the family table (engine/segment.h: seg_family_get, seg_families_check) ---- */

/* Family uid's own-log slots by a walk of the slot table: what nlog must say. */
static uint32_t own_slots_walked(uint64_t uid)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < eng->sb.segment_count; i++)
		n += eng->slots[i].state != SLOT_FREE && !eng->slots[i].held &&
		     eng->slots[i].family_uid == uid;
	return n;
}

static uint32_t layers_walked(uint64_t uid)
{
	uint32_t n = 0;

	for (size_t i = 0; i < eng->nvols; i++)
		n += eng->vols[i]->rec.uid == uid;
	return n;
}

/* The table's answer for uid agrees with a walk of the layers and the slots. */
static void expect_indexed(uint64_t uid, bool here)
{
	const struct seg_family *sf = seg_family_get(eng, uid);

	cr_assert_eq(engine_family_here(eng, uid), here);
	cr_assert_eq(layers_walked(uid) > 0, here);
	cr_assert_not_null(sf, "family %llx has no entry", (unsigned long long)uid);
	cr_assert_eq(sf->nlayers, layers_walked(uid));
	cr_assert_eq(sf->nlog, own_slots_walked(uid));
	cr_assert_eq(seg_families_check(eng), 0);
}

Test(adopt, the_family_table_follows_hold_adopt_write_release_and_restart)
{
	struct family f;
	struct engine_volume *v;
	uint32_t snos[NSEGS];
	size_t n = 0;

	src_family(&f);
	open_engine();
	hold_copies(&f);
	cr_assert_null(seg_family_get(eng, f.uid), "held copies are not a family here");
	cr_assert_not(engine_family_here(eng, f.uid));
	cr_assert_eq(engine_family_adopt(eng, f.uid, f.sno, f.n), 0);
	expect_indexed(f.uid, true);
	cr_assert_eq(seg_family_get(eng, f.uid)->nlog, f.n, "every copy is its log now");
	v = open_vol("v");
	write_tagged(v, 700, 10, 11); /* a segment of its own */
	engine_volume_close(v);
	expect_indexed(f.uid, true);
	cr_assert_eq(seg_family_get(eng, f.uid)->nlog, f.n + 1);
	for (uint32_t i = 0; i < eng->sb.segment_count; i++)
		if (eng->slots[i].state != SLOT_FREE && eng->slots[i].family_uid == f.uid)
			snos[n++] = eng->slots[i].sno;
	cr_assert_eq(release(f.uid, snos, n - 1), 0); /* one is freed, the rest held */
	expect_indexed(f.uid, false);
	cr_assert_eq(eng_family_layer(eng, f.uid), NULL);
	reopen_engine();
	expect_indexed(f.uid, false);
	cr_assert_eq(engine_family_adopt(eng, f.uid, snos, n - 1), 0);
	expect_indexed(f.uid, true);
	reopen_engine();
	expect_indexed(f.uid, true);
	cr_assert_eq(seg_family_get(eng, f.uid)->nlog, n - 1);
	family_free(&f);
}

/* A refused adoption leaves the copies held and the family absent, in the table too. */
Test(adopt, a_refused_adoption_leaves_no_family_in_the_table)
{
	struct family f;

	src_family(&f);
	open_engine();
	hold_copies(&f);
	cr_assert_eq(engine_family_adopt(eng, f.uid, (uint32_t[]){ max_sno(&f) + 5 }, 1),
		     -ENOENT);
	cr_assert_not(engine_family_here(eng, f.uid));
	cr_assert_eq(seg_families_check(eng), 0);
	family_free(&f);
}

/* ---- from a family checkpoint (engine/fckpt.c, the loader) ----
 *
 * Engine 1 writes family checkpoints into the family's log (family_records); engine
 * 2, adopting, loads the newest complete one and rolls forward only what follows it:
 * every layer must read as on engine 1, as a whole-log adoption does, and the copies
 * older than the checkpoint are not read whole. */

/* Engine 2 with family records (the loader is on) and room for the copies. */
static void open_family_engine(void)
{
	struct engine_opts o;

	opts_for(&o, store_path, meta_path, true);
	o.store_size = QUILL_DATA_OFFSET + (uint64_t)SRC_SEGS * SEG_SIZE;
	o.family_records = true;
	cr_assert_eq(engine_open(&o, &eng), 0);
}

/* Before the checkpoint: a snapshot, overwrites, trims, zeros, cleaner moves; after
 * it: overwrites, trims, a second snapshot and more writes, and the cleaner again
 * (moves above S, out of slots the checkpoint's maps name, which it then frees). */
static void src_write_fckpt(void)
{
	struct engine_volume *vol = src_begin();

	cr_assert_eq(vzero(vol, 50, 4), 0);
	write_tagged(vol, 100, 60, 3);
	write_tagged(vol, 100, 60, 4);
	write_tagged(vol, 200, 40, 5);
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(engine_checkpoint(eng), 0);
	cr_assert_geq(engine_gc(eng, SRC_SEGS - 4), 0);
	write_tagged(vol, 300, 3 * SEG_BLOCKS, 6);
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(engine_checkpoint(eng), 0); /* the family checkpoint K */
	write_tagged(vol, 100, 40, 7);
	cr_assert_eq(vtrim(vol, 310, 20), 0);
	cr_assert_eq(engine_snap_create(eng, "v", "s2"), 0);
	write_tagged(vol, 0, 8, 8);
	cr_assert_eq(vtrim(vol, 60, 4), 0);
	cr_assert_eq(vzero(vol, 210, 4), 0);
	cr_assert_eq(eflush(), 0);
	cr_assert_geq(engine_gc(eng, SRC_SEGS - 4), 0);
	write_tagged(vol, 600, 2 * SEG_BLOCKS, 9);
	cr_assert_eq(eflush(), 0);
	engine_volume_close(vol);
}

static void adopt_expect_loaded(const struct family *f)
{
	struct engine_stats st;

	hold_copies(f);
	cr_assert_eq(engine_family_adopt(eng, f->uid, f->sno, f->n), 0);
	engine_get_stats(eng, &st);
	cr_assert_eq(st.adopt_fckpt_loads, 1, "loaded from a family checkpoint");
	cr_assert_gt(st.adopt_copies_unread, 0, "older copies were not read whole");
	cr_log_info("%llu of %zu copies not read whole, S %llu",
		    (unsigned long long)st.adopt_copies_unread, f->n,
		    (unsigned long long)st.adopt_fckpt_seq);
	expect_family(f);
}

Test(adopt, from_a_family_checkpoint_every_layer_reads_as_on_the_old_owner)
{
	struct family f;
	struct engine_volume *v;

	src_family_with(&f, src_write_fckpt);
	cr_assert_not_null(f.snap2);
	open_family_engine();
	adopt_expect_loaded(&f);
	/* and it takes writes; a reopen finds the same */
	v = open_vol("v");
	write_tagged(v, 700, 40, 10);
	fill(f.vol + (size_t)700 * BLK, 700, 40, 10);
	engine_volume_close(v);
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(engine_checkpoint(eng), 0);
	expect_family(&f);
	family_free(&f);
}

/* The family checkpoint ENDs in f's copies, newest first (ckpt, S). */
static size_t find_ends(const struct family *f, uint64_t *ks, uint64_t *ss, size_t *copy,
			uint32_t *pos, size_t max)
{
	static struct fckpt_block fb;
	size_t n = 0;

	for (size_t i = 0; i < f->n; i++) {
		struct segment_header h = { .state = ONDISK_SEG_USED };
		struct logcheck_walk w;
		struct logcheck_item it;
		struct summary sum;

		cr_assert_eq(ondisk_segment_header_decode(f->seg[i], BLK, &h), 0);
		logcheck_walk_init(&w, f->seg[i], f->len[i], &h, UINT64_MAX);
		for (logcheck_walk_next(&w, &sum, &it); it.kind == LOGCHECK_BATCH;
		     logcheck_walk_next(&w, &sum, &it)) {
			uint32_t d = 0;

			for (uint32_t k = 0; k < sum.nentries; k++) {
				const uint8_t *blk = f->seg[i] + (size_t)(it.pos + 1 + d) * BLK;

				if (!ONDISK_ENTRY_HAS_BLOCK(sum.entries[k].kind))
					continue;
				d++;
				if (sum.entries[k].kind != ONDISK_ENTRY_FCKPT ||
				    ondisk_fckpt_block_decode(blk, BLK, &fb) < 0 ||
				    fb.type != ONDISK_FCKPT_END || n == max)
					continue;
				ks[n] = fb.ckpt;
				ss[n] = fb.seq;
				copy[n] = i;
				pos[n] = it.pos;
				n++;
			}
		}
	}
	for (size_t a = 0; a < n; a++) /* newest first */
		for (size_t b = a + 1; b < n; b++)
			if (ks[b] > ks[a]) {
				uint64_t tk = ks[a], ts = ss[a];
				size_t tc = copy[a];
				uint32_t tp = pos[a];

				ks[a] = ks[b], ss[a] = ss[b], copy[a] = copy[b], pos[a] = pos[b];
				ks[b] = tk, ss[b] = ts, copy[b] = tc, pos[b] = tp;
			}
	return n;
}

/* The S of the newest family checkpoint END in f's copies (engine 1's). */
static uint64_t newest_end_seq(const struct family *f)
{
	uint64_t ks[32], ss[32];
	size_t copy[32];
	uint32_t pos[32];

	cr_assert_geq(find_ends(f, ks, ss, copy, pos, 32), 1, "engine 1 ended a checkpoint");
	return ss[0];
}

/* K1 complete, writes, then K2 whose END never landed (the owner died just before):
 * the copies end where K2's END would be. */
static void src_write_cut(void)
{
	struct engine_volume *vol = src_begin();

	write_tagged(vol, 100, 3 * SEG_BLOCKS, 3);
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(engine_checkpoint(eng), 0); /* K1 */
	write_tagged(vol, 100, 40, 4);
	cr_assert_eq(vtrim(vol, 150, 10), 0);
	write_tagged(vol, 500, 2 * SEG_BLOCKS, 5);
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(engine_checkpoint(eng), 0); /* K2: cut short below */
	engine_volume_close(vol);
}

Test(adopt, a_checkpoint_cut_short_before_its_end_falls_back_to_the_one_before)
{
	uint64_t ks[32], ss[32];
	size_t copy[32];
	uint32_t pos[32];
	struct engine_stats st;
	struct family f;
	size_t n;

	src_family_with(&f, src_write_cut);
	n = find_ends(&f, ks, ss, copy, pos, 32);
	cr_assert_geq(n, 2, "K1 and K2 ended in the log");
	/* the owner died before K2's END: its copy ends there, nothing newer exists */
	for (size_t i = 0; i < f.n; i++)
		cr_assert_leq(f.sno[i], f.sno[copy[0]], "K2's END is in the newest copy");
	f.len[copy[0]] = pos[0];
	open_family_engine();
	adopt_expect_loaded(&f);
	engine_get_stats(eng, &st);
	cr_assert_eq(st.adopt_fckpt_seq, ss[1], "K1's S (%llu), not K2's (%llu)",
		     (unsigned long long)ss[1], (unsigned long long)ss[0]);
	family_free(&f);
}

/* Without family records on engine 2 the whole log is read, and reads the same. */
Test(adopt, without_family_records_the_whole_log_is_read)
{
	struct family f;

	src_family_with(&f, src_write_fckpt);
	open_engine();
	hold_copies(&f);
	cr_assert_eq(engine_family_adopt(eng, f.uid, f.sno, f.n), 0);
	cr_assert_eq(stats().adopt_fckpt_loads, 0);
	expect_family(&f);
	family_free(&f);
}

/* The adopting engine writes 3 segments' worth, releases the family, restarts and
 * adopts it again: from the family checkpoint at S want (0: the newest one the
 * adopting engine completed itself, which must be newer than engine 1's), every layer
 * as expected. */
static void write_release_readopt(struct family *f, uint64_t want)
{
	struct engine_volume *v = open_vol("v");
	uint32_t snos[SRC_SEGS];
	struct engine_stats st;
	uint64_t first = newest_end_seq(f);
	size_t n = 0;

	write_tagged(v, 96, 3 * SEG_BLOCKS, 12);
	fill(f->vol + (size_t)96 * BLK, 96, 3 * SEG_BLOCKS, 12);
	engine_volume_close(v);
	cr_assert_eq(eflush(), 0);
	for (uint32_t i = 0; i < eng->sb.segment_count; i++)
		if (eng->slots[i].state != SLOT_FREE && eng->slots[i].family_uid == f->uid)
			snos[n++] = eng->slots[i].sno;
	cr_assert_eq(release(f->uid, snos, n), 0);
	if (!want) {
		want = stats().family_checkpoint_seq;
		cr_assert_gt(want, first, "engine 2 completed a family checkpoint of its own "
			     "(S %llu), newer than engine 1's (S %llu)", (unsigned long long)want,
			     (unsigned long long)first);
	}
	engine_close(eng);
	eng = NULL;
	open_family_engine();
	cr_assert_eq(engine_family_adopt(eng, f->uid, snos, n), 0);
	engine_get_stats(eng, &st);
	cr_assert_eq(st.adopt_fckpt_loads, 1);
	cr_assert_eq(st.adopt_fckpt_seq, want, "loaded the checkpoint at S %llu, not %llu",
		     (unsigned long long)want, (unsigned long long)st.adopt_fckpt_seq);
	expect_family(f);
	family_free(f);
}

/* cluster_handoff's path: engine 2 adopts, writes (a family checkpoint needs an open
 * segment), checkpoints (a family checkpoint of its own, at its S), writes more over
 * several segments, and releases; adopted again (here, after a restart), the
 * checkpoint engine 2 wrote is loaded and its writes are rolled forward. */
Test(adopt, adopted_written_released_and_adopted_again_from_its_checkpoint)
{
	struct engine_volume *v;
	struct family f;

	src_family_with(&f, src_write_fckpt);
	open_family_engine();
	hold_copies(&f);
	cr_assert_eq(engine_family_adopt(eng, f.uid, f.sno, f.n), 0);
	v = open_vol("v");
	write_tagged(v, 20, 4, 11);
	fill(f.vol + (size_t)20 * BLK, 20, 4, 11);
	engine_volume_close(v);
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(engine_checkpoint(eng), 0);
	write_release_readopt(&f, 0);
}

/* The same, but engine 2 adopts from the whole log and writes no family checkpoint of
 * its own: engine 1's is loaded the second time, engine 2's writes rolled forward. */
Test(adopt, adopted_whole_written_released_and_adopted_from_the_first_owners_checkpoint)
{
	struct family f;

	src_family_with(&f, src_write_fckpt);
	open_family_engine();
	hold_copies(&f);
	setenv("QUILL_ADOPT_WHOLE_LOG", "1", 1);
	cr_assert_eq(engine_family_adopt(eng, f.uid, f.sno, f.n), 0);
	unsetenv("QUILL_ADOPT_WHOLE_LOG");
	write_release_readopt(&f, newest_end_seq(&f));
}

/* ---- merged snapshots (aliases) and family checkpoints ----
 *
 * Engine 1: snapshots s1, s2, s3 of v with writes between; before the family
 * checkpoint K, s2 is deleted (merged into s3: its MERGE block opens a segment of s3's
 * log, read whole in any adoption) and then s3 (merged into v: its MERGE block is in
 * v's log, in a copy wholly below S that a load from K does not read); after K, s4 is
 * taken and deleted (merged into v above S). Adopted from K or from the whole log:
 * the same layers (no merged snapshot comes back as a layer), every alias leads where
 * it led on engine 1, and so after a restart. */
static void src_write_merged(void)
{
	struct engine_volume *vol = src_begin();

	write_tagged(vol, 100, 60, 3);
	cr_assert_eq(engine_snap_create(eng, "v", "s2"), 0);
	write_tagged(vol, 100, 30, 4);
	cr_assert_eq(engine_snap_create(eng, "v", "s3"), 0);
	write_tagged(vol, 200, 40, 5);
	cr_assert_eq(engine_snap_delete(eng, "v", "s2"), 0);
	write_tagged(vol, 210, 10, 6);
	cr_assert_eq(engine_snap_delete(eng, "v", "s3"), 0);
	write_tagged(vol, 300, 3 * SEG_BLOCKS, 7);
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(engine_checkpoint(eng), 0); /* K */
	write_tagged(vol, 120, 20, 8);
	cr_assert_eq(engine_snap_create(eng, "v", "s4"), 0);
	write_tagged(vol, 130, 20, 9);
	cr_assert_eq(engine_snap_delete(eng, "v", "s4"), 0);
	write_tagged(vol, 600, 2 * SEG_BLOCKS, 10);
	cr_assert_eq(eflush(), 0);
	engine_volume_close(vol);
}

/* Engine 2 has f's layers, no other, and f's aliases lead where they led. */
static void expect_layers_and_aliases(const struct family *f)
{
	size_t n = 0;

	for (size_t i = 0; i < eng->nvols; i++) {
		uint64_t id = eng->vols[i]->rec.volume_id;
		bool known = false;

		if (eng->vols[i]->rec.uid != f->uid)
			continue;
		for (size_t k = 0; k < f->nids; k++)
			known |= f->ids[k] == id;
		cr_assert(known, "layer %llu (%s) is not one of engine 1's",
			  (unsigned long long)id, eng->vols[i]->rec.name);
		n++;
	}
	cr_assert_eq(n, f->nids, "%zu layers, engine 1 had %zu", n, f->nids);
	for (size_t i = 0; i < f->naliases; i++) {
		struct engine_volume *to = eng_layer_for_owner(eng, f->alias_from[i]);

		cr_assert_not_null(to, "merged layer %llu leads nowhere",
				   (unsigned long long)f->alias_from[i]);
		cr_assert_eq(to->rec.volume_id, f->alias_to[i], "merged layer %llu leads to "
			     "%llu, not %llu", (unsigned long long)f->alias_from[i],
			     (unsigned long long)to->rec.volume_id,
			     (unsigned long long)f->alias_to[i]);
	}
}

static void reopen_family_engine(void)
{
	reopen_engine_sized(SRC_SEGS, true);
}

static void merged_family(struct family *f)
{
	src_family_with(f, src_write_merged);
	cr_assert_not_null(f->snap);
	cr_assert_null(f->snap2, "s2 was merged away");
	cr_assert_eq(f->naliases, 3, "s2, s3 and s4 merged (%zu aliases)", f->naliases);
}

Test(adopt, merged_snapshots_lead_where_they_led_after_a_checkpoint_load)
{
	struct family f;

	merged_family(&f);
	open_family_engine();
	adopt_expect_loaded(&f);
	expect_layers_and_aliases(&f);
	reopen_family_engine();
	expect_family(&f);
	expect_layers_and_aliases(&f);
	family_free(&f);
}

Test(adopt, merged_snapshots_lead_where_they_led_after_a_whole_log_adoption)
{
	struct family f;

	merged_family(&f);
	open_family_engine();
	hold_copies(&f);
	setenv("QUILL_ADOPT_WHOLE_LOG", "1", 1);
	cr_assert_eq(engine_family_adopt(eng, f.uid, f.sno, f.n), 0);
	unsetenv("QUILL_ADOPT_WHOLE_LOG");
	cr_assert_eq(stats().adopt_fckpt_loads, 0);
	expect_family(&f);
	expect_layers_and_aliases(&f);
	family_free(&f);
}

/* s3 merged into v after K: the blocks of s3 that v hid died with it, and the old
 * owner freed the segment they were in, which K's maps of s3 still name. K loads all
 * the same (s3 goes above S: missing_covered()), and the family reads as on engine 1. */
static void src_write_merge_after(void)
{
	struct engine_volume *vol = src_begin();

	write_tagged(vol, 100, 60, 3);
	cr_assert_eq(engine_snap_create(eng, "v", "s2"), 0);
	write_tagged(vol, 100, 30, 4);
	cr_assert_eq(engine_snap_create(eng, "v", "s3"), 0);
	write_tagged(vol, 200, 40, 5);
	cr_assert_eq(engine_snap_delete(eng, "v", "s1"), 0);
	write_tagged(vol, 300, 3 * SEG_BLOCKS, 6);
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(engine_checkpoint(eng), 0); /* K */
	write_tagged(vol, 120, 20, 7);
	cr_assert_eq(engine_snap_delete(eng, "v", "s3"), 0);
	write_tagged(vol, 600, 2 * SEG_BLOCKS, 8);
	cr_assert_eq(eflush(), 0);
	engine_volume_close(vol);
}

Test(adopt, a_snapshot_merged_after_the_checkpoint_leaves_it_loadable)
{
	struct family f;

	src_family_with(&f, src_write_merge_after);
	cr_assert_null(f.snap, "s1 was merged away");
	cr_assert_eq(f.naliases, 2, "s1 and s3 merged (%zu aliases)", f.naliases);
	open_family_engine();
	adopt_expect_loaded(&f);
	expect_layers_and_aliases(&f);
	family_free(&f);
}

/* ---- segments with no copy here: remote entries (an erasure-coded stripe's) ----
 *
 * Engine 2 is given the family's segments as remote ones (their header only, as a
 * takeover reads it from the fragments) and holds a copy only of those the adoption
 * says it needs whole (-EREMOTE: above the family checkpoint). The others become
 * remote entries, their map from the checkpoint; their reads are fetches, answered
 * here from engine 1's bytes (from the test's loop, never inside the engine's call),
 * before and after a reopen. */

static void far_expect_family(const struct family *f)
{
	unsigned asked = far.asked;

	expect_layer("v", f->vol);
	expect_layer("v@s1", f->snap);
	if (f->snap2)
		expect_layer("v@s2", f->snap2);
	cr_assert_gt(far.asked, asked, "blocks of remote entries were fetched");
}

/* Holds copy i of f on engine 2 (one segment of hold_copies). */
static void hold_copy(const struct family *f, size_t i)
{
	struct family one = { .uid = f->uid, .n = 1 };

	one.sno[0] = f->sno[i];
	one.len[0] = f->len[i];
	one.seg[0] = f->seg[i];
	hold_copies(&one);
}

/* Adopts f with every segment remote at first, holding what the adoption asks for
 * whole until it takes the rest as remote entries: the number of remote entries.
 * crash: the last round returns (SIZE_MAX) as soon as its commit lands, before the
 * checkpoint it then waits for (a child that ends there). */
static size_t adopt_with_remote(const struct family *f, bool crash)
{
	struct engine_adopt_remote rem[MAX_COPIES];
	uint32_t held[MAX_COPIES];
	size_t nrem = 0, nheld = 0, rounds = 0;
	int r;

	for (size_t i = 0; i < f->n; i++)
		rem[nrem++] = (struct engine_adopt_remote){ .sno = f->sno[i], .length = f->len[i],
							    .header = f->seg[i] };
	for (;;) {
		struct done d = { 0 };
		size_t w = 0;

		cr_assert_eq(engine_family_adopt_remote_async(eng, f->uid, held, nheld, rem, nrem,
							      on_done, &d), 0);
		while (!d.done) {
			cr_assert_geq(engine_poll(eng, 1), 0);
			if (crash && stats().adopt_remote_entries > 0)
				return SIZE_MAX; /* committed, no checkpoint yet */
		}
		r = d.res;
		rounds++;
		if (r != -EREMOTE)
			break;
		cr_assert_leq(rounds, f->n, "each -EREMOTE asks for at least one more");
		for (size_t i = 0; i < nrem; i++) {
			size_t k = 0;

			if (!rem[i].whole) {
				rem[w++] = rem[i];
				continue;
			}
			while (f->sno[k] != rem[i].sno)
				k++;
			hold_copy(f, k);
			held[nheld++] = rem[i].sno;
		}
		cr_assert_lt(w, nrem, "-EREMOTE names what it needs");
		nrem = w;
	}
	cr_assert_eq(r, 0, "adopted (%s)", strerror(-r));
	cr_log_info("%zu of %zu segments adopted as remote entries, %zu held, in %zu rounds",
		    nrem, f->n, nheld, rounds);
	return nrem;
}

Test(adopt, segments_with_no_copy_here_become_remote_entries_read_through_fetches)
{
	struct family f;
	size_t nrem;

	src_family_with(&f, src_write_fckpt);
	open_family_engine();
	far.f = &f;
	seg_mirror_set(eng, &far_ops, NULL);
	nrem = adopt_with_remote(&f, false);
	cr_assert_gt(nrem, 0, "the segments below the family checkpoint stay remote");
	cr_assert_eq(stats().adopt_remote_entries, nrem);
	cr_assert_eq(stats().segments_held, 0);
	far_expect_family(&f);
	/* their "T" records and the maps that name them are durable: a reopen finds them */
	reopen_family_engine();
	seg_mirror_set(eng, &far_ops, NULL);
	far_expect_family(&f);
	memset(&far, 0, sizeof(far));
	family_free(&f);
}

Test(adopt, with_no_family_checkpoint_every_remote_segment_is_asked_whole_at_once)
{
	struct engine_adopt_remote rem[MAX_COPIES];
	struct family f;
	struct done d = { 0 };

	src_family(&f);
	open_engine(); /* no family records: the whole log is read */
	for (size_t i = 0; i < f.n; i++)
		rem[i] = (struct engine_adopt_remote){ .sno = f.sno[i], .length = f.len[i],
						       .header = f.seg[i] };
	cr_assert_eq(finish(engine_family_adopt_remote_async(eng, f.uid, NULL, 0, rem, f.n,
							     on_done, &d), &d), -EREMOTE);
	for (size_t i = 0; i < f.n; i++)
		cr_assert(rem[i].whole, "segment %u is asked whole", f.sno[i]);
	cr_assert_eq(engine_volume_family(eng, "v", &(uint64_t){ 0 }), -ENOENT, "nothing adopted");
	/* and nothing is left of the try: held whole, they are adopted as before */
	hold_copies(&f);
	cr_assert_eq(engine_family_adopt(eng, f.uid, f.sno, f.n), 0);
	expect_family(&f);
	family_free(&f);
}

/* The child: the family adopted with remote entries, ended once the commit lands. */
static int adopt_remote_and_crash(void)
{
	struct family f;
	char p[PATH_MAX + 16];
	FILE *fp;

	src_family_with(&f, src_write_fckpt);
	family_save(&f);
	snprintf(p, sizeof(p), "%s/segs.bin", dir);
	fp = fopen(p, "w");
	CHILD_CHECK(fp && fwrite(f.snap2, BLK, VOL_BLOCKS, fp) == VOL_BLOCKS);
	for (size_t i = 0; i < f.n; i++)
		CHILD_CHECK(fwrite(f.seg[i], BLK, f.len[i], fp) == f.len[i]);
	fclose(fp);
	open_family_engine();
	far.f = &f;
	seg_mirror_set(eng, &far_ops, NULL);
	CHILD_CHECK(adopt_with_remote(&f, true) == SIZE_MAX);
	return 0;
}

/* The remote entries' "T" records are in the adoption's commit, with the maps that name
 * them: a crash before the checkpoint after it leaves them. */
Test(adopt, a_crash_after_the_commit_leaves_the_remote_entries)
{
	struct engine_opts o;
	struct family f;
	char p[PATH_MAX + 16];
	FILE *fp;

	in_child(adopt_remote_and_crash);
	family_load(&f);
	snprintf(p, sizeof(p), "%s/segs.bin", dir);
	fp = fopen(p, "r");
	cr_assert_not_null(fp);
	f.snap2 = malloc((size_t)VOL_BLOCKS * BLK);
	cr_assert(f.snap2 && fread(f.snap2, BLK, VOL_BLOCKS, fp) == VOL_BLOCKS);
	for (size_t i = 0; i < f.n; i++) {
		f.seg[i] = seg_buf_alloc((size_t)f.len[i] * BLK);
		cr_assert(f.seg[i] && fread(f.seg[i], BLK, f.len[i], fp) == f.len[i]);
	}
	fclose(fp);
	opts_for(&o, store_path, meta_path, false);
	o.store_size = QUILL_DATA_OFFSET + (uint64_t)SRC_SEGS * SEG_SIZE;
	o.family_records = true;
	cr_assert_eq(engine_open(&o, &eng), 0);
	far.f = &f;
	seg_mirror_set(eng, &far_ops, NULL);
	cr_assert_eq(stats().segments_held, 0, "the family is adopted");
	far_expect_family(&f);
	memset(&far, 0, sizeof(far));
	family_free(&f);
}

/* A family checkpoint written with its segment all but full: its blocks go on into the
 * next segment, or fill the segment to its end (its END alone in the next one was what
 * cluster_ec_read's clean-clone flake left after a restart: test_fckpt_log's
 * the_newest_stays_loadable_after_a_restart). Whatever the room left, the adoption
 * loads the newest one, its blocks read from both segments. */
static uint32_t straddle_gap;

static void src_write_straddle(void)
{
	struct engine_volume *vol = src_begin();
	uint64_t lba = 300;

	write_tagged(vol, 100, 2 * SEG_BLOCKS, 3);
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(engine_checkpoint(eng), 0);
	fill_open_segment_to(vol, &lba, straddle_gap);
	cr_assert_eq(engine_checkpoint(eng), 0); /* the newest, K: nothing after it */
	engine_volume_close(vol);
}

ParameterizedTestParameters(adopt, a_checkpoint_at_the_end_of_a_full_segment_is_loaded)
{
	static uint32_t gaps[] = { 1, 2, 3, 4, 5, 6, 7, 9, 12 };

	return cr_make_param_array(uint32_t, gaps, sizeof(gaps) / sizeof(gaps[0]));
}

ParameterizedTest(uint32_t *gap, adopt, a_checkpoint_at_the_end_of_a_full_segment_is_loaded,
		  .init = setup, .fini = teardown)
{
	struct family f;

	straddle_gap = *gap;
	src_family_with(&f, src_write_straddle);
	open_family_engine();
	far.f = &f;
	seg_mirror_set(eng, &far_ops, NULL);
	adopt_with_remote(&f, false);
	cr_assert_eq(stats().adopt_fckpt_seq, newest_end_seq(&f),
		     "%u blocks left: loaded S %llu, the newest END's is %llu", *gap,
		     (unsigned long long)stats().adopt_fckpt_seq,
		     (unsigned long long)newest_end_seq(&f));
	far_expect_family(&f);
	memset(&far, 0, sizeof(far));
	family_free(&f);
}
