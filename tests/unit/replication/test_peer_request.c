/* tests/unit/replication/test_peer_request.c — replication/peer.c's requests and
 * replies (the segment ops) between two endpoints on 127.0.0.1 in one process: a
 * request and its reply, large frames both ways, many requests in flight answered out
 * of order, a reply later than its timeout, a close with requests in flight (every
 * callback runs once), replies to a connection that closed (dropped, never a use
 * after free: run under ASan in build-san), no serve hook, a malformed reply, the
 * calls' refusals, a peer that does not read its replies stalling no one else, one
 * recv per frame (recv is wrapped here to count the calls that found nothing), and
 * the sends handed to the loop's sleep (short ones, a frame added after the hand-over),
 * and the receives kept in the loop's ring (frames split over many completions, large
 * ones, a close with a receive in the ring, a malformed reply through it). */
#include "replication/peer.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/loop.h"
#include "replication/layerread.h"
#include "replication/peer_session.h"
#include "peer_fixture.h"

/* Every recv of this process goes through here (the executable's definition comes
 * before libc's): the calls that found the socket empty are counted, and those not
 * made by the fake ring (waiter_ring) as a receive's completion. */
static unsigned recv_empty, recv_not_ring;
static bool in_fake_ring;

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	static ssize_t (*real)(int, void *, size_t, int);
	ssize_t n;

	if (!real)
		real = (ssize_t (*)(int, void *, size_t, int))dlsym(RTLD_NEXT, "recv");
	n = real(fd, buf, len, flags);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		recv_empty++;
	recv_not_ring += !in_fake_ring;
	return n;
}

#define MAX_HELD 512
#define FAMILY 0x77
#define EPOCH 5

static struct loop *lp;
static struct peer_secret *sec;
static struct peer_endpoint *server, *client;

/* ---- the server's serve hook ---- */

enum mode { ANSWER, HOLD, BAD_REPLY, LAYER_BAD_CRC, LAYER_SHORT };

static struct srv {
	enum mode mode;
	unsigned served, bad_crc, stop_at;
	unsigned big_appends, big_aligned; /* appends of 64 KiB or more; data 4 KiB aligned */
	unsigned small_appends, small_aligned; /* the smaller ones, copied */
	struct peer_req *held[MAX_HELD];
	unsigned nheld;
	struct peer_hdr last_hdr;
	struct peer_seg_req last;
} srv;

static uint8_t pattern(uint32_t block, size_t i)
{
	return (uint8_t)(block * 31 + i);
}

/* Answers as a holder would, from nothing: an APPEND's length is its end, a READ's
 * blocks are pattern(), a STAT says sealed at 40. */
static void answer(struct peer_req *req, int result)
{
	const struct peer_hdr *h = peer_req_hdr(req);
	size_t len;
	const void *p = peer_req_payload(req, &len);
	struct peer_seg_req sr;
	struct peer_seg_reply rep = { .result = result };
	uint8_t head[PEER_SEG_HEAD_MAX];
	static uint8_t blocks[PEER_SEG_READ_MAX_BLOCKS * PEER_SEG_BLOCK];
	static uint8_t crcs[PEER_LAYER_READ_MAX_BLOCKS * 4];
	struct iovec data, two[2];
	struct peer_msg m = { .op = h->op | PEER_OP_REPLY, .volume_id = h->volume_id,
			      .epoch = h->epoch, .head = head };

	cr_assert_eq(peer_seg_req_decode(h->op, p, len, &sr), 0);
	if (result == 0 && sr.op == PEER_OP_SEG_APPEND)
		rep.length = sr.block + sr.nblocks;
	if (result == 0 && sr.op == PEER_OP_SEG_STAT) {
		rep.length = 40;
		rep.epoch = h->epoch;
		rep.sealed = true;
	}
	if (result == 0 && sr.op == PEER_OP_SEG_READ) {
		for (size_t i = 0; i < (size_t)sr.nblocks * PEER_SEG_BLOCK; i++)
			blocks[i] = pattern(sr.block, i);
		data = (struct iovec){ blocks, (size_t)sr.nblocks * PEER_SEG_BLOCK };
		m.data = &data;
		m.datacnt = 1;
	}
	if (result == 0 && sr.op == PEER_OP_LAYER_READ) {
		/* the blocks with their CRCs; LAYER_BAD_CRC: one bit flipped after its CRC
		 * was taken, LAYER_SHORT: one block fewer than asked */
		rep.length = sr.nblocks - (srv.mode == LAYER_SHORT);
		for (size_t i = 0; i < (size_t)rep.length * PEER_SEG_BLOCK; i++)
			blocks[i] = pattern((uint32_t)sr.lba, i);
		for (uint32_t b = 0; b < rep.length; b++)
			peer_put32(crcs + 4 * b, crc32c(blocks + (size_t)b * PEER_SEG_BLOCK,
							PEER_SEG_BLOCK));
		if (srv.mode == LAYER_BAD_CRC)
			blocks[PEER_SEG_BLOCK + 5] ^= 1;
		two[0] = (struct iovec){ crcs, (size_t)rep.length * 4 };
		two[1] = (struct iovec){ blocks, (size_t)rep.length * PEER_SEG_BLOCK };
		m.data = two;
		m.datacnt = 2;
	}
	m.head_len = peer_seg_reply_encode(m.op, &rep, head);
	if (srv.mode == BAD_REPLY)
		m.head_len = 8; /* a STAT's success without its stat: not a reply's layout */
	cr_assert_eq(peer_req_reply(req, &m), 0);
}

