/* replication/baseread.c — the transport of remote bases (baseread.h). */
#include "replication/baseread.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "replication/layerread.h"
#include "replication/peer_proto.h"
#include "replication/replica_internal.h"

/* One range of a base, from the engine's read until its answer. */
struct bread {
	struct replicas *rs;
	struct engine_base base;
	uint64_t lba;
	uint32_t nblocks;
	void *buf;
	engine_cb cb;
	void *arg;
	uint64_t started_ms;
	struct loop_timer *timer;  /* the next try, or NULL */
	struct engine_volume *snap; /* the local shortcut's handle, while it reads */
	bool asking;               /* a LAYER_READ or a local read is out */
	bool waiting;              /* no owner could be asked at the last try */
	int last;                  /* why the last try failed */
	struct bread *next;        /* rs->breads */
};

static uint64_t now_ms(void)
{
	return log_clock_us() / 1000u;
}

static void br_unlink(struct bread *br)
{
	for (struct bread **p = &br->rs->breads; *p; p = &(*p)->next)
		if (*p == br) {
			*p = br->next;
			return;
		}
}

static void br_finish(struct bread *br, int res)
{
	if (res < 0 && res != -ESHUTDOWN)
		log_msg(LOG_ERROR, LOG_TAG, "base %s (family %llx, layer %llu) at lba %llu: no "
			"answer in %u s (%s): the clone's read fails", br->base.volume,
			(unsigned long long)br->base.uid, (unsigned long long)br->base.layer,
			(unsigned long long)br->lba, BASEREAD_GIVE_UP_MS / 1000u, err_str(-res));
	br_unlink(br);
	loop_timer_cancel(br->timer);
	br->cb(br->arg, res);
	free(br);
}

static void br_try(void *arg);

/* The try failed for a reason that passes (no owner yet, a takeover, a connection):
 * again after BASEREAD_RETRY_MS, unless the read is too old. */
static void br_again(struct bread *br, int why)
{
	br->last = why;
	br->timer = NULL;
	if (now_ms() - br->started_ms >= BASEREAD_GIVE_UP_MS ||
	    loop_timer_add(br->rs->loop, BASEREAD_RETRY_MS, br_try, br, &br->timer) < 0)
		br_finish(br, -EIO);
}

static bool passing(int res)
{
	return res == -ESTALE || res == -ECONNRESET || res == -ETIMEDOUT || res == -ENOTCONN ||
	       res == -EREMOTE || res == -ESHUTDOWN || res == -EILSEQ || res == -EPIPE ||
	       res == -EAGAIN; /* the owner's adoption of the family is landing */
}

static void br_answered(struct bread *br, int res)
{
	br->asking = false;
	if (br->rs->closing) {
		br_finish(br, -ESHUTDOWN);
		return;
	}
	if (res == 0 || !passing(res)) {
		br_finish(br, res);
		return;
	}
	br_again(br, res);
}

static void br_remote_done(void *arg, int res)
{
	br_answered(arg, res);
}

static void br_local_done(void *arg, int res)
{
	struct bread *br = arg;

	engine_volume_close(br->snap);
	br->snap = NULL;
	br_answered(br, res < 0 ? res : 0);
}

/* The local shortcut: this node runs the parent family. */
static int br_local(struct bread *br)
{
	int r = engine_snapshot_open_by_id(br->rs->eng, br->base.uid, br->base.layer, &br->snap);

	if (r < 0)
		return r;
	r = engine_read(br->snap, br->lba, br->nblocks, br->buf, br_local_done, br);
	if (r < 0) {
		engine_volume_close(br->snap);
		br->snap = NULL;
	}
	return r;
}

/* Who to ask: the parent volume's live owner, connected. */
static struct rnode *br_owner(struct bread *br, int *why)
{
	struct cluster_volume v;
	struct rnode *n;

	if (cluster_volume_get(br->rs->cluster, br->base.volume, &v) < 0 || !v.claimed) {
		*why = -EREMOTE;
		return NULL;
	}
	n = replica_node_find(br->rs, v.claim.node);
	if (!replica_node_live(n)) {
		*why = -ENOTCONN;
		return NULL;
	}
	return n;
}

static void br_try(void *arg)
{
	struct bread *br = arg;
	struct rnode *n;
	int r;

	br->timer = NULL;
	if (engine_family_here(br->rs->eng, br->base.uid)) {
		r = br_local(br);
	} else if ((n = br_owner(br, &r))) {
		r = layer_read(n->conn, br->base.uid, br->base.layer, br->lba, br->nblocks,
			       br->buf, br->rs->timeout_ms, br_remote_done, br);
	}
	br->waiting = r == -EREMOTE || r == -ENOTCONN;
	if (br->waiting)
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "a clone's read waits for its base %s: %s",
				br->base.volume, r == -EREMOTE ? "the volume has no owner now"
				: "its owner is not connected");
	if (r == 0)
		br->asking = true;
	else if (passing(r))
		br_again(br, r);
	else
		br_finish(br, r);
}

