/* tools/bench_hist.h — a latency histogram for the benchmarks.
 *
 * Log-linear buckets (16 per power of two, so a value is known to within 1/16), from
 * 1 ns to about 18 minutes; constant memory, O(1) insert.
 */
#ifndef QUILL_TOOLS_BENCH_HIST_H
#define QUILL_TOOLS_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 4u
#define HIST_BUCKETS (40u << HIST_SUB_BITS)

struct hist {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t max_ns;
	uint64_t bucket[HIST_BUCKETS];
};

void hist_reset(struct hist *h);
void hist_add(struct hist *h, uint64_t ns);
double hist_mean_ns(const struct hist *h);
/* The smallest bucket upper bound at or below which pct percent of the values lie
 * (pct in (0, 100]); 0 when empty. */
uint64_t hist_percentile_ns(const struct hist *h, double pct);

#endif
