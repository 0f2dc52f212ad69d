/* tools/quilld/control_snap.c — the control commands of snapshots, clones, rollback,
 * flatten and diff (docs/control.md). Each turns the engine's -errno into one
 * sentence that names what is missing, busy or in the way.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "block/block.h"
#include "common/err.h"
#include "common/volspec.h"
#include "engine/engine.h"
#include "tools/control_proto.h"
#include "tools/quilld/control_internal.h"

/* A "VOL@SNAP" split into its parts. */
struct snap_ref {
	char vol[ENGINE_VOLUME_NAME_MAX + 1];
	char snap[ENGINE_VOLUME_NAME_MAX + 1];
};

/* 0, or -EINVAL if spec is not VOL@SNAP with both parts of a valid length. */
static int split_spec(const char *spec, struct snap_ref *ref)
{
	if (!spec || blk_spec_parse(spec, ref->vol, ref->snap) < 0 || !ref->snap[0])
		return -EINVAL;
	return 0;
}

static struct json_object *bad_spec_error(int err, const char *spec)
{
	return ctl_error(err, "'%s' is not a snapshot: write VOL@SNAP (names of at most 63 "
			 "characters)", spec);
}

struct snap_find {
	const char *name;
	struct engine_snap_info *out;
	bool found;
};

static int find_one(const struct engine_snap_info *info, void *arg)
{
	struct snap_find *f = arg;

	if (strcmp(info->name, f->name) != 0)
		return 0;
	*f->out = *info;
	f->found = true;
	return 1;
}

/* 0 and the snapshot's info, or -ENOENT (volume or snapshot missing), or -errno. */
static int snap_find(struct control *ctl, const struct snap_ref *ref,
		     struct engine_snap_info *out)
{
	struct snap_find f = { .name = ref->snap, .out = out };
	int r = engine_snap_list(ctl->eng, ref->vol, find_one, &f);

	if (r < 0)
		return r;
	return f.found ? 0 : -ENOENT;
}

/* The sentence for -ENOENT about ref: the volume or the snapshot? */
static struct json_object *missing_error(struct control *ctl, const struct snap_ref *ref)
{
	struct engine_volume_info vi;

	if (engine_volume_info(ctl->eng, ref->vol, &vi) < 0)
		return ctl_error(ENOENT, "no volume named '%s'", ref->vol);
	return ctl_error(ENOENT, "volume '%s' has no snapshot '%s' (quill snap ls %s)", ref->vol,
			 ref->snap, ref->vol);
}

static struct json_object *dependents_error(struct control *ctl, const struct snap_ref *ref)
{
	char deps[800];

	if (engine_snap_dependents(ctl->eng, ref->vol, ref->snap, deps, sizeof(deps)) < 0)
		snprintf(deps, sizeof(deps), "other volumes or snapshots");
	return ctl_error(ENOTEMPTY, "snapshot '%s@%s' is still read by %s: flatten or remove "
			 "them first", ref->vol, ref->snap, deps);
}

enum snap_op { OP_CREATE, OP_RM, OP_ROLLBACK, OP_CLONE };

static struct json_object *busy_error(struct control *ctl, const struct snap_ref *ref,
				      enum snap_op op)
{
	char spec[ENGINE_SNAP_SPEC_MAX + 1];

	switch (op) {
	case OP_CREATE:
		return ctl_error(EBUSY, "volume '%s' is being flattened, or another command on "
				 "it is still running: snapshot it when that is done (quill flatten "
				 "%s shows a flatten)", ref->vol, ref->vol);
	case OP_ROLLBACK:
		return ctl_busy_error(ctl, ref->vol, "detach it or pass --force");
	default:
		snprintf(spec, sizeof(spec), "%s@%s", ref->vol, ref->snap);
		return ctl_error(EBUSY, "snapshot '%s' is attached (NBD or vhost-user): detach "
				 "its clients first", spec);
	}
}

/* The answer to a snapshot call on ref that failed with r. */
static struct json_object *snap_error(struct control *ctl, int r, const struct snap_ref *ref,
				      enum snap_op op)
{
	switch (r) {
	case -ENOENT:
		return missing_error(ctl, ref);
	case -EEXIST:
		return ctl_error(EEXIST, "volume '%s' already has a snapshot named '%s'", ref->vol,
				 ref->snap);
	case -EBUSY:
		return busy_error(ctl, ref, op);
	case -ENOTEMPTY:
		return dependents_error(ctl, ref);
	case -EINVAL:
		return ctl_error(EINVAL, "invalid snapshot name '%s@%s' (names: letters, digits, "
				 "'-', '_', '.', at most 63)", ref->vol, ref->snap);
	case -ENOSPC: {
		char spec[2 * ENGINE_VOLUME_NAME_MAX + 2];

		volspec_format(spec, sizeof(spec), ref->vol, ref->snap);
		return ctl_volume_error(r, spec);
	}
	case -ENOSYS:
		return ctl_error(ENOSYS, "this node's engine does not support snapshots yet");
	default:
		return ctl_error(-r, "snapshot '%s@%s': %s", ref->vol, ref->snap, err_str(-r));
	}
}

