/* replication/scrub.c — the owner's scrub (scrub.h). A `struct spass` is one pass over
 * one family; it has exactly one thing outstanding at a time (an etcd call, the
 * engine's scrub of a segment, a peer request or the budget's timer), so after
 * scrub_destroy() the answer to that one thing frees it (its `sc` is NULL).
 */
#include "replication/scrub.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/cluster.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "engine/engine.h"
#include "replication/catchup.h"
#include "replication/fragscrub.h"
#include "replication/peer.h"
#include "replication/peer_proto.h"
#include "replication/replica_internal.h"

#undef LOG_TAG
#define LOG_TAG "scrub"
#define SCRUB_BURST_BYTES (4u << 20)

enum pstep { P_LIST, P_WAIT, P_LOCAL, P_VERIFY, P_DROP, P_STRIPE };

struct spass {
	struct scrub *sc;              /* NULL: abandoned */
	struct spass *next;
	enum pstep step;
	uint64_t uid;
	int64_t epoch;
	struct scrub_report rep;
	struct cluster_vol_req req;    /* the records' list, then a holder's drop */
	struct layout_segment *segs;   /* the records (req.segs taken over) */
	size_t nsegs, i;               /* ... and the one being scrubbed */
	struct engine_scrub_seg es;    /* its owner's copy, judged */
	bool whole;                    /* ... which is here whole (else its stripe only) */
	struct fragscrub *fs;          /* P_STRIPE: its stripe's scrub */
	unsigned h;                    /* its holder being verified (index in holders) */
	uint32_t at, run;              /* the next block to verify there, the run asked */
	uint8_t crcs[PEER_SEG_VERIFY_MAX_BLOCKS * sizeof(uint32_t)];
	struct scrub_finding cur;      /* that holder's bad blocks so far */
	struct loop_timer *wait;
	uint64_t start_ms;
	void (*cb)(void *arg, int res);
	void *arg;
};

struct scrub {
	struct replicas *rs;
	struct catchup_budget budget;
	unsigned mbps, interval_s;
	struct spass *passes;
	struct scrub_report *done;     /* each family's last pass that ended */
	size_t ndone;
	struct loop_timer *round;      /* the background's next round */
	uint64_t *queue;               /* the background round's families left */
	size_t nqueue;
	bool round_busy;               /* a background pass runs */
};

static bool state_good(uint8_t s)
{
	return s == ENGINE_SCRUB_GOOD || s == ENGINE_SCRUB_FIXED;
}

int scrub_next_run(const uint8_t *state, uint32_t blocks, uint32_t from, uint32_t max,
		   uint32_t *start, uint32_t *n)
{
	while (from < blocks && !state_good(state[from]))
		from++;
	if (from >= blocks || max == 0)
		return -ENOENT;
	*start = from;
	for (*n = 0; from + *n < blocks && *n < max && state_good(state[from + *n]); (*n)++)
		;
	return 0;
}

static void seg_next(struct spass *p);
static void stripe_next(struct spass *p);
static void holder_next(struct spass *p);
static void run_next(struct spass *p);
static void round_next(struct scrub *sc);

static void pass_free(struct spass *p)
{
	free(p->segs);
	free(p->req.segs);
	engine_scrub_seg_free(&p->es);
	free(p);
}

/* r ended: it is the family's last pass, its totals carried on. */
static void report_keep(struct scrub *sc, struct scrub_report *r)
{
	struct scrub_report *v;

	r->passes = 1;
	r->total_bad = r->blocks_bad;
	r->total_fixed = r->blocks_fixed;
	for (size_t i = 0; i < sc->ndone; i++)
		if (strcmp(sc->done[i].vol, r->vol) == 0) {
			r->passes += sc->done[i].passes;
			r->total_bad += sc->done[i].total_bad;
			r->total_fixed += sc->done[i].total_fixed;
			sc->done[i] = *r;
			return;
		}
	v = realloc(sc->done, (sc->ndone + 1) * sizeof(*v));
	if (!v)
		return;
	sc->done = v;
	sc->done[sc->ndone++] = *r;
}

