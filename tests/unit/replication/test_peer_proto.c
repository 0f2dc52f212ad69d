/* tests/unit/replication/test_peer_proto.c — replication/peer_proto.c: the frame header
 * and payload codecs, and every refusal of their decoders. */
#include "replication/peer_proto.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "common/crc32c.h"

static uint8_t frame[PEER_HDR_BYTES + PEER_PING_MAX];

/* A PING frame with a 5-byte payload, header and payload CRCs right. */
static struct peer_hdr ping_frame(void)
{
	struct peer_hdr h = { .op = PEER_OP_PING, .payload_len = 5, .request_id = 77,
			      .volume_id = 12, .epoch = 3 };

	memcpy(frame + PEER_HDR_BYTES, "hello", 5);
	h.payload_crc = crc32c(frame + PEER_HDR_BYTES, 5);
	peer_hdr_encode(&h, frame);
	return h;
}

/* Rewrites the header's CRC after a test changed a field: the refusal is then the
 * field's, not the CRC's. */
static void fix_crc(void)
{
	peer_put32(frame + offsetof(struct peer_frame_hdr, hdr_crc), crc32c(frame, 44));
}

Test(peer_proto, header_round_trip)
{
	struct peer_hdr h = ping_frame(), d;

	cr_assert_eq(peer_hdr_decode(frame, PEER_HDR_BYTES, &d), 0);
	cr_assert_eq(d.op, PEER_OP_PING);
	cr_assert_eq(d.flags, 0);
	cr_assert_eq(d.payload_len, 5);
	cr_assert_eq(d.payload_crc, h.payload_crc);
	cr_assert_eq(d.request_id, 77);
	cr_assert_eq(d.volume_id, 12);
	cr_assert_eq(d.epoch, 3);
	cr_assert_eq(peer_payload_check(&d, frame + PEER_HDR_BYTES), 0);
	cr_assert_eq(peer_frame_len(&d), PEER_HDR_BYTES + 5);
	d.flags = PEER_F_MAC;
	cr_assert_eq(peer_frame_len(&d), PEER_HDR_BYTES + 5 + PEER_MAC_BYTES);
}

Test(peer_proto, little_endian_on_the_wire)
{
	ping_frame();
	cr_assert_eq(memcmp(frame, "QPER", 4), 0, "the magic reads QPER");
	cr_assert_eq(frame[4], PEER_VERSION);
	cr_assert_eq(frame[5], PEER_OP_PING);
	cr_assert_eq(frame[8], 5, "payload_len's low byte first");
	cr_assert_eq(frame[16], 77, "request_id's low byte first");
}

Test(peer_proto, truncated_header_refused)
{
	struct peer_hdr d;

	ping_frame();
	for (size_t len = 0; len < PEER_HDR_BYTES; len++)
		cr_assert_eq(peer_hdr_decode(frame, len, &d), -EINVAL, "len %zu", len);
}

Test(peer_proto, bad_magic_refused)
{
	struct peer_hdr d;

	ping_frame();
	frame[0] ^= 1;
	fix_crc();
	cr_assert_eq(peer_hdr_decode(frame, PEER_HDR_BYTES, &d), -EPROTO);
}

Test(peer_proto, other_version_refused)
{
	struct peer_hdr d;

	ping_frame();
	frame[4] = PEER_VERSION + 1;
	fix_crc();
	cr_assert_eq(peer_hdr_decode(frame, PEER_HDR_BYTES, &d), -EPROTONOSUPPORT);
}

Test(peer_proto, bad_header_crc_refused)
{
	struct peer_hdr d;

	for (size_t byte = 5; byte < PEER_HDR_BYTES; byte++) {
		ping_frame();
		frame[byte] ^= 0x40;
		cr_assert_eq(peer_hdr_decode(frame, PEER_HDR_BYTES, &d), -EILSEQ, "byte %zu", byte);
	}
}

Test(peer_proto, bad_payload_crc_refused)
{
	struct peer_hdr h = ping_frame();

	frame[PEER_HDR_BYTES + 2] ^= 1;
	cr_assert_eq(peer_payload_check(&h, frame + PEER_HDR_BYTES), -EILSEQ);
}

Test(peer_proto, unknown_flags_and_reserved_refused)
{
	struct peer_hdr d;

	ping_frame();
	peer_put16(frame + offsetof(struct peer_frame_hdr, flags), 1u << 3);
	fix_crc();
	cr_assert_eq(peer_hdr_decode(frame, PEER_HDR_BYTES, &d), -EPROTO);
	ping_frame();
	peer_put32(frame + offsetof(struct peer_frame_hdr, reserved), 1);
	fix_crc();
	cr_assert_eq(peer_hdr_decode(frame, PEER_HDR_BYTES, &d), -EPROTO);
}

Test(peer_proto, unknown_ops_refused)
{
	static const uint8_t unknown[] = { 0x00, 0x03, 0x11, 0x1f, 0x2f, 0x30, 0x7f, 0x80,
					   0xaf, 0xfe };
	struct peer_hdr d;

	for (size_t i = 0; i < sizeof(unknown); i++) {
		ping_frame();
		frame[5] = unknown[i];
		fix_crc();
		cr_assert_eq(peer_hdr_decode(frame, PEER_HDR_BYTES, &d), -EOPNOTSUPP, "op 0x%02x",
			     unknown[i]);
		cr_assert_not(peer_op_known(unknown[i]));
	}
	cr_assert_str_eq(peer_op_name(PEER_OP_SEG_APPEND), "SEG_APPEND");
	cr_assert_str_eq(peer_op_name(PEER_OP_SEG_APPEND | PEER_OP_REPLY), "SEG_APPEND reply");
	cr_assert_str_eq(peer_op_name(0x2f), "op 0x2f");
	cr_assert_str_eq(peer_op_name(PEER_OP_FRAG_PUT), "FRAG_PUT");
	cr_assert_str_eq(peer_op_name(PEER_OP_PING), "PING");
}

