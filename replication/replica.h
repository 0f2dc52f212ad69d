/* replication/replica.h — the owner side of replicated volumes: the replica sets of
 * this node's families (docs/replication.md, "The write path (owner)").
 *
 * A family registered here (a replicated volume this node owns: its uid, name, epoch,
 * R and min_replicas) has every segment written locally AND on up to R-1 other nodes
 * ("holders"), which keep a byte-identical copy (replication/holder.h serves them).
 * This module is the engine's segment mirror (engine/segment.h, seg_mirror_ops):
 *
 *   open    holders by placement_pick over the cluster map (up, in, compatible nodes
 *           of other failure domains, connected; the owner itself is the first copy),
 *           the segment recorded open in etcd (CLUSTER_VOL_SEG_OPEN), then SEG_OPEN
 *           to each holder; appends queue meanwhile. The family's next segment is
 *           opened so ahead of need, while the current one fills
 *   append  SEG_APPEND to every holder in parallel with the local write; the engine's
 *           call completes when the local write and every current holder did
 *   flush   SEG_FLUSH to every holder that acknowledged an append since its last one
 *   seal    once every append of the segment is done: the sealed record in etcd, then
 *           SEG_SEAL to the holders
 *   delete  the record deleted in etcd, then SEG_DELETE to the holders
 *   read    a block whose local copy failed, from a holder (replication/readaround.h)
 *
 * A holder that fails (an error, its connection lost) or is silent for the peer
 * timeout is dropped from each segment it holds: the reduced holder set is recorded
 * in etcd (CLUSTER_VOL_SEG_HOLDERS) before any write that holder lacks is
 * acknowledged, and the drop is logged with the node and the reason. The engine then
 * seals the segment at once (engine_family_seal_open) and the next write opens a
 * segment placed on healthy nodes ("Seal and reopen" in docs/replication.md). While a
 * segment has fewer than min_replicas copies (the owner's included), its writes wait:
 * they are never acknowledged with fewer (sealed at its full length, it is copied by
 * catch-up, and they complete once enough nodes hold it).
 * Sealed segments recorded with fewer than R holders (a holder dropped, or a segment
 * placed while a node was away) are copied to a suitable node by catch-up
 * (replication/catchup.h), throttled.
 *
 * Threading: the loop's thread, which is the engine's. Nothing blocks: etcd calls go
 * through cluster_volume_async, peers through peer_request.
 */
#ifndef QUILL_REPLICATION_REPLICA_H
#define QUILL_REPLICATION_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replication/catchup.h"
#include "replication/encode.h"
#include "replication/fragread.h"

struct loop;
struct engine;
struct cluster;
struct peer_endpoint;
struct replicas;

#define REPLICA_DEFAULT_PEER_TIMEOUT_MS 1000u
#define REPLICA_DEFAULT_OUT_AFTER_S 600u

