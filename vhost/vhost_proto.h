/* vhost/vhost_proto.h — the wire formats of vhost-user-blk: vhost-user messages
 * (QEMU's docs/interop/vhost-user.rst), the split virtqueue (virtio 1.2 §2.7) and
 * virtio-blk requests and config space (virtio 1.2 §5.2). Prose and tables:
 * docs/vhost.md.
 *
 * Everything is little-endian (vhost-user is host-endian, and we only run on
 * little-endian hosts; virtio 1.x rings and requests are little-endian by spec).
 * Ring and request fields live in guest memory the guest can change at any time:
 * read each once (le*toh on a copy), check it, then use the copy.
 */
#ifndef QUILL_VHOST_VHOST_PROTO_H
#define QUILL_VHOST_VHOST_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* ---- vhost-user messages ---- */

enum vhost_user_request {
	VHOST_USER_GET_FEATURES = 1,
	VHOST_USER_SET_FEATURES = 2,
	VHOST_USER_SET_OWNER = 3,
	VHOST_USER_RESET_OWNER = 4,
	VHOST_USER_SET_MEM_TABLE = 5,
	VHOST_USER_SET_LOG_BASE = 6,
	VHOST_USER_SET_LOG_FD = 7,
	VHOST_USER_SET_VRING_NUM = 8,
	VHOST_USER_SET_VRING_ADDR = 9,
	VHOST_USER_SET_VRING_BASE = 10,
	VHOST_USER_GET_VRING_BASE = 11,
	VHOST_USER_SET_VRING_KICK = 12,
	VHOST_USER_SET_VRING_CALL = 13,
	VHOST_USER_SET_VRING_ERR = 14,
	VHOST_USER_GET_PROTOCOL_FEATURES = 15,
	VHOST_USER_SET_PROTOCOL_FEATURES = 16,
	VHOST_USER_GET_QUEUE_NUM = 17,
	VHOST_USER_SET_VRING_ENABLE = 18,
	VHOST_USER_GET_CONFIG = 24,
	VHOST_USER_SET_CONFIG = 25,
	VHOST_USER_RESET_DEVICE = 34,
	VHOST_USER_REQUEST_MAX = 64, /* for tables of names */
};

#define VHOST_USER_VERSION         0x1u
#define VHOST_USER_VERSION_MASK    0x3u
#define VHOST_USER_FLAG_REPLY      (1u << 2)
#define VHOST_USER_FLAG_NEED_REPLY (1u << 3)

/* Every message: this header, then `size` bytes of payload. File descriptors travel
 * as SCM_RIGHTS with the header's bytes. */
struct vhost_user_hdr {
	uint32_t request;  /* enum vhost_user_request */
	uint32_t flags;    /* version (bits 0-1), REPLY, NEED_REPLY */
	uint32_t size;     /* payload bytes that follow */
} __attribute__((packed));
_Static_assert(sizeof(struct vhost_user_hdr) == 12, "vhost-user header");

/* SET_VRING_NUM, SET_VRING_BASE, GET_VRING_BASE (reply), SET_VRING_ENABLE */
struct vhost_user_vring_state {
	uint32_t index;
	uint32_t num;
} __attribute__((packed));
_Static_assert(sizeof(struct vhost_user_vring_state) == 8, "vring state");

/* SET_VRING_ADDR: ring addresses in the front-end's (QEMU's) virtual address space */
struct vhost_user_vring_addr {
	uint32_t index;
	uint32_t flags;          /* bit 0: log the used ring (not offered) */
	uint64_t desc_user_addr;
	uint64_t used_user_addr;
	uint64_t avail_user_addr;
	uint64_t log_guest_addr;
} __attribute__((packed));
_Static_assert(sizeof(struct vhost_user_vring_addr) == 40, "vring addr");
_Static_assert(offsetof(struct vhost_user_vring_addr, avail_user_addr) == 24, "avail addr");

#define VHOST_USER_MAX_REGIONS 8u

struct vhost_user_mem_region {
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;  /* the same memory in QEMU's address space */
	uint64_t mmap_offset;     /* where the region starts in its fd */
} __attribute__((packed));
_Static_assert(sizeof(struct vhost_user_mem_region) == 32, "memory region");

/* SET_MEM_TABLE: one fd per region, in order */
struct vhost_user_mem_table {
	uint32_t nregions;
	uint32_t padding;
	struct vhost_user_mem_region regions[VHOST_USER_MAX_REGIONS];
} __attribute__((packed));
_Static_assert(sizeof(struct vhost_user_mem_table) == 8 + 8 * 32, "memory table");

/* SET_VRING_KICK/CALL/ERR: a u64 whose low byte is the ring index; NOFD set means
 * no fd came with it (polling mode, which we refuse). */
#define VHOST_USER_VRING_IDX_MASK 0xffu
#define VHOST_USER_VRING_NOFD     (1u << 8)

#define VHOST_USER_CONFIG_MAX 256u

