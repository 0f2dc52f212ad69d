/* common/crc32c.h — CRC32C (Castagnoli), computed by ISA-L.
 *
 * crc32c(buf, len) is the standard CRC32C: crc32c("123456789") == 0xE3069283.
 * crc32c_extend() continues a running CRC over more bytes, so that
 * crc32c_extend(crc32c(a), b) == crc32c(a ‖ b).
 */
#ifndef QUILL_COMMON_CRC32C_H
#define QUILL_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(const void *buf, size_t len);
uint32_t crc32c_extend(uint32_t crc, const void *buf, size_t len);

#endif
