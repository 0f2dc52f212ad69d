/* tests/unit/engine/test_ondisk.c — engine/ondisk.c: every codec round-trips, and every
 * decoder refuses a short buffer, a missing magic, a flipped byte and impossible fields.
 *
 * An impossible field is crafted on the encoded bytes and the record re-sealed with a
 * valid CRC (reseal()), so that the decoder's field checks, not its CRC check, refuse it.
 */
#include "engine/ondisk.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "common/crc32c.h"
#include "engine/engine_internal.h"

/* Recomputes the CRC of an encoded record whose crc field is at crc_off. */
static void reseal(void *buf, size_t len, size_t crc_off)
{
	uint32_t crc = 0;

	memcpy((uint8_t *)buf + crc_off, &crc, sizeof(crc));
	crc = crc32c(buf, len);
	memcpy((uint8_t *)buf + crc_off, &crc, sizeof(crc));
}

/* Where the re-sealed decodes put what they accept. */
static struct superblock sb_out;
static struct segment_header hdr_out;
static struct summary sum_out;
static struct volume_record vol_out;

/* Decodes an encoded record (an lvalue with a crc field) after re-sealing it. */
#define DECODE_RESEALED(decode, rec, out) \
	(reseal(&(rec), sizeof(rec), offsetof(__typeof__(rec), crc)), \
	 decode(&(rec), sizeof(rec), (out)))

/* ---- superblock ---- */

static const struct superblock good_sb = {
	.uuid = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 },
	.block_size = QUILL_BLOCK_SIZE,
	.segment_size = 1u << 20,
	.segment_count = 7,
	.data_offset = QUILL_DATA_OFFSET,
	.device_size = QUILL_DATA_OFFSET + 7ull * (1u << 20) + 12345,
	.created_ns = 0x1122334455667788ull,
};

static struct ondisk_superblock sb_encoded(void)
{
	struct ondisk_superblock d;

	ondisk_superblock_encode(&good_sb, &d);
	return d;
}

Test(ondisk, superblock_round_trip)
{
	struct ondisk_superblock d = sb_encoded();
	struct superblock sb;

	cr_assert_eq(d.magic, QUILL_SB_MAGIC);
	cr_assert_eq(d.version, QUILL_FORMAT_VERSION);
	cr_assert_eq(ondisk_superblock_decode(&d, sizeof(d), &sb), 0);
	cr_assert_arr_eq(sb.uuid, good_sb.uuid, sizeof(sb.uuid));
	cr_assert_eq(sb.block_size, good_sb.block_size);
	cr_assert_eq(sb.segment_size, good_sb.segment_size);
	cr_assert_eq(sb.segment_count, good_sb.segment_count);
	cr_assert_eq(sb.data_offset, good_sb.data_offset);
	cr_assert_eq(sb.device_size, good_sb.device_size);
	cr_assert_eq(sb.created_ns, good_sb.created_ns);
}

Test(ondisk, superblock_rejects_short_buffer)
{
	struct ondisk_superblock d = sb_encoded();
	struct superblock sb;

	cr_assert_eq(ondisk_superblock_decode(&d, sizeof(d) - 1, &sb), -EINVAL);
}

Test(ondisk, superblock_rejects_wrong_magic)
{
	struct ondisk_superblock d = sb_encoded();
	struct superblock sb;

	d.magic = QUILL_SEG_MAGIC;
	cr_assert_eq(ondisk_superblock_decode(&d, sizeof(d), &sb), -ENOENT);
}

Test(ondisk, superblock_rejects_bad_crc)
{
	struct ondisk_superblock d = sb_encoded();
	struct superblock sb;

	d.reserved[100] ^= 0x01; /* even a reserved byte is covered */
	cr_assert_eq(ondisk_superblock_decode(&d, sizeof(d), &sb), -EILSEQ);
	d = sb_encoded();
	d.segment_count++;
	cr_assert_eq(ondisk_superblock_decode(&d, sizeof(d), &sb), -EILSEQ);
}

Test(ondisk, superblock_rejects_unknown_version)
{
	struct ondisk_superblock d = sb_encoded();

	d.version = QUILL_FORMAT_VERSION + 1;
	cr_assert_eq(DECODE_RESEALED(ondisk_superblock_decode, d, &sb_out), -EPROTO);
}

Test(ondisk, superblock_of_an_older_version_is_refused_and_says_so)
{
	struct ondisk_superblock d = sb_encoded();

	cr_assert_eq(QUILL_FORMAT_VERSION, 5);
	cr_assert_eq(ondisk_superblock_version(&d, sizeof(d)), 5);
	d.version = 4; /* no family checkpoints: would take them for a damaged summary */
	cr_assert_eq(DECODE_RESEALED(ondisk_superblock_decode, d, &sb_out), -EPROTO);
	cr_assert_eq(ondisk_superblock_version(&d, sizeof(d)), 4);
	d.version = 3; /* segments named by slot, volumes by the store's counter */
	cr_assert_eq(DECODE_RESEALED(ondisk_superblock_decode, d, &sb_out), -EPROTO);
	cr_assert_eq(ondisk_superblock_version(&d, sizeof(d)), 3);
	d.version = 2; /* no ZERO entries: would take them for a damaged summary */
	cr_assert_eq(DECODE_RESEALED(ondisk_superblock_decode, d, &sb_out), -EPROTO);
	cr_assert_eq(ondisk_superblock_version(&d, sizeof(d)), 2);
	d.version = 1; /* summaries without a durable mark */
	cr_assert_eq(DECODE_RESEALED(ondisk_superblock_decode, d, &sb_out), -EPROTO);
	cr_assert_eq(ondisk_superblock_version(&d, sizeof(d)), 1);
	d.magic = 0;
	cr_assert_eq(ondisk_superblock_version(&d, sizeof(d)), 0, "no magic: no version");
}

