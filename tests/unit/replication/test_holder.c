/* tests/unit/replication/test_holder.c — replication/holder.c over a real engine
 * (a scratch file-backed store) and real peer connections on 127.0.0.1, all on one
 * loop: open, append, read back, stat, seal and delete through the wire; a stale
 * epoch refused with the connection kept; a raise persisted before the op; a FUA
 * append answered only after the store's flush; a data CRC mismatch refused with
 * nothing written; another segment size refused; the holder destroyed with an op in
 * the engine (its reply dropped); a LAYER_READ through a snapshot of a family this
 * engine runs (sent and checked by layerread.c), and its refusals; FRAG_PUT and
 * FRAG_READ: a fragment image checked whole before it is kept, read back block by block
 * with its CRCs, a damaged block never sent, and their refusals. */
#include "replication/holder.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../engine/engine_fixture.h"
#include "common/crc32c.h"
#include "common/loop.h"
#include "engine/engine_internal.h"
#include "engine/segment.h"
#include "replication/ec_format.h"
#include "replication/layerread.h"
#include "replication/peer.h"
#include "replication/peer_session.h"
#include "peer_fixture.h"

#define UID 0xfa11u

static struct loop *lp;
static struct peer_secret *sec;
static struct peer_endpoint *server, *client;
static struct holder *holder;
static struct peer_conn *conn;
static bool destroy_in_serve;
static uint64_t call_uid; /* the family call() names: UID unless a test says */

/* ---- the engine on the loop, as quilld runs it ---- */

static int idle(void *arg)
{
	(void)arg;
	cr_assert_geq(engine_run(eng), 0);
	return engine_timeout_ms(eng);
}

static int sleep_in_engine(void *arg, struct loop_wait *w, int timeout_ms)
{
	(void)arg;
	return engine_wait_fd(eng, w, timeout_ms);
}

/* The store's flushes, counted when they complete. */
static const struct seg_ops *real_ops;
static struct seg_ops counting_ops;
static unsigned flushes_done;

struct flush_wrap {
	seg_cb cb;
	void *arg;
};

static void flush_counted(void *arg, int res)
{
	struct flush_wrap fw = *(struct flush_wrap *)arg;

	free(arg);
	flushes_done++;
	fw.cb(fw.arg, res);
}

static int counting_flush(struct segs *sg, seg_cb cb, void *arg)
{
	struct flush_wrap *fw = malloc(sizeof(*fw));
	int r;

	cr_assert_not_null(fw);
	*fw = (struct flush_wrap){ cb, arg };
	r = real_ops->flush(sg, flush_counted, fw);
	if (r < 0)
		free(fw);
	return r;
}

/* ---- a holder behind a peer listener, and a connection to it ---- */

static void serve(void *arg, struct peer_req *req)
{
	holder_serve(arg, req);
	if (destroy_in_serve) { /* the op is in the engine now */
		holder_destroy(holder);
		holder = NULL;
	}
}

static void on_ready(void *arg, struct peer_conn *c)
{
	(void)arg;
	conn = c;
	loop_stop(lp);
}

static int closes;

static void on_closed(void *arg, struct peer_conn *c, int err, const char *why)
{
	(void)arg;
	(void)c;
	(void)err;
	(void)why;
	closes++;
	conn = NULL;
	loop_stop(lp);
}

static const struct peer_conn_ops ops = { .ready = on_ready, .closed = on_closed };

static void give_up(void *arg)
{
	(void)arg;
	cr_assert_fail("the loop ran 30 s without finishing the test");
}

static void holder_setup(void)
{
	struct peer_endpoint_opts so, co;

	setup();
	open_engine();
	cr_assert_eq(loop_create(&lp), 0);
	loop_set_idle(lp, idle, NULL);
	loop_set_wait(lp, sleep_in_engine, NULL);
	real_ops = eng->segs->ops;
	counting_ops = *real_ops;
	counting_ops.flush = counting_flush;
	eng->segs->ops = &counting_ops;
	flushes_done = 0;
	closes = 0;
	destroy_in_serve = false;
	call_uid = UID;
	sec = peer_fixture_secret(9);
	cr_assert_eq(holder_create(eng, &holder), 0);
	so = (struct peer_endpoint_opts){ .loop = lp, .secret = sec, .listen_addr = "127.0.0.1",
					  .serve = serve, .serve_arg = holder };
	co = (struct peer_endpoint_opts){ .loop = lp, .secret = sec };
	cr_assert_eq(peer_endpoint_create(&so, &server), 0);
	cr_assert_eq(peer_endpoint_create(&co, &client), 0);
	cr_assert_eq(loop_timer_add(lp, 30000, give_up, NULL, NULL), 0);
	cr_assert_eq(peer_connect(client, "127.0.0.1", peer_endpoint_port(server), &ops, NULL,
				  &conn), 0);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_not_null(conn);
}

static void holder_teardown(void)
{
	peer_endpoint_destroy(client);
	peer_endpoint_destroy(server);
	holder_destroy(holder);
	teardown(); /* closes the engine: its last callbacks run */
	loop_destroy(lp);
	peer_secret_destroy(sec);
}

TestSuite(holder, .init = holder_setup, .fini = holder_teardown, .timeout = 60);

/* ---- requests, one at a time ---- */

struct answer {
	bool done;
	int res;
	uint64_t vol, epoch;     /* the reply header's: the family, the holder's fence */
	struct peer_seg_reply rep;
	uint8_t data[8 * BLK];
	unsigned flushes_then;   /* flushes_done when the reply arrived */
};

