/* engine/prezero.c — zeros written over never-written free slots ahead of the log.
 *
 * A store file made with fallocate() holds unwritten extents, and ext4 (xfs alike)
 * converts them on the first write to each range: a journalled metadata update that
 * made a QD1 write through quilld ~15-30% slower than on a file written once (fio's
 * own 8 KiB O_DIRECT appends: 3x). So the engine writes zeros, in the background, over
 * the free slots the log takes next (the allocator takes the lowest free slot: this
 * walks up from slot 0 too), at most PZ_LEAD_SLOTS ahead of the slots in use. Past
 * that lead the file stays as it was made: a thin file stays thin, and space the
 * volumes never reach is never written.
 *
 * Safety. A chunk is written only inside a FREE slot, and only where the store
 * reports no data (store_next_data(): a hole, or an unwritten extent, which reads as
 * zeros already): what a replay or the walker reads there is zeros before, during and
 * after the write, whatever the moment of a crash. A slot that ever held the log is
 * data and is never touched. While a chunk is in flight its slot counts a reader, so
 * seg_open() does not hand the slot out under it.
 *
 * Bandwidth. One chunk in flight at a time. While the clients are quiet (none of
 * their requests in flight, started or ended for PZ_QUIET_MS, and no other store I/O
 * in flight: eng_clients_quiet()) chunks of PZ_CHUNK go back to back; while
 * they are busy, a chunk of PZ_BUSY_CHUNK at most every PZ_BUSY_GAP_MS (64 MiB/s: more
 * than a QD1 writer consumes, a few % of a disk's sequential bandwidth).
 * None when free slots are scarce (the cleaner's time).
 */
#include <errno.h>
#include <limits.h>

#include "common/err.h"
#include "common/log.h"
#include "engine/engine_internal.h"

#define PZ_LEAD_SLOTS 16u
#define PZ_CHUNK (1u << 20)
#define PZ_BUSY_CHUNK (128u << 10)
#define PZ_BUSY_GAP_MS 2u
#define PZ_QUIET_MS 20u

static uint64_t data_end(const struct engine *eng)
{
	return seg_dev_slot_offset(eng->segs, eng->sb.segment_count);
}

static uint32_t slot_of(const struct engine *eng, uint64_t off)
{
	return (uint32_t)((off - eng->sb.data_offset) / eng->sb.segment_size);
}

/* Is slot i at most PZ_LEAD_SLOTS past a slot in use (or near the start)? */
static bool within_lead(const struct engine *eng, uint32_t i)
{
	if (i < PZ_LEAD_SLOTS)
		return true;
	for (uint32_t j = i - PZ_LEAD_SLOTS; j < i; j++)
		if (eng->slots[j].state != SLOT_FREE)
			return true;
	return false;
}

/* Where the unwritten range at cur ends, within its slot i: from the file system
 * (seg_dev_next_data: two lseek() calls on the loop thread, which wait for the inode's
 * lock behind writes converting unwritten extents, and walk the extent tree), asked
 * once per slot, not once per chunk. The answer stays true while slot i is the same
 * free slot: only the log (in a slot it opened: another generation, and the cursor
 * leaves it) and these zeros write the store. 0 or -errno. */
static int hole_end(struct engine *eng, uint32_t i, uint64_t cur, uint64_t *start, uint64_t *end)
{
	struct pz_hole *h = &eng->pz_hole;
	int r;

	if (h->valid && h->slot == i && h->generation == eng->slots[i].generation &&
	    cur < h->end) {
		*start = h->end;
		*end = h->end;
		return 0;
	}
	eng->pz_queries++;
	r = seg_dev_next_data(eng->segs, cur, start, end);
	if (r == -ENXIO) { /* no data from here on */
		*start = *end = data_end(eng);
		r = 0;
	}
	h->valid = r == 0 && *start > cur;
	if (h->valid)
		*h = (struct pz_hole){ .valid = true, .slot = i, .end = *start,
				       .generation = eng->slots[i].generation };
	return r;
}

/* The next range to zero from the cursor, at most max bytes: 0 and [*off, *off + *len),
 * or -EAGAIN (beyond the lead: later) or -ENXIO (nothing left). Moves the cursor past
 * what it skips. */
