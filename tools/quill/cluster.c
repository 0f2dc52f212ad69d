/* tools/quill/cluster.c — cluster status, node ls|out|in, and volume claim|release|
 * segment (docs/cluster.md). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools/control_proto.h"
#include "tools/quill/cli.h"

static const char *or_dash(const char *s)
{
	return *s ? s : "-";
}

static void show_nodes(struct json_object *ans)
{
	struct json_object *nodes = json_object_object_get(ans, "nodes");
	size_t n = nodes ? json_object_array_length(nodes) : 0;

	if (n == 0) {
		printf("no nodes in the map yet\n");
		return;
	}
	printf("%-16s %-6s %-4s %-16s %-22s %-9s  %s\n", "NODE", "STATE", "OUT", "DOMAIN", "NBD",
	       "VERSIONS", "UP SINCE");
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(nodes, i);
		char since[32] = "-", vers[24];
		time_t t = (time_t)cli_i64(o, "up_since");
		struct tm tm;

		if (strcmp(cli_str(o, "state"), "up") == 0 && t && gmtime_r(&t, &tm))
			strftime(since, sizeof(since), "%Y-%m-%d %H:%M:%S", &tm);
		snprintf(vers, sizeof(vers), "%lld/%lld%s", (long long)cli_i64(o, "format_version"),
			 (long long)cli_i64(o, "protocol_version"),
			 cli_bool(o, "compatible") ? "" : "!");
		printf("%-16s %-6s %-4s %-16s %-22s %-9s  %s%s\n", cli_str(o, "id"),
		       cli_str(o, "state"), cli_bool(o, "out") ? "out" : "-",
		       cli_str(o, "failure_domain"), or_dash(cli_str(o, "nbd")), vers, since,
		       cli_bool(o, "self") ? "  (this node)" : "");
	}
}

/* "R3" for a replicated volume, "EC 2+1" for an erasure-coded one. */
static const char *policy_brief(struct json_object *c, char *buf, size_t len)
{
	if (cli_i64(c, "ec_k"))
		snprintf(buf, len, "EC %lld+%lld", (long long)cli_i64(c, "ec_k"),
			 (long long)cli_i64(c, "ec_m"));
	else
		snprintf(buf, len, "R%lld", (long long)cli_i64(c, "replicas"));
	return buf;
}

const char *cli_cluster_brief(struct json_object *v, char *buf, size_t len)
{
	struct json_object *c = json_object_object_get(v, "cluster");

	buf[0] = '\0';
	if (c)
		snprintf(buf, len, "  [%s owner %s epoch %lld%s%s]",
			 policy_brief(c, (char[32]){ 0 }, 32), or_dash(cli_str(c, "owner")),
			 (long long)cli_i64(c, "epoch"),
			 strcmp(cli_str(c, "state"), "ready") ? ", being created" : "",
			 cli_copies_brief(c, (char[200]){ 0 }, 200));
	return buf;
}

const char *cli_copies_brief(struct json_object *c, char *buf, size_t len)
{
	struct json_object *cp = c ? json_object_object_get(c, "copies") : NULL;

	buf[0] = '\0';
	if (!cp)
		return buf;
	if (cli_bool(cp, "waiting") || cli_bool(cp, "degraded"))
		snprintf(buf, len, ", %s (%lld of %lld copies: %s)",
			 cli_bool(cp, "waiting") ? "WAITING" : "DEGRADED",
			 (long long)cli_i64(cp, "current"), (long long)cli_i64(cp, "replicas"),
			 cli_str(cp, "why"));
	else
		snprintf(buf, len, ", %lld copies", (long long)cli_i64(cp, "current"));
	return buf;
}

