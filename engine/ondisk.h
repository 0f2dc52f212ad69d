/* engine/ondisk.h — the on-disk format of a quill store (spec: docs/format.md).
 *
 * All integers are little-endian. Every structure carries a CRC32C (common/crc32c.h)
 * computed with its crc field set to zero. Decoders take (buf, len), check every
 * field and fill in-memory structs; nothing on disk is trusted.
 *
 * Layout of the device (block = 4096 bytes):
 *   [0, 4096)                      superblock
 *   [4096, 1 MiB - 4096)           reserved (zero)
 *   [1 MiB - 4096, 1 MiB)          copy of the superblock (QUILL_SB_COPY_OFFSET)
 *   data_offset + i*segment_size   segment slot i, for i in [0, segment_count)
 *
 * A segment slot holds one segment of one volume's log:
 *   block 0       segment header (its id: family uid and segment number; the layer,
 *                 generation, epoch) or a free marker
 *   blocks 1..    write batches, back to back: one summary block, then the data
 *                 blocks its DATA entries describe, in entry order.
 *
 * The extent map checkpoint in RocksDB (engine/map.c) also has a value format,
 * defined at the end of this header.
 */
#ifndef QUILL_ENGINE_ONDISK_H
#define QUILL_ENGINE_ONDISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "quill's formats are little-endian and the codecs assume a little-endian host"
#endif

#define QUILL_BLOCK_SIZE 4096u
#define QUILL_FORMAT_VERSION 5u /* 2: summaries carry durable_seq and open_seq;
				   the catalog is in the log too (LAYER, TOMB);
				   3: allocated zeros (ZERO entries, flagged tombs and
				   map entries), which a version 2 reader would take
				   for a damaged summary;
				   4: segments named by (family uid, segment number):
				   random family uids, headers and slot records name
				   the segment (docs/format.md, "Segment ids");
				   5: family checkpoints in the family's log (MAPS
				   and FCKPT entries), which a version 4 reader would
				   take for a damaged summary */

/* Batches of one volume that can be in flight at once (submitted, not yet retired):
 * the engine never submits more. After a crash, a batch whose data is bad can be a
 * tear only if fewer than this many batches of its volume follow it (docs/format.md,
 * "Tears and corruption"). */
#define ONDISK_MAX_INFLIGHT_BATCHES 4u

#define QUILL_SB_MAGIC 0x31424c4c4955510aULL  /* "\nQUILLB1" */
#define QUILL_SEG_MAGIC 0x5345474c4c495551ULL /* "QUILLSEG" */
#define QUILL_SUM_MAGIC 0x4d55534c4c495551ULL /* "QUILLSUM" */
#define QUILL_LAYER_MAGIC 0x52594c4c4c495551ULL /* "QUILLLYR" */
#define QUILL_TOMB_MAGIC 0x424d544c4c495551ULL  /* "QUILLTMB" */

#define QUILL_DATA_OFFSET (1u << 20) /* first segment slot starts at 1 MiB */
/* The superblock's copy: the last block of the reserved area, at a fixed offset so
 * that it is found without block 0 (docs/format.md, "Superblock copy"). */
#define QUILL_SB_COPY_OFFSET (QUILL_DATA_OFFSET - QUILL_BLOCK_SIZE)

/* ---- superblock (block 0) ---- */
struct ondisk_superblock {
	uint64_t magic;         /* QUILL_SB_MAGIC */
	uint32_t version;       /* QUILL_FORMAT_VERSION */
	uint32_t block_size;    /* QUILL_BLOCK_SIZE */
	uint8_t uuid[16];       /* store identity; RocksDB records it too */
	uint32_t segment_size;  /* bytes, a multiple of block_size, >= 16 blocks */
	uint32_t segment_count; /* number of slots */
	uint64_t data_offset;   /* byte offset of slot 0 */
	uint64_t device_size;   /* bytes of the device when formatted */
	uint64_t created_ns;    /* CLOCK_REALTIME at format */
	uint8_t reserved[4028];
	uint32_t crc;           /* CRC32C of the block with this field zero */
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_superblock) == QUILL_BLOCK_SIZE, "superblock is one block");
_Static_assert(offsetof(struct ondisk_superblock, uuid) == 16, "uuid offset");
_Static_assert(offsetof(struct ondisk_superblock, crc) == 4092, "crc at block end");

/* ---- segment header (block 0 of a slot) ---- */
enum ondisk_seg_state {
	ONDISK_SEG_USED = 1, /* holds the log of volume_id */
	ONDISK_SEG_FREE = 2, /* reclaimed: everything after this block is garbage */
};

/* A segment's cluster-wide id is (family_uid, segment_no): the family is a volume with
 * its snapshots (the layers sharing ondisk_volume_record.uid), the number a counter of
 * the family that is never reused (docs/format.md, "Segment ids"). */
