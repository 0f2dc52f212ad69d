/* engine/fckpt.c — a family's maps as MAPS blocks and back: the two conversions a
 * family checkpoint needs (docs/replication.md, "Family checkpoints"; the blocks:
 * engine/ondisk.h). Planned: neither the checkpoint nor the adoption calls them yet.
 *
 * In a MAPS block an entry names its block by the family's segment number, not by
 * slot: slots are this node's, and a new owner holds the same segments in other
 * slots. Packing takes chunks as map_take_dirty() emits them (slot-addressed) and
 * turns each slot into its segment number; loading turns each number into the slot
 * that holds that segment here (an sno table built once per load) and replaces the
 * chunk in the layer's map: an empty chunk clears it, so that a newer checkpoint's
 * chunk supersedes an older one's whatever each holds.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "engine/map.h"

int eng_fmaps_add(const struct engine *eng, uint64_t uid, struct fmaps_block *m,
		  uint64_t chunk, const struct ondisk_map_entry *e, size_t n)
{
	struct fmaps_chunk *c;

	if (m->nchunks == ONDISK_FMAPS_CHUNKS)
		return -ENOSPC;
	if (chunk > UINT32_MAX || n > MAP_CHUNK_BLOCKS)
		return -ERANGE;
	c = &m->chunks[m->nchunks];
	c->chunk = (uint32_t)chunk;
	c->nentries = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		struct ondisk_map_entry x;

		memcpy(&x, &e[i], sizeof(x));
		if (x.slot != ONDISK_MAP_SLOT_ZERO) {
			const struct slot *s;

			if (x.slot >= eng->sb.segment_count)
				return -ERANGE;
			s = &eng->slots[x.slot];
			if (s->state == SLOT_FREE || s->family_uid != uid)
				return -EXDEV; /* not a segment of the family: no new owner has it */
			x.slot = s->sno;
		}
		c->e[i] = x;
	}
	m->nchunks++;
	return 0;
}

void eng_sno_table_free(struct eng_sno_table *t)
{
	free(t->slot);
	memset(t, 0, sizeof(*t));
}

int eng_sno_table_build(const struct engine *eng, uint64_t uid, struct eng_sno_table *t)
{
	uint32_t lo = UINT32_MAX, hi = 0;

	memset(t, 0, sizeof(*t));
	for (uint32_t i = 0; i < eng->sb.segment_count; i++) {
		const struct slot *s = &eng->slots[i];

		if (s->state == SLOT_FREE || s->family_uid != uid)
			continue;
		lo = s->sno < lo ? s->sno : lo;
		hi = s->sno > hi ? s->sno : hi;
	}
	if (lo > hi)
		return 0; /* the family has no segment here */
	t->base = lo;
	t->n = hi - lo + 1;
	t->slot = malloc((size_t)t->n * sizeof(*t->slot));
	if (!t->slot)
		return -ENOMEM;
	memset(t->slot, 0xff, (size_t)t->n * sizeof(*t->slot));
	for (uint32_t i = 0; i < eng->sb.segment_count; i++) {
		const struct slot *s = &eng->slots[i];

		if (s->state != SLOT_FREE && s->family_uid == uid)
			t->slot[s->sno - lo] = i;
	}
	return 0;
}

/* The slot holding segment sno here, or UINT32_MAX. */
static uint32_t sno_slot(const struct eng_sno_table *t, uint32_t sno)
{
	return sno >= t->base && sno - t->base < t->n ? t->slot[sno - t->base] : UINT32_MAX;
}

/* One chunk of a MAPS block into map: the chunk's range cleared, then its entries. */
static int load_chunk(struct map *map, const struct eng_sno_table *t,
		      const struct fmaps_chunk *c)
{
	struct ondisk_map_entry e[MAP_CHUNK_BLOCKS];
	uint64_t base = (uint64_t)c->chunk * MAP_CHUNK_BLOCKS;

	for (uint32_t i = 0; i < c->nentries; i++) {
		e[i] = c->e[i];
		if (e[i].slot == ONDISK_MAP_SLOT_ZERO)
			continue;
		e[i].slot = sno_slot(t, c->e[i].slot);
		if (e[i].slot == UINT32_MAX)
			return -ENOENT; /* a segment the checkpoint needs is not here */
	}
	if (base < map_nblocks(map))
		map_clear(map, base, map_nblocks(map) - base < MAP_CHUNK_BLOCKS
					     ? map_nblocks(map) - base : MAP_CHUNK_BLOCKS);
	return map_load_chunk(map, c->chunk, e, c->nentries * sizeof(e[0]));
}

int eng_fmaps_load(struct engine_volume *v, const struct eng_sno_table *t,
		   const struct fmaps_block *m)
{
	int r = 0;

	if (m->layer != v->rec.volume_id)
		return -EINVAL;
	for (uint32_t i = 0; i < m->nchunks && r == 0; i++)
		r = load_chunk(v->map, t, &m->chunks[i]);
	return r;
}
