/* engine/segment.c — the segment calls of engine/segment.h over the slot table.
 *
 * What a segment is (its slot, its state and generation, its header) is decided
 * here, whatever implementation holds its blocks; the I/O goes to eng->segs->ops.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "common/stages.h"
#include "engine/engine_internal.h"
#include "engine/segment.h"
#include "metadata/meta.h"

/* ---- families and their segment numbers ---- */

/* The family table: an array (checkpoints walk it) and an open-addressing index by
 * uid over it, so that the questions asked on every holder append (is this family
 * here?) and on every management call (has it a log?) cost no walk of the layers or
 * the slots. Entries are never removed: no tombstones. */

static size_t family_hash(uint64_t uid, size_t cap)
{
	uid ^= uid >> 33; /* murmur3's finalizer: test uids are small and regular */
	uid *= 0xff51afd7ed558ccdull;
	uid ^= uid >> 33;
	return (size_t)uid & (cap - 1);
}

const struct seg_family *seg_family_get(const struct engine *eng, uint64_t uid)
{
	size_t cap = eng->family_index_cap;

	if (!cap)
		return NULL;
	for (size_t i = family_hash(uid, cap);; i = (i + 1) & (cap - 1)) {
		uint32_t e = eng->family_index[i];

		if (!e)
			return NULL;
		if (eng->families[e - 1].uid == uid)
			return &eng->families[e - 1];
	}
}

void seg_family_fckpt_owed(struct engine *eng, uint64_t uid, bool owed)
{
	struct seg_family *f = (struct seg_family *)seg_family_get(eng, uid);

	if (f)
		f->fckpt_owed = owed;
}

void seg_family_sno_unsure(struct engine *eng, uint64_t uid, bool unsure)
{
	struct seg_family *f = (struct seg_family *)seg_family_get(eng, uid);

	if (f)
		f->sno_unsure = unsure;
}

static void family_index_put(uint32_t *index, size_t cap, uint64_t uid, uint32_t e)
{
	size_t i = family_hash(uid, cap);

	while (index[i])
		i = (i + 1) & (cap - 1);
	index[i] = e;
}

/* Room in the index for one more entry: at most half full. 0 or -ENOMEM. */
static int family_index_grow(struct engine *eng)
{
	size_t cap = eng->family_index_cap ? eng->family_index_cap : 32;
	uint32_t *index;

	while (2 * (eng->nfamilies + 1) > cap)
		cap *= 2;
	if (cap == eng->family_index_cap)
		return 0;
	index = calloc(cap, sizeof(*index));
	if (!index)
		return -ENOMEM;
	for (size_t k = 0; k < eng->nfamilies; k++)
		family_index_put(index, cap, eng->families[k].uid, (uint32_t)k + 1);
	free(eng->family_index);
	eng->family_index = index;
	eng->family_index_cap = cap;
	return 0;
}

/* uid's entry in the family table; added (next_sno 0) if `add`. NULL if absent, or
 * without memory. */
static struct seg_family *family_find(struct engine *eng, uint64_t uid, bool add)
{
	struct seg_family *f = (struct seg_family *)seg_family_get(eng, uid);

	if (f || !add)
		return f;
	if (eng->nfamilies >= UINT32_MAX - 1 || family_index_grow(eng) < 0)
		return NULL;
	f = realloc(eng->families, (eng->nfamilies + 1) * sizeof(*f));
	if (!f)
		return NULL;
	eng->families = f;
	f = &eng->families[eng->nfamilies++];
	*f = (struct seg_family){ .uid = uid };
	family_index_put(eng->family_index, eng->family_index_cap, uid,
			 (uint32_t)eng->nfamilies);
	return f;
}

int seg_family_layer_added(struct engine *eng, uint64_t uid)
{
	struct seg_family *f = family_find(eng, uid, true);

	if (!f)
		return -ENOMEM;
	f->nlayers++;
	return 0;
}

void seg_family_layer_removed(struct engine *eng, uint64_t uid)
{
	struct seg_family *f = family_find(eng, uid, false);

	assert(f && f->nlayers > 0);
	if (--f->nlayers)
		return;
	/* not run here any more (deleted, released): no newest family checkpoint of its
	 * own to keep (after a start every slot of it counted one) */
	eng_fckpt_forget(eng, uid);
}

/* Is slot s a slot of its family's own log (in use, not another node's copy)? A
 * remote entry is (its segment is the family's, elsewhere); the store slot it was
 * dropped from is not any more (the same segment, counted once). */
static bool slot_is_own_log(const struct slot *s)
{
	return s->state != SLOT_FREE && !s->held && !s->dropped && s->family_uid;
}

/* s's family's count of own-log slots moves by delta if s is one (the entry is made
 * if need be: a start-up restores slots before their family's layers). */
static void own_count(struct engine *eng, const struct slot *s, int delta)
{
	struct seg_family *f;

	if (!slot_is_own_log(s) || !(f = family_find(eng, s->family_uid, delta > 0)))
		return; /* (without memory: seg_families_check says so) */
	assert(delta > 0 || f->nlog > 0);
	f->nlog += (uint32_t)delta;
}

