/* cluster/placement.h — where a segment's copies go: rendezvous (highest random
 * weight) hashing over the cluster map's usable nodes, one copy per failure domain.
 *
 * Pure functions of their arguments: every node that sees the same map computes the
 * same holders, in the same order (the first is the preferred one). Each node scores
 * every segment id; a segment goes to the best-scoring node, then the best of the
 * nodes in other failure domains, and so on. A node that joins takes only the copies
 * it now wins; one that leaves gives up only the copies it held: nothing else moves
 * (docs/placement.md; tests/unit/cluster/test_placement.c measures it).
 *
 * Errors: -EINVAL (r is 0 or above PLACEMENT_MAX_COPIES, a node id repeats),
 * -ENOSPC (fewer distinct failure domains among the usable nodes than r).
 */
#ifndef QUILL_CLUSTER_PLACEMENT_H
#define QUILL_CLUSTER_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PLACEMENT_MAX_COPIES 32

struct placement_node {
	uint64_t id;     /* the node's cluster id */
	uint64_t domain; /* its failure domain (placement_domain_id of the name) */
	uint32_t weight; /* relative share of copies (e.g. capacity); 0 takes none */
	bool usable;     /* up and in: may receive new copies */
};

/* A failure domain's id from its name (a rack, a host, ...). */
uint64_t placement_domain_id(const char *name);

/* Distinct failure domains among the usable nodes of weight > 0. */
unsigned placement_domains(const struct placement_node *nodes, size_t n);

/* The key placement_pick takes for segment (family uid, sno): every placer of a
 * segment's copies or fragments (the owner, catch-up, the encoder) agrees on it. */
static inline uint64_t placement_seg_key(uint64_t uid, uint32_t sno)
{
	return uid ^ ((uint64_t)sno << 32 | sno);
}

/* The r holders of segment seg: their ids in out[0..r-1], best first, each of its own
 * failure domain. Returns 0 or an error above. */
int placement_pick(const struct placement_node *nodes, size_t n, uint64_t seg, unsigned r,
		   uint64_t *out);

/* The most volume data domains of capacity cap[0..n-1] (bytes each) can hold under a
 * policy that writes `copies` pieces of 1/k of the data each, one per failure domain:
 * replicas R (copies R, k 1) or erasure code K+M (copies K+M, k K). It is k·F for the
 * largest F with copies·F <= sum of min(cap[i], F): a domain holds at most one piece
 * of each segment, so a domain larger than the others cannot use its excess (with as
 * many domains as copies, the smallest bounds them all). 0 with fewer than `copies`
 * domains of capacity. What the domains allow, whatever the placement: placement_pick
 * weighs every node 1 today, so unequal nodes fill unequally (docs/cluster.md, "Space"). */
uint64_t placement_usable(const uint64_t *cap, size_t n, unsigned copies, unsigned k);

#endif
