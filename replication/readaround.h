/* replication/readaround.h — reading runs of a replicated family's segment from the
 * copies on other nodes: the segment mirror's fetch op (engine/segment.h), for a
 * remote entry's reads (engine/remote.c) and the read-around of a block whose local
 * copy failed (engine/repair.c). docs/replication.md, "Fetches", "Read-around and
 * repair".
 *
 * The copies asked are the segment's holders: the live holder set when the segment
 * is one this process placed (replica.c's rseg: open or sealed), else its current
 * record in etcd (CLUSTER_VOL_SEG_LIST), this node left out; connected holders first,
 * each segment's reads starting at another one. Each holder in turn gets one SEG_READ
 * of the blocks still missing; when every block of it is wanted, it names their
 * CRC32Cs (PEER_SEG_F_CRCS): the holder checks before it answers (-EILSEQ: some block
 * of its copy is bad; the run is then asked again without, to keep its good blocks).
 * Every block is checked again on arrival; the bad ones are asked of the next holder.
 * Fetches of one segment asked in the same turn of the loop whose runs lie end to
 * end are one request. When some block has no good copy, the log names every holder
 * tried and why each failed.
 *
 * Threading: the loop's thread (the engine's). Nothing blocks.
 */
#ifndef QUILL_REPLICATION_READAROUND_H
#define QUILL_REPLICATION_READAROUND_H

#include <stdint.h>

#include "engine/segment.h"

struct replicas;

/* seg_mirror_ops.fetch, ctx the replicas: its contract (segment.h). -ENOENT: f's
 * family is no family of this node's; -ENOMEM. */
int readaround_fetch(void *ctx, struct seg_fetch *f);
/* replica_destroy, once the connections are closed: every read still waiting ends
 * -ESHUTDOWN now (one waiting for etcd is freed when etcd answers). */
void readaround_cancel_all(struct replicas *rs);

#endif
