/* tests/integration/nbd_malformed.c — bad clients over raw sockets.
 *
 * Each check misbehaves in one way (bad magics, unknown flags, options and commands,
 * huge lengths, truncated messages, vanishing mid-request, random garbage) and
 * expects the protocol's answer or a closed connection for that client alone; after
 * each, a new libnbd client must still write and read correctly. Also run under
 * ASan+UBSan (label san). QUILL_SEED replays the garbage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "nbd/nbd_proto.h"
#include "nbd_test.h"

#define RAW(fd, srv) \
	int fd = raw_connect(srv); \
	CHECK(fd >= 0, "connect")

static bool closed_then_works(struct nbdt_server *srv, int fd, const char *what)
{
	bool closed = raw_closed(fd);

	close(fd);
	CHECK(closed, "%s: the server did not close the connection", what);
	CHECK(nbdt_server_works(srv), "after %s", what);
	return true;
}

static bool t_bad_client_flags(struct nbdt_server *srv, uint64_t seed)
{
	RAW(fd, srv);
	(void)seed;
	CHECK(raw_greet(fd, 0x80000001u) == 0, "greet");
	return closed_then_works(srv, fd, "unknown client flags");
}

static bool t_bad_option_magic(struct nbdt_server *srv, uint64_t seed)
{
	uint8_t junk[16] = "NOTIHAVEOPT.....";

	RAW(fd, srv);
	(void)seed;
	CHECK(raw_greet(fd, NBD_FLAG_C_FIXED_NEWSTYLE) == 0, "greet");
	CHECK(raw_send(fd, junk, sizeof(junk)) == 0, "send");
	return closed_then_works(srv, fd, "bad option magic");
}

/* Unknown option → ERR_UNSUP; too long → ERR_TOO_BIG; bad data → ERR_INVALID; then GO. */
static bool t_option_errors(struct nbdt_server *srv, uint64_t seed)
{
	static uint8_t big[NBD_MAX_OPTION_LEN + 4096];
	uint8_t meta[64];
	uint32_t rep;

	RAW(fd, srv);
	(void)seed;
	CHECK(raw_greet(fd, NBD_FLAG_C_FIXED_NEWSTYLE) == 0, "greet");
	CHECK(raw_send_option(fd, 99, "xyz", 3) == 0, "send");
	CHECK((rep = raw_recv_option_reply(fd, NULL, NULL, 0)) == NBD_REP_ERR_UNSUP, "unknown: %#x", rep);
	CHECK(raw_send_option(fd, NBD_OPT_STARTTLS, NULL, 0) == 0, "send");
	CHECK((rep = raw_recv_option_reply(fd, NULL, NULL, 0)) == NBD_REP_ERR_UNSUP, "tls: %#x", rep);
	CHECK(raw_send_option(fd, NBD_OPT_INFO, big, sizeof(big)) == 0, "send");
	CHECK((rep = raw_recv_option_reply(fd, NULL, NULL, 0)) == NBD_REP_ERR_TOO_BIG, "big: %#x", rep);
	CHECK(raw_send_option(fd, NBD_OPT_LIST, "x", 1) == 0, "send");
	CHECK((rep = raw_recv_option_reply(fd, NULL, NULL, 0)) == NBD_REP_ERR_INVALID, "list: %#x", rep);
	nbd_put32(big, 1000); /* a name longer than the option */
	CHECK(raw_send_option(fd, NBD_OPT_GO, big, 10) == 0, "send");
	CHECK((rep = raw_recv_option_reply(fd, NULL, NULL, 0)) == NBD_REP_ERR_INVALID, "go: %#x", rep);
	/* meta contexts need structured replies first */
	nbd_put32(meta, 3);
	memcpy(meta + 4, "vol", 3);
	nbd_put32(meta + 7, 0);
	CHECK(raw_send_option(fd, NBD_OPT_SET_META_CONTEXT, meta, 11) == 0, "send");
	CHECK((rep = raw_recv_option_reply(fd, NULL, NULL, 0)) == NBD_REP_ERR_INVALID, "meta: %#x", rep);
	CHECK(raw_send_option(fd, NBD_OPT_STRUCTURED_REPLY, "x", 1) == 0, "send");
	CHECK((rep = raw_recv_option_reply(fd, NULL, NULL, 0)) == NBD_REP_ERR_INVALID, "sr: %#x", rep);
	/* still negotiating: GO works */
	nbd_put32(big, 3);
	memcpy(big + 4, "vol", 3);
	nbd_put16(big + 7, 0);
	CHECK(raw_send_option(fd, NBD_OPT_GO, big, 9) == 0, "send");
	do
		rep = raw_recv_option_reply(fd, NULL, NULL, 0);
	while (rep == NBD_REP_INFO);
	CHECK(rep == NBD_REP_ACK, "go after errors: %#x", rep);
	CHECK(raw_send_request(fd, 0, NBD_CMD_DISC, 1, 0, 0) == 0, "disc");
	return closed_then_works(srv, fd, "option errors");
}

