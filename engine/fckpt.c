/* engine/fckpt.c — a family's maps as MAPS blocks and back: the two conversions a
 * family checkpoint needs (docs/replication.md, "Family checkpoints"; the blocks:
 * engine/ondisk.h), and the writer: the engine checkpoint's family checkpoints.
 *
 * In a MAPS block an entry names its block by the family's segment number, not by
 * slot: slots are this node's, and a new owner holds the same segments in other
 * slots. Packing takes chunks as map_take_dirty() emits them (slot-addressed) and
 * turns each slot into its segment number; loading turns each number into the slot
 * that holds that segment here (an sno table built once per load) and replaces the
 * chunk in the layer's map: an empty chunk clears it, so that a newer checkpoint's
 * chunk supersedes an older one's whatever each holds.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "common/array.h"
#include "common/log.h"
#include "engine/engine_internal.h"
#include "engine/map.h"

int eng_fmaps_add(const struct engine *eng, uint64_t uid, struct fmaps_block *m,
		  uint64_t chunk, const struct ondisk_map_entry *e, size_t n)
{
	struct fmaps_chunk *c;

	if (m->nchunks == ONDISK_FMAPS_CHUNKS)
		return -ENOSPC;
	if (chunk > UINT32_MAX || n > MAP_CHUNK_BLOCKS)
		return -ERANGE;
	c = &m->chunks[m->nchunks];
	c->chunk = (uint32_t)chunk;
	c->nentries = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		struct ondisk_map_entry x;

		memcpy(&x, &e[i], sizeof(x));
		if (x.slot != ONDISK_MAP_SLOT_ZERO) {
			const struct slot *s;

			if (x.slot >= eng->slot_cap) /* (a remote entry is the family's too) */
				return -ERANGE;
			s = &eng->slots[x.slot];
			if (s->state == SLOT_FREE || s->family_uid != uid)
				return -EXDEV; /* not a segment of the family: no new owner has it */
			x.slot = s->sno;
		}
		c->e[i] = x;
	}
	m->nchunks++;
	return 0;
}

void eng_sno_table_free(struct eng_sno_table *t)
{
	free(t->slot);
	memset(t, 0, sizeof(*t));
}

/* Does slot i hold a segment of family uid that the table maps its number to? A
 * store slot or a remote entry (segment_remote.c), not a fragment, and not the store
 * slot a remote entry was dropped from (the same segment: the entry is the one). */
static bool sno_table_has(const struct engine *eng, uint64_t uid, uint32_t i)
{
	const struct slot *s = &eng->slots[i];

	return s->state != SLOT_FREE && s->family_uid == uid && !s->dropped &&
	       (i >= eng->sb.segment_count || !eng_frag_slot(eng, i));
}

int eng_sno_table_build(const struct engine *eng, uint64_t uid, struct eng_sno_table *t)
{
	uint32_t lo = UINT32_MAX, hi = 0;

	memset(t, 0, sizeof(*t));
	for (uint32_t i = 0; i < eng->slot_cap; i++) {
		if (!sno_table_has(eng, uid, i))
			continue;
		lo = eng->slots[i].sno < lo ? eng->slots[i].sno : lo;
		hi = eng->slots[i].sno > hi ? eng->slots[i].sno : hi;
	}
	if (lo > hi)
		return 0; /* the family has no segment here */
	t->base = lo;
	t->n = hi - lo + 1;
	t->slot = malloc((size_t)t->n * sizeof(*t->slot));
	if (!t->slot)
		return -ENOMEM;
	memset(t->slot, 0xff, (size_t)t->n * sizeof(*t->slot));
	for (uint32_t i = 0; i < eng->slot_cap; i++)
		if (sno_table_has(eng, uid, i))
			t->slot[eng->slots[i].sno - lo] = i;
	return 0;
}

/* The slot holding segment sno here, or UINT32_MAX. */
static uint32_t sno_slot(const struct eng_sno_table *t, uint32_t sno)
{
	return sno >= t->base && sno - t->base < t->n ? t->slot[sno - t->base] : UINT32_MAX;
}

