/* tests/unit/engine/test_held.c — segments held for other nodes (engine/held.c):
 * open, write, read, seal and delete with the bytes compared; the retry and error
 * rules of the contract; the epoch fence across a reopen; an open copy's length found
 * again from its log after a reopen (a real owner's segment, copied from a second
 * engine, and a torn last batch cut off; a slot whose header names another segment
 * is not walked as the copy's); held slots left alone by the cleaner and
 * never reused; delete freeing the slot for good; a store full of held slots leaving
 * the cleaner its reserve.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/loop.h"
#include "engine/engine_internal.h"
#include "engine/logcheck.h"
#include "engine_fixture.h"
#include "testutil.h"

#define UID 0x5eed0001ull

static int held_open(uint64_t uid, uint32_t sno, uint64_t epoch)
{
	struct done d = { 0 };

	return finish(engine_held_open_async(eng, uid, sno, epoch, on_done, &d), &d);
}

/* buf: n blocks, deliberately not aligned by the callers that pass malloc + 1 */
static int held_write(uint64_t uid, uint32_t sno, uint32_t block, uint32_t n, const void *buf)
{
	struct iovec iov = { (void *)buf, (size_t)n * BLK };
	struct done d = { 0 };

	return finish(engine_held_write(eng, uid, sno, block, &iov, 1, n, on_done, &d), &d);
}

static int held_read(uint64_t uid, uint32_t sno, uint32_t block, uint32_t n, void *buf)
{
	struct iovec iov = { buf, (size_t)n * BLK };
	struct done d = { 0 };

	return finish(engine_held_read(eng, uid, sno, block, &iov, 1, n, on_done, &d), &d);
}

static int held_seal(uint64_t uid, uint32_t sno, uint32_t length)
{
	struct done d = { 0 };

	return finish(engine_held_seal_async(eng, uid, sno, length, on_done, &d), &d);
}

static int held_delete(uint64_t uid, uint32_t sno)
{
	struct done d = { 0 };

	return finish(engine_held_delete_async(eng, uid, sno, on_done, &d), &d);
}

static int held_raise(uint64_t uid, uint64_t epoch)
{
	struct done d = { 0 };

	return finish(engine_held_epoch_raise_async(eng, uid, epoch, on_done, &d), &d);
}

static struct engine_held_info held_stat(uint64_t uid, uint32_t sno)
{
	struct engine_held_info hi;
	int r = engine_held_stat(eng, uid, sno, &hi);

	cr_assert_eq(r, 0, "stat %llx.%u: %s", (unsigned long long)uid, sno, strerror(-r));
	return hi;
}

/* n blocks of a pattern of seed, at buf + 1 (unaligned): the engine must copy. */
static uint8_t *pattern(uint32_t n, unsigned seed)
{
	uint8_t *raw = malloc((size_t)n * BLK + 1);

	cr_assert_not_null(raw);
	for (size_t i = 0; i < (size_t)n * BLK; i++)
		raw[i + 1] = (uint8_t)(i * 31 + seed * 7 + i / BLK);
	return raw;
}

static void expect_bytes(uint64_t uid, uint32_t sno, uint32_t block, uint32_t n,
			 const uint8_t *want)
{
	uint8_t *got = malloc((size_t)n * BLK);

	cr_assert_not_null(got);
	cr_assert_eq(held_read(uid, sno, block, n, got), 0);
	cr_assert_eq(memcmp(got, want, (size_t)n * BLK), 0, "held blocks %u..%u differ", block,
		     block + n - 1);
	free(got);
}

TestSuite(held, .init = setup, .fini = teardown, .timeout = 120);

