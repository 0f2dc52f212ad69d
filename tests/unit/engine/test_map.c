/* tests/unit/engine/test_map.c — engine/map.c: the sparse extent map, its reference
 * callback (the engine's live counts) and its checkpoint chunks.
 *
 * The reference callback is checked against a shadow: per-slot counts kept by the
 * test, which must equal the number of mapped LBAs pointing into each slot.
 */
#include "engine/map.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NSLOTS 8u

/* Live counts as the engine keeps them, from the map's reference callback. */
struct refs {
	int64_t live[NSLOTS];
	int64_t total;
	unsigned calls;
};

static void on_ref(void *arg, const struct map_loc *loc, int delta)
{
	struct refs *r = arg;

	cr_assert_lt(loc->slot, NSLOTS, "reference to slot %u", loc->slot);
	cr_assert(delta == 1 || delta == -1);
	r->live[loc->slot] += delta;
	r->total += delta;
	r->calls++;
}

static struct refs refs;

static struct map *map_new(uint64_t nblocks)
{
	struct map *m = NULL;

	memset(&refs, 0, sizeof(refs));
	cr_assert_eq(map_create(nblocks, on_ref, &refs, &m), 0);
	return m;
}

static struct map_loc loc(uint32_t slot, uint32_t block)
{
	return (struct map_loc){ .slot = slot, .block = block, .crc = slot * 100000u + block };
}

static void set(struct map *m, uint64_t lba, uint32_t slot, uint32_t block)
{
	struct map_loc l = loc(slot, block);

	cr_assert_eq(map_set(m, lba, &l), 0, "map_set lba %llu", (unsigned long long)lba);
}

static void expect_at(const struct map *m, uint64_t lba, uint32_t slot, uint32_t block)
{
	struct map_loc got;

	cr_assert(map_get(m, lba, &got), "lba %llu unmapped", (unsigned long long)lba);
	cr_assert_eq(got.slot, slot, "lba %llu", (unsigned long long)lba);
	cr_assert_eq(got.block, block, "lba %llu", (unsigned long long)lba);
	cr_assert_eq(got.crc, loc(slot, block).crc, "lba %llu", (unsigned long long)lba);
}

/* The shadow counts equal a recount of the map. */
static int recount(void *arg, uint64_t lba, const struct map_loc *l)
{
	int64_t *live = arg;

	(void)lba;
	if (l->slot != MAP_SLOT_ZERO)
		live[l->slot]++;
	return 0;
}

static void check_refs(const struct map *m)
{
	int64_t live[NSLOTS] = { 0 };

	map_for_each(m, recount, live);
	for (unsigned s = 0; s < NSLOTS; s++)
		cr_assert_eq(refs.live[s], live[s], "slot %u", s);
	cr_assert_eq((uint64_t)refs.total, map_mapped_blocks(m));
}

Test(map, set_get_clear_across_leaf_boundaries)
{
	struct map *m = map_new(4 * MAPX_LEAF_BLOCKS);
	uint64_t edge = MAPX_LEAF_BLOCKS;

	for (uint64_t lba = edge - 3; lba < edge + 3; lba++)
		set(m, lba, 1, (uint32_t)lba);
	set(m, 4 * MAPX_LEAF_BLOCKS - 1, 2, 9); /* the last block */
	cr_assert_eq(map_mapped_blocks(m), 7);
	for (uint64_t lba = edge - 3; lba < edge + 3; lba++)
		expect_at(m, lba, 1, (uint32_t)lba);
	expect_at(m, 4 * MAPX_LEAF_BLOCKS - 1, 2, 9);

	map_clear(m, edge - 2, 4); /* two blocks on either side of the edge */
	cr_assert(map_get(m, edge - 3, NULL));
	for (uint64_t lba = edge - 2; lba < edge + 2; lba++)
		cr_assert_not(map_get(m, lba, NULL), "lba %llu", (unsigned long long)lba);
	expect_at(m, edge + 2, 1, (uint32_t)(edge + 2));
	cr_assert_eq(map_mapped_blocks(m), 3);
	check_refs(m);
	map_destroy(m);
}

