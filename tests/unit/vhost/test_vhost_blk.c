/* tests/unit/vhost/test_vhost_blk.c — virtio-blk requests (vhost/blk.c) on a real
 * engine, through a fake guest's ring: every request type, requests past the end
 * and misaligned, malformed chains (the request fails, the queue goes on), and a
 * request orphaned by a disconnect whose guest memory is gone before the engine
 * completes it (ASan would see any touch), the config space of a 512-byte and a
 * 4Kn volume, and a stress of overlapping 512-byte writes, discards and write-zeroes
 * from four queues at once against a model. No QEMU, no socket. */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/loop.h"
#include "fake_guest.h"
#include "test_engine_scratch.h"
#include "testutil.h"

#ifndef QUILL_TEST_DIR
#define QUILL_TEST_DIR "/var/tmp"
#endif

#define BLK ENGINE_BLOCK_SIZE
#define VOL_SIZE (1u << 20)
/* A request's buffers: header at 0, status byte at STATUS_OFF, data at DATA_OFF (up to
 * 60 KiB); 63 slots fit in the fake guest's RAM. */
#define SLOT(s) (FG_DATA + (uint64_t)(s) * 0x10000)
#define NSLOTS ((FG_SIZE - (FG_DATA - FG_GPA)) / 0x10000)
#define DATA_OFF 0x1000
#define STATUS_OFF 0x800

static char dir[PATH_MAX];
static struct fake_guest g;
static struct engine *eng;
static struct loop *lp;        /* never run: interrupts are not looked at */
static struct vhost_server srv;
static struct vhost_export xp;
static struct vhost_conn *conn;
static struct vhost_queue *q;

static void open_engine(void)
{
	int r = test_engine_scratch(QUILL_TEST_DIR, "quill-vhost", 64u << 20, dir, sizeof(dir),
				    &eng);

	if (r == -EOPNOTSUPP)
		cr_skip_test("%s does not support O_DIRECT", dir);
	cr_assert_eq(r, 0);
	cr_assert_eq(engine_volume_create(eng, "disk0", VOL_SIZE), 0);
}

static void setup(void)
{
	fg_init(&g);
	open_engine();
	cr_assert_eq(loop_create(&lp), 0);
	srv = (struct vhost_server){ .eng = eng, .lp = lp, .num_queues = 1 };
	xp = (struct vhost_export){ .srv = &srv, .size = VOL_SIZE, .sector_size = 512,
				    .listen_fd = -1 };
	strcpy(xp.name, "disk0");
	cr_assert_eq(blk_open(eng, NULL, "disk0", &xp.dev), 0);
	conn = calloc(1, sizeof(*conn));
	cr_assert_not_null(conn);
	conn->exp = &xp;
	conn->mem = vhost_mem_get(g.mem);
	conn->nqueues = 1;
	conn->state = VHOST_CS_HDR;
	q = &conn->queues[0];
	q->conn = conn;
	q->vr = g.vr;
	q->kick_fd = q->call_fd = -1;
	q->mapped = q->started = q->enabled = true;
}

static void teardown(void)
{
	for (int i = 0; i < 1000 && xp.nreqs; i++)
		engine_poll(eng, 10);
	if (conn) {
		loop_timer_cancel(conn->call_timer);
		vhost_mem_put(conn->mem);
	}
	free(conn);
	loop_destroy(lp);
	blk_close(xp.dev);
	engine_close(eng);
	fg_fini(&g);
	testutil_rm_tree(dir);
}

TestSuite(vhost_blk, .init = setup, .fini = teardown);

/* Writes request slot s as descriptors head..head+2 of the table at table_gpa:
 * header, data of len bytes (device writable if in), status. */
static uint16_t build_at(uint64_t table, uint16_t head, unsigned s, uint32_t type,
			 uint64_t sector, uint32_t len, bool in)
{
	struct virtio_blk_outhdr h = { .type = type, .sector = sector };

	memcpy(fg_ptr(&g, SLOT(s)), &h, sizeof(h));
	*(uint8_t *)fg_ptr(&g, SLOT(s) + STATUS_OFF) = 0xee;
	if (len) {
		fg_desc(&g, table, head, SLOT(s), 16, VRING_DESC_F_NEXT, head + 1);
		fg_desc(&g, table, head + 1, SLOT(s) + DATA_OFF, len,
			(in ? VRING_DESC_F_WRITE : 0) | VRING_DESC_F_NEXT, head + 2);
	} else {
		fg_desc(&g, table, head, SLOT(s), 16, VRING_DESC_F_NEXT, head + 2);
	}
	fg_desc(&g, table, head + 2, SLOT(s) + STATUS_OFF, 1, VRING_DESC_F_WRITE, 0);
	return head;
}

