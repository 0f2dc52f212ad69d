/* tests/unit/engine/test_superblock.c — the superblock and its copy (engine/superblock.c):
 * which one start-up trusts, what is formatted and what is refused, the store's size.
 *
 * Damage is done to the closed store file at the offsets docs/format.md gives: block 0
 * and QUILL_SB_COPY_OFFSET. A refused open must leave the store file byte for byte as
 * it was (its CRC32C is compared).
 */
#include "engine/engine.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "engine/ondisk.h"
#include "testutil.h"

#include "engine_fixture.h"

TestSuite(superblock, .init = setup, .fini = teardown);

static void flip_byte(uint64_t off)
{
	int fd = open(store_path, O_RDWR);
	uint8_t b;

	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0x20;
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

static void zero_range(uint64_t off, size_t len)
{
	char *zero = calloc(1, len);
	int fd = open(store_path, O_RDWR);

	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, zero, len, (off_t)off), (ssize_t)len);
	close(fd);
	free(zero);
}

static void read_block(uint64_t off, uint8_t *buf)
{
	int fd = open(store_path, O_RDONLY);

	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, buf, BLK, (off_t)off), (ssize_t)BLK);
	close(fd);
}

/* CRC32C of the whole store file: "untouched" is checked, not assumed. */
static uint32_t file_crc(void)
{
	static uint8_t buf[1 << 16];
	int fd = open(store_path, O_RDONLY);
	uint32_t crc = 0;
	ssize_t n;

	cr_assert_geq(fd, 0);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		crc = crc32c_extend(crc, buf, (size_t)n);
	close(fd);
	return crc;
}

static uint64_t file_size(void)
{
	struct stat st;

	cr_assert_eq(stat(store_path, &st), 0);
	return (uint64_t)st.st_size;
}

/* Closes the engine and checks that the copy holds block 0's bytes. */
static void close_and_expect_copies_equal(const char *why)
{
	uint8_t a[BLK], b[BLK];

	engine_close(eng);
	eng = NULL;
	read_block(0, a);
	read_block(QUILL_SB_COPY_OFFSET, b);
	cr_assert_eq(memcmp(a, b, BLK), 0, "%s", why);
}

/* A path in the test's scratch directory (two at a time). */
static const char *scratch(const char *name)
{
	static char paths[2][PATH_MAX + 32];
	static unsigned next;
	char *p = paths[next++ % 2];

	snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
	return p;
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* A store with volume v holding 40 tagged blocks, closed. */
static void store_with_data(void)
{
	struct engine_volume *vol;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 40, 7);
	engine_volume_close(vol);
	engine_close(eng);
	eng = NULL;
}

static void expect_data(void)
{
	struct engine_volume *vol = open_vol("v");

	expect_tagged(vol, 0, 40, 7);
	engine_volume_close(vol);
}

static int open_with(bool format, bool reformat, bool destroy, const char *meta)
{
	struct engine_opts o;

	opts_for(&o, store_path, meta, format);
	o.reformat = reformat;
	o.destroy_data = destroy;
	return engine_open(&o, &eng);
}

/* ================= the copy ================= */

Test(superblock, format_writes_both_copies)
{
	uint8_t a[BLK], b[BLK];
	struct superblock sb;

	open_engine();
	engine_close(eng);
	eng = NULL;
	read_block(0, a);
	read_block(QUILL_SB_COPY_OFFSET, b);
	cr_assert_eq(ondisk_superblock_decode(a, BLK, &sb), 0);
	cr_assert_eq(memcmp(a, b, BLK), 0, "the copy is block 0's bytes");
}

Test(superblock, flipped_byte_in_block_0_starts_from_the_copy_and_rewrites_it)
{
	store_with_data();
	flip_byte(20); /* inside the uuid */
	cr_assert_eq(try_open(true), 0, "opens from the copy");
	cr_assert_eq(stats().segments_total, NSEGS);
	expect_data();
	close_and_expect_copies_equal("block 0 rewritten from the copy");
	cr_assert_eq(try_open(false), 0);
	expect_data();
}

Test(superblock, flipped_magic_in_block_0_starts_from_the_copy)
{
	store_with_data();
	flip_byte(3);
	cr_assert_eq(try_open(true), 0);
	expect_data();
}

Test(superblock, damaged_copy_is_rewritten_from_block_0)
{
	store_with_data();
	flip_byte(QUILL_SB_COPY_OFFSET + 40);
	cr_assert_eq(try_open(false), 0);
	expect_data();
	close_and_expect_copies_equal("the copy rewritten from block 0");
}