Test(ondisk, superblock_rejects_other_block_size)
{
	struct ondisk_superblock d = sb_encoded();

	d.block_size = 512;
	cr_assert_eq(DECODE_RESEALED(ondisk_superblock_decode, d, &sb_out), -EPROTO);
}

Test(ondisk, superblock_rejects_impossible_geometry)
{
	static const struct {
		const char *what;
		uint32_t segment_size, segment_count;
		uint64_t data_offset, device_size;
	} cases[] = {
		{ "segment below 16 blocks", 15 * QUILL_BLOCK_SIZE, 1, 4096, 1ull << 30 },
		{ "segment not block-aligned", 16 * QUILL_BLOCK_SIZE + 512, 1, 4096, 1ull << 30 },
		{ "segment above 65536 blocks", 65537 * QUILL_BLOCK_SIZE, 1, 4096, 1ull << 40 },
		{ "no segments", 1u << 20, 0, 4096, 1ull << 30 },
		{ "data offset not block-aligned", 1u << 20, 1, 4096 + 512, 1ull << 30 },
		{ "data offset over the superblock", 1u << 20, 1, 0, 1ull << 30 },
		{ "slots past the device end", 1u << 20, 4, 4096, 4ull << 20 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ondisk_superblock d = sb_encoded();

		d.segment_size = cases[i].segment_size;
		d.segment_count = cases[i].segment_count;
		d.data_offset = cases[i].data_offset;
		d.device_size = cases[i].device_size;
		cr_expect_eq(DECODE_RESEALED(ondisk_superblock_decode, d, &sb_out), -EPROTO, "%s",
			     cases[i].what);
	}
}

/* ---- segment header ---- */

static const struct segment_header good_hdr = {
	.state = ONDISK_SEG_USED,
	.volume_id = 42,
	.generation = 0xabcdef0123ull,
	.first_seq = 777,
	.uuid = { 9, 8, 7, 6, 5, 4, 3, 2, 1 },
	.family_uid = 0x0123456789abcdefull,
	.sno = 0xfedcba98u,
	.epoch = 31,
};

static struct ondisk_segment_header hdr_encoded(void)
{
	struct ondisk_segment_header d;

	ondisk_segment_header_encode(&good_hdr, &d);
	return d;
}

Test(ondisk, segment_header_round_trip)
{
	struct segment_header in = good_hdr, h;
	struct ondisk_segment_header d;

	for (int state = ONDISK_SEG_USED; state <= ONDISK_SEG_FREE; state++) {
		in.state = (enum ondisk_seg_state)state;
		ondisk_segment_header_encode(&in, &d);
		cr_assert_eq(ondisk_segment_header_decode(&d, sizeof(d), &h), 0);
		cr_assert_eq(h.state, in.state);
		cr_assert_eq(h.volume_id, in.volume_id);
		cr_assert_eq(h.generation, in.generation);
		cr_assert_eq(h.first_seq, in.first_seq);
		cr_assert_arr_eq(h.uuid, in.uuid, sizeof(h.uuid));
		cr_assert_eq(h.family_uid, in.family_uid);
		cr_assert_eq(h.sno, in.sno);
		cr_assert_eq(h.epoch, in.epoch);
	}
	/* the id sits where docs/format.md says */
	cr_assert_eq(d.family_uid, in.family_uid);
	cr_assert_eq(d.segment_no, in.sno);
	cr_assert_eq(d.epoch, in.epoch);
}

Test(ondisk, segment_header_without_a_family_is_refused)
{
	struct ondisk_segment_header d = hdr_encoded();

	d.family_uid = 0; /* a segment nothing could name */
	cr_assert_eq(DECODE_RESEALED(ondisk_segment_header_decode, d, &hdr_out), -EPROTO);
	d = hdr_encoded();
	d.reserved0 = 1;
	cr_assert_eq(DECODE_RESEALED(ondisk_segment_header_decode, d, &hdr_out), -EPROTO);
}

Test(ondisk, segment_header_of_version_3_is_refused)
{
	struct ondisk_segment_header d = hdr_encoded();

	d.version = 3;
	cr_assert_eq(DECODE_RESEALED(ondisk_segment_header_decode, d, &hdr_out), -EPROTO);
}

Test(ondisk, segment_header_rejects_short_buffer)
{
	struct ondisk_segment_header d = hdr_encoded();
	struct segment_header h;

	cr_assert_eq(ondisk_segment_header_decode(&d, sizeof(d) - 1, &h), -EINVAL);
}

Test(ondisk, segment_header_rejects_wrong_magic)
{
	struct ondisk_segment_header d = hdr_encoded();
	struct segment_header h;

	d.magic = QUILL_SUM_MAGIC; /* a summary where a header should be */
	cr_assert_eq(ondisk_segment_header_decode(&d, sizeof(d), &h), -ENOENT);
}

Test(ondisk, segment_header_rejects_bad_crc)
{
	struct ondisk_segment_header d = hdr_encoded();
	struct segment_header h;

	d.generation ^= 1;
	cr_assert_eq(ondisk_segment_header_decode(&d, sizeof(d), &h), -EILSEQ);
}

Test(ondisk, segment_header_rejects_unknown_version)
{
	struct ondisk_segment_header d = hdr_encoded();

	d.version = 0;
	cr_assert_eq(DECODE_RESEALED(ondisk_segment_header_decode, d, &hdr_out), -EPROTO);
}

Test(ondisk, segment_header_rejects_unknown_state)
{
	struct ondisk_segment_header d = hdr_encoded();

	d.state = 3;
	cr_assert_eq(DECODE_RESEALED(ondisk_segment_header_decode, d, &hdr_out), -EPROTO);
}

/* ---- summary ---- */

/* A full summary: DATA entries, with a TRIM and a MOVE among them. */
static void full_summary(struct summary *s)
{
	memset(s, 0, sizeof(*s));
	s->generation = 5;
	s->volume_id = 3;
	s->seq = 1000;
	s->open_seq = 900;
	s->durable_seq = 0x3e7; /* 999: the highest a summary can record */
	s->nentries = ONDISK_SUMMARY_MAX_ENTRIES;
	for (uint32_t i = 0; i < s->nentries; i++) {
		struct summary_entry *e = &s->entries[i];

		e->lba = 0x100000000ull + i;
		e->nblocks = 1;
		e->kind = ONDISK_ENTRY_DATA;
		e->data_crc = 0xc0de0000u + i;
	}
	s->entries[10] = (struct summary_entry){ .lba = 5, .nblocks = 4000000000u,
						 .kind = ONDISK_ENTRY_TRIM };
	s->entries[20] = (struct summary_entry){ .lba = 9, .nblocks = 1, .kind = ONDISK_ENTRY_MOVE,
						 .src_slot = 123456, .src_block = 65535,
						 .data_crc = 0xfeedbeef };
	s->data_blocks = s->nentries - 1;
}

static struct ondisk_summary sum_encoded(void)
{
	static struct summary s;
	struct ondisk_summary d;

	full_summary(&s);
	ondisk_summary_encode(&s, &d);
	return d;
}

Test(ondisk, summary_round_trip_full_batch)
{
	static struct summary in, out;
	struct ondisk_summary d;

	full_summary(&in);
	ondisk_summary_encode(&in, &d);
	cr_assert_eq(d.magic, QUILL_SUM_MAGIC);
	cr_assert_eq(ondisk_summary_decode(&d, sizeof(d), &out), 0);
	cr_assert_eq(out.generation, in.generation);
	cr_assert_eq(out.volume_id, in.volume_id);
	cr_assert_eq(out.seq, in.seq);
	cr_assert_eq(out.open_seq, 900);
	cr_assert_eq(out.durable_seq, 999);
	cr_assert_eq(out.nentries, ONDISK_SUMMARY_MAX_ENTRIES);
	cr_assert_eq(out.data_blocks, ONDISK_SUMMARY_MAX_ENTRIES - 1);
	for (uint32_t i = 0; i < in.nentries; i++) {
		const struct summary_entry *a = &in.entries[i], *b = &out.entries[i];

		cr_assert_eq(b->lba, a->lba, "entry %u", i);
		cr_assert_eq(b->nblocks, a->nblocks, "entry %u", i);
		cr_assert_eq(b->kind, a->kind, "entry %u", i);
		cr_assert_eq(b->src_slot, a->src_slot, "entry %u", i);
		cr_assert_eq(b->src_block, a->src_block, "entry %u", i);
		cr_assert_eq(b->data_crc, a->data_crc, "entry %u", i);
	}
}

Test(ondisk, summary_of_trims_only_has_no_data)
{
	static struct summary in, out;
	struct ondisk_summary d;

	memset(&in, 0, sizeof(in));
	in.seq = in.open_seq = 1; /* the first batch of a store: nothing durable before it */
	in.nentries = 2;
	in.entries[0] = (struct summary_entry){ .lba = 0, .nblocks = 1, .kind = ONDISK_ENTRY_TRIM };
	in.entries[1] = (struct summary_entry){ .lba = 7, .nblocks = UINT32_MAX,
						.kind = ONDISK_ENTRY_TRIM };
	ondisk_summary_encode(&in, &d);
	cr_assert_eq(ondisk_summary_decode(&d, sizeof(d), &out), 0);
	cr_assert_eq(out.data_blocks, 0);
	cr_assert_eq(out.entries[1].nblocks, UINT32_MAX);
}

Test(ondisk, summary_of_zero_entries_has_no_data)
{
	static struct summary in, out;
	struct ondisk_summary d;

	memset(&in, 0, sizeof(in));
	in.seq = in.open_seq = 1;
	in.nentries = 3;
	in.data_blocks = 1;
	in.entries[0] = (struct summary_entry){ .lba = 0, .nblocks = 5, .kind = ONDISK_ENTRY_ZERO };
	in.entries[1] = (struct summary_entry){ .lba = 9, .nblocks = 1, .kind = ONDISK_ENTRY_DATA,
						.data_crc = 77 };
	in.entries[2] = (struct summary_entry){ .lba = 7, .nblocks = UINT32_MAX,
						.kind = ONDISK_ENTRY_ZERO };
	ondisk_summary_encode(&in, &d);
	cr_assert_eq(ondisk_summary_decode(&d, sizeof(d), &out), 0);
	cr_assert_eq(out.data_blocks, 1, "a ZERO entry has no block");
	cr_assert_eq(out.entries[0].kind, ONDISK_ENTRY_ZERO);
	cr_assert_eq(out.entries[2].nblocks, UINT32_MAX);
	cr_assert_not(ONDISK_ENTRY_HAS_BLOCK(ONDISK_ENTRY_ZERO));
	cr_assert(ONDISK_ENTRY_ZEROES(ONDISK_ENTRY_ZERO) && ONDISK_ENTRY_ZEROES(ONDISK_ENTRY_TRIM));
	in.entries[2].src_block = ONDISK_ZERO_FILL; /* flatten's */
	ondisk_summary_encode(&in, &d);
	cr_assert_eq(ondisk_summary_decode(&d, sizeof(d), &out), 0);
	cr_assert_eq(out.entries[2].src_block, ONDISK_ZERO_FILL);
	in.entries[2].src_block = 2;
	ondisk_summary_encode(&in, &d);
	cr_assert_eq(ondisk_summary_decode(&d, sizeof(d), &out), -EPROTO, "unknown ZERO flag");
	in.entries[2].src_block = 0;
	in.entries[0].nblocks = 0;
	ondisk_summary_encode(&in, &d);
	cr_assert_eq(ondisk_summary_decode(&d, sizeof(d), &out), -EPROTO, "a ZERO of nothing");
}

Test(ondisk, summary_rejects_short_buffer)
{
	struct ondisk_summary d = sum_encoded();
	static struct summary s;

	cr_assert_eq(ondisk_summary_decode(&d, sizeof(d) - 1, &s), -EINVAL);
}

Test(ondisk, summary_rejects_wrong_magic)
{
	static uint8_t zeros[QUILL_BLOCK_SIZE];
	static struct summary s;

	cr_assert_eq(ondisk_summary_decode(zeros, sizeof(zeros), &s), -ENOENT);
}

Test(ondisk, summary_rejects_bad_crc)
{
	struct ondisk_summary d = sum_encoded();
	static struct summary s;

	((uint8_t *)&d.entries[100])[3] ^= 0x80;
	cr_assert_eq(ondisk_summary_decode(&d, sizeof(d), &s), -EILSEQ);
}

Test(ondisk, summary_rejects_no_entries)
{
	struct ondisk_summary d = sum_encoded();

	d.nentries = 0;
	cr_assert_eq(DECODE_RESEALED(ondisk_summary_decode, d, &sum_out), -EPROTO);
}

Test(ondisk, summary_rejects_too_many_entries)
{
	struct ondisk_summary d = sum_encoded();

	d.nentries = ONDISK_SUMMARY_MAX_ENTRIES + 1;
	cr_assert_eq(DECODE_RESEALED(ondisk_summary_decode, d, &sum_out), -EPROTO);
}

Test(ondisk, summary_rejects_unknown_entry_kind)
{
	struct ondisk_summary d = sum_encoded();

	d.entries[5].kind = ONDISK_ENTRY_TOMB + 1;
	cr_assert_eq(DECODE_RESEALED(ondisk_summary_decode, d, &sum_out), -EPROTO);
}

Test(ondisk, summary_rejects_data_entry_of_two_blocks)
{
	struct ondisk_summary d = sum_encoded();

	d.entries[0].nblocks = 2;
	d.data_blocks++; /* keep the count consistent: the entry alone is wrong */
	cr_assert_eq(DECODE_RESEALED(ondisk_summary_decode, d, &sum_out), -EPROTO);
}

Test(ondisk, summary_rejects_move_entry_of_no_block)
{
	struct ondisk_summary d = sum_encoded();

	d.entries[20].nblocks = 0;
	cr_assert_eq(DECODE_RESEALED(ondisk_summary_decode, d, &sum_out), -EPROTO);
}

Test(ondisk, summary_rejects_empty_trim)
{
	struct ondisk_summary d = sum_encoded();

	d.entries[10].nblocks = 0;
	cr_assert_eq(DECODE_RESEALED(ondisk_summary_decode, d, &sum_out), -EPROTO);
}

Test(ondisk, summary_marks_sit_in_the_former_reserved_bytes)
{
	struct ondisk_summary d = sum_encoded();
	uint64_t v;

	memcpy(&v, (const uint8_t *)&d + 44, sizeof(v));
	cr_assert_eq(v, 999, "durable_seq at offset 44");
	memcpy(&v, (const uint8_t *)&d + 52, sizeof(v));
	cr_assert_eq(v, 900, "open_seq at offset 52");
	cr_assert_eq(d.reserved[0] | d.reserved[1] | d.reserved[2] | d.reserved[3], 0);
}

Test(ondisk, summary_rejects_durable_mark_not_below_its_seq)
{
	struct ondisk_summary d = sum_encoded();

	d.durable_seq = d.seq; /* a batch cannot have been flushed before it was built */
	cr_assert_eq(DECODE_RESEALED(ondisk_summary_decode, d, &sum_out), -EPROTO);
}

Test(ondisk, summary_rejects_open_seq_above_its_seq)
{
	struct ondisk_summary d = sum_encoded();

	d.open_seq = d.seq + 1;
	cr_assert_eq(DECODE_RESEALED(ondisk_summary_decode, d, &sum_out), -EPROTO);
	d = sum_encoded();
	d.open_seq = 0;
	cr_assert_eq(DECODE_RESEALED(ondisk_summary_decode, d, &sum_out), -EPROTO);
}

Test(ondisk, summary_rejects_wrong_data_block_count)
{
	struct ondisk_summary d = sum_encoded();

	d.data_blocks = ONDISK_SUMMARY_MAX_ENTRIES; /* the TRIM has no block */
	cr_assert_eq(DECODE_RESEALED(ondisk_summary_decode, d, &sum_out), -EPROTO);
}

/* ---- RocksDB records ---- */

static const struct volume_record good_vol = {
	.volume_id = 17,
	.size = 1ull << 40,
	.created_ns = 99,
	.name = "vm-disk.0_A",
	.uid = 0x8badf00ddeadbeefull,
};

Test(ondisk, volume_record_keeps_the_damaged_flag_and_refuses_unknown_ones)
{
	struct ondisk_volume_record d;
	struct volume_record in = good_vol, v;

	in.flags = ONDISK_LAYER_DAMAGED | ONDISK_LAYER_FLATTENING | ONDISK_LAYER_4KN;
	ondisk_volume_record_encode(&in, &d);
	cr_assert_eq(ondisk_volume_record_decode(&d, sizeof(d), &v), 0);
	cr_assert_eq(v.flags, ONDISK_LAYER_DAMAGED | ONDISK_LAYER_FLATTENING | ONDISK_LAYER_4KN);
	d.flags = 1u << 5; /* bit 2 is DELETED, of the log's layer blocks; 3 IMPORTING; 4 4KN */
	cr_assert_eq(DECODE_RESEALED(ondisk_volume_record_decode, d, &v), -EPROTO);
}

Test(ondisk, volume_record_round_trip)
{
	struct ondisk_volume_record d;
	struct volume_record in = good_vol, v;

	memset(in.name, 'n', QUILL_VOLUME_NAME_MAX); /* the longest name */
	in.name[QUILL_VOLUME_NAME_MAX] = '\0';
	ondisk_volume_record_encode(&in, &d);
	cr_assert_eq(ondisk_volume_record_decode(&d, sizeof(d), &v), 0);
	cr_assert_eq(v.volume_id, in.volume_id);
	cr_assert_eq(v.size, in.size);
	cr_assert_eq(v.created_ns, in.created_ns);
	cr_assert_str_eq(v.name, in.name);
}

Test(ondisk, volume_record_rejects_wrong_length)
{
	struct ondisk_volume_record d[2];
	struct volume_record v;

	ondisk_volume_record_encode(&good_vol, &d[0]);
	cr_assert_eq(ondisk_volume_record_decode(d, sizeof(d[0]) - 1, &v), -EINVAL);
	cr_assert_eq(ondisk_volume_record_decode(d, sizeof(d), &v), -EINVAL);
}

Test(ondisk, volume_record_rejects_bad_crc)
{
	struct ondisk_volume_record d;
	struct volume_record v;

	ondisk_volume_record_encode(&good_vol, &d);
	d.name[0] ^= 0x20;
	cr_assert_eq(ondisk_volume_record_decode(&d, sizeof(d), &v), -EILSEQ);
}

Test(ondisk, volume_record_rejects_unknown_version)
{
	struct ondisk_volume_record d;

	ondisk_volume_record_encode(&good_vol, &d);
	d.version = QUILL_FORMAT_VERSION + 1;
	cr_assert_eq(DECODE_RESEALED(ondisk_volume_record_decode, d, &vol_out), -EPROTO);
}

Test(ondisk, volume_record_rejects_partial_block_size)
{
	struct ondisk_volume_record d;

	ondisk_volume_record_encode(&good_vol, &d);
	d.size += 512;
	cr_assert_eq(DECODE_RESEALED(ondisk_volume_record_decode, d, &vol_out), -EPROTO);
}

Test(ondisk, volume_record_rejects_unterminated_name)
{
	struct ondisk_volume_record d;

	ondisk_volume_record_encode(&good_vol, &d);
	memset(d.name, 'x', sizeof(d.name));
	cr_assert_eq(DECODE_RESEALED(ondisk_volume_record_decode, d, &vol_out), -EPROTO);
}

Test(ondisk, volume_record_rejects_empty_name)
{
	struct ondisk_volume_record d;

	ondisk_volume_record_encode(&good_vol, &d);
	memset(d.name, 0, sizeof(d.name));
	cr_assert_eq(DECODE_RESEALED(ondisk_volume_record_decode, d, &vol_out), -EPROTO);
}

static const uint8_t store_uuid[16] = { 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };

Test(ondisk, store_record_round_trip)
{
	struct ondisk_store_record d;
	uint8_t uuid[16];
	uint64_t next = 0;

	ondisk_store_record_encode(store_uuid, 0x123456789ull, &d);
	cr_assert_eq(ondisk_store_record_decode(&d, sizeof(d), uuid, &next), 0);
	cr_assert_arr_eq(uuid, store_uuid, sizeof(uuid));
	cr_assert_eq(next, 0x123456789ull);
}

Test(ondisk, store_record_rejects_wrong_length)
{
	struct ondisk_store_record d;
	uint8_t uuid[16];
	uint64_t next;

	ondisk_store_record_encode(store_uuid, 1, &d);
	cr_assert_eq(ondisk_store_record_decode(&d, sizeof(d) - 4, uuid, &next), -EINVAL);
}

Test(ondisk, store_record_rejects_bad_crc)
{
	struct ondisk_store_record d;
	uint8_t uuid[16];
	uint64_t next;

	ondisk_store_record_encode(store_uuid, 1, &d);
	d.uuid[15] ^= 1;
	cr_assert_eq(ondisk_store_record_decode(&d, sizeof(d), uuid, &next), -EILSEQ);
}

Test(ondisk, store_record_rejects_unknown_version)
{
	struct ondisk_store_record d;
	uint8_t uuid[16];
	uint64_t next;

	ondisk_store_record_encode(store_uuid, 1, &d);
	d.version = 7;
	reseal(&d, sizeof(d), offsetof(struct ondisk_store_record, crc));
	cr_assert_eq(ondisk_store_record_decode(&d, sizeof(d), uuid, &next), -EPROTO);
}

Test(ondisk, checkpoint_round_trip)
{
	struct ondisk_checkpoint d;
	uint64_t seq = 0;

	ondisk_checkpoint_encode(UINT64_MAX - 1, &d);
	cr_assert_eq(ondisk_checkpoint_decode(&d, sizeof(d), &seq), 0);
	cr_assert_eq(seq, UINT64_MAX - 1);
}

Test(ondisk, checkpoint_rejects_wrong_length)
{
	struct ondisk_checkpoint d;
	uint64_t seq;

	ondisk_checkpoint_encode(5, &d);
	cr_assert_eq(ondisk_checkpoint_decode(&d, 0, &seq), -EINVAL);
}

Test(ondisk, checkpoint_rejects_bad_crc)
{
	struct ondisk_checkpoint d;
	uint64_t seq;

	ondisk_checkpoint_encode(5, &d);
	d.seq = 6;
	cr_assert_eq(ondisk_checkpoint_decode(&d, sizeof(d), &seq), -EILSEQ);
}

Test(ondisk, checkpoint_rejects_unknown_version)
{
	struct ondisk_checkpoint d;
	uint64_t seq;

	ondisk_checkpoint_encode(5, &d);
	d.version = 0;
	reseal(&d, sizeof(d), offsetof(struct ondisk_checkpoint, crc));
	cr_assert_eq(ondisk_checkpoint_decode(&d, sizeof(d), &seq), -EPROTO);
}

/* ---- layers ---- */

Test(ondisk, volume_record_keeps_its_layer_fields)
{
	struct ondisk_volume_record d;
	struct volume_record in = good_vol, v;

	in.kind = ONDISK_LAYER_SNAPSHOT;
	in.parent_id = in.volume_id - 1;
	in.overlap = in.size / QUILL_BLOCK_SIZE;
	in.uid = 3;
	ondisk_volume_record_encode(&in, &d);
	cr_assert_eq(ondisk_volume_record_decode(&d, sizeof(d), &v), 0);
	cr_assert_eq(v.kind, ONDISK_LAYER_SNAPSHOT);
	cr_assert_eq(v.parent_id, in.parent_id);
	cr_assert_eq(v.overlap, in.overlap);
	cr_assert_eq(v.uid, 3);
}

/* Version 4: every layer names its family (what its segments' ids start with). */
Test(ondisk, volume_record_without_a_family_uid_is_refused)
{
	struct ondisk_volume_record d;
	struct volume_record v;

	ondisk_volume_record_encode(&good_vol, &d);
	cr_assert_eq(ondisk_volume_record_decode(&d, sizeof(d), &v), 0);
	cr_assert_eq(v.uid, good_vol.uid);
	d.uid = 0;
	cr_assert_eq(DECODE_RESEALED(ondisk_volume_record_decode, d, &v), -EPROTO);
}

Test(ondisk, volume_record_rejects_impossible_layer_links)
{
	struct ondisk_volume_record d;
	struct volume_record v;

	ondisk_volume_record_encode(&good_vol, &d);
	d.parent_id = d.volume_id; /* its own parent */
	cr_assert_eq(DECODE_RESEALED(ondisk_volume_record_decode, d, &v), -EPROTO);
	ondisk_volume_record_encode(&good_vol, &d);
	d.overlap = 1; /* overlap without a parent */
	cr_assert_eq(DECODE_RESEALED(ondisk_volume_record_decode, d, &v), -EPROTO);
	ondisk_volume_record_encode(&good_vol, &d);
	d.parent_id = 1;
	d.overlap = d.size / QUILL_BLOCK_SIZE + 1; /* past the end */
	cr_assert_eq(DECODE_RESEALED(ondisk_volume_record_decode, d, &v), -EPROTO);
	ondisk_volume_record_encode(&good_vol, &d);
	d.kind = ONDISK_LAYER_SNAPSHOT + 1;
	cr_assert_eq(DECODE_RESEALED(ondisk_volume_record_decode, d, &v), -EPROTO);
}

Test(ondisk, alias_key_round_trip)
{
	uint8_t key[ONDISK_ALIAS_KEY_LEN];
	uint64_t id;

	ondisk_alias_key(0x0102030405060708ull, key);
	cr_assert_eq(key[0], 'A');
	cr_assert_eq(key[1], 0x01, "big-endian: keys sort by id");
	cr_assert_eq(ondisk_alias_key_decode(key, sizeof(key), &id), 0);
	cr_assert_eq(id, 0x0102030405060708ull);
	cr_assert_eq(ondisk_alias_key_decode(key, sizeof(key) - 1, &id), -EPROTO);
	key[0] = 'M';
	cr_assert_eq(ondisk_alias_key_decode(key, sizeof(key), &id), -EPROTO);
}

Test(ondisk, slot_key_names_the_segment_and_sorts_by_family_then_number)
{
	uint8_t a[ONDISK_SLOT_KEY_LEN], b[ONDISK_SLOT_KEY_LEN];
	uint64_t uid;
	uint32_t sno;

	ondisk_slot_key(0x0102030405060708ull, 0x0a0b0c0du, a);
	cr_assert_eq(a[0], 'T');
	cr_assert_eq(a[1], 0x01, "big-endian uid");
	cr_assert_eq(a[9], 0x0a, "big-endian number");
	cr_assert_eq(ondisk_slot_key_decode(a, sizeof(a), &uid, &sno), 0);
	cr_assert_eq(uid, 0x0102030405060708ull);
	cr_assert_eq(sno, 0x0a0b0c0du);
	ondisk_slot_key(0x0102030405060708ull, 0x0a0b0c0eu, b);
	cr_assert_lt(memcmp(a, b, sizeof(a)), 0);
	ondisk_slot_key(0x0102030405060709ull, 0, b);
	cr_assert_lt(memcmp(a, b, sizeof(a)), 0);
	cr_assert_eq(ondisk_slot_key_decode(a, sizeof(a) - 1, &uid, &sno), -EPROTO);
	a[0] = 'F';
	cr_assert_eq(ondisk_slot_key_decode(a, sizeof(a), &uid, &sno), -EPROTO);
}

Test(ondisk, slot_record_round_trip_carries_the_slot)
{
	struct slot_record in = { .volume_id = 7, .generation = 99, .last_seq = 1234,
				  .used = 50, .tombs = 3, .slot = 4242 }, out;
	struct ondisk_slot_record d;

	ondisk_slot_record_encode(&in, &d);
	cr_assert_eq(d.slot, 4242);
	cr_assert_eq(ondisk_slot_record_decode(&d, sizeof(d), &out), 0);
	cr_assert_eq(out.slot, 4242);
	cr_assert_eq(out.generation, 99);
	cr_assert_eq(out.last_seq, 1234);
	cr_assert_eq(out.used, 50);
	cr_assert_eq(out.tombs, 3);
	d.version = 1; /* version 3's, keyed by slot */
	cr_assert_eq(DECODE_RESEALED(ondisk_slot_record_decode, d, &out), -EPROTO);
}

Test(ondisk, family_key_and_record_round_trip)
{
	uint8_t key[ONDISK_FAMILY_KEY_LEN];
	struct ondisk_family_record d;
	uint64_t uid;
	uint32_t next;

	ondisk_family_key(0x1122334455667788ull, key);
	cr_assert_eq(key[0], 'F');
	cr_assert_eq(ondisk_family_key_decode(key, sizeof(key), &uid), 0);
	cr_assert_eq(uid, 0x1122334455667788ull);
	cr_assert_eq(ondisk_family_key_decode(key, sizeof(key) - 1, &uid), -EPROTO);
	ondisk_family_record_encode(77, &d);
	cr_assert_eq(ondisk_family_record_decode(&d, sizeof(d), &next), 0);
	cr_assert_eq(next, 77);
	cr_assert_eq(ondisk_family_record_decode(&d, sizeof(d) - 1, &next), -EINVAL);
	d.next_sno ^= 1;
	cr_assert_eq(ondisk_family_record_decode(&d, sizeof(d), &next), -EILSEQ);
	d.next_sno ^= 1;
	d.version = 2;
	cr_assert_eq(DECODE_RESEALED(ondisk_family_record_decode, d, &next), -EPROTO);
}

/* ---- the catalog in the log: layer and tomb blocks ---- */

Test(ondisk, layer_block_round_trip)
{
	struct ondisk_layer_block d;
	struct layer_block in = { .op = ONDISK_LAYER_MERGE, .merge_seq = 1234, .rec = good_vol,
				  .child_id = 77, .child_overlap = 4096 },
			   out;

	in.rec.kind = ONDISK_LAYER_SNAPSHOT;
	in.rec.flags = ONDISK_LAYER_DELETED;
	ondisk_layer_block_encode(&in, &d);
	cr_assert_eq(ondisk_layer_block_decode(&d, sizeof(d), &out), 0);
	cr_assert_eq(out.op, ONDISK_LAYER_MERGE);
	cr_assert_eq(out.merge_seq, 1234);
	cr_assert_eq(out.child_id, 77);
	cr_assert_eq(out.child_overlap, 4096);
	cr_assert_eq(out.rec.volume_id, good_vol.volume_id);
	cr_assert_eq(out.rec.kind, ONDISK_LAYER_SNAPSHOT);
	cr_assert_eq(out.rec.flags, ONDISK_LAYER_DELETED);
	cr_assert_str_eq(out.rec.name, good_vol.name);
}

Test(ondisk, layer_block_rejects_what_it_must)
{
	struct ondisk_layer_block d;
	struct layer_block in = { .op = ONDISK_LAYER_SET, .rec = good_vol }, out;

	ondisk_layer_block_encode(&in, &d);
	cr_assert_eq(ondisk_layer_block_decode(&d, sizeof(d) - 1, &out), -EINVAL);
	d.rec[40] ^= 1; /* the name, inside the embedded record */
	cr_assert_eq(ondisk_layer_block_decode(&d, sizeof(d), &out), -EILSEQ);
	ondisk_layer_block_encode(&in, &d);
	d.op = 3;
	cr_assert_eq(DECODE_RESEALED(ondisk_layer_block_decode, d, &out), -EPROTO);
	ondisk_layer_block_encode(&in, &d);
	d.version = QUILL_FORMAT_VERSION + 1;
	cr_assert_eq(DECODE_RESEALED(ondisk_layer_block_decode, d, &out), -EPROTO);
	ondisk_layer_block_encode(&in, &d);
	d.rec[32] = '\0'; /* an empty name: the record's own check, under a good CRC */
	cr_assert_neq(DECODE_RESEALED(ondisk_layer_block_decode, d, &out), 0);
	ondisk_layer_block_encode(&in, &d);
	d.magic ^= 1;
	cr_assert_eq(ondisk_layer_block_decode(&d, sizeof(d), &out), -ENOENT);
}

Test(ondisk, tomb_block_round_trip_and_rejects)
{
	static struct tomb_block in, out;
	struct ondisk_tomb_block d;

	in.layer_id = 7;
	in.count = ONDISK_TOMB_MAX;
	for (uint32_t i = 0; i < in.count; i++)
		in.tombs[i] = (struct ondisk_tomb){ .lba = i * 10, .nblocks = i + 1, .seq = 100 + i };
	ondisk_tomb_block_encode(&in, &d);
	cr_assert_eq(ondisk_tomb_block_decode(&d, sizeof(d), &out), 0);
	cr_assert_eq(out.layer_id, 7);
	cr_assert_eq(out.count, ONDISK_TOMB_MAX);
	cr_assert_eq(out.tombs[168].seq, 268);
	d.tombs[3].lba ^= 1;
	cr_assert_eq(ondisk_tomb_block_decode(&d, sizeof(d), &out), -EILSEQ);
	ondisk_tomb_block_encode(&in, &d);
	d.count = 0;
	cr_assert_eq(DECODE_RESEALED(ondisk_tomb_block_decode, d, &out), -EPROTO);
	ondisk_tomb_block_encode(&in, &d);
	d.tombs[5].nblocks = 0;
	cr_assert_eq(DECODE_RESEALED(ondisk_tomb_block_decode, d, &out), -EPROTO);
	/* allocated zeros: the top bit, over a count of at least one */
	ondisk_tomb_block_encode(&in, &d);
	d.tombs[5].nblocks = 3 | ONDISK_TOMB_ALLOCATED;
	cr_assert_eq(DECODE_RESEALED(ondisk_tomb_block_decode, d, &out), 0);
	cr_assert_eq(ONDISK_TOMB_NBLOCKS(&out.tombs[5]), 3);
	cr_assert(out.tombs[5].nblocks & ONDISK_TOMB_ALLOCATED);
	d.tombs[5].nblocks = ONDISK_TOMB_ALLOCATED;
	cr_assert_eq(DECODE_RESEALED(ondisk_tomb_block_decode, d, &out), -EPROTO, "no blocks");
	d.tombs[5].nblocks = 1ull << 40;
	cr_assert_eq(DECODE_RESEALED(ondisk_tomb_block_decode, d, &out), -EPROTO, "other bits");
	d.tombs[5].nblocks = 2 | ONDISK_TOMB_ALLOCATED | ONDISK_TOMB_FILL; /* flatten's */
	cr_assert_eq(DECODE_RESEALED(ondisk_tomb_block_decode, d, &out), 0);
	d.tombs[5].nblocks = 2 | ONDISK_TOMB_FILL;
	cr_assert_eq(DECODE_RESEALED(ondisk_tomb_block_decode, d, &out), -EPROTO,
		     "FILL is only for allocated zeros");
}

Test(ondisk, summary_accepts_layer_and_tomb_entries)
{
	struct summary in = { .generation = 1, .volume_id = 2, .seq = 3, .open_seq = 1,
			      .nentries = 2, .data_blocks = 2 }, out;
	uint8_t buf[QUILL_BLOCK_SIZE];

	in.entries[0] = (struct summary_entry){ .lba = 9, .nblocks = 1, .kind = ONDISK_ENTRY_LAYER,
						.src_block = ONDISK_LAYER_SET };
	in.entries[1] = (struct summary_entry){ .lba = 9, .nblocks = 1, .kind = ONDISK_ENTRY_TOMB };
	ondisk_summary_encode(&in, buf);
	cr_assert_eq(ondisk_summary_decode(buf, sizeof(buf), &out), 0);
	cr_assert_eq(out.data_blocks, 2);
	in.entries[0].src_block = 0; /* a LAYER entry names its op */
	ondisk_summary_encode(&in, buf);
	cr_assert_eq(ondisk_summary_decode(buf, sizeof(buf), &out), -EPROTO);
}

/* ---- held copies and families' epochs (engine/held.c) ---- */

Test(ondisk, held_record_and_key_round_trip)
{
	struct held_record in = { .slot = 7, .epoch = 42, .sealed = true, .length = 99 }, out;
	struct ondisk_held_record rec;
	uint8_t key[ONDISK_HELD_KEY_LEN];
	uint64_t uid;
	uint32_t sno;

	ondisk_held_record_encode(&in, &rec);
	cr_assert_eq(ondisk_held_record_decode(&rec, sizeof(rec), &out), 0);
	cr_assert_eq(out.slot, 7);
	cr_assert_eq(out.epoch, 42);
	cr_assert(out.sealed);
	cr_assert_eq(out.length, 99);
	ondisk_held_key(0x0102030405060708ull, 9, key);
	cr_assert_eq(key[0], 'H');
	cr_assert_eq(key[1], 0x01, "big-endian: a family's copies sort together");
	cr_assert_eq(ondisk_held_key_decode(key, sizeof(key), &uid, &sno), 0);
	cr_assert_eq(uid, 0x0102030405060708ull);
	cr_assert_eq(sno, 9);
	key[0] = 'T';
	cr_assert_eq(ondisk_held_key_decode(key, sizeof(key), &uid, &sno), -EPROTO);
}

Test(ondisk, held_record_rejects_bad_crc_and_length)
{
	struct held_record in = { .slot = 1, .epoch = 2 }, out;
	struct ondisk_held_record rec;

	ondisk_held_record_encode(&in, &rec);
	cr_assert_eq(ondisk_held_record_decode(&rec, sizeof(rec) - 1, &out), -EINVAL);
	rec.epoch ^= 1;
	cr_assert_eq(ondisk_held_record_decode(&rec, sizeof(rec), &out), -EILSEQ);
}

Test(ondisk, epoch_record_and_key_round_trip)
{
	struct ondisk_epoch_record rec;
	uint8_t key[ONDISK_EPOCH_KEY_LEN];
	uint64_t epoch, uid;

	ondisk_epoch_record_encode(1234567, &rec);
	cr_assert_eq(ondisk_epoch_record_decode(&rec, sizeof(rec), &epoch), 0);
	cr_assert_eq(epoch, 1234567);
	rec.reserved[3] = 1;
	cr_assert_eq(ondisk_epoch_record_decode(&rec, sizeof(rec), &epoch), -EILSEQ);
	ondisk_epoch_key(77, key);
	cr_assert_eq(key[0], 'E');
	cr_assert_eq(ondisk_epoch_key_decode(key, sizeof(key), &uid), 0);
	cr_assert_eq(uid, 77);
	cr_assert_eq(ondisk_family_key_decode(key, sizeof(key), &uid), -EPROTO, "not an F key");
}
