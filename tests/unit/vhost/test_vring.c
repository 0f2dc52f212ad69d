/* tests/unit/vhost/test_vring.c — split virtqueue parsing (vhost/vring.c) and guest
 * memory translation (vhost/memory.c) against an in-process fake guest: good chains,
 * indirect tables, and every way a guest can get a chain wrong. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "fake_guest.h"

static struct fake_guest g;
static struct vhost_chain chain;

static void setup(void)
{
	fg_init(&g);
}

static void teardown(void)
{
	fg_fini(&g);
}

TestSuite(vring, .init = setup, .fini = teardown);

#define R 0
#define W VRING_DESC_F_WRITE
#define N VRING_DESC_F_NEXT

static int pop(void)
{
	return vhost_vring_pop(&g.vr, g.mem, &chain);
}

/* A virtio-blk shaped chain: 16-byte header, 4 KiB data, status byte. */
static void blk_chain(uint16_t head, uint16_t data_flags)
{
	fg_desc(&g, FG_DESC, head, FG_DATA, 16, R | N, head + 1);
	fg_desc(&g, FG_DESC, head + 1, FG_DATA + 4096, 4096, data_flags | N, head + 2);
	fg_desc(&g, FG_DESC, head + 2, FG_DATA + 8192, 1, W, 0);
	fg_publish(&g, head);
}

Test(vring, empty_ring_pops_nothing)
{
	cr_assert_eq(pop(), 0);
}

Test(vring, good_chain_is_translated_readable_first)
{
	blk_chain(0, W);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(chain.err, 0);
	cr_assert_eq(chain.head, 0);
	cr_assert_eq(chain.nread, 1);
	cr_assert_eq(chain.nwrite, 2);
	cr_assert_eq(chain.read_bytes, 16);
	cr_assert_eq(chain.write_bytes, 4097);
	cr_assert_eq(chain.iov[0].iov_base, fg_ptr(&g, FG_DATA));
	cr_assert_eq(chain.iov[1].iov_base, fg_ptr(&g, FG_DATA + 4096));
	cr_assert_eq(chain.status, fg_ptr(&g, FG_DATA + 8192));
	cr_assert_eq(pop(), 0, "one chain, one pop");
}

Test(vring, chains_are_taken_in_avail_order)
{
	blk_chain(3, W);
	blk_chain(0, R);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(chain.head, 3);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(chain.head, 0);
	cr_assert_eq(chain.nread, 2);
}

Test(vring, buffer_outside_guest_memory_fails_the_chain_but_keeps_its_status)
{
	fg_desc(&g, FG_DESC, 0, FG_DATA, 16, R | N, 1);
	fg_desc(&g, FG_DESC, 1, FG_GPA + FG_SIZE - 100, 4096, W | N, 2); /* runs off the end */
	fg_desc(&g, FG_DESC, 2, FG_DATA + 8192, 1, W, 0);
	fg_publish(&g, 0);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(chain.err, -EFAULT);
	cr_assert_eq(chain.status, fg_ptr(&g, FG_DATA + 8192), "IOERR can still be reported");
}

Test(vring, address_wrapping_around_is_outside)
{
	fg_desc(&g, FG_DESC, 0, UINT64_MAX - 8, 16, R | N, 1);
	fg_desc(&g, FG_DESC, 1, FG_DATA, 1, W, 0);
	fg_publish(&g, 0);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(chain.err, -EFAULT);
}

Test(vring, status_outside_memory_leaves_no_status)
{
	fg_desc(&g, FG_DESC, 0, FG_DATA, 16, R | N, 1);
	fg_desc(&g, FG_DESC, 1, 0x10, 1, W, 0); /* below guest RAM */
	fg_publish(&g, 0);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(chain.err, -EFAULT);
	cr_assert_null(chain.status);
}

Test(vring, looping_chain_is_detected)
{
	fg_desc(&g, FG_DESC, 0, FG_DATA, 16, R | N, 1);
	fg_desc(&g, FG_DESC, 1, FG_DATA + 16, 16, R | N, 0);
	fg_publish(&g, 0);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(chain.err, -ELOOP);
	cr_assert_null(chain.status);
}

Test(vring, next_outside_the_table_is_invalid)
{
	fg_desc(&g, FG_DESC, 0, FG_DATA, 16, R | N, FG_NUM + 5);
	fg_publish(&g, 0);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(chain.err, -EINVAL);
	cr_assert_null(chain.status);
}

