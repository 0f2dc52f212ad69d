/* engine/repair.c — read-around and repair of a block whose local copy failed.
 *
 * A read (io.c) whose block fails its CRC32C, or whose read from the store fails,
 * hands that block here when its segment's family has copies on other nodes (the
 * segment mirror wants the family and has a read op: segment.h). One repair per
 * block:
 *   fetch   a one-block seg_fetch (the stage a remote entry's reads use too) takes
 *           the block from a copy elsewhere, checked against the map's CRC on
 *           arrival (again here: the border is asserted both sides); the client's
 *           buffer gets it and its read completes at once
 *   write   the good block is written back over the bad one: the same offset of the
 *           same slot (a sealed segment's bytes never change, and an open segment's
 *           written blocks do not either: rewriting them with the same bytes is safe)
 *   verify  the block is read again and checked; blocks_repaired counts it, and the
 *           log says so once for the block
 * No copy with good data: the read fails with the local error, as on a single node,
 * and blocks_unrecoverable counts it.
 *
 * A scrub (scrub.c) repairs the bad blocks it finds the same way, with no read waiting
 * (eng_repair_block): the fetch, the write, the check; its callback gets 0 once the
 * block reads back good.
 *
 * The slot cannot change under a repair: it holds the slot's `readers` count from the
 * start to the end, like any read, so a slot the cleaner frees meanwhile is not
 * released (seg_release defers it) nor given to another segment (slot_take skips
 * it). A slot that is being freed (its FREE header going out, or its release
 * deferred) is not written: its segment is going away and nothing will read it.
 * Two reads of one bad block each fetch it; only one writes it back.
 *
 * Threading: the engine's thread; every step is asynchronous.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "engine/engine_internal.h"

enum repair_step { REPAIR_FETCH, REPAIR_WRITE, REPAIR_VERIFY };

struct repair {
	struct engine *eng;
	struct seg_fetch f;  /* the fetch of the good copy into buf */
	struct seg_fetch_block want;
	struct ioreq *req;   /* the read, until the block is in dst; then NULL */
	uint8_t *dst;        /* the read's buffer for the block */
	uint8_t *buf;        /* aligned: the good copy, then what reads back */
	char where[ENGINE_VOLUME_NAME_MAX + 48]; /* "volume V: lba N", or the scrub's */
	uint64_t generation; /* the slot's segment when the repair began */
	uint32_t slot, block, crc;
	int why;             /* the local failure: the read's answer if no copy is good */
	int result;          /* 0 once the block reads back good */
	engine_cb done;      /* a scrub's (no read waits): called with result at the end */
	void *done_arg;
	enum repair_step step;
	struct repair *next; /* eng->repairs */
};

static const char *failure_text(int why)
{
	return why == -EILSEQ ? "checksum mismatch" : err_str(-why);
}

static void repair_end(struct repair *rp)
{
	struct engine *eng = rp->eng;

	for (struct repair **p = &eng->repairs; *p; p = &(*p)->next)
		if (*p == rp) {
			*p = rp->next;
			break;
		}
	eng->slots[rp->slot].readers--;
	if (rp->req)
		eng_req_put(eng, rp->req, rp->why);
	if (rp->done)
		rp->done(rp->done_arg, rp->result);
	seg_buf_free(rp->buf);
	free(rp);
}

/* Is another repair of the same block writing it back already? */
static bool being_written(const struct repair *rp)
{
	for (const struct repair *o = rp->eng->repairs; o; o = o->next)
		if (o != rp && o->step != REPAIR_FETCH && o->slot == rp->slot &&
		    o->block == rp->block)
			return true;
	return false;
}

static void repair_verified(void *arg, int res)
{
	struct repair *rp = arg;

	rp->result = res < 0 ? res : -EILSEQ;
	if (res >= 0 && crc32c(rp->buf, QUILL_BLOCK_SIZE) == rp->crc) {
		rp->result = 0;
		rp->eng->stats.blocks_repaired++;
		log_msg(LOG_WARN, ENG_LOG, "%s (slot %u block %u): local copy repaired from a "
			"copy elsewhere (it was: %s)", rp->where, rp->slot, rp->block,
			failure_text(rp->why));
	} else {
		LOG_RATELIMITED(LOG_ERROR, ENG_LOG, "%s (slot %u block %u): the repaired block "
				"does not read back good (%s): the local copy stays bad",
				rp->where, rp->slot, rp->block,
				res < 0 ? err_str(-res) : "checksum mismatch");
	}
	repair_end(rp);
}

static void repair_written(void *arg, int res)
{
	struct repair *rp = arg;
	struct iovec iov = { rp->buf, QUILL_BLOCK_SIZE };
	int r = res;

	if (res >= 0) {
		memset(rp->buf, 0, QUILL_BLOCK_SIZE); /* what reads back is the disk's */
		rp->step = REPAIR_VERIFY;
		r = seg_read(rp->eng, rp->slot, rp->block, &iov, 1, repair_verified, rp);
		if (r == 0)
			return;
	}
	repair_verified(rp, r);
}

