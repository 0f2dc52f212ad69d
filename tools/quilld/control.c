/* tools/quilld/control.c — answers `quill` on the control socket.
 *
 * One request per connection: read a line, check it whole (control_request.c), run
 * it on the engine, write the answer, close. A management call that waits for the
 * engine (a snapshot's flush, a volume's batches, the cleaner, a checkpoint) answers
 * from its completion: that connection waits, and the loop goes on serving the
 * others, NBD and vhost.
 */
#include "tools/quilld/control_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "block/block.h"
#include "common/loop.h"
#include "cluster/layout.h"
#include "engine/engine.h"
#include "replication/replica.h"
#include "tools/control_proto.h"

#define CTL_LOG "control"

struct ctl_call {
	struct control *ctl;
	struct control_conn *conn;
	struct json_object *req; /* a reference of our own */
	ctl_finish_fn finish;
};

struct control_conn {
	struct control *ctl;
	int fd;
	struct loop_watch *watch;
	struct ctl_call call; /* one request per connection: its deferred answer */
	size_t len;
	bool oversized;   /* past CONTROL_MAX_REQUEST without a newline: dropping the rest */
	size_t discarded; /* bytes dropped since */
	char buf[CONTROL_MAX_REQUEST];
};

/* ---- answers ---- */

struct json_object *ctl_error(int err, const char *fmt, ...)
{
	struct json_object *o = json_object_new_object();
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "error", json_object_new_string(msg));
	json_object_object_add(o, "errno", json_object_new_int(err));
	return o;
}

struct json_object *ctl_ok(void)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(1));
	return o;
}

void ctl_add_int(struct json_object *o, const char *key, int64_t v)
{
	json_object_object_add(o, key, json_object_new_int64(v));
}

void ctl_add_frag(struct json_object *o, const struct fragread_status *fs)
{
	ctl_add_int(o, "frag_runs", (int64_t)fs->runs);
	ctl_add_int(o, "frag_requests", (int64_t)fs->requests);
	ctl_add_int(o, "frag_degraded", (int64_t)fs->degraded);
	ctl_add_int(o, "frag_decodes", (int64_t)fs->decodes);
	ctl_add_int(o, "frag_failed", (int64_t)fs->failed);
	ctl_add_int(o, "frag_split", (int64_t)fs->split);
}

void ctl_policy_name(char *buf, size_t len, unsigned replicas, unsigned k, unsigned m)
{
	if (k)
		snprintf(buf, len, "ec %u+%u", k, m);
	else
		snprintf(buf, len, "replicas %u", replicas);
}

void ctl_add_str(struct json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, json_object_new_string(v));
}

void ctl_add_bool(struct json_object *o, const char *key, bool v)
{
	json_object_object_add(o, key, json_object_new_boolean(v));
}

/* The sentence for a failed volume call. */
struct json_object *ctl_volume_error(int r, const char *name)
{
	switch (r) {
	case -ENOENT:
		return ctl_error(ENOENT, "no volume named '%s'", name);
	case -EEXIST:
		return ctl_error(EEXIST, "a volume named '%s' already exists", name);
	case -EBUSY:
		return ctl_error(EBUSY, "volume '%s' is attached (NBD or vhost-user): detach it "
				 "first", name);
	case -ENOTEMPTY:
		return ctl_error(ENOTEMPTY, "volume '%s' has snapshots: remove them first (quill "
				 "snap ls %s)", name, name);
	case -ENOSPC: /* management calls take no store space: this is RocksDB's disk */
		return ctl_error(ENOSPC, "metadata disk full: '%s' not changed (free space where "
				 "the node keeps its metadata, --meta; it resumes by itself)", name);
	case -EINVAL:
		return ctl_error(EINVAL, "invalid name or size for '%s' (names: letters, digits, "
				 "'-', '_', '.', at most 63; sizes: a non-zero multiple of 4 KiB)",
				 name);
	default:
		return ctl_error(-r, "volume '%s': %s", name, err_str(-r));
	}
}

struct json_object *ctl_busy_error(struct control *ctl, const char *spec, const char *advice)
{
	struct engine_volume_info info;
	char why[ENGINE_HOLDER_MAX + ENGINE_SNAP_SPEC_MAX + 64];

