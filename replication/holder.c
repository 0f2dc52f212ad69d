/* replication/holder.c — the holder service of holder.h.
 *
 * Each request becomes an op that goes through at most three engine steps: the
 * fence's raise (only for an epoch above the family's), the op itself, and for a FUA
 * append the flush. Every engine callback comes back here; the op then answers its
 * request and is freed. The holder keeps its ops in flight in a list so that
 * holder_destroy() can orphan them: an orphan's callback frees it without answering.
 */
#include "replication/holder.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "common/stages.h"
#include "engine/engine.h"
#include "replication/ec_format.h"
#include "replication/peer.h"
#include "replication/peer_proto.h"

#define LOG_TAG "holder"

struct holder {
	struct engine *eng;
	struct hold_op *ops; /* in flight in the engine */
};

struct hold_op {
	struct holder *h;            /* NULL once the holder is gone: answer nothing */
	struct hold_op *next, *prev;
	struct peer_req *req;
	struct peer_seg_req sr;      /* the request, decoded */
	uint64_t uid, epoch;         /* the header's: the family and the sender's epoch */
	uint8_t *buf;                /* READ, LAYER_READ, VERIFY: the blocks read; LIST: its
					entries */
	uint8_t *crcs;               /* LAYER_READ: one CRC32C per block, sent before them;
					VERIFY: the numbers of the blocks that differ */
	struct engine_volume *snap;  /* LAYER_READ: the snapshot, open while it is read */
	bool held_before;            /* DELETE: the copy was here when it started (logged:
					not one the orphan check dropped first) */
	struct peer_seg_reply found; /* LAYER_FIND: family, layer, blocks */
	struct engine_frag_info fi;  /* FRAG_PUT: from the image's header; FRAG_READ: held */
	struct holder_frag_check fc; /* FRAG_VERIFY: the fragment checked */
	uint8_t *table;              /* FRAG_READ: the CRC table's blocks that cover the read */
	uint32_t table_first;        /* ... from this block of the table */
	unsigned parts;              /* FRAG_READ: its two reads in flight */
	int part_err;                /* ... the first one's error */
};

_Static_assert(PEER_SEG_BLOCK == ENGINE_BLOCK_SIZE, "a segment's block is the engine's");

int holder_create(struct engine *eng, struct holder **out)
{
	struct holder *h;

	if (!eng)
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->eng = eng;
	*out = h;
	return 0;
}

void holder_destroy(struct holder *h)
{
	if (!h)
		return;
	while (h->ops) {
		struct hold_op *op = h->ops;

		h->ops = op->next;
		/* its engine callback frees it, and its request then: a large append's
		 * data is written from the request's own buffer (peer.c lands it aligned) */
		op->h = NULL;
		op->next = op->prev = NULL;
	}
	free(h);
}

/* ---- answering ---- */

static void op_free(struct hold_op *op)
{
	struct holder *h = op->h;

	if (h) {
		if (op->prev)
			op->prev->next = op->next;
		else if (h->ops == op)
			h->ops = op->next;
		if (op->next)
			op->next->prev = op->prev;
	}
	if (op->req)
		peer_req_drop(op->req); /* not answered: the holder is gone */
	engine_volume_close(op->snap); /* the engine outlives the holder */
	free(op->buf);
	free(op->crcs);
	free(op->table);
	holder_frag_check_free(&op->fc);
	free(op);
}

/* Whether the op is about a family's copies, under its fence (LAYER_READ names a
 * family this node runs, and reads only an immutable snapshot: no epoch). */
static bool op_has_family(const struct hold_op *op)
{
	return op->sr.op != PEER_OP_SEG_FLUSH && op->sr.op != PEER_OP_LAYER_READ &&
	       op->sr.op != PEER_OP_LAYER_FIND;
}

static bool op_has_segment(const struct hold_op *op)
{
	return op_has_family(op) && op->sr.op != PEER_OP_EPOCH_RAISE;
}

/* A fragment op: about a segment's fragment, never a copy of its log (SEG_DELETE and
 * SEG_STAT of kind FRAG too). */
