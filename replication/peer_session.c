/* replication/peer_session.c — the handshake state machine and frame MACs of
 * peer_session.h, over libsodium (BLAKE2b keyed hashes, crypto_kdf, randombytes) and
 * GnuTLS (frame MACs are AES-256-GCM tags: GMAC, with AES-NI and PCLMULQDQ).
 *
 * Keys: the cluster secret is never used directly; crypto_kdf derives a proof key and a
 * session key from it. Proofs and direction keys are keyed BLAKE2b over a label (which
 * side, what for: a server's proof is never a valid client proof) and the handshake's
 * transcript (HELLO, CHALLENGE, AUTH payloads: both nonces, both identities).
 */
#include "replication/peer_session.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"

#define LOG_TAG "peer"
#define KDF_CONTEXT "qpeerv01" /* crypto_kdf_CONTEXTBYTES = 8 */
#define KDF_PROOF 1
#define KDF_SESSION 2

struct peer_secret {
	uint8_t proof_key[32];   /* proofs of the handshake */
	uint8_t session_key[32]; /* the per-direction keys of each session */
};

enum state {
	ST_CLIENT_START,      /* HELLO not sent yet */
	ST_CLIENT_CHALLENGE,  /* waits for CHALLENGE */
	ST_CLIENT_AUTH_OK,    /* AUTH sent, waits for AUTH_OK */
	ST_SERVER_HELLO,      /* waits for HELLO */
	ST_SERVER_AUTH,       /* CHALLENGE sent, waits for AUTH */
	ST_OPEN,
	ST_FAILED,
};

struct peer_session {
	enum peer_role role;
	enum state st;
	const struct peer_secret *sec;
	uint64_t node_id, peer_node;
	uint8_t instance[PEER_INSTANCE_BYTES];
	/* the transcript, as sent and received */
	uint8_t hello[sizeof(struct peer_hello)];
	uint8_t challenge[sizeof(struct peer_challenge)];
	uint8_t auth[sizeof(struct peer_auth)];
	uint8_t send_key[32], recv_key[32];
	gnutls_aead_cipher_hd_t send_mac, recv_mac; /* the keys' GCM states (NULL before) */
	uint64_t send_ctr, recv_ctr; /* frames MACed each way so far */
	bool keyed;                  /* send_key is set: an ERROR may go out even after a
					refusal, to say why */
};

_Static_assert(crypto_kdf_CONTEXTBYTES == sizeof(KDF_CONTEXT) - 1, "kdf context size");
_Static_assert(crypto_kdf_KEYBYTES == PEER_SECRET_BYTES, "a secret is a kdf master key");

/* ---- the secret ---- */

int peer_secret_from_bytes(const uint8_t key[PEER_SECRET_BYTES], struct peer_secret **out)
{
	struct peer_secret *sec;

	if (sodium_init() < 0)
		return -EIO;
	sec = calloc(1, sizeof(*sec));
	if (!sec)
		return -ENOMEM;
	crypto_kdf_derive_from_key(sec->proof_key, sizeof(sec->proof_key), KDF_PROOF,
				   KDF_CONTEXT, key);
	crypto_kdf_derive_from_key(sec->session_key, sizeof(sec->session_key), KDF_SESSION,
				   KDF_CONTEXT, key);
	*out = sec;
	return 0;
}

void peer_secret_destroy(struct peer_secret *sec)
{
	if (!sec)
		return;
	sodium_memzero(sec, sizeof(*sec));
	free(sec);
}

/* A secret file may be read by its owner only: anyone who reads it is a member. */
static int secret_file_check(const char *path, int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode)) {
		log_msg(LOG_ERROR, LOG_TAG, "cluster secret %s: not a regular file", path);
		return -EPERM;
	}
	if ((st.st_mode & 07777) != 0600) {
		log_msg(LOG_ERROR, LOG_TAG, "cluster secret %s: mode %04o, must be 0600 (only its "
			"owner may read it: chmod 600 %s)", path, (unsigned)(st.st_mode & 07777),
			path);
		return -EPERM;
	}
	return 0;
}

