/* tests/unit/common/test_loop.c — common/loop.c: the order of one iteration (idle
 * hook, tasks, one sleep, fds, timers), tasks, and a waiter in place of epoll_wait.
 */
#include "common/loop.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* What happened, in order: one letter per event. */
static char trace[64];

static void note(char c)
{
	size_t n = strlen(trace);

	cr_assert_lt(n, sizeof(trace) - 1, "trace full: %s", trace);
	trace[n] = c;
}

struct fixture {
	struct loop *lp;
	struct loop_task *task, *other;
	int pipe[2];
	struct loop_watch *watch;
	unsigned waits;       /* waiter calls */
	unsigned stop_after;  /* stop the loop at this waiter call */
	bool idle_schedules;  /* the idle hook schedules the task, once */
	bool task_reschedules;
	bool task_destroys_other;
	int last_timeout;
};

static struct fixture f;

static void setup(void)
{
	memset(&f, 0, sizeof(f));
	memset(trace, 0, sizeof(trace));
	cr_assert_eq(loop_create(&f.lp), 0);
	cr_assert_eq(pipe(f.pipe), 0);
}

static void teardown(void)
{
	loop_task_destroy(f.task);
	loop_task_destroy(f.other);
	loop_watch_remove(f.watch);
	loop_destroy(f.lp);
	close(f.pipe[0]);
	close(f.pipe[1]);
}

TestSuite(loop, .init = setup, .fini = teardown);

static void task_fn(void *arg)
{
	(void)arg;
	note('T');
	if (f.task_reschedules) {
		f.task_reschedules = false;
		loop_task_schedule(f.task);
	}
	if (f.task_destroys_other) {
		loop_task_destroy(f.other);
		f.other = NULL;
	}
}

static void other_fn(void *arg)
{
	(void)arg;
	note('O');
}

static int idle_fn(void *arg)
{
	(void)arg;
	note('I');
	if (f.idle_schedules) {
		f.idle_schedules = false;
		loop_task_schedule(f.task);
	}
	return -1;
}

/* Honours the contract: sleeps in poll() on epfd. */
static int waiter(void *arg, struct loop_wait *w, int timeout_ms)
{
	struct pollfd pfd = { .fd = w->epfd, .events = POLLIN };

	(void)arg;
	note('W');
	f.last_timeout = timeout_ms;
	if (++f.waits >= f.stop_after) {
		loop_stop(f.lp);
		return 0;
	}
	w->ready = poll(&pfd, 1, timeout_ms) > 0;
	return 0;
}

static void pipe_ready(void *arg, unsigned events)
{
	char c;

	(void)arg;
	cr_assert(events & LOOP_READ);
	cr_assert_eq(read(f.pipe[0], &c, 1), 1);
	note('F');
}

Test(loop, a_task_runs_once_before_the_loop_sleeps)
{
	cr_assert_eq(loop_task_create(f.lp, task_fn, NULL, &f.task), 0);
	loop_set_wait(f.lp, waiter, NULL);
	loop_task_schedule(f.task);
	loop_task_schedule(f.task); /* already scheduled: still once */
	f.stop_after = 1;
	cr_assert_eq(loop_run(f.lp), 0);
	cr_assert_str_eq(trace, "TW");
}

/* The engine's completions (idle hook) queue replies; the NBD server's task sends
 * them before the loop sleeps, and the engine gets another turn for what the task
 * did before the sleep too. */
Test(loop, a_task_scheduled_by_the_idle_hook_runs_before_the_sleep)
{
	cr_assert_eq(loop_task_create(f.lp, task_fn, NULL, &f.task), 0);
	loop_set_idle(f.lp, idle_fn, NULL);
	loop_set_wait(f.lp, waiter, NULL);
	f.idle_schedules = true;
	f.stop_after = 1;
	cr_assert_eq(loop_run(f.lp), 0);
	cr_assert_str_eq(trace, "ITIW");
	cr_assert_eq(f.last_timeout, -1, "nothing to do: the waiter may sleep for ever");
}

Test(loop, a_task_may_schedule_itself_again_and_destroy_another)
{
	cr_assert_eq(loop_task_create(f.lp, task_fn, NULL, &f.task), 0);
	cr_assert_eq(loop_task_create(f.lp, other_fn, NULL, &f.other), 0);
	loop_set_wait(f.lp, waiter, NULL);
	loop_task_schedule(f.task);
	loop_task_schedule(f.other);
	f.task_reschedules = true;
	f.task_destroys_other = true; /* other is scheduled behind task: it must not run */
	f.stop_after = 1;
	cr_assert_eq(loop_run(f.lp), 0);
	cr_assert_str_eq(trace, "TTW");
}

