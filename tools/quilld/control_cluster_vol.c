/* tools/quilld/control_cluster_vol.c — volumes in the cluster map (docs/cluster.md,
 * "Volumes"): volume.create and volume.rm on a node of a cluster, volume.claim,
 * volume.release, volume.segment, and the "cluster" object of a volume.
 *
 * A create registers the record (and this node's claim) in etcd first, then creates
 * the local volume, then marks the record ready; if the local create fails, the record
 * is removed. A node that dies in between leaves a record "creating" whose claim
 * lapses with its lease: the same create, retried on any node, takes it over. A remove
 * deletes the local volume first, then the record (a retry finishes a half-done one).
 * Each etcd step runs on the cluster's thread (cluster_volume_async), each engine step
 * on the loop: the connection waits, the loop goes on.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "common/err.h"
#include "common/log.h"
#include "common/volspec.h"
#include "engine/engine.h"
#include "replication/baseread.h"
#include "replication/replica.h"
#include "tools/control_proto.h"
#include "tools/quilld/control_internal.h"

#define LOG_TAG "control"

/* One command's chain of calls. */
struct vol_job {
	struct control *ctl;
	struct ctl_call *call;
	struct cluster_vol_req req;
	uint64_t size;
	unsigned flags;  /* create: the engine's */
	int local_res;   /* the engine step's answer, when a later step undoes it */
	char msg[512];   /* the sentence of the answer */
};

/* The job whose answer is being built: its finish runs inside ctl_call_done(). */
static struct vol_job *finishing;

static void job_end(struct vol_job *job, int res, const char *msg)
{
	if (msg && msg != job->msg)
		snprintf(job->msg, sizeof(job->msg), "%s", msg);
	finishing = job;
	ctl_call_done(job->call, res);
	finishing = NULL;
	free(job->req.segs);
	free(job);
}

static struct vol_job *job_new(struct control *ctl, struct json_object *req, ctl_finish_fn fin,
			       enum cluster_vol_op op, const char *name)
{
	struct vol_job *job = calloc(1, sizeof(*job));

	if (!job)
		return NULL;
	job->ctl = ctl;
	job->call = ctl_call_new(ctl, req, fin);
	job->req.op = op;
	snprintf(job->req.vol.name, sizeof(job->req.vol.name), "%s", name);
	return job;
}

/* Starts job's cluster call with cb: the answer to give now (NULL: it comes later). */
static struct json_object *job_started(struct vol_job *job, int r)
{
	struct json_object *ans;

	if (r == 0)
		return ctl_call_started(job->call, 0);
	finishing = job;
	ans = ctl_call_started(job->call, r);
	finishing = NULL;
	free(job);
	return ans;
}

static struct json_object *job_start(struct vol_job *job, cluster_cb cb)
{
	return job_started(job, cluster_volume_async(job->ctl->cluster, &job->req, cb, job));
}

/* The answer after a job failed. */
static struct json_object *job_error(int res, const char *name)
{
	const char *msg = finishing && finishing->msg[0] ? finishing->msg : err_str(-res);

	if (res == -EINVAL && !finishing)
		return ctl_volume_error(res, name);
	return ctl_error(-res, "%s", msg[0] ? msg : "failed");
}

/* ---- the "cluster" object of a volume ---- */

/* The "copies" of a volume this node replicates: the holders of its open segments,
 * and whether it runs below R (degraded) or its writes wait. */
static struct json_object *copies_json(const struct replica_status *st)
{
	struct json_object *o = json_object_new_object(), *segs = json_object_new_array();
	const struct catchup_status *cu = &st->catchup;

