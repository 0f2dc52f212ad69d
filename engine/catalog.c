/* engine/catalog.c — the catalog in the log, and what hides old data outliving it.
 *
 * RocksDB holds the catalog (layer records, aliases) for a fast start; the log holds
 * it too, so that the metadata can be rebuilt from the store alone (rebuild.c):
 *   - every record change is followed by a LAYER SET block in the layer's own log,
 *     durable before the management call answers (RocksDB is the commit point; a
 *     crash between the two is repaired at the next start by eng_catalog_reconcile);
 *   - a snapshot merged into its child leaves a MERGE block in the child's log;
 *   - each layer's newest SET block and each alias's MERGE block is live: it holds a
 *     reference on its slot, and the cleaner carries it forward like data;
 *   - a TRIM hides older blocks of its layer: a slot holding trims is not freed while
 *     an older slot of its layer is in use, unless the cleaner carried the trims into
 *     a TOMB block (each applies at replay at its original sequence number): over
 *     each block only the newest trim, and only where nothing was written since;
 *   - a freed slot gets a FREE header, so that nothing freed looks like log.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "engine/engine_internal.h"

/* ---- writing records ---- */

static void ref_move(struct engine *eng, struct map_loc *cur, bool *valid,
		     const struct map_loc *loc)
{
	if (*valid && cur->slot < eng->sb.segment_count && eng->slots[cur->slot].live) {
		eng->slots[cur->slot].live--;
		eng->slots[cur->slot].dead++;
	}
	*cur = *loc;
	*valid = true;
	if (loc->slot < eng->sb.segment_count)
		eng->slots[loc->slot].live++;
}

static int append_block(struct engine_volume *vol, enum ondisk_layer_op op, uint64_t layer_id,
			const void *block, enum slot_user who, struct ioreq *owner)
{
	return eng_append_data(vol, layer_id, block, ONDISK_ENTRY_LAYER, 0, op, 0, who, owner);
}

int eng_catalog_layer_add(struct engine *eng)
{
	struct volume_record rec = { .volume_id = 0, .kind = ONDISK_LAYER_CATALOG,
				     .uid = ONDISK_CATALOG_UID, .size = QUILL_BLOCK_SIZE,
				     .name = "(catalog)" };

	return eng_volume_add(eng, &rec, &eng->catalog);
}

static bool is_catalog(const struct engine_volume *l)
{
	return l->rec.kind == ONDISK_LAYER_CATALOG;
}

/* Has family uid a segment of its own log in this store (not a held copy)? */
static bool family_has_log(const struct engine *eng, uint64_t uid)
{
	const struct seg_family *f = seg_family_get(eng, uid);

	return f && f->nlog;
}

/* A layer's record goes into its family's log (the volume's head layer) when that has
 * an open slot, so that it moves with the family; otherwise into the catalog log: a
 * slot of its own for one block would cost a segment per empty volume. With
 * family_records (a cluster node) a family that has a log already gets the record
 * there all the same, opening a segment: a snapshot, rollback or resize of an idle
 * replicated volume must reach its copies before the call answers, or a node that
 * adopts the family (a takeover) would rebuild it without that change. */
static struct engine_volume *family_log(struct engine *eng, struct engine_volume *layer)
{
	struct engine_volume *head = layer->rec.kind == ONDISK_LAYER_VOLUME ? layer : NULL;

	for (size_t i = 0; i < eng->nvols && !head; i++)
		if (eng->vols[i]->rec.kind == ONDISK_LAYER_VOLUME &&
		    eng->vols[i]->rec.uid == layer->rec.uid)
			head = eng->vols[i];
	if (!head)
		return eng->catalog;
	if (head->open_slot >= 0 ||
	    (eng->opts.family_records && family_has_log(eng, head->rec.uid)))
		return head;
	return eng->catalog;
}

static struct eng_dead *dead_find(struct engine *eng, uint64_t id)
{
	for (size_t i = 0; i < eng->ndead; i++)
		if (eng->dead[i].id == id)
			return &eng->dead[i];
	return NULL;
}

static struct eng_dead *dead_add(struct engine *eng, const struct volume_record *rec)
{
	struct eng_dead *d = dead_find(eng, rec->volume_id), *v;

	if (d)
		return d;
	v = realloc(eng->dead, (eng->ndead + 1) * sizeof(*v));
	if (!v)
		return NULL;
	eng->dead = v;
	d = &eng->dead[eng->ndead++];
	*d = (struct eng_dead){ .id = rec->volume_id, .rec = *rec };
	return d;
}

static void dead_drop(struct engine *eng, struct eng_dead *d)
{
	*d = eng->dead[--eng->ndead];
}

static int append_layer(struct engine_volume *vol, const struct layer_block *lb,
			enum slot_user who, struct ioreq *owner)
{
	uint8_t *buf = seg_buf_alloc(QUILL_BLOCK_SIZE);
	int r;

