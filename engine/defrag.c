/* engine/defrag.c — read reallocation: a sequential read that finds its blocks
 * scattered over the log writes them back, in LBA order, as one run.
 *
 * Why. Random writes scatter a volume's neighbouring blocks over many slots: a 1 MiB
 * read of a range written 4 KiB at a time touched ~95 places in the log, and no
 * joining of neighbours (io.c) helps. Only moving the blocks does. The cleaner moves
 * the live blocks of the slot it empties in LBA order, but the neighbours of a block
 * lie in other slots, which it would have to read too. A read has them already: the
 * client asked for the range, the engine read and verified every block. So when a
 * read's window (io.c, 256 blocks) took many I/Os for its blocks, the engine appends
 * those blocks to the volume's log as MOVE entries, in LBA order, from the buffer the
 * read filled, before the read's callback runs: no extra read, and only ranges that
 * are read sequentially are rewritten. The next read of the range is one or two
 * I/Os. (NetApp WAFL's read reallocation does this; LevelDB compacts files that reads
 * seek through too often.)
 *
 * Safety, as for the cleaner (gc.c): a MOVE applies only if the block still lives
 * where the read found it, at run time and at replay alike, and no MOVE is written
 * for a block with a write or trim of the layer not yet retired (such a MOVE would
 * lose, and a rebuild applies every MOVE as DATA). Both are checked when the MOVEs
 * are appended, on the engine thread: a write or trim retired since the read (the
 * map moved on, or the slot was reused: its generation) drops the block; one that
 * comes later is later in the same log and wins. The data is copied out of the
 * caller's buffer and checked against the map's CRC32C again, so a buffer changed
 * after the read (a guest's memory) never becomes the volume's data.
 *
 * Budget. Only a volume's live layer (never a snapshot), not while a management job
 * holds or claims it, not when free slots are down to what the cleaner keeps, and
 * at most DEFRAG_MAX_INFLIGHT blocks appended and not yet retired: the MOVEs share
 * the volume's write pipeline with its client writes, which wait behind them for a
 * couple of batch writes at most. A window whose blocks take few I/Os is left alone,
 * and what was rewritten takes few: a range is rewritten once, not at every read.
 *
 * Sequential readers (engine_opts.seq_defrag; read_defrag is every read; both off
 * by default: docs/engine.md has the A/B). Rewriting what any read found scattered
 * made a lone 1 MiB read pay a 1 MiB write; what may pay off is rewriting what a
 * scan reads, since a scan comes back (the next backup, boot, table scan, or the
 * next pass of one). So with seq_defrag a client's read that starts where the
 * volume's previous read ended, after DEFRAG_SEQ_MIN blocks read in order, may
 * rewrite its scattered windows. One stream per volume: two interleaved scans
 * break each other's and rewrite nothing.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "engine/engine_internal.h"

/* A window is rewritten when its blocks took more than 2 + n/64 I/Os (about four
 * blocks of 4 KiB per I/O at worst for a full window: ~95 after random writes), and
 * at least this many of them are the layer's own. A rewritten window takes one I/O,
 * two where it crosses a slot's end: it never qualifies again. */
#define DEFRAG_MIN_BLOCKS 32u
#define DEFRAG_MAX_INFLIGHT 4096u /* blocks: 16 windows of 1 MiB */
/* Sequential readers (engine_opts.seq_defrag): a read is part of a stream once this
 * many blocks (4 MiB) were read in order right before it, so a lone large read, or a
 * few neighbouring ones, never writes. */
#define DEFRAG_SEQ_MIN 1024u

struct defrag_block {
	uint32_t idx; /* block of the request */
	uint32_t slot, block, crc;
	uint64_t generation; /* of the slot when it was read */
};

struct defrag_plan {
	uint64_t layer_id;
	uint64_t lba;       /* the request's block 0 */
	const uint8_t *dst; /* the request's buffer */
	uint32_t n, cap;
	struct defrag_block b[];
};

/* The MOVEs of one rewrite: how many to count off when they retire. */
struct defrag_batch {
	struct engine *eng;
	uint32_t n;
};

bool eng_defrag_wanted(uint32_t nblocks, uint32_t ios)
{
	return nblocks >= DEFRAG_MIN_BLOCKS && ios > 2 + nblocks / 64;
}

