/* engine/gc.c — the cleaner.
 *
 * When free slots run low (or writes wait for space), the cleaner picks a sealed
 * slot by cost-benefit as in Rosenblum & Ousterhout's LFS: benefit/cost =
 * (1 - u) * age / (1 + u), u = live fraction, age = batches written since the slot's
 * newest one. It reads the whole slot, finds the live blocks through the slot's own
 * summaries (a block is live when its volume's map still points at it), verifies
 * their checksums, and appends them to their volume's log as MOVE entries: a MOVE
 * applies only if the block has not been overwritten meanwhile, at run time and at
 * replay alike. Once the moves retire the slot holds nothing live, and the next
 * checkpoint frees it.
 *
 * The live blocks are appended in LBA order, not in the order the victim holds them:
 * random writes leave a volume's neighbouring blocks scattered through its log, and
 * every relocation gathers those of the victim into ascending runs, which a
 * sequential read then takes with few I/Os (io.c joins neighbouring blocks).
 *
 * Slices. A victim may hold a thousand live blocks: appended at once they filled the
 * volume's whole pipeline (four batches of 168 blocks), and every client write of
 * that volume waited behind ~2.7 MiB of the cleaner's writes (a QD1 write's worst
 * case, the tail of a QD32 job). So the moves go in slices of ENG_GC_SLICE_BLOCKS, one
 * per poll, and only while the volume has fewer than ENG_GC_MAX_INFLIGHT batches in
 * flight: client writes share the batches and keep the rest of the pipeline. When
 * space is short (writes parked, free slots down to the reserve + 2) the rest goes at
 * once, as before: client writes between slices took the slots the moves needed, and
 * the cleaner stalled with writes failing -ENOSPC (test_gc_engine). Each move
 * is checked again when its slice is appended (still live, no write or trim of it
 * pending), so a MOVE still always applies. gc_busy stays set until the last one
 * retired: a job waiting for a quiet volume waits for all of them (job.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "engine/engine_internal.h"
#include "engine/logcheck.h"

/* Does cleaning s reclaim room? Its live blocks are written again, with a summary
 * and whatever it carries (TOMB and LAYER blocks that still count), so "at most 90%
 * live" alone is not enough: a slot the cleaner itself packed holds less than 90%
 * data once a TOMB block and summaries take their share, and moving it filled another
 * slot just as full, forever (test_gc: an_unreachable_goal_stalls_instead_of_cycling).
 * So a slot with live blocks must also hold (100 - ENG_GC_MAX_LIVE_PCT)% of a slot in
 * what a move drops: blocks that died in it, and the summaries beyond the one its
 * moves take. A slot found at start-up or adopted has no such counts: the 90% rule
 * alone, so it is moved at most once on that guess (its blocks land in a counted
 * slot). */
static bool reclaims(const struct slot *s, uint32_t blocks_per_seg)
{
	uint64_t drops;

	if ((uint64_t)s->live * 100 > (uint64_t)blocks_per_seg * ENG_GC_MAX_LIVE_PCT)
		return false;
	if (s->live == 0 || !s->dead_known)
		return true;
	drops = (uint64_t)s->dead + (s->sums ? s->sums - 1 : 0);
	return drops * 100 >= (uint64_t)blocks_per_seg * (100 - ENG_GC_MAX_LIVE_PCT);
}

static bool cleanable(const struct slot *s, uint32_t blocks_per_seg)
{
	/* nothing live but its family's newest MAPS blocks: a checkpoint rewrites them
	 * (capture_begin asks for it), nothing to move */
	return s->state == SLOT_SEALED && s->pending == 0 && !s->gc_skip && !s->freeing &&
	       !s->held && !(s->live == 0 && s->fmaps) && reclaims(s, blocks_per_seg);
}

bool eng_slot_frees_at_checkpoint(const struct slot *slots, uint32_t nslots, uint32_t i)
{
	const struct slot *s = &slots[i];

	return s->state == SLOT_SEALED && s->live == 0 && s->pending == 0 && !s->held &&
	       s->fmaps == 0 && !eng_slot_pinned(slots, nslots, i);
}

