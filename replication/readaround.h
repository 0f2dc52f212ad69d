/* replication/readaround.h — reading a block of a replicated family from a copy on
 * another node, for the engine's read-around (the segment mirror's read op,
 * engine/segment.h; the engine's side: engine/repair.c). docs/replication.md,
 * "Read-around and repair".
 *
 * The copies asked are the segment's holders: the live holder set when the segment
 * is one this process placed (replica.c's rseg: open or sealed), else its current
 * record in etcd (CLUSTER_VOL_SEG_LIST), this node left out. Each holder is asked in
 * turn with a SEG_READ that names the block's CRC32C (PEER_SEG_F_CRCS): the holder
 * checks before it answers (-EILSEQ: its copy is bad too), and the block is checked
 * again on arrival. The first good copy completes the read; when none is, the log
 * names every holder tried and why each failed.
 *
 * Threading: the loop's thread (the engine's). Nothing blocks.
 */
#ifndef QUILL_REPLICATION_READAROUND_H
#define QUILL_REPLICATION_READAROUND_H

#include <stdint.h>

#include "engine/segment.h"

struct replicas;

/* seg_mirror_ops.read, ctx the replicas: its contract (segment.h). -ENOENT: uid is no
 * family of this node's; -ENOMEM. */
int readaround_read(void *ctx, uint64_t uid, uint32_t sno, uint32_t block, void *buf,
		    uint32_t crc, seg_cb cb, void *arg);
/* seg_mirror_ops.read_remote: the same for a segment with no local copy, whose reads
 * are its ordinary reads: a block read from the first holder asked is not logged. */
int readaround_read_remote(void *ctx, uint64_t uid, uint32_t sno, uint32_t block, void *buf,
			   uint32_t crc, seg_cb cb, void *arg);
/* replica_destroy, once the connections are closed: every read still waiting ends
 * -ESHUTDOWN now (one waiting for etcd is freed when etcd answers). */
void readaround_cancel_all(struct replicas *rs);

#endif