static void on_reply(void *arg, int res, const struct peer_hdr *h, const void *payload,
		     size_t len)
{
	struct answer *a = arg;

	a->done = true;
	a->res = res;
	a->flushes_then = flushes_done;
	if (res == 0) {
		a->vol = h->volume_id;
		a->epoch = h->epoch;
		cr_assert_eq(peer_seg_reply_decode(h->op, payload, len, &a->rep), 0);
		if ((h->op & ~PEER_OP_REPLY) == PEER_OP_FRAG_VERIFY && a->rep.result == 0) {
			/* each block's CRC, then the bad numbers: both kept in data */
			size_t n = ((size_t)a->rep.length + a->rep.nbad) * sizeof(uint32_t);

			cr_assert_leq(n, sizeof(a->data));
			memcpy(a->data, a->rep.crcs, n);
			a->rep.crcs = NULL;
			a->rep.bad = a->data + (size_t)a->rep.length * sizeof(uint32_t);
			loop_stop(lp);
			return;
		}
		if (a->rep.crcs) /* a LAYER_READ's blocks arrive with their CRCs */
			cr_assert_eq(peer_layer_read_check(&a->rep), 0);
		a->rep.crcs = NULL; /* points into the payload, gone after this call */
		if (a->rep.entries) { /* a SEG_LIST's */
			cr_assert_leq((size_t)a->rep.length * sizeof(struct peer_seg_entry),
				      sizeof(a->data));
			memcpy(a->data, a->rep.entries,
			       (size_t)a->rep.length * sizeof(struct peer_seg_entry));
			a->rep.entries = a->data;
		}
		if (a->rep.bad) { /* a SEG_VERIFY's block numbers */
			memcpy(a->data, a->rep.bad, (size_t)a->rep.length * sizeof(uint32_t));
			a->rep.bad = a->data;
		}
		if (a->rep.data) {
			cr_assert_leq((size_t)a->rep.nblocks * BLK, sizeof(a->data));
			memcpy(a->data, a->rep.data, (size_t)a->rep.nblocks * BLK);
			a->rep.data = a->data;
		}
	}
	loop_stop(lp);
}

/* Sends sr (with data for an APPEND) at epoch and waits for the answer. */
static struct answer *call(const struct peer_seg_req *sr, uint64_t epoch, const void *data,
			   unsigned timeout_ms)
{
	static struct answer a;
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct iovec iov = { (void *)data, (size_t)sr->nblocks * BLK };
	struct peer_msg m = { .op = sr->op, .volume_id = call_uid, .epoch = epoch,
			      .head = head };

	memset(&a, 0, sizeof(a));
	m.head_len = peer_seg_req_encode(sr, head);
	if (sr->op == PEER_OP_SEG_APPEND || sr->op == PEER_OP_FRAG_PUT) {
		m.data = &iov;
		m.datacnt = 1;
	} else if (data) { /* a read-around's CRCs */
		iov.iov_len = (size_t)sr->nblocks * sizeof(uint32_t);
		m.data = &iov;
		m.datacnt = 1;
	}
	cr_assert_eq(peer_request(conn, &m, timeout_ms, on_reply, &a), 0);
	while (!a.done)
		cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(a.res, 0, "a reply, not the connection's end: %d", a.res);
	cr_assert_eq(a.vol, call_uid);
	return &a;
}

static int result_of(const struct peer_seg_req *sr, uint64_t epoch, const void *data)
{
	return call(sr, epoch, data, 5000)->rep.result;
}

static int open_seg(uint32_t sno, uint64_t epoch)
{
	struct peer_seg_req sr = { .op = PEER_OP_SEG_OPEN, .sno = sno,
				   .segment_blocks = SEG_BLOCKS };

	return result_of(&sr, epoch, NULL);
}

/* An APPEND of n blocks of fill at block; data_crc as the owner computes it. */
static struct answer *append(uint32_t sno, uint32_t block, uint32_t n, uint8_t fill,
			     uint32_t flags, uint64_t epoch)
{
	static uint8_t buf[8 * BLK];
	struct peer_seg_req sr = { .op = PEER_OP_SEG_APPEND, .sno = sno, .block = block,
				   .nblocks = n, .flags = flags };

	cr_assert_leq(n, 8);
	memset(buf, fill, (size_t)n * BLK);
	sr.data_crc = crc32c(buf, (size_t)n * BLK);
	return call(&sr, epoch, buf, 5000);
}

static struct answer *read_back(uint32_t sno, uint32_t block, uint32_t n, uint64_t epoch)
{
	struct peer_seg_req sr = { .op = PEER_OP_SEG_READ, .sno = sno, .block = block,
				   .nblocks = n };

	return call(&sr, epoch, NULL, 5000);
}

static struct answer *stat_seg(uint32_t sno, uint64_t epoch)
{
	struct peer_seg_req sr = { .op = PEER_OP_SEG_STAT, .sno = sno };

	return call(&sr, epoch, NULL, 5000);
}

static struct answer *list_segs(uint32_t first, uint32_t last, uint64_t epoch)
{
	struct peer_seg_req sr = { .op = PEER_OP_SEG_LIST, .first = first, .last = last };

	return call(&sr, epoch, NULL, 5000);
}

