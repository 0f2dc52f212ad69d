/* tests/integration/replay_damage.c — a flipped byte plus a crash never turns flushed
 * data into zeros (issue 9, item 1).
 *
 * Each case: a child process formats a store, writes 8 MiB of self-describing blocks
 * to volume "v" in one call (13 batches), flushes, maybe writes a little more, and
 * dies without closing (a crash: no final checkpoint, so every batch is above the
 * checkpoint and replay must roll it forward). The parent finds a batch in the log
 * with the on-disk format (tear.h lists the batches with their offsets), damages it,
 * reopens the store with stderr captured, and checks what every block reads:
 *   - data_byte: one byte flipped in a data block of an early batch (12 batches
 *     follow it): every other block reads its data, that one block reads -EILSEQ
 *     (EIO) — also after the cleaner ran and after another restart — and the log
 *     says CORRUPT with the slot, seq and LBA; no batch counts as torn.
 *   - durable_mark: the flipped byte is in the last batch of the 8 MiB, which only
 *     one batch (written after the flush) follows: its summary's durable mark alone
 *     proves the batch was flushed.
 *   - summary: one byte flipped inside an early batch's summary: the batches after
 *     it are kept and read back, the volume is marked damaged (persisted, logged).
 *   - tear: the newest batch, written after the flush and never flushed, loses its
 *     last block (tear.h): it is dropped (torn_batches 1), its blocks read their
 *     previous data, nothing is corrupt or damaged.
 *   - torn_summary: the newest batch's summary itself is damaged: a tear, dropped.
 * Before the fix, data_byte and summary lose every batch after the damaged one:
 * ~1000 blocks read back as zeros with no error.
 *
 * The durable_mark case fails before the fix too (the batch is dropped as torn);
 * tear and torn_summary pass before and after: they guard against calling every bad
 * batch corruption.
 *
 * Env: QUILL_TEST_DIR, QUILL_KEEP=1. Exit 0 pass, 1 failure, 77 skip.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/engine.h"
#include "itest.h"
#include "tear.h"

#define VOL_BYTES (32 * IT_MIB)
#define MAIN_BLOCKS 2048u /* 8 MiB */
#define TAIL_LBA 4000u    /* the write after the flush: 4 blocks here */
#define TAIL_BLOCKS 4u
#define TAG_MAIN 1u
#define TAG_TAIL 2u
#define TAG_OLD 3u        /* what the tail blocks held before (tear case) */

static struct it_env g;

static void engine_opts_for(struct engine_opts *o, bool format)
{
	engine_opts_init(o);
	o->store_path = g.store;
	o->meta_path = g.meta;
	o->store_size = 64 * IT_MIB;
	o->segment_size = 2 * IT_MIB;
	o->format = format;
	o->checkpoint_ms = 3600 * 1000; /* no checkpoint but the ones at open */
	o->gc_auto = false;
}

static int write_tagged(struct engine *eng, struct engine_volume *vol, uint64_t lba,
			uint32_t n, uint64_t tag)
{
	uint8_t *buf = it_alloc((size_t)n * ENGINE_BLOCK_SIZE);
	int r;

	for (uint32_t i = 0; i < n; i++)
		it_block_fill(buf + (size_t)i * ENGINE_BLOCK_SIZE, g.seed, lba + i, tag);
	r = it_write(eng, vol, lba, n, buf, 0);
	free(buf);
	return r;
}

/* The child: old tail data (checkpointed by a clean close), then, after a reopen,
 * 8 MiB in one write, a flush, optionally the tail, and death without a close. */
static void child(bool tail)
{
	struct engine_opts o;
	struct engine *eng;
	struct engine_volume *vol;

	engine_opts_for(&o, true);
	if (engine_open(&o, &eng) < 0 || engine_volume_create(eng, "v", VOL_BYTES) < 0 ||
	    engine_volume_open(eng, "v", &vol) < 0 ||
	    write_tagged(eng, vol, TAIL_LBA, TAIL_BLOCKS, TAG_OLD) < 0)
		_exit(2);
	engine_close(eng);
	engine_opts_for(&o, false);
	if (engine_open(&o, &eng) < 0 || engine_volume_open(eng, "v", &vol) < 0 ||
	    write_tagged(eng, vol, 0, MAIN_BLOCKS, TAG_MAIN) < 0 || it_flush(eng) < 0)
		_exit(3);
	if (tail && write_tagged(eng, vol, TAIL_LBA, TAIL_BLOCKS, TAG_TAIL) < 0)
		_exit(4);
	_exit(0); /* the crash: nothing is closed, the tail was never flushed */
}