/* One chunk of a MAPS block into map: the chunk's range cleared, then its entries. */
static int load_chunk(struct map *map, const struct eng_sno_table *t,
		      const struct fmaps_chunk *c, bool skip_missing)
{
	struct ondisk_map_entry e[MAP_CHUNK_BLOCKS];
	uint64_t base = (uint64_t)c->chunk * MAP_CHUNK_BLOCKS;
	uint32_t n = 0;

	for (uint32_t i = 0; i < c->nentries; i++) {
		e[n] = c->e[i];
		if (e[n].slot != ONDISK_MAP_SLOT_ZERO) {
			e[n].slot = sno_slot(t, c->e[i].slot);
			if (e[n].slot == UINT32_MAX && !skip_missing)
				return -ENOENT; /* a segment the checkpoint needs is not here */
			if (e[n].slot == UINT32_MAX)
				continue; /* the roll-forward maps it again (eng_fckpt_find) */
		}
		n++;
	}
	if (base < map_nblocks(map))
		map_clear(map, base, map_nblocks(map) - base < MAP_CHUNK_BLOCKS
					     ? map_nblocks(map) - base : MAP_CHUNK_BLOCKS);
	return map_load_chunk(map, c->chunk, e, n * sizeof(e[0]));
}

static int fmaps_load(struct engine_volume *v, const struct eng_sno_table *t,
		      const struct fmaps_block *m, bool skip_missing)
{
	int r = 0;

	if (m->layer != v->rec.volume_id)
		return -EINVAL;
	for (uint32_t i = 0; i < m->nchunks && r == 0; i++)
		r = load_chunk(v->map, t, &m->chunks[i], skip_missing);
	return r;
}

int eng_fmaps_load(struct engine_volume *v, const struct eng_sno_table *t,
		   const struct fmaps_block *m)
{
	return fmaps_load(v, t, m, false);
}

/* ---- the writer ----
 *
 * Each family checkpoint is whole: MAPS blocks of every chunk of every layer of the
 * family (base 0), not only the chunks dirty since the last one. It costs a block per
 * five written chunks (at most 3.2 MiB per GiB of volume written) per checkpoint
 * period, and keeps the cleaner's rule simple: once K's END is acknowledged, every
 * MAPS block of an older checkpoint of the family is garbage; K's are counted in
 * their slots' `fmaps` and keep them from being freed until a newer one is complete.
 * K is S, the sequence the checkpoint covers (a new owner's sequences continue the
 * old owner's: adopt.c), so K grows across owners too.
 */

struct fckpt_run {
	uint32_t slot, sno, block, count;
	uint64_t generation;
};

struct fckpt_fam {
	struct eng_fckpt *fc;
	uint64_t uid, log_id, seq;
	struct fckpt_run *runs; /* where its MAPS blocks landed, in log order */
	size_t nruns, cap;
	bool ending;            /* END appended: no more MAPS blocks are its */
	bool lost;              /* a run could not be noted (no memory): no END */
};

struct eng_fckpt {
	struct engine *eng;
	struct fckpt_fam *fams;
	size_t nfams;
	size_t pending;          /* families not done yet, + 1 while starting */
	struct ckpt_free *free_slots; /* the landed checkpoint's empty slots */
	size_t nfree;
};

static bool is_layer(const struct engine_volume *l)
{
	return l->rec.kind != ONDISK_LAYER_CATALOG && !l->committing;
}

/* The family's head volume, whose log is the family's; NULL: none has a segment. */
static struct engine_volume *family_head(struct engine *eng, uint64_t uid)
{
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->rec.uid == uid && is_layer(eng->vols[i]))
			return eng_catalog_family_log(eng, eng->vols[i]);
	return NULL;
}

static int append_block(struct engine_volume *log, uint64_t lba, const void *blk,
			enum ondisk_entry_kind kind, uint32_t src_block, struct ioreq *req)
{
	return eng_append_data(log, lba, blk, kind, 0, src_block, 0, SLOT_FOR_TRIM, req);
}

static int append_marker(struct engine_volume *log, const struct fckpt_fam *f,
			 struct fckpt_block *fb, struct ioreq *req)
{
	uint8_t *buf = seg_buf_alloc(QUILL_BLOCK_SIZE);
	int r;

	if (!buf)
		return -ENOMEM;
	fb->family = f->uid;
	fb->ckpt = f->seq;
	fb->seq = f->seq;
	ondisk_fckpt_block_encode(fb, buf);
	r = append_block(log, f->seq, buf, ONDISK_ENTRY_FCKPT, fb->type, req);
	seg_buf_free(buf);
	return r;
}

struct maps_ctx {
	struct engine *eng;
	struct engine_volume *log;
	struct ioreq *req;
	uint64_t uid;
	struct fmaps_block *m;
	uint8_t *buf;
};

