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
 * payload (0 bytes: 0) in a frame without a MAC, and 0 in a frame with one (the MAC
 * covers the payload; version 4). Every frame names a request id (a reply carries its
 * request's), a volume id and an epoch, so that every replication message can be
 * fenced; frames that are about no volume carry 0 and 0.
 *
 * Errors of the decoders: -EINVAL (shorter than its layout, or a payload length the
 * op does not allow below), -EPROTO (not this protocol, a reserved field or flag set),
 * -EPROTONOSUPPORT (another version of it), -EOPNOTSUPP (an op no one implements),
 * -EMSGSIZE (a payload or a count larger than the op allows), -EILSEQ (a CRC mismatch).
 * A request that decodes but asks for a run its op does not allow is answered with
 * the error instead (peer_seg_req_check): a frame is well formed or not on its own.
 */
#ifndef QUILL_REPLICATION_PEER_PROTO_H
#define QUILL_REPLICATION_PEER_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PEER_PACKED __attribute__((packed))

#define PEER_MAGIC   UINT32_C(0x52455051) /* "QPER" in byte order on the wire */
#define PEER_VERSION 4u
#define PEER_VERSION_TEXT "4" /* for messages */

/* Header flags; any other bit set is refused. */
#define PEER_F_MAC (1u << 0) /* a MAC follows the payload: every frame after the handshake */

#define PEER_MAC_BYTES   16u
#define PEER_NONCE_BYTES 32u
#define PEER_PROOF_BYTES 32u
#define PEER_INSTANCE_BYTES 16u

/* The largest payload of any op (SEG_APPEND: a batch); each op has its own, smaller
 * or equal, bound (peer_op_payload_bounds). */
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
	/* segment ops (docs/replication.md), session only: an owner asks a holder. The
	 * header's volume_id is the family uid, its epoch the sender's epoch of that
	 * family. Each is answered by its op | PEER_OP_REPLY with the same request_id,
	 * whose payload starts with peer_seg_result. */
	PEER_OP_SEG_OPEN    = 0x20, /* peer_seg_open */
	PEER_OP_SEG_APPEND  = 0x21, /* peer_seg_append, then nblocks blocks of data */
	PEER_OP_SEG_READ    = 0x22, /* peer_seg_read; the reply's data: the blocks */
	PEER_OP_SEG_SEAL    = 0x23, /* peer_seg_seal */
	PEER_OP_SEG_DELETE  = 0x24, /* peer_seg_sno */
	PEER_OP_EPOCH_RAISE = 0x25, /* empty: the header's epoch */
	PEER_OP_SEG_FLUSH   = 0x26, /* empty: flushes the holder's store */
	PEER_OP_SEG_STAT    = 0x27, /* peer_seg_sno; the reply's data: peer_seg_stat */
	/* A clone on another node reads through a snapshot of this node's family
	 * (docs/replication.md, "Snapshots and clones across owners"): answered by the
	 * family's owner from its own map. It travels as a segment op (same request
	 * and reply machinery); the header's epoch is 0 (no fence: reads only). */
	PEER_OP_LAYER_READ  = 0x28, /* peer_layer_read; the reply's data: nblocks CRC32Cs,
				       then the blocks */
	/* A clone made on another node learns which layer a snapshot is, by name, from
	 * the node that runs its family; header volume_id 0, epoch 0. */
	PEER_OP_LAYER_FIND  = 0x29, /* peer_layer_find; the reply's: peer_layer_found */
	/* Fragments of an erasure-coded segment (docs/erasure-coding.md): fenced like the
	 * segment ops (the header's volume_id the family uid, its epoch the owner's). */
	PEER_OP_FRAG_PUT    = 0x2a, /* peer_frag_put, then the fragment's image */
	PEER_OP_FRAG_READ   = 0x2b, /* peer_frag_read; the reply's data: nblocks CRC32Cs,
				       then the blocks (as LAYER_READ's) */
	/* What a holder has of a family's segments in a range of numbers, one call for
	 * all of them (a restart's reseal asks each holder once per family, not once
	 * per segment: SEG_STAT stays for one segment). Fenced like SEG_STAT. */
	PEER_OP_SEG_LIST    = 0x2c, /* peer_seg_list; the reply's data: peer_seg_entry
				       each (count in its length) */
	/* Scrub (docs/replication.md, "Scrub"): the holder reads a run of its copy and
	 * checks each block against the CRC32C the owner names for it (from its own
	 * verified copy); only the numbers of the blocks that differ come back, not the
	 * blocks. Fenced like SEG_READ. */
	PEER_OP_SEG_VERIFY  = 0x2d, /* peer_seg_verify, then nblocks CRC32Cs; the reply's
				       data: `length` block numbers (uint32 each) */
	/* Scrub of a fragment (docs/erasure-coding.md, "Scrub of stripes"): the holder
	 * reads its whole fragment and checks it where it is (header, table, every block
	 * against the table); the CRCs of its blocks as they are and the numbers of the
	 * blocks that fail come back, not the blocks. Fenced like FRAG_READ. */
	PEER_OP_FRAG_VERIFY = 0x2e, /* peer_frag_verify; the reply's data: peer_frag_verified,
				       `length` CRC32Cs, then its nbad block numbers */
};
#define PEER_OP_SEG_FIRST PEER_OP_SEG_OPEN
#define PEER_OP_SEG_LAST  PEER_OP_FRAG_VERIFY

