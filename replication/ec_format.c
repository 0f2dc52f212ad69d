/* replication/ec_format.c — the fragment header and CRC table of ec_format.h. */
#include "replication/ec_format.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "common/crc32c.h"

#define F(field) offsetof(struct ec_frag_hdr, field)

static void put_le(uint8_t *p, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = n; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

static uint32_t hdr_crc(const uint8_t *p)
{
	return crc32c(p, F(hdr_crc));
}

void ec_frag_hdr_encode(const struct ec_frag_info *f, void *buf)
{
	uint8_t *p = buf;

	memset(p, 0, sizeof(struct ec_frag_hdr));
	put_le(p + F(magic), EC_FRAG_MAGIC, 8);
	put_le(p + F(version), EC_FRAG_VERSION, 2);
	p[F(k)] = (uint8_t)f->geom.k;
	p[F(m)] = (uint8_t)f->geom.m;
	p[F(index)] = (uint8_t)f->index;
	put_le(p + F(family), f->family, 8);
	put_le(p + F(seq), f->seq, 4);
	put_le(p + F(seg_blocks), f->geom.seg_blocks, 4);
	put_le(p + F(frag_blocks), f->geom.frag_blocks, 4);
	put_le(p + F(pad_blocks), f->geom.pad_blocks, 4);
	put_le(p + F(frag_crc), f->frag_crc, 4);
	put_le(p + F(table_crc), f->table_crc, 4);
	put_le(p + F(epoch), f->epoch, 8);
	put_le(p + F(hdr_crc), hdr_crc(p), 4);
}

static bool reserved_zero(const uint8_t *p)
{
	return p[F(reserved0)] == 0 && p[F(reserved0) + 1] == 0 && p[F(reserved0) + 2] == 0 &&
	       get_le(p + F(reserved1), 4) == 0;
}

int ec_frag_hdr_decode(const void *buf, size_t len, struct ec_frag_info *f)
{
	const uint8_t *p = buf;
	struct ec_frag_info d = { 0 };

	if (len < sizeof(struct ec_frag_hdr))
		return -EINVAL;
	if (get_le(p + F(magic), 8) != EC_FRAG_MAGIC)
		return -EPROTO;
	if (get_le(p + F(version), 2) != EC_FRAG_VERSION)
		return -EPROTONOSUPPORT;
	if (get_le(p + F(hdr_crc), 4) != hdr_crc(p))
		return -EILSEQ;
	if (!reserved_zero(p))
		return -EPROTO;
	if (ec_geom_init(&d.geom, p[F(k)], p[F(m)], (uint32_t)get_le(p + F(seg_blocks), 4)) < 0)
		return -EPROTO;
	if (get_le(p + F(frag_blocks), 4) != d.geom.frag_blocks ||
	    get_le(p + F(pad_blocks), 4) != d.geom.pad_blocks || p[F(index)] >= d.geom.k + d.geom.m)
		return -EPROTO;
	d.index = p[F(index)];
	d.family = get_le(p + F(family), 8);
	d.seq = (uint32_t)get_le(p + F(seq), 4);
	d.frag_crc = (uint32_t)get_le(p + F(frag_crc), 4);
	d.table_crc = (uint32_t)get_le(p + F(table_crc), 4);
	d.epoch = get_le(p + F(epoch), 8);
	*f = d;
	return 0;
}

uint32_t ec_frag_table_blocks(uint32_t frag_blocks)
{
	return (uint32_t)(((uint64_t)frag_blocks * 4 + EC_BLOCK - 1) / EC_BLOCK);
}

uint32_t ec_frag_table_fill(const uint8_t *frag, uint32_t frag_blocks, void *table)
{
	uint8_t *t = table;

	memset(t, 0, (size_t)ec_frag_table_blocks(frag_blocks) * EC_BLOCK);
	for (uint32_t i = 0; i < frag_blocks; i++)
		put_le(t + (size_t)i * 4, crc32c(frag + (size_t)i * EC_BLOCK, EC_BLOCK), 4);
	return crc32c(t, (size_t)frag_blocks * 4);
}

int ec_frag_block_check(const void *table, uint32_t frag_blocks, uint32_t i,
			const void *block)
{
	if (i >= frag_blocks)
		return -ERANGE;
	return get_le((const uint8_t *)table + (size_t)i * 4, 4) == crc32c(block, EC_BLOCK)
		       ? 0
		       : -EILSEQ;
}

void ec_frag_table_span(uint32_t block, uint32_t n, uint32_t *first, uint32_t *count)
{
	uint64_t last = (((uint64_t)block + n) * 4 - 1) / EC_BLOCK;

	*first = (uint32_t)((uint64_t)block * 4 / EC_BLOCK);
	*count = (uint32_t)(last - *first + 1);
}

int ec_frag_run_check(const void *part, uint32_t first, uint32_t block, uint32_t n,
		      const void *blocks)
{
	const uint8_t *crcs = (const uint8_t *)part + (size_t)block * 4 - (size_t)first * EC_BLOCK;

	for (uint32_t i = 0; i < n; i++)
		if (get_le(crcs + (size_t)i * 4, 4) !=
		    crc32c((const uint8_t *)blocks + (size_t)i * EC_BLOCK, EC_BLOCK))
			return -EILSEQ;
	return 0;
}

size_t ec_frag_data_offset(const struct ec_geom *g)
{
	return ((size_t)1 + ec_frag_table_blocks(g->frag_blocks)) * EC_BLOCK;
}

size_t ec_frag_image_bytes(const struct ec_geom *g)
{
	return ec_frag_data_offset(g) + ec_geom_frag_bytes(g);
}

uint32_t ec_frag_max_seg_blocks(unsigned k, uint32_t max_image_blocks)
{
	uint32_t f = max_image_blocks > 2 ? max_image_blocks - 2 : 0; /* header, a table block */

	while (f && 1 + ec_frag_table_blocks(f) + f > max_image_blocks)
		f--;
	return (uint32_t)((uint64_t)f * k > UINT32_MAX ? UINT32_MAX : (uint64_t)f * k);
}

/* ec_frag_seal with the CRC of the fragment's data already known (frag_crc). */
static void frag_seal_crc(struct ec_frag_info *f, uint8_t *image, uint32_t frag_crc)
{
	const uint8_t *data = image + ec_frag_data_offset(&f->geom);

	f->table_crc = ec_frag_table_fill(data, f->geom.frag_blocks, image + EC_BLOCK);
	f->frag_crc = frag_crc;
	memset(image, 0, EC_BLOCK);
	ec_frag_hdr_encode(f, image);
}

void ec_frag_seal(struct ec_frag_info *f, uint8_t *image)
{
	frag_seal_crc(f, image, crc32c(image + ec_frag_data_offset(&f->geom),
				       ec_geom_frag_bytes(&f->geom)));
}

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

int ec_frag_verify(const void *image, size_t len, struct ec_frag_info *f)
{
	const uint8_t *p = image, *table = p + EC_BLOCK, *data;
	struct ec_frag_info d;
	int r = ec_frag_hdr_decode(p, len, &d);

	if (r < 0)
		return r;
	if (len != ec_frag_image_bytes(&d.geom))
		return -EINVAL;
	if (!all_zero(p + sizeof(struct ec_frag_hdr), EC_BLOCK - sizeof(struct ec_frag_hdr)) ||
	    !all_zero(table + (size_t)d.geom.frag_blocks * 4,
		      (size_t)ec_frag_table_blocks(d.geom.frag_blocks) * EC_BLOCK -
			      (size_t)d.geom.frag_blocks * 4))
		return -EPROTO;
	if (crc32c(table, (size_t)d.geom.frag_blocks * 4) != d.table_crc)
		return -EILSEQ;
	data = p + ec_frag_data_offset(&d.geom);
	for (uint32_t i = 0; i < d.geom.frag_blocks; i++)
		if (ec_frag_block_check(table, d.geom.frag_blocks, i, data + (size_t)i * EC_BLOCK))
			return -EILSEQ;
	if (crc32c(data, ec_geom_frag_bytes(&d.geom)) != d.frag_crc)
		return -EILSEQ;
	*f = d;
	return 0;
}

int ec_frag_scrub(const void *image, size_t len, const struct ec_geom *g, unsigned index,
		  uint32_t *crcs, uint32_t *bad, uint32_t *nbad, uint32_t *frag_crc)
{
	const uint8_t *p = image, *table = p + EC_BLOCK, *data = p + ec_frag_data_offset(g);
	uint32_t F = g->frag_blocks;
	struct ec_frag_info h;
	bool table_bad;

	if (len != ec_frag_image_bytes(g))
		return -EINVAL;
	table_bad = ec_frag_hdr_decode(p, len, &h) < 0 || h.geom.k != g->k ||
		    h.geom.m != g->m || h.geom.seg_blocks != g->seg_blocks || h.index != index ||
		    crc32c(table, (size_t)F * 4) != h.table_crc;
	*nbad = 0;
	*frag_crc = crc32c(data, ec_geom_frag_bytes(g));
	for (uint32_t i = 0; i < F; i++) {
		crcs[i] = crc32c(data + (size_t)i * EC_BLOCK, EC_BLOCK);
		if (table_bad || crcs[i] != (uint32_t)get_le(table + (size_t)i * 4, 4))
			bad[(*nbad)++] = i;
	}
	return table_bad ? 1 : 0;
}

int ec_stripe_images(struct ec_code *code, const struct ec_geom *g, const void *seg,
		     uint64_t family, uint32_t seq, uint64_t epoch, uint8_t *const *images)
{
	uint8_t *frags[EC_N_MAX];
	uint32_t crcs[EC_N_MAX];
	size_t off = ec_frag_data_offset(g);
	unsigned n = g->k + g->m;
	int r;

	if (ec_code_k(code) != g->k || ec_code_m(code) != g->m)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		frags[i] = images[i] + off;
	ec_stripe_split(g, seg, frags);
	r = ec_stripe_encode(code, g, frags, crcs);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < n; i++) {
		struct ec_frag_info f = { .geom = *g, .index = i, .family = family, .seq = seq,
					  .epoch = epoch };

		/* crcs[i] is the CRC of fragment i's data as ec_stripe_encode left it: not
		 * computed a second time (a pass over every image on the worker) */
		frag_seal_crc(&f, images[i], crcs[i]);
	}
	return 0;
}