static int maps_flush(struct maps_ctx *c)
{
	int r;

	if (!c->m->nchunks)
		return 0;
	ondisk_fmaps_block_encode(c->m, c->buf);
	r = append_block(c->log, c->m->layer, c->buf, ONDISK_ENTRY_MAPS, 0, c->req);
	c->m->nchunks = 0;
	if (r == 0)
		c->eng->stats.family_maps_blocks++;
	return r;
}

static int maps_chunk(void *arg, uint64_t chunk, const struct ondisk_map_entry *e, size_t n)
{
	struct maps_ctx *c = arg;
	int r;

	if (!n)
		return 0; /* whole maps: an absent chunk is empty */
	r = eng_fmaps_add(c->eng, c->uid, c->m, chunk, e, n);
	if (r != -ENOSPC)
		return r;
	r = maps_flush(c);
	return r < 0 ? r : eng_fmaps_add(c->eng, c->uid, c->m, chunk, e, n);
}

/* Every layer's whole map as MAPS blocks, appended to log. */
static int append_maps(struct engine_volume *log, struct fckpt_fam *f, struct ioreq *req)
{
	struct engine *eng = log->eng;
	struct maps_ctx c = { .eng = eng, .log = log, .req = req, .uid = f->uid };
	int r = 0;

	c.m = malloc(sizeof(*c.m));
	c.buf = seg_buf_alloc(QUILL_BLOCK_SIZE);
	if (!c.m || !c.buf)
		r = -ENOMEM;
	for (size_t i = 0; i < eng->nvols && r == 0; i++) {
		struct engine_volume *l = eng->vols[i];

		if (l->rec.uid != f->uid || !is_layer(l))
			continue;
		*c.m = (struct fmaps_block){ .layer = l->rec.volume_id, .ckpt = f->seq };
		r = map_for_each_chunk(l->map, maps_chunk, &c);
		if (r == 0)
			r = maps_flush(&c);
	}
	seg_buf_free(c.buf);
	free(c.m);
	return r;
}

static void fc_end(struct eng_fckpt *fc)
{
	struct engine *eng = fc->eng;

	eng->fckpt = NULL;
	if (fc->free_slots && fc->nfree)
		eng_slots_free_async(eng, fc->free_slots, fc->nfree, ENG_FREE_ONLY_EMPTY,
				     NULL, NULL);
	for (size_t i = 0; i < fc->nfams; i++)
		free(fc->fams[i].runs);
	free(fc->free_slots);
	free(fc->fams);
	free(fc);
}

static void fc_put(struct eng_fckpt *fc)
{
	if (--fc->pending == 0)
		fc_end(fc);
}

void eng_fckpt_forget(struct engine *eng, uint64_t uid)
{
	for (uint32_t i = 0; i < eng->slot_cap; i++) /* (remote entries too) */
		if (eng->slots[i].family_uid == uid && !eng->slots[i].held)
			eng->slots[i].fmaps = 0;
}

/* The slot that stands for slot i's segment now: i, or the remote entry its local copy
 * was dropped into (seg_drop_local), or NULL. */
static struct slot *standing_slot(struct engine *eng, uint32_t i)
{
	const struct slot *s = &eng->slots[i];

	if (!s->dropped)
		return &eng->slots[i];
	for (uint32_t j = eng->sb.segment_count; j < eng->slot_cap; j++) {
		struct slot *r = &eng->slots[j];

		if (r->state != SLOT_FREE && r->family_uid == s->family_uid && r->sno == s->sno)
			return r;
	}
	return NULL;
}

/* K is complete: its MAPS blocks are the family's live ones, older ones garbage. */
static void completed(struct fckpt_fam *f)
{
	struct engine *eng = f->fc->eng;

	eng_fckpt_forget(eng, f->uid);
	for (size_t i = 0; i < f->nruns; i++) {
		struct slot *s = &eng->slots[f->runs[i].slot];

		if (s->state != SLOT_FREE && s->generation == f->runs[i].generation &&
		    (s = standing_slot(eng, f->runs[i].slot)))
			s->fmaps += f->runs[i].count;
	}
	eng->stats.family_checkpoints++;
	eng->stats.family_checkpoint_seq = f->seq;
	eng->gc_next_scan_ms = 0; /* slots holding only superseded MAPS may go now */
}

