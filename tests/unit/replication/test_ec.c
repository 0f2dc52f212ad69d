/* tests/unit/replication/test_ec.c — replication/ec.c: the Reed-Solomon codec (every
 * pattern of up to M lost fragments rebuilt, for several K+M), a fragment failing its
 * CRC treated as lost, and the geometry of a sealed segment's stripe (odd lengths).
 * The data is random: the seed is printed ($QUILL_TEST_SEED replays it). */
#include "replication/ec.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "testutil.h"

static uint64_t rng;

static void fill_random(uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		p[i] = (uint8_t)(rng >> 24);
	}
}

static void seed(void)
{
	rng = (uint64_t)testutil_seed() * 2654435761u + 1;
}

TestSuite(ec, .init = seed);

struct frags {
	unsigned n;
	size_t len;
	uint8_t *buf[EC_N_MAX];  /* the working copies, damaged and rebuilt */
	uint8_t *want[EC_N_MAX]; /* what encoding gave */
};

static void frags_alloc(struct frags *f, unsigned n, size_t len)
{
	f->n = n;
	f->len = len;
	for (unsigned i = 0; i < n; i++) {
		f->buf[i] = malloc(len);
		f->want[i] = malloc(len);
		cr_assert(f->buf[i] && f->want[i]);
	}
}

static void frags_free(struct frags *f)
{
	for (unsigned i = 0; i < f->n; i++) {
		free(f->buf[i]);
		free(f->want[i]);
	}
}

/* A k+m code and k+m fragments of len bytes, the data random and encoded in want[]. */
static struct ec_code *encoded(unsigned k, unsigned m, size_t len, struct frags *f)
{
	struct ec_code *code;

	cr_assert_eq(ec_code_create(k, m, &code), 0);
	frags_alloc(f, k + m, len);
	for (unsigned i = 0; i < k; i++)
		fill_random(f->want[i], len);
	ec_encode(code, len, f->want, f->want + k);
	return code;
}

/* Encodes random data with k+m, then, for every mask of at most m lost fragments,
 * overwrites the lost ones with garbage, decodes and compares all k+m. */
static void every_pattern(unsigned k, unsigned m, size_t len)
{
	struct frags f;
	struct ec_code *code = encoded(k, m, len, &f);
	unsigned n = k + m, patterns = 0;

	for (uint32_t lost = 1; lost < (1u << n); lost++) {
		if ((unsigned)__builtin_popcount(lost) > m)
			continue;
		for (unsigned i = 0; i < n; i++) {
			if (lost & (1u << i))
				memset(f.buf[i], 0xa5, len);
			else
				memcpy(f.buf[i], f.want[i], len);
		}
		cr_assert_eq(ec_decode(code, len, f.buf, lost), 0, "%u+%u lost %#x", k, m, lost);
		for (unsigned i = 0; i < n; i++)
			cr_assert(memcmp(f.buf[i], f.want[i], len) == 0,
				  "%u+%u lost %#x: fragment %u differs", k, m, lost, i);
		patterns++;
	}
	cr_log_info("%u+%u: %u loss patterns rebuilt", k, m, patterns);
	cr_assert_gt(patterns, n - 1);
	frags_free(&f);
	ec_code_destroy(code);
}

Test(ec, every_loss_pattern_2_1) { every_pattern(2, 1, 2 * EC_BLOCK); }
Test(ec, every_loss_pattern_3_2) { every_pattern(3, 2, 2 * EC_BLOCK); }
Test(ec, every_loss_pattern_4_2) { every_pattern(4, 2, EC_BLOCK); }
Test(ec, every_loss_pattern_8_3) { every_pattern(8, 3, EC_BLOCK); }
/* The largest code, and lengths that are no multiple of ISA-L's vector width. */
Test(ec, every_loss_pattern_16_4_odd_length) { every_pattern(16, 4, 1000); }
Test(ec, every_loss_pattern_3_2_tiny_length) { every_pattern(3, 2, 7); }

