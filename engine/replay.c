/* engine/replay.c — start-up: find the slots in use, roll the map forward.
 *
 * Every slot header is read. A slot belongs to a volume if its header is USED, of
 * this store, and names a volume that exists. Its batches are walked from block 1
 * until the first that is not valid (wrong generation, bad CRC, torn data); batches
 * newer than the checkpoint are collected and applied in sequence order. Slots are
 * all sealed afterwards: the space behind a torn batch is never written again, so a
 * later replay cannot find an old batch behind a new one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "engine/engine_internal.h"
#include "store/store.h"

struct replay_batch {
	uint64_t seq;
	uint32_t slot;
	uint32_t first_data; /* block of the first data block */
	struct engine_volume *vol;
	uint32_t nentries;
	struct summary_entry *entries;
};

struct replay {
	struct replay_batch *v;
	size_t n, cap;
	uint64_t max_seq;
	uint64_t max_gen;
};

bool eng_batch_data_ok(const struct summary *s, const uint8_t *data, uint32_t *bad_entry)
{
	uint32_t d = 0;

	for (uint32_t i = 0; i < s->nentries; i++) {
		if (s->entries[i].kind == ONDISK_ENTRY_TRIM)
			continue;
		if (crc32c(data + (size_t)d++ * QUILL_BLOCK_SIZE, QUILL_BLOCK_SIZE) !=
		    s->entries[i].data_crc) {
			if (bad_entry)
				*bad_entry = i;
			return false;
		}
	}
	return true;
}

