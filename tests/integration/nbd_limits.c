/* tests/integration/nbd_limits.c — connection slots, request memory and stalls
 * (docs/nbd.md "Limits"), over raw sockets against nbd-harness with small limits.
 *
 * Two harnesses in turn:
 *   slots:  a long handshake timeout (30 s) and small slot bounds: idle handshakes
 *           cannot lock anyone out, and one source at its bound leaves another served;
 *   stalls: 1 s handshake timeout, 1.5 s request timeout, 64 MiB of request memory:
 *           silent handshakes and mid-request stalls are dropped while an idle
 *           attached client stays; 16 WRITEs of 32 MiB stalled before their last byte
 *           keep the server's VmRSS bounded while another client is served.
 * 127.0.0.2 is "another source" (all of 127/8 is loopback on Linux).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nbd/nbd_proto.h"
#include "nbd_test.h"

#define FLOOD 300
#define HS_PER_SOURCE 16
#define CLIENTS_PER_SOURCE 4
#define STALLERS 16
#define BIG_WRITE (32u << 20)
#define REQUEST_MEM_MIB 64

/* Has the server closed fd? Reads (and drops) whatever is buffered, never blocks. */
static bool closed_now(int fd)
{
	uint8_t buf[4096];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n > 0)
			continue;
		if (n == 0)
			return true;
		return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
	}
}

