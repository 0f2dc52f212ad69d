/* tests/integration/gc_engine.c — the cleaner keeps a nearly full store writable.
 *
 * Phase 1: a 16 MiB volume on a store of 24 one-MiB slots (plus the 1 MiB header
 *   area) is overwritten 6 times its size by sequential and random writes of 1..128
 *   blocks, with trims and verifying reads in flight (QD 16). The automatic cleaner
 *   must keep it going: any write error fails. Every block is self-describing
 *   (itest.h) and a shadow map of tags says what each block must hold. All data is
 *   verified, the engine is reopened and verified again; gc_segments_freed > 0.
 * Phase 2: a second, thin 64 MiB volume is written until a write fails; the error
 *   must be -ENOSPC, and nothing written before may be damaged.
 * Phase 3: half of the second volume is trimmed and engine_gc() run: writes succeed
 *   again. Then the second volume is deleted, engine_gc() frees its slots, and the
 *   first volume takes another full overwrite; verified, reopened, verified.
 *
 * Env: QUILL_SEED, QUILL_TEST_DIR, QUILL_KEEP=1. Exit 0 pass, 1 failure, 77 skip.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "itest.h"

#define VOL_A "gc-a"
#define VOL_B "gc-b"
#define A_BLOCKS 4096u                /* 16 MiB */
#define B_BYTES (64 * IT_MIB)         /* thin, larger than the store */
#define SEG_SIZE (1u << 20)
#define STORE_SIZE (25 * IT_MIB)      /* header area + 24 slots */
#define OVERWRITES 6u
#define QD 16u
#define MAX_IO 128u
#define FILL_IO 32u
#define FILL_QD 4u
#define MAX_REPORTS 20u
#define WATCHDOG_S 150u /* per phase */

enum io_kind { IO_READ, IO_WRITE, IO_TRIM };

/* A volume under test and what each of its blocks must hold. */
struct vol {
	const char *name;
	struct engine_volume *h;
	uint32_t nblocks;
	uint64_t seed;     /* block contents: it_block_fill(seed, lba, tag) */
	uint32_t *shadow;  /* tag of the last successful write, 0 = zeros */
	uint32_t *alt;     /* tag of a failed write that may or may not have landed */
	uint8_t *busy;     /* an op in flight covers the block */
};

struct run {
	struct engine *eng;
	unsigned inflight;
	unsigned failures;
	unsigned enospc;       /* writes that failed with -ENOSPC */
	int other_err;         /* first error that was not -ENOSPC */
	bool enospc_ok;        /* -ENOSPC is expected (phase 2) */
	uint32_t next_tag;
	uint64_t written;      /* blocks written successfully */
};

struct gio {
	struct run *run;
	struct vol *v;
	enum io_kind kind;
	uint32_t lba;
	uint32_t n;
	uint32_t tag;
	void *buf;
};

static struct it_env g;

static const char *volatile g_phase = "start";

static void on_alarm(int sig)
{
	static const char msg[] = "FAIL gc_engine: watchdog expired (engine hung?) in phase: ";

	(void)sig;
	if (write(1, msg, sizeof(msg) - 1) < 0 ||
	    write(1, g_phase, strlen(g_phase)) < 0 ||
	    write(1, "\n", 1) < 0)
		_exit(1);
	_exit(1);
}

static void phase(const char *name)
{
	g_phase = name;
	alarm(WATCHDOG_S);
	printf("== %s\n", name);
}

static void fail(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct run *r, const char *fmt, ...)
{
	va_list ap;

	if (r->failures++ < MAX_REPORTS) {
		printf("FAIL ");
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf("\n");
	}
}

/* ---- block checks ---- */

static void check_block(struct run *r, const struct vol *v, uint32_t lba, const void *buf)
{
	uint64_t tag;
	enum it_block_kind k = it_block_check(buf, v->seed, lba, &tag);

	if (k == IT_BLOCK_BAD) {
		char d[128];

		it_block_describe(buf, d, sizeof(d));
		fail(r, "%s lba %u: expected tag %u, found garbage (%s)", v->name, lba,
		     v->shadow[lba], d);
		return;
	}
	if (tag == v->shadow[lba])
		return;
	if (v->alt[lba] && tag == v->alt[lba]) {
		/* a failed write that landed after all: that is now the content */
		v->shadow[lba] = v->alt[lba];
		return;
	}
	fail(r, "%s lba %u: expected %s%u%s, found %s%" PRIu64, v->name, lba,
	     v->shadow[lba] ? "tag " : "zeros (tag ", v->shadow[lba], v->shadow[lba] ? "" : ")",
	     tag ? "tag " : "zeros, tag ", tag);
}

/* ---- asynchronous ops with a bounded queue ---- */