	if (!buf)
		return -ENOMEM;
	ondisk_layer_block_encode(lb, buf);
	r = append_block(vol, lb->op, lb->rec.volume_id, buf, who, owner);
	seg_buf_free(buf);
	return r;
}

static void set_result(void *arg, int res)
{
	int *out = arg;
	*out = res;
}

static void log_failed(struct engine_volume *vol, int r)
{
	log_msg(LOG_ERROR, ENG_LOG, "layer %s (id %llu): its record is not in the log yet (%s); "
		"the next start writes it", vol->rec.name, (unsigned long long)vol->rec.volume_id,
		strerror(-r));
}

static void job_record_done(void *arg, int res)
{
	struct eng_job *job = arg;

	if (res < 0)
		LOG_RATELIMITED(LOG_ERROR, ENG_LOG, "a layer record did not reach the log (%s); "
				"the next start writes it", strerror(-res));
	eng_job_io_done(job, 0); /* the call's answer stands: RocksDB committed it */
}

/* Appends n blocks to vol's log with FUA (in one batch when they fit the forming
 * one), durable before the management call answers. In a job's step (engine_poll()
 * runs it: no waiting here) the job waits for them before its completion runs; from
 * start-up this waits for them. 0, an error queueing them, or the write's error
 * (start-up only: a job's completion logs it). */
static int append_wait_n(struct engine_volume *vol, const struct layer_block *lb, size_t n)
{
	struct engine *eng = vol->eng;
	struct eng_job *job = eng_job_running(eng);
	int res = 1, r = 0;
	struct ioreq *req = job ? eng_req_alloc(eng, job_record_done, job) :
				  eng_req_alloc(eng, set_result, &res);

	if (!req)
		return -ENOMEM;
	if (job)
		eng_job_io_begin(job);
	req->fua = true;
	/* a record frees nothing, but must not fail where a trim would not */
	for (size_t i = 0; i < n && r == 0; i++)
		r = append_layer(vol, &lb[i], SLOT_FOR_TRIM, req);
	eng_req_put(eng, req, r);
	if (job)
		return r;
	while (res == 1) {
		int pr = engine_poll(eng, 100); /* start-up: no loop runs yet */
		if (pr < 0)
			return pr;
	}
	return res;
}

static int append_wait(struct engine_volume *vol, const struct layer_block *lb)
{
	return append_wait_n(vol, lb, 1);
}

int eng_catalog_log_pair(struct engine_volume *a, struct engine_volume *b)
{
	struct layer_block lb[2] = { { .op = ONDISK_LAYER_SET, .rec = a->rec },
				     { .op = ONDISK_LAYER_SET, .rec = b->rec } };
	struct engine_volume *log = family_log(a->eng, a);
	int r;

	if (log != family_log(b->eng, b))
		return eng_catalog_log(a) < 0 ? -EIO : eng_catalog_log(b);
	r = append_wait_n(log, lb, 2);
	if (r < 0)
		log_failed(a, r);
	return 0;
}

int eng_catalog_log(struct engine_volume *vol)
{
	struct layer_block lb = { .op = ONDISK_LAYER_SET, .rec = vol->rec };
	int r = append_wait(family_log(vol->eng, vol), &lb);

	if (r < 0)
		log_failed(vol, r);
	return 0; /* committed in RocksDB: the answer stands */
}

void eng_catalog_orphans(struct engine *eng, uint64_t id)
{
	for (size_t i = 0; i < eng->nvols; i++) {
		struct engine_volume *l = eng->vols[i];

		if (l->rec.volume_id != id && l->rec_logged &&
		    l->rec_loc.slot < eng->sb.segment_count &&
		    eng->slots[l->rec_loc.slot].volume_id == id)
			l->rec_logged = false;
	}
}

/* Is the block at loc (valid) in a segment of family uid? */
static bool in_family_log(const struct engine *eng, bool valid, const struct map_loc *loc,
			  uint64_t uid)
{
	return valid && loc->slot < eng->sb.segment_count &&
	       eng->slots[loc->slot].family_uid == uid;
}

/* Appends to vol's log the SET records of vol's family (layers and tombstones): with
 * all, every one; otherwise those not in the family's log yet. */
static int family_records(struct engine_volume *vol, bool all, struct ioreq *owner)
{
	struct engine *eng = vol->eng;
	uint64_t uid = vol->rec.uid;
	int r = 0;

	for (size_t i = 0; i < eng->nvols && r == 0; i++) {
		struct engine_volume *l = eng->vols[i];
		struct layer_block lb = { .op = ONDISK_LAYER_SET, .rec = l->rec };

		if (l->rec.uid == uid && !is_catalog(l) && !l->committing &&
		    (all || !in_family_log(eng, l->rec_logged, &l->rec_loc, uid)))
			r = append_layer(vol, &lb, SLOT_FOR_TRIM, owner);
	}
	for (size_t i = 0; i < eng->ndead && r == 0; i++) {
		struct eng_dead *d = &eng->dead[i];
		struct layer_block lb = { .op = ONDISK_LAYER_SET, .rec = d->rec };

		lb.rec.flags |= ONDISK_LAYER_DELETED;
		if (d->rec.uid == uid && (all || !in_family_log(eng, d->logged, &d->loc, uid)))
			r = append_layer(vol, &lb, SLOT_FOR_TRIM, owner);
	}
	return r;
}

