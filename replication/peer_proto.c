/* replication/peer_proto.c — decoders and encoders of peer_proto.h. */
#include "replication/peer_proto.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/crc32c.h"

/* The ops this version implements, with their payload bounds, and whether they
 * belong to the authenticated session. An op gets a row when its handler exists. */
#define SEG_REPLY_MIN ((uint32_t)sizeof(struct peer_seg_result))
#define SEG(op, name, min, max, rmax)                                          \
	{ op, name, min, max, true }, { (op) | PEER_OP_REPLY, name " reply", SEG_REPLY_MIN, rmax, true }
static const struct op_info {
	uint8_t op;
	const char *name;
	uint32_t min, max;
	bool session;
} ops[] = {
	{ PEER_OP_HELLO, "HELLO", sizeof(struct peer_hello), sizeof(struct peer_hello), false },
	{ PEER_OP_CHALLENGE, "CHALLENGE", sizeof(struct peer_challenge),
	  sizeof(struct peer_challenge), false },
	{ PEER_OP_AUTH, "AUTH", sizeof(struct peer_auth), sizeof(struct peer_auth), false },
	{ PEER_OP_AUTH_OK, "AUTH_OK", 0, 0, false },
	{ PEER_OP_PING, "PING", 0, PEER_PING_MAX, true },
	{ PEER_OP_PONG, "PONG", 0, PEER_PING_MAX, true },
	{ PEER_OP_ERROR, "ERROR", sizeof(struct peer_error),
	  sizeof(struct peer_error) + PEER_ERROR_MSG_MAX, true },
	SEG(PEER_OP_SEG_OPEN, "SEG_OPEN", sizeof(struct peer_seg_open),
	    sizeof(struct peer_seg_open), SEG_REPLY_MIN),
	SEG(PEER_OP_SEG_APPEND, "SEG_APPEND", sizeof(struct peer_seg_append) + PEER_SEG_BLOCK,
	    PEER_PAYLOAD_MAX, SEG_REPLY_MIN),
	SEG(PEER_OP_SEG_READ, "SEG_READ", sizeof(struct peer_seg_read),
	    sizeof(struct peer_seg_read) + PEER_SEG_READ_MAX_BLOCKS * sizeof(uint32_t),
	    SEG_REPLY_MIN + PEER_SEG_READ_MAX_BLOCKS * PEER_SEG_BLOCK),
	SEG(PEER_OP_SEG_SEAL, "SEG_SEAL", sizeof(struct peer_seg_seal),
	    sizeof(struct peer_seg_seal), SEG_REPLY_MIN),
	SEG(PEER_OP_SEG_DELETE, "SEG_DELETE", sizeof(struct peer_seg_sno),
	    sizeof(struct peer_seg_sno), SEG_REPLY_MIN),
	SEG(PEER_OP_EPOCH_RAISE, "EPOCH_RAISE", 0, 0, SEG_REPLY_MIN),
	SEG(PEER_OP_SEG_FLUSH, "SEG_FLUSH", 0, 0, SEG_REPLY_MIN),
	SEG(PEER_OP_SEG_STAT, "SEG_STAT", sizeof(struct peer_seg_sno),
	    sizeof(struct peer_seg_sno), SEG_REPLY_MIN + sizeof(struct peer_seg_stat)),
	SEG(PEER_OP_LAYER_READ, "LAYER_READ", sizeof(struct peer_layer_read),
	    sizeof(struct peer_layer_read),
	    SEG_REPLY_MIN + PEER_LAYER_READ_MAX_BLOCKS * (PEER_SEG_BLOCK + sizeof(uint32_t))),
	SEG(PEER_OP_LAYER_FIND, "LAYER_FIND", sizeof(struct peer_layer_find),
	    sizeof(struct peer_layer_find), SEG_REPLY_MIN + sizeof(struct peer_layer_found)),
	SEG(PEER_OP_FRAG_PUT, "FRAG_PUT",
	    sizeof(struct peer_frag_put) + PEER_FRAG_IMAGE_MIN * PEER_SEG_BLOCK, PEER_PAYLOAD_MAX,
	    SEG_REPLY_MIN),
	SEG(PEER_OP_FRAG_READ, "FRAG_READ", sizeof(struct peer_frag_read),
	    sizeof(struct peer_frag_read) + PEER_FRAG_READ_MAX_BLOCKS * sizeof(uint32_t),
	    SEG_REPLY_MIN + PEER_FRAG_READ_MAX_BLOCKS * (PEER_SEG_BLOCK + sizeof(uint32_t))),
	SEG(PEER_OP_SEG_LIST, "SEG_LIST", sizeof(struct peer_seg_list),
	    sizeof(struct peer_seg_list),
	    SEG_REPLY_MIN + PEER_SEG_LIST_MAX * sizeof(struct peer_seg_entry)),
	SEG(PEER_OP_SEG_VERIFY, "SEG_VERIFY", sizeof(struct peer_seg_verify) + sizeof(uint32_t),
	    sizeof(struct peer_seg_verify) + PEER_SEG_VERIFY_MAX_BLOCKS * sizeof(uint32_t),
	    SEG_REPLY_MIN + PEER_SEG_VERIFY_MAX_BLOCKS * sizeof(uint32_t)),
	SEG(PEER_OP_FRAG_VERIFY, "FRAG_VERIFY", sizeof(struct peer_frag_verify),
	    sizeof(struct peer_frag_verify),
	    SEG_REPLY_MIN + sizeof(struct peer_frag_verified) +
		    2 * PEER_FRAG_PUT_MAX_BLOCKS * sizeof(uint32_t)),
};
_Static_assert(SEG_REPLY_MIN + PEER_FRAG_READ_MAX_BLOCKS * (PEER_SEG_BLOCK + sizeof(uint32_t)) <=
		       PEER_PAYLOAD_MAX, "a FRAG_READ reply fits a payload");
