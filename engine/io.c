/* engine/io.c — the data path: batches, group commit, reads, flush, parked writes.
 *
 * A volume's writes join its forming batch; a batch is written as one I/O (summary
 * then data, led by the slot header when it opens a slot). Batches retire in log
 * order: the map changes only then, so the in-memory map always equals what replay
 * of the retired batches gives.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "engine/engine_internal.h"

#define BATCH_BUF_BLOCKS (2 + ONDISK_SUMMARY_MAX_ENTRIES)

/* ---- requests and completions ---- */

struct ioreq *eng_req_alloc(struct engine *eng, engine_cb cb, void *arg)
{
	struct ioreq *req = eng->free_reqs;

	if (req)
		eng->free_reqs = req->next;
	else if (!(req = malloc(sizeof(*req))))
		return NULL;
	memset(req, 0, sizeof(*req));
	req->cb = cb;
	req->arg = arg;
	req->pending = 1; /* the submitter's own reference */
	return req;
}

static void fifo_push(struct req_fifo *q, struct ioreq *req)
{
	req->next = NULL;
	if (q->tail)
		q->tail->next = req;
	else
		q->head = req;
	q->tail = req;
}

static struct ioreq *fifo_pop(struct req_fifo *q)
{
	struct ioreq *req = q->head;

	if (req) {
		q->head = req->next;
		if (!q->head)
			q->tail = NULL;
	}
	return req;
}

/* Drops one reference; the first error sticks. The last reference queues the
 * callback (a FUA write waits for a flush first). */
void eng_req_put(struct engine *eng, struct ioreq *req, int res)
{
	if (res < 0 && req->result == 0)
		req->result = res;
	if (--req->pending)
		return;
	if (req->fua && req->result == 0) {
		req->fua = false;
		req->pending = 1;
		req->next = eng->flush_wait;
		eng->flush_wait = req;
		return;
	}
	if (req == &eng->gc_req) {
		req->cb(req->arg, req->result);
		return;
	}
	fifo_push(&eng->done, req);
}

/* A client's request starts: background work that waits for quiet clients waits. */
static void client_start(struct engine *eng, struct ioreq *req)
{
	req->client = true;
	eng->client_reqs++;
	if (++eng->client_inflight > eng->client_burst)
		eng->client_burst = eng->client_inflight;
}

/* The quiet spell starts when the last one in flight ends (while any is in flight,
 * eng_clients_quiet_in does not look at the time): one clock read per request. */
static void client_end(struct engine *eng)
{
	if (--eng->client_inflight == 0) {
		eng->client_last_ms = eng_now_ms();
		eng->client_last_burst = eng->client_burst;
		eng->client_burst = 0;
	}
}

uint32_t eng_clients_quiet_in(const struct engine *eng, uint64_t now_ms, uint32_t quiet_ms)
{
	uint64_t end = eng->client_last_ms + quiet_ms;

	if (eng->client_inflight)
		return UINT32_MAX;
	return end > now_ms ? (uint32_t)(end - now_ms) : 0;
}

bool eng_clients_quiet(const struct engine *eng, uint64_t now_ms, uint32_t quiet_ms)
{
	return eng_clients_quiet_in(eng, now_ms, quiet_ms) == 0;
}

static int run_done(struct engine *eng)
{
	struct ioreq *req;
	int n = 0;

	while ((req = fifo_pop(&eng->done))) {
		if (req->defrag) /* a read: its buffer is still the engine's */
			eng_defrag_finish(eng, req);
		if (req->client)
			client_end(eng);
		req->cb(req->arg, req->result);
		req->next = eng->free_reqs;
		eng->free_reqs = req;
		n++;
	}
	return n;
}

/* ---- slots ---- */

void eng_map_ref(void *arg, const struct map_loc *loc, int delta)
{
	struct engine *eng = arg;

	if (loc->slot < eng->slot_cap) { /* a store slot or a remote entry */
		eng->slots[loc->slot].live += (uint32_t)delta;
		if (delta < 0)
			eng->slots[loc->slot].dead += (uint32_t)-delta;
	}
	eng->stats.live_blocks += (uint64_t)(int64_t)delta;
}

/* ---- batches ---- */

static void batch_free(struct engine *eng, struct batch *b)
{
	b->next = eng->free_batches;
	eng->free_batches = b;
}

static struct batch *batch_new(struct engine *eng)
{
	struct batch *b = eng->free_batches;

	if (b) {
		eng->free_batches = b->next;
	} else {
		b = calloc(1, sizeof(*b));
		if (!b)
			return NULL;
		b->buf = seg_buf_alloc((size_t)BATCH_BUF_BLOCKS * QUILL_BLOCK_SIZE);
		if (!b->buf) {
			free(b);
			return NULL;
		}
	}
	b->next = NULL;
	b->result = 0;
	b->state = BATCH_FORMING;
	memset(&b->sum, 0, offsetof(struct summary, entries));
	return b;
}

static uint32_t batch_blocks(const struct batch *b)
{
	return (b->with_header ? 1u : 0u) + 1u + b->sum.data_blocks;
}

static uint8_t *batch_data(struct batch *b, uint32_t i)
{
	return b->buf + (size_t)(2 + i) * QUILL_BLOCK_SIZE;
}

/* Room for one more entry (with `blocks` data blocks) in the forming batch? */
static bool batch_fits(const struct engine *eng, const struct batch *b, uint32_t blocks)
{
	return b->state == BATCH_FORMING && b->sum.nentries < ONDISK_SUMMARY_MAX_ENTRIES &&
	       b->first_block + batch_blocks(b) + blocks <= eng->blocks_per_seg;
}

static void batch_close(struct batch *b)
{
	if (b->state == BATCH_FORMING)
		b->state = BATCH_READY;
}

/* The volume's forming batch with room for `blocks` more data blocks, starting a new
 * one (and a new slot if needed). */
static int forming_batch(struct engine_volume *vol, uint32_t blocks, enum slot_user who,
			 struct batch **out)
{
	struct engine *eng = vol->eng;
	struct batch *b = vol->tail;
	struct slot *s;
	int r;