static void fam_done(struct fckpt_fam *f, int res)
{
	struct engine *eng = f->fc->eng;

	if (res == 0) {
		completed(f);
		log_msg(LOG_DEBUG, ENG_LOG, "family %llx: checkpoint at seq %llu complete, "
			"%zu runs of MAPS blocks", (unsigned long long)f->uid,
			(unsigned long long)f->seq, f->nruns);
	} else {
		/* the previous complete one is given up too: its MAPS slots may go, so
		 * that a family whose checkpoints fail (a full store) cannot pin space;
		 * an adoption then reads the whole log */
		eng_fckpt_forget(eng, f->uid);
		seg_family_fckpt_owed(eng, f->uid, true);
		eng->stats.family_checkpoints_failed++;
		LOG_RATELIMITED(LOG_WARN, ENG_LOG, "family %llx: checkpoint at seq %llu not "
				"written (%s); an adoption uses the previous one or the whole log",
				(unsigned long long)f->uid, (unsigned long long)f->seq,
				strerror(-res));
	}
	fc_put(f->fc);
}

static void end_done(void *arg, int res)
{
	fam_done(arg, res);
}

/* The END blocks: the runs of MAPS blocks, ONDISK_FCKPT_RUNS_MAX a block. */
static int append_end(struct engine_volume *log, struct fckpt_fam *f, struct ioreq *req)
{
	struct fckpt_block *fb = malloc(sizeof(*fb));
	size_t i = 0;
	int r = 0;

	if (!fb)
		return -ENOMEM;
	do {
		memset(fb, 0, sizeof(*fb));
		fb->type = ONDISK_FCKPT_END;
		for (; i < f->nruns && fb->nruns < ONDISK_FCKPT_RUNS_MAX; i++)
			fb->runs[fb->nruns++] = (struct ondisk_fckpt_run){
				f->runs[i].sno, (uint16_t)f->runs[i].block,
				(uint16_t)f->runs[i].count };
		fb->last = i == f->nruns;
		r = append_marker(log, f, fb, req);
	} while (r == 0 && i < f->nruns);
	free(fb);
	return r;
}

/* BEGIN, the records and the MAPS blocks are acknowledged (and flushed): END. */
static void body_done(void *arg, int res)
{
	struct fckpt_fam *f = arg;
	struct engine *eng = f->fc->eng;
	struct engine_volume *log = eng_volume_by_id(eng, f->log_id);
	struct ioreq *req;

	f->ending = true;
	if (res == 0 && f->lost)
		res = -ENOMEM;
	if (res == 0 && (!log || eng->closing))
		res = -ESHUTDOWN; /* deleted meanwhile, or closing: no END */
	if (res < 0 || !(req = eng_req_alloc(eng, end_done, f))) {
		fam_done(f, res < 0 ? res : -ENOMEM);
		return;
	}
	req->fua = true;
	eng_req_put(eng, req, append_end(log, f, req));
}

static bool sno_unsure(const struct engine *eng, uint64_t uid)
{
	const struct seg_family *f = seg_family_get(eng, uid);

	return !f || f->sno_unsure;
}

/* Family f's BEGIN, records and MAPS go into its log: 0, -ENOENT (it has no log of its
 * own), -EAGAIN (its log has no open segment to write it to, and may not open one
 * now), or the error of an append. */
static int fam_begin(struct engine *eng, struct fckpt_fam *f, bool open_logs)
{
	struct engine_volume *log = family_head(eng, f->uid);
	struct fckpt_block *fb;
	struct ioreq *req;
	int r;

	if (!log)
		return -ENOENT; /* no segment of its own: nothing to adopt it from */
	/* nor while its log has no open segment, but for a stop's (engine_checkpoint_
	 * for_stop_async): opening one is for its writes. A takeover reserves the family's
	 * segment numbers after the adoption (and its checkpoint): a segment opened by a
	 * family checkpoint before that took a number a record names, and the family's
	 * release later failed on it (cluster_handoff); so never one of an adopted
	 * family not reserved since */
	if (log->open_slot < 0 && !(open_logs && !sno_unsure(eng, f->uid)))
		return -EAGAIN;
	f->log_id = log->rec.volume_id;
	fb = calloc(1, sizeof(*fb));
	req = fb ? eng_req_alloc(eng, body_done, f) : NULL;
	if (!req) {
		free(fb);
		return -ENOMEM;
	}
	req->fua = true;
	fb->type = ONDISK_FCKPT_BEGIN;
	r = append_marker(log, f, fb, req);
	free(fb);
	if (r == 0)
		r = eng_catalog_family_records(log, req);
	if (r == 0)
		r = append_maps(log, f, req);
	eng_req_put(eng, req, r); /* body_done runs once, with r or a write's error */
	return 0;
}

static bool wanted(const struct engine *eng, uint64_t uid)
{
	if (eng->fckpt_want_all)
		return true;
	for (size_t i = 0; i < eng->nfckpt_want; i++)
		if (eng->fckpt_want[i] == uid)
			return true;
	return false;
}

