/* vhost/blk.c — virtio-blk requests (virtio 1.2 §5.2.6) served by the engine.
 *
 * A request is a descriptor chain: a 16-byte header the device reads, then data
 * (read for OUT, DISCARD and WRITE_ZEROES, written for IN and GET_ID), then one
 * status byte the device writes, the last byte of the chain.
 *
 * Data goes through a bounce buffer: guest buffers are scattered, and a request that
 * outlives its front-end (kill -9 of QEMU, a reset) must never touch guest memory
 * again — an orphan only owns its bounce buffer, and is freed when the block layer
 * calls back. We advertise the volume's logical sector (blk_size 512 by default, 4096
 * for a 4Kn volume) on 4 KiB physical blocks. Requests address 512-byte sectors
 * whatever blk_size says (virtio 1.2 §5.2.6), and every request at any 512-byte
 * sector is served, on a 4Kn disk too (a guest there sends 4 KiB-aligned I/O; one
 * that does not is not refused); the block layer (block/block.h) does the
 * read-modify-write of partial 4 KiB blocks under range locks, so overlapping
 * unaligned writes from several queues keep each other's bytes.
 *
 * A request counts its block-layer calls in r->pending (DISCARD and WRITE_ZEROES
 * have several segments); the issuing stage holds one count itself, so a
 * synchronous failure cannot finish the request early.
 */
#include "vhost/vhost_internal.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"

#define BS BLK_BLOCK_SIZE

struct vhost_req {
	struct vhost_req *prev, *next;  /* the export's requests in flight */
	struct vhost_export *exp;
	struct vhost_queue *q;          /* NULL once orphaned */
	const struct vhost_conn *conn;  /* the connection it came from (orphaning) */
	struct vhost_mem *mem;          /* keeps the chain's pointers valid; NULL if orphan */
	uint32_t type;
	uint64_t sector;
	uint8_t *buf;                   /* bounce buffer: the data, 4 KiB aligned */
	uint32_t buf_len;               /* its size (charged to bounce_bytes) */
	uint32_t data_len;              /* IN / OUT bytes */
	uint32_t written;               /* bytes given to the guest, status excluded */
	unsigned pending;
	int err;
	struct vhost_chain chain;       /* large: last */
};

static const char *type_name(uint32_t type)
{
	switch (type) {
	case VIRTIO_BLK_T_IN: return "IN";
	case VIRTIO_BLK_T_OUT: return "OUT";
	case VIRTIO_BLK_T_FLUSH: return "FLUSH";
	case VIRTIO_BLK_T_GET_ID: return "GET_ID";
	case VIRTIO_BLK_T_DISCARD: return "DISCARD";
	case VIRTIO_BLK_T_WRITE_ZEROES: return "WRITE_ZEROES";
	default: return "unknown";
	}
}

/* ---- lifetime ---- */

static struct vhost_req *req_new(struct vhost_queue *q)
{
	struct vhost_export *exp = q->conn->exp;
	struct vhost_req *r = malloc(sizeof(*r));

	if (!r)
		return NULL;
	memset(r, 0, offsetof(struct vhost_req, chain));
	r->exp = exp;
	r->q = q;
	r->conn = q->conn;
	r->mem = vhost_mem_get(q->conn->mem);
	r->next = exp->reqs;
	if (r->next)
		r->next->prev = r;
	exp->reqs = r;
	exp->nreqs++;
	return r;
}

static void req_free(struct vhost_req *r)
{
	struct vhost_export *exp = r->exp;

	if (r->prev)
		r->prev->next = r->next;
	else
		exp->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	exp->nreqs--;
	vhost_mem_put(r->mem);
	exp->bounce_bytes -= r->buf_len;
	free(r->buf);
	free(r);
	if (exp->releasing && exp->nreqs == 0)
		vhost_export_release(exp);
}

void vhost_blk_orphan(struct vhost_export *exp, const struct vhost_conn *c)
{
	for (struct vhost_req *r = exp->reqs; r; r = r->next) {
		if (r->conn != c)
			continue;
		r->q = NULL;
		r->conn = NULL;
		vhost_mem_put(r->mem);
		r->mem = NULL;
	}
}

/* ---- completion ---- */

static uint8_t status_of(int err)
{
	if (err == 0)
		return VIRTIO_BLK_S_OK;
	return err == -ENOTSUP ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR;
}

void vhost_blk_call(struct vhost_queue *q)
{
	if (!q->call_pending)
		return;
	q->call_pending = false;
	if (q->call_fd >= 0 && q->mapped && vhost_vring_need_call(&q->vr))
		eventfd_write(q->call_fd, 1);
}

static void calls_due(void *arg)
{
	struct vhost_conn *c = arg;

	c->call_timer = NULL; /* the loop frees a timer that fired */
	for (unsigned i = 0; i < c->nqueues; i++)
		vhost_blk_call(&c->queues[i]);
	for (unsigned i = 0; i < c->nqueues; i++) {
		struct vhost_queue *q = &c->queues[i];

		if (q->throttled) { /* completions made room: take what waits (no kick
				       comes for it) */
			q->throttled = false;
			vhost_blk_process(q);
		}
	}
}