/* May the good block go back into the slot? Not when its segment is going away. */
static bool slot_writable(const struct repair *rp)
{
	const struct slot *s = &rp->eng->slots[rp->slot];

	for (size_t i = 0; i < rp->eng->ndeferred_free; i++)
		if (rp->eng->deferred_free[i] == rp->slot)
			return false;
	return s->state != SLOT_FREE && !s->freeing && s->generation == rp->generation;
}

static void repair_write(struct repair *rp)
{
	struct iovec iov = { rp->buf, QUILL_BLOCK_SIZE };
	int r;

	if (!slot_writable(rp) || being_written(rp)) {
		rp->result = -EAGAIN; /* going away, or another repair writes it */
		repair_end(rp);
		return;
	}
	rp->step = REPAIR_WRITE;
	r = seg_write(rp->eng, rp->slot, rp->block, &iov, 1, repair_written, rp);
	if (r < 0)
		repair_verified(rp, r);
}

static void repair_fetched(void *arg, int res)
{
	struct repair *rp = arg;

	if (res < 0) { /* (a block that arrived bad is -EILSEQ: fetch_done checked it) */
		rp->eng->stats.blocks_unrecoverable++;
		rp->result = res;
		LOG_RATELIMITED(LOG_ERROR, ENG_LOG, "%s (slot %u block %u): local copy failed "
				"(%s) and no copy elsewhere is good (%s)%s",
				rp->where, rp->slot, rp->block, failure_text(rp->why),
				err_str(-res), rp->req ? ": returning an I/O error" : "");
		repair_end(rp); /* the read fails with the local error */
		return;
	}
	if (rp->req) {
		memcpy(rp->dst, rp->buf, QUILL_BLOCK_SIZE);
		eng_req_put(rp->eng, rp->req, 0); /* the client has its block: no wait */
		rp->req = NULL;
	}
	repair_write(rp);
}

/* A repair of (slot, block) to crc; its fetch is started. NULL without memory, or
 * when no copy elsewhere can be asked. */
static struct repair *repair_new(struct engine *eng, const char *where, uint32_t slot,
				 uint32_t block, uint32_t crc, int why)
{
	struct slot *s = &eng->slots[slot];
	struct repair *rp = calloc(1, sizeof(*rp));

	assert(!s->remote); /* a remote entry's reads are fetches of their own (remote.c) */
	if (!rp)
		return NULL;
	*rp = (struct repair){ .eng = eng, .generation = s->generation, .slot = slot,
			       .block = block, .crc = crc, .why = why, .result = -EIO };
	snprintf(rp->where, sizeof(rp->where), "%s", where);
	rp->buf = seg_buf_alloc(QUILL_BLOCK_SIZE);
	rp->want = (struct seg_fetch_block){ .dst = rp->buf, .crc = crc };
	rp->f = (struct seg_fetch){ .block = block, .nblocks = 1, .want = &rp->want,
				    .cb = repair_fetched, .arg = rp };
	if (!rp->buf || seg_fetch(eng, slot, &rp->f) < 0) {
		seg_buf_free(rp->buf);
		free(rp);
		return NULL;
	}
	s->readers++;
	rp->next = eng->repairs;
	eng->repairs = rp;
	return rp;
}

bool eng_repair_start(struct engine *eng, struct ioreq *req, const struct engine_volume *vol,
		      uint64_t lba, uint32_t slot, uint32_t block, uint32_t crc, uint8_t *dst,
		      int why)
{
	char where[ENGINE_VOLUME_NAME_MAX + 48];
	struct repair *rp;

	snprintf(where, sizeof(where), "volume %s: lba %" PRIu64, vol->rec.name, lba);
	rp = repair_new(eng, where, slot, block, crc, why);
	if (!rp)
		return false;
	rp->req = req;
	rp->dst = dst;
	req->pending++;
	LOG_RATELIMITED(LOG_WARN, ENG_LOG, "%s (slot %u block %u): local copy failed (%s): "
			"reading it from a copy elsewhere", where, slot, block, failure_text(why));
	return true;
}

int eng_repair_block(struct engine *eng, const char *what, uint32_t slot, uint32_t block,
		     uint32_t crc, engine_cb cb, void *arg)
{
	char where[ENGINE_VOLUME_NAME_MAX + 48];
	struct repair *rp;

	snprintf(where, sizeof(where), "scrub: %s", what);
	rp = repair_new(eng, where, slot, block, crc, -EILSEQ);

	if (!rp)
		return -EOPNOTSUPP;
	rp->done = cb;
	rp->done_arg = arg;
	return 0;
}
