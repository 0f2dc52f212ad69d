/* tools/quill/main.c — quill, the command line of a quill node.
 *
 *   quill [--socket PATH] [--json] volume create NAME SIZE
 *   quill volume ls | info NAME | resize NAME SIZE [--allow-shrink] | rm NAME
 *   quill status
 *   quill vhost start VOL SOCKET | stop VOL | ls
 *
 * Talks to quilld's control socket (tools/control_proto.h). Exit status: 0 done,
 * 1 the node refused (its message on stderr), 2 bad usage, 3 no node to talk to.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/units.h"
#include "tools/control_proto.h"

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_NO_NODE = 3 };

struct cli {
	const char *socket;
	char default_socket[4096];
	bool json;
	bool allow_shrink;
	int argc;
	char **argv; /* the words left after the options */
};

static int usage(FILE *out, int code)
{
	fprintf(out,
		"usage: quill [--socket PATH] [--json] COMMAND\n\n"
		"  volume create NAME SIZE        a thin volume (SIZE like 10G, 512M)\n"
		"  volume ls                      all volumes\n"
		"  volume info NAME               one volume\n"
		"  volume resize NAME SIZE [--allow-shrink]\n"
		"                                 grow (clients see it on reconnect); shrink drops\n"
		"                                 the data past the new end, so it must be asked for\n"
		"  volume rm NAME                 delete (refused while attached)\n"
		"  status                         the node's store and space\n"
		"  vhost start VOL SOCKET         export VOL over vhost-user-blk on a unix socket\n"
		"  vhost stop VOL                 stop that export (the VM loses its disk)\n"
		"  vhost ls                       vhost-user-blk exports\n\n"
		"The node's control socket: --socket, else $QUILL_SOCKET, else the default that\n"
		"quilld uses ($XDG_RUNTIME_DIR/quill/quilld.sock or /tmp/quill-$UID/quilld.sock).\n");
	return code;
}

/* ---- talking to the node ---- */

static int connect_node(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

static int send_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
		if (n <= 0)
			return -errno;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Sends req (consumed) and returns the answer, or NULL after printing why. */
static struct json_object *call(const struct cli *c, struct json_object *req)
{
	const char *text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	static char buf[1 << 20];
	size_t len = 0;
	struct json_object *ans = NULL;
	int fd = connect_node(c->socket);

	if (fd < 0) {
		fprintf(stderr, "quill: cannot reach quilld at %s: %s\n"
			"       (is it running? start one with scripts/quickstart.sh, or pass "
			"--socket)\n", c->socket, strerror(-fd));
		json_object_put(req);
		return NULL;
	}
	if (send_all(fd, text, strlen(text)) == 0 && send_all(fd, "\n", 1) == 0) {
		ssize_t n;
		while (len < sizeof(buf) - 1 && (n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0)) > 0)
			len += (size_t)n;
		buf[len] = '\0';
		ans = json_tokener_parse(buf);
	}
	close(fd);
	json_object_put(req);
	if (!ans)
		fprintf(stderr, "quill: no answer from quilld at %s\n", c->socket);
	return ans;
}

static struct json_object *request(const char *cmd)
{
	struct json_object *req = json_object_new_object();

	json_object_object_add(req, "cmd", json_object_new_string(cmd));
	return req;
}

