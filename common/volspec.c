/* common/volspec.c — see common/volspec.h. */
#include "common/volspec.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int volspec_parse(const char *spec, char vol[VOLSPEC_NAME_MAX + 1],
		  char snap[VOLSPEC_NAME_MAX + 1])
{
	const char *at = spec ? strchr(spec, '@') : NULL;
	size_t vlen = at ? (size_t)(at - spec) : spec ? strlen(spec) : 0;
	size_t slen = at ? strlen(at + 1) : 0;

	if (vlen == 0 || vlen > VOLSPEC_NAME_MAX)
		return -EINVAL;
	if (at && (slen == 0 || slen > VOLSPEC_NAME_MAX || strchr(at + 1, '@')))
		return -EINVAL;
	memcpy(vol, spec, vlen);
	vol[vlen] = '\0';
	memcpy(snap, at ? at + 1 : "", slen + 1);
	return 0;
}

char *volspec_format(char *buf, size_t len, const char *vol, const char *snap)
{
	if (snap && *snap)
		snprintf(buf, len, "%s@%s", vol, snap);
	else
		snprintf(buf, len, "%s", vol);
	return buf;
}
