/* common/stages: QUILL_STAGES=trail logs each request's marks in order at its end. */
#include "common/stages.h"

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

/* Starts the stages with QUILL_STAGES=value, the log's stderr captured. */
static void stages_with(const char *value)
{
	cr_redirect_stderr();
	log_set_level(LOG_INFO);
	cr_assert_eq(setenv("QUILL_STAGES", value, 1), 0);
	stages_init();
}

/* What was logged so far. */
static char *logged(void)
{
	static char text[8192];
	FILE *f = cr_get_redirected_stderr();
	size_t n;

	fflush(stderr);
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	return text;
}

static bool matches(const char *text, const char *pattern)
{
	regex_t re;
	bool ok;

	cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	ok = regexec(&re, text, 0, NULL, 0) == 0;
	regfree(&re);
	return ok;
}

static void one_request(const char *first, const char *second, const char *end)
{
	stages_begin();
	stages_mark(first);
	stages_mark(second);
	stages_end(end);
}

Test(stages, a_trail_is_each_request_s_marks_in_order_at_its_end)
{
	char *text;

	stages_with("trail");
	cr_assert(stages_on);
	one_request("a.first", "a.second", "a.end");
	one_request("b.first", "b.first", "b.end");
	text = logged();
	cr_assert(matches(text, "trail: a\\.first@[0-9]+ a\\.second@[0-9]+ a\\.end@[0-9]+\n"),
		  "%s", text);
	/* a name marked twice is there twice; the second request starts a new trail */
	cr_assert(matches(text, "trail: b\\.first@[0-9]+ b\\.first@[0-9]+ b\\.end@[0-9]+\n"),
		  "%s", text);
}

Test(stages, marks_outside_a_request_are_in_no_trail)
{
	char *text;

	stages_with("trail");
	stages_mark("before");
	one_request("x", "y", "z");
	stages_mark("after");
	stages_end("after.end");
	text = logged();
	cr_assert(matches(text, "trail: x@[0-9]+ y@[0-9]+ z@[0-9]+\n"), "%s", text);
	cr_assert(!strstr(text, "before") && !strstr(text, "after"), "%s", text);
}

Test(stages, a_long_request_s_trail_keeps_its_first_marks)
{
	char *text;

	stages_with("trail");
	stages_begin();
	for (unsigned i = 0; i < STAGES_TRAIL_MAX + 10; i++)
		stages_mark(i < STAGES_TRAIL_MAX ? "kept" : "past");
	stages_end("end");
	text = logged();
	cr_assert(matches(text, "trail:( kept@[0-9]+){48}\n"), "%s", text);
	cr_assert(!strstr(text, "past"), "%s", text);
}

Test(stages, a_trail_keeps_a_mark_whose_histogram_had_no_room)
{
	static char names[STAGES_MAX][16]; /* (names must outlive their marks) */
	char *text;

	stages_with("trail");
	for (unsigned i = 0; i < STAGES_MAX; i++) { /* every histogram taken */
		snprintf(names[i], sizeof(names[i]), "filler%u", i);
		stages_begin();
		stages_mark(names[i]);
		stages_end(names[i]);
	}
	one_request("late.first", "late.second", "late.end");
	text = logged();
	cr_assert(matches(text, "trail: late\\.first@[0-9]+ late\\.second@[0-9]+ "
			  "late\\.end@[0-9]+\n"), "%s", text);
}

Test(stages, without_trail_no_trail_is_logged)
{
	stages_with("1");
	cr_assert(stages_on);
	one_request("a", "b", "c");
	cr_assert(!strstr(logged(), "trail"));
}
