/* replication/orphans.c — dropping the copies nobody needs (orphans.h).
 *
 * One check at a time: a `struct check` holds the copies listed before the records
 * were asked for, the etcd request, and the position in the orphans being deleted.
 * It outlives the module when orphans_destroy() runs while etcd or the engine still
 * has it: its `o` is then NULL and its callbacks only free it.
 */
#include "replication/orphans.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "common/log.h"
#include "common/loop.h"
#include "engine/engine.h"

#define LOG_TAG "orphans"
#define RETRY_MS 2000u /* the records could not be read: try again after */
/* A record changed (the watch): the check waits this long, so that the owner's
 * SEG_DELETE, sent right after it deleted a record, drops the copy first; the check
 * is the net for a holder that missed it (docs/replication.md, "The cleaner and
 * deletion"). */
#define SETTLE_MS 2000u

struct copy {
	uint64_t uid;
	uint32_t sno;
	bool sealed;     /* as listed: a copy that changed since is not judged */
	uint32_t length;
	bool frag;       /* a fragment (engine_frag_*), not a copy */
	uint8_t index;   /* the fragment's, as listed */
	uint32_t frag_crc;
	uint64_t epoch;
};

struct check {
	struct orphans *o;           /* NULL: abandoned */
	struct check *next_inflight; /* o->inflight */
	struct cluster_vol_req req;
	struct orphan_records recs;
	struct copy *copies;         /* listed before the records were asked for */
	size_t ncopies, cap, next;   /* next: the copy to judge next */
	unsigned dropped;
	/* a report (node held --orphans) rather than a check */
	orphans_report_cb report;
	void *report_arg;
};

struct orphans {
	struct loop *loop;
	struct engine *eng;
	struct cluster *cluster;
	char self[LAYOUT_ID_MAX + 1];
	unsigned min_interval_ms, period_ms;
	struct check *running;       /* the check in flight, or NULL */
	struct check *inflight;      /* every check and report in flight */
	struct loop_timer *timer;    /* the next check, or NULL */
	uint64_t due_ms;             /* when timer fires */
	uint64_t gen_checked;        /* cluster_segments_gen() the last good check saw */
	bool checked_once;           /* a check succeeded under the current lease */
	bool lease_was_valid;
	bool want;                   /* a check is due once the running one ends */
	uint64_t last_start_ms;
};

static void check_start(struct orphans *o);

const char *orphans_why_str(enum orphan_why why)
{
	switch (why) {
	case ORPHAN_KEPT: return "kept: a live record names this node";
	case ORPHAN_OWNED: return "kept: this node owns the volume";
	case ORPHAN_NO_FAMILY: return "its family has no record (the volume was removed)";
	case ORPHAN_NO_RECORD: return "its segment has no record (the owner deleted it)";
	case ORPHAN_NOT_HOLDER: return "its record no longer names this node as a holder";
	case ORPHAN_NOT_IN_STRIPE: return "its record's stripe does not name this fragment here";
	case ORPHAN_UNRECORDED: return "a fragment of an encoding that was never recorded";
	}
	return "?";
}

/* ---- judging ---- */

static int segid_cmp(uint64_t fa, uint32_t sa, uint64_t fb, uint32_t sb)
{
	if (fa != fb)
		return fa < fb ? -1 : 1;
	return sa < sb ? -1 : sa > sb;
}

void orphans_records_sort(struct orphan_records *r)
{
	/* insertion sort keeps vols along without an index array; the range answers in
	 * key order (volume, family, seq), so runs are already sorted */
	for (size_t i = 1; i < r->n; i++) {
		struct layout_segment s = r->segs[i];
		char v[LAYOUT_ID_MAX + 1];
		size_t j = i;

		memcpy(v, r->vols[i], sizeof(v));
		while (j > 0 && segid_cmp(r->segs[j - 1].id.family, r->segs[j - 1].id.seq,
					  s.id.family, s.id.seq) > 0) {
			r->segs[j] = r->segs[j - 1];
			memcpy(r->vols[j], r->vols[j - 1], sizeof(v));
			j--;
		}
		r->segs[j] = s;
		memcpy(r->vols[j], v, sizeof(v));
	}
}