static void poll_once(struct run *r)
{
	int rc = engine_poll(r->eng, -1);

	if (rc < 0) {
		fail(r, "engine_poll: %s", strerror(-rc));
		exit(1);
	}
}

static void drain(struct run *r)
{
	while (r->inflight)
		poll_once(r);
}

static void gio_done(void *arg, int res)
{
	struct gio *io = arg;
	struct run *r = io->run;
	struct vol *v = io->v;

	r->inflight--;
	memset(v->busy + io->lba, 0, io->n);
	if (res < 0) {
		if (res == -ENOSPC && r->enospc_ok && io->kind == IO_WRITE) {
			r->enospc++;
		} else {
			if (!r->other_err)
				r->other_err = res;
			fail(r, "%s %s lba %u+%u: %s", v->name,
			     io->kind == IO_READ ? "read" : io->kind == IO_WRITE ? "write" : "trim",
			     io->lba, io->n, strerror(-res));
		}
		if (io->kind == IO_WRITE)
			for (uint32_t i = 0; i < io->n; i++)
				v->alt[io->lba + i] = io->tag;
	} else if (io->kind == IO_WRITE) {
		for (uint32_t i = 0; i < io->n; i++) {
			v->shadow[io->lba + i] = io->tag;
			v->alt[io->lba + i] = 0;
		}
		r->written += io->n;
	} else if (io->kind == IO_TRIM) {
		memset(v->shadow + io->lba, 0, (size_t)io->n * sizeof(*v->shadow));
		memset(v->alt + io->lba, 0, (size_t)io->n * sizeof(*v->alt));
	} else {
		for (uint32_t i = 0; i < io->n; i++)
			check_block(r, v, io->lba + i,
				    (char *)io->buf + (size_t)i * ENGINE_BLOCK_SIZE);
	}
	free(io->buf);
	free(io);
}

static bool range_busy(const struct vol *v, uint32_t lba, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (v->busy[lba + i])
			return true;
	return false;
}

/* Submits one op once fewer than qd are in flight and nothing in flight overlaps it. */
static void submit(struct run *r, struct vol *v, enum io_kind kind, uint32_t lba, uint32_t n,
		   unsigned qd)
{
	struct gio *io = calloc(1, sizeof(*io));
	int rc;

	if (!io)
		exit(2);
	while (r->inflight >= qd || range_busy(v, lba, n))
		poll_once(r);
	*io = (struct gio){ .run = r, .v = v, .kind = kind, .lba = lba, .n = n };
	if (kind == IO_TRIM) {
		rc = engine_trim(v->h, lba, n, 0, gio_done, io);
	} else {
		io->buf = it_alloc((size_t)n * ENGINE_BLOCK_SIZE);
		if (kind == IO_READ) {
			rc = engine_read(v->h, lba, n, io->buf, gio_done, io);
		} else {
			io->tag = r->next_tag++;
			for (uint32_t i = 0; i < n; i++)
				it_block_fill((char *)io->buf + (size_t)i * ENGINE_BLOCK_SIZE,
					      v->seed, lba + i, io->tag);
			rc = engine_write(v->h, lba, n, io->buf, 0, gio_done, io);
		}
	}
	if (rc < 0) {
		/* the callback will not run */
		fail(r, "%s submit %d lba %u+%u: %s", v->name, kind, lba, n, strerror(-rc));
		free(io->buf);
		free(io);
		return;
	}
	memset(v->busy + lba, 1, n);
	r->inflight++;
}

/* Reads the whole volume and checks every block against the shadow. */
static void verify_all(struct run *r, struct vol *v, const char *when)
{
	unsigned before = r->failures;

	for (uint32_t lba = 0; lba < v->nblocks; lba += MAX_IO)
		submit(r, v, IO_READ, lba, v->nblocks - lba < MAX_IO ? v->nblocks - lba : MAX_IO, QD);
	drain(r);
	printf("   verified %s (%u blocks) %s: %s\n", v->name, v->nblocks, when,
	       r->failures == before ? "ok" : "FAILED");
}

/* ---- workloads ---- */

static void seq_pass(struct run *r, struct vol *v, uint64_t *rng)
{
	for (uint32_t lba = 0; lba < v->nblocks;) {
		uint32_t n = (uint32_t)it_rand_range(rng, 1, MAX_IO);

		if (n > v->nblocks - lba)
			n = v->nblocks - lba;
		submit(r, v, IO_WRITE, lba, n, QD);
		lba += n;
	}
}