void seg_slot_set(struct engine *eng, uint32_t slot, const struct slot *to)
{
	struct slot *s = &eng->slots[slot];

	own_count(eng, s, -1);
	*s = *to;
	own_count(eng, s, 1);
}

int seg_families_check(const struct engine *eng)
{
	for (size_t k = 0; k < eng->nfamilies; k++) {
		const struct seg_family *f = &eng->families[k];
		uint32_t layers = 0, log = 0;

		if (seg_family_get(eng, f->uid) != f) {
			log_msg(LOG_ERROR, ENG_LOG, "family %llx: not found by its index",
				(unsigned long long)f->uid);
			return -EUCLEAN;
		}
		for (size_t i = 0; i < eng->nvols; i++)
			layers += eng->vols[i]->rec.uid == f->uid;
		for (uint32_t i = 0; i < eng->slot_cap; i++)
			log += slot_is_own_log(&eng->slots[i]) &&
			       eng->slots[i].family_uid == f->uid;
		if (layers != f->nlayers || log != f->nlog) {
			log_msg(LOG_ERROR, ENG_LOG, "family %llx: %u layers and %u own slots "
				"counted, %u and %u found", (unsigned long long)f->uid,
				f->nlayers, f->nlog, layers, log);
			return -EUCLEAN;
		}
	}
	for (size_t i = 0; i < eng->nvols; i++)
		if (!seg_family_get(eng, eng->vols[i]->rec.uid)) {
			log_msg(LOG_ERROR, ENG_LOG, "layer %llu: its family %llx has no entry",
				(unsigned long long)eng->vols[i]->rec.volume_id,
				(unsigned long long)eng->vols[i]->rec.uid);
			return -EUCLEAN;
		}
	return 0;
}

/* Raises uid's counter to `next` at least: the numbers below it stay spent. */
static struct seg_family *family_restart(struct engine *eng, uint64_t uid, uint32_t next)
{
	struct seg_family *f = family_find(eng, uid, true);

	if (f && next > f->next_sno)
		f->next_sno = next;
	return f;
}

/* ---- reserving numbers (engine_family_reserve_sno) ---- */

/* What the family's "F" record says, or must say: its counter, or a reservation past
 * it (a restart then starts there: the numbers between are never used). */
static uint32_t family_floor(const struct seg_family *f)
{
	return f->next_sno > f->saved_sno ? f->next_sno : f->saved_sno;
}

struct reserve_job {
	struct eng_job job; /* first: job.c frees it with free() */
	uint64_t uid;
	uint32_t durable;   /* the "F" record says at least this at the end */
	uint32_t put;       /* what the batch says */
	struct meta_batch *mb;
};

static void reserve_release(struct eng_job *job)
{
	struct reserve_job *rj = (struct reserve_job *)job;

	if (rj->mb)
		meta_batch_destroy(rj->mb);
	free(rj);
}

/* Commits the family's "F" record at max(its counter, the reservation asked, what it
 * says now): a later raise may have gone past the one that started this job. */
static int reserve_step(struct eng_job *job)
{
	struct reserve_job *rj = (struct reserve_job *)job;
	struct seg_family *f = family_find(job->eng, rj->uid, false);
	uint8_t key[ONDISK_FAMILY_KEY_LEN];
	struct ondisk_family_record rec;
	int r;

	if (!f)
		return -ENOENT; /* the entry is never removed while the engine runs */
	if (!rj->mb) {
		uint32_t want = family_floor(f) > rj->durable ? family_floor(f) : rj->durable;

		if (f->saved_sno >= want)
			return 0; /* a checkpoint or an earlier reservation saved it already */
		r = meta_batch_create(&rj->mb);
		if (r < 0)
			return r;
		ondisk_family_key(rj->uid, key);
		ondisk_family_record_encode(want, &rec);
		meta_batch_put(rj->mb, key, sizeof(key), &rec, sizeof(rec));
		rj->put = want;
	}
	r = eng_job_meta_commit(job, &rj->mb);
	if (r == 0 && rj->put > f->saved_sno)
		f->saved_sno = rj->put; /* no checkpoint ran meanwhile (commits go one at a time) */
	return r;
}

int engine_family_reserve_sno_async(struct engine *eng, uint64_t uid, uint32_t next,
				    uint32_t durable, engine_cb cb, void *arg)
{
	struct reserve_job *rj;
	struct seg_family *f;

	if (uid == 0 || uid == ONDISK_CATALOG_UID || !cb)
		return -EINVAL;
	/* in memory at once: a segment opened from here on takes a number past it */
	f = family_restart(eng, uid, next);
	if (!f)
		return -ENOMEM;
	f->sno_unsure = false;
	rj = calloc(1, sizeof(*rj));
	if (!rj)
		return -ENOMEM;
	rj->uid = uid;
	rj->durable = durable;
	rj->job.release = reserve_release;
	return eng_job_start(eng, &rj->job, reserve_step, cb, arg);
}

