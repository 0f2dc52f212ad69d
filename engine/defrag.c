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
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "engine/engine_internal.h"

/* A window is rewritten when its blocks took more than 2 + n/64 I/Os (about four
 * blocks of 4 KiB per I/O at worst for a full window: ~95 after random writes), and
 * at least this many of them are the layer's own. A rewritten window takes one I/O,
 * two where it crosses a slot's end: it never qualifies again. */
#define DEFRAG_MIN_BLOCKS 32u
#define DEFRAG_MAX_INFLIGHT 4096u /* blocks: 16 windows of 1 MiB */

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
	if (vol->eng->opts.read_defrag && vol->rec.kind == ONDISK_LAYER_VOLUME)
		(void)plan_add(vol, req, lba, dst, b, n); /* no memory: the range stays as is */
}

static void moves_retired(void *arg, int res)
{
	struct defrag_batch *d = arg;

	d->eng->defrag_inflight -= d->n;
	if (res == 0)
		d->eng->stats.defrag_blocks += d->n;
	free(d);
}

/* May vol's blocks be rewritten now (see "Budget" at the top)? */
static bool may_rewrite(const struct engine *eng, const struct engine_volume *vol, uint32_t n)
{
	return vol && !eng->closing && vol->rec.kind == ONDISK_LAYER_VOLUME && !vol->holds &&
	       !vol->job && eng->nfree > eng_gc_low_water(eng) &&
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
