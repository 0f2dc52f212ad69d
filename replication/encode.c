/* replication/encode.c — the owner's encoding of sealed segments of EC volumes
 * (encode.h). A `struct ejob` is one segment: read, encoded on the worker, put on its
 * K+M holders, recorded. While the loop has it, exactly one kind of thing is
 * outstanding (a local read, the worker, the puts, the record); after
 * encoder_destroy() (its `e` NULL) the last answer frees it. The records are scanned by
 * a recscan (recscan.h).
 */
#include "replication/encode.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "cluster/placement.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/worker.h"
#include "engine/engine.h"
#include "engine/logcheck.h"
#include "engine/segment.h"
#include "replication/ec.h"
#include "replication/dropown.h"
#include "replication/ec_format.h"
#include "replication/fragread.h"
#include "replication/peer.h"
#include "replication/peer_proto.h"
#include "replication/recscan.h"
#include "replication/replica_internal.h"

#undef LOG_TAG
#define LOG_TAG "encode"
#define SCAN_BUSY_MS 1000u   /* some segment waits for its encoding */
#define SCAN_IDLE_MS 5000u
#define SCAN_KICK_MS 200u
/* The buffers of jobs ended are kept for the next (a segment and its K+M images: ~10
 * MiB at 4 MiB, 2+1): allocated and zeroed for each segment, they cost the loop a
 * memset and the kernel its page faults, ~10 MiB of each per segment while clients
 * write. The pool and the jobs' buffers together stay within what ENCODE_INFLIGHT of
 * the largest job hold (the bound without a pool); the pool is freed at the end of
 * the first scan round once no job started for POOL_IDLE_MS (round_end). */
#define POOL_MAX (ENCODE_INFLIGHT * (1u + EC_N_MAX))
#define POOL_IDLE_MS 10000u
/* A refused segment (struct erefused) is read again at the earliest 1 s after its
 * first refusal, then after twice as long each time, at most this long. */
#define REFUSED_RETRY_MIN_MS 1000u
#define REFUSED_RETRY_MAX_MS (10u * 60u * 1000u)

enum estep { EJ_READ, EJ_ENCODE, EJ_PUT, EJ_RECORD };

struct efam {
	uint64_t uid;
	struct encoder_status st;
	bool short_logged;   /* "too few failure domains" said for this outage */
	bool large_logged;   /* "fragments larger than a FRAG_PUT" said */
};

struct ejob {
	struct encoder *e;           /* NULL: abandoned */
	struct ejob *next;           /* e->jobs */
	struct worker_job wj;        /* EJ_ENCODE: rs->worker's */
	enum estep step;
	uint64_t uid;
	uint32_t sno;
	char vol[LAYOUT_ID_MAX + 1];
	int64_t epoch;
	struct ec_geom g;
	uint32_t at, n;              /* read: blocks read, this chunk */
	uint8_t *seg;                /* the segment's L blocks */
	uint64_t *lbas;              /* what each was written for (the worker's: for the
					drop of the owner's copy, dropown_note) */
	uint8_t *images[EC_N_MAX];   /* the fragments' images (worker's output) */
	size_t image_bytes;
	struct rnode *to[EC_N_MAX];  /* fragment i's holder; NULL: this node */
	bool deleted[EC_N_MAX];      /* an -EEXIST there was answered by a delete once */
	bool deleting[EC_N_MAX];     /* put_one sends that delete next */
	unsigned pending;            /* puts (or deletes) not answered */
	int put_res;                 /* the first failure among them */
	int enc_res;                 /* the worker's result */
	uint32_t bad_first, bad_end; /* -EILSEQ: the blocks of the local copy read wrong */
	struct cluster_vol_req req;
	uint64_t start_ms;
	/* the replicas' holders as the scan read them: sent SEG_DELETE once the stripe's
	 * record has emptied holders (best effort: the orphan checks are the backstop) */
	char holders[LAYOUT_MAX_HOLDERS][LAYOUT_ID_MAX + 1];
	unsigned nholders;
};

/* A segment the last scan of its family found waiting, started as jobs end. */
struct ecand {
	uint64_t uid;
	uint32_t sno, blocks;
	unsigned k, m;
	char holders[LAYOUT_MAX_HOLDERS][LAYOUT_ID_MAX + 1];
	unsigned nholders;
};

/* A segment whose local copy the encoder refused (-EILSEQ: blocks fail their log's
 * CRCs). Its repair from a replica (the engine's scrub of the segment, as `quill
 * scrub` runs it) starts at the refusal, and the segment is not read again while the
 * repair runs, nor, unless the first repair mended it, before its back-off (1 s,
 * doubling at each refusal, REFUSED_RETRY_MAX_MS at most). Before, every scan (~1 s)
 * read and checked the whole segment again, the scan kept at its busy rate, until a
 * client's read of the bad block or a scrub (daily) repaired it. */
struct erefused {
	struct encoder *e;           /* NULL: the encoder gone, the repair's answer frees it */
	struct erefused *next;       /* e->refused */
	uint64_t uid;
	uint32_t sno;
	char vol[LAYOUT_ID_MAX + 1];
	unsigned refusals;           /* in a row */
	uint64_t retry_ms;           /* not read again before (loop_now_ms()) */
	bool repairing;              /* es's scrub is outstanding */
	bool seen;                   /* its family's scan found it waiting */
	struct engine_scrub_seg es;
};

/* Buffers of ended jobs, kept for the next ones (POOL_MAX). */
struct ebuf {
	uint8_t *p;
	size_t len;
};

