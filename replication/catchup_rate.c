/* replication/catchup_rate.c — the catch-up's budget, adapted to the clients'
 * requests and latency (catchup_rate.h). Pure: no clock, no I/O.
 */
#include "replication/catchup_rate.h"

#define DECREASE_PCT 70u /* of the rate at most, when the clients are over their target */
#define DECREASE_MIN_PCT 25u /* ...and at least */
#define INCREASE_STEPS 32u /* the additive step: ceiling / this (at least the floor) */
#define HEADROOM_PCT 10u  /* clients this far above their share: the rate grows by a
			     quarter of itself if that is more than the step */

void catchup_rate_init(struct catchup_rate *r, uint64_t ceiling, unsigned client_share_pct)
{
	uint64_t c = ceiling ? ceiling : 1;

	*r = (struct catchup_rate){ .ceiling = c,
				    .floor = c < CATCHUP_RATE_FLOOR ? c : CATCHUP_RATE_FLOOR,
				    .share = client_share_pct > 95 ? 95 : client_share_pct,
				    .why = CATCHUP_RATE_NO_WORK };
	r->rate = r->share ? r->floor : r->ceiling;
	if (!r->share)
		r->why = CATCHUP_RATE_FIXED;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/* The last interval of a probe ended: the clients ran alone in the measured ones. */
static uint64_t probe_end(struct catchup_rate *r)
{
	bool busy = r->probe_ops >= CATCHUP_RATE_BUSY_OPS * CATCHUP_RATE_PROBE_MEASURED;

	if (busy) {
		r->base_us = r->probe_us / r->probe_ops;
		r->base_iops = r->probe_ops * 1000 / (r->probe_ms ? r->probe_ms : 1);
	}
	r->base_age_ms = 0; /* not busy: no base if none was known, and the next busy
			       interval probes again; else the old one serves */
	r->why = busy ? CATCHUP_RATE_WITHIN_SHARE : CATCHUP_RATE_CLIENTS_IDLE;
	return r->rate;
}

/* No catch-up in the interval: what the clients saw is their base. */
static void base_learn(struct catchup_rate *r, uint64_t lat, uint64_t iops)
{
	if (r->base_us && r->base_age_ms < CATCHUP_RATE_PROBE_EVERY_MS) {
		r->base_us = (3 * r->base_us + lat) / 4;
		r->base_iops = (3 * r->base_iops + iops) / 4;
	} else {
		r->base_us = lat;
		r->base_iops = iops;
	}
	r->base_age_ms = 0;
}

/* The % of their throughput the clients keep, the worse of two views: requests ended
 * per second against their base (a closed-loop client's requests may wait before the
 * block layer sees them, unread in its socket while the loop copies: only its rate
 * shows that), and their latency's (a client that asks less than it could: only its
 * latency shows what it pays). */
static unsigned kept_pct(const struct catchup_rate *r, uint64_t lat, uint64_t iops)
{
	uint64_t by_lat = lat > r->base_us ? r->base_us * 100 / lat : 100;
	uint64_t by_rate = r->base_iops && iops < r->base_iops ? iops * 100 / r->base_iops : 100;

	return (unsigned)min_u64(by_lat, by_rate);
}

/* The clients kept less than their share: the rate cut from what the copies spent
 * (if less), by kept / share, within DECREASE_MIN_PCT..DECREASE_PCT. */
static uint64_t throttled(const struct catchup_rate *r, const struct catchup_rate_sample *s)
{
	uint64_t spent = s->bytes * 1000 / (s->ms ? s->ms : 1);
	uint64_t from = s->bytes && spent < r->rate ? spent : r->rate;
	uint64_t pct = (uint64_t)r->kept_pct * 100 / r->share;

	pct = max_u64(DECREASE_MIN_PCT, min_u64(DECREASE_PCT, pct));
	return from * pct / 100;
}

/* What the rate grows by in an interval the clients kept their share: a step of the
 * ceiling; a quarter of the rate while they keep HEADROOM_PCT more. A cut takes the
 * rate to 25-70% of what the copies spent, and steps of ceiling/32 took ~7 s (28
 * intervals) back to 512 MB/s, so a 10 s job averaged ~200 MB/s of budget with its
 * clients at 72-77% of a 60% share (session 22); a quarter a time takes ~3 s. */
static uint64_t grow_step(const struct catchup_rate *r)
{
	uint64_t step = max_u64(r->floor, r->ceiling / INCREASE_STEPS);

	if (r->kept_pct >= r->share + HEADROOM_PCT)
		step = max_u64(step, r->rate / 4);
	return step;
}

uint64_t catchup_rate_tick(struct catchup_rate *r, const struct catchup_rate_sample *s)
{
	bool busy = s->ops >= CATCHUP_RATE_BUSY_OPS;
	uint64_t lat = busy ? s->busy_us / s->ops : 0;
	uint64_t iops = s->ops * 1000 / (s->ms ? s->ms : 1);

	if (!r->share)
		return r->rate;
	if (busy) {
		r->lat_us = lat;
		r->iops = iops;
	}
	r->kept_pct = 0; /* judged below, or not in this interval */
	if (r->probe_left) {
		r->was_busy = busy; /* (the copies held: a client that stops now went idle) */
		if (--r->probe_left < CATCHUP_RATE_PROBE_MEASURED) {
			r->probe_ops += s->ops;
			r->probe_us += s->busy_us;
			r->probe_ms += s->ms;
		}
		return r->probe_left ? 0 : probe_end(r);
	}
	if (!s->working) {
		r->was_busy = busy;
		if (busy)
			base_learn(r, lat, iops);
		r->why = CATCHUP_RATE_NO_WORK;
		return r->rate;
	}
	if (!busy && r->was_busy) { /* stalled behind the copies, or gone idle */
		r->was_busy = false;
		r->kept_pct = 1; /* (0 would read "not judged") */
		r->rate = max_u64(r->floor, throttled(r, s));
		r->why = CATCHUP_RATE_THROTTLED;
		return r->rate;
	}
	if (!busy) {
		r->rate = min_u64(r->ceiling, max_u64(r->floor, r->rate * 2));
		r->why = CATCHUP_RATE_CLIENTS_IDLE;
		return r->rate;
	}
	r->was_busy = true;
	r->base_age_ms += s->ms;
	if (!r->base_us || r->base_age_ms >= CATCHUP_RATE_PROBE_EVERY_MS) {
		r->probe_left = CATCHUP_RATE_PROBE_INTERVALS;
		r->probe_ops = r->probe_us = r->probe_ms = 0;
		r->why = CATCHUP_RATE_PROBING;
		return 0;
	}
	r->kept_pct = kept_pct(r, lat, iops);
	if (r->kept_pct < r->share) {
		r->rate = max_u64(r->floor, throttled(r, s));
		r->why = CATCHUP_RATE_THROTTLED;
	} else {
		r->rate = min_u64(r->ceiling, r->rate + grow_step(r));
		r->why = CATCHUP_RATE_WITHIN_SHARE;
	}
	return r->rate;
}

const char *catchup_rate_why_str(enum catchup_rate_why why)
{
	switch (why) {
	case CATCHUP_RATE_NO_WORK: return "nothing to copy";
	case CATCHUP_RATE_FIXED: return "fixed (not adaptive)";
	case CATCHUP_RATE_CLIENTS_IDLE: return "clients idle";
	case CATCHUP_RATE_WITHIN_SHARE: return "clients busy, within their share";
	case CATCHUP_RATE_THROTTLED: return "throttled: clients busy";
	case CATCHUP_RATE_PROBING: return "probing the clients alone";
	}
	return "?";
}