static void pass_end(struct spass *p, int res)
{
	struct scrub *sc = p->sc;
	struct scrub_report *r = &p->rep;

	r->running = false;
	r->ended = (int64_t)time(NULL);
	r->elapsed_ms = loop_now_ms() - p->start_ms;
	r->result = res;
	for (struct spass **q = &sc->passes; *q; q = &(*q)->next)
		if (*q == p) {
			*q = p->next;
			break;
		}
	log_msg(r->blocks_bad ? LOG_WARN : LOG_INFO, LOG_TAG, "volume %s: scrub %s: %u segments, "
		"%u copies checked (%" PRIu64 " bytes in %" PRIu64 " ms), %u not checked, %u skipped; "
		"%u stripes, %u fragments checked, %u not; %" PRIu64 " bad blocks in %u copies or "
		"fragments, %" PRIu64 " repaired (%u); found/fixed: replica %u/%u, fragment %u/%u, "
		"parity %u/%u%s%s", r->vol, res < 0 ? "stopped" : "done", r->segments, r->copies,
		r->bytes, r->elapsed_ms, r->unchecked_copies, r->skipped, r->stripes, r->frags,
		r->unchecked_frags, r->blocks_bad, r->copies_bad, r->blocks_fixed, r->copies_fixed,
		r->found[SCRUB_KIND_REPLICA], r->fixed[SCRUB_KIND_REPLICA],
		r->found[SCRUB_KIND_FRAGMENT], r->fixed[SCRUB_KIND_FRAGMENT],
		r->found[SCRUB_KIND_PARITY], r->fixed[SCRUB_KIND_PARITY], res < 0 ? ": " : "",
		res < 0 ? err_str(-res) : "");
	report_keep(sc, r);
	if (p->cb)
		p->cb(p->arg, res);
	pass_free(p);
}

void scrub_report_add(struct scrub_report *r, const struct scrub_finding *f)
{
	if (r->nfind < SCRUB_FINDINGS_MAX)
		r->find[r->nfind++] = *f;
	if (!f->nbad)
		return; /* not checked: reported, not counted */
	r->found[f->kind]++;
	r->fixed[f->kind] += f->nfixed == f->nbad;
	r->copies_bad++;
	r->copies_fixed += f->nfixed == f->nbad;
	r->blocks_bad += f->nbad;
	r->blocks_fixed += f->nfixed;
}

void scrub_finding_block(struct scrub_finding *f, uint32_t block)
{
	if (f->nfirst < SCRUB_FIRST_BLOCKS)
		f->first[f->nfirst++] = block;
	f->nbad++;
}

static void finding_add(struct spass *p, const struct scrub_finding *f)
{
	scrub_report_add(&p->rep, f);
}

static const struct layout_segment *cur_rec(const struct spass *p)
{
	return &p->segs[p->i];
}

/* ---- a holder's copy ---- */

/* The holder could not be asked (why): counted, reported, left as it is. */
static void holder_unchecked(struct spass *p, int why)
{
	struct scrub_finding f = { .index = -1, .sno = cur_rec(p)->id.seq };

	snprintf(f.node, sizeof(f.node), "%s", cur_rec(p)->holders[p->h]);
	snprintf(f.action, sizeof(f.action), "not checked: %s", why == -ENOENT ? "it holds no "
		 "copy" : why == -ERANGE ? "its copy is shorter than the record" : err_str(-why));
	p->rep.unchecked_copies++;
	finding_add(p, &f);
	log_msg(LOG_WARN, LOG_TAG, "volume %s segment %08" PRIx32 ": node %s's copy %s",
		p->rep.vol, f.sno, f.node, f.action);
	p->h++;
	holder_next(p);
}

/* The holder's copy with bad blocks, reported (its action said), and the next holder. */
static void holder_reported(struct spass *p, bool fixed)
{
	struct scrub_finding *f = &p->cur;

	log_msg(fixed ? LOG_WARN : LOG_ERROR, LOG_TAG, "volume %s segment %08" PRIx32 ": node "
		"%s's copy has %u bad blocks (the first: %u): %s", p->rep.vol, f->sno, f->node,
		f->nbad, f->first[0], f->action);
	finding_add(p, f);
	p->h++;
	holder_next(p);
}

static void dropped(void *arg, int res, const char *msg)
{
	struct spass *p = arg;
	struct scrub_finding *f = &p->cur;

	if (!p->sc) {
		pass_free(p);
		return;
	}
	if (res == 0) {
		f->nfixed = f->nbad;
		snprintf(f->action, sizeof(f->action), "it left the record's holders: catch-up "
			 "copies the segment there again from the owner's verified copy");
		replica_seg_holder_gone(p->sc->rs, p->uid, f->sno, f->node);
		catchup_kick(p->sc->rs->catchup);
	} else {
		snprintf(f->action, sizeof(f->action), "not repaired: the record did not take "
			 "its drop (%s)", msg);
	}
	holder_reported(p, res == 0);
}

