/* engine/adopt.c — a family taken over from held copies (engine.h, "taking a family
 * over"; docs/engine.md, "Adopting a family").
 *
 * The copies are sealed held segments of family uid (held.c). A job reads them whole,
 * several at a time (ENG_ADOPT_READS, at most ENG_ADOPT_READ_BYTES, in flight per
 * step; the loop serves other volumes meanwhile), and feeds each to the machinery of
 * a whole-store rebuild (rebuild.c): its header and its log, walked with every
 * batch's data checked. Once all are read:
 *   1. refusals (nothing written yet): a layer id the copies name is in use here (a
 *      layer, a merged snapshot's alias, a tombstone), or their volume's name is;
 *   2. each copy's header is rewritten as this store's (same generation, volume,
 *      family, number, epoch: what its summaries name), and a zero block goes where
 *      its log ends, when the slot has room; then a store flush. The "H" records still
 *      stand: a crash here leaves held copies (start-up skips held slots' headers);
 *   3. the layers are rebuilt in memory (flagged committing: nobody opens them), and
 *      one synced RocksDB batch makes them this store's: their records and whole maps,
 *      the aliases of merged snapshots, the store record's next layer id, and the
 *      deletion of the "H" records. A crash before it lands leaves held copies; after,
 *      the family (its slots now carry this store's headers and name its layers);
 *   4. the slots leave the held table, the counters move past the copies', and the job
 *      waits for a checkpoint before it answers (see the doc for why).
 * A failure before 3 lands undoes the in-memory part: the copies are held as before.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "engine/engine_internal.h"
#include "metadata/meta.h"

enum { AD_HEADS, AD_HEADS_WAIT, AD_READ, AD_WALK, AD_CHECK, AD_HEADERS, AD_FLUSH, AD_APPLY, AD_COMMIT,
       AD_CKPT };

struct adopt_copy {
	uint32_t sno, slot, length;
	bool began;                /* set aside in the held table (eng_held_adopt_begin), or
				      its remote entry taken (seg_remote_adopt_begin) */
	struct engine_adopt_remote *rem; /* no copy here: a remote entry (its header given) */
	bool walked;
	uint64_t first;            /* walked: its first batch's seq */
	struct slot saved;         /* the slot as it was: restored if the adoption fails */
	struct segment_header h;   /* its header as the old owner wrote it */
};

struct adopt_job {
	struct eng_job job; /* first: job.c frees it through release */
	uint64_t uid;
	size_t n, next, end; /* copies; [next, end) are being read, then walked */
	size_t nremote;      /* of them remote entries (engine_adopt_remote) */
	size_t inflight;     /* the most copies read at once */
	struct adopt_copy *c;
	uint8_t *buf;        /* inflight copies, whole */
	uint8_t *hdrs;      /* n rewritten headers, then a zero block */
	struct eng_rebuild *rb;
	struct meta_batch *mb;
	bool applied, committed;
	/* a family checkpoint found in the copies read (newest first): copies whose
	 * batches are all at or below its S are not read whole (skippable()) */
	struct eng_fckpt_base base;
	bool from_fckpt;    /* family_records, and not QUILL_ADOPT_WHOLE_LOG=1 */
	size_t nread;       /* c[0, nread) are read whole, c[nread, n) are skipped */
	size_t nwhole;      /* copies read whole */
	size_t naliases, ndead, nops; /* as they were before the layers were rebuilt */
	uint64_t started_ms;
	/* where the time goes (µs, logged at the end): the wait between steps counts to
	 * the step that ends it */
	uint64_t lap_us;
	uint64_t t_read, t_walk, t_write, t_apply, t_commit, t_ckpt;
	uint64_t t_find;    /* looking for a family checkpoint (within walk) */
	uint64_t t_load;    /* loading its maps (within apply) */
	uint64_t bytes;     /* the copies' logs, read whole */
};

/* Adds the time since the last lap to *phase. */
static void adopt_lap(struct adopt_job *aj, uint64_t *phase)
{
	uint64_t now = log_clock_us();

	*phase += now - aj->lap_us;
	aj->lap_us = now;
}

static void adopt_log_times(const struct adopt_job *aj)
{
	char from[96];

	if (aj->nread < aj->n)
		snprintf(from, sizeof(from), "from its family checkpoint at seq %llu (%zu MAPS "
			 "blocks)", (unsigned long long)aj->base.seq, aj->base.nmaps);
	else
		snprintf(from, sizeof(from), "from the whole log");
	log_msg(LOG_INFO, ENG_LOG, "adopted family %llx %s: %zu of %zu copies read whole, "
		"%llu MiB of log; read %llu ms, walk %llu ms (finding the checkpoint %llu ms), "
		"headers+flush %llu ms, layers+maps+roll-forward %llu ms (maps %llu ms), commit "
		"%llu ms, checkpoint %llu ms", (unsigned long long)aj->uid, from, aj->nwhole, aj->n,
		(unsigned long long)(aj->bytes >> 20), (unsigned long long)aj->t_read / 1000,
		(unsigned long long)aj->t_walk / 1000, (unsigned long long)aj->t_find / 1000,
		(unsigned long long)aj->t_write / 1000, (unsigned long long)aj->t_apply / 1000,
		(unsigned long long)aj->t_load / 1000, (unsigned long long)aj->t_commit / 1000,
		(unsigned long long)aj->t_ckpt / 1000);
}

