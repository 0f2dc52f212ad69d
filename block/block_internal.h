/* block/block_internal.h — what block.c (handles, requests, range locks) and guard.c
 * (the cluster's guard: lease and ownership) share. Engine's thread only.
 */
#ifndef QUILL_BLOCK_BLOCK_INTERNAL_H
#define QUILL_BLOCK_BLOCK_INTERNAL_H

#include "block/block.h"
#include "engine/engine.h"

struct blk_io;

struct blk_dev {
	struct engine *eng;
	struct engine_volume *vol;       /* NULL once a fenced handle closed it */
	struct blk_io *held;             /* doubly linked via lk_prev/lk_next */
	struct blk_io *wait_head, *wait_tail;
	unsigned nlocked;
	struct blk_io *spare;            /* finished requests kept for reuse (via next_spare) */
	unsigned nspare;
	bool readonly;
	uint32_t sector_size;
	/* the guard's (guard.c); all unused when guard is NULL (a single node) */
	struct blk_guard *guard;
	struct blk_dev *g_prev, *g_next; /* the guard's handles */
	char vol_name[ENGINE_VOLUME_NAME_MAX + 1]; /* VOL of the spec */
	int64_t epoch;                   /* the claim it was opened under; 0: unknown to the map */
	int fenced;                      /* 0, or what every request gets: the node lost it */
	unsigned inflight;               /* requests alive (guarded handles only) */
	unsigned pass;                   /* the last recheck that looked at it */
	blk_fence_fn on_fence;
	void *fence_arg;
};

/* A partial block at an end of a zeroed range: read, zeroed in part, written back. */
struct blk_edge {
	struct blk_io *io;
	uint64_t lba;
	uint8_t *blk;
	uint32_t zoff, zlen;
};

struct blk_io {
	struct blk_dev *dev;
	uint64_t off, len;
	uint64_t first, nblk;            /* blocks covered */
	unsigned flags;
	uint8_t *user;                   /* the caller's buffer (read into, write from) */
	uint8_t *bounce;                 /* covering blocks, or two edge blocks (zero) */
	unsigned pending;
	int err;
	void (*next)(struct blk_io *io);
	blk_cb cb;
	void *arg;
	uint64_t start_us;               /* engine_client_io_start() as it arrived */
	/* range lock */
	bool locked;
	struct blk_io *lk_prev, *lk_next;
	struct blk_io *lk_granted;       /* lock_release's list of requests to start */
	void (*lk_go)(struct blk_io *io);
	struct blk_edge edges[2];
	struct blk_io *next_spare;
	struct blk_io *next_held;        /* the guard's list of held completions */
};

/* ---- block.c, for guard.c ---- */
/* Frees io and calls its cb with io->err. */
void blk_io_complete(struct blk_io *io);
/* Takes the requests waiting for a range lock off dev's queue (they never start) and
 * completes them with err. */
void blk_dev_fail_waiters(struct blk_dev *dev, int err);

/* ---- guard.c, for block.c ---- */
/* blk_open of a guarded node: asks the owner (0 or -EREMOTE) and fills dev's epoch
 * and volume name; then blk_guard_attach() once the engine opened the volume. */
int blk_guard_admit(struct blk_guard *g, const char *spec, struct blk_dev *dev);
void blk_guard_attach(struct blk_guard *g, struct blk_dev *dev);
void blk_guard_detach(struct blk_dev *dev);
/* A guarded request is over (its range released): true if the guard holds its
 * completion back; else io->err may now say the handle was fenced. */
bool blk_guard_hold(struct blk_io *io);
/* A guarded request was freed: a fenced handle whose last one it was gives its
 * volume back to the engine. */
void blk_guard_io_gone(struct blk_dev *dev);

#endif
