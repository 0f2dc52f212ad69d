/* tests/unit/engine/engine_fixture.c — see engine_fixture.h. */
#include "engine_fixture.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/engine_internal.h"
#include "engine/segment.h"
#include "testutil.h"

#ifndef QUILL_TEST_DIR
#define QUILL_TEST_DIR "/var/tmp"
#endif

char dir[PATH_MAX];
char store_path[PATH_MAX + 16];
char meta_path[PATH_MAX + 16];
struct engine *eng; /* the engine under test: the I/O helpers run it */

/* ---- scratch directory ---- */

void setup(void)
{
	int r = testutil_scratch_dir(QUILL_TEST_DIR, "quill-engine", dir, sizeof(dir));

	if (r == -EOPNOTSUPP)
		cr_skip_test("%s does not support O_DIRECT; set QUILL_TEST_DIR", dir);
	cr_assert_eq(r, 0, "mkdtemp %s: %s", dir, strerror(-r));
	snprintf(store_path, sizeof(store_path), "%s/store.img", dir);
	snprintf(meta_path, sizeof(meta_path), "%s/meta", dir);
}

void teardown(void)
{
	/* whatever the test did, the family table agrees with a walk of the layers and
	 * the slots (engine/segment.h, seg_families_check) */
	int r = eng ? seg_families_check(eng) : 0;

	engine_close(eng);
	eng = NULL;
	testutil_rm_tree(dir);
	cr_assert_eq(r, 0, "the family table disagrees with the layers and slots (logged)");
}


/* ---- opening ---- */

void opts_for(struct engine_opts *o, const char *store, const char *meta, bool format)
{
	engine_opts_init(o);
	o->store_path = store;
	o->meta_path = meta;
	o->store_size = STORE_SIZE;
	o->format = format;
	o->segment_size = SEG_SIZE;
	o->queue_depth = 16;
	o->checkpoint_ms = 600000; /* checkpoints only when a test (or close) asks */
}

int try_open(bool format)
{
	struct engine_opts o;

	opts_for(&o, store_path, meta_path, format);
	return engine_open(&o, &eng);
}

void open_engine(void)
{
	int r = try_open(true);

	cr_assert_eq(r, 0, "engine_open: %s", strerror(-r));
}

void reopen_engine(void)
{
	engine_close(eng);
	eng = NULL;
	open_engine();
}

void reopen_engine_sized(uint32_t segs, bool family_records)
{
	struct engine_opts o;

	engine_close(eng);
	eng = NULL;
	opts_for(&o, store_path, meta_path, false);
	o.store_size = QUILL_DATA_OFFSET + (uint64_t)segs * SEG_SIZE;
	o.family_records = family_records;
	cr_assert_eq(engine_open(&o, &eng), 0);
}

/* Reopens from the store alone: the metadata directory is thrown away. */
void rebuild_engine(void)
{
	struct engine_opts o;
	int r;

	engine_close(eng);
	eng = NULL;
	testutil_rm_tree(meta_path);
	opts_for(&o, store_path, meta_path, false);
	o.rebuild_meta = true;
	r = engine_open(&o, &eng);
	cr_assert_eq(r, 0, "rebuild: %s", strerror(-r));
}

struct engine_stats stats(void)
{
	struct engine_stats st;

	engine_get_stats(eng, &st);
	return st;
}

struct engine_volume *create_and_open(const char *name, uint64_t size)
{
	struct engine_volume *vol = NULL;

	cr_assert_eq(engine_volume_create(eng, name, size), 0, "create %s", name);
	cr_assert_eq(engine_volume_open(eng, name, &vol), 0, "open %s", name);
	return vol;
}

struct engine_volume *open_vol(const char *name)
{
	struct engine_volume *vol = NULL;

	cr_assert_eq(engine_volume_open(eng, name, &vol), 0, "open %s", name);
	return vol;
}

struct engine_volume_info info(const char *name)
{
	struct engine_volume_info in;

	cr_assert_eq(engine_volume_info(eng, name, &in), 0, "info %s", name);
	return in;
}

/* ---- blocking I/O: run the engine until the callback fires ---- */


void on_done(void *arg, int res)
{
	struct done *d = arg;

	cr_assert_not(d->done, "callback ran twice");
	d->res = res;
	d->done = true;
}

/* Waits for the callback of a call that returned r. */
int finish(int r, struct done *d)
{
	if (r < 0)
		return r;
	r = engine_wait(eng, &d->done);
	return r < 0 ? r : d->res;
}

int vwrite(struct engine_volume *vol, uint64_t lba, uint32_t n, const void *buf)
{
	struct done d = { 0 };

	return finish(engine_write(vol, lba, n, buf, 0, on_done, &d), &d);
}

int vread(struct engine_volume *vol, uint64_t lba, uint32_t n, void *buf)
{
	struct done d = { 0 };

	return finish(engine_read(vol, lba, n, buf, on_done, &d), &d);
}

int vtrim(struct engine_volume *vol, uint64_t lba, uint64_t n)
{
	struct done d = { 0 };

	return finish(engine_trim(vol, lba, n, 0, on_done, &d), &d);
}

