/* tools/ec_check.c — quill-ec-check: checks fragment images (replication/ec_format.h)
 * as a holder keeps them, apart from any node's claims about them.
 *
 *   quill-ec-check verify IMAGE...
 *       each image whole (ec_frag_verify: header, table, every block, frag_crc); one
 *       line per image: "FILE family.seq index K+M L=.. F=.. crc=XXXXXXXX epoch=.."
 *   quill-ec-check decode SEGMENT IMAGE...
 *       the K+M images of one stripe (any order): every set of K of them decodes
 *       (ec_stripe_repair, the others lost) to the first L blocks of SEGMENT (a file
 *       holding the segment's bytes, e.g. its slot cut from a store)
 *
 * Exit status: 0 all good, 1 a check failed (why on stderr), 2 bad usage.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replication/ec.h"
#include "replication/ec_format.h"

struct image {
	const char *path;
	uint8_t *buf;
	size_t len;
	struct ec_frag_info f;
};

static int load(const char *path, struct image *im)
{
	FILE *fp = fopen(path, "rb");
	long n;

	im->path = path;
	if (!fp || fseek(fp, 0, SEEK_END) < 0 || (n = ftell(fp)) <= 0 || fseek(fp, 0, SEEK_SET) < 0)
		goto err;
	im->len = (size_t)n;
	im->buf = malloc(im->len);
	if (!im->buf || fread(im->buf, 1, im->len, fp) != im->len)
		goto err;
	fclose(fp);
	return 0;
err:
	fprintf(stderr, "quill-ec-check: %s: cannot read it\n", path);
	if (fp)
		fclose(fp);
	free(im->buf);
	im->buf = NULL;
	return -EIO;
}

/* Loads and verifies an image; its header's length decides how much of the file is
 * the image (a slot cut whole holds more). */
static int load_verified(const char *path, struct image *im)
{
	struct ec_frag_info f;
	int r = load(path, im);

	if (r == 0 && (r = ec_frag_hdr_decode(im->buf, im->len, &f)) == 0) {
		size_t want = ec_frag_image_bytes(&f.geom);

		r = want <= im->len ? ec_frag_verify(im->buf, want, &im->f) : -EINVAL;
	}
	if (r < 0) {
		fprintf(stderr, "quill-ec-check: %s: not a good fragment image: %s\n", path,
			strerror(-r));
		free(im->buf);
		im->buf = NULL;
	}
	return r;
}

static int cmd_verify(int argc, char **argv)
{
	int bad = 0;

	for (int i = 0; i < argc; i++) {
		struct image im = { 0 };

		if (load_verified(argv[i], &im) == 0)
			printf("%s %016llx.%08x %u %u+%u L=%u F=%u crc=%08x epoch=%llu\n", argv[i],
			       (unsigned long long)im.f.family, im.f.seq, im.f.index, im.f.geom.k,
			       im.f.geom.m, im.f.geom.seg_blocks, im.f.geom.frag_blocks,
			       im.f.frag_crc, (unsigned long long)im.f.epoch);
		else
			bad = 1;
		free(im.buf);
	}
	return bad;
}

/* Decodes from the K images of mask `keep` (bit i: the image of index i) and compares
 * with seg. 0 or -EILSEQ/-EIO. */
static int decode_from(struct ec_code *code, const struct image *by_index, uint32_t keep,
		       const uint8_t *seg, uint8_t *const *frags, uint8_t *out)
{
	const struct ec_geom *g = &by_index[0].f.geom;
	size_t fb = ec_geom_frag_bytes(g), off = ec_frag_data_offset(g);
	uint32_t crcs[EC_N_MAX], n = g->k + g->m;
	int r;

	for (uint32_t i = 0; i < n; i++) {
		crcs[i] = by_index[i].f.frag_crc;
		if (keep & (1u << i))
			memcpy(frags[i], by_index[i].buf + off, fb);
		else
			memset(frags[i], 0xa5, fb); /* lost: must not matter */
	}
	r = ec_stripe_repair(code, g, frags, crcs, ((1u << n) - 1) & ~keep, NULL);
	if (r < 0)
		return r;
	ec_stripe_join(g, frags, out);
	return memcmp(out, seg, (size_t)g->seg_blocks * EC_BLOCK) == 0 ? 0 : -EILSEQ;
}

