/* tests/unit/engine/test_snap.c — snapshots, clones, rollback, flatten and diff through
 * the engine's public API: the layer lookup (what reads through to what, zero entries
 * after trims), the liveness rule (a block stays while any layer maps it), and that all
 * of it survives a clean reopen and a crash. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/volspec.h"
#include "engine/engine_internal.h"
#include "engine_fixture.h"
#include "testutil.h"

TestSuite(snap, .init = setup, .fini = teardown);

static void snap(const char *vol, const char *name)
{
	int r = engine_snap_create(eng, vol, name);

	cr_assert_eq(r, 0, "snap create %s@%s: %s", vol, name, strerror(-r));
}

/* Each test but the crash one (which forks first) starts with an engine and volume v. */
static struct engine_volume *new_engine_and_volume(void)
{
	open_engine();
	return create_and_open("v", VOL_SIZE);
}

static uint64_t live(void)
{
	return stats().live_blocks;
}

static int sum_data(const struct engine_extent *ext, void *arg)
{
	uint64_t *blocks = arg;

	if (ext->data)
		*blocks += ext->length / BLK;
	return 0;
}

/* A volume's "written" figure equals what a diff from nothing finds. */
static void expect_written_matches_diff(const char *name)
{
	uint64_t blocks = 0;

	cr_assert_eq(engine_diff(eng, NULL, name, sum_data, &blocks), 0);
	cr_assert_eq(info(name).mapped_blocks, blocks, "%s: info says %llu, diff %llu", name,
		     (unsigned long long)info(name).mapped_blocks, (unsigned long long)blocks);
}

Test(snap, snapshot_keeps_the_old_content_and_the_volume_moves_on)
{
	struct engine_volume *vol = new_engine_and_volume(), *s;
	uint8_t blk[BLK];

	write_tagged(vol, 0, 64, 1);
	snap("v", "s1");
	write_tagged(vol, 0, 32, 2);
	expect_tagged(vol, 0, 32, 2);
	expect_tagged(vol, 32, 32, 1);
	s = open_vol("v@s1");
	cr_assert(engine_volume_readonly(s));
	cr_assert_not(engine_volume_readonly(vol));
	expect_tagged(s, 0, 64, 1);
	expect_tagged(s, 64, 16, 0);
	memset(blk, 7, sizeof(blk));
	cr_assert_eq(engine_write(s, 0, 1, blk, 0, on_done, NULL), -EPERM);
	cr_assert_eq(engine_trim(s, 0, 1, 0, on_done, NULL), -EPERM);
	cr_assert_eq(engine_snap_create(eng, "v", "s1"), -EEXIST);
	cr_assert_eq(engine_snap_create(eng, "nope", "s1"), -ENOENT);
	cr_assert_eq(engine_snap_create(eng, "v", "bad@name"), -EINVAL);
	cr_assert_eq(engine_volume_open(eng, "v@nope", &s), -ENOENT);
	cr_assert_eq(info("v").snapshots, 1);
	cr_assert_eq(info("v").mapped_blocks, 64, "it reads 64 blocks of data");
	cr_assert_eq(info("v").own_blocks, 32, "of which 32 are its own");
	cr_assert_str_eq(info("v").parent, "", "a volume's own snapshots are not its parent");
}

Test(snap, clone_reads_through_and_writes_stay_its_own)
{
	struct engine_volume *vol = new_engine_and_volume(), *c, *s;

	write_tagged(vol, 0, 64, 1);
	snap("v", "s1");
	write_tagged(vol, 0, 64, 2);
	cr_assert_eq(engine_clone(eng, "v@s1", "c"), 0);
	cr_assert_eq(engine_clone(eng, "v@s1", "c"), -EEXIST);
	cr_assert_eq(engine_clone(eng, "v@zz", "d"), -ENOENT);
	cr_assert_str_eq(info("c").parent, "v@s1");
	cr_assert_eq(info("c").size, VOL_SIZE);
	c = open_vol("c");
	expect_tagged(c, 0, 64, 1);
	write_tagged(c, 8, 4, 3);
	expect_tagged(c, 0, 8, 1);
	expect_tagged(c, 8, 4, 3);
	expect_tagged(c, 12, 52, 1);
	expect_tagged(vol, 0, 64, 2);
	s = open_vol("v@s1");
	expect_tagged(s, 0, 64, 1);
	engine_volume_close(s);
	/* a clone of a clone */
	snap("c", "cs");
	cr_assert_eq(engine_clone(eng, "c@cs", "cc"), 0);
	s = open_vol("cc");
	expect_tagged(s, 0, 8, 1);
	expect_tagged(s, 8, 4, 3);
	reopen_engine();
	c = open_vol("cc");
	expect_tagged(c, 8, 4, 3);
	expect_tagged(c, 12, 52, 1);
}

