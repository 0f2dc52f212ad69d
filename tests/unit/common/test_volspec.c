/* tests/unit/common/test_volspec.c — the one parser of "VOL" and "VOL@SNAP". */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/volspec.h"

static char vol[VOLSPEC_NAME_MAX + 1], snap[VOLSPEC_NAME_MAX + 1];

static int parse(const char *spec)
{
	strcpy(vol, "untouched");
	strcpy(snap, "untouched");
	return volspec_parse(spec, vol, snap);
}

Test(volspec, volume_alone)
{
	cr_assert_eq(parse("vm0"), 0);
	cr_assert_str_eq(vol, "vm0");
	cr_assert_str_eq(snap, "");
}

Test(volspec, volume_and_snapshot)
{
	cr_assert_eq(parse("vm0@base-1.2"), 0);
	cr_assert_str_eq(vol, "vm0");
	cr_assert_str_eq(snap, "base-1.2");
}

Test(volspec, refuses_empty_parts_and_second_at)
{
	const char *bad[] = { "", "@", "@s1", "vm0@", "vm0@a@b", "vm0@@b" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(parse(bad[i]), -EINVAL, "'%s' accepted", bad[i]);
		cr_expect_str_eq(vol, "untouched", "'%s' wrote vol", bad[i]);
		cr_expect_str_eq(snap, "untouched", "'%s' wrote snap", bad[i]);
	}
	cr_expect_eq(volspec_parse(NULL, vol, snap), -EINVAL);
}

Test(volspec, name_lengths)
{
	char name[VOLSPEC_NAME_MAX + 2], spec[2 * sizeof(name) + 2];

	memset(name, 'x', VOLSPEC_NAME_MAX);
	name[VOLSPEC_NAME_MAX] = '\0';
	snprintf(spec, sizeof(spec), "%s@%s", name, name); /* the longest valid spec */
	cr_assert_eq(strlen(spec), VOLSPEC_MAX);
	cr_assert_eq(parse(spec), 0);
	cr_assert_str_eq(vol, name);
	cr_assert_str_eq(snap, name);
	strcat(name, "y"); /* one too long, either side */
	cr_expect_eq(parse(name), -EINVAL);
	snprintf(spec, sizeof(spec), "%s@s", name);
	cr_expect_eq(parse(spec), -EINVAL);
	snprintf(spec, sizeof(spec), "v@%s", name);
	cr_expect_eq(parse(spec), -EINVAL);
}

Test(volspec, format_round_trips)
{
	char buf[VOLSPEC_MAX + 1];

	cr_assert_str_eq(volspec_format(buf, sizeof(buf), "vm0", "s1"), "vm0@s1");
	cr_assert_str_eq(volspec_format(buf, sizeof(buf), "vm0", ""), "vm0");
	cr_assert_str_eq(volspec_format(buf, sizeof(buf), "vm0", NULL), "vm0");
	cr_assert_eq(parse(volspec_format(buf, sizeof(buf), "a", "b")), 0);
	cr_assert_str_eq(vol, "a");
	cr_assert_str_eq(snap, "b");
}
