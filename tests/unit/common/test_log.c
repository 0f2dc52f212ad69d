#include "common/log.h"

#include <criterion/criterion.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Captures what is written to fd 2 into a temporary file. */
struct capture {
	int saved_fd;
	int fd;
	char path[32];
};

static void capture_start(struct capture *c)
{
	strcpy(c->path, "/tmp/quill-log-XXXXXX");
	c->fd = mkstemp(c->path);
	cr_assert_geq(c->fd, 0);
	unlink(c->path);
	c->saved_fd = dup(STDERR_FILENO);
	cr_assert_geq(c->saved_fd, 0);
	cr_assert_geq(dup2(c->fd, STDERR_FILENO), 0);
}

/* Returns the captured text, NUL-terminated; caller frees. */
static char *capture_stop(struct capture *c)
{
	off_t len;
	char *text;

	dup2(c->saved_fd, STDERR_FILENO);
	close(c->saved_fd);
	len = lseek(c->fd, 0, SEEK_END);
	cr_assert_geq(len, 0);
	text = calloc(1, (size_t)len + 1);
	cr_assert_not_null(text);
	cr_assert_eq(pread(c->fd, text, (size_t)len, 0), len);
	close(c->fd);
	return text;
}

static void assert_matches(const char *text, const char *pattern)
{
	regex_t re;

	cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	cr_assert_eq(regexec(&re, text, 0, NULL, 0), 0, "\"%s\" does not match /%s/", text,
		     pattern);
	regfree(&re);
}

Test(log, line_format)
{
	struct capture c;
	char *text;

	log_set_level(LOG_INFO);
	capture_start(&c);
	log_msg(LOG_INFO, "engine", "hello %d", 42);
	log_msg(LOG_ERROR, "meta", "trailing newline is not doubled\n");
	text = capture_stop(&c);
	assert_matches(text, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
			     "INFO  engine: hello 42\n"
			     "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z "
			     "ERROR meta: trailing newline is not doubled\n$");
	free(text);
}

Test(log, level_filters_lower_levels)
{
	struct capture c;
	char *text;

	log_set_level(LOG_WARN);
	cr_assert_eq(log_get_level(), LOG_WARN);
	capture_start(&c);
	log_msg(LOG_DEBUG, "t", "dropped");
	log_msg(LOG_INFO, "t", "dropped");
	log_msg(LOG_WARN, "t", "kept");
	text = capture_stop(&c);
	cr_assert_null(strstr(text, "dropped"));
	assert_matches(text, "^[^\n]*WARN  t: kept\n$");
	free(text);
}

/* Each Criterion test runs in a fresh process, so QUILL_LOG is read here first. */
Test(log, level_from_environment)
{
	setenv("QUILL_LOG", "debug", 1);
	cr_assert_eq(log_get_level(), LOG_DEBUG);
}

Test(log, bad_environment_level_keeps_info_and_warns)
{
	struct capture c;
	char *text;

	setenv("QUILL_LOG", "chatty", 1);
	capture_start(&c);
	cr_assert_eq(log_get_level(), LOG_INFO);
	text = capture_stop(&c);
	cr_assert_not_null(strstr(text, "QUILL_LOG=chatty"));
	free(text);
}

Test(log, long_message_is_truncated_to_one_line)
{
	struct capture c;
	char *text, *big = malloc(10000);

	cr_assert_not_null(big);
	memset(big, 'x', 9999);
	big[9999] = '\0';
	log_set_level(LOG_INFO);
	capture_start(&c);
	log_msg(LOG_INFO, "t", "%s", big);
	text = capture_stop(&c);
	assert_matches(text, "^[^\n]*xxx\\.\\.\\.\n$");
	free(text);
	free(big);
}

/* Fills one window; retries if a second boundary falls inside the burst. */
static void fill_window(struct log_ratelimit *rl, unsigned burst, unsigned extra)
{
	for (int attempt = 0; attempt < 5; attempt++) {
		long start;
		unsigned allowed = 0;

		memset(rl, 0, sizeof(*rl));
		allowed += log_ratelimit_allow(rl, burst);
		start = rl->window_start;
		for (unsigned i = 1; i < burst + extra; i++)
			allowed += log_ratelimit_allow(rl, burst);
		if (rl->window_start != start)
			continue;
		cr_assert_eq(allowed, burst);
		return;
	}
	cr_assert_fail("clock kept crossing second boundaries");
}

Test(log_ratelimit, allows_burst_then_suppresses)
{
	struct log_ratelimit rl;

	fill_window(&rl, 10, 5);
	cr_assert_eq(rl.count, 10);
	cr_assert_eq(rl.suppressed, 5);
}

Test(log_ratelimit, new_window_allows_again_and_reports_suppressed)
{
	struct log_ratelimit rl;
	struct capture c;
	char *text;

	log_set_level(LOG_INFO);
	fill_window(&rl, 3, 7);
	rl.window_start -= 1; /* as if a second had passed */
	capture_start(&c);
	cr_assert(log_ratelimit_allow(&rl, 3));
	text = capture_stop(&c);
	cr_assert_eq(rl.suppressed, 0);
	cr_assert_eq(rl.count, 1);
	assert_matches(text, "^[^\n]*WARN  log: 7 messages suppressed by rate limit\n$");
	free(text);
}

Test(log_ratelimit, zero_burst_allows_nothing)
{
	struct log_ratelimit rl = { 0 };

	cr_assert_not(log_ratelimit_allow(&rl, 0));
	cr_assert_eq(rl.suppressed, 1);
}

Test(log_ratelimit, macro_limits_a_call_site)
{
	struct capture c;
	char *text;
	int lines = 0;

	log_set_level(LOG_INFO);
	capture_start(&c);
	for (int i = 0; i < 100; i++)
		LOG_RATELIMITED(LOG_ERROR, "store", "disk error %d", i);
	text = capture_stop(&c);
	for (char *p = text; (p = strstr(p, "disk error")); p++)
		lines++;
	/* 10 per second; the loop may straddle one second boundary. */
	cr_assert(lines >= 10 && lines <= 20, "%d lines logged", lines);
	free(text);
}