Test(vring, head_outside_the_table_is_invalid)
{
	fg_publish(&g, FG_NUM);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(chain.err, -EINVAL);
}

Test(vring, readable_after_writable_is_invalid)
{
	fg_desc(&g, FG_DESC, 0, FG_DATA, 16, W | N, 1);
	fg_desc(&g, FG_DESC, 1, FG_DATA + 16, 16, R | N, 2);
	fg_desc(&g, FG_DESC, 2, FG_DATA + 32, 1, W, 0);
	fg_publish(&g, 0);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(chain.err, -EINVAL);
	cr_assert_not_null(chain.status);
}

Test(vring, avail_index_running_ahead_breaks_the_ring)
{
	uint16_t bogus = FG_NUM + 1;

	memcpy((uint8_t *)fg_ptr(&g, FG_AVAIL) + 2, &bogus, 2);
	cr_assert_eq(pop(), -EIO);
}

#define ITABLE (FG_DATA + 0x20000)

Test(vring, indirect_table_is_followed)
{
	fg_desc(&g, ITABLE, 0, FG_DATA, 16, R | N, 1);
	fg_desc(&g, ITABLE, 1, FG_DATA + 4096, 8192, W | N, 2);
	fg_desc(&g, ITABLE, 2, FG_DATA + 16384, 1, W, 0);
	fg_desc(&g, FG_DESC, 5, ITABLE, 3 * 16, VRING_DESC_F_INDIRECT, 0);
	fg_publish(&g, 5);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(chain.err, 0);
	cr_assert_eq(chain.head, 5);
	cr_assert_eq(chain.nread, 1);
	cr_assert_eq(chain.write_bytes, 8193);
	cr_assert_eq(chain.status, fg_ptr(&g, FG_DATA + 16384));
}

Test(vring, nested_indirect_table_is_invalid)
{
	fg_desc(&g, ITABLE, 0, ITABLE + 0x1000, 16, VRING_DESC_F_INDIRECT, 0);
	fg_desc(&g, FG_DESC, 0, ITABLE, 16, VRING_DESC_F_INDIRECT, 0);
	fg_publish(&g, 0);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(chain.err, -EINVAL);
	cr_assert_null(chain.status);
}

Test(vring, indirect_table_of_odd_length_is_invalid)
{
	fg_desc(&g, FG_DESC, 0, ITABLE, 20, VRING_DESC_F_INDIRECT, 0);
	fg_publish(&g, 0);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(chain.err, -EINVAL);
}

Test(vring, indirect_table_outside_memory_is_a_fault)
{
	fg_desc(&g, FG_DESC, 0, FG_GPA + FG_SIZE, 32, VRING_DESC_F_INDIRECT, 0);
	fg_publish(&g, 0);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(chain.err, -EFAULT);
}

Test(vring, loop_inside_an_indirect_table_is_detected)
{
	fg_desc(&g, ITABLE, 0, FG_DATA, 16, R | N, 1);
	fg_desc(&g, ITABLE, 1, FG_DATA, 16, R | N, 0);
	fg_desc(&g, FG_DESC, 0, ITABLE, 32, VRING_DESC_F_INDIRECT, 0);
	fg_publish(&g, 0);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(chain.err, -ELOOP);
}

Test(vring, chain_with_too_many_segments_is_refused)
{
	unsigned n = VHOST_IOV_MAX + 10;

	for (unsigned i = 0; i < n; i++)
		fg_desc(&g, ITABLE, (uint16_t)i, FG_DATA + i * 2, 1,
			i + 1 < n ? W | N : W, (uint16_t)(i + 1));
	fg_desc(&g, FG_DESC, 0, ITABLE, n * 16, VRING_DESC_F_INDIRECT, 0);
	fg_publish(&g, 0);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(chain.err, -E2BIG);
	cr_assert_not_null(chain.status, "the last descriptor is still known");
}

Test(vring, push_fills_the_used_ring)
{
	blk_chain(0, W);
	cr_assert_eq(pop(), 1);
	vhost_vring_push(&g.vr, chain.head, 4097);
	cr_assert_eq(fg_used_idx(&g), 1);
	cr_assert_eq(fg_used(&g, 0).id, 0);
	cr_assert_eq(fg_used(&g, 0).len, 4097);
}

Test(vring, no_interrupt_flag_is_honoured_without_event_idx)
{
	uint16_t flags = VRING_AVAIL_F_NO_INTERRUPT;

	vhost_vring_push(&g.vr, 0, 1);
	cr_assert(vhost_vring_need_call(&g.vr));
	memcpy(fg_ptr(&g, FG_AVAIL), &flags, 2);
	cr_assert_not(vhost_vring_need_call(&g.vr));
}