static bool op_is_frag(const struct hold_op *op)
{
	return op->sr.op == PEER_OP_FRAG_PUT || op->sr.op == PEER_OP_FRAG_READ ||
	       op->sr.op == PEER_OP_FRAG_VERIFY || ((op->sr.op == PEER_OP_SEG_DELETE || op->sr.op == PEER_OP_SEG_STAT) &&
		op->sr.kind == PEER_SEG_KIND_FRAG);
}

/* What the holder has of a fragment op's segment, as a copy's info: the image's
 * blocks, sealed, the epoch it was put under. */
static bool frag_held(const struct hold_op *op, struct engine *eng,
		      struct engine_held_info *info)
{
	struct engine_frag_info fi;

	if (engine_frag_stat(eng, op->uid, op->sr.sno, &fi) < 0)
		return false;
	*info = (struct engine_held_info){ .uid = fi.uid, .sno = fi.sno, .epoch = fi.epoch,
					   .sealed = true, .length = fi.image_blocks,
					   .slot = fi.slot };
	return true;
}

/* The op's family's fence now (0 for an op about no family): an op below it was
 * fenced off by another owner. */
static uint64_t family_fence(const struct hold_op *op, struct engine *eng)
{
	return op_has_family(op) ? engine_held_epoch(eng, op->uid) : 0;
}

static void log_refusal(const struct hold_op *op, uint64_t fence, int res)
{
	if (res < 0 && op->sr.op == PEER_OP_LAYER_FIND)
		LOG_RATELIMITED(LOG_INFO, LOG_TAG, "snapshot %s@%s: its layer asked for, refused: %s",
				op->sr.volume, op->sr.snap, res == -ESTALE
				? "this node does not run the volume" : err_str(-res));
	else if (res < 0 && op->sr.op == PEER_OP_LAYER_READ)
		LOG_RATELIMITED(LOG_INFO, LOG_TAG, "family %llx: read through snapshot layer %llu "
				"at lba %llu (%u blocks) refused: %s", (unsigned long long)op->uid,
				(unsigned long long)op->sr.layer, (unsigned long long)op->sr.lba,
				op->sr.nblocks, res == -ESTALE ? "this node does not run the family"
				: err_str(-res));
	else if (res == -ESTALE)
		LOG_RATELIMITED(LOG_INFO, LOG_TAG, "family %llx: %s of segment %u at epoch %llu "
				"refused: fenced at epoch %llu", (unsigned long long)op->uid,
				peer_op_name(op->sr.op), op->sr.sno, (unsigned long long)op->epoch,
				(unsigned long long)fence);
	else if (res < 0 && op_is_frag(op))
		LOG_RATELIMITED(res == -EILSEQ ? LOG_ERROR : LOG_INFO, LOG_TAG, "family %llx: %s "
				"of segment %u refused: %s%s", (unsigned long long)op->uid,
				peer_op_name(op->sr.op), op->sr.sno, err_str(-res),
				res != -EILSEQ ? ""
				: op->sr.op == PEER_OP_FRAG_PUT ? " (the image does not check)"
								: " (the fragment held here fails its CRC: not sent)");
	else if (res == -EILSEQ && op->sr.op == PEER_OP_SEG_READ)
		LOG_RATELIMITED(LOG_ERROR, LOG_TAG, "family %llx: read of segment %u at block %u "
				"(%u blocks): the copy held here fails its checksum: not sent",
				(unsigned long long)op->uid, op->sr.sno, op->sr.block,
				op->sr.nblocks);
	else if (res == -EILSEQ)
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "family %llx: append to segment %u at block %u "
				"refused: its data does not match its CRC",
				(unsigned long long)op->uid, op->sr.sno, op->sr.block);
}

/* A LAYER_READ's answer: the blocks' CRCs, then the blocks (data[0..1]). */
static int layer_read_answer(struct hold_op *op, struct peer_seg_reply *rep,
			     struct iovec data[2])
{
	uint32_t n = op->sr.nblocks;

