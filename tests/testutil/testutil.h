/* tests/testutil/testutil.h — helpers every kind of test needs. */
#ifndef QUILL_TESTS_TESTUTIL_H
#define QUILL_TESTS_TESTUTIL_H

/* rm -rf path: a test's scratch folder. Missing is fine. */
void testutil_rm_tree(const char *path);

#endif
