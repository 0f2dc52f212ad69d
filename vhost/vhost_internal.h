/* vhost/vhost_internal.h — what the vhost-user-blk back-end's files share:
 * server.c (exports, listeners, the front-end's socket), protocol.c (vhost-user
 * messages: the per-connection state machine), memory.c (guest memory), vring.c
 * (split virtqueues) and blk.c (virtio-blk requests on the engine).
 *
 * Ownership: the server owns its exports; an export owns its open engine volume, its
 * listener, at most one connection (one front-end at a time) and every request in
 * flight, including orphans whose connection went away. A request holds a reference
 * on the guest memory it was parsed against until it completes or is orphaned.
 * Everything runs on the loop's thread, which is also the engine's.
 */
#ifndef QUILL_VHOST_VHOST_INTERNAL_H
#define QUILL_VHOST_VHOST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "block/block.h"
#include "vhost/vhost_blk.h"
#include "vhost/vhost_proto.h"

#define VHOST_LOG "vhost"

/* The advertised physical block is the engine's; the logical one is the volume's
 * sector (blk_sector_size), which divides it. */
_Static_assert(BLK_BLOCK_SIZE % BLK_SECTOR_MAX == 0 &&
	       BLK_SECTOR_MAX % VIRTIO_BLK_SECTOR == 0, "sector sizes");

#define VHOST_QUEUES_MAX        8u
#define VHOST_QUEUES_DEFAULT    4u
#define VHOST_IOV_MAX           256u          /* iovecs one request may use */
#define VHOST_BLK_SEG_MAX       126u          /* advertised data segments per request */
#define VHOST_BLK_SEG_SIZE_MAX  (256u << 10)  /* advertised bytes per segment: a request
						 then stays under VHOST_BLK_IO_MAX */
_Static_assert((uint64_t)VHOST_BLK_SEG_MAX * (256u << 10) <= (32u << 20),
	       "the advertised limits fit VHOST_BLK_IO_MAX");
#define VHOST_BLK_IO_MAX        (32u << 20)   /* bytes of one READ or WRITE */
/* Bounce buffers an export may hold at once: past it, queues stop taking requests
 * until some complete (a guest must not run quilld out of memory). */
#define VHOST_BOUNCE_MAX        (256u << 20)
#define VHOST_BLK_DISCARD_SEG_MAX 16u
#define VHOST_BLK_DISCARD_SECTORS_MAX (1u << 22) /* 2 GiB per segment */
#define VHOST_USER_PAYLOAD_MAX  4096u         /* larger messages close the connection */
#define VHOST_OUTBUF_SIZE       4096u

/* ---- memory.c: the guest's memory, mapped from SET_MEM_TABLE's fds ---- */

struct vhost_mem_region {
	uint64_t gpa;        /* guest physical start */
	uint64_t size;
	uint64_t uva;        /* the front-end's virtual address of gpa */
	uint8_t *host;       /* our address of gpa */
	void *map;           /* what to munmap, or NULL (tests build regions by hand) */
	size_t map_len;
};

struct vhost_mem {
	unsigned refs;
	unsigned nregions;
	struct vhost_mem_region regions[VHOST_USER_MAX_REGIONS];
};

/* Maps every region of a SET_MEM_TABLE (fds[i] for region i; the fds are only
 * borrowed). -EINVAL bad table, -errno from mmap. One reference. */
int vhost_mem_map(const struct vhost_user_mem_table *t, const int *fds, unsigned nfds,
		  struct vhost_mem **out);
struct vhost_mem *vhost_mem_get(struct vhost_mem *m);
void vhost_mem_put(struct vhost_mem *m); /* unmaps at the last reference; NULL ok */
/* Host pointer of [gpa, gpa+len) if it lies inside one region, else NULL. */
void *vhost_mem_gpa(const struct vhost_mem *m, uint64_t gpa, uint64_t len);
/* The same for an address of the front-end's (ring addresses are given so). */
void *vhost_mem_uva(const struct vhost_mem *m, uint64_t uva, uint64_t len);
/* Appends the host iovecs of [gpa, gpa+len) (split where regions meet) to iov, at
 * most max of them. -EFAULT outside guest memory, -E2BIG more than max. */