void eng_catalog_family_relog(struct engine_volume *vol, struct ioreq *owner)
{
	int r;

	if (!vol->new_segment)
		return;
	vol->new_segment = false; /* and a record that opens another one does not recurse */
	r = family_records(vol, false, owner);
	if (r < 0) /* the records stay where they are: only an adoption misses them */
		LOG_RATELIMITED(LOG_WARN, ENG_LOG, "layer records of family %llx were not "
				"copied into its log: %s", (unsigned long long)vol->rec.uid,
				strerror(-r));
}

/* A copy of the MERGE block of every snapshot merged into a layer of log's family,
 * naming in alias_to the layer it leads to now: a family checkpoint's, so that an
 * adoption that does not read the copy holding the merge (below S) keeps the alias.
 * It names the merge's child and overlap as the merge's own block did (the newest
 * copy becomes the alias's live block, and a whole-log rebuild takes the child from
 * it), when this run knows them; else 0, as the block eng_catalog_reconcile writes.
 * A merge whose block this run has not walked (settled at start-up) has no record in
 * memory either: the copy names the snapshot by id only. */
static int family_aliases(struct engine_volume *log, struct ioreq *owner)
{
	struct engine *eng = log->eng;
	int r = 0;

	for (size_t i = 0; i < eng->naliases && r == 0; i++) {
		const struct eng_alias *a = &eng->aliases[i];
		struct engine_volume *to = eng_layer_for_owner(eng, a->to);
		struct layer_block lb = { .op = ONDISK_LAYER_MERGE, .merge_seq = a->merge_seq,
					  .rec = a->rec };

		if (!to || is_catalog(to) || to->rec.uid != log->rec.uid)
			continue;
		if (!a->has_rec) {
			lb.rec = (struct volume_record){ .volume_id = a->from, .uid = to->rec.uid,
							 .kind = ONDISK_LAYER_SNAPSHOT,
							 .size = to->rec.size };
			snprintf(lb.rec.name, sizeof(lb.rec.name), "(merged)");
		}
		lb.child_id = a->child_id;
		lb.child_overlap = a->child_overlap;
		lb.alias_to = to->rec.volume_id;
		r = append_layer(log, &lb, SLOT_FOR_TRIM, owner);
	}
	return r;
}

int eng_catalog_family_records(struct engine_volume *log, struct ioreq *owner)
{
	int r = family_records(log, true, owner);

	return r < 0 ? r : family_aliases(log, owner);
}

struct engine_volume *eng_catalog_family_log(struct engine *eng, struct engine_volume *layer)
{
	struct engine_volume *log = family_log(eng, layer);

	return log == eng->catalog ? NULL : log;
}

void eng_catalog_relog(struct engine *eng, uint64_t skip)
{
	for (size_t i = 0; i < eng->nvols; i++)
		if (!eng->vols[i]->rec_logged && eng->vols[i]->rec.volume_id != skip &&
		    !is_catalog(eng->vols[i]))
			eng_catalog_log(eng->vols[i]);
	for (size_t i = 0; i < eng->ndead; i++)
		if (!eng->dead[i].logged)
			eng_catalog_tombstone(eng, &eng->dead[i].rec);
}

int eng_catalog_tombstone(struct engine *eng, const struct volume_record *rec)
{
	struct layer_block lb = { .op = ONDISK_LAYER_SET, .rec = *rec };
	struct eng_dead *d = dead_add(eng, rec);
	int r;

	lb.rec.flags |= ONDISK_LAYER_DELETED;
	if (d)
		d->rec = lb.rec;
	r = append_wait(eng->catalog, &lb);
	if (r < 0)
		log_failed(eng->catalog, r);
	return 0;
}

static void async_done(void *arg, int res)
{
	(void)arg;
	if (res < 0)
		LOG_RATELIMITED(LOG_ERROR, ENG_LOG, "a layer record did not reach the log (%s); "
				"the next start writes it", strerror(-res));
}

void eng_catalog_log_async(struct engine_volume *vol)
{
	struct layer_block lb = { .op = ONDISK_LAYER_SET, .rec = vol->rec };
	struct ioreq *req = eng_req_alloc(vol->eng, async_done, NULL);
	int r;

	if (!req) {
		log_failed(vol, -ENOMEM);
		return;
	}
	r = append_layer(family_log(vol->eng, vol), &lb, SLOT_FOR_TRIM, req);
	eng_req_put(vol->eng, req, r);
}

