/* vhost/vring.c — split virtqueues (virtio 1.2 §2.7) in guest memory.
 *
 * The guest writes the descriptor table and the avail ring while we read them, and
 * may be hostile: every index and descriptor is read once into a local copy, checked,
 * then used. A chain is at most as long as its table (a longer walk is a loop), an
 * indirect table is one level deep, and every buffer must lie in guest memory.
 *
 * Barriers (the guest runs on other CPUs): read avail->idx, then an acquire fence
 * before the entries it covers; write used elements, then a release fence before
 * used->idx; a full fence between publishing used->idx (or avail_event) and reading
 * the guest's used_event (or avail->idx again), as the kernel's vhost does.
 */
#include "vhost/vhost_internal.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

static uint16_t load16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static void store16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static uint16_t avail_idx(const struct vhost_vring *vr)
{
	return __atomic_load_n((const uint16_t *)(const void *)(vr->avail + 2), __ATOMIC_ACQUIRE);
}

static uint8_t *used_event_ptr(const struct vhost_vring *vr)
{
	return vr->avail + 4 + 2u * vr->num;
}

static uint8_t *avail_event_ptr(const struct vhost_vring *vr)
{
	return vr->used + 4 + 8u * vr->num;
}

int vhost_vring_map(struct vhost_vring *vr, const struct vhost_mem *m, uint16_t num,
		    uint64_t desc_uva, uint64_t avail_uva, uint64_t used_uva)
{
	void *desc, *avail, *used;

	/* indexes wrap at 2^16: num must divide it */
	if (num == 0 || (num & (num - 1)) != 0)
		return -EINVAL;
	desc = vhost_mem_uva(m, desc_uva, VRING_DESC_BYTES(num));
	avail = vhost_mem_uva(m, avail_uva, VRING_AVAIL_BYTES(num));
	used = vhost_mem_uva(m, used_uva, VRING_USED_BYTES(num));
	if (!desc || !avail || !used || (uintptr_t)avail % 2 || (uintptr_t)used % 4)
		return -EFAULT;
	vr->num = num;
	vr->desc = desc;
	vr->avail = avail;
	vr->used = used;
	vr->used_idx = load16(vr->used + 2);
	vr->signalled_valid = false;
	return 0;
}

static void chain_fail(struct vhost_chain *c, int err)
{
	if (!c->err)
		c->err = err;
}

/* Adds one plain descriptor's buffer to the chain. */
static void chain_add(struct vhost_chain *c, const struct vhost_mem *m, const struct vring_desc *d)
{
	bool writable = d->flags & VRING_DESC_F_WRITE;
	unsigned n = c->nread + c->nwrite, before = n;
	int r;

	c->status = writable && d->len ? vhost_mem_gpa(m, d->addr + d->len - 1, 1) : NULL;
	if (!writable && c->nwrite) {
		chain_fail(c, -EINVAL); /* readable after writable: not a valid chain */
		return;
	}
	r = vhost_mem_gpa_iov(m, d->addr, d->len, c->iov, VHOST_IOV_MAX, &n);
	if (r < 0) {
		chain_fail(c, r);
		return;
	}
	if (writable) {
		c->nwrite += n - before;
		c->write_bytes += d->len;
	} else {
		c->nread += n - before;
		c->read_bytes += d->len;
	}
}

static void desc_load(const struct vring_desc *table, uint16_t i, struct vring_desc *d)
{
	memcpy(d, &table[i], sizeof(*d));
	d->addr = le64toh(d->addr);
	d->len = le32toh(d->len);
	d->flags = le16toh(d->flags);
	d->next = le16toh(d->next);
}

/* Switches the walk to an indirect table; false if it is not a valid one. */
static bool enter_indirect(struct vhost_chain *c, const struct vhost_mem *m,
			   const struct vring_desc *d, const struct vring_desc **table,
			   uint32_t *size)
{
	if ((d->flags & VRING_DESC_F_NEXT) || d->len == 0 || d->len % sizeof(struct vring_desc) ||
	    d->len / sizeof(struct vring_desc) > VRING_SIZE_MAX) {
		chain_fail(c, -EINVAL);
		return false;
	}
	*table = vhost_mem_gpa(m, d->addr, d->len);
	if (!*table || (uintptr_t)*table % 2) {
		chain_fail(c, -EFAULT);
		return false;
	}
	*size = d->len / sizeof(struct vring_desc);
	return true;
}

