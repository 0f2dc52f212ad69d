/* nbd/tls.c — TLS credentials (nbd_tls.h) and the connection transport: every byte
 * of a connection goes through nbd_conn_recv()/nbd_conn_send(), which are recv()/
 * sendmsg() on a plain connection and a gnutls session after NBD_OPT_STARTTLS.
 *
 * The session is non-blocking on the loop like the plain socket: gnutls reads and
 * writes the socket through tls_pull()/tls_push() (recv/send with MSG_DONTWAIT) and
 * answers GNUTLS_E_AGAIN when the socket has nothing or is full. Two things differ
 * from a plain socket, and the server asks about them instead of the socket:
 *   - decrypted bytes can wait inside gnutls while the socket is empty (a record
 *     bigger than what the caller asked for): nbd_conn_recv_pending();
 *   - plaintext the caller handed over may not have been encrypted and sent yet
 *     (gnutls answered AGAIN: it must be called again with the same buffer), so
 *     the session keeps it in a staging buffer: nbd_conn_send_pending().
 * Both calls keep the plain socket's contract: a short count means "the socket
 * has no more for now / is full", so the server's loops need no TLS cases.
 */
#include "nbd/nbd_internal.h"
#include "nbd/nbd_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"

#define TLS_STAGE_SIZE      16384u  /* one TLS record of plaintext */
#define TLS_PSK_LINE_MAX    1024
#define TLS_HANDSHAKE_STEPS 8       /* gnutls_handshake calls per wake-up (warnings) */

/* The cipher suites with pre-shared keys are not in NORMAL: add them, as QEMU and
 * libnbd do on their side. */
#define TLS_PRIORITY_PSK  "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK"
#define TLS_PRIORITY_X509 "NORMAL"

struct nbd_tls {
	enum nbd_tls_mode mode;
	gnutls_psk_server_credentials_t psk;
	gnutls_certificate_credentials_t x509;
	gnutls_priority_t prio;
	bool verify_peer;
};

struct nbd_tls_session {
	gnutls_session_t s;
	bool established;
	uint8_t stage[TLS_STAGE_SIZE]; /* plaintext taken from the caller, unsent */
	size_t stage_off, stage_len;
};

/* ---- credentials ---- */

int nbd_tls_mode_parse(const char *s, enum nbd_tls_mode *out)
{
	static const char *names[] = { "off", "on", "require" };

	for (unsigned i = 0; i < 3; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum nbd_tls_mode)i;
			return 0;
		}
	}
	return -EINVAL;
}

enum nbd_tls_mode nbd_tls_mode(const struct nbd_tls *tls)
{
	return tls ? tls->mode : NBD_TLS_OFF;
}

/* Is the file there and readable by us? Logged with what it is for. */
static int check_readable(const char *path, const char *what)
{
	if (access(path, R_OK) == 0)
		return 0;
	log_msg(LOG_ERROR, NBD_LOG, "%s %s: %s", what, path, err_str(errno));
	return -errno;
}

static bool psk_line_ok(const char *line)
{
	const char *colon = strchr(line, ':');
	size_t hex;

	if (!colon || colon == line)
		return false;
	hex = strlen(colon + 1);
	return hex > 0 && hex % 2 == 0 && strspn(colon + 1, "0123456789abcdefABCDEF") == hex;
}

/* gnutls reads the keys file only when a client names its user: check its
 * format now ("username:hexkey" per line), so that a typo fails at start-up. */
