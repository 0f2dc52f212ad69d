/* replication/replica_nodes.c — the nodes that hold this node's copies (replica.h):
 * one authenticated peer connection per node of the map (up, in, compatible, with a
 * peer address), reconnected with backoff; placement of a segment's holders over the
 * connected ones; SEG_FLUSH to the nodes that took appends since their last one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "cluster/placement.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "replication/peer.h"
#include "replication/peer_proto.h"
#include "replication/replica_internal.h"

static void node_connect(struct rnode *n);

static void node_retry_fire(void *arg)
{
	struct rnode *n = arg;

	n->retry = NULL;
	node_connect(n);
}

static void node_schedule(struct rnode *n)
{
	if (n->rs->closing || n->retry || !n->in_map)
		return;
	n->backoff_ms = n->backoff_ms ? n->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (n->backoff_ms > BACKOFF_MAX_MS)
		n->backoff_ms = BACKOFF_MAX_MS;
	if (loop_timer_add(n->rs->loop, n->backoff_ms, node_retry_fire, n, &n->retry) < 0)
		n->retry = NULL;
}

static void conn_ready(void *arg, struct peer_conn *c)
{
	struct rnode *n = arg;

	(void)c;
	n->ready = true;
	n->backoff_ms = 0;
	log_msg(LOG_INFO, LOG_TAG, "holder node %s (%s): connected", n->id, n->peer);
	replica_segs_retry_placing(n->rs);
}

static void conn_closed(void *arg, struct peer_conn *c, int err, const char *why)
{
	struct rnode *n = arg;
	bool was_ready = n->ready;
	char reason[256];

	(void)c;
	n->conn = NULL;
	n->ready = false;
	if (n->rs->closing)
		return;
	snprintf(reason, sizeof(reason), "connection %s: %s",
		 was_ready ? "lost" : "failed", why && why[0] ? why : err_str(-err));
	replica_node_failed(n, reason);
	node_schedule(n);
}

static const struct peer_conn_ops conn_ops = {
	.ready = conn_ready,
	.closed = conn_closed,
};

static void node_connect(struct rnode *n)
{
	char addr[LAYOUT_ADDR_MAX + 1];
	uint16_t port;
	int r;

	if (n->conn || n->rs->closing || !n->in_map || !n->peer[0])
		return;
	if (peer_addr_parse(n->peer, addr, sizeof(addr), &port) < 0) {
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "node %s: peer address '%s' is not ADDR:PORT",
				n->id, n->peer);
		return;
	}
	r = peer_connect(n->rs->ep, addr, port, &conn_ops, n, &n->conn);
	if (r < 0) {
		n->conn = NULL;
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "node %s (%s): cannot connect: %s", n->id,
				n->peer, err_str(-r));
		node_schedule(n);
	}
}

struct rnode *replica_node_find(const struct replicas *rs, const char *id)
{
	for (size_t i = 0; i < rs->nnodes; i++)
		if (strcmp(rs->nodes[i]->id, id) == 0)
			return rs->nodes[i];
	return NULL;
}

static struct rnode *node_add(struct replicas *rs, const char *id)
{
	struct rnode **v = realloc(rs->nodes, (rs->nnodes + 1) * sizeof(*v));
	struct rnode *n;

	if (!v)
		return NULL;
	rs->nodes = v;
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->rs = rs;
	snprintf(n->id, sizeof(n->id), "%s", id);
	rs->nodes[rs->nnodes++] = n;
	return n;
}

/* Takes the map's view of every other node; connects to those that may hold copies. */
void replica_nodes_refresh(struct replicas *rs)
{
	struct cluster_node *map;
	size_t count;

	if (cluster_nodes(rs->cluster, &map, &count) < 0)
		return;
	for (size_t i = 0; i < rs->nnodes; i++)
		rs->nodes[i]->in_map = false;
	for (size_t i = 0; i < count; i++) {
		struct cluster_node *m = &map[i];
		struct rnode *n;

		if (m->self) {
			snprintf(rs->self_domain, sizeof(rs->self_domain), "%s", m->rec.domain);
			continue;
		}
		n = replica_node_find(rs, m->rec.id);
		if (!n && !(n = node_add(rs, m->rec.id)))
			continue;
		snprintf(n->domain, sizeof(n->domain), "%s", m->rec.domain);
		if (strcmp(n->peer, m->rec.peer) != 0 && n->conn)
			peer_conn_close(n->conn); /* it moved: the old address is not it */
		snprintf(n->peer, sizeof(n->peer), "%s", m->rec.peer);
		n->in_map = m->up && !m->out && m->compatible && m->rec.peer[0];
		n->out = m->out;
		if (m->up)
			n->down_since_ms = 0;
		else if (!n->down_since_ms)
			n->down_since_ms = loop_now_ms();
	}
	free(map);
	for (size_t i = 0; i < rs->nnodes; i++) {
		struct rnode *n = rs->nodes[i];

		if (n->in_map && !n->conn && !n->retry)
			node_connect(n);
	}
}

void replica_node_bad_size(struct rnode *n)
{
	if (n->bad_size)
		return;
	log_msg(LOG_ERROR, LOG_TAG, "node %s refuses segments of %u blocks (its segment size "
		"differs from this node's): no copies go to it", n->id, n->rs->seg_blocks);
	n->bad_size = true;
}

/* The remote holders of s by placement: up, in, connected nodes of other failure
 * domains. 0, or -EAGAIN: too few now (or nodes still connecting that might make R). */