struct replica_opts {
	struct loop *loop;
	struct engine *eng;      /* its mirror is set to this module until destroy */
	struct peer_endpoint *ep; /* outgoing connections to the holders */
	struct cluster *cluster;  /* the map, and the segment records */
	const char *self_id;      /* this node's id in the map */
	unsigned peer_timeout_ms; /* 0: REPLICA_DEFAULT_PEER_TIMEOUT_MS */
	unsigned catchup_mbps;    /* catch-up's budget, MB/s; 0: CATCHUP_DEFAULT_MBPS; the
				     ceiling of its adaptive rate */
	unsigned catchup_share;   /* % of their throughput this node's clients keep while it
				     copies (catchup_rate.h); 0: a fixed rate of catchup_mbps */
	unsigned catchup_inflight; /* segments copied at once; 0: CATCHUP_DEFAULT_INFLIGHT */
	bool catchup_off;         /* no catch-up: segments below R stay so */
	unsigned scrub_mbps;      /* the background scrub's budget, MB/s; 0: no background
				     scrub (scrub.h) */
	unsigned scrub_interval_s; /* between background rounds; 0: SCRUB_DEFAULT_INTERVAL_S */
	unsigned out_after_s;     /* a node down this long is gone for good: its copies are
				     rebuilt elsewhere (catchup.h); 0: REPLICA_DEFAULT_OUT_AFTER_S */
	/* tests only (quilld: QUILL_TEST_CRASH_AFTER_OPEN=N): after the N-th open record
	 * of this process landed, send no more appends, record one past the next number
	 * open too and raise SIGKILL, so that a record names a segment the log never got.
	 * 0: off */
	unsigned test_crash_after_open;
	/* tests only (quilld: QUILL_TEST_CRASH_AFTER_SEAL=N): after the N-th sealed record
	 * of this process landed, raise SIGKILL before any SEG_SEAL goes to its holders,
	 * so that a record says sealed while every copy is still open. 0: off */
	unsigned test_crash_after_seal;
	/* tests only (quilld: QUILL_TEST_DROP_OWN=1): the owner's own copy of a sealed
	 * segment goes once every holder sealed its copy, its reads go to the holders
	 * (dropown.h): issue 13's segment without a local slot, before encoding exists */
	bool drop_own;
	/* tests only (quilld: QUILL_TEST_CRASH_ENCODE=N): SIGKILL once the N-th encoded
	 * segment's fragments are durable, before its stripe is recorded (encode.h). 0: off */
	unsigned test_crash_encode;
	/* tests only (quilld: QUILL_TEST_CRASH_REBUILD=N): SIGKILL once the N-th rebuilt
	 * fragment is durable on its new holder, before the stripe names it (fragbuild.h).
	 * 0: off */
	unsigned test_crash_rebuild;
	/* tests only (quilld: QUILL_TEST_FRAGS_FIRST=1): a fetch of a striped segment reads
	 * its fragments first, its replicas only if they fail (the path every read of an
	 * encoded segment takes once its replicas are gone) */
	bool frags_first;
	/* quilld: on unless QUILL_EC_KEEP_REPLICAS=1: the fenced write that records a
	 * stripe also empties the segment's holders, the owner drops its own copy and sends
	 * SEG_DELETE to the old holders (their orphan checks behind it), and fetches of
	 * striped segments read the fragments; a new owner adopts such a segment as a
	 * remote entry (docs/erasure-coding.md, "The replicas go") */
	bool ec_drop_replicas;
};

/* 0 or -errno (-EINVAL, -ENOMEM). The engine's segment mirror is set. */
int replica_create(const struct replica_opts *opts, struct replicas **out);
/* Clears the engine's mirror, closes the connections; writes still waiting for their
 * copies fail (-ESHUTDOWN). Before the engine and the endpoint go. NULL ok. */
void replica_destroy(struct replicas *rs);

/* Registers the family uid (a replicated volume this node owns), or updates its
 * epoch after a claim. Segments opened from now on are replicated. -EINVAL
 * (replicas 0 or above LAYOUT_MAX_REPLICAS, min_replicas above replicas), -ENOMEM. */
int replica_family_set(struct replicas *rs, uint64_t uid, const char *name, int64_t epoch,
		       unsigned replicas, unsigned min_replicas);

/* The scrub of this node's families (scrub.h: scrub_start, scrub_report_get), or NULL. */
struct scrub *replica_scrub(struct replicas *rs);

/* The cluster map moved: connects to new nodes, retries what waits for placement. */
void replica_map_changed(struct replicas *rs);

/* A family's copies, for volume info and cluster status. */
#define REPLICA_STATUS_SEGS 8
struct replica_status {
	unsigned replicas, min_replicas;
	unsigned copies;       /* the fewest copies of an open segment (replicas: none open) */
	bool degraded;         /* an open segment has fewer than replicas copies */
	bool waiting;          /* an open segment's writes wait: fewer than min_replicas
				  copies, or not placed yet */
	char why[160];         /* when degraded or waiting: why, for people */
	struct catchup_status catchup; /* sealed segments recorded below R (catchup.h) */
	struct encoder_status encode;  /* an EC family's sealed segments (encode.h) */
	struct fragread_status frag;   /* its reads from fragments (fragread.h) */
	unsigned nsegs;        /* open segments (at most REPLICA_STATUS_SEGS, newest) */
	struct replica_seg_status {
		uint32_t sno;
		unsigned nholders;  /* the owner's copy first */
		char holders[8][64];
		bool placed;        /* recorded and open on its holders */
	} segs[REPLICA_STATUS_SEGS];
};
/* Every read from fragments this process made (fragread.h); zeros for NULL. */
void replica_frag_totals(const struct replicas *rs, struct fragread_status *out);
/* 0 and *out, or -ENOENT: name is no family registered here. */
int replica_status(const struct replicas *rs, const char *name, struct replica_status *out);

#endif
