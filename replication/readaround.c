/* replication/readaround.c — runs of a segment from its copies elsewhere (readaround.h).
 *
 * One struct readaround per run asked: one fetch of the engine's (seg_fetch), or
 * several whose runs of one segment lie end to end, asked in the same turn of the
 * loop (a client's sequential small reads: one peer request for them all). It learns
 * the holders (the live set, or the record from etcd), orders them (connected ones
 * first, each segment starting at another), then asks them one after another for the
 * blocks still missing until every wanted block arrived good or no holder is left.
 * It starts from a zero-delay timer, so that its callbacks never run inside the
 * engine's call, and so that the runs asked in one turn can join it first.
 */
#include "replication/readaround.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "common/array.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/stages.h"
#include "replication/fragread.h"
#include "replication/peer.h"
#include "replication/peer_proto.h"
#include "replication/replica_internal.h"

_Static_assert(SEG_FETCH_MAX_BLOCKS <= PEER_SEG_READ_MAX_BLOCKS,
	       "a fetch's run is one SEG_READ");

struct readaround {
	struct replicas *rs; /* NULL: cancelled while etcd had its call (freed on answer) */
	uint64_t uid;
	uint32_t sno;
	uint32_t block, nblocks; /* the run: its fetches' runs end to end */
	struct seg_fetch **fs;   /* the fetches, by block (each one's run follows the last) */
	size_t nfs, cap;
	int64_t epoch;
	char name[LAYOUT_ID_MAX + 1];
	char holders[LAYOUT_MAX_HOLDERS][LAYOUT_ID_MAX + 1];
	unsigned nholders, asked; /* holders, and how many were asked */
	uint32_t first, count;   /* the range asked of the holder now */
	uint32_t requests;       /* peer requests sent */
	bool live;           /* holders from this process's replica set, not etcd */
	bool in_etcd;        /* creq is etcd's */
	bool quiet;          /* a remote segment's read: a first-try success is no news */
	bool no_crcs;        /* its fetches' blocks have no map CRC (seg_fetch.no_crcs) */
	bool plain;          /* the holder asked now is asked again without CRCs */
	bool listed;         /* the records were read from etcd (holders, stripe) */
	bool holders_done;   /* every holder was asked */
	bool frags_tried;    /* the stripe's fragments were read (fragread.h) */
	bool striped;        /* stripe and seg_blocks are the segment's */
	struct layout_stripe stripe;
	uint32_t seg_blocks;
	struct fragread *fr; /* the fragments' read in flight */
	char tried[320];     /* "node1: its copy fails the checksum; node2: not connected" */
	struct cluster_vol_req creq;
	struct loop_timer *start;
	struct readaround *next; /* rs->readarounds */
};

/* Block b of the run (ra->block <= b < ra->block + ra->nblocks): its entry. */
static struct seg_fetch_block *ra_want(const struct readaround *ra, uint32_t b)
{
	for (size_t i = 0; i < ra->nfs; i++) {
		const struct seg_fetch *f = ra->fs[i];

		if (b >= f->block && b < f->block + f->nblocks)
			return &f->want[b - f->block];
	}
	return NULL;
}

/* Does block b still wait for a good copy? */
static bool ra_missing(const struct readaround *ra, uint32_t b)
{
	const struct seg_fetch_block *w = ra_want(ra, b);

	return w && w->dst && w->res != 0;
}

static void ra_id(const struct readaround *ra, char *buf, size_t len)
{
	snprintf(buf, len, "%s segment %016" PRIx64 ".%08" PRIx32 " block %" PRIu32 "%s%" PRIu32,
		 ra->name, ra->uid, ra->sno, ra->block, ra->nblocks > 1 ? "+" : "",
		 ra->nblocks > 1 ? ra->nblocks - 1 : 0);
}

static void ra_unlink(struct readaround *ra)
{
	for (struct readaround **p = &ra->rs->readarounds; *p; p = &(*p)->next)
		if (*p == ra) {
			*p = ra->next;
			return;
		}
}

/* Each fetch's end: its first missing block's error, or 0. The requests are the first
 * fetch's to count. */
static void ra_complete(struct readaround *ra, int cancel)
{
	for (size_t i = 0; i < ra->nfs; i++) {
		struct seg_fetch *f = ra->fs[i];
		int res = 0;

		for (uint32_t b = 0; b < f->nblocks; b++) {
			if (cancel && f->want[b].dst && f->want[b].res != 0)
				f->want[b].res = cancel;
			if (res == 0 && f->want[b].dst)
				res = f->want[b].res;
		}
		f->requests = i == 0 ? ra->requests : 0;
		f->done(f, res);
	}
	free(ra->fs);
}

