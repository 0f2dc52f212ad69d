/* tests/unit/engine/engine_fixture.h — an engine on a scratch file-backed store, and
 * blocking I/O helpers, shared by the engine's unit tests.
 *
 * Each test gets a scratch directory under $QUILL_TEST_DIR, else QUILL_TEST_DIR (the
 * build directory), which must support O_DIRECT; a test whose directory does not is
 * skipped with the reason.
 */
#ifndef QUILL_TESTS_ENGINE_FIXTURE_H
#define QUILL_TESTS_ENGINE_FIXTURE_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/engine.h"
#include "engine/segment.h"
#include "engine/ondisk.h"


#define BLK ENGINE_BLOCK_SIZE
#define SEG_BLOCKS 32u
#define SEG_SIZE (SEG_BLOCKS * BLK)
#define NSEGS 20u
#define STORE_SIZE (QUILL_DATA_OFFSET + (uint64_t)NSEGS * SEG_SIZE)
#define VOL_BLOCKS 1024u
#define VOL_SIZE ((uint64_t)VOL_BLOCKS * BLK)

extern char dir[PATH_MAX];
extern char store_path[PATH_MAX + 16];
extern char meta_path[PATH_MAX + 16];
extern struct engine *eng;

struct done {
	bool done;
	int res;
};

void setup(void);
void teardown(void);
void opts_for(struct engine_opts *o, const char *store, const char *meta, bool format);
int try_open(bool format);
void open_engine(void);
void reopen_engine(void);
/* Closes the engine and opens its store again, of segs segments, with family_records
 * as given. */
void reopen_engine_sized(uint32_t segs, bool family_records);
/* Reopens from the store alone: RocksDB rebuilt from the log (rebuild_meta). */
void rebuild_engine(void);
struct engine_stats stats(void);
struct engine_volume *create_and_open(const char *name, uint64_t size);
struct engine_volume *open_vol(const char *name);
struct engine_volume_info info(const char *name);
void on_done(void *arg, int res);
int finish(int r, struct done *d);
int vwrite(struct engine_volume *vol, uint64_t lba, uint32_t n, const void *buf);
int vread(struct engine_volume *vol, uint64_t lba, uint32_t n, void *buf);
int vtrim(struct engine_volume *vol, uint64_t lba, uint64_t n);
int vzero(struct engine_volume *vol, uint64_t lba, uint64_t n); /* allocated zeros */
int eflush(void);
/* Runs the engine until the volume's flatten ends; returns its result. */
int flatten_wait(const char *vol);
void fill(void *buf, uint64_t lba, uint32_t n, uint32_t tag);
void write_tagged(struct engine_volume *vol, uint64_t lba, uint32_t n, uint32_t tag);
/* One-block batches (each takes 2: its summary) from *lba on, and a two-block one if
 * need be, until vol's open segment has exactly `left` blocks free (on into the next
 * segment first if it has fewer than left + 3). */
void fill_open_segment_to(struct engine_volume *vol, uint64_t *lba, uint32_t left);
void expect_tagged(struct engine_volume *vol, uint64_t lba, uint32_t n, uint32_t tag);
void in_child(int (*fn)(void));

/* Hooks of a test's fake segment mirror (segment.h's seg_mirror_ops) that do nothing
 * but what the contract needs: opened/sealed ignore, flush and append answer when the
 * local store's flush does (nothing elsewhere to make durable). ctx is unused. */
void mirror_nop_opened(void *ctx, uint32_t slot, uint64_t uid, uint32_t sno, uint64_t epoch);
void mirror_nop_sealed(void *ctx, uint32_t slot, uint32_t length);
int mirror_local_flush(void *ctx, seg_cb cb, void *arg);
int mirror_local_append(void *ctx, uint32_t slot, uint32_t block, const struct iovec *iov,
			int iovcnt, uint32_t nblocks, bool fua, seg_cb cb, void *arg);

/* In a child: no Criterion assertions, just a status. */
#define CHILD_CHECK(x) \
	do { \
		if (!(x)) { \
			fprintf(stderr, "child: %s:%d: %s\n", __FILE__, __LINE__, #x); \
			return __LINE__; \
		} \
	} while (0)

#endif