static int psk_file_check(const char *path)
{
	char line[TLS_PSK_LINE_MAX];
	unsigned lineno = 0, keys = 0;
	struct stat st;
	int r = check_readable(path, "TLS pre-shared keys file");
	FILE *f;

	if (r < 0)
		return r;
	f = fopen(path, "r");
	if (!f || fstat(fileno(f), &st) < 0) {
		r = -errno;
		log_msg(LOG_ERROR, NBD_LOG, "TLS pre-shared keys file %s: %s", path, err_str(-r));
		if (f)
			fclose(f);
		return r;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0')
			continue;
		if (!psk_line_ok(line)) {
			log_msg(LOG_ERROR, NBD_LOG, "TLS pre-shared keys file %s:%u: expected "
				"USERNAME:HEXKEY (as psktool -u USERNAME -p %s writes)", path, lineno,
				path);
			fclose(f);
			return -EINVAL;
		}
		keys++;
	}
	fclose(f);
	if (keys == 0) {
		log_msg(LOG_ERROR, NBD_LOG, "TLS pre-shared keys file %s has no key "
			"(psktool -u USERNAME -p %s makes one)", path, path);
		return -EINVAL;
	}
	if (st.st_mode & 077)
		log_msg(LOG_WARN, NBD_LOG, "TLS pre-shared keys file %s can be read by other "
			"users (mode %03o): chmod 600 it", path, (unsigned)(st.st_mode & 0777));
	return 0;
}

static int load_psk(struct nbd_tls *tls, const char *path)
{
	int r = psk_file_check(path);

	if (r < 0)
		return r;
	if (gnutls_psk_allocate_server_credentials(&tls->psk) < 0)
		return -ENOMEM;
	r = gnutls_psk_set_server_credentials_file(tls->psk, path);
	if (r < 0) {
		log_msg(LOG_ERROR, NBD_LOG, "TLS pre-shared keys file %s: %s", path,
			gnutls_strerror(r));
		return -EINVAL;
	}
	gnutls_psk_set_server_known_dh_params(tls->psk, GNUTLS_SEC_PARAM_MEDIUM);
	return 0;
}

/* dir/name into buf; false if it does not fit. */
static bool x509_path(char *buf, size_t len, const char *dir, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", dir, name);

	return n > 0 && (size_t)n < len;
}

static int load_x509_ca(struct nbd_tls *tls, const char *dir, bool *have_ca)
{
	char ca[4096], crl[4096];
	int r;

	if (!x509_path(ca, sizeof(ca), dir, "ca-cert.pem") ||
	    !x509_path(crl, sizeof(crl), dir, "ca-crl.pem"))
		return -ENAMETOOLONG;
	*have_ca = access(ca, F_OK) == 0;
	if (!*have_ca)
		return 0;
	r = check_readable(ca, "TLS CA certificate");
	if (r < 0)
		return r;
	r = gnutls_certificate_set_x509_trust_file(tls->x509, ca, GNUTLS_X509_FMT_PEM);
	if (r <= 0) {
		log_msg(LOG_ERROR, NBD_LOG, "TLS CA certificate %s: %s", ca,
			r < 0 ? gnutls_strerror(r) : "no certificate in it");
		return -EINVAL;
	}
	if (access(crl, F_OK) != 0)
		return 0;
	r = gnutls_certificate_set_x509_crl_file(tls->x509, crl, GNUTLS_X509_FMT_PEM);
	if (r < 0) {
		log_msg(LOG_ERROR, NBD_LOG, "TLS revocation list %s: %s", crl, gnutls_strerror(r));
		return -EINVAL;
	}
	return 0;
}

