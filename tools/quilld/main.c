/* tools/quilld/main.c — quilld: one quill node.
 *
 * One thread runs an event loop that owns the engine, the NBD server and the control
 * socket. The loop sleeps in the engine's io_uring, which also watches the loop's
 * epoll fd: one io_uring_enter submits what is queued and wakes for an I/O completion
 * or a socket alike, with no event fd to read. After the sockets' events the idle
 * hook runs the engine's callbacks and closes its forming batches (requests read
 * from many sockets in one iteration are group-committed into one batch, and a lone
 * request goes out at once: nothing waits for company); the NBD server's tasks then
 * send the replies, and the loop sleeps again.
 */
#include <errno.h>
#include <ftw.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/stages.h"
#include "block/block.h"
#include "cluster/cluster.h"
#include "engine/engine.h"
#include "engine/ondisk.h"
#include "nbd/nbd_server.h"
#include "nbd/nbd_tls.h"
#include "replication/holder.h"
#include "replication/orphans.h"
#include "replication/peer.h"
#include "replication/peer_session.h"
#include "replication/replica.h"
#include "tools/quilld/config.h"
#include "tools/quilld/control.h"
#include "tools/quilld/takeovers.h"
#include "vhost/vhost_blk.h"

#define LOG_TAG "quilld"
#define CREATED_MAX 16
#define STOP_CHECKPOINT_MS 2000u /* the most a stop waits for its last checkpoint: it
				   waits for ever where writes wait (copies short) */

struct node {
	struct quilld_config cfg;
	struct loop *lp;
	struct engine *eng;
	struct nbd_server *nbd;
	struct nbd_tls *tls;
	struct vhost_server *vhost;
	struct control *ctl;
	struct peer_secret *peer_secret;
	struct peer_endpoint *peer;
	struct holder *holder;             /* serves other nodes' segment ops on peer */
	struct cluster *cluster;   /* NULL: a single node */
	struct blk_guard *guard;   /* the cluster's guard over client I/O; NULL: single */
	struct replicas *replicas; /* copies of this node's volumes elsewhere (a cluster
				      with a peer listener), or NULL */
	struct orphans *orphans;   /* drops the held copies nobody needs (a cluster with
				      a holder), or NULL */
	struct takeovers *takeovers; /* volumes being taken over here (with replicas) */
	char self_id[LAYOUT_ID_MAX + 1];
	uint64_t space_next;       /* the next sample of this node's space (space_sample) */
	bool refused;              /* the cluster would not have this node */
	struct loop_watch *signal_watch;
	int signal_fd;
	bool stopping;             /* a signal came: the last checkpoint is being written */
	uint64_t stop_fckpts[2];   /* family checkpoints written and failed before it */
	struct loop_timer *stop_timer; /* gives up waiting for it */
	/* what this start created, removed again if it fails: a start that cannot finish
	 * leaves nothing behind (folders in creation order; a store file; a meta tree) */
	struct created {
		char path[CONFIG_PATH_MAX];
		enum { CREATED_DIR, CREATED_FILE, CREATED_TREE } kind;
	} created[CREATED_MAX];
	unsigned ncreated;
};

static int engine_sleep(void *arg, struct loop_wait *w, int timeout_ms)
{
	struct node *n = arg;
	int r = engine_wait_fd(n->eng, w, timeout_ms);

	if (r < 0) {
		/* the ring failed: sleep on the sockets a little, then try it again */
		struct pollfd pfd = { .fd = w->epfd, .events = POLLIN };

		LOG_RATELIMITED(LOG_ERROR, LOG_TAG, "engine: %s", err_str(-r));
		loop_sends_make(w->sends); /* not after the poll: a reply may wait on them */
		r = poll(&pfd, 1, timeout_ms < 0 || timeout_ms > 10 ? 10 : timeout_ms);
		if (r < 0)
			return -errno;
		w->ready = r > 0;
		w->nevents = 0;
	}
	return 0;
}

static int engine_idle(void *arg)
{
	struct node *n = arg;
	int r = engine_run(n->eng);

	if (r < 0)
		LOG_RATELIMITED(LOG_ERROR, LOG_TAG, "engine: %s", err_str(-r));
	return engine_timeout_ms(n->eng);
}

static void stop_now(struct node *n)
{
	loop_timer_cancel(n->stop_timer);
	n->stop_timer = NULL;
	loop_stop(n->lp);
}

static void last_checkpoint_done(void *arg, int res)
{
	struct node *n = arg;

	struct engine_stats st;

	engine_get_stats(n->eng, &st);
	if (res < 0)
		log_msg(LOG_WARN, LOG_TAG, "stopping: the last checkpoint failed (%s)",
			err_str(-res));
	else
		log_msg(LOG_INFO, LOG_TAG, "stopping: the last checkpoint is written, with %llu "
			"family checkpoints (%llu failed)",
			(unsigned long long)(st.family_checkpoints - n->stop_fckpts[0]),
			(unsigned long long)(st.family_checkpoints_failed - n->stop_fckpts[1]));
	if (n->stopping)
		stop_now(n);
}