void cli_show_policy(struct json_object *c)
{
	if (!c || !*cli_str(c, "policy"))
		return;
	printf("policy:    %s\n", cli_str(c, "policy"));
	if (*cli_str(c, "sealed_segments"))
		printf("sealed segments: %s\n", cli_str(c, "sealed_segments"));
	if (cli_i64(c, "frag_runs"))
		printf("reads from fragments: %lld runs, %lld requests, %lld degraded, %lld "
		       "decoded, %lld failed\n", (long long)cli_i64(c, "frag_runs"),
		       (long long)cli_i64(c, "frag_requests"), (long long)cli_i64(c, "frag_degraded"),
		       (long long)cli_i64(c, "frag_decodes"), (long long)cli_i64(c, "frag_failed"));
}

void cli_show_base(struct json_object *c)
{
	const char *base = c ? cli_str(c, "base") : "";
	const char *owner = c ? cli_str(c, "base_owner") : "";

	if (base[0])
		printf("base:      %s (remote, %s%s)\n", base, owner[0] ? "owner " : "no owner now",
		       owner);
}

void cli_show_copies(struct json_object *c)
{
	struct json_object *cp = c ? json_object_object_get(c, "copies") : NULL;
	struct json_object *segs = cp ? json_object_object_get(cp, "open_segments") : NULL;
	struct json_object *cu = cp ? json_object_object_get(cp, "catchup") : NULL;
	size_t n = segs ? json_object_array_length(segs) : 0;

	if (cu)
		printf("catch-up:  %lld segments below R (%lld bytes to copy, %lld being copied, "
		       "%lld from the holders), %lld bytes copied at %.1f MB/s\n",
		       (long long)cli_i64(cu, "segments_left"), (long long)cli_i64(cu, "bytes_left"),
		       (long long)cli_i64(cu, "copying"), (long long)cli_i64(cu, "from_holders"),
		       (long long)cli_i64(cu, "bytes_copied"),
		       (double)cli_i64(cu, "bytes_per_second") / 1e6);
	if (cu)
		printf("budget:    %.1f MB/s (%s; clients kept %lld%%: %lld IOPS, %lld alone; "
		       "latency %lld us, %lld us alone)\n",
		       (double)cli_i64(cu, "budget_bytes_per_second") / 1e6, cli_str(cu, "budget_why"),
		       (long long)cli_i64(cu, "client_kept_percent"),
		       (long long)cli_i64(cu, "client_iops"),
		       (long long)cli_i64(cu, "client_iops_alone"),
		       (long long)cli_i64(cu, "client_latency_us"),
		       (long long)cli_i64(cu, "client_latency_alone_us"));
	if (cu && cli_i64(cu, "rebuild_segments"))
		printf("rebuild:   %lld segments held by a node gone for good\n",
		       (long long)cli_i64(cu, "rebuild_segments"));
	if (cu && cli_i64(cu, "down_holder_segments"))
		printf("down:      %lld segments held by a node down; rebuilt elsewhere in %llds "
		       "unless it returns\n", (long long)cli_i64(cu, "down_holder_segments"),
		       (long long)cli_i64(cu, "out_in_seconds"));
	if (cu && cli_i64(cu, "fragments_unplaced"))
		printf("degraded:  %lld stripes lost a fragment to a node gone for good and no "
		       "failure domain is left to rebuild it on\n",
		       (long long)cli_i64(cu, "fragments_unplaced"));

	for (size_t i = 0; i < n; i++) {
		struct json_object *s = json_object_array_get_idx(segs, i);
		struct json_object *h = json_object_object_get(s, "holders");
		size_t nh = h ? json_object_array_length(h) : 0;

		printf("copies:    segment %lld on", (long long)cli_i64(s, "segment"));
		for (size_t k = 0; k < nh; k++)
			printf("%s %s", k ? "," : "", json_object_get_string(
						json_object_array_get_idx(h, k)));
		printf("%s\n", cli_bool(s, "placed") ? "" : " (being placed)");
	}
}