/* Cost-benefit (LFS): the space a move frees, weighted by how long the segment has
 * stayed as it is, over the cost of reading and rewriting its live share. */
static double gc_score(const struct slot *s, uint32_t blocks_per_seg, uint64_t next_seq)
{
	double u = (double)s->live / blocks_per_seg;
	double age = (double)(next_seq - s->last_seq) + 1.0;

	return (1.0 - u) * age / (1.0 + u);
}

int64_t eng_gc_pick_victim(const struct slot *slots, uint32_t nslots, uint32_t blocks_per_seg,
			   uint64_t next_seq, uint32_t *empty_waiting)
{
	int64_t best = -1;
	double best_score = 0;

	*empty_waiting = 0;
	for (uint32_t i = 0; i < nslots; i++) {
		const struct slot *s = &slots[i];
		double score;

		if (eng_slot_frees_at_checkpoint(slots, nslots, i)) {
			(*empty_waiting)++;
			continue;
		}
		if (!cleanable(s, blocks_per_seg))
			continue;
		score = gc_score(s, blocks_per_seg, next_seq);
		if (best < 0 || score > best_score) {
			best = i;
			best_score = score;
		}
	}
	return best;
}

void eng_space_census(const struct engine *eng, struct eng_space *sp)
{
	const uint32_t n = eng->sb.segment_count;

	*sp = (struct eng_space){ 0 };
	for (uint32_t i = 0; i < n; i++) {
		const struct slot *s = &eng->slots[i];

		if (s->state == SLOT_FREE)
			continue;
		sp->used++;
		if (s->held) { /* another node's copy: nothing here to clean or free */
			sp->held++;
			continue;
		}
		sp->live += s->live;
		sp->tombs += s->tombs;
		if (s->state != SLOT_SEALED || s->pending || s->readers || s->freeing)
			sp->busy++;
		else if (s->gc_skip)
			sp->skipped++;
		else if (s->live == 0 && eng_slot_pinned(eng->slots, n, i))
			sp->pinned++;
		else if (s->live == 0)
			sp->waiting++;
		else if (!cleanable(s, eng->blocks_per_seg))
			sp->too_live++;
		else
			sp->cleanable++;
	}
}

void eng_space_describe(const struct engine *eng, char *buf, size_t len)
{
	struct eng_space sp;

	eng_space_census(eng, &sp);
	snprintf(buf, len, "%u of %u segments in use: %llu MiB live data; %u too live to clean, "
		 "%u cleanable, %u empty but kept for their %llu trims, %u empty awaiting a "
		 "checkpoint, %u busy (open or I/O in flight), %u with a bad block, %u held "
		 "for other nodes",
		 sp.used, eng->sb.segment_count,
		 (unsigned long long)(sp.live * QUILL_BLOCK_SIZE >> 20), sp.too_live, sp.cleanable,
		 sp.pinned, (unsigned long long)sp.tombs, sp.waiting, sp.busy, sp.skipped, sp.held);
}

