/* engine/snap.c — snapshots and clones: create, rm, rollback, list, clone.
 *
 *   snapshot: the volume's layer is frozen under the snapshot's name; the volume
 *             continues in a new, empty layer (a new id) whose parent it is.
 *   clone:    a new volume layer whose parent is the snapshot.
 *   rollback: the volume's layer is dropped; a new empty one reads through to the
 *             snapshot.
 *   snap rm:  a snapshot nobody reads through is dropped; one with a single child is
 *             merged into it (the child takes the entries it does not override and
 *             the slots; an alias record keeps the slots' headers pointing to the
 *             child across restarts). Two children or more: refused.
 *
 * Layers and how reads fall through them: layer.c. Flatten: flatten.c. Diff: diff.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/volspec.h"
#include "engine/engine_internal.h"
#include "metadata/meta.h"

/* ---- names ---- */

static struct engine_volume *snapshot_find(struct engine *eng, uint64_t uid, const char *name)
{
	for (size_t i = 0; i < eng->nvols; i++) {
		struct engine_volume *l = eng->vols[i];

		if (l->rec.kind == ONDISK_LAYER_SNAPSHOT && l->rec.uid == uid &&
		    strcmp(l->rec.name, name) == 0)
			return l;
	}
	return NULL;
}

struct engine_volume *eng_layer_by_spec(struct engine *eng, const char *spec)
{
	char vname[VOLSPEC_NAME_MAX + 1], sname[VOLSPEC_NAME_MAX + 1];
	struct engine_volume *vol;

	if (volspec_parse(spec, vname, sname) < 0 || !(vol = eng_volume_by_name(eng, vname)))
		return NULL;
	return sname[0] ? snapshot_find(eng, vol->rec.uid, sname) : vol;
}

struct engine_volume *eng_snapshot_by_spec(struct engine *eng, const char *spec)
{
	struct engine_volume *l = eng_layer_by_spec(eng, spec);

	return l && l->rec.kind == ONDISK_LAYER_SNAPSHOT ? l : NULL;
}

/* vol's snapshot `snap`, with the usual errors. */
static int lookup_snapshot(struct engine *eng, const char *volname, const char *snap,
			   struct engine_volume **vol, struct engine_volume **s)
{
	*vol = eng_volume_by_name(eng, volname);
	if (!*vol)
		return -ENOENT;
	*s = snapshot_find(eng, (*vol)->rec.uid, snap);
	return *s ? 0 : -ENOENT;
}

/* ---- snapshot ---- */

