/* common/units.h — sizes as people write them: "10G", "512MiB", "4096". */
#ifndef QUILL_COMMON_UNITS_H
#define QUILL_COMMON_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* Parses a byte count: digits, then an optional binary unit K, M, G, T, P (with an
 * optional "i" and/or "B": 10G = 10GiB = 10 * 2^30). 0 or -EINVAL (not a size),
 * -ERANGE (over 2^63). */
int units_parse_size(const char *s, uint64_t *out);

/* Formats bytes for humans: "0 B", "4 KiB", "10 GiB", "1.5 GiB". Returns buf. */
const char *units_format_size(uint64_t bytes, char *buf, size_t len);

#endif
