/* engine/diff.c — the extents that differ between two layers of one family. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

/* ---- diff ---- */

#define DIFF_WINDOW MAPX_LEAF_BLOCKS

struct diff_state {
	uint64_t bits[DIFF_WINDOW / 64];
	uint64_t base;
	struct engine_extent ext; /* being grown */
	int (*fn)(const struct engine_extent *ext, void *arg);
	void *arg;
};

static int diff_mark(void *arg, uint64_t lba, const struct map_loc *loc)
{
	struct diff_state *d = arg;
	uint64_t i = lba - d->base;

	(void)loc;
	d->bits[i / 64] |= 1ull << (i % 64);
	return 0;
}

static int diff_emit(struct diff_state *d, uint64_t lba, bool data)
{
	uint64_t off = lba * QUILL_BLOCK_SIZE;
	int r = 0;

	if (d->ext.length && d->ext.offset + d->ext.length == off && d->ext.data == data) {
		d->ext.length += QUILL_BLOCK_SIZE;
		return 0;
	}
	if (d->ext.length)
		r = d->fn(&d->ext, d->arg);
	d->ext = (struct engine_extent){ .offset = off, .length = QUILL_BLOCK_SIZE, .data = data };
	return r;
}

static bool reads_data(const struct engine_volume *l, uint64_t lba, struct map_loc *loc)
{
	return l && lba < l->rec.size / QUILL_BLOCK_SIZE && eng_resolve(l, lba, loc);
}

static int diff_window(struct diff_state *d, struct engine_volume *const *layers, size_t n,
		       const struct engine_volume *a, const struct engine_volume *b, uint64_t len)
{
	memset(d->bits, 0, sizeof(d->bits));
	/* only LBAs some layer of either side has an entry for can differ */
	for (size_t i = 0; i < n; i++)
		map_for_each_range(layers[i]->map, d->base, len, diff_mark, d);
	for (uint64_t i = 0; i < len; i++) {
		struct map_loc la, lb;
		bool da, db;
		int r;

		if (!(d->bits[i / 64] & (1ull << (i % 64))))
			continue;
		da = reads_data(a, d->base + i, &la);
		db = reads_data(b, d->base + i, &lb);
		if (da == db && (!da || (la.slot == lb.slot && la.block == lb.block)))
			continue;
		r = diff_emit(d, d->base + i, db);
		if (r)
			return r;
	}
	return 0;
}

/* The layers either side reads from, each once. */
static size_t diff_layers(const struct engine_volume *a, const struct engine_volume *b,
			  struct engine_volume **out, size_t max)
{
	size_t n = 0;

	for (int side = 0; side < 2; side++)
		for (const struct engine_volume *l = side ? b : a; l; l = l->parent) {
			size_t i;

			for (i = 0; i < n && out[i] != l; i++)
				;
			if (i == n && n < max)
				out[n++] = (struct engine_volume *)l;
		}
	return n;
}

/* The extents that differ between layers a (NULL: all zeros) and b. */
static int diff_run(struct engine *eng, struct engine_volume *a, struct engine_volume *b,
		    int (*fn)(const struct engine_extent *ext, void *arg), void *arg)
{
	struct diff_state *d;
	struct engine_volume **layers;
	uint64_t nblocks;
	size_t n;
	int r = 0;

	nblocks = b->rec.size / QUILL_BLOCK_SIZE;
	if (a && a->rec.size / QUILL_BLOCK_SIZE > nblocks)
		nblocks = a->rec.size / QUILL_BLOCK_SIZE;
	d = calloc(1, sizeof(*d));
	layers = malloc(eng->nvols * sizeof(*layers));
	if (!d || !layers) {
		r = -ENOMEM;
		goto out;
	}
	d->fn = fn;
	d->arg = arg;
	n = diff_layers(a, b, layers, eng->nvols);
	for (d->base = 0; d->base < nblocks && r == 0; d->base += DIFF_WINDOW) {
		uint64_t len = nblocks - d->base < DIFF_WINDOW ? nblocks - d->base : DIFF_WINDOW;

		r = diff_window(d, layers, n, a, b, len);
	}
	if (r == 0 && d->ext.length)
		r = fn(&d->ext, arg);
out:
	free(layers);
	free(d);
	return r;
}

int engine_diff(struct engine *eng, const char *from, const char *to,
		int (*fn)(const struct engine_extent *ext, void *arg), void *arg)
{
	struct engine_volume *a = from ? eng_layer_by_spec(eng, from) : NULL;
	struct engine_volume *b = to ? eng_layer_by_spec(eng, to) : NULL;

	if (!b || (from && !a))
		return -ENOENT;
	return diff_run(eng, a, b, fn, arg);
}