static void show_volumes(struct json_object *ans)
{
	struct json_object *vols = json_object_object_get(ans, "volumes");
	size_t n = vols ? json_object_array_length(vols) : 0;

	if (n == 0) {
		printf("\nno volumes in the cluster\n");
		return;
	}
	printf("\n%-24s %12s %8s %-16s %6s  %s\n", "VOLUME", "SIZE", "REPLICAS", "OWNER", "EPOCH",
	       "STATE");
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(vols, i);
		char repl[24];

		snprintf(repl, sizeof(repl), "%lld/%lld", (long long)cli_i64(o, "replicas"),
			 (long long)cli_i64(o, "min_replicas"));
		char base[160] = "";

		if (cli_i64(o, "base_waiting") > 0)
			snprintf(base, sizeof(base), ", WAITING for the owner of its base %s",
				 cli_str(o, "base"));
		printf("%-24s %12s %8s %-16s %6lld  %s%s%s%s%s\n", cli_str(o, "name"),
		       cli_size((uint64_t)cli_i64(o, "size"), 0), repl,
		       *cli_str(o, "owner") ? cli_str(o, "owner") : "(none)",
		       (long long)cli_i64(o, "epoch"), cli_str(o, "state"),
		       cli_copies_brief(o, (char[200]){ 0 }, 200),
		       *cli_str(o, "taking_over") ? ", " : "",
		       cli_str(o, "taking_over"), base);
	}
}

/* Each node's space and the cluster's: raw, used, usable, and per policy. */
static void show_space(struct json_object *ans)
{
	struct json_object *nodes = json_object_object_get(ans, "nodes");
	struct json_object *sp = json_object_object_get(ans, "space");
	struct json_object *pol = sp ? json_object_object_get(sp, "policies") : NULL;
	size_t n = nodes ? json_object_array_length(nodes) : 0;

	if (!sp)
		return;
	printf("\n%-16s %12s %12s %12s\n", "SPACE", "RAW", "USED", "USABLE");
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(nodes, i);
		struct json_object *s = json_object_object_get(o, "space");

		if (!s) {
			printf("%-16s %12s %12s %12s  (%s)\n", cli_str(o, "id"), "-", "-", "-",
			       strcmp(cli_str(o, "state"), "up") ? "down: not counted" :
			       "not published yet");
			continue;
		}
		printf("%-16s %12s %12s %12s%s\n", cli_str(o, "id"),
		       cli_size((uint64_t)cli_i64(s, "raw_bytes"), 0),
		       cli_size((uint64_t)cli_i64(s, "used_bytes"), 1),
		       cli_size((uint64_t)cli_i64(s, "usable_bytes"), 2),
		       cli_bool(o, "out") ? "  (out: not counted)" : "");
	}
	printf("%-16s %12s %12s %12s  (%lld nodes in %lld failure domains)\n", "total",
	       cli_size((uint64_t)cli_i64(sp, "raw_bytes"), 0),
	       cli_size((uint64_t)cli_i64(sp, "used_bytes"), 1),
	       cli_size((uint64_t)cli_i64(sp, "usable_bytes"), 2),
	       (long long)cli_i64(sp, "nodes"), (long long)cli_i64(sp, "failure_domains"));
	cli_show_policies(pol, "usable per policy:", "one copy or fragment per failure domain");
}

void cli_show_policies(struct json_object *pol, const char *label, const char *why)
{
	size_t n = pol ? json_object_array_length(pol) : 0;

	printf("%s", label);
	for (size_t i = 0; i < n; i++) {
		struct json_object *p = json_object_array_get_idx(pol, i);

		printf("%s %s %s", i ? "," : "", cli_str(p, "policy"),
		       cli_size((uint64_t)cli_i64(p, "usable_bytes"), (int)(i % 3)));
	}
	printf(" of volume data (%s)\n", why);
}

/* The node, its lease and client I/O, the nodes, space and volumes: what both the
 * plain status and the watch show. */