int vhost_mem_gpa_iov(const struct vhost_mem *m, uint64_t gpa, uint64_t len,
		      struct iovec *iov, unsigned max, unsigned *n);

/* ---- vring.c: a split virtqueue ---- */

struct vhost_vring {
	uint16_t num;                /* entries; a power of two */
	const struct vring_desc *desc;
	uint8_t *avail;              /* flags, idx, ring[num], used_event */
	uint8_t *used;               /* flags, idx, ring[num], avail_event */
	uint16_t last_avail;         /* next avail entry to take */
	uint16_t used_idx;           /* our copy of used->idx */
	bool event_idx;              /* VIRTIO_RING_F_EVENT_IDX negotiated */
	bool signalled_valid;        /* signalled_used means something */
	uint16_t signalled_used;     /* used_idx at the last interrupt */
};

/* One descriptor chain, translated. The device-readable buffers come first
 * (iov[0, nread)), then the writable ones (iov[nread, nread + nwrite)). */
struct vhost_chain {
	uint16_t head;
	int err;                     /* 0, or why it cannot be served (-EFAULT a buffer
					outside guest memory, -ELOOP a loop or a chain
					longer than its table, -E2BIG too many segments,
					-EINVAL a malformed chain) */
	unsigned nread, nwrite;
	uint64_t read_bytes, write_bytes;
	uint8_t *status;             /* last byte of the last descriptor if that one is
					writable and in guest memory; else NULL */
	struct iovec iov[VHOST_IOV_MAX];
};

/* Points the ring at guest memory (addresses are the front-end's, as in
 * SET_VRING_ADDR) and reads used->idx. -EINVAL bad size, -EFAULT outside memory. */
int vhost_vring_map(struct vhost_vring *vr, const struct vhost_mem *m, uint16_t num,
		    uint64_t desc_uva, uint64_t avail_uva, uint64_t used_uva);
/* Takes the next available chain: 1 taken (c filled, maybe with c->err set), 0 none,
 * -EIO the avail index is impossible (the ring is broken; stop using it). */
int vhost_vring_pop(struct vhost_vring *vr, const struct vhost_mem *m, struct vhost_chain *c);
/* Returns a chain to the driver with len bytes written. */
void vhost_vring_push(struct vhost_vring *vr, uint16_t head, uint32_t len);
/* After pushes: must the driver be interrupted (EVENT_IDX / NO_INTERRUPT)? */
bool vhost_vring_need_call(struct vhost_vring *vr);
/* With EVENT_IDX, asks for a kick at the next available entry; returns true if
 * entries arrived meanwhile (process them before sleeping). Without, false. */
bool vhost_vring_rearm(struct vhost_vring *vr);

/* Copies between a buffer and a range of iovecs, skipping skip bytes first; returns
 * the bytes copied. */
size_t vhost_iov_to_buf(const struct iovec *iov, unsigned n, size_t skip, void *buf,
			size_t len);
size_t vhost_iov_from_buf(const struct iovec *iov, unsigned n, size_t skip, const void *buf,
			  size_t len);

/* ---- the export, its connection and queues ---- */

struct loop;
struct loop_timer;
struct loop_watch;
struct vhost_conn;
struct vhost_req;

struct vhost_queue {
	struct vhost_conn *conn;
	unsigned index;
	struct vhost_vring vr;
	uint16_t num;                /* SET_VRING_NUM */
	uint64_t desc_uva, avail_uva, used_uva; /* SET_VRING_ADDR, 0 = not yet */
	int kick_fd, call_fd;
	struct loop_watch *kick_watch;
	bool mapped;                 /* vr points into the current memory */
	struct vhost_mem *ring_mem;  /* the memory vr points into, held while it does: a
					later SET_MEM_TABLE must not unmap the ring under
					a request still in flight */
	bool started;                /* has a kick fd; not stopped by GET_VRING_BASE */
	bool enabled;                /* SET_VRING_ENABLE (see docs/vhost.md) */
	bool broken;                 /* the driver corrupted the ring: ignored until reset */
	bool call_pending;           /* used entries pushed since the last interrupt check */
	bool throttled;              /* stopped taking requests (too many in flight) */
	unsigned inflight;           /* requests taken, not yet pushed back */
};

