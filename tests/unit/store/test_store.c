/* tests/unit/store/test_store.c — store/store.c against a file-backed store.
 *
 * Backing files go in $QUILL_TEST_DIR, else the build directory (QUILL_TEST_DIR at
 * compile time), which must be on a filesystem that supports O_DIRECT; a test whose
 * directory does not is skipped with the reason. Random tests print their seed and
 * take QUILL_TEST_SEED.
 */
#include "store/store.h"
#include "common/log.h"
#include "common/loop.h"

#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#ifndef QUILL_TEST_DIR
#define QUILL_TEST_DIR "/var/tmp"
#endif

#define BLK STORE_ALIGN
#define MIB (1024u * 1024u)

static char test_path[PATH_MAX];

/* Every io_uring_submit of this process (store.c's included: the executable's
 * definition comes before liburing's) goes through here; while submit_fails is set it
 * fails as a broken ring would, consuming nothing. */
static int submit_fails;

int io_uring_submit(struct io_uring *ring)
{
	static int (*real)(struct io_uring *);

	if (submit_fails)
		return submit_fails;
	if (!real)
		real = (int (*)(struct io_uring *))dlsym(RTLD_NEXT, "io_uring_submit");
	return real(ring);
}

/* Records the callbacks of one request. */
struct done {
	int res;
	int calls;
};

static void on_done(void *arg, int res)
{
	struct done *d = arg;

	d->res = res;
	d->calls++;
}

static const char *test_dir(void)
{
	const char *dir = getenv("QUILL_TEST_DIR");

	return dir && *dir ? dir : QUILL_TEST_DIR;
}

/* Picks a fresh backing-file path, skipping the test if O_DIRECT is unavailable. */
static void path_init(const char *name)
{
	int fd;

	snprintf(test_path, sizeof(test_path), "%s/quill-store-%d-%s", test_dir(), (int)getpid(),
		 name);
	unlink(test_path);
	fd = open(test_path, O_RDWR | O_CREAT | O_DIRECT, 0600);
	if (fd < 0)
		cr_skip_test("%s does not support O_DIRECT (%s); set QUILL_TEST_DIR", test_dir(),
			     strerror(errno));
	close(fd);
	unlink(test_path);
}

static struct store *store_make(const char *name, uint64_t size, unsigned qd)
{
	struct store_opts opts = { .create_size = size, .queue_depth = qd };
	struct store *st = NULL;

	path_init(name);
	opts.path = test_path;
	cr_assert_eq(store_open(&opts, &st), 0, "store_open %s", test_path);
	cr_assert_not_null(st);
	return st;
}

static void drain(struct store *st)
{
	while (store_inflight(st) > 0)
		cr_assert_geq(store_poll(st, -1), 0);
}

static void fill(void *buf, size_t len, unsigned tag)
{
	uint32_t *w = buf;

	for (size_t i = 0; i < len / sizeof(*w); i++)
		w[i] = tag * 2654435761u + (uint32_t)i;
}

static void cleanup(void)
{
	if (test_path[0])
		unlink(test_path);
}

TestSuite(store, .fini = cleanup);

/* ---- open ---- */

Test(store, open_creates_preallocated_file_of_create_size)
{
	struct store *st = store_make("create", 4 * MIB, 0);
	struct stat sb;

	cr_assert_eq(store_size(st), 4 * MIB);
	cr_assert_eq(stat(test_path, &sb), 0);
	cr_assert_eq(sb.st_size, 4 * MIB);
	cr_assert_geq((uint64_t)sb.st_blocks * 512, 4 * MIB, "file is not preallocated");
	cr_assert_geq(store_event_fd(st), 0);
	store_close(st);
}

Test(store, open_keeps_an_existing_file_at_its_size)
{
	struct store *st = store_make("keep", 2 * BLK, 0);
	struct store_opts opts = { .path = test_path, .create_size = MIB };
	struct stat sb;

	cr_assert(store_created(st), "the first open created the file");
	store_close(st);
	cr_assert_eq(store_open(&opts, &st), 0);
	cr_assert_not(store_created(st), "the second open found it");
	cr_assert_eq(store_size(st), 2 * BLK, "create_size must not extend an existing file");
	cr_assert_eq(stat(test_path, &sb), 0);
	cr_assert_eq(sb.st_size, 2 * BLK);
	store_close(st);
}

Test(store, grow_extends_a_file_and_keeps_its_data)
{
	struct store *st = store_make("extend", 2 * BLK, 0);
	char *buf = store_buf_alloc(2 * BLK);
	char *back = store_buf_alloc(2 * BLK);

	fill(buf, 2 * BLK, 7);
	cr_assert_eq(store_write_sync(st, 0, buf, 2 * BLK), 0);
	cr_assert_eq(store_grow(st, MIB + 1), -EINVAL, "misaligned size");
	cr_assert_eq(store_grow(st, MIB), 0);
	cr_assert_eq(store_size(st), MIB);
	cr_assert_eq(store_grow(st, BLK), 0, "never shrinks");
	cr_assert_eq(store_size(st), MIB);
	cr_assert_eq(store_read_sync(st, 0, back, 2 * BLK), 0);
	cr_assert_eq(memcmp(buf, back, 2 * BLK), 0);
	cr_assert_eq(store_read_sync(st, MIB - BLK, back, BLK), 0, "the new end is readable");
	store_close(st);
	store_buf_free(buf);
	store_buf_free(back);
}

Test(store, next_data_skips_what_was_never_written)
{
	struct store *st = store_make("sparse", 4 * MIB, 0);
	char *buf = store_buf_alloc(BLK);
	uint64_t start = 1, end = 0;
	int r;

	r = store_next_data(st, 0, &start, &end);
	if (r == 0 && start == 0 && end == 4 * MIB)
		cr_skip_test("this filesystem reports preallocated space as data (no SEEK_DATA)");
	cr_assert_eq(r, -ENXIO, "a preallocated, never written file holds no data");
	fill(buf, BLK, 3);
	cr_assert_eq(store_write_sync(st, 2 * MIB, buf, BLK), 0);
	cr_assert_eq(store_next_data(st, 0, &start, &end), 0);
	cr_assert_leq(start, 2 * MIB);
	cr_assert_gt(end, 2 * MIB, "the written block is in the range");
	cr_assert_eq(start % BLK, 0);
	cr_assert_eq(end % BLK, 0);
	cr_assert_eq(store_next_data(st, 4 * MIB, &start, &end), -ENXIO);
	store_close(st);
	store_buf_free(buf);
}

Test(store, open_uses_existing_size_rounded_down)
{
	struct store_opts opts = { 0 };
	struct store *st = NULL;
	int fd;

	path_init("existing");
	opts.path = test_path;
	fd = open(test_path, O_RDWR | O_CREAT, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 3 * BLK + 100), 0);
	close(fd);
	cr_assert_eq(store_open(&opts, &st), 0);
	cr_assert_eq(store_size(st), 3 * BLK);
	store_close(st);
}

