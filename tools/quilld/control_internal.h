/* tools/quilld/control_internal.h — what control.c (the socket, volume and node
 * commands) and control_snap.c (snapshots, clones, flatten, diff) share.
 * Everything runs on the loop's (= the engine's) thread.
 */
#ifndef QUILL_QUILLD_CONTROL_INTERNAL_H
#define QUILL_QUILLD_CONTROL_INTERNAL_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tools/quilld/control.h"

struct loop_watch;
struct control_conn;

struct control {
	struct loop *lp;
	struct engine *eng;
	int fd;
	struct loop_watch *watch;
	char *path;
	char nbd_tcp[96];      /* "ADDR:PORT" or "" */
	char nbd_unix[4096];   /* path or "" */
	struct vhost_server *vhost; /* or NULL */
	struct cluster *cluster;    /* or NULL: a single node */
	struct blk_guard *guard;    /* or NULL: a single node */
	struct replicas *replicas;  /* or NULL: nothing replicated here */
	struct orphans *orphans;    /* or NULL: no holder, or a single node */
	void (*volume_owned)(void *arg, const char *name, int64_t epoch, unsigned replicas,
			     unsigned min_replicas);
	/* is name being taken over here (its owner died elsewhere)? its step then */
	bool (*volume_takeover)(void *arg, const char *name, char *step, size_t len);
	void (*volume_removing)(void *arg, const char *name, bool on);
	void *volume_owned_arg;
	struct control_conn *current; /* the connection whose request is being dispatched */
	unsigned npending;     /* calls waiting for their engine completion */
	bool destroyed;        /* control_destroy() ran: freed when npending drops to 0 */
};

/* A command: answers a parsed request, or returns NULL when the answer comes later
 * (ctl_call_started() said so: the connection then waits, the loop goes on). */
typedef struct json_object *(*control_cmd_fn)(struct control *ctl, struct json_object *req);

/* ---- commands whose engine call is asynchronous ----
 * struct ctl_call *call = ctl_call_new(ctl, req, finish);
 * return ctl_call_started(call, engine_x_async(..., ctl_call_done, call));
 * finish(ctl, req, res) builds the answer from the engine's result; it runs from the
 * engine's completion (or at once if the call failed to start), and its answer goes
 * to the connection that asked. Other connections, NBD and vhost are served
 * meanwhile. */
typedef struct json_object *(*ctl_finish_fn)(struct control *ctl, struct json_object *req,
					     int res);
struct ctl_call;
/* The deferred answer of the request being dispatched (never NULL: it is part of the
 * connection). */
struct ctl_call *ctl_call_new(struct control *ctl, struct json_object *req,
			      ctl_finish_fn finish);
/* started: what the engine call returned. <0: the answer now (finish(started)); 0: NULL,
 * the answer is sent by ctl_call_done(). */
struct json_object *ctl_call_started(struct ctl_call *call, int started);
/* The engine_cb to give the engine call, with the call as its argument. */
void ctl_call_done(void *arg, int res);

/* {"ok": false, "error": <formatted sentence>, "errno": err} */
__attribute__((format(printf, 2, 3)))
struct json_object *ctl_error(int err, const char *fmt, ...);
struct json_object *ctl_ok(void);
struct json_object *ctl_no_name(void); /* a request without "name" */
/* A string field, or NULL if absent or not a string. */
const char *ctl_get_string(struct json_object *req, const char *key);
/* A non-negative integer field: 0 or -EINVAL. */
int ctl_get_u64(struct json_object *req, const char *key, uint64_t *out);
/* A boolean field; false if absent. */
bool ctl_get_bool(struct json_object *req, const char *key);
void ctl_add_int(struct json_object *o, const char *key, int64_t v);
struct fragread_status;
/* A fragread_status's counters: frag_runs, frag_requests, frag_degraded, frag_decodes,
 * frag_failed, frag_split. */
void ctl_add_frag(struct json_object *o, const struct fragread_status *fs);
void ctl_add_str(struct json_object *o, const char *key, const char *v);
/* A durability policy's name into buf: "replicas R" (k 0) or "ec K+M". */
void ctl_policy_name(char *buf, size_t len, unsigned replicas, unsigned k, unsigned m);
void ctl_add_bool(struct json_object *o, const char *key, bool v);
/* The answer to a volume call that failed with r (-errno). */
struct json_object *ctl_volume_error(int r, const char *name);
/* An answer with the volume object after a call that succeeded (or r's error). */
struct json_object *ctl_volume_answer(struct control *ctl, int r, const char *name);
/* The volume object of the protocol (docs/control.md), or NULL if it does not exist. */
struct json_object *ctl_volume_json(struct control *ctl, const char *name);
/* The answer to a call on spec refused with -EBUSY: names who holds it ("volume 'v'
 * is attached over NBD by 127.0.0.1:53122: <advice>"), or says that another command
 * is working on it. */