/* Grows eng->vols by one slot ahead, so that adding a layer after a commit cannot fail. */
static int reserve_layer(struct engine *eng)
{
	struct engine_volume **v = realloc(eng->vols, (eng->nvols + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	eng->vols = v;
	return 0;
}

static void seal_open_slot(struct engine_volume *vol)
{
	if (vol->open_slot >= 0)
		seg_seal(vol->eng, (uint32_t)vol->open_slot);
	vol->open_slot = -1;
}

/* Makes `rec` the volume's layer, with an empty map of `nblocks`; the old layer's map
 * and log go to `frozen` (a snapshot) or are dropped (frozen == NULL). */
static void switch_layer(struct engine_volume *vol, const struct volume_record *rec,
			 struct map *fresh, struct engine_volume *frozen,
			 struct engine_volume *parent)
{
	struct engine *eng = vol->eng;

	seal_open_slot(vol);
	if (frozen) {
		frozen->map = vol->map;
		frozen->parent = vol->parent;
		frozen->rec_loc = vol->rec_loc; /* the old layer's record block is its own */
		frozen->rec_logged = vol->rec_logged;
		frozen->rec_seq = vol->rec_seq;
		eng->vols[eng->nvols++] = frozen;
		/* the family has an entry (vol's): nothing to allocate, nothing to fail */
		(void)seg_family_layer_added(eng, frozen->rec.uid);
	} else {
		eng_layer_discard(eng, vol);
		map_destroy(vol->map);
	}
	vol->map = fresh;
	vol->rec = *rec;
	vol->parent = parent;
	vol->rec_logged = false;
	eng->next_volume_id++;
}

/* ---- the jobs of snapshot calls ---- */

struct snap_job {
	struct eng_job job;
	char vol[ENGINE_VOLUME_NAME_MAX + 1];
	char snap[ENGINE_VOLUME_NAME_MAX + 1];
	bool force;                  /* rollback */
	struct engine_volume *held;  /* whose writes wait until the job ends */
	struct volume_record merged; /* delete: the snapshot merged into its child... */
	uint64_t merge_seq;          /* ...and the last batch before the merge */
	uint64_t child_overlap;      /* ...and the child's overlap before it */
	/* create: what its commit makes, applied once the commit has landed */
	struct meta_batch *mb;
	struct engine_volume *frozen;
	struct map *fresh;
	struct volume_record srec, hrec;
};

static void snap_job_release(struct eng_job *job)
{
	struct snap_job *sj = (struct snap_job *)job;

	if (sj->held)
		eng_release_writes(sj->held);
	meta_batch_destroy(sj->mb);
	map_destroy(sj->fresh);
	free(sj->frozen);
	free(sj);
}

static struct snap_job *snap_job_new(const char *vol, const char *snap,
				     struct engine_volume *l0, struct engine_volume *l1)
{
	struct snap_job *sj = calloc(1, sizeof(*sj));

	if (!sj)
		return NULL;
	snprintf(sj->vol, sizeof(sj->vol), "%s", vol);
	snprintf(sj->snap, sizeof(sj->snap), "%s", snap ? snap : "");
	sj->job.layers[0] = l0;
	sj->job.layers[1] = l1;
	sj->job.release = snap_job_release;
	return sj;
}

/* Holds the volume's new writes (they go to the layer that exists once the job ends),
 * then waits until it has nothing unretired and every completed write is durable. A
 * block the cleaner moved into its log meanwhile starts the wait over. */
static int hold_and_settle(struct snap_job *sj, struct engine_volume *vol)
{
	int r;

	if (!sj->held) {
		eng_hold_writes(vol);
		sj->held = vol;
	}
	for (;;) {
		r = eng_job_wait_quiet(&sj->job, vol);
		if (r)
			return r;
		r = eng_job_wait_flush(&sj->job);
		if (r || !vol->head)
			return r;
	}
}

/* ---- snapshot ---- */

static int snap_create_check(struct engine *eng, struct engine_volume *vol, const char *snap)
{
	int r = eng_valid_name(snap);

	if (r < 0)
		return r;
	if (snapshot_find(eng, vol->rec.uid, snap))
		return -EEXIST;
	return vol->flatten ? -EBUSY : 0;
}

/* The commit that freezes vol's layer as snapshot `snap` (the volume goes on in a new
 * layer): its records in sj->mb, the layers and map it needs allocated ahead, so that
 * applying it once it has landed cannot fail. */
static int snap_create_prepare(struct engine *eng, struct engine_volume *vol,
			       struct snap_job *sj)
{
	int r = snap_create_check(eng, vol, sj->snap);

	if (r < 0)
		return r;
	sj->frozen = calloc(1, sizeof(*sj->frozen));
	r = sj->frozen ? reserve_layer(eng) : -ENOMEM;
	if (r == 0)
		r = map_create(vol->rec.size / QUILL_BLOCK_SIZE, eng_map_ref, eng, &sj->fresh);
	if (r == 0)
		r = meta_batch_create(&sj->mb);
	if (r < 0)
		return r;
	/* the old layer keeps its id (its log names it) and becomes the snapshot */
	sj->srec = vol->rec;
	sj->srec.kind = ONDISK_LAYER_SNAPSHOT;
	sj->srec.created_ns = eng_now_realtime_ns();
	/* a batch its log lost (DAMAGED) stays the snapshot's; so does the sector size */
	sj->srec.flags &= ONDISK_LAYER_DAMAGED | ONDISK_LAYER_INHERITED;
	snprintf(sj->srec.name, sizeof(sj->srec.name), "%s", sj->snap);
	sj->hrec = vol->rec;
	sj->hrec.flags &= ONDISK_LAYER_INHERITED;
	sj->hrec.volume_id = eng_take_layer_id(eng, sj->mb);
	sj->hrec.parent_id = sj->srec.volume_id;
	sj->hrec.overlap = vol->rec.size / QUILL_BLOCK_SIZE;
	eng_batch_put_record(sj->mb, &sj->srec);
	eng_batch_put_record(sj->mb, &sj->hrec);
	return 0;
}

/* The commit landed: the layers switch in memory, and their records go to the log. */
static void snap_create_apply(struct engine *eng, struct engine_volume *vol,
			      struct snap_job *sj)
{
	struct engine_volume *frozen = sj->frozen;

	*frozen = (struct engine_volume){ .eng = eng, .rec = sj->srec, .open_slot = -1 };
	switch_layer(vol, &sj->hrec, sj->fresh, frozen, frozen);
	sj->frozen = NULL;
	sj->fresh = NULL;
	/* one batch: a rebuild sees both or neither (else the new head first: without
	 * the snapshot's record it still reads the same data through it) */
	eng_catalog_log_pair(vol, frozen);
	log_msg(LOG_INFO, ENG_LOG, "snapshot %s@%s created (layer %llu; the volume continues "
		"in layer %llu)", vol->rec.name, sj->snap, (unsigned long long)sj->srec.volume_id,
		(unsigned long long)sj->hrec.volume_id);
}

/* pc 0: settle the volume (its writes held), prepare the commit; pc 1: the commit is
 * in flight on the metadata thread (client I/O goes on; this volume's writes wait). */
static int snap_create_step(struct eng_job *job)
{
	struct snap_job *sj = (struct snap_job *)job;
	struct engine_volume *vol = job->layers[0];
	int r;

	if (job->pc == 0) {
		r = eng_job_wait_settled(job);
		if (r == 0)
			r = hold_and_settle(sj, vol);
		if (r == 0)
			r = snap_create_prepare(job->eng, vol, sj);
		if (r)
			return r;
		job->pc = 1;
	}
	r = eng_job_meta_commit(job, &sj->mb);
	if (r == 0)
		snap_create_apply(job->eng, vol, sj);
	return r;
}

int engine_snap_create_async(struct engine *eng, const char *volname, const char *snap,
			     engine_cb cb, void *arg)
{
	struct engine_volume *vol = eng_volume_by_name(eng, volname);
	struct snap_job *sj;
	int r;

	if (!vol)
		return -ENOENT;
	r = snap_create_check(eng, vol, snap);
	if (r < 0)
		return r;
	sj = snap_job_new(volname, snap, vol, NULL);
	if (!sj)
		return -ENOMEM;
	return eng_job_start(eng, &sj->job, snap_create_step, cb, arg);
}

int engine_snap_create(struct engine *eng, const char *volname, const char *snap)
{
	struct eng_sync s = { 0 };

	return eng_sync_wait(eng, &s, engine_snap_create_async(eng, volname, snap,
								eng_sync_done, &s));
}

/* ---- the layers that read through a snapshot ---- */

static size_t children_of(const struct engine *eng, const struct engine_volume *s,
			  struct engine_volume **out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->parent == s) {
			if (n < max)
				out[n] = eng->vols[i];
			n++;
		}
	return n;
}

/* The child a snapshot would be merged into: its own volume's next layer, if any. */
static struct engine_volume *natural_child(const struct engine *eng,
					   const struct engine_volume *s)
{
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->parent == s && eng->vols[i]->rec.uid == s->rec.uid)
			return eng->vols[i];
	return NULL;
}

