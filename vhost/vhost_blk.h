/* vhost/vhost_blk.h — vhost-user-blk exports of engine volumes: QEMU (or
 * cloud-hypervisor) connects to a unix socket, shares the guest's memory, and the
 * guest's virtio-blk requests are served from the rings without going through a
 * socket. Spec notes and decisions: docs/vhost.md.
 *
 * One export per volume, one front-end per export at a time (a second connection
 * is refused; a front-end that goes away — even with kill -9 — leaves the socket
 * listening for the next). An export is a definition: it opens (claims) its volume
 * when a front-end connects and gives it back when the front-end has left and its
 * requests are done and flushed. A volume has one writer, so while NBD holds it a
 * front-end's connection is closed at once (QEMU's device fails to start; the log
 * says who holds it), and while a front-end is connected NBD cannot attach it.
 * Snapshots ("VOL@SNAP", read-only) never conflict.
 *
 * Durability: a completed VIRTIO_BLK_T_FLUSH means every write completed before it
 * is durable (an engine flush), as NBD's FLUSH.
 *
 * Threading: runs on the loop's thread, which must also be the engine's.
 */
#ifndef QUILL_VHOST_VHOST_BLK_H
#define QUILL_VHOST_VHOST_BLK_H

#include <stdbool.h>
#include <stdint.h>

struct blk_guard;
struct engine;
struct loop;
struct vhost_server;

struct vhost_server_opts {
	struct engine *eng;
	struct loop *loop;
	unsigned num_queues;   /* request queues offered per device; 0 = 4, at most 8 */
	/* The node's guard (block.h), borrowed; NULL: a single node. A front-end of a
	 * volume this node does not own is refused (the log says who owns it); when the
	 * node loses the volume, every request fails with VIRTIO_BLK_S_IOERR. */
	struct blk_guard *guard;
};

int vhost_server_create(const struct vhost_server_opts *opts, struct vhost_server **out);
/* Unexports everything (requests in flight finish first). NULL ok. */
void vhost_server_destroy(struct vhost_server *srv);

/* Listens on socket_path (a stale socket file is replaced); the volume is opened
 * when a front-end connects. -EEXIST already exported here, -ENOENT no volume,
 * -EADDRINUSE a live socket at that path, -ENOTSOCK something else there,
 * -ENAMETOOLONG. */
int vhost_server_export(struct vhost_server *srv, const char *volume, const char *socket_path);
/* Disconnects the front-end, waits for its requests, closes the volume if claimed,
 * removes the socket file. -ENOENT if not exported. */
int vhost_server_unexport(struct vhost_server *srv, const char *volume);

struct vhost_export_info {
	const char *volume;
	const char *socket_path;
	bool connected;            /* a front-end is attached now */
	bool claimed;              /* the export holds its volume open (a front-end is
				      connected, or left and its requests are finishing) */
	unsigned requests;         /* in flight */
	uint64_t connections;      /* front-ends accepted since the export started */
	uint64_t refused;          /* front-ends refused: the volume was held elsewhere */
};
/* Calls fn for every export; stops and returns fn's value if non-zero. */
int vhost_server_list(const struct vhost_server *srv,
		      int (*fn)(const struct vhost_export_info *info, void *arg), void *arg);
bool vhost_server_exported(const struct vhost_server *srv, const char *volume);

#endif
