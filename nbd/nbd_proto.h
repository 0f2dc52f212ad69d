/* nbd/nbd_proto.h — the NBD wire format, as the server speaks it.
 *
 * Source: the NBD protocol, doc/proto.md of github.com/NetworkBlockDevice/nbd
 * (fixed newstyle handshake, NBD_OPT_GO/INFO, structured replies, block status).
 * Every field on the wire is big-endian. The packed structs below document the
 * layouts and pin their sizes with _Static_assert; code never casts a buffer to
 * them: the decoders read fields at their offsets (offsetof) with explicit
 * byte-order helpers and check every length first, and the encoders write them
 * the same way. The decoders treat the client as hostile.
 *
 * Handshake (server S, client C):
 *   S: nbd_greeting                         NBDMAGIC, IHAVEOPT, handshake flags
 *   C: nbd_client_flags
 *   C: nbd_option_hdr + data                repeated until GO / EXPORT_NAME / ABORT
 *   S: nbd_option_reply_hdr + data          zero or more per option, ending with
 *                                           NBD_REP_ACK or an NBD_REP_ERR_*
 *   (NBD_OPT_EXPORT_NAME is answered by nbd_export_name_reply instead)
 * Transmission:
 *   C: nbd_request (+ length bytes of payload for NBD_CMD_WRITE)
 *   S: nbd_simple_reply (+ data for a successful READ), or, once structured
 *      replies are negotiated, one or more nbd_structured_reply chunks
 */
#ifndef QUILL_NBD_NBD_PROTO_H
#define QUILL_NBD_NBD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NBD_PACKED __attribute__((packed))

/* ---- magics ---- */
#define NBD_MAGIC                  UINT64_C(0x4e42444d41474943) /* "NBDMAGIC" */
#define NBD_IHAVEOPT               UINT64_C(0x49484156454f5054) /* "IHAVEOPT" */
#define NBD_REP_MAGIC              UINT64_C(0x0003e889045565a9) /* option replies */
#define NBD_REQUEST_MAGIC          UINT32_C(0x25609513)
#define NBD_SIMPLE_REPLY_MAGIC     UINT32_C(0x67446698)
#define NBD_STRUCTURED_REPLY_MAGIC UINT32_C(0x668e33ef)

/* ---- handshake flags (server, 16 bits) ---- */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES      (1u << 1) /* may omit the 124 zeroes of EXPORT_NAME */

/* ---- client flags (32 bits); any other bit: the server drops the connection ---- */
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

/* ---- transmission flags (16 bits, per export) ---- */
#define NBD_FLAG_HAS_FLAGS         (1u << 0)  /* always set */
#define NBD_FLAG_READ_ONLY         (1u << 1)
#define NBD_FLAG_SEND_FLUSH        (1u << 2)
#define NBD_FLAG_SEND_FUA          (1u << 3)
#define NBD_FLAG_ROTATIONAL        (1u << 4)
#define NBD_FLAG_SEND_TRIM         (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF           (1u << 7)  /* only with structured replies */
#define NBD_FLAG_CAN_MULTI_CONN    (1u << 8)
#define NBD_FLAG_SEND_RESIZE       (1u << 9)
#define NBD_FLAG_SEND_CACHE        (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO    (1u << 11)

/* ---- options (NBD_OPT_*, 32 bits) ---- */
#define NBD_OPT_EXPORT_NAME       1u  /* data: name; no error reply possible */
#define NBD_OPT_ABORT             2u  /* reply ACK, then close */
#define NBD_OPT_LIST              3u  /* no data; NBD_REP_SERVER per export, ACK */
#define NBD_OPT_PEEK_EXPORT       4u  /* withdrawn */
#define NBD_OPT_STARTTLS          5u
#define NBD_OPT_INFO              6u  /* data: nbd_info_opt layout; INFO replies, ACK */
#define NBD_OPT_GO                7u  /* as INFO, then enter transmission */
#define NBD_OPT_STRUCTURED_REPLY  8u  /* no data */
#define NBD_OPT_LIST_META_CONTEXT 9u  /* data: nbd_meta_opt layout */
#define NBD_OPT_SET_META_CONTEXT  10u /* data: nbd_meta_opt layout */
#define NBD_OPT_EXTENDED_HEADERS  11u /* not supported (64-bit headers) */

