/* tools/quill/image.c — export and import of raw and qcow2 images by driving
 * `qemu-img convert -p` against the node's NBD export (its address comes from the
 * node's status: the unix socket if it has one, else TCP).
 *
 *   quill export VOL[@SNAP] FILE [--format raw|qcow2] [--force]
 *   quill import FILE VOL [--format F]
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/err.h"
#include "common/volspec.h"
#include "tools/control_proto.h"
#include "tools/quill/cli.h"

#define QEMU_IMG "qemu-img"
#define OPTS_MAX 8192
#define INFO_MAX (1u << 20)

extern char **environ;

/* Is name an executable on $PATH? */
static bool on_path(const char *name)
{
	const char *path = getenv("PATH");
	char buf[4096];

	for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
		size_t n = strcspn(p, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, name);
		if (access(buf, X_OK) == 0)
			return true;
		p += n + (p[n] == ':');
	}
	return false;
}

static bool have_qemu_img(void)
{
	if (on_path(QEMU_IMG))
		return true;
	fprintf(stderr, "quill: %s is not installed (or not on PATH): it moves the image; "
		"install it with apt-get install qemu-utils\n", QEMU_IMG);
	return false;
}

/* Runs argv; its stdout goes to out_fd (or stays ours if -1). Returns its exit
 * status, or -errno if it could not run. */
static int run(char *const argv[], int out_fd)
{
	posix_spawn_file_actions_t fa;
	int r, status;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	if (out_fd >= 0)
		posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
	r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0)
		return -r;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Runs argv and returns what it printed on stdout (malloc'd), or NULL. */
static char *capture(char *const argv[])
{
	char tmpl[] = "/tmp/quill-img-XXXXXX", *buf = NULL;
	int fd = mkstemp(tmpl);
	ssize_t n;

	if (fd < 0)
		return NULL;
	unlink(tmpl);
	if (run(argv, fd) == 0 && (buf = calloc(1, INFO_MAX)) != NULL) {
		n = pread(fd, buf, INFO_MAX - 1, 0);
		if (n < 0) {
			free(buf);
			buf = NULL;
		}
	}
	close(fd);
	return buf;
}

/* Appends "key=value" to an option string, doubling commas as qemu wants. */
static void opt_append(char *buf, size_t len, const char *key, const char *val)
{
	size_t at = strlen(buf);

	at += (size_t)snprintf(buf + at, len - at, "%s%s=", at ? "," : "", key);
	for (; *val && at + 2 < len; val++) {
		buf[at++] = *val;
		if (*val == ',')
			buf[at++] = ',';
	}
	buf[at < len ? at : len - 1] = '\0';
}

/* qemu's --image-opts for export `name` of the node: 0, or an exit status. */
static int nbd_image_opts(const struct cli *c, const char *name, char *buf, size_t len)
{
	struct json_object *ans = cli_call(c, cli_request(CONTROL_CMD_NODE_STATUS));
	const char *unix_path, *tcp, *colon;
	char host[256];
	bool found;

	if (!ans)
		return EXIT_NO_NODE;
	if (!cli_ok(ans)) {
		json_object_put(ans);
		return EXIT_REFUSED;
	}
	unix_path = cli_str(ans, "nbd_unix");
	tcp = cli_str(ans, "nbd_tcp");
	colon = strrchr(tcp, ':');
	buf[0] = '\0';
	opt_append(buf, len, "driver", "nbd");
	if (*unix_path) {
		opt_append(buf, len, "server.type", "unix");
		opt_append(buf, len, "server.path", unix_path);
	} else if (colon) {
		snprintf(host, sizeof(host), "%.*s", (int)(colon - tcp), tcp);
		opt_append(buf, len, "server.type", "inet");
		opt_append(buf, len, "server.host", host);
		opt_append(buf, len, "server.port", colon + 1);
	}
	opt_append(buf, len, "export", name);
	found = *unix_path || colon;
	json_object_put(ans); /* unix_path and tcp pointed into it */
	if (found)
		return 0;
	fprintf(stderr, "quill: the node serves NBD neither on TCP nor on a unix socket\n");
	return EXIT_REFUSED;
}

static bool snap_listed(struct json_object *arr, const char *name)
{
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++)
		if (strcmp(cli_str(json_object_array_get_idx(arr, i), "name"), name) == 0)
			return true;
	return false;
}

