/* engine/replay.c — start-up: find the slots in use, roll the map forward.
 *
 * Every slot header is read. A slot belongs to a volume if its header is USED, of
 * this store, and names a volume that exists. Its log is walked from block 1 with the
 * walker of engine/logcheck.h: valid batches, batches whose data fails its CRC, and
 * batches whose summary is damaged (the walk finds the next valid summary). Batches
 * newer than the checkpoint are collected. Once every slot is read, each bad one is
 * judged (logcheck_judge()): a tear (in flight at the crash) is dropped with what
 * follows it in its slot; corruption is kept — its good blocks apply, its bad blocks
 * map to where they are and fail their checksum on every read — and a damaged summary
 * of a durable batch marks its volume damaged. Collected batches apply in sequence
 * order. Slots are all sealed afterwards: the space behind a torn batch is never
 * written again, so a later replay cannot find an old batch behind a new one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/array.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "engine/engine_internal.h"
#include "engine/logcheck.h"

#define REPLAY_BAD_LBAS 8 /* bad LBAs a log line names */

struct replay_batch {
	uint64_t seq;
	uint32_t slot;
	uint32_t pos;        /* block of its summary */
	struct engine_volume *vol;
	uint64_t volume_id;  /* as its summary says (a merged snapshot's id) */
	uint32_t nentries;
	struct summary_entry *entries;
	bool data_ok;
	bool corrupt;        /* judged: bad data of a durable batch, kept */
	uint32_t nbad;       /* data blocks failing their CRC */
	uint64_t bad_lbas[REPLAY_BAD_LBAS];
	struct logcheck_verdict verdict;
};

/* A batch whose summary is damaged, newer than the checkpoint or maybe so. */
struct replay_damage {
	uint32_t slot;
	uint32_t pos, next;
	struct engine_volume *vol;
	uint64_t volume_id;
	uint64_t lo, hi;     /* its seq lies in [lo, hi] */
	bool corrupt;
	struct logcheck_verdict verdict;
};

struct replay {
	struct engine *eng;
	struct replay_batch *v;
	size_t n, cap;
	struct replay_damage *dmg;
	size_t ndmg, capdmg;
	struct logcheck_facts facts;
	uint64_t ckpt_seq;
	uint64_t max_seq;
	uint64_t max_gen;
	uint32_t walked, settled; /* used slots whose log was read, or taken from the table */
};

/* Notes which data blocks of a bad batch fail their CRC, for the log. */
static void note_bad_blocks(struct replay_batch *b, const struct summary *s,
			    const uint8_t *data)
{
	uint32_t d = 0;

	for (uint32_t i = 0; i < s->nentries; i++) {
		if (!ONDISK_ENTRY_HAS_BLOCK(s->entries[i].kind))
			continue;
		if (crc32c(data + (size_t)d++ * QUILL_BLOCK_SIZE, QUILL_BLOCK_SIZE) ==
		    s->entries[i].data_crc)
			continue;
		if (b->nbad < REPLAY_BAD_LBAS)
			b->bad_lbas[b->nbad] = s->entries[i].lba;
		b->nbad++;
	}
}

static int replay_add(struct replay *rp, const struct summary *s, uint32_t slot,
		      const struct logcheck_item *it, const uint8_t *slot_buf,
		      struct engine_volume *vol)
{
	struct replay_batch *b;

	if (ARRAY_GROW(rp->v, rp->cap, rp->n, 256) < 0)
		return -ENOMEM;
	b = &rp->v[rp->n];
	memset(b, 0, sizeof(*b));
	b->entries = malloc(s->nentries * sizeof(*b->entries));
	if (!b->entries)
		return -ENOMEM;
	memcpy(b->entries, s->entries, s->nentries * sizeof(*b->entries));
	b->seq = s->seq;
	b->slot = slot;
	b->pos = it->pos;
	b->vol = vol;
	b->volume_id = s->volume_id;
	b->nentries = s->nentries;
	b->data_ok = it->data_ok;
	if (!it->data_ok)
		note_bad_blocks(b, s, slot_buf + (size_t)(it->pos + 1) * QUILL_BLOCK_SIZE);
	rp->n++;
	return 0;
}