static int load_x509(struct nbd_tls *tls, const char *dir, bool verify_peer)
{
	char cert[4096], key[4096];
	bool have_ca;
	int r;

	if (!x509_path(cert, sizeof(cert), dir, "server-cert.pem") ||
	    !x509_path(key, sizeof(key), dir, "server-key.pem"))
		return -ENAMETOOLONG;
	r = check_readable(cert, "TLS server certificate");
	if (r == 0)
		r = check_readable(key, "TLS server key");
	if (r < 0)
		return r;
	if (gnutls_certificate_allocate_credentials(&tls->x509) < 0)
		return -ENOMEM;
	r = load_x509_ca(tls, dir, &have_ca);
	if (r < 0)
		return r;
	if (verify_peer && !have_ca) {
		log_msg(LOG_ERROR, NBD_LOG, "TLS: verifying clients needs the CA that signs their "
			"certificates in %s/ca-cert.pem", dir);
		return -ENOENT;
	}
	r = gnutls_certificate_set_x509_key_file(tls->x509, cert, key, GNUTLS_X509_FMT_PEM);
	if (r < 0) {
		log_msg(LOG_ERROR, NBD_LOG, "TLS server certificate %s with key %s: %s", cert, key,
			gnutls_strerror(r));
		return -EINVAL;
	}
	gnutls_certificate_set_known_dh_params(tls->x509, GNUTLS_SEC_PARAM_MEDIUM);
	return 0;
}

int nbd_tls_create(const struct nbd_tls_opts *opts, struct nbd_tls **out)
{
	struct nbd_tls *tls;
	const char *err_pos;
	int r;

	if (!opts || opts->mode == NBD_TLS_OFF)
		return -EINVAL;
	if (!opts->psk_file == !opts->x509_dir) {
		log_msg(LOG_ERROR, NBD_LOG, "TLS needs either a pre-shared keys file or an X.509 "
			"certificates folder (not %s)", opts->psk_file ? "both" : "neither");
		return -EINVAL;
	}
	tls = calloc(1, sizeof(*tls));
	if (!tls)
		return -ENOMEM;
	tls->mode = opts->mode;
	tls->verify_peer = opts->verify_peer && opts->x509_dir;
	r = opts->psk_file ? load_psk(tls, opts->psk_file)
			   : load_x509(tls, opts->x509_dir, opts->verify_peer);
	if (r == 0 && gnutls_priority_init(&tls->prio, opts->psk_file ? TLS_PRIORITY_PSK
								  : TLS_PRIORITY_X509,
					   &err_pos) < 0)
		r = -EINVAL;
	if (r < 0) {
		nbd_tls_destroy(tls);
		return r;
	}
	*out = tls;
	return 0;
}

void nbd_tls_destroy(struct nbd_tls *tls)
{
	if (!tls)
		return;
	if (tls->prio)
		gnutls_priority_deinit(tls->prio);
	if (tls->psk)
		gnutls_psk_free_server_credentials(tls->psk);
	if (tls->x509)
		gnutls_certificate_free_credentials(tls->x509);
	free(tls);
}

/* ---- a connection's session ---- */

static ssize_t tls_pull(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
	struct nbd_conn *c = ptr;
	ssize_t n = recv(c->fd, buf, len, MSG_DONTWAIT);

	if (n < 0)
		gnutls_transport_set_errno(c->tls->s, errno);
	return n;
}

static ssize_t tls_push(gnutls_transport_ptr_t ptr, const void *buf, size_t len)
{
	struct nbd_conn *c = ptr;
	ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (n < 0)
		gnutls_transport_set_errno(c->tls->s, errno);
	return n;
}

int nbd_tls_session_start(struct nbd_conn *c)
{
	const struct nbd_tls *tls = c->srv->tls;
	struct nbd_tls_session *t = calloc(1, sizeof(*t));
	int r;

	if (!t)
		return -ENOMEM;
	if (gnutls_init(&t->s, GNUTLS_SERVER | GNUTLS_NONBLOCK) < 0) {
		free(t);
		return -ENOMEM;
	}
	c->tls = t;
	r = gnutls_priority_set(t->s, tls->prio);
	if (r == 0 && tls->psk)
		r = gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, tls->psk);
	if (r == 0 && tls->x509) {
		r = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, tls->x509);
		gnutls_certificate_server_set_request(t->s, tls->verify_peer ? GNUTLS_CERT_REQUIRE
									    : GNUTLS_CERT_IGNORE);
	}
	if (r < 0) {
		nbd_tls_session_free(c);
		return -ENOMEM;
	}
	/* the server's handshake timer bounds the whole handshake, TLS included */
	gnutls_handshake_set_timeout(t->s, 0);
	gnutls_transport_set_ptr(t->s, c);
	gnutls_transport_set_pull_function(t->s, tls_pull);
	gnutls_transport_set_push_function(t->s, tls_push);
	return 0;
}

