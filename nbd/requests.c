/* nbd/requests.c — the transmission phase: parse requests, run them on the block
 * layer, queue their replies.
 *
 * Requests run concurrently and reply out of order. This file is protocol only:
 * checks against the negotiation (with the error messages NBD clients show), payload
 * buffers, replies. Byte ranges, read-modify-write of partial 4 KiB blocks and the
 * range locks that keep overlapping writes from losing each other's bytes are the
 * block layer's (block/block.h), shared with vhost.
 */
#include "nbd/nbd_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/stages.h"

#define BS BLK_BLOCK_SIZE
#define META_CONTEXT_ID 1u

struct nbd_req {
	struct nbd_conn *conn;
	struct nbd_export *exp;
	struct nbd_req_hdr h;
	int err;                    /* first error, -errno */
	const char *errmsg;         /* for a structured error chunk, or NULL */
	uint8_t *buf;               /* READ/WRITE: the payload, 4 KiB aligned */
	uint8_t *status;            /* BLOCK_STATUS descriptors */
	size_t status_len;
	size_t mem;                 /* charged to conn->mem */
	struct nbd_out reply;
};

/* ---- replies ---- */

static void req_reply(struct nbd_req *r)
{
	struct nbd_conn *c = r->conn;
	struct nbd_out *o = &r->reply;
	uint32_t err = nbd_errno_to_wire(r->err);
	uint8_t *h = o->hdr;
	uint16_t type = r->h.type;

	if (c->state == NBD_CS_DEAD) {
		nbd_req_free(r);
		return;
	}
	if (r->err)
		LOG_RATELIMITED(LOG_WARN, NBD_LOG, "%s: %s offset %llu length %u: %s%s%s", c->peer,
				nbd_cmd_name(type), (unsigned long long)r->h.offset, r->h.length,
				err_str(-r->err), r->errmsg ? ": " : "", r->errmsg ? r->errmsg : "");
	memset(o, 0, sizeof(*o));
	o->req = r;
	if (c->structured && err) {
		size_t mlen = r->errmsg ? strlen(r->errmsg) : 0;

		o->hdr_len = (uint32_t)nbd_encode_chunk(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR,
							r->h.cookie, (uint32_t)(6 + mlen));
		nbd_put32(h + o->hdr_len, err);
		nbd_put16(h + o->hdr_len + 4, (uint16_t)mlen);
		o->hdr_len += 6;
		o->data = (const uint8_t *)r->errmsg;
		o->data_len = mlen;
	} else if (c->structured && type == NBD_CMD_READ) {
		o->hdr_len = (uint32_t)nbd_encode_chunk(h, NBD_REPLY_FLAG_DONE,
							NBD_REPLY_TYPE_OFFSET_DATA, r->h.cookie,
							8 + r->h.length);
		nbd_put64(h + o->hdr_len, r->h.offset);
		o->hdr_len += 8;
		o->data = r->buf;
		o->data_len = r->h.length;
	} else if (c->structured && type == NBD_CMD_BLOCK_STATUS) {
		o->hdr_len = (uint32_t)nbd_encode_chunk(h, NBD_REPLY_FLAG_DONE,
							NBD_REPLY_TYPE_BLOCK_STATUS, r->h.cookie,
							(uint32_t)(4 + r->status_len));
		nbd_put32(h + o->hdr_len, META_CONTEXT_ID);
		o->hdr_len += 4;
		o->data = r->status;
		o->data_len = r->status_len;
	} else {
		o->hdr_len = (uint32_t)nbd_encode_simple_reply(h, err, r->h.cookie);
		if (type == NBD_CMD_READ && !err) {
			o->data = r->buf;
			o->data_len = r->h.length;
		}
	}
	nbd_conn_queue(c, o);
}

static void fail(struct nbd_req *r, int err, const char *msg)
{
	if (!r->err) {
		r->err = err;
		r->errmsg = msg;
	}
}

/* ---- execution: the block layer does the work ---- */

static void blk_done(void *arg, int res)
{
	struct nbd_req *r = arg;

	stages_mark("nbd.done");
	if (res < 0)
		fail(r, res, NULL);
	req_reply(r);
}

/* A request the block layer refused at once is answered at once. */
static void issued(struct nbd_req *r, int res)
{
	if (res < 0) {
		fail(r, res, NULL);
		req_reply(r);
	}
}

static unsigned fua(const struct nbd_req *r)
{
	return r->h.flags & NBD_CMD_FLAG_FUA ? BLK_FUA : 0;
}

/* base:allocation: holes are hole|zero, allocated zeros (WRITE_ZEROES with NO_HOLE)
 * zero, data 0; runs merged. */
