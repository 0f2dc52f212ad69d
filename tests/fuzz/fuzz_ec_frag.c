/* tests/fuzz/fuzz_ec_frag.c — libFuzzer target for the erasure-coded fragment's header
 * decoder and image check (replication/ec_format.c: ec_frag_hdr_decode,
 * ec_frag_verify), as a holder or a reader meets a fragment from a hostile peer or a
 * damaged disk.
 *
 * The first input byte is a mode: bit 0 set, the header's CRC is computed afresh over
 * the input before it is decoded (so that the fuzzer reaches the field checks behind
 * the CRC, which random bytes never match); the rest is the header.
 * Besides not crashing, what the decoder accepts must hold: a code within the codec's
 * bounds, an index inside it, F = ceil(L/k) and pad = k·F − L, and the header
 * re-encoded from the decoded fields giving the very 64 bytes received (reserved
 * fields are zero and the CRC covers the rest, so there is one encoding).
 * Seeds: tests/fuzz/corpus/ec_frag/. A crash becomes a named test in
 * tests/unit/replication/test_ec_format.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "replication/ec_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
	if (!ok)
		__builtin_trap();
}

static void decode(const uint8_t *data, size_t size)
{
	struct ec_frag_info f;
	uint8_t again[sizeof(struct ec_frag_hdr)];
	const struct ec_geom *g = &f.geom;

	if (ec_frag_hdr_decode(data, size, &f) < 0)
		return;
	check(size >= sizeof(struct ec_frag_hdr));
	check(g->k >= 1 && g->k <= EC_K_MAX && g->m >= 1 && g->m <= EC_M_MAX &&
	      g->k + g->m <= EC_N_MAX);
	check(f.index < g->k + g->m);
	check(g->seg_blocks >= 1);
	check((uint64_t)g->frag_blocks * g->k >= g->seg_blocks &&
	      (uint64_t)(g->frag_blocks - 1) * g->k < g->seg_blocks);
	check(g->pad_blocks == g->frag_blocks * g->k - g->seg_blocks);
	ec_frag_hdr_encode(&f, again);
	check(memcmp(again, data, sizeof(again)) == 0);
	/* the whole image: what verifies is exactly one image of its geometry */
	if (ec_frag_verify(data, size, &f) == 0)
		check(size == ec_frag_image_bytes(&f.geom));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const size_t crc_off = offsetof(struct ec_frag_hdr, hdr_crc);
	uint8_t *copy;
	uint32_t crc;

	if (size < 1)
		return 0;
	if (!(data[0] & 1) || size - 1 < sizeof(struct ec_frag_hdr)) {
		decode(data + 1, size - 1);
		return 0;
	}
	copy = malloc(size - 1);
	if (!copy)
		return 0;
	memcpy(copy, data + 1, size - 1);
	crc = crc32c(copy, crc_off);
	for (int i = 0; i < 4; i++)
		copy[crc_off + (size_t)i] = (uint8_t)(crc >> (8 * i));
	decode(copy, size - 1);
	free(copy);
	return 0;
}
