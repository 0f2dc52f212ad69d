/* engine/held.c — segments held for other nodes (engine.h, "segments held for other
 * nodes"; docs/engine.md, "Held segments").
 *
 * A holder keeps a byte-for-byte copy of another node's segment in a slot of its own.
 * The slot is the segment layer's (seg_hold: OPEN or SEALED, marked held, volume_id 0)
 * and every byte goes through the segment layer's I/O; the cleaner, the checkpoint's
 * free and segment table, prezero and the census leave held slots alone (they test
 * slot.held). What this file keeps is the held table: by (family uid, segment number),
 * the slot, the epoch it was opened under, open or sealed, and how far it is written;
 * and each family's fence, the highest epoch seen.
 *
 * Persistence: an "H" record per copy and an "E" record per family (docs/format.md),
 * committed with META_SYNC on the metadata thread by a job (job.c, metacommit.c): the
 * loop never waits on RocksDB. An open copy's record holds no length: after a restart
 * the length is found again by walking the copy's log with replay's walker (the
 * owner's header, its generation, the summaries' CRCs), never trusted from memory.
 *
 * Length while running: `length` is the prefix whose writes all completed; `ahead` the
 * end of the furthest write accepted (a write may start anywhere up to it: an owner
 * pipelines its appends). Writes that complete out of order wait in `done` until the
 * prefix reaches them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/array.h"
#include "common/err.h"
#include "common/log.h"
#include "engine/engine_internal.h"
#include "engine/logcheck.h"
#include "engine/segtab.h"
#include "metadata/meta.h"

struct held_range {
	uint32_t start, end;
};

/* One held copy. Allocated on its own: I/O completions keep a pointer to it, and an
 * entry is freed only by a delete, once none is in flight. */
struct held {
	uint64_t uid;
	uint32_t sno;
	uint64_t epoch;
	uint32_t slot;
	uint32_t length;   /* blocks written from 0, every write of them completed */
	uint32_t ahead;    /* end of the furthest write accepted (>= length) */
	bool sealed;
	bool opening;      /* its "H" record is being committed: not held yet */
	bool closing;      /* a seal or a delete works on it: no new writes */
	bool deleting;     /* a delete: no new reads either */
	uint32_t sealing;  /* a seal under way: its length + 1 (0: none) */
	unsigned writes, reads; /* in flight */
	struct held_range *done; /* completed writes beyond length */
	size_t ndone, capdone;
};

struct held_family {
	uint64_t uid, epoch;
};

struct eng_held {
	struct segtab tab; /* of struct held */
	struct held_family *fam;
	size_t nfam, capfam;
};

/* ---- the table ---- */

static void held_key(const void *e, uint64_t *uid, uint32_t *sno)
{
	const struct held *h = e;

	*uid = h->uid;
	*sno = h->sno;
}

static struct held *held_find(const struct engine *eng, uint64_t uid, uint32_t sno)
{
	return eng->held ? segtab_find(&eng->held->tab, held_key, uid, sno) : NULL;
}

/* The i-th copy in (uid, sno) order (i < eng->held->tab.n). */
static struct held *held_at(const struct engine *eng, size_t i)
{
	return eng->held->tab.v[i];
}

static size_t held_count(const struct engine *eng)
{
	return eng->held ? eng->held->tab.n : 0;
}

static int table_get(struct engine *eng)
{
	if (!eng->held)
		eng->held = calloc(1, sizeof(*eng->held));
	return eng->held ? 0 : -ENOMEM;
}

/* A new entry for (uid, sno), which must not be there. NULL without memory. */
static struct held *held_add(struct engine *eng, uint64_t uid, uint32_t sno)
{
	struct held *h;

	if (table_get(eng) < 0)
		return NULL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->uid = uid;
	h->sno = sno;
	if (segtab_insert(&eng->held->tab, held_key, h) < 0) {
		free(h);
		return NULL;
	}
	return h;
}

