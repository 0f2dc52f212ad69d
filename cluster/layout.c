/* cluster/layout.c — quill's etcd keys and values (layout.h). */
#include "cluster/layout.h"

#include <errno.h>
#include <json-c/json.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const dirs[] = {
	[LAYOUT_MEMBER] = "members/",
	[LAYOUT_ALIVE] = "alive/",
	[LAYOUT_OUT] = "out/",
	[LAYOUT_VOLUME] = "volumes/",
	[LAYOUT_OWNER] = "owners/",
	[LAYOUT_SPACE] = "space/",
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

char *layout_space_encode(const struct layout_space *sp)
{
	char buf[96];

	snprintf(buf, sizeof(buf), "{\"raw\":%" PRIu64 ",\"used\":%" PRIu64 ",\"usable\":%"
		 PRIu64 "}", sp->raw, sp->used, sp->usable);
	return strdup(buf);
}

int layout_space_decode(const char *text, size_t len, struct layout_space *sp)
{
	struct json_object *o = parse_object(text, len);
	int64_t raw = 0, used = 0, usable = 0;
	int r = -EPROTO;

	memset(sp, 0, sizeof(*sp));
	if (!o)
		return -EPROTO;
	if (get_int(o, "raw", 0, INT64_MAX, &raw) == 0 &&
	    get_int(o, "used", 0, raw, &used) == 0 && get_int(o, "usable", 0, raw, &usable) == 0) {
		*sp = (struct layout_space){ (uint64_t)raw, (uint64_t)used, (uint64_t)usable };
		r = 0;
	}
	json_object_put(o);
	return r;
}

/* ---- volumes ---- */

static const char *const vol_states[] = {
	[LAYOUT_VOL_CREATING] = "creating",
	[LAYOUT_VOL_READY] = "ready",
};

static const char *const seg_states[] = {
	[LAYOUT_SEG_OPEN] = "open",
	[LAYOUT_SEG_SEALED] = "sealed",
};

uint32_t layout_min_replicas(uint32_t replicas)
{
	return replicas >= 3 ? replicas - 1 : replicas;
}

static int add_int(struct json_object *o, const char *key, int64_t v)
{
	return json_object_object_add(o, key, json_object_new_int64(v));
}

/* A number of 1 or 2 decimal digits at *p, moving *p past it; -1 if none. */
static int small_number(const char **p)
{
	int v = 0, n = 0;

	for (; n < 3 && **p >= '0' && **p <= '9'; n++, (*p)++)
		v = v * 10 + (**p - '0');
	return n >= 1 && n <= 2 ? v : -1;
}

int layout_ec_parse(const char *text, uint32_t *k, uint32_t *m)
{
	const char *p = text;
	int kk = small_number(&p), mm = -1;

	if (*p == '+') {
		p++;
		mm = small_number(&p);
	}
	if (*p || kk < 1 || kk > (int)LAYOUT_EC_K_MAX || mm < 1 || mm > (int)LAYOUT_EC_M_MAX ||
	    kk + mm > (int)LAYOUT_EC_N_MAX)
		return -EINVAL;
	*k = (uint32_t)kk;
	*m = (uint32_t)mm;
	return 0;
}

/* An EC volume's code into o ("ec": "K+M"); nothing for a replicated one. */
static int add_ec(struct json_object *o, const struct layout_volume *vol)
{
	char buf[16];

	if (!vol->ec_k)
		return 0;
	snprintf(buf, sizeof(buf), "%u+%u", vol->ec_k, vol->ec_m);
	return add_str(o, "ec", buf);
}

/* The code from o: none without the key, else one layout_ec_parse takes, with
 * M+1 copies of the open segment, all needed. */