Test(loop, a_destroyed_task_does_not_run)
{
	cr_assert_eq(loop_task_create(f.lp, task_fn, NULL, &f.task), 0);
	cr_assert_eq(loop_task_create(f.lp, other_fn, NULL, &f.other), 0);
	loop_set_wait(f.lp, waiter, NULL);
	loop_task_schedule(f.task);
	loop_task_schedule(f.other);
	loop_task_destroy(f.task);
	f.task = NULL;
	f.stop_after = 1;
	cr_assert_eq(loop_run(f.lp), 0);
	cr_assert_str_eq(trace, "OW");
}

/* The fds are looked at only when the waiter says the epoll fd fired: no epoll_wait
 * per wake-up for I/O completions. */
Test(loop, fds_are_dispatched_only_when_the_waiter_saw_the_epoll_fd)
{
	cr_assert_eq(loop_watch_add(f.lp, f.pipe[0], LOOP_READ, pipe_ready, NULL, &f.watch), 0);
	cr_assert_eq(write(f.pipe[1], "x", 1), 1);
	loop_set_wait(f.lp, waiter, NULL);
	f.stop_after = 2;
	cr_assert_eq(loop_run(f.lp), 0);
	cr_assert_str_eq(trace, "WFW", "the first wait saw the pipe, the second stopped");
}

static int wait_says_nothing(void *arg, struct loop_wait *w, int timeout_ms)
{
	(void)arg;
	(void)w;
	(void)timeout_ms;
	note('W');
	if (++f.waits >= 2)
		loop_stop(f.lp);
	return 0; /* an I/O completion woke it, not the epoll fd */
}

Test(loop, a_waiter_that_saw_no_fd_readiness_costs_no_epoll_wait)
{
	cr_assert_eq(loop_watch_add(f.lp, f.pipe[0], LOOP_READ, pipe_ready, NULL, &f.watch), 0);
	cr_assert_eq(write(f.pipe[1], "x", 1), 1); /* readable, but nobody said so */
	loop_set_wait(f.lp, wait_says_nothing, NULL);
	cr_assert_eq(loop_run(f.lp), 0);
	cr_assert_str_eq(trace, "WW");
}

/* A waiter that collects the events itself (io_uring's EPOLL_WAIT): it says the pipe
 * is writable, which epoll would not say of its read end. */
static int wait_collects(void *arg, struct loop_wait *w, int timeout_ms)
{
	struct epoll_event *evs = w->events;

	(void)arg;
	(void)timeout_ms;
	note('W');
	if (++f.waits >= 2) {
		loop_stop(f.lp);
		return 0;
	}
	cr_assert_geq(w->max_events, 1);
	evs[0] = (struct epoll_event){ .events = EPOLLOUT, .data.ptr = f.watch };
	w->ready = true;
	w->nevents = 1;
	return 0;
}

static void pipe_event(void *arg, unsigned events)
{
	(void)arg;
	note(events == LOOP_WRITE ? 'O' : 'E');
}

Test(loop, events_the_waiter_collected_are_dispatched_without_an_epoll_wait)
{
	cr_assert_eq(loop_watch_add(f.lp, f.pipe[0], LOOP_READ, pipe_event, NULL, &f.watch), 0);
	cr_assert_eq(write(f.pipe[1], "x", 1), 1); /* epoll_wait would say readable */
	loop_set_wait(f.lp, wait_collects, NULL);
	cr_assert_eq(loop_run(f.lp), 0);
	cr_assert_str_eq(trace, "WOW", "the waiter's event, not epoll's");
}

static void timer_fn(void *arg)
{
	(void)arg;
	note('X');
	loop_stop(f.lp);
}

Test(loop, without_a_waiter_epoll_wait_sleeps_until_a_timer_or_an_fd)
{
	cr_assert_eq(loop_watch_add(f.lp, f.pipe[0], LOOP_READ, pipe_ready, NULL, &f.watch), 0);
	cr_assert_eq(write(f.pipe[1], "x", 1), 1);
	cr_assert_eq(loop_timer_add(f.lp, 20, timer_fn, NULL, NULL), 0);
	cr_assert_eq(loop_run(f.lp), 0);
	cr_assert_str_eq(trace, "FX");
}

Test(loop, a_scheduled_task_or_a_due_timer_means_no_sleep)
{
	cr_assert_eq(loop_timer_add(f.lp, 0, timer_fn, NULL, NULL), 0);
	loop_set_wait(f.lp, waiter, NULL);
	f.stop_after = 100;
	cr_assert_eq(loop_run(f.lp), 0);
	cr_assert_str_eq(trace, "WX");
	cr_assert_eq(f.last_timeout, 0);
}

/* ---- sends in the sleep ---- */

static long sent_res[4];
static unsigned nsent;

