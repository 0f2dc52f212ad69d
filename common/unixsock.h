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

/* For a server that stopped reading a stream socket (unix or TCP) and was woken
 * anyway: has the peer hung up or the socket failed? */
bool unixsock_hung_up(int fd);

#endif