static int replay_add_damage(struct replay *rp, uint32_t slot, const struct logcheck_item *it,
			     struct engine_volume *vol, uint64_t volume_id)
{
	if (ARRAY_GROW(rp->dmg, rp->capdmg, rp->ndmg, 16) < 0)
		return -ENOMEM;
	rp->dmg[rp->ndmg++] = (struct replay_damage){
		.slot = slot, .pos = it->pos, .next = it->next, .vol = vol,
		.volume_id = volume_id, .lo = it->seq_lo, .hi = it->seq_hi };
	return 0;
}

int eng_walk_slot(struct engine *eng, uint32_t slot, const struct segment_header *h,
		  uint64_t check_above, eng_walk_fn visit, void *arg)
{
	return eng_walk_buf(eng, slot, h, eng->gc_buf, check_above, visit, arg);
}

int eng_walk_buf(struct engine *eng, uint32_t slot, const struct segment_header *h,
		 const uint8_t *buf, uint64_t check_above, eng_walk_fn visit, void *arg)
{
	struct slot to = eng->slots[slot];
	struct summary *sum = malloc(sizeof(*sum));
	struct logcheck_walk w;
	struct logcheck_item it = { 0 };
	int r = 0;

	if (!sum)
		return -ENOMEM;
	to.state = SLOT_SEALED;
	to.generation = h->generation;
	seg_slot_set(eng, slot, &to);
	logcheck_walk_init(&w, buf, eng->blocks_per_seg, h, check_above);
	while (r == 0) {
		logcheck_walk_next(&w, sum, &it);
		if (it.kind == LOGCHECK_END)
			break;
		r = visit(arg, &it, sum, buf + (size_t)(it.pos + 1) * QUILL_BLOCK_SIZE);
	}
	eng->slots[slot].used = it.pos;
	free(sum);
	return r;
}

struct replay_walk {
	struct engine *eng;
	struct replay *rp;
	uint32_t slot;
	uint64_t owner;              /* the volume the slot's header names */
	struct engine_volume *vol;   /* the layer that holds its blocks now */
};

static int replay_visit(void *arg, const struct logcheck_item *it, const struct summary *sum,
			const uint8_t *data)
{
	struct replay_walk *rw = arg;
	struct replay *rp = rw->rp;

	if (it->kind == LOGCHECK_DAMAGED)
		return replay_add_damage(rp, rw->slot, it, rw->vol, rw->owner);
	/* even a torn batch spent its number: never hand it out again */
	if (sum->seq > rp->max_seq)
		rp->max_seq = sum->seq;
	if (it->data_ok) /* where its catalog records live (a bad batch's are written
			    again from RocksDB by the reconcile) */
		eng_catalog_note_batch(rw->eng, rw->slot, sum, data, it->pos + 1);
	rw->eng->slots[rw->slot].last_seq = sum->seq;
	if (sum->seq <= rp->ckpt_seq)
		return 0; /* in the stored map already */
	if (logcheck_note_batch(&rp->facts, sum) < 0)
		return -ENOMEM;
	return replay_add(rp, sum, rw->slot, it, rw->eng->gc_buf, rw->vol);
}

/* Walks one used slot's log. The slot is read whole, in one I/O: a store of thousands
 * of used slots would otherwise cost a 4 KiB read per batch at start-up. */
static int walk_slot(struct engine *eng, uint32_t slot, const struct segment_header *h,
		     struct engine_volume *vol, struct replay *rp)
{
	struct replay_walk rw = { eng, rp, slot, h->volume_id, vol };
	int r;

	eng->slots[slot].volume_id = vol->rec.volume_id; /* a merged snapshot's are its child's */
	/* block 0, the header, was read by scan_slot(): its place in gc_buf stays unused */
	r = seg_read_sync(eng, slot, 1, eng->gc_buf + QUILL_BLOCK_SIZE, eng->blocks_per_seg - 1);
	if (r == 0)
		r = logcheck_note_slot(&rp->facts, h);
	return r < 0 ? r : eng_walk_slot(eng, slot, h, rp->ckpt_seq, replay_visit, &rw);
}

