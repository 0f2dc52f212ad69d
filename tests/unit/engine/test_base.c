/* tests/unit/engine/test_base.c — a family whose root reads through a remote base
 * (engine/base.c): the ranges none of its layers maps go to the registered transport;
 * its own writes, trims and zeroes hide the base; a base read that fails fails the
 * client's read and leaves nothing behind.
 *
 * The transport is a test double: it queues each read and answers when the test says
 * (as a peer's reply arrives later on the loop), with the base's bytes (tag BASE_TAG)
 * or an error.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine_fixture.h"

TestSuite(base, .init = setup, .fini = teardown);

#define BASE_TAG 77u
#define BASE_UID 0x5151u
#define BASE_LAYER 42u
#define BASE_BLOCKS 512u /* the clone is VOL_BLOCKS: past this it reads zeros */
#define FLAT_BLOCKS 96u /* the flatten test's base */
#define MAXQ 16

struct pending {
	uint64_t lba;
	uint32_t n;
	void *buf;
	engine_cb cb;
	void *arg;
};

static struct {
	struct pending q[MAXQ];
	unsigned nq, reads;
	uint64_t uid, layer;
} tr;

static int fake_read(void *ctx, const struct engine_base *base, uint64_t lba, uint32_t n,
		     void *buf, engine_cb cb, void *arg)
{
	(void)ctx;
	cr_assert_lt(tr.nq, MAXQ);
	cr_assert_leq(lba + n, base->blocks, "a read past the base's end was asked for");
	tr.uid = base->uid;
	tr.layer = base->layer;
	tr.reads++;
	tr.q[tr.nq++] = (struct pending){ lba, n, buf, cb, arg };
	return 0;
}

static const struct engine_base_ops fake_ops = { .read = fake_read };

/* The replies of every queued read: the base's bytes, or err. */
static void answer(int err)
{
	unsigned n = tr.nq;

	tr.nq = 0;
	for (unsigned i = 0; i < n; i++) {
		if (err == 0)
			fill(tr.q[i].buf, tr.q[i].lba, tr.q[i].n, BASE_TAG);
		else
			memset(tr.q[i].buf, 0xab, (size_t)tr.q[i].n * BLK); /* half a reply */
		tr.q[i].cb(tr.q[i].arg, err);
	}
}

static struct engine_volume *clone_with_base(void)
{
	struct engine_volume *vol;
	struct engine_base base = { .uid = BASE_UID, .layer = BASE_LAYER, .blocks = BASE_BLOCKS };
	uint64_t uid;

	open_engine();
	vol = create_and_open("c", VOL_SIZE);
	memset(&tr, 0, sizeof(tr));
	engine_base_ops_set(eng, &fake_ops, NULL);
	cr_assert_eq(engine_volume_family(eng, "c", &uid), 0);
	cr_assert_eq(engine_family_base_set(eng, uid, &base), 0);
	return vol;
}

/* Reads n blocks at lba, answering the base's reads with err; returns the read's result
 * and leaves the bytes in buf. */
static int read_answered(struct engine_volume *vol, uint64_t lba, uint32_t n, void *buf,
			 int err)
{
	struct done d = { 0 };
	int r = engine_read(vol, lba, n, buf, on_done, &d);

	if (r < 0)
		return r;
	answer(err);
	return finish(0, &d);
}

/* Block i of buf (read at lba) holds tag's bytes (0: zeros). */
static void expect_block(const uint8_t *buf, uint64_t lba, uint32_t i, uint32_t tag)
{
	uint8_t want[BLK];

	memset(want, 0, sizeof(want));
	if (tag)
		fill(want, lba + i, 1, tag);
	cr_assert_eq(memcmp(buf + (size_t)i * BLK, want, BLK), 0, "lba %llu: not tag %u",
		     (unsigned long long)(lba + i), tag);
}

