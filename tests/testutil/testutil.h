/* tests/testutil/testutil.h — helpers every kind of test needs. */
#ifndef QUILL_TESTS_TESTUTIL_H
#define QUILL_TESTS_TESTUTIL_H

#include <stddef.h>

/* rm -rf path: a test's scratch folder. Missing is fine. */
void testutil_rm_tree(const char *path);

/* Makes a scratch folder base/PREFIX-XXXXXX (base: $QUILL_TEST_DIR if set, else
 * default_base) into out, and checks that files there take O_DIRECT, as a store needs.
 * 0; -errno of mkdtemp; -EOPNOTSUPP (folder made, out filled) without O_DIRECT. */
int testutil_scratch_dir(const char *default_base, const char *prefix, char *out, size_t len);

/* A random test's seed: $QUILL_TEST_SEED if set, else a fresh one; printed to stderr
 * with how to rerun with it. */
unsigned testutil_seed(void);

#endif
