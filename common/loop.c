/* common/loop.c — epoll event loop; see common/loop.h.
 *
 * One iteration: the idle hook and the tasks run until neither has more to do (the
 * engine's completions queue replies; the tasks send them), then the loop sleeps
 * once — in epoll_wait, or in the waiter (the engine's ring, which also watches the
 * epoll fd, makes the sends queued for the sleep and keeps the receives in the ring) —
 * then runs the sends' fns, then the receives' fns, then dispatches fd events and due
 * timers. */
#include "common/loop.h"
#include "common/stages.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 64

struct loop_watch {
	struct loop *lp;
	int fd;
	loop_fd_fn fn;
	void *arg;
	bool removed;
	struct loop_watch *next_dead;
};

struct loop_timer {
	struct loop *lp;
	uint64_t due_ms;
	loop_fn fn;
	void *arg;
	struct loop_timer *next;
};

struct loop_task {
	struct loop *lp;
	loop_fn fn;
	void *arg;
	bool queued;
	struct loop_task *next;
};

/* Tasks run per round before the loop gives the waiter and the fds their turn. */
#define LOOP_TASK_ROUND 1024

struct loop {
	int epfd;
	volatile int stop;
	loop_idle_fn idle;
	void *idle_arg;
	loop_wait_fn wait;
	void *wait_arg;
	bool wait_sends;             /* the waiter makes loop_wait's sends */
	struct loop_send *sends, **sends_tail; /* queued for the next sleep, in order */
	struct loop_send *sent;      /* made in the last sleep, their fn not run yet */
	bool wait_recvs;             /* the waiter keeps receives in its ring */
	struct loop_recv *recvs;     /* every receive not freed yet (all_next) */
	struct loop_task *tasks, **tasks_tail; /* scheduled, in order */
	struct loop_timer *timers;   /* sorted by due time */
	struct loop_watch *dead;     /* removed during dispatch, freed after it */
	bool dispatching;
	/* events of one wait; the waiter may have the kernel fill them (loop_wait) */
	struct epoll_event evs[LOOP_MAX_EVENTS];
};

uint64_t loop_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int loop_create(struct loop **out)
{
	struct loop *lp = calloc(1, sizeof(*lp));

	if (!lp)
		return -ENOMEM;
	lp->tasks_tail = &lp->tasks;
	lp->sends_tail = &lp->sends;
	lp->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (lp->epfd < 0) {
		int r = -errno;
		free(lp);
		return r;
	}
	*out = lp;
	return 0;
}

static void free_dead(struct loop *lp)
{
	while (lp->dead) {
		struct loop_watch *w = lp->dead;
		lp->dead = w->next_dead;
		free(w);
	}
}

void loop_destroy(struct loop *lp)
{
	if (!lp)
		return;
	while (lp->timers) {
		struct loop_timer *t = lp->timers;
		lp->timers = t->next;
		free(t);
	}
	free_dead(lp);
	while (lp->recvs) { /* the waiter is closed: the kernel has none of them */
		struct loop_recv *r = lp->recvs;
		lp->recvs = r->all_next;
		free(r->buf);
		free(r);
	}
	close(lp->epfd);
	free(lp);
}

static uint32_t to_epoll(unsigned events)
{
	return (events & LOOP_READ ? EPOLLIN : 0) | (events & LOOP_WRITE ? EPOLLOUT : 0);
}

int loop_watch_add(struct loop *lp, int fd, unsigned events, loop_fd_fn fn, void *arg,
		   struct loop_watch **out)
{
	struct loop_watch *w = calloc(1, sizeof(*w));
	struct epoll_event ev = { .events = to_epoll(events) };

	if (!w)
		return -ENOMEM;
	w->lp = lp;
	w->fd = fd;
	w->fn = fn;
	w->arg = arg;
	ev.data.ptr = w;
	if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int r = -errno;
		free(w);
		return r;
	}
	*out = w;
	return 0;
}

