/* tools/quilld/control_vhost.c — the control commands of vhost-user-blk exports
 * (docs/control.md, docs/vhost.md): start, stop, list. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "tools/control_proto.h"
#include "tools/quilld/control_internal.h"
#include "vhost/vhost_blk.h"

static int export_json(const struct vhost_export_info *info, void *arg)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "volume", json_object_new_string(info->volume));
	json_object_object_add(o, "socket", json_object_new_string(info->socket_path));
	json_object_object_add(o, "connected", json_object_new_boolean(info->connected));
	json_object_object_add(o, "claimed", json_object_new_boolean(info->claimed));
	ctl_add_int(o, "requests", info->requests);
	ctl_add_int(o, "connections", (int64_t)info->connections);
	ctl_add_int(o, "refused", (int64_t)info->refused);
	json_object_array_add(arg, o);
	return 0;
}

/* Is spec the volume vol, or one of its snapshots? */
static bool spec_of(const char *spec, const char *vol)
{
	size_t n = strlen(vol);

	return strncmp(spec, vol, n) == 0 && (spec[n] == '\0' || spec[n] == '@');
}

struct exports_of {
	const char *vol;
	struct json_object *arr;
};

static int export_of(const struct vhost_export_info *info, void *arg)
{
	struct exports_of *eo = arg;
	struct json_object *o;

	if (!spec_of(info->volume, eo->vol))
		return 0;
	o = json_object_new_object();
	json_object_object_add(o, "spec", json_object_new_string(info->volume));
	json_object_object_add(o, "socket", json_object_new_string(info->socket_path));
	json_object_object_add(o, "connected", json_object_new_boolean(info->connected));
	json_object_array_add(eo->arr, o);
	return 0;
}

void ctl_vhost_add_exports(struct control *ctl, const char *vol, struct json_object *o)
{
	struct exports_of eo = { vol, json_object_new_array() };

	vhost_server_list(ctl->vhost, export_of, &eo);
	json_object_object_add(o, "vhost_exports", eo.arr);
}

struct socket_of {
	const char *spec;
	char path[128];
};

static int socket_of(const struct vhost_export_info *info, void *arg)
{
	struct socket_of *so = arg;

	if (strcmp(info->volume, so->spec) != 0)
		return 0;
	snprintf(so->path, sizeof(so->path), "%s", info->socket_path);
	return 1;
}

struct json_object *ctl_vhost_refuse_rm(struct control *ctl, const char *spec)
{
	struct socket_of so = { .spec = spec };

	if (!spec || vhost_server_list(ctl->vhost, socket_of, &so) == 0)
		return NULL;
	return ctl_error(EBUSY, "'%s' is exported over vhost-user on %s: stop that export "
			 "first (quill vhost stop %s)", spec, so.path, spec);
}

/* The sentence for a failed export. */
static struct json_object *vhost_error(int r, const char *name)
{
	switch (r) {
	case -EEXIST:
		return ctl_error(EEXIST, "volume '%s' is already exported over vhost-user", name);
	case -EADDRINUSE:
		return ctl_error(EADDRINUSE, "vhost-user socket for '%s': another server is "
				 "listening there", name);
	case -ENOTSOCK:
		return ctl_error(ENOTSOCK, "vhost-user socket for '%s': something that is not a "
				 "socket is at that path", name);
	case -ENAMETOOLONG:
		return ctl_error(ENAMETOOLONG, "vhost-user socket for '%s': path too long (at most "
				 "107 bytes)", name);
	case -ENOENT:
		return ctl_volume_error(r, name);
	default:
		return ctl_error(-r, "vhost '%s': %s", name, err_str(-r));
	}
}

static struct json_object *cmd_vhost_start(struct control *ctl, struct json_object *req)
{
	const char *name = ctl_get_string(req, "name"), *sock = ctl_get_string(req, "socket");
	struct json_object *ans;
	int r;

	if (!name)
		return ctl_no_name();
	if (!ctl->vhost)
		return ctl_error(ENOTSUP, "this node has no vhost-user server");
	if (!sock || sock[0] != '/')
		return ctl_error(EINVAL, "vhost start '%s': the socket must be an absolute path",
				 name);
	r = vhost_server_export(ctl->vhost, name, sock);
	if (r < 0)
		return vhost_error(r, name);
	ans = ctl_ok();
	json_object_object_add(ans, "volume", json_object_new_string(name));
	json_object_object_add(ans, "socket", json_object_new_string(sock));
	return ans;
}

static struct json_object *cmd_vhost_stop(struct control *ctl, struct json_object *req)
{
	const char *name = ctl_get_string(req, "name");

	if (!name)
		return ctl_no_name();
	if (vhost_server_unexport(ctl->vhost, name) < 0)
		return ctl_error(ENOENT, "volume '%s' is not exported over vhost-user", name);
	return ctl_ok();
}

static struct json_object *cmd_vhost_list(struct control *ctl, struct json_object *req)
{
	struct json_object *ans = ctl_ok(), *arr = json_object_new_array();

	(void)req;
	vhost_server_list(ctl->vhost, export_json, arr);
	json_object_object_add(ans, "exports", arr);
	return ans;
}

const struct control_cmd ctl_vhost_commands[] = {
	{ CONTROL_CMD_VHOST_START, cmd_vhost_start,
	  { CTL_KEY_NAME, { "socket", CTL_STRING } } },
	{ CONTROL_CMD_VHOST_STOP, cmd_vhost_stop, { CTL_KEY_NAME } },
	{ CONTROL_CMD_VHOST_LIST, cmd_vhost_list, { { NULL } } },
	{ NULL, NULL, { { NULL } } },
};