static void held_remove(struct engine *eng, struct held *h)
{
	segtab_remove(&eng->held->tab, held_key, h);
	free(h->done);
	free(h);
}

static struct held_family *family_get(const struct engine *eng, uint64_t uid)
{
	for (size_t i = 0; eng->held && i < eng->held->nfam; i++)
		if (eng->held->fam[i].uid == uid)
			return &eng->held->fam[i];
	return NULL;
}

static int family_set(struct engine *eng, uint64_t uid, uint64_t epoch)
{
	struct held_family *f = family_get(eng, uid);
	struct eng_held *t;

	if (f) {
		if (epoch > f->epoch)
			f->epoch = epoch;
		return 0;
	}
	if (table_get(eng) < 0)
		return -ENOMEM;
	t = eng->held;
	if (ARRAY_GROW(t->fam, t->capfam, t->nfam, 16) < 0)
		return -ENOMEM;
	t->fam[t->nfam++] = (struct held_family){ uid, epoch };
	return 0;
}

uint64_t engine_held_epoch(const struct engine *eng, uint64_t uid)
{
	const struct held_family *f = family_get(eng, uid);

	return f ? f->epoch : 0;
}

uint32_t engine_segment_blocks(const struct engine *eng)
{
	return eng->blocks_per_seg;
}

void eng_held_free(struct engine *eng)
{
	struct eng_held *t = eng->held;

	eng_frag_free(eng);

	if (!t)
		return;
	for (size_t i = 0; i < t->tab.n; i++) {
		free(held_at(eng, i)->done);
		free(held_at(eng, i));
	}
	segtab_release(&t->tab);
	free(t->fam);
	free(t);
	eng->held = NULL;
}

static void held_info(const struct held *h, struct engine_held_info *out)
{
	*out = (struct engine_held_info){ .uid = h->uid, .sno = h->sno, .epoch = h->epoch,
					  .sealed = h->sealed, .length = h->length,
					  .slot = h->slot };
}

int engine_held_stat(const struct engine *eng, uint64_t uid, uint32_t sno,
		     struct engine_held_info *out)
{
	const struct held *h = held_find(eng, uid, sno);

	if (!h || h->opening)
		return -ENOENT;
	held_info(h, out);
	return 0;
}

/* The copies from index i on, up to (uid, last) included, to fn (held_list's). */
static int held_list_from(const struct engine *eng, size_t i, uint64_t uid, uint32_t last,
			  int (*fn)(void *arg, const struct engine_held_info *h), void *arg)
{
	for (; i < held_count(eng); i++) {
		const struct held *h = held_at(eng, i);
		struct engine_held_info info;
		int r;

		if (h->uid > uid || (h->uid == uid && h->sno > last))
			break;
		if (h->opening)
			continue;
		held_info(h, &info);
		r = fn(arg, &info);
		if (r)
			return r;
	}
	return 0;
}

int engine_held_list(const struct engine *eng,
		     int (*fn)(void *arg, const struct engine_held_info *h), void *arg)
{
	return held_list_from(eng, 0, UINT64_MAX, UINT32_MAX, fn, arg);
}

int engine_held_list_family(const struct engine *eng, uint64_t uid, uint32_t first,
			    uint32_t last, int (*fn)(void *arg, const struct engine_held_info *h),
			    void *arg)
{
	bool found;

	if (!eng->held)
		return 0;
	return held_list_from(eng, segtab_pos(&eng->held->tab, held_key, uid, first, &found),
			      uid, last, fn, arg);
}

/* ---- records ---- */

void eng_held_put(struct meta_batch *mb, uint64_t uid, uint32_t sno,
		  const struct held_record *r)
{
	uint8_t key[ONDISK_HELD_KEY_LEN];
	struct ondisk_held_record rec;

	ondisk_held_key(uid, sno, key);
	ondisk_held_record_encode(r, &rec);
	meta_batch_put(mb, key, sizeof(key), &rec, sizeof(rec));
}