static struct eng_alias *alias_find(struct engine *eng, uint64_t from)
{
	for (size_t i = 0; i < eng->naliases; i++)
		if (eng->aliases[i].from == from)
			return &eng->aliases[i];
	return NULL;
}

int eng_catalog_log_merge(struct engine_volume *child, const struct volume_record *srec,
			  uint64_t merge_seq, const uint64_t *child_overlap)
{
	struct layer_block lb = { .op = ONDISK_LAYER_MERGE, .merge_seq = merge_seq, .rec = *srec,
				  .child_id = child_overlap ? child->rec.volume_id : 0,
				  .child_overlap = child_overlap ? *child_overlap : 0 };
	struct eng_alias *a = alias_find(child->eng, srec->volume_id);
	int r;

	if (a) {
		a->rec = *srec;
		a->has_rec = true;
		a->merge_seq = merge_seq;
		if (lb.child_id) {
			a->child_id = lb.child_id;
			a->child_overlap = lb.child_overlap;
		}
	}
	r = append_wait(child, &lb);
	if (r < 0)
		log_failed(child, r);
	return 0;
}

/* ---- the blocks that are live, at run time and at start-up ---- */

static void note_layer(struct engine *eng, uint64_t seq, const struct layer_block *lb,
		       const struct map_loc *loc)
{
	if (lb->op == ONDISK_LAYER_SET) {
		struct eng_alias *a = alias_find(eng, lb->rec.volume_id);
		struct engine_volume *l = eng_volume_by_id(eng, lb->rec.volume_id);
		struct eng_dead *d;

		if (lb->rec.flags & ONDISK_LAYER_DELETED) {
			d = l ? NULL : dead_add(eng, &lb->rec);
			if (d && (!d->logged || seq >= d->seq)) {
				ref_move(eng, &d->loc, &d->logged, loc);
				d->seq = seq;
			}
			return;
		}
		if (!l && !a && !dead_find(eng, lb->rec.volume_id)) {
			/* a layer RocksDB does not know (a crash between its deletion and the
			 * tombstone): reconcile writes the tombstone */
			d = dead_add(eng, &lb->rec);
			if (d)
				d->rec.flags |= ONDISK_LAYER_DELETED;
			return;
		}
		if (l) {
			if (!l->rec_logged || seq >= l->rec_seq) {
				ref_move(eng, &l->rec_loc, &l->rec_logged, loc);
				l->rec_seq = seq;
				l->rec_in_log = lb->rec;
			}
		} else if (a && (!a->has_rec || !a->logged)) {
			a->rec = lb->rec; /* a merged snapshot's own record: for reconcile */
			a->has_rec = true;
		}
		return;
	}
	struct eng_alias *a = alias_find(eng, lb->rec.volume_id);

	if (!a || (a->logged && seq < a->loc_seq))
		return;
	ref_move(eng, &a->loc, &a->logged, loc);
	a->loc_seq = seq;
	a->rec = lb->rec;
	a->has_rec = true;
	a->merge_seq = lb->merge_seq;
	if (lb->child_id) {
		a->child_id = lb->child_id;
		a->child_overlap = lb->child_overlap;
	}
}

void eng_catalog_retired(struct engine_volume *vol, const struct summary_entry *e,
			 const struct map_loc *loc)
{
	struct engine *eng = vol->eng;
	struct slot *s = &eng->slots[loc->slot];

	if (eng->replaying)
		return; /* eng_catalog_note_batch() saw it */
	if (e->kind != ONDISK_ENTRY_LAYER) {
		s->tombs++;
		return;
	}
	s->records++;
	if (e->src_block == ONDISK_LAYER_SET) {
		struct engine_volume *l = eng_volume_by_id(eng, e->lba);
		struct eng_dead *d = l ? NULL : dead_find(eng, e->lba);

		if (d) {
			ref_move(eng, &d->loc, &d->logged, loc);
			d->seq = s->last_seq;
		}
		if (l) {
			ref_move(eng, &l->rec_loc, &l->rec_logged, loc);
			l->rec_seq = s->last_seq;
			l->rec_in_log = l->rec;
		}
	} else if (e->src_block == ONDISK_LAYER_MERGE) {
		struct eng_alias *a = alias_find(eng, e->lba);

		if (a) {
			ref_move(eng, &a->loc, &a->logged, loc);
			a->loc_seq = s->last_seq;
		}
	}
}