/* NBD_OPT_EXPORT_NAME: unknown → closed; known → the old reply, simple replies. */
static bool t_export_name(struct nbdt_server *srv, uint64_t seed)
{
	uint8_t reply[10 + 124], data[100];
	uint64_t cookie;

	(void)seed;
	{
		RAW(fd, srv);
		CHECK(raw_greet(fd, NBD_FLAG_C_FIXED_NEWSTYLE) == 0, "greet");
		CHECK(raw_send_option(fd, NBD_OPT_EXPORT_NAME, "nope", 4) == 0, "send");
		if (!closed_then_works(srv, fd, "EXPORT_NAME of an unknown export"))
			return false;
	}
	RAW(fd, srv);
	CHECK(raw_greet(fd, NBD_FLAG_C_FIXED_NEWSTYLE) == 0, "greet");
	CHECK(raw_send_option(fd, NBD_OPT_EXPORT_NAME, "small", 5) == 0, "send");
	CHECK(raw_recv(fd, reply, sizeof(reply)) == 0, "no EXPORT_NAME reply");
	CHECK(nbd_get64(reply) == NBDT_SMALL_SIZE, "size");
	CHECK(nbd_get16(reply + 8) & NBD_FLAG_HAS_FLAGS, "flags");
	CHECK(!(nbd_get16(reply + 8) & NBD_FLAG_SEND_DF), "DF without structured replies");
	CHECK(raw_send_request(fd, 0, NBD_CMD_READ, 42, 1000, sizeof(data)) == 0, "send");
	CHECK(raw_recv_simple_reply(fd, &cookie) == 0 && cookie == 42, "read reply");
	CHECK(raw_recv(fd, data, sizeof(data)) == 0, "read data");
	CHECK(raw_send_request(fd, 0, NBD_CMD_DISC, 43, 0, 0) == 0, "disc");
	return closed_then_works(srv, fd, "EXPORT_NAME session");
}

static bool t_abort(struct nbdt_server *srv, uint64_t seed)
{
	RAW(fd, srv);
	(void)seed;
	CHECK(raw_greet(fd, NBD_FLAG_C_FIXED_NEWSTYLE) == 0, "greet");
	CHECK(raw_send_option(fd, NBD_OPT_ABORT, NULL, 0) == 0, "send");
	CHECK(raw_recv_option_reply(fd, NULL, NULL, 0) == NBD_REP_ACK, "no ACK to ABORT");
	return closed_then_works(srv, fd, "NBD_OPT_ABORT");
}

static bool t_bad_request_magic(struct nbdt_server *srv, uint64_t seed)
{
	uint8_t junk[28] = { 0x12, 0x34 };

	RAW(fd, srv);
	(void)seed;
	CHECK(raw_go(fd, "vol", false) == 0, "go");
	CHECK(raw_send(fd, junk, sizeof(junk)) == 0, "send");
	return closed_then_works(srv, fd, "bad request magic");
}

