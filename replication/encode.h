/* replication/encode.h — the owner encodes the sealed segments of its erasure-coded
 * volumes into K+M fragments (docs/erasure-coding.md, "Encoding on seal").
 *
 * A scan reads each EC family's segment records (one range read, like catch-up's) and
 * picks the sealed ones with no stripe that every replica holds (R = M+1 holders, no
 * copy under way) and that this node has whole in its own log: the candidates, started
 * as jobs, the next as soon as one ends: one at a time while that keeps up, up to
 * ENCODE_INFLIGHT at once while many wait (a backlog). One job:
 *
 *   1. read: the owner's sealed copy, in chunks (engine_segment_read_async)
 *   2. encode: on the replica sets' worker thread (rs->worker, common/worker.h, shared
 *      with the rebuild's and the scrub's CPU work; ec_stripe_images: K data and M
 *      parity images, each with its header and CRC table); the completion comes back
 *      to the loop. At most ENCODE_INFLIGHT jobs hold buffers at once:
 *      memory is bounded by that many segments and their images
 *   3. place: the K+M holders by the replicas' rendezvous placement over the usable
 *      nodes and this one, one per failure domain. Fewer domains: the segment stays
 *      replicated, logged once per family until the domains are back
 *   4. put: FRAG_PUT of fragment i to holder i (this node's own: engine_frag_put_async,
 *      the same call the holder's peer server makes); each answer means durable. A
 *      node that holds another fragment of it (an earlier encoding placed otherwise)
 *      gets SEG_DELETE kind 1 first, once
 *   5. record: one fenced write (CLUSTER_VOL_SEG_STRIPE, the owner's epoch) adds
 *      "stripe" to the record and empties the holders (unless QUILL_EC_KEEP_REPLICAS=1
 *      on quilld: the replicas stay); then SEG_DELETE to the old holders, best effort
 *      (docs/erasure-coding.md, "The replicas go").
 *
 * A failure or a crash at any step leaves the replicas and the record without stripe;
 * fragments already put are orphans, dropped by the holders' orphan check
 * (replication/orphans.h), or met again (same index and CRC: answered 0) when the
 * segment is encoded again at a later scan, by this owner or the next.
 *
 * Threading: the loop's thread (the engine's), apart from step 2 on the worker, which
 * touches only the job handed to it.
 */
#ifndef QUILL_REPLICATION_ENCODE_H
#define QUILL_REPLICATION_ENCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct replicas;
struct encoder;

#define ENCODE_INFLIGHT 4u        /* segments being read, encoded or put at once, at most */
#define ENCODE_BACKLOG_STEP 8u   /* segments waiting to start per job more */
#define ENCODE_READ_BLOCKS 256u   /* 1 MiB per local read */
#define ENCODE_PUT_TIMEOUT_MS 30000u /* a FRAG_PUT is a whole fragment, synced */

/* 0 or -ENOMEM.
 * test_crash_after: tests only (quilld: QUILL_TEST_CRASH_ENCODE=N): once the N-th job
 * of this process has every fragment durable, SIGKILL before the stripe's record, so
 * that orphan fragments are left. 0: off. */
int encoder_create(struct replicas *rs, unsigned test_crash_after, struct encoder **out);
/* Abandons the jobs in flight (their answers, the worker's too, only free them): before
 * rs->worker goes. NULL ok. */
void encoder_destroy(struct encoder *e);
/* A segment was sealed or the map changed: a scan soon. NULL ok. */
void encoder_kick(struct encoder *e);
/* How many jobs may run while `waiting` candidates wait to start: one, and one more per
 * ENCODE_BACKLOG_STEP of them, at most ENCODE_INFLIGHT (one at a time while that keeps
 * up: the jobs' bulk I/O queues ahead of the clients'). */
unsigned encoder_jobs_allowed(size_t waiting);

/* One fragment image to send to its holder (this node's own store when to is NULL). */
struct rnode;
struct ec_geom;
struct encode_frag {
	struct rnode *to;
	uint64_t uid;
	uint32_t sno;
	int64_t epoch;
	const struct ec_geom *g;
	unsigned index;
	const uint8_t *image; /* the caller's until cb */
	size_t image_bytes;
};
typedef void (*frag_put_cb)(void *arg, int res);
/* FRAG_PUT of f (del: SEG_DELETE kind 1 of the fragment of f's segment there instead),
 * or engine_frag_put_async / engine_frag_delete_async for this node's own. 0 -> cb
 * runs once with the answer (0: durable; -EEXIST another fragment of the segment
 * there); <0 -> never (-ENOTCONN, -ENOMEM). */
int encode_frag_send(struct replicas *rs, const struct encode_frag *f, bool del,
		     frag_put_cb cb, void *arg);

/* An EC family's sealed segments as the last scan saw them. */
struct encoder_status {
	unsigned replicated;  /* sealed records without a stripe */
	unsigned encoded;     /* sealed records with one */
	unsigned encoded_bare; /* ... of which with no replica left (holders empty) */
	unsigned degraded;    /* ... of which some fragment is on a node not connected now
				 (down, out, unreachable): its reads may decode */
	unsigned encoding;    /* jobs in flight now */
	uint64_t encoded_bytes; /* segment bytes this process encoded */
	uint64_t encode_ns;   /* worker CPU time spent on them (thread clock) */
	char why[160];        /* why segments wait, when they do: for people */
};
/* Zeros for a family that is not erasure-coded or not scanned yet. */
void encoder_status(const struct encoder *e, uint64_t uid, struct encoder_status *out);

#endif
