/* replication/takeover.c — taking over a volume whose owner died (takeover.h).
 *
 * One takeover is a chain of steps; each step issues its calls (etcd, peers, the
 * engine) and counts them in `pending`; when the last one is in, step_next() runs the
 * next step. A step that cannot go on safely (no holder of an open segment answered,
 * no source for a copy) starts the whole takeover again after RETRY_MS: every step is
 * idempotent (a raise, a stat, a seal at the same length, a copy already held). */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "cluster/cluster.h"
#include "common/array.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "engine/engine.h"
#include "replication/peer.h"
#include "replication/fragread.h"
#include "replication/peer_proto.h"
#include "replication/replica.h"
#include "replication/takeover.h"

#define LOG_TAG "takeover"
#define RETRY_MS 500u

enum step { ST_LIST, ST_CONNECT, ST_RAISE, ST_SEAL, ST_COPY, ST_ADOPT, ST_NUMBER, ST_SERVE,
	    ST_DONE };

static const char *const step_names[] = {
	[ST_LIST] = "listing segment records", [ST_CONNECT] = "connecting to holders",
	[ST_RAISE] = "raising the epoch", [ST_SEAL] = "sealing open segments",
	[ST_COPY] = "copying segments", [ST_ADOPT] = "rebuilding the volume from its log",
	[ST_NUMBER] = "reserving segment numbers",
	[ST_SERVE] = "starting replication", [ST_DONE] = "done",
};

struct tnode {
	struct takeover *t;
	char id[LAYOUT_ID_MAX + 1];
	struct peer_conn *conn;
	struct loop_timer *timer; /* the handshake's deadline */
	bool waiting;             /* counted in pending until ready or closed */
	bool ready;
};

/* A segment's header (its block 0) read from its fragments, and where it is kept. */
struct head_block {
	uint8_t b[ENGINE_BLOCK_SIZE];
};
struct head_ref {
	uint32_t sno;
	uint32_t at; /* its index in heads */
};

struct takeover {
	struct takeover_opts o;
	char self[LAYOUT_ID_MAX + 1];
	char name[LAYOUT_ID_MAX + 1];
	int64_t epoch;
	uint64_t uid;
	takeover_cb cb;
	void *arg;
	enum step step;
	uint64_t t0_ms, step_ms;
	unsigned refs;            /* calls in flight, +1 until finished */
	unsigned pending;         /* calls of the current step */
	bool finished;
	struct cluster_vol_req req;
	struct layout_segment *segs;
	size_t nsegs, cur;
	struct tnode *nodes;
	size_t nnodes;
	struct loop_timer *retry;
	/* ST_SEAL: the current open segment's answers */
	uint32_t minlen;
	unsigned answered;
	bool stating;             /* the stats of segment cur are out */
	/* ST_COPY: the current segment */
	uint32_t have, len;
	unsigned src;             /* the holder of segment cur it reads from (its index) */
	uint8_t *buf;
	/* ST_COPY of a striped segment with no replica: a run read from its fragments */
	struct seg_fetch_block want[SEG_FETCH_MAX_BLOCKS];
	struct seg_fetch_block *wantp[SEG_FETCH_MAX_BLOCKS];
	uint32_t chunk;
	struct fragread *fr;      /* ... the read in flight (orphaned if the takeover ends) */
	uint32_t *snos;
	size_t nsnos;
	/* striped segments with no replica and no copy here: remote entries of the
	 * adoption, each with its header (block 0) read from its fragments */
	struct engine_adopt_remote *rem;
	size_t nrem;
	/* the headers read so far, of this round and earlier ones (each -EREMOTE round
	 * builds rem again: a header is read once); both arrays grow by doubling */
	struct head_block *heads; /* nheads, in the order read */
	struct head_ref *head_idx; /* nheads, by ascending sno: which block is whose */
	size_t nheads, heads_cap, head_idx_cap;
	/* ... but those the adoption needed whole (-EREMOTE) are copied here */
	uint32_t *whole;
	size_t nwhole;
	unsigned adopts;          /* adoptions tried (each -EREMOTE one more) */
};

struct treq {
	struct takeover *t;
	struct tnode *n;
};

static void step_next(struct takeover *t);
static void run_step(struct takeover *t);

static void unref(struct takeover *t)
{
	if (--t->refs)
		return;
	free(t->segs);
	free(t->nodes);
	free(t->buf);
	free(t->snos);
	free(t->rem);
	free(t->heads);
	free(t->head_idx);
	free(t->whole);
	free(t);
}

static void nodes_close(struct takeover *t)
{
	for (size_t i = 0; i < t->nnodes; i++) {
		struct tnode *n = &t->nodes[i];

		loop_timer_cancel(n->timer);
		n->timer = NULL;
		if (n->conn)
			peer_conn_close(n->conn); /* closed runs: conn NULL */
	}
}

