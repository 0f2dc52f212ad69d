/* replication/catchup.h — the owner keeps every sealed segment of its families at R
 * copies (docs/replication.md, "Catch-up").
 *
 * A holder that failed is dropped from the open segments it held (replica.c); the
 * segments it missed while away are recorded with fewer holders than R. Once a
 * suitable node is connected (placement's rules: up, in, compatible, of a failure
 * domain no holder of that segment has; among those the rendezvous choice for the
 * segment, which is the node that held it before when the membership is the same),
 * the owner copies each such sealed segment there, from its own local copy, or, when
 * it has none whole, from the other holders (segfetch.h):
 *
 *   1. the record's "copying" list names the node (CLUSTER_VOL_SEG_COPY START,
 *      fenced): its orphan check keeps the copy; a takeover never counts it
 *   2. SEG_DELETE to the node: a stale copy of the segment it kept (a prefix from
 *      before it was dropped) goes first, so that the copy is made in a fresh slot
 *   3. SEG_OPEN, SEG_APPEND in chunks read from the local copy, throttled, SEG_SEAL at
 *      the sealed length
 *   4. the node moves from "copying" to the holders (CLUSTER_VOL_SEG_COPY DONE)
 * A failure at any step: "copying" loses the node (ABORT, best effort) and its partial
 * copy is an orphan there; the segment is tried again at a later scan.
 *
 * Rebuild: a holder gone for good (marked out, or down for longer than out_after)
 * counts as none: a segment it held is below R and is copied as above; once the
 * record has R holders without it, it leaves the record (CLUSTER_VOL_SEG_COPY DROP,
 * fenced), and its copy, should it come back, is an orphan there.
 *
 * Fragments: a stripe naming a node gone for good has that fragment rebuilt on a node
 * of a failure domain the stripe does not use (catchup_pick_frag), from the other
 * fragments (fragbuild.h), counted with the copies (segments and bytes left, rate) and
 * paid from the same budget; with no such domain it stays degraded (frags_unplaced).
 *
 * Throttle: a byte budget per second over every copy (catchup_budget), at most
 * max_inflight segments at a time. Its rate follows this node's clients
 * (catchup_rate.h): every CATCHUP_RATE_INTERVAL_MS it is set from their requests and
 * latency in the interval, between a floor and the ceiling (`mbps`), so that they keep
 * client_share% of their throughput; with no client it climbs to the ceiling.
 *
 * Scans: one range read of the family's records every second while some sealed record
 * has fewer than R holders, else every 30 s, and soon after the map changes, a holder
 * fails or a segment below R is sealed.
 *
 * Threading: the loop's thread (the engine's), like replica.c.
 */
#ifndef QUILL_REPLICATION_CATCHUP_H
#define QUILL_REPLICATION_CATCHUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/layout.h"
#include "replication/catchup_rate.h"

struct replicas;
struct catchup;

#define CATCHUP_DEFAULT_MBPS 512u      /* MB/s over all copies of an owner: the
					  ceiling of the adaptive rate (catchup_rate.h) */
#define CATCHUP_DEFAULT_INFLIGHT 8u    /* segments copied at once: enough round trips in
					  flight for the disk's pace (the budget, not
					  this, is what yields to the clients) */
#define CATCHUP_CHUNK_BLOCKS 256u      /* 1 MiB per SEG_APPEND */

/* ---- pure parts (unit-tested) ---- */

/* A byte budget per second: a token bucket holding at most `burst` bytes. */
struct catchup_budget {
	uint64_t rate;    /* bytes per second (> 0) */
	uint64_t burst;   /* the most that may be taken at once */
	int64_t tokens;   /* may go negative by one take larger than what was there */
	uint64_t last_ms;
	uint64_t hold_until_ms; /* nothing is taken before (catchup_budget_hold) */
	uint64_t taken;   /* bytes taken (and charged) so far: what the copies spent */
};
void catchup_budget_init(struct catchup_budget *b, uint64_t rate, uint64_t burst,
			 uint64_t now_ms);
/* Takes bytes at now_ms: 0, or the milliseconds to wait before trying again (nothing
 * taken). A take larger than burst is allowed once the bucket is full. */
unsigned catchup_budget_take(struct catchup_budget *b, uint64_t now_ms, uint64_t bytes);
/* Bytes spent already (read for a copy that failed): taken whatever the bucket holds,
 * a debt the next takes wait for. */
void catchup_budget_charge(struct catchup_budget *b, uint64_t now_ms, uint64_t bytes);
/* A new rate (> 0) from now on; what waits already waits as it was told. */
void catchup_budget_set_rate(struct catchup_budget *b, uint64_t now_ms, uint64_t rate);
/* Nothing is taken until until_ms: a take waits for it (a probe of the clients
 * alone, catchup_rate.h). */
void catchup_budget_hold(struct catchup_budget *b, uint64_t until_ms);
/* A new burst (> 0) from now on: a bucket fuller than it keeps only the burst. */
void catchup_budget_set_burst(struct catchup_budget *b, uint64_t burst);
/* The burst for a rate: CATCHUP_BURST_MS of it, at least one chunk (what one take
 * asks) and at most one chunk per copy under way. A copy that waits is woken by a
 * timer, late on a busy machine; a bucket of one chunk loses what accrues past it
 * meanwhile: 8 copies under a 512 MB/s budget moved ~300 MB/s (393 with the
 * ceiling at 2000, session 22). */