/* Every run of the holder's copy was verified: a copy with bad blocks leaves the
 * record (catch-up makes a good one) if the owner's copy is good whole. */
static void holder_verified(struct spass *p)
{
	struct scrub_finding *f = &p->cur;

	p->rep.copies++;
	p->rep.bytes += (uint64_t)p->es.blocks * ENGINE_BLOCK_SIZE;
	if (f->nbad == 0) {
		p->h++;
		holder_next(p);
		return;
	}
	if (p->es.nbad != p->es.nfixed) {
		snprintf(f->action, sizeof(f->action), "not repaired: the owner's copy has bad "
			 "blocks of its own (no verified copy to copy from)");
		holder_reported(p, false);
		return;
	}
	memset(&p->req, 0, sizeof(p->req));
	p->req.op = CLUSTER_VOL_SEG_COPY;
	snprintf(p->req.vol.name, sizeof(p->req.vol.name), "%s", p->rep.vol);
	p->req.epoch = p->epoch;
	p->req.seg.id = cur_rec(p)->id;
	snprintf(p->req.copy_node, sizeof(p->req.copy_node), "%s", f->node);
	p->req.copy_phase = CLVOL_COPY_DROP;
	p->step = P_DROP;
	if (cluster_volume_async(p->sc->rs->cluster, &p->req, dropped, p) < 0)
		dropped(p, -ENOMEM, "no memory");
}

static void verify_replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
			   size_t len)
{
	struct spass *p = arg;
	struct peer_seg_reply rep;

	(void)h;
	if (!p->sc) {
		pass_free(p);
		return;
	}
	if (res == 0 && peer_seg_reply_decode(PEER_OP_SEG_VERIFY, payload, len, &rep) < 0)
		res = -EPROTO;
	else if (res == 0)
		res = rep.result;
	if (res < 0) {
		holder_unchecked(p, res);
		return;
	}
	for (uint32_t k = 0; k < rep.length; k++) {
		uint32_t b = peer_seg_verify_bad(&rep, k);

		if (b < p->at || b >= p->at + p->run) {
			holder_unchecked(p, -EPROTO); /* not a block it was asked about */
			return;
		}
		scrub_finding_block(&p->cur, b);
	}
	p->at += p->run;
	run_next(p);
}

/* The next run of blocks the owner's copy has good (checked, or repaired), from p->at,
 * is asked of the holder; none left: the holder's copy is verified. */
static void run_next(struct spass *p)
{
	const struct engine_scrub_seg *es = &p->es;
	struct rnode *n = replica_node_find(p->sc->rs, p->cur.node);
	struct peer_seg_req rq = { .op = PEER_OP_SEG_VERIFY, .sno = p->cur.sno };
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct iovec data;
	struct peer_msg m = { .op = PEER_OP_SEG_VERIFY, .volume_id = p->uid,
			      .epoch = (uint64_t)p->epoch, .head = head, .data = &data,
			      .datacnt = 1 };
	int r;

	if (scrub_next_run(es->state, es->blocks, p->at, PEER_SEG_VERIFY_MAX_BLOCKS, &p->at,
			   &p->run) < 0) {
		holder_verified(p);
		return;
	}
	for (uint32_t i = 0; i < p->run; i++)
		peer_put32(p->crcs + (size_t)i * sizeof(uint32_t), es->crcs[p->at + i]);
	rq.block = p->at;
	rq.nblocks = p->run;
	m.head_len = peer_seg_req_encode(&rq, head);
	data = (struct iovec){ p->crcs, (size_t)p->run * sizeof(uint32_t) };
	r = replica_node_live(n) ? 0 : -ENOTCONN;
	if (r == 0)
		r = peer_request(n->conn, &m, p->sc->rs->timeout_ms, verify_replied, p);
	if (r < 0)
		holder_unchecked(p, r);
}

/* The segment's next holder other than this node; none left: the next segment. */
static void holder_next(struct spass *p)
{
	const struct layout_segment *rec = cur_rec(p);

	while (p->h < rec->nholders && strcmp(rec->holders[p->h], p->sc->rs->self) == 0)
		p->h++;
	if (p->h >= rec->nholders) {
		engine_scrub_seg_free(&p->es);
		stripe_next(p);
		return;
	}
	p->step = P_VERIFY;
	p->cur = (struct scrub_finding){ .index = -1, .sno = rec->id.seq };
	snprintf(p->cur.node, sizeof(p->cur.node), "%s", rec->holders[p->h]);
	p->at = 0;
	run_next(p);
}

