/* engine/scrub.c — scrub of this engine's own sealed segments (engine.h,
 * engine_segment_scrub_async; docs/replication.md, "Scrub").
 *
 *   read     the local copy, whole, in one read (a segment is a few MiB); the slot's
 *            readers count keeps the cleaner from reusing it until the end
 *   judge    every block by the segment's own log (logcheck_classify): the summaries
 *            name each data block's CRC32C, dead blocks included, so a copy is judged
 *            whole, not only where the map still points
 *   repair   each bad data block, one at a time, by eng_repair_block (repair.c: fetched
 *            from a holder that checks it first, checked again here, written back,
 *            read back and checked)
 *   flush    the store, once, if anything was written: a repair is durable before the
 *            caller hears of it
 *
 * A bad header or summary is reported, not repaired: nothing here says what it must
 * be (a holder's copy could be compared, but a copy is good only if something checks
 * it). Threading: the engine's thread; every step is asynchronous.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "engine/engine_internal.h"
#include "engine/logcheck.h"

struct scrub_job {
	struct engine *eng;
	uint32_t slot;
	uint64_t uid;
	uint32_t sno;
	struct engine_scrub_seg *out;
	uint8_t *buf;          /* the local copy */
	uint32_t next;         /* the next block to look at for a repair */
	bool wrote;            /* a repair wrote: flush before the end */
	char what[64];         /* "segment UID.SNO", for the logs */
	engine_cb cb;
	void *arg;
};

void engine_scrub_seg_free(struct engine_scrub_seg *s)
{
	if (!s)
		return;
	free(s->state);
	free(s->crcs);
	memset(s, 0, sizeof(*s));
}

/* While the job runs, out->state holds logcheck's judgement (enum logcheck_block) and
 * SCRUB_FIXED; the caller gets enum engine_scrub_block. */
#define SCRUB_FIXED (LOGCHECK_B_DAMAGED + 1)

static uint8_t public_state(uint8_t s)
{
	switch (s) {
	case LOGCHECK_B_GOOD:
		return ENGINE_SCRUB_GOOD;
	case LOGCHECK_B_BAD:
	case LOGCHECK_B_DAMAGED:
		return ENGINE_SCRUB_BAD;
	case SCRUB_FIXED:
		return ENGINE_SCRUB_FIXED;
	default:
		return ENGINE_SCRUB_UNCHECKED;
	}
}

static void job_end(struct scrub_job *j, int res)
{
	struct engine_scrub_seg *o = j->out;

	for (uint32_t b = 0; b < o->blocks; b++) {
		o->state[b] = public_state(o->state[b]);
		if (o->state[b] == ENGINE_SCRUB_BAD)
			o->crcs[b] = 0;
	}
	j->eng->slots[j->slot].readers--;
	seg_buf_free(j->buf);
	j->cb(j->arg, res);
	free(j);
}

static void flushed(void *arg, int res)
{
	struct scrub_job *j = arg;

	if (res < 0) {
		/* written, not known durable: not counted as fixed */
		log_msg(LOG_ERROR, ENG_LOG, "scrub: %s: the store's flush after the repairs "
			"failed (%s)", j->what, err_str(-res));
		for (uint32_t b = 0; b < j->out->blocks; b++)
			if (j->out->state[b] == SCRUB_FIXED)
				j->out->state[b] = LOGCHECK_B_BAD;
		j->out->nfixed = 0;
	}
	job_end(j, 0);
}

static void repair_next(struct scrub_job *j);

static void repaired(void *arg, int res)
{
	struct scrub_job *j = arg;
	uint32_t b = j->next++;

	j->wrote = j->wrote || res == 0;
	if (res == 0) { /* (the repair logs each block, repaired or not) */
		j->out->state[b] = SCRUB_FIXED;
		j->out->nfixed++;
	}
	repair_next(j);
}

/* The next bad data block from j->next is repaired; at the end, the flush. */
static void repair_next(struct scrub_job *j)
{
	struct engine_scrub_seg *o = j->out;
	int r;

	for (; j->next < o->blocks; j->next++) {
		if (o->state[j->next] != LOGCHECK_B_BAD)
			continue; /* (a DAMAGED one: nothing says what to fetch) */
		r = eng_repair_block(j->eng, j->what, j->slot, j->next, o->crcs[j->next],
				     repaired, j);
		if (r == 0)
			return;
		log_msg(LOG_ERROR, ENG_LOG, "scrub: %s block %" PRIu32 ": the local copy fails "
			"its checksum and no copy elsewhere can be asked (%s)", j->what, j->next,
			err_str(-r));
	}
	if (!j->wrote || seg_flush_local(j->eng, flushed, j) < 0)
		flushed(j, j->wrote ? -EIO : 0);
}

static void read_done(void *arg, int res)
{
	struct scrub_job *j = arg;
	struct engine_scrub_seg *o = j->out;

	if (res < 0) {
		log_msg(LOG_ERROR, ENG_LOG, "scrub: %s: reading the local copy failed (%s)",
			j->what, err_str(-res));
		job_end(j, res);
		return;
	}
	logcheck_classify(j->buf, o->blocks, j->eng->slots[j->slot].generation, o->state,
			  o->crcs);
	for (uint32_t b = 0; b < o->blocks; b++) {
		if (o->state[b] == LOGCHECK_B_BAD || o->state[b] == LOGCHECK_B_DAMAGED)
			o->nbad++;
		if (o->state[b] == LOGCHECK_B_UNCHECKED)
			o->nunchecked++;
		if (o->state[b] == LOGCHECK_B_DAMAGED)
			log_msg(LOG_ERROR, ENG_LOG, "scrub: %s block %" PRIu32 ": the local copy's "
				"%s does not decode (not repaired: nothing says what it must be)",
				j->what, b, b == 0 ? "header" : "batch summary");
	}
	repair_next(j);
}

int engine_segment_scrub_async(struct engine *eng, uint64_t uid, uint32_t sno,
			       struct engine_scrub_seg *out, engine_cb cb, void *arg)
{
	int64_t slot = eng_own_slot(eng, uid, sno, true);
	struct iovec iov;
	struct scrub_job *j;
	uint32_t used;
	int r;

	memset(out, 0, sizeof(*out));
	if (slot < 0)
		return (int)slot;
	if (eng->slots[slot].local_writes)
		return -EBUSY;
	used = eng->slots[slot].used;
	j = calloc(1, sizeof(*j));
	out->state = calloc(used ? used : 1, 1);
	out->crcs = calloc(used ? used : 1, sizeof(uint32_t));
	if (!j || !out->state || !out->crcs || !(j->buf = seg_buf_alloc((size_t)(used ? used : 1) *
									  ENGINE_BLOCK_SIZE))) {
		free(j);
		engine_scrub_seg_free(out);
		return -ENOMEM;
	}
	out->blocks = used;
	*j = (struct scrub_job){ .eng = eng, .slot = (uint32_t)slot, .uid = uid, .sno = sno,
				 .out = out, .buf = j->buf, .cb = cb, .arg = arg };
	snprintf(j->what, sizeof(j->what), "segment %016" PRIx64 ".%08" PRIx32, uid, sno);
	if (used == 0) {
		eng->slots[slot].readers++;
		read_done(j, 0);
		return 0;
	}
	iov = (struct iovec){ j->buf, (size_t)used * ENGINE_BLOCK_SIZE };
	r = seg_read(eng, (uint32_t)slot, 0, &iov, 1, read_done, j);
	if (r < 0) {
		seg_buf_free(j->buf);
		free(j);
		engine_scrub_seg_free(out);
		return r;
	}
	eng->slots[slot].readers++;
	return 0;
}
