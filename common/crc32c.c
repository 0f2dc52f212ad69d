/* common/crc32c.c — CRC32C over ISA-L.
 *
 * ISA-L's crc32_iscsi(buf, len, init) works on the raw CRC register: it neither
 * inverts the seed on entry nor the result on exit. The standard CRC32C (seed
 * 0xFFFFFFFF, final XOR 0xFFFFFFFF) is therefore ~crc32_iscsi(buf, len, ~0), and a
 * running standard CRC continues as ~crc32_iscsi(buf, len, ~crc).
 */
#include "common/crc32c.h"

#include <isa-l/crc.h>
#include <limits.h>

uint32_t crc32c_extend(uint32_t crc, const void *buf, size_t len)
{
	/* ISA-L takes a non-const buffer it does not write, and an int length. */
	unsigned char *p = (unsigned char *)(uintptr_t)buf;
	uint32_t reg = ~crc;

	while (len > 0) {
		size_t n = len > (size_t)INT_MAX ? (size_t)1 << 30 : len;

		reg = crc32_iscsi(p, (int)n, reg);
		p += n;
		len -= n;
	}
	return ~reg;
}

uint32_t crc32c(const void *buf, size_t len)
{
	return crc32c_extend(0, buf, len);
}
