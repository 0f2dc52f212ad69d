/* tests/unit/engine/test_fckpt_log.c — family checkpoints in the family's own log
 * (engine/fckpt.c, the writer; docs/replication.md, "Family checkpoints"). A real
 * engine with family_records on a scratch store writes a volume with a snapshot,
 * overwrites, trims and allocated zeros, and checkpoints. The test then reads the
 * family's segments as a new owner would hold them: the newest complete checkpoint
 * (an END) names MAPS blocks whose maps, loaded by segment number, equal every
 * layer's map entry for entry. Through the cleaner and more checkpoints the newest
 * complete one stays loadable (its MAPS slots are not freed), and older ones' slots
 * go. Without family_records nothing is written.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "engine/logcheck.h"
#include "engine/map.h"
#include "engine_fixture.h"

#define MAX_LAYERS 8u
#define STORE_SEGS 64u

static void open_family_engine(bool family_records)
{
	struct engine_opts o;

	opts_for(&o, store_path, meta_path, true);
	o.store_size = QUILL_DATA_OFFSET + (uint64_t)STORE_SEGS * SEG_SIZE; /* room to spare:
		short of room, family checkpoints give way to the cleaner */
	o.family_records = family_records;
	cr_assert_eq(engine_open(&o, &eng), 0);
}

/* The newest END found in the family's segments, or k 0. */
struct found {
	uint64_t k, seq;
	uint32_t nruns;
	struct ondisk_fckpt_run runs[ONDISK_FCKPT_RUNS_MAX];
	unsigned ends, begins; /* complete ones seen, BEGIN blocks seen */
};

static void scan_block(struct found *fd, const struct summary_entry *e, const uint8_t *blk)
{
	static struct fckpt_block fb;

	if (e->kind != ONDISK_ENTRY_FCKPT)
		return;
	cr_assert_eq(ondisk_fckpt_block_decode(blk, QUILL_BLOCK_SIZE, &fb), 0);
	cr_assert_eq(fb.ckpt, e->lba, "the entry names its checkpoint");
	if (fb.type == ONDISK_FCKPT_BEGIN) {
		fd->begins++;
		return;
	}
	cr_assert(fb.last, "one END block is enough here");
	fd->ends++;
	if (fb.ckpt <= fd->k)
		return;
	fd->k = fb.ckpt;
	fd->seq = fb.seq;
	fd->nruns = fb.nruns;
	memcpy(fd->runs, fb.runs, fb.nruns * sizeof(fb.runs[0]));
}

/* Walks every segment of family uid, read whole, for its FCKPT blocks. */
static void find_newest(uint64_t uid, struct found *fd)
{
	uint8_t *buf = seg_buf_alloc((size_t)SEG_BLOCKS * BLK);

	cr_assert_not_null(buf);
	memset(fd, 0, sizeof(*fd));
	for (uint32_t i = 0; i < eng->sb.segment_count; i++) {
		const struct slot *s = &eng->slots[i];
		struct segment_header h = { .state = ONDISK_SEG_USED };
		struct logcheck_walk w;
		struct logcheck_item it;
		struct summary sum;

		if (s->state == SLOT_FREE || s->held || s->family_uid != uid)
			continue;
		memset(buf, 0, (size_t)SEG_BLOCKS * BLK);
		cr_assert_eq(seg_read_sync(eng, i, 0, buf, s->used), 0);
		cr_assert_eq(ondisk_segment_header_decode(buf, BLK, &h), 0);
		logcheck_walk_init(&w, buf, SEG_BLOCKS, &h, UINT64_MAX);
		for (logcheck_walk_next(&w, &sum, &it); it.kind == LOGCHECK_BATCH;
		     logcheck_walk_next(&w, &sum, &it)) {
			uint32_t d = 0;

			cr_assert(it.data_ok);
			for (uint32_t k = 0; k < sum.nentries; k++) {
				if (!ONDISK_ENTRY_HAS_BLOCK(sum.entries[k].kind))
					continue;
				scan_block(fd, &sum.entries[k],
					   buf + (size_t)(it.pos + 1 + d) * BLK);
				d++;
			}
		}
	}
	seg_buf_free(buf);
}

static void no_ref(void *arg, const struct map_loc *loc, int delta)
{
	(void)arg;
	(void)loc;
	(void)delta;
}

struct scratch {
	size_t n;
	struct engine_volume v[MAX_LAYERS];
};

static struct engine_volume *scratch_layer(struct scratch *sc, uint64_t id)
{
	for (size_t i = 0; i < sc->n; i++)
		if (sc->v[i].rec.volume_id == id)
			return &sc->v[i];
	return NULL;
}

