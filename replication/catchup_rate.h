/* replication/catchup_rate.h — the catch-up's budget, adapted to the clients
 * (docs/replication.md, "Adaptive rate"). Pure: fed one interval's figures at a time, it
 * answers the rate the catch-up (and the rebuild, which is a catch-up) may spend next.
 *
 * The goal (issue 13): clients keep at least half of their throughput while a rebuild
 * runs, and with no client the rebuild runs at the disk's pace. The signal is this
 * node's client requests (the block layer's, all front ends): how many ended per
 * second, and their mean latency, against the same figures with no catch-up running
 * (the base). The share of their throughput the clients keep is the worse of
 * iops / base iops (a client with a fixed number of requests in flight, fio at some
 * queue depth or a VM's queue, loses exactly that; part of its wait is in its socket,
 * unread while the loop copies, where the block layer's latency does not see it) and
 * base latency / latency (a client asking less than it could keeps its rate and pays
 * in latency). The controller keeps it at client_share_pct or more:
 *
 *   - no catch-up work: the clients' latency is the base (a moving average)
 *   - work, clients idle (fewer than CATCHUP_RATE_BUSY_OPS requests in the interval):
 *     the rate doubles towards the ceiling ("clients idle"): the disk's pace, bounded;
 *     but in the first such interval after a busy one it is cut as if they kept
 *     nothing ("throttled"): a closed-loop client whose requests all wait behind the
 *     copies ends none, and looks idle; one that really went idle costs the copies one
 *     interval
 *   - work, clients busy, no base or one older than CATCHUP_RATE_PROBE_EVERY_MS: a
 *     probe: the catch-up holds for CATCHUP_RATE_PROBE_INTERVALS intervals (the first
 *     ones let what it has in flight settle: chunks, seals, the holders' flushes; the
 *     last CATCHUP_RATE_PROBE_MEASURED measure the base), then goes on at the rate it
 *     had ("probing")
 *   - work, clients busy, keeping less than their share: the rate shrinks, never under
 *     the floor ("throttled: clients busy"), from what the copies spent in the interval
 *     when that is less than the rate (a budget above what the CPU lets them spend
 *     would take several intervals to bite), to kept / share of it (the further under
 *     their share, the deeper the cut), at most 70% and at least 25%; their share or
 *     more: the rate grows by a step (ceiling / 32, at least the floor) ("clients
 *     busy, within their share")
 * AIMD: it settles just under the clients' target, and halves its way back down fast
 * when they get busier. The catch-up never stops for long: the floor while
 * throttled, and a probe holds it for at most CATCHUP_RATE_PROBE_INTERVALS intervals
 * in every CATCHUP_RATE_PROBE_EVERY_MS of work (10%).
 *
 * Vitastor tunes its recovery from the utilisation (time busy per interval) of client
 * and recovery ops; Ceph's mClock gives each class a reservation, a weight and a limit
 * in IOPS it learns from a benchmark of the disk. This is neither: it needs no disk
 * model, only the clients' own figures, at the price of short probes.
 */
#ifndef QUILL_REPLICATION_CATCHUP_RATE_H
#define QUILL_REPLICATION_CATCHUP_RATE_H

#include <stdbool.h>
#include <stdint.h>

#define CATCHUP_RATE_INTERVAL_MS 250u
#define CATCHUP_RATE_BUSY_OPS 8u          /* client requests per interval: busy */
#define CATCHUP_RATE_PROBE_EVERY_MS 10000u /* a base older than this is measured again */
#define CATCHUP_RATE_PROBE_INTERVALS 4u
#define CATCHUP_RATE_PROBE_MEASURED 2u    /* of them, the last ones: the clients alone */
#define CATCHUP_RATE_FLOOR 8000000u       /* bytes/s, or the ceiling if lower */
#define CATCHUP_DEFAULT_CLIENT_SHARE 60u  /* % of their throughput clients keep */

enum catchup_rate_why {
	CATCHUP_RATE_NO_WORK,      /* nothing to copy: the rate waits as it was */
	CATCHUP_RATE_FIXED,        /* not adaptive (client_share_pct 0): the ceiling */
	CATCHUP_RATE_CLIENTS_IDLE, /* climbing to the ceiling */
	CATCHUP_RATE_WITHIN_SHARE, /* clients busy, their latency within the target */
	CATCHUP_RATE_THROTTLED,    /* clients busy, over it: backing off */
	CATCHUP_RATE_PROBING,      /* held a moment to measure the clients alone */
};

/* One interval's figures. */
struct catchup_rate_sample {
	uint64_t ms;      /* its length */
	uint64_t ops;     /* client requests that ended in it */
	uint64_t busy_us; /* the sum of their latencies */
	bool working;     /* the catch-up had copies under way in it */
	uint64_t bytes;   /* what they spent of the budget in it (0: not known) */
};

struct catchup_rate {
	uint64_t ceiling, floor; /* bytes per second */
	unsigned share;          /* client_share_pct; 0: fixed at the ceiling */
	uint64_t rate;           /* what the catch-up may spend now, and again after a
				    probe (which holds it: probe_left) */
	uint64_t base_us;        /* the clients' mean latency without the catch-up; 0:
				    not known */
	uint64_t base_iops;      /* ...and their requests ended per second */
	uint64_t base_age_ms;    /* the catch-up's working time since base was measured */
	uint64_t lat_us;         /* the clients' mean latency in the last busy interval */
	uint64_t iops;           /* ...and their requests ended per second in it */
	unsigned kept_pct;       /* the share they kept in the last interval (0: not
				    judged: no copies, clients idle, a probe) */
	unsigned probe_left;     /* intervals of the probe under way still to go */
	uint64_t probe_ops, probe_us, probe_ms; /* what its measured intervals saw so far */
	enum catchup_rate_why why;
	bool was_busy;           /* the clients were busy in the last interval */
};

/* ceiling: bytes per second (> 0); client_share_pct: 0 (fixed at the ceiling) to 95.
 * Starts at the floor. */
void catchup_rate_init(struct catchup_rate *r, uint64_t ceiling, unsigned client_share_pct);
/* The interval s ended: the rate for the next one (0: hold the catch-up). */
uint64_t catchup_rate_tick(struct catchup_rate *r, const struct catchup_rate_sample *s);
/* "clients idle", "throttled: clients busy", ... */
const char *catchup_rate_why_str(enum catchup_rate_why why);

#endif