struct ondisk_segment_header {
	uint64_t magic;      /* QUILL_SEG_MAGIC */
	uint32_t version;
	uint32_t state;      /* enum ondisk_seg_state */
	uint64_t volume_id;  /* the layer whose log it is (USED) or was (FREE) */
	uint64_t generation; /* unique per (slot, use): store-wide counter, never reused;
				the slot's incarnation on this node */
	uint64_t first_seq;  /* sequence number of the first batch written in it */
	uint8_t uuid[16];    /* the store's uuid: a slot from another store is garbage */
	uint64_t family_uid; /* the family of the layer: never 0 */
	uint32_t segment_no; /* the segment's number in its family */
	uint32_t reserved0;  /* zero */
	uint64_t epoch;      /* the owner's epoch when it was opened: 0 on a node without
				a cluster (issue 12) */
	uint8_t reserved[4012];
	uint32_t crc;
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_segment_header) == QUILL_BLOCK_SIZE, "segment header is one block");
_Static_assert(offsetof(struct ondisk_segment_header, generation) == 24, "generation offset");
_Static_assert(offsetof(struct ondisk_segment_header, family_uid) == 56, "family uid offset");
_Static_assert(offsetof(struct ondisk_segment_header, segment_no) == 64, "segment number offset");
_Static_assert(offsetof(struct ondisk_segment_header, epoch) == 72, "epoch offset");
_Static_assert(offsetof(struct ondisk_segment_header, crc) == 4092, "crc at block end");

/* ---- write batch summary (first block of each batch) ---- */
enum ondisk_entry_kind {
	ONDISK_ENTRY_DATA = 1,  /* one block of data follows, in entry order */
	ONDISK_ENTRY_TRIM = 2,  /* lba..lba+nblocks read as zeros from now on; no data */
	ONDISK_ENTRY_MOVE = 3,  /* GC relocation of one block: like DATA, but applies only
				   if the block still lives at (src_slot, src_block) */
	ONDISK_ENTRY_FILL = 4,  /* flatten's copy of a parent's block: like DATA, but applies
				   only where the layer's own map has nothing (a write or
				   trim that came first wins) */
	ONDISK_ENTRY_LAYER = 5, /* one block follows: a layer record block (the catalog in
				   the log); lba = the layer it describes, src_block = op */
	ONDISK_ENTRY_TOMB = 6,  /* one block follows: a tombstone block, trims carried
				   forward by the cleaner; no effect at run time */
	ONDISK_ENTRY_ZERO = 7,  /* lba..lba+nblocks read as zeros from now on and are
				   allocated (block status: zeros, not a hole); no data.
				   src_block ONDISK_ZERO_FILL: flatten's, applies only
				   where the layer's own map has nothing (like FILL) */
	ONDISK_ENTRY_MAPS = 8,  /* one block follows: a family checkpoint's MAPS block;
				   lba = the layer; no effect on any map */
	ONDISK_ENTRY_FCKPT = 9, /* one block follows: a family checkpoint's BEGIN or END
				   block; lba = its number K, src_block = type */
};
/* Does an entry of this kind belong to a family checkpoint (no map change)? */
#define ONDISK_ENTRY_FCKPT_PART(kind) \
	((kind) == ONDISK_ENTRY_MAPS || (kind) == ONDISK_ENTRY_FCKPT)
#define ONDISK_ZERO_FILL 1u

/* Does an entry of this kind have a block after the summary? TRIM and ZERO do not. */
#define ONDISK_ENTRY_HAS_BLOCK(kind) \
	((kind) != ONDISK_ENTRY_TRIM && (kind) != ONDISK_ENTRY_ZERO)
/* Is its block one that a layer's map names at lba (DATA, MOVE, FILL)? */
#define ONDISK_ENTRY_MAPPED(kind) \
	((kind) == ONDISK_ENTRY_DATA || (kind) == ONDISK_ENTRY_MOVE || (kind) == ONDISK_ENTRY_FILL)
/* Is it a range that reads as zeros (TRIM or ZERO)? */
#define ONDISK_ENTRY_ZEROES(kind) ((kind) == ONDISK_ENTRY_TRIM || (kind) == ONDISK_ENTRY_ZERO)

struct ondisk_summary_entry {
	uint64_t lba;       /* in blocks */
	uint32_t nblocks;   /* DATA/MOVE: 1; TRIM/ZERO: >= 1 */
	uint16_t kind;      /* enum ondisk_entry_kind */
	uint16_t src_block; /* MOVE: block index in the source slot; LAYER: op; ZERO:
			       0 or ONDISK_ZERO_FILL */
	uint32_t src_slot;  /* MOVE: source slot */
	uint32_t data_crc;  /* DATA/MOVE: CRC32C of the block; TRIM/ZERO: 0 */
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_summary_entry) == 24, "summary entry size");

#define ONDISK_SUMMARY_HDR_SIZE 64u
#define ONDISK_SUMMARY_MAX_ENTRIES \
	((QUILL_BLOCK_SIZE - ONDISK_SUMMARY_HDR_SIZE) / sizeof(struct ondisk_summary_entry))

