/* replication/replica.c — the owner side of replicated volumes (replica.h).
 *
 * Three kinds of object, all on the loop's thread:
 *   rnode   a node of the map that may hold copies: its peer connection (reconnected
 *           with backoff), whether it is usable for placement, whether it has
 *           acknowledged appends since its last flush
 *   rseg    one mirrored segment (by the engine's slot until deleted): its family,
 *           its holders, its state (placing -> recording -> opening -> open ->
 *           sealing -> sealed; deleting), its appends
 *   rop     one append: the engine's callback, which holders acknowledged it
 * An append completes when every current holder of its segment acknowledged it, no
 * record of a drop is pending, and the segment has min_replicas copies. A holder that
 * fails is dropped from the segment (seg_drop), which reconsiders every waiting
 * append once the reduced set is recorded, and asks the engine to seal the segment
 * now (seg_reseal_want): the next write opens one placed on healthy nodes.
 */
#include "replication/replica.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "cluster/placement.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/worker.h"
#include "engine/engine.h"
#include "engine/segment.h"
#include "replication/catchup.h"
#include "replication/peer.h"
#include "replication/peer_proto.h"
#include "replication/baseread.h"
#include "replication/dropown.h"
#include "replication/readaround.h"
#include "replication/reconcile.h"
#include "replication/replica_internal.h"
#include "replication/scrub.h"

/* ---- wire helpers (payload layouts: peer_proto.h) ---- */

/* The reply's result: the transport's error, or the holder's. */
int replica_reply_result(uint8_t op, int res, const void *payload, size_t len)
{
	struct peer_seg_reply r;

	if (res < 0)
		return res;
	if (peer_seg_reply_decode(op, payload, len, &r) < 0)
		return -EPROTO;
	return r.result;
}

static void seg_id_text(const struct rseg *s, char *buf, size_t len)
{
	snprintf(buf, len, "%s segment %016" PRIx64 ".%08" PRIx32, s->fam->name, s->fam->uid,
		 s->sno);
}

/* ---- families ---- */

struct family *replica_family_find(const struct replicas *rs, uint64_t uid)
{
	for (size_t i = 0; i < rs->nfams; i++)
		if (rs->fams[i]->uid == uid)
			return rs->fams[i];
	return NULL;
}

bool replica_family_ec(const struct replicas *rs, const struct family *f, unsigned *k,
		       unsigned *m)
{
	struct cluster_volume v;

	if (!f || cluster_volume_get(rs->cluster, f->name, &v) < 0 || !v.rec.ec_k)
		return false;
	*k = v.rec.ec_k;
	*m = v.rec.ec_m;
	return true;
}

int replica_family_set(struct replicas *rs, uint64_t uid, const char *name, int64_t epoch,
		       unsigned replicas, unsigned min_replicas)
{
	struct family *f = replica_family_find(rs, uid);
	bool moved;
	int r;

	if (!uid || replicas == 0 || replicas > LAYOUT_MAX_REPLICAS || min_replicas > replicas ||
	    strlen(name) > LAYOUT_ID_MAX)
		return -EINVAL;
	if (!f) {
		struct family **v = realloc(rs->fams, (rs->nfams + 1) * sizeof(*v));

		if (!v)
			return -ENOMEM;
		rs->fams = v;
		f = calloc(1, sizeof(*f));
		if (!f)
			return -ENOMEM;
		f->uid = uid;
		f->rs = rs;
		rs->fams[rs->nfams++] = f;
	}
	moved = f->epoch != epoch || f->replicas != replicas || f->stale;
	if (f->epoch != epoch || f->replicas != replicas)
		log_msg(LOG_INFO, LOG_TAG, "volume %s: %u copies of each segment (at least %u), "
			"epoch %lld", name, replicas, min_replicas, (long long)epoch);
	snprintf(f->name, sizeof(f->name), "%s", name);
	/* a clone across owners: its root reads through the base its record names, also
	 * after a takeover or a claim (the engine keeps no base of its own) */
	if ((r = baseread_family_base(rs, uid, name)) < 0 && r != -ENOENT)
		log_msg(LOG_ERROR, LOG_TAG, "volume %s: its base cannot be set: %s", name,
			err_str(-r));
	f->epoch = epoch;
	f->replicas = replicas;
	f->min_replicas = min_replicas ? min_replicas : 1;
	f->stale = false;
	replica_reconcile_start(rs, f); /* a start-up, an adopt, a claim again: the records
					 may lag */
	if (moved) { /* a volume new here (or back): its records are scanned soon */
		catchup_kick(rs->catchup);
		encoder_kick(rs->encoder);
	}
	return 0;
}

/* ---- segments ---- */

static struct rseg *seg_at(const struct replicas *rs, uint32_t slot)
{
	return slot < rs->nslots ? rs->by_slot[slot] : NULL;
}

static unsigned seg_copies(const struct rseg *s)
{
	return 1 + s->nholders;
}

/* ---- every rseg: a list to walk, a hash by (uid, sno) to find one ---- */

#define SEG_HASH_MIN 256u

static uint64_t seg_uid(const struct rseg *s)
{
	return s->fam ? s->fam->uid : 0;
}

static size_t seg_bucket(uint64_t uid, uint32_t sno, size_t cap)
{
	uint64_t k = uid ^ ((uint64_t)sno * 0x9e3779b97f4a7c15ull);

	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	return (size_t)k & (cap - 1);
}

/* More buckets once there is more than one rseg per bucket (every rseg of rs->all is
 * hashed again): true if it grew. Without memory the chains just grow longer. */
static bool seg_hash_grow(struct replicas *rs)
{
	size_t cap = rs->seg_hash_cap * 2;
	struct rseg **v, *last = NULL;

	if (rs->nsegs <= rs->seg_hash_cap)
		return false;
	v = calloc(cap, sizeof(*v));
	if (!v)
		return false;
	/* oldest first, so that each chain keeps the newest first, as rs->all does
	 * (replica_seg_find answers the newest of an id known twice) */
	for (struct rseg *s = rs->all; s; s = s->next_all)
		if (!s->next_all)
			last = s;
	for (struct rseg *s = last; s; s = s->prev_all) {
		size_t b = seg_bucket(seg_uid(s), s->sno, cap);

		s->next_hash = v[b];
		v[b] = s;
	}
	free(rs->seg_hash);
	rs->seg_hash = v;
	rs->seg_hash_cap = cap;
	return true;
}

/* s (fam and sno set) joins rs->all and the hash. */
static void seg_link(struct replicas *rs, struct rseg *s)
{
	size_t b;

	s->prev_all = NULL;
	s->next_all = rs->all;
	if (rs->all)
		rs->all->prev_all = s;
	rs->all = s;
	rs->nsegs++;
	if (seg_hash_grow(rs))
		return; /* hashed with the rest */
	b = seg_bucket(seg_uid(s), s->sno, rs->seg_hash_cap);
	s->next_hash = rs->seg_hash[b];
	rs->seg_hash[b] = s;
}

static void seg_unlink(struct replicas *rs, struct rseg *s)
{
	if (s->prev_all)
		s->prev_all->next_all = s->next_all;
	else
		rs->all = s->next_all;
	if (s->next_all)
		s->next_all->prev_all = s->prev_all;
	rs->nsegs--;
	for (struct rseg **p = &rs->seg_hash[seg_bucket(seg_uid(s), s->sno, rs->seg_hash_cap)];
	     *p; p = &(*p)->next_hash)
		if (*p == s) {
			*p = s->next_hash;
			break;
		}
}

static void seg_unref(struct rseg *s)
{
	struct replicas *rs = s->rs;

	if (--s->refs)
		return;
	seg_unlink(rs, s);
	loop_timer_cancel(s->retry);
	free(s->stripe);
	free(s);
}

void replica_seg_hold(struct rseg *s)
{
	s->refs++;
}

void replica_seg_release(struct rseg *s)
{
	seg_unref(s);
}

static void seg_step(struct rseg *s);

/* fn(s, arg) for every rseg. fn may end s (a step that deletes a segment never placed
 * drops its last ref) or others: s is held across the call, and its successor read
 * after it. */
static void segs_each(struct replicas *rs, void (*fn)(struct rseg *s, void *arg), void *arg)
{
	struct rseg *s = rs->all, *next;

	while (s) {
		replica_seg_hold(s);
		fn(s, arg);
		next = s->next_all;
		seg_unref(s);
		s = next;
	}
}

static void seg_retry_fire(void *arg)
{
	struct rseg *s = arg;

	s->retry = NULL;
	seg_step(s);
}

static void seg_retry_in(struct rseg *s, unsigned ms)
{
	if (!s->retry && !s->rs->closing &&
	    loop_timer_add(s->rs->loop, ms, seg_retry_fire, s, &s->retry) < 0)
		s->retry = NULL;
}

