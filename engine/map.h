/* engine/map.h — a volume's extent map in memory (internal to the engine).
 *
 * LBA -> (slot, block in slot, CRC32C of the block). Sparse: a two-level table whose
 * leaves (MAPX_LEAF_BLOCKS LBAs each) are allocated on first write, so a thin volume
 * costs memory in proportion to what was written. Each leaf keeps one dirty bit per
 * RocksDB chunk (MAP_CHUNK_BLOCKS LBAs, engine/ondisk.h) for the checkpoint.
 *
 * Owned by the engine thread; not thread-safe.
 */
#ifndef QUILL_ENGINE_MAP_H
#define QUILL_ENGINE_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/ondisk.h"

#define MAPX_LEAF_SHIFT 9u
#define MAPX_LEAF_BLOCKS (1u << MAPX_LEAF_SHIFT)
#define MAPX_CHUNKS_PER_LEAF (MAPX_LEAF_BLOCKS / MAP_CHUNK_BLOCKS)

/* map_loc.slot of a zero entry: the LBA reads as zeros even if a parent layer holds
 * data there. Zero entries reference no block. Their map_loc.block is 0 for a trim
 * (block status: a hole) or MAP_ZERO_ALLOCATED for allocated zeros (block status:
 * allocated, reads as zeros; in a layer without a parent too). */
#define MAP_SLOT_ZERO ONDISK_MAP_SLOT_ZERO
#define MAP_ZERO_ALLOCATED ONDISK_MAP_ZERO_ALLOCATED

struct map_loc {
	uint32_t slot;
	uint32_t block;
	uint32_t crc;
};

struct map;

/* Called for every block whose location changes: old (if was_mapped) loses a
 * reference, new (if now_mapped) gains one. Lets the engine keep live counts. */
typedef void (*map_ref_fn)(void *arg, const struct map_loc *loc, int delta);

int map_create(uint64_t nblocks, map_ref_fn ref, void *ref_arg, struct map **out);
void map_destroy(struct map *m); /* NULL ok; does not call ref */
uint64_t map_nblocks(const struct map *m);
/* Grows or shrinks; shrinking unmaps (and unreferences) the blocks past the end. */
int map_resize(struct map *m, uint64_t nblocks);

/* false for a hole; true for data or a zero entry (out->slot == MAP_SLOT_ZERO). */
bool map_get(const struct map *m, uint64_t lba, struct map_loc *out);
/* -ENOMEM if a leaf cannot be allocated; the map is unchanged then. */
int map_set(struct map *m, uint64_t lba, const struct map_loc *loc);
/* Sets only if lba currently maps to (slot, block): the cleaner's relocation.
 * Returns 1 if set, 0 if not, -ENOMEM. */
int map_move(struct map *m, uint64_t lba, uint32_t src_slot, uint32_t src_block,
	     const struct map_loc *dst);
void map_clear(struct map *m, uint64_t lba, uint64_t nblocks);
uint64_t map_mapped_blocks(const struct map *m); /* data entries only */

/* Calls fn for each entry (data or zero) with lba in order; stops and returns fn's
 * value if non-zero. */
int map_for_each(const struct map *m,
		 int (*fn)(void *arg, uint64_t lba, const struct map_loc *loc), void *arg);
int map_for_each_range(const struct map *m, uint64_t lba, uint64_t nblocks,
		       int (*fn)(void *arg, uint64_t lba, const struct map_loc *loc), void *arg);

/* Checkpoint support. map_take_dirty() calls emit(chunk, entries, n) for each chunk
 * changed since the last call (n = 0: the chunk is now empty) and clears the dirty
 * bits. entries are in on-disk form. */
typedef int (*map_chunk_fn)(void *arg, uint64_t chunk, const struct ondisk_map_entry *e,
			    size_t n);
int map_take_dirty(struct map *m, map_chunk_fn emit, void *arg);
/* The same in slices, so that a checkpoint of many chunks does not hold the engine's
 * thread: map_take_begin() sets aside the chunks dirty now (one take at a time);
 * map_take_some() emits about max_chunks of them (whole leaves: up to
 * MAPX_CHUNKS_PER_LEAF - 1 more), each with its content at that moment, adds the
 * number emitted to *emitted, and returns 1 while some remain, 0 once the take is over,
 * or emit's error (the take then stays open at the failing leaf). A chunk changed
 * after its leaf was emitted is dirty again for the next take; one changed before is
 * emitted once, as it is then. map_take_abort() gives back to the dirty set what the
 * take has not emitted. */
int map_take_begin(struct map *m);
int map_take_some(struct map *m, size_t max_chunks, map_chunk_fn emit, void *arg,
		  size_t *emitted);
bool map_taking(const struct map *m);
void map_take_abort(struct map *m);
/* Calls emit for every chunk of every leaf allocated (n 0: an empty chunk), dirty or
 * not, leaving the dirty bits alone (a family checkpoint's whole maps). Stops at
 * emit's error. */
int map_for_each_chunk(const struct map *m, map_chunk_fn emit, void *arg);
/* Marks every chunk that holds or held data dirty (after a failed checkpoint). */
void map_mark_all_dirty(struct map *m);
/* Forgets every dirty bit (after loading a checkpoint, which is what they'd write). */
void map_clear_dirty(struct map *m);
/* Loads one chunk from its on-disk value. -EPROTO if malformed (nothing loaded);
 * -ERANGE if some blocks lie past the map's end (the others are loaded). */
int map_load_chunk(struct map *m, uint64_t chunk, const void *val, size_t len);

#endif
