/* engine/checkpoint.c — writing the extent map to RocksDB in the background.
 *
 * A checkpoint at sequence S promises: the stored map holds the effect of every batch
 * with seq <= S, and their data is durable. Steps:
 *   1. capture (engine thread): S = (oldest unretired batch) - 1; note the sealed
 *      slots with no live block; take the dirty map chunks into a RocksDB batch, a
 *      slice per poll (capture_begin, capture_slice: client I/O goes on between).
 *   2. fdatasync the store, so that no stored map entry points at volatile data.
 *   3. (checkpoint thread) commit the batch without WAL, then the "C" record, then
 *      flush RocksDB's memtables: durable at once, and RocksDB never syncs on the
 *      I/O path. A failed commit or flush (metadata disk full) is retried at the
 *      next period, after meta_recover() has reopened RocksDB.
 *   4. (engine thread) the noted slots become free: replay no longer needs their
 *      batches, since even their trims are in the stored map now.
 * If RocksDB persists part of a checkpoint early (its own memtable flush), replay
 * from the older S re-applies those batches in order and reaches the same map.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "engine/engine_internal.h"
#include "metadata/meta.h"

static void *ckpt_main(void *arg)
{
	struct engine *eng = arg;

	pthread_mutex_lock(&eng->ckpt_lock);
	for (;;) {
		struct ckpt_job *job;
		struct ondisk_checkpoint rec;
		uint64_t t0, t1;

		while (!eng->ckpt_todo && !eng->ckpt_stop)
			pthread_cond_wait(&eng->ckpt_cond, &eng->ckpt_lock);
		if (!eng->ckpt_todo)
			break;
		job = eng->ckpt_todo;
		eng->ckpt_todo = NULL;
		pthread_mutex_unlock(&eng->ckpt_lock);

		t0 = log_clock_us();
		ondisk_checkpoint_encode(job->seq, &rec);
		meta_batch_put(job->mb, ONDISK_KEY_CKPT, 1, &rec, sizeof(rec));
		/* After a failed metadata write (a full metadata disk), RocksDB takes no
		 * more writes until reopened: this thread, off the I/O path, does it
		 * before each retry, so the node recovers by itself once there is room. */
		job->result = meta_recover(eng->meta);
		if (job->result == 0)
			job->result = meta_batch_commit(eng->meta, job->mb, META_NOWAL);
		eng_test_pause(eng, "ckpt-commit");
		t1 = log_clock_us();
		if (job->result == 0)
			job->result = meta_flush(eng->meta);
		log_msg(LOG_DEBUG, ENG_LOG, "checkpoint at seq %llu: %zu chunks committed in "
			"%.1f ms, flushed in %.1f ms, %.1f ms since capture",
			(unsigned long long)job->seq, job->nchunks, (double)(t1 - t0) / 1000.0,
			(double)(log_clock_us() - t1) / 1000.0,
			(double)(log_clock_us() - job->started_us) / 1000.0);

		pthread_mutex_lock(&eng->ckpt_lock);
		eng->ckpt_done = job;
		atomic_store(&eng->ckpt_ready, true);
		pthread_cond_broadcast(&eng->ckpt_cond);
	}
	pthread_mutex_unlock(&eng->ckpt_lock);
	return NULL;
}

int eng_ckpt_start_thread(struct engine *eng)
{
	int r;

	eng->ckpt_slice_chunks = ENG_CKPT_SLICE_CHUNKS;
	pthread_mutex_init(&eng->ckpt_lock, NULL);
	pthread_cond_init(&eng->ckpt_cond, NULL);
	r = pthread_create(&eng->ckpt_thread, NULL, ckpt_main, eng);
	if (r) {
		pthread_cond_destroy(&eng->ckpt_cond);
		pthread_mutex_destroy(&eng->ckpt_lock);
		return -r;
	}
	return 0;
}