static void seg_retry_later(struct rseg *s)
{
	seg_retry_in(s, RETRY_MS);
}

/* A delete or a seal that failed: again after a delay that doubles up to
 * BACKOFF_MAX_MS (etcd or a holder may be away for long; one that never happens
 * leaks a copy or leaves one open). */
static void seg_retry_backoff(struct rseg *s)
{
	s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : RETRY_MS;
	if (s->backoff_ms > BACKOFF_MAX_MS)
		s->backoff_ms = BACKOFF_MAX_MS;
	seg_retry_in(s, s->backoff_ms);
}

/* A request about s to node n: the one struct every reply callback gets. */
struct rreq {
	struct rseg *seg;
	struct rop *op;
	struct rnode *node;
};

/* Sends r (its head encoded here) about s to node n, data after it; op: the append it
 * carries, or NULL. 0: cb gets a struct rreq (free it), s is held until then; or
 * -errno (-ENOTCONN, -ENOMEM, peer_request's) and cb never runs. */
static int send_req(struct rseg *s, struct rop *op, struct rnode *n, const struct peer_seg_req *r,
		    const struct iovec *data, int datacnt, peer_reply_cb cb)
{
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct peer_msg m = { .op = r->op, .volume_id = s->fam->uid,
			      .epoch = (uint64_t)s->fam->epoch, .head = head,
			      .data = data, .datacnt = datacnt };
	struct rreq *q;
	int res;

	if (!replica_node_live(n))
		return -ENOTCONN;
	q = malloc(sizeof(*q));
	if (!q)
		return -ENOMEM;
	*q = (struct rreq){ .seg = s, .op = op, .node = n };
	m.head_len = peer_seg_req_encode(r, head);
	s->refs++;
	res = peer_request(n->conn, &m, s->rs->timeout_ms, cb, q);
	if (res < 0) {
		s->refs--;
		free(q);
	}
	return res;
}

/* Why a holder is dropped when send_req() to it failed with r. */
static const char *send_failed_why(int r)
{
	return r == -ENOTCONN ? "not connected" : err_str(-r);
}

/* ---- appends: completion ---- */

static bool holder_of(const struct rseg *s, const struct rnode *n)
{
	for (unsigned i = 0; i < s->nholders; i++)
		if (s->holders[i] == n)
			return true;
	return false;
}

static bool op_acked_by(const struct rop *op, const struct rnode *n)
{
	for (unsigned i = 0; i < op->nsent; i++)
		if (op->sent[i] == n)
			return op->acked[i];
	return false;
}

static void op_unref(struct rop *op)
{
	if (--op->refs == 0)
		free(op);
}

/* s's completions on the loop's next turn (kick_run): s is held until then. */
static void seg_kick_later(struct rseg *s)
{
	struct replicas *rs = s->rs;

	if (!s->kicked) {
		s->kicked = true;
		s->refs++;
		s->next_kick = rs->kicked;
		rs->kicked = s;
	}
	loop_task_schedule(rs->kick);
}

static bool seg_appends_answered(const struct rseg *s);

/* Sealed below min_replicas short of its length: the engine holds the segment's last
 * batches behind the ones waiting for copies, and catch-up copies only a whole
 * segment. Once every append given is on every holder left, the engine is told its
 * last batches may go (engine_family_waits_copies); told otherwise once one is not. */
static void seg_waits_copies_tell(struct rseg *s)
{
	bool waits = s->state == RS_OPEN && s->seal_wanted && s->appended < s->seal_len &&
		     seg_appends_answered(s);

	if (waits == s->waits_told)
		return;
	/* told before the call: the engine submits from inside it, and that append
	 * (mirror_append) must find the word given, to take it back */
	s->waits_told = waits;
	if (engine_family_waits_copies(s->rs->eng, s->fam->uid, s->sno, waits) < 0) {
		s->waits_told = !waits;
		return;
	}
	if (waits) {
		char id[128];

		seg_id_text(s, id, sizeof(id));
		LOG_RATELIMITED(LOG_INFO, LOG_TAG, "volume %s: its writes up to block %u go out "
				"now, so that catch-up can copy it whole", id, s->seal_len);
	}
}

/* Completes, oldest first, every append of s that may: each current holder has it, no
 * drop is waiting for its record, and s has min_replicas copies. */
static void seg_complete(struct rseg *s)
{
	struct rop *ready = NULL, **tail = &ready;

	if (s->rs->in_hook) {
		/* never call the engine back from inside its own call (a batch it is
		 * submitting could retire under it): on the loop's next turn */
		seg_kick_later(s);
		return;
	}
	if (s->record_busy || s->record_again || s->state < RS_OPEN)
		return; /* nothing is sent before the segment is open on its holders */
	if (s->state != RS_DEAD && seg_copies(s) < s->fam->min_replicas) {
		if (!s->warned_min) {
			char id[128];

			seg_id_text(s, id, sizeof(id));
			log_msg(LOG_WARN, LOG_TAG, "volume %s: %u copies, below min_replicas %u: "
				"its writes wait", id, seg_copies(s), s->fam->min_replicas);
			s->warned_min = true;
		}
		seg_waits_copies_tell(s);
		seg_step(s); /* its seal may be due: catch-up then makes the copies */
		return;
	}
	for (struct rop **p = &s->ops; *p;) {
		struct rop *op = *p;
		/* a sealed segment with appends still here was sealed below min_replicas
		 * (seg_seal_due): its holders have all of it, the survivors by their
		 * acknowledgements, the others by catch-up's whole copies */
		bool all = op->res < 0 || s->state == RS_DEAD || s->state == RS_SEALED;

		if (!all) {
			all = true;
			for (unsigned i = 0; i < s->nholders && all; i++)
				all = op_acked_by(op, s->holders[i]);
		}
		if (!all) {
			p = &op->next;
			continue;
		}
		*p = op->next;
		op->next = NULL;
		*tail = op;
		tail = &op->next;
	}
	s->refs++; /* a callback may delete the segment */
	while (ready) {
		struct rop *op = ready;

		ready = op->next;
		op->done = true;
		s->inflight--;
		op->cb(op->arg, s->state == RS_DEAD && op->res == 0 ? -ESTALE : op->res);
		op_unref(op);
	}
	seg_step(s); /* a seal may be due now */
	seg_unref(s);
}

/* ---- holders: the record of a drop ---- */

/* One etcd call about a segment. The cluster may answer after replica_destroy (its
 * stop completes what is queued): the call is then an orphan (seg NULL), freed by its
 * callback, which touches nothing else. */
struct seg_call {
	struct rseg *seg;
	struct cluster_vol_req req;
	struct seg_call *next; /* in rs->calls */
};

/* The callback's side: c leaves rs->calls and is freed; its segment, or NULL for an
 * orphan (the module is gone: do nothing). */
static struct rseg *call_end(struct seg_call *c)
{
	struct rseg *s = c->seg;

	if (s)
		for (struct seg_call **p = &s->rs->calls; *p; p = &(*p)->next)
			if (*p == c) {
				*p = c->next;
				break;
			}
	free(c);
	return s;
}

void replica_fill_holders(const struct rseg *s, struct layout_segment *seg)
{
	seg->id.family = s->fam->uid;
	seg->id.seq = s->sno;
	seg->nholders = 0;
	snprintf(seg->holders[seg->nholders++], LAYOUT_ID_MAX + 1, "%s", s->rs->self);
	for (unsigned i = 0; i < s->nholders; i++)
		snprintf(seg->holders[seg->nholders++], LAYOUT_ID_MAX + 1, "%s", s->holders[i]->id);
}

/* A call about s (its id, holders, epoch filled in): NULL without memory. */
static struct seg_call *seg_call_new(struct rseg *s, enum cluster_vol_op op)
{
	struct seg_call *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->seg = s;
	c->req.op = op;
	snprintf(c->req.vol.name, sizeof(c->req.vol.name), "%s", s->fam->name);
	c->req.epoch = s->fam->epoch;
	replica_fill_holders(s, &c->req.seg);
	return c;
}

/* Sends c (holding a ref of its segment until cb): 0, or <0 (c freed, cb never runs). */
static int seg_call_send(struct seg_call *c, cluster_cb cb)
{
	struct rseg *s = c->seg;
	int r;

	s->refs++;
	r = cluster_volume_async(s->rs->cluster, &c->req, cb, c);
	if (r < 0) {
		s->refs--;
		free(c);
		return r;
	}
	c->next = s->rs->calls;
	s->rs->calls = c;
	return 0;
}

static int seg_call(struct rseg *s, enum cluster_vol_op op, cluster_cb cb)
{
	struct seg_call *c = seg_call_new(s, op);

	if (!c)
		return -ENOMEM;
	if (op == CLUSTER_VOL_SEG_SEAL)
		c->req.seg.length = (uint64_t)s->seal_len * ENGINE_BLOCK_SIZE;
	return seg_call_send(c, cb);
}