static void last_checkpoint_late(void *arg)
{
	struct node *n = arg;

	n->stop_timer = NULL; /* (a fired timer is freed) */
	log_msg(LOG_WARN, LOG_TAG, "stopping: the last checkpoint took over %u ms; the "
		"engine's close writes the map without the family checkpoints",
		STOP_CHECKPOINT_MS);
	loop_stop(n->lp);
}

/* A stop writes a checkpoint with the family checkpoints first, while the peers and
 * the replica sets are still there: they go into the open segments on every replica,
 * so that a new owner of a volume after this node's restart (which opens no segment
 * until a write) adopts it from its newest family checkpoint instead of copying every
 * segment written since the last periodic one. A second signal stops at once. */
static void stop_begin(struct node *n)
{
	struct engine_stats st;
	int r;

	if (n->stopping) {
		stop_now(n);
		return;
	}
	n->stopping = true;
	engine_get_stats(n->eng, &st);
	n->stop_fckpts[0] = st.family_checkpoints;
	n->stop_fckpts[1] = st.family_checkpoints_failed;
	r = engine_checkpoint_for_stop_async(n->eng, last_checkpoint_done, n);
	if (r == 0)
		r = loop_timer_add(n->lp, STOP_CHECKPOINT_MS, last_checkpoint_late, n,
				   &n->stop_timer);
	if (r < 0)
		stop_now(n); /* (a checkpoint begun ends in engine_close) */
}

static void signal_ready(void *arg, unsigned events)
{
	struct node *n = arg;
	struct signalfd_siginfo si;

	(void)events;
	if (read(n->signal_fd, &si, sizeof(si)) == sizeof(si)) {
		log_msg(LOG_INFO, LOG_TAG, "%s: stopping", strsignal((int)si.ssi_signo));
		stop_begin(n);
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

static void note_created(struct node *n, const char *path, int kind)
{
	if (n->ncreated == CREATED_MAX)
		return; /* more folders than a start makes: those are left behind */
	snprintf(n->created[n->ncreated].path, CONFIG_PATH_MAX, "%s", path);
	n->created[n->ncreated++].kind = kind;
}

/* Notes path if it does not exist yet: this start will create it. */
static void note_if_missing(struct node *n, const char *path, int kind)
{
	if (access(path, F_OK) < 0 && errno == ENOENT)
		note_created(n, path, kind);
}

/* mkdir -p of path's parent (the folder a socket or file will live in). */
static void make_parent_dirs(struct node *n, const char *path)
{
	char buf[CONFIG_PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) == 0)
			note_created(n, buf, CREATED_DIR);
		*p = '/';
	}
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if ((flag == FTW_DP ? rmdir(path) : unlink(path)) < 0)
		log_msg(LOG_WARN, LOG_TAG, "cannot remove %s: %s", path, err_str(errno));
	return 0;
}

/* A failed start: removes, newest first, what it created. */
static void remove_created(struct node *n)
{
	while (n->ncreated) {
		struct created *c = &n->created[--n->ncreated];

		if (c->kind == CREATED_TREE)
			nftw(c->path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
		else if (c->kind == CREATED_FILE)
			unlink(c->path);
		else
			rmdir(c->path); /* only if empty: never what someone else put there */
	}
}

/* The name was checked by config_load(). */
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

	engine_opts_init(&eo);
	eo.store_path = n->cfg.store;
	eo.meta_path = n->cfg.meta;
	eo.store_size = n->cfg.store_size;
	if (!eo.store_size && access(n->cfg.store, F_OK) < 0)
		eo.store_size = CONFIG_DEFAULT_STORE_SIZE; /* a new file */
	eo.format = true; /* a blank store is new: format it */
	eo.reformat = n->cfg.format;
	eo.destroy_data = n->cfg.destroy_data;
	eo.grow = n->cfg.grow;
	eo.segment_size = n->cfg.segment_size;
	eo.checkpoint_ms = n->cfg.checkpoint_ms;
	eo.sync_bytes = n->cfg.sync_size; /* 0: never, as in the engine */
	eo.prezero = n->cfg.prezero;
	eo.read_defrag = n->cfg.read_defrag;
	eo.idle_defrag = n->cfg.idle_defrag;
	eo.poll_us = n->cfg.poll_us;
	eo.seq_defrag = n->cfg.seq_defrag;
	/* a cluster node's families may be adopted elsewhere from their segments alone */
	eo.family_records = n->cfg.etcd_endpoints[0] != '\0';
	eo.test_pause = getenv("QUILL_TEST_PAUSE"); /* crash tests (engine.h) */
	if (n->cfg.rebuild_meta) {
		int r = move_meta_aside(n->cfg.meta);

		if (r < 0)
			return r;
		eo.rebuild_meta = true;
		eo.format = false; /* a rebuild reads a store: it never makes one */
		eo.reformat = false;
	}
	make_parent_dirs(n, n->cfg.store);
	make_parent_dirs(n, n->cfg.meta); /* not meta itself: a missing one is news */
	note_if_missing(n, n->cfg.store, CREATED_FILE);
	note_if_missing(n, n->cfg.meta, CREATED_TREE);
	return engine_open(&eo, &n->eng);
}

