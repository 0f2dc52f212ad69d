/* tests/unit/engine/test_engine.c — the engine through its public API (engine/engine.h)
 * on a file-backed store.
 *
 * Each test gets a scratch directory under $QUILL_TEST_DIR, else the build directory
 * (QUILL_TEST_DIR at compile time), which must support O_DIRECT; a test whose
 * directory does not is skipped with the reason.
 *
 * Crashes are simulated by a child process that opens the engine, works, and _exit()s
 * without closing it: what it wrote after its last checkpoint is only in the log, so
 * the parent's engine_open() must roll it forward. Damage is done to the closed store
 * file directly, at the places the on-disk format (engine/ondisk.h) says.
 */
#include "engine/engine.h"
#include "common/loop.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/engine_internal.h"
#include "engine/ondisk.h"
#include "testutil.h"

#include "engine_fixture.h"

TestSuite(engine, .init = setup, .fini = teardown);

/* ---- the store file, read and damaged behind the engine's back ---- */

/* The newest on-disk copy of one volume block: where it is and in which batch. */
struct found {
	bool found;
	uint64_t off;
	uint64_t seq;
};

static void pread_block(int fd, uint64_t off, void *buf)
{
	cr_assert_eq(pread(fd, buf, BLK, (off_t)off), (ssize_t)BLK, "pread at %llu",
		     (unsigned long long)off);
}

/* Walks one slot's batches, noting the newest DATA/MOVE copy of lba. */
static void scan_slot(int fd, const struct superblock *sb, uint32_t slot, uint64_t lba,
		      struct found *f)
{
	static uint8_t buf[BLK];
	static struct summary sum;
	uint64_t base = sb->data_offset + (uint64_t)slot * sb->segment_size;
	uint32_t bps = sb->segment_size / BLK;
	struct segment_header h;

	pread_block(fd, base, buf);
	if (ondisk_segment_header_decode(buf, BLK, &h) < 0 || h.state != ONDISK_SEG_USED ||
	    memcmp(h.uuid, sb->uuid, sizeof(h.uuid)) != 0)
		return;
	for (uint32_t pos = 1; pos < bps; pos += 1 + sum.data_blocks) {
		uint32_t d = 0;

		pread_block(fd, base + (uint64_t)pos * BLK, buf);
		if (ondisk_summary_decode(buf, BLK, &sum) < 0 || sum.generation != h.generation)
			return;
		for (uint32_t i = 0; i < sum.nentries; i++) {
			const struct summary_entry *e = &sum.entries[i];

			if (!ONDISK_ENTRY_HAS_BLOCK(e->kind))
				continue;
			d++;
			if (e->lba == lba && (!f->found || sum.seq > f->seq)) {
				f->found = true;
				f->seq = sum.seq;
				f->off = base + (uint64_t)(pos + d) * BLK;
			}
		}
	}
}

/* Flips a byte of the newest copy of lba in the closed store, which holds one volume;
 * returns its batch's seq. */
static uint64_t corrupt_block(uint64_t lba)
{
	static uint8_t buf[BLK];
	struct superblock sb;
	struct found f = { 0 };
	int fd = open(store_path, O_RDWR);

	cr_assert_geq(fd, 0);
	pread_block(fd, 0, buf);
	cr_assert_eq(ondisk_superblock_decode(buf, BLK, &sb), 0);
	for (uint32_t slot = 0; slot < sb.segment_count; slot++)
		scan_slot(fd, &sb, slot, lba, &f);
	cr_assert(f.found, "no copy of lba %llu on disk", (unsigned long long)lba);
	pread_block(fd, f.off, buf);
	buf[100] ^= 0x5a;
	cr_assert_eq(pwrite(fd, buf, BLK, (off_t)f.off), (ssize_t)BLK);
	cr_assert_eq(fsync(fd), 0);
	close(fd);
	return f.seq;
}

/* ================= opening and formatting ================= */

Test(engine, format_then_open_without_format)
{
	struct engine_stats st;

	open_engine();
	st = stats();
	cr_assert_eq(st.segment_size, SEG_SIZE);
	cr_assert_eq(st.segments_total, NSEGS);
	cr_assert_eq(st.segments_free, NSEGS);
	cr_assert_eq(st.live_blocks, 0);
	engine_close(eng);
	eng = NULL;
	cr_assert_eq(try_open(false), 0, "a formatted store opens without format");
	cr_assert_eq(stats().segments_total, NSEGS);
}

Test(engine, store_without_superblock_needs_format)
{
	cr_assert_eq(try_open(false), -ENOENT);
	cr_assert_null(eng);
}

Test(engine, metadata_of_another_store_is_refused)
{
	char other_store[PATH_MAX + 32], other_meta[PATH_MAX + 32];
	struct engine_opts o;

	open_engine();
	engine_close(eng);
	eng = NULL;
	snprintf(other_store, sizeof(other_store), "%s/other.img", dir);
	snprintf(other_meta, sizeof(other_meta), "%s/other-meta", dir);
	opts_for(&o, other_store, other_meta, true);
	cr_assert_eq(engine_open(&o, &eng), 0);
	engine_close(eng);
	eng = NULL;

	opts_for(&o, other_store, meta_path, false);
	cr_assert_eq(engine_open(&o, &eng), -EINVAL);
	cr_assert_null(eng);
}