/* Does some wanted block of the run still wait for a good copy? */
static bool ra_any_missing(const struct readaround *ra)
{
	for (uint32_t b = ra->block; b < ra->block + ra->nblocks; b++)
		if (ra_missing(ra, b))
			return true;
	return false;
}

/* The end: logged with every holder tried, then the engine's callbacks (cancel: the
 * replicas are closing, every missing block ends -ESHUTDOWN). from: the holder whose
 * copy completed the run (NULL: its fragments did, or nothing did). */
static void ra_finish(struct readaround *ra, const char *from, bool cancel)
{
	bool missing = ra_any_missing(ra);
	char id[200];

	ra_id(ra, id, sizeof(id));
	if (missing && !cancel)
		log_msg(LOG_ERROR, LOG_TAG, "volume %s: no copy elsewhere is good (%s)", id,
			ra->tried[0] ? ra->tried : "no holder but this node");
	else if (!missing && !from && ra->frags_tried && ra->tried[0])
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "volume %s: read from its fragments (also "
				"tried: %s)", id, ra->tried);
	else if (!missing && from && (!ra->quiet || ra->tried[0]))
		log_msg(LOG_WARN, LOG_TAG, "volume %s: read from the copy on node %s%s%s%s", id,
			from, ra->tried[0] ? " (also tried: " : "", ra->tried,
			ra->tried[0] ? ")" : "");
	ra_unlink(ra);
	loop_timer_cancel(ra->start);
	fragread_orphan(ra->fr);
	ra_complete(ra, cancel ? -ESHUTDOWN : 0);
	free(ra);
}

/* Notes why a source failed (node NULL: why says which). */
static void ra_note(struct readaround *ra, const char *node, const char *why)
{
	size_t n = strlen(ra->tried);

	snprintf(ra->tried + n, sizeof(ra->tried) - n, "%s%s%s%s%s", n ? "; " : "",
		 node ? "node " : "", node ? node : "", node ? ": " : "", why);
}

static void ra_try_next(struct readaround *ra);
static int ra_ask(struct readaround *ra, struct rnode *n);

/* Every wanted block of the range asked: this holder's copy was bad (-EILSEQ). */
static void ra_range_bad(struct readaround *ra)
{
	for (uint32_t b = ra->first; b < ra->first + ra->count; b++)
		if (ra_missing(ra, b))
			ra_want(ra, b)->res = -EILSEQ;
}

/* The blocks that arrived: each missing one that has its CRC is copied to its place.
 * Returns how many failed their CRC. */
static uint32_t ra_take(struct readaround *ra, const uint8_t *data)
{
	uint32_t bad = 0;

	for (uint32_t i = 0; i < ra->count; i++) {
		struct seg_fetch_block *w = ra_want(ra, ra->first + i);
		const uint8_t *d = data + (size_t)i * PEER_SEG_BLOCK;

		if (!w || !w->dst || w->res == 0)
			continue;
		if (!ra->no_crcs && crc32c(d, PEER_SEG_BLOCK) != w->crc) {
			w->res = -EILSEQ;
			bad++;
			continue;
		}
		memcpy(w->dst, d, PEER_SEG_BLOCK);
		w->res = 0;
	}
	return bad;
}

static void ra_replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
		       size_t len)
{
	struct readaround *ra = arg;
	const char *node = ra->holders[ra->asked - 1];
	struct peer_seg_reply rep = { 0 };
	uint32_t bad = 0;
	int r = res;
	char why[96];

	(void)h;
	if (ra->rs->closing) {
		ra_finish(ra, NULL, true);
		return;
	}
	if (r == 0)
		r = peer_seg_reply_decode(PEER_OP_SEG_READ, payload, len, &rep) < 0 ? -EPROTO
										 : rep.result;
	if (r == 0 && rep.nblocks != ra->count)
		r = -EPROTO;
	if (r == 0)
		bad = ra_take(ra, rep.data);
	if (r == -EILSEQ && !ra->plain && ra->count > 1) {
		/* some block of its copy is bad (it logged which run): the others may be
		 * good, so the run is asked again as it is and checked here block by block */
		ra->plain = true;
		if (ra_ask(ra, replica_node_find(ra->rs, node)) == 0)
			return;
	}
	ra->plain = false;
	if (r == -EILSEQ)
		ra_range_bad(ra);
	if (r == 0 && bad == 0 && !ra_any_missing(ra)) {
		ra_finish(ra, node, false);
		return;
	}
	if (bad)
		snprintf(why, sizeof(why), "%" PRIu32 " block%s of its copy fail%s the checksum",
			 bad, bad > 1 ? "s" : "", bad > 1 ? "" : "s");
	ra_note(ra, node, bad ? why : r == -EILSEQ ? "its copy fails the checksum"
							 : err_str(-r));
	ra_try_next(ra);
}

