/* engine/heldfrag.c — fragments of other nodes' erasure-coded segments held here
 * (engine.h, "fragments of other nodes' erasure-coded segments"; docs/engine.md,
 * "Held fragments").
 *
 * A fragment is written once, whole, and never appended: unlike a held copy (held.c)
 * it has no log to walk, no length that grows, no seal. Its slot is a held slot (the
 * segment layer's seg_hold: the cleaner, prezero and the census leave it alone), sealed
 * at the image's length once the put is durable. The table here is by (family uid,
 * segment number), apart from held.c's: during encoding one node may hold both the copy
 * of a segment and a fragment of its stripe.
 *
 * A put is a job: write the image (from an aligned copy of the caller's), sync the
 * store, commit the "G" record (META_SYNC, on the metadata thread), and only then
 * answer. A crash before the commit leaves a slot no record names: free at the next
 * start. A delete commits the record's removal, then frees the slot.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "engine/engine_internal.h"
#include "engine/segtab.h"
#include "metadata/meta.h"

/* One fragment held. Allocated on its own: a read's completion keeps a pointer to it. */
struct frag {
	struct engine_frag_info fi;
	uint32_t head_crc; /* CRC32C of the image's block 0 */
	bool putting;      /* its put is under way: not here yet */
	bool deleting;     /* a delete: no new reads */
	unsigned reads;    /* in flight */
};

struct eng_frags {
	struct segtab tab; /* of struct frag */
};

/* ---- the table ---- */

static void frag_key(const void *e, uint64_t *uid, uint32_t *sno)
{
	const struct frag *f = e;

	*uid = f->fi.uid;
	*sno = f->fi.sno;
}

static struct frag *frag_find(const struct engine *eng, uint64_t uid, uint32_t sno)
{
	return eng->frags ? segtab_find(&eng->frags->tab, frag_key, uid, sno) : NULL;
}

bool eng_frag_slot(const struct engine *eng, uint32_t slot)
{
	const struct slot *s = &eng->slots[slot];
	const struct frag *f = s->held ? frag_find(eng, s->family_uid, s->sno) : NULL;

	return f && f->fi.slot == slot;
}

/* The i-th fragment in (uid, sno) order. */
static struct frag *frag_at(const struct engine *eng, size_t i)
{
	return eng->frags->tab.v[i];
}

static size_t frag_count(const struct engine *eng)
{
	return eng->frags ? eng->frags->tab.n : 0;
}

/* A new entry for fi's (uid, sno), which must not be there. NULL without memory. */
static struct frag *frag_add(struct engine *eng, const struct engine_frag_info *fi)
{
	struct frag *f;

	if (!eng->frags)
		eng->frags = calloc(1, sizeof(*eng->frags));
	if (!eng->frags)
		return NULL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->fi = *fi;
	if (segtab_insert(&eng->frags->tab, frag_key, f) < 0) {
		free(f);
		return NULL;
	}
	return f;
}

static void frag_remove(struct engine *eng, struct frag *f)
{
	segtab_remove(&eng->frags->tab, frag_key, f);
	free(f);
}

void eng_frag_free(struct engine *eng)
{
	struct eng_frags *t = eng->frags;

	if (!t)
		return;
	for (size_t i = 0; i < t->tab.n; i++)
		free(frag_at(eng, i));
	segtab_release(&t->tab);
	free(t);
	eng->frags = NULL;
}

int engine_frag_stat(const struct engine *eng, uint64_t uid, uint32_t sno,
		     struct engine_frag_info *out)
{
	const struct frag *f = frag_find(eng, uid, sno);

	if (!f || f->putting)
		return -ENOENT;
	*out = f->fi;
	return 0;
}

int engine_frag_list(const struct engine *eng,
		     int (*fn)(void *arg, const struct engine_frag_info *f), void *arg)
{
	for (size_t i = 0; i < frag_count(eng); i++) {
		int r;

		if (frag_at(eng, i)->putting)
			continue;
		r = fn(arg, &frag_at(eng, i)->fi);
		if (r)
			return r;
	}
	return 0;
}

/* ---- records ---- */

