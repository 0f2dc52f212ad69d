/* tests/unit/engine/test_segment_mirror.c — the segment layer's mirror hooks
 * (engine/segment.h, seg_mirror_set): which segments are mirrored, what each hook is
 * told, and that the engine's append and flush complete only when the local I/O AND
 * the mirror's did, with the first error.
 *
 * The mirror here is a fake that records every call and completes appends and flushes
 * only when the test says so. Segments belong to a layer of the test's own, as in
 * test_segment.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/loop.h"
#include "engine/engine_internal.h"
#include "engine/segment.h"

#include "engine_fixture.h"

static void fini(void);
TestSuite(segment_mirror, .init = setup, .fini = fini);

#define TEST_LAYER 4243u
#define MIRRORED 0x6d6972726f72ull
#define LOCAL_ONLY 0x6c6f63616cull

struct fake {
	unsigned opened, sealed, deleted, appends, flushes;
	uint32_t slot, sno, seal_len, deleted_slot, deleted_sno, block, nblocks;
	uint64_t uid, deleted_uid;
	int refuse;         /* append/flush return this (<0) instead of starting */
	unsigned replies;   /* replies_awaited's answer */
	seg_cb cb;          /* the one call in flight */
	void *arg;
};

static struct fake fk;
static struct engine_volume layer;

static bool fake_wants(void *ctx, uint64_t uid)
{
	(void)ctx;
	return uid == MIRRORED;
}

static void fake_opened(void *ctx, uint32_t slot, uint64_t uid, uint32_t sno, uint64_t epoch)
{
	(void)ctx;
	(void)epoch;
	fk.opened++;
	fk.slot = slot;
	fk.uid = uid;
	fk.sno = sno;
}

static int fake_append(void *ctx, uint32_t slot, uint32_t block, const struct iovec *iov,
		       int iovcnt, uint32_t nblocks, bool fua, seg_cb cb, void *arg)
{
	(void)ctx;
	(void)iov;
	(void)iovcnt;
	(void)fua;
	cr_assert_eq(slot, fk.slot);
	if (fk.refuse)
		return fk.refuse;
	fk.appends++;
	fk.block = block;
	fk.nblocks = nblocks;
	fk.cb = cb;
	fk.arg = arg;
	return 0;
}

static int fake_flush(void *ctx, seg_cb cb, void *arg)
{
	(void)ctx;
	if (fk.refuse)
		return fk.refuse;
	fk.flushes++;
	fk.cb = cb;
	fk.arg = arg;
	return 0;
}

static void fake_sealed(void *ctx, uint32_t slot, uint32_t length)
{
	(void)ctx;
	cr_assert_eq(slot, fk.slot);
	fk.sealed++;
	fk.seal_len = length;
}

static void fake_deleted(void *ctx, uint32_t slot, uint64_t uid, uint32_t sno)
{
	(void)ctx;
	fk.deleted++;
	fk.deleted_slot = slot;
	fk.deleted_uid = uid;
	fk.deleted_sno = sno;
}

static unsigned fake_replies_awaited(void *ctx)
{
	(void)ctx;
	return fk.replies;
}

static const struct seg_mirror_ops fake_ops = {
	.wants = fake_wants, .opened = fake_opened, .append = fake_append,
	.flush = fake_flush, .sealed = fake_sealed, .deleted = fake_deleted,
	.replies_awaited = fake_replies_awaited,
};

/* The engine closes without the fake (its close flushes): what the fake holds is done. */
static void fini(void)
{
	if (eng)
		seg_mirror_set(eng, NULL, NULL);
	if (fk.cb) {
		seg_cb cb = fk.cb;

		fk.cb = NULL;
		cb(fk.arg, 0);
	}
	teardown();
}

/* A segment of family uid, opened before (mirror_first false: as after a restart or
 * an adopt, the mirror is set later) or after the mirror was set. */
static uint32_t open_segment(uint64_t uid, bool mirror_first)
{
	open_engine();
	memset(&fk, 0, sizeof(fk));
	if (mirror_first)
		seg_mirror_set(eng, &fake_ops, NULL);
	memset(&layer, 0, sizeof(layer));
	layer.eng = eng;
	layer.rec.volume_id = TEST_LAYER;
	layer.rec.uid = uid;
	layer.open_slot = -1;
	cr_assert_eq(seg_open(eng, &layer, SLOT_FOR_WRITE), 0);
	if (!mirror_first)
		seg_mirror_set(eng, &fake_ops, NULL);
	return (uint32_t)layer.open_slot;
}

