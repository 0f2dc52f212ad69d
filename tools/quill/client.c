/* tools/quill/client.c — one request to quilld's control socket and its answer
 * (tools/control_proto.h), and the helpers that print answers.
 */
#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/units.h"
#include "tools/quill/cli.h"

#define ANSWER_MAX (256u << 20) /* a diff of a fragmented volume can be large */

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

/* Why the control socket could not be reached: a permission problem is not a node
 * that is down. */
static void explain_no_node(const char *path, int err)
{
	struct stat st;
	struct passwd *owner;
	char who[64];

	if (err != -EACCES && err != -EPERM) {
		fprintf(stderr, "quill: cannot reach quilld at %s: %s\n"
			"       (is it running? start one with scripts/quickstart.sh, or pass "
			"--socket)\n", path, err_str(err));
		return;
	}
	if (stat(path, &st) < 0) {
		fprintf(stderr, "quill: permission denied: user %u cannot reach quilld's control "
			"socket %s (a folder on its path is not open to it)\n", (unsigned)geteuid(),
			path);
		return;
	}
	owner = getpwuid(st.st_uid);
	if (owner)
		snprintf(who, sizeof(who), "%s", owner->pw_name);
	else
		snprintf(who, sizeof(who), "uid %u", (unsigned)st.st_uid);
	fprintf(stderr, "quill: permission denied on quilld's control socket %s: it is mode %04o, "
		"owned by %s; run quill as %s%s\n", path, (unsigned)(st.st_mode & 07777), who, who,
		st.st_uid == 0 ? "" : " (or root)");
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

/* Reads until the daemon closes; a NUL-terminated malloc'd string, or NULL. */
static char *recv_all(int fd)
{
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap), *nb;
	ssize_t n;

	while (buf) {
		if (len + 1 == cap) {
			nb = cap < ANSWER_MAX ? realloc(buf, cap * 2) : NULL;
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		n = recv(fd, buf + len, cap - 1 - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			buf[len] = '\0';
			return buf;
		}
		len += (size_t)n;
	}
	free(buf);
	return NULL;
}

struct json_object *cli_call(const struct cli *c, struct json_object *req)
{
	const char *text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	struct json_object *ans = NULL;
	int fd = connect_node(c->socket);
	char *buf;

	if (fd < 0) {
		explain_no_node(c->socket, fd);
		json_object_put(req);
		return NULL;
	}
	if (send_all(fd, text, strlen(text)) == 0 && send_all(fd, "\n", 1) == 0) {
		buf = recv_all(fd);
		ans = buf ? json_tokener_parse(buf) : NULL;
		free(buf);
	}
	close(fd);
	json_object_put(req);
	if (!ans)
		fprintf(stderr, "quill: no answer from quilld at %s\n", c->socket);
	return ans;
}

struct json_object *cli_request(const char *cmd)
{
	struct json_object *req = json_object_new_object();

	cli_add_str(req, "cmd", cmd);
	return req;
}

void cli_add_str(struct json_object *req, const char *key, const char *val)
{
	json_object_object_add(req, key, json_object_new_string(val));
}

int cli_sector_size(const struct cli *c, uint32_t *out)
{
	uint64_t n = 0;

	*out = 0;
	if (!c->sector_size)
		return 0;
	if (units_parse_size(c->sector_size, &n) < 0 || (n != 512 && n != 4096)) {
		fprintf(stderr, "quill: --sector-size %s: a volume's logical sector is 512 bytes "
			"(the default) or 4096 (a 4Kn disk), nothing else\n", c->sector_size);
		return -EINVAL;
	}
	*out = (uint32_t)n;
	return 0;
}

int cli_add_sector_size(const struct cli *c, struct json_object *req)
{
	uint32_t n;
	int r = cli_sector_size(c, &n);

	if (r == 0 && n)
		json_object_object_add(req, "sector_size", json_object_new_int64(n));
	return r;
}

int64_t cli_i64(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

const char *cli_str(struct json_object *o, const char *key)
{
	struct json_object *v;
	const char *s;

	if (!json_object_object_get_ex(o, key, &v))
		return "";
	s = json_object_get_string(v);
	return s ? s : "";
}

bool cli_bool(struct json_object *o, const char *key)
{
	return json_object_get_boolean(json_object_object_get(o, key));
}

const char *cli_size(uint64_t bytes, int slot)
{
	static char bufs[4][32];

	return units_format_size(bytes, bufs[slot & 3], sizeof(bufs[0]));
}

bool cli_ok(struct json_object *ans)
{
	if (ans && cli_bool(ans, "ok"))
		return true;
	if (ans)
		fprintf(stderr, "quill: %s\n", cli_str(ans, "error"));
	return false;
}

int cli_finish(const struct cli *c, struct json_object *ans, void (*show)(struct json_object *))
{
	int code = 0;

	if (!ans)
		return EXIT_NO_NODE;
	if (!cli_ok(ans))
		code = EXIT_REFUSED;
	if (c->json)
		printf("%s\n", json_object_to_json_string_ext(ans, JSON_C_TO_STRING_PRETTY));
	else if (code == 0 && show)
		show(ans);
	json_object_put(ans);
	return code;
}

void cli_sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void cli_bar(char *bar, unsigned width, unsigned pct)
{
	unsigned fill = (pct > 100 ? 100 : pct) * width / 100;

	memset(bar, '#', fill);
	memset(bar + fill, '-', width - fill);
	bar[width] = '\0';
}