_Static_assert(SEG_REPLY_MIN + PEER_LAYER_READ_MAX_BLOCKS * (PEER_SEG_BLOCK + sizeof(uint32_t)) <=
		       PEER_PAYLOAD_MAX, "a LAYER_READ reply fits a payload");
_Static_assert(sizeof(struct peer_error) + PEER_ERROR_MSG_MAX <= PEER_PAYLOAD_MAX &&
		       SEG_REPLY_MIN + PEER_SEG_READ_MAX_BLOCKS * PEER_SEG_BLOCK <=
			       PEER_PAYLOAD_MAX,
	       "every op's bound is within the protocol's");

static const struct op_info *op_find(uint8_t op)
{
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (ops[i].op == op)
			return &ops[i];
	return NULL;
}

bool peer_op_known(uint8_t op)
{
	return op_find(op) != NULL;
}

bool peer_op_is_session(uint8_t op)
{
	const struct op_info *oi = op_find(op);

	return oi && oi->session;
}

bool peer_op_seg_request(uint8_t op)
{
	return op >= PEER_OP_SEG_FIRST && op <= PEER_OP_SEG_LAST;
}

bool peer_op_seg_reply(uint8_t op)
{
	return (op & PEER_OP_REPLY) && peer_op_seg_request(op & (uint8_t)~PEER_OP_REPLY);
}

const char *peer_op_name(uint8_t op)
{
	static char other[32];
	const struct op_info *oi = op_find(op);

	if (oi)
		return oi->name;
	snprintf(other, sizeof(other), "op 0x%02x", op);
	return other;
}

void peer_op_payload_bounds(uint8_t op, uint32_t *min, uint32_t *max)
{
	const struct op_info *oi = op_find(op);

	*min = oi ? oi->min : 0;
	*max = oi ? oi->max : 0;
}

size_t peer_frame_len(const struct peer_hdr *h)
{
	return PEER_HDR_BYTES + h->payload_len + (h->flags & PEER_F_MAC ? PEER_MAC_BYTES : 0);
}

#define HDR(field) offsetof(struct peer_frame_hdr, field)

int peer_hdr_decode(const void *buf, size_t len, struct peer_hdr *out)
{
	const uint8_t *p = buf;
	const struct op_info *oi;

	if (len < PEER_HDR_BYTES)
		return -EINVAL;
	if (peer_get32(p + HDR(magic)) != PEER_MAGIC)
		return -EPROTO;
	if (p[HDR(version)] != PEER_VERSION)
		return -EPROTONOSUPPORT;
	if (crc32c(p, HDR(hdr_crc)) != peer_get32(p + HDR(hdr_crc)))
		return -EILSEQ;
	out->op = p[HDR(op)];
	out->flags = peer_get16(p + HDR(flags));
	out->payload_len = peer_get32(p + HDR(payload_len));
	out->payload_crc = peer_get32(p + HDR(payload_crc));
	out->request_id = peer_get64(p + HDR(request_id));
	out->volume_id = peer_get64(p + HDR(volume_id));
	out->epoch = peer_get64(p + HDR(epoch));
	if ((out->flags & ~PEER_F_MAC) || peer_get32(p + HDR(reserved)))
		return -EPROTO;
	if (out->payload_len > PEER_PAYLOAD_MAX)
		return -EMSGSIZE;
	oi = op_find(out->op);
	if (!oi)
		return -EOPNOTSUPP;
	if (out->payload_len > oi->max)
		return -EMSGSIZE;
	return out->payload_len < oi->min ? -EINVAL : 0;
}

void peer_hdr_encode(const struct peer_hdr *h, void *buf)
{
	uint8_t *p = buf;

	peer_put32(p + HDR(magic), PEER_MAGIC);
	p[HDR(version)] = PEER_VERSION;
	p[HDR(op)] = h->op;
	peer_put16(p + HDR(flags), h->flags);
	peer_put32(p + HDR(payload_len), h->payload_len);
	peer_put32(p + HDR(payload_crc), h->payload_crc);
	peer_put64(p + HDR(request_id), h->request_id);
	peer_put64(p + HDR(volume_id), h->volume_id);
	peer_put64(p + HDR(epoch), h->epoch);
	peer_put32(p + HDR(reserved), 0);
	peer_put32(p + HDR(hdr_crc), crc32c(p, HDR(hdr_crc)));
}

int peer_payload_check(const struct peer_hdr *h, const void *payload)
{
	return crc32c(payload, h->payload_len) == h->payload_crc ? 0 : -EILSEQ;
}

/* ---- payloads ---- */

#define HELLO(field) offsetof(struct peer_hello, field)
#define CHAL(field) offsetof(struct peer_challenge, field)