Test(held, open_write_read_seal_delete_round_trip)
{
	uint8_t *raw = pattern(6, 1);
	struct engine_held_info hi;
	uint32_t free0;

	open_engine();
	free0 = stats().segments_free;
	cr_assert_eq(engine_segment_blocks(eng), SEG_BLOCKS);
	cr_assert_eq(held_open(UID, 3, 5), 0);
	hi = held_stat(UID, 3);
	cr_assert_eq(hi.length, 0);
	cr_assert_not(hi.sealed);
	cr_assert_eq(hi.epoch, 5);
	cr_assert(eng->slots[hi.slot].held);
	cr_assert_eq(eng->slots[hi.slot].volume_id, 0);
	cr_assert_eq(stats().segments_held, 1);
	cr_assert_eq(stats().segments_free, free0 - 1);

	cr_assert_eq(held_write(UID, 3, 0, 4, raw + 1), 0);
	cr_assert_eq(held_write(UID, 3, 4, 2, raw + 1 + 4 * BLK), 0);
	cr_assert_eq(held_stat(UID, 3).length, 6);
	expect_bytes(UID, 3, 0, 6, raw + 1);
	expect_bytes(UID, 3, 2, 3, raw + 1 + 2 * BLK);

	cr_assert_eq(held_seal(UID, 3, 6), 0);
	hi = held_stat(UID, 3);
	cr_assert(hi.sealed);
	cr_assert_eq(hi.length, 6);
	expect_bytes(UID, 3, 0, 6, raw + 1);

	cr_assert_eq(held_delete(UID, 3), 0);
	cr_assert_eq(engine_held_stat(eng, UID, 3, &hi), -ENOENT);
	cr_assert_eq(stats().segments_held, 0);
	cr_assert_eq(stats().segments_free, free0);
	free(raw);
}

static int count_held(void *arg, const struct engine_held_info *h)
{
	unsigned *n = arg;

	cr_assert_eq(h->uid, UID);
	cr_assert_eq(h->sno, *n, "listed in (uid, sno) order");
	(*n)++;
	return 0;
}

Test(held, retries_holes_ends_and_seals_answer_as_the_contract_says)
{
	uint8_t *raw = pattern(4, 2);
	struct engine_held_info hi;
	unsigned n = 0;

	open_engine();
	cr_assert_eq(held_open(UID, 0, 1), 0);
	cr_assert_eq(held_write(UID, 0, 0, 4, raw + 1), 0);
	/* a retry of what is there */
	cr_assert_eq(held_write(UID, 0, 2, 2, raw + 1 + 2 * BLK), 0);
	cr_assert_eq(held_stat(UID, 0).length, 4, "a retry leaves the length");
	cr_assert_eq(held_write(UID, 0, 4, 1, raw + 1), 0, "at the end: an append");
	cr_assert_eq(held_stat(UID, 0).length, 5);
	cr_assert_eq(held_write(UID, 0, 7, 1, raw + 1), -ERANGE, "a hole");
	cr_assert_eq(held_write(UID, 0, SEG_BLOCKS - 1, 2, raw + 1), -EINVAL, "past the end");
	cr_assert_eq(held_write(UID, 9, 0, 1, raw + 1), -ENOENT, "not held");
	cr_assert_eq(held_read(UID, 0, 4, 2, raw + 1), -ERANGE, "a read past the length");
	/* open again: a retry, the length unchanged */
	cr_assert_eq(held_open(UID, 0, 1), 0);
	cr_assert_eq(held_stat(UID, 0).length, 5);
	cr_assert_eq(stats().segments_held, 1);

	cr_assert_eq(held_seal(UID, 0, 6), -ERANGE, "sealed beyond what is written");
	cr_assert_eq(held_seal(UID, 0, 4), 0, "block 4 is cut off");
	cr_assert_eq(held_seal(UID, 0, 4), 0, "the same seal again");
	cr_assert_eq(held_seal(UID, 0, 3), -EROFS, "another length");
	cr_assert_eq(held_write(UID, 0, 4, 1, raw + 1), -EROFS, "sealed");
	cr_assert_eq(held_read(UID, 0, 4, 1, raw + 1), -ERANGE, "cut off");
	hi = held_stat(UID, 0);
	cr_assert_eq(hi.length, 4);
	cr_assert_eq(held_open(UID, 1, 1), 0);
	cr_assert_eq(engine_held_list(eng, count_held, &n), 0);
	cr_assert_eq(n, 2);

	cr_assert_eq(held_delete(UID, 0), 0);
	cr_assert_eq(held_delete(UID, 0), 0, "not held: a retry");
	cr_assert_eq(engine_held_open_async(eng, 0, 0, 1, on_done, NULL), -EINVAL, "uid 0");
	free(raw);
}

