/* tests/unit/block/blk_done.c — see blk_done.h. */
#include "blk_done.h"

#include <criterion/criterion.h>

static unsigned completions;

void on_done(void *arg, int res)
{
	struct done *d = arg;

	cr_assert_not(d->done, "callback ran twice");
	d->done = true;
	d->res = res;
	d->seq = completions++;
}