/* ---- layouts ---- */

struct peer_frame_hdr {
	uint32_t magic;       /* PEER_MAGIC */
	uint8_t version;      /* PEER_VERSION */
	uint8_t op;           /* enum peer_op */
	uint16_t flags;       /* PEER_F_* */
	uint32_t payload_len; /* <= the op's maximum */
	uint32_t payload_crc; /* CRC32C of the payload; 0 with PEER_F_MAC */
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

/* ---- segment ops: payloads ---- */

#define PEER_SEG_BLOCK 4096u              /* a segment's block: the engine's */
#define PEER_SEG_F_FUA (1u << 0)          /* SEG_APPEND: durable before the reply */
#define PEER_SEG_F_CRCS (1u << 1)         /* SEG_READ, FRAG_READ: nblocks CRC32Cs follow
					     its head;
					     the holder answers -EILSEQ rather than
					     send blocks that do not have them */
#define PEER_SEG_READ_MAX_BLOCKS 1024u    /* 4 MiB per SEG_READ */

/* SEG_OPEN: the holder allocates a slot for (volume_id, sno). */
struct peer_seg_open {
	uint32_t sno;
	uint32_t segment_blocks; /* the owner's segment size: must be the holder's */
	uint64_t reserved;       /* 0 */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_seg_open) == 16, "SEG_OPEN payload is 16 bytes");

/* SEG_APPEND: nblocks * PEER_SEG_BLOCK bytes of data follow, written at `block`
 * (blocks from the segment's start; block 0 is its header). */
struct peer_seg_append {
	uint32_t sno;
	uint32_t block;
	uint32_t nblocks;  /* 1..PEER_SEG_APPEND_MAX_BLOCKS */
	uint32_t flags;    /* PEER_SEG_F_* */
	uint32_t data_crc; /* CRC32C of the data, from the owner's end */
	uint32_t reserved; /* 0 */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_seg_append) == 24, "SEG_APPEND head is 24 bytes");
_Static_assert(offsetof(struct peer_seg_append, data_crc) == 16, "data_crc at 16");

/* The largest append: what fits in the protocol's largest payload after the head. */
#define PEER_SEG_APPEND_MAX_BLOCKS \
	((PEER_PAYLOAD_MAX - (uint32_t)sizeof(struct peer_seg_append)) / PEER_SEG_BLOCK)
_Static_assert(PEER_SEG_APPEND_MAX_BLOCKS == 4095, "16 MiB less the head: 4095 blocks");

/* SEG_READ: nblocks at block; the reply carries them after its result. With
 * PEER_SEG_F_CRCS the head is followed by nblocks little-endian CRC32Cs, one per
 * block (a read-around: the owner's map says what each block must be). */
struct peer_seg_read {
	uint32_t sno;
	uint32_t block;
	uint32_t nblocks;  /* 1..PEER_SEG_READ_MAX_BLOCKS */
	uint32_t flags;    /* 0 or PEER_SEG_F_CRCS (was reserved: 0) */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_seg_read) == 16, "SEG_READ head is 16 bytes");
_Static_assert(offsetof(struct peer_seg_read, flags) == 12, "flags at 12");

/* SEG_SEAL: cut at length blocks, no more appends. */
struct peer_seg_seal {
	uint32_t sno;
	uint32_t length;
} PEER_PACKED;
_Static_assert(sizeof(struct peer_seg_seal) == 8, "SEG_SEAL payload is 8 bytes");