Test(ec, parity_is_not_a_copy_of_the_data)
{
	struct frags f;
	struct ec_code *code = encoded(2, 2, EC_BLOCK, &f);

	cr_assert(memcmp(f.want[2], f.want[3], EC_BLOCK) != 0);
	cr_assert(memcmp(f.want[2], f.want[0], EC_BLOCK) != 0);
	cr_assert(memcmp(f.want[2], f.want[1], EC_BLOCK) != 0);
	frags_free(&f);
	ec_code_destroy(code);
}

Test(ec, codes_out_of_range_are_refused)
{
	struct ec_code *code = NULL;

	cr_assert_eq(ec_code_create(0, 1, &code), -EINVAL);
	cr_assert_eq(ec_code_create(2, 0, &code), -EINVAL);
	cr_assert_eq(ec_code_create(17, 1, &code), -EINVAL);
	cr_assert_eq(ec_code_create(2, 5, &code), -EINVAL);
	cr_assert_eq(ec_code_create(16, 4, &code), 0);
	ec_code_destroy(code);
	cr_assert_eq(ec_code_create(1, 1, &code), 0);
	cr_assert_eq(ec_code_k(code), 1);
	cr_assert_eq(ec_code_m(code), 1);
	ec_code_destroy(code);
	ec_code_destroy(NULL);
}

Test(ec, more_lost_than_m_writes_nothing)
{
	struct frags f;
	struct ec_code *code = encoded(4, 2, 256, &f);

	for (unsigned i = 0; i < 6; i++)
		memset(f.buf[i], (int)i, 256);
	cr_assert_eq(ec_decode(code, 256, f.buf, 0x7), -EIO);
	for (unsigned i = 0; i < 6; i++)
		cr_assert_eq(f.buf[i][255], i);
	cr_assert_eq(ec_decode(code, 256, f.buf, 1u << 6), -EINVAL, "a bit past k+m");
	cr_assert_eq(ec_decode(code, 0, f.buf, 1), -EINVAL);
	cr_assert_eq(ec_decode(code, 256, f.buf, 0), 0);
	frags_free(&f);
	ec_code_destroy(code);
}

/* The same pattern decoded twice, with other patterns between them (the cache's
 * entries replaced), gives the same answer. */
Test(ec, decode_tables_survive_cache_turnover)
{
	struct frags f;
	struct ec_code *code = encoded(8, 3, 512, &f);

	for (unsigned round = 0; round < 3; round++) {
		for (uint32_t lost = 1; lost < (1u << 11); lost = lost * 3 + 1) {
			if (__builtin_popcount(lost) > 3)
				continue;
			for (unsigned i = 0; i < 11; i++)
				memcpy(f.buf[i], f.want[i], 512);
			for (unsigned i = 0; i < 11; i++)
				if (lost & (1u << i))
					memset(f.buf[i], 0, 512);
			cr_assert_eq(ec_decode(code, 512, f.buf, lost), 0);
			for (unsigned i = 0; i < 11; i++)
				cr_assert(memcmp(f.buf[i], f.want[i], 512) == 0, "lost %#x", lost);
		}
	}
	frags_free(&f);
	ec_code_destroy(code);
}

/* ---- the stripe of a sealed segment ---- */

Test(ec, geometry_of_odd_lengths)
{
	struct ec_geom g;

	cr_assert_eq(ec_geom_init(&g, 4, 2, 1024), 0);
	cr_assert_eq(g.frag_blocks, 256);
	cr_assert_eq(g.pad_blocks, 0);
	cr_assert_eq(ec_geom_init(&g, 4, 2, 1023), 0);
	cr_assert_eq(g.frag_blocks, 256);
	cr_assert_eq(g.pad_blocks, 1);
	cr_assert_eq(ec_geom_init(&g, 8, 3, 3), 0, "L < K");
	cr_assert_eq(g.frag_blocks, 1);
	cr_assert_eq(g.pad_blocks, 5);
	cr_assert_eq(ec_geom_frag_bytes(&g), EC_BLOCK);
	cr_assert_eq(ec_geom_init(&g, 2, 1, 0), -EINVAL, "an empty segment is never encoded");
	cr_assert_eq(ec_geom_init(&g, 0, 1, 5), -EINVAL);
}

