/* vhost/memory.c — the guest's memory: SET_MEM_TABLE regions mapped from their fds,
 * and address translation with bounds checks. Every address and length comes from
 * the guest or the front-end and is checked before it becomes a pointer. */
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "common/err.h"
#include "common/log.h"

/* Is [addr, addr+len) inside [start, start+size)? Overflow-safe. */
static bool range_inside(uint64_t addr, uint64_t len, uint64_t start, uint64_t size)
{
	return addr >= start && addr - start <= size && len <= size - (addr - start);
}

static int map_region(struct vhost_mem_region *r, const struct vhost_user_mem_region *w, int fd)
{
	uint64_t len = w->mmap_offset + w->memory_size;
	struct stat st;

	/* a region past the end of its file would fault (SIGBUS) at the first touch */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < len)
		return -EINVAL;
	if (w->memory_size == 0 || len < w->memory_size || len > SIZE_MAX ||
	    w->guest_phys_addr + w->memory_size < w->guest_phys_addr ||
	    w->userspace_addr + w->memory_size < w->userspace_addr)
		return -EINVAL;
	/* map from offset 0: mmap_offset need not be page aligned */
	r->map = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
		      fd, 0);
	if (r->map == MAP_FAILED) {
		r->map = NULL;
		return -errno;
	}
	r->map_len = (size_t)len;
	r->host = (uint8_t *)r->map + w->mmap_offset;
	r->gpa = w->guest_phys_addr;
	r->size = w->memory_size;
	r->uva = w->userspace_addr;
	return 0;
}

int vhost_mem_map(const struct vhost_user_mem_table *t, const int *fds, unsigned nfds,
		  struct vhost_mem **out)
{
	struct vhost_mem *m;
	int r = 0;

	if (t->nregions == 0 || t->nregions > VHOST_USER_MAX_REGIONS || t->nregions != nfds)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->refs = 1;
	for (unsigned i = 0; i < t->nregions && r == 0; i++) {
		r = map_region(&m->regions[i], &t->regions[i], fds[i]);
		if (r == 0)
			m->nregions++;
	}
	if (r < 0) {
		log_msg(LOG_WARN, VHOST_LOG, "cannot map guest memory region %u: %s",
			m->nregions, err_str(-r));
		vhost_mem_put(m);
		return r;
	}
	*out = m;
	return 0;
}

struct vhost_mem *vhost_mem_get(struct vhost_mem *m)
{
	if (m)
		m->refs++;
	return m;
}

void vhost_mem_put(struct vhost_mem *m)
{
	if (!m || --m->refs > 0)
		return;
	for (unsigned i = 0; i < m->nregions; i++)
		if (m->regions[i].map)
			munmap(m->regions[i].map, m->regions[i].map_len);
	free(m);
}

/* Host pointer of [addr, addr+len) in guest physical (or front-end) addresses. */
static void *translate(const struct vhost_mem *m, uint64_t addr, uint64_t len, bool frontend)
{
	for (unsigned i = 0; m && i < m->nregions; i++) {
		const struct vhost_mem_region *r = &m->regions[i];
		uint64_t start = frontend ? r->uva : r->gpa;

		if (range_inside(addr, len, start, r->size))
			return r->host + (addr - start);
	}
	return NULL;
}

void *vhost_mem_gpa(const struct vhost_mem *m, uint64_t gpa, uint64_t len)
{
	return translate(m, gpa, len, false);
}

void *vhost_mem_uva(const struct vhost_mem *m, uint64_t uva, uint64_t len)
{
	return translate(m, uva, len, true);
}

/* The region holding gpa, or NULL. */
static const struct vhost_mem_region *region_of(const struct vhost_mem *m, uint64_t gpa)
{
	for (unsigned i = 0; m && i < m->nregions; i++)
		if (range_inside(gpa, 1, m->regions[i].gpa, m->regions[i].size))
			return &m->regions[i];
	return NULL;
}

int vhost_mem_gpa_iov(const struct vhost_mem *m, uint64_t gpa, uint64_t len,
		      struct iovec *iov, unsigned max, unsigned *n)
{
	if (gpa + len < gpa)
		return -EFAULT;
	while (len > 0) {
		const struct vhost_mem_region *r = region_of(m, gpa);
		uint64_t part;

		if (!r)
			return -EFAULT;
		if (*n >= max)
			return -E2BIG;
		part = r->gpa + r->size - gpa;
		if (part > len)
			part = len;
		iov[(*n)++] = (struct iovec){ r->host + (gpa - r->gpa), (size_t)part };
		gpa += part;
		len -= part;
	}
	return 0;
}