Test(snap, trim_in_a_clone_hides_the_parent_and_survives_a_restart)
{
	struct engine_volume *vol = new_engine_and_volume(), *c;

	write_tagged(vol, 0, 128, 1);
	snap("v", "s1");
	cr_assert_eq(engine_clone(eng, "v@s1", "c"), 0);
	c = open_vol("c");
	cr_assert_eq(vtrim(c, 16, 32), 0);
	cr_assert_eq(vtrim(vol, 100, 10), 0);
	expect_tagged(c, 0, 16, 1);
	expect_tagged(c, 16, 32, 0);
	expect_tagged(c, 48, 80, 1);
	expect_written_matches_diff("c");
	cr_assert_eq(info("c").mapped_blocks, 128 - 32);
	cr_assert_not(engine_block_mapped(c, 20));
	cr_assert(engine_block_mapped(c, 50), "read through: mapped");
	expect_tagged(vol, 100, 10, 0);
	expect_tagged(vol, 110, 18, 1);
	cr_assert_eq(eflush(), 0);
	/* a clean close writes a checkpoint: the zero entries come back from the stored
	 * map (snapshots_survive_a_crash replays a clone's trim from the log) */
	reopen_engine();
	c = open_vol("c");
	vol = open_vol("v");
	expect_tagged(c, 16, 32, 0);
	expect_tagged(c, 48, 80, 1);
	expect_tagged(vol, 100, 10, 0);
	/* and once more, the stored map rewritten by an explicit checkpoint */
	cr_assert_eq(engine_checkpoint(eng), 0);
	reopen_engine();
	c = open_vol("c");
	expect_tagged(c, 16, 32, 0);
	expect_tagged(c, 0, 16, 1);
}

/* Ten snapshots, each after one more block written; then clones of some of them. */
static void check_chain(void)
{
	char name[16];

	for (unsigned k = 1; k <= 10; k++) {
		struct engine_volume *s;

		snprintf(name, sizeof(name), "v@s%u", k);
		s = open_vol(name);
		for (unsigned j = 1; j <= 10; j++)
			expect_tagged(s, j * 10, 10, j <= k ? j : 0);
		engine_volume_close(s);
	}
	for (unsigned k = 2; k <= 10; k += 4) {
		struct engine_volume *c;

		snprintf(name, sizeof(name), "c%u", k);
		c = open_vol(name);
		for (unsigned j = 1; j <= 10; j++)
			expect_tagged(c, j * 10, 10, j <= k ? j : 0);
		expect_tagged(c, 0, 10, 100 + k);
		engine_volume_close(c);
		expect_written_matches_diff(name);
	}
	expect_written_matches_diff("v");
}

Test(snap, a_chain_of_ten_snapshots_and_clones_reads_back)
{
	struct engine_volume *vol = new_engine_and_volume();
	char name[16], spec[16];

	for (unsigned k = 1; k <= 10; k++) {
		write_tagged(vol, k * 10, 10, k);
		snprintf(name, sizeof(name), "s%u", k);
		snap("v", name);
	}
	for (unsigned k = 2; k <= 10; k += 4) {
		struct engine_volume *c;

		snprintf(spec, sizeof(spec), "v@s%u", k);
		snprintf(name, sizeof(name), "c%u", k);
		cr_assert_eq(engine_clone(eng, spec, name), 0);
		c = open_vol(name);
		write_tagged(c, 0, 10, 100 + k);
		engine_volume_close(c);
	}
	engine_volume_close(vol);
	check_chain();
	cr_assert_eq(eflush(), 0);
	reopen_engine();
	check_chain();
}

static int child_snapshots_then_crashes(void)
{
	struct engine_opts o;
	struct engine *e;
	struct engine_volume *vol;

	opts_for(&o, store_path, meta_path, true);
	CHILD_CHECK(engine_open(&o, &e) == 0);
	eng = e; /* the I/O helpers run this engine */
	CHILD_CHECK(engine_volume_create(e, "v", VOL_SIZE) == 0);
	CHILD_CHECK(engine_volume_open(e, "v", &vol) == 0);
	for (unsigned k = 1; k <= 3; k++) {
		char name[8];
		uint8_t *buf = malloc(16 * BLK);

		CHILD_CHECK(buf != NULL);
		fill(buf, 0, 16, k);
		CHILD_CHECK(vwrite(vol, 0, 16, buf) == 0);
		free(buf);
		snprintf(name, sizeof(name), "s%u", k);
		CHILD_CHECK(engine_snap_create(e, "v", name) == 0);
	}
	CHILD_CHECK(vtrim(vol, 0, 8) == 0);
	CHILD_CHECK(eflush() == 0);
	return 0; /* no engine_close: a crash */
}

