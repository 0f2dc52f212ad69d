/* vhost/protocol.c — the vhost-user messages of one front-end connection
 * (QEMU's docs/interop/vhost-user.rst), as a table of handlers.
 *
 * The connection's state machine (server.c reads, this file acts):
 *   HDR -> PAYLOAD -> (handler) -> HDR ...
 *   GET_VRING_BASE with requests in flight on that queue -> DRAIN: no more messages
 *   are read until they complete; then the reply goes out and reading resumes
 *   (the front-end must not see the ring touched after it got the base).
 * A ring is processed while it is started (it has a kick fd, not stopped by
 * GET_VRING_BASE), mapped (SET_VRING_ADDR against the current memory table) and
 * enabled. Rings start enabled; SET_VRING_ENABLE can disable them (see docs/vhost.md
 * for why we do not wait for an explicit enable).
 *
 * A handler returns 0 or -errno; with REPLY_ACK negotiated and NEED_REPLY set, a
 * message without a reply of its own is acknowledged with that status. Handlers
 * take the fds they keep (setting c->fds[i] = -1); the others are closed after.
 */
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"

#define BS BLK_BLOCK_SIZE

static const uint64_t protocol_features =
	(1ull << VHOST_USER_PROTOCOL_F_MQ) | (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) |
	(1ull << VHOST_USER_PROTOCOL_F_CONFIG) | (1ull << VHOST_USER_PROTOCOL_F_RESET_DEVICE);