/* Every segment op and its reply is known, of the session, and has its bounds. */
Test(peer_proto, segment_ops_known_with_bounds)
{
	static const struct {
		uint8_t op;
		uint32_t min, max, rmax;
	} want[] = {
		{ PEER_OP_SEG_OPEN, 16, 16, 8 },
		{ PEER_OP_SEG_APPEND, 24 + 4096, 16u << 20, 8 },
		{ PEER_OP_SEG_READ, 16, 16 + 4 * 1024, 8 + (4u << 20) },
		{ PEER_OP_SEG_SEAL, 8, 8, 8 },
		{ PEER_OP_SEG_DELETE, 8, 8, 8 },
		{ PEER_OP_EPOCH_RAISE, 0, 0, 8 },
		{ PEER_OP_SEG_FLUSH, 0, 0, 8 },
		{ PEER_OP_SEG_STAT, 8, 8, 24 },
		{ PEER_OP_LAYER_READ, 24, 24, 8 + 256 * (4 + 4096) },
		{ PEER_OP_LAYER_FIND, 128, 128, 8 + 24 },
		{ PEER_OP_FRAG_PUT, 16 + 3 * 4096, 16u << 20, 8 },
		{ PEER_OP_FRAG_READ, 16, 16 + 4 * 1024, 8 + 1024 * (4 + 4096) },
		{ PEER_OP_SEG_LIST, 16, 16, 8 + 4096 * 24 },
		{ PEER_OP_SEG_VERIFY, 16 + 4, 16 + 1024 * 4, 8 + 1024 * 4 },
		{ PEER_OP_FRAG_VERIFY, 16, 16, 8 + 16 + 2 * 4095 * 4 },
	};
	uint32_t min, max;

	cr_assert_eq(sizeof(want) / sizeof(want[0]), PEER_OP_SEG_LAST - PEER_OP_SEG_FIRST + 1);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		uint8_t op = want[i].op, rop = op | PEER_OP_REPLY;

		cr_assert(peer_op_known(op) && peer_op_known(rop), "op 0x%02x", op);
		cr_assert(peer_op_is_session(op) && peer_op_is_session(rop));
		cr_assert(peer_op_seg_request(op) && !peer_op_seg_reply(op));
		cr_assert(peer_op_seg_reply(rop) && !peer_op_seg_request(rop));
		peer_op_payload_bounds(op, &min, &max);
		cr_assert_eq(min, want[i].min, "op 0x%02x", op);
		cr_assert_eq(max, want[i].max, "op 0x%02x", op);
		peer_op_payload_bounds(rop, &min, &max);
		cr_assert_eq(min, 8, "reply 0x%02x", rop);
		cr_assert_eq(max, want[i].rmax, "reply 0x%02x", rop);
	}
	cr_assert_not(peer_op_is_session(PEER_OP_HELLO));
	cr_assert(peer_op_is_session(PEER_OP_PING));
	cr_assert_not(peer_op_seg_request(PEER_OP_PING));
	cr_assert_not(peer_op_seg_reply(PEER_OP_PONG));
	cr_assert_not(peer_op_seg_reply(PEER_OP_ERROR));
}

/* A header announcing more than an op allows is refused on its 48 bytes. */
Test(peer_proto, segment_op_lengths_checked_in_the_header)
{
	struct peer_hdr h = { .op = PEER_OP_SEG_APPEND, .payload_len = 24 + 4095 }, d;
	uint8_t hdr[PEER_HDR_BYTES];

	peer_hdr_encode(&h, hdr);
	cr_assert_eq(peer_hdr_decode(hdr, sizeof(hdr), &d), -EINVAL, "below one block");
	h.payload_len = (16u << 20) + 1;
	peer_hdr_encode(&h, hdr);
	cr_assert_eq(peer_hdr_decode(hdr, sizeof(hdr), &d), -EMSGSIZE);
	h = (struct peer_hdr){ .op = PEER_OP_SEG_READ | PEER_OP_REPLY,
			       .payload_len = 8 + (4u << 20) + 1 };
	peer_hdr_encode(&h, hdr);
	cr_assert_eq(peer_hdr_decode(hdr, sizeof(hdr), &d), -EMSGSIZE, "a READ reply past 4 MiB");
	h = (struct peer_hdr){ .op = PEER_OP_SEG_SEAL, .payload_len = 9 };
	peer_hdr_encode(&h, hdr);
	cr_assert_eq(peer_hdr_decode(hdr, sizeof(hdr), &d), -EMSGSIZE);
	h = (struct peer_hdr){ .op = PEER_OP_EPOCH_RAISE, .payload_len = 1 };
	peer_hdr_encode(&h, hdr);
	cr_assert_eq(peer_hdr_decode(hdr, sizeof(hdr), &d), -EMSGSIZE);
	h = (struct peer_hdr){ .op = PEER_OP_SEG_OPEN | PEER_OP_REPLY, .payload_len = 7 };
	peer_hdr_encode(&h, hdr);
	cr_assert_eq(peer_hdr_decode(hdr, sizeof(hdr), &d), -EINVAL);
}

Test(peer_proto, huge_lengths_refused)
{
	static const uint32_t lens[] = { PEER_PING_MAX + 1, PEER_PAYLOAD_MAX,
					 PEER_PAYLOAD_MAX + 1, UINT32_MAX };
	struct peer_hdr d;

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		ping_frame();
		peer_put32(frame + offsetof(struct peer_frame_hdr, payload_len), lens[i]);
		fix_crc();
		cr_assert_eq(peer_hdr_decode(frame, PEER_HDR_BYTES, &d), -EMSGSIZE, "len %u",
			     lens[i]);
	}
}

Test(peer_proto, handshake_payload_lengths_are_exact)
{
	struct peer_hdr d;
	static const struct {
		uint8_t op;
		uint32_t len;
		int err;
	} bad[] = {
		{ PEER_OP_HELLO, 63, -EINVAL },      { PEER_OP_HELLO, 65, -EMSGSIZE },
		{ PEER_OP_CHALLENGE, 95, -EINVAL },  { PEER_OP_CHALLENGE, 97, -EMSGSIZE },
		{ PEER_OP_AUTH, 31, -EINVAL },       { PEER_OP_AUTH, 33, -EMSGSIZE },
		{ PEER_OP_AUTH_OK, 1, -EMSGSIZE },   { PEER_OP_ERROR, 7, -EINVAL },
		{ PEER_OP_ERROR, 8 + PEER_ERROR_MSG_MAX + 1, -EMSGSIZE },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ping_frame();
		frame[5] = bad[i].op;
		peer_put32(frame + offsetof(struct peer_frame_hdr, payload_len), bad[i].len);
		fix_crc();
		cr_assert_eq(peer_hdr_decode(frame, PEER_HDR_BYTES, &d), bad[i].err, "%s len %u",
			     peer_op_name(bad[i].op), bad[i].len);
	}
}

Test(peer_proto, hello_and_challenge_round_trip)
{
	struct peer_hello_msg h = { .node_id = 0x0102030405060708ull }, hd;
	struct peer_challenge_msg c = { .node_id = 9 }, cd;
	uint8_t buf[sizeof(struct peer_challenge)];

	memset(h.instance, 0xaa, sizeof(h.instance));
	memset(h.nonce, 0xbb, sizeof(h.nonce));
	peer_hello_encode(&h, buf);
	cr_assert_eq(buf[0], 0x08, "node id little-endian");
	cr_assert_eq(peer_hello_decode(buf, sizeof(struct peer_hello), &hd), 0);
	cr_assert_eq(memcmp(&h, &hd, sizeof(h)), 0);
	cr_assert_eq(peer_hello_decode(buf, sizeof(struct peer_hello) - 1, &hd), -EINVAL);
	buf[offsetof(struct peer_hello, reserved)] = 1;
	cr_assert_eq(peer_hello_decode(buf, sizeof(struct peer_hello), &hd), -EPROTO);

	memset(c.instance, 1, sizeof(c.instance));
	memset(c.nonce, 2, sizeof(c.nonce));
	memset(c.proof, 3, sizeof(c.proof));
	peer_challenge_encode(&c, buf);
	cr_assert_eq(peer_challenge_decode(buf, sizeof(buf), &cd), 0);
	cr_assert_eq(memcmp(&c, &cd, sizeof(c)), 0);
	cr_assert_eq(peer_challenge_decode(buf, sizeof(buf) + 1, &cd), -EINVAL);
	buf[offsetof(struct peer_challenge, features)] = 1;
	cr_assert_eq(peer_challenge_decode(buf, sizeof(buf), &cd), -EPROTO);
}

