/* tests/integration/tear.c — see tear.h. */
#include "tear.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ondisk.h"
#include "metadata/meta.h"
#include "store/store.h"

struct newest {
	bool found;
	uint32_t slot;
	uint32_t pos; /* block of the summary within the slot */
	struct summary sum;
};

static uint64_t slot_off(const struct superblock *sb, uint32_t slot, uint32_t block)
{
	return sb->data_offset + (uint64_t)slot * sb->segment_size +
	       (uint64_t)block * QUILL_BLOCK_SIZE;
}

typedef void (*batch_fn)(uint32_t slot, uint32_t pos, const struct summary *s, void *arg);

/* Walks one slot's batches (summaries only), calling fn for each. */
static int scan_slot(struct store *st, const struct superblock *sb, uint32_t slot,
		     uint8_t *buf, struct summary *tmp, batch_fn fn, void *arg)
{
	uint32_t bps = sb->segment_size / QUILL_BLOCK_SIZE;
	struct segment_header h;
	uint32_t pos = 1;
	int rc = store_read_sync(st, slot_off(sb, slot, 0), buf, QUILL_BLOCK_SIZE);

	if (rc < 0)
		return rc;
	if (ondisk_segment_header_decode(buf, QUILL_BLOCK_SIZE, &h) < 0 ||
	    h.state != ONDISK_SEG_USED || memcmp(h.uuid, sb->uuid, sizeof(h.uuid)) != 0)
		return 0;
	while (pos < bps) {
		rc = store_read_sync(st, slot_off(sb, slot, pos), buf, QUILL_BLOCK_SIZE);
		if (rc < 0)
			return rc;
		if (ondisk_summary_decode(buf, QUILL_BLOCK_SIZE, tmp) < 0 ||
		    tmp->generation != h.generation || pos + 1 + tmp->data_blocks > bps)
			break;
		fn(slot, pos, tmp, arg);
		pos += 1 + tmp->data_blocks;
	}
	return 0;
}

static void note_newest(uint32_t slot, uint32_t pos, const struct summary *s, void *arg)
{
	struct newest *nw = arg;

	if (!nw->found || s->seq > nw->sum.seq) {
		nw->found = true;
		nw->slot = slot;
		nw->pos = pos;
		nw->sum = *s;
	}
}

static int checkpoint_seq(const char *meta_path, uint64_t *seq)
{
	struct meta *m;
	void *val;
	size_t len;
	int rc = meta_open(meta_path, &m);

	if (rc < 0)
		return rc;
	rc = meta_get(m, "C", 1, &val, &len);
	if (rc == -ENOENT) {
		*seq = 0;
		rc = 0;
	} else if (rc == 0) {
		rc = ondisk_checkpoint_decode(val, len, seq);
		free(val);
	}
	meta_close(m);
	return rc;
}

/* Opens the store (*st: the caller closes it, even on error) and calls fn for every
 * valid batch of every used slot; *ckpt is the checkpoint's seq. buf: one block. */
static int scan_store(const char *store_path, const char *meta_path, uint64_t *ckpt,
		      struct superblock *sb, uint8_t *buf, struct summary *tmp, batch_fn fn,
		      void *arg, struct store **st)
{
	struct store_opts so = { .path = store_path, .queue_depth = 8 };
	int rc = checkpoint_seq(meta_path, ckpt);

	if (rc == 0)
		rc = store_open(&so, st);
	if (rc == 0)
		rc = store_read_sync(*st, 0, buf, QUILL_BLOCK_SIZE);
	if (rc == 0)
		rc = ondisk_superblock_decode(buf, QUILL_BLOCK_SIZE, sb);
	for (uint32_t i = 0; rc == 0 && i < sb->segment_count; i++)
		rc = scan_slot(*st, sb, i, buf, tmp, fn, arg);
	return rc;
}

/* Are all entries DATA, above the checkpoint, and every block eligible? */
static int check_eligible(struct store *st, const struct superblock *sb, const struct newest *nw,
			  uint64_t ckpt, uint8_t *data, tear_eligible_fn eligible, void *arg)
{
	int rc;

	if (nw->sum.seq <= ckpt || nw->sum.data_blocks == 0)
		return 0;
	for (uint32_t i = 0; i < nw->sum.nentries; i++)
		if (nw->sum.entries[i].kind != ONDISK_ENTRY_DATA)
			return 0;
	rc = store_read_sync(st, slot_off(sb, nw->slot, nw->pos + 1), data,
			     (size_t)nw->sum.data_blocks * QUILL_BLOCK_SIZE);
	if (rc < 0)
		return rc;
	for (uint32_t i = 0; i < nw->sum.nentries; i++)
		if (!eligible(data + (size_t)i * QUILL_BLOCK_SIZE, nw->sum.entries[i].lba, arg))
			return 0;
	return 1;
}