uint64_t catchup_budget_burst_for(uint64_t rate, uint64_t chunk, unsigned inflight);
#define CATCHUP_BURST_MS 20u

/* Does the record want another copy made now? (sealed, not empty, fewer than
 * `replicas` holders, and not a stripe whose replicas went for it: no holder) */
bool catchup_wanted(const struct layout_segment *rec, unsigned replicas);

/* Is a holder gone for good (docs/replication.md, "Rebuild")? out: marked out in the
 * map; down_since_ms: when it was first seen down (0: up). Down for out_after_ms or
 * longer is gone too; while down for less, *left_ms (may be NULL) gets how long until
 * it is (else 0). */
bool catchup_node_gone(bool out, uint64_t down_since_ms, uint64_t now_ms, uint64_t out_after_ms,
		       uint64_t *left_ms);
/* rec without the holders for which gone(ctx, id) is true, into *live (rec and live
 * may not be the same); the number of holders it dropped. */
unsigned catchup_without_gone(const struct layout_segment *rec,
			      bool (*gone)(void *ctx, const char *id), void *ctx,
			      struct layout_segment *live);

/* A node that might take a copy. */
struct catchup_cand {
	const char *id;
	const char *domain; /* "" or NULL: its own id */
	bool usable;        /* up, in, compatible, connected, takes our segment size */
};
/* The candidate to copy rec to: usable, not a holder, of a failure domain none of its
 * holders has (self: the owner's id, of self_domain), the rendezvous choice among those
 * for the segment; its index, or -1 when none fits. */
int catchup_pick(const struct layout_segment *rec, const struct catchup_cand *cands, size_t n,
		 const char *self, const char *self_domain);

/* The candidate to rebuild fragment `lost` of rec's stripe on (its holder gone for
 * good): usable, holding no fragment of the stripe and no replica of the segment (the
 * rebuild's "copying" mark cannot name a holder: fragbuild.h), of a failure domain no
 * other fragment's holder has, the rendezvous choice for the segment. cands include
 * this node when it may hold it (the owner holds fragments like any node). Its index,
 * or -1 when none fits (the stripe stays degraded). */
int catchup_pick_frag(const struct layout_segment *rec, unsigned lost,
		      const struct catchup_cand *cands, size_t n);

/* ---- the owner's catch-up ---- */

/* mbps: the ceiling (0: CATCHUP_DEFAULT_MBPS); client_share: the % of their
 * throughput this node's clients keep (catchup_rate.h; 0: not adaptive, a fixed rate
 * of mbps); inflight 0: CATCHUP_DEFAULT_INFLIGHT. 0 or -ENOMEM. */
int catchup_create(struct replicas *rs, unsigned mbps, unsigned client_share,
		   unsigned inflight, struct catchup **out);
/* Abandons the copies in flight (their answers only free them). Before the replica
 * sets' nodes go. NULL ok. */
void catchup_destroy(struct catchup *c);
/* The map changed or a holder failed: scan soon. NULL ok. */
void catchup_kick(struct catchup *c);

/* A family's catch-up, as the last scan saw it. */
struct catchup_status {
	unsigned segs_left;   /* sealed records with fewer than R holders (not counting
				 holders gone for good) */
	uint64_t bytes_left;  /* what is left to copy of them */
	unsigned no_source;   /* sealed records below R with neither a whole local copy
				 nor a connected holder to read one from */
	unsigned rebuild;     /* sealed records that name a holder gone for good (their
				 copies are rebuilt elsewhere, then it leaves the record) */
	unsigned remote;      /* segments_left without a whole local copy: read from the
				 holders (segfetch.h) */
	unsigned down_holders; /* records naming a holder down but not yet gone */
	unsigned frags_unplaced; /* stripes naming a node gone for good whose fragment has
				    no failure domain left to go to: they stay degraded */
	uint64_t out_in_ms;   /* the least time until such a holder is gone (0: none) */
	unsigned copying;     /* segments being copied now */
	uint64_t rate;        /* bytes per second of the copies since the catch-up began
				 (0: none done yet) */
	uint64_t copied;      /* bytes copied since the catch-up began */
	uint64_t budget;      /* the rate it may spend now, bytes per second (0: held
				 for a moment, a probe); the owner's, over all its copies */
	enum catchup_rate_why budget_why; /* why that rate (catchup_rate_why_str) */
	uint64_t client_us;   /* this node's clients' mean latency in the last busy
				 interval, and without the catch-up (0: not known) */
	uint64_t client_base_us;
	uint64_t client_iops; /* ...their requests ended per second, the same two */
	uint64_t client_base_iops;
	unsigned client_kept_pct; /* the share of their throughput they kept in the last
				     interval, as the rate judged it (catchup_rate.h); 0:
				     not judged (no copies, clients idle, a probe) */
};
void catchup_status(const struct catchup *c, uint64_t uid, struct catchup_status *out);
/* A scan's fresh status `now` of a family takes over what its jobs count from the last
 * one, `prev`: the copies under way, and the bytes copied, counted again from 0 when a
 * new catch-up begins (the last scan found nothing left, this one finds some). */
void catchup_status_carry(struct catchup_status *now, const struct catchup_status *prev);

#endif