Test(store, open_rejects_bad_options)
{
	struct store_opts opts = { .create_size = BLK + 1 };
	struct store *st = (struct store *)&opts;
	int fd;

	path_init("badopts");
	opts.path = test_path;
	cr_assert_eq(store_open(&opts, &st), -EINVAL, "misaligned create_size");
	cr_assert_null(st);
	cr_assert_eq(access(test_path, F_OK), -1, "a refused open must not create the file");

	opts.create_size = 0;
	cr_assert_eq(store_open(&opts, &st), -ENOENT, "missing file without create_size");

	fd = open(test_path, O_RDWR | O_CREAT, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(store_open(&opts, &st), -EINVAL, "empty file without create_size");

	opts.path = NULL;
	cr_assert_eq(store_open(&opts, &st), -EINVAL);
	cr_assert_eq(store_open(NULL, &st), -EINVAL);
}

Test(store, open_refuses_filesystem_without_o_direct)
{
	const char *path = "/dev/shm/quill-store-odirect-probe";
	struct store_opts opts = { .path = path, .create_size = MIB };
	struct store *st = NULL;
	int fd;

	unlink(path);
	fd = open(path, O_RDWR | O_CREAT | O_DIRECT, 0600);
	if (fd >= 0) {
		close(fd);
		unlink(path);
		cr_skip_test("tmpfs supports O_DIRECT on this kernel (Linux >= 6.6)");
	}
	unlink(path);
	if (errno != EINVAL)
		cr_skip_test("/dev/shm unusable here: %s", strerror(errno));
	cr_assert_eq(store_open(&opts, &st), -EINVAL);
	cr_assert_null(st);
	cr_assert_eq(access(path, F_OK), -1, "the refused file must not be left behind");
}

/* ---- asynchronous I/O ---- */

Test(store, write_then_read_back)
{
	struct store *st = store_make("rw", MIB, 0);
	char *buf = store_buf_alloc(8 * BLK);
	char *back = store_buf_alloc(8 * BLK);
	struct done w = { 0 }, r = { 0 };

	fill(buf, 8 * BLK, 1);
	cr_assert_eq(store_write(st, 16 * BLK, buf, 8 * BLK, on_done, &w), 0);
	cr_assert_eq(store_inflight(st), 1);
	drain(st);
	cr_assert_eq(w.calls, 1);
	cr_assert_eq(w.res, 8 * BLK);

	cr_assert_eq(store_read(st, 16 * BLK, back, 8 * BLK, on_done, &r), 0);
	drain(st);
	cr_assert_eq(r.calls, 1);
	cr_assert_eq(r.res, 8 * BLK);
	cr_assert_eq(memcmp(buf, back, 8 * BLK), 0);
	store_close(st);
	store_buf_free(buf);
	store_buf_free(back);
}

Test(store, writev_then_readv_back)
{
	struct store *st = store_make("rwv", MIB, 0);
	char *a = store_buf_alloc(BLK), *b = store_buf_alloc(2 * BLK), *c = store_buf_alloc(BLK);
	char *flat = store_buf_alloc(4 * BLK);
	char *pieces = store_buf_alloc(4 * BLK);
	struct iovec wv[] = { { a, BLK }, { b, 2 * BLK }, { c, BLK } };
	struct iovec rv[6]; /* more than the request's inline vector */
	struct done w = { 0 }, r = { 0 }, r2 = { 0 };

	fill(a, BLK, 10);
	fill(b, 2 * BLK, 11);
	fill(c, BLK, 12);
	cr_assert_eq(store_writev(st, 4 * BLK, wv, 3, on_done, &w), 0);
	drain(st);
	cr_assert_eq(w.res, 4 * BLK);

	cr_assert_eq(store_read(st, 4 * BLK, flat, 4 * BLK, on_done, &r), 0);
	drain(st);
	cr_assert_eq(r.res, 4 * BLK);
	cr_assert_eq(memcmp(flat, a, BLK), 0);
	cr_assert_eq(memcmp(flat + BLK, b, 2 * BLK), 0);
	cr_assert_eq(memcmp(flat + 3 * BLK, c, BLK), 0);

	for (int i = 0; i < 4; i++)
		rv[i] = (struct iovec){ pieces + (3 - i) * BLK, BLK };
	rv[4] = (struct iovec){ NULL, 0 };
	rv[5] = (struct iovec){ NULL, 0 };
	cr_assert_eq(store_readv(st, 4 * BLK, rv, 6, on_done, &r2), 0);
	drain(st);
	cr_assert_eq(r2.res, 4 * BLK);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(memcmp(pieces + (3 - i) * BLK, flat + i * BLK, BLK), 0);
	store_close(st);
	store_buf_free(a);
	store_buf_free(b);
	store_buf_free(c);
	store_buf_free(flat);
	store_buf_free(pieces);
}

#define MANY 2000
#define MANY_BLOCKS 4096

/* 2000 random 4k writes with a ring of 8 (CQ 16): most wait on the pending list. */
Test(store, many_concurrent_writes_beyond_ring_size_read_back)
{
	struct store *st = store_make("many", (uint64_t)MANY_BLOCKS * BLK, 8);
	static unsigned blocks[MANY_BLOCKS];
	static struct done wd[MANY], rd[MANY];
	char *wbuf = store_buf_alloc((size_t)MANY * BLK);
	char *rbuf = store_buf_alloc((size_t)MANY * BLK);
	unsigned seed = testutil_seed();

	srand(seed);
	for (unsigned i = 0; i < MANY_BLOCKS; i++)
		blocks[i] = i;
	for (unsigned i = MANY_BLOCKS - 1; i > 0; i--) { /* distinct blocks: no write races */
		unsigned j = (unsigned)rand() % (i + 1), t = blocks[i];

		blocks[i] = blocks[j];
		blocks[j] = t;
	}
	for (unsigned i = 0; i < MANY; i++) {
		fill(wbuf + (size_t)i * BLK, BLK, blocks[i] + 1);
		cr_assert_eq(store_write(st, (uint64_t)blocks[i] * BLK, wbuf + (size_t)i * BLK,
					 BLK, on_done, &wd[i]), 0);
	}
	cr_assert_eq(store_inflight(st), MANY);
	drain(st);
	for (unsigned i = 0; i < MANY; i++)
		cr_assert(wd[i].calls == 1 && wd[i].res == BLK, "write %u: %d calls, res %d", i,
			  wd[i].calls, wd[i].res);

	for (unsigned i = 0; i < MANY; i++)
		cr_assert_eq(store_read(st, (uint64_t)blocks[i] * BLK, rbuf + (size_t)i * BLK, BLK,
					on_done, &rd[i]), 0);
	drain(st);
	for (unsigned i = 0; i < MANY; i++) {
		cr_assert(rd[i].calls == 1 && rd[i].res == BLK, "read %u", i);
		cr_assert_eq(memcmp(wbuf + (size_t)i * BLK, rbuf + (size_t)i * BLK, BLK), 0,
			     "block %u differs", blocks[i]);
	}
	store_close(st);
	store_buf_free(wbuf);
	store_buf_free(rbuf);
}

Test(store, flush_runs_callback_with_zero)
{
	struct store *st = store_make("flush", MIB, 0);
	char *buf = store_buf_alloc(BLK);
	struct done w = { 0 }, f = { 0 };

	cr_assert_eq(store_write(st, 0, buf, BLK, on_done, &w), 0);
	drain(st);
	cr_assert_eq(store_flush(st, on_done, &f), 0);
	drain(st);
	cr_assert_eq(f.calls, 1);
	cr_assert_eq(f.res, 0);
	cr_assert_eq(store_flush(NULL, on_done, &f), -EINVAL);
	cr_assert_eq(store_flush(st, NULL, NULL), -EINVAL);
	store_close(st);
	store_buf_free(buf);
}

Test(store, misaligned_arguments_fail_without_callback)
{
	struct store *st = store_make("misaligned", MIB, 0);
	char *buf = store_buf_alloc(2 * BLK);
	struct done d = { 0 };
	struct iovec bad_base[] = { { buf, BLK }, { buf + 512, BLK } };
	struct iovec bad_len[] = { { buf, BLK - 512 } };
	struct iovec ok[] = { { buf, BLK } };

	cr_assert_eq(store_write(st, 512, buf, BLK, on_done, &d), -EINVAL, "offset");
	cr_assert_eq(store_write(st, 0, buf, BLK + 1, on_done, &d), -EINVAL, "length");
	cr_assert_eq(store_write(st, 0, buf + 8, BLK, on_done, &d), -EINVAL, "buffer");
	cr_assert_eq(store_read(st, BLK, buf + 8, BLK, on_done, &d), -EINVAL, "buffer");
	cr_assert_eq(store_read(st, 0, buf, 0, on_done, &d), -EINVAL, "empty");
	cr_assert_eq(store_read(st, 0, NULL, BLK, on_done, &d), -EINVAL, "NULL buffer");
	cr_assert_eq(store_read(st, 0, buf, BLK, NULL, &d), -EINVAL, "NULL callback");
	cr_assert_eq(store_read(NULL, 0, buf, BLK, on_done, &d), -EINVAL, "NULL store");
	cr_assert_eq(store_writev(st, 0, bad_base, 2, on_done, &d), -EINVAL, "iov base");
	cr_assert_eq(store_readv(st, 0, bad_len, 1, on_done, &d), -EINVAL, "iov length");
	cr_assert_eq(store_readv(st, 0, ok, 0, on_done, &d), -EINVAL, "iovcnt 0");
	cr_assert_eq(store_readv(st, 0, ok, -1, on_done, &d), -EINVAL, "iovcnt -1");
	cr_assert_eq(store_readv(st, 0, ok, IOV_MAX + 1, on_done, &d), -EINVAL, "iovcnt");
	cr_assert_eq(store_writev(st, 0, NULL, 1, on_done, &d), -EINVAL, "NULL iov");

	cr_assert_eq(store_inflight(st), 0);
	cr_assert_eq(store_poll(st, 0), 0);
	cr_assert_eq(store_poll(st, -1), 0, "nothing in flight: must not wait");
	cr_assert_eq(d.calls, 0);
	store_close(st);
	cr_assert_eq(d.calls, 0);
	store_buf_free(buf);
}

Test(store, out_of_range_fails_without_callback)
{
	struct store *st = store_make("range", 16 * BLK, 0);
	char *buf = store_buf_alloc(2 * BLK);
	struct iovec two[] = { { buf, BLK }, { buf + BLK, BLK } };
	struct done d = { 0 };

	cr_assert_eq(store_read(st, 16 * BLK, buf, BLK, on_done, &d), -EINVAL, "at the end");
	cr_assert_eq(store_write(st, 15 * BLK, buf, 2 * BLK, on_done, &d), -EINVAL, "across");
	cr_assert_eq(store_writev(st, 15 * BLK, two, 2, on_done, &d), -EINVAL, "iov across");
	cr_assert_eq(store_read(st, UINT64_MAX - (BLK - 1), buf, BLK, on_done, &d), -EINVAL,
		     "offset overflow");
	cr_assert_eq(store_read(st, 0, buf, (size_t)1 << 40, on_done, &d), -EINVAL, "huge");
	cr_assert_eq(store_read(st, 15 * BLK, buf, BLK, on_done, &d), 0, "last block is fine");
	drain(st);
	cr_assert_eq(d.calls, 1);
	cr_assert_eq(d.res, BLK);
	store_close(st);
	store_buf_free(buf);
}

/* A read past the real end of the file (truncated behind the store's back) is a
 * short transfer that is resubmitted, then a zero-byte read: -EIO. */
Test(store, read_past_end_of_file_is_eio)
{
	struct store *st = store_make("eof", 16 * BLK, 0);
	char *buf = store_buf_alloc(4 * BLK);
	struct iovec v[] = { { buf, BLK }, { buf + BLK, 3 * BLK } };
	struct done whole = { 0 }, vec = { 0 }, after = { 0 };

	cr_assert_eq(truncate(test_path, 2 * BLK), 0);
	cr_assert_eq(store_read(st, 0, buf, 4 * BLK, on_done, &whole), 0);
	cr_assert_eq(store_readv(st, 0, v, 2, on_done, &vec), 0);
	cr_assert_eq(store_read(st, 8 * BLK, buf, BLK, on_done, &after), 0);
	drain(st);
	cr_assert(whole.calls == 1 && whole.res == -EIO, "res %d", whole.res);
	cr_assert(vec.calls == 1 && vec.res == -EIO, "res %d", vec.res);
	cr_assert(after.calls == 1 && after.res == -EIO, "res %d", after.res);
	store_close(st);
	store_buf_free(buf);
}

/* Each callback issues the next request: write block i, read it back, write i+1... */
struct chain {
	struct store *st;
	char *wbuf, *rbuf;
	unsigned step, steps;
	int error;
};

static void chain_next(void *arg, int res);

static void chain_issue(struct chain *c)
{
	unsigned blk = c->step / 2;
	int r;

	if (c->step % 2 == 0) {
		fill(c->wbuf, BLK, blk);
		r = store_write(c->st, (uint64_t)blk * BLK, c->wbuf, BLK, chain_next, c);
	} else {
		r = store_read(c->st, (uint64_t)blk * BLK, c->rbuf, BLK, chain_next, c);
	}
	if (r < 0)
		c->error = r;
}

static void chain_next(void *arg, int res)
{
	struct chain *c = arg;

	if (res != BLK) {
		c->error = res < 0 ? res : -EIO;
		return;
	}
	if (c->step % 2 == 1 && memcmp(c->wbuf, c->rbuf, BLK) != 0) {
		c->error = -EILSEQ;
		return;
	}
	if (++c->step < c->steps)
		chain_issue(c);
}

Test(store, callbacks_may_issue_new_requests)
{
	struct chain c = { .steps = 200 };

	c.st = store_make("chain", MIB, 4);
	c.wbuf = store_buf_alloc(BLK);
	c.rbuf = store_buf_alloc(BLK);
	chain_issue(&c);
	drain(c.st);
	cr_assert_eq(c.error, 0);
	cr_assert_eq(c.step, c.steps);
	store_close(c.st);
	store_buf_free(c.wbuf);
	store_buf_free(c.rbuf);
}

/* One callback fans out more requests than the ring holds. */
struct fan {
	struct store *st;
	char *buf;
	struct done kids[64];
	int issue_errors;
};

static void fan_out(void *arg, int res)
{
	struct fan *f = arg;

	cr_assert_eq(res, BLK);
	for (unsigned i = 0; i < 64; i++)
		if (store_read(f->st, (uint64_t)i * BLK, f->buf + (size_t)i * BLK, BLK, on_done,
			       &f->kids[i]) < 0)
			f->issue_errors++;
	/* a nested poll from inside a callback must be safe too */
	if (store_poll(f->st, 0) < 0)
		f->issue_errors++;
}

Test(store, callback_fans_out_beyond_ring_and_polls)
{
	struct fan f = { 0 };

	f.st = store_make("fan", MIB, 4);
	f.buf = store_buf_alloc(64 * BLK);
	cr_assert_eq(store_write(f.st, 0, f.buf, BLK, fan_out, &f), 0);
	drain(f.st);
	cr_assert_eq(f.issue_errors, 0);
	for (unsigned i = 0; i < 64; i++)
		cr_assert(f.kids[i].calls == 1 && f.kids[i].res == BLK, "child %u", i);
	store_close(f.st);
	store_buf_free(f.buf);
}

static void reissue_during_close(void *arg, int res)
{
	struct fan *f = arg;

	cr_assert_eq(res, BLK);
	if (store_read(f->st, 0, f->buf, BLK, on_done, &f->kids[0]) == -ESHUTDOWN)
		f->issue_errors++;
}

Test(store, close_runs_every_callback_in_flight)
{
	struct store *st = store_make("close", MIB, 8);
	static struct done d[500];
	char *buf = store_buf_alloc(BLK);
	struct fan f = { .st = st, .buf = buf };

	for (unsigned i = 0; i < 500; i++)
		cr_assert_eq(store_write(st, (uint64_t)(i % 256) * BLK, buf, BLK, on_done, &d[i]),
			     0);
	cr_assert_eq(store_submit(st), 0);
	cr_assert_eq(store_flush(st, on_done, &d[499]), 0); /* d[499] now counts 2 */
	cr_assert_eq(store_write(st, 0, buf, BLK, reissue_during_close, &f), 0);
	store_close(st);
	for (unsigned i = 0; i < 499; i++)
		cr_assert(d[i].calls == 1 && d[i].res == BLK, "request %u: %d calls, res %d", i,
			  d[i].calls, d[i].res);
	cr_assert_eq(d[499].calls, 2);
	cr_assert_eq(f.issue_errors, 1, "new requests during close are refused");
	cr_assert_eq(f.kids[0].calls, 0);
	store_buf_free(buf);
}

Test(store, event_fd_signals_completion)
{
	struct store *st = store_make("eventfd", MIB, 0);
	char *buf = store_buf_alloc(BLK);
	struct done d = { 0 };
	struct pollfd pfd;

	pfd = (struct pollfd){ .fd = store_event_fd(st), .events = POLLIN };
	cr_assert_eq(store_write(st, 0, buf, BLK, on_done, &d), 0);
	cr_assert_eq(store_submit(st), 0);
	cr_assert_eq(poll(&pfd, 1, 5000), 1, "eventfd not readable");
	cr_assert_eq(store_poll(st, 0), 1);
	cr_assert_eq(d.res, BLK);
	store_close(st);
	store_buf_free(buf);
}

Test(store, poll_with_timeout_returns_when_idle)
{
	struct store *st = store_make("timeout", MIB, 0);
	char *buf = store_buf_alloc(BLK);
	struct done d = { 0 };
	int ran = 0;

	cr_assert_eq(store_poll(st, 10), 0);
	cr_assert_eq(store_read(st, 0, buf, BLK, on_done, &d), 0);
	for (int i = 0; i < 1000 && !ran; i++)
		ran = store_poll(st, 100);
	cr_assert_eq(ran, 1);
	cr_assert_eq(d.res, BLK);
	cr_assert_eq(store_poll(NULL, 0), -EINVAL);
	store_close(st);
	store_buf_free(buf);
}

/* ---- an event loop that sleeps in the store ---- */

/* An epoll fd watching a pipe, as quilld's loop hands its epoll fd to the store. */
struct loop_fds {
	int epfd;
	int pipe[2];
};

static void loop_fds_open(struct loop_fds *l)
{
	struct epoll_event ev = { .events = EPOLLIN };

	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	cr_assert_geq(l->epfd, 0);
	cr_assert_eq(pipe(l->pipe), 0);
	cr_assert_eq(epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->pipe[0], &ev), 0);
}