/* The in-memory part of a failed adoption goes; the copies are held as before. */
static void adopt_undo(struct adopt_job *aj)
{
	struct engine *eng = aj->job.eng;
	struct engine_volume *v;

	if (aj->applied) {
		while ((v = eng_family_layer(eng, aj->uid)))
			eng_volume_remove(eng, v);
		eng->naliases = aj->naliases;
		eng->ndead = aj->ndead;
		eng->nops = aj->nops;
	}
	for (size_t i = 0; i < aj->n; i++) {
		if (!aj->c[i].began)
			continue;
		if (aj->c[i].rem) {
			seg_remote_adopt_end(eng, aj->c[i].slot, false);
			continue;
		}
		seg_slot_set(eng, aj->c[i].slot, &aj->c[i].saved);
		eng_held_adopt_end(eng, aj->uid, aj->c[i].sno, false);
	}
}

static void adopt_release(struct eng_job *job)
{
	struct adopt_job *aj = (struct adopt_job *)job;

	if (!aj->committed)
		adopt_undo(aj);
	if (aj->mb)
		meta_batch_destroy(aj->mb);
	eng_rebuild_end(aj->rb);
	eng_fckpt_base_free(&aj->base);
	seg_buf_free(aj->buf);
	seg_buf_free(aj->hdrs);
	free(aj->c);
	free(aj);
}

/* ---- reading and walking the copies ---- */

static uint8_t *copy_buf(const struct adopt_job *aj, size_t i)
{
	return aj->buf + (i - aj->next) * aj->job.eng->blocks_per_seg * QUILL_BLOCK_SIZE;
}

/* The copies to read now stop before the first remote one (the copies read may find
 * the family checkpoint that lets the rest go unread). If the very next one is remote,
 * it is needed whole, and so are the remote ones after it, as many as were read whole
 * so far (at least one): a checkpoint far back costs a number of adoptions that grows
 * with the log of the segments above it, not one per segment; with no checkpoint to
 * look for, every remote one is (all are read whole). They are marked `whole` for the
 * caller to copy here before it adopts again: -EREMOTE. */
static int remote_needed(struct adopt_job *aj)
{
	size_t want = aj->from_fckpt ? (aj->nwhole ? aj->nwhole : 1) : SIZE_MAX, n = 0;

	for (size_t i = aj->next; i < aj->end; i++)
		if (aj->c[i].rem) {
			if (i > aj->next) {
				aj->end = i;
				return 0;
			}
			break;
		}
	if (!aj->c[aj->next].rem)
		return 0;
	for (size_t i = aj->next; i < aj->nread && n < want; i++)
		if (aj->c[i].rem) {
			aj->c[i].rem->whole = true;
			n++;
		}
	log_msg(LOG_INFO, ENG_LOG, "adopting family %llx: %zu segments with no copy here are "
		"needed whole (above the family checkpoint found so far, or none)",
		(unsigned long long)aj->uid, n);
	return -EREMOTE;
}

/* The next copies, up to inflight of them and none remote, each read whole into its
 * part of buf. */
static int read_copies(struct adopt_job *aj)
{
	int r;

	aj->end = aj->next + aj->inflight < aj->nread ? aj->next + aj->inflight : aj->nread;
	for (size_t i = aj->next; i < aj->end; i++)
		if (aj->c[i].length == 0)
			return -EILSEQ; /* not even a header */
	r = remote_needed(aj);
	if (r < 0)
		return r;
	for (size_t i = aj->next; i < aj->end; i++) {
		const struct adopt_copy *c = &aj->c[i];

		aj->bytes += (uint64_t)c->length * QUILL_BLOCK_SIZE;
		aj->nwhole++;
		eng_job_seg_io(&aj->job, false, c->slot, 0, copy_buf(aj, i), c->length);
	}
	return 0;
}

/* Copy i, just read into buf: its header must name it; its log is fed to the
 * rebuild, with nothing past its sealed length (zeros there: an earlier use of the
 * slot left whatever it left). */
/* Decodes copy i's header from blk into c->h: is it the header of that segment of the
 * family (and has the copy any block)? */
static int check_head(struct adopt_job *aj, size_t i, const uint8_t *blk)
{
	struct adopt_copy *c = &aj->c[i];

	if (c->length == 0 || ondisk_segment_header_decode(blk, QUILL_BLOCK_SIZE, &c->h) < 0 ||
	    c->h.state != ONDISK_SEG_USED || c->h.family_uid != aj->uid || c->h.sno != c->sno) {
		log_msg(LOG_ERROR, ENG_LOG, "adopting family %llx: the copy of segment %u in "
			"slot %u has no header of that segment; not adopted",
			(unsigned long long)aj->uid, c->sno, c->slot);
		return -EILSEQ;
	}
	return 0;
}

