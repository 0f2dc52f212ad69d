/* cluster/etcd_json.h — the JSON of etcd v3's gRPC gateway (etcd 3.4: POST /v3/...),
 * encoded and decoded apart from any transport so that unit tests reach it.
 *
 * The gateway's rules (etcd's api/etcdserverpb/rpc.proto through grpc-gateway):
 * keys and values are bytes, written base64 (standard alphabet, padded); 64-bit
 * integers (revisions, lease ids, TTLs) are JSON strings ("123"), and fields equal
 * to their zero value are left out (an absent "TTL" is 0). A failed call answers
 * {"error": "...", "message": "...", "code": N} with a gRPC status code. A stream
 * (watch, keepalive) answers {"result": {...}} objects one after another.
 *
 * Decoders take what the server sent and check every field they use: a missing
 * required field or a field of the wrong type is -EPROTO, never a crash.
 */
#ifndef QUILL_CLUSTER_ETCD_JSON_H
#define QUILL_CLUSTER_ETCD_JSON_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* gRPC status codes the client acts on */
#define ETCD_CODE_INVALID_ARGUMENT 3  /* also "authentication failed", "user name is empty" */
#define ETCD_CODE_NOT_FOUND 5         /* e.g. "requested lease not found" */
#define ETCD_CODE_PERMISSION_DENIED 7
#define ETCD_CODE_FAILED_PRECONDITION 9
#define ETCD_CODE_OUT_OF_RANGE 11     /* "required revision has been compacted" */
#define ETCD_CODE_UNAVAILABLE 14
#define ETCD_CODE_UNAUTHENTICATED 16  /* "invalid auth token": authenticate again */

/* Base64 of len bytes into out (NUL-terminated). Returns the text's length, or
 * -ENOSPC if out (outlen bytes) is too small: it needs 4*ceil(len/3)+1. */
int etcd_b64_encode(const void *data, size_t len, char *out, size_t outlen);
/* Decodes padded standard base64 into out (outlen bytes); *n its length. -EPROTO on
 * a character outside the alphabet or a bad length, -ENOSPC if out is too small. */
int etcd_b64_decode(const char *text, void *out, size_t outlen, size_t *n);

/* A 64-bit field: a JSON string of digits (the gateway's way), or a JSON integer. An
 * absent field is 0 (proto3 leaves zeros out). -EPROTO if present but not a number. */
int etcd_json_int64(struct json_object *obj, const char *key, int64_t *out);

/* An error answer: fills code and msg (msglen bytes) and returns true; false if obj
 * is a normal answer. */
bool etcd_json_error(struct json_object *obj, int *code, char *msg, size_t msglen);

/* One key-value, decoded (key and value NUL-terminated after their bytes). */
struct etcd_kv {
	char *key;
	size_t key_len;
	char *value;
	size_t value_len;
	int64_t create_revision, mod_revision, version, lease;
};

void etcd_kv_free(struct etcd_kv *kvs, size_t n); /* each kv's strings, then kvs; NULL ok */

/* A range answer ({"header": {...}, "kvs": [...], "count": "N"}): *revision the
 * store's revision (header.revision), the kvs in *kvs (NULL when none, free with
 * etcd_kv_free). */
int etcd_json_range(struct json_object *obj, int64_t *revision, struct etcd_kv **kvs,
		    size_t *n);

/* A lease grant ({"ID": "...", "TTL": "..."}) or a keepalive result
 * ({"result": {"ID", "TTL"}}: a TTL of 0, or absent, says the lease is gone). */
int etcd_json_lease(struct json_object *obj, int64_t *id, int64_t *ttl);

/* A txn answer: did the compares hold ("succeeded" true)? */
int etcd_json_txn(struct json_object *obj, bool *succeeded, int64_t *revision);

enum etcd_event_type { ETCD_EVENT_PUT, ETCD_EVENT_DELETE };

struct etcd_event {
	enum etcd_event_type type;
	struct etcd_kv kv;
};

/* One message of a watch stream. */
struct etcd_watch_msg {
	bool created;
	bool canceled;
	int64_t compact_revision;  /* >0: events before it are gone: reload, then watch on */
	int64_t revision;          /* header.revision */
	char cancel_reason[128];
	struct etcd_event *events;
	size_t nevents;
};

int etcd_json_watch(struct json_object *obj, struct etcd_watch_msg *msg);
void etcd_watch_msg_free(struct etcd_watch_msg *msg);

/* ---- requests ---- */

/* The end of the range of keys starting with prefix (etcd's range_end: the prefix with
 * its last byte plus one), NUL-terminated, into out (at least strlen(prefix)+1). */
void etcd_prefix_end(const char *prefix, char *out);
/* {"key": b64(key)[, "range_end": b64(end)]}, as a new object (NULL on ENOMEM). */
struct json_object *etcd_json_key(const char *key, const char *range_end);
/* Adds the base64 of len bytes as obj[name]: 0 or -ENOMEM. */
int etcd_json_add_bytes(struct json_object *obj, const char *name, const void *data,
			size_t len);
/* Adds a 64-bit integer the gateway's way (a string): 0 or -ENOMEM. */
int etcd_json_add_int64(struct json_object *obj, const char *name, int64_t v);

/* Pieces of a txn request ({"compare": [...], "success": [...], "failure": [...]}),
 * each a new object or NULL on ENOMEM. */
enum etcd_target { ETCD_TARGET_CREATE, ETCD_TARGET_MOD };
/* The key's create_revision (mod_revision) equals rev; create_revision 0: no such key. */
struct json_object *etcd_json_compare_eq(const char *key, enum etcd_target target,
					 int64_t rev);
/* The key's value is exactly value's bytes (false for a key that does not exist). */
struct json_object *etcd_json_compare_value(const char *key, const char *value);
/* {"request_put": {key, value, lease (0: none)}} */
struct json_object *etcd_json_put_op(const char *key, const char *value, int64_t lease);
/* {"request_delete_range": {key}} */
struct json_object *etcd_json_delete_op(const char *key);
/* {"request_delete_range": {key, range_end}}: every key in [key, end) */
struct json_object *etcd_json_delete_range_op(const char *key, const char *end);

#endif