	ctl_add_int(o, "replicas", st->replicas);
	ctl_add_int(o, "min_replicas", st->min_replicas);
	ctl_add_int(o, "current", st->copies);
	ctl_add_bool(o, "degraded", st->degraded);
	ctl_add_bool(o, "waiting", st->waiting);
	ctl_add_str(o, "why", st->why);
	if (cu->segs_left || cu->copied || cu->no_source || cu->rebuild || cu->down_holders ||
	    cu->frags_unplaced) {
		struct json_object *c = json_object_new_object();

		ctl_add_int(c, "segments_left", cu->segs_left);
		ctl_add_int(c, "bytes_left", (int64_t)cu->bytes_left);
		ctl_add_int(c, "copying", cu->copying);
		ctl_add_int(c, "no_source", cu->no_source);
		ctl_add_int(c, "from_holders", cu->remote);
		ctl_add_int(c, "rebuild_segments", cu->rebuild);
		ctl_add_int(c, "down_holder_segments", cu->down_holders);
		ctl_add_int(c, "fragments_unplaced", cu->frags_unplaced);
		ctl_add_int(c, "out_in_seconds", (int64_t)((cu->out_in_ms + 999) / 1000));
		ctl_add_int(c, "bytes_copied", (int64_t)cu->copied);
		ctl_add_int(c, "bytes_per_second", (int64_t)cu->rate);
		/* the owner's budget now, over all its copies, and why (catchup_rate.h) */
		ctl_add_int(c, "budget_bytes_per_second", (int64_t)cu->budget);
		ctl_add_str(c, "budget_why", catchup_rate_why_str(cu->budget_why));
		ctl_add_int(c, "client_latency_us", (int64_t)cu->client_us);
		ctl_add_int(c, "client_latency_alone_us", (int64_t)cu->client_base_us);
		ctl_add_int(c, "client_iops", (int64_t)cu->client_iops);
		ctl_add_int(c, "client_iops_alone", (int64_t)cu->client_base_iops);
		ctl_add_int(c, "client_kept_percent", cu->client_kept_pct);
		/* -1: no rate yet to tell */
		ctl_add_int(c, "eta_seconds", !cu->bytes_left ? 0 : cu->rate ?
			    (int64_t)((cu->bytes_left + cu->rate - 1) / cu->rate) : -1);
		json_object_object_add(o, "catchup", c);
	}
	for (unsigned i = 0; i < st->nsegs; i++) {
		struct json_object *s = json_object_new_object(), *h = json_object_new_array();

		ctl_add_int(s, "segment", st->segs[i].sno);
		ctl_add_bool(s, "placed", st->segs[i].placed);
		for (unsigned k = 0; k < st->segs[i].nholders; k++)
			json_object_array_add(h, json_object_new_string(st->segs[i].holders[k]));
		json_object_object_add(s, "holders", h);
		json_object_array_add(segs, s);
	}
	json_object_object_add(o, "open_segments", segs);
	return o;
}

/* The durability policy: "replicas R" or "ec K+M", and for an EC volume its code and
 * what its sealed segments are: on its owner (st: its status) how many are encoded
 * (a stripe recorded), how many of those have no replica left (the default;
 * QUILL_EC_KEEP_REPLICAS=1 keeps them), how many still only replicated, and its reads from fragments (docs/erasure-coding.md). */
static void add_policy(struct json_object *o, const struct layout_volume *rec,
		       const struct replica_status *st)
{
	char buf[512];

	ctl_policy_name(buf, sizeof(buf), rec->replicas, rec->ec_k, rec->ec_m);
	ctl_add_str(o, "policy", buf);
	if (!rec->ec_k)
		return;
	ctl_add_int(o, "ec_k", rec->ec_k);
	ctl_add_int(o, "ec_m", rec->ec_m);
	if (!st) {
		ctl_add_str(o, "sealed_segments", "replicated, then encoded by the owner (its "
			    "volume info counts them)");
		return;
	}
	ctl_add_int(o, "segments_replicated", st->encode.replicated);
	ctl_add_int(o, "segments_encoded", st->encode.encoded);
	ctl_add_int(o, "segments_encoded_no_replicas", st->encode.encoded_bare);
	ctl_add_int(o, "segments_degraded", st->encode.degraded);
	ctl_add_int(o, "segments_encoding", st->encode.encoding);
	ctl_add_int(o, "encoded_bytes", (int64_t)st->encode.encoded_bytes);
	ctl_add_int(o, "encode_ns", (int64_t)st->encode.encode_ns);
	ctl_add_frag(o, &st->frag);
	snprintf(buf, sizeof(buf), "%u encoded, %u replicated only%s%s; %u encoded with no "
		 "replica left (the others keep theirs); %u degraded (a fragment's node down "
		 "or out)", st->encode.encoded, st->encode.replicated,
		 st->encode.why[0] ? ": " : "", st->encode.why, st->encode.encoded_bare,
		 st->encode.degraded);
	ctl_add_str(o, "sealed_segments", buf);
}

static struct json_object *cluster_vol_json(struct control *ctl, const struct cluster_volume *v)
{
	struct json_object *o = json_object_new_object();
	struct replica_status st;
	bool owner = replica_status(ctl->replicas, v->rec.name, &st) == 0;
	char step[96];

