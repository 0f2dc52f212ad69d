/* tests/unit/cluster/test_layout.c — quill's etcd keys and values (cluster/layout.c):
 * keys built and parsed back, foreign keys skipped, node records round-trip and bad
 * ones refused, version compatibility. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cluster/layout.h"

#define P "/quill/test/"

Test(layout, ids_and_prefixes)
{
	cr_assert(layout_id_valid("node-0.rack_1"));
	cr_assert_not(layout_id_valid(""));
	cr_assert_not(layout_id_valid("."));
	cr_assert_not(layout_id_valid(".."));
	cr_assert_not(layout_id_valid("a/b"));
	cr_assert_not(layout_id_valid("a b"));
	cr_assert_not(layout_id_valid("0123456789012345678901234567890123456789012345678901234567890123"));
	cr_assert(layout_prefix_valid("/quill/default/"));
	cr_assert(layout_prefix_valid("/"));
	cr_assert_not(layout_prefix_valid("quill/"));
	cr_assert_not(layout_prefix_valid("/quill"));
	cr_assert_not(layout_prefix_valid("/quill//x/"));
	cr_assert_not(layout_prefix_valid("/qu\nill/"));
}

Test(layout, keys_round_trip)
{
	static const enum layout_kind kinds[] = { LAYOUT_MEMBER, LAYOUT_ALIVE, LAYOUT_OUT };
	static const char *const want[] = { P "members/n1", P "alive/n1", P "out/n1" };
	char key[128], id[LAYOUT_ID_MAX + 1];
	enum layout_kind kind;

	for (int i = 0; i < 3; i++) {
		cr_assert_eq(layout_key(key, sizeof(key), P, kinds[i], "n1"), 0);
		cr_assert_str_eq(key, want[i]);
		cr_assert_eq(layout_key_parse(P, key, strlen(key), &kind, id), 0);
		cr_assert_eq(kind, kinds[i]);
		cr_assert_str_eq(id, "n1");
	}
	cr_assert_eq(layout_dir(key, sizeof(key), P, LAYOUT_ALIVE), 0);
	cr_assert_str_eq(key, P "alive/");
	cr_assert_eq(layout_key(key, sizeof(key), P, LAYOUT_ALIVE, "bad/id"), -EINVAL);
	cr_assert_eq(layout_key(key, 10, P, LAYOUT_ALIVE, "n1"), -ENAMETOOLONG);
}

Test(layout, foreign_keys_are_skipped)
{
	static const char *const keys[] = {
		"/quill/other/alive/n1", P "volumes/v0/owner", P "alive/", P "alive/a/b",
		P "alive/..", P "membersX/n1", "/quill/tes",
	};
	char id[LAYOUT_ID_MAX + 1];
	enum layout_kind kind;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		cr_assert_eq(layout_key_parse(P, keys[i], strlen(keys[i]), &kind, id), -ENOENT,
			     "%s", keys[i]);
	/* a NUL inside the key's bytes */
	cr_assert_eq(layout_key_parse(P, P "alive/n1\0x", sizeof(P "alive/n1\0x") - 1, &kind, id),
		     -ENOENT);
}

static struct layout_node sample(void)
{
	struct layout_node n = { .format_version = 3, .protocol_version = 1,
				 .up_since = 1796459816 };

	strcpy(n.id, "n0");
	strcpy(n.domain, "rack-a");
	strcpy(n.nbd, "127.0.0.1:10809");
	strcpy(n.control, "/run/quill/quilld.sock");
	strcpy(n.peer, "10.0.0.1:7000");
	return n;
}

Test(layout, node_record_round_trips)
{
	struct layout_node n = sample(), back;
	char *text = layout_node_encode(&n);

	cr_assert_not_null(text);
	cr_assert_eq(layout_node_decode(text, strlen(text), &back), 0);
	cr_assert_eq(memcmp(&n, &back, sizeof(n)), 0);
	free(text);
	/* fields it does not know are a newer node's: ignored */
	text = "{\"id\":\"n0\",\"domain\":\"n0\",\"nbd\":\"\",\"control\":\"\",\"peer\":\"\","
	       "\"format_version\":3,\"protocol_version\":1,\"up_since\":0,\"zone\":\"z\"}";
	cr_assert_eq(layout_node_decode(text, strlen(text), &back), 0);
}