/* HELLO and CHALLENGE begin alike: node id, instance, nonce, features, reserved. */
static int identity_decode(const uint8_t *p, uint64_t *node_id, uint8_t *instance,
			   uint8_t *nonce)
{
	if (peer_get32(p + HELLO(features)) || peer_get32(p + HELLO(reserved)))
		return -EPROTO;
	*node_id = peer_get64(p + HELLO(node_id));
	memcpy(instance, p + HELLO(instance), PEER_INSTANCE_BYTES);
	memcpy(nonce, p + HELLO(nonce), PEER_NONCE_BYTES);
	return 0;
}

static void identity_encode(uint64_t node_id, const uint8_t *instance, const uint8_t *nonce,
			    uint8_t *p)
{
	peer_put64(p + HELLO(node_id), node_id);
	memcpy(p + HELLO(instance), instance, PEER_INSTANCE_BYTES);
	memcpy(p + HELLO(nonce), nonce, PEER_NONCE_BYTES);
	peer_put32(p + HELLO(features), 0);
	peer_put32(p + HELLO(reserved), 0);
}
_Static_assert(CHAL(instance) == HELLO(instance) && CHAL(nonce) == HELLO(nonce) &&
		       CHAL(reserved) == HELLO(reserved),
	       "CHALLENGE begins as HELLO");

int peer_hello_decode(const void *buf, size_t len, struct peer_hello_msg *out)
{
	if (len != sizeof(struct peer_hello))
		return -EINVAL;
	return identity_decode(buf, &out->node_id, out->instance, out->nonce);
}

void peer_hello_encode(const struct peer_hello_msg *m, void *buf)
{
	identity_encode(m->node_id, m->instance, m->nonce, buf);
}

int peer_challenge_decode(const void *buf, size_t len, struct peer_challenge_msg *out)
{
	const uint8_t *p = buf;

	if (len != sizeof(struct peer_challenge))
		return -EINVAL;
	memcpy(out->proof, p + CHAL(proof), PEER_PROOF_BYTES);
	return identity_decode(p, &out->node_id, out->instance, out->nonce);
}

void peer_challenge_encode(const struct peer_challenge_msg *m, void *buf)
{
	uint8_t *p = buf;

	identity_encode(m->node_id, m->instance, m->nonce, p);
	memcpy(p + CHAL(proof), m->proof, PEER_PROOF_BYTES);
}

#define ERR(field) offsetof(struct peer_error, field)

int peer_error_decode(const void *buf, size_t len, struct peer_error_msg *out)
{
	const uint8_t *p = buf;
	uint32_t err;

	if (len < sizeof(struct peer_error))
		return -EINVAL;
	err = peer_get32(p + ERR(err));
	out->msg_len = peer_get16(p + ERR(msg_len));
	if (peer_get16(p + ERR(reserved)) || err == 0 || err > 4095)
		return -EPROTO;
	if (out->msg_len > PEER_ERROR_MSG_MAX)
		return -EMSGSIZE;
	if (out->msg_len != len - sizeof(struct peer_error))
		return -EINVAL;
	out->err = (int)err;
	out->msg = (const char *)p + sizeof(struct peer_error);
	return 0;
}

size_t peer_error_encode(int err, const char *msg, void *buf)
{
	uint8_t *p = buf;
	size_t n = strnlen(msg, PEER_ERROR_MSG_MAX);

	peer_put32(p + ERR(err), (uint32_t)(err < 0 ? -err : err));
	peer_put16(p + ERR(msg_len), (uint16_t)n);
	peer_put16(p + ERR(reserved), 0);
	memcpy(p + sizeof(struct peer_error), msg, n);
	return sizeof(struct peer_error) + n;
}

/* ---- segment ops ---- */

#define APP(field) offsetof(struct peer_seg_append, field)
#define RD(field) offsetof(struct peer_seg_read, field)
#define LR(field) offsetof(struct peer_layer_read, field)
#define FP(field) offsetof(struct peer_frag_put, field)
#define FR(field) offsetof(struct peer_frag_read, field)
#define RES(field) offsetof(struct peer_seg_result, field)
#define STAT(field) (sizeof(struct peer_seg_result) + offsetof(struct peer_seg_stat, field))
#define FOUND(field) (sizeof(struct peer_seg_result) + offsetof(struct peer_layer_found, field))
#define LIST(field) offsetof(struct peer_seg_list, field)
#define ENT(field) offsetof(struct peer_seg_entry, field)

/* A range of blocks that must not be empty, wrap or exceed max blocks. */
static int range_check(uint32_t block, uint32_t nblocks, uint32_t max)
{
	if (nblocks == 0 || nblocks > UINT32_MAX - block)
		return -EINVAL;
	return nblocks > max ? -EMSGSIZE : 0;
}