void eng_catalog_note_batch(struct engine *eng, uint32_t slot, const struct summary *sum,
			    const uint8_t *data, uint32_t first_data)
{
	struct slot *s = &eng->slots[slot];
	uint32_t d = 0;

	for (uint32_t i = 0; i < sum->nentries; i++) {
		const struct summary_entry *e = &sum->entries[i];
		struct map_loc loc = { .slot = slot, .block = first_data + d, .crc = e->data_crc };
		struct layer_block lb;

		if (ONDISK_ENTRY_ZEROES(e->kind) || e->kind == ONDISK_ENTRY_TOMB)
			s->tombs++;
		if (ONDISK_ENTRY_HAS_BLOCK(e->kind))
			d++;
		if (e->kind != ONDISK_ENTRY_LAYER)
			continue;
		s->records++;
		if (ondisk_layer_block_decode(data + (size_t)(d - 1) * QUILL_BLOCK_SIZE,
					      QUILL_BLOCK_SIZE, &lb) == 0)
			note_layer(eng, sum->seq, &lb, &loc);
	}
	if (!s->first_seq || sum->seq < s->first_seq)
		s->first_seq = sum->seq;
}

void eng_catalog_forget(struct engine_volume *vol)
{
	struct slot *s;

	if (!vol->rec_logged || vol->rec_loc.slot >= vol->eng->sb.segment_count)
		return;
	s = &vol->eng->slots[vol->rec_loc.slot];
	if (s->live) {
		s->live--;
		s->dead++;
	}
	vol->rec_logged = false;
}

/* ---- FREE headers ---- */

void eng_catalog_stale_slot(struct engine *eng, uint32_t slot)
{
	uint32_t *v = realloc(eng->stale_slots, (eng->nstale + 1) * sizeof(*v));

	if (!v)
		return; /* stays USED on disk: a rebuild would see it, nothing else does */
	eng->stale_slots = v;
	eng->stale_slots[eng->nstale++] = slot;
}

/* Slots that hold layer records go first: a crash half way must not leave a layer's
 * record without the rest of its log having gone (a rebuild would bring back part of
 * it), while data without a record is ignored. */
int eng_slots_write_free(struct engine *eng, const uint32_t *slots, size_t n)
{
	uint8_t *buf;
	int r = 0;

	if (!n)
		return 0;
	buf = seg_buf_alloc(QUILL_BLOCK_SIZE);
	if (!buf)
		return -ENOMEM;
	for (int pass = 0; pass < 2 && r == 0; pass++) {
		size_t written = 0;

		for (size_t i = 0; i < n && r == 0; i++) {
			if ((eng->slots[slots[i]].records > 0) != (pass == 0))
				continue;
			r = seg_delete_sync(eng, slots[i], buf);
			written++;
		}
		if (r == 0 && written)
			r = seg_flush_sync(eng);
	}
	seg_buf_free(buf);
	if (r < 0)
		log_msg(LOG_ERROR, ENG_LOG, "writing FREE segment headers failed: %s", strerror(-r));
	return r;
}

/* ---- start-up: the log catches up with RocksDB ---- */

static bool same_record(const struct volume_record *a, const struct volume_record *b)
{
	struct ondisk_volume_record x, y;

	ondisk_volume_record_encode(a, &x);
	ondisk_volume_record_encode(b, &y);
	return memcmp(&x, &y, sizeof(x)) == 0;
}

int eng_catalog_reconcile(struct engine *eng)
{
	int r = eng_slots_write_free(eng, eng->stale_slots, eng->nstale);
	size_t fixed = 0;

	free(eng->stale_slots);
	eng->stale_slots = NULL;
	eng->nstale = 0;
	if (r < 0)
		return r;
	for (size_t i = 0; i < eng->naliases; i++) {
		struct eng_alias *a = &eng->aliases[i];
		struct engine_volume *to = eng_layer_for_owner(eng, a->to);

		if (a->logged || !to)
			continue;
		if (!a->has_rec) {
			log_msg(LOG_WARN, ENG_LOG, "merged layer %llu: no record of it in the log",
				(unsigned long long)a->from);
			continue;
		}
		eng_catalog_log_merge(to, &a->rec, eng->next_seq - 1, NULL); /* the child: unknown */
		fixed++;
	}
	for (size_t i = 0; i < eng->ndead; i++) {
		if (eng->dead[i].logged)
			continue;
		eng_catalog_tombstone(eng, &eng->dead[i].rec);
		fixed++;
	}
	for (size_t i = 0; i < eng->nvols; i++) {
		struct engine_volume *vol = eng->vols[i];

		if (is_catalog(vol) ||
		    (vol->rec_logged && same_record(&vol->rec_in_log, &vol->rec)))
			continue;
		eng_catalog_log(vol);
		fixed++;
	}
	if (fixed)
		log_msg(LOG_INFO, ENG_LOG, "wrote %zu layer records that the log lacked", fixed);
	return 0;
}

/* ---- tombstones ---- */

/* The oldest first_seq of the slots of owner other than `self` (UINT64_MAX: none):
 * a trim at seq may hide blocks in them when it is larger. */
