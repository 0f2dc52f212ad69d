/* nbd/nbd_internal.h — what server.c (listeners, connections, socket I/O),
 * handshake.c (option haggling) and requests.c (transmission phase) share.
 *
 * Ownership: the server owns its exports and connections; a connection holds a
 * reference on the export it attached to; a request belongs to its connection and
 * keeps it alive (a closed connection is freed when its last request is). Everything
 * runs on the loop's thread, which is also the engine's.
 */
#ifndef QUILL_NBD_NBD_INTERNAL_H
#define QUILL_NBD_NBD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "block/block.h"
#include "common/loop.h"
#include "nbd/nbd_proto.h"
#include "nbd/nbd_server.h"

#define NBD_LOG "nbd"

#define NBD_INBUF_SIZE       (128u * 1024)  /* > NBD_MAX_OPTION_LEN + a header */
#define NBD_CONN_MEM_MAX     (64u << 20)    /* stop reading a socket above this */
#define NBD_HS_OUT_MAX       (1u << 20)     /* handshake replies queued, unsent */
#define NBD_STATUS_SCAN_MAX  (1ull << 30)   /* bytes one BLOCK_STATUS looks at */
#define NBD_STATUS_MAX_DESC  1024u          /* descriptors in one reply */
#define NBD_OUT_HDR_MAX      48u
#define NBD_IOV_MAX          64u            /* pieces of output in one send */
/* A plain connection's receive in the loop's ring (transmission phase): at most this
 * much per completion, so that it always fits beside a partial message in the input
 * buffer (it goes in only while it does) */
#define NBD_RING_RECV_SIZE   (NBD_INBUF_SIZE / 2)
/* Requests up to this size are "small": they may use the last quarter of the
 * server's request memory, which large ones may not, so that a few clients that
 * stall in large WRITEs cannot hold up everybody's small I/O. */
#define NBD_MEM_SMALL        (1u << 20)

struct loop_watch;
struct loop_timer;
struct loop_task;
struct nbd_conn;
struct nbd_req;
struct nbd_tls_session;
struct nbd_source;
struct sockaddr_storage;

/* Which limit a connection counts against (limits.c). */
enum nbd_slot { NBD_SLOT_NONE, NBD_SLOT_HANDSHAKE, NBD_SLOT_CLIENT };

/* One export = one open engine volume (or snapshot, "VOL@SNAP", read-only), shared
 * by the connections attached to it. */
struct nbd_export {
	struct nbd_export *next;
	struct nbd_server *srv;
	char name[VOLSPEC_MAX + 1];
	struct blk_dev *dev;             /* the block layer does range checks, RMW, locks */
	uint64_t size;
	bool readonly;                   /* a snapshot: writes, trims, zeroes get EPERM */
	unsigned refs;                   /* attached connections */
	struct loop_timer *close_timer;  /* pending close once refs reached 0 */
};

/* A message queued on a connection's socket: a header (and small payload) copied
 * into hdr, then optional data owned by someone else. */
struct nbd_out {
	struct nbd_out *next;
	struct nbd_req *req;       /* freed once sent (data points into it), or NULL */
	void *owned;               /* free()d once sent */
	bool heap;                 /* this nbd_out was malloc'd (not embedded in a req) */
	uint32_t hdr_len;
	uint8_t hdr[NBD_OUT_HDR_MAX];
	const uint8_t *data;
	size_t data_len;
	size_t sent;               /* bytes of hdr + data written */
};

enum nbd_conn_state {
	NBD_CS_CLIENT_FLAGS,  /* greeting sent, waiting for the client's 32-bit flags */
	NBD_CS_OPT_HDR,       /* waiting for an option header */
	NBD_CS_OPT_DATA,      /* waiting for opt_len bytes of option data */
	NBD_CS_OPT_SKIP,      /* discarding too-long option data, then ERR_TOO_BIG */
	NBD_CS_TLS_ACK,       /* STARTTLS accepted: its ACK goes out in plain, no input */
	NBD_CS_TLS_HANDSHAKE, /* the TLS handshake runs, then OPT_HDR again (tls.c) */
	NBD_CS_REQ_HDR,       /* transmission: waiting for a request header */
	NBD_CS_REQ_PAYLOAD,   /* receiving a WRITE payload into cur */
	NBD_CS_DRAIN,         /* no more input: close once requests and output are done */
	NBD_CS_DEAD,          /* socket closed; freed when the last request is */
};

