#include "metadata/meta.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>
#include "testutil.h"

static char tmpdir[64];
static char dbpath[128];

static void setup(void)
{
	strcpy(tmpdir, "/tmp/quill-meta-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(dbpath, sizeof(dbpath), "%s/db", tmpdir);
}

static void teardown(void)
{
	testutil_rm_tree(tmpdir);
}

TestSuite(meta, .init = setup, .fini = teardown);

static struct meta *open_db(void)
{
	struct meta *m = NULL;

	cr_assert_eq(meta_open(dbpath, &m), 0);
	cr_assert_not_null(m);
	return m;
}

static void put_str(struct meta *m, const char *k, const char *v, enum meta_durability d)
{
	cr_assert_eq(meta_put(m, k, strlen(k), v, strlen(v), d), 0);
}

static void assert_value(struct meta *m, const char *k, const char *expect)
{
	void *val = NULL;
	size_t vlen = 0;
	int ret = meta_get(m, k, strlen(k), &val, &vlen);

	cr_assert_eq(ret, 0, "get %s: %d", k, ret);
	cr_assert_eq(vlen, strlen(expect), "key %s", k);
	cr_assert_eq(memcmp(val, expect, vlen), 0, "key %s", k);
	free(val);
}

static void assert_absent(struct meta *m, const char *k)
{
	void *val = NULL;
	size_t vlen = 0;

	cr_assert_eq(meta_get(m, k, strlen(k), &val, &vlen), -ENOENT, "key %s", k);
}

/* Runs fn in a child process that then dies without closing anything, as a crash. */
static void in_crashing_child(void (*fn)(void))
{
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		fn();
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: %d", status);
}

Test(meta, put_get_delete)
{
	struct meta *m = open_db();

	put_str(m, "alpha", "one", META_SYNC);
	put_str(m, "beta", "two", META_NOWAL);
	assert_value(m, "alpha", "one");
	assert_value(m, "beta", "two");

	put_str(m, "alpha", "uno", META_NOWAL);
	assert_value(m, "alpha", "uno");

	cr_assert_eq(meta_delete(m, "alpha", 5, META_SYNC), 0);
	cr_assert_eq(meta_delete(m, "beta", 4, META_NOWAL), 0);
	assert_absent(m, "alpha");
	assert_absent(m, "beta");
	meta_close(m);
}

Test(meta, missing_key_is_enoent)
{
	struct meta *m = open_db();

	assert_absent(m, "nope");
	cr_assert_eq(meta_delete(m, "nope", 4, META_SYNC), 0, "deleting an absent key is fine");
	meta_close(m);
}

Test(meta, empty_value_and_binary_key)
{
	struct meta *m = open_db();
	const unsigned char key[] = { 0x00, 0xff, 0x00, 0x01 };
	void *val = NULL;
	size_t vlen = 99;

	cr_assert_eq(meta_put(m, key, sizeof(key), "", 0, META_SYNC), 0);
	cr_assert_eq(meta_get(m, key, sizeof(key), &val, &vlen), 0);
	cr_assert_not_null(val);
	cr_assert_eq(vlen, 0);
	free(val);
	cr_assert_eq(meta_get(m, key, 3, &val, &vlen), -ENOENT, "a key prefix is another key");
	meta_close(m);
}

Test(meta, invalid_durability_is_einval)
{
	struct meta *m = open_db();

	cr_assert_eq(meta_put(m, "k", 1, "v", 1, (enum meta_durability)7), -EINVAL);
	meta_close(m);
}

Test(meta, batch_applies_all_at_commit)
{
	struct meta *m = open_db();
	struct meta_batch *b = NULL;

	put_str(m, "old", "x", META_SYNC);
	cr_assert_eq(meta_batch_create(&b), 0);
	meta_batch_put(b, "k1", 2, "v1", 2);
	meta_batch_put(b, "k2", 2, "v2", 2);
	meta_batch_delete(b, "old", 3);
	meta_batch_put(b, "gone", 4, "v", 1);
	meta_batch_delete(b, "gone", 4); /* later operations win */
	cr_assert_eq(meta_batch_count(b), 5);

	/* Nothing is visible before the commit. */
	assert_absent(m, "k1");
	assert_absent(m, "k2");
	assert_value(m, "old", "x");

	cr_assert_eq(meta_batch_commit(m, b, META_SYNC), 0);
	assert_value(m, "k1", "v1");
	assert_value(m, "k2", "v2");
	assert_absent(m, "old");
	assert_absent(m, "gone");
	meta_batch_destroy(b);
	meta_batch_destroy(NULL);
	meta_close(m);
}

static void commit_batch_then_crash(void)
{
	struct meta *m = NULL;
	struct meta_batch *b = NULL;
	char k[16];

	if (meta_open(dbpath, &m) || meta_batch_create(&b))
		_exit(1);
	for (int i = 0; i < 1000; i++) {
		snprintf(k, sizeof(k), "key%04d", i);
		meta_batch_put(b, k, strlen(k), k, strlen(k));
	}
	if (meta_batch_commit(m, b, META_SYNC))
		_exit(1);
}

Test(meta, synced_batch_survives_crash_whole)
{
	struct meta *m;
	char k[16];

	in_crashing_child(commit_batch_then_crash);
	m = open_db();
	for (int i = 0; i < 1000; i++) {
		snprintf(k, sizeof(k), "key%04d", i);
		assert_value(m, k, k);
	}
	meta_close(m);
}

static void be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

Test(meta, delete_range_is_half_open)
{
	struct meta *m = open_db();
	struct meta_batch *b = NULL;
	unsigned char key[5] = { 'e' }, begin[5] = { 'e' }, end[5] = { 'e' };
	void *val;
	size_t vlen;

	for (uint32_t i = 0; i < 10; i++) {
		be32(key + 1, i);
		cr_assert_eq(meta_put(m, key, sizeof(key), "v", 1, META_NOWAL), 0);
	}
	be32(begin + 1, 3);
	be32(end + 1, 7);
	cr_assert_eq(meta_batch_create(&b), 0);
	meta_batch_delete_range(b, begin, sizeof(begin), end, sizeof(end));
	cr_assert_eq(meta_batch_commit(m, b, META_NOWAL), 0);
	meta_batch_destroy(b);

	for (uint32_t i = 0; i < 10; i++) {
		int expect = (i >= 3 && i < 7) ? -ENOENT : 0;
		int ret;

		be32(key + 1, i);
		ret = meta_get(m, key, sizeof(key), &val, &vlen);
		cr_assert_eq(ret, expect, "key %u: %d", i, ret);
		if (ret == 0)
			free(val);
	}
	meta_close(m);
}

/* Collects the keys the iterator yields, joined with ',' into out. */
static void collect(struct meta *m, const char *prefix, char *out, size_t size)
{
	struct meta_iter *it = NULL;
	size_t n = 0, count = 0;

	out[0] = '\0';
	cr_assert_eq(meta_iter_create(m, prefix, strlen(prefix), &it), 0);
	for (; meta_iter_valid(it); meta_iter_next(it)) {
		size_t klen, vlen;
		const char *k = meta_iter_key(it, &klen);
		const char *v = meta_iter_value(it, &vlen);

		cr_assert_eq(vlen, klen + 1);
		cr_assert_eq(memcmp(v, k, klen), 0, "value belongs to its key");
		n += (size_t)snprintf(out + n, size - n, "%s%.*s", count++ ? "," : "",
				      (int)klen, k);
		cr_assert_lt(n, size);
	}
	cr_assert_eq(meta_iter_status(it), 0);
	meta_iter_next(it); /* harmless at the end */
	cr_assert_not(meta_iter_valid(it));
	meta_iter_destroy(it);
}

Test(meta, prefix_iteration_order_and_bounds)
{
	struct meta *m = open_db();
	const char *keys[] = { "b", "ab", "a", "abc", "aa", "ac", "b0", "", "a\x7f", "a\xff" };
	char got[256], val[8];

	meta_iter_destroy(NULL);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(val, sizeof(val), "%s!", keys[i]);
		/* Half of them only in the memtable, half flushed to an SST. */
		cr_assert_eq(meta_put(m, keys[i], strlen(keys[i]), val, strlen(val),
				      i % 2 ? META_NOWAL : META_SYNC),
			     0);
		if (i == 4)
			cr_assert_eq(meta_flush(m), 0);
	}

	static const struct {
		const char *prefix, *keys;
	} cases[] = {
		{ "a", "a,aa,ab,abc,ac,a\x7f,a\xff" },
		{ "ab", "ab,abc" },
		{ "b", "b,b0" },
		{ "abcd", "" },
		{ "c", "" },
		{ "", ",a,aa,ab,abc,ac,a\x7f,a\xff,b,b0" }, /* the empty key comes first */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		collect(m, cases[i].prefix, got, sizeof(got));
		cr_assert_str_eq(got, cases[i].keys, "prefix \"%s\"", cases[i].prefix);
	}
	meta_close(m);
}