static int walk_copy(struct adopt_job *aj, size_t i, uint8_t *buf)
{
	struct engine *eng = aj->job.eng;
	struct adopt_copy *c = &aj->c[i];
	struct slot *s = &eng->slots[c->slot];

	memset(buf + (size_t)c->length * QUILL_BLOCK_SIZE, 0,
	       (size_t)(eng->blocks_per_seg - c->length) * QUILL_BLOCK_SIZE);
	if (check_head(aj, i, buf) < 0)
		return -EILSEQ;
	/* the walk counts its entries afresh */
	s->tombs = s->records = 0;
	s->first_seq = s->last_seq = 0;
	return eng_rebuild_slot(aj->rb, c->slot, &c->h, buf);
}

/* Can copy j go unread? A layer's log is one segment open at a time, its batches
 * numbered in the order they stand: so if a copy walked of the same layer's log (the
 * header's volume), with a higher segment number, begins at or below S, every batch
 * of j is below S, in the checkpoint's maps. (Its header's first_seq is no such
 * bound: a batch formed in the segment before may take its number later.) */
static bool skippable(const struct adopt_job *aj, size_t j)
{
	for (size_t i = 0; i < aj->n; i++) {
		const struct adopt_copy *z = &aj->c[i];

		if (z->walked && z->h.volume_id == aj->c[j].h.volume_id && z->sno > aj->c[j].sno &&
		    z->first && z->first <= aj->base.seq)
			return true;
	}
	return false;
}

/* After the copies of a step are walked: the newest loadable family checkpoint so far,
 * and the copies not read yet that it covers go to the back (stable, newest first
 * among the rest). */
static int find_base(struct adopt_job *aj)
{
	struct engine *eng = aj->job.eng;
	struct adopt_copy *tmp;
	uint64_t t0 = log_clock_us();
	size_t w, k = 0;
	int r;

	if (!aj->from_fckpt || aj->end == aj->nread)
		return 0;
	r = eng_fckpt_find(eng, aj->uid, aj->rb, &aj->base);
	if (r < 0 || !aj->base.k)
		goto out;
	tmp = malloc((aj->nread - aj->end) * sizeof(*tmp));
	if (!tmp) {
		r = -ENOMEM;
		goto out;
	}
	w = aj->end;
	for (size_t j = aj->end; j < aj->nread; j++)
		if (skippable(aj, j))
			tmp[k++] = aj->c[j];
		else
			aj->c[w++] = aj->c[j];
	memcpy(&aj->c[w], tmp, k * sizeof(*tmp));
	free(tmp);
	aj->nread = w;
out:
	aj->t_find += log_clock_us() - t0;
	return r;
}

/* The copies read in this step, walked in turn. */
static int walk_copies(struct adopt_job *aj)
{
	int r = 0;

	for (size_t i = aj->next; i < aj->end && r == 0; i++) {
		r = walk_copy(aj, i, copy_buf(aj, i));
		aj->c[i].walked = true;
		aj->c[i].first = aj->job.eng->slots[aj->c[i].slot].first_seq;
	}
	if (r == 0)
		r = find_base(aj);
	if (r == 0)
		aj->next = aj->end;
	return r;
}

/* Every held copy's header (into hdrs): which layer's log each is (skippable()). A
 * remote one's was decoded and checked by prepare_remote already. */
static void read_heads(struct adopt_job *aj)
{
	for (size_t i = 0; i < aj->n; i++)
		if (!aj->c[i].rem)
			eng_job_seg_io(&aj->job, false, aj->c[i].slot, 0,
				       aj->hdrs + i * QUILL_BLOCK_SIZE, 1);
}

static int decode_heads(struct adopt_job *aj)
{
	int r = 0;

	for (size_t i = 0; i < aj->n && r == 0; i++)
		if (!aj->c[i].rem)
			r = check_head(aj, i, aj->hdrs + i * QUILL_BLOCK_SIZE);
	return r;
}

/* Copy i, not walked: its slot says what a walk cannot tell (unknown trims and
 * records: kept, as if it had some; the cleaner carries them when it cleans it). */
static int note_head(struct adopt_job *aj, size_t i)
{
	struct adopt_copy *c = &aj->c[i];
	struct slot *s = &aj->job.eng->slots[c->slot];

	s->used = c->length;
	s->tombs = s->records = 1;
	s->first_seq = 1;
	s->last_seq = aj->base.seq;
	s->generation = c->h.generation;
	if (c->rem)
		s->records = 0; /* never cleaned: nothing to carry (and its "T" record is
				   written: settled_record wants none) */
	return eng_rebuild_note(aj->rb, c->slot, &c->h);
}

static int note_heads(struct adopt_job *aj)
{
	int r = 0;

	for (size_t i = aj->nread; i < aj->n && r == 0; i++)
		r = note_head(aj, i);
	return r;
}

