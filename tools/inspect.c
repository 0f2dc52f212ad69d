/* tools/inspect.c — quill-inspect: dump and check the on-disk format of a store.
 *
 *   quill-inspect STORE [--segments] [--batches SLOT] [--no-data] [--catalog]
 *
 * --catalog prints the catalog found in the log: the volumes, snapshots and clones
 * that `quilld --rebuild-meta` would rebuild (engine_catalog_scan()), without RocksDB.
 *
 * Prints both places of the superblock (block 0 and its copy at 1 MiB - 4 KiB, each
 * valid or what is wrong with it) and a summary of the segment slots; --segments lists every
 * slot; --batches SLOT lists the batches of one slot. Every used slot's log is walked
 * the way start-up replay walks it (engine/replay.c): batch after batch from block 1
 * until one is not valid, checking the data CRCs (unless --no-data).
 *
 * Bad batches — data that fails its CRC, or a summary that does not decode though a
 * valid batch of the slot's life follows it — are judged by the rule replay uses
 * (engine/logcheck.h): a TEAR (in flight at the crash: replay drops it with what
 * follows it in its slot) is what a crash leaves behind and is not damage; a bad
 * batch that was durable is CORRUPTION (replay keeps it: its bad blocks read as I/O
 * errors; a damaged summary marks its volume damaged), and is damage. Other damage is
 * what a crash cannot explain: a bad superblock or slot header, two slots with the
 * same generation, sequence numbers used twice.
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
#include "common/err.h"
#include "engine/logcheck.h"
#include "engine/engine.h"
#include "engine/ondisk.h"
#include "store/store.h"

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
	uint32_t cut;         /* block of the tear that ends the log for replay; 0: none */
};

/* A batch whose data fails its CRC, or whose summary is damaged: judged once every
 * slot is read. */
struct bad_batch {
	uint32_t slot;
	uint32_t pos, next;
	bool damaged_summary;
	uint64_t volume_id;
	uint64_t lo, hi;      /* its seq lies in [lo, hi] */
	char why[160];
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
	struct logcheck_facts facts;
	struct bad_batch *bad;
	size_t nbad, capbad;
	unsigned tears, corrupt;
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
		return err_str(-err);
	}
}

static void print_uuid(const uint8_t u[16], char *out)
{
	for (int i = 0; i < 16; i++)
		out += sprintf(out, "%02x%s", u[i], (i == 3 || i == 5 || i == 7 || i == 9) ? "-" : "");
}