Test(held, a_seal_waits_for_the_writes_in_flight_and_counts_them)
{
	uint8_t *raw = pattern(8, 6);
	struct iovec a = { raw + 1, 4 * BLK }, b = { raw + 1 + 4 * BLK, 4 * BLK };
	struct done wa = { 0 }, wb = { 0 }, s = { 0 };

	open_engine();
	cr_assert_eq(held_open(UID, 0, 1), 0);
	/* pipelined like an owner's appends: the second starts where the first ends */
	cr_assert_eq(engine_held_write(eng, UID, 0, 0, &a, 1, 4, on_done, &wa), 0);
	cr_assert_eq(engine_held_write(eng, UID, 0, 4, &b, 1, 4, on_done, &wb), 0);
	cr_assert_eq(engine_held_seal_async(eng, UID, 0, 8, on_done, &s), 0);
	cr_assert_eq(finish(0, &s), 0, "the seal counts the writes it waited for");
	cr_assert(wa.done && wb.done);
	cr_assert_eq(wa.res, 0);
	cr_assert_eq(wb.res, 0);
	cr_assert_eq(held_stat(UID, 0).length, 8);
	expect_bytes(UID, 0, 0, 8, raw + 1);
	free(raw);
}

/* What the loop's sleep may poll for (engine_wait_fd's spin_us) with held I/O in
 * flight: a holder's lone append, yes; two (pipelined), no; a lone read, or the two
 * of a FRAG_READ (its table and data), yes; three reads, or a read beside an append,
 * no (a queue depth). */
static unsigned spin_asked(void)
{
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	struct loop_wait w = { .epfd = epfd };

	cr_assert_geq(epfd, 0);
	cr_assert_geq(engine_wait_fd(eng, &w, 0), 0);
	close(epfd);
	return w.spin_us;
}

Test(held, a_holders_lone_append_is_polled_for)
{
	uint8_t *raw = pattern(8, 7);
	struct iovec a = { raw, 4 * BLK }, b = { raw + 4 * BLK, 4 * BLK };
	struct done wa = { 0 }, wb = { 0 }, r = { 0 };

	open_engine();
	cr_assert_eq(held_open(UID, 0, 1), 0);
	cr_assert_eq(spin_asked(), 0, "nothing in flight, no client answered");
	cr_assert_eq(engine_held_write(eng, UID, 0, 0, &a, 1, 4, on_done, &wa), 0);
	cr_assert_eq(spin_asked(), ENGINE_POLL_US_DEFAULT);
	cr_assert_eq(finish(0, &wa), 0);
	/* both issued before the engine waits (a wait reaps: the first may be done by the
	 * time a second is asked for, and then the second is lone) */
	wa = (struct done){ 0 };
	cr_assert_eq(engine_held_write(eng, UID, 0, 4, &b, 1, 4, on_done, &wb), 0);
	cr_assert_eq(engine_held_write(eng, UID, 0, 8, &a, 1, 4, on_done, &wa), 0);
	cr_assert_eq(spin_asked(), 0, "two appends in flight: a queue depth");
	cr_assert_eq(finish(0, &wb), 0);
	cr_assert_eq(finish(0, &wa), 0);
	cr_assert_eq(eng->held_writes, 0);
	cr_assert_eq(engine_held_read(eng, UID, 0, 0, &a, 1, 4, on_done, &r), 0);
	cr_assert_eq(spin_asked(), ENGINE_POLL_US_DEFAULT, "a lone read in flight");
	cr_assert_eq(finish(0, &r), 0);
	cr_assert_eq(eng->held_reads, 0);
	free(raw);
}