struct encoder {
	struct replicas *rs;
	unsigned test_crash_after, jobs_put;
	struct recscan *scan;
	struct ejob *jobs;           /* on the loop's side */
	unsigned njobs;
	struct efam *fams;
	size_t nfams;
	struct ecand *cands;         /* waiting, oldest scan first */
	size_t ncands;
	struct erefused *refused;
	struct ebuf pool[POOL_MAX];
	unsigned npool;
	size_t pool_bytes, live_bytes; /* in the pool; held by jobs */
	size_t job_bytes_max;        /* the most one job has held */
	uint64_t pool_used_ms;       /* when a job last took from it */
};

static void job_put_all(struct ejob *j);
static void jobs_fill(struct encoder *e);

static struct efam *efam_get(struct encoder *e, uint64_t uid)
{
	struct efam *v;

	for (size_t i = 0; i < e->nfams; i++)
		if (e->fams[i].uid == uid)
			return &e->fams[i];
	v = realloc(e->fams, (e->nfams + 1) * sizeof(*v));
	if (!v)
		return NULL;
	e->fams = v;
	e->fams[e->nfams] = (struct efam){ .uid = uid };
	return &e->fams[e->nfams++];
}

/* ---- buffers ---- */

/* What the pool and the jobs' buffers may hold together (POOL_MAX's comment). */
static size_t pool_bound(const struct encoder *e)
{
	return ENCODE_INFLIGHT * e->job_bytes_max;
}

static void pool_drop(struct encoder *e, unsigned i)
{
	seg_buf_free(e->pool[i].p);
	e->pool_bytes -= e->pool[i].len;
	e->pool[i] = e->pool[--e->npool];
}

/* A buffer of len bytes (seg_buf_alloc's alignment): one an ended job left, of that
 * length, not zeroed (its user overwrites it whole: a segment's read, the images
 * ec_stripe_images fills), else a new one. NULL: out of memory. */
static uint8_t *buf_take(struct encoder *e, size_t len)
{
	uint8_t *p = NULL;

	e->pool_used_ms = loop_now_ms();
	for (unsigned i = 0; i < e->npool && !p; i++)
		if (e->pool[i].len == len) {
			p = e->pool[i].p;
			e->pool_bytes -= len;
			e->pool[i] = e->pool[--e->npool];
		}
	/* none of that length (another geometry, a shorter segment): the pool gives way */
	while (!p && e->npool && e->live_bytes + e->pool_bytes + len > pool_bound(e))
		pool_drop(e, 0);
	if (!p && !(p = seg_buf_alloc(len)))
		return NULL;
	e->live_bytes += len;
	return p;
}

/* p (len bytes, NULL ok), a job's, kept for the next job or freed (e NULL: the
 * encoder gone). */
static void buf_give(struct encoder *e, uint8_t *p, size_t len)
{
	if (!p)
		return;
	if (!e) {
		seg_buf_free(p);
		return;
	}
	e->live_bytes -= len;
	if (e->npool < POOL_MAX && e->live_bytes + e->pool_bytes + len <= pool_bound(e)) {
		e->pool[e->npool++] = (struct ebuf){ p, len };
		e->pool_bytes += len;
		return;
	}
	seg_buf_free(p);
}

static void pool_free(struct encoder *e)
{
	while (e->npool)
		pool_drop(e, e->npool - 1);
}

/* ---- refused segments (struct erefused) ---- */

static struct erefused *refused_find(const struct encoder *e, uint64_t uid, uint32_t sno)
{
	for (struct erefused *r = e->refused; r; r = r->next)
		if (r->uid == uid && r->sno == sno)
			return r;
	return NULL;
}

/* Is segment (uid, sno) left alone for now: its repair runs, or its back-off lasts? */
static bool refused_waits(const struct encoder *e, uint64_t uid, uint32_t sno)
{
	const struct erefused *r = refused_find(e, uid, sno);

	return r && (r->repairing || loop_now_ms() < r->retry_ms);
}

/* r leaves the list; freed now, or by its repair's answer. */
static void refused_drop(struct encoder *e, struct erefused *r)
{
	for (struct erefused **p = &e->refused; *p; p = &(*p)->next)
		if (*p == r) {
			*p = r->next;
			break;
		}
	r->e = NULL;
	if (!r->repairing)
		free(r);
}

static unsigned refused_backoff_ms(unsigned refusals)
{
	unsigned ms = REFUSED_RETRY_MIN_MS;

	for (unsigned i = 1; i < refusals && ms < REFUSED_RETRY_MAX_MS; i++)
		ms *= 2;
	return ms < REFUSED_RETRY_MAX_MS ? ms : REFUSED_RETRY_MAX_MS;
}

/* The engine's scrub of a refused segment ended: every bad block it found rewritten
 * from a replica (read back good, flushed) lets the first refusal's segment be
 * encoded at once; otherwise (nothing found bad, a block not repaired, a failure, or a
 * copy refused again after a repair) its back-off stands. */
static void refused_repaired(void *arg, int res)
{
	struct erefused *r = arg;
	struct encoder *e = r->e;
	const struct engine_scrub_seg *es = &r->es;

	r->repairing = false;
	if (!e) {
		engine_scrub_seg_free(&r->es);
		free(r);
		return;
	}
	if (res == 0 && es->nbad && es->nfixed == es->nbad) {
		log_msg(LOG_INFO, LOG_TAG, "volume %s segment %016" PRIx64 ".%08" PRIx32 ": %u "
			"blocks of the local copy rewritten from a replica (read back good): it "
			"is encoded %s", r->vol, r->uid, r->sno, es->nfixed,
			r->refusals == 1 ? "now" : "after its back-off");
		if (r->refusals == 1) {
			r->retry_ms = 0;
			recscan_kick(e->scan);
		}
	} else {
		char why[64];

		if (res < 0)
			snprintf(why, sizeof(why), "%s", err_str(-res));
		else
			snprintf(why, sizeof(why), "%u of %u bad blocks repaired", es->nfixed,
				 es->nbad);
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "volume %s segment %016" PRIx64 ".%08" PRIx32
				": the local copy is not repaired (%s): read again in %u s", r->vol,
				r->uid, r->sno, why, refused_backoff_ms(r->refusals) / 1000u);
	}
	engine_scrub_seg_free(&r->es);
}

