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
 * Where the unwritten ranges are is asked of the file system once, at open (a walk
 * of SEEK_DATA/SEEK_HOLE over the slots; a grow happens before it, at open):
 * lseek() waits for the inode's lock behind writes converting unwritten extents and
 * walks the extent tree, and on the loop thread, once per slot, it held client I/O
 * behind it. The walk's answer stays true for a free slot nobody took since: only
 * slots slot_take() handed out (the log's, a held copy's) and these zeros write the
 * store. slot_take() hands out the lowest free slot (passing one a prezero chunk in
 * flight reads: that one only loses its zeros) and notes the highest it ever
 * handed out (pz_taken_end); the slots below it are left alone (a freed one may hold
 * data and a FREE header now; a held slot's generation says nothing), while the
 * lead lies above it.
 *
 * Bandwidth. One chunk in flight at a time. While the clients are quiet (none of
 * their requests in flight, started or ended for PZ_QUIET_MS, and no other store I/O
 * in flight: eng_clients_quiet()) chunks of PZ_CHUNK go back to back: 256 KiB, not
 * 1 MiB as first, since "quiet" is a guess (on a loaded VM a QD32 client went 20 ms
 * without a request now and then) and the batch that comes next waits behind the
 * chunk in flight: 1 MiB chunks were 0.7% of a QD32 job's time and 7% of its
 * requests over p99 overlapped one. While they are
 * busy, a chunk of PZ_BUSY_CHUNK at most every PZ_BUSY_GAP_MS, and only as many bytes
 * as the log's small batches (at most PZ_SMALL_BATCH) took since: the conversion is
 * one journalled update per write, a large share of an 8 KiB write's cost and a
 * small one of a 132 KiB batch's, while the zeros cost the disk as many bytes as
 * the log they precede. Zeroing at the log's pace under a QD32 writer doubled the
 * bytes written and every batch waited behind a chunk. So a heavy writer pays the
 * conversion itself; a QD1 writer finds its slots zeroed.
 * None when free slots are scarce (the cleaner's time).
 *
 * When, while busy: not while a lone client request is in flight. A QD1 client leaves
 * the disk to us after each request, while it turns around (~100 us); a chunk sent
 * then is mostly done before the next request's write. Sent as soon as the credit
 * allowed, it went out, on the turn a request arrived, ahead of that request's write
 * in the same submit, and the write waited behind it (the disk's time for it, and the
 * split of the unwritten extent ext4 makes at submit). For the same reason a chunk is
 * 64 KiB while busy (about half a turnaround of the disk's time here), at most one
 * per PZ_BUSY_GAP_MS: the pace a deep queue allows stays that of 128 KiB per 2 ms.
 * A deep queue has no such moment, and its chunks go as before.
 */
#include <errno.h>
#include <limits.h>

#include "common/array.h"
#include "common/err.h"
#include "common/log.h"
#include "engine/engine_internal.h"

#define PZ_LEAD_SLOTS 16u
#define PZ_CHUNK (256u << 10)
#define PZ_BUSY_CHUNK (64u << 10)
#define PZ_BUSY_GAP_MS 1u
#define PZ_QUIET_MS 20u
#define PZ_SMALL_BATCH (64u << 10)

/* One client request in flight: its end runs the loop, and leaves the disk to us. */
static bool lone_request(const struct engine *eng)
{
	return eng->client_inflight == 1;
}

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

/* Notes the unwritten ranges of [from, to) in eng->pz_ranges (from the file system:
 * two lseek() per data extent). 0 or -errno. */
static int walk(struct engine *eng, uint64_t from, uint64_t to)
{
	uint64_t off = from, start, end;
	int r;

	while (off < to) {
		eng->pz_queries++;
		r = seg_dev_next_data(eng->segs, off, &start, &end);
		if (r == -ENXIO) /* no data from here on */
			start = end = to;
		else if (r < 0)
			return r;
		if (start > to)
			start = to;
		if (start > off) {
			if (ARRAY_GROW(eng->pz_ranges, eng->pz_cap, eng->pz_nranges, 16) < 0)
				return -ENOMEM;
			eng->pz_ranges[eng->pz_nranges++] = (struct pz_range){ off, start };
		}
		if (end <= off) /* no progress: the file system says nothing useful */
			break;
		off = end;
	}
	return 0;
}

/* The unwritten range at or after cur: NULL when the walk saw none there. */
static const struct pz_range *range_from(struct engine *eng, uint64_t cur)
{
	while (eng->pz_next < eng->pz_nranges && eng->pz_ranges[eng->pz_next].end <= cur)
		eng->pz_next++;
	return eng->pz_next < eng->pz_nranges ? &eng->pz_ranges[eng->pz_next] : NULL;
}

/* The next range to zero from the cursor, at most max bytes: 0 and [*off, *off + *len),
 * or -EAGAIN (beyond the lead: later) or -ENXIO (nothing left). Moves the cursor past
 * what it skips. */
static int next_chunk(struct engine *eng, uint32_t max, uint64_t *off, uint32_t *len)
{
	while (eng->pz_cursor < data_end(eng)) {
		uint64_t cur = eng->pz_cursor, end;
		uint32_t i = slot_of(eng, cur);
		const struct slot *s = &eng->slots[i];
		uint64_t slot_end = seg_dev_slot_offset(eng->segs, i + 1);
		const struct pz_range *rg;

		if (s->state != SLOT_FREE || s->readers || s->freeing || i < eng->pz_taken_end) {
			eng->pz_cursor = slot_end; /* the log writes it: converted then */
			continue;
		}
		if (!within_lead(eng, i))
			return -EAGAIN;
		rg = range_from(eng, cur);
		if (!rg)
			return -ENXIO; /* no unwritten range left */
		if (rg->start > cur) { /* data here: written once already */
			eng->pz_cursor = rg->start;
			continue;
		}
		end = rg->end < slot_end ? rg->end : slot_end;
		*off = cur;
		*len = end - cur < max ? (uint32_t)(end - cur) : max;
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
	eng->pz_cursor = eng->sb.data_offset;
	eng->pz_taken_end = 0;
	eng->pz_done = !eng->opts.prezero;
	if (eng->pz_done)
		return;
	/* start-up: the one walk; a block device, or a file written all over, has no
	 * unwritten range and nothing to do */
	if (walk(eng, eng->sb.data_offset, data_end(eng)) < 0 || !eng->pz_nranges)
		eng->pz_done = true;
}

void eng_prezero_appended(struct engine *eng, uint64_t bytes)
{
	uint64_t cap = (uint64_t)PZ_LEAD_SLOTS * eng->sb.segment_size;

	if (bytes <= PZ_SMALL_BATCH && !eng->pz_done)
		eng->pz_credit = eng->pz_credit + bytes < cap ? eng->pz_credit + bytes : cap;
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
	if (busy && (now < eng->pz_next_ms || eng->pz_credit < PZ_BUSY_CHUNK || lone_request(eng)))
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
	eng->pz_credit = eng->pz_credit > len ? eng->pz_credit - len : 0;
}

int eng_prezero_timeout(const struct engine *eng)
{
	uint64_t now = eng_now_ms();

	if (eng->pz_done || !eng->pz_cursor || eng->pz_inflight || eng->pz_waiting || eng->closing ||
	    eng->nfree <= eng->gc_reserve + 2)
		return INT_MAX; /* a completion rings the event fd; a write moves the lead */
	if (eng->pz_credit < PZ_BUSY_CHUNK) { /* only a quiet spell brings a chunk */
		uint32_t q = eng_clients_quiet_in(eng, now, PZ_QUIET_MS);
		uint64_t b = eng->pz_busy_ms + PZ_QUIET_MS;

		if (q == UINT32_MAX)
			return INT_MAX; /* the request's end wakes the loop */
		return b > now && b - now > q ? (int)(b - now) : (int)q;
	}
	if (lone_request(eng))
		return INT_MAX; /* its end wakes the loop */
	return eng->pz_next_ms > now ? (int)(eng->pz_next_ms - now) : 0;
}
