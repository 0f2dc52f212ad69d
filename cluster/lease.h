/* cluster/lease.h — the arithmetic of a node's lease (docs/cluster.md, "Leases").
 *
 * A node may complete client I/O only before its lease deadline: the monotonic time
 * at which it SENT the keepalive (or grant) that etcd answered, plus the TTL etcd
 * granted, minus a margin. etcd counts the TTL from when it handled the request,
 * which is later than when it was sent, so etcd cannot expire the lease (and let
 * another node act on that) before this node stops serving — whatever the two
 * machines' wall clocks say: only this node's monotonic clock and a duration are
 * used. The margin covers the two clocks' rates drifting apart over one TTL.
 */
#ifndef QUILL_CLUSTER_LEASE_H
#define QUILL_CLUSTER_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#define LEASE_MARGIN_MIN_MS 100u

/* The margin for a TTL: a tenth of it, at least LEASE_MARGIN_MIN_MS, and never the
 * whole TTL (then half of it). */
uint64_t lease_margin_ms(int64_t ttl_s);
/* sent_ms + ttl - margin; sent_ms itself (never valid) for a TTL <= 0. */
uint64_t lease_deadline_ms(uint64_t sent_ms, int64_t ttl_s);
bool lease_valid(uint64_t deadline_ms, uint64_t now_ms);
/* When to send the next keepalive after one sent at sent_ms: a third of the TTL on,
 * so two can fail before the deadline passes. */
uint64_t lease_next_keepalive_ms(uint64_t sent_ms, int64_t ttl_s);
/* How long to wait before trying again after a failed keepalive: a tenth of the
 * TTL, between 100 ms and 1 s. */
unsigned lease_retry_ms(int64_t ttl_s);

#endif
