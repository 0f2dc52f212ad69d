/* common/loop.h — a single-threaded event loop over epoll: fd watchers, timers, an
 * "idle" hook that runs before every sleep (the engine runs its completions and
 * forms its batches there), tasks that run once before the next sleep (the NBD
 * server sends the replies those completions queued), and an optional waiter that
 * sleeps instead of epoll_wait (the engine's io_uring, which also watches the epoll
 * fd: one system call sleeps for I/O completions and sockets alike, and on recent
 * kernels collects the sockets' events too; it may also make the sends queued for
 * the sleep, loop_send, in that same system call, and keep receives in its ring,
 * loop_recv, whose data wakes it like its own I/O). A waiter may keep a collection
 * into the loop's event buffer pending across waits: stop it (close the engine)
 * before loop_destroy().
 *
 * Threading: a loop and its watchers belong to the thread that runs loop_run().
 * loop_stop() may be called from a signal handler or another thread.
 */
#ifndef QUILL_COMMON_LOOP_H
#define QUILL_COMMON_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct loop;
struct loop_watch;
struct loop_timer;
struct loop_task;
struct loop_send;
struct loop_recv;

enum loop_events { LOOP_READ = 1u << 0, LOOP_WRITE = 1u << 1 };

/* events: the LOOP_* that are ready (LOOP_READ also on hang-up and error). */
typedef void (*loop_fd_fn)(void *arg, unsigned events);
typedef void (*loop_fn)(void *arg);
/* Returns how long the loop may sleep, in ms (-1: as long as it likes). */
typedef int (*loop_idle_fn)(void *arg);
/* What a waiter watches besides its own work: the loop's epoll fd. A waiter that can
 * collect the fd's events as it wakes (io_uring's EPOLL_WAIT) writes them into events,
 * saving the loop an epoll_wait; one that cannot only says the fd became readable. */
struct loop_wait {
	int epfd;        /* in: the loop's epoll fd */
	void *events;    /* in: struct epoll_event[max_events], owned by the loop; the
			    waiter may leave a collection of it pending across calls */
	int max_events;  /* in */
	unsigned min_events; /* in, set by the waiter's owner (the loop leaves it 0): the
			    waiter may sleep until this many wake-ups came (each of its
			    completions, and epfd becoming readable, is one; 0 or 1: the
			    first). Only for a waiter that knows a lone one does nothing:
			    timeout_ms still bounds the sleep */
	unsigned min_events_bounded; /* in, instead of min_events (0: none; it may be
			    more or fewer) for a waiter that can bound the sleep by
			    min_wait_us (io_uring's min timeout, Linux 6.12): it sleeps until
			    this many came or, once min_wait_us passed, until the first; one
			    that cannot uses min_events. Why: a count that may not all come
			    (a peer that died, a reply split over two reads) costs at most
			    min_wait_us */
	unsigned min_wait_us;
	unsigned spin_us; /* in (0: none), set by the waiter's owner: a waiter that can
			    may poll for its completions this long before it sleeps, for
			    a wait expected to be shorter than a sleep's wake-up costs (a
			    lone request's disk I/O) */
	struct loop_send *sends; /* in: sends to make before the sleep (a waiter that
			    takes them: loop_set_wait_sends), linked by next. The waiter
			    sets res and done of each it made; the loop makes the others
			    itself after the call */
	struct loop_recv *recvs; /* in: receives to put in the ring (a waiter that takes
			    them: loop_set_wait_recvs), linked by next: each it put in
			    gets in_ring set; one left out makes it not sleep (timeout 0) */
	struct loop_recv *recv_cancels; /* in: receives in the ring that the loop gave
			    up (stopped), linked by next: the waiter asks the kernel to
			    cancel each (cancel_sent); its completion still comes */
	bool ready;      /* out: epfd became readable (or has events below) */
	int nevents;     /* out, when ready: events already in events (0: the loop
			    collects them with epoll_wait) */
};

/* A send on a non-blocking socket that the loop's waiter makes in the system call that
 * sleeps (io_uring: a SEND beside the store's I/O, one io_uring_enter for all), never
 * blocking: a short send or -EAGAIN is the caller's to finish. Why: on a loaded machine
 * each send() that wakes a peer is a place where the kernel switches to that peer
 * before we go on; inside the sleep's system call the switch falls where we were about
 * to sleep anyway, after everything queued went out. The caller owns the struct and
 * keeps buf unchanged until fn runs; fn runs after the sleep, before the loop's events,
 * with res: bytes sent (maybe fewer than len), or -errno (-EAGAIN: the socket was full). */
typedef void (*loop_send_fn)(void *arg, long res);
struct loop_send {
	int fd;                   /* caller's */
	const void *buf;
	size_t len;               /* buf's bytes, or with iov the sum of its lengths */
	const struct iovec *iov;  /* when iovcnt > 0: sent gathered from iov[iovcnt]
				     instead of buf (sendmsg); iov and what it points
				     to stay unchanged until fn runs, as buf */
	int iovcnt;
	loop_send_fn fn;
	void *arg;
	long res;                 /* the waiter's (or the loop's) */
	bool done;
	bool queued;              /* the loop's */
	struct msghdr msg;        /* the loop's: iov's, for the waiter's sendmsg */
	struct loop_send *next;
};