static void finish(struct takeover *t, int res, const char *msg)
{
	if (t->finished)
		return;
	t->finished = true;
	loop_timer_cancel(t->retry);
	t->retry = NULL;
	if (res == 0)
		log_msg(LOG_INFO, LOG_TAG, "volume %s: taken over at epoch %lld in %" PRIu64 " ms",
			t->name, (long long)t->epoch, loop_now_ms() - t->t0_ms);
	else
		log_msg(LOG_ERROR, LOG_TAG, "volume %s: takeover failed after %" PRIu64 " ms: %s",
			t->name, loop_now_ms() - t->t0_ms, msg);
	t->step = ST_DONE;
	t->cb(t->arg, res, msg);
	nodes_close(t);
	if (t->fr) { /* its done never runs: the call it began ends here */
		fragread_orphan(t->fr);
		t->fr = NULL;
		t->pending--;
		t->refs--; /* (never the last: the one dropped below is) */
	}
	unref(t);
}

static void fail(struct takeover *t, int res, const char *fmt, const char *detail)
{
	char msg[320];

	snprintf(msg, sizeof(msg), fmt, t->name, detail);
	finish(t, res, msg);
}

/* The end of one engine step of the takeover's own: on to next, or the takeover fails
 * (fmt names the volume, then the error). Ends the step's reference. */
static void engine_step_end(struct takeover *t, int res, const char *fmt,
			    void (*next)(struct takeover *t))
{
	if (!t->finished) {
		if (res < 0)
			fail(t, res, fmt, err_str(-res));
		else
			next(t);
	}
	unref(t);
}

/* A call of the current step ended: the step goes on when it was the last. */
static void call_end(struct takeover *t)
{
	bool last = --t->pending == 0;

	if (last && !t->finished)
		step_next(t);
	unref(t);
}

static void call_begin(struct takeover *t)
{
	t->pending++;
	t->refs++;
}

static void retry_fire(void *arg)
{
	struct takeover *t = arg;

	t->retry = NULL;
	if (!t->finished) {
		t->step = ST_LIST;
		run_step(t);
	}
	unref(t);
}

/* Something this takeover needs is not reachable now: everything again, later. */
static void retry_later(struct takeover *t, const char *why)
{
	LOG_RATELIMITED(LOG_WARN, LOG_TAG, "volume %s: %s: waiting, then starting over",
			t->name, why);
	nodes_close(t);
	t->refs++;
	if (loop_timer_add(t->o.loop, RETRY_MS, retry_fire, t, &t->retry) < 0) {
		t->refs--;
		finish(t, -ENOMEM, "out of memory");
	}
}

static struct tnode *node_find(struct takeover *t, const char *id)
{
	for (size_t i = 0; i < t->nnodes; i++)
		if (strcmp(t->nodes[i].id, id) == 0)
			return &t->nodes[i];
	return NULL;
}

/* ---- peer requests ---- */

static int send_req(struct takeover *t, struct tnode *n, const struct peer_seg_req *rq,
		    peer_reply_cb cb)
{
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct peer_msg m = { .op = rq->op, .volume_id = t->uid, .epoch = (uint64_t)t->epoch,
			      .head = head };
	struct treq *q;
	int r;

	if (!n->ready)
		return -ENOTCONN;
	q = malloc(sizeof(*q));
	if (!q)
		return -ENOMEM;
	*q = (struct treq){ .t = t, .n = n };
	m.head_len = peer_seg_req_encode(rq, head);
	r = peer_request(n->conn, &m, t->o.peer_timeout_ms, cb, q);
	if (r < 0) {
		free(q);
		return r;
	}
	call_begin(t);
	return 0;
}

/* The reply's result (the transport's error first), decoded into *out. */
static int reply_result(uint8_t op, int res, const void *payload, size_t len,
			struct peer_seg_reply *out)
{
	if (res < 0)
		return res;
	if (peer_seg_reply_decode(op, payload, len, out) < 0)
		return -EPROTO;
	return out->result;
}

/* ---- 1. the records ---- */

static void listed(void *arg, int res, const char *msg)
{
	struct takeover *t = arg;

	if (!t->finished) {
		free(t->segs);
		t->segs = t->req.segs;
		t->nsegs = t->req.nsegs;
		t->req.segs = NULL;
		if (res < 0) {
			retry_later(t, msg);
		} else if (t->nsegs == 0) {
			fail(t, -ENOENT, "volume %s: no segment records: nothing to take over%s", "");
		} else {
			t->uid = t->segs[0].id.family;
			for (size_t i = 1; i < t->nsegs; i++)
				if (t->segs[i].id.family != t->uid) {
					fail(t, -EPROTO, "volume %s: its segment records name two "
					     "families%s", "");
					break;
				}
			if (!t->finished)
				step_next(t);
		}
	} else {
		free(t->req.segs);
		t->req.segs = NULL;
	}
	unref(t);
}

