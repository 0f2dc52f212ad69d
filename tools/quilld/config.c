/* tools/quilld/config.c — "key = value" config files and --key=value flags share
 * one table of settings. */
#include "tools/quilld/config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <inttypes.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/units.h"
#include "engine/engine.h"
#include "replication/catchup.h"
#include "replication/peer.h"
#include "tools/control_proto.h"

enum setting_kind { SET_PATH, SET_STR, SET_SIZE, SET_U16, SET_UINT, SET_VHOST, SET_FLAG,
		    SET_NBD_ACCESS };

/* A setting's own check, run as soon as it is set: NULL if the value is fine, else
 * what the setting accepts (for the message). Rules between settings: check_all(). */
typedef const char *(*setting_check)(const struct quilld_config *cfg);

/* New fields go last: a row written { key, kind, off, cap, help } stays valid. */
struct setting {
	const char *key;
	enum setting_kind kind;
	size_t off;
	size_t cap; /* strings */
	const char *help;
	setting_check check; /* NULL: any value of its kind */
	bool flag_only; /* a flag for one start, never a line of a config file */
};

#define CMDLINE "command line" /* `where` of a flag */
#define SOCKET_PATH_MAX 107 /* sun_path, without its NUL */
#define MIN_SEGMENT (64u << 10)
#define MAX_SEGMENT (256u << 20)
#define DEFAULT_SEGMENT (4u << 20)
#define STORE_RESERVED (1u << 20) /* the superblock area before slot 0 */

static const char *check_not_empty(const char *v)
{
	return *v ? NULL : "must not be empty";
}

static const char *check_data_dir(const struct quilld_config *c) { return check_not_empty(c->data_dir); }
static const char *check_store(const struct quilld_config *c) { return check_not_empty(c->store); }
static const char *check_meta(const struct quilld_config *c) { return check_not_empty(c->meta); }

static const char *check_store_size(const struct quilld_config *c)
{
	return c->store_size % 4096 || c->store_size < STORE_RESERVED + 4ull * MIN_SEGMENT
		       ? "must be a multiple of 4 KiB, at least 1 MiB + 4 segments (1.25M with "
			 "64K segments, 17M with the default 4M)"
		       : NULL;
}

static const char *check_segment_size(const struct quilld_config *c)
{
	return c->segment_size % 4096 || c->segment_size < MIN_SEGMENT ||
			       c->segment_size > MAX_SEGMENT
		       ? "must be a multiple of 4 KiB between 64K and 256M"
		       : NULL;
}

static const char *check_nbd_addr(const struct quilld_config *c)
{
	struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICHOST,
				  .ai_socktype = SOCK_STREAM }, *res = NULL;

	if (!c->nbd_addr[0])
		return NULL;
	if (getaddrinfo(c->nbd_addr, NULL, &hints, &res) != 0) {
		hints.ai_flags = AI_PASSIVE; /* a host name, resolved once */
		if (getaddrinfo(c->nbd_addr, NULL, &hints, &res) != 0)
			return "must be an IP address or a host name of this machine (\"\" for "
			       "no TCP listener)";
	}
	freeaddrinfo(res);
	return NULL;
}

static const char *check_port(const struct quilld_config *c)
{
	return c->nbd_port == 0 ? "must be a TCP port between 1 and 65535" : NULL;
}

static const char *socket_path(const char *v, bool may_be_empty)
{
	if (!*v)
		return may_be_empty ? NULL : "must not be empty";
	return strlen(v) > SOCKET_PATH_MAX ? "is too long for a unix socket (107 bytes at most)"
					   : NULL;
}

static const char *check_nbd_unix(const struct quilld_config *c) { return socket_path(c->nbd_unix, true); }
static const char *check_control(const struct quilld_config *c) { return socket_path(c->control, false); }

static const char *check_checkpoint(const struct quilld_config *c)
{
	return c->checkpoint_ms < 10 || c->checkpoint_ms > 86400000
		       ? "must be between 10 and 86400000 milliseconds"
		       : NULL;
}

static const char *check_poll_us(const struct quilld_config *c)
{
	return c->poll_us > 10000 ? "must be at most 10000 microseconds" : NULL;
}

static const char *check_peer_listen(const struct quilld_config *c)
{
	char addr[64];
	uint16_t port;

	if (!c->peer_listen[0])
		return NULL;
	return peer_addr_parse(c->peer_listen, addr, sizeof(addr), &port) < 0
		       ? "must be ADDRESS:PORT, a numeric address of this machine and a port "
			 "(e.g. 127.0.0.1:10900, [::1]:10900), or \"\" for none"
		       : NULL;
}