Test(ec, locate_maps_every_block_once_and_in_order)
{
	static const unsigned codes[][3] = { { 2, 1, 1023 }, { 4, 2, 1024 }, { 8, 3, 3 },
					     { 8, 3, 17 }, { 3, 2, 1 } };

	for (size_t c = 0; c < sizeof(codes) / sizeof(codes[0]); c++) {
		struct ec_geom g;
		uint32_t frag, fb;

		cr_assert_eq(ec_geom_init(&g, codes[c][0], codes[c][1], codes[c][2]), 0);
		for (uint32_t b = 0; b < g.seg_blocks; b++) {
			cr_assert_eq(ec_geom_locate(&g, b, &frag, &fb), 0);
			cr_assert_lt(frag, g.k, "a healthy read goes to a data fragment");
			cr_assert_lt(fb, g.frag_blocks);
			cr_assert_eq((uint64_t)frag * g.frag_blocks + fb, b, "contiguous");
		}
		cr_assert_eq(ec_geom_locate(&g, g.seg_blocks, &frag, &fb), -ERANGE,
			     "padding is no block");
	}
	struct ec_geom g;
	uint32_t frag, fb;

	cr_assert_eq(ec_geom_init(&g, 2, 1, 5), 0); /* F = 3: blocks 0-2 | 3-4 + pad */
	cr_assert_eq(ec_geom_locate(&g, 3, &frag, &fb), 0);
	cr_assert_eq(frag, 1);
	cr_assert_eq(fb, 0);
	cr_assert_eq(ec_geom_locate(&g, 2, &frag, &fb), 0);
	cr_assert_eq(frag, 0);
	cr_assert_eq(fb, 2);
}

/* A segment of L blocks (random data), split, encoded, damaged, repaired, joined. */
struct stripe {
	struct ec_geom g;
	struct ec_code *code;
	uint8_t *seg, *back;
	uint8_t *frags[EC_N_MAX];
	uint32_t crcs[EC_N_MAX];
};

static void stripe_make(struct stripe *s, unsigned k, unsigned m, uint32_t blocks)
{
	size_t fb;

	cr_assert_eq(ec_geom_init(&s->g, k, m, blocks), 0);
	cr_assert_eq(ec_code_create(k, m, &s->code), 0);
	fb = ec_geom_frag_bytes(&s->g);
	s->seg = malloc((size_t)blocks * EC_BLOCK);
	s->back = calloc(blocks, EC_BLOCK);
	cr_assert(s->seg && s->back);
	fill_random(s->seg, (size_t)blocks * EC_BLOCK);
	for (unsigned i = 0; i < k + m; i++) {
		s->frags[i] = malloc(fb);
		cr_assert(s->frags[i]);
		memset(s->frags[i], 0xee, fb); /* the padding must be zeroed by split */
	}
	ec_stripe_split(&s->g, s->seg, s->frags);
	cr_assert_eq(ec_stripe_encode(s->code, &s->g, s->frags, s->crcs), 0);
}

static void stripe_free(struct stripe *s)
{
	for (unsigned i = 0; i < s->g.k + s->g.m; i++)
		free(s->frags[i]);
	free(s->seg);
	free(s->back);
	ec_code_destroy(s->code);
}

static void stripe_round_trip(unsigned k, unsigned m, uint32_t blocks)
{
	struct stripe s;
	size_t fb;
	uint32_t lost;

	stripe_make(&s, k, m, blocks);
	fb = ec_geom_frag_bytes(&s.g);
	/* the padding is zeros: the last data fragment's tail */
	for (size_t i = (size_t)(blocks - (k - 1) * s.g.frag_blocks) * EC_BLOCK;
	     s.g.pad_blocks && blocks > (k - 1) * s.g.frag_blocks && i < fb; i++)
		cr_assert_eq(s.frags[k - 1][i], 0);
	/* lose the first m fragments (data), then rebuild and join */
	for (unsigned i = 0; i < m && i < k + m; i++)
		memset(s.frags[i], 0x5a, fb);
	cr_assert_eq(ec_stripe_repair(s.code, &s.g, s.frags, s.crcs, (1u << m) - 1, &lost), 0);
	cr_assert_eq(lost, (1u << m) - 1);
	ec_stripe_join(&s.g, s.frags, s.back);
	cr_assert(memcmp(s.back, s.seg, (size_t)blocks * EC_BLOCK) == 0, "%u+%u L=%u", k, m,
		  blocks);
	stripe_free(&s);
}