static bool all(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

Test(holder, open_append_read_seal_delete)
{
	struct peer_seg_req sr;
	struct engine_held_info hi;
	struct answer *a;

	cr_assert_eq(open_seg(1, 3), 0);
	cr_assert_eq(open_seg(1, 3), 0, "an open again is a retry");
	cr_assert_eq(engine_held_stat(eng, UID, 1, &hi), 0);
	cr_assert_eq(engine_held_epoch(eng, UID), 3, "the epoch was raised first");
	a = append(1, 0, 4, 0xa1, 0, 3);
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->rep.length, 4);
	cr_assert_eq(append(1, 4, 2, 0xb2, 0, 3)->rep.length, 6);
	cr_assert_eq(append(1, 4, 2, 0xb2, 0, 3)->rep.result, 0, "a retry of what is there");
	a = read_back(1, 2, 4, 3);
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->rep.nblocks, 4);
	cr_assert(all(a->data, 2 * BLK, 0xa1));
	cr_assert(all(a->data + 2 * BLK, 2 * BLK, 0xb2));
	cr_assert_eq(read_back(1, 4, 3, 3)->rep.result, -ERANGE, "past what is written");
	a = stat_seg(1, 3);
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->rep.length, 6);
	cr_assert_eq(a->rep.epoch, 3);
	cr_assert_not(a->rep.sealed);

	sr = (struct peer_seg_req){ .op = PEER_OP_SEG_SEAL, .sno = 1, .length = 5 };
	cr_assert_eq(result_of(&sr, 3, NULL), 0);
	a = stat_seg(1, 3);
	cr_assert(a->rep.sealed);
	cr_assert_eq(a->rep.length, 5, "cut at the sealed length");
	cr_assert_eq(append(1, 5, 1, 0xc3, 0, 3)->rep.result, -EROFS);
	cr_assert_eq(engine_held_stat(eng, UID, 1, &hi), 0);
	cr_assert(hi.sealed);

	sr = (struct peer_seg_req){ .op = PEER_OP_SEG_DELETE, .sno = 1 };
	a = call(&sr, 3, NULL, 5000);
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->rep.length, 0);
	cr_assert_eq(engine_held_stat(eng, UID, 1, &hi), -ENOENT);
	cr_assert_eq(stat_seg(1, 3)->rep.result, -ENOENT);
	cr_assert_eq(result_of(&sr, 3, NULL), 0, "a delete again is a retry");
	cr_assert_eq(append(9, 0, 1, 0, 0, 3)->rep.result, -ENOENT, "not held");
	cr_assert_eq(closes, 0);
}

/* sr (a read-around's SEG_READ with CRCS, or a scrub's SEG_VERIFY) naming crcs, one
 * per block, at epoch 3. */
static struct answer *call_crcs(const struct peer_seg_req *sr, const uint32_t *crcs)
{
	uint8_t le[8 * sizeof(uint32_t)];

	cr_assert_leq(sr->nblocks, 8);
	for (uint32_t i = 0; i < sr->nblocks; i++)
		peer_put32(le + 4 * i, crcs[i]);
	return call(sr, 3, le, 5000);
}

/* A read-around names each block's CRC: a good copy is sent, a bad one refused. */
static struct answer *read_checked(uint32_t sno, uint32_t block, uint32_t n,
				   const uint32_t *crcs)
{
	struct peer_seg_req sr = { .op = PEER_OP_SEG_READ, .sno = sno, .block = block,
				   .nblocks = n, .flags = PEER_SEG_F_CRCS };

	return call_crcs(&sr, crcs);
}

Test(holder, read_with_crcs_sends_only_a_copy_that_has_them)
{
	uint8_t blk[BLK];
	uint32_t crcs[2];
	struct answer *a;

	cr_assert_eq(open_seg(1, 3), 0);
	cr_assert_eq(append(1, 0, 2, 0xa1, 0, 3)->rep.result, 0);
	memset(blk, 0xa1, BLK);
	crcs[0] = crcs[1] = crc32c(blk, BLK);
	a = read_checked(1, 0, 2, crcs);
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->rep.nblocks, 2);
	cr_assert(all(a->data, 2 * BLK, 0xa1));
	crcs[1] ^= 1; /* the owner's map says the second block is something else */
	a = read_checked(1, 0, 2, crcs);
	cr_assert_eq(a->rep.result, -EILSEQ);
	cr_assert_null(a->rep.data, "no blocks with a refusal");
	cr_assert_eq(closes, 0);
}

/* A scrub's SEG_VERIFY: the copy is read and checked here, and only the numbers of the
 * blocks that do not have the owner's CRCs come back. */
static struct answer *verify(uint32_t sno, uint32_t block, uint32_t n, const uint32_t *crcs)
{
	struct peer_seg_req sr = { .op = PEER_OP_SEG_VERIFY, .sno = sno, .block = block,
				   .nblocks = n };

	return call_crcs(&sr, crcs);
}

Test(holder, verify_answers_the_blocks_that_differ)
{
	uint8_t blk[BLK];
	uint32_t crcs[4];
	struct answer *a;

	cr_assert_eq(open_seg(1, 3), 0);
	cr_assert_eq(append(1, 0, 2, 0xa1, 0, 3)->rep.result, 0);
	cr_assert_eq(append(1, 2, 1, 0xb2, 0, 3)->rep.result, 0); /* the owner's: 0xa1 */
	cr_assert_eq(append(1, 3, 1, 0xa1, 0, 3)->rep.result, 0);
	memset(blk, 0xa1, BLK);
	crcs[0] = crcs[1] = crcs[2] = crcs[3] = crc32c(blk, BLK);
	a = verify(1, 0, 4, crcs);
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->rep.length, 1, "one block differs");
	cr_assert_eq(peer_seg_verify_bad(&a->rep, 0), 2);
	cr_assert_null(a->rep.data, "no blocks cross the network");
	a = verify(1, 3, 1, crcs);
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->rep.length, 0, "a run of good blocks");
	cr_assert_neq(verify(1, 3, 2, crcs)->rep.result, 0, "past the copy's end");
	cr_assert_eq(verify(7, 0, 1, crcs)->rep.result, -ENOENT, "no copy of it here");
	cr_assert_eq(closes, 0);
}

