/* engine/rebuild.c — the metadata from the store alone (quilld --rebuild-meta).
 *
 * Every slot with a USED header of this store is walked with replay's walker
 * (engine/logcheck.c: it steps over a damaged summary), and every batch is kept,
 * whatever its sequence number: there is no checkpoint to start from. A batch whose
 * data fails its CRCs, or a damaged summary, is judged as replay judges it: a tear is
 * dropped with what follows it in its slot; corruption is kept (its bad blocks read as
 * EIO) or, for a damaged summary, marks its layer damaged. Then:
 *   1. each layer named by a LAYER block (SET, or the snapshot in a MERGE) is created
 *      from its oldest record;
 *   2. batches, carried trims (TOMB, at their original sequence numbers) and merges
 *      (at the sequence number their MERGE block names) are applied in sequence
 *      order: SET blocks change a layer's record where they stand, so a resize or a
 *      flatten's end lands between the same writes as it did at run time;
 *   3. slots whose header names no layer left (deleted ones) are free, and get FREE
 *      headers when the rebuild is kept.
 * The families' counters restart past every header's number, and SEG_REBUILD_SNO_MARGIN
 * more: the "F" records (reservations past the log) are lost; they are written anew
 * with the rest.
 * A MOVE applies as a DATA entry here: its source slot is usually gone, and the
 * cleaner never writes a MOVE that would lose (gc.c), so it always applied.
 *
 * A trim in a layer that has a parent leaves zero entries where a parent holds data.
 * Here a parent's block may arrive only later, by a MOVE whose source slot is gone;
 * so the trim also leaves zero entries where a parent has a MOVE anywhere in the log.
 * A parent is frozen (a snapshot) before any layer reads through it, so such an
 * entry only stands for data it held, or for zeros: a zero entry reads the same.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/array.h"
#include "common/err.h"
#include "common/log.h"
#include "engine/engine_internal.h"
#include "engine/logcheck.h"
#include "metadata/meta.h"

enum rb_kind { RB_BATCH = 0, RB_TOMB = 1, RB_MERGE = 2 }; /* order at one seq */

struct rb_event {
	uint64_t seq;
	enum rb_kind kind;
	uint64_t layer;                /* batch, tomb: its layer; merge: the snapshot */
	uint32_t slot, first_data;     /* batch; tomb: the slot it was found in */
	uint32_t nentries;
	struct summary_entry *entries; /* batch */
	struct volume_record *recs;    /* batch: SET records, by entry (NULL: none) */
	uint64_t lba, nblocks;         /* tomb */
};

/* The records known of one layer: the oldest creates it, the newest block is live. */
struct rb_layer {
	uint64_t id;
	uint64_t first_seq, last_seq;
	struct volume_record first;
	struct map_loc last_loc;
	bool merged;                   /* a MERGE block names it */
	bool dead;                     /* a tombstone names it */
	uint64_t dead_seq;
	struct map_loc dead_loc;
	struct volume_record dead_rec;
	uint64_t merge_seq, merge_block_seq;
	struct map_loc merge_loc;
	struct volume_record merged_rec;
	uint64_t merge_child, child_overlap; /* its MERGE block's (0: not named) */
	uint64_t alias_to, alias_seq;  /* the newest family checkpoint copy of its MERGE
					  block: where it led then (0: none seen) */
};

/* A MOVE entry: which layer will hold data at lba (see above). */
struct rb_move {
	uint64_t layer, lba;
};

/* A batch with bad data, or a damaged summary: judged once every slot is read. */
struct rb_bad {
	uint32_t slot, pos;            /* its summary block (damaged: its first block) */
	uint64_t volume_id, lo, hi;    /* its seq is in [lo, hi] */
	bool damaged;                  /* the summary itself is lost */
};

struct eng_rebuild {
	struct engine *eng;
	struct logcheck_facts facts;
	struct rb_bad *bad;
	size_t nbad, badcap;
	struct rb_move *moves;
	size_t nmoves, mcap;
	struct rb_event *ev;
	size_t nev, evcap;
	struct rb_layer *layers;
	size_t nlayers, lcap;
	uint64_t max_seq, max_gen, max_id;
	/* an adoption from a family checkpoint (eng_rebuild_keep_fckpt): its blocks, and
	 * the S the maps were loaded at (0: the whole log) */
	bool keep_fckpt;
	struct eng_rb_fblock *fblocks;
	size_t nfblocks, fcap;
	uint64_t base_seq;
};

static int ev_push(struct eng_rebuild *rb, const struct rb_event *e)
{
	if (ARRAY_GROW(rb->ev, rb->evcap, rb->nev, 1024) < 0)
		return -ENOMEM;
	rb->ev[rb->nev++] = *e;
	return 0;
}

static struct rb_layer *layer_slot(struct eng_rebuild *rb, uint64_t id)
{
	for (size_t i = 0; i < rb->nlayers; i++)
		if (rb->layers[i].id == id)
			return &rb->layers[i];
	if (ARRAY_GROW(rb->layers, rb->lcap, rb->nlayers, 64) < 0)
		return NULL;
	memset(&rb->layers[rb->nlayers], 0, sizeof(rb->layers[0]));
	rb->layers[rb->nlayers].id = id;
	if (id > rb->max_id)
		rb->max_id = id;
	return &rb->layers[rb->nlayers++];
}

