/* replication/reconcile.c — one reconciliation of a family's segment records per
 * (family, epoch) on its owner (docs/replication.md, "Reconciliation with the records").
 *
 * When a family starts here (a restart's reclaim, a claim, the end of a takeover, a
 * claim again after an epoch change), its records may lag the log: a segment open in
 * its record that start-up sealed, a record whose delete did not land before a stop,
 * a record of a number the owner died before writing, seals owed to holders that a
 * restart forgot. One call, in three steps:
 *   list    one range of the family's records (CLUSTER_VOL_SEG_LIST), fenced by the
 *           epoch
 *   raise   the family's counter, durably, past every recorded number (the engine's
 *           "F" record): until then no new segment of the family is placed
 *           (replica_reconcile_raised), so no number a record names is drawn again
 *   apply   each record once, by the rule table (recon_rule): keep, seal at the log's
 *           length, delete (record, then SEG_DELETE to the holders it names), or send
 *           SEG_SEAL again; the segment's state machine in replica.c does the rest
 *           and retries what etcd or a holder does not take
 * A step that fails (etcd away, no memory) starts the call again after a backoff of
 * 250 ms doubling to 2 s, and at the next map change; ESTALE (another owner) and a
 * lost claim end it. The loop's thread only. */
#include "replication/reconcile.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "common/array.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "engine/engine.h"
#include "replication/replica_internal.h"

/* ---- the rule table ---- */

enum recon_action recon_rule(enum recon_rec rec, enum recon_log log, enum recon_proc proc)
{
	if (proc == RECON_PROC_LIVE)
		return RECON_KEEP; /* this process's own: its state machine decides */
	if (log == RECON_LOG_GONE_OLDER)
		return RECON_DELETE; /* freed while its delete could not be recorded */
	if (proc == RECON_PROC_DEAD || log == RECON_LOG_OPEN)
		return RECON_KEEP; /* a lost epoch's only when freed; an open one is written */
	if (log == RECON_LOG_SEALED)
		return rec == RECON_REC_OPEN ? RECON_SEAL : RECON_RESEAL;
	/* not in the log, newer than what it has: written by no one if open or empty */
	return rec == RECON_REC_SEALED ? RECON_KEEP : RECON_DELETE;
}

const char *recon_action_name(enum recon_action a)
{
	static const char *const names[] = { "keep", "seal", "delete", "reseal" };

	return (unsigned)a < sizeof(names) / sizeof(names[0]) ? names[a] : "?";
}

bool recon_seal_owed(bool sealed, uint32_t length, uint32_t rec_blocks)
{
	return !sealed || length != rec_blocks;
}

/* ---- the call ---- */

struct fam_call *replica_fam_call_new(struct replicas *rs, uint64_t uid)
{
	struct fam_call *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->rs = rs;
	c->uid = uid;
	c->next = rs->fam_calls;
	rs->fam_calls = c;
	return c;
}

void replica_fam_call_free(struct fam_call *c)
{
	if (c->rs)
		for (struct fam_call **p = &c->rs->fam_calls; *p; p = &(*p)->next)
			if (*p == c) {
				*p = c->next;
				break;
			}
	free(c->req.segs);
	free(c);
}

struct family *replica_fam_call_family(struct fam_call *c)
{
	struct family *f = c->rs ? replica_family_find(c->rs, c->uid) : NULL;

	if (!f)
		replica_fam_call_free(c);
	return f;
}

void replica_reconcile_destroy(struct replicas *rs)
{
	for (struct fam_call *c = rs->fam_calls; c; c = c->next)
		c->rs = NULL; /* answered later: orphans */
	rs->fam_calls = NULL;
	for (size_t i = 0; i < rs->nfams; i++) {
		loop_timer_cancel(rs->fams[i]->recon_retry);
		rs->fams[i]->recon_retry = NULL;
	}
}

static void retry_fire(void *arg)
{
	struct family *f = arg;

	f->recon_retry = NULL;
	if (!cluster_volume_owned(f->rs->cluster, f->name, NULL)) {
		log_msg(LOG_INFO, LOG_TAG, "volume %s: no longer owned here: its records are "
			"not reconciled", f->name);
		return;
	}
	replica_reconcile_start(f->rs, f);
}