	if (strchr(spec, '@') == NULL && engine_volume_info(ctl->eng, spec, &info) == 0 &&
	    !info.open)
		return ctl_error(EBUSY, "volume '%s' is being flattened, or another command on "
				 "it is still running: try again when it is done", spec);
	blk_busy_reason(ctl->eng, spec, why, sizeof(why));
	return ctl_error(EBUSY, "%s: %s", why, advice);
}

static struct json_object *volume_info_json(struct control *ctl,
					    const struct engine_volume_info *info)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "name", json_object_new_string(info->name));
	ctl_add_int(o, "id", (int64_t)info->id);
	ctl_add_int(o, "size", (int64_t)info->size);
	ctl_add_int(o, "written_bytes", (int64_t)(info->mapped_blocks * ENGINE_BLOCK_SIZE));
	ctl_add_int(o, "own_bytes", (int64_t)(info->own_blocks * ENGINE_BLOCK_SIZE));
	ctl_add_int(o, "segments", (int64_t)info->segments);
	ctl_add_int(o, "created_ns", (int64_t)info->created_ns);
	json_object_object_add(o, "attached", json_object_new_boolean(info->open));
	json_object_object_add(o, "holder", json_object_new_string(info->holder));
	ctl_vhost_add_exports(ctl, info->name, o);
	json_object_object_add(o, "parent", json_object_new_string(info->parent));
	ctl_add_int(o, "snapshots", info->snapshots);
	json_object_object_add(o, "flattening", json_object_new_boolean(info->flattening));
	json_object_object_add(o, "damaged", json_object_new_boolean(info->damaged));
	json_object_object_add(o, "importing", json_object_new_boolean(info->importing));
	ctl_add_int(o, "sector_size", info->sector_size);
	ctl_cluster_add_volume(ctl, info->name, o);
	return o;
}

struct json_object *ctl_volume_json(struct control *ctl, const char *name)
{
	struct engine_volume_info info;

	if (engine_volume_info(ctl->eng, name, &info) < 0)
		return NULL;
	return volume_info_json(ctl, &info);
}

struct list_ctx {
	struct control *ctl;
	struct json_object *arr;
};

static int list_one(const struct engine_volume_info *info, void *arg)
{
	struct list_ctx *lc = arg;

	json_object_array_add(lc->arr, volume_info_json(lc->ctl, info));
	return 0;
}