/* Loads the maps the newest END names into scratch layers (by segment number ->
 * this store's slot), as a new owner would. -ENOENT: a segment it names is gone. */
static int load_found(uint64_t uid, const struct found *fd, struct scratch *sc)
{
	static struct fmaps_block m;
	struct eng_sno_table t;
	uint8_t *blk = seg_buf_alloc(BLK);
	int r;

	cr_assert_not_null(blk);
	memset(sc, 0, sizeof(*sc));
	cr_assert_eq(eng_sno_table_build(eng, uid, &t), 0);
	for (size_t i = 0; i < eng->nvols; i++) {
		const struct engine_volume *l = eng->vols[i];

		if (l->rec.uid != uid || l->rec.kind == ONDISK_LAYER_CATALOG)
			continue;
		cr_assert_lt(sc->n, MAX_LAYERS);
		sc->v[sc->n].rec = l->rec;
		cr_assert_eq(map_create(map_nblocks(l->map), no_ref, NULL, &sc->v[sc->n].map), 0);
		sc->n++;
	}
	r = 0;
	for (uint32_t i = 0; i < fd->nruns && r == 0; i++) {
		const struct ondisk_fckpt_run *run = &fd->runs[i];

		for (uint32_t b = 0; b < run->count && r == 0; b++) {
			uint32_t slot = run->sno >= t.base && run->sno - t.base < t.n
						? t.slot[run->sno - t.base] : UINT32_MAX;
			struct engine_volume *v;

			if (slot == UINT32_MAX) {
				r = -ENOENT;
				break;
			}
			cr_assert_eq(seg_read_sync(eng, slot, run->block + b, blk, 1), 0);
			cr_assert_eq(ondisk_fmaps_block_decode(blk, BLK, &m), 0,
				     "sno %u block %u is a MAPS block", run->sno, run->block + b);
			cr_assert_eq(m.ckpt, fd->k);
			v = scratch_layer(sc, m.layer);
			cr_assert_not_null(v, "MAPS of an unknown layer %llu",
					   (unsigned long long)m.layer);
			r = eng_fmaps_load(v, &t, &m);
		}
	}
	eng_sno_table_free(&t);
	seg_buf_free(blk);
	return r;
}

static void scratch_free(struct scratch *sc)
{
	for (size_t i = 0; i < sc->n; i++)
		map_destroy(sc->v[i].map);
}

struct cmp {
	const struct map *other;
	uint64_t n;
};

static int same_entry(void *arg, uint64_t lba, const struct map_loc *loc)
{
	struct cmp *c = arg;
	struct map_loc o;

	cr_assert(map_get(c->other, lba, &o), "lba %llu missing", (unsigned long long)lba);
	cr_assert(o.slot == loc->slot && o.block == loc->block && o.crc == loc->crc,
		  "lba %llu: %u/%u/%x, not %u/%u/%x", (unsigned long long)lba, o.slot, o.block,
		  o.crc, loc->slot, loc->block, loc->crc);
	c->n++;
	return 0;
}

/* Each scratch layer's map equals its real layer's, both ways. */
static uint64_t expect_same_maps(const struct scratch *sc)
{
	uint64_t total = 0;

	for (size_t i = 0; i < sc->n; i++) {
		struct engine_volume *l = eng_volume_by_id(eng, sc->v[i].rec.volume_id);
		struct cmp a = { sc->v[i].map, 0 }, b = { l->map, 0 };

		cr_assert_eq(map_for_each(l->map, same_entry, &a), 0);
		cr_assert_eq(map_for_each(sc->v[i].map, same_entry, &b), 0);
		cr_assert_eq(a.n, b.n);
		total += a.n;
	}
	return total;
}

/* The newest complete checkpoint of family uid loads and equals the maps. */
static uint64_t expect_newest_loads(uint64_t uid, struct found *fd)
{
	struct scratch sc;
	uint64_t n;

	find_newest(uid, fd);
	cr_assert_gt(fd->k, 0, "a complete family checkpoint is in the family's log");
	cr_assert_eq(load_found(uid, fd, &sc), 0, "every MAPS block it names is here");
	n = expect_same_maps(&sc);
	scratch_free(&sc);
	return n;
}

/* Only the newest complete checkpoint's MAPS blocks keep slots: the family's slots
 * count (fmaps) exactly the blocks its END's runs name, each in the slot that holds
 * that segment; an older one's count was dropped when the newest completed. */