static void close_all(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* One READ over a raw connection in transmission (simple replies). */
static bool raw_read_ok(int fd, uint64_t cookie)
{
	static uint8_t data[4096];
	uint64_t got = 0;

	CHECK(raw_send_request(fd, 0, NBD_CMD_READ, cookie, 8192, sizeof(data)) == 0, "send READ");
	CHECK(raw_recv_simple_reply(fd, &got) == 0 && got == cookie, "READ reply");
	CHECK(raw_recv(fd, data, sizeof(data)) == 0, "READ data");
	return true;
}

/* ---- slots ---- */

/* FLOOD connections that say nothing, then a real client attaches at once (the
 * handshake timeout is 30 s here: only eviction makes room). */
static bool t_idle_flood(struct nbdt_server *srv, uint64_t seed)
{
	int fds[FLOOD];
	unsigned open = 0;
	bool works;

	(void)seed;
	for (int i = 0; i < FLOOD; i++)
		fds[i] = raw_connect(srv);
	works = nbdt_server_works(srv);
	usleep(200 * 1000);
	for (int i = 0; i < FLOOD; i++)
		open += fds[i] >= 0 && !closed_now(fds[i]);
	close_all(fds, FLOOD);
	CHECK(works, "a real client could not attach after %d idle connections", FLOOD);
	CHECK(open >= 1 && open <= HS_PER_SOURCE, "%u idle connections still open (bound %d)",
	      open, HS_PER_SOURCE);
	printf("  %d idle connections: %u kept, a real client attached\n", FLOOD, open);
	return true;
}

/* A source at its handshake bound evicts its own idlest, never another source's. */
static bool t_handshakes_per_source(struct nbdt_server *srv, uint64_t seed)
{
	int a[HS_PER_SOURCE + 1], b[8];
	uint8_t g[sizeof(struct nbd_greeting)];
	bool ok = true;

	(void)seed;
	usleep(200 * 1000); /* the previous check's connections are gone */
	for (int i = 0; i < HS_PER_SOURCE; i++) {
		a[i] = raw_connect_from(srv, "127.0.0.1");
		ok = ok && a[i] >= 0 && raw_recv(a[i], g, sizeof(g)) == 0;
	}
	for (int i = 0; i < 8; i++) {
		b[i] = raw_connect_from(srv, "127.0.0.2");
		ok = ok && b[i] >= 0 && raw_recv(b[i], g, sizeof(g)) == 0;
	}
	usleep(100 * 1000);
	for (int i = 0; ok && i < HS_PER_SOURCE; i++)
		ok = !closed_now(a[i]);
	if (ok) { /* one more from 127.0.0.1: its idlest (the first) makes room */
		a[HS_PER_SOURCE] = raw_connect_from(srv, "127.0.0.1");
		ok = a[HS_PER_SOURCE] >= 0 && raw_recv(a[HS_PER_SOURCE], g, sizeof(g)) == 0;
		usleep(100 * 1000);
		ok = ok && closed_now(a[0]);
		for (int i = 1; ok && i <= HS_PER_SOURCE; i++)
			ok = !closed_now(a[i]);
		for (int i = 0; ok && i < 8; i++)
			ok = !closed_now(b[i]);
	} else {
		a[HS_PER_SOURCE] = -1;
	}
	close_all(a, HS_PER_SOURCE + 1);
	close_all(b, 8);
	CHECK(ok, "per-source handshake bound: wrong connections closed");
	return true;
}

/* CLIENTS_PER_SOURCE attached from 127.0.0.1: the next GO from there is refused
 * with ERR_POLICY (and may retry once one leaves); 127.0.0.2 is still served. */
static bool t_clients_per_source(struct nbdt_server *srv, uint64_t seed)
{
	int a[CLIENTS_PER_SOURCE], extra, other;
	uint32_t rep;
	bool ok = true;

	(void)seed;
	for (int i = 0; i < CLIENTS_PER_SOURCE; i++) {
		a[i] = raw_connect_from(srv, "127.0.0.1");
		ok = ok && a[i] >= 0 && raw_go(a[i], "vol", false) == 0;
	}
	extra = raw_connect_from(srv, "127.0.0.1");
	other = raw_connect_from(srv, "127.0.0.2");
	if (ok && extra >= 0 && raw_greet(extra, NBD_FLAG_C_FIXED_NEWSTYLE) == 0) {
		rep = raw_send_go(extra, "vol");
		if (rep != NBD_REP_ERR_POLICY) {
			fprintf(stderr, "  GO over the per-source bound: reply %#x\n", rep);
			ok = false;
		}
	} else {
		ok = false;
	}
	ok = ok && other >= 0 && raw_go(other, "vol", false) == 0 && raw_read_ok(other, 7);
	if (ok) { /* one leaves: the refused one may attach now */
		close(a[0]);
		a[0] = -1;
		usleep(100 * 1000);
		ok = raw_send_go(extra, "vol") == NBD_REP_ACK && raw_read_ok(extra, 8);
	}
	close_all(a, CLIENTS_PER_SOURCE);
	close(extra);
	close(other);
	CHECK(ok, "per-source client bound");
	return true;
}

/* Unix clients of one uid are one source (SO_PEERCRED): the bound applies to them
 * together, and a TCP client is another source. */
static bool t_unix_uid_source(struct nbdt_server *srv, uint64_t seed)
{
	int a[CLIENTS_PER_SOURCE], extra, tcp;
	bool ok = true;

	(void)seed;
	for (int i = 0; i < CLIENTS_PER_SOURCE; i++) {
		a[i] = raw_connect_unix(srv);
		ok = ok && a[i] >= 0 && raw_go(a[i], "vol", false) == 0;
	}
	extra = raw_connect_unix(srv);
	ok = ok && extra >= 0 && raw_greet(extra, NBD_FLAG_C_FIXED_NEWSTYLE) == 0 &&
	     raw_send_go(extra, "vol") == NBD_REP_ERR_POLICY;
	tcp = raw_connect(srv);
	ok = ok && tcp >= 0 && raw_go(tcp, "vol", false) == 0 && raw_read_ok(tcp, 9);
	close_all(a, CLIENTS_PER_SOURCE);
	close(extra);
	close(tcp);
	CHECK(ok, "unix clients of one uid over the per-source bound, or TCP not served");
	return true;
}

/* ---- stalls ---- */

/* Waits up to ms for the server to close fd, without reading (a client that reads
 * would unblock the replies it is being dropped for). Its RST may be dropped by our
 * closed receive window: a request sent after it draws another, and the error. */
static bool hung_up_within(int fd, int ms)
{
	uint8_t r[sizeof(struct nbd_request)];

	nbd_put32(r, NBD_REQUEST_MAGIC);
	nbd_put16(r + 4, 0);
	nbd_put16(r + 6, NBD_CMD_FLUSH);
	memset(r + 8, 0, sizeof(r) - 8);
	for (int waited = 0; waited < ms; waited += 50) {
		struct pollfd p = { .fd = fd, .events = POLLRDHUP };

		if (poll(&p, 1, 50) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			return true;
		if (send(fd, r, sizeof(r), MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
		    (errno == EPIPE || errno == ECONNRESET))
			return true;
	}
	return false;
}

static bool t_silent_handshake(struct nbdt_server *srv, uint64_t seed)
{
	uint8_t byte = 0x49; /* 'I' of IHAVEOPT: an option header that never completes */
	bool closed = false;
	int fd = raw_connect(srv);

	(void)seed;
	CHECK(fd >= 0, "connect");
	CHECK(raw_greet(fd, NBD_FLAG_C_FIXED_NEWSTYLE) == 0, "greet");
	/* bytes that never make a message are no progress: closed after 1 s anyway */
	for (int i = 0; i < 20 && !closed; i++) {
		usleep(250 * 1000);
		closed = send(fd, &byte, 1, MSG_NOSIGNAL) < 0 || closed_now(fd);
	}
	close(fd);
	CHECK(closed, "a handshake dripping bytes was not closed");
	return true;
}

/* An idle attached client stays; one stalled in a header, one in a payload and one
 * that does not read its replies are dropped. */
static bool t_stalls(struct nbdt_server *srv, uint64_t seed)
{
	static uint8_t payload[100 * 1024];
	uint8_t half[10] = { 0x25, 0x60, 0x95, 0x13 };
	int idle = raw_connect(srv), hdr = raw_connect(srv), pay = raw_connect(srv);
	int deaf = raw_connect(srv);
	uint64_t t0 = it_now_ns();
	bool ok;

	(void)seed;
	ok = idle >= 0 && hdr >= 0 && pay >= 0 && deaf >= 0 && raw_go(idle, "vol", false) == 0 &&
	     raw_go(hdr, "vol", false) == 0 && raw_go(pay, "vol", true) == 0 &&
	     raw_go(deaf, "vol", true) == 0;
	ok = ok && raw_send(hdr, half, sizeof(half)) == 0 &&
	     raw_send_request(pay, 0, NBD_CMD_WRITE, 1, 4096, 1 << 20) == 0 &&
	     raw_send(pay, payload, sizeof(payload)) == 0;
	for (int i = 0; ok && i < 400; i++)
		if (raw_send_request(deaf, 0, NBD_CMD_READ, (uint64_t)i, 0, 1 << 20) < 0)
			break; /* the server stopped reading it */
	if (ok) {
		ok = hung_up_within(deaf, 15000);
		if (!ok)
			fprintf(stderr, "  a client not reading its replies was not dropped\n");
	}
	if (ok) {
		ok = raw_closed(hdr) && raw_closed(pay);
		if (!ok)
			fprintf(stderr, "  a client stalled mid-request was not dropped\n");
	}
	while (it_now_ns() - t0 < 3000000000ull) /* twice the request timeout, idle */
		usleep(100 * 1000);
	if (ok) {
		ok = raw_read_ok(idle, 99);
		if (!ok)
			fprintf(stderr, "  the idle attached client was dropped\n");
	}
	close(idle);
	close(hdr);
	close(pay);
	close(deaf);
	return ok;
}

static long rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* Sends what the sockets take (non-blocking, round robin) until every payload but
 * its last byte is out or nothing moves for a second. Returns the bytes sent. */
static uint64_t pump_payloads(const int *fds, size_t *sent, size_t n)
{
	static uint8_t chunk[1 << 20];
	uint64_t total = 0, idle_since = it_now_ns();

	while (it_now_ns() - idle_since < 1000000000ull) {
		bool moved = false;

		for (size_t i = 0; i < n; i++) {
			size_t left = BIG_WRITE - 1 - sent[i];
			ssize_t k;

			if (fds[i] < 0 || !left)
				continue;
			k = send(fds[i], chunk, left < sizeof(chunk) ? left : sizeof(chunk),
				 MSG_DONTWAIT | MSG_NOSIGNAL);
			if (k > 0) {
				sent[i] += (size_t)k;
				total += (uint64_t)k;
				moved = true;
			}
		}
		if (moved)
			idle_since = it_now_ns();
		else
			usleep(10 * 1000);
	}
	return total;
}

static bool t_stalled_big_writes(struct nbdt_server *srv, uint64_t seed)
{
	int fds[STALLERS];
	size_t sent[STALLERS] = { 0 };
	long base = rss_kib(srv->pid), during, after;
	uint64_t total;
	bool served, ok = base > 0;

	(void)seed;
	for (int i = 0; i < STALLERS; i++) {
		fds[i] = raw_connect(srv);
		ok = ok && fds[i] >= 0 && raw_go(fds[i], "vol", true) == 0 &&
		     raw_send_request(fds[i], 0, NBD_CMD_WRITE, (uint64_t)i, 0, BIG_WRITE) == 0;
	}
	total = ok ? pump_payloads(fds, sent, STALLERS) : 0;
	during = rss_kib(srv->pid);
	served = ok && nbdt_server_works(srv); /* while they still hold what they got */
	after = rss_kib(srv->pid);
	close_all(fds, STALLERS);
	CHECK(ok, "setting up the stalled writers");
	printf("  %d stalled %u MiB WRITEs: %llu MiB sent, harness VmRSS %ld -> %ld -> %ld MiB\n",
	       STALLERS, BIG_WRITE >> 20, (unsigned long long)(total >> 20), base >> 10,
	       during >> 10, after >> 10);
	CHECK(served, "another client was not served while the writers stalled");
	/* request memory is 64 MiB: what the writers pin stays within it (plus input
	 * buffers and slack), far from the 512 MiB they would take unbounded */
	CHECK(during - base < (REQUEST_MEM_MIB + 32) * 1024 &&
	      after - base < (REQUEST_MEM_MIB + 32) * 1024, "VmRSS grew by %ld MiB",
	      ((during > after ? during : after) - base) >> 10);
	CHECK(nbdt_server_works(srv), "after the writers left");
	return true;
}

static bool run(const struct it_env *env, const char *what, const char *const *args,
		const struct nbdt_check *checks, size_t n)
{
	struct nbdt_server srv;
	bool all = true;

	printf("harness: %s\n", what);
	if (nbdt_start_args(env, &srv, 110, args) < 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint64_t t0 = it_now_ns();
		bool ok = checks[i].fn(&srv, it_mix(env->seed, i));

		printf("%s - %s (%.2f s)\n", ok ? "ok" : "FAIL", checks[i].name,
		       (double)(it_now_ns() - t0) / 1e9);
		fflush(stdout);
		all = all && ok;
	}
	if (!all)
		nbdt_dump_log(&srv);
	if (nbdt_stop(&srv) < 0) {
		fprintf(stderr, "the harness did not stop cleanly\n");
		all = false;
	}
	return all;
}

int main(void)
{
	static const char *const slot_args[] = {
		"--handshake-timeout", "30000", "--max-handshakes", "32",
		"--max-handshakes-per-source", "16", "--max-clients", "8",
		"--max-clients-per-source", "4", NULL,
	};
	static const struct nbdt_check slot_checks[] = {
		{ "300 idle connections, then a real client attaches", t_idle_flood },
		{ "a source at its handshake bound evicts only its own", t_handshakes_per_source },
		{ "a source at its client bound: refused, another source served",
		  t_clients_per_source },
		{ "unix clients of one uid are one source", t_unix_uid_source },
	};
	static const char *const stall_args[] = {
		"--handshake-timeout", "1000", "--request-timeout", "1500", "--request-mem", "64M",
		NULL,
	};
	static const struct nbdt_check stall_checks[] = {
		{ "a handshake that completes no message is closed", t_silent_handshake },
		{ "mid-request and unread-reply stalls dropped, idle client kept", t_stalls },
		{ "16 stalled 32 MiB WRITEs: memory bounded, others served", t_stalled_big_writes },
	};
	struct it_env env;
	bool ok;
	int r = it_begin(&env, "nbd_limits");

	if (r)
		return r;
	ok = run(&env, "slot bounds", slot_args, slot_checks,
		 sizeof(slot_checks) / sizeof(slot_checks[0]));
	ok = run(&env, "timeouts and request memory", stall_args, stall_checks,
		 sizeof(stall_checks) / sizeof(stall_checks[0])) && ok;
	return it_end(&env, ok);
}