/* Segment (uid, sno) of volume vol was refused: its back-off grows and its repair
 * starts (unless one runs). */
static void refused_note(struct encoder *e, uint64_t uid, uint32_t sno, const char *vol)
{
	struct erefused *r = refused_find(e, uid, sno);
	int res;

	if (!r) {
		if (!(r = calloc(1, sizeof(*r))))
			return; /* tried again at the next scan, as before */
		*r = (struct erefused){ .e = e, .next = e->refused, .uid = uid, .sno = sno,
					.seen = true };
		snprintf(r->vol, sizeof(r->vol), "%s", vol);
		e->refused = r;
	}
	r->refusals++;
	r->retry_ms = loop_now_ms() + refused_backoff_ms(r->refusals);
	if (r->repairing)
		return;
	memset(&r->es, 0, sizeof(r->es));
	r->repairing = true;
	res = engine_segment_scrub_async(e->rs->eng, uid, sno, &r->es, refused_repaired, r);
	if (res < 0)
		refused_repaired(r, res);
}

/* Family uid's scan begins: its refused segments are marked unseen. */
static void refused_scan_begin(struct encoder *e, uint64_t uid)
{
	for (struct erefused *r = e->refused; r; r = r->next)
		if (r->uid == uid)
			r->seen = false;
}

/* Family uid's scan ended: a refused segment it did not find waiting (encoded, freed,
 * its record gone) is forgotten. */
static void refused_scan_end(struct encoder *e, uint64_t uid)
{
	for (struct erefused *r = e->refused, *next; r; r = next) {
		next = r->next;
		if (r->uid == uid && !r->seen)
			refused_drop(e, r);
	}
}

/* ---- the worker (rs->worker) ---- */

/* The CPU work of one job: the K+M images of its segment (its own code: fragread's
 * are the loop's). */
static void job_encode(void *arg)
{
	struct ejob *j = arg;
	struct ec_code *code = NULL;

	/* The local copy as read back, judged by its own log first: a block the disk
	 * returned wrong would go into fragments whose own CRCs hold (they are computed
	 * here), and the replicas, the good copy among them, would then be dropped. */
	j->enc_res = logcheck_image_check(j->seg, j->g.seg_blocks, j->uid, j->sno,
					  &j->bad_first, &j->bad_end);
	if (j->enc_res < 0)
		return;
	j->lbas = malloc((size_t)j->g.seg_blocks * sizeof(*j->lbas));
	if (j->lbas) /* else the drop walks the maps */
		logcheck_image_lbas(j->seg, j->g.seg_blocks, j->lbas);
	j->enc_res = ec_code_create(j->g.k, j->g.m, &code);
	if (j->enc_res == 0)
		j->enc_res = ec_stripe_images(code, &j->g, j->seg, j->uid, j->sno,
					      (uint64_t)j->epoch, j->images);
	ec_code_destroy(code);
}

static void job_encoded(void *arg, int res);

/* ---- a job ---- */

static size_t seg_bytes(const struct ejob *j)
{
	return (size_t)j->g.seg_blocks * ENGINE_BLOCK_SIZE;
}

/* Its buffers go back to the pool (j->e NULL, abandoned: freed). */
static void job_free(struct ejob *j)
{
	buf_give(j->e, j->seg, seg_bytes(j));
	for (unsigned i = 0; i < EC_N_MAX; i++)
		buf_give(j->e, j->images[i], j->image_bytes);
	free(j->lbas);
	free(j);
}

/* j is over (recorded, or given up): it leaves the list; a scan soon picks the next. */
static void job_end(struct ejob *j)
{
	struct encoder *e = j->e;
	struct efam *f = efam_get(e, j->uid);

	for (struct ejob **p = &e->jobs; *p; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			break;
		}
	e->njobs--;
	if (f && f->st.encoding)
		f->st.encoding--;
	job_free(j);
	jobs_fill(e);
	if (!e->ncands)
		recscan_kick(e->scan);
}

static void job_fail(struct ejob *j, int err, const char *what)
{
	LOG_RATELIMITED(LOG_WARN, LOG_TAG, "volume %s segment %016" PRIx64 ".%08" PRIx32 ": "
			"encoding failed at %s: %s (it stays replicated; tried again later)",
			j->vol, j->uid, j->sno, what, err_str(-err));
	job_end(j);
}

static void read_next(struct ejob *j);

static void read_done(void *arg, int res)
{
	struct ejob *j = arg;

	if (!j->e) {
		job_free(j);
		return;
	}
	if (res < 0) {
		job_fail(j, res, "reading the local copy");
		return;
	}
	j->at += j->n;
	read_next(j);
}

/* The next chunk of the local copy, or (all read) the worker's turn. */
static void read_next(struct ejob *j)
{
	struct encoder *e = j->e;
	int r;

	if (j->at < j->g.seg_blocks) {
		j->n = j->g.seg_blocks - j->at < ENCODE_READ_BLOCKS ? j->g.seg_blocks - j->at
								    : ENCODE_READ_BLOCKS;
		r = engine_segment_read_async(e->rs->eng, j->uid, j->sno, j->at,
					      j->seg + (size_t)j->at * ENGINE_BLOCK_SIZE, j->n,
					      read_done, j);
		if (r < 0)
			job_fail(j, r, "reading the local copy");
		return;
	}
	j->step = EJ_ENCODE;
	j->wj = (struct worker_job){ .run = job_encode, .done = job_encoded, .arg = j };
	worker_submit(e->rs->worker, &j->wj);
}

/* ---- placement and puts ---- */

/* The usable nodes and this one as placement sees them, this one last: their count
 * (pn: rs->nnodes + 1 entries). */
