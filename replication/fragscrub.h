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

#include <stdint.h>

#include "cluster/layout.h"

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

#endif
