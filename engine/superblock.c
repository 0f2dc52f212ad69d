/* engine/superblock.c — the superblock and its copy: which one to trust, when a store
 * may be formatted, repairing a damaged copy, growing (docs/format.md, "Superblock").
 *
 * The rule that keeps data safe: nothing that is not blank is ever formatted unless
 * the caller asked (opts.reformat), and a store holding a quill log needs
 * opts.destroy_data on top. A store whose two superblocks are both bad is refused,
 * untouched. Every decision is taken before the first byte is written.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "common/err.h"
#include "common/log.h"
#include "common/units.h"
#include "engine/engine_internal.h"
#include "engine/segment.h"
#include "metadata/meta.h"

#define DEFAULT_SEGMENT_SIZE (4u << 20)
#define SCAN_CHUNK (1u << 20)
#define NOWHERE UINT64_MAX

enum { SB_MAIN = 0, SB_COPY = 1 };
static const uint64_t sb_offset[2] = { 0, QUILL_SB_COPY_OFFSET };

/* What is on a device without a valid superblock, or under one being replaced. */
struct sb_probe {
	uint64_t log_block;   /* offset of a block with a segment or summary magic */
	uint64_t nonzero;     /* offset of a non-zero block in [0, QUILL_DATA_OFFSET) */
	bool meta_record;     /* the metadata directory records a store */
	uint8_t meta_uuid[16];
};

void eng_uuid_str(const uint8_t uuid[16], char out[37])
{
	for (int i = 0; i < 16; i++)
		out += sprintf(out, "%02x%s", uuid[i],
			       (i == 3 || i == 5 || i == 7 || i == 9) ? "-" : "");
}

static const char *sb_err_str(int err)
{
	switch (err) {
	case 0:
		return "valid";
	case -ENOENT:
		return "no superblock";
	case -EILSEQ:
		return "checksum mismatch";
	case -EPROTO:
		return "unsupported version or impossible geometry";
	default:
		return err_str(-err);
	}
}

static const char *size_str(uint64_t bytes, int slot)
{
	static char bufs[3][32];

	return units_format_size(bytes, bufs[slot], sizeof(bufs[0]));
}

/* Reads and decodes both places; eng->sb is the first valid one (block 0 first). */
static int read_both(struct engine *eng)
{
	uint8_t *buf = seg_buf_alloc(2 * QUILL_BLOCK_SIZE);
	struct superblock sb[2];
	int r = 0;

	if (!buf)
		return -ENOMEM;
	for (int i = SB_MAIN; i <= SB_COPY && r == 0; i++) {
		r = seg_dev_read_sync(eng->segs, sb_offset[i], buf + i * QUILL_BLOCK_SIZE,
				    QUILL_BLOCK_SIZE);
		if (r == 0)
			eng->sb_err[i] = ondisk_superblock_decode(buf + i * QUILL_BLOCK_SIZE,
								  QUILL_BLOCK_SIZE, &sb[i]);
		if (r == 0 && eng->sb_err[i] == -EPROTO && !eng->sb_old_version)
			eng->sb_old_version = ondisk_superblock_version(buf + i * QUILL_BLOCK_SIZE,
									QUILL_BLOCK_SIZE);
	}
	if (r == 0 && eng->sb_err[SB_MAIN] == 0) {
		eng->sb = sb[SB_MAIN];
		eng->sb_copy_stale = eng->sb_err[SB_COPY] != 0 ||
				     memcmp(buf, buf + QUILL_BLOCK_SIZE, QUILL_BLOCK_SIZE) != 0;
	} else if (r == 0 && eng->sb_err[SB_COPY] == 0) {
		eng->sb = sb[SB_COPY];
	}
	seg_buf_free(buf);
	if (r < 0)
		log_msg(LOG_ERROR, ENG_LOG, "%s: reading the superblock: %s", eng->opts.store_path,
			err_str(r));
	return r;
}