	op->crcs = malloc((size_t)n * sizeof(uint32_t));
	if (!op->crcs)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		peer_put32(op->crcs + (size_t)i * sizeof(uint32_t),
			   crc32c(op->buf + (size_t)i * PEER_SEG_BLOCK, PEER_SEG_BLOCK));
	rep->length = n;
	data[0] = (struct iovec){ op->crcs, (size_t)n * sizeof(uint32_t) };
	data[1] = (struct iovec){ op->buf, (size_t)n * PEER_SEG_BLOCK };
	return 0;
}

/* A FRAG_READ's answer: each block checked against the fragment's CRC table, or with
 * PEER_SEG_F_CRCS against the reader's CRCs (a block that fails is never sent:
 * -EILSEQ), then those CRCs of the blocks and the blocks (data[0..1]). */
static int frag_read_answer(struct hold_op *op, struct peer_seg_reply *rep,
			    struct iovec data[2])
{
	uint32_t n = op->sr.nblocks;
	const uint8_t *crcs = op->sr.data;

	if (op->table) {
		crcs = op->table + (size_t)op->sr.block * sizeof(uint32_t) -
		       (size_t)op->table_first * PEER_SEG_BLOCK;
		if (ec_frag_run_check(op->table, op->table_first, op->sr.block, n, op->buf) < 0)
			return -EILSEQ;
	} else if (peer_seg_read_check(&op->sr, op->buf) < 0) {
		return -EILSEQ;
	}
	rep->length = n;
	data[0] = (struct iovec){ (void *)crcs, (size_t)n * sizeof(uint32_t) };
	data[1] = (struct iovec){ op->buf, (size_t)n * PEER_SEG_BLOCK };
	return 0;
}

/* A SEG_LIST's entries, as they are filled (list_answer). */
struct list_fill {
	uint8_t *p;
	uint32_t n;
};

static int list_entry(void *arg, const struct engine_held_info *h)
{
	struct list_fill *f = arg;
	struct peer_seg_entry_msg e = { .sno = h->sno, .length = h->length, .epoch = h->epoch,
					.sealed = h->sealed };

	peer_seg_entry_encode(&e, f->p + (size_t)f->n * sizeof(struct peer_seg_entry));
	return ++f->n == PEER_SEG_LIST_MAX; /* full: the asker asks again from the last */
}

/* A SEG_LIST's answer: the copies of the family held here in the range, by number
 * (data[0]), at most PEER_SEG_LIST_MAX; what SEG_STAT would answer of each. */
static int list_answer(struct hold_op *op, struct engine *eng, struct peer_seg_reply *rep,
		       struct iovec data[2])
{
	struct list_fill f = { 0 };

	op->buf = malloc(PEER_SEG_LIST_MAX * sizeof(struct peer_seg_entry));
	if (!op->buf)
		return -ENOMEM;
	f.p = op->buf;
	(void)engine_held_list_family(eng, op->uid, op->sr.first, op->sr.last, list_entry, &f);
	rep->length = f.n;
	data[0] = (struct iovec){ op->buf, (size_t)f.n * sizeof(struct peer_seg_entry) };
	return 0;
}

/* A SEG_VERIFY's answer: the numbers of the blocks of the run that do not have the
 * CRC32C the owner named (data[0]); the blocks themselves stay here. */
static int verify_answer(struct hold_op *op, struct peer_seg_reply *rep, struct iovec data[2])
{
	op->crcs = malloc((size_t)op->sr.nblocks * sizeof(uint32_t));
	if (!op->crcs)
		return -ENOMEM;
	rep->length = peer_seg_verify_run(&op->sr, op->buf, op->crcs);
	if (rep->length)
		LOG_RATELIMITED(LOG_ERROR, LOG_TAG, "family %llx: scrub of segment %u, blocks "
				"%u-%u: %u blocks of the copy held here fail their checksum "
				"(the first: block %u)", (unsigned long long)op->uid, op->sr.sno,
				op->sr.block, op->sr.block + op->sr.nblocks - 1, rep->length,
				peer_get32(op->crcs));
	data[0] = (struct iovec){ op->crcs, (size_t)rep->length * sizeof(uint32_t) };
	return 0;
}