static void list_start(struct takeover *t)
{
	memset(&t->req, 0, sizeof(t->req));
	t->req.op = CLUSTER_VOL_SEG_LIST;
	snprintf(t->req.vol.name, sizeof(t->req.vol.name), "%s", t->name);
	t->req.epoch = t->epoch;
	t->refs++;
	if (cluster_volume_async(t->o.cluster, &t->req, listed, t) < 0) {
		t->refs--;
		retry_later(t, "the segment records cannot be listed");
	}
}

/* ---- 2. connections to every holder named ---- */

static void node_settled(struct tnode *n)
{
	loop_timer_cancel(n->timer);
	n->timer = NULL;
	if (n->waiting) {
		n->waiting = false;
		call_end(n->t);
	}
}

static void conn_ready(void *arg, struct peer_conn *c)
{
	struct tnode *n = arg;

	(void)c;
	n->ready = true;
	node_settled(n);
}

static void conn_closed(void *arg, struct peer_conn *c, int err, const char *why)
{
	struct tnode *n = arg;

	(void)c;
	if (!n->t->finished && n->waiting)
		log_msg(LOG_INFO, LOG_TAG, "volume %s: holder node %s not reachable: %s",
			n->t->name, n->id, why && why[0] ? why : err_str(-err));
	n->conn = NULL;
	n->ready = false;
	node_settled(n);
}

static const struct peer_conn_ops conn_ops = { .ready = conn_ready, .closed = conn_closed };

/* A node that does not finish its handshake in time (a paused old owner) is left out. */
static void handshake_late(void *arg)
{
	struct tnode *n = arg;

	n->timer = NULL;
	if (n->conn)
		peer_conn_close(n->conn);
}

static void node_connect(struct takeover *t, struct tnode *n)
{
	struct cluster_node cn;
	char addr[LAYOUT_ADDR_MAX + 1];
	uint16_t port;

	if (cluster_node_get(t->o.cluster, n->id, &cn) < 0 || !cn.up || !cn.rec.peer[0] ||
	    peer_addr_parse(cn.rec.peer, addr, sizeof(addr), &port) < 0)
		return; /* down: it counts as not answering */
	if (peer_connect(t->o.ep, addr, port, &conn_ops, n, &n->conn) < 0) {
		n->conn = NULL;
		return;
	}
	n->waiting = true;
	call_begin(t);
	if (loop_timer_add(t->o.loop, t->o.peer_timeout_ms * 2, handshake_late, n, &n->timer) < 0)
		n->timer = NULL;
}

static void connect_start(struct takeover *t)
{
	size_t cap = 0;

	free(t->nodes);
	t->nodes = NULL;
	t->nnodes = 0;
	for (size_t i = 0; i < t->nsegs; i++)
		cap += t->segs[i].nholders;
	t->nodes = calloc(cap ? cap : 1, sizeof(*t->nodes));
	if (!t->nodes) {
		finish(t, -ENOMEM, "out of memory");
		return;
	}
	for (size_t i = 0; i < t->nsegs; i++)
		for (unsigned h = 0; h < t->segs[i].nholders; h++) {
			const char *id = t->segs[i].holders[h];

			if (strcmp(id, t->self) == 0 || node_find(t, id))
				continue;
			t->nodes[t->nnodes].t = t;
			snprintf(t->nodes[t->nnodes].id, sizeof(t->nodes[0].id), "%s", id);
			t->nnodes++;
		}
	call_begin(t); /* this function's: the step ends here when nothing waits */
	for (size_t i = 0; i < t->nnodes; i++)
		node_connect(t, &t->nodes[i]);
	call_end(t);
}

/* ---- 3. the epoch raised on every holder ---- */

static void raised(void *arg, int res, const struct peer_hdr *h, const void *payload,
		   size_t len)
{
	struct treq *q = arg;
	struct peer_seg_reply rp;
	int r = reply_result(PEER_OP_EPOCH_RAISE, res, payload, len, &rp);

	(void)h;
	if (r < 0 && !q->t->finished) {
		log_msg(LOG_WARN, LOG_TAG, "volume %s: node %s did not raise the epoch: %s",
			q->t->name, q->n->id, err_str(-r));
		q->n->ready = false; /* not trusted for the rest */
	}
	call_end(q->t);
	free(q);
}

static void local_done(void *arg, int res)
{
	struct takeover *t = arg;

	if (res < 0 && !t->finished)
		log_msg(LOG_WARN, LOG_TAG, "volume %s: this node's copies: %s", t->name,
			err_str(-res));
	call_end(t);
}

static void raise_start(struct takeover *t)
{
	struct peer_seg_req rq = { .op = PEER_OP_EPOCH_RAISE };

	call_begin(t); /* this function's, ended below */
	for (size_t i = 0; i < t->nnodes; i++)
		if (send_req(t, &t->nodes[i], &rq, raised) < 0)
			t->nodes[i].ready = false;
	call_begin(t);
	if (engine_held_epoch_raise_async(t->o.eng, t->uid, (uint64_t)t->epoch, local_done, t) < 0)
		call_end(t);
	call_end(t);
}