static bool block_is_zero(const uint8_t *b)
{
	const uint64_t *w = (const uint64_t *)(const void *)b;

	for (size_t i = 0; i < QUILL_BLOCK_SIZE / sizeof(*w); i++)
		if (w[i])
			return false;
	return true;
}

static bool block_is_log(const uint8_t *b)
{
	uint64_t magic;

	memcpy(&magic, b, sizeof(magic));
	return magic == QUILL_SEG_MAGIC || magic == QUILL_SUM_MAGIC;
}

/* Looks at one chunk read at off; true once a log block is found. */
static bool scan_chunk(struct sb_probe *p, const uint8_t *buf, uint64_t off, size_t len)
{
	for (size_t b = 0; b < len; b += QUILL_BLOCK_SIZE) {
		if (off + b < QUILL_DATA_OFFSET) {
			if (p->nonzero == NOWHERE && !block_is_zero(buf + b))
				p->nonzero = off + b;
		} else if (block_is_log(buf + b)) {
			p->log_block = off + b;
			return true;
		}
	}
	return false;
}

/* Every block that may hold data (seg_dev_next_data skips what a file never wrote),
 * until the first block of a quill log. A new file costs nothing; a device that was
 * zeroed is read whole, once. */
static int scan_device(struct engine *eng, struct sb_probe *p)
{
	uint8_t *buf = seg_buf_alloc(SCAN_CHUNK);
	uint64_t off = 0, start, end;
	int r = 0;

	if (!buf)
		return -ENOMEM;
	while (r == 0 && seg_dev_next_data(eng->segs, off, &start, &end) == 0) {
		for (off = start; off < end && r == 0; off += SCAN_CHUNK) {
			size_t len = end - off < SCAN_CHUNK ? (size_t)(end - off) : SCAN_CHUNK;

			r = seg_dev_read_sync(eng->segs, off, buf, len);
			if (r == 0 && scan_chunk(p, buf, off, len))
				goto out;
		}
		off = end;
	}
out:
	seg_buf_free(buf);
	if (r < 0)
		log_msg(LOG_ERROR, ENG_LOG, "%s: reading the store: %s", eng->opts.store_path,
			err_str(r));
	return r;
}

static bool dir_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Opens the metadata directory; a full disk is named, since RocksDB's own words for it
 * are easy to miss. */
static int open_meta(struct engine *eng)
{
	int r = meta_open(eng->opts.meta_path, &eng->meta);

	if (r == -ENOSPC)
		log_msg(LOG_ERROR, ENG_LOG, "metadata directory %s: its disk is full; free space "
			"there and start again", eng->opts.meta_path);
	return r;
}

/* Opens the metadata directory if it exists (a missing one is not created here) and
 * notes whether it records a store. */
static int probe_meta(struct engine *eng, struct sb_probe *p)
{
	uint64_t next_id;
	void *val;
	size_t len;
	int r;

	if (!dir_exists(eng->opts.meta_path))
		return 0;
	r = open_meta(eng);
	if (r < 0)
		return r;
	r = meta_get(eng->meta, ONDISK_KEY_STORE, 1, &val, &len);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	p->meta_record = true;
	if (ondisk_store_record_decode(val, len, p->meta_uuid, &next_id) < 0)
		memset(p->meta_uuid, 0, sizeof(p->meta_uuid));
	free(val);
	return 0;
}

/* An existing store must have the size asked for, or be grown to it (opts.grow). */
static int check_size(struct engine *eng)
{
	uint64_t want = eng->opts.store_size, have = seg_dev_size(eng->segs);

	if (!want || want == have || seg_dev_created(eng->segs) || (want > have && eng->opts.grow))
		return 0;
	if (want > have)
		log_msg(LOG_ERROR, ENG_LOG, "store %s is %s, not the %s asked for: grow it "
			"explicitly (quilld --grow), or leave the size out to use it as it is",
			eng->opts.store_path, size_str(have, 0), size_str(want, 1));
	else
		log_msg(LOG_ERROR, ENG_LOG, "store %s is %s, larger than the %s asked for: a "
			"store never shrinks; leave the size out to use it as it is",
			eng->opts.store_path, size_str(have, 0), size_str(want, 1));
	return -EINVAL;
}