/* Opens the database afresh, checks one key, closes it again. */
static void assert_value_after_reopen(const char *k, const char *expect)
{
	struct meta *m = open_db();

	assert_value(m, k, expect);
	meta_close(m);
}

/* A child opens the database, puts k=v with d, flushes if asked, and crashes. */
static const char *crash_key, *crash_val;
static enum meta_durability crash_durability;
static bool crash_flush;

static void put_then_crash(void)
{
	struct meta *m = NULL;

	if (meta_open(dbpath, &m) || meta_put(m, crash_key, strlen(crash_key), crash_val,
					      strlen(crash_val), crash_durability))
		_exit(1);
	if (crash_flush && meta_flush(m))
		_exit(1);
}

static void crash_after_put(const char *k, const char *v, enum meta_durability d, bool flush)
{
	crash_key = k;
	crash_val = v;
	crash_durability = d;
	crash_flush = flush;
	in_crashing_child(put_then_crash);
}

Test(meta, nowal_survives_close_and_reopen_after_flush)
{
	struct meta *m = open_db();

	put_str(m, "extent", "map", META_NOWAL);
	cr_assert_eq(meta_flush(m), 0);
	meta_close(m);
	assert_value_after_reopen("extent", "map");
}

Test(meta, nowal_survives_crash_after_flush)
{
	crash_after_put("extent", "map", META_NOWAL, true);
	assert_value_after_reopen("extent", "map");
}