/* A FRAG_VERIFY's answer: the image read whole, checked here (holder_frag_check_async):
 * each data block's CRC32C as it is and the numbers of those that fail the fragment's
 * table (data[0], put in wire order where they are); the blocks stay here. */
static int frag_verify_answer(struct hold_op *op, struct peer_seg_reply *rep,
			      struct iovec data[2])
{
	const struct holder_frag_check *c = &op->fc;
	uint32_t F = c->fi.frag_blocks, n = F + c->nbad;

	rep->vflags = c->table_bad ? PEER_FRAG_V_TABLE_BAD : 0;
	rep->nbad = c->nbad;
	rep->length = F;
	rep->frag_crc = c->frag_crc;
	for (uint32_t i = 0; i < n; i++)
		peer_put32((uint8_t *)&c->crcs[i], c->crcs[i]);
	data[0] = (struct iovec){ c->crcs, (size_t)n * sizeof(uint32_t) };
	if (c->nbad)
		LOG_RATELIMITED(LOG_ERROR, LOG_TAG, "family %llx: scrub of segment %u: %u blocks "
				"of fragment %u held here fail its table%s (the first: block %u)",
				(unsigned long long)op->uid, op->sr.sno, c->nbad, c->fi.index,
				c->table_bad ? " (the header or the table itself fails)" : "",
				peer_get32((const uint8_t *)&c->crcs[F]));
	return 0;
}

/* Answers the op's request with res (the holder's state of the segment after it) and
 * frees the op. */
static void op_finish(struct hold_op *op, int res)
{
	struct engine *eng = op->h->eng;
	uint64_t fence = family_fence(op, eng);
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct peer_seg_reply rep = { 0 };
	struct engine_held_info info;
	struct iovec data[2];
	struct peer_msg m = { .op = op->sr.op | PEER_OP_REPLY, .volume_id = op->uid,
			      .epoch = fence, .head = head, .data = data };
	bool held;

	if (res == 0 && op->epoch < fence)
		res = -ESTALE; /* never acknowledge what a newer owner fenced off */
	if (res == 0 && op->sr.op == PEER_OP_SEG_READ)
		res = peer_seg_read_check(&op->sr, op->buf); /* a read-around's CRCs */
	if (op_is_frag(op))
		held = op->sr.op != PEER_OP_FRAG_READ && op->sr.op != PEER_OP_FRAG_VERIFY &&
		       frag_held(op, eng, &info);
	else
		held = op_has_segment(op) && op->sr.op != PEER_OP_SEG_LIST &&
		       engine_held_stat(eng, op->uid, op->sr.sno, &info) == 0;
	if (res == 0 && op->sr.op == PEER_OP_SEG_STAT && !held)
		res = -ENOENT;
	rep.length = held ? info.length : 0;
	if (res == 0 && op->sr.op == PEER_OP_LAYER_READ) {
		res = layer_read_answer(op, &rep, data);
		m.datacnt = res == 0 ? 2 : 0;
	}
	if (res == 0 && op->sr.op == PEER_OP_FRAG_READ) {
		res = frag_read_answer(op, &rep, data);
		m.datacnt = res == 0 ? 2 : 0;
	}
	if (res == 0 && op->sr.op == PEER_OP_FRAG_VERIFY) {
		res = frag_verify_answer(op, &rep, data);
		m.datacnt = res == 0 ? 1 : 0;
	}
	if (res == 0 && op->sr.op == PEER_OP_SEG_LIST) {
		res = list_answer(op, eng, &rep, data);
		m.datacnt = res == 0 ? 1 : 0;
	}
	if (res == 0 && op->sr.op == PEER_OP_SEG_VERIFY) {
		res = verify_answer(op, &rep, data);
		m.datacnt = res == 0 ? 1 : 0;
	}
	log_refusal(op, fence, res);
	if (res == 0 && op->sr.op == PEER_OP_SEG_DELETE && op->held_before)
		log_msg(LOG_INFO, LOG_TAG, "family %016llx segment %08x: %s deleted by its "
			"owner (SEG_DELETE)", (unsigned long long)op->uid, op->sr.sno,
			op_is_frag(op) ? "fragment" : "copy");
	rep.result = res;
	if (res == 0 && op->sr.op == PEER_OP_LAYER_FIND) {
		rep.family = op->found.family;
		rep.layer = op->found.layer;
		rep.blocks = op->found.blocks;
	}
	if (res == 0 && op->sr.op == PEER_OP_SEG_STAT) {
		rep.epoch = info.epoch;
		rep.sealed = info.sealed;
	}
	if (res == 0 && op->sr.op == PEER_OP_SEG_READ) {
		data[0] = (struct iovec){ op->buf, (size_t)op->sr.nblocks * PEER_SEG_BLOCK };
		m.datacnt = 1;
	}
	m.head_len = peer_seg_reply_encode(m.op, &rep, head);
	peer_req_reply(op->req, &m);
	op->req = NULL;
	op_free(op);
}

