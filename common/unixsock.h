/* common/unixsock.h — listening unix stream sockets for servers (NBD, vhost-user).
 */
#ifndef QUILL_COMMON_UNIXSOCK_H
#define QUILL_COMMON_UNIXSOCK_H

#include <stdbool.h>
#include <sys/types.h>

/* Binds and listens on path, non-blocking and close-on-exec, with the file's mode
 * set to mode (0 = leave it to the umask). A socket file nobody answers on is left
 * over by a crash and is replaced; a live one is -EADDRINUSE, anything else at the
 * path -ENOTSOCK; -ENAMETOOLONG past 107 bytes. Returns the fd or -errno. */
int unixsock_listen(const char *path, mode_t mode, int backlog);

/* Who may connect to a listening socket: connect() needs write permission on it. */
struct unixsock_access {
	mode_t mode;  /* 0 = leave it to the umask */
	uid_t uid;    /* (uid_t)-1 = ours */
	gid_t gid;    /* (gid_t)-1 = ours */
};

/* unixsock_listen() with an owner and a group too. They are set before listen(),
 * and until listen() every connect() is refused: there is no moment at which the
 * socket accepts a client its final owner, group and mode would not let in.
 * -EPERM: changing the owner needs root, the group root or membership. */
int unixsock_listen_access(const char *path, const struct unixsock_access *acc, int backlog);

/* For a server that stopped reading a stream socket (unix or TCP) and was woken
 * anyway: has the peer hung up or the socket failed? */
bool unixsock_hung_up(int fd);

#endif