/* ---- refusals ---- */

static bool id_taken(struct engine *eng, uint64_t id)
{
	if (eng_layer_for_owner(eng, id))
		return true;
	for (size_t i = 0; i < eng->ndead; i++)
		if (eng->dead[i].id == id)
			return true;
	return false;
}

static int check_collisions(struct adopt_job *aj)
{
	struct engine *eng = aj->job.eng;

	for (size_t i = 0; i < eng_rebuild_nlayers(aj->rb); i++) {
		struct volume_record rec;
		bool alive = eng_rebuild_layer(aj->rb, i, &rec);

		if (id_taken(eng, rec.volume_id)) {
			log_msg(LOG_ERROR, ENG_LOG, "adopting family %llx: its layer id %llu is in "
				"use here; refused", (unsigned long long)aj->uid,
				(unsigned long long)rec.volume_id);
			return -EEXIST;
		}
		if (alive && rec.kind == ONDISK_LAYER_VOLUME && eng_volume_by_name(eng, rec.name)) {
			log_msg(LOG_ERROR, ENG_LOG, "adopting family %llx: a volume named %s "
				"exists here; refused", (unsigned long long)aj->uid, rec.name);
			return -EEXIST;
		}
	}
	return 0;
}

/* ---- writing ---- */

/* Each copy's header as this store's, and a zero block where its log ends. */
static int write_headers(struct adopt_job *aj)
{
	struct engine *eng = aj->job.eng;
	uint8_t *zero = aj->hdrs + aj->n * QUILL_BLOCK_SIZE;

	for (size_t i = 0; i < aj->n; i++) {
		struct adopt_copy *c = &aj->c[i];
		struct segment_header h = c->h;
		uint8_t *blk = aj->hdrs + i * QUILL_BLOCK_SIZE;
		uint32_t end = eng->slots[c->slot].used; /* where the walk stopped */

		if (c->rem)
			continue; /* no place on this device */
		memcpy(h.uuid, eng->sb.uuid, sizeof(h.uuid));
		ondisk_segment_header_encode(&h, blk);
		eng_job_seg_io(&aj->job, true, c->slot, 0, blk, 1);
		if (end < eng->blocks_per_seg)
			eng_job_seg_io(&aj->job, true, c->slot, end, zero, 1);
	}
	return 0;
}

/* The layer whose log copy c is (a layer that is gone: the header's id, nothing live). */
static uint64_t copy_owner(struct engine *eng, const struct adopt_copy *c)
{
	struct engine_volume *owner = eng_layer_for_owner(eng, c->h.volume_id);

	return owner ? owner->rec.volume_id : c->h.volume_id;
}

/* The batch that makes the family this store's (step 3 at the top). */
static int build_commit(struct adopt_job *aj)
{
	struct engine *eng = aj->job.eng;
	struct ondisk_store_record srec;
	uint64_t seq, gen, id;
	int r = meta_batch_create(&aj->mb);

	if (r < 0)
		return r;
	for (size_t i = 0; i < eng->nvols && r == 0; i++) {
		struct engine_volume *v = eng->vols[i];

		if (v->rec.uid != aj->uid || v->rec.kind == ONDISK_LAYER_CATALOG)
			continue;
		eng_batch_put_record(aj->mb, &v->rec);
		r = eng_map_put_dirty(aj->mb, v);
	}
	for (size_t i = aj->naliases; i < eng->naliases; i++)
		eng_batch_put_alias(aj->mb, &eng->aliases[i]);
	eng_rebuild_maxima(aj->rb, &seq, &gen, &id);
	if (id >= eng->next_volume_id)
		eng->next_volume_id = id + 1; /* never handed out again, committed or not */
	ondisk_store_record_encode(eng->sb.uuid, eng->next_volume_id, &srec);
	meta_batch_put(aj->mb, ONDISK_KEY_STORE, 1, &srec, sizeof(srec));
	for (size_t i = 0; i < aj->n && r == 0; i++) {
		const struct adopt_copy *c = &aj->c[i];

		if (!c->rem) {
			eng_held_put_drop(aj->mb, aj->uid, c->sno);
			continue;
		}
		/* the entry's record with the maps that name it: a restart restores it */
		eng->slots[c->slot].volume_id = copy_owner(eng, c);
		r = seg_table_put(eng, aj->mb, c->slot);
	}
	return r;
}

static int load_base(void *arg)
{
	struct adopt_job *aj = arg;
	uint64_t t0 = log_clock_us();
	int r = eng_fckpt_load(aj->job.eng, aj->uid, aj->rb, &aj->base);

	aj->t_load += log_clock_us() - t0;
	return r;
}

static int apply(struct adopt_job *aj)
{
	struct engine *eng = aj->job.eng;
	int r;

	aj->naliases = eng->naliases;
	aj->ndead = eng->ndead;
	aj->nops = eng->nops;
	aj->applied = true;
	r = aj->nread < aj->n ? eng_rebuild_apply_base(aj->rb, aj->base.seq, load_base, aj)
		    : eng_rebuild_apply(aj->rb);
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->rec.uid == aj->uid)
			eng->vols[i]->committing = true; /* not opened before the commit lands */
	return r < 0 ? r : build_commit(aj);
}