static void put_record(struct meta_batch *mb, const struct frag *f)
{
	const struct engine_frag_info *fi = &f->fi;
	struct frag_record r = { .slot = fi->slot, .epoch = fi->epoch, .index = fi->index,
				 .k = fi->k, .m = fi->m, .seg_blocks = fi->seg_blocks,
				 .frag_blocks = fi->frag_blocks,
				 .image_blocks = fi->image_blocks, .frag_crc = fi->frag_crc,
				 .head_crc = f->head_crc };
	uint8_t key[ONDISK_FRAG_KEY_LEN];
	struct ondisk_frag_record rec;

	ondisk_frag_key(fi->uid, fi->sno, key);
	ondisk_frag_record_encode(&r, &rec);
	meta_batch_put(mb, key, sizeof(key), &rec, sizeof(rec));
}

/* ---- put and delete: jobs ---- */

enum { PUT_WRITE, PUT_WRITE_WAIT, PUT_FLUSH, PUT_COMMIT };

struct frag_job {
	struct eng_job job; /* first: job.c frees it through release */
	uint64_t uid;
	uint32_t sno;
	bool owns;          /* this job put or deletes the entry; a put without it is a retry */
	bool del;
	uint64_t max_epoch; /* a delete: only of a fragment put at this epoch or below */
	uint8_t *image;     /* a put's aligned copy of the image */
	struct meta_batch *mb;
};

static void frag_job_release(struct eng_job *job)
{
	struct frag_job *fj = (struct frag_job *)job;

	if (fj->mb)
		meta_batch_destroy(fj->mb);
	seg_buf_free(fj->image);
	free(fj);
}

/* The put failed or was fenced: the slot and the entry go. */
static int put_undo(struct engine *eng, struct frag *f, int err)
{
	seg_release(eng, f->fi.slot);
	frag_remove(eng, f);
	return err;
}

/* A put's commit, through its states: ENG_JOB_WAIT meanwhile. */
static int put_commit(struct frag_job *fj, struct frag *f)
{
	struct engine *eng = fj->job.eng;
	int r;

	if (!fj->mb) {
		/* the fence may have risen while the image was written */
		if (f->fi.epoch < engine_held_epoch(eng, f->fi.uid))
			return -ESTALE;
		r = meta_batch_create(&fj->mb);
		if (r < 0)
			return r;
		put_record(fj->mb, f);
	}
	return eng_job_meta_commit(&fj->job, &fj->mb);
}

static int put_step(struct frag_job *fj)
{
	struct engine *eng = fj->job.eng;
	struct frag *f = frag_find(eng, fj->uid, fj->sno);
	int r;

	if (!fj->owns) /* a retry: answered once the put it repeats is */
		return !f ? -EIO : f->putting ? ENG_JOB_WAIT : 0;
	switch (fj->job.pc) {
	case PUT_WRITE:
		eng_job_seg_io(&fj->job, true, f->fi.slot, 0, fj->image, f->fi.image_blocks);
		fj->job.pc = PUT_WRITE_WAIT;
		return ENG_JOB_WAIT;
	case PUT_WRITE_WAIT:
		r = eng_job_next(&fj->job, eng_job_wait_io(&fj->job), PUT_FLUSH);
		break;
	case PUT_FLUSH:
		r = eng_job_next(&fj->job, eng_job_wait_local_flush(&fj->job), PUT_COMMIT);
		break;
	default:
		r = put_commit(fj, f);
		if (r == 0) {
			f->putting = false;
			eng->slots[f->fi.slot].used = f->fi.image_blocks;
			seg_seal(eng, f->fi.slot);
			log_msg(LOG_DEBUG, ENG_LOG, "holding fragment %u of %u+%u of segment "
				"%llx.%u in slot %u", f->fi.index, f->fi.k, f->fi.m,
				(unsigned long long)f->fi.uid, f->fi.sno, f->fi.slot);
		}
		break;
	}
	return r < 0 && r != ENG_JOB_WAIT ? put_undo(eng, f, r) : r;
}

static void put_drop(struct frag_job *fj)
{
	uint8_t key[ONDISK_FRAG_KEY_LEN];

	ondisk_frag_key(fj->uid, fj->sno, key);
	meta_batch_delete(fj->mb, key, sizeof(key));
}

