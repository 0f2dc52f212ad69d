/* tests/unit/nbd/test_nbd_ring.c — a plain NBD connection in transmission talks
 * through the loop's ring (nbd/server.c "plain transmission", docs/nbd.md "How a
 * request travels"): its input as completions of a RECV kept in the ring, its replies
 * as one gathered SENDMSG made in the sleep's system call.
 *
 * The server runs as quilld runs it — an engine on a scratch store, a loop that sleeps
 * in the engine's ring and takes sends and receives — on a thread of its own; the test
 * is a raw client on the unix socket (blocking, with a receive timeout so that a
 * server that never answers fails the test instead of hanging it). The loop's waiter
 * here counts what the loop hands it: receives armed, gathered sends.
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "../engine/engine_fixture.h"
#include "common/loop.h"
#include "nbd/nbd_proto.h"
#include "nbd/nbd_server.h"

#define VOL "v"
#define RING_SEGS 400u /* 50 MiB of log: the writes here never wait for the cleaner */

static struct loop *lp;
static struct nbd_server *srv;
static pthread_t loop_thread;
static int stop_pipe[2] = { -1, -1 };
static struct loop_watch *stop_watch;
static char sock_path[PATH_MAX + 16];
static unsigned recvs_armed, sends_gathered; /* the loop thread's; read after a stop */
/* Armed by a test: the waiter holds the loop once, after a sleep in which the last
 * receive it put in the ring completed, until the test posts stall_go; the loop then
 * collects the epoll fd's events of that moment with the receive's. */
static bool stall_armed;
static sem_t stalled, stall_go;
static struct loop_recv *last_armed; /* the loop thread's */

/* ---- the server: the engine on the loop, as quilld runs it ---- */

static int ring_idle(void *arg)
{
	(void)arg;
	engine_run(eng);
	return engine_timeout_ms(eng);
}

static int ring_sleep(void *arg, struct loop_wait *w, int timeout_ms)
{
	int r;

	(void)arg;
	for (struct loop_recv *lr = w->recvs; lr; lr = lr->next) {
		__atomic_add_fetch(&recvs_armed, 1, __ATOMIC_RELAXED);
		last_armed = lr;
	}
	for (struct loop_send *ls = w->sends; ls; ls = ls->next)
		if (ls->iovcnt > 0)
			__atomic_add_fetch(&sends_gathered, 1, __ATOMIC_RELAXED);
	r = engine_wait_fd(eng, w, timeout_ms);
	if (r >= 0 && __atomic_load_n(&stall_armed, __ATOMIC_ACQUIRE) && last_armed &&
	    last_armed->done) { /* (armed only while that receive's connection is open) */
		__atomic_store_n(&stall_armed, false, __ATOMIC_RELAXED);
		sem_post(&stalled);
		while (sem_wait(&stall_go) < 0)
			;
		w->ready = true; /* the loop collects what epoll says now (level-triggered) */
		w->nevents = 0;
	}
	return r < 0 ? r : 0;
}

static void on_stop(void *arg, unsigned events)
{
	(void)arg;
	(void)events;
	loop_stop(lp);
}

/* The loop's thread: the engine's ring takes submissions from the thread that made it
 * only, so the engine, the loop and the server are made, run and closed here. Sets
 * server_err (0 when serving) and posts ready; returns loop_run's result. */
static int server_err;
static sem_t ready;

static int server_open(void)
{
	struct nbd_server_opts o = { 0 };
	struct engine_opts eo;
	int r;

	opts_for(&eo, store_path, meta_path, true);
	eo.store_size = QUILL_DATA_OFFSET + (uint64_t)RING_SEGS * SEG_SIZE;
	r = engine_open(&eo, &eng);
	if (r == 0)
		r = engine_volume_create(eng, VOL, VOL_SIZE);
	if (r == 0)
		r = loop_create(&lp);
	if (r < 0)
		return r;
	loop_set_idle(lp, ring_idle, NULL);
	loop_set_wait(lp, ring_sleep, NULL);
	loop_set_wait_sends(lp, true);
	loop_set_wait_recvs(lp, true);
	r = loop_watch_add(lp, stop_pipe[0], LOOP_READ, on_stop, NULL, &stop_watch);
	if (r < 0)
		return r;
	o.eng = eng;
	o.loop = lp;
	o.unix_path = sock_path;
	return nbd_server_create(&o, &srv);
}