	if (b && batch_fits(eng, b, blocks)) {
		*out = b;
		return 0;
	}
	if (b)
		batch_close(b);
	if (vol->open_slot < 0 ||
	    eng->slots[vol->open_slot].used + 1 + blocks > eng->blocks_per_seg ||
	    eng->slots[vol->open_slot].broken) {
		r = seg_open(eng, vol, who);
		if (r < 0)
			return r;
		/* not the cleaner's: its relocations must not take room for records */
		vol->new_segment = eng->opts.family_records && who != SLOT_FOR_GC &&
				   vol->rec.kind != ONDISK_LAYER_CATALOG;
	}
	b = batch_new(eng);
	if (!b)
		return -ENOMEM;
	s = &eng->slots[vol->open_slot];
	b->vol = vol;
	b->slot = (uint32_t)vol->open_slot;
	b->with_header = s->used == 0;
	b->first_block = s->used;
	b->sum.generation = s->generation;
	b->sum.volume_id = vol->rec.volume_id;
	s->used += batch_blocks(b);
	s->sums++;
	s->pending++;
	if (vol->tail)
		vol->tail->next = b;
	else
		vol->head = b;
	vol->tail = b;
	*out = b;
	return 0;
}

int eng_append_data(struct engine_volume *vol, uint64_t lba, const void *data,
		    enum ondisk_entry_kind kind, uint32_t src_slot, uint32_t src_block,
		    uint32_t crc, enum slot_user who, struct ioreq *owner)
{
	struct batch *b;
	struct summary_entry *e;
	int r = forming_batch(vol, 1, who, &b);

	if (r < 0)
		return r;
	e = &b->sum.entries[b->sum.nentries];
	memcpy(batch_data(b, b->sum.data_blocks), data, QUILL_BLOCK_SIZE);
	e->lba = lba;
	e->nblocks = 1;
	e->kind = kind;
	e->src_slot = src_slot;
	e->src_block = src_block;
	/* a MOVE's crc was verified against the map's; the others are computed here */
	e->data_crc = kind == ONDISK_ENTRY_MOVE ? crc : crc32c(data, QUILL_BLOCK_SIZE);
	b->parts[b->sum.nentries++] = owner;
	b->sum.data_blocks++;
	vol->eng->slots[b->slot].used++;
	owner->pending++;
	eng_catalog_family_relog(vol, owner);
	return 0;
}

int eng_append_trim(struct engine_volume *vol, uint64_t lba, uint64_t nblocks,
		    enum ondisk_entry_kind kind, uint16_t src_block, struct ioreq *owner)
{
	while (nblocks) {
		uint32_t n = nblocks > UINT32_MAX ? UINT32_MAX : (uint32_t)nblocks;
		struct batch *b;
		struct summary_entry *e;
		int r = forming_batch(vol, 0, SLOT_FOR_TRIM, &b);

		if (r < 0)
			return r;
		e = &b->sum.entries[b->sum.nentries];
		memset(e, 0, sizeof(*e));
		e->lba = lba;
		e->nblocks = n;
		e->kind = kind;
		e->src_block = src_block;
		b->parts[b->sum.nentries++] = owner;
		owner->pending++;
		eng_catalog_family_relog(vol, owner);
		lba += n;
		nblocks -= n;
	}
	return 0;
}

static void batch_apply(struct engine_volume *vol, struct batch *b)
{
	struct engine *eng = vol->eng;
	uint32_t data_idx = 0;

	for (uint32_t i = 0; i < b->sum.nentries; i++) {
		const struct summary_entry *e = &b->sum.entries[i];
		struct map_loc loc = { .slot = b->slot, .crc = e->data_crc };

		if (ONDISK_ENTRY_HAS_BLOCK(e->kind))
			loc.block = b->first_block + (b->with_header ? 2 : 1) + data_idx++;
		if (eng_apply_entry(vol, e, &loc) < 0)
			b->result = -ENOMEM; /* the map could not take it: fail the write */
	}
	eng->slots[b->slot].last_seq = b->sum.seq;
}

/* Retires done batches at the head of the volume's log, in order. */
static void retire(struct engine_volume *vol)
{
	struct engine *eng = vol->eng;

	while (vol->head && vol->head->state == BATCH_DONE) {
		struct batch *b = vol->head;
		struct slot *s = &eng->slots[b->slot];

		vol->head = b->next;
		if (!vol->head)
			vol->tail = NULL;
		if (b->result == 0 && s->broken)
			b->result = -EIO; /* after a hole: replay could not reach it */
		if (b->result == 0)
			batch_apply(vol, b);
		else
			s->broken = true;
		s->pending--;
		vol->ninflight--;
		for (uint32_t i = 0; i < b->sum.nentries; i++)
			eng_req_put(eng, b->parts[i], b->result);
		batch_free(eng, b);
	}
}

static void batch_written(void *arg, int res)
{
	struct batch *b = arg;
	struct engine_volume *vol = b->vol;

	if (res < 0)
		LOG_RATELIMITED(LOG_ERROR, ENG_LOG, "volume %s: log write to slot %u failed: %s",
				vol->rec.name, b->slot, err_str(-res));
	b->state = BATCH_DONE;
	b->result = res < 0 ? -EIO : 0;
	retire(vol);
}

static void batch_submit(struct engine *eng, struct batch *b)
{
	uint8_t *start = b->buf + (b->with_header ? 0 : QUILL_BLOCK_SIZE);
	int r;

	b->sum.seq = eng->next_seq++;
	assert(eng->open_seq != 0); /* set by replay or rebuild: a summary without it is refused */
	b->sum.open_seq = eng->open_seq;
	b->sum.durable_seq = eng->durable_seq;
	ondisk_summary_encode(&b->sum, b->buf + QUILL_BLOCK_SIZE);
	b->state = BATCH_INFLIGHT;
	b->vol->ninflight++;
	eng->unsynced_bytes += (uint64_t)batch_blocks(b) * QUILL_BLOCK_SIZE;
	eng_prezero_appended(eng, (uint64_t)batch_blocks(b) * QUILL_BLOCK_SIZE);
	/* the first batch of a slot carries its header: seg_append writes it */
	r = seg_append(eng, b->slot, b->first_block, start, batch_blocks(b), b->sum.seq,
		       batch_written, b);
	if (r < 0)
		batch_written(b, r);
}

/* May b go past the bound? Its slot was sealed below the copies its writes need
 * (engine_family_waits_copies): the batches in flight there wait for catch-up's copy,
 * which waits for the slot's last batches. One at a time, and only when every batch
 * in flight is in that slot with its local write done (and the mirror said every
 * holder left has them): behind a batch that never completed, no other was submitted,
 * so replay's rule (docs/format.md, "Tears and corruption") still holds. */
