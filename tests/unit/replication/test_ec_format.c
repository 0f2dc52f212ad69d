/* tests/unit/replication/test_ec_format.c — replication/ec_format.c: the fragment
 * header (round trip, every check of the decoder) and the per-block CRC table. */
#include "replication/ec_format.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"

static struct ec_frag_info sample(void)
{
	struct ec_frag_info f = { 0 };

	cr_assert_eq(ec_geom_init(&f.geom, 4, 2, 1023), 0);
	f.index = 5;
	f.family = 0x1122334455667788ull;
	f.seq = 42;
	f.frag_crc = 0xdeadbeef;
	f.table_crc = 0x01020304;
	f.epoch = 7;
	return f;
}

Test(ec_format, header_round_trip)
{
	uint8_t buf[64];
	struct ec_frag_info f = sample(), d;

	ec_frag_hdr_encode(&f, buf);
	cr_assert_eq(ec_frag_hdr_decode(buf, sizeof(buf), &d), 0);
	cr_assert_eq(d.geom.k, 4);
	cr_assert_eq(d.geom.m, 2);
	cr_assert_eq(d.geom.seg_blocks, 1023);
	cr_assert_eq(d.geom.frag_blocks, 256);
	cr_assert_eq(d.geom.pad_blocks, 1);
	cr_assert_eq(d.index, 5);
	cr_assert_eq(d.family, f.family);
	cr_assert_eq(d.seq, 42);
	cr_assert_eq(d.frag_crc, 0xdeadbeef);
	cr_assert_eq(d.table_crc, 0x01020304);
	cr_assert_eq(d.epoch, 7);
	/* fields where the spec puts them */
	cr_assert_eq(buf[12], 5);
	cr_assert_eq(buf[28], 1023 & 0xff);
	cr_assert_eq(buf[48], 7);
}

/* Re-seals the header's CRC after a field was changed, so that the field's own
 * check is what refuses it. */
static void reseal(uint8_t *buf)
{
	uint32_t crc = crc32c(buf, 60);

	memcpy(buf + 60, &crc, 4);
}

/* One damaged header: the byte at `off` set to `val` (xor when `flip`), its CRC
 * resealed or not, and what the decoder says. */
struct damage {
	size_t off;
	uint8_t val;
	bool flip, reseal;
	int want;
	const char *what;
};

Test(ec_format, header_decoder_checks_every_field)
{
	static const struct damage cases[] = {
		{ 0, 1, true, false, -EPROTO, "magic" },
		{ 8, 2, false, false, -EPROTONOSUPPORT, "version" },
		{ 20, 1, true, false, -EILSEQ, "crc" },
		{ 13, 1, false, true, -EPROTO, "reserved0" },
		{ 56, 1, false, true, -EPROTO, "reserved1" },
		{ 12, 6, false, true, -EPROTO, "index past k+m" },
		{ 10, 17, false, true, -EPROTO, "k out of range" },
		{ 11, 0, false, true, -EPROTO, "m of 0" },
		{ 32, 255, false, true, -EPROTO, "F is not ceil(L/k)" },
		{ 36, 0, false, true, -EPROTO, "pad is not k·F − L" },
	};
	uint8_t buf[64], bad[64];
	struct ec_frag_info f = sample(), d;

	ec_frag_hdr_encode(&f, buf);
	cr_assert_eq(ec_frag_hdr_decode(buf, 63, &d), -EINVAL);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct damage *c = &cases[i];

		memcpy(bad, buf, 64);
		bad[c->off] = c->flip ? bad[c->off] ^ c->val : c->val;
		if (c->reseal)
			reseal(bad);
		cr_assert_eq(ec_frag_hdr_decode(bad, 64, &d), c->want, "%s", c->what);
	}
	memcpy(bad, buf, 64);
	memset(bad + 28, 0, 4); /* L = 0 */
	reseal(bad);
	cr_assert_eq(ec_frag_hdr_decode(bad, 64, &d), -EPROTO, "empty segment");
}

