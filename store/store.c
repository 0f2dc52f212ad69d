/* store/store.c — store.h over io_uring and O_DIRECT.
 *
 * One ring per store, the device registered as fixed file 0, an eventfd registered
 * for completions. Each request is a struct store_req taken from a free list that
 * grows by slabs and never shrinks until close, so the steady path does no malloc.
 *
 * A request is in one of three places:
 *   pending list — accepted, but the ring may not take it yet;
 *   in the ring  — an SQE was prepared (submitted or not) and its CQE not yet handled;
 *   free list    — its callback has run (or is about to: the request is freed first,
 *                  so the callback may issue new I/O that reuses it).
 * At most cq_entries requests are in the ring, so the CQ can never overflow.
 *
 * Completions are copied out of the CQ and the CQ advanced before any callback runs,
 * which makes store_poll() re-entrant: a callback may issue I/O, submit, or poll.
 * Only store_close() must not be called from a callback.
 *
 * The ring is set up for one thread (SINGLE_ISSUER) that runs completion work when it
 * asks for completions (DEFER_TASKRUN): no inter-processor interrupt, no interrupted
 * system call per completion. Older kernels get COOP_TASKRUN, or nothing. An event
 * loop can sleep in the ring itself (store_wait_fd()): a one-shot poll of the loop's
 * own fd (an epoll fd) sits in the ring beside the I/O, so one io_uring_enter submits,
 * sleeps and wakes for either. That poll takes one CQ entry, kept aside for it. On
 * kernels with IORING_OP_EPOLL_WAIT (6.15) the poll is an epoll_wait in the ring: it
 * completes with the loop's events already collected, and the loop makes no
 * epoll_wait of its own. The loop's sends (loop.h's loop_send) go into that same
 * io_uring_enter as SENDs with MSG_DONTWAIT: each completes in the submit, takes a CQ
 * entry (in_ring counts it) and is reaped before store_wait_fd() returns. The loop's
 * receives (loop.h's loop_recv) go in as RECVs that wait in the kernel: each takes a
 * CQ entry while it is there (in_ring counts it), and its completion is a wake-up of
 * the sleep like a write's; a stopped one is cancelled (the cancel's own CQE takes an
 * entry too), and store_close() cancels and reaps those left, so the kernel never
 * writes into a buffer the loop has freed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "store/store.h"

#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <liburing.h>
#include <poll.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#define STORE_DEFAULT_QD 256u
#define STORE_MAX_QD 32768u	 /* IORING_MAX_ENTRIES */
#define STORE_MAX_IO 0x7ffff000u /* the kernel's MAX_RW_COUNT; also fits the int result */
#define STORE_IOV_INLINE 4	 /* vectors up to this size need no allocation */
#define STORE_MAX_RETRIES 16	 /* -EAGAIN/-EINTR resubmissions before giving up */
#define STORE_REAP_BATCH 32
#define STORE_SLAB_REQS 64
#define STORE_FD_POLL_CQES 1u	 /* CQ entries kept for the poll of store_wait_fd() */
#define POLL_GROW_START_US 20u /* the poll's window grows from this (poll_adapt) */
/* IORING_OP_EPOLL_WAIT, enum io_uring_op's number since Linux 6.15 (after RECV_ZC);
 * Debian 12's headers (6.1) do not name it. Used only if the ring's probe says the
 * kernel has it. */
#define STORE_OP_EPOLL_WAIT 59

_Static_assert(STORE_MAX_IO % STORE_ALIGN == 0, "largest transfer must stay aligned");
_Static_assert(STORE_MAX_IO <= INT_MAX, "callback result is an int");

enum req_op { REQ_READ, REQ_WRITE, REQ_FSYNC };

struct store_req {
	struct store_req *next; /* free list or pending list */
	store_cb cb;
	void *arg;
	uint64_t off;		/* device offset of what remains to transfer */
	struct iovec *iov;	/* what remains: points into iov_inline or iov_heap */
	int iovcnt;
	int iov_cap;		/* entries in iov_heap, kept across reuse */
	struct iovec *iov_heap;
	size_t total;		/* bytes asked for */
	size_t done;		/* bytes transferred so far */
	unsigned retries;
	enum req_op op;
	uint64_t queued_us;	/* when the caller asked (tracing only, else 0) */
	struct iovec iov_inline[STORE_IOV_INLINE];
};

struct store_slab {
	struct store_slab *next;
	struct store_req reqs[STORE_SLAB_REQS];
};

/* Owned by the thread that opened it (see store.h). */
struct store {
	struct io_uring ring;
	int fd;
	int event_fd;
	uint64_t size;
	bool created;		 /* store_open() created the file */
	bool regular;		 /* a regular file (else a block device) */
	char *path;		 /* for log lines */
	unsigned max_in_ring;	 /* CQ entries for requests (one more is the poll's) */
	unsigned in_ring;	 /* requests with an SQE prepared and the CQE not handled */
	unsigned active;	 /* accepted requests whose callback has not run */
	bool closing;		 /* store_close() is draining: new requests are refused */
	int poll_fd;		 /* store_wait_fd()'s fd while its poll is in the ring, or -1 */
	void *poll_events;	 /* where that poll, an EPOLL_WAIT, puts events (else NULL) */
	bool poll_fired;	 /* that poll completed: the fd is (or was) readable */
	unsigned recvs_in_ring;	 /* loop receives whose CQE is not reaped (in in_ring too) */
	unsigned sends_in_ring;	 /* loop sends of store_wait_fd() whose CQE is not reaped
				    (counted in in_ring too: they take CQ entries) */
	int poll_nevents;	 /* events an EPOLL_WAIT collected when it completed */
	bool epoll_wait_op;	 /* the kernel has IORING_OP_EPOLL_WAIT */
	bool min_wait;		 /* the kernel has the min timeout (enter_min_wait) */
	bool trace;		 /* LOG_DEBUG at open: slow requests and flushes logged */
	uint64_t poll_us;	 /* the poll's window now, at most spin_us (poll_adapt) */
	uint64_t spins;		 /* store_wait_fd() calls that polled (spin_us) ... */
	uint64_t spins_caught;	 /* ... and of them, those that did not sleep after */
	struct store_req *free;
	struct store_req *pending_head;
	struct store_req **pending_tail;
	struct store_slab *slabs;
};

/* ---- request allocation ---- */

static int slab_grow(struct store *st)
{
	struct store_slab *slab = calloc(1, sizeof(*slab));

	if (!slab)
		return -ENOMEM;
	slab->next = st->slabs;
	st->slabs = slab;
	for (unsigned i = 0; i < STORE_SLAB_REQS; i++) {
		slab->reqs[i].next = st->free;
		st->free = &slab->reqs[i];
	}
	return 0;
}