static int seg_append_decode(const uint8_t *p, size_t len, struct peer_seg_req *out)
{
	int r;

	if (len < sizeof(struct peer_seg_append))
		return -EINVAL;
	out->sno = peer_get32(p + APP(sno));
	out->block = peer_get32(p + APP(block));
	out->nblocks = peer_get32(p + APP(nblocks));
	out->flags = peer_get32(p + APP(flags));
	out->data_crc = peer_get32(p + APP(data_crc));
	if ((out->flags & ~PEER_SEG_F_FUA) || peer_get32(p + APP(reserved)))
		return -EPROTO;
	r = range_check(out->block, out->nblocks, PEER_SEG_APPEND_MAX_BLOCKS);
	if (r < 0)
		return r;
	if (len - sizeof(struct peer_seg_append) != (size_t)out->nblocks * PEER_SEG_BLOCK)
		return -EINVAL; /* the data is exactly nblocks blocks */
	out->data = p + sizeof(struct peer_seg_append);
	return 0;
}

/* A READ's or FRAG_READ's layout (out->block, nblocks, flags decoded from a head of
 * head_len bytes): with PEER_SEG_F_CRCS exactly one CRC per block after the head
 * (out->data), nothing else follows. Its run is peer_seg_req_check's: one the holder
 * cannot serve is answered, not a malformed frame. */
static int read_run_decode(const uint8_t *p, size_t len, size_t head_len,
			   struct peer_seg_req *out)
{
	if (out->flags & ~PEER_SEG_F_CRCS)
		return -EPROTO;
	if (!(out->flags & PEER_SEG_F_CRCS))
		return len == head_len ? 0 : -EINVAL;
	out->data = p + head_len;
	return len == head_len + (size_t)out->nblocks * sizeof(uint32_t) ? 0 : -EINVAL;
}

static int seg_read_decode(const uint8_t *p, size_t len, struct peer_seg_req *out)
{
	if (len < sizeof(struct peer_seg_read))
		return -EINVAL;
	out->sno = peer_get32(p + RD(sno));
	out->block = peer_get32(p + RD(block));
	out->nblocks = peer_get32(p + RD(nblocks));
	out->flags = peer_get32(p + RD(flags));
	return read_run_decode(p, len, sizeof(struct peer_seg_read), out);
}

int peer_seg_read_check(const struct peer_seg_req *r, const void *blocks)
{
	const uint8_t *b = blocks;

	if (!(r->flags & PEER_SEG_F_CRCS))
		return 0;
	for (uint32_t i = 0; i < r->nblocks; i++)
		if (crc32c(b + (size_t)i * PEER_SEG_BLOCK, PEER_SEG_BLOCK) !=
		    peer_get32(r->data + (size_t)i * sizeof(uint32_t)))
			return -EILSEQ;
	return 0;
}

#define VFY(field) offsetof(struct peer_seg_verify, field)

static int seg_verify_decode(const uint8_t *p, size_t len, struct peer_seg_req *out)
{
	int r;

	if (len < sizeof(struct peer_seg_verify))
		return -EINVAL;
	out->sno = peer_get32(p + VFY(sno));
	out->block = peer_get32(p + VFY(block));
	out->nblocks = peer_get32(p + VFY(nblocks));
	if (peer_get32(p + VFY(reserved)))
		return -EPROTO;
	r = range_check(out->block, out->nblocks, PEER_SEG_VERIFY_MAX_BLOCKS);
	if (r < 0)
		return r;
	out->data = p + sizeof(struct peer_seg_verify);
	/* the CRCs are exactly one per block */
	return len == sizeof(struct peer_seg_verify) + (size_t)out->nblocks * sizeof(uint32_t)
		       ? 0 : -EINVAL;
}

uint32_t peer_seg_verify_run(const struct peer_seg_req *r, const void *blocks, uint8_t *bad)
{
	const uint8_t *b = blocks;
	uint32_t n = 0;

	for (uint32_t i = 0; i < r->nblocks; i++)
		if (crc32c(b + (size_t)i * PEER_SEG_BLOCK, PEER_SEG_BLOCK) !=
		    peer_get32(r->data + (size_t)i * sizeof(uint32_t)))
			peer_put32(bad + (size_t)n++ * sizeof(uint32_t), r->block + i);
	return n;
}

uint32_t peer_seg_verify_bad(const struct peer_seg_reply *r, uint32_t i)
{
	return peer_get32(r->bad + (size_t)i * sizeof(uint32_t));
}

static int layer_read_decode(const uint8_t *p, size_t len, struct peer_seg_req *out)
{
	if (len != sizeof(struct peer_layer_read))
		return -EINVAL;
	out->layer = peer_get64(p + LR(layer));
	out->lba = peer_get64(p + LR(lba));
	out->nblocks = peer_get32(p + LR(nblocks));
	if (peer_get32(p + LR(reserved)))
		return -EPROTO;
	if (out->layer == 0 || out->nblocks == 0 || out->lba > UINT64_MAX - out->nblocks)
		return -EINVAL;
	return out->nblocks > PEER_LAYER_READ_MAX_BLOCKS ? -EMSGSIZE : 0;
}

static int frag_put_decode(const uint8_t *p, size_t len, struct peer_seg_req *out)
{
	if (len < sizeof(struct peer_frag_put))
		return -EINVAL;
	out->sno = peer_get32(p + FP(sno));
	out->nblocks = peer_get32(p + FP(image_blocks));
	if (peer_get64(p + FP(reserved)))
		return -EPROTO;
	if (out->nblocks < PEER_FRAG_IMAGE_MIN)
		return -EINVAL;
	if (out->nblocks > PEER_FRAG_PUT_MAX_BLOCKS)
		return -EMSGSIZE;
	if (len - sizeof(struct peer_frag_put) != (size_t)out->nblocks * PEER_SEG_BLOCK)
		return -EINVAL; /* the image is exactly image_blocks blocks */
	out->data = p + sizeof(struct peer_frag_put);
	return 0;
}

