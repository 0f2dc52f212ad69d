/* tests/unit/common/test_unixsock.c — listening unix sockets: owner, group and mode
 * are the file's once unixsock_listen_access() returns; a live socket is not taken
 * over. */
#include "common/unixsock.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static char dir[64], path[96];

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/quill-test-unixsock.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s.sock", dir);
}

static void remove_dir(void)
{
	unlink(path);
	rmdir(dir);
}

TestSuite(unixsock, .init = make_dir, .fini = remove_dir);

/* A group to give the socket: as root one that is not ours, else our own. */
static gid_t some_group(void)
{
	struct group *gr = getuid() == 0 ? getgrnam("daemon") : NULL;

	return gr ? gr->gr_gid : getgid();
}

Test(unixsock, access_is_applied)
{
	struct unixsock_access acc = { .mode = 0660, .uid = (uid_t)-1, .gid = some_group() };
	struct stat st;
	int fd = unixsock_listen_access(path, &acc, 4);

	cr_assert_geq(fd, 0, "listen: %s", strerror(-fd));
	cr_assert_eq(stat(path, &st), 0);
	cr_assert(S_ISSOCK(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0660, "mode %o", st.st_mode & 07777);
	cr_assert_eq(st.st_gid, acc.gid);
	cr_assert_eq(st.st_uid, getuid());
	close(fd);
}

Test(unixsock, mode_ignores_the_umask)
{
	mode_t old = umask(0);
	int fd = unixsock_listen(path, 0600, 4);
	struct stat st;

	umask(old);
	cr_assert_geq(fd, 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	cr_assert_eq(unixsock_listen(path, 0600, 4), -EADDRINUSE);
	close(fd);
}

Test(unixsock, owner_change_refused_for_non_root)
{
	struct unixsock_access acc = { .mode = 0600, .uid = 1, .gid = (gid_t)-1 };
	int fd;

	if (getuid() == 0) {
		remove_dir(); /* a skipped test's .fini does not run */
		cr_skip_test("root may give the socket to anyone");
	}
	fd = unixsock_listen_access(path, &acc, 4);
	cr_assert_eq(fd, -EPERM);
	cr_assert_neq(access(path, F_OK), 0, "the socket file was left behind");
}