static void show_overview(struct json_object *ans)
{
	struct json_object *c = json_object_object_get(ans, "cluster");
	struct json_object *lease = json_object_object_get(ans, "lease");
	struct json_object *io = json_object_object_get(ans, "io");

	if (!c) {
		printf("single node: quilld runs without etcd (no --etcd-endpoints)\n");
		return;
	}
	printf("cluster:   %s (etcd %s%s%s)\n", cli_str(c, "prefix"), cli_str(c, "etcd_endpoint"),
	       cli_bool(c, "etcd_reachable") ? "" : ", unreachable: ",
	       cli_bool(c, "etcd_reachable") ? "" : cli_str(c, "etcd_error"));
	printf("this node: %s, %s\n", cli_str(c, "node_id"), cli_str(c, "state"));
	if (cli_bool(lease, "valid"))
		printf("lease:     %s, TTL %llds, valid for %lld ms more\n", cli_str(lease, "id"),
		       (long long)cli_i64(lease, "ttl_s"), (long long)cli_i64(lease, "remaining_ms"));
	else
		printf("lease:     %s, NOT VALID\n", or_dash(cli_str(lease, "id")));
	if (strcmp(cli_str(io, "state"), "serving") == 0)
		printf("client I/O: serving\n");
	else
		printf("client I/O: WAITING (%lld requests): %s\n",
		       (long long)cli_i64(io, "requests_waiting"), cli_str(io, "why"));
	if (cli_str(io, "last_wait")[0])
		printf("client I/O last waited: %s\n", cli_str(io, "last_wait"));
	cli_show_scrub_status(json_object_object_get(ans, "scrub"));
	printf("\n");
	show_nodes(ans);
	show_space(ans);
	show_volumes(ans);
}

/* ---- cluster status --watch ---- */

#define WATCH_MS 1000u
#define WATCH_BAR 30u

/* The most bytes left each volume had while watched: a bar's 100%. */
struct watch_seen {
	char name[256];
	int64_t most;
};

/* A volume's catch-up object if it has work left (copies to make, a source missing, a
 * holder gone or down), else NULL. */
static struct json_object *work_of(struct json_object *v)
{
	struct json_object *cp = json_object_object_get(v, "copies");
	struct json_object *cu = cp ? json_object_object_get(cp, "catchup") : NULL;

	if (!cu)
		return NULL;
	return cli_i64(cu, "segments_left") || cli_i64(cu, "rebuild_segments") ||
			       cli_i64(cu, "no_source") || cli_i64(cu, "down_holder_segments")
		       ? cu
		       : NULL;
}

static int64_t seen_most(struct watch_seen *seen, size_t nseen, const char *name, int64_t left)
{
	for (size_t i = 0; i < nseen; i++) {
		if (!seen[i].name[0])
			snprintf(seen[i].name, sizeof(seen[i].name), "%s", name);
		if (strcmp(seen[i].name, name) == 0) {
			if (left > seen[i].most)
				seen[i].most = left;
			return seen[i].most;
		}
	}
	return left;
}

/* A volume's work: progress (a bar when watched), segments and bytes left, rate, ETA,
 * the budget and why, and what keeps it from finishing. */
