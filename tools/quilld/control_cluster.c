/* tools/quilld/control_cluster.c — cluster.status, cluster.nodes, cluster.node_out and
 * cluster.node_in (docs/control.md): the cluster map as this node sees it, its lease,
 * and why client I/O waits when it does. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "cluster/cluster.h"
#include "cluster/placement.h"
#include "engine/engine.h"
#include "replication/orphans.h"
#include "tools/control_proto.h"
#include "tools/quilld/control_internal.h"

static struct json_object *node_json(const struct cluster_node *n)
{
	struct json_object *o = json_object_new_object();

	ctl_add_str(o, "id", n->rec.id);
	ctl_add_str(o, "state", n->up ? "up" : "down");
	ctl_add_bool(o, "out", n->out);
	ctl_add_bool(o, "self", n->self);
	ctl_add_bool(o, "compatible", n->compatible);
	ctl_add_str(o, "failure_domain", n->rec.domain);
	ctl_add_str(o, "nbd", n->rec.nbd);
	ctl_add_str(o, "control", n->rec.control);
	ctl_add_str(o, "peer", n->rec.peer);
	ctl_add_int(o, "format_version", n->rec.format_version);
	ctl_add_int(o, "protocol_version", n->rec.protocol_version);
	ctl_add_int(o, "up_since", n->rec.up_since);
	if (n->has_space) {
		struct json_object *sp = json_object_new_object();

		ctl_add_int(sp, "raw_bytes", (int64_t)n->space.raw);
		ctl_add_int(sp, "used_bytes", (int64_t)n->space.used);
		ctl_add_int(sp, "usable_bytes", (int64_t)n->space.usable);
		json_object_object_add(o, "space", sp);
	}
	return o;
}

/* ---- the cluster's space (docs/cluster.md, "Space") ---- */

/* A policy shown: replicas R (k 0) or ec K+M. */
struct space_policy {
	unsigned k, m, replicas;
};

#define SPACE_POLICIES 32
#define SPACE_DOMAINS 256

static void policy_add(struct space_policy *p, size_t *n, unsigned k, unsigned m, unsigned r)
{
	for (size_t i = 0; i < *n; i++)
		if (p[i].k == k && p[i].m == m && p[i].replicas == r)
			return;
	if (*n < SPACE_POLICIES)
		p[(*n)++] = (struct space_policy){ k, m, r };
}

/* Replicas 2 and 3, and each other policy of a volume in the map. */
static size_t space_policies(struct control *ctl, struct space_policy *p)
{
	struct cluster_volume *vols;
	size_t n = 0, nv;

	policy_add(p, &n, 0, 0, 2);
	policy_add(p, &n, 0, 0, 3);
	if (cluster_volumes(ctl->cluster, &vols, &nv) < 0)
		return n;
	for (size_t i = 0; i < nv; i++)
		policy_add(p, &n, vols[i].rec.ec_k, vols[i].rec.ec_k ? vols[i].rec.ec_m : 0,
			   vols[i].rec.ec_k ? 0 : vols[i].rec.replicas);
	free(vols);
	return n;
}

/* Does node n count towards the cluster's space: up, in, compatible, and its space
 * published? (A down node's record went with its lease.) */
static bool space_counted(const struct cluster_node *n)
{
	return n->up && !n->out && n->compatible && n->has_space;
}

/* The usable share of each failure domain of the counted nodes, into cap: their
 * number. */
static size_t space_domains(const struct cluster_node *nodes, size_t n, uint64_t *cap)
{
	const char *names[SPACE_DOMAINS];
	size_t nd = 0, d;

	for (size_t i = 0; i < n; i++) {
		if (!space_counted(&nodes[i]))
			continue;
		for (d = 0; d < nd && strcmp(names[d], nodes[i].rec.domain) != 0; d++)
			;
		if (d == nd && nd == SPACE_DOMAINS)
			continue; /* more domains than shown: the policies are a lower bound */
		if (d == nd) {
			names[nd] = nodes[i].rec.domain;
			cap[nd++] = 0;
		}
		cap[d] += nodes[i].space.usable;
	}
	return nd;
}

/* "space": the counted nodes' raw, used and usable bytes summed, and "policies": what
 * their failure domains hold of volume data under each policy (placement_usable). */
