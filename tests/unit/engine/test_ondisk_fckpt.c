/* tests/unit/engine/test_ondisk_fckpt.c — the family checkpoint blocks (MAPS, FCKPT:
 * engine/ondisk.h; docs/format.md, "Family checkpoint blocks"): each round-trips,
 * and each decoder refuses what the spec says it refuses. Planned format: nothing
 * writes these blocks yet. */
#include "engine/ondisk.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "common/crc32c.h"

static uint8_t blk[QUILL_BLOCK_SIZE];
static struct fmaps_block maps_in, maps_out;
static struct fckpt_block ck_in, ck_out;

/* Recomputes the CRC of a block whose crc field is at crc_off. */
static void reseal(size_t crc_off)
{
	uint32_t crc = 0;

	memcpy(blk + crc_off, &crc, sizeof(crc));
	crc = crc32c(blk, sizeof(blk));
	memcpy(blk + crc_off, &crc, sizeof(crc));
}

/* Five full chunks but one empty; zero entries of both kinds among them. */
static void maps_fill(void)
{
	memset(&maps_in, 0, sizeof(maps_in));
	maps_in.layer = 0x1234567890abcdefull;
	maps_in.ckpt = 7;
	maps_in.nchunks = ONDISK_FMAPS_CHUNKS;
	for (uint32_t i = 0; i < maps_in.nchunks; i++) {
		struct fmaps_chunk *c = &maps_in.chunks[i];

		c->chunk = 1000 + i * 3;
		c->nentries = i == 2 ? 0 : MAP_CHUNK_BLOCKS;
		for (uint32_t k = 0; k < c->nentries; k++)
			c->e[k] = (struct ondisk_map_entry){
				.index = (uint16_t)k, .block = (uint16_t)(k % 7 ? k + 1 : k % 2),
				.slot = k % 7 ? 40 + i : ONDISK_MAP_SLOT_ZERO,
				.crc = 0xdead0000u + k };
	}
	ondisk_fmaps_block_encode(&maps_in, blk);
}

static void expect_maps_equal(void)
{
	cr_assert_eq(maps_out.layer, maps_in.layer);
	cr_assert_eq(maps_out.ckpt, maps_in.ckpt);
	cr_assert_eq(maps_out.nchunks, maps_in.nchunks);
	for (uint32_t i = 0; i < maps_in.nchunks; i++) {
		cr_assert_eq(maps_out.chunks[i].chunk, maps_in.chunks[i].chunk);
		cr_assert_eq(maps_out.chunks[i].nentries, maps_in.chunks[i].nentries);
		cr_assert_eq(memcmp(maps_out.chunks[i].e, maps_in.chunks[i].e,
				    maps_in.chunks[i].nentries * sizeof(maps_in.chunks[i].e[0])), 0,
			     "chunk %u's entries", i);
	}
}

Test(ondisk_fckpt, maps_block_round_trips_five_chunks)
{
	maps_fill();
	cr_assert_eq(ondisk_fmaps_block_decode(blk, sizeof(blk), &maps_out), 0);
	expect_maps_equal();
}

Test(ondisk_fckpt, maps_block_refuses_short_magic_and_crc)
{
	maps_fill();
	cr_assert_eq(ondisk_fmaps_block_decode(blk, sizeof(blk) - 1, &maps_out), -EINVAL);
	blk[100] ^= 1;
	cr_assert_eq(ondisk_fmaps_block_decode(blk, sizeof(blk), &maps_out), -EILSEQ);
	blk[100] ^= 1;
	blk[0] ^= 1;
	cr_assert_eq(ondisk_fmaps_block_decode(blk, sizeof(blk), &maps_out), -ENOENT);
}

/* A header or chunk field set to v (size bytes at off), the block resealed. */
static int maps_decode_with(size_t off, uint32_t v, size_t size)
{
	maps_fill();
	memcpy(blk + off, &v, size);
	reseal(offsetof(struct ondisk_fmaps_hdr, crc));
	return ondisk_fmaps_block_decode(blk, sizeof(blk), &maps_out);
}

Test(ondisk_fckpt, maps_block_refuses_what_the_spec_refuses)
{
	const size_t hdr = sizeof(struct ondisk_fmaps_hdr);
	const size_t first_entry = hdr + sizeof(struct ondisk_fmaps_chunk);
	const size_t entry = sizeof(struct ondisk_map_entry);

	cr_assert_eq(maps_decode_with(offsetof(struct ondisk_fmaps_hdr, version), 2, 2), -EPROTO);
	cr_assert_eq(maps_decode_with(offsetof(struct ondisk_fmaps_hdr, nchunks), 0, 2), -EPROTO);
	cr_assert_eq(maps_decode_with(offsetof(struct ondisk_fmaps_hdr, nchunks), 6, 2), -EPROTO);
	cr_assert_eq(maps_decode_with(hdr + 4, MAP_CHUNK_BLOCKS + 1, 2), -EPROTO, "nentries");
	/* an index of 64, then one out of order, then a zero entry of block 2 */
	cr_assert_eq(maps_decode_with(first_entry, MAP_CHUNK_BLOCKS, 2), -EPROTO);
	cr_assert_eq(maps_decode_with(first_entry + entry, 0, 2), -EPROTO);
	cr_assert_eq(maps_decode_with(first_entry + 2, 2, 2), -EPROTO, "entry 0 is a zero entry");
	/* a chunk with no entries left is kept: it supersedes older copies */
	maps_fill();
	maps_in.nchunks = 1;
	maps_in.chunks[0].nentries = 0;
	ondisk_fmaps_block_encode(&maps_in, blk);
	cr_assert_eq(ondisk_fmaps_block_decode(blk, sizeof(blk), &maps_out), 0);
	cr_assert_eq(maps_out.chunks[0].nentries, 0, "an empty chunk is a chunk");
}