/* SEG_DELETE, SEG_STAT: a segment number, and which of it: the copy of its log, or
 * the fragment of its stripe held there (the word was reserved, 0: a copy). */
#define PEER_SEG_KIND_COPY 0u
#define PEER_SEG_KIND_FRAG 1u
struct peer_seg_sno {
	uint32_t sno;
	uint32_t kind;     /* PEER_SEG_KIND_* */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_seg_sno) == 8, "SEG_DELETE / SEG_STAT payload is 8 bytes");

/* LAYER_READ: nblocks blocks of snapshot layer `layer` (of the header's family) from
 * lba. The reply carries, after peer_seg_result (its length: nblocks), one
 * little-endian CRC32C per block and then the blocks; the reader checks each block
 * against its CRC on arrival (peer_layer_read_check). */
struct peer_layer_read {
	uint64_t layer;    /* the snapshot's layer id (unique across the cluster), not 0 */
	uint64_t lba;      /* in blocks of PEER_SEG_BLOCK */
	uint32_t nblocks;  /* 1..PEER_LAYER_READ_MAX_BLOCKS */
	uint32_t reserved; /* 0 */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_layer_read) == 24, "LAYER_READ payload is 24 bytes");
_Static_assert(offsetof(struct peer_layer_read, nblocks) == 16, "nblocks at 16");
#define PEER_LAYER_READ_MAX_BLOCKS 256u /* 1 MiB per LAYER_READ */

/* LAYER_FIND: the snapshot VOLUME@SNAP by name, each NUL-padded (1..63 bytes of name,
 * a NUL at least after it). Answered -ESTALE by a node that does not run VOLUME's
 * family, -ENOENT when it has no such snapshot. */
#define PEER_LAYER_NAME 64u
struct peer_layer_find {
	char volume[PEER_LAYER_NAME];
	char snap[PEER_LAYER_NAME];
} PEER_PACKED;
_Static_assert(sizeof(struct peer_layer_find) == 128, "LAYER_FIND payload is 128 bytes");

/* LAYER_FIND's reply, on success, after peer_seg_result. */
struct peer_layer_found {
	uint64_t family; /* the snapshot's family uid */
	uint64_t layer;  /* its layer id */
	uint64_t blocks; /* its size in blocks of PEER_SEG_BLOCK */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_layer_found) == 24, "LAYER_FIND reply data is 24 bytes");

/* FRAG_PUT: the image of one fragment (replication/ec_format.h: header block, CRC
 * table, data blocks) follows, exactly image_blocks blocks; the image's header names
 * the segment (family = the frame's volume_id, seq = sno), the code and the index.
 * Written once, whole: the reply comes once it is durable on the holder. */
struct peer_frag_put {
	uint32_t sno;
	uint32_t image_blocks; /* PEER_FRAG_IMAGE_MIN..PEER_FRAG_PUT_MAX_BLOCKS */
	uint64_t reserved;     /* 0 */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_frag_put) == 16, "FRAG_PUT head is 16 bytes");
#define PEER_FRAG_IMAGE_MIN 3u /* a header block, a table block, one data block */
#define PEER_FRAG_PUT_MAX_BLOCKS \
	((PEER_PAYLOAD_MAX - (uint32_t)sizeof(struct peer_frag_put)) / PEER_SEG_BLOCK)
_Static_assert(PEER_FRAG_PUT_MAX_BLOCKS == 4095, "16 MiB less the head: 4095 blocks");

/* FRAG_READ: nblocks data blocks of fragment `index` of segment sno from `block` (in
 * the fragment's data, 0..F-1: not the image's). The holder checks each against the
 * fragment's CRC table before it sends it (-EILSEQ otherwise); -ENOENT when it holds
 * no fragment of sno, or another index; -ERANGE past F. The reply carries, after
 * peer_seg_result (its length: nblocks), one CRC32C per block (the table's) and then
 * the blocks; the reader checks them on arrival (peer_layer_read_check). With
 * PEER_SEG_F_CRCS the head is followed by nblocks little-endian CRC32Cs (the reader's
 * map says what each block must be): the holder checks the blocks against those,
 * without reading its table (one store read, not two), and sends them back. */
