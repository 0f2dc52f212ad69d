/* engine/checkpoint.c — writing the extent map to RocksDB in the background.
 *
 * A checkpoint at sequence S promises: the stored map holds the effect of every batch
 * with seq <= S, and their data is durable. Steps:
 *   1. capture (engine thread): S = (oldest unretired batch) - 1; take the dirty map
 *      chunks into a RocksDB batch; note the sealed slots with no live block.
 *   2. fdatasync the store, so that no stored map entry points at volatile data.
 *   3. (checkpoint thread) commit the batch without WAL, then the "C" record, then
 *      flush RocksDB's memtables: durable at once, and RocksDB never syncs on the
 *      I/O path.
 *   4. (engine thread) the noted slots become free: replay no longer needs their
 *      batches, since even their trims are in the stored map now.
 * If RocksDB persists part of a checkpoint early (its own memtable flush), replay
 * from the older S re-applies those batches in order and reaches the same map.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "engine/engine_internal.h"
#include "metadata/meta.h"
#include "store/store.h"

static void *ckpt_main(void *arg)
{
	struct engine *eng = arg;

	pthread_mutex_lock(&eng->ckpt_lock);
	for (;;) {
		struct ckpt_job *job;
		struct ondisk_checkpoint rec;

		while (!eng->ckpt_todo && !eng->ckpt_stop)
			pthread_cond_wait(&eng->ckpt_cond, &eng->ckpt_lock);
		if (!eng->ckpt_todo)
			break;
		job = eng->ckpt_todo;
		eng->ckpt_todo = NULL;
		pthread_mutex_unlock(&eng->ckpt_lock);

		ondisk_checkpoint_encode(job->seq, &rec);
		meta_batch_put(job->mb, ONDISK_KEY_CKPT, 1, &rec, sizeof(rec));
		job->result = meta_batch_commit(eng->meta, job->mb, META_NOWAL);
		if (job->result == 0)
			job->result = meta_flush(eng->meta);

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
	return 0;
}

static uint64_t stable_seq(const struct engine *eng)
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

static struct ckpt_job *capture(struct engine *eng)
{
	struct ckpt_job *job = calloc(1, sizeof(*job));
	int r;

	if (!job || meta_batch_create(&job->mb) < 0)
		goto err;
	job->seq = stable_seq(eng);
	add_ops(eng, job);
	for (size_t i = 0; i < eng->nvols; i++) {
		struct emit_ctx c = { .mb = job->mb, .volume_id = eng->vols[i]->rec.volume_id };

		r = map_take_dirty(eng->vols[i]->map, emit_chunk, &c);
		if (r < 0)
			goto err;
	}
	job->free_slots = malloc(eng->sb.segment_count * sizeof(*job->free_slots));
	if (!job->free_slots)
		goto err;
	for (uint32_t i = 0; i < eng->sb.segment_count; i++) {
		const struct slot *s = &eng->slots[i];

		/* last_seq <= seq: replay from this checkpoint never needs its batches */
		if (s->state == SLOT_SEALED && s->live == 0 && s->pending == 0 &&
		    s->last_seq <= job->seq && !(eng->gc_busy && eng->gc_victim == i))
			job->free_slots[job->nfree++] = (struct ckpt_free){ i, s->generation };
	}
	return job;
err:
	log_msg(LOG_ERROR, ENG_LOG, "checkpoint capture failed: out of memory");
	job_free(job);
	return NULL;
}

/* A checkpoint that did not land leaves RocksDB without chunks whose dirty bits it
 * took: every chunk is written again by the next one. */
static void ckpt_failed(struct engine *eng, struct ckpt_job *job, int res)
{
	LOG_RATELIMITED(LOG_ERROR, ENG_LOG, "map checkpoint at seq %llu failed: %s; "
			"will retry", (unsigned long long)job->seq, strerror(-res));
	eng->ckpt_failures++;
	for (size_t i = 0; i < eng->nvols; i++)
		map_mark_all_dirty(eng->vols[i]->map);
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
	pthread_mutex_lock(&eng->ckpt_lock);
	eng->ckpt_todo = job;
	pthread_cond_broadcast(&eng->ckpt_cond);
	pthread_mutex_unlock(&eng->ckpt_lock);
}