/* TLS credentials, loaded before anything is created: a missing key file or an
 * unreadable certificate stops the start with the reason. */
static int load_tls(struct node *n)
{
	const struct quilld_config *cfg = &n->cfg;
	struct nbd_tls_opts to = {
		.mode = cfg->nbd_tls,
		.psk_file = cfg->nbd_tls_psk_file[0] ? cfg->nbd_tls_psk_file : NULL,
		.x509_dir = cfg->nbd_tls_x509_dir[0] ? cfg->nbd_tls_x509_dir : NULL,
		.verify_peer = cfg->nbd_tls_verify_peer,
	};

	if (cfg->nbd_tls == NBD_TLS_OFF)
		return 0;
	return nbd_tls_create(&to, &n->tls);
}

/* The cluster secret, read before anything is created: a secret file of the wrong
 * mode stops the start with the reason. */
static int load_peer_secret(struct node *n)
{
	if (!n->cfg.peer_secret[0])
		return 0;
	return peer_secret_load(n->cfg.peer_secret, &n->peer_secret);
}

/* The peer listener (peer-listen), for the other nodes of the cluster, with the
 * holder service that keeps their segments' copies in this node's store. */
static int start_peer(struct node *n)
{
	struct peer_endpoint_opts po = { .loop = n->lp, .secret = n->peer_secret,
					 .serve = holder_serve };
	char addr[64];
	int r;

	if (!n->cfg.peer_listen[0])
		return 0;
	r = holder_create(n->eng, &n->holder);
	if (r < 0)
		return r;
	po.serve_arg = n->holder;
	peer_addr_parse(n->cfg.peer_listen, addr, sizeof(addr), &po.listen_port); /* checked */
	po.listen_addr = addr;
	r = peer_endpoint_create(&po, &n->peer);
	if (r == 0)
		log_msg(LOG_INFO, LOG_TAG, "peer protocol on %s (cluster secret %s)",
			n->cfg.peer_listen, n->cfg.peer_secret);
	return r;
}

static void nbd_opts_fill(struct node *n, struct nbd_server_opts *no)
{
	const struct quilld_config *cfg = &n->cfg;

	no->eng = n->eng;
	no->loop = n->lp;
	no->tcp_addr = cfg->nbd_addr[0] ? cfg->nbd_addr : NULL;
	no->tcp_port = cfg->nbd_port;
	no->unix_path = cfg->nbd_unix[0] ? cfg->nbd_unix : NULL;
	no->unix_mode = cfg->nbd_unix_mode;
	no->unix_set_owner = cfg->nbd_unix_set_owner;
	no->unix_uid = cfg->nbd_unix_uid;
	no->unix_set_group = cfg->nbd_unix_set_group;
	no->unix_gid = cfg->nbd_unix_gid;
	no->tls = n->tls;
	no->limits = cfg->nbd_limits;
	no->guard = n->guard;
}

/* ---- replicated volumes: the replica sets of this node's volumes ---- */

/* Name's local layers if this node may not serve them under its claim at epoch:
 * a replicated volume whose claim replaced another node's (or not the one right
 * before: this node's ownership was broken, layout_local_current), so the volume
 * lived elsewhere meanwhile and writes made there are not in them; unless a takeover
 * at this very epoch made them current. Their family's uid, or 0 (none here, or
 * current). *prev: the replaced claim. */
static uint64_t layers_stale(struct node *n, const char *name, int64_t epoch,
			     struct layout_claim *prev)
{
	struct cluster_volume v;
	uint64_t uid;

	if (!n->takeovers || engine_volume_family(n->eng, name, &uid) < 0 ||
	    cluster_volume_get(n->cluster, name, &v) < 0 || v.rec.replicas <= 1 ||
	    !cluster_volume_replaced(n->cluster, name, prev) ||
	    layout_local_current(n->self_id, prev, epoch) ||
	    takeovers_taken(n->takeovers, name, epoch))
		return 0;
	return uid;
}

/* layers_stale(), said in the log when they are. */
static uint64_t stale_family(struct node *n, const char *name, int64_t epoch)
{
	struct layout_claim prev;
	uint64_t uid = layers_stale(n, name, epoch, &prev);

	if (!uid)
		return 0;
	log_msg(LOG_WARN, LOG_TAG, "volume %s: claimed at epoch %lld after %s's epoch %lld: its "
		"local layers here are stale: releasing them and taking it over from its "
		"copies", name, (long long)epoch, prev.node[0] ? prev.node : "no node",
		(long long)prev.epoch);
	return uid;
}

