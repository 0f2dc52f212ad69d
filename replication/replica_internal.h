/* replication/replica_internal.h — what replica.c (families, segments, appends, the
 * mirror hooks) and replica_nodes.c (the holder nodes: connections, placement,
 * flushes) share. The loop's thread only. */
#ifndef QUILL_REPLICATION_REPLICA_INTERNAL_H
#define QUILL_REPLICATION_REPLICA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "cluster/cluster.h"
#include "cluster/layout.h"
#include "engine/segment.h"
#include "replication/fragread.h"
#include "replication/replica.h"

struct peer_conn;
struct seg_call;
struct fam_call;
struct loop_timer;
struct loop_task;
struct worker;
struct probe;

#define LOG_TAG "replica"
#define RETRY_MS 250u          /* a record etcd did not take, a placement not possible */
#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 2000u
#define MAX_REMOTE (LAYOUT_MAX_HOLDERS - 1)

struct rnode {
	struct replicas *rs;
	char id[LAYOUT_ID_MAX + 1];
	char domain[LAYOUT_ID_MAX + 1];
	char peer[LAYOUT_ADDR_MAX + 1]; /* "HOST:PORT" from the map */
	bool in_map;         /* up, in and compatible in the last map */
	bool out;            /* marked out in the last map */
	uint64_t down_since_ms; /* loop time it was first seen down (not registered) in
				   the map; 0: up (catchup.c: gone for good after out_after) */
	struct peer_conn *conn;
	bool ready;          /* conn authenticated */
	bool bad_size;       /* refused our segment size: never placed again */
	unsigned backoff_ms;
	struct loop_timer *retry;
	bool dirty;          /* acknowledged appends since its last SEG_FLUSH */
};

struct family {
	struct replicas *rs;
	uint64_t uid;
	char name[LAYOUT_ID_MAX + 1];
	int64_t epoch;
	unsigned replicas, min_replicas;
	bool stale;          /* etcd refused its epoch: this node is not its owner */
	/* numbers.c: its segment numbers */
	bool reserving;      /* a reservation ahead is being made durable */
	uint64_t reserve_failed_ms; /* when the last one failed (0: none did) */
	bool reopened;       /* a segment was sealed for a failed holder: the next
				placement is logged */
	/* reconcile.c: one reconciliation with its records per epoch */
	int64_t recon_epoch;  /* the epoch reconciled (0: none yet) */
	int64_t raised_epoch; /* the epoch whose counter is durably past every record:
				 no segment is placed before it is the family's epoch */
	bool recon_busy;      /* its call is in flight */
	unsigned recon_backoff_ms;
	struct loop_timer *recon_retry;
	struct fragread_status frag; /* fragread.c: its reads from fragments */
};

enum rseg_state {
	RS_PLACING,   /* waiting for enough holders */
	RS_RECORDING, /* the open record goes to etcd */
	RS_OPENING,   /* SEG_OPEN on the holders */
	RS_OPEN,
	RS_SEALING,   /* the sealed record, then SEG_SEAL */
	RS_SEALED,
	RS_DELETING,  /* the record deleted, then SEG_DELETE */
	RS_DEAD,      /* no copy can be made any more (a stale epoch): appends fail */
};

struct rop;

