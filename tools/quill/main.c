/* tools/quill/main.c — quill, the command line of a quill node: options, volume and
 * node commands. Snapshots, clones, flatten and diff are in snap.c, export and import
 * in image.c, vhost-user-blk exports in vhost.c, talking to the node in client.c.
 *
 * Talks to quilld's control socket (tools/control_proto.h). Exit status: 0 done,
 * 1 the node refused (its message on stderr), 2 bad usage, 3 no node to talk to.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/units.h"
#include "tools/control_proto.h"
#include "tools/quill/cli.h"

int cli_usage(FILE *out, int code)
{
	fprintf(out,
		"usage: quill [--socket PATH] [--json] COMMAND\n\n"
		"  volume create NAME SIZE [--sector-size 512|4096] [--replicas R | --ec K+M]\n"
		"                                 a thin volume (SIZE like 10G, 512M) with 512-byte\n"
		"                                 logical sectors, or 4096 (a 4Kn disk); in a\n"
		"                                 cluster, R copies (default 3: needs 3 failure\n"
		"                                 domains), registered in etcd, owned by this node;\n"
		"                                 --ec K+M: erasure-coded (needs K+M failure\n"
		"                                 domains; the open segment has M+1 copies)\n"
		"  volume ls                      all volumes\n"
		"  volume info NAME               one volume\n"
		"  volume resize NAME SIZE [--allow-shrink]\n"
		"                                 grow (clients see it on reconnect); shrink drops\n"
		"                                 the data past the new end, so it must be asked for\n"
		"  volume rm NAME                 delete (refused while attached, exported over\n"
		"                                 vhost-user, or with snapshots)\n"
		"  volume claim NAME              (cluster) this node becomes the owner, the epoch\n"
		"                                 rises; refused while another node's claim lives\n"
		"  volume release NAME [--force]  (cluster) give the claim up: any node may claim\n"
		"  volume segment NAME open|seal|holders|delete|list [FAMILY.SEQ] [HOLDERS|LENGTH]\n"
		"                 [--epoch E]     (cluster) segment lifecycle records, fenced by\n"
		"                                 the epoch (default: this node's claim)\n"
		"  snap create VOL@SNAP           a read-only point in time of VOL (instant)\n"
		"  snap ls VOL                    VOL's snapshots\n"
		"  snap rm VOL@SNAP               delete (refused while clones read through it)\n"
		"  snap rollback VOL@SNAP [--force]\n"
		"                                 VOL reads what SNAP holds again; what was written\n"
		"                                 since is lost (refused while attached: --force)\n"
		"  clone VOL@SNAP NEWVOL [--replicas R]  a writable volume reading through to SNAP\n"
		"  flatten VOL [--no-wait]        copy what clone VOL reads from its parent, then\n"
		"                                 drop the link (online; a progress bar)\n"
		"  diff [VOL@A] VOL[@B]           extents that differ between A (or nothing) and B\n"
		"                                 (or the live volume); --json: [{offset,length,type}]\n"
		"  export VOL[@SNAP] FILE [--format raw|qcow2] [--force]\n"
		"                                 write an image with qemu-img (format by default from\n"
		"                                 FILE's extension: .qcow2, else raw)\n"
		"  import FILE VOL [--format F] [--sector-size 512|4096]\n"
		"                                 a new volume VOL with FILE's content (qemu-img)\n"
		"  status                         the node's store and space\n"
		"  gc                             run the cleaner now: free what nothing reads\n"
		"  vhost start VOL SOCKET         export VOL over vhost-user-blk on a unix socket\n"
		"                                 (VOL is held only while a VM is connected)\n"
		"  vhost stop VOL                 stop that export (the VM loses its disk)\n"
		"  vhost ls                       vhost-user-blk exports\n"
		"  cluster status [--watch]       the cluster as this node sees it: nodes, this\n"
		"                                 node's lease, and why client I/O waits if it does;\n"
		"                                 --watch: redrawn every second with the rebuild\n"
		"                                 and catch-up of the volumes this node owns (a\n"
		"                                 bar, rate, ETA) until none is left (with --json:\n"
		"                                 one status a line)\n"
		"  node ls                        the cluster's nodes: up or down, out, domain\n"
		"  node out|in ID                 mark a node out (an operator's decision, kept\n"
		"                                 across restarts) or in again\n"
		"  scrub [VOL]                    (cluster) read every copy of VOL's sealed segments\n"
		"                                 (every replicated volume this node owns without\n"
		"                                 VOL), check their checksums, repair bad copies\n"
		"                                 from good ones; says what it found and fixed\n"
		"  node held [--orphans]          the copies of other nodes' segments this node\n"
		"                                 holds (replicated volumes); --orphans: which of\n"
		"                                 them the segment records no longer want, and why\n"
		"                                 (the node drops those by itself)\n\n"
		"The node's control socket: --socket, else $QUILL_SOCKET, else the default that\n"
		"quilld uses ($XDG_RUNTIME_DIR/quill/quilld.sock or /tmp/quill-$UID/quilld.sock).\n");
	return code;
}

/* ---- human output ---- */

