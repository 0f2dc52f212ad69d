/* tests/integration/nbd_harness.c — a tiny NBD server for the NBD tests only.
 *
 *   nbd-harness --store FILE --meta DIR [--size 64M] [--volume NAME:SIZE]...
 *               [--snapshot VOL@SNAP]... [--bulk-volumes N] [--addr 127.0.0.1]
 *               [--port N] [--unix PATH] [--LIMIT VALUE]...
 *
 * LIMIT is a field of struct nbd_server_limits, as quilld's nbd-* settings name it:
 * max-handshakes, max-handshakes-per-source, max-clients, max-clients-per-source,
 * handshake-timeout (ms, default 5000 here), request-timeout (ms), request-mem.
 * --bulk-volumes N creates N more volumes of 1 MiB, bulk00000, bulk00001...
 *
 * Formats/opens an engine, creates the volumes and then the snapshots (an existing
 * one is kept), runs the loop with the NBD server until SIGTERM or SIGINT (the loop
 * sleeps in the engine's ring, as quilld's), then closes cleanly and exits 0.
 * Once listening it prints one line on stdout: "ready port=N" (N = the bound TCP
 * port; --port 0 picks a free one).
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "common/units.h"
#include "common/volspec.h"
#include "engine/engine.h"
#include "nbd/nbd_server.h"

#define MAX_VOLUMES 16

static struct loop *g_loop;

static void on_signal(int sig)
{
	(void)sig;
	if (g_loop)
		loop_stop(g_loop);
}

static int engine_idle(void *arg)
{
	engine_run(arg);
	return engine_timeout_ms(arg);
}

/* The loop sleeps in the engine's ring, as quilld's does: the sockets' events, the
 * disk's completions, the plain NBD connections' receives and sends (docs/nbd.md "How
 * a request travels") in one io_uring_enter. */
static int engine_sleep(void *arg, struct loop_wait *w, int timeout_ms)
{
	int r = engine_wait_fd(arg, w, timeout_ms);

	if (r < 0 && r != -EINTR) /* the loop ends, and the harness fails */
		log_msg(LOG_ERROR, "harness", "engine: %s", strerror(-r));
	return r < 0 ? r : 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: nbd-harness --store FILE --meta DIR [--size 64M] "
			"[--volume NAME:SIZE]... [--snapshot VOL@SNAP]... [--bulk-volumes N] "
			"[--addr A] [--port N] [--unix PATH] [--LIMIT VALUE]...\n");
	return 2;
}

/* --LIMIT VALUE into the server's limits; false if a is no limit or v is bad. */
static bool parse_limit(struct nbd_server_limits *l, const char *a, const char *v)
{
	static const struct {
		const char *flag;
		size_t off;
	} lims[] = {
		{ "--max-handshakes", offsetof(struct nbd_server_limits, max_handshakes) },
		{ "--max-handshakes-per-source",
		  offsetof(struct nbd_server_limits, max_handshakes_per_source) },
		{ "--max-clients", offsetof(struct nbd_server_limits, max_clients) },
		{ "--max-clients-per-source", offsetof(struct nbd_server_limits, max_clients_per_source) },
		{ "--handshake-timeout", offsetof(struct nbd_server_limits, handshake_timeout_ms) },
		{ "--request-timeout", offsetof(struct nbd_server_limits, request_timeout_ms) },
	};
	uint64_t n;

	if (units_parse_size(v, &n) < 0)
		return false;
	if (strcmp(a, "--request-mem") == 0) {
		l->request_mem = n;
		return true;
	}
	for (size_t i = 0; i < sizeof(lims) / sizeof(lims[0]); i++) {
		if (strcmp(a, lims[i].flag) == 0 && n <= UINT32_MAX) {
			*(unsigned *)(void *)((char *)l + lims[i].off) = (unsigned)n;
			return true;
		}
	}
	return false;
}

