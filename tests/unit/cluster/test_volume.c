/* tests/unit/cluster/test_volume.c — the transactions of volumes in the cluster map
 * (cluster/volume.c): what each one compares and writes, decoded back from the JSON
 * that goes to etcd. The calls themselves run against a real etcd in
 * tests/integration/cluster_volumes.sh; the record cache's, whose point is the calls it
 * saves and the writes it must not make, against a fake one (fake_etcd.h). */
#include <criterion/criterion.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/etcd.h"
#include "cluster/etcd_json.h"
#include "cluster/volume.h"
#include "fake_etcd.h"

#define P "/quill/test/"

/* The decoded base64 field name of o, as a static string. */
static const char *bytes(struct json_object *o, const char *name)
{
	static char buf[4][512];
	static int k;
	struct json_object *v;
	size_t n;

	k = (k + 1) % 4;
	if (!json_object_object_get_ex(o, name, &v))
		return "";
	cr_assert_eq(etcd_b64_decode(json_object_get_string(v), buf[k], sizeof(buf[k]) - 1, &n), 0);
	buf[k][n] = '\0';
	return buf[k];
}

static const char *str(struct json_object *o, const char *name)
{
	struct json_object *v;

	return json_object_object_get_ex(o, name, &v) ? json_object_get_string(v) : "";
}

static struct json_object *at(struct json_object *arr, size_t i, const char *wrap)
{
	struct json_object *o = json_object_array_get_idx(arr, i), *inner;

	cr_assert_not_null(o);
	if (!wrap)
		return o;
	cr_assert(json_object_object_get_ex(o, wrap, &inner), "%s", json_object_to_json_string(o));
	return inner;
}

static struct layout_volume vol(void)
{
	struct layout_volume v = { .size = 1 << 20, .sector_size = 512, .replicas = 3,
				   .min_replicas = 2, .epoch = 5, .state = LAYOUT_VOL_READY };

	strcpy(v.name, "vm0");
	strcpy(v.owner, "n1");
	return v;
}

/* t->ok puts the record, then the claim {n1, 5} under lease 77. */
static void check_record_and_claim(struct clvol_txn *t)
{
	struct json_object *put;
	struct layout_volume back;
	const char *rec;

	cr_assert_eq(json_object_array_length(t->ok), 2);
	put = at(t->ok, 0, "request_put");
	cr_assert_str_eq(bytes(put, "key"), P "volumes/vm0");
	rec = bytes(put, "value");
	cr_assert_eq(layout_volume_decode(rec, strlen(rec), &back), 0, "%s", rec);
	cr_assert_eq(back.epoch, 5);
	cr_assert_str_eq(str(put, "lease"), ""); /* the record is persistent */
	put = at(t->ok, 1, "request_put");
	cr_assert_str_eq(bytes(put, "key"), P "owners/vm0");
	cr_assert_str_eq(bytes(put, "value"), "{\"node\":\"n1\",\"epoch\":5}");
	cr_assert_str_eq(str(put, "lease"), "77"); /* the claim dies with the lease */
}

Test(clvol_txn, create_needs_the_name_free)
{
	struct layout_volume v = vol();
	struct clvol_txn t;
	struct json_object *c;

	cr_assert_eq(clvol_txn_create(P, &v, 77, &t), 0);
	cr_assert_eq(json_object_array_length(t.cmp), 1);
	c = at(t.cmp, 0, NULL);
	cr_assert_str_eq(bytes(c, "key"), P "volumes/vm0");
	cr_assert_str_eq(str(c, "target"), "CREATE");
	cr_assert_str_eq(str(c, "create_revision"), "0");
	check_record_and_claim(&t);
	clvol_txn_free(&t);
	strcpy(v.name, "../x");
	cr_assert_eq(clvol_txn_create(P, &v, 77, &t), -EINVAL);
}