static bool owed(const struct engine *eng, uint64_t uid)
{
	const struct seg_family *f = seg_family_get(eng, uid);

	return f && f->fckpt_owed;
}

/* A checkpoint that writes no family checkpoint took the dirty chunks of these
 * families: the next one that does writes theirs. (Without it, a family whose chunks a
 * cleaner's or a drop's checkpoint took first got none: after its writes stop, its
 * newest family checkpoint could stay far behind its log, and a new owner then reads
 * every segment above it: docs/engine.md, "Adopting a family".) */
static void note_owed(struct engine *eng)
{
	for (size_t i = 0; i < eng->nvols; i++)
		if (is_layer(eng->vols[i]) && map_taking(eng->vols[i]->map))
			seg_family_fckpt_owed(eng, eng->vols[i]->rec.uid, true);
}

/* The families to checkpoint now: wanted, or (dirty) with chunks set aside or owed;
 * each once. */
static size_t pick_families(struct engine *eng, uint64_t *uids, bool dirty)
{
	size_t n = 0;

	for (size_t i = 0; i < eng->nvols; i++) {
		const struct engine_volume *l = eng->vols[i];
		size_t k;

		if (!is_layer(l) ||
		    !((dirty && (map_taking(l->map) || owed(eng, l->rec.uid))) ||
		      wanted(eng, l->rec.uid)))
			continue;
		for (k = 0; k < n && uids[k] != l->rec.uid; k++)
			;
		if (k == n)
			uids[n++] = l->rec.uid;
	}
	return n;
}

/* Short of room, the families whose MAPS slots the cleaner wants give up their
 * newest complete checkpoint (an adoption reads their whole log): the slots go at the
 * next checkpoint instead of after a rewrite that would take room first. */
static void release_wanted(struct engine *eng)
{
	for (uint32_t i = 0; i < eng->slot_cap; i++) {
		struct slot *s = &eng->slots[i];

		if (s->fmaps && wanted(eng, s->family_uid))
			s->fmaps = 0;
	}
	eng->nfckpt_want = 0;
	eng->fckpt_want_all = false;
}

/* QUILL_FCKPT_WRITER=0: no family checkpoint is written (a measurement of the
 * writer's cost; an adoption then reads the whole log). */
static bool writer_off(void)
{
	const char *v = getenv("QUILL_FCKPT_WRITER");

	return v && strcmp(v, "0") == 0;
}

/* What a stop's checkpoint wrote, said in one line when it has begun them all (what
 * it writes settled cluster_ec_read's clean-clone flake). */
struct stop_tally {
	size_t picked;   /* families owed or changed */
	size_t begun;
	size_t no_log;   /* -ENOENT: no segment of its own */
	size_t unsure;   /* -EAGAIN: no open segment, its numbers not reserved since adopted */
	size_t failed;   /* another error (the first one's below) */
	int first_err;
};

static void stop_count(struct stop_tally *t, int r)
{
	if (r == 0)
		t->begun++;
	else if (r == -ENOENT)
		t->no_log++;
	else if (r == -EAGAIN)
		t->unsure++;
	else if (t->failed++ == 0)
		t->first_err = r;
}

static void stop_said(uint64_t seq, const struct stop_tally *t)
{
	log_msg(LOG_INFO, ENG_LOG, "a stop's checkpoint at seq %llu: %zu families owed or "
		"changed, %zu begun; not begun: %zu with no log of their own, %zu with no open "
		"segment and numbers not reserved since their adoption, %zu failed%s%s",
		(unsigned long long)seq, t->picked, t->begun, t->no_log, t->unsure, t->failed,
		t->failed ? ": " : "", t->failed ? strerror(-t->first_err) : "");
}