static const char *const log_levels[] = { "debug", "info", "warn", "error" };

static const char *check_log_level(const struct quilld_config *c)
{
	for (size_t i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++)
		if (strcmp(c->log_level, log_levels[i]) == 0)
			return NULL;
	return "must be debug, info, warn or error";
}

static const char *check_etcd_prefix(const struct quilld_config *c)
{
	size_t n = strlen(c->etcd_prefix);

	return n < 1 || c->etcd_prefix[0] != '/' || c->etcd_prefix[n - 1] != '/' ||
			       strstr(c->etcd_prefix, "//")
		       ? "must start and end with '/' (like /quill/prod/)"
		       : NULL;
}

static const char *check_catchup_mbps(const struct quilld_config *c)
{
	return c->catchup_mbps > 100000 ? "must be between 0 (off) and 100000 MB/s" : NULL;
}

static const char *check_catchup_share(const struct quilld_config *c)
{
	return c->catchup_client_share > 95 ? "must be between 0 (a fixed rate) and 95 %" : NULL;
}

static const char *check_catchup_segments(const struct quilld_config *c)
{
	return c->catchup_segments < 1 || c->catchup_segments > 64 ? "must be between 1 and 64"
								   : NULL;
}

static const char *check_scrub_mbps(const struct quilld_config *c)
{
	return c->scrub_mbps > 100000 ? "must be between 0 (off) and 100000 MB/s" : NULL;
}

static const char *check_scrub_interval(const struct quilld_config *c)
{
	return c->scrub_interval_s < 1 || c->scrub_interval_s > 4000000
		       ? "must be between 1 and 4000000 seconds" : NULL;
}

static const char *check_out_after(const struct quilld_config *c)
{
	return c->out_after == 0 || c->out_after > 30 * 86400 ? "must be between 1 and 2592000 seconds"
							      : NULL;
}

static const char *check_peer_timeout(const struct quilld_config *c)
{
	return c->peer_timeout_ms < 50 || c->peer_timeout_ms > 600000
		       ? "must be between 50 and 600000 milliseconds" : NULL;
}

static const char *check_lease_ttl(const struct quilld_config *c)
{
	return c->lease_ttl < 2 || c->lease_ttl > 3600 ? "must be between 2 and 3600 seconds"
						       : NULL;
}