Test(clvol_txn, claim_needs_no_live_claim_and_an_unchanged_record)
{
	struct layout_volume v = vol();
	struct clvol_txn t;
	struct json_object *c;

	cr_assert_eq(clvol_txn_claim(P, &v, 1234, 77, &t), 0);
	cr_assert_eq(json_object_array_length(t.cmp), 2);
	c = at(t.cmp, 0, NULL);
	cr_assert_str_eq(bytes(c, "key"), P "owners/vm0");
	cr_assert_str_eq(str(c, "target"), "CREATE");
	cr_assert_str_eq(str(c, "create_revision"), "0");
	c = at(t.cmp, 1, NULL);
	cr_assert_str_eq(bytes(c, "key"), P "volumes/vm0");
	cr_assert_str_eq(str(c, "target"), "MOD");
	cr_assert_str_eq(str(c, "mod_revision"), "1234");
	check_record_and_claim(&t);
	clvol_txn_free(&t);
}

Test(clvol_txn, fenced_compares_the_exact_claim)
{
	struct layout_claim claim = { .node = "n2", .epoch = 9 };
	struct clvol_txn t;
	struct json_object *c;

	cr_assert_eq(clvol_txn_fenced(P, "vm0", &claim, &t), 0);
	cr_assert_eq(json_object_array_length(t.cmp), 1);
	cr_assert_eq(json_object_array_length(t.ok), 0);
	c = at(t.cmp, 0, NULL);
	cr_assert_str_eq(bytes(c, "key"), P "owners/vm0");
	cr_assert_str_eq(str(c, "target"), "VALUE");
	cr_assert_str_eq(str(c, "result"), "EQUAL");
	cr_assert_str_eq(bytes(c, "value"), "{\"node\":\"n2\",\"epoch\":9}");
	clvol_txn_free(&t);
	cr_assert_eq(clvol_txn_fenced(P, "a/b", &claim, &t), -EINVAL);
}

/* ---- copy steps (clvol_copy_apply): a DONE that takes the gone holders with it ---- */

static struct layout_segment copy_rec(const char *const *holders, unsigned n, const char *copying)
{
	struct layout_segment r = { .state = LAYOUT_SEG_SEALED, .length = 4096 };

	for (unsigned i = 0; i < n; i++)
		snprintf(r.holders[r.nholders++], sizeof(r.holders[0]), "%s", holders[i]);
	if (copying)
		snprintf(r.copying[r.ncopying++], sizeof(r.copying[0]), "%s", copying);
	return r;
}

static struct clvol_gone gone_of(const char *id, unsigned keep)
{
	struct clvol_gone g = { .n = 1, .keep = keep };

	snprintf(g.ids[0], sizeof(g.ids[0]), "%s", id);
	return g;
}

Test(clvol_copy, done_with_r_live_holders_drops_the_gone_one_in_the_same_write)
{
	struct layout_segment r = copy_rec((const char *[]){ "n0", "n1", "n2" }, 3, "n3");
	struct clvol_gone g = gone_of("n1", 3);
	char msg[128];

	cr_assert_eq(clvol_copy_apply(&r, "n3", CLVOL_COPY_DONE, &g, msg, sizeof(msg)), 0);
	cr_assert_eq(r.ncopying, 0);
	cr_assert_eq(r.nholders, 3);
	cr_assert(layout_segment_names(&r, "n0") && layout_segment_names(&r, "n2") &&
		  layout_segment_names(&r, "n3"));
	cr_assert_not(layout_segment_names(&r, "n1"));
	/* the same DONE again (a retry): no change */
	cr_assert_eq(clvol_copy_apply(&r, "n3", CLVOL_COPY_DONE, &g, msg, sizeof(msg)), 0);
	cr_assert_eq(r.nholders, 3);
}