/* This node claimed name at epoch: may it serve the layers it has? Not when it has
 * none (its owner died elsewhere; the copies hold it) or they are stale
 * (stale_family): then a takeover runs first, done (may be NULL) runs when it ends,
 * and the guard refuses attaches meanwhile. A single-copy volume (R=1, replicas 0:
 * the map says) has no copies to take it over from: its layers here are all there is.
 * 0 serve, 1 a takeover runs, -errno. */
static int volume_claimed(struct node *n, const char *name, int64_t epoch, unsigned replicas,
			  void (*done)(void *arg, int res), void *arg)
{
	struct cluster_volume v;
	uint64_t uid, stale = 0;
	int r;

	if (!n->takeovers || cluster_volume_get(n->cluster, name, &v) < 0)
		return 0; /* no takeovers here, or a local volume the map does not know */
	if (takeovers_removing(n->takeovers, name))
		return 0; /* its layers went first, its record goes next: nothing to take */
	if (!replicas)
		replicas = v.rec.replicas;
	if (replicas <= 1)
		return 0; /* no copies to take it over from (guard_owns refuses it elsewhere) */
	if (takeovers_running(n->takeovers, name)) {
		r = takeovers_run(n->takeovers, name, epoch, 0, done, arg); /* waits for it */
		return r < 0 ? r : 1;
	}
	if (engine_volume_family(n->eng, name, &uid) == 0) {
		if (!(stale = stale_family(n, name, epoch)))
			return 0;
	} else if (v.rec.state != LAYOUT_VOL_READY) {
		return 0; /* being created here: not ready yet */
	}
	r = takeovers_run(n->takeovers, name, epoch, stale, done, arg);
	if (r < 0 && r != -EIO)
		log_msg(LOG_ERROR, LOG_TAG, "volume %s: cannot take it over: %s", name,
			err_str(-r));
	return r < 0 ? r : 1;
}

/* Registers name's family with the replica sets if this node owns it at epoch and
 * it has more than one copy (replicas 0: the map says how many; min_replicas 0: the
 * map's, else layout_min_replicas: an EC volume needs all M+1); takes it over first
 * if its layers here are missing or stale (volume_claimed). */
static void volume_owned(void *arg, const char *name, int64_t epoch, unsigned replicas,
			 unsigned min_replicas)
{
	struct node *n = arg;
	struct engine_volume_info info;
	struct cluster_volume v;
	int r;

	if (!n->replicas)
		return;
	if (cluster_volume_get(n->cluster, name, &v) == 0) {
		replicas = replicas ? replicas : v.rec.replicas;
		if (!min_replicas)
			min_replicas = v.rec.min_replicas; /* an EC volume's: all M+1 */
	}
	if (replicas <= 1)
		return;
	if (volume_claimed(n, name, epoch, replicas, NULL, NULL) != 0 ||
	    engine_volume_info(n->eng, name, &info) < 0)
		return; /* the takeover sets its family when it is done */
	r = replica_family_set(n->replicas, info.id, name, epoch, replicas,
			       min_replicas && min_replicas <= replicas
				       ? min_replicas
				       : layout_min_replicas(replicas));
	if (r < 0)
		log_msg(LOG_ERROR, LOG_TAG, "volume %s: its copies cannot start: %s", name,
			err_str(-r));
}

/* A replicated volume this node lost while its layers are still here: this node holds
 * no claim on it, nor one that lapsed with its lease (no loss until the join
 * decides), and the map's record names another owner (that node claimed it since: a
 * restart after kill -9 learns it here, before anything attaches), or names this
 * node with no live claim after the join (released: the clean handoff). Its layers
 * are released, their segments kept as copies (takeovers_release), at once: the next
 * owner's takeover needs every holder's copy to be a held copy it can seal and read
 * (a holder without one answers "never had it"), and a claim back here starts from
 * the copies too. Once nothing here has them open (the guard fenced its handles;
 * the next map change or keepalive tries again). */
static void release_if_lost(struct node *n, const struct cluster_volume *v)
{
	const char *name = v->rec.name;
	struct engine_volume_info info;
	bool mine = strcmp(v->rec.owner, n->self_id) == 0;
	uint64_t uid;
	int r;

	if (v->rec.replicas <= 1 || !n->takeovers || !v->rec.owner[0] ||
	    (mine && (v->claimed || !cluster_reclaimed(n->cluster))) ||
	    cluster_volume_owned(n->cluster, name, NULL) ||
	    cluster_volume_lapsed(n->cluster, name) || takeovers_running(n->takeovers, name) ||
	    engine_volume_family(n->eng, name, &uid) < 0 ||
	    (engine_volume_info(n->eng, name, &info) == 0 && info.open))
		return;
	r = takeovers_release(n->takeovers, name, uid);
	if (r < 0)
		log_msg(LOG_ERROR, LOG_TAG, "volume %s: its stale layers here cannot be released: %s",
			name, err_str(-r));
}