/* A record of the layer it names, found at seq (SET) or in a MERGE block. */
static int note_record(struct eng_rebuild *rb, uint64_t seq, const struct layer_block *lb,
		       const struct map_loc *loc)
{
	struct rb_layer *l = layer_slot(rb, lb->rec.volume_id);

	if (!l)
		return -ENOMEM;
	if ((!l->first_seq || seq < l->first_seq) && !(lb->rec.flags & ONDISK_LAYER_DELETED)) {
		l->first_seq = seq;
		l->first = lb->rec;
	}
	if (lb->op == ONDISK_LAYER_SET && (lb->rec.flags & ONDISK_LAYER_DELETED)) {
		if (!l->dead || seq >= l->dead_seq) {
			l->dead_seq = seq;
			l->dead_loc = *loc;
			l->dead_rec = lb->rec;
		}
		l->dead = true;
		return 0;
	}
	if (lb->op == ONDISK_LAYER_SET) {
		if (seq >= l->last_seq) {
			l->last_seq = seq;
			l->last_loc = *loc;
		}
		return 0;
	}
	if (!l->merged || seq >= l->merge_block_seq) {
		l->merge_block_seq = seq;
		l->merge_loc = *loc;
		l->merged_rec = lb->rec;
	}
	if (!l->merged || lb->merge_seq < l->merge_seq)
		l->merge_seq = lb->merge_seq;
	if (lb->child_id && lb->merge_seq == l->merge_seq) {
		l->merge_child = lb->child_id;
		l->child_overlap = lb->child_overlap;
	}
	if (lb->alias_to && seq >= l->alias_seq) {
		l->alias_to = lb->alias_to;
		l->alias_seq = seq;
	}
	l->merged = true;
	return 0;
}

/* A family checkpoint's block (BEGIN, END, MAPS), kept whole for the loader. */
static int keep_fblock(struct eng_rebuild *rb, uint32_t slot, uint32_t block,
		       enum ondisk_entry_kind kind, uint64_t seq, const uint8_t *blk)
{
	struct eng_rb_fblock *f;

	if (ARRAY_GROW(rb->fblocks, rb->fcap, rb->nfblocks, 64) < 0)
		return -ENOMEM;
	f = &rb->fblocks[rb->nfblocks];
	*f = (struct eng_rb_fblock){ .slot = slot, .block = block, .kind = kind, .seq = seq };
	f->data = malloc(QUILL_BLOCK_SIZE);
	if (!f->data)
		return -ENOMEM;
	memcpy(f->data, blk, QUILL_BLOCK_SIZE);
	rb->nfblocks++;
	return 0;
}

/* The data blocks of one batch that carry catalog: LAYER and TOMB (and, for an
 * adoption, a family checkpoint's). */
static int note_blocks(struct eng_rebuild *rb, uint32_t slot, const struct summary *sum,
		       const uint8_t *data, uint32_t first_data, struct rb_event *ev)
{
	struct tomb_block *t = NULL;
	uint32_t d = 0;
	int r = 0;

	for (uint32_t i = 0; i < sum->nentries && r == 0; i++) {
		const struct summary_entry *e = &sum->entries[i];
		const uint8_t *blk = data + (size_t)d * QUILL_BLOCK_SIZE;
		struct map_loc loc = { .slot = slot, .block = first_data + d, .crc = e->data_crc };
		struct layer_block lb;

		if (!ONDISK_ENTRY_HAS_BLOCK(e->kind))
			continue;
		d++;
		if (ONDISK_ENTRY_FCKPT_PART(e->kind) && rb->keep_fckpt)
			r = keep_fblock(rb, slot, loc.block, e->kind, sum->seq, blk);
		if (e->kind == ONDISK_ENTRY_LAYER &&
		    ondisk_layer_block_decode(blk, QUILL_BLOCK_SIZE, &lb) == 0) {
			r = note_record(rb, sum->seq, &lb, &loc);
			if (r == 0 && lb.op == ONDISK_LAYER_MERGE)
				r = ev_push(rb, &(struct rb_event){ .seq = lb.merge_seq,
						 .kind = RB_MERGE, .layer = lb.rec.volume_id });
			if (r == 0 && lb.op == ONDISK_LAYER_SET) {
				if (!ev->recs)
					ev->recs = calloc(sum->nentries, sizeof(*ev->recs));
				if (!ev->recs)
					r = -ENOMEM;
				else
					ev->recs[i] = lb.rec;
			}
		}
		if (e->kind != ONDISK_ENTRY_TOMB)
			continue;
		if (!t && !(t = malloc(sizeof(*t))))
			r = -ENOMEM;
		if (r == 0 && ondisk_tomb_block_decode(blk, QUILL_BLOCK_SIZE, t) == 0)
			for (uint32_t k = 0; k < t->count && r == 0; k++)
				r = ev_push(rb, &(struct rb_event){ .seq = t->tombs[k].seq,
						 .kind = RB_TOMB, .layer = t->layer_id,
						 .slot = slot, .first_data = first_data,
						 .lba = t->tombs[k].lba,
						 .nblocks = t->tombs[k].nblocks });
	}
	free(t);
	return r;
}

