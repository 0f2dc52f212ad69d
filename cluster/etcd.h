/* cluster/etcd.h — a small etcd v3 client over etcd's JSON gateway (etcd 3.4:
 * POST http://HOST:PORT/v3/...), on libcurl and json-c.
 *
 * Calls block the calling thread (each until its answer, the call timeout, or
 * etcd_interrupt()): the client is meant for the cluster's own threads, never for
 * quilld's event loop (docs/cluster.md says why). One handle belongs to one thread;
 * only etcd_interrupt() may be called from another.
 *
 * Endpoints: a call that cannot reach one endpoint tries the next, and the next
 * call starts from the one that answered. Authentication: with a user, the client
 * authenticates at its first call and sends the token in the "Authorization" header;
 * a token that etcd no longer accepts (it expired: --auth-token-ttl) is replaced
 * once per call, transparently.
 *
 * Errors (-errno, with a sentence in etcd_last_error()):
 *   -ECONNREFUSED no endpoint answered; -ETIMEDOUT the call timed out;
 *   -EACCES authentication failed or is needed; -EPERM the user may not do this;
 *   -ESTALE the revision asked for is compacted; -ENOENT etcd's "not found" (a lease);
 *   -ENOSYS the gateway path does not exist (an etcd without the v3 gateway);
 *   -EPROTO an answer that does not decode; -EREMOTEIO any other etcd error;
 *   -ECANCELED etcd_interrupt() ran; -ENOMEM.
 */
#ifndef QUILL_CLUSTER_ETCD_H
#define QUILL_CLUSTER_ETCD_H

#include <stdbool.h>
#include <stdint.h>

#include "cluster/etcd_json.h"

struct etcd;

struct etcd_opts {
	const char *endpoints; /* "http://127.0.0.1:2379[,http://...]" */
	const char *user;      /* NULL: no authentication */
	const char *password;
	unsigned timeout_ms;   /* of one call (connect included); 0: 5000 */
};

/* -EINVAL an empty endpoint list or more than ETCD_MAX_ENDPOINTS. */
#define ETCD_MAX_ENDPOINTS 16
int etcd_create(const struct etcd_opts *opts, struct etcd **out);
void etcd_destroy(struct etcd *e); /* NULL ok */

/* The timeout of the calls that follow (0: 5000 ms); the thread that makes the calls. */
void etcd_set_timeout(struct etcd *e, unsigned timeout_ms);
/* Makes the call in progress, and every later one, return -ECANCELED. Any thread. */
void etcd_interrupt(struct etcd *e);
/* The last failure, as a sentence ("" after a success). */
const char *etcd_last_error(const struct etcd *e);
/* The endpoint that answered last (or will be tried first). */
const char *etcd_endpoint(const struct etcd *e);

/* POSTs req (not consumed) to path ("/v3/kv/range"); *resp the answer (json_object_put
 * it). An error answer is turned into its -errno. */
int etcd_call(struct etcd *e, const char *path, struct json_object *req,
	      struct json_object **resp);

/* Keys from key up to range_end (NULL: key alone). */
int etcd_range(struct etcd *e, const char *key, const char *range_end, int64_t *revision,
	       struct etcd_kv **kvs, size_t *n);
int etcd_put(struct etcd *e, const char *key, const char *value, int64_t lease);
int etcd_delete(struct etcd *e, const char *key);
/* compare, success and failure are arrays (taken; NULL: empty). */
int etcd_txn(struct etcd *e, struct json_object *compare, struct json_object *success,
	     struct json_object *failure, bool *succeeded, struct json_object **resp);
int etcd_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id, int64_t *granted_ttl);
/* *ttl 0: the lease is gone (expired or revoked). */
int etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl);
int etcd_lease_revoke(struct etcd *e, int64_t id);

/* Watches [key, range_end) from start_revision: fn runs for every message with events
 * (0: go on; anything else ends the watch with that value). Returns only when the
 * watch ends: fn's value; -ESTALE with *compact_revision set when etcd has compacted
 * what the watch asked for (the caller reloads with a range, then watches from its
 * revision + 1); or an error above (the stream broke: reload as well). */
typedef int (*etcd_watch_fn)(void *arg, const struct etcd_watch_msg *msg);
int etcd_watch(struct etcd *e, const char *key, const char *range_end, int64_t start_revision,
	       etcd_watch_fn fn, void *arg, int64_t *compact_revision);

#endif