/* The volumes of the map this node owns (a claim at a join, after a restart): their
 * copies go on under the claim's epoch; those it lost: their layers go. */
static void sync_families(struct node *n)
{
	struct cluster_volume *vols;
	size_t count;

	if (!n->replicas || cluster_volumes(n->cluster, &vols, &count) < 0)
		return;
	for (size_t i = 0; i < count; i++) {
		int64_t epoch;

		if (vols[i].rec.replicas > 1 &&
		    cluster_volume_owned(n->cluster, vols[i].rec.name, &epoch))
			volume_owned(n, vols[i].rec.name, epoch, vols[i].rec.replicas,
				     vols[i].rec.min_replicas);
		else
			release_if_lost(n, &vols[i]);
	}
	free(vols);
}

/* The map moved: the replica sets see the nodes, and the volumes this node owns now. */
static void replicas_changed(struct node *n)
{
	if (n->replicas) {
		replica_map_changed(n->replicas);
		sync_families(n);
	}
}

/* The replica sets of this node's volumes, and the takeovers of volumes whose owner
 * died: in a cluster, with a peer listener. */
static int start_replicas(struct node *n)
{
	struct replica_opts ro = { .loop = n->lp, .eng = n->eng, .ep = n->peer,
				   .cluster = n->cluster, .self_id = n->self_id,
				   .peer_timeout_ms = n->cfg.peer_timeout_ms,
				   .catchup_mbps = n->cfg.catchup_mbps,
				   .catchup_share = n->cfg.catchup_client_share,
				   .catchup_inflight = n->cfg.catchup_segments,
				   .catchup_off = n->cfg.catchup_mbps == 0,
				   .scrub_mbps = n->cfg.scrub_mbps,
				   .scrub_interval_s = n->cfg.scrub_interval_s,
				   .out_after_s = n->cfg.out_after };
	const char *crash = getenv("QUILL_TEST_CRASH_AFTER_OPEN"); /* tests (replica.h) */
	const char *crash_seal = getenv("QUILL_TEST_CRASH_AFTER_SEAL");
	const char *drop_own = getenv("QUILL_TEST_DROP_OWN");
	const char *crash_encode = getenv("QUILL_TEST_CRASH_ENCODE");
	const char *crash_rebuild = getenv("QUILL_TEST_CRASH_REBUILD");
	const char *frags_first = getenv("QUILL_TEST_FRAGS_FIRST");
	const char *keep_replicas = getenv("QUILL_EC_KEEP_REPLICAS");
	struct takeover_opts to = { .loop = n->lp, .eng = n->eng, .ep = n->peer,
				    .cluster = n->cluster, .self_id = n->self_id,
				    .peer_timeout_ms = n->cfg.peer_timeout_ms };
	int r;

	if (!n->cluster || !n->peer)
		return 0;
	if (crash)
		ro.test_crash_after_open = (unsigned)strtoul(crash, NULL, 10);
	if (crash_seal)
		ro.test_crash_after_seal = (unsigned)strtoul(crash_seal, NULL, 10);
	ro.drop_own = drop_own && strcmp(drop_own, "1") == 0;
	ro.frags_first = frags_first && strcmp(frags_first, "1") == 0;
	/* an EC volume keeps only its stripe once encoded; QUILL_EC_KEEP_REPLICAS=1 keeps
	 * the replicas beside it (the space of both: docs/erasure-coding.md) */
	ro.ec_drop_replicas = !(keep_replicas && strcmp(keep_replicas, "1") == 0);
	if (crash_encode)
		ro.test_crash_encode = (unsigned)strtoul(crash_encode, NULL, 10);
	if (crash_rebuild)
		ro.test_crash_rebuild = (unsigned)strtoul(crash_rebuild, NULL, 10);
	r = replica_create(&ro, &n->replicas);
	if (r < 0)
		return r;
	to.rs = n->replicas;
	return takeovers_create(&to, &n->takeovers);
}

/* Is name being taken over here? Its step, for volume info, cluster status and the
 * guard (which refuses attaches until it ends). */
static bool volume_takeover(void *arg, const char *name, char *step, size_t len)
{
	struct node *n = arg;
	int64_t epoch = 0;

	return n->cluster && cluster_volume_owned(n->cluster, name, &epoch) &&
	       takeovers_state(n->takeovers, name, epoch, step, len);
}

/* The holder's clean-up: copies whose records are gone or no longer name this node. */
static int start_orphans(struct node *n)
{
	struct orphans_opts oo = { .loop = n->lp, .eng = n->eng, .cluster = n->cluster,
				   .self_id = n->self_id };

	if (!n->cluster || !n->holder)
		return 0;
	return orphans_create(&oo, &n->orphans);
}

