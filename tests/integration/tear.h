/* tests/integration/tear.h — simulate a torn batch write in a closed store.
 *
 * A process crash (kill -9) does not tear writes: the kernel finishes them. A power
 * loss can: the summary of the newest batch reaches the disk, some of its data does
 * not. tear_newest_batch() makes that happen on purpose, but only where it could
 * really happen without breaking a promise the engine made:
 *   - the batch is the newest in the store (highest seq) and holds only DATA entries;
 *   - its seq is above the checkpoint recorded in RocksDB (a checkpoint means its
 *     batches' data was synced);
 *   - the caller's eligible() accepts every data block (e.g. "written by a round
 *     whose flush never completed").
 * It then overwrites the batch's last data block with garbage.
 */
#ifndef QUILL_TESTS_INTEGRATION_TEAR_H
#define QUILL_TESTS_INTEGRATION_TEAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/ondisk.h"

typedef bool (*tear_eligible_fn)(const void *block, uint64_t lba, void *arg);

/* Returns 1 and sets *seq if a batch was torn, 0 if the newest batch is not
 * eligible (or there is none), -errno on I/O or format errors. */
int tear_newest_batch(const char *store_path, const char *meta_path,
		      tear_eligible_fn eligible, void *arg, uint64_t *seq);

/* A valid batch above the checkpoint, as the log holds it. */
struct tear_batch {
	uint32_t slot;
	uint32_t pos;    /* block of its summary within the slot */
	uint64_t offset; /* byte offset of its summary in the store; data block k (the
			    k-th DATA/MOVE entry) is at offset + (1 + k) * 4096 */
	struct summary sum;
};

/* Every valid batch above the checkpoint, in seq order (*out: free() it). */
int tear_list_batches(const char *store_path, const char *meta_path, struct tear_batch **out,
		      size_t *n);

/* XORs one byte of the closed store at offset with 0x5a (and syncs). */
int tear_flip_byte(const char *store_path, uint64_t offset);

#endif
