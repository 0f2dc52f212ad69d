/* tests/integration/itest.h — helpers shared by the engine integration tests.
 *
 * A seeded PRNG (every random test prints and accepts its seed), a scratch directory
 * on a filesystem that supports O_DIRECT, self-describing block contents, and
 * blocking wrappers around the asynchronous engine calls.
 *
 * Block contents: it_block_fill(buf, seed, lba, tag) writes a 4 KiB block whose
 * first bytes are a magic, the LBA, the tag and the seed, followed by a pattern
 * derived from all three. it_block_check() tells such a block from zeros and from
 * anything else, so a verifier can say which write (tag) a block came from.
 */
#ifndef QUILL_TESTS_INTEGRATION_ITEST_H
#define QUILL_TESTS_INTEGRATION_ITEST_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

#define IT_SKIP 77

#define IT_MIB (1024ull * 1024ull)

/* ---- PRNG (splitmix64) ---- */
uint64_t it_rand(uint64_t *state);
/* Uniform in [0, n); n > 0. */
uint64_t it_rand_below(uint64_t *state, uint64_t n);
/* Uniform in [lo, hi]. */
uint64_t it_rand_range(uint64_t *state, uint64_t lo, uint64_t hi);
/* A well-mixed hash of two words (for deriving per-round / per-block streams). */
uint64_t it_mix(uint64_t a, uint64_t b);

/* QUILL_SEED from the environment, else one from the clock. Printed by the caller. */
uint64_t it_seed_from_env(void);
/* An unsigned from the environment variable name, or def if unset/invalid. */
unsigned it_env_unsigned(const char *name, unsigned def);

/* Monotonic clock in nanoseconds. */
uint64_t it_now_ns(void);

/* ---- a test's scratch store ---- */
struct it_env {
	const char *name;
	uint64_t seed;
	char dir[PATH_MAX];        /* scratch directory (it_scratch_dir) */
	char store[PATH_MAX + 16]; /* dir/store.img */
	char meta[PATH_MAX + 16];  /* dir/meta: the RocksDB directory */
};
/* Takes the seed (it_seed_from_env) and prints it, creates the scratch directory.
 * Returns 0, IT_SKIP (reason printed) or 1 (failure printed). */
int it_begin(struct it_env *env, const char *name);
/* Prints the verdict. On success removes the scratch directory unless QUILL_KEEP=1; on
 * failure keeps it and says where. Returns the exit status (0 or 1). */
int it_end(const struct it_env *env, bool ok);

/* ---- scratch directory ----
 * Creates <base>/quill-<tag>-XXXXXX where base is $QUILL_TEST_DIR, else the current
 * directory (ctest runs integration tests in the build tree), and checks that a file
 * in it can be opened with O_DIRECT. Returns 0, IT_SKIP (reason printed) when the
 * filesystem has no O_DIRECT (tmpfs), or -errno. */
int it_scratch_dir(const char *tag, char *out, size_t outlen);
/* Removes a directory tree (best effort). */
void it_rm_rf(const char *path);

/* ---- block contents ---- */
enum it_block_kind {
	IT_BLOCK_ZERO, /* all zeros */
	IT_BLOCK_DATA, /* a block written by it_block_fill for this lba; *tag set */
	IT_BLOCK_BAD,  /* anything else: *tag set if the header names this lba, else 0 */
};
void it_block_fill(void *buf, uint64_t seed, uint64_t lba, uint64_t tag);
enum it_block_kind it_block_check(const void *buf, uint64_t seed, uint64_t lba, uint64_t *tag);
/* Describes a bad block in a short string (what its header says). */
void it_block_describe(const void *buf, char *out, size_t outlen);

/* 4096-aligned, zeroed; exits on failure. */
void *it_alloc(size_t len);

/* ---- blocking engine calls (engine_wait on a completion flag) ---- */
int it_read(struct engine *eng, struct engine_volume *vol, uint64_t lba, uint32_t n, void *buf);
int it_write(struct engine *eng, struct engine_volume *vol, uint64_t lba, uint32_t n,
	     const void *buf, unsigned flags);
int it_trim(struct engine *eng, struct engine_volume *vol, uint64_t lba, uint64_t n);
int it_flush(struct engine *eng);
/* engine_volume_create with enum engine_create_flags (ENGINE_CREATE_SECTOR_4K...). */
int it_volume_create(struct engine *eng, const char *name, uint64_t size, unsigned flags);

void it_print_stats(const char *prefix, const struct engine_stats *st);

#endif