Test(snap, snapshots_survive_a_crash)
{
	struct engine_volume *vol, *s;

	in_child(child_snapshots_then_crashes);
	eng = NULL;
	open_engine();
	vol = open_vol("v");
	expect_tagged(vol, 0, 8, 0);
	expect_tagged(vol, 8, 8, 3);
	for (unsigned k = 1; k <= 3; k++) {
		char name[8];

		snprintf(name, sizeof(name), "v@s%u", k);
		s = open_vol(name);
		expect_tagged(s, 0, 16, k);
		engine_volume_close(s);
	}
}

static int list_names(const struct engine_snap_info *in, void *arg)
{
	char *out = arg;

	strcat(out, in->name);
	strcat(out, in->dependents ? "+ " : " ");
	return 0;
}

Test(snap, snap_rm_merges_into_the_child_and_gives_space_back)
{
	struct engine_volume *vol = new_engine_and_volume(), *s;
	uint64_t one_copy;
	char names[64] = "";

	write_tagged(vol, 0, 64, 1);
	one_copy = live();
	snap("v", "s1");
	write_tagged(vol, 0, 32, 2);
	snap("v", "s2");
	write_tagged(vol, 0, 64, 3);
	cr_assert_eq(live(), one_copy * 5 / 2, "s1: 64, s2: 32, v: 64");
	cr_assert_eq(engine_snap_list(eng, "v", list_names, names), 0);
	cr_assert_str_eq(names, "s1 s2 ");
	/* s1 merges into s2: s2 keeps reading blocks 128..255 from it */
	cr_assert_eq(engine_snap_delete(eng, "v", "s1"), 0);
	cr_assert_eq(engine_snap_delete(eng, "v", "s1"), -ENOENT);
	cr_assert_eq(live(), one_copy + one_copy / 2 + one_copy / 2,
		     "s1's overwritten half is garbage now");
	s = open_vol("v@s2");
	expect_tagged(s, 0, 32, 2);
	expect_tagged(s, 32, 32, 1);
	engine_volume_close(s);
	expect_written_matches_diff("v");
	/* s2 (the last one) merges into the volume, which overrides all of it */
	cr_assert_eq(engine_snap_delete(eng, "v", "s2"), 0);
	cr_assert_eq(live(), one_copy);
	cr_assert_eq(info("v").snapshots, 0);
	expect_tagged(vol, 0, 64, 3);
	cr_assert_geq(engine_gc(eng, NSEGS), 0);
	cr_assert_lt(stats().used_blocks, one_copy * 2, "the garbage was cleaned");
	reopen_engine();
	vol = open_vol("v");
	expect_tagged(vol, 0, 64, 3);
	cr_assert_eq(live(), one_copy);
}

static int find_own(const struct engine_snap_info *in, void *arg)
{
	struct engine_snap_info *want = arg;

	if (strcmp(in->name, want->name) == 0)
		*want = *in;
	return 0;
}

static uint64_t snap_own(const char *snap)
{
	struct engine_snap_info si = { 0 };

	snprintf(si.name, sizeof(si.name), "%s", snap);
	si.own_blocks = UINT64_MAX;
	cr_assert_eq(engine_snap_list(eng, "v", find_own, &si), 0);
	cr_assert_neq(si.own_blocks, UINT64_MAX, "no snapshot %s", snap);
	return si.own_blocks;
}

/* Removes v@snap and checks that snap ls said beforehand how many blocks it frees. */
static void expect_rm_frees_own(const char *snap, uint64_t want)
{
	uint64_t own = snap_own(snap), before = live();

	cr_assert_eq(own, want, "%s: own %llu, expected %llu", snap, (unsigned long long)own,
		     (unsigned long long)want);
	cr_assert_eq(engine_snap_delete(eng, "v", snap), 0);
	cr_assert_eq(before - live(), own, "%s: removal freed %llu blocks, snap ls said %llu",
		     snap, (unsigned long long)(before - live()), (unsigned long long)own);
}

Test(snap, snap_ls_own_is_what_snap_rm_frees)
{
	struct engine_volume *vol = new_engine_and_volume();

	write_tagged(vol, 0, 64, 1);
	snap("v", "s1");
	write_tagged(vol, 0, 16, 2);
	snap("v", "s2");
	write_tagged(vol, 0, 48, 3);
	/* s1 holds 64 blocks, but s2 reads 16..63 of them: only 0..15 go with it */
	expect_rm_frees_own("s1", 16);
	/* s2 now holds 0..15 and 16..63 (merged); v overrides 0..47 */
	expect_rm_frees_own("s2", 48);
	cr_assert_eq(info("v").snapshots, 0);
}

