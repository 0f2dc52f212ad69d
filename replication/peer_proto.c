/* replication/peer_proto.c — decoders and encoders of peer_proto.h. */
#include "replication/peer_proto.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/crc32c.h"

/* The ops this version implements, with their payload bounds. The reserved segment
 * ops are absent on purpose: an op gets a row when its handler exists. */
static const struct op_info {
	uint8_t op;
	const char *name;
	uint32_t min, max;
} ops[] = {
	{ PEER_OP_HELLO, "HELLO", sizeof(struct peer_hello), sizeof(struct peer_hello) },
	{ PEER_OP_CHALLENGE, "CHALLENGE", sizeof(struct peer_challenge),
	  sizeof(struct peer_challenge) },
	{ PEER_OP_AUTH, "AUTH", sizeof(struct peer_auth), sizeof(struct peer_auth) },
	{ PEER_OP_AUTH_OK, "AUTH_OK", 0, 0 },
	{ PEER_OP_PING, "PING", 0, PEER_PING_MAX },
	{ PEER_OP_PONG, "PONG", 0, PEER_PING_MAX },
	{ PEER_OP_ERROR, "ERROR", sizeof(struct peer_error),
	  sizeof(struct peer_error) + PEER_ERROR_MSG_MAX },
};
_Static_assert(sizeof(struct peer_error) + PEER_ERROR_MSG_MAX <= PEER_PAYLOAD_MAX,
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

const char *peer_op_name(uint8_t op)
{
	static const char *const reserved[] = { "SEG_OPEN", "SEG_APPEND", "SEG_READ",
						"SEG_SEAL", "SEG_DELETE", "EPOCH_RAISE" };
	static char other[32];
	const struct op_info *oi = op_find(op);

	if (oi)
		return oi->name;
	if (op >= PEER_OP_SEG_OPEN && op <= PEER_OP_EPOCH_RAISE) {
		snprintf(other, sizeof(other), "%s (reserved)", reserved[op - PEER_OP_SEG_OPEN]);
		return other;
	}
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