static int delete_step(struct frag_job *fj)
{
	struct engine *eng = fj->job.eng;
	struct frag *f = frag_find(eng, fj->uid, fj->sno);
	int r;

	if (!f)
		return 0; /* not here (any more): a retry */
	if (!fj->owns) {
		if (f->putting || f->deleting)
			return ENG_JOB_WAIT; /* a put or another delete first */
		if (f->fi.epoch > fj->max_epoch)
			return -ESTALE; /* put again since, at a newer epoch: kept */
		f->deleting = true;
		fj->owns = true;
	}
	if (f->reads)
		return ENG_JOB_WAIT;
	if (!fj->mb) {
		r = meta_batch_create(&fj->mb);
		if (r < 0) {
			f->deleting = false;
			return r;
		}
		put_drop(fj);
	}
	r = eng_job_meta_commit(&fj->job, &fj->mb);
	if (r == ENG_JOB_WAIT)
		return r;
	if (r < 0) {
		f->deleting = false;
		return r;
	}
	/* the image's header is no header of this store's: without a "G" record the
	 * slot is free at the next start too */
	seg_release(eng, f->fi.slot);
	frag_remove(eng, f);
	return 0;
}

static int frag_step(struct eng_job *job)
{
	struct frag_job *fj = (struct frag_job *)job;

	return fj->del ? delete_step(fj) : put_step(fj);
}

static int frag_job_start(struct engine *eng, uint64_t uid, uint32_t sno, bool del,
			  bool owns, uint8_t *image, uint64_t max_epoch, engine_cb cb, void *arg)
{
	struct frag_job *fj = calloc(1, sizeof(*fj));

	if (!fj) {
		seg_buf_free(image);
		return -ENOMEM;
	}
	*fj = (struct frag_job){ .uid = uid, .sno = sno, .del = del, .owns = owns,
				 .image = image, .max_epoch = max_epoch };
	fj->job.release = frag_job_release;
	return eng_job_start(eng, &fj->job, frag_step, cb, arg);
}

static int put_check(const struct engine *eng, const struct engine_frag_info *fi)
{
	if (fi->uid == 0 || fi->k == 0 || fi->m == 0 || fi->index >= fi->k + fi->m ||
	    fi->frag_blocks == 0 || fi->image_blocks <= fi->frag_blocks)
		return -EINVAL;
	if (fi->image_blocks > eng->blocks_per_seg)
		return -EFBIG;
	return fi->epoch < engine_held_epoch(eng, fi->uid) ? -ESTALE : 0;
}

/* The same fragment put again (a retry, or an encoding at a newer epoch that finds the
 * image of one that was never recorded): answered once the first put is. It now counts
 * as put at the newer epoch, so that an orphan check that judged it at the old one does
 * not drop it under the stripe about to name it (engine_frag_drop_stale_async). In
 * memory only: after a restart the stripe's record, if written, keeps it. */
static int put_again(struct engine *eng, struct frag *f, uint64_t epoch, engine_cb cb,
		     void *arg)
{
	if (epoch > f->fi.epoch)
		f->fi.epoch = epoch;
	return frag_job_start(eng, f->fi.uid, f->fi.sno, false, false, NULL, UINT64_MAX, cb, arg);
}

int engine_frag_put_async(struct engine *eng, const struct engine_frag_info *fi,
			  const void *image, engine_cb cb, void *arg)
{
	size_t len = (size_t)fi->image_blocks * ENGINE_BLOCK_SIZE;
	uint8_t *copy;
	struct frag *f;
	uint32_t slot;
	int r = put_check(eng, fi);

	if (r < 0)
		return r;
	if (!cb || !image)
		return -EINVAL;
	f = frag_find(eng, fi->uid, fi->sno);
	if (f) /* the same fragment again is a retry; another one is a conflict */
		return f->deleting ? -EBUSY
		       : f->fi.index == fi->index && f->fi.frag_crc == fi->frag_crc &&
				       f->fi.image_blocks == fi->image_blocks
			       ? put_again(eng, f, fi->epoch, cb, arg)
			       : -EEXIST;
	copy = seg_buf_dup(image, len);
	if (!copy)
		return -ENOMEM;
	r = seg_hold(eng, fi->uid, fi->sno, &slot);
	if (r < 0) {
		seg_buf_free(copy);
		return r;
	}
	f = frag_add(eng, fi);
	if (!f) {
		seg_release(eng, slot);
		seg_buf_free(copy);
		return -ENOMEM;
	}
	f->fi.slot = slot;
	f->head_crc = crc32c(copy, ENGINE_BLOCK_SIZE);
	f->putting = true;
	r = frag_job_start(eng, fi->uid, fi->sno, false, true, copy, UINT64_MAX, cb, arg);
	if (r < 0)
		put_undo(eng, f, r);
	return r;
}

