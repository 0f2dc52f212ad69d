/* store/store.h — a node's local device: asynchronous block I/O over io_uring.
 *
 * The store is a flat byte range on a block device or a preallocated regular file,
 * opened with O_DIRECT: no page cache. Every offset and length is a multiple of
 * STORE_ALIGN, lengths are not 0, and every buffer is aligned to STORE_ALIGN (use
 * store_buf_alloc()); anything else is -EINVAL.
 *
 * Threading: a store belongs to the thread that opened it; every call except
 * store_event_fd() must come from that thread. Completions run from store_poll()
 * on that thread.
 *
 * Async contract: store_read/store_write/store_writev/store_flush return 0, and then
 * the callback runs exactly once, from a later store_poll(), with the number of
 * bytes transferred (the full length: short transfers are resubmitted internally)
 * or -errno; or they return -errno, and then the callback never runs.
 * Requests are queued and submitted in batches: by store_submit(), or by
 * store_poll(), or when the submission queue is full.
 */
#ifndef QUILL_STORE_STORE_H
#define QUILL_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define STORE_ALIGN 4096u

struct store;

struct store_opts {
	const char *path;      /* block device or regular file */
	uint64_t create_size;  /* regular file only: if the file is missing, create it
				  with this size, preallocated with fallocate(). An existing
				  file is used at its size (store_grow() extends it).
				  0 = never create. */
	unsigned queue_depth;  /* io_uring entries; 0 = 256 */
};

typedef void (*store_cb)(void *arg, int res);

/* Opens (and for a file, creates or extends) the store. -EINVAL for a size that is
 * not a multiple of STORE_ALIGN, -errno from open/fallocate/io_uring_queue_init. */
int store_open(const struct store_opts *opts, struct store **out);
/* Waits for every request in flight (running their callbacks), then closes. NULL ok.
 * Must not be called from a callback; requests issued by callbacks while it drains
 * are refused with -ESHUTDOWN. */
void store_close(struct store *st);

/* Usable size in bytes (rounded down to STORE_ALIGN). */
uint64_t store_size(const struct store *st);
/* True when store_open() created the file: it holds nothing but zeros. */
bool store_created(const struct store *st);
/* Extends a regular file to size bytes (a multiple of STORE_ALIGN), preallocated; its
 * data is kept. Nothing to do if it is that large already. -ENOTSUP for a block
 * device, -errno from fallocate. Not while requests are in flight. */
int store_grow(struct store *st, uint64_t size);
/* The next range [*start, *end) at or after off that may hold data, aligned to
 * STORE_ALIGN: ranges a regular file has never written (holes, preallocated space)
 * are skipped; a block device is all data. -ENXIO when nothing follows off. */
int store_next_data(struct store *st, uint64_t off, uint64_t *start, uint64_t *end);

int store_read(struct store *st, uint64_t off, void *buf, size_t len, store_cb cb, void *arg);
int store_write(struct store *st, uint64_t off, const void *buf, size_t len, store_cb cb, void *arg);
/* iov is copied; the buffers it points to must stay valid until the callback. */
int store_writev(struct store *st, uint64_t off, const struct iovec *iov, int iovcnt,
		 store_cb cb, void *arg);
int store_readv(struct store *st, uint64_t off, const struct iovec *iov, int iovcnt,
		store_cb cb, void *arg);
/* fdatasync: every write that completed before this call is durable when cb runs. */
int store_flush(struct store *st, store_cb cb, void *arg);

/* Submits queued requests. Returns 0 or -errno. */
int store_submit(struct store *st);
/* Submits queued requests, then reaps completions and runs their callbacks.
 * Waits up to timeout_ms for at least one completion if none is ready
 * (0 = don't wait, -1 = wait forever while requests are in flight).
 * Returns the number of callbacks run, or -errno. */
int store_poll(struct store *st, int timeout_ms);
/* Reaps completions that are ready and runs their callbacks, without submitting or
 * waiting, and without a system call (what is queued goes out, and completion work
 * the kernel holds is run, with the next store_poll()/store_wait_fd()).
 * Returns the number of callbacks run, or -errno. */
