/* engine/segment_local.c — segments in the slots of this node's store (store/).
 *
 * The first implementation of engine/segment.h: slot i is the byte range
 * [data_offset + i * segment_size, + segment_size) of one device, opened with
 * O_DIRECT; every call is the store's own, at that offset. Only this file (and
 * segment.c's buffers) calls store/.
 */
#include <errno.h>
#include <stdlib.h>

#include "engine/ondisk.h"
#include "engine/segment.h"
#include "store/store.h"

_Static_assert(SEG_ALIGN == STORE_ALIGN, "segment buffers are the store's");

struct seg_local {
	struct segs base; /* first: a struct segs * is a struct seg_local * */
	struct store *st;
	uint64_t data_offset;
	uint32_t segment_size;
};

static struct seg_local *local_of(struct segs *sg)
{
	return (struct seg_local *)sg;
}

static const struct seg_local *local_of_const(const struct segs *sg)
{
	return (const struct seg_local *)sg;
}

uint64_t seg_dev_slot_offset(const struct segs *sg, uint32_t slot)
{
	const struct seg_local *l = local_of_const(sg);

	return l->data_offset + (uint64_t)slot * l->segment_size;
}

/* Where block `block` of slot is; asserts at the border that the range stays inside
 * its slot (a caller's bug would otherwise write into the next segment). */
static int block_offset(const struct segs *sg, uint32_t slot, uint32_t block, size_t len,
			uint64_t *off)
{
	if (slot >= sg->count || block > sg->blocks_per_seg ||
	    len > (size_t)(sg->blocks_per_seg - block) * QUILL_BLOCK_SIZE)
		return -EINVAL;
	*off = seg_dev_slot_offset(sg, slot) + (uint64_t)block * QUILL_BLOCK_SIZE;
	return 0;
}

static size_t iov_len(const struct iovec *iov, int iovcnt)
{
	size_t n = 0;

	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

static int local_readv(struct segs *sg, uint32_t slot, uint32_t block, const struct iovec *iov,
		       int iovcnt, seg_cb cb, void *arg)
{
	uint64_t off;
	int r = block_offset(sg, slot, block, iov_len(iov, iovcnt), &off);

	if (r < 0)
		return r;
	if (iovcnt == 1) /* one buffer: a plain read (no iovec copy in the store) */
		return store_read(local_of(sg)->st, off, iov[0].iov_base, iov[0].iov_len, cb, arg);
	return store_readv(local_of(sg)->st, off, iov, iovcnt, cb, arg);
}

static int local_writev(struct segs *sg, uint32_t slot, uint32_t block, const struct iovec *iov,
			int iovcnt, seg_cb cb, void *arg)
{
	uint64_t off;
	int r = block_offset(sg, slot, block, iov_len(iov, iovcnt), &off);

	if (r < 0)
		return r;
	if (iovcnt == 1)
		return store_write(local_of(sg)->st, off, iov[0].iov_base, iov[0].iov_len, cb, arg);
	return store_writev(local_of(sg)->st, off, iov, iovcnt, cb, arg);
}

static int local_flush(struct segs *sg, seg_cb cb, void *arg)
{
	return store_flush(local_of(sg)->st, cb, arg);
}

static int local_read_sync(struct segs *sg, uint32_t slot, uint32_t block, void *buf, size_t len)
{
	uint64_t off;
	int r = block_offset(sg, slot, block, len, &off);

	return r < 0 ? r : store_read_sync(local_of(sg)->st, off, buf, len);
}

static int local_write_sync(struct segs *sg, uint32_t slot, uint32_t block, const void *buf,
			    size_t len)
{
	uint64_t off;
	int r = block_offset(sg, slot, block, len, &off);

	return r < 0 ? r : store_write_sync(local_of(sg)->st, off, buf, len);
}

static int local_flush_sync(struct segs *sg)
{
	return store_flush_sync(local_of(sg)->st);
}

static int local_poll(struct segs *sg, int timeout_ms)
{
	return store_poll(local_of(sg)->st, timeout_ms);
}

static int local_reap(struct segs *sg)
{
	return store_reap(local_of(sg)->st);
}

static int local_wait_fd(struct segs *sg, struct loop_wait *w, int timeout_ms)
{
	return store_wait_fd(local_of(sg)->st, w, timeout_ms);
}

static int local_event_fd(const struct segs *sg)
{
	return store_event_fd(local_of_const(sg)->st);
}

static unsigned local_inflight(const struct segs *sg)
{
	return store_inflight(local_of_const(sg)->st);
}

static void local_close(struct segs *sg)
{
	store_close(local_of(sg)->st);
	free(sg);
}

static const struct seg_ops local_ops = {
	.readv = local_readv,
	.writev = local_writev,
	.flush = local_flush,
	.read_sync = local_read_sync,
	.write_sync = local_write_sync,
	.flush_sync = local_flush_sync,
	.poll = local_poll,
	.reap = local_reap,
	.wait_fd = local_wait_fd,
	.event_fd = local_event_fd,
	.inflight = local_inflight,
	.close = local_close,
};

int seg_local_open(const char *path, uint64_t create_size, unsigned queue_depth,
		   struct segs **out)
{
	struct store_opts so = { .path = path, .create_size = create_size,
				 .queue_depth = queue_depth };
	struct seg_local *l = calloc(1, sizeof(*l));
	int r;

	if (!l)
		return -ENOMEM;
	r = store_open(&so, &l->st);
	if (r < 0) {
		free(l);
		return r;
	}
	l->base.ops = &local_ops;
	*out = &l->base;
	return 0;
}

void seg_local_layout(struct segs *sg, uint64_t data_offset, uint32_t segment_size,
		      uint32_t count)
{
	struct seg_local *l = local_of(sg);

	l->data_offset = data_offset;
	l->segment_size = segment_size;
	sg->count = count;
	sg->blocks_per_seg = segment_size / QUILL_BLOCK_SIZE;
}

void *seg_buf_alloc(size_t len)
{
	return store_buf_alloc(len);
}

void *seg_buf_dup(const void *src, size_t len)
{
	return store_buf_dup(src, len);
}

void seg_buf_free(void *buf)
{
	store_buf_free(buf);
}

/* ---- the device's own (superblock, prezero) ---- */

uint64_t seg_dev_size(const struct segs *sg)
{
	return store_size(local_of_const(sg)->st);
}

bool seg_dev_created(const struct segs *sg)
{
	return store_created(local_of_const(sg)->st);
}

int seg_dev_grow(struct segs *sg, uint64_t size)
{
	return store_grow(local_of(sg)->st, size);
}

int seg_dev_next_data(struct segs *sg, uint64_t off, uint64_t *start, uint64_t *end)
{
	return store_next_data(local_of(sg)->st, off, start, end);
}

int seg_dev_read_sync(struct segs *sg, uint64_t off, void *buf, size_t len)
{
	return store_read_sync(local_of(sg)->st, off, buf, len);
}

int seg_dev_write_sync(struct segs *sg, uint64_t off, const void *buf, size_t len)
{
	return store_write_sync(local_of(sg)->st, off, buf, len);
}

int seg_dev_flush_sync(struct segs *sg)
{
	return store_flush_sync(local_of(sg)->st);
}

int seg_dev_write(struct segs *sg, uint64_t off, const void *buf, size_t len, seg_cb cb,
		  void *arg)
{
	return store_write(local_of(sg)->st, off, buf, len, cb, arg);
}
