/* tests/integration/nbd_list.c — `nbdinfo --list` of many exports (docs/nbd.md,
 * "Listing many exports").
 *
 * 1. TCP, 15 exports, handshake timeout 1 s: libnbd holds each
 *    NBD_OPT_LIST_META_CONTEXT about 200 ms in its kernel (MSG_MORE), so the listing
 *    takes about 3 s. A handshake timeout counted from the connect cut it off and
 *    nbdinfo got nothing; counted from the last message, it completes.
 * 2. The unix socket (where MSG_MORE does nothing), 2,000 volumes: every one is
 *    listed; the time is printed (the test's timeout is the only bound).
 * Skips (77) without nbdinfo.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nbd_test.h"

#define FEW_BULK 10u
#define MANY_BULK 2000u
/* vol, small, NBDT_LONG and the snapshots NBDT_SNAP, NBDT_LONG@NBDT_LONG */
#define FIXED_EXPORTS 5u

/* Runs nbdinfo --list on uri; the number of exports it printed, -1 if it failed. */
static long list_exports(const char *uri, double *secs)
{
	char cmd[PATH_MAX + 256], line[512];
	uint64_t t0 = it_now_ns();
	long n = 0;
	FILE *p;
	int st;

	snprintf(cmd, sizeof(cmd), "nbdinfo --list '%s'", uri);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (fgets(line, sizeof(line), p))
		n += strncmp(line, "export=\"", 8) == 0;
	st = pclose(p);
	*secs = (double)(it_now_ns() - t0) / 1e9;
	return st == 0 ? n : -1;
}

/* CPU time (user + system) of a process so far, in seconds; a loaded machine
 * stretches the wall time, not this. */
static double cpu_secs(pid_t pid)
{
	char path[64];
	unsigned long ut = 0, st = 0;
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	/* pid (comm) state ppid ... field 14 utime, 15 stime; comm has no spaces here */
	n = fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
	fclose(f);
	return n == 2 ? (double)(ut + st) / (double)sysconf(_SC_CLK_TCK) : 0;
}

static bool list_with(const struct it_env *env, const char *count, bool tcp, long want)
{
	/* 1 s, below the listing's 3 s (the harness's default is longer) */
	const char *const args[] = { "--bulk-volumes", count, "--handshake-timeout", "1000", NULL };
	struct nbdt_server srv;
	char uri[PATH_MAX + 64];
	double secs = 0, cpu;
	long got;
	bool ok;

	if (nbdt_start_args(env, &srv, 170, args) < 0)
		return false;
	if (tcp)
		snprintf(uri, sizeof(uri), "nbd://127.0.0.1:%u", srv.port);
	else
		snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", srv.unix_path);
	cpu = cpu_secs(srv.pid);
	got = list_exports(uri, &secs);
	cpu = cpu_secs(srv.pid) - cpu;
	ok = got == want;
	printf("%s - nbdinfo --list over %s: %ld of %ld exports in %.2f s (server CPU %.2f s)\n",
	       ok ? "ok" : "FAIL", tcp ? "TCP (handshake timeout 1 s)" : "the unix socket", got,
	       want, secs, cpu);
	if (!ok)
		nbdt_dump_log(&srv);
	if (nbdt_stop(&srv) < 0)
		ok = false;
	return ok;
}

int main(void)
{
	struct it_env env;
	char few[16], many[16];
	bool ok;
	int r;

	if (system("command -v nbdinfo >/dev/null 2>&1") != 0) {
		printf("SKIP: nbdinfo is not installed (libnbd-bin; scripts/deps.sh)\n");
		return IT_SKIP;
	}
	r = it_begin(&env, "nbd_list");
	if (r)
		return r;
	snprintf(few, sizeof(few), "%u", FEW_BULK);
	snprintf(many, sizeof(many), "%u", MANY_BULK);
	ok = list_with(&env, few, true, FIXED_EXPORTS + FEW_BULK);
	/* the same store: the first FEW_BULK volumes exist already */
	ok = list_with(&env, many, false, FIXED_EXPORTS + MANY_BULK) && ok;
	return it_end(&env, ok);
}