static const char *yes_no(struct json_object *o, const char *key)
{
	return cli_bool(o, key) ? "yes" : "no";
}

static const char *or_dash(const char *s)
{
	return *s ? s : "-";
}

/* Who holds the volume: the holder it names, "yes" for one that names nobody, "-". */
static const char *holder_of(struct json_object *v)
{
	const char *h = cli_str(v, "holder");

	return *h ? h : cli_bool(v, "attached") ? "yes" : "-";
}

static void print_volume_row(struct json_object *v)
{
	char brief[400];

	printf("%-24s %12s %12s %9lld  %-24s  %s%s%s%s\n", cli_str(v, "name"),
	       cli_size((uint64_t)cli_i64(v, "size"), 0),
	       cli_size((uint64_t)cli_i64(v, "written_bytes"), 1),
	       (long long)cli_i64(v, "segments"), holder_of(v),
	       or_dash(cli_str(v, "parent")), cli_bool(v, "damaged") ? "  DAMAGED" : "",
	       cli_bool(v, "importing") ? "  (incomplete import)" : "",
	       cli_cluster_brief(v, brief, sizeof(brief)));
}

static void show_list(struct json_object *ans)
{
	struct json_object *vols = json_object_object_get(ans, "volumes");
	size_t n = vols ? json_object_array_length(vols) : 0;

	if (n == 0) {
		printf("no volumes (create one: quill volume create NAME SIZE)\n");
		return;
	}
	printf("%-24s %12s %12s %9s  %-24s  %s\n", "NAME", "SIZE", "WRITTEN", "SEGMENTS",
	       "HOLDER", "PARENT");
	bool damaged = false;

	for (size_t i = 0; i < n; i++) {
		print_volume_row(json_object_array_get_idx(vols, i));
		damaged |= cli_bool(json_object_array_get_idx(vols, i), "damaged");
	}
	if (damaged)
		printf("DAMAGED: the log lost a flushed batch of the volume; quill volume info "
		       "NAME says more\n");
}

/* The holder, and the vhost-user exports defined on the volume (connected or not). */
static void show_holder(struct json_object *v)
{
	struct json_object *exps = json_object_object_get(v, "vhost_exports");
	size_t n = exps ? json_object_array_length(exps) : 0;

	printf("holder:    %s\n", holder_of(v));
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(exps, i);

		printf("vhost:     %s on %s (%s)\n", cli_str(e, "spec"), cli_str(e, "socket"),
		       cli_bool(e, "connected") ? "front-end connected" : "no front-end");
	}
}