static uint32_t alloc_state(enum blk_state st)
{
	switch (st) {
	case BLK_STATE_DATA:
		return 0;
	case BLK_STATE_ZERO:
		return NBD_STATE_ZERO;
	default:
		return NBD_STATE_HOLE | NBD_STATE_ZERO;
	}
}

static void exec_block_status(struct nbd_req *r)
{
	const struct blk_dev *dev = r->exp->dev;
	uint64_t len = r->h.length < NBD_STATUS_SCAN_MAX ? r->h.length : NBD_STATUS_SCAN_MAX;
	uint64_t pos = r->h.offset, end = pos + len;
	unsigned max = r->h.flags & NBD_CMD_FLAG_REQ_ONE ? 1 : NBD_STATUS_MAX_DESC;
	unsigned n = 0;

	r->status = malloc((size_t)max * sizeof(struct nbd_block_descriptor));
	if (!r->status) {
		fail(r, -ENOMEM, NULL);
		req_reply(r);
		return;
	}
	while (pos < end && n < max) {
		enum blk_state st = blk_state(dev, pos);
		uint64_t run = (pos / BS + 1) * BS;
		uint8_t *d = r->status + (size_t)n * sizeof(struct nbd_block_descriptor);

		while (run < end && blk_state(dev, run) == st)
			run += BS;
		if (run > end)
			run = end;
		nbd_put32(d + offsetof(struct nbd_block_descriptor, length), (uint32_t)(run - pos));
		nbd_put32(d + offsetof(struct nbd_block_descriptor, status),
			  alloc_state(st));
		n++;
		pos = run;
	}
	r->status_len = (size_t)n * sizeof(struct nbd_block_descriptor);
	req_reply(r);
}

/* ---- parsing ---- */

static size_t buf_size(const struct nbd_req_hdr *h)
{
	if ((h->type != NBD_CMD_READ && h->type != NBD_CMD_WRITE) || h->length == 0 ||
	    h->length > NBD_MAX_PAYLOAD)
		return 0;
	return (size_t)((h->length + BS - 1) / BS) * BS;
}

static uint16_t allowed_flags(const struct nbd_conn *c, uint16_t type)
{
	switch (type) {
	case NBD_CMD_READ:
		return NBD_CMD_FLAG_FUA | (c->structured ? NBD_CMD_FLAG_DF : 0);
	case NBD_CMD_WRITE_ZEROES:
		return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
	case NBD_CMD_BLOCK_STATUS:
		return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE;
	default:
		return NBD_CMD_FLAG_FUA;
	}
}

/* Checks a request against the export and the negotiation; sets r->err. */
static void validate(struct nbd_req *r)
{
	const struct nbd_conn *c = r->conn;
	const struct nbd_req_hdr *h = &r->h;
	uint64_t size = r->exp->size;
	bool write = h->type == NBD_CMD_WRITE || h->type == NBD_CMD_WRITE_ZEROES;

	if (h->type > NBD_CMD_BLOCK_STATUS || h->type == NBD_CMD_DISC) {
		fail(r, -EINVAL, "unknown command");
		return;
	}
	if (h->flags & ~allowed_flags(c, h->type)) {
		fail(r, -EINVAL, "flags not valid for this command");
		return;
	}
	if (h->type == NBD_CMD_FLUSH)
		return;
	if (h->length == 0) {
		fail(r, -EINVAL, "zero length");
		return;
	}
	if (r->exp->readonly && (write || h->type == NBD_CMD_TRIM)) {
		fail(r, -EPERM, "read-only export (a snapshot)");
		return;
	}
	if (h->offset > size || h->length > size - h->offset) {
		fail(r, write ? -ENOSPC : -EINVAL, "beyond the end of the export");
		return;
	}
	if ((h->type == NBD_CMD_READ || h->type == NBD_CMD_WRITE) && h->length > NBD_MAX_PAYLOAD) {
		fail(r, -EINVAL, "longer than the maximum block size (32 MiB)");
		return;
	}
	if (h->type == NBD_CMD_BLOCK_STATUS && !(c->structured && c->meta_alloc))
		fail(r, -EINVAL, "no metadata context was negotiated");
}

static struct nbd_req *req_new(struct nbd_conn *c, const struct nbd_req_hdr *h)
{
	struct nbd_req *r = calloc(1, sizeof(*r));
	size_t bs;

	if (!r)
		return NULL;
	r->conn = c;
	r->exp = c->exp;
	r->h = *h;
	r->mem = sizeof(*r);
	validate(r);
	bs = r->err ? 0 : buf_size(h);
	if (bs) {
		if (posix_memalign((void **)&r->buf, BS, bs) != 0) {
			r->buf = NULL;
			fail(r, -ENOMEM, NULL);
		} else {
			r->mem += bs;
		}
	}
	c->mem += r->mem;
	nbd_mem_charge(c->srv, (int64_t)r->mem);
	c->nreqs++;
	return r;
}