/* The first record at or after (uid, sno): its index, or r->n. */
static size_t lower_bound(const struct orphan_records *r, uint64_t uid, uint32_t sno)
{
	size_t lo = 0, hi = r->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (segid_cmp(r->segs[mid].id.family, r->segs[mid].id.seq, uid, sno) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

enum orphan_why orphans_judge(const struct orphan_records *r, const char *self, uint64_t uid,
			      uint32_t sno, bool (*owned)(void *arg, const char *vol),
			      void *arg, const char **vol)
{
	size_t i = lower_bound(r, uid, sno), fam = lower_bound(r, uid, 0);
	bool family = fam < r->n && r->segs[fam].id.family == uid;
	bool found = i < r->n && r->segs[i].id.family == uid && r->segs[i].id.seq == sno;

	*vol = family ? r->vols[found ? i : fam] : "";
	if (!family)
		return ORPHAN_NO_FAMILY;
	if (owned && owned(arg, *vol))
		return ORPHAN_OWNED;
	if (!found)
		return ORPHAN_NO_RECORD;
	/* a copy being made here (catch-up) is kept: its owner records it as a holder
	 * once it is whole, or drops it from "copying" and deletes it */
	return layout_segment_names(&r->segs[i], self) || layout_segment_copying(&r->segs[i], self)
		       ? ORPHAN_KEPT
		       : ORPHAN_NOT_HOLDER;
}

enum orphan_why orphans_judge_frag(const struct orphan_records *r, const char *self,
				   uint64_t uid, uint32_t sno, unsigned index, uint32_t frag_crc,
				   uint64_t epoch, int64_t (*vol_epoch)(void *arg, const char *vol),
				   void *arg, const char **vol)
{
	size_t i = lower_bound(r, uid, sno), fam = lower_bound(r, uid, 0);
	bool family = fam < r->n && r->segs[fam].id.family == uid;
	bool found = i < r->n && r->segs[i].id.family == uid && r->segs[i].id.seq == sno;
	const struct layout_stripe *st;
	int64_t now;

	*vol = family ? r->vols[found ? i : fam] : "";
	if (!family)
		return ORPHAN_NO_FAMILY;
	if (!found)
		return ORPHAN_NO_RECORD;
	st = &r->segs[i].stripe;
	/* a fragment being rebuilt here (catch-up's rebuild, fragbuild.h) is kept: its
	 * record's "copying" names this node until the stripe names it (or the rebuild
	 * gave up and the mark left) */
	if (st->k)
		return (index < st->k + st->m && strcmp(st->frags[index], self) == 0 &&
			st->crcs[index] == frag_crc) ||
				       layout_segment_copying(&r->segs[i], self)
			       ? ORPHAN_KEPT
			       : ORPHAN_NOT_IN_STRIPE;
	/* no stripe yet: the encoding that put it may still record it, unless a newer
	 * owner (a higher epoch) has the volume; an unknown epoch keeps it */
	now = vol_epoch ? vol_epoch(arg, *vol) : 0;
	return now <= 0 || (uint64_t)now <= epoch ? ORPHAN_KEPT : ORPHAN_UNRECORDED;
}

bool orphans_owned(void *orphans, const char *vol)
{
	struct orphans *o = orphans;

	return vol[0] && cluster_volume_owned(o->cluster, vol, NULL);
}

const char *orphans_self(const struct orphans *o)
{
	return o->self;
}

/* ---- a check ---- */

static void check_free(struct check *c)
{
	struct check **p;

	for (p = c->o ? &c->o->inflight : NULL; p && *p; p = &(*p)->next_inflight)
		if (*p == c) {
			*p = c->next_inflight;
			break;
		}
	free(c->req.segs);
	free(c->req.seg_vols);
	free(c->copies);
	free(c);
}

static int copy_add(void *arg, const struct engine_held_info *h)
{
	struct check *c = arg;

	if (c->ncopies == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct copy *a = realloc(c->copies, cap * sizeof(*a));

		if (!a)
			return -ENOMEM;
		c->copies = a;
		c->cap = cap;
	}
	c->copies[c->ncopies++] = (struct copy){ .uid = h->uid, .sno = h->sno, .sealed = h->sealed,
						    .length = h->length };
	return 0;
}

static int frag_add(void *arg, const struct engine_frag_info *f)
{
	struct check *c = arg;
	struct engine_held_info h = { .uid = f->uid, .sno = f->sno };
	int r = copy_add(c, &h);

	if (r == 0) {
		struct copy *cp = &c->copies[c->ncopies - 1];

		cp->frag = true;
		cp->index = f->index;
		cp->frag_crc = f->frag_crc;
		cp->epoch = f->epoch;
	}
	return r;
}

/* The map's epoch of vol (0: not known). */
static int64_t map_epoch(void *orphans, const char *vol)
{
	struct orphans *o = orphans;
	struct cluster_volume v;

	return vol[0] && cluster_volume_get(o->cluster, vol, &v) == 0 ? v.rec.epoch : 0;
}

/* Is cp, as listed, still here as it was? Fills info (a copy's) for the log. */
static bool copy_unchanged(struct orphans *o, const struct copy *cp,
			   struct engine_held_info *info)
{
	struct engine_frag_info fi;

	if (cp->frag)
		return engine_frag_stat(o->eng, cp->uid, cp->sno, &fi) == 0 &&
		       fi.index == cp->index && fi.frag_crc == cp->frag_crc &&
		       fi.epoch == cp->epoch; /* (put again since: an encoding reuses it) */
	/* not the copy that was listed: a catch-up may have dropped it and made a new one
	 * after the records were read (judged next time) */
	return engine_held_stat(o->eng, cp->uid, cp->sno, info) == 0 &&
	       info->sealed == cp->sealed && info->length == cp->length;
}

static void schedule(struct orphans *o, unsigned ms);

/* The check is over (res: the records were read, or why not). */
static void check_end(struct orphans *o, struct check *c, int res)
{
	o->running = NULL;
	if (res == 0) {
		o->checked_once = true;
		if (c->dropped)
			log_msg(LOG_INFO, LOG_TAG, "dropped %u orphan cop%s", c->dropped,
				c->dropped == 1 ? "y" : "ies");
	}
	check_free(c);
	if (res < 0)
		schedule(o, RETRY_MS);
	else if (o->want || cluster_segments_gen(o->cluster) != o->gen_checked)
		schedule(o, o->min_interval_ms > SETTLE_MS ? o->min_interval_ms : SETTLE_MS);
	else
		schedule(o, o->period_ms);
}

static void drop_next(struct check *c);

static void dropped(void *arg, int res)
{
	struct check *c = arg;
	struct copy *cp = &c->copies[c->next - 1];

	if (!c->o) {
		check_free(c);
		return;
	}
	if (res == -ESTALE && cp->frag)
		log_msg(LOG_INFO, LOG_TAG, "family %016llx segment %u: fragment %u kept: put "
			"again at a newer epoch since it was judged", (unsigned long long)cp->uid,
			cp->sno, cp->index);
	else if (res < 0)
		log_msg(LOG_WARN, LOG_TAG, "family %016llx segment %u: dropping the orphan copy "
			"failed: %s (tried again at the next check)", (unsigned long long)cp->uid,
			cp->sno, strerror(-res));
	else
		c->dropped++;
	drop_next(c);
}

/* Judges the copies from c->next on and deletes the next orphan; the check ends after
 * the last. */
static void drop_next(struct check *c)
{
	struct orphans *o = c->o;

	while (c->next < c->ncopies) {
		struct copy *cp = &c->copies[c->next++];
		struct engine_held_info info;
		const char *vol;
		enum orphan_why why;
		int r;

		if (!copy_unchanged(o, cp, &info))
			continue; /* gone meanwhile (a SEG_DELETE, an adoption), or replaced */
		why = cp->frag ? orphans_judge_frag(&c->recs, o->self, cp->uid, cp->sno, cp->index,
						    cp->frag_crc, cp->epoch, map_epoch, o, &vol)
			       : orphans_judge(&c->recs, o->self, cp->uid, cp->sno, orphans_owned,
					       o, &vol);
		if (why == ORPHAN_KEPT || why == ORPHAN_OWNED)
			continue;
		if (cp->frag) {
			log_msg(LOG_INFO, LOG_TAG, "family %016llx segment %u%s%s: dropping this "
				"node's fragment %u (epoch %llu): %s", (unsigned long long)cp->uid,
				cp->sno, vol[0] ? " of volume " : "", vol, cp->index,
				(unsigned long long)cp->epoch, orphans_why_str(why));
			r = engine_frag_drop_stale_async(o->eng, cp->uid, cp->sno, cp->epoch,
							 dropped, c);
		} else {
			log_msg(LOG_INFO, LOG_TAG, "family %016llx segment %u%s%s (%s, %u blocks): "
				"dropping this node's copy: %s", (unsigned long long)cp->uid, cp->sno,
				vol[0] ? " of volume " : "", vol, info.sealed ? "sealed" : "open",
				info.length, orphans_why_str(why));
			r = engine_held_delete_async(o->eng, cp->uid, cp->sno, dropped, c);
		}
		if (r == 0)
			return;
		log_msg(LOG_WARN, LOG_TAG, "family %016llx segment %u: dropping the orphan copy "
			"failed: %s", (unsigned long long)cp->uid, cp->sno, strerror(-r));
	}
	check_end(o, c, 0);
}

static void listed(void *arg, int res, const char *msg)
{
	struct check *c = arg;
	struct orphans *o = c->o;

	if (!o) {
		check_free(c);
		return;
	}
	c->recs = (struct orphan_records){ c->req.segs, c->req.seg_vols, c->req.nsegs };
	if (res == 0)
		orphans_records_sort(&c->recs);
	if (c->report) {
		c->report(c->report_arg, res, msg, res == 0 ? &c->recs : NULL);
		check_free(c);
		return;
	}
	if (res < 0) {
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "cannot read the segment records (%s): "
				"dropping no copy until they can be read", msg);
		check_end(o, c, res);
		return;
	}
	drop_next(c);
}

/* A new check (or report): the copies listed now, then the records asked for. */
static int check_new(struct orphans *o, orphans_report_cb report, void *arg,
		     struct check **out)
{
	struct check *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return -ENOMEM;
	c->o = o;
	c->report = report;
	c->report_arg = arg;
	c->req.op = CLUSTER_VOL_SEG_LIST_ALL;
	r = report ? 0 : engine_held_list(o->eng, copy_add, c);
	if (r == 0 && !report)
		r = engine_frag_list(o->eng, frag_add, c);
	if (r == 0 && !report && c->ncopies == 0) {
		/* nothing held: nothing to judge, and no range read to pay */
		free(c);
		*out = NULL;
		return 0;
	}
	if (r == 0)
		r = cluster_volume_async(o->cluster, &c->req, listed, c);
	if (r < 0) {
		check_free(c);
		return r;
	}
	c->next_inflight = o->inflight;
	o->inflight = c;
	*out = c;
	return 0;
}

static void check_start(struct orphans *o)
{
	struct check *c;
	int r;

	if (o->running)
		return;
	o->want = false;
	o->last_start_ms = loop_now_ms();
	/* what the records will show from here on has been seen */
	o->gen_checked = cluster_segments_gen(o->cluster);
	r = check_new(o, NULL, NULL, &c);
	if (r < 0) {
		log_msg(LOG_WARN, LOG_TAG, "cannot start an orphan check: %s", strerror(-r));
		schedule(o, RETRY_MS);
		return;
	}
	if (!c) { /* nothing held: checked */
		o->checked_once = true;
		schedule(o, o->period_ms);
		return;
	}
	o->running = c;
}

static void timer_fire(void *arg)
{
	struct orphans *o = arg;

	o->timer = NULL;
	if (cluster_lease_valid(o->cluster))
		check_start(o);
	else
		o->want = true; /* at the next join (orphans_kick) */
}

static void schedule(struct orphans *o, unsigned ms)
{
	if (o->timer || o->running)
		return;
	if (loop_timer_add(o->loop, ms, timer_fire, o, &o->timer) < 0)
		o->timer = NULL;
	o->due_ms = loop_now_ms() + ms;
}

void orphans_kick(struct orphans *o)
{
	bool valid, joined;
	uint64_t since;

	if (!o)
		return;
	valid = cluster_lease_valid(o->cluster);
	joined = valid && !o->lease_was_valid;
	since = loop_now_ms() - o->last_start_ms;
	o->lease_was_valid = valid;
	if (!valid)
		return;
	if (!joined && !o->want && o->checked_once &&
	    cluster_segments_gen(o->cluster) == o->gen_checked)
		return;
	if (o->running) {
		o->want = true;
		return;
	}
	if (o->checked_once && !joined) {
		/* a record changed: not before SETTLE_MS, nor before the interval is over; the
		 * timer set (the period's, or a retry's) may be later: brought forward, never
		 * put back (records change at every segment of a busy owner) */
		uint64_t wait = since < o->min_interval_ms ? o->min_interval_ms - since : 0;

		if (wait < SETTLE_MS)
			wait = SETTLE_MS;
		o->want = true;
		if (o->timer && o->due_ms <= loop_now_ms() + wait)
			return;
		loop_timer_cancel(o->timer);
		o->timer = NULL;
		schedule(o, (unsigned)wait);
		return;
	}
	loop_timer_cancel(o->timer);
	o->timer = NULL;
	check_start(o);
}

/* ---- the module ---- */

int orphans_create(const struct orphans_opts *opts, struct orphans **out)
{
	struct orphans *o;

	if (!opts || !opts->loop || !opts->eng || !opts->cluster || !opts->self_id ||
	    !layout_id_valid(opts->self_id))
		return -EINVAL;
	o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->loop = opts->loop;
	o->eng = opts->eng;
	o->cluster = opts->cluster;
	snprintf(o->self, sizeof(o->self), "%s", opts->self_id);
	o->min_interval_ms = opts->min_interval_ms ? opts->min_interval_ms
						   : ORPHANS_DEFAULT_MIN_INTERVAL_MS;
	o->period_ms = opts->period_ms ? opts->period_ms : ORPHANS_DEFAULT_PERIOD_MS;
	*out = o;
	return 0;
}

void orphans_destroy(struct orphans *o)
{
	if (!o)
		return;
	loop_timer_cancel(o->timer);
	for (struct check *c = o->inflight; c; c = c->next_inflight)
		c->o = NULL; /* its callback frees it */
	free(o);
}

int orphans_report_async(struct orphans *o, orphans_report_cb cb, void *arg)
{
	struct check *c;

	if (!o || !cb)
		return -EINVAL;
	return check_new(o, cb, arg, &c);
}
