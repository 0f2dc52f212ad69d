/* tests/integration/nbd_test.h — helpers shared by the NBD server tests.
 *
 * nbdt_start() runs nbd-harness (fork/exec) on a scratch store, on 127.0.0.1 with a
 * free port and on a unix socket in the scratch directory; nbdt_stop() stops it by
 * PID with SIGTERM and checks that it exited 0. A watchdog (SIGALRM) kills the
 * harness and fails the test if it hangs. The raw_* helpers speak the protocol by
 * hand over a blocking socket (receive timeout 10 s) for what libnbd cannot send.
 */
#ifndef QUILL_TESTS_INTEGRATION_NBD_TEST_H
#define QUILL_TESTS_INTEGRATION_NBD_TEST_H

#include <libnbd.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "itest.h"

#define NBDT_VOL_SIZE   (64ull << 20) /* volume "vol" */
#define NBDT_SMALL_SIZE (1ull << 20)  /* volume "small" */
/* A volume with the longest name, 1 MiB, and its snapshot of the longest name: the
 * longest export name, NBDT_LONG "@" NBDT_LONG (ENGINE_SNAP_SPEC_MAX bytes). */
#define NBDT_LONG "v123456789012345678901234567890123456789012345678901234567890ab"
#define NBDT_SNAP "small@base" /* a snapshot of "small", taken at start (zeros) */

struct nbdt_server {
	pid_t pid;
	unsigned port;
	char port_str[8];
	char unix_path[PATH_MAX + 16];
	char log_path[PATH_MAX + 16];
};

/* Fails the current bool-returning check with a message. */
#define CHECK(cond, ...)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "  check failed at %s:%d: %s: ", __FILE__,   \
				__LINE__, #cond);                                     \
			fprintf(stderr, __VA_ARGS__);                                 \
			fprintf(stderr, "\n");                                        \
			return false;                                                 \
		}                                                                     \
	} while (0)

/* Starts the harness with volumes "vol", "small" and NBDT_LONG, and the snapshots
 * NBDT_SNAP and NBDT_LONG@NBDT_LONG. Arms a watchdog of secs. */
int nbdt_start(const struct it_env *env, struct nbdt_server *srv, unsigned watchdog_secs);
/* The same with more harness flags (NULL-terminated, at most 32), e.g. limits. */
int nbdt_start_args(const struct it_env *env, struct nbdt_server *srv, unsigned watchdog_secs,
		    const char *const *extra);
/* Is the harness still running? */
bool nbdt_alive(const struct nbdt_server *srv);
/* SIGTERM, waits up to 20 s; 0 if it exited with status 0. Prints its log on failure. */
int nbdt_stop(struct nbdt_server *srv);
/* Prints the last lines of the harness's log on stderr. */
void nbdt_dump_log(const struct nbdt_server *srv);

/* A libnbd handle connected over TCP to export, asking for base:allocation if meta. */
struct nbd_handle *nbdt_connect(const struct nbdt_server *srv, const char *export, bool meta);
/* The server serves any byte range, past the minimum block size it advertises (the
 * volume's logical sector), and libnbd refuses to send such requests unless told:
 * tests that send them on purpose call this (nbdt_connect does). */
int nbdt_allow_unaligned(struct nbd_handle *h);
/* The liveness probe after each bad client: a new client writes and reads back. */
bool nbdt_server_works(const struct nbdt_server *srv);

/* A test program: starts the harness (watchdog 55 s), runs the named checks (ok/FAIL
 * per check, each with its own seed derived from the test's), stops the harness and
 * expects a clean exit. Returns the exit status (0, 1 or 77 to skip). */
struct nbdt_check {
	const char *name;
	bool (*fn)(struct nbdt_server *srv, uint64_t seed);
};
int nbdt_main(const char *name, const struct nbdt_check *checks, size_t n);

/* ---- raw protocol ---- */
int raw_connect(const struct nbdt_server *srv);
/* The same from a source address of ours (e.g. "127.0.0.2": another source). */
int raw_connect_from(const struct nbdt_server *srv, const char *src);
/* The same over the harness's unix socket. */
int raw_connect_unix(const struct nbdt_server *srv);
int raw_send(int fd, const void *buf, size_t len);
/* Receives exactly len bytes; -1 on EOF/error/timeout. */
int raw_recv(int fd, void *buf, size_t len);
/* True if the server closed the connection (EOF or reset) within the timeout. */
bool raw_closed(int fd);
/* Reads the greeting and sends client flags. */
int raw_greet(int fd, uint32_t client_flags);
int raw_send_option(int fd, uint32_t opt, const void *data, uint32_t len);
/* Receives one option reply header (+ data into buf up to cap); returns reply type,
 * or 0 on failure. */
uint32_t raw_recv_option_reply(int fd, uint32_t *len_out, void *buf, size_t cap);
/* Full handshake to transmission with NBD_OPT_GO (structured replies if asked). */
int raw_go(int fd, const char *export, bool structured);
/* Sends NBD_OPT_GO (after the greeting) and returns the reply type that ends it
 * (NBD_REP_ACK or an error), 0 on failure. */
uint32_t raw_send_go(int fd, const char *export);
int raw_send_request(int fd, uint16_t flags, uint16_t type, uint64_t cookie, uint64_t offset,
		     uint32_t length);
/* Receives a simple reply; returns its error field or -1; *cookie set. */
int64_t raw_recv_simple_reply(int fd, uint64_t *cookie);

#endif
