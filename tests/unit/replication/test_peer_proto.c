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

Test(peer_proto, unknown_and_reserved_ops_refused)
{
	static const uint8_t unknown[] = { 0x00, 0x03, 0x11, 0x7f, 0x80, 0xfe,
					   PEER_OP_SEG_OPEN, PEER_OP_SEG_APPEND, PEER_OP_SEG_READ,
					   PEER_OP_SEG_SEAL, PEER_OP_SEG_DELETE,
					   PEER_OP_EPOCH_RAISE };
	struct peer_hdr d;

	for (size_t i = 0; i < sizeof(unknown); i++) {
		ping_frame();
		frame[5] = unknown[i];
		fix_crc();
		cr_assert_eq(peer_hdr_decode(frame, PEER_HDR_BYTES, &d), -EOPNOTSUPP, "op 0x%02x",
			     unknown[i]);
		cr_assert_not(peer_op_known(unknown[i]));
	}
	cr_assert_str_eq(peer_op_name(PEER_OP_SEG_APPEND), "SEG_APPEND (reserved)");
	cr_assert_str_eq(peer_op_name(0x42), "op 0x42");
	cr_assert_str_eq(peer_op_name(PEER_OP_PING), "PING");
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