Test(held, a_holders_reads_are_polled_for_alone_only)
{
	uint8_t *raw = pattern(8, 9);
	uint8_t *buf[3];
	struct iovec a = { raw, 4 * BLK }, rd[3];
	struct done wa = { 0 }, r[3] = { { 0 } };

	open_engine();
	cr_assert_eq(held_open(UID, 0, 1), 0);
	cr_assert_eq(engine_held_write(eng, UID, 0, 0, &a, 1, 4, on_done, &wa), 0);
	cr_assert_eq(finish(0, &wa), 0);
	for (int i = 0; i < 3; i++) {
		buf[i] = aligned_alloc(4096, BLK);
		rd[i] = (struct iovec){ buf[i], BLK };
	}
	cr_assert_eq(engine_held_read(eng, UID, 0, 0, &rd[0], 1, 1, on_done, &r[0]), 0);
	cr_assert_eq(engine_held_read(eng, UID, 0, 1, &rd[1], 1, 1, on_done, &r[1]), 0);
	cr_assert_eq(spin_asked(), ENGINE_POLL_US_DEFAULT, "two reads: one FRAG_READ's table and data");
	cr_assert_eq(engine_held_read(eng, UID, 0, 2, &rd[2], 1, 1, on_done, &r[2]), 0);
	cr_assert_eq(spin_asked(), 0, "three reads in flight: a queue depth");
	for (int i = 0; i < 3; i++)
		cr_assert_eq(finish(0, &r[i]), 0);
	r[0] = wa = (struct done){ 0 };
	cr_assert_eq(engine_held_read(eng, UID, 0, 0, &rd[0], 1, 1, on_done, &r[0]), 0);
	cr_assert_eq(engine_held_write(eng, UID, 0, 4, &a, 1, 4, on_done, &wa), 0);
	cr_assert_eq(spin_asked(), 0, "a read beside an append");
	cr_assert_eq(finish(0, &r[0]), 0);
	cr_assert_eq(finish(0, &wa), 0);
	cr_assert_eq(eng->held_reads, 0);
	cr_assert_eq(eng->held_writes, 0);
	for (int i = 0; i < 3; i++)
		free(buf[i]);
	free(raw);
}

Test(held, the_epoch_fence_survives_a_reopen)
{
	open_engine();
	cr_assert_eq(engine_held_epoch(eng, UID), 0);
	cr_assert_eq(held_raise(UID, 7), 0);
	cr_assert_eq(engine_held_epoch(eng, UID), 7);
	cr_assert_eq(held_raise(UID, 5), 0, "a lower raise is no error");
	cr_assert_eq(engine_held_epoch(eng, UID), 7, "...and changes nothing");
	cr_assert_eq(held_open(UID, 0, 6), -ESTALE);
	cr_assert_eq(engine_held_epoch(eng, UID + 1), 0, "per family");
	reopen_engine();
	cr_assert_eq(engine_held_epoch(eng, UID), 7);
	cr_assert_eq(held_open(UID, 0, 6), -ESTALE);
	cr_assert_eq(held_open(UID, 0, 7), 0);
	cr_assert_eq(held_stat(UID, 0).epoch, 7);
}

/* ---- a real owner's segment ---- */

/* The log of the first slot of volume "v" on a second engine (another store: another
 * uuid) after three batches of 4 blocks: its bytes in *out (SEG_BLOCKS blocks), its
 * length returned; *last the last batch's summary block. */
