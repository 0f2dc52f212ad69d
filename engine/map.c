/* engine/map.c — sparse two-level extent map; see engine/map.h. */
#include "engine/map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* slot_plus1 == 0 marks a hole, so a calloc()ed leaf is all holes; CELL_ZERO marks a
 * zero entry (MAP_SLOT_ZERO). */
#define CELL_ZERO UINT32_MAX

struct map_cell {
	uint32_t slot_plus1;
	uint32_t block;
	uint32_t crc;
};

struct map_leaf {
	struct map_cell cells[MAPX_LEAF_BLOCKS];
	uint32_t used;   /* cells that are not holes (data and zero entries) */
	uint8_t dirty; /* one bit per chunk */
	bool listed;   /* on the dirty list */
};
_Static_assert(MAPX_CHUNKS_PER_LEAF <= 8, "dirty bits fit a byte");

struct map {
	uint64_t nblocks;
	uint64_t nleaves;
	struct map_leaf **leaves;
	uint64_t mapped; /* data cells */
	map_ref_fn ref;
	void *ref_arg;
	uint64_t *dirty_list; /* leaf indexes with dirty chunks */
	uint64_t ndirty, dirty_cap;
	/* a sliced take (map_take_begin): the dirty list it set aside, and how far it got;
	 * its leaves stay `listed` until emitted, so that a change meanwhile is emitted
	 * by it (newest content) instead of listed again */
	uint64_t *taking;
	uint64_t ntaking, taken;
};

static uint64_t leaves_for(uint64_t nblocks)
{
	return (nblocks + MAPX_LEAF_BLOCKS - 1) >> MAPX_LEAF_SHIFT;
}

int map_create(uint64_t nblocks, map_ref_fn ref, void *ref_arg, struct map **out)
{
	struct map *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->ref = ref;
	m->ref_arg = ref_arg;
	m->nleaves = leaves_for(nblocks);
	m->nblocks = nblocks;
	m->leaves = calloc(m->nleaves ? m->nleaves : 1, sizeof(*m->leaves));
	if (!m->leaves) {
		free(m);
		return -ENOMEM;
	}
	*out = m;
	return 0;
}

void map_destroy(struct map *m)
{
	if (!m)
		return;
	for (uint64_t i = 0; i < m->nleaves; i++)
		free(m->leaves[i]);
	free(m->leaves);
	free(m->dirty_list);
	free(m->taking);
	free(m);
}

uint64_t map_nblocks(const struct map *m)
{
	return m->nblocks;
}

uint64_t map_mapped_blocks(const struct map *m)
{
	return m->mapped;
}