Test(base, unwritten_ranges_read_the_base_and_stop_at_its_end)
{
	struct engine_volume *vol = clone_with_base();
	uint32_t n = 64;
	uint8_t *buf = malloc((size_t)n * BLK + 1);

	cr_assert_eq(read_answered(vol, BASE_BLOCKS - 32, n, buf + 1, 0), 0);
	cr_assert_eq(tr.reads, 1, "one run, one read of the base (%u)", tr.reads);
	cr_assert_eq(tr.uid, BASE_UID);
	cr_assert_eq(tr.layer, BASE_LAYER);
	for (uint32_t i = 0; i < n; i++)
		expect_block(buf + 1, BASE_BLOCKS - 32, i, i < 32 ? BASE_TAG : 0);
	cr_assert_eq(engine_block_state(vol, 3), ENGINE_BLOCK_DATA, "the base may hold data");
	cr_assert_eq(engine_block_state(vol, BASE_BLOCKS), ENGINE_BLOCK_HOLE);
	/* the block layer's read-modify-write reads a block only if it is mapped */
	cr_assert(engine_block_mapped(vol, 3), "a base range is not read by a partial write");
	cr_assert_not(engine_block_mapped(vol, BASE_BLOCKS));
	free(buf);
	engine_volume_close(vol);
}

Test(base, own_writes_hide_the_base_around_them)
{
	struct engine_volume *vol = clone_with_base();
	uint8_t *buf = malloc(8 * BLK);

	write_tagged(vol, 2, 2, 5);
	cr_assert_eq(read_answered(vol, 0, 8, buf, 0), 0);
	cr_assert_eq(tr.reads, 2, "blocks 0-1 and 4-7: two runs (%u)", tr.reads);
	for (uint32_t i = 0; i < 8; i++)
		expect_block(buf, 0, i, i == 2 || i == 3 ? 5 : BASE_TAG);
	/* the whole range written: the base is not asked at all */
	write_tagged(vol, 0, 8, 6);
	tr.reads = 0;
	expect_tagged(vol, 0, 8, 6);
	cr_assert_eq(tr.reads, 0);
	free(buf);
	engine_volume_close(vol);
}

/* A trim or write-zeroes of the clone reads zeros, also after the map is rebuilt from
 * the log before the base is set again (the trim is logged as allocated zeros). */
Test(base, trims_and_zeroes_hide_the_base_after_a_restart_too)
{
	struct engine_volume *vol = clone_with_base();
	struct engine_base base = { .uid = BASE_UID, .layer = BASE_LAYER, .blocks = BASE_BLOCKS };
	uint8_t *buf = malloc(16 * BLK);
	uint64_t uid;

	cr_assert_eq(vtrim(vol, 4, 4), 0);
	cr_assert_eq(vzero(vol, 10, 2), 0);
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(read_answered(vol, 0, 16, buf, 0), 0);
	for (uint32_t i = 0; i < 16; i++)
		expect_block(buf, 0, i, (i >= 4 && i < 8) || i == 10 || i == 11 ? 0 : BASE_TAG);
	engine_volume_close(vol);

	rebuild_engine(); /* the map from the log alone: the trim's entries replayed */
	engine_base_ops_set(eng, &fake_ops, NULL);
	cr_assert_eq(engine_volume_family(eng, "c", &uid), 0);
	cr_assert_eq(engine_family_base_set(eng, uid, &base), 0);
	vol = open_vol("c");
	memset(buf, 0xee, 16 * BLK);
	cr_assert_eq(read_answered(vol, 0, 16, buf, 0), 0);
	for (uint32_t i = 0; i < 16; i++)
		expect_block(buf, 0, i, (i >= 4 && i < 8) || i == 10 || i == 11 ? 0 : BASE_TAG);
	free(buf);
	engine_volume_close(vol);
}

