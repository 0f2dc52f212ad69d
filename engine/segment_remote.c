/* engine/segment_remote.c — sealed segments of this node's log with no local copy.
 *
 * The engine's map names a segment by its slot. A sealed segment whose copies live on
 * other nodes (replicas now; an erasure-coded stripe next) keeps a slot number with no
 * store slot behind it: a **remote entry**, an index past the store's segment_count in
 * the same slot table (eng->slots has slot_cap entries: segment_count store slots,
 * then as many remote entries). The entry keeps the segment's id and the engine's
 * accounting (live, last_seq, used), so the cleaner's counts, the checkpoint's segment
 * table ("T" records, keyed by segment id) and liveness work on it unchanged; its
 * reads are the copies' (seg_read refuses it with -EREMOTE; io.c reads it through the
 * mirror's read, block by block, each checked against the map's CRC: repair.c).
 *
 * seg_drop_local moves a sealed segment's accounting from its store slot to a fresh
 * remote entry and marks the store slot `dropped`; the engine then points the maps at
 * the entry (remote.c), which leaves the store slot with no live block, so the next
 * checkpoint frees it once the maps that name the entry and the entry's "T" record are
 * durable together (a crash before: the old checkpoint names the store slot, which
 * still holds the data; the entry is forgotten). Freeing a dropped slot writes its
 * FREE header and tells the mirror nothing: the copies elsewhere are the segment now.
 * A remote entry whose last live block goes is freed by a checkpoint like a slot: no
 * header to write, the mirror told to delete the copies (seg_remote_delete).
 *
 * Threading: the engine's thread, like the rest of the segment layer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "engine/segment.h"

struct slot *seg_slots_alloc(struct engine *eng)
{
	/* as many remote entries as store slots: a node whose own segments all moved to
	 * copies elsewhere twice over (an EC volume's owner holds none) still fits */
	eng->slot_cap = eng->sb.segment_count * 2;
	return calloc(eng->slot_cap ? eng->slot_cap : 1, sizeof(struct slot));
}

bool seg_is_remote(const struct engine *eng, uint32_t slot)
{
	return slot < eng->slot_cap && eng->slots[slot].remote;
}

/* A free remote entry, or -ENOSPC. */
static int64_t remote_take(struct engine *eng)
{
	for (uint32_t i = eng->sb.segment_count; i < eng->slot_cap; i++)
		if (eng->slots[i].state == SLOT_FREE && !eng->slots[i].readers)
			return i;
	return -ENOSPC;
}

int seg_drop_local(struct engine *eng, uint32_t slot, uint32_t *remote)
{
	const struct slot *s = &eng->slots[slot];
	struct slot dropped;
	int64_t i;

	if (slot >= eng->sb.segment_count || s->state != SLOT_SEALED || s->held || s->dropped ||
	    s->pending || s->local_writes || s->freeing || s->broken)
		return -EBUSY;
	if (s->records)
		return -ENOTEMPTY; /* LAYER entries: start-up reads them from the store */
	i = remote_take(eng);
	if (i < 0)
		return (int)i;
	seg_slot_set(eng, (uint32_t)i, &(struct slot){
			.state = SLOT_SEALED, .volume_id = s->volume_id,
			.family_uid = s->family_uid, .sno = s->sno, .generation = s->generation,
			.last_seq = s->last_seq, .used = s->used, .first_seq = s->first_seq,
			.remote = true, .mirrored = s->mirrored,
			/* the cleaner's counts go along: without them a segment it packed
			 * itself (under 90% live) would be picked again at once, forever */
			.dead = s->dead, .sums = s->sums, .dead_known = s->dead_known,
			/* and its family checkpoint's blocks: the entry is the segment now
			 * (freed empty, its copies would go, and the checkpoint with them) */
			.fmaps = s->fmaps });
	/* the family's own log: the entry instead of the slot (nlog) */
	dropped = *s;
	dropped.dropped = true;
	dropped.fmaps = 0;
	seg_slot_set(eng, slot, &dropped);
	*remote = (uint32_t)i;
	return 0;
}

int seg_remote_adopt_begin(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t used,
			   uint64_t gen, uint32_t *slot)
{
	int64_t i = remote_take(eng);

	if (i < 0)
		return (int)i;
	/* held until the commit: no "T" record before the maps that name it, and no
	 * checkpoint frees it (live 0 until the maps load) and tells the mirror */
	seg_slot_set(eng, (uint32_t)i, &(struct slot){
			.state = SLOT_SEALED, .family_uid = uid, .sno = sno, .generation = gen,
			.used = used, .first_seq = 1, .tombs = 1, .remote = true, .held = true });
	*slot = (uint32_t)i;
	return 0;
}

void seg_remote_adopt_end(struct engine *eng, uint32_t slot, bool adopted)
{
	struct slot to = eng->slots[slot];

	if (!adopted) {
		seg_slot_set(eng, slot, &(struct slot){ .state = SLOT_FREE });
		return;
	}
	to.held = false;
	seg_slot_set(eng, slot, &to);
}

void seg_remote_delete(struct engine *eng, uint32_t slot)
{
	struct slot *e = &eng->slots[slot];

	if (eng->mirror && eng->mirror->wants(eng->mirror_ctx, e->family_uid)) {
		e->mirrored = false;
		eng->mirror->deleted(eng->mirror_ctx, slot, e->family_uid, e->sno);
	}
}

void seg_remote_restore(struct engine *eng)
{
	if (!eng->seg_table)
		return;
	for (uint32_t i = eng->sb.segment_count; i < eng->slot_cap; i++) {
		const struct slot_record *rec = &eng->seg_table[i];
		uint32_t live = eng->slots[i].live; /* the loaded maps' count */

		if (!rec->used)
			continue;
		seg_slot_set(eng, i, &(struct slot){
				.state = SLOT_SEALED, .volume_id = rec->volume_id,
				.family_uid = rec->family_uid, .sno = rec->sno,
				.generation = rec->generation, .last_seq = rec->last_seq,
				.used = rec->used, .live = live, .remote = true });
	}
}

static int remote_record(struct engine *eng, const void *key, size_t klen, const void *val,
			 size_t vlen)
{
	struct slot_record rec;

	(void)key;
	(void)klen;
	if (ondisk_slot_record_decode(val, vlen, &rec) == 0 && rec.slot >= eng->sb.segment_count)
		return -EBUSY;
	return 0;
}

int seg_remote_check_grow(struct engine *eng)
{
	return eng_load_prefix(eng, 'T', remote_record);
}

void seg_remote_forget(struct engine *eng, uint64_t uid)
{
	for (uint32_t i = eng->sb.segment_count; i < eng->slot_cap; i++) {
		const struct slot *e = &eng->slots[i];

		if (e->remote && e->family_uid == uid && !e->readers)
			seg_slot_set(eng, i, &(struct slot){ .state = SLOT_FREE });
		/* with reads in flight: empty, a checkpoint frees it once they are done,
		 * and tells the mirror nothing (the family is not its any more) */
	}
}