static void moves_done(void *arg, int res)
{
	struct engine *eng = arg;

	if (res < 0)
		LOG_RATELIMITED(LOG_ERROR, ENG_LOG, "cleaner: moving slot %u failed: %s",
				eng->gc_victim, err_str(-res));
	else
		log_msg(LOG_DEBUG, ENG_LOG, "cleaner: slot %u: moved %u live blocks; of its %u "
			"trims, %u tombs still hide something", eng->gc_victim, eng->gc_nmoves,
			eng->gc_trims_seen, eng->gc_trims_kept);
	eng->gc_no_room = res == -ENOSPC;
	eng->gc_busy = false;
	if (res == 0) /* its trims are in a TOMB block now, if they still hide anything */
		eng->slots[eng->gc_victim].carried = true;
	eng->stats.gc_runs++;
	if (seg_is_remote(eng, eng->gc_victim)) {
		struct slot *v = &eng->slots[eng->gc_victim];

		eng->stats.gc_remote_runs++;
		if (res == 0 && eng->gc_nmoves == 0 && v->live && eng->gc_npending >= v->live) {
			/* every live block it has is being written over right now (a
			 * sequential writer sweeping it): not a count that disagrees with its
			 * log. Those writes usually empty it; if not, it is taken again. */
			log_msg(LOG_DEBUG, ENG_LOG, "cleaner: segment %016" PRIx64 ".%08" PRIx32
				" (no local copy): the %u live blocks found in its log are all being "
				"written over: taken again later if need be", v->family_uid, v->sno,
				eng->gc_npending);
			eng->gc_remote_next_ms = eng_now_ms() + ENG_GC_REMOTE_PENDING_MS;
		} else if (res == 0 && eng->gc_nmoves == 0 && v->live) {
			/* live blocks its summaries do not show (not this log's copy?): picking
			 * it again would read it again for nothing, every ENG_GC_REMOTE_GAP_MS */
			log_msg(LOG_WARN, ENG_LOG, "cleaner: segment %016" PRIx64 ".%08" PRIx32
				" (no local copy): %u live blocks but none found in its log: "
				"left as is", v->family_uid, v->sno, v->live);
			v->gc_skip = true;
		}
		/* A remote entry costs no local slot: the next periodic checkpoint frees
		 * it (and deletes its copies); not asked for now, as each checkpoint flushes
		 * the store and RocksDB (one per victim, several a second under a writer,
		 * held the clients' writes at each flush). Until then it counts no more
		 * among the remote entries whose dead blocks call for cleaning. */
	}
}

/* Is data block `block` of the victim, holding lba, still what the map points at? */
static bool block_live(struct engine_volume *vol, uint64_t lba, uint32_t slot, uint32_t block,
		       struct map_loc *loc)
{
	return map_get(vol->map, lba, loc) && loc->slot == slot && loc->block == block;
}

/* Walks the victim's batches in gc_buf (past a damaged summary too, as replay does);
 * with move=false only checks the live blocks' checksums, with move=true carries the
 * records and lists the live blocks in gc_moves for append_moves(). A live block that fails its checksum is never moved: the slot stays as is,
 * and reads of the block keep failing rather than returning anything else. */
static int visit_live(struct engine *eng, struct engine_volume *vol, bool move)
{
	const struct slot *s = &eng->slots[eng->gc_victim];
	struct segment_header h = { .state = ONDISK_SEG_USED, .generation = s->generation };
	struct summary sum;
	struct logcheck_walk w;
	struct logcheck_item it;

	/* the header's volume: a merged snapshot's slots name the snapshot */
	memcpy(&h.volume_id, eng->gc_buf + offsetof(struct ondisk_segment_header, volume_id),
	       sizeof(h.volume_id));
	logcheck_walk_init(&w, eng->gc_buf, s->used, &h, UINT64_MAX);
	for (logcheck_walk_next(&w, &sum, &it); it.kind != LOGCHECK_END;
	     logcheck_walk_next(&w, &sum, &it)) {
		const uint8_t *p = eng->gc_buf + (size_t)it.pos * QUILL_BLOCK_SIZE;
		uint32_t d = 0;

		if (it.kind != LOGCHECK_BATCH)
			continue;
		for (uint32_t i = 0; i < sum.nentries; i++) {
			const struct summary_entry *e = &sum.entries[i];
			uint32_t block = it.pos + 1 + d;
			const uint8_t *data = p + (size_t)(1 + d) * QUILL_BLOCK_SIZE;
			struct map_loc loc;
			int r;

			if (ONDISK_ENTRY_ZEROES(e->kind) || e->kind == ONDISK_ENTRY_LAYER ||
			    e->kind == ONDISK_ENTRY_TOMB) {
				d += ONDISK_ENTRY_HAS_BLOCK(e->kind);
				/* records and tombstones: catalog.c decides what still counts */
				r = move ? eng_catalog_carry(vol, &sum, e, block, data) : 0;
				if (r < 0)
					return r;
				continue;
			}
			d++;
			if (ONDISK_ENTRY_FCKPT_PART(e->kind))
				continue; /* no map names it; the next checkpoint rewrites it */
			if (!block_live(vol, e->lba, eng->gc_victim, block, &loc))
				continue;
			/* a write or trim of it not yet retired comes first and wins; a MOVE
			 * that would lose is not written, so that a MOVE always applies (a
			 * rebuild cannot check its source, which is gone by then) */
			if (eng_lba_pending(vol, e->lba)) {
				eng->gc_npending += move;
				continue;
			}
			if (!move) {
				if (crc32c(data, QUILL_BLOCK_SIZE) != loc.crc) {
					log_msg(LOG_ERROR, ENG_LOG, "cleaner: volume %s lba %llu in "
						"slot %u fails its checksum; slot left as is",
						vol->rec.name, (unsigned long long)e->lba,
						eng->gc_victim);
					return -EILSEQ;
				}
				continue;
			}
			eng->gc_moves[eng->gc_nmoves++] = (struct gc_move){
				.lba = e->lba, .block = block, .crc = loc.crc, .data = data };
		}
	}
	return 0;
}

