/* replication/peer.h — peer connections on the event loop: a listener for other nodes,
 * and connections to them.
 *
 * A peer endpoint owns a node's peer connections, incoming (from its listener) and
 * outgoing (peer_connect). Each connection has a non-blocking socket, a read buffer
 * that the session (peer_session.h) cuts into frames, and a write buffer that goes out
 * as the socket takes it; network I/O never blocks the loop. Nothing of the session
 * flows before both sides are authenticated. A malformed, truncated, oversized,
 * unexpected or unauthenticated frame, a handshake that does not finish in time, or a
 * peer that will not read closes that connection with one log line (the peer's
 * address, why) and changes nothing else.
 *
 * Today a server answers PING with PONG; the segment ops (peer_proto.h) come later.
 *
 * Threading: an endpoint and its connections belong to the loop's thread. The
 * callbacks may ping and close their own connection, never destroy the endpoint.
 */
#ifndef QUILL_REPLICATION_PEER_H
#define QUILL_REPLICATION_PEER_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct peer_secret;
struct peer_endpoint;
struct peer_conn;

#define PEER_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define PEER_DEFAULT_MAX_HANDSHAKES 64 /* connections not yet authenticated */
#define PEER_DEFAULT_MAX_CONNS 1024

struct peer_endpoint_opts {
	struct loop *loop;
	const struct peer_secret *secret; /* borrowed: outlives the endpoint */
	uint64_t node_id;                 /* 0: not in a cluster yet */
	const char *listen_addr;          /* a numeric IPv4/IPv6 address; NULL: no listener */
	uint16_t listen_port;             /* 0: any free port (peer_endpoint_port says) */
	unsigned handshake_timeout_ms;    /* 0: the default */
	unsigned max_handshakes;          /* 0: the default */
	unsigned max_conns;               /* 0: the default */
};

int peer_endpoint_create(const struct peer_endpoint_opts *opts, struct peer_endpoint **out);
/* Closes every connection (their closed callbacks run) and the listener. NULL ok. */
void peer_endpoint_destroy(struct peer_endpoint *ep);
uint16_t peer_endpoint_port(const struct peer_endpoint *ep); /* 0: no listener */

/* What an outgoing connection reports. Each may be NULL. */
struct peer_conn_ops {
	/* authenticated both ways: peer_ping may be called */
	void (*ready)(void *arg, struct peer_conn *c);
	void (*pong)(void *arg, struct peer_conn *c, uint64_t request_id, const void *payload,
		     size_t len);
	/* the connection is gone (err 0: closed by us or cleanly by the peer); c is freed
	 * right after; runs exactly once for a connection peer_connect returned */
	void (*closed)(void *arg, struct peer_conn *c, int err, const char *why);
};

/* Parses "ADDR:PORT" or "[V6ADDR]:PORT" (a numeric address, a port 1..65535) into addr
 * (size bytes) and *port. -EINVAL if it is not that. */
int peer_addr_parse(const char *text, char *addr, size_t size, uint16_t *port);

/* Connects to a numeric address and port without blocking, then handshakes. Returns 0
 * (ops->closed will run exactly once) or -errno (it never runs). */
int peer_connect(struct peer_endpoint *ep, const char *addr, uint16_t port,
		 const struct peer_conn_ops *ops, void *arg, struct peer_conn **out);
/* Queues a PING (payload up to PEER_PING_MAX bytes): -ENOTCONN before ready. */
int peer_ping(struct peer_conn *c, uint64_t request_id, const void *payload, size_t len);
/* Closes c now (closed runs with err 0). */
void peer_conn_close(struct peer_conn *c);

#endif