/* How the loop hands its epoll fd to the store: plain (a poll), or with a buffer for
 * the events (an EPOLL_WAIT in the ring, where the kernel has it). */
static struct loop_wait wait_plain(const struct loop_fds *l)
{
	return (struct loop_wait){ .epfd = l->epfd };
}

static int wait_fd(struct store *st, const struct loop_fds *l, int timeout_ms, bool *ready)
{
	struct loop_wait w = wait_plain(l);
	int r = store_wait_fd(st, &w, timeout_ms);

	*ready = w.ready;
	return r;
}

static void loop_fds_close(struct loop_fds *l)
{
	close(l->pipe[0]);
	close(l->pipe[1]);
	close(l->epfd);
}

Test(store, wait_fd_submits_sleeps_and_reaps_a_completion)
{
	struct store *st = store_make("waitio", MIB, 0);
	char *buf = store_buf_alloc(BLK);
	struct done d = { 0 };
	struct loop_fds l;
	bool ready = true;
	int ran = 0;

	loop_fds_open(&l);
	cr_assert_eq(store_write(st, 0, buf, BLK, on_done, &d), 0);
	/* nothing readable on the fd: only the write can end the (unbounded) sleep */
	ran = wait_fd(st, &l, -1, &ready);
	cr_assert_eq(ran, 1);
	cr_assert_not(ready, "the epoll fd never became readable");
	cr_assert_eq(d.calls, 1);
	cr_assert_eq(d.res, BLK);
	store_close(st);
	loop_fds_close(&l);
	store_buf_free(buf);
}

