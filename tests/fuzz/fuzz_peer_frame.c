/* tests/fuzz/fuzz_peer_frame.c — libFuzzer target for the peer protocol's decoders
 * (replication/peer_proto.c) and the session that cuts a byte stream into frames
 * (replication/peer_session.c), as a node meets them from a hostile peer.
 *
 * The first input byte picks what the rest is fed to:
 *   0  a server session waiting for HELLO (a stranger's first bytes)
 *   1  a client session that sent HELLO (a planted "node" answering us)
 *   2  a server session after a real handshake (a member's session frames: the MAC
 *      stops forgeries, the header and length checks before it must hold anyway)
 *   3  the header and payload decoders directly (a segment op's payload too)
 * Seeds: tests/fuzz/corpus/peer_frame/. A crash becomes a named test in
 * tests/unit/replication/.
 */
#include <stdint.h>
#include <string.h>

#include "common/log.h"
#include "replication/peer_proto.h"
#include "replication/peer_session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct peer_secret *secret(void)
{
	static struct peer_secret *sec;
	static const uint8_t key[PEER_SECRET_BYTES] = { 1, 2, 3 };

	if (!sec && peer_secret_from_bytes(key, &sec) < 0)
		__builtin_trap();
	return sec;
}

static struct peer_session *session(enum peer_role role, uint8_t id)
{
	uint8_t instance[PEER_INSTANCE_BYTES];
	struct peer_session_opts o = { .role = role, .secret = secret(), .instance = instance };
	struct peer_session *s;

	memset(instance, id, sizeof(instance));
	if (peer_session_create(&o, &s) < 0)
		__builtin_trap();
	return s;
}

/* Cuts frames from the stream as replication/peer.c does, until a refusal. */
static void feed(struct peer_session *s, const uint8_t *p, size_t len, struct peer_buf *out)
{
	while (len) {
		struct peer_frame m;
		const char *why;
		size_t need;

		if (peer_session_frame_len(s, p, len, &need, &why) < 0 || need == 0 || need > len)
			return;
		if (need > PEER_HDR_BYTES + PEER_PAYLOAD_MAX + PEER_MAC_BYTES)
			__builtin_trap(); /* the bound peer.c relies on */
		if (peer_session_input(s, p, need, &m, out, &why) < 0)
			return;
		if (m.payload < p || m.payload + m.hdr.payload_len > p + need)
			__builtin_trap();
		p += need;
		len -= need;
	}
}

/* A client and a server session, handshaken through buffers. */
static struct peer_session *open_server(struct peer_buf *out)
{
	struct peer_session *c = session(PEER_CLIENT, 1), *s = session(PEER_SERVER, 2);
	struct peer_buf c2s = { 0 }, s2c = { 0 };

	peer_session_hello(c, &c2s);
	feed(s, c2s.data, c2s.len, &s2c);
	c2s.len = 0;
	feed(c, s2c.data, s2c.len, &c2s);
	s2c.len = 0;
	feed(s, c2s.data, c2s.len, &s2c);
	if (!peer_session_is_open(s))
		__builtin_trap();
	peer_session_destroy(c);
	peer_buf_free(&c2s);
	peer_buf_free(&s2c);
	out->len = 0;
	return s;
}

static void decoders(const uint8_t *p, size_t len)
{
	struct peer_hdr h;
	struct peer_hello_msg hello;
	struct peer_challenge_msg ch;
	struct peer_error_msg e;

	if (peer_hdr_decode(p, len, &h) == 0 && len >= peer_frame_len(&h)) {
		struct peer_seg_req r;
		struct peer_seg_reply rep;

		peer_payload_check(&h, p + PEER_HDR_BYTES);
		/* a segment op's payload as peer.c hands it on (fuzz_peer_seg goes deeper) */
		if (peer_op_seg_request(h.op) &&
		    peer_seg_req_decode(h.op, p + PEER_HDR_BYTES, h.payload_len, &r) == 0 &&
		    peer_seg_req_check(&r) == 0 && h.op == PEER_OP_SEG_APPEND)
			peer_seg_data_check(&r);
		if (peer_op_seg_reply(h.op))
			peer_seg_reply_decode(h.op, p + PEER_HDR_BYTES, h.payload_len, &rep);
	}
	peer_hello_decode(p, len, &hello);
	peer_challenge_decode(p, len, &ch);
	if (peer_error_decode(p, len, &e) == 0 &&
	    (e.msg < (const char *)p || e.msg + e.msg_len > (const char *)p + len))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct peer_buf out = { 0 };
	struct peer_session *s = NULL;

	log_set_level(LOG_ERROR);
	if (size < 1)
		return 0;
	switch (data[0] % 4) {
	case 0:
		s = session(PEER_SERVER, 2);
		break;
	case 1:
		s = session(PEER_CLIENT, 1);
		peer_session_hello(s, &out);
		break;
	case 2:
		s = open_server(&out);
		break;
	default:
		decoders(data + 1, size - 1);
		return 0;
	}
	feed(s, data + 1, size - 1, &out);
	peer_session_destroy(s);
	peer_buf_free(&out);
	return 0;
}