Test(snap, merged_snapshot_slots_stay_with_the_child_across_restarts)
{
	struct engine_volume *vol = new_engine_and_volume(), *s;

	write_tagged(vol, 0, 128, 1);
	snap("v", "s1");
	write_tagged(vol, 0, 8, 2);
	snap("v", "s2");
	cr_assert_eq(engine_snap_delete(eng, "v", "s1"), 0);
	/* twice: the alias must hold after a restart, and after a second merge */
	reopen_engine();
	cr_assert_eq(engine_snap_delete(eng, "v", "s2"), 0);
	reopen_engine();
	vol = open_vol("v");
	expect_tagged(vol, 0, 8, 2);
	expect_tagged(vol, 8, 120, 1);
	/* the cleaner still finds the blocks' owner */
	write_tagged(vol, 200, 100, 3);
	write_tagged(vol, 200, 100, 4);
	cr_assert_geq(engine_gc(eng, NSEGS), 0);
	expect_tagged(vol, 8, 120, 1);
	reopen_engine();
	s = open_vol("v");
	expect_tagged(s, 0, 8, 2);
	expect_tagged(s, 8, 120, 1);
	expect_tagged(s, 200, 100, 4);
}

Test(snap, snap_rm_is_refused_while_clones_read_it_until_flattened)
{
	struct engine_volume *vol = new_engine_and_volume(), *c;
	struct engine_flatten_status st;
	char why[128];

	write_tagged(vol, 0, 200, 1);
	snap("v", "s1");
	cr_assert_eq(engine_clone(eng, "v@s1", "c1"), 0);
	cr_assert_eq(engine_clone(eng, "v@s1", "c2"), 0);
	cr_assert_eq(engine_snap_delete(eng, "v", "s1"), -ENOTEMPTY);
	cr_assert_eq(engine_snap_dependents(eng, "v", "s1", why, sizeof(why)), 2);
	cr_assert(strstr(why, "clone c1") && strstr(why, "clone c2"), "%s", why);
	cr_assert_eq(engine_volume_delete(eng, "v"), -EBUSY, "open");
	engine_volume_close(vol);
	cr_assert_eq(engine_volume_delete(eng, "v"), -ENOTEMPTY, "has a snapshot");
	cr_assert_eq(engine_volume_delete(eng, "c2"), 0);
	cr_assert_eq(engine_flatten_start(eng, "v"), -EINVAL, "not a clone");
	c = open_vol("c1");
	write_tagged(c, 0, 10, 2);
	cr_assert_eq(vtrim(c, 10, 10), 0);
	cr_assert_eq(engine_flatten_start(eng, "c1"), 0);
	cr_assert_eq(engine_flatten_start(eng, "c1"), -EALREADY);
	cr_assert_eq(engine_snap_create(eng, "c1", "x"), -EBUSY);
	write_tagged(c, 190, 10, 3); /* online */
	cr_assert_eq(flatten_wait("c1"), 0);
	cr_assert_eq(engine_flatten_status(eng, "c1", &st), 0);
	cr_assert(st.finished);
	/* what it still read: blocks 190..199 count if the copy won the race */
	cr_assert(st.copied_blocks >= 170 && st.copied_blocks <= 180, "copied %llu",
		  (unsigned long long)st.copied_blocks);
	cr_assert_str_eq(info("c1").parent, "");
	expect_tagged(c, 0, 10, 2);
	expect_tagged(c, 10, 10, 0);
	expect_tagged(c, 20, 170, 1);
	expect_tagged(c, 190, 10, 3);
	cr_assert_eq(engine_snap_delete(eng, "v", "s1"), 0);
	reopen_engine();
	c = open_vol("c1");
	expect_tagged(c, 0, 10, 2);
	expect_tagged(c, 10, 10, 0);
	expect_tagged(c, 20, 170, 1);
	expect_tagged(c, 190, 10, 3);
}

Test(snap, rollback_brings_back_the_snapshot_and_drops_what_came_after)
{
	struct engine_volume *vol = new_engine_and_volume();
	uint64_t before;

	write_tagged(vol, 0, 64, 1);
	snap("v", "s1");
	before = live();
	write_tagged(vol, 0, 64, 2);
	cr_assert_eq(engine_volume_resize(eng, "v", 2 * VOL_SIZE), 0);
	cr_assert_eq(engine_snap_rollback(eng, "v", "s1", false), -EBUSY);
	cr_assert_eq(engine_snap_rollback(eng, "v", "nope", true), -ENOENT);
	cr_assert_eq(engine_snap_rollback(eng, "v", "s1", true), 0);
	cr_assert_eq(engine_volume_size(vol), VOL_SIZE, "the snapshot's size comes back");
	expect_tagged(vol, 0, 64, 1);
	expect_written_matches_diff("v");
	cr_assert_eq(live(), before, "what was written after is garbage");
	write_tagged(vol, 0, 8, 3);
	reopen_engine();
	vol = open_vol("v");
	expect_tagged(vol, 0, 8, 3);
	expect_tagged(vol, 8, 56, 1);
}