Test(store, wait_fd_wakes_for_the_fd_and_keeps_it_watched)
{
	struct store *st = store_make("waitfd", MIB, 0);
	struct loop_fds l;
	struct loop_wait other;
	bool ready = false;
	char c;

	loop_fds_open(&l);
	cr_assert_eq(write(l.pipe[1], "x", 1), 1);
	cr_assert_eq(wait_fd(st, &l, -1, &ready), 0); /* no I/O: the fd woke it */
	cr_assert(ready);
	cr_assert_eq(read(l.pipe[0], &c, 1), 1);
	/* not readable now: a bounded sleep ends with neither */
	cr_assert_eq(wait_fd(st, &l, 10, &ready), 0);
	cr_assert_not(ready);
	other = (struct loop_wait){ .epfd = l.pipe[0] };
	cr_assert_eq(store_wait_fd(st, &other, 0), -EINVAL,
		     "one fd per store while its poll is armed");
	/* the poll is still armed: readiness that comes while nobody waits is seen */
	cr_assert_eq(write(l.pipe[1], "y", 1), 1);
	cr_assert_eq(wait_fd(st, &l, -1, &ready), 0);
	cr_assert(ready);
	store_close(st);
	loop_fds_close(&l);
}

/* store_reap() runs what completed and leaves submitting to the loop's one sleep. */
Test(store, reap_does_not_submit)
{
	struct store *st = store_make("reap", MIB, 0);
	char *buf = store_buf_alloc(BLK);
	struct done d = { 0 };
	struct loop_fds l;
	bool ready;

	loop_fds_open(&l);
	cr_assert_eq(store_read(st, 0, buf, BLK, on_done, &d), 0);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(store_reap(st), 0);
		usleep(2000);
	}
	cr_assert_eq(d.calls, 0, "a request completed that nobody submitted");
	cr_assert_eq(wait_fd(st, &l, -1, &ready), 1);
	cr_assert_eq(d.calls, 1);
	store_close(st);
	loop_fds_close(&l);
	store_buf_free(buf);
}