static void print_work(struct json_object *v, struct json_object *cu, unsigned pct, bool bar)
{
	char bars[WATCH_BAR + 1], etas[32];
	int64_t eta = cli_i64(cu, "eta_seconds");

	if (eta < 0)
		snprintf(etas, sizeof(etas), "ETA -");
	else
		snprintf(etas, sizeof(etas), "ETA %lldm%02llds", (long long)eta / 60,
			 (long long)eta % 60);
	if (bar) {
		cli_bar(bars, WATCH_BAR, pct);
		printf("%-20s [%s] %3u%%  ", cli_str(v, "name"), bars, pct);
	} else {
		printf("%-24s %3u%% done  ", cli_str(v, "name"), pct);
	}
	printf("%lld segs %s left  %.1f MB/s  %s  budget %.1f MB/s (%s)",
	       (long long)cli_i64(cu, "segments_left"),
	       cli_size((uint64_t)cli_i64(cu, "bytes_left"), 0),
	       (double)cli_i64(cu, "bytes_per_second") / 1e6, etas,
	       (double)cli_i64(cu, "budget_bytes_per_second") / 1e6, cli_str(cu, "budget_why"));
	if (cli_i64(cu, "rebuild_segments"))
		printf("  (%lld held by a node gone)", (long long)cli_i64(cu, "rebuild_segments"));
	if (cli_i64(cu, "no_source"))
		printf("  (%lld with no source)", (long long)cli_i64(cu, "no_source"));
	if (cli_i64(cu, "fragments_unplaced"))
		printf("  (%lld stripes degraded: no failure domain left)",
		       (long long)cli_i64(cu, "fragments_unplaced"));
	if (cli_i64(cu, "down_holder_segments"))
		printf("  (%lld on a node down: out in %llds)",
		       (long long)cli_i64(cu, "down_holder_segments"),
		       (long long)cli_i64(cu, "out_in_seconds"));
	printf("\n");
}

/* Calls fn (if not NULL) for each volume of a status answer that has work left;
 * returns how many. */
static unsigned each_work(struct json_object *ans,
			  void (*fn)(struct json_object *v, struct json_object *cu, void *ctx),
			  void *ctx)
{
	struct json_object *vols = json_object_object_get(ans, "volumes");
	size_t n = vols ? json_object_array_length(vols) : 0;
	unsigned busy = 0;

	for (size_t i = 0; i < n; i++) {
		struct json_object *v = json_object_array_get_idx(vols, i);
		struct json_object *cu = work_of(v);

		if (cu && fn)
			fn(v, cu, ctx);
		busy += cu != NULL;
	}
	return busy;
}

struct watch_seen_all {
	struct watch_seen *seen;
	size_t nseen;
};

/* A watched line: its bar's 100% the most bytes left seen while watched. */
static void watch_line(struct json_object *v, struct json_object *cu, void *ctx)
{
	struct watch_seen_all *w = ctx;
	int64_t left = cli_i64(cu, "bytes_left");
	int64_t most = seen_most(w->seen, w->nseen, cli_str(v, "name"), left);

	print_work(v, cu, most ? (unsigned)((most - left) * 100 / most) : 0, true);
}

static unsigned show_work(struct json_object *ans, struct watch_seen *seen, size_t nseen)
{
	return each_work(ans, watch_line, &(struct watch_seen_all){ seen, nseen });
}

/* cluster status without --watch: the same line, progress counted from the bytes
 * copied since the catch-up began, under a heading before the first. */
static void status_line(struct json_object *v, struct json_object *cu, void *ctx)
{
	bool *header = ctx;
	int64_t left = cli_i64(cu, "bytes_left"), copied = cli_i64(cu, "bytes_copied");

	if (!*header)
		printf("\nREBUILD AND CATCH-UP (volumes this node owns)\n");
	*header = true;
	print_work(v, cu, copied + left ? (unsigned)(copied * 100 / (copied + left)) : 0, false);
}

static void show_status(struct json_object *ans)
{
	show_overview(ans);
	each_work(ans, status_line, &(bool){ false });
}

/* Redraws the status every second until no volume this node owns has work left (or
 * Ctrl-C). On a terminal the screen is redrawn; otherwise (and with --json: the
 * status, one a line) each round is appended. */
