/* tests/unit/vhost/test_vhost_blk.c — virtio-blk requests (vhost/blk.c) on a real
 * engine, through a fake guest's ring: every request type, requests past the end
 * and misaligned, malformed chains (the request fails, the queue goes on), and a
 * request orphaned by a disconnect whose guest memory is gone before the engine
 * completes it (ASan would see any touch), and the config space of a 512-byte and a
 * 4Kn volume. No QEMU, no socket. */
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
#include "testutil.h"

#ifndef QUILL_TEST_DIR
#define QUILL_TEST_DIR "/var/tmp"
#endif

#define BLK ENGINE_BLOCK_SIZE
#define VOL_SIZE (1u << 20)
#define SLOT(s) (FG_DATA + (uint64_t)(s) * 0x40000) /* a request's buffers */
#define DATA_OFF 0x1000
#define STATUS_OFF 0x30000

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
	char store[PATH_MAX + 16], meta[PATH_MAX + 16];
	struct engine_opts o;
	int r = testutil_scratch_dir(QUILL_TEST_DIR, "quill-vhost", dir, sizeof(dir));

	if (r == -EOPNOTSUPP)
		cr_skip_test("%s does not support O_DIRECT", dir);
	cr_assert_eq(r, 0);
	snprintf(store, sizeof(store), "%s/store.img", dir);
	snprintf(meta, sizeof(meta), "%s/meta", dir);
	engine_opts_init(&o);
	o.store_path = store;
	o.meta_path = meta;
	o.store_size = 64u << 20;
	o.format = true;
	o.segment_size = 1u << 20;
	cr_assert_eq(engine_open(&o, &eng), 0);
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
	cr_assert_eq(blk_open(eng, "disk0", &xp.dev), 0);
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
	cr_assert_eq(blk_state(xp.dev, 0), ENGINE_BLOCK_DATA);
	cr_assert_eq(blk_state(xp.dev, 1 * BLK), ENGINE_BLOCK_ZERO);
	cr_assert_eq(blk_state(xp.dev, 2 * BLK), ENGINE_BLOCK_ZERO);
	cr_assert_eq(blk_state(xp.dev, 3 * BLK), ENGINE_BLOCK_HOLE, "unmap allowed");
	cr_assert_eq(blk_state(xp.dev, 4 * BLK), ENGINE_BLOCK_HOLE, "discard");
	cr_assert_eq(blk_state(xp.dev, 5 * BLK), ENGINE_BLOCK_DATA);
	cr_assert_eq(blk_state(xp.dev, 10 * BLK), ENGINE_BLOCK_ZERO);
	cr_assert_eq(blk_state(xp.dev, 11 * BLK), ENGINE_BLOCK_HOLE);
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

/* A second queue's ring in the same guest memory, below FG_DATA. */
#define Q2_DESC  (FG_GPA + 0x3000)
#define Q2_AVAIL (FG_GPA + 0x4000)
#define Q2_USED  (FG_GPA + 0x5000)

static uint16_t q2_avail_idx;

static struct vhost_queue *second_queue(void)
{
	struct vhost_queue *q2 = &conn->queues[1];

	conn->nqueues = 2;
	q2->conn = conn;
	q2->index = 1;
	cr_assert_eq(vhost_vring_map(&q2->vr, g.mem, FG_NUM, FG_UVA + (Q2_DESC - FG_GPA),
				     FG_UVA + (Q2_AVAIL - FG_GPA), FG_UVA + (Q2_USED - FG_GPA)),
		     0);
	q2->kick_fd = q2->call_fd = -1;
	q2->mapped = q2->started = q2->enabled = true;
	q2_avail_idx = 0;
	return q2;
}

static void q2_publish(uint16_t head)
{
	uint8_t *avail = fg_ptr(&g, Q2_AVAIL);

	memcpy(avail + 4 + 2 * (q2_avail_idx % FG_NUM), &head, 2);
	q2_avail_idx++;
	memcpy(avail + 2, &q2_avail_idx, 2);
}

static uint16_t q2_used_idx(void)
{
	uint16_t v;

	memcpy(&v, (uint8_t *)fg_ptr(&g, Q2_USED) + 2, 2);
	return v;
}

/* Overlapping writes at odd sectors from two queues, all in flight together: each
 * one's read-modify-write of a shared 4 KiB block waits for the other's, so every
 * byte ends as the model says (requests apply in the order they were taken). */
Test(vhost_blk, overlapping_unaligned_writes_from_two_queues_keep_every_byte)
{
	enum { PER_QUEUE = 5, SPAN = 6 * BLK };
	static const uint32_t sectors[2 * PER_QUEUE] = { 1, 7, 9, 20, 33, 3, 8, 15, 21, 40 };
	static const uint32_t counts[2 * PER_QUEUE] = { 9, 3, 17, 2, 5, 6, 11, 1, 13, 4 };
	struct vhost_queue *q2 = second_queue();
	uint16_t used0 = fg_used_idx(&g);
	uint8_t model[SPAN];

	pattern(model, SPAN, 50);
	memcpy(data(0), model, SPAN);
	cr_assert_eq(request(0, VIRTIO_BLK_T_OUT, 0, SPAN, false), VIRTIO_BLK_S_OK);
	used0 = fg_used_idx(&g);
	for (unsigned i = 0; i < 2 * PER_QUEUE; i++) {
		unsigned k = i % PER_QUEUE;
		uint32_t len = counts[i] * 512;
		uint16_t head;

		pattern(data(i), len, i);
		memcpy(model + (size_t)sectors[i] * 512, data(i), len);
		head = build_at(i < PER_QUEUE ? FG_DESC : Q2_DESC, (uint16_t)(3 * k), i,
				VIRTIO_BLK_T_OUT, sectors[i], len, false);
		if (i < PER_QUEUE)
			fg_publish(&g, head);
		else
			q2_publish(head);
	}
	vhost_blk_process(q);
	vhost_blk_process(q2);
	cr_assert_gt(blk_locked(xp.dev), 1, "the writes should be in flight together");
	for (int i = 0; i < 1000 && (fg_used_idx(&g) != used0 + PER_QUEUE ||
				     q2_used_idx() != PER_QUEUE); i++)
		engine_poll(eng, 10);
	cr_assert_eq(fg_used_idx(&g), used0 + PER_QUEUE);
	cr_assert_eq(q2_used_idx(), PER_QUEUE);
	for (unsigned i = 0; i < 2 * PER_QUEUE; i++)
		cr_assert_eq(*(uint8_t *)fg_ptr(&g, SLOT(i) + STATUS_OFF), VIRTIO_BLK_S_OK,
			     "write %u", i);
	cr_assert_eq(request(0, VIRTIO_BLK_T_IN, 0, SPAN, true), VIRTIO_BLK_S_OK);
	for (unsigned i = 0; i < SPAN; i++)
		cr_assert_eq(data(0)[i], model[i], "byte %u", i);
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
	cr_assert_eq(blk_open(eng, "disk0@s", &xp.dev), 0);
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
	cr_assert_eq(blk_open(eng, "disk0", &other), -EBUSY);
	for (int i = 0; i < 1000 && (xp.nreqs || xp.dev); i++)
		engine_poll(eng, 10);
	cr_assert_eq(xp.nreqs, 0);
	cr_assert_null(xp.dev, "released once the write was done and flushed");
	cr_assert_not(xp.flushing);
	cr_assert_eq(blk_open(eng, "disk0", &other), 0, "the volume is free");
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
	cr_assert_eq(blk_open(eng, spec, &xp.dev), 0);
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
