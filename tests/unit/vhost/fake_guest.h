/* tests/unit/vhost/fake_guest.h — a guest in-process for the vhost tests: one
 * region of "guest RAM" (malloc'd, so ASan sees any touch after it is freed), a
 * split ring inside it, and helpers to write descriptors and make them available,
 * as a virtio driver would. */
#ifndef QUILL_TESTS_FAKE_GUEST_H
#define QUILL_TESTS_FAKE_GUEST_H

#include <stdint.h>

#include "vhost/vhost_internal.h"

#define FG_GPA   0x100000ull          /* guest physical start of RAM */
#define FG_SIZE  (4u << 20)
#define FG_UVA   0x7f1200000000ull    /* where "QEMU" has it */
#define FG_NUM   16u                  /* ring entries */
#define FG_DESC  (FG_GPA + 0x0000)
#define FG_AVAIL (FG_GPA + 0x1000)
#define FG_USED  (FG_GPA + 0x2000)
#define FG_DATA  (FG_GPA + 0x10000)   /* free for buffers */

struct fake_guest {
	uint8_t *ram;
	struct vhost_mem *mem;   /* one reference held by the test */
	struct vhost_vring vr;
	uint16_t avail_idx;
};

void fg_init(struct fake_guest *g);
/* Drops the test's memory reference and frees the RAM. */
void fg_fini(struct fake_guest *g);
void *fg_ptr(struct fake_guest *g, uint64_t gpa);
/* Descriptor i of the table at table_gpa (FG_DESC for the ring's own). */
void fg_desc(struct fake_guest *g, uint64_t table_gpa, uint16_t i, uint64_t addr, uint32_t len,
	     uint16_t flags, uint16_t next);
/* Makes the chain at head available. */
void fg_publish(struct fake_guest *g, uint16_t head);
uint16_t fg_used_idx(struct fake_guest *g);
struct vring_used_elem fg_used(struct fake_guest *g, uint16_t i);

#endif