/* Walks the chain from head. A structural error (index out of the table, a loop, a
 * bad indirect table) ends the walk and leaves no status byte: the last descriptor
 * is unknown. A bad buffer only marks the chain failed and the walk goes on. */
static void chain_walk(const struct vhost_vring *vr, const struct vhost_mem *m,
		       struct vhost_chain *c)
{
	const struct vring_desc *table = vr->desc;
	uint32_t size = vr->num, count = 0;
	bool indirect = false;
	uint16_t i = c->head;

	for (;;) {
		struct vring_desc d;

		if (i >= size || ++count > size) {
			chain_fail(c, i >= size ? -EINVAL : -ELOOP);
			c->status = NULL;
			return;
		}
		desc_load(table, i, &d);
		if (d.flags & VRING_DESC_F_INDIRECT) {
			if (indirect || !enter_indirect(c, m, &d, &table, &size)) {
				chain_fail(c, -EINVAL);
				c->status = NULL;
				return;
			}
			indirect = true;
			count = 0;
			i = 0;
			continue;
		}
		chain_add(c, m, &d);
		if (!(d.flags & VRING_DESC_F_NEXT))
			return;
		i = d.next;
	}
}

int vhost_vring_pop(struct vhost_vring *vr, const struct vhost_mem *m, struct vhost_chain *c)
{
	uint16_t avail = avail_idx(vr);
	uint16_t head;

	if (avail == vr->last_avail)
		return 0;
	if ((uint16_t)(avail - vr->last_avail) > vr->num)
		return -EIO; /* more entries than the ring holds: the driver is confused */
	head = load16(vr->avail + 4 + 2u * (vr->last_avail & (vr->num - 1)));
	vr->last_avail++;
	c->head = head;
	c->err = 0;
	c->nread = c->nwrite = 0;
	c->read_bytes = c->write_bytes = 0;
	c->status = NULL;
	if (head >= vr->num) {
		c->err = -EINVAL;
		return 1;
	}
	chain_walk(vr, m, c);
	return 1;
}

void vhost_vring_push(struct vhost_vring *vr, uint16_t head, uint32_t len)
{
	struct vring_used_elem e = { .id = htole32(head), .len = htole32(len) };
	uint8_t *slot = vr->used + 4 + 8u * (vr->used_idx & (vr->num - 1));

	memcpy(slot, &e, sizeof(e));
	vr->used_idx++;
	__atomic_store_n((uint16_t *)(void *)(vr->used + 2), htole16(vr->used_idx), __ATOMIC_RELEASE);
}

bool vhost_vring_need_call(struct vhost_vring *vr)
{
	uint16_t old, event;
	bool valid;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vr->event_idx)
		return !(load16(vr->avail) & VRING_AVAIL_F_NO_INTERRUPT);
	old = vr->signalled_used;
	valid = vr->signalled_valid;
	vr->signalled_used = vr->used_idx;
	vr->signalled_valid = true;
	if (!valid)
		return true;
	event = load16(used_event_ptr(vr));
	/* vring_need_event(): did used_idx cross used_event since the last call? */
	return (uint16_t)(vr->used_idx - event - 1) < (uint16_t)(vr->used_idx - old);
}

bool vhost_vring_rearm(struct vhost_vring *vr)
{
	if (!vr->event_idx)
		return false;
	store16(avail_event_ptr(vr), vr->last_avail);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return avail_idx(vr) != vr->last_avail;
}

/* Copies between buf and the iovecs' bytes [skip, skip + len). */
static size_t iov_copy(const struct iovec *iov, unsigned n, size_t skip, uint8_t *buf,
		       size_t len, bool into_iov)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		uint8_t *base = iov[i].iov_base;
		size_t part;

		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		part = iov[i].iov_len - skip;
		if (part > len - done)
			part = len - done;
		if (into_iov)
			memcpy(base + skip, buf + done, part);
		else
			memcpy(buf + done, base + skip, part);
		done += part;
		skip = 0;
	}
	return done;
}

size_t vhost_iov_to_buf(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len)
{
	return iov_copy(iov, n, skip, buf, len, false);
}

size_t vhost_iov_from_buf(const struct iovec *iov, unsigned n, size_t skip, const void *buf,
			  size_t len)
{
	return iov_copy(iov, n, skip, (uint8_t *)(uintptr_t)buf, len, true);
}