/* ---- option reply types (NBD_REP_*, 32 bits) ---- */
#define NBD_REP_ACK                 1u
#define NBD_REP_SERVER              2u /* u32 name length, name, [description] */
#define NBD_REP_INFO                3u /* u16 NBD_INFO_*, then that info's fields */
#define NBD_REP_META_CONTEXT        4u /* u32 context id, name */
#define NBD_REP_FLAG_ERROR          (1u << 31)
#define NBD_REP_ERR_UNSUP           (NBD_REP_FLAG_ERROR | 1u) /* unknown option */
#define NBD_REP_ERR_POLICY          (NBD_REP_FLAG_ERROR | 2u) /* known, but refused */
#define NBD_REP_ERR_INVALID         (NBD_REP_FLAG_ERROR | 3u) /* syntactically invalid */
#define NBD_REP_ERR_PLATFORM        (NBD_REP_FLAG_ERROR | 4u)
#define NBD_REP_ERR_TLS_REQD        (NBD_REP_FLAG_ERROR | 5u)
#define NBD_REP_ERR_UNKNOWN         (NBD_REP_FLAG_ERROR | 6u) /* no such export */
#define NBD_REP_ERR_SHUTDOWN        (NBD_REP_FLAG_ERROR | 7u)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_FLAG_ERROR | 8u)
#define NBD_REP_ERR_TOO_BIG         (NBD_REP_FLAG_ERROR | 9u) /* option data too long */

/* ---- NBD_REP_INFO types (16 bits) ---- */
#define NBD_INFO_EXPORT      0u /* nbd_info_export; always sent */
#define NBD_INFO_NAME        1u /* the export's name */
#define NBD_INFO_DESCRIPTION 2u
#define NBD_INFO_BLOCK_SIZE  3u /* nbd_info_block_size */

/* ---- commands (NBD_CMD_*, 16 bits) ---- */
#define NBD_CMD_READ         0u
#define NBD_CMD_WRITE        1u /* followed by length bytes of payload */
#define NBD_CMD_DISC         2u /* no reply; finish in-flight requests, close */
#define NBD_CMD_FLUSH        3u /* offset and length are zero */
#define NBD_CMD_TRIM         4u
#define NBD_CMD_CACHE        5u
#define NBD_CMD_WRITE_ZEROES 6u
#define NBD_CMD_BLOCK_STATUS 7u

/* ---- command flags (16 bits) ---- */
#define NBD_CMD_FLAG_FUA       (1u << 0) /* WRITE, TRIM, WRITE_ZEROES (ignored elsewhere) */
#define NBD_CMD_FLAG_NO_HOLE   (1u << 1) /* WRITE_ZEROES */
#define NBD_CMD_FLAG_DF        (1u << 2) /* READ: one content chunk */
#define NBD_CMD_FLAG_REQ_ONE   (1u << 3) /* BLOCK_STATUS: one extent */
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4) /* WRITE_ZEROES: fail if not fast */

/* ---- structured reply flags and types ---- */
#define NBD_REPLY_FLAG_DONE          (1u << 0)
#define NBD_REPLY_TYPE_NONE          0u
#define NBD_REPLY_TYPE_OFFSET_DATA   1u /* u64 offset, data */
#define NBD_REPLY_TYPE_OFFSET_HOLE   2u /* u64 offset, u32 length */
#define NBD_REPLY_TYPE_BLOCK_STATUS  5u /* u32 context id, nbd_block_descriptor... */
#define NBD_REPLY_TYPE_FLAG_ERROR    (1u << 15)
#define NBD_REPLY_TYPE_ERROR         (NBD_REPLY_TYPE_FLAG_ERROR | 1u) /* nbd_sr_error + msg */
#define NBD_REPLY_TYPE_ERROR_OFFSET  (NBD_REPLY_TYPE_FLAG_ERROR | 2u)

