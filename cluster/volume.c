/* cluster/volume.c — volume records, claims, epochs and segment records (volume.h). */
#include "cluster/volume.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/etcd.h"

#define KEY_MAX (LAYOUT_PREFIX_MAX + 2 * LAYOUT_ID_MAX + 48)

__attribute__((format(printf, 4, 5)))
static int say(int err, char *msg, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
	return err;
}

/* An etcd failure: its errno, etcd's sentence. */
static int etcd_failed(struct etcd *e, int r, char *msg, size_t len)
{
	return say(r, msg, len, "%s", etcd_last_error(e));
}

void clvol_txn_free(struct clvol_txn *t)
{
	json_object_put(t->cmp);
	json_object_put(t->ok);
	json_object_put(t->fail);
	memset(t, 0, sizeof(*t));
}

static int txn_new(struct clvol_txn *t)
{
	t->cmp = json_object_new_array();
	t->ok = json_object_new_array();
	t->fail = json_object_new_array();
	if (t->cmp && t->ok && t->fail)
		return 0;
	clvol_txn_free(t);
	return -ENOMEM;
}

/* Appends item (taken; NULL: ENOMEM) to arr. */
static int push(struct json_object *arr, struct json_object *item)
{
	if (!item)
		return -ENOMEM;
	if (json_object_array_add(arr, item) < 0) {
		json_object_put(item);
		return -ENOMEM;
	}
	return 0;
}

static int vol_key(char *buf, const char *prefix, enum layout_kind kind, const char *name)
{
	return layout_key(buf, KEY_MAX, prefix, kind, name);
}

/* Puts the record and the claim {vol->owner, vol->epoch} under lease. */
static int push_record_and_claim(struct clvol_txn *t, const char *prefix,
				 const struct layout_volume *vol, int64_t lease)
{
	char vkey[KEY_MAX], okey[KEY_MAX];
	struct layout_claim claim = { .epoch = vol->epoch };
	char *rec, *cl;
	int r;

	snprintf(claim.node, sizeof(claim.node), "%s", vol->owner);
	if (vol_key(vkey, prefix, LAYOUT_VOLUME, vol->name) < 0 ||
	    vol_key(okey, prefix, LAYOUT_OWNER, vol->name) < 0)
		return -EINVAL;
	rec = layout_volume_encode(vol);
	cl = layout_claim_encode(&claim);
	r = rec && cl ? 0 : -ENOMEM;
	if (r == 0)
		r = push(t->ok, etcd_json_put_op(vkey, rec, 0));
	if (r == 0)
		r = push(t->ok, etcd_json_put_op(okey, cl, lease));
	free(rec);
	free(cl);
	return r;
}

int clvol_txn_create(const char *prefix, const struct layout_volume *vol, int64_t lease,
		     struct clvol_txn *t)
{
	char vkey[KEY_MAX];
	int r;

	if (vol_key(vkey, prefix, LAYOUT_VOLUME, vol->name) < 0)
		return -EINVAL;
	r = txn_new(t);
	if (r == 0)
		r = push(t->cmp, etcd_json_compare_eq(vkey, ETCD_TARGET_CREATE, 0));
	if (r == 0)
		r = push_record_and_claim(t, prefix, vol, lease);
	if (r < 0)
		clvol_txn_free(t);
	return r;
}

int clvol_txn_claim(const char *prefix, const struct layout_volume *vol, int64_t rec_mod,
		    int64_t lease, struct clvol_txn *t)
{
	char vkey[KEY_MAX], okey[KEY_MAX];
	int r;

	if (vol_key(vkey, prefix, LAYOUT_VOLUME, vol->name) < 0 ||
	    vol_key(okey, prefix, LAYOUT_OWNER, vol->name) < 0)
		return -EINVAL;
	r = txn_new(t);
	if (r == 0)
		r = push(t->cmp, etcd_json_compare_eq(okey, ETCD_TARGET_CREATE, 0));
	if (r == 0)
		r = push(t->cmp, etcd_json_compare_eq(vkey, ETCD_TARGET_MOD, rec_mod));
	if (r == 0)
		r = push_record_and_claim(t, prefix, vol, lease);
	if (r < 0)
		clvol_txn_free(t);
	return r;
}

int clvol_txn_fenced(const char *prefix, const char *vol, const struct layout_claim *claim,
		     struct clvol_txn *t)
{
	char okey[KEY_MAX], *cl;
	int r;

	if (vol_key(okey, prefix, LAYOUT_OWNER, vol) < 0)
		return -EINVAL;
	cl = layout_claim_encode(claim);
	if (!cl)
		return -EINVAL;
	r = txn_new(t);
	if (r == 0)
		r = push(t->cmp, etcd_json_compare_value(okey, cl));
	free(cl);
	if (r < 0)
		clvol_txn_free(t);
	return r;
}

/* Runs t (taken): 0 and *ok, or an etcd error; *rev (NULL: not wanted): the
 * revision the answer's header gives (a put that succeeded: the key's new
 * mod_revision), 0 if none. */
static int txn_run_rev(struct etcd *e, struct clvol_txn *t, bool *ok, int64_t *rev, char *msg,
		       size_t len)
{
	struct json_object *resp = NULL;
	int r = etcd_txn(e, t->cmp, t->ok, t->fail, ok, &resp);

	memset(t, 0, sizeof(*t));
	if (rev && (r < 0 || etcd_json_txn(resp, &(bool){ false }, rev) < 0))
		*rev = 0;
	json_object_put(resp);
	return r < 0 ? etcd_failed(e, r, msg, len) : 0;
}

static int txn_run(struct etcd *e, struct clvol_txn *t, bool *ok, char *msg, size_t len)
{
	return txn_run_rev(e, t, ok, NULL, msg, len);
}

/* ---- the segment records written last (struct clvol_segcache) ---- */

#define SEGCACHE_SLOTS 64u

struct segcache_slot {
	char key[KEY_MAX];
	struct layout_segment rec;
	int64_t mod; /* 0: empty */
};

struct clvol_segcache {
	struct segcache_slot slot[SEGCACHE_SLOTS];
	unsigned next; /* the slot a new key takes (round robin: the oldest) */
};