/* ---- 4. each open segment sealed at the shortest length of a full member ---- */

static void stat_take(struct takeover *t, uint32_t length)
{
	if (length < t->minlen)
		t->minlen = length;
	t->answered++;
}

static void stat_replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
			 size_t len)
{
	struct treq *q = arg;
	struct peer_seg_reply rp;
	int r = reply_result(PEER_OP_SEG_STAT, res, payload, len, &rp);

	(void)h;
	if (r == 0)
		stat_take(q->t, rp.length);
	else if (r == -ENOENT)
		/* a full member that never got the segment: no write in it was acknowledged
		 * (each needs every member of the record), so it answers "0 blocks" */
		stat_take(q->t, 0);
	else
		q->n->ready = false;
	call_end(q->t);
	free(q);
}

static void seal_replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
			 size_t len)
{
	struct treq *q = arg;
	struct peer_seg_reply rp;
	int r = reply_result(PEER_OP_SEG_SEAL, res, payload, len, &rp);

	(void)h;
	if (r < 0 && !q->t->finished)
		log_msg(LOG_WARN, LOG_TAG, "volume %s: node %s did not seal its copy: %s",
			q->t->name, q->n->id, err_str(-r));
	call_end(q->t);
	free(q);
}

static void seal_next(struct takeover *t);

/* The holders of segment cur: sealed at minlen (the record says so already). */
static void seal_send(struct takeover *t)
{
	struct layout_segment *s = &t->segs[t->cur];
	struct peer_seg_req rq = { .op = PEER_OP_SEG_SEAL, .sno = s->id.seq, .length = t->minlen };
	struct engine_held_info hi;

	s->state = LAYOUT_SEG_SEALED;
	s->length = (uint64_t)t->minlen * ENGINE_BLOCK_SIZE;
	call_begin(t); /* this function's, ended below */
	for (unsigned h = 0; h < s->nholders; h++) {
		struct tnode *n = node_find(t, s->holders[h]);

		if (n)
			(void)send_req(t, n, &rq, seal_replied);
	}
	if (engine_held_stat(t->o.eng, t->uid, s->id.seq, &hi) == 0 && !hi.sealed &&
	    hi.length >= t->minlen) {
		call_begin(t);
		if (engine_held_seal_async(t->o.eng, t->uid, s->id.seq, t->minlen, local_done,
					   t) < 0)
			call_end(t);
	}
	t->cur++;
	call_end(t);
}

static void seal_recorded(void *arg, int res, const char *msg)
{
	struct takeover *t = arg;

	if (!t->finished) {
		if (res == -ESTALE)
			fail(t, res, "volume %s: %s", msg);
		else if (res < 0)
			retry_later(t, msg);
		else
			seal_send(t);
	}
	unref(t);
}

/* Every answer about segment cur is in: record it sealed, or wait. */
static void seal_decide(struct takeover *t)
{
	struct layout_segment *s = &t->segs[t->cur];
	char why[160];

	if (t->answered == 0) {
		snprintf(why, sizeof(why), "no holder of open segment %08" PRIx32 " answered",
			 s->id.seq);
		retry_later(t, why);
		return;
	}
	log_msg(LOG_INFO, LOG_TAG, "volume %s: open segment %08" PRIx32 " sealed at %" PRIu32
		" blocks (%u of %u holders answered)", t->name, s->id.seq, t->minlen, t->answered,
		s->nholders);
	memset(&t->req, 0, sizeof(t->req));
	t->req.op = CLUSTER_VOL_SEG_SEAL;
	snprintf(t->req.vol.name, sizeof(t->req.vol.name), "%s", t->name);
	t->req.epoch = t->epoch;
	t->req.seg.id = s->id;
	t->req.seg.length = (uint64_t)t->minlen * ENGINE_BLOCK_SIZE;
	t->refs++;
	if (cluster_volume_async(t->o.cluster, &t->req, seal_recorded, t) < 0) {
		t->refs--;
		finish(t, -ENOMEM, "out of memory");
	}
}

/* Asks every holder of segment cur (an open one) for its length. */
static void seal_stat(struct takeover *t)
{
	struct layout_segment *s = &t->segs[t->cur];
	struct peer_seg_req rq = { .op = PEER_OP_SEG_STAT, .sno = s->id.seq };
	struct engine_held_info hi;

	t->minlen = UINT32_MAX;
	t->answered = 0;
	t->stating = true;
	call_begin(t); /* this function's, ended below */
	/* this node is a full member: its copy, or "0 blocks" */
	if (layout_segment_names(s, t->self))
		stat_take(t, engine_held_stat(t->o.eng, t->uid, s->id.seq, &hi) == 0 ? hi.length : 0);
	for (unsigned h = 0; h < s->nholders; h++) {
		struct tnode *n = node_find(t, s->holders[h]);

		if (n)
			(void)send_req(t, n, &rq, stat_replied);
	}
	call_end(t);
}