int loop_watch_modify(struct loop_watch *w, unsigned events)
{
	struct epoll_event ev = { .events = to_epoll(events), .data.ptr = w };

	return epoll_ctl(w->lp->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0 ? -errno : 0;
}

void loop_watch_remove(struct loop_watch *w)
{
	if (!w)
		return;
	epoll_ctl(w->lp->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	if (!w->lp->dispatching) {
		free(w);
		return;
	}
	/* events for it may still be in this round's array: free after the round */
	w->removed = true;
	w->next_dead = w->lp->dead;
	w->lp->dead = w;
}

int loop_timer_add(struct loop *lp, unsigned ms, loop_fn fn, void *arg, struct loop_timer **out)
{
	struct loop_timer *t = calloc(1, sizeof(*t)), **p;

	if (!t)
		return -ENOMEM;
	t->lp = lp;
	t->due_ms = loop_now_ms() + ms;
	t->fn = fn;
	t->arg = arg;
	for (p = &lp->timers; *p && (*p)->due_ms <= t->due_ms; p = &(*p)->next)
		;
	t->next = *p;
	*p = t;
	if (out)
		*out = t;
	return 0;
}

void loop_timer_cancel(struct loop_timer *t)
{
	struct loop_timer **p;

	if (!t)
		return;
	for (p = &t->lp->timers; *p; p = &(*p)->next) {
		if (*p == t) {
			*p = t->next;
			free(t);
			return;
		}
	}
}

void loop_set_idle(struct loop *lp, loop_idle_fn fn, void *arg)
{
	lp->idle = fn;
	lp->idle_arg = arg;
}

void loop_set_wait(struct loop *lp, loop_wait_fn fn, void *arg)
{
	lp->wait = fn;
	lp->wait_arg = arg;
}

void loop_set_wait_sends(struct loop *lp, bool takes)
{
	lp->wait_sends = takes;
}

void loop_set_wait_recvs(struct loop *lp, bool takes)
{
	lp->wait_recvs = takes;
}

int loop_recv_start(struct loop *lp, int fd, size_t cap, loop_recv_fn fn, void *arg,
		    struct loop_recv **out)
{
	struct loop_recv *r;

	if (!lp->wait || !lp->wait_recvs)
		return -ENOTSUP;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->buf = malloc(cap);
	if (!r->buf) {
		free(r);
		return -ENOMEM;
	}
	r->fd = fd;
	r->cap = cap;
	r->fn = fn;
	r->arg = arg;
	r->want = true;
	r->all_next = lp->recvs;
	lp->recvs = r;
	*out = r;
	return 0;
}

void loop_recv_want(struct loop_recv *r, bool want)
{
	r->want = want;
}

void loop_recv_stop(struct loop_recv *r)
{
	if (r)
		r->stopped = true; /* freed by recvs_list, once the kernel gave it back */
}

/* Before the sleep: frees the stopped receives the kernel gave back, and lists for the
 * waiter those to put in the ring and those to cancel. Returns whether one completed
 * already (outside a sleep: a store_poll of the engine's), so the loop must not sleep. */
static bool recvs_list(struct loop *lp, struct loop_wait *w)
{
	struct loop_recv **arm = &w->recvs, **cancel = &w->recv_cancels;
	bool done = false;

	for (struct loop_recv **p = &lp->recvs; *p;) {
		struct loop_recv *r = *p;

		if (r->stopped && !r->in_ring) {
			*p = r->all_next;
			free(r->buf);
			free(r);
			continue;
		}
		p = &r->all_next;
		if (r->stopped && !r->cancel_sent) {
			*cancel = r;
			cancel = &r->next;
		} else if (r->done) {
			done = true;
		} else if (!r->stopped && r->want && !r->in_ring) {
			*arm = r;
			arm = &r->next;
		}
	}
	*arm = *cancel = NULL;
	return done;
}

/* After the sleep: each receive that completed runs its fn, walking the list itself
 * (each checked as it comes: an fn may stop another, and only recvs_list frees a
 * stopped one, so the walk stays on the list). */
static void recvs_finish(struct loop *lp)
{
	for (struct loop_recv *r = lp->recvs; r; r = r->all_next) {
		if (r->stopped || !r->done)
			continue;
		r->done = false;
		r->fn(r->arg, r->buf, r->res);
	}
}

int loop_send_queue(struct loop *lp, struct loop_send *s)
{
	if (!lp->wait || !lp->wait_sends)
		return -ENOTSUP;
	if (s->queued)
		return -EBUSY;
	s->queued = true;
	s->done = false;
	s->res = 0;
	s->msg = (struct msghdr){ .msg_iov = (struct iovec *)s->iov,
				  .msg_iovlen = s->iovcnt > 0 ? (size_t)s->iovcnt : 0 };
	s->next = NULL;
	*lp->sends_tail = s;
	lp->sends_tail = &s->next;
	return 0;
}

/* Unlinks s from the list at *head, and its tail link *tail (if kept) when s was
 * last; returns whether it was there. */
static bool send_unlink(struct loop_send **head, struct loop_send ***tail,
			struct loop_send *s)
{
	for (struct loop_send **p = head; *p; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			if (tail && *tail == &s->next)
				*tail = p;
			return true;
		}
	}
	return false;
}

void loop_send_cancel(struct loop *lp, struct loop_send *s)
{
	if (!s->queued)
		return;
	s->queued = false;
	if (!send_unlink(&lp->sends, &lp->sends_tail, s))
		send_unlink(&lp->sent, NULL, s);
}

/* After the sleep: the sends the waiter did not make are made here, then each one's
 * fn runs (one at a time off the list: an fn may cancel another send). */
void loop_sends_make(struct loop_send *sends)
{
	for (struct loop_send *s = sends; s; s = s->next) {
		ssize_t n;

		if (s->done)
			continue;
		do
			n = s->iovcnt > 0 ?
				    sendmsg(s->fd, &s->msg, MSG_NOSIGNAL | MSG_DONTWAIT) :
				    send(s->fd, s->buf, s->len, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		s->res = n < 0 ? -errno : (long)n;
		s->done = true;
	}
}

static void sends_finish(struct loop *lp)
{
	loop_sends_make(lp->sent);
	while (lp->sent) {
		struct loop_send *s = lp->sent;

		lp->sent = s->next;
		s->queued = false;
		s->fn(s->arg, s->res);
	}
}

int loop_task_create(struct loop *lp, loop_fn fn, void *arg, struct loop_task **out)
{
	struct loop_task *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->lp = lp;
	t->fn = fn;
	t->arg = arg;
	*out = t;
	return 0;
}

void loop_task_schedule(struct loop_task *t)
{
	struct loop *lp = t->lp;

	if (t->queued)
		return;
	t->queued = true;
	t->next = NULL;
	*lp->tasks_tail = t;
	lp->tasks_tail = &t->next;
}

static void task_unlink(struct loop *lp, struct loop_task *t)
{
	struct loop_task **p;

	for (p = &lp->tasks; *p != t; p = &(*p)->next)
		;
	*p = t->next;
	if (lp->tasks_tail == &t->next)
		lp->tasks_tail = p;
	t->queued = false;
}

void loop_task_destroy(struct loop_task *t)
{
	if (!t)
		return;
	if (t->queued)
		task_unlink(t->lp, t);
	free(t);
}

/* Runs scheduled tasks (and those they schedule), up to a round's worth. Returns how
 * many ran. */
static int run_tasks(struct loop *lp)
{
	int n = 0;

	while (lp->tasks && n < LOOP_TASK_ROUND) {
		struct loop_task *t = lp->tasks;

		task_unlink(lp, t); /* first: fn may schedule it again, or destroy it */
		t->fn(t->arg);
		n++;
	}
	return n;
}

void loop_stop(struct loop *lp)
{
	lp->stop = 1;
}

static void run_timers(struct loop *lp)
{
	uint64_t now = loop_now_ms();

	while (lp->timers && lp->timers->due_ms <= now) {
		struct loop_timer *t = lp->timers;

		lp->timers = t->next;
		t->fn(t->arg);
		free(t);
	}
}

/* Before a sleep: the idle hook and the tasks, until neither has more to do (a task
 * may queue engine work; the engine's callbacks schedule tasks). Returns how long
 * the loop may sleep: bounded by the idle hook and the next timer, 0 with tasks. */
static int prepare(struct loop *lp)
{
	int ms, ran;

	do {
		ms = lp->idle ? lp->idle(lp->idle_arg) : -1;
		ran = run_tasks(lp);
	} while (ran && ran < LOOP_TASK_ROUND && !lp->stop);
	if (lp->tasks)
		ms = 0;
	if (lp->timers) {
		uint64_t now = loop_now_ms();
		int t = lp->timers->due_ms <= now ? 0 : (int)(lp->timers->due_ms - now);
		if (ms < 0 || t < ms)
			ms = t;
	}
	return ms;
}

/* Sleeps up to ms and collects the ready fds into lp->evs: in epoll_wait, or in the
 * waiter, which collects them itself or says the epoll fd became readable (then
 * epoll_wait only collects). */
static int wait_events(struct loop *lp, int ms)
{
	int r;

	if (lp->wait) {
		struct loop_wait w = { .epfd = lp->epfd, .events = lp->evs,
				       .max_events = LOOP_MAX_EVENTS, .sends = lp->sends };

		if (recvs_list(lp, &w))
			ms = 0;

		lp->sent = lp->sends; /* the waiter makes them; their fns run after it */
		lp->sends = NULL;
		lp->sends_tail = &lp->sends;
		r = lp->wait(lp->wait_arg, &w, ms);
		if (r < 0 || !w.ready)
			return r < 0 ? r : 0;
		if (w.nevents > 0)
			return w.nevents < LOOP_MAX_EVENTS ? w.nevents : LOOP_MAX_EVENTS;
		ms = 0;
	}
	r = epoll_wait(lp->epfd, lp->evs, LOOP_MAX_EVENTS, ms);
	return r < 0 ? -errno : r;
}

int loop_run(struct loop *lp)
{
	lp->stop = 0;
	while (!lp->stop) {
		int n;
		struct epoll_event *evs = lp->evs;

		n = prepare(lp);
		if (lp->stop)
			break; /* a task or the idle hook stopped it: no sleep first */
		stages_mark("loop.sleep");
		n = wait_events(lp, n);
		stages_mark("loop.woke");
		/* the sends' fns first, as dispatch (a watch they remove may have events
		 * in this round's array) */
		lp->dispatching = true;
		sends_finish(lp);
		recvs_finish(lp);
		if (n < 0) {
			lp->dispatching = false;
			free_dead(lp);
			if (n == -EINTR)
				continue;
			return n;
		}
		for (int i = 0; i < n; i++) {
			struct loop_watch *w = evs[i].data.ptr;
			unsigned ev = 0;

			if (w->removed)
				continue;
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
				ev |= LOOP_READ;
			if (evs[i].events & EPOLLOUT)
				ev |= LOOP_WRITE;
			w->fn(w->arg, ev);
		}
		lp->dispatching = false;
		free_dead(lp);
		run_timers(lp);
	}
	return 0;
}
