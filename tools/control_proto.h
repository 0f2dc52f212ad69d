/* tools/control_proto.h — the control protocol between `quill` and `quilld`
 * (spec: docs/control.md).
 *
 * A unix stream socket. The client sends one JSON object on one line, the daemon
 * answers one JSON object on one line and closes. Every request has "cmd"; every
 * answer has "ok" (true/false); a failed one has "error" (a sentence for people)
 * and "errno" (the positive errno value, for scripts). Requests are strict: no
 * duplicate keys, no key the command does not take (the fields listed below), each
 * of its type; anything else is answered EINVAL (docs/control.md).
 */
#ifndef QUILL_TOOLS_CONTROL_PROTO_H
#define QUILL_TOOLS_CONTROL_PROTO_H

#include <stddef.h>

#define CONTROL_MAX_REQUEST 65536 /* bytes, newline included */

#define CONTROL_CMD_VOLUME_CREATE "volume.create" /* name, size (bytes), importing,
						   sector_size (512, 4096) */
#define CONTROL_CMD_VOLUME_IMPORT_DONE "volume.import_done" /* name: the import filled it */
#define CONTROL_CMD_VOLUME_LIST "volume.list"     /* -> volumes: [info...] */
#define CONTROL_CMD_VOLUME_INFO "volume.info"     /* name -> info */
#define CONTROL_CMD_VOLUME_RESIZE "volume.resize" /* name, size, allow_shrink */
#define CONTROL_CMD_VOLUME_RM "volume.rm"         /* name */
#define CONTROL_CMD_NODE_STATUS "node.status"     /* -> store and space figures, NBD
							     addresses */
#define CONTROL_CMD_NODE_GC "node.gc"             /* [want_free] -> status + segments_freed */

/* Snapshots and clones: a snapshot is named "VOL@SNAP" (field "snap"). */
#define CONTROL_CMD_SNAP_CREATE "snap.create"     /* snap -> snapshot */
#define CONTROL_CMD_SNAP_LIST "snap.list"         /* name -> snapshots: [snapshot...] */
#define CONTROL_CMD_SNAP_RM "snap.rm"             /* snap */
#define CONTROL_CMD_SNAP_ROLLBACK "snap.rollback" /* snap, force -> volume */
#define CONTROL_CMD_CLONE "volume.clone"          /* snap, name (the new volume) -> volume */
#define CONTROL_CMD_FLATTEN "volume.flatten"      /* name: starts it -> flatten */
#define CONTROL_CMD_FLATTEN_STATUS "volume.flatten_status" /* name -> flatten */
#define CONTROL_CMD_DIFF "volume.diff"            /* [from], to -> extents */
#define CONTROL_CMD_VHOST_START "vhost.start"     /* name, socket: vhost-user-blk export */
#define CONTROL_CMD_VHOST_STOP "vhost.stop"       /* name */
#define CONTROL_CMD_VHOST_LIST "vhost.list"       /* -> exports: [{volume, socket, ...}] */

/* The cluster (docs/cluster.md): answered by every node of it; a node without etcd
 * answers cluster.status with "cluster": null and refuses the others (ENOTSUP). */
#define CONTROL_CMD_CLUSTER_STATUS "cluster.status" /* -> cluster, lease, io, nodes */
#define CONTROL_CMD_CLUSTER_NODES "cluster.nodes"   /* -> nodes: [node...] */
#define CONTROL_CMD_NODE_OUT "cluster.node_out"     /* id: mark the node out */
#define CONTROL_CMD_NODE_HELD "node.held"           /* -> held: [copy...] held for others */
#define CONTROL_CMD_NODE_IN "cluster.node_in"       /* id: take the out mark away */
/* volumes in the cluster map (docs/cluster.md, "Volumes"); volume.create takes
 * "replicas" too, and volume objects carry "cluster": {replicas, owner, epoch, ...} */
#define CONTROL_CMD_VOLUME_CLAIM "volume.claim"     /* name: this node owns it -> epoch */
#define CONTROL_CMD_VOLUME_RELEASE "volume.release" /* name: gives its claim up */
/* name, op ("open", "seal", "delete", "list"), segment ("FAMILY.SEQ", hex), holders
 * ("a,b,c"), length, epoch (absent: this node's claim): the segment lifecycle
 * records replication writes, reachable for tests and operators -> segments */
#define CONTROL_CMD_VOLUME_SEGMENT "volume.segment"
/* [name]: a scrub pass over that replicated volume this node owns (every one without
 * a name), answered once it ended -> scrub: [report...] (docs/control.md) */
#define CONTROL_CMD_VOLUME_SCRUB "volume.scrub"

/* The socket both sides use when not told otherwise:
 * $XDG_RUNTIME_DIR/quill/quilld.sock, or /tmp/quill-$UID/quilld.sock. Writes the
 * path into buf; returns buf, or NULL if it does not fit. */
char *control_default_socket(char *buf, size_t len);

#endif