/* READ/TRIM of 2 GiB and an unknown command: EINVAL, the session goes on. */
static bool t_bad_requests(struct nbdt_server *srv, uint64_t seed)
{
	uint64_t cookie;
	int64_t e;

	RAW(fd, srv);
	(void)seed;
	CHECK(raw_go(fd, "vol", false) == 0, "go");
	CHECK(raw_send_request(fd, 0, NBD_CMD_READ, 1, 0, 0x80000000u) == 0, "send");
	CHECK((e = raw_recv_simple_reply(fd, &cookie)) == NBD_EINVAL && cookie == 1, "2 GiB read: %lld",
	      (long long)e);
	CHECK(raw_send_request(fd, 0, NBD_CMD_TRIM, 2, 0, 0x80000000u) == 0, "send");
	CHECK((e = raw_recv_simple_reply(fd, &cookie)) == NBD_EINVAL && cookie == 2, "2 GiB trim: %lld",
	      (long long)e);
	CHECK(raw_send_request(fd, 0, 99, 3, 0, 4096) == 0, "send");
	CHECK((e = raw_recv_simple_reply(fd, &cookie)) == NBD_EINVAL && cookie == 3, "unknown: %lld",
	      (long long)e);
	CHECK(raw_send_request(fd, 0x4000, NBD_CMD_FLUSH, 4, 0, 0) == 0, "send");
	CHECK((e = raw_recv_simple_reply(fd, &cookie)) == NBD_EINVAL && cookie == 4, "bad flag: %lld",
	      (long long)e);
	CHECK(raw_send_request(fd, 0, NBD_CMD_FLUSH, 5, 0, 0) == 0, "send");
	CHECK((e = raw_recv_simple_reply(fd, &cookie)) == 0 && cookie == 5, "flush: %lld", (long long)e);
	CHECK(raw_send_request(fd, 0, NBD_CMD_DISC, 6, 0, 0) == 0, "disc");
	return closed_then_works(srv, fd, "bad requests");
}

static bool t_huge_write(struct nbdt_server *srv, uint64_t seed)
{
	RAW(fd, srv);
	(void)seed;
	CHECK(raw_go(fd, "vol", true) == 0, "go");
	CHECK(raw_send_request(fd, 0, NBD_CMD_WRITE, 1, 0, 0x80000000u) == 0, "send");
	return closed_then_works(srv, fd, "a 2 GiB WRITE");
}

static bool t_truncated_header(struct nbdt_server *srv, uint64_t seed)
{
	uint8_t half[10] = { 0x25, 0x60, 0x95, 0x13 };

	RAW(fd, srv);
	(void)seed;
	CHECK(raw_go(fd, "vol", true) == 0, "go");
	CHECK(raw_send(fd, half, sizeof(half)) == 0, "send");
	close(fd);
	usleep(50 * 1000);
	CHECK(nbdt_server_works(srv), "after a truncated header");
	return true;
}

static bool t_vanish_mid_write(struct nbdt_server *srv, uint64_t seed)
{
	static uint8_t part[100 * 1024];

	RAW(fd, srv);
	(void)seed;
	CHECK(raw_go(fd, "vol", true) == 0, "go");
	CHECK(raw_send_request(fd, 0, NBD_CMD_WRITE, 1, 4097, 1 << 20) == 0, "send");
	CHECK(raw_send(fd, part, sizeof(part)) == 0, "send");
	close(fd);
	usleep(50 * 1000);
	CHECK(nbdt_server_works(srv), "after a client vanished mid-payload");
	return true;
}

/* Many requests in flight, then the client is gone: replies go nowhere. */
static bool t_vanish_in_flight(struct nbdt_server *srv, uint64_t seed)
{
	static uint8_t payload[65536];

	(void)seed;
	for (int round = 0; round < 4; round++) {
		RAW(fd, srv);
		CHECK(raw_go(fd, "vol", round % 2 == 0) == 0, "go");
		for (int i = 0; i < 64; i++) {
			uint16_t type = i % 3 == 0 ? NBD_CMD_WRITE : i % 3 == 1 ? NBD_CMD_READ
									: NBD_CMD_WRITE_ZEROES;

			CHECK(raw_send_request(fd, 0, type, (uint64_t)i, (uint64_t)i * 70001,
					       sizeof(payload)) == 0, "send");
			if (type == NBD_CMD_WRITE)
				CHECK(raw_send(fd, payload, sizeof(payload)) == 0, "send");
		}
		if (round >= 2)
			shutdown(fd, SHUT_RDWR);
		close(fd);
	}
	usleep(100 * 1000);
	CHECK(nbdt_server_works(srv), "after clients vanished with requests in flight");
	return true;
}