int engine_snap_dependents(struct engine *eng, const char *volname, const char *snap,
			   char *buf, size_t len)
{
	struct engine_volume *vol, *s, *skip;
	size_t used = 0;
	int n = 0;
	int r = lookup_snapshot(eng, volname, snap, &vol, &s);

	if (r < 0)
		return r;
	if (len)
		buf[0] = '\0';
	skip = natural_child(eng, s);
	for (size_t i = 0; i < eng->nvols; i++) {
		struct engine_volume *c = eng->vols[i];
		char spec[ENGINE_SNAP_SPEC_MAX + 1];
		int w;

		if (c->parent != s || c == skip)
			continue;
		eng_layer_spec(eng, c, spec, sizeof(spec));
		w = snprintf(buf + used, len > used ? len - used : 0, "%s%s %s", n ? ", " : "",
			     c->rec.kind == ONDISK_LAYER_SNAPSHOT ? "snapshot"
			     : c->rec.uid == s->rec.uid ? "volume" : "clone", spec);
		if (w > 0 && used + (size_t)w < len)
			used += (size_t)w;
		n++;
	}
	return n;
}

/* ---- snap rm ---- */

static int take_if_hole(void *arg, uint64_t lba, const struct map_loc *loc)
{
	struct engine_volume *child = arg;

	if (lba >= child->rec.overlap || map_get(child->map, lba, NULL))
		return 0; /* the child never reads s there */
	return map_set(child->map, lba, loc);
}

