/* common/stages.h — where the time of one request goes, for measuring by hand.
 *
 * With QUILL_STAGES=1 in the environment, a thread marks the start of a request
 * (stages_begin: the NBD request read on an owner, an append frame read on a holder)
 * and then each stage it passes (stages_mark("name")) until its end (stages_end: the
 * reply sent; marks after it count nothing): every mark adds the time since that
 * start to the stage's histogram (powers of two of µs), its count and its sum. The
 * second mark of a name in one request is a stage of its own ("#2"), and so on up to
 * STAGES_OCCURRENCES.
 * stages_report() logs one line per stage: count, mean and median since the start,
 * and the median of the time since the previous mark. At queue depth 1 a start and
 * its marks are one request; deeper, the marks mix requests (a debug tool, not a
 * metric). Without the variable every call is a test of one flag: nothing is timed.
 *
 * With QUILL_STAGES=trail, each request's marks are also logged in order at its end,
 * one line ("trail: name@µs ..." since its start, the first STAGES_TRAIL_MAX marks):
 * the path of one request, where the histograms mix paths (scripts/stages_split.py
 * splits an EC read's by where its fragment was).
 *
 * Names are static strings (compared by address, then by text); at most
 * STAGES_MAX of them, later ones are not counted. Threading: one thread (the loop's).
 */
#ifndef QUILL_COMMON_STAGES_H
#define QUILL_COMMON_STAGES_H

#include <stdbool.h>

#define STAGES_MAX 64
#define STAGES_OCCURRENCES 6 /* the 6th and later marks of a name share "#6" */
#define STAGES_TRAIL_MAX 48  /* marks of one request in its trail line */

extern bool stages_on;

/* Reads QUILL_STAGES once (quilld's start): unset, empty or "0" off; "trail" on with
 * trails; anything else on. */
void stages_init(void);
void stages_begin_slow(void);
void stages_mark_slow(const char *name);
void stages_end_slow(const char *name);

static inline void stages_begin(void)
{
	if (stages_on)
		stages_begin_slow();
}

static inline void stages_mark(const char *name)
{
	if (stages_on)
		stages_mark_slow(name);
}

static inline void stages_end(const char *name)
{
	if (stages_on)
		stages_end_slow(name);
}

/* Logs the histograms (info level, component "stages"), if on. */
void stages_report(void);

#endif
