/* tests/unit/vhost/fake_guest.c — see fake_guest.h. */
#include "fake_guest.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

void fg_init(struct fake_guest *g)
{
	memset(g, 0, sizeof(*g));
	cr_assert_eq(posix_memalign((void **)&g->ram, 4096, FG_SIZE), 0);
	memset(g->ram, 0, FG_SIZE);
	g->mem = calloc(1, sizeof(*g->mem));
	cr_assert_not_null(g->mem);
	g->mem->refs = 1;
	g->mem->nregions = 1;
	g->mem->regions[0] = (struct vhost_mem_region){ .gpa = FG_GPA, .size = FG_SIZE,
							.uva = FG_UVA, .host = g->ram };
	cr_assert_eq(vhost_vring_map(&g->vr, g->mem, FG_NUM, FG_UVA + (FG_DESC - FG_GPA),
				     FG_UVA + (FG_AVAIL - FG_GPA), FG_UVA + (FG_USED - FG_GPA)), 0);
}

void fg_fini(struct fake_guest *g)
{
	vhost_mem_put(g->mem);
	g->mem = NULL;
	free(g->ram);
	g->ram = NULL;
}

void *fg_ptr(struct fake_guest *g, uint64_t gpa)
{
	return g->ram + (gpa - FG_GPA);
}

void fg_desc(struct fake_guest *g, uint64_t table_gpa, uint16_t i, uint64_t addr, uint32_t len,
	     uint16_t flags, uint16_t next)
{
	struct vring_desc d = { .addr = addr, .len = len, .flags = flags, .next = next };

	memcpy((uint8_t *)fg_ptr(g, table_gpa) + i * sizeof(d), &d, sizeof(d));
}

void fg_publish(struct fake_guest *g, uint16_t head)
{
	uint8_t *avail = fg_ptr(g, FG_AVAIL);

	memcpy(avail + 4 + 2 * (g->avail_idx % FG_NUM), &head, 2);
	g->avail_idx++;
	memcpy(avail + 2, &g->avail_idx, 2);
}

uint16_t fg_used_idx(struct fake_guest *g)
{
	uint16_t v;

	memcpy(&v, (uint8_t *)fg_ptr(g, FG_USED) + 2, 2);
	return v;
}

struct vring_used_elem fg_used(struct fake_guest *g, uint16_t i)
{
	struct vring_used_elem e;

	memcpy(&e, (uint8_t *)fg_ptr(g, FG_USED) + 4 + 8 * (i % FG_NUM), sizeof(e));
	return e;
}