static void ckpt_start(struct engine *eng)
{
	struct ckpt_job *job = capture(eng);
	int r;

	if (!job)
		return;
	job->eng = eng;
	eng->ckpt_busy = true;
	eng->ckpt_wanted = false;
	eng->ckpt_last_ms = eng_now_ms();
	r = store_flush(eng->st, store_flushed, job);
	if (r < 0)
		store_flushed(job, r);
}

void eng_slot_release(struct engine *eng, uint32_t slot)
{
	struct slot *s = &eng->slots[slot];

	if (s->state == SLOT_FREE)
		return; /* noted twice (deferred, then again by a later checkpoint) */
	if (s->readers) {
		uint32_t *v = realloc(eng->deferred_free,
				      (eng->ndeferred_free + 1) * sizeof(*v));
		if (v) { /* without memory the slot just stays sealed until next time */
			eng->deferred_free = v;
			eng->deferred_free[eng->ndeferred_free++] = slot;
		}
		return;
	}
	memset(s, 0, sizeof(*s));
	s->state = SLOT_FREE;
	eng->nfree++;
	eng->gc_no_room = false;
	eng->stats.gc_segments_freed++;
}

static void release_deferred(struct engine *eng)
{
	size_t n = eng->ndeferred_free;

	eng->ndeferred_free = 0;
	for (size_t i = 0; i < n; i++)
		eng_slot_release(eng, eng->deferred_free[i]);
}

/* Frees a slot noted empty at capture, if it is still that slot and still empty. */
static void free_if_still_empty(struct engine *eng, const struct ckpt_free *f)
{
	const struct slot *s = &eng->slots[f->slot];

	if (s->state != SLOT_SEALED || s->generation != f->generation)
		return; /* freed and reused meanwhile */
	if (s->live) { /* nothing writes into a sealed slot: this is a bug, keep the data */
		log_msg(LOG_ERROR, ENG_LOG, "slot %u gained %u live blocks after it was found "
			"empty; not freed", f->slot, s->live);
		return;
	}
	eng_slot_release(eng, f->slot);
}

void eng_ckpt_reap(struct engine *eng)
{
	struct ckpt_job *job;

	if (eng->ndeferred_free)
		release_deferred(eng);
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
		eng->stats.checkpoints++;
		eng->stats.last_checkpoint_seq = job->seq;
		drop_ops(eng, job->nops);
		for (size_t i = 0; i < job->nfree; i++)
			free_if_still_empty(eng, &job->free_slots[i]);
		if (job->nfree)
			eng_run_parked(eng, false);
	}
	job_free(job);
}

/* Starts a checkpoint when one is due: by the clock, or asked for by the cleaner. */
void eng_ckpt_maybe(struct engine *eng)
{
	unsigned period = eng->opts.checkpoint_ms ? eng->opts.checkpoint_ms : 5000;

	if (eng->ckpt_busy)
		return;
	if (eng->ckpt_wanted || eng_now_ms() - eng->ckpt_last_ms >= period)
		ckpt_start(eng);
}

/* Writes a checkpoint of everything retired now and waits for it, spinning the
 * engine: for engine_open() and engine_close() only, outside any loop. */
int eng_ckpt_sync(struct engine *eng)
{
	uint64_t before;

	while (eng->ckpt_busy) { /* one in flight was captured earlier: not enough */
		int r = engine_poll(eng, 10);
		if (r < 0)
			return r;
	}
	before = eng->stats.checkpoints;
	eng->ckpt_wanted = true;
	eng_ckpt_maybe(eng);
	while (eng->ckpt_busy) {
		int r = engine_poll(eng, 10);
		if (r < 0)
			return r;
	}
	return eng->stats.checkpoints > before ? 0 : -EIO;
}

static int checkpoint_step(struct eng_job *job)
{
	return eng_job_wait_ckpt(job);
}

int engine_checkpoint_async(struct engine *eng, engine_cb cb, void *arg)
{
	struct eng_job *job = calloc(1, sizeof(*job));

	return job ? eng_job_start(eng, job, checkpoint_step, cb, arg) : -ENOMEM;
}

int engine_checkpoint(struct engine *eng)
{
	struct eng_sync s = { 0 };

	return eng_sync_wait(eng, &s, engine_checkpoint_async(eng, eng_sync_done, &s));
}

