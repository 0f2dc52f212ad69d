/* replication/ec.c — the Reed-Solomon codec of ec.h, over ISA-L. */
#include "replication/ec.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <isa-l/erasure_code.h>

#include "common/crc32c.h"

/* Loss patterns whose decode tables are kept. A degraded volume usually has one
 * pattern per failed node set; a few cover a rebuild reading around a second one. */
#define EC_CACHE 8u

struct ec_decoder {
	uint32_t lost;               /* the pattern; 0: an empty entry */
	unsigned nlost;
	uint8_t surv[EC_K_MAX];      /* the K fragments read, in order */
	uint8_t lostidx[EC_M_MAX];   /* the fragments rebuilt, in order */
	uint8_t tables[32u * EC_K_MAX * EC_M_MAX];
};

struct ec_code {
	unsigned k, m;
	uint8_t matrix[EC_N_MAX * EC_K_MAX]; /* (K+M)×K, the top K rows the identity */
	uint8_t enc_tables[32u * EC_K_MAX * EC_M_MAX];
	struct ec_decoder cache[EC_CACHE];
	unsigned next_victim;
};

static bool code_valid(unsigned k, unsigned m)
{
	return k >= 1 && k <= EC_K_MAX && m >= 1 && m <= EC_M_MAX && k + m <= EC_N_MAX;
}

int ec_code_create(unsigned k, unsigned m, struct ec_code **out)
{
	struct ec_code *c;

	if (!code_valid(k, m))
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->k = k;
	c->m = m;
	gf_gen_cauchy1_matrix(c->matrix, (int)(k + m), (int)k);
	ec_init_tables((int)k, (int)m, c->matrix + k * k, c->enc_tables);
	*out = c;
	return 0;
}

void ec_code_destroy(struct ec_code *code)
{
	free(code);
}

unsigned ec_code_k(const struct ec_code *code)
{
	return code->k;
}

unsigned ec_code_m(const struct ec_code *code)
{
	return code->m;
}

void ec_encode(struct ec_code *code, size_t len, uint8_t *const *data, uint8_t *const *parity)
{
	ec_encode_data((int)len, (int)code->k, (int)code->m, code->enc_tables,
		       (unsigned char **)data, (unsigned char **)parity);
}

/* The decode tables of a loss pattern (nlost ≤ M): rows that, applied to the first K
 * surviving fragments, give the lost ones. The survivors' rows of the matrix form B;
 * a lost data fragment j is row j of B⁻¹; a lost parity fragment j is its own row
 * of the matrix times B⁻¹ (it is that row applied to the data, which is B⁻¹ applied
 * to the survivors). -EIO if B is singular (a Cauchy matrix never is). */
static int decoder_build(const struct ec_code *c, uint32_t lost, struct ec_decoder *d)
{
	uint8_t b[EC_K_MAX * EC_K_MAX], inv[EC_K_MAX * EC_K_MAX];
	uint8_t rows[EC_M_MAX * EC_K_MAX];
	unsigned k = c->k, ns = 0, nl = 0;

	for (unsigned i = 0; i < k + c->m; i++) {
		if (lost & (1u << i))
			d->lostidx[nl++] = (uint8_t)i;
		else if (ns < k)
			d->surv[ns++] = (uint8_t)i;
	}
	for (unsigned r = 0; r < k; r++)
		memcpy(b + r * k, c->matrix + d->surv[r] * k, k);
	if (gf_invert_matrix(b, inv, (int)k) != 0)
		return -EIO;
	for (unsigned l = 0; l < nl; l++) {
		unsigned j = d->lostidx[l];
		uint8_t *row = rows + l * k;

		if (j < k) {
			memcpy(row, inv + j * k, k);
			continue;
		}
		for (unsigned col = 0; col < k; col++) {
			uint8_t s = 0;

			for (unsigned t = 0; t < k; t++)
				s ^= gf_mul(c->matrix[j * k + t], inv[t * k + col]);
			row[col] = s;
		}
	}
	ec_init_tables((int)k, (int)nl, rows, d->tables);
	d->nlost = nl;
	d->lost = lost;
	return 0;
}

static int decoder_get(struct ec_code *c, uint32_t lost, struct ec_decoder **out)
{
	struct ec_decoder *d;
	int rc;

	for (unsigned i = 0; i < EC_CACHE; i++) {
		if (c->cache[i].lost == lost) {
			*out = &c->cache[i];
			return 0;
		}
	}
	d = &c->cache[c->next_victim];
	c->next_victim = (c->next_victim + 1) % EC_CACHE;
	d->lost = 0; /* invalid until built */
	rc = decoder_build(c, lost, d);
	if (rc < 0)
		return rc;
	*out = d;
	return 0;
}

int ec_decode(struct ec_code *code, size_t len, uint8_t *const *frags, uint32_t lost)
{
	unsigned n = code->k + code->m;
	uint8_t *src[EC_K_MAX], *dst[EC_M_MAX];
	struct ec_decoder *d;
	int rc;

	if (len == 0 || len > INT_MAX || (n < 32 && (lost >> n) != 0))
		return -EINVAL;
	if (lost == 0)
		return 0;
	if ((unsigned)__builtin_popcount(lost) > code->m)
		return -EIO;
	rc = decoder_get(code, lost, &d);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < code->k; i++)
		src[i] = frags[d->surv[i]];
	for (unsigned i = 0; i < d->nlost; i++)
		dst[i] = frags[d->lostidx[i]];
	ec_encode_data((int)len, (int)code->k, (int)d->nlost, d->tables, src, dst);
	return 0;
}

