/* tools/quill/cluster.c — cluster status, node ls|out|in (docs/cluster.md). */
#include <string.h>
#include <time.h>

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

static void show_status(struct json_object *ans)
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
	printf("\n");
	show_nodes(ans);
}

int cmd_cluster(const struct cli *c)
{
	if (strcmp(c->argv[1], "status") == 0 && c->argc == 2)
		return cli_finish(c, cli_call(c, cli_request(CONTROL_CMD_CLUSTER_STATUS)),
				  show_status);
	return cli_usage(stderr, EXIT_USAGE);
}

int cmd_node(const struct cli *c)
{
	const char *verb = c->argv[1];
	struct json_object *req;

	if ((strcmp(verb, "ls") == 0 || strcmp(verb, "list") == 0) && c->argc == 2)
		return cli_finish(c, cli_call(c, cli_request(CONTROL_CMD_CLUSTER_NODES)), show_nodes);
	if ((strcmp(verb, "out") == 0 || strcmp(verb, "in") == 0) && c->argc == 3) {
		req = cli_request(strcmp(verb, "out") == 0 ? CONTROL_CMD_NODE_OUT : CONTROL_CMD_NODE_IN);
		cli_add_str(req, "id", c->argv[2]);
		return cli_finish(c, cli_call(c, req), NULL);
	}
	return cli_usage(stderr, EXIT_USAGE);
}