/* Closes the server (connections still open included: their receives are in the
 * ring), the engine (which cancels them) and the loop. */
static void server_close(void)
{
	nbd_server_destroy(srv);
	srv = NULL;
	loop_watch_remove(stop_watch);
	stop_watch = NULL;
	engine_close(eng);
	eng = NULL;
	loop_destroy(lp);
	lp = NULL;
}

static void *run_loop(void *arg)
{
	int r;

	(void)arg;
	server_err = server_open();
	sem_post(&ready);
	r = server_err ? server_err : loop_run(lp);
	server_close();
	return (void *)(intptr_t)r;
}

static void server_start(void)
{
	setup();
	snprintf(sock_path, sizeof(sock_path), "%s/nbd.sock", dir);
	cr_assert_eq(pipe(stop_pipe), 0);
	cr_assert_eq(sem_init(&ready, 0, 0), 0);
	recvs_armed = sends_gathered = 0;
	last_armed = NULL;
	stall_armed = false;
	cr_assert_eq(sem_init(&stalled, 0, 0), 0);
	cr_assert_eq(sem_init(&stall_go, 0, 0), 0);
	cr_assert_eq(pthread_create(&loop_thread, NULL, run_loop, NULL), 0);
	while (sem_wait(&ready) < 0)
		cr_assert_eq(errno, EINTR);
	cr_assert_eq(server_err, 0, "the server did not start: %s", strerror(-server_err));
}

/* Stops the loop; its thread closes everything. */
static void server_stop(void)
{
	void *res;

	cr_assert_eq(write(stop_pipe[1], "x", 1), 1);
	cr_assert_eq(pthread_join(loop_thread, &res), 0);
	cr_assert_eq((intptr_t)res, 0, "loop_run failed");
	close(stop_pipe[0]);
	close(stop_pipe[1]);
	sem_destroy(&ready);
	sem_destroy(&stalled);
	sem_destroy(&stall_go);
	teardown();
}

/* ---- a raw client ---- */

static void send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		cr_assert_gt(n, 0, "send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

static void recv_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, 0);

		cr_assert_gt(n, 0, "recv: %s", n == 0 ? "the server closed" : strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

/* Connected, past the handshake (EXPORT_NAME of VOL, no zeroes): in transmission. */
static int client_open(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 30 };
	uint8_t greeting[18], reply[10];
	uint32_t flags = htobe32(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	struct nbd_option_hdr opt = { .magic = htobe64(NBD_IHAVEOPT),
				      .option = htobe32(NBD_OPT_EXPORT_NAME),
				      .length = htobe32(sizeof(VOL) - 1) };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	cr_assert_lt(strlen(sock_path), sizeof(sa.sun_path), "socket path too long");
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
		     strerror(errno));
	recv_all(fd, greeting, sizeof(greeting));
	send_all(fd, &flags, sizeof(flags));
	send_all(fd, &opt, sizeof(opt));
	send_all(fd, VOL, sizeof(VOL) - 1);
	recv_all(fd, reply, sizeof(reply));
	cr_assert_eq(be64toh(*(uint64_t *)(void *)reply), VOL_SIZE);
	return fd;
}

static struct nbd_request request(uint16_t type, uint64_t cookie, uint64_t off, uint32_t len)
{
	return (struct nbd_request){ .magic = htobe32(NBD_REQUEST_MAGIC), .type = htobe16(type),
				     .cookie = htobe64(cookie), .offset = htobe64(off),
				     .length = htobe32(len) };
}

/* A simple reply to cookie, without error. */
static void expect_reply(int fd, uint64_t cookie)
{
	struct nbd_simple_reply r;

	recv_all(fd, &r, sizeof(r));
	cr_assert_eq(be32toh(r.magic), NBD_SIMPLE_REPLY_MAGIC);
	cr_assert_eq(be32toh(r.error), 0, "error %u", be32toh(r.error));
	cr_assert_eq(be64toh(r.cookie), cookie);
}

/* Sends buf in pieces of piece bytes, each after a pause, so that most of them
 * arrive on their own: each its own completion of the ring's receive. */