Test(map, holes_read_as_unmapped)
{
	struct map *m = map_new(10 * MAPX_LEAF_BLOCKS);
	struct map_loc got = loc(7, 7);

	cr_assert_not(map_get(m, 0, &got)); /* no leaf at all */
	set(m, 5 * MAPX_LEAF_BLOCKS + 3, 1, 1);
	cr_assert_not(map_get(m, 5 * MAPX_LEAF_BLOCKS + 2, &got)); /* a hole in a leaf */
	cr_assert_not(map_get(m, 10 * MAPX_LEAF_BLOCKS, &got));     /* past the end */
	cr_assert_eq(got.slot, 7, "a miss leaves *out alone");
	cr_assert_eq(map_mapped_blocks(m), 1);
	map_destroy(m);
}

Test(map, set_past_the_end_is_refused)
{
	struct map *m = map_new(100);
	struct map_loc l = loc(1, 1);

	cr_assert_eq(map_set(m, 100, &l), -ERANGE);
	cr_assert_eq(refs.calls, 0);
	map_destroy(m);
}

Test(map, clear_of_holes_and_past_the_end_is_harmless)
{
	struct map *m = map_new(100);

	set(m, 99, 3, 3);
	map_clear(m, 0, 50);
	map_clear(m, 98, UINT64_MAX); /* wraps: clamped to the end */
	cr_assert_not(map_get(m, 99, NULL));
	map_clear(m, 1000, 10);
	cr_assert_eq(map_mapped_blocks(m), 0);
	check_refs(m);
	map_destroy(m);
}

Test(map, move_applies_only_when_the_source_matches)
{
	struct map *m = map_new(64);
	struct map_loc dst = loc(4, 40);

	set(m, 10, 1, 5);
	cr_assert_eq(map_move(m, 10, 1, 6, &dst), 0, "other block");
	cr_assert_eq(map_move(m, 10, 2, 5, &dst), 0, "other slot");
	cr_assert_eq(map_move(m, 11, 1, 5, &dst), 0, "unmapped lba");
	expect_at(m, 10, 1, 5);
	cr_assert_not(map_get(m, 11, NULL));

	cr_assert_eq(map_move(m, 10, 1, 5, &dst), 1);
	expect_at(m, 10, 4, 40);
	cr_assert_eq(map_move(m, 10, 1, 5, &dst), 0, "a second move of the same source");
	cr_assert_eq(refs.live[1], 0);
	cr_assert_eq(refs.live[4], 1);
	check_refs(m);
	map_destroy(m);
}

Test(map, reference_deltas_add_up)
{
	struct map *m = map_new(3 * MAPX_LEAF_BLOCKS);
	struct map_loc dst = loc(7, 0);

	for (uint32_t i = 0; i < 3 * MAPX_LEAF_BLOCKS; i++)
		set(m, i, i % 5, i);
	check_refs(m);
	for (uint32_t i = 0; i < 3 * MAPX_LEAF_BLOCKS; i += 3)
		set(m, i, 6, i); /* overwrite: -1 on the old slot, +1 on the new */
	check_refs(m);
	set(m, 4, 6, 4);
	set(m, 4, 6, 4); /* the same location again */
	check_refs(m);
	map_clear(m, 100, 700);
	check_refs(m);
	cr_assert_eq(map_move(m, 1, 1, 1, &dst), 1);
	check_refs(m);
	cr_assert_eq(map_resize(m, 50), 0);
	check_refs(m);
	map_clear(m, 0, 50);
	cr_assert_eq(refs.total, 0);
	for (unsigned s = 0; s < NSLOTS; s++)
		cr_assert_eq(refs.live[s], 0, "slot %u", s);
	map_destroy(m);
}

/* ---- checkpoint chunks ---- */

#define MAX_EMITS 64

struct emitted {
	size_t n;
	struct {
		uint64_t chunk;
		size_t n;
		struct ondisk_map_entry e[MAP_CHUNK_BLOCKS];
	} c[MAX_EMITS];
};

static int on_emit(void *arg, uint64_t chunk, const struct ondisk_map_entry *e, size_t n)
{
	struct emitted *em = arg;

	cr_assert_lt(em->n, MAX_EMITS);
	cr_assert_leq(n, MAP_CHUNK_BLOCKS);
	em->c[em->n].chunk = chunk;
	em->c[em->n].n = n;
	memcpy(em->c[em->n].e, e, n * sizeof(*e));
	em->n++;
	return 0;
}

static struct emitted *take(struct map *m)
{
	static struct emitted em;

	memset(&em, 0, sizeof(em));
	cr_assert_eq(map_take_dirty(m, on_emit, &em), 0);
	return &em;
}