Test(layout, bad_node_records_are_refused)
{
	static const char *const bad[] = {
		"", "[]", "{", "{}", "not json",
		"{\"id\":\"n0\",\"domain\":\"n0\",\"nbd\":\"\",\"control\":\"\",\"peer\":\"\","
		"\"format_version\":3,\"protocol_version\":1}", /* no up_since */
		"{\"id\":\"n/0\",\"domain\":\"n0\",\"nbd\":\"\",\"control\":\"\",\"peer\":\"\","
		"\"format_version\":3,\"protocol_version\":1,\"up_since\":0}", /* bad id */
		"{\"id\":\"n0\",\"domain\":\"n0\",\"nbd\":5,\"control\":\"\",\"peer\":\"\","
		"\"format_version\":3,\"protocol_version\":1,\"up_since\":0}", /* a number */
		"{\"id\":\"n0\",\"domain\":\"n0\",\"nbd\":\"\",\"control\":\"\",\"peer\":\"\","
		"\"format_version\":-1,\"protocol_version\":1,\"up_since\":0}", /* negative */
		"{\"id\":\"n0\",\"domain\":\"n0\",\"nbd\":\"\",\"control\":\"\",\"peer\":\"\","
		"\"format_version\":3,\"protocol_version\":1,\"up_since\":0} {}", /* trailing */
		"{\"id\":\"n\\u00000\",\"domain\":\"n0\",\"nbd\":\"\",\"control\":\"\",\"peer\":\"\","
		"\"format_version\":3,\"protocol_version\":1,\"up_since\":0}", /* a NUL */
	};
	struct layout_node back;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(layout_node_decode(bad[i], strlen(bad[i]), &back), -EPROTO, "%s",
			     bad[i]);
}

Test(layout, long_strings_are_refused)
{
	struct layout_node n = sample(), back;
	char *text;

	memset(n.nbd, 'x', LAYOUT_ADDR_MAX);
	n.nbd[LAYOUT_ADDR_MAX] = '\0';
	text = layout_node_encode(&n);
	cr_assert_eq(layout_node_decode(text, strlen(text), &back), 0); /* the longest fits */
	free(text);
	text = "{\"id\":\"n0\",\"domain\":\"n0\",\"nbd\":\"\",\"control\":\"\",\"peer\":\"\","
	       "\"format_version\":3,\"protocol_version\":1,\"up_since\":0}";
	cr_assert_eq(layout_node_decode(text, strlen(text) - 1, &back), -EPROTO); /* cut */
}

Test(layout, compatibility_is_equal_versions)
{
	struct layout_node a = sample(), b = sample();

	cr_assert(layout_compatible(&a, &b));
	b.protocol_version = 2;
	cr_assert_not(layout_compatible(&a, &b));
	b = sample();
	b.format_version = 4;
	cr_assert_not(layout_compatible(&a, &b));
}

Test(layout, out_marks)
{
	char *text = layout_out_encode(1796459816);
	int64_t since;

	cr_assert_eq(layout_out_decode(text, strlen(text), &since), 0);
	cr_assert_eq(since, 1796459816);
	free(text);
	cr_assert_eq(layout_out_decode("{}", 2, &since), -EPROTO);
	cr_assert_eq(layout_out_decode("{\"since\":\"1\"}", 13, &since), -EPROTO);
}