	ctl_add_int(o, "replicas", v->rec.replicas);
	ctl_add_int(o, "min_replicas", v->rec.min_replicas);
	add_policy(o, &v->rec, owner ? &st : NULL);
	ctl_add_str(o, "owner", v->claimed ? v->claim.node : "");
	ctl_add_str(o, "last_owner", v->rec.owner);
	ctl_add_int(o, "epoch", v->claimed ? v->claim.epoch : v->rec.epoch);
	ctl_add_str(o, "state", v->rec.state == LAYOUT_VOL_READY ? "ready" : "creating");
	ctl_add_int(o, "created", v->rec.created);
	if (v->rec.base.volume[0]) { /* a clone across owners */
		struct cluster_volume p;
		char spec[2 * LAYOUT_ID_MAX + 2];

		snprintf(spec, sizeof(spec), "%s@%s", v->rec.base.volume, v->rec.base.snap);
		ctl_add_str(o, "base", spec);
		ctl_add_int(o, "base_waiting", baseread_waiting(ctl->replicas, v->rec.base.volume));
		ctl_add_str(o, "base_owner", cluster_volume_get(ctl->cluster, v->rec.base.volume,
								 &p) == 0 && p.claimed
						     ? p.claim.node : "");
	}
	if (owner) {
		struct json_object *cp = copies_json(&st), *sc = ctl_scrub_last_json(ctl, v->rec.name);

		if (sc)
			json_object_object_add(cp, "scrub", sc);
		json_object_object_add(o, "copies", cp);
	}
	if (ctl->volume_takeover &&
	    ctl->volume_takeover(ctl->volume_owned_arg, v->rec.name, step, sizeof(step)))
		ctl_add_str(o, "taking_over", step);
	return o;
}

void ctl_cluster_add_volume(struct control *ctl, const char *name, struct json_object *o)
{
	struct cluster_volume v;

	if (!ctl->cluster)
		return;
	json_object_object_add(o, "cluster", cluster_volume_get(ctl->cluster, name, &v) == 0
				? cluster_vol_json(ctl, &v) : NULL);
}

int ctl_cluster_add_volumes(struct control *ctl, struct json_object *o)
{
	struct cluster_volume *vols;
	struct json_object *arr;
	size_t n;
	int r = cluster_volumes(ctl->cluster, &vols, &n);

	if (r < 0)
		return r;
	arr = json_object_new_array();
	for (size_t i = 0; i < n; i++) {
		struct json_object *v = cluster_vol_json(ctl, &vols[i]);

		ctl_add_str(v, "name", vols[i].rec.name);
		ctl_add_int(v, "size", (int64_t)vols[i].rec.size);
		json_object_array_add(arr, v);
	}
	json_object_object_add(o, "volumes", arr);
	free(vols);
	return 0;
}

/* ---- create ---- */

static struct json_object *create_finish(struct control *ctl, struct json_object *req, int res)
{
	const char *name = ctl_get_string(req, "name");

	return res < 0 ? job_error(res, name) : ctl_volume_answer(ctl, 0, name);
}

static void create_undone(void *arg, int res, const char *msg)
{
	struct vol_job *job = arg;

	if (res < 0)
		log_msg(LOG_WARN, LOG_TAG, "volume %s: its record stays \"creating\" (%s): a retry "
			"of the create takes it over", job->req.vol.name, msg);
	job_end(job, job->local_res, NULL);
}

/* This node owns name now: its copies start before any client can attach. */
static void owned(struct control *ctl, const struct vol_job *job)
{
	if (ctl->volume_owned)
		ctl->volume_owned(ctl->volume_owned_arg, job->req.vol.name, job->req.epoch,
				  job->req.vol.replicas,
				  job->req.vol.ec_k ? job->req.vol.replicas : 0);
}

static void create_ready(void *arg, int res, const char *msg)
{
	struct vol_job *job = arg;

	if (res == 0)
		owned(job->ctl, job);
	job_end(job, res, msg);
}

/* A clone across owners: its root reads through the base its record names, before
 * any client can attach it. */
static int set_base(const struct vol_job *job)
{
	struct engine_base base;
	uint64_t uid;
	int r = engine_volume_family(job->ctl->eng, job->req.vol.name, &uid);

	baseread_base_of(&job->req.vol, &base);
	return r < 0 ? r : engine_family_base_set(job->ctl->eng, uid, &base);
}

static void create_local_done(void *arg, int res)
{
	struct vol_job *job = arg;
	struct json_object *err;
	int r;

	/* a create taken over may find the local volume there already */
	if (res == -EEXIST && job->req.resumed)
		res = 0;
	if (res == 0 && job->req.vol.base.volume[0])
		res = set_base(job);
	job->local_res = res;
	job->req.op = res < 0 ? CLUSTER_VOL_REMOVE : CLUSTER_VOL_READY;
	if (res < 0) {
		err = ctl_volume_error(res, job->req.vol.name);
		snprintf(job->msg, sizeof(job->msg), "%s",
			 json_object_get_string(json_object_object_get(err, "error")));
		json_object_put(err);
	}
	r = cluster_volume_async(job->ctl->cluster, &job->req,
				 res < 0 ? create_undone : create_ready, job);
	if (r < 0)
		job_end(job, res < 0 ? res : r, NULL);
}