#define F(field) offsetof(struct quilld_config, field)
#define CAP(field) sizeof(((struct quilld_config *)0)->field)
static const struct setting settings[] = {
	{ "data-dir", SET_PATH, F(data_dir), CAP(data_dir), "folder for the store file and metadata (./data)", check_data_dir, false },
	{ "store", SET_PATH, F(store), CAP(store), "block device or file (DATA/store.img)", check_store, false },
	{ "store-size", SET_SIZE, F(store_size), 0, "size of a new store file (8G); an existing store must have it (or --grow)", check_store_size, false },
	{ "grow", SET_FLAG, F(grow), 0, "grow an existing store to --store-size (a block device: to its size)", NULL, false },
	{ "meta", SET_PATH, F(meta), CAP(meta), "RocksDB folder (DATA/meta)", check_meta, false },
	{ "format", SET_FLAG, F(format), 0, "format the store even if it is not blank (never one holding a log...)", NULL, true },
	{ "rebuild-meta", SET_FLAG, F(rebuild_meta), 0, "rebuild the metadata folder from the store alone (the old one is kept as META.before-rebuild-TIME), then start", NULL, true },
	{ "destroy-data", SET_FLAG, F(destroy_data), 0, "...unless this is given too: its volumes are lost", NULL, true },
	{ "segment-size", SET_UINT, F(segment_size), 0, "log segment size at format (4M)", check_segment_size, false },
	{ "nbd-addr", SET_STR, F(nbd_addr), CAP(nbd_addr), "NBD TCP address, \"\" for none (127.0.0.1)", check_nbd_addr, false },
	{ "nbd-port", SET_U16, F(nbd_port), 0, "NBD TCP port (10809)", check_port, false },
	{ "nbd-unix", SET_PATH, F(nbd_unix), CAP(nbd_unix), "NBD unix socket (none)", check_nbd_unix, false },
	{ "nbd-unix-mode", SET_NBD_ACCESS, 0, 0, "its permissions, octal (0600; 0660: its group too)", NULL, false },
	{ "nbd-unix-owner", SET_NBD_ACCESS, 0, 0, "its owner, a user name or uid (ours; needs root)", NULL, false },
	{ "nbd-unix-group", SET_NBD_ACCESS, 0, 0, "its group, a name or gid (ours)", NULL, false },
	{ "nbd-tls", SET_NBD_ACCESS, 0, 0, "TLS on TCP: off, on (offered) or require (off)", NULL, false },
	{ "nbd-tls-psk-file", SET_PATH, F(nbd_tls_psk_file), CAP(nbd_tls_psk_file), "TLS pre-shared keys (psktool -u USER -p FILE)", NULL, false },
	{ "nbd-tls-x509-dir", SET_PATH, F(nbd_tls_x509_dir), CAP(nbd_tls_x509_dir), "TLS X.509 folder: server-cert.pem, server-key.pem, ca-cert.pem", NULL, false },
	{ "nbd-tls-verify-peer", SET_NBD_ACCESS, 0, 0, "X.509: clients need a certificate of the CA: yes or no (no)", NULL, false },
	{ "nbd-max-handshakes", SET_UINT, F(nbd_limits.max_handshakes), 0,
	  "NBD connections still in the handshake (128)", NULL, false },
	{ "nbd-max-handshakes-per-source", SET_UINT, F(nbd_limits.max_handshakes_per_source), 0,
	  "NBD handshakes from one address or unix uid (32)", NULL, false },
	{ "nbd-max-clients", SET_UINT, F(nbd_limits.max_clients), 0, "attached NBD clients (1024)", NULL, false },
	{ "nbd-max-clients-per-source", SET_UINT, F(nbd_limits.max_clients_per_source), 0,
	  "NBD clients from one address or unix uid (512)", NULL, false },
	{ "nbd-handshake-timeout-ms", SET_UINT, F(nbd_limits.handshake_timeout_ms), 0,
	  "close a handshake idle this long (30000)", NULL, false },
	{ "nbd-request-timeout-ms", SET_UINT, F(nbd_limits.request_timeout_ms), 0,
	  "drop a client stalled mid-request this long (60000)", NULL, false },
	{ "nbd-request-mem", SET_SIZE, F(nbd_limits.request_mem), 0,
	  "NBD request buffers held at most, all clients (512M, >= 64M)", NULL, false },
	{ "control", SET_PATH, F(control), CAP(control), "control socket for `quill`", check_control, false },
	{ "checkpoint-ms", SET_UINT, F(checkpoint_ms), 0, "extent map checkpoint period (5000)", check_checkpoint, false },
	{ "sync-size", SET_SIZE, F(sync_size), 0, "flush the store in the background after this much log, so that no flush holds the disk long (8M; 0: only when asked)", NULL, false },
	{ "prezero", SET_FLAG, F(prezero), 0, "write zeros over the free segments the log takes next, in the background, so that a thin store file's first writes do not pay the file system's extent conversion (yes; no: leave them)", NULL, false },
	{ "read-defrag", SET_FLAG, F(read_defrag), 0, "a read whose blocks lie scattered over the log writes them back as one run, so that the next read of it is one I/O per MiB (no: the first read would pay a write)", NULL, false },
	{ "seq-defrag", SET_FLAG, F(seq_defrag), 0, "read-defrag for sequential readers only: a read that continues 4 MiB or more read in order, and finds its blocks scattered, writes them back as one run, so that the next pass is one I/O per MiB (no: the first pass would pay a write; bench.sh A/B in docs/engine.md)", NULL, false },
	{ "idle-defrag", SET_FLAG, F(idle_defrag), 0, "when no client request came for 100 ms, rewrite the volumes' scattered ranges in LBA order, a MiB at a time, so that a later sequential read is one I/O per MiB (yes; no: leave them, at the cost of slow sequential reads after random writes)", NULL, false },
	{ "poll-us", SET_UINT, F(poll_us), 0, "while a lone request waits for the disk, or a client was just answered, poll for what comes next at most this many microseconds before sleeping: it comes sooner than a sleeping thread wakes (100; 0: sleep at once, spending no CPU on it)", check_poll_us, false },
	{ "vhost", SET_VHOST, 0, 0, "VOL=SOCKET: export VOL over vhost-user-blk (repeatable)", NULL, false },
	{ "log-level", SET_STR, F(log_level), CAP(log_level), "debug, info, warn or error (info)", check_log_level, false },
	{ "peer-listen", SET_STR, F(peer_listen), CAP(peer_listen), "peer protocol ADDR:PORT for other nodes (none)", check_peer_listen, false },
	{ "peer-secret", SET_PATH, F(peer_secret), CAP(peer_secret), "cluster secret file, mode 0600 (quill-peer secret FILE)", NULL, false },
	{ "etcd-endpoints", SET_STR, F(etcd_endpoints), CAP(etcd_endpoints), "join a cluster: etcd's client URLs, http://HOST:PORT[,...] (none: a single node)", NULL, false },
	{ "etcd-credentials", SET_PATH, F(etcd_credentials), CAP(etcd_credentials), "file with 'user = NAME' and 'password = SECRET', mode 0600 (none: etcd without auth)", NULL, false },
	{ "etcd-prefix", SET_STR, F(etcd_prefix), CAP(etcd_prefix), "the cluster's keys in etcd (/quill/default/)", check_etcd_prefix, false },
	{ "node-id", SET_STR, F(node_id), CAP(node_id), "this node's id in the cluster (the host name)", NULL, false },
	{ "failure-domain", SET_STR, F(failure_domain), CAP(failure_domain), "nodes that fail together (a host, a rack): copies go to distinct ones (the node id)", NULL, false },
	{ "peer-addr", SET_STR, F(peer_addr), CAP(peer_addr), "HOST:PORT other nodes reach this one at (peer protocol)", NULL, false },
	{ "lease-ttl", SET_UINT, F(lease_ttl), 0, "seconds without etcd before this node stops serving I/O and is down (10)", check_lease_ttl, false },
	{ "peer-timeout-ms", SET_UINT, F(peer_timeout_ms), 0, "a node holding copies that does not answer this long is dropped from them (1000)", check_peer_timeout, false },
	{ "catchup-mbps", SET_UINT, F(catchup_mbps), 0, "the most MB/s this node spends copying segments to nodes that missed them (a rebuild's too), the ceiling of its adaptive rate; 0: none (512)", check_catchup_mbps, false },
	{ "catchup-segments", SET_UINT, F(catchup_segments), 0, "segments this node copies at once to nodes that missed them (8)", check_catchup_segments, false },
	{ "catchup-client-share", SET_UINT, F(catchup_client_share), 0, "while it copies, the % of their throughput this node's clients keep: the copies back off while the clients complete fewer requests per second, or wait longer, than share% of what they do alone; 0: a fixed rate of catchup-mbps (60)", check_catchup_share, false },
	{ "scrub-mbps", SET_UINT, F(scrub_mbps), 0, "the background scrub of the replicated volumes this node owns: the most MB/s it reads over every copy; 0: no background scrub (0; quill scrub runs at 64 then)", check_scrub_mbps, false },
	{ "scrub-interval", SET_UINT, F(scrub_interval_s), 0, "seconds between background scrub rounds (86400)", check_scrub_interval, false },
	{ "out-after", SET_UINT, F(out_after), 0, "seconds a node may be down before its copies are rebuilt on other nodes, as if it were out (600)", check_out_after, false },
};