void eng_fckpt_start(struct engine *eng, uint64_t seq, bool dirty)
{
	/* a stop's asks this checkpoint only: read once, whichever way it returns */
	bool open_logs = eng->fckpt_open_logs;
	struct stop_tally tally = { 0 };
	struct eng_fckpt *fc;
	uint64_t *uids;
	size_t n;

	eng->fckpt_open_logs = false;
	if (!eng->opts.family_records || writer_off())
		return;
	if (!dirty || eng->closing || eng->fckpt || seq == 0)
		note_owed(eng); /* (the ones picked below are cleared as they begin) */
	if (eng->closing || eng->fckpt || seq == 0)
		return;
	if (eng->nfree <= eng_gc_low_water(eng)) {
		if (open_logs)
			log_msg(LOG_INFO, ENG_LOG, "a stop's checkpoint: short of room (%u free): "
				"no family checkpoint", eng->nfree);
		release_wanted(eng); /* short of room: a family checkpoint would take some */
		note_owed(eng);
		return;
	}
	uids = malloc((eng->nvols ? eng->nvols : 1) * sizeof(*uids));
	if (!uids)
		return; /* the maps are in RocksDB all the same; the next one tries again */
	n = pick_families(eng, uids, dirty);
	tally.picked = n;
	eng->nfckpt_want = 0;
	eng->fckpt_want_all = false;
	fc = n ? calloc(1, sizeof(*fc)) : NULL;
	if (fc && !(fc->fams = calloc(n, sizeof(*fc->fams)))) {
		free(fc);
		fc = NULL;
	}
	if (!fc) {
		free(uids);
		if (open_logs) {
			tally.failed = n;
			tally.first_err = -ENOMEM;
			stop_said(seq, &tally);
		}
		return;
	}
	fc->eng = eng;
	fc->nfams = n;
	fc->pending = n + 1;
	eng->fckpt = fc;
	for (size_t i = 0; i < n; i++) {
		struct fckpt_fam *f = &fc->fams[i];
		bool nowhere;
		int r;

		*f = (struct fckpt_fam){ .fc = fc, .uid = uids[i], .seq = seq };
		r = fam_begin(eng, f, open_logs);
		if (open_logs)
			stop_count(&tally, r);
		nowhere = r == -ENOENT || r == -EAGAIN;
		seg_family_fckpt_owed(eng, f->uid, nowhere); /* (a failure sets it again) */
		if (nowhere)
			fc_put(fc); /* not a failure: no log, or no segment, to write it to */
		else if (r < 0)
			fam_done(f, r);
	}
	free(uids);
	if (open_logs)
		stop_said(seq, &tally);
	fc_put(fc);
}

void eng_fckpt_retired(struct engine_volume *vol, const struct summary_entry *e,
		       const struct map_loc *loc)
{
	struct eng_fckpt *fc = vol->eng->fckpt;
	const struct slot *s = &vol->eng->slots[loc->slot];
	struct fckpt_fam *f = NULL;
	struct fckpt_run *run;

	if (!fc || e->kind != ONDISK_ENTRY_MAPS)
		return;
	for (size_t i = 0; i < fc->nfams && !f; i++)
		if (fc->fams[i].uid == vol->rec.uid && !fc->fams[i].ending)
			f = &fc->fams[i];
	if (!f)
		return; /* replay, or a checkpoint that gave up */
	run = f->nruns ? &f->runs[f->nruns - 1] : NULL;
	if (run && run->slot == loc->slot && run->generation == s->generation &&
	    run->block + run->count == loc->block && run->count < UINT16_MAX) {
		run->count++;
		return;
	}
	if (ARRAY_GROW(f->runs, f->cap, f->nruns, 16) < 0) {
		f->lost = true; /* without its runs END would lie */
		return;
	}
	f->runs[f->nruns++] = (struct fckpt_run){ .slot = loc->slot, .sno = s->sno,
						  .block = loc->block, .count = 1,
						  .generation = s->generation };
}

void eng_fckpt_free_after(struct engine *eng, struct ckpt_free *slots, size_t n)
{
	if (eng->fckpt && !eng->fckpt->free_slots) {
		eng->fckpt->free_slots = slots;
		eng->fckpt->nfree = n;
		return;
	}
	if (n)
		eng_slots_free_async(eng, slots, n, ENG_FREE_ONLY_EMPTY, NULL, NULL);
	free(slots);
}

void eng_fckpt_want(struct engine *eng, uint64_t uid)
{
	uint64_t *v;

	if (wanted(eng, uid))
		return;
	v = realloc(eng->fckpt_want, (eng->nfckpt_want + 1) * sizeof(*v));
	if (!v) {
		eng->fckpt_want_all = true; /* more than asked for, never less */
		return;
	}
	eng->fckpt_want = v;
	eng->fckpt_want[eng->nfckpt_want++] = uid;
}

void eng_fckpt_want_all(struct engine *eng)
{
	eng->fckpt_want_all = true;
}

void eng_fckpt_pin_unknown(struct engine *eng)
{
	if (!eng->opts.family_records || writer_off())
		return;
	for (uint32_t i = 0; i < eng->slot_cap; i++) {
		struct slot *s = &eng->slots[i];

		if (!s->fmaps && !s->held && sno_table_has(eng, s->family_uid, i) &&
		    engine_family_here(eng, s->family_uid))
			s->fmaps = 1;
	}
}