static void slabs_free(struct store *st)
{
	struct store_slab *slab = st->slabs;

	while (slab) {
		struct store_slab *next = slab->next;

		for (unsigned i = 0; i < STORE_SLAB_REQS; i++)
			free(slab->reqs[i].iov_heap);
		free(slab);
		slab = next;
	}
	st->slabs = NULL;
	st->free = NULL;
}

static struct store_req *req_get(struct store *st)
{
	struct store_req *req;

	if (!st->free && slab_grow(st) < 0)
		return NULL;
	req = st->free;
	st->free = req->next;
	req->next = NULL;
	req->done = 0;
	req->retries = 0;
	req->iov = req->iov_inline;
	req->iovcnt = 0;
	return req;
}

static void req_put(struct store *st, struct store_req *req)
{
	req->next = st->free;
	st->free = req;
}

/* Copies the caller's vector into the request. 0 or -ENOMEM. */
static int req_set_iov(struct store_req *req, const struct iovec *iov, int iovcnt)
{
	struct iovec *dst = req->iov_inline;

	if (iovcnt > STORE_IOV_INLINE) {
		if (iovcnt > req->iov_cap) {
			struct iovec *grown = realloc(req->iov_heap, sizeof(*grown) * (size_t)iovcnt);

			if (!grown)
				return -ENOMEM;
			req->iov_heap = grown;
			req->iov_cap = iovcnt;
		}
		dst = req->iov_heap;
	}
	memcpy(dst, iov, sizeof(*dst) * (size_t)iovcnt);
	req->iov = dst;
	req->iovcnt = iovcnt;
	return 0;
}

/* Drops the first n bytes of the remaining vector after a short transfer. */
static void req_advance(struct store_req *req, size_t n)
{
	req->off += n;
	while (req->iovcnt > 0 && n >= req->iov[0].iov_len) {
		n -= req->iov[0].iov_len;
		req->iov++;
		req->iovcnt--;
	}
	if (n) {
		req->iov[0].iov_base = (char *)req->iov[0].iov_base + n;
		req->iov[0].iov_len -= n;
	}
}

/* ---- submission ---- */

static void req_prep(struct io_uring_sqe *sqe, struct store_req *req)
{
	const struct iovec *v = req->iov;
	bool rd = req->op == REQ_READ;

	if (req->op == REQ_FSYNC)
		io_uring_prep_fsync(sqe, 0, IORING_FSYNC_DATASYNC);
	else if (req->iovcnt == 1)
		io_uring_prep_rw(rd ? IORING_OP_READ : IORING_OP_WRITE, sqe, 0, v->iov_base,
				 (unsigned)v->iov_len, req->off);
	else
		io_uring_prep_rw(rd ? IORING_OP_READV : IORING_OP_WRITEV, sqe, 0, v,
				 (unsigned)req->iovcnt, req->off);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, req);
}

static bool submit_error_is_transient(int r)
{
	return r >= 0 || r == -EAGAIN || r == -EBUSY || r == -EINTR || r == -ETIME;
}

static int ring_submit(struct store *st)
{
	int r = io_uring_submit(&st->ring);

	if (submit_error_is_transient(r))
		return 0;
	LOG_RATELIMITED(LOG_ERROR, "store", "%s: io_uring_submit: %s", st->path, err_str(-r));
	return r;
}

/* Puts req into the SQ, submitting first if the SQ is full. False if no SQE. */
static bool req_to_ring(struct store *st, struct store_req *req)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);

	if (!sqe) {
		ring_submit(st);
		sqe = io_uring_get_sqe(&st->ring);
		if (!sqe)
			return false;
	}
	req_prep(sqe, req);
	st->in_ring++;
	return true;
}

static void pending_push(struct store *st, struct store_req *req)
{
	req->next = NULL;
	*st->pending_tail = req;
	st->pending_tail = &req->next;
}

static struct store_req *pending_pop(struct store *st)
{
	struct store_req *req = st->pending_head;

	if (req) {
		st->pending_head = req->next;
		if (!st->pending_head)
			st->pending_tail = &st->pending_head;
		req->next = NULL;
	}
	return req;
}

/* Moves pending requests into the ring, oldest first, while it has room. */
static void pending_drain(struct store *st)
{
	while (st->pending_head && st->in_ring < st->max_in_ring) {
		if (!req_to_ring(st, st->pending_head))
			return;
		pending_pop(st);
	}
}

/* Queues req behind any pending ones, or into the ring if there is room. */
static void req_issue(struct store *st, struct store_req *req)
{
	if (st->pending_head || st->in_ring >= st->max_in_ring || !req_to_ring(st, req))
		pending_push(st, req);
}

/* ---- completion ---- */

static const char *op_name(enum req_op op)
{
	return op == REQ_READ ? "read" : op == REQ_WRITE ? "write" : "flush";
}

/* Requests slower than this are logged at LOG_DEBUG; flushes always are. */
#define STORE_TRACE_SLOW_US 5000u

static void req_trace(const struct store *st, const struct store_req *req, int res)
{
	uint64_t us = log_clock_us() - req->queued_us;

	if (req->op == REQ_FSYNC || us >= STORE_TRACE_SLOW_US)
		log_msg(LOG_DEBUG, "store", "%s at %" PRIu64 " (%zu bytes, %u in flight) took "
			"%.1f ms: %d", op_name(req->op), req->off, req->total, st->in_ring,
			(double)us / 1000.0, res);
}

static void req_complete(struct store *st, struct store_req *req, int res)
{
	store_cb cb = req->cb;
	void *arg = req->arg;

	if (st->trace)
		req_trace(st, req, res);
	req_put(st, req);
	st->active--;
	cb(arg, res);
}


/* Handles one CQE: resubmits a retryable or short transfer, else runs the callback.
 * Returns 1 if a callback ran. */
static int req_handle(struct store *st, struct store_req *req, int res)
{
	st->in_ring--;
	if ((res == -EAGAIN || res == -EINTR) && ++req->retries <= STORE_MAX_RETRIES) {
		req_issue(st, req);
		return 0;
	}
	if (res >= 0 && req->op == REQ_FSYNC) {
		req_complete(st, req, 0);
		return 1;
	}
	if (res > 0 && (size_t)res <= req->total - req->done) {
		req->done += (size_t)res;
		if (req->done == req->total) {
			req_complete(st, req, (int)req->total);
			return 1;
		}
		req_advance(req, (size_t)res);
		req->retries = 0;
		req_issue(st, req);
		return 0;
	}
	if (res >= 0) {
		LOG_RATELIMITED(LOG_ERROR, "store", "%s: %s at offset %" PRIu64 " transferred %d "
				"of %zu bytes (past the end of the device?)", st->path,
				op_name(req->op), req->off, res, req->total - req->done);
		res = -EIO;
	} else {
		LOG_RATELIMITED(LOG_ERROR, "store", "%s: %s at offset %" PRIu64 " failed: %s",
				st->path, op_name(req->op), req->off, err_str(-res));
	}
	req_complete(st, req, res);
	return 1;
}

