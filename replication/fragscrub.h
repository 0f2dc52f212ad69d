/* replication/fragscrub.h — the owner's scrub of one striped segment's fragments
 * (docs/erasure-coding.md, "Scrub of stripes"), for scrub.c's pass.
 *
 * One fragment at a time (exactly one thing outstanding):
 *
 *   1. verify: each fragment is checked where it is kept (FRAG_VERIFY to its holder, or
 *      this node's own read and ec_frag_scrub): its header, its table, every block
 *      against the table; the CRC32C of each block as it is and of the whole come back,
 *      not the blocks. A fragment with blocks that fail its table, or gone from a node
 *      that answers, is bad (kind FRAGMENT); one whole in itself whose CRC is not the
 *      stripe record's is stale or wrong (kind PARITY).
 *   2. parity consistency (always: a scrub is deep): the first K fragments found good
 *      are read whole (FRAG_READ, each block checked against what its verify saw) and
 *      the others computed from them (ec_decode); a fragment whose blocks are not what
 *      its stripe encodes to disagrees with it (kind PARITY). This is the only check
 *      that moves bytes: the segment's length, once, from K holders to the owner.
 *   3. repair: each bad fragment is rebuilt (from step 2's computation), sealed into an
 *      image whose CRC must be the record's (otherwise it is reported, not put: the
 *      record would drop it), and put again on its holder: SEG_DELETE of kind FRAG,
 *      then FRAG_PUT (durable once answered), then verified again. A crash between the
 *      delete and the put leaves the fragment missing on a live holder: the stripe
 *      runs one fragment short (the bad one was lost already) until the next scrub
 *      finds it gone and puts it. Never from fewer than K fragments that checked.
 *
 * Threading: the loop's thread, but step 2's decode and the CRCs of the fragments it
 * computes (about a millisecond per MiB of segment with ISA-L): on the replica sets'
 * worker thread (rs->worker, common/worker.h), the encoder's and the rebuild's too.
 */
#ifndef QUILL_REPLICATION_FRAGSCRUB_H
#define QUILL_REPLICATION_FRAGSCRUB_H

#include <stdbool.h>
#include <stdint.h>

#include "cluster/layout.h"
#include "replication/scrub.h"

struct replicas;
struct scrub_report;
struct fragscrub;

/* Bytes a scrub of rec's stripe reads (every fragment where it is, K of them again at
 * the owner), for the budget. 0 for a record without a stripe. */
uint64_t fragscrub_bytes(const struct layout_segment *rec);

/* Scrubs the stripe of rec (a sealed record with a stripe) of family uid at epoch;
 * what it finds and does goes to rep (findings, counts). 0 and done(arg) once, never
 * inside this call; -ENOMEM, -EINVAL (a stripe that does not hold). */
int fragscrub_start(struct replicas *rs, uint64_t uid, int64_t epoch,
		    const struct layout_segment *rec, struct scrub_report *rep,
		    void (*done)(void *arg), void *arg, struct fragscrub **out);
/* The pass goes away: done never runs, rep is not written again; the scrub frees
 * itself once its one outstanding step ends. */
void fragscrub_abandon(struct fragscrub *fs);

/* ---- pure parts (unit-tested) ---- */

/* A fragment of the stripe as the scrub finds it. */
enum fragscrub_state {
	FRAGSCRUB_UNASKED,
	FRAGSCRUB_OK,        /* checks, and is the record's */
	FRAGSCRUB_BAD,       /* blocks fail its own table (or the table fails) */
	FRAGSCRUB_MISSING,   /* its holder answers it holds no such fragment */
	FRAGSCRUB_WRONG,     /* whole in itself, but not the record's CRC */
	FRAGSCRUB_PARITY,    /* the record's, but not what the stripe's others encode to */
	FRAGSCRUB_UNCHECKED, /* its holder could not be asked */
};
struct fragscrub_frag {
	enum fragscrub_state state;
	int err;                  /* UNCHECKED: why */
	uint32_t frag_crc;        /* of its data as it is */
	uint32_t *crcs;           /* F: each data block's CRC32C as it is (malloc'd) */
	bool tried;               /* its repair was tried */
	struct scrub_finding x;   /* its bad blocks (nbad, first), nfixed, action */
};

/* A fragment's verify judged into f (fresh): res 0 with its data's frag_crc against
 * the stripe record's rec_crc, table_bad, and the nbad numbers of the blocks that fail
 * its table in bad[]; or why it could not be checked (-ENOENT: gone, all F blocks
 * bad). */
void fragscrub_verdict(struct fragscrub_frag *f, uint32_t F, uint32_t rec_crc, int res,
		       bool table_bad, uint32_t frag_crc, const uint32_t *bad, uint32_t nbad);
/* The parity check, once data[] (n fragments of F blocks) holds the stripe's basis as
 * read and the fragments of `lost` computed from it (ec_decode): each fragment of lost
 * found OK or WRONG gets the blocks where its verify's CRCs (f[j].crcs) are not the
 * computed ones counted bad: one found OK with any disagrees with its stripe (PARITY);
 * one WRONG counts at least one (its CRC is not the record's). */
void fragscrub_compare(struct fragscrub_frag *f, unsigned n, uint32_t F, uint8_t *const *data,
		       uint32_t lost);

#endif
