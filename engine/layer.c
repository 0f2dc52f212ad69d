/* engine/layer.c — layers: reading through them, what retires into them, their tree.
 *
 * Every volume and snapshot is a layer (struct engine_volume) with its own map and its
 * own log. A layer reads through to its parent where its map has nothing and the LBA
 * is below its overlap. A trim in a layer that has a parent leaves zero entries where
 * a parent holds something, so that the trimmed range no longer reads through.
 *
 * This is the hot path's side of layers (eng_resolve, eng_apply_entry at retire and
 * replay), the tree linked at start-up (parents, merge aliases), and how much a layer
 * reads back. What changes the tree is in snap.c, flatten.c and volume.c.
 *
 * Space: every map entry holds one reference on its block (engine/map.h), so a block
 * stays live while any layer maps it, and becomes garbage once none does: the
 * cleaner's usual rule covers snapshots with nothing more. A block is mapped by one
 * layer at a time; a merge moves the entry, it does not copy it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "engine/engine_internal.h"
#include "metadata/meta.h"

/* ---- reading through layers ---- */

enum eng_where eng_locate(const struct engine_volume *vol, uint64_t lba, struct map_loc *loc)
{
	struct map_loc tmp;

	if (!loc)
		loc = &tmp;
	for (;;) {
		if (map_get(vol->map, lba, loc))
			return loc->slot != MAP_SLOT_ZERO ? ENG_AT_DATA : ENG_AT_ZERO;
		if (!vol->parent)
			return eng_base_at(vol, lba) ? ENG_AT_BASE : ENG_AT_ZERO;
		if (lba >= vol->rec.overlap)
			return ENG_AT_ZERO;
		vol = vol->parent;
	}
}

bool eng_resolve(const struct engine_volume *vol, uint64_t lba, struct map_loc *loc)
{
	return eng_locate(vol, lba, loc) == ENG_AT_DATA;
}

enum engine_block_state engine_block_state(const struct engine_volume *vol, uint64_t lba)
{
	struct map_loc loc;

	for (;;) {
		if (map_get(vol->map, lba, &loc)) {
			if (loc.slot != MAP_SLOT_ZERO)
				return ENGINE_BLOCK_DATA;
			return loc.block == MAP_ZERO_ALLOCATED ? ENGINE_BLOCK_ZERO
							       : ENGINE_BLOCK_HOLE;
		}
		if (!vol->parent) /* a remote base may hold data there: never a hole */
			return eng_base_at(vol, lba) ? ENGINE_BLOCK_DATA : ENGINE_BLOCK_HOLE;
		if (lba >= vol->rec.overlap)
			return ENGINE_BLOCK_HOLE;
		vol = vol->parent;
	}
}

static int set_zero(void *arg, uint64_t lba, const struct map_loc *loc)
{
	static const struct map_loc zero = { .slot = MAP_SLOT_ZERO };

	(void)loc;
	return map_set(arg, lba, &zero);
}

