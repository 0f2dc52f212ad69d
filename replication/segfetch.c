/* replication/segfetch.c — see segfetch.h. Each request holds its own small struct
 * (the fetch, the chunk, the source); the fetch lives until its last request is
 * answered, so that segfetch_destroy() never leaves a reply without its buffer. */
#include "replication/segfetch.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "engine/engine.h"
#include "engine/logcheck.h"
#include "engine/segment.h"
#include "replication/peer.h"
#include "replication/peer_proto.h"
#include "replication/replica_internal.h"

#undef LOG_TAG
#define LOG_TAG "rebuild"

_Static_assert(SEGFETCH_CHUNK_BLOCKS <= PEER_SEG_READ_MAX_BLOCKS, "a chunk is one SEG_READ");

enum chunk_state { CH_TODO, CH_ASKED, CH_DONE };

struct fsrc {
	struct rnode *n;
	unsigned inflight;
	bool bad;     /* refused, failed, or sent part of a bad batch: not asked again */
	bool used;    /* sent a chunk that was kept */
};

struct segfetch {
	struct replicas *rs;
	uint64_t uid;
	uint32_t sno, blocks;
	int64_t epoch;
	segfetch_cb cb;       /* NULL: destroyed or finished */
	void *arg;
	uint8_t *img;
	uint32_t nchunks;
	uint8_t *state;       /* enum chunk_state per chunk */
	uint8_t *from;        /* the source each chunk was asked of */
	struct fsrc src[LAYOUT_MAX_HOLDERS];
	unsigned nsrc;
	unsigned pending;     /* requests not answered */
	bool dead;            /* segfetch_destroy() came: free with the last reply */
	char why[160];
};

struct freq {
	struct segfetch *f;
	uint32_t chunk;
	unsigned src;
};

static void fetch_free(struct segfetch *f)
{
	seg_buf_free(f->img);
	free(f->state);
	free(f->from);
	free(f);
}

static uint32_t chunk_len(const struct segfetch *f, uint32_t c)
{
	uint32_t at = c * SEGFETCH_CHUNK_BLOCKS;

	return f->blocks - at < SEGFETCH_CHUNK_BLOCKS ? f->blocks - at : SEGFETCH_CHUNK_BLOCKS;
}

static bool src_live(const struct fsrc *s)
{
	return !s->bad && replica_node_live(s->n);
}

/* The end: cb runs last (it may destroy f). */
static void finish(struct segfetch *f, int res)
{
	segfetch_cb cb = f->cb;

	f->cb = NULL;
	cb(f->arg, res, f->why);
}

static void replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
		    size_t len);

static int ask(struct segfetch *f, uint32_t c, unsigned si)
{
	struct fsrc *s = &f->src[si];
	struct freq *q = calloc(1, sizeof(*q));
	struct peer_seg_req rq = { .op = PEER_OP_SEG_READ, .sno = f->sno,
				   .block = c * SEGFETCH_CHUNK_BLOCKS, .nblocks = chunk_len(f, c) };
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct peer_msg m = { .op = PEER_OP_SEG_READ, .volume_id = f->uid,
			      .epoch = (uint64_t)f->epoch, .head = head };
	int r;

	if (!q)
		return -ENOMEM;
	*q = (struct freq){ .f = f, .chunk = c, .src = si };
	m.head_len = peer_seg_req_encode(&rq, head);
	r = peer_request(s->n->conn, &m, f->rs->timeout_ms, replied, q);
	if (r < 0) {
		free(q);
		return r;
	}
	f->state[c] = CH_ASKED;
	f->from[c] = (uint8_t)si;
	s->inflight++;
	f->pending++;
	return 0;
}

/* The next chunk to ask for, or nchunks. */
static uint32_t next_todo(const struct segfetch *f)
{
	for (uint32_t c = 0; c < f->nchunks; c++)
		if (f->state[c] == CH_TODO)
			return c;
	return f->nchunks;
}

/* Gives every live source chunks up to SEGFETCH_PER_HOLDER, round robin; the number
 * of chunks that still want asking with nobody left to ask them. */
static uint32_t pump(struct segfetch *f)
{
	bool sent = true;

	while (sent) {
		sent = false;
		for (unsigned i = 0; i < f->nsrc; i++) {
			uint32_t c = next_todo(f);

			if (c == f->nchunks)
				return 0;
			if (!src_live(&f->src[i]) || f->src[i].inflight >= SEGFETCH_PER_HOLDER)
				continue;
			if (ask(f, c, i) < 0)
				f->src[i].bad = true;
			else
				sent = true;
		}
	}
	for (unsigned i = 0; i < f->nsrc; i++)
		if (src_live(&f->src[i]))
			return 0; /* busy: it takes more as it answers */
	return next_todo(f) < f->nchunks ? 1 : 0;
}