static void serve(void *arg, struct peer_req *req)
{
	const struct peer_hdr *h = peer_req_hdr(req);
	size_t len;
	const void *p = peer_req_payload(req, &len);
	const struct peer_seg_req *seg = peer_req_seg(req);

	cr_assert_eq(arg, &srv);
	srv.served++;
	srv.last_hdr = *h;
	cr_assert_eq(peer_seg_req_decode(h->op, p, len, &srv.last), 0, "peer.c checked it");
	/* the request as peer.c decoded it is the payload's */
	cr_assert_eq(seg->op, srv.last.op);
	cr_assert_eq(seg->sno, srv.last.sno);
	cr_assert_eq(seg->block, srv.last.block);
	cr_assert_eq(seg->nblocks, srv.last.nblocks);
	cr_assert_eq(seg->length, srv.last.length);
	cr_assert_eq(seg->data_crc, srv.last.data_crc);
	cr_assert_eq(seg->data, srv.last.data, "an APPEND's data in the payload handed on");
	if (srv.last.op == PEER_OP_SEG_APPEND && peer_seg_data_check(&srv.last) < 0)
		srv.bad_crc++;
	if (srv.last.op == PEER_OP_SEG_APPEND && srv.last.nblocks >= 16) {
		srv.big_appends++;
		srv.big_aligned += (uintptr_t)srv.last.data % 4096 == 0;
	} else if (srv.last.op == PEER_OP_SEG_APPEND) {
		srv.small_appends++;
		srv.small_aligned += (uintptr_t)srv.last.data % 4096 == 0;
	}
	if (srv.mode == HOLD) {
		cr_assert_lt(srv.nheld, MAX_HELD);
		srv.held[srv.nheld++] = req;
	} else {
		answer(req, 0);
	}
	if (srv.stop_at && srv.served == srv.stop_at)
		loop_stop(lp);
}

/* ---- the client ---- */

struct cli {
	struct peer_conn *c;
	unsigned readies, closes;
	int close_err;
};

struct call {
	unsigned calls;
	int res;
	struct peer_hdr hdr;
	struct peer_seg_reply rep;
	bool data_ok;
	uint32_t want_block;
	unsigned *done, stop_at; /* a shared count, and when it stops the loop */
};

static void on_ready(void *arg, struct peer_conn *c)
{
	struct cli *cl = arg;

	cr_assert_eq(c, cl->c);
	cl->readies++;
	loop_stop(lp);
}

static void on_closed(void *arg, struct peer_conn *c, int err, const char *why)
{
	struct cli *cl = arg;

	(void)c;
	(void)why;
	cl->closes++;
	cl->close_err = err;
	cl->c = NULL;
	loop_stop(lp);
}

static const struct peer_conn_ops cli_ops = { .ready = on_ready, .closed = on_closed };

static void on_reply(void *arg, int res, const struct peer_hdr *h, const void *payload,
		     size_t len)
{
	struct call *k = arg;

	k->calls++;
	k->res = res;
	if (res == 0) {
		cr_assert_not_null(h);
		k->hdr = *h;
		cr_assert_eq(peer_seg_reply_decode(h->op, payload, len, &k->rep), 0);
		k->data_ok = true;
		for (size_t i = 0; k->rep.data && i < (size_t)k->rep.nblocks * PEER_SEG_BLOCK; i++)
			if (k->rep.data[i] != pattern(k->want_block, i)) {
				k->data_ok = false;
				break;
			}
	} else {
		cr_assert_null(h);
	}
	if (k->done && ++*k->done == k->stop_at)
		loop_stop(lp);
}

static void give_up(void *arg)
{
	(void)arg;
	cr_assert_fail("the loop ran 20 s without finishing the test");
}

static struct peer_endpoint *endpoint(bool listen, bool with_serve)
{
	struct peer_endpoint_opts o = { .loop = lp, .secret = sec, .node_id = 7,
					.listen_addr = listen ? "127.0.0.1" : NULL,
					.serve = with_serve ? serve : NULL, .serve_arg = &srv };
	struct peer_endpoint *ep;

	cr_assert_eq(peer_endpoint_create(&o, &ep), 0);
	return ep;
}

static void setup(void)
{
	memset(&srv, 0, sizeof(srv));
	cr_assert_eq(loop_create(&lp), 0);
	sec = peer_fixture_secret(3);
	cr_assert_eq(loop_timer_add(lp, 20000, give_up, NULL, NULL), 0);
	client = endpoint(false, false);
}

static void teardown(void)
{
	peer_endpoint_destroy(client);
	peer_endpoint_destroy(server);
	server = NULL;
	peer_secret_destroy(sec);
	loop_destroy(lp);
}

TestSuite(peer_request, .init = setup, .fini = teardown, .timeout = 60);

/* A server (with the serve hook or none) and a client connection to it, ready. */
static void connect_ready(struct cli *cl, bool with_serve)
{
	server = endpoint(true, with_serve);
	cr_assert_eq(peer_connect(client, "127.0.0.1", peer_endpoint_port(server), &cli_ops, cl,
				  &cl->c), 0);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(cl->readies, 1, "the connection is ready");
}

/* Sends a request of op with the given head and data; 0 or peer_request's error. */
static int send_req(struct cli *cl, const struct peer_seg_req *sr, const struct iovec *data,
		    int datacnt, unsigned timeout_ms, struct call *k)
{
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct peer_msg m = { .op = sr->op, .volume_id = FAMILY, .epoch = EPOCH, .head = head,
			      .data = data, .datacnt = datacnt };

	m.head_len = peer_seg_req_encode(sr, head);
	return peer_request(cl->c, &m, timeout_ms, on_reply, k);
}

/* An APPEND of n blocks (filled with fill) at block, its data in `pieces` iovs. */
static int send_append(struct cli *cl, uint32_t block, uint32_t n, uint8_t fill, int pieces,
		       uint32_t flags, unsigned timeout_ms, struct call *k)
{
	size_t len = (size_t)n * PEER_SEG_BLOCK, at = 0;
	uint8_t *buf = malloc(len);
	struct iovec iov[4];
	struct peer_seg_req sr = { .op = PEER_OP_SEG_APPEND, .sno = 2, .block = block,
				   .nblocks = n, .flags = flags };
	int r;

	cr_assert_not_null(buf);
	cr_assert_leq(pieces, 4);
	memset(buf, fill, len);
	sr.data_crc = crc32c(buf, len);
	for (int i = 0; i < pieces; i++) {
		size_t part = i == pieces - 1 ? len - at : len / (size_t)pieces;

		iov[i] = (struct iovec){ buf + at, part };
		at += part;
	}
	r = send_req(cl, &sr, iov, pieces, timeout_ms, k);
	memset(buf, ~fill, len); /* the caller's buffers are free at once */
	free(buf);
	return r;
}