Test(holder, stale_epoch_refused_connection_kept)
{
	struct peer_seg_req raise = { .op = PEER_OP_EPOCH_RAISE };
	struct engine_held_info hi;
	struct answer *a;

	cr_assert_eq(open_seg(1, 5), 0);
	cr_assert_eq(append(1, 0, 2, 0x11, 0, 5)->rep.result, 0);
	a = call(&raise, 7, NULL, 5000); /* a new owner fences the old one off */
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->epoch, 7);
	cr_assert_eq(engine_held_epoch(eng, UID), 7, "persisted before the answer");

	a = append(1, 2, 2, 0x22, 0, 5);
	cr_assert_eq(a->rep.result, -ESTALE);
	cr_assert_eq(a->epoch, 7, "the reply names the fence");
	cr_assert_eq(a->rep.length, 2, "nothing of the stale append landed");
	cr_assert_eq(open_seg(2, 6), -ESTALE, "no new segment under an old epoch");
	cr_assert_eq(engine_held_stat(eng, UID, 2, &hi), -ENOENT);
	cr_assert_eq(read_back(1, 0, 1, 6)->rep.result, -ESTALE);
	cr_assert_eq(call(&raise, 6, NULL, 5000)->rep.result, -ESTALE, "no lowering");

	/* the same connection goes on, under the new epoch */
	cr_assert_not_null(conn);
	cr_assert_eq(closes, 0);
	a = append(1, 2, 1, 0x33, 0, 7);
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->rep.length, 3);
	cr_assert_eq(engine_held_stat(eng, UID, 1, &hi), 0);
	cr_assert_eq(hi.length, 3);
	/* a higher epoch on an op raises the fence first */
	cr_assert_eq(append(1, 3, 1, 0x44, 0, 9)->rep.result, 0);
	cr_assert_eq(engine_held_epoch(eng, UID), 9);
	cr_assert_eq(append(1, 4, 1, 0x55, 0, 7)->rep.result, -ESTALE);
}

Test(holder, fua_answered_after_the_flush)
{
	struct answer *a;
	unsigned before;

	cr_assert_eq(open_seg(1, 2), 0);
	before = flushes_done;
	a = append(1, 0, 3, 0x66, 0, 2);
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->flushes_then, before, "no flush for a plain append");
	a = append(1, 3, 2, 0x77, PEER_SEG_F_FUA, 2);
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->rep.length, 5);
	cr_assert_gt(a->flushes_then, before, "the FUA reply came after a flush completed");
	before = flushes_done;
	a = call(&(struct peer_seg_req){ .op = PEER_OP_SEG_FLUSH }, 0, NULL, 5000);
	cr_assert_eq(a->rep.result, 0);
	cr_assert_gt(a->flushes_then, before, "SEG_FLUSH flushes");
}

Test(holder, data_crc_mismatch_refused_nothing_written)
{
	static uint8_t buf[2 * BLK];
	struct peer_seg_req sr = { .op = PEER_OP_SEG_APPEND, .sno = 1, .block = 0, .nblocks = 2 };
	struct engine_held_info hi;

	cr_assert_eq(open_seg(1, 4), 0);
	memset(buf, 0x99, sizeof(buf));
	sr.data_crc = crc32c(buf, sizeof(buf)) ^ 1;
	cr_assert_eq(result_of(&sr, 4, buf), -EILSEQ);
	cr_assert_eq(engine_held_stat(eng, UID, 1, &hi), 0);
	cr_assert_eq(hi.length, 0);
	cr_assert_eq(append(1, 1, 1, 0x12, 0, 4)->rep.result, -ERANGE,
		     "block 0 was not taken: block 1 is a hole");
	/* refused before the fence moves too */
	sr.data_crc = crc32c(buf, sizeof(buf)) ^ 1;
	cr_assert_eq(result_of(&sr, 8, buf), -EILSEQ);
	cr_assert_eq(engine_held_epoch(eng, UID), 4, "a refused append raises nothing");
	cr_assert_eq(append(1, 0, 2, 0x99, 0, 4)->rep.result, 0, "the good one after it");
	cr_assert_eq(closes, 0);
}

Test(holder, other_segment_size_and_bad_names_refused)
{
	struct peer_seg_req sr = { .op = PEER_OP_SEG_OPEN, .sno = 1,
				   .segment_blocks = SEG_BLOCKS * 2 };
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct answer a = { 0 };
	struct peer_msg m = { .op = PEER_OP_SEG_STAT, .volume_id = 0, .epoch = 1, .head = head };

	cr_assert_eq(result_of(&sr, 1, NULL), -EINVAL);
	cr_assert_eq(engine_held_stat(eng, UID, 1, &(struct engine_held_info){ 0 }), -ENOENT);
	cr_assert_eq(open_seg(1, 0), -EINVAL, "every op names its owner's epoch");
	/* a family uid of 0 */
	m.head_len = peer_seg_req_encode(&(struct peer_seg_req){ .op = PEER_OP_SEG_STAT, .sno = 1 },
					 head);
	cr_assert_eq(peer_request(conn, &m, 5000, on_reply, &a), 0);
	while (!a.done)
		cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(a.res, 0);
	cr_assert_eq(a.rep.result, -EINVAL, "no family");
	cr_assert_eq(closes, 0);
}

/* The holder goes while an op of it is in the engine: nothing is answered (the
 * requester times out), and the engine's callback later frees the op. */
Test(holder, destroyed_with_an_op_in_flight)
{
	static uint8_t buf[BLK];
	struct peer_seg_req sr = { .op = PEER_OP_SEG_APPEND, .sno = 1, .nblocks = 1,
				   .flags = PEER_SEG_F_FUA };
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct iovec iov = { buf, BLK };
	struct peer_msg m = { .op = sr.op, .volume_id = UID, .epoch = 2, .head = head,
			      .data = &iov, .datacnt = 1 };
	static struct answer late;

	cr_assert_eq(open_seg(1, 2), 0);
	sr.data_crc = crc32c(buf, BLK);
	m.head_len = peer_seg_req_encode(&sr, head);
	destroy_in_serve = true;
	cr_assert_eq(peer_request(conn, &m, 300, on_reply, &late), 0);
	while (!late.done)
		cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(late.res, -ETIMEDOUT, "never answered");
	cr_assert_null(holder);
}