static bool run_child(bool tail)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return false;
	if (pid == 0)
		child(tail);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		printf("FAIL: the writer child exited with status %d\n", status);
		return false;
	}
	return true;
}

/* Opens the store with stderr going to dir/open.log; the log's text into *log. */
static int open_logged(struct engine **eng, char **log)
{
	struct engine_opts o;
	char path[PATH_MAX + 32];
	int saved = dup(2), fd, r;
	FILE *f;
	long len;

	snprintf(path, sizeof(path), "%s/open.log", g.dir);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	if (fd < 0 || saved < 0)
		return -errno;
	fflush(stderr);
	dup2(fd, 2);
	engine_opts_for(&o, false);
	r = engine_open(&o, eng);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	*log = calloc(1, (size_t)len + 1);
	if (*log && fread(*log, 1, (size_t)len, f) != (size_t)len)
		len = 0;
	fclose(f);
	fputs(*log ? *log : "", stdout); /* the test's output shows what replay said */
	return r;
}

/* quill-inspect on the damaged store, before replay: it must give replay's verdict
 * (its line contains want) and exit with status (0 a tear, 1 damage). */
static bool inspect_says(const char *want, int want_status)
{
#ifdef QUILL_INSPECT
	char path[PATH_MAX + 32], line[1024];
	bool found = false;
	int status = -1;
	FILE *f;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/inspect.log", g.dir);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);

		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		execl(QUILL_INSPECT, "quill-inspect", g.store, (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return false;
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f)) {
		if (strstr(line, want) || strstr(line, "DAMAGE") || strstr(line, "TORN"))
			printf("  inspect | %s", line);
		found |= strstr(line, want) != NULL;
	}
	if (f)
		fclose(f);
	if (found && WIFEXITED(status) && WEXITSTATUS(status) == want_status)
		return true;
	printf("FAIL: quill-inspect exited %d (want %d)%s\n", WIFEXITED(status) ?
	       WEXITSTATUS(status) : -1, want_status, found ? "" : " without saying it");
	return false;
#else
	(void)want;
	(void)want_status;
	printf("  (quill-inspect not built: its verdict is not checked)\n");
	return true;
#endif
}

struct expect {
	uint64_t bad_lba;      /* reads -EILSEQ; UINT64_MAX: none */
	uint64_t lost_lo, lost_n; /* a damaged summary's blocks: any content */
	uint64_t tail_tag;     /* what the tail blocks hold */
};

/* Reads every written block; counts what does not match. */
static unsigned verify(struct engine *eng, struct engine_volume *vol, const struct expect *ex)
{
	uint8_t *buf = it_alloc(ENGINE_BLOCK_SIZE);
	unsigned bad = 0, zeros = 0;

	for (uint64_t lba = 0; lba < MAIN_BLOCKS + 1; lba++) {
		uint64_t l = lba == MAIN_BLOCKS ? TAIL_LBA : lba, tag = 0;
		int r = it_read(eng, vol, l, 1, buf);
		uint64_t want = l == TAIL_LBA ? ex->tail_tag : TAG_MAIN;
		enum it_block_kind k;

		if (l == ex->bad_lba) {
			if (r != -EILSEQ) {
				printf("FAIL lba %" PRIu64 ": the damaged block read %d, not -EILSEQ\n",
				       l, r);
				bad++;
			}
			continue;
		}
		if (l >= ex->lost_lo && l < ex->lost_lo + ex->lost_n)
			continue;
		k = r == 0 ? it_block_check(buf, g.seed, l, &tag) : IT_BLOCK_BAD;
		if (k == IT_BLOCK_ZERO)
			zeros++;
		if (r != 0 || k != IT_BLOCK_DATA || tag != want) {
			if (bad < 5)
				printf("FAIL lba %" PRIu64 ": read %d, %s, tag %" PRIu64 " (want %"
				       PRIu64 ")\n", l, r, k == IT_BLOCK_ZERO ? "zeros" : "data",
				       tag, want);
			bad++;
		}
	}
	if (bad)
		printf("FAIL: %u blocks wrong, %u of them zeros\n", bad, zeros);
	free(buf);
	return bad;
}