static int watch_status(const struct cli *c)
{
	bool tty = isatty(STDOUT_FILENO) && !c->json;
	struct watch_seen seen[64] = { 0 };

	for (;;) {
		struct json_object *ans = cli_call(c, cli_request(CONTROL_CMD_CLUSTER_STATUS));
		unsigned busy;

		if (!ans)
			return EXIT_NO_NODE;
		if (!cli_ok(ans)) {
			json_object_put(ans);
			return EXIT_REFUSED;
		}
		if (tty)
			printf("\033[H\033[2J");
		if (c->json) {
			busy = each_work(ans, NULL, NULL);
			printf("%s\n", json_object_to_json_string_ext(ans, JSON_C_TO_STRING_PLAIN));
		} else {
			if (tty)
				show_overview(ans);
			printf(tty ? "\n" : "");
			busy = show_work(ans, seen, sizeof(seen) / sizeof(seen[0]));
			if (!busy)
				printf("nothing left to rebuild or catch up on this node's volumes\n");
		}
		fflush(stdout);
		json_object_put(ans);
		if (!busy)
			return 0;
		cli_sleep_ms(WATCH_MS);
	}
}

int cmd_cluster(const struct cli *c)
{
	if (strcmp(c->argv[1], "status") == 0 && c->argc == 2 && c->watch)
		return watch_status(c);
	if (strcmp(c->argv[1], "status") == 0 && c->argc == 2)
		return cli_finish(c, cli_call(c, cli_request(CONTROL_CMD_CLUSTER_STATUS)),
				  show_status);
	return cli_usage(stderr, EXIT_USAGE);
}

static void show_held(struct json_object *ans)
{
	struct json_object *held = json_object_object_get(ans, "held");
	size_t n = held ? json_object_array_length(held) : 0;
	bool judged = json_object_object_get(ans, "orphans") != NULL;

	if (n == 0) {
		printf("no copies held for other nodes\n");
		return;
	}
	printf("%-16s %8s %-6s %8s %6s %6s%s\n", "FAMILY", "SEGMENT", "STATE", "BLOCKS", "EPOCH",
	       "SLOT", judged ? "  VOLUME  ORPHAN" : "");
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(held, i);

		printf("%-16s %8lld %-6s %8lld %6lld %6lld", cli_str(o, "family"),
		       (long long)cli_i64(o, "segment"), cli_str(o, "state"),
		       (long long)cli_i64(o, "length"), (long long)cli_i64(o, "epoch"),
		       (long long)cli_i64(o, "slot"));
		if (judged)
			printf("  %s  %s: %s", cli_str(o, "volume")[0] ? cli_str(o, "volume") : "-",
			       cli_bool(o, "orphan") ? "yes" : "no", cli_str(o, "why"));
		printf("\n");
	}
	if (judged)
		printf("%lld orphan cop%s (dropped by the node at its next check)\n",
		       (long long)cli_i64(ans, "orphans"), cli_i64(ans, "orphans") == 1 ? "y" : "ies");
}

static struct json_object *held_request(const struct cli *c)
{
	struct json_object *req = cli_request(CONTROL_CMD_NODE_HELD);

	if (c->orphans)
		json_object_object_add(req, "orphans", json_object_new_boolean(true));
	return req;
}

int cmd_node(const struct cli *c)
{
	const char *verb = c->argv[1];
	struct json_object *req;

	if ((strcmp(verb, "ls") == 0 || strcmp(verb, "list") == 0) && c->argc == 2)
		return cli_finish(c, cli_call(c, cli_request(CONTROL_CMD_CLUSTER_NODES)), show_nodes);
	if (strcmp(verb, "held") == 0 && c->argc == 2)
		return cli_finish(c, cli_call(c, held_request(c)), show_held);
	if ((strcmp(verb, "out") == 0 || strcmp(verb, "in") == 0) && c->argc == 3) {
		req = cli_request(strcmp(verb, "out") == 0 ? CONTROL_CMD_NODE_OUT : CONTROL_CMD_NODE_IN);
		cli_add_str(req, "id", c->argv[2]);
		return cli_finish(c, cli_call(c, req), NULL);
	}
	return cli_usage(stderr, EXIT_USAGE);
}

