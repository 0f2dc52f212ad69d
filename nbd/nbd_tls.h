/* nbd/nbd_tls.h — TLS credentials for the NBD server (gnutls), the way qemu-nbd and
 * nbdkit take them: a pre-shared keys file in psktool's format, or a folder of X.509
 * PEM files. They are loaded and checked once, at start-up, so that a missing key
 * file or an unreadable certificate stops the node with a clear message instead of
 * failing every client later.
 *
 * The server (nbd_server_opts.tls) offers TLS on TCP connections through
 * NBD_OPT_STARTTLS; with NBD_TLS_REQUIRE every other option is refused with
 * NBD_REP_ERR_TLS_REQD until the connection has been upgraded. A unix socket is
 * protected by its file permissions and stays plain.
 *
 * Threading: the credentials are read-only once created; destroy them after the
 * server that uses them.
 */
#ifndef QUILL_NBD_NBD_TLS_H
#define QUILL_NBD_NBD_TLS_H

#include <stdbool.h>

struct nbd_tls;

enum nbd_tls_mode {
	NBD_TLS_OFF,      /* no TLS: NBD_OPT_STARTTLS is answered NBD_REP_ERR_UNSUP */
	NBD_TLS_ON,       /* offered: a client may upgrade, plain clients are served too */
	NBD_TLS_REQUIRE,  /* TCP clients must upgrade before any other option */
};

struct nbd_tls_opts {
	enum nbd_tls_mode mode;
	/* One of the two: */
	const char *psk_file;  /* "username:hexkey" lines (psktool -u NAME -p FILE) */
	const char *x509_dir;  /* server-cert.pem, server-key.pem, ca-cert.pem (needed to
				  verify clients), ca-crl.pem (optional) */
	bool verify_peer;      /* X.509: a client must present a certificate the CA
				  signed (QEMU's verify-peer=on) */
};

/* Loads and checks the credentials; logs what is wrong ("nbd" component) and returns
 * -ENOENT/-EACCES (a file missing or unreadable) or -EINVAL (bad content, both or
 * neither of psk_file and x509_dir, mode off). */
int nbd_tls_create(const struct nbd_tls_opts *opts, struct nbd_tls **out);
void nbd_tls_destroy(struct nbd_tls *tls); /* NULL ok */

enum nbd_tls_mode nbd_tls_mode(const struct nbd_tls *tls); /* NULL: NBD_TLS_OFF */

/* "off", "on", "require" -> mode; -EINVAL otherwise. */
int nbd_tls_mode_parse(const char *s, enum nbd_tls_mode *out);

#endif