void nbd_tls_session_free(struct nbd_conn *c)
{
	struct nbd_tls_session *t = c->tls;

	if (!t)
		return;
	if (t->established && c->fd >= 0)
		gnutls_bye(t->s, GNUTLS_SHUT_WR); /* close_notify if the socket takes it */
	gnutls_deinit(t->s);
	free(t);
	c->tls = NULL;
}

/* After the handshake: is the client's certificate signed by our CA? */
static int verify_client(struct nbd_conn *c, const char **why)
{
	unsigned status = 0;
	int r = gnutls_certificate_verify_peers2(c->tls->s, &status);

	if (r < 0) {
		*why = gnutls_strerror(r);
		return -EACCES;
	}
	if (status) {
		*why = status & GNUTLS_CERT_SIGNER_NOT_FOUND ? "client certificate not signed by our CA"
		       : status & GNUTLS_CERT_REVOKED      ? "client certificate revoked"
		       : status & (GNUTLS_CERT_EXPIRED | GNUTLS_CERT_NOT_ACTIVATED)
			       ? "client certificate expired or not yet valid"
			       : "client certificate not trusted";
		return -EACCES;
	}
	return 0;
}

/* Who the client is, for the log: its PSK user or its certificate's subject. */
static void log_established(struct nbd_conn *c)
{
	gnutls_session_t s = c->tls->s;
	const char *psk_user = c->srv->tls->psk ? gnutls_psk_server_get_username(s) : NULL;
	char dn[256] = "";

	if (!psk_user && c->srv->tls->verify_peer) {
		unsigned n = 0;
		const gnutls_datum_t *chain = gnutls_certificate_get_peers(s, &n);
		gnutls_x509_crt_t crt;
		size_t len = sizeof(dn);

		if (chain && n && gnutls_x509_crt_init(&crt) == 0) {
			if (gnutls_x509_crt_import(crt, &chain[0], GNUTLS_X509_FMT_DER) < 0 ||
			    gnutls_x509_crt_get_dn(crt, dn, &len) < 0)
				dn[0] = '\0';
			gnutls_x509_crt_deinit(crt);
		}
	}
	log_msg(LOG_INFO, NBD_LOG, "%s: TLS established (%s%s%s)", c->peer,
		gnutls_protocol_get_name(gnutls_protocol_get_version(s)),
		psk_user ? ", PSK user " : dn[0] ? ", client " : "", psk_user ? psk_user : dn);
}

int nbd_tls_session_handshake(struct nbd_conn *c, const char **why)
{
	struct nbd_tls_session *t = c->tls;
	int r = GNUTLS_E_AGAIN;

	for (int i = 0; i < TLS_HANDSHAKE_STEPS; i++) {
		r = gnutls_handshake(t->s);
		if (r == 0 || r == GNUTLS_E_AGAIN || gnutls_error_is_fatal(r))
			break; /* else interrupted or a warning alert: go on */
	}
	if (r == GNUTLS_E_AGAIN)
		return -EAGAIN;
	if (r < 0) {
		/* TLS 1.3 says only "illegal parameter" when the PSK binder is wrong */
		*why = c->srv->tls->psk && r == GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER
			       ? "the client's user name or pre-shared key is not in the keys file"
			       : gnutls_strerror(r);
		return -EPROTO;
	}
	if (c->srv->tls->verify_peer && verify_client(c, why) < 0)
		return -EACCES;
	t->established = true;
	log_established(c);
	return 0;
}

unsigned nbd_tls_session_events(const struct nbd_conn *c)
{
	return gnutls_record_get_direction(c->tls->s) ? LOOP_WRITE : LOOP_READ;
}