/* a and b are fragments of one segment cut the same way (an encoding again at a later
 * epoch cuts it alike) */
static bool same_stripe(const struct ec_frag_info *a, const struct ec_frag_info *b)
{
	return a->family == b->family && a->seq == b->seq &&
	       memcmp(&a->geom, &b->geom, sizeof(a->geom)) == 0;
}

static int cmd_decode(int argc, char **argv)
{
	struct image ref = { 0 }, by_index[EC_N_MAX] = { 0 }, im;
	uint8_t *frags[EC_N_MAX] = { 0 }, *out = NULL;
	struct ec_code *code = NULL;
	const struct ec_geom *g;
	unsigned n, subsets = 0;
	struct ec_frag_info first = { 0 };
	int r = 1;

	if (argc < 2 || load(argv[0], &ref) < 0)
		return 1;
	for (int i = 1; i < argc; i++) {
		memset(&im, 0, sizeof(im));
		if (load_verified(argv[i], &im) < 0)
			goto out;
		if (i == 1)
			first = im.f;
		/* decode_from takes every image's geometry from the first */
		if (by_index[im.f.index].buf || !same_stripe(&im.f, &first)) {
			fprintf(stderr, "quill-ec-check: %s: not another fragment of the stripe\n",
				argv[i]);
			free(im.buf);
			goto out;
		}
		by_index[im.f.index] = im;
	}
	g = NULL;
	for (unsigned i = 0; i < EC_N_MAX && !g; i++)
		if (by_index[i].buf)
			g = &by_index[i].f.geom;
	n = g->k + g->m;
	for (unsigned i = 0; i < n; i++)
		if (!by_index[i].buf) {
			fprintf(stderr, "quill-ec-check: fragment %u of the stripe is not given\n", i);
			goto out;
		}
	if (ref.len < (size_t)g->seg_blocks * EC_BLOCK) {
		fprintf(stderr, "quill-ec-check: %s is shorter than the segment's %u blocks\n",
			argv[0], g->seg_blocks);
		goto out;
	}
	if (ec_code_create(g->k, g->m, &code) < 0)
		goto out;
	for (unsigned i = 0; i < n; i++)
		if (!(frags[i] = malloc(ec_geom_frag_bytes(g))))
			goto out;
	if (!(out = malloc((size_t)g->k * ec_geom_frag_bytes(g))))
		goto out;
	for (uint32_t keep = 0; keep < (1u << n); keep++) {
		if ((unsigned)__builtin_popcount(keep) != g->k)
			continue;
		if (decode_from(code, by_index, keep, ref.buf, frags, out) < 0) {
			fprintf(stderr, "quill-ec-check: fragments 0x%x do not decode to %s\n", keep,
				argv[0]);
			goto out;
		}
		subsets++;
	}
	printf("%u sets of %u fragments decode to the segment (%u blocks)\n", subsets, g->k,
	       g->seg_blocks);
	r = 0;
out:
	for (unsigned i = 0; i < EC_N_MAX; i++) {
		free(frags[i]);
		free(by_index[i].buf);
	}
	free(out);
	free(ref.buf);
	ec_code_destroy(code);
	return r;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "verify") == 0)
		return cmd_verify(argc - 2, argv + 2);
	if (argc >= 4 && strcmp(argv[1], "decode") == 0)
		return cmd_decode(argc - 2, argv + 2);
	fprintf(stderr, "usage: quill-ec-check verify IMAGE...\n"
			"       quill-ec-check decode SEGMENT IMAGE...\n");
	return 2;
}