static int gc_move_cmp(const void *a, const void *b)
{
	const struct gc_move *x = a, *y = b;

	return x->lba < y->lba ? -1 : x->lba > y->lba;
}

/* Appends the next slice of the live blocks visit_live() found, in LBA order (see the
 * top): 0 while more remain, 1 once all are appended (the TOMB block too), or -errno.
 * A block written, trimmed or moved since it was found is left where it is. */
static int append_slice(struct engine *eng, struct engine_volume *vol, bool all)
{
	uint32_t end = all ? eng->gc_nmoves : eng->gc_next_move + ENG_GC_SLICE_BLOCKS;
	int r;

	if (end > eng->gc_nmoves)
		end = eng->gc_nmoves;
	for (; eng->gc_next_move < end; eng->gc_next_move++) {
		const struct gc_move *m = &eng->gc_moves[eng->gc_next_move];
		struct map_loc loc;

		if (!block_live(vol, m->lba, eng->gc_victim, m->block, &loc) ||
		    eng_lba_pending(vol, m->lba))
			continue;
		r = eng_append_data(vol, m->lba, m->data, ONDISK_ENTRY_MOVE, eng->gc_victim,
				    m->block, m->crc, SLOT_FOR_GC, &eng->gc_req);
		if (r < 0)
			return r;
	}
	if (eng->gc_next_move < eng->gc_nmoves)
		return 0;
	r = eng_catalog_carry_end(vol);
	return r < 0 ? r : 1;
}

/* A slice of the moves, when the victim's volume has room in its pipeline; the
 * cleaner's own reference on gc_req goes once all are appended (or one failed). */
static void move_slice(struct engine *eng)
{
	struct engine_volume *vol = eng_volume_by_id(eng, eng->slots[eng->gc_victim].volume_id);
	int r = -ENOENT; /* gone meanwhile (a job waits for the cleaner): its TOMB block
			    unwritten, the slot is not marked carried */

	/* space short: the rest at once, before client writes take the slots the moves
	 * need (they wait for space anyway) */
	bool short_of_space = eng->parked.head || eng->nfree <= eng->gc_reserve + 2;

	if (vol && vol->ninflight >= ENG_GC_MAX_INFLIGHT && !short_of_space)
		return; /* its batches' completion rings the event fd */
	if (vol)
		r = append_slice(eng, vol, short_of_space);
	if (r == 0)
		return;
	eng->gc_moving = false;
	eng_req_put(eng, &eng->gc_req, r < 0 ? r : 0);
}

/* Finds the victim's live blocks (gc_moves) and carries its records; the blocks are
 * moved in slices (move_slice). */