int vzero(struct engine_volume *vol, uint64_t lba, uint64_t n)
{
	struct done d = { 0 };

	return finish(engine_zero(vol, lba, n, 0, on_done, &d), &d);
}

int flatten_wait(const char *vol)
{
	struct engine_flatten_status st;

	for (;;) {
		cr_assert_eq(engine_flatten_status(eng, vol, &st), 0);
		if (!st.running)
			return st.result;
		cr_assert_geq(engine_poll(eng, 10), 0);
	}
}

int eflush(void)
{
	struct done d = { 0 };

	return finish(engine_flush(eng, on_done, &d), &d);
}

/* ---- block contents ---- */

/* buf may be unaligned: the words are copied in. */
void fill(void *buf, uint64_t lba, uint32_t n, uint32_t tag)
{
	uint8_t *p = buf;

	for (uint32_t b = 0; b < n; b++) {
		for (uint32_t i = 0; i < BLK / 4; i++, p += 4) {
			uint32_t w = (uint32_t)(lba + b) * 2654435761u ^ tag * 40503u ^ i;

			memcpy(p, &w, sizeof(w));
		}
	}
}

/* Writes n blocks from lba tagged tag, from an unaligned buffer. */
void write_tagged(struct engine_volume *vol, uint64_t lba, uint32_t n, uint32_t tag)
{
	uint8_t *mem = malloc((size_t)n * BLK + 1);
	int r;

	cr_assert_not_null(mem);
	fill(mem + 1, lba, n, tag);
	r = vwrite(vol, lba, n, mem + 1);
	free(mem);
	cr_assert_eq(r, 0, "write %u blocks at %llu: %s", n, (unsigned long long)lba, strerror(-r));
}

static uint32_t left_in_open(const struct engine_volume *vol)
{
	cr_assert_geq(vol->open_slot, 0);
	return vol->eng->blocks_per_seg - vol->eng->slots[vol->open_slot].used;
}

static void write_batch(struct engine_volume *vol, uint64_t *lba, uint32_t n)
{
	write_tagged(vol, *lba, n, 11);
	*lba += n;
	cr_assert_eq(eflush(), 0);
}

void fill_open_segment_to(struct engine_volume *vol, uint64_t *lba, uint32_t left)
{
	while (left_in_open(vol) < left + 3)
		write_batch(vol, lba, 1);
	if ((left_in_open(vol) - left) % 2)
		write_batch(vol, lba, 2);
	while (left_in_open(vol) > left)
		write_batch(vol, lba, 1);
	cr_assert_eq(left_in_open(vol), left);
}

/* Reads n blocks at lba (into an unaligned buffer) and checks they carry tag, or are
 * zeros for tag 0. */
void expect_tagged(struct engine_volume *vol, uint64_t lba, uint32_t n, uint32_t tag)
{
	uint8_t *mem = malloc((size_t)n * BLK + 3);
	uint8_t *want = calloc(n, BLK);
	int r;

	cr_assert(mem && want);
	memset(mem, 0xee, (size_t)n * BLK + 3);
	if (tag)
		fill(want, lba, n, tag);
	r = vread(vol, lba, n, mem + 3);
	cr_assert_eq(r, 0, "read %u blocks at %llu: %s", n, (unsigned long long)lba, strerror(-r));
	for (uint32_t b = 0; b < n; b++)
		cr_assert_eq(memcmp(mem + 3 + (size_t)b * BLK, want + (size_t)b * BLK, BLK), 0,
			     "lba %llu: not tag %u", (unsigned long long)(lba + b), tag);
	free(mem);
	free(want);
}

/* ---- crashes ---- */

/* Runs fn in a child process; fn returns 0 or a line number to report. A crash is a
 * child that returns without closing its engine: _exit() writes no final checkpoint.
 * RocksDB's background threads do not survive fork(), so a test forks before its own
 * process opens an engine. */
void in_child(int (*fn)(void))
{
	pid_t pid;
	int status;

	cr_assert_null(eng, "fork before the test's own engine_open");
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(fn() == 0 ? 0 : 1);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: status %d", status);
}


void mirror_nop_opened(void *ctx, uint32_t slot, uint64_t uid, uint32_t sno, uint64_t epoch)
{
	(void)ctx;
	(void)slot;
	(void)uid;
	(void)sno;
	(void)epoch;
}

void mirror_nop_sealed(void *ctx, uint32_t slot, uint32_t length)
{
	(void)ctx;
	(void)slot;
	(void)length;
}

int mirror_local_flush(void *ctx, seg_cb cb, void *arg)
{
	(void)ctx;
	return eng->segs->ops->flush(eng->segs, cb, arg);
}

int mirror_local_append(void *ctx, uint32_t slot, uint32_t block, const struct iovec *iov,
			int iovcnt, uint32_t nblocks, bool fua, seg_cb cb, void *arg)
{
	(void)slot;
	(void)block;
	(void)iov;
	(void)iovcnt;
	(void)nblocks;
	(void)fua;
	return mirror_local_flush(ctx, cb, arg);
}
