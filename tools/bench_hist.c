/* tools/bench_hist.c — see bench_hist.h. */
#include "bench_hist.h"

#include <string.h>

#define SUB (1u << HIST_SUB_BITS)

void hist_reset(struct hist *h)
{
	memset(h, 0, sizeof(*h));
}

/* Values below SUB get a bucket each; above, bucket = (exponent, top bits). */
static unsigned bucket_of(uint64_t v)
{
	unsigned msb, idx;

	if (v < SUB)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	idx = ((msb - HIST_SUB_BITS + 1) << HIST_SUB_BITS) +
	      (unsigned)((v >> (msb - HIST_SUB_BITS)) & (SUB - 1));
	return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* The largest value that falls into bucket idx. */
static uint64_t bucket_top(unsigned idx)
{
	unsigned exp, sub;

	if (idx < SUB)
		return idx;
	exp = (idx >> HIST_SUB_BITS) + HIST_SUB_BITS - 1;
	sub = idx & (SUB - 1);
	return (((uint64_t)(SUB + sub + 1)) << (exp - HIST_SUB_BITS)) - 1;
}

void hist_add(struct hist *h, uint64_t ns)
{
	h->count++;
	h->sum_ns += ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
	h->bucket[bucket_of(ns)]++;
}

double hist_mean_ns(const struct hist *h)
{
	return h->count ? (double)h->sum_ns / (double)h->count : 0.0;
}

uint64_t hist_percentile_ns(const struct hist *h, double pct)
{
	uint64_t want, seen = 0;

	if (!h->count)
		return 0;
	want = (uint64_t)((double)h->count * pct / 100.0 + 0.5);
	if (want == 0)
		want = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= want)
			return bucket_top(i) < h->max_ns ? bucket_top(i) : h->max_ns;
	}
	return h->max_ns;
}
