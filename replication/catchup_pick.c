/* replication/catchup_pick.c — where catch-up puts a copy or a rebuilt fragment
 * (catchup.h: catchup_pick, catchup_pick_frag): placement's rendezvous choice for the
 * segment among the usable candidates of a failure domain it does not use yet. Pure:
 * unit-tested by tests/unit/replication/test_catchup.c.
 */
#include "replication/catchup.h"

#include <stdlib.h>
#include <string.h>

#include "cluster/placement.h"

static const char *cand_domain(const struct catchup_cand *k)
{
	return k->domain && k->domain[0] ? k->domain : k->id;
}

/* The failure domain of holder id (self's, a candidate's, else its own id). */
static uint64_t holder_domain(const char *id, const struct catchup_cand *cands, size_t n,
			      const char *self, const char *self_domain)
{
	if (strcmp(id, self) == 0)
		return placement_domain_id(self_domain && self_domain[0] ? self_domain : self);
	for (size_t i = 0; i < n; i++)
		if (strcmp(cands[i].id, id) == 0)
			return placement_domain_id(cand_domain(&cands[i]));
	return placement_domain_id(id);
}

/* Whether candidate c fits: usable, not self, not named by taken(), of none of the
 * failure domains used[nused]. */
static bool cand_fits(const struct catchup_cand *c, const uint64_t *used, unsigned nused,
		      bool (*taken)(const void *ctx, const char *id), const void *ctx,
		      const char *self)
{
	uint64_t domain = placement_domain_id(cand_domain(c));

	if (!c->usable || strcmp(c->id, self) == 0 || taken(ctx, c->id))
		return false;
	for (unsigned h = 0; h < nused; h++)
		if (domain == used[h])
			return false;
	return true;
}

/* The rendezvous choice for the segment (family, seq) among the cands that fit
 * (cand_fits); its index, or -1. */
static int pick_core(uint64_t family, uint32_t seq, const uint64_t *used, unsigned nused,
		     bool (*taken)(const void *ctx, const char *id), const void *ctx,
		     const struct catchup_cand *cands, size_t n, const char *self)
{
	struct placement_node *pn = calloc(n ? n : 1, sizeof(*pn));
	uint64_t picked;
	int best = -1;

	if (!pn)
		return -1;
	for (size_t i = 0; i < n; i++) {
		pn[i].id = placement_domain_id(cands[i].id);
		pn[i].domain = placement_domain_id(cand_domain(&cands[i]));
		pn[i].weight = 1;
		pn[i].usable = cand_fits(&cands[i], used, nused, taken, ctx, self);
	}
	/* the same key as replica_place(): the node first placed there wins again */
	if (placement_domains(pn, n) > 0 &&
	    placement_pick(pn, n, placement_seg_key(family, seq), 1, &picked) == 0)
		for (size_t i = 0; i < n && best < 0; i++)
			if (pn[i].usable && pn[i].id == picked)
				best = (int)i;
	free(pn);
	return best;
}

static bool holder_taken(const void *ctx, const char *id)
{
	return layout_segment_names(ctx, id);
}

int catchup_pick(const struct layout_segment *rec, const struct catchup_cand *cands, size_t n,
		 const char *self, const char *self_domain)
{
	uint64_t used[LAYOUT_MAX_HOLDERS];

	for (unsigned h = 0; h < rec->nholders; h++)
		used[h] = holder_domain(rec->holders[h], cands, n, self, self_domain);
	return pick_core(rec->id.family, rec->id.seq, used, rec->nholders, holder_taken, rec,
			 cands, n, self);
}

/* A node that holds a fragment of the stripe, or a replica of the segment (the
 * replicas kept beside the stripe, QUILL_EC_KEEP_REPLICAS=1): the rebuild's mark
 * (CLUSTER_VOL_SEG_COPY START) cannot name a holder, and without it the new holder's
 * orphan check may drop the fragment between its put and its record. */
static bool frag_taken(const void *ctx, const char *id)
{
	const struct layout_segment *rec = ctx;
	const struct layout_stripe *st = &rec->stripe;

	for (unsigned i = 0; i < st->k + st->m; i++)
		if (strcmp(st->frags[i], id) == 0)
			return true;
	return layout_segment_names(rec, id);
}

/* The failure domains of the stripe's fragments other than `lost`, into used: their
 * count. */
static unsigned frag_domains(const struct layout_segment *rec, unsigned lost,
			     const struct catchup_cand *cands, size_t n, uint64_t *used)
{
	const struct layout_stripe *st = &rec->stripe;
	unsigned nused = 0;

	for (unsigned i = 0; i < st->k + st->m && i < LAYOUT_EC_N_MAX; i++)
		if (i != lost) /* (no node is "": every candidate may be picked, self too) */
			used[nused++] = holder_domain(st->frags[i], cands, n, "", NULL);
	return nused;
}

int catchup_pick_frag(const struct layout_segment *rec, unsigned lost,
		      const struct catchup_cand *cands, size_t n)
{
	uint64_t used[LAYOUT_EC_N_MAX];
	unsigned nused = frag_domains(rec, lost, cands, n, used);

	return pick_core(rec->id.family, rec->id.seq, used, nused, frag_taken, rec, cands, n,
			 "");
}