const char *ctl_get_string(struct json_object *req, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(req, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

int ctl_get_u64(struct json_object *req, const char *key, uint64_t *out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(req, key, &v) || !json_object_is_type(v, json_type_int))
		return -EINVAL;
	if (json_object_get_int64(v) < 0)
		return -EINVAL;
	*out = (uint64_t)json_object_get_int64(v);
	return 0;
}

bool ctl_get_bool(struct json_object *req, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(req, key, &v) && json_object_get_boolean(v);
}

/* ---- volume commands ---- */

struct json_object *ctl_volume_answer(struct control *ctl, int r, const char *name)
{
	struct json_object *v, *vol;

	if (r < 0)
		return ctl_volume_error(r, name);
	v = ctl_ok();
	vol = ctl_volume_json(ctl, name);
	if (vol)
		json_object_object_add(v, "volume", vol);
	return v;
}

struct json_object *ctl_no_name(void)
{
	return ctl_error(EINVAL, "request without a volume name");
}

static struct json_object *cmd_volume_list(struct control *ctl, struct json_object *req)
{
	struct json_object *arr = json_object_new_array();
	struct list_ctx lc = { ctl, arr };
	struct json_object *ans;

	(void)req;
	engine_volume_list(ctl->eng, list_one, &lc);
	ans = ctl_ok();
	json_object_object_add(ans, "volumes", arr);
	return ans;
}

static struct json_object *cmd_volume_info(struct control *ctl, struct json_object *req)
{
	struct engine_volume_info info;
	const char *name = ctl_get_string(req, "name");

	if (!name)
		return ctl_no_name();
	return ctl_volume_answer(ctl, engine_volume_info(ctl->eng, name, &info), name);
}

/* finish of the calls answered with the volume object (create, resize). */
static struct json_object *volume_finish(struct control *ctl, struct json_object *req, int res)
{
	return ctl_volume_answer(ctl, res, ctl_get_string(req, "name"));
}

static struct json_object *volume_rm_finish(struct control *ctl, struct json_object *req,
					    int res)
{
	const char *name = ctl_get_string(req, "name");

	if (res == -EBUSY)
		return ctl_busy_error(ctl, name, "detach it first");
	return res < 0 ? ctl_volume_error(res, name) : ctl_ok();
}

static struct json_object *cmd_volume_rm(struct control *ctl, struct json_object *req)
{
	const char *name = ctl_get_string(req, "name");
	struct json_object *ans;
	struct ctl_call *call;

	if (!name)
		return ctl_no_name();
	if ((ans = ctl_vhost_refuse_rm(ctl, name)) || (ans = ctl_cluster_refuse_base_rm(ctl, name)))
		return ans;
	if (ctl_cluster_volume_rm(ctl, req, name, &ans))
		return ans;
	call = ctl_call_new(ctl, req, volume_rm_finish);
	return ctl_call_started(call, engine_volume_delete_async(ctl->eng, name, ctl_call_done,
								 call));
}

/* The engine's create flags for "importing" and "sector_size" (absent: 512); -EINVAL
 * for a sector size other than 512 or 4096. */
static int create_flags(struct json_object *req, unsigned *flags)
{
	uint64_t sector = ENGINE_SECTOR_SIZE_DEFAULT;

	*flags = ctl_get_bool(req, "importing") ? ENGINE_CREATE_IMPORTING : 0;
	if (json_object_object_get_ex(req, "sector_size", NULL) &&
	    ctl_get_u64(req, "sector_size", &sector) < 0)
		return -EINVAL;
	if (sector == ENGINE_SECTOR_SIZE_4K)
		*flags |= ENGINE_CREATE_SECTOR_4K;
	return sector == ENGINE_SECTOR_SIZE_DEFAULT || sector == ENGINE_SECTOR_SIZE_4K ? 0
										 : -EINVAL;
}

static struct json_object *cmd_volume_create(struct control *ctl, struct json_object *req)
{
	const char *name = ctl_get_string(req, "name");
	struct json_object *ans;
	struct ctl_call *call;
	unsigned flags;
	uint64_t size;

	if (!name)
		return ctl_no_name();
	if (ctl_get_u64(req, "size", &size) < 0)
		return ctl_error(EINVAL, "request for '%s' without a size", name);
	if (create_flags(req, &flags) < 0)
		return ctl_error(EINVAL, "volume '%s': a logical sector size of 512 (the default) "
				 "or 4096 bytes (a 4Kn disk), nothing else", name);
	if (ctl_cluster_volume_create(ctl, req, name, size, flags, &ans))
		return ans;
	call = ctl_call_new(ctl, req, volume_finish);
	return ctl_call_started(call, engine_volume_create_async(ctl->eng, name, size, flags,
								 ctl_call_done, call));
}

static struct json_object *import_done_finish(struct control *ctl, struct json_object *req,
					      int res)
{
	const char *name = ctl_get_string(req, "name");

	if (res == -EINVAL)
		return ctl_error(EINVAL, "volume '%s' is not an unfinished import", name);
	return ctl_volume_answer(ctl, res, name);
}

static struct json_object *cmd_volume_import_done(struct control *ctl, struct json_object *req)
{
	const char *name = ctl_get_string(req, "name");
	struct ctl_call *call;

	if (!name)
		return ctl_no_name();
	call = ctl_call_new(ctl, req, import_done_finish);
	return ctl_call_started(call, engine_volume_import_done_async(ctl->eng, name,
								      ctl_call_done, call));
}

static struct json_object *cmd_volume_resize(struct control *ctl, struct json_object *req)
{
	struct engine_volume_info info;
	const char *name = ctl_get_string(req, "name");
	struct ctl_call *call;
	uint64_t size;
	int r;

	if (!name)
		return ctl_no_name();
	if (ctl_get_u64(req, "size", &size) < 0)
		return ctl_error(EINVAL, "request for '%s' without a size", name);
	r = engine_volume_info(ctl->eng, name, &info);
	if (r == 0 && size < info.size && !ctl_get_bool(req, "allow_shrink"))
		return ctl_error(EPERM, "shrinking '%s' drops the data past the new end: add "
				 "--allow-shrink to do it", name);
	if (r < 0)
		return ctl_volume_error(r, name);
	call = ctl_call_new(ctl, req, volume_finish);
	return ctl_call_started(call, engine_volume_resize_async(ctl->eng, name, size,
								 ctl_call_done, call));
}

/* ---- node commands ---- */

static void add_bytes(struct json_object *o, const char *key, uint64_t bytes)
{
	ctl_add_int(o, key, (int64_t)bytes);
}

void control_node_space(const struct engine_stats *st, struct layout_space *out)
{
	out->raw = (uint64_t)st->segment_size * st->segments_total;
	out->used = (uint64_t)st->segment_size * (st->segments_total - st->segments_free);
	out->usable = st->raw_usable_blocks * ENGINE_BLOCK_SIZE;
}

/* Space under each durability policy (docs/cluster.md, "Space"): this node's space
 * (control_node_space) as "raw_bytes", "raw_used_bytes" and "raw_usable_bytes", and
 * "policies": what the usable share holds of a volume's data under replicas R (1/R)
 * and ec K+M (K/(K+M)) when every node is like this one. */
static void add_policy_space(struct json_object *v, const struct engine_stats *st)
{
	static const struct { unsigned replicas, k, m; } pol[] = {
		{ 1, 0, 0 }, { 2, 0, 0 }, { 3, 0, 0 }, { 0, 2, 1 }, { 0, 4, 2 }
	};
	struct json_object *a = json_object_new_array();
	struct layout_space sp;
	char name[32];

	control_node_space(st, &sp);
	add_bytes(v, "raw_bytes", sp.raw);
	add_bytes(v, "raw_used_bytes", sp.used);
	add_bytes(v, "raw_usable_bytes", sp.usable);
	for (size_t i = 0; a && i < sizeof(pol) / sizeof(pol[0]); i++) {
		struct json_object *p = json_object_new_object();

		ctl_policy_name(name, sizeof(name), pol[i].replicas, pol[i].k, pol[i].m);
		ctl_add_str(p, "policy", name);
		add_bytes(p, "usable_bytes", pol[i].k ? sp.usable * pol[i].k / (pol[i].k + pol[i].m)
						    : sp.usable / pol[i].replicas);
		json_object_array_add(a, p);
	}
	json_object_object_add(v, "policies", a);
}

static struct json_object *cmd_status(struct control *ctl, struct json_object *req)
{
	struct engine_stats st;
	struct fragread_status fs;
	struct json_object *v = ctl_ok();
	uint64_t seg;

	(void)req;
	engine_get_stats(ctl->eng, &st);
	seg = st.segment_size;
	add_bytes(v, "segment_size", seg);
	ctl_add_int(v, "segments_total", st.segments_total);
	ctl_add_int(v, "segments_free", st.segments_free);
	add_bytes(v, "capacity_bytes", seg * st.segments_total);
	add_bytes(v, "free_bytes", seg * st.segments_free);
	add_bytes(v, "usable_bytes", st.usable_blocks * ENGINE_BLOCK_SIZE);
	add_bytes(v, "live_bytes", st.live_blocks * ENGINE_BLOCK_SIZE);
	add_bytes(v, "used_bytes", st.used_blocks * ENGINE_BLOCK_SIZE);
	add_policy_space(v, &st);
	ctl_add_int(v, "segments_too_live", st.segments_too_live);
	ctl_add_int(v, "segments_trims_only", st.segments_trims_only);
	ctl_add_int(v, "segments_empty", st.segments_empty);
	ctl_add_int(v, "segments_held", st.segments_held);
	ctl_add_int(v, "trim_entries", (int64_t)st.trim_entries);
	ctl_add_int(v, "gc_runs", (int64_t)st.gc_runs);
	ctl_add_int(v, "gc_remote_runs", (int64_t)st.gc_remote_runs);
	ctl_add_int(v, "gc_remote_blocks", (int64_t)st.gc_remote_blocks);
	ctl_add_int(v, "gc_blocks_moved", (int64_t)st.gc_blocks_moved);
	ctl_add_int(v, "remote_blocks", (int64_t)st.remote_blocks);
	ctl_add_int(v, "remote_live_blocks", (int64_t)st.remote_live_blocks);
	ctl_add_int(v, "checkpoints", (int64_t)st.checkpoints);
	add_bytes(v, "prezeroed_bytes", st.prezeroed_bytes);
	ctl_add_int(v, "read_ios", (int64_t)st.read_ios);
	add_bytes(v, "defrag_bytes", st.defrag_blocks * ENGINE_BLOCK_SIZE);
	ctl_add_int(v, "defrag_idle_reads", (int64_t)st.defrag_idle_reads);
	ctl_add_int(v, "blocks_repaired", (int64_t)st.blocks_repaired);
	ctl_add_int(v, "blocks_unrecoverable", (int64_t)st.blocks_unrecoverable);
	if (ctl->replicas)
		json_object_object_add(v, "scrub", ctl_scrub_status_json(ctl));
	ctl_add_int(v, "fetches", (int64_t)st.fetches);
	ctl_add_int(v, "fetch_blocks", (int64_t)st.fetch_blocks);
	ctl_add_int(v, "drop_walks", (int64_t)st.drop_walks);
	ctl_add_int(v, "fetch_requests", (int64_t)st.fetch_requests);
	ctl_add_int(v, "adopt_remote_entries", (int64_t)st.adopt_remote_entries);
	replica_frag_totals(ctl->replicas, &fs);
	ctl_add_frag(v, &fs);
	add_bytes(v, "moved_bytes", st.gc_blocks_moved * ENGINE_BLOCK_SIZE);
	json_object_object_add(v, "nbd_tcp", json_object_new_string(ctl->nbd_tcp));
	json_object_object_add(v, "nbd_unix", json_object_new_string(ctl->nbd_unix));
	json_object_object_add(v, "metadata", json_object_new_string(
		st.meta_error == 0 ? "ok" : st.meta_error == -ENOSPC ? "full" : "failing"));
	if (st.meta_error)
		json_object_object_add(v, "metadata_error",
				       json_object_new_string(strerror(-st.meta_error)));
	return v;
}

static struct json_object *gc_finish(struct control *ctl, struct json_object *req, int res)
{
	struct json_object *v;

	if (res < 0)
		return ctl_error(-res, "garbage collection failed: %s", strerror(-res));
	v = cmd_status(ctl, req);
	ctl_add_int(v, "segments_freed", res);
	return v;
}

/* Runs the cleaner now, until want_free slots are free (default: all it can), and
 * answers with the status after it. */
static struct json_object *cmd_gc(struct control *ctl, struct json_object *req)
{
	struct engine_stats st;
	struct ctl_call *call;
	uint64_t want;

	engine_get_stats(ctl->eng, &st);
	if (ctl_get_u64(req, "want_free", &want) < 0 || want > st.segments_total)
		want = st.segments_total;
	call = ctl_call_new(ctl, req, gc_finish);
	return ctl_call_started(call, engine_gc_async(ctl->eng, (unsigned)want, ctl_call_done,
						      call));
}

#define KEY_SIZE { "size", CTL_UINT }

static const struct control_cmd node_commands[] = {
	{ CONTROL_CMD_VOLUME_CREATE, cmd_volume_create,
	  { CTL_KEY_NAME, KEY_SIZE, { "importing", CTL_BOOL }, { "sector_size", CTL_UINT },
	    { "replicas", CTL_UINT }, { "ec", CTL_STRING } } },
	{ CONTROL_CMD_VOLUME_LIST, cmd_volume_list, { { NULL } } },
	{ CONTROL_CMD_VOLUME_INFO, cmd_volume_info, { CTL_KEY_NAME } },
	{ CONTROL_CMD_VOLUME_RESIZE, cmd_volume_resize,
	  { CTL_KEY_NAME, KEY_SIZE, { "allow_shrink", CTL_BOOL } } },
	{ CONTROL_CMD_VOLUME_RM, cmd_volume_rm, { CTL_KEY_NAME } },
	{ CONTROL_CMD_VOLUME_IMPORT_DONE, cmd_volume_import_done, { CTL_KEY_NAME } },
	{ CONTROL_CMD_NODE_STATUS, cmd_status, { { NULL } } },
	{ CONTROL_CMD_NODE_GC, cmd_gc, { { "want_free", CTL_UINT } } },
	{ NULL, NULL, { { NULL } } },
};

static const struct control_cmd *find_command(const char *cmd)
{
	const struct control_cmd *tables[] = { node_commands, ctl_snap_commands,
					       ctl_vhost_commands, ctl_cluster_commands,
					       ctl_cluster_vol_commands, ctl_scrub_commands };

	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (const struct control_cmd *c = tables[t]; c->cmd; c++)
			if (strcmp(c->cmd, cmd) == 0)
				return c;
	return NULL;
}

/* Everything a handler may rely on is checked here, once, before it runs: the text
 * is one JSON object without duplicate keys, "cmd" names a command, and every other
 * key is one that command declares, of its type. */
static struct json_object *dispatch(struct control *ctl, const char *text, size_t len)
{
	const struct control_cmd *c;
	struct json_object *req, *ans;
	const char *cmd;
	char why[256];

	if (ctl_request_check(text, len, why, sizeof(why)) < 0)
		return ctl_error(EINVAL, "not a control request (one JSON object with \"cmd\"): "
				 "%s", why);
	req = json_tokener_parse(text);
	cmd = req ? ctl_get_string(req, "cmd") : NULL;
	c = cmd ? find_command(cmd) : NULL;
	if (!cmd)
		ans = ctl_error(EINVAL, "not a control request: no \"cmd\" string");
	else if (!c)
		ans = ctl_error(ENOTSUP, "unknown command '%.64s'", cmd);
	else if (ctl_request_check_keys(c, req, why, sizeof(why)) < 0)
		ans = ctl_error(EINVAL, "%s", why);
	else
		ans = c->fn(ctl, req);
	json_object_put(req);
	return ans;
}

/* ---- connections ---- */

static void conn_close(struct control_conn *c)
{
	loop_watch_remove(c->watch);
	close(c->fd);
	free(c);
}

/* ---- answers that come later ---- */

struct ctl_call *ctl_call_new(struct control *ctl, struct json_object *req,
			      ctl_finish_fn finish)
{
	struct ctl_call *call = &ctl->current->call; /* lives as long as the connection */

	call->ctl = ctl;
	call->conn = ctl->current;
	call->req = json_object_get(req);
	call->finish = finish;
	return call;
}

static void call_end(struct ctl_call *call)
{
	json_object_put(call->req);
	call->req = NULL;
}

struct json_object *ctl_call_started(struct ctl_call *call, int started)
{
	struct json_object *ans;

	if (started < 0) {
		ans = call->finish(call->ctl, call->req, started);
		call_end(call);
		return ans;
	}
	call->ctl->npending++;
	return NULL;
}

static void conn_send(struct control_conn *c, struct json_object *ans);

void ctl_call_done(void *arg, int res)
{
	struct ctl_call *call = arg;
	struct control *ctl = call->ctl;

	/* the client may be gone: the answer then goes nowhere, the work is done */
	conn_send(call->conn, call->finish(ctl, call->req, res));
	call_end(call);
	conn_close(call->conn);
	if (--ctl->npending == 0 && ctl->destroyed)
		free(ctl);
}

static void conn_send(struct control_conn *c, struct json_object *ans)
{
	const char *text = json_object_to_json_string_ext(ans, JSON_C_TO_STRING_PLAIN);
	size_t len = strlen(text), off = 0;
	int fl = fcntl(c->fd, F_GETFL);
	struct timeval send_timeout = { .tv_sec = 10 };

	/* the client is waiting for the answer: send it blocking, but not forever */
	fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
	while (off < len) {
		ssize_t n = send(c->fd, text + off, len - off, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	send(c->fd, "\n", 1, MSG_NOSIGNAL);
	json_object_put(ans);
}

/* What is read of an oversized request before its answer is sent anyway. */
#define CTL_DISCARD_MAX (16u * CONTROL_MAX_REQUEST)

/* Past CONTROL_MAX_REQUEST, the rest of the line is read and dropped before the error
 * is sent: closing a unix socket with unread data resets it, and the client would
 * get that instead of the answer. Returns true once the answer is due. */
static bool conn_discard(struct control_conn *c, ssize_t n)
{
	c->discarded += (size_t)n;
	return n == 0 || memchr(c->buf, '\n', (size_t)n) || c->discarded >= CTL_DISCARD_MAX;
}

/* false when the answer comes later, from the engine call's completion */
static bool conn_answer(struct control_conn *c, const char *line, size_t len)
{
	struct json_object *ans;

	c->ctl->current = c;
	ans = dispatch(c->ctl, line, len);
	c->ctl->current = NULL;
	if (!ans) {
		/* the connection only waits now: nothing more is read from it */
		loop_watch_remove(c->watch);
		c->watch = NULL;
		return false;
	}
	conn_send(c, ans);
	return true;
}

/* A request is one line; a client that ends its side without the newline still
 * gets an answer to what it sent, and one that sends more than fits gets an error
 * rather than a closed socket. */
static void conn_readable(void *arg, unsigned events)
{
	struct control_conn *c = arg;
	struct json_object *ans;
	ssize_t n;
	char *nl;

	(void)events;
	n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0 || (n == 0 && c->len == 0 && !c->oversized)) {
		conn_close(c);
		return;
	}
	if (c->oversized) {
		if (!conn_discard(c, n))
			return;
		ans = ctl_error(EMSGSIZE, "request longer than %d bytes (one line of JSON)",
				CONTROL_MAX_REQUEST - 1);
		goto answer;
	}
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	nl = memchr(c->buf, '\n', c->len);
	if (!nl && n > 0) {
		if (c->len == sizeof(c->buf) - 1) {
			c->oversized = true;
			c->len = 0;
		}
		return; /* more to come */
	}
	if (nl)
		*nl = '\0';
	if (conn_answer(c, c->buf, nl ? (size_t)(nl - c->buf) : c->len))
		conn_close(c);
	return;
answer:
	conn_send(c, ans);
	conn_close(c);
}

static void accept_ready(void *arg, unsigned events)
{
	struct control *ctl = arg;
	struct control_conn *c;
	int fd;

	(void)events;
	fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->ctl = ctl;
	c->fd = fd;
	if (loop_watch_add(ctl->lp, fd, LOOP_READ, conn_readable, c, &c->watch) < 0) {
		close(fd);
		free(c);
	}
}

/* A socket file nobody answers on is a leftover of a crash: it may go. */
static int claim_path(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int r;

	if (fd < 0)
		return -errno;
	strcpy(sa.sun_path, path);
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (r == 0)
		return -EADDRINUSE;
	unlink(path);
	return 0;
}

int control_create(struct loop *lp, const struct control_opts *opts, struct control **out)
{
	const char *path = opts->path;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct control *ctl;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	r = claim_path(path);
	if (r < 0) {
		log_msg(LOG_ERROR, CTL_LOG, "%s: another quilld is listening there", path);
		return r;
	}
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	ctl->lp = lp;
	ctl->eng = opts->eng;
	ctl->vhost = opts->vhost;
	ctl->cluster = opts->cluster;
	ctl->guard = opts->guard;
	ctl->replicas = opts->replicas;
	ctl->orphans = opts->orphans;
	ctl->volume_owned = opts->volume_owned;
	ctl->volume_owned_arg = opts->volume_owned_arg;
	ctl->volume_takeover = opts->volume_takeover;
	ctl->volume_removing = opts->volume_removing;
	snprintf(ctl->nbd_tcp, sizeof(ctl->nbd_tcp), "%s", opts->nbd_tcp ? opts->nbd_tcp : "");
	snprintf(ctl->nbd_unix, sizeof(ctl->nbd_unix), "%s", opts->nbd_unix ? opts->nbd_unix : "");
	ctl->path = strdup(path);
	strcpy(sa.sun_path, path);
	ctl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ctl->fd < 0 || !ctl->path) {
		r = ctl->fd < 0 ? -errno : -ENOMEM;
		goto err_free;
	}
	if (bind(ctl->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
	    listen(ctl->fd, 16) < 0) {
		r = -errno;
		log_msg(LOG_ERROR, CTL_LOG, "cannot listen on %s: %s", path, err_str(-r));
		goto err_close;
	}
	r = loop_watch_add(lp, ctl->fd, LOOP_READ, accept_ready, ctl, &ctl->watch);
	if (r < 0)
		goto err_unlink;
	*out = ctl;
	return 0;

err_unlink:
	unlink(path);
err_close:
	close(ctl->fd);
err_free:
	free(ctl->path);
	free(ctl);
	return r;
}

void control_destroy(struct control *ctl)
{
	if (!ctl)
		return;
	loop_watch_remove(ctl->watch);
	close(ctl->fd);
	unlink(ctl->path);
	free(ctl->path);
	ctl->path = NULL;
	ctl->destroyed = true;
	/* calls still waiting for the engine keep it: the last one frees it (engine_close
	 * runs every completion) */
	if (!ctl->npending)
		free(ctl);
}
