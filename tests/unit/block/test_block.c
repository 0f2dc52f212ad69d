/* tests/unit/block/test_block.c — the block layer (block/block.c) on a real engine:
 * overlapping unaligned writes submitted together (read-modify-write under range
 * locks) checked byte for byte against a model, requests split into several engine
 * calls, unaligned zeroing, spec parsing, and errors (range, read-only snapshot, an
 * engine error passed on through the callback). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blk_done.h"
#include "block/block.h"
#include "common/volspec.h"
#include "test_engine_scratch.h"
#include "testutil.h"

#ifndef QUILL_TEST_DIR
#define QUILL_TEST_DIR "/var/tmp"
#endif

#define BS ENGINE_BLOCK_SIZE
#define VOL_SIZE (8u << 20)

static char dir[PATH_MAX];
static struct engine *eng;
static struct blk_dev *dev;

static int open_engine(uint64_t store_size)
{
	int r = test_engine_scratch(QUILL_TEST_DIR, "quill-block", store_size, dir, sizeof(dir),
				    &eng);

	if (r == -EOPNOTSUPP)
		return -1;
	cr_assert_eq(r, 0);
	cr_assert_eq(engine_volume_create(eng, "disk0", VOL_SIZE), 0);
	return 0;
}

static void setup(void)
{
	if (open_engine(64u << 20) < 0)
		cr_skip_test("%s does not support O_DIRECT", QUILL_TEST_DIR);
	cr_assert_eq(blk_open(eng, NULL, "disk0", &dev), 0);
}

static void teardown(void)
{
	blk_close(dev);
	dev = NULL;
	engine_close(eng);
	eng = NULL;
	testutil_rm_tree(dir);
}

static int wait_done(int r, struct done *d)
{
	if (r < 0)
		return r;
	cr_assert_eq(engine_wait(eng, &d->done), 0);
	return d->res;
}

static int bread(uint64_t off, uint32_t len, void *buf)
{
	struct done d = { 0 };

	return wait_done(blk_read(dev, off, len, buf, on_done, &d), &d);
}

static int bwrite(uint64_t off, uint32_t len, const void *buf)
{
	struct done d = { 0 };

	return wait_done(blk_write(dev, off, len, buf, 0, on_done, &d), &d);
}

static int bzero_range(uint64_t off, uint64_t len)
{
	struct done d = { 0 };

	return wait_done(blk_zero(dev, off, len, 0, on_done, &d), &d);
}

static void pattern(uint8_t *p, size_t len, unsigned tag)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(tag * 131u + i * 7u + 1u);
}

static void expect_model(const uint8_t *model, uint64_t len)
{
	uint8_t *got = malloc(len);

	cr_assert_not_null(got);
	cr_assert_eq(bread(0, (uint32_t)len, got), 0);
	for (uint64_t i = 0; i < len; i++)
		cr_assert_eq(got[i], model[i], "byte %llu: got %u, want %u",
			     (unsigned long long)i, got[i], model[i]);
	free(got);
}

TestSuite(block, .init = setup, .fini = teardown);

/* Many unaligned writes that share blocks (and some that overlap each other's
 * bytes), all submitted before any completes: without the range locks their
 * read-modify-writes read the same old block and the last one wins whole. */
