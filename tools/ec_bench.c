/* tools/ec_bench.c — quill-ec-bench: the ISA-L Reed-Solomon codec (replication/ec.h)
 * on one core, over whole segments: encode, and decode with 1 and with M fragments
 * lost, for 2+1, 4+2, 8+3 (or the codes given).
 *
 *   quill-ec-bench [--segment-mib N] [--seconds S] [K+M ...]
 *
 * GB/s counts the segment's data bytes (L blocks) per second: what encoding a
 * sealed segment, or reading it degraded, gets through. block-1 is the CPU time of a
 * degraded read of one 4 KiB block (one data fragment lost: that block rebuilt from
 * the same block of K others, tables cached), in microseconds. images is what the
 * owner's encoder does per sealed segment (ec_stripe_images: the data cut into the
 * fragments' images, parity, every block's CRC, the fragment CRCs and headers), in
 * GB/s and sealed segments per second on one core. One row per code:
 *   code  segment  encode GB/s  decode-1 GB/s  decode-M GB/s  block-1 us  images GB/s  seg/s
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "replication/ec.h"
#include "replication/ec_format.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct run {
	struct ec_code *code;
	struct ec_geom g;
	uint8_t *frags[EC_N_MAX];
	double seconds;
};

/* Microseconds per degraded read of one block: block 0 of data fragment 0 rebuilt. */
static double block_us(struct run *r)
{
	double start = now_s(), t;
	unsigned long n = 0;

	do {
		for (int i = 0; i < 256; i++, n++)
			if (ec_decode(r->code, EC_BLOCK, r->frags, 1u) < 0)
				return -1;
		t = now_s() - start;
	} while (t < r->seconds / 4);
	return t * 1e6 / (double)n;
}

/* GB/s of segment data over `seconds` of repeated encodes (lost = 0) or decodes. */
static double measure(struct run *r, uint32_t lost)
{
	size_t fb = ec_geom_frag_bytes(&r->g);
	double start = now_s(), t;
	unsigned long n = 0;

	do {
		for (int i = 0; i < 8; i++, n++) {
			if (lost == 0)
				ec_encode(r->code, fb, r->frags, r->frags + r->g.k);
			else if (ec_decode(r->code, fb, r->frags, lost) < 0)
				return -1;
		}
		t = now_s() - start;
	} while (t < r->seconds);
	return (double)n * r->g.seg_blocks * EC_BLOCK / t / 1e9;
}

/* GB/s of segment data through ec_stripe_images (the encoder's job on its worker). */
static double measure_images(struct run *r)
{
	size_t ib = ec_frag_image_bytes(&r->g), sb = (size_t)r->g.seg_blocks * EC_BLOCK;
	uint8_t *images[EC_N_MAX] = { 0 }, *seg = aligned_alloc(64, sb);
	double start = now_s(), t = -1;
	unsigned long n = 0;
	unsigned i;

	for (i = 0; seg && i < r->g.k + r->g.m; i++)
		if (!(images[i] = aligned_alloc(4096, ib)))
			break;
	if (seg && i == r->g.k + r->g.m) {
		for (size_t j = 0; j < sb; j++)
			seg[j] = (uint8_t)(j * 7);
		do {
			for (int x = 0; x < 4; x++, n++)
				if (ec_stripe_images(r->code, &r->g, seg, 1, 1, 1, images) < 0)
					goto out;
			t = now_s() - start;
		} while (t < r->seconds);
		t = (double)n * (double)sb / t / 1e9;
	}
out:
	for (i = 0; i < EC_N_MAX; i++)
		free(images[i]);
	free(seg);
	return t;
}

static int bench_code(unsigned k, unsigned m, unsigned seg_mib, double seconds)
{
	struct run r = { .seconds = seconds };
	int rc = ec_code_create(k, m, &r.code);

	if (rc < 0) {
		fprintf(stderr, "quill-ec-bench: %u+%u: %s\n", k, m, strerror(-rc));
		return rc;
	}
	rc = ec_geom_init(&r.g, k, m, seg_mib * (1u << 20) / EC_BLOCK);
	for (unsigned i = 0; rc == 0 && i < k + m; i++) {
		r.frags[i] = aligned_alloc(64, ec_geom_frag_bytes(&r.g));
		if (!r.frags[i])
			rc = -ENOMEM;
		else
			for (size_t j = 0; j < ec_geom_frag_bytes(&r.g); j++)
				r.frags[i][j] = (uint8_t)(j * 31 + i);
	}
	if (rc == 0) {
		double enc = measure(&r, 0);
		double dec1 = measure(&r, 1u);               /* data fragment 0 */
		double decm = measure(&r, (1u << m) - 1);    /* the first M data (or all) */

		double blk = block_us(&r);
		double img = measure_images(&r);
		char name[16];

		snprintf(name, sizeof(name), "%u+%u", k, m);
		printf("%-6s %4u MiB  %8.2f  %8.2f  %8.2f  %8.2f  %8.2f  %8.0f\n", name, seg_mib, enc,
		       dec1, decm, blk, img, img * 1e9 / (double)seg_mib / (1u << 20));
	}
	for (unsigned i = 0; i < k + m; i++)
		free(r.frags[i]);
	ec_code_destroy(r.code);
	return rc;
}

int main(int argc, char **argv)
{
	static const char *defaults[] = { "2+1", "4+2", "8+3" };
	unsigned seg_mib = 4;
	double seconds = 1.0;
	int i = 1, first_code, ncodes;
	const char **codes;

	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (i + 1 >= argc)
			goto usage;
		if (strcmp(argv[i], "--segment-mib") == 0)
			seg_mib = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--seconds") == 0)
			seconds = strtod(argv[i + 1], NULL);
		else
			goto usage;
	}
	if (seg_mib == 0 || seg_mib > 1024 || !(seconds > 0))
		goto usage;
	first_code = i;
	ncodes = argc - i;
	codes = ncodes ? (const char **)argv + first_code : defaults;
	if (!ncodes)
		ncodes = 3;
	printf("ISA-L Reed-Solomon on one core, GB/s of segment data\n");
	printf("%-6s %8s  %8s  %8s  %8s  %8s  %8s  %8s\n", "code", "segment", "encode",
	       "decode-1", "decode-M", "block-1", "images", "images");
	printf("%-6s %8s  %8s  %8s  %8s  %8s  %8s  %8s\n", "", "", "GB/s", "GB/s", "GB/s", "us",
	       "GB/s", "seg/s");
	for (int c = 0; c < ncodes; c++) {
		unsigned k, m;
		char tail;

		if (sscanf(codes[c], "%u+%u%c", &k, &m, &tail) != 2)
			goto usage;
		if (bench_code(k, m, seg_mib, seconds) < 0)
			return 1;
	}
	return 0;
usage:
	fprintf(stderr, "usage: quill-ec-bench [--segment-mib N] [--seconds S] [K+M ...]\n");
	return 2;
}