struct peer_frag_read {
	uint32_t sno;
	uint32_t block;
	uint32_t nblocks;     /* 1..PEER_FRAG_READ_MAX_BLOCKS */
	uint8_t index;        /* the fragment the reader expects here */
	uint8_t flags;        /* 0 or PEER_SEG_F_CRCS (was reserved: 0) */
	uint8_t reserved[2];  /* 0 */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_frag_read) == 16, "FRAG_READ payload is 16 bytes");
_Static_assert(offsetof(struct peer_frag_read, index) == 12, "index at 12");
_Static_assert(offsetof(struct peer_frag_read, flags) == 13, "flags at 13");
#define PEER_FRAG_READ_MAX_BLOCKS 1024u /* 4 MiB per FRAG_READ */

/* SEG_LIST: the copies held of the header's family with first <= sno <= last. */
struct peer_seg_list {
	uint32_t first;
	uint32_t last;     /* >= first */
	uint64_t reserved; /* 0 */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_seg_list) == 16, "SEG_LIST payload is 16 bytes");

/* SEG_LIST's reply, on success: `length` (peer_seg_result) entries after the result,
 * by ascending sno, at most PEER_SEG_LIST_MAX; a holder with more in the range sends
 * the first PEER_SEG_LIST_MAX and the asker asks again from the last one's sno + 1.
 * An entry is what SEG_STAT would answer for that segment; a segment held in the range
 * but not listed is not held there (what SEG_STAT answers -ENOENT). */
#define PEER_SEG_ENTRY_F_SEALED (1u << 0)
struct peer_seg_entry {
	uint32_t sno;
	uint32_t length;   /* blocks written (open) or the sealed length */
	uint64_t epoch;    /* the epoch the copy was opened or last appended under */
	uint32_t flags;    /* PEER_SEG_ENTRY_F_* */
	uint32_t reserved; /* 0 */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_seg_entry) == 24, "a SEG_LIST entry is 24 bytes");
#define PEER_SEG_LIST_MAX 4096u /* entries per reply: 96 KiB */

/* SEG_VERIFY: nblocks little-endian CRC32Cs follow the head, one per block of the run
 * [block, block + nblocks) of the holder's copy of sno. The reply, on success, carries
 * after peer_seg_result (its length: how many differ, 0..nblocks) the numbers of the
 * blocks whose CRC32C is not the one named, little-endian, strictly ascending, each in
 * the run. A copy shorter than the run: -ERANGE; no copy: -ENOENT. */
struct peer_seg_verify {
	uint32_t sno;
	uint32_t block;
	uint32_t nblocks;  /* 1..PEER_SEG_VERIFY_MAX_BLOCKS */
	uint32_t reserved; /* 0 */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_seg_verify) == 16, "SEG_VERIFY head is 16 bytes");
_Static_assert(offsetof(struct peer_seg_verify, nblocks) == 8, "nblocks at 8");
#define PEER_SEG_VERIFY_MAX_BLOCKS 1024u /* 4 MiB of the copy read per SEG_VERIFY */

/* FRAG_VERIFY: fragment `index` of segment sno, whole. -ENOENT when the holder has no
 * fragment of sno, or another index. */
struct peer_frag_verify {
	uint32_t sno;
	uint8_t index;        /* the fragment the owner expects here */
	uint8_t reserved[3];  /* 0 */
	uint64_t reserved1;   /* 0 */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_frag_verify) == 16, "FRAG_VERIFY payload is 16 bytes");
_Static_assert(offsetof(struct peer_frag_verify, index) == 4, "index at 4");

/* FRAG_VERIFY's reply, on success, after peer_seg_result (its length: F, the
 * fragment's data blocks, 1..PEER_FRAG_PUT_MAX_BLOCKS); then F little-endian CRC32Cs,
 * each of a data block as it is on the holder's disk (not the table's), then nbad
 * block numbers (< F, strictly ascending): the blocks that fail the fragment's table. */
#define PEER_FRAG_V_TABLE_BAD (1u << 0) /* the header or the table fails its own CRC (or
					   does not decode): every block is counted bad */
struct peer_frag_verified {
	uint32_t frag_crc; /* CRC32C of the F data blocks as they are */
	uint32_t nbad;     /* 0..F */
	uint32_t flags;    /* PEER_FRAG_V_* */
	uint32_t reserved; /* 0 */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_frag_verified) == 16, "FRAG_VERIFY reply head is 16 bytes");