/* ---- base:allocation status flags ---- */
#define NBD_STATE_HOLE (1u << 0) /* not allocated */
#define NBD_STATE_ZERO (1u << 1) /* reads as zeroes */
#define NBD_META_BASE_ALLOCATION "base:allocation"

/* ---- error values on the wire ---- */
#define NBD_SUCCESS    0u
#define NBD_EPERM      1u
#define NBD_EIO        5u
#define NBD_ENOMEM     12u
#define NBD_EINVAL     22u
#define NBD_ENOSPC     28u
#define NBD_EOVERFLOW  75u
#define NBD_ENOTSUP    95u
#define NBD_ESHUTDOWN  108u

/* ---- limits this server applies ---- */
#define NBD_MAX_NAME        4096u       /* export names and meta context queries */
#define NBD_MAX_OPTION_LEN  65536u      /* longer option data: NBD_REP_ERR_TOO_BIG */
/* NBD_INFO_BLOCK_SIZE: the minimum is the volume's logical sector (512 or 4096; any
 * byte range is still served), the preferred the engine's block */
#define NBD_PREF_BLOCK      4096u
#define NBD_MAX_PAYLOAD     (32u << 20) /* largest READ/WRITE */

/* ---- layouts ---- */

/* S→C first message. */
struct nbd_greeting {
	uint64_t magic;           /* NBD_MAGIC */
	uint64_t opt_magic;       /* NBD_IHAVEOPT */
	uint16_t handshake_flags; /* NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES */
} NBD_PACKED;

/* C→S answer to the greeting. */
struct nbd_client_flags {
	uint32_t flags;           /* NBD_FLAG_C_* */
} NBD_PACKED;

/* C→S option request; length bytes of data follow. */
struct nbd_option_hdr {
	uint64_t magic;           /* NBD_IHAVEOPT */
	uint32_t option;          /* NBD_OPT_* */
	uint32_t length;          /* bytes of option data that follow */
} NBD_PACKED;

/* S→C option reply; length bytes of data follow. */
struct nbd_option_reply_hdr {
	uint64_t magic;           /* NBD_REP_MAGIC */
	uint32_t option;          /* the option being answered */
	uint32_t reply;           /* NBD_REP_* */
	uint32_t length;          /* bytes of reply data that follow */
} NBD_PACKED;

/* S→C answer to NBD_OPT_EXPORT_NAME (the zeroes are omitted with NO_ZEROES). */
struct nbd_export_name_reply {
	uint64_t size;            /* export size in bytes */
	uint16_t flags;           /* transmission flags */
	uint8_t zeroes[124];      /* reserved, zero */
} NBD_PACKED;

/* NBD_REP_INFO data for NBD_INFO_EXPORT. */
struct nbd_info_export {
	uint16_t info;            /* NBD_INFO_EXPORT */
	uint64_t size;            /* export size in bytes */
	uint16_t flags;           /* transmission flags */
} NBD_PACKED;

/* NBD_REP_INFO data for NBD_INFO_BLOCK_SIZE. */
struct nbd_info_block_size {
	uint16_t info;            /* NBD_INFO_BLOCK_SIZE */
	uint32_t minimum;         /* smallest addressable unit */
	uint32_t preferred;       /* requests smaller or unaligned to this are slower */
	uint32_t maximum;         /* largest READ/WRITE payload */
} NBD_PACKED;

/* NBD_REP_META_CONTEXT data; the context name follows. */
struct nbd_meta_context_reply {
	uint32_t context_id;      /* id used in NBD_REPLY_TYPE_BLOCK_STATUS; 0 for LIST */
} NBD_PACKED;