Test(peer_proto, error_round_trip_and_refusals)
{
	uint8_t buf[sizeof(struct peer_error) + PEER_ERROR_MSG_MAX + 8];
	char longmsg[PEER_ERROR_MSG_MAX + 50];
	struct peer_error_msg e;
	size_t n = peer_error_encode(-EOPNOTSUPP, "unknown op", buf);

	cr_assert_eq(n, sizeof(struct peer_error) + 10);
	cr_assert_eq(peer_error_decode(buf, n, &e), 0);
	cr_assert_eq(e.err, EOPNOTSUPP);
	cr_assert_eq(e.msg_len, 10);
	cr_assert_eq(memcmp(e.msg, "unknown op", 10), 0);
	cr_assert_eq(peer_error_decode(buf, n - 1, &e), -EINVAL, "msg_len beyond the payload");
	cr_assert_eq(peer_error_decode(buf, 7, &e), -EINVAL);

	memset(longmsg, 'x', sizeof(longmsg) - 1);
	longmsg[sizeof(longmsg) - 1] = '\0';
	n = peer_error_encode(EIO, longmsg, buf);
	cr_assert_eq(n, sizeof(struct peer_error) + PEER_ERROR_MSG_MAX, "cut at the maximum");

	peer_put16(buf + offsetof(struct peer_error, msg_len), PEER_ERROR_MSG_MAX + 1);
	cr_assert_eq(peer_error_decode(buf, sizeof(buf), &e), -EMSGSIZE);
	peer_put32(buf + offsetof(struct peer_error, err), 0);
	cr_assert_eq(peer_error_decode(buf, n, &e), -EPROTO, "err 0 is no error");
	peer_put32(buf + offsetof(struct peer_error, err), 70000);
	cr_assert_eq(peer_error_decode(buf, n, &e), -EPROTO, "not an errno");
}

/* ---- segment ops ---- */

static uint8_t seg_buf[24 + 3 * PEER_SEG_BLOCK];

/* An APPEND of n blocks of pattern at block 7 of segment 5: head + data in seg_buf. */
static size_t append_payload(uint32_t n, uint32_t flags)
{
	struct peer_seg_req r = { .op = PEER_OP_SEG_APPEND, .sno = 5, .block = 7, .nblocks = n,
				  .flags = flags };
	size_t head;

	memset(seg_buf + 24, 0xc3, (size_t)n * PEER_SEG_BLOCK);
	r.data_crc = crc32c(seg_buf + 24, (size_t)n * PEER_SEG_BLOCK);
	head = peer_seg_req_encode(&r, seg_buf);
	cr_assert_eq(head, 24);
	return head + (size_t)n * PEER_SEG_BLOCK;
}

Test(peer_proto, seg_requests_round_trip)
{
	static const struct peer_seg_req reqs[] = {
		{ .op = PEER_OP_SEG_OPEN, .sno = 1, .segment_blocks = 1024 },
		{ .op = PEER_OP_SEG_READ, .sno = 2, .block = 10, .nblocks = 1024 },
		{ .op = PEER_OP_SEG_SEAL, .sno = 3, .length = 77 },
		{ .op = PEER_OP_SEG_DELETE, .sno = 4 },
		{ .op = PEER_OP_SEG_STAT, .sno = UINT32_MAX },
		{ .op = PEER_OP_EPOCH_RAISE },
		{ .op = PEER_OP_SEG_FLUSH },
		{ .op = PEER_OP_SEG_DELETE, .sno = 5, .kind = PEER_SEG_KIND_FRAG },
		{ .op = PEER_OP_SEG_STAT, .sno = 6, .kind = PEER_SEG_KIND_FRAG },
	};
	static const size_t lens[] = { 16, 16, 8, 8, 8, 0, 0, 8, 8 };
	uint8_t buf[PEER_SEG_HEAD_MAX];

	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		struct peer_seg_req d;
		size_t len = peer_seg_req_encode(&reqs[i], buf);

		cr_assert_eq(len, lens[i], "op 0x%02x", reqs[i].op);
		cr_assert_eq(peer_seg_req_decode(reqs[i].op, buf, len, &d), 0, "op 0x%02x",
			     reqs[i].op);
		cr_assert_eq(memcmp(&d, &reqs[i], sizeof(d)), 0, "op 0x%02x", reqs[i].op);
	}
	/* the layouts on the wire */
	peer_seg_req_encode(&reqs[0], buf);
	cr_assert_eq(buf[0], 1);
	cr_assert_eq(peer_get32(buf + 4), 1024, "segment_blocks at 4");
	peer_seg_req_encode(&reqs[2], buf);
	cr_assert_eq(peer_get32(buf + 4), 77, "length at 4");
}

Test(peer_proto, seg_append_round_trip_and_data_crc)
{
	size_t len = append_payload(3, PEER_SEG_F_FUA);
	struct peer_seg_req d;

	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_APPEND, seg_buf, len, &d), 0);
	cr_assert_eq(d.sno, 5);
	cr_assert_eq(d.block, 7);
	cr_assert_eq(d.nblocks, 3);
	cr_assert_eq(d.flags, PEER_SEG_F_FUA);
	cr_assert_eq(d.data, seg_buf + 24, "the data in place, after the head");
	cr_assert_eq(peer_get32(seg_buf + 16), d.data_crc, "data_crc at 16");
	cr_assert_eq(peer_seg_data_check(&d), 0);
	seg_buf[24 + 2 * PEER_SEG_BLOCK + 100] ^= 1;
	cr_assert_eq(peer_seg_data_check(&d), -EILSEQ, "one bit of the data changed");
}

Test(peer_proto, seg_append_refusals)
{
	struct peer_seg_req d;
	size_t len;

	len = append_payload(2, 0);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_APPEND, seg_buf, len - 1, &d), -EINVAL,
		     "data not whole blocks");
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_APPEND, seg_buf, len + PEER_SEG_BLOCK, &d),
		     -EINVAL, "more data than nblocks says");
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_APPEND, seg_buf, len - PEER_SEG_BLOCK, &d),
		     -EINVAL, "less data than nblocks says");
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_APPEND, seg_buf, 23, &d), -EINVAL);
	len = append_payload(2, 1u << 1);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_APPEND, seg_buf, len, &d), -EPROTO,
		     "an unknown flag");
	len = append_payload(2, 0);
	peer_put32(seg_buf + 20, 1);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_APPEND, seg_buf, len, &d), -EPROTO,
		     "reserved set");
	len = append_payload(2, 0);
	peer_put32(seg_buf + 8, 0);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_APPEND, seg_buf, 24, &d), -EINVAL,
		     "no blocks");
	peer_put32(seg_buf + 8, PEER_SEG_APPEND_MAX_BLOCKS + 1);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_APPEND, seg_buf, len, &d), -EMSGSIZE);
	peer_put32(seg_buf + 8, UINT32_MAX);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_APPEND, seg_buf, len, &d), -EINVAL,
		     "a count whose bytes wrap");
	len = append_payload(2, 0);
	peer_put32(seg_buf + 4, UINT32_MAX);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_APPEND, seg_buf, len, &d), -EINVAL,
		     "a range that wraps");
}

