/* tests/unit/tools/test_control_request.c — the control socket's strict request
 * checks (tools/quilld/control_request.c): duplicate keys, garbage, types. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tools/quilld/control_internal.h"

static char why[256];

static int check(const char *text)
{
	why[0] = '\0';
	return ctl_request_check(text, strlen(text), why, sizeof(why));
}

static void refused(const char *text, const char *reason)
{
	cr_assert_eq(check(text), -EINVAL, "accepted: %s", text);
	cr_assert_not_null(strstr(why, reason), "%s: reason '%s', expected '%s'", text, why,
			   reason);
}

Test(control_request, accepts_plain_requests)
{
	cr_assert_eq(check("{\"cmd\":\"volume.list\"}"), 0, "%s", why);
	cr_assert_eq(check(" { \"cmd\" : \"volume.create\", \"name\": \"a\", \"size\": 4096 } "),
		     0, "%s", why);
	cr_assert_eq(check("{\"a\":[1,-2.5e3,true,false,null,{\"b\":{}},[]],\"c\":\"\\u00e9\\n\"}"),
		     0, "%s", why);
	/* equal keys in different objects are not duplicates */
	cr_assert_eq(check("{\"x\":{\"k\":1},\"y\":{\"k\":2},\"k\":3}"), 0, "%s", why);
	cr_assert_eq(check("{}"), 0, "%s", why);
}

Test(control_request, refuses_the_issue_duplicate_cmd)
{
	refused("{\"cmd\":\"volume.list\",\"cmd\":\"volume.rm\",\"name\":\"s2\"}",
		"duplicate key \"cmd\"");
}

Test(control_request, refuses_duplicates_spelled_with_escapes)
{
	refused("{\"cmd\":\"volume.list\",\"c\\u006dd\":\"volume.rm\"}", "duplicate key \"cmd\"");
	refused("{\"name\":\"a\",\"n\\u0061me\":\"b\"}", "duplicate key \"name\"");
	refused("{\"\\u00e9\":1,\"\xc3\xa9\":2}", "duplicate key");
	refused("{\"\\ud83d\\ude00\":1,\"\xf0\x9f\x98\x80\":2}", "duplicate key");
}

Test(control_request, refuses_duplicates_in_nested_objects)
{
	refused("{\"cmd\":\"x\",\"o\":{\"a\":1,\"a\":2}}", "duplicate key \"a\"");
	refused("{\"cmd\":\"x\",\"o\":[{\"a\":1,\"b\":1,\"a\":2}]}", "duplicate key \"a\"");
}

Test(control_request, refuses_nul_that_json_c_would_cut_a_key_at)
{
	refused("{\"cmd\":\"volume.rm\",\"cmd\\u0000x\":\"volume.list\"}", "\\u0000");
	cr_assert_eq(ctl_request_check("{\"cmd\":\"a\0\"}", 11, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "NUL"));
}

Test(control_request, refuses_garbage_with_a_reason)
{
	refused("", "empty");
	refused("   ", "empty");
	refused("hello", "not a JSON object");
	refused("[1,2]", "not a JSON object");
	refused("\"cmd\"", "not a JSON object");
	refused("{\"cmd\":\"volume.li", "unterminated string");
	refused("{\"cmd\":\"volume.list\"", "truncated object");
	refused("{\"cmd\":", "truncated");
	refused("{\"cmd\" \"x\"}", "expected ':'");
	refused("{\"cmd\":\"x\",}", "expected a key");
	refused("{cmd:\"x\"}", "expected a key");
	refused("{\"cmd\":\"x\"} {}", "text after the object");
	refused("{\"a\":01}", "expected ',' or '}'");
	refused("{\"a\":1.}", "bad number");
	refused("{\"a\":-}", "bad number");
	refused("{\"a\":tru}", "not JSON");
	refused("{\"a\":\"\\x\"}", "bad escape");
	refused("{\"a\":\"\\u12\"}", "bad \\u escape");
	refused("{\"a\":\"\\ud800\"}", "lone high surrogate");
	refused("{\"a\":\"\\udc00\"}", "lone low surrogate");
	refused("{\"a\":\"tab\there\"}", "control character");
	refused("{\"a\":[1,2}", "expected ',' or ']'");
}

Test(control_request, bounds_depth_and_keys)
{
	char deep[64], many[2048];
	size_t off = 0;

	memset(deep, '[', sizeof(deep));
	memcpy(deep, "{\"a\":", 5);
	deep[sizeof(deep) - 1] = '\0';
	refused(deep, "nested deeper");

	off += (size_t)snprintf(many + off, sizeof(many) - off, "{");
	for (int i = 0; i < 65; i++)
		off += (size_t)snprintf(many + off, sizeof(many) - off, "%s\"k%d\":%d",
					i ? "," : "", i, i);
	snprintf(many + off, sizeof(many) - off, "}");
	refused(many, "more than 64 keys");
}

static struct json_object *cmd_none(struct control *ctl, struct json_object *req)
{
	(void)ctl;
	(void)req;
	return NULL;
}

static const struct control_cmd resize = {
	"volume.resize", cmd_none,
	{ CTL_KEY_NAME, { "size", CTL_UINT }, { "allow_shrink", CTL_BOOL } },
};

static int keys(const char *text)
{
	struct json_object *req = json_tokener_parse(text);
	int r;

	cr_assert_not_null(req, "%s", text);
	why[0] = '\0';
	r = ctl_request_check_keys(&resize, req, why, sizeof(why));
	json_object_put(req);
	return r;
}

Test(control_request, keys_are_those_the_command_declares)
{
	cr_assert_eq(keys("{\"cmd\":\"volume.resize\",\"name\":\"a\",\"size\":4096,"
			  "\"allow_shrink\":true}"), 0, "%s", why);
	cr_assert_eq(keys("{\"cmd\":\"volume.resize\"}"), 0, "absent keys are the handler's");
	cr_assert_eq(keys("{\"cmd\":\"volume.resize\",\"name\":\"a\",\"force\":true}"), -EINVAL);
	cr_assert_not_null(strstr(why, "no key \"force\""), "%s", why);
	cr_assert_not_null(strstr(why, "name, size, allow_shrink"), "%s", why);
}

Test(control_request, keys_have_their_types)
{
	cr_assert_eq(keys("{\"cmd\":\"volume.resize\",\"name\":5}"), -EINVAL);
	cr_assert_not_null(strstr(why, "\"name\" must be a string"), "%s", why);
	cr_assert_eq(keys("{\"cmd\":\"volume.resize\",\"size\":-4096}"), -EINVAL);
	cr_assert_not_null(strstr(why, "non-negative integer"), "%s", why);
	cr_assert_eq(keys("{\"cmd\":\"volume.resize\",\"size\":\"4096\"}"), -EINVAL);
	cr_assert_eq(keys("{\"cmd\":\"volume.resize\",\"size\":4096.0}"), -EINVAL);
	cr_assert_eq(keys("{\"cmd\":\"volume.resize\",\"allow_shrink\":1}"), -EINVAL);
	cr_assert_not_null(strstr(why, "true or false"), "%s", why);
}