int baseread_read(void *ctx, const struct engine_base *base, uint64_t lba, uint32_t nblocks,
		  void *buf, engine_cb cb, void *arg)
{
	struct replicas *rs = ctx;
	struct bread *br;

	if (rs->closing)
		return -ESHUTDOWN;
	if (!base || !buf || !cb || nblocks == 0 || nblocks > PEER_LAYER_READ_MAX_BLOCKS)
		return -EINVAL;
	br = calloc(1, sizeof(*br));
	if (!br)
		return -ENOMEM;
	*br = (struct bread){ .rs = rs, .base = *base, .lba = lba, .nblocks = nblocks,
			      .buf = buf, .cb = cb, .arg = arg, .started_ms = now_ms() };
	/* from a timer: the engine's callback never runs inside its own call */
	if (loop_timer_add(rs->loop, 0, br_try, br, &br->timer) < 0) {
		free(br);
		return -ENOMEM;
	}
	br->next = rs->breads;
	rs->breads = br;
	return 0;
}

void baseread_cancel_all(struct replicas *rs)
{
	struct bread *br = rs->breads;

	/* those still asking end through their reply (-ECONNRESET, closing); a local read
	 * ends with the engine */
	while (br) {
		struct bread *next = br->next;

		if (!br->asking)
			br_finish(br, -ESHUTDOWN);
		br = next;
	}
}

unsigned baseread_waiting(const struct replicas *rs, const char *volume)
{
	unsigned n = 0;

	for (const struct bread *br = rs ? rs->breads : NULL; br; br = br->next)
		n += br->waiting && strcmp(br->base.volume, volume) == 0;
	return n;
}

/* ---- the base of a family ---- */

void baseread_base_of(const struct layout_volume *rec, struct engine_base *out)
{
	*out = (struct engine_base){ .uid = rec->base.family, .layer = rec->base.layer,
				     .blocks = rec->size / ENGINE_BLOCK_SIZE };
	snprintf(out->volume, sizeof(out->volume), "%s", rec->base.volume);
}

int baseread_family_base(struct replicas *rs, uint64_t uid, const char *name)
{
	struct engine_flatten_status fl;
	struct cluster_volume v;
	struct engine_base base;

	if (cluster_volume_get(rs->cluster, name, &v) < 0)
		return -ENOENT;
	/* flattened in this run: the record's base is on its way out (the map seen here
	 * may not show it yet), never set it again */
	if (!v.rec.base.volume[0] ||
	    (engine_flatten_status(rs->eng, name, &fl) == 0 && fl.finished && fl.result == 0))
		return engine_family_base_set(rs->eng, uid, NULL);
	baseread_base_of(&v.rec, &base);
	return engine_family_base_set(rs->eng, uid, &base);
}

/* ---- which layer a snapshot is ---- */

struct bfind {
	baseread_find_cb cb;
	void *arg;
	uint64_t family, layer, blocks;
	int res;
	struct loop_timer *timer;
};

static void bf_answer(void *arg)
{
	struct bfind *bf = arg;

	bf->cb(bf->arg, bf->res, bf->family, bf->layer, bf->blocks);
	free(bf);
}

/* This node runs the volume: its own catalog answers (from a timer, as a peer would). */
static int bf_local(struct replicas *rs, struct bfind *bf, const char *volume, const char *snap)
{
	uint64_t size = 0;

	bf->res = engine_snapshot_find(rs->eng, volume, snap, &bf->family, &bf->layer, &size);
	bf->blocks = (size + ENGINE_BLOCK_SIZE - 1) / ENGINE_BLOCK_SIZE;
	return loop_timer_add(rs->loop, 0, bf_answer, bf, &bf->timer);
}

static void bf_found(void *arg, int res, uint64_t family, uint64_t layer, uint64_t blocks)
{
	struct bfind *bf = arg;

	bf->cb(bf->arg, res, family, layer, blocks);
	free(bf);
}

int baseread_find(struct replicas *rs, const char *volume, const char *snap,
		  baseread_find_cb cb, void *arg)
{
	struct bfind *bf = calloc(1, sizeof(*bf));
	struct bread probe = { .rs = rs };
	struct rnode *n;
	uint64_t uid;
	int r;

	if (!bf)
		return -ENOMEM;
	bf->cb = cb;
	bf->arg = arg;
	if (engine_volume_family(rs->eng, volume, &uid) == 0 &&
	    cluster_volume_owned(rs->cluster, volume, NULL)) {
		r = bf_local(rs, bf, volume, snap);
	} else {
		snprintf(probe.base.volume, sizeof(probe.base.volume), "%s", volume);
		n = br_owner(&probe, &r);
		if (n)
			r = layer_find(n->conn, volume, snap, rs->timeout_ms, bf_found, bf);
	}
	if (r < 0)
		free(bf);
	return r;
}