static struct json_object *space_json(struct control *ctl, const struct cluster_node *nodes,
				      size_t n)
{
	struct json_object *o = json_object_new_object(), *arr = json_object_new_array();
	struct space_policy pol[SPACE_POLICIES];
	uint64_t cap[SPACE_DOMAINS], raw = 0, used = 0, usable = 0;
	size_t nd = space_domains(nodes, n, cap), np = space_policies(ctl, pol), counted = 0;
	char name[32];

	for (size_t i = 0; i < n; i++) {
		if (!space_counted(&nodes[i]))
			continue;
		counted++;
		raw += nodes[i].space.raw;
		used += nodes[i].space.used;
		usable += nodes[i].space.usable;
	}
	ctl_add_int(o, "nodes", (int64_t)counted);
	ctl_add_int(o, "failure_domains", (int64_t)nd);
	ctl_add_int(o, "raw_bytes", (int64_t)raw);
	ctl_add_int(o, "used_bytes", (int64_t)used);
	ctl_add_int(o, "usable_bytes", (int64_t)usable);
	for (size_t i = 0; i < np; i++) {
		struct json_object *p = json_object_new_object();
		unsigned copies = pol[i].k ? pol[i].k + pol[i].m : pol[i].replicas;

		ctl_policy_name(name, sizeof(name), pol[i].replicas, pol[i].k, pol[i].m);
		ctl_add_str(p, "policy", name);
		ctl_add_int(p, "usable_bytes", (int64_t)placement_usable(cap, nd, copies,
									pol[i].k ? pol[i].k : 1));
		json_object_array_add(arr, p);
	}
	json_object_object_add(o, "policies", arr);
	return o;
}

static int by_id(const void *a, const void *b)
{
	return strcmp(((const struct cluster_node *)a)->rec.id,
		      ((const struct cluster_node *)b)->rec.id);
}

/* Adds "nodes": [...] to o, and with_space, the cluster's "space". */
static int add_nodes(struct control *ctl, struct json_object *o, bool with_space)
{
	struct cluster_node *nodes;
	struct json_object *arr;
	size_t n;
	int r = cluster_nodes(ctl->cluster, &nodes, &n);

	if (r < 0)
		return r;
	qsort(nodes, n, sizeof(*nodes), by_id);
	arr = json_object_new_array();
	for (size_t i = 0; i < n; i++)
		json_object_array_add(arr, node_json(&nodes[i]));
	json_object_object_add(o, "nodes", arr);
	if (with_space)
		json_object_object_add(o, "space", space_json(ctl, nodes, n));
	free(nodes);
	return 0;
}

struct json_object *ctl_single_node(void)
{
	return ctl_error(ENOTSUP, "this node is not part of a cluster (quilld runs without "
			 "--etcd-endpoints)");
}

/* Why client I/O waits, in a sentence ("" when it does not). */
static void io_wait_reason(const struct cluster_info *ci, char *buf, size_t len)
{
	if (ci->lease_valid && ci->lapsed)
		snprintf(buf, len, "%u claims of this node lapsed with its lease: taking them "
			 "again (%s)", ci->lapsed, ci->state);
	else if (ci->lease_valid)
		buf[0] = '\0';
	else if (!ci->lease_id)
		snprintf(buf, len, "this node holds no lease (%s)", ci->state);
	else if (!ci->etcd_ok)
		snprintf(buf, len, "the lease expired: etcd cannot be reached (%s)", ci->etcd_error);
	else
		snprintf(buf, len, "the lease expired: %s", ci->state);
}

static struct json_object *cmd_cluster_status(struct control *ctl, struct json_object *req)
{
	struct json_object *v = ctl_ok(), *c, *lease, *io;
	struct cluster_info ci;
	char why[1024];