/* ---- the owner's copy ---- */

static void local_done(void *arg, int res)
{
	struct spass *p = arg;
	struct engine_scrub_seg *es = &p->es;
	struct scrub_finding f = { .index = -1, .sno = cur_rec(p)->id.seq, .owner = true };

	if (!p->sc) {
		pass_free(p);
		return;
	}
	if (res < 0) {
		log_msg(LOG_WARN, LOG_TAG, "volume %s segment %08" PRIx32 ": the local copy could "
			"not be scrubbed (%s)", p->rep.vol, f.sno, err_str(-res));
		p->rep.skipped++;
		engine_scrub_seg_free(es);
		stripe_next(p);
		return;
	}
	p->rep.segments++;
	p->rep.copies++;
	p->rep.bytes += (uint64_t)es->blocks * ENGINE_BLOCK_SIZE;
	if (es->nbad) {
		snprintf(f.node, sizeof(f.node), "%s", p->sc->rs->self);
		for (uint32_t b = 0; b < es->blocks; b++)
			if (es->state[b] == ENGINE_SCRUB_BAD || es->state[b] == ENGINE_SCRUB_FIXED)
				scrub_finding_block(&f, b);
		f.nfixed = es->nfixed;
		snprintf(f.action, sizeof(f.action), "%u of %u blocks rewritten from a holder's "
			 "copy (checked at both ends), read back good and flushed", es->nfixed,
			 es->nbad);
		finding_add(p, &f);
	}
	p->h = 0;
	holder_next(p);
}

/* ---- the segment's stripe ---- */

static void stripe_done(void *arg)
{
	struct spass *p = arg;

	p->fs = NULL;
	p->i++;
	seg_next(p);
}

/* The record's stripe, if it has one, after its copies (or alone: no whole copy
 * here); then the next segment. */
static void stripe_next(struct spass *p)
{
	const struct layout_segment *rec = cur_rec(p);
	int r;

	if (!rec->stripe.k) {
		p->i++;
		seg_next(p);
		return;
	}
	p->rep.segments += !p->whole;
	p->step = P_STRIPE;
	r = fragscrub_start(p->sc->rs, p->uid, p->epoch, rec, &p->rep, stripe_done, p, &p->fs);
	if (r < 0) {
		log_msg(LOG_WARN, LOG_TAG, "volume %s segment %08" PRIx32 ": its stripe could not "
			"be scrubbed (%s)", p->rep.vol, rec->id.seq, err_str(-r));
		p->rep.skipped++;
		stripe_done(p);
	}
}

static void seg_begin(struct spass *p)
{
	int r;

	if (!p->whole) {
		stripe_next(p);
		return;
	}
	p->step = P_LOCAL;
	r = engine_segment_scrub_async(p->sc->rs->eng, p->uid, cur_rec(p)->id.seq, &p->es,
				       local_done, p);
	if (r < 0)
		local_done(p, r);
}

/* The budget has room again: the same record is taken from it again (a wait only
 * refills; starting without the take let a pass read twice its rate). */
static void wait_fire(void *arg)
{
	struct spass *p = arg;

	p->wait = NULL;
	seg_next(p);
}

/* Copies of rec that this pass reads: the owner's and each other holder's. */
static unsigned rec_copies(const struct spass *p, const struct layout_segment *rec)
{
	unsigned n = 1;

	for (unsigned h = 0; h < rec->nholders; h++)
		n += strcmp(rec->holders[h], p->sc->rs->self) != 0;
	return n;
}

/* The next sealed record from p->i that this node holds whole; none left: the end. */
static void seg_next(struct spass *p)
{
	struct scrub *sc = p->sc;

	for (; p->i < p->nsegs; p->i++) {
		const struct layout_segment *rec = cur_rec(p);
		uint64_t bytes;
		unsigned ms;

		if (rec->id.family != p->uid || rec->state != LAYOUT_SEG_SEALED || !rec->length)
			continue;
		p->whole = engine_segment_sealed_blocks(sc->rs->eng, p->uid, rec->id.seq) ==
			   (int)(rec->length / ENGINE_BLOCK_SIZE);
		if (!p->whole && !rec->stripe.k) {
			p->rep.skipped++; /* no whole local copy here (not built: see scrub.h) */
			continue;
		}
		bytes = (p->whole ? rec->length * rec_copies(p, rec) : 0) + fragscrub_bytes(rec);
		ms = catchup_budget_take(&sc->budget, loop_now_ms(), bytes);
		if (ms) {
			p->step = P_WAIT;
			if (loop_timer_add(sc->rs->loop, ms, wait_fire, p, &p->wait) == 0)
				return;
			p->wait = NULL;
		}
		seg_begin(p);
		return;
	}
	pass_end(p, 0);
}