static uint32_t owner_segment(uint8_t **out, uint32_t *last)
{
	char store2[PATH_MAX + 16], meta2[PATH_MAX + 16];
	struct engine *mine = eng, *owner = NULL;
	struct engine_volume *vol;
	struct engine_opts o;
	uint32_t used, slot;
	uint8_t *buf = seg_buf_alloc(SEG_SIZE);
	struct logcheck_walk w;
	struct logcheck_item it;
	struct segment_header h;
	struct summary *sum = malloc(sizeof(*sum));

	cr_assert(buf && sum);
	snprintf(store2, sizeof(store2), "%s/owner.img", dir);
	snprintf(meta2, sizeof(meta2), "%s/owner-meta", dir);
	opts_for(&o, store2, meta2, true);
	cr_assert_eq(engine_open(&o, &owner), 0);
	eng = owner; /* the fixture's helpers run the engine in `eng` */
	vol = create_and_open("v", VOL_SIZE);
	for (uint32_t b = 0; b < 3; b++)
		write_tagged(vol, b * 4, 4, 100 + b);
	cr_assert_eq(eflush(), 0);
	cr_assert_geq(vol->open_slot, 0, "the volume's slot");
	slot = (uint32_t)vol->open_slot;
	used = owner->slots[slot].used;
	cr_assert_eq(owner->slots[slot].volume_id, vol->rec.volume_id);
	cr_assert_eq(seg_read_sync(owner, slot, 0, buf, SEG_BLOCKS), 0);
	engine_volume_close(vol);
	engine_close(owner);
	eng = mine;

	cr_assert_eq(ondisk_segment_header_decode(buf, BLK, &h), 0);
	*last = 0;
	logcheck_walk_init(&w, buf, SEG_BLOCKS, &h, 0);
	for (logcheck_walk_next(&w, sum, &it); it.kind == LOGCHECK_BATCH;
	     logcheck_walk_next(&w, sum, &it))
		*last = it.pos;
	cr_assert_eq(it.pos, used, "the walk ends where the owner's write pointer is");
	cr_assert_gt(*last, 0);
	free(sum);
	*out = buf;
	return used;
}

/* The owner's header in seg's block 0 renamed (UID, sno): a holder checks that a
 * copy's header names it (held.c's open_length). */
static void stamp(uint8_t *seg, uint32_t sno)
{
	struct segment_header h;

	cr_assert_eq(ondisk_segment_header_decode(seg, BLK, &h), 0);
	h.family_uid = UID;
	h.sno = sno;
	ondisk_segment_header_encode(&h, seg);
}

/* A copy of seg's n blocks, stamped (UID, sno). */
static uint8_t *stamped(const uint8_t *seg, uint32_t n, uint32_t sno)
{
	uint8_t *c = seg_buf_alloc((size_t)n * BLK);

	cr_assert_not_null(c);
	memcpy(c, seg, (size_t)n * BLK);
	stamp(c, sno);
	return c;
}

/* A fresh engine holding (UID, 0): a copy of a real owner's segment, `used` blocks of
 * it; *last: its last batch's summary block. */
static uint8_t *held_owner_copy(uint32_t *used, uint32_t *last)
{
	uint8_t *seg;

	open_engine();
	*used = owner_segment(&seg, last);
	stamp(seg, 0);
	cr_assert_eq(held_open(UID, 0, 1), 0);
	cr_assert_eq(held_write(UID, 0, 0, *used, seg), 0);
	return seg;
}