static int relocate(struct engine *eng, struct engine_volume *vol)
{
	int r;

	if (!eng->gc_moves) {
		eng->gc_moves = malloc((size_t)eng->blocks_per_seg * sizeof(eng->gc_moves[0]));
		if (!eng->gc_moves)
			return -ENOMEM;
	}
	eng->gc_nmoves = 0;
	eng->gc_npending = 0;
	eng->gc_next_move = 0;
	eng->gc_trims_seen = eng->gc_trims_kept = 0;
	eng->gc_ntrims = 0; /* what a failed run left */
	if (eng->gc_tombs)
		eng->gc_tombs->count = 0;
	r = visit_live(eng, vol, true);
	if (r < 0)
		return r;
	qsort(eng->gc_moves, eng->gc_nmoves, sizeof(eng->gc_moves[0]), gc_move_cmp);
	return 0;
}

static void victim_read(void *arg, int res)
{
	struct engine *eng = arg;
	struct slot *s = &eng->slots[eng->gc_victim];
	struct engine_volume *vol = eng_volume_by_id(eng, s->volume_id);
	int r = res < 0 ? res : 0;

	if (r == 0 && vol)
		r = visit_live(eng, vol, false);
	if (r < 0 && res < 0 && s->remote) {
		/* its copies elsewhere could not all be read now (holders down, more than
		 * M fragments lost): another time, or another victim */
		LOG_RATELIMITED(LOG_WARN, ENG_LOG, "cleaner: segment %016" PRIx64 ".%08" PRIx32
				" (no local copy) cannot be read from its copies now (%s): "
				"trying later", s->family_uid, s->sno, err_str(-res));
		eng->gc_remote_next_ms = eng_now_ms() + ENG_GC_REMOTE_RETRY_MS;
		eng->gc_busy = false;
		return;
	}
	if (r < 0) {
		if (res < 0)
			log_msg(LOG_ERROR, ENG_LOG, "cleaner: reading slot %u failed: %s",
				eng->gc_victim, err_str(-res));
		s->gc_skip = true;
		eng->gc_busy = false;
		return;
	}
	eng->gc_req = (struct ioreq){ .cb = moves_done, .arg = eng, .pending = 1 };
	if (vol)
		r = relocate(eng, vol);
	if (r < 0 || !vol) {
		eng_req_put(eng, &eng->gc_req, r);
		return;
	}
	eng->gc_moving = true;
	move_slice(eng);
}

/* ---- remote victims (docs/engine.md, "Segments without a local slot") ----
 * A remote entry (a sealed segment of this node's log whose copies are elsewhere
 * only: an erasure-coded stripe whose replicas went) costs no local slot, but its
 * garbage costs the cluster's disks: left alone, an EC volume under overwrites grows
 * without bound. So the cleaner picks remote entries by a slot's rules (cleanable: a
 * tenth of a segment dropped by a move; cost-benefit among them) but at most half
 * live (ENG_GC_REMOTE_MAX_LIVE_PCT, where a slot's is 90%), whenever the local store
 * has room for the moves and the remote entries are more than ENG_GC_REMOTE_DEAD_PCT
 * dead (remote_dead_enough), one victim at a time and at most one every
 * ENG_GC_REMOTE_GAP_MS. Its whole segment (header and summaries
 * included: they say which blocks are live and which trims to carry) is fetched into
 * gc_buf, in runs of SEG_FETCH_MAX_BLOCKS, all at once (the mirror reads fragments,
 * decoding when some are lost), and then it is cleaned as a slot is: the same walk,
 * the same checks of every live block against the map's CRC (the fetch has none for
 * a whole segment), the same MOVEs in slices. Once they retired, the entry holds
 * nothing live, and the next periodic checkpoint frees it (none is asked per victim:
 * moves_done): the mirror deletes its record and its copies (seg_remote_delete). */

