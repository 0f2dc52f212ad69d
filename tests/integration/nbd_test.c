/* tests/integration/nbd_test.c — see nbd_test.h. */
#include "nbd_test.h"

#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nbd/nbd_proto.h"

static pid_t watchdog_pid;

static void watchdog(int sig)
{
	static const char msg[] = "watchdog: the test hung; killing the harness\n";

	(void)sig;
	if (watchdog_pid > 0)
		kill(watchdog_pid, SIGKILL);
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(1);
	_exit(1);
}

int nbdt_start(const struct it_env *env, struct nbdt_server *srv, unsigned watchdog_secs)
{
	return nbdt_start_args(env, srv, watchdog_secs, NULL);
}

#define NBDT_MAX_EXTRA 32

int nbdt_start_args(const struct it_env *env, struct nbdt_server *srv, unsigned watchdog_secs,
		    const char *const *extra)
{
	char store[PATH_MAX + 16], line[128];
	struct pollfd pfd;
	int pipefd[2];
	FILE *f;

	memset(srv, 0, sizeof(*srv));
	snprintf(store, sizeof(store), "%s", env->store);
	snprintf(srv->unix_path, sizeof(srv->unix_path), "%s/nbd.sock", env->dir);
	snprintf(srv->log_path, sizeof(srv->log_path), "%s/harness.log", env->dir);
	if (pipe(pipefd) < 0)
		return -errno;
	srv->pid = fork();
	if (srv->pid < 0)
		return -errno;
	if (srv->pid == 0) {
		int log = open(srv->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(pipefd[1], STDOUT_FILENO);
		if (log >= 0)
			dup2(log, STDERR_FILENO);
		const char *argv[32 + NBDT_MAX_EXTRA] = {
			"nbd-harness", "--store", store, "--meta", env->meta,
			"--size", "256M", "--volume", "vol:64M", "--volume", "small:1M",
			"--volume", NBDT_LONG ":1M", "--snapshot", NBDT_SNAP,
			"--snapshot", NBDT_LONG "@" NBDT_LONG,
			"--addr", "127.0.0.1", "--port", "0", "--unix", srv->unix_path,
		};
		size_t n = 0;

		while (argv[n])
			n++;
		for (size_t i = 0; extra && extra[i] && i < NBDT_MAX_EXTRA; i++)
			argv[n++] = extra[i];
		close(pipefd[0]);
		execv(NBD_HARNESS, (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	watchdog_pid = srv->pid;
	signal(SIGALRM, watchdog);
	alarm(watchdog_secs);
	pfd = (struct pollfd){ .fd = pipefd[0], .events = POLLIN };
	if (poll(&pfd, 1, 30000) != 1 || !(f = fdopen(pipefd[0], "r"))) {
		fprintf(stderr, "nbd-harness did not start\n");
		nbdt_dump_log(srv);
		close(pipefd[0]);
		nbdt_stop(srv);
		return -ETIMEDOUT;
	}
	if (!fgets(line, sizeof(line), f) || sscanf(line, "ready port=%u", &srv->port) != 1) {
		fprintf(stderr, "nbd-harness failed to start\n");
		nbdt_dump_log(srv);
		fclose(f);
		nbdt_stop(srv);
		return -EIO;
	}
	fclose(f);
	snprintf(srv->port_str, sizeof(srv->port_str), "%u", srv->port);
	return 0;
}

bool nbdt_alive(const struct nbdt_server *srv)
{
	int st;

	return srv->pid > 0 && waitpid(srv->pid, &st, WNOHANG) == 0;
}

void nbdt_dump_log(const struct nbdt_server *srv)
{
	char buf[8192];
	FILE *f = fopen(srv->log_path, "r");
	size_t n;

	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	if (ftell(f) > (long)sizeof(buf) - 1)
		fseek(f, -(long)sizeof(buf) + 1, SEEK_END);
	else
		fseek(f, 0, SEEK_SET);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	fprintf(stderr, "---- nbd-harness log (tail) ----\n%s---- end of log ----\n", buf);
}

int nbdt_stop(struct nbdt_server *srv)
{
	int st = 0;

	if (srv->pid <= 0)
		return -1;
	kill(srv->pid, SIGTERM);
	for (int i = 0; i < 200; i++) {
		pid_t r = waitpid(srv->pid, &st, WNOHANG);

		if (r == srv->pid)
			break;
		if (r < 0 || i == 199) {
			fprintf(stderr, "nbd-harness did not exit after SIGTERM; killing it\n");
			kill(srv->pid, SIGKILL);
			waitpid(srv->pid, &st, 0);
			srv->pid = 0;
			nbdt_dump_log(srv);
			return -1;
		}
		usleep(100 * 1000);
	}
	srv->pid = 0;
	alarm(0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "nbd-harness ended with %s %d\n",
			WIFEXITED(st) ? "status" : "signal",
			WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		nbdt_dump_log(srv);
		return -1;
	}
	return 0;
}

int nbdt_allow_unaligned(struct nbd_handle *h)
{
	return nbd_set_strict_mode(h, nbd_get_strict_mode(h) & ~(uint32_t)LIBNBD_STRICT_ALIGN);
}

struct nbd_handle *nbdt_connect(const struct nbdt_server *srv, const char *export, bool meta)
{
	struct nbd_handle *h = nbd_create();

	if (!h)
		return NULL;
	if (nbdt_allow_unaligned(h) < 0 || nbd_set_export_name(h, export) < 0 ||
	    (meta && nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0) ||
	    nbd_connect_tcp(h, "127.0.0.1", srv->port_str) < 0) {
		fprintf(stderr, "  connect %s: %s\n", export, nbd_get_error());
		nbd_close(h);
		return NULL;
	}
	return h;
}

bool nbdt_server_works(const struct nbdt_server *srv)
{
	static unsigned round;
	struct nbd_handle *h;
	uint8_t out[5000], in[5000];
	uint64_t off = 40000000 + (uint64_t)(round++ % 64) * 12289;
	bool ok;

	CHECK(nbdt_alive(srv), "the harness died");
	h = nbdt_connect(srv, "vol", true);
	CHECK(h, "cannot connect a new client");
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 7 + round);
	ok = nbd_pwrite(h, out, sizeof(out), off, 0) == 0 && nbd_pread(h, in, sizeof(in), off, 0) == 0 &&
	     memcmp(in, out, sizeof(in)) == 0;
	if (!ok)
		fprintf(stderr, "  liveness probe: %s\n", nbd_get_error());
	nbd_shutdown(h, 0);
	nbd_close(h);
	return ok;
}

static bool nbdt_run(struct nbdt_server *srv, uint64_t seed, const struct nbdt_check *checks,
		     size_t n)
{
	bool all = true;

	for (size_t i = 0; i < n; i++) {
		uint64_t t0 = it_now_ns();
		bool ok = checks[i].fn(srv, it_mix(seed, i));

		printf("%s - %s (%.2f s)\n", ok ? "ok" : "FAIL", checks[i].name,
		       (double)(it_now_ns() - t0) / 1e9);
		fflush(stdout);
		all = all && ok;
	}
	return all;
}

int nbdt_main(const char *name, const struct nbdt_check *checks, size_t n)
{
	struct it_env env;
	struct nbdt_server srv;
	bool ok;
	int r = it_begin(&env, name);

	if (r)
		return r;
	if (nbdt_start(&env, &srv, 55) < 0)
		return it_end(&env, false);
	ok = nbdt_run(&srv, env.seed, checks, n);
	if (!ok)
		nbdt_dump_log(&srv);
	if (nbdt_stop(&srv) < 0) {
		fprintf(stderr, "the harness did not stop cleanly\n");
		ok = false;
	}
	return it_end(&env, ok);
}

/* ---- raw protocol ---- */

int raw_connect(const struct nbdt_server *srv)
{
	return raw_connect_from(srv, NULL);
}

/* A blocking socket with 10 s timeouts, bound to from (if any), connected to to. */
static int raw_socket(int family, const struct sockaddr *from, socklen_t fromlen,
		      const struct sockaddr *to, socklen_t tolen)
{
	struct timeval tv = { .tv_sec = 10 };
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if ((from && bind(fd, from, fromlen) < 0) || connect(fd, to, tolen) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int raw_connect_from(const struct nbdt_server *srv, const char *src)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)srv->port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in from = { .sin_family = AF_INET };

	if (src && inet_pton(AF_INET, src, &from.sin_addr) != 1)
		return -1;
	return raw_socket(AF_INET, src ? (struct sockaddr *)&from : NULL, sizeof(from),
			  (struct sockaddr *)&sin, sizeof(sin));
}

int raw_connect_unix(const struct nbdt_server *srv)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	size_t n = strlen(srv->unix_path);

	if (n >= sizeof(sun.sun_path))
		return -1;
	memcpy(sun.sun_path, srv->unix_path, n + 1);
	return raw_socket(AF_UNIX, NULL, 0, (struct sockaddr *)&sun, sizeof(sun));
}

/* All of len bytes, or -1 (EOF, error, timeout). */
static int raw_io(int fd, uint8_t *p, size_t len, bool out)
{
	while (len) {
		ssize_t n = out ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int raw_send(int fd, const void *buf, size_t len)
{
	return raw_io(fd, (uint8_t *)buf, len, true);
}

int raw_recv(int fd, void *buf, size_t len)
{
	return raw_io(fd, buf, len, false);
}

bool raw_closed(int fd)
{
	uint8_t buf[4096];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0 && errno != EINTR)
			return false; /* timeout */
	}
}

int raw_greet(int fd, uint32_t client_flags)
{
	uint8_t g[sizeof(struct nbd_greeting)], cf[4];

	if (raw_recv(fd, g, sizeof(g)) < 0 || nbd_get64(g) != NBD_MAGIC ||
	    nbd_get64(g + 8) != NBD_IHAVEOPT)
		return -1;
	nbd_put32(cf, client_flags);
	return raw_send(fd, cf, sizeof(cf));
}

int raw_send_option(int fd, uint32_t opt, const void *data, uint32_t len)
{
	uint8_t h[sizeof(struct nbd_option_hdr)];

	nbd_put64(h, NBD_IHAVEOPT);
	nbd_put32(h + 8, opt);
	nbd_put32(h + 12, len);
	if (raw_send(fd, h, sizeof(h)) < 0)
		return -1;
	return len ? raw_send(fd, data, len) : 0;
}

uint32_t raw_recv_option_reply(int fd, uint32_t *len_out, void *buf, size_t cap)
{
	uint8_t h[sizeof(struct nbd_option_reply_hdr)], junk[256];
	uint32_t len;

	if (raw_recv(fd, h, sizeof(h)) < 0 || nbd_get64(h) != NBD_REP_MAGIC)
		return 0;
	len = nbd_get32(h + 16);
	if (len_out)
		*len_out = len;
	for (uint32_t got = 0; got < len;) {
		uint32_t n = len - got;
		uint8_t *dst = junk;

		if (buf && got < cap) {
			dst = (uint8_t *)buf + got;
			n = n < cap - got ? n : (uint32_t)(cap - got);
		} else if (n > sizeof(junk)) {
			n = sizeof(junk);
		}
		if (raw_recv(fd, dst, n) < 0)
			return 0;
		got += n;
	}
	return nbd_get32(h + 12);
}

int raw_go(int fd, const char *export, bool structured)
{
	if (raw_greet(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) < 0)
		return -1;
	if (structured && (raw_send_option(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0) < 0 ||
			   raw_recv_option_reply(fd, NULL, NULL, 0) != NBD_REP_ACK))
		return -1;
	return raw_send_go(fd, export) == NBD_REP_ACK ? 0 : -1;
}

uint32_t raw_send_go(int fd, const char *export)
{
	uint8_t data[128];
	uint32_t n = (uint32_t)strlen(export), rep;

	nbd_put32(data, n);
	memcpy(data + 4, export, n);
	nbd_put16(data + 4 + n, 0);
	if (raw_send_option(fd, NBD_OPT_GO, data, 6 + n) < 0)
		return 0;
	do
		rep = raw_recv_option_reply(fd, NULL, NULL, 0);
	while (rep == NBD_REP_INFO);
	return rep;
}

int raw_send_request(int fd, uint16_t flags, uint16_t type, uint64_t cookie, uint64_t offset,
		     uint32_t length)
{
	uint8_t r[sizeof(struct nbd_request)];

	nbd_put32(r, NBD_REQUEST_MAGIC);
	nbd_put16(r + 4, flags);
	nbd_put16(r + 6, type);
	nbd_put64(r + 8, cookie);
	nbd_put64(r + 16, offset);
	nbd_put32(r + 24, length);
	return raw_send(fd, r, sizeof(r));
}

int64_t raw_recv_simple_reply(int fd, uint64_t *cookie)
{
	uint8_t r[sizeof(struct nbd_simple_reply)];

	if (raw_recv(fd, r, sizeof(r)) < 0 || nbd_get32(r) != NBD_SIMPLE_REPLY_MAGIC)
		return -1;
	if (cookie)
		*cookie = nbd_get64(r + 8);
	return nbd_get32(r + 4);
}