static uint64_t oldest_slot_seq(const struct slot *slots, uint32_t nslots, uint32_t self,
				uint64_t owner)
{
	uint64_t oldest = UINT64_MAX;

	for (uint32_t j = 0; j < nslots; j++)
		if (j != self && slots[j].state != SLOT_FREE && !slots[j].held &&
		    slots[j].volume_id == owner && slots[j].first_seq < oldest)
			oldest = slots[j].first_seq;
	return oldest;
}

bool eng_slot_pinned(const struct slot *slots, uint32_t nslots, uint32_t i)
{
	const struct slot *s = &slots[i];

	return s->tombs && !s->carried &&
	       oldest_slot_seq(slots, nslots, i, s->volume_id) < s->last_seq;
}

bool eng_lba_pending(const struct engine_volume *vol, uint64_t lba)
{
	for (const struct batch *b = vol->head; b; b = b->next)
		for (uint32_t i = 0; i < b->sum.nentries; i++) {
			const struct summary_entry *e = &b->sum.entries[i];

			if (lba >= e->lba && lba - e->lba < e->nblocks)
				return true;
		}
	return false;
}

/* Appends the tombs gathered for one layer as a TOMB block. */
static int tombs_flush(struct engine_volume *vol)
{
	struct engine *eng = vol->eng;
	uint8_t *buf;
	int r;

	if (!eng->gc_tombs || !eng->gc_tombs->count)
		return 0;
	buf = seg_buf_alloc(QUILL_BLOCK_SIZE);
	if (!buf)
		return -ENOMEM;
	ondisk_tomb_block_encode(eng->gc_tombs, buf);
	r = eng_append_data(vol, eng->gc_tombs->layer_id, buf, ONDISK_ENTRY_TOMB, 0, 0, 0,
			    SLOT_FOR_GC, &eng->gc_req);
	seg_buf_free(buf);
	eng->gc_tombs->count = 0;
	return r;
}

static int tomb_put(struct engine_volume *vol, uint64_t layer, const struct ondisk_tomb *tomb)
{
	struct engine *eng = vol->eng;
	struct tomb_block *t = eng->gc_tombs;
	int r;

	if (!t) {
		t = eng->gc_tombs = calloc(1, sizeof(*t));
		if (!t)
			return -ENOMEM;
	}
	if (t->count && (t->layer_id != layer || t->count == ONDISK_TOMB_MAX)) {
		r = tombs_flush(vol);
		if (r < 0)
			return r;
	}
	t->layer_id = layer;
	t->tombs[t->count++] = *tomb;
	eng->gc_trims_kept++;
	return 0;
}

/* The tombs carried, joined into runs: neighbouring pieces of one trim (or of trims
 * of one batch) become one tomb again. */
struct tomb_run {
	struct engine_volume *vol;
	uint64_t layer;
	struct ondisk_tomb cur; /* cur.nblocks 0: none yet */
	int err;
};

static void run_end(struct tomb_run *run)
{
	if (run->cur.nblocks && run->err == 0)
		run->err = tomb_put(run->vol, run->layer, &run->cur);
	run->cur.nblocks = 0;
}

static void run_add(struct tomb_run *run, uint64_t lba, uint64_t n, uint64_t flags, uint64_t seq)
{
	const struct ondisk_tomb *c = &run->cur;
	uint64_t have = c->nblocks & 0xffffffffull;

	if (!have || c->seq != seq || (c->nblocks & ~0xffffffffull) != flags ||
	    c->lba + have != lba || have + n > 0xffffffffull) {
		run_end(run);
		if (n > 0xffffffffull) { /* only past a shrunk end: one tomb per 2^32 - 1 */
			run_add(run, lba, 0xffffffffull, flags, seq);
			run_add(run, lba + 0xffffffffull, n - 0xffffffffull, flags, seq);
			return;
		}
		run->cur = (struct ondisk_tomb){ .lba = lba, .nblocks = n | flags, .seq = seq };
		return;
	}
	run->cur.nblocks += n;
}

/* Which blocks of a trim's piece still need it: while an older slot of the layer is
 * on disk (`older`: it may hold blocks the trim hides; rebuild replays it), every
 * block not written since (a newer write hides the old blocks too: replay orders it
 * after the trim), and past the end (a shrink's); with none, only the zero entries
 * (a trim in a layer with a parent: they hide the parent's data, nothing else in
 * the log says so). Zero entries are not newer writes. */
struct narrow {
	struct tomb_run *run;
	const struct engine *eng;
	uint64_t seq, flags, cursor;
	bool older;
};

static int narrow_entry(void *arg, uint64_t lba, const struct map_loc *loc)
{
	struct narrow *w = arg;
	const struct engine *eng = w->eng;
	bool newer = loc->slot < eng->sb.segment_count && eng->slots[loc->slot].first_seq > w->seq;

	if (w->older && lba > w->cursor) /* holes */
		run_add(w->run, w->cursor, lba - w->cursor, w->flags, w->seq);
	if (loc->slot == MAP_SLOT_ZERO || (w->older && !newer))
		run_add(w->run, lba, 1, w->flags, w->seq);
	w->cursor = lba + 1;
	return w->run->err;
}