Test(superblock, store_formatted_without_a_copy_opens_and_gets_one)
{
	store_with_data();
	zero_range(QUILL_SB_COPY_OFFSET, BLK); /* as version 1 stores were, before copies */
	cr_assert_eq(try_open(false), 0);
	expect_data();
	close_and_expect_copies_equal("the copy is written at first open");
}

Test(superblock, both_copies_bad_is_refused_and_the_store_is_untouched)
{
	uint32_t before;

	store_with_data();
	flip_byte(20);
	flip_byte(QUILL_SB_COPY_OFFSET + 20);
	before = file_crc();
	cr_assert_eq(try_open(true), -EILSEQ, "format must not touch a store holding data");
	cr_assert_null(eng);
	cr_assert_eq(file_crc(), before, "a refused start changed the store");
	cr_assert_eq(open_with(true, true, false, meta_path), -ENOTEMPTY,
		     "--format alone does not destroy a log");
	cr_assert_eq(open_with(true, true, true, meta_path), -EEXIST,
		     "--format --destroy-data: the metadata directory indexes the old store");
	cr_assert_eq(file_crc(), before);
}

/* Rewrites both superblock copies with another format version, resealed. */
static void set_version(uint32_t version)
{
	uint8_t buf[BLK];
	struct ondisk_superblock *d = (struct ondisk_superblock *)buf;
	int fd;

	read_block(0, buf);
	d->version = version;
	d->crc = 0;
	d->crc = crc32c(buf, BLK);
	fd = open(store_path, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, buf, BLK, 0), (ssize_t)BLK);
	cr_assert_eq(pwrite(fd, buf, BLK, QUILL_SB_COPY_OFFSET), (ssize_t)BLK);
	close(fd);
}

/* A store of an older format version is refused, nothing written; the same bytes with
 * this version open. */
static void expect_version_refused(uint32_t version)
{
	uint32_t before;

	store_with_data();
	set_version(version);
	before = file_crc();
	cr_assert_eq(try_open(false), -EPROTO);
	cr_assert_null(eng);
	cr_assert_eq(file_crc(), before, "a refused start changed the store");
	set_version(QUILL_FORMAT_VERSION);
	cr_assert_eq(try_open(false), 0, "the same bytes with this version open");
	expect_data();
}

/* A version 2 quill would take a ZERO entry for a damaged summary: a version 2 store
 * is refused (and a version 3 one by it), nothing written. */
Test(superblock, a_store_of_version_2_is_refused_and_untouched)
{
	expect_version_refused(2);
}

/* Version 3 named segments by slot and families by the store's counter: its map and
 * headers mean something else here. (The message: quilld_superblock.sh.) */
Test(superblock, a_store_of_version_3_is_refused_and_untouched)
{
	cr_assert_eq(QUILL_FORMAT_VERSION, 5);
	expect_version_refused(3);
}

/* A version 4 quill would take a family checkpoint's MAPS or FCKPT entry for a
 * damaged summary: a version 4 store is refused (and a version 5 one by it). */
Test(superblock, a_store_of_version_4_is_refused_and_untouched)
{
	expect_version_refused(4);
}

Test(superblock, zeroed_superblocks_of_a_store_with_a_log_are_refused)
{
	uint32_t before;

	store_with_data();
	zero_range(0, BLK);
	zero_range(QUILL_SB_COPY_OFFSET, BLK);
	testutil_rm_tree(meta_path);
	before = file_crc();
	cr_assert_eq(try_open(true), -ENOENT, "a store with a log is not blank");
	cr_assert_eq(file_crc(), before);
	cr_assert_not(exists(meta_path), "a refused start created the metadata directory");
	cr_assert_eq(open_with(true, true, false, meta_path), -ENOTEMPTY,
		     "--format alone does not destroy a log");
	cr_assert_eq(file_crc(), before);
	cr_assert_eq(open_with(true, true, true, meta_path), 0, "--format --destroy-data does");
	cr_assert_eq(stats().segments_total, NSEGS);
	cr_assert_eq(engine_volume_info(eng, "v", &(struct engine_volume_info){ 0 }), -ENOENT);
}