/* Every chunk is in: the image is checked; a bad part is asked of other holders. */
static void check(struct segfetch *f)
{
	uint32_t a, b;

	if (logcheck_image_check(f->img, f->blocks, f->uid, f->sno, &a, &b) == 0) {
		finish(f, 0);
		return;
	}
	for (uint32_t c = a / SEGFETCH_CHUNK_BLOCKS; c <= (b - 1) / SEGFETCH_CHUNK_BLOCKS; c++) {
		f->src[f->from[c]].bad = true;
		f->src[f->from[c]].used = false;
		f->state[c] = CH_TODO;
	}
	LOG_RATELIMITED(LOG_WARN, LOG_TAG, "segment %016" PRIx64 ".%08" PRIx32 ": blocks %" PRIu32
			"-%" PRIu32 " as read from node %s fail their checksum: read from another "
			"holder", f->uid, f->sno, a, b - 1, f->src[f->from[a / SEGFETCH_CHUNK_BLOCKS]].n->id);
	if (pump(f) && !f->pending) {
		snprintf(f->why, sizeof(f->why), "blocks %" PRIu32 "-%" PRIu32 " fail their "
			 "checksum on every holder asked", a, b - 1);
		finish(f, -EILSEQ);
	}
}

static void replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
		    size_t len)
{
	struct freq *q = arg;
	struct segfetch *f = q->f;
	struct fsrc *s = &f->src[q->src];
	struct peer_seg_reply rep = { 0 };
	uint32_t c = q->chunk;
	int r = res;

	(void)h;
	free(q);
	f->pending--;
	s->inflight--;
	if (f->dead) {
		if (!f->pending)
			fetch_free(f);
		return;
	}
	if (!f->cb)
		return; /* finished: the caller frees f */
	if (r == 0)
		r = peer_seg_reply_decode(PEER_OP_SEG_READ, payload, len, &rep) < 0 ? -EPROTO
										 : rep.result;
	if (r == 0 && rep.nblocks != chunk_len(f, c))
		r = -EPROTO;
	if (r < 0) {
		LOG_RATELIMITED(LOG_INFO, LOG_TAG, "segment %016" PRIx64 ".%08" PRIx32 ": node %s "
				"did not send blocks from %" PRIu32 " (%s): asking another holder",
				f->uid, f->sno, s->n->id, c * SEGFETCH_CHUNK_BLOCKS, err_str(-r));
		snprintf(f->why, sizeof(f->why), "node %s: %s", s->n->id, err_str(-r));
		s->bad = true;
		f->state[c] = CH_TODO;
	} else {
		memcpy(f->img + (size_t)c * SEGFETCH_CHUNK_BLOCKS * ENGINE_BLOCK_SIZE, rep.data,
		       (size_t)rep.nblocks * ENGINE_BLOCK_SIZE);
		f->state[c] = CH_DONE;
		s->used = true;
	}
	if (pump(f)) {
		if (!f->pending)
			finish(f, -ENOTCONN);
		return;
	}
	if (!f->pending && next_todo(f) == f->nchunks)
		check(f);
}

int segfetch_start(struct replicas *rs, uint64_t uid, uint32_t sno, int64_t epoch,
		   uint32_t blocks, const char (*holders)[LAYOUT_ID_MAX + 1], unsigned nholders,
		   segfetch_cb cb, void *arg, struct segfetch **out)
{
	struct segfetch *f;

	if (!blocks)
		return -EINVAL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	*f = (struct segfetch){ .rs = rs, .uid = uid, .sno = sno, .blocks = blocks,
				.epoch = epoch, .cb = cb, .arg = arg,
				.nchunks = (blocks + SEGFETCH_CHUNK_BLOCKS - 1) /
					   SEGFETCH_CHUNK_BLOCKS };
	f->img = seg_buf_alloc((size_t)blocks * ENGINE_BLOCK_SIZE);
	f->state = calloc(f->nchunks, 1);
	f->from = calloc(f->nchunks, 1);
	if (!f->img || !f->state || !f->from) {
		fetch_free(f);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < nholders && f->nsrc < LAYOUT_MAX_HOLDERS; i++) {
		struct rnode *n = replica_node_find(rs, holders[i]);

		if (n)
			f->src[f->nsrc++] = (struct fsrc){ .n = n };
	}
	/* with requests in flight, their answers finish it (even if nobody is left to
	 * ask for the rest: the last answer says so) */
	pump(f);
	if (!f->pending) {
		fetch_free(f);
		return -ENOTCONN;
	}
	*out = f;
	return 0;
}

const void *segfetch_data(const struct segfetch *f)
{
	return f->img;
}

unsigned segfetch_sources(const struct segfetch *f)
{
	unsigned n = 0;

	for (unsigned i = 0; i < f->nsrc; i++)
		n += f->src[i].used;
	return n;
}

void segfetch_destroy(struct segfetch *f)
{
	if (!f)
		return;
	f->cb = NULL;
	if (f->pending)
		f->dead = true;
	else
		fetch_free(f);
}