int engine_family_reserve_sno(struct engine *eng, uint64_t uid, uint32_t next, uint32_t durable)
{
	struct eng_sync s = { 0 };

	return eng_sync_wait(eng, &s, engine_family_reserve_sno_async(eng, uid, next, durable,
								      eng_sync_done, &s));
}

uint32_t engine_family_next_sno(const struct engine *eng, uint64_t uid)
{
	const struct seg_family *f = seg_family_get(eng, uid);

	return f ? f->next_sno : 0;
}

uint32_t engine_family_durable_sno(const struct engine *eng, uint64_t uid)
{
	const struct seg_family *f = seg_family_get(eng, uid);

	return f ? f->saved_sno : 0;
}

int seg_note_header(struct engine *eng, uint32_t slot, const struct segment_header *h)
{
	if (h->state == ONDISK_SEG_USED) {
		struct slot to = eng->slots[slot];

		to.family_uid = h->family_uid;
		to.sno = h->sno;
		seg_slot_set(eng, slot, &to);
	}
	/* a FREE header's number was spent too; UINT32_MAX leaves the counter full */
	return family_restart(eng, h->family_uid,
			      h->sno == UINT32_MAX ? UINT32_MAX : h->sno + 1) ? 0 : -ENOMEM;
}

void seg_families_rebuilt(struct engine *eng)
{
	for (size_t i = 0; i < eng->nfamilies; i++) {
		struct seg_family *f = &eng->families[i];

		f->next_sno = f->next_sno > UINT32_MAX - SEG_REBUILD_SNO_MARGIN
				      ? UINT32_MAX : f->next_sno + SEG_REBUILD_SNO_MARGIN;
	}
}

/* ---- open, seal, release ---- */

/* A free slot for `who`, taken (OPEN, zeroed otherwise), or -ENOSPC. */
static int64_t slot_take(struct engine *eng, enum slot_user who)
{
	uint32_t keep = who == SLOT_FOR_GC ? 0 : who == SLOT_FOR_TRIM ? 1 : eng->gc_reserve;

	if (eng->nfree <= keep)
		return -ENOSPC;
	for (uint32_t i = 0; i < eng->sb.segment_count; i++) { /* store slots, not remote entries */
		struct slot *s = &eng->slots[i];

		if (s->state != SLOT_FREE || s->readers || s->freeing)
			continue;
		seg_slot_set(eng, i, &(struct slot){ .state = SLOT_OPEN });
		eng->nfree--;
		if (i >= eng->pz_taken_end) /* prezero.c: written from now on */
			eng->pz_taken_end = i + 1;
		eng->gc_no_room = false;
		return i;
	}
	return -ENOSPC;
}

int seg_open(struct engine *eng, struct engine_volume *vol, enum slot_user who)
{
	struct seg_family *f = family_find(eng, vol->rec.uid, true);
	struct slot *s;
	int64_t i;

	if (!f)
		return -ENOMEM;
	if (f->next_sno == UINT32_MAX)
		return -EOVERFLOW;
	i = slot_take(eng, who);
	if (i < 0)
		return (int)i;
	/* its first batch takes next_seq or a later one; dead_known: every block it will
	 * hold is counted from here (the cleaner's reclaims()) */
	seg_slot_set(eng, (uint32_t)i, &(struct slot){ .state = SLOT_OPEN, .dead_known = true,
						       .volume_id = vol->rec.volume_id,
						       .family_uid = f->uid, .sno = f->next_sno++,
						       .generation = eng->next_gen++,
						       .first_seq = eng->next_seq });
	s = &eng->slots[i];
	if (vol->open_slot >= 0)
		seg_seal(eng, (uint32_t)vol->open_slot);
	vol->open_slot = i;
	if (eng->mirror && eng->mirror->wants(eng->mirror_ctx, s->family_uid)) {
		s->mirrored = true;
		eng->mirror->opened(eng->mirror_ctx, (uint32_t)i, s->family_uid, s->sno, 0);
	}
	return 0;
}

int seg_hold(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t *slot)
{
	int64_t i = slot_take(eng, SLOT_FOR_WRITE);

	if (i < 0)
		return (int)i;
	seg_hold_restore(eng, (uint32_t)i, uid, sno, false, 0);
	*slot = (uint32_t)i;
	return 0;
}

void seg_hold_restore(struct engine *eng, uint32_t slot, uint64_t uid, uint32_t sno,
		      bool sealed, uint32_t used)
{
	/* (a released family's slot becomes a copy: it leaves the family's own log) */
	seg_slot_set(eng, slot, &(struct slot){ .state = sealed ? SLOT_SEALED : SLOT_OPEN,
						.held = true, .family_uid = uid, .sno = sno,
						.used = used });
}

void seg_seal(struct engine *eng, uint32_t slot)
{
	struct slot *s = &eng->slots[slot];

	if (s->mirrored && eng->mirror && s->state == SLOT_OPEN)
		eng->mirror->sealed(eng->mirror_ctx, slot, s->used);
	s->state = SLOT_SEALED;
}

