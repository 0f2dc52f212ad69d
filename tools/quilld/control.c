/* tools/quilld/control.c — answers `quill` on the control socket.
 *
 * One request per connection: read a line, run it on the engine (volume management
 * is blocking but short: metadata writes), write the answer, close.
 */
#include "tools/quilld/control.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "engine/engine.h"
#include "tools/control_proto.h"
#include "vhost/vhost_blk.h"

#define CTL_LOG "control"

struct control {
	struct loop *lp;
	struct engine *eng;
	struct vhost_server *vhost;
	int fd;
	struct loop_watch *watch;
	char *path;
};

struct control_conn {
	struct control *ctl;
	int fd;
	struct loop_watch *watch;
	size_t len;
	char buf[CONTROL_MAX_REQUEST];
};

/* ---- answers ---- */

static struct json_object *answer_error(int err, const char *fmt, const char *name)
{
	struct json_object *o = json_object_new_object();
	char msg[256];

	snprintf(msg, sizeof(msg), fmt, name ? name : "");
	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "error", json_object_new_string(msg));
	json_object_object_add(o, "errno", json_object_new_int(err));
	return o;
}

static struct json_object *answer_ok(void)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(1));
	return o;
}

/* The sentence for a failed volume call. */
static struct json_object *volume_error(int r, const char *name)
{
	switch (r) {
	case -ENOENT:
		return answer_error(ENOENT, "no volume named '%s'", name);
	case -EEXIST:
		return answer_error(EEXIST, "a volume named '%s' already exists", name);
	case -EBUSY:
		return answer_error(EBUSY, "volume '%s' is attached (NBD or vhost-user): detach "
				    "it first", name);
	case -ENOSPC:
		return answer_error(ENOSPC, "no space left in the store for '%s'", name);
	case -EINVAL:
		return answer_error(EINVAL, "invalid name or size for '%s' (names: letters, digits, "
				    "'-', '_', '.', at most 63; sizes: a non-zero multiple of "
				    "4 KiB)", name);
	default:
		return answer_error(-r, "volume '%s': %s", name);
	}
}

static struct json_object *volume_json(const struct engine_volume_info *info)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "name", json_object_new_string(info->name));
	json_object_object_add(o, "id", json_object_new_int64((int64_t)info->id));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)info->size));
	json_object_object_add(o, "written_bytes",
			       json_object_new_int64((int64_t)(info->mapped_blocks *
							       ENGINE_BLOCK_SIZE)));
	json_object_object_add(o, "segments", json_object_new_int64((int64_t)info->segments));
	json_object_object_add(o, "created_ns", json_object_new_int64((int64_t)info->created_ns));
	json_object_object_add(o, "attached", json_object_new_boolean(info->open));
	return o;
}

static int list_one(const struct engine_volume_info *info, void *arg)
{
	json_object_array_add(arg, volume_json(info));
	return 0;
}