/* ---- tear or corruption ---- */

/* A tear ends its slot's log: it and what follows it there are dropped. */
static void cut_slot(struct engine *eng, uint32_t slot, uint32_t pos)
{
	if (pos < eng->slots[slot].used)
		eng->slots[slot].used = pos;
}

/* Behind the tear that ended its slot's log (or that tear itself: pos == used). */
static bool is_cut(const struct engine *eng, uint32_t slot, uint32_t pos)
{
	return pos >= eng->slots[slot].used;
}

static void judge(struct engine *eng, struct replay *rp)
{
	for (size_t i = 0; i < rp->n; i++) {
		struct replay_batch *b = &rp->v[i];

		if (b->data_ok)
			continue;
		logcheck_judge(&rp->facts, b->volume_id, b->seq, b->seq, &b->verdict);
		if (b->verdict.corrupt)
			b->corrupt = true;
		else
			cut_slot(eng, b->slot, b->pos);
	}
	for (size_t i = 0; i < rp->ndmg; i++) {
		struct replay_damage *d = &rp->dmg[i];

		if (d->hi == UINT64_MAX)
			d->hi = logcheck_seq_hi(&rp->facts, d->volume_id, d->lo);
		if (d->hi <= rp->ckpt_seq) {
			d->hi = 0; /* a batch in the stored map already: nothing is lost */
			continue;
		}
		if (d->lo <= rp->ckpt_seq)
			d->lo = rp->ckpt_seq + 1; /* older, it would be in the stored map */
		logcheck_judge(&rp->facts, d->volume_id, d->lo, d->hi, &d->verdict);
		if (d->verdict.corrupt)
			d->corrupt = true;
		else
			cut_slot(eng, d->slot, d->pos);
	}
}

static void why_durable(const struct logcheck_verdict *v, char *buf, size_t len)
{
	if (v->later >= ONDISK_MAX_INFLIGHT_BATCHES)
		snprintf(buf, len, "%u later batches of its volume follow it", v->later);
	else
		snprintf(buf, len, "a later summary records it durable (durable mark %" PRIu64 ")",
			 v->durable_seq);
}

static void report_batch(struct engine *eng, const struct replay_batch *b)
{
	char why[96], lbas[REPLAY_BAD_LBAS * 21 + 8];
	size_t off = 0;

	if (b->data_ok || b->pos > eng->slots[b->slot].used)
		return; /* whole, or dropped behind an earlier tear of its slot */
	if (!b->corrupt) {
		log_msg(LOG_WARN, ENG_LOG, "slot %u: batch %" PRIu64 " at block %u is torn (in "
			"flight at the crash); dropped with everything after it in the slot",
			b->slot, b->seq, b->pos);
		eng->stats.torn_batches++;
		return;
	}
	for (uint32_t i = 0; i < b->nbad && i < REPLAY_BAD_LBAS; i++)
		off += (size_t)snprintf(lbas + off, sizeof(lbas) - off, "%s%" PRIu64,
					i ? " " : "", b->bad_lbas[i]);
	if (b->nbad > REPLAY_BAD_LBAS)
		snprintf(lbas + off, sizeof(lbas) - off, " ...");
	why_durable(&b->verdict, why, sizeof(why));
	log_msg(LOG_ERROR, ENG_LOG, "volume %s: slot %u: batch %" PRIu64 " at block %u is "
		"CORRUPT, not torn: %u data block(s) fail their checksum (lba %s) though the "
		"batch was durable (%s); kept: those blocks read as I/O errors, the rest of "
		"the log applies", b->vol->rec.name, b->slot, b->seq, b->pos, b->nbad, lbas, why);
	eng->stats.corrupt_batches++;
}

/* The seq of a torn summary is unknown, so the next run may hand it out again, and
 * a later start would judge the block anew against that run's batches. Zeroing it
 * (the slot is sealed: nothing else writes there) ends the slot's log at it for good. */
