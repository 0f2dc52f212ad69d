/* tools/quilld/control.h — quilld's control socket (tools/control_proto.h). */
#ifndef QUILL_QUILLD_CONTROL_H
#define QUILL_QUILLD_CONTROL_H

struct control;
struct engine;
struct loop;
struct vhost_server;

/* Listens on path (a stale socket file is replaced; a live one is -EADDRINUSE),
 * mode 0600. Runs on the loop's (= the engine's) thread. */
int control_create(struct loop *lp, const char *path, struct engine *eng,
		   struct control **out);
void control_destroy(struct control *c); /* NULL ok; removes the socket file */
/* The vhost-user-blk server that vhost.* commands drive (NULL: they are refused). */
void control_set_vhost(struct control *c, struct vhost_server *vhost);

#endif