/* The range of the run still missing: ra->first, ra->count. */
static void ra_range(struct readaround *ra)
{
	uint32_t first = ra->block + ra->nblocks, last = ra->block;

	for (uint32_t b = ra->block; b < ra->block + ra->nblocks; b++)
		if (ra_missing(ra, b)) {
			first = b < first ? b : first;
			last = b;
		}
	ra->first = first;
	ra->count = last + 1 - first;
}

/* Asks holder n for the missing range: 0 (ra_replied runs) or -errno. With CRCs (the
 * holder checks its copy, and refuses a bad one rather than send it) when every
 * block of the range is wanted; without (checked here) when some only join runs, or
 * when the holder refused the run: ra->plain. */
static int ra_ask(struct readaround *ra, struct rnode *n)
{
	struct peer_seg_req rq = { .op = PEER_OP_SEG_READ, .sno = ra->sno };
	uint8_t head[PEER_SEG_HEAD_MAX], crcs[SEG_FETCH_MAX_BLOCKS * 4];
	struct iovec data = { crcs, 0 };
	struct peer_msg m = { .op = PEER_OP_SEG_READ, .volume_id = ra->uid,
			      .epoch = (uint64_t)ra->epoch, .head = head, .data = &data };
	bool all = !ra->plain && !ra->no_crcs;
	int r;

	if (!replica_node_live(n))
		return -ENOTCONN;
	ra_range(ra);
	for (uint32_t i = 0; i < ra->count && all; i++) {
		const struct seg_fetch_block *w = ra_want(ra, ra->first + i);

		all = w && w->dst;
		if (all)
			peer_put32(crcs + (size_t)i * 4, w->crc);
	}
	rq.block = ra->first;
	rq.nblocks = ra->count;
	rq.flags = all ? PEER_SEG_F_CRCS : 0;
	data.iov_len = all ? (size_t)ra->count * 4 : 0;
	m.datacnt = all ? 1 : 0;
	m.head_len = peer_seg_req_encode(&rq, head);
	r = peer_request(n->conn, &m, ra->rs->timeout_ms, ra_replied, ra);
	if (r == 0)
		ra->requests++;
	return r;
}

static void ra_exhausted(struct readaround *ra);

static void ra_try_next(struct readaround *ra)
{
	while (ra->asked < ra->nholders) {
		const char *id = ra->holders[ra->asked++];
		int r = ra_ask(ra, replica_node_find(ra->rs, id));

		if (r == 0)
			return;
		ra_note(ra, id, r == -ENOTCONN ? "not connected" : err_str(-r));
	}
	ra->holders_done = true;
	ra_exhausted(ra);
}

/* The holders, this node left out. */
static void ra_holders(struct readaround *ra, const char (*ids)[LAYOUT_ID_MAX + 1], unsigned n)
{
	for (unsigned i = 0; i < n && ra->nholders < LAYOUT_MAX_HOLDERS; i++)
		if (strcmp(ids[i], ra->rs->self) != 0)
			snprintf(ra->holders[ra->nholders++], LAYOUT_ID_MAX + 1, "%s", ids[i]);
}

/* The order the holders are asked in: the connected ones first (a holder that is down
 * costs nothing but a note), and among them each segment starts at another one, so
 * that the reads of many segments spread over the holders. */
static void ra_order(struct readaround *ra)
{
	char sorted[LAYOUT_MAX_HOLDERS][LAYOUT_ID_MAX + 1];
	unsigned n = 0, nlive;

	for (int live = 1; live >= 0; live--)
		for (unsigned i = 0; i < ra->nholders; i++)
			if (replica_node_live(replica_node_find(ra->rs, ra->holders[i])) == (bool)live)
				memcpy(sorted[n++], ra->holders[i], sizeof(sorted[0]));
	for (nlive = 0; nlive < n && replica_node_live(replica_node_find(ra->rs, sorted[nlive])); nlive++)
		;
	for (unsigned i = 0; i < n; i++) /* the live ones rotated by the segment */
		memcpy(ra->holders[i], i < nlive ? sorted[(i + ra->sno) % nlive] : sorted[i],
		       sizeof(sorted[0]));
}