/* Does the volume or snapshot exist? 0, or an exit status (after saying why). */
static int check_source(const struct cli *c, const char *spec)
{
	char vol[VOLSPEC_NAME_MAX + 1], snap[VOLSPEC_NAME_MAX + 1];
	struct json_object *req, *ans;
	int code = 0;

	if (volspec_parse(spec, vol, snap) < 0) {
		fprintf(stderr, "quill: '%s' is neither VOL nor VOL@SNAP (names of at most %u "
			"characters)\n", spec, VOLSPEC_NAME_MAX);
		return EXIT_USAGE;
	}
	req = cli_request(snap[0] ? CONTROL_CMD_SNAP_LIST : CONTROL_CMD_VOLUME_INFO);
	cli_add_str(req, "name", vol);
	ans = cli_call(c, req);
	if (!ans)
		return EXIT_NO_NODE;
	if (!cli_ok(ans)) {
		code = EXIT_REFUSED;
	} else if (snap[0] && !snap_listed(json_object_object_get(ans, "snapshots"), snap)) {
		fprintf(stderr, "quill: volume '%s' has no snapshot '%s'\n", vol, snap);
		code = EXIT_REFUSED;
	}
	json_object_put(ans);
	return code;
}

/* qemu-img's progress on stdout for people; quiet under --json. */
static char *progress_flag(const struct cli *c)
{
	return c->json ? "-q" : "-p";
}

/* What export and import print when they are done. */
static void report_done(const struct cli *c, bool export, const char *file,
			const char *volume, const char *fmt)
{
	struct json_object *o;

	if (!c->json) {
		if (export)
			printf("exported %s to %s (%s)\n", volume, file, fmt);
		else
			printf("imported %s as volume %s (%s)\n", file, volume, fmt);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "ok", json_object_new_boolean(1));
	cli_add_str(o, "file", file);
	cli_add_str(o, "volume", volume);
	cli_add_str(o, "format", fmt);
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
	json_object_put(o);
}

static const char *export_format(const struct cli *c, const char *file)
{
	size_t n = strlen(file);

	if (c->format)
		return c->format;
	return n > 6 && strcmp(file + n - 6, ".qcow2") == 0 ? "qcow2" : "raw";
}

int cmd_export(const struct cli *c)
{
	const char *spec = c->argv[1], *file = c->argv[2], *fmt = export_format(c, file);
	char *argv[] = { QEMU_IMG, "convert", progress_flag(c), "-O", (char *)fmt, "--image-opts",
			 NULL /* opts */, (char *)file, NULL };
	char opts[OPTS_MAX];
	struct stat st;
	bool existed = stat(file, &st) == 0;
	int code;

	if (strcmp(fmt, "raw") != 0 && strcmp(fmt, "qcow2") != 0) {
		fprintf(stderr, "quill: --format %s: export writes raw or qcow2\n", fmt);
		return EXIT_USAGE;
	}
	if (existed && !c->force) {
		fprintf(stderr, "quill: %s exists: pass --force to overwrite it\n", file);
		return EXIT_REFUSED;
	}
	if (!have_qemu_img())
		return EXIT_REFUSED;
	if ((code = check_source(c, spec)) || (code = nbd_image_opts(c, spec, opts, sizeof(opts))))
		return code;
	argv[6] = opts;
	code = run(argv, -1);
	if (code != 0) {
		fprintf(stderr, "quill: export of %s to %s failed (%s exited %d)%s\n", spec, file,
			QEMU_IMG, code, existed ? "" : "; removing the partial file");
		if (!existed)
			unlink(file); /* never a device or a file that was there before */
		return EXIT_REFUSED;
	}
	report_done(c, true, file, spec, fmt);
	return 0;
}

/* ---- import ---- */

struct image_info {
	uint64_t size;
	char format[32];
};

/* qemu-img info of file: 0, or an exit status. */
static int image_info(const struct cli *c, const char *file, struct image_info *out)
{
	char *argv[] = { QEMU_IMG, "info", "--output=json", "-f", (char *)c->format,
			 (char *)file, NULL };
	struct json_object *info;
	char *text;

	if (!c->format) {
		argv[3] = (char *)file; /* no -f: let qemu-img probe */
		argv[4] = NULL;
	}
	text = capture(argv);
	info = text ? json_tokener_parse(text) : NULL;
	free(text);
	if (!info) {
		fprintf(stderr, "quill: %s info %s failed: is it an image%s%s?\n", QEMU_IMG, file,
			c->format ? " of format " : "", c->format ? c->format : "");
		return EXIT_REFUSED;
	}
	out->size = (uint64_t)cli_i64(info, "virtual-size");
	snprintf(out->format, sizeof(out->format), "%s", cli_str(info, "format"));
	json_object_put(info);
	return 0;
}