struct nbd_conn {
	struct nbd_conn *prev, *next;    /* the server's list */
	struct nbd_server *srv;
	int fd;
	struct loop_watch *watch;
	unsigned watch_events;
	enum nbd_conn_state state;
	char peer[64];                   /* for logs */
	unsigned busy;                   /* inside a callback: do not free */
	bool tcp;                        /* TLS is offered on TCP connections only */
	struct nbd_tls_session *tls;     /* after STARTTLS: every byte goes through it */
	struct loop_timer *kick;         /* input waits in the TLS session, not the socket */
	struct loop_task *send_task;     /* sends queued output before the loop sleeps */
	/* A plain connection in transmission talks through the loop's ring (server.c,
	 * "Plain transmission"): its input arrives as ring_recv's completions and its
	 * output goes as ring_send, one SENDMSG made in the system call that sleeps */
	struct loop_recv *ring_recv;     /* NULL: the watch reads */
	bool ring_off;                   /* the loop keeps no receives: the watch reads */
	struct loop_send ring_send;      /* queued: the loop makes it (or made it: done) */
	struct iovec ring_iov[NBD_IOV_MAX]; /* what ring_send gathers, until its fn */
	bool tx_full;                    /* the socket took less than was sent: wait for
					    LOOP_WRITE before the next ring_send */

	/* limits.c: the slot it holds, and when the client last made progress */
	struct nbd_source *src;
	enum nbd_slot slot;
	uint64_t rx_ms;                  /* last complete handshake message, or last
					    bytes received in transmission */
	uint64_t tx_ms;                  /* output queued or last bytes sent */
	struct nbd_conn *mem_next;       /* the server's queue of memory waiters */
	bool mem_waiting;                /* in that queue: not parsing */
	bool mem_granted;                /* taken off it: resumes from a timer */
	size_t mem_reserved;             /* granted to its next request */

	/* negotiated */
	bool no_zeroes;
	bool structured;
	bool meta_alloc;                 /* base:allocation selected */
	char meta_export[VOLSPEC_MAX + 1]; /* the export it was selected for */
	struct nbd_export *exp;          /* after GO / EXPORT_NAME */
	uint16_t tx_flags;

	/* input */
	uint8_t *in;                     /* NBD_INBUF_SIZE */
	size_t in_start, in_end;
	struct nbd_opt opt;              /* option being received */
	uint64_t skip_left;
	struct nbd_req *cur;             /* WRITE whose payload is arriving */
	size_t payload_got;

	/* output */
	struct nbd_out *out_head, *out_tail;
	size_t hs_out_bytes;             /* handshake bytes queued */

	/* accounting */
	size_t mem;                      /* request buffers and structs held */
	size_t mem_need;                 /* what the request that paused us needs */
	unsigned nreqs;                  /* requests alive (running or replying) */
	bool paused;                     /* over NBD_CONN_MEM_MAX: not parsing */
	/* attach anywhere (handshake.c): a GO / EXPORT_NAME of a volume no node owns
	 * waits, unparsed, while the node claims it, then is read again */
	bool claim_wait;
	bool claim_retry;                /* the option read again: claims no more */
};

struct nbd_server {
	struct engine *eng;
	struct loop *lp;
	const struct nbd_tls *tls;       /* NULL: no TLS */
	int tcp_fd, unix_fd;
	struct loop_watch *tcp_watch, *unix_watch;
	uint16_t tcp_port;
	char unix_path[108];
	struct nbd_server_limits lim;    /* defaults filled in */
	unsigned nconns;                 /* including closed ones with requests alive */
	struct nbd_conn *conns;
	/* limits.c */
	struct nbd_source *sources;      /* sources holding a slot */
	unsigned nhandshakes, nclients;  /* slots held */
	uint64_t mem;                    /* request memory held (sum of conn->mem) */
	uint64_t mem_reserved;           /* granted to waiters, not yet taken */
	struct nbd_memq {                /* FIFOs of connections waiting for memory: */
		struct nbd_conn *head, *tail;
	} memq[2];                       /* [0] small requests, [1] large ones */
	struct loop_timer *sweep_timer;  /* timeouts */
	struct loop_timer *wake_timer;   /* resumes granted waiters */
	struct nbd_export *exports;
	struct blk_guard *guard;         /* NULL: a single node */
	bool shutting_down;
};

/* ---- server.c ---- */
/* Queues a message, sent before the loop next sleeps (with whatever else was queued
 * by then: one sendmsg for a batch of replies). Never writes to the socket itself
 * (its callers may be deep in engine callbacks). LOOP_WRITE is asked for only when
 * the socket is full. */
void nbd_conn_queue(struct nbd_conn *c, struct nbd_out *o);
/* Closes the socket (logging why at debug level if reason), drops queued output. */
void nbd_conn_close(struct nbd_conn *c, const char *reason);
/* Recomputes the loop interest (read unless paused or draining, write if output). */
void nbd_conn_update_watch(struct nbd_conn *c);
/* A request's buffers went away: drops mem; frees a dead connection at its last. */
void nbd_conn_req_gone(struct nbd_conn *c, size_t mem);

/* Finds or opens the export of a volume or snapshot, taking a reference. -ENOENT,
 * -EBUSY... */
int nbd_export_get(struct nbd_server *srv, const char *name, struct nbd_export **out);
/* What an export would be, without opening it (NBD_OPT_INFO, meta contexts): its size,
 * whether it is read-only and (if sector_size is not NULL) its volume's logical sector
 * size. -ENOENT, -ESHUTDOWN... */
