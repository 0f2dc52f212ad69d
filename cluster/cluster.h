/* cluster/cluster.h — this node's membership of a quill cluster: its registration in
 * etcd under a lease, the lease deadline that guards client I/O, and the cluster map
 * (nodes up, down, out) kept current by a watch. Spec: docs/cluster.md.
 *
 * Threads: cluster_start() starts two threads of its own, each with its own etcd
 * connection (cluster/etcd.h calls block): the session thread (authenticate, join,
 * keepalives, the operator's node out/in) and the watch thread (the map). They talk
 * to the event loop through an eventfd that the loop watches: opts->on_change runs on
 * the loop's thread after a keepalive was granted, the map changed, or a command
 * finished. Nothing here blocks the loop: cluster_lease_valid() reads an atomic, the
 * status calls copy under a mutex that the threads hold only around memory updates.
 * Every other call is for the loop's thread.
 */
#ifndef QUILL_CLUSTER_CLUSTER_H
#define QUILL_CLUSTER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/layout.h"
#include "cluster/volume.h"

#define CLUSTER_PROTOCOL_VERSION 4u /* what a node speaks to the map and to its peers */
#define CLUSTER_DEFAULT_PREFIX "/quill/default/"
#define CLUSTER_DEFAULT_TTL_S 10u
#define CLUSTER_CRED_MAX 256 /* user name or password, bytes */

struct loop;
struct cluster;

/* The credentials file: "user = NAME" and "password = SECRET" lines ('#' comments).
 * It must be a regular file that only its owner can read or write (mode 0600 or
 * 0400): anyone else who reads it could rewrite the cluster map. Returns 0, or
 * -EACCES (mode), -ENOENT, -EINVAL (format), with a sentence in why. */
int cluster_credentials_load(const char *path, char user[CLUSTER_CRED_MAX],
			     char password[CLUSTER_CRED_MAX], char *why, size_t whylen);

struct cluster_opts {
	struct loop *loop;
	const char *endpoints;        /* "http://127.0.0.1:2379[,...]" */
	const char *credentials_file; /* NULL: etcd without authentication */
	const char *prefix;           /* NULL: CLUSTER_DEFAULT_PREFIX */
	const struct layout_node *self; /* id, domain, addresses, versions (up_since is
					   filled in) */
	unsigned ttl_s;               /* 0: CLUSTER_DEFAULT_TTL_S */
	/* on the loop's thread; fatal: this node cannot be part of the cluster (its
	 * credentials were refused, its versions are incompatible): why says it. */
	void (*on_change)(void *arg);
	void (*on_fatal)(void *arg, const char *why);
	void *arg;
};

/* Checks the options and the credentials file (the reasons are logged), then starts
 * the threads: joining happens in the background, and client I/O waits until it did.
 * -EINVAL, -EACCES, -ENOENT, -ENOMEM. */
int cluster_start(const struct cluster_opts *opts, struct cluster **out);
/* Stops the threads, and revokes the lease (the node is down at once) if etcd answers
 * in time. NULL ok. */
void cluster_stop(struct cluster *cl);

/* May this node complete client I/O now (its lease deadline is ahead)? Any thread. */
bool cluster_lease_valid(const struct cluster *cl);
/* A number that moves whenever a claim of this node is forgotten (its lease lost, a
 * release or remove, a fenced write refused, or the map showing the claim gone or
 * another's): an atomic, for the guard on every completion. on_change follows each
 * move. Any thread. */
uint64_t cluster_claims_gen(const struct cluster *cl);

struct cluster_info {
	char node_id[LAYOUT_ID_MAX + 1];
	char prefix[LAYOUT_PREFIX_MAX + 1];
	char endpoint[256];        /* the etcd endpoint in use */
	bool etcd_ok;              /* the last call to etcd was answered */
	char etcd_error[256];      /* else why not */
	char state[320];           /* "joining", "registered", "waiting for ...", ... */
	int64_t lease_id;          /* 0: none */
	unsigned ttl_s;            /* granted */
	bool lease_valid;
	int64_t lease_remaining_ms; /* until the deadline; <= 0 past it */
	int64_t map_revision;      /* the etcd revision the map is at */
	unsigned lapsed;           /* claims that went with the lease, until the join decides */
	char last_wait[512];       /* the last lapse of this node's lease or claims and how it
				      ended ("" before any): why client I/O waited last */
};
void cluster_info(const struct cluster *cl, struct cluster_info *info);