Test(clvol_copy, done_below_r_live_holders_keeps_the_gone_one)
{
	/* two gone of three: the new copy makes two live, not R = 3 */
	struct layout_segment r = copy_rec((const char *[]){ "n0", "n1", "n2" }, 3, "n3");
	struct clvol_gone g = gone_of("n1", 3);
	char msg[128];

	snprintf(g.ids[g.n++], sizeof(g.ids[0]), "%s", "n2");
	cr_assert_eq(clvol_copy_apply(&r, "n3", CLVOL_COPY_DONE, &g, msg, sizeof(msg)), 0);
	cr_assert_eq(r.nholders, 4);
	cr_assert(layout_segment_names(&r, "n1") && layout_segment_names(&r, "n2") &&
		  layout_segment_names(&r, "n3"));
	/* and without a list: a plain DONE */
	r = copy_rec((const char *[]){ "n0", "n1" }, 2, "n3");
	cr_assert_eq(clvol_copy_apply(&r, "n3", CLVOL_COPY_DONE, NULL, msg, sizeof(msg)), 0);
	cr_assert_eq(r.nholders, 3);
}

Test(clvol_copy, done_refuses_a_new_holder_it_calls_gone_and_a_copy_not_under_way)
{
	struct layout_segment r = copy_rec((const char *[]){ "n0", "n1" }, 2, "n3");
	struct clvol_gone g = gone_of("n3", 2);
	char msg[128];

	cr_assert_eq(clvol_copy_apply(&r, "n3", CLVOL_COPY_DONE, &g, msg, sizeof(msg)), -EINVAL);
	cr_assert_eq(r.nholders, 2);
	cr_assert_eq(clvol_copy_apply(&r, "n4", CLVOL_COPY_DONE, NULL, msg, sizeof(msg)), -ENOENT);
}

/* ---- the record cache (struct clvol_segcache): a record this node wrote last is
 * written again without a read, against the revision its txn returned ---- */

#define SEGKEY P "segments/vm0/0000000000000007.00000001"

struct cache_env {
	struct fake_etcd *fake;
	struct etcd *e;
	struct clvol_who w;
	struct layout_segid id;
};

/* rec written at key by hand (as another node's write would be) */
static void store_at(struct cache_env *x, const char *key, const struct layout_segment *rec)
{
	char *val = layout_segment_encode(rec);

	cr_assert(val);
	fake_etcd_put(x->fake, key, val);
	free(val);
}

/* vm0 claimed by n1 at epoch 5; its segment 7.1 sealed on n0 and n1. */
static void cache_env_start(struct cache_env *x)
{
	struct layout_segment rec = copy_rec((const char *[]){ "n0", "n1" }, 2, NULL);
	char endpoint[64];

	cr_assert_eq(fake_etcd_start(&x->fake, endpoint, sizeof(endpoint)), 0);
	cr_assert_eq(etcd_create(&(struct etcd_opts){ .endpoints = endpoint }, &x->e), 0);
	x->w = (struct clvol_who){ P, "n1", 77, NULL };
	cr_assert_eq(clvol_segcache_create(&x->w.cache), 0);
	x->id = (struct layout_segid){ .family = 7, .seq = 1 };
	fake_etcd_put(x->fake, P "owners/vm0", "{\"node\":\"n1\",\"epoch\":5}");
	rec.id = x->id;
	rec.epoch = 5;
	store_at(x, SEGKEY, &rec);
}

static void cache_env_stop(struct cache_env *x)
{
	etcd_destroy(x->e);
	fake_etcd_stop(x->fake);
	clvol_segcache_destroy(x->w.cache);
}

static int copy_step(struct cache_env *x, const char *node, enum clvol_copy_phase phase)
{
	char msg[256] = "";
	int r = clvol_segment_copy(x->e, &x->w, "vm0", 5, &x->id, node, phase, NULL, msg,
				   sizeof(msg));

	cr_log_info("%s", msg);
	return r;
}

static struct layout_segment stored_at(struct cache_env *x, const char *key)
{
	struct layout_segment rec;
	const char *val = fake_etcd_value(x->fake, key, NULL);