Test(ec_format, crc_table_checks_one_block)
{
	enum { F = 1030 }; /* a table of two blocks */
	static uint8_t frag[F * EC_BLOCK];
	static uint8_t table[2 * EC_BLOCK];
	uint32_t tcrc;

	cr_assert_eq(ec_frag_table_blocks(F), 2);
	cr_assert_eq(ec_frag_table_blocks(1024), 1);
	cr_assert_eq(ec_frag_table_blocks(1), 1);
	for (size_t i = 0; i < sizeof(frag); i++)
		frag[i] = (uint8_t)(i * 7 + i / EC_BLOCK);
	memset(table, 0xff, sizeof(table));
	tcrc = ec_frag_table_fill(frag, F, table);
	cr_assert_eq(tcrc, crc32c(table, F * 4));
	for (size_t i = F * 4; i < sizeof(table); i++)
		cr_assert_eq(table[i], 0, "padding zeroed");
	cr_assert_eq(ec_frag_block_check(table, F, 1029, frag + 1029 * EC_BLOCK), 0);
	cr_assert_eq(ec_frag_block_check(table, F, 3, frag + 3 * EC_BLOCK), 0);
	cr_assert_eq(ec_frag_block_check(table, F, 3, frag + 4 * EC_BLOCK), -EILSEQ);
	frag[3 * EC_BLOCK + 17] ^= 4;
	cr_assert_eq(ec_frag_block_check(table, F, 3, frag + 3 * EC_BLOCK), -EILSEQ);
	cr_assert_eq(ec_frag_block_check(table, F, F, frag), -ERANGE);
}

/* A run read with only the table blocks that cover it (FRAG_READ, a local fragment
 * read): the span, and the run checked against that part of the table. */
Test(ec_format, a_run_is_checked_against_the_table_blocks_covering_it)
{
	enum { F = 2100 }; /* a table of three blocks */
	static uint8_t frag[F * EC_BLOCK];
	static uint8_t table[3 * EC_BLOCK];
	uint32_t first, count;

	for (size_t i = 0; i < sizeof(frag); i++)
		frag[i] = (uint8_t)(i * 13 + i / EC_BLOCK);
	ec_frag_table_fill(frag, F, table);
	ec_frag_table_span(0, 1, &first, &count);
	cr_assert(first == 0 && count == 1);
	ec_frag_table_span(1020, 10, &first, &count); /* CRCs 1020..1029: blocks 0 and 1 */
	cr_assert(first == 0 && count == 2);
	ec_frag_table_span(1024, 1024, &first, &count);
	cr_assert(first == 1 && count == 1);
	ec_frag_table_span(2047, 2, &first, &count);
	cr_assert(first == 1 && count == 2);
	/* blocks 2040..2059 against table blocks 1..2 only */
	cr_assert_eq(ec_frag_run_check(table + EC_BLOCK, 1, 2040, 20, frag + 2040 * EC_BLOCK), 0);
	frag[2050 * EC_BLOCK + 9] ^= 1;
	cr_assert_eq(ec_frag_run_check(table + EC_BLOCK, 1, 2040, 20, frag + 2040 * EC_BLOCK),
		     -EILSEQ);
	cr_assert_eq(ec_frag_run_check(table + EC_BLOCK, 1, 2051, 9, frag + 2051 * EC_BLOCK), 0);
}

/* The fuzzer's seeds are version 1 headers written by hand (tests/fuzz/corpus/ec_frag:
 * the fuzzer's mode byte, then the 64 bytes): they load, and the one of a 4+2 parity
 * fragment says what it was made with. */