/* A node that runs a family (it owned it and has not released it to copies yet) has
 * its segments in its own log: it answers "busy", never "not held" (a takeover counts
 * "not held" as 0 blocks and would seal the open segment short). */
Test(holder, a_family_run_here_is_not_held_here)
{
	struct peer_seg_req sr;
	uint64_t uid;

	cr_assert_eq(engine_volume_create(eng, "mine", 1u << 20), 0);
	cr_assert_eq(engine_volume_family(eng, "mine", &uid), 0);
	cr_assert(engine_family_here(eng, uid));
	cr_assert_not(engine_family_here(eng, UID));
	call_uid = uid;
	cr_assert_eq(stat_seg(1, 3)->rep.result, -EBUSY);
	cr_assert_eq(list_segs(0, 9, 3)->rep.result, -EBUSY, "no list says \"none held\"");
	cr_assert_eq(open_seg(9, 3), -EBUSY, "no copy of it is taken either");
	cr_assert_eq(append(1, 0, 1, 0xa1, 0, 3)->rep.result, -EBUSY);
	cr_assert_eq(read_back(1, 0, 1, 3)->rep.result, -EBUSY);
	sr = (struct peer_seg_req){ .op = PEER_OP_SEG_SEAL, .sno = 1, .length = 1 };
	cr_assert_eq(result_of(&sr, 3, NULL), -EBUSY);
	sr = (struct peer_seg_req){ .op = PEER_OP_SEG_DELETE, .sno = 9 };
	cr_assert_eq(result_of(&sr, 3, NULL), 0, "a delete of what is not held: done");
	/* released to copies (none kept), the family is another's: "not held" again */
	cr_assert_eq(engine_family_release(eng, uid, NULL, 0), 0);
	cr_assert_not(engine_family_here(eng, uid));
	cr_assert_eq(stat_seg(1, 3)->rep.result, -ENOENT);
	/* a family held here as copies only, the others: as before */
	call_uid = UID;
	cr_assert_eq(stat_seg(1, 3)->rep.result, -ENOENT);
	cr_assert_eq(closes, 0);
}

/* SEG_LIST answers for the family's copies in the range what SEG_STAT answers for each
 * (another family's and those outside the range left out), by number. */
Test(holder, seg_list_answers_each_copy_in_the_range_as_seg_stat)
{
	static const uint32_t snos[] = { 2, 3, 5, 8 };
	struct peer_seg_req sr = { .op = PEER_OP_SEG_SEAL, .sno = 3, .length = 1 };
	struct peer_seg_entry_msg e;
	struct answer *a, st;

	for (size_t i = 0; i < 4; i++) {
		cr_assert_eq(open_seg(snos[i], 4), 0);
		cr_assert_eq(append(snos[i], 0, 1 + (uint32_t)i, 0xa0, 0, 4)->rep.result, 0);
	}
	cr_assert_eq(result_of(&sr, 4, NULL), 0);
	call_uid = UID + 1; /* another family's copy, numbered within the range */
	cr_assert_eq(open_seg(4, 4), 0);
	call_uid = UID;

	a = list_segs(3, 7, 4);
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->rep.length, 2, "3 and 5: not 2 or 8 (outside), not 4 (another family's)");
	for (uint32_t i = 0; i < 2; i++) {
		peer_seg_entry_get(&a->rep, i, &e);
		st = *stat_seg(e.sno, 4);
		cr_assert_eq(e.sno, i == 0 ? 3 : 5);
		cr_assert_eq(e.length, st.rep.length, "segment %u", e.sno);
		cr_assert_eq(e.sealed, st.rep.sealed, "segment %u", e.sno);
		cr_assert_eq(e.epoch, st.rep.epoch, "segment %u", e.sno);
		a = list_segs(3, 7, 4); /* (stat_seg's answer is the same static one) */
	}
	peer_seg_entry_get(&a->rep, 0, &e);
	cr_assert(e.sealed && e.length == 1, "3 was sealed at 1 block");
	cr_assert_eq(list_segs(0, UINT32_MAX, 4)->rep.length, 4);
	cr_assert_eq(list_segs(9, 100, 4)->rep.length, 0, "none held there");
	cr_assert_eq(list_segs(2, 8, 3)->rep.result, -ESTALE, "fenced as SEG_STAT is");
	cr_assert_eq(closes, 0);
}

/* The snapshot layer named by id, read through the wire as a clone's node reads it
 * (layerread.h: each block checked against its CRC on arrival). */
struct lr_answer {
	bool done;
	int res;
};

static void lr_done(void *arg, int res)
{
	struct lr_answer *a = arg;

	a->done = true;
	a->res = res;
	loop_stop(lp);
}

static int read_layer(uint64_t layer, uint64_t lba, uint32_t n, uint8_t *buf)
{
	struct lr_answer a = { 0 };

	cr_assert_eq(layer_read(conn, call_uid, layer, lba, n, buf, 5000, lr_done, &a), 0);
	while (!a.done)
		cr_assert_eq(loop_run(lp), 0);
	return a.res;
}

static int first_snapshot(const struct engine_snap_info *si, void *arg)
{
	*(uint64_t *)arg = si->id;
	return 1;
}