static int queue_op(struct engine *eng, const struct eng_meta_op *op)
{
	int r = eng_reserve_records(eng, 1);

	if (r == 0)
		eng->ops[eng->nops++] = *op;
	return r;
}

static int queue_alias(struct engine *eng, uint64_t from, uint64_t to)
{
	struct eng_meta_op op = { .kind = EMO_PUT, .klen = ONDISK_ALIAS_KEY_LEN,
				  .vlen = sizeof(to) };

	ondisk_alias_key(from, op.key);
	memcpy(op.val, &to, sizeof(to));
	return queue_op(eng, &op);
}

/* The records a merge changes, for the checkpoint that stores the merged map. */
static int queue_merge_ops(struct engine *eng, const struct engine_volume *s,
			   const struct engine_volume *child)
{
	struct eng_meta_op op = { .kind = EMO_PUT, .klen = ONDISK_VOLUME_KEY_LEN,
				  .vlen = sizeof(struct ondisk_volume_record) };
	int r;

	ondisk_volume_key(child->rec.volume_id, op.key);
	ondisk_volume_record_encode(&child->rec, (struct ondisk_volume_record *)op.val);
	r = queue_op(eng, &op);
	op = (struct eng_meta_op){ .kind = EMO_DELETE, .klen = ONDISK_VOLUME_KEY_LEN };
	ondisk_volume_key(s->rec.volume_id, op.key);
	if (r == 0)
		r = queue_op(eng, &op);
	op = (struct eng_meta_op){ .kind = EMO_DELETE_RANGE, .klen = ONDISK_MAP_KEY_LEN };
	ondisk_map_key(s->rec.volume_id, 0, op.key);
	ondisk_map_key(s->rec.volume_id + 1, 0, op.end);
	if (r == 0)
		r = queue_op(eng, &op);
	for (size_t i = 0; i < eng->naliases && r == 0; i++)
		if (eng->aliases[i].to == child->rec.volume_id)
			r = queue_alias(eng, eng->aliases[i].from, child->rec.volume_id);
	return r;
}

int eng_merge_layer(struct engine *eng, struct engine_volume *s, struct engine_volume *child)
{
	/* the child's record, s's record and chunks, the new alias and one per alias
	 * that pointed to the child: nothing after the map copy may fail */
	int r = eng_reserve_records(eng, 4 + eng->naliases);

	/* a copy stopped half way (no memory) reads the same: the child holds a copy of
	 * some entries it used to read through s (their blocks stay live until s goes) */
	if (r == 0)
		r = map_for_each(s->map, take_if_hole, child);
	if (r == 0)
		r = eng_alias_add(eng, s->rec.volume_id, child->rec.volume_id);
	if (r < 0)
		return r;
	eng_catalog_forget(s); /* the MERGE block describes s from now on */
	map_clear(s->map, 0, map_nblocks(s->map));
	seal_open_slot(s);
	if (!s->parent)
		child->rec.overlap = 0;
	else if (child->rec.overlap > s->rec.overlap)
		child->rec.overlap = s->rec.overlap;
	child->rec.parent_id = s->rec.parent_id;
	child->parent = s->parent;
	child->rec.flags |= s->rec.flags & ONDISK_LAYER_DAMAGED; /* it holds s's blocks now */
	for (uint32_t i = 0; i < eng->sb.segment_count; i++)
		if (eng->slots[i].state != SLOT_FREE && eng->slots[i].volume_id == s->rec.volume_id)
			eng->slots[i].volume_id = child->rec.volume_id;
	for (size_t i = 0; i < eng->naliases; i++)
		if (eng->aliases[i].to == s->rec.volume_id)
			eng->aliases[i].to = child->rec.volume_id;
	return 0;
}