static void put_held_record(struct meta_batch *mb, const struct held *h, bool sealed,
			    uint32_t length)
{
	struct held_record r = { .slot = h->slot, .epoch = h->epoch, .sealed = sealed,
				 .length = length };

	eng_held_put(mb, h->uid, h->sno, &r);
}

/* ---- management: jobs whose step commits a record ---- */

enum held_op { HELD_OPEN, HELD_SEAL, HELD_DELETE, HELD_RAISE };

struct held_job {
	struct eng_job job; /* first: job.c frees it with free() */
	enum held_op op;
	uint64_t uid;
	uint32_t sno;
	uint64_t epoch;
	uint32_t length;
	bool owns;          /* this job set the entry's opening, closing or deleting;
			       an open or a seal without it is a retry of one under way */
	struct meta_batch *mb;
	uint8_t *cut;       /* seal: the zero block written at `length` */
};

static void held_job_release(struct eng_job *job)
{
	struct held_job *hj = (struct held_job *)job;

	if (hj->mb)
		meta_batch_destroy(hj->mb);
	seg_buf_free(hj->cut);
	free(hj);
}

/* In a step: commits hj->mb (made on the first call by put); ENG_JOB_WAIT meanwhile. */
static int held_commit(struct held_job *hj, void (*put)(struct held_job *hj))
{
	if (!hj->mb) {
		int r = meta_batch_create(&hj->mb);

		if (r < 0)
			return r;
		put(hj);
	}
	return eng_job_meta_commit(&hj->job, &hj->mb);
}

static void put_open(struct held_job *hj)
{
	put_held_record(hj->mb, held_find(hj->job.eng, hj->uid, hj->sno), false, 0);
}

/* The open failed or was fenced: the slot and the entry go. */
static int open_undo(struct engine *eng, struct held *h, int err)
{
	seg_release(eng, h->slot);
	held_remove(eng, h);
	return err;
}

static int open_step(struct held_job *hj)
{
	struct engine *eng = hj->job.eng;
	struct held *h = held_find(eng, hj->uid, hj->sno);
	int r;

	if (!hj->owns) /* a retry: answered once the first open is */
		return !h ? -EIO : h->opening ? ENG_JOB_WAIT : 0;
	/* the fence may have risen while the job waited to commit */
	if (!hj->mb && hj->epoch < engine_held_epoch(eng, hj->uid))
		return open_undo(eng, h, -ESTALE);
	r = held_commit(hj, put_open);
	if (r == ENG_JOB_WAIT)
		return r;
	if (r < 0)
		return open_undo(eng, h, r);
	h->opening = false;
	log_msg(LOG_DEBUG, ENG_LOG, "holding segment %llx.%u in slot %u (epoch %llu)",
		(unsigned long long)h->uid, h->sno, h->slot, (unsigned long long)h->epoch);
	return 0;
}

static void put_seal(struct held_job *hj)
{
	put_held_record(hj->mb, held_find(hj->job.eng, hj->uid, hj->sno), true, hj->length);
}

void eng_held_put_drop(struct meta_batch *mb, uint64_t uid, uint32_t sno)
{
	uint8_t key[ONDISK_HELD_KEY_LEN];

	ondisk_held_key(uid, sno, key);
	meta_batch_delete(mb, key, sizeof(key));
}

static void put_delete(struct held_job *hj)
{
	eng_held_put_drop(hj->mb, hj->uid, hj->sno);
}

static void put_epoch(struct held_job *hj)
{
	uint8_t key[ONDISK_EPOCH_KEY_LEN];
	struct ondisk_epoch_record rec;

	ondisk_epoch_key(hj->uid, key);
	ondisk_epoch_record_encode(hj->epoch, &rec);
	meta_batch_put(hj->mb, key, sizeof(key), &rec, sizeof(rec));
}

/* Seal: wait for the writes in flight, cut the log at `length` for good (a zero block
 * there, made durable, so that whoever replays the copy stops there), then commit. */
enum { SEAL_DRAIN, SEAL_CUT, SEAL_CUT_WAIT, SEAL_FLUSH, SEAL_COMMIT };

