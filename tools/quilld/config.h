/* tools/quilld/config.h — quilld's settings, from a config file and flags. */
#ifndef QUILL_QUILLD_CONFIG_H
#define QUILL_QUILLD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#define CONFIG_PATH_MAX 4096
#define CONFIG_VHOST_MAX 16             /* --vhost VOL=SOCKET, repeatable */

struct quilld_config {
	char data_dir[CONFIG_PATH_MAX];  /* default for store, meta */
	char store[CONFIG_PATH_MAX];     /* default DATA/store.img */
	char meta[CONFIG_PATH_MAX];      /* default DATA/meta */
	uint64_t store_size;             /* file stores: create/extend to this; default 8G */
	uint32_t segment_size;           /* at format; 0 = engine default */
	char nbd_addr[64];               /* "" = no TCP; default 127.0.0.1 */
	uint16_t nbd_port;               /* default 10809 */
	char nbd_unix[CONFIG_PATH_MAX];  /* "" = none */
	char control[CONFIG_PATH_MAX];   /* default control_default_socket() */
	unsigned checkpoint_ms;
	char log_level[16];
	char vhost[CONFIG_VHOST_MAX][CONFIG_PATH_MAX]; /* "VOL=SOCKET" */
	unsigned nvhost;
	bool rebuild_meta;               /* --rebuild-meta: RocksDB from the store alone */
};

/* Defaults, then the file named by --config (if any), then the other flags: a flag
 * wins over the file. Returns 0, 1 if --help was printed, or -EINVAL (with a message
 * on stderr). */
int config_load(struct quilld_config *cfg, int argc, char **argv);

#endif