/* Slot s as descriptors 3s..3s+2 of the first queue's table. */
static uint16_t build(unsigned s, uint32_t type, uint64_t sector, uint32_t len, bool in)
{
	return build_at(FG_DESC, (uint16_t)(3 * s), s, type, sector, len, in);
}

static uint8_t *data(unsigned s)
{
	return fg_ptr(&g, SLOT(s) + DATA_OFF);
}

/* Makes head available, kicks, waits for it to be used; returns its status. */
static uint8_t run(unsigned s, uint16_t head)
{
	uint16_t want = (uint16_t)(fg_used_idx(&g) + 1);

	fg_publish(&g, head);
	vhost_blk_process(q);
	for (int i = 0; i < 1000 && fg_used_idx(&g) != want; i++)
		engine_poll(eng, 10);
	cr_assert_eq(fg_used_idx(&g), want, "request completed");
	cr_assert_eq(fg_used(&g, want - 1).id, head);
	return *(uint8_t *)fg_ptr(&g, SLOT(s) + STATUS_OFF);
}

static uint8_t request(unsigned s, uint32_t type, uint64_t sector, uint32_t len, bool in)
{
	return run(s, build(s, type, sector, len, in));
}

Test(vhost_blk, write_then_read_round_trips)
{
	for (unsigned i = 0; i < 8192; i++)
		data(0)[i] = (uint8_t)(i * 7 + 1);
	cr_assert_eq(request(0, VIRTIO_BLK_T_OUT, 8, 8192, false), VIRTIO_BLK_S_OK);
	cr_assert_eq(request(1, VIRTIO_BLK_T_IN, 8, 8192, true), VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(data(0), data(1), 8192), 0);
	cr_assert_eq(fg_used(&g, 1).len, 8193, "data and status written");
}

Test(vhost_blk, read_at_any_sector_is_served)
{
	for (unsigned i = 0; i < BLK; i++)
		data(0)[i] = (uint8_t)(i / 512 + 1);
	cr_assert_eq(request(0, VIRTIO_BLK_T_OUT, 0, BLK, false), VIRTIO_BLK_S_OK);
	cr_assert_eq(request(1, VIRTIO_BLK_T_IN, 3, 1024, true), VIRTIO_BLK_S_OK);
	cr_assert_eq(data(1)[0], 4);
	cr_assert_eq(data(1)[1023], 5);
}

static void pattern(uint8_t *p, size_t len, unsigned tag)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(tag * 131u + i * 7u + 1u);
}

/* 512-byte logical sectors: writes at any sector, of any number of sectors, keep the
 * bytes around them in the 4 KiB blocks they touch (read-modify-write). */
Test(vhost_blk, write_at_any_sector_is_served)
{
	uint8_t model[3 * BLK];

	pattern(model, sizeof(model), 1);
	memcpy(data(0), model, sizeof(model));
	cr_assert_eq(request(0, VIRTIO_BLK_T_OUT, 0, sizeof(model), false), VIRTIO_BLK_S_OK);
	pattern(data(1), BLK, 2);
	memcpy(model + 512, data(1), BLK);
	cr_assert_eq(request(1, VIRTIO_BLK_T_OUT, 1, BLK, false), VIRTIO_BLK_S_OK);
	pattern(data(2), 512, 3);
	memcpy(model + 15 * 512, data(2), 512);
	cr_assert_eq(request(2, VIRTIO_BLK_T_OUT, 15, 512, false), VIRTIO_BLK_S_OK);
	cr_assert_eq(request(3, VIRTIO_BLK_T_IN, 0, sizeof(model), true), VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(data(3), model, sizeof(model)), 0);
	cr_assert_eq(request(4, VIRTIO_BLK_T_OUT, 0, 100, false), VIRTIO_BLK_S_IOERR,
		     "not a whole number of sectors");
}