/* bulk00000... of 1 MiB: many exports for the listing test. */
static int create_bulk(struct engine *eng, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		char name[16];
		int r;

		snprintf(name, sizeof(name), "bulk%05u", i);
		r = engine_volume_create(eng, name, 1 << 20);
		if (r < 0 && r != -EEXIST) {
			fprintf(stderr, "nbd-harness: volume %s: %s\n", name, strerror(-r));
			return r;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct engine_opts eo;
	/* A short handshake timeout, so that the silent-client check runs quickly, but
	 * not so short that a loaded machine (libnbd's handshake takes seconds between
	 * messages at a load of 15) gets the liveness probes closed. */
	struct nbd_server_opts no = { .tcp_addr = "127.0.0.1", .limits.handshake_timeout_ms = 5000 };
	const char *volumes[MAX_VOLUMES], *snaps[MAX_VOLUMES];
	unsigned nvol = 0, nsnap = 0, port = 10809, bulk = 0;
	struct engine *eng = NULL;
	struct nbd_server *srv = NULL;
	struct sigaction sa = { .sa_handler = on_signal };
	int r;

	engine_opts_init(&eo);
	eo.format = true;
	eo.store_size = 64ull << 20;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			return usage();
		i++;
		if (strcmp(a, "--store") == 0)
			eo.store_path = v;
		else if (strcmp(a, "--meta") == 0)
			eo.meta_path = v;
		else if (strcmp(a, "--size") == 0 && units_parse_size(v, &eo.store_size) == 0)
			;
		else if (strcmp(a, "--volume") == 0 && nvol < MAX_VOLUMES)
			volumes[nvol++] = v;
		else if (strcmp(a, "--snapshot") == 0 && nsnap < MAX_VOLUMES)
			snaps[nsnap++] = v;
		else if (strcmp(a, "--addr") == 0)
			no.tcp_addr = v;
		else if (strcmp(a, "--port") == 0)
			port = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(a, "--unix") == 0)
			no.unix_path = v;
		else if (strcmp(a, "--bulk-volumes") == 0)
			bulk = (unsigned)strtoul(v, NULL, 10);
		else if (!parse_limit(&no.limits, a, v))
			return usage();
	}
	if (!eo.store_path || !eo.meta_path || port > 65535)
		return usage();
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	r = engine_open(&eo, &eng);
	if (r < 0) {
		fprintf(stderr, "nbd-harness: engine_open: %s\n", strerror(-r));
		return 1;
	}
	for (unsigned i = 0; i < nvol; i++) {
		char name[ENGINE_VOLUME_NAME_MAX + 1];
		const char *colon = strchr(volumes[i], ':');
		uint64_t size;

		if (!colon || (size_t)(colon - volumes[i]) > ENGINE_VOLUME_NAME_MAX ||
		    units_parse_size(colon + 1, &size) < 0)
			return usage();
		snprintf(name, sizeof(name), "%.*s", (int)(colon - volumes[i]), volumes[i]);
		r = engine_volume_create(eng, name, size);
		if (r < 0 && r != -EEXIST) {
			fprintf(stderr, "nbd-harness: volume %s: %s\n", name, strerror(-r));
			engine_close(eng);
			return 1;
		}
	}
	if (create_bulk(eng, bulk) < 0) {
		engine_close(eng);
		return 1;
	}
	for (unsigned i = 0; i < nsnap; i++) {
		char vol[VOLSPEC_NAME_MAX + 1], snap[VOLSPEC_NAME_MAX + 1];

		if (volspec_parse(snaps[i], vol, snap) < 0 || !snap[0])
			return usage();
		r = engine_snap_create(eng, vol, snap);
		if (r < 0 && r != -EEXIST) {
			fprintf(stderr, "nbd-harness: snapshot %s: %s\n", snaps[i], strerror(-r));
			engine_close(eng);
			return 1;
		}
	}
	r = loop_create(&g_loop);
	if (r == 0) {
		loop_set_idle(g_loop, engine_idle, eng);
		loop_set_wait(g_loop, engine_sleep, eng);
		loop_set_wait_sends(g_loop, true);
		loop_set_wait_recvs(g_loop, true);
		no.eng = eng;
		no.loop = g_loop;
		/* the server's port 0 means 10809: for --port 0 try random high ports */
		srand((unsigned)getpid());
		for (int tries = 0; tries < 100; tries++) {
			no.tcp_port = (uint16_t)(port ? port : 20000 + (unsigned)rand() % 40000);
			r = nbd_server_create(&no, &srv);
			if (r != -EADDRINUSE || port)
				break;
		}
	}
	if (r == 0) {
		printf("ready port=%u\n", nbd_server_tcp_port(srv));
		fflush(stdout);
		r = loop_run(g_loop);
	}
	if (r < 0)
		fprintf(stderr, "nbd-harness: %s\n", strerror(-r));
	nbd_server_destroy(srv);
	engine_close(eng);
	loop_destroy(g_loop);
	return r < 0 ? 1 : 0;
}