void eng_ckpt_stop_thread(struct engine *eng)
{
	pthread_mutex_lock(&eng->ckpt_lock);
	eng->ckpt_stop = true;
	pthread_cond_broadcast(&eng->ckpt_cond);
	pthread_mutex_unlock(&eng->ckpt_lock);
	pthread_join(eng->ckpt_thread, NULL);
	pthread_cond_destroy(&eng->ckpt_cond);
	pthread_mutex_destroy(&eng->ckpt_lock);
}

static void job_free(struct ckpt_job *job)
{
	if (!job)
		return;
	meta_batch_destroy(job->mb);
	free(job->free_slots);
	free(job);
}

struct emit_ctx {
	struct meta_batch *mb;
	size_t *nchunks;
	uint64_t volume_id;
};

static int emit_chunk(void *arg, uint64_t chunk, const struct ondisk_map_entry *e, size_t n)
{
	struct emit_ctx *c = arg;
	uint8_t key[ONDISK_MAP_KEY_LEN];

	ondisk_map_key(c->volume_id, chunk, key);
	if (n)
		meta_batch_put(c->mb, key, sizeof(key), e, n * sizeof(*e));
	else
		meta_batch_delete(c->mb, key, sizeof(key));
	(*c->nchunks)++;
	return 0;
}

int eng_map_put_dirty(struct meta_batch *mb, struct engine_volume *vol)
{
	size_t n = 0;
	struct emit_ctx c = { .mb = mb, .nchunks = &n, .volume_id = vol->rec.volume_id };

	return map_take_dirty(vol->map, emit_chunk, &c);
}

uint64_t eng_stable_seq(const struct engine *eng)
{
	uint64_t s = eng->next_seq - 1;

	for (size_t i = 0; i < eng->nvols; i++)
		for (const struct batch *b = eng->vols[i]->head; b; b = b->next)
			if (b->state == BATCH_INFLIGHT || b->state == BATCH_DONE)
				if (b->sum.seq - 1 < s)
					s = b->sum.seq - 1;
	return s;
}

/* The metadata changes that must land with this checkpoint's map (snap.c). */
static void add_ops(struct engine *eng, struct ckpt_job *job)
{
	for (size_t i = 0; i < eng->nops; i++) {
		const struct eng_meta_op *op = &eng->ops[i];

		if (op->kind == EMO_PUT)
			meta_batch_put(job->mb, op->key, op->klen, op->val, op->vlen);
		else if (op->kind == EMO_DELETE)
			meta_batch_delete(job->mb, op->key, op->klen);
		else
			meta_batch_delete_range(job->mb, op->key, op->klen, op->end, op->klen);
	}
	job->nops = eng->nops;
}

static void drop_ops(struct engine *eng, size_t n)
{
	if (!n)
		return;
	memmove(eng->ops, eng->ops + n, (eng->nops - n) * sizeof(*eng->ops));
	eng->nops -= n;
}

/* Step 1, begun: the sequence, the metadata ops and the slots to free are noted now;
 * the dirty chunks are set aside in each map and taken in slices (capture_slice), a
 * few per poll, each as it is when taken. So the stored map may hold the effect of
 * batches after job->seq as well: replay from job->seq applies them again in order and
 * reaches the same map, as when RocksDB persists a memtable early (a MOVE applies only
 * where its block still lives; writes and trims override). */
static struct ckpt_job *capture_begin(struct engine *eng, bool families)
{
	struct ckpt_job *job = calloc(1, sizeof(*job));