static uint32_t open_family(uint64_t uid)
{
	return open_segment(uid, true);
}

/* Runs the engine's completions until the local I/O in flight is done. */
static void drain_local(void)
{
	while (seg_inflight(eng))
		seg_poll(eng, 100);
}

/* The mirror's pending call completes with res. */
static void mirror_completes(int res)
{
	seg_cb cb = fk.cb;

	cr_assert_not_null(cb);
	fk.cb = NULL;
	cb(fk.arg, res);
}

Test(segment_mirror, a_family_the_mirror_does_not_want_runs_no_hook)
{
	uint32_t slot = open_family(LOCAL_ONLY);
	uint8_t *buf = seg_buf_alloc(2 * BLK);
	struct done d = { 0 };

	cr_assert_eq(fk.opened, 0);
	cr_assert_not(eng->slots[slot].mirrored);
	cr_assert_eq(finish(seg_append(eng, slot, 0, buf, 2, 5, on_done, &d), &d), 2 * BLK);
	seg_seal(eng, slot);
	cr_assert_eq(fk.appends + fk.sealed, 0);
	seg_buf_free(buf);
}

Test(segment_mirror, opened_names_the_segment)
{
	uint32_t slot = open_family(MIRRORED);

	cr_assert_eq(fk.opened, 1);
	cr_assert_eq(fk.slot, slot);
	cr_assert_eq(fk.uid, MIRRORED);
	cr_assert_eq(fk.sno, eng->slots[slot].sno);
	cr_assert(eng->slots[slot].mirrored);
}

Test(segment_mirror, append_completes_only_when_the_mirror_did)
{
	uint32_t slot = open_family(MIRRORED);
	uint8_t *buf = seg_buf_alloc(3 * BLK);
	struct done d = { 0 };

	cr_assert_eq(seg_append(eng, slot, 0, buf, 3, 5, on_done, &d), 0);
	cr_assert_eq(fk.appends, 1);
	cr_assert_eq(fk.block, 0);
	cr_assert_eq(fk.nblocks, 3);
	drain_local();
	cr_assert_not(d.done, "the local write alone completed the engine's append");
	mirror_completes(0);
	cr_assert(d.done);
	cr_assert_eq(d.res, 3 * BLK, "the local result goes up: %d", d.res);
	seg_buf_free(buf);
}

Test(segment_mirror, the_mirrors_error_fails_the_append)
{
	uint32_t slot = open_family(MIRRORED);
	uint8_t *buf = seg_buf_alloc(2 * BLK);
	struct done d = { 0 };

	cr_assert_eq(seg_append(eng, slot, 0, buf, 2, 5, on_done, &d), 0);
	mirror_completes(-EIO); /* before the local write: the error still wins */
	cr_assert_not(d.done);
	drain_local();
	cr_assert(d.done);
	cr_assert_eq(d.res, -EIO);
	seg_buf_free(buf);
}

Test(segment_mirror, a_mirror_that_refuses_fails_the_append_once)
{
	uint32_t slot = open_family(MIRRORED);
	uint8_t *buf = seg_buf_alloc(2 * BLK);
	struct done d = { 0 };

	fk.refuse = -ENOMEM;
	/* the local write started: the call returns 0 and calls back once, with the error */
	cr_assert_eq(seg_append(eng, slot, 0, buf, 2, 5, on_done, &d), 0);
	drain_local();
	cr_assert(d.done);
	cr_assert_eq(d.res, -ENOMEM);
	seg_buf_free(buf);
}

/* What engine_wait_fd asks the loop's waiter to sleep for right after one mirrored
 * append whose mirror awaits `replies`, with `clients` client requests in flight (its
 * local write not submitted yet: the call submits it, and may reap it, so each test
 * asks once before the write came); then the append is finished, and what it asks
 * once the local write came is checked too. */