Test(layout, space_records)
{
	struct layout_space sp = { 100663296, 3145728, 88000000 }, got;
	char *text = layout_space_encode(&sp), key[128];
	enum layout_kind kind;
	char id[LAYOUT_ID_MAX + 1];

	cr_assert_eq(layout_space_decode(text, strlen(text), &got), 0);
	cr_assert(got.raw == sp.raw && got.used == sp.used && got.usable == sp.usable);
	free(text);
	cr_assert_eq(layout_key(key, sizeof(key), "/q/", LAYOUT_SPACE, "node1"), 0);
	cr_assert_str_eq(key, "/q/space/node1");
	cr_assert_eq(layout_key_parse("/q/", key, strlen(key), &kind, id), 0);
	cr_assert(kind == LAYOUT_SPACE && strcmp(id, "node1") == 0);
	/* a field missing, negative, or more used or usable than raw */
	cr_assert_eq(layout_space_decode("{\"raw\":10,\"used\":1}", 19, &got), -EPROTO);
	cr_assert_eq(layout_space_decode("{\"raw\":10,\"used\":-1,\"usable\":1}", 31, &got),
		     -EPROTO);
	cr_assert_eq(layout_space_decode("{\"raw\":10,\"used\":11,\"usable\":1}", 31, &got),
		     -EPROTO);
	cr_assert_eq(layout_space_decode("{\"raw\":10,\"used\":1,\"usable\":11}", 31, &got),
		     -EPROTO);
}

/* ---- volumes ---- */

Test(layout, volume_and_owner_keys)
{
	char key[160], id[LAYOUT_ID_MAX + 1];
	enum layout_kind kind;

	cr_assert_eq(layout_key(key, sizeof(key), P, LAYOUT_VOLUME, "vm0"), 0);
	cr_assert_str_eq(key, P "volumes/vm0");
	cr_assert_eq(layout_key_parse(P, key, strlen(key), &kind, id), 0);
	cr_assert_eq(kind, LAYOUT_VOLUME);
	cr_assert_str_eq(id, "vm0");
	cr_assert_eq(layout_key(key, sizeof(key), P, LAYOUT_OWNER, "vm0"), 0);
	cr_assert_str_eq(key, P "owners/vm0");
	cr_assert_eq(layout_key_parse(P, key, strlen(key), &kind, id), 0);
	cr_assert_eq(kind, LAYOUT_OWNER);
	/* a segment record is not a volume's key: the map skips it */
	cr_assert_eq(layout_key_parse(P, P "segments/vm0/0000000000000001.00000002",
				      strlen(P "segments/vm0/0000000000000001.00000002"), &kind, id),
		     -ENOENT);
}

Test(layout, min_replicas)
{
	cr_assert_eq(layout_min_replicas(1), 1);
	cr_assert_eq(layout_min_replicas(2), 2);
	cr_assert_eq(layout_min_replicas(3), 2);
	cr_assert_eq(layout_min_replicas(5), 4);
}

static struct layout_volume sample_volume(void)
{
	struct layout_volume v = { .size = 1ull << 40, .sector_size = 4096, .replicas = 3,
				   .min_replicas = 2, .epoch = 7, .created = 1796459816,
				   .state = LAYOUT_VOL_READY };

	strcpy(v.name, "vm-0.disk_1");
	strcpy(v.owner, "n2");
	return v;
}

Test(layout, volume_record_round_trips)
{
	struct layout_volume v = sample_volume(), back;
	char *text = layout_volume_encode(&v);

	cr_assert_not_null(text);
	cr_assert_eq(layout_volume_decode(text, strlen(text), &back), 0, "%s", text);
	cr_assert_eq(memcmp(&v, &back, sizeof(v)), 0);
	free(text);
	v.state = LAYOUT_VOL_CREATING;
	text = layout_volume_encode(&v);
	cr_assert_not_null(strstr(text, "\"state\":\"creating\""), "%s", text);
	cr_assert_eq(layout_volume_decode(text, strlen(text), &back), 0);
	cr_assert_eq(back.state, LAYOUT_VOL_CREATING);
	free(text);
}

/* A clone's record names its base (docs/cluster.md, "Clones across owners"); a record
 * without one has none, and says nothing of it. */