static size_t place_nodes(const struct replicas *rs, struct placement_node *pn)
{
	size_t n = rs->nnodes;

	for (size_t i = 0; i < n; i++) {
		const struct rnode *nd = rs->nodes[i];

		pn[i].id = placement_domain_id(nd->id);
		pn[i].domain = placement_domain_id(nd->domain[0] ? nd->domain : nd->id);
		pn[i].weight = 1;
		pn[i].usable = nd->in_map && nd->ready && !nd->bad_size;
	}
	pn[n] = (struct placement_node){
		.id = placement_domain_id(rs->self),
		.domain = placement_domain_id(rs->self_domain[0] ? rs->self_domain : rs->self),
		.weight = 1, .usable = true };
	return n + 1;
}

/* Failure domains usable for fragments now (this node's included). */
static unsigned domains_now(const struct replicas *rs)
{
	struct placement_node *pn = calloc(rs->nnodes + 1, sizeof(*pn));
	unsigned d;

	if (!pn)
		return 0;
	d = placement_domains(pn, place_nodes(rs, pn));
	free(pn);
	return d;
}

/* This node among the holders at a parity index p (to[p] NULL): it takes data fragment
 * sno mod K instead, whose holder takes p. The same nodes hold the stripe; what changes
 * is which fragment the owner keeps: a healthy read of a data fragment held here is a
 * read of this node's store, a parity fragment serves no healthy read at all. */
static void owner_takes_data(struct ejob *j)
{
	unsigned d = j->sno % j->g.k;

	for (unsigned p = j->g.k; p < j->g.k + j->g.m; p++)
		if (!j->to[p]) {
			j->to[p] = j->to[d];
			j->to[d] = NULL;
			return;
		}
}

/* The K+M holders of j's fragments: rendezvous over the usable nodes and this one, one
 * per failure domain, best first (fragment 0 on the best), then this node moved onto a
 * data fragment (owner_takes_data). 0, -ENOSPC (too few domains), -ENOMEM. */
static int job_place(struct ejob *j)
{
	struct replicas *rs = j->e->rs;
	struct placement_node *pn = calloc(rs->nnodes + 1, sizeof(*pn));
	uint64_t picked[PLACEMENT_MAX_COPIES];
	unsigned want = j->g.k + j->g.m;
	size_t n;
	int r;

	if (!pn)
		return -ENOMEM;
	n = place_nodes(rs, pn);
	/* the replicas' key for the segment: the same membership picks the same nodes */
	r = placement_pick(pn, n, placement_seg_key(j->uid, j->sno), want, picked);
	for (unsigned k = 0; r == 0 && k < want; k++) {
		j->to[k] = NULL; /* this node, unless one of the others */
		for (size_t i = 0; i < rs->nnodes; i++)
			if (pn[i].id == picked[k])
				j->to[k] = rs->nodes[i];
	}
	if (r == 0)
		owner_takes_data(j);
	free(pn);
	return r;
}

static const char *holder_id(const struct ejob *j, unsigned i)
{
	return j->to[i] ? j->to[i]->id : j->e->rs->self;
}

static void recorded(void *arg, int res, const char *msg);

/* Every put answered: the stripe's record, or a failure. */
static void puts_over(struct ejob *j)
{
	struct encoder *e = j->e;
	struct layout_stripe *st = &j->req.seg.stripe;

	if (j->put_res < 0) {
		job_fail(j, j->put_res, "putting the fragments");
		return;
	}
	if (e->test_crash_after && ++e->jobs_put == e->test_crash_after) {
		log_msg(LOG_WARN, LOG_TAG, "test: crashing after the fragments of segment %08"
			PRIx32 " are durable, before the stripe's record", j->sno);
		raise(SIGKILL);
	}
	j->step = EJ_RECORD;
	memset(&j->req, 0, sizeof(j->req));
	j->req.op = CLUSTER_VOL_SEG_STRIPE;
	snprintf(j->req.vol.name, sizeof(j->req.vol.name), "%s", j->vol);
	j->req.epoch = j->epoch;
	j->req.seg.id = (struct layout_segid){ .family = j->uid, .seq = j->sno };
	j->req.seg.state = LAYOUT_SEG_SEALED;
	j->req.seg.length = (uint64_t)j->g.seg_blocks * ENGINE_BLOCK_SIZE;
	j->req.drop_replicas = e->rs->ec_drop_replicas;
	st->k = j->g.k;
	st->m = j->g.m;
	for (unsigned i = 0; i < j->g.k + j->g.m; i++) {
		struct ec_frag_info fi;

		snprintf(st->frags[i], sizeof(st->frags[i]), "%s", holder_id(j, i));
		(void)ec_frag_hdr_decode(j->images[i], j->image_bytes, &fi);
		st->crcs[i] = fi.frag_crc;
	}
	if (cluster_volume_async(e->rs->cluster, &j->req, recorded, j) < 0)
		job_fail(j, -ENOMEM, "recording the stripe");
}

static int put_one(struct ejob *j, unsigned i);

/* Fragment i's put (or the delete before its second put) answered r. */
static void put_answered(struct ejob *j, unsigned i, int r, bool was_delete)
{
	if (!j->e) {
		if (--j->pending == 0)
			job_free(j);
		return;
	}
	j->pending--;
	if (r == -EEXIST && !was_delete && !j->deleted[i]) {
		/* another fragment of this segment there, of an encoding never recorded (no
		 * stripe names it: this job started from a record without one) */
		j->deleted[i] = j->deleting[i] = true;
		log_msg(LOG_INFO, LOG_TAG, "volume %s segment %08" PRIx32 ": node %s holds another "
			"fragment of it (an encoding not recorded): deleting it first", j->vol,
			j->sno, holder_id(j, i));
		r = put_one(j, i); /* the delete now, the put after it */
		if (r == 0)
			return;
	} else if (was_delete && r == 0) {
		r = put_one(j, i);
		if (r == 0)
			return;
	}
	if (r < 0 && j->put_res == 0) {
		j->put_res = r;
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "volume %s segment %08" PRIx32 ": fragment %u "
				"on node %s: %s", j->vol, j->sno, i, holder_id(j, i), err_str(-r));
	}
	if (j->pending == 0)
		puts_over(j);
}

