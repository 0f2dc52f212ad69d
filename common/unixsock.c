/* common/unixsock.c — see unixsock.h. */
#include "common/unixsock.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int claim_path(const struct sockaddr_un *sun)
{
	struct stat st;
	int fd, r;

	if (lstat(sun->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	close(fd);
	if (r == 0)
		return -EADDRINUSE;
	return unlink(sun->sun_path) < 0 ? -errno : 0;
}

int unixsock_listen(const char *path, mode_t mode, int backlog)
{
	struct unixsock_access acc = { .mode = mode, .uid = (uid_t)-1, .gid = (gid_t)-1 };

	return unixsock_listen_access(path, &acc, backlog);
}

/* Owner and group, then mode (chown may clear mode bits): all before listen(). */
static int set_access(const char *path, const struct unixsock_access *acc)
{
	if ((acc->uid != (uid_t)-1 || acc->gid != (gid_t)-1) && chown(path, acc->uid, acc->gid) < 0)
		return -errno;
	if (acc->mode && chmod(path, acc->mode) < 0)
		return -errno;
	return 0;
}

int unixsock_listen_access(const char *path, const struct unixsock_access *acc, int backlog)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd, r;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path));
	r = claim_path(&sun);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	r = set_access(path, acc);
	if (r < 0 || listen(fd, backlog) < 0) {
		r = r < 0 ? r : -errno;
		unlink(path);
		close(fd);
		return r;
	}
	return fd;
}

bool unixsock_hung_up(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLERR));
}