static const struct setting *find_setting(const char *key)
{
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		if (strcmp(settings[i].key, key) == 0)
			return &settings[i];
	return NULL;
}

/* A user or group: a name, or a number. */
static bool parse_id(const char *val, bool group, unsigned *id)
{
	struct passwd *pw;
	struct group *gr;
	char *end;
	unsigned long v;

	if (group && (gr = getgrnam(val))) {
		*id = (unsigned)gr->gr_gid;
		return true;
	}
	if (!group && (pw = getpwnam(val))) {
		*id = (unsigned)pw->pw_uid;
		return true;
	}
	errno = 0;
	v = strtoul(val, &end, 10);
	if (!*val || *end || errno || v >= UINT32_MAX)
		return false;
	*id = (unsigned)v;
	return true;
}

static int parse_unix_mode(struct quilld_config *cfg, const char *val, const char *where)
{
	char *end;
	unsigned long v = strtoul(val, &end, 8);

	if (!*val || *end || v == 0 || v > 0777 || (v & 0200) == 0) {
		fprintf(stderr, "quilld: %s: nbd-unix-mode = '%s': expected octal permissions like "
			"0600 or 0660, with write for the owner (connecting needs write)\n", where,
			val);
		return -EINVAL;
	}
	cfg->nbd_unix_mode = (unsigned)v;
	return 0;
}

