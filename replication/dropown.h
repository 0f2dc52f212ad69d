/* replication/dropown.h — the owner gives up its own copy of a sealed segment once
 * every holder has sealed its copy (engine_segment_drop_local: the engine reads the
 * segment from the holders from then on, replication/readaround.c).
 *
 * For erasure-coded segments without the owner's copy (docs/erasure-coding.md, "The
 * owner's own copy"): the encoder notes each segment whose stripe is recorded with
 * the replicas gone (replica_opts.ec_drop_replicas). As a test setting
 * (replica_opts.drop_own, quilld's QUILL_TEST_DROP_OWN=1) also every sealed segment of
 * a replicated family (it lowers its copies by one) and of an EC family once encoded.
 *
 * The loop's thread only. */
#ifndef QUILL_REPLICATION_DROPOWN_H
#define QUILL_REPLICATION_DROPOWN_H

#include <stdint.h>

struct replicas;

/* Segment (uid, sno) of a family this node owns is sealed on every holder: its local
 * copy goes, now or (the engine busy with it: not settled yet, a checkpoint taking its
 * chunks) at a later try, every DROPOWN_RETRY_MS. Without memory it stays. lba: what
 * each of its nblocks blocks was written for (logcheck_image_lbas; malloc()ed, taken:
 * freed here), so that the drop looks up those LBAs rather than walk every map
 * (engine_segment_drop_local_hinted); NULL without. */
#define DROPOWN_RETRY_MS 200u
void dropown_note(struct replicas *rs, uint64_t uid, uint32_t sno, uint64_t *lba,
		  uint32_t nblocks);
/* Forgets what waits, stops the timer. */
void dropown_destroy(struct replicas *rs);

#endif