static int seal_fail(struct held *h, int err)
{
	h->closing = false;
	h->sealing = 0;
	return err;
}

static int seal_cut(struct held_job *hj, struct held *h)
{
	hj->cut = seg_buf_alloc(QUILL_BLOCK_SIZE); /* zeroed */
	if (!hj->cut)
		return -ENOMEM;
	eng_job_seg_io(&hj->job, true, h->slot, hj->length, hj->cut, 1);
	return 0;
}

/* A seal's wait that returned r: on to state `next` once it is done; a failure ends
 * the seal. */
static int seal_next(struct held_job *hj, struct held *h, int r, unsigned next)
{
	r = eng_job_next(&hj->job, r, next);
	return r < 0 && r != ENG_JOB_WAIT ? seal_fail(h, r) : r;
}

static int seal_step(struct held_job *hj)
{
	struct engine *eng = hj->job.eng;
	struct held *h = held_find(eng, hj->uid, hj->sno);
	int r;

	if (!h)
		return -ENOENT;
	switch (hj->job.pc) {
	case SEAL_DRAIN:
		if (!hj->owns) { /* a retry: answered once the seal it repeats is */
			if (h->closing)
				return ENG_JOB_WAIT;
			return !h->sealed ? -EIO : h->length == hj->length ? 0 : -EROFS;
		}
		if (h->writes)
			return ENG_JOB_WAIT;
		if (hj->length > h->length)
			return seal_fail(h, -ERANGE);
		hj->job.pc = h->ahead > hj->length && hj->length < eng->blocks_per_seg ? SEAL_CUT
										: SEAL_COMMIT;
		return ENG_JOB_WAIT;
	case SEAL_CUT:
		return seal_next(hj, h, seal_cut(hj, h), SEAL_CUT_WAIT);
	case SEAL_CUT_WAIT:
		return seal_next(hj, h, eng_job_wait_io(&hj->job), SEAL_FLUSH);
	case SEAL_FLUSH:
		return seal_next(hj, h, eng_job_wait_local_flush(&hj->job), SEAL_COMMIT);
	default:
		r = held_commit(hj, put_seal);
		if (r == ENG_JOB_WAIT)
			return r;
		if (r < 0)
			return seal_fail(h, r);
		h->sealed = true;
		h->closing = false;
		h->sealing = 0;
		h->length = h->ahead = hj->length;
		h->ndone = 0;
		eng->slots[h->slot].used = hj->length;
		seg_seal(eng, h->slot);
		return 0;
	}
}

static int delete_step(struct held_job *hj)
{
	struct engine *eng = hj->job.eng;
	struct held *h = held_find(eng, hj->uid, hj->sno);
	int r;

	if (!h)
		return 0; /* not held (any more): a retry */
	if (!hj->owns) {
		if (h->opening || h->closing)
			return ENG_JOB_WAIT; /* another open, seal or delete first */
		h->closing = h->deleting = true;
		hj->owns = true;
	}
	if (h->writes || h->reads)
		return ENG_JOB_WAIT;
	r = held_commit(hj, put_delete);
	if (r == ENG_JOB_WAIT)
		return r;
	if (r < 0) {
		h->closing = h->deleting = false;
		return r;
	}
	/* no FREE header: the copy's header is another store's, which start-up takes for
	 * a free slot once no "H" record names it */
	seg_release(eng, h->slot);
	held_remove(eng, h);
	return 0;
}

static int raise_step(struct held_job *hj)
{
	struct engine *eng = hj->job.eng;
	int r;

	/* commits are made one at a time: a higher raise may have landed meanwhile */
	if (!hj->mb && hj->epoch <= engine_held_epoch(eng, hj->uid))
		return 0;
	r = held_commit(hj, put_epoch);
	if (r == ENG_JOB_WAIT || r < 0)
		return r;
	return family_set(eng, hj->uid, hj->epoch);
}