Test(peer_request, request_and_reply)
{
	struct cli cl = { 0 };
	unsigned done = 0;
	struct call open = { .done = &done, .stop_at = 5 }, big = open, small = open, rd = open,
		    st = open;
	struct peer_seg_req sr;

	connect_ready(&cl, true);
	sr = (struct peer_seg_req){ .op = PEER_OP_SEG_OPEN, .sno = 2, .segment_blocks = 1024 };
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 1000, &open), 0);
	/* 1 MiB in three pieces, FUA: the server sees one payload whose data has its CRC */
	cr_assert_eq(send_append(&cl, 1, 256, 0x5a, 3, PEER_SEG_F_FUA, 1000, &big), 0);
	cr_assert_eq(send_append(&cl, 257, 1, 0x11, 1, 0, 1000, &small), 0);
	/* a READ whose reply is 4 MiB */
	sr = (struct peer_seg_req){ .op = PEER_OP_SEG_READ, .sno = 2, .block = 9,
				    .nblocks = PEER_SEG_READ_MAX_BLOCKS };
	rd.want_block = 9;
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 1000, &rd), 0);
	sr = (struct peer_seg_req){ .op = PEER_OP_SEG_STAT, .sno = 2 };
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 0, &st), 0);
	cr_assert_eq(peer_conn_pending(cl.c), 5);
	cr_assert_eq(open.calls, 0, "never before peer_request returns");
	cr_assert_eq(loop_run(lp), 0);

	cr_assert_eq(srv.served, 5);
	cr_assert_eq(srv.bad_crc, 0, "every append's data arrived whole");
	/* the 1 MiB append's data landed 4 KiB aligned: a holder writes it without a copy */
	cr_assert_eq(srv.big_appends, 1);
	cr_assert_eq(srv.big_aligned, 1, "a large append's data is not 4 KiB aligned");
	cr_assert_eq(srv.small_appends, 1);
	cr_assert_eq(srv.small_aligned, 1, "a small append's data is not copied 4 KiB aligned");
	cr_assert_eq(srv.last_hdr.volume_id, FAMILY);
	cr_assert_eq(srv.last_hdr.epoch, EPOCH);
	cr_assert_eq(open.calls, 1);
	cr_assert_eq(open.res, 0);
	cr_assert_eq(open.hdr.op, PEER_OP_SEG_OPEN | PEER_OP_REPLY);
	cr_assert_eq(big.rep.result, 0);
	cr_assert_eq(big.rep.length, 257);
	cr_assert_eq(small.rep.length, 258);
	cr_assert_eq(rd.calls, 1);
	cr_assert_eq(rd.rep.nblocks, PEER_SEG_READ_MAX_BLOCKS);
	cr_assert(rd.data_ok, "the READ's 4 MiB arrived as sent");
	cr_assert_eq(st.rep.epoch, EPOCH);
	cr_assert(st.rep.sealed);
	cr_assert_eq(st.rep.length, 40);
	cr_assert_eq(peer_conn_pending(cl.c), 0);
	cr_assert_eq(cl.closes, 0, "the connection stays");
}

/* A lone request and its reply, one after another (a QD1 write's hop to a holder):
 * each side reads a frame with one recv and goes back to sleep; no second recv to
 * learn that the socket is empty (a system call per frame and side, on a guest where
 * each costs microseconds). */
Test(peer_request, one_recv_per_frame_at_queue_depth_1)
{
	struct cli cl = { 0 };
	enum { N = 40 };
	unsigned done = 0;

	connect_ready(&cl, true);
	recv_empty = 0;
	for (unsigned i = 0; i < N; i++) {
		struct call k = { .done = &done, .stop_at = i + 1 };

		cr_assert_eq(send_append(&cl, i, 1, (uint8_t)i, 1, 0, 1000, &k), 0);
		cr_assert_eq(loop_run(lp), 0);
		cr_assert_eq(k.calls, 1);
		cr_assert_eq(k.rep.result, 0);
	}
	cr_assert_eq(srv.served, N);
	/* 2N frames were read (N requests, N replies): before, each read ended with an
	 * empty recv; a few may still (a wake-up for data already read) */
	cr_assert_lt(recv_empty, N / 4, "%u empty recvs for %u frames", recv_empty, 2 * N);
}

/* Many appends in flight at once, answered in the reverse order: each callback runs
 * once, with its own reply. */
static void answer_held_reversed(void)
{
	while (srv.nheld)
		answer(srv.held[--srv.nheld], 0);
}

Test(peer_request, many_requests_in_flight)
{
	enum { N = 200 };
	struct cli cl = { 0 };
	static struct call k[N];
	unsigned done = 0;

	connect_ready(&cl, true);
	srv.mode = HOLD;
	srv.stop_at = N;
	for (unsigned i = 0; i < N; i++) {
		k[i] = (struct call){ .done = &done, .stop_at = N };
		/* 128 KiB each: a served payload that large keeps the read buffer. 30 s, not
		 * 5: under ASan on a loaded machine the 25 MiB with their MACs took 5-6.6 s,
		 * and this test is about the replies, not the timer */
		cr_assert_eq(send_append(&cl, i * 32, 32, (uint8_t)i, 2, 0, 30000, &k[i]), 0);
	}
	cr_assert_eq(peer_conn_pending(cl.c), N);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(srv.served, N);
	cr_assert_eq(srv.bad_crc, 0);
	answer_held_reversed();
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(done, N);
	for (unsigned i = 0; i < N; i++) {
		cr_assert_eq(k[i].calls, 1, "request %u", i);
		cr_assert_eq(k[i].rep.length, i * 32 + 32, "request %u got its own reply", i);
	}
	cr_assert_eq(peer_conn_pending(cl.c), 0);
}

/* The server's held requests, answered now: the connection closed, so each reply is
 * dropped and its request freed. */
static void reply_to_closed(void)
{
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct peer_seg_reply rep = { 0 };

	for (unsigned i = 0; i < srv.nheld; i++) {
		struct peer_msg m = { .op = peer_req_hdr(srv.held[i])->op | PEER_OP_REPLY,
				      .head = head };

		m.head_len = peer_seg_reply_encode(m.op, &rep, head);
		cr_assert_eq(peer_req_reply(srv.held[i], &m), -ENOTCONN);
	}
	srv.nheld = 0;
}

static void stop_soon(void *arg)
{
	(void)arg;
	loop_stop(lp);
}

/* Runs the loop for ms: the server notices a close meanwhile. */
static void run_for(unsigned ms)
{
	cr_assert_eq(loop_timer_add(lp, ms, stop_soon, NULL, NULL), 0);
	cr_assert_eq(loop_run(lp), 0);
}