Test(engine, empty_metadata_for_a_formatted_store_is_refused)
{
	char fresh_meta[PATH_MAX + 32];
	struct engine_opts o;

	open_engine();
	engine_close(eng);
	eng = NULL;
	snprintf(fresh_meta, sizeof(fresh_meta), "%s/fresh-meta", dir);
	opts_for(&o, store_path, fresh_meta, true); /* format: only if no superblock */
	cr_assert_eq(engine_open(&o, &eng), -EINVAL);
	cr_assert_null(eng);
}

/* ================= volume management ================= */

static int collect_names(const struct engine_volume_info *in, void *arg)
{
	char *names = arg;

	strcat(names, in->name);
	strcat(names, ",");
	return 0;
}

static int stop_at_first(const struct engine_volume_info *in, void *arg)
{
	(void)in;
	++*(int *)arg;
	return 42;
}

Test(engine, volume_create_list_info_delete)
{
	char names[256] = "";
	struct engine_volume_info a;
	int calls = 0;

	open_engine();
	cr_assert_eq(engine_volume_create(eng, "zeta", VOL_SIZE), 0);
	cr_assert_eq(engine_volume_create(eng, "alpha", 2 * VOL_SIZE), 0);
	cr_assert_eq(engine_volume_create(eng, "mid.vol-1_x", BLK), 0);
	cr_assert_eq(engine_volume_list(eng, collect_names, names), 0);
	cr_assert_str_eq(names, "alpha,mid.vol-1_x,zeta,", "list is in name order");
	cr_assert_eq(engine_volume_list(eng, stop_at_first, &calls), 42);
	cr_assert_eq(calls, 1);

	a = info("alpha");
	cr_assert_str_eq(a.name, "alpha");
	cr_assert_eq(a.size, 2 * VOL_SIZE);
	cr_assert_eq(a.mapped_blocks, 0);
	cr_assert_eq(a.segments, 0);
	cr_assert_not(a.open);
	cr_assert_neq(a.id, info("zeta").id);
	cr_assert_gt(a.created_ns, 0);

	cr_assert_eq(engine_volume_delete(eng, "alpha"), 0);
	cr_assert_eq(engine_volume_info(eng, "alpha", &a), -ENOENT);
	reopen_engine();
	names[0] = '\0';
	cr_assert_eq(engine_volume_list(eng, collect_names, names), 0);
	cr_assert_str_eq(names, "mid.vol-1_x,zeta,", "volume table survives a reopen");
}

/* A deleted volume's slots get FREE headers without holding the loop: the delete's
 * RocksDB commit is done and its slots are still `freeing` (headers in flight) at some
 * poll before its callback runs; when it runs, they are free and FREE on disk. */
Test(engine, volume_delete_writes_free_headers_without_blocking_the_loop)
{
	struct engine_volume *vol;
	uint32_t used[NSEGS];
	size_t nused = 0;
	bool seen_in_flight = false;
	struct done d = { 0 };
	uint8_t *blk = malloc(BLK);
	int fd;

	open_engine();
	vol = create_and_open("gone", VOL_SIZE);
	write_tagged(vol, 0, 80, 1); /* three slots of 31 blocks */
	for (uint32_t i = 0; i < NSEGS; i++)
		if (eng->slots[i].state != SLOT_FREE && eng->slots[i].volume_id == vol->rec.volume_id)
			used[nused++] = i;
	engine_volume_close(vol);
	cr_assert_geq(nused, 3);
	cr_assert_eq(engine_volume_delete_async(eng, "gone", on_done, &d), 0);
	while (!d.done) {
		bool freeing = false;

		cr_assert_geq(engine_poll(eng, 10), 0);
		for (size_t i = 0; i < nused; i++)
			freeing |= eng->slots[used[i]].freeing;
		if (!d.done && freeing && !eng_volume_by_name(eng, "gone"))
			seen_in_flight = true;
	}
	cr_assert_eq(d.res, 0);
	cr_assert(seen_in_flight, "the FREE headers were written inside one step");
	fd = open(store_path, O_RDONLY);
	cr_assert(fd >= 0 && blk);
	for (size_t i = 0; i < nused; i++) {
		struct segment_header h;

		cr_assert_eq(eng->slots[used[i]].state, SLOT_FREE, "slot %u", used[i]);
		pread_block(fd, seg_dev_slot_offset(eng->segs, used[i]), blk);
		cr_assert_eq(ondisk_segment_header_decode(blk, BLK, &h), 0);
		cr_assert_eq(h.state, ONDISK_SEG_FREE, "slot %u header", used[i]);
	}
	close(fd);
	free(blk);
}

Test(engine, volume_ids_are_not_reused)
{
	uint64_t id;

	open_engine();
	cr_assert_eq(engine_volume_create(eng, "v", VOL_SIZE), 0);
	id = info("v").id;
	cr_assert_eq(engine_volume_delete(eng, "v"), 0);
	reopen_engine();
	cr_assert_eq(engine_volume_create(eng, "v", VOL_SIZE), 0);
	cr_assert_neq(info("v").id, id, "a new family uid");
	cr_assert_gt(info("v").id, ONDISK_CATALOG_UID, "never 0 or the catalog's");
	cr_assert_leq(info("v").id, (uint64_t)INT64_MAX, "fits the control protocol's JSON");
}

Test(engine, volume_create_refuses_a_taken_name)
{
	open_engine();
	cr_assert_eq(engine_volume_create(eng, "v", VOL_SIZE), 0);
	cr_assert_eq(engine_volume_create(eng, "v", 2 * VOL_SIZE), -EEXIST);
	cr_assert_eq(info("v").size, VOL_SIZE);
}