static int held_step(struct eng_job *job)
{
	struct held_job *hj = (struct held_job *)job;

	switch (hj->op) {
	case HELD_OPEN:
		return open_step(hj);
	case HELD_SEAL:
		return seal_step(hj);
	case HELD_DELETE:
		return delete_step(hj);
	default:
		return raise_step(hj);
	}
}

static int held_job_start(struct engine *eng, enum held_op op, uint64_t uid, uint32_t sno,
			  uint64_t epoch, uint32_t length, bool owns, engine_cb cb, void *arg)
{
	struct held_job *hj = calloc(1, sizeof(*hj));

	if (!hj)
		return -ENOMEM;
	*hj = (struct held_job){ .op = op, .uid = uid, .sno = sno, .epoch = epoch,
				 .length = length, .owns = owns };
	hj->job.release = held_job_release;
	return eng_job_start(eng, &hj->job, held_step, cb, arg);
}

int engine_held_open_async(struct engine *eng, uint64_t uid, uint32_t sno, uint64_t epoch,
			   engine_cb cb, void *arg)
{
	struct held *h;
	uint32_t slot;
	int r;

	if (uid == 0 || !cb)
		return -EINVAL;
	if (epoch < engine_held_epoch(eng, uid))
		return -ESTALE;
	h = held_find(eng, uid, sno);
	if (h)
		return h->deleting ? -EBUSY
				   : held_job_start(eng, HELD_OPEN, uid, sno, epoch, 0, false,
						    cb, arg);
	r = seg_hold(eng, uid, sno, &slot);
	if (r < 0)
		return r;
	h = held_add(eng, uid, sno);
	if (!h) {
		seg_release(eng, slot);
		return -ENOMEM;
	}
	h->slot = slot;
	h->epoch = epoch;
	h->opening = true;
	r = held_job_start(eng, HELD_OPEN, uid, sno, epoch, 0, true, cb, arg);
	if (r < 0)
		open_undo(eng, h, r);
	return r;
}

int engine_held_seal_async(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t length,
			   engine_cb cb, void *arg)
{
	struct held *h = held_find(eng, uid, sno);
	int r;

	if (!h || h->opening || h->deleting)
		return -ENOENT;
	/* the same seal again is a retry (answered with the first); another length is a
	 * conflict */
	if (h->sealed || (h->closing && h->sealing))
		return (h->sealed ? h->length : h->sealing - 1) == length
			       ? held_job_start(eng, HELD_SEAL, uid, sno, 0, length, false, cb,
						arg)
			       : -EROFS;
	if (h->closing)
		return -EBUSY;
	if (length > h->ahead || length > eng->blocks_per_seg)
		return -ERANGE;
	h->closing = true; /* writes are refused from now on */
	h->sealing = length + 1;
	r = held_job_start(eng, HELD_SEAL, uid, sno, 0, length, true, cb, arg);
	if (r < 0)
		h->closing = false, h->sealing = 0;
	return r;
}

int engine_held_delete_async(struct engine *eng, uint64_t uid, uint32_t sno, engine_cb cb,
			     void *arg)
{
	return held_job_start(eng, HELD_DELETE, uid, sno, 0, 0, false, cb, arg);
}

int engine_held_flush(struct engine *eng, engine_cb cb, void *arg)
{
	if (!cb)
		return -EINVAL;
	return seg_flush_local(eng, cb, arg);
}

int engine_held_epoch_raise_async(struct engine *eng, uint64_t uid, uint64_t epoch,
				  engine_cb cb, void *arg)
{
	if (uid == 0)
		return -EINVAL;
	return held_job_start(eng, HELD_RAISE, uid, 0, epoch, 0, false, cb, arg);
}

/* ---- I/O ---- */

struct held_io {
	struct engine *eng;
	struct held *h;
	uint32_t block, nblocks;
	engine_cb cb;
	void *arg;
	uint8_t *bounce;          /* the store needs aligned buffers: a copy, or NULL */
	struct iovec *iov;        /* a bounced read's destination (a copy of the caller's
				     iovec array, which need not outlive the call) */
	int iovcnt;
};