static int erase_torn_summary(struct engine *eng, const struct replay_damage *d)
{
	int r = seg_zero_block_sync(eng, d->slot, d->pos);

	if (r < 0)
		log_msg(LOG_ERROR, ENG_LOG, "slot %u: erasing the torn summary at block %u "
			"failed: %s", d->slot, d->pos, strerror(-r));
	return r;
}

/* A durable batch whose LBAs cannot be known: the volume is marked damaged (kept in
 * its record) rather than anything being zero-filled. */
static int report_damage(struct engine *eng, const struct replay_damage *d)
{
	char why[96];

	if (d->hi == 0 || d->pos > eng->slots[d->slot].used)
		return 0; /* in the stored map, or dropped behind an earlier tear */
	if (!d->corrupt) {
		log_msg(LOG_WARN, ENG_LOG, "slot %u: the summary at block %u is torn (a batch in "
			"flight at the crash); dropped with everything after it in the slot",
			d->slot, d->pos);
		eng->stats.torn_batches++;
		return erase_torn_summary(eng, d);
	}
	why_durable(&d->verdict, why, sizeof(why));
	log_msg(LOG_ERROR, ENG_LOG, "volume %s: slot %u blocks %u..%u: the summary of a "
		"durable batch (seq %" PRIu64 "..%" PRIu64 ") is damaged (%s); the blocks it "
		"wrote are unknown and may read old data: volume marked DAMAGED, the rest of "
		"its log applies", d->vol->rec.name, d->slot, d->pos, d->next - 1, d->lo,
		d->hi == UINT64_MAX ? d->lo : d->hi, why);
	eng->stats.corrupt_batches++;
	if (d->vol->rec.flags & ONDISK_LAYER_DAMAGED)
		return 0;
	d->vol->rec.flags |= ONDISK_LAYER_DAMAGED;
	return eng_volume_record_save(eng, &d->vol->rec);
}

static int report(struct engine *eng, struct replay *rp)
{
	int r = 0;

	for (size_t i = 0; i < rp->n; i++)
		report_batch(eng, &rp->v[i]);
	for (size_t i = 0; i < rp->ndmg && r == 0; i++)
		r = report_damage(eng, &rp->dmg[i]);
	return r;
}