static void show_volume(struct json_object *ans)
{
	struct json_object *v = json_object_object_get(ans, "volume");
	char when[64];
	time_t t;

	if (!v)
		return;
	t = (time_t)(cli_i64(v, "created_ns") / 1000000000);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
	printf("name:      %s\nid:        %lld\nsize:      %s (%lld bytes)\n"
	       "written:   %s (%s of it since the last snapshot or clone)\n"
	       "segments:  %lld\nattached:  %s\ncreated:   %s\n",
	       cli_str(v, "name"), (long long)cli_i64(v, "id"),
	       cli_size((uint64_t)cli_i64(v, "size"), 0), (long long)cli_i64(v, "size"),
	       cli_size((uint64_t)cli_i64(v, "written_bytes"), 1),
	       cli_size((uint64_t)cli_i64(v, "own_bytes"), 2),
	       (long long)cli_i64(v, "segments"), yes_no(v, "attached"), when);
	printf("parent:    %s\nsnapshots: %lld\n", or_dash(cli_str(v, "parent")),
	       (long long)cli_i64(v, "snapshots"));
	printf("sector:    %lld bytes (logical; 4 KiB physical)\n",
	       (long long)cli_i64(v, "sector_size"));
	show_holder(v);
	if (json_object_object_get(v, "cluster"))
		printf("cluster:  %s\n", cli_cluster_brief(v, (char[400]){ 0 }, 400));
	cli_show_policy(json_object_object_get(v, "cluster"));
	cli_show_copies(json_object_object_get(v, "cluster"));
	cli_show_base(json_object_object_get(v, "cluster"));
	if (cli_bool(v, "flattening"))
		printf("flatten:   running (quill flatten %s shows its progress)\n",
		       cli_str(v, "name"));
	if (cli_bool(v, "damaged"))
		printf("damaged:   YES: start-up found a flushed batch of this volume whose "
		       "summary is corrupt;\n           the blocks it wrote are unknown and may "
		       "read old data (the node's log names the segment)\n");
	if (cli_bool(v, "importing"))
		printf("import:    incomplete: an import was interrupted (quill import FILE %s "
		       "restarts it, quill volume rm %s drops it)\n", cli_str(v, "name"),
		       cli_str(v, "name"));
}

/* raw, raw used, and usable under each policy (control.c add_policy_space) */
static void show_policy_space(struct json_object *ans)
{
	struct json_object *pol = json_object_object_get(ans, "policies");
	size_t n = pol ? json_object_array_length(pol) : 0;

	printf("raw:       %s, %s in use (this node's log, copies and fragments of others)\n",
	       cli_size((uint64_t)cli_i64(ans, "raw_bytes"), 0),
	       cli_size((uint64_t)cli_i64(ans, "raw_used_bytes"), 1));
	if (n)
		cli_show_policies(pol, "per policy:", "usable / copies, or x K/(K+M)");
}

static void show_status(struct json_object *ans)
{
	printf("capacity:  %s in %lld segments of %s\n",
	       cli_size((uint64_t)cli_i64(ans, "capacity_bytes"), 0),
	       (long long)cli_i64(ans, "segments_total"),
	       cli_size((uint64_t)cli_i64(ans, "segment_size"), 1));
	printf("usable:    %s of live data (the cleaner needs the rest)\n",
	       cli_size((uint64_t)cli_i64(ans, "usable_bytes"), 0));
	printf("free:      %s (%lld segments)\nlive data: %s\nlog used:  %s\n",
	       cli_size((uint64_t)cli_i64(ans, "free_bytes"), 0),
	       (long long)cli_i64(ans, "segments_free"),
	       cli_size((uint64_t)cli_i64(ans, "live_bytes"), 1),
	       cli_size((uint64_t)cli_i64(ans, "used_bytes"), 2));
	show_policy_space(ans);
	if (cli_i64(ans, "segments_held"))
		printf("held:      %lld segments of other nodes (replicas kept here)\n",
		       (long long)cli_i64(ans, "segments_held"));
	printf("cleaner:   %lld runs; checkpoints: %lld\n", (long long)cli_i64(ans, "gc_runs"),
	       (long long)cli_i64(ans, "checkpoints"));
	printf("nbd:       %s%s%s\n", or_dash(cli_str(ans, "nbd_tcp")),
	       *cli_str(ans, "nbd_unix") ? ", unix:" : "", cli_str(ans, "nbd_unix"));
	if (*cli_str(ans, "metadata_error"))
		printf("metadata:  %s (%s): volumes, snapshots and clones cannot change; "
		       "client I/O goes on\n", cli_str(ans, "metadata"),
		       cli_str(ans, "metadata_error"));
	else
		printf("metadata:  %s\n", or_dash(cli_str(ans, "metadata")));
	cli_show_scrub_status(json_object_object_get(ans, "scrub"));
}

