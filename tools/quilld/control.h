/* tools/quilld/control.h — quilld's control socket (tools/control_proto.h). */
#ifndef QUILL_QUILLD_CONTROL_H
#define QUILL_QUILLD_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct blk_guard;
struct cluster;
struct control;
struct engine_stats;
struct layout_space;
struct replicas;
struct orphans;
struct engine;
struct loop;
struct vhost_server;

struct control_opts {
	const char *path;       /* the socket */
	struct engine *eng;
	const char *nbd_tcp;    /* "ADDR:PORT" of the NBD server, or NULL: for node.status */
	const char *nbd_unix;   /* its unix socket, or NULL */
	struct vhost_server *vhost; /* what vhost.* commands drive, or NULL (refused) */
	struct cluster *cluster; /* what cluster.* commands show and drive, or NULL: a
				    single node */
	struct blk_guard *guard; /* the node's guard over client I/O, or NULL */
	struct replicas *replicas; /* this node's replicated families, or NULL */
	struct orphans *orphans;   /* the held copies' clean-up (node held --orphans), or NULL */
	/* a create or claim made this node the owner of a volume at epoch: its copies
	 * start now (replicas 0: the map says how many; min_replicas 0: the map's, or
	 * layout_min_replicas) */
	void (*volume_owned)(void *arg, const char *name, int64_t epoch, unsigned replicas,
			     unsigned min_replicas);
	/* is name being taken over here (its owner died elsewhere)? its step then */
	bool (*volume_takeover)(void *arg, const char *name, char *step, size_t len);
	/* the removal of name, a volume of the map, starts here (on) or has ended: no
	 * takeover of it may start meanwhile (takeovers_remove_mark) */
	void (*volume_removing)(void *arg, const char *name, bool on);
	void *volume_owned_arg;
};

/* Listens on opts->path (a stale socket file is replaced; a live one is -EADDRINUSE),
 * mode 0600. Runs on the loop's (= the engine's) thread. */
int control_create(struct loop *lp, const struct control_opts *opts, struct control **out);
void control_destroy(struct control *c); /* NULL ok; removes the socket file */

/* This node's space (docs/cluster.md, "Space") from its engine's stats: raw (the
 * store), used (its segments in use: this node's log, copies and fragments of other
 * nodes' segments) and usable (what the store holds of any node's data: the cleaner
 * keeps the rest). The node's space record in the cluster (quilld's sample) and the
 * raw_* figures of `quill status` both come from here. */
void control_node_space(const struct engine_stats *st, struct layout_space *out);

#endif
