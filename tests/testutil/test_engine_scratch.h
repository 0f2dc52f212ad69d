/* tests/testutil/test_engine_scratch.h — a freshly formatted engine in a scratch folder,
 * for the tests of the layers above the engine (block, vhost). */
#ifndef QUILL_TESTS_TEST_ENGINE_SCRATCH_H
#define QUILL_TESTS_TEST_ENGINE_SCRATCH_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

/* Makes a scratch folder (testutil_scratch_dir: base, prefix) into dir, formats a store
 * of store_size bytes (1 MiB segments) with its metadata there, and opens it.
 * 0; -EOPNOTSUPP (dir filled) when the folder does not take O_DIRECT: skip the test;
 * other -errno when the folder or the engine cannot be made. */
int test_engine_scratch(const char *base, const char *prefix, uint64_t store_size, char *dir,
			size_t dir_len, struct engine **out);

#endif
