/* tools/quilld/main.c — quilld: one quill node.
 *
 * One thread runs an event loop that owns the engine, the NBD server and the control
 * socket. Engine completions arrive on the engine's event fd; queued writes are
 * submitted from the loop's idle hook, once per loop iteration, so that requests
 * read from many sockets in one iteration are group-committed into one batch.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "engine/engine.h"
#include "nbd/nbd_server.h"
#include "tools/quilld/config.h"
#include "tools/quilld/control.h"
#include "vhost/vhost_blk.h"

#define LOG_TAG "quilld"

struct node {
	struct quilld_config cfg;
	struct loop *lp;
	struct engine *eng;
	struct nbd_server *nbd;
	struct vhost_server *vhost;
	struct control *ctl;
	struct loop_watch *engine_watch;
	struct loop_watch *signal_watch;
	int signal_fd;
};

static void engine_ready(void *arg, unsigned events)
{
	struct node *n = arg;
	uint64_t count;

	(void)events;
	if (read(engine_event_fd(n->eng), &count, sizeof(count)) < 0 && errno != EAGAIN)
		log_msg(LOG_WARN, LOG_TAG, "engine event fd: %s", strerror(errno));
	engine_poll(n->eng, 0);
}

static int engine_idle(void *arg)
{
	struct node *n = arg;
	int r = engine_poll(n->eng, 0);

	if (r < 0)
		LOG_RATELIMITED(LOG_ERROR, LOG_TAG, "engine: %s", strerror(-r));
	return engine_timeout_ms(n->eng);
}

static void signal_ready(void *arg, unsigned events)
{
	struct node *n = arg;
	struct signalfd_siginfo si;

	(void)events;
	if (read(n->signal_fd, &si, sizeof(si)) == sizeof(si)) {
		log_msg(LOG_INFO, LOG_TAG, "%s: stopping", strsignal((int)si.ssi_signo));
		loop_stop(n->lp);
	}
}

static int setup_signals(struct node *n)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	n->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (n->signal_fd < 0)
		return -errno;
	return loop_watch_add(n->lp, n->signal_fd, LOOP_READ, signal_ready, n, &n->signal_watch);
}

/* mkdir -p of path's parent (the folder a socket or file will live in). */
static void make_parent_dirs(const char *path)
{
	char buf[CONFIG_PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(buf, 0700);
		*p = '/';
	}
}

static void set_log_level(const char *name)
{
	static const char *names[] = { "debug", "info", "warn", "error" };

	for (int i = 0; i < 4; i++)
		if (strcmp(name, names[i]) == 0)
			log_set_level((enum log_level)i);
}

/* --rebuild-meta writes a new metadata folder; an old one is moved aside, never
 * overwritten or deleted: it may be healthy, or worth a look. */