static int note_moves(struct eng_rebuild *rb, const struct summary *sum)
{
	for (uint32_t i = 0; i < sum->nentries; i++) {
		if (sum->entries[i].kind != ONDISK_ENTRY_MOVE)
			continue;
		if (ARRAY_GROW(rb->moves, rb->mcap, rb->nmoves, 1024) < 0)
			return -ENOMEM;
		rb->moves[rb->nmoves++] = (struct rb_move){ sum->volume_id, sum->entries[i].lba };
	}
	return 0;
}

static int keep_batch(struct eng_rebuild *rb, uint32_t slot, const struct summary *sum,
		      const uint8_t *data, uint32_t first_data)
{
	struct rb_event ev = { .seq = sum->seq, .kind = RB_BATCH, .layer = sum->volume_id,
			       .slot = slot, .first_data = first_data,
			       .nentries = sum->nentries };
	int r;

	ev.entries = malloc(sum->nentries * sizeof(*ev.entries));
	if (!ev.entries)
		return -ENOMEM;
	memcpy(ev.entries, sum->entries, sum->nentries * sizeof(*ev.entries));
	r = note_blocks(rb, slot, sum, data, first_data, &ev);
	if (r == 0)
		r = note_moves(rb, sum);
	if (r == 0)
		r = ev_push(rb, &ev);
	if (r < 0) {
		free(ev.entries);
		free(ev.recs);
	}
	return r;
}

static int note_bad(struct eng_rebuild *rb, const struct rb_bad *b)
{
	if (ARRAY_GROW(rb->bad, rb->badcap, rb->nbad, 16) < 0)
		return -ENOMEM;
	rb->bad[rb->nbad++] = *b;
	return 0;
}

static void count_entries(struct slot *s, const struct summary *sum)
{
	for (uint32_t i = 0; i < sum->nentries; i++) {
		s->tombs += ONDISK_ENTRY_ZEROES(sum->entries[i].kind) ||
			    sum->entries[i].kind == ONDISK_ENTRY_TOMB;
		s->records += sum->entries[i].kind == ONDISK_ENTRY_LAYER;
	}
	if (!s->first_seq)
		s->first_seq = sum->seq;
	s->last_seq = sum->seq;
}

struct rebuild_walk {
	struct eng_rebuild *rb;
	uint32_t slot;
	uint64_t owner;
};

static int rebuild_visit(void *arg, const struct logcheck_item *it, const struct summary *sum,
			 const uint8_t *data)
{
	struct rebuild_walk *rw = arg;
	struct eng_rebuild *rb = rw->rb;
	int r;

	if (it->kind == LOGCHECK_DAMAGED)
		return note_bad(rb, &(struct rb_bad){ .slot = rw->slot, .pos = it->pos,
				.volume_id = rw->owner, .lo = it->seq_lo, .hi = it->seq_hi,
				.damaged = true });
	if (sum->seq > rb->max_seq)
		rb->max_seq = sum->seq;
	r = logcheck_note_batch(&rb->facts, sum);
	if (r == 0 && !it->data_ok)
		r = note_bad(rb, &(struct rb_bad){ .slot = rw->slot, .pos = it->pos,
			     .volume_id = rw->owner, .lo = sum->seq, .hi = sum->seq });
	if (r == 0)
		r = keep_batch(rb, rw->slot, sum, data, it->pos + 1);
	count_entries(&rb->eng->slots[rw->slot], sum);
	return r;
}

/* Walks one USED slot, read whole into buf; every batch's data is checked. */
static int walk(struct eng_rebuild *rb, uint32_t slot, const struct segment_header *h,
		const uint8_t *buf)
{
	struct rebuild_walk rw = { rb, slot, h->volume_id };
	int r;

	rb->eng->slots[slot].volume_id = h->volume_id;
	r = logcheck_note_slot(&rb->facts, h);
	return r < 0 ? r : eng_walk_buf(rb->eng, slot, h, buf, 0, rebuild_visit, &rw);
}

/* A tear at (slot, pos): what the slot holds from there on was in flight at a crash. */
static void cut_slot(struct eng_rebuild *rb, uint32_t slot, uint32_t pos)
{
	size_t n = 0;

	for (size_t i = 0; i < rb->nev; i++) {
		struct rb_event *e = &rb->ev[i];

		if ((e->kind == RB_BATCH || e->kind == RB_TOMB) && e->slot == slot &&
		    e->first_data > pos) {
			free(e->entries);
			free(e->recs);
			continue;
		}
		rb->ev[n++] = *e;
	}
	rb->nev = n;
}

