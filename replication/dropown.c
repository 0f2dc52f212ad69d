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
	} *v;
	size_t n, cap;
	struct loop_timer *retry;
};

/* Tries each waiting segment once; keeps those the engine is busy with. */
static void dropown_run(void *arg)
{
	struct replicas *rs = arg;
	struct dropown *d = rs->dropown;
	size_t keep = 0;

	d->retry = NULL;
	for (size_t i = 0; i < d->n; i++) {
		int r = engine_segment_drop_local(rs->eng, d->v[i].uid, d->v[i].sno);

		if (r == -EBUSY) {
			d->v[keep++] = d->v[i];
			continue;
		}
		if (r < 0 && r != -ENOENT)
			log_msg(LOG_WARN, LOG_TAG, "segment %016" PRIx64 ".%08" PRIx32 ": the "
				"owner keeps its copy: %s", d->v[i].uid, d->v[i].sno, err_str(-r));
	}
	d->n = keep;
	if (d->n && loop_timer_add(rs->loop, DROPOWN_RETRY_MS, dropown_run, rs, &d->retry) < 0)
		d->retry = NULL; /* tried again at the next note */
}

void dropown_note(struct replicas *rs, uint64_t uid, uint32_t sno)
{
	struct dropown *d = rs->dropown;

	if (!d && !(d = rs->dropown = calloc(1, sizeof(*d))))
		return;
	if (ARRAY_GROW(d->v, d->cap, d->n, 64) < 0)
		return;
	d->v[d->n++] = (struct dropown_seg){ .uid = uid, .sno = sno };
	/* never from inside the hook or reply that told us: from the loop, a bit later */
	if (!d->retry && loop_timer_add(rs->loop, 0, dropown_run, rs, &d->retry) < 0)
		d->retry = NULL;
}

void dropown_destroy(struct replicas *rs)
{
	struct dropown *d = rs->dropown;

	if (!d)
		return;
	loop_timer_cancel(d->retry);
	free(d->v);
	free(d);
	rs->dropown = NULL;
}