int engine_frag_delete_async(struct engine *eng, uint64_t uid, uint32_t sno, engine_cb cb,
			     void *arg)
{
	return frag_job_start(eng, uid, sno, true, false, NULL, UINT64_MAX, cb, arg);
}

int engine_frag_drop_stale_async(struct engine *eng, uint64_t uid, uint32_t sno,
				 uint64_t epoch, engine_cb cb, void *arg)
{
	return frag_job_start(eng, uid, sno, true, false, NULL, epoch, cb, arg);
}

/* ---- reads ---- */

struct frag_read {
	struct engine *eng;
	struct frag *f;
	engine_cb cb;
	void *arg;
};

static void frag_read_done(void *arg, int res)
{
	struct frag_read *rd = arg;
	engine_cb cb = rd->cb;
	void *cb_arg = rd->arg;

	rd->f->reads--;
	rd->eng->held_reads--;
	free(rd);
	cb(cb_arg, res < 0 ? res : 0);
}

int engine_frag_read(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t block,
		     void *buf, uint32_t nblocks, engine_cb cb, void *arg)
{
	struct frag *f = frag_find(eng, uid, sno);
	struct iovec iov = { buf, (size_t)nblocks * ENGINE_BLOCK_SIZE };
	struct frag_read *rd;
	int r;

	if (!cb || !buf || nblocks == 0 || (uintptr_t)buf % SEG_ALIGN)
		return -EINVAL;
	if (!f || f->putting || f->deleting)
		return -ENOENT;
	if ((uint64_t)block + nblocks > f->fi.image_blocks)
		return -ERANGE;
	rd = malloc(sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	*rd = (struct frag_read){ .eng = eng, .f = f, .cb = cb, .arg = arg };
	r = seg_read(eng, f->fi.slot, block, &iov, 1, frag_read_done, rd);
	if (r < 0) {
		free(rd);
		return r;
	}
	f->reads++;
	eng->held_reads++;
	return 0;
}

/* ---- start-up ---- */

/* Whether the image's header block in its slot is the one the record names. */
static bool head_matches(struct engine *eng, const struct frag *f)
{
	return seg_read_sync(eng, f->fi.slot, 0, eng->gc_buf, 1) == 0 &&
	       crc32c(eng->gc_buf, ENGINE_BLOCK_SIZE) == f->head_crc;
}

static int load_frag(struct engine *eng, const void *key, size_t klen, const void *val,
		     size_t vlen)
{
	struct engine_frag_info fi = { 0 };
	struct frag_record rec;
	struct frag *f;

	if (ondisk_frag_key_decode(key, klen, &fi.uid, &fi.sno) < 0 ||
	    ondisk_frag_record_decode(val, vlen, &rec) < 0 || rec.slot >= eng->sb.segment_count ||
	    rec.image_blocks > eng->blocks_per_seg || eng->slots[rec.slot].held) {
		log_msg(LOG_ERROR, ENG_LOG, "a held fragment's record is damaged or names a "
			"slot taken already: ignored (that fragment is lost here)");
		return 0;
	}
	fi = (struct engine_frag_info){ .uid = fi.uid, .sno = fi.sno, .epoch = rec.epoch,
					.index = rec.index, .k = rec.k, .m = rec.m,
					.seg_blocks = rec.seg_blocks,
					.frag_blocks = rec.frag_blocks,
					.image_blocks = rec.image_blocks,
					.frag_crc = rec.frag_crc, .slot = rec.slot };
	f = frag_add(eng, &fi);
	if (!f)
		return -ENOMEM;
	f->head_crc = rec.head_crc;
	seg_hold_restore(eng, rec.slot, fi.uid, fi.sno, true, rec.image_blocks);
	if (!head_matches(eng, f)) {
		/* the record is left: the slot stays held, and whoever reads the fragment
		 * finds it bad by its CRCs (a degraded read; a scrub will repair it) */
		log_msg(LOG_ERROR, ENG_LOG, "held fragment %u of segment %llx.%u in slot %u: "
			"its header block is not the one its record names", fi.index,
			(unsigned long long)fi.uid, fi.sno, fi.slot);
	}
	return 0;
}

int eng_frag_load(struct engine *eng)
{
	int r = eng_load_prefix(eng, 'G', load_frag);

	if (r == 0 && frag_count(eng))
		log_msg(LOG_INFO, ENG_LOG, "holding %zu fragments for other nodes",
			frag_count(eng));
	return r;
}
