/* tests/unit/replication/test_encode.c — replication/encode.c: how many segments are
 * encoded at once. */
#include "replication/encode.h"

#include <criterion/criterion.h>

Test(encode, one_job_at_a_time_while_few_segments_wait)
{
	/* what the scan after a few seals finds while a 4 KiB writer runs: started
	 * together they queued 16 MiB of reads and images ahead of its requests */
	for (size_t waiting = 0; waiting < ENCODE_BACKLOG_STEP; waiting++)
		cr_expect_eq(encoder_jobs_allowed(waiting), 1u, "%zu waiting", waiting);
}

Test(encode, a_backlog_gets_more_jobs_up_to_the_bound)
{
	unsigned last = 1;

	cr_expect_eq(encoder_jobs_allowed(ENCODE_BACKLOG_STEP), 2u);
	for (size_t waiting = 0; waiting < 100 * ENCODE_BACKLOG_STEP; waiting++) {
		unsigned n = encoder_jobs_allowed(waiting);

		cr_assert(n >= last, "fewer jobs with more waiting (%zu)", waiting);
		cr_assert(n <= ENCODE_INFLIGHT, "%u jobs: over the memory bound", n);
		last = n;
	}
	cr_expect_eq(last, ENCODE_INFLIGHT, "a long backlog gets every job");
	cr_expect_eq(encoder_jobs_allowed((size_t)-1), ENCODE_INFLIGHT);
}