/* A client that sends requests and never reads replies must not stall others. */
static bool t_no_reader(struct nbdt_server *srv, uint64_t seed)
{
	RAW(fd, srv);
	(void)seed;
	CHECK(raw_go(fd, "vol", true) == 0, "go");
	for (int i = 0; i < 400; i++)
		if (raw_send_request(fd, 0, NBD_CMD_READ, (uint64_t)i, 0, 1 << 20) < 0)
			break; /* the server stopped reading: fine */
	CHECK(nbdt_server_works(srv), "while a client does not read its replies");
	close(fd);
	CHECK(nbdt_server_works(srv), "after it left");
	return true;
}

/* Connects, takes the greeting and says nothing: the handshake timeout (5 s in the
 * harness) must close it, or idle clients could hold every connection slot. The
 * wait for the close is 30 s, not the raw socket's 10: a loaded machine may run
 * the server's sweep late, and the check is that it closes, not how soon. */
static bool t_silent_client(struct nbdt_server *srv, uint64_t seed)
{
	uint8_t g[sizeof(struct nbd_greeting)];
	struct timeval tv = { .tv_sec = 30 };

	RAW(fd, srv);
	(void)seed;
	CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0, "SO_RCVTIMEO");
	CHECK(raw_recv(fd, g, sizeof(g)) == 0, "greeting");
	return closed_then_works(srv, fd, "silent client");
}

/* Random bytes at every stage of the handshake and of transmission. */

static bool t_garbage(struct nbdt_server *srv, uint64_t seed)
{
	uint8_t junk[4096];
	uint64_t rng = seed;

	for (int round = 0; round < 24; round++) {
		size_t len = (size_t)it_rand_range(&rng, 1, sizeof(junk));
		int stage = round % 3;

		for (size_t i = 0; i < len; i++)
			junk[i] = (uint8_t)it_rand(&rng);
		RAW(fd, srv);
		if (stage == 1)
			CHECK(raw_greet(fd, NBD_FLAG_C_FIXED_NEWSTYLE) == 0, "greet");
		if (stage == 2)
			CHECK(raw_go(fd, "vol", round % 2) == 0, "go");
		raw_send(fd, junk, len);
		close(fd);
	}
	usleep(50 * 1000);
	CHECK(nbdt_server_works(srv), "after garbage (seed %llu)", (unsigned long long)seed);
	return true;
}

int main(void)
{
	static const struct nbdt_check checks[] = {
		{ "unknown client flags: closed", t_bad_client_flags },
		{ "bad option magic: closed", t_bad_option_magic },
		{ "option errors: UNSUP, TOO_BIG, INVALID, then GO", t_option_errors },
		{ "NBD_OPT_EXPORT_NAME", t_export_name },
		{ "NBD_OPT_ABORT", t_abort },
		{ "bad request magic: closed", t_bad_request_magic },
		{ "2 GiB read/trim, unknown command, bad flag: EINVAL", t_bad_requests },
		{ "2 GiB write: closed", t_huge_write },
		{ "truncated request header, then close", t_truncated_header },
		{ "client vanishes mid-payload", t_vanish_mid_write },
		{ "client vanishes with requests in flight", t_vanish_in_flight },
		{ "client that never reads replies", t_no_reader },
		{ "silent client: closed by the handshake timeout", t_silent_client },
		{ "random garbage", t_garbage },
	};

	return nbdt_main("nbd_malformed", checks, sizeof(checks) / sizeof(checks[0]));
}