static int get_ec(struct json_object *o, struct layout_volume *vol, int64_t repl, int64_t minr)
{
	char buf[16];

	if (!json_object_object_get_ex(o, "ec", NULL))
		return 0;
	if (get_str(o, "ec", buf, sizeof(buf)) < 0 || layout_ec_parse(buf, &vol->ec_k,
								     &vol->ec_m) < 0 ||
	    repl != vol->ec_m + 1 || minr != repl)
		return -EPROTO;
	return 0;
}

/* The text of o (taken), or NULL. */
static char *finish_text(struct json_object *o, bool ok)
{
	char *text = ok ? strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN)) : NULL;

	json_object_put(o);
	return text;
}

/* A clone's base into o, as an object; nothing when there is none. */
static int add_base(struct json_object *o, const struct layout_base *b)
{
	struct json_object *bo;

	if (!b->volume[0])
		return 0;
	bo = json_object_new_object();
	if (!bo || json_object_object_add(o, "base", bo) < 0) {
		json_object_put(bo);
		return -ENOMEM;
	}
	return add_str(bo, "volume", b->volume) == 0 && add_str(bo, "snap", b->snap) == 0 &&
			       add_int(bo, "family", (int64_t)b->family) == 0 &&
			       add_int(bo, "layer", (int64_t)b->layer) == 0
		       ? 0
		       : -ENOMEM;
}

/* A clone's base from o: none without the key, else every field valid. */
static int get_base(struct json_object *o, struct layout_base *b)
{
	struct json_object *bo;
	int64_t family, layer;

	if (!json_object_object_get_ex(o, "base", &bo))
		return 0;
	if (!json_object_is_type(bo, json_type_object) ||
	    get_str(bo, "volume", b->volume, sizeof(b->volume)) < 0 ||
	    get_str(bo, "snap", b->snap, sizeof(b->snap)) < 0 ||
	    get_int(bo, "family", 1, INT64_MAX, &family) < 0 ||
	    get_int(bo, "layer", 1, INT64_MAX, &layer) < 0 || !layout_id_valid(b->volume) ||
	    !layout_id_valid(b->snap))
		return -EPROTO;
	b->family = (uint64_t)family;
	b->layer = (uint64_t)layer;
	return 0;
}

char *layout_volume_encode(const struct layout_volume *vol)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	return finish_text(o, add_str(o, "name", vol->name) == 0 &&
			      add_int(o, "size", (int64_t)vol->size) == 0 &&
			      add_int(o, "sector_size", vol->sector_size) == 0 &&
			      add_int(o, "replicas", vol->replicas) == 0 &&
			      add_int(o, "min_replicas", vol->min_replicas) == 0 &&
			      add_str(o, "owner", vol->owner) == 0 &&
			      add_int(o, "epoch", vol->epoch) == 0 &&
			      add_int(o, "created", vol->created) == 0 &&
			      add_str(o, "state", vol_states[vol->state]) == 0 &&
			      add_base(o, &vol->base) == 0 && add_ec(o, vol) == 0);
}

/* The index of the string field key in names[0..n), or -EPROTO. */
static int get_enum(struct json_object *o, const char *key, const char *const *names, int n)
{
	char buf[32];

	if (get_str(o, key, buf, sizeof(buf)) < 0)
		return -EPROTO;
	for (int i = 0; i < n; i++)
		if (strcmp(buf, names[i]) == 0)
			return i;
	return -EPROTO;
}

