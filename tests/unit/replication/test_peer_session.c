/* tests/unit/replication/test_peer_session.c — replication/peer_session.c: the cluster
 * secret file, the handshake (right secret, wrong secret, replayed handshake,
 * reflected challenge and hello) and the frame MACs (forged, replayed, reflected,
 * missing). Two sessions talk through buffers: no sockets. */
#include "replication/peer_session.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "peer_fixture.h"

static struct peer_secret *secret_a, *secret_b;
static uint8_t inst_c[PEER_INSTANCE_BYTES], inst_s[PEER_INSTANCE_BYTES];

static void setup(void)
{
	secret_a = peer_fixture_secret(0xa5);
	secret_b = peer_fixture_secret(0x5a);
	memset(inst_c, 0xc1, sizeof(inst_c));
	memset(inst_s, 0x51, sizeof(inst_s));
}

static void teardown(void)
{
	peer_secret_destroy(secret_a);
	peer_secret_destroy(secret_b);
}

TestSuite(peer_session, .init = setup, .fini = teardown);

static struct peer_session *session(enum peer_role role, struct peer_secret *sec,
				    const uint8_t *instance)
{
	struct peer_session_opts o = { .role = role, .secret = sec, .node_id = role + 1,
				       .instance = instance };
	struct peer_session *s;

	cr_assert_eq(peer_session_create(&o, &s), 0);
	return s;
}

/* Feeds every whole frame of in to s (answers appended to out), then empties in.
 * Returns the last result of peer_session_input (or of frame_len on a refusal); the
 * last session message in *msg. */
static int deliver(struct peer_session *s, struct peer_buf *in, struct peer_buf *out,
		   struct peer_frame *msg, const char **why)
{
	size_t pos = 0;
	int r = 0;

	*why = NULL;
	while (pos < in->len) {
		size_t need;

		r = peer_session_frame_len(s, in->data + pos, in->len - pos, &need, why);
		if (r < 0)
			break;
		cr_assert_neq(need, 0, "a partial header left in the buffer");
		cr_assert_leq(need, in->len - pos, "a partial frame left in the buffer");
		r = peer_session_input(s, in->data + pos, need, msg, out, why);
		if (r < 0)
			break;
		pos += need;
	}
	in->len = 0;
	return r;
}

struct pair {
	struct peer_session *c, *s;
	struct peer_buf c2s, s2c; /* frames on their way */
	struct peer_frame msg;
	const char *why;
};

static void pair_free(struct pair *p)
{
	peer_session_destroy(p->c);
	peer_session_destroy(p->s);
	peer_buf_free(&p->c2s);
	peer_buf_free(&p->s2c);
}

static void pair_new(struct pair *p, struct peer_secret *cs, struct peer_secret *ss)
{
	p->c = session(PEER_CLIENT, cs, inst_c);
	p->s = session(PEER_SERVER, ss, inst_s);
}

/* The first n steps of the handshake, each expected to pass: 1 the client's HELLO,
 * 2 the server's CHALLENGE, 3 the client's AUTH, 4 the server's AUTH_OK, 5 the
 * client takes it. */
static void pair_steps(struct pair *p, int n)
{
	if (n >= 1)
		cr_assert_eq(peer_session_hello(p->c, &p->c2s), 0);
	if (n >= 2)
		cr_assert_eq(deliver(p->s, &p->c2s, &p->s2c, &p->msg, &p->why), 0, "HELLO: %s",
			     p->why);
	if (n >= 3)
		cr_assert_eq(deliver(p->c, &p->s2c, &p->c2s, &p->msg, &p->why), 0,
			     "CHALLENGE: %s", p->why);
	if (n >= 4)
		cr_assert_eq(deliver(p->s, &p->c2s, &p->s2c, &p->msg, &p->why), 0, "AUTH: %s",
			     p->why);
	if (n >= 5)
		cr_assert_eq(deliver(p->c, &p->s2c, &p->c2s, &p->msg, &p->why), 0,
			     "AUTH_OK: %s", p->why);
}

