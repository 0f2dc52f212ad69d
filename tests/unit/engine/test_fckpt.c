/* tests/unit/engine/test_fckpt.c — a family's maps packed into MAPS blocks and loaded
 * back (engine/fckpt.c; planned family checkpoints, docs/replication.md). A real
 * engine on a scratch store writes a volume with a snapshot, overwrites, trims,
 * allocated zeros and blocks the cleaner moved; each layer's whole map is packed as
 * the checkpoint emits it, through the on-disk encoding, then the map is cleared and
 * loaded from the blocks: every entry and every block read is as before. An empty
 * chunk clears what a layer held there; a segment the blocks name that is not here
 * is refused.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "engine_fixture.h"

#define MAX_BLOCKS 64u

struct packed {
	struct engine *eng;
	uint64_t uid;
	struct fmaps_block cur;
	uint8_t blk[MAX_BLOCKS][QUILL_BLOCK_SIZE];
	size_t n;
	size_t entries;
	int mismatch; /* entries whose sno is not their slot's */
};

static struct packed pk;

static void pk_close_block(void)
{
	if (pk.cur.nchunks == 0)
		return;
	cr_assert_lt(pk.n, MAX_BLOCKS);
	ondisk_fmaps_block_encode(&pk.cur, pk.blk[pk.n++]);
	pk.cur.nchunks = 0;
}

static int pk_emit(void *arg, uint64_t chunk, const struct ondisk_map_entry *e, size_t n)
{
	const struct fmaps_chunk *c;
	int r = eng_fmaps_add(pk.eng, pk.uid, &pk.cur, chunk, e, n);

	(void)arg;
	if (r == -ENOSPC) {
		pk_close_block();
		r = eng_fmaps_add(pk.eng, pk.uid, &pk.cur, chunk, e, n);
	}
	if (r < 0)
		return r;
	c = &pk.cur.chunks[pk.cur.nchunks - 1];
	for (size_t i = 0; i < n; i++)
		if (e[i].slot != ONDISK_MAP_SLOT_ZERO &&
		    c->e[i].slot != pk.eng->slots[e[i].slot].sno)
			pk.mismatch++;
	pk.entries += n;
	return 0;
}

/* Every chunk of layer v into pk's blocks. */
static void pack_layer(struct engine_volume *v)
{
	memset(&pk, 0, sizeof(pk));
	pk.eng = eng;
	pk.uid = v->rec.uid;
	pk.cur.layer = v->rec.volume_id;
	pk.cur.ckpt = 1;
	map_mark_all_dirty(v->map);
	cr_assert_eq(map_take_dirty(v->map, pk_emit, NULL), 0);
	pk_close_block();
	cr_assert_eq(pk.mismatch, 0, "every entry names its segment, not its slot");
}

/* Clears layer v's map and loads it from pk's blocks, decoded from their bytes. */
static int load_layer(struct engine_volume *v, const struct eng_sno_table *t)
{
	static struct fmaps_block m;
	int r = 0;

	map_clear(v->map, 0, map_nblocks(v->map));
	for (size_t i = 0; i < pk.n && r == 0; i++) {
		cr_assert_eq(ondisk_fmaps_block_decode(pk.blk[i], QUILL_BLOCK_SIZE, &m), 0);
		r = eng_fmaps_load(v, t, &m);
	}
	return r;
}

struct entries {
	uint64_t n;
	uint64_t lba[VOL_BLOCKS];
	struct map_loc loc[VOL_BLOCKS];
};

static int note_entry(void *arg, uint64_t lba, const struct map_loc *loc)
{
	struct entries *es = arg;

	cr_assert_lt(es->n, VOL_BLOCKS);
	es->lba[es->n] = lba;
	es->loc[es->n++] = *loc;
	return 0;
}

static void map_entries(struct engine_volume *v, struct entries *es)
{
	es->n = 0;
	cr_assert_eq(map_for_each(v->map, note_entry, es), 0);
}

static uint8_t *read_layer(const char *name)
{
	struct engine_volume *v = open_vol(name);
	uint8_t *buf = malloc((size_t)VOL_BLOCKS * BLK);

	cr_assert_not_null(buf);
	cr_assert_eq(vread(v, 0, VOL_BLOCKS, buf), 0);
	engine_volume_close(v);
	return buf;
}

/* Volume "v" and its snapshot "v@s1": overwrites, trims, allocated zeros, and blocks
 * moved by the cleaner. */