Test(peer_request, late_reply_times_out_and_closes)
{
	struct cli cl = { 0 };
	struct call late = { 0 }, none = { 0 }, longer = { 0 };
	struct peer_seg_req sr = { .op = PEER_OP_SEG_STAT, .sno = 1 };

	connect_ready(&cl, true);
	srv.mode = HOLD;
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 0, &none), 0);
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 5000, &longer), 0);
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 100, &late), 0);
	cr_assert_eq(loop_run(lp), 0); /* until the close */
	cr_assert_eq(late.calls, 1);
	cr_assert_eq(late.res, -ETIMEDOUT);
	cr_assert_eq(none.calls, 1);
	cr_assert_eq(none.res, -ECONNRESET);
	cr_assert_eq(longer.calls, 1);
	cr_assert_eq(longer.res, -ECONNRESET);
	cr_assert_eq(cl.closes, 1);
	cr_assert_eq(cl.close_err, ETIMEDOUT);
	run_for(100);
	cr_assert_eq(srv.nheld, 3, "the server got them all");
	reply_to_closed();
}

/* A reply that came in time leaves the timer for the next deadline. */
Test(peer_request, answered_in_time_no_timeout)
{
	struct cli cl = { 0 };
	unsigned done = 0;
	struct call a = { .done = &done, .stop_at = 2 }, b = a;
	struct peer_seg_req sr = { .op = PEER_OP_SEG_STAT, .sno = 1 };

	connect_ready(&cl, true);
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 50, &a), 0);
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 50, &b), 0);
	cr_assert_eq(loop_run(lp), 0);
	run_for(200); /* past both deadlines */
	cr_assert_eq(a.calls, 1);
	cr_assert_eq(a.res, 0);
	cr_assert_eq(b.res, 0);
	cr_assert_eq(cl.closes, 0, "no timeout after the replies");
}

Test(peer_request, close_with_requests_in_flight)
{
	enum { N = 10 };
	struct cli cl = { 0 };
	struct call k[N] = { 0 };
	struct peer_seg_req sr = { .op = PEER_OP_SEG_DELETE, .sno = 3 };

	connect_ready(&cl, true);
	srv.mode = HOLD;
	srv.stop_at = N;
	for (int i = 0; i < N; i++)
		cr_assert_eq(send_req(&cl, &sr, NULL, 0, i % 2 ? 5000 : 0, &k[i]), 0);
	cr_assert_eq(loop_run(lp), 0);
	peer_conn_close(cl.c);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(k[i].calls, 1, "request %d", i);
		cr_assert_eq(k[i].res, -ECONNRESET);
	}
	cr_assert_eq(cl.closes, 1);
	cr_assert_eq(cl.close_err, 0);
	run_for(100); /* the server sees the close */
	reply_to_closed();
}

/* The server goes away with requests being served: the client's end with
 * -ECONNRESET; the replies after it are dropped. */
Test(peer_request, server_gone_replies_dropped)
{
	struct cli cl = { 0 };
	struct call a = { 0 };
	struct peer_seg_req sr = { .op = PEER_OP_EPOCH_RAISE };

	connect_ready(&cl, true);
	srv.mode = HOLD;
	srv.stop_at = 1;
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 0, &a), 0);
	cr_assert_eq(loop_run(lp), 0);
	peer_endpoint_destroy(server);
	server = NULL;
	cr_assert_eq(loop_run(lp), 0); /* until the client sees the close */
	cr_assert_eq(a.calls, 1);
	cr_assert_eq(a.res, -ECONNRESET);
	reply_to_closed();
}

Test(peer_request, no_serve_hook_answers_eopnotsupp)
{
	struct cli cl = { 0 };
	unsigned done = 0;
	struct call a = { .done = &done, .stop_at = 2 }, b = a;
	struct peer_seg_req sr = { .op = PEER_OP_SEG_FLUSH };

	connect_ready(&cl, false);
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 1000, &a), 0);
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 1000, &b), 0);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(a.rep.result, -EOPNOTSUPP);
	cr_assert_eq(b.rep.result, -EOPNOTSUPP, "the connection stays for the next");
	cr_assert_eq(cl.closes, 0);
}

/* A FRAG_READ or READ that decodes but asks a run its op does not allow (more blocks
 * than a reply may carry, none, or a range that wraps) is answered with the error by
 * peer.c itself, never handed to the serve hook; the connection serves on. A request
 * malformed as a payload (a reserved byte set) still closes it. */
Test(peer_request, a_run_the_op_does_not_allow_is_answered_not_dropped)
{
	struct cli cl = { 0 };
	unsigned done = 0;
	struct call big = { .done = &done, .stop_at = 5 }, none = big, wraps = big, rd_big = big,
		    good = big, bad = { 0 };
	struct peer_seg_req sr = { .op = PEER_OP_FRAG_READ, .sno = 2, .block = 0,
				   .nblocks = PEER_FRAG_READ_MAX_BLOCKS + 1, .index = 1 };

	connect_ready(&cl, true);
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 1000, &big), 0);
	sr.nblocks = 0;
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 1000, &none), 0);
	sr.block = UINT32_MAX;
	sr.nblocks = 2;
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 1000, &wraps), 0);
	sr = (struct peer_seg_req){ .op = PEER_OP_SEG_READ, .sno = 2,
				    .nblocks = PEER_SEG_READ_MAX_BLOCKS + 1 };
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 1000, &rd_big), 0);
	sr = (struct peer_seg_req){ .op = PEER_OP_SEG_STAT, .sno = 2 };
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 1000, &good), 0);
	cr_assert_eq(loop_run(lp), 0);

	cr_assert_eq(big.res, 0, "a reply, not the connection's end");
	cr_assert_eq(big.hdr.op, PEER_OP_FRAG_READ | PEER_OP_REPLY);
	cr_assert_eq(big.rep.result, -EMSGSIZE);
	cr_assert_eq(none.rep.result, -EINVAL);
	cr_assert_eq(wraps.rep.result, -EINVAL);
	cr_assert_eq(rd_big.rep.result, -EMSGSIZE);
	cr_assert_eq(good.res, 0);
	cr_assert_eq(good.rep.result, 0, "the same connection serves the next request");
	cr_assert_eq(good.rep.length, 40);
	cr_assert_eq(srv.served, 1, "only the good one reached the serve hook");
	cr_assert_eq(cl.closes, 0);

	/* a reserved byte set: malformed, the connection closes */
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct peer_msg m = { .op = PEER_OP_FRAG_READ, .volume_id = FAMILY, .epoch = EPOCH,
			      .head = head };

	sr = (struct peer_seg_req){ .op = PEER_OP_FRAG_READ, .sno = 2, .nblocks = 1 };
	m.head_len = peer_seg_req_encode(&sr, head);
	head[15] = 1;
	cr_assert_eq(peer_request(cl.c, &m, 1000, on_reply, &bad), 0);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(bad.res, -ECONNRESET);
	cr_assert_eq(cl.closes, 1);
	cr_assert_eq(cl.close_err, EPROTO);
}

