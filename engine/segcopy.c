/* engine/segcopy.c — reads of this engine's own sealed segments by their cluster-wide
 * id, for the copies an owner makes elsewhere (catch-up: replication/catchup.h,
 * docs/replication.md). The slot is pinned (slot.readers) while a read is in flight,
 * so that the cleaner does not reuse it under the read.
 */
#include <errno.h>
#include <stdlib.h>

#include "engine/engine_internal.h"

struct segcopy_read {
	struct engine *eng;
	uint32_t slot;
	engine_cb cb;
	void *arg;
};

int64_t eng_own_slot(const struct engine *eng, uint64_t uid, uint32_t sno, bool sealed)
{
	for (uint32_t i = 0; i < eng->segs->count; i++) {
		const struct slot *s = &eng->slots[i];

		if (s->state != SLOT_FREE && !s->held && !s->dropped && s->family_uid == uid &&
		    s->sno == sno && (!sealed || (s->state == SLOT_SEALED && !s->freeing)))
			return i;
	}
	return -ENOENT;
}

bool engine_segment_here(const struct engine *eng, uint64_t uid, uint32_t sno)
{
	return eng_own_slot(eng, uid, sno, false) >= 0;
}

int engine_segment_sealed_blocks(const struct engine *eng, uint64_t uid, uint32_t sno)
{
	int64_t slot = eng_own_slot(eng, uid, sno, true);

	if (slot < 0)
		return (int)slot;
	/* sealed before its last appends were on the store (a seal for a failed holder
	 * with appends waiting for copies): not whole here yet */
	return eng->slots[slot].local_writes ? -EBUSY : (int)eng->slots[slot].used;
}

int engine_segment_own_each(const struct engine *eng, uint64_t uid,
			    int (*fn)(void *arg, uint32_t sno, int blocks), void *arg)
{
	int r = 0;

	/* remote entries too: segments of the log whose copies are elsewhere only; a
	 * dropped slot is the same segment as its entry */
	for (uint32_t i = 0; i < eng->slot_cap && r == 0; i++) {
		const struct slot *s = &eng->slots[i];

		if (s->state != SLOT_FREE && !s->held && !s->freeing && !s->dropped &&
		    s->family_uid == uid)
			r = fn(arg, s->sno, s->state == SLOT_SEALED ? (int)s->used : -EBUSY);
	}
	return r;
}

static void segcopy_read_done(void *arg, int res)
{
	struct segcopy_read *r = arg;

	r->eng->slots[r->slot].readers--;
	r->cb(r->arg, res < 0 ? res : 0);
	free(r);
}

int engine_segment_read_async(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t block,
			      void *buf, uint32_t nblocks, engine_cb cb, void *arg)
{
	int64_t slot = eng_own_slot(eng, uid, sno, true);
	struct iovec iov = { buf, (size_t)nblocks * ENGINE_BLOCK_SIZE };
	struct segcopy_read *r;
	int res;

	if (slot < 0)
		return (int)slot;
	if (eng->slots[slot].local_writes)
		return -EBUSY;
	if (!nblocks || block + nblocks > eng->slots[slot].used ||
	    (uintptr_t)buf % SEG_ALIGN)
		return -ERANGE;
	r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	*r = (struct segcopy_read){ .eng = eng, .slot = (uint32_t)slot, .cb = cb, .arg = arg };
	res = seg_read(eng, (uint32_t)slot, block, &iov, 1, segcopy_read_done, r);
	if (res < 0) {
		free(r);
		return res;
	}
	eng->slots[slot].readers++;
	return 0;
}
