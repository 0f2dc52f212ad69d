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

struct engine;
struct loop;
struct nbd_server;
struct nbd_tls;

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
	unsigned max_connections; /* 0 = 256 */
	unsigned handshake_timeout_ms; /* a client not in transmission by then is
					  disconnected; 0 = 30000 */
};

/* Binds and listens. -EADDRINUSE etc. (logged with the address). A TCP address
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