struct rseg {
	struct replicas *rs;
	struct family *fam;
	uint32_t sno;
	enum rseg_state state;
	unsigned nholders;              /* remote holders now */
	struct rnode *holders[MAX_REMOTE];
	unsigned opening;               /* SEG_OPEN replies outstanding */
	uint32_t appended;              /* end of the appends given to us */
	unsigned inflight;              /* appends not completed */
	struct rop *ops;                /* appends not completed, oldest first */
	bool seal_wanted, delete_wanted;
	uint32_t seal_len;
	bool record_busy;               /* a holders record is in etcd's hands */
	bool record_again;              /* the set changed again meanwhile */
	bool warned_min;
	bool waits_told;                /* the engine was told its last batches may go
					   (seg_waits_copies_tell) */
	bool reseal;                    /* a holder failed: the engine is to seal it now */
	bool reseal_asked;              /* ... and was asked (kick_run) */
	char reseal_why[192];           /* which holder failed and why, for the seal's log */
	unsigned refs;                  /* requests and etcd calls referring to it */
	struct loop_timer *retry;
	unsigned backoff_ms;            /* of the retries of a delete or a seal */
	/* sealed: the holders that have not confirmed SEG_SEAL yet, and whether one is
	 * in flight to each (seal_send_todo) */
	struct rnode *seal_todo[MAX_REMOTE];
	bool seal_sent[MAX_REMOTE];
	bool seal_owed[MAX_REMOTE];     /* seal_probe: the holder's copy is not sealed at
					   seal_len (its SEG_LIST said so): SEG_SEAL it */
	unsigned nseal_todo;
	unsigned seal_refusals; /* holders that refused this round's SEG_SEAL for good */
	struct rseg *next_all, *prev_all; /* rs->all */
	struct rseg *next_hash;         /* rs->seg_hash's chain (replica_seg_find) */
	bool seal_probe;                /* sealed before this process started: each holder
					   is asked first (one SEG_LIST per family: sealprobe.c)
					   and sent SEG_SEAL only if its copy is not sealed at
					   seal_len */
	bool ahead;                     /* opened ahead of need: in no slot until the
					   engine's seg_open draws its number */
	bool kicked;                    /* in rs->kicked (holding a ref) */
	struct rseg *next_kick;
	struct layout_stripe *stripe;   /* being deleted: its stripe as last seen (NULL:
					   none known), whose fragments go with it */
};

struct rop {
	uint32_t block, nblocks;
	struct iovec iov;               /* the engine's buffer, alive until cb */
	uint32_t crc;
	seg_cb cb;
	void *arg;
	unsigned nsent;
	struct rnode *sent[MAX_REMOTE]; /* sent to */
	bool acked[MAX_REMOTE];
	unsigned refs;                  /* replies outstanding, +1 until completed */
	int res;
	bool done;
	struct rop *next;
};

struct rflush {
	struct replicas *rs;
	seg_cb cb;
	void *arg;
	unsigned pending;
};

struct replicas {
	struct loop *loop;
	struct engine *eng;
	struct peer_endpoint *ep;
	struct cluster *cluster;
	char self[LAYOUT_ID_MAX + 1];
	char self_domain[LAYOUT_ID_MAX + 1];
	unsigned timeout_ms;
	uint32_t seg_blocks;
	uint64_t out_after_ms;          /* replica_opts.out_after_s */
	bool closing;
	struct family **fams;
	size_t nfams;
	struct rnode **nodes;
	size_t nnodes;
	struct rseg **by_slot;          /* the mirrored segment in each slot, or NULL */
	size_t nslots;
	struct rseg *all;               /* every rseg, also those no longer in a slot */
	struct rseg **seg_hash;         /* the same by (family uid, sno): chains, a power
					   of two buckets, grown past one rseg per bucket */
	size_t seg_hash_cap, nsegs;
	uint64_t seal_lists_sent;       /* SEG_LISTs asking whether seals are owed */
	struct probe *probes;           /* sealprobe.c: the probes not sent yet */
	struct loop_task *probe_task;   /* ... sends them */
	uint64_t seals_sent;            /* SEG_SEALs sent (a first one or one owed) */
	unsigned records_busy;          /* holders records in flight: flushes wait */
	struct loop_task *kick;         /* completions deferred out of the engine's calls */
	struct rseg *kicked;            /* the segments whose completions were deferred */
	bool in_hook;                   /* inside a mirror hook: complete nothing now */
	unsigned append_replies;        /* SEG_APPEND replies awaited (mirror_ops'
					   replies_awaited: the engine sleeps for them) */
	struct seg_call *calls;         /* etcd calls not answered yet */
	struct fam_call *fam_calls;     /* numbers.c, reconcile.c: their calls in flight */
	struct rflush **flushes;        /* flushes waiting for records */
	size_t nflushes;
	struct readaround *readarounds; /* readaround.c: blocks asked of holders */
	struct bread *breads;           /* baseread.c: clones' reads of their bases */
	struct catchup *catchup;        /* copies of segments below R (catchup.h) */
	struct encoder *encoder;        /* EC families' sealed segments (encode.h) */
	uint64_t seen_map_gen;          /* cluster_map_gen() and cluster_claims_gen() when */
	uint64_t seen_claims_gen;       /* ... replica_map_changed last saw them: the record
					   scans and the placing retries follow their moves */
	struct worker *worker;          /* their encoding, rebuilds' images, scrubs'
					   decodes: the CPU work off the loop (worker.h) */
	struct scrub *scrub;            /* scrub passes (scrub.h) */
	struct fragcache *fragcache;    /* fragread.c: the stripes seen, the codes */
	struct fragread_status frag_total; /* ... and every family's reads (also gone ones) */
	bool frags_first;               /* replica_opts.frags_first (or ec_drop_replicas) */
	bool ec_drop_replicas;          /* replica_opts.ec_drop_replicas */
	unsigned test_crash_after;      /* replica_opts.test_crash_after_open */
	unsigned test_opens;            /* open records written, for it */
	bool test_dying;                /* its record is on the way: no append leaves */
	unsigned test_crash_seal;       /* replica_opts.test_crash_after_seal */
	bool drop_own;                  /* replica_opts.drop_own */
	unsigned test_crash_rebuild;    /* replica_opts.test_crash_rebuild */
	unsigned frags_rebuilt_put;     /* fragbuild.c: rebuilt fragments put (the hook's count) */
	struct dropown *dropown;        /* dropown.c: own copies waiting to go */
	unsigned test_seals;            /* sealed records written, for it */
};