/* Random ops until `blocks` more blocks were submitted for writing. */
static void random_pass(struct run *r, struct vol *v, uint64_t *rng, uint64_t blocks)
{
	uint64_t submitted = 0;

	while (submitted < blocks) {
		unsigned pick = (unsigned)it_rand_below(rng, 100);
		uint32_t n = it_rand_below(rng, 2) ? 1 : (uint32_t)it_rand_range(rng, 2, MAX_IO);
		uint32_t lba = (uint32_t)it_rand_below(rng, v->nblocks - n + 1);
		enum io_kind kind = pick < 15 ? IO_READ : pick < 20 ? IO_TRIM : IO_WRITE;

		submit(r, v, kind, lba, n, QD);
		if (kind == IO_WRITE)
			submitted += n;
	}
}

/* ---- engine and volumes ---- */

static struct engine *open_engine(bool format)
{
	struct engine_opts o;
	struct engine *eng;
	int rc;

	engine_opts_init(&o);
	o.store_path = g.store;
	o.meta_path = g.meta;
	o.store_size = STORE_SIZE;
	o.format = format;
	o.segment_size = SEG_SIZE;
	o.gc_auto = true;
	rc = engine_open(&o, &eng);
	if (rc < 0) {
		printf("FAIL engine_open: %s (seed %" PRIu64 ")\n", strerror(-rc), g.seed);
		exit(1);
	}
	return eng;
}

static void vol_init(struct vol *v, const char *name, uint32_t nblocks, uint64_t seed)
{
	v->name = name;
	v->nblocks = nblocks;
	v->seed = seed;
	v->shadow = calloc(nblocks, sizeof(*v->shadow));
	v->alt = calloc(nblocks, sizeof(*v->alt));
	v->busy = calloc(nblocks, 1);
	if (!v->shadow || !v->alt || !v->busy)
		exit(2);
}

static void vol_free(struct vol *v)
{
	free(v->shadow);
	free(v->alt);
	free(v->busy);
}

static void vol_open(struct run *r, struct vol *v)
{
	int rc = engine_volume_open(r->eng, v->name, &v->h);

	if (rc < 0) {
		printf("FAIL engine_volume_open %s: %s\n", v->name, strerror(-rc));
		exit(1);
	}
}

static void vol_close(struct vol *v)
{
	engine_volume_close(v->h);
	v->h = NULL;
}

static void reopen(struct run *r, struct vol *v)
{
	vol_close(v);
	engine_close(r->eng);
	r->eng = open_engine(false);
	vol_open(r, v);
}

static struct engine_stats stats(struct run *r, const char *prefix)
{
	struct engine_stats st;

	engine_get_stats(r->eng, &st);
	it_print_stats(prefix, &st);
	return st;
}

/* ---- phases ---- */

static void phase_overwrite(struct run *r, struct vol *a, uint64_t *rng)
{
	struct engine_stats st;
	unsigned pass = 0;

	phase("phase 1: overwrite a 16 MiB volume 6x on a 24 MiB store");
	while (r->written < (uint64_t)OVERWRITES * a->nblocks && r->failures == 0) {
		if (pass % 3 == 0)
			seq_pass(r, a, rng);
		else
			random_pass(r, a, rng, a->nblocks);
		drain(r);
		printf("   pass %u (%s): %" PRIu64 " blocks written so far\n", pass,
		       pass % 3 == 0 ? "sequential" : "random", r->written);
		pass++;
	}
	verify_all(r, a, "after the overwrites");
	st = stats(r, "   stats: ");
	if (st.gc_segments_freed == 0)
		fail(r, "gc_segments_freed is 0 after writing %" PRIu64 " blocks", r->written);
	reopen(r, a);
	verify_all(r, a, "after reopening");
	stats(r, "   stats after reopen: ");
}

/* Fills a second volume until -ENOSPC, then checks that nothing was damaged. */
static void phase_fill(struct run *r, struct vol *a, struct vol *b)
{
	uint64_t limit = 2 * STORE_SIZE / ENGINE_BLOCK_SIZE;
	uint32_t lba = 0;
	int rc;

	phase("phase 2: fill the store with a second volume until -ENOSPC");
	rc = engine_volume_create(r->eng, b->name, B_BYTES);
	if (rc < 0) {
		fail(r, "engine_volume_create %s: %s", b->name, strerror(-rc));
		return;
	}
	vol_open(r, b);
	r->enospc_ok = true;
	while (r->enospc == 0 && !r->other_err && lba + FILL_IO <= b->nblocks && lba < limit) {
		submit(r, b, IO_WRITE, lba, FILL_IO, FILL_QD);
		lba += FILL_IO;
	}
	drain(r);
	printf("   %u blocks submitted to %s, %u writes failed with -ENOSPC\n", lba, b->name,
	       r->enospc);
	if (r->enospc == 0)
		fail(r, "no -ENOSPC after %u blocks on a %llu-block store", lba,
		     (unsigned long long)(STORE_SIZE / ENGINE_BLOCK_SIZE));
	stats(r, "   stats when full: ");
	/* More writes on a full store fail cleanly (or succeed if the cleaner found room). */
	submit(r, b, IO_WRITE, lba < b->nblocks ? lba : 0, 1, 1);
	submit(r, a, IO_WRITE, (uint32_t)(r->next_tag % a->nblocks), 1, 1);
	drain(r);
	r->enospc_ok = false;
	verify_all(r, a, "when full");
	verify_all(r, b, "when full");
}