/* A malformed reply closes that connection (its request ends -ECONNRESET). */
static void malformed_reply_closes_the_connection(void)
{
	struct cli cl = { 0 };
	struct call a = { 0 };
	struct peer_seg_req sr = { .op = PEER_OP_SEG_STAT, .sno = 1 };

	connect_ready(&cl, true);
	srv.mode = BAD_REPLY;
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 1000, &a), 0);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(a.calls, 1);
	cr_assert_eq(a.res, -ECONNRESET);
	cr_assert_eq(cl.closes, 1);
	cr_assert_eq(cl.close_err, EPROTO);
}

Test(peer_request, malformed_reply_closes)
{
	malformed_reply_closes_the_connection();
}

Test(peer_request, refusals_never_call_back)
{
	struct cli cl = { 0 };
	struct call k = { 0 };
	struct peer_seg_req sr = { .op = PEER_OP_SEG_APPEND, .sno = 1, .nblocks = 1 };
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct peer_msg ping = { .op = PEER_OP_PING };
	struct peer_msg empty = { .op = PEER_OP_SEG_APPEND, .head = head };
	static uint8_t huge[PEER_PAYLOAD_MAX];
	struct iovec iov = { huge, sizeof(huge) };
	struct peer_conn *c;

	server = endpoint(true, true);
	cr_assert_eq(peer_connect(client, "127.0.0.1", peer_endpoint_port(server), &cli_ops, &cl,
				  &c), 0);
	cl.c = c;
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 0, &k), -ENOTCONN, "not before ready");
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(peer_request(c, &ping, 0, on_reply, &k), -EINVAL, "not a segment op");
	empty.head_len = peer_seg_req_encode(&sr, head);
	cr_assert_eq(peer_request(c, &empty, 0, on_reply, &k), -EINVAL, "an append of no data");
	empty.data = &iov;
	empty.datacnt = 1;
	cr_assert_eq(peer_request(c, &empty, 0, on_reply, &k), -EMSGSIZE, "past 16 MiB");
	cr_assert_eq(peer_conn_pending(c), 0);
	peer_conn_close(c);
	cr_assert_eq(k.calls, 0);
}

/* Callbacks may send the next request and close the connection. */
struct chain {
	struct cli *cl;
	unsigned left;
	struct call k;
};

static void chain_reply(void *arg, int res, const struct peer_hdr *h, const void *payload,
			size_t len)
{
	struct chain *ch = arg;
	struct peer_seg_req sr = { .op = PEER_OP_SEG_SEAL, .sno = 4 };
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct peer_msg m = { .op = sr.op, .volume_id = FAMILY, .epoch = EPOCH, .head = head };

	on_reply(&ch->k, res, h, payload, len);
	if (res < 0)
		return;
	if (--ch->left == 0) {
		peer_conn_close(ch->cl->c); /* from inside: after this returns */
		return;
	}
	sr.length = ch->left;
	m.head_len = peer_seg_req_encode(&sr, head);
	cr_assert_eq(peer_request(ch->cl->c, &m, 1000, chain_reply, ch), 0);
}

Test(peer_request, callbacks_send_and_close)
{
	struct cli cl = { 0 };
	struct chain ch = { .cl = &cl, .left = 20 };
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct peer_seg_req sr = { .op = PEER_OP_SEG_SEAL, .sno = 4, .length = 20 };
	struct peer_msg m = { .op = sr.op, .volume_id = FAMILY, .epoch = EPOCH, .head = head };

	connect_ready(&cl, true);
	m.head_len = peer_seg_req_encode(&sr, head);
	cr_assert_eq(peer_request(cl.c, &m, 1000, chain_reply, &ch), 0);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(ch.k.calls, 20);
	cr_assert_eq(srv.served, 20);
	cr_assert_eq(srv.last.length, 1);
	cr_assert_eq(cl.closes, 1);
	cr_assert_eq(cl.close_err, 0);
}

/* ---- a peer that does not read its replies ---- */

/* A client made of a session over a raw socket: it handshakes, sends big READs, then
 * never reads again. */
struct raw {
	int fd;
	struct peer_session *s;
	struct peer_buf in, out;
	struct loop_watch *w;
	unsigned reads;
};

static void raw_send_all(struct raw *r)
{
	size_t off = 0;

	while (off < r->out.len) {
		ssize_t n = send(r->fd, r->out.data + off, r->out.len - off, MSG_NOSIGNAL);

		cr_assert_gt(n, 0);
		off += (size_t)n;
	}
	r->out.len = 0;
}

static void raw_event(void *arg, unsigned events)
{
	struct raw *r = arg;
	struct peer_frame f;
	const char *why;
	size_t need;
	ssize_t n;

	(void)events;
	cr_assert_eq(peer_buf_reserve(&r->in, 4096), 0);
	n = recv(r->fd, r->in.data + r->in.len, r->in.cap - r->in.len, MSG_DONTWAIT);
	cr_assert_gt(n, 0, "the server closed the raw client");
	r->in.len += (size_t)n;
	while (peer_session_frame_len(r->s, r->in.data, r->in.len, &need, &why) == 0 && need &&
	       need <= r->in.len) {
		cr_assert_geq(peer_session_input(r->s, r->in.data, need, &f, &r->out, &why), 0);
		peer_buf_consume(&r->in, need);
	}
	raw_send_all(r);
	if (!peer_session_is_open(r->s))
		return;
	for (unsigned i = 0; i < r->reads; i++) {
		uint8_t head[PEER_SEG_HEAD_MAX];
		struct peer_seg_req sr = { .op = PEER_OP_SEG_READ, .sno = 1,
					   .nblocks = PEER_SEG_READ_MAX_BLOCKS };
		struct peer_hdr h = { .op = PEER_OP_SEG_READ, .request_id = i + 1,
				      .volume_id = FAMILY, .epoch = EPOCH };

		h.payload_len = (uint32_t)peer_seg_req_encode(&sr, head);
		cr_assert_eq(peer_session_send(r->s, &h, head, &r->out), 0);
	}
	raw_send_all(r);
	loop_watch_remove(r->w); /* and never read again */
	r->w = NULL;
	loop_stop(lp);
}