static int block_idx_cmp(const void *a, const void *b)
{
	const struct defrag_block *x = a, *y = b;

	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Adds the window's blocks that vol's own map holds to req's plan. */
static int plan_add(struct engine_volume *vol, struct ioreq *req, uint64_t lba, uint8_t *dst,
		    const struct read_block *b, uint32_t n)
{
	struct engine *eng = vol->eng;
	struct defrag_plan *p = req->defrag;

	if (!p || p->cap - p->n < n) {
		uint32_t cap = (p ? p->n : 0) + n;
		struct defrag_plan *q = realloc(p, sizeof(*p) + cap * sizeof(p->b[0]));

		if (!q)
			return -ENOMEM;
		if (!p)
			*q = (struct defrag_plan){ .layer_id = vol->rec.volume_id, .lba = lba,
						   .dst = dst };
		q->cap = cap;
		req->defrag = p = q;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct map_loc own;

		if (!map_get(vol->map, lba + b[i].idx, &own) || own.slot != b[i].slot ||
		    own.block != b[i].block)
			continue; /* read through from a parent: not this layer's to move */
		p->b[p->n++] = (struct defrag_block){ .idx = b[i].idx, .slot = b[i].slot,
						      .block = b[i].block, .crc = b[i].crc,
						      .generation = eng->slots[b[i].slot].generation };
	}
	return 0;
}

void eng_defrag_note(struct engine_volume *vol, struct ioreq *req, uint64_t lba, uint8_t *dst,
		     const struct read_block *b, uint32_t n)
{
	if (n && (vol->eng->opts.read_defrag || req->idle_defrag || req->seq_stream) &&
	    vol->rec.kind == ONDISK_LAYER_VOLUME)
		(void)plan_add(vol, req, lba, dst, b, n); /* no memory: the range stays as is */
}

bool eng_defrag_seq_read(struct engine_volume *vol, uint64_t lba, uint32_t nblocks)
{
	bool in_order = lba == vol->seq_next;
	bool stream = in_order && vol->seq_blocks >= DEFRAG_SEQ_MIN;

	vol->seq_blocks = in_order ? vol->seq_blocks + nblocks : nblocks;
	vol->seq_next = lba + nblocks;
	return stream && vol->eng->opts.seq_defrag;
}

static void moves_retired(void *arg, int res)
{
	struct defrag_batch *d = arg;

	d->eng->defrag_inflight -= d->n;
	if (res == 0)
		d->eng->stats.defrag_blocks += d->n;
	free(d);
}

/* May vol's blocks be rewritten now (see "Budget" at the top)? Not while a job's
 * commit is in flight (metacommit.c): like the cleaner, nothing moves into a log that
 * the commit may be about to freeze. */
static bool may_rewrite(const struct engine *eng, const struct engine_volume *vol, uint32_t n)
{
	return vol && !eng->closing && vol->rec.kind == ONDISK_LAYER_VOLUME && !vol->holds &&
	       !vol->job && !eng_mc_busy(eng) && eng->nfree > eng_gc_low_water(eng) &&
	       eng->defrag_inflight + n <= DEFRAG_MAX_INFLIGHT;
}

/* Which of the span blocks from lba have a write or trim of vol not yet retired:
 * one pass over the unretired batches (eng_lba_pending() per block would walk them
 * all for each). NULL: no memory. */
static uint8_t *pending_blocks(const struct engine_volume *vol, uint64_t lba, uint32_t span)
{
	uint8_t *pend = calloc(span, 1);

	if (!pend)
		return NULL;
	for (const struct batch *bt = vol->head; bt; bt = bt->next)
		for (uint32_t i = 0; i < bt->sum.nentries; i++) {
			const struct summary_entry *e = &bt->sum.entries[i];
			uint64_t from = e->lba > lba ? e->lba : lba;
			uint64_t to = e->lba + e->nblocks < lba + span ? e->lba + e->nblocks
								       : lba + span;

			for (uint64_t x = from; x < to; x++)
				pend[x - lba] = 1;
		}
	return pend;
}

/* Is block b still what vol reads at lba (not overwritten, trimmed or moved since it
 * was read: the map points at it and its slot was not reused)? */
static bool still_there(const struct engine_volume *vol, uint64_t lba,
			const struct defrag_block *b)
{
	const struct engine *eng = vol->eng;
	struct map_loc loc;

	return eng->slots[b->slot].generation == b->generation &&
	       map_get(vol->map, lba, &loc) && loc.slot == b->slot && loc.block == b->block;
}

/* Appends the plan's blocks that still qualify as MOVEs, in LBA order. */
static void rewrite(struct engine *eng, struct defrag_plan *p)
{
	struct engine_volume *vol = eng_volume_by_id(eng, p->layer_id);
	struct defrag_batch *d;
	struct ioreq *owner;
	uint8_t *pend;
	uint8_t copy[QUILL_BLOCK_SIZE];

	if (p->n < DEFRAG_MIN_BLOCKS)
		return; /* mostly read through from parents */
	if (!may_rewrite(eng, vol, p->n)) {
		eng->stats.defrag_skipped++;
		return;
	}
	qsort(p->b, p->n, sizeof(p->b[0]), block_idx_cmp);
	pend = pending_blocks(vol, p->lba, p->b[p->n - 1].idx + 1);
	d = pend ? malloc(sizeof(*d)) : NULL;
	owner = d ? eng_req_alloc(eng, moves_retired, d) : NULL;
	if (!owner) {
		free(d);
		free(pend);
		return;
	}
	*d = (struct defrag_batch){ .eng = eng };
	for (uint32_t i = 0; i < p->n; i++) {
		const struct defrag_block *b = &p->b[i];
		uint64_t lba = p->lba + b->idx;

		if (pend[b->idx] || !still_there(vol, lba, b))
			continue;
		memcpy(copy, p->dst + (size_t)b->idx * QUILL_BLOCK_SIZE, sizeof(copy));
		if (crc32c(copy, sizeof(copy)) != b->crc)
			continue; /* the buffer changed after the read verified it */
		if (eng_append_data(vol, lba, copy, ONDISK_ENTRY_MOVE, b->slot, b->block, b->crc,
				    SLOT_FOR_WRITE, owner) < 0)
			break; /* no slot: what is appended stands */
		d->n++;
	}
	free(pend);
	eng->defrag_inflight += d->n;
	eng->idle.appended += d->n;
	eng_req_put(eng, owner, 0);
}

void eng_defrag_finish(struct engine *eng, struct ioreq *req)
{
	struct defrag_plan *p = req->defrag;

	req->defrag = NULL;
	if (req->result == 0)
		rewrite(eng, p);
	free(p);
}

/* ---- the idle defragmenter ----
 *
 * Read reallocation pays at the first sequential read: the read takes as many I/Os as
 * the range has pieces, and writes it too. A VM disk that is written at random and
 * read sequentially later (a backup, a table scan, a boot) is better served if the
 * ranges are put back in order before the read comes: while the node is idle. So
 * when no client request came for idle.quiet_ms, the engine walks each volume's map a
 * window (DEFRAG_IDLE_WINDOW blocks) at a time, counts the I/Os a read of the
 * window's own blocks would take (io.c's rule), and reads a window that wants
 * rewriting (eng_defrag_wanted()) into its own buffer, flagged, so that the read's end
 * rewrites it exactly as read reallocation does: same checks, same budget, same MOVE
 * entries (so the same crash safety: a MOVE applies only where the block still is).
 *
 * Client I/O first. Nothing starts while clients are busy: a client request ends the
 * quiet spell, and no new window starts until the next one. DEFRAG_IDLE_READS (2)
 * windows are read at a time (a scattered window is ~190 reads of 4 KiB: two keep the
 * disk busier), and another only while at most two windows' MOVEs are unretired, so a
 * client request that arrives meanwhile waits behind at most two windows' reads and
 * four windows' writes (4 MiB). A pass that
 * rewrote nothing (found nothing scattered, or could not rewrite what it found: the
 * rewrite's budget) ends the work until clients make a request again, so an idle
 * node does not scan its maps, or read the same window, over and over. Snapshots are never rewritten, nor
 * a volume a management job holds or claims, nor anything when free slots are down
 * to what the cleaner keeps.
 *
 * Cost: each scattered window is written once more (write amplification), and its
 * old copies become garbage the cleaner reclaims; slots whose blocks all moved out
 * are freed by a checkpoint without any copying. docs/engine.md has the figures.
 */

#define DEFRAG_IDLE_WINDOW 256u   /* blocks: a read's window (io.c) */
#define DEFRAG_IDLE_SCAN 16u      /* windows looked at per poll (~100 us) */
#define DEFRAG_IDLE_QUIET_MS 100u /* no client request for this long: idle */

/* A window: at most a read's, and half a slot, so that its rewrite fits in one slot
 * with its summary (a 4 MiB slot: 256 blocks). */
static uint32_t idle_window(const struct engine *eng)
{
	uint32_t w = DEFRAG_IDLE_WINDOW;

	while (w > eng->blocks_per_seg / 2)
		w /= 2;
	return w;
}

void eng_defrag_idle_init(struct engine *eng)
{
	eng->idle = (struct defrag_idle){ .quiet_ms = DEFRAG_IDLE_QUIET_MS,
					  .seen_reqs = eng->client_reqs };
	if (!eng->opts.idle_defrag || idle_window(eng) < DEFRAG_MIN_BLOCKS)
		return; /* (slots too small for a window worth it: tests' stores) */
	eng->idle.buf = seg_buf_alloc((size_t)DEFRAG_IDLE_READS * DEFRAG_IDLE_WINDOW *
				      QUILL_BLOCK_SIZE);
	if (!eng->idle.buf) {
		log_msg(LOG_WARN, ENG_LOG, "idle defragmenter off: no memory for its buffers");
		return;
	}
	for (unsigned i = 0; i < DEFRAG_IDLE_READS; i++)
		eng->idle.reads[i] = (struct defrag_idle_read){
			.eng = eng,
			.buf = eng->idle.buf + (size_t)i * DEFRAG_IDLE_WINDOW * QUILL_BLOCK_SIZE };
}

void eng_defrag_idle_free(struct engine *eng)
{
	seg_buf_free(eng->idle.buf);
	eng->idle.buf = NULL;
}

/* A pass ends once its rewrites retired: the next one must see them in the map, or
 * it finds the last windows scattered still. */
static bool pass_ending(const struct engine *eng)
{
	return eng->idle.vol_idx >= eng->nvols && (eng->defrag_inflight || eng->idle.reading);
}

/* 0: the idle defragmenter may work now; else ms until it may (INT_MAX: until an
 * event). Client requests it has not noticed yet count as just now. Quiet means no
 * client request in flight either: a write the disk holds for 100 ms is not an idle
 * node, and two windows' reads queued then would hold the next request behind them. */
static int idle_wait_ms(const struct engine *eng, uint64_t now)
{
	const struct defrag_idle *d = &eng->idle;
	uint32_t quiet_in;

	if (!d->buf || eng->closing || d->reading == DEFRAG_IDLE_READS)
		return INT_MAX; /* a read's completion rings the event fd */
	if (eng->client_reqs != d->seen_reqs)
		return (int)d->quiet_ms;
	/* a job waiting for quiet (eng_job_wait_quiet) waits for these reads: none
	 * starts while one is pending, or a long pass would starve it */
	if (d->clean || eng->parked.head || eng_jobs_pending(eng) ||
	    eng->nfree <= eng_gc_low_water(eng) ||
	    eng->defrag_inflight > DEFRAG_IDLE_READS * idle_window(eng) || pass_ending(eng))
		return INT_MAX; /* a request, a checkpoint or a retired batch comes first */
	quiet_in = eng_clients_quiet_in(eng, now, d->quiet_ms);
	return quiet_in == UINT32_MAX ? INT_MAX : (int)quiet_in;
}

int eng_defrag_idle_timeout(const struct engine *eng)
{
	return eng->idle.buf ? idle_wait_ms(eng, eng_now_ms()) : INT_MAX;
}

bool eng_defrag_idle_busy(const struct engine *eng)
{
	return eng->idle.reading;
}

/* May the idle defragmenter rewrite vol's blocks? (rewrite() checks again.) */
static bool idle_candidate(const struct engine_volume *vol)
{
	return vol->rec.kind == ONDISK_LAYER_VOLUME && !vol->holds && !vol->job && !vol->flatten;
}

struct window_scan {
	struct read_block *b;
	uint64_t lba;
	uint32_t n;
};

static int add_own_block(void *arg, uint64_t lba, const struct map_loc *loc)
{
	struct window_scan *w = arg;

	if (loc->slot != MAP_SLOT_ZERO)
		w->b[w->n++] = (struct read_block){ .slot = loc->slot, .block = loc->block,
						    .idx = (uint32_t)(lba - w->lba),
						    .crc = loc->crc };
	return 0;
}

/* Would a read of vol's own blocks in [lba, lba + n) want rewriting? */
static bool window_scattered(const struct engine_volume *vol, uint64_t lba, uint32_t n)
{
	struct read_block b[DEFRAG_IDLE_WINDOW];
	struct window_scan w = { .b = b, .lba = lba };

	map_for_each_range(vol->map, lba, n, add_own_block, &w);
	return eng_defrag_wanted(w.n, w.n ? eng_read_spans(b, w.n) : 0);
}

static void idle_read_done(void *arg, int res)
{
	struct defrag_idle_read *rd = arg;
	struct engine *eng = rd->eng;

	rd->busy = false;
	eng->idle.reading--;
	if (eng->idle.appended != rd->appended_at_read)
		eng->idle.found = true; /* rewritten: the pass changed something */
	if (res < 0) /* the window stays as it is; a read of it will say the same */
		LOG_RATELIMITED(LOG_WARN, ENG_LOG, "idle defragmenter: reading a window "
				"failed: %s", err_str(-res));
}

/* Reads [lba, lba + n) of vol into the buffer; its end rewrites it (eng_defrag_note
 * through io.c's read_window). */
static void idle_read(struct engine *eng, struct engine_volume *vol, uint64_t lba, uint32_t n)
{
	struct defrag_idle_read *rd = eng->idle.reads;
	struct ioreq *req;

	while (rd->busy) /* idle_wait_ms() saw one free */
		rd++;
	req = eng_req_alloc(eng, idle_read_done, rd);
	if (!req)
		return;
	req->idle_defrag = true;
	rd->busy = true;
	rd->appended_at_read = eng->idle.appended;
	eng->idle.reading++;
	eng->stats.defrag_idle_reads++;
	eng_read_req(vol, req, lba, n, rd->buf);
}

/* Looks at up to DEFRAG_IDLE_SCAN windows from the scan's place; reads the first
 * scattered one. A pass over every layer that rewrote nothing makes the scan clean. */
static void idle_scan(struct engine *eng)
{
	struct defrag_idle *d = &eng->idle;
	uint32_t wsize = idle_window(eng);

	for (uint32_t k = 0; k < DEFRAG_IDLE_SCAN; k++) {
		struct engine_volume *vol;
		uint64_t size, lba;
		uint32_t n;

		if (d->vol_idx >= eng->nvols) { /* a pass ends */
			if (pass_ending(eng))
				return;
			d->vol_idx = 0;
			d->lba = 0;
			d->clean = !d->found;
			d->found = false;
			if (d->clean)
				return;
		}
		vol = eng->vols[d->vol_idx];
		size = vol->rec.size / QUILL_BLOCK_SIZE;
		if (!idle_candidate(vol) || d->lba >= size) {
			d->vol_idx++;
			d->lba = 0;
			continue;
		}
		lba = d->lba;
		n = size - lba < wsize ? (uint32_t)(size - lba) : wsize;
		d->lba += n;
		if (window_scattered(vol, lba, n)) {
			idle_read(eng, vol, lba, n);
			return;
		}
	}
}

void eng_defrag_idle_maybe(struct engine *eng)
{
	struct defrag_idle *d = &eng->idle;
	uint64_t now;

	if (!d->buf || eng->closing)
		return;
	now = eng_now_ms();
	if (eng->client_reqs != d->seen_reqs) {
		d->seen_reqs = eng->client_reqs;
		d->clean = false;
		d->found = true; /* the pass under way may have passed what they changed */
		return;
	}
	if (idle_wait_ms(eng, now) == 0)
		idle_scan(eng);
}