static int64_t pick_remote(const struct engine *eng)
{
	int64_t best = -1;
	double best_score = 0;

	for (uint32_t i = eng->sb.segment_count; i < eng->slot_cap; i++) {
		const struct slot *s = &eng->slots[i];
		double score;

		if (!s->remote || s->live == 0 || !cleanable(s, eng->blocks_per_seg) ||
		    (uint64_t)s->live * 100 > (uint64_t)eng->blocks_per_seg * ENG_GC_REMOTE_MAX_LIVE_PCT)
			continue;
		score = gc_score(s, eng->blocks_per_seg, eng->next_seq);
		if (best < 0 || score > best_score) {
			best = i;
			best_score = score;
		}
	}
	return best;
}

/* Every fetch of the victim answered (gc_req's completion: res, the first error). */
static void remote_fetched(void *arg, int res)
{
	struct engine *eng = arg;

	if (res == 0)
		eng->stats.gc_remote_blocks += eng->slots[eng->gc_victim].used;
	victim_read(eng, res);
}

/* One fetch answered: one part of gc_req. */
static void fetch_answered(void *arg, int res)
{
	struct engine *eng = arg;

	eng_req_put(eng, &eng->gc_req, res);
}

/* Fetches blocks [0, used) of remote entry `victim` into gc_buf: 0 (remote_fetched
 * runs once every fetch answered, counted on gc_req: the moves' own request, idle
 * until the victim is read) or -errno (none is in flight). */
static int remote_read(struct engine *eng, uint32_t victim)
{
	const uint32_t used = eng->slots[victim].used;
	const uint32_t nf = (eng->blocks_per_seg + SEG_FETCH_MAX_BLOCKS - 1) / SEG_FETCH_MAX_BLOCKS;
	int r = 0;

	/* (a failed try may have made one of them) */
	if (!eng->gc_want)
		eng->gc_want = calloc(eng->blocks_per_seg, sizeof(eng->gc_want[0]));
	if (!eng->gc_fetches)
		eng->gc_fetches = calloc(nf, sizeof(eng->gc_fetches[0]));
	if (!eng->gc_want || !eng->gc_fetches)
		return -ENOMEM;
	if (used == 0 || used > eng->blocks_per_seg)
		return -EINVAL;
	for (uint32_t b = 0; b < used; b++)
		eng->gc_want[b] = (struct seg_fetch_block){
			.dst = eng->gc_buf + (size_t)b * QUILL_BLOCK_SIZE };
	/* one part until every fetch is asked: none completes it early */
	eng->gc_req = (struct ioreq){ .cb = remote_fetched, .arg = eng, .pending = 1 };
	for (uint32_t b = 0, i = 0; b < used && r == 0; b += SEG_FETCH_MAX_BLOCKS, i++) {
		struct seg_fetch *f = &eng->gc_fetches[i];
		uint32_t n = used - b < SEG_FETCH_MAX_BLOCKS ? used - b : SEG_FETCH_MAX_BLOCKS;

		*f = (struct seg_fetch){ .block = b, .nblocks = n, .want = eng->gc_want + b,
					 .cb = fetch_answered, .arg = eng, .no_crcs = true };
		r = seg_fetch(eng, victim, f);
		if (r == 0)
			eng->gc_req.pending++;
	}
	if (r < 0 && eng->gc_req.pending == 1)
		return r; /* nothing asked */
	eng_req_put(eng, &eng->gc_req, r); /* the asking's own part (with its error) */
	return 0;
}

/* The blocks of the remote entries (only those with live ones: live_only), and the
 * live ones among them. */
static void remote_sum(const struct engine *eng, bool live_only, uint64_t *used,
		       uint64_t *live)
{
	*used = *live = 0;
	for (uint32_t i = eng->sb.segment_count; i < eng->slot_cap; i++)
		if (eng->slots[i].remote && (eng->slots[i].live || !live_only)) {
			*used += eng->slots[i].used;
			*live += eng->slots[i].live;
		}
}

void eng_remote_space(const struct engine *eng, uint64_t *used, uint64_t *live)
{
	remote_sum(eng, false, used, live);
}

/* Are the dead blocks of the remote entries with live ones more than
 * ENG_GC_REMOTE_DEAD_PCT of theirs? (An entry with none is freed by the next
 * checkpoint: cleaning others would not free it sooner.) */