/* The slots the superblock describes must be on the device. */
static int check_geometry(struct engine *eng)
{
	uint64_t end = eng->sb.data_offset + (uint64_t)eng->sb.segment_count * eng->sb.segment_size;

	if (end <= seg_dev_size(eng->segs))
		return 0;
	log_msg(LOG_ERROR, ENG_LOG, "store %s is %s, but its superblock describes %u segments "
		"ending at %" PRIu64 " bytes: the file was truncated, or this is not the device "
		"it was formatted on", eng->opts.store_path, size_str(seg_dev_size(eng->segs), 0),
		eng->sb.segment_count, end);
	return -EINVAL;
}

/* Why a device without a valid superblock is not blank, for the message; NULL if it
 * is blank. */
static const char *not_blank_why(struct engine *eng, const struct sb_probe *p, char *buf,
				 size_t len)
{
	char uuid[37];

	if (p->log_block != NOWHERE) {
		snprintf(buf, len, "it holds a quill log (a segment block at offset %" PRIu64 ")",
			 p->log_block);
	} else if (p->meta_record) {
		eng_uuid_str(p->meta_uuid, uuid);
		snprintf(buf, len, "metadata directory %s indexes store %s", eng->opts.meta_path,
			 uuid);
	} else if (p->nonzero != NOWHERE) {
		snprintf(buf, len, "the superblock area is not zero (offset %" PRIu64 ")",
			 p->nonzero);
	} else {
		return NULL;
	}
	return buf;
}

/* Formatting as asked: a device holding a quill log needs destroy_data too. */
static int check_destroy(struct engine *eng, const struct sb_probe *p)
{
	if (p->log_block == NOWHERE || eng->opts.destroy_data)
		return 0;
	log_msg(LOG_ERROR, ENG_LOG, "%s holds a quill log (a segment block at offset %" PRIu64
		"): formatting it would destroy its volumes. Refusing; nothing was changed. Add "
		"--destroy-data to --format to do it anyway", eng->opts.store_path, p->log_block);
	return -ENOTEMPTY;
}

/* No valid superblock: format only a blank store, or one the caller asked for. */
static int plan_without_superblock(struct engine *eng, const struct sb_probe *p, bool *format)
{
	const char *path = eng->opts.store_path;
	char why[PATH_MAX + 128];

	if (!not_blank_why(eng, p, why, sizeof(why))) {
		if (eng->opts.format || eng->opts.reformat) {
			*format = true;
			return 0;
		}
		log_msg(LOG_ERROR, ENG_LOG, "%s: not a quill store (no superblock); format it first",
			path);
		return -ENOENT;
	}
	if (eng->opts.reformat) {
		*format = true;
		return check_destroy(eng, p);
	}
	log_msg(LOG_ERROR, ENG_LOG, "%s: no valid superblock (block 0: %s; copy at offset %u: "
		"%s) and %s. Refusing to start; nothing was changed. `quill-inspect %s` shows what "
		"is there; restore the store from a backup, or make it a new, empty store with "
		"quilld --format%s and an empty metadata directory (everything on it is lost)", path,
		sb_err_str(eng->sb_err[SB_MAIN]), QUILL_SB_COPY_OFFSET,
		sb_err_str(eng->sb_err[SB_COPY]), why, path,
		p->log_block != NOWHERE ? " --destroy-data" : "");
	return eng->sb_err[SB_MAIN] == -ENOENT ? eng->sb_err[SB_COPY] : eng->sb_err[SB_MAIN];
}

