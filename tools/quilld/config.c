/* tools/quilld/config.c — "key = value" config files and --key=value flags share
 * one table of settings. */
#include "tools/quilld/config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/units.h"
#include "tools/control_proto.h"

enum setting_kind { SET_PATH, SET_STR, SET_SIZE, SET_U16, SET_UINT, SET_VHOST };

struct setting {
	const char *key;
	enum setting_kind kind;
	size_t off;
	size_t cap; /* strings */
	const char *help;
};

#define F(field) offsetof(struct quilld_config, field)
#define CAP(field) sizeof(((struct quilld_config *)0)->field)
static const struct setting settings[] = {
	{ "data-dir", SET_PATH, F(data_dir), CAP(data_dir), "folder for the store file and metadata (./data)" },
	{ "store", SET_PATH, F(store), CAP(store), "block device or file (DATA/store.img)" },
	{ "store-size", SET_SIZE, F(store_size), 0, "size of a file store, created or grown (8G)" },
	{ "meta", SET_PATH, F(meta), CAP(meta), "RocksDB folder (DATA/meta)" },
	{ "segment-size", SET_UINT, F(segment_size), 0, "log segment size at format (4M)" },
	{ "nbd-addr", SET_STR, F(nbd_addr), CAP(nbd_addr), "NBD TCP address, \"\" for none (127.0.0.1)" },
	{ "nbd-port", SET_U16, F(nbd_port), 0, "NBD TCP port (10809)" },
	{ "nbd-unix", SET_PATH, F(nbd_unix), CAP(nbd_unix), "NBD unix socket (none)" },
	{ "control", SET_PATH, F(control), CAP(control), "control socket for `quill`" },
	{ "checkpoint-ms", SET_UINT, F(checkpoint_ms), 0, "extent map checkpoint period (5000)" },
	{ "vhost", SET_VHOST, 0, 0, "VOL=SOCKET: export VOL over vhost-user-blk (repeatable)" },
	{ "log-level", SET_STR, F(log_level), CAP(log_level), "debug, info, warn or error (info)" },
};

static const struct setting *find_setting(const char *key)
{
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		if (strcmp(settings[i].key, key) == 0)
			return &settings[i];
	return NULL;
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

static int apply(struct quilld_config *cfg, const char *key, const char *val, const char *where)
{
	const struct setting *s = find_setting(key);
	char *field;
	uint64_t v;

	if (!s) {
		fprintf(stderr, "quilld: %s: unknown setting '%s' (see --help)\n", where, key);
		return -EINVAL;
	}
	field = (char *)cfg + s->off;
	if (s->kind == SET_VHOST)
		return add_vhost(cfg, val, where);
	switch (s->kind) {
	case SET_PATH:
	case SET_STR:
		if (strlen(val) >= s->cap) {
			fprintf(stderr, "quilld: %s: %s is too long\n", where, key);
			return -EINVAL;
		}
		strcpy(field, val);
		return 0;
	default:
		break;
	}
	if (units_parse_size(val, &v) < 0 ||
	    (s->kind == SET_U16 && v > UINT16_MAX) || (s->kind == SET_UINT && v > UINT32_MAX)) {
		fprintf(stderr, "quilld: %s: %s = '%s' is not a valid number or size\n", where, key,
			val);
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
		fprintf(stderr, "quilld: cannot read config %s: %s\n", path, strerror(errno));
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
		printf("  --%-14s %s\n", settings[i].key, settings[i].help);
	printf("  --%-14s %s\n", "rebuild-meta", "rebuild the metadata folder from the store "
	       "alone (the old one, if any, is\n"
	       "                   kept as META.before-rebuild-TIME), then start");
	printf("\nSIGTERM or SIGINT stops the node cleanly (flush, checkpoint).\n");
}

static void set_defaults(struct quilld_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->data_dir, "./data");
	cfg->store_size = 8ull << 30;
	strcpy(cfg->nbd_addr, "127.0.0.1");
	cfg->nbd_port = 10809;
	strcpy(cfg->log_level, "info");
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
		return apply(cfg, key, eq + 1, "flag") < 0 ? -EINVAL : 1;
	if (i + 1 >= argc) {
		fprintf(stderr, "quilld: --%s needs a value\n", key);
		return -EINVAL;
	}
	return apply(cfg, key, argv[i + 1], "flag") < 0 ? -EINVAL : 2;
}

int config_load(struct quilld_config *cfg, int argc, char **argv)
{
	set_defaults(cfg);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--rebuild-meta") == 0) /* an action, not a setting */
			cfg->rebuild_meta = true;
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
		if (strcmp(argv[i], "--rebuild-meta") == 0) {
			i++;
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
	return derive_paths(cfg);
}