/* replica.c */
/* A segment reply's result: the transport's error (res < 0), or the holder's. */
int replica_reply_result(uint8_t op, int res, const void *payload, size_t len);
/* The segment (uid, sno) this process knows (opened, ahead, adopted or dead), or NULL. */
struct rseg *replica_seg_find(const struct replicas *rs, uint64_t uid, uint32_t sno);
/* The head of (uid, sno)'s hash chain: every state of that segment (as in rs->all) is
 * on it; walk it by next_hash, other segments share it. */
struct rseg *replica_seg_chain(const struct replicas *rs, uint64_t uid, uint32_t sno);
/* n failed (why): it leaves every segment still written that it holds (recorded). */
void replica_node_failed(struct rnode *n, const char *why);
/* Catch-up made n a holder of the sealed segment (uid, sno), whole: appends of it that
 * waited for min_replicas copies count it. */
void replica_seg_holder_added(struct replicas *rs, uint64_t uid, uint32_t sno, struct rnode *n);
/* Node id left the sealed segment's record (rebuild: gone for good; scrub: its copy
 * is bad, until catch-up's copy): reads of the segment (read-around) stop asking it. */
void replica_seg_holder_gone(struct replicas *rs, uint64_t uid, uint32_t sno, const char *id);
/* A node became usable: segments waiting for placement try again, and the seals a
 * holder has not confirmed are sent again. */
void replica_segs_retry_placing(struct replicas *rs);

/* A ref on s, so that it stays while a call about it is in flight; its release (the
 * last frees it). */
void replica_seg_hold(struct rseg *s);
void replica_seg_release(struct rseg *s);
/* n's answer about its copy of s to a seal probe (s->seal_probe): r < 0 no answer, or
 * none of use (-ENOENT: no copy there); else the copy sealed or not, at length blocks.
 * A copy not sealed at s->seal_len is sent SEG_SEAL; a failure is asked again later. */
void replica_seal_probed(struct rseg *s, struct rnode *n, int r, bool sealed,
			 uint32_t length);

/* sealprobe.c: is a seal owed? One SEG_LIST per holder and family. */
/* s asks n (a holder in s->seal_todo) whether its copy is sealed at s->seal_len: joins
 * the probe of (s's family, n) not sent yet (or a new one), sent from a loop task once
 * the caller's pass is over. 0: replica_seal_probed(s, n, ...) runs once, later;
 * -ENOTCONN (n not connected: asked when it is again), -ENOMEM. */
int replica_probe_ask(struct rseg *s, struct rnode *n);
int replica_probes_init(struct replicas *rs);
/* Drops the probes not sent yet (those in flight end with their connections). */
void replica_probes_destroy(struct replicas *rs);

/* The record's holders of s: this node first, then its remote holders. */
void replica_fill_holders(const struct rseg *s, struct layout_segment *seg);

/* numbers.c (docs/replication.md, "Segment numbers") */
/* May s be recorded open? 0: its number is durably spent here (a restart never draws
 * it again); -EINPROGRESS: a reservation is being made (segments waiting for
 * placement are retried at its end); -EAGAIN (the last one failed just now), -ENOMEM:
 * retry later. */