struct ondisk_summary {
	uint64_t magic;       /* QUILL_SUM_MAGIC */
	uint64_t generation;  /* equals the segment header's: older batches in a reused
				 slot are recognised as garbage */
	uint64_t volume_id;
	uint64_t seq;         /* store-wide batch sequence number, strictly increasing */
	uint32_t nentries;
	uint32_t data_blocks; /* number of DATA/MOVE entries = blocks after the summary */
	uint32_t crc;         /* CRC32C of the summary block with this field zero */
	uint64_t durable_seq; /* every batch of seq open_seq..durable_seq was durable (a
				 store flush completed after it) when this one was built */
	uint64_t open_seq;    /* first seq handed out by the engine run that wrote this
				 batch: durable_seq says nothing about older batches */
	uint8_t reserved[4];
	struct ondisk_summary_entry entries[ONDISK_SUMMARY_MAX_ENTRIES];
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_summary) == QUILL_BLOCK_SIZE, "summary is one block");
_Static_assert(offsetof(struct ondisk_summary, entries) == ONDISK_SUMMARY_HDR_SIZE, "entries offset");
_Static_assert(offsetof(struct ondisk_summary, durable_seq) == 44, "durable_seq offset");
_Static_assert(offsetof(struct ondisk_summary, open_seq) == 52, "open_seq offset");
_Static_assert(ONDISK_SUMMARY_MAX_ENTRIES == 168, "168 entries per batch");

/* ---- layer record block (the data block of a LAYER entry) ----
 * SET:   the layer `rec.volume_id` is now `rec` (create, resize, snapshot, clone,
 *        rollback, flatten); written in that layer's own log.
 * MERGE: snapshot `rec` was merged into its only child at `merge_seq` (its slots are
 *        the child's from then on); written in the child's log. It names the child and
 *        the child's overlap just before the merge (0: unknown, a block written before
 *        these fields, or re-logged at start-up): the child's own oldest record may be
 *        gone (cleaned) and the one left says what it was after the merge. */
enum ondisk_layer_op {
	ONDISK_LAYER_SET = 1,
	ONDISK_LAYER_MERGE = 2,
};

struct ondisk_layer_block {
	uint64_t magic;     /* QUILL_LAYER_MAGIC */
	uint32_t version;   /* QUILL_FORMAT_VERSION */
	uint32_t op;        /* enum ondisk_layer_op */
	uint64_t merge_seq; /* MERGE: the merge took effect after every batch <= this */
	uint8_t rec[128];   /* struct ondisk_volume_record, with its own CRC */
	uint64_t child_id;  /* MERGE: the layer rec was merged into (0: unknown) */
	uint64_t child_overlap; /* MERGE: its overlap before the merge */
	uint64_t alias_to;  /* MERGE copied into a family checkpoint: the layer rec led to
			       then (0 in the MERGE the merge itself wrote) */
	uint8_t reserved[3916];
	uint32_t crc;       /* CRC32C of the block */
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_layer_block) == QUILL_BLOCK_SIZE, "layer block is one block");
_Static_assert(offsetof(struct ondisk_layer_block, rec) == 24, "layer block rec offset");
_Static_assert(offsetof(struct ondisk_layer_block, child_id) == 152, "layer block child offset");
_Static_assert(offsetof(struct ondisk_layer_block, alias_to) == 168, "layer block alias offset");

/* ---- tombstone block (the data block of a TOMB entry) ----
 * Trims of layer `layer_id` that the cleaner carried out of a slot it freed, because
 * older blocks they hide were still on disk. Each applies at replay as a TRIM of the
 * layer ordered at its original sequence number `seq` (a ZERO when nblocks has
 * ONDISK_TOMB_ALLOCATED: allocated zeros are carried the same way). */
struct ondisk_tomb {
	uint64_t lba;
	uint64_t nblocks;   /* low 32 bits: blocks (>= 1); ONDISK_TOMB_ALLOCATED, and
			       with it ONDISK_TOMB_FILL (a ZERO with ONDISK_ZERO_FILL) */
	uint64_t seq;
} __attribute__((packed));
#define ONDISK_TOMB_ALLOCATED (1ull << 63)
#define ONDISK_TOMB_FILL (1ull << 62)
#define ONDISK_TOMB_NBLOCKS(t) ((t)->nblocks & 0xffffffffull)
_Static_assert(sizeof(struct ondisk_tomb) == 24, "tomb size");

#define ONDISK_TOMB_HDR_SIZE 32u
#define ONDISK_TOMB_MAX ((QUILL_BLOCK_SIZE - ONDISK_TOMB_HDR_SIZE) / sizeof(struct ondisk_tomb))

struct ondisk_tomb_block {
	uint64_t magic;    /* QUILL_TOMB_MAGIC */
	uint32_t version;
	uint32_t count;    /* 1 .. ONDISK_TOMB_MAX */
	uint64_t layer_id; /* whose trims */
	uint32_t crc;      /* CRC32C of the block */
	uint32_t reserved0;
	struct ondisk_tomb tombs[ONDISK_TOMB_MAX];
	uint8_t reserved[QUILL_BLOCK_SIZE - ONDISK_TOMB_HDR_SIZE -
			 ONDISK_TOMB_MAX * sizeof(struct ondisk_tomb)];
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_tomb_block) == QUILL_BLOCK_SIZE, "tomb block is one block");
_Static_assert(ONDISK_TOMB_MAX == 169, "169 tombs per block");