Test(block, overlapping_unaligned_writes_keep_every_byte)
{
	enum { N = 48, SPAN = 6 * BS };
	uint8_t model[SPAN] = { 0 };
	uint8_t *bufs[N];
	struct done d[N];
	unsigned ok = 0;

	memset(d, 0, sizeof(d));
	pattern(model, SPAN, 999);
	cr_assert_eq(bwrite(0, SPAN, model), 0); /* mapped blocks: RMW must read them */
	for (unsigned i = 0; i < N; i++) {
		/* 512-byte sectors, odd byte lengths too, around block edges */
		uint64_t off = (uint64_t)(i * 1531u) % (SPAN - 3000);
		uint32_t len = 700u + (i % 5) * 512u + (i & 1);

		bufs[i] = malloc(len);
		cr_assert_not_null(bufs[i]);
		pattern(bufs[i], len, i);
		cr_assert_eq(blk_write(dev, off, len, bufs[i], 0, on_done, &d[i]), 0);
		memcpy(model + off, bufs[i], len); /* overlapping writes land in FIFO order */
	}
	cr_assert_gt(blk_locked(dev), 1, "the writes should be in flight together");
	for (unsigned i = 0; i < N; i++) {
		cr_assert_eq(engine_wait(eng, &d[i].done), 0);
		ok += d[i].res == 0;
	}
	cr_assert_eq(ok, N);
	cr_assert_eq(blk_locked(dev), 0);
	expect_model(model, SPAN);
	for (unsigned i = 0; i < N; i++)
		free(bufs[i]);
}

/* Overlapping writes complete in the order they were submitted. */
Test(block, overlapping_writes_run_in_order)
{
	uint8_t a[BS + 100], b[200];
	struct done da = { 0 }, db = { 0 };

	pattern(a, sizeof(a), 1);
	pattern(b, sizeof(b), 2);
	cr_assert_eq(blk_write(dev, 300, sizeof(a), a, 0, on_done, &da), 0);
	cr_assert_eq(blk_write(dev, 4000, sizeof(b), b, 0, on_done, &db), 0);
	cr_assert_eq(engine_wait(eng, &db.done), 0);
	cr_assert(da.done);
	cr_assert_lt(da.seq, db.seq);
}

/* Larger than BLK_SPLIT_BYTES, unaligned at both ends: several engine calls whose
 * pieces must land at the right offsets. */
Test(block, large_requests_are_split)
{
	uint32_t len = 3 * BLK_SPLIT_BYTES + 5000;
	uint64_t off = 3 * 512;
	uint8_t *w = malloc(len), *r = malloc(len + 2 * BS), *al;

	cr_assert_not_null(w);
	cr_assert_not_null(r);
	pattern(w, len, 7);
	cr_assert_eq(bwrite(off, len, w), 0);
	memset(r, 0xee, len);
	cr_assert_eq(bread(off, len, r), 0);
	cr_assert_eq(memcmp(r, w, len), 0);
	/* aligned and larger than a piece: straight into the caller's buffer */
	cr_assert_eq(posix_memalign((void **)&al, BS, 2 * BLK_SPLIT_BYTES + BS), 0);
	cr_assert_eq(bread(0, 2 * BLK_SPLIT_BYTES + BS, al), 0);
	for (uint32_t i = 0; i < off; i++)
		cr_assert_eq(al[i], 0);
	cr_assert_eq(memcmp(al + off, w, 2 * BLK_SPLIT_BYTES + BS - off), 0);
	free(al);
	free(w);
	free(r);
}

/* Zeroing an unaligned range: whole blocks trimmed, edge bytes zeroed, the bytes
 * around it kept. */
Test(block, unaligned_zero_keeps_neighbours)
{
	enum { SPAN = 5 * BS };
	uint8_t model[SPAN];

	pattern(model, SPAN, 3);
	cr_assert_eq(bwrite(0, SPAN, model), 0);
	cr_assert_eq(bzero_range(1000, 3 * BS + 24), 0);
	memset(model + 1000, 0, 3 * BS + 24);
	cr_assert_eq(bzero_range(4 * BS + 8, 16), 0); /* inside one block */
	memset(model + 4 * BS + 8, 0, 16);
	expect_model(model, SPAN);
	cr_assert(blk_mapped(dev, 0));
	cr_assert_not(blk_mapped(dev, 2 * BS), "a whole block inside is freed");
}

static int bzero_alloc(uint64_t off, uint64_t len)
{
	struct done d = { 0 };

	return wait_done(blk_zero(dev, off, len, BLK_NO_HOLE, on_done, &d), &d);
}