int layout_volume_decode(const char *text, size_t len, struct layout_volume *vol)
{
	struct json_object *o = parse_object(text, len);
	int64_t size = 0, sector = 0, repl = 0, minr = 0;
	int st = -EPROTO, r = -EPROTO;

	memset(vol, 0, sizeof(*vol));
	if (!o)
		return -EPROTO;
	if (get_str(o, "name", vol->name, sizeof(vol->name)) == 0 &&
	    get_int(o, "size", 0, INT64_MAX, &size) == 0 &&
	    get_int(o, "sector_size", 512, 4096, &sector) == 0 &&
	    get_int(o, "replicas", 1, LAYOUT_MAX_REPLICAS, &repl) == 0 &&
	    get_int(o, "min_replicas", 1, repl, &minr) == 0 &&
	    get_str(o, "owner", vol->owner, sizeof(vol->owner)) == 0 &&
	    get_int(o, "epoch", 1, INT64_MAX, &vol->epoch) == 0 &&
	    get_int(o, "created", 0, INT64_MAX, &vol->created) == 0 &&
	    (st = get_enum(o, "state", vol_states, 2)) >= 0 && layout_id_valid(vol->name) &&
	    layout_id_valid(vol->owner) && get_base(o, &vol->base) == 0 &&
	    get_ec(o, vol, repl, minr) == 0)
		r = 0;
	json_object_put(o);
	if (r < 0) {
		memset(vol, 0, sizeof(*vol));
		return r;
	}
	vol->size = (uint64_t)size;
	vol->sector_size = (uint32_t)sector;
	vol->replicas = (uint32_t)repl;
	vol->min_replicas = (uint32_t)minr;
	vol->state = (enum layout_volume_state)st;
	return 0;
}

char *layout_claim_encode(const struct layout_claim *claim)
{
	char buf[LAYOUT_ID_MAX + 64];

	/* by hand: its bytes must never change (see layout.h) */
	snprintf(buf, sizeof(buf), "{\"node\":\"%s\",\"epoch\":%" PRId64 "}", claim->node,
		 claim->epoch);
	return layout_id_valid(claim->node) ? strdup(buf) : NULL;
}

int layout_claim_decode(const char *text, size_t len, struct layout_claim *claim)
{
	struct json_object *o = parse_object(text, len);
	int r = -EPROTO;

	memset(claim, 0, sizeof(*claim));
	if (!o)
		return -EPROTO;
	if (get_str(o, "node", claim->node, sizeof(claim->node)) == 0 &&
	    get_int(o, "epoch", 1, INT64_MAX, &claim->epoch) == 0 && layout_id_valid(claim->node))
		r = 0;
	json_object_put(o);
	if (r < 0)
		memset(claim, 0, sizeof(*claim));
	return r;
}

/* Adds the array key of ids[0..n) to o. */
static int add_ids(struct json_object *o, const char *key,
		   const char (*ids)[LAYOUT_ID_MAX + 1], unsigned n)
{
	struct json_object *h = json_object_new_array();
	bool ok = h != NULL;

	for (unsigned i = 0; ok && i < n; i++)
		ok = json_object_array_add(h, json_object_new_string(ids[i])) == 0;
	if (!ok || json_object_object_add(o, key, h) < 0) {
		json_object_put(h);
		return -ENOMEM;
	}
	return 0;
}

size_t layout_segments_kept(const struct layout_segment *segs, size_t n, const char *self,
			    uint32_t block_size, uint32_t *keep, uint32_t *keep_len)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		bool sealed = segs[i].state == LAYOUT_SEG_SEALED;

		if (!layout_segment_names(&segs[i], self) ||
		    (sealed && segs[i].length / block_size >= UINT32_MAX))
			continue;
		keep[k] = segs[i].id.seq;
		keep_len[k++] = sealed ? (uint32_t)(segs[i].length / block_size) : UINT32_MAX;
	}
	return k;
}

bool layout_local_current(const char *self, const struct layout_claim *prev, int64_t epoch)
{
	if (!self || !self[0] || strcmp(prev->node, self) != 0 || epoch < 1)
		return false;
	return prev->epoch == epoch || (prev->epoch >= 1 && prev->epoch + 1 == epoch);
}