Test(base, a_failed_base_read_fails_the_read_and_caches_nothing)
{
	struct engine_volume *vol = clone_with_base();
	uint8_t *buf = malloc(8 * BLK);

	write_tagged(vol, 0, 1, 5);
	cr_assert_eq(read_answered(vol, 0, 8, buf, -EIO), -EIO);
	cr_assert_eq(read_answered(vol, 0, 8, buf, 0), 0, "the next read asks again");
	cr_assert_eq(tr.reads, 2);
	for (uint32_t i = 0; i < 8; i++)
		expect_block(buf, 0, i, i == 0 ? 5 : BASE_TAG);
	free(buf);
	engine_volume_close(vol);
}

Test(base, without_a_transport_or_once_cleared)
{
	struct engine_volume *vol = clone_with_base();
	uint8_t *buf = malloc(2 * BLK);
	uint64_t uid;

	engine_base_ops_set(eng, NULL, NULL);
	cr_assert_eq(vread(vol, 0, 2, buf), -ENOTCONN);
	cr_assert_eq(engine_volume_family(eng, "c", &uid), 0);
	cr_assert_eq(engine_family_base_set(eng, uid, NULL), 0);
	cr_assert_eq(engine_family_base_get(eng, uid, NULL), -ENOENT);
	expect_tagged(vol, 0, 2, 0);
	cr_assert_eq(engine_family_base_set(eng, uid, &(struct engine_base){ .uid = uid }),
		     -EINVAL, "a family cannot be its own base");
	free(buf);
	engine_volume_close(vol);
}

/* Runs the engine, answering the base's reads, until the flatten of "c" ends. */
static int flatten_answering(void)
{
	struct engine_flatten_status st;

	for (;;) {
		cr_assert_eq(engine_flatten_status(eng, "c", &st), 0);
		if (!st.running)
			return st.result;
		answer(0);
		cr_assert_geq(engine_poll(eng, 1), 0);
	}
}

/* Flatten copies every base range the clone does not map into its own log, keeps its
 * writes and trims, then reads through the base no more (and after a restart, with no
 * base set, reads the same). */
Test(base, flatten_copies_the_base_and_drops_it)
{
	struct engine_volume *vol = clone_with_base();
	/* a small base: the fixture's store holds 640 blocks */
	struct engine_base base = { .uid = BASE_UID, .layer = BASE_LAYER, .blocks = FLAT_BLOCKS };
	uint8_t *buf = malloc((size_t)FLAT_BLOCKS * BLK);
	uint64_t uid;

	cr_assert_eq(engine_volume_family(eng, "c", &uid), 0);
	cr_assert_eq(engine_family_base_set(eng, uid, &base), 0);
	write_tagged(vol, 2, 2, 5);
	cr_assert_eq(vtrim(vol, 8, 4), 0);
	cr_assert_eq(engine_flatten_start(eng, "c"), 0);
	cr_assert_eq(flatten_answering(), 0);
	/* the base is the caller's to clear, once the cluster's record forgets it */
	cr_assert_eq(engine_family_base_get(eng, uid, NULL), 0);
	tr.reads = 0;
	cr_assert_eq(vread(vol, 0, FLAT_BLOCKS, buf), 0);
	cr_assert_eq(tr.reads, 0, "a flattened clone asked its base");
	cr_assert_eq(engine_family_base_set(eng, uid, NULL), 0);
	for (int pass = 0; pass < 2; pass++) {
		cr_assert_eq(vread(vol, 0, FLAT_BLOCKS, buf), 0);
		cr_assert_eq(tr.reads, 0, "a flattened clone asked its base");
		for (uint32_t i = 0; i < FLAT_BLOCKS; i++)
			expect_block(buf, 0, i, i == 2 || i == 3 ? 5 : i >= 8 && i < 12 ? 0 : BASE_TAG);
		expect_tagged(vol, FLAT_BLOCKS, VOL_BLOCKS - FLAT_BLOCKS, 0);
		engine_volume_close(vol);
		reopen_engine(); /* the copies are in the checkpoint (flatten waited for one) */
		vol = open_vol("c");
	}
	free(buf);
	engine_volume_close(vol);
}