#define FV(field) offsetof(struct peer_frag_verify, field)

static int frag_verify_decode(const uint8_t *p, size_t len, struct peer_seg_req *out)
{
	if (len != sizeof(struct peer_frag_verify))
		return -EINVAL;
	out->sno = peer_get32(p + FV(sno));
	out->index = p[FV(index)];
	for (size_t i = 0; i < sizeof(((struct peer_frag_verify *)0)->reserved); i++)
		if (p[FV(reserved) + i])
			return -EPROTO;
	return peer_get64(p + FV(reserved1)) ? -EPROTO : 0;
}

static int frag_read_decode(const uint8_t *p, size_t len, struct peer_seg_req *out)
{
	if (len < sizeof(struct peer_frag_read))
		return -EINVAL;
	out->sno = peer_get32(p + FR(sno));
	out->block = peer_get32(p + FR(block));
	out->nblocks = peer_get32(p + FR(nblocks));
	out->index = p[FR(index)];
	out->flags = p[FR(flags)];
	for (size_t i = 0; i < sizeof(((struct peer_frag_read *)0)->reserved); i++)
		if (p[FR(reserved) + i])
			return -EPROTO;
	return read_run_decode(p, len, sizeof(struct peer_frag_read), out);
}

/* A name of LAYER_FIND: 1..PEER_LAYER_NAME - 1 bytes, then NULs only. */
static int layer_name_decode(const uint8_t *p, char *out)
{
	size_t n = strnlen((const char *)p, PEER_LAYER_NAME);

	if (n == 0 || n == PEER_LAYER_NAME)
		return -EINVAL;
	for (size_t i = n; i < PEER_LAYER_NAME; i++)
		if (p[i])
			return -EPROTO;
	memcpy(out, p, n + 1);
	return 0;
}

static int layer_find_decode(const uint8_t *p, size_t len, struct peer_seg_req *out)
{
	int r;

	if (len != sizeof(struct peer_layer_find))
		return -EINVAL;
	r = layer_name_decode(p + offsetof(struct peer_layer_find, volume), out->volume);
	return r < 0 ? r : layer_name_decode(p + offsetof(struct peer_layer_find, snap), out->snap);
}

/* The ops whose payload is 8 bytes: sno, then a length (SEAL) or a kind. */
static int seg_sno_decode(uint8_t op, const uint8_t *p, size_t len, struct peer_seg_req *out)
{
	if (len != sizeof(struct peer_seg_sno))
		return -EINVAL;
	out->sno = peer_get32(p);
	if (op == PEER_OP_SEG_SEAL) {
		out->length = peer_get32(p + offsetof(struct peer_seg_seal, length));
		return 0;
	}
	out->kind = peer_get32(p + offsetof(struct peer_seg_sno, kind));
	return out->kind > PEER_SEG_KIND_FRAG ? -EPROTO : 0;
}
_Static_assert(sizeof(struct peer_seg_seal) == sizeof(struct peer_seg_sno) &&
		       offsetof(struct peer_seg_seal, length) ==
			       offsetof(struct peer_seg_sno, kind),
	       "SEAL is sno and a length where the others have a kind");

static int seg_list_decode(const uint8_t *p, size_t len, struct peer_seg_req *out)
{
	if (len != sizeof(struct peer_seg_list))
		return -EINVAL;
	out->first = peer_get32(p + LIST(first));
	out->last = peer_get32(p + LIST(last));
	if (peer_get64(p + LIST(reserved)))
		return -EPROTO;
	return out->first <= out->last ? 0 : -EINVAL;
}

int peer_seg_req_decode(uint8_t op, const void *buf, size_t len, struct peer_seg_req *out)
{
	const uint8_t *p = buf;

	*out = (struct peer_seg_req){ .op = op };
	switch (op) {
	case PEER_OP_SEG_OPEN:
		if (len != sizeof(struct peer_seg_open))
			return -EINVAL;
		out->sno = peer_get32(p + offsetof(struct peer_seg_open, sno));
		out->segment_blocks = peer_get32(p + offsetof(struct peer_seg_open, segment_blocks));
		if (peer_get64(p + offsetof(struct peer_seg_open, reserved)))
			return -EPROTO;
		return out->segment_blocks ? 0 : -EINVAL;
	case PEER_OP_SEG_APPEND:
		return seg_append_decode(p, len, out);
	case PEER_OP_SEG_READ:
		return seg_read_decode(p, len, out);
	case PEER_OP_SEG_SEAL:
	case PEER_OP_SEG_DELETE:
	case PEER_OP_SEG_STAT:
		return seg_sno_decode(op, p, len, out);
	case PEER_OP_LAYER_READ:
		return layer_read_decode(p, len, out);
	case PEER_OP_LAYER_FIND:
		return layer_find_decode(p, len, out);
	case PEER_OP_FRAG_PUT:
		return frag_put_decode(p, len, out);
	case PEER_OP_FRAG_READ:
		return frag_read_decode(p, len, out);
	case PEER_OP_SEG_LIST:
		return seg_list_decode(p, len, out);
	case PEER_OP_SEG_VERIFY:
		return seg_verify_decode(p, len, out);
	case PEER_OP_FRAG_VERIFY:
		return frag_verify_decode(p, len, out);
	case PEER_OP_EPOCH_RAISE:
	case PEER_OP_SEG_FLUSH:
		return len == 0 ? 0 : -EINVAL;
	default:
		return -EOPNOTSUPP;
	}
}

