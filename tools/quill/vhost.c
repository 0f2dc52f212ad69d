/* tools/quill/vhost.c — vhost start|stop|ls: vhost-user-blk exports (docs/vhost.md). */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "tools/control_proto.h"
#include "tools/quill/cli.h"

static void show_exports(struct json_object *ans)
{
	struct json_object *exps = json_object_object_get(ans, "exports");
	size_t n = exps ? json_object_array_length(exps) : 0;

	if (n == 0) {
		printf("no vhost-user exports (start one: quill vhost start VOL SOCKET)\n");
		return;
	}
	printf("%-24s %-9s %8s %7s  %s\n", "VOLUME", "CONNECTED", "IN-FLIGHT", "REFUSED",
	       "SOCKET");
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(exps, i);

		printf("%-24s %-9s %8lld %7lld  %s\n", cli_str(e, "volume"),
		       cli_bool(e, "connected") ? "yes" : "no", (long long)cli_i64(e, "requests"),
		       (long long)cli_i64(e, "refused"), cli_str(e, "socket"));
	}
}

/* quilld may run elsewhere in the tree: a relative socket path is made absolute. */
static int absolute_path(const char *path, char *out, size_t len)
{
	char cwd[4096];
	int n;

	if (path[0] == '/')
		n = snprintf(out, len, "%s", path);
	else if (getcwd(cwd, sizeof(cwd)))
		n = snprintf(out, len, "%s/%s", cwd, path);
	else
		return -errno;
	return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

static void show_started(struct json_object *ans)
{
	printf("volume %s exported over vhost-user on %s (opened when a front-end connects)\n"
	       "  qemu: -object memory-backend-memfd,id=mem,size=RAM,share=on -numa node,"
	       "memdev=mem\n        -chardev socket,id=c0,path=%s "
	       "-device vhost-user-blk-pci,chardev=c0\n",
	       cli_str(ans, "volume"), cli_str(ans, "socket"), cli_str(ans, "socket"));
}

int cmd_vhost(const struct cli *c)
{
	const char *verb = c->argv[1];
	struct json_object *req;
	char sock[4096];

	if ((strcmp(verb, "ls") == 0 || strcmp(verb, "list") == 0) && c->argc == 2)
		return cli_finish(c, cli_call(c, cli_request(CONTROL_CMD_VHOST_LIST)), show_exports);
	if (strcmp(verb, "start") == 0 && c->argc == 4) {
		if (absolute_path(c->argv[3], sock, sizeof(sock)) < 0) {
			fprintf(stderr, "quill: socket path '%s' is too long\n", c->argv[3]);
			return EXIT_USAGE;
		}
		req = cli_request(CONTROL_CMD_VHOST_START);
		cli_add_str(req, "name", c->argv[2]);
		cli_add_str(req, "socket", sock);
		return cli_finish(c, cli_call(c, req), show_started);
	}
	if (strcmp(verb, "stop") == 0 && c->argc == 3) {
		req = cli_request(CONTROL_CMD_VHOST_STOP);
		cli_add_str(req, "name", c->argv[2]);
		return cli_finish(c, cli_call(c, req), NULL);
	}
	return cli_usage(stderr, EXIT_USAGE);
}