Test(layout, volume_record_base_round_trips)
{
	struct layout_volume v = sample_volume(), back;
	char *text = layout_volume_encode(&v);

	cr_assert_null(strstr(text, "base"), "no base, no key: %s", text);
	free(text);
	v.base = (struct layout_base){ .volume = "vm0", .snap = "golden",
				       .family = 0x7fffffffffffffffull, .layer = 325557159625344992ull };
	text = layout_volume_encode(&v);
	cr_assert_not_null(strstr(text, "\"base\":{\"volume\":\"vm0\",\"snap\":\"golden\","
				    "\"family\":9223372036854775807,"
				    "\"layer\":325557159625344992}"), "%s", text);
	cr_assert_eq(layout_volume_decode(text, strlen(text), &back), 0, "%s", text);
	cr_assert_eq(memcmp(&v, &back, sizeof(v)), 0);
	free(text);
}

Test(layout, bad_volume_bases_are_refused)
{
#define BREC(base) \
	"{\"name\":\"v\",\"size\":4096,\"sector_size\":512,\"replicas\":3," \
	"\"min_replicas\":2,\"owner\":\"n0\",\"epoch\":1,\"created\":0," \
	"\"state\":\"ready\",\"base\":" base "}"
	static const char *const bad[] = {
		BREC("\"vm0@s\""),                                               /* not an object */
		BREC("{\"volume\":\"vm0\",\"snap\":\"s\",\"family\":1}"),             /* no layer */
		BREC("{\"volume\":\"vm0\",\"snap\":\"s\",\"family\":0,\"layer\":1}"), /* no family */
		BREC("{\"volume\":\"vm0\",\"snap\":\"s\",\"family\":1,\"layer\":-1}"),
		BREC("{\"volume\":\"\",\"snap\":\"s\",\"family\":1,\"layer\":1}"),  /* no volume */
		BREC("{\"volume\":\"vm0\",\"snap\":\"a/b\",\"family\":1,\"layer\":1}"),
	};
	const char *good = BREC("{\"volume\":\"vm0\",\"snap\":\"s\",\"family\":1,\"layer\":2}");
	struct layout_volume back;

	cr_assert_eq(layout_volume_decode(good, strlen(good), &back), 0);
	cr_assert_str_eq(back.base.volume, "vm0");
	cr_assert_str_eq(back.base.snap, "s");
	cr_assert_eq(back.base.family, 1);
	cr_assert_eq(back.base.layer, 2);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(layout_volume_decode(bad[i], strlen(bad[i]), &back), -EPROTO, "%s",
			     bad[i]);
#undef BREC
}

