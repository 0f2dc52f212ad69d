/* nbd/nbd_server.h — an NBD server (fixed newstyle, structured replies, block status)
 * exporting engine volumes, on TCP and/or a unix socket.
 *
 * One export per volume, named like the volume. Requests run concurrently and may
 * complete out of order. All connections to one export share one engine_volume
 * handle; FLUSH is an engine-wide flush, so NBD_FLAG_CAN_MULTI_CONN holds.
 *
 * Threading: runs on the loop's thread, which must also be the engine's thread.
 */
#ifndef QUILL_NBD_NBD_SERVER_H
#define QUILL_NBD_NBD_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct blk_guard;
struct engine;
struct loop;
struct nbd_server;
struct nbd_tls;

/* What a client (or all of them) may hold; see docs/nbd.md "Limits". A source is a
 * peer address for TCP and a peer uid (SO_PEERCRED) for the unix socket. */
struct nbd_server_limits {
	/* Connections still in the handshake, all and per source. When one more
	 * arrives, the handshaking connection idle for longest is closed to make room
	 * (of the same source when that source is at its bound). */
	unsigned max_handshakes;            /* 0 = NBD_DEFAULT_MAX_HANDSHAKES */
	unsigned max_handshakes_per_source; /* 0 = NBD_DEFAULT_MAX_HANDSHAKES_PER_SOURCE */
	/* Attached connections (past NBD_OPT_GO), all and per source: one more is
	 * refused (NBD_REP_ERR_POLICY) and stays in the handshake. */
	unsigned max_clients;               /* 0 = NBD_DEFAULT_MAX_CLIENTS */
	unsigned max_clients_per_source;    /* 0 = NBD_DEFAULT_MAX_CLIENTS_PER_SOURCE */
	/* A handshake that completes no message for this long is closed. */
	unsigned handshake_timeout_ms;      /* 0 = NBD_DEFAULT_HANDSHAKE_TIMEOUT_MS */
	/* An attached client that stops in the middle of a request (header or payload
	 * partly sent) or stops reading its replies for this long is dropped; one that
	 * is idle between requests is never dropped. */
	unsigned request_timeout_ms;        /* 0 = NBD_DEFAULT_REQUEST_TIMEOUT_MS */
	/* Request buffers held server-wide; past it, connections stop being read and
	 * wait their turn (first come, first served). */
	uint64_t request_mem;               /* 0 = NBD_DEFAULT_REQUEST_MEM */
};

#define NBD_DEFAULT_MAX_HANDSHAKES             128u
#define NBD_DEFAULT_MAX_HANDSHAKES_PER_SOURCE  32u
#define NBD_DEFAULT_MAX_CLIENTS                1024u
#define NBD_DEFAULT_MAX_CLIENTS_PER_SOURCE     512u
#define NBD_DEFAULT_HANDSHAKE_TIMEOUT_MS       30000u
#define NBD_DEFAULT_REQUEST_TIMEOUT_MS         60000u
#define NBD_DEFAULT_REQUEST_MEM                (512ull << 20)
/* The smallest request_mem: one request of the largest size always fits. */
#define NBD_MIN_REQUEST_MEM                    (64ull << 20)

struct nbd_server_opts {
	struct engine *eng;
	struct loop *loop;
	const char *tcp_addr;   /* e.g. "127.0.0.1"; NULL = no TCP listener */
	uint16_t tcp_port;      /* 0 = 10809 */
	const char *unix_path;  /* NULL = no unix socket */
	/* Who may connect to the unix socket (connect needs write permission). */
	mode_t unix_mode;       /* 0 = 0600: only its owner */
	bool unix_set_owner;    /* else it is ours */
	uid_t unix_uid;
	bool unix_set_group;    /* else ours; with mode 0660 its members may attach */
	gid_t unix_gid;
	const struct nbd_tls *tls; /* TLS on TCP (nbd_tls.h), borrowed; NULL = none */
	struct nbd_server_limits limits; /* zero fields take the defaults above */
	/* The node's guard (block.h), borrowed; NULL: a single node. A volume this node
	 * does not own is refused with the guard's sentence; when the node loses one,
	 * its clients' requests end in errors and their connections are closed. */
	struct blk_guard *guard;
};

/* Binds and listens. -EINVAL for limits out of range (a per-source bound above its
 * total, request_mem below NBD_MIN_REQUEST_MEM), -EADDRINUSE etc. (logged with the
 * address). A TCP address
 * that is not loopback without TLS required is served, with a warning: anyone
 * who reaches it can read and write every volume. */
int nbd_server_create(const struct nbd_server_opts *opts, struct nbd_server **out);
/* Closes every connection (their in-flight requests finish first) and the
 * listeners, and closes the volumes it opened. NULL ok. */
void nbd_server_destroy(struct nbd_server *srv);

/* Is the volume exported to some client right now? (the CLI refuses to delete it) */
bool nbd_server_volume_attached(const struct nbd_server *srv, const char *name);

/* Bound TCP port (useful with tcp_port = a fixed test port). 0 if no TCP. */
uint16_t nbd_server_tcp_port(const struct nbd_server *srv);

#endif