static void lone_append_asks(unsigned clients, unsigned replies, unsigned bounded)
{
	uint32_t slot = open_family(MIRRORED);
	uint8_t *buf = seg_buf_alloc(2 * BLK);
	struct done d = { 0 };
	struct loop_wait w;
	int epfd = epoll_create1(EPOLL_CLOEXEC);

	cr_assert_geq(epfd, 0);
	w = (struct loop_wait){ .epfd = epfd };
	eng->client_inflight = eng->client_burst = clients; /* as client_start leaves them */
	cr_assert_eq(seg_append(eng, slot, 0, buf, 2, 5, on_done, &d), 0);
	fk.replies = replies;
	cr_assert_geq(engine_wait_fd(eng, &w, 0), 0);
	cr_assert_eq(w.min_events, 2);
	cr_assert_eq(w.min_events_bounded, bounded, "%u replies awaited: %u asked", replies,
		     w.min_events_bounded);
	cr_assert(!bounded || w.min_wait_us > 0, "a count that may not all come needs a bound");
	cr_assert_eq(w.spin_us, 0, "the local half of a mirrored append is not polled for");
	drain_local();
	cr_assert_geq(engine_wait_fd(eng, &w, 0), 0);
	cr_assert_eq(w.min_events, 1);
	cr_assert_eq(w.min_events_bounded, 0, "no local write in flight: the first reply");
	fk.replies = 0;
	eng->client_inflight = eng->client_burst = 0;
	mirror_completes(0);
	cr_assert(d.done);
	seg_buf_free(buf);
	close(epfd);
}

/* With one mirrored append in flight: its local write and every reply the mirror
 * awaits, bounded by a min wait ... */
Test(segment_mirror, a_lone_append_sleeps_for_its_write_and_every_reply)
{
	lone_append_asks(1, 2, 3);
}

/* ... and the write alone when the replies all came first (the mirror's half completes
 * on the loop's next turn: min_events' two would sleep on for one not coming). */
Test(segment_mirror, a_lone_append_whose_replies_came_sleeps_for_its_write_alone)
{
	lone_append_asks(1, 0, 1);
}

/* ... but not with more client requests in flight than the one: the append is then a
 * batch and the next one's requests are arriving, which sleeping for every reply held
 * back a round trip (replicated QD32 writes at 0.5-0.6x, session 19). */
Test(segment_mirror, an_append_under_a_queue_depth_sleeps_for_two_unbounded)
{
	lone_append_asks(2, 2, 0);
}

/* The client side of the loop's polls (engine_opts.poll_us): a lone request, or a
 * client just answered, at QD1; not a queue depth (now, or in the last stretch: its
 * last request), an old answer, or poll_us 0. */
Test(segment_mirror, the_loop_polls_at_qd1_only)
{
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	struct loop_wait w = { .epfd = epfd };
	struct {
		uint32_t inflight, burst, last_burst;
		uint64_t ago_ms;
		unsigned poll_us, want;
	} c[] = {
		{ 1, 1, 1, 0, 100, 100 }, { 2, 2, 1, 0, 100, 0 }, { 1, 2, 1, 0, 100, 0 },
		{ 0, 0, 1, 0, 100, 100 }, { 0, 0, 32, 0, 100, 0 }, { 0, 0, 1, 1000, 100, 0 },
		{ 1, 1, 1, 0, 0, 0 },
	};

	cr_assert_geq(epfd, 0);
	open_family(MIRRORED);
	eng->client_reqs = 1;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		eng->opts.poll_us = c[i].poll_us;
		eng->client_inflight = c[i].inflight;
		eng->client_burst = c[i].burst;
		eng->client_last_burst = c[i].last_burst;
		eng->client_last_ms = eng_now_ms() - c[i].ago_ms;
		cr_assert_geq(engine_wait_fd(eng, &w, 0), 0);
		cr_assert_eq(w.spin_us, c[i].want, "case %zu: %u asked", i, w.spin_us);
	}
	eng->client_inflight = 0;
	eng->client_burst = 0;
	close(epfd);
}

Test(segment_mirror, flush_waits_for_the_mirrors_flush)
{
	struct done d = { 0 };

	open_family(MIRRORED);
	cr_assert_eq(seg_flush(eng, on_done, &d), 0);
	cr_assert_eq(fk.flushes, 1);
	drain_local();
	cr_assert_not(d.done);
	mirror_completes(0);
	cr_assert(d.done);
	cr_assert_eq(d.res, 0);
}