int eng_sb_read(struct engine *eng)
{
	int r = read_both(eng);

	if (r == 0 && eng->sb_err[SB_MAIN] != 0 && eng->sb_err[SB_COPY] != 0)
		r = eng->sb_err[SB_MAIN] == -ENOENT ? eng->sb_err[SB_COPY] : eng->sb_err[SB_MAIN];
	return r;
}

int eng_sb_load(struct engine *eng, bool *format)
{
	struct sb_probe p = { .log_block = NOWHERE, .nonzero = NOWHERE };
	bool valid;
	char uuid[37];
	int r;

	*format = false;
	r = read_both(eng);
	if (r == 0)
		r = check_size(eng);
	if (r == 0)
		r = probe_meta(eng, &p);
	if (r < 0)
		return r;
	valid = eng->sb_err[SB_MAIN] == 0 || eng->sb_err[SB_COPY] == 0;
	if (!valid && eng->sb_old_version && eng->sb_old_version < QUILL_FORMAT_VERSION) {
		/* version 1: its summaries have no durable mark and its engine did not bound
		 * the batches in flight, so replay could not tell a tear from corruption;
		 * version 2: a quill of that version may still open it, and would take a
		 * ZERO entry written here for a damaged summary (docs/format.md);
		 * version 3: its segments are named by slot and its volumes have no family
		 * uid, which version 4's map, headers and segment table need;
		 * version 4: a quill of that version would take the family checkpoints
		 * (MAPS, FCKPT entries) written here for damaged summaries */
		log_msg(LOG_ERROR, ENG_LOG, "%s: store of format version %u; this quill reads "
			"version %u only: copy its volumes out with the quill that wrote it (quill "
			"export) into a new store. Nothing was changed", eng->opts.store_path,
			eng->sb_old_version, QUILL_FORMAT_VERSION);
		return -EPROTO;
	}
	if ((!valid || eng->opts.reformat) && !seg_dev_created(eng->segs)) {
		if (!valid)
			log_msg(LOG_INFO, ENG_LOG, "%s: no valid superblock; looking for quill data "
				"on it (reads what was ever written of its %s)", eng->opts.store_path,
				size_str(seg_dev_size(eng->segs), 0));
		r = scan_device(eng, &p);
		if (r < 0)
			return r;
	}
	if (!valid)
		r = plan_without_superblock(eng, &p, format);
	else if (eng->opts.reformat)
		r = check_destroy(eng, &p);
	if (r < 0)
		return r;
	if (valid && eng->opts.reformat)
		*format = true;
	if (*format && p.meta_record) {
		eng_uuid_str(p.meta_uuid, uuid);
		log_msg(LOG_ERROR, ENG_LOG, "metadata directory %s holds the index of store %s: "
			"a store being formatted needs an empty one. Refusing; nothing was changed. "
			"Move it away (or remove it) first", eng->opts.meta_path, uuid);
		return -EEXIST;
	}
	if (*format && eng->opts.rebuild_meta) {
		log_msg(LOG_ERROR, ENG_LOG, "%s: no valid superblock: there is nothing to rebuild "
			"the metadata from. Refusing; nothing was changed", eng->opts.store_path);
		return -EINVAL;
	}
	if (*format)
		return eng->meta ? 0 : open_meta(eng);
	if (eng->sb_err[SB_MAIN] != 0)
		log_msg(LOG_WARN, ENG_LOG, "%s: superblock at block 0: %s; starting from its copy "
			"at offset %u (block 0 is rewritten from it once the metadata agrees)", eng->opts.store_path,
			sb_err_str(eng->sb_err[SB_MAIN]), QUILL_SB_COPY_OFFSET);
	r = check_geometry(eng);
	if (r == 0 && !eng->meta && eng->opts.rebuild_meta)
		r = open_meta(eng); /* a new, empty directory for the rebuild */
	else if (r == 0 && !eng->meta) {
		eng_uuid_str(eng->sb.uuid, uuid);
		log_msg(LOG_ERROR, ENG_LOG, "metadata directory %s does not exist: store %s (uuid "
			"%s) is formatted and its volume table lives there. Give the right --meta, or "
			"restore the directory", eng->opts.meta_path, eng->opts.store_path, uuid);
		r = -EINVAL;
	}
	return r;
}