static void expect_only_newest_counted(uint64_t uid, const struct found *fd)
{
	uint64_t named = 0, counted = 0;

	for (uint32_t i = 0; i < fd->nruns; i++) {
		uint64_t in_slot = 0, in_runs = 0;

		for (uint32_t j = 0; j < eng->sb.segment_count; j++)
			if (eng->slots[j].state != SLOT_FREE && !eng->slots[j].held &&
			    eng->slots[j].family_uid == uid && eng->slots[j].sno == fd->runs[i].sno)
				in_slot = eng->slots[j].fmaps;
		for (uint32_t k = 0; k < fd->nruns; k++)
			if (fd->runs[k].sno == fd->runs[i].sno)
				in_runs += fd->runs[k].count;
		cr_assert_eq(in_slot, in_runs, "segment %u: %llu MAPS blocks counted, the "
			     "newest END names %llu", fd->runs[i].sno, (unsigned long long)in_slot,
			     (unsigned long long)in_runs);
		named += fd->runs[i].count;
	}
	for (uint32_t j = 0; j < eng->sb.segment_count; j++)
		if (eng->slots[j].state != SLOT_FREE)
			counted += eng->slots[j].fmaps;
	cr_assert_eq(counted, named, "%llu MAPS blocks keep slots, the newest END names %llu",
		     (unsigned long long)counted, (unsigned long long)named);
}

static struct engine_volume *write_family(uint64_t *uid)
{
	struct engine_volume *v = create_and_open("v", VOL_SIZE);

	write_tagged(v, 0, 64, 1);
	cr_assert_eq(engine_snap_create(eng, "v", "s1"), 0);
	write_tagged(v, 0, 32, 2);
	cr_assert_eq(vtrim(v, 40, 8), 0);
	cr_assert_eq(vzero(v, 50, 4), 0);
	write_tagged(v, 100, 60, 3);
	write_tagged(v, 300, 70, 5);
	cr_assert_eq(vtrim(v, 310, 5), 0);
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(engine_volume_family(eng, "v", uid), 0);
	return v;
}

TestSuite(fckpt_log, .init = setup, .fini = teardown);

Test(fckpt_log, a_checkpoint_writes_the_family_maps_into_its_log)
{
	struct engine_volume *v;
	struct engine_stats st;
	struct found fd;
	uint64_t uid;

	open_family_engine(true);
	v = write_family(&uid);
	cr_assert_eq(engine_checkpoint(eng), 0);
	engine_get_stats(eng, &st);
	cr_assert_geq(st.family_checkpoints, 1);
	cr_assert_gt(st.family_maps_blocks, 0);
	cr_assert_gt(expect_newest_loads(uid, &fd), 130, "both layers' entries");
	cr_assert_geq(fd.begins, fd.ends);
	cr_assert_geq(fd.seq, st.last_checkpoint_seq);
	/* a snapshot and writes after it: the next one has them all */
	cr_assert_eq(engine_snap_create(eng, "v", "s2"), 0);
	write_tagged(v, 500, 40, 6);
	cr_assert_eq(vtrim(v, 0, 10), 0);
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(engine_checkpoint(eng), 0);
	{
		uint64_t k0 = fd.k;

		expect_newest_loads(uid, &fd);
		cr_assert_gt(fd.k, k0, "a newer one");
	}
	engine_volume_close(v);
}

/* Nothing dirty, nothing written; off without family_records. */
Test(fckpt_log, nothing_is_written_without_family_records)
{
	struct engine_volume *v;
	struct engine_stats st;
	struct found fd;
	uint64_t uid;

	open_family_engine(false);
	v = write_family(&uid);
	cr_assert_eq(engine_checkpoint(eng), 0);
	engine_get_stats(eng, &st);
	cr_assert_eq(st.family_checkpoints, 0);
	find_newest(uid, &fd);
	cr_assert_eq(fd.ends + fd.begins, 0);
	engine_volume_close(v);
}

/* Overwrites churn the log, the cleaner runs, checkpoints follow: after each, the
 * newest complete checkpoint loads whole (its MAPS slots were kept) and the slots
 * holding only older ones' MAPS blocks are freed. */
Test(fckpt_log, the_newest_maps_survive_the_cleaner_and_older_ones_go)
{
	struct engine_volume *v;
	struct engine_stats st;
	struct found fd;
	uint64_t uid;

	open_family_engine(true);
	v = write_family(&uid);
	for (uint32_t round = 0; round < 8; round++) {
		write_tagged(v, 600 + (round % 3) * 8, 60, 10 + round);
		cr_assert_eq(eflush(), 0);
		cr_assert_eq(engine_checkpoint(eng), 0);
		cr_assert_geq(engine_gc(eng, STORE_SEGS / 2), 0);
		cr_assert_eq(engine_checkpoint(eng), 0);
		expect_newest_loads(uid, &fd);
		expect_only_newest_counted(uid, &fd);
	}
	engine_get_stats(eng, &st);
	cr_assert_gt(st.gc_segments_freed, 0, "the cleaner freed segments");
	cr_assert_geq(st.family_checkpoints, 8);
	engine_volume_close(v);
}