/* etcd said this node is not the family's owner at its epoch: nothing of it can be
 * copied any more. Its appends fail; it stays so until a claim sets a new epoch. */
static void family_stale(struct rseg *s, const char *msg)
{
	char id[128];

	seg_id_text(s, id, sizeof(id));
	log_msg(LOG_ERROR, LOG_TAG, "volume %s: %s: its writes fail", id, msg);
	s->fam->stale = true;
	s->state = RS_DEAD;
	s->record_busy = s->record_again = false;
}

static void record_holders(struct rseg *s);

static void holders_recorded(void *arg, int res, const char *msg)
{
	struct rseg *s = call_end(arg);

	if (!s)
		return;
	s->rs->records_busy--;
	s->record_busy = false;
	if (res == -ESTALE) {
		family_stale(s, msg);
	} else if (res < 0 && s->state >= RS_OPENING && s->state <= RS_SEALING) {
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "volume %s: the reduced holder set is not "
				"recorded (%s): trying again", s->fam->name, msg);
		s->record_again = true;
	} /* else the open record failed too: the segment is placed again from scratch */
	if (!s->rs->closing) {
		if (s->record_again)
			record_holders(s);
		seg_complete(s);
	}
	replica_flushes_recheck(s->rs);
	seg_unref(s);
}

static void record_holders(struct rseg *s)
{
	int r;

	if (s->record_busy) {
		s->record_again = true;
		return;
	}
	s->record_again = false;
	s->record_busy = true;
	s->rs->records_busy++;
	r = seg_call(s, CLUSTER_VOL_SEG_HOLDERS, holders_recorded);
	if (r < 0) {
		s->rs->records_busy--;
		s->record_busy = false;
		s->record_again = true;
		seg_retry_later(s);
	}
}

/* A holder of s failed: s is to end now, at the engine's write pointer, so that the
 * next batch goes to a fresh segment placed on the nodes that are healthy then, with R
 * copies when the map has them, instead of going on in s with fewer (catch-up brings s
 * back to R once it is sealed). The engine is asked from kick_run, never from inside
 * its own call. Once: a segment sealed or being sealed already is left alone. */
static void ahead_skipped(void *arg, int res)
{
	(void)arg;
	if (res < 0)
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "a segment number skipped is not recorded "
				"durably (%s): the reservation ahead still covers it",
				err_str(-res));
}

/* An ahead segment (no write yet) lost holder n: kept, it would become the family's
 * next segment with fewer copies than a fresh placement could give. Its number is
 * skipped instead (the counter passes it at once; the reservation ahead made it
 * durable already: numbers.c), and it is sealed empty and deleted, so that the
 * engine's next segment is placed afresh on the nodes that are healthy then. */
static void seg_ahead_abandon(struct rseg *s, const struct rnode *n)
{
	char id[128];

	seg_id_text(s, id, sizeof(id));
	log_msg(LOG_INFO, LOG_TAG, "volume %s: opened ahead, lost holder node %s before any "
		"write: skipping it, the next segment is placed afresh", id, n->id);
	s->ahead = false;
	if (engine_family_reserve_sno_async(s->rs->eng, s->fam->uid, s->sno + 1, 0,
					    ahead_skipped, NULL) < 0)
		ahead_skipped(NULL, -ENOMEM);
	s->seal_wanted = true;
	s->seal_len = 0;
	s->delete_wanted = true; /* its own ref, never a slot's, goes with it */
	seg_retry_later(s);
}

static void seg_reseal_want(struct rseg *s, const struct rnode *n, const char *why)
{
	if (s->ahead && !s->ops && !s->appended && s->fam && s->state >= RS_RECORDING) {
		seg_ahead_abandon(s, n);
		return;
	}
	if (s->reseal || s->seal_wanted || s->state < RS_RECORDING || s->state > RS_OPEN)
		return;
	s->reseal = true;
	snprintf(s->reseal_why, sizeof(s->reseal_why), "holder %s failed (%s)", n->id, why);
	seg_kick_later(s);
}

/* kick_run's side of seg_reseal_want: the engine seals s (its sealed hook,
 * mirror_sealed, logs it). ENOENT: the engine sealed it meanwhile (it was full). */
static void seg_reseal_run(struct rseg *s)
{
	int r;

	if (!s->reseal || s->reseal_asked || s->seal_wanted || s->rs->closing)
		return;
	s->reseal_asked = true;
	r = engine_family_seal_open(s->rs->eng, s->fam->uid, s->sno);
	if (r < 0 && r != -ENOENT) {
		char id[128];

		seg_id_text(s, id, sizeof(id));
		log_msg(LOG_WARN, LOG_TAG, "volume %s: not sealed after a failure (%s): it goes on "
			"with %u copies", id, err_str(-r), seg_copies(s));
	}
}

/* Drops n from s's holders: logged, recorded in etcd before a write n lacks is
 * acknowledged. */
static void seg_drop(struct rseg *s, struct rnode *n, const char *why)
{
	char id[128];
	unsigned i;

	for (i = 0; i < s->nholders && s->holders[i] != n; i++)
		;
	if (i == s->nholders)
		return;
	s->holders[i] = s->holders[--s->nholders];
	seg_id_text(s, id, sizeof(id));
	log_msg(LOG_WARN, LOG_TAG, "volume %s: dropping holder node %s: %s (%u copies left)", id,
		n->id, why, seg_copies(s));
	/* recording: the open record in flight names n; this one follows it (the
	 * cluster runs its calls in order) */
	if (s->state >= RS_RECORDING && s->state <= RS_SEALING)
		record_holders(s);
	seg_reseal_want(s, n, why);
	seg_complete(s);
}

struct node_failed {
	struct rnode *n;
	const char *why;
};

static void node_failed_seg(struct rseg *s, void *arg)
{
	struct node_failed *nf = arg;

	if (s->state <= RS_OPEN && holder_of(s, nf->n))
		seg_drop(s, nf->n, nf->why);
}

/* n failed: it leaves every segment still written that it holds. */
void replica_node_failed(struct rnode *n, const char *why)
{
	struct replicas *rs = n->rs;

	struct node_failed nf = { n, why };

	n->dirty = false;
	segs_each(rs, node_failed_seg, &nf);
	catchup_kick(rs->catchup);
}

/* (uid, sno) sealed, as this process placed it, or NULL. */
static struct rseg *sealed_seg(struct replicas *rs, uint64_t uid, uint32_t sno)
{
	for (struct rseg *s = replica_seg_chain(rs, uid, sno); s; s = s->next_hash)
		if (s->fam->uid == uid && s->sno == sno && s->state == RS_SEALED)
			return s;
	return NULL;
}

void replica_seg_holder_added(struct replicas *rs, uint64_t uid, uint32_t sno, struct rnode *n)
{
	struct rseg *s = sealed_seg(rs, uid, sno);

	/* also without appends waiting: reads around the owner's copy (readaround.c)
	 * ask the live holder set, and a rebuilt copy is one of it */
	if (!s || holder_of(s, n) || s->nholders == MAX_REMOTE)
		return;
	s->holders[s->nholders++] = n;
	if (!s->ops)
		return;
	n->dirty = true; /* a later flush asks it too (its seal flushed already) */
	seg_complete(s);
}

void replica_seg_holder_gone(struct replicas *rs, uint64_t uid, uint32_t sno, const char *id)
{
	for (struct rseg *s = replica_seg_chain(rs, uid, sno); s; s = s->next_hash) {
		if (s->fam->uid != uid || s->sno != sno || s->state != RS_SEALED)
			continue;
		for (unsigned i = 0; i < s->nholders; i++)
			if (strcmp(s->holders[i]->id, id) == 0) {
				s->holders[i] = s->holders[--s->nholders];
				break;
			}
	}
}

/* ---- appends: sending ---- */

static void append_replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
			   size_t len)
{
	struct rreq *q = arg;
	struct rseg *s = q->seg;
	struct rop *op = q->op;
	struct rnode *n = q->node;
	int r = replica_reply_result(PEER_OP_SEG_APPEND, res, payload, len);

	(void)h;
	free(q);
	s->rs->append_replies--;
	if (!s->rs->closing) {
		if (r < 0) {
			char why[128];

			snprintf(why, sizeof(why), "append at block %u: %s", op->block, err_str(-r));
			seg_drop(s, n, why);
		} else {
			for (unsigned i = 0; i < op->nsent; i++)
				if (op->sent[i] == n)
					op->acked[i] = true;
			n->dirty = true;
			if (!op->done)
				seg_complete(s);
		}
	}
	op_unref(op);
	seg_unref(s);
}

