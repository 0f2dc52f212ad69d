/* engine/logcheck.h — reading a slot's log after a crash, and the rule that tells a
 * torn batch from corruption (docs/format.md, "Tears and corruption").
 *
 * Start-up replay (engine/replay.c), the cleaner (engine/gc.c) and quill-inspect
 * (tools/inspect.c) walk slots with this one walker and judge bad batches with this
 * one rule, so that the inspector reports what replay does.
 *
 * The rule. A crash can only tear the batches that were in flight: the engine keeps
 * fewer than ONDISK_MAX_INFLIGHT_BATCHES of a volume's batches unretired behind one
 * that has not completed, and every summary records the highest seq known durable
 * when it was built (durable_seq, valid from the engine run's open_seq on). A bad
 * batch whose seq lies in [lo, hi] is therefore CORRUPTION (it was durable, something
 * damaged it since) when
 *   - at least ONDISK_MAX_INFLIGHT_BATCHES valid batches of its volume, written by
 *     the same engine run, have a seq above hi; or
 *   - a valid summary of the same run records durable_seq >= hi;
 * and otherwise a TEAR (it may have been in flight at the crash, and nothing that
 * depended on it was acknowledged).
 *
 * Not thread-safe; no I/O: the caller reads the slots.
 */
#ifndef QUILL_ENGINE_LOGCHECK_H
#define QUILL_ENGINE_LOGCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/ondisk.h"

/* ---- walking one slot's log ---- */

enum logcheck_kind {
	LOGCHECK_END = 0, /* no further batch of this slot's life */
	LOGCHECK_BATCH,   /* a valid summary (in *sum) and its data blocks */
	LOGCHECK_DAMAGED, /* a batch whose summary does not decode: its LBAs are unknown */
};

struct logcheck_item {
	enum logcheck_kind kind;
	uint32_t pos;       /* BATCH: its summary block; DAMAGED: its first block */
	uint32_t next;      /* the block after it (DAMAGED: the next valid summary, or the
			       end of the slot) */
	bool data_checked;  /* BATCH: its data CRCs were checked */
	bool data_ok;       /* BATCH: not checked, or every data block matches its CRC */
	uint32_t bad_entry; /* BATCH, !data_ok: the first entry whose data does not */
	uint64_t seq_lo;    /* DAMAGED: its seq is at least this... */
	uint64_t seq_hi;    /* ...and at most this; UINT64_MAX when nothing valid follows
			       in the slot (logcheck_seq_hi() looks at the other slots) */
};

struct logcheck_walk {
	const uint8_t *slot;  /* the whole slot; block 0 is its header */
	uint32_t blocks;      /* blocks per slot */
	struct segment_header h;
	uint64_t check_above; /* data CRCs are checked for batches with a seq above this */
	uint32_t pos;
	uint64_t prev_seq;
	bool ended;
};

/* slot: blocks * QUILL_BLOCK_SIZE bytes, the slot whose header decoded into h. */
void logcheck_walk_init(struct logcheck_walk *w, const uint8_t *slot, uint32_t blocks,
			const struct segment_header *h, uint64_t check_above);
/* The next item of the slot's log. A summary that does not decode (or is not of this
 * slot's life) ends the log, unless a valid summary of this life with a greater seq
 * and whole data follows somewhere in the slot, or the bad block still names this
 * slot's generation and volume: then it is a DAMAGED item and the walk goes on after
 * it. sum is scratch space (filled for BATCH). */
void logcheck_walk_next(struct logcheck_walk *w, struct summary *sum, struct logcheck_item *it);

/* Do the data blocks that follow a summary match its CRCs? *bad_entry (may be NULL)
 * gets the first entry that does not. */
bool logcheck_data_ok(const struct summary *s, const uint8_t *data, uint32_t *bad_entry);

/* ---- scrub: every block of a slot judged by the slot's own log ---- */

enum logcheck_block {
	LOGCHECK_B_UNCHECKED = 0, /* nothing says what it holds: past the log's end, or the
				   data of a batch whose summary is damaged */
	LOGCHECK_B_GOOD,          /* the header that decodes, a valid summary, or a data
				   block with its summary's CRC32C */
	LOGCHECK_B_BAD,           /* a data block without its summary's CRC32C (that one is
				   what it must be) */
	LOGCHECK_B_DAMAGED,     /* a header or summary that does not decode: bad, and
				   nothing says what it must be */
};

/* The first `used` blocks of a slot of this life (generation; block 0 its header),
 * judged: state[b] one of enum logcheck_block, crcs[b] for GOOD the block's CRC32C, for
 * BAD the one it must have, else 0. Batches past a damaged summary are judged too
 * (the walker's resync, as replay does). */
void logcheck_classify(const uint8_t *slot, uint32_t used, uint64_t generation,
		       uint8_t *state, uint32_t *crcs);

/* ---- a whole segment from another node ---- */

/* A sealed segment's image of `blocks` blocks as read from a holder (block 0 its
 * header): 0 when the header names segment (uid, sno) and the log is whole batches
 * whose data match their CRCs, ending exactly at `blocks`. Else -EILSEQ, with the
 * blocks of the first bad part in [*bad_first, *bad_end) (a batch whose data fail:
 * from its first to its last data block that fails its CRC; a bad header: [0, 1); a
 * damaged summary: to the next valid one; a log that ends early: from where it ends to
 * `blocks`). A rebuild checks a copy read from
 * a holder this way before it writes it anywhere (replication/segfetch.c). */
int logcheck_image_check(const uint8_t *img, uint32_t blocks, uint64_t uid, uint32_t sno,
			 uint32_t *bad_first, uint32_t *bad_end);

/* What each block of a segment's image (as logcheck_image_check takes it, and judged
 * good by it) was written for: lba[b] the LBA of block b for a data block (a client's
 * write, a cleaner's or defragmenter's MOVE), UINT64_MAX for the others (the header,
 * summaries, records, checkpoint parts, blocks past the log's end). lba holds
 * `blocks` entries. For engine_segment_drop_local_hinted. */
void logcheck_image_lbas(const uint8_t *img, uint32_t blocks, uint64_t *lba);

/* ---- the verdict ---- */

/* What the scan of every slot found: the valid summaries that may judge a bad batch
 * (replay notes those above the checkpoint; older ones cannot), and where each used
 * slot's log starts. */
struct logcheck_facts {
	struct logcheck_batch {
		uint64_t volume_id, seq, open_seq, durable_seq;
	} *batches;
	size_t nbatches, cap_batches;
	struct logcheck_slot {
		uint64_t volume_id, first_seq;
	} *slots;
	size_t nslots, cap_slots;
};

int logcheck_note_batch(struct logcheck_facts *f, const struct summary *s);
int logcheck_note_slot(struct logcheck_facts *f, const struct segment_header *h);
void logcheck_facts_free(struct logcheck_facts *f);

/* For a DAMAGED item at the end of its slot: one less than the first seq of the
 * volume's next slot (its log went on there), or UINT64_MAX. */
uint64_t logcheck_seq_hi(const struct logcheck_facts *f, uint64_t volume_id, uint64_t lo);

struct logcheck_verdict {
	bool corrupt;         /* false: a tear */
	uint32_t later;       /* batches of the volume after it, written by its engine run */
	uint64_t durable_seq; /* a mark that covers it (corrupt), else 0 */
};

/* Judges a bad batch of volume_id whose seq lies in [lo, hi] (lo == hi when its
 * summary is valid). */
void logcheck_judge(const struct logcheck_facts *f, uint64_t volume_id, uint64_t lo,
		    uint64_t hi, struct logcheck_verdict *out);

#endif