	cr_assert_eq(layout_segment_decode(val, strlen(val), &rec), 0, "%s", val);
	return rec;
}

static struct layout_segment stored(struct cache_env *x)
{
	return stored_at(x, SEGKEY);
}

/* The record at key names node among its 3 holders, and no copy under way. */
static void assert_copied(struct cache_env *x, const char *key, const char *node)
{
	struct layout_segment rec = stored_at(x, key);

	cr_assert_eq(rec.nholders, 3);
	cr_assert_eq(rec.ncopying, 0);
	cr_assert(layout_segment_names(&rec, node));
}

static unsigned reads(struct cache_env *x)
{
	return fake_etcd_calls(x->fake, "/v3/kv/range");
}

Test(clvol_segcache, a_done_after_its_start_writes_without_a_read)
{
	struct cache_env x;

	cache_env_start(&x);
	cr_assert_eq(copy_step(&x, "n2", CLVOL_COPY_START), 0);
	cr_assert_eq(reads(&x), 1);
	cr_assert_eq(copy_step(&x, "n2", CLVOL_COPY_DONE), 0);
	cr_assert_eq(reads(&x), 1, "the DONE read the record it wrote itself");
	cr_assert_eq(fake_etcd_calls(x.fake, "/v3/kv/txn"), 2);
	assert_copied(&x, SEGKEY, "n2");
	cache_env_stop(&x);
}

Test(clvol_segcache, a_record_changed_meanwhile_is_read_and_not_written_over)
{
	struct layout_segment rec;
	struct cache_env x;

	cache_env_start(&x);
	cr_assert_eq(copy_step(&x, "n2", CLVOL_COPY_START), 0);
	/* someone else starts a copy to n3 meanwhile */
	rec = stored(&x);
	snprintf(rec.copying[rec.ncopying++], sizeof(rec.copying[0]), "%s", "n3");
	store_at(&x, SEGKEY, &rec);
	cr_assert_eq(copy_step(&x, "n2", CLVOL_COPY_DONE), 0);
	cr_assert_eq(reads(&x), 2, "the DONE's compare failed: it reads the record");
	rec = stored(&x);
	cr_assert(layout_segment_names(&rec, "n2"));
	cr_assert(layout_segment_copying(&rec, "n3"), "the other copy was written over");
	/* what the DONE wrote after its read is known again: the ABORT reads nothing */
	cr_assert_eq(copy_step(&x, "n3", CLVOL_COPY_ABORT), 0);
	cr_assert_eq(reads(&x), 2);
	rec = stored(&x);
	cr_assert_not(layout_segment_copying(&rec, "n3"));
	cache_env_stop(&x);
}

Test(clvol_segcache, a_refusal_of_the_known_copy_is_checked_against_a_read)
{
	struct layout_segment rec;
	struct cache_env x;

	cache_env_start(&x);
	cr_assert_eq(copy_step(&x, "n2", CLVOL_COPY_START), 0);
	cr_assert_eq(copy_step(&x, "n2", CLVOL_COPY_DONE), 0);
	/* by hand: n2 is dropped and its copy begun again */
	rec = copy_rec((const char *[]){ "n0", "n1" }, 2, "n2");
	rec.id = x.id;
	rec.epoch = 5;
	store_at(&x, SEGKEY, &rec);
	/* the known copy calls n2 a holder (-EEXIST); the record says a retry */
	cr_assert_eq(copy_step(&x, "n2", CLVOL_COPY_START), 0);
	cr_assert_eq(reads(&x), 2);
	cache_env_stop(&x);
}

#define SEGKEY3 P "segments/vm0/0000000000000007.00000003"

/* x's volume's segment 7.3, opened on n1 and n2 (not recorded before). */
static struct layout_segid open_third(struct cache_env *x)
{
	struct layout_segment seg = copy_rec((const char *[]){ "n1", "n2" }, 2, NULL);
	char msg[256] = "";