static bool remote_dead_enough(const struct engine *eng)
{
	uint64_t used, live;

	remote_sum(eng, true, &used, &live);
	return (used - live) * 100 > used * ENG_GC_REMOTE_DEAD_PCT;
}

/* With nothing to clean locally: a remote victim, if the remote entries waste enough
 * space, one is worth it and the store has room for its moves (beyond what the local
 * cleaner keeps free). */
static void remote_maybe(struct engine *eng)
{
	uint64_t now = eng_now_ms();
	int64_t victim;
	int r;

	if (!eng->opts.gc_auto || eng->slot_cap <= eng->sb.segment_count ||
	    now < eng->gc_remote_next_ms ||
	    eng->nfree <= eng_gc_low_water(eng) + 1 || eng->parked.head)
		return;
	eng->gc_remote_next_ms = now + ENG_GC_REMOTE_GAP_MS;
	if (!remote_dead_enough(eng))
		return;
	victim = pick_remote(eng);
	if (victim < 0)
		return;
	eng->gc_busy = true;
	eng->gc_victim = (uint32_t)victim;
	r = remote_read(eng, eng->gc_victim);
	if (r < 0) {
		eng->gc_busy = false;
		eng->gc_remote_next_ms = now + ENG_GC_REMOTE_RETRY_MS;
		if (r != -EOPNOTSUPP) /* (a family the mirror no longer has: released) */
			LOG_RATELIMITED(LOG_WARN, ENG_LOG, "cleaner: remote entry %u cannot be "
					"read now: %s", eng->gc_victim, err_str(-r));
	}
}

bool eng_gc_slice_due(const struct engine *eng)
{
	const struct engine_volume *vol;

	if (!eng->gc_moving)
		return false;
	vol = eng_volume_by_id((struct engine *)eng, eng->slots[eng->gc_victim].volume_id);
	return !vol || vol->ninflight < ENG_GC_MAX_INFLIGHT;
}

/* Batches on their way to disk change what is live when they retire (the blocks
 * they overwrite die): until then the store is not known to be full. */
static bool batches_in_flight(const struct engine *eng)
{
	for (uint32_t i = 0; i < eng->sb.segment_count; i++)
		if (eng->slots[i].pending)
			return true;
	return false;
}

static void log_stall(const struct engine *eng, int64_t victim)
{
	char why[384];

	eng_space_describe(eng, why, sizeof(why));
	log_msg(LOG_INFO, ENG_LOG, "cleaner: %s (%u free); %s",
		victim < 0 ? "nothing worth cleaning" : "no free segment to move blocks to",
		eng->nfree, why);
}

/* Free slots the automatic cleaner keeps: the reserve, and ~3% of the store so that
 * cleaning runs ahead of the writes instead of behind them. */
unsigned eng_gc_low_water(const struct engine *eng)
{
	unsigned w = eng->sb.segment_count / 32;

	return w > eng->gc_reserve + 2 ? w : eng->gc_reserve + 2;
}

/* Whether the cleaner's empty slots are worth a checkpoint now. Each checkpoint
 * flushes the store and RocksDB (an SST and its fsync), and every flush holds the
 * client I/O in flight on the disk meanwhile; asked for whenever a slot came empty,
 * they ran back to back under a heavy writer (~70 a second at QD32). So while the
 * automatic cleaner is only keeping its lead (no `quill gc`, no parked write, free
 * slots above the reserve + 2), one at most every ENG_GC_CKPT_MIN_MS. */
bool eng_gc_ckpt_due(const struct engine *eng, uint64_t now_ms)
{
	if (eng->gc_want_free || eng->parked.head || eng->nfree <= eng->gc_reserve + 2)
		return true;
	return now_ms - eng->ckpt_last_ms >= ENG_GC_CKPT_MIN_MS;
}