static void op_send(struct rseg *s, struct rop *op)
{
	/* no FUA: the engine's flush makes the holders durable (SEG_FLUSH) */
	struct peer_seg_req rq = { .op = PEER_OP_SEG_APPEND, .sno = s->sno, .block = op->block,
				   .nblocks = op->nblocks, .data_crc = op->crc };

	if (s->rs->test_dying)
		return; /* replica_numbers_test_crash: the holders' copies stop where they are */
	for (unsigned i = 0; i < s->nholders; i++) {
		struct rnode *n = s->holders[i];
		int r = send_req(s, op, n, &rq, &op->iov, 1, append_replied);

		op->sent[op->nsent++] = n;
		if (r == 0) {
			op->refs++;
			s->rs->append_replies++;
			continue;
		}
		seg_drop(s, n, send_failed_why(r));
		i--; /* seg_drop moved another holder into slot i */
	}
}

static void seg_open_ahead(const struct rseg *cur);

/* s is open on its holders: its queued appends go, and the family's next segment is
 * opened ahead of need. */
static void seg_send_queued(struct rseg *s)
{
	if (!s->ahead && !s->delete_wanted) /* (not one skipped: seg_ahead_abandon) */
		seg_open_ahead(s);
	for (struct rop *op = s->ops; op; op = op->next)
		if (!op->nsent && op->res == 0)
			op_send(s, op);
	seg_complete(s);
}

static int mirror_append(void *ctx, uint32_t slot, uint32_t block, const struct iovec *iov,
			 int iovcnt, uint32_t nblocks, bool fua, seg_cb cb, void *arg)
{
	struct replicas *rs = ctx;
	struct rseg *s = seg_at(rs, slot);
	struct rop *op, **p;

	(void)fua;
	if (!s || iovcnt != 1)
		return -EINVAL;
	op = calloc(1, sizeof(*op));
	if (!op)
		return -ENOMEM;
	*op = (struct rop){ .block = block, .nblocks = nblocks, .iov = iov[0],
			    .crc = crc32c(iov[0].iov_base, iov[0].iov_len), .cb = cb, .arg = arg,
			    .refs = 1 };
	for (p = &s->ops; *p; p = &(*p)->next)
		;
	*p = op;
	s->inflight++;
	if (s->waits_told && s->nholders) { /* not on the holders left yet: one at a time */
		s->waits_told = false;
		engine_family_waits_copies(rs->eng, s->fam->uid, s->sno, false);
	}
	if (block + nblocks > s->appended)
		s->appended = block + nblocks;
	rs->in_hook = true;
	if (s->state == RS_DEAD)
		op->res = -ESTALE;
	else if (s->state == RS_OPEN)
		op_send(s, op);
	else
		seg_step(s); /* the first append places the segment */
	seg_complete(s); /* deferred: see there */
	rs->in_hook = false;
	return 0;
}

/* ---- open: placement, the record, SEG_OPEN ---- */

static void open_replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
			 size_t len)
{
	struct rreq *q = arg;
	struct rseg *s = q->seg;
	struct rnode *n = q->node;
	int r = replica_reply_result(PEER_OP_SEG_OPEN, res, payload, len);

	(void)h;
	free(q);
	if (!s->rs->closing) {
		if (r == -EINVAL)
			replica_node_bad_size(n);
		if (r < 0) {
			char why[128];

			snprintf(why, sizeof(why), "open: %s", err_str(-r));
			seg_drop(s, n, why);
		}
		if (--s->opening == 0 && s->state == RS_OPENING) {
			s->state = RS_OPEN;
			seg_send_queued(s);
		}
	}
	seg_unref(s);
}

static void seg_send_open(struct rseg *s)
{
	struct peer_seg_req rq = { .op = PEER_OP_SEG_OPEN, .sno = s->sno,
				   .segment_blocks = s->rs->seg_blocks };

	s->state = RS_OPENING;
	s->opening = 1; /* this function's, so that a drop cannot finish the open early */
	for (unsigned i = 0; i < s->nholders; i++) {
		struct rnode *n = s->holders[i];
		int r = send_req(s, NULL, n, &rq, NULL, 0, open_replied);

		if (r == 0) {
			s->opening++;
			continue;
		}
		seg_drop(s, n, send_failed_why(r));
		i--; /* seg_drop moved another holder into slot i */
	}
	if (--s->opening == 0) {
		s->state = RS_OPEN;
		seg_send_queued(s);
	}
}

static void open_recorded(void *arg, int res, const char *msg)
{
	struct rseg *s = call_end(arg);

	if (!s)
		return;
	if (!s->rs->closing && s->state == RS_RECORDING) {
		if (res == -ESTALE) {
			family_stale(s, msg);
			seg_complete(s);
		} else if (res < 0 && res != -EEXIST) {
			/* EEXIST: a retry of ours that etcd did take */
			LOG_RATELIMITED(LOG_WARN, LOG_TAG, "volume %s: a segment's open record is "
					"not written (%s): its writes wait", s->fam->name, msg);
			s->state = RS_PLACING;
			seg_retry_later(s);
		} else {
			replica_numbers_test_crash(s);
			seg_send_open(s);
		}
	}
	seg_unref(s);
}

/* ---- seal and delete ---- */

/* A holder's answer to SEG_SEAL that no retry changes: it has no such copy (ENOENT),
 * less of it than the seal's length (ERANGE), a seal at another length (EROFS), a
 * newer epoch (ESTALE), or it does not understand us. */
static bool seal_refused(int r)
{
	return r == -ENOENT || r == -ERANGE || r == -EROFS || r == -ESTALE || r == -EINVAL ||
	       r == -EPROTO;
}

static void unhold_recorded(void *arg, int res, const char *msg)
{
	struct seg_call *c = arg;
	char node[LAYOUT_ID_MAX + 1];
	struct rseg *s;

	snprintf(node, sizeof(node), "%s", c->req.copy_node);
	s = call_end(c);
	if (!s)
		return;
	if (!s->rs->closing && res < 0 && res != -ESTALE && res != -ENOENT) {
		/* the record still names a copy that does not exist: the holder's orphan
		 * check keeps it, catch-up does not replace it; logged, not retried (the
		 * next reconciliation sends the seal again and meets ERANGE again) */
		log_msg(LOG_WARN, LOG_TAG, "volume %s: node %s is not dropped from the record of "
			"segment %08" PRIx32 " (%s)", s->fam->name, node, s->sno, msg);
	} else if (!s->rs->closing && res == 0) {
		for (unsigned i = 0; i < s->nholders; i++)
			if (strcmp(s->holders[i]->id, node) == 0) {
				s->holders[i] = s->holders[--s->nholders];
				break;
			}
		log_msg(LOG_INFO, LOG_TAG, "volume %s: node %s dropped from the record of sealed "
			"segment %08" PRIx32 " (it holds less than its %u blocks): catch-up makes "
			"a whole copy", s->fam->name, node, s->sno, s->seal_len);
		catchup_kick(s->rs->catchup);
	}
	seg_unref(s);
}

/* n holds less of sealed s than its length (its seal answered ERANGE): it leaves the
 * record's holders (fenced), so that the record claims no copy that does not exist
 * and catch-up makes a whole one. */
static void seg_unhold(struct rseg *s, struct rnode *n)
{
	struct seg_call *c = seg_call_new(s, CLUSTER_VOL_SEG_COPY);

	if (!c)
		return;
	c->req.copy_phase = CLVOL_COPY_DROP;
	snprintf(c->req.copy_node, sizeof(c->req.copy_node), "%s", n->id);
	(void)seg_call_send(c, unhold_recorded);
}

/* n answered SEG_SEAL of s with r: it leaves the holders to seal once it sealed or
 * refused for good; any other failure (a timeout, a lost connection, EBUSY) is sent
 * again later. */
/* Is f's volume erasure-coded? (its own copy goes once the stripe is recorded) */
static bool family_is_ec(const struct replicas *rs, const struct family *f)
{
	struct cluster_volume v;

	return cluster_volume_get(rs->cluster, f->name, &v) == 0 && v.rec.ec_k;
}

