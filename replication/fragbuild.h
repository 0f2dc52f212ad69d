/* replication/fragbuild.h — the rebuild of one fragment of a stripe whose holder is gone
 * for good (docs/erasure-coding.md, "Rebuild of fragments"), for catch-up's rebuild
 * (catchup.c), which finds such stripes, picks the new holder (catchup_pick_frag) and
 * counts the work in its progress.
 *
 *   1. read: the segment's blocks from the stripe's other fragments, in runs of
 *      FRAGBUILD_RUN_BLOCKS (fragread.h, as a takeover copies a striped segment: the
 *      data fragments, and with one of them lost, the same rows of any K survivors
 *      decoded), each run paid from the rebuild budget first
 *   2. image: ec_stripe_images cuts and encodes the segment into its K+M images (the
 *      encoder's own code: no second encoder of the format); the lost index's image
 *      must have the recorded fragment CRC, else nothing is written (-EILSEQ)
 *   3. put: the record's "copying" names the new holder (CLUSTER_VOL_SEG_COPY START:
 *      its orphan check keeps the fragment), then FRAG_PUT to it (encode_frag_send);
 *      an answer is durable
 *   4. record: one fenced write (CLUSTER_VOL_SEG_REFRAG) names the new holder at that
 *      index in the stripe's frags
 *
 * A failure or a crash before 4 leaves the old record (perhaps with the mark, which
 * the owner's next scan takes out: the put fragment is then an orphan there, dropped
 * by its orphan check, or met again by the next rebuild: same index and CRC, answered
 * 0); after it the new one.
 *
 * Threading: the loop's thread, but step 2: a whole segment's split, parity and CRCs
 * (ec_images in quill-ec-bench: milliseconds for a 4 MiB segment) run on the replica
 * sets' worker thread (rs->worker, common/worker.h, the encoder's and the scrub's
 * too); its end comes back to the loop.
 */
#ifndef QUILL_REPLICATION_FRAGBUILD_H
#define QUILL_REPLICATION_FRAGBUILD_H

#include <stdint.h>

#include "cluster/layout.h"
#include "replication/catchup.h"

struct replicas;
struct rnode;
struct catchup_budget;
struct fragbuild;

#define FRAGBUILD_RUN_BLOCKS CATCHUP_CHUNK_BLOCKS /* 1 MiB of the segment per read, paid first */

struct fragbuild_req {
	const char *vol;
	int64_t epoch;                   /* the family's */
	const struct layout_segment *rec; /* sealed, striped (copied) */
	unsigned index;                  /* the fragment to rebuild */
	struct rnode *to;                /* its new holder; NULL: this node */
	struct catchup_budget *budget;   /* paid per run; the caller's, alive until done or
					    fragbuild_abandon */
	void (*progress)(void *arg, uint64_t bytes); /* a run of bytes was read (may be NULL) */
	void (*done)(void *arg, int res, const char *why); /* once, never inside start */
	void *arg;
};

/* 0 -> done runs once (0: recorded; else -errno and why); <0 -> never (-ENOMEM,
 * -EINVAL a stripe or length that does not hold). */
int fragbuild_start(struct replicas *rs, const struct fragbuild_req *q, struct fragbuild **out);
/* The caller goes away: done and progress never run; what is outstanding frees it. */
void fragbuild_abandon(struct fragbuild *b);

#endif