struct vhost_export {
	struct vhost_export *next;
	struct vhost_server *srv;
	char name[VOLSPEC_MAX + 1]; /* VOL, or VOL@SNAP (read-only) */
	char path[108];
	struct blk_dev *dev;         /* the claimed volume (block layer: ranges, RMW, range
					locks) from a front-end's connect until its release
					(server.c), else NULL */
	bool releasing;              /* its front-end left: dev is given back once the
					requests it left are done and flushed */
	bool flushing;               /* that flush is running */
	bool readonly;               /* a snapshot (from the record, not the handle) */
	uint64_t size;               /* bytes, read when a front-end connects */
	uint32_t sector_size;        /* the volume's logical sector (its record) */
	uint64_t bounce_bytes;       /* held by its requests in flight */
	int listen_fd;
	struct loop_watch *listen_watch;
	struct vhost_conn *conn;     /* the front-end, or NULL */
	struct vhost_req *reqs;      /* in flight, orphans included */
	unsigned nreqs;
	uint64_t connections;        /* accepted so far */
	uint64_t refused;            /* front-ends refused: the volume was held elsewhere */
};

struct vhost_server {
	struct engine *eng;
	struct blk_guard *guard;     /* NULL: a single node */
	struct loop *lp;
	unsigned num_queues;
	struct vhost_export *exports;
};

enum vhost_conn_state {
	VHOST_CS_HDR,                /* reading a message header */
	VHOST_CS_PAYLOAD,            /* reading its payload */
	VHOST_CS_DRAIN,              /* GET_VRING_BASE waits for a queue's requests */
	VHOST_CS_DEAD,               /* closed; freed by whoever closed it */
};

struct vhost_conn {
	struct vhost_export *exp;
	int fd;
	struct loop_watch *watch;
	unsigned watch_events;
	enum vhost_conn_state state;
	uint64_t features;           /* acked by SET_FEATURES */
	uint64_t protocol_features;
	struct vhost_mem *mem;
	unsigned nqueues;            /* queues this connection may use */
	struct vhost_queue queues[VHOST_QUEUES_MAX];
	struct vhost_queue *draining;  /* VHOST_CS_DRAIN: the queue being stopped */
	struct loop_timer *call_timer; /* interrupts the guest once per loop iteration */
	/* input: one message at a time, so that its fds are its own */
	struct vhost_user_hdr hdr;
	size_t hdr_got, payload_got;
	uint8_t payload[VHOST_USER_PAYLOAD_MAX];
	int fds[VHOST_USER_MAX_REGIONS];
	unsigned nfds;
	/* output: replies not yet written */
	uint8_t out[VHOST_OUTBUF_SIZE];
	size_t out_len;
};

/* ---- server.c ---- */
/* Queues a reply to the message being handled and writes what the socket takes. */
void vhost_conn_reply(struct vhost_conn *c, uint32_t request, const void *payload,
		      uint32_t len);
/* Reading resumes after VHOST_CS_DRAIN (the deferred reply was queued). */
void vhost_conn_resume(struct vhost_conn *c);
/* The front-end left and its last request is done: flush, then give the volume back
 * (unless a front-end came back meanwhile). */
void vhost_export_release(struct vhost_export *exp);

/* ---- protocol.c ---- */
/* Handles the complete message in c->hdr / c->payload / c->fds (takes the fds). */
void vhost_proto_dispatch(struct vhost_conn *c);
/* Stops every queue (reset, disconnect): no more kicks, requests orphaned. */
void vhost_proto_stop_queues(struct vhost_conn *c);
/* The queue's last request was pushed: answers a GET_VRING_BASE waiting for it. */
void vhost_proto_queue_drained(struct vhost_queue *q);
/* The device's virtio feature bits and its config space. */
uint64_t vhost_blk_features(const struct vhost_export *exp);
void vhost_blk_config(const struct vhost_export *exp, unsigned nqueues,
		      struct virtio_blk_config *cfg);

/* ---- blk.c ---- */
/* Takes and starts every available request of the queue. */
void vhost_blk_process(struct vhost_queue *q);
/* The requests of q's connection will never be answered: they forget the ring and
 * the memory, and are freed when the engine completes them. */
void vhost_blk_orphan(struct vhost_export *exp, const struct vhost_conn *c);
/* Interrupts the guest for what q pushed since the last time, if it wants to be. */
void vhost_blk_call(struct vhost_queue *q);

#endif
