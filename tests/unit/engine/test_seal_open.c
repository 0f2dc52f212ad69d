/* tests/unit/engine/test_seal_open.c — engine_family_seal_open (engine/io.c): an owner
 * whose holder failed ends the family's open segment at its write pointer, and the
 * next write goes to a fresh segment (docs/replication.md, "Seal and reopen"). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "engine_fixture.h"

static void fini(void);
TestSuite(seal_open, .init = setup, .fini = fini);

static const struct slot *open_slot_of(const struct engine_volume *vol)
{
	cr_assert_geq(vol->open_slot, 0, "the volume has no open segment");
	return &eng->slots[vol->open_slot];
}

Test(seal_open, the_next_write_goes_to_a_fresh_segment)
{
	struct engine_volume *vol;
	const struct slot *first;
	int64_t first_slot;
	uint32_t sno, used;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 2, 1);
	first_slot = vol->open_slot;
	first = open_slot_of(vol);
	sno = first->sno;
	used = first->used;
	cr_assert_lt(used, SEG_BLOCKS, "the segment is full already: the case proves nothing");

	cr_assert_eq(engine_family_seal_open(eng, vol->rec.uid, sno), 0);
	cr_assert_eq(first->state, SLOT_SEALED);
	cr_assert_eq(vol->open_slot, -1);
	cr_assert_eq(engine_family_seal_open(eng, vol->rec.uid, sno), -ENOENT,
		     "a sealed segment is not sealed again");

	write_tagged(vol, 2, 1, 2);
	cr_assert_neq(vol->open_slot, first_slot);
	cr_assert_eq(open_slot_of(vol)->sno, sno + 1, "the family's next number");
	cr_assert_eq(first->used, used, "a write after the seal went to the sealed segment");
	expect_tagged(vol, 0, 2, 1);
	expect_tagged(vol, 2, 1, 2);
	engine_volume_close(vol);
}

Test(seal_open, a_batch_not_yet_written_goes_out_in_the_sealed_segment)
{
	struct engine_volume *vol;
	uint8_t *buf = malloc(BLK);
	struct done d = { 0 };
	const struct slot *first;
	uint32_t used;

	cr_assert_not_null(buf);
	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 1, 1);
	fill(buf, 5, 1, 7);
	/* not waited for: its batch is forming in the open segment when it is sealed */
	cr_assert_eq(engine_write(vol, 5, 1, buf, 0, on_done, &d), 0);
	first = open_slot_of(vol);
	used = first->used;
	cr_assert_eq(engine_family_seal_open(eng, vol->rec.uid, first->sno), 0);
	cr_assert_eq(finish(0, &d), 0);
	cr_assert_eq(first->used, used, "the sealed length moved after the seal");
	write_tagged(vol, 6, 1, 8);
	expect_tagged(vol, 5, 1, 7);
	engine_volume_close(vol);
	free(buf);

	/* replay reads a log whose segment ended before it was full */
	reopen_engine();
	vol = open_vol("v");
	expect_tagged(vol, 0, 1, 1);
	expect_tagged(vol, 5, 1, 7);
	expect_tagged(vol, 6, 1, 8);
	engine_volume_close(vol);
}

Test(seal_open, another_family_or_segment_is_not_found)
{
	struct engine_volume *vol;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 1, 1);
	cr_assert_eq(engine_family_seal_open(eng, vol->rec.uid + 1, open_slot_of(vol)->sno),
		     -ENOENT);
	cr_assert_eq(engine_family_seal_open(eng, vol->rec.uid, open_slot_of(vol)->sno + 1),
		     -ENOENT);
	cr_assert_eq(open_slot_of(vol)->state, SLOT_OPEN);
	engine_volume_close(vol);
}

/* ---- sealed below the copies its writes need ---- */

/* A mirror that holds every append until the test lets it go: an owner whose holders
 * all failed, whose appends wait for catch-up's copies (replication/replica.c). */
#define HELD_MAX 16
static struct held {
	seg_cb cb;
	void *arg;
	uint32_t end; /* block + nblocks */
} held[HELD_MAX];
static unsigned nheld, nreleased;
static uint32_t sealed_len;
static uint64_t held_uid;

static bool hold_wants(void *ctx, uint64_t uid)
{
	(void)ctx;
	return uid == held_uid;
}