/* Every segment op's reply begins with this. */
struct peer_seg_result {
	int32_t result;  /* 0, or a negative Linux errno (-4095..-1) */
	uint32_t length; /* the holder's blocks of that segment after the op (0: none) */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_seg_result) == 8, "a segment reply begins with 8 bytes");

/* SEG_STAT's reply, on success, after peer_seg_result. */
struct peer_seg_stat {
	uint64_t epoch;    /* the epoch the copy was opened or last appended under */
	uint32_t sealed;   /* 0 or 1 */
	uint32_t reserved; /* 0 */
} PEER_PACKED;
_Static_assert(sizeof(struct peer_seg_stat) == 16, "SEG_STAT reply data is 16 bytes");

/* The longest fixed part of a request or a reply (the data is apart). */
#define PEER_SEG_HEAD_MAX 32u
_Static_assert(sizeof(struct peer_seg_result) + sizeof(struct peer_seg_stat) <=
		       PEER_SEG_HEAD_MAX &&
		       sizeof(struct peer_seg_result) + sizeof(struct peer_frag_verified) <=
		       PEER_SEG_HEAD_MAX &&
		       sizeof(struct peer_seg_result) + sizeof(struct peer_layer_found) <=
		       PEER_SEG_HEAD_MAX, "reply heads fit");

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

/* A segment op's request, decoded. Fields an op does not have are 0. */
struct peer_seg_req {
	uint8_t op;              /* PEER_OP_SEG_FIRST .. PEER_OP_SEG_LAST */
	uint32_t sno;
	uint32_t segment_blocks; /* OPEN */
	uint32_t block, nblocks; /* APPEND, READ, VERIFY */
	uint32_t flags;          /* APPEND, READ, FRAG_READ: PEER_SEG_F_* */
	uint32_t data_crc;       /* APPEND */
	uint32_t length;         /* SEAL */
	uint64_t layer, lba;     /* LAYER_READ (nblocks: its count) */
	uint8_t index;           /* FRAG_READ, FRAG_VERIFY */
	uint32_t kind;           /* DELETE, STAT: PEER_SEG_KIND_* */
	uint32_t first, last;    /* LIST: its range of segment numbers */
	char volume[PEER_LAYER_NAME], snap[PEER_LAYER_NAME]; /* LAYER_FIND, NUL-terminated */
	const uint8_t *data;     /* APPEND, FRAG_PUT (nblocks: the image's blocks): nblocks *
				    PEER_SEG_BLOCK bytes, in the payload;
				    READ with PEER_SEG_F_CRCS, FRAG_READ with
				    PEER_SEG_F_CRCS, VERIFY: nblocks CRC32Cs (4
				    bytes each, little-endian: peer_seg_read_crc) */
};

/* A segment op's reply, decoded. */
struct peer_seg_reply {
	int result;          /* 0 or -errno */
	uint32_t length;
	uint64_t epoch;      /* STAT, on success */
	bool sealed;         /* STAT, on success */
	const uint8_t *data; /* READ, LAYER_READ, FRAG_READ on success: nblocks *
				PEER_SEG_BLOCK bytes */
	const uint8_t *crcs; /* LAYER_READ, FRAG_READ on success: nblocks CRC32Cs (4 bytes
				each) */
	uint32_t nblocks;    /* READ, LAYER_READ, FRAG_READ on success */
	uint64_t family, layer, blocks; /* LAYER_FIND on success */
	const uint8_t *entries; /* LIST on success: length peer_seg_entry (peer_seg_entry_get) */
	const uint8_t *bad;     /* VERIFY on success: length block numbers (4 bytes each,
				   peer_seg_verify_bad); FRAG_VERIFY: nbad of them */
	uint32_t frag_crc, nbad, vflags; /* FRAG_VERIFY on success (peer_frag_verified);
					    its block CRCs: crcs, length of them */
};

/* A SEG_LIST reply's entry, decoded. */
struct peer_seg_entry_msg {
	uint32_t sno, length;
	uint64_t epoch;
	bool sealed;
};

/* ---- ops ---- */

/* Whether op is one this version implements; its name ("op 0x29" style for others,
 * in a static buffer: for logs of the loop's thread). */
bool peer_op_known(uint8_t op);
/* Whether a known op belongs to the authenticated session (not the handshake). */
bool peer_op_is_session(uint8_t op);
/* Whether op is a segment op's request, or (peer_op_seg_reply) its reply. */
bool peer_op_seg_request(uint8_t op);
bool peer_op_seg_reply(uint8_t op);
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