Test(peer_proto, seg_request_refusals)
{
	uint8_t buf[32] = { 0 };
	struct peer_seg_req d;

	/* OPEN: exact length, reserved 0, a size */
	peer_put32(buf + 4, 1024);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_OPEN, buf, 16, &d), 0);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_OPEN, buf, 15, &d), -EINVAL);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_OPEN, buf, 17, &d), -EINVAL);
	buf[15] = 1;
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_OPEN, buf, 16, &d), -EPROTO);
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_OPEN, buf, 16, &d), -EINVAL,
		     "a segment of no blocks");
	/* READ: reserved 0; its run, 1..1024 blocks without a wrap, is checked apart
	 * (peer_seg_req_check: answered, not a malformed frame) */
	peer_put32(buf + 8, 1);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_READ, buf, 16, &d), 0);
	cr_assert_eq(peer_seg_req_check(&d), 0);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_READ, buf, 12, &d), -EINVAL);
	peer_put32(buf + 8, 0);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_READ, buf, 16, &d), 0);
	cr_assert_eq(peer_seg_req_check(&d), -EINVAL, "no blocks");
	peer_put32(buf + 8, PEER_SEG_READ_MAX_BLOCKS + 1);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_READ, buf, 16, &d), 0);
	cr_assert_eq(peer_seg_req_check(&d), -EMSGSIZE);
	peer_put32(buf + 4, UINT32_MAX);
	peer_put32(buf + 8, 2);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_READ, buf, 16, &d), 0);
	cr_assert_eq(peer_seg_req_check(&d), -EINVAL, "wraps");
	memset(buf, 0, sizeof(buf));
	peer_put32(buf + 8, 1);
	peer_put32(buf + 12, 1);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_READ, buf, 16, &d), -EPROTO);
	/* READ with CRCs: exactly one per block after the head */
	peer_put32(buf + 8, 2);
	peer_put32(buf + 12, PEER_SEG_F_CRCS);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_READ, buf, 16, &d), -EINVAL);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_READ, buf, 20, &d), -EINVAL);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_READ, buf, 28, &d), -EINVAL);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_READ, buf, 24, &d), 0);
	cr_assert_eq(d.flags, PEER_SEG_F_CRCS);
	cr_assert_eq(d.data, buf + 16);
	peer_put32(buf + 12, PEER_SEG_F_CRCS | PEER_SEG_F_FUA);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_READ, buf, 24, &d), -EPROTO);
	/* SEAL has a length where DELETE and STAT have reserved */
	memset(buf, 0, sizeof(buf));
	peer_put32(buf + 4, 9);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_SEAL, buf, 8, &d), 0);
	cr_assert_eq(d.length, 9);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_DELETE, buf, 8, &d), -EPROTO);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_STAT, buf, 8, &d), -EPROTO);
	peer_put32(buf + 4, PEER_SEG_KIND_FRAG); /* kinds 0 (a copy) and 1 (a fragment) */
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_DELETE, buf, 8, &d), 0);
	cr_assert_eq(d.kind, PEER_SEG_KIND_FRAG);
	peer_put32(buf + 4, 2);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_STAT, buf, 8, &d), -EPROTO, "kind 2");
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_SEAL, buf, 7, &d), -EINVAL);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_DELETE, buf, 9, &d), -EINVAL);
	/* the empty ones */
	cr_assert_eq(peer_seg_req_decode(PEER_OP_EPOCH_RAISE, buf, 0, &d), 0);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_EPOCH_RAISE, buf, 1, &d), -EINVAL);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_FLUSH, buf, 4, &d), -EINVAL);
	/* not a segment request */
	cr_assert_eq(peer_seg_req_decode(PEER_OP_PING, buf, 0, &d), -EOPNOTSUPP);
	cr_assert_eq(peer_seg_req_decode(0x2f, buf, 0, &d), -EOPNOTSUPP);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_SEAL | PEER_OP_REPLY, buf, 8, &d),
		     -EOPNOTSUPP);
}

Test(peer_proto, seg_replies_round_trip)
{
	uint8_t buf[PEER_SEG_HEAD_MAX + 2 * PEER_SEG_BLOCK];
	struct peer_seg_reply r = { .result = 0, .length = 12 }, d;
	size_t len;

	len = peer_seg_reply_encode(PEER_OP_SEG_APPEND | PEER_OP_REPLY, &r, buf);
	cr_assert_eq(len, 8);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_APPEND, buf, len, &d), 0);
	cr_assert_eq(d.result, 0);
	cr_assert_eq(d.length, 12);
	cr_assert_eq(peer_get32(buf + 4), 12, "length at 4");
	/* a refusal: a negative errno, nothing after it */
	r = (struct peer_seg_reply){ .result = -ESTALE, .length = 3 };
	len = peer_seg_reply_encode(PEER_OP_SEG_STAT, &r, buf);
	cr_assert_eq(len, 8, "a refused STAT has no stat");
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_STAT | PEER_OP_REPLY, buf, len, &d), 0);
	cr_assert_eq(d.result, -ESTALE);
	cr_assert_eq(d.length, 3);
	/* STAT */
	r = (struct peer_seg_reply){ .length = 40, .epoch = 1ull << 40, .sealed = true };
	len = peer_seg_reply_encode(PEER_OP_SEG_STAT, &r, buf);
	cr_assert_eq(len, 24);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_STAT, buf, len, &d), 0);
	cr_assert_eq(d.epoch, 1ull << 40);
	cr_assert(d.sealed);
	cr_assert_eq(d.length, 40);
	/* READ: its blocks after the result */
	r = (struct peer_seg_reply){ .length = 40 };
	len = peer_seg_reply_encode(PEER_OP_SEG_READ, &r, buf);
	cr_assert_eq(len, 8);
	memset(buf + 8, 0x11, 2 * PEER_SEG_BLOCK);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_READ, buf, 8 + 2 * PEER_SEG_BLOCK, &d), 0);
	cr_assert_eq(d.nblocks, 2);
	cr_assert_eq(d.data, buf + 8);
}

Test(peer_proto, seg_reply_refusals)
{
	uint8_t buf[PEER_SEG_HEAD_MAX + PEER_SEG_BLOCK] = { 0 };
	struct peer_seg_reply d;

	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_OPEN, buf, 7, &d), -EINVAL);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_OPEN, buf, 9, &d), -EINVAL,
		     "data after a reply that has none");
	peer_put32(buf, 1);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_OPEN, buf, 8, &d), -EPROTO,
		     "a positive result");
	peer_put32(buf, (uint32_t)-4096);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_OPEN, buf, 8, &d), -EPROTO,
		     "not an errno");
	peer_put32(buf, (uint32_t)-EIO);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_READ, buf, 8 + PEER_SEG_BLOCK, &d),
		     -EINVAL, "a refused READ with data");
	peer_put32(buf, 0);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_READ, buf, 8, &d), -EINVAL,
		     "a READ of nothing");
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_READ, buf, 8 + 100, &d), -EINVAL,
		     "part of a block");
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_STAT, buf, 8, &d), -EINVAL,
		     "a STAT without its stat");
	peer_put32(buf + 16, 2);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_STAT, buf, 24, &d), -EPROTO,
		     "sealed neither 0 nor 1");
	peer_put32(buf + 16, 1);
	peer_put32(buf + 20, 1);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_STAT, buf, 24, &d), -EPROTO,
		     "reserved set");
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_PONG, buf, 8, &d), -EOPNOTSUPP);
}

/* SEG_LIST: a range of numbers asked; the reply's entries, by number, each as SEG_STAT
 * would answer that segment. */
