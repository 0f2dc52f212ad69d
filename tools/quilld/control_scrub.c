/* tools/quilld/control_scrub.c — volume.scrub: a scrub pass over a replicated volume
 * this node owns (replication/scrub.h), answered once it ended with what it read,
 * found and fixed; and the brief of the last passes that status answers carry. */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "replication/replica.h"
#include "replication/scrub.h"
#include "tools/control_proto.h"
#include "tools/quilld/control_internal.h"

static const char *const kind_names[SCRUB_KINDS] = { "replica", "fragment", "parity" };

static struct json_object *finding_json(const struct scrub_finding *f)
{
	struct json_object *o = json_object_new_object(), *b = json_object_new_array();

	ctl_add_str(o, "kind", kind_names[f->kind]);
	ctl_add_int(o, "fragment", f->index);
	ctl_add_int(o, "segment", f->sno);
	ctl_add_str(o, "node", f->node);
	ctl_add_bool(o, "owner", f->owner);
	ctl_add_int(o, "bad_blocks", f->nbad);
	for (uint32_t i = 0; i < f->nfirst; i++)
		json_object_array_add(b, json_object_new_int64(f->first[i]));
	json_object_object_add(o, "first_bad_blocks", b);
	ctl_add_int(o, "fixed_blocks", f->nfixed);
	ctl_add_str(o, "action", f->action);
	return o;
}

/* brief: the counts only (status answers), else the findings too. */
static struct json_object *report_json(const struct scrub_report *r, bool brief)
{
	struct json_object *o = json_object_new_object(), *arr;

	ctl_add_str(o, "volume", r->vol);
	ctl_add_bool(o, "running", r->running);
	ctl_add_bool(o, "background", r->background);
	ctl_add_int(o, "started", r->started);
	ctl_add_int(o, "ended", r->ended);
	ctl_add_int(o, "elapsed_ms", (int64_t)r->elapsed_ms);
	ctl_add_str(o, "error", r->result < 0 ? strerror(-r->result) : "");
	ctl_add_int(o, "segments", r->segments);
	ctl_add_int(o, "segments_skipped", r->skipped);
	ctl_add_int(o, "copies_checked", r->copies);
	ctl_add_int(o, "copies_not_checked", r->unchecked_copies);
	ctl_add_int(o, "bytes_checked", (int64_t)r->bytes);
	ctl_add_int(o, "bad_blocks", (int64_t)r->blocks_bad);
	ctl_add_int(o, "fixed_blocks", (int64_t)r->blocks_fixed);
	ctl_add_int(o, "bad_copies", r->copies_bad);
	ctl_add_int(o, "fixed_copies", r->copies_fixed);
	ctl_add_int(o, "stripes", r->stripes);
	ctl_add_int(o, "fragments_checked", r->frags);
	ctl_add_int(o, "fragments_not_checked", r->unchecked_frags);
	for (unsigned k = 0; k < SCRUB_KINDS; k++) {
		char key[32];

		snprintf(key, sizeof(key), "found_%s", kind_names[k]);
		ctl_add_int(o, key, r->found[k]);
		snprintf(key, sizeof(key), "fixed_%s", kind_names[k]);
		ctl_add_int(o, key, r->fixed[k]);
	}
	ctl_add_int(o, "passes_since_start", r->passes);
	ctl_add_int(o, "bad_blocks_since_start", (int64_t)r->total_bad);
	ctl_add_int(o, "fixed_blocks_since_start", (int64_t)r->total_fixed);
	if (brief)
		return o;
	arr = json_object_new_array();
	for (unsigned i = 0; i < r->nfind; i++)
		json_object_array_add(arr, finding_json(&r->find[i]));
	json_object_object_add(o, "findings", arr);
	return o;
}

struct json_object *ctl_scrub_last_json(struct control *ctl, const char *name)
{
	struct scrub_report r;

	if (scrub_report_get(replica_scrub(ctl->replicas), name, &r) < 0)
		return NULL;
	return report_json(&r, true);
}

static void add_brief(void *arg, const struct scrub_report *r)
{
	json_object_array_add(arg, report_json(r, true));
}

static void add_full(void *arg, const struct scrub_report *r)
{
	json_object_array_add(arg, report_json(r, false));
}

struct json_object *ctl_scrub_status_json(struct control *ctl)
{
	struct scrub *sc = replica_scrub(ctl->replicas);
	struct json_object *o, *arr;
	unsigned mbps, interval;

	if (!sc)
		return NULL;
	scrub_settings(sc, &mbps, &interval);
	o = json_object_new_object();
	ctl_add_int(o, "background_mbps", mbps);
	ctl_add_int(o, "interval_s", interval);
	arr = json_object_new_array();
	scrub_each_report(sc, add_brief, arr);
	json_object_object_add(o, "last_passes", arr);
	return o;
}

/* The pass (or passes) ended: their reports. */
static struct json_object *scrub_finish(struct control *ctl, struct json_object *req, int res)
{
	struct scrub *sc = replica_scrub(ctl->replicas);
	const char *name = ctl_get_string(req, "name");
	struct json_object *v, *arr;
	struct scrub_report r;

	if (res == -ENOENT && name)
		return ctl_error(ENOENT, "volume '%s' is no replicated volume this node owns "
				 "(its owner scrubs it: cluster status names it)", name);
	if (res == -ENOENT)
		return ctl_error(ENOENT, "this node owns no replicated volume");
	if (res == -EBUSY)
		return ctl_error(EBUSY, "a scrub of %s%s%s is running already", name ? "'" : "",
				 name ? name : "every volume this node owns", name ? "'" : "");
	arr = json_object_new_array();
	if (name && scrub_report_get(sc, name, &r) == 0)
		add_full(arr, &r);
	else if (!name)
		scrub_each_report(sc, add_full, arr);
	if (res < 0 && json_object_array_length(arr) == 0) {
		json_object_put(arr);
		return ctl_error(-res, "the scrub stopped: %s", strerror(-res));
	}
	v = ctl_ok();
	json_object_object_add(v, "scrub", arr);
	return v;
}

static struct json_object *cmd_scrub(struct control *ctl, struct json_object *req)
{
	struct scrub *sc = ctl->replicas ? replica_scrub(ctl->replicas) : NULL;
	const char *name = ctl_get_string(req, "name");
	struct ctl_call *call;
	int r;

	if (!ctl->cluster)
		return ctl_single_node();
	if (!sc)
		return ctl_error(ENOTSUP, "this node runs no replicated volumes (no peer listener)");
	call = ctl_call_new(ctl, req, scrub_finish);
	r = name ? scrub_start(sc, name, ctl_call_done, call)
		 : scrub_start_all(sc, ctl_call_done, call);
	return ctl_call_started(call, r);
}

const struct control_cmd ctl_scrub_commands[] = {
	{ CONTROL_CMD_VOLUME_SCRUB, cmd_scrub, { CTL_KEY_NAME } },
	{ NULL, NULL, { { NULL } } },
};
