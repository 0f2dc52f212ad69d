/* cluster/lease.c — lease deadlines (lease.h). */
#include "cluster/lease.h"

uint64_t lease_margin_ms(int64_t ttl_s)
{
	uint64_t ttl_ms = ttl_s > 0 ? (uint64_t)ttl_s * 1000 : 0;
	uint64_t m = ttl_ms / 10;

	if (m < LEASE_MARGIN_MIN_MS)
		m = LEASE_MARGIN_MIN_MS;
	if (m >= ttl_ms)
		m = ttl_ms / 2;
	return m;
}

uint64_t lease_deadline_ms(uint64_t sent_ms, int64_t ttl_s)
{
	if (ttl_s <= 0)
		return sent_ms;
	return sent_ms + (uint64_t)ttl_s * 1000 - lease_margin_ms(ttl_s);
}

bool lease_valid(uint64_t deadline_ms, uint64_t now_ms)
{
	return now_ms < deadline_ms;
}

uint64_t lease_next_keepalive_ms(uint64_t sent_ms, int64_t ttl_s)
{
	return sent_ms + (ttl_s > 0 ? (uint64_t)ttl_s * 1000 / 3 : 0);
}

unsigned lease_retry_ms(int64_t ttl_s)
{
	int64_t ms = ttl_s * 100;

	return ms < 100 ? 100 : ms > 1000 ? 1000 : (unsigned)ms;
}