/* The emitted entry count for a chunk, or -1 if it was not emitted. */
static long emitted_n(const struct emitted *em, uint64_t chunk)
{
	long n = -1;

	for (size_t i = 0; i < em->n; i++) {
		if (em->c[i].chunk != chunk)
			continue;
		cr_assert_eq(n, -1, "chunk %llu emitted twice", (unsigned long long)chunk);
		n = (long)em->c[i].n;
	}
	return n;
}

Test(map, take_dirty_emits_exactly_the_changed_chunks)
{
	struct map *m = map_new(4 * MAPX_LEAF_BLOCKS);
	const uint64_t far = 3 * MAPX_LEAF_BLOCKS + 5; /* in chunk far / 64, another leaf */
	struct emitted *em;

	set(m, 1, 2, 20);
	set(m, 63, 2, 21);
	set(m, 64, 3, 30);
	set(m, far, 1, 10);
	em = take(m);
	cr_assert_eq(em->n, 3);
	cr_assert_eq(emitted_n(em, 0), 2);
	cr_assert_eq(emitted_n(em, 1), 1);
	cr_assert_eq(emitted_n(em, far / MAP_CHUNK_BLOCKS), 1);
	for (size_t i = 0; i < em->n; i++) {
		if (em->c[i].chunk != 0)
			continue;
		/* index order, on-disk form */
		cr_assert_eq(em->c[i].e[0].index, 1);
		cr_assert_eq(em->c[i].e[0].slot, 2);
		cr_assert_eq(em->c[i].e[0].block, 20);
		cr_assert_eq(em->c[i].e[0].crc, loc(2, 20).crc);
		cr_assert_eq(em->c[i].e[1].index, 63);
		cr_assert_eq(em->c[i].e[1].block, 21);
	}
	cr_assert_eq(take(m)->n, 0, "nothing changed since");

	map_clear(m, 64, 1); /* chunk 1 becomes empty */
	set(m, 2, 4, 44);    /* chunk 0 changes */
	map_clear(m, 200, 10); /* holes only: no change */
	em = take(m);
	cr_assert_eq(em->n, 2);
	cr_assert_eq(emitted_n(em, 0), 3);
	cr_assert_eq(emitted_n(em, 1), 0, "an emptied chunk is emitted with n = 0");
	cr_assert_eq(take(m)->n, 0);
	map_destroy(m);
}

Test(map, load_chunk_round_trips_take_dirty)
{
	struct map *src = map_new(2 * MAPX_LEAF_BLOCKS), *dst;
	struct refs src_refs;
	struct emitted *em;

	for (uint32_t i = 0; i < 2 * MAPX_LEAF_BLOCKS; i += 7)
		set(src, i, i % NSLOTS, 1000 + i);
	src_refs = refs;
	em = take(src);
	dst = map_new(2 * MAPX_LEAF_BLOCKS);
	for (size_t i = 0; i < em->n; i++)
		cr_assert_eq(map_load_chunk(dst, em->c[i].chunk, em->c[i].e,
					    em->c[i].n * sizeof(struct ondisk_map_entry)), 0);
	cr_assert_eq(map_mapped_blocks(dst), map_mapped_blocks(src));
	for (uint32_t i = 0; i < 2 * MAPX_LEAF_BLOCKS; i++) {
		if (i % 7)
			cr_assert_not(map_get(dst, i, NULL), "lba %u", i);
		else
			expect_at(dst, i, i % NSLOTS, 1000 + i);
	}
	cr_assert_arr_eq(refs.live, src_refs.live, sizeof(refs.live), "live counts on load");
	/* loaded chunks are dirty until the loader says they are what is stored */
	map_clear_dirty(dst);
	cr_assert_eq(take(dst)->n, 0);
	map_destroy(src);
	map_destroy(dst);
}

/* Zero entries keep whether they are allocated (block 1) or a trim's (block 0), in
 * memory and through a checkpoint's chunks; they reference no block. */