static const char *get_string(struct json_object *req, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(req, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int get_u64(struct json_object *req, const char *key, uint64_t *out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(req, key, &v) || !json_object_is_type(v, json_type_int))
		return -EINVAL;
	if (json_object_get_int64(v) < 0)
		return -EINVAL;
	*out = (uint64_t)json_object_get_int64(v);
	return 0;
}

static struct json_object *do_volume(struct control *ctl, const char *cmd, struct json_object *req)
{
	const char *name = get_string(req, "name");
	struct engine_volume_info info;
	struct json_object *v;
	uint64_t size = 0;
	int r;

	if (!name)
		return answer_error(EINVAL, "request without a volume name%s", NULL);
	if (strcmp(cmd, CONTROL_CMD_VOLUME_INFO) == 0) {
		r = engine_volume_info(ctl->eng, name, &info);
		if (r < 0)
			return volume_error(r, name);
		v = answer_ok();
		json_object_object_add(v, "volume", volume_json(&info));
		return v;
	}
	if (strcmp(cmd, CONTROL_CMD_VOLUME_RM) == 0) {
		r = engine_volume_delete(ctl->eng, name);
		return r < 0 ? volume_error(r, name) : answer_ok();
	}
	if (get_u64(req, "size", &size) < 0)
		return answer_error(EINVAL, "request for '%s' without a size", name);
	if (strcmp(cmd, CONTROL_CMD_VOLUME_CREATE) == 0) {
		r = engine_volume_create(ctl->eng, name, size);
	} else {
		struct json_object *shrink;
		bool allow = json_object_object_get_ex(req, "allow_shrink", &shrink) &&
			     json_object_get_boolean(shrink);

		r = engine_volume_info(ctl->eng, name, &info);
		if (r == 0 && size < info.size && !allow)
			return answer_error(EPERM, "shrinking '%s' drops the data past the new end: "
					    "add --allow-shrink to do it", name);
		if (r == 0)
			r = engine_volume_resize(ctl->eng, name, size);
	}
	if (r < 0)
		return volume_error(r, name);
	r = engine_volume_info(ctl->eng, name, &info);
	v = answer_ok();
	if (r == 0)
		json_object_object_add(v, "volume", volume_json(&info));
	return v;
}

static struct json_object *do_status(struct control *ctl)
{
	struct engine_stats st;
	struct json_object *v = answer_ok();
	uint64_t seg = 0;

	engine_get_stats(ctl->eng, &st);
	seg = st.segment_size;
	json_object_object_add(v, "segment_size", json_object_new_int64((int64_t)seg));
	json_object_object_add(v, "segments_total", json_object_new_int64(st.segments_total));
	json_object_object_add(v, "segments_free", json_object_new_int64(st.segments_free));
	json_object_object_add(v, "capacity_bytes",
			       json_object_new_int64((int64_t)(seg * st.segments_total)));
	json_object_object_add(v, "free_bytes",
			       json_object_new_int64((int64_t)(seg * st.segments_free)));
	json_object_object_add(v, "usable_bytes",
			       json_object_new_int64((int64_t)(st.usable_blocks * ENGINE_BLOCK_SIZE)));
	json_object_object_add(v, "live_bytes",
			       json_object_new_int64((int64_t)(st.live_blocks * ENGINE_BLOCK_SIZE)));
	json_object_object_add(v, "used_bytes",
			       json_object_new_int64((int64_t)(st.used_blocks * ENGINE_BLOCK_SIZE)));
	json_object_object_add(v, "gc_runs", json_object_new_int64((int64_t)st.gc_runs));
	json_object_object_add(v, "checkpoints", json_object_new_int64((int64_t)st.checkpoints));
	return v;
}

/* ---- vhost-user-blk exports ---- */

static int vhost_one(const struct vhost_export_info *info, void *arg)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "volume", json_object_new_string(info->volume));
	json_object_object_add(o, "socket", json_object_new_string(info->socket_path));
	json_object_object_add(o, "connected", json_object_new_boolean(info->connected));
	json_object_object_add(o, "requests", json_object_new_int64(info->requests));
	json_object_object_add(o, "connections", json_object_new_int64((int64_t)info->connections));
	json_object_array_add(arg, o);
	return 0;
}

static struct json_object *vhost_error(int r, const char *name)
{
	switch (r) {
	case -EEXIST:
		return answer_error(EEXIST, "volume '%s' is already exported over vhost-user", name);
	case -EBUSY:
		return answer_error(EBUSY, "volume '%s' is attached over NBD: a volume has one "
				    "writer at a time, detach its NBD clients first", name);
	case -EADDRINUSE:
		return answer_error(EADDRINUSE, "vhost-user socket for '%s': another server is "
				    "listening there", name);
	case -ENOTSOCK:
		return answer_error(ENOTSOCK, "vhost-user socket for '%s': something that is not a "
				    "socket is at that path", name);
	case -ENAMETOOLONG:
		return answer_error(ENAMETOOLONG, "vhost-user socket for '%s': path too long "
				    "(at most 107 bytes)", name);
	default:
		return r == -ENOENT ? volume_error(r, name) : answer_error(-r, "vhost '%s': %s", name);
	}
}

static struct json_object *do_vhost(struct control *ctl, const char *cmd, struct json_object *req)
{
	const char *name = get_string(req, "name"), *sock = get_string(req, "socket");
	struct json_object *ans, *arr;
	int r;

	if (!ctl->vhost)
		return answer_error(ENOTSUP, "this node has no vhost-user server%s", NULL);
	if (strcmp(cmd, CONTROL_CMD_VHOST_LIST) == 0) {
		arr = json_object_new_array();
		vhost_server_list(ctl->vhost, vhost_one, arr);
		ans = answer_ok();
		json_object_object_add(ans, "exports", arr);
		return ans;
	}
	if (!name)
		return answer_error(EINVAL, "request without a volume name%s", NULL);
	if (strcmp(cmd, CONTROL_CMD_VHOST_START) == 0) {
		if (!sock || sock[0] != '/')
			return answer_error(EINVAL, "vhost start '%s': the socket must be an absolute "
					    "path", name);
		r = vhost_server_export(ctl->vhost, name, sock);
	} else if (strcmp(cmd, CONTROL_CMD_VHOST_STOP) == 0) {
		r = vhost_server_unexport(ctl->vhost, name);
		if (r == -ENOENT)
			return answer_error(ENOENT, "volume '%s' is not exported over vhost-user", name);
	} else {
		return answer_error(ENOTSUP, "unknown command '%s'", cmd);
	}
	return r < 0 ? vhost_error(r, name) : answer_ok();
}