static void narrow(struct tomb_run *run, uint64_t lo, uint64_t hi, const struct gc_trim *t,
		   bool older)
{
	const struct map *m = run->vol->map;
	uint64_t end = map_nblocks(m), mid = hi < end ? hi : end;
	struct narrow w = { .run = run, .eng = run->vol->eng, .seq = t->seq,
			    .flags = t->n & ~0xffffffffull, .cursor = lo, .older = older };

	if (lo < mid) {
		map_for_each_range(m, lo, mid - lo, narrow_entry, &w);
		if (older && mid > w.cursor)
			run_add(run, w.cursor, mid - w.cursor, w.flags, w.seq);
	}
	if (older && hi > end && hi > lo)
		run_add(run, lo > end ? lo : end, hi - (lo > end ? lo : end), w.flags, w.seq);
}

/* Gathers one of the victim's trims; eng_catalog_carry_end() carries what counts. */
static int tomb_add(struct engine_volume *vol, uint64_t layer, uint64_t lba, uint64_t n,
		    uint64_t seq)
{
	struct engine *eng = vol->eng;

	if (eng->gc_ntrims == eng->gc_trims_cap) {
		size_t cap = eng->gc_trims_cap ? 2 * eng->gc_trims_cap : 256;
		struct gc_trim *v = realloc(eng->gc_trims, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		eng->gc_trims = v;
		eng->gc_trims_cap = cap;
	}
	eng->gc_trims[eng->gc_ntrims] = (struct gc_trim){ .layer = layer, .lba = lba, .n = n,
							  .seq = seq, .idx = eng->gc_trims_seen++ };
	eng->gc_ntrims++;
	return 0;
}

static uint64_t trim_end(const struct gc_trim *t)
{
	uint64_t n = t->n & 0xffffffffull;

	return t->lba + n < t->lba ? UINT64_MAX : t->lba + n;
}

static bool is_fill(const struct gc_trim *t)
{
	return (t->n & ONDISK_TOMB_FILL) != 0;
}

/* Later in the log: replay applies it after the other. */
static bool later(const struct gc_trim *a, const struct gc_trim *b)
{
	return a->seq != b->seq ? a->seq > b->seq : a->idx > b->idx;
}

static int by_layer_lba(const void *x, const void *y)
{
	const struct gc_trim *a = x, *b = y;

	if (a->layer != b->layer)
		return a->layer < b->layer ? -1 : 1;
	return a->lba < b->lba ? -1 : a->lba > b->lba;
}

static int by_value(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

/* A max-heap of trims by later(): the newest trim over the point of a sweep. */
static void heap_push(const struct gc_trim **h, size_t *n, const struct gc_trim *t)
{
	size_t i = (*n)++;

	for (; i && later(t, h[(i - 1) / 2]); i = (i - 1) / 2)
		h[i] = h[(i - 1) / 2];
	h[i] = t;
}

static void heap_pop(const struct gc_trim **h, size_t *n)
{
	const struct gc_trim *last = h[--*n];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= *n)
			break;
		if (c + 1 < *n && later(h[c + 1], h[c]))
			c++;
		if (!later(h[c], last))
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n)
		h[i] = last;
}

/* The trims of one layer (sorted by LBA): over each block only the newest counts (a
 * trim or allocated zero decides what the block holds whatever came before it, so
 * an older one hides nothing the newer does not), and of it only what still hides
 * something (narrow). FILLs (flatten's zeros) apply only where nothing came first:
 * they decide nothing for older trims and go as they are, narrowed. */