static void show_gc(struct json_object *ans)
{
	printf("freed %lld segments\n", (long long)cli_i64(ans, "segments_freed"));
	show_status(ans);
}

/* ---- commands ---- */

static int parse_size_arg(const char *s, uint64_t *out)
{
	int r = units_parse_size(s, out);

	if (r < 0 || *out == 0 || *out % 4096) {
		fprintf(stderr, "quill: '%s' is not a volume size: use a non-zero multiple of "
			"4 KiB such as 10G or 512M\n", s);
		return -EINVAL;
	}
	return 0;
}

static int cmd_volume(const struct cli *c)
{
	const char *verb = c->argc > 1 ? c->argv[1] : "";
	const char *name = c->argc > 2 ? c->argv[2] : NULL;
	struct json_object *req;
	uint64_t size;
	int r;

	if (strcmp(verb, "ls") == 0 || strcmp(verb, "list") == 0) {
		if (c->argc != 2)
			return cli_usage(stderr, EXIT_USAGE);
		return cli_finish(c, cli_call(c, cli_request(CONTROL_CMD_VOLUME_LIST)), show_list);
	}
	if ((r = cmd_volume_cluster(c)) != -ENOENT)
		return r;
	if ((strcmp(verb, "info") == 0 || strcmp(verb, "rm") == 0) && c->argc == 3) {
		req = cli_request(verb[0] == 'i' ? CONTROL_CMD_VOLUME_INFO : CONTROL_CMD_VOLUME_RM);
		cli_add_str(req, "name", name);
		return cli_finish(c, cli_call(c, req), verb[0] == 'i' ? show_volume : NULL);
	}
	if (c->sector_size && strcmp(verb, "create") != 0) {
		fprintf(stderr, "quill: --sector-size is chosen when a volume is created (volume "
			"create, import) and never changes\n");
		return EXIT_USAGE;
	}
	if ((strcmp(verb, "create") == 0 || strcmp(verb, "resize") == 0) && c->argc == 4) {
		if (parse_size_arg(c->argv[3], &size) < 0)
			return EXIT_USAGE;
		req = cli_request(verb[0] == 'c' ? CONTROL_CMD_VOLUME_CREATE :
						   CONTROL_CMD_VOLUME_RESIZE);
		if (cli_add_sector_size(c, req) < 0 ||
		    (verb[0] == 'c' && cli_add_replicas(c, req) < 0)) {
			json_object_put(req);
			return EXIT_USAGE;
		}
		cli_add_str(req, "name", name);
		json_object_object_add(req, "size", json_object_new_int64((int64_t)size));
		if (c->allow_shrink)
			json_object_object_add(req, "allow_shrink", json_object_new_boolean(1));
		return cli_finish(c, cli_call(c, req), show_volume);
	}
	return cli_usage(stderr, EXIT_USAGE);
}

/* An option's value: "--opt V" or "--opt=V"; advances *i past it. */
static const char *option_value(const char *opt, int argc, char **argv, int *i)
{
	size_t n = strlen(opt);

	if (strcmp(argv[*i], opt) == 0 && *i + 1 < argc)
		return argv[++*i];
	if (strncmp(argv[*i], opt, n) == 0 && argv[*i][n] == '=')
		return argv[*i] + n + 1;
	return NULL;
}

