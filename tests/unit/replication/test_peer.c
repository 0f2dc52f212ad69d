/* tests/unit/replication/test_peer.c — replication/peer.c on a real loop and real
 * sockets of 127.0.0.1: a handshake and pings between two endpoints, a wrong secret, a
 * connection to oneself, a silent stranger timed out, the handshake limit, closing from
 * inside a callback and with connections still open, and the address parser. */
#include "replication/peer.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/loop.h"
#include "replication/peer_session.h"
#include "peer_fixture.h"

static struct loop *lp;
static struct peer_secret *sec_a, *sec_b;
static struct peer_endpoint *server;

struct run {
	unsigned pongs, want_pongs, readies, closes;
	int err;
	char why[128];
};

static void give_up(void *arg)
{
	(void)arg;
	cr_assert_fail("the loop ran 10 s without finishing the test");
}

static struct peer_endpoint *endpoint(struct peer_secret *sec, bool listen, unsigned hs_ms,
				      unsigned max_hs)
{
	struct peer_endpoint_opts o = { .loop = lp, .secret = sec, .node_id = 5,
					.listen_addr = listen ? "127.0.0.1" : NULL,
					.handshake_timeout_ms = hs_ms, .max_handshakes = max_hs };
	struct peer_endpoint *ep;

	cr_assert_eq(peer_endpoint_create(&o, &ep), 0);
	return ep;
}

static void setup(void)
{
	cr_assert_eq(loop_create(&lp), 0);
	sec_a = peer_fixture_secret(1);
	sec_b = peer_fixture_secret(2);
	cr_assert_eq(loop_timer_add(lp, 10000, give_up, NULL, NULL), 0);
}

static void teardown(void)
{
	peer_endpoint_destroy(server);
	peer_secret_destroy(sec_a);
	peer_secret_destroy(sec_b);
	loop_destroy(lp);
}

TestSuite(peer, .init = setup, .fini = teardown);

static void on_ready(void *arg, struct peer_conn *c)
{
	struct run *r = arg;

	r->readies++;
	cr_assert_eq(peer_ping(c, 1, "one", 3), 0);
}

static void on_pong(void *arg, struct peer_conn *c, uint64_t id, const void *payload, size_t len)
{
	struct run *r = arg;

	cr_assert_eq(id, r->pongs + 1);
	cr_assert_eq(len, 3);
	r->pongs++;
	if (r->pongs == r->want_pongs) {
		peer_conn_close(c); /* from inside the callback: happens after it */
		return;
	}
	cr_assert_eq(peer_ping(c, r->pongs + 1, payload, len), 0);
}

static void on_closed(void *arg, struct peer_conn *c, int err, const char *why)
{
	struct run *r = arg;

	(void)c;
	r->closes++;
	r->err = err;
	snprintf(r->why, sizeof(r->why), "%s", why);
	loop_stop(lp);
}

static const struct peer_conn_ops ops = { .ready = on_ready, .pong = on_pong,
					  .closed = on_closed };

Test(peer, handshake_and_pings)
{
	struct run r = { .want_pongs = 5 };
	struct peer_endpoint *client = endpoint(sec_a, false, 0, 0);
	struct peer_conn *c;

	server = endpoint(sec_a, true, 0, 0);
	cr_assert_neq(peer_endpoint_port(server), 0);
	cr_assert_eq(peer_endpoint_port(client), 0, "no listener");
	cr_assert_eq(peer_connect(client, "127.0.0.1", peer_endpoint_port(server), &ops, &r, &c), 0);
	cr_assert_eq(peer_ping(c, 1, "x", 1), -ENOTCONN, "not before the handshake");
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(r.readies, 1);
	cr_assert_eq(r.pongs, 5);
	cr_assert_eq(r.closes, 1);
	cr_assert_eq(r.err, 0, "closed by us: %s", r.why);
	peer_endpoint_destroy(client);
}

Test(peer, wrong_secret_refused)
{
	struct run r = { .want_pongs = 1 };
	struct peer_endpoint *client = endpoint(sec_b, false, 0, 0);
	struct peer_conn *c;

	server = endpoint(sec_a, true, 0, 0);
	cr_assert_eq(peer_connect(client, "127.0.0.1", peer_endpoint_port(server), &ops, &r, &c), 0);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(r.readies, 0, "never authenticated");
	cr_assert_eq(r.pongs, 0);
	cr_assert_eq(r.err, EACCES, "%s", r.why);
	cr_assert(strstr(r.why, "proof is wrong"), "%s", r.why);
	peer_endpoint_destroy(client);
}

/* An endpoint that connects to its own listener refuses itself. */
Test(peer, connection_to_itself_refused)
{
	struct run r = { .want_pongs = 1 };
	struct peer_conn *c;

	server = endpoint(sec_a, true, 0, 0);
	cr_assert_eq(peer_connect(server, "127.0.0.1", peer_endpoint_port(server), &ops, &r, &c), 0);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(r.readies, 0);
	cr_assert_neq(r.err, 0, "%s", r.why);
}