Test(layout, bad_volume_records_are_refused)
{
#define VREC(repl, minr, epoch, state, name) \
	"{\"name\":\"" name "\",\"size\":4096,\"sector_size\":512,\"replicas\":" #repl \
	",\"min_replicas\":" #minr ",\"owner\":\"n0\",\"epoch\":" #epoch ",\"created\":0," \
	"\"state\":\"" state "\"}"
	static const char *const bad[] = {
		VREC(0, 0, 1, "ready", "v"),   /* no copies */
		VREC(17, 2, 1, "ready", "v"),  /* past LAYOUT_MAX_REPLICAS */
		VREC(2, 3, 1, "ready", "v"),   /* min above R */
		VREC(3, 2, 0, "ready", "v"),   /* epochs start at 1 */
		VREC(3, 2, 1, "gone", "v"),    /* unknown state */
		VREC(3, 2, 1, "ready", "a/b"), /* not a name */
		"{}", "[]",
	};
	const char *good = VREC(3, 2, 1, "ready", "v");
	struct layout_volume back;

	cr_assert_eq(layout_volume_decode(good, strlen(good), &back), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(layout_volume_decode(bad[i], strlen(bad[i]), &back), -EPROTO, "%s",
			     bad[i]);
#undef VREC
}

Test(layout, ec_codes_parse_within_the_codec_bounds)
{
	static const char *const bad[] = { "", "2", "2+", "+1", "0+1", "2+0", "17+1", "2+5",
					   "17+3", "16+5", "2+1 ", " 2+1", "2 +1", "2+-1",
					   "2+1+1", "002+1", "2x1", "a+b" };
	uint32_t k = 0, m = 0;

	cr_assert_eq(layout_ec_parse("2+1", &k, &m), 0);
	cr_assert(k == 2 && m == 1);
	cr_assert_eq(layout_ec_parse("16+4", &k, &m), 0);
	cr_assert(k == 16 && m == 4);
	cr_assert_eq(layout_ec_parse("8+3", &k, &m), 0);
	cr_assert(k == 8 && m == 3);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(layout_ec_parse(bad[i], &k, &m), -EINVAL, "'%s'", bad[i]);
}

/* An EC volume's record says its code; the open segment's copies are M+1, all of them
 * needed (docs/erasure-coding.md). A replicated volume's record says nothing of it. */
Test(layout, volume_record_ec_round_trips)
{
	struct layout_volume v = sample_volume(), back;
	char *text = layout_volume_encode(&v);

	cr_assert_null(strstr(text, "\"ec\""), "replicated: no ec key: %s", text);
	free(text);
	v.ec_k = 4;
	v.ec_m = 2;
	v.replicas = v.min_replicas = 3;
	text = layout_volume_encode(&v);
	cr_assert_not_null(strstr(text, "\"ec\":\"4+2\""), "%s", text);
	cr_assert_eq(layout_volume_decode(text, strlen(text), &back), 0, "%s", text);
	cr_assert_eq(memcmp(&v, &back, sizeof(v)), 0);
	free(text);
}

Test(layout, bad_ec_volume_records_are_refused)
{
#define EREC(repl, minr, ec) \
	"{\"name\":\"v\",\"size\":4096,\"sector_size\":512,\"replicas\":" #repl \
	",\"min_replicas\":" #minr ",\"owner\":\"n0\",\"epoch\":1,\"created\":0," \
	"\"state\":\"ready\",\"ec\":" ec "}"
	static const char *const bad[] = {
		EREC(3, 3, "\"2+1\""), /* 2+1 has 2 copies of its open segment */
		EREC(2, 1, "\"2+1\""), /* ... and needs both */
		EREC(2, 2, "\"2+0\""), /* not a code */
		EREC(2, 2, "21"),        /* not a string */
	};
	const char *good = EREC(2, 2, "\"2+1\"");
	struct layout_volume back;

	cr_assert_eq(layout_volume_decode(good, strlen(good), &back), 0);
	cr_assert(back.ec_k == 2 && back.ec_m == 1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(layout_volume_decode(bad[i], strlen(bad[i]), &back), -EPROTO, "%s",
			     bad[i]);
#undef EREC
}

Test(layout, claims_encode_to_fixed_bytes)
{
	struct layout_claim c = { .node = "n1", .epoch = 42 }, back;
	char *text = layout_claim_encode(&c);

	/* the fence compares these exact bytes: they must never change */
	cr_assert_str_eq(text, "{\"node\":\"n1\",\"epoch\":42}");
	cr_assert_eq(layout_claim_decode(text, strlen(text), &back), 0);
	cr_assert_str_eq(back.node, "n1");
	cr_assert_eq(back.epoch, 42);
	free(text);
	strcpy(c.node, "a\"b");
	cr_assert_null(layout_claim_encode(&c)); /* no id can break out of the string */
	cr_assert_eq(layout_claim_decode("{\"node\":\"n1\",\"epoch\":0}", 24, &back), -EPROTO);
}

Test(layout, segment_records_round_trip)
{
	struct layout_segment s = { .state = LAYOUT_SEG_SEALED, .length = 1u << 30, .epoch = 3,
				    .nholders = 3 }, back;
	char *text;

	strcpy(s.holders[0], "n0");
	strcpy(s.holders[1], "n1");
	strcpy(s.holders[2], "n2");
	text = layout_segment_encode(&s);
	cr_assert_not_null(text);
	cr_assert_eq(layout_segment_decode(text, strlen(text), &back), 0, "%s", text);
	cr_assert_eq(memcmp(&s, &back, sizeof(s)), 0);
	free(text);
	text = "{\"holders\":[\"n0\",\"x/y\"],\"state\":\"open\",\"length\":0,\"epoch\":1}";
	cr_assert_eq(layout_segment_decode(text, strlen(text), &back), -EPROTO);
	text = "{\"holders\":[],\"state\":\"half\",\"length\":0,\"epoch\":1}";
	cr_assert_eq(layout_segment_decode(text, strlen(text), &back), -EPROTO);
}

/* An encoded segment's record: its stripe round-trips, the replicas' holders emptied
 * (docs/erasure-coding.md: one write adds the stripe and empties the holders). */
Test(layout, a_stripe_round_trips_in_a_sealed_record)
{
	struct layout_segment s = { .state = LAYOUT_SEG_SEALED, .length = 3u << 20, .epoch = 7,
				    .stripe = { .k = 2, .m = 1,
						.crcs = { 0, 0xffffffffu, 0x12345678u } } },
			      back;
	char *text;

	strcpy(s.stripe.frags[0], "n0");
	strcpy(s.stripe.frags[1], "n1");
	strcpy(s.stripe.frags[2], "n3");
	text = layout_segment_encode(&s);
	cr_assert_not_null(text);
	cr_assert_not_null(strstr(text, "\"stripe\":{\"k\":2,\"m\":1,\"frags\":[[\"n0\",0],"
					"[\"n1\",4294967295],[\"n3\",305419896]]}"), "%s", text);
	cr_assert_eq(layout_segment_decode(text, strlen(text), &back), 0, "%s", text);
	cr_assert_eq(memcmp(&s, &back, sizeof(s)), 0);
	free(text);
}

Test(layout, a_stripe_that_does_not_hold_is_refused)
{
	static const char *const bad[] = {
		/* k out of bounds, m out of bounds, k+m past 20 */
		"\"stripe\":{\"k\":0,\"m\":1,\"frags\":[[\"n0\",1]]}",
		"\"stripe\":{\"k\":1,\"m\":5,\"frags\":[]}",
		"\"stripe\":{\"k\":16,\"m\":4,\"frags\":[]}",
		/* not k+m fragments */
		"\"stripe\":{\"k\":2,\"m\":1,\"frags\":[[\"n0\",1],[\"n1\",2]]}",
		/* a node id that is none, a CRC out of 32 bits, a fragment not a pair */
		"\"stripe\":{\"k\":1,\"m\":1,\"frags\":[[\"n/0\",1],[\"n1\",2]]}",
		"\"stripe\":{\"k\":1,\"m\":1,\"frags\":[[\"n0\",-1],[\"n1\",2]]}",
		"\"stripe\":{\"k\":1,\"m\":1,\"frags\":[[\"n0\",4294967296],[\"n1\",2]]}",
		"\"stripe\":{\"k\":1,\"m\":1,\"frags\":[[\"n0\"],[\"n1\",2]]}",
		"\"stripe\":{\"k\":1,\"m\":1,\"frags\":[\"n0\",\"n1\"]}",
		"\"stripe\":[1,1]",
	};
	struct layout_segment back;
	char text[512];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "{\"holders\":[],\"state\":\"sealed\",\"length\":4096,"
			 "\"epoch\":1,%s}", bad[i]);
		cr_assert_eq(layout_segment_decode(text, strlen(text), &back), -EPROTO, "%s", text);
	}
	/* only a sealed segment is encoded */
	snprintf(text, sizeof(text), "{\"holders\":[],\"state\":\"open\",\"length\":0,"
		 "\"epoch\":1,\"stripe\":{\"k\":1,\"m\":1,\"frags\":[[\"n0\",1],[\"n1\",2]]}}");
	cr_assert_eq(layout_segment_decode(text, strlen(text), &back), -EPROTO, "%s", text);
	snprintf(text, sizeof(text), "{\"holders\":[],\"state\":\"sealed\",\"length\":4096,"
		 "\"epoch\":1,\"stripe\":{\"k\":1,\"m\":1,\"frags\":[[\"n0\",1],[\"n1\",2]]}}");
	cr_assert_eq(layout_segment_decode(text, strlen(text), &back), 0, "%s", text);
	cr_assert_eq(back.stripe.k, 1);
	cr_assert_str_eq(back.stripe.frags[1], "n1");
	cr_assert_eq(back.stripe.crcs[1], 2);
}

