/* common/units.c — see common/units.h. */
#include "common/units.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int unit_shift(const char *u, unsigned *shift)
{
	static const char units[] = "KMGTP";
	const char *p;

	if (*u == '\0' || strcasecmp(u, "B") == 0) {
		*shift = 0;
		return 0;
	}
	p = strchr(units, toupper((unsigned char)*u));
	if (!p)
		return -EINVAL;
	u++;
	if (*u == 'i')
		u++;
	if (*u == 'B' || *u == 'b')
		u++;
	if (*u != '\0')
		return -EINVAL;
	*shift = 10u * (unsigned)(p - units + 1);
	return 0;
}

int units_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	unsigned shift;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*s); s++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	while (*s == ' ')
		s++;
	if (unit_shift(s, &shift) < 0)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> 1) >> shift)
		return -ERANGE;
	v <<= shift;
	if (v > (UINT64_MAX >> 1))
		return -ERANGE;
	*out = v;
	return 0;
}

const char *units_format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *names[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	unsigned i = 0;
	uint64_t whole = bytes;

	while (whole >= 1024 && i < 6) {
		whole >>= 10;
		i++;
	}
	if (i == 0 || bytes % (1ull << (10 * i)) == 0)
		snprintf(buf, len, "%llu %s", (unsigned long long)whole, names[i]);
	else
		snprintf(buf, len, "%.1f %s", (double)bytes / (double)(1ull << (10 * i)), names[i]);
	return buf;
}
