/* tests/unit/replication/test_fragscrub.c — replication/fragscrub.c's pure part: a
 * fragment's verify judged (gone, bad blocks, whole but not the record's) and the
 * parity check (the basis decoded into the others, each compared block by block with
 * what its verify saw). Real stripes: encoded by ec_stripe_images, checked by
 * ec_frag_scrub as a holder checks them, decoded by ISA-L. The data is random: the
 * seed is printed ($QUILL_TEST_SEED replays it). */
#include "replication/fragscrub.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "replication/ec.h"
#include "replication/ec_format.h"
#include "testutil.h"

enum { K = 4, M = 2, N = K + M, SEG_BLOCKS = 14 }; /* F = 4, two pad blocks */

/* A sealed stripe as its holders keep it, and the record's CRC of each fragment. */
struct stripe {
	struct ec_geom g;
	struct ec_code *code;
	uint8_t *img[N];
	uint32_t rec[N];
	struct fragscrub_frag f[N];
	uint8_t *data[N];  /* the scrub's: the basis read, the others computed */
};

static void stripe_make(struct stripe *s)
{
	static uint64_t rng;
	uint8_t *seg = malloc((size_t)SEG_BLOCKS * EC_BLOCK);

	rng = (uint64_t)testutil_seed() * 2654435761u + 1;
	cr_assert(seg);
	for (size_t i = 0; i < (size_t)SEG_BLOCKS * EC_BLOCK; i++) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		seg[i] = (uint8_t)(rng >> 24);
	}
	memset(s, 0, sizeof(*s));
	cr_assert_eq(ec_geom_init(&s->g, K, M, SEG_BLOCKS), 0);
	cr_assert_eq(ec_code_create(K, M, &s->code), 0);
	for (unsigned i = 0; i < N; i++) {
		s->img[i] = aligned_alloc(EC_BLOCK, ec_frag_image_bytes(&s->g));
		s->data[i] = aligned_alloc(EC_BLOCK, ec_geom_frag_bytes(&s->g));
		cr_assert(s->img[i] && s->data[i]);
	}
	cr_assert_eq(ec_stripe_images(s->code, &s->g, seg, 7, 3, 1, s->img), 0);
	for (unsigned i = 0; i < N; i++)
		s->rec[i] = crc32c(s->img[i] + ec_frag_data_offset(&s->g),
				   ec_geom_frag_bytes(&s->g));
	free(seg);
}

static void stripe_free(struct stripe *s)
{
	for (unsigned i = 0; i < N; i++) {
		free(s->img[i]);
		free(s->data[i]);
		free(s->f[i].crcs);
	}
	ec_code_destroy(s->code);
}

static uint8_t *frag_data(struct stripe *s, unsigned i)
{
	return s->img[i] + ec_frag_data_offset(&s->g);
}

/* Fragment i checked where it is (as a holder does) and judged against the record. */
static void verify(struct stripe *s, unsigned i)
{
	uint32_t F = s->g.frag_blocks, bad[16], nbad, crc;
	int r;

	s->f[i].crcs = malloc(F * sizeof(uint32_t));
	cr_assert(s->f[i].crcs);
	r = ec_frag_scrub(s->img[i], ec_frag_image_bytes(&s->g), &s->g, i, s->f[i].crcs, bad,
			  &nbad, &crc);
	cr_assert_geq(r, 0);
	fragscrub_verdict(&s->f[i], F, s->rec[i], 0, r == 1, crc, bad, nbad);
}

/* The first K fragments found good read whole, the others computed and compared:
 * the scrub's parity check. */
static void parity_check(struct stripe *s)
{
	uint32_t basis = 0, lost;
	unsigned nb = 0;

	for (unsigned j = 0; j < N && nb < K; j++)
		if (s->f[j].state == FRAGSCRUB_OK) {
			basis |= 1u << j;
			nb++;
			memcpy(s->data[j], frag_data(s, j), ec_geom_frag_bytes(&s->g));
		}
	cr_assert_eq(nb, K, "K fragments check");
	lost = ((1u << N) - 1) & ~basis;
	cr_assert_eq(ec_decode(s->code, ec_geom_frag_bytes(&s->g), s->data, lost), 0);
	fragscrub_compare(s->f, N, s->g.frag_blocks, s->data, lost);
}

/* A block changed where it is kept, the image sealed again over it: the fragment is
 * whole in itself (its table agrees), but its data is not the stripe's. */
static void rewrite_block(struct stripe *s, unsigned i, uint32_t block)
{
	struct ec_frag_info hi = { .geom = s->g, .index = i, .family = 7, .seq = 3,
				   .epoch = 1 };

	frag_data(s, i)[(size_t)block * EC_BLOCK + 100] ^= 0x5a;
	ec_frag_seal(&hi, s->img[i]);
}