Test(map, zero_entries_keep_their_kind_through_a_chunk)
{
	struct map *src = map_new(MAP_CHUNK_BLOCKS), *dst;
	struct map_loc trim = { .slot = MAP_SLOT_ZERO }, alloc = trim, got;
	struct emitted *em;

	alloc.block = MAP_ZERO_ALLOCATED;
	cr_assert_eq(map_set(src, 3, &trim), 0);
	cr_assert_eq(map_set(src, 4, &alloc), 0);
	set(src, 5, 1, 9);
	cr_assert_eq(map_mapped_blocks(src), 1, "zero entries are not data");
	em = take(src);
	cr_assert_eq(em->n, 1);
	cr_assert_eq(em->c[0].e[1].slot, ONDISK_MAP_SLOT_ZERO);
	cr_assert_eq(em->c[0].e[1].block, ONDISK_MAP_ZERO_ALLOCATED);
	dst = map_new(MAP_CHUNK_BLOCKS);
	cr_assert_eq(map_load_chunk(dst, 0, em->c[0].e, em->c[0].n * sizeof(em->c[0].e[0])), 0);
	cr_assert(map_get(dst, 3, &got) && got.slot == MAP_SLOT_ZERO && got.block == 0);
	cr_assert(map_get(dst, 4, &got) && got.slot == MAP_SLOT_ZERO &&
		  got.block == MAP_ZERO_ALLOCATED);
	expect_at(dst, 5, 1, 9);
	cr_assert_eq(map_mapped_blocks(dst), 1);
	/* a zero entry with any other block is not something this quill wrote */
	em->c[0].e[1].block = 2;
	cr_assert_eq(map_load_chunk(dst, 0, em->c[0].e, em->c[0].n * sizeof(em->c[0].e[0])),
		     -EPROTO);
	map_destroy(src);
	map_destroy(dst);
}

Test(map, load_chunk_rejects_a_partial_entry)
{
	struct map *m = map_new(128);
	struct ondisk_map_entry e[2] = { { .index = 0, .slot = 1 }, { .index = 1, .slot = 1 } };

	cr_assert_eq(map_load_chunk(m, 0, e, sizeof(e) - 1), -EPROTO);
	map_destroy(m);
}

Test(map, load_chunk_rejects_too_many_entries)
{
	struct map *m = map_new(128);
	static struct ondisk_map_entry e[MAP_CHUNK_BLOCKS + 1];

	for (unsigned i = 0; i <= MAP_CHUNK_BLOCKS; i++)
		e[i] = (struct ondisk_map_entry){ .index = (uint16_t)(i % MAP_CHUNK_BLOCKS) };
	cr_assert_eq(map_load_chunk(m, 0, e, sizeof(e)), -EPROTO);
	map_destroy(m);
}

Test(map, load_chunk_rejects_an_index_outside_the_chunk)
{
	struct map *m = map_new(128);
	struct ondisk_map_entry e = { .index = MAP_CHUNK_BLOCKS, .slot = 1 };

	cr_assert_eq(map_load_chunk(m, 0, &e, sizeof(e)), -EPROTO);
	map_destroy(m);
}

Test(map, load_chunk_skips_blocks_past_the_end)
{
	struct map *m = map_new(100); /* chunk 1 holds lbas 64..99 */
	struct ondisk_map_entry e = { .index = 0, .slot = 1 };
	struct ondisk_map_entry tail[2] = { { .index = 35, .slot = 1 },   /* lba 99 */
					    { .index = 36, .slot = 1 } }; /* lba 100 */

	cr_assert_eq(map_load_chunk(m, 2, &e, sizeof(e)), -ERANGE);
	cr_assert_eq(map_mapped_blocks(m), 0);
	cr_assert_eq(map_load_chunk(m, 1, tail, sizeof(tail)), -ERANGE);
	cr_assert_eq(map_mapped_blocks(m), 1, "the block inside the volume is loaded");
	map_destroy(m);
}

Test(map, resize_shrink_unmaps_and_checkpoint_deletes)
{
	struct map *m = map_new(4 * MAPX_LEAF_BLOCKS);
	const uint64_t keep = MAPX_LEAF_BLOCKS + 10; /* cut inside chunk 8 (lbas 512..575) */
	struct emitted *em;

	set(m, 5, 1, 5);
	set(m, keep - 1, 1, 6);
	set(m, keep, 2, 7);
	set(m, 3 * MAPX_LEAF_BLOCKS + 1, 3, 8);
	take(m);

	cr_assert_eq(map_resize(m, keep), 0);
	cr_assert_eq(map_nblocks(m), keep);
	cr_assert_eq(map_mapped_blocks(m), 2);
	cr_assert_eq(refs.live[2] + refs.live[3], 0, "cut blocks unreferenced");
	em = take(m);
	cr_assert_eq(em->n, 2);
	cr_assert_eq(emitted_n(em, keep / MAP_CHUNK_BLOCKS), 1, "the cut chunk keeps its head");
	cr_assert_eq(emitted_n(em, (3 * MAPX_LEAF_BLOCKS + 1) / MAP_CHUNK_BLOCKS), 0);

	cr_assert_eq(map_resize(m, 4 * MAPX_LEAF_BLOCKS), 0); /* grow back: holes */
	cr_assert_not(map_get(m, keep, NULL));
	cr_assert_not(map_get(m, 3 * MAPX_LEAF_BLOCKS + 1, NULL));
	expect_at(m, keep - 1, 1, 6);
	check_refs(m);
	map_destroy(m);
}