static bool past_bound(const struct engine_volume *vol, const struct batch *b)
{
	const struct slot *s = &vol->eng->slots[b->slot];

	if (!s->waits_copies || s->local_writes)
		return false;
	for (const struct batch *o = vol->head; o != b; o = o->next)
		if (o->state == BATCH_INFLIGHT && o->slot != b->slot)
			return false;
	return true;
}

/* Submits what can go, in log order, while fewer than ONDISK_MAX_INFLIGHT_BATCHES of
 * the volume's batches are unretired: full batches first, then the forming one (which
 * otherwise keeps collecting: group commit). The bound is a promise replay relies on:
 * a batch that never completed is followed by fewer than that many in its log. */
static void volume_kick(struct engine_volume *vol)
{
	if (vol->kicking) { /* a mirror's answer from inside batch_submit */
		vol->kick_again = true;
		return;
	}
	vol->kicking = true;
	do {
		vol->kick_again = false;
		for (struct batch *b = vol->head, *next; b; b = next) {
			next = b->next; /* a submit refused at once retires b (frees it); the
					   batches after it were not submitted, so they stay */
			if (vol->ninflight >= ONDISK_MAX_INFLIGHT_BATCHES &&
			    !(b->state == BATCH_READY && past_bound(vol, b))) {
				if (b->state == BATCH_INFLIGHT || b->state == BATCH_DONE)
					continue; /* (the waiting slot's next may lie past them) */
				break; /* the forming one keeps collecting: group commit */
			}
			if (b->state == BATCH_FORMING && b->sum.nentries)
				batch_close(b);
			if (b->state == BATCH_READY)
				batch_submit(vol->eng, b);
		}
	} while (vol->kick_again);
	vol->kicking = false;
}

int engine_family_waits_copies(struct engine *eng, uint64_t uid, uint32_t sno, bool waits)
{
	int64_t slot = eng_own_slot(eng, uid, sno, true);

	if (slot < 0)
		return (int)slot;
	eng->slots[slot].waits_copies = waits;
	if (waits)
		for (size_t v = 0; v < eng->nvols; v++)
			if (eng->vols[v]->rec.uid == uid)
				volume_kick(eng->vols[v]);
	return 0;
}

/* A holder of the segment failed (replication/replica.c): the segment ends here, at
 * its write pointer, the way a full one does in forming_batch: the forming batch is
 * closed (it was given its blocks in this slot already, and goes out there), the slot
 * sealed (the mirror is told the length, every block reserved included), and the
 * volume's next batch opens a fresh segment. Nothing waits here: the batches already
 * in this slot complete as they would have. */
int engine_family_seal_open(struct engine *eng, uint64_t uid, uint32_t sno)
{
	for (size_t i = 0; i < eng->nvols; i++) {
		struct engine_volume *vol = eng->vols[i];
		const struct slot *s;

		if (vol->rec.uid != uid || vol->open_slot < 0)
			continue;
		s = &eng->slots[vol->open_slot];
		if (s->family_uid != uid || s->sno != sno || s->state != SLOT_OPEN)
			continue;
		if (vol->tail && vol->tail->slot == (uint32_t)vol->open_slot)
			batch_close(vol->tail);
		seg_seal(eng, (uint32_t)vol->open_slot);
		vol->open_slot = -1;
		volume_kick(vol);
		return 0;
	}
	return -ENOENT;
}

static void flush_done(void *arg, int res)
{
	struct engine *eng = arg;
	struct ioreq *req = eng->flush_running;

	if (res < 0)
		LOG_RATELIMITED(LOG_ERROR, ENG_LOG, "flush failed: %s", err_str(-res));
	eng->flush_running = NULL;
	eng->flush_inflight = false;
	if (res >= 0)
		eng_mark_durable(eng, eng->flush_seq);
	while (req) {
		struct ioreq *next = req->next;
		eng_req_put(eng, req, res < 0 ? -EIO : 0);
		req = next;
	}
}

int eng_store_flush(struct engine *eng, void (*cb)(void *arg, int res), void *arg)
{
	eng->unsynced_bytes = 0;
	eng->last_sync_ms = eng_now_ms();
	return seg_flush(eng, cb, arg);
}

/* Write-back pacing. A flush makes the device write back everything written since
 * the one before, and holds every request behind it meanwhile (a virtual disk flushes
 * its host file; a disk its cache): the time it takes grows with what was written.
 * Left to the checkpoint every 5 s, that is up to seconds' worth of writes and a
 * pause of hundreds of ms. So a flush starts after every sync_bytes of log instead,
 * as RocksDB's bytes_per_sync does, keeping each one short; at most one per
 * ENGINE_SYNC_MIN_MS, since each also delays the requests in flight once: at queue
 * depth 32, ten a second would reach the 99th percentile. Milliseconds until one is
 * due, 0 if it is, -1 if none is. */
static int64_t sync_due_ms(const struct engine *eng)
{
	uint64_t since;

	if (!eng->opts.sync_bytes || eng->unsynced_bytes < eng->opts.sync_bytes)
		return -1;
	since = eng_now_ms() - eng->last_sync_ms;
	return since >= ENGINE_SYNC_MIN_MS ? 0 : (int64_t)(ENGINE_SYNC_MIN_MS - since);
}

static void flush_kick(struct engine *eng)
{
	int r;

	if (eng->flush_inflight || (!eng->flush_wait && sync_due_ms(eng) != 0))
		return;
	eng->flush_running = eng->flush_wait; /* none: the pacing's own */
	eng->flush_wait = NULL;
	eng->flush_inflight = true;
	eng->flush_seq = eng_stable_seq(eng);
	r = eng_store_flush(eng, flush_done, eng);
	if (r < 0)
		flush_done(eng, r);
}

void eng_mark_durable(struct engine *eng, uint64_t seq)
{
	if (seq > eng->durable_seq)
		eng->durable_seq = seq;
}

void eng_kick(struct engine *eng)
{
	for (size_t i = 0; i < eng->nvols; i++)
		volume_kick(eng->vols[i]);
	flush_kick(eng);
}

/* ---- writes, trims and the space they wait for ---- */

