/* engine/volume.c — the volume catalog: layers by id and name, volume create, delete,
 * resize, import, info, list, and the handles that open them. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/log.h"
#include "common/volspec.h"
#include "engine/engine_internal.h"
#include "metadata/meta.h"

struct engine_volume *eng_volume_by_id(struct engine *eng, uint64_t id)
{
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->rec.volume_id == id)
			return eng->vols[i];
	return NULL;
}

struct engine_volume *eng_family_layer(const struct engine *eng, uint64_t uid)
{
	const struct seg_family *f = seg_family_get(eng, uid);

	if (!f || !f->nlayers)
		return NULL; /* the common answer, without a walk */
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->rec.uid == uid)
			return eng->vols[i];
	return NULL;
}

/* A volume's live layer by name (snapshots have their own namespace per volume). */
struct engine_volume *eng_volume_by_name(struct engine *eng, const char *name)
{
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->rec.kind == ONDISK_LAYER_VOLUME &&
		    strcmp(eng->vols[i]->rec.name, name) == 0)
			return eng->vols[i];
	return NULL;
}

int eng_volume_add(struct engine *eng, const struct volume_record *rec,
		   struct engine_volume **out)
{
	struct engine_volume *vol = calloc(1, sizeof(*vol));
	struct engine_volume **vols;
	int r;

	if (!vol)
		return -ENOMEM;
	vol->eng = eng;
	vol->rec = *rec;
	vol->open_slot = -1;
	r = map_create(rec->size / QUILL_BLOCK_SIZE, eng_map_ref, eng, &vol->map);
	if (r < 0)
		goto err_free_vol;
	vols = realloc(eng->vols, (eng->nvols + 1) * sizeof(*vols));
	if (!vols) {
		r = -ENOMEM;
		goto err_free_map;
	}
	eng->vols = vols;
	r = seg_family_layer_added(eng, rec->uid);
	if (r < 0)
		goto err_free_map;
	eng->vols[eng->nvols++] = vol;
	if (out)
		*out = vol;
	return 0;

err_free_map:
	map_destroy(vol->map);
err_free_vol:
	free(vol);
	return r;
}

void eng_volume_remove(struct engine *eng, struct engine_volume *vol)
{
	for (size_t i = 0; i < eng->nvols; i++) {
		if (eng->vols[i] != vol)
			continue;
		eng->vols[i] = eng->vols[--eng->nvols];
		seg_family_layer_removed(eng, vol->rec.uid);
		break;
	}
	eng_flatten_free(vol);
	eng_job_forget_layer(vol);
	map_destroy(vol->map);
	free(vol);
}

/* ---- volumes ---- */

uint32_t eng_sector_size(const struct volume_record *rec)
{
	return rec->flags & ONDISK_LAYER_4KN ? ENGINE_SECTOR_SIZE_4K : ENGINE_SECTOR_SIZE_DEFAULT;
}

int eng_valid_name(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > ENGINE_VOLUME_NAME_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return -EINVAL;
	}
	return 0;
}

void eng_batch_put_record(struct meta_batch *mb, const struct volume_record *rec)
{
	struct ondisk_volume_record d;
	uint8_t key[ONDISK_VOLUME_KEY_LEN];

	ondisk_volume_key(rec->volume_id, key);
	ondisk_volume_record_encode(rec, &d);
	meta_batch_put(mb, key, sizeof(key), &d, sizeof(d));
}

void eng_batch_put_alias(struct meta_batch *mb, const struct eng_alias *a)
{
	uint8_t key[ONDISK_ALIAS_KEY_LEN];

	ondisk_alias_key(a->from, key);
	meta_batch_put(mb, key, sizeof(key), &a->to, sizeof(a->to));
}

int eng_volume_record_save(struct engine *eng, const struct volume_record *rec)
{
	struct meta_batch *mb;
	int r = meta_batch_create(&mb);

	if (r < 0)
		return r;
	eng_batch_put_record(mb, rec);
	r = meta_batch_commit(eng->meta, mb, META_SYNC);
	meta_batch_destroy(mb);
	return r;
}

/* The id is spent (in the same batch) before it is used: never two layers with one id,
 * and the counter only moves in memory once the batch is committed. */