static void phase_recover(struct run *r, struct vol *a, struct vol *b, uint64_t *rng)
{
	struct engine_stats before, after;
	uint64_t written;
	int rc;

	phase("phase 3: trim / delete, engine_gc, write again");
	for (uint32_t lba = 0; lba < b->nblocks / 2; lba += 4096) {
		rc = it_trim(r->eng, b->h, lba, 4096);
		if (rc == -ENOSPC) {
			printf("NOTE trim of %s lba %u+4096 on a full store: -ENOSPC\n", b->name, lba);
			break;
		}
		if (rc < 0)
			fail(r, "trim %s lba %u: %s", b->name, lba, strerror(-rc));
		else
			memset(b->shadow + lba, 0, 4096 * sizeof(*b->shadow));
	}
	rc = engine_gc(r->eng, 4);
	printf("   engine_gc(4) after trimming half of %s: %d\n", b->name, rc);
	if (rc < 0)
		fail(r, "engine_gc: %s", strerror(-rc));
	written = r->written;
	random_pass(r, a, rng, 512);
	drain(r);
	printf("   %" PRIu64 " blocks written to %s after the trim\n", r->written - written, a->name);
	verify_all(r, a, "after the trim");
	verify_all(r, b, "after the trim");

	vol_close(b);
	before = stats(r, "   stats before delete: ");
	rc = engine_volume_delete(r->eng, b->name);
	if (rc < 0)
		fail(r, "engine_volume_delete %s: %s", b->name, strerror(-rc));
	rc = engine_gc(r->eng, before.segments_total / 2);
	printf("   engine_gc(%u) after deleting %s: %d\n", before.segments_total / 2, b->name, rc);
	if (rc < 0)
		fail(r, "engine_gc: %s", strerror(-rc));
	after = stats(r, "   stats after delete + gc: ");
	if (after.segments_free <= before.segments_free)
		fail(r, "deleting %s freed no slot (%u free before, %u after)", b->name,
		     before.segments_free, after.segments_free);

	written = r->written;
	seq_pass(r, a, rng);
	random_pass(r, a, rng, a->nblocks);
	drain(r);
	printf("   %" PRIu64 " blocks written to %s after the delete\n", r->written - written,
	       a->name);
	verify_all(r, a, "after the delete");
	reopen(r, a);
	verify_all(r, a, "after reopening");
	{
		struct engine_volume_info info;

		rc = engine_volume_info(r->eng, b->name, &info);
		if (rc != -ENOENT)
			fail(r, "engine_volume_info of deleted %s: %d, expected -ENOENT", b->name, rc);
	}
	stats(r, "   final stats: ");
}

int main(void)
{
	struct run r = { .next_tag = 1 };
	struct vol a = { 0 }, b = { 0 };
	uint64_t rng, t0 = it_now_ns();
	int rc;

	rc = it_begin(&g, "gc_engine");
	if (rc)
		return rc;
	signal(SIGALRM, on_alarm);
	phase("setup");
	rng = it_mix(g.seed, 0x4743ull);
	vol_init(&a, VOL_A, A_BLOCKS, it_mix(g.seed, 1));
	vol_init(&b, VOL_B, (uint32_t)(B_BYTES / ENGINE_BLOCK_SIZE), it_mix(g.seed, 2));

	r.eng = open_engine(true);
	rc = engine_volume_create(r.eng, VOL_A, (uint64_t)A_BLOCKS * ENGINE_BLOCK_SIZE);
	if (rc < 0) {
		printf("FAIL engine_volume_create %s: %s\n", VOL_A, strerror(-rc));
		return 1;
	}
	vol_open(&r, &a);
	phase_overwrite(&r, &a, &rng);
	if (r.failures == 0)
		phase_fill(&r, &a, &b);
	if (r.failures == 0)
		phase_recover(&r, &a, &b, &rng);
	vol_close(&a);
	if (b.h)
		vol_close(&b);
	engine_close(r.eng);
	vol_free(&a);
	vol_free(&b);

	printf("gc_engine: %" PRIu64 " blocks written, %.1f s\n", r.written,
	       (double)(it_now_ns() - t0) / 1e9);
	if (r.failures)
		printf("gc_engine: %u problems\n", r.failures);
	return it_end(&g, r.failures == 0);
}
