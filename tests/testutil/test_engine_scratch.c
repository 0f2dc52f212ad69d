/* tests/testutil/test_engine_scratch.c — see test_engine_scratch.h. */
#include "test_engine_scratch.h"

#include <limits.h>
#include <stdio.h>

#include "testutil.h"

int test_engine_scratch(const char *base, const char *prefix, uint64_t store_size, char *dir,
			size_t dir_len, struct engine **out)
{
	char store[PATH_MAX + 16], meta[PATH_MAX + 16];
	struct engine_opts o;
	int r = testutil_scratch_dir(base, prefix, dir, dir_len);

	if (r < 0)
		return r;
	snprintf(store, sizeof(store), "%s/store.img", dir);
	snprintf(meta, sizeof(meta), "%s/meta", dir);
	engine_opts_init(&o);
	o.store_path = store;
	o.meta_path = meta;
	o.store_size = store_size;
	o.format = true;
	o.segment_size = 1u << 20;
	return engine_open(&o, out);
}