static void ra_listed(void *arg, int res, const char *msg)
{
	struct readaround *ra = arg;
	const struct layout_segment *rec = NULL;

	if (!ra->rs) { /* cancelled: the engine was told already */
		free(ra->creq.segs);
		free(ra);
		return;
	}
	ra->in_etcd = false;
	ra->listed = true;
	for (size_t i = 0; res == 0 && i < ra->creq.nsegs; i++) {
		(void)fragread_stripe_put(ra->rs, &ra->creq.segs[i]); /* (a cache: may fail) */
		if (ra->creq.segs[i].id.family == ra->uid && ra->creq.segs[i].id.seq == ra->sno)
			rec = &ra->creq.segs[i];
	}
	if (rec && rec->stripe.k && rec->state == LAYOUT_SEG_SEALED) {
		ra->striped = true;
		ra->stripe = rec->stripe;
		ra->seg_blocks = (uint32_t)(rec->length / PEER_SEG_BLOCK);
	}
	if (rec && !ra->holders_done && !ra->nholders)
		ra_holders(ra, rec->holders, rec->nholders);
	else if (!rec)
		ra_note(ra, NULL, res < 0 ? msg : "no segment record");
	free(ra->creq.segs);
	ra->creq.segs = NULL;
	if (ra->holders_done || (ra->striped && ra->rs->frags_first && !ra->frags_tried)) {
		ra_exhausted(ra); /* (listed for its stripe) */
		return;
	}
	ra_order(ra);
	ra_try_next(ra);
}

/* The family's records from etcd (ra_listed goes on): the holders, the stripe. */
static void ra_list(struct readaround *ra)
{
	int r;

	ra->creq = (struct cluster_vol_req){ .op = CLUSTER_VOL_SEG_LIST };
	snprintf(ra->creq.vol.name, sizeof(ra->creq.vol.name), "%s", ra->name);
	r = cluster_volume_async(ra->rs->cluster, &ra->creq, ra_listed, ra);
	if (r < 0) {
		ra_note(ra, NULL, "the segment records are not readable");
		ra->listed = true;
		if (ra->holders_done)
			ra_exhausted(ra);
		else
			ra_try_next(ra);
		return;
	}
	ra->in_etcd = true;
}

/* The holders' turn: live ones now, the others from the records. */
static void ra_holders_go(struct readaround *ra)
{
	if (ra->live || ra->listed) {
		ra_order(ra);
		ra_try_next(ra);
		return;
	}
	ra_list(ra);
}

static void ra_frags_done(void *arg, const char *why)
{
	struct readaround *ra = arg;

	ra->fr = NULL;
	if (why[0]) {
		char line[300];

		snprintf(line, sizeof(line), "fragments: %s", why);
		ra_note(ra, NULL, line);
	}
	if (!ra_any_missing(ra)) {
		ra_finish(ra, NULL, false);
		return;
	}
	ra_exhausted(ra);
}

/* The fragments of the stripe for the blocks still missing: 0 (ra_frags_done goes
 * on), or -errno. */
static int ra_frags(struct readaround *ra)
{
	struct seg_fetch_block *want[SEG_FETCH_MAX_BLOCKS];
	const struct family *fam = replica_family_find(ra->rs, ra->uid);
	struct fragread_run run = { .uid = ra->uid, .sno = ra->sno, .st = &ra->stripe,
				    .seg_blocks = ra->seg_blocks, .first = ra->block,
				    .count = ra->nblocks, .want = want,
				    .no_map_crcs = ra->no_crcs };

	ra->frags_tried = true;
	if (!fam)
		return -ENOENT;
	run.epoch = fam->epoch;
	for (uint32_t i = 0; i < ra->nblocks; i++)
		want[i] = ra_missing(ra, ra->block + i) ? ra_want(ra, ra->block + i) : NULL;
	return fragread_start(ra->rs, &run, ra_frags_done, ra, &ra->fr);
}

/* May the segment have a stripe (its volume erasure-coded, or a family not known
 * here: the records say)? */
static bool ra_family_ec(const struct readaround *ra)
{
	const struct family *f = replica_family_find(ra->rs, ra->uid);
	unsigned k, m;

	return !f || replica_family_ec(ra->rs, f, &k, &m);
}

/* What is still missing after one source (the holders, or the fragments) is asked of
 * the other; with both asked, the end. A striped segment's stripe may need the
 * records first (a segment this process placed has its holders in memory). */