struct json_object *ctl_busy_error(struct control *ctl, const char *spec, const char *advice);
/* Refuses to delete what a vhost-user export is defined on (spec exactly: "VOL" or
 * "VOL@SNAP"), even with no front-end connected: the answer, or NULL. */
struct json_object *ctl_vhost_refuse_rm(struct control *ctl, const char *spec);
/* Refuses to delete what a volume of the cluster map names as its base (spec "VOL@SNAP":
 * that snapshot; "VOL": any of its snapshots), naming those clones, from any node of
 * a cluster: the answer, or NULL (none, or no cluster). */
struct json_object *ctl_cluster_refuse_base_rm(struct control *ctl, const char *spec);
/* A clone across owners (docs/replication.md, "Snapshots and clones across owners"):
 * on a node of a cluster whose engine does not run the parent, a volume of the map,
 * the clone is a map volume of its own (R like volume create, claimed by this node)
 * whose record names its base: true and *ans (or the answer to come). false: the
 * parent runs here (the local clone) or is not in the map. */
bool ctl_cluster_clone(struct control *ctl, struct json_object *req, const char *snap_spec,
		       const char *name, struct json_object **ans);
/* name's flatten ended well: a clone across owners that this node owns drops `base`
 * from its record (fenced), then reads through its base no more. */
void ctl_cluster_flattened(struct control *ctl, const char *name);
/* Adds "vhost_exports": [{"spec", "socket", "connected"}] to o: the exports defined on
 * vol and its snapshots. */
void ctl_vhost_add_exports(struct control *ctl, const char *vol, struct json_object *o);

/* The keys a command takes besides "cmd", and their JSON types. The dispatcher
 * refuses a request with any other key, or a key of another type, before the
 * handler runs (control_request.c): a handler sees only keys it declared (each may
 * still be absent). */
enum ctl_type {
	CTL_STRING,
	CTL_UINT, /* an integer >= 0 */
	CTL_BOOL,
};

struct ctl_key {
	const char *name; /* NULL ends the list */
	enum ctl_type type;
};

#define CTL_MAX_CMD_KEYS 6
#define CTL_KEY_NAME { "name", CTL_STRING } /* a volume */
#define CTL_KEY_SNAP { "snap", CTL_STRING } /* "VOL@SNAP" */

struct control_cmd {
	const char *cmd;      /* CONTROL_CMD_*; NULL ends a table */
	control_cmd_fn fn;
	struct ctl_key keys[CTL_MAX_CMD_KEYS];
};

/* 0 if text[0..len) is one JSON object with no duplicate key in any object (after
 * unescaping), no NUL and no \u0000; else -EINVAL (-ENOMEM) and a reason in why. */
int ctl_request_check(const char *text, size_t len, char *why, size_t whylen);
/* 0 if every key of req but "cmd" is one c declares, of its type; else -EINVAL and
 * a sentence in why. */
int ctl_request_check_keys(const struct control_cmd *c, struct json_object *req, char *why,
			   size_t whylen);

/* control_snap.c: snapshots, clones, rollback, flatten, diff. */
extern const struct control_cmd ctl_snap_commands[];
/* control_vhost.c: vhost-user-blk exports. */
extern const struct control_cmd ctl_vhost_commands[];
/* control_cluster.c: cluster status, nodes, out and in. */
extern const struct control_cmd ctl_cluster_commands[];
/* The answer to a cluster command on a single node (ENOTSUP). */
struct json_object *ctl_single_node(void);
/* control_cluster_vol.c: volumes in the cluster map. */
extern const struct control_cmd ctl_cluster_vol_commands[];
/* control_scrub.c: volume.scrub. */
extern const struct control_cmd ctl_scrub_commands[];
/* The scrub's settings and each owned volume's last pass, brief (cluster status,
 * node status): an object, or NULL without replicated volumes here. */
struct json_object *ctl_scrub_status_json(struct control *ctl);
/* A volume's last scrub pass, brief, or NULL (none since start-up, or not owned here). */
struct json_object *ctl_scrub_last_json(struct control *ctl, const char *name);
/* volume.create and volume.rm of a node of a cluster (records in etcd, then the local
 * volume): true if handled, *ans the answer (NULL: it comes later); false: the single
 * node's way (the caller goes on). */
bool ctl_cluster_volume_create(struct control *ctl, struct json_object *req, const char *name,
			       uint64_t size, unsigned flags, struct json_object **ans);
bool ctl_cluster_volume_rm(struct control *ctl, struct json_object *req, const char *name,
			   struct json_object **ans);
/* Adds "cluster": {replicas, owner, epoch, ...} (null: not in the map) to a volume
 * object; nothing on a single node. */
void ctl_cluster_add_volume(struct control *ctl, const char *name, struct json_object *o);
/* Adds "volumes": [...] of the map to o: 0 or -ENOMEM. */
int ctl_cluster_add_volumes(struct control *ctl, struct json_object *o);

#endif