/* A trim: the range reads as zeros, whatever the parents hold. */
static int layer_trim(struct engine_volume *vol, uint64_t lba, uint64_t nblocks)
{
	uint64_t end = lba + nblocks < lba ? UINT64_MAX : lba + nblocks;

	map_clear(vol->map, lba, nblocks);
	for (const struct engine_volume *p = vol; p->parent; p = p->parent) {
		int r;

		if (end > p->rec.overlap)
			end = p->rec.overlap;
		if (lba >= end)
			break;
		r = map_for_each_range(p->parent->map, lba, end - lba, set_zero, vol->map);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Allocated zeros: every LBA of the range gets a zero entry that block status reports
 * allocated, with or without a parent. Flatten's (fill) apply only where a FILL would:
 * the layer's own write or trim that came first wins. */
static int layer_zero(struct engine_volume *vol, uint64_t lba, uint64_t nblocks, bool fill)
{
	static const struct map_loc zero = { .slot = MAP_SLOT_ZERO, .block = MAP_ZERO_ALLOCATED };
	uint64_t end = map_nblocks(vol->map);

	if (lba < end && nblocks < end - lba)
		end = lba + nblocks;
	for (; lba < end; lba++) {
		int r;

		if (fill && (lba >= vol->rec.overlap || map_get(vol->map, lba, NULL)))
			continue;
		r = map_set(vol->map, lba, &zero);
		if (r < 0)
			return r;
	}
	return 0;
}

int eng_apply_entry(struct engine_volume *vol, const struct summary_entry *e,
		    const struct map_loc *loc)
{
	int r;

	if (ONDISK_ENTRY_ZEROES(e->kind) || e->kind == ONDISK_ENTRY_LAYER ||
	    e->kind == ONDISK_ENTRY_TOMB)
		eng_catalog_retired(vol, e, loc); /* catalog.c: what must outlive what */
	if (e->kind == ONDISK_ENTRY_TRIM)
		return layer_trim(vol, e->lba, e->nblocks);
	if (e->kind == ONDISK_ENTRY_ZERO)
		return layer_zero(vol, e->lba, e->nblocks, e->src_block == ONDISK_ZERO_FILL);
	if (e->kind == ONDISK_ENTRY_LAYER || e->kind == ONDISK_ENTRY_TOMB)
		return 0; /* no map change: a record, or trims applied long ago */
	if (ONDISK_ENTRY_FCKPT_PART(e->kind)) {
		eng_fckpt_retired(vol, e, loc); /* fckpt.c: where the blocks landed */
		return 0; /* a family checkpoint's block: no map change */
	}
	if (e->lba >= map_nblocks(vol->map))
		return 0; /* written before a shrink */
	switch (e->kind) {
	case ONDISK_ENTRY_MOVE:
		r = map_move(vol->map, e->lba, e->src_slot, e->src_block, loc);
		if (r > 0)
			vol->eng->stats.gc_blocks_moved++;
		return r < 0 ? r : 0;
	case ONDISK_ENTRY_FILL:
		/* the clone's own write or trim came first; or the LBA no longer reads
		 * through (shrunk, or flattened: a trim there left no zero entry) */
		if (e->lba >= eng_fill_limit(vol) || map_get(vol->map, e->lba, NULL))
			return 0;
		return map_set(vol->map, e->lba, loc);
	default:
		return map_set(vol->map, e->lba, loc);
	}
}

/* ---- the layer tree at start-up ---- */

int eng_link_layers(struct engine *eng)
{
	for (size_t i = 0; i < eng->nvols; i++) {
		struct engine_volume *vol = eng->vols[i];

		if (!vol->rec.parent_id)
			continue;
		/* parents are always older: no cycle can be stored */
		vol->parent = vol->rec.parent_id < vol->rec.volume_id
				      ? eng_volume_by_id(eng, vol->rec.parent_id) : NULL;
		if (!vol->parent) {
			log_msg(LOG_ERROR, ENG_LOG, "metadata: layer %s (id %llu) reads through "
				"layer %llu, which is missing", vol->rec.name,
				(unsigned long long)vol->rec.volume_id,
				(unsigned long long)vol->rec.parent_id);
			return -EPROTO;
		}
	}
	return 0;
}

/* Room for `more` aliases and ops, so that a merge, once started, cannot fail half
 * way for want of memory. */
int eng_reserve_records(struct engine *eng, size_t more)
{
	if (eng->naliases + more > eng->aliases_cap) {
		struct eng_alias *v = realloc(eng->aliases, (eng->naliases + more) * sizeof(*v));

		if (!v)
			return -ENOMEM;
		eng->aliases = v;
		eng->aliases_cap = eng->naliases + more;
	}
	if (eng->nops + more > eng->ops_cap) {
		struct eng_meta_op *v = realloc(eng->ops, (eng->nops + more) * sizeof(*v));

		if (!v)
			return -ENOMEM;
		eng->ops = v;
		eng->ops_cap = eng->nops + more;
	}
	return 0;
}

int eng_alias_add(struct engine *eng, uint64_t from, uint64_t to)
{
	int r = eng_reserve_records(eng, 1);

	if (r == 0)
		eng->aliases[eng->naliases++] = (struct eng_alias){ .from = from, .to = to };
	return r;
}

int eng_load_aliases(struct engine *eng)
{
	struct meta_iter *it;
	int r = meta_iter_create(eng->meta, "A", 1, &it);

	if (r < 0)
		return r;
	for (; meta_iter_valid(it) && r == 0; meta_iter_next(it)) {
		size_t klen, vlen;
		const void *key = meta_iter_key(it, &klen);
		const void *val = meta_iter_value(it, &vlen);
		uint64_t from, to;

		r = ondisk_alias_key_decode(key, klen, &from);
		if (r == 0 && vlen != sizeof(to))
			r = -EPROTO;
		if (r < 0) {
			log_msg(LOG_ERROR, ENG_LOG, "metadata: an alias record is damaged");
			break;
		}
		memcpy(&to, val, sizeof(to));
		r = eng_alias_add(eng, from, to);
	}
	if (r == 0)
		r = meta_iter_status(it);
	meta_iter_destroy(it);
	return r;
}

struct engine_volume *eng_layer_for_owner(struct engine *eng, uint64_t id)
{
	for (size_t hops = 0; hops <= eng->naliases; hops++) {
		struct engine_volume *vol = eng_volume_by_id(eng, id);
		size_t i;

		if (vol)
			return vol;
		for (i = 0; i < eng->naliases && eng->aliases[i].from != id; i++)
			;
		if (i == eng->naliases)
			return NULL;
		id = eng->aliases[i].to;
	}
	return NULL;
}

/* ---- how much a layer reads back ----
 * data(L, limit) = L's data entries below limit
 *                + data(parent, min(limit, overlap))
 *                - the parent's data that L's own entries hide below that.
 * Snapshot layers never change what they read (the cleaner and merges move entries,
 * not content), so their figure is cached per limit; a live layer costs one pass
 * over its own entries. */

struct entry_count {
	const struct engine_volume *parent; /* count entries hiding its data; NULL: data */
	uint64_t n;
};

static int count_entry(void *arg, uint64_t lba, const struct map_loc *loc)
{
	struct entry_count *c = arg;

	if (c->parent ? eng_resolve(c->parent, lba, NULL) : loc->slot != MAP_SLOT_ZERO)
		c->n++;
	return 0;
}

static uint64_t count_entries(const struct engine_volume *l, uint64_t limit,
			      const struct engine_volume *hiding)
{
	struct entry_count c = { .parent = hiding };

	if (!hiding && limit >= map_nblocks(l->map))
		return map_mapped_blocks(l->map);
	map_for_each_range(l->map, 0, limit, count_entry, &c);
	return c.n;
}

static uint64_t layer_data_below(struct engine_volume *l, uint64_t limit)
{
	uint64_t through, n;

	if (l->rec.kind == ONDISK_LAYER_SNAPSHOT && l->data_cache_valid &&
	    l->data_cache_limit == limit)
		return l->data_cache;
	n = count_entries(l, limit, NULL);
	through = l->rec.overlap < limit ? l->rec.overlap : limit;
	if (l->parent && through)
		n += layer_data_below(l->parent, through) - count_entries(l, through, l->parent);
	if (l->rec.kind == ONDISK_LAYER_SNAPSHOT) {
		l->data_cache = n;
		l->data_cache_limit = limit;
		l->data_cache_valid = true;
	}
	return n;
}

uint64_t eng_layer_data_blocks(struct engine_volume *vol)
{
	return layer_data_below(vol, vol->rec.size / QUILL_BLOCK_SIZE);
}