/* Interrupts are batched: the completions the engine delivers in one loop iteration
 * cost the guest one interrupt per queue, not one each (a 0 ms timer runs after the
 * iteration's events). */
static void schedule_call(struct vhost_queue *q)
{
	struct vhost_conn *c = q->conn;

	q->call_pending = true;
	if (!c->call_timer &&
	    loop_timer_add(c->exp->srv->lp, 0, calls_due, c, &c->call_timer) < 0) {
		c->call_timer = NULL;
		vhost_blk_call(q); /* no memory for a timer: interrupt now */
	}
}

/* Writes the status, returns the chain to the guest, interrupts it if it wants. A
 * chain without a status byte is returned with nothing written. */
static void req_finish(struct vhost_req *r)
{
	struct vhost_queue *q = r->q;
	uint8_t status = status_of(r->err);

	if (r->err && r->err != -ENOTSUP)
		LOG_RATELIMITED(LOG_WARN, VHOST_LOG, "%s: %s sector %llu: %s", r->exp->name,
				type_name(r->type), (unsigned long long)r->sector,
				err_str(-r->err));
	if (q) {
		uint32_t len = 0;

		if (r->chain.status) {
			*r->chain.status = status;
			len = r->written + 1;
		}
		if (q->mapped) { /* a failed remap left the ring nowhere: the driver resets */
			vhost_vring_push(&q->vr, r->chain.head, len);
			schedule_call(q);
		}
		q->inflight--;
	}
	req_free(r);
	if (q && q->inflight == 0)
		vhost_proto_queue_drained(q);
}

static void fail(struct vhost_req *r, int err)
{
	if (!r->err)
		r->err = err;
}

/* Data of a successful IN goes to the guest's writable buffers (the status byte,
 * their last byte, excluded). */
static void req_complete(struct vhost_req *r)
{
	if (!r->err && r->q && r->type == VIRTIO_BLK_T_IN)
		r->written = (uint32_t)vhost_iov_from_buf(
			r->chain.iov + r->chain.nread, r->chain.nwrite, 0,
			r->buf, r->data_len);
	req_finish(r);
}

static void part_done(struct vhost_req *r, int res)
{
	if (res < 0)
		fail(r, res);
	if (--r->pending == 0)
		req_complete(r);
}

static void blk_done(void *arg, int res)
{
	part_done(arg, res);
}

/* One more block-layer call of the current stage; a synchronous failure ends it. */
static void issue(struct vhost_req *r, int res)
{
	if (res < 0) {
		fail(r, res);
		r->pending--;
	}
}

/* ---- requests ---- */

/* Checks [sector, +len bytes) against the volume: any 512-byte sector inside it. */
static int req_range(const struct vhost_req *r, uint64_t sector, uint64_t len)
{
	uint64_t size = r->exp->size;

	if (len == 0 || len % VIRTIO_BLK_SECTOR)
		return -EINVAL;
	if (sector > size / VIRTIO_BLK_SECTOR || len > size - sector * VIRTIO_BLK_SECTOR)
		return -ERANGE;
	return 0;
}

static int alloc_bounce(struct vhost_req *r, uint64_t len)
{
	size_t size = (size_t)((len + BS - 1) / BS * BS);

	if (posix_memalign((void **)&r->buf, BS, size) != 0) {
		r->buf = NULL;
		return -ENOMEM;
	}
	r->buf_len = (uint32_t)size;
	r->exp->bounce_bytes += size;
	return 0;
}

/* Checks an IN or OUT of len bytes and gives it a bounce buffer. */
static int rw_prepare(struct vhost_req *r, uint64_t len)
{
	int res = len > VHOST_BLK_IO_MAX ? -EINVAL : req_range(r, r->sector, len);

	if (res == 0)
		res = alloc_bounce(r, len);
	r->data_len = (uint32_t)len;
	return res;
}

static void exec_read(struct vhost_req *r)
{
	int res = rw_prepare(r, r->chain.write_bytes - 1);

	r->pending = 2;
	issue(r, res < 0 ? res : blk_read(r->exp->dev, r->sector * VIRTIO_BLK_SECTOR,
					  r->data_len, r->buf, blk_done, r));
	part_done(r, 0);
}

static void exec_write(struct vhost_req *r)
{
	int res = rw_prepare(r, r->chain.read_bytes - sizeof(struct virtio_blk_outhdr));

	if (res == 0)
		vhost_iov_to_buf(r->chain.iov, r->chain.nread, sizeof(struct virtio_blk_outhdr),
				 r->buf, r->data_len);
	r->pending = 2;
	issue(r, res < 0 ? res : blk_write(r->exp->dev, r->sector * VIRTIO_BLK_SECTOR,
					   r->data_len, r->buf, 0, blk_done, r));
	part_done(r, 0);
}

static void exec_flush(struct vhost_req *r)
{
	r->pending = 2;
	issue(r, blk_flush(r->exp->dev, blk_done, r));
	part_done(r, 0);
}

