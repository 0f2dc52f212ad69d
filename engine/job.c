/* engine/job.c — management calls as jobs that engine_poll() drives.
 *
 * A management call (volume delete and resize, snapshot create, remove and rollback,
 * clone, flatten start, the cleaner run by `quill gc`, a checkpoint) often has to wait:
 * for a volume's batches to retire, for a store flush, for a checkpoint to land, for the
 * cleaner. It must never wait by spinning engine_poll(): it is called from an event
 * loop's callback, and that loop also serves every client. So the call only checks its
 * arguments and queues a job; engine_poll() calls the job's step until the step returns
 * something other than ENG_JOB_WAIT, and then runs the job's completion once with it.
 *
 * A step is a small state machine (job->pc says where it goes on) built from the
 * shared waits below, each of which returns ENG_JOB_WAIT until its condition holds and
 * re-checks it at every poll. A step that commits re-checks what the call checked at
 * the start (names, attachments, children): things may have changed while it waited.
 * A layer a job works on is claimed (layer->job): a second management call on it is
 * refused with -EBUSY instead of interleaving with the first.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

int eng_job_start(struct engine *eng, struct eng_job *job, eng_job_step_fn step,
		  engine_cb cb, void *arg)
{
	struct eng_job **p;

	int r = !cb || !step ? -EINVAL : 0;

	for (size_t i = 0; i < ENG_JOB_MAX_LAYERS && r == 0; i++)
		if (job->layers[i] && job->layers[i]->job)
			r = -EBUSY;
	if (r < 0) {
		if (job->release)
			job->release(job);
		else
			free(job);
		return r;
	}
	job->eng = eng;
	job->step = step;
	job->cb = cb;
	job->arg = arg;
	for (size_t i = 0; i < ENG_JOB_MAX_LAYERS; i++)
		if (job->layers[i])
			job->layers[i]->job = job;
	for (p = &eng->jobs; *p; p = &(*p)->next)
		;
	*p = job; /* FIFO: jobs see the engine in the order they were called */
	job->next = NULL;
	return 0;
}

void eng_job_forget_layer(struct engine_volume *layer)
{
	struct eng_job *job = layer->job;

	if (!job)
		return;
	for (size_t i = 0; i < ENG_JOB_MAX_LAYERS; i++)
		if (job->layers[i] == layer)
			job->layers[i] = NULL;
	layer->job = NULL;
}

static void job_finish(struct eng_job *job, int res)
{
	engine_cb cb = job->cb;
	void *arg = job->arg;

	for (size_t i = 0; i < ENG_JOB_MAX_LAYERS; i++)
		if (job->layers[i])
			eng_job_forget_layer(job->layers[i]);
	if (job->release)
		job->release(job);
	else
		free(job);
	cb(arg, res);
}

static int run_step(struct eng_job *job)
{
	struct engine *eng = job->eng;
	int r;

	eng->job_running = job;
	r = job->step(job);
	eng->job_running = NULL;
	return r;
}

int eng_jobs_run(struct engine *eng)
{
	struct eng_job **p = &eng->jobs;
	int n = 0;

	/* A checkpoint taking its chunks in slices waits for no job, and no job step runs
	 * meanwhile: a step changes maps outside the log (a merge, a resize, a snapshot's
	 * or a rollback's new layer, a delete) together with the records its ops carry,
	 * and one checkpoint must hold all of such a change or none of it. Changes through
	 * the log may straddle the slices: replay applies them again (checkpoint.c). */
	if (eng->ckpt_capturing)
		return 0;
	while (*p) {
		struct eng_job *job = *p;
		int r;

		if (eng->mc_owner && job != eng->mc_owner) {
			p = &job->next; /* as if the committing step were still running */
			continue;
		}
		r = job->ending ? job->result : run_step(job);

		if (r == ENG_JOB_WAIT || job->io_pending) {
			/* its records are not durable yet: the answer waits for them */
			if (r != ENG_JOB_WAIT && !job->ending) {
				job->ending = true;
				job->result = r;
			}
			p = &job->next;
			continue;
		}
		*p = job->next; /* unlinked first: the completion may start another job */
		job_finish(job, r);
		n++;
	}
	return n;
}

struct eng_job *eng_job_running(const struct engine *eng)
{
	return eng->job_running;
}

void eng_job_io_begin(struct eng_job *job)
{
	job->io_pending++;
}