/* ---- one fragment's put (the encoder's and the rebuild's, fragbuild.c) ---- */

struct fput {
	frag_put_cb cb;
	void *arg;
	uint8_t op;
};

static void fput_local_done(void *arg, int res)
{
	struct fput *p = arg;

	p->cb(p->arg, res);
	free(p);
}

static void fput_peer_done(void *arg, int res, const struct peer_hdr *h, const void *payload,
			   size_t len)
{
	struct fput *p = arg;

	(void)h;
	p->cb(p->arg, replica_reply_result(p->op, res, payload, len));
	free(p);
}

int encode_frag_send(struct replicas *rs, const struct encode_frag *f, bool del,
		     frag_put_cb cb, void *arg)
{
	struct fput *p = calloc(1, sizeof(*p));
	struct rnode *to = f->to;
	int r;

	if (!p)
		return -ENOMEM;
	*p = (struct fput){ .cb = cb, .arg = arg,
			    .op = del ? PEER_OP_SEG_DELETE : PEER_OP_FRAG_PUT };
	if (!to && del) {
		r = engine_frag_delete_async(rs->eng, f->uid, f->sno, fput_local_done, p);
	} else if (!to) {
		struct engine_frag_info fi = { .uid = f->uid, .sno = f->sno,
					       .epoch = (uint64_t)f->epoch, .index = (uint8_t)f->index,
					       .k = (uint8_t)f->g->k, .m = (uint8_t)f->g->m,
					       .seg_blocks = f->g->seg_blocks,
					       .frag_blocks = f->g->frag_blocks,
					       .image_blocks = (uint32_t)(f->image_bytes /
									  ENGINE_BLOCK_SIZE) };
		struct ec_frag_info hi;

		(void)ec_frag_hdr_decode(f->image, f->image_bytes, &hi);
		fi.frag_crc = hi.frag_crc;
		r = engine_frag_put_async(rs->eng, &fi, f->image, fput_local_done, p);
	} else {
		struct peer_seg_req rq = { .op = p->op, .sno = f->sno, .kind = PEER_SEG_KIND_FRAG,
					   .nblocks = (uint32_t)(f->image_bytes / PEER_SEG_BLOCK) };
		struct iovec iov = { (void *)f->image, f->image_bytes };

		r = fragread_request(rs, to->id, f->uid, f->epoch, &rq, del ? NULL : &iov,
				     del ? rs->timeout_ms : ENCODE_PUT_TIMEOUT_MS, fput_peer_done, p);
	}
	if (r < 0)
		free(p);
	return r;
}

struct eput {
	struct ejob *j;
	unsigned i;
	bool was_delete;
};

static void put_done(void *arg, int res)
{
	struct eput *p = arg;

	put_answered(p->j, p->i, res, p->was_delete);
	free(p);
}

/* Sends fragment i's put, or (deleted[i] set and not done yet) the delete of the other
 * fragment there. 0: one more answer pending. */
static int put_one(struct ejob *j, unsigned i)
{
	struct eput *p = calloc(1, sizeof(*p));
	struct encode_frag f = { .to = j->to[i], .uid = j->uid, .sno = j->sno,
				 .epoch = j->epoch, .g = &j->g, .index = i,
				 .image = j->images[i], .image_bytes = j->image_bytes };
	bool del = j->deleting[i];
	int r;

	if (!p)
		return -ENOMEM;
	j->deleting[i] = false; /* the put follows the delete's answer */
	*p = (struct eput){ .j = j, .i = i, .was_delete = del };
	r = encode_frag_send(j->e->rs, &f, del, put_done, p);
	if (r < 0) {
		free(p);
		return r;
	}
	j->pending++;
	return 0;
}

/* The encoded images go to their holders, all at once. */
static void job_put_all(struct ejob *j)
{
	struct efam *f = efam_get(j->e, j->uid);
	int r;

	if (j->enc_res == -EILSEQ) {
		char what[LAYOUT_ID_MAX + 160];

		snprintf(what, sizeof(what), "checking the local copy (blocks %" PRIu32 "-%" PRIu32
			 " fail their checksum; their repair from a replica starts now, as `quill "
			 "scrub %s` does)", j->bad_first, j->bad_end - 1, j->vol);
		refused_note(j->e, j->uid, j->sno, j->vol);
		job_fail(j, j->enc_res, what);
		return;
	}
	if (j->enc_res < 0) {
		job_fail(j, j->enc_res, "encoding");
		return;
	}
	if (f) {
		f->st.encoded_bytes += (uint64_t)j->g.seg_blocks * ENGINE_BLOCK_SIZE;
		f->st.encode_ns += j->wj.run_ns;
	}
	r = job_place(j);
	if (r == -ENOSPC) {
		/* the scan checked, but a node may have gone meanwhile */
		job_fail(j, r, "placing (too few failure domains)");
		return;
	}
	if (r < 0) {
		job_fail(j, r, "placing");
		return;
	}
	j->step = EJ_PUT;
	j->put_res = 0;
	for (unsigned i = 0; i < j->g.k + j->g.m; i++) {
		r = put_one(j, i);
		if (r < 0 && j->put_res == 0)
			j->put_res = r;
	}
	if (j->pending == 0)
		puts_over(j); /* none sent: fails with the first error */
}