	if (!job || meta_batch_create(&job->mb) < 0)
		goto err;
	job->started_us = log_clock_us();
	job->seq = eng_stable_seq(eng);
	job->free_slots = malloc(eng->slot_cap * sizeof(*job->free_slots));
	if (!job->free_slots)
		goto err;
	/* remote entries too (segment_remote.c): an empty one's copies go */
	for (uint32_t i = 0; i < eng->slot_cap; i++) {
		const struct slot *s = &eng->slots[i];

		/* last_seq <= seq: replay from this checkpoint never needs its batches */
		if (s->last_seq <= job->seq && !(eng->gc_busy && eng->gc_victim == i) &&
		    eng_slot_frees_at_checkpoint(eng->slots, eng->sb.segment_count, i))
			job->free_slots[job->nfree++] = (struct ckpt_free){ i, s->generation };
		else if (s->fmaps && !s->live && s->state == SLOT_SEALED)
			eng_fckpt_want(eng, s->family_uid); /* only its family's newest
							       MAPS: the next rewrite frees it */
	}
	for (size_t i = 0; i < eng->nvols; i++)
		if (map_take_begin(eng->vols[i]->map) < 0)
			goto err_abort;
	/* the segment table as of job->seq: a slot settled now stays settled (sealed,
	 * nothing newer lands in it); one freed and reused later has another generation */
	if (seg_table_capture(eng, job->mb, job->seq) < 0)
		goto err_abort;
	add_ops(eng, job);
	/* the families with chunks set aside now (families), and those asked for */
	eng_fckpt_start(eng, job->seq, families);
	return job;
err_abort:
	for (size_t i = 0; i < eng->nvols; i++)
		map_take_abort(eng->vols[i]->map);
err:
	log_msg(LOG_ERROR, ENG_LOG, "checkpoint capture failed: out of memory");
	job_free(job);
	return NULL;
}

/* Takes about eng->ckpt_slice_chunks of the set-aside chunks. A layer added meanwhile
 * has nothing set aside; one deleted took its chunks along (its delete removes them
 * from RocksDB after this checkpoint); a snapshot's frozen layer keeps its map and id.
 * Returns 1 while some remain. */
static int capture_slice(struct engine *eng, struct ckpt_job *job)
{
	size_t n = 0;
	bool more = false;

	for (size_t i = 0; i < eng->nvols; i++) {
		struct emit_ctx c = { .mb = job->mb, .nchunks = &job->nchunks,
				      .volume_id = eng->vols[i]->rec.volume_id };
		struct map *m = eng->vols[i]->map;

		if (!map_taking(m))
			continue;
		if (n >= eng->ckpt_slice_chunks || /* emit_chunk does not fail */
		    map_take_some(m, eng->ckpt_slice_chunks - n, emit_chunk, &c, &n) > 0)
			more = true;
	}
	job->slices++;
	return more;
}

/* A checkpoint that did not land leaves RocksDB without chunks whose dirty bits it
 * took: every chunk is written again by the next one. */
static void ckpt_failed(struct engine *eng, struct ckpt_job *job, int res)
{
	eng->ckpt_error = res;
	eng->ckpt_failed_no = job->start_no;
	LOG_RATELIMITED(LOG_ERROR, ENG_LOG, "map checkpoint at seq %llu failed: %s; "
			"will retry", (unsigned long long)job->seq, err_str(-res));
	eng->ckpt_failures++;
	for (size_t i = 0; i < eng->nvols; i++)
		map_mark_all_dirty(eng->vols[i]->map);
	seg_table_unsure(eng);
}

static void store_flushed(void *arg, int res)
{
	struct ckpt_job *job = arg;
	struct engine *eng = job->eng;

	if (res < 0) {
		ckpt_failed(eng, job, res);
		job_free(job);
		eng->ckpt_busy = false;
		return;
	}
	eng_mark_durable(eng, job->seq);
	pthread_mutex_lock(&eng->ckpt_lock);
	eng->ckpt_todo = job;
	pthread_cond_broadcast(&eng->ckpt_cond);
	pthread_mutex_unlock(&eng->ckpt_lock);
}

/* A slice of the capture; once all is taken, step 2. */
static void capture_step(struct engine *eng)
{
	struct ckpt_job *job = eng->ckpt_capturing;
	int r;

	if (capture_slice(eng, job))
		return;
	eng->ckpt_capturing = NULL;
	log_msg(LOG_DEBUG, ENG_LOG, "checkpoint at seq %llu: captured %zu chunks in %u slices "
		"over %.1f ms", (unsigned long long)job->seq, job->nchunks, job->slices,
		(double)(log_clock_us() - job->started_us) / 1000.0);
	r = eng_store_flush(eng, store_flushed, job);
	if (r < 0)
		store_flushed(job, r);
}