/* Adds "stripe": {"k", "m", "frags": [[node, crc], ...]} to o. */
static int add_stripe(struct json_object *o, const struct layout_stripe *st)
{
	struct json_object *so = json_object_new_object(), *fa = json_object_new_array();
	bool ok = so && fa && add_int(so, "k", st->k) == 0 && add_int(so, "m", st->m) == 0;

	for (unsigned i = 0; ok && i < st->k + st->m; i++) {
		struct json_object *f = json_object_new_array();

		ok = f && json_object_array_add(fa, f) == 0;
		if (!ok) {
			json_object_put(f);
			break;
		}
		ok = json_object_array_add(f, json_object_new_string(st->frags[i])) == 0 &&
		     json_object_array_add(f, json_object_new_int64(st->crcs[i])) == 0;
	}
	if (ok && json_object_object_add(so, "frags", fa) == 0) {
		fa = NULL;
		ok = json_object_object_add(o, "stripe", so) == 0;
		if (ok)
			return 0;
	}
	json_object_put(fa);
	json_object_put(so);
	return -ENOMEM;
}

/* One [node, crc] of a stripe's frags into frag and crc: 0, -EPROTO. */
static int get_frag(struct json_object *f, char *frag, uint32_t *crc)
{
	struct json_object *n, *c;
	int64_t v;

	if (!json_object_is_type(f, json_type_array) || json_object_array_length(f) != 2)
		return -EPROTO;
	n = json_object_array_get_idx(f, 0);
	c = json_object_array_get_idx(f, 1);
	if (!json_object_is_type(n, json_type_string) || !json_object_is_type(c, json_type_int) ||
	    !layout_id_valid(json_object_get_string(n)))
		return -EPROTO;
	v = json_object_get_int64(c);
	if (v < 0 || v > UINT32_MAX)
		return -EPROTO;
	snprintf(frag, LAYOUT_ID_MAX + 1, "%s", json_object_get_string(n));
	*crc = (uint32_t)v;
	return 0;
}

/* o's "stripe" (absent: k 0): 0, -EPROTO (a code out of bounds, not k+m fragments, a
 * node id or CRC that is none). */
static int get_stripe(struct json_object *o, struct layout_stripe *st)
{
	struct json_object *so, *fa;
	int64_t k, m;

	memset(st, 0, sizeof(*st));
	if (!json_object_object_get_ex(o, "stripe", &so))
		return 0;
	if (!json_object_is_type(so, json_type_object) ||
	    get_int(so, "k", 1, LAYOUT_EC_K_MAX, &k) < 0 ||
	    get_int(so, "m", 1, LAYOUT_EC_M_MAX, &m) < 0 || k + m > LAYOUT_EC_N_MAX ||
	    !json_object_object_get_ex(so, "frags", &fa) ||
	    !json_object_is_type(fa, json_type_array) ||
	    json_object_array_length(fa) != (size_t)(k + m))
		return -EPROTO;
	for (size_t i = 0; i < (size_t)(k + m); i++)
		if (get_frag(json_object_array_get_idx(fa, i), st->frags[i], &st->crcs[i]) < 0)
			return -EPROTO;
	st->k = (unsigned)k;
	st->m = (unsigned)m;
	return 0;
}

char *layout_segment_encode(const struct layout_segment *seg)
{
	struct json_object *o = json_object_new_object();

	if (!o || add_ids(o, "holders", seg->holders, seg->nholders) < 0 ||
	    (seg->ncopying && add_ids(o, "copying", seg->copying, seg->ncopying) < 0) ||
	    (seg->stripe.k && add_stripe(o, &seg->stripe) < 0)) {
		json_object_put(o);
		return NULL;
	}
	return finish_text(o, add_str(o, "state", seg_states[seg->state]) == 0 &&
			      add_int(o, "length", (int64_t)seg->length) == 0 &&
			      add_int(o, "epoch", seg->epoch) == 0);
}

static bool ids_name(const char (*ids)[LAYOUT_ID_MAX + 1], unsigned n, const char *id)
{
	for (unsigned i = 0; i < n; i++)
		if (strcmp(ids[i], id) == 0)
			return true;
	return false;
}

bool layout_segment_names(const struct layout_segment *seg, const char *id)
{
	return ids_name(seg->holders, seg->nholders, id);
}