/* The worker encoded j (res: -ECANCELED, the worker stopped first), on the loop. */
static void job_encoded(void *arg, int res)
{
	struct ejob *j = arg;

	if (!j->e) {
		job_free(j);
		return;
	}
	if (res < 0)
		j->enc_res = res;
	buf_give(j->e, j->seg, seg_bytes(j)); /* the images are all the puts need */
	j->seg = NULL;
	job_put_all(j);
}

/* A replica's delete in flight: what its answer's log line names. */
struct edel {
	char vol[LAYOUT_ID_MAX + 1];
	uint32_t sno;
};

static void replica_deleted(void *arg, int res, const struct peer_hdr *h,
			    const void *payload, size_t len)
{
	struct edel *j = arg;
	int r = replica_reply_result(PEER_OP_SEG_DELETE, res, payload, len);

	(void)h;
	if (r < 0 && r != -ENOENT)
		LOG_RATELIMITED(LOG_INFO, LOG_TAG, "volume %s segment %08" PRIx32 ": a replica's "
				"delete: %s (its holder's orphan check drops it)", j->vol, j->sno,
				err_str(-r));
	free(j);
}

/* The stripe's record emptied holders: SEG_DELETE (kind 0, a copy) to each old holder
 * other than this node (its own copy goes by dropown). Best effort: a holder not
 * connected, or a failed delete, is left to its orphan check (replication/orphans.c). */
static void replicas_delete(const struct ejob *j)
{
	struct replicas *rs = j->e->rs;

	for (unsigned h = 0; h < j->nholders; h++) {
		struct peer_seg_req rq = { .op = PEER_OP_SEG_DELETE, .sno = j->sno,
					   .kind = PEER_SEG_KIND_COPY };
		struct edel *names;

		if (!replica_node_live(replica_node_find(rs, j->holders[h])))
			continue;
		names = malloc(sizeof(*names));
		if (!names)
			return;
		names->sno = j->sno;
		memcpy(names->vol, j->vol, sizeof(names->vol));
		if (fragread_request(rs, j->holders[h], j->uid, j->epoch, &rq, NULL,
				     rs->timeout_ms, replica_deleted, names) < 0)
			free(names);
	}
}

static void recorded(void *arg, int res, const char *msg)
{
	struct ejob *j = arg;
	struct erefused *r;
	struct efam *f;

	if (!j->e) {
		job_free(j);
		return;
	}
	if (res < 0) {
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "volume %s segment %08" PRIx32 ": the stripe is "
				"not recorded (%s): its fragments are orphans, it stays replicated",
				j->vol, j->sno, msg);
		job_end(j);
		return;
	}
	(void)fragread_stripe_put(j->e->rs, &j->req.seg); /* its reads need no listing (a
							     cache: may fail) */
	if (j->e->rs->drop_own || j->req.drop_replicas) {
		/* its reads become fetches */
		dropown_note(j->e->rs, j->uid, j->sno, j->lbas, j->g.seg_blocks);
		j->lbas = NULL;
	}
	if (j->req.drop_replicas)
		replicas_delete(j); /* orphans now: deleted sooner than their checks would */
	if ((r = refused_find(j->e, j->uid, j->sno)))
		refused_drop(j->e, r);
	f = efam_get(j->e, j->uid);
	if (f && f->st.replicated) {
		f->st.replicated--;
		f->st.encoded++;
	}
	log_msg(LOG_INFO, LOG_TAG, "volume %s segment %08" PRIx32 ": encoded %u+%u (%u blocks "
		"into fragments of %u; %.2f ms encoding, %" PRIu64 " ms in all), fragment 0 on "
		"node %s; the replicas %s", j->vol, j->sno, j->g.k, j->g.m, j->g.seg_blocks,
		j->g.frag_blocks, (double)j->wj.run_ns / 1e6, loop_now_ms() - j->start_ms,
		j->req.seg.stripe.frags[0], j->req.drop_replicas ? "go" : "stay");
	job_end(j);
}

/* A job for candidate c of family f. */
static void job_start(struct encoder *e, const struct family *f, const struct ecand *c)
{
	struct ejob *j = calloc(1, sizeof(*j));
	struct efam *ef = efam_get(e, f->uid);
	uint32_t blocks = c->blocks;
	unsigned k = c->k, m = c->m;

	if (!j || !ef)
		goto err_free;
	*j = (struct ejob){ .e = e, .step = EJ_READ, .uid = f->uid, .sno = c->sno,
			    .epoch = f->epoch, .start_ms = loop_now_ms() };
	snprintf(j->vol, sizeof(j->vol), "%s", f->name);
	j->nholders = c->nholders;
	memcpy(j->holders, c->holders, c->nholders * sizeof(c->holders[0]));
	if (ec_geom_init(&j->g, k, m, blocks) < 0)
		goto err_free;
	j->image_bytes = ec_frag_image_bytes(&j->g);
	if (seg_bytes(j) + (k + m) * j->image_bytes > e->job_bytes_max)
		e->job_bytes_max = seg_bytes(j) + (k + m) * j->image_bytes;
	if (!(j->seg = buf_take(e, seg_bytes(j))))
		goto err_free;
	for (unsigned i = 0; i < k + m; i++)
		if (!(j->images[i] = buf_take(e, j->image_bytes)))
			goto err_free;
	j->next = e->jobs;
	e->jobs = j;
	e->njobs++;
	ef->st.encoding++;
	read_next(j);
	return;

err_free:
	if (j)
		job_free(j);
}

static bool job_running(const struct encoder *e, uint64_t uid, uint32_t sno)
{
	for (const struct ejob *j = e->jobs; j; j = j->next)
		if (j->uid == uid && j->sno == sno)
			return true;
	return false;
}