/* The user_data of store_wait_fd()'s poll: no request has this address. */
static char poll_tag;

/* A loop_send in the ring (store_wait_fd) is tagged in its user_data's low bit, which
 * no request's address has (poll_tag's may: it is checked first). */
#define SEND_TAG 1u
/* The user_data of a loop send, receive or receive's cancel taken back from an SQ
 * that a failed io_uring_enter left unconsumed (ring_disarm): a NOP now, whose CQE only
 * frees its CQ entry. */
static char disarmed_tag;

/* A loop_recv in the ring: tagged in the second bit (its address is 8-aligned). */
#define RECV_TAG 2u
#define USER_TAGS (SEND_TAG | RECV_TAG)
/* The user_data of a cancel of a loop_recv (its CQE only frees its CQ entry). */
static char recv_cancel_tag;

static bool is_tag(const void *data)
{
	return data == &poll_tag || data == &disarmed_tag || data == &recv_cancel_tag;
}

static bool is_send(const void *data)
{
	return !is_tag(data) && ((uintptr_t)data & USER_TAGS) == SEND_TAG;
}

static bool is_recv(const void *data)
{
	return !is_tag(data) && ((uintptr_t)data & USER_TAGS) == RECV_TAG;
}

/* The loop's struct (a loop_send or loop_recv) that a tagged user_data points to. */
static void *untag(const void *data)
{
	return (void *)((uintptr_t)data & ~(uintptr_t)USER_TAGS);
}

/* Reaps what the CQ holds (at most one CQ's worth, so a chain of callbacks cannot
 * keep one call going forever), then submits what callbacks issued unless told not
 * to. Returns the number of callbacks run. Without submit it never enters the kernel:
 * liburing's peek would, to run completion work that waits there (TASKRUN), a system
 * call the loop's next sleep makes anyway, and one that would collect the loop's
 * events early (store_wait_fd() must then report them as stale). */
static int reap(struct store *st, bool submit)
{
	unsigned budget = st->max_in_ring + STORE_FD_POLL_CQES;
	int ran = 0;

	while (budget) {
		struct io_uring_cqe *cqes[STORE_REAP_BATCH];
		struct { struct store_req *req; int res; } done[STORE_REAP_BATCH];
		unsigned want = budget < STORE_REAP_BATCH ? budget : STORE_REAP_BATCH;
		unsigned n = submit || io_uring_cq_ready(&st->ring) ?
			     io_uring_peek_batch_cqe(&st->ring, cqes, want) : 0;

		if (!n)
			break;
		for (unsigned i = 0; i < n; i++) {
			done[i].req = io_uring_cqe_get_data(cqes[i]);
			done[i].res = cqes[i]->res;
		}
		io_uring_cq_advance(&st->ring, n);
		budget -= n;
		for (unsigned i = 0; i < n; i++) {
			if ((void *)done[i].req == &poll_tag) {
				st->poll_fd = -1;
				st->poll_fired = true;
				st->poll_nevents = st->poll_events && done[i].res > 0 ? done[i].res : 0;
				continue;
			}
			if ((void *)done[i].req == &disarmed_tag ||
			    (void *)done[i].req == &recv_cancel_tag) {
				st->in_ring--;
				continue;
			}
			if (is_send(done[i].req)) {
				struct loop_send *ls = untag(done[i].req);

				ls->res = done[i].res;
				ls->done = true;
				st->in_ring--;
				st->sends_in_ring--;
				continue;
			}
			if (is_recv(done[i].req)) {
				struct loop_recv *lr = untag(done[i].req);

				lr->res = done[i].res;
				lr->done = true;
				lr->in_ring = false;
				st->in_ring--;
				st->recvs_in_ring--;
				ran++; /* the loop has work: not a sleep's worth of nothing */
				continue;
			}
			ran += req_handle(st, done[i].req, done[i].res);
		}
		pending_drain(st);
	}
	/* Requests issued by callbacks or moved from the pending list go out now, so an
	 * event loop that polls only when the eventfd fires cannot strand them. */
	if (submit && io_uring_sq_ready(&st->ring))
		ring_submit(st);
	return ran;
}

/* ---- argument checks ---- */

static int check_call(const struct store *st, store_cb cb)
{
	if (!st || !cb)
		return -EINVAL;
	return st->closing ? -ESHUTDOWN : 0;
}

static int check_range(const struct store *st, uint64_t off, size_t len)
{
	if (len == 0 || len > STORE_MAX_IO || off % STORE_ALIGN || len % STORE_ALIGN)
		return -EINVAL;
	if (off > st->size || len > st->size - off)
		return -EINVAL;
	return 0;
}

static bool buf_aligned(const void *buf)
{
	return buf && (uintptr_t)buf % STORE_ALIGN == 0;
}

/* Every segment aligned and the sum within one transfer. Sets *total. */
static int check_iov(const struct iovec *iov, int iovcnt, size_t *total)
{
	size_t sum = 0;

	if (!iov || iovcnt < 1 || iovcnt > IOV_MAX)
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		size_t len = iov[i].iov_len;

		if (len % STORE_ALIGN || (uintptr_t)iov[i].iov_base % STORE_ALIGN)
			return -EINVAL;
		if ((len && !iov[i].iov_base) || len > STORE_MAX_IO - sum)
			return -EINVAL;
		sum += len;
	}
	*total = sum;
	return 0;
}

/* ---- public I/O ---- */

static int queue_req(struct store *st, enum req_op op, uint64_t off, const struct iovec *iov,
		     int iovcnt, size_t total, store_cb cb, void *arg)
{
	struct store_req *req = req_get(st);

	if (!req)
		return -ENOMEM;
	if (iovcnt && req_set_iov(req, iov, iovcnt) < 0) {
		req_put(st, req);
		return -ENOMEM;
	}
	req->op = op;
	req->off = off;
	req->total = total;
	req->cb = cb;
	req->arg = arg;
	req->queued_us = st->trace ? log_clock_us() : 0;
	st->active++;
	req_issue(st, req);
	return 0;
}