Test(vhost_blk, request_past_the_end_fails_with_ioerr)
{
	uint64_t last = VOL_SIZE / 512 - 8;

	cr_assert_eq(request(0, VIRTIO_BLK_T_IN, last, BLK, true), VIRTIO_BLK_S_OK);
	cr_assert_eq(request(1, VIRTIO_BLK_T_IN, last, 2 * BLK, true), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(request(2, VIRTIO_BLK_T_OUT, last + 8, BLK, false), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(request(3, VIRTIO_BLK_T_IN, UINT64_MAX / 256, BLK, true),
		     VIRTIO_BLK_S_IOERR, "sector * 512 must not wrap around");
}

Test(vhost_blk, get_id_is_the_volume_name)
{
	memset(data(0), 0xff, VIRTIO_BLK_ID_BYTES);
	cr_assert_eq(request(0, VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES, true),
		     VIRTIO_BLK_S_OK);
	cr_assert_str_eq((char *)data(0), "disk0");
	cr_assert_eq(data(0)[VIRTIO_BLK_ID_BYTES - 1], 0);
}

Test(vhost_blk, flush_succeeds)
{
	cr_assert_eq(request(0, VIRTIO_BLK_T_FLUSH, 0, 0, false), VIRTIO_BLK_S_OK);
}

static uint8_t zero_request(unsigned s, uint32_t type, uint64_t sector, uint32_t n,
			    uint32_t flags)
{
	struct virtio_blk_discard_write_zeroes seg = { .sector = sector, .num_sectors = n,
						       .flags = flags };

	memcpy(data(s), &seg, sizeof(seg));
	return request(s, type, 0, sizeof(seg), false);
}

Test(vhost_blk, discard_and_write_zeroes_read_back_as_zeros)
{
	memset(data(0), 0x5a, 4 * BLK);
	cr_assert_eq(request(0, VIRTIO_BLK_T_OUT, 0, 4 * BLK, false), VIRTIO_BLK_S_OK);
	cr_assert_eq(zero_request(1, VIRTIO_BLK_T_DISCARD, 8, 8, 0), VIRTIO_BLK_S_OK);
	cr_assert_eq(zero_request(2, VIRTIO_BLK_T_WRITE_ZEROES, 16, 8, 1), VIRTIO_BLK_S_OK);
	cr_assert_eq(request(3, VIRTIO_BLK_T_IN, 0, 4 * BLK, true), VIRTIO_BLK_S_OK);
	cr_assert_eq(data(3)[0], 0x5a);
	for (unsigned i = BLK; i < 3 * BLK; i++)
		cr_assert_eq(data(3)[i], 0, "byte %u", i);
	cr_assert_eq(data(3)[3 * BLK], 0x5a);
}

/* WRITE_ZEROES without the unmap flag (a guest's fallocate, REQ_NOUNMAP) leaves
 * allocated zeros; with it, or a DISCARD, holes. */
Test(vhost_blk, write_zeroes_without_unmap_allocates)
{
	memset(data(0), 0x5a, 8 * BLK);
	cr_assert_eq(request(0, VIRTIO_BLK_T_OUT, 0, 8 * BLK, false), VIRTIO_BLK_S_OK);
	cr_assert_eq(zero_request(1, VIRTIO_BLK_T_WRITE_ZEROES, 8, 16, 0), VIRTIO_BLK_S_OK);
	cr_assert_eq(zero_request(2, VIRTIO_BLK_T_WRITE_ZEROES, 24, 8,
				  VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP), VIRTIO_BLK_S_OK);
	cr_assert_eq(zero_request(3, VIRTIO_BLK_T_DISCARD, 32, 8, 0), VIRTIO_BLK_S_OK);
	/* unaligned, over a hole: its block becomes allocated zeros */
	cr_assert_eq(zero_request(0, VIRTIO_BLK_T_WRITE_ZEROES, 81, 2, 0), VIRTIO_BLK_S_OK);
	cr_assert_eq(blk_state(xp.dev, 0), BLK_STATE_DATA);
	cr_assert_eq(blk_state(xp.dev, 1 * BLK), BLK_STATE_ZERO);
	cr_assert_eq(blk_state(xp.dev, 2 * BLK), BLK_STATE_ZERO);
	cr_assert_eq(blk_state(xp.dev, 3 * BLK), BLK_STATE_HOLE, "unmap allowed");
	cr_assert_eq(blk_state(xp.dev, 4 * BLK), BLK_STATE_HOLE, "discard");
	cr_assert_eq(blk_state(xp.dev, 5 * BLK), BLK_STATE_DATA);
	cr_assert_eq(blk_state(xp.dev, 10 * BLK), BLK_STATE_ZERO);
	cr_assert_eq(blk_state(xp.dev, 11 * BLK), BLK_STATE_HOLE);
	cr_assert_eq(request(1, VIRTIO_BLK_T_IN, 0, 8 * BLK, true), VIRTIO_BLK_S_OK);
	for (unsigned i = 0; i < 8 * BLK; i++)
		cr_assert_eq(data(1)[i], i < BLK || i >= 5 * BLK ? 0x5a : 0, "byte %u", i);
}

Test(vhost_blk, discard_with_unmap_flag_or_past_the_end_is_refused)
{
	cr_assert_eq(zero_request(0, VIRTIO_BLK_T_DISCARD, 8, 8, 1), VIRTIO_BLK_S_UNSUPP);
	cr_assert_eq(zero_request(2, VIRTIO_BLK_T_DISCARD, VOL_SIZE / 512, 8, 0),
		     VIRTIO_BLK_S_IOERR, "past the end");
}

/* DISCARD and WRITE_ZEROES at 512-byte sectors zero exactly those sectors. */
Test(vhost_blk, unaligned_discard_and_write_zeroes_zero_their_sectors)
{
	uint8_t model[4 * BLK];

	pattern(model, sizeof(model), 4);
	memcpy(data(0), model, sizeof(model));
	cr_assert_eq(request(0, VIRTIO_BLK_T_OUT, 0, sizeof(model), false), VIRTIO_BLK_S_OK);
	cr_assert_eq(zero_request(1, VIRTIO_BLK_T_DISCARD, 4, 9, 0), VIRTIO_BLK_S_OK);
	memset(model + 4 * 512, 0, 9 * 512);
	cr_assert_eq(zero_request(2, VIRTIO_BLK_T_WRITE_ZEROES, 25, 2, 0), VIRTIO_BLK_S_OK);
	memset(model + 25 * 512, 0, 2 * 512);
	cr_assert_eq(request(3, VIRTIO_BLK_T_IN, 0, sizeof(model), true), VIRTIO_BLK_S_OK);
	for (unsigned i = 0; i < sizeof(model); i++)
		cr_assert_eq(data(3)[i], model[i], "byte %u", i);
}

/* Queues 1..NQ-1 have their rings in the same guest memory, below FG_DATA (queue 0
 * is the fake guest's own ring, at FG_DESC). */
#define NQ 4
#define QRING(i) (FG_GPA + 0x3000ull * (i))  /* desc; avail at +0x1000, used at +0x2000 */
_Static_assert(QRING(NQ) <= FG_DATA, "rings below the data");

static uint16_t qavail_idx[NQ];

static struct vhost_queue *extra_queue(unsigned i)
{
	struct vhost_queue *qi = &conn->queues[i];

	if (conn->nqueues <= i)
		conn->nqueues = i + 1;
	qi->conn = conn;
	qi->index = i;
	cr_assert_eq(vhost_vring_map(&qi->vr, g.mem, FG_NUM, FG_UVA + (QRING(i) - FG_GPA),
				     FG_UVA + (QRING(i) + 0x1000 - FG_GPA),
				     FG_UVA + (QRING(i) + 0x2000 - FG_GPA)),
		     0);
	qi->kick_fd = qi->call_fd = -1;
	qi->mapped = qi->started = qi->enabled = true;
	qavail_idx[i] = 0;
	return qi;
}

/* Makes the chain at head available on queue i. */
static void q_publish(unsigned i, uint16_t head)
{
	uint8_t *avail;

	if (i == 0) {
		fg_publish(&g, head);
		return;
	}
	avail = fg_ptr(&g, QRING(i) + 0x1000);
	memcpy(avail + 4 + 2 * (qavail_idx[i] % FG_NUM), &head, 2);
	qavail_idx[i]++;
	memcpy(avail + 2, &qavail_idx[i], 2);
}

static uint16_t q_used_idx(unsigned i)
{
	uint16_t v;

	if (i == 0)
		return fg_used_idx(&g);
	memcpy(&v, (uint8_t *)fg_ptr(&g, QRING(i) + 0x2000) + 2, 2);
	return v;
}

static uint64_t q_table(unsigned i)
{
	return i == 0 ? FG_DESC : QRING(i);
}

/* Polls the engine until every queue's used index is want[i]. */
static void wait_used(unsigned nq, const uint16_t *want)
{
	for (int n = 0; n < 2000; n++) {
		unsigned done = 0;

		for (unsigned i = 0; i < nq; i++)
			done += q_used_idx(i) == want[i];
		if (done == nq)
			return;
		engine_poll(eng, 10);
	}
	for (unsigned i = 0; i < nq; i++)
		cr_assert_eq(q_used_idx(i), want[i], "queue %u: requests completed", i);
}

/* Overlapping writes at odd sectors from two queues, all in flight together: each
 * one's read-modify-write of a shared 4 KiB block waits for the other's, so every
 * byte ends as the model says (requests apply in the order they were taken). */
Test(vhost_blk, overlapping_unaligned_writes_from_two_queues_keep_every_byte)
{
	enum { PER_QUEUE = 5, SPAN = 6 * BLK };
	static const uint32_t sectors[2 * PER_QUEUE] = { 1, 7, 9, 20, 33, 3, 8, 15, 21, 40 };
	static const uint32_t counts[2 * PER_QUEUE] = { 9, 3, 17, 2, 5, 6, 11, 1, 13, 4 };
	struct vhost_queue *q2 = extra_queue(1);
	uint16_t want[2];
	uint8_t model[SPAN];

	pattern(model, SPAN, 50);
	memcpy(data(0), model, SPAN);
	cr_assert_eq(request(0, VIRTIO_BLK_T_OUT, 0, SPAN, false), VIRTIO_BLK_S_OK);
	want[0] = (uint16_t)(fg_used_idx(&g) + PER_QUEUE);
	want[1] = PER_QUEUE;
	for (unsigned i = 0; i < 2 * PER_QUEUE; i++) {
		unsigned k = i % PER_QUEUE;
		uint32_t len = counts[i] * 512;
		uint16_t head;

		pattern(data(i), len, i);
		memcpy(model + (size_t)sectors[i] * 512, data(i), len);
		head = build_at(q_table(i / PER_QUEUE), (uint16_t)(3 * k), i, VIRTIO_BLK_T_OUT,
				sectors[i], len, false);
		q_publish(i / PER_QUEUE, head);
	}
	vhost_blk_process(q);
	vhost_blk_process(q2);
	cr_assert_gt(blk_locked(xp.dev), 1, "the writes should be in flight together");
	wait_used(2, want);
	for (unsigned i = 0; i < 2 * PER_QUEUE; i++)
		cr_assert_eq(*(uint8_t *)fg_ptr(&g, SLOT(i) + STATUS_OFF), VIRTIO_BLK_S_OK,
			     "write %u", i);
	cr_assert_eq(request(0, VIRTIO_BLK_T_IN, 0, SPAN, true), VIRTIO_BLK_S_OK);
	for (unsigned i = 0; i < SPAN; i++)
		cr_assert_eq(data(0)[i], model[i], "byte %u", i);
}

/* ---- a stress of 512-byte I/O from NQ queues at once, checked against a model ---- */

#define ST_SECTORS  512u  /* the region under stress: 256 KiB, 64 engine blocks */
#define ST_ROUNDS   40
#define ST_PER_Q    5     /* requests per queue per batch: 3 descriptors each in 16 */
#define ST_MAX_IO   96u   /* sectors of one write or read (48 KiB of a slot's 60) */
#define ST_MAX_SEGS 3     /* segments of one DISCARD / WRITE_ZEROES */

struct stress {
	unsigned seed;
	uint64_t rng;
	uint8_t model[ST_SECTORS * 512];
	unsigned max_locked;    /* most mutations running or waiting at once */
	unsigned ops[4];        /* writes, discards, write-zeroes, reads issued */
};

static uint32_t st_rand(struct stress *st, uint32_t n)
{
	st->rng ^= st->rng << 13; /* xorshift64 */
	st->rng ^= st->rng >> 7;
	st->rng ^= st->rng << 17;
	return (uint32_t)(st->rng % n);
}

/* A random range of 1..max sectors inside the region. */
static void st_range(struct stress *st, uint32_t max, uint64_t *sector, uint32_t *n)
{
	*n = 1 + st_rand(st, max);
	*sector = st_rand(st, ST_SECTORS - *n + 1);
}

/* A write of random bytes in slot s as head on queue qi's table, applied to the model. */
static uint16_t st_write(struct stress *st, unsigned qi, uint16_t head, unsigned s)
{
	uint64_t sector;
	uint32_t n;

	st_range(st, ST_MAX_IO, &sector, &n);
	for (uint32_t i = 0; i < n * 512; i++)
		data(s)[i] = (uint8_t)st_rand(st, 256);
	memcpy(st->model + sector * 512, data(s), n * 512);
	st->ops[0]++;
	return build_at(q_table(qi), head, s, VIRTIO_BLK_T_OUT, sector, n * 512, false);
}

/* A DISCARD or WRITE_ZEROES (unmap flag or not) of 1..ST_MAX_SEGS random segments,
 * applied to the model. */
static uint16_t st_zero(struct stress *st, unsigned qi, uint16_t head, unsigned s,
			uint32_t type)
{
	struct virtio_blk_discard_write_zeroes seg = { 0 };
	uint32_t nseg = 1 + st_rand(st, ST_MAX_SEGS), n;
	uint64_t sector;

	for (uint32_t k = 0; k < nseg; k++) {
		st_range(st, ST_MAX_IO, &sector, &n);
		seg.sector = sector;
		seg.num_sectors = n;
		seg.flags = type == VIRTIO_BLK_T_WRITE_ZEROES ? st_rand(st, 2) : 0;
		memcpy(data(s) + k * sizeof(seg), &seg, sizeof(seg));
		memset(st->model + sector * 512, 0, n * 512);
	}
	st->ops[type == VIRTIO_BLK_T_DISCARD ? 1 : 2]++;
	return build_at(q_table(qi), head, s, type, 0, nseg * (uint32_t)sizeof(seg), false);
}

/* A random mutation: the model applies them in the order the queues take them (the
 * block layer's range locks are FIFO among overlapping requests). */
static uint16_t st_mutation(struct stress *st, unsigned qi, uint16_t head, unsigned s)
{
	uint32_t kind = st_rand(st, 10);

	if (kind < 6)
		return st_write(st, qi, head, s);
	return st_zero(st, qi, head, s,
		       kind < 8 ? VIRTIO_BLK_T_DISCARD : VIRTIO_BLK_T_WRITE_ZEROES);
}

/* One batch: up to ST_PER_Q requests on each queue, made available on all of them,
 * then the queues are processed in a random order, so that the requests of every
 * queue are in flight together. Reads (reads) or mutations. */
static void st_batch(struct stress *st, bool reads, unsigned round)
{
	uint16_t want[NQ];
	uint64_t rsector[NQ * ST_PER_Q];
	uint32_t rn[NQ * ST_PER_Q], nreq[NQ];
	unsigned order[NQ];

	for (unsigned qi = 0; qi < NQ; qi++) {
		nreq[qi] = 1 + st_rand(st, ST_PER_Q);
		want[qi] = (uint16_t)(q_used_idx(qi) + nreq[qi]);
		order[qi] = qi;
	}
	for (unsigned qi = NQ - 1; qi > 0; qi--) { /* Fisher-Yates */
		unsigned j = st_rand(st, qi + 1), t = order[qi];

		order[qi] = order[j];
		order[j] = t;
	}
	for (unsigned k = 0; k < NQ; k++) {
		unsigned qi = order[k];

		for (unsigned r = 0; r < nreq[qi]; r++) {
			unsigned s = qi * ST_PER_Q + r;
			uint16_t head = (uint16_t)(3 * r);

			if (reads) {
				st_range(st, ST_MAX_IO, &rsector[s], &rn[s]);
				memset(data(s), 0xee, rn[s] * 512);
				head = build_at(q_table(qi), head, s, VIRTIO_BLK_T_IN, rsector[s],
						rn[s] * 512, true);
				st->ops[3]++;
			} else {
				head = st_mutation(st, qi, head, s);
			}
			q_publish(qi, head);
		}
		vhost_blk_process(qi == 0 ? q : &conn->queues[qi]);
		if (blk_locked(xp.dev) > st->max_locked)
			st->max_locked = blk_locked(xp.dev);
	}
	wait_used(NQ, want);
	for (unsigned qi = 0; qi < NQ; qi++) {
		for (unsigned r = 0; r < nreq[qi]; r++) {
			unsigned s = qi * ST_PER_Q + r;

			cr_assert_eq(*(uint8_t *)fg_ptr(&g, SLOT(s) + STATUS_OFF), VIRTIO_BLK_S_OK,
				     "seed %u round %u queue %u request %u", st->seed, round, qi, r);
			if (reads)
				cr_assert_eq(memcmp(data(s), st->model + rsector[s] * 512,
						    rn[s] * 512), 0,
					     "seed %u round %u: read of sectors %llu+%u on queue %u "
					     "differs from the model", st->seed, round,
					     (unsigned long long)rsector[s], rn[s], qi);
		}
	}
}

/* Rounds of overlapping writes, discards and write-zeroes at odd 512-byte sectors
 * and lengths from NQ queues at once, with reads from every queue between them;
 * every byte read must be the model's. Seed: QUILL_TEST_SEED. */
Test(vhost_blk, stress_of_unaligned_io_from_several_queues_matches_a_model)
{
	static struct stress st;
	static uint8_t whole[ST_SECTORS * 512];

	_Static_assert(NQ * ST_PER_Q <= NSLOTS, "a slot per request in flight");
	_Static_assert(ST_MAX_IO * 512 <= 0x10000 - DATA_OFF, "data fits a slot");
	_Static_assert(3 * ST_PER_Q <= FG_NUM, "descriptors fit a queue's table");
	st.seed = testutil_seed();
	st.rng = 0x9e3779b97f4a7c15ull ^ st.seed;
	for (unsigned i = 1; i < NQ; i++)
		extra_queue(i);
	for (unsigned i = 0; i < sizeof(st.model); i++)
		st.model[i] = (uint8_t)st_rand(&st, 256);
	memcpy(whole, st.model, sizeof(whole));
	for (unsigned off = 0; off < sizeof(whole); off += 0x8000) {
		memcpy(data(0), whole + off, 0x8000);
		cr_assert_eq(request(0, VIRTIO_BLK_T_OUT, off / 512, 0x8000, false), VIRTIO_BLK_S_OK);
	}
	for (unsigned round = 0; round < ST_ROUNDS; round++) {
		st_batch(&st, false, round);
		st_batch(&st, true, round);
	}
	for (unsigned off = 0; off < sizeof(whole); off += 0x8000) {
		cr_assert_eq(request(0, VIRTIO_BLK_T_IN, off / 512, 0x8000, true), VIRTIO_BLK_S_OK);
		for (unsigned i = 0; i < 0x8000; i++)
			cr_assert_eq(data(0)[i], st.model[off + i], "seed %u: byte %u",
				     st.seed, off + i);
	}
	fprintf(stderr, "stress (seed %u): %u writes, %u discards, %u write-zeroes, %u reads "
		"from %d queues; at most %u mutations in flight together\n", st.seed, st.ops[0],
		st.ops[1], st.ops[2], st.ops[3], NQ, st.max_locked);
	cr_assert_gt(st.max_locked, NQ, "seed %u: the queues' mutations were never in flight "
		     "together", st.seed);
}

Test(vhost_blk, unknown_type_is_unsupported)
{
	cr_assert_eq(request(0, 99, 0, 0, false), VIRTIO_BLK_S_UNSUPP);
}

Test(vhost_blk, buffer_outside_guest_memory_fails_and_the_queue_goes_on)
{
	uint16_t head = build(0, VIRTIO_BLK_T_IN, 0, BLK, true);

	fg_desc(&g, FG_DESC, head + 1, FG_GPA + FG_SIZE, BLK,
		VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, head + 2);
	cr_assert_eq(run(0, head), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(request(1, VIRTIO_BLK_T_IN, 0, BLK, true), VIRTIO_BLK_S_OK);
}

Test(vhost_blk, short_header_fails_with_ioerr)
{
	uint16_t head = build(0, VIRTIO_BLK_T_IN, 0, 0, false);

	fg_desc(&g, FG_DESC, head, SLOT(0), 8, VRING_DESC_F_NEXT, head + 2);
	cr_assert_eq(run(0, head), VIRTIO_BLK_S_IOERR);
}

Test(vhost_blk, chain_without_status_byte_is_returned_empty)
{
	uint16_t head = build(0, VIRTIO_BLK_T_IN, 0, BLK, true);

	fg_desc(&g, FG_DESC, head + 1, SLOT(0) + DATA_OFF, BLK, VRING_DESC_F_NEXT, head + 2);
	fg_desc(&g, FG_DESC, head + 2, SLOT(0) + STATUS_OFF, 1, 0, 0); /* readable */
	run(0, head);
	cr_assert_eq(fg_used(&g, 0).len, 0);
	cr_assert_eq(*(uint8_t *)fg_ptr(&g, SLOT(0) + STATUS_OFF), 0xee, "nothing written");
}

Test(vhost_blk, orphaned_request_never_touches_guest_memory)
{
	memset(data(0), 0x77, BLK);
	cr_assert_eq(request(0, VIRTIO_BLK_T_OUT, 0, BLK, false), VIRTIO_BLK_S_OK);
	fg_publish(&g, build(1, VIRTIO_BLK_T_IN, 0, BLK, true));
	vhost_blk_process(q);
	cr_assert_eq(xp.nreqs, 1, "the read is in flight");
	/* the front-end vanishes: requests orphaned, memory unmapped */
	vhost_blk_orphan(&xp, conn);
	vhost_mem_put(conn->mem);
	conn->mem = NULL;
	fg_fini(&g);
	for (int i = 0; i < 1000 && xp.nreqs; i++)
		engine_poll(eng, 10);
	cr_assert_eq(xp.nreqs, 0, "the orphan was freed when the engine completed it");
}

Test(vhost_blk, a_snapshot_is_a_read_only_device)
{
	memset(data(0), 0x5a, BLK);
	cr_assert_eq(request(0, VIRTIO_BLK_T_OUT, 0, BLK, false), VIRTIO_BLK_S_OK);
	cr_assert_not(vhost_blk_features(&xp) & (1ull << VIRTIO_BLK_F_RO));
	blk_close(xp.dev);
	cr_assert_eq(engine_snap_create(eng, "disk0", "s"), 0);
	cr_assert_eq(blk_open(eng, NULL, "disk0@s", &xp.dev), 0);
	xp.readonly = true; /* what vhost_server_export reads from the record */
	cr_assert(vhost_blk_features(&xp) & (1ull << VIRTIO_BLK_F_RO));
	memset(data(1), 0, BLK);
	cr_assert_eq(request(1, VIRTIO_BLK_T_IN, 0, BLK, true), VIRTIO_BLK_S_OK);
	cr_assert_eq(data(1)[BLK - 1], 0x5a);
	cr_assert_eq(request(2, VIRTIO_BLK_T_OUT, 0, BLK, false), VIRTIO_BLK_S_IOERR);
}

static void set_res(void *arg, int res)
{
	*(int *)arg = res;
}

/* The front-end left with a write in flight: the export keeps the volume until that
 * write has completed and been flushed, then gives it back (vhost_export_release);
 * nobody else can open the volume before. */
Test(vhost_blk, volume_released_after_the_orphans_and_a_flush)
{
	struct blk_dev *other = NULL;

	memset(data(0), 0x3c, BLK);
	fg_publish(&g, build(0, VIRTIO_BLK_T_OUT, 0, BLK, false));
	vhost_blk_process(q);
	cr_assert_eq(xp.nreqs, 1, "the write is in flight");
	vhost_blk_orphan(&xp, conn);
	vhost_export_release(&xp);
	cr_assert(xp.releasing);
	cr_assert_not_null(xp.dev, "held while its request runs");
	cr_assert_eq(blk_open(eng, NULL, "disk0", &other), -EBUSY);
	for (int i = 0; i < 1000 && (xp.nreqs || xp.dev); i++)
		engine_poll(eng, 10);
	cr_assert_eq(xp.nreqs, 0);
	cr_assert_null(xp.dev, "released once the write was done and flushed");
	cr_assert_not(xp.flushing);
	cr_assert_eq(blk_open(eng, NULL, "disk0", &other), 0, "the volume is free");
	{
		uint8_t buf[BLK];
		int res = 1;

		cr_assert_eq(blk_read(other, 0, BLK, buf, set_res, &res), 0);
		for (int i = 0; i < 1000 && res == 1; i++)
			engine_poll(eng, 10);
		cr_assert_eq(res, 0);
		cr_assert_eq(buf[0], 0x3c, "the orphaned write landed");
	}
	blk_close(other);
}

/* A front-end that comes back while the release flush runs keeps the claim. */
Test(vhost_blk, a_returning_front_end_keeps_the_claim)
{
	struct blk_dev *dev = xp.dev;

	vhost_export_release(&xp);
	cr_assert(xp.flushing, "nothing in flight: the flush starts at once");
	xp.releasing = false; /* what export_claim does when a front-end connects */
	for (int i = 0; i < 1000 && xp.flushing; i++)
		engine_poll(eng, 10);
	cr_assert_not(xp.flushing);
	cr_assert_eq(xp.dev, dev, "still claimed");
}

/* The config space says the volume's logical sector: 512 on 4 KiB (512e) by default,
 * 4096 on 4 KiB (4Kn) for a volume made so, and its snapshot says the same. */
static void expect_config(uint32_t blk_size, uint8_t phys_exp, uint16_t min_io,
			  uint32_t opt_io)
{
	struct virtio_blk_config cfg;

	vhost_blk_config(&xp, 1, &cfg);
	cr_assert_eq(le32toh(cfg.blk_size), blk_size);
	cr_assert_eq(cfg.physical_block_exp, phys_exp);
	cr_assert_eq(le16toh(cfg.min_io_size), min_io);
	cr_assert_eq(le32toh(cfg.opt_io_size), opt_io);
	cr_assert_eq(le64toh(cfg.capacity), xp.size / 512, "capacity is in 512-byte units");
	cr_assert_eq(blk_size << phys_exp, BLK, "the physical block is the engine's");
}

static void export_4kn(const char *spec)
{
	blk_close(xp.dev);
	xp.dev = NULL;
	struct blk_probe_info info;

	cr_assert_eq(blk_probe(eng, spec, &info), 0); /* what vhost_server_export reads */
	xp.sector_size = info.sector_size;
	cr_assert_eq(blk_open(eng, NULL, spec, &xp.dev), 0);
	cr_assert_eq(blk_sector_size(xp.dev), 4096);
}

static void create_done(void *arg, int res)
{
	int *r = arg;

	*r = res;
}

Test(vhost_blk, the_config_space_says_the_volumes_sector_size)
{
	int res = 1;

	expect_config(512, 3, 8, 8);
	cr_assert_eq(engine_volume_create_async(eng, "disk4k", VOL_SIZE, ENGINE_CREATE_SECTOR_4K,
						create_done, &res), 0);
	while (res == 1)
		cr_assert_geq(engine_poll(eng, 10), 0);
	cr_assert_eq(res, 0);
	export_4kn("disk4k");
	expect_config(4096, 0, 1, 1);
	/* a misaligned request on a 4Kn disk (a guest sends 4 KiB-aligned I/O) is served */
	memset(data(0), 0x3c, 1024);
	cr_assert_eq(request(0, VIRTIO_BLK_T_OUT, 9, 1024, false), VIRTIO_BLK_S_OK);
	memset(data(1), 0xff, BLK);
	cr_assert_eq(request(1, VIRTIO_BLK_T_IN, 8, BLK, true), VIRTIO_BLK_S_OK);
	cr_assert_eq(data(1)[0], 0);
	cr_assert_eq(data(1)[512], 0x3c);
	cr_assert_eq(data(1)[1535], 0x3c);
	cr_assert_eq(data(1)[1536], 0);
	blk_close(xp.dev);
	xp.dev = NULL;
	cr_assert_eq(engine_snap_create(eng, "disk4k", "s"), 0);
	export_4kn("disk4k@s");
	expect_config(4096, 0, 1, 1);
}