/* Why one at a time: a job's bulk I/O (the segment's 4 MiB read, K+M images written
 * and synced, two fragments of 2 MiB on the sockets that carry the holders' appends)
 * queues ahead of client I/O on the disk and on those sockets. Four jobs started
 * together by the scan that follows a few seals (200 ms) held a QD32 writer's requests
 * 15-35 ms every ~250 ms (fio's latency log); one at a time spreads that work and still
 * keeps up with a 4 KiB writer (~19 segments a second), while a backlog (a fast
 * sequential writer, a domain back after an outage) still gets every job. */
unsigned encoder_jobs_allowed(size_t waiting)
{
	size_t n = 1 + waiting / ENCODE_BACKLOG_STEP;

	return n < ENCODE_INFLIGHT ? (unsigned)n : ENCODE_INFLIGHT;
}

/* Jobs for the waiting candidates, up to encoder_jobs_allowed(): as one ends the next
 * starts, without a scan in between (a candidate that changed meanwhile fails its
 * local read or its fenced record: it is looked at again at a later scan). */
static void jobs_fill(struct encoder *e)
{
	while (e->njobs < encoder_jobs_allowed(e->ncands) && e->ncands) {
		/* off the list before it starts: a start that fails at once ends its job,
		 * and job_end fills again from what is left */
		struct ecand c = e->cands[0];
		const struct family *f = replica_family_find(e->rs, c.uid);

		memmove(e->cands, e->cands + 1, --e->ncands * sizeof(*e->cands));
		if (!f || f->stale || e->rs->closing || job_running(e, c.uid, c.sno) ||
		    engine_segment_sealed_blocks(e->rs->eng, c.uid, c.sno) != (int)c.blocks)
			continue;
		job_start(e, f, &c);
	}
}

/* The candidates of family uid go (a new scan of it replaces them). */
static void cands_drop(struct encoder *e, uint64_t uid)
{
	size_t keep = 0;

	for (size_t i = 0; i < e->ncands; i++)
		if (e->cands[i].uid != uid)
			e->cands[keep++] = e->cands[i];
	e->ncands = keep;
}

/* c, with the holders of its record rec. */
static void cand_add(struct encoder *e, const struct ecand *c, const struct layout_segment *rec)
{
	struct ecand *v = realloc(e->cands, (e->ncands + 1) * sizeof(*v));

	if (!v)
		return; /* found again at the next scan */
	e->cands = v;
	v = &e->cands[e->ncands++];
	*v = *c;
	v->nholders = rec->nholders;
	memcpy(v->holders, rec->holders, rec->nholders * sizeof(rec->holders[0]));
}

/* ---- scans ---- */

/* May a sealed, not empty segment without a stripe be encoded now? Once every replica
 * is made (catch-up makes them first). */
static bool replicas_made(const struct layout_segment *rec, unsigned replicas)
{
	return rec->nholders >= replicas && !rec->ncopying;
}

static bool family_wanted(void *ctx, const struct family *f)
{
	const struct encoder *e = ctx;
	unsigned k, m;

	return replica_family_ec(e->rs, f, &k, &m);
}

/* Why f's segments stay replicated (waiting of them, with too few failure domains),
 * logged once per outage; cleared when they are enough again. */
static void domains_short(struct efam *ef, const struct family *f, unsigned waiting,
			  unsigned domains, unsigned k, unsigned m)
{
	if (waiting && domains < k + m) {
		snprintf(ef->st.why, sizeof(ef->st.why), "%u segments stay replicated: %u failure "
			 "domains usable, %u+%u needs %u", waiting, domains, k, m, k + m);
		if (!ef->short_logged)
			log_msg(LOG_WARN, LOG_TAG, "volume %s: %s (encoded once they are back)",
				f->name, ef->st.why);
		ef->short_logged = true;
	} else {
		if (ef->short_logged)
			log_msg(LOG_INFO, LOG_TAG, "volume %s: enough failure domains again: "
				"encoding resumes", f->name);
		ef->short_logged = false;
		ef->st.why[0] = '\0';
	}
}

/* f's segments too long for their fragments to travel (a FRAG_PUT carries one image
 * whole, PEER_FRAG_PUT_MAX_BLOCKS): they stay replicated, said once, not tried (each
 * try read and encoded the whole segment to fail at its puts, -EMSGSIZE, and the next
 * scan tried again). Cutting a put in parts is not built (docs/erasure-coding.md). */
static void too_long(struct efam *ef, const struct family *f, unsigned n, unsigned k,
		     unsigned m, uint32_t longest)
{
	char why[sizeof(ef->st.why)];

	if (!n) {
		ef->large_logged = false;
		return;
	}
	snprintf(why, sizeof(why), "%u segments stay replicated: their %u+%u fragments are "
		 "larger than a FRAG_PUT (segments of at most %u blocks encode)", n, k, m,
		 longest);
	if (!ef->st.why[0]) /* (too few domains is said first) */
		memcpy(ef->st.why, why, sizeof(why));
	if (!ef->large_logged)
		log_msg(LOG_WARN, LOG_TAG, "volume %s: %s", f->name, why);
	ef->large_logged = true;
}

/* Is some fragment of st on a node that is not connected now (this node's own is)? */
static bool stripe_degraded(const struct replicas *rs, const struct layout_stripe *st)
{
	for (unsigned i = 0; i < st->k + st->m; i++)
		if (strcmp(st->frags[i], rs->self) != 0 &&
		    !replica_node_live(replica_node_find(rs, st->frags[i])))
			return true;
	return false;
}

/* One family's records (recscan's scanned): its waiting segments become the candidates
 * jobs start from; true while any waits. */