static void create_registered(void *arg, int res, const char *msg)
{
	struct vol_job *job = arg;
	int r;

	if (res < 0) {
		job_end(job, res, msg);
		return;
	}
	r = engine_volume_create_async(job->ctl->eng, job->req.vol.name, job->size, job->flags,
				       create_local_done, job);
	if (r < 0)
		create_local_done(job, r);
}

/* An EC volume's code (--ec K+M, docs/erasure-coding.md): K+M failure domains up and
 * in, so that every fragment of a stripe has its own; its open segment is replicated
 * M+1 ways (R = M+1, all needed). Never with --replicas: the code says how many. */
static struct json_object *pick_ec(struct control *ctl, struct json_object *req,
				   const char *name, struct layout_volume *vol)
{
	char domains[512];
	unsigned nd = cluster_domains(ctl->cluster, domains, sizeof(domains));
	const char *text = ctl_get_string(req, "ec");

	if (json_object_object_get_ex(req, "replicas", NULL))
		return ctl_error(EINVAL, "volume '%s': --ec and --replicas exclude each other (an "
				 "EC volume's open segment has M+1 copies)", name);
	if (!text || layout_ec_parse(text, &vol->ec_k, &vol->ec_m) < 0)
		return ctl_error(EINVAL, "volume '%s': --ec '%s' is not a code K+M with K 1 to "
				 "%u, M 1 to %u, K+M at most %u (e.g. 2+1, 4+2, 8+3)", name,
				 text ? text : "", LAYOUT_EC_K_MAX, LAYOUT_EC_M_MAX,
				 LAYOUT_EC_N_MAX);
	if (vol->ec_k + vol->ec_m > nd)
		return ctl_error(ERANGE, "volume '%s': --ec %u+%u needs %u failure domains up and "
				 "in, and the cluster has %u (%s)", name, vol->ec_k, vol->ec_m,
				 vol->ec_k + vol->ec_m, nd, nd ? domains : "none");
	vol->replicas = vol->ec_m + 1;
	return NULL;
}

/* R: the request's, or the default: 3 when the map has 3 failure domains up and in;
 * or the open segment's M+1 copies of an EC volume (pick_ec). */
static struct json_object *pick_replicas(struct control *ctl, struct json_object *req,
					 const char *name, struct layout_volume *vol)
{
	char domains[512];
	unsigned nd;
	uint64_t r = 0;

	if (json_object_object_get_ex(req, "ec", NULL))
		return pick_ec(ctl, req, name, vol);
	nd = cluster_domains(ctl->cluster, domains, sizeof(domains));
	if (json_object_object_get_ex(req, "replicas", NULL) &&
	    (ctl_get_u64(req, "replicas", &r) < 0 || r < 1 || r > LAYOUT_MAX_REPLICAS))
		return ctl_error(EINVAL, "volume '%s': --replicas is 1 to %u", name,
				 LAYOUT_MAX_REPLICAS);
	if (!r && nd < 3)
		return ctl_error(EINVAL, "volume '%s': the default of 3 replicas needs 3 failure "
				 "domains up and in, and the cluster has %u (%s): give --replicas "
				 "%u or fewer", name, nd, nd ? domains : "none", nd ? nd : 1);
	if (!r)
		r = 3;
	if (r > nd)
		return ctl_error(ERANGE, "volume '%s': %llu replicas need %llu failure domains up "
				 "and in, and the cluster has %u (%s)", name, (unsigned long long)r,
				 (unsigned long long)r, nd, nd ? domains : "none");
	vol->replicas = (uint32_t)r;
	return NULL;
}

bool ctl_cluster_volume_create(struct control *ctl, struct json_object *req, const char *name,
			       uint64_t size, unsigned flags, struct json_object **ans)
{
	struct vol_job *job = NULL;
	struct layout_volume pick = { 0 };

	if (!ctl->cluster) {
		uint64_t r = 1;

		if (json_object_object_get_ex(req, "ec", NULL)) {
			*ans = ctl_error(EINVAL, "volume '%s': this node is not part of a cluster "
					 "(quilld runs without --etcd-endpoints): no --ec", name);
			return true;
		}
		if (json_object_object_get_ex(req, "replicas", NULL) &&
		    (ctl_get_u64(req, "replicas", &r) < 0 || r != 1)) {
			*ans = ctl_error(EINVAL, "volume '%s': this node is not part of a cluster "
					 "(quilld runs without --etcd-endpoints): only --replicas 1",
					 name);
			return true;
		}
		return false; /* the single node's create */
	}
	if (!layout_id_valid(name))
		*ans = ctl_volume_error(-EINVAL, name);
	else if (!(*ans = pick_replicas(ctl, req, name, &pick)) &&
		 !(job = job_new(ctl, req, create_finish, CLUSTER_VOL_CREATE, name)))
		*ans = ctl_error(ENOMEM, "out of memory");
	if (*ans)
		return true;
	job->size = size;
	job->flags = flags;
	job->req.vol.size = size;
	job->req.vol.sector_size = flags & ENGINE_CREATE_SECTOR_4K ? ENGINE_SECTOR_SIZE_4K
								  : ENGINE_SECTOR_SIZE_DEFAULT;
	job->req.vol.replicas = pick.replicas;
	job->req.vol.ec_k = pick.ec_k;
	job->req.vol.ec_m = pick.ec_m;
	*ans = job_start(job, create_registered);
	return true;
}