/* The commit landed: the family is this store's. */
static void adopted(struct adopt_job *aj)
{
	struct engine *eng = aj->job.eng;
	uint64_t seq, gen, id;
	size_t layers = 0;

	aj->committed = true;
	seg_family_sno_unsure(eng, aj->uid, true); /* until the takeover reserves */
	if (aj->nread < aj->n) {
		eng->stats.adopt_fckpt_loads++;
		eng->stats.adopt_copies_unread += aj->n - aj->nread;
		eng->stats.adopt_fckpt_seq = aj->base.seq;
	}
	for (size_t i = 0; i < aj->n; i++) {
		struct adopt_copy *c = &aj->c[i];

		if (c->rem) {
			seg_remote_adopt_end(eng, c->slot, true);
			eng->stats.adopt_remote_entries++;
		} else {
			eng_held_adopt_end(eng, aj->uid, c->sno, true);
		}
		/* a slot of a layer that is gone holds nothing live: a checkpoint frees it */
		eng->slots[c->slot].volume_id = copy_owner(eng, c);
	}
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->rec.uid == aj->uid) {
			eng->vols[i]->committing = false;
			layers++;
		}
	eng_rebuild_maxima(aj->rb, &seq, &gen, &id);
	if (seq >= eng->next_seq)
		eng->next_seq = seq + 1;
	if (gen >= eng->next_gen)
		eng->next_gen = gen + 1;
	log_msg(LOG_INFO, ENG_LOG, "adopted family %llx: %zu segments (%zu with no copy "
		"here: remote entries), %zu layers, in %llu ms", (unsigned long long)aj->uid, aj->n,
		aj->nremote, layers,
		(unsigned long long)(eng_now_ms() - aj->started_ms));
}

static int commit(struct adopt_job *aj)
{
	int r = eng_job_meta_commit(&aj->job, &aj->mb);

	if (r == 0) {
		adopt_lap(aj, &aj->t_commit);
		adopted(aj);
	}
	return eng_job_next(&aj->job, r, AD_CKPT);
}

static int adopt_step(struct eng_job *job)
{
	struct adopt_job *aj = (struct adopt_job *)job;
	int r;

	switch (job->pc) {
	case AD_HEADS:
		if (!aj->from_fckpt)
			return eng_job_next(&aj->job, 0, AD_READ);
		read_heads(aj);
		return eng_job_next(&aj->job, 0, AD_HEADS_WAIT);
	case AD_HEADS_WAIT:
		r = eng_job_wait_io(job);
		if (r == 0) {
			adopt_lap(aj, &aj->t_read);
			r = decode_heads(aj);
		}
		return eng_job_next(&aj->job, r, AD_READ);
	case AD_READ:
		if (aj->next == aj->nread)
			return eng_job_next(&aj->job, note_heads(aj), AD_CHECK);
		return eng_job_next(&aj->job, read_copies(aj), AD_WALK);
	case AD_WALK:
		r = eng_job_wait_io(job);
		if (r == 0) {
			adopt_lap(aj, &aj->t_read);
			r = walk_copies(aj);
			adopt_lap(aj, &aj->t_walk);
		}
		return eng_job_next(&aj->job, r, AD_READ);
	case AD_CHECK:
		r = check_collisions(aj);
		return eng_job_next(&aj->job, r < 0 ? r : write_headers(aj), AD_HEADERS);
	case AD_HEADERS:
		return eng_job_next(&aj->job, eng_job_wait_io(job), AD_FLUSH);
	case AD_FLUSH:
		r = eng_job_wait_flush(job);
		if (r == 0)
			adopt_lap(aj, &aj->t_write);
		return eng_job_next(&aj->job, r, AD_APPLY);
	case AD_APPLY:
		r = apply(aj);
		if (r < 0)
			return r;
		adopt_lap(aj, &aj->t_apply);
		job->pc = AD_COMMIT;
		/* the commit starts in this step, before any checkpoint can capture the new
		 * layers */
		return commit(aj);
	case AD_COMMIT:
		return commit(aj);
	default:
		/* replay from an older checkpoint would apply the copies' batches again, and a
		 * trim the old owner's cleaner carried into a TOMB is not among them: the
		 * answer waits for a checkpoint that covers them */
		r = eng_job_wait_ckpt(job);
		if (r != ENG_JOB_WAIT) {
			adopt_lap(aj, &aj->t_ckpt);
			adopt_log_times(aj);
		}
		if (r < 0 && r != ENG_JOB_WAIT) {
			log_msg(LOG_WARN, ENG_LOG, "adopted family %llx, but the checkpoint after "
				"it failed; the next one covers it", (unsigned long long)aj->uid);
			return 0;
		}
		return r;
	}
}