static int cmp_seq(const void *a, const void *b)
{
	const struct replay_batch *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int apply(const struct replay_batch *b)
{
	uint32_t d = 0;

	/* a corrupt batch applies whole: its bad blocks map to where they are, with the
	 * summary's CRC, so every read of them fails the checksum (never zeros, never
	 * the older data) */
	for (uint32_t i = 0; i < b->nentries; i++) {
		const struct summary_entry *e = &b->entries[i];
		struct map_loc loc = { .slot = b->slot, .crc = e->data_crc };
		int r;

		if (ONDISK_ENTRY_HAS_BLOCK(e->kind))
			loc.block = b->pos + 1 + d++;
		r = eng_apply_entry(b->vol, e, &loc);
		if (r < 0)
			return r;
	}
	return 0;
}

/* seg_list_sync's visit of a slot and its header h (NULL: never used, or garbage). */
static int scan_slot(void *arg, uint32_t slot, const struct segment_header *h)
{
	struct replay *rp = arg;
	struct engine *eng = rp->eng;
	struct engine_volume *vol;
	int r;

	if (eng->slots[slot].held)
		return 0; /* another node's segment (held.c, loaded before): not this log */
	if (!h)
		return 0; /* free */
	if (h->generation > rp->max_gen)
		rp->max_gen = h->generation;
	r = seg_note_header(eng, slot, h);
	if (r < 0)
		return r;
	vol = eng_layer_for_owner(eng, h->volume_id);
	if (h->state == ONDISK_SEG_USED && !vol) {
		eng->slots[slot].volume_id = h->volume_id;
		eng->slots[slot].generation = h->generation;
		eng_catalog_stale_slot(eng, slot); /* a deleted layer's: FREE it */
	}
	if (h->state != ONDISK_SEG_USED || !vol)
		return 0; /* freed, or its volume was deleted */
	if (seg_table_restore(eng, slot, h, rp->ckpt_seq, vol->rec.volume_id)) {
		/* settled before the checkpoint: its log holds nothing replay needs */
		rp->settled++;
		if (eng->slots[slot].last_seq > rp->max_seq)
			rp->max_seq = eng->slots[slot].last_seq;
		return logcheck_note_slot(&rp->facts, h);
	}
	rp->walked++;
	return walk_slot(eng, slot, h, vol, rp);
}

static void replay_free(struct replay *rp)
{
	for (size_t i = 0; i < rp->n; i++)
		free(rp->v[i].entries);
	free(rp->v);
	free(rp->dmg);
	logcheck_facts_free(&rp->facts);
}

/* Applies, in sequence order, every collected batch that no tear dropped. */
static int apply_all(struct engine *eng, struct replay *rp, uint64_t *applied)
{
	int r = 0;

	*applied = 0;
	if (rp->n)
		qsort(rp->v, rp->n, sizeof(*rp->v), cmp_seq);
	for (size_t i = 0; i < rp->n && r == 0; i++) {
		if (is_cut(eng, rp->v[i].slot, rp->v[i].pos))
			continue;
		r = apply(&rp->v[i]);
		(*applied)++;
	}
	return r;
}

int eng_replay(struct engine *eng, uint64_t ckpt_seq)
{
	struct replay rp = { .eng = eng, .max_seq = ckpt_seq, .ckpt_seq = ckpt_seq };
	uint64_t applied = 0;
	/* live counts so far come from the checkpointed map */
	int r;

	log_msg(LOG_INFO, ENG_LOG, "scanning the log: %u segments, checkpoint %llu",
		eng->sb.segment_count, (unsigned long long)ckpt_seq);
	r = seg_table_load(eng);
	if (r == 0) {
		seg_remote_restore(eng);
		r = seg_list_sync(eng, scan_slot, &rp);
	}
	if (r == 0)
		log_msg(LOG_INFO, ENG_LOG, "start-up read the logs of %u segments; %u settled "
			"ones came from the checkpoint's segment table", rp.walked, rp.settled);
	if (r == 0) {
		judge(eng, &rp); /* marks are store-wide: only once every slot is read */
		r = report(eng, &rp);
	}
	if (r == 0) {
		eng->replaying = true;
		r = apply_all(eng, &rp, &applied);
		eng->replaying = false;
	}
	replay_free(&rp);
	if (r < 0) {
		log_msg(LOG_ERROR, ENG_LOG, "replay failed: %s", err_str(-r));
		return r;
	}
	eng->stats.replayed_batches = applied;
	eng->stats.segments_read_at_open = rp.walked;
	eng->stats.segments_settled_at_open = rp.settled;
	eng->next_seq = rp.max_seq + 1;
	eng->open_seq = eng->next_seq; /* marks this run records start here */
	eng->next_gen = rp.max_gen + 1;
	if (eng->next_gen < eng->next_volume_id)
		eng->next_gen = eng->next_volume_id; /* a new store's base (eng_id_base) */
	eng->nfree = 0;
	for (uint32_t i = 0; i < eng->sb.segment_count; i++) {
		struct slot *s = &eng->slots[i];

		if (s->state == SLOT_FREE && s->live) {
			/* the map points into a slot whose header is gone: keep it */
			struct slot to = *s;

			log_msg(LOG_ERROR, ENG_LOG, "slot %u: %u mapped blocks but no valid header; "
				"kept out of use", i, s->live);
			to.state = SLOT_SEALED;
			to.used = eng->blocks_per_seg;
			seg_slot_set(eng, i, &to);
		}
		if (s->state == SLOT_FREE)
			eng->nfree++;
		else
			log_msg(LOG_DEBUG, ENG_LOG, "slot %u: volume %llu gen %llu live %u used %u "
				"last seq %llu", i, (unsigned long long)s->volume_id,
				(unsigned long long)s->generation, s->live, s->used,
				(unsigned long long)s->last_seq);
	}
	return 0;
}