/* The next open segment, or the next step. */
static void seal_next(struct takeover *t)
{
	while (t->cur < t->nsegs && t->segs[t->cur].state != LAYOUT_SEG_OPEN)
		t->cur++;
	if (t->cur == t->nsegs) {
		t->cur = 0;
		t->step = ST_COPY;
		run_step(t);
		return;
	}
	seal_stat(t);
}

/* ---- 5. every live segment held here whole, or (striped, no replica) noted remote ---- */

static void copy_next(struct takeover *t);
static void copy_read(struct takeover *t);

/* Reads run (its count blocks of segment cur, from its fragments) into buf, each
 * block's want[] entry its result; done(t, why) at its end: a call of the step (copies
 * go one at a time). */
static void frags_read(struct takeover *t, struct fragread_run *run,
		       void (*done)(void *arg, const char *why))
{
	int r;

	for (uint32_t i = 0; i < run->count; i++) {
		t->want[i] = (struct seg_fetch_block){ .dst = t->buf + (size_t)i * ENGINE_BLOCK_SIZE,
						       .res = -EIO };
		t->wantp[i] = &t->want[i];
	}
	run->want = t->wantp;
	call_begin(t);
	r = t->o.rs ? fragread_start(t->o.rs, run, done, t, &t->fr) : -EOPNOTSUPP;
	if (r < 0) {
		t->pending--;
		t->refs--;
		fail(t, r, "volume %s: a striped segment cannot be read from its fragments: %s",
		     err_str(-r));
	}
}

static bool whole_wanted(const struct takeover *t, uint32_t sno)
{
	for (size_t i = 0; i < t->nwhole; i++)
		if (t->whole[i] == sno)
			return true;
	return false;
}

/* The first index of head_idx whose sno is not below sno (nheads: none). */
static size_t head_lower(const struct takeover *t, uint32_t sno)
{
	size_t lo = 0, hi = t->nheads;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (t->head_idx[mid].sno < sno)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Segment sno's header if it was read (this round or an earlier one), or NULL. */
static const uint8_t *head_known(const struct takeover *t, uint32_t sno)
{
	size_t i = head_lower(t, sno);

	return i < t->nheads && t->head_idx[i].sno == sno ? t->heads[t->head_idx[i].at].b
							  : NULL;
}

/* Segment cur, its header known: a remote entry to adopt. */
static void remote_add(struct takeover *t)
{
	const struct layout_segment *s = &t->segs[t->cur];
	struct engine_adopt_remote *rem = realloc(t->rem, (t->nrem + 1) * sizeof(*rem));

	if (!rem) {
		finish(t, -ENOMEM, "out of memory");
		return;
	}
	t->rem = rem;
	t->rem[t->nrem++] = (struct engine_adopt_remote){ .sno = s->id.seq, .length = t->len };
	t->cur++;
	copy_next(t);
}

/* Segment cur's header, read from its fragments into buf: kept (its sno not known
 * yet: remote_head is asked only then), and a remote entry. */
static void remote_have(struct takeover *t)
{
	uint32_t sno = t->segs[t->cur].id.seq;
	size_t at;

	if (ARRAY_GROW(t->heads, t->heads_cap, t->nheads, 16) < 0 ||
	    ARRAY_GROW(t->head_idx, t->head_idx_cap, t->nheads, 16) < 0) {
		finish(t, -ENOMEM, "out of memory");
		return;
	}
	memcpy(t->heads[t->nheads].b, t->buf, ENGINE_BLOCK_SIZE);
	at = head_lower(t, sno); /* (segments come by ascending number: mostly the end) */
	memmove(&t->head_idx[at + 1], &t->head_idx[at], (t->nheads - at) * sizeof(*t->head_idx));
	t->head_idx[at] = (struct head_ref){ .sno = sno, .at = (uint32_t)t->nheads };
	t->nheads++;
	remote_add(t);
}

static void head_read(void *arg, const char *why)
{
	struct takeover *t = arg;
	int res = t->want[0].res;

	t->fr = NULL;
	t->pending--; /* one call at a time: no step_next */
	if (!t->finished && res != 0) {
		char msg[320];

		snprintf(msg, sizeof(msg), "the header of segment %08" PRIx32 " cannot be read "
			 "from its fragments (%s)", t->segs[t->cur].id.seq, why);
		retry_later(t, msg);
	} else if (!t->finished) {
		remote_have(t);
	}
	unref(t);
}

/* Segment cur is striped, has no replica and no copy here: its block 0 (the segment
 * header, in data fragment 0) is all the adoption reads of it; its map comes from the
 * family checkpoint (docs/engine.md, "Adopting a family"). */
static void remote_head(struct takeover *t)
{
	struct layout_segment *s = &t->segs[t->cur];
	struct fragread_run run = { .uid = t->uid, .sno = s->id.seq, .epoch = t->epoch,
				    .st = &s->stripe, .seg_blocks = t->len, .first = 0,
				    .count = 1, .no_map_crcs = true };

	frags_read(t, &run, head_read);
}

static void copy_have(struct takeover *t)
{
	uint32_t *snos = realloc(t->snos, (t->nsnos + 1) * sizeof(*snos));

	if (!snos) {
		finish(t, -ENOMEM, "out of memory");
		return;
	}
	t->snos = snos;
	t->snos[t->nsnos++] = t->segs[t->cur].id.seq;
	t->cur++;
	copy_next(t);
}

static void copy_sealed(void *arg, int res)
{
	engine_step_end(arg, res, "volume %s: a copied segment does not seal: %s", copy_have);
}

static void copy_seal(struct takeover *t)
{
	t->refs++;
	if (engine_held_seal_async(t->o.eng, t->uid, t->segs[t->cur].id.seq, t->len, copy_sealed,
				   t) < 0) {
		t->refs--;
		fail(t, -EIO, "volume %s: a copied segment does not seal%s", "");
	}
}

static void copy_written(void *arg, int res)
{
	engine_step_end(arg, res, "volume %s: a copy is not written here: %s", copy_read);
}

static void copy_replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
			 size_t len)
{
	struct treq *q = arg;
	struct takeover *t = q->t;
	struct peer_seg_reply rp;
	int r = reply_result(PEER_OP_SEG_READ, res, payload, len, &rp);
	struct iovec iov;

	(void)h;
	free(q);
	t->pending--; /* copies go one call at a time: no step_next */
	if (t->finished) {
		unref(t);
		return;
	}
	if (r < 0 || rp.nblocks == 0) {
		/* that holder has no such copy (a former owner's, freed or kept shorter):
		 * the next one of the record may */
		if (++t->src < t->segs[t->cur].nholders)
			copy_read(t);
		else
			retry_later(t, "no holder answered a segment read");
		unref(t);
		return;
	}
	iov.iov_base = t->buf;
	iov.iov_len = (size_t)rp.nblocks * ENGINE_BLOCK_SIZE;
	memcpy(t->buf, rp.data, iov.iov_len);
	t->refs++;
	if (engine_held_write(t->o.eng, t->uid, t->segs[t->cur].id.seq, t->have, &iov, 1,
			      rp.nblocks, copy_written, t) < 0) {
		t->refs--;
		fail(t, -EIO, "volume %s: a copy is not written here%s", "");
	}
	t->have += rp.nblocks;
	unref(t);
}

