/* tools/inspect.c — quill-inspect: dump and check the on-disk format of a store.
 *
 *   quill-inspect STORE [--segments] [--batches SLOT] [--no-data] [--catalog]
 *
 * --catalog prints the catalog found in the log: the volumes, snapshots and clones
 * that `quilld --rebuild-meta` would rebuild (engine_catalog_scan()), without RocksDB.
 *
 * Prints the superblock and a summary of the segment slots; --segments lists every
 * slot; --batches SLOT lists the batches of one slot. Every used slot's log is walked
 * the way start-up replay walks it (engine/replay.c): batch after batch from block 1
 * until one is not valid, checking the data CRCs (unless --no-data).
 *
 * A torn batch (valid summary, data CRC mismatch) at the end of a slot's log is what
 * a crash leaves behind; replay drops it, so it is reported but is not damage. Damage
 * is what a crash cannot explain: a bad superblock or slot header, two slots with the
 * same generation, sequence numbers going backwards or used twice, or a bad batch followed by more
 * valid batches than the engine keeps in flight.
 *
 * Opens the store read-only in spirit: it never writes. Exit 0 consistent, 1 damage
 * found, 2 usage or I/O error.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/crc32c.h"
#include "engine/engine.h"
#include "engine/ondisk.h"
#include "store/store.h"

/* Batches a volume may have in flight at a crash (ENG_MAX_INFLIGHT_BATCHES in
 * engine/engine_internal.h): this many valid batches behind a torn one are possible. */
#define INFLIGHT_BATCHES_MAX 2u

enum slot_kind { SK_NEVER, SK_USED, SK_FREE, SK_FOREIGN, SK_DAMAGED };

struct slot_info {
	enum slot_kind kind;
	struct segment_header h;
	int decode_err;
	uint32_t batches;
	uint32_t end_block;   /* first block after the last valid batch */
	uint64_t last_seq;
	uint64_t data_blocks;
	bool torn;
	uint32_t beyond;      /* valid batches found behind a torn one */
};

struct seq_ref {
	uint64_t seq;
	uint32_t slot;
	bool torn;
};

struct inspect {
	const char *path;
	struct store *st;
	struct superblock sb;
	uint32_t bps;         /* blocks per segment */
	bool list_segments;
	bool check_data;
	bool catalog;
	int64_t batches_slot; /* -1: none */
	uint8_t *seg;         /* one slot's contents */
	struct summary *sum;
	struct slot_info *slots;
	struct seq_ref *seqs;  /* every batch seen, for the store-wide uniqueness check */
	size_t nseqs, capseqs;
	unsigned damage;
};