/* The end of the op's last engine step. */
static void op_done(void *arg, int res)
{
	struct hold_op *op = arg;

	if (!op->h) {
		op_free(op); /* the holder is gone: nothing to answer */
		return;
	}
	op_finish(op, res < 0 ? res : 0);
}

/* A FUA append is answered once it is durable. */
static void op_written(void *arg, int res)
{
	struct hold_op *op = arg;
	int r;

	stages_mark("holder.written");
	if (res < 0 || !op->h || !(op->sr.flags & PEER_SEG_F_FUA)) {
		op_done(op, res);
		return;
	}
	r = engine_held_flush(op->h->eng, op_done, op);
	if (r < 0)
		op_finish(op, r);
}

/* ---- running ---- */

/* A LAYER_READ: the snapshot's blocks, read as a client reads (through its layers,
 * holes as zeros) from this node's own map; the cleaner may move them meanwhile. */
static int layer_read_start(struct hold_op *op, struct engine *eng)
{
	const struct peer_seg_req *sr = &op->sr;
	int r = engine_snapshot_open_by_id(eng, op->uid, sr->layer, &op->snap);

	if (r < 0)
		return r;
	op->buf = aligned_alloc(PEER_SEG_BLOCK, (size_t)sr->nblocks * PEER_SEG_BLOCK);
	if (!op->buf)
		return -ENOMEM;
	if (sr->lba + sr->nblocks >
	    (engine_volume_size(op->snap) + PEER_SEG_BLOCK - 1) / PEER_SEG_BLOCK)
		return -ERANGE; /* (the decoder refused a range that wraps) */
	return engine_read(op->snap, sr->lba, sr->nblocks, op->buf, op_done, op);
}

/* A LAYER_FIND: which layer VOLUME@SNAP is, from this node's catalog (-ESTALE: this
 * node does not run VOLUME; the asker looks its owner up again). */
static int layer_find(struct hold_op *op, struct engine *eng)
{
	struct peer_seg_reply *f = &op->found;
	uint64_t size = 0;
	int r = engine_volume_family(eng, op->sr.volume, &f->family);

	if (r < 0)
		return r == -ENOENT ? -ESTALE : r;
	r = engine_snapshot_find(eng, op->sr.volume, op->sr.snap, &f->family, &f->layer, &size);
	f->blocks = (size + PEER_SEG_BLOCK - 1) / PEER_SEG_BLOCK;
	return r < 0 ? r : 1;
}

/* One of a FRAG_READ's two reads (the table's blocks, the data's) ended. */
static void frag_part_done(void *arg, int res)
{
	struct hold_op *op = arg;

	stages_mark("holder.frag_part");
	if (res < 0 && !op->part_err)
		op->part_err = res;
	if (--op->parts == 0)
		op_done(op, op->part_err);
}

