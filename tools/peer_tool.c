/* tools/peer_tool.c — quill-peer: makes a cluster secret, and handshakes with and
 * pings a node's peer listener (the peer protocol of replication/, as a node speaks it).
 *
 *   quill-peer secret FILE
 *   quill-peer ping ADDR:PORT --secret FILE [--count N] [--timeout-ms MS]
 *
 * Exit status: 0 done, 1 refused or failed (why on stderr), 2 bad usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "replication/peer.h"
#include "replication/peer_session.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2

struct ping_run {
	struct loop *lp;
	struct peer_conn *conn;
	struct loop_timer *timer; /* NULL once fired */
	unsigned count, sent, received;
	uint64_t sent_us, sum_us, max_us;
	int err;
	const char *why;
	char payload[32];
};

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void send_next(struct ping_run *run, struct peer_conn *c)
{
	int r;

	snprintf(run->payload, sizeof(run->payload), "quill-peer ping %u", run->sent + 1);
	run->sent_us = now_us();
	r = peer_ping(c, run->sent + 1, run->payload, strlen(run->payload));
	if (r < 0) {
		run->err = -r;
		run->why = "cannot send a PING";
		loop_stop(run->lp);
		return;
	}
	run->sent++;
}

static void on_ready(void *arg, struct peer_conn *c)
{
	struct ping_run *run = arg;

	printf("authenticated\n");
	send_next(run, c);
}

static void on_pong(void *arg, struct peer_conn *c, uint64_t request_id, const void *payload,
		    size_t len)
{
	struct ping_run *run = arg;
	uint64_t rtt;

	if (request_id != run->sent || len != strlen(run->payload) ||
	    memcmp(payload, run->payload, len) != 0) {
		run->err = EPROTO;
		run->why = "a PONG that does not echo our PING";
		loop_stop(run->lp);
		return;
	}
	rtt = now_us() - run->sent_us;
	run->sum_us += rtt;
	run->max_us = rtt > run->max_us ? rtt : run->max_us;
	if (run->count <= 10)
		printf("PONG %llu: %llu us\n", (unsigned long long)request_id,
		       (unsigned long long)rtt);
	if (++run->received == run->count) {
		printf("%u PONGs, round trip mean %llu us, max %llu us\n", run->count,
		       (unsigned long long)(run->sum_us / run->count),
		       (unsigned long long)run->max_us);
		peer_conn_close(c);
		return;
	}
	send_next(run, c);
}

static void on_closed(void *arg, struct peer_conn *c, int err, const char *why)
{
	struct ping_run *run = arg;

	(void)c;
	run->conn = NULL;
	if (!run->err && run->received < run->count) {
		run->err = err ? err : EPIPE;
		run->why = why;
	}
	loop_stop(run->lp);
}

static void on_timeout(void *arg)
{
	struct ping_run *run = arg;

	run->timer = NULL;
	run->err = ETIMEDOUT;
	run->why = "no answer in time";
	loop_stop(run->lp);
}

static const struct peer_conn_ops ping_ops = {
	.ready = on_ready, .pong = on_pong, .closed = on_closed,
};

static int run_ping(const char *addr, uint16_t port, const struct peer_secret *sec,
		    unsigned count, unsigned timeout_ms)
{
	struct ping_run run = { .count = count };
	struct peer_endpoint_opts eo = { .secret = sec, .handshake_timeout_ms = timeout_ms };
	struct peer_endpoint *ep = NULL;
	int r = loop_create(&run.lp);

	if (r < 0)
		return r;
	eo.loop = run.lp;
	r = peer_endpoint_create(&eo, &ep);
	if (r == 0)
		r = peer_connect(ep, addr, port, &ping_ops, &run, &run.conn);
	if (r == 0)
		r = loop_timer_add(run.lp, timeout_ms, on_timeout, &run, &run.timer);
	if (r == 0) {
		r = loop_run(run.lp);
		if (run.err) {
			fprintf(stderr, "quill-peer: %s:%u: %s (%s)\n", addr, port, run.why,
				err_str(run.err));
			r = -run.err;
		}
	} else {
		fprintf(stderr, "quill-peer: %s:%u: %s\n", addr, port, err_str(-r));
	}
	loop_timer_cancel(run.timer);
	peer_endpoint_destroy(ep); /* closes the connection if it is still there */
	loop_destroy(run.lp);
	return r;
}

static int usage(FILE *out, int code)
{
	fprintf(out, "usage: quill-peer secret FILE\n"
		     "       quill-peer ping ADDR:PORT --secret FILE [--count N] [--timeout-ms MS]\n\n"
		     "secret: writes a new random cluster secret to FILE (mode 0600; FILE must not\n"
		     "        exist). Copy it to every node; quilld reads it with --peer-secret.\n"
		     "ping:   handshakes with the node's peer listener (--peer-listen) using the\n"
		     "        secret, then sends N PINGs (1) and waits for each PONG; fails after\n"
		     "        MS milliseconds in all (5000).\n");
	return code;
}

static int cmd_ping(int argc, char **argv)
{
	const char *secret = NULL;
	unsigned long count = 1, timeout_ms = 5000;
	char addr[64];
	uint16_t port;
	struct peer_secret *sec;
	int r;

	if (argc < 3 || peer_addr_parse(argv[2], addr, sizeof(addr), &port) < 0)
		return usage(stderr, EXIT_USAGE);
	for (int i = 3; i < argc; i++) {
		char *end = NULL;

		if (i + 1 >= argc)
			return usage(stderr, EXIT_USAGE);
		if (strcmp(argv[i], "--secret") == 0)
			secret = argv[++i];
		else if (strcmp(argv[i], "--count") == 0)
			count = strtoul(argv[++i], &end, 10);
		else if (strcmp(argv[i], "--timeout-ms") == 0)
			timeout_ms = strtoul(argv[++i], &end, 10);
		else
			return usage(stderr, EXIT_USAGE);
		if (end && (*end || count == 0 || count > 1000000 || timeout_ms == 0 ||
			    timeout_ms > 3600000))
			return usage(stderr, EXIT_USAGE);
	}
	if (!secret)
		return usage(stderr, EXIT_USAGE);
	if (peer_secret_load(secret, &sec) < 0)
		return EXIT_FAILED; /* the reason is logged */
	r = run_ping(addr, port, sec, (unsigned)count, (unsigned)timeout_ms);
	peer_secret_destroy(sec);
	return r < 0 ? EXIT_FAILED : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
		return usage(stdout, 0);
	if (getenv("QUILL_LOG") == NULL)
		log_set_level(LOG_ERROR); /* a tool: it says itself what went wrong */
	if (argc == 3 && strcmp(argv[1], "secret") == 0) {
		int r = peer_secret_create(argv[2]);

		if (r < 0) {
			fprintf(stderr, "quill-peer: %s: %s\n", argv[2],
				r == -EEXIST ? "exists already (a secret is never overwritten)"
					     : err_str(-r));
			return EXIT_FAILED;
		}
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "ping") == 0)
		return cmd_ping(argc, argv);
	return usage(stderr, EXIT_USAGE);
}
