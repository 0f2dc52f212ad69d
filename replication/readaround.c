/* replication/readaround.c — a block from a copy elsewhere (readaround.h).
 *
 * One struct readaround per block asked: it learns the holders (the live set, or the
 * record from etcd), then asks them one after another until a good copy arrives. It
 * starts from a zero-delay timer, so that its callback never runs inside the
 * engine's call.
 */
#include "replication/readaround.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "replication/peer.h"
#include "replication/peer_proto.h"
#include "replication/replica_internal.h"

struct readaround {
	struct replicas *rs; /* NULL: cancelled while etcd had its call (freed on answer) */
	uint64_t uid;
	uint32_t sno, block, crc;
	int64_t epoch;
	char name[LAYOUT_ID_MAX + 1];
	void *buf;
	seg_cb cb;
	void *arg;
	char holders[LAYOUT_MAX_HOLDERS][LAYOUT_ID_MAX + 1];
	unsigned nholders, asked; /* holders, and how many were asked */
	bool live;           /* holders from this process's replica set, not etcd */
	bool in_etcd;        /* creq is etcd's */
	bool quiet;          /* a remote segment's read: a first-try success is no news */
	int res;             /* the answer if no copy is good: -EILSEQ once one was bad */
	char tried[320];     /* "node1: its copy fails the checksum; node2: not connected" */
	struct cluster_vol_req creq;
	struct loop_timer *start;
	struct readaround *next; /* rs->readarounds */
};

static void ra_id(const struct readaround *ra, char *buf, size_t len)
{
	snprintf(buf, len, "%s segment %016" PRIx64 ".%08" PRIx32 " block %" PRIu32, ra->name,
		 ra->uid, ra->sno, ra->block);
}

static void ra_unlink(struct readaround *ra)
{
	for (struct readaround **p = &ra->rs->readarounds; *p; p = &(*p)->next)
		if (*p == ra) {
			*p = ra->next;
			return;
		}
}

/* The end: logged with every holder tried, then the engine's callback. */
static void ra_finish(struct readaround *ra, int res, const char *from)
{
	char id[160];

	ra_id(ra, id, sizeof(id));
	if (res < 0 && res != -ESHUTDOWN)
		log_msg(LOG_ERROR, LOG_TAG, "volume %s: no copy elsewhere is good (%s)", id,
			ra->tried[0] ? ra->tried : "no holder but this node");
	else if (res == 0 && (!ra->quiet || ra->tried[0]))
		log_msg(LOG_WARN, LOG_TAG, "volume %s: read from the copy on node %s%s%s%s", id,
			from, ra->tried[0] ? " (also tried: " : "", ra->tried,
			ra->tried[0] ? ")" : "");
	ra_unlink(ra);
	loop_timer_cancel(ra->start);
	ra->cb(ra->arg, res);
	free(ra);
}

static void ra_note(struct readaround *ra, const char *node, const char *why)
{
	size_t n = strlen(ra->tried);

	snprintf(ra->tried + n, sizeof(ra->tried) - n, "%snode %s: %s", n ? "; " : "", node,
		 why);
}

static struct rnode *node_named(const struct replicas *rs, const char *id)
{
	for (size_t i = 0; i < rs->nnodes; i++)
		if (strcmp(rs->nodes[i]->id, id) == 0)
			return rs->nodes[i];
	return NULL;
}

static void ra_try_next(struct readaround *ra);

static void ra_replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
		       size_t len)
{
	struct readaround *ra = arg;
	const char *node = ra->holders[ra->asked - 1];
	struct peer_seg_reply rep = { 0 };
	int r = res;

	(void)h;
	if (ra->rs->closing) {
		ra_finish(ra, -ESHUTDOWN, NULL);
		return;
	}
	if (r == 0)
		r = peer_seg_reply_decode(PEER_OP_SEG_READ, payload, len, &rep) < 0 ? -EPROTO
										 : rep.result;
	if (r == 0 && (rep.nblocks != 1 || crc32c(rep.data, PEER_SEG_BLOCK) != ra->crc))
		r = -EBADMSG; /* it said good and sent something else */
	if (r == 0) {
		memcpy(ra->buf, rep.data, PEER_SEG_BLOCK);
		ra_finish(ra, 0, node);
		return;
	}
	if (r == -EILSEQ || r == -EBADMSG)
		ra->res = -EILSEQ;
	ra_note(ra, node, r == -EILSEQ	  ? "its copy fails the checksum"
			  : r == -EBADMSG ? "it sent a block that fails the checksum"
					  : err_str(-r));
	ra_try_next(ra);
}

