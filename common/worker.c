/* common/worker.c — the worker thread of worker.h: a FIFO of jobs to run and a list of
 * jobs run, both under one mutex; an eventfd tells the loop that the second is not
 * empty (written once per batch: when a job lands on an empty list, after the lock).
 */
#include "common/worker.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/loop.h"

struct worker {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct worker_job *todo, **todo_tail; /* under lock: to run, oldest first */
	struct worker_job *ran;      /* under lock: run, done() not called yet */
	bool stop;                   /* under lock */
	/* the worker writes it when a job run finds ran empty (the loop takes the whole
	 * list after its read, so every job on it has a wake-up to come or under way) */
	int efd;
	struct loop_watch *watch;
	pthread_t loop_thread;       /* worker_create's: the only one that may submit */
};

static uint64_t thread_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	const uint64_t one = 1;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct worker_job *j;
		uint64_t t0;
		bool wake;

		while (!w->todo && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->stop)
			break;
		j = w->todo;
		w->todo = j->next;
		if (!w->todo)
			w->todo_tail = &w->todo;
		pthread_mutex_unlock(&w->lock);
		t0 = thread_ns();
		j->run(j->arg);
		j->run_ns = thread_ns() - t0;
		pthread_mutex_lock(&w->lock);
		wake = !w->ran; /* else a wake-up for the list is already owed */
		j->next = w->ran;
		w->ran = j;
		pthread_mutex_unlock(&w->lock);
		if (wake && write(w->efd, &one, sizeof(one)) < 0) {
			/* the counter cannot overflow here: the loop reads it */
		}
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* list in the other order (w->ran holds the newest first). */
static struct worker_job *reversed(struct worker_job *list)
{
	struct worker_job *rev = NULL, *next;

	for (struct worker_job *j = list; j; j = next) {
		next = j->next;
		j->next = rev;
		rev = j;
	}
	return rev;
}

/* Each job of list (oldest first) done with res. */
static void jobs_done(struct worker_job *list, int res)
{
	for (struct worker_job *j = list, *next; j; j = next) {
		next = j->next; /* (done may free j) */
		j->done(j->arg, res);
	}
}

/* The jobs run, on the loop. */
static void worker_woken(void *arg, unsigned events)
{
	struct worker *w = arg;
	struct worker_job *list;
	uint64_t v;

	(void)events;
	assert(pthread_equal(pthread_self(), w->loop_thread));
	if (read(w->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: an earlier wake-up took it; the list below is what counts */
	}
	pthread_mutex_lock(&w->lock);
	list = w->ran;
	w->ran = NULL;
	pthread_mutex_unlock(&w->lock);
	jobs_done(reversed(list), 0);
}

int worker_create(struct loop *lp, struct worker **out)
{
	struct worker *w = calloc(1, sizeof(*w));
	int r;

	if (!w)
		return -ENOMEM;
	w->todo_tail = &w->todo;
	w->loop_thread = pthread_self();
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0) {
		r = -errno;
		goto err_free;
	}
	r = loop_watch_add(lp, w->efd, LOOP_READ, worker_woken, w, &w->watch);
	if (r < 0)
		goto err_close;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	r = -pthread_create(&w->thread, NULL, worker_main, w);
	if (r < 0)
		goto err_unwatch;
	*out = w;
	return 0;

err_unwatch:
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	loop_watch_remove(w->watch);
err_close:
	close(w->efd);
err_free:
	free(w);
	return r;
}

void worker_destroy(struct worker *w)
{
	struct worker_job *todo, *ran;

	if (!w)
		return;
	assert(pthread_equal(pthread_self(), w->loop_thread));
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL); /* at most one job's work away */
	loop_watch_remove(w->watch);
	close(w->efd);
	/* (the thread is gone: the lists are the loop's now) */
	ran = w->ran;
	todo = w->todo;
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
	jobs_done(reversed(ran), 0);
	jobs_done(todo, -ECANCELED);
}

void worker_submit(struct worker *w, struct worker_job *job)
{
	assert(job->run && job->done);
	assert(pthread_equal(pthread_self(), w->loop_thread));
	pthread_mutex_lock(&w->lock);
	assert(!w->stop);
	job->next = NULL;
	*w->todo_tail = job;
	w->todo_tail = &job->next;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}