/* ---- clone across owners ---- */

static void clone_found(void *arg, int res, uint64_t family, uint64_t layer, uint64_t blocks)
{
	struct vol_job *job = arg;
	struct layout_base *b = &job->req.vol.base;
	int r;

	if (res < 0) {
		snprintf(job->msg, sizeof(job->msg), "snapshot %s@%s: %s", b->volume, b->snap,
			 res == -ENOENT ? "no such snapshot (its owner says)"
			 : res == -ESTALE ? "its volume is changing owner: retry"
			 : err_str(-res));
		job_end(job, res, NULL);
		return;
	}
	b->family = family;
	b->layer = layer;
	job->size = blocks * ENGINE_BLOCK_SIZE;
	job->req.vol.size = job->size;
	r = cluster_volume_async(job->ctl->cluster, &job->req, create_registered, job);
	if (r < 0)
		job_end(job, r, NULL);
}

bool ctl_cluster_clone(struct control *ctl, struct json_object *req, const char *snap_spec,
		       const char *name, struct json_object **ans)
{
	char vol[VOLSPEC_NAME_MAX + 1], snap[VOLSPEC_NAME_MAX + 1];
	struct cluster_volume v;
	struct vol_job *job = NULL;
	struct layout_volume pick = { 0 };
	uint64_t uid;
	int r;

	/* the parent runs here (its owner, or layers a clone made here still reads):
	 * today's local clone; not in the map: the engine's answer */
	if (!ctl->cluster || !snap_spec || volspec_parse(snap_spec, vol, snap) < 0 || !snap[0] ||
	    engine_volume_family(ctl->eng, vol, &uid) == 0 ||
	    cluster_volume_get(ctl->cluster, vol, &v) < 0)
		return false;
	if (!ctl->replicas)
		*ans = ctl_error(ENOTSUP, "volume '%s' is not on this node, which serves no peers: "
				 "make the clone on a node of the cluster", vol);
	else if (!layout_id_valid(name))
		*ans = ctl_volume_error(-EINVAL, name);
	else if (!(*ans = pick_replicas(ctl, req, name, &pick)) &&
		 !(job = job_new(ctl, req, create_finish, CLUSTER_VOL_CREATE, name)))
		*ans = ctl_error(ENOMEM, "out of memory");
	if (*ans)
		return true;
	job->req.vol.replicas = pick.replicas;
	job->req.vol.ec_k = pick.ec_k;
	job->req.vol.ec_m = pick.ec_m;
	job->req.vol.sector_size = v.rec.sector_size;
	job->flags = v.rec.sector_size == ENGINE_SECTOR_SIZE_4K ? ENGINE_CREATE_SECTOR_4K : 0;
	snprintf(job->req.vol.base.volume, sizeof(job->req.vol.base.volume), "%s", vol);
	snprintf(job->req.vol.base.snap, sizeof(job->req.vol.base.snap), "%s", snap);
	r = baseread_find(ctl->replicas, vol, snap, clone_found, job);
	if (r == -EREMOTE)
		snprintf(job->msg, sizeof(job->msg), "volume '%s' has no owner now: claim it "
			 "(quill volume claim %s) on any node, then make the clone", vol, vol);
	else if (r == -ENOTCONN)
		snprintf(job->msg, sizeof(job->msg), "volume '%s': its owner node %s is not "
			 "connected to this node: retry", vol, v.claim.node);
	*ans = job_started(job, r);
	return true;
}

/* A flattened clone across owners: its record forgets the base (fenced), then its
 * engine family reads through none. One drop at a time per node; a status asked again
 * retries one that failed. */
struct base_drop {
	struct control *ctl;
	struct cluster_vol_req req;
	uint64_t uid;
};

static bool dropping;