int nbd_export_probe(struct nbd_server *srv, const char *name, uint64_t *size, bool *readonly,
		     uint32_t *sector_size);
void nbd_export_put(struct nbd_export *exp);
/* Names the export's attached clients as its volume's holder (blk_set_holder), for
 * the refusals others get and `quill volume info`; after each attach and detach. */
void nbd_export_describe(struct nbd_export *exp);

/* Is the address a loopback one (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104)? Listening
 * anywhere else without TLS gets a warning. */
bool nbd_addr_is_loopback(const struct sockaddr *sa);
/* ---- server.c, for limits.c ---- */
/* Parses what is buffered and re-arms the watch, as after an event (a waiter that
 * was granted memory). */
void nbd_conn_resume(struct nbd_conn *c);

/* ---- limits.c ---- */
/* Validates opts->limits and fills srv->lim with defaults. -EINVAL (logged). */
int nbd_limits_init(struct nbd_server *srv, const struct nbd_server_limits *lim);
/* Starts the timeout sweep. */
int nbd_limits_start(struct nbd_server *srv);
/* Cancels the timers (before the server goes). */
void nbd_limits_stop(struct nbd_server *srv);
/* A new connection (its peer's address in ss; the uid of a unix peer comes from
 * c->fd) takes a handshake slot, closing the handshake idle for longest if a bound
 * is reached. -ENOMEM. */
int nbd_limits_accept(struct nbd_conn *c, const struct sockaddr_storage *ss);
/* The handshake slot becomes a client slot (GO, EXPORT_NAME); -EUSERS with a reason
 * in msg if a client bound is reached (the connection keeps its handshake slot). */
int nbd_limits_attach(struct nbd_conn *c, char *msg, size_t msglen);
/* Releases c's slot and source (the socket closes). */
void nbd_limits_release(struct nbd_conn *c);
/* May c's next request take cost bytes now? If not, c is queued (and paused) until
 * memory is free for it in turn. True once granted or when it fits. */
bool nbd_mem_admit(struct nbd_conn *c, size_t cost);
/* Request memory came (delta > 0) or went (< 0); going wakes waiters in turn. */
void nbd_mem_charge(struct nbd_server *srv, int64_t delta);

/* ---- handshake.c ---- */
/* Queues the greeting, enters NBD_CS_CLIENT_FLAGS. */
void nbd_hs_start(struct nbd_conn *c);
/* Consumes handshake input from c->in. Returns false when it needs more bytes or
 * the state left the handshake. */
bool nbd_hs_step(struct nbd_conn *c);
/* The connection closes: a claim it waits for calls back no more. */
void nbd_hs_cancel(struct nbd_conn *c);
/* The transmission flags of an export (read-only or not) for this connection. */
uint16_t nbd_hs_tx_flags(const struct nbd_conn *c, bool readonly);

/* ---- requests.c ---- */
/* Consumes transmission input from c->in: headers, payload bytes. Returns false
 * when it needs more bytes, paused, or the state changed away. */
bool nbd_tx_step(struct nbd_conn *c);
/* Where a payload being received directly should go; 0 if none. */
size_t nbd_tx_payload_window(struct nbd_conn *c, uint8_t **dst);
/* n bytes were received into the window. */
void nbd_tx_payload_got(struct nbd_conn *c, size_t n);
/* Frees a request (after its reply was sent or dropped). */
void nbd_req_free(struct nbd_req *r);

/* ---- tls.c: the connection's transport ---- */
/* recv()/sendmsg() on c->fd, or through its TLS session: same contract (bytes, 0 at
 * the end of the stream, -1 and errno; EAGAIN; a short count means the socket has no
 * more / is full for now). A sent byte is the transport's: it goes out, or the
 * connection fails. */
ssize_t nbd_conn_recv(struct nbd_conn *c, void *buf, size_t len);
ssize_t nbd_conn_send(struct nbd_conn *c, const struct iovec *iov, int iovcnt);
/* Decrypted input waits in the session (the socket will not wake us for it). */
bool nbd_conn_recv_pending(const struct nbd_conn *c);
/* Output taken by nbd_conn_send() still waits for the socket. */
bool nbd_conn_send_pending(const struct nbd_conn *c);

/* Sets up c->tls for c->fd with the server's credentials, once the ACK to
 * NBD_OPT_STARTTLS has gone out. -ENOMEM. */
int nbd_tls_session_start(struct nbd_conn *c);
/* Goes on with the handshake: 0 when done (and the client verified, if asked),
 * -EAGAIN to wait for nbd_tls_session_events(), else failed (*why says why). */
int nbd_tls_session_handshake(struct nbd_conn *c, const char **why);
unsigned nbd_tls_session_events(const struct nbd_conn *c);
/* Sends close_notify if it can (never waits), frees c->tls. NULL c->tls ok. */
void nbd_tls_session_free(struct nbd_conn *c);

#endif