void seg_release(struct engine *eng, uint32_t slot)
{
	struct slot *s = &eng->slots[slot];

	if (s->state == SLOT_FREE)
		return; /* noted twice (deferred, then again by a later checkpoint) */
	if (s->remote && !s->readers) { /* no local slot: nothing counts it free */
		seg_slot_set(eng, slot, &(struct slot){ .state = SLOT_FREE });
		return;
	}
	if (s->readers) {
		uint32_t *v = realloc(eng->deferred_free,
				      (eng->ndeferred_free + 1) * sizeof(*v));
		if (v) { /* without memory the slot just stays sealed until next time */
			eng->deferred_free = v;
			eng->deferred_free[eng->ndeferred_free++] = slot;
		}
		return;
	}
	if (!s->held) /* a held copy's slot is the holder's to drop, not the cleaner's win */
		eng->stats.gc_segments_freed++;
	seg_slot_set(eng, slot, &(struct slot){ .state = SLOT_FREE });
	eng->nfree++;
	eng->gc_no_room = false;
}

void seg_release_deferred(struct engine *eng)
{
	size_t n = eng->ndeferred_free;

	eng->ndeferred_free = 0;
	for (size_t i = 0; i < n; i++)
		seg_release(eng, eng->deferred_free[i]);
}

/* ---- headers ---- */

/* The header of slot's segment in state `state`, encoded into buf (one block). */
static void header_encode(const struct engine *eng, uint32_t slot, enum ondisk_seg_state state,
			  uint64_t first_seq, void *buf)
{
	const struct slot *s = &eng->slots[slot];
	struct segment_header h = { .state = state, .volume_id = s->volume_id,
				    .generation = s->generation, .first_seq = first_seq,
				    .family_uid = s->family_uid, .sno = s->sno };

	memcpy(h.uuid, eng->sb.uuid, sizeof(h.uuid));
	ondisk_segment_header_encode(&h, buf);
}

int seg_header_decode(const struct engine *eng, const void *buf, struct segment_header *h)
{
	if (ondisk_segment_header_decode(buf, QUILL_BLOCK_SIZE, h) < 0 ||
	    memcmp(h->uuid, eng->sb.uuid, sizeof(h->uuid)) != 0)
		return -EINVAL;
	return 0;
}

/* ---- the mirror ---- */

void seg_mirror_set(struct engine *eng, const struct seg_mirror_ops *ops, void *ctx)
{
	eng->mirror = ops;
	eng->mirror_ctx = ctx;
}

/* One engine call done twice, locally and by the mirror: cb runs once both did, with
 * the first error (or the local result: the mirror's is 0). */
struct mirror_join {
	seg_cb cb;
	void *arg;
	int pending;
	int res;
	struct slot *slot; /* its local_writes counts this append's local half */
	struct engine *eng;
	bool both;         /* counted in eng->mirror_both: neither half came yet */
};

/* A half of j came: j no longer waits for two. */
static void join_half_came(struct mirror_join *j)
{
	if (j->both) {
		j->both = false;
		j->eng->mirror_both--;
	}
}

static void join_done(void *arg, int res)
{
	struct mirror_join *j = arg;

	/* the first error, else the local call's result (bytes written) */
	if (res < 0 ? j->res >= 0 : j->res == 0)
		j->res = res;
	if (--j->pending)
		return;
	j->cb(j->arg, j->res);
	free(j);
}

static struct mirror_join *join_new(seg_cb cb, void *arg)
{
	struct mirror_join *j = malloc(sizeof(*j));

	if (j)
		*j = (struct mirror_join){ .cb = cb, .arg = arg, .pending = 1 };
	return j;
}

/* The local half of a mirrored append is on the store (or failed). */
static void join_local_done(void *arg, int res)
{
	struct mirror_join *j = arg;

	j->slot->local_writes--;
	stages_mark("seg.local_done");
	join_half_came(j);
	join_done(j, res);
}

/* The mirror's half of an append: every holder has it (or it failed). */
static void join_mirror_done(void *arg, int res)
{
	struct mirror_join *j = arg;

	stages_mark("seg.copies_done");
	join_half_came(j);
	join_done(j, res);
}

/* After both halves were started with j (pending 3: each half, and the caller): drops
 * the caller's reference, with a half's refusal as the error. Both refused: nothing
 * will call back, the local refusal is returned; else 0 and cb runs exactly once. */
static int join_end(struct mirror_join *j, int local, int mirror)
{
	if (local < 0 && mirror < 0) {
		free(j);
		return local;
	}
	if (local < 0)
		join_done(j, local); /* the mirror's half still calls back: cb once */
	else if (mirror < 0)
		join_done(j, mirror);
	else
		join_done(j, 0); /* the reference this function held */
	return 0;
}

/* ---- I/O ---- */