int peer_seg_req_check(const struct peer_seg_req *r)
{
	switch (r->op) {
	case PEER_OP_SEG_READ:
		return range_check(r->block, r->nblocks, PEER_SEG_READ_MAX_BLOCKS);
	case PEER_OP_FRAG_READ:
		return range_check(r->block, r->nblocks, PEER_FRAG_READ_MAX_BLOCKS);
	default:
		return 0; /* the others' ranges are their layout's: the decoder checked them */
	}
}

int peer_seg_data_check(const struct peer_seg_req *r)
{
	size_t len = (size_t)r->nblocks * PEER_SEG_BLOCK;

	return crc32c(r->data, len) == r->data_crc ? 0 : -EILSEQ;
}

size_t peer_seg_req_encode(const struct peer_seg_req *r, void *buf)
{
	uint8_t *p = buf;

	switch (r->op) {
	case PEER_OP_SEG_OPEN:
		peer_put32(p + offsetof(struct peer_seg_open, sno), r->sno);
		peer_put32(p + offsetof(struct peer_seg_open, segment_blocks), r->segment_blocks);
		peer_put64(p + offsetof(struct peer_seg_open, reserved), 0);
		return sizeof(struct peer_seg_open);
	case PEER_OP_SEG_APPEND:
		peer_put32(p + APP(sno), r->sno);
		peer_put32(p + APP(block), r->block);
		peer_put32(p + APP(nblocks), r->nblocks);
		peer_put32(p + APP(flags), r->flags);
		peer_put32(p + APP(data_crc), r->data_crc);
		peer_put32(p + APP(reserved), 0);
		return sizeof(struct peer_seg_append);
	case PEER_OP_SEG_READ:
		peer_put32(p + RD(sno), r->sno);
		peer_put32(p + RD(block), r->block);
		peer_put32(p + RD(nblocks), r->nblocks);
		peer_put32(p + RD(flags), r->flags);
		return sizeof(struct peer_seg_read);
	case PEER_OP_SEG_SEAL:
	case PEER_OP_SEG_DELETE:
	case PEER_OP_SEG_STAT:
		peer_put32(p, r->sno);
		peer_put32(p + 4, r->op == PEER_OP_SEG_SEAL ? r->length : r->kind);
		return sizeof(struct peer_seg_sno);
	case PEER_OP_LAYER_READ:
		peer_put64(p + LR(layer), r->layer);
		peer_put64(p + LR(lba), r->lba);
		peer_put32(p + LR(nblocks), r->nblocks);
		peer_put32(p + LR(reserved), 0);
		return sizeof(struct peer_layer_read);
	case PEER_OP_LAYER_FIND:
		memset(p, 0, sizeof(struct peer_layer_find));
		memcpy(p + offsetof(struct peer_layer_find, volume), r->volume,
		       strnlen(r->volume, PEER_LAYER_NAME - 1));
		memcpy(p + offsetof(struct peer_layer_find, snap), r->snap,
		       strnlen(r->snap, PEER_LAYER_NAME - 1));
		return sizeof(struct peer_layer_find);
	case PEER_OP_FRAG_PUT:
		peer_put32(p + FP(sno), r->sno);
		peer_put32(p + FP(image_blocks), r->nblocks);
		peer_put64(p + FP(reserved), 0);
		return sizeof(struct peer_frag_put);
	case PEER_OP_FRAG_READ:
		memset(p, 0, sizeof(struct peer_frag_read));
		peer_put32(p + FR(sno), r->sno);
		peer_put32(p + FR(block), r->block);
		peer_put32(p + FR(nblocks), r->nblocks);
		p[FR(index)] = r->index;
		p[FR(flags)] = (uint8_t)r->flags;
		return sizeof(struct peer_frag_read); /* with PEER_SEG_F_CRCS: the caller's
							  CRCs follow */
	case PEER_OP_SEG_LIST:
		peer_put32(p + LIST(first), r->first);
		peer_put32(p + LIST(last), r->last);
		peer_put64(p + LIST(reserved), 0);
		return sizeof(struct peer_seg_list);
	case PEER_OP_SEG_VERIFY: /* the CRCs follow: the caller's */
		peer_put32(p + VFY(sno), r->sno);
		peer_put32(p + VFY(block), r->block);
		peer_put32(p + VFY(nblocks), r->nblocks);
		peer_put32(p + VFY(reserved), 0);
		return sizeof(struct peer_seg_verify);
	case PEER_OP_FRAG_VERIFY:
		memset(p, 0, sizeof(struct peer_frag_verify));
		peer_put32(p + FV(sno), r->sno);
		p[FV(index)] = r->index;
		return sizeof(struct peer_frag_verify);
	default: /* EPOCH_RAISE, SEG_FLUSH: empty */
		return 0;
	}
}