Test(ec_format, version_1_fixtures_load)
{
	static const char *const names[] = { "data_2_1", "parity_4_2_pad", "l_below_k_8_3",
					     "max_16_4" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char path[512];
		uint8_t buf[128];
		struct ec_frag_info f;
		FILE *fp;
		size_t n;

		snprintf(path, sizeof(path), "%s/%s", QUILL_EC_CORPUS, names[i]);
		fp = fopen(path, "rb");
		cr_assert_not_null(fp, "%s", path);
		n = fread(buf, 1, sizeof(buf), fp);
		fclose(fp);
		cr_assert_eq(n, 65, "%s", path);
		cr_assert_eq(ec_frag_hdr_decode(buf + 1, 64, &f), 0, "%s", path);
		if (strcmp(names[i], "parity_4_2_pad") == 0) {
			struct ec_frag_info want = sample();
			uint8_t enc[64];

			want.frag_crc = 0x12345678;
			want.table_crc = 0x9abcdef0;
			ec_frag_hdr_encode(&want, enc);
			cr_assert(memcmp(enc, buf + 1, 64) == 0, "the fixture is sample()'s header");
		}
	}
}

/* The K+M images of a segment's stripe: data split into the images, parity encoded in
 * place, each sealed; every one verifies, and each kind of damage is caught. */
struct images {
	struct ec_geom g;
	uint8_t *img[EC_N_MAX];
	size_t bytes;
	uint8_t *seg; /* the segment they encode */
};

static void images_make(struct images *im, unsigned k, unsigned m, uint32_t blocks)
{
	struct ec_code *code;
	uint8_t *seg;

	cr_assert_eq(ec_geom_init(&im->g, k, m, blocks), 0);
	cr_assert_eq(ec_code_create(k, m, &code), 0);
	im->bytes = ec_frag_image_bytes(&im->g);
	seg = malloc((size_t)blocks * EC_BLOCK);
	cr_assert_not_null(seg);
	for (size_t i = 0; i < (size_t)blocks * EC_BLOCK; i++)
		seg[i] = (uint8_t)(i * 13 + i / EC_BLOCK);
	for (unsigned i = 0; i < k + m; i++) {
		im->img[i] = malloc(im->bytes); /* any content: ec_stripe_images fills it */
		cr_assert_not_null(im->img[i]);
		memset(im->img[i], 0xee, im->bytes);
	}
	cr_assert_eq(ec_stripe_images(code, &im->g, seg, 0x1f, 3, 2, im->img), 0);
	im->seg = seg;
	ec_code_destroy(code);
}

static void images_free(struct images *im)
{
	for (unsigned i = 0; i < im->g.k + im->g.m; i++)
		free(im->img[i]);
	free(im->seg);
}

/* The owner's encoding: the data fragments of the images are the segment, cut; any
 * one of them lost (or M) comes back from the others, byte for byte; a code that is
 * not the geometry's is refused. */
Test(ec_format, stripe_images_carry_the_segment_and_rebuild_a_lost_one)
{
	struct images im;
	struct ec_code *code;
	uint8_t *frags[EC_N_MAX], *seg_back, *saved;
	uint32_t crcs[EC_N_MAX], lost = 0;
	struct ec_frag_info f;
	size_t off, fb;

	images_make(&im, 4, 2, 1030);
	off = ec_frag_data_offset(&im.g);
	fb = ec_geom_frag_bytes(&im.g);
	for (unsigned i = 0; i < 6; i++) {
		cr_assert_eq(ec_frag_verify(im.img[i], im.bytes, &f), 0);
		cr_assert_eq(f.family, 0x1f);
		cr_assert_eq(f.seq, 3);
		cr_assert_eq(f.epoch, 2);
		frags[i] = im.img[i] + off;
		crcs[i] = f.frag_crc;
	}
	seg_back = malloc((size_t)1030 * EC_BLOCK);
	cr_assert_not_null(seg_back);
	ec_stripe_join(&im.g, frags, seg_back);
	cr_assert_eq(memcmp(seg_back, im.seg, (size_t)1030 * EC_BLOCK), 0);
	/* fragments 1 and 4 lost: rebuilt from the four others */
	saved = malloc(fb);
	cr_assert_not_null(saved);
	memcpy(saved, frags[1], fb);
	memset(frags[1], 0, fb);
	memset(frags[4], 0, fb);
	cr_assert_eq(ec_code_create(4, 2, &code), 0);
	cr_assert_eq(ec_stripe_repair(code, &im.g, frags, crcs, (1u << 1) | (1u << 4), &lost), 0);
	cr_assert_eq(lost, (1u << 1) | (1u << 4));
	cr_assert_eq(memcmp(frags[1], saved, fb), 0);
	cr_assert_eq(ec_frag_verify(im.img[4], im.bytes, &f), 0, "parity 4 rebuilt whole");
	ec_code_destroy(code);
	cr_assert_eq(ec_code_create(2, 1, &code), 0);
	cr_assert_eq(ec_stripe_images(code, &im.g, im.seg, 1, 1, 1, im.img), -EINVAL);
	ec_code_destroy(code);
	free(saved);
	free(seg_back);
	images_free(&im);
}

