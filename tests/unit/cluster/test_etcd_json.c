/* tests/unit/cluster/test_etcd_json.c — etcd's gateway JSON (cluster/etcd_json.c):
 * base64 both ways, 64-bit integers as strings, zero values left out, error bodies,
 * range, lease, txn and watch answers (with compaction), and bad input refused. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "cluster/etcd_json.h"

static struct json_object *parse(const char *text)
{
	struct json_object *o = json_tokener_parse(text);

	cr_assert_not_null(o, "bad fixture: %s", text);
	return o;
}

Test(etcd_b64, round_trips_every_length_and_byte)
{
	unsigned char in[300], out[300];
	char text[404];
	size_t n;

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 37 + 11);
	for (size_t len = 0; len < sizeof(in); len++) {
		int t = etcd_b64_encode(in, len, text, sizeof(text));

		cr_assert_eq(t, (int)((len + 2) / 3 * 4));
		cr_assert_eq(etcd_b64_decode(text, out, sizeof(out), &n), 0);
		cr_assert_eq(n, len);
		cr_assert_eq(memcmp(in, out, len), 0);
	}
}

Test(etcd_b64, known_vectors)
{
	char text[16];
	unsigned char out[8];
	size_t n;

	etcd_b64_encode("foo", 3, text, sizeof(text));
	cr_assert_str_eq(text, "Zm9v");
	etcd_b64_encode("fo", 2, text, sizeof(text));
	cr_assert_str_eq(text, "Zm8=");
	etcd_b64_encode("f", 1, text, sizeof(text));
	cr_assert_str_eq(text, "Zg==");
	cr_assert_eq(etcd_b64_decode("YmFy", out, sizeof(out), &n), 0);
	cr_assert_eq(n, 3);
	cr_assert_eq(memcmp(out, "bar", 3), 0);
	cr_assert_eq(etcd_b64_encode("foo", 3, text, 4), -ENOSPC);
}

Test(etcd_b64, bad_text_is_refused)
{
	unsigned char out[16];
	size_t n;

	cr_assert_eq(etcd_b64_decode("Zm9", out, sizeof(out), &n), -EPROTO);   /* length */
	cr_assert_eq(etcd_b64_decode("Zm9!", out, sizeof(out), &n), -EPROTO);  /* alphabet */
	cr_assert_eq(etcd_b64_decode("Z===", out, sizeof(out), &n), -EPROTO);  /* padding */
	cr_assert_eq(etcd_b64_decode("Zg=a", out, sizeof(out), &n), -EPROTO);
	cr_assert_eq(etcd_b64_decode("Zg==Zm9v", out, sizeof(out), &n), -EPROTO); /* mid pad */
	cr_assert_eq(etcd_b64_decode("Zm9vYmFy", out, 5, &n), -ENOSPC);
}

Test(etcd_json, int64_strings_numbers_and_zero_values)
{
	struct json_object *o = parse("{\"a\":\"9223372036854775807\",\"b\":42,\"c\":\"-1\","
				      "\"d\":\"12x\",\"e\":true,\"f\":\"\"}");
	int64_t v;

	cr_assert_eq(etcd_json_int64(o, "a", &v), 0);
	cr_assert_eq(v, INT64_MAX);
	cr_assert_eq(etcd_json_int64(o, "b", &v), 0);
	cr_assert_eq(v, 42);
	cr_assert_eq(etcd_json_int64(o, "c", &v), 0);
	cr_assert_eq(v, -1);
	cr_assert_eq(etcd_json_int64(o, "absent", &v), 0); /* proto3: a zero is left out */
	cr_assert_eq(v, 0);
	cr_assert_eq(etcd_json_int64(o, "d", &v), -EPROTO);
	cr_assert_eq(etcd_json_int64(o, "e", &v), -EPROTO);
	cr_assert_eq(etcd_json_int64(o, "f", &v), -EPROTO);
	json_object_put(o);
}

