/* replication/fragread.h — a fetch's blocks from the fragments of its segment's stripe
 * (docs/erasure-coding.md, "Reads from fragments"), for readaround.c when no replica
 * holder had them good (or first, with replica_opts.frags_first).
 *
 * A run of a striped segment is one piece of each data fragment it touches (ec_geom_run):
 * each is asked of its holder with FRAG_READ (the holder checks every block against its
 * fragment's CRC table; here each is checked again against the map's CRC). A fragment
 * that does not answer, answers an error or a block that fails is lost for this run:
 * the same rows (ec_pieces_rows_next) of every other fragment are read, and with at
 * most M lost the run's missing blocks are decoded (ec_decode), each checked against
 * its CRC; in ranges of rows of at most PEER_FRAG_READ_MAX_BLOCKS, one after the other
 * (a run across a fragment's end needs rows at both ends of every fragment, as many as
 * the run's blocks but more than a FRAG_READ apart when a fragment is larger).
 * This node's own fragment is read from its store (engine_frag_read), checked against
 * its table. The stripes seen (from the records, or recorded by this node's encoder)
 * are kept in memory: a segment number is never reused, and a stripe changes only
 * when a fragment of a node gone for good is rebuilt elsewhere (fragbuild.h).
 *
 * Threading: the loop's thread (the engine's). Nothing blocks.
 */
#ifndef QUILL_REPLICATION_FRAGREAD_H
#define QUILL_REPLICATION_FRAGREAD_H

#include <stdint.h>

#include "cluster/layout.h"
#include "engine/segment.h"
#include "replication/peer.h"
#include "replication/peer_proto.h"

struct replicas;
struct fragread;

/* A family's reads from fragments, for volume info (replica_status). */
struct fragread_status {
	uint64_t runs;      /* runs read from fragments */
	uint64_t requests;  /* FRAG_READs sent and local fragment reads */
	uint64_t degraded;  /* runs that needed other fragments than their data ones */
	uint64_t decodes;   /* runs rebuilt by a decode */
	uint64_t split;     /* degraded runs whose rows took more than one FRAG_READ range */
	uint64_t failed;    /* runs some wanted block of which no fragment gave */
};

/* The stripe of (uid, sno) as last seen: 0 and *st, *seg_blocks; -ENOENT. */
int fragread_stripe_get(const struct replicas *rs, uint64_t uid, uint32_t sno,
			struct layout_stripe *st, uint32_t *seg_blocks);
/* Keeps seg's stripe (a sealed record with one; others are ignored), replacing the one
 * kept (a fragment rebuilt elsewhere): 0 or -ENOMEM. */
int fragread_stripe_put(struct replicas *rs, const struct layout_segment *seg);
/* The segment is deleted: its stripe is forgotten (the table would grow otherwise). */
void fragread_stripe_forget(struct replicas *rs, uint64_t uid, uint32_t sno);
/* Frees the stripes kept and the codes (replica_destroy). */
void fragread_destroy_all(struct replicas *rs);

/* A segment op (rq: FRAG_READ, FRAG_VERIFY, FRAG_PUT with data, SEG_DELETE of a
 * fragment or of a copy) to the node `node`, fenced at the family uid's epoch: 0 and
 * cb(arg, ...) once (peer_request's contract), or -ENOTCONN (not connected), -errno. */
int fragread_request(struct replicas *rs, const char *node, uint64_t uid, int64_t epoch,
		     const struct peer_seg_req *rq, const struct iovec *data,
		     unsigned timeout_ms, peer_reply_cb cb, void *arg);

/* A FRAG_READ's answer (peer_reply_cb's res, payload, len) for nblocks blocks: 0 and
 * the blocks, each checked against the CRC it came with, copied to dst (NULL: not
 * copied); else the transport's error, the holder's refusal, or -EPROTO / -EILSEQ. */
int fragread_reply(int res, const void *payload, size_t len, uint32_t nblocks, void *dst);

/* A run of a striped segment to read. */
struct fragread_run {
	uint64_t uid;                 /* the segment: family ... */
	uint32_t sno;                 /* ... and number */
	int64_t epoch;                /* the family's, for the FRAG_READ frames */
	const struct layout_stripe *st;
	uint32_t seg_blocks;          /* the sealed length, blocks */
	uint32_t first, count;        /* the run: 1..SEG_FETCH_MAX_BLOCKS blocks */
	struct seg_fetch_block *const *want; /* count entries (below) */
	bool no_map_crcs; /* the blocks have no map CRC (a takeover's copy of the whole
			     segment): a block is good when its fragment's table says so,
			     a decoded one when its survivors were */
};
/* Reads the missing wanted blocks of run: want[i] is block first + i's entry, NULL when
 * it is not wanted or already good. The entries' dst and res are written (res 0 good,
 * -EILSEQ every copy read was bad, -EIO none could be read) until done(arg, why) runs,
 * once, never inside this call (why: the fragments lost and why, "" when none was).
 * 0, or -ENOMEM / -EINVAL (a stripe that does not hold) and done never runs. *out: the
 * read, for fragread_orphan. */
int fragread_start(struct replicas *rs, const struct fragread_run *run,
		   void (*done)(void *arg, const char *why), void *arg, struct fragread **out);
/* The reader goes away (the replicas close): done never runs, no dst is written; the
 * read frees itself once its requests end. */
void fragread_orphan(struct fragread *fr);

#endif
