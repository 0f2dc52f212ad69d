/* engine/metacommit.c — the synced RocksDB commits of management calls, off the
 * engine's thread.
 *
 * A management call commits its records to RocksDB with META_SYNC: a WAL write and
 * an fsync, milliseconds, and tens of them while the disk writes back a flush. Made
 * on the engine's thread, that fsync held every client's I/O. So a job step hands
 * its batch to this thread and returns ENG_JOB_WAIT; the engine's loop goes on
 * serving I/O, and the step, polled again, finds the result and goes on from there.
 *
 * While a commit is in flight the engine behaves as if the step that made it were
 * still running, as it was when the commit was synchronous: no other job steps
 * (a job re-checks names and attachments before it commits, which a second commit
 * landing meanwhile would make stale) and no checkpoint starts (a checkpoint must
 * hold all of a job's change or none of it: the records, and the maps the step
 * changes once they are committed). Client I/O, the cleaner and a checkpoint
 * already under way go on.
 *
 * The thread does not wake the engine's ring: the engine's loop polls the job every
 * millisecond while jobs are pending (engine_timeout_ms).
 */
#include <assert.h>
#include <errno.h>
#include <time.h>

#include "common/log.h"
#include "engine/engine_internal.h"
#include "metadata/meta.h"

static void *mc_main(void *arg)
{
	struct engine *eng = arg;

	pthread_mutex_lock(&eng->mc_lock);
	for (;;) {
		struct meta_batch *mb;
		int r;

		while (!eng->mc_todo && !eng->mc_stop)
			pthread_cond_wait(&eng->mc_cond, &eng->mc_lock);
		if (!eng->mc_todo)
			break;
		mb = eng->mc_todo;
		eng->mc_todo = NULL;
		pthread_mutex_unlock(&eng->mc_lock);

		r = meta_batch_commit(eng->meta, mb, META_SYNC);
		eng_test_pause(eng, "meta-commit"); /* tests: a slow fsync */

		pthread_mutex_lock(&eng->mc_lock);
		eng->mc_result = r;
		atomic_store(&eng->mc_done, true);
		pthread_cond_broadcast(&eng->mc_cond); /* eng_mc_wait */
	}
	pthread_mutex_unlock(&eng->mc_lock);
	return NULL;
}

int eng_mc_start_thread(struct engine *eng)
{
	int r;

	pthread_mutex_init(&eng->mc_lock, NULL);
	pthread_cond_init(&eng->mc_cond, NULL);
	r = pthread_create(&eng->mc_thread, NULL, mc_main, eng);
	if (r) {
		pthread_cond_destroy(&eng->mc_cond);
		pthread_mutex_destroy(&eng->mc_lock);
		return -r;
	}
	eng->mc_running = true;
	return 0;
}

void eng_mc_stop_thread(struct engine *eng)
{
	if (!eng->mc_running)
		return;
	pthread_mutex_lock(&eng->mc_lock);
	eng->mc_stop = true;
	pthread_cond_broadcast(&eng->mc_cond);
	pthread_mutex_unlock(&eng->mc_lock);
	pthread_join(eng->mc_thread, NULL); /* a commit in flight ends first */
	pthread_cond_destroy(&eng->mc_cond);
	pthread_mutex_destroy(&eng->mc_lock);
	eng->mc_running = false;
}

int eng_job_meta_commit(struct eng_job *job, struct meta_batch **mb)
{
	struct engine *eng = job->eng;
	int r;

	if (!eng->mc_owner) {
		if (!eng->mc_running) { /* no thread (start-up): here, as before */
			r = meta_batch_commit(eng->meta, *mb, META_SYNC);
			meta_batch_destroy(*mb);
			*mb = NULL;
			return r;
		}
		eng->mc_owner = job;
		atomic_store(&eng->mc_done, false);
		pthread_mutex_lock(&eng->mc_lock);
		eng->mc_todo = *mb;
		pthread_cond_signal(&eng->mc_cond);
		pthread_mutex_unlock(&eng->mc_lock);
		return ENG_JOB_WAIT;
	}
	assert(eng->mc_owner == job); /* no other step runs meanwhile (eng_jobs_run) */
	if (!atomic_load(&eng->mc_done))
		return ENG_JOB_WAIT;
	pthread_mutex_lock(&eng->mc_lock); /* the thread is done with the batch */
	r = eng->mc_result;
	pthread_mutex_unlock(&eng->mc_lock);
	eng->mc_owner = NULL;
	meta_batch_destroy(*mb);
	*mb = NULL;
	return r;
}

bool eng_mc_busy(const struct engine *eng)
{
	return eng->mc_owner != NULL;
}

void eng_mc_wait(struct engine *eng, int timeout_ms)
{
	struct timespec ts;

	if (!eng->mc_owner || timeout_ms == 0)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)(timeout_ms < 0 || timeout_ms > 1 ? 1 : timeout_ms) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&eng->mc_lock);
	if (!atomic_load(&eng->mc_done))
		pthread_cond_timedwait(&eng->mc_cond, &eng->mc_lock, &ts);
	pthread_mutex_unlock(&eng->mc_lock);
}