Test(peer_request, slow_reader_stalls_no_one_else)
{
	uint8_t inst[PEER_INSTANCE_BYTES];
	struct peer_session_opts so = { .role = PEER_CLIENT, .secret = sec, .instance = inst };
	struct raw r = { .reads = 16 };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct cli cl = { 0 };
	unsigned done = 0, before;
	static struct call k[50];

	memset(inst, 0xee, sizeof(inst));
	server = endpoint(true, true);
	sa.sin_port = htons(peer_endpoint_port(server));
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	r.fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(connect(r.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(peer_session_create(&so, &r.s), 0);
	cr_assert_eq(peer_session_hello(r.s, &r.out), 0);
	raw_send_all(&r);
	cr_assert_eq(loop_watch_add(lp, r.fd, LOOP_READ, raw_event, &r, &r.w), 0);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_null(r.w, "the raw client sent its READs (64 MiB of replies) and stopped reading");
	run_for(500);
	cr_assert_geq(srv.served, 1);
	cr_assert_lt(srv.served, r.reads, "the server stopped reading a peer that does not read");
	before = srv.served;

	/* its replies sit in the server's buffers; another client is served all the same */
	cr_assert_eq(peer_connect(client, "127.0.0.1", peer_endpoint_port(server), &cli_ops, &cl,
				  &cl.c), 0);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(cl.readies, 1);
	for (unsigned i = 0; i < 50; i++) {
		k[i] = (struct call){ .done = &done, .stop_at = 50 };
		cr_assert_eq(send_append(&cl, i, 1, (uint8_t)i, 1, 0, 2000, &k[i]), 0);
	}
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(done, 50);
	for (unsigned i = 0; i < 50; i++)
		cr_assert_eq(k[i].res, 0);
	cr_assert_eq(srv.served, before + 50);
	close(r.fd);
	peer_session_destroy(r.s);
	peer_buf_free(&r.in);
	peer_buf_free(&r.out);
}

/* ---- LAYER_READ as layerread.c sends it ---- */

static void layer_done(void *arg, int res)
{
	*(int *)arg = res;
	loop_stop(lp);
}

static int read_layer(struct cli *cl, uint64_t lba, uint32_t n, uint8_t *buf)
{
	int res = 1;

	cr_assert_eq(layer_read(cl->c, FAMILY, 42, lba, n, buf, 1000, layer_done, &res), 0);
	cr_assert_eq(res, 1, "never before layer_read returns");
	while (res == 1)
		cr_assert_eq(loop_run(lp), 0);
	return res;
}

/* The blocks reach the caller only checked: one that does not match its CRC, or a
 * reply of another count than asked, is an error and never data. */
Test(peer_request, layer_read_checks_every_block)
{
	static uint8_t buf[3 * PEER_SEG_BLOCK];
	struct cli cl = { 0 };

	connect_ready(&cl, true);
	cr_assert_eq(read_layer(&cl, 7, 3, buf), 0);
	cr_assert_eq(srv.last_hdr.op, PEER_OP_LAYER_READ);
	cr_assert_eq(srv.last_hdr.volume_id, FAMILY);
	cr_assert_eq(srv.last_hdr.epoch, 0, "a read of a snapshot names no epoch");
	cr_assert_eq(srv.last.layer, 42);
	cr_assert_eq(srv.last.lba, 7);
	cr_assert_eq(srv.last.nblocks, 3);
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], pattern(7, i), "byte %zu", i);
	srv.mode = LAYER_BAD_CRC;
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(read_layer(&cl, 7, 3, buf), -EILSEQ);
	cr_assert_eq(buf[PEER_SEG_BLOCK + 5], 0, "nothing of a bad reply reaches the buffer");
	srv.mode = LAYER_SHORT;
	cr_assert_eq(read_layer(&cl, 7, 3, buf), -EPROTO);
	srv.mode = ANSWER;
	cr_assert_eq(read_layer(&cl, 0, 1, buf), 0, "the connection serves on");
	cr_assert_eq(layer_read(cl.c, 0, 42, 0, 1, buf, 0, layer_done, NULL), -EINVAL,
		     "no family");
	cr_assert_eq(layer_read(cl.c, FAMILY, 0, 0, 1, buf, 0, layer_done, NULL), -EINVAL,
		     "no layer");
	cr_assert_eq(cl.closes, 0);
}

/* ---- the sends in the loop's sleep (loop.h's loop_send, as quilld's ring makes them) ---- */

#define SLEEP_SEND_MAX (256u << 10)
static unsigned sleep_sends, sleep_sends_short;

/* A waiter like quilld's (store_wait_fd): it makes the loop's sends before it sleeps,
 * non-blocking, at most SLEEP_SEND_MAX bytes of each (a larger frame goes out in
 * short sends: the connection's LOOP_WRITE fallback), then sleeps in poll() on epfd. */
static int waiter_sends(void *arg, struct loop_wait *w, int timeout_ms)
{
	struct pollfd pfd = { .fd = w->epfd, .events = POLLIN };
	int r;

	(void)arg;
	for (struct loop_send *s = w->sends; s; s = s->next) {
		size_t len = s->len < SLEEP_SEND_MAX ? s->len : SLEEP_SEND_MAX;
		ssize_t n = send(s->fd, s->buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		s->res = n < 0 ? -errno : (long)n;
		s->done = true;
		sleep_sends++;
		sleep_sends_short += s->res < (long)s->len;
	}
	r = poll(&pfd, 1, timeout_ms);
	if (r < 0)
		return -errno;
	w->ready = r > 0;
	return 0;
}

static void sends_in_the_sleep(void)
{
	loop_set_wait(lp, waiter_sends, NULL);
	loop_set_wait_sends(lp, true);
	sleep_sends = sleep_sends_short = 0;
}

/* A 1 MiB append, a one-block append behind it and a SEG_READ whose reply is 4 MiB,
 * through the loop's waiter as set: every byte arrives once, in order, both ways. */
static void large_frames_both_ways(void)
{
	struct cli cl = { 0 };
	unsigned done = 0;
	struct call big = { .done = &done, .stop_at = 3 }, small = big, rd = big;
	struct peer_seg_req sr = { .op = PEER_OP_SEG_READ, .sno = 2, .block = 9,
				   .nblocks = PEER_SEG_READ_MAX_BLOCKS };

	connect_ready(&cl, true);
	cr_assert_eq(send_append(&cl, 1, 256, 0x5a, 3, 0, 5000, &big), 0); /* 1 MiB */
	cr_assert_eq(send_append(&cl, 257, 1, 0x11, 1, 0, 5000, &small), 0);
	rd.want_block = 9;
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 5000, &rd), 0); /* a 4 MiB reply */
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(done, 3);
	cr_assert_eq(srv.served, 3);
	cr_assert_eq(srv.bad_crc, 0, "every append's data arrived whole");
	cr_assert_eq(big.rep.length, 257);
	cr_assert_eq(small.rep.length, 258);
	cr_assert_eq(rd.rep.nblocks, PEER_SEG_READ_MAX_BLOCKS);
	cr_assert(rd.data_ok, "the READ's 4 MiB arrived as sent");
	cr_assert_eq(cl.closes, 0);
}