/* IORING_OP_EPOLL_WAIT (59 in enum io_uring_op, Linux 6.15): does this kernel have it? */
static bool kernel_has_epoll_wait(void)
{
	struct io_uring ring;
	struct io_uring_probe *p;
	bool has;

	cr_assert_eq(io_uring_queue_init(2, &ring, 0), 0);
	p = io_uring_get_probe_ring(&ring);
	has = p && io_uring_opcode_supported(p, 59);
	io_uring_free_probe(p);
	io_uring_queue_exit(&ring);
	return has;
}

/* With a buffer, the ring collects the loop's events as it wakes (no epoll_wait). */
Test(store, wait_fd_collects_the_epoll_events_in_the_ring)
{
	struct store *st = store_make("waitev", MIB, 0);
	struct epoll_event evs[4] = { 0 };
	struct loop_fds l;
	struct loop_wait w;
	bool has = kernel_has_epoll_wait();
	char c;

	loop_fds_open(&l);
	w = (struct loop_wait){ .epfd = l.epfd, .events = evs, .max_events = 4 };
	/* armed before the fd is readable: the event comes while it sleeps */
	cr_assert_eq(store_wait_fd(st, &w, 10), 0);
	cr_assert_not(w.ready);
	cr_assert_eq(write(l.pipe[1], "x", 1), 1);
	cr_assert_eq(store_wait_fd(st, &w, -1), 0);
	cr_assert(w.ready);
	cr_assert_eq(w.nevents, has ? 1 : 0, "kernel %s EPOLL_WAIT", has ? "has" : "lacks");
	if (has)
		cr_assert_eq(evs[0].events & EPOLLIN, EPOLLIN);
	/* still readable: level-triggered, it fires again at once */
	cr_assert_eq(store_wait_fd(st, &w, -1), 0);
	cr_assert(w.ready);
	cr_assert_eq(w.nevents, has ? 1 : 0);
	cr_assert_eq(read(l.pipe[0], &c, 1), 1);
	/* fired while nobody waited (in a store_poll): "readable", the loop collects */
	cr_assert_eq(store_wait_fd(st, &w, 0), 0); /* armed again; nothing readable */
	cr_assert_not(w.ready);
	cr_assert_eq(write(l.pipe[1], "y", 1), 1);
	cr_assert_geq(store_poll(st, 0), 0);
	cr_assert_eq(store_wait_fd(st, &w, 0), 0);
	cr_assert(w.ready);
	cr_assert_eq(w.nevents, 0, "events collected before this wait are not reported");
	store_close(st);
	loop_fds_close(&l);
}

/* A timer fd in the loop's epoll set that becomes readable after ms: the "other
 * wake-up" (a holder's reply) comes later than the store's own write. */
static int timer_in(const struct loop_fds *l, int ms)
{
	struct itimerspec its = { .it_value = { .tv_sec = ms / 1000,
						.tv_nsec = (long)(ms % 1000) * 1000000 } };
	struct epoll_event ev = { .events = EPOLLIN };
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);

	cr_assert_geq(fd, 0);
	cr_assert_eq(epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev), 0);
	cr_assert_eq(timerfd_settime(fd, 0, &its, NULL), 0);
	return fd;
}

/* A store of its own with a kernel that honours w's counts (bounded: the min timeout,
 * else the test is skipped), or NULL. */
static struct store *store_for_counts(const char *name, bool bounded)
{
	struct store *st = store_make(name, MIB, 0);

	if (bounded && !store_has_min_wait(st)) {
		store_close(st);
		cr_skip_test("the kernel has no IORING_FEAT_MIN_TIMEOUT");
	}
	return st;
}

/* One write, and the loop's fd readable 50 ms later: one store_wait_fd() with w's
 * counts and no timeout reaps the write; returns whether the fd's readiness ended
 * that sleep (it lasted past the write). */
static bool write_then_fd_in_one_sleep(const char *name, struct loop_wait w, bool bounded)
{
	struct store *st = store_for_counts(name, bounded);
	char *buf = store_buf_alloc(BLK);
	struct done d = { 0 };
	struct loop_fds l;
	struct loop_wait arm;
	int tfd, ran;

	loop_fds_open(&l);
	arm = (struct loop_wait){ .epfd = l.epfd };
	cr_assert_eq(store_wait_fd(st, &arm, 0), 0); /* the fd's watch armed, nothing ready */
	tfd = timer_in(&l, 50);
	cr_assert_eq(store_write(st, 0, buf, BLK, on_done, &d), 0);
	w.epfd = l.epfd;
	ran = store_wait_fd(st, &w, -1);
	cr_assert_eq(ran, 1);
	cr_assert_eq(d.calls, 1);
	store_close(st);
	close(tfd);
	loop_fds_close(&l);
	store_buf_free(buf);
	return w.ready;
}

/* One write and nothing else: store_wait_fd() with w's counts and timeout_ms, until it
 * reaps the write (tries of them); w.ready must stay false. */
static void write_alone_ends_the_sleep(const char *name, struct loop_wait w, bool bounded,
				       int timeout_ms, int tries)
{
	struct store *st = store_for_counts(name, bounded);
	char *buf = store_buf_alloc(BLK);
	struct done d = { 0 };
	struct loop_fds l;
	int ran = 0;

	loop_fds_open(&l);
	w.epfd = l.epfd;
	cr_assert_eq(store_write(st, 0, buf, BLK, on_done, &d), 0);
	for (int i = 0; i < tries && !ran; i++)
		ran = store_wait_fd(st, &w, timeout_ms);
	cr_assert_eq(ran, 1);
	cr_assert_eq(d.res, BLK);
	cr_assert_not(w.ready);
	store_close(st);
	loop_fds_close(&l);
	store_buf_free(buf);
}

/* min_events 2 (engine_wait_fd: a mirrored append's local write alone would wake the
 * loop for nothing): the write's completion does not end the sleep; the fd's
 * readiness, 50 ms later, does, and the one call reaps both. */
Test(store, wait_fd_sleeps_until_min_events_came)
{
	cr_assert(write_then_fd_in_one_sleep("waitmin", (struct loop_wait){ .min_events = 2 },
					     false),
		  "woken by the write alone: min_events not honoured");
}

/* ... and the timeout still bounds it when the second never comes. */
Test(store, wait_fd_min_events_is_bounded_by_the_timeout)
{
	write_alone_ends_the_sleep("waitmint", (struct loop_wait){ .min_events = 2 }, false,
				   20, 100);
}

/* min_events_bounded (engine_wait_fd: a lone mirrored append sleeps for its local write
 * and every reply): with the kernel's min timeout, the write and the fd's readiness
 * 50 ms later are one wake-up, though min_events says one. */