Test(engine, volume_create_refuses_bad_names)
{
	char longest[ENGINE_VOLUME_NAME_MAX + 2];
	const char *bad[] = { "", "a/b", "a b", "vol\n", "é", longest };

	memset(longest, 'x', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0'; /* one too long */
	open_engine();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(engine_volume_create(eng, bad[i], VOL_SIZE), -EINVAL, "name '%s'", bad[i]);
	cr_expect_eq(engine_volume_create(eng, NULL, VOL_SIZE), -EINVAL);
	longest[ENGINE_VOLUME_NAME_MAX] = '\0';
	cr_assert_eq(engine_volume_create(eng, longest, VOL_SIZE), 0, "63 characters are fine");
}

Test(engine, volume_create_refuses_bad_sizes)
{
	const uint64_t bad[] = { 0, 1, BLK - 1, BLK + 512, (1ull << 60) + BLK };

	open_engine();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(engine_volume_create(eng, "v", bad[i]), -EINVAL, "size %llu",
			     (unsigned long long)bad[i]);
	cr_assert_eq(engine_volume_create(eng, "v", BLK), 0);
	cr_assert_eq(engine_volume_resize(eng, "v", 0), -EINVAL);
	cr_assert_eq(engine_volume_resize(eng, "v", BLK + 1), -EINVAL);
}

Test(engine, unknown_volume_is_enoent)
{
	struct engine_volume *vol = NULL;
	struct engine_volume_info in;

	open_engine();
	cr_assert_eq(engine_volume_open(eng, "nope", &vol), -ENOENT);
	cr_assert_eq(engine_volume_info(eng, "nope", &in), -ENOENT);
	cr_assert_eq(engine_volume_delete(eng, "nope"), -ENOENT);
	cr_assert_eq(engine_volume_resize(eng, "nope", VOL_SIZE), -ENOENT);
}

Test(engine, open_volume_is_busy)
{
	struct engine_volume *vol, *again = NULL;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	cr_assert_eq(engine_volume_open(eng, "v", &again), -EBUSY);
	cr_assert_eq(engine_volume_delete(eng, "v"), -EBUSY);
	cr_assert(info("v").open);
	engine_volume_close(vol);
	cr_assert_not(info("v").open);
	cr_assert_eq(engine_volume_delete(eng, "v"), 0);
}

/* open_engine() must come first: create_and_open uses it. */
static struct engine_volume *fresh_volume(const char *name, uint64_t size)
{
	open_engine();
	return create_and_open(name, size);
}

Test(engine, io_past_the_end_is_out_of_range)
{
	struct engine_volume *vol = fresh_volume("v", VOL_SIZE);
	uint8_t *buf = calloc(2, BLK);
	struct done d = { 0 };

	cr_assert_eq(engine_read(vol, VOL_BLOCKS, 1, buf, on_done, &d), -ERANGE);
	cr_assert_eq(engine_read(vol, VOL_BLOCKS - 1, 2, buf, on_done, &d), -ERANGE);
	cr_assert_eq(engine_write(vol, VOL_BLOCKS - 1, 2, buf, 0, on_done, &d), -ERANGE);
	cr_assert_eq(engine_write(vol, UINT64_MAX, 1, buf, 0, on_done, &d), -ERANGE);
	cr_assert_eq(engine_trim(vol, 1, VOL_BLOCKS, 0, on_done, &d), -ERANGE);
	cr_assert_eq(engine_trim(vol, 2, UINT64_MAX, 0, on_done, &d), -ERANGE);
	cr_assert_geq(engine_poll(eng, 0), 0);
	cr_assert_not(d.done, "a refused call never calls back");
	cr_assert_eq(vwrite(vol, VOL_BLOCKS - 2, 2, buf), 0, "the last blocks are in range");
	free(buf);
}

Test(engine, io_with_bad_arguments_is_einval)
{
	struct engine_volume *vol = fresh_volume("v", VOL_SIZE);
	uint8_t *buf = calloc(1, BLK);
	struct done d = { 0 };

	cr_assert_eq(engine_read(vol, 0, 0, buf, on_done, &d), -EINVAL);
	cr_assert_eq(engine_read(vol, 0, 1, NULL, on_done, &d), -EINVAL);
	cr_assert_eq(engine_read(vol, 0, 1, buf, NULL, &d), -EINVAL);
	cr_assert_eq(engine_write(vol, 0, 0, buf, 0, on_done, &d), -EINVAL);
	cr_assert_eq(engine_write(vol, 0, 1, buf, 0x80, on_done, &d), -EINVAL);
	cr_assert_eq(engine_trim(vol, 0, 0, 0, on_done, &d), -EINVAL);
	cr_assert_eq(engine_flush(eng, NULL, NULL), -EINVAL);
	cr_assert_geq(engine_poll(eng, 0), 0);
	cr_assert_not(d.done);
	free(buf);
}

/* ================= data ================= */

Test(engine, unwritten_blocks_read_as_zeros)
{
	struct engine_volume *vol = fresh_volume("v", VOL_SIZE);

	expect_tagged(vol, 0, 70, 0);
	write_tagged(vol, 10, 1, 5);
	expect_tagged(vol, 0, 10, 0);
	expect_tagged(vol, 10, 1, 5);
	expect_tagged(vol, 11, 60, 0);
	cr_assert(engine_block_mapped(vol, 10));
	cr_assert_not(engine_block_mapped(vol, 11));
	cr_assert_eq(info("v").mapped_blocks, 1);
}

Test(engine, write_read_round_trip_with_unaligned_buffers)
{
	struct engine_volume *vol = fresh_volume("v", VOL_SIZE);

	/* more than a batch (168 entries) and several segments in one call */
	write_tagged(vol, 3, 300, 1);
	write_tagged(vol, 500, 1, 2);
	write_tagged(vol, 100, 20, 3); /* overwrite inside */
	expect_tagged(vol, 3, 97, 1);
	expect_tagged(vol, 100, 20, 3);
	expect_tagged(vol, 120, 183, 1);
	expect_tagged(vol, 500, 1, 2);
	expect_tagged(vol, 0, 3, 0);
	cr_assert_eq(info("v").mapped_blocks, 301);
	cr_assert_geq(info("v").segments, 300 / SEG_BLOCKS);
}

Test(engine, fua_write_and_flush_complete)
{
	struct engine_volume *vol = fresh_volume("v", VOL_SIZE);
	uint8_t *buf = malloc(BLK);
	struct done d = { 0 };

	fill(buf, 7, 1, 9);
	cr_assert_eq(finish(engine_write(vol, 7, 1, buf, ENGINE_FUA, on_done, &d), &d), 0);
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(eflush(), 0, "a flush with nothing to flush");
	free(buf);
	expect_tagged(vol, 7, 1, 9);
}

/* Replay's rule rests on it: behind a batch that never completes, fewer than
 * ONDISK_MAX_INFLIGHT_BATCHES of its volume's batches are ever submitted. */
Test(engine, a_volume_never_has_more_batches_in_flight_than_the_format_allows)
{
	struct engine_volume *vol = fresh_volume("v", VOL_SIZE);
	uint8_t *buf = malloc(256 * BLK);
	struct done d = { 0 };
	unsigned most = 0, batches = 0;

	fill(buf, 0, 256, 1); /* about 9 batches: a slot holds 31 blocks */
	cr_assert_eq(engine_write(vol, 0, 256, buf, 0, on_done, &d), 0);
	eng_kick(eng); /* submits what may go; nothing completes before the next poll */
	while (!d.done) {
		unsigned submitted = 0, all = 0;

		for (const struct batch *b = vol->head; b; b = b->next, all++)
			submitted += b->state == BATCH_INFLIGHT || b->state == BATCH_DONE;
		if (submitted > most)
			most = submitted;
		if (all > batches)
			batches = all;
		cr_assert_geq(engine_poll(eng, 10), 0);
	}
	cr_assert_eq(d.res, 0);
	cr_assert_gt(batches, ONDISK_MAX_INFLIGHT_BATCHES, "the write must need more batches");
	cr_assert_leq(most, ONDISK_MAX_INFLIGHT_BATCHES, "%u batches unretired at once", most);
	expect_tagged(vol, 0, 256, 1);
	free(buf);
}

/* An event loop that sleeps in the engine (quilld): engine_run() after the loop's
 * events, then one engine_wait_fd(). Writes that arrived in the same round share a
 * batch; a lone write goes out in the very next sleep, with nothing (no timer, no
 * second turn) in between, and its callback runs from the engine_run() after it. */
static unsigned waits_until_done(int epfd, const struct done *d)
{
	unsigned waits = 0;
	struct epoll_event evs[4];
	struct loop_wait w = { .epfd = epfd, .events = evs, .max_events = 4 };

	cr_assert_geq(engine_run(eng), 0);
	while (!d->done) {
		cr_assert_geq(engine_wait_fd(eng, &w, -1), 0);
		cr_assert_not(w.ready, "nothing watched by the epoll fd is ever readable");
		waits++;
		cr_assert_geq(engine_run(eng), 0);
	}
	return waits;
}

Test(engine, a_loop_sleeping_in_the_engine_batches_a_round_and_sends_a_lone_write_at_once)
{
	struct engine_volume *vol = fresh_volume("v", VOL_SIZE);
	uint8_t *buf = malloc(2 * BLK);
	struct done a = { 0 }, b = { 0 }, c = { 0 };
	uint64_t seq;
	int epfd = epoll_create1(EPOLL_CLOEXEC);

	cr_assert(buf && epfd >= 0);
	/* only the writes' completions may wake the sleeps counted: no zeroing ahead of
	 * the log, no checkpoint running (its thread bounds a sleep at 5 ms) */
	eng->pz_done = true;
	while (eng->pz_inflight || eng->ckpt_busy)
		cr_assert_geq(engine_poll(eng, 10), 0);
	fill(buf, 0, 2, 7);
	seq = eng->next_seq;
	cr_assert_eq(engine_write(vol, 0, 1, buf, 0, on_done, &a), 0);
	cr_assert_eq(engine_write(vol, 1, 1, buf + BLK, 0, on_done, &b), 0);
	cr_assert_eq(waits_until_done(epfd, &b), 1, "one sleep for both");
	cr_assert(a.done && a.res == 0 && b.res == 0);
	cr_assert_eq(eng->next_seq, seq + 1, "one round: one batch");
	cr_assert_eq(engine_write(vol, 2, 1, buf, 0, on_done, &c), 0);
	cr_assert_eq(waits_until_done(epfd, &c), 1, "a lone write needs one sleep");
	cr_assert_eq(c.res, 0);
	cr_assert_eq(eng->next_seq, seq + 2);
	expect_tagged(vol, 0, 2, 7);
	close(epfd);
	free(buf);
}

/* The durable mark: a batch built after a flush records what the flush covered. */
Test(engine, summaries_record_the_flushed_sequence_and_the_run)
{
	struct engine_volume *vol = fresh_volume("v", VOL_SIZE);
	struct summary *s = malloc(sizeof(*s));
	uint8_t *blk = malloc(BLK);
	uint64_t first;
	int fd = open(store_path, O_RDONLY);

	cr_assert(s && blk && fd >= 0);
	write_tagged(vol, 0, 2, 1); /* one batch: the slot's header, summary, 2 blocks */
	first = eng->next_seq - 1;
	cr_assert_lt(eng->durable_seq, first, "not flushed yet");
	cr_assert_eq(eflush(), 0);
	cr_assert_eq(eng->durable_seq, first);
	write_tagged(vol, 2, 2, 1); /* the next batch, at block 4, carries the mark */
	cr_assert_eq(pread(fd, blk, BLK, (off_t)(seg_dev_slot_offset(eng->segs, (uint32_t)vol->open_slot) + 4 * BLK)),
		     (ssize_t)BLK);
	cr_assert_eq(ondisk_summary_decode(blk, BLK, s), 0);
	cr_assert_eq(s->seq, first + 1);
	cr_assert_eq(s->durable_seq, first, "the second batch records the first durable");
	cr_assert_eq(s->open_seq, eng->open_seq);
	cr_assert_leq(s->open_seq, first);
	close(fd);
	free(blk);
	free(s);
}

/* Checkpoints that each take longer than checkpoint_ms start back to back (so do those
 * the cleaner asks for): a wait for one captured after it began must still end, at
 * open, in a job and at close, instead of seeing one busy at every poll. */
Test(engine, a_checkpoint_wait_ends_when_checkpoints_run_back_to_back, .timeout = 60)
{
	struct engine_opts o;
	struct engine_volume *vol;
	uint64_t before;

	opts_for(&o, store_path, meta_path, true);
	o.checkpoint_ms = 10;
	o.test_pause = "ckpt-commit:40"; /* each checkpoint holds its thread 40 ms */
	cr_assert_eq(engine_open(&o, &eng), 0);
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 8, 1);
	before = stats().checkpoints;
	cr_assert_eq(engine_checkpoint(eng), 0);
	cr_assert_gt(stats().checkpoints, before);
	cr_assert_geq(stats().last_checkpoint_seq, eng->next_seq - 1, "it covers the write");
	engine_volume_close(vol);
	engine_close(eng); /* its final checkpoint waits the same way */
	eng = NULL;
	open_engine();
	expect_tagged(open_vol("v"), 0, 8, 1);
}

