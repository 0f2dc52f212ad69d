/* engine/remote.c — the engine's side of sealed segments with no local copy.
 *
 * engine_segment_drop_local: a sealed, settled segment of this node's log gives up
 * its store slot. The segment layer makes it a remote entry (segment_remote.c); here
 * every map entry that names the store slot is pointed at the entry instead (same
 * block, same CRC), so the store slot's live count drops to zero and the next
 * checkpoint — which writes those map chunks and the entry's "T" record in one batch
 * — frees it once that is durable. Until then a crash leaves the old checkpoint, whose
 * maps name the store slot and its data, which is still there.
 *
 * Reads of a remote entry (io.c read_span → eng_remote_read) are fetches: a span of
 * the entry's blocks that a client's read wants (with the few blocks between its runs)
 * is one seg_fetch, whose mirror copies each block, checked against the map's CRC,
 * straight into the client's buffer. No write-back: there is no local copy to mend.
 *
 * The cleaner cleans remote entries too (gc.c, "remote victims": fetched whole).
 * Which map entries name the slot: the segment's own summaries say, when the caller
 * read them (engine_segment_drop_local_hinted: the encoder has the image in hand);
 * without them, or when they leave some, a walk of every layer's whole map on the
 * loop thread (O(volume size) per segment dropped).
 * Not here yet (docs/erasure-coding.md): a map rebuilt from the log alone (--rebuild-meta) does not know remote
 * entries.
 *
 * Threading: the engine's thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "common/array.h"
#include "common/err.h"
#include "common/log.h"
#include "engine/engine_internal.h"
#include "engine/map.h"

struct repoint {
	uint32_t from;
	struct repoint_entry {
		uint64_t lba;
		struct map_loc loc;
	} *v;
	size_t n, cap;
};

static int note_lba(void *arg, uint64_t lba, const struct map_loc *loc)
{
	struct repoint *rp = arg;

	if (loc->slot != rp->from)
		return 0;
	if (ARRAY_GROW(rp->v, rp->cap, rp->n, 256) < 0)
		return -ENOMEM;
	rp->v[rp->n++] = (struct repoint_entry){ lba, *loc };
	return 0;
}

/* Points vol's entries in slot `from` at slot `to` (same block, same CRC). */
static int repoint_layer(struct engine_volume *vol, uint32_t from, uint32_t to)
{
	struct repoint rp = { .from = from };
	int r = map_for_each(vol->map, note_lba, &rp);

	for (size_t i = 0; r >= 0 && i < rp.n; i++) {
		struct map_loc dst = rp.v[i].loc;

		dst.slot = to;
		r = map_move(vol->map, rp.v[i].lba, from, rp.v[i].loc.block, &dst);
	}
	free(rp.v);
	return r < 0 ? r : 0;
}

/* The entries of every layer at the hinted LBAs that name (from, b): pointed at `to`.
 * Every layer, as repoint_layer: a clone's map may name the slot at the same LBA. */