static int queue_rwv(struct store *st, enum req_op op, uint64_t off, const struct iovec *iov,
		     int iovcnt, store_cb cb, void *arg)
{
	size_t total = 0;
	int r = check_call(st, cb);

	if (r == 0)
		r = check_iov(iov, iovcnt, &total);
	if (r == 0)
		r = check_range(st, off, total);
	if (r < 0)
		return r;
	return queue_req(st, op, off, iov, iovcnt, total, cb, arg);
}

int store_read(struct store *st, uint64_t off, void *buf, size_t len, store_cb cb, void *arg)
{
	struct iovec one = { .iov_base = buf, .iov_len = len };

	if (!buf)
		return -EINVAL;
	return queue_rwv(st, REQ_READ, off, &one, 1, cb, arg);
}

int store_write(struct store *st, uint64_t off, const void *buf, size_t len, store_cb cb,
		void *arg)
{
	struct iovec one = { .iov_base = (void *)buf, .iov_len = len };

	if (!buf)
		return -EINVAL;
	return queue_rwv(st, REQ_WRITE, off, &one, 1, cb, arg);
}

int store_readv(struct store *st, uint64_t off, const struct iovec *iov, int iovcnt,
		store_cb cb, void *arg)
{
	return queue_rwv(st, REQ_READ, off, iov, iovcnt, cb, arg);
}

int store_writev(struct store *st, uint64_t off, const struct iovec *iov, int iovcnt,
		 store_cb cb, void *arg)
{
	return queue_rwv(st, REQ_WRITE, off, iov, iovcnt, cb, arg);
}

int store_flush(struct store *st, store_cb cb, void *arg)
{
	int r = check_call(st, cb);

	if (r < 0)
		return r;
	return queue_req(st, REQ_FSYNC, 0, NULL, 0, 0, cb, arg);
}

int store_submit(struct store *st)
{
	if (!st)
		return -EINVAL;
	pending_drain(st);
	return ring_submit(st);
}

/* The kernel's min timeout (Linux 6.12): io_uring_getevents_arg's min_wait_usec, which
 * liburing 2.3 calls pad and does not fill. Our own copy of the struct, the same size. */
#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)
#endif
struct getevents_arg {
	uint64_t sigmask;
	uint32_t sigmask_sz;
	uint32_t min_wait_usec;
	uint64_t ts;
};
_Static_assert(sizeof(struct getevents_arg) == sizeof(struct io_uring_getevents_arg),
	       "the kernel's struct");

/* io_uring_submit_and_wait_timeout() with a min timeout, which liburing 2.3 cannot
 * pass: the SQ is flushed as liburing's __io_uring_flush_sq does (not exported; no
 * SQPOLL here), then one io_uring_enter submits it and sleeps until nr completions
 * came or, once min_wait_us passed, until the first (ts NULL: no timeout, so the min
 * timeout ends the sleep). Returns what io_uring_enter returns, or -errno. */
static int enter_min_wait(struct store *st, unsigned nr, unsigned min_wait_us,
			  const struct __kernel_timespec *ts)
{
	struct io_uring_sq *sq = &st->ring.sq;
	struct getevents_arg arg = { .min_wait_usec = min_wait_us,
				     .ts = (uint64_t)(uintptr_t)ts };
	unsigned submit;

	if (sq->sqe_head != sq->sqe_tail) {
		sq->sqe_head = sq->sqe_tail;
		__atomic_store_n(sq->ktail, sq->sqe_tail, __ATOMIC_RELEASE);
	}
	submit = sq->sqe_tail - __atomic_load_n(sq->khead, __ATOMIC_ACQUIRE);
	return io_uring_enter2((unsigned)st->ring.ring_fd, submit, nr,
			       IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, (sigset_t *)&arg,
			       sizeof(arg));
}

/* Submits what the SQ holds, then polls until nr completions are ready or the clock
 * (log_clock_us) passes end_us (loop.h's spin_us). Completion work the kernel holds
 * for us (DEFER_TASKRUN, COOP_TASKRUN) is run only once it says there is some
 * (IORING_SQ_TASKRUN: ring_init's TASKRUN_FLAG); a ring with neither mode holds none
 * (the kernel interrupts us to post completions), and the flag never comes. So no
 * system call while nothing came. True if they came (the caller then does not
 * sleep); false at end_us, or on a submit error (the sleep's own submit reports it). */
static bool poll_for(struct store *st, unsigned nr, uint64_t end_us)
{
	if (!submit_error_is_transient(io_uring_submit_and_get_events(&st->ring)))
		return false;
	st->spins++;
	do {
		if (io_uring_cq_ready(&st->ring) >= nr) {
			st->spins_caught++;
			return true;
		}
		if (IO_URING_READ_ONCE(*st->ring.sq.kflags) & IORING_SQ_TASKRUN)
			io_uring_get_events(&st->ring);
	} while (log_clock_us() < end_us);
	return false;
}

/* The poll's window (poll_us) follows how long the waits polled for last, as the
 * kernel's haltpoll governor does for an idle CPU: a wait that outlasted the window
 * but not spin_us doubles it (from POLL_GROW_START_US), one that outlasted spin_us
 * halves it (below POLL_GROW_START_US: 0, no poll, until a wait short enough grows
 * it again). A disk whose I/O outlasts spin_us (a slow or loaded one) so costs no
 * CPU in polls that end in a sleep anyway. A poll that caught what it waited for
 * waited within the window: it stays. */
static void poll_adapt(struct store *st, uint64_t waited_us, unsigned spin_us)
{
	if (waited_us > spin_us) {
		st->poll_us /= 2;
		if (st->poll_us < POLL_GROW_START_US)
			st->poll_us = 0;
	} else if (waited_us > st->poll_us) {
		st->poll_us = st->poll_us ? 2 * st->poll_us : POLL_GROW_START_US;
		if (st->poll_us > spin_us)
			st->poll_us = spin_us;
	}
}

/* Submits what the SQ holds and sleeps up to timeout_us (-1: forever) for nr
 * completions (at least one); with the kernel's min timeout and nr_bounded (not 0),
 * for nr_bounded of them instead (more or fewer) or, once min_wait_us passed, the
 * first (loop.h's min_events_bounded). What io_uring_enter returns, or -errno. */
static int sleep_in_ring(struct store *st, int64_t timeout_us, unsigned nr,
			 unsigned nr_bounded, unsigned min_wait_us)
{
	struct __kernel_timespec ts = {
		.tv_sec = timeout_us / 1000000,
		.tv_nsec = (long long)(timeout_us % 1000000) * 1000,
	};
	struct io_uring_cqe *cqe;

	if (st->min_wait && nr_bounded && min_wait_us)
		return enter_min_wait(st, nr_bounded, min_wait_us, timeout_us < 0 ? NULL : &ts);
	if (timeout_us < 0)
		return io_uring_submit_and_wait(&st->ring, nr ? nr : 1);
	return io_uring_submit_and_wait_timeout(&st->ring, &cqe, nr ? nr : 1, &ts, NULL);
}