uint64_t eng_take_layer_id(struct engine *eng, struct meta_batch *mb)
{
	struct ondisk_store_record srec;
	uint64_t id = eng->next_volume_id;

	ondisk_store_record_encode(eng->sb.uuid, id + 1, &srec);
	meta_batch_put(mb, ONDISK_KEY_STORE, 1, &srec, sizeof(srec));
	return id;
}

/* Is uid free for a new family on this node: not 0 or the catalog's, and named by no
 * layer, no tombstone and no segment here (a deleted family's segments may still be
 * on disk)? */
static bool family_uid_unused(const struct engine *eng, uint64_t uid)
{
	if (uid == 0 || uid == ONDISK_CATALOG_UID || seg_family_get(eng, uid))
		return false; /* a layer or a segment of it is (or was) here */
	for (size_t i = 0; i < eng->ndead; i++)
		if (eng->dead[i].rec.uid == uid)
			return false;
	return true;
}

/* Reserves uid for a new family. On one node the local check is the whole of it;
 * in a cluster, this is where the etcd reservation goes (a transaction that creates
 * families/<uid> only if it does not exist: docs/engine.md, "Next: cluster-wide
 * segment ids"), and a refusal means draw again. */
static bool family_uid_reserve(const struct engine *eng, uint64_t uid)
{
	return family_uid_unused(eng, uid);
}

int eng_family_uid_new(struct engine *eng, uint64_t *uid)
{
	/* 63 random bits (the control protocol's JSON carries ids as signed 64-bit
	 * integers): a draw that is taken is next to impossible, and a few tries are
	 * enough unless the random source is broken */
	for (int tries = 0; tries < 16; tries++) {
		ssize_t n = getrandom(uid, sizeof(*uid), 0);

		if (n < 0)
			return -errno;
		if (n != sizeof(*uid))
			return -EIO;
		*uid &= INT64_MAX;
		if (family_uid_reserve(eng, *uid))
			return 0;
	}
	return -EAGAIN;
}

void eng_batch_delete_layer(struct engine *eng, struct meta_batch *mb, uint64_t id)
{
	uint8_t key[ONDISK_VOLUME_KEY_LEN], begin[ONDISK_MAP_KEY_LEN], end[ONDISK_MAP_KEY_LEN];

	ondisk_volume_key(id, key);
	meta_batch_delete(mb, key, sizeof(key));
	ondisk_map_key(id, 0, begin);
	ondisk_map_key(id + 1, 0, end);
	meta_batch_delete_range(mb, begin, sizeof(begin), end, sizeof(end));
	for (size_t i = 0; i < eng->naliases; i++) {
		if (eng->aliases[i].to != id)
			continue;
		ondisk_alias_key(eng->aliases[i].from, key);
		meta_batch_delete(mb, key, sizeof(key));
	}
}

static int volume_create_check(struct engine *eng, const char *name, uint64_t size_bytes)
{
	int r = eng_valid_name(name);

	if (r < 0)
		return r;
	if (size_bytes == 0 || size_bytes % QUILL_BLOCK_SIZE || size_bytes > (1ull << 60))
		return -EINVAL;
	return eng_volume_by_name(eng, name) ? -EEXIST : 0;
}

int eng_volume_add_new(struct engine *eng, struct meta_batch *mb, struct volume_record *rec,
		       struct engine_volume **out)
{
	int r;

	r = eng_family_uid_new(eng, &rec->uid);
	if (r < 0) {
		meta_batch_destroy(mb);
		return r;
	}
	rec->volume_id = eng_take_layer_id(eng, mb);
	rec->kind = ONDISK_LAYER_VOLUME;
	rec->created_ns = eng_now_realtime_ns();
	eng_batch_put_record(mb, rec);
	r = eng_volume_add(eng, rec, out);
	if (r < 0)
		meta_batch_destroy(mb);
	else
		(*out)->committing = true;
	return r;
}

int eng_volume_new_committed(struct engine *eng, struct meta_batch *mb,
			     struct engine_volume *vol, int r)
{
	meta_batch_destroy(mb);
	if (r < 0) {
		eng_volume_remove(eng, vol);
		return r;
	}
	vol->committing = false;
	eng->next_volume_id++;
	return 0;
}

int eng_volume_commit_new(struct engine *eng, struct meta_batch *mb,
			  struct volume_record *rec, struct engine_volume **out)
{
	int r = eng_volume_add_new(eng, mb, rec, out);

