/* tests/integration/rebuild_engine.c — the metadata rebuilt from the store alone.
 *
 * Each case builds a store, reads back everything a user can see (every block of
 * every volume and snapshot), throws the RocksDB directory away and opens the store
 * with rebuild_meta: everything must read the same, and nothing else may exist.
 *   trim_gc_delete: writes, a trim whose slot the cleaner empties while older blocks
 *                   it hides are still on disk, a deleted volume (issue 9, item 3):
 *                   the trimmed range reads zeros, the deleted volume is absent.
 *   layers:         snapshots, a clone, a grow and a shrink, a snapshot merged into
 *                   its child by snap rm, a snapshot dropped, a rollback, a 4Kn
 *                   volume (its sector size is compared like the sizes).
 *   kill9:          a child writes, flushes, snapshots, then is killed with SIGKILL;
 *                   the rebuild holds every flushed write.
 * The catalog that engine_catalog_scan() reports (quill-inspect --catalog) is
 * checked against the rebuilt one in each case.
 *
 * Env: QUILL_SEED, QUILL_TEST_DIR, QUILL_KEEP=1. Exit 0 pass, 1 failure, 77 skip.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/engine.h"
#include "itest.h"

#define SEG_SIZE (256u << 10) /* 64 blocks: a test reaches many slots quickly */
#define STORE_SIZE (65 * IT_MIB)
#define BLK ENGINE_BLOCK_SIZE

static struct it_env env;
static struct engine *eng;
static unsigned failures;

#define CHECK(cond, ...)                                                   \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                      \
			fputc('\n', stderr);                               \
			failures++;                                        \
		}                                                          \
	} while (0)

static int open_store(bool rebuild)
{
	struct engine_opts o;

	engine_opts_init(&o);
	o.store_path = env.store;
	o.meta_path = env.meta;
	o.store_size = STORE_SIZE;
	o.segment_size = SEG_SIZE;
	o.format = !rebuild;
	o.rebuild_meta = rebuild;
	o.checkpoint_ms = 100000; /* checkpoints when the test asks */
	return engine_open(&o, &eng);
}

static void fresh_store(void)
{
	engine_close(eng);
	eng = NULL;
	unlink(env.store);
	it_rm_rf(env.meta);
	if (open_store(false) < 0) {
		fprintf(stderr, "cannot create the store\n");
		exit(1);
	}
}

static struct engine_volume *vopen(const char *name)
{
	struct engine_volume *v = NULL;
	int r = engine_volume_open(eng, name, &v);

	CHECK(r == 0, "open %s: %s", name, strerror(-r));
	return r == 0 ? v : NULL;
}

static void write_tag(const char *name, uint64_t lba, uint32_t n, uint64_t tag)
{
	struct engine_volume *v = vopen(name);
	uint8_t *buf = it_alloc((size_t)n * BLK);
	int r;

	if (!v)
		return;
	for (uint32_t i = 0; i < n; i++)
		it_block_fill(buf + (size_t)i * BLK, env.seed, lba + i, tag);
	r = it_write(eng, v, lba, n, buf, 0);
	CHECK(r == 0, "write %s %llu+%u: %s", name, (unsigned long long)lba, n, strerror(-r));
	engine_volume_close(v);
	free(buf);
}

static void trim(const char *name, uint64_t lba, uint64_t n)
{
	struct engine_volume *v = vopen(name);
	int r;

	if (!v)
		return;
	r = it_trim(eng, v, lba, n);
	CHECK(r == 0, "trim %s: %s", name, strerror(-r));
	engine_volume_close(v);
}

/* What a user sees: every block of every volume and snapshot, in one buffer each. */
struct image {
	char name[ENGINE_SNAP_SPEC_MAX + 1];
	uint64_t size;
	uint32_t sector_size;
	uint8_t *data;
};

struct view {
	struct image img[32];
	unsigned n;
};

