/* cluster/volume.h — volumes in the cluster map (spec: docs/cluster.md, "Volumes"):
 * their records, the owner's claim and its epoch, and the segment lifecycle records,
 * each written by one etcd transaction.
 *
 * The fence: every write an owner makes compares the exact bytes of its claim
 * (owners/NAME = {"node": ID, "epoch": E}, layout_claim_encode). That key lives under
 * the owner's lease, and only a claim with a higher epoch replaces it, so the compare
 * holds only while this node's claim at epoch E is alive: an owner whose lease lapsed,
 * or that another node has since taken the volume from, records nothing (-ESTALE).
 * A claim that only lapsed with the lease (the record still names this node at E, no
 * claim is alive) is told apart (-ENOLCK): the next join claims it again at E + 1,
 * and the caller tries again under that epoch.
 *
 * The calls block (etcd.h): they run on the cluster's session thread, reached from the
 * loop through cluster_volume_async() (cluster.h). The txn builders are separate so
 * that unit tests check every compare without etcd.
 *
 * Errors (with a sentence in msg): -EEXIST the name (or segment) is taken; -ENOENT no
 * such volume (segment); -EBUSY another node's claim is alive; -ESTALE the caller's
 * epoch is not the volume's live claim; -ENOLCK it was, and lapsed with the caller's
 * lease, and no node claimed since; -EINVAL a bad name or argument; etcd's own
 * (etcd.h).
 */
#ifndef QUILL_CLUSTER_VOLUME_H
#define QUILL_CLUSTER_VOLUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/layout.h"

struct etcd;
struct json_object;

/* Who writes: the cluster's prefix, this node's id, and its lease (claims go under it). */
struct clvol_segcache;
struct clvol_who {
	const char *prefix;
	const char *node;
	int64_t lease;
	struct clvol_segcache *cache; /* the segment records this node wrote last, or NULL */
};

/* The segment records this node wrote last, with their mod_revision: a read-modify-
 * write of one of them (a copy's DONE after its START) skips the read and compares
 * that revision; a record changed meanwhile fails the compare and is read as before.
 * One thread's (the session's). */
int clvol_segcache_create(struct clvol_segcache **out);
void clvol_segcache_destroy(struct clvol_segcache *c); /* NULL ok */

/* A txn's three arrays: compare, success, failure. */
struct clvol_txn {
	struct json_object *cmp, *ok, *fail;
};
void clvol_txn_free(struct clvol_txn *t);

/* Creating vol (state, owner and epoch set by the caller): volumes/NAME does not exist;
 * then the record and the claim {owner, epoch} under lease. */
int clvol_txn_create(const char *prefix, const struct layout_volume *vol, int64_t lease,
		     struct clvol_txn *t);
/* Claiming: no live claim, and the record unchanged since it was read at rec_mod;
 * then vol (the record with its raised epoch and new owner) and the claim. */
int clvol_txn_claim(const char *prefix, const struct layout_volume *vol, int64_t rec_mod,
		    int64_t lease, struct clvol_txn *t);
/* Fenced: owners/NAME is exactly claim; no operations yet (the caller adds them). */
int clvol_txn_fenced(const char *prefix, const char *vol, const struct layout_claim *claim,
		     struct clvol_txn *t);

/* The record, its mod revision, and the live claim (claim->node "" when none). */
int clvol_get(struct etcd *e, const char *prefix, const char *name, struct layout_volume *vol,
	      int64_t *mod, struct layout_claim *claim, char *msg, size_t len);

/* Registers vol (name, size, sector_size, replicas in; the rest filled: state
 * creating, owner this node, epoch 1) with this node's claim. A record of the same
 * name still "creating" with no live claim (a create that died half way) is taken over
 * instead: *resumed, epoch raised. -EEXIST otherwise. */
int clvol_create(struct etcd *e, const struct clvol_who *w, struct layout_volume *vol,
		 bool *resumed, char *msg, size_t len);
/* The create is done: the record's state becomes ready (fenced). */
int clvol_ready(struct etcd *e, const struct clvol_who *w, const char *name, int64_t epoch,
		char *msg, size_t len);