/* ---- in-memory forms, filled by the decoders ---- */
struct superblock {
	uint8_t uuid[16];
	uint32_t block_size;
	uint32_t segment_size;
	uint32_t segment_count;
	uint64_t data_offset;
	uint64_t device_size;
	uint64_t created_ns;
};

struct segment_header {
	enum ondisk_seg_state state;
	uint64_t volume_id; /* the layer */
	uint64_t generation;
	uint64_t first_seq;
	uint8_t uuid[16];
	uint64_t family_uid; /* with sno: the segment's id */
	uint32_t sno;
	uint64_t epoch;
};

struct summary_entry {
	uint64_t lba;
	uint32_t nblocks;
	enum ondisk_entry_kind kind;
	uint32_t src_slot;
	uint32_t src_block;
	uint32_t data_crc;
};

struct summary {
	uint64_t generation;
	uint64_t volume_id;
	uint64_t seq;
	uint64_t durable_seq;
	uint64_t open_seq;
	uint32_t nentries;
	uint32_t data_blocks;
	struct summary_entry entries[ONDISK_SUMMARY_MAX_ENTRIES];
};

/* Encoders write exactly one block into buf (QUILL_BLOCK_SIZE bytes). */
void ondisk_superblock_encode(const struct superblock *sb, void *buf);
void ondisk_segment_header_encode(const struct segment_header *h, void *buf);
void ondisk_summary_encode(const struct summary *s, void *buf);

/* Decoders: 0, or -EINVAL for a short buffer, -ENOENT when the magic is not there
 * (never written / garbage), -EILSEQ for a bad CRC, -EPROTO for a field out of range
 * (unknown version, impossible sizes or counts). */
int ondisk_superblock_decode(const void *buf, size_t len, struct superblock *sb);
/* The version a block with the superblock's magic claims (0 without the magic): says
 * why a decode gave -EPROTO. Version 1 stores are refused: see docs/format.md. */
uint32_t ondisk_superblock_version(const void *buf, size_t len);
int ondisk_segment_header_decode(const void *buf, size_t len, struct segment_header *h);
int ondisk_summary_decode(const void *buf, size_t len, struct summary *s);

/* ---- RocksDB records ----
 * key "V" | volume_id (8, big-endian) -> struct ondisk_volume_record (written META_SYNC)
 * key "S"                               -> struct ondisk_store_record (META_SYNC)
 * key "C"                               -> struct ondisk_checkpoint (META_NOWAL, with the map)
 * key "A" | layer_id (8, big-endian)    -> layer id (8, little-endian): a snapshot removed
 *                                          by merging it into its child; the slots whose
 *                                          headers name it belong to the child now
 *                                          (written with the checkpoint of the merge)
 * key "T" | family uid (8, big-endian) | segment number (4, big-endian)
 *                                       -> struct ondisk_slot_record: a segment the
 *                                          checkpoint covers whole, whose log start-up
 *                                          does not read, and the slot holding it here
 *                                          (written with the checkpoint;
 *                                          docs/format.md, "The segment table")
 * key "F" | family uid (8, big-endian)  -> struct ondisk_family_record: the family's
 *                                          next segment number (with the checkpoint)
 * key "H" | family uid (8, big-endian) | segment number (4, big-endian)
 *                                       -> struct ondisk_held_record: a copy of another
 *                                          node's segment held here (META_SYNC,
 *                                          engine/held.c)
 * key "E" | family uid (8, big-endian)  -> struct ondisk_epoch_record: the highest epoch
 *                                          a holder has seen of that family (META_SYNC)
 * key "G" | family uid (8, big-endian) | segment number (4, big-endian)
 *                                       -> struct ondisk_frag_record: a fragment of
 *                                          another node's encoded segment held here
 *                                          (META_SYNC, engine/heldfrag.c)
 */
#define QUILL_VOLUME_NAME_MAX 63u

/* A layer: a volume's writable head, or a snapshot (docs/format.md, "Layers"). */
enum ondisk_layer_kind {
	ONDISK_LAYER_VOLUME = 0,   /* the live layer of volume `name` */
	ONDISK_LAYER_SNAPSHOT = 1, /* snapshot `name` of the volume whose uid is `uid` */
	ONDISK_LAYER_CATALOG = 2,  /* in memory only: the log of records of layers that
				      have no log of their own yet (id 0, never stored) */
};

enum ondisk_layer_flags {
	ONDISK_LAYER_FLATTENING = 1u << 0, /* a flatten is under way: resumed at start-up */
	ONDISK_LAYER_DAMAGED = 1u << 1,    /* replay met a durable batch of this layer's log
					      whose summary was damaged: blocks it wrote
					      may read old data or zeros */
	ONDISK_LAYER_DELETED = 1u << 2,    /* log only: a tombstone, the layer is gone */
	ONDISK_LAYER_IMPORTING = 1u << 3,  /* created by an import that has not finished */
	ONDISK_LAYER_4KN = 1u << 4,        /* logical sectors of 4096 bytes (else 512): what
					      every export advertises; set at create, kept
					      by every layer derived from this one */
};
#define ONDISK_LAYER_FLAGS_KNOWN \
	(ONDISK_LAYER_FLATTENING | ONDISK_LAYER_DAMAGED | ONDISK_LAYER_IMPORTING | \
	 ONDISK_LAYER_4KN)
