/* nbd/requests.c — the transmission phase: parse requests, run them on the engine,
 * queue their replies.
 *
 * Requests run concurrently and reply out of order. Byte ranges map onto 4 KiB
 * engine blocks: a READ reads the covering blocks into a bounce buffer; a WRITE
 * whose edges are partial reads the edge blocks first and writes whole blocks
 * (read-modify-write); TRIM and WRITE_ZEROES trim the whole blocks and zero the
 * partial edge bytes by read-modify-write (an unmapped edge already reads as zeros).
 *
 * Every mutating request holds a lock on its block range while it runs (struct
 * nbd_export: a list of held ranges and a FIFO of waiters), so a read-modify-write
 * never interleaves with another write of the same blocks. Reads take no lock.
 *
 * Request stages: each engine call counts in r->pending; when it drops to zero the
 * stage's continuation r->next runs (a stage holds one count itself while it issues
 * its calls, so a synchronous failure cannot finish the request early).
 */
#include "nbd/nbd_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"

#define BS ENGINE_BLOCK_SIZE
#define META_CONTEXT_ID 1u

struct nbd_edge {
	struct nbd_req *req;
	uint64_t lba;
	uint8_t *blk;               /* one block inside req->edge_buf */
	uint32_t zoff, zlen;        /* bytes of the block to zero (TRIM, WRITE_ZEROES) */
};

struct nbd_req {
	struct nbd_conn *conn;
	struct nbd_export *exp;
	struct nbd_req_hdr h;
	int err;                    /* first error, -errno */
	const char *errmsg;         /* for a structured error chunk, or NULL */
	unsigned pending;
	void (*next)(struct nbd_req *r);
	uint8_t *buf;               /* READ/WRITE: the covering blocks, 4 KiB aligned */
	uint8_t *edge_buf;          /* two blocks for read-modify-write */
	uint8_t *status;            /* BLOCK_STATUS descriptors */
	size_t status_len;
	size_t mem;                 /* charged to conn->mem */
	uint64_t first, nblk;       /* blocks covered */
	/* range lock */
	bool locked;
	struct nbd_req *lk_prev, *lk_next;
	struct nbd_req *lk_granted;  /* lock_release's list of requests to start */
	void (*lk_go)(struct nbd_req *r);
	struct nbd_edge edges[2];
	struct nbd_out reply;
};

/* ---- range locks ---- */

static bool overlaps(const struct nbd_req *a, const struct nbd_req *b)
{
	return a->first < b->first + b->nblk && b->first < a->first + a->nblk;
}

/* Does r overlap a request of the list from head up to (not including) stop? */
static bool overlaps_list(const struct nbd_req *r, const struct nbd_req *head,
			  const struct nbd_req *stop)
{
	for (const struct nbd_req *x = head; x && x != stop; x = x->lk_next)
		if (overlaps(r, x))
			return true;
	return false;
}

static void lock_hold(struct nbd_export *exp, struct nbd_req *r)
{
	r->locked = true;
	r->lk_prev = NULL;
	r->lk_next = exp->held;
	if (exp->held)
		exp->held->lk_prev = r;
	exp->held = r;
}

/* Runs go(r) once r's blocks overlap no running or earlier waiting mutation. */
static void lock_acquire(struct nbd_req *r, void (*go)(struct nbd_req *r))
{
	struct nbd_export *exp = r->exp;

	r->lk_go = go;
	if (!overlaps_list(r, exp->held, NULL) && !overlaps_list(r, exp->wait_head, NULL)) {
		lock_hold(exp, r);
		go(r);
		return;
	}
	r->lk_next = NULL;
	if (exp->wait_tail)
		exp->wait_tail->lk_next = r;
	else
		exp->wait_head = r;
	exp->wait_tail = r;
}