static int parse_flag_value(const char *val, bool *out)
{
	static const char *const yes[] = { "", "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (strcmp(val, yes[i]) == 0)
			return *out = true, 0;
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (strcmp(val, no[i]) == 0)
			return *out = false, 0;
	return -EINVAL;
}

/* Who may attach over NBD: the unix socket's owner, group and mode, TLS. */
static int apply_nbd_access(struct quilld_config *cfg, const char *key, const char *val,
			    const char *where)
{
	unsigned id;

	if (strcmp(key, "nbd-unix-mode") == 0)
		return parse_unix_mode(cfg, val, where);
	if (strcmp(key, "nbd-unix-owner") == 0 || strcmp(key, "nbd-unix-group") == 0) {
		bool group = strcmp(key, "nbd-unix-group") == 0;

		if (!parse_id(val, group, &id)) {
			fprintf(stderr, "quilld: %s: %s = '%s': no such %s\n", where, key, val,
				group ? "group" : "user");
			return -EINVAL;
		}
		if (group) {
			cfg->nbd_unix_gid = (gid_t)id;
			cfg->nbd_unix_set_group = true;
		} else {
			cfg->nbd_unix_uid = (uid_t)id;
			cfg->nbd_unix_set_owner = true;
		}
		return 0;
	}
	if (strcmp(key, "nbd-tls") == 0 && nbd_tls_mode_parse(val, &cfg->nbd_tls) < 0) {
		fprintf(stderr, "quilld: %s: nbd-tls = '%s': expected off, on or require\n", where,
			val);
		return -EINVAL;
	}
	if (strcmp(key, "nbd-tls-verify-peer") == 0 &&
	    parse_flag_value(val, &cfg->nbd_tls_verify_peer) < 0) {
		fprintf(stderr, "quilld: %s: nbd-tls-verify-peer = '%s': expected yes or no\n",
			where, val);
		return -EINVAL;
	}
	return 0;
}

/* Settings that only make sense together. */
static int check_nbd_access(const struct quilld_config *cfg)
{
	const char *why = NULL;

	if (!cfg->nbd_unix[0] && (cfg->nbd_unix_mode || cfg->nbd_unix_set_owner ||
				  cfg->nbd_unix_set_group))
		why = "nbd-unix-mode, -owner and -group need a socket (nbd-unix)";
	else if (cfg->nbd_tls == NBD_TLS_OFF &&
		 (cfg->nbd_tls_psk_file[0] || cfg->nbd_tls_x509_dir[0]))
		why = "TLS credentials are given but nbd-tls is off (on or require)";
	else if (cfg->nbd_tls != NBD_TLS_OFF && !cfg->nbd_tls_psk_file[0] &&
		 !cfg->nbd_tls_x509_dir[0])
		why = "nbd-tls needs nbd-tls-psk-file or nbd-tls-x509-dir";
	else if (cfg->nbd_tls_psk_file[0] && cfg->nbd_tls_x509_dir[0])
		why = "nbd-tls-psk-file and nbd-tls-x509-dir exclude each other";
	else if (cfg->nbd_tls_verify_peer && !cfg->nbd_tls_x509_dir[0])
		why = "nbd-tls-verify-peer needs X.509 (nbd-tls-x509-dir)";
	else if (cfg->nbd_tls != NBD_TLS_OFF && !cfg->nbd_addr[0])
		why = "nbd-tls is for TCP, and nbd-addr is \"\" (no TCP listener)";
	if (why)
		fprintf(stderr, "quilld: %s\n", why);
	return why ? -EINVAL : 0;
}

/* "VOL=SOCKET", one more vhost-user-blk export at start. */
static int add_vhost(struct quilld_config *cfg, const char *val, const char *where)
{
	const char *eq = strchr(val, '=');

	if (!eq || eq == val || !eq[1] || strlen(val) >= CONFIG_PATH_MAX) {
		fprintf(stderr, "quilld: %s: vhost = '%s': expected VOLUME=SOCKET_PATH\n", where, val);
		return -EINVAL;
	}
	if (cfg->nvhost >= CONFIG_VHOST_MAX) {
		fprintf(stderr, "quilld: %s: more than %d vhost exports\n", where, CONFIG_VHOST_MAX);
		return -EINVAL;
	}
	strcpy(cfg->vhost[cfg->nvhost++], val);
	return 0;
}

/* Stores the value in its field; the setting's check comes after, in apply(). */
static int set_value(struct quilld_config *cfg, const struct setting *s, const char *val,
		     const char *where)
{
	char *field = (char *)cfg + s->off;
	uint64_t v;

	switch (s->kind) {
	case SET_VHOST:
		return add_vhost(cfg, val, where);
	case SET_NBD_ACCESS:
		return apply_nbd_access(cfg, s->key, val, where);
	case SET_FLAG:
		if (parse_flag_value(val, (bool *)(void *)field) == 0)
			return 0;
		fprintf(stderr, "quilld: %s: %s = '%s': expected yes or no\n", where, s->key, val);
		return -EINVAL;
	case SET_PATH:
	case SET_STR:
		if (strlen(val) >= s->cap) {
			fprintf(stderr, "quilld: %s: %s is too long\n", where, s->key);
			return -EINVAL;
		}
		strcpy(field, val);
		return 0;
	default:
		break;
	}
	if (units_parse_size(val, &v) < 0 ||
	    (s->kind == SET_U16 && v > UINT16_MAX) || (s->kind == SET_UINT && v > UINT32_MAX)) {
		fprintf(stderr, "quilld: %s: %s = '%s' is not a valid number or size%s\n", where,
			s->key, val, s->kind == SET_U16 ? " (65535 at most)" : "");
		return -EINVAL;
	}
	if (s->kind == SET_SIZE)
		*(uint64_t *)(void *)field = v;
	else if (s->kind == SET_U16)
		*(uint16_t *)(void *)field = (uint16_t)v;
	else
		*(uint32_t *)(void *)field = (uint32_t)v;
	return 0;
}

static int apply(struct quilld_config *cfg, const char *key, const char *val, const char *where)
{
	const struct setting *s = find_setting(key);
	const char *bad;

	if (!s) {
		fprintf(stderr, "quilld: %s: unknown setting '%s' (see --help)\n", where, key);
		return -EINVAL;
	}
	if (s->flag_only && strcmp(where, CMDLINE) != 0) {
		fprintf(stderr, "quilld: %s: %s is a flag for one start (--%s), not a config file "
			"setting\n", where, key, key);
		return -EINVAL;
	}
	if (set_value(cfg, s, val, where) < 0)
		return -EINVAL;
	bad = s->check ? s->check(cfg) : NULL;
	if (bad) {
		fprintf(stderr, "quilld: %s: %s = '%s': %s\n", where, key, val, bad);
		return -EINVAL;
	}
	return 0;
}

/* The rules between settings, once all are known. */
static int check_all(const struct quilld_config *cfg)
{
	uint64_t seg = cfg->segment_size ? cfg->segment_size : DEFAULT_SEGMENT;
	uint64_t min = STORE_RESERVED + 4 * seg;

	if (cfg->rebuild_meta && cfg->format) {
		fprintf(stderr, "quilld: --rebuild-meta reads the store that is there; it does not go "
			"with --format\n");
		return -EINVAL;
	}
	if (cfg->rebuild_meta && cfg->etcd_endpoints[0]) {
		/* its reconciliation would take every segment record its rebuilt log lacks
		 * (encoded segments whose local copy went, adopted remote entries) for one
		 * freed while its delete could not be recorded, and delete it everywhere */
		fprintf(stderr, "quilld: --rebuild-meta rebuilds a single node's metadata from "
			"its store alone; a cluster node's store does not hold all that its "
			"metadata names (segments kept only on other nodes or as fragments, copies "
			"held for other owners), and a node rebuilt that way would delete the "
			"segments it lacks. Take the node out instead (quill node out ID: its "
			"volumes are taken over and its copies rebuilt elsewhere), then start it "
			"again with a blank store\n");
		return -EINVAL;
	}
	if (cfg->destroy_data && !cfg->format) {
		fprintf(stderr, "quilld: --destroy-data goes with --format (and only then)\n");
		return -EINVAL;
	}
	if (!cfg->peer_listen[0] != !cfg->peer_secret[0]) {
		fprintf(stderr, "quilld: peer-listen and peer-secret go together (the listener "
			"lets in only the nodes that prove the secret)\n");
		return -EINVAL;
	}
	if (!cfg->nbd_addr[0] && !cfg->nbd_unix[0]) {
		fprintf(stderr, "quilld: no NBD listener: nbd-addr is \"\" and nbd-unix is not set "
			"(give one of them)\n");
		return -EINVAL;
	}
	if (!cfg->etcd_endpoints[0] && (cfg->etcd_credentials[0] || cfg->node_id[0] ||
					 cfg->failure_domain[0] || cfg->peer_addr[0])) {
		fprintf(stderr, "quilld: etcd-credentials, node-id, failure-domain and peer-addr "
			"are cluster settings: give etcd-endpoints too\n");
		return -EINVAL;
	}
	if (cfg->store_size && cfg->store_size < min) {
		fprintf(stderr, "quilld: store-size = %" PRIu64 ": too small for 4 segments of "
			"%" PRIu64 " bytes after the first 1 MiB: at least %" PRIu64 " (%" PRIu64
			"M)\n", cfg->store_size, seg, min, (min + (1u << 20) - 1) >> 20);
		return -EINVAL;
	}
	return 0;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	if (e - s >= 2 && *s == '"' && e[-1] == '"') {
		e[-1] = '\0';
		s++;
	}
	return s;
}

static int load_file(struct quilld_config *cfg, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[8192], where[CONFIG_PATH_MAX + 32];
	unsigned lineno = 0;
	int r = 0;

	if (!f) {
		fprintf(stderr, "quilld: cannot read config %s: %s\n", path, err_str(errno));
		return -EINVAL;
	}
	while (r == 0 && fgets(line, sizeof(line), f)) {
		char *eq, *key = trim(line);

		lineno++;
		if (*key == '\0' || *key == '#')
			continue;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		eq = strchr(key, '=');
		if (!eq) {
			fprintf(stderr, "quilld: %s: expected 'key = value'\n", where);
			r = -EINVAL;
			break;
		}
		*eq = '\0';
		r = apply(cfg, trim(key), trim(eq + 1), where);
	}
	fclose(f);
	return r;
}

static void usage(void)
{
	printf("usage: quilld [--config FILE] [--KEY=VALUE ...]\n\n"
	       "Runs one quill node: a store, its volumes, their NBD exports and a control\n"
	       "socket for `quill`. A config file holds 'KEY = VALUE' lines with the same keys;\n"
	       "flags override it. Sizes take K, M, G, T suffixes (binary).\n\n");
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		printf("  --%-19s %s\n", settings[i].key, settings[i].help);
	printf("\nA new store file is formatted at its first start. A store that is not blank\n"
	       "(no valid superblock, but something on it) is never formatted without --format;\n"
	       "one holding a quill log needs --format --destroy-data.\n");
	printf("\nWith etcd-endpoints the node joins a cluster (docs/cluster.md): it registers\n"
	       "under a lease of lease-ttl seconds and completes client I/O only while that\n"
	       "lease is valid (while etcd cannot be reached, I/O waits; it is not failed).\n");
	printf("\nSIGTERM or SIGINT stops the node cleanly (flush, checkpoint).\n");
}

static void set_defaults(struct quilld_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->data_dir, "./data");
	strcpy(cfg->nbd_addr, "127.0.0.1");
	cfg->nbd_port = 10809;
	/* per-source bounds stay 0: their default, capped at the total */
	cfg->nbd_limits = (struct nbd_server_limits){
		.max_handshakes = NBD_DEFAULT_MAX_HANDSHAKES,
		.max_clients = NBD_DEFAULT_MAX_CLIENTS,
		.handshake_timeout_ms = NBD_DEFAULT_HANDSHAKE_TIMEOUT_MS,
		.request_timeout_ms = NBD_DEFAULT_REQUEST_TIMEOUT_MS,
		.request_mem = NBD_DEFAULT_REQUEST_MEM,
	};
	strcpy(cfg->log_level, "info");
	strcpy(cfg->etcd_prefix, "/quill/default/");
	cfg->lease_ttl = 10;
	cfg->peer_timeout_ms = 1000;
	cfg->catchup_mbps = CATCHUP_DEFAULT_MBPS;
	cfg->catchup_client_share = CATCHUP_DEFAULT_CLIENT_SHARE;
	cfg->catchup_segments = CATCHUP_DEFAULT_INFLIGHT;
	cfg->scrub_interval_s = 86400;
	cfg->out_after = 600;
	cfg->sync_size = ENGINE_SYNC_BYTES_DEFAULT;
	cfg->prezero = true;
	cfg->idle_defrag = true;
	cfg->poll_us = ENGINE_POLL_US_DEFAULT;
	control_default_socket(cfg->control, sizeof(cfg->control));
}

