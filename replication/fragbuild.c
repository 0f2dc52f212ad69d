/* replication/fragbuild.c — one fragment rebuilt on a new holder (fragbuild.h). A
 * `struct fragbuild` has exactly one thing outstanding at a time (the budget's timer, a
 * fragments' read, the worker's images, the put, the record); once abandoned, the
 * answer to that one thing frees it (a timer is cancelled, a read orphaned).
 */
#include "replication/fragbuild.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/worker.h"
#include "engine/engine.h"
#include "engine/segment.h"
#include "replication/catchup.h"
#include "replication/ec.h"
#include "replication/ec_format.h"
#include "replication/encode.h"
#include "replication/fragread.h"
#include "replication/replica_internal.h"

#undef LOG_TAG
#define LOG_TAG "catchup"

enum fbstep { FB_WAIT, FB_READ, FB_IMAGE, FB_MARK, FB_PUT, FB_RECORD };

struct fragbuild {
	struct replicas *rs;
	bool abandoned;
	enum fbstep step;
	struct fragbuild_req q;          /* rec and vol point into this struct */
	struct layout_segment rec;
	char vol[LAYOUT_ID_MAX + 1];
	struct ec_geom g;
	uint8_t *seg;                    /* the segment's L blocks, read */
	uint8_t *images[EC_N_MAX];
	struct worker_job wj;            /* FB_IMAGE: the worker's, with seg and images */
	int image_res;                   /* its result */
	uint32_t image_crc;              /* ... and the lost fragment's CRC */
	size_t image_bytes;
	uint32_t at, n;                  /* blocks read, this run */
	struct seg_fetch_block want[FRAGBUILD_RUN_BLOCKS];
	struct seg_fetch_block *wantp[FRAGBUILD_RUN_BLOCKS];
	struct fragread *fr;
	struct loop_timer *wait;
	struct cluster_vol_req req;
	bool deleting;                   /* the put in flight is the delete before it */
	bool deleted;                    /* an -EEXIST was answered by a delete once */
};

static void read_next(struct fragbuild *b);
static void mark(struct fragbuild *b);

static void fb_free(struct fragbuild *b)
{
	seg_buf_free(b->seg);
	for (unsigned i = 0; i < EC_N_MAX; i++)
		seg_buf_free(b->images[i]);
	free(b);
}

static const char *to_id(const struct fragbuild *b)
{
	return b->q.to ? b->q.to->id : b->rs->self;
}

static void fb_done(struct fragbuild *b, int res, const char *why)
{
	b->q.done(b->q.arg, res, why);
	fb_free(b);
}

static void fb_fail(struct fragbuild *b, int res, const char *what)
{
	char why[384];

	snprintf(why, sizeof(why), "%s: %s", what, err_str(-res));
	fb_done(b, res, why);
}

/* b's etcd call of step `step`: op on its segment, under its epoch. */
static void req_init(struct fragbuild *b, enum fbstep step, enum cluster_vol_op op)
{
	b->step = step;
	memset(&b->req, 0, sizeof(b->req));
	b->req.op = op;
	snprintf(b->req.vol.name, sizeof(b->req.vol.name), "%s", b->vol);
	b->req.epoch = b->q.epoch;
	b->req.seg.id = b->rec.id;
}

/* ---- 4. the record ---- */

static void recorded(void *arg, int res, const char *msg)
{
	struct fragbuild *b = arg;

	if (b->abandoned) {
		fb_free(b);
		return;
	}
	if (res < 0) {
		fb_done(b, res, msg);
		return;
	}
	/* this node's reads go to the new holder from now on */
	snprintf(b->rec.stripe.frags[b->q.index], sizeof(b->rec.stripe.frags[0]), "%s",
		 to_id(b));
	(void)fragread_stripe_put(b->rs, &b->rec); /* (a cache: may fail) */
	fb_done(b, 0, "");
}

static void record(struct fragbuild *b)
{
	req_init(b, FB_RECORD, CLUSTER_VOL_SEG_REFRAG);
	b->req.frag_index = b->q.index;
	snprintf(b->req.frag_from, sizeof(b->req.frag_from), "%s",
		 b->rec.stripe.frags[b->q.index]);
	snprintf(b->req.copy_node, sizeof(b->req.copy_node), "%s", to_id(b));
	if (cluster_volume_async(b->rs->cluster, &b->req, recorded, b) < 0)
		fb_fail(b, -ENOMEM, "recording the new holder");
}

/* ---- 3. the put ---- */

static int put(struct fragbuild *b, bool del);