/* Large frames both ways with every send handed to the sleep, most of them short:
 * each goes on from where the last one stopped (the LOOP_WRITE watch, then the next
 * sleep), and every byte arrives once, in order. */
Test(peer_request, large_frames_through_short_sends_in_the_sleep)
{
	sends_in_the_sleep();
	large_frames_both_ways();
	cr_assert_geq(sleep_sends_short, 4 + 16, "the frames went in short sends: %u of %u",
		      sleep_sends_short, sleep_sends);
}

static struct cli *late_cl;
static struct call *late_k;

static void append_late(void *arg)
{
	(void)arg;
	cr_assert_eq(send_append(late_cl, 1, 1, 0x22, 1, 0, 1000, late_k), 0);
}

/* A frame queued after the connection handed its output to the sleep (a task that
 * runs after the connection's): the send is taken back and handed again with both
 * frames, one send per side, neither frame twice. */
Test(peer_request, a_frame_queued_after_the_hand_over_goes_with_it)
{
	struct cli cl = { 0 };
	unsigned done = 0;
	struct call a = { .done = &done, .stop_at = 2 }, b = a;
	struct loop_task *t;

	sends_in_the_sleep();
	connect_ready(&cl, true);
	late_cl = &cl;
	late_k = &b;
	cr_assert_eq(loop_task_create(lp, append_late, NULL, &t), 0);
	cr_assert_eq(send_append(&cl, 0, 1, 0x11, 1, 0, 1000, &a), 0); /* kicks the conn's task */
	loop_task_schedule(t);                                           /* after it */
	sleep_sends = 0;
	cr_assert_eq(loop_run(lp), 0);
	loop_task_destroy(t);
	cr_assert_eq(done, 2);
	cr_assert_eq(srv.served, 2, "each frame once");
	cr_assert_eq(a.rep.length, 1);
	cr_assert_eq(b.rep.length, 2);
	cr_assert_eq(sleep_sends, 2, "the requests in one send, the replies in one");
	cr_assert_eq(cl.closes, 0);
}

/* ---- the receives in the loop's ring (loop.h's loop_recv, as quilld's ring keeps them) ---- */

#define FAKE_RING_MAX 32
static struct loop_recv *fake_ring[FAKE_RING_MAX];
static unsigned fake_nring, ring_completions, ring_cancels;
static size_t ring_recv_max; /* bytes per completion at most: short receives */

static void fake_ring_drop(unsigned i)
{
	fake_ring[i]->in_ring = false;
	fake_ring[i]->done = true;
	fake_ring[i] = fake_ring[--fake_nring];
}

/* A waiter like quilld's (store_wait_fd) for receives: it keeps each one listed in its
 * "ring" until the socket has data (then recv() of at most ring_recv_max bytes is its
 * completion), cancels the stopped ones (their completion -ECANCELED), and makes the
 * sends as waiter_sends does; it sleeps in poll() on epfd and the ring's sockets. */
static int waiter_ring(void *arg, struct loop_wait *w, int timeout_ms)
{
	struct pollfd pfd[FAKE_RING_MAX + 1] = { { .fd = w->epfd, .events = POLLIN } };
	bool cancelled = false;
	int r;

	for (struct loop_recv *lr = w->recv_cancels; lr; lr = lr->next) {
		lr->cancel_sent = true;
		for (unsigned i = 0; i < fake_nring; i++) {
			if (fake_ring[i] == lr) {
				lr->res = -ECANCELED;
				fake_ring_drop(i);
				ring_cancels++;
				cancelled = true;
				break;
			}
		}
	}
	for (struct loop_recv *lr = w->recvs; lr; lr = lr->next) {
		cr_assert_lt(fake_nring, FAKE_RING_MAX);
		cr_assert(!lr->in_ring && !lr->done && !lr->stopped);
		lr->in_ring = true;
		fake_ring[fake_nring++] = lr;
	}
	r = waiter_sends(arg, &(struct loop_wait){ .epfd = -1, .sends = w->sends }, 0);
	for (unsigned i = 0; i < fake_nring; i++)
		pfd[i + 1] = (struct pollfd){ .fd = fake_ring[i]->fd, .events = POLLIN };
	r = poll(pfd, fake_nring + 1, cancelled ? 0 : timeout_ms);
	if (r < 0)
		return -errno;
	for (unsigned i = fake_nring; i-- > 0;) {
		struct loop_recv *lr = fake_ring[i];
		size_t len = lr->cap < ring_recv_max ? lr->cap : ring_recv_max;
		ssize_t n;

		if (!pfd[i + 1].revents)
			continue;
		in_fake_ring = true;
		n = recv(lr->fd, lr->buf, len, MSG_DONTWAIT);
		in_fake_ring = false;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		lr->res = n < 0 ? -errno : (long)n;
		fake_ring_drop(i);
		ring_completions++;
	}
	w->ready = pfd[0].revents != 0;
	return 0;
}

static void receives_in_the_ring(size_t max)
{
	loop_set_wait(lp, waiter_ring, NULL);
	loop_set_wait_sends(lp, true);
	loop_set_wait_recvs(lp, true);
	fake_nring = ring_completions = ring_cancels = 0;
	ring_recv_max = max;
	recv_empty = recv_not_ring = 0;
}

