/* engine/logcheck.c — see logcheck.h. */
#include "engine/logcheck.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/array.h"
#include "common/crc32c.h"

static const uint8_t *block_at(const struct logcheck_walk *w, uint32_t b)
{
	return w->slot + (size_t)b * QUILL_BLOCK_SIZE;
}

bool logcheck_data_ok(const struct summary *s, const uint8_t *data, uint32_t *bad_entry)
{
	uint32_t d = 0;

	for (uint32_t i = 0; i < s->nentries; i++) {
		if (!ONDISK_ENTRY_HAS_BLOCK(s->entries[i].kind))
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

void logcheck_walk_init(struct logcheck_walk *w, const uint8_t *slot, uint32_t blocks,
			const struct segment_header *h, uint64_t check_above)
{
	memset(w, 0, sizeof(*w));
	w->slot = slot;
	w->blocks = blocks;
	w->h = *h;
	w->check_above = check_above;
	w->pos = 1;
	/* the header is written with the slot's first batch: that one is first_seq */
	w->prev_seq = h->first_seq ? h->first_seq - 1 : 0;
}

/* A batch of this slot's life at block pos, next in its log? */
static bool valid_at(const struct logcheck_walk *w, uint32_t pos, struct summary *sum)
{
	return ondisk_summary_decode(block_at(w, pos), QUILL_BLOCK_SIZE, sum) == 0 &&
	       sum->generation == w->h.generation && sum->volume_id == w->h.volume_id &&
	       sum->seq > w->prev_seq && pos + 1 + (uint64_t)sum->data_blocks <= w->blocks;
}

/* The next batch after a summary that does not decode: a valid summary of this life
 * whose data is whole too (a data block that merely looks like a summary is not
 * taken for one). 0 if none. */
static uint32_t resync(const struct logcheck_walk *w, uint32_t from, struct summary *sum)
{
	for (uint32_t b = from; b < w->blocks; b++)
		if (valid_at(w, b, sum) && logcheck_data_ok(sum, block_at(w, b + 1), NULL))
			return b;
	return 0;
}

/* A block that fails to decode but still carries this slot's generation and volume
 * where a summary has them: a damaged summary, not the end of the log (16 bytes that
 * no older use of the slot and no garbage repeats). */
static bool names_this_life(const struct logcheck_walk *w, uint32_t pos)
{
	const uint8_t *p = block_at(w, pos);
	uint64_t gen, vol;

	memcpy(&gen, p + offsetof(struct ondisk_summary, generation), sizeof(gen));
	memcpy(&vol, p + offsetof(struct ondisk_summary, volume_id), sizeof(vol));
	return gen == w->h.generation && vol == w->h.volume_id;
}

void logcheck_walk_next(struct logcheck_walk *w, struct summary *sum, struct logcheck_item *it)
{
	uint32_t pos = w->pos, next;

	memset(it, 0, sizeof(*it));
	it->pos = pos;
	it->next = pos;
	if (w->ended || pos >= w->blocks) {
		w->ended = true;
		return; /* LOGCHECK_END */
	}
	if (valid_at(w, pos, sum)) {
		it->kind = LOGCHECK_BATCH;
		it->next = pos + 1 + sum->data_blocks;
		it->data_ok = true;
		if (sum->seq > w->check_above) {
			it->data_checked = true;
			it->data_ok = logcheck_data_ok(sum, block_at(w, pos + 1), &it->bad_entry);
		}
		w->prev_seq = sum->seq;
		w->pos = it->next;
		return;
	}
	next = resync(w, pos + 1, sum);
	if (!next && !names_this_life(w, pos)) {
		w->ended = true;
		return; /* LOGCHECK_END: never written, or an older use of the slot */
	}
	it->kind = LOGCHECK_DAMAGED;
	it->seq_lo = w->prev_seq + 1;
	it->seq_hi = next ? sum->seq - 1 : UINT64_MAX;
	it->next = next ? next : w->blocks;
	w->pos = it->next;
	w->ended = !next;
}

/* ---- a whole segment from another node ---- */

static int image_bad(uint32_t first, uint32_t end, uint32_t *bad_first, uint32_t *bad_end)
{
	*bad_first = first;
	*bad_end = end;
	return -EILSEQ;
}

/* The data blocks of a batch (summary s, its data at block `first` of the image) that
 * do not match their CRCs: [*bad_first, *bad_end) from the first to the last of them
 * (one damaged block names itself, not its whole batch). One more CRC32C pass over the
 * batch, on the failure's path only. */
static void data_bad_span(const struct summary *s, const uint8_t *data, uint32_t first,
			  uint32_t *bad_first, uint32_t *bad_end)
{
	uint32_t d = 0;

	*bad_first = UINT32_MAX;
	*bad_end = first;
	for (uint32_t i = 0; i < s->nentries; i++) {
		if (!ONDISK_ENTRY_HAS_BLOCK(s->entries[i].kind))
			continue;
		if (crc32c(data + (size_t)d * QUILL_BLOCK_SIZE, QUILL_BLOCK_SIZE) !=
		    s->entries[i].data_crc) {
			if (*bad_first == UINT32_MAX)
				*bad_first = first + d;
			*bad_end = first + d + 1;
		}
		d++;
	}
}

int logcheck_image_check(const uint8_t *img, uint32_t blocks, uint64_t uid, uint32_t sno,
			 uint32_t *bad_first, uint32_t *bad_end)
{
	struct segment_header h;
	struct summary sum;
	struct logcheck_walk w;
	struct logcheck_item it;

	if (blocks == 0 || ondisk_segment_header_decode(img, QUILL_BLOCK_SIZE, &h) < 0 ||
	    h.state != ONDISK_SEG_USED || h.family_uid != uid || h.sno != sno)
		return image_bad(0, 1, bad_first, bad_end);
	logcheck_walk_init(&w, img, blocks, &h, 0); /* every batch's data checked */
	for (logcheck_walk_next(&w, &sum, &it); it.kind != LOGCHECK_END;
	     logcheck_walk_next(&w, &sum, &it)) {
		if (it.kind == LOGCHECK_BATCH && !it.data_ok) {
			data_bad_span(&sum, block_at(&w, it.pos + 1), it.pos + 1, bad_first, bad_end);
			return -EILSEQ;
		}
		if (it.kind != LOGCHECK_BATCH)
			return image_bad(it.pos, it.next, bad_first, bad_end);
	}
	if (it.pos != blocks)
		return image_bad(it.pos, blocks, bad_first, bad_end);
	return 0;
}

void logcheck_image_lbas(const uint8_t *img, uint32_t blocks, uint64_t *lba)
{
	struct segment_header h;
	struct summary sum;
	struct logcheck_walk w;
	struct logcheck_item it;

	for (uint32_t b = 0; b < blocks; b++)
		lba[b] = UINT64_MAX;
	if (blocks == 0 || ondisk_segment_header_decode(img, QUILL_BLOCK_SIZE, &h) < 0)
		return;
	logcheck_walk_init(&w, img, blocks, &h, UINT64_MAX); /* no data checks: done */
	for (logcheck_walk_next(&w, &sum, &it); it.kind == LOGCHECK_BATCH;
	     logcheck_walk_next(&w, &sum, &it)) {
		uint32_t block = it.pos + 1;

		for (uint32_t i = 0; i < sum.nentries; i++) {
			const struct summary_entry *e = &sum.entries[i];

			if (!ONDISK_ENTRY_HAS_BLOCK(e->kind))
				continue;
			if (block < blocks && ONDISK_ENTRY_MAPPED(e->kind))
				lba[block] = e->lba;
			block++;
		}
	}
}

/* ---- the verdict ---- */

int logcheck_note_batch(struct logcheck_facts *f, const struct summary *s)
{
	if (ARRAY_GROW(f->batches, f->cap_batches, f->nbatches, 256) < 0)
		return -ENOMEM;
	f->batches[f->nbatches++] = (struct logcheck_batch){
		.volume_id = s->volume_id, .seq = s->seq, .open_seq = s->open_seq,
		.durable_seq = s->durable_seq };
	return 0;
}

int logcheck_note_slot(struct logcheck_facts *f, const struct segment_header *h)
{
	if (ARRAY_GROW(f->slots, f->cap_slots, f->nslots, 256) < 0)
		return -ENOMEM;
	f->slots[f->nslots++] = (struct logcheck_slot){ .volume_id = h->volume_id,
							 .first_seq = h->first_seq };
	return 0;
}

void logcheck_facts_free(struct logcheck_facts *f)
{
	free(f->batches);
	free(f->slots);
	memset(f, 0, sizeof(*f));
}

uint64_t logcheck_seq_hi(const struct logcheck_facts *f, uint64_t volume_id, uint64_t lo)
{
	uint64_t hi = UINT64_MAX;

	/* a volume fills one slot at a time: its log goes on in the slot that starts
	 * next, and the header of a slot is written with its first batch */
	for (size_t i = 0; i < f->nslots; i++) {
		const struct logcheck_slot *s = &f->slots[i];

		if (s->volume_id == volume_id && s->first_seq > lo && s->first_seq - 1 < hi)
			hi = s->first_seq - 1;
	}
	return hi;
}

void logcheck_judge(const struct logcheck_facts *f, uint64_t volume_id, uint64_t lo,
		    uint64_t hi, struct logcheck_verdict *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < f->nbatches; i++) {
		const struct logcheck_batch *b = &f->batches[i];

		/* a later engine run's batches and marks say nothing about this one: that
		 * run started after a replay that had judged it already */
		if (b->open_seq > lo)
			continue;
		if (b->volume_id == volume_id && b->seq > hi)
			out->later++;
		if (b->durable_seq >= hi && b->durable_seq > out->durable_seq)
			out->durable_seq = b->durable_seq;
	}
	out->corrupt = out->later >= ONDISK_MAX_INFLIGHT_BATCHES || out->durable_seq;
}

/* ---- scrub ---- */

/* A batch's blocks: its summary and each data block against its entry's CRC32C. */
static void classify_batch(const uint8_t *slot, const struct summary *sum, uint32_t pos,
			   uint32_t used, uint8_t *state, uint32_t *crcs)
{
	uint32_t d = 0;

	state[pos] = LOGCHECK_B_GOOD;
	crcs[pos] = crc32c(slot + (size_t)pos * QUILL_BLOCK_SIZE, QUILL_BLOCK_SIZE);
	for (uint32_t i = 0; i < sum->nentries; i++) {
		uint32_t b = pos + 1 + d;
		uint32_t crc;

		if (!ONDISK_ENTRY_HAS_BLOCK(sum->entries[i].kind))
			continue;
		d++;
		if (b >= used)
			break; /* (a valid summary's data lies inside the slot: the walker's) */
		crc = crc32c(slot + (size_t)b * QUILL_BLOCK_SIZE, QUILL_BLOCK_SIZE);
		state[b] = crc == sum->entries[i].data_crc ? LOGCHECK_B_GOOD : LOGCHECK_B_BAD;
		crcs[b] = sum->entries[i].data_crc;
	}
}

void logcheck_classify(const uint8_t *slot, uint32_t used, uint64_t generation,
		       uint8_t *state, uint32_t *crcs)
{
	struct segment_header h = { .state = ONDISK_SEG_USED, .generation = generation };
	struct summary sum;
	struct logcheck_walk w;
	struct logcheck_item it;

	memset(state, LOGCHECK_B_UNCHECKED, used);
	memset(crcs, 0, (size_t)used * sizeof(*crcs));
	if (used == 0)
		return;
	if (ondisk_segment_header_decode(slot, QUILL_BLOCK_SIZE, &h) == 0 &&
	    h.state == ONDISK_SEG_USED && h.generation == generation) {
		state[0] = LOGCHECK_B_GOOD;
		crcs[0] = crc32c(slot, QUILL_BLOCK_SIZE);
	} else {
		state[0] = LOGCHECK_B_DAMAGED;
		/* walk on with what the slot says: its generation, and the header's volume
		 * where a damaged header still has it (the cleaner reads it the same way) */
		h = (struct segment_header){ .state = ONDISK_SEG_USED, .generation = generation };
		memcpy(&h.volume_id, slot + offsetof(struct ondisk_segment_header, volume_id),
		       sizeof(h.volume_id));
	}
	h.first_seq = 0; /* any seq: the walk judges order, not where it starts */
	logcheck_walk_init(&w, slot, used, &h, UINT64_MAX);
	for (logcheck_walk_next(&w, &sum, &it); it.kind != LOGCHECK_END;
	     logcheck_walk_next(&w, &sum, &it)) {
		if (it.kind == LOGCHECK_BATCH)
			classify_batch(slot, &sum, it.pos, used, state, crcs);
		else
			state[it.pos] = LOGCHECK_B_DAMAGED; /* its data: unchecked */
	}
}