Test(snap, shrinking_a_clone_cuts_its_parent_off_for_good)
{
	struct engine_volume *vol = new_engine_and_volume(), *c;

	write_tagged(vol, 0, 256, 1);
	snap("v", "s1");
	cr_assert_eq(engine_clone(eng, "v@s1", "c"), 0);
	cr_assert_eq(engine_volume_resize(eng, "c", 128 * BLK), 0);
	cr_assert_eq(engine_volume_resize(eng, "c", VOL_SIZE), 0);
	c = open_vol("c");
	expect_tagged(c, 0, 128, 1);
	expect_tagged(c, 128, 128, 0);
}

struct extents {
	struct engine_extent v[16];
	unsigned n;
};

static int collect_extent(const struct engine_extent *e, void *arg)
{
	struct extents *x = arg;

	cr_assert_lt(x->n, 16);
	x->v[x->n++] = *e;
	return 0;
}

static void expect_extent(const struct extents *x, unsigned i, uint64_t lba, uint64_t n,
			  bool data)
{
	cr_assert_lt(i, x->n);
	cr_assert_eq(x->v[i].offset, lba * BLK, "extent %u offset", i);
	cr_assert_eq(x->v[i].length, n * BLK, "extent %u length", i);
	cr_assert_eq(x->v[i].data, data, "extent %u kind", i);
}

Test(snap, diff_lists_what_changed_between_two_points)
{
	struct engine_volume *vol = new_engine_and_volume();
	struct extents x = { 0 };

	write_tagged(vol, 0, 100, 1);
	snap("v", "a");
	write_tagged(vol, 10, 5, 2);
	cr_assert_eq(vtrim(vol, 50, 10), 0);
	write_tagged(vol, 600, 3, 2);
	snap("v", "b");
	write_tagged(vol, 900, 1, 3);
	cr_assert_eq(engine_diff(eng, "v@a", "v@b", collect_extent, &x), 0);
	cr_assert_eq(x.n, 3);
	expect_extent(&x, 0, 10, 5, true);
	expect_extent(&x, 1, 50, 10, false);
	expect_extent(&x, 2, 600, 3, true);
	x.n = 0;
	cr_assert_eq(engine_diff(eng, "v@b", "v", collect_extent, &x), 0);
	cr_assert_eq(x.n, 1);
	expect_extent(&x, 0, 900, 1, true);
	x.n = 0;
	cr_assert_eq(engine_diff(eng, NULL, "v@a", collect_extent, &x), 0);
	cr_assert_eq(x.n, 1, "from nothing: everything allocated");
	expect_extent(&x, 0, 0, 100, true);
	cr_assert_eq(engine_diff(eng, "v@zz", "v", collect_extent, &x), -ENOENT);
}

Test(snap, a_flatten_cut_short_by_a_stop_resumes_at_the_next_start)
{
	struct engine_volume *vol = new_engine_and_volume(), *c;
	struct engine_flatten_status st;

	write_tagged(vol, 0, 150, 1);
	snap("v", "s1");
	cr_assert_eq(engine_clone(eng, "v@s1", "c"), 0);
	cr_assert_eq(engine_flatten_start(eng, "c"), 0);
	reopen_engine(); /* before the flatten could run */
	cr_assert_eq(engine_flatten_status(eng, "c", &st), 0);
	cr_assert(st.running, "resumed");
	cr_assert_eq(flatten_wait("c"), 0);
	cr_assert_str_eq(info("c").parent, "");
	reopen_engine();
	cr_assert_eq(engine_flatten_status(eng, "c", &st), 0);
	cr_assert_not(st.running, "done: not resumed again");
	cr_assert_str_eq(info("c").parent, "");
	c = open_vol("c");
	expect_tagged(c, 0, 150, 1);
}

/* A trim queued before a flatten scans: its FILLs come after it in the log. Replay
 * after the flatten dropped the parent link must not let them bring the data back
 * (found in review). */
