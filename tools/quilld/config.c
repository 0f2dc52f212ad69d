/* tools/quilld/config.c — "key = value" config files and --key=value flags share
 * one table of settings. */
#include "tools/quilld/config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/units.h"
#include "tools/control_proto.h"

enum setting_kind { SET_PATH, SET_STR, SET_SIZE, SET_U16, SET_UINT, SET_VHOST, SET_NBD_ACCESS };

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
	{ "nbd-unix-mode", SET_NBD_ACCESS, 0, 0, "its permissions, octal (0600; 0660: its group too)" },
	{ "nbd-unix-owner", SET_NBD_ACCESS, 0, 0, "its owner, a user name or uid (ours; needs root)" },
	{ "nbd-unix-group", SET_NBD_ACCESS, 0, 0, "its group, a name or gid (ours)" },
	{ "nbd-tls", SET_NBD_ACCESS, 0, 0, "TLS on TCP: off, on (offered) or require (off)" },
	{ "nbd-tls-psk-file", SET_PATH, F(nbd_tls_psk_file), CAP(nbd_tls_psk_file), "TLS pre-shared keys (psktool -u USER -p FILE)" },
	{ "nbd-tls-x509-dir", SET_PATH, F(nbd_tls_x509_dir), CAP(nbd_tls_x509_dir), "TLS X.509 folder: server-cert.pem, server-key.pem, ca-cert.pem" },
	{ "nbd-tls-verify-peer", SET_NBD_ACCESS, 0, 0, "X.509: clients need a certificate of the CA: yes or no (no)" },
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

static int parse_yes_no(const char *val, bool *out)
{
	if (!strcmp(val, "yes") || !strcmp(val, "true") || !strcmp(val, "on") || !strcmp(val, "1"))
		*out = true;
	else if (!strcmp(val, "no") || !strcmp(val, "false") || !strcmp(val, "off") ||
		 !strcmp(val, "0"))
		*out = false;
	else
		return -EINVAL;
	return 0;
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
	    parse_yes_no(val, &cfg->nbd_tls_verify_peer) < 0) {
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
	if (s->kind == SET_NBD_ACCESS)
		return apply_nbd_access(cfg, key, val, where);
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
		printf("  --%-19s %s\n", settings[i].key, settings[i].help);
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
	if (check_nbd_access(cfg) < 0)
		return -EINVAL;
	return derive_paths(cfg);
}