Test(map, mark_all_dirty_reemits_every_chunk_that_held_data)
{
	struct map *m = map_new(2 * MAPX_LEAF_BLOCKS);
	struct emitted *em;

	set(m, 0, 1, 1);
	set(m, MAPX_LEAF_BLOCKS + 70, 1, 2);
	map_clear(m, 0, 1);
	take(m);

	map_mark_all_dirty(m);
	em = take(m);
	/* every chunk of every leaf that was ever allocated, empty ones as deletions */
	cr_assert_eq(em->n, 2 * MAPX_CHUNKS_PER_LEAF);
	cr_assert_eq(emitted_n(em, 0), 0);
	cr_assert_eq(emitted_n(em, (MAPX_LEAF_BLOCKS + 70) / MAP_CHUNK_BLOCKS), 1);
	cr_assert_eq(take(m)->n, 0);
	map_destroy(m);
}

/* Applies every emitted chunk to `dst`, as RocksDB then start-up would. */
static void load_all(struct map *dst, const struct emitted *em)
{
	for (size_t i = 0; i < em->n; i++)
		cr_assert_eq(map_load_chunk(dst, em->c[i].chunk, em->c[i].e,
					    em->c[i].n * sizeof(struct ondisk_map_entry)), 0);
}

/* One slice of at most `max` chunks into em (appended). Returns map_take_some's. */
static int take_slice(struct map *m, size_t max, struct emitted *em, size_t *emitted)
{
	size_t before = em->n;
	int r = map_take_some(m, max, on_emit, em, emitted);

	cr_assert_geq(r, 0);
	/* whole leaves: at most a leaf's chunks past the budget */
	cr_assert_leq(em->n - before, max + MAPX_CHUNKS_PER_LEAF - 1);
	return r;
}

/* A take in slices emits what one take emits, and nothing twice. */
Test(map, a_take_in_slices_emits_what_one_take_emits)
{
	const uint64_t nblocks = 6 * MAPX_LEAF_BLOCKS;
	struct map *a = map_new(nblocks), *b;
	static struct emitted sliced;
	struct emitted *whole;
	size_t emitted = 0;
	int slices = 0;

	for (uint64_t i = 0; i < nblocks; i += 13)
		set(a, i, (uint32_t)(i % NSLOTS), (uint32_t)i);
	b = map_new(nblocks);
	for (uint64_t i = 0; i < nblocks; i += 13)
		set(b, i, (uint32_t)(i % NSLOTS), (uint32_t)i);
	whole = take(a);
	cr_assert_gt(whole->n, 8, "enough chunks for several slices");
	memset(&sliced, 0, sizeof(sliced));
	cr_assert_eq(map_take_begin(b), 0);
	cr_assert(map_taking(b));
	cr_assert_eq(map_take_begin(b), -EBUSY, "one take at a time");
	while (take_slice(b, 3, &sliced, &emitted) > 0)
		slices++;
	cr_assert_not(map_taking(b));
	cr_assert_gt(slices, 2, "it took several slices");
	cr_assert_eq(sliced.n, whole->n);
	cr_assert_eq(emitted, whole->n, "the count matches what was emitted");
	for (size_t i = 0; i < whole->n; i++) {
		cr_assert_eq(emitted_n(&sliced, whole->c[i].chunk), (long)whole->c[i].n);
		for (size_t j = 0; j < sliced.n; j++)
			if (sliced.c[j].chunk == whole->c[i].chunk)
				cr_assert_arr_eq(sliced.c[j].e, whole->c[i].e,
						 whole->c[i].n * sizeof(struct ondisk_map_entry));
	}
	cr_assert_eq(take(b)->n, 0, "nothing left dirty");
	map_destroy(a);
	map_destroy(b);
}

/* Changes while a take is in slices: a chunk not reached yet is emitted once, with its
 * newest content; one already emitted is dirty again for the next take. The chunks of
 * both takes loaded in order give the map as it is. */