Test(store, wait_fd_sleeps_until_min_events_bounded_came)
{
	struct loop_wait w = { .min_events = 1, .min_events_bounded = 2,
			       .min_wait_us = 60u * 1000 * 1000 /* far past the timer */ };

	cr_assert(write_then_fd_in_one_sleep("waitbnd", w, true),
		  "woken by the write alone: min_events_bounded not honoured");
}

/* ... and min_wait_us bounds it when the rest never comes (a holder that died): with
 * no timeout at all, the sleep ends after min_wait_us with the write that came. */
Test(store, wait_fd_min_events_bounded_is_bounded_by_min_wait, .timeout = 30)
{
	struct loop_wait w = { .min_events = 1, .min_events_bounded = 3,
			       .min_wait_us = 20 * 1000 };

	write_alone_ends_the_sleep("waitbndw", w, true, -1, 1);
}

/* ---- polling before the sleep (loop_wait.spin_us) ---- */

static void spin_counts(const struct store *st, uint64_t want_spins, uint64_t want_caught)
{
	uint64_t spins, caught;

	store_spin_counts(st, &spins, &caught);
	cr_assert_eq(spins, want_spins, "spins %" PRIu64, spins);
	cr_assert_eq(caught, want_caught, "caught %" PRIu64, caught);
}

/* n writes one after the other, each waited for with spin_us */
static void writes_waited(struct store *st, const struct loop_fds *l, int n, unsigned spin_us)
{
	char *buf = store_buf_alloc(BLK);

	for (int i = 0; i < n; i++) {
		struct done d = { 0 };
		struct loop_wait w = wait_plain(l);

		w.spin_us = spin_us;
		cr_assert_eq(store_write(st, (uint64_t)(i % 16) * BLK, buf, BLK, on_done, &d), 0);
		cr_assert_eq(store_wait_fd(st, &w, -1), 1);
		cr_assert_not(w.ready);
		cr_assert_eq(d.calls, 1);
		cr_assert_eq(d.res, BLK);
	}
	store_buf_free(buf);
}

/* The window grows to the writes' time (up to spin_us): polls catch them. */
Test(store, a_request_in_flight_is_polled_for_not_slept_on)
{
	struct store *st = store_make("spinio", MIB, 0);
	struct loop_fds l;
	uint64_t spins, caught;

	loop_fds_open(&l);
	writes_waited(st, &l, 40, 10 * 1000 * 1000); /* longer than any write */
	store_spin_counts(st, &spins, &caught);
	cr_assert_eq(spins, 40, "every wait polled");
	cr_assert_geq(caught, 1, "no poll caught its write");
	store_close(st);
	loop_fds_close(&l);
}

/* Waits longer than spin_us shrink the window to nothing: no more polls. */
Test(store, waits_longer_than_spin_us_stop_the_polls)
{
	struct store *st = store_make("spinlong", MIB, 0);
	struct loop_fds l;

	loop_fds_open(&l);
	writes_waited(st, &l, 10, 1); /* no write completes within 1 µs of its submit */
	spin_counts(st, 1, 0);
	store_close(st);
	loop_fds_close(&l);
}

/* With nothing of the store's in flight, what ends a poll is the fd: the next
 * request of a client just answered (the engine decides when to ask for a poll). */
Test(store, a_poll_with_nothing_in_flight_is_ended_by_the_fd)
{
	struct store *st = store_make("spinidle", MIB, 0);
	struct loop_fds l;
	struct loop_wait w;

	loop_fds_open(&l);
	w = wait_plain(&l);
	w.spin_us = 10 * 1000 * 1000;
	cr_assert_eq(write(l.pipe[1], "x", 1), 1);
	cr_assert_eq(store_wait_fd(st, &w, -1), 0);
	cr_assert(w.ready);
	spin_counts(st, 1, 1);
	store_close(st);
	loop_fds_close(&l);
}

/* An fd that comes later than spin_us: the poll gives up and sleeps until it, and the
 * window shrinks to nothing (the next wait does not poll). */
Test(store, an_fd_later_than_spin_us_ends_the_polls)
{
	struct store *st = store_make("spinlate", MIB, 0);
	struct loop_fds l;

	loop_fds_open(&l);
	for (int i = 0; i < 2; i++) {
		int t = timer_in(&l, 5);
		struct loop_wait w = wait_plain(&l);
		uint64_t v;

		w.spin_us = 1000;
		cr_assert_eq(store_wait_fd(st, &w, -1), 0);
		cr_assert(w.ready);
		cr_assert_eq(read(t, &v, sizeof(v)), (ssize_t)sizeof(v));
		close(t); /* (leaves the epoll set) */
	}
	spin_counts(st, 1, 0);
	store_close(st);
	loop_fds_close(&l);
}

/* A poll that catches nothing leaves the sleep what is left of the timeout, not all of
 * it: a loop timer due within the poll's window (the timeout the loop asked for) fires
 * on time, not a window late. Waits ended by a timer at 30 ms grow the window to
 * spin_us, 40 ms (each outlasts it until a poll catches one); then a wait of 40 ms
 * with nothing to come polls for its whole 40 ms and must not sleep 40 ms more: that
 * takes 80 ms at least, so 75 ms leaves 35 ms for a loaded machine (a sanitized run in
 * a CI's parallel suite took 66 ms where the bound was 60). */
Test(store, a_poll_that_catches_nothing_leaves_the_sleep_the_rest_of_the_timeout)
{
	const unsigned spin_us = 40 * 1000;
	struct store *st = store_make("spintmo", MIB, 0);
	struct loop_fds l;
	struct loop_wait w;
	uint64_t spins, caught = 0, t0, took;

	loop_fds_open(&l);
	for (int i = 0; i < 100 && !caught; i++) {
		int t = timer_in(&l, 30);
		uint64_t v;

		w = wait_plain(&l);
		w.spin_us = spin_us;
		cr_assert_eq(store_wait_fd(st, &w, -1), 0);
		cr_assert(w.ready);
		cr_assert_eq(read(t, &v, sizeof(v)), (ssize_t)sizeof(v));
		close(t); /* (leaves the epoll set) */
		store_spin_counts(st, &spins, &caught);
	}
	cr_assert_eq(caught, 1, "no poll caught a timer of 30 ms: the window did not grow");
	w = wait_plain(&l);
	w.spin_us = spin_us;
	t0 = log_clock_us();
	cr_assert_eq(store_wait_fd(st, &w, 40), 0);
	took = log_clock_us() - t0;
	cr_assert_not(w.ready);
	store_spin_counts(st, &spins, &caught);
	cr_assert_eq(caught, 1, "the last poll caught something");
	cr_assert_geq(took, 40 * 1000, "the 40 ms timeout not waited: %" PRIu64 " µs", took);
	cr_assert_lt(took, 75 * 1000, "a 40 ms wait took %" PRIu64 " µs: the sleep after the "
		     "poll had the whole timeout again", took);
	store_close(st);
	loop_fds_close(&l);
}