int peer_secret_load(const char *path, struct peer_secret **out)
{
	char text[2 * PEER_SECRET_BYTES + 2];
	uint8_t key[PEER_SECRET_BYTES];
	size_t bin_len = 0;
	ssize_t n;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		r = -errno;
		log_msg(LOG_ERROR, LOG_TAG, "cluster secret %s: %s", path, err_str(r));
		return r;
	}
	r = secret_file_check(path, fd);
	n = r < 0 ? 0 : read(fd, text, sizeof(text));
	close(fd);
	if (r < 0)
		return r;
	if (n < 0)
		return -errno;
	if (n > 0 && text[n - 1] == '\n')
		n--;
	if (n != 2 * PEER_SECRET_BYTES ||
	    sodium_hex2bin(key, sizeof(key), text, (size_t)n, NULL, &bin_len, NULL) < 0 ||
	    bin_len != sizeof(key)) {
		log_msg(LOG_ERROR, LOG_TAG, "cluster secret %s: expected 64 hex digits (quill-peer "
			"secret FILE makes one)", path);
		sodium_memzero(text, sizeof(text));
		return -EINVAL;
	}
	r = peer_secret_from_bytes(key, out);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(text, sizeof(text));
	return r;
}

int peer_secret_create(const char *path)
{
	uint8_t key[PEER_SECRET_BYTES];
	char text[2 * PEER_SECRET_BYTES + 2];
	int fd, r = 0;

	if (sodium_init() < 0)
		return -EIO;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	randombytes_buf(key, sizeof(key));
	sodium_bin2hex(text, sizeof(text), key, sizeof(key));
	text[2 * PEER_SECRET_BYTES] = '\n';
	/* the umask may have taken bits away, never added: set exactly 0600 */
	if (fchmod(fd, 0600) < 0 || write(fd, text, sizeof(text) - 1) != sizeof(text) - 1 ||
	    fsync(fd) < 0)
		r = errno ? -errno : -EIO;
	close(fd);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(text, sizeof(text));
	if (r < 0)
		unlink(path);
	return r;
}

/* ---- buffers ---- */