Test(peer_proto, seg_list_round_trip)
{
	struct peer_seg_req r = { .op = PEER_OP_SEG_LIST, .first = 7, .last = UINT32_MAX }, d;
	static const struct peer_seg_entry_msg ents[] = {
		{ .sno = 7, .length = 256, .epoch = 1ull << 40, .sealed = true },
		{ .sno = 9, .length = 3, .epoch = 5, .sealed = false },
	};
	uint8_t buf[8 + 2 * sizeof(struct peer_seg_entry)];
	struct peer_seg_reply rep = { .length = 2 }, got;
	struct peer_seg_entry_msg e;
	size_t len = peer_seg_req_encode(&r, buf);

	cr_assert_eq(len, 16);
	cr_assert_eq(peer_get32(buf + 4), UINT32_MAX, "last at 4");
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_LIST, buf, len, &d), 0);
	cr_assert_eq(memcmp(&d, &r, sizeof(d)), 0);
	cr_assert_eq(peer_seg_reply_encode(PEER_OP_SEG_LIST | PEER_OP_REPLY, &rep, buf), 8);
	for (size_t i = 0; i < 2; i++)
		peer_seg_entry_encode(&ents[i], buf + 8 + i * sizeof(struct peer_seg_entry));
	cr_assert_eq(peer_get32(buf + 8 + 24 + 16), 0, "flags at 16: open");
	cr_assert_eq(peer_get32(buf + 8 + 16), 1, "flags at 16: sealed");
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_LIST, buf, sizeof(buf), &got), 0);
	cr_assert_eq(got.length, 2);
	cr_assert_eq(got.entries, buf + 8);
	for (uint32_t i = 0; i < 2; i++) {
		peer_seg_entry_get(&got, i, &e);
		cr_assert(e.sno == ents[i].sno && e.length == ents[i].length &&
			  e.epoch == ents[i].epoch && e.sealed == ents[i].sealed, "entry %u", i);
	}
	/* none held in the range: no entry */
	rep.length = 0;
	cr_assert_eq(peer_seg_reply_encode(PEER_OP_SEG_LIST, &rep, buf), 8);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_LIST, buf, 8, &got), 0);
	cr_assert_eq(got.length, 0);
}

Test(peer_proto, seg_list_refusals)
{
	static uint8_t buf[8 + (PEER_SEG_LIST_MAX + 1) * sizeof(struct peer_seg_entry)];
	struct peer_seg_req d;
	struct peer_seg_reply got;
	const size_t ent = sizeof(struct peer_seg_entry);

	memset(buf, 0, 16);
	peer_put32(buf, 5);
	peer_put32(buf + 4, 4);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_LIST, buf, 16, &d), -EINVAL, "last < first");
	peer_put32(buf + 4, 5);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_LIST, buf, 16, &d), 0, "one number");
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_LIST, buf, 15, &d), -EINVAL);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_LIST, buf, 17, &d), -EINVAL);
	buf[8] = 1;
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_LIST, buf, 16, &d), -EPROTO, "reserved");

	/* replies: two entries 3 and 4 */
	memset(buf, 0, sizeof(buf));
	peer_put32(buf + 4, 2);
	peer_put32(buf + 8, 3);
	peer_put32(buf + 8 + ent, 4);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_LIST, buf, 8 + 2 * ent, &got), 0);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_LIST, buf, 8 + 2 * ent - 1, &got), -EINVAL,
		     "part of an entry");
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_LIST, buf, 8 + ent, &got), -EINVAL,
		     "fewer entries than its count");
	peer_put32(buf + 8 + ent, 3);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_LIST, buf, 8 + 2 * ent, &got), -EINVAL,
		     "a number twice");
	peer_put32(buf + 8 + ent, 2);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_LIST, buf, 8 + 2 * ent, &got), -EINVAL,
		     "out of order");
	peer_put32(buf + 8 + ent, 4);
	peer_put32(buf + 8 + ent + 16, 2);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_LIST, buf, 8 + 2 * ent, &got), -EPROTO,
		     "an unknown flag");
	peer_put32(buf + 8 + ent + 16, 1);
	peer_put32(buf + 8 + ent + 20, 1);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_LIST, buf, 8 + 2 * ent, &got), -EPROTO,
		     "reserved set");
	peer_put32(buf + 8 + ent + 20, 0);
	peer_put32(buf, (uint32_t)-ESTALE);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_LIST, buf, 8 + 2 * ent, &got), -EINVAL,
		     "a refusal with entries");
	/* more than a reply may carry */
	memset(buf, 0, sizeof(buf));
	for (uint32_t i = 0; i <= PEER_SEG_LIST_MAX; i++)
		peer_put32(buf + 8 + i * ent, i);
	peer_put32(buf + 4, PEER_SEG_LIST_MAX);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_LIST, buf, 8 + PEER_SEG_LIST_MAX * ent, &got),
		     0, "the most");
	peer_put32(buf + 4, PEER_SEG_LIST_MAX + 1);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_LIST, buf, sizeof(buf), &got), -EMSGSIZE);
}

/* A read-around's CRCs: each block is checked against its own. */
Test(peer_proto, seg_read_crcs_check_each_block)
{
	static uint8_t blocks[2 * PEER_SEG_BLOCK];
	uint8_t head[PEER_SEG_HEAD_MAX + 8];
	struct peer_seg_req r = { .op = PEER_OP_SEG_READ, .sno = 3, .block = 5, .nblocks = 2,
				  .flags = PEER_SEG_F_CRCS };
	struct peer_seg_req d;
	size_t n;

	memset(blocks, 7, PEER_SEG_BLOCK);
	memset(blocks + PEER_SEG_BLOCK, 9, PEER_SEG_BLOCK);
	n = peer_seg_req_encode(&r, head);
	cr_assert_eq(n, 16);
	peer_put32(head + n, crc32c(blocks, PEER_SEG_BLOCK));
	peer_put32(head + n + 4, crc32c(blocks + PEER_SEG_BLOCK, PEER_SEG_BLOCK));
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_READ, head, n + 8, &d), 0);
	cr_assert_eq(peer_seg_read_check(&d, blocks), 0);
	blocks[PEER_SEG_BLOCK + 100] ^= 1; /* the second block goes bad */
	cr_assert_eq(peer_seg_read_check(&d, blocks), -EILSEQ);
	d.flags = 0;
	cr_assert_eq(peer_seg_read_check(&d, blocks), 0, "no CRCs asked: nothing checked");
}