static void base_dropped(void *arg, int res, const char *msg)
{
	struct base_drop *d = arg;

	dropping = false;
	if (res == 0 && engine_family_base_set(d->ctl->eng, d->uid, NULL) == 0)
		log_msg(LOG_INFO, LOG_TAG, "volume %s: flattened, its record names no base any "
			"more: its parent's snapshot may be removed", d->req.vol.name);
	else if (res < 0)
		log_msg(LOG_WARN, LOG_TAG, "volume %s: flattened, but its record still names its "
			"base: %s (asked again at the next flatten status)", d->req.vol.name, msg);
	free(d);
}

void ctl_cluster_flattened(struct control *ctl, const char *name)
{
	struct cluster_volume v;
	struct base_drop *d;
	uint64_t uid;

	if (!ctl->cluster || dropping || cluster_volume_get(ctl->cluster, name, &v) < 0 ||
	    !v.rec.base.volume[0] || !cluster_volume_owned(ctl->cluster, name, NULL) ||
	    engine_volume_family(ctl->eng, name, &uid) < 0 || !(d = calloc(1, sizeof(*d))))
		return;
	*d = (struct base_drop){ .ctl = ctl, .uid = uid, .req = { .op = CLUSTER_VOL_BASE_DROP } };
	snprintf(d->req.vol.name, sizeof(d->req.vol.name), "%s", name);
	if (cluster_volume_async(ctl->cluster, &d->req, base_dropped, d) < 0)
		free(d);
	else
		dropping = true;
}

/* ---- rm ---- */

static void removing(struct control *ctl, const char *name, bool on)
{
	if (ctl->volume_removing)
		ctl->volume_removing(ctl->volume_owned_arg, name, on);
}

/* Every end of a removal comes here (job_end, job_started): the takeovers may start
 * again for the name. */
static struct json_object *rm_finish(struct control *ctl, struct json_object *req, int res)
{
	const char *name = ctl_get_string(req, "name");

	removing(ctl, name, false);

	if (res == -EBUSY && finishing && !finishing->msg[0])
		return ctl_busy_error(ctl, name, "detach it first");
	if (res < 0 && finishing && !finishing->msg[0])
		return ctl_volume_error(res, name);
	return res < 0 ? job_error(res, name) : ctl_ok();
}

static void rm_recorded(void *arg, int res, const char *msg)
{
	job_end(arg, res, msg);
}

static void rm_local_done(void *arg, int res)
{
	struct vol_job *job = arg;
	int r;

	/* gone here already: a retry, or a volume whose data is elsewhere */
	if (res < 0 && res != -ENOENT) {
		job_end(job, res, NULL);
		return;
	}
	r = cluster_volume_async(job->ctl->cluster, &job->req, rm_recorded, job);
	if (r < 0)
		job_end(job, r, NULL);
}

struct json_object *ctl_cluster_refuse_base_rm(struct control *ctl, const char *spec)
{
	char vol[VOLSPEC_NAME_MAX + 1], snap[VOLSPEC_NAME_MAX + 1], names[256] = "";
	struct cluster_volume *vols;
	size_t n, used = 0;
	unsigned found = 0;

	if (!ctl->cluster || !spec || volspec_parse(spec, vol, snap) < 0 ||
	    cluster_volumes(ctl->cluster, &vols, &n) < 0)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const struct layout_base *b = &vols[i].rec.base;
		int w;

		if (!b->volume[0] || strcmp(b->volume, vol) != 0 ||
		    (snap[0] && strcmp(b->snap, snap) != 0))
			continue;
		w = snprintf(names + used, sizeof(names) - used, "%s%s (of %s@%s)",
			     found ? ", " : "", vols[i].rec.name, b->volume, b->snap);
		if (w > 0 && used + (size_t)w < sizeof(names))
			used += (size_t)w;
		found++;
	}
	free(vols);
	if (!found)
		return NULL;
	return ctl_error(EBUSY, "%s '%s' is the base of %s %s in the cluster: flatten %s "
			 "(quill flatten) or remove %s first", snap[0] ? "snapshot" : "volume",
			 spec, found > 1 ? "clones" : "clone", names, found > 1 ? "them" : "it",
			 found > 1 ? "them" : "it");
}

bool ctl_cluster_volume_rm(struct control *ctl, struct json_object *req, const char *name,
			   struct json_object **ans)
{
	struct cluster_volume v;
	struct vol_job *job;
	int r;