/* Write-back pacing: once sync_bytes of log are written, a store flush starts by itself
 * (within ENGINE_SYNC_MIN_MS), so that no later flush has much to write back. Returns
 * whether the writes became durable while the engine ran for a few pacing periods. */
static bool paced_flush_covers_writes(uint64_t sync_bytes)
{
	struct engine_opts o;
	struct engine_volume *vol;
	uint64_t last, end;
	int timeout;

	opts_for(&o, store_path, meta_path, true);
	o.sync_bytes = sync_bytes;
	cr_assert_eq(engine_open(&o, &eng), 0);
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 24, 1); /* 96 KiB of data, no flush asked for */
	last = eng->next_seq - 1;
	cr_assert_lt(eng->durable_seq, last);
	timeout = engine_timeout_ms(eng);
	cr_assert_leq(timeout, sync_bytes == UINT64_MAX ? 600000 : (int)ENGINE_SYNC_MIN_MS,
		      "a loop sleeping on engine_timeout_ms() wakes for the flush (%d ms)",
		      timeout);
	end = eng_now_ms() + 3 * ENGINE_SYNC_MIN_MS;
	while (eng->durable_seq < last && eng_now_ms() < end)
		cr_assert_geq(engine_poll(eng, 10), 0);
	expect_tagged(vol, 0, 24, 1);
	return eng->durable_seq >= last;
}