	if (r < 0)
		return r;
	return eng_volume_new_committed(eng, mb, *out, meta_batch_commit(eng->meta, mb, META_SYNC));
}

/* The job of a volume call: create, delete, resize. */
struct volume_job {
	struct eng_job job;
	char name[ENGINE_VOLUME_NAME_MAX + 1];
	uint64_t size;
	unsigned flags;       /* create: enum engine_create_flags */
	uint64_t covered_seq; /* resize: batches a checkpoint must cover before growing */
	struct meta_batch *mb;      /* create, delete: the commit in flight */
	struct engine_volume *vol;  /* create: the volume it adds */
};

static void volume_job_release(struct eng_job *job)
{
	struct volume_job *vj = (struct volume_job *)job;

	meta_batch_destroy(vj->mb);
	free(vj);
}

/* The new volume's record into vj->mb, the volume added (not openable until the
 * commit has landed: volume_create_step). */
static int volume_create_prepare(struct engine *eng, struct volume_job *vj)
{
	struct volume_record rec = { 0 };
	int r = volume_create_check(eng, vj->name, vj->size); /* taken meanwhile? */

	if (r < 0)
		return r;
	r = meta_batch_create(&vj->mb);
	if (r < 0)
		return r;
	rec.size = vj->size;
	rec.flags = (vj->flags & ENGINE_CREATE_IMPORTING ? ONDISK_LAYER_IMPORTING : 0) |
		    (vj->flags & ENGINE_CREATE_SECTOR_4K ? ONDISK_LAYER_4KN : 0);
	strcpy(rec.name, vj->name);
	r = eng_volume_add_new(eng, vj->mb, &rec, &vj->vol);
	if (r < 0)
		vj->mb = NULL; /* destroyed */
	return r;
}

static struct volume_job *volume_job_new(const char *name, uint64_t size)
{
	struct volume_job *vj = calloc(1, sizeof(*vj));

	if (vj) {
		snprintf(vj->name, sizeof(vj->name), "%s", name);
		vj->size = size;
		vj->job.release = volume_job_release;
	}
	return vj;
}

/* pc 0: the record prepared, the volume added; pc 1: its commit in flight on the
 * metadata thread (client I/O goes on). */
static int volume_create_step(struct eng_job *job)
{
	struct volume_job *vj = (struct volume_job *)job;
	struct engine *eng = job->eng;
	int r;

	if (job->pc == 0) {
		r = eng_job_wait_settled(job);
		if (r == 0)
			r = volume_create_prepare(eng, vj);
		if (r)
			return r;
		job->pc = 1;
	}
	r = eng_job_meta_commit(job, &vj->mb);
	if (r == ENG_JOB_WAIT)
		return r;
	r = eng_volume_new_committed(eng, NULL, vj->vol, r);
	if (r < 0)
		return r;
	eng_catalog_log(vj->vol);
	log_msg(LOG_INFO, ENG_LOG, "volume %s created: id %llu, %llu bytes", vj->name,
		(unsigned long long)vj->vol->rec.volume_id, (unsigned long long)vj->size);
	return 0;
}

int engine_volume_create_async(struct engine *eng, const char *name, uint64_t size_bytes,
			       unsigned flags, engine_cb cb, void *arg)
{
	int r = volume_create_check(eng, name, size_bytes);
	struct volume_job *vj;

	if (r < 0)
		return r;
	if (flags & ~(unsigned)(ENGINE_CREATE_IMPORTING | ENGINE_CREATE_SECTOR_4K))
		return -EINVAL;
	vj = volume_job_new(name, size_bytes);
	if (!vj)
		return -ENOMEM;
	vj->flags = flags;
	return eng_job_start(eng, &vj->job, volume_create_step, cb, arg);
}

int engine_volume_create(struct engine *eng, const char *name, uint64_t size_bytes)
{
	struct eng_sync s = { 0 };

	return eng_sync_wait(eng, &s, engine_volume_create_async(eng, name, size_bytes, 0,
								  eng_sync_done, &s));
}

static int import_done_step(struct eng_job *job)
{
	struct engine_volume *vol = job->layers[0];
	struct volume_record rec = vol->rec;
	int r = eng_job_wait_settled(job);

	if (r)
		return r;
	rec.flags &= ~(uint32_t)ONDISK_LAYER_IMPORTING;
	r = eng_volume_record_save(job->eng, &rec);
	if (r < 0)
		return r;
	vol->rec = rec;
	eng_catalog_log(vol);
	return 0;
}