/* A FRAG_READ: the blocks asked for and the part of the CRC table that covers them,
 * read at once; checked against each other when both are in (frag_read_answer). With
 * the reader's CRCs (PEER_SEG_F_CRCS) the blocks alone, checked against those. */
static int frag_read_start(struct hold_op *op, struct engine *eng)
{
	const struct peer_seg_req *sr = &op->sr;
	struct engine_frag_info *fi = &op->fi;
	uint32_t table_blocks, count;
	int r = engine_frag_stat(eng, op->uid, sr->sno, fi);

	if (r < 0)
		return r;
	if (fi->index != sr->index)
		return -ENOENT; /* another fragment of the segment: not the one asked for */
	if ((uint64_t)sr->block + sr->nblocks > fi->frag_blocks)
		return -ERANGE;
	table_blocks = fi->image_blocks - 1 - fi->frag_blocks;
	ec_frag_table_span(sr->block, sr->nblocks, &op->table_first, &count);
	if (op->table_first + count > table_blocks)
		return -EIO; /* the record's geometry does not hold */
	op->buf = aligned_alloc(PEER_SEG_BLOCK, (size_t)sr->nblocks * PEER_SEG_BLOCK);
	if (!op->buf)
		return -ENOMEM;
	if (sr->flags & PEER_SEG_F_CRCS) {
		op->parts = 1;
		return engine_frag_read(eng, op->uid, sr->sno, 1 + table_blocks + sr->block,
					op->buf, sr->nblocks, frag_part_done, op);
	}
	op->table = aligned_alloc(PEER_SEG_BLOCK, (size_t)count * PEER_SEG_BLOCK);
	if (!op->table)
		return -ENOMEM;
	op->parts = 2;
	r = engine_frag_read(eng, op->uid, sr->sno, 1 + op->table_first, op->table, count,
			     frag_part_done, op);
	if (r < 0)
		return r;
	r = engine_frag_read(eng, op->uid, sr->sno, 1 + table_blocks + sr->block, op->buf,
			     sr->nblocks, frag_part_done, op);
	if (r < 0) { /* the table's read answers, with this error */
		op->part_err = r;
		op->parts--;
	}
	return 0;
}

/* A FRAG_VERIFY: the fragment's whole image, read and checked here (the answer:
 * frag_verify_answer). */
static int frag_verify_start(struct hold_op *op, struct engine *eng)
{
	return holder_frag_check_async(eng, op->uid, op->sr.sno, op->sr.index, &op->fc, op_done,
				       op);
}

/* Starts the op's own engine step. Returns 0 (a callback answers), 1 (nothing to do
 * in the engine: answer now) or -errno. */
static int op_start(struct hold_op *op)
{
	struct engine *eng = op->h->eng;
	const struct peer_seg_req *sr = &op->sr;
	struct iovec iov;

	switch (sr->op) {
	case PEER_OP_SEG_OPEN:
		return engine_held_open_async(eng, op->uid, sr->sno, op->epoch, op_done, op);
	case PEER_OP_SEG_APPEND:
		iov = (struct iovec){ (void *)sr->data, (size_t)sr->nblocks * PEER_SEG_BLOCK };
		return engine_held_write(eng, op->uid, sr->sno, sr->block, &iov, 1, sr->nblocks,
					 op_written, op);
	case PEER_OP_SEG_READ:
	case PEER_OP_SEG_VERIFY: /* read here, checked here (verify_answer) */
		op->buf = aligned_alloc(PEER_SEG_BLOCK, (size_t)sr->nblocks * PEER_SEG_BLOCK);
		if (!op->buf)
			return -ENOMEM;
		iov = (struct iovec){ op->buf, (size_t)sr->nblocks * PEER_SEG_BLOCK };
		return engine_held_read(eng, op->uid, sr->sno, sr->block, &iov, 1, sr->nblocks,
					op_done, op);
	case PEER_OP_SEG_SEAL:
		return engine_held_seal_async(eng, op->uid, sr->sno, sr->length, op_done, op);
	case PEER_OP_SEG_DELETE:
		if (sr->kind == PEER_SEG_KIND_FRAG) {
			op->held_before = engine_frag_stat(eng, op->uid, sr->sno, &op->fi) == 0;
			return engine_frag_delete_async(eng, op->uid, sr->sno, op_done, op);
		}
		op->held_before = engine_held_stat(eng, op->uid, sr->sno,
						   &(struct engine_held_info){ 0 }) == 0;
		return engine_held_delete_async(eng, op->uid, sr->sno, op_done, op);
	case PEER_OP_SEG_FLUSH: /* the held copies only: see engine_held_flush */
		return engine_held_flush(eng, op_done, op);
	case PEER_OP_LAYER_READ:
		return layer_read_start(op, eng);
	case PEER_OP_LAYER_FIND:
		return layer_find(op, eng);
	case PEER_OP_FRAG_PUT:
		return engine_frag_put_async(eng, &op->fi, sr->data, op_done, op);
	case PEER_OP_FRAG_READ:
		return frag_read_start(op, eng);
	case PEER_OP_FRAG_VERIFY:
		return frag_verify_start(op, eng);
	default: /* EPOCH_RAISE (the raise was all of it), SEG_STAT, SEG_LIST */
		return 1;
	}
}