uint64_t vhost_blk_features(const struct vhost_export *exp)
{
	uint64_t ro = exp->readonly ? 1ull << VIRTIO_BLK_F_RO : 0;

	return ro | (1ull << VIRTIO_F_VERSION_1) | (1ull << VHOST_USER_F_PROTOCOL_FEATURES) |
	       (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
	       (1ull << VIRTIO_BLK_F_SIZE_MAX) |
	       (1ull << VIRTIO_BLK_F_TOPOLOGY) | (1ull << VIRTIO_BLK_F_FLUSH) |
	       (1ull << VIRTIO_BLK_F_MQ) | (1ull << VIRTIO_BLK_F_DISCARD) |
	       (1ull << VIRTIO_BLK_F_WRITE_ZEROES) | (1ull << VIRTIO_RING_F_INDIRECT_DESC) |
	       (1ull << VIRTIO_RING_F_EVENT_IDX);
}

void vhost_blk_config(const struct vhost_export *exp, unsigned nqueues,
		      struct virtio_blk_config *cfg)
{
	uint32_t sector = exp->sector_size;

	memset(cfg, 0, sizeof(*cfg));
	cfg->capacity = htole64(exp->size / VIRTIO_BLK_SECTOR);
	cfg->seg_max = htole32(VHOST_BLK_SEG_MAX);
	cfg->size_max = htole32(VHOST_BLK_SEG_SIZE_MAX);
	/* The volume's logical sector on 4 KiB physical blocks. 512 (the default): a 512e
	 * disk, as QEMU's own virtio-blk, so images made for 512-byte sectors work and
	 * Linux still sends 4 KiB-aligned I/O when it can; 4096: a 4Kn disk. min/opt_io_size
	 * are in logical blocks. */
	cfg->blk_size = htole32(sector);
	cfg->physical_block_exp = (uint8_t)__builtin_ctz(BS / sector);
	cfg->min_io_size = htole16((uint16_t)(BS / sector));
	cfg->opt_io_size = htole32(BS / sector);
	cfg->num_queues = htole16((uint16_t)nqueues);
	cfg->max_discard_sectors = htole32(VHOST_BLK_DISCARD_SECTORS_MAX);
	cfg->max_discard_seg = htole32(VHOST_BLK_DISCARD_SEG_MAX);
	cfg->discard_sector_alignment = htole32(BS / VIRTIO_BLK_SECTOR);
	cfg->max_write_zeroes_sectors = htole32(VHOST_BLK_DISCARD_SECTORS_MAX);
	cfg->max_write_zeroes_seg = htole32(VHOST_BLK_DISCARD_SEG_MAX);
	cfg->write_zeroes_may_unmap = 1;
}

/* ---- queues ---- */

static void ring_unmap(struct vhost_queue *q)
{
	uint16_t last_avail = q->vr.last_avail;

	memset(&q->vr, 0, sizeof(q->vr));
	q->vr.last_avail = last_avail;
	q->mapped = false;
	vhost_mem_put(q->ring_mem);
	q->ring_mem = NULL;
}

static void queue_stop(struct vhost_queue *q)
{
	loop_watch_remove(q->kick_watch);
	q->kick_watch = NULL;
	if (q->kick_fd >= 0)
		close(q->kick_fd);
	q->kick_fd = -1;
	q->started = false;
}

static void kick_ready(void *arg, unsigned events)
{
	struct vhost_queue *q = arg;
	uint64_t n;

	ssize_t r;

	(void)events;
	r = read(q->kick_fd, &n, sizeof(n));
	if (r == 0 || (r < 0 && errno != EAGAIN)) {
		/* closed, or not an eventfd: a level-triggered loop would spin on it */
		log_msg(LOG_WARN, VHOST_LOG, "queue %u: kick fd %s: queue stopped", q->index,
			r == 0 ? "at end of file" : err_str(errno));
		queue_stop(q);
		return;
	}
	vhost_blk_process(q);
}

static void queue_reset(struct vhost_queue *q)
{
	queue_stop(q);
	if (q->call_fd >= 0)
		close(q->call_fd);
	q->call_fd = -1;
	ring_unmap(q);
	q->broken = q->call_pending = false;
	q->enabled = true;
	q->desc_uva = q->avail_uva = q->used_uva = 0;
	q->num = 0;
	memset(&q->vr, 0, sizeof(q->vr));
	q->inflight = 0;
}

/* Points the ring at the current memory if its addresses are known. */
static int queue_map(struct vhost_conn *c, struct vhost_queue *q)
{
	uint16_t last_avail = q->vr.last_avail;
	int r;

	ring_unmap(q);
	if (!q->desc_uva || !c->mem)
		return 0;
	r = vhost_vring_map(&q->vr, c->mem, q->num, q->desc_uva, q->avail_uva, q->used_uva);
	if (r < 0) {
		ring_unmap(q); /* no pointer into memory it does not hold */
		return r;
	}
	q->vr.last_avail = last_avail;
	q->vr.event_idx = c->features & (1ull << VIRTIO_RING_F_EVENT_IDX);
	q->ring_mem = vhost_mem_get(c->mem);
	q->mapped = true;
	return 0;
}

void vhost_proto_stop_queues(struct vhost_conn *c)
{
	vhost_blk_orphan(c->exp, c);
	for (unsigned i = 0; i < VHOST_QUEUES_MAX; i++)
		queue_reset(&c->queues[i]);
	if (c->state == VHOST_CS_DRAIN)
		c->state = VHOST_CS_HDR;
	c->draining = NULL;
}

/* ---- handlers ---- */

static uint64_t payload_u64(const struct vhost_conn *c)
{
	uint64_t v;

	memcpy(&v, c->payload, sizeof(v));
	return v;
}

static void reply_u64(struct vhost_conn *c, uint64_t v)
{
	vhost_conn_reply(c, c->hdr.request, &v, sizeof(v));
}

/* The queue a ring message names, or NULL. */
static struct vhost_queue *queue_of(struct vhost_conn *c, uint32_t index)
{
	return index < c->nqueues ? &c->queues[index] : NULL;
}

static int take_fd(struct vhost_conn *c)
{
	int fd;

	if (c->nfds != 1)
		return -EINVAL;
	fd = c->fds[0];
	c->fds[0] = -1;
	/* QEMU's eventfds are non-blocking; one that is not would hang the only thread */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		close(fd);
		return -EINVAL;
	}
	return fd;
}

static int get_features(struct vhost_conn *c)
{
	reply_u64(c, vhost_blk_features(c->exp));
	return 0;
}

static int set_features(struct vhost_conn *c)
{
	uint64_t f = payload_u64(c);

	if (f & ~vhost_blk_features(c->exp))
		return -EINVAL;
	c->features = f;
	log_msg(LOG_DEBUG, VHOST_LOG, "%s: features %#llx%s", c->exp->name,
		(unsigned long long)f, f & (1ull << VIRTIO_RING_F_EVENT_IDX) ? " (event idx)" : "");
	for (unsigned i = 0; i < c->nqueues; i++)
		c->queues[i].vr.event_idx = f & (1ull << VIRTIO_RING_F_EVENT_IDX);
	return 0;
}