int engine_volume_import_done_async(struct engine *eng, const char *name, engine_cb cb,
				    void *arg)
{
	struct engine_volume *vol = eng_volume_by_name(eng, name);
	struct volume_job *vj;

	if (!vol)
		return -ENOENT;
	if (!(vol->rec.flags & ONDISK_LAYER_IMPORTING))
		return -EINVAL;
	vj = volume_job_new(name, 0);
	if (!vj)
		return -ENOMEM;
	vj->job.layers[0] = vol;
	return eng_job_start(eng, &vj->job, import_done_step, cb, arg);
}

int engine_volume_import_done(struct engine *eng, const char *name)
{
	struct eng_sync s = { 0 };

	return eng_sync_wait(eng, &s, engine_volume_import_done_async(eng, name, eng_sync_done,
								       &s));
}

/* The slots of a discarded layer get FREE headers (the log of a deleted layer must
 * stop looking like log: a rebuild reads it) and are freed once those are durable,
 * without blocking the loop: the job that discards the layer ends only then, so a
 * `volume delete` answers with its space free. Without memory, or on a write error,
 * the slots stay USED on disk and in use until the next start (which finds them stale
 * and frees them). */
static void layer_slots_freed(void *job, int res)
{
	(void)res; /* logged; the delete stands: RocksDB committed it */
	eng_job_io_done(job, 0);
}

static void free_layer_slots(struct engine *eng, uint64_t id)
{
	struct ckpt_free *gone = malloc(eng->slot_cap * sizeof(*gone));
	struct eng_job *job = eng_job_running(eng);
	size_t n = 0;

	if (!gone)
		return;
	for (uint32_t i = 0; i < eng->slot_cap; i++) /* remote entries too: their copies go */
		if (eng->slots[i].state != SLOT_FREE && eng->slots[i].volume_id == id)
			gone[n++] = (struct ckpt_free){ i, eng->slots[i].generation };
	if (job)
		eng_job_io_begin(job);
	if (eng_slots_free_async(eng, gone, n, ENG_FREE_ORDERED, job ? layer_slots_freed : NULL,
				 job) < 0 && job)
		layer_slots_freed(job, -ENOMEM);
	free(gone);
}

void eng_layer_discard(struct engine *eng, struct engine_volume *vol)
{
	eng_catalog_orphans(eng, vol->rec.volume_id);
	map_clear(vol->map, 0, map_nblocks(vol->map));
	free_layer_slots(eng, vol->rec.volume_id);
	vol->open_slot = -1;
	/* merged snapshots' slots were among them: their aliases go with the records */
	for (size_t i = 0; i < eng->naliases;)
		if (eng->aliases[i].to == vol->rec.volume_id)
			eng->aliases[i] = eng->aliases[--eng->naliases];
		else
			i++;
}

static unsigned snapshot_count(const struct engine *eng, const struct engine_volume *vol)
{
	unsigned n = 0;

	for (size_t i = 0; i < eng->nvols; i++)
		n += eng->vols[i]->rec.kind == ONDISK_LAYER_SNAPSHOT &&
		     eng->vols[i]->rec.uid == vol->rec.uid;
	return n;
}

/* What deleting a layer commits: its records and map out of RocksDB. */
static int layer_drop_batch(struct engine *eng, struct engine_volume *layer,
			    struct meta_batch **mb)
{
	int r = meta_batch_create(mb);

	if (r == 0)
		eng_batch_delete_layer(eng, *mb, layer->rec.volume_id);
	return r;
}

int eng_layer_drop(struct engine *eng, struct engine_volume *layer)
{
	struct meta_batch *mb;
	int r = layer_drop_batch(eng, layer, &mb);

	if (r < 0)
		return r;
	r = meta_batch_commit(eng->meta, mb, META_SYNC);
	meta_batch_destroy(mb);
	if (r < 0)
		return r;
	eng_layer_dropped(eng, layer);
	return 0;
}

void eng_layer_dropped(struct engine *eng, struct engine_volume *layer)
{
	/* its tombstone, and records of other layers that live in its slots, first */
	eng_catalog_tombstone(eng, &layer->rec);
	eng_catalog_orphans(eng, layer->rec.volume_id);
	eng_catalog_relog(eng, layer->rec.volume_id);
	/* From here the log of this id is ignored by replay: its slots are free now. */
	eng_layer_discard(eng, layer);
	eng_volume_remove(eng, layer);
}