/* The whole handshake, checking each step. */
static void handshake(struct pair *p, struct peer_secret *cs, struct peer_secret *ss)
{
	pair_new(p, cs, ss);
	pair_steps(p, 4);
	cr_assert(peer_session_is_open(p->s));
	cr_assert_not(peer_session_is_open(p->c), "open only after AUTH_OK");
	cr_assert_eq(deliver(p->c, &p->s2c, &p->c2s, &p->msg, &p->why), 0, "AUTH_OK: %s",
		     p->why);
	cr_assert(peer_session_is_open(p->c));
}

static void send_ping(struct peer_session *s, uint64_t id, const char *text,
		      struct peer_buf *out)
{
	struct peer_hdr h = { .op = PEER_OP_PING, .request_id = id, .volume_id = 4, .epoch = 2,
			      .payload_len = (uint32_t)strlen(text) };

	cr_assert_eq(peer_session_send(s, &h, text, out), 0);
}

/* A frame's payload CRC field set to crc, its header CRC made right again. */
static void put_crcs(uint8_t *frame, uint32_t crc)
{
	peer_put32(frame + offsetof(struct peer_frame_hdr, payload_crc), crc);
	peer_put32(frame + offsetof(struct peer_frame_hdr, hdr_crc), crc32c(frame, 44));
}

/* The CRC32C of a frame's payload. */
static uint32_t payload_crc32c(const uint8_t *frame)
{
	return crc32c(frame + PEER_HDR_BYTES,
		      peer_get32(frame + offsetof(struct peer_frame_hdr, payload_len)));
}

/* Rewrites a frame's CRCs after a test changed its payload (a frame with a MAC has
 * no payload CRC, 0): only the MAC, if any, can then tell. */
static void fix_crcs(uint8_t *frame)
{
	bool mac = peer_get16(frame + offsetof(struct peer_frame_hdr, flags)) & PEER_F_MAC;

	put_crcs(frame, mac ? 0 : payload_crc32c(frame));
}

Test(peer_session, right_secret_opens_both_ways)
{
	struct pair p = { 0 };

	handshake(&p, secret_a, secret_a);
	cr_assert_eq(peer_session_peer_node(p.s), 1, "the client's node id");
	cr_assert_eq(peer_session_peer_node(p.c), 2, "the server's node id");
	send_ping(p.c, 7, "ping", &p.c2s);
	cr_assert_eq(deliver(p.s, &p.c2s, &p.s2c, &p.msg, &p.why), 1, "%s", p.why);
	cr_assert_eq(p.msg.hdr.op, PEER_OP_PING);
	cr_assert_eq(p.msg.hdr.request_id, 7);
	cr_assert_eq(p.msg.hdr.volume_id, 4);
	cr_assert_eq(p.msg.hdr.epoch, 2);
	cr_assert_eq(p.msg.hdr.payload_len, 4);
	cr_assert_eq(memcmp(p.msg.payload, "ping", 4), 0);
	/* and back, twice: the counters move on both sides */
	for (int i = 0; i < 2; i++) {
		struct peer_hdr h = { .op = PEER_OP_PONG, .request_id = 7, .payload_len = 4 };

		cr_assert_eq(peer_session_send(p.s, &h, "pong", &p.s2c), 0);
		cr_assert_eq(deliver(p.c, &p.s2c, &p.c2s, &p.msg, &p.why), 1, "%s", p.why);
		cr_assert_eq(p.msg.hdr.op, PEER_OP_PONG);
	}
	pair_free(&p);
}

Test(peer_session, wrong_secret_refused_by_the_client)
{
	struct pair p = { 0 };

	pair_new(&p, secret_b, secret_a);
	pair_steps(&p, 2);
	cr_assert_eq(deliver(p.c, &p.s2c, &p.c2s, &p.msg, &p.why), -EACCES);
	cr_assert(strstr(p.why, "proof is wrong"), "%s", p.why);
	cr_assert_eq(p.c2s.len, 0, "no AUTH goes to a server that cannot prove the secret");
	pair_free(&p);
}