bool layout_segment_copying(const struct layout_segment *seg, const char *id)
{
	return ids_name(seg->copying, seg->ncopying, id);
}

/* The array key of o into ids (*n of them): 0, -EPROTO; absent: 0 ids if optional. */
static int get_ids(struct json_object *o, const char *key, bool optional,
		   char (*ids)[LAYOUT_ID_MAX + 1], unsigned *n)
{
	struct json_object *h;
	size_t len;

	*n = 0;
	if (!json_object_object_get_ex(o, key, &h))
		return optional ? 0 : -EPROTO;
	if (!json_object_is_type(h, json_type_array))
		return -EPROTO;
	len = json_object_array_length(h);
	if (len > LAYOUT_MAX_HOLDERS)
		return -EPROTO;
	for (size_t i = 0; i < len; i++) {
		struct json_object *v = json_object_array_get_idx(h, i);

		if (!json_object_is_type(v, json_type_string) ||
		    !layout_id_valid(json_object_get_string(v)))
			return -EPROTO;
		snprintf(ids[i], LAYOUT_ID_MAX + 1, "%s", json_object_get_string(v));
	}
	*n = (unsigned)len;
	return 0;
}

int layout_segment_decode(const char *text, size_t len, struct layout_segment *seg)
{
	struct json_object *o = parse_object(text, len);
	int64_t length = 0;
	int st = -EPROTO, r = -EPROTO;

	memset(seg, 0, sizeof(*seg));
	if (!o)
		return -EPROTO;
	if ((st = get_enum(o, "state", seg_states, 2)) >= 0 &&
	    get_int(o, "length", 0, INT64_MAX, &length) == 0 &&
	    get_int(o, "epoch", 1, INT64_MAX, &seg->epoch) == 0 &&
	    get_ids(o, "holders", false, seg->holders, &seg->nholders) == 0 &&
	    get_ids(o, "copying", true, seg->copying, &seg->ncopying) == 0 &&
	    get_stripe(o, &seg->stripe) == 0 &&
	    (!seg->stripe.k || st == LAYOUT_SEG_SEALED)) /* only a sealed segment is encoded */
		r = 0;
	json_object_put(o);
	if (r < 0) {
		memset(seg, 0, sizeof(*seg));
		return r;
	}
	seg->state = (enum layout_segment_state)st;
	seg->length = (uint64_t)length;
	return 0;
}

int layout_segment_dir(char *buf, size_t len, const char *prefix, const char *vol)
{
	int n;

	if (!layout_id_valid(vol))
		return -EINVAL;
	n = snprintf(buf, len, "%ssegments/%s/", prefix, vol);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int layout_segment_key(char *buf, size_t len, const char *prefix, const char *vol,
		       const struct layout_segid *id)
{
	int n;

	if (!layout_id_valid(vol))
		return -EINVAL;
	n = snprintf(buf, len, "%ssegments/%s/%016" PRIx64 ".%08" PRIx32, prefix, vol,
		     id->family, id->seq);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int layout_segment_key_parse(const char *prefix, const char *vol, const char *key,
			     size_t key_len, struct layout_segid *id)
{
	char dir[LAYOUT_PREFIX_MAX + LAYOUT_ID_MAX + 16], tail[32];
	size_t dlen;

	if (layout_segment_dir(dir, sizeof(dir), prefix, vol) < 0)
		return -ENOENT;
	dlen = strlen(dir);
	if (key_len != dlen + 25 || memcmp(key, dir, dlen) != 0)
		return -ENOENT;
	memcpy(tail, key + dlen, 25);
	tail[25] = '\0';
	if (tail[16] != '.' || strspn(tail, "0123456789abcdef") != 16 ||
	    strspn(tail + 17, "0123456789abcdef") != 8)
		return -ENOENT;
	tail[16] = '\0';
	id->family = strtoull(tail, NULL, 16);
	id->seq = (uint32_t)strtoul(tail + 17, NULL, 16);
	return 0;
}
