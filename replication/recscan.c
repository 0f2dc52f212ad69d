/* replication/recscan.c — periodic scans of the segment records (recscan.h). A
 * `struct rscan` is one family's range read; after recscan_destroy() (its `sc` NULL) its
 * answer frees it. */
#include "replication/recscan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cluster/cluster.h"
#include "common/log.h"
#include "common/loop.h"
#include "replication/replica_internal.h"

struct rscan {
	struct recscan *sc;          /* NULL: abandoned */
	struct rscan *next;
	uint64_t uid;
	struct cluster_vol_req req;
};

struct recscan {
	struct replicas *rs;
	const char *what;            /* the user's log tag */
	struct recscan_periods p;
	const struct recscan_ops *ops;
	void *ctx;
	struct loop_timer *timer;
	uint64_t due_ms;             /* when timer fires */
	unsigned scans;              /* range reads in flight */
	bool busy;                   /* this round found work, or could not read */
	bool records_failing;        /* the last read failed (etcd away) */
	struct rscan *list;
};

static void schedule(struct recscan *sc, unsigned ms);

static void rscan_free(struct rscan *s)
{
	free(s->req.segs);
	free(s);
}

/* Said once per outage: while etcd is away every kick asks again, and a line per
 * round flooded the log (ten a second at a cluster's stop). */
static void records_read(struct recscan *sc, int res, const char *msg)
{
	if (res < 0 && !sc->records_failing)
		log_msg(LOG_WARN, sc->what, "cannot read the segment records (%s): looking "
			"again every %u ms", msg, sc->p.busy_ms);
	else if (res >= 0 && sc->records_failing)
		log_msg(LOG_INFO, sc->what, "the segment records can be read again");
	sc->records_failing = res < 0;
}

/* Every answer of the round is in (or none was asked: no family wanted, or none of
 * the reads could be sent): the user's round_end, and the next round. */
static void round_over(struct recscan *sc)
{
	if (sc->ops->round_end)
		sc->ops->round_end(sc->ctx, sc->busy);
	schedule(sc, sc->busy ? sc->p.busy_ms : sc->p.idle_ms);
}

static void scanned(void *arg, int res, const char *msg)
{
	struct rscan *s = arg;
	struct recscan *sc = s->sc;
	struct family *f;

	if (!sc) {
		rscan_free(s);
		return;
	}
	for (struct rscan **p = &sc->list; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			break;
		}
	sc->scans--;
	records_read(sc, res, msg);
	f = replica_family_find(sc->rs, s->uid);
	if (res < 0 || !f || f->stale)
		sc->busy = true; /* not known: look again soon */
	else if (sc->ops->scanned(sc->ctx, f, s->req.segs, s->req.nsegs))
		sc->busy = true;
	if (sc->scans == 0)
		round_over(sc);
	rscan_free(s);
}

static void fire(void *arg)
{
	struct recscan *sc = arg;
	struct replicas *rs = sc->rs;

	sc->timer = NULL;
	if (rs->closing || sc->scans)
		return;
	sc->busy = false;
	for (size_t i = 0; i < rs->nfams; i++) {
		const struct family *f = rs->fams[i];
		struct rscan *s;

		if (f->stale || !sc->ops->wants(sc->ctx, f))
			continue;
		s = calloc(1, sizeof(*s));
		if (!s)
			continue;
		*s = (struct rscan){ .sc = sc, .uid = f->uid };
		s->req.op = CLUSTER_VOL_SEG_LIST;
		snprintf(s->req.vol.name, sizeof(s->req.vol.name), "%s", f->name);
		if (cluster_volume_async(rs->cluster, &s->req, scanned, s) < 0) {
			free(s);
			continue;
		}
		s->next = sc->list;
		sc->list = s;
		sc->scans++;
	}
	if (!sc->scans)
		round_over(sc); /* an empty round ends too: what round_end does (the
				   encoder frees its idle buffers) does not wait for a family */
}

/* The next round in ms at the latest: a timer due sooner stays. */
static void schedule(struct recscan *sc, unsigned ms)
{
	uint64_t due;

	if (sc->scans || sc->rs->closing)
		return; /* the round in flight schedules the next one */
	if (sc->records_failing && ms < sc->p.busy_ms)
		ms = sc->p.busy_ms; /* kicks wait for etcd like the rounds do */
	due = loop_now_ms() + ms;
	if (sc->timer) {
		if (sc->due_ms <= due)
			return;
		loop_timer_cancel(sc->timer);
		sc->timer = NULL;
	}
	if (loop_timer_add(sc->rs->loop, ms, fire, sc, &sc->timer) < 0)
		sc->timer = NULL;
	sc->due_ms = due;
}

void recscan_kick(struct recscan *sc)
{
	if (sc)
		schedule(sc, sc->p.kick_ms);
}

int recscan_create(struct replicas *rs, const char *what, const struct recscan_periods *p,
		   const struct recscan_ops *ops, void *ctx, struct recscan **out)
{
	struct recscan *sc = calloc(1, sizeof(*sc));

	if (!sc)
		return -ENOMEM;
	*sc = (struct recscan){ .rs = rs, .what = what, .p = *p, .ops = ops, .ctx = ctx };
	schedule(sc, p->busy_ms);
	*out = sc;
	return 0;
}

void recscan_destroy(struct recscan *sc)
{
	if (!sc)
		return;
	loop_timer_cancel(sc->timer);
	for (struct rscan *s = sc->list; s; s = s->next)
		s->sc = NULL;
	free(sc);
}