static void lock_release(struct nbd_req *r)
{
	struct nbd_export *exp = r->exp;
	struct nbd_req *grant = NULL, *prev = NULL, *w, *next;

	if (!r->locked)
		return;
	r->locked = false;
	if (r->lk_prev)
		r->lk_prev->lk_next = r->lk_next;
	else
		exp->held = r->lk_next;
	if (r->lk_next)
		r->lk_next->lk_prev = r->lk_prev;
	/* grant in FIFO order; run them after the scan (go may release again) */
	for (w = exp->wait_head; w; w = next) {
		next = w->lk_next;
		if (overlaps_list(w, exp->held, NULL) || overlaps_list(w, exp->wait_head, w)) {
			prev = w;
			continue;
		}
		if (prev)
			prev->lk_next = next;
		else
			exp->wait_head = next;
		if (exp->wait_tail == w)
			exp->wait_tail = prev;
		lock_hold(exp, w);
		w->lk_granted = grant;
		grant = w;
	}
	while (grant) {
		w = grant;
		grant = w->lk_granted;
		w->lk_go(w);
	}
}

/* ---- replies ---- */

static void req_reply(struct nbd_req *r)
{
	struct nbd_conn *c = r->conn;
	struct nbd_out *o = &r->reply;
	uint32_t err = nbd_errno_to_wire(r->err);
	uint8_t *h = o->hdr;
	uint16_t type = r->h.type;

	lock_release(r);
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
		o->data = r->buf + r->h.offset % BS;
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
			o->data = r->buf + r->h.offset % BS;
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

/* ---- stages ---- */

static void part_done(struct nbd_req *r, int res)
{
	if (res < 0)
		fail(r, res, NULL);
	if (--r->pending == 0)
		r->next(r);
}

static void engine_done(void *arg, int res)
{
	part_done(arg, res);
}

/* Issues an engine call's result: a synchronous failure ends its part at once. */
static void issued(struct nbd_req *r, int res)
{
	if (res < 0) {
		fail(r, res, NULL);
		r->pending--;
	}
}

static uint8_t *edge_block(struct nbd_req *r, unsigned i)
{
	if (!r->edge_buf && posix_memalign((void **)&r->edge_buf, BS, 2 * BS) != 0) {
		r->edge_buf = NULL;
		return NULL;
	}
	return r->edge_buf + (size_t)i * BS;
}

static unsigned fua(const struct nbd_req *r)
{
	return r->h.flags & NBD_CMD_FLAG_FUA ? ENGINE_FUA : 0;
}

/* Reads block lba into edge i (zeros without I/O if it is unmapped). */
static void edge_read(struct nbd_req *r, unsigned i, uint64_t lba, engine_cb cb, void *arg)
{
	uint8_t *blk = edge_block(r, i);

	if (!blk) {
		fail(r, -ENOMEM, NULL);
		return;
	}
	r->edges[i].lba = lba;
	r->edges[i].blk = blk;
	if (!engine_block_mapped(r->exp->vol, lba)) {
		memset(blk, 0, BS); /* reads as zeros: no I/O */
		return;
	}
	r->pending++;
	issued(r, engine_read(r->exp->vol, lba, 1, blk, cb, arg));
}

static void write_done(struct nbd_req *r)
{
	req_reply(r);
}

/* WRITE, edges read: patch them into the buffer around the payload, write it all. */
static void write_edges_read(struct nbd_req *r)
{
	uint32_t head = (uint32_t)(r->h.offset % BS);
	uint32_t tail = (uint32_t)((r->h.offset + r->h.length) % BS);

	if (r->err) {
		req_reply(r);
		return;
	}
	if (head)
		memcpy(r->buf, r->edges[0].blk, head);
	if (tail) {
		const uint8_t *src = r->nblk > 1 || !head ? r->edges[1].blk : r->edges[0].blk;
		size_t at = (size_t)(r->nblk - 1) * BS + tail;

		memcpy(r->buf + at, src + tail, BS - tail);
	}
	r->next = write_done;
	r->pending = 2;
	issued(r, engine_write(r->exp->vol, r->first, (uint32_t)r->nblk, r->buf, fua(r),
			       engine_done, r));
	part_done(r, 0);
}

static void exec_write(struct nbd_req *r)
{
	uint32_t head = (uint32_t)(r->h.offset % BS);
	uint32_t tail = (uint32_t)((r->h.offset + r->h.length) % BS);

	r->next = write_edges_read;
	r->pending = 1;
	if (head)
		edge_read(r, 0, r->first, engine_done, r);
	if (tail && (r->nblk > 1 || !head))
		edge_read(r, 1, r->first + r->nblk - 1, engine_done, r);
	part_done(r, 0);
}

/* TRIM / WRITE_ZEROES edge: the block was read; zero its bytes, write it back. */
static void zero_edge_read(void *arg, int res)
{
	struct nbd_edge *e = arg;
	struct nbd_req *r = e->req;

	if (res < 0) {
		part_done(r, res);
		return;
	}
	memset(e->blk + e->zoff, 0, e->zlen);
	/* the read's count carries over to the write */
	res = engine_write(r->exp->vol, e->lba, 1, e->blk, fua(r), engine_done, r);
	if (res < 0)
		part_done(r, res);
}

static void zero_edge(struct nbd_req *r, unsigned i, uint64_t lba, uint32_t zoff, uint32_t zlen)
{
	struct nbd_edge *e = &r->edges[i];

	if (!engine_block_mapped(r->exp->vol, lba))
		return; /* reads as zeros already */
	e->req = r;
	e->zoff = zoff;
	e->zlen = zlen;
	edge_read(r, i, lba, zero_edge_read, e);
}

static void exec_zero(struct nbd_req *r)
{
	uint64_t off = r->h.offset, end = off + r->h.length;
	uint64_t ib = (off + BS - 1) / BS, ie = end / BS;
	uint32_t head = (uint32_t)(off % BS), tail = (uint32_t)(end % BS);

	r->next = req_reply;
	r->pending = 1;
	if (ie > ib) {
		r->pending++;
		issued(r, engine_trim(r->exp->vol, ib, ie - ib, fua(r), engine_done, r));
	}
	if (head)
		zero_edge(r, 0, r->first, head, (uint32_t)(r->h.length < BS - head ?
							   r->h.length : BS - head));
	if (tail && (r->nblk > 1 || !head))
		zero_edge(r, 1, r->first + r->nblk - 1, 0, tail);
	part_done(r, 0);
}

static void exec_read(struct nbd_req *r)
{
	r->next = req_reply;
	r->pending = 2;
	issued(r, engine_read(r->exp->vol, r->first, (uint32_t)r->nblk, r->buf, engine_done, r));
	part_done(r, 0);
}

static void exec_flush(struct nbd_req *r)
{
	r->next = req_reply;
	r->pending = 2;
	issued(r, engine_flush(r->conn->srv->eng, engine_done, r));
	part_done(r, 0);
}

/* base:allocation: unmapped blocks are hole|zero, mapped ones 0; runs merged. */
static void exec_block_status(struct nbd_req *r)
{
	const struct engine_volume *vol = r->exp->vol;
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
		uint64_t blk = pos / BS;
		bool mapped = engine_block_mapped(vol, blk);
		uint64_t run = (blk + 1) * BS;
		uint8_t *d = r->status + (size_t)n * sizeof(struct nbd_block_descriptor);

		while (run < end && engine_block_mapped(vol, run / BS) == mapped)
			run += BS;
		if (run > end)
			run = end;
		nbd_put32(d + offsetof(struct nbd_block_descriptor, length), (uint32_t)(run - pos));
		nbd_put32(d + offsetof(struct nbd_block_descriptor, status),
			  mapped ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO);
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
	return (size_t)(((h->offset % BS) + h->length + BS - 1) / BS) * BS;
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
	r->first = h->offset / BS;
	r->nblk = (h->offset + h->length + BS - 1) / BS - r->first;
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
		exec_read(r);
		break;
	case NBD_CMD_WRITE:
		lock_acquire(r, exec_write);
		break;
	case NBD_CMD_TRIM:
	case NBD_CMD_WRITE_ZEROES:
		lock_acquire(r, exec_zero);
		break;
	case NBD_CMD_FLUSH:
		exec_flush(r);
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
	r = req_new(c, &h);
	if (!r) {
		nbd_conn_close(c, "out of memory");
		return false;
	}
	if (h.type == NBD_CMD_WRITE) {
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
		memcpy(r->buf + r->h.offset % BS + c->payload_got, c->in + c->in_start, n);
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
	*dst = r->buf + r->h.offset % BS + c->payload_got;
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
	free(r->edge_buf);
	free(r->status);
	free(r);
	nbd_conn_req_gone(c, mem);
}
