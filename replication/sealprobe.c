/* replication/sealprobe.c — is a seal owed? One SEG_LIST per holder and family
 * (docs/replication.md, "Reconciliation with the records").
 *
 * A sealed record that a reconciliation meets after this node's start
 * (replica_seg_recon_reseal) owes nothing to a holder whose copy is sealed at the
 * record's length; only the others are sent SEG_SEAL. Asking each holder about each
 * segment (SEG_STAT) cost a round trip per holder per sealed segment: 1260 for an
 * owner's restart with 632 of them. Here the segments that ask one holder about one
 * family join one probe, sent from a loop task once the reconciliation's pass is
 * over: a SEG_LIST of the range of their numbers, answered from the holder's held
 * table (again from the last entry's number past PEER_SEG_LIST_MAX copies). Each
 * segment then takes its answer as it took SEG_STAT's (replica_seal_probed).
 *
 * A probe holds a ref on each segment until it is answered; the module's end answers
 * the probes in flight through their connections' close (-ECONNRESET, rs->closing)
 * and drops those not sent yet. Loop thread only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/array.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "replication/peer.h"
#include "replication/peer_proto.h"
#include "replication/replica_internal.h"

struct probe {
	struct replicas *rs;
	uint64_t uid;
	struct rnode *n;
	struct rseg **segs;  /* asking, each with a ref; by number once sent */
	size_t nsegs, cap;
	uint32_t first;      /* the list asked from (the rest of a long one: past the last) */
	bool sent;
	struct probe *next;  /* rs->probes: those not sent yet */
};

static void probe_free(struct probe *p)
{
	for (size_t i = 0; i < p->nsegs; i++)
		replica_seg_release(p->segs[i]);
	free(p->segs);
	free(p);
}

/* Segments [from, to) of p take the answer r (no entry: r < 0). */
static void probe_answer(struct probe *p, size_t from, size_t to, int r)
{
	for (size_t i = from; i < to; i++)
		replica_seal_probed(p->segs[i], p->n, r, false, 0);
}

static int by_sno(const void *a, const void *b)
{
	uint32_t x = (*(struct rseg *const *)a)->sno, y = (*(struct rseg *const *)b)->sno;

	return x < y ? -1 : x > y;
}

static void probe_replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
			  size_t len);

/* Sends p's SEG_LIST (from p->first to its last segment's number); a failure to send
 * answers every segment with it (each retries as a failed SEG_STAT would). */
static void probe_send(struct probe *p)
{
	struct family *f = replica_family_find(p->rs, p->uid);
	struct peer_seg_req rq = { .op = PEER_OP_SEG_LIST, .first = p->first,
				   .last = p->segs[p->nsegs - 1]->sno };
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct peer_msg m = { .op = PEER_OP_SEG_LIST, .volume_id = p->uid, .head = head };
	int r = -ESTALE;

	if (f && !f->stale) {
		m.epoch = (uint64_t)f->epoch;
		m.head_len = peer_seg_req_encode(&rq, head);
		r = replica_node_live(p->n) ? peer_request(p->n->conn, &m, p->rs->timeout_ms,
							     probe_replied, p)
					      : -ENOTCONN;
	}
	if (r == 0) {
		p->sent = true;
		p->rs->seal_lists_sent++;
		return;
	}
	probe_answer(p, 0, p->nsegs, r);
	probe_free(p);
}

/* The entries' answer to p's segments, by number: an entry is that copy as SEG_STAT
 * would tell it, a segment without one has no copy there (ENOENT); a list cut at
 * PEER_SEG_LIST_MAX answers up to its last entry, and the rest is asked again. */