static int child_trim_then_flatten_then_crash(void)
{
	struct engine_opts o;
	struct engine *e;
	struct engine_volume *v, *c;
	struct engine_flatten_status st;
	struct done d = { 0 };
	uint8_t *buf = malloc(64 * BLK);

	CHILD_CHECK(buf != NULL);

	opts_for(&o, store_path, meta_path, true);
	CHILD_CHECK(engine_open(&o, &e) == 0);
	eng = e;
	CHILD_CHECK(engine_volume_create(e, "v", VOL_SIZE) == 0);
	CHILD_CHECK(engine_volume_open(e, "v", &v) == 0);
	fill(buf, 0, 64, 1);
	CHILD_CHECK(vwrite(v, 0, 64, buf) == 0);
	CHILD_CHECK(engine_snap_create(e, "v", "s1") == 0);
	CHILD_CHECK(engine_clone(e, "v@s1", "c") == 0);
	CHILD_CHECK(engine_volume_open(e, "c", &c) == 0);
	/* the trim is queued, not retired, when the flatten scans */
	CHILD_CHECK(engine_trim(c, 0, 64, 0, on_done, &d) == 0);
	CHILD_CHECK(engine_flatten_start(e, "c") == 0);
	for (;;) {
		CHILD_CHECK(engine_flatten_status(e, "c", &st) == 0);
		if (!st.running && d.done)
			break;
		CHILD_CHECK(engine_poll(e, 10) >= 0);
	}
	CHILD_CHECK(st.result == 0 && d.res == 0);
	CHILD_CHECK(vread(c, 0, 64, buf) == 0);
	for (size_t i = 0; i < 64 * BLK; i++)
		CHILD_CHECK(buf[i] == 0); /* runtime: zeros */
	CHILD_CHECK(eflush() == 0);
	return 0; /* crash: no checkpoint since open */
}

Test(snap, a_trim_before_the_flatten_copies_stays_a_trim_after_a_crash)
{
	struct engine_volume *c;

	in_child(child_trim_then_flatten_then_crash);
	eng = NULL;
	open_engine();
	c = open_vol("c");
	expect_tagged(c, 0, 64, 0);
}

/* A layer whose log lost a durable batch (replay marks it damaged) stays visible as
 * such through snapshots, merges and restarts: the blocks it lost are still lost. */
Test(snap, the_damaged_mark_follows_the_lost_blocks)
{
	struct engine_volume *vol = new_engine_and_volume();

	write_tagged(vol, 0, 4, 1);
	vol->rec.flags |= ONDISK_LAYER_DAMAGED; /* as replay sets it */
	cr_assert_eq(eng_volume_record_save(eng, &vol->rec), 0);
	cr_assert(info("v").damaged);
	snap("v", "s1"); /* the damaged layer becomes the snapshot; the volume reads it */
	cr_assert(info("v").damaged);
	cr_assert_eq(vol->rec.flags & ONDISK_LAYER_DAMAGED, 0, "the new layer's own log is whole");
	write_tagged(vol, 8, 4, 2);
	engine_volume_close(vol);
	reopen_engine();
	cr_assert(info("v").damaged, "kept across a restart");
	cr_assert_eq(engine_snap_delete(eng, "v", "s1"), 0); /* merged into the volume */
	cr_assert(info("v").damaged, "the volume holds the snapshot's blocks now");
	reopen_engine();
	cr_assert(info("v").damaged);
	vol = open_vol("v");
	expect_tagged(vol, 0, 4, 1);
	expect_tagged(vol, 8, 4, 2);
}

/* ---- the logical sector size is the volume's ---- */

static void create_4kn(const char *name)
{
	struct done d = { 0 };
	int r = finish(engine_volume_create_async(eng, name, VOL_SIZE, ENGINE_CREATE_SECTOR_4K,
						  on_done, &d), &d);

	cr_assert_eq(r, 0, "create %s 4Kn: %s", name, strerror(-r));
}

struct snap_sector {
	const char *name;
	uint32_t sector;
};

static int snap_sector_one(const struct engine_snap_info *s, void *arg)
{
	struct snap_sector *ss = arg;

	if (strcmp(s->name, ss->name) == 0)
		ss->sector = s->sector_size;
	return 0;
}

static uint32_t snap_sector(const char *vol, const char *name)
{
	struct snap_sector ss = { .name = name };
	int r = engine_snap_list(eng, vol, snap_sector_one, &ss);

	cr_assert_eq(r, 0);
	return ss.sector;
}

/* Every layer that the volumes of the family have, and what it says (volume or
 * snapshot, through a handle too). */
static void expect_sectors(uint32_t want, const char *const *vols, const char *const *snaps)
{
	char vname[VOLSPEC_NAME_MAX + 1], sname[VOLSPEC_NAME_MAX + 1];
	struct engine_volume *h;

	for (; *vols; vols++) {
		cr_assert_eq(info(*vols).sector_size, want, "volume %s", *vols);
		h = open_vol(*vols);
		cr_assert_eq(engine_volume_sector_size(h), want, "handle of %s", *vols);
		engine_volume_close(h);
	}
	for (; *snaps; snaps++) {
		cr_assert_eq(volspec_parse(*snaps, vname, sname), 0);
		cr_assert_eq(snap_sector(vname, sname), want, "snapshot %s", *snaps);
		h = open_vol(*snaps);
		cr_assert_eq(engine_volume_sector_size(h), want, "handle of %s", *snaps);
		engine_volume_close(h);
	}
}