static void ra_exhausted(struct readaround *ra)
{
	if (!ra_any_missing(ra)) {
		ra_finish(ra, NULL, false);
		return;
	}
	if (!ra->frags_tried && !ra->striped && !ra->listed && ra_family_ec(ra)) {
		ra_list(ra); /* (for its stripe: a replicated volume has none) */
		return;
	}
	if (!ra->frags_tried && ra->striped) {
		int r = ra_frags(ra);
		char line[96];

		if (r == 0)
			return;
		snprintf(line, sizeof(line), "fragments: %s", r == -ENOENT ? "no family here"
									 : err_str(-r));
		ra_note(ra, NULL, line);
	}
	if (!ra->holders_done) {
		ra_holders_go(ra);
		return;
	}
	ra_finish(ra, NULL, false);
}

static void ra_start(void *arg)
{
	struct readaround *ra = arg;

	ra->start = NULL;
	stages_mark("readaround.start");
	if (ra->rs->frags_first && (ra->striped || !ra->live))
		ra_exhausted(ra); /* the fragments first (the stripe from the records) */
	else
		ra_holders_go(ra);
}

/* The live holder set of (uid, sno) if this process placed it; false if not. */
static bool live_holders(struct readaround *ra)
{
	/* (its hash chain, not rs->all: a remote entry's every read comes here) */
	for (const struct rseg *s = replica_seg_chain(ra->rs, ra->uid, ra->sno); s;
	     s = s->next_hash) {
		if (s->fam->uid != ra->uid || s->sno != ra->sno || s->state < RS_OPENING ||
		    s->state > RS_SEALED)
			continue;
		for (unsigned i = 0; i < s->nholders; i++)
			snprintf(ra->holders[ra->nholders++], LAYOUT_ID_MAX + 1, "%s",
				 s->holders[i]->id);
		return true;
	}
	return false;
}

/* Adds f to ra's fetches, before or after them: 0 or -ENOMEM. */
static int ra_add(struct readaround *ra, struct seg_fetch *f)
{
	bool before = ra->nfs && f->block < ra->block;

	if (ARRAY_GROW(ra->fs, ra->cap, ra->nfs, 4) < 0)
		return -ENOMEM;
	if (before) {
		memmove(ra->fs + 1, ra->fs, ra->nfs * sizeof(ra->fs[0]));
		ra->fs[0] = f;
		ra->block = f->block;
	} else {
		ra->fs[ra->nfs] = f;
		if (!ra->nfs)
			ra->block = f->block;
	}
	ra->nfs++;
	ra->nblocks += f->nblocks;
	return 0;
}

/* A run asked in this turn of the loop (not started) that f's run continues or
 * leads into, within one request; NULL if none. */
static struct readaround *ra_joinable(const struct replicas *rs, const struct seg_fetch *f)
{
	for (struct readaround *ra = rs->readarounds; ra; ra = ra->next)
		if (ra->start && ra->uid == f->uid && ra->sno == f->sno &&
		    ra->quiet == f->remote && ra->no_crcs == f->no_crcs &&
		    ra->nblocks + f->nblocks <= SEG_FETCH_MAX_BLOCKS &&
		    (f->block == ra->block + ra->nblocks || f->block + f->nblocks == ra->block))
			return ra;
	return NULL;
}

int readaround_fetch(void *ctx, struct seg_fetch *f)
{
	struct replicas *rs = ctx;
	const struct family *fam = replica_family_find(rs, f->uid);
	struct readaround *ra;

	if (!fam || rs->closing)
		return -ENOENT;
	ra = ra_joinable(rs, f);
	if (ra)
		return ra_add(ra, f);
	ra = calloc(1, sizeof(*ra));
	if (!ra)
		return -ENOMEM;
	*ra = (struct readaround){ .rs = rs, .uid = f->uid, .sno = f->sno, .epoch = fam->epoch,
				   .quiet = f->remote, .no_crcs = f->no_crcs };
	snprintf(ra->name, sizeof(ra->name), "%s", fam->name);
	ra->live = live_holders(ra);
	ra->striped = fragread_stripe_get(rs, ra->uid, ra->sno, &ra->stripe, &ra->seg_blocks) == 0;
	if (ra_add(ra, f) < 0 || loop_timer_add(rs->loop, 0, ra_start, ra, &ra->start) < 0) {
		free(ra->fs);
		free(ra);
		return -ENOMEM;
	}
	ra->next = rs->readarounds;
	rs->readarounds = ra;
	return 0;
}

void readaround_cancel_all(struct replicas *rs)
{
	while (rs->readarounds) {
		struct readaround *ra = rs->readarounds;

		if (!ra->in_etcd) {
			ra_finish(ra, NULL, true); /* unlinks it */
			continue;
		}
		rs->readarounds = ra->next;
		ra_complete(ra, -ESHUTDOWN);
		ra->fs = NULL;
		ra->rs = NULL; /* ra_listed frees it */
	}
}