static void put_done(void *arg, int res)
{
	struct fragbuild *b = arg;

	if (b->abandoned) {
		fb_free(b);
		return;
	}
	if (res == 0 && b->deleting) {
		res = put(b, false); /* the other fragment is gone: the put again */
	} else if (res == -EEXIST && !b->deleted) {
		/* another fragment of the segment there (a rebuild of another index never
		 * recorded): deleted first, once */
		b->deleted = true;
		res = put(b, true);
	} else if (res == 0) {
		if (b->rs->test_crash_rebuild &&
		    ++b->rs->frags_rebuilt_put == b->rs->test_crash_rebuild) {
			log_msg(LOG_WARN, LOG_TAG, "test: crashing after the rebuilt fragment %u of "
				"segment %08" PRIx32 " is durable on node %s, before its record",
				b->q.index, b->rec.id.seq, to_id(b));
			raise(SIGKILL);
		}
		record(b);
		return;
	}
	if (res < 0)
		fb_fail(b, res, "putting the fragment");
}

static int put(struct fragbuild *b, bool del)
{
	struct encode_frag f = { .to = b->q.to, .uid = b->rec.id.family, .sno = b->rec.id.seq,
				 .epoch = b->q.epoch, .g = &b->g, .index = b->q.index,
				 .image = b->images[b->q.index], .image_bytes = b->image_bytes };

	b->step = FB_PUT;
	b->deleting = del;
	return encode_frag_send(b->rs, &f, del, put_done, b);
}

/* ---- 3a. the mark ---- */

static void marked(void *arg, int res, const char *msg)
{
	struct fragbuild *b = arg;

	if (b->abandoned) {
		fb_free(b);
		return;
	}
	/* -EEXIST: the node holds a replica of the segment (the replicas kept beside the
	 * stripe): no mark, and none needed for the segment's safety */
	if (res < 0 && res != -EEXIST) {
		fb_done(b, res, msg);
		return;
	}
	res = put(b, false);
	if (res < 0)
		fb_fail(b, res, "putting the fragment");
}

/* The record's "copying" names the new holder before the put: its orphan check keeps
 * the fragment until the stripe names it (a put the stripe does not name is dropped
 * otherwise, and could be, between the put and the record). A rebuild that fails
 * leaves the mark to the next scan (catch-up takes out a "copying" entry no job of its
 * own is behind). */
static void mark(struct fragbuild *b)
{
	req_init(b, FB_MARK, CLUSTER_VOL_SEG_COPY);
	snprintf(b->req.copy_node, sizeof(b->req.copy_node), "%s", to_id(b));
	b->req.copy_phase = CLVOL_COPY_START;
	if (cluster_volume_async(b->rs->cluster, &b->req, marked, b) < 0)
		fb_fail(b, -ENOMEM, "marking the new holder");
}

/* ---- 2. the image, on the worker (rs->worker) ---- */

/* The segment read whole: its K+M images (the code its own: fragread's are the loop's),
 * the lost one's header decoded for its CRC; all but that image freed. */
static void image_run(void *arg)
{
	struct fragbuild *b = arg;
	struct ec_code *code = NULL;
	struct ec_frag_info fi;
	int r = ec_code_create(b->g.k, b->g.m, &code);

	for (unsigned i = 0; r == 0 && i < b->g.k + b->g.m; i++)
		if (!(b->images[i] = seg_buf_alloc(b->image_bytes)))
			r = -ENOMEM;
	if (r == 0)
		r = ec_stripe_images(code, &b->g, b->seg, b->rec.id.family, b->rec.id.seq,
				     (uint64_t)b->q.epoch, b->images);
	if (r == 0)
		r = ec_frag_hdr_decode(b->images[b->q.index], b->image_bytes, &fi);
	ec_code_destroy(code);
	b->image_res = r;
	b->image_crc = r == 0 ? fi.frag_crc : 0;
	/* the lost fragment's image is all the put needs, through the etcd round trips */
	seg_buf_free(b->seg);
	b->seg = NULL;
	for (unsigned i = 0; i < b->g.k + b->g.m; i++)
		if (i != b->q.index) {
			seg_buf_free(b->images[i]);
			b->images[i] = NULL;
		}
}

/* The images made (res: -ECANCELED, the worker stopped first), on the loop: the lost
 * one must have the record's CRC, then it is put. */
static void image_done(void *arg, int res)
{
	struct fragbuild *b = arg;
	char why[160];

	if (b->abandoned) {
		fb_free(b);
		return;
	}
	res = res < 0 ? res : b->image_res;
	if (res < 0) {
		fb_fail(b, res, "making the images");
		return;
	}
	if (b->image_crc != b->rec.stripe.crcs[b->q.index]) {
		snprintf(why, sizeof(why), "the rebuilt fragment's CRC %08" PRIx32 " is not the "
			 "recorded %08" PRIx32 ": nothing written", b->image_crc,
			 b->rec.stripe.crcs[b->q.index]);
		fb_done(b, -EILSEQ, why);
		return;
	}
	log_msg(LOG_DEBUG, LOG_TAG, "volume %s segment %08" PRIx32 ": fragment %u's image made on "
		"the worker (%.2f ms of its CPU)", b->vol, b->rec.id.seq, b->q.index,
		(double)b->wj.run_ns / 1e6);
	mark(b);
}