/* What a layer made from another (snapshot, its new head, clone, rollback) keeps. */
#define ONDISK_LAYER_INHERITED ONDISK_LAYER_4KN

/* The family of the catalog log (layer 0, in memory only): no volume's uid is this. */
#define ONDISK_CATALOG_UID 1ull

struct ondisk_volume_record {
	uint32_t version;      /* QUILL_FORMAT_VERSION */
	uint32_t kind;         /* enum ondisk_layer_kind */
	uint64_t volume_id;    /* the layer's id: never reused within a store */
	uint64_t size;         /* bytes, a multiple of QUILL_BLOCK_SIZE */
	uint64_t created_ns;
	char name[QUILL_VOLUME_NAME_MAX + 1]; /* NUL-terminated */
	uint64_t parent_id;    /* layer this one reads through to where it has nothing; 0 */
	uint64_t overlap;      /* blocks: LBAs at or past this never read through */
	uint64_t uid;          /* the volume's family uid, kept across its snapshots: random,
				  never 0, unique in the store (docs/format.md, "Segment ids") */
	uint32_t flags;        /* enum ondisk_layer_flags */
	uint32_t crc;
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_volume_record) == 128, "volume record size");

struct ondisk_store_record {
	uint32_t version;
	uint32_t reserved0;
	uint8_t uuid[16];         /* must equal the superblock's */
	uint64_t next_volume_id;  /* ids below this were handed out */
	uint8_t reserved[28];
	uint32_t crc;
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_store_record) == 64, "store record size");

struct ondisk_checkpoint {
	uint32_t version;
	uint32_t reserved0;
	uint64_t seq;             /* every batch with seq <= this is in the stored map */
	uint8_t reserved[44];
	uint32_t crc;
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_checkpoint) == 64, "checkpoint record size");

struct volume_record {
	uint64_t volume_id;
	uint64_t size;
	uint64_t created_ns;
	char name[QUILL_VOLUME_NAME_MAX + 1];
	enum ondisk_layer_kind kind;
	uint64_t parent_id;
	uint64_t overlap;
	uint64_t uid;
	uint32_t flags;
};

void ondisk_volume_record_encode(const struct volume_record *v, struct ondisk_volume_record *out);
int ondisk_volume_record_decode(const void *buf, size_t len, struct volume_record *v);
/* Layer record blocks: one block (QUILL_BLOCK_SIZE). Decode errors as above. */
struct layer_block {
	enum ondisk_layer_op op;
	uint64_t merge_seq;
	struct volume_record rec;
	uint64_t child_id, child_overlap; /* MERGE (0: unknown) */
	uint64_t alias_to;                /* MERGE, a family checkpoint's copy (0: none) */
};
void ondisk_layer_block_encode(const struct layer_block *l, void *buf);
int ondisk_layer_block_decode(const void *buf, size_t len, struct layer_block *l);

struct tomb_block {
	uint64_t layer_id;
	uint32_t count;
	struct ondisk_tomb tombs[ONDISK_TOMB_MAX];
};
void ondisk_tomb_block_encode(const struct tomb_block *t, void *buf);
int ondisk_tomb_block_decode(const void *buf, size_t len, struct tomb_block *t);

void ondisk_store_record_encode(const uint8_t uuid[16], uint64_t next_volume_id,
				struct ondisk_store_record *out);
int ondisk_store_record_decode(const void *buf, size_t len, uint8_t uuid[16],
			       uint64_t *next_volume_id);
/* A settled segment: sealed, every batch in it retired with a seq at most the
 * checkpoint's, no LAYER entry in it. What start-up would otherwise learn by walking
 * its log. Little-endian. */
#define ONDISK_SLOT_RECORD_VERSION 2u
struct ondisk_slot_record {
	uint32_t version;     /* ONDISK_SLOT_RECORD_VERSION */
	uint32_t used;        /* blocks written: header, summaries, data */
	uint64_t volume_id;   /* as the segment's header names it */
	uint64_t generation;  /* the segment's header's: another one is another segment */
	uint64_t reserved0;   /* zero (its oldest batch is in its header) */
	uint64_t last_seq;    /* its newest batch */
	uint32_t tombs;       /* TRIM, ZERO and TOMB entries in it */
	uint32_t slot;        /* where it is on this node */
	uint8_t reserved[12];
	uint32_t crc;
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_slot_record) == 64, "slot record size");
_Static_assert(offsetof(struct ondisk_slot_record, generation) == 16, "slot record generation");
_Static_assert(offsetof(struct ondisk_slot_record, slot) == 44, "slot record slot");

/* The segment (family_uid, sno) is this record's key; the rest is its value. No
 * padding: the engine compares records with memcmp. */
struct slot_record {
	uint64_t family_uid, volume_id, generation, last_seq;
	uint32_t sno, used, tombs, slot;
};
_Static_assert(sizeof(struct slot_record) == 48, "slot_record has no padding");