static bool whole_log_asked(void)
{
	const char *v = getenv("QUILL_ADOPT_WHOLE_LOG");

	return v && strcmp(v, "1") == 0;
}

static int by_sno_desc(const void *a, const void *b)
{
	const struct adopt_copy *x = a, *y = b;

	return x->sno < y->sno ? 1 : x->sno > y->sno ? -1 : 0;
}

/* Remote segment c (its header given): a remote entry taken for it. */
static int prepare_remote(struct engine *eng, struct adopt_job *aj, struct adopt_copy *c)
{
	int r;

	c->sno = c->rem->sno;
	c->length = c->rem->length;
	if (c->length == 0 || c->length > eng->blocks_per_seg)
		return -EINVAL;
	r = check_head(aj, (size_t)(c - aj->c), c->rem->header);
	if (r == 0)
		r = seg_remote_adopt_begin(eng, aj->uid, c->sno, c->length, c->h.generation,
					   &c->slot);
	if (r == -ENOSPC)
		log_msg(LOG_ERROR, ENG_LOG, "adopting family %llx: no remote entry free for "
			"segment %u", (unsigned long long)aj->uid, c->sno);
	if (r == 0)
		c->began = true;
	return r;
}

/* Sets the copies aside and notes their slots, and takes the remote entries (undone by
 * release on failure). */
static int adopt_prepare(struct engine *eng, struct adopt_job *aj, const uint32_t *snos)
{
	for (size_t i = 0; i < aj->n; i++) {
		struct adopt_copy *c = &aj->c[i];
		int r;

		if (c->rem) {
			r = prepare_remote(eng, aj, c);
			if (r < 0)
				return r;
			continue;
		}
		c->sno = snos[i];
		r = eng_held_adopt_begin(eng, aj->uid, c->sno, &c->slot, &c->length);
		if (r < 0) {
			log_msg(LOG_ERROR, ENG_LOG, "adopting family %llx: segment %u is %s here",
				(unsigned long long)aj->uid, c->sno,
				r == -ENOENT ? "not held" : "not sealed, or busy");
			return r;
		}
		c->began = true;
		c->saved = eng->slots[c->slot];
	}
	/* newest first: a family checkpoint is found before the copies it covers */
	qsort(aj->c, aj->n, sizeof(*aj->c), by_sno_desc);
	return 0;
}

int engine_family_adopt_async(struct engine *eng, uint64_t uid, const uint32_t *snos,
			      size_t n, engine_cb cb, void *arg)
{
	if (n == 0)
		return -EINVAL;
	return engine_family_adopt_remote_async(eng, uid, snos, n, NULL, 0, cb, arg);
}

int engine_family_adopt_remote_async(struct engine *eng, uint64_t uid, const uint32_t *snos,
				     size_t n, struct engine_adopt_remote *rem, size_t nrem,
				     engine_cb cb, void *arg)
{
	struct adopt_job *aj;
	int r;

	if (uid == 0 || uid == ONDISK_CATALOG_UID || (n && !snos) || (nrem && !rem) ||
	    n + nrem == 0 || !cb)
		return -EINVAL;
	if (engine_family_here(eng, uid)) {
		log_msg(LOG_ERROR, ENG_LOG, "adopting family %llx: it has layers here already",
			(unsigned long long)uid);
		return -EEXIST;
	}
	aj = calloc(1, sizeof(*aj));
	if (!aj)
		return -ENOMEM;
	aj->job.release = adopt_release;
	aj->uid = uid;
	aj->n = n + nrem;
	aj->nread = aj->n;
	aj->nremote = nrem;
	/* QUILL_ADOPT_WHOLE_LOG=1: the whole log as before (a measurement's baseline) */
	aj->from_fckpt = eng->opts.family_records && !whole_log_asked();
	aj->started_ms = eng_now_ms();
	aj->lap_us = log_clock_us();
	aj->c = calloc(aj->n, sizeof(*aj->c));
	aj->inflight = ENG_ADOPT_READ_BYTES / ((size_t)eng->blocks_per_seg * QUILL_BLOCK_SIZE);
	if (aj->inflight > ENG_ADOPT_READS)
		aj->inflight = ENG_ADOPT_READS;
	if (aj->inflight > aj->n)
		aj->inflight = aj->n;
	if (aj->inflight == 0)
		aj->inflight = 1;
	aj->buf = seg_buf_alloc(aj->inflight * eng->blocks_per_seg * QUILL_BLOCK_SIZE);
	aj->hdrs = seg_buf_alloc((aj->n + 1) * QUILL_BLOCK_SIZE);
	for (size_t i = 0; aj->c && i < nrem; i++) {
		aj->c[n + i].rem = &rem[i]; /* (rem is the caller's until cb) */
		rem[i].whole = false;
	}
	r = !aj->c || !aj->buf || !aj->hdrs ? -ENOMEM : eng_rebuild_begin(eng, &aj->rb);
	if (r == 0)
		eng_rebuild_keep_fckpt(aj->rb);
	if (r == 0)
		r = adopt_prepare(eng, aj, snos);
	if (r < 0) {
		adopt_release(&aj->job);
		return r;
	}
	return eng_job_start(eng, &aj->job, adopt_step, cb, arg);
}