Test(held, an_open_copys_length_is_found_again_from_its_log)
{
	uint32_t last, used;
	uint8_t *seg, *seg1;

	seg = held_owner_copy(&used, &last);
	seg1 = stamped(seg, used, 1);
	/* a torn copy: the last batch's summary and one of its data blocks only */
	cr_assert_eq(held_open(UID, 1, 1), 0);
	cr_assert_eq(held_write(UID, 1, 0, last + 2, seg1), 0);
	/* a slot whose block 0 names another segment (an earlier use of it, or this
	 * copy's header never landed): its log is not this copy's */
	cr_assert_eq(held_open(UID, 2, 1), 0);
	cr_assert_eq(held_write(UID, 2, 0, used, seg), 0);
	cr_assert_eq(eflush(), 0);
	reopen_engine();

	cr_assert_eq(held_stat(UID, 0).length, used, "the whole log");
	cr_assert_not(held_stat(UID, 0).sealed);
	expect_bytes(UID, 0, 0, used, seg);
	cr_assert_eq(held_stat(UID, 1).length, last, "the torn last batch is cut off");
	expect_bytes(UID, 1, 0, last, seg1);
	cr_assert_eq(held_stat(UID, 2).length, 0, "another segment's log is not walked");
	/* and the owner goes on where the copy ends */
	cr_assert_eq(held_write(UID, 1, last, used - last, seg1 + (size_t)last * BLK), 0);
	cr_assert_eq(held_stat(UID, 1).length, used);
	cr_assert_eq(stats().segments_held, 3);
	seg_buf_free(seg);
	seg_buf_free(seg1);
}

Test(held, a_sealed_copys_length_is_its_records_after_a_reopen)
{
	uint32_t last, used;
	uint8_t *seg;

	seg = held_owner_copy(&used, &last);
	cr_assert_eq(held_seal(UID, 0, last), 0, "the last batch is cut off");
	reopen_engine();
	cr_assert(held_stat(UID, 0).sealed);
	cr_assert_eq(held_stat(UID, 0).length, last);
	expect_bytes(UID, 0, 0, last, seg);
	/* the cut is in the copy itself: its log ends at `last` for whoever replays it */
	cr_assert_eq(seg_read_sync(eng, held_stat(UID, 0).slot, last, seg, 1), 0);
	for (size_t i = 0; i < BLK; i++)
		cr_assert_eq(seg[i], 0, "block %u is zeros", last);
	seg_buf_free(seg);
}

/* quill-inspect on the closed store: its exit status, and whether a line holds want. */
static int inspect(const char *want, bool *found)
{
#ifdef QUILL_INSPECT
	char cmd[PATH_MAX + 128], line[1024];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "%s --segments %s 2>&1", QUILL_INSPECT, store_path);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	*found = false;
	while (fgets(line, sizeof(line), p)) {
		printf("  inspect | %s", line);
		*found |= strstr(line, want) != NULL;
	}
	return pclose(p);
#else
	(void)want, (void)found;
	cr_skip_test("quill-inspect is not built");
	return -1;
#endif
}

Test(held, inspect_reports_held_copies_as_held_not_damage)
{
	uint32_t last, used;
	uint8_t *seg;
	bool found;
	int status;

	seg = held_owner_copy(&used, &last);
	cr_assert_eq(held_open(UID, 1, 1), 0); /* a torn tail */
	cr_assert_eq(held_write(UID, 1, 0, last + 2, seg), 0);
	engine_close(eng);
	eng = NULL;
	seg_buf_free(seg);
	status = inspect("2 held for other nodes", &found);
	cr_assert(found, "inspect counts the held copies (exit status %d)", status);
	cr_assert_eq(status, 0, "held copies are no damage (exit status %d)", status);
}

/* ---- the rest of the engine leaves held slots alone ---- */

/* slot1's copy is open: after a reopen its length comes from its log, so it must be a
 * real one (b: the owner's segment, b_len blocks of it) */
static void expect_untouched(uint32_t slot0, uint32_t slot1, const uint8_t *a, const uint8_t *b,
			     uint32_t b_len)
{
	cr_assert(eng->slots[slot0].held && eng->slots[slot1].held);
	cr_assert_eq(eng->slots[slot0].volume_id, 0);
	cr_assert_eq(eng->slots[slot1].volume_id, 0);
	cr_assert_eq(held_stat(UID, 0).slot, slot0);
	cr_assert_eq(held_stat(UID, 1).slot, slot1);
	cr_assert_eq(held_stat(UID, 0).length, 8);
	cr_assert_eq(held_stat(UID, 1).length, b_len);
	expect_bytes(UID, 0, 0, 8, a);
	expect_bytes(UID, 1, 0, b_len, b);
}