static void listed(void *arg, int res, const char *msg)
{
	struct spass *p = arg;

	if (!p->sc) {
		pass_free(p);
		return;
	}
	if (res < 0) {
		log_msg(LOG_WARN, LOG_TAG, "volume %s: scrub: the segment records cannot be read "
			"(%s)", p->rep.vol, msg);
		pass_end(p, res);
		return;
	}
	p->segs = p->req.segs;
	p->nsegs = p->req.nsegs;
	p->req.segs = NULL;
	p->i = 0;
	seg_next(p);
}

/* ---- passes ---- */

static const struct family *family_by_name(const struct replicas *rs, const char *name)
{
	for (size_t i = 0; i < rs->nfams; i++)
		if (strcmp(rs->fams[i]->name, name) == 0 && !rs->fams[i]->stale &&
		    rs->fams[i]->replicas >= 2)
			return rs->fams[i];
	return NULL;
}

static bool pass_running(const struct scrub *sc, uint64_t uid)
{
	for (const struct spass *p = sc->passes; p; p = p->next)
		if (p->uid == uid)
			return true;
	return false;
}

static int pass_start(struct scrub *sc, const struct family *f, bool background,
		      void (*cb)(void *arg, int res), void *arg)
{
	struct spass *p;

	if (pass_running(sc, f->uid))
		return -EBUSY;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->sc = sc;
	p->uid = f->uid;
	p->epoch = f->epoch;
	p->cb = cb;
	p->arg = arg;
	p->step = P_LIST;
	snprintf(p->rep.vol, sizeof(p->rep.vol), "%s", f->name);
	p->rep.running = true;
	p->rep.background = background;
	p->rep.started = (int64_t)time(NULL);
	p->start_ms = loop_now_ms();
	p->req.op = CLUSTER_VOL_SEG_LIST;
	snprintf(p->req.vol.name, sizeof(p->req.vol.name), "%s", f->name);
	if (cluster_volume_async(sc->rs->cluster, &p->req, listed, p) < 0) {
		free(p);
		return -ENOMEM;
	}
	p->next = sc->passes;
	sc->passes = p;
	log_msg(LOG_INFO, LOG_TAG, "volume %s: scrub started (%s)", f->name,
		background ? "background" : "asked for");
	return 0;
}

int scrub_start(struct scrub *sc, const char *name, void (*cb)(void *arg, int res), void *arg)
{
	const struct family *f = sc ? family_by_name(sc->rs, name) : NULL;

	if (!f)
		return -ENOENT;
	return pass_start(sc, f, false, cb, arg);
}

/* scrub_start_all's passes: cb once the last one ended. */
struct sgroup {
	unsigned left;
	int res;
	void (*cb)(void *arg, int res);
	void *arg;
};

static void group_pass_done(void *arg, int res)
{
	struct sgroup *g = arg;

	if (res < 0 && !g->res)
		g->res = res;
	if (--g->left)
		return;
	g->cb(g->arg, g->res);
	free(g);
}

int scrub_start_all(struct scrub *sc, void (*cb)(void *arg, int res), void *arg)
{
	struct sgroup *g;
	bool owned = false;

	if (!sc)
		return -ENOENT;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	*g = (struct sgroup){ .left = 1, .cb = cb, .arg = arg }; /* one for this call */
	for (size_t i = 0; i < sc->rs->nfams; i++) {
		const struct family *f = sc->rs->fams[i];

		if (f->stale || f->replicas < 2)
			continue;
		owned = true;
		g->left++;
		if (pass_start(sc, f, false, group_pass_done, g) < 0)
			g->left--;
	}
	if (g->left == 1) { /* none started: none owned, or each one's pass runs already */
		free(g);
		return owned ? -EBUSY : -ENOENT;
	}
	group_pass_done(g, 0); /* (the others are in flight: it only counts) */
	return 0;
}