/* LAYER_READ: layer, lba and count at their offsets, one encoding, every bound. */
Test(peer_proto, layer_read_round_trip_and_refusals)
{
	uint8_t buf[PEER_SEG_HEAD_MAX + 4];
	struct peer_seg_req r = { .op = PEER_OP_LAYER_READ, .layer = 0x1122334455667788ull,
				  .lba = 1ull << 40, .nblocks = 256 };
	struct peer_seg_req d;
	uint8_t again[PEER_SEG_HEAD_MAX];
	size_t n;

	n = peer_seg_req_encode(&r, buf);
	cr_assert_eq(n, 24);
	cr_assert_eq(peer_get64(buf), r.layer, "layer at 0");
	cr_assert_eq(peer_get64(buf + 8), r.lba, "lba at 8");
	cr_assert_eq(peer_get32(buf + 16), 256, "nblocks at 16");
	cr_assert_eq(peer_seg_req_decode(PEER_OP_LAYER_READ, buf, n, &d), 0);
	cr_assert_eq(d.layer, r.layer);
	cr_assert_eq(d.lba, r.lba);
	cr_assert_eq(d.nblocks, 256);
	cr_assert_null(d.data);
	cr_assert_eq(peer_seg_req_encode(&d, again), n);
	cr_assert_arr_eq(again, buf, n, "one encoding");

	cr_assert_eq(peer_seg_req_decode(PEER_OP_LAYER_READ, buf, n - 1, &d), -EINVAL);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_LAYER_READ, buf, n + 4, &d), -EINVAL,
		     "bytes after the payload");
	peer_put32(buf + 20, 1);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_LAYER_READ, buf, n, &d), -EPROTO, "reserved");
	peer_put32(buf + 20, 0);
	peer_put32(buf + 16, 257);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_LAYER_READ, buf, n, &d), -EMSGSIZE,
		     "past 1 MiB");
	peer_put32(buf + 16, 0);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_LAYER_READ, buf, n, &d), -EINVAL, "nothing");
	peer_put32(buf + 16, 2);
	peer_put64(buf + 8, UINT64_MAX);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_LAYER_READ, buf, n, &d), -EINVAL, "wraps");
	peer_put64(buf + 8, 0);
	peer_put64(buf, 0);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_LAYER_READ, buf, n, &d), -EINVAL,
		     "layer 0 is no layer");
}

/* LAYER_FIND: two NUL-padded names; the reply's family, layer and size at their
 * offsets; every refusal. */
Test(peer_proto, layer_find_round_trip_and_refusals)
{
	uint8_t buf[sizeof(struct peer_layer_find)], rep[PEER_SEG_HEAD_MAX];
	struct peer_seg_req r = { .op = PEER_OP_LAYER_FIND, .volume = "vm0", .snap = "base" };
	struct peer_seg_reply found = { .family = 7, .layer = 9, .blocks = 16384 }, d;
	struct peer_seg_req q;
	size_t n = peer_seg_req_encode(&r, buf);

	cr_assert_eq(n, 128);
	cr_assert_str_eq((const char *)buf, "vm0");
	cr_assert_str_eq((const char *)buf + 64, "base");
	cr_assert_eq(peer_seg_req_decode(PEER_OP_LAYER_FIND, buf, n, &q), 0);
	cr_assert_str_eq(q.volume, "vm0");
	cr_assert_str_eq(q.snap, "base");
	cr_assert_eq(peer_seg_req_decode(PEER_OP_LAYER_FIND, buf, n - 1, &q), -EINVAL);
	buf[70] = 'x'; /* a byte after the snapshot name's NUL */
	cr_assert_eq(peer_seg_req_decode(PEER_OP_LAYER_FIND, buf, n, &q), -EPROTO);
	memset(buf + 64, 'a', 64); /* no NUL: 64 bytes of name */
	cr_assert_eq(peer_seg_req_decode(PEER_OP_LAYER_FIND, buf, n, &q), -EINVAL);
	memset(buf, 0, sizeof(buf)); /* empty names */
	cr_assert_eq(peer_seg_req_decode(PEER_OP_LAYER_FIND, buf, n, &q), -EINVAL);

	n = peer_seg_reply_encode(PEER_OP_LAYER_FIND | PEER_OP_REPLY, &found, rep);
	cr_assert_eq(n, 32);
	cr_assert_eq(peer_get64(rep + 8), 7, "family at 8");
	cr_assert_eq(peer_get64(rep + 16), 9, "layer at 16");
	cr_assert_eq(peer_get64(rep + 24), 16384, "blocks at 24");
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_LAYER_FIND | PEER_OP_REPLY, rep, n, &d), 0);
	cr_assert(d.family == 7 && d.layer == 9 && d.blocks == 16384);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_LAYER_FIND, rep, n - 8, &d), -EINVAL);
	peer_put64(rep + 16, 0);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_LAYER_FIND, rep, n, &d), -EPROTO, "layer 0");
}

/* A LAYER_READ reply: the CRCs, then the blocks, each block checked against its own;
 * a reply whose sizes do not add up is refused. */
Test(peer_proto, layer_read_reply_crcs_then_blocks)
{
	static uint8_t buf[8 + 2 * (4 + PEER_SEG_BLOCK)];
	struct peer_seg_reply r = { .result = 0, .length = 2 }, d;
	size_t len = sizeof(buf);

	cr_assert_eq(peer_seg_reply_encode(PEER_OP_LAYER_READ | PEER_OP_REPLY, &r, buf), 8);
	memset(buf + 16, 0x5a, PEER_SEG_BLOCK);
	memset(buf + 16 + PEER_SEG_BLOCK, 0xa5, PEER_SEG_BLOCK);
	peer_put32(buf + 8, crc32c(buf + 16, PEER_SEG_BLOCK));
	peer_put32(buf + 12, crc32c(buf + 16 + PEER_SEG_BLOCK, PEER_SEG_BLOCK));
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_LAYER_READ | PEER_OP_REPLY, buf, len, &d), 0);
	cr_assert_eq(d.nblocks, 2);
	cr_assert_eq(d.crcs, buf + 8);
	cr_assert_eq(d.data, buf + 16);
	cr_assert_eq(peer_layer_read_check(&d), 0);
	buf[16 + PEER_SEG_BLOCK + 7] ^= 1; /* the second block goes bad on the way */
	cr_assert_eq(peer_layer_read_check(&d), -EILSEQ);

	cr_assert_eq(peer_seg_reply_decode(PEER_OP_LAYER_READ, buf, len - 1, &d), -EINVAL);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_LAYER_READ, buf, 8 + 4 + PEER_SEG_BLOCK, &d),
		     -EINVAL, "fewer blocks than its length says");
	peer_put32(buf + 4, 0);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_LAYER_READ, buf, 8, &d), -EINVAL,
		     "a read of nothing");
	peer_put32(buf + 4, 257);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_LAYER_READ, buf, len, &d), -EMSGSIZE);
	/* a refusal carries nothing after the result */
	r = (struct peer_seg_reply){ .result = -ENOENT };
	cr_assert_eq(peer_seg_reply_encode(PEER_OP_LAYER_READ, &r, buf), 8);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_LAYER_READ, buf, 8, &d), 0);
	cr_assert_eq(d.result, -ENOENT);
	cr_assert_null(d.data);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_LAYER_READ, buf, 12, &d), -EINVAL);
}

/* FRAG_PUT: sno and the image's blocks at their offsets, the image exactly that long. */
Test(peer_proto, frag_put_round_trip_and_refusals)
{
	static uint8_t buf[16 + 4 * PEER_SEG_BLOCK];
	struct peer_seg_req r = { .op = PEER_OP_FRAG_PUT, .sno = 0x01020304, .nblocks = 4 }, d;
	size_t n = peer_seg_req_encode(&r, buf), len = sizeof(buf);

	cr_assert_eq(n, 16);
	cr_assert_eq(peer_get32(buf + 0), 0x01020304);
	cr_assert_eq(peer_get32(buf + 4), 4);
	memset(buf + 16, 0x3c, 4 * PEER_SEG_BLOCK);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_PUT, buf, len, &d), 0);
	cr_assert_eq(d.sno, 0x01020304);
	cr_assert_eq(d.nblocks, 4);
	cr_assert_eq(d.data, buf + 16);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_PUT, buf, len - 1, &d), -EINVAL);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_PUT, buf, len - PEER_SEG_BLOCK, &d),
		     -EINVAL, "fewer blocks than it says");
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_PUT, buf, 15, &d), -EINVAL);
	buf[13] = 1;
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_PUT, buf, len, &d), -EPROTO, "reserved");
	buf[13] = 0;
	peer_put32(buf + 4, 2);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_PUT, buf, 16 + 2 * PEER_SEG_BLOCK, &d),
		     -EINVAL, "an image has a header, a table and data: 3 blocks at least");
	peer_put32(buf + 4, 4096);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_PUT, buf, len, &d), -EMSGSIZE);
}