Test(ec, stripe_round_trip_l_multiple_of_k) { stripe_round_trip(4, 2, 64); }
Test(ec, stripe_round_trip_l_not_multiple_of_k) { stripe_round_trip(4, 2, 63); }
Test(ec, stripe_round_trip_l_below_k) { stripe_round_trip(8, 3, 5); }
Test(ec, stripe_round_trip_one_block) { stripe_round_trip(2, 1, 1); }

Test(ec, fragment_failing_its_crc_is_treated_as_lost)
{
	struct stripe s;
	uint32_t lost;

	stripe_make(&s, 4, 2, 37);
	s.frags[1][100] ^= 0x01;           /* silent damage: read fine, CRC bad */
	memset(s.frags[5], 0, EC_BLOCK);   /* and parity 5 could not be read */
	cr_assert_eq(ec_stripe_repair(s.code, &s.g, s.frags, s.crcs, 1u << 5, &lost), 0);
	cr_assert_eq(lost, (1u << 1) | (1u << 5));
	for (unsigned i = 0; i < 6; i++)
		cr_assert_eq(crc32c(s.frags[i], ec_geom_frag_bytes(&s.g)), s.crcs[i]);
	ec_stripe_join(&s.g, s.frags, s.back);
	cr_assert(memcmp(s.back, s.seg, (size_t)37 * EC_BLOCK) == 0);
	stripe_free(&s);
}

Test(ec, bad_fragments_beyond_m_are_an_error_not_wrong_data)
{
	struct stripe s;

	stripe_make(&s, 2, 1, 10);
	s.frags[0][0] ^= 0x80;
	s.frags[2][4095] ^= 0x80;
	cr_assert_eq(ec_stripe_repair(s.code, &s.g, s.frags, s.crcs, 0, NULL), -EIO);
	stripe_free(&s);
}

Test(ec, a_wrong_crc_is_caught_after_rebuild)
{
	struct stripe s;
	uint32_t crcs[EC_N_MAX];

	stripe_make(&s, 3, 2, 9);
	memcpy(crcs, s.crcs, sizeof(crcs));
	crcs[0] ^= 1; /* the record says fragment 0 is other than it is */
	cr_assert_eq(ec_stripe_repair(s.code, &s.g, s.frags, crcs, 0, NULL), -EILSEQ);
	stripe_free(&s);
}

Test(ec, stripe_and_code_must_agree)
{
	struct stripe s;
	struct ec_code *other;

	stripe_make(&s, 3, 2, 9);
	cr_assert_eq(ec_code_create(4, 2, &other), 0);
	cr_assert_eq(ec_stripe_encode(other, &s.g, s.frags, s.crcs), -EINVAL);
	cr_assert_eq(ec_stripe_repair(other, &s.g, s.frags, s.crcs, 0, NULL), -EINVAL);
	ec_code_destroy(other);
	stripe_free(&s);
}

/* A degraded read of one block: the same block of K surviving fragments rebuilds that
 * block of the lost data fragment; nothing else of the fragments is read. */
Test(ec, one_block_rebuilt_from_the_same_block_of_k_survivors)
{
	struct stripe s;
	uint8_t *slice[EC_N_MAX], *blocks[EC_N_MAX];
	uint32_t frag, fb, lost = (1u << 1) | (1u << 4); /* data 1 and parity 4 gone */

	stripe_make(&s, 4, 2, 63);
	for (uint32_t b = s.g.frag_blocks; b < 2 * s.g.frag_blocks; b += 5) {
		cr_assert_eq(ec_geom_locate(&s.g, b, &frag, &fb), 0);
		cr_assert_eq(frag, 1);
		for (unsigned i = 0; i < 6; i++) {
			blocks[i] = malloc(EC_BLOCK);
			cr_assert(blocks[i]);
			if (lost & (1u << i))
				memset(blocks[i], 0x77, EC_BLOCK); /* not read */
			else
				memcpy(blocks[i], s.frags[i] + (size_t)fb * EC_BLOCK, EC_BLOCK);
			slice[i] = blocks[i];
		}
		cr_assert_eq(ec_decode(s.code, EC_BLOCK, slice, lost), 0);
		cr_assert(memcmp(blocks[1], s.seg + (size_t)b * EC_BLOCK, EC_BLOCK) == 0,
			  "block %u", b);
		for (unsigned i = 0; i < 6; i++)
			free(blocks[i]);
	}
	stripe_free(&s);
}