int replica_numbers_ready(struct rseg *s);
/* The test hook (replica_opts.test_crash_after_open): after s's open record landed. */
void replica_numbers_test_crash(struct rseg *s);
/* The test hook (replica_opts.test_crash_after_seal): after s's sealed record landed. */
void replica_numbers_test_crash_seal(struct rseg *s);

/* The family uid here, or NULL. */
struct family *replica_family_find(const struct replicas *rs, uint64_t uid);
/* The EC code of f's volume in k, m (the map's record); false for a replicated volume,
 * one gone, or f NULL. */
bool replica_family_ec(const struct replicas *rs, const struct family *f, unsigned *k,
		       unsigned *m);
/* The reconciliation's actions on a segment this process did not open (rec its record;
 * docs/replication.md, "Reconciliation with the records"), each then carried on (and
 * retried) by the segment's state machine: */
/* open in rec, sealed at `blocks` in the log: the record sealed, then SEG_SEAL. */
void replica_seg_recon_seal(struct family *f, const struct layout_segment *rec,
			    uint32_t blocks);
/* the record deleted, then SEG_DELETE to the holders rec names; s: the segment as an
 * epoch lost since left it (RS_DEAD), or NULL; why: for the log. */
void replica_seg_recon_delete(struct family *f, struct rseg *s,
			      const struct layout_segment *rec, const char *why);
/* sealed in rec and in the log: SEG_SEAL again, at rec's length, to its holders. */
void replica_seg_recon_reseal(struct family *f, const struct layout_segment *rec);

/* reconcile.c (docs/replication.md, "Reconciliation with the records") */
/* One call about a family in flight (an engine job or etcd). The module may go first
 * (replica_reconcile_destroy): the call is then an orphan (rs NULL), freed by its
 * callback, which touches nothing else. */
struct fam_call {
	struct replicas *rs;
	uint64_t uid;              /* the family's (looked up again on each answer) */
	int64_t epoch;             /* the reconciliation's */
	struct cluster_vol_req req;
	struct fam_call *next;     /* in rs->fam_calls */
};
/* A call about family uid, in rs->fam_calls: NULL without memory. */
struct fam_call *replica_fam_call_new(struct replicas *rs, uint64_t uid);
/* Leaves rs->fam_calls (unless an orphan) and is freed, with its listing. */
void replica_fam_call_free(struct fam_call *c);
/* c's family, or NULL when the module or the family went (c is freed then). */
struct family *replica_fam_call_family(struct fam_call *c);
/* Once per (family, epoch) here: its records listed, its counter raised past them
 * (f->raised_epoch), each record kept, sealed, deleted or sealed again by recon_rule.
 * A failure starts it again after a backoff (250 ms to 2 s) or at replica_reconcile_kick;
 * ESTALE ends it. */
void replica_reconcile_start(struct replicas *rs, struct family *f);
/* A map change: every family owned here and not reconciled at its epoch tries now. */
void replica_reconcile_kick(struct replicas *rs);
/* The family calls in flight become orphans, the retry timers go. */
void replica_reconcile_destroy(struct replicas *rs);

/* replica_nodes.c */
/* Takes the map's view of every other node; connects to those that may hold copies. */
void replica_nodes_refresh(struct replicas *rs);
/* Closes every connection (replies in flight: -ECONNRESET) and frees the nodes. */
void replica_nodes_destroy(struct replicas *rs);
/* The node of the map with that id (up or not; never this node), or NULL. */
struct rnode *replica_node_find(const struct replicas *rs, const char *id);
/* Can n be asked now (connected, its handshake done)? */
static inline bool replica_node_live(const struct rnode *n)
{
	return n && n->ready && n->conn;
}
/* n refused SEG_OPEN with EINVAL (another segment size): logged once, never placed on
 * again. */
void replica_node_bad_size(struct rnode *n);
/* The remote holders of s by placement: 0, or -EAGAIN (too few now, or nodes still
 * connecting that might make R), -ENOMEM. */
int replica_place(struct rseg *s);
/* The mirror's flush (seg_mirror_ops.flush). */
int replica_flush(void *ctx, seg_cb cb, void *arg);
/* Ends the flushes that may end (every reply in, no drop left to record). */
void replica_flushes_recheck(struct replicas *rs);

#endif