static void on_sent(void *arg, long res)
{
	(void)arg;
	note('S');
	sent_res[nsent++] = res;
}

/* A waiter that takes sends but made none (its ring failed, say): the loop makes
 * them itself after the call, then their fns run before the fds' events. It does
 * not sleep: it says whether epfd is readable now. */
static int waiter_makes_no_sends(void *arg, struct loop_wait *w, int timeout_ms)
{
	struct pollfd pfd = { .fd = w->epfd, .events = POLLIN };

	(void)arg;
	(void)timeout_ms;
	note(w->sends ? 'w' : 'W');
	if (++f.waits >= f.stop_after)
		loop_stop(f.lp);
	w->ready = poll(&pfd, 1, 0) > 0;
	return 0;
}

/* The loop with a waiter that takes sends and makes none, and a socket pair for them
 * (sv[0] sends, sv[1] reads); no send made yet. */
static void sends_made_by_the_loop(int sv[2])
{
	nsent = 0;
	loop_set_wait(f.lp, waiter_makes_no_sends, NULL);
	loop_set_wait_sends(f.lp, true);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
}

Test(loop, sends_not_made_by_the_waiter_are_made_by_the_loop_after_the_sleep)
{
	struct loop_send a = { .buf = "ab", .len = 2, .fn = on_sent };
	struct loop_send b = { .buf = "cd", .len = 2, .fn = on_sent };
	char got[8] = { 0 };

	nsent = 0;
	a.fd = b.fd = -1;
	cr_assert_eq(loop_send_queue(f.lp, &a), -ENOTSUP, "no waiter that takes sends");
	loop_set_wait(f.lp, waiter_makes_no_sends, NULL);
	loop_set_wait_sends(f.lp, true);
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	a.fd = b.fd = sv[0];
	cr_assert_eq(loop_send_queue(f.lp, &a), 0);
	cr_assert_eq(loop_send_queue(f.lp, &a), -EBUSY);
	cr_assert_eq(loop_send_queue(f.lp, &b), 0);
	cr_assert_eq(loop_watch_add(f.lp, f.pipe[0], LOOP_READ, pipe_ready, NULL, &f.watch), 0);
	cr_assert_eq(write(f.pipe[1], "x", 1), 1);
	f.stop_after = 2;
	cr_assert_eq(loop_run(f.lp), 0);
	cr_assert_str_eq(trace, "wSSFW",
			 "one sleep with both sends, their fns, the fd's event, then none");
	cr_assert_eq(sent_res[0], 2);
	cr_assert_eq(sent_res[1], 2);
	cr_assert_eq(read(sv[1], got, sizeof(got)), 4);
	cr_assert_str_eq(got, "abcd", "in the order queued");
	close(sv[0]);
	close(sv[1]);
}

/* A gathered send (iov): the loop's own fallback makes it with sendmsg, the pieces in
 * order, and its fn gets the sum. */
Test(loop, a_gathered_send_not_made_by_the_waiter_goes_out_whole)
{
	struct iovec iov[] = { { "head", 4 }, { "-", 1 }, { "data", 4 } };
	struct loop_send a = { .iov = iov, .iovcnt = 3, .len = 9, .fn = on_sent };
	char got[16] = { 0 };
	int sv[2];

	sends_made_by_the_loop(sv);
	a.fd = sv[0];
	cr_assert_eq(loop_send_queue(f.lp, &a), 0);
	f.stop_after = 1;
	cr_assert_eq(loop_run(f.lp), 0);
	cr_assert_eq(nsent, 1);
	cr_assert_eq(sent_res[0], 9);
	cr_assert_eq(read(sv[1], got, sizeof(got)), 9);
	cr_assert_str_eq(got, "head-data");
	close(sv[0]);
	close(sv[1]);
}

Test(loop, a_cancelled_send_is_not_made_and_its_fn_does_not_run)
{
	struct loop_send a = { .buf = "ab", .len = 2, .fn = on_sent };
	int sv[2];
	char c;

	sends_made_by_the_loop(sv);
	a.fd = sv[0];
	cr_assert_eq(loop_send_queue(f.lp, &a), 0);
	loop_send_cancel(f.lp, &a);
	cr_assert_not(a.queued);
	f.stop_after = 1;
	cr_assert_eq(loop_run(f.lp), 0);
	cr_assert_str_eq(trace, "W");
	cr_assert_eq(read(sv[1], &c, 1), -1, "nothing was sent");
	close(sv[0]);
	close(sv[1]);
}

/* A fn that cancels its arg's send (another one made in the same sleep). */
static void on_sent_cancels(void *arg, long res)
{
	(void)res;
	note('A');
	loop_send_cancel(f.lp, arg);
}

