/* tests/unit/cluster/fake_etcd.h — a small etcd for unit tests: the v3 JSON gateway's
 * /v3/kv/range (one key, or a range_end's keys in key order) and /v3/kv/txn (compares EQUAL on MOD, CREATE and VALUE;
 * puts), over HTTP on 127.0.0.1, served by a thread of its own. It keeps revisions as
 * etcd does (one per write, a key's mod_revision that of its last write) and counts
 * the calls, so a test can say how many reads a step made and change a key "by hand"
 * between two calls. No leases, no auth, no watch.
 */
#ifndef QUILL_TESTS_FAKE_ETCD_H
#define QUILL_TESTS_FAKE_ETCD_H

#include <stddef.h>
#include <stdint.h>

struct fake_etcd;

/* Listening; *endpoint: "http://127.0.0.1:PORT" for etcd_opts. 0 or -errno. */
int fake_etcd_start(struct fake_etcd **out, char *endpoint, size_t len);
void fake_etcd_stop(struct fake_etcd *f); /* NULL ok */

/* key = value as a write of its own (a new revision). */
void fake_etcd_put(struct fake_etcd *f, const char *key, const char *value);
/* key's value ("" if none; a static copy) and mod_revision (0 if none). */
const char *fake_etcd_value(struct fake_etcd *f, const char *key, int64_t *mod);
/* Calls served so far to path ("/v3/kv/range", "/v3/kv/txn"). */
unsigned fake_etcd_calls(struct fake_etcd *f, const char *path);

#endif
