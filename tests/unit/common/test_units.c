/* tests/unit/common/test_units.c — size parsing and formatting. */
#include <criterion/criterion.h>
#include <errno.h>

#include "common/units.h"

static uint64_t parse_ok(const char *s)
{
	uint64_t v = 0;
	cr_assert_eq(units_parse_size(s, &v), 0, "parsing \"%s\"", s);
	return v;
}

Test(units, parses_plain_bytes)
{
	cr_expect_eq(parse_ok("4096"), 4096);
	cr_expect_eq(parse_ok("0"), 0);
	cr_expect_eq(parse_ok("12B"), 12);
}

Test(units, parses_binary_suffixes)
{
	cr_expect_eq(parse_ok("10G"), 10ull << 30);
	cr_expect_eq(parse_ok("10GiB"), 10ull << 30);
	cr_expect_eq(parse_ok("10gb"), 10ull << 30);
	cr_expect_eq(parse_ok("512M"), 512ull << 20);
	cr_expect_eq(parse_ok("4k"), 4096);
	cr_expect_eq(parse_ok("1T"), 1ull << 40);
	cr_expect_eq(parse_ok("2 MiB"), 2ull << 20);
}

Test(units, rejects_garbage)
{
	uint64_t v;
	const char *bad[] = { "", "G", "-1", "10X", "10GG", "1.5G", "10 G B", "0x10" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(units_parse_size(bad[i], &v), -EINVAL, "\"%s\"", bad[i]);
	cr_expect_eq(units_parse_size(NULL, &v), -EINVAL);
}

Test(units, rejects_overflow)
{
	uint64_t v;

	cr_expect_eq(units_parse_size("99999999999999999999", &v), -ERANGE);
	cr_expect_eq(units_parse_size("9000000P", &v), -ERANGE);
	cr_expect_eq(units_parse_size("8E", &v), -EINVAL);
}

Test(units, formats_for_humans)
{
	char buf[32];

	cr_expect_str_eq(units_format_size(0, buf, sizeof(buf)), "0 B");
	cr_expect_str_eq(units_format_size(1000, buf, sizeof(buf)), "1000 B");
	cr_expect_str_eq(units_format_size(4096, buf, sizeof(buf)), "4 KiB");
	cr_expect_str_eq(units_format_size(10ull << 30, buf, sizeof(buf)), "10 GiB");
	cr_expect_str_eq(units_format_size(3ull << 29, buf, sizeof(buf)), "1.5 GiB");
}