static int repoint_hinted(struct engine *eng, uint32_t from, uint32_t to, const uint64_t *lba,
			  uint32_t nblocks)
{
	for (uint32_t b = 0; b < nblocks && eng->slots[from].live; b++) {
		if (lba[b] == UINT64_MAX)
			continue;
		for (size_t v = 0; v < eng->nvols; v++) {
			struct map *m = eng->vols[v]->map;
			struct map_loc loc;
			int r;

			if (!map_get(m, lba[b], &loc))
				continue;
			loc.slot = to; /* moved only if it names (from, b) */
			r = map_move(m, lba[b], from, b, &loc);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* Every entry naming slot i goes to `to`: those the hint finds, then, if any is left,
 * a walk of every layer's map (a merge may have left a clone's map naming another
 * family's segment: docs/engine.md, "Next: cluster-wide segment ids"). */
static int repoint_all(struct engine *eng, uint32_t i, uint32_t to, const uint64_t *lba,
		       uint32_t nblocks)
{
	int r = lba ? repoint_hinted(eng, i, to, lba, nblocks) : 0;

	if (r < 0 || !eng->slots[i].live)
		return r;
	eng->stats.drop_walks++;
	for (size_t v = 0; v < eng->nvols && r == 0; v++)
		r = repoint_layer(eng->vols[v], i, to);
	return r;
}

/* May the segment in slot i leave now? Nothing may hold (slot, block) pairs of it
 * across the map's change but reads (which finish on the store slot: it is freed
 * only when they are done). */
static int drop_allowed(const struct engine *eng, uint32_t i, uint64_t uid)
{
	if (!eng->mirror || !eng->mirror->fetch || !eng->mirror->wants(eng->mirror_ctx, uid))
		return -EOPNOTSUPP; /* no copies elsewhere to read from */
	if (eng->ckpt_capturing || (eng->gc_busy && eng->gc_victim == i))
		return -EBUSY; /* a checkpoint taking its chunks, or the cleaner on it */
	for (size_t v = 0; v < eng->nvols; v++)
		if (eng->vols[v]->rec.uid == uid && eng->vols[v]->job)
			return -EBUSY; /* a snapshot, flatten or merge of the family */
	return 0;
}

int engine_segment_drop_local(struct engine *eng, uint64_t uid, uint32_t sno)
{
	return engine_segment_drop_local_hinted(eng, uid, sno, NULL, 0);
}

int engine_segment_drop_local_hinted(struct engine *eng, uint64_t uid, uint32_t sno,
				     const uint64_t *lba, uint32_t nblocks)
{
	int64_t i = eng_own_slot(eng, uid, sno, false);
	uint32_t to;
	int r;

	if (i < 0)
		return (int)i;
	r = drop_allowed(eng, (uint32_t)i, uid);
	if (r == 0)
		r = seg_drop_local(eng, (uint32_t)i, &to);
	if (r < 0)
		return r;
	r = repoint_all(eng, (uint32_t)i, to, lba, nblocks);
	if (r < 0) /* the entries moved read the copies, the others the slot: both hold */
		log_msg(LOG_ERROR, ENG_LOG, "segment %016" PRIx64 ".%08" PRIx32 ": dropping its "
			"local copy stopped half way (out of memory): it stays", uid, sno);
	else
		log_msg(LOG_INFO, ENG_LOG, "segment %016" PRIx64 ".%08" PRIx32 ": local copy "
			"(slot %" PRId64 ") dropped, read from its copies elsewhere", uid, sno, i);
	/* The store slot is free once a checkpoint lands. Not asked for here: an EC
	 * owner drops a segment as each is encoded (several a second under a writer),
	 * and each checkpoint flushes the store and RocksDB (an SST, its fsync, the
	 * compactions after), which cost more than the encoding did. The slot counts
	 * as empty (eng_slot_frees_at_checkpoint): the cleaner asks for the checkpoint
	 * as soon as space is wanted (eng_gc_ckpt_due), else the periodic one frees it. */
	return r;
}

/* One run of a remote entry that a client's read wants: one fetch. */
struct remote_read {
	struct seg_fetch f;
	struct engine_volume *vol;
	struct ioreq *req;
	uint64_t lba;  /* of the request's block 0 */
	uint8_t *dst;  /* the request's buffer (block 0) */
	struct seg_fetch_block want[];
};

static void remote_read_done(void *arg, int res)
{
	struct remote_read *rr = arg;
	struct engine *eng = rr->vol->eng;

	for (uint32_t i = 0; i < rr->f.nblocks; i++) {
		struct seg_fetch_block *w = &rr->want[i];

		if (!w->dst || w->res == 0) /* (fetch_done checked each one's CRC) */
			continue;
		if (res == 0)
			res = w->res;
		eng->stats.blocks_unrecoverable++;
		LOG_RATELIMITED(LOG_ERROR, ENG_LOG, "volume %s: lba %" PRIu64 " (segment %016"
				PRIx64 ".%08" PRIx32 " block %" PRIu32 ", no local copy): no copy "
				"elsewhere is good (%s): returning an I/O error", rr->vol->rec.name,
				rr->lba + (uint64_t)(w->dst - rr->dst) / QUILL_BLOCK_SIZE, rr->f.uid,
				rr->f.sno, rr->f.block + i, err_str(-w->res));
	}
	eng_req_put(eng, rr->req, res);
	free(rr);
}

int eng_remote_read(struct engine_volume *vol, struct ioreq *req, uint64_t lba, uint8_t *dst,
		    const struct read_block *b, uint32_t n)
{
	uint32_t span = b[n - 1].block - b[0].block + 1;
	struct remote_read *rr = calloc(1, sizeof(*rr) + span * sizeof(rr->want[0]));
	int r;

	if (!rr)
		return -ENOMEM;
	*rr = (struct remote_read){ .f = { .block = b[0].block, .nblocks = span, .want = rr->want,
					   .cb = remote_read_done, .arg = rr },
				    .vol = vol, .req = req, .lba = lba, .dst = dst };
	for (uint32_t i = 0; i < n; i++) /* the blocks between runs stay unwanted */
		rr->want[b[i].block - b[0].block] = (struct seg_fetch_block){
			.dst = dst + (size_t)b[i].idx * QUILL_BLOCK_SIZE, .crc = b[i].crc };
	r = seg_fetch(vol->eng, b[0].slot, &rr->f);
	if (r < 0) {
		free(rr);
		return r == -EOPNOTSUPP ? -EIO : r; /* no mirror now: no copy can be read */
	}
	req->pending++;
	return 0;
}