/* GET_CONFIG (request and reply), SET_CONFIG */
struct vhost_user_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t payload[VHOST_USER_CONFIG_MAX];
} __attribute__((packed));
#define VHOST_USER_CONFIG_HDR_SIZE 12u
_Static_assert(offsetof(struct vhost_user_config, payload) == VHOST_USER_CONFIG_HDR_SIZE,
	       "config header");

/* Feature bits (GET/SET_FEATURES) that are vhost-user's own */
#define VHOST_USER_F_PROTOCOL_FEATURES 30

/* Protocol feature bits (GET/SET_PROTOCOL_FEATURES) */
#define VHOST_USER_PROTOCOL_F_MQ        0
#define VHOST_USER_PROTOCOL_F_REPLY_ACK 3
#define VHOST_USER_PROTOCOL_F_CONFIG    9
#define VHOST_USER_PROTOCOL_F_RESET_DEVICE 13

/* ---- virtio feature bits ---- */

#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_RO           5  /* a snapshot: the device is read-only */
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_TOPOLOGY     10
#define VIRTIO_BLK_F_MQ           12
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX   29
#define VIRTIO_F_VERSION_1        32

/* ---- split virtqueue (virtio 1.2 §2.7) ---- */

#define VRING_DESC_F_NEXT     1u
#define VRING_DESC_F_WRITE    2u   /* device writes this buffer */
#define VRING_DESC_F_INDIRECT 4u   /* buffer is a table of descriptors */

#define VRING_AVAIL_F_NO_INTERRUPT 1u
#define VRING_USED_F_NO_NOTIFY     1u

#define VRING_SIZE_MAX 32768u

struct vring_desc {
	uint64_t addr;    /* guest physical */
	uint32_t len;
	uint16_t flags;
	uint16_t next;
} __attribute__((packed));
_Static_assert(sizeof(struct vring_desc) == 16, "vring descriptor");

struct vring_used_elem {
	uint32_t id;      /* head of the chain */
	uint32_t len;     /* bytes written into the chain's writable buffers */
} __attribute__((packed));
_Static_assert(sizeof(struct vring_used_elem) == 8, "used element");

/* Avail ring: le16 flags, le16 idx, le16 ring[num], le16 used_event (EVENT_IDX).
 * Used ring: le16 flags, le16 idx, vring_used_elem ring[num], le16 avail_event. */
#define VRING_AVAIL_BYTES(num) (4u + 2u * (num) + 2u)
#define VRING_USED_BYTES(num)  (4u + 8u * (num) + 2u)
#define VRING_DESC_BYTES(num)  (16u * (num))

/* ---- virtio-blk (virtio 1.2 §5.2) ---- */

#define VIRTIO_BLK_SECTOR 512u

enum virtio_blk_type {
	VIRTIO_BLK_T_IN = 0,
	VIRTIO_BLK_T_OUT = 1,
	VIRTIO_BLK_T_FLUSH = 4,
	VIRTIO_BLK_T_GET_ID = 8,
	VIRTIO_BLK_T_DISCARD = 11,
	VIRTIO_BLK_T_WRITE_ZEROES = 13,
};

enum virtio_blk_status {
	VIRTIO_BLK_S_OK = 0,
	VIRTIO_BLK_S_IOERR = 1,
	VIRTIO_BLK_S_UNSUPP = 2,
};

#define VIRTIO_BLK_ID_BYTES 20u

/* First in every request's device-readable part */
struct virtio_blk_outhdr {
	uint32_t type;     /* enum virtio_blk_type */
	uint32_t ioprio;
	uint64_t sector;   /* 512-byte units, whatever blk_size is */
} __attribute__((packed));
_Static_assert(sizeof(struct virtio_blk_outhdr) == 16, "virtio-blk header");

/* DISCARD and WRITE_ZEROES payload: one or more of these */
struct virtio_blk_discard_write_zeroes {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;    /* VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP (WRITE_ZEROES only) */
} __attribute__((packed));
_Static_assert(sizeof(struct virtio_blk_discard_write_zeroes) == 16, "discard segment");
#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1u /* may leave holes (else: allocated zeros) */

struct virtio_blk_config {
	uint64_t capacity;          /* 512-byte sectors */
	uint32_t size_max;
	uint32_t seg_max;
	uint16_t cylinders;
	uint8_t heads;
	uint8_t sectors;
	uint32_t blk_size;          /* logical block size */
	uint8_t physical_block_exp; /* physical = logical << exp */
	uint8_t alignment_offset;
	uint16_t min_io_size;       /* in logical blocks */
	uint32_t opt_io_size;       /* in logical blocks */
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
} __attribute__((packed));
_Static_assert(sizeof(struct virtio_blk_config) == 60, "virtio-blk config");
_Static_assert(offsetof(struct virtio_blk_config, blk_size) == 20, "blk_size");
_Static_assert(offsetof(struct virtio_blk_config, num_queues) == 34, "num_queues");
_Static_assert(offsetof(struct virtio_blk_config, max_discard_sectors) == 36, "discard");
_Static_assert(offsetof(struct virtio_blk_config, write_zeroes_may_unmap) == 56, "wz unmap");

#endif
