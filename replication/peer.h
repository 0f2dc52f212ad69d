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
 * A server answers PING with PONG itself, and hands every segment op's request
 * (peer_proto.h) to its serve hook (replication/holder.h), which answers it with
 * peer_req_reply(), at once or later. A client sends those requests with
 * peer_request() and gets each reply, or the connection's end, in a callback; a reply
 * later than the request's timeout closes the connection. A refused op (a stale epoch,
 * a hole, no space) is a reply with a negative result: the connection stays. A request
 * that decodes but asks more than its op allows (a READ or FRAG_READ of too many
 * blocks, peer_seg_req_check) is refused so here, never reaching the serve hook. Only
 * a protocol violation (a malformed request or reply, a reply to no request) closes
 * it.
 *
 * Frames are copied at most once on the way out (into the connection's write buffer)
 * and not at all on the way in (a served request's payload is the read buffer's, or
 * the read buffer itself for a large one). Sockets are non-blocking: one slow peer
 * stalls only its own connection.
 *
 * Threading: an endpoint and its connections belong to the loop's thread. The
 * callbacks may ping, send requests on and close their own connection, never destroy
 * the endpoint.
 */
#ifndef QUILL_REPLICATION_PEER_H
#define QUILL_REPLICATION_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "replication/peer_proto.h"

struct loop;
struct peer_secret;
struct peer_endpoint;
struct peer_conn;
struct peer_req;

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
	/* Every segment op's request of an authenticated incoming connection, decoded and
	 * checked (header, CRCs, MAC, payload layout and bounds), on the loop's thread;
	 * it answers exactly once with peer_req_reply(). NULL: each is answered
	 * -EOPNOTSUPP. */
	void (*serve)(void *arg, struct peer_req *req);
	void *serve_arg;
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

/* ---- requests and replies (segment ops) ---- */

struct peer_msg {                 /* one request or reply */
	uint8_t op;
	uint64_t volume_id, epoch;    /* the frame header's */
	const void *head; size_t head_len;          /* the fixed payload */
	const struct iovec *data; int datacnt;      /* then data (may be 0) */
};

/* A reply (res 0, h its decoded header, payload the reply's whole payload, result
 * first: peer_seg_reply_decode; the layout was checked) or the request's end (res
 * -ECONNRESET or -ETIMEDOUT, h NULL). payload is valid only during the call. */
typedef void (*peer_reply_cb)(void *arg, int res, const struct peer_hdr *h,
			      const void *payload, size_t len);

/* Queues a request (a segment op's: PEER_OP_SEG_*) on a ready connection and returns
 * 0: cb runs exactly once, never before this returns, with the reply, or -ECONNRESET
 * when the connection closes first, or -ETIMEDOUT when no reply came within
 * timeout_ms (0: no limit), which also closes the connection (its other requests end
 * -ECONNRESET). Or returns -errno and cb never runs: -ENOTCONN (not ready, or
 * closing), -EINVAL (not a segment request, or a payload below its op's bound),
 * -EMSGSIZE (above it), -ENOMEM. The payload is copied before this returns: the
 * caller's buffers are free at once. The request id is the connection's. */
int peer_request(struct peer_conn *c, const struct peer_msg *m, unsigned timeout_ms,
		 peer_reply_cb cb, void *arg);
/* Requests sent and not answered yet. */
unsigned peer_conn_pending(const struct peer_conn *c);

/* Server side: a request handed to the serve hook. The header, payload and decoded
 * request stay valid until the reply (the payload is the request's whole payload;
 * peer_req_seg is it decoded by peer_seg_req_decode and checked by
 * peer_seg_req_check, an APPEND's data pointing into it). */
const struct peer_hdr *peer_req_hdr(const struct peer_req *req);
const void *peer_req_payload(const struct peer_req *req, size_t *len);
const struct peer_seg_req *peer_req_seg(const struct peer_req *req);
/* Answers req with reply (its op must be the request's | PEER_OP_REPLY; the request
 * id is req's) and frees req. If the connection closed meanwhile, the reply is dropped
 * (-ENOTCONN); if it cannot be queued (-EMSGSIZE, -EINVAL, -ENOMEM) the connection is
 * closed: the requester must not wait for an answer that will not come. */
int peer_req_reply(struct peer_req *req, const struct peer_msg *reply);
/* Answers req with a refusal: a reply of result res (< 0) and nothing after it, its
 * header echoing the request's volume and epoch. As peer_req_reply. */
int peer_req_refuse(struct peer_req *req, int res);
/* Frees req without an answer (a server shutting down); the requester's timeout or
 * the connection's close ends its wait. */
void peer_req_drop(struct peer_req *req);

#endif