static void probe_take(struct probe *p, const struct peer_seg_reply *rep)
{
	struct peer_seg_entry_msg e = { 0 };
	uint32_t upto = p->segs[p->nsegs - 1]->sno, j = 0;
	size_t i;

	if (rep->length == PEER_SEG_LIST_MAX) {
		peer_seg_entry_get(rep, rep->length - 1, &e);
		upto = e.sno;
	}
	for (i = 0; i < p->nsegs && p->segs[i]->sno <= upto; i++) {
		for (; j < rep->length; j++) {
			peer_seg_entry_get(rep, j, &e);
			if (e.sno >= p->segs[i]->sno)
				break;
		}
		if (j < rep->length && e.sno == p->segs[i]->sno)
			replica_seal_probed(p->segs[i], p->n, 0, e.sealed, e.length);
		else
			replica_seal_probed(p->segs[i], p->n, -ENOENT, false, 0);
		replica_seg_release(p->segs[i]);
	}
	p->nsegs -= i;
	memmove(p->segs, p->segs + i, p->nsegs * sizeof(*p->segs));
}

/* Whether every entry is within what p asked (a holder that answers more is broken). */
static bool entries_asked(const struct probe *p, const struct peer_seg_reply *rep)
{
	struct peer_seg_entry_msg first, last;

	if (rep->length == 0)
		return true;
	peer_seg_entry_get(rep, 0, &first);
	peer_seg_entry_get(rep, rep->length - 1, &last);
	return first.sno >= p->first && last.sno <= p->segs[p->nsegs - 1]->sno;
}

static void probe_replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
			  size_t len)
{
	struct probe *p = arg;
	struct peer_seg_reply rep = { 0 };
	int r = res < 0 ? res : peer_seg_reply_decode(PEER_OP_SEG_LIST, payload, len, &rep);

	(void)h;
	/* a list that cannot be read, or lists what was not asked, says nothing of any
	 * copy: -EIO, which each segment asks again (a -EPROTO or -EINVAL would be taken
	 * as the holder's refusal of every one); the holder's own result stands */
	if (r == 0 && rep.result == 0 && !entries_asked(p, &rep))
		r = -EPROTO;
	if (r == -EPROTO || r == -EINVAL)
		r = -EIO;
	if (r == 0)
		r = rep.result;
	if (p->rs->closing) {
		probe_free(p);
		return;
	}
	if (r < 0) {
		log_msg(LOG_WARN, LOG_TAG, "family %016" PRIx64 ": node %s did not list its copies "
			"of %zu sealed segments (%s): each asks again", p->uid, p->n->id, p->nsegs,
			err_str(-r));
		probe_answer(p, 0, p->nsegs, r);
		probe_free(p);
		return;
	}
	probe_take(p, &rep);
	if (!p->nsegs) {
		probe_free(p);
		return;
	}
	p->first = p->segs[0]->sno; /* past the last entry: the rest of a long list */
	probe_send(p);
}

/* The task: every probe gathered since it was scheduled goes. */
static void probes_run(void *arg)
{
	struct replicas *rs = arg;
	struct probe *p = rs->probes, *next;

	rs->probes = NULL;
	for (; p; p = next) {
		next = p->next;
		if (!p->nsegs) {
			probe_free(p); /* its only segment found no memory to join it */
			continue;
		}
		qsort(p->segs, p->nsegs, sizeof(*p->segs), by_sno);
		p->first = p->segs[0]->sno;
		probe_send(p);
	}
}

int replica_probe_ask(struct rseg *s, struct rnode *n)
{
	struct replicas *rs = s->rs;
	struct probe *p;

	if (!replica_node_live(n))
		return -ENOTCONN;
	for (p = rs->probes; p && (p->uid != s->fam->uid || p->n != n); p = p->next)
		;
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p)
			return -ENOMEM;
		*p = (struct probe){ .rs = rs, .uid = s->fam->uid, .n = n, .next = rs->probes };
		rs->probes = p;
		loop_task_schedule(rs->probe_task);
	}
	if (ARRAY_GROW(p->segs, p->cap, p->nsegs, 16) < 0)
		return -ENOMEM; /* (an empty probe is dropped by the task) */
	p->segs[p->nsegs++] = s;
	replica_seg_hold(s);
	return 0;
}

int replica_probes_init(struct replicas *rs)
{
	return loop_task_create(rs->loop, probes_run, rs, &rs->probe_task);
}

void replica_probes_destroy(struct replicas *rs)
{
	while (rs->probes) {
		struct probe *p = rs->probes;

		rs->probes = p->next;
		probe_free(p);
	}
	loop_task_destroy(rs->probe_task);
	rs->probe_task = NULL;
}