static void write_family(void)
{
	struct engine_volume *v = create_and_open("v", VOL_SIZE);
	struct engine_stats st;

	write_tagged(v, 0, 64, 1);
	cr_assert_eq(engine_snap_create(eng, "v", "s1"), 0);
	write_tagged(v, 0, 32, 2);
	cr_assert_eq(vtrim(v, 40, 8), 0);
	cr_assert_eq(vzero(v, 50, 4), 0);
	write_tagged(v, 100, 60, 3);
	write_tagged(v, 100, 60, 4);
	write_tagged(v, 300, 70, 5);
	cr_assert_eq(vtrim(v, 310, 5), 0);
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(engine_checkpoint(eng), 0);
	cr_assert_geq(engine_gc(eng, NSEGS - 4), 0);
	cr_assert_eq(engine_checkpoint(eng), 0);
	engine_get_stats(eng, &st);
	cr_assert_gt(st.gc_blocks_moved, 0, "the cleaner moved blocks of the family");
	engine_volume_close(v);
}

TestSuite(fckpt, .init = setup, .fini = teardown);

Test(fckpt, a_layer_loaded_from_its_maps_blocks_reads_as_before)
{
	const char *names[] = { "v", "v@s1" };

	open_engine();
	write_family();
	for (size_t k = 0; k < 2; k++) {
		struct engine_volume *v = eng_layer_by_spec(eng, names[k]);
		static struct entries before, after;
		struct eng_sno_table t;
		uint8_t *want = read_layer(names[k]), *got;

		cr_assert_not_null(v);
		map_entries(v, &before);
		pack_layer(v);
		cr_assert_gt(pk.n, 1, "%s: several MAPS blocks (%zu)", names[k], pk.n);
		cr_assert_eq(eng_sno_table_build(eng, v->rec.uid, &t), 0);
		cr_assert_eq(load_layer(v, &t), 0);
		eng_sno_table_free(&t);
		map_entries(v, &after);
		cr_assert_eq(after.n, before.n, "%s: entries", names[k]);
		for (uint64_t i = 0; i < before.n; i++) {
			cr_assert_eq(after.lba[i], before.lba[i]);
			cr_assert_eq(memcmp(&after.loc[i], &before.loc[i], sizeof(before.loc[i])), 0,
				     "%s: lba %llu", names[k], (unsigned long long)before.lba[i]);
		}
		got = read_layer(names[k]);
		cr_assert_eq(memcmp(got, want, (size_t)VOL_BLOCKS * BLK), 0, "%s reads the same",
			     names[k]);
		free(got);
		free(want);
	}
}

Test(fckpt, an_empty_chunk_clears_the_layer_there)
{
	struct engine_volume *v;
	struct eng_sno_table t;
	static struct fmaps_block m;
	uint8_t *got, zero[BLK] = { 0 };

	open_engine();
	write_family();
	v = eng_layer_by_spec(eng, "v");
	m = (struct fmaps_block){ .layer = v->rec.volume_id, .ckpt = 2, .nchunks = 1 };
	m.chunks[0] = (struct fmaps_chunk){ .chunk = 1, .nentries = 0 }; /* lba 64..127 */
	cr_assert_eq(eng_sno_table_build(eng, v->rec.uid, &t), 0);
	cr_assert_eq(eng_fmaps_load(v, &t, &m), 0);
	eng_sno_table_free(&t);
	got = read_layer("v");
	for (uint32_t b = 100; b < 128; b++)
		cr_assert_eq(memcmp(got + (size_t)b * BLK, zero, BLK), 0, "lba %u is a hole", b);
	free(got);
}

Test(fckpt, a_segment_that_is_not_here_is_refused)
{
	struct engine_volume *v;
	struct eng_sno_table t;

	open_engine();
	write_family();
	v = eng_layer_by_spec(eng, "v");
	pack_layer(v);
	cr_assert_eq(eng_sno_table_build(eng, v->rec.uid, &t), 0);
	t.n = 0; /* no segment of the family here */
	cr_assert_eq(load_layer(v, &t), -ENOENT);
	eng_sno_table_free(&t);
	/* a chunk naming a slot of no family segment is refused at packing */
	cr_assert_eq(eng_fmaps_add(eng, v->rec.uid + 1, &pk.cur, 0, (struct ondisk_map_entry[]){
			{ .index = 0, .block = 1, .slot = 0, .crc = 0 } }, 1), -EXDEV);
}