Test(layout, segment_keys_sort_by_family_then_number)
{
	struct layout_segid a = { 0x1f, 0xffffffffu }, b = { 0x20, 0 }, back;
	char ka[160], kb[160], dir[160];

	cr_assert_eq(layout_segment_key(ka, sizeof(ka), P, "vm0", &a), 0);
	cr_assert_str_eq(ka, P "segments/vm0/000000000000001f.ffffffff");
	cr_assert_eq(layout_segment_key(kb, sizeof(kb), P, "vm0", &b), 0);
	cr_assert_lt(strcmp(ka, kb), 0);
	cr_assert_eq(layout_segment_dir(dir, sizeof(dir), P, "vm0"), 0);
	cr_assert_eq(strncmp(ka, dir, strlen(dir)), 0);
	cr_assert_eq(layout_segment_key_parse(P, "vm0", ka, strlen(ka), &back), 0);
	cr_assert(back.family == a.family && back.seq == a.seq);
	/* another volume's, a bad tail, a short one */
	cr_assert_eq(layout_segment_key_parse(P, "vm1", ka, strlen(ka), &back), -ENOENT);
	cr_assert_eq(layout_segment_key_parse(P, "vm0", P "segments/vm0/000000000000001f.fffffff.",
					      strlen(P "segments/vm0/000000000000001f.fffffff."),
					      &back), -ENOENT);
	cr_assert_eq(layout_segment_key_parse(P, "vm0", P "segments/vm0/1f.2",
					      strlen(P "segments/vm0/1f.2"), &back), -ENOENT);
	cr_assert_eq(layout_segment_key(ka, sizeof(ka), P, "a/b", &a), -EINVAL);
}