int clvol_segcache_create(struct clvol_segcache **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

void clvol_segcache_destroy(struct clvol_segcache *c)
{
	free(c);
}

static struct segcache_slot *segcache_find(struct clvol_segcache *c, const char *key)
{
	for (unsigned i = 0; c && i < SEGCACHE_SLOTS; i++)
		if (c->slot[i].mod && strcmp(c->slot[i].key, key) == 0)
			return &c->slot[i];
	return NULL;
}

/* key holds rec at revision mod (0: not known: forgotten). Kept as a read would give
 * it: decoded from its encoding. */
static void segcache_put(struct clvol_segcache *c, const char *key,
			 const struct layout_segment *rec, int64_t mod)
{
	struct segcache_slot *s = segcache_find(c, key);
	char *val;

	if (!c || (!s && !mod))
		return;
	if (!s) {
		s = &c->slot[c->next];
		c->next = (c->next + 1) % SEGCACHE_SLOTS;
		snprintf(s->key, sizeof(s->key), "%s", key);
	}
	val = mod ? layout_segment_encode(rec) : NULL;
	s->mod = val && layout_segment_decode(val, strlen(val), &s->rec) == 0 ? mod : 0;
	free(val);
}

/* The first kv of a range of one key: 0 (found), -ENOENT, or an etcd error. */
static int get_one(struct etcd *e, const char *key, struct etcd_kv **kv, char *msg, size_t len)
{
	int64_t rev;
	size_t n;
	int r = etcd_range(e, key, NULL, &rev, kv, &n);

	if (r < 0)
		return etcd_failed(e, r, msg, len);
	if (n == 0)
		return -ENOENT;
	return 0;
}

int clvol_get(struct etcd *e, const char *prefix, const char *name, struct layout_volume *vol,
	      int64_t *mod, struct layout_claim *claim, char *msg, size_t len)
{
	char vkey[KEY_MAX], okey[KEY_MAX];
	struct etcd_kv *kv = NULL;
	int r;

	memset(claim, 0, sizeof(*claim));
	if (vol_key(vkey, prefix, LAYOUT_VOLUME, name) < 0 ||
	    vol_key(okey, prefix, LAYOUT_OWNER, name) < 0)
		return say(-EINVAL, msg, len, "'%.80s' is not a volume name (1 to %d of A-Z a-z "
			   "0-9 . _ -)", name, LAYOUT_ID_MAX);
	r = get_one(e, vkey, &kv, msg, len);
	if (r == -ENOENT)
		return say(r, msg, len, "volume '%s' is not in the cluster", name);
	if (r < 0)
		return r;
	*mod = kv->mod_revision;
	r = layout_volume_decode(kv->value, kv->value_len, vol);
	etcd_kv_free(kv, 1);
	if (r < 0)
		return say(-EPROTO, msg, len, "the record of volume '%s' does not decode", name);
	kv = NULL;
	r = get_one(e, okey, &kv, msg, len);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	if (layout_claim_decode(kv->value, kv->value_len, claim) < 0)
		snprintf(claim->node, sizeof(claim->node), "?");
	etcd_kv_free(kv, 1);
	return 0;
}

/* Why a fenced txn of (w->node, epoch) on name failed, from a fresh read. */
static int fence_failed(struct etcd *e, const struct clvol_who *w, const char *name,
			int64_t epoch, char *msg, size_t len)
{
	struct layout_volume vol;
	struct layout_claim claim;
	int64_t mod;
	int r = clvol_get(e, w->prefix, name, &vol, &mod, &claim, msg, len);

	if (r < 0)
		return r;
	/* this node's claim went with its lease and nobody claimed since (the record still
	 * names it at that epoch): not lost yet, the next join claims it again */
	if (!claim.node[0] && vol.epoch == epoch && strcmp(vol.owner, w->node) == 0)
		return say(-ENOLCK, msg, len, "volume '%s': the claim of node %s at epoch %lld "
			   "lapsed with its lease and no node claimed it since: waiting for "
			   "this node's claim again", name, w->node, (long long)epoch);
	if (!claim.node[0])
		return say(-ESTALE, msg, len, "volume '%s': node %s at epoch %lld is not its owner: "
			   "no node owns it now (the claim lapsed; the volume is at epoch %lld)",
			   name, w->node, (long long)epoch, (long long)vol.epoch);
	return say(-ESTALE, msg, len, "volume '%s': node %s at epoch %lld is not its owner: "
		   "node %s owns it at epoch %lld", name, w->node, (long long)epoch, claim.node,
		   (long long)claim.epoch);
}

static int fenced_new(const struct clvol_who *w, const char *name, int64_t epoch,
		      struct clvol_txn *t)
{
	struct layout_claim claim = { .epoch = epoch };

	snprintf(claim.node, sizeof(claim.node), "%s", w->node);
	return clvol_txn_fenced(w->prefix, name, &claim, t);
}

/* Runs the fenced txn t: 0, -ESTALE (another node claimed since, or the claim went
 * otherwise: why in msg), -ENOLCK (the claim lapsed with the lease, nobody claimed
 * since), or an etcd error. */
static int fenced_run(struct etcd *e, const struct clvol_who *w, const char *name,
		      int64_t epoch, struct clvol_txn *t, char *msg, size_t len)
{
	bool ok = false;
	int r = txn_run(e, t, &ok, msg, len);

	if (r < 0)
		return r;
	return ok ? 0 : fence_failed(e, w, name, epoch, msg, len);
}

/* ---- volumes ---- */

static int describe_existing(struct etcd *e, const struct clvol_who *w,
			     const struct layout_volume *want, bool *resumable, int64_t *mod,
			     struct layout_volume *old, char *msg, size_t len)
{
	struct layout_claim claim;
	int r = clvol_get(e, w->prefix, want->name, old, mod, &claim, msg, len);

	*resumable = false;
	if (r == -ENOENT)
		return -EAGAIN; /* gone meanwhile: try again */
	if (r < 0)
		return r;
	if (old->state == LAYOUT_VOL_CREATING && !claim.node[0] && old->size == want->size &&
	    old->replicas == want->replicas && old->sector_size == want->sector_size &&
	    old->ec_k == want->ec_k && old->ec_m == want->ec_m) {
		*resumable = true;
		return 0;
	}
	return say(-EEXIST, msg, len, "volume '%s' already exists in the cluster (%s, owner %s, "
		   "created by %s)", want->name, old->state == LAYOUT_VOL_CREATING ? "being created"
		   : "ready", claim.node[0] ? claim.node : "none", old->owner);
}

int clvol_create(struct etcd *e, const struct clvol_who *w, struct layout_volume *vol,
		 bool *resumed, char *msg, size_t len)
{
	struct layout_volume old;
	struct clvol_txn t;
	bool ok = false, resumable;
	int64_t mod;
	int r;

	*resumed = false;
	if (!layout_id_valid(vol->name))
		return say(-EINVAL, msg, len, "'%.80s' is not a volume name in a cluster (1 to %d "
			   "of A-Z a-z 0-9 . _ -)", vol->name, LAYOUT_ID_MAX);
	vol->state = LAYOUT_VOL_CREATING;
	/* an EC volume's open segment needs all its M+1 copies (docs/erasure-coding.md) */
	vol->min_replicas = vol->ec_k ? vol->replicas : layout_min_replicas(vol->replicas);
	vol->epoch = 1;
	vol->created = (int64_t)time(NULL);
	snprintf(vol->owner, sizeof(vol->owner), "%s", w->node);
	r = clvol_txn_create(w->prefix, vol, w->lease, &t);
	if (r == 0)
		r = txn_run(e, &t, &ok, msg, len);
	if (r < 0 || ok)
		return r;
	r = describe_existing(e, w, vol, &resumable, &mod, &old, msg, len);
	if (r < 0)
		return r;
	/* a create that died half way: take it over under a raised epoch */
	vol->epoch = old.epoch + 1;
	vol->created = old.created;
	r = clvol_txn_claim(w->prefix, vol, mod, w->lease, &t);
	if (r == 0)
		r = txn_run(e, &t, &ok, msg, len);
	if (r == 0 && !ok)
		r = say(-EAGAIN, msg, len, "volume '%s' changed while its unfinished create was "
			"taken over: try again", vol->name);
	*resumed = r == 0;
	return r;
}

/* The record, read, changed by edit and written back, fenced by this node's claim. */
static int record_rewrite(struct etcd *e, const struct clvol_who *w, const char *name,
			  int64_t epoch, void (*edit)(struct layout_volume *vol), char *msg,
			  size_t len)
{
	struct layout_volume vol;
	struct layout_claim claim;
	struct clvol_txn t;
	char vkey[KEY_MAX], *rec;
	int64_t mod;
	int r = clvol_get(e, w->prefix, name, &vol, &mod, &claim, msg, len);

	if (r < 0)
		return r;
	edit(&vol);
	vol_key(vkey, w->prefix, LAYOUT_VOLUME, name);
	rec = layout_volume_encode(&vol);
	r = rec ? fenced_new(w, name, epoch, &t) : -ENOMEM;
	if (r == 0) {
		r = push(t.ok, etcd_json_put_op(vkey, rec, 0));
		if (r == 0)
			r = fenced_run(e, w, name, epoch, &t, msg, len);
		clvol_txn_free(&t);
	}
	free(rec);
	return r;
}

static void make_ready(struct layout_volume *vol)
{
	vol->state = LAYOUT_VOL_READY;
}

static void drop_base(struct layout_volume *vol)
{
	memset(&vol->base, 0, sizeof(vol->base));
}

int clvol_ready(struct etcd *e, const struct clvol_who *w, const char *name, int64_t epoch,
		char *msg, size_t len)
{
	return record_rewrite(e, w, name, epoch, make_ready, msg, len);
}

int clvol_base_drop(struct etcd *e, const struct clvol_who *w, const char *name,
		    int64_t epoch, char *msg, size_t len)
{
	return record_rewrite(e, w, name, epoch, drop_base, msg, len);
}

/* clvol_get(), then -EBUSY (the owner named, then advice) if a claim is alive that is
 * not this node's (mine_ok) or any (!mine_ok). */
static int get_unclaimed(struct etcd *e, const struct clvol_who *w, const char *name,
			 bool mine_ok, const char *advice, struct layout_volume *vol, int64_t *mod,
			 struct layout_claim *claim, char *msg, size_t len)
{
	int r = clvol_get(e, w->prefix, name, vol, mod, claim, msg, len);

	if (r < 0 || !claim->node[0] || (mine_ok && strcmp(claim->node, w->node) == 0))
		return r;
	return say(-EBUSY, msg, len, "volume '%s' is owned by node %s (epoch %lld): %s", name,
		   claim->node, (long long)claim->epoch, advice);
}

int clvol_claim(struct etcd *e, const struct clvol_who *w, const char *name, int64_t *epoch,
		struct layout_claim *prev, char *msg, size_t len)
{
	struct layout_volume vol;
	struct layout_claim claim;
	struct clvol_txn t;
	bool ok = false;
	int64_t mod;
	int r = get_unclaimed(e, w, name, true, "it can be claimed once that node releases it "
			      "or its lease lapses", &vol, &mod, &claim, msg, len);

	if (r < 0)
		return r;
	if (claim.node[0]) {
		*epoch = claim.epoch; /* ours already (the lease is the node's one lease) */
		*prev = claim;
		return 0;
	}
	snprintf(prev->node, sizeof(prev->node), "%s", vol.owner);
	prev->epoch = vol.epoch; /* the txn compares the record: this is what it replaces */
	vol.epoch++;
	snprintf(vol.owner, sizeof(vol.owner), "%s", w->node);
	r = clvol_txn_claim(w->prefix, &vol, mod, w->lease, &t);
	if (r == 0)
		r = txn_run(e, &t, &ok, msg, len);
	if (r == 0 && !ok)
		r = say(-EBUSY, msg, len, "volume '%s' was claimed or changed by another node at "
			"the same time", name);
	if (r == 0)
		*epoch = vol.epoch;
	return r;
}

int clvol_release(struct etcd *e, const struct clvol_who *w, const char *name, int64_t epoch,
		  char *msg, size_t len)
{
	char okey[KEY_MAX];
	struct clvol_txn t;
	int r = fenced_new(w, name, epoch, &t);

	if (r < 0)
		return say(r, msg, len, "volume '%.80s': bad name", name);
	vol_key(okey, w->prefix, LAYOUT_OWNER, name);
	r = push(t.ok, etcd_json_delete_op(okey));
	if (r == 0)
		r = fenced_run(e, w, name, epoch, &t, msg, len);
	clvol_txn_free(&t);
	return r;
}

int clvol_remove(struct etcd *e, const struct clvol_who *w, const char *name, int64_t epoch,
		 char *msg, size_t len)
{
	char vkey[KEY_MAX], okey[KEY_MAX], sdir[KEY_MAX], send[KEY_MAX];
	struct layout_volume vol;
	struct layout_claim claim;
	struct clvol_txn t;
	bool ok = false;
	int64_t mod;
	/* with an epoch the fence below decides; without, no claim may be alive */
	int r = get_unclaimed(e, w, name, epoch != 0, "remove it there", &vol, &mod, &claim, msg,
			      len);

	if (r < 0)
		return r;
	vol_key(vkey, w->prefix, LAYOUT_VOLUME, name);
	vol_key(okey, w->prefix, LAYOUT_OWNER, name);
	layout_segment_dir(sdir, sizeof(sdir), w->prefix, name);
	etcd_prefix_end(sdir, send);
	if (epoch) {
		r = fenced_new(w, name, epoch, &t);
	} else {
		r = txn_new(&t);
		if (r == 0)
			r = push(t.cmp, etcd_json_compare_eq(okey, ETCD_TARGET_CREATE, 0));
	}
	if (r == 0)
		r = push(t.ok, etcd_json_delete_op(vkey));
	if (r == 0)
		r = push(t.ok, etcd_json_delete_op(okey));
	if (r == 0)
		r = push(t.ok, etcd_json_delete_range_op(sdir, send));
	if (r == 0 && epoch)
		r = fenced_run(e, w, name, epoch, &t, msg, len);
	else if (r == 0)
		r = txn_run(e, &t, &ok, msg, len);
	clvol_txn_free(&t);
	if (r == 0 && !epoch && !ok)
		r = say(-EBUSY, msg, len, "volume '%s' was claimed by another node meanwhile", name);
	return r;
}

/* ---- segments ---- */

static int seg_key(const struct clvol_who *w, const char *name, const struct layout_segid *id,
		   char *key, char *msg, size_t len)
{
	if (layout_segment_key(key, KEY_MAX, w->prefix, name, id) < 0)
		return say(-EINVAL, msg, len, "'%.80s' is not a volume name", name);
	return 0;
}

/* Into t: cmp (taken) on the segment's key, and seg put at key if it holds. */
static int seg_push(struct clvol_txn *t, const char *key, const struct layout_segment *seg,
		    struct json_object *cmp)
{
	char *val = layout_segment_encode(seg);
	int r = val ? push(t->cmp, cmp) : -ENOMEM;

	if (!val)
		json_object_put(cmp);
	if (r == 0)
		r = push(t->ok, etcd_json_put_op(key, val, 0));
	free(val);
	return r;
}

/* A fenced txn putting seg at key, with an extra compare on the segment's key (taken);
 * *rev (NULL: not wanted): the key's new mod_revision when it held (0: not known). */
static int seg_put(struct etcd *e, const struct clvol_who *w, const char *name, int64_t epoch,
		   const char *key, const struct layout_segment *seg, struct json_object *cmp,
		   bool *held, int64_t *rev, char *msg, size_t len)
{
	struct clvol_txn t;
	bool ok = false;
	int r = fenced_new(w, name, epoch, &t);

	if (r < 0) {
		json_object_put(cmp);
		return r;
	}
	r = seg_push(&t, key, seg, cmp);
	if (r == 0)
		r = txn_run_rev(e, &t, &ok, rev, msg, len);
	clvol_txn_free(&t);
	*held = ok;
	return r;
}

/* After a failed segment txn: the fence, or else the segment's own compare. */
static int seg_failed(struct etcd *e, const struct clvol_who *w, const char *name,
		      int64_t epoch, int err, const char *what, char *msg, size_t len)
{
	struct clvol_txn t;
	int r = fenced_new(w, name, epoch, &t);

	if (r == 0)
		r = fenced_run(e, w, name, epoch, &t, msg, len); /* compares, writes nothing */
	clvol_txn_free(&t);
	return r < 0 ? r : say(err, msg, len, "volume '%s': %s", name, what);
}

int clvol_segment_open(struct etcd *e, const struct clvol_who *w, const char *name,
		       int64_t epoch, const struct layout_segment *seg, char *msg, size_t len)
{
	struct layout_segment rec = *seg;
	char key[KEY_MAX];
	int64_t rev = 0;
	bool ok = false;
	int r = seg_key(w, name, &seg->id, key, msg, len);

	if (r < 0)
		return r;
	if (seg->nholders == 0 || seg->nholders > LAYOUT_MAX_HOLDERS)
		return say(-EINVAL, msg, len, "a segment has 1 to %u holders", LAYOUT_MAX_HOLDERS);
	rec.state = LAYOUT_SEG_OPEN;
	rec.length = 0;
	rec.epoch = epoch;
	r = seg_put(e, w, name, epoch, key, &rec, etcd_json_compare_eq(key, ETCD_TARGET_CREATE, 0),
		    &ok, &rev, msg, len);
	/* its seal (seg_update) then writes against this revision without reading the
	 * record first: a range call less per segment (one in three of a writer's) */
	if (r == 0 && ok)
		segcache_put(w->cache, key, &rec, rev);
	if (r < 0 || ok)
		return r;
	return seg_failed(e, w, name, epoch, -EEXIST, "that segment is recorded already", msg,
			  len);
}

/* rec (segment id's) changed by apply(rec, arg) as of this epoch: 0, or apply's refusal
 * (-errno, its sentence in msg). */
static int seg_change(struct layout_segment *rec, const struct layout_segid *id, int64_t epoch,
		      int (*apply)(struct layout_segment *rec, const void *arg, char *msg,
				   size_t len),
		      const void *arg, char *msg, size_t len)
{
	int r;

	rec->id = *id;
	r = apply(rec, arg, msg, len);
	if (r == 0)
		rec->epoch = epoch;
	return r;
}

/* The record at key as etcd has it, and its revision: 0, -ENOENT, or -errno (why in
 * msg). */
static int seg_read(struct etcd *e, const char *key, struct layout_segment *rec, int64_t *mod,
		    char *msg, size_t len)
{
	struct etcd_kv *kv = NULL;
	int r = get_one(e, key, &kv, msg, len);

	if (r < 0)
		return r;
	r = layout_segment_decode(kv->value, kv->value_len, rec);
	if (r < 0)
		r = say(-EPROTO, msg, len, "the record of segment %s does not decode", key);
	*mod = kv->mod_revision;
	etcd_kv_free(kv, 1);
	return r;
}

/* One read-modify-write of the record at key: from rec as of revision mod. 0 and
 * *ok (written), or -errno (an etcd error; apply's refusal, with *refused set). */
static int seg_rmw(struct etcd *e, const struct clvol_who *w, const char *name, int64_t epoch,
		   const struct layout_segid *id, const char *key, struct layout_segment *rec,
		   int64_t mod,
		   int (*apply)(struct layout_segment *rec, const void *arg, char *msg, size_t len),
		   const void *arg, bool *ok, bool *refused, char *msg, size_t len)
{
	int64_t rev = 0;
	int r = seg_change(rec, id, epoch, apply, arg, msg, len);

	*refused = r < 0;
	if (r < 0)
		return r;
	r = seg_put(e, w, name, epoch, key, rec, etcd_json_compare_eq(key, ETCD_TARGET_MOD, mod),
		    ok, &rev, msg, len);
	if (r == 0)
		segcache_put(w->cache, key, rec, *ok ? rev : 0);
	return r;
}

/* Rewrites an existing record: apply(rec, arg) changes it (0) or refuses (-errno, its
 * sentence in msg); the epoch becomes this one; fenced, and only if the record did not
 * change since it was read (or, one this node wrote last, since that write). */
static int seg_update(struct etcd *e, const struct clvol_who *w, const char *name,
		      int64_t epoch, const struct layout_segid *id,
		      int (*apply)(struct layout_segment *rec, const void *arg, char *msg,
				   size_t len),
		      const void *arg, char *msg, size_t len)
{
	struct segcache_slot *known;
	struct layout_segment rec;
	char key[KEY_MAX];
	int64_t mod = 0;
	bool ok = false;
	int r = seg_key(w, name, id, key, msg, len);

	if (r < 0)
		return r;
	/* written last by this node: unchanged since, the compare holds (else read it) */
	known = segcache_find(w->cache, key);
	if (known) {
		bool refused;

		rec = known->rec;
		r = seg_rmw(e, w, name, epoch, id, key, &rec, known->mod, apply, arg, &ok,
			    &refused, msg, len);
		/* (a refusal of what may be an old copy is not an answer: read it) */
		if ((r < 0 && !refused) || (r == 0 && ok))
			return r;
	}
	r = seg_read(e, key, &rec, &mod, msg, len);
	if (r == -ENOENT)
		return seg_failed(e, w, name, epoch, -ENOENT, "that segment is not recorded", msg,
				  len);
	if (r == 0)
		r = seg_rmw(e, w, name, epoch, id, key, &rec, mod, apply, arg, &ok,
			    &(bool){ false }, msg, len);
	if (r < 0 || ok)
		return r;
	return seg_failed(e, w, name, epoch, -EAGAIN, "that segment changed meanwhile: try again",
			  msg, len);
}

/* seg_update's apply for seal and holders: state and length from `to`, and its holders
 * too if to->nholders (else kept). */
static int apply_rewrite(struct layout_segment *rec, const void *arg, char *msg, size_t len)
{
	const struct layout_segment *to = arg;

	(void)msg;
	(void)len;
	rec->state = to->state;
	rec->length = to->length;
	if (to->nholders) {
		rec->nholders = to->nholders;
		memcpy(rec->holders, to->holders, sizeof(rec->holders));
	}
	return 0;
}

int clvol_segment_seal(struct etcd *e, const struct clvol_who *w, const char *name,
		       int64_t epoch, const struct layout_segid *id, uint64_t length, char *msg,
		       size_t len)
{
	struct layout_segment to = { .id = *id, .state = LAYOUT_SEG_SEALED, .length = length };

	return seg_update(e, w, name, epoch, id, apply_rewrite, &to, msg, len);
}

int clvol_segment_holders(struct etcd *e, const struct clvol_who *w, const char *name,
			  int64_t epoch, const struct layout_segment *seg, char *msg, size_t len)
{
	struct layout_segment to = *seg;

	if (seg->nholders == 0 || seg->nholders > LAYOUT_MAX_HOLDERS)
		return say(-EINVAL, msg, len, "a segment has 1 to %u holders", LAYOUT_MAX_HOLDERS);
	to.state = LAYOUT_SEG_OPEN;
	to.length = 0;
	return seg_update(e, w, name, epoch, &seg->id, apply_rewrite, &to, msg, len);
}

/* Removes id from ids[0..*n) if there. */
static void ids_remove(char (*ids)[LAYOUT_ID_MAX + 1], unsigned *n, const char *id)
{
	for (unsigned i = 0; i < *n; i++)
		if (strcmp(ids[i], id) == 0) {
			if (i != *n - 1)
				memcpy(ids[i], ids[*n - 1], LAYOUT_ID_MAX + 1);
			(*n)--;
			return;
		}
}

struct copy_step {
	const char *node;
	enum clvol_copy_phase phase;
	const struct clvol_gone *gone;
};

static bool gone_names(const struct clvol_gone *g, const char *id)
{
	for (unsigned i = 0; i < g->n; i++)
		if (strcmp(g->ids[i], id) == 0)
			return true;
	return false;
}

/* DONE's gone holders leave rec if `keep` others stay (struct clvol_gone). */
static void drop_gone_holders(struct layout_segment *rec, const struct clvol_gone *g)
{
	unsigned stay = 0;

	if (!g || !g->n || !g->keep)
		return;
	for (unsigned h = 0; h < rec->nholders; h++)
		stay += !gone_names(g, rec->holders[h]);
	if (stay < g->keep)
		return;
	for (unsigned i = 0; i < g->n; i++)
		ids_remove(rec->holders, &rec->nholders, g->ids[i]);
}

int clvol_copy_apply(struct layout_segment *rec, const char *node, enum clvol_copy_phase phase,
		     const struct clvol_gone *gone, char *msg, size_t len)
{
	bool holder = layout_segment_names(rec, node);
	bool copying = layout_segment_copying(rec, node);

	if (rec->state != LAYOUT_SEG_SEALED)
		return say(-EBUSY, msg, len, "only a sealed segment is copied");
	switch (phase) {
	case CLVOL_COPY_START:
		if (holder)
			return say(-EEXIST, msg, len, "node %s holds that segment already", node);
		if (copying)
			return 0; /* a retry */
		if (rec->nholders + rec->ncopying >= LAYOUT_MAX_HOLDERS)
			return say(-ENOSPC, msg, len, "that segment has %u holders already",
				   LAYOUT_MAX_HOLDERS);
		snprintf(rec->copying[rec->ncopying++], LAYOUT_ID_MAX + 1, "%s", node);
		return 0;
	case CLVOL_COPY_DONE:
		if (gone && gone_names(gone, node))
			return say(-EINVAL, msg, len, "node %s is both the new holder and gone", node);
		if (holder && !copying) {
			drop_gone_holders(rec, gone); /* a retry: done already, or as it did */
			return 0;
		}
		if (!copying)
			return say(-ENOENT, msg, len, "no copy to node %s is under way", node);
		ids_remove(rec->copying, &rec->ncopying, node);
		snprintf(rec->holders[rec->nholders++], LAYOUT_ID_MAX + 1, "%s", node);
		drop_gone_holders(rec, gone);
		return 0;
	case CLVOL_COPY_ABORT:
		ids_remove(rec->copying, &rec->ncopying, node);
		return 0;
	case CLVOL_COPY_DROP:
		if (!holder)
			return 0; /* a retry */
		if (rec->nholders <= 1)
			return say(-EBUSY, msg, len, "node %s is the segment's last holder", node);
		ids_remove(rec->holders, &rec->nholders, node);
		return 0;
	}
	return say(-EINVAL, msg, len, "no such copy step");
}

static int apply_copy(struct layout_segment *rec, const void *arg, char *msg, size_t len)
{
	const struct copy_step *c = arg;

	return clvol_copy_apply(rec, c->node, c->phase, c->gone, msg, len);
}

int clvol_segment_copy(struct etcd *e, const struct clvol_who *w, const char *name,
		       int64_t epoch, const struct layout_segid *id, const char *node,
		       enum clvol_copy_phase phase, const struct clvol_gone *gone, char *msg,
		       size_t len)
{
	struct copy_step c = { .node = node, .phase = phase,
			       .gone = phase == CLVOL_COPY_DONE ? gone : NULL };

	if (!layout_id_valid(node))
		return say(-EINVAL, msg, len, "'%.80s' is not a node id", node);
	return seg_update(e, w, name, epoch, id, apply_copy, &c, msg, len);
}

/* ---- several copy steps in one txn (clvol_segment_copy_batch) ---- */

/* One step of a batch: its key, its record as the step changes it, the revision the
 * txn compares; in_txn: written by the batch's txn; alone: run by itself after it. */
struct batch_rec {
	char key[KEY_MAX]; /* "": the step is answered already */
	struct layout_segment rec;
	int64_t mod;
	bool in_txn, alone;
};

/* it's record changed by its step into b, from what this node wrote last (no read) or
 * from a read; else it->res (its answer) or b->alone (clvol_segment_copy decides). */
static void batch_prepare(struct etcd *e, const struct clvol_who *w, int64_t epoch,
			  struct clvol_copy_item *it, struct batch_rec *b)
{
	struct copy_step step = { .node = it->node, .phase = it->phase,
				  .gone = it->phase == CLVOL_COPY_DONE ? it->gone : NULL };
	struct segcache_slot *known = segcache_find(w->cache, b->key);
	int r;

	if (known) {
		b->rec = known->rec;
		b->mod = known->mod;
		/* (a refusal of what may be an old copy is not an answer: alone, it reads) */
		b->in_txn = seg_change(&b->rec, &it->id, epoch, apply_copy, &step, it->msg,
				       it->msg_len) == 0;
		b->alone = !b->in_txn;
		return;
	}
	r = seg_read(e, b->key, &b->rec, &b->mod, it->msg, it->msg_len);
	if (r == -ENOENT) {
		b->alone = true; /* its answer says whether the fence holds */
		return;
	}
	if (r == 0) {
		/* known as read: should the txn fail, this step alone compares it unread */
		segcache_put(w->cache, b->key, &b->rec, b->mod);
		r = seg_change(&b->rec, &it->id, epoch, apply_copy, &step, it->msg, it->msg_len);
		b->in_txn = r == 0;
	}
	it->res = r;
}

/* A batch's range read takes at most this many records per record it wants. */
#define BATCH_READ_SPAN 16u

/* The records of the steps this node did not write last, read by one range from the
 * first key to the last (a scan's copies go in key order: neighbours) and known from
 * then on as read; a step whose record it did not find reads it alone. Only if they
 * are of one family and near enough (BATCH_READ_SPAN): far apart, a range would read
 * every record between them on the session thread; each reads its own then. */
static void batch_read(struct etcd *e, const struct clvol_who *w,
		       const struct clvol_copy_item *items, const struct batch_rec *b, size_t n)
{
	const struct layout_segid *lo = NULL, *hi = NULL;
	const char *first = NULL, *last = NULL;
	char end[KEY_MAX + 1];
	struct etcd_kv *kvs = NULL;
	size_t unknown = 0, nkv = 0;
	int64_t rev;

	for (size_t i = 0; w->cache && i < n; i++) {
		if (!b[i].key[0] || segcache_find(w->cache, b[i].key))
			continue;
		if (unknown++ && items[i].id.family != lo->family)
			return; /* (the keys of one family are in seq order) */
		if (!lo || items[i].id.seq < lo->seq) {
			lo = &items[i].id;
			first = b[i].key;
		}
		if (!hi || items[i].id.seq > hi->seq) {
			hi = &items[i].id;
			last = b[i].key;
		}
	}
	if (unknown < 2 || hi->seq - lo->seq >= unknown * BATCH_READ_SPAN)
		return;
	etcd_prefix_end(last, end); /* just past it: the keys are all of one length */
	if (etcd_range(e, first, end, &rev, &kvs, &nkv) < 0)
		return; /* each reads its own */
	for (size_t k = 0; k < nkv; k++) {
		struct layout_segment rec;

		for (size_t i = 0; i < n; i++)
			if (b[i].key[0] && strlen(b[i].key) == kvs[k].key_len &&
			    !memcmp(b[i].key, kvs[k].key, kvs[k].key_len) &&
			    !segcache_find(w->cache, b[i].key) &&
			    layout_segment_decode(kvs[k].value, kvs[k].value_len, &rec) == 0)
				segcache_put(w->cache, b[i].key, &rec, kvs[k].mod_revision);
	}
	etcd_kv_free(kvs, nkv);
}

/* The batch's records that took a change, each compared against its revision, in one
 * txn fenced by the claim: 0 and *ok, or an etcd error (why in msg). */
static int batch_write(struct etcd *e, const struct clvol_who *w, const char *name,
		       int64_t epoch, struct batch_rec *b, size_t n, bool *ok, char *msg,
		       size_t len)
{
	struct clvol_txn t;
	int64_t rev = 0;
	size_t puts = 0;
	int r;

	for (size_t i = 0; i < n; i++)
		puts += b[i].in_txn;
	*ok = false;
	if (!puts)
		return 0;
	r = fenced_new(w, name, epoch, &t);
	for (size_t i = 0; r == 0 && i < n; i++)
		if (b[i].in_txn)
			r = seg_push(&t, b[i].key, &b[i].rec,
				     etcd_json_compare_eq(b[i].key, ETCD_TARGET_MOD, b[i].mod));
	if (r == 0)
		r = txn_run_rev(e, &t, ok, &rev, msg, len);
	clvol_txn_free(&t);
	/* written: known at the txn's revision; not known any more after an etcd error
	 * (it may have landed); a failed compare keeps what was known */
	for (size_t i = 0; i < n; i++)
		if (b[i].in_txn && (r < 0 || *ok))
			segcache_put(w->cache, b[i].key, &b[i].rec, r == 0 ? rev : 0);
	return r;
}

int clvol_segment_copy_batch(struct etcd *e, const struct clvol_who *w, const char *name,
			     int64_t epoch, struct clvol_copy_item *items, size_t n)
{
	struct batch_rec *b;
	char msg[256] = "";
	bool ok = false;
	int r;

	if (n == 0 || n > CLVOL_COPY_BATCH_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		for (size_t k = i + 1; k < n; k++)
			if (items[i].id.family == items[k].id.family &&
			    items[i].id.seq == items[k].id.seq)
				return -EINVAL;
	b = calloc(n, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct clvol_copy_item *it = &items[i];

		it->msg[0] = 0;
		it->alone = false;
		it->res = layout_id_valid(it->node)
				  ? seg_key(w, name, &it->id, b[i].key, it->msg, it->msg_len)
				  : say(-EINVAL, it->msg, it->msg_len, "'%.80s' is not a node id",
					it->node);
		if (it->res < 0)
			b[i].key[0] = 0;
	}
	batch_read(e, w, items, b, n);
	for (size_t i = 0; i < n; i++)
		if (b[i].key[0])
			batch_prepare(e, w, epoch, &items[i], &b[i]);
	r = batch_write(e, w, name, epoch, b, n, &ok, msg, sizeof(msg));
	for (size_t i = 0; i < n; i++) {
		struct clvol_copy_item *it = &items[i];

		if (b[i].in_txn && r < 0) {
			it->res = r;
			snprintf(it->msg, it->msg_len, "%s", msg);
		} else if (b[i].alone || (b[i].in_txn && !ok)) {
			/* a compare failed (the fence, or one record): each alone, by the
			 * caller (not with what a refusal of a known record said) */
			it->alone = true;
			it->msg[0] = 0;
		}
	}
	free(b);
	return 0;
}

static bool stripe_same(const struct layout_stripe *a, const struct layout_stripe *b)
{
	if (a->k != b->k || a->m != b->m)
		return false;
	for (unsigned i = 0; i < a->k + a->m; i++)
		if (strcmp(a->frags[i], b->frags[i]) != 0 || a->crcs[i] != b->crcs[i])
			return false;
	return true;
}

struct stripe_step {
	const struct layout_segment *seg;
	bool drop_replicas;
};

static int apply_stripe(struct layout_segment *rec, const void *arg, char *msg, size_t len)
{
	const struct stripe_step *s = arg;
	const struct layout_segment *to = s->seg;

	if (rec->state != LAYOUT_SEG_SEALED)
		return say(-EBUSY, msg, len, "only a sealed segment is encoded");
	if (rec->length != to->length)
		return say(-ERANGE, msg, len, "the segment is sealed at %llu bytes, not %llu",
			   (unsigned long long)rec->length, (unsigned long long)to->length);
	if (rec->stripe.k && !stripe_same(&rec->stripe, &to->stripe))
		return say(-EEXIST, msg, len, "the segment has another stripe recorded");
	rec->stripe = to->stripe;
	if (s->drop_replicas) { /* the switch: the fragments are the segment now */
		rec->nholders = 0;
		rec->ncopying = 0;
	}
	return 0;
}

int clvol_segment_stripe(struct etcd *e, const struct clvol_who *w, const char *name,
			 int64_t epoch, const struct layout_segment *seg, bool drop_replicas,
			 char *msg, size_t len)
{
	const struct layout_stripe *st = &seg->stripe;
	struct stripe_step step = { .seg = seg, .drop_replicas = drop_replicas };

	if (st->k < 1 || st->k > LAYOUT_EC_K_MAX || st->m < 1 || st->m > LAYOUT_EC_M_MAX ||
	    st->k + st->m > LAYOUT_EC_N_MAX)
		return say(-EINVAL, msg, len, "a stripe is K+M fragments within the codec's bounds");
	for (unsigned i = 0; i < st->k + st->m; i++)
		if (!layout_id_valid(st->frags[i]))
			return say(-EINVAL, msg, len, "fragment %u names no node", i);
	return seg_update(e, w, name, epoch, &seg->id, apply_stripe, &step, msg, len);
}

struct refrag_step {
	unsigned index;
	const char *from, *to;
};

static int apply_refrag(struct layout_segment *rec, const void *arg, char *msg, size_t len)
{
	const struct refrag_step *s = arg;
	char *at;

	if (!rec->stripe.k || s->index >= rec->stripe.k + rec->stripe.m)
		return say(-EINVAL, msg, len, "the segment has no fragment %u", s->index);
	at = rec->stripe.frags[s->index];
	if (strcmp(at, s->to) != 0 && strcmp(at, s->from) != 0)
		return say(-ESTALE, msg, len, "fragment %u is on node %s, not %s", s->index, at,
			   s->from);
	snprintf(at, sizeof(rec->stripe.frags[0]), "%s", s->to); /* (or a retry) */
	ids_remove(rec->copying, &rec->ncopying, s->to); /* the put's mark, if any */
	return 0;
}

int clvol_segment_refrag(struct etcd *e, const struct clvol_who *w, const char *name,
			 int64_t epoch, const struct layout_segid *id, unsigned index,
			 const char *from, const char *to, char *msg, size_t len)
{
	struct refrag_step step = { .index = index, .from = from, .to = to };

	if (!layout_id_valid(to) || !layout_id_valid(from))
		return say(-EINVAL, msg, len, "a fragment moves from a node to a node");
	return seg_update(e, w, name, epoch, id, apply_refrag, &step, msg, len);
}

int clvol_segment_delete(struct etcd *e, const struct clvol_who *w, const char *name,
			 int64_t epoch, const struct layout_segid *id, char *msg, size_t len)
{
	struct clvol_txn t;
	char key[KEY_MAX];
	int r = seg_key(w, name, id, key, msg, len);

	if (r == 0)
		r = fenced_new(w, name, epoch, &t);
	if (r < 0)
		return r;
	r = push(t.ok, etcd_json_delete_op(key));
	if (r == 0)
		r = fenced_run(e, w, name, epoch, &t, msg, len);
	clvol_txn_free(&t);
	return r;
}

/* The volume name of a key under PREFIX segments/ (segments/NAME/ID): 0 or -ENOENT. */
static int key_volume(const char *prefix, const char *key, size_t key_len,
		      char name[LAYOUT_ID_MAX + 1])
{
	size_t plen = strlen(prefix) + strlen("segments/"), nlen;
	const char *slash;

	if (key_len <= plen || memcmp(key, prefix, strlen(prefix)) != 0)
		return -ENOENT;
	slash = memchr(key + plen, '/', key_len - plen);
	nlen = slash ? (size_t)(slash - (key + plen)) : 0;
	if (nlen == 0 || nlen > LAYOUT_ID_MAX)
		return -ENOENT;
	memcpy(name, key + plen, nlen);
	name[nlen] = '\0';
	return 0;
}

/* Decodes the records of a range of segments/ (one volume's: name, or every volume's:
 * name NULL, each record's volume into vols[i]). A record that does not decode fails
 * the whole list: a takeover would miss it, and an orphan check would drop the copies
 * it names, so say so loudly rather than pretend. */
static int decode_records(const char *prefix, const char *name, struct etcd_kv *kvs,
			  size_t nk, struct layout_segment **segs,
			  char (**vols)[LAYOUT_ID_MAX + 1], size_t *n, char *msg, size_t len)
{
	char vol[LAYOUT_ID_MAX + 1];
	size_t k = 0;
	int r = 0;

	*segs = calloc(nk ? nk : 1, sizeof(**segs));
	if (vols)
		*vols = calloc(nk ? nk : 1, sizeof(**vols));
	if (!*segs || (vols && !*vols)) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nk; i++) {
		struct layout_segment *s = &(*segs)[k];

		if (!name && key_volume(prefix, kvs[i].key, kvs[i].key_len, vol) < 0)
			vol[0] = '\0';
		if ((!name && !vol[0]) ||
		    layout_segment_decode(kvs[i].value, kvs[i].value_len, s) < 0 ||
		    layout_segment_key_parse(prefix, name ? name : vol, kvs[i].key,
					     kvs[i].key_len, &s->id) < 0) {
			r = say(-EPROTO, msg, len, "segment record %.*s does not decode",
				(int)kvs[i].key_len, kvs[i].key);
			goto out;
		}
		if (vols)
			memcpy((*vols)[k], vol, sizeof(vol));
		k++;
	}
	*n = k;
out:
	if (r < 0) {
		free(*segs);
		*segs = NULL;
		if (vols) {
			free(*vols);
			*vols = NULL;
		}
	}
	return r;
}

/* The records of the range of dir (PREFIX segments/ and below), decoded as
 * decode_records() does. */
static int list_records(struct etcd *e, const char *prefix, const char *dir, const char *name,
			struct layout_segment **segs, char (**vols)[LAYOUT_ID_MAX + 1], size_t *n,
			char *msg, size_t len)
{
	char end[KEY_MAX];
	struct etcd_kv *kvs;
	int64_t rev;
	size_t nk;
	int r;

	etcd_prefix_end(dir, end);
	r = etcd_range(e, dir, end, &rev, &kvs, &nk);
	if (r < 0)
		return etcd_failed(e, r, msg, len);
	r = decode_records(prefix, name, kvs, nk, segs, vols, n, msg, len);
	etcd_kv_free(kvs, nk);
	return r;
}

int clvol_segment_list(struct etcd *e, const char *prefix, const char *name,
		       struct layout_segment **segs, size_t *n, char *msg, size_t len)
{
	char dir[KEY_MAX];

	*segs = NULL;
	*n = 0;
	if (layout_segment_dir(dir, sizeof(dir), prefix, name) < 0)
		return say(-EINVAL, msg, len, "'%.80s' is not a volume name", name);
	return list_records(e, prefix, dir, name, segs, NULL, n, msg, len);
}

int clvol_segment_list_all(struct etcd *e, const char *prefix, struct layout_segment **segs,
			   char (**vols)[LAYOUT_ID_MAX + 1], size_t *n, char *msg, size_t len)
{
	char dir[KEY_MAX];

	*segs = NULL;
	*vols = NULL;
	*n = 0;
	if (snprintf(dir, sizeof(dir), "%ssegments/", prefix) >= (int)sizeof(dir))
		return say(-ENAMETOOLONG, msg, len, "the prefix is too long");
	return list_records(e, prefix, dir, NULL, segs, vols, n, msg, len);
}