/* The poll has its own CQ entry: a ring full of requests cannot overflow with it. */
Test(store, wait_fd_with_a_full_ring)
{
	enum { N = 100 };
	struct store *st = store_make("waitfull", MIB, 4); /* 8 CQ entries */
	char *buf = store_buf_alloc(BLK);
	struct done d[N] = { 0 };
	struct loop_fds l;
	bool ready;
	int ran = 0;

	loop_fds_open(&l);
	cr_assert_eq(write(l.pipe[1], "x", 1), 1);
	for (int i = 0; i < N; i++)
		cr_assert_eq(store_read(st, (uint64_t)(i % 16) * BLK, buf, BLK, on_done, &d[i]), 0);
	while (ran < N) {
		int r = wait_fd(st, &l, -1, &ready);

		cr_assert_geq(r, 0);
		ran += r;
	}
	for (int i = 0; i < N; i++)
		cr_assert_eq(d[i].calls, 1, "request %d", i);
	store_close(st);
	loop_fds_close(&l);
	store_buf_free(buf);
}

/* ---- blocking helpers and buffers ---- */

Test(store, sync_helpers_round_trip_and_validate)
{
	struct store *st = store_make("sync", 8 * BLK, 0);
	char *buf = store_buf_alloc(2 * BLK);
	char *back = store_buf_alloc(2 * BLK);

	fill(buf, 2 * BLK, 99);
	cr_assert_eq(store_write_sync(st, 6 * BLK, buf, 2 * BLK), 0);
	cr_assert_eq(store_flush_sync(st), 0);
	cr_assert_eq(store_read_sync(st, 6 * BLK, back, 2 * BLK), 0);
	cr_assert_eq(memcmp(buf, back, 2 * BLK), 0);

	cr_assert_eq(store_write_sync(st, 7 * BLK, buf, 2 * BLK), -EINVAL, "out of range");
	cr_assert_eq(store_read_sync(st, 100, back, BLK), -EINVAL, "offset");
	cr_assert_eq(store_read_sync(st, 0, back + 1, BLK), -EINVAL, "buffer");
	cr_assert_eq(store_read_sync(st, 0, back, 100), -EINVAL, "length");
	cr_assert_eq(store_read_sync(st, 0, NULL, BLK), -EINVAL, "NULL buffer");
	cr_assert_eq(store_flush_sync(NULL), -EINVAL);

	cr_assert_eq(truncate(test_path, BLK), 0);
	cr_assert_eq(store_read_sync(st, 6 * BLK, back, BLK), -EIO, "past end of file");
	store_close(st);
	store_buf_free(buf);
	store_buf_free(back);
}

Test(store, buffers_are_aligned_and_zeroed)
{
	unsigned char *buf = store_buf_alloc(3 * BLK);

	cr_assert_not_null(buf);
	cr_assert_eq((uintptr_t)buf % STORE_ALIGN, 0);
	for (size_t i = 0; i < 3 * BLK; i++)
		cr_assert_eq(buf[i], 0);
	store_buf_free(buf);
	store_buf_free(NULL);
	store_close(NULL);
	cr_assert_eq(store_size(NULL), 0);
	cr_assert_eq(store_inflight(NULL), 0);
}

/* ---- the loop's sends in the sleep (loop.h's loop_send) ---- */

static void send_noop(void *arg, long res)
{
	(void)arg;
	(void)res;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Reads what fd (non-blocking) holds; returns the bytes. */
static size_t sock_drain(int fd)
{
	static char buf[1 << 16];
	size_t total = 0;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += (size_t)n;
	cr_assert(n == 0 || errno == EAGAIN);
	return total;
}

/* A store, the loop's fds and a socket pair (sv[0] the loop's end, sv[1] the peer's,
 * both non-blocking): what a test of the loop's sends and receives in the sleep needs.
 * sock_rig_close closes what it opened (an sv set to -1: closed by the test). */
struct sock_rig {
	struct store *st;
	struct loop_fds l;
	int sv[2];
};

static void sock_rig_open(struct sock_rig *x, const char *name)
{
	x->st = store_make(name, MIB, 0);
	loop_fds_open(&x->l);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, x->sv), 0);
}

static void sock_rig_close(struct sock_rig *x)
{
	store_close(x->st);
	loop_fds_close(&x->l);
	for (int i = 0; i < 2; i++)
		if (x->sv[i] >= 0)
			close(x->sv[i]);
}

/* A send handed to the wait goes out in its system call: the bytes are on the peer
 * socket when it returns, with the result, and the sleep still waits for a wake-up
 * of its own (here none: its whole 50 ms), not for the send's completion. */
Test(store, wait_fd_makes_the_loops_sends_in_the_sleep)
{
	struct loop_send s = { .buf = "abcdef", .len = 6, .fn = send_noop };
	struct sock_rig x;
	struct loop_wait w;
	uint64_t t0;
	char got[8] = { 0 };

	sock_rig_open(&x, "waitsend");
	s.fd = x.sv[0];
	w = wait_plain(&x.l);
	w.sends = &s;
	t0 = mono_ms();
	cr_assert_eq(store_wait_fd(x.st, &w, 50), 0);
	cr_assert_geq(mono_ms() - t0, 45, "the send's completion ended the sleep");
	cr_assert(s.done, "the store made the send");
	cr_assert_eq(s.res, 6);
	cr_assert_not(w.ready, "the send's completion is no wake-up of the fd");
	cr_assert_eq(read(x.sv[1], got, sizeof(got)), 6);
	cr_assert_str_eq(got, "abcdef");
	sock_rig_close(&x);
}

/* A gathered send (the NBD server's replies: a header, then the data of a read) goes
 * as one SENDMSG in the sleep's system call, its pieces in order. */
Test(store, wait_fd_makes_a_gathered_send_in_the_sleep)
{
	struct iovec iov[] = { { "hdr:", 4 }, { "payload", 7 } };
	struct loop_send s = { .iov = iov, .iovcnt = 2, .len = 11, .fn = send_noop };
	struct sock_rig x;
	struct loop_wait w;
	char got[16] = { 0 };

	sock_rig_open(&x, "waitsendv");
	s.fd = x.sv[0];
	s.msg = (struct msghdr){ .msg_iov = iov, .msg_iovlen = 2 }; /* loop_send_queue's */
	w = wait_plain(&x.l);
	w.sends = &s;
	cr_assert_eq(store_wait_fd(x.st, &w, 0), 0);
	cr_assert(s.done, "the store made the send");
	cr_assert_eq(s.res, 11);
	cr_assert_eq(read(x.sv[1], got, sizeof(got)), 11);
	cr_assert_str_eq(got, "hdr:payload");
	sock_rig_close(&x);
}

/* A full socket: -EAGAIN at once (MSG_DONTWAIT), the send never left waiting in the
 * ring where it would keep the caller's buffer. */
