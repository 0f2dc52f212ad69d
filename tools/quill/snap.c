/* tools/quill/snap.c — snap create|ls|rm|rollback, clone, flatten (with progress)
 * and diff.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/volspec.h"
#include "tools/control_proto.h"
#include "tools/quill/cli.h"

#define FLATTEN_POLL_MS 200
#define BAR_WIDTH 40

/* A VOL@SNAP argument, or a usage message. */
static bool is_snap_spec(const char *s)
{
	char vol[VOLSPEC_NAME_MAX + 1], snap[VOLSPEC_NAME_MAX + 1];

	if (volspec_parse(s, vol, snap) == 0 && snap[0])
		return true;
	fprintf(stderr, "quill: '%s' is not a snapshot: write VOL@SNAP (names of at most %u "
		"characters)\n", s, VOLSPEC_NAME_MAX);
	return false;
}

static void show_snap_created(struct json_object *ans)
{
	struct json_object *s = json_object_object_get(ans, "snapshot");

	if (s)
		printf("snapshot %s created (%s)\n", cli_str(s, "spec"),
		       cli_size((uint64_t)cli_i64(s, "size"), 0));
}

static void show_snaps(struct json_object *ans)
{
	struct json_object *arr = json_object_object_get(ans, "snapshots");
	size_t n = arr ? json_object_array_length(arr) : 0;
	char when[32];

	if (n == 0) {
		printf("no snapshots (take one: quill snap create VOL@SNAP)\n");
		return;
	}
	printf("%-24s %12s %12s %10s  %-8s  %s\n", "NAME", "SIZE", "OWN", "DEPENDENTS",
	       "ATTACHED", "CREATED");
	for (size_t i = 0; i < n; i++) {
		struct json_object *s = json_object_array_get_idx(arr, i);
		time_t t = (time_t)(cli_i64(s, "created_ns") / 1000000000);

		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", gmtime(&t));
		printf("%-24s %12s %12s %10lld  %-8s  %s\n", cli_str(s, "name"),
		       cli_size((uint64_t)cli_i64(s, "size"), 0),
		       cli_size((uint64_t)cli_i64(s, "own_bytes"), 1),
		       (long long)cli_i64(s, "dependents"), cli_bool(s, "attached") ? "yes" : "no",
		       when);
	}
}

static void show_rolled_back(struct json_object *ans)
{
	struct json_object *v = json_object_object_get(ans, "volume");

	if (v)
		printf("volume %s rolled back (%s)\n", cli_str(v, "name"),
		       cli_size((uint64_t)cli_i64(v, "size"), 0));
}

/* A request naming one snapshot: {"cmd", "snap": spec} */
static struct json_object *snap_request(const char *cmd, const char *spec)
{
	struct json_object *req = cli_request(cmd);

	cli_add_str(req, "snap", spec);
	return req;
}

int cmd_snap(const struct cli *c)
{
	const char *verb = c->argv[1], *arg = c->argc > 2 ? c->argv[2] : NULL;
	struct json_object *req;

	if (!arg)
		return cli_usage(stderr, EXIT_USAGE);
	if (strcmp(verb, "ls") == 0 || strcmp(verb, "list") == 0) {
		req = cli_request(CONTROL_CMD_SNAP_LIST);
		cli_add_str(req, "name", arg);
		return cli_finish(c, cli_call(c, req), show_snaps);
	}
	if (strcmp(verb, "create") != 0 && strcmp(verb, "rm") != 0 &&
	    strcmp(verb, "rollback") != 0)
		return cli_usage(stderr, EXIT_USAGE);
	if (!is_snap_spec(arg))
		return EXIT_USAGE;
	if (strcmp(verb, "create") == 0)
		return cli_finish(c, cli_call(c, snap_request(CONTROL_CMD_SNAP_CREATE, arg)),
				  show_snap_created);
	if (strcmp(verb, "rm") == 0)
		return cli_finish(c, cli_call(c, snap_request(CONTROL_CMD_SNAP_RM, arg)), NULL);
	req = snap_request(CONTROL_CMD_SNAP_ROLLBACK, arg);
	if (c->force)
		json_object_object_add(req, "force", json_object_new_boolean(1));
	return cli_finish(c, cli_call(c, req), show_rolled_back);
}

static void show_clone(struct json_object *ans)
{
	struct json_object *v = json_object_object_get(ans, "volume");

	if (v)
		printf("volume %s created, reading through %s\n", cli_str(v, "name"),
		       cli_str(v, "parent"));
}

int cmd_clone(const struct cli *c)
{
	struct json_object *req;

	if (!is_snap_spec(c->argv[1]))
		return EXIT_USAGE;
	req = snap_request(CONTROL_CMD_CLONE, c->argv[1]);
	if (cli_add_replicas(c, req) < 0) {
		json_object_put(req);
		return EXIT_USAGE;
	}
	cli_add_str(req, "name", c->argv[2]);
	return cli_finish(c, cli_call(c, req), show_clone);
}

