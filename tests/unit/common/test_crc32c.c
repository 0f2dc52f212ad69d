#include "common/crc32c.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

Test(crc32c, standard_check_value)
{
	cr_assert_eq(crc32c("123456789", 9), 0xE3069283u);
}

Test(crc32c, empty_buffer_is_zero)
{
	cr_assert_eq(crc32c("", 0), 0u);
	cr_assert_eq(crc32c_extend(0xE3069283u, "", 0), 0xE3069283u);
}

/* RFC 3720 appendix B.4 test vectors. */
Test(crc32c, iscsi_test_vectors)
{
	unsigned char buf[32];

	memset(buf, 0, sizeof(buf));
	cr_assert_eq(crc32c(buf, sizeof(buf)), 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	cr_assert_eq(crc32c(buf, sizeof(buf)), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)i;
	cr_assert_eq(crc32c(buf, sizeof(buf)), 0x46DD794Eu);
}

Test(crc32c, extend_chains_at_every_split)
{
	const char *s = "123456789";

	for (size_t split = 0; split <= 9; split++) {
		uint32_t crc = crc32c_extend(crc32c(s, split), s + split, 9 - split);

		cr_assert_eq(crc, 0xE3069283u, "split at %zu gave %08x", split, crc);
	}
}

Test(crc32c, extend_from_zero_equals_crc32c)
{
	cr_assert_eq(crc32c_extend(0, "123456789", 9), 0xE3069283u);
}

Test(crc32c, extend_over_many_blocks)
{
	enum { BLOCK = 4096, NBLOCKS = 16 };
	unsigned char *buf = malloc(BLOCK * NBLOCKS);
	uint32_t whole, chained = 0;

	cr_assert_not_null(buf);
	for (size_t i = 0; i < BLOCK * NBLOCKS; i++)
		buf[i] = (unsigned char)(i * 2654435761u >> 24);
	whole = crc32c(buf, BLOCK * NBLOCKS);
	for (int b = 0; b < NBLOCKS; b++)
		chained = crc32c_extend(chained, buf + (size_t)b * BLOCK, BLOCK);
	cr_assert_eq(chained, whole);
	buf[BLOCK * 3 + 17] ^= 1;
	cr_assert_neq(crc32c(buf, BLOCK * NBLOCKS), whole, "a flipped bit must change the CRC");
	free(buf);
}
