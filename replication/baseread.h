/* replication/baseread.h — the transport of remote bases: a clone's family reads the
 * ranges it never wrote from the snapshot of another family that it was cloned from
 * (engine_base_ops, engine/engine.h; docs/replication.md, "Snapshots and clones across
 * owners").
 *
 * Who answers: the node that runs the parent family. When that is this node (the
 * parent's owner made or took the clone), the snapshot is read here, from the local
 * engine (the local shortcut). Otherwise the parent volume's owner is looked up in the
 * cluster map and asked with LAYER_READ over the peer session (the cluster secret's).
 * A read that finds no owner, a node that answers -ESTALE (it does not run the family
 * any more: a takeover is under way), a lost connection or a timeout are retried every
 * BASEREAD_RETRY_MS with the owner looked up again, until BASEREAD_GIVE_UP_MS have
 * passed since the read began: a client read is never failed for a parent owner that
 * is only changing hands. The parent is never claimed from here.
 *
 * Threading: the loop's thread (the engine's). Nothing blocks.
 */
#ifndef QUILL_REPLICATION_BASEREAD_H
#define QUILL_REPLICATION_BASEREAD_H

#include <stdint.h>

#include "engine/engine.h"

struct replicas;

#define BASEREAD_RETRY_MS 200u
#define BASEREAD_GIVE_UP_MS 120000u /* beyond any client's own timeout */

/* engine_base_ops.read, ctx the replicas (replica_create registers it). */
int baseread_read(void *ctx, const struct engine_base *base, uint64_t lba, uint32_t nblocks,
		  void *buf, engine_cb cb, void *arg);
/* replica_destroy, once the connections are closed: every read waiting ends -ESHUTDOWN. */
void baseread_cancel_all(struct replicas *rs);
/* Reads waiting now for the owner of base volume `volume` (no owner in the map, or
 * it is not connected): cluster status names the clones that wait. */
unsigned baseread_waiting(const struct replicas *rs, const char *volume);

/* Which layer snapshot volume@snap is: asked of the volume's owner (LAYER_FIND), or
 * of this node's engine when it runs the volume. cb(arg, 0, family, layer, blocks) or
 * cb(arg, -errno, ...): -EREMOTE no owner now, -ENOTCONN the owner is not connected,
 * -ENOENT no such snapshot, the peer's errors. Returns 0 -> cb runs once, never
 * before this returns; <0 -> it never runs. */
typedef void (*baseread_find_cb)(void *arg, int res, uint64_t family, uint64_t layer,
				 uint64_t blocks);
int baseread_find(struct replicas *rs, const char *volume, const char *snap,
		  baseread_find_cb cb, void *arg);

/* Family uid (volume name of the map) reads through the base its record names, or
 * through none when the record names none (flattened): set in the engine. A family
 * taken or claimed here gets its base again this way (replica_family_set). 0, or
 * -ENOENT the map has no such volume (nothing changed), or the engine's -errno. */
int baseread_family_base(struct replicas *rs, uint64_t uid, const char *name);
/* The engine's base for a record (rec->base set; its size is the snapshot's). */
struct layout_volume;
void baseread_base_of(const struct layout_volume *rec, struct engine_base *out);

#endif