/* A segment request's payload (op: a segment op): every length, count, range and
 * reserved field is checked, but for the run a READ or FRAG_READ asks for (that is
 * peer_seg_req_check's); an APPEND's data is the rest of the payload, exactly nblocks
 * blocks (its CRC is peer_seg_data_check's, which the holder answers). An error: the
 * frame is malformed (the receiver closes the connection). */
int peer_seg_req_decode(uint8_t op, const void *buf, size_t len, struct peer_seg_req *out);
/* A request decoded whole that its holder may still not serve: a READ's or FRAG_READ's
 * run of no blocks or one that wraps (-EINVAL), or of more blocks than the op allows
 * (-EMSGSIZE). 0, or the result to answer it with: the connection serves on. */
int peer_seg_req_check(const struct peer_seg_req *r);
/* 0 if an APPEND's data has its data_crc, else -EILSEQ. */
int peer_seg_data_check(const struct peer_seg_req *r);
/* A READ or FRAG_READ with PEER_SEG_F_CRCS: 0 if each of the nblocks blocks at blocks
 * has the CRC32C the request names for it, else -EILSEQ. Without the flag: 0. */
int peer_seg_read_check(const struct peer_seg_req *r, const void *blocks);
/* A VERIFY's blocks (nblocks at `blocks`, read from the copy) against the CRCs it
 * names: the numbers of those that differ go to bad (room for r->nblocks, in the
 * wire's order: little-endian uint32 each); returns how many. */
uint32_t peer_seg_verify_run(const struct peer_seg_req *r, const void *blocks, uint8_t *bad);
/* Number i (< r->length; FRAG_VERIFY: < r->nbad) of a SEG_VERIFY or FRAG_VERIFY reply
 * decoded with success. */
uint32_t peer_seg_verify_bad(const struct peer_seg_reply *r, uint32_t i);
/* Writes r's fixed part (an APPEND's head without its data: the data follows it in the
 * payload) into buf of PEER_SEG_HEAD_MAX bytes (a LAYER_FIND's: of
 * sizeof(struct peer_layer_find)); returns its length (0 for the empty ones). data_crc is written as given (crc32c of the data, the caller's). */
size_t peer_seg_req_encode(const struct peer_seg_req *r, void *buf);
/* A segment reply's payload; op is the request's op or the reply's (bit 7 ignored).
 * A refusal (result < 0) carries nothing after the result; READ carries whole blocks
 * (at most PEER_SEG_READ_MAX_BLOCKS; the caller checks them against what it asked),
 * LAYER_READ length (1..PEER_LAYER_READ_MAX_BLOCKS) CRCs and as many blocks, FRAG_READ
 * the same with up to PEER_FRAG_READ_MAX_BLOCKS, STAT
 * peer_seg_stat, LAYER_FIND peer_layer_found (family and layer not 0), LIST `length`
 * (at most PEER_SEG_LIST_MAX) entries by strictly ascending sno, VERIFY `length` (at
 * most PEER_SEG_VERIFY_MAX_BLOCKS) block numbers strictly ascending, spanning less than
 * PEER_SEG_VERIFY_MAX_BLOCKS; the others nothing. */
int peer_seg_reply_decode(uint8_t op, const void *buf, size_t len, struct peer_seg_reply *out);
/* Writes r's fixed part (result, length, and STAT's peer_seg_stat or LAYER_FIND's
 * peer_layer_found on success) into buf
 * of PEER_SEG_HEAD_MAX bytes; returns its length. READ's blocks follow it,
 * LAYER_READ's and FRAG_READ's CRCs and then their blocks, LIST's entries. */
size_t peer_seg_reply_encode(uint8_t op, const struct peer_seg_reply *r, void *buf);
/* Entry i (< r->length) of a SEG_LIST reply decoded with success (checked by
 * peer_seg_reply_decode: ascending numbers, flags and reserved fields). */
void peer_seg_entry_get(const struct peer_seg_reply *r, uint32_t i,
			struct peer_seg_entry_msg *out);
/* Writes e as a SEG_LIST reply's entry (24 bytes) into buf. */
void peer_seg_entry_encode(const struct peer_seg_entry_msg *e, void *buf);
/* A LAYER_READ or FRAG_READ reply decoded with success: 0 if each of its blocks has the CRC32C the
 * reply names for it, else -EILSEQ. */
int peer_layer_read_check(const struct peer_seg_reply *r);

#endif