/* Reads the "snap" field into ref; NULL, or the answer to a bad one. */
static struct json_object *need_snap(struct json_object *req, struct snap_ref *ref)
{
	const char *spec = ctl_get_string(req, "snap");

	if (!spec)
		return ctl_error(EINVAL, "request without a snapshot (\"snap\": \"VOL@SNAP\")");
	if (split_spec(spec, ref) < 0)
		return bad_spec_error(EINVAL, spec);
	return NULL;
}

static struct json_object *snap_json(const struct snap_ref *ref,
				     const struct engine_snap_info *info)
{
	struct json_object *o = json_object_new_object();
	char spec[ENGINE_SNAP_SPEC_MAX + 1];

	volspec_format(spec, sizeof(spec), ref->vol, info->name);
	json_object_object_add(o, "name", json_object_new_string(info->name));
	json_object_object_add(o, "spec", json_object_new_string(spec));
	ctl_add_int(o, "id", (int64_t)info->id);
	ctl_add_int(o, "size", (int64_t)info->size);
	ctl_add_int(o, "created_ns", (int64_t)info->created_ns);
	ctl_add_int(o, "own_bytes", (int64_t)(info->own_blocks * ENGINE_BLOCK_SIZE));
	ctl_add_int(o, "dependents", info->dependents);
	json_object_object_add(o, "attached", json_object_new_boolean(info->open));
	ctl_add_int(o, "sector_size", info->sector_size);
	return o;
}

/* ---- commands ---- */

/* The finish of each snapshot call (control_internal.h): the request was checked
 * when it started, so its "snap" splits. */
static struct json_object *snap_create_finish(struct control *ctl, struct json_object *req,
					      int res)
{
	struct engine_snap_info info;
	struct json_object *ans;
	struct snap_ref ref;

	need_snap(req, &ref);
	if (res < 0)
		return snap_error(ctl, res, &ref, OP_CREATE);
	ans = ctl_ok();
	if (snap_find(ctl, &ref, &info) == 0)
		json_object_object_add(ans, "snapshot", snap_json(&ref, &info));
	return ans;
}

static struct json_object *snap_rm_finish(struct control *ctl, struct json_object *req, int res)
{
	struct snap_ref ref;

	need_snap(req, &ref);
	return res < 0 ? snap_error(ctl, res, &ref, OP_RM) : ctl_ok();
}

static struct json_object *snap_rollback_finish(struct control *ctl, struct json_object *req,
						int res)
{
	struct json_object *ans, *vol;
	struct snap_ref ref;

	need_snap(req, &ref);
	if (res < 0)
		return snap_error(ctl, res, &ref, OP_ROLLBACK);
	ans = ctl_ok();
	vol = ctl_volume_json(ctl, ref.vol);
	if (vol)
		json_object_object_add(ans, "volume", vol);
	return ans;
}

static struct json_object *cmd_snap_create(struct control *ctl, struct json_object *req)
{
	struct json_object *ans;
	struct ctl_call *call;
	struct snap_ref ref;

	if ((ans = need_snap(req, &ref)))
		return ans;
	call = ctl_call_new(ctl, req, snap_create_finish);
	return ctl_call_started(call, engine_snap_create_async(ctl->eng, ref.vol, ref.snap,
							       ctl_call_done, call));
}

static struct json_object *cmd_snap_rm(struct control *ctl, struct json_object *req)
{
	struct json_object *ans;
	struct ctl_call *call;
	struct snap_ref ref;

	if ((ans = need_snap(req, &ref)))
		return ans;
	if ((ans = ctl_vhost_refuse_rm(ctl, ctl_get_string(req, "snap"))) ||
	    (ans = ctl_cluster_refuse_base_rm(ctl, ctl_get_string(req, "snap"))))
		return ans;
	call = ctl_call_new(ctl, req, snap_rm_finish);
	return ctl_call_started(call, engine_snap_delete_async(ctl->eng, ref.vol, ref.snap,
							       ctl_call_done, call));
}