static int move_meta_aside(const char *meta)
{
	char aside[CONFIG_PATH_MAX + 64], stamp[32];
	struct stat st;
	time_t now = time(NULL);
	struct tm tm;

	if (stat(meta, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(aside, sizeof(aside), "%s.before-rebuild-%s", meta, stamp);
	if (rename(meta, aside) < 0) {
		int r = -errno;

		log_msg(LOG_ERROR, LOG_TAG, "--rebuild-meta: cannot move %s aside: %s", meta,
			strerror(-r));
		return r;
	}
	log_msg(LOG_WARN, LOG_TAG, "--rebuild-meta: the old metadata folder is kept as %s", aside);
	return 0;
}

static int open_engine(struct node *n)
{
	struct engine_opts eo;
	char probe[CONFIG_PATH_MAX + 16];

	engine_opts_init(&eo);
	eo.store_path = n->cfg.store;
	eo.meta_path = n->cfg.meta;
	eo.store_size = n->cfg.store_size;
	eo.format = true; /* a store without a superblock is new: format it */
	eo.segment_size = n->cfg.segment_size;
	eo.checkpoint_ms = n->cfg.checkpoint_ms;
	if (n->cfg.rebuild_meta) {
		int r = move_meta_aside(n->cfg.meta);

		if (r < 0)
			return r;
		eo.rebuild_meta = true;
		eo.format = false; /* a rebuild reads a store: it never makes one */
	}
	make_parent_dirs(n->cfg.store);
	snprintf(probe, sizeof(probe), "%s/", n->cfg.meta);
	make_parent_dirs(probe);
	return engine_open(&eo, &n->eng);
}

static int start_control(struct node *n)
{
	struct control_opts co = { .path = n->cfg.control, .eng = n->eng, .vhost = n->vhost };
	char tcp[96];

	if (nbd_server_tcp_port(n->nbd)) {
		snprintf(tcp, sizeof(tcp), "%s:%u", n->cfg.nbd_addr, nbd_server_tcp_port(n->nbd));
		co.nbd_tcp = tcp;
	}
	co.nbd_unix = n->cfg.nbd_unix[0] ? n->cfg.nbd_unix : NULL;
	return control_create(n->lp, &co, &n->ctl);
}

/* The vhost-user-blk server, and the exports asked for with --vhost VOL=SOCKET. */
static int start_vhost(struct node *n)
{
	struct vhost_server_opts vo = { .eng = n->eng, .loop = n->lp };
	int r = vhost_server_create(&vo, &n->vhost);

	for (unsigned i = 0; r == 0 && i < n->cfg.nvhost; i++) {
		char *spec = n->cfg.vhost[i], *eq = strchr(spec, '=');

		*eq = '\0';
		make_parent_dirs(eq + 1);
		r = vhost_server_export(n->vhost, spec, eq + 1);
		if (r < 0)
			log_msg(LOG_ERROR, LOG_TAG, "--vhost %s=%s: %s", spec, eq + 1, strerror(-r));
	}
	return r;
}

static int start(struct node *n)
{
	struct nbd_server_opts no = { 0 };
	int r;

	r = loop_create(&n->lp);
	if (r < 0)
		return r;
	r = setup_signals(n);
	if (r < 0)
		return r;
	r = open_engine(n);
	if (r < 0)
		return r;
	r = loop_watch_add(n->lp, engine_event_fd(n->eng), LOOP_READ, engine_ready, n,
			   &n->engine_watch);
	if (r < 0)
		return r;
	loop_set_idle(n->lp, engine_idle, n);
	no.eng = n->eng;
	no.loop = n->lp;
	no.tcp_addr = n->cfg.nbd_addr[0] ? n->cfg.nbd_addr : NULL;
	no.tcp_port = n->cfg.nbd_port;
	no.unix_path = n->cfg.nbd_unix[0] ? n->cfg.nbd_unix : NULL;
	if (no.unix_path)
		make_parent_dirs(no.unix_path);
	r = nbd_server_create(&no, &n->nbd);
	if (r < 0)
		return r;
	r = start_vhost(n);
	if (r < 0)
		return r;
	make_parent_dirs(n->cfg.control);
	return start_control(n);
}

static void stop(struct node *n)
{
	control_destroy(n->ctl);
	vhost_server_destroy(n->vhost); /* lets in-flight requests finish */
	nbd_server_destroy(n->nbd); /* lets in-flight requests finish */
	loop_watch_remove(n->engine_watch);
	engine_close(n->eng);       /* flush and checkpoint */
	loop_watch_remove(n->signal_watch);
	if (n->signal_fd > 0)
		close(n->signal_fd);
	loop_destroy(n->lp);
}

int main(int argc, char **argv)
{
	static struct node n;
	int r = config_load(&n.cfg, argc, argv);

	if (r)
		return r > 0 ? 0 : 2;
	set_log_level(n.cfg.log_level);
	/* NBD requests carry buffers of up to 32 MiB: keep them on the heap and keep the
	 * heap, instead of an mmap, page faults and munmap per large request. */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	r = start(&n);
	if (r == 0) {
		log_msg(LOG_INFO, LOG_TAG, "ready: NBD on %s:%u%s%s, control socket %s",
			n.cfg.nbd_addr[0] ? n.cfg.nbd_addr : "(no TCP)",
			nbd_server_tcp_port(n.nbd), n.cfg.nbd_unix[0] ? " and unix:" : "",
			n.cfg.nbd_unix, n.cfg.control);
		r = loop_run(n.lp);
	} else {
		log_msg(LOG_ERROR, LOG_TAG, "cannot start: %s", strerror(-r));
	}
	stop(&n);
	return r < 0 ? 1 : 0;
}