int seg_append(struct engine *eng, uint32_t slot, uint32_t block, void *buf, uint32_t nblocks,
	       uint64_t seq, seg_cb cb, void *arg)
{
	struct iovec iov = { buf, (size_t)nblocks * QUILL_BLOCK_SIZE };
	struct mirror_join *j;
	int local, mirror;

	if (block == 0)
		header_encode(eng, slot, ONDISK_SEG_USED, seq, buf);
	/* a node without a mirror goes straight to the store; a slot out of range is the
	 * store's to refuse */
	if (!eng->mirror || slot >= eng->sb.segment_count || !eng->slots[slot].mirrored)
		return eng->segs->ops->writev(eng->segs, slot, block, &iov, 1, cb, arg);
	j = join_new(cb, arg);
	if (!j)
		return -ENOMEM;
	j->pending = 3; /* the local write, the mirror's, and this function until it returns */
	j->slot = &eng->slots[slot];
	j->slot->local_writes++;
	local = eng->segs->ops->writev(eng->segs, slot, block, &iov, 1, join_local_done, j);
	if (local < 0) {
		j->slot->local_writes--;
		j->pending--;
	}
	mirror = eng->mirror->append(eng->mirror_ctx, slot, block, &iov, 1, nblocks, false,
				     join_mirror_done, j);
	if (mirror < 0)
		j->pending--;
	stages_mark("seg.append_started");
	if (j->pending == 3) { /* both started, neither came yet: engine_wait_fd */
		j->eng = eng;
		j->both = true;
		eng->mirror_both++;
	}
	return join_end(j, local, mirror);
}

int seg_write(struct engine *eng, uint32_t slot, uint32_t block, const struct iovec *iov,
	      int iovcnt, seg_cb cb, void *arg)
{
	return eng->segs->ops->writev(eng->segs, slot, block, iov, iovcnt, cb, arg);
}

int seg_read(struct engine *eng, uint32_t slot, uint32_t block, const struct iovec *iov,
	     int iovcnt, seg_cb cb, void *arg)
{
	if (seg_is_remote(eng, slot))
		return -EREMOTE; /* no local copy: the caller reads the copies */
	return eng->segs->ops->readv(eng->segs, slot, block, iov, iovcnt, cb, arg);
}

/* A fetch's completion from the mirror: the slot is let go, then the caller's. */
static void fetch_done(struct seg_fetch *f, int res)
{
	struct engine *eng = f->eng;

	/* the mirror says it checked every block: never trust a border, once here for
	 * every caller; res is the first wanted block's error (the contract) */
	for (uint32_t i = 0; i < f->nblocks; i++) {
		struct seg_fetch_block *w = &f->want[i];

		if (w->dst && w->res == 0 && !f->no_crcs &&
		    crc32c(w->dst, QUILL_BLOCK_SIZE) != w->crc)
			w->res = -EILSEQ;
		if (w->dst && w->res < 0 && res == 0)
			res = w->res;
	}
	assert(eng->slots[f->slot].readers > 0);
	eng->slots[f->slot].readers--; /* as a read's end: a deferred release follows */
	eng->stats.fetch_requests += f->requests;
	f->cb(f->arg, res);
}

int seg_fetch(struct engine *eng, uint32_t slot, struct seg_fetch *f)
{
	struct slot *s = &eng->slots[slot];
	int r;

	assert(slot < eng->slot_cap && s->state != SLOT_FREE);
	assert(f->nblocks >= 1 && f->nblocks <= SEG_FETCH_MAX_BLOCKS && f->want && f->cb);
	assert(f->block + f->nblocks <= eng->segs->blocks_per_seg);
	if (!eng->mirror || !eng->mirror->fetch || s->held ||
	    !eng->mirror->wants(eng->mirror_ctx, s->family_uid))
		return -EOPNOTSUPP;
	f->eng = eng;
	f->uid = s->family_uid;
	f->sno = s->sno;
	f->slot = slot;
	f->remote = s->remote;
	f->done = fetch_done;
	f->requests = 0;
	for (uint32_t i = 0; i < f->nblocks; i++)
		f->want[i].res = f->want[i].dst ? -EIO : 0;
	r = eng->mirror->fetch(eng->mirror_ctx, f);
	if (r < 0)
		return r;
	s->readers++;
	eng->stats.fetches++;
	for (uint32_t i = 0; i < f->nblocks; i++)
		eng->stats.fetch_blocks += f->want[i].dst != NULL;
	return 0;
}

/* Is the mirror told of s's deletion? Not only when s was opened in this process: a
 * segment written before a restart, or adopted in a takeover, has copies and a record
 * elsewhere too whenever its family is mirrored now. A held slot is another node's. */
static bool delete_is_mirrored(struct engine *eng, const struct slot *s)
{
	if (!eng->mirror || s->held || s->dropped)
		return false;
	return s->mirrored || eng->mirror->wants(eng->mirror_ctx, s->family_uid);
}

int seg_delete(struct engine *eng, uint32_t slot, void *buf, seg_cb cb, void *arg)
{
	struct iovec iov = { buf, QUILL_BLOCK_SIZE };
	int r;

	/* a remote entry's number lies past the store: its release writes nothing
	 * (seg_remote_delete, checkpoint.c) */
	assert(!seg_is_remote(eng, slot));
	header_encode(eng, slot, ONDISK_SEG_FREE, 0, buf);
	r = eng->segs->ops->writev(eng->segs, slot, 0, &iov, 1, cb, arg);
	if (r == 0 && delete_is_mirrored(eng, &eng->slots[slot])) {
		/* the copies go too; the slot may hold another segment from now on */
		eng->slots[slot].mirrored = false;
		eng->mirror->deleted(eng->mirror_ctx, slot, eng->slots[slot].family_uid,
				     eng->slots[slot].sno);
	}
	return r;
}