#define ONDISK_FAMILY_RECORD_VERSION 1u
struct ondisk_family_record {
	uint32_t version;  /* ONDISK_FAMILY_RECORD_VERSION */
	uint32_t next_sno; /* segment numbers below it may have been given out */
	uint8_t reserved[52];
	uint32_t crc;
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_family_record) == 64, "family record size");

/* A held copy of another node's segment (engine/held.c). Little-endian. */
#define ONDISK_HELD_RECORD_VERSION 1u
struct ondisk_held_record {
	uint32_t version;  /* ONDISK_HELD_RECORD_VERSION */
	uint32_t slot;     /* where the copy is on this node */
	uint64_t epoch;    /* the owner's epoch it was opened under */
	uint32_t sealed;   /* 1: sealed at `length`; 0: open (its length is its log's) */
	uint32_t length;   /* sealed: blocks that count; open: 0 */
	uint8_t reserved[36];
	uint32_t crc;
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_held_record) == 64, "held record size");
_Static_assert(offsetof(struct ondisk_held_record, length) == 20, "held record length");

/* The highest epoch a holder has seen of a family: older ones are refused. */
#define ONDISK_EPOCH_RECORD_VERSION 1u
struct ondisk_epoch_record {
	uint32_t version;  /* ONDISK_EPOCH_RECORD_VERSION */
	uint32_t reserved0;
	uint64_t epoch;
	uint8_t reserved[44];
	uint32_t crc;
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_epoch_record) == 64, "epoch record size");
_Static_assert(offsetof(struct ondisk_epoch_record, epoch) == 8, "epoch record epoch");

/* A fragment of another node's erasure-coded segment (engine/heldfrag.c;
 * docs/erasure-coding.md). Its slot holds the fragment's image (replication/ec_format.h:
 * header block, CRC table, data) from block 0. The engine does not read that format:
 * head_crc lets start-up check the header block against the record. Little-endian. */
#define ONDISK_FRAG_RECORD_VERSION 1u
struct ondisk_frag_record {
	uint32_t version;      /* ONDISK_FRAG_RECORD_VERSION */
	uint32_t slot;         /* where the image is on this node */
	uint64_t epoch;        /* the owner's epoch it was put under */
	uint8_t index, k, m;   /* fragment index of k data + m parity */
	uint8_t reserved0;
	uint32_t seg_blocks;   /* L: the encoded segment's blocks */
	uint32_t frag_blocks;  /* F: the fragment's data blocks */
	uint32_t image_blocks; /* the image: header block, CRC table, F blocks */
	uint32_t frag_crc;     /* CRC32C of the F data blocks (the header's) */
	uint32_t head_crc;     /* CRC32C of the image's block 0, the whole 4096 bytes */
	uint8_t reserved[20];
	uint32_t crc;
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_frag_record) == 64, "fragment record size");
_Static_assert(offsetof(struct ondisk_frag_record, index) == 16, "fragment record index");
_Static_assert(offsetof(struct ondisk_frag_record, head_crc) == 36, "fragment record head_crc");

/* What a fragment record says, without its key. */
struct frag_record {
	uint32_t slot;
	uint64_t epoch;
	uint8_t index, k, m;
	uint32_t seg_blocks, frag_blocks, image_blocks;
	uint32_t frag_crc, head_crc;
};

/* What a held record says, without its key. */
struct held_record {
	uint32_t slot;
	uint64_t epoch;
	bool sealed;
	uint32_t length;
};

void ondisk_checkpoint_encode(uint64_t seq, struct ondisk_checkpoint *out);
int ondisk_checkpoint_decode(const void *buf, size_t len, uint64_t *seq);

/* ---- RocksDB values (the extent map checkpoint) ----
 * key  "M" | volume_id (8, big-endian) | chunk index (8, big-endian)
 * value: a sequence of struct ondisk_map_entry, one per mapped block of the chunk
 *        (a chunk covers MAP_CHUNK_BLOCKS consecutive LBAs), in index order.
 *        A chunk with no mapped block has no key.
 */
#define ONDISK_KEY_STORE "S"
#define ONDISK_KEY_CKPT "C"
#define ONDISK_VOLUME_KEY_LEN 9u
#define ONDISK_MAP_KEY_LEN 17u
#define ONDISK_ALIAS_KEY_LEN 9u

void ondisk_volume_key(uint64_t volume_id, uint8_t key[ONDISK_VOLUME_KEY_LEN]);
void ondisk_map_key(uint64_t volume_id, uint64_t chunk, uint8_t key[ONDISK_MAP_KEY_LEN]);
void ondisk_alias_key(uint64_t layer_id, uint8_t key[ONDISK_ALIAS_KEY_LEN]);
#define ONDISK_SLOT_KEY_LEN 13u
void ondisk_slot_key(uint64_t family_uid, uint32_t sno, uint8_t key[ONDISK_SLOT_KEY_LEN]);
/* -EPROTO unless key is a slot key. */
int ondisk_slot_key_decode(const void *key, size_t len, uint64_t *family_uid, uint32_t *sno);
#define ONDISK_FAMILY_KEY_LEN 9u
void ondisk_family_key(uint64_t family_uid, uint8_t key[ONDISK_FAMILY_KEY_LEN]);
/* -EPROTO unless key is a family key. */
int ondisk_family_key_decode(const void *key, size_t len, uint64_t *family_uid);
void ondisk_family_record_encode(uint32_t next_sno, struct ondisk_family_record *out);
/* 0, -EINVAL (length), -EILSEQ (crc), -EPROTO (version) */
int ondisk_family_record_decode(const void *buf, size_t len, uint32_t *next_sno);
void ondisk_slot_record_encode(const struct slot_record *r, struct ondisk_slot_record *out);
/* Fills r but its key's fields (family_uid, sno). 0, -EINVAL (length), -EILSEQ (crc),
 * -EPROTO (version, or used 0) */
