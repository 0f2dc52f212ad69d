/* engine/flatten.c — flatten: a clone copies what it reads from its parents with
 * FILL entries, which apply only where the clone's own map has nothing; then it drops
 * the link. Runs from engine_poll(), a few reads at a time, and resumes after a crash.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "engine/engine_internal.h"

/* ---- flatten ---- */

#define FLATTEN_RUN 32u          /* blocks per read */
#define FLATTEN_MAX_INFLIGHT 8u
#define FLATTEN_SCAN_PER_KICK 65536u /* LBAs looked at per engine_poll() */

struct flatten_job {
	struct engine_volume *vol;
	uint64_t next, end;
	unsigned inflight;
	int error;
	bool copied_all;   /* every FILL has retired: waiting for a checkpoint */
	uint64_t last_seq; /* ...at or above this */
};

struct flatten_io {
	struct flatten_job *job;
	uint64_t lba;
	uint32_t n;
	uint8_t *buf;
};

/* A clone with a remote base (base.c) reads whatever it does not map there from the
 * base: all of it is copied (the base may hold data anywhere below its end). */
static bool clone_reads_parent(const struct engine_volume *vol, uint64_t lba)
{
	if (!vol->parent)
		return eng_base_at(vol, lba) && !map_get(vol->map, lba, NULL);
	return lba < vol->rec.overlap && !map_get(vol->map, lba, NULL) &&
	       eng_resolve(vol->parent, lba, NULL);
}

/* Does the clone read allocated zeros of a parent there? */
static bool clone_zeros_parent(const struct engine_volume *vol, uint64_t lba)
{
	return vol->parent && lba < vol->rec.overlap && !map_get(vol->map, lba, NULL) &&
	       engine_block_state(vol->parent, lba) == ENGINE_BLOCK_ZERO;
}

static void flatten_filled(void *arg, int res)
{
	struct flatten_io *io = arg;
	struct flatten_job *job = io->job;

	if (res < 0 && !job->error)
		job->error = res;
	else if (res == 0)
		job->vol->flatten_copied += io->n;
	job->inflight--;
	free(io);
}

static void flatten_read(void *arg, int res)
{
	struct flatten_io *io = arg;
	struct flatten_job *job = io->job;
	struct engine *eng = job->vol->eng;
	struct ioreq *req;
	int r = res;

	if (r == 0 && eng->closing)
		r = -ESHUTDOWN;
	req = r == 0 ? eng_req_alloc(eng, flatten_filled, io) : NULL;
	if (r == 0 && !req)
		r = -ENOMEM;
	/* the FILL entries apply only where the clone still has nothing when they retire */
	for (uint32_t i = 0; r == 0 && i < io->n; i++)
		r = eng_append_data(job->vol, io->lba + i, io->buf + (size_t)i * QUILL_BLOCK_SIZE,
				    ONDISK_ENTRY_FILL, 0, 0, 0, SLOT_FOR_WRITE, req);
	seg_buf_free(io->buf);
	io->buf = NULL;
	if (req) {
		eng_req_put(eng, req, r);
		return;
	}
	flatten_filled(io, r);
}

static int flatten_issue(struct flatten_job *job, uint64_t lba, uint32_t n)
{
	struct flatten_io *io = calloc(1, sizeof(*io));
	int r;

	if (!io)
		return -ENOMEM;
	*io = (struct flatten_io){ .job = job, .lba = lba, .n = n,
				   .buf = seg_buf_alloc((size_t)n * QUILL_BLOCK_SIZE) };
	if (!io->buf) {
		free(io);
		return -ENOMEM;
	}
	/* a remote base: the clone's own read of a run it does not map reads the base */
	r = eng_read_layers(job->vol->parent ? job->vol->parent : job->vol, lba, n, io->buf,
			    flatten_read, io);
	if (r < 0) {
		seg_buf_free(io->buf);
		free(io);
		return r;
	}
	job->inflight++;
	return 0;
}

/* A parent's allocated zeros stay allocated in the clone: a ZERO entry of flatten's,
 * which (like a FILL) loses to the clone's own write or trim that came first. */