/* What is left at this time of timeout_ms (-1: forever) counted from t0, in µs (-1:
 * forever; 0: none). */
static int64_t timeout_left_us(int timeout_ms, uint64_t t0)
{
	int64_t left;

	if (timeout_ms < 0)
		return -1;
	left = (int64_t)timeout_ms * 1000 - (int64_t)(log_clock_us() - t0);
	return left > 0 ? left : 0;
}

/* sleep_in_ring for nr completions, polled for first (poll_for) within the window
 * (poll_us, at most spin_us), which the time waited then adapts (poll_adapt). The
 * sleep has what the poll left of timeout_ms (nothing left: no sleep): with all of
 * it, a loop timer due within the window fired up to a window late. */
static int poll_then_sleep(struct store *st, int timeout_ms, unsigned nr, unsigned spin_us)
{
	uint64_t t0 = log_clock_us();
	uint64_t window = st->poll_us < spin_us ? st->poll_us : spin_us;
	int r = 0;

	if (!window || !poll_for(st, nr, t0 + window)) {
		int64_t left_us = timeout_left_us(timeout_ms, t0);

		r = left_us ? sleep_in_ring(st, left_us, nr, 0, 0) : io_uring_submit(&st->ring);
	}
	poll_adapt(st, log_clock_us() - t0, spin_us);
	return r;
}

/* Submits what the SQ holds and, unless timeout_ms is 0 or a completion is ready,
 * waits for them (sleep_in_ring), polling first for up to spin_us unless nr_bounded
 * (poll_then_sleep). 0 or -errno. */
static int submit_and_wait(struct store *st, int timeout_ms, unsigned nr, unsigned nr_bounded,
			   unsigned min_wait_us, unsigned spin_us)
{
	bool idle = st->in_ring == 0 && st->poll_fd < 0; /* nothing could wake us */
	int r;

	if (timeout_ms == 0 || idle || io_uring_cq_ready(&st->ring))
		r = io_uring_submit(&st->ring);
	else if (spin_us && !nr_bounded)
		r = poll_then_sleep(st, timeout_ms, nr, spin_us);
	else
		r = sleep_in_ring(st, timeout_ms < 0 ? -1 : (int64_t)timeout_ms * 1000, nr,
				  nr_bounded, min_wait_us);
	if (!submit_error_is_transient(r)) {
		LOG_RATELIMITED(LOG_ERROR, "store", "%s: io_uring_enter: %s", st->path,
				err_str(-r));
		return r;
	}
	return 0;
}

int store_poll(struct store *st, int timeout_ms)
{
	int r;

	if (!st)
		return -EINVAL;
	pending_drain(st);
	r = submit_and_wait(st, timeout_ms, 1, 0, 0, 0);
	return r < 0 ? r : reap(st, true);
}

int store_reap(struct store *st)
{
	if (!st)
		return -EINVAL;
	pending_drain(st);
	return reap(st, false);
}

/* Puts the one-shot watch of w->epfd into the SQ (it goes in with the next submit): an
 * EPOLL_WAIT into w->events where the kernel has it, else a poll. */
static int poll_arm(struct store *st, const struct loop_wait *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);

	if (!sqe) {
		ring_submit(st);
		sqe = io_uring_get_sqe(&st->ring);
		if (!sqe)
			return -EBUSY;
	}
	st->poll_events = st->epoll_wait_op ? w->events : NULL;
	if (st->poll_events)
		io_uring_prep_rw(STORE_OP_EPOLL_WAIT, sqe, w->epfd, w->events,
				 (unsigned)w->max_events, 0);
	else
		io_uring_prep_poll_add(sqe, w->epfd, POLLIN);
	io_uring_sqe_set_data(sqe, &poll_tag);
	st->poll_fd = w->epfd; /* not in in_ring: its CQ entry is kept aside */
	return 0;
}

/* Is w what the armed poll watches (the same fd, and events where its EPOLL_WAIT
 * writes)? Anything else while it is armed would lose its events or the buffer. */
static bool poll_matches(const struct store *st, const struct loop_wait *w)
{
	return st->poll_fd < 0 ||
	       (st->poll_fd == w->epfd && (!st->poll_events || st->poll_events == w->events));
}

/* w's sends go into the SQ as non-blocking SENDs (MSG_DONTWAIT: a full socket
 * completes -EAGAIN at once, never waits in the ring, so buf is the kernel's only
 * during the submit), as far as the CQ has room (sends_in_ring counts them); the loop
 * makes the others. Returns the first that did not go in, or NULL. */
static struct loop_send *sends_arm(struct store *st, struct loop_send *sends)
{
	struct loop_send *ls = sends;

	for (; ls && st->in_ring < st->max_in_ring; ls = ls->next) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);

		if (!sqe)
			break;
		_Static_assert(_Alignof(struct loop_send) > SEND_TAG, "the tag bit is free");
		if (ls->iovcnt > 0) /* gathered: the loop built ls->msg of ls->iov */
			io_uring_prep_sendmsg(sqe, ls->fd, &ls->msg, MSG_DONTWAIT | MSG_NOSIGNAL);
		else
			io_uring_prep_send(sqe, ls->fd, ls->buf, ls->len,
					   MSG_DONTWAIT | MSG_NOSIGNAL);
		io_uring_sqe_set_data(sqe, (void *)((uintptr_t)ls | SEND_TAG));
		st->in_ring++;
		st->sends_in_ring++;
	}
	return ls;
}

/* Whether the ring takes one more entry of the loop's (a receive or a cancel): with
 * *sleep cleared when not and nothing else in the ring would wake the sleep (no SQE,
 * or a CQ taken by receives alone). A CQ full of I/O only delays the receive: the
 * I/O's completion wakes the loop, which lists it again. */
static struct io_uring_sqe *recv_sqe(struct store *st, bool *sleep)
{
	struct io_uring_sqe *sqe;

	if (st->in_ring >= st->max_in_ring) {
		if (st->in_ring == st->recvs_in_ring)
			*sleep = false;
		return NULL;
	}
	sqe = io_uring_get_sqe(&st->ring);
	if (!sqe)
		*sleep = false;
	return sqe;
}

/* w's receives go into the SQ as RECVs that wait in the kernel for data, into the
 * loop's buffer (valid until the completion, see loop.h), and w's stopped ones get a
 * cancel, as far as the ring has room. Returns whether the call may sleep after it
 * (see recv_sqe). */