int ondisk_slot_record_decode(const void *buf, size_t len, struct slot_record *r);
/* Held copies and families' epochs: keys like "T" and "F" under 'H' and 'E'. */
#define ONDISK_HELD_KEY_LEN 13u
#define ONDISK_EPOCH_KEY_LEN 9u
void ondisk_held_key(uint64_t family_uid, uint32_t sno, uint8_t key[ONDISK_HELD_KEY_LEN]);
/* -EPROTO unless key is a held key. */
int ondisk_held_key_decode(const void *key, size_t len, uint64_t *family_uid, uint32_t *sno);
void ondisk_epoch_key(uint64_t family_uid, uint8_t key[ONDISK_EPOCH_KEY_LEN]);
int ondisk_epoch_key_decode(const void *key, size_t len, uint64_t *family_uid);
void ondisk_held_record_encode(const struct held_record *r, struct ondisk_held_record *out);
/* 0, -EINVAL (length), -EILSEQ (crc), -EPROTO (version, sealed not 0 or 1) */
int ondisk_held_record_decode(const void *buf, size_t len, struct held_record *r);
void ondisk_epoch_record_encode(uint64_t epoch, struct ondisk_epoch_record *out);
#define ONDISK_FRAG_KEY_LEN 13u
void ondisk_frag_key(uint64_t family_uid, uint32_t sno, uint8_t key[ONDISK_FRAG_KEY_LEN]);
/* -EPROTO unless key is a fragment key. */
int ondisk_frag_key_decode(const void *key, size_t len, uint64_t *family_uid, uint32_t *sno);
void ondisk_frag_record_encode(const struct frag_record *r, struct ondisk_frag_record *out);
/* 0, -EINVAL (length), -EILSEQ (crc), -EPROTO (version, a reserved byte set, k or m 0,
 * index >= k + m, frag_blocks or image_blocks 0) */
int ondisk_frag_record_decode(const void *buf, size_t len, struct frag_record *r);
int ondisk_epoch_record_decode(const void *buf, size_t len, uint64_t *epoch);
/* -EPROTO unless key is an alias key. */
int ondisk_alias_key_decode(const void *key, size_t len, uint64_t *layer_id);
/* -EPROTO unless key is a map key. */
int ondisk_map_key_decode(const void *key, size_t len, uint64_t *volume_id, uint64_t *chunk);

#define MAP_CHUNK_SHIFT 6u
#define MAP_CHUNK_BLOCKS (1u << MAP_CHUNK_SHIFT)

struct ondisk_map_entry {
	uint16_t index;     /* lba - chunk * MAP_CHUNK_BLOCKS */
	uint16_t block;     /* block index inside the slot */
	uint32_t slot;      /* ONDISK_MAP_SLOT_ZERO: reads as zeros, whatever the parent
			       layers hold (a trim in a layer that has a parent, or
			       allocated zeros: block ONDISK_MAP_ZERO_ALLOCATED) */
	uint32_t crc;       /* CRC32C of the block's data */
} __attribute__((packed));
#define ONDISK_MAP_SLOT_ZERO 0xffffffffu
/* block of a zero entry: 0 a trim (block status: a hole), this: allocated zeros */
#define ONDISK_MAP_ZERO_ALLOCATED 1u
_Static_assert(sizeof(struct ondisk_map_entry) == 12, "map entry size");

/* ---- family checkpoint blocks (format version 5; docs/format.md, "Family
 * checkpoint blocks", and
 * docs/replication.md, "Family checkpoints") ----
 * MAPS: map chunks of one layer, their entries naming blocks by the family's segment
 * number (the `slot` field of ondisk_map_entry holds the sno: slots are a node's
 * own). FCKPT: a family checkpoint's BEGIN or END marker. Both are one block. */
#define QUILL_FMAPS_MAGIC 0x504d4651u /* "QFMP" */
#define QUILL_FCKPT_MAGIC 0x4b434651u /* "QFCK" */
#define ONDISK_FMAPS_VERSION 1u
#define ONDISK_FCKPT_VERSION 1u
#define ONDISK_FMAPS_CHUNKS 5u

struct ondisk_fmaps_hdr {
	uint32_t magic;     /* QUILL_FMAPS_MAGIC */
	uint16_t version;   /* ONDISK_FMAPS_VERSION */
	uint16_t nchunks;   /* 1 .. ONDISK_FMAPS_CHUNKS */
	uint64_t layer;     /* the layer the chunks are of */
	uint64_t ckpt;      /* family checkpoint number */
	uint32_t crc;       /* CRC32C of the whole block, this field 0 */
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_fmaps_hdr) == 32, "MAPS header size");
_Static_assert(offsetof(struct ondisk_fmaps_hdr, crc) == 24, "MAPS crc offset");