int engine_family_adopt(struct engine *eng, uint64_t uid, const uint32_t *snos, size_t n)
{
	struct eng_sync s = { 0 };

	return eng_sync_wait(eng, &s, engine_family_adopt_async(eng, uid, snos, n,
								eng_sync_done, &s));
}

/* ---- release: the reverse, for a node that lost the family ---- */

enum { RL_QUIET, RL_FLUSH, RL_COMMIT };

struct release_job {
	struct eng_job job; /* first: job.c frees it with free() unless release */
	uint64_t uid;
	uint32_t *keep;
	uint32_t *keep_len; /* NULL: each kept where it ends */
	size_t nkeep;
	struct meta_batch *mb;
};

static void release_free(struct eng_job *job)
{
	struct release_job *rj = (struct release_job *)job;

	for (size_t i = 0; i < job->eng->nvols; i++) /* a failed release: the family stays */
		if (job->eng->vols[i]->rec.uid == rj->uid)
			job->eng->vols[i]->committing = false;

	if (rj->mb)
		meta_batch_destroy(rj->mb);
	free(rj->keep);
	free(rj->keep_len);
	free(rj);
}

/* Is segment sno, used blocks long, kept? *len: the kept copy's length. */
static bool kept(const struct release_job *rj, uint32_t sno, uint32_t used, uint32_t *len)
{
	for (size_t i = 0; i < rj->nkeep; i++) {
		if (rj->keep[i] != sno)
			continue;
		*len = rj->keep_len && rj->keep_len[i] != UINT32_MAX ? rj->keep_len[i] : used;
		return *len <= used; /* a shorter segment is no copy of that length */
	}
	return false;
}

/* If slot i holds one of the family's own segments that the release keeps as a copy:
 * true, and the copy's "H" record (sealed where the segment ends) in *hr. */
static bool kept_slot(const struct release_job *rj, uint32_t i, uint64_t epoch,
		      struct held_record *hr)
{
	const struct slot *s = &rj->job.eng->slots[i];
	uint32_t len;

	if (s->state == SLOT_FREE || s->held || s->family_uid != rj->uid ||
	    s->volume_id == 0 || !kept(rj, s->sno, s->used, &len))
		return false;
	*hr = (struct held_record){ .slot = i, .epoch = epoch, .sealed = true, .length = len };
	return true;
}

/* The family's writes are retired and nothing moves its blocks; its open segments
 * are sealed where they end. */
static int release_quiet(struct release_job *rj)
{
	struct engine *eng = rj->job.eng;

	for (size_t i = 0; i < eng->nvols; i++) {
		struct engine_volume *v = eng->vols[i];
		int r;

		if (v->rec.uid != rj->uid)
			continue;
		r = eng_job_wait_quiet(&rj->job, v);
		if (r != 0)
			return r;
	}
	for (size_t i = 0; i < eng->nvols; i++) {
		struct engine_volume *v = eng->vols[i];

		if (v->rec.uid == rj->uid && v->open_slot >= 0) {
			seg_seal(eng, (uint32_t)v->open_slot);
			v->open_slot = -1;
		}
	}
	return 0;
}

/* One synced batch: the layers' records and maps go, the kept segments' "H" records
 * come. A crash before it leaves the family; after, the copies (start-up frees the
 * family's other slots: their headers name layers that are gone). */
static int release_batch(struct release_job *rj)
{
	struct engine *eng = rj->job.eng;
	uint64_t epoch = engine_held_epoch(eng, rj->uid);
	int r = meta_batch_create(&rj->mb);

	if (r < 0)
		return r;
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->rec.uid == rj->uid)
			eng_batch_delete_layer(eng, rj->mb, eng->vols[i]->rec.volume_id);
	for (uint32_t i = 0; i < eng->sb.segment_count; i++) {
		struct held_record hr;

		if (kept_slot(rj, i, epoch, &hr))
			eng_held_put(rj->mb, rj->uid, eng->slots[i].sno, &hr);
	}
	return 0;
}

static int released(struct release_job *rj)
{
	struct engine *eng = rj->job.eng;
	uint64_t epoch = engine_held_epoch(eng, rj->uid);
	struct held_record *hr = malloc((rj->nkeep ? rj->nkeep : 1) * sizeof(*hr));
	struct engine_volume *v;
	size_t n = 0;
	int r = 0;

	if (!hr)
		return -ENOMEM;
	for (uint32_t i = 0; i < eng->sb.segment_count && n < rj->nkeep; i++)
		if (kept_slot(rj, i, epoch, &hr[n]))
			eng->slots[i].volume_id = 0, n++; /* not freed with its layer below */
	/* no tombstones: the family lives on elsewhere, and may come back here. The
	 * layers go before their kept slots become copies: discarding a map counts its
	 * blocks out of the slots they are in, and a copy starts from nothing (a slot
	 * whose count went below zero would look empty once adopted again, and be freed
	 * under the blocks it holds) */
	while ((v = eng_family_layer(eng, rj->uid))) {
		eng_layer_discard(eng, v);
		eng_volume_remove(eng, v);
	}
	seg_remote_forget(eng, rj->uid); /* its copies are the new owner's segments */
	for (size_t k = 0; k < n && r == 0; k++)
		r = eng_held_keep(eng, rj->uid, eng->slots[hr[k].slot].sno, &hr[k]);
	free(hr);
	log_msg(LOG_INFO, ENG_LOG, "released family %llx: %zu segments kept as copies",
		(unsigned long long)rj->uid, rj->nkeep);
	return r;
}

