/* tools/quill/scrub.c — quill scrub [VOL]: a scrub pass now (docs/replication.md,
 * "Scrub"), and the scrub lines of quill status and cluster status. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tools/control_proto.h"
#include "tools/quill/cli.h"

static const char *when(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!t || !gmtime_r(&tt, &tm))
		snprintf(buf, len, "-");
	else
		strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
	return buf;
}

/* "vm0: 12 segments, 36 copies checked (96.0 MiB): 2 bad blocks in 2 copies, 2 fixed" */
static void show_brief(struct json_object *r)
{
	printf("%s: %s%lld segments, %lld copies checked (%s in %.1f s)", cli_str(r, "volume"),
	       cli_bool(r, "running") ? "RUNNING, so far " : "",
	       (long long)cli_i64(r, "segments"), (long long)cli_i64(r, "copies_checked"),
	       cli_size((uint64_t)cli_i64(r, "bytes_checked"), 0),
	       (double)cli_i64(r, "elapsed_ms") / 1000.0);
	if (cli_i64(r, "copies_not_checked"))
		printf(", %lld NOT checked", (long long)cli_i64(r, "copies_not_checked"));
	if (cli_i64(r, "stripes"))
		printf(", %lld stripes: %lld fragments checked", (long long)cli_i64(r, "stripes"),
		       (long long)cli_i64(r, "fragments_checked"));
	if (cli_i64(r, "fragments_not_checked"))
		printf(", %lld NOT checked", (long long)cli_i64(r, "fragments_not_checked"));
	if (cli_i64(r, "segments_skipped"))
		printf(", %lld segments skipped (no whole local copy)",
		       (long long)cli_i64(r, "segments_skipped"));
	printf(": %lld bad blocks in %lld copies, %lld blocks fixed",
	       (long long)cli_i64(r, "bad_blocks"), (long long)cli_i64(r, "bad_copies"),
	       (long long)cli_i64(r, "fixed_blocks"));
	if (cli_i64(r, "bad_copies")) /* found/fixed per kind */
		printf(" (replica %lld/%lld, fragment %lld/%lld, parity %lld/%lld found/fixed)",
		       (long long)cli_i64(r, "found_replica"), (long long)cli_i64(r, "fixed_replica"),
		       (long long)cli_i64(r, "found_fragment"),
		       (long long)cli_i64(r, "fixed_fragment"),
		       (long long)cli_i64(r, "found_parity"), (long long)cli_i64(r, "fixed_parity"));
	printf("%s%s\n", *cli_str(r, "error") ? "; stopped: " : "", cli_str(r, "error"));
}

static void show_finding(struct json_object *f)
{
	struct json_object *b = json_object_object_get(f, "first_bad_blocks");
	size_t n = b ? json_object_array_length(b) : 0;

	printf("  segment %08llx node %s%s", (long long)cli_i64(f, "segment"), cli_str(f, "node"),
	       cli_bool(f, "owner") ? " (owner)" : "");
	if (cli_i64(f, "fragment") >= 0)
		printf(" fragment %lld", (long long)cli_i64(f, "fragment"));
	printf(" [%s]: %lld bad blocks", cli_str(f, "kind"), (long long)cli_i64(f, "bad_blocks"));
	for (size_t i = 0; i < n; i++)
		printf("%s%lld", i ? "," : " (", (long long)json_object_get_int64(
							  json_object_array_get_idx(b, i)));
	printf("%s, %lld fixed: %s\n", n ? (n < (size_t)cli_i64(f, "bad_blocks") ? ",...)" : ")")
					 : "", (long long)cli_i64(f, "fixed_blocks"),
	       cli_str(f, "action"));
}

static void show_scrub(struct json_object *ans)
{
	struct json_object *arr = json_object_object_get(ans, "scrub");
	size_t n = arr ? json_object_array_length(arr) : 0;

	for (size_t i = 0; i < n; i++) {
		struct json_object *r = json_object_array_get_idx(arr, i);
		struct json_object *f = json_object_object_get(r, "findings");
		char buf[40];

		show_brief(r);
		printf("  from %s to %s\n", when(cli_i64(r, "started"), buf, sizeof(buf)),
		       when(cli_i64(r, "ended"), (char[40]){ 0 }, 40));
		for (size_t k = 0; f && k < json_object_array_length(f); k++)
			show_finding(json_object_array_get_idx(f, k));
	}
}

void cli_show_scrub_status(struct json_object *s)
{
	struct json_object *arr = s ? json_object_object_get(s, "last_passes") : NULL;

	if (!s)
		return;
	if (cli_i64(s, "background_mbps"))
		printf("scrub:     background at %lld MB/s, a round every %lld s\n",
		       (long long)cli_i64(s, "background_mbps"), (long long)cli_i64(s, "interval_s"));
	else
		printf("scrub:     no background scrub (--scrub-mbps 0); quill scrub on demand\n");
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		struct json_object *r = json_object_array_get_idx(arr, i);
		char buf[40];

		printf("  last pass %s, ", when(cli_i64(r, "started"), buf, sizeof(buf)));
		show_brief(r);
		printf("    since start-up: %lld passes, %lld bad blocks found, %lld fixed\n",
		       (long long)cli_i64(r, "passes_since_start"),
		       (long long)cli_i64(r, "bad_blocks_since_start"),
		       (long long)cli_i64(r, "fixed_blocks_since_start"));
	}
}

int cmd_scrub(const struct cli *c)
{
	struct json_object *req = cli_request(CONTROL_CMD_VOLUME_SCRUB);

	if (c->argc == 2)
		cli_add_str(req, "name", c->argv[1]);
	return cli_finish(c, cli_call(c, req), show_scrub);
}