/* A raw TCP client of the server's port; stops the loop when the server closes it. */
struct raw {
	int fd;
	struct loop_watch *w;
	bool closed;
};

static void raw_event(void *arg, unsigned events)
{
	struct raw *raw = arg;
	char b[64];

	(void)events;
	if (recv(raw->fd, b, sizeof(b), MSG_DONTWAIT) == 0) {
		raw->closed = true;
		loop_watch_remove(raw->w);
		raw->w = NULL;
		loop_stop(lp);
	}
}

static void raw_connect(struct raw *raw)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(peer_endpoint_port(server)) };

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	raw->fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(raw->fd, 0);
	cr_assert_eq(connect(raw->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(loop_watch_add(lp, raw->fd, LOOP_READ, raw_event, raw, &raw->w), 0);
}

static void raw_close(struct raw *raw)
{
	loop_watch_remove(raw->w);
	close(raw->fd);
}

Test(peer, silent_stranger_timed_out)
{
	struct raw raw = { 0 };

	server = endpoint(sec_a, true, 200, 0);
	raw_connect(&raw);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert(raw.closed, "the server closes a handshake that does not finish");
	raw_close(&raw);
}

Test(peer, handshakes_beyond_the_limit_refused)
{
	struct raw first = { 0 }, second = { 0 };

	server = endpoint(sec_a, true, 0, 1);
	raw_connect(&first);
	raw_connect(&second);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert(second.closed, "the second handshake is refused");
	cr_assert_not(first.closed, "the first waits for its handshake");
	raw_close(&first);
	raw_close(&second);
}

/* Connections still open when the endpoint goes: their closed callbacks run. */
static void on_ready_stop(void *arg, struct peer_conn *c)
{
	(void)c;
	((struct run *)arg)->readies++;
	loop_stop(lp);
}

Test(peer, destroy_closes_open_connections)
{
	struct run r = { 0 };
	static const struct peer_conn_ops stop_ops = { .ready = on_ready_stop,
						       .closed = on_closed };
	struct peer_endpoint *client = endpoint(sec_a, false, 0, 0);
	struct peer_conn *c;

	server = endpoint(sec_a, true, 0, 0);
	cr_assert_eq(peer_connect(client, "127.0.0.1", peer_endpoint_port(server), &stop_ops, &r,
				  &c), 0);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(r.readies, 1);
	peer_endpoint_destroy(client);
	cr_assert_eq(r.closes, 1);
	cr_assert_eq(r.err, 0);
}

Test(peer, connect_refused_reported)
{
	struct run r = { 0 };
	struct peer_endpoint *client = endpoint(sec_a, false, 0, 0);
	struct peer_conn *c;
	uint16_t port;

	server = endpoint(sec_a, true, 0, 0);
	port = peer_endpoint_port(server);
	peer_endpoint_destroy(server); /* nothing listens there now */
	server = NULL;
	cr_assert_eq(peer_connect(client, "127.0.0.1", port, &ops, &r, &c), 0);
	cr_assert_eq(loop_run(lp), 0);
	cr_assert_eq(r.err, ECONNREFUSED, "%s", r.why);
	cr_assert_eq(peer_connect(client, "localhost", port, &ops, &r, &c), -EINVAL,
		     "numeric addresses only: no blocking name lookup");
	peer_endpoint_destroy(client);
}

Test(peer, addr_parse)
{
	char addr[64];
	uint16_t port;

	cr_assert_eq(peer_addr_parse("127.0.0.1:10900", addr, sizeof(addr), &port), 0);
	cr_assert_str_eq(addr, "127.0.0.1");
	cr_assert_eq(port, 10900);
	cr_assert_eq(peer_addr_parse("[::1]:7", addr, sizeof(addr), &port), 0);
	cr_assert_str_eq(addr, "::1");
	cr_assert_eq(port, 7);
	cr_assert_eq(peer_addr_parse("127.0.0.1", addr, sizeof(addr), &port), -EINVAL);
	cr_assert_eq(peer_addr_parse("127.0.0.1:0", addr, sizeof(addr), &port), -EINVAL);
	cr_assert_eq(peer_addr_parse("127.0.0.1:65536", addr, sizeof(addr), &port), -EINVAL);
	cr_assert_eq(peer_addr_parse("127.0.0.1:x", addr, sizeof(addr), &port), -EINVAL);
	cr_assert_eq(peer_addr_parse(":10900", addr, sizeof(addr), &port), -EINVAL);
	cr_assert_eq(peer_addr_parse("node1:10900", addr, sizeof(addr), &port), -EINVAL);
	cr_assert_eq(peer_addr_parse("127.0.0.1:10900", addr, 5, &port), -EINVAL);
}