/* What the snapshot holds (holes as zeros), never what its volume wrote since. */
Test(holder, layer_read_answers_the_snapshot)
{
	struct engine_volume *v = create_and_open("golden", 1u << 20);
	static uint8_t want[4 * BLK], got[6 * BLK], zeros[2 * BLK];
	struct peer_seg_req raw = { .op = PEER_OP_LAYER_READ, .lba = 0, .nblocks = 1 };
	uint64_t layer = 0;
	struct answer *a;

	write_tagged(v, 0, 4, 7);
	cr_assert_eq(engine_snap_create(eng, "golden", "base"), 0);
	write_tagged(v, 0, 2, 8); /* after the snapshot: never read through it */
	cr_assert_eq(engine_volume_family(eng, "golden", &call_uid), 0);
	cr_assert_eq(engine_snap_list(eng, "golden", first_snapshot, &layer), 1);

	cr_assert_eq(read_layer(layer, 0, 6, got), 0);
	fill(want, 0, 4, 7);
	cr_assert_arr_eq(got, want, sizeof(want), "the snapshot's blocks");
	cr_assert_arr_eq(got + 4 * BLK, zeros, sizeof(zeros), "its holes, as zeros");
	cr_assert_eq(read_layer(layer, 3, 1, got), 0);
	cr_assert_arr_eq(got, want + 3 * BLK, BLK);
	raw.layer = layer;
	a = call(&raw, 0, NULL, 5000);
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->rep.nblocks, 1);
	cr_assert_eq(a->epoch, 0, "no fence on a read of a snapshot");

	cr_assert_eq(read_layer(layer, 255, 2, got), -ERANGE, "past its end");
	cr_assert_eq(read_layer(layer + 1000, 0, 1, got), -ENOENT, "no such layer");
	cr_assert_eq(read_layer(info("golden").id, 0, 1, got), -ENOENT,
		     "a volume's live layer is not a snapshot");
	call_uid ^= 1;
	cr_assert_eq(read_layer(layer, 0, 1, got), -ESTALE,
		     "a family this engine does not run: ask its owner");
	call_uid ^= 1;
	cr_assert_eq(layer_read(conn, call_uid, layer, 0, 257, got, 0, lr_done, NULL), -EINVAL,
		     "more than one LAYER_READ carries");
	engine_volume_close(v);
	cr_assert_eq(engine_snap_delete(eng, "golden", "base"), 0);
	cr_assert_eq(read_layer(layer, 0, 1, got), -ENOENT, "a removed snapshot");
	cr_assert(conn != NULL, "refusals keep the connection");
}

/* ---- fragments ---- */

/* The image of fragment `index` of a 2+1 stripe of a 9-block segment sno of UID: F = 5,
 * one table block, 7 blocks; its data blocks each filled with fill + their number. */
#define FRAG_L 9u
#define FRAG_F 5u
#define FRAG_IMAGE 7u
static uint8_t frag_image[FRAG_IMAGE * BLK];

static void make_frag(uint64_t uid, uint32_t sno, unsigned index, uint8_t fill, uint64_t epoch)
{
	struct ec_frag_info f = { .index = index, .family = uid, .seq = sno, .epoch = epoch };
	size_t off;

	cr_assert_eq(ec_geom_init(&f.geom, 2, 1, FRAG_L), 0);
	cr_assert_eq(f.geom.frag_blocks, FRAG_F);
	cr_assert_eq(ec_frag_image_bytes(&f.geom), sizeof(frag_image));
	off = ec_frag_data_offset(&f.geom);
	for (uint32_t b = 0; b < FRAG_F; b++)
		memset(frag_image + off + (size_t)b * BLK, fill + b, BLK);
	ec_frag_seal(&f, frag_image);
	cr_assert_eq(ec_frag_verify(frag_image, sizeof(frag_image), &f), 0);
}

static int frag_put(uint32_t sno, uint64_t epoch)
{
	struct peer_seg_req sr = { .op = PEER_OP_FRAG_PUT, .sno = sno, .nblocks = FRAG_IMAGE };

	return result_of(&sr, epoch, frag_image);
}

static struct answer *frag_read(uint32_t sno, unsigned index, uint32_t block, uint32_t n,
				uint64_t epoch)
{
	struct peer_seg_req sr = { .op = PEER_OP_FRAG_READ, .sno = sno, .block = block,
				   .nblocks = n, .index = (uint8_t)index };

	return call(&sr, epoch, NULL, 5000);
}

Test(holder, frag_put_then_read_block_by_block)
{
	struct engine_frag_info fi;
	struct answer *a;

	make_frag(UID, 4, 1, 0x40, 3);
	cr_assert_eq(frag_put(4, 3), 0);
	cr_assert_eq(engine_frag_stat(eng, UID, 4, &fi), 0, "durable when answered");
	cr_assert_eq(fi.index, 1);
	cr_assert_eq(fi.k, 2);
	cr_assert_eq(fi.m, 1);
	cr_assert_eq(fi.seg_blocks, FRAG_L);
	cr_assert_eq(fi.frag_blocks, FRAG_F);
	cr_assert_eq(fi.image_blocks, FRAG_IMAGE);
	cr_assert_eq(fi.epoch, 3);
	cr_assert_eq(engine_held_epoch(eng, UID), 3, "the fence was raised first");
	cr_assert_eq(frag_put(4, 3), 0, "the same fragment again: a retry");

	a = frag_read(4, 1, 1, 3, 3); /* on_reply checks each block against its CRC */
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->rep.nblocks, 3);
	for (uint32_t b = 0; b < 3; b++)
		cr_assert(all(a->data + (size_t)b * BLK, BLK, (uint8_t)(0x40 + 1 + b)),
			  "data block %u", 1 + b);
	a = frag_read(4, 1, 4, 1, 3);
	cr_assert_eq(a->rep.result, 0);
	cr_assert(all(a->data, BLK, 0x44), "the last data block");
	cr_assert_eq(frag_read(4, 0, 0, 1, 3)->rep.result, -ENOENT, "another index");
	cr_assert_eq(frag_read(5, 1, 0, 1, 3)->rep.result, -ENOENT, "another segment");
	cr_assert_eq(frag_read(4, 1, 4, 2, 3)->rep.result, -ERANGE, "past F");
	cr_assert_eq(frag_read(4, 1, 0, 1, 2)->rep.result, -ESTALE, "below the fence");
	make_frag(UID, 4, 2, 0x50, 3);
	cr_assert_eq(frag_put(4, 3), -EEXIST, "one fragment of a segment per node");
	cr_assert_eq(closes, 0);
}

