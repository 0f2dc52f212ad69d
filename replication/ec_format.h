/* replication/ec_format.h — a fragment of an erasure-coded stripe, on disk and on the
 * wire (spec: docs/erasure-coding.md, "Fragment format"; the codec: ec.h).
 *
 * All integers are little-endian. The packed struct documents the layout and pins its
 * size; the decoder reads fields at their offsets and checks every one first.
 *
 * A fragment is F data blocks (4 KiB) described by a header block and a table of
 * per-block CRC32Cs, in this order wherever it is kept or sent:
 *
 *   | header block (ec_frag_hdr, zero-padded to 4096) | CRC table | F data blocks |
 *
 * The CRC table is F little-endian CRC32Cs, one per data block, zero-padded to whole
 * blocks (ec_frag_table_blocks). It lets a healthy read of one block check that block
 * alone, without reading the F blocks of its fragment; frag_crc, the CRC32C of all F
 * blocks, is what the stripe's record and a scrub check the fragment against, and
 * table_crc guards the table itself.
 */
#ifndef QUILL_REPLICATION_EC_FORMAT_H
#define QUILL_REPLICATION_EC_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "replication/ec.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "quill's formats are little-endian and the codecs assume a little-endian host"
#endif

#define EC_FRAG_MAGIC UINT64_C(0x4752464c4c495551) /* "QUILLFRG" */
#define EC_FRAG_VERSION 1u

struct __attribute__((packed)) ec_frag_hdr {
	uint64_t magic;       /* EC_FRAG_MAGIC */
	uint16_t version;     /* EC_FRAG_VERSION */
	uint8_t k, m;         /* the code: 1..16, 1..4, k + m ≤ 20 */
	uint8_t index;        /* 0..k-1 data, k..k+m-1 parity */
	uint8_t reserved0[3]; /* zero */
	uint64_t family;      /* the segment's id: family uid ... */
	uint32_t seq;         /* ... and segment number */
	uint32_t seg_blocks;  /* L: the sealed segment's length, blocks */
	uint32_t frag_blocks; /* F = ceil(L / k) */
	uint32_t pad_blocks;  /* k·F − L: zero blocks ending the data fragments */
	uint32_t frag_crc;    /* CRC32C of the F data blocks */
	uint32_t table_crc;   /* CRC32C of the F block CRCs (4·F bytes, no padding) */
	uint64_t epoch;       /* the family's epoch the stripe was encoded under */
	uint32_t reserved1;   /* zero */
	uint32_t hdr_crc;     /* CRC32C of the 64 bytes with this field zero */
};
_Static_assert(sizeof(struct ec_frag_hdr) == 64, "fragment header is 64 bytes");
_Static_assert(offsetof(struct ec_frag_hdr, index) == 12, "index offset");
_Static_assert(offsetof(struct ec_frag_hdr, family) == 16, "family offset");
_Static_assert(offsetof(struct ec_frag_hdr, seg_blocks) == 28, "seg_blocks offset");
_Static_assert(offsetof(struct ec_frag_hdr, frag_crc) == 40, "frag_crc offset");
_Static_assert(offsetof(struct ec_frag_hdr, epoch) == 48, "epoch offset");
_Static_assert(offsetof(struct ec_frag_hdr, hdr_crc) == 60, "hdr_crc at the end");

/* In memory. */
struct ec_frag_info {
	struct ec_geom geom;
	unsigned index;
	uint64_t family;
	uint32_t seq;
	uint32_t frag_crc, table_crc;
	uint64_t epoch;
};

/* Writes the 64-byte header (buf: at least sizeof(struct ec_frag_hdr)). */
void ec_frag_hdr_encode(const struct ec_frag_info *f, void *buf);
/* -EINVAL shorter than the header; -EPROTO not a fragment header, a reserved field
 * set, or a geometry that does not hold (code out of range, index ≥ k+m,
 * F ≠ ceil(L/k), pad ≠ k·F − L, L = 0); -EPROTONOSUPPORT another version; -EILSEQ a
 * bad hdr_crc. */