static struct json_object *cmd_snap_rollback(struct control *ctl, struct json_object *req)
{
	struct json_object *ans;
	struct ctl_call *call;
	struct snap_ref ref;

	if ((ans = need_snap(req, &ref)))
		return ans;
	call = ctl_call_new(ctl, req, snap_rollback_finish);
	return ctl_call_started(call, engine_snap_rollback_async(ctl->eng, ref.vol, ref.snap,
								 ctl_get_bool(req, "force"),
								 ctl_call_done, call));
}

struct snap_list_ctx {
	const struct snap_ref *ref;
	struct json_object *arr;
};

static int list_one(const struct engine_snap_info *info, void *arg)
{
	struct snap_list_ctx *lc = arg;

	json_object_array_add(lc->arr, snap_json(lc->ref, info));
	return 0;
}

static struct json_object *cmd_snap_list(struct control *ctl, struct json_object *req)
{
	struct snap_ref ref = { .snap = "" };
	struct snap_list_ctx lc = { .ref = &ref };
	const char *name = ctl_get_string(req, "name");
	struct json_object *ans;
	int r;

	if (!name)
		return ctl_no_name();
	if (strlen(name) > ENGINE_VOLUME_NAME_MAX)
		return ctl_volume_error(-ENOENT, name);
	strcpy(ref.vol, name);
	lc.arr = json_object_new_array();
	r = engine_snap_list(ctl->eng, name, list_one, &lc);
	if (r < 0) {
		json_object_put(lc.arr);
		if (r == -ENOSYS)
			return snap_error(ctl, r, &ref, OP_CREATE);
		return ctl_volume_error(r, name);
	}
	ans = ctl_ok();
	json_object_object_add(ans, "snapshots", lc.arr);
	return ans;
}

static struct json_object *clone_finish(struct control *ctl, struct json_object *req, int r)
{
	const char *name = ctl_get_string(req, "name");
	struct json_object *ans;
	struct snap_ref ref;

	need_snap(req, &ref);
	if (r == -ENOENT || r == -ENOSYS)
		return snap_error(ctl, r, &ref, OP_CLONE);
	if (r < 0)
		return ctl_volume_error(r, name);
	ans = ctl_ok();
	json_object_object_add(ans, "volume", ctl_volume_json(ctl, name));
	return ans;
}

static struct json_object *cmd_clone(struct control *ctl, struct json_object *req)
{
	const char *name = ctl_get_string(req, "name");
	struct json_object *ans;
	struct ctl_call *call;
	struct snap_ref ref;

	if ((ans = need_snap(req, &ref)))
		return ans;
	if (!name)
		return ctl_error(EINVAL, "request without the new volume's name");
	if (ctl_cluster_clone(ctl, req, ctl_get_string(req, "snap"), name, &ans))
		return ans;
	call = ctl_call_new(ctl, req, clone_finish);
	return ctl_call_started(call, engine_clone_async(ctl->eng, ctl_get_string(req, "snap"),
							 name, ctl_call_done, call));
}

static struct json_object *flatten_json(const struct engine_flatten_status *st)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "running", json_object_new_boolean(st->running));
	json_object_object_add(o, "finished", json_object_new_boolean(st->finished));
	ctl_add_int(o, "done_blocks", (int64_t)st->done_blocks);
	ctl_add_int(o, "total_blocks", (int64_t)st->total_blocks);
	ctl_add_int(o, "copied_bytes", (int64_t)(st->copied_blocks * ENGINE_BLOCK_SIZE));
	ctl_add_int(o, "result", -st->result);
	if (st->result < 0)
		json_object_object_add(o, "error", json_object_new_string(err_str(-st->result)));
	return o;
}

static struct json_object *flatten_error(int r, const char *name)
{
	switch (r) {
	case -EINVAL:
		return ctl_error(EINVAL, "volume '%s' is not a clone, or has snapshots of its own "
				 "(a clone with snapshots cannot be flattened)", name);
	case -EALREADY:
		return ctl_error(EALREADY, "volume '%s' is being flattened already", name);
	case -ENOSYS:
		return ctl_error(ENOSYS, "this node's engine does not support flatten yet");
	default:
		return ctl_volume_error(r, name);
	}
}

/* volume.flatten (once started) and volume.flatten_status: both answer the status. */
static struct json_object *flatten_answer(struct control *ctl, struct json_object *req, int r)
{
	const char *name = ctl_get_string(req, "name");
	struct engine_flatten_status st;
	struct json_object *ans;