/* Replay's verdict on every bad batch (docs/format.md, "Tears and corruption"). */
static void judge_bad(struct eng_rebuild *rb)
{
	for (size_t i = 0; i < rb->nbad; i++) {
		struct rb_bad *b = &rb->bad[i];
		struct logcheck_verdict v;
		uint64_t hi = b->hi == UINT64_MAX ? logcheck_seq_hi(&rb->facts, b->volume_id, b->lo)
						  : b->hi;

		logcheck_judge(&rb->facts, b->volume_id, b->lo, hi, &v);
		if (!v.corrupt) {
			log_msg(LOG_WARN, ENG_LOG, "rebuild: slot %u: a torn batch at block %u; "
				"dropped with what follows it in the slot", b->slot, b->pos);
			cut_slot(rb, b->slot, b->pos);
			b->slot = UINT32_MAX; /* judged: nothing more to do */
			continue;
		}
		log_msg(LOG_ERROR, ENG_LOG, "rebuild: slot %u: %s at block %u (seq %llu..%llu) "
			"was durable: kept%s", b->slot, b->damaged ? "a damaged summary" :
			"a batch whose data fails its checksum", b->pos, (unsigned long long)b->lo,
			(unsigned long long)hi, b->damaged ? "; its layer is marked damaged" :
			"; its bad blocks read as errors");
		if (!b->damaged)
			b->slot = UINT32_MAX;
	}
}

/* Damaged summaries that were durable: their layers lost blocks they cannot name. */
static void mark_damaged(struct eng_rebuild *rb)
{
	for (size_t i = 0; i < rb->nbad; i++) {
		struct engine_volume *vol;

		if (rb->bad[i].slot == UINT32_MAX)
			continue;
		vol = eng_layer_for_owner(rb->eng, rb->bad[i].volume_id);
		if (vol)
			vol->rec.flags |= ONDISK_LAYER_DAMAGED;
	}
}

int eng_rebuild_slot(struct eng_rebuild *rb, uint32_t slot, const struct segment_header *h,
		     const uint8_t *buf)
{
	uint64_t owner = rb->eng->slots[slot].volume_id;
	int r = eng_rebuild_note(rb, slot, h);

	if (r < 0)
		return r;
	if (h->state != ONDISK_SEG_USED) {
		rb->eng->slots[slot].volume_id = owner; /* as before: a FREE one names none */
		return 0;
	}
	return walk(rb, slot, h, buf);
}

static int scan(struct eng_rebuild *rb)
{
	struct engine *eng = rb->eng;
	int r = 0;

	for (uint32_t i = 0; i < eng->sb.segment_count && r == 0; i++) {
		struct segment_header h;

		r = seg_read_sync(eng, i, 0, eng->gc_buf, eng->blocks_per_seg);
		if (r == 0 && seg_header_decode(eng, eng->gc_buf, &h) == 0)
			r = eng_rebuild_slot(rb, i, &h, eng->gc_buf);
	}
	return r;
}

static int cmp_event(const void *a, const void *b)
{
	const struct rb_event *x = a, *y = b;

	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return (int)x->kind - (int)y->kind;
}

static int cmp_move(const void *a, const void *b)
{
	const struct rb_move *x = a, *y = b;

	if (x->layer != y->layer)
		return x->layer < y->layer ? -1 : 1;
	return x->lba < y->lba ? -1 : x->lba > y->lba;
}

