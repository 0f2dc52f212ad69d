/* common/log.h — one line per event on stderr, with a level and a component tag.
 *
 * Libraries log through here and never print to stdout. Data-path call sites use
 * LOG_RATELIMITED so a failing disk cannot flood the log.
 */
#ifndef QUILL_COMMON_LOG_H
#define QUILL_COMMON_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Messages below this level are dropped. Default LOG_INFO, or QUILL_LOG=debug|info|warn|error. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Microseconds on the monotonic clock (the vDSO: no system call): for debug lines that
 * time an event (a slow store request, a checkpoint's steps), so that stalls can be
 * matched to causes; also the store's clock for its poll (loop.h's spin_us). */
uint64_t log_clock_us(void);
/* The same clock in nanoseconds: for times shorter than a few µs (stages.h's marks,
 * whose histograms split below 1, 2, 4 µs and whose means show tenths of a µs). */
uint64_t log_clock_ns(void);
/* The calling thread's CPU time, and how often it slept in the kernel (a system call
 * that blocked) or lost the CPU to another thread: set against log_clock_us(), whether
 * a slow step worked, blocked, or waited for a CPU (a loaded machine). */
struct log_usage {
	uint64_t cpu_us;
	uint64_t waits;     /* voluntary context switches */
	uint64_t preempted; /* involuntary ones */
};
void log_thread_usage(struct log_usage *u);

void log_msg(enum log_level level, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* True at most `burst` times per second per call site state; used by LOG_RATELIMITED. */
struct log_ratelimit {
	long window_start;
	unsigned count;
	unsigned suppressed;
};
bool log_ratelimit_allow(struct log_ratelimit *rl, unsigned burst);

#define LOG_RATELIMITED(level, component, ...)                                 \
	do {                                                                   \
		static struct log_ratelimit rl_;                               \
		if (log_ratelimit_allow(&rl_, 10))                             \
			log_msg((level), (component), __VA_ARGS__);            \
	} while (0)

#endif