static void send_in_pieces(int fd, const void *buf, size_t len, size_t piece)
{
	for (size_t at = 0; at < len; at += piece) {
		send_all(fd, (const char *)buf + at, len - at < piece ? len - at : piece);
		usleep(300);
	}
}

static void write_block(int fd, uint64_t cookie, uint64_t off, const void *data, uint32_t len)
{
	struct nbd_request rq = request(NBD_CMD_WRITE, cookie, off, len);

	send_all(fd, &rq, sizeof(rq));
	send_all(fd, data, len);
	expect_reply(fd, cookie);
}

/* Whether a READ of len bytes at off returns want. */
static bool read_is(int fd, uint64_t cookie, uint64_t off, const void *want, uint32_t len)
{
	struct nbd_request rq = request(NBD_CMD_READ, cookie, off, len);
	uint8_t *got = malloc(len);
	bool same;

	cr_assert_not_null(got);
	send_all(fd, &rq, sizeof(rq));
	expect_reply(fd, cookie);
	recv_all(fd, got, len);
	same = memcmp(got, want, len) == 0;
	free(got);
	return same;
}

static void read_expect(int fd, uint64_t cookie, uint64_t off, const void *want, uint32_t len)
{
	cr_assert(read_is(fd, cookie, off, want, len), "read back other bytes at %llu",
		  (unsigned long long)off);
}

static void pattern(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 7 + seed + (i >> 12));
}

/* After the loop stopped: it armed receives for the connections and made gathered
 * sends of their replies (the old path armed none and sent with sendmsg itself). */
static void expect_ring_used(void)
{
	cr_assert_gt(__atomic_load_n(&recvs_armed, __ATOMIC_RELAXED), 0,
		     "no receive of a connection was put in the ring");
	cr_assert_gt(__atomic_load_n(&sends_gathered, __ATOMIC_RELAXED), 0,
		     "no reply was sent in the loop's sleep");
}

TestSuite(nbd_ring, .timeout = 120);

/* A request header and its payload cut in small pieces, each its own completion: the
 * header waits in the input buffer for its rest, the payload's pieces go to the
 * request's buffer; then a header and payload that arrive with the next request's
 * header in one piece. */
Test(nbd_ring, a_request_split_over_many_receives_is_served)
{
	uint8_t data[2 * BLK], two[2][BLK];
	struct nbd_request rq = request(NBD_CMD_WRITE, 1, 0, sizeof(data));
	uint8_t joined[2 * (sizeof(rq) + BLK)];
	int fd;

	server_start();
	fd = client_open();
	pattern(data, sizeof(data), 1);
	send_in_pieces(fd, &rq, sizeof(rq), 1);
	send_in_pieces(fd, data, sizeof(data), 333);
	expect_reply(fd, 1);
	read_expect(fd, 2, 0, data, sizeof(data));

	/* two writes in one send: the second's header follows the first's payload */
	pattern(two[0], BLK, 2);
	pattern(two[1], BLK, 3);
	for (int i = 0; i < 2; i++) {
		struct nbd_request w = request(NBD_CMD_WRITE, 10 + (unsigned)i,
					       (uint64_t)(4 + i) * BLK, BLK);

		memcpy(joined + (size_t)i * (sizeof(w) + BLK), &w, sizeof(w));
		memcpy(joined + (size_t)i * (sizeof(w) + BLK) + sizeof(w), two[i], BLK);
	}
	send_all(fd, joined, sizeof(joined));
	expect_reply(fd, 10);
	expect_reply(fd, 11);
	read_expect(fd, 12, 4 * BLK, two, sizeof(two));
	close(fd);
	server_stop();
	expect_ring_used();
}

/* A payload larger than a receive's room: full completions, then read on straight
 * into the request's buffer; and its read's reply, larger than the socket's buffer,
 * sent in several sends (short sends continue where they stopped). */