/* Writes buf (one superblock block) to the places asked for, the copy first (a crash
 * in between leaves block 0 as it was, and block 0 wins), then syncs. */
static int write_places(struct engine *eng, const uint8_t *buf, bool main, bool copy)
{
	int r = 0;

	if (copy)
		r = seg_dev_write_sync(eng->segs, sb_offset[SB_COPY], buf, QUILL_BLOCK_SIZE);
	if (r == 0 && main)
		r = seg_dev_write_sync(eng->segs, sb_offset[SB_MAIN], buf, QUILL_BLOCK_SIZE);
	if (r == 0)
		r = seg_dev_flush_sync(eng->segs);
	if (r < 0)
		log_msg(LOG_ERROR, ENG_LOG, "%s: writing the superblock: %s", eng->opts.store_path,
			err_str(r));
	return r;
}

/* A new superblock (format, grow): eng->sb encoded, in both places. */
static int write_new(struct engine *eng)
{
	uint8_t *buf = seg_buf_alloc(QUILL_BLOCK_SIZE);
	int r;

	if (!buf)
		return -ENOMEM;
	ondisk_superblock_encode(&eng->sb, buf);
	r = write_places(eng, buf, true, true);
	seg_buf_free(buf);
	return r;
}

/* A repair copies the valid place's bytes as they are (whatever format version wrote
 * them), never a re-encoding. */
static int copy_place(struct engine *eng, int from)
{
	uint8_t *buf = seg_buf_alloc(QUILL_BLOCK_SIZE);
	int r;

	if (!buf)
		return -ENOMEM;
	r = seg_dev_read_sync(eng->segs, sb_offset[from], buf, QUILL_BLOCK_SIZE);
	if (r == 0)
		r = write_places(eng, buf, from == SB_COPY, from == SB_MAIN);
	else
		log_msg(LOG_ERROR, ENG_LOG, "%s: reading the superblock: %s", eng->opts.store_path,
			err_str(r));
	seg_buf_free(buf);
	return r;
}

int eng_sb_format(struct engine *eng)
{
	uint64_t size = seg_dev_size(eng->segs);
	uint32_t seg = eng->opts.segment_size ? eng->opts.segment_size : DEFAULT_SEGMENT_SIZE;
	int r;

	if (seg % QUILL_BLOCK_SIZE || seg < 16 * QUILL_BLOCK_SIZE ||
	    seg / QUILL_BLOCK_SIZE > 65536) {
		log_msg(LOG_ERROR, ENG_LOG, "segment size %u: must be a multiple of 4 KiB "
			"between 64 KiB and 256 MiB", seg);
		return -EINVAL;
	}
	if (size < QUILL_DATA_OFFSET + 4ull * seg) {
		log_msg(LOG_ERROR, ENG_LOG, "store of %" PRIu64 " bytes is too small: it needs room "
			"for at least 4 segments of %u bytes after 1 MiB", size, seg);
		return -ENOSPC;
	}
	if (eng->opts.reformat && !seg_dev_created(eng->segs))
		log_msg(LOG_WARN, ENG_LOG, "%s: formatting as asked (--format%s): whatever it held "
			"is gone", eng->opts.store_path, eng->opts.destroy_data ? " --destroy-data" : "");
	memset(&eng->sb, 0, sizeof(eng->sb));
	if (getrandom(eng->sb.uuid, sizeof(eng->sb.uuid), 0) != sizeof(eng->sb.uuid))
		return -errno;
	eng->sb.block_size = QUILL_BLOCK_SIZE;
	eng->sb.segment_size = seg;
	eng->sb.segment_count = (uint32_t)((size - QUILL_DATA_OFFSET) / seg);
	eng->sb.data_offset = QUILL_DATA_OFFSET;
	eng->sb.device_size = size;
	eng->sb.created_ns = eng_now_realtime_ns();
	r = write_new(eng);
	if (r == 0)
		log_msg(LOG_INFO, ENG_LOG, "formatted %s: %u segments of %u KiB",
			eng->opts.store_path, eng->sb.segment_count, seg / 1024);
	return r;
}