static void park(struct engine *eng, struct ioreq *req)
{
	fifo_push(&eng->parked, req);
	eng->gc_next_scan_ms = 0;
	LOG_RATELIMITED(LOG_WARN, ENG_LOG, "volume %s: store has no free segment; "
			"write waits for the cleaner", req->vol->rec.name);
}

/* Appends what is left of a write or trim. 0 when all of it is in batches; -ENOSPC
 * when it must wait for space (req keeps its position); other errors are final. */
static int append_rest(struct ioreq *req)
{
	int r;

	if (req->kind != ONDISK_ENTRY_DATA) {
		r = eng_append_trim(req->vol, req->lba, req->nblocks, req->kind, 0, req);
		if (r == 0)
			req->nblocks = 0;
		return r;
	}
	while (req->nblocks) {
		r = eng_append_data(req->vol, req->lba, req->src, ONDISK_ENTRY_DATA, 0, 0, 0,
				    SLOT_FOR_WRITE, req);
		if (r < 0)
			return r;
		req->lba++;
		req->nblocks--;
		req->src += QUILL_BLOCK_SIZE;
	}
	return 0;
}

static void start_or_park(struct engine *eng, struct ioreq *req)
{
	int r = eng->parked.head ? -ENOSPC : append_rest(req); /* keep arrival order */

	if (r == -ENOSPC) {
		req->pending++;
		park(eng, req);
		eng->gc_want_free = eng->gc_reserve + 1;
	} else if (r < 0) {
		req->result = r;
	}
	eng_req_put(eng, req, 0);
}

/* Retries parked requests now that slots may be free; with fail, ends them. Not while
 * a job's commit is in flight: they could land in a layer it is about to freeze (they
 * are retried from the first poll after it). */
void eng_run_parked(struct engine *eng, bool fail)
{
	if (!fail && eng_mc_busy(eng)) {
		eng->mc_parked_later = true;
		return;
	}
	while (eng->parked.head) {
		struct ioreq *req = eng->parked.head;
		int r = fail ? -ENOSPC : append_rest(req);

		if (r == -ENOSPC && !fail)
			return;
		fifo_pop(&eng->parked);
		if (r == -ENOSPC) {
			char why[384];

			eng_space_describe(eng, why, sizeof(why));
			log_msg(LOG_ERROR, ENG_LOG, "volume %s: write of %llu blocks at %llu "
				"failed: store full (%s)", req->vol->rec.name,
				(unsigned long long)req->nblocks, (unsigned long long)req->lba, why);
		}
		eng_req_put(eng, req, r);
	}
}

void eng_fail_parked(struct engine *eng, struct engine_volume *vol, int err)
{
	struct req_fifo keep = { 0 };
	struct ioreq *req;

	while ((req = fifo_pop(&eng->parked))) {
		if (req->vol == vol)
			eng_req_put(eng, req, err);
		else
			fifo_push(&keep, req);
	}
	eng->parked = keep;
}

static int check_range(const struct engine_volume *vol, uint64_t lba, uint64_t nblocks)
{
	uint64_t size = vol->rec.size / QUILL_BLOCK_SIZE;

	if (!vol->open)
		return -EBADF;
	if (lba > size || nblocks > size - lba)
		return -ERANGE;
	return 0;
}

/* A write (kind DATA, from src), a trim or allocated zeros (TRIM, ZERO) of a volume's
 * blocks. */
static int start_update(struct engine_volume *vol, uint64_t lba, uint64_t nblocks,
			enum ondisk_entry_kind kind, const void *src, unsigned flags,
			engine_cb cb, void *arg)
{
	struct ioreq *req;
	int r = check_range(vol, lba, nblocks);

	if (r < 0)
		return r;
	if (!cb || nblocks == 0 || (flags & ~ENGINE_FUA))
		return -EINVAL;
	if (engine_volume_readonly(vol))
		return -EPERM;
	req = eng_req_alloc(vol->eng, cb, arg);
	if (!req)
		return -ENOMEM;
	client_start(vol->eng, req);
	req->fua = flags & ENGINE_FUA;
	req->vol = vol;
	req->lba = lba;
	req->nblocks = nblocks;
	req->src = src;
	req->kind = kind;
	if (vol->holds) {
		fifo_push(&vol->held, req); /* keeps the submitter's reference */
		return 0;
	}
	start_or_park(vol->eng, req);
	return 0;
}

void eng_hold_writes(struct engine_volume *vol)
{
	vol->holds++;
}

void eng_release_writes(struct engine_volume *vol)
{
	uint64_t size = vol->rec.size / QUILL_BLOCK_SIZE;
	struct ioreq *req;

	if (--vol->holds)
		return;
	while ((req = fifo_pop(&vol->held))) {
		/* the layer they go to now may be smaller (a rollback) */
		if (req->lba > size || req->nblocks > size - req->lba)
			eng_req_put(vol->eng, req, -ERANGE);
		else
			start_or_park(vol->eng, req);
	}
}

void engine_volume_abort(struct engine_volume *vol, int err)
{
	struct ioreq *req;

	eng_fail_parked(vol->eng, vol, err);
	while ((req = fifo_pop(&vol->held)))
		eng_req_put(vol->eng, req, err);
}

int engine_write(struct engine_volume *vol, uint64_t lba, uint32_t nblocks, const void *buf,
		 unsigned flags, engine_cb cb, void *arg)
{
	if (!buf)
		return -EINVAL;
	return start_update(vol, lba, nblocks, ONDISK_ENTRY_DATA, buf, flags, cb, arg);
}

int engine_trim(struct engine_volume *vol, uint64_t lba, uint64_t nblocks, unsigned flags,
		engine_cb cb, void *arg)
{
	/* a family reading through a remote base: allocated zeros hide it whatever
	 * replays them (base.c) */
	enum ondisk_entry_kind kind = engine_family_base_get(vol->eng, vol->rec.uid, NULL) == 0
					      ? ONDISK_ENTRY_ZERO : ONDISK_ENTRY_TRIM;

	return start_update(vol, lba, nblocks, kind, NULL, flags, cb, arg);
}

int engine_zero(struct engine_volume *vol, uint64_t lba, uint64_t nblocks, unsigned flags,
		engine_cb cb, void *arg)
{
	return start_update(vol, lba, nblocks, ONDISK_ENTRY_ZERO, NULL, flags, cb, arg);
}