/* Folds snapshot s into its only child: the child takes what it read through s. What
 * its MERGE block will say goes into sj. */
static int merge_into_child(struct snap_job *sj, struct engine_volume *s,
			    struct engine_volume *child)
{
	struct engine *eng = sj->job.eng;
	int r;

	sj->merged = s->rec;
	sj->merge_seq = eng->next_seq - 1; /* batches after it see the merged map */
	sj->child_overlap = child->rec.overlap;
	r = eng_merge_layer(eng, s, child);

	if (r < 0)
		return r;
	r = queue_merge_ops(eng, s, child);
	eng_volume_remove(eng, s);
	return r; /* the caller waits for the checkpoint that stores it all */
}

static int snap_delete_check(struct engine *eng, struct engine_volume *s,
			     struct engine_volume **child)
{
	*child = NULL;
	if (s->open)
		return -EBUSY;
	if (children_of(eng, s, child, 1) > 1)
		return -ENOTEMPTY;
	return *child && (*child)->flatten ? -EBUSY : 0;
}

static int snap_delete_step(struct eng_job *job)
{
	struct snap_job *sj = (struct snap_job *)job;
	struct engine *eng = job->eng;
	struct engine_volume *s = job->layers[0], *child;
	int r;

	if (job->pc == 0) {
		r = eng_job_wait_settled(job);
		if (r == 0)
			r = eng_job_wait_quiet(job, s); /* the cleaner may be moving its blocks */
		if (r == 0)
			r = snap_delete_check(eng, s, &child); /* changed meanwhile? */
		if (r == 0 && child != job->layers[1])
			r = -EBUSY; /* a clone of it appeared (it is claimed: cannot be) */
		if (r)
			return r;
		if (!child) {
			r = eng_layer_drop(eng, s);
			goto done;
		}
		r = merge_into_child(sj, s, child); /* s is gone now */
		if (r < 0)
			return r;
		job->pc = 1;
	}
	/* the merged map, the records and the aliases land in RocksDB together */
	r = eng_job_wait_ckpt(job);
	if (r == ENG_JOB_WAIT)
		return r;
	if (r == 0) {
		/* queued after the commit: the job ends once they are durable */
		eng_catalog_log_merge(job->layers[1], &sj->merged, sj->merge_seq,
				      &sj->child_overlap);
		eng_catalog_log(job->layers[1]);
	}
done:
	if (r == 0)
		log_msg(LOG_INFO, ENG_LOG, "snapshot %s@%s removed", sj->vol, sj->snap);
	eng_run_parked(eng, false);
	return r;
}

int engine_snap_delete_async(struct engine *eng, const char *volname, const char *snap,
			     engine_cb cb, void *arg)
{
	struct engine_volume *vol, *s, *child;
	struct snap_job *sj;
	int r = lookup_snapshot(eng, volname, snap, &vol, &s);

	if (r == 0)
		r = snap_delete_check(eng, s, &child);
	if (r < 0)
		return r;
	sj = snap_job_new(volname, snap, s, child);
	if (!sj)
		return -ENOMEM;
	return eng_job_start(eng, &sj->job, snap_delete_step, cb, arg);
}

int engine_snap_delete(struct engine *eng, const char *volname, const char *snap)
{
	struct eng_sync s = { 0 };

	return eng_sync_wait(eng, &s, engine_snap_delete_async(eng, volname, snap,
								eng_sync_done, &s));
}

/* ---- rollback ---- */

static int rollback_check(const struct engine_volume *vol, bool force)
{
	return (vol->open && !force) || vol->flatten ? -EBUSY : 0;
}

static int rollback_commit(struct engine *eng, struct engine_volume *vol,
			   struct engine_volume *s)
{
	struct volume_record rec, old;
	struct meta_batch *mb = NULL;
	struct map *fresh = NULL;
	int r = map_create(s->rec.size / QUILL_BLOCK_SIZE, eng_map_ref, eng, &fresh);