Test(map, changes_during_a_sliced_take_reach_this_take_or_the_next)
{
	const uint64_t nblocks = 4 * MAPX_LEAF_BLOCKS;
	const uint64_t last = 3 * MAPX_LEAF_BLOCKS + 1; /* in the last leaf taken */
	struct map *m = map_new(nblocks), *dst;
	static struct emitted first;
	struct emitted *second;
	size_t emitted = 0;

	/* one chunk in each of the four leaves, listed in order 0..3 */
	for (uint64_t leaf = 0; leaf < 4; leaf++)
		set(m, leaf * MAPX_LEAF_BLOCKS + 1, 1, (uint32_t)leaf);
	take(m);
	for (uint64_t leaf = 0; leaf < 4; leaf++)
		set(m, leaf * MAPX_LEAF_BLOCKS + 1, 2, (uint32_t)leaf);
	memset(&first, 0, sizeof(first));
	cr_assert_eq(map_take_begin(m), 0);
	/* in list order, one leaf per slice of 1: leaf 0 first */
	cr_assert_eq(take_slice(m, 1, &first, &emitted), 1);
	cr_assert_eq(first.n, 1);
	cr_assert_eq(first.c[0].chunk, 0);

	set(m, 1, 3, 33);                     /* leaf 0, emitted already: the next take */
	set(m, last, 3, 10);                  /* leaf 3, not reached: this take, newest */
	set(m, MAPX_LEAF_BLOCKS + 64, 3, 11); /* leaf 1, another chunk, not reached */
	map_clear(m, 2 * MAPX_LEAF_BLOCKS + 1, 1); /* leaf 2 emptied before its turn */
	while (take_slice(m, 1, &first, &emitted) > 0)
		;
	cr_assert_eq(first.n, 5, "leaf 0 once, two chunks of leaf 1, leaf 2, leaf 3");
	cr_assert_eq(emitted, 5);
	cr_assert_eq(emitted_n(&first, last / MAP_CHUNK_BLOCKS), 1);
	cr_assert_eq(emitted_n(&first, (2 * MAPX_LEAF_BLOCKS) / MAP_CHUNK_BLOCKS), 0);
	cr_assert_eq(emitted_n(&first, (MAPX_LEAF_BLOCKS + 64) / MAP_CHUNK_BLOCKS), 1);
	for (size_t i = 0; i < first.n; i++) {
		if (first.c[i].chunk == last / MAP_CHUNK_BLOCKS)
			cr_assert_eq(first.c[i].e[0].block, 10, "leaf 3 as it is when taken");
		if (first.c[i].chunk == 0)
			cr_assert_eq(first.c[i].e[0].block, 0, "leaf 0 as it was when taken");
	}

	second = take(m);
	cr_assert_eq(second->n, 1, "only the chunk changed after its leaf was taken");
	cr_assert_eq(second->c[0].chunk, 0);
	cr_assert_eq(second->c[0].e[0].block, 33);

	dst = map_new(nblocks);
	load_all(dst, &first);
	load_all(dst, second);
	for (uint64_t lba = 0; lba < nblocks; lba++) {
		struct map_loc want, got;
		bool has = map_get(m, lba, &want);

		cr_assert_eq(map_get(dst, lba, &got), has, "lba %llu", (unsigned long long)lba);
		if (has)
			cr_assert(want.slot == got.slot && want.block == got.block, "lba %llu",
				  (unsigned long long)lba);
	}
	map_destroy(m);
	map_destroy(dst);
}

/* A take given up (a checkpoint that could not go on) leaves every chunk it had not
 * emitted dirty, and the next take emits them. */
Test(map, an_aborted_take_gives_its_chunks_back)
{
	struct map *m = map_new(4 * MAPX_LEAF_BLOCKS);
	static struct emitted part;
	struct emitted *rest;
	size_t emitted = 0;

	for (uint64_t leaf = 0; leaf < 4; leaf++)
		set(m, leaf * MAPX_LEAF_BLOCKS, 1, (uint32_t)leaf);
	memset(&part, 0, sizeof(part));
	cr_assert_eq(map_take_begin(m), 0);
	cr_assert_eq(take_slice(m, 1, &part, &emitted), 1);
	map_take_abort(m);
	cr_assert_not(map_taking(m));
	rest = take(m);
	cr_assert_eq(part.n + rest->n, 4);
	for (size_t i = 0; i < part.n; i++)
		cr_assert_eq(emitted_n(rest, part.c[i].chunk), -1, "not emitted again");
	map_destroy(m);
}