/* A removal of name runs here (on) or ended: no takeover of it meanwhile. */
static void volume_removing(void *arg, const char *name, bool on)
{
	struct node *n = arg;

	takeovers_remove_mark(n->takeovers, name, on);
}

static int start_control(struct node *n)
{
	struct control_opts co = { .path = n->cfg.control, .eng = n->eng, .vhost = n->vhost,
				   .cluster = n->cluster, .guard = n->guard, .replicas = n->replicas,
				   .orphans = n->orphans,
				   .volume_owned = volume_owned, .volume_owned_arg = n,
				   .volume_takeover = volume_takeover,
				   .volume_removing = volume_removing };
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
	struct vhost_server_opts vo = { .eng = n->eng, .loop = n->lp, .guard = n->guard };
	int r = vhost_server_create(&vo, &n->vhost);

	for (unsigned i = 0; r == 0 && i < n->cfg.nvhost; i++) {
		char *spec = n->cfg.vhost[i], *eq = strchr(spec, '=');

		*eq = '\0';
		make_parent_dirs(n, eq + 1);
		r = vhost_server_export(n->vhost, spec, eq + 1);
		if (r < 0)
			log_msg(LOG_ERROR, LOG_TAG, "--vhost %s=%s: %s", spec, eq + 1, err_str(-r));
	}
	return r;
}

/* ---- the cluster: membership, and the lease that guards client I/O ---- */

/* A keepalive was granted, the map moved or a claim went: volumes this node lost
 * stop being served; requests held for the lease may go; the replica sets see the
 * nodes and the volumes this node owns now. */
/* This node's space for the cluster (docs/cluster.md, "Space"): sampled at most once a
 * second from the engine here, on the loop (on_change runs at least per keepalive), and
 * published by the cluster's session thread when it changed. */
static void space_sample(struct node *n)
{
	struct engine_stats st;
	struct layout_space sp;

	if (loop_now_ms() < n->space_next)
		return;
	n->space_next = loop_now_ms() + 1000;
	engine_get_stats(n->eng, &st);
	control_node_space(&st, &sp);
	cluster_space_set(n->cluster, &sp);
}

static void cluster_changed(void *arg)
{
	struct node *n = arg;

	space_sample(n);
	blk_guard_recheck(n->guard);
	replicas_changed(n);
	orphans_kick(n->orphans);
}

static void cluster_refused(void *arg, const char *why)
{
	struct node *n = arg;

	log_msg(LOG_ERROR, LOG_TAG, "cannot join the cluster: %s", why);
	n->refused = true;
	loop_stop(n->lp);
}

static void cluster_self(struct node *n, struct layout_node *self)
{
	const struct quilld_config *cfg = &n->cfg;

	memset(self, 0, sizeof(*self));
	if (cfg->node_id[0])
		snprintf(self->id, sizeof(self->id), "%s", cfg->node_id);
	else if (gethostname(self->id, sizeof(self->id) - 1) < 0)
		self->id[0] = '\0'; /* refused by cluster_start with the reason */
	snprintf(self->domain, sizeof(self->domain), "%s",
		 cfg->failure_domain[0] ? cfg->failure_domain : self->id);
	if (nbd_server_tcp_port(n->nbd))
		snprintf(self->nbd, sizeof(self->nbd), "%s:%u", cfg->nbd_addr,
			 nbd_server_tcp_port(n->nbd));
	snprintf(self->control, sizeof(self->control), "%.255s", cfg->control); /* <= 107 */
	snprintf(self->peer, sizeof(self->peer), "%s", cfg->peer_addr);
	self->format_version = QUILL_FORMAT_VERSION;
	self->protocol_version = CLUSTER_PROTOCOL_VERSION;
}

/* ---- the guard over client I/O (block/block.h): the lease, and ownership ---- */

static bool guard_lease_valid(void *arg)
{
	struct node *n = arg;

	return n->cluster && cluster_lease_valid(n->cluster);
}

static uint64_t guard_claims_gen(void *arg)
{
	struct node *n = arg;

	return n->cluster ? cluster_claims_gen(n->cluster) : 0;
}

/* Where a client should attach instead: " (NBD at HOST:PORT)", or "" when the map
 * has no NBD address for the node. */
static void owner_nbd(struct node *n, const char *id, char *buf, size_t len)
{
	struct cluster_node cn;

	buf[0] = '\0';
	if (cluster_node_get(n->cluster, id, &cn) == 0 && cn.rec.nbd[0])
		snprintf(buf, len, ", NBD at %s", cn.rec.nbd);
}

/* Is vol's data not here to serve, whoever owns it? Then why. Until the map is read,
 * every volume would look like a local one it does not know (this node's to serve),
 * yet its layers may be stale (sync_families releases those once the map is here).
 * A single-copy volume's only copy is on the node that created it: no takeover can
 * bring it here, and a claim here would only make an empty owner. And layers that a
 * claim here found stale wait for their takeover (its start is on its way to the
 * loop with the claim's answer). */
