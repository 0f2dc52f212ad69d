/* tools/quill/cli.h — what the quill CLI's modules share: the parsed command line,
 * talking to the node (client.c), and the commands of the other modules.
 */
#ifndef QUILL_TOOLS_QUILL_CLI_H
#define QUILL_TOOLS_QUILL_CLI_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_NO_NODE = 3 };

struct cli {
	const char *socket;
	char default_socket[4096];
	bool json;
	bool allow_shrink;
	bool force;
	bool no_wait;
	bool orphans;         /* node held --orphans */
	bool watch;           /* cluster status --watch */
	const char *format;   /* --format raw|qcow2, or NULL */
	const char *sector_size; /* --sector-size 512|4096 (volume create, import), or NULL */
	const char *replicas; /* --replicas R (volume create in a cluster), or NULL */
	const char *ec;       /* --ec K+M (volume create in a cluster), or NULL */
	const char *epoch;    /* --epoch E (volume segment), or NULL */
	int argc;
	char **argv;          /* the words left after the options */
};

/* ---- cluster.c: the cluster, its nodes, and volumes in its map ---- */
int cmd_cluster(const struct cli *c);   /* cluster status */
int cmd_node(const struct cli *c);      /* node ls|held|out|in */
/* Adds --replicas and --ec (if given) to a volume.create request: 0, or -EINVAL
 * (said). quilld judges the code and refuses the two together. */
int cli_add_replicas(const struct cli *c, struct json_object *req);
/* volume info's "policy:" line (and for an EC volume what its sealed segments are),
 * from its "cluster" object (NULL: nothing). */
void cli_show_policy(struct json_object *c);
/* volume claim|release|segment ...: the exit code, or -ENOENT (not one of these). */
int cmd_volume_cluster(const struct cli *c);
/* " [R3 owner n1 epoch 2]" for a volume object's "cluster" ("" without), into buf. */
const char *cli_cluster_brief(struct json_object *v, char *buf, size_t len);
/* ", 3 copies" or ", DEGRADED (2 of 3 copies: why)" from a "cluster" object. */
const char *cli_copies_brief(struct json_object *c, char *buf, size_t len);
/* The holders of a replicated volume's open segments, one line each. */
void cli_show_copies(struct json_object *c);
/* "base: vm0@base (remote, owner node0)" of a clone across owners (c: "cluster"). */
void cli_show_base(struct json_object *c);
/* One line: label, then each of pol's [{policy, usable_bytes}] ("replicas 2 1.2 GiB,
 * ..."), then " of volume data (why)". quill status and cluster status. */
void cli_show_policies(struct json_object *pol, const char *label, const char *why);

/* Prints the usage to out; returns code. */
int cli_usage(FILE *out, int code);

/* ---- client.c ---- */
/* {"cmd": cmd} */
struct json_object *cli_request(const char *cmd);
void cli_add_str(struct json_object *req, const char *key, const char *val);
/* --sector-size: 0 and *out 512 or 4096 (0 when not given), or -EINVAL after saying
 * that only those two are sector sizes. */
int cli_sector_size(const struct cli *c, uint32_t *out);
/* Adds --sector-size (if given) to a volume.create request; errors as above. */
int cli_add_sector_size(const struct cli *c, struct json_object *req);
/* Sends req (consumed) and returns the answer, or NULL after printing why. */
struct json_object *cli_call(const struct cli *c, struct json_object *req);
/* Did the node say ok? If not, prints its error on stderr. */
bool cli_ok(struct json_object *ans);
/* Prints the answer (JSON, or via show for people) and frees it; returns the exit
 * status. */
int cli_finish(const struct cli *c, struct json_object *ans, void (*show)(struct json_object *));
int64_t cli_i64(struct json_object *o, const char *key);
const char *cli_str(struct json_object *o, const char *key); /* "" if absent */
bool cli_bool(struct json_object *o, const char *key);
/* Sleeps ms (through signals' interruptions). */
void cli_sleep_ms(unsigned ms);
/* A progress bar of width characters ('#' done, '-' to do) at pct percent into bar
 * (width + 1 bytes). */
void cli_bar(char *bar, unsigned width, unsigned pct);
/* A size for people ("1.5 GiB"), in a static buffer of n (0..3) slots. */
const char *cli_size(uint64_t bytes, int slot);

/* ---- snap.c ---- */
int cmd_snap(const struct cli *c);      /* snap create|ls|rm|rollback */
int cmd_clone(const struct cli *c);
int cmd_flatten(const struct cli *c);
int cmd_diff(const struct cli *c);

/* ---- scrub.c ---- */
int cmd_scrub(const struct cli *c);     /* scrub [VOL] */
/* The "scrub:" lines of a status answer's "scrub" object (NULL: nothing). */
void cli_show_scrub_status(struct json_object *s);

/* ---- vhost.c ---- */
int cmd_vhost(const struct cli *c);     /* vhost start|stop|ls */

/* ---- image.c ---- */
int cmd_export(const struct cli *c);
int cmd_import(const struct cli *c);

#endif