/* families: write family checkpoints too: the periodic ones and engine_checkpoint()
 * do; not those the cleaner or a job asks for to free slots (the cleaner may ask
 * every ENG_GC_CKPT_MIN_MS, and each would rewrite the families' whole maps, which
 * the cleaner would then clean) */
static void ckpt_start(struct engine *eng, bool families)
{
	struct ckpt_job *job = capture_begin(eng, families);

	if (!job)
		return;
	job->eng = eng;
	job->start_no = ++eng->ckpt_starts;
	eng->ckpt_busy = true;
	eng->ckpt_wanted = false;
	eng->ckpt_last_ms = eng_now_ms();
	if (families)
		eng->fckpt_last_ms = eng->ckpt_last_ms;
	eng->ckpt_capturing = job;
	capture_step(eng);
}

/* Is a slot noted empty at capture still that slot and still empty? */
static bool still_empty(struct engine *eng, const struct ckpt_free *f)
{
	const struct slot *s = &eng->slots[f->slot];

	if (s->state != SLOT_SEALED || s->generation != f->generation)
		return false; /* freed and reused meanwhile */
	if (s->live) { /* nothing writes into a sealed slot: this is a bug, keep the data */
		log_msg(LOG_ERROR, ENG_LOG, "slot %u gained %u live blocks after it was found "
			"empty; not freed", f->slot, s->live);
		return false;
	}
	return true;
}

/* FREE headers written without blocking the engine thread (eng_slots_free_async): the
 * slots are freed once the headers are durable. Meanwhile they stay as they are and
 * `freeing` (not reused: a late FREE header would hit the new log). */
struct free_job {
	struct engine *eng;
	struct ckpt_free *slots;
	size_t n;
	bool ordered;     /* slots holding LAYER entries first, flushed before the rest */
	bool only_empty;  /* release a slot only if still sealed and empty (a checkpoint's) */
	unsigned pass;    /* 0, then 1 (ordered: the slots without LAYER entries) */
	unsigned pending; /* writes in flight */
	unsigned written; /* in this pass */
	int result;
	uint8_t *buf;     /* one header block per slot */
	engine_cb cb;
	void *arg;
};

static bool still_ours(struct engine *eng, const struct free_job *fj, const struct ckpt_free *f)
{
	const struct slot *s = &eng->slots[f->slot];

	if (fj->only_empty)
		return still_empty(eng, f);
	return s->state != SLOT_FREE && s->generation == f->generation;
}

static void free_job_end(struct free_job *fj)
{
	struct engine *eng = fj->eng;

	for (size_t i = 0; i < fj->n; i++) {
		const struct ckpt_free *f = &fj->slots[i];

		eng->slots[f->slot].freeing = false;
		if (fj->result == 0 && still_ours(eng, fj, f))
			seg_release(eng, f->slot);
	}
	if (fj->result < 0)
		LOG_RATELIMITED(LOG_ERROR, ENG_LOG, "writing FREE segment headers failed: %s; "
				"the slots stay in use until the next checkpoint",
				strerror(-fj->result));
	eng->gc_next_scan_ms = 0;
	eng->free_jobs--;
	if (fj->result == 0)
		eng_run_parked(eng, false);
	if (fj->cb)
		fj->cb(fj->arg, fj->result);
	seg_buf_free(fj->buf);
	free(fj->slots);
	free(fj);
}

static void free_write_pass(struct free_job *fj);

static void free_flushed(void *arg, int res)
{
	struct free_job *fj = arg;

	if (res < 0 && fj->result == 0)
		fj->result = res;
	if (fj->result == 0 && fj->ordered && fj->pass++ == 0)
		free_write_pass(fj);
	else
		free_job_end(fj);
}