/* A run of the segment as the data fragments hold it: every block once, in order, one
 * piece per data fragment touched; padding and past-the-end runs refused. */
Test(ec, a_run_maps_to_one_piece_per_data_fragment)
{
	static const unsigned codes[][3] = { { 2, 1, 1023 }, { 4, 2, 1024 }, { 8, 3, 17 },
					     { 3, 2, 1 }, { 2, 1, 5 } };

	for (size_t c = 0; c < sizeof(codes) / sizeof(codes[0]); c++) {
		struct ec_geom g;
		struct ec_piece p[EC_K_MAX];

		cr_assert_eq(ec_geom_init(&g, codes[c][0], codes[c][1], codes[c][2]), 0);
		for (uint32_t first = 0; first < g.seg_blocks; first += 1 + first / 3)
			for (uint32_t count = 1; count <= g.seg_blocks - first;
			     count += 1 + count / 2) {
				int n = ec_geom_run(&g, first, count, p);
				uint32_t b = first;

				cr_assert_gt(n, 0);
				for (int i = 0; i < n; i++) {
					uint32_t frag, fb;

					cr_assert_eq(p[i].seg_block, b, "in order, no gap");
					cr_assert_eq(ec_geom_locate(&g, b, &frag, &fb), 0);
					cr_assert_eq(p[i].frag, frag);
					cr_assert_eq(p[i].frag_block, fb);
					cr_assert_leq(fb + p[i].nblocks, g.frag_blocks,
						      "a piece stays in its fragment");
					cr_assert(i == 0 || p[i].frag == p[i - 1].frag + 1);
					b += p[i].nblocks;
				}
				cr_assert_eq(b, first + count, "every block once");
				cr_assert_eq((uint32_t)n, (first + count - 1) / g.frag_blocks -
							  first / g.frag_blocks + 1);
			}
		cr_assert_eq(ec_geom_run(&g, 0, 0, p), -ERANGE, "empty");
		cr_assert_eq(ec_geom_run(&g, 0, g.seg_blocks + 1, p), -ERANGE, "into padding");
		cr_assert_eq(ec_geom_run(&g, g.seg_blocks, 1, p), -ERANGE, "past the end");
		cr_assert_eq(ec_geom_run(&g, 1, UINT32_MAX, p), -ERANGE, "wraps");
	}
	/* 2+1 of 1000 blocks (F = 500): a run across the middle is two pieces */
	struct ec_geom g;
	struct ec_piece p[EC_K_MAX];
	uint32_t row, nrows;

	cr_assert_eq(ec_geom_init(&g, 2, 1, 1000), 0);
	cr_assert_eq(ec_geom_run(&g, 490, 20, p), 2);
	cr_assert_eq(p[0].frag, 0);
	cr_assert_eq(p[0].frag_block, 490);
	cr_assert_eq(p[0].nblocks, 10);
	cr_assert_eq(p[1].frag, 1);
	cr_assert_eq(p[1].frag_block, 0);
	cr_assert_eq(p[1].nblocks, 10);
	cr_assert(ec_pieces_rows_next(p, 2, 0, 1024, &row, &nrows));
	cr_assert_eq(row, 0);
	cr_assert_eq(nrows, 10, "the head rows of fragment 1's piece");
	cr_assert(ec_pieces_rows_next(p, 2, row + nrows, 1024, &row, &nrows));
	cr_assert_eq(row, 490);
	cr_assert_eq(nrows, 10, "the tail rows of fragment 0's piece, not the rows between");
	cr_assert_not(ec_pieces_rows_next(p, 2, row + nrows, 1024, &row, &nrows));
	cr_assert_eq(ec_geom_run(&g, 100, 50, p), 1);
	cr_assert(ec_pieces_rows_next(p, 1, 0, 1024, &row, &nrows));
	cr_assert_eq(row, 100);
	cr_assert_eq(nrows, 50);
}