static int volume_call(const struct cli *c, const char *cmd, const char *name, uint64_t size)
{
	struct json_object *req = cli_request(cmd), *ans;
	bool ok;

	cli_add_str(req, "name", name);
	if (size)
		json_object_object_add(req, "size", json_object_new_int64((int64_t)size));
	if (strcmp(cmd, CONTROL_CMD_VOLUME_CREATE) == 0) { /* marked until the import is done */
		json_object_object_add(req, "importing", json_object_new_boolean(1));
		cli_add_sector_size(c, req); /* checked by cmd_import */
	}
	ans = cli_call(c, req);
	if (!ans)
		return EXIT_NO_NODE;
	ok = cli_ok(ans);
	json_object_put(ans);
	return ok ? 0 : EXIT_REFUSED;
}

/* 0 if no volume is named name, or if it is what an interrupted import left (marked
 * as importing: it is removed, to be imported again); else an exit status (after
 * saying why). */
static int check_new_volume(const struct cli *c, const char *name)
{
	struct json_object *req = cli_request(CONTROL_CMD_VOLUME_INFO), *ans, *vol;
	bool exists, importing;

	cli_add_str(req, "name", name);
	ans = cli_call(c, req);
	if (!ans)
		return EXIT_NO_NODE;
	exists = cli_bool(ans, "ok");
	vol = json_object_object_get(ans, "volume");
	importing = vol && cli_bool(vol, "importing");
	json_object_put(ans);
	if (!exists)
		return 0;
	if (!importing) {
		fprintf(stderr, "quill: volume '%s' already exists: import creates its volume "
			"(pick another name, or remove it first)\n", name);
		return EXIT_REFUSED;
	}
	fprintf(stderr, "quill: volume '%s' is what an interrupted import left: removing it "
		"and importing again\n", name);
	return volume_call(c, CONTROL_CMD_VOLUME_RM, name, 0);
}

static int import_convert(const struct cli *c, const char *file, const char *vol,
			  const struct image_info *ii)
{
	char opts[OPTS_MAX];
	int code = nbd_image_opts(c, vol, opts, sizeof(opts));
	char *argv[] = { QEMU_IMG, "convert", progress_flag(c), "-n", "--target-is-zero", "-f",
			 (char *)ii->format, (char *)file, "--target-image-opts", opts, NULL };

	if (code)
		return code;
	code = run(argv, -1);
	if (code == 0)
		return 0;
	fprintf(stderr, "quill: import of %s into %s failed (%s exited %d); removing the "
		"volume it created\n", file, vol, QEMU_IMG, code);
	volume_call(c, CONTROL_CMD_VOLUME_RM, vol, 0);
	return EXIT_REFUSED;
}

int cmd_import(const struct cli *c)
{
	const char *file = c->argv[1], *vol = c->argv[2];
	struct image_info ii;
	uint32_t sector;
	uint64_t size;
	int code;

	if (cli_sector_size(c, &sector) < 0)
		return EXIT_USAGE;
	if (access(file, R_OK) < 0) {
		fprintf(stderr, "quill: cannot read %s: %s\n", file, err_str(errno));
		return EXIT_REFUSED;
	}
	if (!have_qemu_img())
		return EXIT_REFUSED;
	if ((code = check_new_volume(c, vol)) || (code = image_info(c, file, &ii)))
		return code;
	size = (ii.size + 4095) / 4096 * 4096;
	if (size == 0) {
		fprintf(stderr, "quill: %s is an empty image: nothing to import\n", file);
		return EXIT_REFUSED;
	}
	if (size != ii.size)
		fprintf(stderr, "quill: %s is %llu bytes: the volume is rounded up to %llu\n", file,
			(unsigned long long)ii.size, (unsigned long long)size);
	if ((code = volume_call(c, CONTROL_CMD_VOLUME_CREATE, vol, size)) ||
	    (code = import_convert(c, file, vol, &ii)) ||
	    (code = volume_call(c, CONTROL_CMD_VOLUME_IMPORT_DONE, vol, 0)))
		return code;
	report_done(c, false, file, vol, ii.format);
	return 0;
}