/* ---- flatten ---- */

static struct json_object *flatten_call(const struct cli *c, const char *cmd)
{
	struct json_object *req = cli_request(cmd);

	cli_add_str(req, "name", c->argv[1]);
	return cli_call(c, req);
}

static unsigned percent(struct json_object *st)
{
	int64_t total = cli_i64(st, "total_blocks"), done = cli_i64(st, "done_blocks");

	if (total <= 0)
		return cli_bool(st, "running") ? 0 : 100;
	return (unsigned)(done * 100 / total);
}

/* Draws the progress of a flatten: a bar on a terminal, a line per change otherwise. */
static void draw_progress(const char *vol, struct json_object *st, bool tty, int *last)
{
	unsigned pct = percent(st);
	char bar[BAR_WIDTH + 1];

	if (!tty) {
		if ((int)pct != *last)
			printf("flatten %s: %u%%\n", vol, pct);
		*last = (int)pct;
		fflush(stdout);
		return;
	}
	cli_bar(bar, BAR_WIDTH, pct);
	printf("\rflatten %s [%s] %3u%%  %s copied", vol, bar, pct,
	       cli_size((uint64_t)cli_i64(st, "copied_bytes"), 0));
	fflush(stdout);
}

/* The flatten's end: 0, or why it failed. ans is consumed. */
static int flatten_result(const struct cli *c, struct json_object *ans, bool tty)
{
	struct json_object *st = json_object_object_get(ans, "flatten");
	int code = 0;

	if (tty && !c->json)
		printf("\n");
	if (cli_i64(st, "result")) {
		fprintf(stderr, "quill: flatten of %s failed: %s\n", c->argv[1],
			cli_str(st, "error"));
		code = EXIT_REFUSED;
	} else if (!c->json) {
		printf("volume %s flattened: %s copied, no parent any more\n", c->argv[1],
		       cli_size((uint64_t)cli_i64(st, "copied_bytes"), 0));
	}
	if (c->json)
		printf("%s\n", json_object_to_json_string_ext(ans, JSON_C_TO_STRING_PRETTY));
	json_object_put(ans);
	return code;
}

int cmd_flatten(const struct cli *c)
{
	struct json_object *ans = flatten_call(c, CONTROL_CMD_FLATTEN);
	bool tty = isatty(STDOUT_FILENO);
	int last = -1;

	if (c->no_wait || !ans || !cli_bool(ans, "ok"))
		return cli_finish(c, ans, NULL);
	for (;;) {
		struct json_object *st = json_object_object_get(ans, "flatten");

		if (!cli_bool(st, "running"))
			return flatten_result(c, ans, tty);
		if (!c->json)
			draw_progress(c->argv[1], st, tty, &last);
		json_object_put(ans);
		cli_sleep_ms(FLATTEN_POLL_MS);
		ans = flatten_call(c, CONTROL_CMD_FLATTEN_STATUS);
		if (!ans || !cli_bool(ans, "ok"))
			return cli_finish(c, ans, NULL);
	}
}

/* ---- diff ---- */

static void show_diff(struct json_object *ans)
{
	struct json_object *arr = json_object_object_get(ans, "extents");
	size_t n = arr ? json_object_array_length(arr) : 0;
	uint64_t data = 0, zero = 0;

	if (n == 0) {
		printf("no differences\n");
		return;
	}
	printf("%-16s %-16s %10s  %s\n", "OFFSET", "LENGTH", "", "TYPE");
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		uint64_t len = (uint64_t)cli_i64(e, "length");
		bool is_data = strcmp(cli_str(e, "type"), "data") == 0;

		printf("%-16lld %-16llu %10s  %s\n", (long long)cli_i64(e, "offset"),
		       (unsigned long long)len, cli_size(len, 0), cli_str(e, "type"));
		*(is_data ? &data : &zero) += len;
	}
	printf("%zu extents: %s of data, %s reading as zeros\n", n, cli_size(data, 0),
	       cli_size(zero, 1));
}

int cmd_diff(const struct cli *c)
{
	const char *from = c->argc == 3 ? c->argv[1] : NULL, *to = c->argv[c->argc - 1];
	struct json_object *req = cli_request(CONTROL_CMD_DIFF), *ans;

	if (from && !is_snap_spec(from)) {
		json_object_put(req);
		return EXIT_USAGE;
	}
	if (from)
		cli_add_str(req, "from", from);
	cli_add_str(req, "to", to);
	ans = cli_call(c, req);
	if (c->json && ans && cli_bool(ans, "ok")) {
		/* just the extents: what an incremental backup script wants */
		printf("%s\n", json_object_to_json_string_ext(json_object_object_get(ans, "extents"),
							      JSON_C_TO_STRING_PRETTY));
		json_object_put(ans);
		return 0;
	}
	return cli_finish(c, ans, show_diff);
}
