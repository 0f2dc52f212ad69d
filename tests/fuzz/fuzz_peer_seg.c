/* tests/fuzz/fuzz_peer_seg.c — libFuzzer target for the segment ops' payload decoders
 * (replication/peer_proto.c: peer_seg_req_decode, peer_seg_reply_decode), as a holder
 * meets a hostile member's requests and an owner a hostile holder's replies.
 *
 * The first input byte picks the op: its low 3 bits one of SEG_OPEN..SEG_STAT (bit 4
 * set: bits 5-6 pick LAYER_READ, FRAG_PUT, FRAG_READ or SEG_LIST instead, and with bit 7
 * also set SEG_VERIFY, or FRAG_VERIFY with bit 0 set too), bit 3 a reply; the
 * rest is the payload. Besides not crashing, what a decoder accepts must hold: data
 * inside the payload and exactly its announced blocks, counts and ranges within their
 * bounds (a READ's or FRAG_READ's run decodes either way: peer_seg_req_check gives the
 * answer its bounds call for), and the fixed part re-encoded from the decoded fields
 * giving the very bytes received (reserved fields are zero, so there is one encoding).
 * Seeds: tests/fuzz/corpus/peer_seg/. A crash becomes a named test in
 * tests/unit/replication/test_peer_proto.c.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "replication/peer_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
	if (!ok)
		__builtin_trap();
}

static void request(uint8_t op, const uint8_t *p, size_t len)
{
	struct peer_seg_req r;
	uint8_t head[PEER_SEG_HEAD_MAX];
	size_t head_len;

	if (peer_seg_req_decode(op, p, len, &r) < 0)
		return;
	check(r.op == op);
	head_len = peer_seg_req_encode(&r, head);
	check(head_len <= len && memcmp(head, p, head_len) == 0);
	if (op == PEER_OP_FRAG_PUT) {
		check(r.nblocks >= PEER_FRAG_IMAGE_MIN && r.nblocks <= PEER_FRAG_PUT_MAX_BLOCKS);
		check(r.data == p + head_len);
		check(len == head_len + (size_t)r.nblocks * PEER_SEG_BLOCK);
	} else if (op == PEER_OP_SEG_APPEND) {
		check(r.nblocks >= 1 && r.nblocks <= PEER_SEG_APPEND_MAX_BLOCKS);
		check(r.data == p + head_len);
		check(len == head_len + (size_t)r.nblocks * PEER_SEG_BLOCK);
		check((uint64_t)r.block + r.nblocks <= UINT32_MAX);
		peer_seg_data_check(&r); /* reads exactly the data */
	} else if (((op == PEER_OP_SEG_READ || op == PEER_OP_FRAG_READ) &&
		    (r.flags & PEER_SEG_F_CRCS)) ||
		   op == PEER_OP_SEG_VERIFY) {
		check(r.data == p + head_len);
		check(len == head_len + (size_t)r.nblocks * sizeof(uint32_t));
	} else {
		check(len == head_len && r.data == NULL);
	}
	/* a READ's or FRAG_READ's run is peer_seg_req_check's: one the op does not allow
	 * decodes (the holder answers it with the error), and it says which */
	if (op == PEER_OP_SEG_READ || op == PEER_OP_FRAG_READ) {
		uint32_t max = op == PEER_OP_SEG_READ ? PEER_SEG_READ_MAX_BLOCKS
						      : PEER_FRAG_READ_MAX_BLOCKS;
		bool none_or_wraps = r.nblocks == 0 || (uint64_t)r.block + r.nblocks > UINT32_MAX;

		check(peer_seg_req_check(&r) ==
		      (none_or_wraps ? -EINVAL : r.nblocks > max ? -EMSGSIZE : 0));
	} else {
		check(peer_seg_req_check(&r) == 0);
	}
	if (op == PEER_OP_SEG_VERIFY)
		check(r.nblocks >= 1 && r.nblocks <= PEER_SEG_VERIFY_MAX_BLOCKS &&
		      (uint64_t)r.block + r.nblocks <= UINT32_MAX);
	if (op == PEER_OP_SEG_OPEN)
		check(r.segment_blocks != 0);
	if (op == PEER_OP_LAYER_READ)
		check(r.layer != 0 && r.nblocks >= 1 && r.nblocks <= PEER_LAYER_READ_MAX_BLOCKS &&
		      r.lba <= UINT64_MAX - r.nblocks);
	if (op == PEER_OP_SEG_LIST)
		check(r.first <= r.last);
}

/* A SEG_LIST reply accepted: its entries fill the rest exactly, by strictly ascending
 * number, and each re-encodes to the bytes received. */
static void list_reply(const uint8_t *p, size_t len, size_t head_len,
		       const struct peer_seg_reply *r)
{
	uint8_t e[sizeof(struct peer_seg_entry)];
	struct peer_seg_entry_msg m, prev = { 0 };

	check(r->result == 0 && r->entries == p + head_len && r->length <= PEER_SEG_LIST_MAX);
	check(len == head_len + (size_t)r->length * sizeof(struct peer_seg_entry));
	for (uint32_t i = 0; i < r->length; i++) {
		peer_seg_entry_get(r, i, &m);
		check(i == 0 || m.sno > prev.sno);
		peer_seg_entry_encode(&m, e);
		check(memcmp(e, r->entries + (size_t)i * sizeof(e), sizeof(e)) == 0);
		prev = m;
	}
}

