/* tests/unit/nbd/test_tls.c — nbd/tls.c's credentials checks (each way a setting can
 * be wrong) and server.c's loopback test for the "beyond loopback" warning. */
#include "nbd/nbd_internal.h"
#include "nbd/nbd_tls.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/quill-test-tls.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(nbd_tls, .init = make_dir, .fini = remove_dir);

static const char *write_file(const char *name, const char *text)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	chmod(path, 0600);
	return path;
}

static int create_psk(const char *path)
{
	struct nbd_tls_opts o = { .mode = NBD_TLS_REQUIRE, .psk_file = path };
	struct nbd_tls *tls = NULL;
	int r = nbd_tls_create(&o, &tls);

	cr_assert_eq(r == 0, tls != NULL);
	if (r == 0)
		cr_assert_eq(nbd_tls_mode(tls), NBD_TLS_REQUIRE);
	nbd_tls_destroy(tls);
	return r;
}

Test(nbd_tls, psk_file_in_psktool_format_loads)
{
	cr_assert_eq(create_psk(write_file("keys.psk", "alice:0123456789abcdef\n\nbob:00FF\n")), 0);
}

Test(nbd_tls, psk_file_missing_is_enoent)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/none.psk", dir);
	cr_assert_eq(create_psk(path), -ENOENT);
}

Test(nbd_tls, psk_file_bad_lines_are_einval)
{
	cr_assert_eq(create_psk(write_file("a.psk", "alice\n")), -EINVAL);          /* no key */
	cr_assert_eq(create_psk(write_file("b.psk", ":00ff\n")), -EINVAL);          /* no user */
	cr_assert_eq(create_psk(write_file("c.psk", "alice:xyz0\n")), -EINVAL);     /* not hex */
	cr_assert_eq(create_psk(write_file("d.psk", "alice:abc\n")), -EINVAL);      /* odd */
	cr_assert_eq(create_psk(write_file("e.psk", "alice:\n")), -EINVAL);         /* empty */
	cr_assert_eq(create_psk(write_file("f.psk", "\n\n")), -EINVAL);             /* no key */
}

Test(nbd_tls, x509_dir_without_server_files_is_enoent)
{
	struct nbd_tls_opts o = { .mode = NBD_TLS_ON, .x509_dir = dir };
	struct nbd_tls *tls = NULL;

	cr_assert_eq(nbd_tls_create(&o, &tls), -ENOENT);
	cr_assert_null(tls);
}

Test(nbd_tls, x509_garbage_certificate_is_einval)
{
	struct nbd_tls_opts o = { .mode = NBD_TLS_ON, .x509_dir = dir };
	struct nbd_tls *tls = NULL;

	write_file("server-cert.pem", "not a certificate\n");
	write_file("server-key.pem", "not a key\n");
	cr_assert_eq(nbd_tls_create(&o, &tls), -EINVAL);
	o.verify_peer = true; /* and no ca-cert.pem to verify clients with */
	cr_assert_eq(nbd_tls_create(&o, &tls), -ENOENT);
	cr_assert_null(tls);
}

Test(nbd_tls, credentials_one_kind_and_a_mode)
{
	struct nbd_tls_opts o = { .mode = NBD_TLS_ON };
	struct nbd_tls *tls = NULL;
	const char *psk = write_file("keys.psk", "alice:00ff\n");

	cr_assert_eq(nbd_tls_create(&o, &tls), -EINVAL); /* neither */
	o.psk_file = psk;
	o.x509_dir = dir;
	cr_assert_eq(nbd_tls_create(&o, &tls), -EINVAL); /* both */
	o.x509_dir = NULL;
	o.mode = NBD_TLS_OFF;
	cr_assert_eq(nbd_tls_create(&o, &tls), -EINVAL); /* nothing to create */
	cr_assert_null(tls);
	cr_assert_eq(nbd_tls_mode(NULL), NBD_TLS_OFF);
}

Test(nbd_tls, mode_names)
{
	enum nbd_tls_mode m;

	cr_assert_eq(nbd_tls_mode_parse("off", &m), 0);
	cr_assert_eq(m, NBD_TLS_OFF);
	cr_assert_eq(nbd_tls_mode_parse("on", &m), 0);
	cr_assert_eq(m, NBD_TLS_ON);
	cr_assert_eq(nbd_tls_mode_parse("require", &m), 0);
	cr_assert_eq(m, NBD_TLS_REQUIRE);
	cr_assert_eq(nbd_tls_mode_parse("yes", &m), -EINVAL);
	cr_assert_eq(nbd_tls_mode_parse("", &m), -EINVAL);
}

static bool loopback4(const char *addr)
{
	struct sockaddr_in in = { .sin_family = AF_INET };

	cr_assert_eq(inet_pton(AF_INET, addr, &in.sin_addr), 1);
	return nbd_addr_is_loopback((const struct sockaddr *)&in);
}

static bool loopback6(const char *addr)
{
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };

	cr_assert_eq(inet_pton(AF_INET6, addr, &in6.sin6_addr), 1);
	return nbd_addr_is_loopback((const struct sockaddr *)&in6);
}

Test(nbd_server, loopback_addresses_are_told_apart)
{
	cr_assert(loopback4("127.0.0.1"));
	cr_assert(loopback4("127.255.0.9"));
	cr_assert(loopback6("::1"));
	cr_assert(loopback6("::ffff:127.0.0.1"));
	cr_assert_not(loopback4("0.0.0.0"));
	cr_assert_not(loopback4("10.0.0.1"));
	cr_assert_not(loopback4("128.0.0.1"));
	cr_assert_not(loopback6("::"));
	cr_assert_not(loopback6("::ffff:10.0.0.1"));
	cr_assert_not(loopback6("fe80::1"));
}