/* ---- the stripe of one sealed segment ---- */

int ec_geom_init(struct ec_geom *g, unsigned k, unsigned m, uint32_t seg_blocks)
{
	if (!code_valid(k, m) || seg_blocks == 0)
		return -EINVAL;
	g->k = k;
	g->m = m;
	g->seg_blocks = seg_blocks;
	g->frag_blocks = (uint32_t)(((uint64_t)seg_blocks + k - 1) / k);
	g->pad_blocks = g->frag_blocks * k - seg_blocks;
	return 0;
}

int ec_geom_locate(const struct ec_geom *g, uint32_t seg_block, uint32_t *frag,
		   uint32_t *frag_block)
{
	if (seg_block >= g->seg_blocks)
		return -ERANGE;
	*frag = seg_block / g->frag_blocks;
	*frag_block = seg_block % g->frag_blocks;
	return 0;
}

int ec_geom_run(const struct ec_geom *g, uint32_t first, uint32_t count, struct ec_piece *out)
{
	uint32_t b = first, end;
	int n = 0;

	if (count == 0 || first >= g->seg_blocks || count > g->seg_blocks - first)
		return -ERANGE;
	end = first + count;
	while (b < end) {
		uint32_t frag = b / g->frag_blocks, fb = b % g->frag_blocks;
		uint32_t len = g->frag_blocks - fb;

		if (len > end - b)
			len = end - b;
		out[n++] = (struct ec_piece){ .frag = frag, .frag_block = fb, .seg_block = b,
					      .nblocks = len };
		b += len;
	}
	return n;
}

bool ec_pieces_rows_next(const struct ec_piece *p, unsigned n, uint32_t from, uint32_t max,
			 uint32_t *row, uint32_t *nrows)
{
	uint32_t lo = UINT32_MAX, hi;
	bool grew = true;

	for (unsigned i = 0; i < n; i++) {
		uint32_t start = p[i].frag_block > from ? p[i].frag_block : from;

		if (start < p[i].frag_block + p[i].nblocks && start < lo)
			lo = start;
	}
	if (lo == UINT32_MAX || max == 0)
		return false;
	hi = lo + 1; /* then every piece that goes on from inside [lo, hi) extends it */
	while (grew && hi - lo < max) {
		grew = false;
		for (unsigned i = 0; i < n; i++)
			if (p[i].frag_block <= hi && p[i].frag_block + p[i].nblocks > hi) {
				hi = p[i].frag_block + p[i].nblocks;
				grew = true;
			}
	}
	*row = lo;
	*nrows = hi - lo < max ? hi - lo : max;
	return true;
}

size_t ec_geom_frag_bytes(const struct ec_geom *g)
{
	return (size_t)g->frag_blocks * EC_BLOCK;
}

/* Blocks of the segment in data fragment i (the rest of it is padding). */
static uint32_t frag_data_blocks(const struct ec_geom *g, unsigned i)
{
	uint64_t start = (uint64_t)i * g->frag_blocks;

	if (start >= g->seg_blocks)
		return 0;
	return g->seg_blocks - start < g->frag_blocks ? (uint32_t)(g->seg_blocks - start)
						       : g->frag_blocks;
}

void ec_stripe_split(const struct ec_geom *g, const void *seg, uint8_t *const *frags)
{
	const uint8_t *p = seg;
	size_t fb = ec_geom_frag_bytes(g);

	for (unsigned i = 0; i < g->k; i++) {
		size_t n = (size_t)frag_data_blocks(g, i) * EC_BLOCK;

		memcpy(frags[i], p + (size_t)i * fb, n);
		memset(frags[i] + n, 0, fb - n);
	}
}

void ec_stripe_join(const struct ec_geom *g, uint8_t *const *frags, void *seg)
{
	uint8_t *p = seg;
	size_t fb = ec_geom_frag_bytes(g);

	for (unsigned i = 0; i < g->k; i++)
		memcpy(p + (size_t)i * fb, frags[i], (size_t)frag_data_blocks(g, i) * EC_BLOCK);
}

static bool code_fits(const struct ec_code *code, const struct ec_geom *g)
{
	return code->k == g->k && code->m == g->m;
}

int ec_stripe_encode(struct ec_code *code, const struct ec_geom *g, uint8_t *const *frags,
		     uint32_t *crcs)
{
	size_t fb = ec_geom_frag_bytes(g);

	if (!code_fits(code, g))
		return -EINVAL;
	ec_encode(code, fb, frags, frags + g->k);
	for (unsigned i = 0; i < g->k + g->m; i++)
		crcs[i] = crc32c(frags[i], fb);
	return 0;
}

int ec_stripe_repair(struct ec_code *code, const struct ec_geom *g, uint8_t *const *frags,
		     const uint32_t *crcs, uint32_t missing, uint32_t *lost_out)
{
	size_t fb = ec_geom_frag_bytes(g);
	uint32_t lost = missing;
	int rc;

	if (!code_fits(code, g))
		return -EINVAL;
	for (unsigned i = 0; i < g->k + g->m; i++)
		if (!(lost & (1u << i)) && crc32c(frags[i], fb) != crcs[i])
			lost |= 1u << i;
	rc = ec_decode(code, fb, frags, lost);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < g->k + g->m; i++)
		if ((lost & (1u << i)) && crc32c(frags[i], fb) != crcs[i])
			return -EILSEQ;
	if (lost_out)
		*lost_out = lost;
	return 0;
}