/* A stranger's AUTH: its proof is not the one the secret gives. */
Test(peer_session, wrong_proof_refused_by_the_server)
{
	struct pair p = { 0 };
	struct peer_session *c2;
	struct peer_frame m;

	pair_new(&p, secret_a, secret_a);
	pair_steps(&p, 3);
	p.c2s.data[PEER_HDR_BYTES] ^= 1;
	fix_crcs(p.c2s.data);
	cr_assert_eq(deliver(p.s, &p.c2s, &p.s2c, &p.msg, &p.why), -EACCES);
	cr_assert(strstr(p.why, "client's proof is wrong"), "%s", p.why);
	cr_assert_eq(p.s2c.len, 0, "no AUTH_OK");
	cr_assert_not(peer_session_is_open(p.s));
	/* and the session stays refused, even to a new start */
	c2 = session(PEER_CLIENT, secret_a, inst_c);
	cr_assert_eq(peer_session_hello(c2, &p.c2s), 0);
	cr_assert_lt(deliver(p.s, &p.c2s, &p.s2c, &m, &p.why), 0);
	cr_assert_eq(p.s2c.len, 0);
	peer_session_destroy(c2);
	pair_free(&p);
}

/* A recorded HELLO and AUTH, played to a new server session: its nonce is new, so the
 * old proof does not hold. */
Test(peer_session, replayed_handshake_refused)
{
	struct pair p = { 0 };
	struct peer_buf hello = { 0 }, auth = { 0 }, out = { 0 };
	struct peer_session *s2 = session(PEER_SERVER, secret_a, inst_s);

	pair_new(&p, secret_a, secret_a);
	cr_assert_eq(peer_session_hello(p.c, &p.c2s), 0);
	peer_buf_append(&hello, p.c2s.data, p.c2s.len);
	cr_assert_eq(deliver(p.s, &p.c2s, &p.s2c, &p.msg, &p.why), 0);
	cr_assert_eq(deliver(p.c, &p.s2c, &p.c2s, &p.msg, &p.why), 0);
	peer_buf_append(&auth, p.c2s.data, p.c2s.len);
	cr_assert_eq(deliver(p.s, &p.c2s, &p.s2c, &p.msg, &p.why), 0, "the original works");

	cr_assert_eq(deliver(s2, &hello, &out, &p.msg, &p.why), 0);
	cr_assert_eq(deliver(s2, &auth, &out, &p.msg, &p.why), -EACCES);
	cr_assert_not(peer_session_is_open(s2));
	peer_session_destroy(s2);
	peer_buf_free(&hello);
	peer_buf_free(&auth);
	peer_buf_free(&out);
	pair_free(&p);
}

/* A recorded CHALLENGE, played to a new client: its proof is over another nonce. */
Test(peer_session, replayed_challenge_refused)
{
	struct pair p = { 0 };
	struct peer_buf out = { 0 };
	struct peer_session *c2 = session(PEER_CLIENT, secret_a, inst_c);

	pair_new(&p, secret_a, secret_a);
	pair_steps(&p, 2);
	cr_assert_eq(peer_session_hello(c2, &out), 0);
	out.len = 0;
	cr_assert_eq(deliver(c2, &p.s2c, &out, &p.msg, &p.why), -EACCES);
	cr_assert_eq(out.len, 0);
	peer_session_destroy(c2);
	peer_buf_free(&out);
	pair_free(&p);
}

/* A man in the middle sends the server's own proof back as the client's: the labels
 * differ, so a server proof is never a client proof. */
Test(peer_session, reflected_challenge_refused)
{
	struct pair p = { 0 };
	struct peer_buf fake = { 0 };
	struct peer_hdr h = { .op = PEER_OP_AUTH, .payload_len = PEER_PROOF_BYTES };
	const uint8_t *proof;

	pair_new(&p, secret_a, secret_a);
	pair_steps(&p, 2);
	proof = p.s2c.data + PEER_HDR_BYTES + offsetof(struct peer_challenge, proof);
	h.payload_crc = crc32c(proof, PEER_PROOF_BYTES);
	cr_assert_eq(peer_buf_reserve(&fake, PEER_HDR_BYTES), 0);
	peer_hdr_encode(&h, fake.data);
	fake.len = PEER_HDR_BYTES;
	peer_buf_append(&fake, proof, PEER_PROOF_BYTES);
	cr_assert_eq(deliver(p.s, &fake, &p.s2c, &p.msg, &p.why), -EACCES);
	peer_buf_free(&fake);
	pair_free(&p);
}

