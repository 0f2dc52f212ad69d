/* cluster/placement.c — weighted rendezvous hashing with failure domains; see
 * placement.h.
 *
 * A node's score for a segment is weight / -ln(u), u a uniform draw in (0, 1) from
 * the hash of (segment, node): the node with the largest score wins, each node with
 * the probability of its share of the total weight, and the winner of a segment only
 * changes when the winner itself leaves or a newcomer outscores it. Holders are picked
 * best first, skipping nodes of a domain already chosen: O(n·r) per segment.
 */
#include "cluster/placement.h"

#include <errno.h>
#include <math.h>

/* splitmix64's finalizer: a bijection of 64 bits that mixes every input bit. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 27;
	x *= UINT64_C(0x94d049bb133111eb);
	x ^= x >> 31;
	return x;
}

uint64_t placement_domain_id(const char *name)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a, then mixed */

	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * UINT64_C(0x100000001b3);
	return mix64(h);
}

static double score(const struct placement_node *node, uint64_t seg)
{
	uint64_t h = mix64(seg ^ mix64(node->id + UINT64_C(0x9e3779b97f4a7c15)));
	double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* (0, 1) */

	return (double)node->weight / -log(u);
}

static bool candidate(const struct placement_node *node)
{
	return node->usable && node->weight > 0;
}

unsigned placement_domains(const struct placement_node *nodes, size_t n)
{
	unsigned count = 0;

	for (size_t i = 0; i < n; i++) {
		bool seen = false;

		if (!candidate(&nodes[i]))
			continue;
		for (size_t j = 0; j < i && !seen; j++)
			seen = candidate(&nodes[j]) && nodes[j].domain == nodes[i].domain;
		count += !seen;
	}
	return count;
}

static bool ids_unique(const struct placement_node *nodes, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < i; j++)
			if (nodes[i].id == nodes[j].id)
				return false;
	return true;
}

/* Is domain one of the first k picks'? */
static bool domain_taken(const struct placement_node *nodes, const size_t *picked, unsigned k,
			 uint64_t domain)
{
	for (unsigned i = 0; i < k; i++)
		if (nodes[picked[i]].domain == domain)
			return true;
	return false;
}

int placement_pick(const struct placement_node *nodes, size_t n, uint64_t seg, unsigned r,
		   uint64_t *out)
{
	size_t picked[PLACEMENT_MAX_COPIES];

	if (r == 0 || r > PLACEMENT_MAX_COPIES || !ids_unique(nodes, n))
		return -EINVAL;
	if (placement_domains(nodes, n) < r)
		return -ENOSPC;
	for (unsigned k = 0; k < r; k++) {
		size_t best = n;
		double best_score = 0;

		for (size_t i = 0; i < n; i++) {
			double s;

			if (!candidate(&nodes[i]) || domain_taken(nodes, picked, k, nodes[i].domain))
				continue;
			s = score(&nodes[i], seg);
			/* ties (all but impossible) go to the smaller id: still one answer */
			if (best == n || s > best_score ||
			    (s == best_score && nodes[i].id < nodes[best].id)) {
				best = i;
				best_score = s;
			}
		}
		picked[k] = best; /* one exists: enough domains were counted */
		out[k] = nodes[best].id;
	}
	return 0;
}

/* F = min over j < copies of (total - the j largest) / (copies - j): capping the j
 * largest domains at F, the others must carry copies - j pieces of each F (the
 * minimum is reached at the j for which exactly those j exceed F). Only the `copies`
 * largest are needed: kept sorted, largest first, by insertion. */
uint64_t placement_usable(const uint64_t *cap, size_t n, unsigned copies, unsigned k)
{
	uint64_t big[PLACEMENT_MAX_COPIES] = { 0 }, total = 0, top = 0, best = UINT64_MAX;
	size_t nd = 0;

	if (!copies || copies > PLACEMENT_MAX_COPIES || !k)
		return 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t c = cap[i];

		if (!c)
			continue;
		nd++;
		total += c;
		for (unsigned j = 0; j < copies; j++) {
			if (c > big[j]) {
				uint64_t t = big[j];

				big[j] = c;
				c = t;
			}
		}
	}
	if (nd < copies)
		return 0;
	for (unsigned j = 0; j < copies; j++) {
		uint64_t f = (total - top) / (copies - j);

		if (f < best)
			best = f;
		top += big[j];
	}
	return best * k;
}