static void capture_one(struct view *v, const char *name, uint64_t size, uint32_t sector)
{
	struct engine_volume *h = vopen(name);
	struct image *im = &v->img[v->n++];

	snprintf(im->name, sizeof(im->name), "%s", name);
	im->size = size;
	im->sector_size = sector;
	im->data = it_alloc(size);
	if (!h)
		return;
	for (uint64_t off = 0; off < size; off += 256 * BLK) {
		uint32_t n = (uint32_t)((size - off < 256 * BLK ? size - off : 256 * BLK) / BLK);
		int r = it_read(eng, h, off / BLK, n, im->data + off);

		CHECK(r == 0, "read %s at %llu: %s", name, (unsigned long long)off, strerror(-r));
	}
	engine_volume_close(h);
}

struct snap_walk {
	struct view *v;
	const char *vol;
};

static int capture_snap(const struct engine_snap_info *s, void *arg)
{
	struct snap_walk *w = arg;
	char spec[ENGINE_SNAP_SPEC_MAX + 1];

	snprintf(spec, sizeof(spec), "%s@%s", w->vol, s->name);
	capture_one(w->v, spec, s->size, s->sector_size);
	return 0;
}

static int capture_vol(const struct engine_volume_info *info, void *arg)
{
	struct snap_walk w = { .v = arg, .vol = info->name };

	capture_one(arg, info->name, info->size, info->sector_size);
	return engine_snap_list(eng, info->name, capture_snap, &w);
}

static void capture(struct view *v)
{
	memset(v, 0, sizeof(*v));
	engine_volume_list(eng, capture_vol, v);
}

static void view_free(struct view *v)
{
	for (unsigned i = 0; i < v->n; i++)
		free(v->img[i].data);
	v->n = 0;
}

static void compare(const struct view *before, const struct view *after)
{
	CHECK(before->n == after->n, "%u volumes and snapshots before, %u after the rebuild",
	      before->n, after->n);
	for (unsigned i = 0; i < before->n && i < after->n; i++) {
		const struct image *a = &before->img[i], *b = &after->img[i];

		CHECK(strcmp(a->name, b->name) == 0, "#%u: %s before, %s after", i, a->name,
		      b->name);
		CHECK(a->size == b->size, "%s: %llu bytes before, %llu after", a->name,
		      (unsigned long long)a->size, (unsigned long long)b->size);
		CHECK(a->sector_size == b->sector_size, "%s: %u-byte sectors before, %u after",
		      a->name, a->sector_size, b->sector_size);
		for (uint64_t off = 0; off < a->size && off < b->size; off += BLK)
			if (memcmp(a->data + off, b->data + off, BLK)) {
				char d1[96], d2[96];

				it_block_describe(a->data + off, d1, sizeof(d1));
				it_block_describe(b->data + off, d2, sizeof(d2));
				CHECK(0, "%s block %llu: %s before, %s after the rebuild", a->name,
				      (unsigned long long)(off / BLK), d1, d2);
				break;
			}
	}
}

static int count_layer(const struct engine_layer_info *l, void *arg)
{
	(void)l;
	(*(unsigned *)arg)++;
	return 0;
}

/* Captures, drops RocksDB, rebuilds, compares. */
static void rebuild_and_compare(const char *what)
{
	struct view before, after;
	unsigned scanned = 0;
	int r;

	capture(&before);
	engine_close(eng);
	eng = NULL;
	r = engine_catalog_scan(env.store, count_layer, &scanned);
	CHECK(r == 0, "%s: catalog scan: %s", what, strerror(-r));
	it_rm_rf(env.meta);
	r = open_store(true);
	CHECK(r == 0, "%s: rebuild: %s", what, strerror(-r));
	if (r < 0)
		exit(it_end(&env, false));
	capture(&after);
	compare(&before, &after);
	CHECK(scanned == before.n, "%s: the catalog scan shows %u layers, a user sees %u", what,
	      scanned, before.n);
	/* and the rebuilt metadata is a normal one: a plain reopen reads the same */
	engine_close(eng);
	r = open_store(false);
	CHECK(r == 0, "%s: reopen after the rebuild: %s", what, strerror(-r));
	if (r == 0) {
		view_free(&after);
		capture(&after);
		compare(&before, &after);
	}
	view_free(&before);
	view_free(&after);
	printf("%s: %s\n", what, failures ? "FAILED" : "ok");
}