/* A SEG_VERIFY reply accepted: its block numbers fill the rest exactly, strictly
 * ascending, within one run. */
static void verify_reply(const uint8_t *p, size_t len, size_t head_len,
			 const struct peer_seg_reply *r)
{
	check(r->result == 0 && r->bad == p + head_len &&
	      r->length <= PEER_SEG_VERIFY_MAX_BLOCKS);
	check(len == head_len + (size_t)r->length * sizeof(uint32_t));
	for (uint32_t i = 1; i < r->length; i++)
		check(peer_seg_verify_bad(r, i) > peer_seg_verify_bad(r, i - 1) &&
		      peer_seg_verify_bad(r, i) - peer_seg_verify_bad(r, 0) <
			      PEER_SEG_VERIFY_MAX_BLOCKS);
}

/* A FRAG_VERIFY reply accepted: its head, F CRCs and nbad block numbers below F,
 * strictly ascending, fill the rest exactly. */
static void frag_verify_reply(const uint8_t *p, size_t len, size_t head_len,
			      const struct peer_seg_reply *r)
{
	check(r->result == 0 && r->crcs == p + head_len && r->length >= 1 &&
	      r->length <= PEER_FRAG_PUT_MAX_BLOCKS && r->nbad <= r->length);
	check(r->bad == r->crcs + (size_t)r->length * sizeof(uint32_t));
	check(len == head_len + ((size_t)r->length + r->nbad) * sizeof(uint32_t));
	for (uint32_t i = 0; i < r->nbad; i++)
		check(peer_seg_verify_bad(r, i) < r->length &&
		      (i == 0 || peer_seg_verify_bad(r, i) > peer_seg_verify_bad(r, i - 1)));
}

static void reply(uint8_t op, const uint8_t *p, size_t len)
{
	struct peer_seg_reply r;
	uint8_t head[PEER_SEG_HEAD_MAX];
	size_t head_len;

	if (peer_seg_reply_decode(op, p, len, &r) < 0)
		return;
	check(r.result <= 0 && r.result >= -4095);
	head_len = peer_seg_reply_encode(op, &r, head);
	check(head_len <= len && memcmp(head, p, head_len) == 0);
	if ((op & ~PEER_OP_REPLY) == PEER_OP_SEG_LIST && r.result == 0) {
		list_reply(p, len, head_len, &r);
	} else if ((op & ~PEER_OP_REPLY) == PEER_OP_SEG_VERIFY && r.result == 0) {
		verify_reply(p, len, head_len, &r);
	} else if ((op & ~PEER_OP_REPLY) == PEER_OP_FRAG_VERIFY && r.result == 0) {
		frag_verify_reply(p, len, head_len, &r);
	} else if (r.data && ((op & ~PEER_OP_REPLY) == PEER_OP_LAYER_READ ||
		       (op & ~PEER_OP_REPLY) == PEER_OP_FRAG_READ)) {
		check(r.result == 0 && r.crcs == p + head_len);
		check(r.nblocks >= 1 && r.nblocks <= ((op & ~PEER_OP_REPLY) == PEER_OP_LAYER_READ
							      ? PEER_LAYER_READ_MAX_BLOCKS
							      : PEER_FRAG_READ_MAX_BLOCKS));
		check(r.data == r.crcs + (size_t)r.nblocks * sizeof(uint32_t));
		check(len == head_len + (size_t)r.nblocks * (sizeof(uint32_t) + PEER_SEG_BLOCK));
		peer_layer_read_check(&r); /* reads exactly the CRCs and the blocks */
	} else if (r.data) {
		check(r.result == 0 && (op & ~PEER_OP_REPLY) == PEER_OP_SEG_READ);
		check(r.data == p + head_len);
		check(r.nblocks >= 1 && r.nblocks <= PEER_SEG_READ_MAX_BLOCKS);
		check(len == head_len + (size_t)r.nblocks * PEER_SEG_BLOCK);
	} else {
		check(len == head_len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t op;
	static const uint8_t more[4] = { PEER_OP_LAYER_READ, PEER_OP_FRAG_PUT, PEER_OP_FRAG_READ,
					 PEER_OP_SEG_LIST };

	if (size < 1)
		return 0;
	op = (uint8_t)(data[0] & 16 ? more[(data[0] >> 5) & 3] : PEER_OP_SEG_OPEN + (data[0] & 7));
	if ((data[0] & 0x90) == 0x90)
		op = data[0] & 1 ? PEER_OP_FRAG_VERIFY : PEER_OP_SEG_VERIFY;
	if (data[0] & 8)
		reply((uint8_t)(op | PEER_OP_REPLY), data + 1, size - 1);
	else
		request(op, data + 1, size - 1);
	return 0;
}