void eng_job_io_done(void *arg, int res)
{
	struct eng_job *job = arg;

	if (res < 0 && !job->io_error)
		job->io_error = res;
	job->io_pending--;
}

int eng_job_wait_io(struct eng_job *job)
{
	int r = job->io_error;

	if (job->io_pending)
		return ENG_JOB_WAIT;
	job->io_error = 0;
	return r;
}

void eng_job_seg_io(struct eng_job *job, bool write, uint32_t slot, uint32_t block, void *buf,
		    uint32_t nblocks)
{
	struct iovec iov = { buf, (size_t)nblocks * QUILL_BLOCK_SIZE };
	int r;

	eng_job_io_begin(job);
	r = write ? seg_write(job->eng, slot, block, &iov, 1, eng_job_io_done, job)
		  : seg_read(job->eng, slot, block, &iov, 1, eng_job_io_done, job);
	if (r < 0)
		eng_job_io_done(job, r);
}

int eng_job_next(struct eng_job *job, int r, unsigned next)
{
	if (r == ENG_JOB_WAIT || r < 0)
		return r;
	job->pc = next;
	return ENG_JOB_WAIT;
}

bool eng_jobs_pending(const struct engine *eng)
{
	return eng->jobs != NULL;
}

/* ---- waits ---- */

int eng_job_wait_ckpt(struct eng_job *job)
{
	struct engine *eng = job->eng;

	if (!job->ckpt_asked) {
		job->ckpt_asked = true;
		job->ckpt_after = eng->ckpt_starts; /* one in flight was captured earlier */
		eng->ckpt_wanted = true; /* engine_poll() starts it */
		return ENG_JOB_WAIT;
	}
	if (eng->ckpt_landed_no > job->ckpt_after) {
		if (eng->free_jobs || eng->fckpt)
			return ENG_JOB_WAIT; /* and the slots it frees are free (as eng_ckpt_sync) */
		job->ckpt_asked = false;
		return 0;
	}
	if (eng->ckpt_failed_no > job->ckpt_after) {
		job->ckpt_asked = false;
		return -EIO;
	}
	if (!eng->ckpt_busy)
		eng->ckpt_wanted = true;
	return ENG_JOB_WAIT;
}

int eng_job_wait_settled(struct eng_job *job)
{
	/* record changes queued for a checkpoint (a merge whose checkpoint failed) land
	 * first: a record written directly must never be overwritten by an older one */
	if (!job->eng->nops && !job->ckpt_asked)
		return 0;
	return eng_job_wait_ckpt(job);
}

int eng_job_wait_quiet(struct eng_job *job, const struct engine_volume *vol)
{
	const struct engine *eng = job->eng;

	if (vol->head)
		return ENG_JOB_WAIT;
	/* the cleaner may be moving its blocks */
	if (eng->gc_busy && eng->slots[eng->gc_victim].volume_id == vol->rec.volume_id)
		return ENG_JOB_WAIT;
	/* the idle defragmenter may be reading it (through its layers): one window */
	if (eng_defrag_idle_busy(eng))
		return ENG_JOB_WAIT;
	return 0;
}

static void flushed(void *arg, int res)
{
	struct eng_job *job = arg;

	job->io_result = res < 0 ? -EIO : 0;
	job->io_done = true;
}

/* local: this node's store alone (seg_flush_local), for held copies; else the
 * engine's store flush, which waits for the mirror too. */
static int job_wait_flush(struct eng_job *job, bool local)
{
	int r;

	if (!job->io_started) {
		job->io_started = true;
		job->io_done = false;
		r = local ? seg_flush_local(job->eng, flushed, job)
			  : eng_store_flush(job->eng, flushed, job);
		if (r < 0)
			flushed(job, r);
	}
	if (!job->io_done)
		return ENG_JOB_WAIT;
	job->io_started = false;
	return job->io_result;
}

int eng_job_wait_flush(struct eng_job *job)
{
	return job_wait_flush(job, false);
}

int eng_job_wait_local_flush(struct eng_job *job)
{
	return job_wait_flush(job, true);
}

/* ---- the blocking wrappers ---- */

void eng_sync_done(void *arg, int res)
{
	struct eng_sync *s = arg;

	s->res = res;
	s->done = true;
}

int eng_sync_wait(struct engine *eng, struct eng_sync *s, int started)
{
	int r;

	if (started < 0)
		return started;
	r = engine_wait(eng, &s->done);
	return r < 0 ? r : s->res;
}