static void req_submit(struct nbd_req *r)
{
	if (r->err) {
		req_reply(r);
		return;
	}
	switch (r->h.type) {
	case NBD_CMD_READ:
		issued(r, blk_read(r->exp->dev, r->h.offset, r->h.length, r->buf, blk_done, r));
		break;
	case NBD_CMD_WRITE:
		issued(r, blk_write(r->exp->dev, r->h.offset, r->h.length, r->buf, fua(r),
				    blk_done, r));
		break;
	case NBD_CMD_TRIM:
		issued(r, blk_zero(r->exp->dev, r->h.offset, r->h.length, fua(r), blk_done, r));
		break;
	case NBD_CMD_WRITE_ZEROES:
		/* either way it is fast (no data is written): FAST_ZERO needs nothing */
		issued(r, blk_zero(r->exp->dev, r->h.offset, r->h.length,
				   fua(r) | (r->h.flags & NBD_CMD_FLAG_NO_HOLE ? BLK_NO_HOLE : 0),
				   blk_done, r));
		break;
	case NBD_CMD_FLUSH:
		issued(r, blk_flush(r->exp->dev, blk_done, r));
		break;
	case NBD_CMD_BLOCK_STATUS:
		exec_block_status(r);
		break;
	default: /* NBD_CMD_CACHE: the engine has no cache to warm */
		req_reply(r);
		break;
	}
}

static bool parse_header(struct nbd_conn *c)
{
	struct nbd_req_hdr h;
	struct nbd_req *r;
	size_t cost;

	if (c->in_end - c->in_start < sizeof(struct nbd_request))
		return false;
	if (nbd_decode_request(c->in + c->in_start, c->in_end - c->in_start, &h) < 0) {
		nbd_conn_close(c, "bad request magic");
		return false;
	}
	if (h.type == NBD_CMD_DISC) {
		c->in_start += sizeof(struct nbd_request);
		c->state = NBD_CS_DRAIN;
		return false;
	}
	if (h.type == NBD_CMD_WRITE && h.length > NBD_MAX_PAYLOAD) {
		/* its payload cannot be skipped safely: hang up */
		nbd_conn_close(c, "NBD_CMD_WRITE longer than 32 MiB");
		return false;
	}
	cost = sizeof(struct nbd_req) + buf_size(&h);
	if (c->mem && c->mem + cost > NBD_CONN_MEM_MAX) {
		c->paused = true;
		c->mem_need = cost;
		return false;
	}
	if (!nbd_mem_admit(c, cost)) { /* the header stays buffered until its turn */
		c->paused = true;
		return false;
	}
	c->in_start += sizeof(struct nbd_request);
	stages_begin();
	r = req_new(c, &h);
	if (!r) {
		nbd_conn_close(c, "out of memory");
		return false;
	}
	if (h.type == NBD_CMD_WRITE) {
		stages_mark("nbd.header");
		c->cur = r;
		c->payload_got = 0;
		c->state = NBD_CS_REQ_PAYLOAD;
		return true;
	}
	req_submit(r);
	return c->state == NBD_CS_REQ_HDR;
}

bool nbd_tx_step(struct nbd_conn *c)
{
	struct nbd_req *r = c->cur;
	size_t avail, n;

	if (c->state == NBD_CS_REQ_HDR)
		return parse_header(c);
	if (c->state != NBD_CS_REQ_PAYLOAD)
		return false;
	avail = c->in_end - c->in_start;
	n = r->h.length - c->payload_got;
	if (n > avail)
		n = avail;
	if (r->buf) /* else the request failed: its payload is dropped */
		memcpy(r->buf + c->payload_got, c->in + c->in_start, n);
	c->in_start += n;
	c->payload_got += n;
	if (c->payload_got < r->h.length)
		return false;
	c->cur = NULL;
	c->state = NBD_CS_REQ_HDR;
	req_submit(r);
	return c->state == NBD_CS_REQ_HDR;
}

size_t nbd_tx_payload_window(struct nbd_conn *c, uint8_t **dst)
{
	struct nbd_req *r = c->cur;
	size_t left;

	if (c->state != NBD_CS_REQ_PAYLOAD || !r || !r->buf || c->in_start != c->in_end)
		return 0;
	left = r->h.length - c->payload_got;
	if (left < BS)
		return 0; /* small rests: read them with what follows */
	*dst = r->buf + c->payload_got;
	return left;
}

void nbd_tx_payload_got(struct nbd_conn *c, size_t n)
{
	c->payload_got += n;
}

void nbd_req_free(struct nbd_req *r)
{
	struct nbd_conn *c = r->conn;
	size_t mem = r->mem;

	free(r->buf);
	free(r->status);
	free(r);
	nbd_conn_req_gone(c, mem);
}