Test(layout, a_segment_names_its_holders)
{
	struct layout_segment s = { .nholders = 2 };

	strcpy(s.holders[0], "n0");
	strcpy(s.holders[1], "n1");
	strcpy(s.holders[2], "n2"); /* past nholders: not a holder */
	cr_assert(layout_segment_names(&s, "n0"));
	cr_assert(layout_segment_names(&s, "n1"));
	cr_assert_not(layout_segment_names(&s, "n2"));
	cr_assert_not(layout_segment_names(&s, "n"));
}

Test(layout, a_copy_being_made_is_recorded_apart_from_the_holders)
{
	struct layout_segment s = { .state = LAYOUT_SEG_SEALED, .length = 4096, .epoch = 2,
				    .nholders = 2, .ncopying = 1 }, back;
	const char *old = "{\"holders\":[\"n0\"],\"state\":\"sealed\",\"length\":4096,\"epoch\":1}";
	char *text;

	strcpy(s.holders[0], "n0");
	strcpy(s.holders[1], "n1");
	strcpy(s.copying[0], "n2");
	text = layout_segment_encode(&s);
	cr_assert_not_null(text);
	cr_assert_not_null(strstr(text, "\"copying\":[\"n2\"]"), "%s", text);
	cr_assert_eq(layout_segment_decode(text, strlen(text), &back), 0, "%s", text);
	cr_assert_eq(memcmp(&s, &back, sizeof(s)), 0);
	free(text);
	/* never a full member, but named as a copy */
	cr_assert_not(layout_segment_names(&back, "n2"));
	cr_assert(layout_segment_copying(&back, "n2"));
	cr_assert_not(layout_segment_copying(&back, "n1"));
	/* none: the field is left out, and a record without it decodes (older owners) */
	s.ncopying = 0;
	text = layout_segment_encode(&s);
	cr_assert_null(strstr(text, "copying"), "%s", text);
	free(text);
	cr_assert_eq(layout_segment_decode(old, strlen(old), &back), 0);
	cr_assert_eq(back.ncopying, 0);
	old = "{\"holders\":[\"n0\"],\"copying\":[\"x/y\"],\"state\":\"sealed\",\"length\":1,\"epoch\":1}";
	cr_assert_eq(layout_segment_decode(old, strlen(old), &back), -EPROTO);
	old = "{\"holders\":[\"n0\"],\"copying\":\"n1\",\"state\":\"sealed\",\"length\":1,\"epoch\":1}";
	cr_assert_eq(layout_segment_decode(old, strlen(old), &back), -EPROTO);
}