Test(engine, a_flush_starts_by_itself_after_sync_bytes_of_log)
{
	cr_assert(paced_flush_covers_writes(64 << 10));
}

Test(engine, no_flush_starts_by_itself_when_pacing_is_off)
{
	cr_assert_not(paced_flush_covers_writes(UINT64_MAX));
}

Test(engine, trim_reads_zeros_and_unmaps)
{
	struct engine_volume *vol = fresh_volume("v", VOL_SIZE);

	write_tagged(vol, 0, 100, 1);
	cr_assert_eq(vtrim(vol, 10, 20), 0);
	expect_tagged(vol, 0, 10, 1);
	expect_tagged(vol, 10, 20, 0);
	expect_tagged(vol, 30, 70, 1);
	cr_assert_not(engine_block_mapped(vol, 10));
	cr_assert_eq(info("v").mapped_blocks, 80);
	cr_assert_eq(vtrim(vol, 0, VOL_BLOCKS), 0, "the whole volume, holes included");
	cr_assert_eq(info("v").mapped_blocks, 0);
	expect_tagged(vol, 0, 100, 0);
}

Test(engine, space_accounting_follows_writes_trims_and_deletes)
{
	struct engine_volume *vol = fresh_volume("v", VOL_SIZE);
	struct engine_stats st;

	write_tagged(vol, 0, 100, 1);
	st = stats();
	cr_assert_eq(st.live_blocks, 100);
	cr_assert_lt(st.segments_free, NSEGS);
	/* the volume's log, and the catalog log holding its record (docs/format.md) */
	cr_assert_eq(st.segments_open, 2);
	cr_assert_geq(st.used_blocks, 100 + 1);

	write_tagged(vol, 0, 50, 2); /* overwrites are not extra live blocks */
	cr_assert_eq(stats().live_blocks, 100);
	cr_assert_gt(stats().used_blocks, st.used_blocks, "the log only grows");

	cr_assert_eq(vtrim(vol, 90, 20), 0); /* 10 of them mapped */
	cr_assert_eq(stats().live_blocks, 90);

	engine_volume_close(vol);
	cr_assert_eq(engine_volume_delete(eng, "v"), 0);
	st = stats();
	cr_assert_eq(st.live_blocks, 0);
	cr_assert_eq(st.segments_free, NSEGS - 1, "a deleted volume's segments are free at "
		     "once; the catalog log keeps its tombstone");
	cr_assert_lt(st.used_blocks, SEG_BLOCKS, "only the catalog log's");
}