/* The ranges of rows of a run's pieces (ec_pieces_rows_next), walked as fragread walks
 * them: every row some piece needs once, no other, ascending, each range at most max.
 * Returns how many ranges. */
static unsigned rows_walk_check(const struct ec_geom *g, uint32_t first, uint32_t count,
				uint32_t max)
{
	struct ec_piece p[EC_K_MAX];
	int n = ec_geom_run(g, first, count, p);
	uint8_t *need = calloc(g->frag_blocks, 1), *got = calloc(g->frag_blocks, 1);
	uint32_t row = 0, nrows = 0, end = 0;
	unsigned ranges = 0;

	cr_assert(n > 0 && need && got);
	for (int i = 0; i < n; i++)
		memset(need + p[i].frag_block, 1, p[i].nblocks);
	while (ec_pieces_rows_next(p, (unsigned)n, row + nrows, max, &row, &nrows)) {
		cr_assert(nrows >= 1 && nrows <= max, "run %u+%u: a range of %u rows (max %u)",
			  first, count, nrows, max);
		cr_assert(row >= end && row + nrows <= g->frag_blocks, "ascending, in the fragment");
		for (uint32_t r = row; r < row + nrows; r++) {
			cr_assert(need[r], "run %u+%u: row %u asked, no piece needs it", first,
				  count, r);
			got[r] = 1;
		}
		end = row + nrows;
		ranges++;
	}
	cr_assert(memcmp(need, got, g->frag_blocks) == 0, "run %u+%u: a row needed not asked",
		  first, count);
	free(need);
	free(got);
	return ranges;
}

/* Every run shape near a FRAG_READ's 1024 rows (fragments of 1023, 1024, 1025 and 2048
 * blocks at K = 2 and K = 4; runs of up to 1024 blocks, as the fetch asks, inside a
 * fragment, across one fragment's end, over several): each range fits a FRAG_READ
 * and the ranges hold exactly the rows needed. (The hull of the rows, all a run read
 * before, is F rows for a run across a fragment's end: 2048 > 1024 when F = 2048.) */
Test(ec, a_runs_rows_fit_frag_reads_at_every_shape)
{
	static const uint32_t frags[] = { 1023, 1024, 1025, 2048 };
	static const uint32_t counts[] = { 1, 2, 511, 1022, 1023, 1024 };
	static const unsigned ks[] = { 2, 4 };
	unsigned two = 0;

	for (size_t ki = 0; ki < 2; ki++)
		for (size_t fi = 0; fi < 4; fi++) {
			struct ec_geom g;
			uint32_t f = frags[fi];

			cr_assert_eq(ec_geom_init(&g, ks[ki], 1, ks[ki] * f), 0);
			cr_assert_eq(g.frag_blocks, f);
			for (size_t ci = 0; ci < sizeof(counts) / sizeof(counts[0]); ci++) {
				uint32_t c = counts[ci];

				/* every start around each fragment's end and a few inside */
				for (uint32_t e = f; e <= (ks[ki] - 1) * f; e += f)
					for (uint32_t first = e > c + 1 ? e - c - 1 : 0;
					     first <= e + 1 && first + c <= g.seg_blocks; first++)
						two += rows_walk_check(&g, first, c, 1024) == 2;
				for (uint32_t first = 0; first + c <= g.seg_blocks;
				     first += 1 + first / 2 + c / 3)
					rows_walk_check(&g, first, c, 1024);
			}
		}
	cr_assert_gt(two, 0, "some run across a fragment's end needs two ranges");
	/* ranges cut at max: rows 0..2047 of every fragment (the whole of a 2+1 stripe of
	 * 4096 blocks, a run longer than a fetch) in two of 1024; with max 7, ceil(F/7) */
	struct ec_geom g;

	cr_assert_eq(ec_geom_init(&g, 2, 1, 4096), 0);
	cr_assert_eq(rows_walk_check(&g, 0, 4096, 1024), 2);
	cr_assert_eq(rows_walk_check(&g, 1000, 2000, 1024), 3, "rows 0..951, 1000..2023, 2024..2047");
	cr_assert_eq(rows_walk_check(&g, 0, 4096, 7), (2048 + 6) / 7);
	cr_assert_eq(ec_geom_init(&g, 4, 2, 4 * 1025), 0);
	cr_assert_eq(rows_walk_check(&g, 1025 - 3, 1024, 1024), 2, "1022..1024 and 0..1020");
	cr_assert_eq(rows_walk_check(&g, 1025 - 1, 1024, 1024), 2, "1024 and 0..1022");
	cr_assert_eq(ec_geom_init(&g, 2, 1, 2000), 0);
	cr_assert_eq(rows_walk_check(&g, 500, 1000, 1024), 1, "500..999 and 0..499: adjacent");
}