/* C→S request. */
struct nbd_request {
	uint32_t magic;           /* NBD_REQUEST_MAGIC */
	uint16_t flags;           /* NBD_CMD_FLAG_* */
	uint16_t type;            /* NBD_CMD_* */
	uint64_t cookie;          /* opaque, echoed in the reply ("handle") */
	uint64_t offset;          /* byte offset into the export */
	uint32_t length;          /* byte length (payload length for WRITE) */
} NBD_PACKED;

/* S→C simple reply; for a successful READ, length bytes of data follow. */
struct nbd_simple_reply {
	uint32_t magic;           /* NBD_SIMPLE_REPLY_MAGIC */
	uint32_t error;           /* NBD_SUCCESS or NBD_E* */
	uint64_t cookie;          /* the request's cookie */
} NBD_PACKED;

/* S→C structured reply chunk; length bytes of payload follow. */
struct nbd_structured_reply {
	uint32_t magic;           /* NBD_STRUCTURED_REPLY_MAGIC */
	uint16_t flags;           /* NBD_REPLY_FLAG_* */
	uint16_t type;            /* NBD_REPLY_TYPE_* */
	uint64_t cookie;          /* the request's cookie */
	uint32_t length;          /* bytes of payload */
} NBD_PACKED;

/* NBD_REPLY_TYPE_OFFSET_DATA payload head; the data follows. */
struct nbd_sr_offset_data {
	uint64_t offset;          /* export offset of the first data byte */
} NBD_PACKED;

/* NBD_REPLY_TYPE_OFFSET_HOLE payload. */
struct nbd_sr_offset_hole {
	uint64_t offset;
	uint32_t length;          /* non-zero */
} NBD_PACKED;

/* NBD_REPLY_TYPE_ERROR payload head; msg_len bytes of message follow. */
struct nbd_sr_error {
	uint32_t error;           /* NBD_E*, non-zero */
	uint16_t msg_len;         /* human-readable message length */
} NBD_PACKED;

/* NBD_REPLY_TYPE_BLOCK_STATUS payload head; descriptors follow. */
struct nbd_sr_block_status {
	uint32_t context_id;      /* from NBD_OPT_SET_META_CONTEXT */
} NBD_PACKED;

struct nbd_block_descriptor {
	uint32_t length;          /* bytes, non-zero */
	uint32_t status;          /* NBD_STATE_* for base:allocation */
} NBD_PACKED;

_Static_assert(sizeof(struct nbd_greeting) == 18, "greeting");
_Static_assert(sizeof(struct nbd_client_flags) == 4, "client flags");
_Static_assert(sizeof(struct nbd_option_hdr) == 16, "option header");
_Static_assert(sizeof(struct nbd_option_reply_hdr) == 20, "option reply header");
_Static_assert(sizeof(struct nbd_export_name_reply) == 134, "export name reply");
_Static_assert(sizeof(struct nbd_info_export) == 12, "NBD_INFO_EXPORT");
_Static_assert(sizeof(struct nbd_info_block_size) == 14, "NBD_INFO_BLOCK_SIZE");
_Static_assert(sizeof(struct nbd_meta_context_reply) == 4, "meta context reply");
_Static_assert(sizeof(struct nbd_request) == 28, "request");
_Static_assert(offsetof(struct nbd_request, cookie) == 8, "request cookie");
_Static_assert(offsetof(struct nbd_request, length) == 24, "request length");
_Static_assert(sizeof(struct nbd_simple_reply) == 16, "simple reply");
_Static_assert(sizeof(struct nbd_structured_reply) == 20, "structured reply");
_Static_assert(offsetof(struct nbd_structured_reply, length) == 16, "chunk length");
_Static_assert(sizeof(struct nbd_sr_offset_data) == 8, "offset data");
_Static_assert(sizeof(struct nbd_sr_offset_hole) == 12, "offset hole");
_Static_assert(sizeof(struct nbd_sr_error) == 6, "error chunk");
_Static_assert(sizeof(struct nbd_sr_block_status) == 4, "block status chunk");
_Static_assert(sizeof(struct nbd_block_descriptor) == 8, "block descriptor");