int replica_place(struct rseg *s)
{
	struct replicas *rs = s->rs;
	struct placement_node *pn = calloc(rs->nnodes ? rs->nnodes : 1, sizeof(*pn));
	uint64_t picked[PLACEMENT_MAX_COPIES];
	uint64_t self_domain = placement_domain_id(rs->self_domain[0] ? rs->self_domain : rs->self);
	unsigned want = s->fam->replicas - 1, have, connecting = 0;
	int r = 0;

	if (!pn)
		return -ENOMEM;
	for (size_t i = 0; i < rs->nnodes; i++) {
		struct rnode *n = rs->nodes[i];

		pn[i].id = placement_domain_id(n->id);
		pn[i].domain = placement_domain_id(n->domain[0] ? n->domain : n->id);
		pn[i].weight = 1;
		pn[i].usable = n->in_map && n->ready && !n->bad_size && pn[i].domain != self_domain;
		connecting += n->in_map && !n->ready && !n->bad_size && n->conn;
	}
	have = placement_domains(pn, rs->nnodes);
	if (have > want)
		have = want;
	if (1 + have < s->fam->min_replicas || (have < want && connecting))
		r = -EAGAIN;
	if (r == 0 && have)
		r = placement_pick(pn, rs->nnodes, placement_seg_key(s->fam->uid, s->sno),
				   have, picked);
	s->nholders = 0;
	for (unsigned k = 0; r == 0 && k < have; k++)
		for (size_t i = 0; i < rs->nnodes; i++)
			if (pn[i].id == picked[k])
				s->holders[s->nholders++] = rs->nodes[i];
	free(pn);
	return r;
}

/* A flush is done when every holder it went to answered and every drop it caused
 * is recorded: a holder that failed it is not counted among the copies any more,
 * so the flush holds on the others (the error is theirs to give, and they gave
 * none). */
static void flush_end(struct rflush *f)
{
	f->cb(f->arg, 0);
	free(f);
}

void replica_flushes_recheck(struct replicas *rs)
{
	size_t k = 0;

	if (rs->closing)
		return; /* replica_destroy fails what is left */
	if (rs->records_busy || rs->in_hook) {
		if (rs->in_hook)
			loop_task_schedule(rs->kick);
		return;
	}
	for (size_t i = 0; i < rs->nflushes; i++) {
		struct rflush *f = rs->flushes[i];

		if (f->pending)
			rs->flushes[k++] = f;
		else
			flush_end(f);
	}
	rs->nflushes = k;
}

/* A SEG_FLUSH to one node. */
struct flush_req {
	struct rflush *f;
	struct rnode *n;
};

static void flush_replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
			  size_t len)
{
	struct flush_req *q = arg;
	struct rflush *f = q->f;
	struct rnode *n = q->n;
	int r = replica_reply_result(PEER_OP_SEG_FLUSH, res, payload, len);

	(void)h;
	free(q);
	if (r < 0 && !f->rs->closing) {
		char why[128];

		/* its copies are not durable: it leaves the segments still written, recorded
		 * before this flush completes */
		snprintf(why, sizeof(why), "flush: %s", err_str(-r));
		replica_node_failed(n, why);
	}
	f->pending--;
	replica_flushes_recheck(f->rs);
}

int replica_flush(void *ctx, seg_cb cb, void *arg)
{
	struct replicas *rs = ctx;
	struct rflush *f = calloc(1, sizeof(*f));
	struct rflush **v;

	if (!f)
		return -ENOMEM;
	rs->in_hook = true; /* replica_node_failed below completes nothing now */
	v = realloc(rs->flushes, (rs->nflushes + 1) * sizeof(*v));
	if (!v) {
		rs->in_hook = false;
		free(f);
		return -ENOMEM;
	}
	rs->flushes = v;
	*f = (struct rflush){ .rs = rs, .cb = cb, .arg = arg, .pending = 1 };
	rs->flushes[rs->nflushes++] = f;
	for (size_t i = 0; i < rs->nnodes; i++) {
		struct rnode *n = rs->nodes[i];
		struct flush_req *q;
		struct peer_msg m = { .op = PEER_OP_SEG_FLUSH };

		if (!n->dirty)
			continue;
		n->dirty = false;
		q = malloc(sizeof(*q));
		if (!q) {
			replica_node_failed(n, "flush: out of memory");
			continue;
		}
		*q = (struct flush_req){ .f = f, .n = n };
		if (!n->ready || peer_request(n->conn, &m, rs->timeout_ms, flush_replied, q) < 0) {
			free(q);
			replica_node_failed(n, "flush: not connected");
			continue;
		}
		f->pending++;
	}
	f->pending--; /* this function's */
	rs->in_hook = false;
	/* completes from a later reply, or (nothing to wait for) on the loop's next turn:
	 * never inside this call (the engine's contract) */
	loop_task_schedule(rs->kick);
	return 0;
}

void replica_nodes_destroy(struct replicas *rs)
{
	for (size_t i = 0; i < rs->nnodes; i++) {
		loop_timer_cancel(rs->nodes[i]->retry);
		if (rs->nodes[i]->conn)
			peer_conn_close(rs->nodes[i]->conn); /* replies in flight: -ECONNRESET */
	}
	for (size_t i = 0; i < rs->nnodes; i++)
		free(rs->nodes[i]);
	free(rs->nodes);
	rs->nodes = NULL;
	rs->nnodes = 0;
}
