/* replication/peer_proto.h — the peer protocol's wire format (quill node to node).
 *
 * Spec: docs/peer-protocol.md. Every field is little-endian. The packed structs
 * document the layouts and pin their sizes; code never casts a buffer to them: the
 * decoders read fields at their offsets (offsetof) and check every length and field
 * first, the encoders write them the same way. Decoders treat the peer as hostile.
 *
 * A frame is a 48-byte header, payload_len bytes of payload, and, once the session is
 * authenticated (flag PEER_F_MAC), a 16-byte MAC (peer_session.h computes it):
 *
 *   | peer_frame_hdr (48) | payload (payload_len) | MAC (16, with PEER_F_MAC) |
 *
 * hdr_crc is the CRC32C of the header's first 44 bytes; payload_crc that of the
 * payload (0 bytes: 0). Every frame names a request id (a reply carries its
 * request's), a volume id and an epoch, so that every replication message can be
 * fenced; frames that are about no volume carry 0 and 0.
 *
 * Errors of the decoders: -EINVAL (shorter than its layout, or a payload length the
 * op does not allow below), -EPROTO (not this protocol, a reserved field or flag set),
 * -EPROTONOSUPPORT (another version of it), -EOPNOTSUPP (an op no one implements), -EMSGSIZE (a payload longer than
 * the op allows), -EILSEQ (a CRC mismatch).
 */
#ifndef QUILL_REPLICATION_PEER_PROTO_H
#define QUILL_REPLICATION_PEER_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PEER_PACKED __attribute__((packed))

#define PEER_MAGIC   UINT32_C(0x52455051) /* "QPER" in byte order on the wire */
#define PEER_VERSION 1u

/* Header flags; any other bit set is refused. */
#define PEER_F_MAC (1u << 0) /* a MAC follows the payload: every frame after the handshake */

#define PEER_MAC_BYTES   16u
#define PEER_NONCE_BYTES 32u
#define PEER_PROOF_BYTES 32u
#define PEER_INSTANCE_BYTES 16u

/* The largest payload of any op (a segment append of a batch to come); each op has
 * its own, smaller or equal, bound (peer_op_payload_max). */
#define PEER_PAYLOAD_MAX (16u << 20)
#define PEER_PING_MAX    4096u
#define PEER_ERROR_MSG_MAX 256u

/* ---- ops (8 bits). Bit 7 marks a reply; a reply carries its request's id. ---- */
#define PEER_OP_REPLY 0x80u
enum peer_op {
	/* handshake (docs/peer-protocol.md, "Handshake"): only before authentication */
	PEER_OP_HELLO     = 0x01, /* client: peer_hello */
	PEER_OP_CHALLENGE = 0x81, /* server: peer_challenge */
	PEER_OP_AUTH      = 0x02, /* client: peer_auth */
	PEER_OP_AUTH_OK   = 0x82, /* server, the first MACed frame: empty */
	/* session: only after authentication */
	PEER_OP_PING      = 0x10, /* 0..PEER_PING_MAX bytes, echoed by PONG */
	PEER_OP_PONG      = 0x90,
	PEER_OP_ERROR     = 0xff, /* a refusal: peer_error (+ message), then the sender closes */
	/* Reserved for the segment ops (issue 12), numbered now, implemented by no one
	 * yet: each is an unknown op (-EOPNOTSUPP) until its handler exists. */
	PEER_OP_SEG_OPEN    = 0x20,
	PEER_OP_SEG_APPEND  = 0x21,
	PEER_OP_SEG_READ    = 0x22,
	PEER_OP_SEG_SEAL    = 0x23,
	PEER_OP_SEG_DELETE  = 0x24,
	PEER_OP_EPOCH_RAISE = 0x25,
};

/* ---- layouts ---- */

struct peer_frame_hdr {
	uint32_t magic;       /* PEER_MAGIC */
	uint8_t version;      /* PEER_VERSION */
	uint8_t op;           /* enum peer_op */
	uint16_t flags;       /* PEER_F_* */
	uint32_t payload_len; /* <= the op's maximum */
	uint32_t payload_crc; /* CRC32C of the payload */
	uint64_t request_id;  /* chosen by the requester; echoed by the reply */
	uint64_t volume_id;   /* the volume a message is about (0: none) */
	uint64_t epoch;       /* the volume's epoch at the sender (0: none) */
	uint32_t reserved;    /* 0 */
	uint32_t hdr_crc;     /* CRC32C of the 44 bytes above */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_frame_hdr) == 48, "peer frame header is 48 bytes");
_Static_assert(offsetof(struct peer_frame_hdr, request_id) == 16, "request_id at 16");
_Static_assert(offsetof(struct peer_frame_hdr, hdr_crc) == 44, "hdr_crc last");

#define PEER_HDR_BYTES sizeof(struct peer_frame_hdr)