static int next_chunk(struct engine *eng, uint32_t max, uint64_t *off, uint32_t *len)
{
	while (eng->pz_cursor < data_end(eng)) {
		uint64_t cur = eng->pz_cursor, start, end;
		uint32_t i = slot_of(eng, cur);
		const struct slot *s = &eng->slots[i];
		uint64_t slot_end = seg_dev_slot_offset(eng->segs, i + 1);
		int r;

		if (s->state != SLOT_FREE || s->readers || s->freeing) {
			eng->pz_cursor = slot_end; /* the log writes it: converted then */
			continue;
		}
		if (!within_lead(eng, i))
			return -EAGAIN;
		r = hole_end(eng, i, cur, &start, &end);
		if (r < 0)
			return r;
		if (start <= cur) { /* data here: written once already */
			eng->pz_cursor = end < slot_end ? end : slot_end;
			continue;
		}
		if (start > slot_end)
			start = slot_end;
		*off = cur;
		*len = start - cur < max ? (uint32_t)(start - cur) : max;
		return 0;
	}
	return -ENXIO;
}

static void chunk_written(void *arg, int res)
{
	struct engine *eng = arg;

	eng->slots[eng->pz_slot].readers--;
	eng->pz_inflight = false;
	if (res < 0) {
		log_msg(LOG_WARN, ENG_LOG, "preparing free segments (zeros over unwritten space) "
			"stopped: %s; first writes to them may be slower", err_str(-res));
		eng->pz_done = true;
		return;
	}
	eng->stats.prezeroed_bytes += (uint64_t)res;
	if (eng->parked.head) /* a write found no other free slot meanwhile */
		eng_run_parked(eng, false);
}

void eng_prezero_init(struct engine *eng)
{
	uint64_t start, end;

	eng->pz_cursor = eng->sb.data_offset;
	eng->pz_done = !eng->opts.prezero;
	/* a block device, or a file written all over: nothing is unwritten */
	if (seg_dev_next_data(eng->segs, eng->sb.data_offset, &start, &end) == 0 &&
	    start == eng->sb.data_offset && end >= data_end(eng))
		eng->pz_done = true;
}

void eng_prezero_maybe(struct engine *eng)
{
	uint64_t now, off = 0;
	uint32_t len = 0;
	bool busy;
	int r;

	if (eng->pz_done || eng->closing || !eng->pz_cursor) /* !cursor: start-up polls */
		return;
	now = eng_now_ms();
	if (seg_inflight(eng) > (eng->pz_inflight ? 1u : 0u))
		eng->pz_busy_ms = now;
	if (eng->pz_inflight || eng->nfree <= eng->gc_reserve + 2)
		return;
	/* a client's request in flight for long is a slow disk, not a quiet one */
	busy = now - eng->pz_busy_ms < PZ_QUIET_MS || !eng_clients_quiet(eng, now, PZ_QUIET_MS);
	if (busy && now < eng->pz_next_ms)
		return;
	r = next_chunk(eng, busy ? PZ_BUSY_CHUNK : PZ_CHUNK, &off, &len);
	eng->pz_waiting = r == -EAGAIN;
	if (r < 0) {
		eng->pz_done = r != -EAGAIN;
		return;
	}
	if (!eng->pz_zeros && !(eng->pz_zeros = seg_buf_alloc(PZ_CHUNK))) {
		eng->pz_done = true;
		return;
	}
	eng->pz_slot = slot_of(eng, off);
	r = seg_dev_write(eng->segs, off, eng->pz_zeros, len, chunk_written, eng);
	if (r < 0) {
		chunk_written(eng, r);
		return;
	}
	eng->slots[eng->pz_slot].readers++;
	eng->pz_inflight = true;
	eng->pz_cursor = off + len;
	eng->pz_next_ms = now + PZ_BUSY_GAP_MS;
}

int eng_prezero_timeout(const struct engine *eng)
{
	uint64_t now = eng_now_ms();

	if (eng->pz_done || !eng->pz_cursor || eng->pz_inflight || eng->pz_waiting || eng->closing ||
	    eng->nfree <= eng->gc_reserve + 2)
		return INT_MAX; /* a completion rings the event fd; a write moves the lead */
	return eng->pz_next_ms > now ? (int)(eng->pz_next_ms - now) : 0;
}