Test(segment_mirror, seal_and_delete_are_told)
{
	uint32_t slot = open_family(MIRRORED);
	uint8_t *buf = seg_buf_alloc(4 * BLK), *hdr = seg_buf_alloc(BLK);
	struct done d = { 0 };

	eng->slots[slot].used = 4; /* the caller reserves what it appends */
	cr_assert_eq(seg_append(eng, slot, 0, buf, 4, 5, on_done, &d), 0);
	mirror_completes(0);
	drain_local();
	cr_assert(d.done);
	seg_seal(eng, slot);
	seg_seal(eng, slot); /* sealed already: not told twice */
	cr_assert_eq(fk.sealed, 1);
	cr_assert_eq(fk.seal_len, 4);
	d = (struct done){ 0 };
	cr_assert_eq(finish(seg_delete(eng, slot, hdr, on_done, &d), &d), BLK);
	cr_assert_eq(fk.deleted, 1);
	cr_assert_eq(fk.deleted_slot, slot);
	cr_assert_eq(fk.deleted_uid, MIRRORED);
	cr_assert_eq(fk.deleted_sno, fk.sno);
	cr_assert_not(eng->slots[slot].mirrored);
	seg_buf_free(buf);
	seg_buf_free(hdr);
}

Test(segment_mirror, opening_the_next_segment_seals_the_previous_one_on_the_mirror)
{
	uint32_t first = open_family(MIRRORED);
	uint8_t *buf = seg_buf_alloc(2 * BLK);
	struct done d = { 0 };

	eng->slots[first].used = 2;
	cr_assert_eq(seg_append(eng, first, 0, buf, 2, 5, on_done, &d), 0);
	mirror_completes(0);
	drain_local();
	cr_assert(d.done);
	cr_assert_eq(seg_open(eng, &layer, SLOT_FOR_WRITE), 0);
	cr_assert_eq(fk.sealed, 1);
	cr_assert_eq(fk.seal_len, 2);
	cr_assert_eq(fk.opened, 2);
	cr_assert_neq(fk.slot, first);
	eng->slots[first].used = 0; /* the engine's accounting knows no batch of this layer */
	seg_buf_free(buf);
}

Test(segment_mirror, once_cleared_a_mirrored_segment_goes_on_locally)
{
	uint32_t slot = open_family(MIRRORED);
	uint8_t *buf = seg_buf_alloc(2 * BLK);
	struct done d = { 0 };

	seg_mirror_set(eng, NULL, NULL); /* a node that stops: replica_destroy */
	cr_assert_eq(finish(seg_append(eng, slot, 0, buf, 2, 5, on_done, &d), &d), 2 * BLK);
	seg_seal(eng, slot);
	cr_assert_eq(fk.appends + fk.sealed, 0);
	seg_buf_free(buf);
}

/* A segment sealed while an append's local half is still in flight (an owner's seal
 * for a failed holder, with appends that wait for copies): catch-up may not copy it
 * from here until that write is on the store (engine/segcopy.c). */
Test(segment_mirror, a_copy_waits_for_the_local_writes_of_a_sealed_segment)
{
	uint32_t slot = open_family(MIRRORED);
	uint8_t *buf = seg_buf_alloc(2 * BLK), *rd = seg_buf_alloc(BLK);
	struct done d = { 0 }, r = { 0 };

	eng->slots[slot].used = 2;
	cr_assert_eq(seg_append(eng, slot, 0, buf, 2, 5, on_done, &d), 0);
	cr_assert_eq(eng->slots[slot].local_writes, 1);
	seg_seal(eng, slot);
	cr_assert_eq(engine_segment_sealed_blocks(eng, MIRRORED, fk.sno), -EBUSY);
	cr_assert_eq(engine_segment_read_async(eng, MIRRORED, fk.sno, 0, rd, 1, on_done, &r),
		     -EBUSY);
	drain_local(); /* the local half lands; the mirror's is still out */
	cr_assert_eq(eng->slots[slot].local_writes, 0);
	cr_assert_not(d.done);
	cr_assert_eq(engine_segment_sealed_blocks(eng, MIRRORED, fk.sno), 2);
	cr_assert_eq(finish(engine_segment_read_async(eng, MIRRORED, fk.sno, 0, rd, 1, on_done,
						      &r), &r), 0);
	mirror_completes(0);
	cr_assert(d.done);
	eng->slots[slot].used = 0; /* the engine's accounting knows no batch of this layer */
	seg_buf_free(buf);
	seg_buf_free(rd);
}