/* A run of a striped segment read from its fragments: written here, or (some block
 * not read) everything again later. */
static void frags_copied(void *arg, const char *why)
{
	struct takeover *t = arg;
	struct iovec iov = { t->buf, (size_t)t->chunk * ENGINE_BLOCK_SIZE };
	bool bad = false;

	t->fr = NULL;
	t->pending--; /* copies go one call at a time: no step_next */
	for (uint32_t i = 0; i < t->chunk && !bad; i++)
		bad = t->want[i].res != 0;
	if (t->finished) {
		unref(t);
		return;
	}
	if (bad) {
		char msg[320];

		snprintf(msg, sizeof(msg), "segment %08" PRIx32 " cannot be read from its "
			 "fragments (%s)", t->segs[t->cur].id.seq, why);
		retry_later(t, msg);
		unref(t);
		return;
	}
	t->refs++;
	if (engine_held_write(t->o.eng, t->uid, t->segs[t->cur].id.seq, t->have, &iov, 1,
			      t->chunk, copy_written, t) < 0) {
		t->refs--;
		fail(t, -EIO, "volume %s: a copy is not written here%s", "");
	}
	t->have += t->chunk;
	unref(t);
}

/* The next run of segment cur (striped, its replicas gone) from its fragments. */
static void copy_read_frags(struct takeover *t)
{
	struct layout_segment *s = &t->segs[t->cur];
	struct fragread_run run = { .uid = t->uid, .sno = s->id.seq, .epoch = t->epoch,
				    .st = &s->stripe, .seg_blocks = t->len, .first = t->have,
				    .no_map_crcs = true };

	if (t->have == 0 || t->have + SEG_FETCH_MAX_BLOCKS >= t->len) /* (its first or last run) */
		log_msg(LOG_INFO, LOG_TAG, "volume %s: segment %08" PRIx32 " has no replica: "
			"copying %s from its %u+%u fragments", t->name, s->id.seq,
			t->have ? "the rest" : "it", s->stripe.k, s->stripe.m);
	t->chunk = t->len - t->have;
	if (t->chunk > SEG_FETCH_MAX_BLOCKS)
		t->chunk = SEG_FETCH_MAX_BLOCKS;
	run.count = t->chunk;
	frags_read(t, &run, frags_copied);
}