	(void)req;
	if (!ctl->cluster) {
		json_object_object_add(v, "cluster", NULL);
		return v;
	}
	cluster_info(ctl->cluster, &ci);
	c = json_object_new_object();
	ctl_add_str(c, "prefix", ci.prefix);
	ctl_add_str(c, "node_id", ci.node_id);
	ctl_add_str(c, "etcd_endpoint", ci.endpoint);
	ctl_add_bool(c, "etcd_reachable", ci.etcd_ok);
	ctl_add_str(c, "etcd_error", ci.etcd_error);
	ctl_add_str(c, "state", ci.state);
	ctl_add_int(c, "map_revision", ci.map_revision);
	json_object_object_add(v, "cluster", c);
	lease = json_object_new_object();
	snprintf(why, sizeof(why), "%llx", (unsigned long long)ci.lease_id);
	ctl_add_str(lease, "id", ci.lease_id ? why : "");
	ctl_add_int(lease, "ttl_s", ci.ttl_s);
	ctl_add_bool(lease, "valid", ci.lease_valid);
	ctl_add_int(lease, "remaining_ms", ci.lease_valid ? ci.lease_remaining_ms : 0);
	json_object_object_add(v, "lease", lease);
	io = json_object_new_object();
	io_wait_reason(&ci, why, sizeof(why));
	ctl_add_str(io, "state", why[0] ? "waiting" : "serving");
	ctl_add_str(io, "why", why);
	ctl_add_str(io, "last_wait", ci.last_wait);
	ctl_add_int(io, "requests_waiting", blk_guard_waiting(ctl->guard));
	json_object_object_add(v, "io", io);
	if (ctl->replicas)
		json_object_object_add(v, "scrub", ctl_scrub_status_json(ctl));
	if (add_nodes(ctl, v, true) < 0 || ctl_cluster_add_volumes(ctl, v) < 0) {
		json_object_put(v);
		return ctl_error(ENOMEM, "out of memory");
	}
	return v;
}

static struct json_object *cmd_cluster_nodes(struct control *ctl, struct json_object *req)
{
	struct json_object *v;

	(void)req;
	if (!ctl->cluster)
		return ctl_single_node();
	v = ctl_ok();
	if (add_nodes(ctl, v, false) < 0) {
		json_object_put(v);
		return ctl_error(ENOMEM, "out of memory");
	}
	return v;
}

/* The sentence of the mark that just finished: its finish runs from the callback,
 * on the loop's thread, before the next one can. */
static char mark_msg[256];

static struct json_object *mark_finish(struct control *ctl, struct json_object *req, int res)
{
	(void)ctl;
	if (res < 0)
		return ctl_error(-res, "node '%s': %s", ctl_get_string(req, "id"),
				 mark_msg[0] ? mark_msg : strerror(-res));
	return ctl_ok();
}

static void mark_done(void *arg, int res, const char *msg)
{
	snprintf(mark_msg, sizeof(mark_msg), "%s", msg ? msg : "");
	ctl_call_done(arg, res);
}

static struct json_object *node_mark(struct control *ctl, struct json_object *req, bool out)
{
	const char *id = ctl_get_string(req, "id");
	struct ctl_call *call;
	int r;

	if (!ctl->cluster)
		return ctl_single_node();
	if (!id)
		return ctl_error(EINVAL, "which node? (\"id\")");
	if (!layout_id_valid(id))
		return ctl_error(EINVAL, "'%.80s' is not a node id (1 to %d of A-Z a-z 0-9 . _ -)",
				 id, LAYOUT_ID_MAX);
	call = ctl_call_new(ctl, req, mark_finish);
	mark_msg[0] = '\0';
	r = cluster_node_mark(ctl->cluster, id, out, mark_done, call);
	return ctl_call_started(call, r);
}

static struct json_object *cmd_node_out(struct control *ctl, struct json_object *req)
{
	return node_mark(ctl, req, true);
}

static struct json_object *cmd_node_in(struct control *ctl, struct json_object *req)
{
	return node_mark(ctl, req, false);
}

/* ---- node.held: the copies this node keeps for other nodes' segments ---- */

static int held_one(void *arg, const struct engine_held_info *h)
{
	struct json_object *o = json_object_new_object();
	char uid[24];

	snprintf(uid, sizeof(uid), "%016llx", (unsigned long long)h->uid);
	ctl_add_str(o, "family", uid);
	ctl_add_int(o, "segment", h->sno);
	ctl_add_int(o, "epoch", (int64_t)h->epoch);
	ctl_add_str(o, "state", h->sealed ? "sealed" : "open");
	ctl_add_int(o, "length", h->length);
	ctl_add_int(o, "slot", h->slot);
	json_object_array_add(arg, o);
	return 0;
}