/* FRAG_READ: sno, block, count and index at their offsets; every bound. */
Test(peer_proto, frag_read_round_trip_and_refusals)
{
	uint8_t buf[PEER_SEG_HEAD_MAX];
	struct peer_seg_req r = { .op = PEER_OP_FRAG_READ, .sno = 9, .block = 0x100,
				  .nblocks = 1024, .index = 2 }, d;
	size_t n = peer_seg_req_encode(&r, buf);

	cr_assert_eq(n, 16);
	cr_assert_eq(peer_get32(buf + 4), 0x100);
	cr_assert_eq(buf[12], 2);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_READ, buf, n, &d), 0);
	cr_assert_eq(d.sno, 9);
	cr_assert_eq(d.block, 0x100);
	cr_assert_eq(d.nblocks, 1024);
	cr_assert_eq(d.index, 2);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_READ, buf, n - 1, &d), -EINVAL);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_READ, buf, n + 1, &d), -EINVAL);
	buf[15] = 1;
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_READ, buf, n, &d), -EPROTO, "reserved");
	buf[15] = 0;
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_READ, buf, n, &d), 0);
	cr_assert_eq(peer_seg_req_check(&d), 0, "1024 blocks: the most");
	/* a run the op does not allow decodes (the frame is well formed) and is checked
	 * apart: the holder answers it with the error */
	peer_put32(buf + 8, 1025);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_READ, buf, n, &d), 0);
	cr_assert_eq(peer_seg_req_check(&d), -EMSGSIZE);
	peer_put32(buf + 8, 0);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_READ, buf, n, &d), 0);
	cr_assert_eq(peer_seg_req_check(&d), -EINVAL, "nothing");
	peer_put32(buf + 4, UINT32_MAX);
	peer_put32(buf + 8, 2);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_READ, buf, n, &d), 0);
	cr_assert_eq(peer_seg_req_check(&d), -EINVAL, "wraps");
}

/* FRAG_READ with PEER_SEG_F_CRCS: the flags at 13, exactly one CRC per block after the
 * head; no other flag. */
Test(peer_proto, frag_read_with_crcs_carries_one_per_block)
{
	uint8_t buf[16 + 3 * 4];
	struct peer_seg_req r = { .op = PEER_OP_FRAG_READ, .sno = 9, .block = 4, .nblocks = 3,
				  .index = 1, .flags = PEER_SEG_F_CRCS }, d;
	size_t n = peer_seg_req_encode(&r, buf);

	cr_assert_eq(n, 16);
	cr_assert_eq(buf[13], PEER_SEG_F_CRCS);
	for (uint32_t i = 0; i < 3; i++)
		peer_put32(buf + 16 + 4 * i, 0xc0c00000u + i);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_READ, buf, sizeof(buf), &d), 0);
	cr_assert_eq(d.flags, PEER_SEG_F_CRCS);
	cr_assert_eq(d.index, 1);
	cr_assert_eq(d.data, buf + 16);
	cr_assert_eq(peer_get32(d.data + 8), 0xc0c00002u);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_READ, buf, n, &d), -EINVAL, "no CRCs");
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_READ, buf, sizeof(buf) - 4, &d), -EINVAL,
		     "a CRC short");
	buf[13] = PEER_SEG_F_FUA;
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_READ, buf, n, &d), -EPROTO, "another flag");
	buf[13] = 0;
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_READ, buf, n, &d), 0, "without: as before");
	cr_assert_eq(d.flags, 0);
	cr_assert_null(d.data);
}

/* A FRAG_READ reply is laid out as a LAYER_READ's, with its own bound. */
Test(peer_proto, frag_read_reply_crcs_then_blocks)
{
	static uint8_t buf[8 + 1025 * (4 + PEER_SEG_BLOCK)];
	struct peer_seg_reply r = { .result = 0, .length = 1 }, d;
	size_t one = 8 + 4 + PEER_SEG_BLOCK;

	cr_assert_eq(peer_seg_reply_encode(PEER_OP_FRAG_READ | PEER_OP_REPLY, &r, buf), 8);
	memset(buf + 12, 0x77, PEER_SEG_BLOCK);
	peer_put32(buf + 8, crc32c(buf + 12, PEER_SEG_BLOCK));
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_FRAG_READ | PEER_OP_REPLY, buf, one, &d), 0);
	cr_assert_eq(d.nblocks, 1);
	cr_assert_eq(d.data, buf + 12);
	cr_assert_eq(peer_layer_read_check(&d), 0);
	buf[12 + 100] ^= 0x10;
	cr_assert_eq(peer_layer_read_check(&d), -EILSEQ);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_FRAG_READ, buf, one + 1, &d), -EINVAL);
	peer_put32(buf + 4, 1024);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_FRAG_READ, buf, 8 + 1024 * (4 + PEER_SEG_BLOCK),
					   &d), 0, "1024 blocks: more than a LAYER_READ's 256");
	peer_put32(buf + 4, 1025);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_FRAG_READ, buf, sizeof(buf), &d), -EMSGSIZE);
}

/* SEG_VERIFY: a run and one CRC per block asked; the reply, the numbers of the blocks
 * that differ, ascending, within the run. */
Test(peer_proto, seg_verify_round_trip)
{
	struct peer_seg_req r = { .op = PEER_OP_SEG_VERIFY, .sno = 9, .block = 100, .nblocks = 3 };
	struct peer_seg_req d;
	static uint8_t blocks[3 * PEER_SEG_BLOCK];
	uint8_t buf[16 + 3 * 4], bad[3 * 4];
	struct peer_seg_reply rep = { .length = 2 }, got;
	size_t len = peer_seg_req_encode(&r, buf);

	cr_assert_eq(len, 16);
	cr_assert_eq(peer_get32(buf + 8), 3, "nblocks at 8");
	memset(blocks, 0x11, sizeof(blocks));
	for (uint32_t i = 0; i < 3; i++)
		peer_put32(buf + 16 + i * 4, crc32c(blocks + i * PEER_SEG_BLOCK, PEER_SEG_BLOCK));
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_VERIFY, buf, sizeof(buf), &d), 0);
	cr_assert(d.sno == 9 && d.block == 100 && d.nblocks == 3 && d.data == buf + 16);
	cr_assert_eq(peer_seg_verify_run(&d, blocks, bad), 0, "a good copy: nothing differs");
	blocks[PEER_SEG_BLOCK + 7] ^= 1;
	blocks[2 * PEER_SEG_BLOCK] ^= 1;
	cr_assert_eq(peer_seg_verify_run(&d, blocks, bad), 2);
	cr_assert(peer_get32(bad) == 101 && peer_get32(bad + 4) == 102, "block numbers, not indexes");
	/* the reply */
	cr_assert_eq(peer_seg_reply_encode(PEER_OP_SEG_VERIFY | PEER_OP_REPLY, &rep, buf), 8);
	memcpy(buf + 8, bad, 8);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_VERIFY, buf, 16, &got), 0);
	cr_assert_eq(got.length, 2);
	cr_assert(peer_seg_verify_bad(&got, 0) == 101 && peer_seg_verify_bad(&got, 1) == 102);
	rep.length = 0;
	peer_seg_reply_encode(PEER_OP_SEG_VERIFY, &rep, buf);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_VERIFY, buf, 8, &got), 0);
	cr_assert_eq(got.length, 0, "a clean run");
}