	seg.id = (struct layout_segid){ .family = 7, .seq = 3 };
	cr_assert_eq(clvol_segment_open(x->e, &x->w, "vm0", 5, &seg, msg, sizeof(msg)), 0,
		     "%s", msg);
	return seg.id;
}

static int seal(struct cache_env *x, const struct layout_segid *id, uint64_t length)
{
	char msg[256] = "";
	int r = clvol_segment_seal(x->e, &x->w, "vm0", 5, id, length, msg, sizeof(msg));

	cr_log_info("%s", msg);
	return r;
}

Test(clvol_segcache, a_seal_after_its_open_writes_without_a_read)
{
	struct layout_segid id;
	struct cache_env x;
	struct layout_segment rec;

	cache_env_start(&x);
	id = open_third(&x);
	cr_assert_eq(seal(&x, &id, 1024), 0);
	cr_assert_eq(reads(&x), 0, "the seal read the record its open wrote");
	cr_assert_eq(fake_etcd_calls(x.fake, "/v3/kv/txn"), 2);
	rec = stored_at(&x, SEGKEY3);
	cr_assert_eq(rec.state, LAYOUT_SEG_SEALED);
	cr_assert_eq(rec.length, 1024);
	cr_assert_eq(rec.nholders, 2);
	cache_env_stop(&x);
}

Test(clvol_segcache, a_record_changed_after_its_open_is_read_before_the_seal)
{
	struct layout_segment rec = copy_rec((const char *[]){ "n1" }, 1, NULL);
	struct layout_segid id;
	struct cache_env x;

	cache_env_start(&x);
	id = open_third(&x);
	/* by hand: n2 dropped from the open segment */
	rec.state = LAYOUT_SEG_OPEN;
	rec.length = 0;
	rec.id = id;
	rec.epoch = 5;
	store_at(&x, SEGKEY3, &rec);
	cr_assert_eq(seal(&x, &id, 1024), 0);
	cr_assert_eq(reads(&x), 1);
	rec = stored_at(&x, SEGKEY3);
	cr_assert_eq(rec.state, LAYOUT_SEG_SEALED);
	cr_assert_eq(rec.nholders, 1, "the seal wrote the holders its open had over");
	cache_env_stop(&x);
}

/* ---- several segments' copy steps in one txn (clvol_segment_copy_batch) ---- */

#define SEGKEY2 P "segments/vm0/0000000000000007.00000002"

/* cache_env's volume, with a second sealed segment, 7.2, on n0 and n1 */
static void batch_env_start(struct cache_env *x)
{
	struct layout_segment rec = copy_rec((const char *[]){ "n0", "n1" }, 2, NULL);

	cache_env_start(x);
	rec.id = (struct layout_segid){ .family = 7, .seq = 2 };
	rec.epoch = 5;
	store_at(x, SEGKEY2, &rec);
}

/* 7.1 and 7.2 copied to node at phase, in one batch, then those it left alone by
 * themselves, as the cluster's session runs them; each one's answer in res[], and
 * how many it left alone. */
static unsigned batch_step(struct cache_env *x, const char *node, enum clvol_copy_phase phase,
			   int res[2])
{
	char msg[2][256];
	struct clvol_copy_item it[2];
	unsigned alone = 0;

	for (unsigned i = 0; i < 2; i++)
		it[i] = (struct clvol_copy_item){
			.id = { .family = 7, .seq = 1 + i }, .node = node, .phase = phase,
			.msg = msg[i], .msg_len = sizeof(msg[i]), .alone = true };
	cr_assert_eq(clvol_segment_copy_batch(x->e, &x->w, "vm0", 5, it, 2), 0);
	for (unsigned i = 0; i < 2; i++) {
		if (it[i].alone) {
			alone++;
			it[i].res = clvol_segment_copy(x->e, &x->w, "vm0", 5, &it[i].id, node,
						       phase, NULL, msg[i], sizeof(msg[i]));
		}
		cr_log_info("7.%u: %d %s", 1 + i, it[i].res, msg[i]);
		res[i] = it[i].res;
	}
	return alone;
}