/* quilld's stop (stop_begin): a family whose chunks a checkpoint that was not the
 * families' turn took is owed one; the stop's checkpoint writes it, here with the
 * family's segment exactly full and sealed at the stop (it opens one for it). A
 * clean-clone run of cluster_ec_read found no family checkpoint written by a stop in
 * that state. */
Test(fckpt_log, a_stops_checkpoint_writes_the_owed_one_with_the_segment_exactly_full)
{
	struct engine_volume *v;
	struct engine_stats st0, st;
	struct eng_sync s = { 0 };
	struct found fd;
	uint64_t uid, k0, lba = 400;

	open_family_engine(true);
	v = write_family(&uid);
	cr_assert_eq(engine_checkpoint(eng), 0);
	expect_newest_loads(uid, &fd);
	k0 = fd.k;
	fill_open_segment_to(v, &lba, 0);
	cr_assert_eq(eng->slots[v->open_slot].used, eng->blocks_per_seg, "exactly full");
	/* a replica set seals a full segment at once: the log has no open segment at the
	 * stop (cluster_ec_read's failed runs) */
	cr_assert_eq(engine_family_seal_open(eng, uid, eng->slots[v->open_slot].sno), 0);
	cr_assert_eq(v->open_slot, -1);
	/* a checkpoint not the families' turn takes the chunks: the family is owed one */
	cr_assert_eq(eng_ckpt_sync(eng), 0);
	/* which an ordinary checkpoint does not write: it opens no segment */
	engine_get_stats(eng, &st0);
	cr_assert_eq(engine_checkpoint(eng), 0);
	engine_get_stats(eng, &st);
	cr_assert_eq(st.family_checkpoints, st0.family_checkpoints,
		     "an ordinary checkpoint opened a segment for a family checkpoint");
	cr_assert_eq(v->open_slot, -1);
	engine_get_stats(eng, &st0);
	cr_assert_eq(eng_sync_wait(eng, &s, engine_checkpoint_for_stop_async(eng, eng_sync_done,
									      &s)), 0);
	engine_get_stats(eng, &st);
	cr_assert_eq(st.family_checkpoints, st0.family_checkpoints + 1,
		     "the stop's checkpoint wrote the family's");
	expect_newest_loads(uid, &fd);
	cr_assert_gt(fd.k, k0, "a newer one loads");
	engine_volume_close(v);
}

static void reopen_family_engine(void)
{
	reopen_engine_sized(STORE_SEGS, true);
}

/* The slots' MAPS counts are not stored. A restarted engine whose family writes nothing
 * writes no family checkpoint (its log has no open segment) and must not free the
 * newest one's segments for being empty: among the gaps below, the checkpoint's END goes
 * on alone into a segment with nothing live (cluster_ec_read's clean-clone flake: freed
 * after node0's restart, its copies deleted, node1 took the volume over from an older
 * checkpoint and read 16 segments whole). */
ParameterizedTestParameters(fckpt_log, the_newest_stays_loadable_after_a_restart)
{
	static uint32_t gaps[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16 };

	return cr_make_param_array(uint32_t, gaps, sizeof(gaps) / sizeof(gaps[0]));
}

ParameterizedTest(uint32_t *gap, fckpt_log, the_newest_stays_loadable_after_a_restart,
		  .init = setup, .fini = teardown)
{
	struct engine_volume *v;
	struct found fd;
	uint64_t uid, k, lba = 600;

	open_family_engine(true);
	v = write_family(&uid);
	cr_assert_eq(engine_checkpoint(eng), 0);
	fill_open_segment_to(v, &lba, *gap);
	cr_assert_eq(engine_checkpoint(eng), 0); /* the newest, at the log's end */
	expect_newest_loads(uid, &fd);
	k = fd.k;
	engine_volume_close(v);
	reopen_family_engine();
	cr_assert_eq(engine_checkpoint(eng), 0);
	cr_assert_eq(engine_checkpoint(eng), 0);
	expect_newest_loads(uid, &fd);
	cr_assert_eq(fd.k, k, "%u blocks left: the newest is %llu after the restart, %llu "
		     "before", *gap, (unsigned long long)fd.k, (unsigned long long)k);
}