int peer_buf_reserve(struct peer_buf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 256;
	uint8_t *p;

	if (b->len + more <= b->cap)
		return 0;
	while (cap < b->len + more)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int peer_buf_append(struct peer_buf *b, const void *data, size_t n)
{
	int r = n ? peer_buf_reserve(b, n) : 0;

	if (r < 0 || n == 0)
		return r;
	memcpy(b->data + b->len, data, n);
	b->len += n;
	return 0;
}

void peer_buf_consume(struct peer_buf *b, size_t n)
{
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void peer_buf_free(struct peer_buf *b)
{
	free(b->data);
	*b = (struct peer_buf){ 0 };
}

/* ---- keyed hashes over the transcript ---- */

static const char LABEL_SERVER_PROOF[] = "quill peer v1 server proof";
static const char LABEL_CLIENT_PROOF[] = "quill peer v1 client proof";
static const char LABEL_C2S[] = "quill peer v1 key client to server";
static const char LABEL_S2C[] = "quill peer v1 key server to client";

/* out (32 bytes) = BLAKE2b-256 keyed by key over label ‖ the transcript's first n
 * bytes (HELLO, then the CHALLENGE, then AUTH: n picks how much of it). */
static void transcript_hash(const struct peer_session *s, const uint8_t *key,
			    const char *label, size_t n, uint8_t *out)
{
	crypto_generichash_state st;
	const uint8_t *parts[] = { s->hello, s->challenge, s->auth };
	const size_t sizes[] = { sizeof(s->hello), sizeof(s->challenge), sizeof(s->auth) };

	crypto_generichash_init(&st, key, 32, 32);
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
	for (size_t i = 0; i < 3 && n; i++) {
		size_t take = n < sizes[i] ? n : sizes[i];

		crypto_generichash_update(&st, parts[i], take);
		n -= take;
	}
	crypto_generichash_final(&st, out, 32);
}

/* The server proves over HELLO and its CHALLENGE up to the proof; the client over
 * both messages whole, the server's proof included. */
static void server_proof(const struct peer_session *s, uint8_t *out)
{
	transcript_hash(s, s->sec->proof_key, LABEL_SERVER_PROOF,
			sizeof(s->hello) + offsetof(struct peer_challenge, proof), out);
}

static void client_proof(const struct peer_session *s, uint8_t *out)
{
	transcript_hash(s, s->sec->proof_key, LABEL_CLIENT_PROOF,
			sizeof(s->hello) + sizeof(s->challenge), out);
}

/* MAC = the tag of AES-256-GCM under the direction's key, with the counter as nonce,
 * over no plaintext and header ‖ payload as associated data (GMAC). Not keyed BLAKE2b
 * (5-20x more per byte) nor ChaCha20-Poly1305 (protocol 2; libsodium's Poly1305 has
 * no AVX code): GHASH with carry-less multiplies costs 2-3x less per append frame on
 * this CPU, and the MAC of every SEG_APPEND's data, made once per holder and checked
 * by each, was half of replication's CPU (docs/peer-protocol.md). A (key, counter)
 * pair never repeats: keys are fresh per session and direction. Returns 0 or -EIO. */
#define MAC_NONCE_BYTES 12

static int frame_mac(gnutls_aead_cipher_hd_t key, uint64_t ctr, const uint8_t *frame,
		     size_t len, uint8_t *mac)
{
	uint8_t nonce[MAC_NONCE_BYTES] = { 0 };
	size_t maclen = PEER_MAC_BYTES;

	peer_put64(nonce, ctr);
	if (gnutls_aead_cipher_encrypt(key, nonce, sizeof(nonce), frame, len, PEER_MAC_BYTES,
				       NULL, 0, mac, &maclen) < 0 || maclen != PEER_MAC_BYTES)
		return -EIO;
	return 0;
}

static void mac_keys_drop(struct peer_session *s)
{
	if (s->send_mac)
		gnutls_aead_cipher_deinit(s->send_mac);
	if (s->recv_mac)
		gnutls_aead_cipher_deinit(s->recv_mac);
	s->send_mac = s->recv_mac = NULL;
}

/* The GCM states of both direction keys. Returns 0 or -ENOMEM (-EIO: no AES-256-GCM). */
static int mac_keys_init(struct peer_session *s)
{
	gnutls_datum_t tx = { s->send_key, sizeof(s->send_key) };
	gnutls_datum_t rx = { s->recv_key, sizeof(s->recv_key) };

	mac_keys_drop(s);
	if (gnutls_aead_cipher_init(&s->send_mac, GNUTLS_CIPHER_AES_256_GCM, &tx) < 0 ||
	    gnutls_aead_cipher_init(&s->recv_mac, GNUTLS_CIPHER_AES_256_GCM, &rx) < 0) {
		mac_keys_drop(s);
		return -ENOMEM;
	}
	return 0;
}

/* Returns 0 or -errno (the session cannot MAC: it fails). */
static int derive_keys(struct peer_session *s)
{
	size_t all = sizeof(s->hello) + sizeof(s->challenge) + sizeof(s->auth);
	uint8_t *c2s = s->role == PEER_CLIENT ? s->send_key : s->recv_key;
	uint8_t *s2c = s->role == PEER_CLIENT ? s->recv_key : s->send_key;

	transcript_hash(s, s->sec->session_key, LABEL_C2S, all, c2s);
	transcript_hash(s, s->sec->session_key, LABEL_S2C, all, s2c);
	s->send_ctr = s->recv_ctr = 0;
	if (mac_keys_init(s) < 0)
		return -ENOMEM;
	s->keyed = true;
	return 0;
}

/* ---- sessions ---- */

int peer_session_create(const struct peer_session_opts *opts, struct peer_session **out)
{
	struct peer_session *s;

	if (!opts->secret || !opts->instance)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->role = opts->role;
	s->st = opts->role == PEER_CLIENT ? ST_CLIENT_START : ST_SERVER_HELLO;
	s->sec = opts->secret;
	s->node_id = opts->node_id;
	memcpy(s->instance, opts->instance, PEER_INSTANCE_BYTES);
	*out = s;
	return 0;
}

void peer_session_destroy(struct peer_session *s)
{
	if (!s)
		return;
	mac_keys_drop(s);
	sodium_memzero(s, sizeof(*s));
	free(s);
}

bool peer_session_is_open(const struct peer_session *s)
{
	return s->st == ST_OPEN;
}

uint64_t peer_session_peer_node(const struct peer_session *s)
{
	return s->peer_node;
}

/* Appends a frame: header, payload (head, then the data's pieces, copied once), and
 * with mac the MAC under the send counter. */
static int append_framev(struct peer_session *s, struct peer_hdr h, const void *head,
			 size_t head_len, const struct iovec *data, int datacnt, bool mac,
			 struct peer_buf *out)
{
	size_t start = out->len, len = head_len;
	uint8_t *payload;
	int r;

	for (int i = 0; i < datacnt; i++)
		len += data[i].iov_len;
	if (len > PEER_PAYLOAD_MAX)
		return -EMSGSIZE;
	h.payload_len = (uint32_t)len;
	h.flags = mac ? PEER_F_MAC : 0;
	r = peer_buf_reserve(out, peer_frame_len(&h));
	if (r < 0)
		return r;
	payload = out->data + start + PEER_HDR_BYTES;
	if (head_len)
		memcpy(payload, head, head_len);
	payload += head_len;
	for (int i = 0; i < datacnt; i++) {
		if (data[i].iov_len)
			memcpy(payload, data[i].iov_base, data[i].iov_len);
		payload += data[i].iov_len;
	}
	/* the CRC over the copy in the buffer: one pass over the bytes we send; none
	 * under a MAC, which covers them (a pass per frame on each side saved) */
	h.payload_crc = mac ? 0 : crc32c(out->data + start + PEER_HDR_BYTES, len);
	peer_hdr_encode(&h, out->data + start);
	out->len += PEER_HDR_BYTES + len;
	if (mac) {
		r = frame_mac(s->send_mac, s->send_ctr, out->data + start, out->len - start,
			      out->data + out->len);
		if (r < 0) {
			out->len = start;
			return r;
		}
		s->send_ctr++;
		out->len += PEER_MAC_BYTES;
	}
	return 0;
}

static int append_frame(struct peer_session *s, struct peer_hdr h, const void *payload,
			bool mac, struct peer_buf *out)
{
	return append_framev(s, h, payload, h.payload_len, NULL, 0, mac, out);
}

static int handshake_frame(struct peer_session *s, uint8_t op, const void *payload,
			   uint32_t len, struct peer_buf *out)
{
	struct peer_hdr h = { .op = op, .payload_len = len };

	return append_frame(s, h, payload, false, out);
}

int peer_session_hello(struct peer_session *s, struct peer_buf *out)
{
	struct peer_hello_msg m = { .node_id = s->node_id };
	int r;

	if (s->st != ST_CLIENT_START)
		return -EINVAL;
	memcpy(m.instance, s->instance, sizeof(m.instance));
	randombytes_buf(m.nonce, sizeof(m.nonce));
	peer_hello_encode(&m, s->hello);
	r = handshake_frame(s, PEER_OP_HELLO, s->hello, sizeof(s->hello), out);
	if (r == 0)
		s->st = ST_CLIENT_CHALLENGE;
	return r;
}

/* What each state accepts: one op, with or without a MAC. */
static int expect(const struct peer_session *s, const struct peer_hdr *h, const char **why)
{
	static const struct {
		uint8_t op;
		bool mac;
		const char *why;
	} want[] = {
		[ST_CLIENT_START] = { 0, false, "a frame before our HELLO" },
		[ST_CLIENT_CHALLENGE] = { PEER_OP_CHALLENGE, false, "expected CHALLENGE" },
		[ST_CLIENT_AUTH_OK] = { PEER_OP_AUTH_OK, true, "expected AUTH_OK" },
		[ST_SERVER_HELLO] = { PEER_OP_HELLO, false, "expected HELLO" },
		[ST_SERVER_AUTH] = { PEER_OP_AUTH, false, "expected AUTH" },
	};

	if (s->st == ST_FAILED) {
		*why = "the session failed before";
		return -EPROTO;
	}
	if (s->st == ST_OPEN) {
		if (!peer_op_is_session(h->op)) {
			*why = "a handshake message after authentication";
			return -EPROTO;
		}
		if (!(h->flags & PEER_F_MAC)) {
			*why = "a frame without a MAC after authentication";
			return -EACCES;
		}
		return 0;
	}
	if (h->op != want[s->st].op || !!(h->flags & PEER_F_MAC) != want[s->st].mac) {
		*why = want[s->st].why;
		return -EPROTO;
	}
	return 0;
}

static const char *hdr_why(int r)
{
	switch (r) {
	case -EINVAL: return "a payload shorter than its op needs";
	case -EPROTO: return "not a quill peer frame (magic, flags or reserved field)";
	case -EPROTONOSUPPORT: return "another version of the peer protocol (this node speaks " PEER_VERSION_TEXT ")";
	case -EILSEQ: return "bad header CRC";
	case -EOPNOTSUPP: return "unknown op";
	case -EMSGSIZE: return "payload length beyond the op's maximum";
	default: return "bad header";
	}
}

static int fail(struct peer_session *s, int r, const char **why, const char *text)
{
	s->st = ST_FAILED;
	*why = text;
	return r;
}

/* Decodes the header at the head of buf (len >= PEER_HDR_BYTES) and checks it against
 * what the state allows. */
static int hdr_input(struct peer_session *s, const void *buf, size_t len, struct peer_hdr *h,
		     const char **why)
{
	int r = peer_hdr_decode(buf, len, h);

	if (r < 0)
		return fail(s, r, why, hdr_why(r));
	r = expect(s, h, why);
	return r < 0 ? fail(s, r, why, *why) : 0;
}

int peer_session_frame_len(struct peer_session *s, const void *buf, size_t len,
			   size_t *frame_len, const char **why)
{
	struct peer_hdr h;
	int r;

	*frame_len = 0;
	if (len < PEER_HDR_BYTES)
		return 0;
	r = hdr_input(s, buf, len, &h, why);
	if (r == 0)
		*frame_len = peer_frame_len(&h);
	return r;
}

static int on_hello(struct peer_session *s, const uint8_t *payload, struct peer_buf *out,
		    const char **why)
{
	struct peer_hello_msg hello;
	struct peer_challenge_msg ch = { .node_id = s->node_id };

	if (peer_hello_decode(payload, sizeof(s->hello), &hello) < 0)
		return fail(s, -EPROTO, why, "HELLO: reserved fields set");
	if (sodium_memcmp(hello.instance, s->instance, PEER_INSTANCE_BYTES) == 0)
		return fail(s, -EACCES, why, "HELLO from this very process (reflected)");
	s->peer_node = hello.node_id;
	memcpy(s->hello, payload, sizeof(s->hello));
	memcpy(ch.instance, s->instance, sizeof(ch.instance));
	randombytes_buf(ch.nonce, sizeof(ch.nonce));
	peer_challenge_encode(&ch, s->challenge);
	server_proof(s, s->challenge + offsetof(struct peer_challenge, proof));
	s->st = ST_SERVER_AUTH;
	return handshake_frame(s, PEER_OP_CHALLENGE, s->challenge, sizeof(s->challenge), out);
}

static int on_challenge(struct peer_session *s, const uint8_t *payload, struct peer_buf *out,
			const char **why)
{
	struct peer_challenge_msg ch;
	uint8_t want[PEER_PROOF_BYTES];
	const uint8_t *our_nonce = s->hello + offsetof(struct peer_hello, nonce);

	if (peer_challenge_decode(payload, sizeof(s->challenge), &ch) < 0)
		return fail(s, -EPROTO, why, "CHALLENGE: reserved fields set");
	if (sodium_memcmp(ch.instance, s->instance, PEER_INSTANCE_BYTES) == 0 ||
	    sodium_memcmp(ch.nonce, our_nonce, PEER_NONCE_BYTES) == 0)
		return fail(s, -EACCES, why, "CHALLENGE from this very process (reflected)");
	memcpy(s->challenge, payload, sizeof(s->challenge));
	server_proof(s, want);
	if (sodium_memcmp(want, ch.proof, sizeof(want)) != 0)
		return fail(s, -EACCES, why, "the server's proof is wrong (another cluster secret)");
	s->peer_node = ch.node_id;
	client_proof(s, s->auth);
	if (derive_keys(s) < 0)
		return fail(s, -ENOMEM, why, "no memory for the session's keys");
	s->st = ST_CLIENT_AUTH_OK;
	return handshake_frame(s, PEER_OP_AUTH, s->auth, sizeof(s->auth), out);
}

static int on_auth(struct peer_session *s, const uint8_t *payload, struct peer_buf *out,
		   const char **why)
{
	uint8_t want[PEER_PROOF_BYTES];
	struct peer_hdr ok = { .op = PEER_OP_AUTH_OK };

	client_proof(s, want);
	if (sodium_memcmp(want, payload, sizeof(want)) != 0)
		return fail(s, -EACCES, why, "the client's proof is wrong (another cluster secret, "
			    "or a replayed handshake)");
	memcpy(s->auth, payload, sizeof(s->auth));
	if (derive_keys(s) < 0)
		return fail(s, -ENOMEM, why, "no memory for the session's keys");
	s->st = ST_OPEN;
	return append_frame(s, ok, NULL, true, out);
}

/* Checks a MACed frame against the next receive counter. */
static int check_mac(struct peer_session *s, const uint8_t *frame, size_t len,
		     const char **why)
{
	uint8_t want[PEER_MAC_BYTES];

	if (frame_mac(s->recv_mac, s->recv_ctr, frame, len - PEER_MAC_BYTES, want) < 0)
		return fail(s, -EIO, why, "cannot compute a MAC");
	if (sodium_memcmp(want, frame + len - PEER_MAC_BYTES, PEER_MAC_BYTES) != 0)
		return fail(s, -EACCES, why, "bad MAC (forged, altered or replayed frame)");
	s->recv_ctr++;
	return 0;
}

int peer_session_input(struct peer_session *s, const void *frame, size_t len,
		       struct peer_frame *msg, struct peer_buf *out, const char **why)
{
	const uint8_t *p = frame;
	int r;

	if (len < PEER_HDR_BYTES)
		return fail(s, -EINVAL, why, "truncated frame");
	r = hdr_input(s, p, len, &msg->hdr, why);
	if (r < 0)
		return r;
	if (len != peer_frame_len(&msg->hdr))
		return fail(s, -EINVAL, why, "truncated frame");
	msg->payload = p + PEER_HDR_BYTES;
	if (!(msg->hdr.flags & PEER_F_MAC)) {
		if (peer_payload_check(&msg->hdr, msg->payload) < 0)
			return fail(s, -EILSEQ, why, "bad payload CRC");
	} else if (msg->hdr.payload_crc) {
		return fail(s, -EILSEQ, why, "bad payload CRC (a frame with a MAC carries 0)");
	} else if ((r = check_mac(s, p, len, why)) < 0) {
		return r;
	}
	switch (s->st) {
	case ST_SERVER_HELLO:
		return on_hello(s, msg->payload, out, why);
	case ST_CLIENT_CHALLENGE:
		return on_challenge(s, msg->payload, out, why);
	case ST_SERVER_AUTH:
		return on_auth(s, msg->payload, out, why);
	case ST_CLIENT_AUTH_OK:
		s->st = ST_OPEN;
		return 0;
	default:
		return 1;
	}
}

int peer_session_sendv(struct peer_session *s, const struct peer_hdr *h, const void *head,
		       size_t head_len, const struct iovec *data, int datacnt,
		       struct peer_buf *out)
{
	uint32_t min, max;
	size_t len = head_len;

	if (s->st != ST_OPEN && !(h->op == PEER_OP_ERROR && s->keyed))
		return -ENOTCONN;
	if (!peer_op_is_session(h->op))
		return -EOPNOTSUPP;
	for (int i = 0; i < datacnt && len <= PEER_PAYLOAD_MAX; i++)
		len += data[i].iov_len;
	peer_op_payload_bounds(h->op, &min, &max);
	if (len > max)
		return -EMSGSIZE;
	if (len < min)
		return -EINVAL;
	return append_framev(s, *h, head, head_len, data, datacnt, true, out);
}

int peer_session_send(struct peer_session *s, const struct peer_hdr *h, const void *payload,
		      struct peer_buf *out)
{
	return peer_session_sendv(s, h, payload, h->payload_len, NULL, 0, out);
}