int engine_flush(struct engine *eng, engine_cb cb, void *arg)
{
	struct ioreq *req;

	if (!cb)
		return -EINVAL;
	req = eng_req_alloc(eng, cb, arg);
	if (!req)
		return -ENOMEM;
	req->next = eng->flush_wait;
	eng->flush_wait = req;
	return 0;
}

/* ---- reads ----
 *
 * A read resolves its blocks a window at a time, sorts the window's mapped blocks by
 * where they lie in the store, and reads the blocks of one slot that lie close
 * together with one I/O: blocks between them (summaries, other batches' data, dead
 * blocks) are read into a scratch buffer and dropped. A few wasted blocks in one
 * request cost less than one more request: a sequential read through data written by
 * several batches, or after the cleaner gathered a range, is a few large reads. The
 * span that reaches a window's last block waits for the next window, so that a range
 * lying in order in the log is read in spans of up to READ_MAX_SPAN blocks whatever
 * the windows. Every I/O of a request is queued before any is submitted (they go
 * together at the next seg_poll()).
 */

#define READ_WINDOW 256u   /* blocks resolved and sorted at a time */
#define READ_MAX_GAP 8u    /* unwanted blocks read to join two runs of one slot */
/* blocks in one I/O: a whole window and what lies between its runs (a window written
 * by 1 MiB writes spans its 256 blocks and the summaries of two or three batches) */
#define READ_MAX_SPAN (2 * READ_WINDOW)

struct read_want {
	uint32_t pos; /* block of the span */
	uint32_t idx; /* block of the request */
	uint32_t crc;
};

/* One I/O: span blocks of a slot from `first`, of which nwant are the caller's. */
struct read_part {
	struct engine *eng;
	struct ioreq *req;
	struct engine_volume *vol;
	uint64_t lba;      /* of the request's block 0 */
	uint8_t *dst;      /* the caller's buffer (block 0) */
	uint8_t *bounce;   /* the span, when dst is not aligned */
	uint32_t slot, first, span, nwant;
	struct read_want want[];
};

static uint8_t *want_data(const struct read_part *p, const struct read_want *w)
{
	return p->bounce ? p->bounce + (size_t)w->pos * QUILL_BLOCK_SIZE
			 : p->dst + (size_t)w->idx * QUILL_BLOCK_SIZE;
}

/* Checks each wanted block of a span that was read (res: the read's answer) and moves
 * it to the caller's buffer. A block that failed (its checksum, or the whole read) is
 * read around from a copy elsewhere when there is one (repair.c); otherwise the read
 * fails with the first such error. */
static int read_verify(struct read_part *p, int res)
{
	int err = 0;

	for (uint32_t i = 0; i < p->nwant; i++) {
		const struct read_want *w = &p->want[i];
		uint8_t *data = want_data(p, w);
		uint8_t *dst = p->dst + (size_t)w->idx * QUILL_BLOCK_SIZE;
		int why = res < 0 ? res : crc32c(data, QUILL_BLOCK_SIZE) != w->crc ? -EILSEQ : 0;

		if (why == 0) {
			if (p->bounce)
				memcpy(dst, data, QUILL_BLOCK_SIZE);
			continue;
		}
		if (eng_repair_start(p->eng, p->req, p->vol, p->lba + w->idx, p->slot,
				     p->first + w->pos, w->crc, dst, why))
			continue;
		if (why == -EILSEQ)
			LOG_RATELIMITED(LOG_ERROR, ENG_LOG, "volume %s: checksum mismatch at lba "
					"%llu (slot %u): returning an I/O error", p->vol->rec.name,
					(unsigned long long)(p->lba + w->idx), p->slot);
		if (err == 0)
			err = why;
	}
	return err;
}

static void read_done(void *arg, int res)
{
	struct read_part *p = arg;
	struct engine *eng = p->eng;

	if (res < 0)
		LOG_RATELIMITED(LOG_ERROR, ENG_LOG, "volume %s: read of slot %u failed: %s",
				p->vol->rec.name, p->slot, err_str(-res));
	res = read_verify(p, res);
	eng->slots[p->slot].readers--;
	eng_req_put(eng, p->req, res);
	seg_buf_free(p->bounce);
	free(p);
}

/* The blocks a span reads only to join runs land here (never read back). */
static uint8_t *read_scratch(struct engine *eng)
{
	if (!eng->read_scratch)
		eng->read_scratch = seg_buf_alloc((size_t)READ_MAX_GAP * QUILL_BLOCK_SIZE);
	return eng->read_scratch;
}

/* The vector of a span read straight into the caller's buffer: runs of wanted blocks
 * that are adjacent in both places are one element, each gap one on the scratch. */
