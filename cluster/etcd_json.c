/* cluster/etcd_json.c — etcd's gateway JSON (etcd_json.h). */
#include "cluster/etcd_json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int etcd_b64_encode(const void *data, size_t len, char *out, size_t outlen)
{
	const uint8_t *p = data;
	size_t need = (len + 2) / 3 * 4 + 1, o = 0;

	if (outlen < need)
		return -ENOSPC;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		out[o++] = b64_alphabet[v >> 18 & 63];
		out[o++] = b64_alphabet[v >> 12 & 63];
		out[o++] = i + 1 < len ? b64_alphabet[v >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
	}
	out[o] = '\0';
	return (int)o;
}

static int b64_value(char c)
{
	const char *p = c ? strchr(b64_alphabet, c) : NULL;

	return p ? (int)(p - b64_alphabet) : -1;
}

int etcd_b64_decode(const char *text, void *out, size_t outlen, size_t *n)
{
	size_t len = strlen(text), o = 0;
	uint8_t *dst = out;

	if (len % 4)
		return -EPROTO;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		unsigned pad = 0;

		for (int j = 0; j < 4; j++) {
			bool last_group = i + 4 == len;

			if (text[i + j] == '=' && last_group && j >= 2) {
				/* padding only at the end, and "x=y=" is not valid */
				if (j == 2 && text[i + 3] != '=')
					return -EPROTO;
				v[j] = 0;
				pad++;
				continue;
			}
			v[j] = b64_value(text[i + j]);
			if (v[j] < 0 || pad)
				return -EPROTO;
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		size_t take = 3 - pad;

		if (o + take > outlen)
			return -ENOSPC;
		dst[o++] = (uint8_t)(w >> 16);
		if (take > 1)
			dst[o++] = (uint8_t)(w >> 8);
		if (take > 2)
			dst[o++] = (uint8_t)w;
	}
	*n = o;
	return 0;
}

int etcd_json_int64(struct json_object *obj, const char *key, int64_t *out)
{
	struct json_object *v;
	const char *s;
	char *end;
	long long x;

	*out = 0;
	if (!json_object_is_type(obj, json_type_object) || !json_object_object_get_ex(obj, key, &v))
		return 0;
	if (json_object_is_type(v, json_type_int)) {
		*out = json_object_get_int64(v);
		return 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return -EPROTO;
	s = json_object_get_string(v);
	errno = 0;
	x = strtoll(s, &end, 10);
	if (!*s || *end || errno)
		return -EPROTO;
	*out = x;
	return 0;
}

bool etcd_json_error(struct json_object *obj, int *code, char *msg, size_t msglen)
{
	struct json_object *e, *c;

	if (!json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, "error", &e))
		return false;
	/* a stream wraps it: {"error": {"grpc_code": N, "message": "..."}} */
	if (json_object_is_type(e, json_type_object)) {
		struct json_object *m;

		*code = json_object_object_get_ex(e, "grpc_code", &c) ? json_object_get_int(c) : 2;
		snprintf(msg, msglen, "%s",
			 json_object_object_get_ex(e, "message", &m) ? json_object_get_string(m)
								   : "error");
		return true;
	}
	*code = json_object_object_get_ex(obj, "code", &c) ? json_object_get_int(c) : 2;
	snprintf(msg, msglen, "%s", json_object_get_string(e));
	return true;
}

void etcd_kv_free(struct etcd_kv *kvs, size_t n)
{
	if (!kvs)
		return;
	for (size_t i = 0; i < n; i++) {
		free(kvs[i].key);
		free(kvs[i].value);
	}
	free(kvs);
}

/* A base64 field into a new NUL-terminated buffer (absent: empty). */
static int get_bytes(struct json_object *obj, const char *name, char **out, size_t *len)
{
	struct json_object *v;
	const char *text = "";
	size_t cap;
	int r;

	if (json_object_object_get_ex(obj, name, &v)) {
		if (!json_object_is_type(v, json_type_string))
			return -EPROTO;
		text = json_object_get_string(v);
	}
	cap = strlen(text) / 4 * 3 + 1;
	*out = malloc(cap);
	if (!*out)
		return -ENOMEM;
	r = etcd_b64_decode(text, *out, cap - 1, len);
	if (r < 0) {
		free(*out);
		*out = NULL;
		return r;
	}
	(*out)[*len] = '\0';
	return 0;
}