static bool flag_option(struct cli *c, const char *arg)
{
	static const struct {
		const char *name;
		size_t off;
	} flags[] = {
		{ "--json", offsetof(struct cli, json) },
		{ "--allow-shrink", offsetof(struct cli, allow_shrink) },
		{ "--force", offsetof(struct cli, force) },
		{ "--no-wait", offsetof(struct cli, no_wait) },
		{ "--orphans", offsetof(struct cli, orphans) },
		{ "--watch", offsetof(struct cli, watch) },
	};

	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		if (strcmp(arg, flags[i].name) == 0) {
			*(bool *)((char *)c + flags[i].off) = true;
			return true;
		}
	}
	return false;
}

static int parse_options(struct cli *c, int argc, char **argv)
{
	const char *v;

	c->socket = getenv("QUILL_SOCKET");
	c->argv = calloc((size_t)argc, sizeof(char *));
	if (!c->argv)
		return -ENOMEM;
	for (int i = 1; i < argc; i++) {
		if (flag_option(c, argv[i]))
			continue;
		if ((v = option_value("--socket", argc, argv, &i)))
			c->socket = v;
		else if ((v = option_value("--format", argc, argv, &i)))
			c->format = v;
		else if ((v = option_value("--sector-size", argc, argv, &i)))
			c->sector_size = v;
		else if ((v = option_value("--replicas", argc, argv, &i)))
			c->replicas = v;
		else if ((v = option_value("--ec", argc, argv, &i)))
			c->ec = v;
		else if ((v = option_value("--epoch", argc, argv, &i)))
			c->epoch = v;
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
		else if (argv[i][0] == '-' && argv[i][1] == '-')
			return -EINVAL;
		else
			c->argv[c->argc++] = argv[i];
	}
	if (!c->socket || !*c->socket)
		c->socket = control_default_socket(c->default_socket, sizeof(c->default_socket));
	return 0;
}

static int cmd_status(const struct cli *c)
{
	return cli_finish(c, cli_call(c, cli_request(CONTROL_CMD_NODE_STATUS)), show_status);
}

static int cmd_gc(const struct cli *c)
{
	return cli_finish(c, cli_call(c, cli_request(CONTROL_CMD_NODE_GC)), show_gc);
}

static const struct {
	const char *word;
	int (*fn)(const struct cli *c);
	int min_args, max_args; /* words after the command's own */
} commands[] = {
	{ "volume", cmd_volume, 1, 5 },  { "vol", cmd_volume, 1, 5 },
	{ "snap", cmd_snap, 1, 2 },      { "clone", cmd_clone, 2, 2 },
	{ "flatten", cmd_flatten, 1, 1 }, { "diff", cmd_diff, 1, 2 },
	{ "export", cmd_export, 2, 2 },  { "import", cmd_import, 2, 2 },
	{ "status", cmd_status, 0, 0 },  { "gc", cmd_gc, 0, 0 },
	{ "vhost", cmd_vhost, 1, 3 },
	{ "cluster", cmd_cluster, 1, 1 }, { "node", cmd_node, 1, 2 },
	{ "scrub", cmd_scrub, 0, 1 },
};

static int run(const struct cli *c)
{
	int args = c->argc - 1;

	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(c->argv[0], commands[i].word) != 0)
			continue;
		if (args < commands[i].min_args || args > commands[i].max_args)
			return cli_usage(stderr, EXIT_USAGE);
		return commands[i].fn(c);
	}
	return cli_usage(stderr, EXIT_USAGE);
}

int main(int argc, char **argv)
{
	static struct cli c;
	int r = parse_options(&c, argc, argv);
	int code;

	if (r != 0 || c.argc == 0)
		code = cli_usage(r == 1 ? stdout : stderr, r == 1 ? 0 : EXIT_USAGE);
	else
		code = run(&c);
	free(c.argv);
	return code;
}
