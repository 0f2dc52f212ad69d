/* common/worker.h — a thread for the CPU work a loop must not do itself: a whole
 * segment's erasure coding, decode or CRCs take milliseconds (an encoding's images,
 * a rebuild's images, a scrub's decode: replication/encode.c, fragbuild.c,
 * fragscrub.c), which would stall every connection of the loop's thread meanwhile.
 *
 * A job is handed over with worker_submit(): its run() is called on the worker's own
 * thread (jobs one at a time, in the order submitted), then its done() on the loop's
 * thread, woken through an eventfd the loop watches. Between the two the job and what
 * run() touches are the worker's: the loop leaves them alone (its owner, abandoned
 * meanwhile, lets done() free them).
 *
 * Contract:
 * - Threads: worker_create, worker_submit, worker_destroy and every done() on the
 *   loop's thread (the one that called worker_create: asserted); run() on the
 *   worker's, never two at once.
 * - done() runs exactly once per job submitted, never inside worker_submit: from the
 *   loop's callback on the eventfd (res 0, after its run() returned), jobs in the
 *   order submitted, several per wake-up when the worker ran them meanwhile; or from
 *   worker_destroy (below). done() may submit again, but not from worker_destroy's.
 * - worker_destroy: stops taking jobs, waits for the one running (at most one job's
 *   work), then calls, on the caller's thread and before it returns, done(0) of the
 *   jobs run and done(-ECANCELED) of the ones never started (their run() never runs),
 *   both in submission order. The worker is gone by then: no submit after it starts.
 */
#ifndef QUILL_COMMON_WORKER_H
#define QUILL_COMMON_WORKER_H

#include <stdint.h>

struct loop;
struct worker;

struct worker_job {
	void (*run)(void *arg);           /* the CPU work: touches only what arg owns */
	/* once, on the loop's thread: res 0 after run(); -ECANCELED when worker_destroy
	 * found it not run (run() never is, then) */
	void (*done)(void *arg, int res);
	void *arg;
	uint64_t run_ns;                  /* filled: run()'s CPU time (the thread's clock) */
	struct worker_job *next;          /* the worker's */
};

/* 0 or -errno (-ENOMEM, an eventfd or thread that cannot be made). */
int worker_create(struct loop *lp, struct worker **out);
/* Waits for the job running now (at most one job's work), then runs the done() of
 * every job submitted and not done yet: after run() if it ran, else with
 * -ECANCELED (such a done() must not submit: the worker is gone). NULL ok. On the
 * loop's thread. */
void worker_destroy(struct worker *w);
/* Queues job (run, done set: asserted; it stays the caller's memory until done()
 * runs, once, never inside this call). On the loop's thread, before worker_destroy. */
void worker_submit(struct worker *w, struct worker_job *job);

#endif