/* A HELLO that carries the server's own instance is its own, reflected (a connection to
 * itself, or its outgoing HELLO sent back); a CHALLENGE that carries the client's own
 * instance likewise. */
Test(peer_session, reflected_hello_refused)
{
	struct pair p = { 0 };
	struct peer_session *c2 = session(PEER_CLIENT, secret_a, inst_s);

	p.c = session(PEER_CLIENT, secret_a, inst_s);
	p.s = session(PEER_SERVER, secret_a, inst_s);
	cr_assert_eq(peer_session_hello(p.c, &p.c2s), 0);
	cr_assert_eq(deliver(p.s, &p.c2s, &p.s2c, &p.msg, &p.why), -EACCES);
	cr_assert(strstr(p.why, "reflected"), "%s", p.why);
	cr_assert_eq(p.s2c.len, 0, "no CHALLENGE for ourselves");
	pair_free(&p);

	/* a client c2 sees a CHALLENGE with its own instance in it */
	memset(&p, 0, sizeof(p));
	pair_new(&p, secret_a, secret_a);
	pair_steps(&p, 2);
	cr_assert_eq(peer_session_hello(c2, &p.c2s), 0);
	p.c2s.len = 0;
	cr_assert_eq(deliver(c2, &p.s2c, &p.c2s, &p.msg, &p.why), -EACCES);
	cr_assert(strstr(p.why, "reflected"), "%s", p.why);
	peer_session_destroy(c2);
	pair_free(&p);
}

Test(peer_session, forged_mac_refused)
{
	struct pair p = { 0 };

	handshake(&p, secret_a, secret_a);
	send_ping(p.c, 1, "data", &p.c2s);
	p.c2s.data[p.c2s.len - 1] ^= 0x80;
	cr_assert_eq(deliver(p.s, &p.c2s, &p.s2c, &p.msg, &p.why), -EACCES);
	cr_assert(strstr(p.why, "MAC"), "%s", p.why);
	pair_free(&p);
}

/* A forged AUTH_OK (a relay that cannot know the session keys): the client stays shut. */
Test(peer_session, forged_auth_ok_refused)
{
	struct pair p = { 0 };

	pair_new(&p, secret_a, secret_a);
	pair_steps(&p, 4);
	p.s2c.data[p.s2c.len - 3] ^= 4;
	cr_assert_eq(deliver(p.c, &p.s2c, &p.c2s, &p.msg, &p.why), -EACCES);
	cr_assert_not(peer_session_is_open(p.c));
	pair_free(&p);
}

/* An altered payload with both CRCs made right again: the MAC still tells. */
Test(peer_session, altered_payload_refused)
{
	struct pair p = { 0 };

	handshake(&p, secret_a, secret_a);
	send_ping(p.c, 1, "data", &p.c2s);
	p.c2s.data[PEER_HDR_BYTES] ^= 1;
	fix_crcs(p.c2s.data);
	cr_assert_eq(deliver(p.s, &p.c2s, &p.s2c, &p.msg, &p.why), -EACCES);
	pair_free(&p);
}

/* Before the MAC, the payload CRC tells: a HELLO's payload altered. */
Test(peer_session, bad_payload_crc_refused)
{
	struct pair p = { 0 };

	pair_new(&p, secret_a, secret_a);
	pair_steps(&p, 1);
	p.c2s.data[PEER_HDR_BYTES] ^= 1;
	cr_assert_eq(deliver(p.s, &p.c2s, &p.s2c, &p.msg, &p.why), -EILSEQ);
	cr_assert(strstr(p.why, "bad payload CRC"), "%s", p.why);
	pair_free(&p);
}

/* A frame with a MAC carries no payload CRC (the MAC covers the payload): one that
 * carries one is refused, before its MAC is checked; the frames sent carry 0. */