static int volume_delete_check(struct engine *eng, struct engine_volume *vol)
{
	if (vol->open || vol->flatten)
		return -EBUSY;
	return snapshot_count(eng, vol) ? -ENOTEMPTY : 0;
}

static int volume_delete_step(struct eng_job *job)
{
	struct volume_job *vj = (struct volume_job *)job;
	struct engine_volume *vol = job->layers[0];
	struct engine *eng = job->eng;
	int r;

	if (job->pc == 0) {
		r = eng_job_wait_settled(job);
		if (r == 0)
			r = eng_job_wait_quiet(job, vol);
		if (r == 0)
			r = volume_delete_check(eng, vol); /* attached meanwhile? */
		if (r == 0)
			r = layer_drop_batch(eng, vol, &vj->mb);
		if (r)
			return r;
		vol->committing = true; /* nobody opens it while its records go */
		job->pc = 1;
	}
	r = eng_job_meta_commit(job, &vj->mb); /* on the metadata thread */
	if (r == ENG_JOB_WAIT)
		return r;
	vol->committing = false;
	if (r < 0)
		return r;
	eng_layer_dropped(eng, vol);
	log_msg(LOG_INFO, ENG_LOG, "volume %s deleted", vj->name);
	eng_run_parked(eng, false);
	return 0;
}

int engine_volume_delete_async(struct engine *eng, const char *name, engine_cb cb, void *arg)
{
	struct engine_volume *vol = eng_volume_by_name(eng, name);
	struct volume_job *vj;
	int r;

	if (!vol)
		return -ENOENT;
	r = volume_delete_check(eng, vol);
	if (r < 0)
		return r;
	vj = volume_job_new(name, 0);
	if (!vj)
		return -ENOMEM;
	vj->job.layers[0] = vol;
	return eng_job_start(eng, &vj->job, volume_delete_step, cb, arg);
}

int engine_volume_delete(struct engine *eng, const char *name)
{
	struct eng_sync s = { 0 };

	return eng_sync_wait(eng, &s, engine_volume_delete_async(eng, name, eng_sync_done, &s));
}

/* A resize is one synced record: a crash leaves the old size or the new one, never
 * half of it. Shrinking drops the map past the new end at once; the log may still hold
 * those blocks, but replay ignores entries past a volume's end, and engine_open() drops
 * stored map entries past it. Growing must not bring them back: it first waits for a
 * checkpoint that covers every batch written before the call (the map it stores has
 * nothing past the old end, and replay starts after those batches), and only then
 * writes the larger size. */
static void tail_trimmed(void *arg, int res)
{
	if (res < 0)
		LOG_RATELIMITED(LOG_ERROR, ENG_LOG, "the trim of a shrunk volume's tail did not "
				"reach the log (%s): a rebuild of the metadata may bring its old "
				"blocks back", strerror(-res));
	eng_job_io_done(arg, 0); /* the shrink stands: RocksDB committed it */
}

/* After a shrink's record: a trim of the cut-off tail in its log, durable before the
 * call answers, so that a rebuild from the log (rebuild.c replays all of it) cannot
 * bring old blocks back once the volume grows again; the cleaner keeps it while older
 * slots exist. Not before the record: a crash between the two would keep the old size
 * with its tail gone. */
static void resize_trim_tail(struct eng_job *job, struct engine_volume *vol,
			     uint64_t from, uint64_t nblocks)
{
	struct ioreq *req = eng_req_alloc(vol->eng, tail_trimmed, job);

	eng_job_io_begin(job);
	if (!req) {
		tail_trimmed(job, -ENOMEM);
		return;
	}
	req->fua = true;
	eng_req_put(vol->eng, req, eng_append_trim(vol, from, nblocks, ONDISK_ENTRY_TRIM, 0, req));
}