Test(engine, cleaner_frees_overwritten_segments_and_keeps_data)
{
	struct engine_volume *vol = fresh_volume("v", VOL_SIZE);
	struct engine_stats before, after;
	int freed;

	write_tagged(vol, 0, 200, 1);
	for (uint64_t lba = 0; lba < 200; lba += 2) /* every other block: slots half live */
		write_tagged(vol, lba, 1, 2);
	before = stats();
	cr_assert_eq(before.live_blocks, 200);

	freed = engine_gc(eng, before.segments_free + 2);
	cr_assert_gt(freed, 0, "engine_gc: %d", freed);
	after = stats();
	cr_assert_gt(after.segments_free, before.segments_free);
	cr_assert_gt(after.gc_blocks_moved, 0);
	cr_assert_geq(after.gc_segments_freed, (uint64_t)freed);
	cr_assert_eq(after.live_blocks, 200, "moving blocks does not change what is live");
	cr_assert_lt(after.used_blocks, before.used_blocks);
	for (uint64_t lba = 0; lba < 200; lba++)
		expect_tagged(vol, lba, 1, lba % 2 ? 1 : 2);

	engine_volume_close(vol);
	reopen_engine();
	vol = open_vol("v");
	for (uint64_t lba = 0; lba < 200; lba++)
		expect_tagged(vol, lba, 1, lba % 2 ? 1 : 2);
	cr_assert_eq(stats().live_blocks, 200);
}

Test(engine, cleaner_frees_fully_overwritten_segments)
{
	struct engine_volume *vol = fresh_volume("v", VOL_SIZE);
	struct engine_stats before, after;

	write_tagged(vol, 0, 4 * SEG_BLOCKS, 1);
	write_tagged(vol, 0, 4 * SEG_BLOCKS, 2);
	before = stats();
	cr_assert_gt(engine_gc(eng, NSEGS), 0);
	after = stats();
	cr_assert_gt(after.segments_free, before.segments_free);
	cr_assert_eq(after.live_blocks, 4 * SEG_BLOCKS);
	expect_tagged(vol, 0, 4 * SEG_BLOCKS, 2);
}

Test(engine, resize_grows_with_zeros_and_shrink_drops_the_tail)
{
	struct engine_volume *vol = fresh_volume("v", VOL_SIZE);
	static uint8_t scratch[BLK];

	write_tagged(vol, 0, 8, 1);
	write_tagged(vol, VOL_BLOCKS - 4, 4, 2);
	cr_assert_eq(engine_volume_resize(eng, "v", 2 * VOL_SIZE), 0);
	cr_assert_eq(engine_volume_size(vol), 2 * VOL_SIZE);
	cr_assert_eq(info("v").size, 2 * VOL_SIZE);
	expect_tagged(vol, VOL_BLOCKS, 16, 0);
	write_tagged(vol, 2 * VOL_BLOCKS - 1, 1, 3);

	cr_assert_eq(engine_volume_resize(eng, "v", 4 * BLK), 0);
	cr_assert_eq(info("v").size, 4 * BLK);
	cr_assert_eq(info("v").mapped_blocks, 4);
	cr_assert_eq(stats().live_blocks, 4);
	expect_tagged(vol, 0, 4, 1);
	cr_assert_eq(vread(vol, 4, 1, scratch), -ERANGE);

	cr_assert_eq(engine_volume_resize(eng, "v", 2 * VOL_SIZE), 0);
	expect_tagged(vol, 4, 4, 0);
	expect_tagged(vol, VOL_BLOCKS - 4, 4, 0);
	expect_tagged(vol, 2 * VOL_BLOCKS - 1, 1, 0);
	engine_volume_close(vol);
	reopen_engine();
	vol = open_vol("v");
	cr_assert_eq(info("v").mapped_blocks, 4, "the cut tail stays cut after replay");
	expect_tagged(vol, 0, 4, 1);
	expect_tagged(vol, VOL_BLOCKS - 4, 4, 0);
}

Test(engine, reopen_keeps_data)
{
	struct engine_volume *vol = fresh_volume("v", VOL_SIZE);
	struct engine_volume *w;

	cr_assert_eq(engine_volume_create(eng, "w", VOL_SIZE), 0);
	w = open_vol("w");
	write_tagged(vol, 0, 64, 1);
	write_tagged(w, 0, 64, 2);
	cr_assert_eq(vtrim(vol, 32, 8), 0);
	reopen_engine(); /* closes the open volumes too */
	vol = open_vol("v");
	w = open_vol("w");
	expect_tagged(vol, 0, 32, 1);
	expect_tagged(vol, 32, 8, 0);
	expect_tagged(vol, 40, 24, 1);
	expect_tagged(w, 0, 64, 2);
	cr_assert_eq(stats().live_blocks, 56 + 64);
	cr_assert_eq(stats().torn_batches, 0);
}

