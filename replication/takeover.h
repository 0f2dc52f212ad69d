/* replication/takeover.h — taking over a replicated volume whose owner died, from the
 * copies its holders keep (docs/replication.md, "Takeover").
 *
 * After this node claimed the volume at `epoch` (its engine has no such volume; etcd
 * has its segment records), a takeover runs these steps on the loop, one line in the
 * log each, with its time:
 *   1. list   the family's segment records (one range read in etcd)
 *   2. raise  EPOCH_RAISE(uid, epoch) to every node a record names as a holder, and
 *             to this node's own held copies: from each answer on, the old owner can
 *             land nothing there
 *   3. seal   each segment recorded open: SEG_STAT on the holders its record names,
 *             the shortest length among those that answered (at least one must, else
 *             the whole takeover waits and starts again: it never guesses), the sealed
 *             record under the new epoch, SEG_SEAL to the holders
 *   4. copy   every live segment not held here whole is read from a holder (SEG_READ)
 *             into a held copy (engine_held_open/write/seal)
 *   5. adopt  engine_family_adopt_async: the copies become the family's log, its
 *             layers are rebuilt from it
 *   6. serve  replica_family_set: new segments are replicated under the new epoch
 * cb(0) once the volume can be served, or -errno with a sentence.
 *
 * Threading: the loop's thread (the engine's). Nothing blocks: etcd calls go through
 * cluster_volume_async, peers through peer_request on connections of its own.
 */
#ifndef QUILL_REPLICATION_TAKEOVER_H
#define QUILL_REPLICATION_TAKEOVER_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct engine;
struct cluster;
struct peer_endpoint;
struct replicas;
struct takeover;

struct takeover_opts {
	struct loop *loop;
	struct engine *eng;
	struct cluster *cluster;
	struct peer_endpoint *ep;
	struct replicas *rs;
	const char *self_id;
	unsigned peer_timeout_ms; /* 0: REPLICA_DEFAULT_PEER_TIMEOUT_MS */
};

typedef void (*takeover_cb)(void *arg, int res, const char *msg);

/* Starts the takeover of `name` claimed at `epoch`: 0 and *out (the takeover frees
 * itself after cb ran; *out is valid until then), or -errno (-EINVAL, -ENOMEM) and cb
 * never runs. */
int takeover_start(const struct takeover_opts *o, const char *name, int64_t epoch,
		   takeover_cb cb, void *arg, struct takeover **out);
/* The step it is at, for people ("copying segments (3/10)"). */
void takeover_step(const struct takeover *t, char *buf, size_t len);
/* Stops it: cb runs now with -ECANCELED (a node shutting down). Requests in flight
 * end in the background. */
void takeover_cancel(struct takeover *t);

#endif
