/* tests/unit/cluster/test_credentials.c — the etcd credentials file
 * (cluster_credentials_load): mode 0600 or refused, its format. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster.h"

static char path[64];

static void write_file(const char *text, mode_t mode)
{
	int fd;

	strcpy(path, "/tmp/quill-cred-XXXXXX");
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	cr_assert_eq(fchmod(fd, mode), 0);
	close(fd);
}

static void remove_file(void)
{
	if (path[0])
		unlink(path);
}

TestSuite(credentials, .fini = remove_file);

Test(credentials, mode_0600_is_read)
{
	char user[CLUSTER_CRED_MAX], pw[CLUSTER_CRED_MAX], why[512];

	write_file("# etcd\nuser = quill\npassword = s3cret = yes\n", 0600);
	cr_assert_eq(cluster_credentials_load(path, user, pw, why, sizeof(why)), 0, "%s", why);
	cr_assert_str_eq(user, "quill");
	cr_assert_str_eq(pw, "s3cret = yes");
}

Test(credentials, readable_by_others_is_refused)
{
	char user[CLUSTER_CRED_MAX], pw[CLUSTER_CRED_MAX], why[512];
	mode_t modes[] = { 0644, 0640, 0604, 0660, 0602 };

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		write_file("user = quill\npassword = x\n", modes[i]);
		cr_assert_eq(cluster_credentials_load(path, user, pw, why, sizeof(why)), -EACCES);
		cr_assert(strstr(why, "chmod 600"), "%s", why);
		unlink(path);
	}
	path[0] = '\0';
}

Test(credentials, bad_files_are_refused)
{
	char user[CLUSTER_CRED_MAX], pw[CLUSTER_CRED_MAX], why[512];

	cr_assert_eq(cluster_credentials_load("/nonexistent/cred", user, pw, why, sizeof(why)),
		     -ENOENT);
	write_file("user = quill\n", 0600);
	cr_assert_eq(cluster_credentials_load(path, user, pw, why, sizeof(why)), -EINVAL);
	unlink(path);
	write_file("user quill\npassword = x\n", 0600);
	cr_assert_eq(cluster_credentials_load(path, user, pw, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, ":1:"), "%s", why);
	unlink(path);
	write_file("user = quill\npassword = x\ncolour = blue\n", 0600);
	cr_assert_eq(cluster_credentials_load(path, user, pw, why, sizeof(why)), -EINVAL);
}