	if (r == 0)
		r = meta_batch_create(&mb);
	if (r < 0)
		goto out;
	old = vol->rec;
	rec = vol->rec;
	rec.flags &= ONDISK_LAYER_INHERITED; /* the volume's sector size stays */
	rec.volume_id = eng_take_layer_id(eng, mb);
	rec.size = s->rec.size;
	rec.parent_id = s->rec.volume_id;
	rec.overlap = s->rec.size / QUILL_BLOCK_SIZE;
	eng_batch_put_record(mb, &rec);
	eng_batch_delete_layer(eng, mb, vol->rec.volume_id);
	r = meta_batch_commit(eng->meta, mb, META_SYNC);
	if (r < 0)
		goto out;
	/* from here replay ignores the old layer's log; a write still waiting for space
	 * would land half in the old layer, half in the new one */
	eng_fail_parked(eng, vol, -EIO);
	switch_layer(vol, &rec, fresh, NULL, s);
	fresh = NULL;
	eng_catalog_tombstone(eng, &old);
	eng_catalog_relog(eng, 0); /* the new layer, and records that lived in the old one */
	log_msg(LOG_INFO, ENG_LOG, "volume %s rolled back to snapshot %s", vol->rec.name,
		s->rec.name);
	eng_run_parked(eng, false);
out:
	meta_batch_destroy(mb);
	map_destroy(fresh);
	return r;
}

static int rollback_step(struct eng_job *job)
{
	struct snap_job *sj = (struct snap_job *)job;
	struct engine_volume *vol = job->layers[0];
	int r = eng_job_wait_settled(job);

	if (r == 0 && !sj->held) {
		eng_hold_writes(vol); /* writes from now on go to the rolled back layer */
		sj->held = vol;
	}
	if (r == 0)
		r = eng_job_wait_quiet(job, vol);
	if (r == 0)
		r = rollback_check(vol, sj->force);
	return r ? r : rollback_commit(job->eng, vol, job->layers[1]);
}

int engine_snap_rollback_async(struct engine *eng, const char *volname, const char *snap,
			       bool force, engine_cb cb, void *arg)
{
	struct engine_volume *vol, *s;
	struct snap_job *sj;
	int r = lookup_snapshot(eng, volname, snap, &vol, &s);

	if (r == 0)
		r = rollback_check(vol, force);
	if (r < 0)
		return r;
	sj = snap_job_new(volname, snap, vol, s);
	if (!sj)
		return -ENOMEM;
	sj->force = force;
	return eng_job_start(eng, &sj->job, rollback_step, cb, arg);
}

int engine_snap_rollback(struct engine *eng, const char *volname, const char *snap, bool force)
{
	struct eng_sync s = { 0 };

	return eng_sync_wait(eng, &s, engine_snap_rollback_async(eng, volname, snap, force,
								  eng_sync_done, &s));
}

/* ---- listing ---- */

static int cmp_layer_id(const void *a, const void *b)
{
	const struct engine_volume *const *x = a, *const *y = b;
	return (*x)->rec.volume_id < (*y)->rec.volume_id ? -1
	       : (*x)->rec.volume_id > (*y)->rec.volume_id;
}

/* What removing snapshot s frees (once the cleaner ran): its data entries that no
 * layer reading through it reads, because each such layer has an entry of its own
 * there or does not reach that far (its overlap). That is what a merge into the only
 * child leaves behind (take_if_hole), or all of it when nothing reads through s. */
struct freed_count {
	struct engine_volume **kids;
	size_t nkids;
	uint64_t blocks;
};

static int count_freed(void *arg, uint64_t lba, const struct map_loc *loc)
{
	struct freed_count *c = arg;

	if (loc->slot == MAP_SLOT_ZERO)
		return 0;
	for (size_t i = 0; i < c->nkids; i++)
		if (lba < c->kids[i]->rec.overlap && !map_get(c->kids[i]->map, lba, NULL))
			return 0; /* it still reads this block through s */
	c->blocks++;
	return 0;
}

static int snap_freed_blocks(struct engine *eng, const struct engine_volume *s,
			     uint64_t *out)
{
	struct freed_count c = { .kids = malloc((eng->nvols + 1) * sizeof(*c.kids)) };

	if (!c.kids)
		return -ENOMEM;
	c.nkids = children_of(eng, s, c.kids, eng->nvols);
	map_for_each(s->map, count_freed, &c);
	free(c.kids);
	*out = c.blocks;
	return 0;
}