static bool not_here(struct node *n, const char *vol, char *why, size_t len)
{
	struct cluster_info self;
	struct cluster_volume v;
	struct layout_claim prev;
	uint64_t uid;
	int64_t now;

	cluster_info(n->cluster, &self);
	if (self.map_revision == 0)
		snprintf(why, len, "volume '%s': this node has not read the cluster map yet, "
			 "retry", vol);
	else if (cluster_volume_get(n->cluster, vol, &v) == 0 && v.rec.replicas <= 1 &&
		 v.rec.state == LAYOUT_VOL_READY && engine_volume_family(n->eng, vol, &uid) < 0)
		snprintf(why, len, "volume '%s' has a single copy (replicas 1), on node %s: "
			 "attach it there", vol, v.rec.owner);
	else if (cluster_volume_owned(n->cluster, vol, &now) && layers_stale(n, vol, now, &prev))
		snprintf(why, len, "taking over %s (its layers here are stale: %s owned it at "
			 "epoch %lld), retry", vol, prev.node, (long long)prev.epoch);
	else
		return false;
	return true;
}

/* A volume of the map is served only by the node that holds its claim; the epoch the
 * guard keeps is the first of the node's unbroken ownership, so that a lease that
 * lapsed and was replaced with no other claim between (etcd away for longer than
 * the TTL) costs the clients nothing. A volume the map does not know (made while the
 * node ran alone, or a clone: no record) no other node can claim, so it stays this
 * node's (epoch 0). */
static int guard_owns(void *arg, const char *vol, int64_t *epoch, char *why, size_t len)
{
	struct node *n = arg;
	struct cluster_volume v;
	struct cluster_info self;
	char nbd[LAYOUT_ADDR_MAX + 16];

	*epoch = 0;
	if (volume_takeover(n, vol, why, len) || (n->cluster && not_here(n, vol, why, len)))
		return -EREMOTE; /* not here (yet) */
	if (!n->cluster || cluster_volume_owned_since(n->cluster, vol, epoch) ||
	    cluster_volume_get(n->cluster, vol, &v) < 0)
		return 0;
	cluster_info(n->cluster, &self);
	if (v.claimed && strcmp(v.claim.node, self.node_id) != 0) {
		owner_nbd(n, v.claim.node, nbd, sizeof(nbd));
		snprintf(why, len, "volume '%s' is owned by node %s (epoch %lld%s): attach it "
			 "there, not here", vol, v.claim.node, (long long)v.claim.epoch, nbd);
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "%s", why);
		return -EREMOTE;
	}
	if (cluster_volume_lapsed(n->cluster, vol)) {
		snprintf(why, len, "volume '%s': this node's claim lapsed with its lease; it "
			 "takes the volume again when it joins, if no one claimed it", vol);
		return -EINPROGRESS; /* the guard waits for the join */
	}
	snprintf(why, len, "volume '%s' has no owner now: claim it first (quill volume claim "
		 "%s)", vol, vol);
	return -EAGAIN; /* an NBD attach claims it (guard_claim) */
}

/* A claim made for an attach (blk_guard_claim): the cluster's call, then done. */
struct attach_claim {
	struct node *n;
	struct cluster_vol_req req;
	void (*done)(void *arg, int res);
	void *done_arg;
};

static void attach_claimed(void *arg, int res, const char *msg)
{
	struct attach_claim *ac = arg;

	if (res < 0)
		log_msg(LOG_WARN, LOG_TAG, "volume %s: not claimed for an attach: %s",
			ac->req.vol.name, msg);
	/* a volume whose owner died elsewhere, or whose layers here are stale: the
	 * attach waits for its takeover */
	if (res < 0 || volume_claimed(ac->n, ac->req.vol.name, ac->req.epoch, 0, ac->done,
				      ac->done_arg) <= 0)
		ac->done(ac->done_arg, res);
	free(ac);
}

static int guard_claim(void *arg, const char *vol, void (*done)(void *done_arg, int res),
		       void *done_arg)
{
	struct node *n = arg;
	struct attach_claim *ac;
	int r;

	if (!n->cluster)
		return -ENOTSUP;
	ac = calloc(1, sizeof(*ac));
	if (!ac)
		return -ENOMEM;
	ac->n = n;
	ac->req.op = CLUSTER_VOL_CLAIM;
	snprintf(ac->req.vol.name, sizeof(ac->req.vol.name), "%s", vol);
	ac->done = done;
	ac->done_arg = done_arg;
	log_msg(LOG_INFO, LOG_TAG, "volume %s: no owner: claiming it for an attach", vol);
	r = cluster_volume_async(n->cluster, &ac->req, attach_claimed, ac);
	if (r < 0)
		free(ac);
	return r;
}