static int release_step(struct eng_job *job)
{
	struct release_job *rj = (struct release_job *)job;
	int r;

	switch (job->pc) {
	case RL_QUIET:
		return eng_job_next(job, release_quiet(rj), RL_FLUSH);
	case RL_FLUSH:
		r = eng_job_wait_flush(job);
		if (r == 0)
			r = release_batch(rj);
		return eng_job_next(job, r, RL_COMMIT);
	default:
		r = eng_job_meta_commit(job, &rj->mb);
		return r == 0 ? released(rj) : r;
	}
}

int engine_family_clones(struct engine *eng, uint64_t uid, char *buf, size_t len)
{
	size_t used = 0;
	int n = 0;

	if (len)
		buf[0] = '\0';
	for (size_t i = 0; i < eng->nvols; i++) {
		const struct engine_volume *c = eng->vols[i];
		char spec[ENGINE_SNAP_SPEC_MAX + 1];
		int w;

		if (c->rec.uid == uid || !c->parent || c->parent->rec.uid != uid)
			continue;
		eng_layer_spec(eng, c->parent, spec, sizeof(spec));
		w = snprintf(buf + used, len > used ? len - used : 0, "%s%s (of %s)", n ? ", " : "",
			     c->rec.name, spec);
		if (w > 0 && used + (size_t)w < len)
			used += (size_t)w;
		n++;
	}
	return n;
}

int engine_family_release_async(struct engine *eng, uint64_t uid, const uint32_t *keep,
				size_t nkeep, engine_cb cb, void *arg)
{
	return engine_family_release_to_async(eng, uid, keep, NULL, nkeep, cb, arg);
}

int engine_family_release_to_async(struct engine *eng, uint64_t uid, const uint32_t *keep,
				   const uint32_t *keep_len, size_t nkeep, engine_cb cb,
				   void *arg)
{
	struct release_job *rj;

	if (uid == 0 || uid == ONDISK_CATALOG_UID || (nkeep && !keep) || !cb)
		return -EINVAL;
	if (!engine_family_here(eng, uid))
		return -ENOENT;
	for (size_t i = 0; i < eng->nvols; i++) {
		const struct engine_volume *v = eng->vols[i];

		if (v->rec.uid == uid && (v->open || v->readers || v->job || v->committing ||
					  v->flatten))
			return -EBUSY;
	}
	/* a clone made here (a family of its own) reads through one of the family's
	 * snapshots: the layers cannot go from under it (its parent would dangle) */
	if (engine_family_clones(eng, uid, NULL, 0) > 0)
		return -EMLINK;
	rj = calloc(1, sizeof(*rj));
	if (!rj || (nkeep && !(rj->keep = malloc(nkeep * sizeof(*keep)))) ||
	    (nkeep && keep_len && !(rj->keep_len = malloc(nkeep * sizeof(*keep_len))))) {
		if (rj)
			free(rj->keep);
		free(rj);
		return -ENOMEM;
	}
	if (nkeep)
		memcpy(rj->keep, keep, nkeep * sizeof(*keep));
	if (rj->keep_len)
		memcpy(rj->keep_len, keep_len, nkeep * sizeof(*keep_len));
	rj->uid = uid;
	rj->nkeep = nkeep;
	rj->job.release = release_free;
	/* nobody opens the family's layers while it goes */
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->rec.uid == uid)
			eng->vols[i]->committing = true;
	return eng_job_start(eng, &rj->job, release_step, cb, arg);
}

int engine_family_release(struct engine *eng, uint64_t uid, const uint32_t *keep,
			  size_t nkeep)
{
	struct eng_sync s = { 0 };

	return eng_sync_wait(eng, &s, engine_family_release_async(eng, uid, keep, nkeep,
								  eng_sync_done, &s));
}

bool engine_family_here(const struct engine *eng, uint64_t uid)
{
	const struct seg_family *f;

	if (uid == 0 || uid == ONDISK_CATALOG_UID)
		return false;
	f = seg_family_get(eng, uid); /* O(1): asked on every holder append */
	return f && f->nlayers;
}

int engine_volume_family(struct engine *eng, const char *name, uint64_t *uid)
{
	struct engine_volume *v = name ? eng_layer_by_spec(eng, name) : NULL;

	if (!v)
		return -ENOENT;
	*uid = v->rec.uid;
	return 0;
}
