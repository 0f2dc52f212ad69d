/* cluster/layout.c — quill's etcd keys and values (layout.h). */
#include "cluster/layout.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const dirs[] = {
	[LAYOUT_MEMBER] = "members/",
	[LAYOUT_ALIVE] = "alive/",
	[LAYOUT_OUT] = "out/",
};

bool layout_id_valid(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > LAYOUT_ID_MAX || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
		return false;
	return strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

bool layout_prefix_valid(const char *prefix)
{
	size_t n = strlen(prefix);

	if (n < 1 || n > LAYOUT_PREFIX_MAX || prefix[0] != '/' || prefix[n - 1] != '/' ||
	    strstr(prefix, "//"))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)prefix[i] < 0x20 || prefix[i] == 0x7f)
			return false;
	return true;
}

int layout_dir(char *buf, size_t len, const char *prefix, enum layout_kind kind)
{
	int n = snprintf(buf, len, "%s%s", prefix, dirs[kind]);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int layout_key(char *buf, size_t len, const char *prefix, enum layout_kind kind,
	       const char *id)
{
	int n;

	if (!layout_id_valid(id))
		return -EINVAL;
	n = snprintf(buf, len, "%s%s%s", prefix, dirs[kind], id);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int layout_key_parse(const char *prefix, const char *key, size_t key_len,
		     enum layout_kind *kind, char id[LAYOUT_ID_MAX + 1])
{
	size_t plen = strlen(prefix);

	if (key_len <= plen || memcmp(key, prefix, plen) != 0 || memchr(key, '\0', key_len))
		return -ENOENT;
	key += plen;
	key_len -= plen;
	for (unsigned k = 0; k < sizeof(dirs) / sizeof(dirs[0]); k++) {
		size_t dlen = strlen(dirs[k]), ilen = key_len - dlen;

		if (key_len <= dlen || memcmp(key, dirs[k], dlen) != 0 || ilen > LAYOUT_ID_MAX)
			continue;
		memcpy(id, key + dlen, ilen);
		id[ilen] = '\0';
		if (!layout_id_valid(id))
			return -ENOENT;
		*kind = (enum layout_kind)k;
		return 0;
	}
	return -ENOENT;
}

static int add_str(struct json_object *o, const char *key, const char *v)
{
	return json_object_object_add(o, key, json_object_new_string(v));
}

char *layout_node_encode(const struct layout_node *node)
{
	struct json_object *o = json_object_new_object();
	char *text = NULL;

	if (!o)
		return NULL;
	if (add_str(o, "id", node->id) == 0 && add_str(o, "domain", node->domain) == 0 &&
	    add_str(o, "nbd", node->nbd) == 0 && add_str(o, "control", node->control) == 0 &&
	    add_str(o, "peer", node->peer) == 0 &&
	    json_object_object_add(o, "format_version",
				   json_object_new_int64(node->format_version)) == 0 &&
	    json_object_object_add(o, "protocol_version",
				   json_object_new_int64(node->protocol_version)) == 0 &&
	    json_object_object_add(o, "up_since", json_object_new_int64(node->up_since)) == 0)
		text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return text;
}

static struct json_object *parse_object(const char *text, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = NULL;

	if (!tok)
		return NULL;
	if (len <= INT32_MAX)
		o = json_tokener_parse_ex(tok, text, (int)len);
	/* one whole object and nothing after it */
	if (o && (!json_object_is_type(o, json_type_object) ||
		  json_tokener_get_parse_end(tok) != len)) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

static int get_str(struct json_object *o, const char *key, char *out, size_t cap)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string) ||
	    (size_t)json_object_get_string_len(v) >= cap)
		return -EPROTO;
	memcpy(out, json_object_get_string(v), (size_t)json_object_get_string_len(v) + 1);
	return strlen(out) == (size_t)json_object_get_string_len(v) ? 0 : -EPROTO;
}

static int get_int(struct json_object *o, const char *key, int64_t min, int64_t max,
		   int64_t *out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return -EPROTO;
	*out = json_object_get_int64(v);
	return *out < min || *out > max ? -EPROTO : 0;
}

int layout_node_decode(const char *text, size_t len, struct layout_node *node)
{
	struct json_object *o = parse_object(text, len);
	int64_t fv = 0, pv = 0;
	int r = -EPROTO;

	memset(node, 0, sizeof(*node));
	if (!o)
		return -EPROTO;
	if (get_str(o, "id", node->id, sizeof(node->id)) == 0 &&
	    get_str(o, "domain", node->domain, sizeof(node->domain)) == 0 &&
	    get_str(o, "nbd", node->nbd, sizeof(node->nbd)) == 0 &&
	    get_str(o, "control", node->control, sizeof(node->control)) == 0 &&
	    get_str(o, "peer", node->peer, sizeof(node->peer)) == 0 &&
	    get_int(o, "format_version", 0, UINT32_MAX, &fv) == 0 &&
	    get_int(o, "protocol_version", 0, UINT32_MAX, &pv) == 0 &&
	    get_int(o, "up_since", 0, INT64_MAX, &node->up_since) == 0 &&
	    layout_id_valid(node->id) && layout_id_valid(node->domain))
		r = 0;
	node->format_version = (uint32_t)fv;
	node->protocol_version = (uint32_t)pv;
	json_object_put(o);
	if (r < 0)
		memset(node, 0, sizeof(*node));
	return r;
}

bool layout_compatible(const struct layout_node *a, const struct layout_node *b)
{
	return a->format_version == b->format_version &&
	       a->protocol_version == b->protocol_version;
}

char *layout_out_encode(int64_t since)
{
	char buf[48];

	snprintf(buf, sizeof(buf), "{\"since\":%lld}", (long long)since);
	return strdup(buf);
}

int layout_out_decode(const char *text, size_t len, int64_t *since)
{
	struct json_object *o = parse_object(text, len);
	int r;

	if (!o)
		return -EPROTO;
	r = get_int(o, "since", 0, INT64_MAX, since);
	json_object_put(o);
	return r;
}