static struct json_object *dispatch(struct control *ctl, const char *line)
{
	struct json_object *req = json_tokener_parse(line);
	struct json_object *ans;
	const char *cmd = req ? get_string(req, "cmd") : NULL;

	if (!cmd)
		ans = answer_error(EINVAL, "not a control request (one JSON object with \"cmd\")%s",
				   NULL);
	else if (strncmp(cmd, "vhost.", 6) == 0)
		ans = do_vhost(ctl, cmd, req);
	else if (strcmp(cmd, CONTROL_CMD_VOLUME_LIST) == 0) {
		struct json_object *arr = json_object_new_array();
		engine_volume_list(ctl->eng, list_one, arr);
		ans = answer_ok();
		json_object_object_add(ans, "volumes", arr);
	} else if (strcmp(cmd, CONTROL_CMD_NODE_STATUS) == 0)
		ans = do_status(ctl);
	else if (strcmp(cmd, CONTROL_CMD_VOLUME_CREATE) == 0 ||
		 strcmp(cmd, CONTROL_CMD_VOLUME_INFO) == 0 ||
		 strcmp(cmd, CONTROL_CMD_VOLUME_RESIZE) == 0 ||
		 strcmp(cmd, CONTROL_CMD_VOLUME_RM) == 0)
		ans = do_volume(ctl, cmd, req);
	else
		ans = answer_error(ENOTSUP, "unknown command '%s'", cmd);
	json_object_put(req);
	return ans;
}

/* ---- connections ---- */

static void conn_close(struct control_conn *c)
{
	loop_watch_remove(c->watch);
	close(c->fd);
	free(c);
}

static void conn_answer(struct control_conn *c, const char *line)
{
	struct json_object *ans = dispatch(c->ctl, line);
	const char *text = json_object_to_json_string_ext(ans, JSON_C_TO_STRING_PLAIN);
	size_t len = strlen(text), off = 0;
	int fl = fcntl(c->fd, F_GETFL);

	/* the answer is small and the client is waiting for it: send it blocking */
	fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
	while (off < len) {
		ssize_t n = send(c->fd, text + off, len - off, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	send(c->fd, "\n", 1, MSG_NOSIGNAL);
	json_object_put(ans);
}

static void conn_readable(void *arg, unsigned events)
{
	struct control_conn *c = arg;
	ssize_t n;
	char *nl;

	(void)events;
	n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	nl = strchr(c->buf, '\n');
	if (!nl && c->len < sizeof(c->buf) - 1)
		return;
	if (nl)
		*nl = '\0';
	conn_answer(c, c->buf);
	conn_close(c);
}

static void accept_ready(void *arg, unsigned events)
{
	struct control *ctl = arg;
	struct control_conn *c;
	int fd;

	(void)events;
	fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->ctl = ctl;
	c->fd = fd;
	if (loop_watch_add(ctl->lp, fd, LOOP_READ, conn_readable, c, &c->watch) < 0) {
		close(fd);
		free(c);
	}
}

/* A socket file nobody answers on is a leftover of a crash: it may go. */
static int claim_path(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int r;

	if (fd < 0)
		return -errno;
	strcpy(sa.sun_path, path);
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (r == 0)
		return -EADDRINUSE;
	unlink(path);
	return 0;
}

int control_create(struct loop *lp, const char *path, struct engine *eng,
		   struct control **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct control *ctl;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	r = claim_path(path);
	if (r < 0) {
		log_msg(LOG_ERROR, CTL_LOG, "%s: another quilld is listening there", path);
		return r;
	}
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	ctl->lp = lp;
	ctl->eng = eng;
	ctl->path = strdup(path);
	strcpy(sa.sun_path, path);
	ctl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ctl->fd < 0 || !ctl->path) {
		r = ctl->fd < 0 ? -errno : -ENOMEM;
		goto err_free;
	}
	if (bind(ctl->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
	    listen(ctl->fd, 16) < 0) {
		r = -errno;
		log_msg(LOG_ERROR, CTL_LOG, "cannot listen on %s: %s", path, strerror(-r));
		goto err_close;
	}
	r = loop_watch_add(lp, ctl->fd, LOOP_READ, accept_ready, ctl, &ctl->watch);
	if (r < 0)
		goto err_unlink;
	*out = ctl;
	return 0;

err_unlink:
	unlink(path);
err_close:
	close(ctl->fd);
err_free:
	free(ctl->path);
	free(ctl);
	return r;
}

void control_destroy(struct control *ctl)
{
	if (!ctl)
		return;
	loop_watch_remove(ctl->watch);
	close(ctl->fd);
	unlink(ctl->path);
	free(ctl->path);
	free(ctl);
}

void control_set_vhost(struct control *ctl, struct vhost_server *vhost)
{
	ctl->vhost = vhost;
}