void scrub_each_report(const struct scrub *sc,
		       void (*fn)(void *arg, const struct scrub_report *r), void *arg)
{
	if (!sc)
		return;
	for (const struct spass *p = sc->passes; p; p = p->next)
		fn(arg, &p->rep);
	for (size_t i = 0; i < sc->ndone; i++) {
		bool running = false;

		for (const struct spass *p = sc->passes; p && !running; p = p->next)
			running = strcmp(p->rep.vol, sc->done[i].vol) == 0;
		if (!running)
			fn(arg, &sc->done[i]);
	}
}

int scrub_report_get(const struct scrub *sc, const char *name, struct scrub_report *out)
{
	if (!sc)
		return -ENOENT;
	for (const struct spass *p = sc->passes; p; p = p->next)
		if (strcmp(p->rep.vol, name) == 0) {
			*out = p->rep;
			out->elapsed_ms = loop_now_ms() - p->start_ms;
			return 0;
		}
	for (size_t i = 0; i < sc->ndone; i++)
		if (strcmp(sc->done[i].vol, name) == 0) {
			*out = sc->done[i];
			return 0;
		}
	return -ENOENT;
}

void scrub_settings(const struct scrub *sc, unsigned *mbps, unsigned *interval_s)
{
	*mbps = sc ? sc->mbps : 0;
	*interval_s = sc ? sc->interval_s : 0;
}

/* ---- the background ---- */

static void round_fire(void *arg)
{
	struct scrub *sc = arg;
	struct replicas *rs = sc->rs;

	sc->round = NULL;
	free(sc->queue);
	sc->queue = calloc(rs->nfams ? rs->nfams : 1, sizeof(*sc->queue));
	sc->nqueue = 0;
	for (size_t i = 0; sc->queue && i < rs->nfams; i++)
		if (!rs->fams[i]->stale && rs->fams[i]->replicas >= 2)
			sc->queue[sc->nqueue++] = rs->fams[i]->uid;
	round_next(sc);
}

static void round_pass_done(void *arg, int res)
{
	struct scrub *sc = arg;

	(void)res;
	sc->round_busy = false;
	round_next(sc);
}

/* The round's next family (one at a time); none left: the next round after the
 * interval. */
static void round_next(struct scrub *sc)
{
	while (sc->nqueue) {
		const struct family *f = replica_family_find(sc->rs, sc->queue[--sc->nqueue]);

		if (!f || f->stale || f->replicas < 2 ||
		    pass_start(sc, f, true, round_pass_done, sc) < 0)
			continue; /* gone, or a pass of it asked for runs now */
		sc->round_busy = true;
		return;
	}
	if (sc->rs->closing ||
	    loop_timer_add(sc->rs->loop, sc->interval_s * 1000u, round_fire, sc, &sc->round) < 0)
		sc->round = NULL;
}

int scrub_create(struct replicas *rs, unsigned mbps, unsigned interval_s, struct scrub **out)
{
	struct scrub *sc = calloc(1, sizeof(*sc));
	unsigned rate = mbps ? mbps : SCRUB_ON_DEMAND_MBPS;

	if (!sc)
		return -ENOMEM;
	sc->rs = rs;
	sc->mbps = mbps;
	sc->interval_s = interval_s ? interval_s : SCRUB_DEFAULT_INTERVAL_S;
	if (sc->interval_s > UINT32_MAX / 1000u)
		sc->interval_s = UINT32_MAX / 1000u;
	catchup_budget_init(&sc->budget, (uint64_t)rate * 1000 * 1000, SCRUB_BURST_BYTES,
			    loop_now_ms());
	if (mbps && loop_timer_add(rs->loop, sc->interval_s * 1000u, round_fire, sc,
				   &sc->round) < 0) {
		free(sc);
		return -ENOMEM;
	}
	*out = sc;
	return 0;
}

void scrub_destroy(struct scrub *sc)
{
	if (!sc)
		return;
	loop_timer_cancel(sc->round);
	for (struct spass *p = sc->passes, *next; p; p = next) {
		next = p->next;
		if (p->step == P_WAIT) {
			loop_timer_cancel(p->wait);
			pass_free(p);
		} else if (p->step == P_STRIPE) {
			fragscrub_abandon(p->fs); /* its outstanding answer frees it */
			pass_free(p);
		} else {
			p->sc = NULL; /* its one outstanding answer frees it */
		}
	}
	free(sc->queue);
	free(sc->done);
	free(sc);
}