int store_reap(struct store *st);
/* For an event loop that sleeps in the store (common/loop.h's waiter): submits queued
 * requests, then waits up to timeout_ms (-1: forever) until a completion is ready or
 * w->epfd (the loop's epoll fd) is readable, then reaps and runs callbacks. The watch
 * of w->epfd stays in the ring until it fires: where the kernel has
 * IORING_OP_EPOLL_WAIT it collects the events into w->events itself (which must
 * stay valid, and the same, until the store is closed or the watch fired), else it
 * is a poll. w->ready: the fd became readable since the last call; w->nevents: how
 * many events this call collected (0: the caller runs epoll_wait). Events collected
 * by an earlier store_poll()/store_reap() are not reported (they may be stale): only
 * ready. One fd per store: another fd or buffer is -EINVAL while the watch is armed.
 * w->min_events > 1: the sleep lasts until that many completions (the watch's
 * counts one) or the timeout, not until the first: the caller knows that a lone one
 * would wake it for nothing (engine.h's engine_wait_fd). w->min_events_bounded with
 * w->min_wait_us: where the kernel has the min timeout (store_has_min_wait), the sleep
 * lasts until that many came (more or fewer than min_events), or once min_wait_us
 * passed until the first; elsewhere min_events counts.
 * w->spin_us (not 0): before it sleeps, the call submits and polls the ring for up to
 * that long, until the completions the sleep would wait for came (min_events; the
 * fd's readiness counts; a call with min_events_bounded does not poll), and sleeps
 * only if they did not, for what the poll left of timeout_ms (store_spin_counts). How long it polls adapts to the waits
 * (at most spin_us): waits longer than spin_us end the polls until a short one.
 * w->sends (loop.h's loop_send): each goes into this call's submit as a non-blocking
 * IORING_OP_SEND (a full socket: -EAGAIN), and has its res with done set when the call
 * returns, so their buffers are the caller's again; their completions end no sleep.
 * One the CQ has no room for is left not done, and then the call does not sleep; on a
 * ring failure those the ring did not take are left not done (the caller makes them).
 * w->recvs (loop.h's loop_recv): each goes in as an IORING_OP_RECV into its buffer and
 * stays in the ring (in_ring) until data, the peer's close or an error completes it,
 * in this call or a later store_poll()/store_reap()/store_wait_fd() (then res with done
 * set, in_ring cleared); each completion is a wake-up of the sleep, and counts as a
 * callback run. One the ring has no room for is left out (the loop lists it again);
 * the call sleeps anyway when I/O in the ring will wake it. w->recv_cancels: each gets
 * a cancel (cancel_sent), and completes later, -ECANCELED unless data came first.
 * store_close() cancels and reaps those still in the ring (-ECANCELED): the kernel
 * keeps no buffer of the loop's past the close.
 * Returns the number of callbacks run, or -errno. */
struct loop_wait;
int store_wait_fd(struct store *st, struct loop_wait *w, int timeout_ms);
/* Whether store_wait_fd() honours w->min_events_bounded (the kernel's min timeout,
 * IORING_FEAT_MIN_TIMEOUT, Linux 6.12). */
bool store_has_min_wait(const struct store *st);
/* How many store_wait_fd() calls polled (w->spin_us), and how many of them the
 * completions came to while polling (the sleep was saved). */
void store_spin_counts(const struct store *st, uint64_t *spins, uint64_t *caught);
/* Number of requests submitted or queued whose callback has not run yet. */
unsigned store_inflight(const struct store *st);
/* An eventfd that becomes readable when completions are ready (for epoll loops).
 * The caller reads it to reset it; store_poll() does not. */
int store_event_fd(const struct store *st);

/* Blocking helpers for start-up and tools (not for the I/O path). Same alignment
 * rules. Return 0 or -errno (a short transfer is -EIO). */
int store_read_sync(struct store *st, uint64_t off, void *buf, size_t len);
int store_write_sync(struct store *st, uint64_t off, const void *buf, size_t len);
int store_flush_sync(struct store *st);

/* STORE_ALIGN-aligned buffers, zeroed. NULL on failure. store_buf_free(NULL) is ok. */
void *store_buf_alloc(size_t len);
/* A copy of src's len bytes in such a buffer (not zeroed first: a 2 MiB fragment's
 * memset was a fifth of a holder's extra CPU per EC write). */
void *store_buf_dup(const void *src, size_t len);
void store_buf_free(void *buf);

#endif
