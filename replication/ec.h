/* replication/ec.h — the Reed-Solomon codec of erasure-coded volumes (issue 13) and the
 * geometry of a sealed segment cut into a stripe (spec: docs/erasure-coding.md; the
 * fragment's on-disk/on-wire header: replication/ec_format.h).
 *
 * A code K+M (1 ≤ K ≤ 16, 1 ≤ M ≤ 4, K+M ≤ 20) encodes K data fragments of equal
 * length into M parity fragments with ISA-L over a Cauchy matrix
 * (gf_gen_cauchy1_matrix: every K×K submatrix of its K+M rows is invertible, so any
 * K fragments rebuild the others). Fragments are numbered 0..K-1 (data) and
 * K..K+M-1 (parity); a set of fragments is a bit mask (bit i: fragment i).
 *
 * A sealed segment of L blocks (L ≥ 1, 4 KiB each) is cut into K data fragments of
 * F = ceil(L/K) blocks each, *contiguous*: data fragment i holds the segment's blocks
 * [i·F, (i+1)·F). The K·F − L blocks past the segment's end are zeros (the padding,
 * recorded as pad_blocks). A healthy read of block b reads block b mod F of data
 * fragment b / F, one fragment, no decode (ec_geom_locate).
 *
 * Threading: a struct ec_code caches decode tables, so one thread at a time uses it
 * (each reactor makes its own: they are small). The geometry functions are pure.
 */
#ifndef QUILL_REPLICATION_EC_H
#define QUILL_REPLICATION_EC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EC_K_MAX 16u
#define EC_M_MAX 4u
#define EC_N_MAX 20u /* K + M */
#define EC_BLOCK 4096u

struct ec_code;

/* -EINVAL unless 1 ≤ k ≤ EC_K_MAX, 1 ≤ m ≤ EC_M_MAX, k + m ≤ EC_N_MAX; -ENOMEM. */
int ec_code_create(unsigned k, unsigned m, struct ec_code **out);
/* NULL ok. */
void ec_code_destroy(struct ec_code *code);
unsigned ec_code_k(const struct ec_code *code);
unsigned ec_code_m(const struct ec_code *code);

/* The M parity fragments of the K data fragments, len bytes each (any len ≥ 1;
 * multiples of 64 run fastest). data[K] and parity[M] must not overlap. */
void ec_encode(struct ec_code *code, size_t len, uint8_t *const *data, uint8_t *const *parity);

/* Rebuilds the fragments of `lost` (a mask over 0..K+M-1) in place from the first K
 * others: frags[K+M] are all len-byte buffers, the others holding their fragment.
 * The tables of a loss pattern are cached (a few patterns), so that a degraded read
 * of one block does not invert a matrix each time. 0 (also when lost is 0);
 * -EINVAL for a bit past K+M or a len of 0 or above INT_MAX (ISA-L's int);
 * -EIO when more than M are lost (nothing is written). */
/* The code works byte by byte position: the same slice of every fragment (block j of
 * each: frags[i] + j·EC_BLOCK, len EC_BLOCK) decodes to that slice of the lost ones,
 * which is how a degraded read rebuilds one block without reading whole fragments. */
int ec_decode(struct ec_code *code, size_t len, uint8_t *const *frags, uint32_t lost);

/* ---- the stripe of one sealed segment ---- */
struct ec_geom {
	uint32_t k, m;
	uint32_t seg_blocks;  /* L: the segment's sealed length in blocks */
	uint32_t frag_blocks; /* F = ceil(L / K): every fragment's length in blocks */
	uint32_t pad_blocks;  /* K·F − L: zero blocks at the end of the data fragments */
};

/* -EINVAL for a code out of range (as ec_code_create) or seg_blocks of 0 (an empty
 * sealed segment is deleted, never encoded). */
int ec_geom_init(struct ec_geom *g, unsigned k, unsigned m, uint32_t seg_blocks);

/* Where a healthy read finds block seg_block of the segment: the data fragment and
 * the block inside it. -ERANGE at or past seg_blocks (padding is no block). */
int ec_geom_locate(const struct ec_geom *g, uint32_t seg_block, uint32_t *frag,
		   uint32_t *frag_block);

/* A run of the segment's blocks as the data fragments hold it (a fetch from fragments,
 * docs/erasure-coding.md "Reads from fragments"): fragments being contiguous, blocks
 * [first, first + count) are one piece of each data fragment they touch (one or two
 * for a run shorter than F), in ascending order. */
struct ec_piece {
	uint32_t frag;       /* the data fragment */
	uint32_t frag_block; /* its first block in that fragment */
	uint32_t seg_block;  /* ... which is this block of the segment */
	uint32_t nblocks;
};
/* Fills out[] (room for g->k pieces) and returns how many; -ERANGE for a run that is
 * empty or ends past seg_blocks. */
int ec_geom_run(const struct ec_geom *g, uint32_t first, uint32_t count, struct ec_piece *out);
/* The rows a degraded read of those pieces needs of every fragment (a decode works row
 * by row: block j of each fragment rebuilds block j of the lost ones), in ranges of at
 * most max rows (a FRAG_READ's limit): the first range at or after row `from`, as
 * [*row, *row + *nrows), true; false when no piece has a row at or after from. A range
 * holds only rows some piece needs: a run across a fragment's end needs the tail rows
 * of one fragment and the head rows of the next, two ranges, not the rows between
 * them. Walk them with from = 0, then from = *row + *nrows. */
bool ec_pieces_rows_next(const struct ec_piece *p, unsigned n, uint32_t from, uint32_t max,
			 uint32_t *row, uint32_t *nrows);

/* Bytes of each fragment: frag_blocks · EC_BLOCK. */
size_t ec_geom_frag_bytes(const struct ec_geom *g);

/* Cuts the segment's L blocks (seg, L·EC_BLOCK bytes) into the K data fragments
 * (frags[0..K-1], ec_geom_frag_bytes each), zeroing the padding. */
void ec_stripe_split(const struct ec_geom *g, const void *seg, uint8_t *const *frags);
/* The reverse: the L blocks of the segment from its K data fragments. */
void ec_stripe_join(const struct ec_geom *g, uint8_t *const *frags, void *seg);

/* Encodes the stripe and fills crcs[K+M] with each fragment's CRC32C (of its
 * frag_bytes). frags[K..K+M-1] receive the parity. -EINVAL when the code is not g's. */
int ec_stripe_encode(struct ec_code *code, const struct ec_geom *g, uint8_t *const *frags,
		     uint32_t *crcs);

/* Repairs a stripe whose fragments of `missing` could not be read: each fragment
 * read is checked against crcs[i] first and one that fails is treated as lost too;
 * then every lost fragment is rebuilt and checked against its CRC. *lost_out (may be
 * NULL) is the mask rebuilt. 0; -EIO when more than M are lost (missing or bad);
 * -EILSEQ when a rebuilt fragment does not match its CRC (a wrong CRC or a
 * survivor bad in a way its own CRC did not catch); -EINVAL as ec_stripe_encode. */
int ec_stripe_repair(struct ec_code *code, const struct ec_geom *g, uint8_t *const *frags,
		     const uint32_t *crcs, uint32_t missing, uint32_t *lost_out);

#endif