/* A segment opened before the mirror was set (written before a restart, or adopted in
 * a takeover) was never opened on it, yet it has copies and a record elsewhere: its
 * deletion is told, naming it by (uid, sno), not by a slot the mirror never saw. */
Test(segment_mirror, a_segment_not_opened_on_the_mirror_is_still_told_deleted)
{
	uint32_t slot = open_segment(MIRRORED, false);
	uint32_t sno = eng->slots[slot].sno;
	uint8_t *hdr = seg_buf_alloc(BLK);
	struct done d = { 0 };

	cr_assert_not(eng->slots[slot].mirrored);
	cr_assert_eq(fk.opened, 0);
	seg_seal(eng, slot);
	cr_assert_eq(fk.sealed, 0, "sealed is told only of segments opened on the mirror");
	cr_assert_eq(finish(seg_delete(eng, slot, hdr, on_done, &d), &d), BLK);
	cr_assert_eq(fk.deleted, 1, "the freed segment's copies and record would leak");
	cr_assert_eq(fk.deleted_slot, slot);
	cr_assert_eq(fk.deleted_uid, MIRRORED);
	cr_assert_eq(fk.deleted_sno, sno);
	seg_buf_free(hdr);
}

Test(segment_mirror, a_segment_of_an_unwanted_family_is_not_told_deleted)
{
	uint32_t slot = open_segment(LOCAL_ONLY, false);
	uint8_t *hdr = seg_buf_alloc(BLK);
	struct done d = { 0 };

	seg_seal(eng, slot);
	cr_assert_eq(finish(seg_delete(eng, slot, hdr, on_done, &d), &d), BLK);
	cr_assert_eq(fk.deleted, 0);
	seg_buf_free(hdr);
}

/* Copies held for other nodes are made durable by this node's store alone: an owner
 * whose own flush waits for this node's SEG_FLUSH must not have that SEG_FLUSH (or a
 * held seal) wait for this node's own flush to the owner in turn. */
Test(segment_mirror, held_flush_does_not_wait_for_the_mirror)
{
	struct done mine = { 0 }, held = { 0 };

	open_family(MIRRORED);
	cr_assert_eq(seg_flush(eng, on_done, &mine), 0);
	cr_assert_eq(fk.flushes, 1);
	cr_assert_eq(engine_held_flush(eng, on_done, &held), 0);
	cr_assert_eq(fk.flushes, 1, "the held copies' flush asked the mirror too");
	drain_local();
	cr_assert(held.done, "the held copies' flush waited for the mirror's");
	cr_assert_eq(held.res, 0);
	cr_assert_not(mine.done);
	mirror_completes(0);
	cr_assert(mine.done);
}

Test(segment_mirror, a_held_seal_does_not_flush_the_mirror)
{
	uint8_t *buf = seg_buf_alloc(2 * BLK);
	struct iovec iov = { buf, 2 * BLK };
	struct done d = { 0 };

	open_family(MIRRORED);
	cr_assert_eq(finish(engine_held_open_async(eng, LOCAL_ONLY, 3, 1, on_done, &d), &d), 0);
	memset(&d, 0, sizeof(d));
	cr_assert_eq(finish(engine_held_write(eng, LOCAL_ONLY, 3, 0, &iov, 1, 2, on_done, &d),
			    &d), 0);
	fk.refuse = -EIO; /* a flush that reached the mirror would fail the seal */
	memset(&d, 0, sizeof(d));
	/* short of what is written: the cut is flushed before the seal is committed */
	cr_assert_eq(finish(engine_held_seal_async(eng, LOCAL_ONLY, 3, 1, on_done, &d), &d), 0);
	cr_assert_eq(fk.flushes, 0);
	seg_buf_free(buf);
}