/* A clone across owners was flattened: its record names no base any more (fenced). */
int clvol_base_drop(struct etcd *e, const struct clvol_who *w, const char *name,
		    int64_t epoch, char *msg, size_t len);
/* Claims the volume for this node (no live claim): *epoch the new one, *prev the claim
 * it replaced (the record's owner and epoch as the txn read them: whose layers are
 * current, layout_local_current). Already this node's under its current lease: 0, the
 * same epoch, *prev that claim itself. */
int clvol_claim(struct etcd *e, const struct clvol_who *w, const char *name, int64_t *epoch,
		struct layout_claim *prev, char *msg, size_t len);
/* Gives up the claim (fenced): another node may claim at once. */
int clvol_release(struct etcd *e, const struct clvol_who *w, const char *name, int64_t epoch,
		  char *msg, size_t len);
/* Removes the record, the claim and the segment records: fenced by this node's claim
 * at epoch, or (epoch 0) only while no claim is alive. Also undoes a failed create. */
int clvol_remove(struct etcd *e, const struct clvol_who *w, const char *name, int64_t epoch,
		 char *msg, size_t len);

/* Segment lifecycle records, each fenced by (this node, epoch). open: seg's id and
 * holders, the segment not recorded yet. seal: an open (or sealed) segment, its length.
 * delete: gone (deleting what is not recorded succeeds: a retry). */
int clvol_segment_open(struct etcd *e, const struct clvol_who *w, const char *name,
		       int64_t epoch, const struct layout_segment *seg, char *msg, size_t len);
int clvol_segment_seal(struct etcd *e, const struct clvol_who *w, const char *name,
		       int64_t epoch, const struct layout_segid *id, uint64_t length, char *msg,
		       size_t len);
/* holders: an open segment's holder set becomes seg->holders (a holder was dropped:
 * docs/replication.md), fenced, the record unchanged since it was read. */
int clvol_segment_holders(struct etcd *e, const struct clvol_who *w, const char *name,
			  int64_t epoch, const struct layout_segment *seg, char *msg, size_t len);
/* copy (catch-up, docs/replication.md): a sealed segment's copy to node. START: node
 * joins the record's "copying" list (never a full member; its orphan check keeps the
 * copy); DONE: it moves from "copying" to the holders (the copy is whole and sealed);
 * ABORT: it leaves "copying"; DROP: it leaves the holders (it refused the seal with
 * ERANGE: it holds less than the sealed length, so the record must not claim its copy;
 * catch-up makes a good one); gone (DONE, or NULL): see struct clvol_gone. Fenced, the
 * record unchanged since it was read; retries
 * of a step that took effect succeed. -EBUSY the segment is open (or DROP of its last
 * holder), -EEXIST (START) node holds it already, -ENOENT (DONE) no such copy under
 * way, or no such record. */
enum clvol_copy_phase { CLVOL_COPY_START, CLVOL_COPY_DONE, CLVOL_COPY_ABORT, CLVOL_COPY_DROP };
/* A DONE's holders gone for good (as the owner judges them) that leave the record in
 * the same write (a rebuild: one etcd step per segment fewer than a DROP of each
 * later): they leave only if at least `keep` (R) of the holders that stay are not in
 * the list, else all stay (the next scan's DROP, once it holds). n 0: none. */
struct clvol_gone {
	unsigned n, keep;
	char ids[LAYOUT_MAX_HOLDERS][LAYOUT_ID_MAX + 1];
};
int clvol_segment_copy(struct etcd *e, const struct clvol_who *w, const char *name,
		       int64_t epoch, const struct layout_segid *id, const char *node,
		       enum clvol_copy_phase phase, const struct clvol_gone *gone, char *msg,
		       size_t len);