Test(superblock, zeroed_block_0_and_missing_metadata_is_refused)
{
	uint32_t before;

	store_with_data();
	zero_range(0, BLK);
	testutil_rm_tree(meta_path);
	before = file_crc();
	cr_assert_eq(try_open(true), -EINVAL, "the copy is valid: the metadata is missing");
	cr_assert_eq(file_crc(), before, "nothing is repaired before the metadata agrees");
	cr_assert_not(exists(meta_path));
}

Test(superblock, metadata_directory_of_another_store_is_refused_before_any_repair)
{
	struct engine_opts o;
	uint32_t before;

	store_with_data();
	opts_for(&o, scratch("other.img"), scratch("other-meta"), true);
	cr_assert_eq(engine_open(&o, &eng), 0, "another store, its own metadata");
	engine_close(eng);
	eng = NULL;
	flip_byte(20);
	before = file_crc();
	cr_assert_eq(open_with(false, false, false, scratch("other-meta")), -EINVAL);
	cr_assert_eq(file_crc(), before);
}

/* ================= what is blank ================= */

Test(superblock, zeroed_existing_file_is_blank_and_formatted)
{
	int fd;

	fd = open(store_path, O_RDWR | O_CREAT, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)STORE_SIZE), 0);
	close(fd);
	cr_assert_eq(try_open(false), -ENOENT, "blank, but format not asked");
	cr_assert_eq(try_open(true), 0);
	cr_assert_eq(stats().segments_total, NSEGS);
}

Test(superblock, garbage_in_the_superblock_area_needs_format)
{
	int fd;

	fd = open(store_path, O_RDWR | O_CREAT, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)STORE_SIZE), 0);
	cr_assert_eq(pwrite(fd, "some filesystem", 15, 8192), 15);
	close(fd);
	cr_assert_eq(try_open(true), -ENOENT, "not blank: not formatted without asking");
	cr_assert_eq(open_with(true, true, false, meta_path), 0, "--format: no log, formatted");
}

Test(superblock, format_of_a_valid_store_needs_destroy_data)
{
	uint32_t before;

	store_with_data();
	before = file_crc();
	cr_assert_eq(open_with(true, true, false, scratch("fresh-meta")), -ENOTEMPTY);
	cr_assert_eq(file_crc(), before);
	cr_assert_eq(open_with(true, true, true, scratch("fresh-meta")), 0);
	cr_assert_eq(engine_volume_info(eng, "v", &(struct engine_volume_info){ 0 }), -ENOENT);
}

/* ================= size ================= */

Test(superblock, existing_store_of_another_size_is_refused)
{
	struct engine_opts o;

	store_with_data();
	opts_for(&o, store_path, meta_path, true);
	o.store_size = STORE_SIZE + NSEGS * SEG_SIZE;
	cr_assert_eq(engine_open(&o, &eng), -EINVAL, "a larger size without grow");
	cr_assert_eq(file_size(), STORE_SIZE, "the file was extended");
	o.store_size = STORE_SIZE - SEG_SIZE;
	cr_assert_eq(engine_open(&o, &eng), -EINVAL, "a smaller size");
	o.store_size = 0;
	cr_assert_eq(engine_open(&o, &eng), 0, "no size: the store as it is");
	cr_assert_eq(stats().segments_total, NSEGS);
	expect_data();
}

Test(superblock, grow_adds_usable_slots)
{
	struct engine_volume *vol;
	struct engine_opts o;
	uint64_t usable;

	store_with_data();
	cr_assert_eq(try_open(false), 0);
	usable = stats().usable_blocks;
	cr_assert_lt(usable, 600, "the test needs more than the old store holds");
	engine_close(eng);
	eng = NULL;

	opts_for(&o, store_path, meta_path, false);
	o.store_size = STORE_SIZE + NSEGS * SEG_SIZE;
	o.grow = true;
	cr_assert_eq(engine_open(&o, &eng), 0);
	cr_assert_eq(stats().segments_total, 2 * NSEGS);
	cr_assert_eq(file_size(), STORE_SIZE + NSEGS * SEG_SIZE);
	expect_data();
	vol = open_vol("v");
	write_tagged(vol, 100, 600, 9);
	engine_volume_close(vol);
	engine_close(eng);
	eng = NULL;

	o.grow = false;
	cr_assert_eq(engine_open(&o, &eng), 0, "reopens at its new size");
	cr_assert_eq(stats().segments_total, 2 * NSEGS);
	vol = open_vol("v");
	expect_tagged(vol, 0, 40, 7);
	expect_tagged(vol, 100, 600, 9);
	engine_volume_close(vol);
}