/* ---- big-endian helpers ---- */
static inline void nbd_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void nbd_put32(uint8_t *p, uint32_t v)
{
	nbd_put16(p, (uint16_t)(v >> 16));
	nbd_put16(p + 2, (uint16_t)v);
}

static inline void nbd_put64(uint8_t *p, uint64_t v)
{
	nbd_put32(p, (uint32_t)(v >> 32));
	nbd_put32(p + 4, (uint32_t)v);
}

static inline uint16_t nbd_get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t nbd_get32(const uint8_t *p)
{
	return (uint32_t)nbd_get16(p) << 16 | nbd_get16(p + 2);
}

static inline uint64_t nbd_get64(const uint8_t *p)
{
	return (uint64_t)nbd_get32(p) << 32 | nbd_get32(p + 4);
}

/* ---- decoded messages (host order) and their decoders (nbd_proto.c) ---- */

struct nbd_opt {
	uint32_t option;
	uint32_t length;
};
/* 0, or -EPROTO if the magic is wrong. len must be >= 16. */
int nbd_decode_option_hdr(const void *buf, size_t len, struct nbd_opt *out);

struct nbd_req_hdr {
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint64_t offset;
	uint32_t length;
};
/* 0, -EPROTO on a wrong magic, -EINVAL if len < 28. */
int nbd_decode_request(const void *buf, size_t len, struct nbd_req_hdr *out);

/* NBD_OPT_INFO / NBD_OPT_GO data: u32 name length, name, u16 count, u16 info[count]. */
struct nbd_info_opt {
	const char *name;         /* points into the buffer, not NUL-terminated */
	uint32_t name_len;
	uint16_t nreqs;
	const uint8_t *reqs;      /* nreqs big-endian u16 */
};
/* 0 or -EINVAL if the lengths do not add up exactly to len. */
int nbd_decode_info_opt(const void *buf, size_t len, struct nbd_info_opt *out);
uint16_t nbd_info_opt_req(const struct nbd_info_opt *o, uint16_t i);

/* NBD_OPT_{LIST,SET}_META_CONTEXT data: u32 name length, name, u32 query count,
 * then per query u32 length, query. */
struct nbd_meta_opt {
	const char *name;
	uint32_t name_len;
	uint32_t nqueries;
	const uint8_t *queries;   /* the encoded queries, validated */
	size_t queries_len;
};
/* 0 or -EINVAL (lengths inconsistent, or a name/query longer than NBD_MAX_NAME). */
int nbd_decode_meta_opt(const void *buf, size_t len, struct nbd_meta_opt *out);
/* Iterates the queries of a decoded option: *pos starts at 0. Returns false at the end. */
bool nbd_meta_opt_next(const struct nbd_meta_opt *o, size_t *pos, const char **q,
		       uint32_t *qlen);

/* ---- encoders: write the fixed part, return its size ---- */
size_t nbd_encode_option_reply(uint8_t *buf, uint32_t option, uint32_t reply, uint32_t len);
size_t nbd_encode_simple_reply(uint8_t *buf, uint32_t error, uint64_t cookie);
size_t nbd_encode_chunk(uint8_t *buf, uint16_t flags, uint16_t type, uint64_t cookie,
			uint32_t len);

/* The one table from -errno (or errno) to the wire's NBD_E* values: EPERM/EROFS →
 * EPERM, EIO/EILSEQ → EIO, ENOMEM, EINVAL/ERANGE → EINVAL, ENOSPC/EDQUOT/EFBIG →
 * ENOSPC, EOVERFLOW, ENOTSUP/EOPNOTSUPP → ENOTSUP, ESHUTDOWN/EBADF → ESHUTDOWN, and
 * anything else → EIO. 0 → NBD_SUCCESS. */
uint32_t nbd_errno_to_wire(int err);

/* Names for logs ("NBD_OPT_GO", "NBD_CMD_READ"); "unknown" otherwise. */
const char *nbd_opt_name(uint32_t opt);
const char *nbd_cmd_name(uint16_t cmd);

#endif