int ec_frag_hdr_decode(const void *buf, size_t len, struct ec_frag_info *f);

/* Blocks of the CRC table of a fragment of frag_blocks blocks. */
uint32_t ec_frag_table_blocks(uint32_t frag_blocks);
/* Fills the table (ec_frag_table_blocks blocks, padding zeroed) with the CRC32C of
 * each of the fragment's blocks, and returns the table's CRC (table_crc). */
uint32_t ec_frag_table_fill(const uint8_t *frag, uint32_t frag_blocks, void *table);
/* Checks block i (4096 bytes) against the table: 0, -EILSEQ, -ERANGE past F. */
int ec_frag_block_check(const void *table, uint32_t frag_blocks, uint32_t i,
			const void *block);
/* The table blocks holding the CRCs of data blocks [block, block + n) (n ≥ 1): from
 * table block *first, *count of them (what a read of that run reads of the table). */
void ec_frag_table_span(uint32_t block, uint32_t n, uint32_t *first, uint32_t *count);
/* Checks data blocks [block, block + n) (blocks, n × 4096 bytes) against part, the
 * table's blocks from `first` on (ec_frag_table_span): 0, or -EILSEQ. */
int ec_frag_run_check(const void *part, uint32_t first, uint32_t block, uint32_t n,
		      const void *blocks);

/* ---- a whole fragment image: header block | CRC table | data ---- */

/* Bytes of the image of a fragment of g: (1 + table blocks + F) blocks. */
size_t ec_frag_image_bytes(const struct ec_geom *g);
/* The longest segment (blocks) whose fragments at K = k have images of at most
 * max_image_blocks (what one FRAG_PUT carries): K·F for the largest such F; 0 when
 * not even one data block fits. */
uint32_t ec_frag_max_seg_blocks(unsigned k, uint32_t max_image_blocks);
/* Where its data starts: (1 + table blocks) blocks. The encoder points the codec at
 * image + this, so that parity is written in place. */
size_t ec_frag_data_offset(const struct ec_geom *g);
/* Completes an image whose data is in place: fills the CRC table, f->frag_crc and
 * f->table_crc, and the header block (the header, then zeros). f's geometry, index,
 * segment id and epoch are the caller's. */
void ec_frag_seal(struct ec_frag_info *f, uint8_t *image);
/* Checks a whole image as received or read back: its header (ec_frag_hdr_decode's
 * errors), len equal to the image of that geometry (-EINVAL), the header block's
 * and the table's padding zero (-EPROTO), the table against table_crc and every data block against
 * the table (-EILSEQ), and the data against frag_crc (-EILSEQ). Fills *f. */
int ec_frag_verify(const void *image, size_t len, struct ec_frag_info *f);

/* Checks a fragment image where it is kept (a scrub), of geometry g and index `index`
 * as the holder's record says (its header is checked, not trusted): crcs[F] gets the
 * CRC32C of each data block as it is, *frag_crc that of the F blocks, and bad[] the
 * numbers of the blocks that fail the table (*nbad of them, ascending). Returns 0, or
 * 1 when the header does not decode or does not name this geometry and index, or the
 * table fails its table_crc: then nothing says what a block must be and every block
 * is counted bad. -EINVAL when len is not the image of g. */
int ec_frag_scrub(const void *image, size_t len, const struct ec_geom *g, unsigned index,
		  uint32_t *crcs, uint32_t *bad, uint32_t *nbad, uint32_t *frag_crc);

/* The owner's encoding of a sealed segment (seg: its g->seg_blocks blocks) into the
 * K+M fragment images of its stripe, each sealed and ready for FRAG_PUT: the data cut
 * into the data fragments in place (padding zeroed), the parity encoded in place, every
 * header naming (family, seq, epoch) and its index. images[K+M] are the caller's,
 * ec_frag_image_bytes(g) each (any content). -EINVAL when the code is not g's. CPU
 * work of a whole segment: off the loop thread. */
int ec_stripe_images(struct ec_code *code, const struct ec_geom *g, const void *seg,
		     uint64_t family, uint32_t seq, uint64_t epoch, uint8_t *const *images);

#endif
