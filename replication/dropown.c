/* replication/dropown.c — the owner's copy of a sealed segment goes (dropown.h). */
#include "replication/dropown.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "common/array.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "engine/engine.h"
#include "replication/replica_internal.h"

struct dropown {
	struct dropown_seg {
		uint64_t uid;
		uint32_t sno;
		uint64_t *lba;     /* its blocks' LBAs (dropown_note), or NULL */
		uint32_t nblocks;
		/* -ENOTEMPTY (it holds catalog records): said once, and tried again only
		 * when noted again (the encoder's next scan), not every DROPOWN_RETRY_MS */
		bool parked, noted;
	} *v;
	size_t n, cap;
	struct loop_timer *retry;
};

static void dropown_run(void *arg);

static void arm(struct replicas *rs, unsigned ms)
{
	struct dropown *d = rs->dropown;

	if (!d->retry && loop_timer_add(rs->loop, ms, dropown_run, rs, &d->retry) < 0)
		d->retry = NULL; /* tried again at the next note */
}

/* One try of segment e: whether it waits on (the engine busy with it, or records). */
static bool try_drop(struct replicas *rs, struct dropown_seg *e)
{
	int r = engine_segment_drop_local_hinted(rs->eng, e->uid, e->sno, e->lba, e->nblocks);

	if (r == -ENOTEMPTY && !e->parked)
		log_msg(LOG_INFO, LOG_TAG, "segment %016" PRIx64 ".%08" PRIx32 ": the owner "
			"keeps its copy while it holds catalog records (until the cleaner "
			"carries them)", e->uid, e->sno);
	e->parked = r == -ENOTEMPTY;
	e->noted = false;
	if (r == -EBUSY || r == -ENOTEMPTY)
		return true;
	if (r < 0 && r != -ENOENT)
		log_msg(LOG_WARN, LOG_TAG, "segment %016" PRIx64 ".%08" PRIx32 ": the owner "
			"keeps its copy: %s", e->uid, e->sno, err_str(-r));
	return false;
}

/* Tries each waiting segment once (a parked one if noted again); keeps those the
 * engine is busy with, and the parked ones. */
static void dropown_run(void *arg)
{
	struct replicas *rs = arg;
	struct dropown *d = rs->dropown;
	size_t keep = 0;
	bool busy = false;

	d->retry = NULL;
	for (size_t i = 0; i < d->n; i++) {
		struct dropown_seg *e = &d->v[i];

		if ((e->parked && !e->noted) || try_drop(rs, e)) {
			busy |= !e->parked;
			d->v[keep++] = *e;
		} else {
			free(e->lba);
		}
	}
	d->n = keep;
	if (busy)
		arm(rs, DROPOWN_RETRY_MS);
}

void dropown_note(struct replicas *rs, uint64_t uid, uint32_t sno, uint64_t *lba,
		  uint32_t nblocks)
{
	struct dropown *d = rs->dropown;
	size_t i;

	if (!d && !(d = rs->dropown = calloc(1, sizeof(*d)))) {
		free(lba);
		return;
	}
	/* the encoder's scans note a kept copy again each time: one entry each */
	for (i = 0; i < d->n && (d->v[i].uid != uid || d->v[i].sno != sno); i++)
		;
	if (i < d->n) {
		d->v[i].noted = true;
		if (!d->v[i].lba) {
			d->v[i].lba = lba;
			d->v[i].nblocks = nblocks;
			lba = NULL;
		}
		free(lba);
	} else {
		if (ARRAY_GROW(d->v, d->cap, d->n, 64) < 0) {
			free(lba);
			return;
		}
		d->v[d->n++] = (struct dropown_seg){ .uid = uid, .sno = sno, .lba = lba,
						     .nblocks = lba ? nblocks : 0 };
	}
	/* never from inside the hook or reply that told us: from the loop, a bit later */
	arm(rs, 0);
}

void dropown_destroy(struct replicas *rs)
{
	struct dropown *d = rs->dropown;

	if (!d)
		return;
	loop_timer_cancel(d->retry);
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].lba);
	free(d->v);
	free(d);
	rs->dropown = NULL;
}