static int derive_paths(struct quilld_config *cfg)
{
	int n = 0;

	if (!cfg->store[0])
		n = snprintf(cfg->store, sizeof(cfg->store), "%s/store.img", cfg->data_dir);
	if (n >= 0 && (size_t)n < sizeof(cfg->store) && !cfg->meta[0])
		n = snprintf(cfg->meta, sizeof(cfg->meta), "%s/meta", cfg->data_dir);
	if (n < 0 || (size_t)n >= sizeof(cfg->meta)) {
		fprintf(stderr, "quilld: data-dir path is too long\n");
		return -EINVAL;
	}
	return 0;
}

/* The NBD limits (set_defaults fills them, so a 0 was asked for): none may be 0 but
 * the per-source bounds (0: the default, at most the total), a per-source bound may
 * not exceed its total, one largest request must fit. Checked here so that a bad
 * value stops quilld before it creates anything. */
static int check_nbd_limits(const struct nbd_server_limits *l)
{
	static const struct {
		const char *key;
		size_t off;
	} counts[] = {
		{ "nbd-max-handshakes", offsetof(struct nbd_server_limits, max_handshakes) },
		{ "nbd-max-clients", offsetof(struct nbd_server_limits, max_clients) },
		{ "nbd-handshake-timeout-ms", offsetof(struct nbd_server_limits, handshake_timeout_ms) },
		{ "nbd-request-timeout-ms", offsetof(struct nbd_server_limits, request_timeout_ms) },
	};

	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		if (*(const unsigned *)(const void *)((const char *)l + counts[i].off) == 0) {
			fprintf(stderr, "quilld: %s must be at least 1\n", counts[i].key);
			return -EINVAL;
		}
	}
	if (l->max_handshakes_per_source > l->max_handshakes) {
		fprintf(stderr, "quilld: nbd-max-handshakes-per-source (%u) is above "
			"nbd-max-handshakes (%u)\n", l->max_handshakes_per_source, l->max_handshakes);
		return -EINVAL;
	}
	if (l->max_clients_per_source > l->max_clients) {
		fprintf(stderr, "quilld: nbd-max-clients-per-source (%u) is above nbd-max-clients "
			"(%u)\n", l->max_clients_per_source, l->max_clients);
		return -EINVAL;
	}
	if (l->request_mem < NBD_MIN_REQUEST_MEM) {
		fprintf(stderr, "quilld: nbd-request-mem must be at least %lluM (one request of "
			"32 MiB and what the others need)\n",
			(unsigned long long)(NBD_MIN_REQUEST_MEM >> 20));
		return -EINVAL;
	}
	return 0;
}