int seg_flush_local(struct engine *eng, seg_cb cb, void *arg)
{
	return eng->segs->ops->flush(eng->segs, cb, arg);
}

int seg_flush(struct engine *eng, seg_cb cb, void *arg)
{
	struct mirror_join *j;
	int local, mirror;

	if (!eng->mirror)
		return seg_flush_local(eng, cb, arg);
	j = join_new(cb, arg);
	if (!j)
		return -ENOMEM;
	j->pending = 3;
	local = seg_flush_local(eng, join_done, j);
	if (local < 0)
		j->pending--;
	mirror = eng->mirror->flush(eng->mirror_ctx, join_done, j);
	if (mirror < 0)
		j->pending--;
	return join_end(j, local, mirror);
}

int seg_read_sync(struct engine *eng, uint32_t slot, uint32_t block, void *buf,
		  uint32_t nblocks)
{
	return eng->segs->ops->read_sync(eng->segs, slot, block, buf,
					 (size_t)nblocks * QUILL_BLOCK_SIZE);
}

int seg_delete_sync(struct engine *eng, uint32_t slot, void *buf)
{
	header_encode(eng, slot, ONDISK_SEG_FREE, 0, buf);
	return eng->segs->ops->write_sync(eng->segs, slot, 0, buf, QUILL_BLOCK_SIZE);
}

int seg_flush_sync(struct engine *eng)
{
	return eng->segs->ops->flush_sync(eng->segs);
}

int seg_zero_block_sync(struct engine *eng, uint32_t slot, uint32_t block)
{
	uint8_t *zero = seg_buf_alloc(QUILL_BLOCK_SIZE); /* zeroed */
	int r;

	if (!zero)
		return -ENOMEM;
	r = eng->segs->ops->write_sync(eng->segs, slot, block, zero, QUILL_BLOCK_SIZE);
	seg_buf_free(zero);
	return r;
}

/* Headers are read this many at a time, all in flight together: one after another, a
 * store of thousands of slots would spend its start-up waiting on each. */
#define LIST_BATCH 64u

struct list_batch {
	unsigned pending;
	int err;
};

static void header_read(void *arg, int res)
{
	struct list_batch *lb = arg;

	if (res < 0 && lb->err == 0)
		lb->err = res;
	lb->pending--;
}

/* Reads the headers of slots [first, first + n) into buf, one block each. */
static int read_headers(struct engine *eng, uint32_t first, uint32_t n, uint8_t *buf)
{
	struct list_batch lb = { 0 };
	int r = 0;

	for (uint32_t i = 0; i < n && r == 0; i++) {
		struct iovec iov = { buf + (size_t)i * QUILL_BLOCK_SIZE, QUILL_BLOCK_SIZE };

		r = seg_read(eng, first + i, 0, &iov, 1, header_read, &lb);
		if (r == 0)
			lb.pending++;
	}
	while (lb.pending) { /* even after a refused read: those in flight write into buf */
		int p = seg_poll(eng, -1);

		if (p < 0 && p != -EINTR && p != -ETIME && r == 0)
			r = p;
	}
	return r < 0 ? r : lb.err;
}

int seg_list_sync(struct engine *eng,
		  int (*fn)(void *arg, uint32_t slot, const struct segment_header *h), void *arg)
{
	uint8_t *buf = seg_buf_alloc((size_t)LIST_BATCH * QUILL_BLOCK_SIZE);
	int r = buf ? 0 : -ENOMEM;

	for (uint32_t first = 0; first < eng->sb.segment_count && r == 0; first += LIST_BATCH) {
		uint32_t n = eng->sb.segment_count - first < LIST_BATCH ? eng->sb.segment_count - first
									: LIST_BATCH;

		r = read_headers(eng, first, n, buf);
		for (uint32_t i = 0; i < n && r == 0; i++) {
			struct segment_header h;
			const uint8_t *b = buf + (size_t)i * QUILL_BLOCK_SIZE;

			r = fn(arg, first + i, seg_header_decode(eng, b, &h) == 0 ? &h : NULL);
		}
	}
	seg_buf_free(buf);
	return r;
}

/* ---- completions ---- */

int seg_poll(struct engine *eng, int timeout_ms)
{
	return eng->segs->ops->poll(eng->segs, timeout_ms);
}

int seg_reap(struct engine *eng)
{
	return eng->segs->ops->reap(eng->segs);
}

int seg_wait_fd(struct engine *eng, struct loop_wait *w, int timeout_ms)
{
	return eng->segs->ops->wait_fd(eng->segs, w, timeout_ms);
}

int seg_event_fd(const struct engine *eng)
{
	return eng->segs->ops->event_fd(eng->segs);
}