static void seal_answered(struct rseg *s, struct rnode *n, int r)
{
	char id[128];
	unsigned i;

	for (i = 0; i < s->nseal_todo && s->seal_todo[i] != n; i++)
		;
	if (i == s->nseal_todo)
		return; /* deleted meanwhile */
	s->seal_sent[i] = false;
	seg_id_text(s, id, sizeof(id));
	if (r < 0 && !seal_refused(r)) {
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "volume %s: holder node %s did not seal its copy "
				"(%s): sending it again", id, n->id, err_str(-r));
		seg_retry_backoff(s);
		return;
	}
	if (r < 0) {
		s->seal_refusals++;
		log_msg(LOG_WARN, LOG_TAG, "volume %s: holder node %s refuses to seal its copy at "
			"%u blocks: %s%s", id, n->id, s->seal_len, err_str(-r),
			r == -ERANGE ? ": it leaves the record's holders" : "");
	}
	if (r == -ERANGE)
		seg_unhold(s, n);
	s->nseal_todo--;
	s->seal_todo[i] = s->seal_todo[s->nseal_todo];
	s->seal_sent[i] = s->seal_sent[s->nseal_todo];
	s->seal_owed[i] = s->seal_owed[s->nseal_todo];
	if (s->nseal_todo == 0) {
		s->backoff_ms = 0;
		encoder_kick(s->rs->encoder); /* an EC family's segment may be encoded now */
	}
	if (s->nseal_todo == 0 && !s->seal_refusals && s->rs->drop_own && s->nholders &&
	    s->state == RS_SEALED && !family_is_ec(s->rs, s->fam))
		dropown_note(s->rs, s->fam->uid, s->sno, NULL, 0); /* every holder sealed it whole (an
							     EC family's: once encoded) */
}

static void seal_replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
			 size_t len)
{
	struct rreq *q = arg;
	int r = replica_reply_result(PEER_OP_SEG_SEAL, res, payload, len);

	(void)h;
	if (!q->seg->rs->closing)
		seal_answered(q->seg, q->node, r);
	seg_unref(q->seg);
	free(q);
}

static void seal_send_todo(struct rseg *s);

void replica_seal_probed(struct rseg *s, struct rnode *n, int r, bool sealed,
			 uint32_t length)
{
	unsigned i;

	for (i = 0; i < s->nseal_todo && s->seal_todo[i] != n; i++)
		;
	if (s->rs->closing || i == s->nseal_todo) {
		/* closing, or deleted meanwhile */
	} else if (r < 0 || !recon_seal_owed(sealed, length, s->seal_len)) {
		seal_answered(s, n, r);
	} else {
		log_msg(LOG_INFO, LOG_TAG, "volume %s segment %08" PRIx32 ": node %s's copy is %s "
			"at %u blocks, its record sealed at %u: SEG_SEAL owed", s->fam->name, s->sno,
			n->id, sealed ? "sealed" : "open", length, s->seal_len);
		s->seal_sent[i] = false;
		s->seal_owed[i] = true;
		seal_send_todo(s);
	}
}

/* SEG_SEAL to every holder that has not confirmed it and has none in flight (seal_probe:
 * asked first, with the family's other segments (sealprobe.c), unless its copy is known
 * not sealed). One not connected now gets it when it connects again
 * (replica_segs_retry_placing). */
static void seal_send_todo(struct rseg *s)
{
	struct peer_seg_req rq = { .op = PEER_OP_SEG_SEAL, .sno = s->sno, .length = s->seal_len };

	if (s->fam->stale)
		s->nseal_todo = 0; /* not its owner any more: the next one seals what it finds */
	for (unsigned i = 0; i < s->nseal_todo; i++) {
		bool ask = s->seal_probe && !s->seal_owed[i];
		int r;

		if (s->seal_sent[i])
			continue;
		r = ask ? replica_probe_ask(s, s->seal_todo[i])
			: send_req(s, NULL, s->seal_todo[i], &rq, NULL, 0, seal_replied);
		if (r == 0) {
			s->seal_sent[i] = true;
			if (!ask)
				s->rs->seals_sent++;
		} else if (r != -ENOTCONN) {
			seg_retry_backoff(s);
		}
	}
}

/* The record says sealed: every holder is to seal its copy. */
static void seal_send_all(struct rseg *s)
{
	s->nseal_todo = s->nholders;
	s->seal_refusals = 0;
	for (unsigned i = 0; i < s->nholders; i++) {
		s->seal_todo[i] = s->holders[i];
		s->seal_sent[i] = false;
		s->seal_owed[i] = false;
	}
	s->backoff_ms = 0;
	seal_send_todo(s);
}

static void frag_deleted_here(void *arg, int res)
{
	(void)arg;
	if (res < 0)
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "a freed stripe's fragment here is not "
				"deleted (%s): the orphan check drops it", err_str(-res));
}

/* Sends SEG_DELETE kind 1 to every holder of a fragment of s's stripe (this node's
 * own fragment deleted here), once its record is gone. Best effort, as for copies:
 * a holder that misses it drops the fragment at its next orphan check (no record). */
static void frags_delete_send(struct rseg *s, peer_reply_cb cb)
{
	struct peer_seg_req rq = { .op = PEER_OP_SEG_DELETE, .sno = s->sno,
				   .kind = PEER_SEG_KIND_FRAG };
	const struct layout_stripe *st = s->stripe;

	for (unsigned i = 0; st && i < st->k + st->m; i++) {
		if (strcmp(st->frags[i], s->rs->self) == 0)
			(void)engine_frag_delete_async(s->rs->eng, s->fam->uid, s->sno,
						       frag_deleted_here, NULL);
		else
			(void)send_req(s, NULL, replica_node_find(s->rs, st->frags[i]), &rq,
				       NULL, 0, cb);
	}
}

/* Sends SEG_DELETE to every holder. */
static void delete_send_all(struct rseg *s, peer_reply_cb cb)
{
	struct peer_seg_req rq = { .op = PEER_OP_SEG_DELETE, .sno = s->sno };

	/* best effort: a holder that misses it drops its copy at its next orphan check,
	 * which the record's deletion starts (docs/replication.md) */
	for (unsigned i = 0; i < s->nholders; i++)
		(void)send_req(s, NULL, s->holders[i], &rq, NULL, 0, cb);
}

static void seal_recorded(void *arg, int res, const char *msg)
{
	struct rseg *s = call_end(arg);

	if (!s)
		return;
	if (!s->rs->closing && s->state == RS_SEALING) {
		if (res == -ESTALE) {
			family_stale(s, msg);
		} else if (res < 0) {
			LOG_RATELIMITED(LOG_WARN, LOG_TAG, "volume %s: a segment's sealed record is "
					"not written (%s): trying again", s->fam->name, msg);
			s->state = RS_OPEN;
			seg_retry_later(s);
		} else {
			s->state = RS_SEALED;
			replica_numbers_test_crash_seal(s);
			seal_send_all(s);
			if (seg_copies(s) < s->fam->replicas)
				catchup_kick(s->rs->catchup); /* it wants its copies back */
		}
		seg_step(s);
	}
	seg_unref(s);
}

static void delete_replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
			   size_t len)
{
	(void)h;
	(void)res;
	(void)payload;
	(void)len;
	seg_unref(((struct rreq *)arg)->seg);
	free(arg);
}

static void delete_recorded(void *arg, int res, const char *msg)
{
	struct rseg *s = call_end(arg);

	if (!s)
		return;
	if (res < 0 && res != -ESTALE && res != -ENOENT && !s->rs->closing) {
		/* etcd away, a failed txn: a delete that never happens leaks every copy */
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "volume %s: a freed segment's record is not "
				"deleted yet (%s): trying again", s->fam->name, msg);
		s->state = RS_SEALED;
		seg_retry_backoff(s);
		seg_unref(s); /* the call's; the slot's keeps s until the delete is done */
		return;
	}
	if (res == -ESTALE && !s->rs->closing)
		log_msg(LOG_WARN, LOG_TAG, "volume %s: a freed segment's record stays (%s): the "
			"volume's owner now decides about it", s->fam->name, msg);
	else if (!s->rs->closing) {
		delete_send_all(s, delete_replied);
		frags_delete_send(s, delete_replied);
	}
	s->refs--;    /* the call's (the slot's still holds it) */
	seg_unref(s); /* the slot's: the segment is gone */
}

/* Every append of s is answered by every holder it has now (they may wait for
 * min_replicas copies, nothing else). */
static bool seg_appends_answered(const struct rseg *s)
{
	for (const struct rop *op = s->ops; op; op = op->next) {
		if (op->res < 0)
			continue;
		for (unsigned i = 0; i < s->nholders; i++)
			if (!op_acked_by(op, s->holders[i]))
				return false;
	}
	return true;
}

/* May s's sealed record be written now? The engine sealed it, every append up to the
 * length was given to us, the last drop is recorded, and every append completed; or,
 * below min_replicas, every append is on every surviving holder and only waits for
 * copies: the record is written at the full length then, and catch-up makes the
 * copies those appends wait for (docs/replication.md, "Seal and reopen"). */
static bool seg_seal_due(const struct rseg *s)
{
	if (!s->seal_wanted || s->appended < s->seal_len || s->record_busy || s->record_again)
		return false;
	if (!s->inflight)
		return true;
	return seg_copies(s) < s->fam->min_replicas && seg_appends_answered(s);
}

