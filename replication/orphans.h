/* replication/orphans.h — a holder drops the copies nobody needs (docs/replication.md,
 * "The cleaner and deletion").
 *
 * A held copy (engine_held_*) is an **orphan** when the segment records in etcd no
 * longer want it here:
 *   - its family has no record at all (the volume was removed): the family goes whole;
 *   - its segment has no record (the owner's cleaner deleted it while this node was
 *     away: SEG_DELETE never reached it);
 *   - its record no longer names this node as a holder, nor as a node a copy is being
 *     made on ("copying": catch-up, replication/catchup.h): the owner dropped it
 *     after a failure, or a catch-up to it failed. A copy that changed since it was
 *     listed (a catch-up may have replaced it) is left to the next check.
 * A held fragment (engine_frag_*: a stripe's, docs/erasure-coding.md) is judged by
 * orphans_judge_frag: kept while its record's stripe names it, or while an encoding
 * under the epoch that put it may still record it; also on the volume's owner.
 * A copy of a volume this node owns (holds the claim of) is never judged here: the
 * owner's takeover and release manage its own family.
 *
 * The check: the held copies are listed first, then every segment record with one
 * range read of PREFIX segments/ (CLUSTER_VOL_SEG_LIST_ALL), then each listed copy is
 * judged and the orphans are deleted one at a time (engine_held_delete_async), each
 * logged. Listing the copies before the records is what makes it safe: a segment is
 * recorded open before any holder gets its SEG_OPEN, so a copy that existed before the
 * range was asked for has its record in the answer (etcd's reads are linearizable); a
 * copy opened after is not judged. When the records cannot be read (etcd down, a
 * record that does not decode) nothing is dropped: the check is retried. A node that
 * holds no copy reads nothing.
 *
 * When: once the node holds a lease (after each join), whenever the watch sees a
 * segment record change (cluster_segments_gen), at most once per min_interval_ms, and
 * every period_ms as a bound if the watch missed something.
 *
 * Threading: the loop's thread (the engine's).
 */
#ifndef QUILL_REPLICATION_ORPHANS_H
#define QUILL_REPLICATION_ORPHANS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/layout.h"

struct loop;
struct engine;
struct cluster;
struct orphans;

#define ORPHANS_DEFAULT_MIN_INTERVAL_MS 1000u
#define ORPHANS_DEFAULT_PERIOD_MS 60000u

struct orphans_opts {
	struct loop *loop;
	struct engine *eng;
	struct cluster *cluster;
	const char *self_id;       /* this node's id in the map */
	unsigned min_interval_ms;  /* 0: ORPHANS_DEFAULT_MIN_INTERVAL_MS */
	unsigned period_ms;        /* 0: ORPHANS_DEFAULT_PERIOD_MS */
};

/* 0 or -errno (-EINVAL, -ENOMEM). Checks nothing until orphans_kick(). */
int orphans_create(const struct orphans_opts *opts, struct orphans **out);
/* A check in flight is abandoned (its answers are ignored). NULL ok. */
void orphans_destroy(struct orphans *o);
/* The cluster changed (its on_change): starts a check if the node just got a lease or
 * the segment records moved. */
void orphans_kick(struct orphans *o);

/* Why a copy is an orphan. */
enum orphan_why {
	ORPHAN_KEPT,        /* a live record names this node: not an orphan */
	ORPHAN_OWNED,       /* this node owns the volume: its owner decides */
	ORPHAN_NO_FAMILY,   /* no record of its family at all (a volume removed) */
	ORPHAN_NO_RECORD,   /* no record of the segment (deleted) */
	ORPHAN_NOT_HOLDER,  /* the record does not name this node (it was dropped) */
	ORPHAN_NOT_IN_STRIPE, /* a fragment its record's stripe does not name here */
	ORPHAN_UNRECORDED,  /* a fragment of an encoding never recorded, put under an
			       epoch that has passed (docs/erasure-coding.md) */
};
const char *orphans_why_str(enum orphan_why why);

/* The records of one check, sorted by id, with each one's volume. */
struct orphan_records {
	struct layout_segment *segs;
	char (*vols)[LAYOUT_ID_MAX + 1];
	size_t n;
};
/* Sorts the records by (family, seq), vols along. */
void orphans_records_sort(struct orphan_records *r);
/* Judges copy (uid, sno) against sorted records; owned(volume) says whether this node
 * owns a volume (NULL: none). *vol is the record's volume ("" without one). */
enum orphan_why orphans_judge(const struct orphan_records *r, const char *self, uint64_t uid,
			      uint32_t sno, bool (*owned)(void *arg, const char *vol),
			      void *arg, const char **vol);

/* Judges fragment `index` (CRC frag_crc, put under epoch) of segment (uid, sno):
 * kept while the record's stripe names this node for it with that CRC, or while the
 * record has no stripe and the volume's epoch now (vol_epoch, the map's) is not past
 * the fragment's (its owner may be encoding it); an orphan otherwise, also on the
 * volume's owner (its own fragments are judged like any). */
enum orphan_why orphans_judge_frag(const struct orphan_records *r, const char *self,
				   uint64_t uid, uint32_t sno, unsigned index, uint32_t frag_crc,
				   uint64_t epoch, int64_t (*vol_epoch)(void *arg, const char *vol),
				   void *arg, const char **vol);

/* For `quill node held --orphans`: lists the copies and the records now, and calls
 * cb(arg, 0, NULL, records, owned, owned_arg) on the loop with them (records sorted),
 * or cb(arg, -errno, sentence, NULL, ...) when the records cannot be read. Nothing is
 * dropped. 0 (cb runs once) or -errno (it never runs). */
typedef void (*orphans_report_cb)(void *arg, int res, const char *msg,
				  const struct orphan_records *recs);
int orphans_report_async(struct orphans *o, orphans_report_cb cb, void *arg);
/* What orphans_judge() needs to know which volumes this node owns. */
bool orphans_owned(void *orphans, const char *vol);
const char *orphans_self(const struct orphans *o);

#endif