static int get_protocol_features(struct vhost_conn *c)
{
	reply_u64(c, protocol_features);
	return 0;
}

static int set_protocol_features(struct vhost_conn *c)
{
	uint64_t f = payload_u64(c);

	if (f & ~protocol_features)
		return -EINVAL;
	c->protocol_features = f;
	return 0;
}

static int get_queue_num(struct vhost_conn *c)
{
	reply_u64(c, c->nqueues);
	return 0;
}

static int set_owner(struct vhost_conn *c)
{
	(void)c;
	return 0;
}

static int reset_owner(struct vhost_conn *c)
{
	vhost_proto_stop_queues(c);
	c->features = 0;
	return 0;
}

static int set_mem_table(struct vhost_conn *c)
{
	struct vhost_user_mem_table t;
	struct vhost_mem *mem, *old = c->mem;
	int r;

	memcpy(&t, c->payload, sizeof(t));
	if (t.nregions > VHOST_USER_MAX_REGIONS ||
	    c->hdr.size < offsetof(struct vhost_user_mem_table, regions) +
				  t.nregions * sizeof(struct vhost_user_mem_region))
		return -EINVAL;
	r = vhost_mem_map(&t, c->fds, c->nfds, &mem);
	if (r < 0)
		return r;
	c->mem = mem;
	for (unsigned i = 0; i < c->nqueues; i++)
		queue_map(c, &c->queues[i]);
	vhost_mem_put(old); /* requests in flight keep their own reference */
	log_msg(LOG_DEBUG, VHOST_LOG, "%s: guest memory: %u regions", c->exp->name, t.nregions);
	return 0;
}

static int set_vring_num(struct vhost_conn *c)
{
	struct vhost_user_vring_state s;
	struct vhost_queue *q;

	memcpy(&s, c->payload, sizeof(s));
	q = queue_of(c, s.index);
	if (!q || s.num == 0 || s.num > VRING_SIZE_MAX || (s.num & (s.num - 1)))
		return -EINVAL;
	q->num = (uint16_t)s.num;
	return 0;
}

static int set_vring_addr(struct vhost_conn *c)
{
	struct vhost_user_vring_addr a;
	struct vhost_queue *q;
	int r;

	memcpy(&a, c->payload, sizeof(a));
	q = queue_of(c, a.index);
	if (!q || !q->num)
		return -EINVAL;
	q->desc_uva = a.desc_user_addr;
	q->avail_uva = a.avail_user_addr;
	q->used_uva = a.used_user_addr;
	r = queue_map(c, q);
	if (r < 0)
		log_msg(LOG_WARN, VHOST_LOG, "%s: queue %u: ring outside guest memory",
			c->exp->name, q->index);
	return r;
}

static int set_vring_base(struct vhost_conn *c)
{
	struct vhost_user_vring_state s;
	struct vhost_queue *q;

	memcpy(&s, c->payload, sizeof(s));
	q = queue_of(c, s.index);
	if (!q || s.num > UINT16_MAX)
		return -EINVAL;
	q->vr.last_avail = (uint16_t)s.num;
	return 0;
}

static void reply_vring_base(struct vhost_conn *c, struct vhost_queue *q)
{
	struct vhost_user_vring_state s = { .index = q->index, .num = q->vr.last_avail };

	vhost_conn_reply(c, VHOST_USER_GET_VRING_BASE, &s, sizeof(s));
}

/* Stops the ring. Its requests in flight finish first (DRAIN), so that the base we
 * answer is final and the ring is not written after the answer. */
static int get_vring_base(struct vhost_conn *c)
{
	struct vhost_user_vring_state s;
	struct vhost_queue *q;

	memcpy(&s, c->payload, sizeof(s));
	q = queue_of(c, s.index);
	if (!q) {
		struct vhost_user_vring_state none = { .index = s.index };

		vhost_conn_reply(c, VHOST_USER_GET_VRING_BASE, &none, sizeof(none));
		return -EINVAL;
	}
	queue_stop(q);
	vhost_blk_call(q);
	if (q->inflight) {
		log_msg(LOG_DEBUG, VHOST_LOG, "%s: queue %u stops after its %u requests in flight",
			c->exp->name, q->index, q->inflight);
		c->state = VHOST_CS_DRAIN;
		c->draining = q;
		return 0;
	}
	reply_vring_base(c, q);
	return 0;
}