/* A receive on a socket that the loop's waiter keeps in its ring (io_uring: a RECV that
 * waits in the kernel), instead of a watch of the fd: the data arrives as a completion
 * of the ring the loop sleeps on, so the loop needs no epoll event, no recv() and no
 * second sleep for it. The loop owns the struct and its buffer (cap bytes), freed only
 * once the kernel gave it back (a stopped receive in the ring is cancelled, and freed
 * at its completion): closing the socket never leaves the kernel a freed buffer.
 * fn(arg, data, res) runs after the sleep, before the loop's fd events: res is the
 * number of bytes in data (valid during fn only), 0 when the peer closed, or -errno.
 * Then the receive goes in again at the next sleep while it is wanted. */
typedef void (*loop_recv_fn)(void *arg, const void *data, long res);
struct loop_recv {
	int fd;                   /* the waiter's to read */
	void *buf;
	size_t cap;
	long res;                 /* the waiter's to write: the completion's result */
	bool in_ring;             /* the waiter's: its RECV is in the kernel */
	bool done;                /* the waiter's: completed (res set), fn not run yet */
	bool cancel_sent;         /* the waiter's */
	struct loop_recv *next;   /* on loop_wait's recvs or recv_cancels */
	loop_recv_fn fn;          /* the loop's */
	void *arg;
	bool want, stopped;
	struct loop_recv *all_next;
};

/* Sleeps up to timeout_ms (-1: as long as it likes; 0: not at all) or until w->epfd is
 * readable or the waiter's own work is ready; fills w's out fields. Returns 0, or
 * -errno (-EINTR: the loop goes on; others end loop_run()). Events it reports are
 * collected during the call: never earlier, when a watch may since have gone. */
typedef int (*loop_wait_fn)(void *arg, struct loop_wait *w, int timeout_ms);

int loop_create(struct loop **out);
void loop_destroy(struct loop *lp); /* NULL ok; watchers must be removed first */

/* Watches fd for events. The watch is freed by loop_watch_remove(). */
int loop_watch_add(struct loop *lp, int fd, unsigned events, loop_fd_fn fn, void *arg,
		   struct loop_watch **out);
int loop_watch_modify(struct loop_watch *w, unsigned events);
/* Safe from inside any callback, including the watch's own. NULL ok. */
void loop_watch_remove(struct loop_watch *w);

/* A one-shot timer, after ms. Cancel (before or after it fired) with loop_timer_cancel. */
int loop_timer_add(struct loop *lp, unsigned ms, loop_fn fn, void *arg, struct loop_timer **out);
void loop_timer_cancel(struct loop_timer *t); /* NULL ok; a fired timer is already freed:
						  only cancel timers that have not fired */

/* Called before every wait; its return value bounds the wait. One hook per loop is
 * enough for quilld (the engine's); a second replaces the first. */
void loop_set_idle(struct loop *lp, loop_idle_fn fn, void *arg);

/* Replaces the loop's epoll_wait() sleep by fn (see loop_wait_fn). */
void loop_set_wait(struct loop *lp, loop_wait_fn fn, void *arg);
/* The waiter makes the sends of loop_wait (loop_send_queue() takes sends from now on). */
void loop_set_wait_sends(struct loop *lp, bool takes);

/* Queues s (fd, buf, len, fn, arg set) for the loop's next sleep. Returns -ENOTSUP if
 * the loop's waiter takes no sends (the caller sends itself), -EBUSY if s is queued
 * already, else 0. */
int loop_send_queue(struct loop *lp, struct loop_send *s);
/* For a waiter that cannot sleep in its own way after all (its ring failed): makes
 * every send of the list not made yet, now, with send(). */
void loop_sends_make(struct loop_send *sends);
/* The waiter keeps receives in its ring (loop_recv_start() works from now on). */
void loop_set_wait_recvs(struct loop *lp, bool takes);
/* Receives on fd (non-blocking, the caller's to close after loop_recv_stop) into a
 * buffer of cap bytes, through the waiter: see struct loop_recv. Returns -ENOTSUP if
 * the waiter takes no receives (the caller watches the fd itself), -ENOMEM, or 0. */
int loop_recv_start(struct loop *lp, int fd, size_t cap, loop_recv_fn fn, void *arg,
		    struct loop_recv **out);
/* Whether the receive goes in again after its completion (flow control: one in the
 * ring already completes as it will, and its fn runs). */
void loop_recv_want(struct loop_recv *r, bool want);
/* Its fn will not run again; the loop frees it once the kernel gave it back. Safe from
 * any callback, including its own fn. NULL ok. */
void loop_recv_stop(struct loop_recv *r);

/* Takes s back if it is queued, made or not (s->done says): its fn will not run.
 * Safe from any callback, including another send's fn. */
void loop_send_cancel(struct loop *lp, struct loop_send *s);

/* A task runs fn(arg) once each time it is scheduled, before the loop next sleeps
 * (after the idle hook; no system call, unlike a 0 ms timer's wake-up). Scheduling
 * a task that is already scheduled does nothing; a task may schedule itself again
 * from fn, or destroy itself. Destroying unschedules it. NULL ok for destroy. */
int loop_task_create(struct loop *lp, loop_fn fn, void *arg, struct loop_task **out);
void loop_task_schedule(struct loop_task *t);
void loop_task_destroy(struct loop_task *t);

/* Runs until loop_stop(). Returns 0, or -errno if epoll fails. */
int loop_run(struct loop *lp);
/* CLOCK_MONOTONIC in ms: the clock timers use (also for deadlines outside the loop). */
uint64_t loop_now_ms(void);
void loop_stop(struct loop *lp);

#endif