/* A FRAG_READ the holder cannot serve (more rows than a reply may carry, none, a range
 * that wraps, or past the fragment's F blocks) gets an error reply; the same
 * connection then serves a good one (before session 18 the first three closed it,
 * failing every other request in flight on it). */
Test(holder, frag_read_it_cannot_serve_answered_connection_kept)
{
	struct answer *a;

	make_frag(UID, 4, 1, 0x40, 3);
	cr_assert_eq(frag_put(4, 3), 0);
	cr_assert_eq(frag_read(4, 1, 0, PEER_FRAG_READ_MAX_BLOCKS + 1, 3)->rep.result, -EMSGSIZE,
		     "more rows than a FRAG_READ may ask");
	cr_assert_eq(frag_read(4, 1, 0, 0, 3)->rep.result, -EINVAL, "no rows");
	cr_assert_eq(frag_read(4, 1, UINT32_MAX, 2, 3)->rep.result, -EINVAL, "a range that wraps");
	cr_assert_eq(frag_read(4, 1, FRAG_F - 1, 2, 3)->rep.result, -ERANGE, "past F");
	a = frag_read(4, 1, 0, 2, 3);
	cr_assert_eq(a->rep.result, 0);
	cr_assert(all(a->data, BLK, 0x40), "the first data block");
	cr_assert_eq(closes, 0);
}

Test(holder, frag_put_of_a_bad_image_refused_nothing_kept)
{
	struct engine_frag_info fi;
	uint32_t held0 = stats().segments_held;

	make_frag(UID, 6, 0, 0x10, 3);
	frag_image[FRAG_IMAGE * BLK - 9] ^= 0x01; /* a data block no longer its CRC */
	cr_assert_eq(frag_put(6, 3), -EILSEQ);
	make_frag(UID + 1, 6, 0, 0x10, 3);
	cr_assert_eq(frag_put(6, 3), -EINVAL, "another family's fragment");
	make_frag(UID, 7, 0, 0x10, 3);
	cr_assert_eq(frag_put(6, 3), -EINVAL, "another segment's fragment");
	cr_assert_eq(engine_frag_stat(eng, UID, 6, &fi), -ENOENT);
	cr_assert_eq(stats().segments_held, held0);
	cr_assert_eq(engine_held_epoch(eng, UID), 0, "refused before the fence's raise");
	make_frag(UID, 6, 0, 0x10, 2);
	cr_assert_eq(frag_put(6, 3), 0);
	cr_assert_eq(frag_put(6, 2), -ESTALE, "below the fence");
	cr_assert_eq(closes, 0);
}

/* Data block b of the fragment of segment sno held here rots on the disk (image block
 * 1 + 1 + b): a bit of its byte 77 flips. blk: the block as it was (fill: what it
 * must hold), then as it is. */
static void frag_rot(uint32_t sno, uint32_t b, uint8_t fill, uint8_t *blk)
{
	struct engine_frag_info fi;
	off_t off;
	int fd;

	cr_assert_eq(engine_frag_stat(eng, UID, sno, &fi), 0);
	off = (off_t)(eng->sb.data_offset + (uint64_t)fi.slot * eng->sb.segment_size +
		      (1 + 1 + b) * BLK);
	fd = open(store_path, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, blk, BLK, off), (ssize_t)BLK);
	cr_assert(all(blk, BLK, fill), "the block is where the format says");
	blk[77] ^= 0x08;
	cr_assert_eq(pwrite(fd, blk, BLK, off), (ssize_t)BLK);
	cr_assert_eq(fsync(fd), 0);
	close(fd);
}

Test(holder, frag_read_never_sends_a_block_that_fails_its_crc)
{
	uint8_t bad[BLK];

	make_frag(UID, 8, 2, 0x20, 3);
	cr_assert_eq(frag_put(8, 3), 0);
	frag_rot(8, 2, 0x22, bad);
	cr_assert_eq(frag_read(8, 2, 0, 5, 3)->rep.result, -EILSEQ);
	cr_assert_eq(frag_read(8, 2, 2, 1, 3)->rep.result, -EILSEQ);
	cr_assert_eq(frag_read(8, 2, 0, 2, 3)->rep.result, 0, "the blocks before it are fine");
	cr_assert_eq(frag_read(8, 2, 3, 2, 3)->rep.result, 0, "...and those after it");
	cr_assert_eq(closes, 0);
}

/* A FRAG_READ naming each block's CRC (PEER_SEG_F_CRCS): blocks [block, block + n) of
 * the fragment filled with fill + their number, the CRC of block `wrong` made another
 * (n: none). */
static int frag_read_crcs(uint32_t sno, unsigned index, uint32_t block, uint32_t n,
			  uint8_t fill, uint32_t wrong)
{
	struct peer_seg_req sr = { .op = PEER_OP_FRAG_READ, .sno = sno, .block = block,
				   .nblocks = n, .index = (uint8_t)index,
				   .flags = PEER_SEG_F_CRCS };
	uint32_t crcs[8];
	uint8_t blk[BLK];

	cr_assert_leq(n, 8);
	for (uint32_t i = 0; i < n; i++) {
		memset(blk, fill + block + i, BLK);
		crcs[i] = crc32c(blk, BLK) ^ (i == wrong ? 1u : 0u);
	}
	return call_crcs(&sr, crcs)->rep.result;
}

/* With the reader's CRCs the holder reads no table: it checks the blocks against those
 * CRCs and never sends one that fails them, whatever its table says. */