static void op_run(struct hold_op *op)
{
	int r = op_start(op);

	if (r != 0)
		op_finish(op, r < 0 ? r : 0);
}

static void op_raised(void *arg, int res)
{
	struct hold_op *op = arg;

	if (!op->h) {
		op_free(op);
		return;
	}
	/* our raise may have been overtaken by a higher one while it committed */
	if (res >= 0 && op->epoch < family_fence(op, op->h->eng))
		res = -ESTALE;
	if (res < 0)
		op_finish(op, res);
	else
		op_run(op);
}

/* A FRAG_PUT's image, checked whole before anything is written or raised (its header,
 * its table, every block, the fragment's CRC: ec_frag_verify): the fragment it names
 * must be of the frame's family and the request's segment. Fills op->fi. */
static int frag_put_check(struct hold_op *op)
{
	const struct peer_seg_req *sr = &op->sr;
	struct ec_frag_info f;
	int r = ec_frag_verify(sr->data, (size_t)sr->nblocks * PEER_SEG_BLOCK, &f);

	if (r < 0)
		return r;
	if (f.family != op->uid || f.seq != sr->sno)
		return -EINVAL;
	op->fi = (struct engine_frag_info){ .uid = op->uid, .sno = sr->sno, .epoch = op->epoch,
					    .index = (uint8_t)f.index, .k = (uint8_t)f.geom.k,
					    .m = (uint8_t)f.geom.m,
					    .seg_blocks = f.geom.seg_blocks,
					    .frag_blocks = f.geom.frag_blocks,
					    .image_blocks = sr->nblocks, .frag_crc = f.frag_crc };
	return 0;
}

/* What is refused before anything is written, the fence's raise included (a FRAG_PUT
 * fills op->fi from its image). */
static int op_check(struct hold_op *op, struct engine *eng)
{
	const struct peer_seg_req *sr = &op->sr;

	if (op_has_family(op) && (op->uid == 0 || op->epoch == 0))
		return -EINVAL; /* every segment op names a family and its owner's epoch */
	/* a clone elsewhere reads through a snapshot of a family this node runs; the
	 * snapshot is immutable, so any node that runs the family answers it right */
	if (sr->op == PEER_OP_LAYER_READ)
		return op->uid && engine_family_here(eng, op->uid) ? 0 : -ESTALE;
	/* This node runs the family (it owned it, and its release is not done yet): its
	 * segments are its own log, not copies. Above all a SEG_STAT must not answer
	 * "no such segment": a takeover counts that as 0 blocks and would seal the open
	 * segment short of writes this node acknowledged. Asked again once released. */
	if (op_has_segment(op) && sr->op != PEER_OP_SEG_DELETE && !op_is_frag(op) &&
	    engine_family_here(eng, op->uid))
		return -EBUSY;
	/* (a fragment is never the family's log: the owner may hold one of its own) */
	if (sr->op == PEER_OP_FRAG_PUT)
		return frag_put_check(op);
	if (sr->op == PEER_OP_SEG_OPEN && sr->segment_blocks != engine_segment_blocks(eng))
		return -EINVAL;
	if (sr->op == PEER_OP_SEG_APPEND)
		return peer_seg_data_check(sr);
	return 0;
}