Test(peer_session, payload_crc_under_mac_refused)
{
	struct pair p = { 0 };

	handshake(&p, secret_a, secret_a);
	send_ping(p.c, 1, "data", &p.c2s);
	cr_assert_eq(peer_get32(p.c2s.data + offsetof(struct peer_frame_hdr, payload_crc)), 0);
	put_crcs(p.c2s.data, payload_crc32c(p.c2s.data));
	cr_assert_eq(deliver(p.s, &p.c2s, &p.s2c, &p.msg, &p.why), -EILSEQ);
	cr_assert(strstr(p.why, "carries 0"), "%s", p.why);
	pair_free(&p);
}

/* The same frame twice: the second is MACed under the counter that has moved on. */
Test(peer_session, replayed_frame_refused)
{
	struct pair p = { 0 };
	struct peer_buf copy = { 0 };

	handshake(&p, secret_a, secret_a);
	send_ping(p.c, 1, "once", &p.c2s);
	peer_buf_append(&copy, p.c2s.data, p.c2s.len);
	cr_assert_eq(deliver(p.s, &p.c2s, &p.s2c, &p.msg, &p.why), 1);
	cr_assert_eq(deliver(p.s, &copy, &p.s2c, &p.msg, &p.why), -EACCES);
	peer_buf_free(&copy);
	pair_free(&p);
}

/* Frames reordered: the first to arrive is checked against counter 0 and fails. */
Test(peer_session, reordered_frames_refused)
{
	struct pair p = { 0 };
	struct peer_buf second = { 0 };
	size_t one;

	handshake(&p, secret_a, secret_a);
	send_ping(p.c, 1, "a", &p.c2s);
	one = p.c2s.len;
	send_ping(p.c, 2, "b", &p.c2s);
	peer_buf_append(&second, p.c2s.data + one, p.c2s.len - one);
	cr_assert_eq(deliver(p.s, &second, &p.s2c, &p.msg, &p.why), -EACCES);
	peer_buf_free(&second);
	pair_free(&p);
}

/* A client's own frame sent back to it: the directions have different keys. */
Test(peer_session, reflected_frame_refused)
{
	struct pair p = { 0 };

	handshake(&p, secret_a, secret_a);
	send_ping(p.c, 1, "echo", &p.c2s);
	cr_assert_eq(deliver(p.c, &p.c2s, &p.s2c, &p.msg, &p.why), -EACCES);
	pair_free(&p);
}

Test(peer_session, frame_without_mac_after_auth_refused)
{
	struct pair p = { 0 };
	struct peer_hdr h = { .op = PEER_OP_PING };
	struct peer_buf raw = { 0 };

	handshake(&p, secret_a, secret_a);
	cr_assert_eq(peer_buf_reserve(&raw, PEER_HDR_BYTES), 0);
	peer_hdr_encode(&h, raw.data);
	raw.len = PEER_HDR_BYTES;
	cr_assert_eq(deliver(p.s, &raw, &p.s2c, &p.msg, &p.why), -EACCES);
	peer_buf_free(&raw);
	pair_free(&p);
}

/* Before authentication only the handshake's next message passes: a session op, with
 * or without a MAC, a handshake op out of turn, or a second HELLO are refused. */
Test(peer_session, unexpected_messages_refused)
{
	static const struct peer_hdr bad[] = {
		{ .op = PEER_OP_PING },
		{ .op = PEER_OP_PING, .flags = PEER_F_MAC },
		{ .op = PEER_OP_AUTH, .payload_len = PEER_PROOF_BYTES },
		{ .op = PEER_OP_AUTH_OK, .flags = PEER_F_MAC },
		{ .op = PEER_OP_ERROR, .payload_len = 8 },
	};
	uint8_t hdr[PEER_HDR_BYTES];
	struct peer_frame m;
	struct peer_buf out = { 0 };
	const char *why;
	size_t need;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct peer_session *s = session(PEER_SERVER, secret_a, inst_s);

		peer_hdr_encode(&bad[i], hdr);
		cr_assert_eq(peer_session_frame_len(s, hdr, sizeof(hdr), &need, &why), -EPROTO,
			     "case %zu", i);
		cr_assert_eq(peer_session_input(s, hdr, sizeof(hdr), &m, &out, &why), -EPROTO,
			     "failed stays failed");
		peer_session_destroy(s);
	}
	cr_assert_eq(out.len, 0);
}