Test(loop, a_send_cancelled_from_another_sends_fn_is_made_but_its_fn_does_not_run)
{
	struct loop_send c = { .buf = "ef", .len = 2, .fn = on_sent };
	struct loop_send b = { .buf = "cd", .len = 2, .fn = on_sent };
	struct loop_send a = { .buf = "ab", .len = 2, .fn = on_sent_cancels, .arg = &c };
	char got[8] = { 0 };
	int sv[2];

	sends_made_by_the_loop(sv);
	a.fd = b.fd = c.fd = sv[0];
	cr_assert_eq(loop_send_queue(f.lp, &a), 0);
	cr_assert_eq(loop_send_queue(f.lp, &b), 0);
	loop_send_cancel(f.lp, &b); /* the last: c comes after a */
	cr_assert_eq(loop_send_queue(f.lp, &c), 0);
	f.stop_after = 1;
	cr_assert_eq(loop_run(f.lp), 0);
	cr_assert_str_eq(trace, "wA", "c's fn does not run once a's cancelled it");
	cr_assert_not(c.queued);
	cr_assert_eq(read(sv[1], got, sizeof(got)), 4);
	cr_assert_str_eq(got, "abef", "both made in the sleep, b not");
	close(sv[0]);
	close(sv[1]);
}

/* ---- receives kept in the waiter's ring (loop_recv) ---- */

static bool ring_completes; /* the fake ring completes what it is given at once */
static struct loop_recv *recv_a, *recv_b;

/* A waiter that keeps receives: notes how many it was given to put in ('0'+n) and to
 * cancel ('c'), completes the cancelled ones (-ECANCELED) and, when ring_completes,
 * the others with 3 bytes. It does not sleep. */
static int waiter_keeps_recvs(void *arg, struct loop_wait *w, int timeout_ms)
{
	int n = 0;

	(void)arg;
	(void)timeout_ms;
	for (struct loop_recv *r = w->recv_cancels; r; r = r->next) {
		note('c');
		r->cancel_sent = true;
		r->in_ring = false;
		r->done = true;
		r->res = -ECANCELED;
	}
	for (struct loop_recv *r = w->recvs; r; r = r->next) {
		n++;
		cr_assert_not(r->in_ring || r->done || r->stopped);
		r->in_ring = true;
		if (ring_completes) {
			memcpy(r->buf, "abc", 3);
			r->res = 3;
			r->done = true;
			r->in_ring = false;
		}
	}
	note((char)('0' + n));
	if (++f.waits >= f.stop_after)
		loop_stop(f.lp);
	return 0;
}

/* A's fn stops B (whose completion is in the same round: its fn must not run) and
 * asks for no more input. */
static void on_recv_a(void *arg, const void *data, long res)
{
	(void)arg;
	cr_assert_eq(res, 3);
	cr_assert_eq(memcmp(data, "abc", 3), 0);
	note('A');
	loop_recv_stop(recv_b);
	loop_recv_want(recv_a, false);
}

static void on_recv_b(void *arg, const void *data, long res)
{
	(void)arg;
	(void)data;
	(void)res;
	note('B');
}

Test(loop, receives_go_in_run_their_fns_and_are_cancelled_when_stopped)
{
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	cr_assert_eq(loop_recv_start(f.lp, sv[0], 16, on_recv_a, NULL, &recv_a), -ENOTSUP,
		     "no waiter that keeps receives");
	loop_set_wait(f.lp, waiter_keeps_recvs, NULL);
	loop_set_wait_recvs(f.lp, true);
	/* B first: the fns run newest first, A's before B's */
	cr_assert_eq(loop_recv_start(f.lp, sv[1], 16, on_recv_b, NULL, &recv_b), 0);
	cr_assert_eq(loop_recv_start(f.lp, sv[0], 16, on_recv_a, NULL, &recv_a), 0);
	ring_completes = true;
	f.stop_after = 2;
	cr_assert_eq(loop_run(f.lp), 0);
	/* both in and done in the first sleep; A's fn stopped B before its fn; then A,
	 * not wanted, stays out, and B is gone */
	cr_assert_str_eq(trace, "2A0", "got %s", trace);
	memset(trace, 0, sizeof(trace));
	ring_completes = false;
	loop_recv_want(recv_a, true);
	f.waits = 0;
	f.stop_after = 2;
	cr_assert_eq(loop_run(f.lp), 0);
	cr_assert_str_eq(trace, "10", "A goes in once and stays: got %s", trace);
	memset(trace, 0, sizeof(trace));
	loop_recv_stop(recv_a); /* in the ring: cancelled, its fn never runs */
	f.waits = 0;
	f.stop_after = 3;
	cr_assert_eq(loop_run(f.lp), 0);
	cr_assert_str_eq(trace, "c000", "one cancel, then nothing: got %s", trace);
	close(sv[0]);
	close(sv[1]);
}