static bool reads_zeros(const char *name, uint64_t lba, uint32_t n)
{
	struct engine_volume *v = vopen(name);
	uint8_t *buf = it_alloc((size_t)n * BLK);
	bool zero = true;

	if (!v) {
		free(buf);
		return false;
	}
	CHECK(it_read(eng, v, lba, n, buf) == 0, "read %s", name);
	for (size_t i = 0; i < (size_t)n * BLK; i++)
		zero &= buf[i] == 0;
	engine_volume_close(v);
	free(buf);
	return zero;
}

/* ---- the cases ---- */

static void case_trim_gc_delete(void)
{
	struct engine_volume_info info;
	struct engine_stats st;

	fresh_store();
	CHECK(engine_volume_create(eng, "v1", 8 * IT_MIB) == 0, "create v1");
	CHECK(engine_volume_create(eng, "v2", IT_MIB) == 0, "create v2");
	/* 10 slots of v1's data, all live but what the trim hides */
	write_tag("v1", 0, 630, 1);
	write_tag("v2", 0, 100, 1);
	CHECK(it_flush(eng) == 0, "flush");
	trim("v1", 100, 20);
	/* the trim lands in the slot that holds the last of those writes; overwriting
	 * them leaves it with nothing live but the trim, while the slot of lbas 100..119
	 * (mostly live) stays: without the trim, a rebuild would read its old data */
	for (int round = 0; round < 4; round++)
		write_tag("v1", 500, 130, 2 + (uint64_t)round);
	CHECK(it_flush(eng) == 0, "flush");
	/* the checkpoint frees the empty slots; one more free slot makes the cleaner
	 * take the emptiest: the trim's (it carries the trim into a TOMB block) */
	CHECK(engine_checkpoint(eng) == 0, "checkpoint");
	engine_get_stats(eng, &st);
	CHECK(engine_gc(eng, st.segments_free + 1) >= 0, "gc");
	CHECK(engine_checkpoint(eng) == 0, "checkpoint");
	engine_get_stats(eng, &st);
	CHECK(st.gc_runs > 0, "the cleaner did not run");
	CHECK(engine_volume_delete(eng, "v2") == 0, "delete v2");
	CHECK(reads_zeros("v1", 100, 20), "trimmed range before the rebuild");
	rebuild_and_compare("trim_gc_delete");
	CHECK(reads_zeros("v1", 100, 20), "the trimmed range reads data after the rebuild");
	CHECK(engine_volume_info(eng, "v2", &info) == -ENOENT, "the deleted volume is back");
}

static void case_layers(void)
{
	struct engine_volume_info info;

	fresh_store();
	CHECK(engine_volume_create(eng, "base", 4 * IT_MIB) == 0, "create base");
	write_tag("base", 0, 300, 1);
	CHECK(engine_snap_create(eng, "base", "s1") == 0, "snap s1");
	write_tag("base", 100, 100, 2);
	trim("base", 250, 10);
	CHECK(engine_snap_create(eng, "base", "s2") == 0, "snap s2");
	write_tag("base", 150, 100, 3);
	CHECK(engine_clone(eng, "base@s1", "c") == 0, "clone");
	write_tag("c", 0, 50, 4);
	trim("c", 60, 5);
	CHECK(engine_volume_resize(eng, "c", 2 * IT_MIB) == 0, "shrink c");
	CHECK(engine_volume_resize(eng, "base", 6 * IT_MIB) == 0, "grow base");
	write_tag("base", 1400, 10, 5);
	CHECK(engine_snap_create(eng, "base", "s3") == 0, "snap s3");
	write_tag("base", 0, 10, 6);
	/* s2 is read by the head only: merged into it; s3 likewise */
	CHECK(engine_snap_delete(eng, "base", "s2") == 0, "snap rm s2 (merge)");
	CHECK(engine_snap_delete(eng, "base", "s3") == 0, "snap rm s3 (merge)");
	CHECK(it_volume_create(eng, "r", IT_MIB, ENGINE_CREATE_SECTOR_4K) == 0, "create r (4Kn)");
	write_tag("r", 0, 100, 7);
	CHECK(engine_snap_create(eng, "r", "rs") == 0, "snap rs");
	write_tag("r", 50, 100, 8);
	CHECK(engine_snap_rollback(eng, "r", "rs", false) == 0, "rollback");
	CHECK(engine_snap_create(eng, "r", "gone") == 0, "snap gone");
	CHECK(engine_snap_delete(eng, "r", "gone") == 0, "snap rm gone (merge)");
	CHECK(engine_volume_create(eng, "e", IT_MIB) == 0, "create e (never written)");
	CHECK(engine_snap_create(eng, "e", "es") == 0, "snap es");
	CHECK(engine_snap_create(eng, "e", "drop") == 0, "snap drop");
	write_tag("e", 5, 5, 9);
	CHECK(engine_checkpoint(eng) == 0, "checkpoint");
	CHECK(engine_gc(eng, 1000) >= 0, "gc");
	rebuild_and_compare("layers");
	CHECK(engine_volume_info(eng, "r", &info) == 0 && info.sector_size == 4096,
	      "r is not 4Kn after the rebuild");
}