Test(clvol_copy_batch, two_starts_then_two_dones_are_one_txn_each)
{
	struct layout_segment rec;
	struct cache_env x;
	int res[2];

	batch_env_start(&x);
	cr_assert_eq(batch_step(&x, "n2", CLVOL_COPY_START, res), 0, "none left alone");
	cr_assert_eq(res[0], 0);
	cr_assert_eq(res[1], 0);
	cr_assert_eq(reads(&x), 1, "the records not written by this node are one range read");
	cr_assert_eq(fake_etcd_calls(x.fake, "/v3/kv/txn"), 1, "the two STARTs are one txn");
	rec = stored_at(&x, SEGKEY2);
	cr_assert(layout_segment_copying(&rec, "n2"));
	batch_step(&x, "n2", CLVOL_COPY_DONE, res);
	cr_assert_eq(res[0], 0);
	cr_assert_eq(res[1], 0);
	cr_assert_eq(reads(&x), 1, "the DONEs read the records this node wrote itself");
	cr_assert_eq(fake_etcd_calls(x.fake, "/v3/kv/txn"), 2, "the two DONEs are one txn");
	assert_copied(&x, SEGKEY, "n2");
	assert_copied(&x, SEGKEY2, "n2");
	cache_env_stop(&x);
}

Test(clvol_copy_batch, a_record_changed_by_another_node_is_read_alone_and_not_written_over)
{
	struct layout_segment rec;
	struct cache_env x;
	int res[2];

	batch_env_start(&x);
	batch_step(&x, "n2", CLVOL_COPY_START, res);
	/* another node starts a copy of 7.2 to n3 meanwhile */
	rec = stored_at(&x, SEGKEY2);
	snprintf(rec.copying[rec.ncopying++], sizeof(rec.copying[0]), "%s", "n3");
	store_at(&x, SEGKEY2, &rec);
	cr_assert_eq(batch_step(&x, "n2", CLVOL_COPY_DONE, res), 2,
		     "a failed compare leaves every step of the batch to run alone");
	cr_assert_eq(res[0], 0);
	cr_assert_eq(res[1], 0);
	cr_assert_eq(reads(&x), 2, "only the record that changed is read again");
	/* the batch's txn (failed), 7.1 alone (unread), 7.2 alone (failed, then read and
	 * written) */
	cr_assert_eq(fake_etcd_calls(x.fake, "/v3/kv/txn"), 5);
	rec = stored_at(&x, SEGKEY);
	cr_assert(layout_segment_names(&rec, "n2"));
	cr_assert_eq(rec.ncopying, 0);
	rec = stored_at(&x, SEGKEY2);
	cr_assert(layout_segment_names(&rec, "n2"));
	cr_assert(layout_segment_copying(&rec, "n3"), "the other node's copy was written over");
	cache_env_stop(&x);
}

Test(clvol_copy_batch, a_step_the_record_refuses_answers_alone_and_the_others_are_written)
{
	struct layout_segment rec;
	struct cache_env x;
	int res[2];

	batch_env_start(&x);
	/* n1 holds both: its START is refused on each, nothing is written */
	batch_step(&x, "n1", CLVOL_COPY_START, res);
	cr_assert_eq(res[0], -EEXIST);
	cr_assert_eq(res[1], -EEXIST);
	cr_assert_eq(fake_etcd_calls(x.fake, "/v3/kv/txn"), 0, "a txn that writes nothing");
	/* 7.1's copy to n2 started alone, then DONE for both: 7.2's is refused */
	cr_assert_eq(copy_step(&x, "n2", CLVOL_COPY_START), 0);
	batch_step(&x, "n2", CLVOL_COPY_DONE, res);
	cr_assert_eq(res[0], 0);
	cr_assert_eq(res[1], -ENOENT);
	rec = stored_at(&x, SEGKEY);
	cr_assert(layout_segment_names(&rec, "n2"));
	rec = stored_at(&x, SEGKEY2);
	cr_assert_not(layout_segment_names(&rec, "n2"));
	cache_env_stop(&x);
}