static int flatten_zero(struct flatten_job *job, uint64_t lba, uint32_t n)
{
	struct engine *eng = job->vol->eng;
	struct flatten_io *io = calloc(1, sizeof(*io));
	struct ioreq *req;

	if (!io)
		return -ENOMEM;
	*io = (struct flatten_io){ .job = job, .lba = lba }; /* n 0: no block copied */
	req = eng_req_alloc(eng, flatten_filled, io);
	if (!req) {
		free(io);
		return -ENOMEM;
	}
	job->inflight++;
	eng_req_put(eng, req, eng_append_trim(job->vol, lba, n, ONDISK_ENTRY_ZERO,
					      ONDISK_ZERO_FILL, req));
	return 0;
}

static void flatten_end(struct engine_volume *vol, int result)
{
	if (result < 0) { /* not resumed at the next start: the user decides */
		struct volume_record rec = vol->rec;

		rec.flags &= ~(uint32_t)ONDISK_LAYER_FLATTENING;
		if (eng_volume_record_save(vol->eng, &rec) == 0) {
			vol->rec = rec;
			eng_catalog_log_async(vol);
		}
	}
	vol->flatten_result = result;
	vol->flatten_finished = true;
	free(vol->flatten);
	vol->flatten = NULL;
	if (result < 0)
		log_msg(LOG_ERROR, ENG_LOG, "volume %s: flatten stopped: %s", vol->rec.name,
			err_str(-result));
}

/* Every FILL is in the stored map: the parent link can go. Not before: replay of a
 * clone without a parent would let a FILL land where an earlier trim left no zero
 * entry, and bring old data back. */
static void flatten_finish(struct flatten_job *job)
{
	struct engine_volume *vol = job->vol;
	struct volume_record rec = vol->rec;
	int res;

	rec.parent_id = 0;
	rec.overlap = 0;
	rec.flags &= ~(uint32_t)ONDISK_LAYER_FLATTENING;
	res = eng_volume_record_save(vol->eng, &rec);
	if (res == 0) {
		log_msg(LOG_INFO, ENG_LOG, "volume %s flattened: %llu blocks copied",
			vol->rec.name, (unsigned long long)vol->flatten_copied);
		vol->rec = rec;
		vol->parent = NULL;
		eng_catalog_log_async(vol);
	}
	flatten_end(vol, res);
}

/* How many LBAs from job->next on (at most max) pred holds for. */
static uint32_t flatten_run(const struct flatten_job *job, uint32_t max,
			    bool (*pred)(const struct engine_volume *vol, uint64_t lba))
{
	uint32_t n = 0;

	while (job->next + n < job->end && n < max && pred(job->vol, job->next + n))
		n++;
	return n;
}

static void flatten_step(struct flatten_job *job)
{
	struct engine_volume *vol = job->vol;
	uint32_t scanned = 0;

	if (job->end > eng_fill_limit(vol))
		job->end = eng_fill_limit(vol); /* shrunk meanwhile */
	while (!job->error && job->inflight < FLATTEN_MAX_INFLIGHT && job->next < job->end &&
	       scanned < FLATTEN_SCAN_PER_KICK) {
		int (*issue)(struct flatten_job *, uint64_t, uint32_t) = flatten_zero;
		uint32_t n;

		while (job->next < job->end && scanned < FLATTEN_SCAN_PER_KICK &&
		       !clone_reads_parent(vol, job->next) && !clone_zeros_parent(vol, job->next)) {
			job->next++;
			scanned++;
		}
		/* allocated zeros need no read: a run as long as the scan allows */
		n = flatten_run(job, FLATTEN_SCAN_PER_KICK - scanned, clone_zeros_parent);
		if (!n) {
			n = flatten_run(job, FLATTEN_RUN, clone_reads_parent);
			issue = flatten_issue;
		}
		if (n) {
			job->error = issue(job, job->next, n);
			job->next += n;
			scanned += n;
		}
	}
	if (job->inflight || (job->next < job->end && !job->error))
		return;
	if (job->error) {
		flatten_end(vol, job->error);
		return;
	}
	if (!job->copied_all) {
		job->copied_all = true;
		job->last_seq = vol->eng->next_seq - 1;
	}
	if (vol->eng->stats.last_checkpoint_seq >= job->last_seq)
		flatten_finish(job);
	else if (!vol->eng->ckpt_busy)
		vol->eng->ckpt_wanted = true; /* a checkpoint also flushes the store */
}

