/* cluster/layout.h — quill's keys and values in etcd (spec: docs/cluster.md).
 *
 * Every key of a cluster starts with its prefix (default "/quill/default/"), the one
 * range the etcd role of its nodes may touch:
 *   PREFIX members/ID   the node's record, persistent: the cluster knows the node
 *   PREFIX alive/ID     the same record under the node's lease: the node is up
 *   PREFIX out/ID       an operator marked the node out: {"since": UNIX_SECONDS}
 *   PREFIX space/ID     the node's space, under its lease: {"raw", "used", "usable"}
 *   PREFIX volumes/NAME the volume's record, persistent: size, replicas, epoch, ...
 *   PREFIX owners/NAME  the owner's claim, under the owner's lease: {"node", "epoch"}
 *   PREFIX segments/NAME/FFFFFFFFFFFFFFFF.SSSSSSSS  a segment record (family uid and
 *                       segment number in hex): open (holders) or sealed (length)
 * Values are JSON objects; decoders ignore fields they do not know, so a newer node
 * can add some.
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
	LAYOUT_VOLUME, /* the id is a volume name (the engine's rule is the same charset) */
	LAYOUT_OWNER,
	LAYOUT_SPACE,  /* the id is a node's */
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

/* A node's space (space/ID, under its lease; docs/cluster.md, "Space"), bytes: its
 * store, the slots in use (its log, copies and fragments it holds for others), and
 * what the store holds of any data with the cleaner's share set aside. */
struct layout_space {
	uint64_t raw;
	uint64_t used;   /* <= raw */
	uint64_t usable; /* <= raw */
};
char *layout_space_encode(const struct layout_space *sp);
/* 0, or -EPROTO: a field missing, negative, or used or usable above raw. */
int layout_space_decode(const char *text, size_t len, struct layout_space *sp);

/* ---- volumes (docs/cluster.md, "Volumes") ---- */

#define LAYOUT_MAX_REPLICAS 16u
#define LAYOUT_MAX_HOLDERS LAYOUT_MAX_REPLICAS

enum layout_volume_state {
	LAYOUT_VOL_CREATING, /* the record is taken; the owner is creating the volume */
	LAYOUT_VOL_READY,
};

/* A clone's base: the snapshot of another family its unwritten ranges read through
 * (docs/cluster.md, "Clones across owners"). volume[0] == '\0': none. */
struct layout_base {
	char volume[LAYOUT_ID_MAX + 1]; /* the parent volume (the family's name in the map) */
	char snap[LAYOUT_ID_MAX + 1];   /* the snapshot, for people and refusals */
	uint64_t family;                /* the parent family's uid (a LAYER_READ's volume_id) */
	uint64_t layer;                 /* the snapshot's layer id (its `layer`) */
};

/* A volume's record (volumes/NAME). */
struct layout_volume {
	char name[LAYOUT_ID_MAX + 1];
	uint64_t size;                  /* bytes, at creation */
	uint32_t sector_size;           /* 512 or 4096 */
	uint32_t replicas;              /* R */
	uint32_t min_replicas;          /* copies below which writes wait */
	/* An erasure-coded volume's code K+M (docs/erasure-coding.md), 0 and 0 for a
	 * replicated one. Its open segment has replicas = min_replicas = M+1 copies. */
	uint32_t ec_k, ec_m;
	char owner[LAYOUT_ID_MAX + 1];  /* the node of the last claim (live or not) */
	int64_t epoch;                  /* raised by every claim; 1 at creation */
	int64_t created;                /* unix seconds, for people */
	enum layout_volume_state state;
	struct layout_base base;        /* a clone's; left out of the text when none */
};

/* min_replicas for R copies: R-1 for R >= 3, R for R <= 2. */
uint32_t layout_min_replicas(uint32_t replicas);

/* The erasure codes a volume can have: K data and M parity fragments (the codec's
 * bounds, replication/ec.h). */
#define LAYOUT_EC_K_MAX 16u
#define LAYOUT_EC_M_MAX 4u
#define LAYOUT_EC_N_MAX 20u
/* "K+M" (as `--ec` and the record write it) into *k and *m: 0, or -EINVAL for any
 * other text or a code out of bounds. */
int layout_ec_parse(const char *text, uint32_t *k, uint32_t *m);
char *layout_volume_encode(const struct layout_volume *vol);
/* -EPROTO also for replicas outside 1..LAYOUT_MAX_REPLICAS, an epoch < 1, a bad name,
 * an `ec` that layout_ec_parse refuses or whose M+1 is not replicas and min_replicas,
 * a base that is not an object of a valid volume and snapshot name and a family and
 * layer of 1..INT64_MAX. A record without `base` decodes with none. */
int layout_volume_decode(const char *text, size_t len, struct layout_volume *vol);