int engine_snap_list(struct engine *eng, const char *volname,
		     int (*fn)(const struct engine_snap_info *info, void *arg), void *arg)
{
	struct engine_volume *vol = eng_volume_by_name(eng, volname);
	struct engine_volume **snaps;
	size_t n = 0;
	int r = 0;

	if (!vol)
		return -ENOENT;
	snaps = malloc((eng->nvols + 1) * sizeof(*snaps));
	if (!snaps)
		return -ENOMEM;
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->rec.kind == ONDISK_LAYER_SNAPSHOT &&
		    eng->vols[i]->rec.uid == vol->rec.uid)
			snaps[n++] = eng->vols[i];
	qsort(snaps, n, sizeof(*snaps), cmp_layer_id); /* ids grow: oldest first */
	for (size_t i = 0; i < n && r == 0; i++) {
		struct engine_snap_info info = { 0 };
		const struct engine_volume *s = snaps[i];
		const struct engine_volume *skip = natural_child(eng, s);
		struct engine_volume *kids[1];
		size_t nkids = children_of(eng, s, kids, 1);

		snprintf(info.name, sizeof(info.name), "%s", s->rec.name);
		info.id = s->rec.volume_id;
		info.size = s->rec.size;
		info.created_ns = s->rec.created_ns;
		info.dependents = (unsigned)(nkids - (skip ? 1 : 0));
		info.open = s->open;
		info.sector_size = eng_sector_size(&s->rec);
		r = snap_freed_blocks(eng, s, &info.own_blocks);
		if (r == 0)
			r = fn(&info, arg);
	}
	free(snaps);
	return r;
}

/* ---- clone ---- */

static int clone_check(struct engine *eng, struct engine_volume *s, const char *newvol)
{
	int r = eng_valid_name(newvol);

	if (r < 0)
		return r;
	if (!s)
		return -ENOENT;
	return eng_volume_by_name(eng, newvol) ? -EEXIST : 0;
}

static int clone_commit(struct engine *eng, struct engine_volume *s, const char *newvol)
{
	struct engine_volume *clone;
	struct volume_record rec = { 0 };
	struct meta_batch *mb;
	int r = clone_check(eng, s, newvol); /* taken meanwhile? */

	if (r == 0)
		r = meta_batch_create(&mb);
	if (r < 0)
		return r;
	rec.size = s->rec.size;
	rec.parent_id = s->rec.volume_id;
	rec.overlap = s->rec.size / QUILL_BLOCK_SIZE;
	rec.flags = s->rec.flags & ONDISK_LAYER_INHERITED; /* a clone of a 4Kn disk is one */
	snprintf(rec.name, sizeof(rec.name), "%s", newvol);
	r = eng_volume_commit_new(eng, mb, &rec, &clone);
	if (r < 0)
		return r;
	clone->parent = s;
	eng_catalog_log(clone);
	return 0;
}

/* sj->vol: the new volume; sj->snap: the "VOL@SNAP" it reads through. */
static int clone_step(struct eng_job *job)
{
	struct snap_job *sj = (struct snap_job *)job;
	int r = eng_job_wait_settled(job);

	if (r == 0)
		r = clone_commit(job->eng, job->layers[0], sj->vol);
	if (r == 0)
		log_msg(LOG_INFO, ENG_LOG, "volume %s cloned from %s", sj->vol, sj->snap);
	return r;
}

int engine_clone_async(struct engine *eng, const char *snap_spec, const char *newvol,
		       engine_cb cb, void *arg)
{
	struct engine_volume *s = eng_snapshot_by_spec(eng, snap_spec);
	struct snap_job *sj;
	int r = clone_check(eng, s, newvol);

	if (r < 0)
		return r;
	sj = snap_job_new(newvol, snap_spec, s, NULL);
	if (!sj)
		return -ENOMEM;
	return eng_job_start(eng, &sj->job, clone_step, cb, arg);
}

int engine_clone(struct engine *eng, const char *snap_spec, const char *newvol)
{
	struct eng_sync s = { 0 };

	return eng_sync_wait(eng, &s, engine_clone_async(eng, snap_spec, newvol,
							  eng_sync_done, &s));
}