Test(peer_session, truncated_frame_refused)
{
	struct peer_session *s = session(PEER_SERVER, secret_a, inst_s);
	struct peer_session *c = session(PEER_CLIENT, secret_a, inst_c);
	struct peer_buf hello = { 0 }, out = { 0 };
	struct peer_frame m;
	const char *why;
	size_t need;

	cr_assert_eq(peer_session_hello(c, &hello), 0);
	cr_assert_eq(peer_session_frame_len(s, hello.data, PEER_HDR_BYTES - 1, &need, &why), 0);
	cr_assert_eq(need, 0, "a partial header: wait for more");
	cr_assert_eq(peer_session_frame_len(s, hello.data, PEER_HDR_BYTES, &need, &why), 0);
	cr_assert_eq(need, hello.len, "the header gives the whole length");
	cr_assert_eq(peer_session_input(s, hello.data, hello.len - 1, &m, &out, &why), -EINVAL);
	cr_assert_eq(out.len, 0);
	peer_session_destroy(s);
	peer_session_destroy(c);
	peer_buf_free(&hello);
	peer_buf_free(&out);
}

Test(peer_session, send_before_open_refused)
{
	struct peer_session *c = session(PEER_CLIENT, secret_a, inst_c);
	struct peer_hdr h = { .op = PEER_OP_PING };
	struct peer_buf out = { 0 };

	cr_assert_eq(peer_session_send(c, &h, NULL, &out), -ENOTCONN);
	cr_assert_eq(out.len, 0);
	peer_session_destroy(c);
}

Test(peer_session, send_refuses_what_the_protocol_does)
{
	struct pair p = { 0 };
	struct peer_hdr big = { .op = PEER_OP_PING, .payload_len = PEER_PING_MAX + 1 };
	struct peer_hdr seg = { .op = PEER_OP_SEG_APPEND, .payload_len = PEER_PING_MAX + 1 };
	struct peer_hdr unknown = { .op = 0x2f }, hello = { .op = PEER_OP_HELLO };
	static uint8_t payload[PEER_PING_MAX + 1];

	handshake(&p, secret_a, secret_a);
	cr_assert_eq(peer_session_send(p.c, &big, payload, &p.c2s), -EMSGSIZE);
	cr_assert_eq(peer_session_send(p.c, &seg, payload, &p.c2s), -EINVAL,
		     "an append of less than a block");
	cr_assert_eq(peer_session_send(p.c, &unknown, payload, &p.c2s), -EOPNOTSUPP);
	cr_assert_eq(peer_session_send(p.c, &hello, payload, &p.c2s), -EOPNOTSUPP,
		     "no handshake op in the session");
	cr_assert_eq(p.c2s.len, 0);
	pair_free(&p);
}

/* A segment op goes through an open session both ways; a payload in pieces (a head,
 * then data) is one frame, the same bytes as when it was contiguous. */
Test(peer_session, segment_ops_in_pieces)
{
	struct pair p = { 0 }, q = { 0 };
	static uint8_t payload[24 + 2 * 4096];
	struct iovec data[2] = { { payload + 24, 4096 }, { payload + 24 + 4096, 4096 } };
	struct peer_hdr h = { .op = PEER_OP_SEG_APPEND, .request_id = 3, .volume_id = 9,
			      .epoch = 4, .payload_len = sizeof(payload) };
	struct peer_hdr r = { .op = PEER_OP_SEG_APPEND | PEER_OP_REPLY, .request_id = 3,
			      .payload_len = 8 };

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);
	handshake(&p, secret_a, secret_a);
	handshake(&q, secret_a, secret_a);
	cr_assert_eq(peer_session_sendv(p.c, &h, payload, 24, data, 2, &p.c2s), 0);
	cr_assert_eq(peer_session_send(q.c, &h, payload, &q.c2s), 0);
	cr_assert_eq(p.c2s.len, q.c2s.len);
	/* the MACs differ (other keys): the header and payload do not */
	cr_assert_eq(memcmp(p.c2s.data, q.c2s.data, PEER_HDR_BYTES + sizeof(payload)), 0);
	cr_assert_eq(deliver(p.s, &p.c2s, &p.s2c, &p.msg, &p.why), 1, "%s", p.why);
	cr_assert_eq(p.msg.hdr.op, PEER_OP_SEG_APPEND);
	cr_assert_eq(p.msg.hdr.payload_len, sizeof(payload));
	cr_assert_eq(memcmp(p.msg.payload, payload, sizeof(payload)), 0);
	cr_assert_eq(peer_session_send(p.s, &r, "\0\0\0\0\0\0\0\0", &p.s2c), 0);
	cr_assert_eq(deliver(p.c, &p.s2c, &p.c2s, &p.msg, &p.why), 1, "%s", p.why);
	cr_assert_eq(p.msg.hdr.op, PEER_OP_SEG_APPEND | PEER_OP_REPLY);
	pair_free(&p);
	pair_free(&q);
}