/* A LAYER_READ or FRAG_READ reply's rest (after the result): length CRCs, then length
 * blocks, at most max. */
static int crc_reply_decode(const uint8_t *p, size_t rest, uint32_t max,
			    struct peer_seg_reply *out)
{
	if (out->length == 0)
		return -EINVAL;
	if (out->length > max)
		return -EMSGSIZE;
	if (rest != (size_t)out->length * (sizeof(uint32_t) + PEER_SEG_BLOCK))
		return -EINVAL;
	out->nblocks = out->length;
	out->crcs = p + sizeof(struct peer_seg_result);
	out->data = out->crcs + (size_t)out->nblocks * sizeof(uint32_t);
	return 0;
}

int peer_layer_read_check(const struct peer_seg_reply *r)
{
	for (uint32_t i = 0; i < r->nblocks; i++)
		if (crc32c(r->data + (size_t)i * PEER_SEG_BLOCK, PEER_SEG_BLOCK) !=
		    peer_get32(r->crcs + (size_t)i * sizeof(uint32_t)))
			return -EILSEQ;
	return 0;
}

/* A SEG_LIST reply's rest (after the result): length entries, by strictly ascending
 * sno, each with known flags and a zero reserved word. */
static int seg_list_reply_decode(const uint8_t *p, size_t rest, struct peer_seg_reply *out)
{
	const uint8_t *e = p + sizeof(struct peer_seg_result);

	if (out->length > PEER_SEG_LIST_MAX)
		return -EMSGSIZE;
	if (rest != (size_t)out->length * sizeof(struct peer_seg_entry))
		return -EINVAL;
	for (uint32_t i = 0; i < out->length; i++, e += sizeof(struct peer_seg_entry)) {
		if ((peer_get32(e + ENT(flags)) & ~PEER_SEG_ENTRY_F_SEALED) ||
		    peer_get32(e + ENT(reserved)))
			return -EPROTO;
		if (i && peer_get32(e + ENT(sno)) <=
				 peer_get32(e - sizeof(struct peer_seg_entry) + ENT(sno)))
			return -EINVAL; /* one entry per segment, in order */
	}
	out->entries = p + sizeof(struct peer_seg_result);
	return 0;
}

/* A SEG_VERIFY reply's rest (after the result): length block numbers, strictly
 * ascending, within one run (less than PEER_SEG_VERIFY_MAX_BLOCKS apart). */
static int seg_verify_reply_decode(const uint8_t *p, size_t rest, struct peer_seg_reply *out)
{
	const uint8_t *b = p + sizeof(struct peer_seg_result);

	if (out->length > PEER_SEG_VERIFY_MAX_BLOCKS)
		return -EMSGSIZE;
	if (rest != (size_t)out->length * sizeof(uint32_t))
		return -EINVAL;
	for (uint32_t i = 1; i < out->length; i++)
		if (peer_get32(b + (size_t)i * 4) <= peer_get32(b + (size_t)(i - 1) * 4))
			return -EINVAL;
	if (out->length > 1 && peer_get32(b + (size_t)(out->length - 1) * 4) - peer_get32(b) >=
				       PEER_SEG_VERIFY_MAX_BLOCKS)
		return -EINVAL;
	out->bad = b;
	return 0;
}

#define FVD(field) (sizeof(struct peer_seg_result) + offsetof(struct peer_frag_verified, field))

/* A FRAG_VERIFY reply's rest (after the result): peer_frag_verified, length (F) CRCs,
 * nbad block numbers below F, strictly ascending. */
static int frag_verify_reply_decode(const uint8_t *p, size_t rest, struct peer_seg_reply *out)
{
	const uint8_t *b;

	if (rest < sizeof(struct peer_frag_verified))
		return -EINVAL;
	out->frag_crc = peer_get32(p + FVD(frag_crc));
	out->nbad = peer_get32(p + FVD(nbad));
	out->vflags = peer_get32(p + FVD(flags));
	if ((out->vflags & ~PEER_FRAG_V_TABLE_BAD) || peer_get32(p + FVD(reserved)))
		return -EPROTO;
	if (out->length == 0 || out->nbad > out->length)
		return -EINVAL;
	if (out->length > PEER_FRAG_PUT_MAX_BLOCKS)
		return -EMSGSIZE;
	if (rest != sizeof(struct peer_frag_verified) +
			    ((size_t)out->length + out->nbad) * sizeof(uint32_t))
		return -EINVAL;
	out->crcs = p + sizeof(struct peer_seg_result) + sizeof(struct peer_frag_verified);
	b = out->crcs + (size_t)out->length * sizeof(uint32_t);
	for (uint32_t i = 0; i < out->nbad; i++)
		if (peer_get32(b + (size_t)i * 4) >= out->length ||
		    (i && peer_get32(b + (size_t)i * 4) <= peer_get32(b + (size_t)(i - 1) * 4)))
			return -EINVAL;
	out->bad = b;
	return 0;
}

void peer_seg_entry_get(const struct peer_seg_reply *r, uint32_t i,
			struct peer_seg_entry_msg *out)
{
	const uint8_t *e = r->entries + (size_t)i * sizeof(struct peer_seg_entry);