/* A fragment of another node's (or this node's own) erasure-coded segment. */
static int frag_one(void *arg, const struct engine_frag_info *f)
{
	struct json_object *o = json_object_new_object();
	char uid[24], crc[12];

	snprintf(uid, sizeof(uid), "%016llx", (unsigned long long)f->uid);
	snprintf(crc, sizeof(crc), "%08x", f->frag_crc);
	ctl_add_str(o, "family", uid);
	ctl_add_int(o, "segment", f->sno);
	ctl_add_int(o, "epoch", (int64_t)f->epoch);
	ctl_add_int(o, "index", f->index);
	ctl_add_int(o, "k", f->k);
	ctl_add_int(o, "m", f->m);
	ctl_add_int(o, "segment_blocks", f->seg_blocks);
	ctl_add_int(o, "image_blocks", f->image_blocks);
	ctl_add_str(o, "crc", crc);
	ctl_add_int(o, "slot", f->slot);
	json_object_array_add(arg, o);
	return 0;
}

static struct json_object *held_answer(struct control *ctl)
{
	struct json_object *v = ctl_ok(), *arr = json_object_new_array();
	struct json_object *frags = json_object_new_array();
	int r;

	json_object_object_add(v, "held", arr);
	json_object_object_add(v, "fragments", frags);
	r = engine_frag_list(ctl->eng, frag_one, frags);
	if (r == 0)
		r = engine_held_list(ctl->eng, held_one, arr);
	if (r < 0) {
		json_object_put(v);
		return ctl_error(-r, "cannot list the held copies: %s", strerror(-r));
	}
	return v;
}

/* --orphans: the records and the sentence of the report that just finished (its
 * finish runs from the callback, before the next one can). */
static const struct orphan_records *orphans_recs;
static char orphans_msg[256];

/* Each copy of the answer judged against the records: "orphan", "why", "volume". */
static void orphans_judge_all(struct control *ctl, struct json_object *arr, unsigned *n)
{
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *o = json_object_array_get_idx(arr, i);
		uint64_t uid = strtoull(json_object_get_string(json_object_object_get(o, "family")),
					NULL, 16);
		uint32_t sno = (uint32_t)json_object_get_int64(json_object_object_get(o, "segment"));
		const char *vol;
		enum orphan_why why = orphans_judge(orphans_recs, orphans_self(ctl->orphans), uid,
						    sno, orphans_owned, ctl->orphans, &vol);
		bool orphan = why != ORPHAN_KEPT && why != ORPHAN_OWNED;

		ctl_add_bool(o, "orphan", orphan);
		ctl_add_str(o, "why", orphans_why_str(why));
		ctl_add_str(o, "volume", vol);
		*n += orphan;
	}
}

static struct json_object *orphans_finish(struct control *ctl, struct json_object *req,
					  int res)
{
	struct json_object *v, *arr;
	unsigned n = 0;

	(void)req;
	if (res < 0)
		return ctl_error(-res, "cannot read the segment records: %s (no copy is dropped "
				 "while they cannot be read)",
				 orphans_msg[0] ? orphans_msg : strerror(-res));
	v = held_answer(ctl);
	arr = json_object_object_get(v, "held");
	if (arr) {
		orphans_judge_all(ctl, arr, &n);
		ctl_add_int(v, "orphans", n);
	}
	return v;
}

static void orphans_judged(void *arg, int res, const char *msg,
			   const struct orphan_records *recs)
{
	snprintf(orphans_msg, sizeof(orphans_msg), "%s", msg ? msg : "");
	orphans_recs = recs;
	ctl_call_done(arg, res);
	orphans_recs = NULL;
}

static struct json_object *cmd_node_held(struct control *ctl, struct json_object *req)
{
	struct ctl_call *call;

	if (!ctl_get_bool(req, "orphans"))
		return held_answer(ctl);
	if (!ctl->cluster)
		return ctl_single_node();
	if (!ctl->orphans)
		return ctl_error(ENOTSUP, "this node keeps no copies for others (no peer listener)");
	call = ctl_call_new(ctl, req, orphans_finish);
	orphans_msg[0] = '\0';
	return ctl_call_started(call, orphans_report_async(ctl->orphans, orphans_judged, call));
}

const struct control_cmd ctl_cluster_commands[] = {
	{ CONTROL_CMD_NODE_HELD, cmd_node_held, { { "orphans", CTL_BOOL } } },
	{ CONTROL_CMD_CLUSTER_STATUS, cmd_cluster_status, { { NULL } } },
	{ CONTROL_CMD_CLUSTER_NODES, cmd_cluster_nodes, { { NULL } } },
	{ CONTROL_CMD_NODE_OUT, cmd_node_out, { { "id", CTL_STRING } } },
	{ CONTROL_CMD_NODE_IN, cmd_node_in, { { "id", CTL_STRING } } },
	{ NULL, NULL, { { NULL } } },
};