static void free_written(void *arg, int res)
{
	struct free_job *fj = arg;
	int r;

	if (res < 0 && fj->result == 0)
		fj->result = res;
	if (--fj->pending)
		return;
	if (fj->result < 0) {
		free_job_end(fj);
		return;
	}
	if (!fj->written) {
		free_flushed(fj, 0); /* nothing in this pass */
		return;
	}
	r = eng_store_flush(fj->eng, free_flushed, fj);
	if (r < 0)
		free_flushed(fj, r);
}

/* Which pass writes slot f: ordered, those holding LAYER entries in the first. */
static unsigned free_pass_of(const struct free_job *fj, const struct ckpt_free *f)
{
	return fj->ordered && fj->eng->slots[f->slot].records == 0 ? 1 : 0;
}

static void free_write_pass(struct free_job *fj)
{
	struct engine *eng = fj->eng;

	if (fj->ordered)
		eng_test_pause(eng, "free-layer");
	fj->pending = 1; /* ours, until every write is submitted */
	fj->written = 0;
	for (size_t i = 0; i < fj->n; i++) {
		uint8_t *b = fj->buf + i * QUILL_BLOCK_SIZE;
		int r;

		if (free_pass_of(fj, &fj->slots[i]) != fj->pass)
			continue;
		if (seg_is_remote(eng, fj->slots[i].slot)) {
			seg_remote_delete(eng, fj->slots[i].slot); /* nothing to write or flush */
			continue;
		}
		fj->pending++;
		fj->written++;
		r = seg_delete(eng, fj->slots[i].slot, b, free_written, fj);
		if (r < 0)
			free_written(fj, r);
	}
	free_written(fj, 0);
}

int eng_slots_free_async(struct engine *eng, const struct ckpt_free *slots, size_t n,
			 unsigned flags, engine_cb cb, void *arg)
{
	struct free_job *fj = calloc(1, sizeof(*fj));

	if (!fj || !(fj->slots = malloc((n ? n : 1) * sizeof(*fj->slots))) ||
	    !(fj->buf = seg_buf_alloc((n ? n : 1) * QUILL_BLOCK_SIZE))) {
		if (fj)
			free(fj->slots);
		free(fj);
		return -ENOMEM;
	}
	*fj = (struct free_job){ .eng = eng, .slots = fj->slots, .buf = fj->buf,
				 .ordered = flags & ENG_FREE_ORDERED,
				 .only_empty = flags & ENG_FREE_ONLY_EMPTY, .cb = cb, .arg = arg };
	eng->free_jobs++;
	for (size_t i = 0; i < n; i++) {
		struct slot *s = &eng->slots[slots[i].slot];

		if (still_ours(eng, fj, &slots[i]) && !s->freeing) {
			s->freeing = true;
			fj->slots[fj->n++] = slots[i];
		}
	}
	free_write_pass(fj);
	return 0;
}

/* The slots a checkpoint found empty, once the family checkpoints it started are
 * complete (or failed): an adoption rolls forward from the newest complete one and
 * needs every batch above its S. Without memory they stay sealed, and the next
 * checkpoint notes them again. */
static void free_noted(struct engine *eng, struct ckpt_job *job)
{
	eng_fckpt_free_after(eng, job->free_slots, job->nfree);
	job->free_slots = NULL;
	job->nfree = 0;
}

void eng_ckpt_reap(struct engine *eng)
{
	struct ckpt_job *job;

	if (eng->ndeferred_free)
		seg_release_deferred(eng);
	if (!atomic_load(&eng->ckpt_ready))
		return;
	pthread_mutex_lock(&eng->ckpt_lock);
	job = eng->ckpt_done;
	eng->ckpt_done = NULL;
	atomic_store(&eng->ckpt_ready, false);
	pthread_mutex_unlock(&eng->ckpt_lock);
	eng->ckpt_busy = false;
	eng->gc_next_scan_ms = 0; /* slots may be free now, or empty */
	if (job->result < 0) {
		ckpt_failed(eng, job, job->result);
	} else {
		eng->ckpt_error = 0;
		eng->ckpt_landed_no = job->start_no;
		eng->stats.checkpoints++;
		eng->stats.last_checkpoint_seq = job->seq;
		drop_ops(eng, job->nops);
		if (job->nfree)
			free_noted(eng, job); /* runs the parked writes when the slots are free */
	}
	job_free(job);
}