/* followed by nentries struct ondisk_map_entry (slot: the sno), in index order */
struct ondisk_fmaps_chunk {
	uint32_t chunk;     /* lba / MAP_CHUNK_BLOCKS */
	uint16_t nentries;  /* 0 .. MAP_CHUNK_BLOCKS; 0: the chunk is empty now */
	uint16_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_fmaps_chunk) == 8, "MAPS chunk header size");
_Static_assert(sizeof(struct ondisk_fmaps_hdr) + ONDISK_FMAPS_CHUNKS *
	       (sizeof(struct ondisk_fmaps_chunk) + MAP_CHUNK_BLOCKS *
		sizeof(struct ondisk_map_entry)) <= QUILL_BLOCK_SIZE, "5 full chunks per block");

struct fmaps_chunk {
	uint32_t chunk, nentries;
	struct ondisk_map_entry e[MAP_CHUNK_BLOCKS];
};

struct fmaps_block {
	uint64_t layer, ckpt;
	uint32_t nchunks;
	struct fmaps_chunk chunks[ONDISK_FMAPS_CHUNKS];
};

/* buf: one block. m must be valid (nchunks 1 .. 5, nentries <= 64). */
void ondisk_fmaps_block_encode(const struct fmaps_block *m, void *buf);
/* 0, -EINVAL (len below a block), -ENOENT (magic), -EILSEQ (crc), -EPROTO (version,
 * nchunks, nentries, an index of 64 or more or out of order, a zero entry whose
 * block is above 1) */
int ondisk_fmaps_block_decode(const void *buf, size_t len, struct fmaps_block *m);

enum ondisk_fckpt_type { ONDISK_FCKPT_BEGIN = 1, ONDISK_FCKPT_END = 2 };

struct ondisk_fckpt_hdr {
	uint32_t magic;     /* QUILL_FCKPT_MAGIC */
	uint16_t version;   /* ONDISK_FCKPT_VERSION */
	uint8_t type;       /* enum ondisk_fckpt_type */
	uint8_t last;       /* END: 1 on its last block */
	uint64_t family;    /* family uid */
	uint64_t ckpt;      /* K */
	uint64_t base;      /* the complete checkpoint K builds on (0: none) */
	uint64_t seq;       /* S: every batch of the family at or below it is in the maps */
	uint64_t epoch;
	uint16_t nruns;     /* END: struct ondisk_fckpt_run after the header */
	uint16_t nsegs;     /* END: struct ondisk_fckpt_seg after the runs */
	uint32_t crc;       /* CRC32C of the whole block, this field 0 */
	uint64_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_fckpt_hdr) == 64, "FCKPT header size");
_Static_assert(offsetof(struct ondisk_fckpt_hdr, crc) == 52, "FCKPT crc offset");

struct ondisk_fckpt_run {   /* MAPS blocks holding the newest copy of some chunk */
	uint32_t sno;
	uint16_t block, count;
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_fckpt_run) == 8, "FCKPT run size");

struct ondisk_fckpt_seg {   /* the family's segment table (what "T" records keep) */
	uint32_t sno, used;
	uint16_t records, tombs, maps, reserved;
	uint64_t first_seq, last_seq;
} __attribute__((packed));
_Static_assert(sizeof(struct ondisk_fckpt_seg) == 32, "FCKPT segment size");

#define ONDISK_FCKPT_AREA (QUILL_BLOCK_SIZE - sizeof(struct ondisk_fckpt_hdr))
#define ONDISK_FCKPT_RUNS_MAX (ONDISK_FCKPT_AREA / sizeof(struct ondisk_fckpt_run))
#define ONDISK_FCKPT_SEGS_MAX (ONDISK_FCKPT_AREA / sizeof(struct ondisk_fckpt_seg))
_Static_assert(ONDISK_FCKPT_RUNS_MAX == 504 && ONDISK_FCKPT_SEGS_MAX == 126,
	       "FCKPT block capacity");

struct fckpt_block {
	enum ondisk_fckpt_type type;
	bool last;
	uint64_t family, ckpt, base, seq, epoch;
	uint32_t nruns, nsegs; /* nruns * 8 + nsegs * 32 <= ONDISK_FCKPT_AREA; BEGIN: 0 */
	struct ondisk_fckpt_run runs[ONDISK_FCKPT_RUNS_MAX];
	struct ondisk_fckpt_seg segs[ONDISK_FCKPT_SEGS_MAX];
};

/* buf: one block. f must be valid (its runs and segments fit). */
void ondisk_fckpt_block_encode(const struct fckpt_block *f, void *buf);
/* 0, -EINVAL (len below a block), -ENOENT (magic), -EILSEQ (crc), -EPROTO (version,
 * type, a BEGIN with runs, segments or last set, runs and segments past the block,
 * a run of 0 blocks, family or ckpt 0) */
int ondisk_fckpt_block_decode(const void *buf, size_t len, struct fckpt_block *f);

#endif