Test(vring, event_idx_interrupts_only_when_used_event_is_crossed)
{
	uint16_t used_event = 2;

	g.vr.event_idx = true;
	memcpy((uint8_t *)fg_ptr(&g, FG_AVAIL) + 4 + 2 * FG_NUM, &used_event, 2);
	vhost_vring_push(&g.vr, 0, 1);
	cr_assert(vhost_vring_need_call(&g.vr), "first call always signals");
	vhost_vring_push(&g.vr, 1, 1);       /* used idx 2: not past used_event 2 */
	cr_assert_not(vhost_vring_need_call(&g.vr));
	vhost_vring_push(&g.vr, 2, 1);       /* used idx 3: crossed */
	cr_assert(vhost_vring_need_call(&g.vr));
}

Test(vring, rearm_publishes_avail_event_and_sees_late_entries)
{
	uint16_t avail_event;

	g.vr.event_idx = true;
	blk_chain(0, W);
	cr_assert_eq(pop(), 1);
	cr_assert_not(vhost_vring_rearm(&g.vr));
	memcpy(&avail_event, (uint8_t *)fg_ptr(&g, FG_USED) + 4 + 8 * FG_NUM, 2);
	cr_assert_eq(avail_event, 1);
	blk_chain(4, W);
	cr_assert(vhost_vring_rearm(&g.vr));
}

Test(vring, ring_outside_memory_or_of_odd_size_is_refused)
{
	struct vhost_vring vr;

	cr_assert_eq(vhost_vring_map(&vr, g.mem, 12, FG_UVA, FG_UVA + 0x1000, FG_UVA + 0x2000),
		     -EINVAL);
	cr_assert_eq(vhost_vring_map(&vr, g.mem, 16, FG_UVA + FG_SIZE - 8, FG_UVA + 0x1000,
				     FG_UVA + 0x2000), -EFAULT);
	cr_assert_eq(vhost_vring_map(&vr, g.mem, 16, FG_UVA, FG_UVA + 0x1000, 0x1000), -EFAULT);
}

Test(vring, buffer_across_two_adjacent_regions_becomes_two_iovecs)
{
	struct iovec iov[4];
	unsigned n = 0;

	/* split the RAM into two regions, contiguous in guest physical space */
	g.mem->regions[1] = g.mem->regions[0];
	g.mem->regions[0].size = FG_SIZE / 2;
	g.mem->regions[1].gpa += FG_SIZE / 2;
	g.mem->regions[1].uva += FG_SIZE / 2;
	g.mem->regions[1].host += FG_SIZE / 2;
	g.mem->regions[1].size = FG_SIZE / 2;
	g.mem->nregions = 2;
	cr_assert_eq(vhost_mem_gpa_iov(g.mem, FG_GPA + FG_SIZE / 2 - 100, 300, iov, 4, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(iov[0].iov_len, 100);
	cr_assert_eq(iov[1].iov_len, 200);
	cr_assert_eq(iov[1].iov_base, g.ram + FG_SIZE / 2);
	cr_assert_null(vhost_mem_gpa(g.mem, FG_GPA + FG_SIZE / 2 - 100, 300),
		       "not contiguous in one region");
	n = 0;
	cr_assert_eq(vhost_mem_gpa_iov(g.mem, FG_GPA + FG_SIZE / 2 - 100, 300, iov, 1, &n), -E2BIG);
}

Test(vring, iov_copies_skip_and_span_segments)
{
	uint8_t a[4] = { 1, 2, 3, 4 }, b[4] = { 5, 6, 7, 8 }, out[5] = { 0 };
	struct iovec iov[2] = { { a, 4 }, { b, 4 } };
	uint8_t in[3] = { 9, 9, 9 };

	cr_assert_eq(vhost_iov_to_buf(iov, 2, 2, out, 5), 5);
	cr_assert_eq(memcmp(out, (uint8_t[]){ 3, 4, 5, 6, 7 }, 5), 0);
	cr_assert_eq(vhost_iov_from_buf(iov, 2, 3, in, 3), 3);
	cr_assert_eq(a[3], 9);
	cr_assert_eq(b[1], 9);
	cr_assert_eq(vhost_iov_to_buf(iov, 2, 7, out, 5), 1, "short at the end");
}