/* ---- the secret file ---- */

TestSuite(peer_secret, .init = setup, .fini = teardown);

static char dir[] = "/tmp/quill-peer-secret-XXXXXX";

static void path_in_dir(char *path, size_t size, const char *name)
{
	snprintf(path, size, "%s/%s", dir, name);
}

Test(peer_secret, created_loaded_and_checked)
{
	char path[128], other[128], link[128];
	struct peer_secret *sec;
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	path_in_dir(path, sizeof(path), "secret");
	path_in_dir(other, sizeof(other), "bad");
	path_in_dir(link, sizeof(link), "link");
	umask(022);
	cr_assert_eq(peer_secret_create(path), 0);
	cr_assert_eq(peer_secret_create(path), -EEXIST, "never overwrites a secret");
	cr_assert_eq(peer_secret_load(path, &sec), 0);
	peer_secret_destroy(sec);

	cr_assert_eq(chmod(path, 0644), 0);
	cr_assert_eq(peer_secret_load(path, &sec), -EPERM, "readable by others");
	cr_assert_eq(chmod(path, 0400), 0);
	cr_assert_eq(peer_secret_load(path, &sec), -EPERM, "only 0600 is accepted");
	cr_assert_eq(chmod(path, 0600), 0);
	cr_assert_eq(symlink(path, link), 0);
	cr_assert_lt(peer_secret_load(link, &sec), 0, "not through a symbolic link");

	f = fopen(other, "w");
	cr_assert_not_null(f);
	fputs("0123456789abcdef\n", f);
	fclose(f);
	cr_assert_eq(chmod(other, 0600), 0);
	cr_assert_eq(peer_secret_load(other, &sec), -EINVAL, "too short");
	f = fopen(other, "w");
	fprintf(f, "%064d\n", 0);
	fclose(f);
	cr_assert_eq(peer_secret_load(other, &sec), 0, "64 hex digits");
	peer_secret_destroy(sec);
	f = fopen(other, "w");
	fprintf(f, "%063dz\n", 0);
	fclose(f);
	cr_assert_eq(peer_secret_load(other, &sec), -EINVAL, "not hex");
	cr_assert_eq(peer_secret_load("/nonexistent/secret", &sec), -ENOENT);
	unlink(path);
	unlink(other);
	unlink(link);
	rmdir(dir);
}

/* Two files made by peer_secret_create hold different secrets: a server with one
 * refuses a client with the other. */
Test(peer_secret, new_secrets_differ)
{
	char p1[128], p2[128];
	struct peer_secret *s1, *s2;
	struct pair p = { 0 };

	cr_assert_not_null(mkdtemp(dir));
	path_in_dir(p1, sizeof(p1), "one");
	path_in_dir(p2, sizeof(p2), "two");
	cr_assert_eq(peer_secret_create(p1), 0);
	cr_assert_eq(peer_secret_create(p2), 0);
	cr_assert_eq(peer_secret_load(p1, &s1), 0);
	cr_assert_eq(peer_secret_load(p2, &s2), 0);
	pair_new(&p, s1, s2);
	pair_steps(&p, 2);
	cr_assert_eq(deliver(p.c, &p.s2c, &p.c2s, &p.msg, &p.why), -EACCES);
	pair_free(&p);
	peer_secret_destroy(s1);
	peer_secret_destroy(s2);
	unlink(p1);
	unlink(p2);
	rmdir(dir);
}