static int span_iov(struct read_part *p, uint8_t *scratch, struct iovec *iov)
{
	int n = 0;
	uint32_t pos = 0;

	for (uint32_t i = 0; i < p->nwant; i++) {
		const struct read_want *w = &p->want[i];
		uint8_t *data = want_data(p, w);

		if (w->pos > pos)
			iov[n++] = (struct iovec){ scratch, (size_t)(w->pos - pos) * QUILL_BLOCK_SIZE };
		if (n && w->pos == pos && i &&
		    (uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == data)
			iov[n - 1].iov_len += QUILL_BLOCK_SIZE;
		else
			iov[n++] = (struct iovec){ data, QUILL_BLOCK_SIZE };
		pos = w->pos + 1;
	}
	return n;
}

/* Reads blocks b[0..n) (one slot, ascending, within READ_MAX_SPAN and READ_MAX_GAP of
 * each other) of a request whose block 0 is lba, into dst. */
static int read_span(struct engine_volume *vol, struct ioreq *req, uint64_t lba, uint8_t *dst,
		     const struct read_block *b, uint32_t n)
{
	struct engine *eng = vol->eng;
	struct read_part *p;
	struct iovec iov[READ_MAX_SPAN]; /* each covers one block of the span at least */
	uint8_t *scratch = NULL;
	struct iovec one;
	int r, niov;

	if (seg_is_remote(eng, b[0].slot)) /* no local copy (segment_remote.c) */
		return eng_remote_read(vol, req, lba, dst, b, n);
	p = malloc(sizeof(*p) + n * sizeof(p->want[0]));
	if (!p)
		return -ENOMEM;
	*p = (struct read_part){ .eng = eng, .req = req, .vol = vol, .lba = lba, .dst = dst,
				 .slot = b[0].slot, .first = b[0].block,
				 .span = b[n - 1].block - b[0].block + 1, .nwant = n };
	for (uint32_t i = 0; i < n; i++)
		p->want[i] = (struct read_want){ .pos = b[i].block - p->first, .idx = b[i].idx,
						 .crc = b[i].crc };
	if ((uintptr_t)dst % SEG_ALIGN) {
		p->bounce = seg_buf_alloc((size_t)p->span * QUILL_BLOCK_SIZE);
		one = (struct iovec){ p->bounce, (size_t)p->span * QUILL_BLOCK_SIZE };
		r = p->bounce ? seg_read(eng, p->slot, p->first, &one, 1, read_done, p) : -ENOMEM;
	} else if (p->span > n && !(scratch = read_scratch(eng))) {
		r = -ENOMEM;
	} else {
		niov = span_iov(p, scratch, iov);
		r = seg_read(eng, p->slot, p->first, iov, niov, read_done, p);
	}
	if (r < 0) {
		seg_buf_free(p->bounce);
		free(p);
		return r;
	}
	eng->slots[p->slot].readers++;
	if (!req->idle_defrag)
		eng->stats.read_ios++; /* the clients' reads only */
	req->pending++;
	return 0;
}

static int read_block_cmp(const void *a, const void *b)
{
	const struct read_block *x = a, *y = b;

	if (x->slot != y->slot)
		return x->slot < y->slot ? -1 : 1;
	return x->block < y->block ? -1 : x->block > y->block;
}

/* Does c join the span that starts at b[0] and ends at `last`? */
static bool span_joins(const struct read_block *first, const struct read_block *last,
		       const struct read_block *c)
{
	return c->slot == first->slot && c->block > last->block &&
	       c->block - last->block - 1 <= READ_MAX_GAP &&
	       c->block - first->block < READ_MAX_SPAN;
}

/* The end of the span that starts at b[start] (b sorted, n blocks): one I/O. */
static uint32_t span_end(const struct read_block *b, uint32_t start, uint32_t n)
{
	uint32_t i = start + 1;

	while (i < n && span_joins(&b[start], &b[i - 1], &b[i]))
		i++;
	return i;
}

uint32_t eng_read_spans(struct read_block *b, uint32_t n)
{
	uint32_t spans = 0;

	qsort(b, n, sizeof(*b), read_block_cmp);
	for (uint32_t start = 0; start < n; start = span_end(b, start, n))
		spans++;
	return spans;
}

/* Where in b[0..n) (sorted) the block of the highest LBA is. */
static uint32_t last_lba_at(const struct read_block *b, uint32_t n)
{
	uint32_t at = 0;

	for (uint32_t i = 1; i < n; i++)
		if (b[i].idx > b[at].idx)
			at = i;
	return at;
}

/* Reads a window's mapped blocks b[0..n), sorted, as few spans; a window that took
 * many goes to read reallocation (defrag.c), and so does every window the idle
 * defragmenter reads (it chose it for that). With `more` (the request goes on past
 * this window), the span that holds the window's last block is not read: it is
 * moved to b[0..*carried) for the next window, whose first blocks often lie right
 * after it in the log (a range written, or rewritten, in order), and joins them
 * there as one I/O. A window boundary then costs no I/O of its own. */
static int read_window(struct engine_volume *vol, struct ioreq *req, uint64_t lba,
		       uint8_t *dst, struct read_block *b, uint32_t n, bool more,
		       uint32_t *carried)
{
	uint32_t spans = 0, keep = n, keep_end = n;
	uint32_t last;

	qsort(b, n, sizeof(*b), read_block_cmp);
	last = more ? last_lba_at(b, n) : n;
	for (uint32_t start = 0, end; start < n; start = end) {
		int r;

		end = span_end(b, start, n);
		if (start <= last && last < end) {
			keep = start;
			keep_end = end;
			continue;
		}
		r = read_span(vol, req, lba, dst, &b[start], end - start);
		if (r < 0)
			return r;
		spans++;
	}
	if (req->idle_defrag || eng_defrag_wanted(n - (keep_end - keep), spans)) {
		eng_defrag_note(vol, req, lba, dst, b, keep);
		eng_defrag_note(vol, req, lba, dst, b + keep_end, n - keep_end);
	}
	memmove(b, b + keep, (keep_end - keep) * sizeof(*b));
	*carried = keep_end - keep;
	return 0;
}

/* seq_stream: a client's read continuing a sequential stream (defrag.c) */
static int read_layers(struct engine_volume *vol, uint64_t lba, uint32_t nblocks, void *buf,
		       bool seq_stream, bool client, engine_cb cb, void *arg)
{
	struct ioreq *req = eng_req_alloc(vol->eng, cb, arg);

	if (!req)
		return -ENOMEM;
	if (client)
		client_start(vol->eng, req);
	req->seq_stream = seq_stream;
	eng_read_req(vol, req, lba, nblocks, buf);
	return 0;
}

int engine_read(struct engine_volume *vol, uint64_t lba, uint32_t nblocks, void *buf,
		engine_cb cb, void *arg)
{
	int r = check_range(vol, lba, nblocks);

	if (r < 0)
		return r;
	if (!buf || !cb || nblocks == 0)
		return -EINVAL;
	return read_layers(vol, lba, nblocks, buf, eng_defrag_seq_read(vol, lba, nblocks), true,
			   cb, arg);
}

int eng_read_layers(struct engine_volume *vol, uint64_t lba, uint32_t nblocks, void *buf,
		    engine_cb cb, void *arg)
{
	return read_layers(vol, lba, nblocks, buf, false, false, cb, arg);
}

void eng_read_req(struct engine_volume *vol, struct ioreq *req, uint64_t lba, uint32_t nblocks,
		  void *buf)
{
	/* a window, and what the one before carried over (a span: READ_MAX_SPAN) */
	struct read_block b[READ_WINDOW + READ_MAX_SPAN];
	uint8_t *dst = buf;
	uint32_t carried = 0;
	int r = 0;

	for (uint32_t w = 0; w < nblocks && r == 0; w += READ_WINDOW) {
		uint32_t end = nblocks - w < READ_WINDOW ? nblocks : w + READ_WINDOW;
		uint32_t n = carried;

		for (uint32_t i = w; i < end && r == 0; i++) {
			struct map_loc loc;
			uint32_t run;

			switch (eng_locate(vol, lba + i, &loc)) {
			case ENG_AT_DATA:
				b[n++] = (struct read_block){ .slot = loc.slot, .block = loc.block,
							      .idx = i, .crc = loc.crc };
				break;
			case ENG_AT_BASE: /* a run of them is one read of the base */
				for (run = 1; i + run < end &&
				     eng_locate(vol, lba + i + run, NULL) == ENG_AT_BASE; run++)
					;
				r = eng_base_read(vol, req, lba, dst, i, run);
				i += run - 1;
				break;
			default:
				memset(dst + (size_t)i * QUILL_BLOCK_SIZE, 0, QUILL_BLOCK_SIZE);
			}
		}
		carried = 0;
		if (r < 0)
			break;
		if (n)
			r = read_window(vol, req, lba, dst, b, n, end < nblocks, &carried);
	}
	eng_req_put(vol->eng, req, r);
}

bool engine_block_mapped(const struct engine_volume *vol, uint64_t lba)
{
	/* a remote base's range may hold data: a read-modify-write must read it */
	return eng_locate(vol, lba, NULL) != ENG_AT_ZERO;
}

/* ---- the loop ---- */

/* What a poll does before it asks the store: background work, batches submitted
 * (queued to the store), callbacks of what completed. Returns callbacks run. */
/* Background steps slower than this are logged at LOG_DEBUG (they hold the loop). */
#define ENG_TRACE_SLOW_US 1000u

#define TIMED(what, stmt)                                                              \
	do {                                                                           \
		uint64_t t0_ = trace ? log_clock_us() : 0;                             \
		struct log_usage u0_ = { 0 };                                          \
		if (trace)                                                             \
			log_thread_usage(&u0_);                                        \
		stmt;                                                                  \
		if (trace && log_clock_us() - t0_ >= ENG_TRACE_SLOW_US)                \
			trace_slow(what, t0_, &u0_);                                   \
	} while (0)

/* A background step held the loop: how long, and whether it worked, blocked in the
 * kernel or lost the CPU (the same figures for the thread since t0). */
static void trace_slow(const char *what, uint64_t t0, const struct log_usage *u0)
{
	struct log_usage u;

	log_thread_usage(&u);
	log_msg(LOG_DEBUG, ENG_LOG, "%s held the loop %.1f ms: %.1f ms of CPU, %llu sleeps in "
		"the kernel, %llu preemptions", what, (double)(log_clock_us() - t0) / 1000.0,
		(double)(u.cpu_us - u0->cpu_us) / 1000.0,
		(unsigned long long)(u.waits - u0->waits),
		(unsigned long long)(u.preempted - u0->preempted));
}

static int poll_begin(struct engine *eng)
{
	bool trace = log_get_level() == LOG_DEBUG;
	int n;

	TIMED("checkpoint reap", eng_ckpt_reap(eng));
	/* a job's commit in flight (metacommit.c): the cleaner starts no pass that could
	 * move blocks into the log of a layer the commit is about to freeze */
	if (!eng_mc_busy(eng))
		TIMED("cleaner", eng_gc_maybe(eng));
	if (eng->mc_parked_later && !eng_mc_busy(eng)) {
		eng->mc_parked_later = false;
		eng_run_parked(eng, false);
	}
	TIMED("prezero", eng_prezero_maybe(eng));
	TIMED("idle defrag", eng_defrag_idle_maybe(eng));
	TIMED("checkpoint start", eng_ckpt_maybe(eng));
	eng_flatten_kick(eng);
	/* after the cleaner and the checkpoint had their say on what the reap changed: a
	 * job must not see a state they are about to act on (gc: "stalled", while the
	 * slots a checkpoint just freed are about to be used) */
	TIMED("jobs", n = eng_jobs_run(eng));
	eng_kick(eng);
	TIMED("callbacks", n += run_done(eng));
	return n;
}

/* ... and after: what the store's completions made ready. */
static int poll_end(struct engine *eng, int n)
{
	eng_kick(eng);
	n += run_done(eng);
	return n + eng_jobs_run(eng);
}

/* The checkpoint thread does not wake the ring: a sleep while it works is short. */
static int sleep_bound(const struct engine *eng, int timeout_ms)
{
	if (eng->ckpt_capturing)
		return 0; /* the next slice is due */
	return eng->ckpt_busy && (timeout_ms < 0 || timeout_ms > 5) ? 5 : timeout_ms;
}

int engine_poll(struct engine *eng, int timeout_ms)
{
	int n = poll_begin(eng);
	int r = seg_poll(eng, n ? 0 : sleep_bound(eng, timeout_ms));

	if (r < 0 && r != -ETIME && r != -EINTR)
		return r;
	n = poll_end(eng, n);
	if (n == 0 && r <= 0)
		eng_mc_wait(eng, timeout_ms); /* a job's commit, the only thing going on */
	return n;
}

int engine_run(struct engine *eng)
{
	int n = poll_begin(eng);
	int r = seg_reap(eng);

	if (r < 0)
		return r;
	return poll_end(eng, n);
}

/* How long a sleep for a mirrored append's every half may last before the first
 * completion ends it (loop.h's min_wait_us). It costs only when a count does not
 * come: a holder that died (the append waits for the peer timeout, ~1 s, anyway), a
 * reply split over two reads (its rest is read after this). Anything else that comes
 * is a completion and counts (another client's request: the epoll watch's), and the
 * loop's timers bound the sleep as before. So well above a replicated QD1 write on a
 * loaded machine (p90 ~1-2 ms under strace here), where a shorter one wakes the loop
 * for the local write alone again. */
#define MIRROR_MIN_WAIT_US 2000

/* A client answered this recently may send its next request while the loop polls */
#define POLL_AFTER_REPLY_MS 2

/* Is all this node's I/O in flight one request of another node's: a holder's lone
 * append, or a lone read of a copy or fragment held here (a FRAG_READ's table and data
 * are two reads)? Its owner and the owner's client wait for it. */
static bool held_lone(const struct engine *eng)
{
	if (eng->client_inflight || seg_inflight(eng) != eng->held_writes + eng->held_reads)
		return false;
	return eng->held_reads ? !eng->held_writes && eng->held_reads <= 2
			       : eng->held_writes == 1;
}

/* How long the sleep may poll first (loop.h's spin_us; engine_opts.poll_us): while a
 * lone client request waits for its disk I/O, a client was just answered and its
 * next request is likely on the way (QD1), or a holder's lone request is on the disk
 * (held_lone). A wake-up from a sleep, another CPU's
 * especially, costs more than polling for the rest of such a wait; the store stops
 * polling by itself when the waits outlast poll_us (an idle client). At a queue
 * depth the next completion or request ends each sleep soon anyway. */
static unsigned poll_us(const struct engine *eng, bool mirrored_only)
{
	if (!eng->opts.poll_us)
		return 0;
	/* QD1: one request in flight, and no other since none was (client_burst 1: it
	 * is 0 whenever none is in flight); not the last of a queue depth's batch, whose
	 * client has more to send anyway (the polls took CPU the holders needed: r3 QD32
	 * writes 5-7% down) */
	if (eng->client_burst == 1 && !mirrored_only)
		return eng->opts.poll_us;
	if (held_lone(eng))
		return eng->opts.poll_us;
	if (eng->client_inflight == 0 && eng->client_last_burst == 1 &&
	    eng_now_ms() - eng->client_last_ms < POLL_AFTER_REPLY_MS)
		return eng->opts.poll_us;
	return 0;
}

/* How many wake-ups the ring may sleep for (loop.h's min_events). A mirrored append
 * completes when its local write AND its copies did; the local write usually comes
 * first, and waking for it alone is a system call and a context switch for nothing
 * (on a 2-core machine the CPU the holders need then). While every I/O in flight is
 * the local half of such an append whose copies are still out, the ring sleeps
 * until two came. Bounded: each of those local writes completes, and the copies
 * come through the loop's sockets, event fds or timers (timeout_ms); anything else
 * that comes meanwhile (a client's request) waits at most for one local write.
 * With the kernel's min timeout (min_events_bounded), one such append in flight (a
 * QD1 write) sleeps for its local write and every reply it awaits, each its own
 * completion: one wake-up instead of two when the replies come apart, bounded by
 * MIRROR_MIN_WAIT_US; and when its replies all came before its local write (the
 * mirror's half completes on the loop's next turn: mirror_both still counts it), one,
 * where two would sleep on for a wake-up that is not coming. Several appends keep the
 * two (their completions are better taken as they come, to keep the pipeline going). */
static void wait_events(const struct engine *eng, struct loop_wait *w)
{
	bool mirrored_only = eng->mirror_both && seg_inflight(eng) == eng->mirror_both;
	bool counted = eng->mirror && eng->mirror->replies_awaited;

	w->min_events = mirrored_only ? 2 : 1;
	w->min_events_bounded = 0;
	w->min_wait_us = 0;
	w->spin_us = poll_us(eng, mirrored_only);
	/* one client request in flight (QD1): at a queue depth, the append in flight is a
	 * batch and the next one's requests are arriving; sleeping for every reply held
	 * them back a round trip (replicated QD32 writes at 0.5-0.6x, session 19) */
	if (mirrored_only && eng->mirror_both == 1 && eng->client_inflight <= 1 && counted) {
		w->min_events_bounded = 1 + eng->mirror->replies_awaited(eng->mirror_ctx);
		w->min_wait_us = MIRROR_MIN_WAIT_US;
	}
}

int engine_wait_fd(struct engine *eng, struct loop_wait *w, int timeout_ms)
{
	int r;

	wait_events(eng, w);
	r = seg_wait_fd(eng, w, sleep_bound(eng, timeout_ms));

	return r < 0 && (r == -ETIME || r == -EINTR) ? 0 : r;
}

int engine_event_fd(const struct engine *eng)
{
	return seg_event_fd(eng);
}

/* The sooner of two waits in ms; a negative one (nothing due) does not count. */
static int64_t min_deadline(int64_t a, int64_t b)
{
	return b >= 0 && b < a ? b : a;
}

int engine_timeout_ms(const struct engine *eng)
{
	unsigned period = eng->opts.checkpoint_ms ? eng->opts.checkpoint_ms : 5000;
	/* the next periodic turn (eng_ckpt_maybe): the families' clock, which the
	 * checkpoints the cleaner asks for do not reset */
	uint64_t since = eng_now_ms() - eng->fckpt_last_ms;
	int64_t sync = eng->flush_inflight ? -1 : sync_due_ms(eng);

	if (eng->done.head || eng->flush_wait || eng->ckpt_wanted || eng->ckpt_capturing ||
	    sync == 0 || eng_gc_slice_due(eng))
		return 0;
	for (size_t i = 0; i < eng->nvols; i++) {
		const struct engine_volume *vol = eng->vols[i];

		/* a forming batch behind a full pipeline waits for a completion, which
		 * rings the event fd */
		for (const struct batch *b = vol->head; b; b = b->next)
			if ((b->state == BATCH_READY || b->state == BATCH_FORMING) &&
			    vol->ninflight < ONDISK_MAX_INFLIGHT_BATCHES)
				return 0;
	}
	if (eng_flatten_active(eng) || eng_jobs_pending(eng))
		return 1; /* a flatten scans a bounded number of LBAs per poll; a job re-checks
			     what it waits for (the checkpoint thread rings no fd) */
	if (eng->ckpt_busy || eng->parked.head || eng->ndeferred_free)
		return 5; /* the checkpoint thread and the cleaner do not ring the event fd */
	if (since >= period)
		return 0;
	return (int)min_deadline(min_deadline(min_deadline((int64_t)(period - since), sync),
					      eng_prezero_timeout(eng)),
				 eng_defrag_idle_timeout(eng));
}

int engine_wait(struct engine *eng, const bool *done)
{
	while (!*done) {
		int r = engine_poll(eng, 100);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Runs the loop until nothing is in flight anywhere. */
int eng_drain(struct engine *eng)
{
	for (;;) {
		bool busy = eng->done.head || eng->flush_wait || eng->flush_inflight ||
			    eng->ckpt_busy || eng->gc_busy || eng->jobs || eng->repairs ||
			    seg_inflight(eng);
		for (size_t i = 0; i < eng->nvols && !busy; i++)
			busy = eng->vols[i]->head != NULL;
		if (!busy)
			return 0;
		int r = engine_poll(eng, 100);
		if (r < 0)
			return r;
	}
}