/* Reads the next piece of segment cur from a holder that answered (or, a stripe with
 * no replica, from its fragments), or seals it. */
static void copy_read(struct takeover *t)
{
	struct layout_segment *s = &t->segs[t->cur];
	uint32_t n = t->len - t->have;
	struct peer_seg_req rq = { .op = PEER_OP_SEG_READ, .sno = s->id.seq, .block = t->have };

	if (t->have >= t->len) {
		copy_seal(t);
		return;
	}
	if (s->stripe.k && s->nholders == 0) {
		copy_read_frags(t);
		return;
	}
	rq.nblocks = n > PEER_SEG_READ_MAX_BLOCKS ? PEER_SEG_READ_MAX_BLOCKS : n;
	for (; t->src < s->nholders; t->src++) {
		struct tnode *nd = node_find(t, s->holders[t->src]);

		if (nd && send_req(t, nd, &rq, copy_replied) == 0)
			return;
	}
	retry_later(t, "no holder of a segment to copy is reachable");
}

static void copy_opened(void *arg, int res)
{
	engine_step_end(arg, res, "volume %s: no copy can be made here: %s", copy_read);
}

static void copy_next(struct takeover *t)
{
	struct engine_held_info hi;
	struct layout_segment *s;

	while (t->cur < t->nsegs && t->segs[t->cur].length < ENGINE_BLOCK_SIZE)
		t->cur++; /* sealed with nothing in it: no acknowledged write, nothing to adopt */
	if (t->cur == t->nsegs) {
		t->step = ST_ADOPT;
		run_step(t);
		return;
	}
	s = &t->segs[t->cur];
	t->len = (uint32_t)(s->length / ENGINE_BLOCK_SIZE);
	t->src = 0;
	if (engine_held_stat(t->o.eng, t->uid, s->id.seq, &hi) == 0) {
		if (hi.sealed && hi.length == t->len) {
			copy_have(t);
			return;
		}
		if (hi.sealed) {
			fail(t, -EPROTO, "volume %s: a copy held here is sealed at another length "
			     "than its record%s", "");
			return;
		}
		t->have = hi.length < t->len ? hi.length : t->len;
		copy_read(t);
		return;
	}
	if (s->stripe.k && s->nholders == 0 && !whole_wanted(t, s->id.seq)) {
		if (head_known(t, s->id.seq))
			remote_add(t); /* read by an earlier round */
		else
			remote_head(t);
		return;
	}
	t->have = 0;
	t->refs++;
	if (engine_held_open_async(t->o.eng, t->uid, s->id.seq, (uint64_t)t->epoch, copy_opened,
				   t) < 0) {
		t->refs--;
		fail(t, -EIO, "volume %s: no copy can be opened here%s", "");
	}
}

/* ---- 6. adopt, 7. serve ---- */

/* The adoption needs the logs of some remote segments (above the family checkpoint it
 * found, or none found): they are copied here from their fragments, then it runs again. */
static void copy_whole_again(struct takeover *t)
{
	size_t n = 0;
	uint32_t *w;

	for (size_t i = 0; i < t->nrem; i++)
		n += t->rem[i].whole;
	w = realloc(t->whole, (t->nwhole + n + 1) * sizeof(*w));
	if (!w) {
		finish(t, -ENOMEM, "out of memory");
		return;
	}
	t->whole = w;
	for (size_t i = 0; i < t->nrem; i++)
		if (t->rem[i].whole)
			t->whole[t->nwhole++] = t->rem[i].sno;
	log_msg(LOG_INFO, LOG_TAG, "volume %s: the adoption needs the logs of %zu of its %zu "
		"segments with no replica: copying them from their fragments", t->name, n, t->nrem);
	t->step = ST_COPY;
	run_step(t);
}

static void adopted(void *arg, int res)
{
	struct takeover *t = arg;

	if (res == -EREMOTE && !t->finished && t->adopts <= t->nsegs) {
		copy_whole_again(t);
		unref(t);
		return;
	}
	engine_step_end(arg, res, "volume %s: its log cannot be adopted: %s", step_next);
}

static void adopt_start(struct takeover *t)
{
	int r;

	nodes_close(t); /* the copies are here: the holders are the replica sets' now */
	for (size_t i = 0; i < t->nrem; i++)
		t->rem[i].header = head_known(t, t->rem[i].sno);
	if (t->nrem)
		log_msg(LOG_INFO, LOG_TAG, "volume %s: adopting %zu segments held here and %zu "
			"striped ones with no replica as remote entries (their reads go to the "
			"fragments; adoption %u, %zu headers read from fragments so far)", t->name,
			t->nsnos, t->nrem, t->adopts + 1, t->nheads);
	t->adopts++;
	t->refs++;
	r = engine_family_adopt_remote_async(t->o.eng, t->uid, t->snos, t->nsnos, t->rem,
					     t->nrem, adopted, t);
	if (r < 0) {
		t->refs--;
		fail(t, r, "volume %s: its log cannot be adopted: %s", err_str(-r));
	}
}