static int print_superblock(struct inspect *in)
{
	char uuid[40], when[64];
	struct tm tm;
	time_t t;

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

/* Reads both places of the superblock (block 0 and its copy, docs/format.md) and
 * reports each; the store is read with the first valid one. */
static int read_superblock(struct inspect *in)
{
	static const uint64_t where[2] = { 0, QUILL_SB_COPY_OFFSET };
	static const char *const name[2] = { "block 0", "copy" };
	uint8_t *buf = store_buf_alloc(2 * QUILL_BLOCK_SIZE);
	struct superblock sb[2];
	uint32_t version;
	int rc = 0, err[2];

	if (!buf)
		return -ENOMEM;
	for (int i = 0; i < 2 && rc == 0; i++) {
		rc = store_read_sync(in->st, where[i], buf + i * QUILL_BLOCK_SIZE, QUILL_BLOCK_SIZE);
		if (rc == 0)
			err[i] = ondisk_superblock_decode(buf + i * QUILL_BLOCK_SIZE, QUILL_BLOCK_SIZE,
							  &sb[i]);
	}
	if (rc < 0) {
		fprintf(stderr, "quill-inspect: reading the superblock: %s\n", err_str(rc));
		store_buf_free(buf);
		return rc;
	}
	for (int i = 0; i < 2; i++)
		printf("superblock %s at offset %" PRIu64 ": %s\n", name[i], where[i],
		       err[i] ? decode_err_str(err[i]) : "valid");
	if (err[0] == 0 && err[1] == 0 && memcmp(buf, buf + QUILL_BLOCK_SIZE, QUILL_BLOCK_SIZE))
		printf("  the copy differs from block 0 (block 0 wins; the next start rewrites "
		       "the copy)\n");
	else if (err[0] == 0 && err[1] == -ENOENT)
		printf("  no copy yet (a store formatted before copies; the next start writes it)\n");
	version = ondisk_superblock_version(buf, QUILL_BLOCK_SIZE);
	store_buf_free(buf);
	if (err[0] == -EPROTO && version && version != QUILL_FORMAT_VERSION) {
		damage(in, "superblock: format version %u; this quill-inspect reads version %u",
		       version, QUILL_FORMAT_VERSION);
		return err[0];
	}
	if (err[0] && err[1]) {
		damage(in, "superblock: no valid copy (not a quill store, or both are damaged)");
		return err[0];
	}
	if (err[0] || (err[1] && err[1] != -ENOENT))
		damage(in, "superblock %s: %s (the next start repairs it from the other)",
		       err[0] ? name[0] : name[1], decode_err_str(err[0] ? err[0] : err[1]));
	in->sb = err[0] ? sb[1] : sb[0];
	return print_superblock(in);
}

static void print_batch(const struct summary *s, uint32_t pos, const char *status)
{
	uint32_t trims = 0, zeros = 0, moves = 0;
	uint64_t lo = UINT64_MAX, hi = 0;

	for (uint32_t i = 0; i < s->nentries; i++) {
		const struct summary_entry *e = &s->entries[i];

		trims += e->kind == ONDISK_ENTRY_TRIM;
		zeros += e->kind == ONDISK_ENTRY_ZERO;
		moves += e->kind == ONDISK_ENTRY_MOVE;
		if (e->lba < lo)
			lo = e->lba;
		if (e->lba + e->nblocks - 1 > hi)
			hi = e->lba + e->nblocks - 1;
	}
	printf("  block %4u: seq %-8" PRIu64 " entries %3u  data %3u  trims %3u  zeros %3u  "
	       "moves %3u  lba %" PRIu64 "..%" PRIu64 "  %s\n", pos, s->seq, s->nentries,
	       s->data_blocks, trims, zeros, moves, lo, hi, status);
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

static void note_bad(struct inspect *in, const struct bad_batch *bb)
{
	if (in->nbad == in->capbad) {
		size_t cap = in->capbad ? in->capbad * 2 : 16;
		struct bad_batch *v = realloc(in->bad, cap * sizeof(*v));

		if (!v)
			return; /* best effort under memory pressure */
		in->bad = v;
		in->capbad = cap;
	}
	in->bad[in->nbad++] = *bb;
}

/* A batch whose data fails its CRC: what the first bad block holds. */
static void describe_bad_data(const struct inspect *in, const struct logcheck_item *it,
			      struct bad_batch *bb)
{
	const struct summary *s = in->sum;
	const struct summary_entry *e = &s->entries[it->bad_entry];
	uint32_t d = 0;

	for (uint32_t i = 0; i < it->bad_entry; i++)
		d += ONDISK_ENTRY_HAS_BLOCK(s->entries[i].kind);
	snprintf(bb->why, sizeof(bb->why), "batch seq %" PRIu64 ": entry %u (lba %" PRIu64
		 ") data CRC %08x, summary says %08x", s->seq, it->bad_entry, e->lba,
		 crc32c(in->seg + (size_t)(it->pos + 1 + d) * QUILL_BLOCK_SIZE, QUILL_BLOCK_SIZE),
		 e->data_crc);
}

static void walk_batch(struct inspect *in, uint32_t idx, struct slot_info *si,
		       const struct logcheck_item *it, bool verbose)
{
	if (si->batches == 0 && in->sum->seq < si->h.first_seq)
		damage(in, "slot %u: first batch seq %" PRIu64 " < header first_seq %" PRIu64,
		       idx, in->sum->seq, si->h.first_seq);
	if (logcheck_note_batch(&in->facts, in->sum) < 0)
		damage(in, "out of memory: verdicts may be wrong");
	note_seq(in, in->sum->seq, idx, !it->data_ok);
	if (!it->data_ok) {
		struct bad_batch bb = { .slot = idx, .pos = it->pos, .next = it->next,
					.volume_id = si->h.volume_id, .lo = in->sum->seq,
					.hi = in->sum->seq };

		describe_bad_data(in, it, &bb);
		note_bad(in, &bb);
	}
	if (verbose)
		print_batch(in->sum, it->pos, !it->data_checked ? "(data not checked)" :
					      it->data_ok ? "ok" : "DATA CRC MISMATCH (judged below)");
	si->last_seq = in->sum->seq;
	si->data_blocks += in->sum->data_blocks;
	si->batches++;
}

static void walk_slot(struct inspect *in, uint32_t idx, struct slot_info *si, bool verbose)
{
	struct logcheck_walk w;
	struct logcheck_item it;

	logcheck_walk_init(&w, in->seg, in->bps, &si->h, in->check_data ? 0 : UINT64_MAX);
	if (logcheck_note_slot(&in->facts, &si->h) < 0)
		damage(in, "out of memory: verdicts may be wrong");
	for (logcheck_walk_next(&w, in->sum, &it); it.kind != LOGCHECK_END;
	     logcheck_walk_next(&w, in->sum, &it)) {
		struct bad_batch bb = { .slot = idx, .pos = it.pos, .next = it.next,
					.damaged_summary = true, .volume_id = si->h.volume_id,
					.lo = it.seq_lo, .hi = it.seq_hi };

		if (it.kind == LOGCHECK_BATCH) {
			walk_batch(in, idx, si, &it, verbose);
			continue;
		}
		snprintf(bb.why, sizeof(bb.why), "blocks %u..%u: summary does not decode "
			 "(seq %" PRIu64 " or later)", it.pos, it.next - 1, it.seq_lo);
		note_bad(in, &bb);
		if (verbose)
			printf("  block %4u: DAMAGED SUMMARY, next batch at block %u (judged below)\n",
			       it.pos, it.next);
	}
	si->end_block = it.pos;
	if (verbose)
		printf("  end of log at block %u of %u\n", it.pos, in->bps);
}

/* A slot whose header is another store's: a copy of another node's segment held here
 * (engine/held.c; the holder's RocksDB "H" record names it), or what a dropped copy
 * left. Its log is the owner's: walked with the same walker, every batch's data checked,
 * to the end of its whole batches; a bad batch ends it (a copy's torn tail, as its
 * holder cuts it at start-up) and is no damage of this store, nor are its sequence
 * numbers this store's. */
static void walk_held(struct inspect *in, struct slot_info *si, bool verbose)
{
	struct logcheck_walk w;
	struct logcheck_item it;

	logcheck_walk_init(&w, in->seg, in->bps, &si->h, in->check_data ? 0 : UINT64_MAX);
	for (logcheck_walk_next(&w, in->sum, &it); it.kind == LOGCHECK_BATCH && it.data_ok;
	     logcheck_walk_next(&w, in->sum, &it)) {
		if (verbose)
			print_batch(in->sum, it.pos, it.data_checked ? "ok" : "(data not checked)");
		si->last_seq = in->sum->seq;
		si->data_blocks += in->sum->data_blocks;
		si->batches++;
	}
	si->end_block = it.pos;
	si->torn = it.kind != LOGCHECK_END;
	if (verbose)
		printf("  end of the copy's log at block %u of %u%s\n", it.pos, in->bps,
		       si->torn ? " (a bad batch follows: its holder cuts it there)" : "");
}

/* Tear or corruption, as replay decides it once every slot is read. */
static void judge_bad(struct inspect *in)
{
	for (size_t i = 0; i < in->nbad; i++) {
		struct bad_batch *bb = &in->bad[i];
		struct slot_info *si = &in->slots[bb->slot];
		struct logcheck_verdict v;

		if (si->cut && bb->pos > si->cut) {
			printf("  slot %u block %u: %s: behind the torn batch at block %u, dropped "
			       "by replay with it\n", bb->slot, bb->pos, bb->why, si->cut);
			continue;
		}
		if (bb->hi == UINT64_MAX)
			bb->hi = logcheck_seq_hi(&in->facts, bb->volume_id, bb->lo);
		logcheck_judge(&in->facts, bb->volume_id, bb->lo, bb->hi, &v);
		if (!v.corrupt) {
			printf("  slot %u block %u: TORN %s: in flight at the crash (%u later "
			       "batches of volume %" PRIu64 "); replay drops it with what follows it "
			       "in the slot\n", bb->slot, bb->pos, bb->why, v.later, bb->volume_id);
			si->torn = true;
			si->cut = bb->pos;
			in->tears++;
			continue;
		}
		in->corrupt++;
		if (bb->damaged_summary)
			damage(in, "slot %u %s, of a durable batch (%u later batches, durable mark "
			       "%" PRIu64 "): replay marks volume %" PRIu64 " damaged", bb->slot,
			       bb->why, v.later, v.durable_seq, bb->volume_id);
		else
			damage(in, "slot %u block %u: CORRUPT %s, of a durable batch (%u later "
			       "batches, durable mark %" PRIu64 "): replay keeps it, its bad blocks "
			       "read as I/O errors", bb->slot, bb->pos, bb->why, v.later,
			       v.durable_seq);
	}
}

static const char *kind_str(enum slot_kind k)
{
	static const char *const names[] = { "never used", "USED", "FREE", "HELD", "DAMAGED" };

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
	if (si->kind != SK_NEVER && si->kind != SK_DAMAGED) {
		if (verbose)
			printf(", volume %" PRIu64 ", generation %" PRIu64 ", first seq %" PRIu64
			       ", segment %016" PRIx64 ":%" PRIu32 ", epoch %" PRIu64,
			       si->h.volume_id, si->h.generation, si->h.first_seq,
			       si->h.family_uid, si->h.sno, si->h.epoch);
	}
	if (verbose)
		printf("\n");
	if (si->kind != SK_USED && si->kind != SK_FOREIGN && !verbose)
		return 0;
	if (si->kind != SK_USED && (si->kind != SK_FOREIGN || si->h.state != ONDISK_SEG_USED)) {
		printf("  (not in use: no log to walk)\n");
		return 0;
	}
	rc = store_read_sync(in->st, off, in->seg, len);
	if (rc < 0)
		return rc;
	if (si->kind == SK_FOREIGN)
		walk_held(in, si, verbose);
	else
		walk_slot(in, idx, si, verbose);
	return 0;
}

static int cmp_gen(const void *a, const void *b)
{
	const struct slot_info *x = *(const struct slot_info *const *)a;
	const struct slot_info *y = *(const struct slot_info *const *)b;

	return x->h.generation < y->h.generation ? -1 : x->h.generation > y->h.generation;
}

static void gen_str(const struct slot_info *si, char *out, size_t len)
{
	snprintf(out, len, "generation %" PRIu64, si->h.generation);
}

/* A segment's id (family uid, number) is unique: two slots with one id would be two
 * logs that the map and the segment table cannot tell apart. */
static int cmp_id(const void *a, const void *b)
{
	const struct slot_info *x = *(const struct slot_info *const *)a;
	const struct slot_info *y = *(const struct slot_info *const *)b;

	if (x->h.family_uid != y->h.family_uid)
		return x->h.family_uid < y->h.family_uid ? -1 : 1;
	return x->h.sno < y->h.sno ? -1 : x->h.sno > y->h.sno;
}

static void id_str(const struct slot_info *si, char *out, size_t len)
{
	snprintf(out, len, "segment id %016" PRIx64 ":%" PRIu32, si->h.family_uid, si->h.sno);
}

/* Damage wherever two used slots compare equal under cmp: what should be unique. */
static void check_unique(struct inspect *in, int (*cmp)(const void *, const void *),
			 void (*str)(const struct slot_info *, char *, size_t))
{
	struct slot_info **v = calloc(in->sb.segment_count, sizeof(*v));
	uint32_t n = 0;
	char what[64];

	if (!v)
		return;
	for (uint32_t i = 0; i < in->sb.segment_count; i++)
		if (in->slots[i].kind == SK_USED)
			v[n++] = &in->slots[i];
	qsort(v, n, sizeof(*v), cmp);
	for (uint32_t i = 1; i < n; i++) {
		if (cmp(&v[i - 1], &v[i]) != 0)
			continue;
		str(v[i], what, sizeof(what));
		damage(in, "slots %td and %td share %s", v[i - 1] - in->slots, v[i] - in->slots,
		       what);
	}
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
	if (in->nseqs) /* none: seqs is NULL, which qsort must not get even for 0 */
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
	/* segment: its id, family uid and number (docs/format.md, "Segment ids") */
	printf("slot  state       volume  generation  first_seq  last_seq  batches  data  end  "
	       "segment\n");
	for (uint32_t i = 0; i < in->sb.segment_count; i++) {
		const struct slot_info *si = &in->slots[i];
		bool held = si->kind == SK_FOREIGN;

		if (si->kind == SK_USED || held)
			printf("%4u  %-10s  %6" PRIu64 "  %10" PRIu64 "  %9" PRIu64 "  %8" PRIu64
			       "  %7u  %4" PRIu64 "  %3u  %016" PRIx64 ":%" PRIu32 "%s%s\n", i,
			       kind_str(si->kind), si->h.volume_id, si->h.generation,
			       si->h.first_seq, si->last_seq, si->batches, si->data_blocks,
			       si->end_block, si->h.family_uid, si->h.sno,
			       held ? "  another store's segment (held for another node)" : "",
			       !si->torn ? "" : held ? ", bad tail" : "  torn tail");
		else if (si->kind == SK_FREE)
			printf("%4u  %-10s  %6" PRIu64 "  %10" PRIu64 "  %016" PRIx64 ":%" PRIu32 "\n",
			       i, kind_str(si->kind), si->h.volume_id, si->h.generation,
			       si->h.family_uid, si->h.sno);
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
		if (si->kind == SK_FOREIGN)
			continue; /* another store's log: not this one's batches */
		batches += si->batches;
		data += si->data_blocks;
		torn += si->torn;
	}
	printf("slots: %u used, %u free, %u never used, %u held for other nodes (other "
	       "stores' segments), %u damaged\n",
	       count[SK_USED], count[SK_FREE], count[SK_NEVER], count[SK_FOREIGN],
	       count[SK_DAMAGED]);
	printf("logs: %" PRIu64 " batches, %" PRIu64 " data blocks (live and garbage), "
	       "%" PRIu64 " torn tails, %u corrupt batches%s\n", batches, data, torn, in->corrupt,
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
	printf("  %14" PRIu64 "  %6" PRIu64 "  %8" PRIu64 "  %10" PRIu64 "  uid %" PRIu64 "%s%s",
	       l->size, l->parent_id, l->overlap, l->own_blocks, l->uid,
	       l->flattening ? ", flattening" : "",
	       l->sector_size == ENGINE_SECTOR_SIZE_4K ? ", 4Kn (4096-byte sectors)" : "");
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
		fprintf(stderr, "quill-inspect: %s: %s\n", in.path, err_str(-rc));
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
		fprintf(stderr, "quill-inspect: reading slots: %s\n", err_str(-rc));
		goto out_free;
	}
	judge_bad(&in);
	check_unique(&in, cmp_gen, gen_str);
	check_unique(&in, cmp_id, id_str);
	check_seqs(&in);
	if (in.list_segments)
		print_segments(&in);
	print_summary(&in);
out_free:
	store_buf_free(in.seg);
	free(in.sum);
	free(in.slots);
	free(in.seqs);
	free(in.bad);
	logcheck_facts_free(&in.facts);
out_close:
	store_close(in.st);
	if (rc == 0 && in.catalog)
		rc = print_catalog(in.path);
	if (rc < 0 && in.damage == 0)
		return 2;
	printf("%s\n", in.damage ? "DAMAGED" : "consistent");
	return in.damage ? 1 : 0;
}