Test(snap, the_sector_size_is_the_volumes_and_its_snapshots_and_clones_keep_it)
{
	static const char *const vols[] = { "k", "kc", NULL };
	static const char *const snaps[] = { "k@s1", "kc@cs", NULL };
	static const char *const plain_vols[] = { "v", NULL }, *const plain_snaps[] = { NULL };
	struct engine_volume *v = new_engine_and_volume(), *k, *kc;

	engine_volume_close(v);
	cr_assert_eq(info("v").sector_size, ENGINE_SECTOR_SIZE_DEFAULT, "512 by default");
	create_4kn("k");
	cr_assert_eq(info("k").sector_size, ENGINE_SECTOR_SIZE_4K);
	k = open_vol("k");
	write_tagged(k, 0, 16, 1);
	snap("k", "s1");                                  /* snapshot and the new head */
	cr_assert_eq(engine_clone(eng, "k@s1", "kc"), 0); /* clone */
	kc = open_vol("kc");
	write_tagged(kc, 0, 4, 2);
	engine_volume_close(kc);
	snap("kc", "cs");                                 /* a clone's snapshot */
	snap("k", "s2");
	cr_assert_eq(engine_volume_resize(eng, "k", 2 * VOL_SIZE), 0);
	cr_assert_eq(engine_volume_resize(eng, "kc", VOL_SIZE / 2), 0);
	cr_assert_eq(engine_snap_rollback(eng, "k", "s2", true), 0);
	cr_assert_eq(engine_snap_delete(eng, "k", "s2"), 0); /* merged into the head */
	engine_volume_close(k);
	cr_assert_eq(engine_flatten_start(eng, "kc"), -EINVAL, "a clone with a snapshot");
	expect_sectors(ENGINE_SECTOR_SIZE_4K, vols, snaps);
	expect_sectors(ENGINE_SECTOR_SIZE_DEFAULT, plain_vols, plain_snaps);
	reopen_engine();
	expect_sectors(ENGINE_SECTOR_SIZE_4K, vols, snaps);
	expect_sectors(ENGINE_SECTOR_SIZE_DEFAULT, plain_vols, plain_snaps);
	/* flatten: a clone without snapshots of its own */
	cr_assert_eq(engine_clone(eng, "k@s1", "kf"), 0);
	cr_assert_eq(engine_flatten_start(eng, "kf"), 0);
	cr_assert_eq(flatten_wait("kf"), 0);
	cr_assert_str_eq(info("kf").parent, "");
	cr_assert_eq(info("kf").sector_size, ENGINE_SECTOR_SIZE_4K, "after a flatten");
}

/* The catalog in the log carries it: a metadata rebuild from the store alone and the
 * catalog scan (quill-inspect --catalog) both find it. */
static int scan_sector(const struct engine_layer_info *l, void *arg)
{
	unsigned *n4k = arg;

	*n4k += l->sector_size == ENGINE_SECTOR_SIZE_4K;
	cr_assert(l->sector_size == ENGINE_SECTOR_SIZE_4K ||
		  l->sector_size == ENGINE_SECTOR_SIZE_DEFAULT);
	cr_assert_eq(l->sector_size == ENGINE_SECTOR_SIZE_4K, l->name[0] == 'k', "layer %s: %u",
		     l->name, l->sector_size);
	return 0;
}

Test(snap, a_metadata_rebuild_from_the_log_keeps_the_sector_size)
{
	static const char *const vols[] = { "k", "kc", NULL }, *const snaps[] = { "k@ks", NULL };
	static const char *const plain_vols[] = { "v", NULL }, *const plain_snaps[] = { NULL };
	struct engine_volume *v = new_engine_and_volume(), *k;
	struct engine_opts o;
	unsigned n4k = 0;
	int r;

	write_tagged(v, 0, 4, 1);
	engine_volume_close(v);
	create_4kn("k");
	k = open_vol("k");
	write_tagged(k, 0, 4, 2);
	engine_volume_close(k);
	snap("k", "ks");
	cr_assert_eq(engine_clone(eng, "k@ks", "kc"), 0);
	engine_close(eng);
	eng = NULL;
	cr_assert_eq(engine_catalog_scan(store_path, scan_sector, &n4k), 0);
	cr_assert_eq(n4k, 3, "k, k@ks and kc are 4Kn in the log");
	testutil_rm_tree(meta_path);
	opts_for(&o, store_path, meta_path, false);
	o.rebuild_meta = true;
	r = engine_open(&o, &eng);
	cr_assert_eq(r, 0, "rebuild: %s", strerror(-r));
	expect_sectors(ENGINE_SECTOR_SIZE_4K, vols, snaps);
	expect_sectors(ENGINE_SECTOR_SIZE_DEFAULT, plain_vols, plain_snaps);
	k = open_vol("k");
	expect_tagged(k, 0, 4, 2);
	engine_volume_close(k);
}