static bool iov_aligned(const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++)
		if ((uintptr_t)iov[i].iov_base % SEG_ALIGN || iov[i].iov_len % SEG_ALIGN)
			return false;
	return true;
}

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
	size_t n = 0;

	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

static void iov_copy(uint8_t *dst, const struct iovec *iov, int iovcnt, bool to_iov)
{
	for (int i = 0; i < iovcnt; i++) {
		if (to_iov)
			memcpy(iov[i].iov_base, dst, iov[i].iov_len);
		else
			memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
}

/* The checks both directions share: the entry, or NULL and *err. */
static struct held *io_entry(struct engine *eng, bool write, uint64_t uid, uint32_t sno,
			     uint32_t block, const struct iovec *iov, int iovcnt, uint32_t nblocks,
			     engine_cb cb, int *err)
{
	struct held *h = held_find(eng, uid, sno);

	*err = 0;
	if (!cb)
		*err = -EINVAL;
	else if (!h || h->opening || h->deleting)
		*err = -ENOENT;
	else if (write && (h->sealed || h->closing))
		*err = -EROFS;
	else if (nblocks == 0 || iovcnt <= 0 ||
		 iov_total(iov, iovcnt) != (size_t)nblocks * ENGINE_BLOCK_SIZE)
		*err = -EINVAL;
	else if ((uint64_t)block + nblocks > eng->blocks_per_seg)
		*err = -EINVAL;
	return *err ? NULL : h;
}

static void io_free(struct held_io *io)
{
	seg_buf_free(io->bounce);
	free(io->iov);
	free(io);
}

static void io_end(struct held_io *io, int res)
{
	engine_cb cb = io->cb;
	void *arg = io->arg;

	io_free(io);
	cb(arg, res < 0 ? res : 0);
}

/* A write of [start, end) completed: the written prefix grows over it, and over the
 * completed writes it joins. */
static void length_grow(struct held *h, uint32_t start, uint32_t end)
{
	bool grew;

	if (h->sealed)
		return; /* the seal fixed the length (a seal under way waits for this write) */
	if (start > h->length) {
		if (ARRAY_GROW(h->done, h->capdone, h->ndone, 8) == 0)
			h->done[h->ndone++] = (struct held_range){ start, end };
		return; /* without memory: a retry of it counts */
	}
	if (end > h->length)
		h->length = end;
	do {
		grew = false;
		for (size_t i = 0; i < h->ndone;) {
			if (h->done[i].start > h->length) {
				i++;
				continue;
			}
			if (h->done[i].end > h->length)
				h->length = h->done[i].end;
			h->done[i] = h->done[--h->ndone];
			grew = true;
		}
	} while (grew);
}

static void held_written(void *arg, int res)
{
	struct held_io *io = arg;
	struct held *h = io->h;

	h->writes--;
	io->eng->held_writes--;
	if (res >= 0) {
		length_grow(h, io->block, io->block + io->nblocks);
		/* the background flush's pacing counts held copies' bytes like the log's */
		io->eng->unsynced_bytes += (uint64_t)io->nblocks * ENGINE_BLOCK_SIZE;
	} else {
		LOG_RATELIMITED(LOG_ERROR, ENG_LOG, "held segment %llx.%u: write of %u blocks "
				"at %u failed: %s", (unsigned long long)h->uid, h->sno,
				io->nblocks, io->block, err_str(-res));
	}
	io_end(io, res);
}

static void held_read_done(void *arg, int res)
{
	struct held_io *io = arg;

	io->h->reads--;
	io->eng->held_reads--;
	if (res >= 0 && io->bounce)
		iov_copy(io->bounce, io->iov, io->iovcnt, true);
	io_end(io, res);
}

/* Submits a write or a read of h's slot, through a bounce buffer if the store cannot
 * take iov as it is (unaligned). */
static int io_start(struct engine *eng, struct held *h, bool write, uint32_t block,
		    const struct iovec *iov, int iovcnt, uint32_t nblocks, engine_cb cb,
		    void *arg)
{
	struct held_io *io = calloc(1, sizeof(*io));
	struct iovec one;
	int r;

	if (!io)
		return -ENOMEM;
	*io = (struct held_io){ .eng = eng, .h = h, .block = block, .nblocks = nblocks,
				.cb = cb, .arg = arg, .iovcnt = iovcnt };
	if (!iov_aligned(iov, iovcnt)) {
		io->bounce = seg_buf_alloc((size_t)nblocks * ENGINE_BLOCK_SIZE);
		if (!write)
			io->iov = malloc((size_t)iovcnt * sizeof(*iov));
		if (!io->bounce || (!write && !io->iov)) {
			io_free(io);
			return -ENOMEM;
		}
		if (write)
			iov_copy(io->bounce, iov, iovcnt, false);
		else
			memcpy(io->iov, iov, (size_t)iovcnt * sizeof(*iov));
		one = (struct iovec){ io->bounce, (size_t)nblocks * ENGINE_BLOCK_SIZE };
		iov = &one;
		iovcnt = 1;
	}
	r = write ? seg_write(eng, h->slot, block, iov, iovcnt, held_written, io)
		  : seg_read(eng, h->slot, block, iov, iovcnt, held_read_done, io);
	if (r < 0) {
		io_free(io);
		return r;
	}
	if (write) {
		h->writes++;
		eng->held_writes++;
	} else {
		h->reads++;
		eng->held_reads++;
	}
	return 0;
}

int engine_held_write(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t block,
		      const struct iovec *iov, int iovcnt, uint32_t nblocks, engine_cb cb,
		      void *arg)
{
	int r;
	struct held *h = io_entry(eng, true, uid, sno, block, iov, iovcnt, nblocks, cb, &r);

	if (!h)
		return r;
	if (block > h->ahead)
		return -ERANGE; /* a hole: the owner must send what comes before first */
	r = io_start(eng, h, true, block, iov, iovcnt, nblocks, cb, arg);
	if (r < 0)
		return r;
	if (block + nblocks > h->ahead)
		h->ahead = block + nblocks;
	return 0;
}

int engine_held_read(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t block,
		     const struct iovec *iov, int iovcnt, uint32_t nblocks, engine_cb cb,
		     void *arg)
{
	int r;
	struct held *h = io_entry(eng, false, uid, sno, block, iov, iovcnt, nblocks, cb, &r);

	if (!h)
		return r;
	if ((uint64_t)block + nblocks > h->length)
		return -ERANGE;
	return io_start(eng, h, false, block, iov, iovcnt, nblocks, cb, arg);
}

/* ---- start-up ---- */

static int load_epoch(struct engine *eng, const void *key, size_t klen, const void *val,
		      size_t vlen)
{
	uint64_t uid, epoch;

	if (ondisk_epoch_key_decode(key, klen, &uid) < 0 ||
	    ondisk_epoch_record_decode(val, vlen, &epoch) < 0) {
		log_msg(LOG_ERROR, ENG_LOG, "a held family's epoch record is damaged: ignored "
			"(its fence is lower until the owner raises it again)");
		return 0;
	}
	return family_set(eng, uid, epoch);
}

static int load_held(struct engine *eng, const void *key, size_t klen, const void *val,
		     size_t vlen)
{
	struct held_record rec;
	struct held *h;
	uint64_t uid;
	uint32_t sno;

	if (ondisk_held_key_decode(key, klen, &uid, &sno) < 0 ||
	    ondisk_held_record_decode(val, vlen, &rec) < 0 || rec.slot >= eng->sb.segment_count ||
	    rec.length > eng->blocks_per_seg || eng->slots[rec.slot].held) {
		log_msg(LOG_ERROR, ENG_LOG, "a held segment's record is damaged or names a slot "
			"taken already: ignored (that copy is lost here)");
		return 0;
	}
	h = held_add(eng, uid, sno);
	if (!h)
		return -ENOMEM;
	h->slot = rec.slot;
	h->epoch = rec.epoch;
	h->sealed = rec.sealed;
	h->length = rec.length;
	seg_hold_restore(eng, rec.slot, uid, sno, rec.sealed, rec.length);
	return 0;
}

/* eng_walk_slot's visit: the copy's log ends at its first batch that is not whole. */
#define HELD_WALK_END 1
static int held_walk_visit(void *arg, const struct logcheck_item *it, const struct summary *sum,
			   const uint8_t *data)
{
	(void)arg, (void)sum, (void)data;
	return it->kind == LOGCHECK_BATCH && it->data_ok ? 0 : HELD_WALK_END;
}

/* An open copy's length: its log, walked as replay walks one (the owner's header and
 * generation, every batch's data checked); a torn last batch is cut off. The walk
 * leaves its marks on the slot: the slot is the held copy's again after it. */
static int open_length(struct engine *eng, struct held *h)
{
	struct segment_header sh;
	int r = seg_read_sync(eng, h->slot, 0, eng->gc_buf, eng->blocks_per_seg);

	if (r < 0)
		return r;
	/* a header of another segment is one an earlier use of the slot left: this copy's
	 * own header never landed, and that log is not this copy's */
	if (ondisk_segment_header_decode(eng->gc_buf, QUILL_BLOCK_SIZE, &sh) < 0 ||
	    sh.state != ONDISK_SEG_USED || sh.family_uid != h->uid || sh.sno != h->sno) {
		h->length = 0; /* not even its header landed */
		return 0;
	}
	r = eng_walk_slot(eng, h->slot, &sh, 0, held_walk_visit, NULL);
	if (r < 0)
		return r;
	h->length = eng->slots[h->slot].used; /* where the walk stopped */
	seg_hold_restore(eng, h->slot, h->uid, h->sno, false, h->length);
	return 0;
}

int eng_held_load(struct engine *eng)
{
	int r = eng_load_prefix(eng, 'E', load_epoch);

	if (r == 0)
		r = eng_load_prefix(eng, 'H', load_held);
	if (r == 0)
		r = eng_frag_load(eng);
	for (size_t i = 0; r == 0 && i < held_count(eng); i++) {
		struct held *h = held_at(eng, i);

		if (!h->sealed)
			r = open_length(eng, h);
		h->ahead = h->length;
	}
	if (r == 0 && held_count(eng))
		log_msg(LOG_INFO, ENG_LOG, "holding %zu segments for other nodes",
			held_count(eng));
	return r;
}

/* ---- adoption (adopt.c) ---- */

int eng_held_adopt_begin(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t *slot,
			 uint32_t *length)
{
	struct held *h = held_find(eng, uid, sno);

	if (!h || h->opening || h->deleting)
		return -ENOENT;
	if (!h->sealed || h->closing || h->reads)
		return -EBUSY;
	h->closing = true; /* a delete or a seal waits for the adoption to end */
	*slot = h->slot;
	*length = h->length;
	return 0;
}

void eng_held_adopt_end(struct engine *eng, uint64_t uid, uint32_t sno, bool adopted)
{
	struct held *h = held_find(eng, uid, sno);
	struct slot to;

	if (!h)
		return;
	h->closing = false;
	if (!adopted)
		return;
	to = eng->slots[h->slot];
	to.held = false; /* the slot stays: the family's log now */
	seg_slot_set(eng, h->slot, &to);
	held_remove(eng, h);
}

int eng_held_keep(struct engine *eng, uint64_t uid, uint32_t sno, const struct held_record *r)
{
	struct held *h = held_find(eng, uid, sno) ? NULL : held_add(eng, uid, sno);

	if (!h)
		return -ENOMEM; /* or held already: cannot be, the family was this node's */
	h->slot = r->slot;
	h->epoch = r->epoch;
	h->sealed = true;
	h->length = h->ahead = r->length;
	seg_hold_restore(eng, r->slot, uid, sno, true, r->length);
	return 0;
}