/* c ends; done: its epoch is reconciled; else, unless stale, it starts again later. */
static void recon_end(struct fam_call *c, struct family *f, bool done, bool stale)
{
	struct replicas *rs = c->rs;
	int64_t epoch = c->epoch;

	f->recon_busy = false;
	replica_fam_call_free(c);
	if (done || stale) {
		/* stale: another owner's now; a claim again is a new epoch */
		f->recon_epoch = epoch;
		f->recon_backoff_ms = 0;
		if (f->epoch != epoch)
			replica_reconcile_start(rs, f); /* claimed again meanwhile */
		return;
	}
	if (rs->closing || f->recon_retry)
		return;
	if (f->epoch != epoch) {
		replica_reconcile_start(rs, f); /* claimed again meanwhile: at once */
		return;
	}
	f->recon_backoff_ms = f->recon_backoff_ms ? f->recon_backoff_ms * 2 : RETRY_MS;
	if (f->recon_backoff_ms > BACKOFF_MAX_MS)
		f->recon_backoff_ms = BACKOFF_MAX_MS;
	if (loop_timer_add(rs->loop, f->recon_backoff_ms, retry_fire, f, &f->recon_retry) < 0)
		f->recon_retry = NULL; /* the next map change */
}

/* ---- apply: each record once, by the rule table ---- */

/* The family's segments in the local log, by number (engine_segment_own_each). */
struct own_segs {
	struct own_seg {
		uint32_t sno;
		int blocks; /* sealed: its length; -EBUSY: open */
	} *v;
	size_t n, cap;
};

static int own_seg_add(void *arg, uint32_t sno, int blocks)
{
	struct own_segs *o = arg;

	if (ARRAY_GROW(o->v, o->cap, o->n, 64) < 0)
		return -ENOMEM;
	o->v[o->n++] = (struct own_seg){ .sno = sno, .blocks = blocks };
	return 0;
}

static int own_seg_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct own_seg *)a)->sno, y = ((const struct own_seg *)b)->sno;

	return x < y ? -1 : x > y;
}

/* sno's length in the local log (o sorted), -EBUSY while open, -ENOENT if not there. */
static int own_seg_blocks(const struct own_segs *o, uint32_t sno)
{
	struct own_seg key = { .sno = sno };
	const struct own_seg *hit = o->n ? bsearch(&key, o->v, o->n, sizeof(key), own_seg_cmp)
					 : NULL;

	return hit ? hit->blocks : -ENOENT;
}

static enum recon_rec rec_state(const struct layout_segment *rec)
{
	if (rec->state == LAYOUT_SEG_OPEN)
		return RECON_REC_OPEN;
	return rec->length < ENGINE_BLOCK_SIZE ? RECON_REC_SEALED_EMPTY : RECON_REC_SEALED;
}

static enum recon_log log_state(int own, bool any, uint32_t newest, uint32_t sno)
{
	if (own >= 0)
		return RECON_LOG_SEALED;
	if (own == -EBUSY)
		return RECON_LOG_OPEN;
	return any && sno < newest ? RECON_LOG_GONE_OLDER : RECON_LOG_GONE_NEWER;
}

/* segs: the family's records. 0, or -ENOMEM (nothing done: the call starts again). */
static int apply(struct family *f, const struct layout_segment *segs, size_t n)
{
	struct replicas *rs = f->rs;
	struct own_segs o = { 0 };
	uint32_t newest = 0;
	bool any = false;
	int r = engine_segment_own_each(rs->eng, f->uid, own_seg_add, &o);

	if (r < 0) {
		free(o.v);
		return r;
	}
	if (o.n) /* qsort() and bsearch() want a non-NULL array even when empty */
		qsort(o.v, o.n, sizeof(*o.v), own_seg_cmp);
	for (size_t i = 0; i < n; i++)
		if (own_seg_blocks(&o, segs[i].id.seq) != -ENOENT &&
		    (!any || segs[i].id.seq > newest)) {
			newest = segs[i].id.seq;
			any = true;
		}
	for (size_t i = 0; i < n; i++) {
		const struct layout_segment *rec = &segs[i];
		struct rseg *s = replica_seg_find(rs, f->uid, rec->id.seq);
		int own = own_seg_blocks(&o, rec->id.seq);
		enum recon_proc proc = !s ? RECON_PROC_NONE
				     : s->state == RS_DEAD ? RECON_PROC_DEAD : RECON_PROC_LIVE;
		enum recon_log lg = log_state(own, any, newest, rec->id.seq);

		if (rec->id.family != f->uid)
			continue;
		switch (recon_rule(rec_state(rec), lg, proc)) {
		case RECON_SEAL:
			replica_seg_recon_seal(f, rec, (uint32_t)own);
			break;
		case RECON_DELETE:
			replica_seg_recon_delete(f, s, rec, lg == RECON_LOG_GONE_NEWER
				? "recorded but never written by its owner" : "freed from this "
				"node's log while its delete could not be recorded");
			break;
		case RECON_RESEAL:
			replica_seg_recon_reseal(f, rec);
			break;
		case RECON_KEEP:
			break;
		}
	}
	free(o.v);
	return 0;
}