static int parse_kv(struct json_object *obj, struct etcd_kv *kv)
{
	int r;

	memset(kv, 0, sizeof(*kv));
	if (!json_object_is_type(obj, json_type_object))
		return -EPROTO;
	r = get_bytes(obj, "key", &kv->key, &kv->key_len);
	if (r == 0)
		r = get_bytes(obj, "value", &kv->value, &kv->value_len);
	if (r == 0)
		r = etcd_json_int64(obj, "create_revision", &kv->create_revision);
	if (r == 0)
		r = etcd_json_int64(obj, "mod_revision", &kv->mod_revision);
	if (r == 0)
		r = etcd_json_int64(obj, "version", &kv->version);
	if (r == 0)
		r = etcd_json_int64(obj, "lease", &kv->lease);
	if (r == 0 && kv->key_len == 0)
		r = -EPROTO; /* etcd has no empty key */
	if (r < 0) {
		free(kv->key);
		free(kv->value);
		memset(kv, 0, sizeof(*kv));
	}
	return r;
}

static int header_revision(struct json_object *obj, int64_t *revision)
{
	struct json_object *h;

	*revision = 0;
	if (!json_object_object_get_ex(obj, "header", &h))
		return 0;
	return etcd_json_int64(h, "revision", revision);
}

int etcd_json_range(struct json_object *obj, int64_t *revision, struct etcd_kv **kvs,
		    size_t *n)
{
	struct json_object *arr;
	size_t len;
	int r;

	*kvs = NULL;
	*n = 0;
	if (!json_object_is_type(obj, json_type_object))
		return -EPROTO;
	r = header_revision(obj, revision);
	if (r < 0 || !json_object_object_get_ex(obj, "kvs", &arr))
		return r;
	if (!json_object_is_type(arr, json_type_array))
		return -EPROTO;
	len = json_object_array_length(arr);
	if (!len)
		return 0;
	*kvs = calloc(len, sizeof(**kvs));
	if (!*kvs)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		r = parse_kv(json_object_array_get_idx(arr, i), &(*kvs)[i]);
		if (r < 0) {
			etcd_kv_free(*kvs, i);
			*kvs = NULL;
			return r;
		}
	}
	*n = len;
	return 0;
}

int etcd_json_lease(struct json_object *obj, int64_t *id, int64_t *ttl)
{
	struct json_object *res;
	int r;

	if (!json_object_is_type(obj, json_type_object))
		return -EPROTO;
	if (json_object_object_get_ex(obj, "result", &res))
		obj = res;
	r = etcd_json_int64(obj, "ID", id);
	if (r == 0)
		r = etcd_json_int64(obj, "TTL", ttl);
	if (r == 0 && *id == 0)
		r = -EPROTO;
	return r;
}

int etcd_json_txn(struct json_object *obj, bool *succeeded, int64_t *revision)
{
	struct json_object *s;

	*succeeded = false;
	if (!json_object_is_type(obj, json_type_object))
		return -EPROTO;
	if (json_object_object_get_ex(obj, "succeeded", &s)) {
		if (!json_object_is_type(s, json_type_boolean))
			return -EPROTO;
		*succeeded = json_object_get_boolean(s);
	}
	return header_revision(obj, revision);
}

void etcd_watch_msg_free(struct etcd_watch_msg *msg)
{
	for (size_t i = 0; msg->events && i < msg->nevents; i++) {
		free(msg->events[i].kv.key);
		free(msg->events[i].kv.value);
	}
	free(msg->events);
	msg->events = NULL;
	msg->nevents = 0;
}

static int parse_event(struct json_object *obj, struct etcd_event *ev)
{
	struct json_object *t, *kv;

	ev->type = ETCD_EVENT_PUT; /* the zero value: left out */
	if (!json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, "kv", &kv))
		return -EPROTO;
	if (json_object_object_get_ex(obj, "type", &t)) {
		const char *s = json_object_get_string(t);

		if (strcmp(s, "DELETE") == 0)
			ev->type = ETCD_EVENT_DELETE;
		else if (strcmp(s, "PUT") != 0)
			return -EPROTO;
	}
	return parse_kv(kv, &ev->kv);
}

static int parse_events(struct json_object *res, struct etcd_watch_msg *msg)
{
	struct json_object *arr;
	size_t len;

	if (!json_object_object_get_ex(res, "events", &arr))
		return 0;
	if (!json_object_is_type(arr, json_type_array))
		return -EPROTO;
	len = json_object_array_length(arr);
	if (!len)
		return 0;
	msg->events = calloc(len, sizeof(*msg->events));
	if (!msg->events)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		int r = parse_event(json_object_array_get_idx(arr, i), &msg->events[i]);

		if (r < 0)
			return r; /* the caller frees the nevents decoded so far */
		msg->nevents = i + 1;
	}
	return 0;
}