/* The owner's claim (owners/NAME, under its lease). Encoded the same way every time
 * (fields in this order, no spaces): the fencing compares of a txn compare its exact
 * bytes, so that one holds only while this node's claim at this epoch is alive. */
struct layout_claim {
	char node[LAYOUT_ID_MAX + 1];
	int64_t epoch;
};
char *layout_claim_encode(const struct layout_claim *claim);
int layout_claim_decode(const char *text, size_t len, struct layout_claim *claim);
/* Are node self's local layers of a volume current under its claim at epoch, given
 * prev, the claim that one replaced (the record's owner and epoch the claim txn read)?
 * Only under unbroken ownership (docs/cluster.md, "Unbroken ownership"): epochs rise by
 * exactly one per claim, so prev being self's own at epoch - 1 proves nobody else
 * claimed, nor wrote, in between; prev at epoch itself is the claim self holds already.
 * Anything else (another node's, a gap, no prev: node "") means the volume lived
 * elsewhere meanwhile, and self's layers are stale. */
bool layout_local_current(const char *self, const struct layout_claim *prev, int64_t epoch);

/* A segment's id, opaque here: (family uid, segment number). */
struct layout_segid {
	uint64_t family;
	uint32_t seq;
};

enum layout_segment_state { LAYOUT_SEG_OPEN, LAYOUT_SEG_SEALED };

/* A segment record (segments/NAME/ID). */
/* A sealed segment encoded K+M (docs/erasure-coding.md): fragment i (0..k-1 data,
 * k..k+m-1 parity) is held by node frags[i] and its fragment CRC32C is crcs[i] (the
 * image header's frag_crc). k == 0: no stripe. */
struct layout_stripe {
	unsigned k, m;
	char frags[LAYOUT_EC_N_MAX][LAYOUT_ID_MAX + 1];
	uint32_t crcs[LAYOUT_EC_N_MAX];
};

struct layout_segment {
	struct layout_segid id;
	enum layout_segment_state state;
	uint64_t length;  /* sealed: bytes; open: 0 */
	int64_t epoch;    /* the epoch it was last recorded under */
	unsigned nholders;
	char holders[LAYOUT_MAX_HOLDERS][LAYOUT_ID_MAX + 1];
	/* sealed only: nodes a copy is being made on (catch-up, docs/replication.md):
	 * never full members (a takeover ignores them), kept by their orphan check.
	 * Encoded only when not empty ("copying": [...]). */
	unsigned ncopying;
	char copying[LAYOUT_MAX_HOLDERS][LAYOUT_ID_MAX + 1];
	/* sealed only: its stripe, once every fragment is durable ("stripe": {"k", "m",
	 * "frags": [[node, crc], ...]}); encoded only when k > 0. Written by the owner's
	 * encoder (replication/encode.h, CLUSTER_VOL_SEG_STRIPE); holders are kept, or
	 * emptied by the same write when the replicas go (drop_replicas). */
	struct layout_stripe stripe;
};
char *layout_segment_encode(const struct layout_segment *seg);
/* Does seg name node id among its holders? (copying is not counted) */
bool layout_segment_names(const struct layout_segment *seg, const char *id);
/* Does seg name node id among the nodes a copy is being made on? */
bool layout_segment_copying(const struct layout_segment *seg, const char *id);
/* The id is not in the value (it is the key's). */
int layout_segment_decode(const char *text, size_t len, struct layout_segment *seg);
/* Of segs[0..n-1] (one family's records), those a node self that lost the family keeps
 * as copies: the ones naming it as a holder. A sealed one at its recorded length in
 * blocks of block_size (what a takeover compares a copy with: a tail past it was
 * never acknowledged); an open one (its owner released it, the next has not sealed
 * it yet: it holds acknowledged writes, and the takeover seals it at the length
 * every holder has) at UINT32_MAX, where it ends. Their numbers into keep[], lengths
 * into keep_len[] (n each): their count. */
size_t layout_segments_kept(const struct layout_segment *segs, size_t n, const char *self,
			    uint32_t block_size, uint32_t *keep, uint32_t *keep_len);

/* PREFIX segments/VOL/ (the range of one volume's records): 0, -EINVAL, -ENAMETOOLONG. */
int layout_segment_dir(char *buf, size_t len, const char *prefix, const char *vol);
/* PREFIX segments/VOL/FFFFFFFFFFFFFFFF.SSSSSSSS: fixed-width hex, so that keys sort as
 * (family, seq). */
int layout_segment_key(char *buf, size_t len, const char *prefix, const char *vol,
		       const struct layout_segid *id);
/* The id of a key under PREFIX segments/VOL/: 0 or -ENOENT. */
int layout_segment_key_parse(const char *prefix, const char *vol, const char *key,
			     size_t key_len, struct layout_segid *id);

#endif