	*out = (struct peer_seg_entry_msg){
		.sno = peer_get32(e + ENT(sno)), .length = peer_get32(e + ENT(length)),
		.epoch = peer_get64(e + ENT(epoch)),
		.sealed = peer_get32(e + ENT(flags)) & PEER_SEG_ENTRY_F_SEALED };
}

void peer_seg_entry_encode(const struct peer_seg_entry_msg *e, void *buf)
{
	uint8_t *p = buf;

	peer_put32(p + ENT(sno), e->sno);
	peer_put32(p + ENT(length), e->length);
	peer_put64(p + ENT(epoch), e->epoch);
	peer_put32(p + ENT(flags), e->sealed ? PEER_SEG_ENTRY_F_SEALED : 0);
	peer_put32(p + ENT(reserved), 0);
}

int peer_seg_reply_decode(uint8_t op, const void *buf, size_t len, struct peer_seg_reply *out)
{
	const uint8_t *p = buf;
	size_t rest;
	uint32_t sealed;

	op &= (uint8_t)~PEER_OP_REPLY;
	*out = (struct peer_seg_reply){ 0 };
	if (!peer_op_seg_request(op))
		return -EOPNOTSUPP;
	if (len < sizeof(struct peer_seg_result))
		return -EINVAL;
	out->result = (int32_t)peer_get32(p + RES(result));
	out->length = peer_get32(p + RES(length));
	if (out->result > 0 || out->result < -4095)
		return -EPROTO;
	rest = len - sizeof(struct peer_seg_result);
	if (out->result < 0 || (op != PEER_OP_SEG_READ && op != PEER_OP_SEG_STAT &&
				op != PEER_OP_LAYER_READ && op != PEER_OP_LAYER_FIND &&
				op != PEER_OP_FRAG_READ && op != PEER_OP_SEG_LIST &&
				op != PEER_OP_SEG_VERIFY && op != PEER_OP_FRAG_VERIFY))
		return rest == 0 ? 0 : -EINVAL;
	if (op == PEER_OP_FRAG_VERIFY)
		return frag_verify_reply_decode(p, rest, out);
	if (op == PEER_OP_SEG_LIST)
		return seg_list_reply_decode(p, rest, out);
	if (op == PEER_OP_SEG_VERIFY)
		return seg_verify_reply_decode(p, rest, out);
	if (op == PEER_OP_LAYER_FIND) {
		if (rest != sizeof(struct peer_layer_found))
			return -EINVAL;
		out->family = peer_get64(p + FOUND(family));
		out->layer = peer_get64(p + FOUND(layer));
		out->blocks = peer_get64(p + FOUND(blocks));
		return out->family && out->layer ? 0 : -EPROTO;
	}
	if (op == PEER_OP_LAYER_READ)
		return crc_reply_decode(p, rest, PEER_LAYER_READ_MAX_BLOCKS, out);
	if (op == PEER_OP_FRAG_READ)
		return crc_reply_decode(p, rest, PEER_FRAG_READ_MAX_BLOCKS, out);
	if (op == PEER_OP_SEG_STAT) {
		if (rest != sizeof(struct peer_seg_stat))
			return -EINVAL;
		out->epoch = peer_get64(p + STAT(epoch));
		sealed = peer_get32(p + STAT(sealed));
		if (sealed > 1 || peer_get32(p + STAT(reserved)))
			return -EPROTO;
		out->sealed = sealed;
		return 0;
	}
	if (rest == 0 || rest % PEER_SEG_BLOCK)
		return -EINVAL;
	if (rest / PEER_SEG_BLOCK > PEER_SEG_READ_MAX_BLOCKS)
		return -EMSGSIZE;
	out->nblocks = (uint32_t)(rest / PEER_SEG_BLOCK);
	out->data = p + sizeof(struct peer_seg_result);
	return 0;
}

size_t peer_seg_reply_encode(uint8_t op, const struct peer_seg_reply *r, void *buf)
{
	uint8_t *p = buf;

	peer_put32(p + RES(result), (uint32_t)r->result);
	peer_put32(p + RES(length), r->length);
	op &= (uint8_t)~PEER_OP_REPLY;
	if (op == PEER_OP_LAYER_FIND && r->result == 0) {
		peer_put64(p + FOUND(family), r->family);
		peer_put64(p + FOUND(layer), r->layer);
		peer_put64(p + FOUND(blocks), r->blocks);
		return sizeof(struct peer_seg_result) + sizeof(struct peer_layer_found);
	}
	if (op == PEER_OP_FRAG_VERIFY && r->result == 0) {
		peer_put32(p + FVD(frag_crc), r->frag_crc);
		peer_put32(p + FVD(nbad), r->nbad);
		peer_put32(p + FVD(flags), r->vflags);
		peer_put32(p + FVD(reserved), 0);
		return sizeof(struct peer_seg_result) + sizeof(struct peer_frag_verified);
	}
	if (op != PEER_OP_SEG_STAT || r->result < 0)
		return sizeof(struct peer_seg_result);
	peer_put64(p + STAT(epoch), r->epoch);
	peer_put32(p + STAT(sealed), r->sealed ? 1 : 0);
	peer_put32(p + STAT(reserved), 0);
	return sizeof(struct peer_seg_result) + sizeof(struct peer_seg_stat);
}