/* Every frame cut into receives of 7 bytes (short reads; a frame split over hundreds
 * of completions, several frames in one buffer): each arrives whole and in order, both
 * ways, and no connection reads its socket itself. */
Test(peer_request, frames_split_over_many_ring_receives)
{
	struct cli cl = { 0 };
	unsigned done = 0;
	struct call a = { .done = &done, .stop_at = 3 }, b = a, c = a;
	struct peer_seg_req sr = { .op = PEER_OP_SEG_STAT, .sno = 1 };

	receives_in_the_ring(7);
	connect_ready(&cl, true);
	cr_assert_eq(send_append(&cl, 1, 2, 0x5a, 2, 0, 5000, &a), 0);
	cr_assert_eq(send_append(&cl, 3, 1, 0x11, 1, 0, 5000, &b), 0);
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 5000, &c), 0);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(done, 3);
	cr_assert_eq(srv.served, 3);
	cr_assert_eq(srv.bad_crc, 0, "every append's data arrived whole");
	cr_assert_eq(a.rep.length, 3);
	cr_assert_eq(b.rep.length, 4);
	cr_assert_eq(c.res, 0);
	cr_assert_gt(ring_completions, 3 * PEER_SEG_BLOCK / 7, "short receives: %u",
		     ring_completions);
	cr_assert_eq(recv_not_ring, 0, "a connection read its socket itself: %u recv",
		     recv_not_ring);
	cr_assert_eq(cl.closes, 0);
}

/* Large frames with receives as large as the ring's buffer (64 KiB): the same bytes,
 * the rest of a frame read on after a full receive (conn_read), in order. */
Test(peer_request, large_frames_through_the_ring)
{
	receives_in_the_ring(SIZE_MAX);
	large_frames_both_ways();
	cr_assert_lt(ring_completions, 5 * 16, "not a loop turn per 64 KiB: %u",
		     ring_completions);
}

/* A connection closed with its receive in the ring: the receive is cancelled (the
 * loop frees it after its completion), its fn never runs, and the server's end sees
 * the close through its own receive (0 bytes). */
Test(peer_request, close_with_a_receive_in_the_ring)
{
	struct cli cl = { 0 };
	struct call a = { 0 };
	struct peer_seg_req sr = { .op = PEER_OP_EPOCH_RAISE };

	receives_in_the_ring(SIZE_MAX);
	connect_ready(&cl, true);
	srv.mode = HOLD;
	srv.stop_at = 1;
	cr_assert_eq(send_req(&cl, &sr, NULL, 0, 0, &a), 0);
	cr_assert_eq(loop_run(lp), 0);
	peer_conn_close(cl.c);
	cr_assert_eq(a.res, -ECONNRESET);
	run_for(100);
	cr_assert_eq(ring_cancels, 1, "the client's receive cancelled");
	cr_assert_eq(fake_nring, 0, "the server's completed with the close");
	reply_to_closed();
	cr_assert_eq(cl.closes, 1);
}

/* A malformed reply that arrives through the ring closes that connection only, as one
 * read by the watch does. */
Test(peer_request, malformed_reply_through_the_ring_closes)
{
	receives_in_the_ring(5);
	malformed_reply_closes_the_connection();
}

static struct cli *reset_cl;
static struct call *reset_k; /* NULL: no request after the server went */

/* The server goes; then the client sends one more request (into the reset), if asked. */
static void server_goes(void *arg)
{
	struct peer_seg_req sr = { .op = PEER_OP_SEG_STAT, .sno = 1 };

	(void)arg;
	peer_endpoint_destroy(server);
	server = NULL;
	if (reset_k)
		cr_assert_eq(send_req(reset_cl, &sr, NULL, 0, 0, reset_k), 0);
}

/* A holder answers and closes while a request of ours is still unread there: TCP
 * resets the connection (a close with bytes unread), and epoll says a hang-up of our
 * socket with every reply still queued in it; with send_after, the next request we
 * send fails too (ECONNRESET). The receives bring 7 bytes each (the first wake-up
 * brings part of the first reply): the ring's receive reads on to the end, each reply
 * reaches its caller, and only the requests the holder never read end with the reset. */
static void replies_then_a_reset(bool send_after)
{
	enum { N = 4 };
	struct cli cl = { 0 };
	struct call k[N + 2] = { 0 };
	struct peer_seg_req sr = { .op = PEER_OP_SEG_STAT, .sno = 1 };
	struct loop_task *t;
	int last = send_after ? N + 1 : N;

	receives_in_the_ring(7);
	loop_set_wait_sends(lp, false); /* the replies go in the connection's task */
	connect_ready(&cl, true);
	srv.mode = HOLD;
	srv.stop_at = N;
	for (int i = 0; i <= N; i++)
		cr_assert_eq(send_req(&cl, &sr, NULL, 0, 0, &k[i]), 0);
	cr_assert_eq(loop_run(lp), 0); /* until N are held: the last one is not read whole */
	cr_assert_eq(srv.nheld, N);
	for (unsigned i = 0; i < srv.nheld; i++)
		answer(srv.held[i], 0); /* queued: the connection's task sends them */
	srv.nheld = 0;
	reset_cl = &cl;
	reset_k = send_after ? &k[N + 1] : NULL;
	cr_assert_eq(loop_task_create(lp, server_goes, NULL, &t), 0);
	loop_task_schedule(t); /* after the connection's: the close follows the replies */
	cr_assert_eq(loop_run(lp), 0); /* until the client's close */
	loop_task_destroy(t);
	cr_assert_eq(cl.closes, 1);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(k[i].calls, 1, "request %d", i);
		cr_assert_eq(k[i].res, 0, "request %d: its reply was sent before the close, "
			     "yet it ended with %d", i, k[i].res);
	}
	for (int i = N; i <= last; i++) {
		cr_assert_eq(k[i].calls, 1, "request %d", i);
		cr_assert_eq(k[i].res, -ECONNRESET, "request %d, never read there, ends with the "
			     "close", i);
	}
}

/* The hang-up alone: nothing more to send. */
Test(peer_request, replies_before_a_reset_all_arrive)
{
	replies_then_a_reset(false);
}

/* A request sent into the reset fails (ECONNRESET): nothing more is sent, and the
 * receive reads on as after a hang-up. */
Test(peer_request, replies_before_a_reset_arrive_past_a_failed_send)
{
	replies_then_a_reset(true);
}