struct cluster_node {
	struct layout_node rec;    /* last known record */
	bool up;                   /* registered under a live lease */
	bool out;                  /* marked out by an operator */
	bool compatible;           /* versions match this node's */
	bool self;
	bool has_space;            /* space: its space/ID record, while its lease lives */
	struct layout_space space;
};
/* A copy of the map, by node id: *nodes (free() it), *n. 0 or -ENOMEM. */
int cluster_nodes(const struct cluster *cl, struct cluster_node **nodes, size_t *n);
/* One node of the map: 0 or -ENOENT. */
int cluster_node_get(const struct cluster *cl, const char *id, struct cluster_node *out);

/* This node's space as it is now (the loop samples it now and then): the session
 * thread publishes it under the lease (space/ID) when it changed, at most once per
 * keepalive and per second, and again after every join. Any thread. */
void cluster_space_set(struct cluster *cl, const struct layout_space *sp);

/* Marks node id out (out true) or in. Async: returns 0 → cb runs once on the loop's
 * thread with 0 or -errno and a sentence (-ENOENT no such node, an etcd error);
 * <0 → it never runs (-EINVAL a bad id, -ENOMEM). */
typedef void (*cluster_cb)(void *arg, int res, const char *msg);
int cluster_node_mark(struct cluster *cl, const char *id, bool out, cluster_cb cb, void *arg);

/* ---- volumes (cluster/volume.h, docs/cluster.md "Volumes") ---- */

/* A volume as the map shows it (the watch keeps it current). */
struct cluster_volume {
	struct layout_volume rec;
	bool claimed;                  /* a claim is alive */
	struct layout_claim claim;     /* then: the owner and its epoch */
};
/* A copy of the map's volumes, by name: *vols (free() it), *n. 0 or -ENOMEM. */
int cluster_volumes(const struct cluster *cl, struct cluster_volume **vols, size_t *n);
/* One volume of the map: 0 or -ENOENT. */
int cluster_volume_get(const struct cluster *cl, const char *name, struct cluster_volume *out);
/* Does this node hold the claim on name (a claim it made under its current lease)?
 * *epoch its epoch. Any thread. */
bool cluster_volume_owned(const struct cluster *cl, const char *name, int64_t *epoch);
/* The same, and *since: the first epoch of this node's unbroken ownership. It is the
 * claim's epoch, or an earlier one when the claim was taken again at the next epoch
 * after this node's previous one lapsed with its lease (no other claim can have come
 * between: epochs rise by one per claim). What the node served under `since` is
 * still its to answer; a handle opened under an older epoch is stale. Any thread. */
bool cluster_volume_owned_since(const struct cluster *cl, const char *name, int64_t *since);
/* Did this node's claim on name go with its lease, and the node has not joined again
 * yet (it then takes its volumes again, if no one claimed them: owned_since says
 * whether the ownership is unbroken)? Undecided until then. Any thread. */
bool cluster_volume_lapsed(const struct cluster *cl, const char *name);
/* Does this node hold the claim on name? *prev: the claim it replaced, as the claim
 * txn read the record (owner and epoch before; for a create, this node's own): whether
 * this node's local layers are current (layout_local_current). Any thread. */
bool cluster_volume_replaced(const struct cluster *cl, const char *name,
			     struct layout_claim *prev);
/* Has this node joined, and claimed again the volumes whose record names it as their
 * last owner (cluster_volume_async)? Until then a volume it owned before a restart
 * looks unowned. Any thread. */
bool cluster_reclaimed(const struct cluster *cl);
/* Failure domains with at least one node up, in and compatible: their number, and
 * their names, comma-separated, into names (len bytes). */
unsigned cluster_domains(const struct cluster *cl, char *names, size_t len);