static int volume_resize_step(struct eng_job *job)
{
	struct volume_job *vj = (struct volume_job *)job;
	struct engine_volume *vol = job->layers[0];
	struct engine *eng = job->eng;
	uint64_t new_blocks = vj->size / QUILL_BLOCK_SIZE;
	struct volume_record rec = vol->rec;
	int r = eng_job_wait_settled(job);

	if (r)
		return r;
	if (vj->size > vol->rec.size) {
		if (eng->stats.last_checkpoint_seq < vj->covered_seq || job->ckpt_asked)
			r = eng_job_wait_ckpt(job);
		if (r == 0 && eng->stats.last_checkpoint_seq < vj->covered_seq)
			r = ENG_JOB_WAIT; /* a batch older than the call was still in flight */
		if (r)
			return r;
	}
	if (rec.overlap > new_blocks)
		rec.overlap = new_blocks; /* the parent's blocks past the end stay out of reach */
	rec.size = vj->size;
	if (new_blocks > map_nblocks(vol->map)) {
		r = map_resize(vol->map, new_blocks); /* may need memory: before the record */
		if (r < 0)
			return r;
	}
	r = eng_volume_record_save(eng, &rec);
	if (r < 0)
		return r;
	map_resize(vol->map, new_blocks); /* shrinking only unmaps: it cannot fail */
	if (new_blocks < vol->rec.size / QUILL_BLOCK_SIZE)
		resize_trim_tail(job, vol, new_blocks, vol->rec.size / QUILL_BLOCK_SIZE - new_blocks);
	vol->rec = rec;
	eng_catalog_log(vol);
	log_msg(LOG_INFO, ENG_LOG, "volume %s resized to %llu bytes", vj->name,
		(unsigned long long)vj->size);
	return 0;
}

int engine_volume_resize_async(struct engine *eng, const char *name, uint64_t size_bytes,
			       engine_cb cb, void *arg)
{
	struct engine_volume *vol = eng_volume_by_name(eng, name);
	struct volume_job *vj;

	if (!vol)
		return -ENOENT;
	if (size_bytes == 0 || size_bytes % QUILL_BLOCK_SIZE || size_bytes > (1ull << 60))
		return -EINVAL;
	vj = volume_job_new(name, size_bytes);
	if (!vj)
		return -ENOMEM;
	vj->covered_seq = eng->next_seq - 1;
	vj->job.layers[0] = vol;
	return eng_job_start(eng, &vj->job, volume_resize_step, cb, arg);
}

int engine_volume_resize(struct engine *eng, const char *name, uint64_t size_bytes)
{
	struct eng_sync s = { 0 };

	return eng_sync_wait(eng, &s, engine_volume_resize_async(eng, name, size_bytes,
								  eng_sync_done, &s));
}

/* "VOL@SNAP" of a snapshot layer into buf. */
void eng_layer_spec(const struct engine *eng, const struct engine_volume *layer, char *buf,
		    size_t len)
{
	const char *owner = "?";

	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->rec.kind == ONDISK_LAYER_VOLUME &&
		    eng->vols[i]->rec.uid == layer->rec.uid)
			owner = eng->vols[i]->rec.name;
	if (layer->rec.kind == ONDISK_LAYER_VOLUME)
		volspec_format(buf, len, layer->rec.name, NULL);
	else
		volspec_format(buf, len, owner, layer->rec.name);
}

static void volume_fill_info(struct engine *eng, struct engine_volume *vol,
			     struct engine_volume_info *out)
{
	const struct engine_volume *p = vol->parent;

	memset(out, 0, sizeof(*out));
	strcpy(out->name, vol->rec.name);
	out->id = vol->rec.uid;
	out->size = vol->rec.size;
	out->created_ns = vol->rec.created_ns;
	out->own_blocks = map_mapped_blocks(vol->map);
	out->mapped_blocks = eng_layer_data_blocks(vol);
	out->open = vol->open;
	if (vol->open)
		strcpy(out->holder, vol->holder);
	out->snapshots = snapshot_count(eng, vol);
	out->flattening = vol->flatten != NULL;
	for (const struct engine_volume *l = vol; l; l = l->parent)
		out->damaged |= (l->rec.flags & ONDISK_LAYER_DAMAGED) != 0;
	out->importing = vol->rec.flags & ONDISK_LAYER_IMPORTING;
	out->sector_size = eng_sector_size(&vol->rec);
	/* the parent a user sees is the first layer that is not this volume's own */
	while (p && p->rec.uid == vol->rec.uid)
		p = p->parent;
	if (p)
		eng_layer_spec(eng, p, out->parent, sizeof(out->parent));
	for (uint32_t i = 0; i < eng->slot_cap; i++) /* remote entries too */
		if (eng->slots[i].state != SLOT_FREE && !eng->slots[i].dropped &&
		    eng->slots[i].volume_id == vol->rec.volume_id)
			out->segments++;
}