/* HELLO: the client's identity and fresh nonce. */
struct peer_hello {
	uint64_t node_id;                      /* the cluster's node id (0: not in one) */
	uint8_t instance[PEER_INSTANCE_BYTES]; /* random per process: refuses itself */
	uint8_t nonce[PEER_NONCE_BYTES];       /* random per connection */
	uint32_t features;                     /* 0 in version 1 */
	uint32_t reserved;                     /* 0 */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_hello) == 64, "HELLO payload is 64 bytes");

/* CHALLENGE: the server's identity, its fresh nonce and its proof of the secret over
 * both nonces (the proof is last; it covers the bytes before it). */
struct peer_challenge {
	uint64_t node_id;
	uint8_t instance[PEER_INSTANCE_BYTES];
	uint8_t nonce[PEER_NONCE_BYTES];
	uint32_t features;
	uint32_t reserved;
	uint8_t proof[PEER_PROOF_BYTES];
} PEER_PACKED;
_Static_assert(sizeof(struct peer_challenge) == 96, "CHALLENGE payload is 96 bytes");
_Static_assert(offsetof(struct peer_challenge, proof) == 64, "proof after the body");

/* AUTH: the client's proof. */
struct peer_auth {
	uint8_t proof[PEER_PROOF_BYTES];
} PEER_PACKED;
_Static_assert(sizeof(struct peer_auth) == 32, "AUTH payload is 32 bytes");

/* ERROR: why the sender refuses; msg_len bytes of text (no NUL) follow. */
struct peer_error {
	uint32_t err;      /* a positive Linux errno */
	uint16_t msg_len;  /* <= PEER_ERROR_MSG_MAX */
	uint16_t reserved; /* 0 */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_error) == 8, "ERROR payload head is 8 bytes");

/* ---- byte order ---- */

static inline void peer_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void peer_put32(uint8_t *p, uint32_t v)
{
	peer_put16(p, (uint16_t)v);
	peer_put16(p + 2, (uint16_t)(v >> 16));
}

static inline void peer_put64(uint8_t *p, uint64_t v)
{
	peer_put32(p, (uint32_t)v);
	peer_put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t peer_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static inline uint32_t peer_get32(const uint8_t *p)
{
	return peer_get16(p) | (uint32_t)peer_get16(p + 2) << 16;
}

static inline uint64_t peer_get64(const uint8_t *p)
{
	return peer_get32(p) | (uint64_t)peer_get32(p + 4) << 32;
}

/* ---- decoded forms (host order) ---- */

struct peer_hdr {
	uint8_t op;
	uint16_t flags;
	uint32_t payload_len;
	uint32_t payload_crc;
	uint64_t request_id;
	uint64_t volume_id;
	uint64_t epoch;
};

struct peer_hello_msg {
	uint64_t node_id;
	uint8_t instance[PEER_INSTANCE_BYTES];
	uint8_t nonce[PEER_NONCE_BYTES];
};

struct peer_challenge_msg {
	uint64_t node_id;
	uint8_t instance[PEER_INSTANCE_BYTES];
	uint8_t nonce[PEER_NONCE_BYTES];
	uint8_t proof[PEER_PROOF_BYTES];
};

struct peer_error_msg {
	int err;         /* positive errno */
	const char *msg; /* not NUL-terminated; points into the payload */
	uint16_t msg_len;
};

/* ---- ops ---- */

/* Whether op is one this version implements; its name ("op 0x21" style for others,
 * in a static buffer: for logs of the loop's thread). */
bool peer_op_known(uint8_t op);
const char *peer_op_name(uint8_t op);
/* The payload bounds of a known op. */
void peer_op_payload_bounds(uint8_t op, uint32_t *min, uint32_t *max);

/* ---- frames ---- */

/* The bytes a frame with this header takes on the wire (header, payload, MAC). */
size_t peer_frame_len(const struct peer_hdr *h);

/* Decodes and checks a header: layout, magic, version, hdr_crc, flags, reserved, the
 * op and its payload bounds. Errors as above. */
int peer_hdr_decode(const void *buf, size_t len, struct peer_hdr *out);
/* Writes the 48-byte header of h (its payload_crc as given) with its hdr_crc. */
void peer_hdr_encode(const struct peer_hdr *h, void *buf);
/* 0 if the payload's CRC32C is h->payload_crc, else -EILSEQ. */
int peer_payload_check(const struct peer_hdr *h, const void *payload);

/* ---- payloads: decoders check every length and reserved field ---- */

int peer_hello_decode(const void *buf, size_t len, struct peer_hello_msg *out);
void peer_hello_encode(const struct peer_hello_msg *m, void *buf); /* 64 bytes */
int peer_challenge_decode(const void *buf, size_t len, struct peer_challenge_msg *out);
void peer_challenge_encode(const struct peer_challenge_msg *m, void *buf); /* 96 bytes */
int peer_error_decode(const void *buf, size_t len, struct peer_error_msg *out);
/* Writes an ERROR payload (msg cut at PEER_ERROR_MSG_MAX) into buf of at least
 * sizeof(struct peer_error) + PEER_ERROR_MSG_MAX bytes; returns its length. */
size_t peer_error_encode(int err, const char *msg, void *buf);

#endif