static bool recvs_arm(struct store *st, const struct loop_wait *w)
{
	bool sleep = true;

	for (struct loop_recv *lr = w->recv_cancels; lr; lr = lr->next) {
		struct io_uring_sqe *sqe = recv_sqe(st, &sleep);

		if (!sqe)
			return sleep;
		io_uring_prep_cancel64(sqe, (uint64_t)((uintptr_t)lr | RECV_TAG), 0);
		io_uring_sqe_set_data(sqe, &recv_cancel_tag);
		st->in_ring++;
		lr->cancel_sent = true;
	}
	for (struct loop_recv *lr = w->recvs; lr; lr = lr->next) {
		struct io_uring_sqe *sqe = recv_sqe(st, &sleep);

		if (!sqe)
			return sleep;
		_Static_assert(_Alignof(struct loop_recv) > USER_TAGS, "the tag bits are free");
		io_uring_prep_recv(sqe, lr->fd, lr->buf, lr->cap, 0);
		io_uring_sqe_set_data(sqe, (void *)((uintptr_t)lr | RECV_TAG));
		st->in_ring++;
		st->recvs_in_ring++;
		lr->in_ring = true;
	}
	return sleep;
}

/* store_close(): the receives still in the ring are cancelled and reaped (done, with
 * their result), so the kernel holds no buffer of the loop's after the close. */
static void recvs_cancel_all(struct store *st)
{
	for (int tries = 0; st->recvs_in_ring && tries < 100; tries++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);

		if (sqe) {
			io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY |
						       IORING_ASYNC_CANCEL_ALL);
			io_uring_sqe_set_data(sqe, &recv_cancel_tag);
			st->in_ring++;
		}
		if (!submit_error_is_transient(io_uring_submit_and_wait(&st->ring, 1)))
			break;
		reap(st, false);
	}
}

/* The ring failed to take its SQ: the loop's sends, receives and cancels still in it
 * (prepared, or handed to the kernel's SQ but not consumed) become NOPs, so that no
 * later submit sends a buffer the loop has moved on from, or receives on an fd the
 * loop may close meanwhile (and the kernel hand to another socket). The loop makes
 * such sends itself (done not set), and lists such receives and cancels again (out of
 * the ring, cancel not sent). */
static void ring_disarm(struct store *st)
{
	struct io_uring_sq *sq = &st->ring.sq;
	unsigned head = __atomic_load_n(sq->khead, __ATOMIC_ACQUIRE);

	for (unsigned i = head; i != sq->sqe_tail; i++) {
		struct io_uring_sqe *sqe = &sq->sqes[i & sq->ring_mask]; /* liburing's array
									     is the identity */
		void *data = (void *)(uintptr_t)sqe->user_data;

		if (is_send(data)) {
			st->sends_in_ring--;
		} else if (is_recv(data)) {
			((struct loop_recv *)untag(data))->in_ring = false;
			st->recvs_in_ring--;
		} else if (data == &recv_cancel_tag && sqe->addr) { /* (store_close's: all) */
			((struct loop_recv *)untag((void *)(uintptr_t)sqe->addr))->cancel_sent = false;
		} else {
			continue;
		}
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data(sqe, &disarmed_tag);
	}
}

/* Every send of the last wait has its result before the loop may touch its buffer:
 * they complete in the submit (non-blocking), so this only reaps, unless a kernel
 * completed one later. 0 or -errno (then ring_disarm). */
static int sends_reap(struct store *st)
{
	for (;;) {
		int r;

		reap(st, false);
		if (!st->sends_in_ring)
			return 0;
		r = io_uring_submit_and_wait(&st->ring, 1);
		if (!submit_error_is_transient(r)) {
			reap(st, false);
			ring_disarm(st);
			return r;
		}
	}
}

int store_wait_fd(struct store *st, struct loop_wait *w, int timeout_ms)
{
	bool stale;
	int r;

	if (!st || !w || w->epfd < 0 || (w->events && w->max_events < 1) || !poll_matches(st, w))
		return -EINVAL;
	pending_drain(st);
	/* It completed in a store_poll()/store_reap() since the last wait: its events may
	 * name watches the loop removed meanwhile. Say "readable": the loop collects. */
	stale = st->poll_fired;
	if (!st->poll_fired && st->poll_fd < 0) {
		r = poll_arm(st, w);
		if (r < 0)
			return r;
	}
	if (!recvs_arm(st, w))
		timeout_ms = 0; /* nothing would wake it for those left out: the loop lists
				   them again after this call */
	if (sends_arm(st, w->sends))
		timeout_ms = 0; /* the loop makes the rest after this call: no sleep */
	/* each send in the ring's CQE is one more to wait for (its completion wakes
	 * nothing) */
	r = submit_and_wait(st, st->poll_fired ? 0 : timeout_ms,
			    (w->min_events ? w->min_events : 1) + st->sends_in_ring,
			    w->min_events_bounded ? st->sends_in_ring + w->min_events_bounded : 0,
			    w->min_wait_us, w->spin_us);
	if (r < 0) {
		int rs = sends_reap(st);

		ring_disarm(st); /* what a retry took has gone in: the rest can't go later */
		return rs < 0 ? rs : r;
	}
	r = reap(st, true);
	if (st->sends_in_ring) {
		int rs = sends_reap(st);

		if (rs < 0)
			return rs;
	}
	w->ready = st->poll_fired;
	w->nevents = st->poll_fired && !stale ? st->poll_nevents : 0;
	st->poll_fired = false;
	return r;
}

void store_spin_counts(const struct store *st, uint64_t *spins, uint64_t *caught)
{
	*spins = st ? st->spins : 0;
	*caught = st ? st->spins_caught : 0;
}

bool store_has_min_wait(const struct store *st)
{
	return st && st->min_wait;
}

unsigned store_inflight(const struct store *st)
{
	return st ? st->active : 0;
}

int store_event_fd(const struct store *st)
{
	return st ? st->event_fd : -EINVAL;
}

uint64_t store_size(const struct store *st)
{
	return st ? st->size : 0;
}

/* ---- blocking helpers ---- */

/* pread or pwrite until done; exactly one of rbuf and wbuf is set. */
static int sync_rw(struct store *st, uint64_t off, void *rbuf, const void *wbuf, size_t len)
{
	const void *buf = rbuf ? rbuf : wbuf;
	size_t done = 0;

	if (!st || !buf_aligned(buf) || check_range(st, off, len) < 0)
		return -EINVAL;
	while (done < len) {
		off_t at = (off_t)(off + done);
		ssize_t n = rbuf ? pread(st->fd, (char *)rbuf + done, len - done, at)
				 : pwrite(st->fd, (const char *)wbuf + done, len - done, at);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int r = n < 0 ? -errno : -EIO;

			log_msg(LOG_ERROR, "store", "%s: %s at offset %" PRIu64 " failed: %s",
				st->path, rbuf ? "read" : "write", off + done, err_str(-r));
			return r;
		}
		done += (size_t)n;
	}
	return 0;
}