static int64_t get_i64(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static const char *get_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

/* Prints the answer (JSON, or via show for people); returns the exit status. */
static int finish(const struct cli *c, struct json_object *ans,
		  void (*show)(struct json_object *ans))
{
	struct json_object *ok;
	int code = 0;

	if (!ans)
		return EXIT_NO_NODE;
	if (!json_object_object_get_ex(ans, "ok", &ok) || !json_object_get_boolean(ok)) {
		fprintf(stderr, "quill: %s\n", get_str(ans, "error"));
		code = EXIT_REFUSED;
		if (c->json)
			printf("%s\n", json_object_to_json_string_ext(ans, JSON_C_TO_STRING_PRETTY));
	} else if (c->json) {
		printf("%s\n", json_object_to_json_string_ext(ans, JSON_C_TO_STRING_PRETTY));
	} else if (show) {
		show(ans);
	}
	json_object_put(ans);
	return code;
}

/* ---- human output ---- */

static void print_volume_row(struct json_object *v)
{
	char size[32], written[32];

	printf("%-24s %12s %12s %9lld  %s\n", get_str(v, "name"),
	       units_format_size((uint64_t)get_i64(v, "size"), size, sizeof(size)),
	       units_format_size((uint64_t)get_i64(v, "written_bytes"), written, sizeof(written)),
	       (long long)get_i64(v, "segments"),
	       json_object_get_boolean(json_object_object_get(v, "attached")) ? "yes" : "no");
}

static void print_volume_header(void)
{
	printf("%-24s %12s %12s %9s  %s\n", "NAME", "SIZE", "WRITTEN", "SEGMENTS", "ATTACHED");
}

static void show_list(struct json_object *ans)
{
	struct json_object *vols = json_object_object_get(ans, "volumes");
	size_t n = vols ? json_object_array_length(vols) : 0;

	if (n == 0) {
		printf("no volumes (create one: quill volume create NAME SIZE)\n");
		return;
	}
	print_volume_header();
	for (size_t i = 0; i < n; i++)
		print_volume_row(json_object_array_get_idx(vols, i));
}

static void show_volume(struct json_object *ans)
{
	struct json_object *v = json_object_object_get(ans, "volume");
	char size[32], written[32], when[64];
	time_t t;

	if (!v)
		return;
	t = (time_t)(get_i64(v, "created_ns") / 1000000000);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
	printf("name:      %s\nid:        %lld\nsize:      %s (%lld bytes)\n"
	       "written:   %s\nsegments:  %lld\nattached:  %s\ncreated:   %s\n",
	       get_str(v, "name"), (long long)get_i64(v, "id"),
	       units_format_size((uint64_t)get_i64(v, "size"), size, sizeof(size)),
	       (long long)get_i64(v, "size"),
	       units_format_size((uint64_t)get_i64(v, "written_bytes"), written, sizeof(written)),
	       (long long)get_i64(v, "segments"),
	       json_object_get_boolean(json_object_object_get(v, "attached")) ? "yes" : "no",
	       when);
}

static void show_status(struct json_object *ans)
{
	char cap[32], fr[32], live[32], used[32];

	printf("capacity:  %s in %lld segments of %s\n",
	       units_format_size((uint64_t)get_i64(ans, "capacity_bytes"), cap, sizeof(cap)),
	       (long long)get_i64(ans, "segments_total"),
	       units_format_size((uint64_t)get_i64(ans, "segment_size"), fr, sizeof(fr)));
	printf("usable:    %s of live data (the cleaner needs the rest)\n",
	       units_format_size((uint64_t)get_i64(ans, "usable_bytes"), cap, sizeof(cap)));
	printf("free:      %s (%lld segments)\nlive data: %s\nlog used:  %s\n",
	       units_format_size((uint64_t)get_i64(ans, "free_bytes"), fr, sizeof(fr)),
	       (long long)get_i64(ans, "segments_free"),
	       units_format_size((uint64_t)get_i64(ans, "live_bytes"), live, sizeof(live)),
	       units_format_size((uint64_t)get_i64(ans, "used_bytes"), used, sizeof(used)));
	printf("cleaner:   %lld runs; checkpoints: %lld\n", (long long)get_i64(ans, "gc_runs"),
	       (long long)get_i64(ans, "checkpoints"));
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

	if (strcmp(verb, "ls") == 0 || strcmp(verb, "list") == 0) {
		if (c->argc != 2)
			return usage(stderr, EXIT_USAGE);
		return finish(c, call(c, request(CONTROL_CMD_VOLUME_LIST)), show_list);
	}
	if ((strcmp(verb, "info") == 0 || strcmp(verb, "rm") == 0) && c->argc == 3) {
		req = request(verb[0] == 'i' ? CONTROL_CMD_VOLUME_INFO : CONTROL_CMD_VOLUME_RM);
		json_object_object_add(req, "name", json_object_new_string(name));
		return finish(c, call(c, req), verb[0] == 'i' ? show_volume : NULL);
	}
	if ((strcmp(verb, "create") == 0 || strcmp(verb, "resize") == 0) && c->argc == 4) {
		if (parse_size_arg(c->argv[3], &size) < 0)
			return EXIT_USAGE;
		req = request(verb[0] == 'c' ? CONTROL_CMD_VOLUME_CREATE : CONTROL_CMD_VOLUME_RESIZE);
		json_object_object_add(req, "name", json_object_new_string(name));
		json_object_object_add(req, "size", json_object_new_int64((int64_t)size));
		if (c->allow_shrink)
			json_object_object_add(req, "allow_shrink", json_object_new_boolean(1));
		return finish(c, call(c, req), show_volume);
	}
	return usage(stderr, EXIT_USAGE);
}

static void show_vhost_list(struct json_object *ans)
{
	struct json_object *exps = json_object_object_get(ans, "exports");
	size_t n = exps ? json_object_array_length(exps) : 0;

	if (n == 0) {
		printf("no vhost-user exports (start one: quill vhost start VOL SOCKET)\n");
		return;
	}
	printf("%-24s %-9s %8s  %s\n", "VOLUME", "CONNECTED", "IN-FLIGHT", "SOCKET");
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(exps, i);

		printf("%-24s %-9s %8lld  %s\n", get_str(e, "volume"),
		       json_object_get_boolean(json_object_object_get(e, "connected")) ? "yes" : "no",
		       (long long)get_i64(e, "requests"), get_str(e, "socket"));
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

static int cmd_vhost(const struct cli *c)
{
	const char *verb = c->argc > 1 ? c->argv[1] : "";
	struct json_object *req;
	char sock[4096];

	if ((strcmp(verb, "ls") == 0 || strcmp(verb, "list") == 0) && c->argc == 2)
		return finish(c, call(c, request(CONTROL_CMD_VHOST_LIST)), show_vhost_list);
	if (strcmp(verb, "start") == 0 && c->argc == 4) {
		if (absolute_path(c->argv[3], sock, sizeof(sock)) < 0) {
			fprintf(stderr, "quill: socket path '%s' is too long\n", c->argv[3]);
			return EXIT_USAGE;
		}
		req = request(CONTROL_CMD_VHOST_START);
		json_object_object_add(req, "name", json_object_new_string(c->argv[2]));
		json_object_object_add(req, "socket", json_object_new_string(sock));
		return finish(c, call(c, req), NULL);
	}
	if (strcmp(verb, "stop") == 0 && c->argc == 3) {
		req = request(CONTROL_CMD_VHOST_STOP);
		json_object_object_add(req, "name", json_object_new_string(c->argv[2]));
		return finish(c, call(c, req), NULL);
	}
	return usage(stderr, EXIT_USAGE);
}

static int parse_options(struct cli *c, int argc, char **argv)
{
	c->socket = getenv("QUILL_SOCKET");
	c->argv = calloc((size_t)argc, sizeof(char *));
	if (!c->argv)
		return -ENOMEM;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			c->json = true;
		else if (strcmp(argv[i], "--allow-shrink") == 0)
			c->allow_shrink = true;
		else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
			c->socket = argv[++i];
		else if (strncmp(argv[i], "--socket=", 9) == 0)
			c->socket = argv[i] + 9;
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

int main(int argc, char **argv)
{
	static struct cli c;
	int r = parse_options(&c, argc, argv);
	int code;

	if (r != 0 || c.argc == 0)
		code = usage(r == 1 ? stdout : stderr, r == 1 ? 0 : EXIT_USAGE);
	else if (strcmp(c.argv[0], "volume") == 0 || strcmp(c.argv[0], "vol") == 0)
		code = cmd_volume(&c);
	else if (strcmp(c.argv[0], "vhost") == 0)
		code = cmd_vhost(&c);
	else if (strcmp(c.argv[0], "status") == 0 && c.argc == 1)
		code = finish(&c, call(&c, request(CONTROL_CMD_NODE_STATUS)), show_status);
	else
		code = usage(stderr, EXIT_USAGE);
	free(c.argv);
	return code;
}