void eng_fckpt_destroy(struct engine *eng)
{
	if (eng->fckpt) { /* closed with one in flight: its requests are gone */
		eng->fckpt->pending = 1;
		fc_end(eng->fckpt);
	}
	free(eng->fckpt_want);
	eng->fckpt_want = NULL;
	eng->nfckpt_want = 0;
}

/* ---- the loader (an adoption: adopt.c) ----
 *
 * The adoption walks the copies newest first, keeping every family checkpoint block
 * it meets (eng_rebuild_keep_fckpt). A checkpoint K is usable when an END of K with
 * `last` set is among them, every MAPS block its runs name is too (a MAPS block of K,
 * in the segment and at the block named), and every segment those maps name is one
 * of the copies: then the adoption stops reading whole once a copy's first batch is
 * at or below K's S, loads K's maps and rolls forward the batches above S. A partial
 * K (no END: the owner died first) or one whose blocks the cleaner freed is passed
 * over for an older one, else the whole log is read.
 */

static bool fckpt_decode(const struct eng_rb_fblock *f, uint64_t uid, struct fckpt_block *fb)
{
	return f->kind == ONDISK_ENTRY_FCKPT &&
	       ondisk_fckpt_block_decode(f->data, QUILL_BLOCK_SIZE, fb) == 0 && fb->family == uid;
}

/* The kept MAPS block at (sno, block), or -1. */
static ssize_t maps_at(const struct engine *eng, const struct eng_rb_fblock *fbs, size_t n,
		       uint32_t sno, uint32_t block)
{
	for (size_t i = 0; i < n; i++)
		if (fbs[i].kind == ONDISK_ENTRY_MAPS && fbs[i].block == block &&
		    eng->slots[fbs[i].slot].sno == sno)
			return (ssize_t)i;
	return -1;
}