enum cluster_vol_op {
	CLUSTER_VOL_CREATE,   /* vol: name, size, sector_size, replicas, ec_k/ec_m -> the record */
	CLUSTER_VOL_READY,    /* the create is done */
	CLUSTER_VOL_BASE_DROP, /* a clone across owners was flattened: no base any more */
	CLUSTER_VOL_CLAIM,    /* -> epoch */
	CLUSTER_VOL_RELEASE,
	CLUSTER_VOL_REMOVE,   /* epoch 0 and no claim of this node: only if unclaimed */
	CLUSTER_VOL_SEG_OPEN, /* seg: id, holders */
	CLUSTER_VOL_SEG_SEAL, /* seg: id, length */
	CLUSTER_VOL_SEG_DELETE, /* seg: id */
	CLUSTER_VOL_SEG_HOLDERS, /* seg: id, holders (an open segment's, after a drop) */
	CLUSTER_VOL_SEG_COPY, /* seg: id; copy_node, copy_phase (catch-up: clvol_segment_copy) */
	CLUSTER_VOL_SEG_STRIPE, /* seg: id, length, stripe (encoding: clvol_segment_stripe) */
	CLUSTER_VOL_SEG_REFRAG, /* seg: id; frag_index, frag_from -> copy_node (a rebuilt
				   fragment: clvol_segment_refrag) */
	CLUSTER_VOL_SEG_LIST, /* -> segs, nsegs */
	CLUSTER_VOL_SEG_LIST_ALL, /* every volume's (vol.name unused) -> segs, seg_vols, nsegs */
};

/* One volume call; the caller's, alive until its cb ran. */
struct cluster_vol_req {
	enum cluster_vol_op op;
	struct layout_volume vol;   /* vol.name always */
	/* in: the epoch the caller believes in (0: this node's claim, if any); out:
	 * CREATE, CLAIM: the new one */
	int64_t epoch;
	struct layout_segment seg;
	char copy_node[LAYOUT_ID_MAX + 1]; /* in, SEG_COPY; SEG_REFRAG: the new holder */
	char frag_from[LAYOUT_ID_MAX + 1]; /* in, SEG_REFRAG: the gone holder */
	unsigned frag_index;               /* in, SEG_REFRAG */
	enum clvol_copy_phase copy_phase;  /* in, SEG_COPY */
	struct clvol_gone copy_gone;       /* in, SEG_COPY DONE: gone holders that leave
					      with it (n 0: none; struct clvol_gone) */
	bool drop_replicas;                /* in, SEG_STRIPE: the write empties holders */
	bool resumed;               /* out, CREATE: an unfinished create was taken over */
	struct layout_claim prev;   /* out, CREATE, CLAIM: the claim it replaced
				       (cluster_volume_replaced) */
	struct layout_segment *segs; /* out, SEG_LIST(_ALL): free() it */
	char (*seg_vols)[LAYOUT_ID_MAX + 1]; /* out, SEG_LIST_ALL: segs[i]'s volume; free() it */
	size_t nsegs;
};
/* Runs req on the cluster's session thread (etcd transactions, cluster/volume.h):
 * returns 0 -> cb runs once on the loop's thread with 0 or -errno and a sentence;
 * <0 -> it never runs (-EINVAL a bad name, -ENOMEM). Writes are fenced by the
 * epoch: a node that is not the volume's live owner at that epoch records nothing
 * (-ESTALE; -ENOLCK while its claim only lapsed with its lease, nobody claimed since:
 * the claim waits for the next join; -EAGAIN for a write of an older epoch of a
 * volume this node holds again since, with no other owner between, or while it has
 * no lease: the caller tries again). A successful CREATE or CLAIM makes this node
 * the owner (until RELEASE,
 * REMOVE, or its lease is lost); at each join the node claims again the volumes whose
 * record names it as the last owner and that no one claimed since. */
int cluster_volume_async(struct cluster *cl, struct cluster_vol_req *req, cluster_cb cb,
			 void *arg);
/* cluster_volume_async of reqs[0..n) with args[0..n) (n <= CLVOL_COPY_BATCH_MAX), queued
 * together in their order: copy steps of one volume and epoch, so queued, share one
 * txn (docs/cluster.md, "Copy steps in one write"), where one at a time the session
 * thread may take each alone. All are queued, or none (-EINVAL, -ENOMEM). */
int cluster_volume_async_many(struct cluster *cl, struct cluster_vol_req *const *reqs,
			      void *const *args, size_t n, cluster_cb cb);
/* A number that moves whenever the watch sees a segment record change (or reloads the
 * map): a hint that SEG_LIST_ALL may answer differently. Any thread. */
uint64_t cluster_segments_gen(const struct cluster *cl);
/* A number that moves whenever the watch brings news of the map (a node, a volume or
 * an owner changed; not nodes' space, nor segment records: cluster_segments_gen) or
 * the map reloads. on_change follows each move, but on_change also follows every
 * command the loop sent and every segment record written, several a second under
 * writes, so what costs (a scan of a volume's records) waits for this or
 * cluster_claims_gen() to move. Any thread. */
uint64_t cluster_map_gen(const struct cluster *cl);

#endif