/* ---- the transport ---- */

/* A gnutls failure while reading or writing: the connection cannot go on. */
static ssize_t tls_failed(struct nbd_conn *c, ssize_t r)
{
	LOG_RATELIMITED(LOG_INFO, NBD_LOG, "%s: TLS: %s", c->peer, gnutls_strerror((int)r));
	errno = r == GNUTLS_E_PUSH_ERROR ? EPIPE : EPROTO;
	return -1;
}

static ssize_t tls_recv(struct nbd_conn *c, uint8_t *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = gnutls_record_recv(c->tls->s, buf + got, len - got);

		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		if (r == 0 || r == GNUTLS_E_PREMATURE_TERMINATION)
			return (ssize_t)got; /* end of stream (0 once what came before is used) */
		if (r == GNUTLS_E_AGAIN) {
			if (got)
				return (ssize_t)got;
			errno = EAGAIN;
			return -1;
		}
		if (r == GNUTLS_E_REHANDSHAKE || gnutls_error_is_fatal((int)r))
			return tls_failed(c, r);
		/* GNUTLS_E_INTERRUPTED, a warning alert: read on */
	}
	return (ssize_t)got;
}

/* Hands the staged plaintext to gnutls; true once all of it is sent. */
static bool stage_flush(struct nbd_conn *c, ssize_t *err)
{
	struct nbd_tls_session *t = c->tls;

	while (t->stage_off < t->stage_len) {
		/* after AGAIN, the same pointer and length again: gnutls has the record */
		ssize_t r = gnutls_record_send(t->s, t->stage + t->stage_off,
					       t->stage_len - t->stage_off);

		if (r == GNUTLS_E_AGAIN)
			return false;
		if (r == GNUTLS_E_INTERRUPTED)
			continue;
		if (r < 0) {
			*err = tls_failed(c, r);
			return false;
		}
		t->stage_off += (size_t)r;
	}
	t->stage_off = t->stage_len = 0;
	return true;
}

static ssize_t tls_send(struct nbd_conn *c, const struct iovec *iov, int iovcnt)
{
	struct nbd_tls_session *t = c->tls;
	size_t taken = 0, off = 0;
	ssize_t err = 0;
	int i = 0;

	for (;;) {
		if (!stage_flush(c, &err)) {
			if (err < 0 || taken == 0) {
				if (err == 0)
					errno = EAGAIN;
				return -1;
			}
			return (ssize_t)taken; /* staged: ours now */
		}
		if (i == iovcnt)
			return (ssize_t)taken;
		while (i < iovcnt && t->stage_len < TLS_STAGE_SIZE) {
			size_t n = iov[i].iov_len - off;

			if (n > TLS_STAGE_SIZE - t->stage_len)
				n = TLS_STAGE_SIZE - t->stage_len;
			memcpy(t->stage + t->stage_len, (const uint8_t *)iov[i].iov_base + off, n);
			t->stage_len += n;
			taken += n;
			off += n;
			if (off == iov[i].iov_len) {
				i++;
				off = 0;
			}
		}
	}
}

ssize_t nbd_conn_recv(struct nbd_conn *c, void *buf, size_t len)
{
	if (c->tls)
		return tls_recv(c, buf, len);
	return recv(c->fd, buf, len, MSG_DONTWAIT);
}

ssize_t nbd_conn_send(struct nbd_conn *c, const struct iovec *iov, int iovcnt)
{
	struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };

	if (c->tls)
		return tls_send(c, iov, iovcnt);
	return sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}

bool nbd_conn_recv_pending(const struct nbd_conn *c)
{
	return c->tls && c->tls->established && gnutls_record_check_pending(c->tls->s) > 0;
}

bool nbd_conn_send_pending(const struct nbd_conn *c)
{
	return c->tls && c->tls->stage_len > 0;
}
