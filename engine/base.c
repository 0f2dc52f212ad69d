/* engine/base.c — families whose root reads through a remote base.
 *
 * A clone made on another node than its parent's owner (docs/replication.md,
 * "Snapshots and clones across owners") is a family here whose root layer has no
 * parent: where none of its layers maps a block, below the base's size, the block is
 * the base snapshot's, which lives in another family this engine does not run. The
 * read path (io.c) gives such ranges to eng_base_read, which hands them to the
 * registered transport (engine_base_ops: replication/ sets it), so that the arrow
 * stays Replication -> Engine. Nothing read from a base is kept: every read asks again
 * (the parent's owner answers from its current map, which its cleaner may change).
 *
 * Trims hide the base: while a family has one, engine_trim is written as allocated
 * zeros (io.c), whose entries apply whatever replays them (a restart, an adopt before
 * its base is set), where a trim's zero entries would depend on what the base holds.
 *
 * Threading: the engine's thread.
 */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "engine/engine_internal.h"

static struct eng_base *base_find(const struct engine *eng, uint64_t uid)
{
	for (size_t i = 0; i < eng->nbases; i++)
		if (eng->bases[i].uid == uid)
			return &eng->bases[i];
	return NULL;
}

void engine_base_ops_set(struct engine *eng, const struct engine_base_ops *ops, void *ctx)
{
	eng->base_ops = ops;
	eng->base_ctx = ctx;
}

int engine_family_base_set(struct engine *eng, uint64_t uid, const struct engine_base *base)
{
	struct eng_base *b = base_find(eng, uid);

	if (uid == 0 || (base && (base->uid == uid || base->uid == 0)))
		return -EINVAL;
	if (!base) {
		if (b)
			*b = eng->bases[--eng->nbases];
		return 0;
	}
	if (!b) {
		struct eng_base *v = realloc(eng->bases, (eng->nbases + 1) * sizeof(*v));

		if (!v)
			return -ENOMEM;
		eng->bases = v;
		b = &eng->bases[eng->nbases++];
	}
	*b = (struct eng_base){ .uid = uid, .base = *base };
	return 0;
}

int engine_family_base_get(const struct engine *eng, uint64_t uid, struct engine_base *out)
{
	const struct eng_base *b = base_find(eng, uid);

	if (!b)
		return -ENOENT;
	if (out)
		*out = b->base;
	return 0;
}

const struct engine_base *eng_base_at(const struct engine_volume *root, uint64_t lba)
{
	const struct eng_base *b;

	if (root->eng->nbases == 0)
		return NULL; /* the usual case: no lookup on the read path */
	b = base_find(root->eng, root->rec.uid);
	return b && lba < b->base.blocks ? &b->base : NULL;
}

uint64_t eng_fill_limit(const struct engine_volume *vol)
{
	const struct eng_base *b;

	if (vol->parent)
		return vol->rec.overlap;
	b = vol->eng->nbases ? base_find(vol->eng, vol->rec.uid) : NULL;
	return b ? b->base.blocks : 0;
}

void eng_base_free(struct engine *eng)
{
	free(eng->bases);
	eng->bases = NULL;
	eng->nbases = 0;
}

/* One range handed to the transport: the request it belongs to. */
struct base_read {
	struct engine *eng;
	struct ioreq *req;
	char name[ENGINE_VOLUME_NAME_MAX + 1]; /* the volume's, for the log */
	uint64_t lba;
	uint32_t n;
};

static void base_read_done(void *arg, int res)
{
	struct base_read *p = arg;

	if (res < 0)
		LOG_RATELIMITED(LOG_ERROR, ENG_LOG, "volume %s: read of its base at lba %llu "
				"(%u blocks) failed: %s", p->name, (unsigned long long)p->lba,
				p->n, err_str(-res));
	eng_req_put(p->eng, p->req, res < 0 ? res : 0);
	free(p);
}

int eng_base_read(struct engine_volume *vol, struct ioreq *req, uint64_t lba, uint8_t *dst,
		  uint32_t idx, uint32_t n)
{
	struct engine *eng = vol->eng;
	const struct engine_volume *root = vol;
	const struct engine_base *base;
	struct base_read *p;
	int r;

	while (root->parent)
		root = root->parent;
	base = eng_base_at(root, lba + idx);
	if (!base || n == 0 || n > ENGINE_BASE_READ_MAX)
		return -EINVAL;
	if (!eng->base_ops)
		return -ENOTCONN;
	p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	*p = (struct base_read){ .eng = eng, .req = req, .lba = lba + idx, .n = n };
	snprintf(p->name, sizeof(p->name), "%s", vol->rec.name);
	r = eng->base_ops->read(eng->base_ctx, base, lba + idx, n,
				dst + (size_t)idx * QUILL_BLOCK_SIZE, base_read_done, p);
	if (r < 0) {
		free(p);
		return r;
	}
	req->pending++;
	return 0;
}