	if (!ctl->cluster || cluster_volume_get(ctl->cluster, name, &v) < 0)
		return false; /* not in the map: the local remove alone */
	if (v.claimed && !cluster_volume_owned(ctl->cluster, name, NULL))
		*ans = ctl_error(EBUSY, "volume '%s' is owned by node %s (epoch %lld): remove it "
				 "there", name, v.claim.node, (long long)v.claim.epoch);
	else if (!(job = job_new(ctl, req, rm_finish, CLUSTER_VOL_REMOVE, name)))
		*ans = ctl_error(ENOMEM, "out of memory");
	else {
		removing(ctl, name, true); /* until rm_finish: the layers go first */
		r = engine_volume_delete_async(ctl->eng, name, rm_local_done, job);
		/* -ENOENT, no local copy (a retry, or the data is on other nodes): the
		 * record alone */
		*ans = r == -ENOENT ? job_start(job, rm_recorded) : job_started(job, r);
	}
	return true;
}

/* ---- claim, release ---- */

static struct json_object *claim_finish(struct control *ctl, struct json_object *req, int res)
{
	struct json_object *v;

	(void)ctl;
	if (res < 0)
		return job_error(res, ctl_get_string(req, "name"));
	v = ctl_ok();
	if (finishing)
		ctl_add_int(v, "epoch", finishing->req.epoch);
	return v;
}

static void job_done(void *arg, int res, const char *msg)
{
	struct vol_job *job = arg;

	if (res == 0 && job->req.op == CLUSTER_VOL_CLAIM)
		owned(job->ctl, job);
	job_end(job, res, msg);
}

static struct json_object *simple_job(struct control *ctl, struct json_object *req,
				      enum cluster_vol_op op)
{
	const char *name = ctl_get_string(req, "name");
	struct vol_job *job;

	if (!ctl->cluster)
		return ctl_single_node();
	if (!name)
		return ctl_no_name();
	if (!layout_id_valid(name))
		return ctl_volume_error(-EINVAL, name);
	job = job_new(ctl, req, claim_finish, op, name);
	if (!job)
		return ctl_error(ENOMEM, "out of memory");
	return job_start(job, job_done);
}

static struct json_object *cmd_volume_claim(struct control *ctl, struct json_object *req)
{
	return simple_job(ctl, req, CLUSTER_VOL_CLAIM);
}

/* A release cuts off the clients attached here (the guard fences the volume once
 * the claim is gone: their requests fail, NBD hangs up): refused while any is,
 * unless forced, as a rollback is. */
static struct json_object *cmd_volume_release(struct control *ctl, struct json_object *req)
{
	const char *name = ctl_get_string(req, "name");
	struct engine_volume_info info;
	char clones[256];
	uint64_t uid;

	/* the family's layers leave this node with the claim; a clone made here reading
	 * through one of its snapshots would lose its base (not even --force) */
	if (ctl->cluster && name && engine_volume_family(ctl->eng, name, &uid) == 0 &&
	    engine_family_clones(ctl->eng, uid, clones, sizeof(clones)) > 0)
		return ctl_error(EMLINK, "volume '%s' cannot leave this node: clone %s reads "
				 "through its snapshot here: flatten the clone (quill flatten) "
				 "or remove it first", name, clones);
	if (ctl->cluster && name && !ctl_get_bool(req, "force") &&
	    engine_volume_info(ctl->eng, name, &info) == 0 && info.open)
		return ctl_busy_error(ctl, name, "releasing it cuts its clients off: detach "
				      "them first, or give --force");
	return simple_job(ctl, req, CLUSTER_VOL_RELEASE);
}

/* ---- segment records ---- */

static struct json_object *segment_json(const struct layout_segment *s)
{
	struct json_object *o = json_object_new_object(), *h = json_object_new_array();
	char id[32];

	snprintf(id, sizeof(id), "%016" PRIx64 ".%08" PRIx32, s->id.family, s->id.seq);
	ctl_add_str(o, "segment", id);
	ctl_add_str(o, "state", s->state == LAYOUT_SEG_OPEN ? "open" : "sealed");
	ctl_add_int(o, "length", (int64_t)s->length);
	ctl_add_int(o, "epoch", s->epoch);
	for (unsigned i = 0; i < s->nholders; i++)
		json_object_array_add(h, json_object_new_string(s->holders[i]));
	json_object_object_add(o, "holders", h);
	return o;
}

static struct json_object *segment_finish(struct control *ctl, struct json_object *req, int res)
{
	struct json_object *v, *arr;

	(void)ctl;
	if (res < 0)
		return job_error(res, ctl_get_string(req, "name"));
	v = ctl_ok();
	if (!finishing)
		return v;
	ctl_add_int(v, "epoch", finishing->req.epoch);
	arr = json_object_new_array();
	for (size_t i = 0; i < finishing->req.nsegs; i++)
		json_object_array_add(arr, segment_json(&finishing->req.segs[i]));
	json_object_object_add(v, "segments", arr);
	return v;
}