void eng_gc_maybe(struct engine *eng)
{
	unsigned want = eng->gc_want_free;
	uint32_t empty;
	int64_t victim;
	int r;

	if (eng->gc_moving) {
		move_slice(eng);
		return;
	}
	if (eng->gc_busy || eng->closing)
		return;
	if (eng->opts.gc_auto && want < eng_gc_low_water(eng))
		want = eng_gc_low_water(eng);
	if (eng->nfree >= want && !eng->parked.head) {
		eng->gc_want_free = 0;
		remote_maybe(eng);
		return;
	}
	if (eng->gc_next_scan_ms && eng_now_ms() < eng->gc_next_scan_ms)
		return;
	victim = eng_gc_pick_victim(eng->slots, eng->sb.segment_count, eng->blocks_per_seg,
				    eng->next_seq, &empty);
	/* empty slots only wait for a checkpoint: one frees them all at once */
	if (empty && !eng->ckpt_busy && eng_gc_ckpt_due(eng, eng_now_ms()))
		eng->ckpt_wanted = true;
	if (eng->nfree + empty >= want) {
		eng->gc_next_scan_ms = eng_now_ms() + 1;
		return;
	}
	if (victim < 0 || (eng->gc_no_room && eng->nfree == 0)) {
		eng->gc_next_scan_ms = eng_now_ms() + 1;
		/* nothing worth cleaning, or nowhere to move blocks: unless a checkpoint is
		 * about to free slots, the waiting writes cannot be served */
		if (!eng->gc_stalled)
			log_stall(eng, victim);
		eng->gc_stalled = true;
		if (!eng->ckpt_busy && !empty && eng->parked.head && !batches_in_flight(eng))
			eng_run_parked(eng, true);
		return;
	}
	eng->gc_stalled = false;
	eng->gc_next_scan_ms = 0;
	eng->gc_busy = true;
	eng->gc_victim = (uint32_t)victim;
	r = seg_read(eng, eng->gc_victim, 0,
		     &(struct iovec){ eng->gc_buf, eng->sb.segment_size }, 1, victim_read, eng);
	if (r < 0)
		victim_read(eng, r);
}

/* `quill gc`: the cleaner runs from engine_poll() as always, one victim slot per
 * turn (a read of the slot, a check of its live blocks and their appends: a few ms
 * of work, then back to the loop), with a higher target; the job only watches. */
struct gc_job {
	struct eng_job job;
	unsigned want_free;
	uint32_t before;
};

static int gc_step(struct eng_job *job)
{
	struct gc_job *g = (struct gc_job *)job;
	struct engine *eng = job->eng;
	bool stuck = eng->gc_stalled && !eng->gc_busy && !eng->ckpt_busy && !eng->ckpt_wanted;

	if (eng->nfree < g->want_free && !stuck && !eng->closing) {
		if (eng->gc_want_free < g->want_free)
			eng->gc_want_free = g->want_free; /* automatic runs may have reset it */
		return ENG_JOB_WAIT;
	}
	if (eng->gc_want_free == g->want_free)
		eng->gc_want_free = 0;
	return eng->nfree > g->before ? (int)(eng->nfree - g->before) : 0;
}

int engine_gc_async(struct engine *eng, unsigned want_free, engine_cb cb, void *arg)
{
	struct gc_job *g = calloc(1, sizeof(*g));
	int r;

	if (!g)
		return -ENOMEM;
	if (want_free > eng->sb.segment_count)
		want_free = eng->sb.segment_count;
	g->want_free = want_free;
	g->before = eng->nfree;
	r = eng_job_start(eng, &g->job, gc_step, cb, arg);
	if (r < 0)
		return r;
	if (eng->gc_want_free < want_free)
		eng->gc_want_free = want_free;
	eng->gc_stalled = false;
	eng->gc_next_scan_ms = 0;
	return 0;
}

int engine_gc(struct engine *eng, unsigned want_free)
{
	struct eng_sync s = { 0 };

	return eng_sync_wait(eng, &s, engine_gc_async(eng, want_free, eng_sync_done, &s));
}