int engine_volume_info(struct engine *eng, const char *name, struct engine_volume_info *out)
{
	struct engine_volume *vol = eng_volume_by_name(eng, name);

	if (!vol)
		return -ENOENT;
	volume_fill_info(eng, vol, out);
	return 0;
}

static int cmp_vol_name(const void *a, const void *b)
{
	const struct engine_volume *const *x = a, *const *y = b;
	return strcmp((*x)->rec.name, (*y)->rec.name);
}

int engine_volume_list(struct engine *eng,
		       int (*fn)(const struct engine_volume_info *info, void *arg), void *arg)
{
	struct engine_volume_info info;

	if (eng->nvols) /* qsort() wants a non-NULL array even when empty */
		qsort(eng->vols, eng->nvols, sizeof(*eng->vols), cmp_vol_name);
	for (size_t i = 0; i < eng->nvols; i++) {
		int r;

		if (eng->vols[i]->rec.kind != ONDISK_LAYER_VOLUME)
			continue;
		volume_fill_info(eng, eng->vols[i], &info);
		r = fn(&info, arg);
		if (r)
			return r;
	}
	return 0;
}

int engine_volume_open(struct engine *eng, const char *name, struct engine_volume **out)
{
	struct engine_volume *vol = eng_layer_by_spec(eng, name);

	if (!vol || vol->committing)
		return -ENOENT; /* being created or deleted */
	if (engine_volume_readonly(vol)) {
		vol->readers++;
	} else {
		if (vol->open)
			return -EBUSY;
		vol->holder[0] = '\0';
	}
	vol->open = true;
	*out = vol;
	return 0;
}

int engine_snapshot_open_by_id(struct engine *eng, uint64_t uid, uint64_t id,
			       struct engine_volume **out)
{
	struct engine_volume *s = eng_volume_by_id(eng, id);
	char spec[ENGINE_SNAP_SPEC_MAX + 1];

	/* a clone of another node names the snapshot by id: it must still be a snapshot
	 * of the family it was taken in (ids are unique across the cluster) */
	if (!s || s->rec.kind != ONDISK_LAYER_SNAPSHOT || s->rec.uid != uid)
		return -ENOENT;
	/* a takeover's adoption rebuilt it and its commit has not landed: there in a
	 * moment, which a reader elsewhere must not take for "no such snapshot" */
	if (s->committing)
		return -EAGAIN;
	eng_layer_spec(eng, s, spec, sizeof(spec));
	return engine_volume_open(eng, spec, out);
}

int engine_snapshot_find(struct engine *eng, const char *vol, const char *snap, uint64_t *uid,
			 uint64_t *id, uint64_t *size)
{
	char spec[ENGINE_SNAP_SPEC_MAX + 2];
	const struct engine_volume *s;

	if (snprintf(spec, sizeof(spec), "%s@%s", vol, snap) >= (int)sizeof(spec))
		return -ENOENT;
	s = eng_snapshot_by_spec(eng, spec);
	if (!s)
		return -ENOENT;
	*uid = s->rec.uid;
	*id = s->rec.volume_id;
	*size = s->rec.size;
	return 0;
}

void engine_volume_set_holder(struct engine_volume *vol, const char *holder)
{
	if (!engine_volume_readonly(vol))
		snprintf(vol->holder, sizeof(vol->holder), "%s", holder ? holder : "");
}

bool engine_volume_readonly(const struct engine_volume *vol)
{
	return vol->rec.kind != ONDISK_LAYER_VOLUME;
}

void engine_volume_close(struct engine_volume *vol)
{
	if (!vol)
		return;
	/* every request through the handle has completed (the caller waited for its
	 * callbacks): what may still be in the volume's log (the cleaner's moves, a
	 * flatten's fills) does not need the handle */
	if (engine_volume_readonly(vol) && vol->readers > 1) {
		vol->readers--;
		return;
	}
	vol->readers = 0;
	vol->holder[0] = '\0';
	vol->open = false;
}

uint64_t engine_volume_size(const struct engine_volume *vol)
{
	return vol->rec.size;
}

uint32_t engine_volume_sector_size(const struct engine_volume *vol)
{
	return eng_sector_size(&vol->rec);
}