unsigned seg_inflight(const struct engine *eng)
{
	return eng->segs->ops->inflight(eng->segs);
}

void seg_close(struct segs *sg)
{
	if (sg)
		sg->ops->close(sg);
}

/* ---- the segment table in the checkpoint ---- */

/* What the table says of slot i now: a record (used > 0) if its segment is settled —
 * sealed, every batch in it retired with a seq at most the checkpoint's, not broken,
 * no LAYER entry (those are noted by the walk, catalog.c) — else none (used 0). */
static struct slot_record settled_record(const struct engine *eng, uint32_t i, uint64_t seq)
{
	const struct slot *s = &eng->slots[i];

	if (s->state != SLOT_SEALED || s->used == 0 || s->pending || s->broken || s->freeing ||
	    s->records || s->last_seq > seq || s->held || /* "H" records are held copies' */
	    s->dropped) /* its record is its remote entry's (same key: deleted first) */
		return (struct slot_record){ 0 };
	/* carried trims (the cleaner put what still counts in a TOMB block elsewhere, durable
	 * before this record commits: the checkpoint syncs the store first) pin nothing:
	 * after a restart the slot is not taken for its trims again */
	return (struct slot_record){ .family_uid = s->family_uid, .sno = s->sno,
				     .volume_id = s->volume_id, .generation = s->generation,
				     .last_seq = s->last_seq, .used = s->used,
				     .tombs = s->carried ? 0 : s->tombs, .slot = i };
}

static int table_alloc(struct engine *eng)
{
	if (!eng->seg_table)
		eng->seg_table = calloc(eng->slot_cap ? eng->slot_cap : 1,
					sizeof(*eng->seg_table));
	return eng->seg_table ? 0 : -ENOMEM;
}

static void put_slot_record(struct meta_batch *mb, const struct slot_record *r)
{
	uint8_t key[ONDISK_SLOT_KEY_LEN];
	struct ondisk_slot_record rec;

	ondisk_slot_key(r->family_uid, r->sno, key);
	ondisk_slot_record_encode(r, &rec);
	meta_batch_put(mb, key, sizeof(key), &rec, sizeof(rec));
}

static void delete_slot_record(struct meta_batch *mb, const struct slot_record *r)
{
	uint8_t key[ONDISK_SLOT_KEY_LEN];

	ondisk_slot_key(r->family_uid, r->sno, key);
	meta_batch_delete(mb, key, sizeof(key));
}

/* Deletes every key of the one-letter prefix p: what the metadata holds there is not
 * known (a checkpoint that did not land). */
static void delete_prefix(struct meta_batch *mb, char p)
{
	const uint8_t begin[1] = { (uint8_t)p }, end[1] = { (uint8_t)(p + 1) };

	meta_batch_delete_range(mb, begin, sizeof(begin), end, sizeof(end));
}

/* The families' counters that changed. A family without a layer any more loses its
 * record (nothing opens a segment of it again); its entry stays, so that its uid is
 * not drawn again while this engine runs (start-up notes the headers that name it). */
static void capture_families(struct engine *eng, struct meta_batch *mb, bool unsure)
{
	if (unsure)
		delete_prefix(mb, 'F');
	for (size_t i = 0; i < eng->nfamilies; i++) {
		struct seg_family *f = &eng->families[i];
		uint8_t key[ONDISK_FAMILY_KEY_LEN];
		struct ondisk_family_record rec;

		ondisk_family_key(f->uid, key);
		if (!f->nlayers) {
			if (f->saved_sno && !unsure)
				meta_batch_delete(mb, key, sizeof(key));
			f->saved_sno = 0;
		} else if (f->next_sno > f->saved_sno || (unsure && family_floor(f))) {
			/* never below a reservation (engine_family_reserve_sno): numbers
			 * recorded elsewhere may lie between */
			ondisk_family_record_encode(family_floor(f), &rec);
			meta_batch_put(mb, key, sizeof(key), &rec, sizeof(rec));
			f->saved_sno = family_floor(f);
		}
	}
}

void seg_families_put(struct engine *eng, struct meta_batch *mb)
{
	for (size_t i = 0; i < eng->nfamilies; i++) {
		struct seg_family *f = &eng->families[i];
		uint8_t key[ONDISK_FAMILY_KEY_LEN];
		struct ondisk_family_record rec;

		if (!f->nlayers || !family_floor(f))
			continue; /* no layer, or never a segment: no record */
		ondisk_family_key(f->uid, key);
		ondisk_family_record_encode(family_floor(f), &rec);
		meta_batch_put(mb, key, sizeof(key), &rec, sizeof(rec));
		f->saved_sno = family_floor(f);
	}
}