/* "--key=value" or "--key value"; returns how many argv slots it used, or <0. */
static int parse_flag(struct quilld_config *cfg, int argc, char **argv, int i)
{
	char key[64];
	const char *arg = argv[i] + 2, *eq = strchr(arg, '=');
	size_t klen = eq ? (size_t)(eq - arg) : strlen(arg);

	if (klen >= sizeof(key)) {
		fprintf(stderr, "quilld: unknown flag %s\n", argv[i]);
		return -EINVAL;
	}
	memcpy(key, arg, klen);
	key[klen] = '\0';
	if (eq)
		return apply(cfg, key, eq + 1, CMDLINE) < 0 ? -EINVAL : 1;
	if (find_setting(key) && find_setting(key)->kind == SET_FLAG)
		return apply(cfg, key, "", CMDLINE) < 0 ? -EINVAL : 1; /* --format alone */
	if (i + 1 >= argc) {
		fprintf(stderr, "quilld: --%s needs a value\n", key);
		return -EINVAL;
	}
	return apply(cfg, key, argv[i + 1], CMDLINE) < 0 ? -EINVAL : 2;
}

int config_load(struct quilld_config *cfg, int argc, char **argv)
{
	set_defaults(cfg);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage();
			return 1;
		}
		if (strcmp(argv[i], "--config") == 0 || strncmp(argv[i], "--config=", 9) == 0) {
			const char *path = argv[i][8] == '=' ? argv[i] + 9 : (i + 1 < argc ? argv[++i] : NULL);
			if (!path || load_file(cfg, path) < 0)
				return -EINVAL;
		}
	}
	for (int i = 1; i < argc;) {
		int used;

		if (strncmp(argv[i], "--config", 8) == 0) {
			i += argv[i][8] == '=' ? 1 : 2;
			continue;
		}
		if (strncmp(argv[i], "--", 2) != 0) {
			fprintf(stderr, "quilld: unexpected argument '%s' (see --help)\n", argv[i]);
			return -EINVAL;
		}
		used = parse_flag(cfg, argc, argv, i);
		if (used < 0)
			return -EINVAL;
		i += used;
	}
	if (derive_paths(cfg) < 0 || check_nbd_access(cfg) < 0 ||
	    check_nbd_limits(&cfg->nbd_limits) < 0)
		return -EINVAL;
	return check_all(cfg);
}
