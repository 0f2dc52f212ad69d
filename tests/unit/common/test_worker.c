/* tests/unit/common/test_worker.c — common/worker.c: jobs run on the worker's thread,
 * in the order submitted, and each done() once on the loop's thread; worker_destroy
 * finishes the job it runs and cancels the ones it did not start.
 */
#include "common/worker.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "common/loop.h"

#define NJOBS 100

struct tjob {
	struct worker_job wj;
	unsigned id;
	pthread_t ran_on;
	atomic_bool ran;
	unsigned dones;
	int res;
	unsigned done_order;
	unsigned sleep_ms;          /* run() sleeps that long once started */
};

static struct loop *lp;
static struct worker *w;
static struct tjob jobs[NJOBS];
static unsigned ndone, expect_done;
static pthread_t loop_thread;
static atomic_bool started;

static void job_run(void *arg)
{
	struct tjob *j = arg;

	j->ran_on = pthread_self();
	started = true;
	if (j->sleep_ms)
		usleep(j->sleep_ms * 1000u);
	j->ran = true;
}

static void job_done(void *arg, int res)
{
	struct tjob *j = arg;

	cr_assert(pthread_equal(pthread_self(), loop_thread), "done() off the loop's thread");
	j->dones++;
	j->res = res;
	j->done_order = ndone++;
	if (ndone == expect_done)
		loop_stop(lp);
}

static void submit(unsigned i, unsigned sleep_ms)
{
	jobs[i] = (struct tjob){ .id = i, .sleep_ms = sleep_ms };
	jobs[i].wj = (struct worker_job){ .run = job_run, .done = job_done, .arg = &jobs[i] };
	worker_submit(w, &jobs[i].wj);
}

static void setup(void)
{
	memset(jobs, 0, sizeof(jobs));
	ndone = expect_done = 0;
	started = false;
	loop_thread = pthread_self();
	cr_assert_eq(loop_create(&lp), 0);
	cr_assert_eq(worker_create(lp, &w), 0);
}

static void teardown(void)
{
	worker_destroy(w); /* NULL after a test that destroyed it */
	loop_destroy(lp);
}

TestSuite(worker, .init = setup, .fini = teardown);

Test(worker, jobs_run_off_the_loop_and_end_on_it_in_order)
{
	expect_done = NJOBS;
	for (unsigned i = 0; i < NJOBS; i++)
		submit(i, 0);
	cr_assert_eq(ndone, 0, "a done() ran inside worker_submit");
	cr_assert_eq(loop_run(lp), 0);
	for (unsigned i = 0; i < NJOBS; i++) {
		cr_assert(jobs[i].ran, "job %u did not run", i);
		cr_assert_not(pthread_equal(jobs[i].ran_on, loop_thread),
			      "job %u ran on the loop's thread", i);
		cr_assert_eq(jobs[i].dones, 1, "job %u done %u times", i, jobs[i].dones);
		cr_assert_eq(jobs[i].res, 0);
		cr_assert_eq(jobs[i].done_order, i, "job %u done as the %u-th", i,
			     jobs[i].done_order);
	}
}

Test(worker, destroy_finishes_the_running_job_and_cancels_the_rest)
{
	/* long enough for the destroy to be asked while it runs, on a loaded machine too
	 * (its start is waited for below; only the destroy's call is not) */
	submit(0, 1000);
	submit(1, 0);
	submit(2, 0);
	while (!started)
		usleep(1000);
	worker_destroy(w);
	w = NULL;
	cr_assert(jobs[0].ran);
	cr_assert_eq(jobs[0].dones, 1);
	cr_assert_eq(jobs[0].res, 0, "the job that ran was not done with 0");
	for (unsigned i = 1; i < 3; i++) {
		cr_assert_not(jobs[i].ran, "job %u ran after the destroy", i);
		cr_assert_eq(jobs[i].dones, 1, "job %u done %u times", i, jobs[i].dones);
		cr_assert_eq(jobs[i].res, -ECANCELED);
	}
	cr_assert_eq(jobs[1].done_order, 1, "the cancelled jobs' done() not in order");
}