/* BLK_NO_HOLE: whole blocks become allocated zeros; a partial edge block keeps its
 * other bytes where it holds data, and becomes allocated zeros where it is a hole. */
Test(block, zero_without_holes_allocates)
{
	enum { SPAN = 8 * BS };
	uint8_t model[SPAN];

	pattern(model, 4 * BS, 5);
	memset(model + 4 * BS, 0, SPAN - 4 * BS);
	cr_assert_eq(bwrite(0, 4 * BS, model), 0);
	cr_assert_eq(bzero_alloc(BS + 100, 4 * BS), 0); /* data edge, 3 whole, hole edge */
	memset(model + BS + 100, 0, 4 * BS);
	expect_model(model, SPAN);
	cr_assert_eq(blk_state(dev, 0), BLK_STATE_DATA);
	cr_assert_eq(blk_state(dev, BS), BLK_STATE_DATA, "the RMW'd edge keeps its data");
	for (unsigned b = 2; b <= 5; b++)
		cr_assert_eq(blk_state(dev, b * BS), BLK_STATE_ZERO, "block %u", b);
	cr_assert_eq(blk_state(dev, 6 * BS), BLK_STATE_HOLE);
	cr_assert(blk_mapped(dev, 3 * BS), "allocated zeros are not a hole");
	/* without the flag, the same range is trimmed: holes again */
	cr_assert_eq(bzero_range(2 * BS, 3 * BS), 0);
	cr_assert_eq(blk_state(dev, 3 * BS), BLK_STATE_HOLE);
	cr_assert_eq(blk_state(dev, 5 * BS), BLK_STATE_ZERO);
	expect_model(model, SPAN);
}

Test(block, range_and_argument_errors)
{
	uint8_t buf[BS];
	struct done d = { 0 };

	cr_assert_eq(blk_read(dev, VOL_SIZE - 512, 1024, buf, on_done, &d), -ERANGE);
	cr_assert_eq(blk_write(dev, VOL_SIZE, 1, buf, 0, on_done, &d), -ERANGE);
	cr_assert_eq(blk_zero(dev, UINT64_MAX - 10, 100, 0, on_done, &d), -ERANGE);
	cr_assert_eq(blk_read(dev, 0, 0, buf, on_done, &d), -EINVAL);
	cr_assert_eq(blk_write(dev, 0, BLK_IO_MAX + 1, buf, 0, on_done, &d), -EINVAL);
	cr_assert_not(d.done, "no callback after an error return");
	cr_assert_eq(bread(VOL_SIZE - 512, 512, buf), 0);
}

Test(block, snapshot_is_read_only)
{
	uint8_t buf[1000];
	struct blk_dev *snap;
	struct done d = { 0 };

	pattern(buf, sizeof(buf), 5);
	cr_assert_eq(bwrite(777, sizeof(buf), buf), 0);
	cr_assert_eq(engine_snap_create(eng, "disk0", "s1"), 0);
	cr_assert_eq(blk_open(eng, NULL, "disk0@s1", &snap), 0);
	cr_assert(blk_readonly(snap));
	cr_assert_eq(blk_write(snap, 0, 512, buf, 0, on_done, &d), -EPERM);
	cr_assert_eq(blk_zero(snap, 0, 512, 0, on_done, &d), -EPERM);
	cr_assert_not(d.done);
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(wait_done(blk_read(snap, 777, sizeof(buf), buf, on_done, &d), &d), 0);
	{
		uint8_t want[1000];

		pattern(want, sizeof(want), 5);
		cr_assert_eq(memcmp(buf, want, sizeof(want)), 0);
	}
	blk_close(snap);
}