Test(peer_proto, seg_verify_refusals)
{
	struct peer_seg_req r = { .op = PEER_OP_SEG_VERIFY, .sno = 1, .block = 0, .nblocks = 2 };
	struct peer_seg_req d;
	struct peer_seg_reply rep = { .length = 2 }, got;
	uint8_t buf[16 + 4 * 4] = { 0 };

	peer_seg_req_encode(&r, buf);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_VERIFY, buf, 16 + 4, &d), -EINVAL,
		     "one CRC per block, no fewer");
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_VERIFY, buf, 16 + 12, &d), -EINVAL,
		     "no more");
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_VERIFY, buf, 16, &d), -EINVAL, "no CRC");
	peer_put32(buf + 12, 1);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_VERIFY, buf, 16 + 8, &d), -EPROTO,
		     "reserved");
	r.nblocks = 0;
	peer_seg_req_encode(&r, buf);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_VERIFY, buf, 16, &d), -EINVAL, "empty");
	r.nblocks = PEER_SEG_VERIFY_MAX_BLOCKS + 1;
	peer_seg_req_encode(&r, buf);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_VERIFY, buf, 16, &d), -EMSGSIZE);
	r = (struct peer_seg_req){ .op = PEER_OP_SEG_VERIFY, .block = UINT32_MAX, .nblocks = 2 };
	peer_seg_req_encode(&r, buf);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_SEG_VERIFY, buf, 16 + 8, &d), -EINVAL, "wraps");
	/* replies: numbers ascending, within a run, exactly `length` of them */
	peer_seg_reply_encode(PEER_OP_SEG_VERIFY, &rep, buf);
	peer_put32(buf + 8, 5);
	peer_put32(buf + 12, 5);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_VERIFY, buf, 16, &got), -EINVAL, "twice");
	peer_put32(buf + 12, 4);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_VERIFY, buf, 16, &got), -EINVAL, "order");
	peer_put32(buf + 12, 5 + PEER_SEG_VERIFY_MAX_BLOCKS);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_VERIFY, buf, 16, &got), -EINVAL,
		     "not one run");
	peer_put32(buf + 12, 6);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_VERIFY, buf, 12, &got), -EINVAL, "short");
	rep.length = PEER_SEG_VERIFY_MAX_BLOCKS + 1;
	peer_seg_reply_encode(PEER_OP_SEG_VERIFY, &rep, buf);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_SEG_VERIFY, buf, 16, &got), -EMSGSIZE);
}

/* FRAG_VERIFY: a fragment by index; the reply, the CRC of each block as it is and the
 * numbers of the blocks that fail the fragment's table. */
Test(peer_proto, frag_verify_round_trip)
{
	struct peer_seg_req r = { .op = PEER_OP_FRAG_VERIFY, .sno = 7, .index = 2 }, d;
	struct peer_seg_reply rep = { .length = 3, .frag_crc = 0xabcd, .nbad = 1,
				      .vflags = PEER_FRAG_V_TABLE_BAD }, got;
	uint8_t buf[24 + 4 * 4] = { 0 };

	cr_assert_eq(peer_seg_req_encode(&r, buf), 16);
	cr_assert_eq(buf[4], 2, "index at 4");
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_VERIFY, buf, 16, &d), 0);
	cr_assert(d.sno == 7 && d.index == 2);
	cr_assert_eq(peer_seg_reply_encode(PEER_OP_FRAG_VERIFY | PEER_OP_REPLY, &rep, buf), 24);
	for (uint32_t i = 0; i < 3; i++)
		peer_put32(buf + 24 + i * 4, 100 + i);
	peer_put32(buf + 36, 2);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_FRAG_VERIFY, buf, 40, &got), 0);
	cr_assert(got.length == 3 && got.frag_crc == 0xabcd && got.nbad == 1 &&
		  got.vflags == PEER_FRAG_V_TABLE_BAD);
	cr_assert_eq(peer_get32(got.crcs + 8), 102);
	cr_assert_eq(peer_seg_verify_bad(&got, 0), 2);
	/* a refusal carries nothing */
	rep.result = -ENOENT;
	cr_assert_eq(peer_seg_reply_encode(PEER_OP_FRAG_VERIFY, &rep, buf), 8);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_FRAG_VERIFY, buf, 8, &got), 0);
	cr_assert_eq(got.result, -ENOENT);
}

Test(peer_proto, frag_verify_refusals)
{
	struct peer_seg_req r = { .op = PEER_OP_FRAG_VERIFY, .sno = 1 }, d;
	struct peer_seg_reply rep = { .length = 2, .nbad = 2 }, got;
	uint8_t buf[24 + 4 * 4] = { 0 };

	peer_seg_req_encode(&r, buf);
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_VERIFY, buf, 15, &d), -EINVAL, "short");
	buf[5] = 1;
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_VERIFY, buf, 16, &d), -EPROTO, "reserved");
	buf[5] = 0;
	buf[12] = 1;
	cr_assert_eq(peer_seg_req_decode(PEER_OP_FRAG_VERIFY, buf, 16, &d), -EPROTO, "reserved1");
	/* replies: bad numbers below F, ascending; exactly F CRCs and nbad numbers */
	peer_seg_reply_encode(PEER_OP_FRAG_VERIFY, &rep, buf);
	peer_put32(buf + 32, 1);
	peer_put32(buf + 36, 1);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_FRAG_VERIFY, buf, 40, &got), -EINVAL, "twice");
	peer_put32(buf + 32, 0);
	peer_put32(buf + 36, 2);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_FRAG_VERIFY, buf, 40, &got), -EINVAL, "past F");
	peer_put32(buf + 36, 1);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_FRAG_VERIFY, buf, 40, &got), 0);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_FRAG_VERIFY, buf, 36, &got), -EINVAL, "short");
	peer_put32(buf + 16, 2);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_FRAG_VERIFY, buf, 40, &got), -EPROTO, "flags");
	rep = (struct peer_seg_reply){ .length = 1, .nbad = 2 };
	peer_seg_reply_encode(PEER_OP_FRAG_VERIFY, &rep, buf);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_FRAG_VERIFY, buf, 36, &got), -EINVAL,
		     "more bad than blocks");
	rep = (struct peer_seg_reply){ .length = PEER_FRAG_PUT_MAX_BLOCKS + 1 };
	peer_seg_reply_encode(PEER_OP_FRAG_VERIFY, &rep, buf);
	cr_assert_eq(peer_seg_reply_decode(PEER_OP_FRAG_VERIFY, buf, 40, &got), -EMSGSIZE);
}
