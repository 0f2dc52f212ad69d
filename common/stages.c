/* common/stages.c — per-stage histograms of one request's time (stages.h). */
#include "common/stages.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define STAGES_BUCKETS 20 /* bucket i: [2^(i-1), 2^i) µs; 0: under 1 µs; the last: more */

struct stage_hist {
	uint64_t n, sum_ns;
	uint64_t bucket[STAGES_BUCKETS];
};

struct stage {
	const char *name;
	unsigned occurrence; /* 1: the first mark of name in a request, 2: the second… */
	struct stage_hist since_start, since_prev;
};

bool stages_on;
static struct stage stages[STAGES_MAX];
static unsigned nstages;
static uint64_t t_start, t_prev; /* ns; t_start 0: no request begun */
static const char *seen_name[STAGES_MAX]; /* names marked in this request, how often */
static unsigned seen_n[STAGES_MAX], nseen;
/* QUILL_STAGES=trail: this request's marks in order (name, ns since its start), logged
 * as one line at its end */
struct trail_mark {
	const char *name;
	uint64_t ns;
};
static bool trail_on;
static struct trail_mark trail[STAGES_TRAIL_MAX];
static unsigned ntrail;

void stages_init(void)
{
	const char *env = getenv("QUILL_STAGES");

	stages_on = env && *env && strcmp(env, "0") != 0;
	trail_on = stages_on && strcmp(env, "trail") == 0;
}

void stages_begin_slow(void)
{
	t_start = t_prev = log_clock_ns();
	nseen = 0;
	ntrail = 0;
}

/* The request's trail as one line: " name@µs" for each mark, µs since its start. */
static void trail_log(void)
{
	char line[STAGES_TRAIL_MAX * 32];
	size_t n = 0;

	for (unsigned i = 0; i < ntrail && n < sizeof(line); i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %s@%llu", trail[i].name,
				      (unsigned long long)(trail[i].ns / 1000));
	log_msg(LOG_INFO, "stages", "trail:%s", line);
}

void stages_end_slow(const char *name)
{
	stages_mark_slow(name);
	if (trail_on && t_start)
		trail_log();
	t_start = 0;
}

/* How many times name was marked in this request, this one included. */
static unsigned occurrence(const char *name)
{
	for (unsigned i = 0; i < nseen; i++)
		if (seen_name[i] == name || strcmp(seen_name[i], name) == 0)
			return ++seen_n[i];
	if (nseen == STAGES_MAX)
		return 1;
	seen_name[nseen] = name;
	seen_n[nseen] = 1;
	return seen_n[nseen++];
}

static struct stage *stage_find(const char *name, unsigned occ)
{
	for (unsigned i = 0; i < nstages; i++)
		if (stages[i].occurrence == occ &&
		    (stages[i].name == name || strcmp(stages[i].name, name) == 0))
			return &stages[i];
	if (nstages == STAGES_MAX)
		return NULL;
	stages[nstages].name = name;
	stages[nstages].occurrence = occ;
	return &stages[nstages++];
}

static void hist_add(struct stage_hist *h, uint64_t ns)
{
	uint64_t us = ns / 1000;
	unsigned b = 0;

	while (us && b < STAGES_BUCKETS - 1) {
		us >>= 1;
		b++;
	}
	h->n++;
	h->sum_ns += ns;
	h->bucket[b]++;
}

void stages_mark_slow(const char *name)
{
	struct stage *s;
	unsigned occ;
	uint64_t t;

	if (!t_start)
		return;
	occ = occurrence(name);
	s = stage_find(name, occ < STAGES_OCCURRENCES ? occ : STAGES_OCCURRENCES);
	t = log_clock_ns();
	if (trail_on && ntrail < STAGES_TRAIL_MAX) /* (also a mark with no histogram left) */
		trail[ntrail++] = (struct trail_mark){ name, t - t_start };
	if (!s)
		return;
	hist_add(&s->since_start, t - t_start);
	hist_add(&s->since_prev, t - t_prev);
	t_prev = t;
}

/* The upper bound in µs of the bucket that holds the median. */
static uint64_t hist_median_us(const struct stage_hist *h)
{
	uint64_t seen = 0;

	for (unsigned b = 0; b < STAGES_BUCKETS; b++) {
		seen += h->bucket[b];
		if (seen * 2 >= h->n)
			return (uint64_t)1 << b;
	}
	return (uint64_t)1 << (STAGES_BUCKETS - 1);
}

void stages_report(void)
{
	if (!stages_on)
		return;
	for (unsigned i = 0; i < nstages; i++) {
		const struct stage *s = &stages[i];

		if (!s->since_start.n)
			continue;
		log_msg(LOG_INFO, "stages",
			"%-20s #%u n %7llu  since start: mean %6.1f µs, median < %5llu µs;"
			"  since the previous mark: mean %6.1f µs, median < %5llu µs",
			s->name, s->occurrence, (unsigned long long)s->since_start.n,
			(double)s->since_start.sum_ns / (double)s->since_start.n / 1000.0,
			(unsigned long long)hist_median_us(&s->since_start),
			(double)s->since_prev.sum_ns / (double)s->since_prev.n / 1000.0,
			(unsigned long long)hist_median_us(&s->since_prev));
	}
}
