/* tests/unit/block/blk_done.h — a block-layer completion recorded for a test: that
 * it ran (once), its result, and its place among all completions. */
#ifndef QUILL_TEST_BLK_DONE_H
#define QUILL_TEST_BLK_DONE_H

#include <stdbool.h>

struct done {
	bool done;
	int res;
	unsigned seq;
};

/* A blk_cb: arg is a struct done, zeroed before the call. Fails the test if it runs
 * twice. */
void on_done(void *arg, int res);

#endif