static void numbered(void *arg, int res)
{
	engine_step_end(arg, res, "volume %s: its segment numbers cannot be reserved: %s",
			step_next);
}

/* The adopted log knows only the segments it holds; a record may name a later number
 * (sealed empty above: its owner died before its first write). The counter goes past
 * every recorded number, durably, before this node opens a segment of the family:
 * no number is drawn twice (docs/replication.md, "Segment numbers"). */
static void number_start(struct takeover *t)
{
	uint32_t next = 0;
	int r;

	for (size_t i = 0; i < t->nsegs; i++)
		if (t->segs[i].id.seq >= next)
			next = t->segs[i].id.seq == UINT32_MAX ? UINT32_MAX : t->segs[i].id.seq + 1;
	t->refs++;
	r = engine_family_reserve_sno_async(t->o.eng, t->uid, next, next, numbered, t);
	if (r < 0) {
		t->refs--;
		fail(t, r, "volume %s: its segment numbers cannot be reserved: %s", err_str(-r));
	}
}

static void serve_start(struct takeover *t)
{
	struct cluster_volume v;
	int r = cluster_volume_get(t->o.cluster, t->name, &v);

	if (r == 0 && t->o.rs)
		r = replica_family_set(t->o.rs, t->uid, t->name, t->epoch, v.rec.replicas,
				       v.rec.min_replicas);
	if (r < 0) {
		fail(t, r, "volume %s: its copies cannot start: %s", err_str(-r));
		return;
	}
	t->step = ST_DONE;
	finish(t, 0, "taken over");
}

/* ---- the chain ---- */

static void run_step(struct takeover *t)
{
	uint64_t now = loop_now_ms();

	if (t->step != ST_LIST || t->step_ms != t->t0_ms)
		log_msg(LOG_INFO, LOG_TAG, "volume %s: %s (+%" PRIu64 " ms, %" PRIu64 " ms since "
			"the claim)", t->name, step_names[t->step], now - t->step_ms, now - t->t0_ms);
	t->step_ms = now;
	t->pending = 0;
	switch (t->step) {
	case ST_LIST: list_start(t); break;
	case ST_CONNECT: connect_start(t); break;
	case ST_RAISE: raise_start(t); break;
	case ST_SEAL: t->cur = 0; seal_next(t); break;
	case ST_COPY: t->cur = 0; t->nsnos = 0; t->nrem = 0; copy_next(t); break;
	case ST_ADOPT: adopt_start(t); break;
	case ST_NUMBER: number_start(t); break;
	case ST_SERVE: serve_start(t); break;
	case ST_DONE: break;
	}
}

/* The calls of the current step are all in. */
static void step_next(struct takeover *t)
{
	switch (t->step) {
	case ST_SEAL:
		if (t->stating) {
			t->stating = false;
			seal_decide(t); /* the stats are in */
		} else
			seal_next(t);   /* a seal is sent */
		return;
	case ST_COPY:
		return; /* copies go one call at a time: their callbacks drive them */
	default:
		t->step++;
		run_step(t);
	}
}

int takeover_start(const struct takeover_opts *o, const char *name, int64_t epoch,
		   takeover_cb cb, void *arg, struct takeover **out)
{
	struct takeover *t;

	if (!o || !o->loop || !o->eng || !o->cluster || !o->ep || !o->self_id || !name ||
	    !cb || epoch < 1 || !layout_id_valid(name))
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->buf = malloc((size_t)PEER_SEG_READ_MAX_BLOCKS * ENGINE_BLOCK_SIZE);
	if (!t->buf) {
		free(t);
		return -ENOMEM;
	}
	t->o = *o;
	if (!t->o.peer_timeout_ms)
		t->o.peer_timeout_ms = REPLICA_DEFAULT_PEER_TIMEOUT_MS;
	snprintf(t->self, sizeof(t->self), "%s", o->self_id);
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->epoch = epoch;
	t->cb = cb;
	t->arg = arg;
	t->refs = 1;
	t->t0_ms = t->step_ms = loop_now_ms();
	log_msg(LOG_INFO, LOG_TAG, "volume %s: taking it over at epoch %lld", name,
		(long long)epoch);
	*out = t;
	run_step(t);
	return 0;
}

void takeover_step(const struct takeover *t, char *buf, size_t len)
{
	if (t->step == ST_SEAL || t->step == ST_COPY)
		snprintf(buf, len, "%s (%zu/%zu)", step_names[t->step], t->cur, t->nsegs);
	else
		snprintf(buf, len, "%s", step_names[t->step]);
}

void takeover_cancel(struct takeover *t)
{
	finish(t, -ECANCELED, "the takeover was cancelled: the node is stopping");
}