Test(clvol_copy_batch, a_fence_lost_writes_nothing)
{
	struct cache_env x;
	int res[2];
	struct layout_volume vol = { .name = "vm0", .owner = "n3", .epoch = 6, .replicas = 3,
				     .min_replicas = 2, .size = 1 << 30, .sector_size = 4096,
				     .state = LAYOUT_VOL_READY };
	char *val = layout_volume_encode(&vol);

	batch_env_start(&x);
	/* n3 claimed the volume since */
	fake_etcd_put(x.fake, P "volumes/vm0", val);
	free(val);
	fake_etcd_put(x.fake, P "owners/vm0", "{\"node\":\"n3\",\"epoch\":6}");
	batch_step(&x, "n2", CLVOL_COPY_START, res);
	cr_assert_eq(res[0], -ESTALE);
	cr_assert_eq(res[1], -ESTALE);
	cr_assert_eq(stored_at(&x, SEGKEY).ncopying, 0);
	cr_assert_eq(stored_at(&x, SEGKEY2).ncopying, 0);
	cache_env_stop(&x);
}

Test(clvol_copy_batch, two_steps_on_one_segment_are_refused)
{
	struct cache_env x;
	char msg[2][64];
	struct clvol_copy_item it[2] = {
		{ .id = { 7, 1 }, .node = "n2", .phase = CLVOL_COPY_START, .msg = msg[0],
		  .msg_len = sizeof(msg[0]) },
		{ .id = { 7, 1 }, .node = "n3", .phase = CLVOL_COPY_START, .msg = msg[1],
		  .msg_len = sizeof(msg[1]) },
	};

	batch_env_start(&x);
	cr_assert_eq(clvol_segment_copy_batch(x.e, &x.w, "vm0", 5, it, 2), -EINVAL);
	cr_assert_eq(fake_etcd_calls(x.fake, "/v3/kv/txn"), 0);
	cache_env_stop(&x);
}

Test(clvol_copy_batch, records_far_apart_are_read_each_not_by_a_range_of_all_between)
{
	struct layout_segment rec = copy_rec((const char *[]){ "n0", "n1" }, 2, NULL);
	char msg[2][256], key[256];
	struct clvol_copy_item it[2];
	struct cache_env x;

	cache_env_start(&x);
	/* 7.1 and 7.200, and some of the records between them (not the batch's; in a
	 * real volume, all 198) */
	for (uint32_t seq = 2; seq <= 200; seq += seq < 10 ? 1 : 190) {
		rec.id = (struct layout_segid){ .family = 7, .seq = seq };
		rec.epoch = 5;
		cr_assert_eq(layout_segment_key(key, sizeof(key), P, "vm0", &rec.id), 0);
		store_at(&x, key, &rec);
	}
	for (unsigned i = 0; i < 2; i++)
		it[i] = (struct clvol_copy_item){
			.id = { .family = 7, .seq = i ? 200 : 1 }, .node = "n2",
			.phase = CLVOL_COPY_START, .msg = msg[i], .msg_len = sizeof(msg[i]) };
	cr_assert_eq(clvol_segment_copy_batch(x.e, &x.w, "vm0", 5, it, 2), 0);
	cr_assert_eq(it[0].res, 0, "%s", msg[0]);
	cr_assert_eq(it[1].res, 0, "%s", msg[1]);
	cr_assert_eq(reads(&x), 2, "one range would have read every record between them");
	cr_assert_eq(fake_etcd_calls(x.fake, "/v3/kv/txn"), 1, "still one txn");
	rec = stored_at(&x, key);
	cr_assert(layout_segment_copying(&rec, "n2"));
	cache_env_stop(&x);
}