/* The child writes, flushes, snapshots, writes and flushes again, says so on the
 * pipe, and keeps writing until it is killed. */
static void kill9_child(int fd)
{
	char c = 1;

	if (open_store(false) < 0)
		_exit(2);
	if (engine_volume_create(eng, "k", 4 * IT_MIB) < 0)
		_exit(2);
	write_tag("k", 0, 400, 1);
	trim("k", 10, 10);
	if (it_flush(eng) < 0 || engine_snap_create(eng, "k", "ks") < 0)
		_exit(2);
	write_tag("k", 200, 300, 2);
	if (it_flush(eng) < 0 || write(fd, &c, 1) != 1)
		_exit(2);
	for (uint64_t tag = 3;; tag++)
		write_tag("k", 600 + tag % 200, 50, tag);
}

static void case_kill9(void)
{
	struct view after;
	int fds[2];
	pid_t pid;
	char c;

	engine_close(eng);
	eng = NULL;
	unlink(env.store);
	it_rm_rf(env.meta);
	if (pipe(fds) < 0 || (pid = fork()) < 0) {
		CHECK(0, "fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		close(fds[0]);
		kill9_child(fds[1]);
	}
	close(fds[1]);
	CHECK(read(fds[0], &c, 1) == 1, "the child did not get to its flush");
	usleep(20000);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(fds[0]);
	it_rm_rf(env.meta);
	CHECK(open_store(true) == 0, "rebuild after kill -9");
	if (!eng)
		return;
	capture(&after);
	CHECK(after.n == 2, "%u volumes and snapshots after the rebuild, expected 2", after.n);
	for (unsigned i = 0; i < after.n; i++) {
		bool snap = strchr(after.img[i].name, '@') != NULL;

		for (uint64_t lba = 0; lba < 600; lba++) {
			uint64_t tag = 0, want = lba < 400 ? 1 : 0;
			enum it_block_kind k = it_block_check(after.img[i].data + lba * BLK,
							      env.seed, lba, &tag);

			if (lba >= 10 && lba < 20)
				want = 0;
			if (!snap && lba >= 200 && lba < 500)
				want = 2;
			CHECK(want ? k == IT_BLOCK_DATA && tag == want : k == IT_BLOCK_ZERO,
			      "%s lba %llu: kind %d tag %llu, expected tag %llu", after.img[i].name,
			      (unsigned long long)lba, k, (unsigned long long)tag,
			      (unsigned long long)want);
			if (failures > 20)
				break;
		}
	}
	view_free(&after);
	printf("kill9: %s\n", failures ? "FAILED" : "ok");
}

int main(void)
{
	int r = it_begin(&env, "rebuild_engine");

	if (r)
		return r;
	case_kill9(); /* first: the child must not inherit RocksDB's threads' locks */
	case_trim_gc_delete();
	case_layers();
	engine_close(eng);
	return it_end(&env, failures == 0);
}