/* Starts a checkpoint when one is due: by the clock, or asked for by the cleaner. */
void eng_ckpt_maybe(struct engine *eng)
{
	unsigned period = eng->opts.checkpoint_ms ? eng->opts.checkpoint_ms : 5000;
	bool families;

	if (eng->ckpt_capturing)
		capture_step(eng);
	if (eng->ckpt_busy || eng_mc_busy(eng) || eng->fckpt)
		return; /* a job's commit in flight: its maps change when it lands; or the
			   last one's family checkpoints (one at a time per family) */
	/* closing: only the final one (eng_ckpt_sync), or the drain before it could see
	 * one start as the last lands, for ever */
	/* the periodic turn is the families' and has their own clock: the checkpoints the
	 * cleaner asks for (as often as every ENG_GC_CKPT_MIN_MS) set ckpt_last_ms, and
	 * while it kept asking no periodic one came, so the family checkpoints fell behind
	 * their logs and a new owner had to copy every segment above them (cluster_ec_read,
	 * once in a loaded run) */
	families = eng_now_ms() - eng->fckpt_last_ms >= period || eng->ckpt_families;
	if (eng->ckpt_wanted || (!eng->closing && families)) {
		ckpt_start(eng, families);
		eng->ckpt_families = false;
	}
}

/* Writes a checkpoint of everything retired now and waits for it, spinning the
 * engine: for engine_open() and engine_close() only, outside any loop. */
int eng_ckpt_sync(struct engine *eng)
{
	uint64_t after = eng->ckpt_starts; /* one in flight was captured earlier: not enough */

	eng->ckpt_wanted = true;
	eng_ckpt_maybe(eng);
	/* and the slots it frees are free */
	while ((eng->ckpt_landed_no <= after && eng->ckpt_failed_no <= after) || eng->free_jobs ||
	       eng->fckpt) {
		int r = engine_poll(eng, 10);
		if (r < 0)
			return r;
	}
	if (eng->ckpt_landed_no > after)
		return 0;
	return eng->ckpt_error ? eng->ckpt_error : -EIO;
}

static int checkpoint_step(struct eng_job *job)
{
	if (!job->ckpt_asked)
		job->eng->ckpt_families = true;
	return eng_job_wait_ckpt(job);
}

static int checkpoint_job(struct engine *eng, eng_job_step_fn step, engine_cb cb, void *arg)
{
	struct eng_job *job = calloc(1, sizeof(*job));

	return job ? eng_job_start(eng, job, step, cb, arg) : -ENOMEM;
}

int engine_checkpoint_async(struct engine *eng, engine_cb cb, void *arg)
{
	return checkpoint_job(eng, checkpoint_step, cb, arg);
}

/* A stop's: the owed families' checkpoints are written even into a log with no open
 * segment (a restarted owner opens none until a write, and a new owner then copies
 * every segment above the family's newest one). */
static int stop_checkpoint_step(struct eng_job *job)
{
	if (!job->ckpt_asked)
		job->eng->fckpt_open_logs = true;
	return checkpoint_step(job);
}

int engine_checkpoint_for_stop_async(struct engine *eng, engine_cb cb, void *arg)
{
	return checkpoint_job(eng, stop_checkpoint_step, cb, arg);
}

int engine_checkpoint(struct engine *eng)
{
	struct eng_sync s = { 0 };

	return eng_sync_wait(eng, &s, engine_checkpoint_async(eng, eng_sync_done, &s));
}