void vhost_proto_queue_drained(struct vhost_queue *q)
{
	struct vhost_conn *c = q->conn;

	if (c->state != VHOST_CS_DRAIN || c->draining != q)
		return;
	c->draining = NULL;
	c->state = VHOST_CS_HDR;
	vhost_blk_call(q); /* the guest hears of the last completions before the stop */
	reply_vring_base(c, q);
	vhost_conn_resume(c);
}

static int set_vring_kick(struct vhost_conn *c)
{
	uint64_t v = payload_u64(c);
	struct vhost_queue *q = queue_of(c, (uint32_t)(v & VHOST_USER_VRING_IDX_MASK));
	int fd, r;

	if (!q || (v & VHOST_USER_VRING_NOFD))
		return -EINVAL; /* polling mode: not offered */
	fd = take_fd(c);
	if (fd < 0)
		return fd;
	queue_stop(q);
	q->kick_fd = fd;
	r = loop_watch_add(c->exp->srv->lp, fd, LOOP_READ, kick_ready, q, &q->kick_watch);
	if (r < 0) {
		queue_stop(q);
		return r;
	}
	q->started = true;
	vhost_blk_process(q); /* requests may be waiting (a reconnect) */
	return 0;
}

static int set_vring_call(struct vhost_conn *c)
{
	uint64_t v = payload_u64(c);
	struct vhost_queue *q = queue_of(c, (uint32_t)(v & VHOST_USER_VRING_IDX_MASK));
	int fd = -1;

	if (!q)
		return -EINVAL;
	if (!(v & VHOST_USER_VRING_NOFD)) {
		fd = take_fd(c);
		if (fd < 0)
			return fd;
	}
	if (q->call_fd >= 0)
		close(q->call_fd);
	q->call_fd = fd;
	q->vr.signalled_valid = false;
	/* completions pushed while there was no call fd were never signalled: one
	 * interrupt now (a spurious one costs the guest nothing) */
	q->call_pending = true;
	vhost_blk_call(q);
	return 0;
}

/* We never report ring errors: the fd is accepted and closed. */
static int set_vring_err(struct vhost_conn *c)
{
	uint64_t v = payload_u64(c);

	return queue_of(c, (uint32_t)(v & VHOST_USER_VRING_IDX_MASK)) ? 0 : -EINVAL;
}

static int set_vring_enable(struct vhost_conn *c)
{
	struct vhost_user_vring_state s;
	struct vhost_queue *q;

	memcpy(&s, c->payload, sizeof(s));
	q = queue_of(c, s.index);
	if (!q || s.num > 1)
		return -EINVAL;
	q->enabled = s.num;
	if (q->enabled)
		vhost_blk_process(q);
	return 0;
}

static int get_config(struct vhost_conn *c)
{
	struct vhost_user_config req, ans = { 0 };
	struct virtio_blk_config cfg;
	uint8_t space[VHOST_USER_CONFIG_MAX] = { 0 };

	memcpy(&req, c->payload, sizeof(req));
	if (req.size > VHOST_USER_CONFIG_MAX || req.offset > VHOST_USER_CONFIG_MAX - req.size) {
		vhost_conn_reply(c, VHOST_USER_GET_CONFIG, NULL, 0); /* empty = failed */
		return -EINVAL;
	}
	vhost_blk_config(c->exp, c->nqueues, &cfg);
	memcpy(space, &cfg, sizeof(cfg));
	ans.offset = req.offset;
	ans.size = req.size;
	ans.flags = req.flags;
	memcpy(ans.payload, space + req.offset, req.size);
	vhost_conn_reply(c, VHOST_USER_GET_CONFIG, &ans, VHOST_USER_CONFIG_HDR_SIZE + req.size);
	return 0;
}

/* The config space is read-only (no writeback toggle is offered): ignored. */
static int set_config(struct vhost_conn *c)
{
	(void)c;
	return 0;
}

struct handler {
	const char *name;
	int (*fn)(struct vhost_conn *c);
	uint32_t min_size;        /* payload bytes it needs */
	bool replies;             /* has a reply of its own (no REPLY_ACK) */
};

