/* replication/dropown.h — the owner gives up its own copy of a sealed segment once
 * every holder has sealed its copy (engine_segment_drop_local: the engine reads the
 * segment from the holders from then on, replication/readaround.c).
 *
 * Issue 13's first step towards erasure-coded segments without the owner's copy
 * (docs/erasure-coding.md, "The owner's own copy"). Opt-in (replica_opts.drop_own,
 * quilld's QUILL_TEST_DROP_OWN=1): without a stripe it lowers a segment's copies by
 * one, so it is a test setting until encoding on seal replaces the replicas.
 *
 * The loop's thread only. */
#ifndef QUILL_REPLICATION_DROPOWN_H
#define QUILL_REPLICATION_DROPOWN_H

#include <stdint.h>

struct replicas;

/* Segment (uid, sno) of a family this node owns is sealed on every holder: its local
 * copy goes, now or (the engine busy with it: not settled yet, a checkpoint taking its
 * chunks) at a later try, every DROPOWN_RETRY_MS. Without memory it stays. */
#define DROPOWN_RETRY_MS 200u
void dropown_note(struct replicas *rs, uint64_t uid, uint32_t sno);
/* Forgets what waits, stops the timer. */
void dropown_destroy(struct replicas *rs);

#endif