Test(block, spec_parse)
{
	char vol[ENGINE_VOLUME_NAME_MAX + 1], snap[ENGINE_VOLUME_NAME_MAX + 1];
	char longname[ENGINE_VOLUME_NAME_MAX + 3];

	cr_assert_eq(blk_spec_parse("vm0", vol, snap), 0);
	cr_assert_str_eq(vol, "vm0");
	cr_assert_str_eq(snap, "");
	cr_assert_eq(blk_spec_parse("vm0@s1", vol, snap), 0);
	cr_assert_str_eq(vol, "vm0");
	cr_assert_str_eq(snap, "s1");
	cr_assert_eq(blk_spec_parse("", vol, snap), -EINVAL);
	cr_assert_eq(blk_spec_parse("@s1", vol, snap), -EINVAL);
	cr_assert_eq(blk_spec_parse("vm0@", vol, snap), -EINVAL);
	cr_assert_eq(blk_spec_parse("vm0@a@b", vol, snap), -EINVAL);
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	cr_assert_eq(blk_spec_parse(longname, vol, snap), -EINVAL);
}

/* A store too small for the volume: the engine's -ENOSPC reaches the caller through
 * the callback of an accepted write, once, and never as a success. */
Test(engine_errors, store_full_is_passed_on)
{
	uint8_t *buf;
	int res = 0;

	if (open_engine(6u << 20) < 0)
		cr_skip_test("%s does not support O_DIRECT", QUILL_TEST_DIR);
	cr_assert_eq(blk_open(eng, NULL, "disk0", &dev), 0);
	cr_assert_eq(posix_memalign((void **)&buf, BS, BLK_SPLIT_BYTES + 512), 0);
	pattern(buf, BLK_SPLIT_BYTES + 512, 9);
	for (uint64_t off = 512; off + BLK_SPLIT_BYTES + 512 <= VOL_SIZE && res == 0;
	     off += BLK_SPLIT_BYTES)
		res = bwrite(off, BLK_SPLIT_BYTES + 512, buf);
	cr_assert_eq(res, -ENOSPC, "got %d", res);
	free(buf);
	teardown();
}

/* ---- attach rules: one writer, any number of readers, a named holder ---- */

Test(block, one_writer_and_its_refusal_names_the_holder)
{
	struct engine_volume_info info;
	struct blk_dev *again = NULL;
	char why[256];

	cr_assert_eq(blk_open(eng, NULL, "disk0", &again), -EBUSY);
	blk_busy_reason(eng, "disk0", why, sizeof(why));
	cr_assert_str_eq(why, "volume 'disk0' is attached", "a holder that named nobody");
	blk_set_holder(dev, "NBD by 127.0.0.1:53122");
	blk_busy_reason(eng, "disk0", why, sizeof(why));
	cr_assert_str_eq(why, "volume 'disk0' is attached over NBD by 127.0.0.1:53122");
	cr_assert(blk_open_refusal(eng, NULL, "disk0", -EBUSY, why, sizeof(why)));
	cr_assert_str_eq(why, "volume 'disk0' is attached over NBD by 127.0.0.1:53122",
			 "what a front end says for its open's -EBUSY");
	cr_assert_eq(engine_volume_info(eng, "disk0", &info), 0);
	cr_assert(info.open);
	cr_assert_str_eq(info.holder, "NBD by 127.0.0.1:53122");
	blk_close(dev);
	dev = NULL;
	cr_assert_eq(engine_volume_info(eng, "disk0", &info), 0);
	cr_assert_not(info.open);
	cr_assert_str_eq(info.holder, "", "the holder goes with the handle");
	cr_assert_eq(blk_open(eng, NULL, "disk0", &dev), 0, "free again once closed");
	cr_assert_eq(engine_volume_info(eng, "disk0", &info), 0);
	cr_assert_str_eq(info.holder, "", "a new opener starts unnamed");
}