Test(store, a_send_to_a_full_socket_completes_eagain_in_the_sleep)
{
	static char fill[1 << 16];
	struct loop_send s = { .buf = "x", .len = 1, .fn = send_noop };
	struct sock_rig x;
	struct loop_wait w;
	size_t filled = 0;
	ssize_t n;

	sock_rig_open(&x, "waitfull");
	while ((n = write(x.sv[0], fill, sizeof(fill))) > 0)
		filled += (size_t)n;
	cr_assert_eq(errno, EAGAIN);
	s.fd = x.sv[0];
	w = wait_plain(&x.l);
	w.sends = &s;
	cr_assert_eq(store_wait_fd(x.st, &w, 50), 0);
	cr_assert(s.done);
	cr_assert_eq(s.res, -EAGAIN);
	/* nothing left in the ring: with room made, the next sleep sends nothing */
	cr_assert_eq(sock_drain(x.sv[1]), filled);
	w = wait_plain(&x.l);
	cr_assert_eq(store_wait_fd(x.st, &w, 10), 0);
	cr_assert_eq(sock_drain(x.sv[1]), 0, "the send was kept in the ring and made later");
	sock_rig_close(&x);
}

/* A receive kept in the ring (loop.h's loop_recv): it waits in the kernel, its data's
 * arrival ends the sleep (no epoll event: the socket is not in the loop's set), and
 * the bytes are in its buffer with the result when the call returns; a short one
 * (less than its room) is its own completion. */
Test(store, a_receive_in_the_ring_completes_as_a_wake_up)
{
	char buf[16] = { 0 };
	struct loop_recv lr = { .buf = buf, .cap = sizeof(buf) };
	struct sock_rig x;
	struct loop_wait w;

	sock_rig_open(&x, "waitrecv");
	lr.fd = x.sv[0];
	w = wait_plain(&x.l);
	w.recvs = &lr;
	cr_assert_eq(store_wait_fd(x.st, &w, 10), 0); /* nothing to read: it stays in */
	cr_assert(lr.in_ring);
	cr_assert_not(lr.done);
	cr_assert_eq(write(x.sv[1], "hello", 5), 5);
	w = wait_plain(&x.l);
	cr_assert_eq(store_wait_fd(x.st, &w, -1), 1, "the data woke the unbounded sleep");
	cr_assert_not(w.ready, "not through the epoll fd");
	cr_assert(lr.done);
	cr_assert_not(lr.in_ring);
	cr_assert_eq(lr.res, 5);
	cr_assert_eq(memcmp(buf, "hello", 5), 0);
	/* again, then the peer closes: 0 bytes */
	lr.done = false;
	w = wait_plain(&x.l);
	w.recvs = &lr;
	close(x.sv[1]);
	x.sv[1] = -1;
	cr_assert_eq(store_wait_fd(x.st, &w, -1), 1);
	cr_assert(lr.done);
	cr_assert_eq(lr.res, 0);
	sock_rig_close(&x);
}

/* Two loop receives, each on its own socket pair: x.a reads x.sa[0], x.b x.sb[0]. */
struct two_recvs {
	char abuf[16], bbuf[16];
	struct loop_recv a, b;
	int sa[2], sb[2];
};

static void two_recvs_open(struct two_recvs *x)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, x->sa), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, x->sb), 0);
	x->a = (struct loop_recv){ .fd = x->sa[0], .buf = x->abuf, .cap = sizeof(x->abuf) };
	x->b = (struct loop_recv){ .fd = x->sb[0], .buf = x->bbuf, .cap = sizeof(x->bbuf) };
}

static void two_recvs_close(struct two_recvs *x)
{
	for (int i = 0; i < 2; i++) {
		close(x->sa[i]);
		close(x->sb[i]);
	}
}

/* The loop gave a receive up (its connection closed): the cancel's completion and the
 * receive's own (-ECANCELED) come back, and the receive is out of the ring; and a
 * store closed with a receive still in the ring cancels it, so that the kernel keeps
 * no buffer of the loop's past the close. */
Test(store, a_receive_in_the_ring_is_cancelled_on_stop_and_on_close)
{
	struct store *st = store_make("waitrecvx", MIB, 0);
	struct two_recvs x;
	struct loop_fds l;
	struct loop_wait w;

	loop_fds_open(&l);
	two_recvs_open(&x);
	x.a.next = &x.b;
	w = wait_plain(&l);
	w.recvs = &x.a;
	cr_assert_eq(store_wait_fd(st, &w, 0), 0);
	cr_assert(x.a.in_ring && x.b.in_ring);
	x.a.next = NULL;
	w = wait_plain(&l);
	w.recv_cancels = &x.a;
	cr_assert_geq(store_wait_fd(st, &w, 10), 0);
	cr_assert(x.a.cancel_sent);
	for (int i = 0; i < 100 && !x.a.done; i++) { /* its completion may come a call later */
		w = wait_plain(&l);
		cr_assert_geq(store_wait_fd(st, &w, 10), 0);
	}
	cr_assert(x.a.done);
	cr_assert_not(x.a.in_ring);
	cr_assert_eq(x.a.res, -ECANCELED);
	cr_assert(x.b.in_ring, "the other stays");
	cr_assert_eq(write(x.sa[1], "late", 4), 4); /* nothing reads it now */
	store_close(st);
	cr_assert(x.b.done, "closing the store cancelled it");
	cr_assert_not(x.b.in_ring);
	cr_assert_eq(x.b.res, -ECANCELED);
	loop_fds_close(&l);
	two_recvs_close(&x);
}

/* A wait whose io_uring_enter fails leaves the loop's receive and cancel unconsumed in
 * the SQ: they are taken back (the receive out of the ring, the cancel not sent), so
 * that no later submit reads the loop's fd, which it may have closed meanwhile. */
Test(store, a_failed_enter_takes_the_loops_receives_and_cancels_back)
{
	struct store *st = store_make("waitrecvfail", MIB, 0);
	struct two_recvs x;
	struct loop_fds l;
	struct loop_wait w;
	struct done d = { 0 };
	uint8_t *blk = store_buf_alloc(BLK);
	char got[16];

	cr_assert_not_null(blk);
	loop_fds_open(&l);
	two_recvs_open(&x);
	w = wait_plain(&l);
	w.recvs = &x.b;
	cr_assert_eq(store_wait_fd(st, &w, 0), 0);
	cr_assert(x.b.in_ring, "b waits in the kernel");
	submit_fails = -EBADF;
	w = wait_plain(&l);
	w.recvs = &x.a;
	w.recv_cancels = &x.b;
	cr_assert_eq(store_wait_fd(st, &w, 0), -EBADF);
	submit_fails = 0;
	cr_assert_not(x.a.in_ring, "a's receive was taken back");
	cr_assert_not(x.a.done);
	cr_assert_not(x.b.cancel_sent, "b's cancel was taken back: the loop sends it again");
	cr_assert(x.b.in_ring);
	/* the next submit (a write) must not take a's receive into the kernel */
	cr_assert_eq(write(x.sa[1], "late", 4), 4);
	cr_assert_eq(store_write(st, 0, blk, BLK, on_done, &d), 0);
	while (!d.calls)
		cr_assert_geq(store_poll(st, 100), 0);
	cr_assert_eq(d.res, (int)BLK);
	w = wait_plain(&l);
	cr_assert_geq(store_wait_fd(st, &w, 10), 0);
	cr_assert_not(x.a.done, "a receive taken back was made anyway");
	cr_assert_eq(recv(x.sa[0], got, sizeof(got), 0), 4, "its bytes are still in the socket");
	store_buf_free(blk);
	store_close(st);
	cr_assert(x.b.done, "closing the store cancelled b");
	loop_fds_close(&l);
	two_recvs_close(&x);
}
