/* tests/integration/itest.c — see itest.h. */
#include "itest.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IT_BLOCK_MAGIC 0x4b434c4254534954ull /* "TISTBLCK" */

struct it_block_hdr {
	uint64_t magic;
	uint64_t lba;
	uint64_t tag;
	uint64_t seed;
};

uint64_t it_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t it_rand_below(uint64_t *state, uint64_t n)
{
	return it_rand(state) % n;
}

uint64_t it_rand_range(uint64_t *state, uint64_t lo, uint64_t hi)
{
	return lo + it_rand_below(state, hi - lo + 1);
}

uint64_t it_mix(uint64_t a, uint64_t b)
{
	uint64_t s = a ^ (b * 0xd6e8feb86659fd93ull);

	it_rand(&s);
	return it_rand(&s);
}

uint64_t it_seed_from_env(void)
{
	const char *s = getenv("QUILL_SEED");
	struct timespec ts;

	if (s && *s)
		return strtoull(s, NULL, 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	return it_mix((uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec ^ (uint64_t)getpid()) & 0xffffffffull;
}

unsigned it_env_unsigned(const char *name, unsigned def)
{
	const char *s = getenv(name);
	char *end;
	unsigned long v;

	if (!s || !*s)
		return def;
	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || *end || v > UINT32_MAX)
		return def;
	return (unsigned)v;
}

uint64_t it_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int it_scratch_dir(const char *tag, char *out, size_t outlen)
{
	const char *base = getenv("QUILL_TEST_DIR");
	char probe[PATH_MAX];
	int fd;

	if (!base || !*base)
		base = ".";
	if ((size_t)snprintf(out, outlen, "%s/quill-%s-XXXXXX", base, tag) >= outlen)
		return -ENAMETOOLONG;
	if (!mkdtemp(out))
		return -errno;
	snprintf(probe, sizeof(probe), "%s/odirect-probe", out);
	fd = open(probe, O_CREAT | O_RDWR | O_DIRECT, 0600);
	if (fd < 0) {
		int err = errno;

		it_rm_rf(out);
		if (err == EINVAL) {
			printf("SKIP: %s does not support O_DIRECT (tmpfs?); "
			       "set QUILL_TEST_DIR to a directory on a disk filesystem\n", base);
			return IT_SKIP;
		}
		return -err;
	}
	close(fd);
	unlink(probe);
	return 0;
}

int it_begin(struct it_env *env, const char *name)
{
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	env->name = name;
	env->seed = it_seed_from_env();
	printf("%s: seed %" PRIu64 " (QUILL_SEED=%" PRIu64 " reproduces)\n", name, env->seed,
	       env->seed);
	rc = it_scratch_dir(name, env->dir, sizeof(env->dir));
	if (rc == IT_SKIP)
		return IT_SKIP;
	if (rc < 0) {
		printf("FAIL %s: scratch directory: %s\n", name, strerror(-rc));
		return 1;
	}
	snprintf(env->store, sizeof(env->store), "%s/store.img", env->dir);
	snprintf(env->meta, sizeof(env->meta), "%s/meta", env->dir);
	return 0;
}

int it_end(const struct it_env *env, bool ok)
{
	if (!ok) {
		printf("%s: FAILED with seed %" PRIu64 "; store kept in %s\n", env->name, env->seed,
		       env->dir);
		return 1;
	}
	if (it_env_unsigned("QUILL_KEEP", 0))
		printf("%s: store kept in %s\n", env->name, env->dir);
	else
		it_rm_rf(env->dir);
	printf("%s: PASS\n", env->name);
	return 0;
}

void it_rm_rf(const char *path)
{
	testutil_rm_tree(path);
}

static void fill_pattern(uint64_t *words, size_t n, uint64_t seed, uint64_t lba, uint64_t tag)
{
	uint64_t s = it_mix(it_mix(seed, lba), tag);

	for (size_t i = 0; i < n; i++)
		words[i] = it_rand(&s);
}

void it_block_fill(void *buf, uint64_t seed, uint64_t lba, uint64_t tag)
{
	struct it_block_hdr h = { IT_BLOCK_MAGIC, lba, tag, seed };
	uint64_t *w = buf;

	memcpy(buf, &h, sizeof(h));
	fill_pattern(w + 4, ENGINE_BLOCK_SIZE / 8 - 4, seed, lba, tag);
}

enum it_block_kind it_block_check(const void *buf, uint64_t seed, uint64_t lba, uint64_t *tag)
{
	uint64_t want[ENGINE_BLOCK_SIZE / 8];
	struct it_block_hdr h;
	const uint64_t *w = buf;
	bool zero = true;

	*tag = 0;
	for (size_t i = 0; i < ENGINE_BLOCK_SIZE / 8 && zero; i++)
		zero = w[i] == 0;
	if (zero)
		return IT_BLOCK_ZERO;
	memcpy(&h, buf, sizeof(h));
	if (h.magic != IT_BLOCK_MAGIC || h.lba != lba || h.seed != seed)
		return IT_BLOCK_BAD;
	*tag = h.tag;
	fill_pattern(want, ENGINE_BLOCK_SIZE / 8 - 4, seed, lba, h.tag);
	if (memcmp(w + 4, want, ENGINE_BLOCK_SIZE - sizeof(h)) != 0)
		return IT_BLOCK_BAD;
	return IT_BLOCK_DATA;
}

void it_block_describe(const void *buf, char *out, size_t outlen)
{
	struct it_block_hdr h;

	memcpy(&h, buf, sizeof(h));
	if (h.magic == IT_BLOCK_MAGIC)
		snprintf(out, outlen, "header says lba %" PRIu64 " tag %" PRIu64 " seed %" PRIu64
			 "%s", h.lba, h.tag, h.seed, " (pattern checked separately)");
	else
		snprintf(out, outlen, "no block header (first words %016" PRIx64 " %016" PRIx64 ")",
			 h.magic, h.lba);
}

void *it_alloc(size_t len)
{
	void *p = NULL;

	if (len == 0)
		len = ENGINE_BLOCK_SIZE;
	if (posix_memalign(&p, ENGINE_BLOCK_SIZE, len) != 0) {
		fprintf(stderr, "out of memory (%zu bytes)\n", len);
		exit(2);
	}
	memset(p, 0, len);
	return p;
}

struct it_done {
	bool done;
	int res;
};

static void it_done_cb(void *arg, int res)
{
	struct it_done *d = arg;

	d->res = res;
	d->done = true;
}

static int it_finish(struct engine *eng, int rc, struct it_done *d)
{
	if (rc < 0)
		return rc;
	rc = engine_wait(eng, &d->done);
	if (rc < 0)
		return rc;
	return d->res;
}

int it_read(struct engine *eng, struct engine_volume *vol, uint64_t lba, uint32_t n, void *buf)
{
	struct it_done d = { 0 };

	return it_finish(eng, engine_read(vol, lba, n, buf, it_done_cb, &d), &d);
}

int it_write(struct engine *eng, struct engine_volume *vol, uint64_t lba, uint32_t n,
	     const void *buf, unsigned flags)
{
	struct it_done d = { 0 };

	return it_finish(eng, engine_write(vol, lba, n, buf, flags, it_done_cb, &d), &d);
}

int it_trim(struct engine *eng, struct engine_volume *vol, uint64_t lba, uint64_t n)
{
	struct it_done d = { 0 };

	return it_finish(eng, engine_trim(vol, lba, n, 0, it_done_cb, &d), &d);
}

int it_volume_create(struct engine *eng, const char *name, uint64_t size, unsigned flags)
{
	struct it_done d = { 0 };

	return it_finish(eng, engine_volume_create_async(eng, name, size, flags, it_done_cb, &d),
			 &d);
}

int it_flush(struct engine *eng)
{
	struct it_done d = { 0 };

	return it_finish(eng, engine_flush(eng, it_done_cb, &d), &d);
}

void it_print_stats(const char *prefix, const struct engine_stats *st)
{
	printf("%ssegments %u total %u free %u open (size %u), live %" PRIu64 " used %" PRIu64
	       " blocks, gc runs %" PRIu64 " moved %" PRIu64 " freed %" PRIu64
	       ", checkpoints %" PRIu64 " (seq %" PRIu64 "), replayed %" PRIu64 " torn %" PRIu64 "\n",
	       prefix, st->segments_total, st->segments_free, st->segments_open, st->segment_size,
	       st->live_blocks, st->used_blocks, st->gc_runs, st->gc_blocks_moved,
	       st->gc_segments_freed, st->checkpoints, st->last_checkpoint_seq,
	       st->replayed_batches, st->torn_batches);
}