/* The fence: returns 0 (run now), 1 (a raise is under way: op_raised runs it) or
 * -errno. */
static int op_fence(struct hold_op *op, struct engine *eng)
{
	uint64_t fence;
	int r;

	if (!op_has_family(op))
		return 0;
	fence = engine_held_epoch(eng, op->uid);
	if (op->epoch < fence)
		return -ESTALE;
	if (op->epoch == fence)
		return 0;
	r = engine_held_epoch_raise_async(eng, op->uid, op->epoch, op_raised, op);
	return r < 0 ? r : 1;
}

void holder_serve(void *arg, struct peer_req *req)
{
	struct holder *h = arg;
	const struct peer_hdr *hdr = peer_req_hdr(req);
	struct hold_op *op = calloc(1, sizeof(*op));
	int r;

	if (!op) {
		peer_req_refuse(req, -ENOMEM);
		return;
	}
	op->h = h;
	op->req = req;
	op->uid = hdr->volume_id;
	op->epoch = hdr->epoch;
	op->sr = *peer_req_seg(req); /* decoded and checked by peer.c */
	op->next = h->ops;
	if (h->ops)
		h->ops->prev = op;
	h->ops = op;
	r = op_check(op, h->eng);
	if (r == 0)
		r = op_fence(op, h->eng);
	if (r < 0)
		op_finish(op, r);
	else if (r == 0)
		op_run(op);
}

/* ---- a fragment held here, checked where it is ---- */

static void frag_checked(void *arg, int res)
{
	struct holder_frag_check *c = arg;
	struct ec_geom g;
	int r = res < 0 ? res : ec_geom_init(&g, c->fi.k, c->fi.m, c->fi.seg_blocks);

	if (r == 0)
		c->crcs = malloc((size_t)c->fi.frag_blocks * 2 * sizeof(uint32_t));
	if (r == 0 && !c->crcs)
		r = -ENOMEM;
	if (r == 0)
		r = ec_frag_scrub(c->image, (size_t)c->fi.image_blocks * ENGINE_BLOCK_SIZE, &g,
				  c->fi.index, c->crcs, c->crcs + c->fi.frag_blocks, &c->nbad,
				  &c->frag_crc);
	if (r >= 0)
		c->table_bad = r == 1;
	c->cb(c->arg, r < 0 ? (r == -EINVAL ? -EIO : r) : 0);
}

int holder_frag_check_async(struct engine *eng, uint64_t uid, uint32_t sno, unsigned index,
			    struct holder_frag_check *c, engine_cb cb, void *arg)
{
	struct engine_frag_info *fi = &c->fi;
	struct ec_geom g;
	int r;

	*c = (struct holder_frag_check){ .cb = cb, .arg = arg };
	r = engine_frag_stat(eng, uid, sno, fi);
	if (r < 0)
		return r;
	if (fi->index != index)
		return -ENOENT; /* another fragment of the segment: not the one asked for */
	if (ec_geom_init(&g, fi->k, fi->m, fi->seg_blocks) < 0 || g.frag_blocks != fi->frag_blocks)
		return -EIO; /* the record's geometry does not hold */
	c->image = aligned_alloc(ENGINE_BLOCK_SIZE, (size_t)fi->image_blocks * ENGINE_BLOCK_SIZE);
	if (!c->image)
		return -ENOMEM;
	return engine_frag_read(eng, uid, sno, 0, c->image, fi->image_blocks, frag_checked, c);
}

void holder_frag_check_free(struct holder_frag_check *c)
{
	free(c->crcs);
	free(c->image);
	c->crcs = NULL;
	c->image = NULL;
}