static bool check_counts(struct engine *eng, uint64_t torn, uint64_t corrupt)
{
	struct engine_stats st;

	engine_get_stats(eng, &st);
	it_print_stats("  after open", &st);
	if (st.torn_batches == torn && st.corrupt_batches == corrupt)
		return true;
	printf("FAIL: %" PRIu64 " torn and %" PRIu64 " corrupt batches, want %" PRIu64 " and %"
	       PRIu64 "\n", st.torn_batches, st.corrupt_batches, torn, corrupt);
	return false;
}

static bool damaged(struct engine *eng)
{
	struct engine_volume_info info;

	return engine_volume_info(eng, "v", &info) == 0 && info.damaged;
}

static bool log_has(const char *log, const char *what)
{
	if (log && strstr(log, what))
		return true;
	printf("FAIL: the start-up log does not say \"%s\"\n", what);
	return false;
}

/* Opens, verifies, checks counts, log and the damaged flag. */
static bool recover(const struct expect *ex, uint64_t torn, uint64_t corrupt, bool dmg,
		    const char *log_line)
{
	struct engine *eng = NULL;
	struct engine_volume *vol;
	char *log = NULL;
	bool ok = open_logged(&eng, &log) == 0 && engine_volume_open(eng, "v", &vol) == 0;

	ok = ok && check_counts(eng, torn, corrupt) && verify(eng, vol, ex) == 0;
	if (ok && damaged(eng) != dmg) {
		printf("FAIL: volume info says damaged=%d\n", !dmg);
		ok = false;
	}
	if (ok && log_line)
		ok = log_has(log, log_line);
	if (ok && ex->bad_lba != UINT64_MAX) {
		/* the cleaner must not "repair" the block into zeros or older data */
		engine_gc(eng, UINT32_MAX);
		ok = verify(eng, vol, ex) == 0;
	}
	engine_close(eng);
	free(log);
	if (!ok)
		return false;
	/* and again after the checkpoint of that start-up: still no zeros, flag kept,
	 * and nothing judged twice (a torn summary's unknown seq is not met again) */
	log = NULL;
	ok = open_logged(&eng, &log) == 0 && engine_volume_open(eng, "v", &vol) == 0 &&
	     check_counts(eng, 0, 0) && verify(eng, vol, ex) == 0;
	if (ok && damaged(eng) != dmg) {
		printf("FAIL: after a second restart, damaged=%d\n", !dmg);
		ok = false;
	}
	engine_close(eng);
	free(log);
	return ok;
}

/* The batches of the child's 8 MiB write, above the checkpoint, in seq order. */
static struct tear_batch *batches(size_t *n)
{
	struct tear_batch *v = NULL;

	if (tear_list_batches(g.store, g.meta, &v, n) < 0 || *n < 13) {
		printf("FAIL: %zu batches above the checkpoint, want 13 or more\n", *n);
		free(v);
		return NULL;
	}
	for (size_t i = 0; i < *n; i++)
		printf("  batch seq %" PRIu64 ": slot %u block %u, %u data blocks, lba %" PRIu64
		       "...\n", v[i].sum.seq, v[i].slot, v[i].pos, v[i].sum.data_blocks,
		       v[i].sum.entries[0].lba);
	return v;
}