Test(nbd_ring, a_large_write_and_its_read_cross_many_completions_and_sends)
{
	const uint32_t len = 1u << 20;
	uint8_t *data = malloc(len);
	int fd, small = 8192;

	cr_assert_not_null(data);
	server_start();
	fd = client_open();
	/* a small receive buffer: the reply cannot go in one send */
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	pattern(data, len, 4);
	write_block(fd, 1, 0, data, len);
	read_expect(fd, 2, 0, data, len);
	/* and the same payload in pieces that end off a block's boundary */
	pattern(data, len, 5);
	{
		struct nbd_request rq = request(NBD_CMD_WRITE, 3, 0, len);

		send_all(fd, &rq, sizeof(rq));
		send_in_pieces(fd, data, len, 65536 + 1000);
		expect_reply(fd, 3);
	}
	read_expect(fd, 4, 0, data, len);
	close(fd);
	server_stop();
	expect_ring_used();
	free(data);
}

/* Connections that end while their receive is in the ring, or with replies the
 * client never reads: a bad request magic, a client gone mid-header and mid-payload,
 * one that stops reading and goes: each closes only its own connection (the others
 * go on), and the server, the engine and the loop close with one still connected
 * and idle (its receive cancelled in the ring: nothing left to the kernel). */
Test(nbd_ring, connections_closed_with_a_receive_or_replies_in_flight_close_alone)
{
	uint8_t block[BLK];
	int keep, bad, gone, full;

	server_start();
	keep = client_open();
	pattern(block, sizeof(block), 6);
	write_block(keep, 1, 0, block, sizeof(block));

	bad = client_open();
	{
		struct nbd_request rq = request(NBD_CMD_READ, 1, 0, BLK);
		char c;

		rq.magic = htobe32(0x12345678);
		send_all(bad, &rq, sizeof(rq));
		cr_assert_eq(recv(bad, &c, 1, 0), 0, "a bad magic did not close the connection");
		close(bad);
	}
	gone = client_open();
	{
		struct nbd_request rq = request(NBD_CMD_WRITE, 1, 0, 2 * BLK);

		send_all(gone, &rq, 10); /* half a header */
		close(gone);
	}
	gone = client_open();
	{
		struct nbd_request rq = request(NBD_CMD_WRITE, 1, 0, 2 * BLK);

		send_all(gone, &rq, sizeof(rq));
		send_all(gone, block, 1000); /* part of the payload */
		close(gone);
	}
	full = client_open();
	for (uint64_t i = 0; i < 16; i++) { /* 16 MiB of replies, never read */
		struct nbd_request rq = request(NBD_CMD_READ, i, 0, 1u << 20);

		send_all(full, &rq, sizeof(rq));
	}
	usleep(100 * 1000); /* (not a check: lets some replies fill the socket first) */
	close(full);

	read_expect(keep, 2, 0, block, sizeof(block));
	server_stop(); /* keep's receive is in the ring */
	close(keep);
	expect_ring_used();
}

/* A client that sends a WRITE and NBD_CMD_DISC and closes at once: the server reads
 * and serves all it sent (NBD_CMD_DISC: outstanding requests are handled). The hang-up
 * (epoll says it of a unix socket whose peer closed, bytes still unread) comes here
 * in the same wake-up as the receive of the header alone: the ring's receive reads on
 * to the end of the input; the hang-up does not cut it short. */
Test(nbd_ring, a_hang_up_after_the_last_request_does_not_drop_it)
{
	uint8_t block[BLK];
	struct nbd_request rq = request(NBD_CMD_WRITE, 1, 3 * BLK, BLK);
	struct nbd_request disc = request(NBD_CMD_DISC, 2, 0, 0);
	uint8_t rest[BLK + sizeof(disc)];
	int fd;

	server_start();
	fd = client_open();
	pattern(block, sizeof(block), 7);
	__atomic_store_n(&stall_armed, true, __ATOMIC_RELEASE);
	send_all(fd, &rq, sizeof(rq));
	while (sem_wait(&stalled) < 0) /* the header came in alone */
		cr_assert_eq(errno, EINTR);
	memcpy(rest, block, BLK);
	memcpy(rest + BLK, &disc, sizeof(disc));
	send_all(fd, rest, sizeof(rest));
	close(fd);
	sem_post(&stall_go);

	/* another connection sees it once it completed (no order between the two) */
	fd = client_open();
	for (int i = 0; i < 200 && !read_is(fd, 3, 3 * BLK, block, sizeof(block)); i++)
		usleep(10 * 1000);
	read_expect(fd, 4, 3 * BLK, block, sizeof(block));
	close(fd);
	server_stop();
}