/* The first segment placed after a seal for a failed holder: where it went. */
static void seg_placed_log(struct rseg *s)
{
	char who[LAYOUT_MAX_HOLDERS * (LAYOUT_ID_MAX + 2)];
	size_t at;

	if (!s->fam->reopened)
		return;
	s->fam->reopened = false;
	at = (size_t)snprintf(who, sizeof(who), "%s", s->rs->self);
	for (unsigned i = 0; i < s->nholders && at < sizeof(who); i++)
		at += (size_t)snprintf(who + at, sizeof(who) - at, ",%s", s->holders[i]->id);
	log_msg(LOG_INFO, LOG_TAG, "volume %s: next segment %016" PRIx64 ".%08" PRIx32 " on %s "
		"(%u copies)", s->fam->name, s->fam->uid, s->sno, who, seg_copies(s));
}

/* Moves s on as far as it can go now. */
static void seg_step(struct rseg *s)
{
	int r;

	if (s->rs->closing)
		return;
	switch (s->state) {
	case RS_PLACING:
		if (s->delete_wanted && !s->ops) {
			s->state = RS_DEAD; /* never recorded, never written elsewhere */
			s->delete_wanted = false; /* the slot's ref goes once */
			seg_unref(s);
			return;
		}
		if (!s->ops && !s->appended && !s->ahead)
			return; /* placed at its first append (or ahead of need: seg_open_ahead) */
		if (s->fam->stale) {
			s->state = RS_DEAD;
			seg_complete(s);
			return;
		}
		if (s->fam->raised_epoch != s->fam->epoch)
			return; /* not before the counter is past every record (reconcile.c):
				   its end retries the segments placing */
		r = replica_numbers_ready(s); /* before its number is recorded anywhere */
		if (r == -EINPROGRESS)
			return;
		if (r < 0 || replica_place(s) < 0) {
			seg_retry_later(s);
			return;
		}
		seg_placed_log(s);
		s->state = RS_RECORDING;
		if (seg_call(s, CLUSTER_VOL_SEG_OPEN, open_recorded) < 0) {
			s->state = RS_PLACING;
			seg_retry_later(s);
		}
		return;
	case RS_OPEN:
		if (s->record_again && !s->record_busy)
			record_holders(s);
		if (!seg_seal_due(s))
			return;
		s->state = RS_SEALING;
		if (seg_call(s, CLUSTER_VOL_SEG_SEAL, seal_recorded) < 0) {
			s->state = RS_OPEN;
			seg_retry_later(s);
		}
		return;
	case RS_SEALED:
		if (!s->delete_wanted) {
			seal_send_todo(s); /* a retry's turn */
			return;
		}
		s->nseal_todo = 0; /* the copies go: no seal is wanted any more */
		s->state = RS_DELETING;
		if (seg_call(s, CLUSTER_VOL_SEG_DELETE, delete_recorded) < 0) {
			s->state = RS_SEALED;
			seg_retry_later(s);
		}
		return;
	case RS_DEAD:
		if (s->delete_wanted && !s->ops) {
			s->delete_wanted = false;
			seg_unref(s);
		}
		return;
	default:
		return;
	}
}

/* ---- segments this process did not open (a restart, an adopt) ---- */

struct rseg *replica_seg_chain(const struct replicas *rs, uint64_t uid, uint32_t sno)
{
	return rs->seg_hash[seg_bucket(uid, sno, rs->seg_hash_cap)];
}

struct rseg *replica_seg_find(const struct replicas *rs, uint64_t uid, uint32_t sno)
{
	for (struct rseg *s = replica_seg_chain(rs, uid, sno); s; s = s->next_hash)
		if (seg_uid(s) == uid && s->sno == sno)
			return s;
	return NULL;
}

/* A segment of f this process did not open, sealed, in no slot: its holders are those
 * of its record rec (NULL: none known; the holders' orphan checks drop their copies
 * once the record is gone). Its reference (refs 1) is the one a slot's segment has,
 * given up by its deletion. NULL without memory. */
static struct rseg *seg_unopened_new(struct replicas *rs, struct family *f, uint32_t sno,
				     const struct layout_segment *rec)
{
	struct rseg *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	*s = (struct rseg){ .rs = rs, .fam = f, .sno = sno, .state = RS_SEALED, .refs = 1 };
	for (unsigned i = 0; rec && i < rec->nholders && s->nholders < MAX_REMOTE; i++) {
		struct rnode *n = replica_node_find(rs, rec->holders[i]);

		if (n)
			s->holders[s->nholders++] = n;
	}
	seg_link(rs, s);
	return s;
}

/* s was written under an epoch of the family that this node lost since (RS_DEAD: its
 * appends failed then) and took again (an adopt): sealed now (the takeover sealed
 * every record its owner left open), its record and copies are this node's to
 * delete again. */
static void seg_revive(struct rseg *s)
{
	if (s->state == RS_DEAD && !s->ops && !s->delete_wanted && !s->fam->stale) {
		s->state = RS_SEALED;
		s->nseal_todo = 0;
	}
}

/* The segment the engine freed that was not opened in this process (written before a
 * restart, or adopted) or opened under an epoch lost since: the one the family's
 * reconciliation (or that epoch) made for it if any, with the holders its record
 * names, else a new one without holders (freed before the reconciliation listed the
 * records: the holders' orphan checks drop the copies). NULL: its delete is under way
 * already, or no memory (logged: the record stays until the next reconciliation). */
static struct rseg *seg_unopened(struct replicas *rs, uint64_t uid, uint32_t sno)
{
	struct family *f = replica_family_find(rs, uid);
	struct rseg *s = replica_seg_find(rs, uid, sno);

	if (f && !cluster_volume_owned(rs->cluster, f->name, NULL))
		return NULL; /* lost or given up: its owner's reconciliation deletes it */
	if (s) {
		seg_revive(s);
		return s->delete_wanted || s->state == RS_DELETING ? NULL : s;
	}
	if (f && (s = seg_unopened_new(rs, f, sno, NULL)))
		return s;
	log_msg(LOG_ERROR, LOG_TAG, "family %016" PRIx64 " segment %08" PRIx32 ": freed, but "
		"its record cannot be deleted now (%s): it stays until the next start-up",
		uid, sno, f ? "no memory" : "not replicated here");
	return NULL;
}

/* ---- the reconciliation's actions (reconcile.c) ---- */

void replica_seg_recon_seal(struct family *f, const struct layout_segment *rec, uint32_t blocks)
{
	struct rseg *s = seg_unopened_new(f->rs, f, rec->id.seq, rec);

	if (!s)
		return; /* the next reconciliation (a claim again, a restart) */
	log_msg(LOG_INFO, LOG_TAG, "volume %s segment %016" PRIx64 ".%08" PRIx32 ": open in its "
		"record, sealed in this node's log at %u blocks: sealing its record and its copies",
		f->name, f->uid, rec->id.seq, blocks);
	s->state = RS_OPEN;
	s->seal_wanted = true;
	s->seal_len = s->appended = blocks;
	seg_step(s);
}

void replica_seg_recon_delete(struct family *f, struct rseg *s, const struct layout_segment *rec,
			      const char *why)
{
	if (s)
		seg_revive(s);
	else
		s = seg_unopened_new(f->rs, f, rec->id.seq, rec);
	if (!s || s->state != RS_SEALED)
		return;
	log_msg(LOG_INFO, LOG_TAG, "volume %s segment %016" PRIx64 ".%08" PRIx32 " (%s, %" PRIu64
		" bytes): %s: deleting its record, then SEG_DELETE to its %u holders; its number "
		"stays spent", f->name, f->uid, rec->id.seq,
		rec->state == LAYOUT_SEG_OPEN ? "open" : "sealed", rec->length, why, s->nholders);
	s->delete_wanted = true;
	seg_step(s);
}

void replica_seg_recon_reseal(struct family *f, const struct layout_segment *rec)
{
	struct rseg *s = seg_unopened_new(f->rs, f, rec->id.seq, rec);

	if (!s)
		return;
	s->seal_len = s->appended = (uint32_t)(rec->length / ENGINE_BLOCK_SIZE);
	if (s->nholders)
		log_msg(LOG_DEBUG, LOG_TAG, "volume %s segment %016" PRIx64 ".%08" PRIx32 ": sealed "
			"at %u blocks before this node's start: its %u holders are asked whether "
			"SEG_SEAL is owed", f->name, f->uid, rec->id.seq, s->seal_len, s->nholders);
	s->seal_probe = true; /* a copy sealed at its length costs a share of a SEG_LIST */
	seal_send_all(s);
}

static bool mirror_wants(void *ctx, uint64_t uid)
{
	return replica_family_find(ctx, uid) != NULL;
}

/* ---- opening ahead of need (docs/replication.md, "Opening ahead of need") ---- */

/* Places, records and opens on its holders the family's next segment (the number the
 * engine's next seg_open of it draws) while cur fills, so that the switch waits for
 * no etcd transaction. One per family; held by its own ref, which becomes the slot's
 * when seg_open binds it (mirror_opened). One the engine never opens (the node stops,
 * the family goes elsewhere) is a record of a segment never written: the next
 * reconciliation deletes it (numbers.c). */