/* ================= crashes and damage ================= */

static int child_open(struct engine_volume **vol)
{
	int r = try_open(false);

	return r < 0 ? r : engine_volume_open(eng, "v", vol);
}

static void child_write(struct engine_volume *vol, uint64_t lba, uint32_t n, uint32_t tag)
{
	static uint8_t buf[16 * BLK];

	fill(buf, lba, n, tag);
	if (vwrite(vol, lba, n, buf) < 0)
		_exit(2);
}

/* Writes tag 2 over blocks 0..3 and 100, trims 50..59, flushes, and dies. */
static int write_flush_crash(void)
{
	struct engine_volume *vol;

	CHILD_CHECK(child_open(&vol) == 0);
	child_write(vol, 0, 4, 2);
	child_write(vol, 100, 1, 2);
	CHILD_CHECK(vtrim(vol, 50, 10) == 0);
	CHILD_CHECK(eflush() == 0);
	return 0;
}

/* Volume "v" with tag 1 on blocks 0..3 and 50..59, checkpointed by a clean close. */
static int write_close(void)
{
	struct engine_volume *vol;

	CHILD_CHECK(try_open(true) == 0);
	CHILD_CHECK(engine_volume_create(eng, "v", VOL_SIZE) == 0);
	CHILD_CHECK(engine_volume_open(eng, "v", &vol) == 0);
	child_write(vol, 0, 4, 1);
	child_write(vol, 50, 10, 1);
	engine_close(eng);
	return 0;
}

static void prepare_checkpointed(void)
{
	in_child(write_close);
}

Test(engine, replay_restores_flushed_writes_after_a_crash)
{
	struct engine_volume *vol;

	prepare_checkpointed();
	in_child(write_flush_crash);
	open_engine();
	cr_assert_geq(stats().replayed_batches, 2);
	cr_assert_eq(stats().torn_batches, 0);
	vol = open_vol("v");
	expect_tagged(vol, 0, 4, 2);
	expect_tagged(vol, 100, 1, 2);
	expect_tagged(vol, 50, 10, 0);
	cr_assert_eq(info("v").mapped_blocks, 5);
	cr_assert_eq(stats().live_blocks, 5);
}

static int write_batch_crash(void)
{
	struct engine_volume *vol;

	CHILD_CHECK(child_open(&vol) == 0);
	child_write(vol, 0, 4, 2); /* one call: one batch */
	CHILD_CHECK(eflush() == 0);
	return 0;
}

Test(engine, torn_batch_is_dropped_and_blocks_keep_their_old_data)
{
	struct engine_volume *vol;

	prepare_checkpointed();
	in_child(write_batch_crash);
	corrupt_block(2); /* the newest copy of block 2: in the child's batch */

	open_engine();
	cr_assert_eq(stats().torn_batches, 1);
	cr_assert_eq(stats().replayed_batches, 0);
	vol = open_vol("v");
	expect_tagged(vol, 0, 4, 1);
	cr_assert_eq(stats().live_blocks, 14);

	/* the log goes on after the torn batch, and that survives a crash too */
	write_tagged(vol, 2, 1, 3);
	engine_volume_close(vol);
	reopen_engine();
	vol = open_vol("v");
	expect_tagged(vol, 0, 2, 1);
	expect_tagged(vol, 2, 1, 3);
	expect_tagged(vol, 3, 1, 1);
}

Test(engine, block_damaged_after_its_checkpoint_reads_eilseq)
{
	struct engine_volume *vol;
	uint8_t *buf = malloc(4 * BLK);

	prepare_checkpointed();
	corrupt_block(1);

	open_engine();
	cr_assert_eq(stats().torn_batches, 0, "checkpointed batches are not re-verified");
	vol = open_vol("v");
	cr_assert_eq(vread(vol, 1, 1, buf), -EILSEQ);
	cr_assert_eq(vread(vol, 0, 4, buf), -EILSEQ, "a read that covers it fails whole");
	expect_tagged(vol, 0, 1, 1);
	expect_tagged(vol, 2, 2, 1);
	write_tagged(vol, 1, 1, 4); /* an overwrite heals it */
	expect_tagged(vol, 1, 1, 4);
	free(buf);
}

/* Shrinks "v" after a checkpoint that holds blocks past the new end, and dies. */
static int shrink_crash(void)
{
	struct engine_volume *vol;

	CHILD_CHECK(child_open(&vol) == 0);
	child_write(vol, 900, 1, 2);
	CHILD_CHECK(engine_checkpoint(eng) == 0);
	CHILD_CHECK(engine_volume_resize(eng, "v", 16 * BLK) == 0);
	return 0;
}

Test(engine, shrink_survives_a_crash_before_the_next_checkpoint)
{
	struct engine_volume *vol;
	int r;

	prepare_checkpointed();
	in_child(shrink_crash);
	r = try_open(false);
	cr_assert_eq(r, 0, "engine_open after a shrink and a crash: %s", strerror(-r));
	cr_assert_eq(info("v").size, 16 * BLK);
	cr_assert_eq(engine_volume_resize(eng, "v", VOL_SIZE), 0);
	vol = open_vol("v");
	expect_tagged(vol, 0, 4, 1);
	expect_tagged(vol, 900, 1, 0);
}