/* "FAMILY.SEQ" in hex: 0 or -EINVAL. */
static int parse_segid(const char *text, struct layout_segid *id)
{
	char *end;
	unsigned long long fam, seq;

	if (!text)
		return -EINVAL;
	fam = strtoull(text, &end, 16);
	if (end == text || *end != '.')
		return -EINVAL;
	text = end + 1;
	seq = strtoull(text, &end, 16);
	if (end == text || *end || seq > UINT32_MAX)
		return -EINVAL;
	id->family = fam;
	id->seq = (uint32_t)seq;
	return 0;
}

/* "a,b,c" into seg's holders: 0 or -EINVAL. */
static int parse_holders(const char *text, struct layout_segment *seg)
{
	char buf[LAYOUT_MAX_HOLDERS * (LAYOUT_ID_MAX + 1)], *save = NULL, *tok;

	if (!text || strlen(text) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", text);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (seg->nholders == LAYOUT_MAX_HOLDERS || !layout_id_valid(tok))
			return -EINVAL;
		snprintf(seg->holders[seg->nholders++], LAYOUT_ID_MAX + 1, "%s", tok);
	}
	return seg->nholders ? 0 : -EINVAL;
}

static int segment_op(const char *op, enum cluster_vol_op *out)
{
	static const struct { const char *name; enum cluster_vol_op op; } ops[] = {
		{ "open", CLUSTER_VOL_SEG_OPEN }, { "seal", CLUSTER_VOL_SEG_SEAL },
		{ "delete", CLUSTER_VOL_SEG_DELETE }, { "list", CLUSTER_VOL_SEG_LIST },
		{ "holders", CLUSTER_VOL_SEG_HOLDERS },
	};

	for (size_t i = 0; op && i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strcmp(op, ops[i].name) == 0) {
			*out = ops[i].op;
			return 0;
		}
	return -EINVAL;
}

static struct json_object *cmd_volume_segment(struct control *ctl, struct json_object *req)
{
	const char *name = ctl_get_string(req, "name");
	enum cluster_vol_op op;
	struct vol_job *job;
	struct layout_segment seg = { 0 };
	uint64_t epoch = 0, length = 0;

	if (!ctl->cluster)
		return ctl_single_node();
	if (!name)
		return ctl_no_name();
	if (segment_op(ctl_get_string(req, "op"), &op) < 0)
		return ctl_error(EINVAL, "\"op\": open, seal, holders, delete or list");
	if (op != CLUSTER_VOL_SEG_LIST && parse_segid(ctl_get_string(req, "segment"), &seg.id) < 0)
		return ctl_error(EINVAL, "\"segment\": FAMILY.SEQ in hex (e.g. 1f.2)");
	if ((op == CLUSTER_VOL_SEG_OPEN || op == CLUSTER_VOL_SEG_HOLDERS) && parse_holders(ctl_get_string(req, "holders"), &seg) < 0)
		return ctl_error(EINVAL, "\"holders\": node ids, comma-separated (1 to %u)",
				 LAYOUT_MAX_HOLDERS);
	if (op == CLUSTER_VOL_SEG_SEAL && ctl_get_u64(req, "length", &length) < 0)
		return ctl_error(EINVAL, "\"length\": the sealed segment's bytes");
	if (json_object_object_get_ex(req, "epoch", NULL) &&
	    (ctl_get_u64(req, "epoch", &epoch) < 0 || epoch > INT64_MAX))
		return ctl_error(EINVAL, "\"epoch\": a number");
	if (!epoch && op != CLUSTER_VOL_SEG_LIST && !cluster_volume_owned(ctl->cluster, name, NULL))
		return ctl_error(EPERM, "volume '%s' is not owned by this node (quill volume claim "
				 "%s)", name, name);
	if (!layout_id_valid(name))
		return ctl_volume_error(-EINVAL, name);
	job = job_new(ctl, req, segment_finish, op, name);
	if (!job)
		return ctl_error(ENOMEM, "out of memory");
	seg.length = length;
	job->req.seg = seg;
	job->req.epoch = (int64_t)epoch;
	return job_start(job, job_done);
}

const struct control_cmd ctl_cluster_vol_commands[] = {
	{ CONTROL_CMD_VOLUME_CLAIM, cmd_volume_claim, { CTL_KEY_NAME } },
	{ CONTROL_CMD_VOLUME_RELEASE, cmd_volume_release, { CTL_KEY_NAME, { "force", CTL_BOOL } } },
	{ CONTROL_CMD_VOLUME_SEGMENT, cmd_volume_segment,
	  { CTL_KEY_NAME, { "op", CTL_STRING }, { "segment", CTL_STRING },
	    { "holders", CTL_STRING }, { "length", CTL_UINT }, { "epoch", CTL_UINT } } },
	{ NULL, NULL, { { NULL } } },
};