Test(etcd_json, error_bodies)
{
	struct json_object *o = parse("{\"error\":\"etcdserver: invalid auth token\",\"message\":"
				      "\"etcdserver: invalid auth token\",\"code\":16}");
	struct json_object *s = parse("{\"error\":{\"grpc_code\":7,\"http_code\":403,\"message\":"
				      "\"etcdserver: permission denied\"}}");
	struct json_object *ok = parse("{\"header\":{\"revision\":\"2\"}}");
	char msg[64];
	int code;

	cr_assert(etcd_json_error(o, &code, msg, sizeof(msg)));
	cr_assert_eq(code, ETCD_CODE_UNAUTHENTICATED);
	cr_assert_str_eq(msg, "etcdserver: invalid auth token");
	cr_assert(etcd_json_error(s, &code, msg, sizeof(msg)));
	cr_assert_eq(code, ETCD_CODE_PERMISSION_DENIED);
	cr_assert_str_eq(msg, "etcdserver: permission denied");
	cr_assert_not(etcd_json_error(ok, &code, msg, sizeof(msg)));
	json_object_put(o);
	json_object_put(s);
	json_object_put(ok);
}

/* As etcd 3.4.23 answers /v3/kv/range (captured). */
Test(etcd_json, range_answer)
{
	struct json_object *o = parse(
		"{\"header\":{\"cluster_id\":\"15118495548433857066\",\"member_id\":"
		"\"13668033151171901709\",\"revision\":\"12\",\"raft_term\":\"2\"},\"kvs\":[{\"key\":"
		"\"Zm9v\",\"create_revision\":\"2\",\"mod_revision\":\"11\",\"version\":\"3\","
		"\"value\":\"YmFy\",\"lease\":\"4111120453397263369\"},{\"key\":\"Zm9w\","
		"\"create_revision\":\"5\",\"mod_revision\":\"5\",\"version\":\"1\"}],\"count\":\"2\"}");
	struct etcd_kv *kvs;
	int64_t rev;
	size_t n;

	cr_assert_eq(etcd_json_range(o, &rev, &kvs, &n), 0);
	cr_assert_eq(rev, 12);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(kvs[0].key, "foo");
	cr_assert_str_eq(kvs[0].value, "bar");
	cr_assert_eq(kvs[0].value_len, 3);
	cr_assert_eq(kvs[0].create_revision, 2);
	cr_assert_eq(kvs[0].mod_revision, 11);
	cr_assert_eq(kvs[0].version, 3);
	cr_assert_eq(kvs[0].lease, 4111120453397263369LL);
	cr_assert_str_eq(kvs[1].key, "fop");
	cr_assert_eq(kvs[1].value_len, 0); /* an empty value is left out */
	cr_assert_eq(kvs[1].lease, 0);
	etcd_kv_free(kvs, n);
	json_object_put(o);
}

Test(etcd_json, empty_range_and_bad_ranges)
{
	struct json_object *empty = parse("{\"header\":{\"revision\":\"7\"}}");
	struct json_object *badkey = parse("{\"kvs\":[{\"key\":\"Zm9!\"}]}");
	struct json_object *nokey = parse("{\"kvs\":[{\"value\":\"YmFy\"}]}");
	struct json_object *notarr = parse("{\"kvs\":{}}");
	struct json_object *badrev = parse("{\"kvs\":[{\"key\":\"Zm9v\",\"mod_revision\":\"x\"}]}");
	struct etcd_kv *kvs;
	int64_t rev;
	size_t n;

	cr_assert_eq(etcd_json_range(empty, &rev, &kvs, &n), 0);
	cr_assert_eq(rev, 7);
	cr_assert_eq(n, 0);
	cr_assert_null(kvs);
	cr_assert_eq(etcd_json_range(badkey, &rev, &kvs, &n), -EPROTO);
	cr_assert_eq(etcd_json_range(nokey, &rev, &kvs, &n), -EPROTO);
	cr_assert_eq(etcd_json_range(notarr, &rev, &kvs, &n), -EPROTO);
	cr_assert_eq(etcd_json_range(badrev, &rev, &kvs, &n), -EPROTO);
	json_object_put(empty);
	json_object_put(badkey);
	json_object_put(nokey);
	json_object_put(notarr);
	json_object_put(badrev);
}