/* The serial number: the volume's name, zero-padded, not terminated at 20. */
static void exec_get_id(struct vhost_req *r)
{
	char id[VIRTIO_BLK_ID_BYTES] = { 0 };
	size_t room = r->chain.write_bytes - 1;

	memcpy(id, r->exp->name, strnlen(r->exp->name, sizeof(id)));
	r->written = (uint32_t)vhost_iov_from_buf(r->chain.iov + r->chain.nread, r->chain.nwrite,
						  0, id, room < sizeof(id) ? room : sizeof(id));
	req_finish(r);
}

/* One DISCARD / WRITE_ZEROES segment: both free the blocks (they read as zeros). A
 * WRITE_ZEROES without the unmap flag (the guest's REQ_NOUNMAP: fallocate, a
 * preallocated image) leaves allocated zeros; with it, or a DISCARD, holes. */
static int trim_segment(struct vhost_req *r, const struct virtio_blk_discard_write_zeroes *s)
{
	uint64_t sector = le64toh(s->sector);
	uint32_t num = le32toh(s->num_sectors), flags = le32toh(s->flags);
	bool wz = r->type == VIRTIO_BLK_T_WRITE_ZEROES;
	uint32_t allowed = wz ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0u;
	unsigned how = wz && !(flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) ? BLK_NO_HOLE : 0;
	int res;

	if (flags & ~allowed)
		return -ENOTSUP;
	if (num > VHOST_BLK_DISCARD_SECTORS_MAX)
		return -EINVAL;
	if (num == 0)
		return 0;
	res = req_range(r, sector, (uint64_t)num * VIRTIO_BLK_SECTOR);
	if (res < 0)
		return res;
	r->pending++;
	issue(r, blk_zero(r->exp->dev, sector * VIRTIO_BLK_SECTOR,
			  (uint64_t)num * VIRTIO_BLK_SECTOR, how, blk_done, r));
	return 0;
}

static void exec_trim(struct vhost_req *r)
{
	uint64_t bytes = r->chain.read_bytes - sizeof(struct virtio_blk_outhdr);
	uint64_t nseg = bytes / sizeof(struct virtio_blk_discard_write_zeroes);

	r->pending = 1;
	if (bytes % sizeof(struct virtio_blk_discard_write_zeroes) || nseg == 0 ||
	    nseg > VHOST_BLK_DISCARD_SEG_MAX)
		fail(r, -EINVAL);
	for (uint64_t i = 0; i < nseg && !r->err; i++) {
		struct virtio_blk_discard_write_zeroes s;
		size_t skip = sizeof(struct virtio_blk_outhdr) + i * sizeof(s);

		vhost_iov_to_buf(r->chain.iov, r->chain.nread, skip, &s, sizeof(s));
		fail(r, trim_segment(r, &s));
	}
	part_done(r, 0);
}

static void req_start(struct vhost_req *r)
{
	struct vhost_chain *ch = &r->chain;
	struct virtio_blk_outhdr h;

	if (ch->err || !ch->status ||
	    vhost_iov_to_buf(ch->iov, ch->nread, 0, &h, sizeof(h)) < sizeof(h)) {
		LOG_RATELIMITED(LOG_WARN, VHOST_LOG, "%s: malformed request (head %u): %s",
				r->exp->name, ch->head, ch->err ? err_str(-ch->err) :
				"no header or no status byte");
		fail(r, -EIO);
		req_finish(r);
		return;
	}
	r->type = le32toh(h.type);
	r->sector = le64toh(h.sector);
	switch (r->type) {
	case VIRTIO_BLK_T_IN:
		exec_read(r);
		break;
	case VIRTIO_BLK_T_OUT:
		exec_write(r);
		break;
	case VIRTIO_BLK_T_FLUSH:
		exec_flush(r);
		break;
	case VIRTIO_BLK_T_GET_ID:
		exec_get_id(r);
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		exec_trim(r);
		break;
	default:
		fail(r, -ENOTSUP);
		req_finish(r);
		break;
	}
}

void vhost_blk_process(struct vhost_queue *q)
{
	struct vhost_conn *c = q->conn;

	while (q->started && q->enabled && !q->broken && q->mapped && c->state != VHOST_CS_DEAD) {
		struct vhost_req *r;
		int res;

		/* a driver never has more than num requests out; nor may it pin more
		 * than VHOST_BOUNCE_MAX of our memory */
		if (q->inflight >= q->vr.num || c->exp->bounce_bytes >= VHOST_BOUNCE_MAX) {
			q->throttled = true;
			return;
		}
		r = req_new(q);
		if (!r) {
			LOG_RATELIMITED(LOG_ERROR, VHOST_LOG, "%s: out of memory for requests",
					c->exp->name);
			return;
		}
		res = vhost_vring_pop(&q->vr, c->mem, &r->chain);
		if (res <= 0) {
			req_free(r);
			if (res < 0) {
				q->broken = true;
				log_msg(LOG_WARN, VHOST_LOG, "%s: queue %u: avail index out of range: "
					"queue ignored until the device is reset", c->exp->name,
					q->index);
			}
			if (res < 0 || !vhost_vring_rearm(&q->vr))
				return;
			continue;
		}
		q->inflight++;
		req_start(r);
	}
}