/* A node's own layers of a volume are current only if the claim it just made
 * replaced its own previous one, the epoch right before (or is the one it holds). */
Test(layout, local_layers_are_current_only_under_unbroken_ownership)
{
	struct layout_claim mine = { .node = "n1", .epoch = 6 };
	struct layout_claim other = { .node = "n2", .epoch = 6 };
	struct layout_claim none = { .node = "", .epoch = 0 };

	cr_assert(layout_local_current("n1", &mine, 7)); /* n1 at 6, again at 7 */
	cr_assert(layout_local_current("n1", &mine, 6)); /* the claim n1 holds */
	cr_assert_not(layout_local_current("n1", &other, 7)); /* n2 owned it at 6 */
	cr_assert_not(layout_local_current("n2", &mine, 7));
	cr_assert_not(layout_local_current("n1", &mine, 8)); /* someone's claim at 7 between */
	cr_assert_not(layout_local_current("n1", &mine, 5)); /* an older claim */
	cr_assert_not(layout_local_current("n1", &none, 1));
	cr_assert_not(layout_local_current("", &none, 1));
	cr_assert_not(layout_local_current(NULL, &mine, 7));
	strcpy(mine.node, "n10"); /* a prefix of another id is another node */
	cr_assert_not(layout_local_current("n1", &mine, 7));
}

/* A node that lost a family keeps as copies the segments its records name it a
 * holder of: sealed ones at their recorded length (in blocks), open ones where they
 * end; none of another holder set. */
Test(layout, a_lost_family_keeps_its_recorded_segments)
{
	struct layout_segment segs[4] = {
		{ .id = { 7, 0 }, .state = LAYOUT_SEG_SEALED, .length = 27 * 4096, .nholders = 2,
		  .holders = { "n1", "n2" } },
		{ .id = { 7, 1 }, .state = LAYOUT_SEG_SEALED, .length = 256 * 4096, .nholders = 2,
		  .holders = { "n2", "n3" } },
		{ .id = { 7, 2 }, .state = LAYOUT_SEG_SEALED, .length = 0, .nholders = 1,
		  .holders = { "n1" } },
		{ .id = { 7, 3 }, .state = LAYOUT_SEG_OPEN, .nholders = 3,
		  .holders = { "n3", "n2", "n1" } },
	};
	uint32_t keep[4], len[4];

	cr_assert_eq(layout_segments_kept(segs, 4, "n1", 4096, keep, len), 3);
	cr_assert_eq(keep[0], 0);
	cr_assert_eq(len[0], 27);
	cr_assert_eq(keep[1], 2);
	cr_assert_eq(len[1], 0);
	cr_assert_eq(keep[2], 3);
	cr_assert_eq(len[2], UINT32_MAX);
	cr_assert_eq(layout_segments_kept(segs, 4, "n4", 4096, keep, len), 0);
	cr_assert_eq(layout_segments_kept(segs, 4, "n3", 4096, keep, len), 2);
	cr_assert_eq(keep[0], 1);
	cr_assert_eq(len[0], 256);
}
