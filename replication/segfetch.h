/* replication/segfetch.h — a sealed segment read whole from the nodes that hold it,
 * in parallel, and checked before it is written anywhere: a rebuild's source when the
 * owner has no whole local copy of the segment (it was never the owner's, its copy was
 * dropped, or the owner that wrote it is gone; docs/replication.md, "Rebuild").
 *
 * The segment is cut into chunks of SEGFETCH_CHUNK_BLOCKS; every holder connected now
 * is asked for chunks with SEG_READ, at most SEGFETCH_PER_HOLDER at a time each, so
 * that R−1 healthy holders share the reading. A holder that refuses, fails, or sends
 * a chunk of the wrong size is asked nothing more and its chunk goes to another. Once
 * every chunk is in, the image is checked whole (logcheck_image_check: the segment's
 * header, every batch's data against the CRC32C its summary names); the chunks under
 * a bad part are asked again of other holders, and their first holder is asked
 * nothing more.
 *
 * Threading: the loop's thread (the replica set's).
 */
#ifndef QUILL_REPLICATION_SEGFETCH_H
#define QUILL_REPLICATION_SEGFETCH_H

#include <stdint.h>

#include "cluster/layout.h"

struct replicas;
struct segfetch;

#define SEGFETCH_CHUNK_BLOCKS 256u /* 1 MiB per SEG_READ */
#define SEGFETCH_PER_HOLDER 2u

/* res 0: the image is whole and checked (segfetch_data); else -ENOTCONN (no holder
 * left to ask), -EILSEQ (a part failed its check on every holder that had it), or
 * -ENOMEM. why: a sentence for the log. */
typedef void (*segfetch_cb)(void *arg, int res, const char *why);

/* Reads blocks [0, blocks) of segment (uid, sno) of a family at epoch from the nodes
 * named in holders (this node's own id is skipped). Returns 0 → cb runs exactly once,
 * never before this returns, unless segfetch_destroy() comes first; <0 → it never
 * runs (-ENOTCONN: none of them is connected, -ENOMEM, -EINVAL: blocks 0). */
int segfetch_start(struct replicas *rs, uint64_t uid, uint32_t sno, int64_t epoch,
		   uint32_t blocks, const char (*holders)[LAYOUT_ID_MAX + 1], unsigned nholders,
		   segfetch_cb cb, void *arg, struct segfetch **out);
/* The image after cb(0): blocks × 4096 bytes, valid until segfetch_destroy. */
const void *segfetch_data(const struct segfetch *f);
/* How many holders sent chunks that were kept. */
unsigned segfetch_sources(const struct segfetch *f);
/* Ends f; cb does not run after this. Requests still in flight are dropped when they
 * are answered (f's memory goes with the last one). NULL ok. */
void segfetch_destroy(struct segfetch *f);

#endif