Test(meta, sync_write_persists_across_reopen)
{
	struct meta *m = open_db();

	put_str(m, "volume", "vol0", META_SYNC);
	meta_close(m);
	assert_value_after_reopen("volume", "vol0");
}

Test(meta, sync_write_survives_crash)
{
	crash_after_put("volume", "vol0", META_SYNC, false);
	assert_value_after_reopen("volume", "vol0");
}

Test(meta, second_open_in_same_process_is_ebusy)
{
	struct meta *m = open_db(), *m2 = NULL;

	cr_assert_eq(meta_open(dbpath, &m2), -EBUSY);
	cr_assert_null(m2);
	meta_close(m);
	meta_close(NULL);
}

/* The other process opens first and holds the database until told to go: a child
 * forked while this process had RocksDB's threads running could inherit one of their
 * mutexes locked and hang in its own open (seen: PeriodicTaskScheduler). */
Test(meta, second_open_from_another_process_is_ebusy)
{
	int ready[2], go[2], status;
	struct meta *m = NULL;
	char c = 0;
	pid_t pid;

	cr_assert_eq(pipe(ready), 0);
	cr_assert_eq(pipe(go), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct meta *held = NULL;

		c = meta_open(dbpath, &held) == 0 ? 'y' : 'n';
		if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(2);
		_exit(0); /* dies holding it, as a crash: the lock goes with the process */
	}
	cr_assert_eq(read(ready[0], &c, 1), 1);
	cr_assert_eq(c, 'y', "the other process could not open the database");
	cr_assert_eq(meta_open(dbpath, &m), -EBUSY);
	cr_assert_null(m);
	cr_assert_eq(write(go[1], &c, 1), 1);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: %d", status);
	/* and once it is gone, the database opens */
	cr_assert_eq(meta_open(dbpath, &m), 0);
	meta_close(m);
	for (int i = 0; i < 2; i++) {
		close(ready[i]);
		close(go[i]);
	}
}