/* Several copy steps of one volume, on distinct segments, in one fenced txn
 * (docs/cluster.md, "Copy steps in one write"): each record compared against its
 * revision (one this node wrote last: the revision of that write, without a read;
 * else read first) and written if every compare holds. A failed compare leaves each
 * step to run alone (its `alone` set: the caller runs it by clvol_segment_copy, the
 * records still known compare as they were, so only one that changed is read
 * again); so is a step whose change is refused on a known record, or whose record
 * it did not find. Left to the caller because those are up to one etcd call each
 * (a read and a txn): a caller that owes a keepalive runs them one at a time,
 * keepalives between. Each other step's outcome in its res and msg (as
 * clvol_segment_copy's); the call returns 0, or -EINVAL for a batch it cannot take
 * (n 0, or two steps on one segment: none ran). */
struct clvol_copy_item {
	struct layout_segid id;
	const char *node;
	enum clvol_copy_phase phase;
	const struct clvol_gone *gone; /* DONE's, or NULL */
	int res;                       /* out, unless alone */
	char *msg;                     /* out: msg_len bytes */
	size_t msg_len;
	bool alone;                    /* out: not run; run it by clvol_segment_copy */
};
#define CLVOL_COPY_BATCH_MAX 16u
int clvol_segment_copy_batch(struct etcd *e, const struct clvol_who *w, const char *name,
			     int64_t epoch, struct clvol_copy_item *items, size_t n);
/* The record change of one copy step (clvol_segment_copy without etcd): 0 (rec
 * changed, or a retry that took effect) or -errno with why in msg. gone: DONE's, or
 * NULL. */
int clvol_copy_apply(struct layout_segment *rec, const char *node, enum clvol_copy_phase phase,
		     const struct clvol_gone *gone, char *msg, size_t len);
/* stripe (encoding, docs/erasure-coding.md): the sealed segment seg->id, of seg->length
 * bytes, is encoded as seg->stripe (every fragment durable on its node): the record
 * gets "stripe"; with drop_replicas the same write empties its holders (the fragments
 * are the segment from then on, every copy an orphan), else they are kept.
 * Fenced, the record unchanged since it was read; the same stripe again succeeds (a
 * retry). -EBUSY the segment is open, -ERANGE another length, -EEXIST another stripe
 * recorded, -EINVAL a stripe that is not k+m named fragments, -ENOENT no record. */
int clvol_segment_stripe(struct etcd *e, const struct clvol_who *w, const char *name,
			 int64_t epoch, const struct layout_segment *seg, bool drop_replicas,
			 char *msg, size_t len);
/* refrag (rebuild of a fragment, docs/erasure-coding.md "Rebuild of fragments"): the
 * stripe's fragment `index`, held by node `from` (gone for good), is held by node `to`
 * now (rebuilt there, durable, of the same CRC): frags[index] becomes `to`, nothing else
 * changes but `to` leaving the "copying" list (the mark that kept the fragment put
 * there from its orphan check: copy START before the put). Fenced, the record
 * unchanged since it was read; a retry that took effect (frags[index] is `to`
 * already) succeeds. -EINVAL no stripe or index past it, -ESTALE frags[index] is
 * neither from nor to, -ENOENT no record. */
int clvol_segment_refrag(struct etcd *e, const struct clvol_who *w, const char *name,
			 int64_t epoch, const struct layout_segid *id, unsigned index,
			 const char *from, const char *to, char *msg, size_t len);
int clvol_segment_delete(struct etcd *e, const struct clvol_who *w, const char *name,
			 int64_t epoch, const struct layout_segid *id, char *msg, size_t len);
/* Every segment record of the volume, in (family, seq) order: *segs (free() it), *n. */
int clvol_segment_list(struct etcd *e, const char *prefix, const char *name,
		       struct layout_segment **segs, size_t *n, char *msg, size_t len);
/* Every segment record of every volume (one range of PREFIX segments/), in key order,
 * and each one's volume in (*vols)[i]: free() both. A record that does not decode
 * fails it (-EPROTO): nothing may be judged on a partial list. */
int clvol_segment_list_all(struct etcd *e, const char *prefix, struct layout_segment **segs,
			   char (**vols)[LAYOUT_ID_MAX + 1], size_t *n, char *msg, size_t len);

#endif