static int mark_dirty(struct map *m, uint64_t leaf_idx, unsigned cell)
{
	struct map_leaf *leaf = m->leaves[leaf_idx];

	leaf->dirty |= (uint8_t)(1u << (cell >> MAP_CHUNK_SHIFT));
	if (leaf->listed)
		return 0;
	if (m->ndirty == m->dirty_cap) {
		uint64_t cap = m->dirty_cap ? m->dirty_cap * 2 : 64;
		uint64_t *n = realloc(m->dirty_list, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		m->dirty_list = n;
		m->dirty_cap = cap;
	}
	m->dirty_list[m->ndirty++] = leaf_idx;
	leaf->listed = true;
	return 0;
}

static struct map_leaf *leaf_get(struct map *m, uint64_t leaf_idx, bool create)
{
	if (!m->leaves[leaf_idx] && create)
		m->leaves[leaf_idx] = calloc(1, sizeof(struct map_leaf));
	return m->leaves[leaf_idx];
}

static void cell_to_loc(const struct map_cell *c, struct map_loc *loc)
{
	loc->slot = c->slot_plus1 == CELL_ZERO ? MAP_SLOT_ZERO : c->slot_plus1 - 1;
	loc->block = c->block;
	loc->crc = c->crc;
}

/* Replaces a cell's content, keeping counts and references right. */
static int cell_store(struct map *m, uint64_t lba, const struct map_loc *loc)
{
	uint64_t li = lba >> MAPX_LEAF_SHIFT;
	unsigned ci = lba & (MAPX_LEAF_BLOCKS - 1);
	struct map_leaf *leaf = leaf_get(m, li, loc != NULL);
	struct map_cell *c;
	int r;

	if (!leaf)
		return loc ? -ENOMEM : 0;
	c = &leaf->cells[ci];
	if (!c->slot_plus1 && !loc)
		return 0;
	r = mark_dirty(m, li, ci);
	if (r < 0)
		return r;
	if (c->slot_plus1 == CELL_ZERO) {
		leaf->used--;
	} else if (c->slot_plus1) {
		struct map_loc old;
		cell_to_loc(c, &old);
		m->ref(m->ref_arg, &old, -1);
		leaf->used--;
		m->mapped--;
	}
	if (loc && loc->slot == MAP_SLOT_ZERO) {
		c->slot_plus1 = CELL_ZERO;
		c->block = loc->block == MAP_ZERO_ALLOCATED ? MAP_ZERO_ALLOCATED : 0;
		c->crc = 0;
		leaf->used++;
	} else if (loc) {
		c->slot_plus1 = loc->slot + 1;
		c->block = loc->block;
		c->crc = loc->crc;
		leaf->used++;
		m->mapped++;
		m->ref(m->ref_arg, loc, +1);
	} else {
		memset(c, 0, sizeof(*c));
	}
	return 0;
}

bool map_get(const struct map *m, uint64_t lba, struct map_loc *out)
{
	const struct map_leaf *leaf;
	const struct map_cell *c;

	if (lba >= m->nblocks)
		return false;
	leaf = m->leaves[lba >> MAPX_LEAF_SHIFT];
	if (!leaf)
		return false;
	c = &leaf->cells[lba & (MAPX_LEAF_BLOCKS - 1)];
	if (!c->slot_plus1)
		return false;
	if (out)
		cell_to_loc(c, out);
	return true;
}

int map_set(struct map *m, uint64_t lba, const struct map_loc *loc)
{
	if (lba >= m->nblocks)
		return -ERANGE;
	return cell_store(m, lba, loc);
}

int map_move(struct map *m, uint64_t lba, uint32_t src_slot, uint32_t src_block,
	     const struct map_loc *dst)
{
	struct map_loc cur;
	int r;

	if (!map_get(m, lba, &cur) || cur.slot != src_slot || cur.block != src_block)
		return 0;
	r = cell_store(m, lba, dst);
	return r < 0 ? r : 1;
}

int map_for_each_range(const struct map *m, uint64_t lba, uint64_t nblocks,
		       int (*fn)(void *arg, uint64_t lba, const struct map_loc *loc), void *arg)
{
	uint64_t end = lba + nblocks;

	if (end > m->nblocks || end < lba)
		end = m->nblocks;
	while (lba < end) {
		uint64_t li = lba >> MAPX_LEAF_SHIFT;
		uint64_t leaf_end = (li + 1) << MAPX_LEAF_SHIFT;
		const struct map_leaf *leaf = m->leaves[li];

		if (leaf_end > end)
			leaf_end = end;
		for (; leaf && leaf->used && lba < leaf_end; lba++) {
			const struct map_cell *c = &leaf->cells[lba & (MAPX_LEAF_BLOCKS - 1)];
			struct map_loc loc;
			int r;

			if (!c->slot_plus1)
				continue;
			cell_to_loc(c, &loc);
			r = fn(arg, lba, &loc);
			if (r)
				return r;
		}
		lba = leaf_end;
	}
	return 0;
}

static int clear_cell(void *arg, uint64_t lba, const struct map_loc *loc)
{
	(void)loc;
	cell_store(arg, lba, NULL); /* only the dirty list can fail to grow: go on */
	return 0;
}

/* Walks only the entries: empty leaves are skipped, a leaf's walk stops once it has
 * no entry left, and clearing frees no leaf under the walk. */
void map_clear(struct map *m, uint64_t lba, uint64_t nblocks)
{
	map_for_each_range(m, lba, nblocks, clear_cell, m);
}

int map_for_each(const struct map *m,
		 int (*fn)(void *arg, uint64_t lba, const struct map_loc *loc), void *arg)
{
	return map_for_each_range(m, 0, m->nblocks, fn, arg);
}

static int emit_chunk(const struct map_leaf *leaf, uint64_t li, unsigned k,
		      map_chunk_fn emit, void *arg)
{
	struct ondisk_map_entry e[MAP_CHUNK_BLOCKS];
	size_t n = 0;

	for (unsigned i = 0; i < MAP_CHUNK_BLOCKS; i++) {
		const struct map_cell *c = &leaf->cells[k * MAP_CHUNK_BLOCKS + i];

		if (!c->slot_plus1)
			continue;
		e[n].index = (uint16_t)i;
		e[n].block = (uint16_t)c->block;
		e[n].slot = c->slot_plus1 == CELL_ZERO ? ONDISK_MAP_SLOT_ZERO : c->slot_plus1 - 1;
		e[n].crc = c->crc;
		n++;
	}
	return emit(arg, li * MAPX_CHUNKS_PER_LEAF + k, e, n);
}

int map_for_each_chunk(const struct map *m, map_chunk_fn emit, void *arg)
{
	for (uint64_t li = 0; li < m->nleaves; li++) {
		const struct map_leaf *leaf = m->leaves[li];

		for (unsigned k = 0; leaf && k < MAPX_CHUNKS_PER_LEAF; k++) {
			int r = emit_chunk(leaf, li, k, emit, arg);

			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* Emits a listed leaf's dirty chunks and takes it off the list. */
static int take_leaf(struct map *m, uint64_t li, map_chunk_fn emit, void *arg, size_t *emitted)
{
	struct map_leaf *leaf = m->leaves[li];

	if (!leaf)
		return 0;
	for (unsigned k = 0; k < MAPX_CHUNKS_PER_LEAF; k++) {
		int r;

		if (!(leaf->dirty & (1u << k)))
			continue;
		r = emit_chunk(leaf, li, k, emit, arg);
		if (r < 0)
			return r;
		leaf->dirty &= (uint8_t)~(1u << k);
		(*emitted)++;
	}
	leaf->listed = false;
	return 0;
}

int map_take_dirty(struct map *m, map_chunk_fn emit, void *arg)
{
	int r = map_take_begin(m);

	while (r == 0 && map_taking(m))
		r = map_take_some(m, SIZE_MAX, emit, arg, &(size_t){ 0 });
	return r < 0 ? r : 0;
}

bool map_taking(const struct map *m)
{
	return m->taking != NULL;
}

int map_take_begin(struct map *m)
{
	if (m->taking)
		return -EBUSY;
	if (!m->ndirty)
		return 0;
	m->taking = m->dirty_list;
	m->ntaking = m->ndirty;
	m->taken = 0;
	m->dirty_list = NULL;
	m->ndirty = m->dirty_cap = 0;
	return 0;
}

static void take_end(struct map *m)
{
	free(m->taking);
	m->taking = NULL;
	m->ntaking = m->taken = 0;
}

int map_take_some(struct map *m, size_t max_chunks, map_chunk_fn emit, void *arg,
		  size_t *emitted)
{
	size_t n = 0;

	while (m->taken < m->ntaking && n < max_chunks) {
		int r = take_leaf(m, m->taking[m->taken], emit, arg, &n);

		if (r < 0) {
			*emitted += n;
			return r;
		}
		m->taken++;
	}
	*emitted += n;
	if (m->taken < m->ntaking)
		return 1;
	take_end(m);
	return 0;
}

void map_take_abort(struct map *m)
{
	for (uint64_t i = m->taken; i < m->ntaking; i++) {
		uint64_t li = m->taking[i];
		struct map_leaf *leaf = m->leaves[li];

		if (!leaf)
			continue;
		leaf->listed = false;
		for (unsigned k = 0; k < MAPX_CHUNKS_PER_LEAF; k++)
			if (leaf->dirty & (1u << k))
				mark_dirty(m, li, k * MAP_CHUNK_BLOCKS); /* no memory: as elsewhere */
	}
	take_end(m);
}

int map_resize(struct map *m, uint64_t nblocks)
{
	uint64_t nleaves = leaves_for(nblocks);

	/* Shrinking clears the cells past the end but keeps their (now empty) leaves, so
	 * that the next checkpoint still deletes their chunks from RocksDB. */
	if (nblocks < m->nblocks)
		map_clear(m, nblocks, m->nblocks - nblocks);
	if (nleaves > m->nleaves) {
		struct map_leaf **n = realloc(m->leaves, nleaves * sizeof(*n));

		if (!n)
			return -ENOMEM;
		for (uint64_t li = m->nleaves; li < nleaves; li++)
			n[li] = NULL;
		m->leaves = n;
		m->nleaves = nleaves;
	}
	m->nblocks = nblocks;
	return 0;
}

void map_mark_all_dirty(struct map *m)
{
	for (uint64_t li = 0; li < m->nleaves; li++)
		if (m->leaves[li])
			for (unsigned k = 0; k < MAPX_CHUNKS_PER_LEAF; k++)
				if (mark_dirty(m, li, k * MAP_CHUNK_BLOCKS) < 0)
					return;
}

void map_clear_dirty(struct map *m)
{
	map_take_abort(m);
	for (uint64_t i = 0; i < m->ndirty; i++) {
		struct map_leaf *leaf = m->leaves[m->dirty_list[i]];
		if (leaf) {
			leaf->dirty = 0;
			leaf->listed = false;
		}
	}
	m->ndirty = 0;
}

int map_load_chunk(struct map *m, uint64_t chunk, const void *val, size_t len)
{
	const struct ondisk_map_entry *e = val;
	size_t n = len / sizeof(*e);
	uint64_t base = chunk * MAP_CHUNK_BLOCKS;
	int past_end = 0;

	if (len % sizeof(*e) || n > MAP_CHUNK_BLOCKS)
		return -EPROTO;
	for (size_t i = 0; i < n; i++) {
		struct ondisk_map_entry x;

		memcpy(&x, &e[i], sizeof(x));
		if (x.index >= MAP_CHUNK_BLOCKS ||
		    (x.slot == ONDISK_MAP_SLOT_ZERO && x.block > ONDISK_MAP_ZERO_ALLOCATED))
			return -EPROTO;
	}
	for (size_t i = 0; i < n; i++) {
		struct ondisk_map_entry x;
		struct map_loc loc;
		int r;

		memcpy(&x, &e[i], sizeof(x));
		if (base + x.index >= m->nblocks) {
			past_end = -ERANGE;
			continue;
		}
		loc.slot = x.slot;
		loc.block = x.block;
		loc.crc = x.crc;
		r = cell_store(m, base + x.index, &loc);
		if (r < 0)
			return r;
	}
	return past_end;
}