/* ---- a resize is all or nothing across a crash (issue 9, item 5) ----
 * The child starts an asynchronous resize and dies (no engine_close: a crash) after a
 * given number of engine_poll() turns, so that every point of the resize's job gets a
 * crash. Blocks HEAD..HEAD+16 and TAIL..TAIL+16 hold tag 1 (flushed, after the last
 * checkpoint: replay sees them); the shrink cuts at SHRUNK, between the two. */
#define SHRUNK 128u
#define TAIL (VOL_BLOCKS - 32u)

static unsigned crash_turns;
static uint64_t resize_to;

/* Exits 0 if it died before the resize completed, 3 if after. */
static int resize_crash(void)
{
	struct engine_volume *vol;
	struct done d = { 0 };

	CHILD_CHECK(try_open(true) == 0);
	CHILD_CHECK(engine_volume_create(eng, "v", VOL_SIZE) == 0);
	CHILD_CHECK(engine_volume_open(eng, "v", &vol) == 0);
	child_write(vol, 0, 16, 1);
	child_write(vol, TAIL, 16, 1);
	CHILD_CHECK(eflush() == 0);
	engine_volume_close(vol);
	if (resize_to > SHRUNK * BLK) /* the grow case starts from a shrunk volume */
		CHILD_CHECK(engine_volume_resize(eng, "v", SHRUNK * BLK) == 0);
	CHILD_CHECK(engine_volume_resize_async(eng, "v", resize_to, on_done, &d) == 0);
	for (unsigned i = 0; i < crash_turns && !d.done; i++)
		CHILD_CHECK(engine_poll(eng, 10) >= 0);
	CHILD_CHECK(!d.done || d.res == 0);
	_exit(d.done ? 3 : 0);
}

/* Runs resize_crash with crash_turns; true if the resize had completed. */
static bool crash_during_resize(unsigned turns)
{
	pid_t pid;
	int status;

	crash_turns = turns;
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(resize_crash());
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 3),
		  "child failed: status %d", status);
	return WEXITSTATUS(status) == 3;
}

static unsigned verify_turns;
static uint64_t verify_from;
static bool verify_done;

/* Does [lba, lba + n) read back tag (0: zeros)? */
static bool child_reads(struct engine_volume *vol, uint64_t lba, uint32_t n, uint32_t tag)
{
	static uint8_t got[16 * BLK], want[16 * BLK];

	if (n > 16 || vread(vol, lba, n, got) < 0)
		return false;
	if (tag)
		fill(want, lba, n, tag);
	else
		memset(want, 0, sizeof(want));
	return memcmp(got, want, (size_t)n * BLK) == 0;
}

/* After the crash: the old size with all of its data, or the new size with what lies
 * below it; grown back to the full size, what was cut off reads as zeros. A child too:
 * RocksDB's threads would not survive the next fork if this process opened it. */
static int resize_verify(void)
{
	struct engine_volume *vol;
	struct engine_volume_info vi;
	uint64_t size;
	bool shrunk;

	CHILD_CHECK(try_open(false) == 0);
	CHILD_CHECK(engine_volume_info(eng, "v", &vi) == 0);
	size = vi.size;
	if (size != verify_from && size != resize_to) {
		fprintf(stderr, "after %u turns: size %llu\n", verify_turns,
			(unsigned long long)size);
		return 1;
	}
	CHILD_CHECK(!verify_done || size == resize_to); /* a completed resize is kept */
	shrunk = size < VOL_SIZE || verify_from < VOL_SIZE;
	CHILD_CHECK(engine_volume_open(eng, "v", &vol) == 0);
	CHILD_CHECK(child_reads(vol, 0, 16, 1));
	if (!shrunk)
		CHILD_CHECK(child_reads(vol, TAIL, 16, 1)); /* not shrunk: nothing lost */
	engine_volume_close(vol);
	if (size < VOL_SIZE)
		CHILD_CHECK(engine_volume_resize(eng, "v", VOL_SIZE) == 0);
	CHILD_CHECK(engine_volume_open(eng, "v", &vol) == 0);
	if (shrunk)
		CHILD_CHECK(child_reads(vol, TAIL, 16, 0)); /* cut once: never comes back */
	engine_volume_close(vol);
	engine_close(eng);
	return 0;
}

static void expect_resize_whole(unsigned turns, uint64_t from, bool done)
{
	verify_turns = turns;
	verify_from = from;
	verify_done = done;
	in_child(resize_verify);
	testutil_rm_tree(dir);
	cr_assert_eq(mkdir(dir, 0700), 0);
}

/* A crash at every turn of the resize's job, until one comes after it completed. */
static void resize_at_every_step(uint64_t from, uint64_t to)
{
	unsigned turns;
	bool done = false;

	resize_to = to;
	/* every turn at first, then further apart: a turn may be quick, and a checkpoint
	 * (which a grow waits for) takes as long as RocksDB needs */
	for (turns = 0; turns < 1000000 && !done; turns += 1 + turns / 3) {
		done = crash_during_resize(turns);
		expect_resize_whole(turns, from, done);
	}
	cr_assert(done, "the resize never completed in %u turns", turns);
}

Test(engine, shrink_is_all_or_nothing_across_a_crash_at_every_step)
{
	resize_at_every_step(VOL_SIZE, SHRUNK * BLK);
}

Test(engine, grow_after_a_shrink_never_brings_the_cut_data_back_across_a_crash)
{
	resize_at_every_step(SHRUNK * BLK, VOL_SIZE);
}