static bool case_data_byte(bool tail)
{
	struct expect ex = { .tail_tag = tail ? TAG_TAIL : TAG_OLD };
	struct tear_batch *v;
	size_t n, pick;
	bool ok;

	if (!run_child(tail) || !(v = batches(&n)))
		return false;
	/* data_byte: the second batch (11 more of the 8 MiB follow it); durable_mark: the
	 * last of the 8 MiB, which only the tail (built after the flush) follows */
	pick = tail ? n - 2 : 1;
	ex.bad_lba = v[pick].sum.entries[5].lba;
	printf("  flipping a byte in data block 5 (lba %" PRIu64 ") of batch seq %" PRIu64 "\n",
	       ex.bad_lba, v[pick].sum.seq);
	ok = tear_flip_byte(g.store, v[pick].offset + 6 * ENGINE_BLOCK_SIZE + 1234) == 0;
	free(v);
	return ok && inspect_says("CORRUPT batch seq", 1) &&
	       recover(&ex, 0, 1, false, "is CORRUPT, not torn");
}

static bool case_summary(void)
{
	struct expect ex = { .bad_lba = UINT64_MAX, .tail_tag = TAG_OLD };
	struct tear_batch *v;
	char want[64];
	size_t n;
	bool ok;

	if (!run_child(false) || !(v = batches(&n)))
		return false;
	ex.lost_lo = v[1].sum.entries[0].lba;
	ex.lost_n = v[1].sum.data_blocks;
	/* layer ids start at the store's random base (docs/format.md) */
	snprintf(want, sizeof(want), "replay marks volume %" PRIu64 " damaged",
		 v[1].sum.volume_id);
	printf("  flipping a byte in the summary of batch seq %" PRIu64 "\n", v[1].sum.seq);
	ok = tear_flip_byte(g.store, v[1].offset + 64 + 24 * 3 + 20) == 0; /* entry 3's CRC */
	free(v);
	return ok && inspect_says(want, 1) &&
	       recover(&ex, 0, 1, true, "volume marked DAMAGED");
}

static bool newer_than_flush(const void *block, uint64_t lba, void *arg)
{
	uint64_t tag;

	(void)arg;
	return it_block_check(block, g.seed, lba, &tag) == IT_BLOCK_DATA && tag == TAG_TAIL;
}

static bool case_tear(bool summary)
{
	struct expect ex = { .bad_lba = UINT64_MAX, .tail_tag = TAG_OLD };
	struct tear_batch *v;
	uint64_t seq = 0;
	size_t n;
	bool ok;

	if (!run_child(true) || !(v = batches(&n)))
		return false;
	if (summary) {
		printf("  flipping a byte in the summary of the newest batch, seq %" PRIu64 "\n",
		       v[n - 1].sum.seq);
		ok = tear_flip_byte(g.store, v[n - 1].offset + 64 + 20) == 0;
	} else {
		ok = tear_newest_batch(g.store, g.meta, newer_than_flush, NULL, &seq) == 1;
		printf("  tore the newest batch, seq %" PRIu64 "\n", seq);
	}
	free(v);
	return ok && inspect_says("TORN", 0) && recover(&ex, 1, 0, false, "torn (");
}

/* Each case runs in a process of its own: RocksDB's background threads do not
 * survive a fork, so no process that opened a store may fork a writer. */
static bool run_case(const char *name, bool (*fn)(bool), bool arg)
{
	int status = -1;
	pid_t pid;
	bool ok;

	printf("== %s\n", name);
	fflush(stdout);
	it_rm_rf(g.store);
	it_rm_rf(g.meta);
	pid = fork();
	if (pid == 0) {
		ok = fn(arg);
		fflush(stdout);
		_exit(ok ? 0 : 1);
	}
	ok = pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	     WEXITSTATUS(status) == 0;
	printf("%s %s\n", ok ? "ok" : "FAILED", name);
	return ok;
}

static bool summary_case(bool unused)
{
	(void)unused;
	return case_summary();
}

int main(void)
{
	int r = it_begin(&g, "replay_damage");
	bool ok = true;

	if (r)
		return r;
	ok &= run_case("data_byte", case_data_byte, false);
	ok &= run_case("durable_mark", case_data_byte, true);
	ok &= run_case("summary", summary_case, false);
	ok &= run_case("tear", case_tear, false);
	ok &= run_case("torn_summary", case_tear, true);
	return it_end(&g, ok);
}