Test(holder, frag_read_with_the_readers_crcs_checks_those)
{
	uint8_t bad[BLK];

	make_frag(UID, 10, 1, 0x30, 3);
	cr_assert_eq(frag_put(10, 3), 0);
	cr_assert_eq(frag_read_crcs(10, 1, 0, 5, 0x30, 5), 0);
	cr_assert_eq(frag_read_crcs(10, 1, 1, 3, 0x30, 1), -EILSEQ,
		     "a block its table calls good, not the reader's");
	frag_rot(10, 3, 0x33, bad);
	cr_assert_eq(frag_read_crcs(10, 1, 2, 3, 0x30, 3), -EILSEQ, "a rotten block");
	cr_assert_eq(frag_read_crcs(10, 1, 0, 3, 0x30, 3), 0, "the blocks before it are fine");
	cr_assert_eq(closes, 0);
}

static struct answer *frag_verify(uint32_t sno, unsigned index, uint64_t epoch)
{
	struct peer_seg_req sr = { .op = PEER_OP_FRAG_VERIFY, .sno = sno,
				   .index = (uint8_t)index };

	return call(&sr, epoch, NULL, 5000);
}

/* FRAG_VERIFY: the fragment checked where it is; each block's CRC as it is comes back,
 * and the numbers of the blocks that fail the fragment's table, not the blocks. */
Test(holder, frag_verify_answers_each_block_crc_and_the_bad_ones)
{
	struct engine_frag_info fi;
	struct answer *a;
	uint8_t blk[BLK];

	make_frag(UID, 9, 1, 0x70, 3);
	cr_assert_eq(frag_put(9, 3), 0);
	cr_assert_eq(engine_frag_stat(eng, UID, 9, &fi), 0);
	a = frag_verify(9, 1, 3);
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->rep.length, FRAG_F);
	cr_assert_eq(a->rep.nbad, 0);
	cr_assert_eq(a->rep.vflags, 0);
	cr_assert_eq(a->rep.frag_crc, fi.frag_crc, "the fragment's CRC as it is");
	for (uint32_t b = 0; b < FRAG_F; b++) {
		memset(blk, 0x70 + b, BLK);
		cr_assert_eq(peer_get32(a->data + b * 4), crc32c(blk, BLK), "block %u", b);
	}
	frag_rot(9, 3, 0x73, blk);
	a = frag_verify(9, 1, 3);
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->rep.nbad, 1);
	cr_assert_eq(peer_seg_verify_bad(&a->rep, 0), 3);
	cr_assert_eq(peer_get32(a->data + 3 * 4), crc32c(blk, BLK), "the block as it is now");
	cr_assert_neq(a->rep.frag_crc, fi.frag_crc);
	cr_assert_eq(frag_verify(9, 0, 3)->rep.result, -ENOENT, "another index");
	cr_assert_eq(frag_verify(10, 1, 3)->rep.result, -ENOENT, "another segment");
	cr_assert_eq(frag_verify(9, 1, 2)->rep.result, -ESTALE, "below the fence");
	cr_assert_eq(closes, 0);
}

Test(holder, an_owner_may_hold_a_fragment_of_its_own_family)
{
	struct engine_frag_info fi;
	uint64_t uid;

	cr_assert_eq(engine_volume_create(eng, "mine", 1u << 20), 0);
	cr_assert_eq(engine_volume_family(eng, "mine", &uid), 0);
	call_uid = uid;
	make_frag(uid, 2, 0, 0x30, 3);
	cr_assert_eq(frag_put(2, 3), 0, "a fragment is never the family's log");
	cr_assert_eq(engine_frag_stat(eng, uid, 2, &fi), 0);
	cr_assert_eq(frag_read(2, 0, 0, 5, 3)->rep.result, 0);
}

Test(holder, seg_stat_and_delete_of_kind_frag_name_the_fragment_not_the_copy)
{
	struct peer_seg_req sr = { .op = PEER_OP_SEG_STAT, .sno = 3, .kind = PEER_SEG_KIND_FRAG };
	struct engine_frag_info fi;
	struct answer *a;

	cr_assert_eq(open_seg(3, 4), 0); /* a copy of segment 3, and its fragment */
	make_frag(UID, 3, 1, 0x60, 4);
	cr_assert_eq(frag_put(3, 4), 0);
	a = call(&sr, 4, NULL, 5000);
	cr_assert_eq(a->rep.result, 0);
	cr_assert_eq(a->rep.length, FRAG_IMAGE, "the fragment's image");
	cr_assert(a->rep.sealed);
	cr_assert_eq(a->rep.epoch, 4);
	cr_assert_eq(stat_seg(3, 4)->rep.length, 0, "kind 0: the copy, empty");

	sr = (struct peer_seg_req){ .op = PEER_OP_SEG_DELETE, .sno = 3,
				    .kind = PEER_SEG_KIND_FRAG };
	cr_assert_eq(result_of(&sr, 4, NULL), 0);
	cr_assert_eq(engine_frag_stat(eng, UID, 3, &fi), -ENOENT, "the fragment is gone");
	cr_assert_eq(stat_seg(3, 4)->rep.result, 0, "the copy is not");
	cr_assert_eq(result_of(&sr, 4, NULL), 0, "a delete again: a retry");
	sr = (struct peer_seg_req){ .op = PEER_OP_SEG_STAT, .sno = 3, .kind = PEER_SEG_KIND_FRAG };
	cr_assert_eq(result_of(&sr, 4, NULL), -ENOENT);
	sr.op = PEER_OP_SEG_DELETE;
	sr.kind = PEER_SEG_KIND_COPY;
	cr_assert_eq(result_of(&sr, 4, NULL), 0);
	cr_assert_eq(stat_seg(3, 4)->rep.result, -ENOENT);
	cr_assert_eq(closes, 0);
}