/* A grant, a keepalive of a live lease, and one of a lease that is gone (no TTL). */
Test(etcd_json, lease_answers)
{
	struct json_object *grant = parse("{\"header\":{},\"ID\":\"4111120453397263389\",\"TTL\":\"2\"}");
	struct json_object *ka = parse("{\"result\":{\"header\":{},\"ID\":\"4111120453397263389\","
				       "\"TTL\":\"2\"}}");
	struct json_object *gone = parse("{\"result\":{\"header\":{},\"ID\":\"4111120453397263389\"}}");
	struct json_object *noid = parse("{\"result\":{\"TTL\":\"2\"}}");
	int64_t id, ttl;

	cr_assert_eq(etcd_json_lease(grant, &id, &ttl), 0);
	cr_assert_eq(id, 4111120453397263389LL);
	cr_assert_eq(ttl, 2);
	cr_assert_eq(etcd_json_lease(ka, &id, &ttl), 0);
	cr_assert_eq(ttl, 2);
	cr_assert_eq(etcd_json_lease(gone, &id, &ttl), 0);
	cr_assert_eq(ttl, 0);
	cr_assert_eq(etcd_json_lease(noid, &id, &ttl), -EPROTO);
	json_object_put(grant);
	json_object_put(ka);
	json_object_put(gone);
	json_object_put(noid);
}

Test(etcd_json, txn_answers)
{
	struct json_object *yes = parse("{\"header\":{\"revision\":\"9\"},\"succeeded\":true,"
					"\"responses\":[{\"response_put\":{}}]}");
	struct json_object *no = parse("{\"header\":{\"revision\":\"9\"},\"responses\":[]}");
	struct json_object *bad = parse("{\"succeeded\":\"yes\"}");
	bool ok;
	int64_t rev;

	cr_assert_eq(etcd_json_txn(yes, &ok, &rev), 0);
	cr_assert(ok);
	cr_assert_eq(rev, 9);
	cr_assert_eq(etcd_json_txn(no, &ok, &rev), 0);
	cr_assert_not(ok); /* false is left out */
	cr_assert_eq(etcd_json_txn(bad, &ok, &rev), -EPROTO);
	json_object_put(yes);
	json_object_put(no);
	json_object_put(bad);
}

Test(etcd_json, watch_messages)
{
	struct json_object *created = parse("{\"result\":{\"header\":{\"revision\":\"2\"},"
					    "\"created\":true}}");
	struct json_object *events = parse(
		"{\"result\":{\"header\":{\"revision\":\"4\"},\"events\":[{\"kv\":{\"key\":\"Zm9v\","
		"\"create_revision\":\"3\",\"mod_revision\":\"3\",\"version\":\"1\",\"value\":"
		"\"YmFy\"}},{\"type\":\"DELETE\",\"kv\":{\"key\":\"Zm9v\",\"mod_revision\":\"4\"}}]}}");
	struct etcd_watch_msg m;

	cr_assert_eq(etcd_json_watch(created, &m), 0);
	cr_assert(m.created);
	cr_assert_eq(m.nevents, 0);
	etcd_watch_msg_free(&m);
	cr_assert_eq(etcd_json_watch(events, &m), 0);
	cr_assert_eq(m.revision, 4);
	cr_assert_eq(m.nevents, 2);
	cr_assert_eq(m.events[0].type, ETCD_EVENT_PUT); /* PUT is the zero value: left out */
	cr_assert_str_eq(m.events[0].kv.value, "bar");
	cr_assert_eq(m.events[1].type, ETCD_EVENT_DELETE);
	cr_assert_str_eq(m.events[1].kv.key, "foo");
	cr_assert_eq(m.events[1].kv.mod_revision, 4);
	etcd_watch_msg_free(&m);
	json_object_put(created);
	json_object_put(events);
}