/* An END with as many runs and segments as fit. */
static void end_fill(uint32_t nruns, uint32_t nsegs)
{
	memset(&ck_in, 0, sizeof(ck_in));
	ck_in = (struct fckpt_block){ .type = ONDISK_FCKPT_END, .last = true, .family = 0xfa,
				      .ckpt = 9, .base = 8, .seq = 123456, .epoch = 3,
				      .nruns = nruns, .nsegs = nsegs };
	for (uint32_t i = 0; i < nruns; i++)
		ck_in.runs[i] = (struct ondisk_fckpt_run){ .sno = i, .block = 1, .count = 31 };
	for (uint32_t i = 0; i < nsegs; i++)
		ck_in.segs[i] = (struct ondisk_fckpt_seg){ .sno = 500 + i, .used = 256,
			.records = 1, .tombs = 2, .maps = 3, .first_seq = i * 10,
			.last_seq = i * 10 + 9 };
	ondisk_fckpt_block_encode(&ck_in, blk);
}

Test(ondisk_fckpt, end_block_round_trips_its_runs_and_segments)
{
	const uint32_t runs = 200, segs = (ONDISK_FCKPT_AREA - runs * 8) / 32;

	end_fill(runs, segs);
	cr_assert_eq(ondisk_fckpt_block_decode(blk, sizeof(blk), &ck_out), 0);
	cr_assert_eq(ck_out.type, ONDISK_FCKPT_END);
	cr_assert(ck_out.last);
	cr_assert_eq(ck_out.family, 0xfa);
	cr_assert_eq(ck_out.ckpt, 9);
	cr_assert_eq(ck_out.base, 8);
	cr_assert_eq(ck_out.seq, 123456);
	cr_assert_eq(ck_out.epoch, 3);
	cr_assert_eq(ck_out.nruns, runs);
	cr_assert_eq(ck_out.nsegs, segs);
	cr_assert_eq(memcmp(ck_out.runs, ck_in.runs, runs * sizeof(ck_in.runs[0])), 0);
	cr_assert_eq(memcmp(ck_out.segs, ck_in.segs, segs * sizeof(ck_in.segs[0])), 0);
}

Test(ondisk_fckpt, begin_block_round_trips)
{
	ck_in = (struct fckpt_block){ .type = ONDISK_FCKPT_BEGIN, .family = 1, .ckpt = 1,
				      .seq = 77, .epoch = 1 };
	ondisk_fckpt_block_encode(&ck_in, blk);
	cr_assert_eq(ondisk_fckpt_block_decode(blk, sizeof(blk), &ck_out), 0);
	cr_assert_eq(ck_out.type, ONDISK_FCKPT_BEGIN);
	cr_assert_eq(ck_out.seq, 77);
	cr_assert_eq(ck_out.nruns + ck_out.nsegs, 0);
}

static int end_decode_with(size_t off, uint64_t v, size_t size)
{
	end_fill(10, 10);
	memcpy(blk + off, &v, size);
	reseal(offsetof(struct ondisk_fckpt_hdr, crc));
	return ondisk_fckpt_block_decode(blk, sizeof(blk), &ck_out);
}

Test(ondisk_fckpt, fckpt_block_refuses_what_the_spec_refuses)
{
	end_fill(10, 10);
	cr_assert_eq(ondisk_fckpt_block_decode(blk, 100, &ck_out), -EINVAL);
	blk[4000] ^= 0x80;
	cr_assert_eq(ondisk_fckpt_block_decode(blk, sizeof(blk), &ck_out), -EILSEQ);
	blk[1] ^= 1;
	cr_assert_eq(ondisk_fckpt_block_decode(blk, sizeof(blk), &ck_out), -ENOENT);

	cr_assert_eq(end_decode_with(offsetof(struct ondisk_fckpt_hdr, version), 2, 2), -EPROTO);
	cr_assert_eq(end_decode_with(offsetof(struct ondisk_fckpt_hdr, type), 3, 1), -EPROTO);
	cr_assert_eq(end_decode_with(offsetof(struct ondisk_fckpt_hdr, type), ONDISK_FCKPT_BEGIN,
				     1), -EPROTO, "a BEGIN with runs");
	cr_assert_eq(end_decode_with(offsetof(struct ondisk_fckpt_hdr, last), 2, 1), -EPROTO);
	cr_assert_eq(end_decode_with(offsetof(struct ondisk_fckpt_hdr, family), 0, 8), -EPROTO);
	cr_assert_eq(end_decode_with(offsetof(struct ondisk_fckpt_hdr, ckpt), 0, 8), -EPROTO);
	cr_assert_eq(end_decode_with(offsetof(struct ondisk_fckpt_hdr, nsegs),
				     ONDISK_FCKPT_SEGS_MAX, 2), -EPROTO, "past the block");
	cr_assert_eq(end_decode_with(sizeof(struct ondisk_fckpt_hdr) +
				     offsetof(struct ondisk_fckpt_run, count), 0, 2), -EPROTO,
		     "a run of 0 blocks");
	cr_assert_eq(end_decode_with(offsetof(struct ondisk_fckpt_hdr, epoch), 4, 8), 0,
		     "the resealing itself keeps a good block good");
}