static int carry_layer_trims(struct tomb_run *run, const struct gc_trim *t, size_t n,
			     uint64_t oldest)
{
	uint64_t *bounds = malloc(2 * n * sizeof(*bounds));
	const struct gc_trim **heap = malloc(n * sizeof(*heap));
	size_t nb = 0, nu = 0, nh = 0, p = 0;

	if (!bounds || !heap) {
		free(bounds);
		free(heap);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		if (!is_fill(&t[i])) {
			bounds[nb++] = t[i].lba;
			bounds[nb++] = trim_end(&t[i]);
		}
	qsort(bounds, nb, sizeof(*bounds), by_value);
	for (size_t i = 0; i < nb; i++) /* each bound once */
		if (!nu || bounds[i] != bounds[nu - 1])
			bounds[nu++] = bounds[i];
	nb = nu;
	for (size_t k = 0; k < nb && run->err == 0; k++) {
		for (; p < n && t[p].lba <= bounds[k]; p++)
			if (!is_fill(&t[p]))
				heap_push(heap, &nh, &t[p]);
		while (nh && trim_end(heap[0]) <= bounds[k])
			heap_pop(heap, &nh);
		if (nh && k + 1 < nb)
			narrow(run, bounds[k], bounds[k + 1], heap[0], oldest < heap[0]->seq);
	}
	for (size_t i = 0; i < n && run->err == 0; i++)
		if (is_fill(&t[i]))
			narrow(run, t[i].lba, trim_end(&t[i]), &t[i], oldest < t[i].seq);
	free(bounds);
	free(heap);
	return run->err;
}

/* A tombstone is needed while an older slot holds records (of any layer: which ones
 * is not tracked per slot). */
static int carry_tombstone(struct engine_volume *vol, struct eng_dead *d)
{
	struct engine *eng = vol->eng;
	bool needed = false;

	for (uint32_t j = 0; j < eng->sb.segment_count && !needed; j++)
		needed = j != eng->gc_victim && eng->slots[j].state != SLOT_FREE &&
			 eng->slots[j].records && eng->slots[j].first_seq < d->seq;
	if (!needed) {
		/* its reference goes with the victim, which the cleaner frees */
		if (eng->slots[eng->gc_victim].live)
			eng->slots[eng->gc_victim].live--;
		dead_drop(eng, d);
		return 0;
	}
	struct layer_block lb = { .op = ONDISK_LAYER_SET, .rec = d->rec };
	return append_layer(vol, &lb, SLOT_FOR_GC, &eng->gc_req);
}

static int carry_layer(struct engine_volume *vol, const struct summary_entry *e,
		       uint32_t block, const uint8_t *data)
{
	struct engine *eng = vol->eng;
	struct eng_alias *a;

	if (e->src_block == ONDISK_LAYER_SET) {
		struct engine_volume *l = eng_volume_by_id(eng, e->lba);
		struct eng_dead *d = l ? NULL : dead_find(eng, e->lba);

		if (d && d->logged && d->loc.slot == eng->gc_victim && d->loc.block == block)
			return carry_tombstone(vol, d);
		if (!l || !l->rec_logged || l->rec_loc.slot != eng->gc_victim ||
		    l->rec_loc.block != block)
			return 0;
		struct layer_block lb = { .op = ONDISK_LAYER_SET, .rec = l->rec };
		return append_layer(vol, &lb, SLOT_FOR_GC, &eng->gc_req);
	}
	a = alias_find(eng, e->lba);
	if (!a || !a->logged || a->loc.slot != eng->gc_victim || a->loc.block != block)
		return 0;
	return append_block(vol, ONDISK_LAYER_MERGE, e->lba, data, SLOT_FOR_GC, &eng->gc_req);
}

int eng_catalog_carry(struct engine_volume *vol, const struct summary *sum,
		      const struct summary_entry *e, uint32_t block, const uint8_t *data)
{
	struct tomb_block *t;
	int r = 0;

	switch (e->kind) {
	case ONDISK_ENTRY_LAYER:
		return carry_layer(vol, e, block, data);
	case ONDISK_ENTRY_TRIM:
		return tomb_add(vol, sum->volume_id, e->lba, e->nblocks, sum->seq);
	case ONDISK_ENTRY_ZERO:
		return tomb_add(vol, sum->volume_id, e->lba,
				e->nblocks | ONDISK_TOMB_ALLOCATED |
					(e->src_block == ONDISK_ZERO_FILL ? ONDISK_TOMB_FILL : 0),
				sum->seq);
	case ONDISK_ENTRY_TOMB:
		t = malloc(sizeof(*t));
		if (!t)
			return -ENOMEM;
		if (ondisk_tomb_block_decode(data, QUILL_BLOCK_SIZE, t) == 0)
			for (uint32_t i = 0; i < t->count && r == 0; i++)
				r = tomb_add(vol, t->layer_id, t->tombs[i].lba,
					     t->tombs[i].nblocks, t->tombs[i].seq);
		free(t);
		return r;
	default:
		return 0;
	}
}

int eng_catalog_carry_end(struct engine_volume *vol)
{
	struct engine *eng = vol->eng;
	struct gc_trim *t = eng->gc_trims;
	size_t n = eng->gc_ntrims;
	uint64_t oldest = oldest_slot_seq(eng->slots, eng->sb.segment_count, eng->gc_victim,
					  vol->rec.volume_id);
	int r = 0;

	eng->gc_ntrims = 0;
	if (n)
		qsort(t, n, sizeof(*t), by_layer_lba);
	for (size_t i = 0, j; i < n && r == 0; i = j) {
		struct tomb_run run = { .vol = vol, .layer = t[i].layer };

		for (j = i; j < n && t[j].layer == t[i].layer; j++)
			;
		r = carry_layer_trims(&run, t + i, j - i, oldest);
		run_end(&run);
		if (r == 0)
			r = run.err;
	}
	return r < 0 ? r : tombs_flush(vol);
}