/* The first MOVE of layer at or after lba. */
static size_t moves_from(const struct eng_rebuild *rb, uint64_t layer, uint64_t lba)
{
	size_t lo = 0, hi = rb->nmoves;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct rb_move *m = &rb->moves[mid];

		if (m->layer < layer || (m->layer == layer && m->lba < lba))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* After a trim of vol's [lba, lba + n): zero entries where a parent will get a block
 * by a MOVE (see the top of this file). */
static int trim_moved(struct eng_rebuild *rb, struct engine_volume *vol, uint64_t lba, uint64_t n)
{
	static const struct map_loc zero = { .slot = MAP_SLOT_ZERO };
	uint64_t end = lba + n < lba ? UINT64_MAX : lba + n;

	for (const struct engine_volume *p = vol; p->parent; p = p->parent) {
		uint64_t id = p->parent->rec.volume_id;

		if (end > p->rec.overlap)
			end = p->rec.overlap;
		if (lba >= end)
			break;
		for (size_t i = moves_from(rb, id, lba);
		     i < rb->nmoves && rb->moves[i].layer == id && rb->moves[i].lba < end; i++) {
			int r;

			if (map_get(vol->map, rb->moves[i].lba, NULL))
				continue;
			r = map_set(vol->map, rb->moves[i].lba, &zero);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* ---- applying ---- */

static const struct rb_layer *rb_layer_find(const struct eng_rebuild *rb, uint64_t id)
{
	for (size_t i = 0; i < rb->nlayers; i++)
		if (rb->layers[i].id == id)
			return &rb->layers[i];
	return NULL;
}

/* The first snapshot merged into c (its MERGE block names c), or NULL. */
static const struct rb_layer *first_merged_into(const struct eng_rebuild *rb, uint64_t c)
{
	const struct rb_layer *first = NULL;

	for (size_t i = 0; i < rb->nlayers; i++) {
		const struct rb_layer *l = &rb->layers[i];

		if (l->merged && l->merge_child == c && (!first || l->merge_seq < first->merge_seq))
			first = l;
	}
	return first;
}

/* Layer c was created from its oldest record left in the log; when the cleaner has
 * dropped the older ones, that record is from after a snapshot was merged into c and
 * names the merged snapshot's parent. Until the merge, c read through the snapshot:
 * without that, c's trims would leave holes that the merge then fills with the
 * snapshot's blocks, and the merge itself would find no child. */
static void read_through_merged(struct eng_rebuild *rb, const struct rb_layer *cl)
{
	const struct rb_layer *sl = first_merged_into(rb, cl->id);
	struct engine_volume *c = eng_volume_by_id(rb->eng, cl->id), *s;

	if (!sl || !c || (cl->first_seq && cl->first_seq <= sl->merge_seq))
		return;
	s = eng_volume_by_id(rb->eng, sl->id);
	if (!s || c->parent == s)
		return;
	c->rec.parent_id = s->rec.volume_id;
	c->parent = s;
	c->rec.overlap = sl->child_overlap;
}

/* Does a record of l stand above the loaded checkpoint's S? Every layer alive at S
 * has one: the family checkpoint writes all their SET records after S. */
static bool above_base(const struct eng_rebuild *rb, const struct rb_layer *l)
{
	return l->last_seq > rb->base_seq || (l->dead && l->dead_seq > rb->base_seq) ||
	       (l->merged && l->merge_block_seq > rb->base_seq);
}

/* Layer id's first SET record above S (the events are sorted): what it was when the
 * checkpoint's maps were taken, or created after. */
static bool first_above_base(const struct eng_rebuild *rb, uint64_t id,
			     struct volume_record *rec)
{
	for (size_t i = 0; i < rb->nev; i++) {
		const struct rb_event *ev = &rb->ev[i];

		if (ev->seq <= rb->base_seq || ev->kind != RB_BATCH || !ev->recs)
			continue;
		for (uint32_t k = 0; k < ev->nentries; k++)
			if (ev->entries[k].kind == ONDISK_ENTRY_LAYER &&
			    ev->entries[k].src_block == ONDISK_LAYER_SET &&
			    ev->recs[k].volume_id == id) {
				*rec = ev->recs[k];
				return true;
			}
	}
	return false;
}

/* Loading a checkpoint at S, l was merged away at or below S: its merge is in the maps
 * loaded, and what is left of it is an alias, to the layer a family checkpoint's copy
 * of its MERGE block names (else its MERGE block's child; chains are followed once
 * every alias is in: alias_resolve()). */
static bool merged_below_base(const struct eng_rebuild *rb, const struct rb_layer *l)
{
	return rb->base_seq && l->merged && l->merge_seq <= rb->base_seq;
}

static int alias_below_base(struct eng_rebuild *rb, const struct rb_layer *l)
{
	uint64_t to = l->alias_to ? l->alias_to : l->merge_child;

	if (!to) {
		log_msg(LOG_WARN, ENG_LOG, "rebuild: layer %llu was merged away before the "
			"checkpoint loaded, into a layer its MERGE block does not name; its "
			"alias is lost", (unsigned long long)l->id);
		return 0;
	}
	return eng_alias_add(rb->eng, l->id, to);
}

/* Aliases from first on lead straight to a layer (an alias to a snapshot merged
 * away too follows that one's). */
static void alias_resolve(struct engine *eng, size_t first)
{
	for (size_t i = first; i < eng->naliases; i++) {
		struct engine_volume *to = eng_layer_for_owner(eng, eng->aliases[i].to);

		if (to)
			eng->aliases[i].to = to->rec.volume_id;
	}
}

static int create_layers(struct eng_rebuild *rb)
{
	struct engine *eng = rb->eng;
	size_t naliases = eng->naliases;

	for (size_t i = 0; i < rb->nlayers; i++) {
		struct volume_record rec = rb->layers[i].first;
		int r;

		if (merged_below_base(rb, &rb->layers[i])) {
			r = alias_below_base(rb, &rb->layers[i]);
			if (r < 0)
				return r;
			continue;
		}
		if (rb->base_seq && !above_base(rb, &rb->layers[i]))
			continue; /* gone before the checkpoint: it wrote every layer's record */
		if (rb->base_seq && first_above_base(rb, rb->layers[i].id, &rec))
			; /* the maps loaded are of that size */
		else if (!rb->layers[i].first_seq)
			rec = rb->layers[i].dead_rec; /* only its tombstone is left */
		rec.flags &= ~(uint32_t)ONDISK_LAYER_DELETED;
		r = eng_volume_add(eng, &rec, NULL);

		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->rec.parent_id)
			eng->vols[i]->parent = eng_volume_by_id(eng, eng->vols[i]->rec.parent_id);
	alias_resolve(eng, naliases);
	for (size_t i = 0; i < rb->nlayers; i++)
		read_through_merged(rb, &rb->layers[i]);
	return 0;
}

/* A tombstone: the layer is gone from here on. */
static void drop_layer(struct engine *eng, struct engine_volume *l)
{
	map_clear(l->map, 0, map_nblocks(l->map));
	for (size_t i = 0; i < eng->naliases;)
		if (eng->aliases[i].to == l->rec.volume_id)
			eng->aliases[i] = eng->aliases[--eng->naliases];
		else
			i++;
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->parent == l)
			eng->vols[i]->parent = NULL; /* cannot be: a parent is never deleted */
	eng_volume_remove(eng, l);
}

/* A SET block: the layer's record changes here. */
static int set_record(struct engine *eng, const struct volume_record *rec)
{
	struct engine_volume *l = eng_volume_by_id(eng, rec->volume_id);
	int r = 0;

	if (!l)
		return 0;
	if (rec->flags & ONDISK_LAYER_DELETED) {
		drop_layer(eng, l);
		return 0;
	}
	if (rec->size != l->rec.size)
		r = map_resize(l->map, rec->size / QUILL_BLOCK_SIZE);
	if (r < 0)
		return r;
	l->rec = *rec;
	l->parent = rec->parent_id ? eng_volume_by_id(eng, rec->parent_id) : NULL;
	return 0;
}

static int apply_batch(struct eng_rebuild *rb, const struct rb_event *ev)
{
	struct engine *eng = rb->eng;
	struct engine_volume *vol = eng_volume_by_id(eng, ev->layer);
	uint32_t d = 0;

	if (!vol)
		return 0; /* a deleted layer's, or one merged away (none after its merge) */
	for (uint32_t i = 0; i < ev->nentries; i++) {
		struct summary_entry e = ev->entries[i];
		struct map_loc loc = { .slot = ev->slot, .crc = e.data_crc };
		int r;

		if (ONDISK_ENTRY_HAS_BLOCK(e.kind))
			loc.block = ev->first_data + d++;
		if (e.kind == ONDISK_ENTRY_LAYER) {
			r = ev->recs && e.src_block == ONDISK_LAYER_SET
				    ? set_record(eng, &ev->recs[i]) : 0;
		} else {
			if (e.kind == ONDISK_ENTRY_MOVE)
				e.kind = ONDISK_ENTRY_DATA;
			r = eng_apply_entry(vol, &e, &loc);
			if (r == 0 && e.kind == ONDISK_ENTRY_TRIM)
				r = trim_moved(rb, vol, e.lba, e.nblocks);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

static int apply_tomb(struct eng_rebuild *rb, const struct rb_event *ev)
{
	struct engine_volume *vol = eng_volume_by_id(rb->eng, ev->layer);
	int r;
	struct summary_entry e = { .lba = ev->lba, .kind = ONDISK_ENTRY_TRIM };
	struct map_loc loc = { .slot = ev->slot };

	if (!vol || ev->lba >= map_nblocks(vol->map))
		return 0;
	if (ev->nblocks & ONDISK_TOMB_ALLOCATED)
		e.kind = ONDISK_ENTRY_ZERO; /* hides everything itself: no trim_moved() */
	if (ev->nblocks & ONDISK_TOMB_FILL)
		e.src_block = ONDISK_ZERO_FILL;
	e.nblocks = (uint32_t)(ev->nblocks & 0xffffffffull);
	r = eng_apply_entry(vol, &e, &loc);
	return r < 0 || e.kind == ONDISK_ENTRY_ZERO ? r : trim_moved(rb, vol, e.lba, e.nblocks);
}

static int apply_merge(struct eng_rebuild *rb, const struct rb_event *ev)
{
	struct engine *eng = rb->eng;
	struct engine_volume *s = eng_volume_by_id(eng, ev->layer), *child = NULL;
	const struct rb_layer *sl;
	size_t n = 0;
	int r;

	if (!s)
		return 0; /* merged already (its MERGE block was carried: two copies) */
	sl = rb_layer_find(rb, s->rec.volume_id);
	if (sl && sl->merge_child) /* the block names it: no guessing from the parents */
		child = eng_volume_by_id(eng, sl->merge_child);
	if (child)
		n = 1;
	else
		for (size_t i = 0; i < eng->nvols; i++)
			if (eng->vols[i]->parent == s) {
				child = eng->vols[i];
				n++;
			}
	if (n != 1) {
		log_msg(LOG_WARN, ENG_LOG, "rebuild: snapshot %s (layer %llu) was merged into its "
			"only child, but %zu layers read through it here; left as is",
			s->rec.name, (unsigned long long)s->rec.volume_id, n);
		return 0;
	}
	r = eng_merge_layer(eng, s, child);
	if (r < 0)
		return r;
	eng_volume_remove(eng, s);
	return 0;
}

static int apply_all(struct eng_rebuild *rb)
{
	int r = 0;

	/* the events are sorted (eng_rebuild_apply_base) */
	if (rb->nmoves)
		qsort(rb->moves, rb->nmoves, sizeof(*rb->moves), cmp_move);
	rb->eng->replaying = true; /* the slots' counts come from the walk */
	for (size_t i = 0; i < rb->nev && r == 0; i++) {
		const struct rb_event *ev = &rb->ev[i];

		if (ev->seq <= rb->base_seq)
			continue; /* in the loaded maps already */
		r = ev->kind == RB_BATCH ? apply_batch(rb, ev)
		    : ev->kind == RB_TOMB ? apply_tomb(rb, ev) : apply_merge(rb, ev);
	}
	rb->eng->replaying = false;
	return r;
}

/* The newest record blocks are live; aliases know their MERGE block. */
static void settle_records(struct eng_rebuild *rb)
{
	struct engine *eng = rb->eng;

	for (size_t i = 0; i < rb->nlayers; i++) {
		const struct rb_layer *l = &rb->layers[i];
		struct engine_volume *vol = eng_volume_by_id(eng, l->id);

		if (!vol && l->dead) { /* the tombstone stays live */
			struct eng_dead *v = realloc(eng->dead, (eng->ndead + 1) * sizeof(*v));

			if (v) {
				eng->dead = v;
				eng->dead[eng->ndead++] = (struct eng_dead){
					.id = l->id, .rec = l->dead_rec, .loc = l->dead_loc,
					.seq = l->dead_seq, .logged = true };
				eng->slots[l->dead_loc.slot].live++;
			}
		}
		if (vol && l->last_seq) {
			vol->rec_loc = l->last_loc;
			vol->rec_logged = true;
			vol->rec_seq = l->last_seq;
			vol->rec_in_log = vol->rec;
			eng->slots[l->last_loc.slot].live++;
		}
		for (size_t k = 0; k < eng->naliases && l->merged; k++) {
			struct eng_alias *a = &eng->aliases[k];

			if (a->from != l->id)
				continue;
			a->rec = l->merged_rec;
			a->has_rec = true;
			a->merge_seq = l->merge_seq;
			a->child_id = l->merge_child;
			a->child_overlap = l->child_overlap;
			a->loc = l->merge_loc;
			a->loc_seq = l->merge_block_seq;
			a->logged = true;
			eng->slots[l->merge_loc.slot].live++;
		}
	}
}

/* Slots of layers that are gone are free (FREE headers by eng_catalog_reconcile). */
static void settle_slots(struct eng_rebuild *rb)
{
	struct engine *eng = rb->eng;

	eng->nfree = 0;
	for (uint32_t i = 0; i < eng->sb.segment_count; i++) {
		struct slot *s = &eng->slots[i];
		struct engine_volume *owner;

		if (s->state == SLOT_FREE) {
			eng->nfree++;
			continue;
		}
		owner = eng_layer_for_owner(eng, s->volume_id);
		if (owner) {
			s->volume_id = owner->rec.volume_id;
			continue;
		}
		if (s->live)
			log_msg(LOG_ERROR, ENG_LOG, "rebuild: slot %u holds %u mapped blocks of "
				"a layer that is gone", i, s->live);
		eng_catalog_stale_slot(eng, i);
		seg_slot_set(eng, i, &(struct slot){ .state = SLOT_FREE, .volume_id = s->volume_id,
						     .generation = s->generation,
						     .records = s->records });
		eng->nfree++;
	}
	eng->next_seq = rb->max_seq + 1;
	eng->open_seq = eng->next_seq; /* marks this run records start here */
	eng->next_volume_id = rb->max_id + 1;
	if (eng->next_volume_id < eng_id_base(eng))
		eng->next_volume_id = eng_id_base(eng);
	eng->next_gen = rb->max_gen + 1;
	if (eng->next_gen < eng->next_volume_id)
		eng->next_gen = eng->next_volume_id; /* as replay does */
}

static int persist(struct engine *eng)
{
	struct ondisk_store_record srec;
	struct meta_batch *mb;
	void *val;
	size_t len;
	int r = meta_get(eng->meta, ONDISK_KEY_STORE, 1, &val, &len);

	if (r == 0) {
		free(val);
		log_msg(LOG_ERROR, ENG_LOG, "rebuild: metadata directory %s already holds a "
			"store's records; a rebuild writes a new one", eng->opts.meta_path);
		return -EEXIST;
	}
	if (r != -ENOENT)
		return r;
	r = meta_batch_create(&mb);
	if (r < 0)
		return r;
	ondisk_store_record_encode(eng->sb.uuid, eng->next_volume_id, &srec);
	meta_batch_put(mb, ONDISK_KEY_STORE, 1, &srec, sizeof(srec));
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->rec.kind != ONDISK_LAYER_CATALOG)
			eng_batch_put_record(mb, &eng->vols[i]->rec);
	for (size_t i = 0; i < eng->naliases; i++)
		eng_batch_put_alias(mb, &eng->aliases[i]);
	seg_families_put(eng, mb); /* the counters, as the lost "F" records would have */
	r = meta_batch_commit(eng->meta, mb, META_SYNC);
	meta_batch_destroy(mb);
	return r;
}

static void rebuild_free(struct eng_rebuild *rb)
{
	for (size_t i = 0; i < rb->nev; i++) {
		free(rb->ev[i].entries);
		free(rb->ev[i].recs);
	}
	free(rb->ev);
	free(rb->layers);
	free(rb->moves);
	free(rb->bad);
	for (size_t i = 0; i < rb->nfblocks; i++)
		free(rb->fblocks[i].data);
	free(rb->fblocks);
	logcheck_facts_free(&rb->facts);
}

int eng_rebuild_begin(struct engine *eng, struct eng_rebuild **out)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	(*out)->eng = eng;
	return 0;
}

size_t eng_rebuild_nlayers(const struct eng_rebuild *rb)
{
	return rb->nlayers;
}

bool eng_rebuild_layer(const struct eng_rebuild *rb, size_t i, struct volume_record *rec)
{
	const struct rb_layer *l = &rb->layers[i];

	*rec = l->first_seq ? l->first : l->dead_rec;
	rec->volume_id = l->id;
	return !l->dead;
}

void eng_rebuild_maxima(const struct eng_rebuild *rb, uint64_t *seq, uint64_t *gen,
			uint64_t *id)
{
	*seq = rb->max_seq;
	*gen = rb->max_gen;
	*id = rb->max_id;
}

int eng_rebuild_apply(struct eng_rebuild *rb)
{
	return eng_rebuild_apply_base(rb, 0, NULL, NULL);
}

int eng_rebuild_apply_base(struct eng_rebuild *rb, uint64_t base_seq,
			   int (*load)(void *arg), void *arg)
{
	int r;

	judge_bad(rb); /* marks are store-wide: only once every slot is read */
	rb->base_seq = base_seq;
	qsort(rb->ev, rb->nev, sizeof(*rb->ev), cmp_event);
	r = create_layers(rb);
	if (r == 0 && load)
		r = load(arg);
	if (r == 0)
		r = apply_all(rb);
	if (r == 0) {
		mark_damaged(rb);
		settle_records(rb);
	}
	return r;
}

static bool entry_maps(const struct summary_entry *e, uint64_t lba)
{
	return !ONDISK_ENTRY_FCKPT_PART(e->kind) && e->kind != ONDISK_ENTRY_LAYER &&
	       e->kind != ONDISK_ENTRY_TOMB && lba >= e->lba && lba - e->lba < e->nblocks;
}

bool eng_rebuild_remaps(const struct eng_rebuild *rb, uint64_t layer, uint64_t lba,
			uint64_t above)
{
	for (size_t i = 0; i < rb->nev; i++) {
		const struct rb_event *ev = &rb->ev[i];

		if (ev->seq <= above || ev->layer != layer || ev->kind == RB_MERGE)
			continue;
		if (ev->kind == RB_TOMB && lba >= ev->lba &&
		    lba - ev->lba < (ev->nblocks & 0xffffffffull))
			return true;
		for (uint32_t k = 0; ev->kind == RB_BATCH && k < ev->nentries; k++)
			if (entry_maps(&ev->entries[k], lba))
				return true;
	}
	return false;
}

bool eng_rebuild_goes_above(const struct eng_rebuild *rb, uint64_t layer, uint64_t above)
{
	const struct rb_layer *l = rb_layer_find(rb, layer);

	return l && ((l->merged && l->merge_seq > above) || (l->dead && l->dead_seq > above));
}

void eng_rebuild_keep_fckpt(struct eng_rebuild *rb)
{
	rb->keep_fckpt = true;
}

size_t eng_rebuild_fblocks(const struct eng_rebuild *rb, const struct eng_rb_fblock **out)
{
	*out = rb->fblocks;
	return rb->nfblocks;
}

int eng_rebuild_note(struct eng_rebuild *rb, uint32_t slot, const struct segment_header *h)
{
	int r = seg_note_header(rb->eng, slot, h);

	if (r < 0)
		return r;
	if (h->generation > rb->max_gen)
		rb->max_gen = h->generation;
	if (h->volume_id > rb->max_id)
		rb->max_id = h->volume_id;
	rb->eng->slots[slot].volume_id = h->volume_id;
	return 0;
}

void eng_rebuild_end(struct eng_rebuild *rb)
{
	if (!rb)
		return;
	rebuild_free(rb);
	free(rb);
}

int eng_rebuild(struct engine *eng, bool keep)
{
	struct eng_rebuild rb = { .eng = eng };
	int r;

	log_msg(LOG_INFO, ENG_LOG, "rebuilding the metadata from the log: %u segments",
		eng->sb.segment_count);
	r = scan(&rb);
	if (r == 0)
		seg_families_rebuilt(eng); /* the reservations past the log are lost */
	if (r == 0)
		r = eng_rebuild_apply(&rb);
	if (r == 0)
		settle_slots(&rb);
	if (r == 0 && keep)
		r = persist(eng);
	rebuild_free(&rb);
	if (r < 0)
		log_msg(LOG_ERROR, ENG_LOG, "rebuild failed: %s", err_str(-r));
	else
		log_msg(LOG_INFO, ENG_LOG, "rebuilt %zu layers and %zu aliases from the log; "
			"%u segments free", eng->nvols - 1, eng->naliases, eng->nfree);
	return r;
}