int store_read_sync(struct store *st, uint64_t off, void *buf, size_t len)
{
	if (!buf)
		return -EINVAL;
	return sync_rw(st, off, buf, NULL, len);
}

int store_write_sync(struct store *st, uint64_t off, const void *buf, size_t len)
{
	if (!buf)
		return -EINVAL;
	return sync_rw(st, off, NULL, buf, len);
}

int store_flush_sync(struct store *st)
{
	if (!st)
		return -EINVAL;
	if (fdatasync(st->fd) < 0) {
		int r = -errno;

		log_msg(LOG_ERROR, "store", "%s: fdatasync: %s", st->path, err_str(-r));
		return r;
	}
	return 0;
}

/* len bytes aligned to STORE_ALIGN, as they come (NULL: none, or len 0). */
static void *aligned_new(size_t len)
{
	void *buf;

	return len && posix_memalign(&buf, STORE_ALIGN, len) == 0 ? buf : NULL;
}

void *store_buf_alloc(size_t len)
{
	void *buf = aligned_new(len);

	return buf ? memset(buf, 0, len) : NULL;
}

void *store_buf_dup(const void *src, size_t len)
{
	void *buf = aligned_new(len);

	return buf ? memcpy(buf, src, len) : NULL;
}

void store_buf_free(void *buf)
{
	free(buf);
}

/* ---- open and close ---- */

static const char *fs_name(long type)
{
	static const struct { long magic; const char *name; } names[] = {
		{ TMPFS_MAGIC, "tmpfs" },	{ RAMFS_MAGIC, "ramfs" },
		{ EXT4_SUPER_MAGIC, "ext4" },	{ XFS_SUPER_MAGIC, "xfs" },
		{ BTRFS_SUPER_MAGIC, "btrfs" }, { OVERLAYFS_SUPER_MAGIC, "overlayfs" },
		{ NFS_SUPER_MAGIC, "nfs" },	{ 0x65735546, "fuse" },
		{ 0x01021997, "9p" },		{ 0x2fc12fc1, "zfs" },
		{ 0xff534d42, "cifs" },		{ 0xfe534d42, "smb2" },
		{ PROC_SUPER_MAGIC, "proc" },	{ SYSFS_MAGIC, "sysfs" },
		{ 0xf15f, "ecryptfs" },		{ 0x786f4256, "vboxsf" },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].magic == type)
			return names[i].name;
	return "an unrecognised filesystem";
}

/* statfs of the path, or of its directory if the path does not exist. */
static long path_fs_type(const char *path)
{
	struct statfs sfs;
	char *copy;
	long type = 0;

	if (statfs(path, &sfs) == 0)
		return (long)sfs.f_type;
	copy = strdup(path);
	if (copy && statfs(dirname(copy), &sfs) == 0)
		type = (long)sfs.f_type;
	free(copy);
	return type;
}

static int open_direct(struct store *st, uint64_t create_size, bool *created)
{
	const int flags = O_RDWR | O_DIRECT | O_CLOEXEC;
	int fd = open(st->path, flags);

	*created = false;
	if (fd < 0 && errno == ENOENT && create_size) {
		fd = open(st->path, flags | O_CREAT | O_EXCL, 0600);
		*created = fd >= 0;
		/* O_EXCL: a file left behind by a failed O_DIRECT open is ours to remove. */
		if (fd < 0 && errno == EINVAL)
			unlink(st->path);
	}
	if (fd >= 0)
		return fd;
	if (errno == EINVAL) {
		long type = path_fs_type(st->path);

		log_msg(LOG_ERROR, "store",
			"%s: O_DIRECT is not supported on %s (f_type 0x%lx); put the store "
			"on a block device or a local filesystem such as ext4 or xfs",
			st->path, fs_name(type), type);
		return -EINVAL;
	}
	fd = -errno;
	log_msg(LOG_ERROR, "store", "%s: open: %s", st->path, err_str(-fd));
	return fd;
}

/* Preallocates [0, size): a file smaller than size grows to it, its data kept. */
static int preallocate(struct store *st, uint64_t size)
{
	if (fallocate(st->fd, 0, 0, (off_t)size) < 0) {
		int r = -errno;

		log_msg(LOG_ERROR, "store", "%s: fallocate of %" PRIu64 " bytes: %s", st->path,
			size, err_str(-r));
		return r;
	}
	return 0;
}

/* A file this open created gets create_size; an existing one keeps its size. */
static int size_regular_file(struct store *st, uint64_t create_size, uint64_t *size)
{
	struct stat sb;

	if (st->created) {
		int r = preallocate(st, create_size);

		if (r < 0)
			return r;
	}
	if (fstat(st->fd, &sb) < 0)
		return -errno;
	*size = (uint64_t)sb.st_size;
	return 0;
}

static int size_block_device(struct store *st, uint64_t *size)
{
	int lbs = 0;

	if (ioctl(st->fd, BLKGETSIZE64, size) < 0 || ioctl(st->fd, BLKSSZGET, &lbs) < 0) {
		int r = -errno;

		log_msg(LOG_ERROR, "store", "%s: block device ioctl: %s", st->path, err_str(-r));
		return r;
	}
	if (lbs <= 0 || (unsigned)lbs > STORE_ALIGN) {
		log_msg(LOG_ERROR, "store", "%s: logical block size %d is larger than %u",
			st->path, lbs, STORE_ALIGN);
		return -EINVAL;
	}
	return 0;
}

/* Opens the device and sets st->fd and st->size. */
static int device_open(struct store *st, uint64_t create_size)
{
	struct statfs sfs;
	struct stat sb;
	uint64_t size = 0;
	int r;

	st->fd = open_direct(st, create_size, &st->created);
	if (st->fd < 0)
		return st->fd;
	if (fstat(st->fd, &sb) < 0) {
		r = -errno;
		goto err_unlink;
	}
	st->regular = S_ISREG(sb.st_mode);
	if (st->regular) {
		r = size_regular_file(st, create_size, &size);
		if (fstatfs(st->fd, &sfs) == 0 && (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC))
			log_msg(LOG_WARN, "store", "%s is on %s: its data will not survive a reboot",
				st->path, fs_name((long)sfs.f_type));
	} else if (S_ISBLK(sb.st_mode)) {
		r = size_block_device(st, &size);
	} else {
		log_msg(LOG_ERROR, "store", "%s is neither a regular file nor a block device",
			st->path);
		r = -EINVAL;
	}
	if (r < 0)
		goto err_unlink;
	st->size = size - size % STORE_ALIGN;
	if (st->size == 0) {
		log_msg(LOG_ERROR, "store", "%s holds less than %u bytes", st->path, STORE_ALIGN);
		r = -EINVAL;
		goto err_unlink;
	}
	return 0;

err_unlink:
	if (st->created)
		unlink(st->path);
	return r;
}