Test(held, the_cleaner_running_hard_never_touches_a_held_slot)
{
	uint8_t *a = pattern(8, 3), *b;
	struct engine_volume *vol;
	uint32_t slot0, slot1, b_len, last;
	uint64_t freed;

	open_engine();
	b_len = owner_segment(&b, &last);
	stamp(b, 1);
	cr_assert_eq(held_open(UID, 0, 1), 0);
	cr_assert_eq(held_write(UID, 0, 0, 8, a + 1), 0);
	cr_assert_eq(held_seal(UID, 0, 8), 0);
	cr_assert_eq(held_open(UID, 1, 1), 0); /* stays open */
	cr_assert_eq(held_write(UID, 1, 0, b_len, b), 0);
	slot0 = held_stat(UID, 0).slot;
	slot1 = held_stat(UID, 1).slot;
	vol = create_and_open("v", VOL_SIZE);
	/* 40 rounds of 96 blocks over a store of 20 x 31 data blocks, two of them held */
	for (uint32_t round = 0; round < 40; round++) {
		for (uint32_t lba = 0; lba < 96; lba += 8)
			write_tagged(vol, lba, 8, round);
		if (round % 8 == 7) {
			cr_assert_geq(engine_gc(eng, 4), 0);
			cr_assert_eq(engine_checkpoint(eng), 0);
			expect_untouched(slot0, slot1, a + 1, b, b_len);
		}
	}
	freed = stats().gc_segments_freed;
	cr_assert_gt(freed, 10, "the cleaner ran (freed %llu)", (unsigned long long)freed);
	expect_tagged(vol, 0, 96, 39);
	cr_assert_eq(stats().segments_held, 2);
	engine_volume_close(vol);
	reopen_engine();
	expect_untouched(slot0, slot1, a + 1, b, b_len);
	vol = open_vol("v");
	expect_tagged(vol, 0, 96, 39);
	engine_volume_close(vol);
	free(a);
	seg_buf_free(b);
}

Test(held, a_delete_frees_the_slot_for_good)
{
	uint8_t *a = pattern(3, 5);
	struct engine_held_info hi;
	uint32_t free0;

	open_engine();
	free0 = stats().segments_free;
	cr_assert_eq(held_open(UID, 0, 1), 0);
	cr_assert_eq(held_write(UID, 0, 0, 3, a + 1), 0);
	reopen_engine();
	cr_assert_eq(stats().segments_free, free0 - 1, "held across a reopen");
	cr_assert_eq(held_delete(UID, 0), 0);
	cr_assert_eq(stats().segments_free, free0);
	reopen_engine();
	cr_assert_eq(engine_held_stat(eng, UID, 0, &hi), -ENOENT);
	cr_assert_eq(stats().segments_held, 0);
	cr_assert_eq(stats().segments_free, free0, "free after the reopen too");
	free(a);
}

Test(held, a_store_full_of_held_slots_leaves_the_cleaner_its_reserve)
{
	char why[384];
	uint32_t n = 0, total;
	int r;

	open_engine();
	total = stats().segments_free;
	while ((r = held_open(UID, n, 1)) == 0)
		n++;
	cr_assert_eq(r, -ENOSPC);
	cr_assert_eq(n, total - ENG_GC_RESERVE_DEFAULT);
	cr_assert_eq(stats().segments_free, ENG_GC_RESERVE_DEFAULT);
	cr_assert_eq(stats().segments_held, n);
	eng_space_describe(eng, why, sizeof(why));
	cr_assert(strstr(why, "held for other nodes"), "%s", why);
	reopen_engine();
	cr_assert_eq(stats().segments_held, n);
	cr_assert_eq(stats().segments_free, ENG_GC_RESERVE_DEFAULT);
}