static int hold_append(void *ctx, uint32_t slot, uint32_t block, const struct iovec *iov,
		       int iovcnt, uint32_t nblocks, bool fua, seg_cb cb, void *arg)
{
	(void)ctx, (void)slot, (void)iov, (void)iovcnt, (void)fua;
	cr_assert_lt(nheld, HELD_MAX);
	held[nheld++] = (struct held){ cb, arg, block + nblocks };
	return 0;
}

static void hold_sealed(void *ctx, uint32_t slot, uint32_t length)
{
	(void)ctx, (void)slot;
	sealed_len = length;
}

static void hold_deleted(void *ctx, uint32_t slot, uint64_t uid, uint32_t sno)
{
	(void)ctx, (void)slot, (void)uid, (void)sno;
}

static const struct seg_mirror_ops hold_ops = {
	.wants = hold_wants, .opened = mirror_nop_opened, .append = hold_append,
	.flush = mirror_local_flush, .sealed = hold_sealed, .deleted = hold_deleted,
};

static void release_held(void)
{
	while (nreleased < nheld) {
		struct held *h = &held[nreleased++];

		h->cb(h->arg, 0);
	}
}

/* A test that failed with appends held: they go, so that the engine can close. */
static void fini(void)
{
	if (eng)
		seg_mirror_set(eng, NULL, NULL);
	release_held();
	teardown();
}

/* Polls until the segment's local writes are on the store. */
static void drain_local_writes(const struct slot *s)
{
	for (int i = 0; i < 1000 && s->local_writes; i++)
		engine_poll(eng, 10);
	cr_assert_eq(s->local_writes, 0);
}

/* Four batches in flight wait for copies; the fifth, closed by the seal, is held by
 * the in-flight bound behind them, so the sealed segment is never whole here and
 * catch-up (which copies whole segments) never makes those copies: a hang. Told that
 * the segment only waits for copies, the engine submits it past the bound. */
Test(seal_open, the_last_batches_of_a_segment_waiting_for_copies_go_past_the_bound)
{
	enum { N = ONDISK_MAX_INFLIGHT_BATCHES + 2 };
	struct engine_volume *vol;
	uint8_t *buf = malloc((size_t)N * BLK);
	struct done d[N] = { 0 };
	const struct slot *s;
	uint32_t sno;

	cr_assert_not_null(buf);
	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	held_uid = vol->rec.uid;
	nheld = nreleased = 0;
	seg_mirror_set(eng, &hold_ops, NULL);
	for (unsigned i = 0; i < N; i++) { /* a batch each while the bound lets them go */
		fill(buf + (size_t)i * BLK, 8 * i, 1, 20 + i);
		cr_assert_eq(engine_write(vol, 8 * i, 1, buf + (size_t)i * BLK, 0, on_done, &d[i]),
			     0);
		engine_poll(eng, 0);
	}
	s = &eng->slots[vol->open_slot];
	sno = s->sno;
	cr_assert_eq(nheld, ONDISK_MAX_INFLIGHT_BATCHES, "the bound held nothing back");
	cr_assert_eq(engine_family_seal_open(eng, vol->rec.uid, sno), 0);
	drain_local_writes(s);
	for (int i = 0; i < 20; i++)
		engine_poll(eng, 1);
	cr_assert_eq(nheld, ONDISK_MAX_INFLIGHT_BATCHES, "a batch went past the bound untold");
	cr_assert_lt(held[nheld - 1].end, sealed_len, "nothing of the segment was held back");

	cr_assert_eq(engine_family_waits_copies(eng, vol->rec.uid, sno, true), 0);
	for (int i = 0; i < 20 && held[nheld - 1].end < sealed_len; i++) {
		drain_local_writes(s);
		engine_poll(eng, 1);
	}
	cr_assert_eq(held[nheld - 1].end, sealed_len, "the sealed segment is not whole here");
	cr_assert_eq(engine_family_waits_copies(eng, vol->rec.uid, sno + 1, true), -ENOENT);

	release_held(); /* catch-up made the copies */
	for (unsigned i = 0; i < N; i++)
		cr_assert_eq(finish(0, &d[i]), 0);
	seg_mirror_set(eng, NULL, NULL);
	for (unsigned i = 0; i < N; i++)
		expect_tagged(vol, 8 * i, 1, 20 + i);
	engine_volume_close(vol);
	free(buf);
}