/* The cheapest completion mode the kernel has: DEFER_TASKRUN (6.1), COOP_TASKRUN
 * (5.19), or the default. TASKRUN_FLAG tells liburing when completions wait for it
 * to enter the kernel. */
static int ring_init(struct store *st, unsigned queue_depth, struct io_uring_params *p)
{
	static const unsigned modes[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
		0,
	};
	int r = -EINVAL;

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		*p = (struct io_uring_params){ .flags = modes[i] };
		r = io_uring_queue_init_params(queue_depth, &st->ring, p);
		if (r != -EINVAL)
			return r;
	}
	return r;
}

static bool ring_has_op(struct io_uring *ring, int op)
{
	struct io_uring_probe *probe = io_uring_get_probe_ring(ring);
	bool has = probe && io_uring_opcode_supported(probe, op);

	io_uring_free_probe(probe);
	return has;
}

static int ring_open(struct store *st, unsigned queue_depth)
{
	struct io_uring_params p;
	int r = ring_init(st, queue_depth, &p);

	if (r < 0) {
		log_msg(LOG_ERROR, "store", "%s: io_uring_queue_init(%u): %s", st->path,
			queue_depth, err_str(-r));
		return r;
	}
	st->max_in_ring = p.cq_entries - STORE_FD_POLL_CQES;
	st->epoll_wait_op = ring_has_op(&st->ring, STORE_OP_EPOLL_WAIT);
	st->min_wait = (p.features & IORING_FEAT_MIN_TIMEOUT) &&
		       (p.features & IORING_FEAT_EXT_ARG);
	r = io_uring_register_files(&st->ring, &st->fd, 1);
	if (r < 0) {
		log_msg(LOG_ERROR, "store", "%s: io_uring_register_files: %s", st->path,
			err_str(-r));
		goto err_exit_ring;
	}
	st->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (st->event_fd < 0) {
		r = -errno;
		log_msg(LOG_ERROR, "store", "eventfd: %s", err_str(-r));
		goto err_exit_ring;
	}
	r = io_uring_register_eventfd(&st->ring, st->event_fd);
	if (r < 0) {
		log_msg(LOG_ERROR, "store", "%s: io_uring_register_eventfd: %s", st->path,
			err_str(-r));
		goto err_close_eventfd;
	}
	return 0;

err_close_eventfd:
	close(st->event_fd);
	st->event_fd = -1;
err_exit_ring:
	io_uring_queue_exit(&st->ring);
	return r;
}

int store_open(const struct store_opts *opts, struct store **out)
{
	struct store *st;
	unsigned qd;
	int r;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!opts || !opts->path || !*opts->path)
		return -EINVAL;
	qd = opts->queue_depth ? opts->queue_depth : STORE_DEFAULT_QD;
	if (opts->create_size % STORE_ALIGN) {
		log_msg(LOG_ERROR, "store", "%s: create size %" PRIu64 " is not a multiple of %u",
			opts->path, opts->create_size, STORE_ALIGN);
		return -EINVAL;
	}
	if (qd > STORE_MAX_QD) {
		log_msg(LOG_ERROR, "store", "%s: queue depth %u is above %u", opts->path, qd,
			STORE_MAX_QD);
		return -EINVAL;
	}
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->fd = -1;
	st->event_fd = -1;
	st->poll_fd = -1;
	st->poll_us = POLL_GROW_START_US;
	st->pending_tail = &st->pending_head;
	st->trace = log_get_level() == LOG_DEBUG;
	st->path = strdup(opts->path);
	if (!st->path) {
		r = -ENOMEM;
		goto err_free_store;
	}
	r = device_open(st, opts->create_size);
	if (r < 0)
		goto err_free_path;
	r = ring_open(st, qd);
	if (r < 0)
		goto err_close_fd;
	*out = st;
	return 0;

err_close_fd:
	close(st->fd);
err_free_path:
	free(st->path);
err_free_store:
	free(st);
	return r;
}

/* Runs the callbacks of requests that never reached the ring, with -ECANCELED. */
static void pending_cancel(struct store *st)
{
	struct store_req *req;

	while ((req = pending_pop(st)))
		req_complete(st, req, -ECANCELED);
}

void store_close(struct store *st)
{
	unsigned failures = 0;

	if (!st)
		return;
	st->closing = true;
	while (st->active) {
		if (store_poll(st, -1) >= 0) {
			failures = 0;
			continue;
		}
		pending_cancel(st);
		if (++failures == 3) {
			log_msg(LOG_ERROR, "store", "%s: closing with %u requests whose callbacks "
				"will not run", st->path, st->active);
			break;
		}
	}
	if (st->spins)
		log_msg(LOG_INFO, "store", "%s: %" PRIu64 " sleeps polled for first, %" PRIu64
			" of them saved", st->path, st->spins, st->spins_caught);
	recvs_cancel_all(st);
	io_uring_unregister_eventfd(&st->ring);
	io_uring_queue_exit(&st->ring);
	close(st->event_fd);
	close(st->fd);
	slabs_free(st);
	free(st->path);
	free(st);
}

bool store_created(const struct store *st)
{
	return st && st->created;
}

int store_grow(struct store *st, uint64_t size)
{
	int r;

	if (size % STORE_ALIGN)
		return -EINVAL;
	if (!st->regular)
		return -ENOTSUP;
	if (size <= st->size)
		return 0;
	r = preallocate(st, size);
	if (r == 0)
		st->size = size;
	return r;
}

int store_next_data(struct store *st, uint64_t off, uint64_t *start, uint64_t *end)
{
	off_t data, hole;

	if (off >= st->size)
		return -ENXIO;
	*start = off;
	*end = st->size;
	if (!st->regular)
		return 0;
	data = lseek(st->fd, (off_t)off, SEEK_DATA);
	if (data < 0)
		return errno == ENXIO ? -ENXIO : 0; /* no SEEK_DATA here: all of it may be data */
	hole = lseek(st->fd, data, SEEK_HOLE);
	*start = (uint64_t)data - (uint64_t)data % STORE_ALIGN;
	if (hole > data && (uint64_t)hole < st->size)
		*end = ((uint64_t)hole + STORE_ALIGN - 1) / STORE_ALIGN * STORE_ALIGN;
	return *start < st->size ? 0 : -ENXIO;
}