int tear_newest_batch(const char *store_path, const char *meta_path,
		      tear_eligible_fn eligible, void *arg, uint64_t *seq)
{
	struct superblock sb;
	struct summary *tmp = malloc(sizeof(*tmp));
	struct newest *nw = calloc(1, sizeof(*nw));
	uint8_t *buf = store_buf_alloc(QUILL_BLOCK_SIZE * (ONDISK_SUMMARY_MAX_ENTRIES + 1));
	struct store *st = NULL;
	uint64_t ckpt;
	int rc = (tmp && nw && buf) ? 0 : -ENOMEM;

	if (rc == 0)
		rc = scan_store(store_path, meta_path, &ckpt, &sb, buf, tmp, note_newest, nw, &st);
	if (rc == 0 && nw->found)
		rc = check_eligible(st, &sb, nw, ckpt, buf, eligible, arg);
	if (rc == 1) {
		/* garbage where the last data block should be: its write never finished */
		uint8_t *last = buf + (size_t)(nw->sum.data_blocks - 1) * QUILL_BLOCK_SIZE;

		for (size_t i = 0; i < QUILL_BLOCK_SIZE; i++)
			last[i] = (uint8_t)(last[i] ^ 0xa5 ^ i);
		rc = store_write_sync(st, slot_off(&sb, nw->slot, nw->pos + nw->sum.data_blocks),
				      last, QUILL_BLOCK_SIZE);
		if (rc == 0)
			rc = store_flush_sync(st);
		if (rc == 0) {
			*seq = nw->sum.seq;
			rc = 1;
		}
	}
	store_close(st);
	store_buf_free(buf);
	free(nw);
	free(tmp);
	return rc;
}

/* ---- listing batches, flipping bytes ---- */

struct list_ctx {
	struct tear_batch *v;
	size_t n, cap;
	uint64_t ckpt;
	int err;
};

static void note_batch(uint32_t slot, uint32_t pos, const struct summary *s, void *arg)
{
	struct list_ctx *c = arg;

	if (s->seq <= c->ckpt || c->err)
		return;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct tear_batch *v = realloc(c->v, cap * sizeof(*v));

		if (!v) {
			c->err = -ENOMEM;
			return;
		}
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = (struct tear_batch){ .slot = slot, .pos = pos, .sum = *s };
}

static int cmp_batch(const void *a, const void *b)
{
	const struct tear_batch *x = a, *y = b;

	return x->sum.seq < y->sum.seq ? -1 : x->sum.seq > y->sum.seq;
}

int tear_list_batches(const char *store_path, const char *meta_path, struct tear_batch **out,
		      size_t *n)
{
	struct superblock sb;
	struct summary *tmp = malloc(sizeof(*tmp));
	uint8_t *buf = store_buf_alloc(QUILL_BLOCK_SIZE);
	struct list_ctx c = { 0 };
	struct store *st = NULL;
	int rc = (tmp && buf) ? 0 : -ENOMEM;

	if (rc == 0)
		rc = scan_store(store_path, meta_path, &c.ckpt, &sb, buf, tmp, note_batch, &c, &st);
	if (rc == 0)
		rc = c.err;
	store_close(st);
	store_buf_free(buf);
	free(tmp);
	if (rc < 0) {
		free(c.v);
		return rc;
	}
	qsort(c.v, c.n, sizeof(*c.v), cmp_batch);
	*out = c.v;
	*n = c.n;
	for (size_t i = 0; i < c.n; i++)
		c.v[i].offset = slot_off(&sb, c.v[i].slot, c.v[i].pos);
	return 0;
}

int tear_flip_byte(const char *store_path, uint64_t offset)
{
	struct store_opts so = { .path = store_path, .queue_depth = 8 };
	uint64_t block = offset - offset % QUILL_BLOCK_SIZE;
	uint8_t *buf = store_buf_alloc(QUILL_BLOCK_SIZE);
	struct store *st = NULL;
	int rc = buf ? store_open(&so, &st) : -ENOMEM;

	if (rc == 0)
		rc = store_read_sync(st, block, buf, QUILL_BLOCK_SIZE);
	if (rc == 0) {
		buf[offset - block] ^= 0x5a;
		rc = store_write_sync(st, block, buf, QUILL_BLOCK_SIZE);
	}
	if (rc == 0)
		rc = store_flush_sync(st);
	store_close(st);
	store_buf_free(buf);
	return rc;
}