/* A degraded read of a run: the rows its pieces need, of every fragment but the lost,
 * decode to the run's blocks, for every pattern of at most M lost, range of rows by
 * range as fragread asks them (ec_pieces_rows_next; at most 3 rows a range here, so
 * that ranges split inside pieces too). */
#define PATTERN_MAX_ROWS 3u
static void run_every_pattern(unsigned k, unsigned m, uint32_t blocks, uint32_t first,
			      uint32_t count)
{
	struct stripe s;
	struct ec_piece p[EC_K_MAX];
	uint8_t *rows[EC_N_MAX];
	unsigned n = k + m, patterns = 0;
	int np;

	stripe_make(&s, k, m, blocks);
	np = ec_geom_run(&s.g, first, count, p);
	cr_assert_gt(np, 0);
	for (unsigned i = 0; i < n; i++) {
		rows[i] = malloc((size_t)PATTERN_MAX_ROWS * EC_BLOCK);
		cr_assert(rows[i]);
	}
	for (uint32_t lost = 1; lost < (1u << n); lost++) {
		uint32_t row = 0, nrows = 0, decoded = 0;

		if ((unsigned)__builtin_popcount(lost) > m)
			continue;
		while (ec_pieces_rows_next(p, (unsigned)np, row + nrows, PATTERN_MAX_ROWS, &row,
					   &nrows)) {
			for (unsigned i = 0; i < n; i++)
				if (lost & (1u << i))
					memset(rows[i], 0xc3, (size_t)nrows * EC_BLOCK);
				else
					memcpy(rows[i], s.frags[i] + (size_t)row * EC_BLOCK,
					       (size_t)nrows * EC_BLOCK);
			cr_assert_eq(ec_decode(s.code, (size_t)nrows * EC_BLOCK, rows, lost), 0);
			for (int i = 0; i < np; i++) /* each piece's rows in this range */
				for (uint32_t r = row; r < row + nrows; r++) {
					if (r < p[i].frag_block || r >= p[i].frag_block + p[i].nblocks)
						continue;
					cr_assert(memcmp(rows[p[i].frag] + (size_t)(r - row) * EC_BLOCK,
							 s.seg + (size_t)(p[i].seg_block + r -
									  p[i].frag_block) * EC_BLOCK,
							 EC_BLOCK) == 0,
						  "%u+%u run %u+%u lost %#x: piece %d row %u", k, m,
						  first, count, lost, i, r);
					decoded++;
				}
		}
		cr_assert_eq(decoded, count, "%u+%u run %u+%u lost %#x: %u of its blocks decoded",
			     k, m, first, count, lost, decoded);
		patterns++;
	}
	cr_log_info("%u+%u run %u+%u: %u loss patterns", k, m, first, count, patterns);
	for (unsigned i = 0; i < n; i++)
		free(rows[i]);
	stripe_free(&s);
}

Test(ec, a_run_decodes_with_every_pattern_2_1) { run_every_pattern(2, 1, 100, 45, 10); }
Test(ec, a_run_in_one_fragment_decodes_4_2) { run_every_pattern(4, 2, 63, 17, 3); }
Test(ec, a_run_over_three_fragments_decodes_4_2) { run_every_pattern(4, 2, 64, 10, 30); }
Test(ec, a_run_to_the_padded_end_decodes_3_2) { run_every_pattern(3, 2, 31, 20, 11); }