/* As etcd 3.4.23 answers a watch from a compacted revision (captured): reload. */
Test(etcd_json, watch_compacted_means_reload)
{
	struct json_object *o = parse("{\"result\":{\"header\":{\"cluster_id\":\"1\",\"member_id\":"
				      "\"2\",\"raft_term\":\"2\"},\"canceled\":true,"
				      "\"compact_revision\":\"8\"}}");
	struct etcd_watch_msg m;

	cr_assert_eq(etcd_json_watch(o, &m), 0);
	cr_assert(m.canceled);
	cr_assert_eq(m.compact_revision, 8);
	etcd_watch_msg_free(&m);
	json_object_put(o);
}

Test(etcd_json, bad_watch_messages)
{
	const char *bad[] = {
		"{}", "{\"result\":3}", "{\"result\":{\"events\":{}}}",
		"{\"result\":{\"events\":[{\"type\":\"PUT\"}]}}",
		"{\"result\":{\"events\":[{\"type\":\"EXPLODE\",\"kv\":{\"key\":\"Zm9v\"}}]}}",
		"{\"result\":{\"events\":[{\"kv\":{\"key\":\"Zm9v\"}},{\"kv\":{\"key\":\"?\"}}]}}",
		"{\"result\":{\"compact_revision\":\"x\"}}",
	};
	struct etcd_watch_msg m;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct json_object *o = parse(bad[i]);

		cr_assert_eq(etcd_json_watch(o, &m), -EPROTO, "%s", bad[i]);
		cr_assert_null(m.events);
		json_object_put(o);
	}
}

Test(etcd_json, prefix_end)
{
	char out[16];

	etcd_prefix_end("/quill/a/", out);
	cr_assert_str_eq(out, "/quill/a0"); /* '/' + 1 */
	etcd_prefix_end("ab\xff", out);
	cr_assert_str_eq(out, "ac");
}

Test(etcd_json, requests_encode_keys_and_int64s)
{
	struct json_object *k = etcd_json_key("/quill/", "/quill0");
	struct json_object *cmp = etcd_json_compare_eq("foo", ETCD_TARGET_CREATE, 0);
	struct json_object *put = etcd_json_put_op("foo", "bar", 123456789012345LL);

	cr_assert_str_eq(json_object_to_json_string_ext(k, JSON_C_TO_STRING_PLAIN),
			 "{\"key\":\"L3F1aWxsLw==\",\"range_end\":\"L3F1aWxsMA==\"}");
	cr_assert_str_eq(json_object_to_json_string_ext(cmp, JSON_C_TO_STRING_PLAIN),
			 "{\"key\":\"Zm9v\",\"target\":\"CREATE\",\"result\":\"EQUAL\","
			 "\"create_revision\":\"0\"}");
	cr_assert_str_eq(json_object_to_json_string_ext(put, JSON_C_TO_STRING_PLAIN),
			 "{\"request_put\":{\"key\":\"Zm9v\",\"value\":\"YmFy\",\"lease\":"
			 "\"123456789012345\"}}");
	json_object_put(k);
	json_object_put(cmp);
	json_object_put(put);
	cmp = etcd_json_compare_eq("foo", ETCD_TARGET_MOD, 9007199254740993LL);
	cr_assert_str_eq(json_object_to_json_string_ext(cmp, JSON_C_TO_STRING_PLAIN),
			 "{\"key\":\"Zm9v\",\"target\":\"MOD\",\"result\":\"EQUAL\","
			 "\"mod_revision\":\"9007199254740993\"}"); /* past a double's 2^53 */
	json_object_put(cmp);
	put = etcd_json_delete_op("foo");
	cr_assert_str_eq(json_object_to_json_string_ext(put, JSON_C_TO_STRING_PLAIN),
			 "{\"request_delete_range\":{\"key\":\"Zm9v\"}}");
	json_object_put(put);
}