int cli_add_replicas(const struct cli *c, struct json_object *req)
{
	char *end;
	long r;

	if (c->ec)
		json_object_object_add(req, "ec", json_object_new_string(c->ec));
	if (!c->replicas)
		return 0;
	r = strtol(c->replicas, &end, 10);
	if (end == c->replicas || *end || r < 1 || r > 16) {
		fprintf(stderr, "quill: --replicas '%s': a number of copies, 1 to 16\n", c->replicas);
		return -EINVAL;
	}
	json_object_object_add(req, "replicas", json_object_new_int64(r));
	return 0;
}

static void show_epoch(struct json_object *ans)
{
	printf("epoch %lld\n", (long long)cli_i64(ans, "epoch"));
}

static void show_segments(struct json_object *ans)
{
	struct json_object *segs = json_object_object_get(ans, "segments");
	size_t n = segs ? json_object_array_length(segs) : 0;

	if (n == 0)
		return;
	printf("%-25s %-6s %14s %6s  %s\n", "SEGMENT", "STATE", "LENGTH", "EPOCH", "HOLDERS");
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(segs, i);
		struct json_object *h = json_object_object_get(o, "holders");
		char holders[256] = "";
		size_t off = 0;

		for (size_t j = 0; h && j < json_object_array_length(h) && off < sizeof(holders); j++)
			off += (size_t)snprintf(holders + off, sizeof(holders) - off, "%s%s",
						j ? "," : "",
						json_object_get_string(json_object_array_get_idx(h, j)));
		printf("%-25s %-6s %14lld %6lld  %s\n", cli_str(o, "segment"), cli_str(o, "state"),
		       (long long)cli_i64(o, "length"), (long long)cli_i64(o, "epoch"), holders);
	}
}

/* volume segment NAME OP [FAMILY.SEQ] [HOLDERS|LENGTH] */
static int segment_request(const struct cli *c, struct json_object *req)
{
	const char *op = c->argc > 3 ? c->argv[3] : "";
	bool list = strcmp(op, "list") == 0, open = strcmp(op, "open") == 0;
	bool seal = strcmp(op, "seal") == 0, holders = strcmp(op, "holders") == 0;
	int want = list ? 4 : open || seal || holders ? 6 : 5;
	char *end;

	if (c->argc != want ||
	    (!list && !open && !seal && !holders && strcmp(op, "delete") != 0))
		return -EINVAL;
	cli_add_str(req, "op", op);
	if (!list)
		cli_add_str(req, "segment", c->argv[4]);
	if (open || holders)
		cli_add_str(req, "holders", c->argv[5]);
	if (seal)
		json_object_object_add(req, "length",
				       json_object_new_int64(strtoll(c->argv[5], &end, 10)));
	if (c->epoch)
		json_object_object_add(req, "epoch", json_object_new_int64(strtoll(c->epoch, &end, 10)));
	return 0;
}

int cmd_volume_cluster(const struct cli *c)
{
	const char *verb = c->argv[1];
	struct json_object *req;

	if ((strcmp(verb, "claim") == 0 || strcmp(verb, "release") == 0) && c->argc == 3) {
		req = cli_request(verb[0] == 'c' ? CONTROL_CMD_VOLUME_CLAIM : CONTROL_CMD_VOLUME_RELEASE);
		cli_add_str(req, "name", c->argv[2]);
		if (c->force && verb[0] == 'r')
			json_object_object_add(req, "force", json_object_new_boolean(1));
		return cli_finish(c, cli_call(c, req), verb[0] == 'c' ? show_epoch : NULL);
	}
	if (strcmp(verb, "segment") != 0 || c->argc < 4)
		return -ENOENT;
	req = cli_request(CONTROL_CMD_VOLUME_SEGMENT);
	cli_add_str(req, "name", c->argv[2]);
	if (segment_request(c, req) < 0) {
		json_object_put(req);
		return cli_usage(stderr, EXIT_USAGE);
	}
	return cli_finish(c, cli_call(c, req), show_segments);
}