	if (r == 0)
		r = engine_flatten_status(ctl->eng, name, &st);
	if (r < 0)
		return flatten_error(r, name);
	if (st.finished && !st.running && st.result == 0)
		ctl_cluster_flattened(ctl, name);
	ans = ctl_ok();
	json_object_object_add(ans, "flatten", flatten_json(&st));
	return ans;
}

static struct json_object *cmd_flatten(struct control *ctl, struct json_object *req)
{
	const char *name = ctl_get_string(req, "name");
	struct ctl_call *call;

	if (!name)
		return ctl_no_name();
	call = ctl_call_new(ctl, req, flatten_answer);
	return ctl_call_started(call, engine_flatten_start_async(ctl->eng, name, ctl_call_done,
								 call));
}

static struct json_object *cmd_flatten_status(struct control *ctl, struct json_object *req)
{
	if (!ctl_get_string(req, "name"))
		return ctl_no_name();
	return flatten_answer(ctl, req, 0);
}

static int diff_one(const struct engine_extent *ext, void *arg)
{
	struct json_object *o = json_object_new_object();

	ctl_add_int(o, "offset", (int64_t)ext->offset);
	ctl_add_int(o, "length", (int64_t)ext->length);
	json_object_object_add(o, "type", json_object_new_string(ext->data ? "data" : "zero"));
	json_object_array_add(arg, o);
	return 0;
}

/* Which of from/to does not exist (for -ENOENT), as an answer. */
static struct json_object *diff_missing(struct control *ctl, const char *from, const char *to)
{
	const char *specs[2] = { from, to };
	struct engine_volume_info vi;
	struct engine_snap_info si;
	struct snap_ref ref;

	for (int i = 0; i < 2; i++) {
		if (!specs[i])
			continue;
		if (blk_spec_parse(specs[i], ref.vol, ref.snap) < 0)
			return bad_spec_error(ENOENT, specs[i]);
		if (ref.snap[0] && snap_find(ctl, &ref, &si) < 0)
			return missing_error(ctl, &ref);
		if (!ref.snap[0] && engine_volume_info(ctl->eng, ref.vol, &vi) < 0)
			return ctl_volume_error(-ENOENT, specs[i]);
	}
	return ctl_error(ENOENT, "'%s' or '%s' does not exist", from ? from : "", to);
}

static struct json_object *cmd_diff(struct control *ctl, struct json_object *req)
{
	const char *from = ctl_get_string(req, "from"), *to = ctl_get_string(req, "to");
	struct json_object *arr, *ans;
	int r;

	if (!to)
		return ctl_error(EINVAL, "request without \"to\" (VOL or VOL@SNAP)");
	arr = json_object_new_array();
	r = engine_diff(ctl->eng, from, to, diff_one, arr);
	if (r < 0) {
		json_object_put(arr);
		if (r == -ENOENT)
			return diff_missing(ctl, from, to);
		if (r == -ENOSYS)
			return ctl_error(ENOSYS, "this node's engine does not support diff yet");
		if (r == -EINVAL)
			return ctl_error(EINVAL, "cannot diff '%s' against '%s': 'from' must be a "
					 "snapshot (VOL@SNAP) of the same family as '%s'",
					 from ? from : "(empty)", to, to);
		return ctl_error(-r, "diff '%s' '%s': %s", from ? from : "", to, err_str(-r));
	}
	ans = ctl_ok();
	json_object_object_add(ans, "extents", arr);
	return ans;
}


const struct control_cmd ctl_snap_commands[] = {
	{ CONTROL_CMD_SNAP_CREATE, cmd_snap_create, { CTL_KEY_SNAP } },
	{ CONTROL_CMD_SNAP_LIST, cmd_snap_list, { CTL_KEY_NAME } },
	{ CONTROL_CMD_SNAP_RM, cmd_snap_rm, { CTL_KEY_SNAP } },
	{ CONTROL_CMD_SNAP_ROLLBACK, cmd_snap_rollback, { CTL_KEY_SNAP, { "force", CTL_BOOL } } },
	{ CONTROL_CMD_CLONE, cmd_clone, { CTL_KEY_SNAP, CTL_KEY_NAME, { "replicas", CTL_UINT } } },
	{ CONTROL_CMD_FLATTEN, cmd_flatten, { CTL_KEY_NAME } },
	{ CONTROL_CMD_FLATTEN_STATUS, cmd_flatten_status, { CTL_KEY_NAME } },
	{ CONTROL_CMD_DIFF, cmd_diff, { { "from", CTL_STRING }, { "to", CTL_STRING } } },
	{ NULL, NULL, { { NULL } } },
};
