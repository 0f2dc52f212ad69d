/* tools/quilld/config.h — quilld's settings, from a config file and flags. */
#ifndef QUILL_QUILLD_CONFIG_H
#define QUILL_QUILLD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "nbd/nbd_tls.h"

#include "nbd/nbd_server.h"

#define CONFIG_PATH_MAX 4096
#define CONFIG_VHOST_MAX 16             /* --vhost VOL=SOCKET, repeatable */

struct quilld_config {
	char data_dir[CONFIG_PATH_MAX];  /* default for store, meta */
	char store[CONFIG_PATH_MAX];     /* default DATA/store.img */
	char meta[CONFIG_PATH_MAX];      /* default DATA/meta */
	uint64_t store_size;             /* 0 = not given: an existing store at its size, a
					    new file of CONFIG_DEFAULT_STORE_SIZE */
	uint32_t segment_size;           /* at format; 0 = engine default */
	char nbd_addr[64];               /* "" = no TCP; default 127.0.0.1 */
	uint16_t nbd_port;               /* default 10809 */
	char nbd_unix[CONFIG_PATH_MAX];  /* "" = none */
	unsigned nbd_unix_mode;          /* 0 = the server's default, 0600 */
	bool nbd_unix_set_owner, nbd_unix_set_group;
	uid_t nbd_unix_uid;              /* resolved from a name or a number */
	gid_t nbd_unix_gid;
	enum nbd_tls_mode nbd_tls;       /* TLS on the TCP listener; default off */
	char nbd_tls_psk_file[CONFIG_PATH_MAX];
	char nbd_tls_x509_dir[CONFIG_PATH_MAX];
	bool nbd_tls_verify_peer;
	struct nbd_server_limits nbd_limits; /* nbd-max-*, nbd-*-timeout-ms, nbd-request-mem */
	char control[CONFIG_PATH_MAX];   /* default control_default_socket() */
	unsigned checkpoint_ms;
	uint64_t sync_size;              /* background store flush after this much log; 0 = off */
	bool prezero;                    /* zeros ahead of the log (engine_opts.prezero); yes */
	bool read_defrag;                /* read reallocation (engine_opts.read_defrag); no */
	bool idle_defrag;                /* the idle defragmenter (engine_opts.idle_defrag); yes */
	unsigned poll_us;                /* engine_opts.poll_us; ENGINE_POLL_US_DEFAULT */
	bool seq_defrag;                 /* read reallocation behind sequential readers
					    (engine_opts.seq_defrag); no */
	char log_level[16];
	char vhost[CONFIG_VHOST_MAX][CONFIG_PATH_MAX]; /* "VOL=SOCKET" */
	unsigned nvhost;
	bool format;                     /* --format: format even a store that is not blank */
	bool destroy_data;               /* --destroy-data: with --format, even its log */
	bool grow;                       /* --grow: grow the store to store_size */
	bool rebuild_meta;               /* --rebuild-meta: RocksDB from the store alone */
	char peer_listen[80];            /* peer protocol listener "ADDR:PORT"; "" = none */
	char peer_secret[CONFIG_PATH_MAX]; /* the cluster secret file (mode 0600) */
	/* cluster membership (docs/cluster.md); no etcd-endpoints: a single node */
	char etcd_endpoints[1024];       /* "http://HOST:PORT[,...]" */
	char etcd_credentials[CONFIG_PATH_MAX]; /* "user = / password =" file, mode 0600 */
	char etcd_prefix[256];           /* default /quill/default/ */
	char node_id[64];                /* default: the host name */
	char failure_domain[64];         /* default: the node id */
	char peer_addr[256];             /* "HOST:PORT" published for the peer protocol */
	unsigned lease_ttl;              /* seconds; default 10 */
	unsigned peer_timeout_ms;        /* a holder silent this long is dropped; 1000 */
	unsigned catchup_mbps;           /* catch-up's budget (replication/catchup.h): the
					    ceiling of its adaptive rate; 512 */
	unsigned catchup_segments;       /* segments it copies at once; 8 */
	unsigned catchup_client_share;   /* % of their throughput clients keep while it
					    copies (replication/catchup_rate.h); 60; 0: a
					    fixed rate of catchup_mbps */
	unsigned scrub_mbps;             /* the background scrub's budget (replication/scrub.h);
					    0: none (the default) */
	unsigned scrub_interval_s;       /* between background scrub rounds; 86400 */
	unsigned out_after;              /* seconds down before a node's copies are rebuilt
					    elsewhere (docs/replication.md, "Rebuild"); 600 */
};

#define CONFIG_DEFAULT_STORE_SIZE (8ull << 30)

/* Defaults, then the file named by --config (if any), then the other flags: a flag
 * wins over the file. Every setting is checked (each has its own check in the table
 * of config.c, then the rules between settings): returns 0, 1 if --help was printed,
 * or -EINVAL with one message on stderr that names the setting and what it accepts. */
int config_load(struct quilld_config *cfg, int argc, char **argv);

#endif