void eng_flatten_kick(struct engine *eng)
{
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->flatten && !eng->closing)
			flatten_step(eng->vols[i]->flatten);
}

bool eng_flatten_active(const struct engine *eng)
{
	for (size_t i = 0; i < eng->nvols; i++)
		if (eng->vols[i]->flatten)
			return true;
	return false;
}

void eng_flatten_free(struct engine_volume *vol)
{
	free(vol->flatten);
	vol->flatten = NULL;
}

static int flatten_begin(struct engine_volume *vol)
{
	struct flatten_job *job = calloc(1, sizeof(*job));

	if (!job)
		return -ENOMEM;
	job->vol = vol;
	job->end = eng_fill_limit(vol);
	vol->flatten = job;
	vol->flatten_finished = false;
	vol->flatten_result = 0;
	vol->flatten_copied = 0;
	log_msg(LOG_INFO, ENG_LOG, "volume %s: flatten started (%llu blocks to look at)",
		vol->rec.name, (unsigned long long)job->end);
	return 0;
}

static int flatten_check(const struct engine_volume *vol)
{
	if (vol->flatten)
		return -EALREADY;
	/* a clone's own snapshots would lose their parent: not supported */
	if (!vol->parent)
		return eng_base_at(vol, 0) ? 0 : -EINVAL; /* a remote base (base.c) */
	if (vol->parent->rec.uid == vol->rec.uid)
		return -EINVAL;
	return 0;
}

static int flatten_start_step(struct eng_job *job)
{
	struct engine_volume *vol = job->layers[0];
	struct volume_record rec;
	int r = eng_job_wait_settled(job);

	if (r == 0)
		r = flatten_check(vol);
	if (r)
		return r;
	/* noted first, so that a crash or a stop does not leave it half done */
	rec = vol->rec;
	rec.flags |= ONDISK_LAYER_FLATTENING;
	r = eng_volume_record_save(job->eng, &rec);
	if (r < 0)
		return r;
	vol->rec = rec;
	eng_catalog_log(vol);
	return flatten_begin(vol);
}

int engine_flatten_start_async(struct engine *eng, const char *volname, engine_cb cb,
			       void *arg)
{
	struct engine_volume *vol = eng_volume_by_name(eng, volname);
	struct eng_job *job;
	int r;

	if (!vol)
		return -ENOENT;
	r = flatten_check(vol);
	if (r < 0)
		return r;
	job = calloc(1, sizeof(*job)); /* a plain job: its one layer says everything */
	if (!job)
		return -ENOMEM;
	job->layers[0] = vol;
	return eng_job_start(eng, job, flatten_start_step, cb, arg);
}

int engine_flatten_start(struct engine *eng, const char *volname)
{
	struct eng_sync s = { 0 };

	return eng_sync_wait(eng, &s, engine_flatten_start_async(eng, volname, eng_sync_done,
								  &s));
}

void eng_flatten_resume(struct engine *eng)
{
	for (size_t i = 0; i < eng->nvols; i++) {
		struct engine_volume *vol = eng->vols[i];

		if (!(vol->rec.flags & ONDISK_LAYER_FLATTENING) || vol->flatten ||
		    vol->rec.kind != ONDISK_LAYER_VOLUME || !vol->parent ||
		    vol->parent->rec.uid == vol->rec.uid)
			continue;
		if (flatten_begin(vol) < 0)
			log_msg(LOG_ERROR, ENG_LOG, "volume %s: flatten not resumed (no memory); "
				"run it again", vol->rec.name);
	}
}

int engine_flatten_status(struct engine *eng, const char *volname,
			  struct engine_flatten_status *out)
{
	struct engine_volume *vol = eng_volume_by_name(eng, volname);

	if (!vol)
		return -ENOENT;
	memset(out, 0, sizeof(*out));
	out->running = vol->flatten != NULL;
	out->copied_blocks = vol->flatten_copied;
	out->result = vol->flatten_result;
	out->finished = vol->flatten_finished;
	if (vol->flatten) {
		out->done_blocks = vol->flatten->next;
		out->total_blocks = vol->flatten->end;
	}
	return 0;
}