Test(ec_format, fragment_images_verify_and_damage_is_caught)
{
	struct images im;
	struct ec_frag_info f;
	size_t off;

	images_make(&im, 4, 2, 1030); /* F = 258 */
	off = ec_frag_data_offset(&im.g);
	cr_assert_eq(off, 2 * EC_BLOCK, "a header block and one table block");
	for (unsigned i = 0; i < 6; i++) {
		cr_assert_eq(ec_frag_verify(im.img[i], im.bytes, &f), 0, "fragment %u", i);
		cr_assert_eq(f.index, i);
		cr_assert_eq(f.geom.seg_blocks, 1030);
		cr_assert_eq(f.frag_crc, crc32c(im.img[i] + off, 258 * EC_BLOCK));
	}
	cr_assert_eq(ec_frag_verify(im.img[0], im.bytes - EC_BLOCK, &f), -EINVAL, "short");
	cr_assert_eq(ec_frag_verify(im.img[0], 64, &f), -EINVAL, "a header alone");
	/* one block of the table checks one block of the data */
	cr_assert_eq(ec_frag_block_check(im.img[5] + EC_BLOCK, 258, 100,
					 im.img[5] + off + 100 * EC_BLOCK), 0);
	im.img[5][off + 100 * EC_BLOCK + 7] ^= 1;
	cr_assert_eq(ec_frag_block_check(im.img[5] + EC_BLOCK, 258, 100,
					 im.img[5] + off + 100 * EC_BLOCK), -EILSEQ);
	cr_assert_eq(ec_frag_verify(im.img[5], im.bytes, &f), -EILSEQ, "a data block");
	im.img[4][EC_BLOCK + 40] ^= 1;
	cr_assert_eq(ec_frag_verify(im.img[4], im.bytes, &f), -EILSEQ, "the table");
	im.img[3][EC_BLOCK + 258 * 4] = 1;
	cr_assert_eq(ec_frag_verify(im.img[3], im.bytes, &f), -EPROTO, "the table's padding");
	im.img[2][100] = 1;
	cr_assert_eq(ec_frag_verify(im.img[2], im.bytes, &f), -EPROTO, "the header's padding");
	im.img[1][20] ^= 1;
	cr_assert_eq(ec_frag_verify(im.img[1], im.bytes, &f), -EILSEQ, "the header");
	images_free(&im);
}

/* A scrub's check of an image where it is kept: each block's CRC as it is, the blocks
 * that fail the table; a table (or header) that fails its own CRC makes every block bad. */