Test(meta, open_under_a_regular_file_is_enotdir)
{
	struct meta *m = NULL;
	char path[160];
	int fd;

	snprintf(path, sizeof(path), "%s/file", tmpdir);
	fd = open(path, O_CREAT | O_WRONLY, 0644);
	cr_assert_geq(fd, 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/file/db", tmpdir);
	cr_assert_eq(meta_open(path, &m), -ENOTDIR);
	cr_assert_null(m);
}

/* ---- RocksDB errors as -errno, and a full metadata disk ---- */

Test(meta, rocksdb_errors_map_to_errno)
{
	static const struct {
		const char *rocksdb;
		int err;
	} cases[] = {
		{ "IO error: No space left on device: While appending to file: "
		  "/m/db/000010.log: No space left on device", -ENOSPC },
		{ "IO error: No space left on device: While open a file for appending: "
		  "/m/db/000013.log: No space left on device", -ENOSPC },
		{ "IO error: Max allowed space was reached", -ENOSPC },
		{ "IO error: While lock file: /m/db/LOCK: Resource temporarily unavailable",
		  -EBUSY },
		{ "IO error: lock hold by current process, acquire time 1 acquiring thread 2: "
		  "/m/db/LOCK: No locks available", -EBUSY },
		{ "Invalid argument: Column family not found", -EINVAL },
		{ "IO error: Seen error. Skip writing buffer.", -EIO },
		{ "Corruption: block checksum mismatch: stored = 1, computed = 2", -EIO },
		{ "", -EIO },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(meta_errno_of(cases[i].rocksdb), cases[i].err, "'%s': %d, not %d",
			     cases[i].rocksdb, meta_errno_of(cases[i].rocksdb), cases[i].err);
}

Test(meta, writes_no_log_file_of_its_own)
{
	struct meta *m = open_db();
	char path[192];

	put_str(m, "k", "v", META_SYNC);
	meta_close(m);
	/* RocksDB's LOG on a full disk is what aborted quilld (meta_logger.cc) */
	snprintf(path, sizeof(path), "%s/LOG", dbpath);
	cr_assert_neq(access(path, F_OK), 0, "%s exists", path);
}

Test(meta, healthy_database_needs_no_recovery)
{
	struct meta *m = open_db();

	cr_assert_eq(meta_health(m), 0);
	cr_assert_eq(meta_recover(m), 0);
	put_str(m, "k", "v", META_SYNC);
	cr_assert_eq(meta_health(m), 0);
	meta_close(m);
}

/* The suite meta_full puts the database on its own small tmpfs (root only). */
static char fulldir[64];
static char fulldb[128];
static char filler[128];
static bool mounted;

static void full_setup(void)
{
	strcpy(fulldir, "/tmp/quill-metafull-XXXXXX");
	cr_assert_not_null(mkdtemp(fulldir));
	snprintf(fulldb, sizeof(fulldb), "%s/db", fulldir);
	snprintf(filler, sizeof(filler), "%s/filler", fulldir);
	if (mount("tmpfs", fulldir, "tmpfs", 0, "size=4m") < 0) {
		rmdir(fulldir);
		cr_skip_test("cannot mount a small tmpfs to fill (%s): needs root", strerror(errno));
	}
	mounted = true;
}

static void full_teardown(void)
{
	if (mounted)
		umount2(fulldir, MNT_DETACH);
	mounted = false;
	rmdir(fulldir);
}

TestSuite(meta_full, .init = full_setup, .fini = full_teardown);

/* Appends to the filler until the filesystem is full. */
static void fill_disk(void)
{
	static char block[4096];
	int fd = open(filler, O_CREAT | O_WRONLY | O_APPEND, 0644);

	cr_assert_geq(fd, 0);
	while (write(fd, block, sizeof(block)) > 0)
		;
	cr_assert_eq(errno, ENOSPC);
	close(fd);
}

/* Puts until one fails (the WAL's preallocated room runs out first): its -errno. */
static int put_until_error(struct meta *m, enum meta_durability d)
{
	char key[32], val[512] = { 0 };
	int r = 0;

	for (int i = 0; i < 100000 && r == 0; i++) {
		snprintf(key, sizeof(key), "fill%06d", i);
		r = meta_put(m, key, strlen(key), val, sizeof(val), d);
		if (r == 0 && d == META_NOWAL && i % 64 == 63)
			r = meta_flush(m);
	}
	return r;
}

Test(meta_full, full_disk_is_enospc_then_recovers_when_space_returns)
{
	struct meta *m = NULL;

	cr_assert_eq(meta_open(fulldb, &m), 0);
	put_str(m, "before", "kept", META_SYNC);
	fill_disk();
	cr_assert_eq(put_until_error(m, META_SYNC), -ENOSPC);
	cr_assert_eq(meta_health(m), -ENOSPC);
	/* RocksDB takes no write now, and reads go on */
	cr_assert_eq(meta_put(m, "x", 1, "y", 1, META_SYNC), -ENOSPC);
	assert_value(m, "before", "kept");
	/* still full: the reopen may fail, or work and fail on the next write */
	fill_disk();
	if (meta_recover(m) == 0)
		cr_assert_eq(put_until_error(m, META_SYNC), -ENOSPC);
	cr_assert_lt(meta_health(m), 0);

	cr_assert_eq(unlink(filler), 0);
	cr_assert_eq(meta_recover(m), 0);
	cr_assert_eq(meta_health(m), 0);
	put_str(m, "after", "written", META_SYNC);
	meta_close(m);
	m = NULL;
	cr_assert_eq(meta_open(fulldb, &m), 0);
	assert_value(m, "before", "kept");
	assert_value(m, "after", "written");
	meta_close(m);
}

Test(meta_full, nowal_writes_lost_to_a_reopen_fail_the_next_flush)
{
	struct meta *m = NULL;

	cr_assert_eq(meta_open(fulldb, &m), 0);
	fill_disk();
	cr_assert_eq(put_until_error(m, META_SYNC), -ENOSPC);
	cr_assert_eq(unlink(filler), 0);
	cr_assert_eq(meta_recover(m), 0);
	put_str(m, "map", "chunk", META_NOWAL);
	/* a write fails again, and the reopen drops the memtable with "map" in it */
	fill_disk();
	cr_assert_eq(put_until_error(m, META_SYNC), -ENOSPC);
	cr_assert_eq(unlink(filler), 0);
	cr_assert_eq(meta_recover(m), 0);
	cr_assert_eq(meta_flush(m), -EIO, "a flush must not pass off lost writes as durable");
	cr_assert_eq(meta_flush(m), 0);
	meta_close(m);
}

Test(meta_full, a_failed_flush_is_not_reported_again_after_the_reopen)
{
	struct meta *m = NULL;

	cr_assert_eq(meta_open(fulldb, &m), 0);
	put_str(m, "map", "chunk", META_NOWAL);
	fill_disk();
	cr_assert_eq(meta_flush(m), -ENOSPC, "the SST write finds the disk full");
	cr_assert_eq(unlink(filler), 0);
	cr_assert_eq(meta_recover(m), 0);
	/* the caller knows "map" did not land: a retry's flush is not failed for it */
	put_str(m, "map", "chunk again", META_NOWAL);
	cr_assert_eq(meta_flush(m), 0);
	meta_close(m);
	m = NULL;
	cr_assert_eq(meta_open(fulldb, &m), 0);
	assert_value(m, "map", "chunk again");
	meta_close(m);
}
