/* replication/layerread.h — the reading side of LAYER_READ: a clone's node reads a range
 * of a snapshot of another family from the node that runs that family (docs/replication.md,
 * "Snapshots and clones across owners"; the op: docs/peer-protocol.md, "LAYER_READ").
 *
 * Every block arrives with the CRC32C its server computed from what its own engine read
 * (and verified against its map); each is checked here before the caller sees any, so
 * that a block damaged on the way is never returned as data.
 *
 * Threading: the loop's thread (the connection's).
 */
#ifndef QUILL_REPLICATION_LAYERREAD_H
#define QUILL_REPLICATION_LAYERREAD_H

#include <stdint.h>

struct peer_conn;

typedef void (*layer_read_cb)(void *arg, int res);

/* Reads nblocks (1..PEER_LAYER_READ_MAX_BLOCKS) blocks of 4096 bytes of snapshot layer
 * `layer` of family uid from block lba, through c (a ready connection to a node that
 * runs the family), into buf (nblocks * 4096 bytes, the caller's until cb runs).
 * Returns 0 -> cb runs exactly once, never before this returns, with:
 *   0          every block arrived and matched its CRC: buf holds them;
 *   -EILSEQ    a block failed its CRC (buf holds nothing trustworthy);
 *   -ESTALE    that node does not run the family: look its owner up again;
 *   -ENOENT    no such snapshot there; -ERANGE past its end;
 *   -EPROTO    a reply that is not a LAYER_READ reply of this many blocks;
 *   -ECONNRESET, -ETIMEDOUT as peer_request();
 * <0 -> cb never runs (-EINVAL a bad range or uid, -ENOTCONN, as peer_request()). */
int layer_read(struct peer_conn *c, uint64_t uid, uint64_t layer, uint64_t lba,
	       uint32_t nblocks, void *buf, unsigned timeout_ms, layer_read_cb cb, void *arg);

/* LAYER_FIND: which layer snapshot volume@snap is, asked of c (the node that runs the
 * volume's family). Returns 0 -> cb runs exactly once, never before this returns, with
 * 0 and the family uid, layer id and size in blocks; -ESTALE (that node does not run
 * the volume), -ENOENT (no such snapshot), -EPROTO, -ECONNRESET, -ETIMEDOUT. <0 -> cb
 * never runs (-EINVAL a bad name). */
typedef void (*layer_find_cb)(void *arg, int res, uint64_t family, uint64_t layer,
			      uint64_t blocks);
int layer_find(struct peer_conn *c, const char *volume, const char *snap, unsigned timeout_ms,
	       layer_find_cb cb, void *arg);

#endif