static void damage(struct inspect *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void damage(struct inspect *in, const char *fmt, ...)
{
	va_list ap;

	in->damage++;
	printf("DAMAGE: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static const char *decode_err_str(int err)
{
	switch (err) {
	case -ENOENT:
		return "no magic";
	case -EILSEQ:
		return "bad CRC";
	case -EPROTO:
		return "field out of range";
	case -EINVAL:
		return "short buffer";
	default:
		return strerror(-err);
	}
}

static void print_uuid(const uint8_t u[16], char *out)
{
	for (int i = 0; i < 16; i++)
		out += sprintf(out, "%02x%s", u[i], (i == 3 || i == 5 || i == 7 || i == 9) ? "-" : "");
}

static int read_superblock(struct inspect *in)
{
	uint8_t *buf = store_buf_alloc(QUILL_BLOCK_SIZE);
	char uuid[40], when[64];
	struct tm tm;
	time_t t;
	int rc;

	if (!buf)
		return -ENOMEM;
	rc = store_read_sync(in->st, 0, buf, QUILL_BLOCK_SIZE);
	if (rc < 0) {
		fprintf(stderr, "quill-inspect: reading the superblock: %s\n", strerror(-rc));
		store_buf_free(buf);
		return rc;
	}
	rc = ondisk_superblock_decode(buf, QUILL_BLOCK_SIZE, &in->sb);
	store_buf_free(buf);
	if (rc < 0) {
		damage(in, "superblock: %s (not a quill store, or its superblock is damaged)",
		       decode_err_str(rc));
		return rc;
	}
	in->bps = in->sb.segment_size / QUILL_BLOCK_SIZE;
	print_uuid(in->sb.uuid, uuid);
	t = (time_t)(in->sb.created_ns / 1000000000ull);
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
	printf("superblock: format %u, block %u, uuid %s\n", QUILL_FORMAT_VERSION,
	       in->sb.block_size, uuid);
	printf("  segments: %u slots of %u bytes (%u blocks) from offset %" PRIu64 "\n",
	       in->sb.segment_count, in->sb.segment_size, in->bps, in->sb.data_offset);
	printf("  device: %" PRIu64 " bytes at format, %" PRIu64 " now; created %s\n",
	       in->sb.device_size, store_size(in->st), when);
	if (in->sb.data_offset + (uint64_t)in->sb.segment_count * in->sb.segment_size >
	    store_size(in->st))
		damage(in, "superblock: %u slots end past the device (%" PRIu64 " bytes)",
		       in->sb.segment_count, store_size(in->st));
	return 0;
}

/* Checks a batch's data blocks; returns the index of the first bad entry or -1. */
static int bad_data_entry(const struct summary *s, const uint8_t *data, uint32_t *got)
{
	uint32_t d = 0;

	for (uint32_t i = 0; i < s->nentries; i++) {
		if (s->entries[i].kind == ONDISK_ENTRY_TRIM)
			continue;
		*got = crc32c(data + (size_t)d++ * QUILL_BLOCK_SIZE, QUILL_BLOCK_SIZE);
		if (*got != s->entries[i].data_crc)
			return (int)i;
	}
	return -1;
}

/* Decodes the batch at block pos of the slot in in->seg into in->sum. Returns the block
 * after it, 0 at the end of the log (no batch of this slot's generation), or -1 when
 * the batch is torn/bad (*why says how). */
static int64_t batch_at(struct inspect *in, const struct segment_header *h, uint32_t pos,
			char *why, size_t whylen)
{
	struct summary *s = in->sum;
	int rc = ondisk_summary_decode(in->seg + (size_t)pos * QUILL_BLOCK_SIZE, QUILL_BLOCK_SIZE, s);
	uint32_t got;
	int bad;

	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		snprintf(why, whylen, "summary: %s", decode_err_str(rc));
		return -1;
	}
	if (s->generation != h->generation || s->volume_id != h->volume_id)
		return 0; /* an older use of this slot */
	if (pos + 1 + s->data_blocks > in->bps) {
		snprintf(why, whylen, "batch seq %" PRIu64 ": %u data blocks run past the slot",
			 s->seq, s->data_blocks);
		return -1;
	}
	if (in->check_data) {
		bad = bad_data_entry(s, in->seg + (size_t)(pos + 1) * QUILL_BLOCK_SIZE, &got);
		if (bad >= 0) {
			snprintf(why, whylen, "batch seq %" PRIu64 ": entry %d (lba %" PRIu64
				 ") data CRC %08x, summary says %08x", s->seq, bad,
				 s->entries[bad].lba, got, s->entries[bad].data_crc);
			return -1;
		}
	}
	return pos + 1 + s->data_blocks;
}

static void print_batch(const struct summary *s, uint32_t pos, const char *status)
{
	uint32_t trims = 0, moves = 0;
	uint64_t lo = UINT64_MAX, hi = 0;

	for (uint32_t i = 0; i < s->nentries; i++) {
		const struct summary_entry *e = &s->entries[i];

		trims += e->kind == ONDISK_ENTRY_TRIM;
		moves += e->kind == ONDISK_ENTRY_MOVE;
		if (e->lba < lo)
			lo = e->lba;
		if (e->lba + e->nblocks - 1 > hi)
			hi = e->lba + e->nblocks - 1;
	}
	printf("  block %4u: seq %-8" PRIu64 " entries %3u  data %3u  trims %3u  moves %3u  "
	       "lba %" PRIu64 "..%" PRIu64 "  %s\n", pos, s->seq, s->nentries, s->data_blocks, trims,
	       moves, lo, hi, status);
}

static void note_seq(struct inspect *in, uint64_t seq, uint32_t slot, bool torn)
{
	if (in->nseqs == in->capseqs) {
		size_t cap = in->capseqs ? in->capseqs * 2 : 1024;
		struct seq_ref *v = realloc(in->seqs, cap * sizeof(*v));

		if (!v)
			return; /* the check is best effort under memory pressure */
		in->seqs = v;
		in->capseqs = cap;
	}
	in->seqs[in->nseqs++] = (struct seq_ref){ seq, slot, torn };
}

/* Counts the valid batches behind a torn one (a crash leaves a few in flight). */
static uint32_t batches_beyond(struct inspect *in, const struct segment_header *h,
			       uint32_t pos)
{
	uint32_t n = 0;
	char why[160];

	/* skip the torn batch: its summary may still say how long it is */
	if (ondisk_summary_decode(in->seg + (size_t)pos * QUILL_BLOCK_SIZE, QUILL_BLOCK_SIZE,
				  in->sum) < 0 || in->sum->generation != h->generation)
		return 0;
	pos += 1 + in->sum->data_blocks;
	while (pos < in->bps) {
		int64_t next = batch_at(in, h, pos, why, sizeof(why));

		if (next <= 0)
			break;
		n++;
		pos = (uint32_t)next;
	}
	return n;
}

static void walk_slot(struct inspect *in, uint32_t idx, struct slot_info *si, bool verbose)
{
	uint64_t prev_seq = 0;
	uint32_t pos = 1;
	char why[160] = "";

	while (pos < in->bps) {
		int64_t next = batch_at(in, &si->h, pos, why, sizeof(why));

		if (next == 0)
			break;
		if (next < 0) {
			si->torn = true;
			if (ondisk_summary_decode(in->seg + (size_t)pos * QUILL_BLOCK_SIZE,
						  QUILL_BLOCK_SIZE, in->sum) == 0)
				note_seq(in, in->sum->seq, idx, true);
			si->beyond = batches_beyond(in, &si->h, pos);
			if (verbose)
				printf("  block %4u: TORN %s\n", pos, why);
			if (si->beyond > INFLIGHT_BATCHES_MAX - 1)
				damage(in, "slot %u: %s, followed by %u valid batches (replay loses them)",
				       idx, why, si->beyond);
			else if (si->beyond)
				printf("  slot %u: %u valid batch(es) behind the torn one: in flight at "
				       "the crash, never acknowledged, ignored by replay\n", idx, si->beyond);
			break;
		}
		if (in->sum->seq <= prev_seq)
			damage(in, "slot %u block %u: seq %" PRIu64 " after seq %" PRIu64, idx, pos,
			       in->sum->seq, prev_seq);
		if (si->batches == 0 && in->sum->seq < si->h.first_seq)
			damage(in, "slot %u: first batch seq %" PRIu64 " < header first_seq %" PRIu64,
			       idx, in->sum->seq, si->h.first_seq);
		if (verbose)
			print_batch(in->sum, pos, in->check_data ? "ok" : "(data not checked)");
		note_seq(in, in->sum->seq, idx, false);
		prev_seq = in->sum->seq;
		si->last_seq = in->sum->seq;
		si->data_blocks += in->sum->data_blocks;
		si->batches++;
		pos = (uint32_t)next;
	}
	si->end_block = pos;
	if (verbose)
		printf("  end of log at block %u of %u%s\n", pos, in->bps,
		       si->torn ? " (torn batch dropped by replay)" : "");
}

static const char *kind_str(enum slot_kind k)
{
	static const char *const names[] = { "never used", "USED", "FREE", "foreign", "DAMAGED" };

	return names[k];
}

static int scan_slot(struct inspect *in, uint32_t idx)
{
	struct slot_info *si = &in->slots[idx];
	uint64_t off = in->sb.data_offset + (uint64_t)idx * in->sb.segment_size;
	bool verbose = in->batches_slot == (int64_t)idx;
	size_t len = in->sb.segment_size;
	int rc;

	/* the header alone unless the log is walked */
	rc = store_read_sync(in->st, off, in->seg, QUILL_BLOCK_SIZE);
	if (rc < 0)
		return rc;
	rc = ondisk_segment_header_decode(in->seg, QUILL_BLOCK_SIZE, &si->h);
	si->decode_err = rc;
	if (rc == -ENOENT) {
		si->kind = SK_NEVER;
	} else if (rc < 0) {
		si->kind = SK_DAMAGED;
		damage(in, "slot %u header: %s", idx, decode_err_str(rc));
	} else if (memcmp(si->h.uuid, in->sb.uuid, sizeof(si->h.uuid)) != 0) {
		si->kind = SK_FOREIGN;
	} else {
		si->kind = si->h.state == ONDISK_SEG_USED ? SK_USED : SK_FREE;
	}
	if (verbose)
		printf("slot %u at offset %" PRIu64 ": %s", idx, off, kind_str(si->kind));
	if (si->kind == SK_USED || si->kind == SK_FREE) {
		if (verbose)
			printf(", volume %" PRIu64 ", generation %" PRIu64 ", first seq %" PRIu64,
			       si->h.volume_id, si->h.generation, si->h.first_seq);
	}
	if (verbose)
		printf("\n");
	if (si->kind != SK_USED && !verbose)
		return 0;
	if (si->kind != SK_USED) {
		printf("  (not in use: no log to walk)\n");
		return 0;
	}
	rc = store_read_sync(in->st, off, in->seg, len);
	if (rc < 0)
		return rc;
	walk_slot(in, idx, si, verbose);
	return 0;
}

static int cmp_gen(const void *a, const void *b)
{
	const struct slot_info *x = *(const struct slot_info *const *)a;
	const struct slot_info *y = *(const struct slot_info *const *)b;

	return x->h.generation < y->h.generation ? -1 : x->h.generation > y->h.generation;
}

static void check_generations(struct inspect *in)
{
	struct slot_info **v = calloc(in->sb.segment_count, sizeof(*v));
	uint32_t n = 0;

	if (!v)
		return;
	for (uint32_t i = 0; i < in->sb.segment_count; i++)
		if (in->slots[i].kind == SK_USED)
			v[n++] = &in->slots[i];
	qsort(v, n, sizeof(*v), cmp_gen);
	for (uint32_t i = 1; i < n; i++)
		if (v[i]->h.generation == v[i - 1]->h.generation)
			damage(in, "slots %td and %td share generation %" PRIu64, v[i - 1] - in->slots,
			       v[i] - in->slots, v[i]->h.generation);
	free(v);
}

static int cmp_seq(const void *a, const void *b)
{
	const struct seq_ref *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Batch sequence numbers are store-wide and strictly increasing: never reused, not
 * even the number of a torn batch (replay would otherwise meet two batches with it). */
static void check_seqs(struct inspect *in)
{
	qsort(in->seqs, in->nseqs, sizeof(*in->seqs), cmp_seq);
	for (size_t i = 1; i < in->nseqs; i++) {
		const struct seq_ref *a = &in->seqs[i - 1], *b = &in->seqs[i];

		if (a->seq != b->seq)
			continue;
		if (a->torn || b->torn)
			printf("WARNING: seq %" PRIu64 " of the torn batch in slot %u was used again "
			       "in slot %u\n", a->seq, a->torn ? a->slot : b->slot,
			       a->torn ? b->slot : a->slot);
		else
			damage(in, "seq %" PRIu64 " appears in slots %u and %u", a->seq, a->slot,
			       b->slot);
	}
}

static void print_segments(const struct inspect *in)
{
	printf("slot  state       volume  generation  first_seq  last_seq  batches  data  end\n");
	for (uint32_t i = 0; i < in->sb.segment_count; i++) {
		const struct slot_info *si = &in->slots[i];

		if (si->kind == SK_USED)
			printf("%4u  %-10s  %6" PRIu64 "  %10" PRIu64 "  %9" PRIu64 "  %8" PRIu64
			       "  %7u  %4" PRIu64 "  %3u%s\n", i, kind_str(si->kind), si->h.volume_id,
			       si->h.generation, si->h.first_seq, si->last_seq, si->batches,
			       si->data_blocks, si->end_block, si->torn ? "  torn tail" : "");
		else if (si->kind == SK_FREE)
			printf("%4u  %-10s  %6" PRIu64 "  %10" PRIu64 "\n", i, kind_str(si->kind),
			       si->h.volume_id, si->h.generation);
		else if (si->kind != SK_NEVER)
			printf("%4u  %-10s\n", i, kind_str(si->kind));
		else {
			uint32_t last = i;

			while (last + 1 < in->sb.segment_count &&
			       in->slots[last + 1].kind == SK_NEVER)
				last++;
			if (last > i)
				printf("%4u  %-10s  (through slot %u)\n", i, kind_str(si->kind), last);
			else
				printf("%4u  %-10s\n", i, kind_str(si->kind));
			i = last;
		}
	}
}

static void print_summary(const struct inspect *in)
{
	uint32_t count[SK_DAMAGED + 1] = { 0 };
	uint64_t batches = 0, data = 0, torn = 0;

	for (uint32_t i = 0; i < in->sb.segment_count; i++) {
		const struct slot_info *si = &in->slots[i];

		count[si->kind]++;
		batches += si->batches;
		data += si->data_blocks;
		torn += si->torn;
	}
	printf("slots: %u used, %u free, %u never used, %u foreign, %u damaged\n",
	       count[SK_USED], count[SK_FREE], count[SK_NEVER], count[SK_FOREIGN],
	       count[SK_DAMAGED]);
	printf("logs: %" PRIu64 " batches, %" PRIu64 " data blocks (live and garbage), "
	       "%" PRIu64 " torn tails%s\n", batches, data, torn,
	       in->check_data ? "" : " (data CRCs not checked)");
}

static int print_layer(const struct engine_layer_info *l, void *arg)
{
	unsigned *n = arg;

	if ((*n)++ == 0)
		printf("catalog in the log (what a metadata rebuild makes):\n"
		       "%6s  %-8s  %-40s  %14s  %6s  %8s  %10s  %s\n", "layer", "kind", "name",
		       "size", "parent", "overlap", "own blocks", "notes");
	if (l->snapshot) {
		int w = 39 - (int)strlen(l->volume);

		printf("%6" PRIu64 "  %-8s  %s@%-*s", l->id, "snapshot", l->volume, w > 0 ? w : 0,
		       l->name);
	} else
		printf("%6" PRIu64 "  %-8s  %-40s", l->id, "volume", l->name);
	printf("  %14" PRIu64 "  %6" PRIu64 "  %8" PRIu64 "  %10" PRIu64 "  uid %" PRIu64 "%s",
	       l->size, l->parent_id, l->overlap, l->own_blocks, l->uid,
	       l->flattening ? ", flattening" : "");
	if (l->merged)
		printf(", %" PRIu64 " merged snapshot%s", l->merged, l->merged > 1 ? "s" : "");
	printf("\n");
	return 0;
}

/* After the store is closed: the engine opens it on its own. */
static int print_catalog(const char *path)
{
	unsigned n = 0;
	int r = engine_catalog_scan(path, print_layer, &n);

	if (r < 0)
		fprintf(stderr, "quill-inspect: catalog: %s\n", strerror(-r));
	else if (!n)
		printf("catalog in the log: no volumes\n");
	return r;
}

static void usage(void)
{
	fprintf(stderr, "usage: quill-inspect STORE [--segments] [--batches SLOT] [--no-data]\n"
			"  --segments      list every segment slot\n"
			"  --batches SLOT  list the batches of one slot\n"
			"  --no-data       do not read data blocks to check their CRCs\n"
			"  --catalog       print the catalog in the log (what --rebuild-meta makes)\n"
			"exit status: 0 consistent, 1 damage found, 2 usage or I/O error\n");
}

static int parse_args(struct inspect *in, int argc, char **argv)
{
	in->check_data = true;
	in->batches_slot = -1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--segments")) {
			in->list_segments = true;
		} else if (!strcmp(argv[i], "--no-data")) {
			in->check_data = false;
		} else if (!strcmp(argv[i], "--catalog")) {
			in->catalog = true;
		} else if (!strcmp(argv[i], "--batches") && i + 1 < argc) {
			char *end;

			in->batches_slot = strtoll(argv[++i], &end, 0);
			if (*end || in->batches_slot < 0)
				return -EINVAL;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage();
			exit(0);
		} else if (argv[i][0] != '-' && !in->path) {
			in->path = argv[i];
		} else {
			return -EINVAL;
		}
	}
	return in->path ? 0 : -EINVAL;
}

int main(int argc, char **argv)
{
	struct inspect in = { 0 };
	struct store_opts so = { 0 };
	int rc;

	if (parse_args(&in, argc, argv) < 0) {
		usage();
		return 2;
	}
	so.path = in.path;
	so.queue_depth = 8;
	rc = store_open(&so, &in.st);
	if (rc < 0) {
		fprintf(stderr, "quill-inspect: %s: %s\n", in.path, strerror(-rc));
		return 2;
	}
	rc = read_superblock(&in);
	if (rc < 0)
		goto out_close;
	if (in.batches_slot >= (int64_t)in.sb.segment_count) {
		fprintf(stderr, "quill-inspect: slot %" PRId64 " out of range (0..%u)\n",
			in.batches_slot, in.sb.segment_count - 1);
		rc = -EINVAL;
		goto out_close;
	}
	in.seg = store_buf_alloc(in.sb.segment_size);
	in.sum = malloc(sizeof(*in.sum));
	in.slots = calloc(in.sb.segment_count, sizeof(*in.slots));
	if (!in.seg || !in.sum || !in.slots) {
		rc = -ENOMEM;
		goto out_free;
	}
	for (uint32_t i = 0; i < in.sb.segment_count && rc == 0; i++)
		rc = scan_slot(&in, i);
	if (rc < 0) {
		fprintf(stderr, "quill-inspect: reading slots: %s\n", strerror(-rc));
		goto out_free;
	}
	check_generations(&in);
	check_seqs(&in);
	if (in.list_segments)
		print_segments(&in);
	print_summary(&in);
out_free:
	store_buf_free(in.seg);
	free(in.sum);
	free(in.slots);
	free(in.seqs);
out_close:
	store_close(in.st);
	if (rc == 0 && in.catalog)
		rc = print_catalog(in.path);
	if (rc < 0 && in.damage == 0)
		return 2;
	printf("%s\n", in.damage ? "DAMAGED" : "consistent");
	return in.damage ? 1 : 0;
}