Test(block, snapshots_open_many_times_and_never_block_the_writer)
{
	struct blk_dev *a = NULL, *b = NULL;
	uint8_t buf[512];
	struct blk_probe_info pi = { 0 };
	struct done d = { 0 };

	pattern(buf, sizeof(buf), 3);
	cr_assert_eq(bwrite(0, sizeof(buf), buf), 0);
	cr_assert_eq(engine_snap_create(eng, "disk0", "s1"), 0);
	cr_assert_eq(blk_open(eng, NULL, "disk0@s1", &a), 0);
	cr_assert_eq(blk_open(eng, NULL, "disk0@s1", &b), 0, "a second reader (NBD and vhost)");
	blk_set_holder(a, "ignored for snapshots");
	blk_close(a);
	/* the other reader still reads; the writer was never refused */
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(wait_done(blk_read(b, 0, sizeof(buf), buf, on_done, &d), &d), 0);
	{
		uint8_t want[512];

		pattern(want, sizeof(want), 3);
		cr_assert_eq(memcmp(buf, want, sizeof(want)), 0);
	}
	cr_assert_eq(engine_snap_delete(eng, "disk0", "s1"), -EBUSY, "still read");
	blk_close(b);
	cr_assert_eq(blk_probe(eng, "disk0@s1", &pi), 0);
	cr_assert(pi.readonly);
	cr_assert_eq(pi.size, VOL_SIZE);
	cr_assert_eq(pi.sector_size, 512, "a snapshot has its volume's sector");
	cr_assert_eq(blk_probe(eng, "disk0", &pi), 0, "probing does not open");
	cr_assert_not(pi.readonly);
	cr_assert_eq(pi.sector_size, 512);
	cr_assert_eq(blk_probe(eng, "disk0@nope", &pi), -ENOENT);
	cr_assert_eq(blk_probe(eng, "nope", &pi), -ENOENT);
	cr_assert_eq(blk_probe(eng, "a@b@c", &pi), -ENOENT);
	cr_assert_eq(engine_snap_delete(eng, "disk0", "s1"), 0, "the last reader closed");
}

struct listed {
	char specs[8][VOLSPEC_MAX + 1];
	unsigned n, stop_at;
};

static int note_spec(const char *spec, void *arg)
{
	struct listed *l = arg;

	cr_assert_lt(l->n, 8u);
	snprintf(l->specs[l->n], sizeof(l->specs[0]), "%s", spec);
	return ++l->n == l->stop_at ? 7 : 0;
}

/* What NBD_OPT_LIST offers: each volume, then its snapshots, in the engine's order. */
Test(block, list_names_every_volume_then_its_snapshots)
{
	static const char *want[] = { "disk0", "disk0@a", "disk0@b", "disk1" };
	struct listed l = { 0 };

	cr_assert_eq(engine_snap_create(eng, "disk0", "a"), 0);
	cr_assert_eq(engine_snap_create(eng, "disk0", "b"), 0);
	cr_assert_eq(engine_volume_create(eng, "disk1", VOL_SIZE), 0);
	cr_assert_eq(blk_list(eng, note_spec, &l), 0);
	cr_assert_eq(l.n, 4u);
	for (unsigned i = 0; i < 4; i++)
		cr_assert_str_eq(l.specs[i], want[i]);
	l = (struct listed){ .stop_at = 2 };
	cr_assert_eq(blk_list(eng, note_spec, &l), 7, "fn's value stops the listing");
	cr_assert_eq(l.n, 2u);
}

/* The engine's client load (the catch-up's adaptive rate reads it) counts requests
 * only once watched: before, a request reads no clock and counts nothing. */
Test(block, client_load_counts_requests_once_watched)
{
	struct engine_client_load l;
	uint8_t buf[BS];

	pattern(buf, sizeof(buf), 3);
	cr_assert_eq(bwrite(0, BS, buf), 0);
	engine_get_client_load(eng, &l);
	cr_assert_eq(l.ops, 0);
	cr_assert_eq(l.busy_us, 0);
	engine_client_load_watch(eng);
	cr_assert_eq(bwrite(BS, BS, buf), 0);
	cr_assert_eq(bread(0, BS, buf), 0);
	engine_get_client_load(eng, &l);
	cr_assert_eq(l.ops, 2);
}