/* The family table (engine/segment.h) counts each family's layers as snapshots,
 * clones, deletes and restarts change them: engine_family_here answers without a walk,
 * and agrees with one. */
static uint32_t family_layers_walked(uint64_t uid)
{
	uint32_t n = 0;

	for (size_t i = 0; i < eng->nvols; i++)
		n += eng->vols[i]->rec.uid == uid;
	return n;
}

static void expect_family_layers(const char *name, uint64_t uid, uint32_t layers)
{
	const struct seg_family *f = seg_family_get(eng, uid);

	cr_assert_not_null(f, "%s: no entry in the family table", name);
	cr_assert_eq(f->nlayers, layers, "%s: %u layers counted, %u expected", name,
		     f->nlayers, layers);
	cr_assert_eq(family_layers_walked(uid), layers);
	cr_assert_eq(engine_family_here(eng, uid), layers > 0);
	cr_assert_eq(seg_families_check(eng), 0);
}

Test(snap, the_family_table_counts_layers_through_snapshots_clones_and_deletes)
{
	struct engine_volume *vol = new_engine_and_volume(), *c;
	uint64_t v_uid, c_uid;

	cr_assert_eq(engine_volume_family(eng, "v", &v_uid), 0);
	expect_family_layers("v", v_uid, 1);
	write_tagged(vol, 0, 64, 1);
	snap("v", "s1");
	snap("v", "s2");
	expect_family_layers("v with two snapshots", v_uid, 3);
	cr_assert_eq(engine_clone(eng, "v@s1", "c"), 0);
	cr_assert_eq(engine_volume_family(eng, "c", &c_uid), 0);
	cr_assert_neq(c_uid, v_uid);
	expect_family_layers("c", c_uid, 1);
	c = open_vol("c");
	write_tagged(c, 0, 4, 2);
	engine_volume_close(c);
	cr_assert_gt(seg_family_get(eng, c_uid)->nlog, 0, "the clone's log");
	engine_volume_close(vol);
	cr_assert_eq(engine_snap_delete(eng, "v", "s2"), 0);
	expect_family_layers("v without s2", v_uid, 2);
	reopen_engine();
	expect_family_layers("v after a restart", v_uid, 2);
	expect_family_layers("c after a restart", c_uid, 1);
	cr_assert_eq(engine_volume_delete(eng, "c"), 0);
	expect_family_layers("c deleted", c_uid, 0);
	cr_assert_not(engine_family_here(eng, c_uid));
	cr_assert_eq(engine_family_here(eng, 0), false);
	cr_assert_eq(engine_family_here(eng, ONDISK_CATALOG_UID), false);
}

/* ---- a micro-benchmark, run by hand (QUILL_BENCH=1): no timed assertion ----
 * A holder asks engine_family_here on every SEG_APPEND, for a family that is not its
 * own: before the family table's index that walked every layer of the node. Prints
 * ns per call with 1000 volumes here, by the index and by the walk it replaced. */
static uint64_t bench_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The walk engine_family_here did before the index (eng_family_layer's loop). */
static bool walk_family_here(uint64_t uid)
{
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->rec.uid == uid)
			return true;
	return false;
}

Test(snap, bench_family_here_with_1000_volumes, .timeout = 600)
{
	enum { VOLS = 1000, CALLS = 2000000 };
	volatile unsigned hits = 0;
	uint64_t t0, t1, t2;
	char name[32];

	if (!getenv("QUILL_BENCH"))
		cr_skip_test("a benchmark: QUILL_BENCH=1 runs it");
	open_engine();
	for (int i = 0; i < VOLS; i++) {
		snprintf(name, sizeof(name), "b%d", i);
		cr_assert_eq(engine_volume_create(eng, name, 1 << 20), 0);
	}
	cr_assert_eq(seg_families_check(eng), 0);
	t0 = bench_ns();
	for (unsigned i = 0; i < CALLS; i++)
		hits += engine_family_here(eng, 0x5eed000000000000ull + (i & 7));
	t1 = bench_ns();
	for (unsigned i = 0; i < CALLS; i++)
		hits += walk_family_here(0x5eed000000000000ull + (i & 7));
	t2 = bench_ns();
	cr_assert_eq(hits, 0);
	fprintf(stderr, "engine_family_here, %d layers, a family not here: %.1f ns per call "
		"by the index, %.1f ns by a walk of the layers (before)\n", (int)eng->nvols,
		(double)(t1 - t0) / CALLS, (double)(t2 - t1) / CALLS);
}