Test(fragscrub, a_clean_stripe_has_no_finding)
{
	struct stripe s;

	stripe_make(&s);
	for (unsigned i = 0; i < N; i++)
		verify(&s, i);
	parity_check(&s);
	for (unsigned i = 0; i < N; i++) {
		cr_assert_eq(s.f[i].state, FRAGSCRUB_OK, "fragment %u", i);
		cr_assert_eq(s.f[i].x.nbad, 0);
	}
	stripe_free(&s);
}

Test(fragscrub, a_block_failing_its_table_is_a_bad_fragment)
{
	struct stripe s;

	stripe_make(&s);
	frag_data(&s, 1)[2 * EC_BLOCK + 7] ^= 1; /* the table not updated: a rotten block */
	for (unsigned i = 0; i < N; i++)
		verify(&s, i);
	cr_assert_eq(s.f[1].state, FRAGSCRUB_BAD);
	cr_assert(s.f[1].x.nbad == 1 && s.f[1].x.nfirst == 1 && s.f[1].x.first[0] == 2,
		  "block 2 alone: %u bad, the first %u", s.f[1].x.nbad, s.f[1].x.first[0]);
	parity_check(&s); /* the basis skips it: 0, 2, 3, 4 */
	cr_assert_eq(s.f[1].x.nbad, 1, "a bad fragment is not compared again");
	cr_assert_eq(crc32c(s.data[1], ec_geom_frag_bytes(&s.g)), s.rec[1],
		     "what it is rebuilt from is the record's fragment");
	for (unsigned i = 0; i < N; i++)
		cr_assert(i == 1 || s.f[i].state == FRAGSCRUB_OK, "fragment %u", i);
	stripe_free(&s);
}

Test(fragscrub, a_whole_fragment_not_the_records_has_its_blocks_that_differ)
{
	struct stripe s;

	stripe_make(&s);
	rewrite_block(&s, 5, 3);
	for (unsigned i = 0; i < N; i++)
		verify(&s, i);
	cr_assert_eq(s.f[5].state, FRAGSCRUB_WRONG, "its CRC is not the record's");
	cr_assert_eq(s.f[5].x.nbad, 1, "a finding before any decode compares it");
	parity_check(&s);
	cr_assert_eq(s.f[5].state, FRAGSCRUB_WRONG);
	cr_assert(s.f[5].x.nbad == 1 && s.f[5].x.first[0] == 3,
		  "block 3 differs: %u bad, the first %u", s.f[5].x.nbad, s.f[5].x.first[0]);
	cr_assert_eq(s.f[4].state, FRAGSCRUB_OK, "the other parity fragment agrees");
	stripe_free(&s);
}

Test(fragscrub, a_fragment_the_stripe_does_not_encode_to_disagrees_with_parity)
{
	struct stripe s;

	stripe_make(&s);
	rewrite_block(&s, 4, 1);
	rewrite_block(&s, 4, 3);
	/* the record agrees with it (the encoding itself went wrong): only the parity
	 * check can tell */
	s.rec[4] = crc32c(frag_data(&s, 4), ec_geom_frag_bytes(&s.g));
	for (unsigned i = 0; i < N; i++)
		verify(&s, i);
	cr_assert_eq(s.f[4].state, FRAGSCRUB_OK, "it checks, and is the record's");
	parity_check(&s);
	cr_assert_eq(s.f[4].state, FRAGSCRUB_PARITY);
	cr_assert(s.f[4].x.nbad == 2 && s.f[4].x.first[0] == 1 && s.f[4].x.first[1] == 3,
		  "blocks 1 and 3: %u bad", s.f[4].x.nbad);
	cr_assert_eq(s.f[5].state, FRAGSCRUB_OK);
	stripe_free(&s);
}

Test(fragscrub, a_fragment_gone_or_not_asked)
{
	struct fragscrub_frag gone = { 0 }, unasked = { 0 };

	fragscrub_verdict(&gone, 4, 0x1234, -ENOENT, false, 0, NULL, 0);
	cr_assert_eq(gone.state, FRAGSCRUB_MISSING);
	cr_assert_eq(gone.x.nbad, 4, "every block of a fragment gone is lost");
	fragscrub_verdict(&unasked, 4, 0x1234, -ETIMEDOUT, false, 0, NULL, 0);
	cr_assert_eq(unasked.state, FRAGSCRUB_UNCHECKED);
	cr_assert_eq(unasked.err, -ETIMEDOUT);
	cr_assert_eq(unasked.x.nbad, 0, "not checked: not counted");
}