/* ---- list, raise ---- */

static void raised(void *arg, int res)
{
	struct fam_call *c = arg;
	struct replicas *rs = c->rs; /* read before c may be freed */
	struct family *f = replica_fam_call_family(c);

	if (!f)
		return;
	if (res < 0) {
		/* nothing is placed, nothing deleted, before the counter is durably past */
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "volume %s: its segment numbers cannot be "
				"raised past its records (%s): trying again", f->name,
				err_str(-res));
		recon_end(c, f, false, false);
		return;
	}
	if (f->epoch != c->epoch) {
		recon_end(c, f, false, false); /* claimed again meanwhile: listed again */
		return;
	}
	f->raised_epoch = c->epoch;
	if (apply(f, c->req.segs, c->req.nsegs) < 0) {
		recon_end(c, f, false, false);
	} else {
		log_msg(LOG_INFO, LOG_TAG, "volume %s: %zu segment records reconciled at epoch "
			"%lld", f->name, c->req.nsegs, (long long)c->epoch);
		recon_end(c, f, true, false);
	}
	replica_segs_retry_placing(rs); /* the segments that waited for the raise */
}

static void listed(void *arg, int res, const char *msg)
{
	struct fam_call *c = arg;
	struct family *f = replica_fam_call_family(c);
	uint32_t next = 0;
	int r;

	if (!f)
		return;
	if (res < 0) {
		if (res == -ESTALE && f->epoch == c->epoch) {
			/* not its owner at this epoch: its segments waiting for the raise fail
			 * (seg_step), as a record etcd refused would make them */
			log_msg(LOG_WARN, LOG_TAG, "volume %s: its records are not reconciled: %s",
				f->name, msg);
			f->stale = true;
			replica_segs_retry_placing(c->rs);
		}
		else
			LOG_RATELIMITED(LOG_WARN, LOG_TAG, "volume %s: its segment records cannot "
					"be listed (%s): trying again", f->name, msg);
		recon_end(c, f, false, res == -ESTALE);
		return;
	}
	/* this process's own segments drew their numbers from the counter already (an
	 * ahead one, recorded before a reconciliation after an epoch change, must stay
	 * the engine's next number) */
	for (size_t i = 0; i < c->req.nsegs; i++) {
		const struct layout_segid *id = &c->req.segs[i].id;

		if (id->family == f->uid && id->seq >= next &&
		    !replica_seg_find(c->rs, f->uid, id->seq))
			next = id->seq == UINT32_MAX ? UINT32_MAX : id->seq + 1;
	}
	r = engine_family_reserve_sno_async(c->rs->eng, f->uid, next, next, raised, c);
	if (r < 0)
		raised(c, r);
}

void replica_reconcile_start(struct replicas *rs, struct family *f)
{
	struct fam_call *c;

	if (f->recon_epoch == f->epoch || f->recon_busy || f->recon_retry || f->stale ||
	    rs->closing)
		return;
	c = replica_fam_call_new(rs, f->uid);
	if (!c)
		return; /* the next map change tries again */
	c->epoch = f->epoch;
	c->req.op = CLUSTER_VOL_SEG_LIST;
	snprintf(c->req.vol.name, sizeof(c->req.vol.name), "%s", f->name);
	c->req.epoch = f->epoch;
	if (cluster_volume_async(rs->cluster, &c->req, listed, c) < 0) {
		replica_fam_call_free(c);
		return;
	}
	f->recon_busy = true;
}

void replica_reconcile_kick(struct replicas *rs)
{
	for (size_t i = 0; i < rs->nfams; i++) {
		struct family *f = rs->fams[i];

		if (f->recon_epoch == f->epoch ||
		    !cluster_volume_owned(rs->cluster, f->name, NULL))
			continue;
		loop_timer_cancel(f->recon_retry);
		f->recon_retry = NULL;
		replica_reconcile_start(rs, f);
	}
}