/* More slots where the device has grown (a file is extended to opts.store_size). */
static int grow(struct engine *eng)
{
	uint64_t want = eng->opts.store_size, size, count;
	uint32_t before = eng->sb.segment_count;
	int r;

	size = want > seg_dev_size(eng->segs) ? want : seg_dev_size(eng->segs);
	/* refused before the file is extended: it opens as it was */
	if ((size - eng->sb.data_offset) / eng->sb.segment_size > before &&
	    (r = seg_remote_check_grow(eng)) < 0) {
		log_msg(LOG_ERROR, ENG_LOG, "%s: cannot grow: segments of this store's log are "
			"kept only on other nodes (remote entries, numbered past its %u slots), "
			"and a grow would renumber them", eng->opts.store_path, before);
		return r;
	}
	if (want > seg_dev_size(eng->segs)) {
		r = seg_dev_grow(eng->segs, want);
		if (r < 0) {
			log_msg(LOG_ERROR, ENG_LOG, "%s: cannot grow to %s: %s", eng->opts.store_path,
				size_str(want, 0), err_str(r));
			return r;
		}
	}
	size = seg_dev_size(eng->segs);
	count = (size - eng->sb.data_offset) / eng->sb.segment_size;
	if (count > UINT32_MAX)
		count = UINT32_MAX;
	if (count <= before) {
		log_msg(LOG_INFO, ENG_LOG, "%s: nothing to grow (%s, %u segments)",
			eng->opts.store_path, size_str(size, 0), before);
		return 0;
	}
	eng->sb.segment_count = (uint32_t)count;
	eng->sb.device_size = size;
	r = write_new(eng);
	if (r == 0)
		log_msg(LOG_INFO, ENG_LOG, "grew %s to %s: %u segments, %u before",
			eng->opts.store_path, size_str(size, 0), eng->sb.segment_count, before);
	return r;
}

int eng_sb_repair(struct engine *eng)
{
	bool fix_main = eng->sb_err[SB_MAIN] != 0, fix_copy = !fix_main && eng->sb_copy_stale;
	int r = 0;

	if (fix_copy && eng->sb.data_offset < QUILL_SB_COPY_OFFSET + QUILL_BLOCK_SIZE) {
		fix_copy = false; /* no room before slot 0: not a store quill formatted */
		log_msg(LOG_WARN, ENG_LOG, "%s: data starts at %" PRIu64 ": no room for a "
			"superblock copy", eng->opts.store_path, eng->sb.data_offset);
	}
	if (fix_copy && eng->sb_err[SB_COPY] == -ENOENT && !fix_main)
		log_msg(LOG_INFO, ENG_LOG, "%s: writing the superblock copy at offset %u (a store "
			"formatted without one)", eng->opts.store_path, QUILL_SB_COPY_OFFSET);
	else if (fix_copy && !fix_main)
		log_msg(LOG_WARN, ENG_LOG, "%s: superblock copy at offset %u: %s; rewritten from "
			"block 0", eng->opts.store_path, QUILL_SB_COPY_OFFSET,
			eng->sb_err[SB_COPY] ? sb_err_str(eng->sb_err[SB_COPY]) : "differs");
	if (fix_main || fix_copy)
		r = copy_place(eng, fix_main ? SB_COPY : SB_MAIN);
	if (r == 0 && eng->opts.grow)
		r = grow(eng);
	return r;
}
