/* cluster/layout.h — quill's keys and values in etcd (spec: docs/cluster.md).
 *
 * Every key of a cluster starts with its prefix (default "/quill/default/"), the one
 * range the etcd role of its nodes may touch:
 *   PREFIX members/ID   the node's record, persistent: the cluster knows the node
 *   PREFIX alive/ID     the same record under the node's lease: the node is up
 *   PREFIX out/ID       an operator marked the node out: {"since": UNIX_SECONDS}
 * (volume owners and epochs, then segment records, will live under PREFIX volumes/
 * and PREFIX segments/.) Values are JSON objects; decoders ignore fields they do not
 * know, so a newer node can add some.
 */
#ifndef QUILL_CLUSTER_LAYOUT_H
#define QUILL_CLUSTER_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LAYOUT_ID_MAX 63       /* node ids and failure domains: [A-Za-z0-9._-] */
#define LAYOUT_ADDR_MAX 255    /* addresses: "HOST:PORT" or a socket path */
#define LAYOUT_PREFIX_MAX 200

enum layout_kind {
	LAYOUT_MEMBER,
	LAYOUT_ALIVE,
	LAYOUT_OUT,
};

/* A node id or failure domain: 1..LAYOUT_ID_MAX of [A-Za-z0-9._-], not "." or "..". */
bool layout_id_valid(const char *id);
/* A prefix: starts and ends with '/', at most LAYOUT_PREFIX_MAX bytes, no "//" and no
 * control characters. */
bool layout_prefix_valid(const char *prefix);

/* PREFIX + the kind's folder ("members/", ...) into buf: 0, or -ENAMETOOLONG. */
int layout_dir(char *buf, size_t len, const char *prefix, enum layout_kind kind);
/* PREFIX + folder + id: 0, -EINVAL a bad id, -ENAMETOOLONG. */
int layout_key(char *buf, size_t len, const char *prefix, enum layout_kind kind,
	       const char *id);
/* The kind and id of a key under prefix: 0, or -ENOENT a key that is not one of
 * these (another prefix, another folder, a bad id: callers skip it). */
int layout_key_parse(const char *prefix, const char *key, size_t key_len,
		     enum layout_kind *kind, char id[LAYOUT_ID_MAX + 1]);

/* A node's record (members/ and alive/). */
struct layout_node {
	char id[LAYOUT_ID_MAX + 1];
	char domain[LAYOUT_ID_MAX + 1];   /* failure domain */
	char nbd[LAYOUT_ADDR_MAX + 1];     /* "HOST:PORT" or "" */
	char control[LAYOUT_ADDR_MAX + 1]; /* its control socket (on its host) */
	char peer[LAYOUT_ADDR_MAX + 1];    /* peer protocol "HOST:PORT", "" until it has one */
	uint32_t format_version;           /* the on-disk format it writes */
	uint32_t protocol_version;         /* the cluster protocol it speaks */
	int64_t up_since;                  /* unix seconds, for people only */
};

/* A new NUL-terminated JSON text (free() it), or NULL on ENOMEM. */
char *layout_node_encode(const struct layout_node *node);
/* 0, or -EPROTO: not JSON, a field missing or of the wrong type, a bad id or domain,
 * a string too long. */
int layout_node_decode(const char *text, size_t len, struct layout_node *node);

/* Are two nodes' versions compatible (today: equal)? */
bool layout_compatible(const struct layout_node *a, const struct layout_node *b);

char *layout_out_encode(int64_t since);
int layout_out_decode(const char *text, size_t len, int64_t *since);

#endif