static void seg_open_ahead(const struct rseg *cur)
{
	struct replicas *rs = cur->rs;
	struct family *f = cur->fam;
	uint32_t sno;
	struct rseg *s;

	if (rs->closing || !f || f->stale)
		return;
	sno = engine_family_next_sno(rs->eng, f->uid);
	if (sno == UINT32_MAX)
		return;
	/* one ahead already, or that number is taken; an ahead segment the engine can no
	 * longer draw (a reservation went past it) does not stop the next one */
	for (s = rs->all; s; s = s->next_all)
		if (s->fam == f && s->sno >= sno)
			return;
	s = calloc(1, sizeof(*s));
	if (!s)
		return;
	*s = (struct rseg){ .rs = rs, .fam = f, .sno = sno, .state = RS_PLACING, .refs = 1,
			    .ahead = true };
	seg_link(rs, s);
	seg_step(s);
}

/* The segment opened ahead as (uid, sno), now the engine's: NULL if none. */
static struct rseg *seg_ahead_take(struct replicas *rs, uint64_t uid, uint32_t sno)
{
	struct rseg *s = replica_seg_find(rs, uid, sno);

	if (!s || !s->ahead)
		return NULL;
	s->ahead = false;
	return s;
}

static void mirror_opened(void *ctx, uint32_t slot, uint64_t uid, uint32_t sno, uint64_t epoch)
{
	struct replicas *rs = ctx;
	struct rseg *s;

	(void)epoch;
	if (slot >= rs->nslots) {
		size_t n = slot + 64;
		struct rseg **v = realloc(rs->by_slot, n * sizeof(*v));

		if (!v)
			return; /* its appends are refused: the engine's writes fail */
		memset(v + rs->nslots, 0, (n - rs->nslots) * sizeof(*v));
		rs->by_slot = v;
		rs->nslots = n;
	}
	s = seg_ahead_take(rs, uid, sno);
	if (s) {
		rs->by_slot[slot] = s; /* its ref becomes the slot's */
		if (s->state == RS_OPEN)
			seg_open_ahead(s); /* and the one after it */
		return;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return;
	*s = (struct rseg){ .rs = rs, .fam = replica_family_find(rs, uid), .sno = sno,
			    .state = RS_PLACING, .refs = 1 };
	seg_link(rs, s);
	rs->by_slot[slot] = s;
}

/* The seal a failed holder asked for: which, where s ends, on how many copies (those
 * that hold it all once the appends in flight are in). The next segment's holders are
 * logged when it is placed (seg_placed_log). */
static void seg_reseal_log(struct rseg *s)
{
	log_msg(LOG_WARN, LOG_TAG, "volume %s: %s: sealing segment %016" PRIx64 ".%08" PRIx32
		" at %u blocks on %u copies, the next segment on healthy nodes", s->fam->name,
		s->reseal_why, s->fam->uid, s->sno, s->seal_len, seg_copies(s));
	s->fam->reopened = true;
}

static void mirror_sealed(void *ctx, uint32_t slot, uint32_t length)
{
	struct rseg *s = seg_at(ctx, slot);

	if (!s)
		return;
	s->seal_wanted = true;
	s->seal_len = length;
	if (s->reseal)
		seg_reseal_log(s);
	s->rs->in_hook = true;
	seg_step(s);
	s->rs->in_hook = false;
}

static void mirror_deleted(void *ctx, uint32_t slot, uint64_t uid, uint32_t sno)
{
	struct replicas *rs = ctx;
	struct rseg *s = seg_at(rs, slot);
	struct layout_stripe st;
	uint32_t seg_blocks;
	bool striped = fragread_stripe_get(rs, uid, sno, &st, &seg_blocks) == 0;

	fragread_stripe_forget(rs, uid, sno);
	if (s && s->fam->uid == uid && s->sno == sno) {
		rs->by_slot[slot] = NULL; /* the slot may take another segment at once */
	} else {
		s = seg_unopened(rs, uid, sno);
		if (!s)
			return;
	}
	if (striped && !s->stripe && (s->stripe = malloc(sizeof(*s->stripe))))
		*s->stripe = st; /* (without memory: the orphan checks drop the fragments) */
	s->delete_wanted = true;
	rs->in_hook = true;
	seg_step(s);
	rs->in_hook = false;
}

static unsigned mirror_replies_awaited(void *ctx)
{
	const struct replicas *rs = ctx;

	return rs->append_replies;
}

static const struct seg_mirror_ops mirror_ops = {
	.wants = mirror_wants,
	.opened = mirror_opened,
	.append = mirror_append,
	.flush = replica_flush,
	.sealed = mirror_sealed,
	.deleted = mirror_deleted,
	.fetch = readaround_fetch,
	.replies_awaited = mirror_replies_awaited,
};

static const struct engine_base_ops base_ops = { .read = baseread_read };

/* ---- the module ---- */

/* The deferred completions: the appends of the segments kicked (each held by its
 * place in the list, so that a completion may delete any of them), the flushes. Only
 * those: a sealed segment is not walked again on every append and flush. */
static void kick_run(void *arg)
{
	struct replicas *rs = arg;
	struct rseg *s = rs->kicked, *next;

	rs->kicked = NULL; /* segments kicked from here on go to a new list */
	for (; s; s = next) {
		next = s->next_kick;
		s->kicked = false;
		seg_reseal_run(s);
		seg_complete(s);
		seg_unref(s);
	}
	replica_flushes_recheck(rs);
}

static void retry_placing_seg(struct rseg *s, void *arg)
{
	(void)arg;
	if (s->state == RS_PLACING) {
		loop_timer_cancel(s->retry);
		s->retry = NULL;
		seg_step(s);
	} else if (s->state == RS_SEALED && s->nseal_todo) {
		seal_send_todo(s); /* a holder that missed it may be back */
	}
}

void replica_segs_retry_placing(struct replicas *rs)
{
	segs_each(rs, retry_placing_seg, NULL);
}

struct scrub *replica_scrub(struct replicas *rs)
{
	return rs ? rs->scrub : NULL;
}

/* Did the map move since replica_map_changed last saw it? That runs after every
 * command the cluster answers, the scans' own listings too: a scan kicked for each
 * would restart the others ten times a second on an idle node. */
static bool map_moved(struct replicas *rs)
{
	uint64_t map = cluster_map_gen(rs->cluster), claims = cluster_claims_gen(rs->cluster);

	if (map == rs->seen_map_gen && claims == rs->seen_claims_gen)
		return false;
	rs->seen_map_gen = map;
	rs->seen_claims_gen = claims;
	return true;
}

void replica_map_changed(struct replicas *rs)
{
	bool moved;

	if (!rs)
		return;
	moved = map_moved(rs);
	replica_nodes_refresh(rs);
	/* a walk of every segment: not after every answer from etcd (each step of a
	 * rebuild's copies is one; each placing segment has its own retry timer, and a
	 * holder's connection retries them too) */
	if (moved)
		replica_segs_retry_placing(rs);
	replica_flushes_recheck(rs);
	replica_reconcile_kick(rs);
	if (!moved)
		return;
	catchup_kick(rs->catchup);
	encoder_kick(rs->encoder);
}

int replica_create(const struct replica_opts *opts, struct replicas **out)
{
	struct replicas *rs;

	if (!opts->loop || !opts->eng || !opts->ep || !opts->cluster || !opts->self_id ||
	    strlen(opts->self_id) > LAYOUT_ID_MAX)
		return -EINVAL;
	rs = calloc(1, sizeof(*rs));
	if (!rs)
		return -ENOMEM;
	rs->seg_hash = calloc(SEG_HASH_MIN, sizeof(*rs->seg_hash));
	if (!rs->seg_hash) {
		free(rs);
		return -ENOMEM;
	}
	rs->seg_hash_cap = SEG_HASH_MIN;
	rs->loop = opts->loop;
	rs->eng = opts->eng;
	rs->ep = opts->ep;
	rs->cluster = opts->cluster;
	snprintf(rs->self, sizeof(rs->self), "%s", opts->self_id);
	rs->out_after_ms = (uint64_t)(opts->out_after_s ? opts->out_after_s
						: REPLICA_DEFAULT_OUT_AFTER_S) * 1000;
	rs->timeout_ms = opts->peer_timeout_ms ? opts->peer_timeout_ms
					       : REPLICA_DEFAULT_PEER_TIMEOUT_MS;
	rs->seg_blocks = engine_segment_blocks(opts->eng);
	rs->test_crash_after = opts->test_crash_after_open;
	rs->test_crash_seal = opts->test_crash_after_seal;
	rs->drop_own = opts->drop_own;
	rs->test_crash_rebuild = opts->test_crash_rebuild;
	rs->ec_drop_replicas = opts->ec_drop_replicas;
	rs->frags_first = opts->frags_first || opts->ec_drop_replicas;
	if (loop_task_create(rs->loop, kick_run, rs, &rs->kick) < 0)
		goto err_free_rs;
	if (replica_probes_init(rs) < 0)
		goto err_destroy_kick;
	if (worker_create(rs->loop, &rs->worker) < 0)
		goto err_destroy_probes;
	if (!opts->catchup_off && catchup_create(rs, opts->catchup_mbps, opts->catchup_share,
						   opts->catchup_inflight,
						   &rs->catchup) < 0)
		goto err_destroy_worker;
	if (encoder_create(rs, opts->test_crash_encode, &rs->encoder) < 0)
		goto err_destroy_catchup;
	if (scrub_create(rs, opts->scrub_mbps, opts->scrub_interval_s, &rs->scrub) < 0)
		goto err_destroy_encoder;
	seg_mirror_set(opts->eng, &mirror_ops, rs);
	engine_base_ops_set(opts->eng, &base_ops, rs);
	replica_nodes_refresh(rs);
	*out = rs;
	return 0;

err_destroy_encoder:
	encoder_destroy(rs->encoder);
err_destroy_catchup:
	catchup_destroy(rs->catchup);
err_destroy_worker:
	worker_destroy(rs->worker);
err_destroy_probes:
	replica_probes_destroy(rs);
err_destroy_kick:
	loop_task_destroy(rs->kick);
err_free_rs:
	free(rs->seg_hash);
	free(rs);
	return -ENOMEM;
}

/* At stop, each segment whose writes still wait: where it stands, so that a hang's
 * log says why (a seal never recorded, appends never answered, a record in flight). */
static void seg_log_waiting(const struct rseg *s)
{
	unsigned nops = 0, unacked = 0;
	char id[128];

	for (const struct rop *op = s->ops; op; op = op->next) {
		nops++;
		for (unsigned i = 0; i < s->nholders; i++)
			unacked += op->res == 0 && !op_acked_by(op, s->holders[i]);
	}
	seg_id_text(s, id, sizeof(id));
	log_msg(LOG_WARN, LOG_TAG, "stopping: volume %s: %u writes still wait (state %d, %u "
		"copies, %u in flight, appended %u, seal %s at %u, record %s%s, %u holder "
		"acks missing)", id, nops, (int)s->state, seg_copies(s), s->inflight,
		s->appended, s->seal_wanted ? "wanted" : "not wanted", s->seal_len,
		s->record_busy ? "busy" : "idle", s->record_again ? " (again)" : "", unacked);
}

void replica_destroy(struct replicas *rs)
{
	unsigned waiting = 0;

	if (!rs)
		return;
	for (const struct rseg *s = rs->all; s; s = s->next_all)
		if (s->ops && waiting++ < 8)
			seg_log_waiting(s);
	if (waiting > 8)
		log_msg(LOG_WARN, LOG_TAG, "stopping: %u more segments' writes still wait",
			waiting - 8);
	seg_mirror_set(rs->eng, NULL, NULL);
	engine_base_ops_set(rs->eng, NULL, NULL);
	rs->closing = true;
	log_msg(LOG_INFO, LOG_TAG, "stopping: %llu SEG_SEAL and %llu SEG_LIST (is a seal owed?) "
		"sent since start-up", (unsigned long long)rs->seals_sent,
		(unsigned long long)rs->seal_lists_sent);
	replica_probes_destroy(rs); /* those not sent; those sent end with the nodes */
	scrub_destroy(rs->scrub); /* before the nodes: their replies find it gone */
	catchup_destroy(rs->catchup); /* the same */
	encoder_destroy(rs->encoder); /* the same */
	worker_destroy(rs->worker); /* after its users: their jobs' ends free them */
	replica_nodes_destroy(rs); /* the replies in flight run now (-ECONNRESET) */
	readaround_cancel_all(rs);
	fragread_destroy_all(rs);
	baseread_cancel_all(rs);
	for (struct seg_call *c = rs->calls; c; c = c->next)
		c->seg = NULL; /* answered later, if at all: orphans */
	replica_reconcile_destroy(rs);
	for (struct rseg *s = rs->all, *next; s; s = next) {
		next = s->next_all;
		loop_timer_cancel(s->retry);
		s->retry = NULL;
		while (s->ops) {
			struct rop *op = s->ops;

			s->ops = op->next;
			op->cb(op->arg, -ESHUTDOWN);
			op_unref(op);
		}
		free(s);
	}
	for (size_t i = 0; i < rs->nflushes; i++) {
		rs->flushes[i]->cb(rs->flushes[i]->arg, -ESHUTDOWN);
		free(rs->flushes[i]);
	}
	for (size_t i = 0; i < rs->nfams; i++)
		free(rs->fams[i]);
	dropown_destroy(rs);
	loop_task_destroy(rs->kick);
	free(rs->flushes);
	free(rs->fams);
	free(rs->by_slot);
	free(rs->seg_hash);
	free(rs);
}

/* ---- status ---- */

static struct family *family_named(const struct replicas *rs, const char *name)
{
	for (size_t i = 0; i < rs->nfams; i++)
		if (strcmp(rs->fams[i]->name, name) == 0)
			return rs->fams[i];
	return NULL;
}

/* The catch-up's part of a family's status: still below R while segments are. */
static void replica_catchup_status(const struct replicas *rs, uint64_t uid,
				   struct replica_status *out)
{
	catchup_status(rs->catchup, uid, &out->catchup);
	if (out->catchup.segs_left || out->catchup.rebuild || out->catchup.frags_unplaced)
		out->degraded = true;
}

void replica_frag_totals(const struct replicas *rs, struct fragread_status *out)
{
	*out = rs ? rs->frag_total : (struct fragread_status){ 0 };
}

int replica_status(const struct replicas *rs, const char *name, struct replica_status *out)
{
	const struct family *f = rs ? family_named(rs, name) : NULL;

	if (!f)
		return -ENOENT;
	memset(out, 0, sizeof(*out));
	out->replicas = f->replicas;
	out->min_replicas = f->min_replicas;
	out->copies = f->replicas;
	for (const struct rseg *s = rs->all; s; s = s->next_all) {
		struct replica_seg_status *st;
		bool placed = s->state >= RS_OPENING && s->state <= RS_OPEN;

		if (s->fam == f && s->state == RS_SEALED && s->ops)
			out->waiting = true; /* sealed below min_replicas: waits for catch-up */
		if (s->fam != f || s->state > RS_OPEN || (s->state == RS_PLACING && !s->ops) ||
		    s->ahead || (s->delete_wanted && !s->appended))
			continue; /* an ahead segment (or one skipped) holds no write */
		if (placed && seg_copies(s) < out->copies)
			out->copies = seg_copies(s);
		if (!placed || seg_copies(s) < f->min_replicas)
			out->waiting = true;
		if (out->nsegs == REPLICA_STATUS_SEGS)
			continue;
		st = &out->segs[out->nsegs++];
		st->sno = s->sno;
		st->placed = placed;
		snprintf(st->holders[st->nholders++], sizeof(st->holders[0]), "%s", rs->self);
		for (unsigned i = 0; placed && i < s->nholders && st->nholders < 8; i++)
			snprintf(st->holders[st->nholders++], sizeof(st->holders[0]), "%s",
				 s->holders[i]->id);
	}
	out->degraded = out->copies < f->replicas;
	replica_catchup_status(rs, f->uid, out);
	encoder_status(rs->encoder, f->uid, &out->encode);
	out->frag = f->frag;
	if (f->stale)
		snprintf(out->why, sizeof(out->why), "this node is no longer its owner at epoch %lld",
			 (long long)f->epoch);
	else if (out->waiting)
		snprintf(out->why, sizeof(out->why), "writes wait: fewer than %u copies can be "
			 "placed or recorded", f->min_replicas);
	else if (out->copies < f->replicas)
		snprintf(out->why, sizeof(out->why), "%u of %u copies: a holder is missing",
			 out->copies, f->replicas);
	else if (out->degraded && out->catchup.frags_unplaced && !out->catchup.rebuild)
		snprintf(out->why, sizeof(out->why), "%u stripes lost a fragment to a node gone "
			 "for good and no failure domain is left to rebuild it on",
			 out->catchup.frags_unplaced);
	else if (out->degraded && out->catchup.rebuild)
		snprintf(out->why, sizeof(out->why), "rebuilding: %u segments held by a node gone "
			 "for good, %u below %u copies", out->catchup.rebuild,
			 out->catchup.segs_left, f->replicas);
	else if (out->degraded)
		snprintf(out->why, sizeof(out->why), "catching up: %u segments below %u copies",
			 out->catchup.segs_left, f->replicas);
	return 0;
}