int seg_table_capture(struct engine *eng, struct meta_batch *mb, uint64_t seq)
{
	bool unsure = eng->seg_table_unsure;
	int r = table_alloc(eng);

	if (r < 0)
		return r;
	if (unsure)
		delete_prefix(mb, 'T');
	/* the store's slots first: a dropped slot's delete goes before its remote entry's
	 * put of the same key */
	for (uint32_t i = 0; i < eng->slot_cap; i++) {
		struct slot_record now = settled_record(eng, i, seq);
		struct slot_record *was = &eng->seg_table[i];

		if (!unsure && !memcmp(&now, was, sizeof(now)))
			continue;
		/* the key is the segment: another segment in the slot has another key */
		if (was->used && !unsure &&
		    (!now.used || was->family_uid != now.family_uid || was->sno != now.sno))
			delete_slot_record(mb, was);
		if (now.used)
			put_slot_record(mb, &now);
		*was = now;
	}
	capture_families(eng, mb, unsure);
	eng->seg_table_unsure = false;
	return 0;
}

int seg_table_put(struct engine *eng, struct meta_batch *mb, uint32_t slot)
{
	const struct slot *s = &eng->slots[slot];
	struct slot_record now = { .family_uid = s->family_uid, .sno = s->sno,
				   .volume_id = s->volume_id, .generation = s->generation,
				   .last_seq = s->last_seq, .used = s->used, .tombs = s->tombs,
				   .slot = slot };
	int r = table_alloc(eng);

	if (r < 0)
		return r;
	put_slot_record(mb, &now);
	/* a checkpoint then finds it stored; an adoption that fails frees the entry, and
	 * the next checkpoint deletes the record it would have had */
	eng->seg_table[slot] = now;
	return 0;
}

void seg_table_unsure(struct engine *eng)
{
	eng->seg_table_unsure = true;
}

/* A "T" record: kept at its slot, unless one of a later use of the slot is there. A
 * record that does not decode is no record: that segment's log is walked. */
static int load_slot_record(struct engine *eng, const void *key, size_t klen,
			    const void *val, size_t vlen)
{
	struct slot_record rec;

	if (ondisk_slot_record_decode(val, vlen, &rec) < 0 ||
	    ondisk_slot_key_decode(key, klen, &rec.family_uid, &rec.sno) < 0 ||
	    rec.slot >= eng->slot_cap)
		return 0;
	if (eng->seg_table[rec.slot].used)
		eng->seg_table_unsure = true; /* the next checkpoint drops the other one */
	if (rec.generation >= eng->seg_table[rec.slot].generation)
		eng->seg_table[rec.slot] = rec;
	return 0;
}

/* An "F" record: the family's counter restarts at least there. */
static int load_family_record(struct engine *eng, const void *key, size_t klen,
			      const void *val, size_t vlen)
{
	struct seg_family *f;
	uint64_t uid;
	uint32_t next;

	if (ondisk_family_key_decode(key, klen, &uid) < 0 ||
	    ondisk_family_record_decode(val, vlen, &next) < 0)
		return 0; /* the headers still give every number in use */
	f = family_restart(eng, uid, next);
	if (!f)
		return -ENOMEM;
	f->saved_sno = next;
	return 0;
}

int eng_load_prefix(struct engine *eng, char p,
		    int (*load)(struct engine *eng, const void *key, size_t klen,
				const void *val, size_t vlen))
{
	struct meta_iter *it;
	const char prefix[1] = { p };
	int r = meta_iter_create(eng->meta, prefix, 1, &it);

	for (; r == 0 && meta_iter_valid(it); meta_iter_next(it)) {
		size_t klen, vlen;
		const void *key = meta_iter_key(it, &klen);
		const void *val = meta_iter_value(it, &vlen);

		r = load(eng, key, klen, val, vlen);
	}
	if (r == 0)
		r = meta_iter_status(it);
	meta_iter_destroy(it);
	return r;
}

int seg_table_load(struct engine *eng)
{
	int r = table_alloc(eng);

	if (r == 0)
		r = eng_load_prefix(eng, 'T', load_slot_record);
	if (r == 0)
		r = eng_load_prefix(eng, 'F', load_family_record);
	return r;
}

bool seg_table_restore(struct engine *eng, uint32_t slot, const struct segment_header *h,
		       uint64_t ckpt_seq, uint64_t volume_id)
{
	const struct slot_record *rec = eng->seg_table ? &eng->seg_table[slot] : NULL;
	struct slot to = eng->slots[slot], *s = &to;

	/* the same segment (its id, and the same use of the slot: generations are never
	 * reused), and one the checkpoint that start-up loaded covers whole: a record a
	 * later checkpoint left behind without its "C" record (RocksDB persisted part of
	 * it) does not count */
	if (!rec || !rec->used || h->state != ONDISK_SEG_USED || rec->generation != h->generation ||
	    rec->family_uid != h->family_uid || rec->sno != h->sno || rec->last_seq > ckpt_seq)
		return false;
	s->state = SLOT_SEALED;
	s->volume_id = volume_id;
	s->family_uid = rec->family_uid;
	s->sno = rec->sno;
	s->generation = rec->generation;
	s->used = rec->used;
	s->first_seq = h->first_seq; /* its first batch's, as a walk finds: the run's own
					value was a lower bound */
	s->last_seq = rec->last_seq;
	s->tombs = rec->tombs;
	s->records = 0;
	seg_slot_set(eng, slot, &to);
	return true;
}
