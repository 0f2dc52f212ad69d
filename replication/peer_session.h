/* replication/peer_session.h — the cluster secret, and one peer connection's
 * handshake and frame authentication, without any I/O.
 *
 * A session turns whole frames from the peer into messages and messages into frames;
 * replication/peer.c moves the bytes. Both peers prove that they hold the cluster
 * secret over fresh nonces of both sides, derive one key per direction from both
 * nonces, and then MAC every frame with that key and a per-direction frame counter
 * that is never sent: a replayed, reordered, dropped or altered frame fails its MAC.
 * docs/peer-protocol.md, "Handshake", gives the messages and the computations.
 *
 *   client                                  server
 *   HELLO(node, instance, nonce_c)    ->
 *                                     <-    CHALLENGE(node, instance, nonce_s, proof_s)
 *   AUTH(proof_c)                     ->    (checks proof_c)
 *                                     <-    AUTH_OK  (the first MACed frame)
 *   session frames, each MACed, both ways
 *
 * Nothing but these four messages is accepted before authentication, and nothing is
 * handed to the caller before it: a peer without the secret can make a server do no
 * more than send one CHALLENGE. Any refusal (peer_session_frame_len or _input
 * returning <0) ends the session: the connection must close.
 *
 * Threading: a session belongs to one thread. Secrets are read-only once loaded.
 */
#ifndef QUILL_REPLICATION_PEER_SESSION_H
#define QUILL_REPLICATION_PEER_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "replication/peer_proto.h"

#define PEER_SECRET_BYTES 32u

/* ---- the cluster secret: 32 random bytes, as 64 hex digits in a file of mode 0600 ---- */

struct peer_secret;

/* Reads the secret of path. Refuses (and logs why, naming the file) anything but a
 * regular file of mode 0600 (-EPERM) and any content but 64 hex digits and an optional
 * newline (-EINVAL); other errors of open/read as -errno. */
int peer_secret_load(const char *path, struct peer_secret **out);
/* Creates path (which must not exist: -EEXIST) with a new random secret, mode 0600. */
int peer_secret_create(const char *path);
int peer_secret_from_bytes(const uint8_t key[PEER_SECRET_BYTES], struct peer_secret **out);
void peer_secret_destroy(struct peer_secret *sec); /* NULL ok; wipes the key */

/* ---- byte buffers the session appends frames to ---- */

struct peer_buf {
	uint8_t *data;
	size_t len, cap;
};

int peer_buf_reserve(struct peer_buf *b, size_t more);
int peer_buf_append(struct peer_buf *b, const void *data, size_t n);
void peer_buf_consume(struct peer_buf *b, size_t n); /* drops the first n bytes */
void peer_buf_free(struct peer_buf *b);

/* ---- sessions ---- */

enum peer_role { PEER_CLIENT, PEER_SERVER };

struct peer_session_opts {
	enum peer_role role;
	const struct peer_secret *secret; /* borrowed: outlives the session */
	uint64_t node_id;                 /* ours, sent in HELLO / CHALLENGE (0: none) */
	const uint8_t *instance;          /* PEER_INSTANCE_BYTES, random per process: a
					     HELLO or CHALLENGE carrying it is our own,
					     reflected, and refused */
};

struct peer_session;

/* A frame of an authenticated session, received. payload points into the frame given
 * to peer_session_input() and lives as long as it. */
struct peer_frame {
	struct peer_hdr hdr;
	const uint8_t *payload;
};

int peer_session_create(const struct peer_session_opts *opts, struct peer_session **out);
void peer_session_destroy(struct peer_session *s); /* NULL ok; wipes the keys */

/* Authenticated both ways: session frames may flow. */
bool peer_session_is_open(const struct peer_session *s);
/* The node id the peer gave in its HELLO or CHALLENGE (0 before). */
uint64_t peer_session_peer_node(const struct peer_session *s);

/* Client: appends the HELLO that starts the handshake (once, first). */
int peer_session_hello(struct peer_session *s, struct peer_buf *out);

/* The length of the frame at the head of buf (len bytes received so far): 0 in
 * *frame_len while fewer than a header's bytes are there; else the header is checked
 * for what the session's state allows (op, flags, payload bounds) and *frame_len is the
 * whole frame's length (at most PEER_HDR_BYTES + PEER_PAYLOAD_MAX + PEER_MAC_BYTES).
 * Returns 0, or <0 with *why (static text) for the log: the connection must close. */
int peer_session_frame_len(struct peer_session *s, const void *buf, size_t len,
			   size_t *frame_len, const char **why);

/* One whole frame (as peer_session_frame_len measured it). A handshake frame is
 * consumed and its answer, if any, appended to out: returns 0. A session frame whose
 * CRCs and MAC hold is returned in *msg: returns 1. Returns <0 with *why on any
 * refusal (-EILSEQ a CRC, -EACCES a proof or MAC, -EPROTO an unexpected message): the
 * connection must close. */
int peer_session_input(struct peer_session *s, const void *frame, size_t len,
		       struct peer_frame *msg, struct peer_buf *out, const char **why);

/* Appends one session frame: h's op, request_id, volume_id, epoch and payload_len
 * (payload: that many bytes) with its CRCs and MAC. -ENOTCONN before the session is
 * open (an ERROR may still go out after a refusal, once keys exist: it says why),
 * -EMSGSIZE beyond the op's bound (-EINVAL below it), -EOPNOTSUPP for an op this
 * version lacks or one of the handshake. */
int peer_session_send(struct peer_session *s, const struct peer_hdr *h, const void *payload,
		      struct peer_buf *out);
/* The same with the payload in pieces, a head and data (h->payload_len is ignored:
 * their sum), copied once, into out. */
int peer_session_sendv(struct peer_session *s, const struct peer_hdr *h, const void *head,
		       size_t head_len, const struct iovec *data, int datacnt,
		       struct peer_buf *out);

#endif