static void image(struct fragbuild *b)
{
	b->step = FB_IMAGE;
	b->wj = (struct worker_job){ .run = image_run, .done = image_done, .arg = b };
	worker_submit(b->rs->worker, &b->wj);
}

/* ---- 1. the read ---- */

static void run_read(void *arg, const char *why)
{
	struct fragbuild *b = arg;

	b->fr = NULL;
	for (uint32_t i = 0; i < b->n; i++)
		if (b->want[i].res != 0) {
			char msg[384];

			snprintf(msg, sizeof(msg), "block %" PRIu32 " cannot be read from the other "
				 "fragments (%s)", b->at + i, why && why[0] ? why : "none answered");
			fb_done(b, b->want[i].res, msg);
			return;
		}
	if (b->q.progress)
		b->q.progress(b->q.arg, (uint64_t)b->n * ENGINE_BLOCK_SIZE);
	b->at += b->n;
	read_next(b);
}

static void wait_fire(void *arg)
{
	struct fragbuild *b = arg;

	b->wait = NULL;
	read_next(b);
}

/* The next run, paid first; all read: the image. */
static void read_next(struct fragbuild *b)
{
	struct fragread_run run = { .uid = b->rec.id.family, .sno = b->rec.id.seq,
				    .epoch = b->q.epoch, .st = &b->rec.stripe,
				    .seg_blocks = b->g.seg_blocks, .first = b->at,
				    .want = b->wantp, .no_map_crcs = true };
	unsigned ms;
	int r;

	if (b->at >= b->g.seg_blocks) {
		image(b);
		return;
	}
	b->n = b->g.seg_blocks - b->at < FRAGBUILD_RUN_BLOCKS ? b->g.seg_blocks - b->at
							     : FRAGBUILD_RUN_BLOCKS;
	ms = catchup_budget_take(b->q.budget, loop_now_ms(), (uint64_t)b->n * ENGINE_BLOCK_SIZE);
	if (ms) {
		b->step = FB_WAIT;
		r = loop_timer_add(b->rs->loop, ms, wait_fire, b, &b->wait);
		if (r < 0)
			fb_fail(b, r, "waiting for the budget");
		return;
	}
	b->step = FB_READ;
	run.count = b->n;
	for (uint32_t i = 0; i < b->n; i++) {
		b->want[i] = (struct seg_fetch_block){
			.dst = b->seg + (size_t)(b->at + i) * ENGINE_BLOCK_SIZE, .res = -EIO };
		b->wantp[i] = &b->want[i];
	}
	r = fragread_start(b->rs, &run, run_read, b, &b->fr);
	if (r < 0)
		fb_fail(b, r, "reading the other fragments");
}

/* ---- the module ---- */

/* done never runs inside start: the first step goes through the loop */
static void first_step(void *arg)
{
	wait_fire(arg);
}

int fragbuild_start(struct replicas *rs, const struct fragbuild_req *q, struct fragbuild **out)
{
	struct fragbuild *b = calloc(1, sizeof(*b));
	const struct layout_stripe *st = &q->rec->stripe;
	int r;

	if (!b)
		return -ENOMEM;
	b->rs = rs;
	b->q = *q;
	b->rec = *q->rec;
	snprintf(b->vol, sizeof(b->vol), "%s", q->vol);
	b->q.vol = b->vol;
	b->q.rec = &b->rec;
	r = q->index < st->k + st->m && q->rec->length % ENGINE_BLOCK_SIZE == 0
		    ? ec_geom_init(&b->g, st->k, st->m,
				   (uint32_t)(q->rec->length / ENGINE_BLOCK_SIZE))
		    : -EINVAL;
	if (r < 0)
		goto err_free;
	b->image_bytes = ec_frag_image_bytes(&b->g);
	r = -ENOMEM;
	if (!(b->seg = seg_buf_alloc((size_t)b->g.seg_blocks * ENGINE_BLOCK_SIZE)))
		goto err_free;
	b->step = FB_WAIT;
	r = loop_timer_add(rs->loop, 0, first_step, b, &b->wait);
	if (r < 0)
		goto err_free;
	*out = b;
	return 0;

err_free:
	fb_free(b);
	return r;
}

void fragbuild_abandon(struct fragbuild *b)
{
	if (!b)
		return;
	switch (b->step) {
	case FB_WAIT:
		loop_timer_cancel(b->wait);
		fb_free(b);
		break;
	case FB_READ:
		fragread_orphan(b->fr); /* no dst is written from now on */
		fb_free(b);
		break;
	default:
		b->abandoned = true; /* the worker's, the put's or the record's answer frees it */
		break;
	}
}