static bool get_bool(struct json_object *obj, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(obj, key, &v) && json_object_get_boolean(v);
}

int etcd_json_watch(struct json_object *obj, struct etcd_watch_msg *msg)
{
	struct json_object *res, *reason;
	int r;

	memset(msg, 0, sizeof(*msg));
	if (!json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, "result", &res) ||
	    !json_object_is_type(res, json_type_object))
		return -EPROTO;
	msg->created = get_bool(res, "created");
	msg->canceled = get_bool(res, "canceled");
	if (json_object_object_get_ex(res, "cancel_reason", &reason))
		snprintf(msg->cancel_reason, sizeof(msg->cancel_reason), "%s",
			 json_object_get_string(reason));
	r = etcd_json_int64(res, "compact_revision", &msg->compact_revision);
	if (r == 0)
		r = header_revision(res, &msg->revision);
	if (r == 0)
		r = parse_events(res, msg);
	if (r < 0)
		etcd_watch_msg_free(msg);
	return r;
}

void etcd_prefix_end(const char *prefix, char *out)
{
	size_t len = strlen(prefix);

	memcpy(out, prefix, len + 1);
	/* the last byte that can be raised; a prefix of 0xff bytes has no end: "\0" (all
	 * keys), as etcd's clientv3.GetPrefixRangeEnd */
	while (len && (uint8_t)out[len - 1] == 0xff)
		out[--len] = '\0';
	if (len)
		out[len - 1]++;
}

int etcd_json_add_bytes(struct json_object *obj, const char *name, const void *data,
			size_t len)
{
	size_t cap = (len + 2) / 3 * 4 + 1;
	char *text = malloc(cap);
	struct json_object *s;

	if (!text)
		return -ENOMEM;
	etcd_b64_encode(data, len, text, cap);
	s = json_object_new_string(text);
	free(text);
	if (!s || json_object_object_add(obj, name, s) < 0) {
		json_object_put(s);
		return -ENOMEM;
	}
	return 0;
}

int etcd_json_add_int64(struct json_object *obj, const char *name, int64_t v)
{
	char buf[24];
	struct json_object *s;

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	s = json_object_new_string(buf);
	if (!s || json_object_object_add(obj, name, s) < 0) {
		json_object_put(s);
		return -ENOMEM;
	}
	return 0;
}

struct json_object *etcd_json_key(const char *key, const char *range_end)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	if (etcd_json_add_bytes(o, "key", key, strlen(key)) < 0 ||
	    (range_end && etcd_json_add_bytes(o, "range_end", range_end, strlen(range_end)) < 0)) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

struct json_object *etcd_json_compare_eq(const char *key, enum etcd_target target,
					 int64_t rev)
{
	struct json_object *o = etcd_json_key(key, NULL);
	bool create = target == ETCD_TARGET_CREATE;

	if (!o)
		return NULL;
	if (json_object_object_add(o, "target", json_object_new_string(create ? "CREATE" : "MOD")) < 0 ||
	    json_object_object_add(o, "result", json_object_new_string("EQUAL")) < 0 ||
	    etcd_json_add_int64(o, create ? "create_revision" : "mod_revision", rev) < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

struct json_object *etcd_json_compare_value(const char *key, const char *value)
{
	struct json_object *o = etcd_json_key(key, NULL);

	if (!o)
		return NULL;
	if (json_object_object_add(o, "target", json_object_new_string("VALUE")) < 0 ||
	    json_object_object_add(o, "result", json_object_new_string("EQUAL")) < 0 ||
	    etcd_json_add_bytes(o, "value", value, strlen(value)) < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* {name: inner}, taking inner (NULL stays NULL). */
static struct json_object *wrap(const char *name, struct json_object *inner)
{
	struct json_object *o = inner ? json_object_new_object() : NULL;

	if (!o || json_object_object_add(o, name, inner) < 0) {
		json_object_put(o);
		json_object_put(inner);
		return NULL;
	}
	return o;
}

struct json_object *etcd_json_put_op(const char *key, const char *value, int64_t lease)
{
	struct json_object *p = etcd_json_key(key, NULL);

	if (p && (etcd_json_add_bytes(p, "value", value, strlen(value)) < 0 ||
		  (lease && etcd_json_add_int64(p, "lease", lease) < 0))) {
		json_object_put(p);
		p = NULL;
	}
	return wrap("request_put", p);
}

struct json_object *etcd_json_delete_op(const char *key)
{
	return wrap("request_delete_range", etcd_json_key(key, NULL));
}

struct json_object *etcd_json_delete_range_op(const char *key, const char *end)
{
	return wrap("request_delete_range", etcd_json_key(key, end));
}
