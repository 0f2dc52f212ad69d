/* replication/recscan.h — a periodic scan of the segment records of the families this
 * node holds: one CLUSTER_VOL_SEG_LIST per family wanted, their answers handed to the
 * user one by one, the next round scheduled once every answer of this one is in.
 * Catch-up (copies below R) and the encoder (sealed segments of EC volumes) scan this
 * way; each says which families it wants and what it does with their records. */
#ifndef QUILL_REPLICATION_RECSCAN_H
#define QUILL_REPLICATION_RECSCAN_H

#include <stdbool.h>
#include <stddef.h>

#include "cluster/layout.h"

struct family;
struct replicas;
struct recscan;

struct recscan_ops {
	/* Is f's range to be read this round? */
	bool (*wants)(void *ctx, const struct family *f);
	/* f's records (f neither gone nor stale, the read succeeded); true: there is more
	 * to do soon (the next round comes after busy_ms, not idle_ms) */
	bool (*scanned)(void *ctx, struct family *f, const struct layout_segment *segs,
			size_t n);
	/* Every answer of the round is in, or it asked none (no family wanted): busy as
	 * the next round's delay says; may be NULL */
	void (*round_end)(void *ctx, bool busy);
};

struct recscan_periods {
	unsigned busy_ms;  /* after a round that found work, or could not read */
	unsigned idle_ms;  /* after a round that found none */
	unsigned kick_ms;  /* after recscan_kick() */
};

/* The first round comes after busy_ms. what: the user's log tag ("catchup"). */
int recscan_create(struct replicas *rs, const char *what, const struct recscan_periods *p,
		   const struct recscan_ops *ops, void *ctx, struct recscan **out);
/* The next round after kick_ms at the latest (a round due sooner stays, so that a kick
 * per seal cannot push the scan back for as long as writes go on). */
void recscan_kick(struct recscan *sc);
/* Answers still in flight are dropped when they come; the ops are not called again. */
void recscan_destroy(struct recscan *sc);

#endif