/* Asks holder `node`: 0 (ra_replied runs) or -errno. */
static int ra_ask(struct readaround *ra, struct rnode *n)
{
	struct peer_seg_req rq = { .op = PEER_OP_SEG_READ, .sno = ra->sno, .block = ra->block,
				   .nblocks = 1, .flags = PEER_SEG_F_CRCS };
	uint8_t head[PEER_SEG_HEAD_MAX], crc[4];
	struct iovec data = { crc, sizeof(crc) };
	struct peer_msg m = { .op = PEER_OP_SEG_READ, .volume_id = ra->uid,
			      .epoch = (uint64_t)ra->epoch, .head = head, .data = &data,
			      .datacnt = 1 };

	if (!n || !n->ready || !n->conn)
		return -ENOTCONN;
	m.head_len = peer_seg_req_encode(&rq, head);
	peer_put32(crc, ra->crc);
	return peer_request(n->conn, &m, ra->rs->timeout_ms, ra_replied, ra);
}

static void ra_try_next(struct readaround *ra)
{
	while (ra->asked < ra->nholders) {
		const char *id = ra->holders[ra->asked++];
		int r = ra_ask(ra, node_named(ra->rs, id));

		if (r == 0)
			return;
		ra_note(ra, id, r == -ENOTCONN ? "not connected" : err_str(-r));
	}
	ra_finish(ra, ra->res, NULL);
}

/* The holders, this node left out. */
static void ra_holders(struct readaround *ra, const char (*ids)[LAYOUT_ID_MAX + 1], unsigned n)
{
	for (unsigned i = 0; i < n && ra->nholders < LAYOUT_MAX_HOLDERS; i++)
		if (strcmp(ids[i], ra->rs->self) != 0)
			snprintf(ra->holders[ra->nholders++], LAYOUT_ID_MAX + 1, "%s", ids[i]);
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
	for (size_t i = 0; res == 0 && i < ra->creq.nsegs; i++)
		if (ra->creq.segs[i].id.family == ra->uid && ra->creq.segs[i].id.seq == ra->sno)
			rec = &ra->creq.segs[i];
	if (rec)
		ra_holders(ra, rec->holders, rec->nholders);
	else
		snprintf(ra->tried, sizeof(ra->tried), "%s", res < 0 ? msg : "no segment record");
	free(ra->creq.segs);
	ra->creq.segs = NULL;
	ra_try_next(ra);
}

static void ra_start(void *arg)
{
	struct readaround *ra = arg;
	struct replicas *rs = ra->rs;
	int r;

	ra->start = NULL;
	if (ra->live) {
		ra_try_next(ra);
		return;
	}
	ra->creq = (struct cluster_vol_req){ .op = CLUSTER_VOL_SEG_LIST };
	snprintf(ra->creq.vol.name, sizeof(ra->creq.vol.name), "%s", ra->name);
	r = cluster_volume_async(rs->cluster, &ra->creq, ra_listed, ra);
	if (r < 0) {
		snprintf(ra->tried, sizeof(ra->tried), "the segment records are not readable: %s",
			 err_str(-r));
		ra_finish(ra, -EIO, NULL);
		return;
	}
	ra->in_etcd = true;
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

static int ra_new(void *ctx, uint64_t uid, uint32_t sno, uint32_t block, void *buf,
		  uint32_t crc, seg_cb cb, void *arg, bool quiet)
{
	struct replicas *rs = ctx;
	const struct family *f = NULL;
	struct readaround *ra;

	for (size_t i = 0; i < rs->nfams && !f; i++)
		if (rs->fams[i]->uid == uid)
			f = rs->fams[i];
	if (!f || rs->closing)
		return -ENOENT;
	ra = calloc(1, sizeof(*ra));
	if (!ra)
		return -ENOMEM;
	*ra = (struct readaround){ .rs = rs, .uid = uid, .sno = sno, .block = block, .crc = crc,
				   .epoch = f->epoch, .buf = buf, .cb = cb, .arg = arg,
				   .res = -EIO, .quiet = quiet };
	snprintf(ra->name, sizeof(ra->name), "%s", f->name);
	ra->live = live_holders(ra);
	if (loop_timer_add(rs->loop, 0, ra_start, ra, &ra->start) < 0) {
		free(ra);
		return -ENOMEM;
	}
	ra->next = rs->readarounds;
	rs->readarounds = ra;
	return 0;
}

int readaround_read(void *ctx, uint64_t uid, uint32_t sno, uint32_t block, void *buf,
		    uint32_t crc, seg_cb cb, void *arg)
{
	return ra_new(ctx, uid, sno, block, buf, crc, cb, arg, false);
}

int readaround_read_remote(void *ctx, uint64_t uid, uint32_t sno, uint32_t block, void *buf,
			   uint32_t crc, seg_cb cb, void *arg)
{
	return ra_new(ctx, uid, sno, block, buf, crc, cb, arg, true);
}

void readaround_cancel_all(struct replicas *rs)
{
	while (rs->readarounds) {
		struct readaround *ra = rs->readarounds;

		if (!ra->in_etcd) {
			ra_finish(ra, -ESHUTDOWN, NULL); /* unlinks it */
			continue;
		}
		rs->readarounds = ra->next;
		ra->cb(ra->arg, -ESHUTDOWN);
		ra->rs = NULL; /* ra_listed frees it */
	}
}