static int replay_add(struct replay *rp, const struct summary *s, uint32_t slot,
		      uint32_t first_data, struct engine_volume *vol)
{
	struct replay_batch *b;

	if (rp->n == rp->cap) {
		size_t cap = rp->cap ? rp->cap * 2 : 256;
		struct replay_batch *v = realloc(rp->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		rp->v = v;
		rp->cap = cap;
	}
	b = &rp->v[rp->n];
	b->entries = malloc(s->nentries * sizeof(*b->entries));
	if (!b->entries)
		return -ENOMEM;
	memcpy(b->entries, s->entries, s->nentries * sizeof(*b->entries));
	b->seq = s->seq;
	b->slot = slot;
	b->first_data = first_data;
	b->vol = vol;
	b->nentries = s->nentries;
	rp->n++;
	return 0;
}

/* Walks one used slot's batches. The slot is read whole, in one I/O: a store of
 * thousands of used slots would otherwise cost a 4 KiB read per batch at start-up. */
static int walk_slot(struct engine *eng, uint32_t slot, const struct segment_header *h,
		     struct engine_volume *vol, uint64_t ckpt_seq, struct replay *rp)
{
	struct slot *s = &eng->slots[slot];
	struct summary *sum = malloc(sizeof(*sum));
	const uint8_t *buf = eng->gc_buf; /* a segment-sized scratch buffer, idle at start-up */
	uint32_t pos = 1;
	int r;

	if (!sum)
		return -ENOMEM;
	s->state = SLOT_SEALED;
	s->volume_id = vol->rec.volume_id; /* a merged snapshot's slots are its child's */
	s->generation = h->generation;
	/* block 0, the header, was read by scan_slot(): its place in buf stays unused */
	r = store_read_sync(eng->st, eng_slot_offset(eng, slot, 1), eng->gc_buf + QUILL_BLOCK_SIZE,
			    eng->sb.segment_size - QUILL_BLOCK_SIZE);
	while (r == 0 && pos + 1 <= eng->blocks_per_seg) {
		const uint8_t *p = buf + (size_t)pos * QUILL_BLOCK_SIZE;
		uint32_t end;

		if (ondisk_summary_decode(p, QUILL_BLOCK_SIZE, sum) < 0 ||
		    sum->generation != h->generation || sum->volume_id != h->volume_id)
			break; /* the end of this slot's log */
		end = pos + 1 + sum->data_blocks;
		if (end > eng->blocks_per_seg)
			break;
		/* even a torn batch spent its number: never hand it out again */
		if (sum->seq > rp->max_seq)
			rp->max_seq = sum->seq;
		if (sum->seq > ckpt_seq) {
			uint32_t bad;

			if (!eng_batch_data_ok(sum, p + QUILL_BLOCK_SIZE, &bad)) {
				log_msg(LOG_WARN, ENG_LOG, "slot %u: batch %llu at block %u is torn "
					"(entry %u); dropped with everything after it", slot,
					(unsigned long long)sum->seq, pos, bad);
				eng->stats.torn_batches++;
				break;
			}
			r = replay_add(rp, sum, slot, pos + 1, vol);
			if (r < 0)
				break;
		}
		eng_catalog_note_batch(eng, slot, sum, p + QUILL_BLOCK_SIZE, pos + 1);
		s->last_seq = sum->seq;
		pos = end;
	}
	s->used = pos;
	free(sum);
	return r;
}

static int cmp_seq(const void *a, const void *b)
{
	const struct replay_batch *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int apply(const struct replay_batch *b)
{
	uint32_t d = 0;

	for (uint32_t i = 0; i < b->nentries; i++) {
		const struct summary_entry *e = &b->entries[i];
		struct map_loc loc = { .slot = b->slot, .crc = e->data_crc };
		int r;

		if (e->kind != ONDISK_ENTRY_TRIM)
			loc.block = b->first_data + d++;
		r = eng_apply_entry(b->vol, e, &loc);
		if (r < 0)
			return r;
	}
	return 0;
}

static int scan_slot(struct engine *eng, uint32_t slot, uint8_t *hdr_buf, uint64_t ckpt_seq,
		     struct replay *rp)
{
	struct segment_header h;
	struct engine_volume *vol;
	int r = store_read_sync(eng->st, eng_slot_offset(eng, slot, 0), hdr_buf, QUILL_BLOCK_SIZE);

	if (r < 0)
		return r;
	if (ondisk_segment_header_decode(hdr_buf, QUILL_BLOCK_SIZE, &h) < 0 ||
	    memcmp(h.uuid, eng->sb.uuid, sizeof(h.uuid)) != 0)
		return 0; /* never used, or garbage: free */
	if (h.generation > rp->max_gen)
		rp->max_gen = h.generation;
	vol = eng_layer_for_owner(eng, h.volume_id);
	if (h.state == ONDISK_SEG_USED && !vol) {
		eng->slots[slot].volume_id = h.volume_id;
		eng->slots[slot].generation = h.generation;
		eng_catalog_stale_slot(eng, slot); /* a deleted layer's: FREE it */
	}
	if (h.state != ONDISK_SEG_USED || !vol)
		return 0; /* freed, or its volume was deleted */
	return walk_slot(eng, slot, &h, vol, ckpt_seq, rp);
}

int eng_replay(struct engine *eng, uint64_t ckpt_seq)
{
	struct replay rp = { .max_seq = ckpt_seq };
	uint8_t *hdr_buf = store_buf_alloc(QUILL_BLOCK_SIZE);
	/* live counts so far come from the checkpointed map */
	int r = hdr_buf ? 0 : -ENOMEM;

	log_msg(LOG_INFO, ENG_LOG, "scanning the log: %u segments, checkpoint %llu",
		eng->sb.segment_count, (unsigned long long)ckpt_seq);
	for (uint32_t i = 0; i < eng->sb.segment_count && r == 0; i++)
		r = scan_slot(eng, i, hdr_buf, ckpt_seq, &rp);
	store_buf_free(hdr_buf);
	if (r == 0 && rp.n) {
		qsort(rp.v, rp.n, sizeof(*rp.v), cmp_seq);
		eng->replaying = true;
		for (size_t i = 0; i < rp.n && r == 0; i++)
			r = apply(&rp.v[i]);
		eng->replaying = false;
	}
	for (size_t i = 0; i < rp.n; i++)
		free(rp.v[i].entries);
	free(rp.v);
	if (r < 0) {
		log_msg(LOG_ERROR, ENG_LOG, "replay failed: %s", strerror(-r));
		return r;
	}
	eng->stats.replayed_batches = rp.n;
	eng->next_seq = rp.max_seq + 1;
	eng->next_gen = rp.max_gen + 1;
	eng->nfree = 0;
	for (uint32_t i = 0; i < eng->sb.segment_count; i++) {
		struct slot *s = &eng->slots[i];

		if (s->state == SLOT_FREE && s->live) {
			/* the map points into a slot whose header is gone: keep it */
			log_msg(LOG_ERROR, ENG_LOG, "slot %u: %u mapped blocks but no valid header; "
				"kept out of use", i, s->live);
			s->state = SLOT_SEALED;
			s->used = eng->blocks_per_seg;
		}
		if (s->state == SLOT_FREE)
			eng->nfree++;
		else
			log_msg(LOG_DEBUG, ENG_LOG, "slot %u: volume %llu gen %llu live %u used %u "
				"last seq %llu", i, (unsigned long long)s->volume_id,
				(unsigned long long)s->generation, s->live, s->used,
				(unsigned long long)s->last_seq);
	}
	return 0;
}