static int make_guard(struct node *n)
{
	static const struct blk_guard_ops ops = {
		.lease_valid = guard_lease_valid,
		.claims_gen = guard_claims_gen,
		.owns = guard_owns,
		.claim = guard_claim,
	};

	if (!n->cfg.etcd_endpoints[0])
		return 0; /* a single node: no guard, nothing per request */
	return blk_guard_create(&ops, n, &n->guard);
}

/* Joins in the background: until this node holds a lease, client I/O waits. */
static int start_cluster(struct node *n)
{
	const struct quilld_config *cfg = &n->cfg;
	struct layout_node self;
	struct cluster_opts co = {
		.loop = n->lp,
		.endpoints = cfg->etcd_endpoints,
		.credentials_file = cfg->etcd_credentials[0] ? cfg->etcd_credentials : NULL,
		.prefix = cfg->etcd_prefix,
		.self = &self,
		.ttl_s = cfg->lease_ttl,
		.on_change = cluster_changed,
		.on_fatal = cluster_refused,
		.arg = n,
	};

	if (!cfg->etcd_endpoints[0])
		return 0;
	cluster_self(n, &self);
	snprintf(n->self_id, sizeof(n->self_id), "%s", self.id);
	return cluster_start(&co, &n->cluster);
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
	r = load_tls(n);
	if (r < 0)
		return r;
	r = load_peer_secret(n);
	if (r < 0)
		return r;
	r = open_engine(n);
	if (r < 0)
		return r;
	loop_set_idle(n->lp, engine_idle, n);
	loop_set_wait(n->lp, engine_sleep, n);
	loop_set_wait_sends(n->lp, true); /* the peers' sends go in the ring's sleep */
	loop_set_wait_recvs(n->lp, true); /* and their receives wait in the ring */
	r = make_guard(n);
	if (r < 0)
		return r;
	nbd_opts_fill(n, &no);
	if (no.unix_path)
		make_parent_dirs(n, no.unix_path);
	r = nbd_server_create(&no, &n->nbd);
	if (r < 0)
		return r;
	r = start_vhost(n);
	if (r < 0)
		return r;
	r = start_peer(n);
	if (r < 0)
		return r;
	r = start_cluster(n);
	if (r < 0)
		return r;
	r = start_replicas(n);
	if (r < 0)
		return r;
	r = start_orphans(n);
	if (r < 0)
		return r;
	make_parent_dirs(n, n->cfg.control);
	return start_control(n);
}

static void stop(struct node *n)
{
	/* the front ends drain: what the lease holds back fails rather than waits */
	blk_guard_shutdown(n->guard);
	control_destroy(n->ctl);
	takeovers_destroy(n->takeovers); /* before the replica sets it registers with */
	orphans_destroy(n->orphans); /* before the engine and the cluster it calls */
	replica_destroy(n->replicas); /* before the endpoint (its connections) and the
					 engine (its mirror) */
	peer_endpoint_destroy(n->peer);
	holder_destroy(n->holder);  /* its ops still in the engine end in engine_close */
	peer_secret_destroy(n->peer_secret);
	vhost_server_destroy(n->vhost); /* lets in-flight requests finish */
	nbd_server_destroy(n->nbd); /* lets in-flight requests finish */
	nbd_tls_destroy(n->tls);
	engine_close(n->eng);       /* flush and checkpoint */
	blk_guard_destroy(n->guard); /* before the cluster its ops read */
	n->guard = NULL;
	cluster_stop(n->cluster);   /* after the last client I/O: revokes the lease */
	loop_watch_remove(n->signal_watch);
	if (n->signal_fd > 0)
		close(n->signal_fd);
	loop_destroy(n->lp);
}

int main(int argc, char **argv)
{
	static struct node n;
	bool started;
	int r = config_load(&n.cfg, argc, argv);

	if (r)
		return r > 0 ? 0 : 2;
	set_log_level(n.cfg.log_level);
	stages_init(); /* QUILL_STAGES=1: where a request's time goes (common/stages.h) */
	/* NBD requests carry buffers of up to 32 MiB: keep them on the heap and keep the
	 * heap, instead of an mmap, page faults and munmap per large request. */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	r = start(&n);
	started = r == 0;
	if (started) {
		static const char *tls[] = { "", " (TLS offered)", " (TLS required)" };

		log_msg(LOG_INFO, LOG_TAG, "ready: NBD on %s:%u%s%s%s, control socket %s",
			n.cfg.nbd_addr[0] ? n.cfg.nbd_addr : "(no TCP)",
			nbd_server_tcp_port(n.nbd), tls[n.cfg.nbd_tls],
			n.cfg.nbd_unix[0] ? " and unix:" : "", n.cfg.nbd_unix, n.cfg.control);
		r = loop_run(n.lp);
	} else {
		log_msg(LOG_ERROR, LOG_TAG, "cannot start: %s", err_str(-r));
	}
	stages_report();
	stop(&n);
	if (!started)
		remove_created(&n);
	return r < 0 || n.refused ? 1 : 0;
}