Test(ec_format, scrub_of_an_image_names_the_blocks_that_fail)
{
	struct images im;
	uint32_t crcs[258], bad[258], nbad, crc;
	size_t off;

	images_make(&im, 4, 2, 1030); /* F = 258 */
	off = ec_frag_data_offset(&im.g);
	cr_assert_eq(ec_frag_scrub(im.img[1], im.bytes, &im.g, 1, crcs, bad, &nbad, &crc), 0);
	cr_assert_eq(nbad, 0);
	cr_assert_eq(crc, crc32c(im.img[1] + off, 258 * EC_BLOCK));
	cr_assert_eq(crcs[7], crc32c(im.img[1] + off + 7 * EC_BLOCK, EC_BLOCK));
	im.img[1][off + 7 * EC_BLOCK + 3] ^= 1;
	im.img[1][off + 200 * EC_BLOCK] ^= 1;
	cr_assert_eq(ec_frag_scrub(im.img[1], im.bytes, &im.g, 1, crcs, bad, &nbad, &crc), 0);
	cr_assert(nbad == 2 && bad[0] == 7 && bad[1] == 200);
	cr_assert_eq(crcs[7], crc32c(im.img[1] + off + 7 * EC_BLOCK, EC_BLOCK), "as it is");
	cr_assert_eq(ec_frag_scrub(im.img[2], im.bytes, &im.g, 1, crcs, bad, &nbad, &crc), 1,
		     "not the index its holder names");
	cr_assert_eq(nbad, 258);
	im.img[3][EC_BLOCK + 8] ^= 1;
	cr_assert_eq(ec_frag_scrub(im.img[3], im.bytes, &im.g, 3, crcs, bad, &nbad, &crc), 1,
		     "the table fails its CRC");
	cr_assert_eq(nbad, 258, "nothing says what a block must be");
	cr_assert_eq(ec_frag_scrub(im.img[4], im.bytes - EC_BLOCK, &im.g, 4, crcs, bad, &nbad,
				   &crc), -EINVAL);
	images_free(&im);
}

/* The smallest stripe: one block, 2+1; its images are 3 blocks each. */
Test(ec_format, one_block_stripe_images)
{
	struct images im;
	struct ec_frag_info f;

	images_make(&im, 2, 1, 1);
	cr_assert_eq(im.bytes, 3 * EC_BLOCK);
	for (unsigned i = 0; i < 3; i++)
		cr_assert_eq(ec_frag_verify(im.img[i], im.bytes, &f), 0, "fragment %u", i);
	cr_assert_eq(f.geom.pad_blocks, 1);
	images_free(&im);
}

/* The longest segment whose fragments fit one FRAG_PUT (4095 image blocks): F = 4090
 * (a header, 4 table blocks, 4090 data blocks = 4095), so 8180 blocks at K = 2 (a
 * 32 MiB segment's 2+1 fragments, F = 4096, do not fit), 16360 at K = 4. */
Test(ec_format, the_longest_segment_whose_fragments_fit_a_put)
{
	struct ec_geom g;

	cr_assert_eq(ec_frag_max_seg_blocks(2, 4095), 8180);
	cr_assert_eq(ec_frag_max_seg_blocks(4, 4095), 16360);
	cr_assert_eq(ec_frag_max_seg_blocks(1, 3), 1, "a header, a table block, one block");
	cr_assert_eq(ec_frag_max_seg_blocks(3, 2), 0);
	cr_assert_eq(ec_frag_max_seg_blocks(2, 1026), 2 * 1024, "F = 1024: one table block");
	cr_assert_eq(ec_frag_max_seg_blocks(2, 1027), 2 * 1024, "F = 1025 needs two");
	for (unsigned k = 1; k <= 16; k++) {
		uint32_t l = ec_frag_max_seg_blocks(k, 4095);

		cr_assert_eq(ec_geom_init(&g, k, 1, l), 0);
		cr_assert_leq(ec_frag_image_bytes(&g), 4095u * EC_BLOCK, "K = %u", k);
		cr_assert_eq(ec_geom_init(&g, k, 1, l + 1), 0);
		cr_assert_gt(ec_frag_image_bytes(&g), 4095u * EC_BLOCK, "K = %u: one more", k);
	}
}