static const struct handler handlers[VHOST_USER_REQUEST_MAX] = {
	[VHOST_USER_GET_FEATURES] = { "GET_FEATURES", get_features, 0, true },
	[VHOST_USER_SET_FEATURES] = { "SET_FEATURES", set_features, 8, false },
	[VHOST_USER_SET_OWNER] = { "SET_OWNER", set_owner, 0, false },
	[VHOST_USER_RESET_OWNER] = { "RESET_OWNER", reset_owner, 0, false },
	[VHOST_USER_SET_MEM_TABLE] = { "SET_MEM_TABLE", set_mem_table, 8, false },
	[VHOST_USER_SET_VRING_NUM] = { "SET_VRING_NUM", set_vring_num, 8, false },
	[VHOST_USER_SET_VRING_ADDR] = { "SET_VRING_ADDR", set_vring_addr, 40, false },
	[VHOST_USER_SET_VRING_BASE] = { "SET_VRING_BASE", set_vring_base, 8, false },
	[VHOST_USER_GET_VRING_BASE] = { "GET_VRING_BASE", get_vring_base, 8, true },
	[VHOST_USER_SET_VRING_KICK] = { "SET_VRING_KICK", set_vring_kick, 8, false },
	[VHOST_USER_SET_VRING_CALL] = { "SET_VRING_CALL", set_vring_call, 8, false },
	[VHOST_USER_SET_VRING_ERR] = { "SET_VRING_ERR", set_vring_err, 8, false },
	[VHOST_USER_GET_PROTOCOL_FEATURES] = { "GET_PROTOCOL_FEATURES", get_protocol_features,
					       0, true },
	[VHOST_USER_SET_PROTOCOL_FEATURES] = { "SET_PROTOCOL_FEATURES", set_protocol_features,
					       8, false },
	[VHOST_USER_GET_QUEUE_NUM] = { "GET_QUEUE_NUM", get_queue_num, 0, true },
	[VHOST_USER_SET_VRING_ENABLE] = { "SET_VRING_ENABLE", set_vring_enable, 8, false },
	[VHOST_USER_GET_CONFIG] = { "GET_CONFIG", get_config, VHOST_USER_CONFIG_HDR_SIZE, true },
	[VHOST_USER_SET_CONFIG] = { "SET_CONFIG", set_config, VHOST_USER_CONFIG_HDR_SIZE, false },
	[VHOST_USER_RESET_DEVICE] = { "RESET_DEVICE", reset_owner, 0, false },
};

static void close_fds(struct vhost_conn *c)
{
	for (unsigned i = 0; i < c->nfds; i++)
		if (c->fds[i] >= 0)
			close(c->fds[i]);
	c->nfds = 0;
}

void vhost_proto_dispatch(struct vhost_conn *c)
{
	uint32_t req = c->hdr.request;
	const struct handler *h = req < VHOST_USER_REQUEST_MAX ? &handlers[req] : NULL;
	int r;

	/* short payloads read as zeros rather than as the previous message */
	if (c->hdr.size < sizeof(c->payload))
		memset(c->payload + c->hdr.size, 0, sizeof(c->payload) - c->hdr.size);
	if (!h || !h->fn) {
		LOG_RATELIMITED(LOG_INFO, VHOST_LOG, "%s: message %u not supported", c->exp->name,
				req);
		r = -ENOTSUP;
	} else if (c->hdr.size < h->min_size) {
		LOG_RATELIMITED(LOG_WARN, VHOST_LOG, "%s: %s: payload of %u bytes is too short",
				c->exp->name, h->name, c->hdr.size);
		r = -EINVAL;
	} else {
		log_msg(LOG_DEBUG, VHOST_LOG, "%s: %s", c->exp->name, h->name);
		r = h->fn(c);
		if (r < 0)
			LOG_RATELIMITED(LOG_WARN, VHOST_LOG, "%s: %s failed: %s", c->exp->name,
					h->name, err_str(-r));
	}
	close_fds(c);
	/* after the handler: the SET_PROTOCOL_FEATURES that turns REPLY_ACK on is acked */
	if ((c->hdr.flags & VHOST_USER_FLAG_NEED_REPLY) &&
	    (c->protocol_features & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK)) &&
	    !(h && h->fn && h->replies))
		reply_u64(c, r < 0 ? 1 : 0);
}