static int base_add(struct eng_fckpt_base *b, size_t i)
{
	size_t *v = realloc(b->maps, (b->nmaps + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	b->maps = v;
	b->maps[b->nmaps++] = i;
	return 0;
}

/* Entries of m naming a segment not here: the old owner freed it after S, so nothing
 * live was left in it. Either the cleaner moved their blocks (each must then be
 * mapped again by what is rolled forward: a MOVE, a write, a trim above S), or m's
 * layer went above S: deleted, or merged into its only child, which took an entry
 * only where it had none of its own (and then held it live, so the segment would
 * still be here unless something above S mapped the child's block again). Loaded
 * without those entries, such a layer ends as on the old owner; otherwise K cannot be
 * loaded. */
static bool missing_covered(const struct eng_rebuild *rb, const struct eng_sno_table *t,
			    const struct fmaps_block *m, uint64_t s, uint32_t *missing)
{
	if (eng_rebuild_goes_above(rb, m->layer, s))
		return true;
	for (uint32_t c = 0; c < m->nchunks; c++)
		for (uint32_t e = 0; e < m->chunks[c].nentries; e++) {
			const struct ondisk_map_entry *x = &m->chunks[c].e[e];
			uint64_t lba = (uint64_t)m->chunks[c].chunk * MAP_CHUNK_BLOCKS + x->index;

			if (x->slot != ONDISK_MAP_SLOT_ZERO && sno_slot(t, x->slot) == UINT32_MAX &&
			    !eng_rebuild_remaps(rb, m->layer, lba, s)) {
				*missing = x->slot;
				return false;
			}
		}
	return true;
}

/* Why a family checkpoint was passed over (an adoption's DEBUG line: a new owner that
 * reads more of the log than it should says which checkpoint it could not use). */
static void fckpt_passed_over(uint64_t uid, uint64_t k, const char *why, uint32_t sno,
			      uint32_t block)
{
	log_msg(LOG_DEBUG, ENG_LOG, "adopting family %llx: its checkpoint %llu cannot be "
		"loaded yet: %s (segment %x block %u)", (unsigned long long)uid,
		(unsigned long long)k, why, sno, block);
}

/* One run of K's END: its MAPS blocks kept, of K, naming only segments here or
 * entries the roll-forward maps again. */
static int check_run(const struct engine *eng, uint64_t uid, const struct eng_rebuild *rb,
		     const struct eng_rb_fblock *fbs, size_t n, const struct eng_sno_table *t,
		     const struct ondisk_fckpt_run *run, uint64_t s, uint64_t k,
		     struct fmaps_block *m, struct eng_fckpt_base *b)
{
	for (uint32_t blk = run->block; blk < (uint32_t)run->block + run->count; blk++) {
		ssize_t i = maps_at(eng, fbs, n, run->sno, blk);
		uint32_t missing = 0;
		int r;

		if (i < 0) {
			fckpt_passed_over(uid, k, "a MAPS block not read", run->sno, blk);
			return -ENOENT;
		}
		if (ondisk_fmaps_block_decode(fbs[i].data, QUILL_BLOCK_SIZE, m) < 0 ||
		    m->ckpt != k) {
			fckpt_passed_over(uid, k, "a MAPS block of another one", run->sno,
					  blk);
			return -ENOENT;
		}
		if (!missing_covered(rb, t, m, s, &missing)) {
			fckpt_passed_over(uid, k, "its maps name a segment not here, and "
					  "nothing after it maps those blocks again", missing, 0);
			return -ENOENT;
		}
		r = base_add(b, (size_t)i);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Checkpoint k, if complete and loadable: its MAPS blocks in b. */
static int try_ckpt(const struct engine *eng, uint64_t uid, const struct eng_rebuild *rb,
		    const struct eng_rb_fblock *fbs, size_t n, const struct eng_sno_table *t,
		    uint64_t k, struct fckpt_block *fb, struct fmaps_block *m,
		    struct eng_fckpt_base *b)
{
	bool last = false;
	int r = 0;

	b->nmaps = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		if (!fckpt_decode(&fbs[i], uid, fb) || fb->type != ONDISK_FCKPT_END || fb->ckpt != k)
			continue;
		last |= fb->last;
		b->seq = fb->seq;
		for (uint32_t j = 0; j < fb->nruns && r == 0; j++)
			r = check_run(eng, uid, rb, fbs, n, t, &fb->runs[j], fb->seq, k, m, b);
	}
	if (r == 0 && !last) {
		fckpt_passed_over(uid, k, "cut short: its last END block is not read", 0, 0);
		r = -ENOENT; /* cut short: END's last block never landed */
	}
	if (r == 0)
		b->k = k;
	return r;
}

int eng_fckpt_find(const struct engine *eng, uint64_t uid, const struct eng_rebuild *rb,
		   struct eng_fckpt_base *b)
{
	const struct eng_rb_fblock *fbs;
	size_t n = eng_rebuild_fblocks(rb, &fbs);
	struct fckpt_block *fb = malloc(sizeof(*fb));
	struct fmaps_block *m = malloc(sizeof(*m));
	struct eng_sno_table t;
	uint64_t below = UINT64_MAX;
	int r = fb && m ? eng_sno_table_build(eng, uid, &t) : -ENOMEM;

	b->k = b->seq = 0;
	while (r == 0) {
		uint64_t k = 0;

		for (size_t i = 0; i < n; i++) /* the newest END below those tried */
			if (fckpt_decode(&fbs[i], uid, fb) && fb->type == ONDISK_FCKPT_END &&
			    fb->ckpt < below && fb->ckpt > k)
				k = fb->ckpt;
		if (k == 0)
			break;
		r = try_ckpt(eng, uid, rb, fbs, n, &t, k, fb, m, b);
		if (r == 0)
			break;
		if (r == -ENOENT)
			r = 0;
		below = k;
	}
	if (fb && m)
		eng_sno_table_free(&t);
	if (b->k == 0)
		b->nmaps = 0;
	free(fb);
	free(m);
	return r;
}

int eng_fckpt_load(struct engine *eng, uint64_t uid, const struct eng_rebuild *rb,
		   const struct eng_fckpt_base *b)
{
	const struct eng_rb_fblock *fbs;
	struct fmaps_block *m = malloc(sizeof(*m));
	struct eng_sno_table t;
	int r = m ? eng_sno_table_build(eng, uid, &t) : -ENOMEM;

	eng_rebuild_fblocks(rb, &fbs);
	for (size_t i = 0; i < b->nmaps && r == 0; i++) {
		struct engine_volume *v;

		r = ondisk_fmaps_block_decode(fbs[b->maps[i]].data, QUILL_BLOCK_SIZE, m);
		v = r == 0 ? eng_volume_by_id(eng, m->layer) : NULL;
		if (r == 0 && (!v || v->rec.uid != uid))
			r = -ENOENT; /* maps of a layer the checkpoint has no record of */
		if (r == 0)
			r = fmaps_load(v, &t, m, true);
	}
	if (m)
		eng_sno_table_free(&t);
	free(m);
	return r;
}

void eng_fckpt_base_free(struct eng_fckpt_base *b)
{
	free(b->maps);
	memset(b, 0, sizeof(*b));
}
