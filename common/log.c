/* common/log.c — leveled, timestamped log lines on stderr.
 *
 * Each line is formatted into one buffer and written with a single write(2), so
 * lines from different threads never interleave.
 */
#include "common/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static int current_level = LOG_INFO; /* accessed with __atomic builtins */
static pthread_once_t level_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t ratelimit_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {
	[LOG_DEBUG] = "DEBUG",
	[LOG_INFO] = "INFO",
	[LOG_WARN] = "WARN",
	[LOG_ERROR] = "ERROR",
};

static void log_emit(enum log_level level, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void level_init_from_env(void)
{
	const char *env = getenv("QUILL_LOG");

	if (!env || !*env)
		return;
	for (int l = LOG_DEBUG; l <= LOG_ERROR; l++) {
		if (strcasecmp(env, level_names[l]) == 0) {
			__atomic_store_n(&current_level, l, __ATOMIC_RELAXED);
			return;
		}
	}
	/* log_emit, not log_msg: we are inside the pthread_once that log_msg waits on. */
	log_emit(LOG_WARN, "log", "QUILL_LOG=%s is not debug|info|warn|error; using info",
		env);
}

void log_set_level(enum log_level level)
{
	pthread_once(&level_once, level_init_from_env);
	if (level > LOG_ERROR)
		level = LOG_ERROR;
	__atomic_store_n(&current_level, (int)level, __ATOMIC_RELAXED);
}

enum log_level log_get_level(void)
{
	pthread_once(&level_once, level_init_from_env);
	return (enum log_level)__atomic_load_n(&current_level, __ATOMIC_RELAXED);
}

static size_t format_timestamp(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
	return n;
}

static void log_vemit(enum log_level level, const char *component, const char *fmt,
		      va_list ap)
{
	char line[LOG_LINE_MAX];
	size_t n;
	int m;

	n = format_timestamp(line, sizeof(line));
	m = snprintf(line + n, sizeof(line) - n, " %-5s %s: ", level_names[level],
		     component ? component : "-");
	n += m > 0 ? (size_t)m : 0;
	if (n >= sizeof(line) - 5)
		n = sizeof(line) - 5;

	m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (m < 0)
		m = 0;
	if ((size_t)m >= sizeof(line) - n) {
		/* Truncated: end the line with a visible marker. */
		n = sizeof(line) - 5;
		memcpy(line + n, "...", 3);
		n += 3;
	} else {
		n += (size_t)m;
	}
	while (n > 0 && line[n - 1] == '\n')
		n--;
	line[n++] = '\n';

	/* Best effort: there is nowhere left to report a failed write to stderr. */
	for (size_t off = 0; off < n;) {
		ssize_t w = write(STDERR_FILENO, line + off, n - off);

		if (w <= 0)
			break;
		off += (size_t)w;
	}
}

static void log_emit(enum log_level level, const char *component, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(level, component, fmt, ap);
	va_end(ap);
}

void log_msg(enum log_level level, const char *component, const char *fmt, ...)
{
	va_list ap;

	if (level > LOG_ERROR)
		level = LOG_ERROR;
	if ((int)level < (int)log_get_level())
		return;
	va_start(ap, fmt);
	log_vemit(level, component, fmt, ap);
	va_end(ap);
}

uint64_t log_clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t log_clock_us(void)
{
	return log_clock_ns() / 1000u;
}

void log_thread_usage(struct log_usage *u)
{
	struct timespec ts;
	struct rusage ru;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	u->cpu_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	if (getrusage(RUSAGE_THREAD, &ru) == 0) {
		u->waits = (uint64_t)ru.ru_nvcsw;
		u->preempted = (uint64_t)ru.ru_nivcsw;
	} else {
		u->waits = u->preempted = 0;
	}
}

static long monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec;
}

bool log_ratelimit_allow(struct log_ratelimit *rl, unsigned burst)
{
	long now = monotonic_seconds();
	unsigned suppressed = 0;
	bool allow;

	pthread_mutex_lock(&ratelimit_lock);
	if (now != rl->window_start) {
		suppressed = rl->suppressed;
		rl->window_start = now;
		rl->count = 0;
		rl->suppressed = 0;
	}
	allow = rl->count < burst;
	if (allow)
		rl->count++;
	else
		rl->suppressed++;
	pthread_mutex_unlock(&ratelimit_lock);

	if (suppressed)
		log_msg(LOG_WARN, "log", "%u messages suppressed by rate limit", suppressed);
	return allow;
}