static bool family_scanned(void *ctx, struct family *f, const struct layout_segment *segs,
			   size_t n)
{
	struct encoder *e = ctx;
	struct efam *ef = efam_get(e, f->uid);
	unsigned domains, k, m, waiting = 0, longer = 0, held = 0;
	uint32_t longest; /* blocks of a segment whose fragments fit a FRAG_PUT */
	bool busy = false;

	if (!ef || !replica_family_ec(e->rs, f, &k, &m))
		return true; /* not known: look again soon */
	domains = domains_now(e->rs);
	longest = ec_frag_max_seg_blocks(k, PEER_FRAG_PUT_MAX_BLOCKS);
	ef->st.replicated = ef->st.encoded = ef->st.encoded_bare = ef->st.degraded = 0;
	cands_drop(e, f->uid);
	refused_scan_begin(e, f->uid);
	for (size_t i = 0; i < n; i++) {
		const struct layout_segment *rec = &segs[i];
		struct erefused *r;
		int have;

		if (rec->id.family != f->uid || rec->state != LAYOUT_SEG_SEALED || !rec->length)
			continue;
		if (rec->stripe.k) {
			ef->st.encoded++;
			ef->st.encoded_bare += rec->nholders == 0;
			ef->st.degraded += stripe_degraded(e->rs, &rec->stripe);
			(void)fragread_stripe_put(e->rs, rec); /* reads need no listing (a cache) */
			if (rec->nholders == 0 &&
			    engine_segment_sealed_blocks(e->rs->eng, f->uid, rec->id.seq) > 0)
				dropown_note(e->rs, f->uid, rec->id.seq, NULL, 0); /* the owner's copy went
						 not with its replicas (a crash, a restart) */
			continue;
		}
		ef->st.replicated++;
		if (!replicas_made(rec, f->replicas))
			continue;
		have = engine_segment_sealed_blocks(e->rs->eng, f->uid, rec->id.seq);
		if (have != (int)(rec->length / ENGINE_BLOCK_SIZE)) {
			busy |= have == -EBUSY; /* its last appends still being written */
			continue; /* not here whole: reading from a holder is not built */
		}
		if ((uint32_t)have > longest) {
			longer++;
			continue;
		}
		waiting++;
		if ((r = refused_find(e, f->uid, rec->id.seq)))
			r->seen = true;
		if (refused_waits(e, f->uid, rec->id.seq)) {
			held++; /* its repair, or its back-off: no reason to scan often */
			continue;
		}
		if (domains >= k + m && !job_running(e, f->uid, rec->id.seq))
			cand_add(e, &(struct ecand){ .uid = f->uid, .sno = rec->id.seq,
						     .blocks = (uint32_t)have, .k = k, .m = m },
				 rec);
	}
	refused_scan_end(e, f->uid);
	jobs_fill(e);
	ef = efam_get(e, f->uid); /* (a job started may have grown e->fams: ef moved) */
	if (ef) {
		domains_short(ef, f, waiting, domains, k, m);
		too_long(ef, f, longer, k, m, longest);
	}
	return busy || waiting > held;
}

/* Is family uid's range read at each round (recscan's fire: known here, not stale,
 * an EC volume)? */
static bool family_still_scanned(struct encoder *e, uint64_t uid)
{
	const struct family *f = replica_family_find(e->rs, uid);

	return f && !f->stale && family_wanted(e, f);
}

/* The refused segments of families no longer scanned (the volume deleted, no longer
 * erasure-coded, or another node's now: stale) are forgotten: refused_scan_end drops
 * only those a scan of their family did not find, and such a family is not scanned
 * again, so its entries stayed until encoder_destroy (a slow leak on a node that sees
 * many volumes come and go). A family whose read failed is still scanned: its
 * back-offs stand. */
static void refused_prune(struct encoder *e)
{
	for (struct erefused *r = e->refused, *next; r; r = next) {
		next = r->next;
		if (family_still_scanned(e, r->uid))
			continue;
		log_msg(LOG_INFO, LOG_TAG, "volume %s segment %016" PRIx64 ".%08" PRIx32 ": its "
			"refusal is forgotten (the volume is no longer encoded here)", r->vol,
			r->uid, r->sno);
		refused_drop(e, r);
	}
}

/* A scan round ended (also one with no EC family to scan: the last one gone): the
 * refused segments of families gone are forgotten; no encoding for a while, the
 * pool's memory goes back. */
static void round_end(void *ctx, bool busy)
{
	struct encoder *e = ctx;

	(void)busy;
	refused_prune(e);
	if (!e->njobs && !e->ncands && loop_now_ms() - e->pool_used_ms >= POOL_IDLE_MS)
		pool_free(e);
}

static const struct recscan_ops scan_ops = { family_wanted, family_scanned, round_end };
static const struct recscan_periods scan_periods = { SCAN_BUSY_MS, SCAN_IDLE_MS,
						     SCAN_KICK_MS };

void encoder_kick(struct encoder *e)
{
	if (e)
		recscan_kick(e->scan);
}

/* ---- the module ---- */

int encoder_create(struct replicas *rs, unsigned test_crash_after, struct encoder **out)
{
	struct encoder *e = calloc(1, sizeof(*e));
	int r;

	if (!e)
		return -ENOMEM;
	e->rs = rs;
	e->test_crash_after = test_crash_after;
	r = recscan_create(rs, LOG_TAG, &scan_periods, &scan_ops, e, &e->scan);
	if (r < 0) {
		free(e);
		return r;
	}
	*out = e;
	return 0;
}

void encoder_destroy(struct encoder *e)
{
	if (!e)
		return;
	recscan_destroy(e->scan);
	for (struct ejob *j = e->jobs; j; j = j->next)
		j->e = NULL; /* its outstanding answer (the worker's too) frees it */
	while (e->refused)
		refused_drop(e, e->refused);
	pool_free(e);
	free(e->fams);
	free(e->cands);
	free(e);
}

void encoder_status(const struct encoder *e, uint64_t uid, struct encoder_status *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; e && i < e->nfams; i++)
		if (e->fams[i].uid == uid)
			*out = e->fams[i].st;
}
