/* replication/catchup.c — the owner's copies of sealed segments that have fewer than R
 * holders (catchup.h). A `struct cjob` is one segment being copied to one node; it has
 * exactly one thing outstanding at a time (an etcd call, a peer request, a local read
 * or the budget's timer), so after catchup_destroy() the answer to that one thing
 * frees it (its `c` is NULL). The records are scanned by a recscan (recscan.h).
 */
#include "replication/catchup.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "engine/engine.h"
#include "engine/segment.h"
#include "replication/peer.h"
#include "replication/peer_proto.h"
#include "replication/fragbuild.h"
#include "replication/recscan.h"
#include "replication/segfetch.h"
#include "replication/replica_internal.h"

#undef LOG_TAG
#define LOG_TAG "catchup"
#define SCAN_BUSY_MS 1000u   /* some record has fewer than R holders */
#define SCAN_IDLE_MS 30000u
#define SCAN_KICK_MS 100u
#define RECORD_GATHER_MS 30u /* a copy's START or DONE waits at most this long for others
				to share its etcd txn (record_queue) */
#define DROPS_PER_SCAN 32u   /* gone holders' record steps a family's scan sends: the
				next scan (a second later) sends more, and a retry of one
				that landed meanwhile is harmless */

/* ---- pure parts ---- */

void catchup_budget_init(struct catchup_budget *b, uint64_t rate, uint64_t burst,
			 uint64_t now_ms)
{
	*b = (struct catchup_budget){ .rate = rate ? rate : 1, .burst = burst ? burst : 1,
				      .tokens = (int64_t)(burst ? burst : 1), .last_ms = now_ms };
}

static void budget_refill(struct catchup_budget *b, uint64_t now_ms)
{
	if (now_ms > b->last_ms) {
		/* what fills the bucket from where it is (a debt included): no more */
		uint64_t room = b->burst + (uint64_t)(b->tokens < 0 ? -b->tokens : 0);
		uint64_t ms = now_ms - b->last_ms;
		uint64_t add = ms > room / b->rate * 1000 + 1000 ? room : ms * b->rate / 1000;
		int64_t t = b->tokens + (int64_t)(add > room ? room : add);

		b->tokens = t > (int64_t)b->burst ? (int64_t)b->burst : t;
		b->last_ms = now_ms;
	}
}

void catchup_budget_charge(struct catchup_budget *b, uint64_t now_ms, uint64_t bytes)
{
	budget_refill(b, now_ms);
	b->tokens -= (int64_t)bytes;
	b->taken += bytes;
}

void catchup_budget_set_rate(struct catchup_budget *b, uint64_t now_ms, uint64_t rate)
{
	budget_refill(b, now_ms); /* what the old rate gave until now */
	b->rate = rate ? rate : 1;
}

void catchup_budget_hold(struct catchup_budget *b, uint64_t until_ms)
{
	b->hold_until_ms = until_ms;
}

void catchup_budget_set_burst(struct catchup_budget *b, uint64_t burst)
{
	b->burst = burst ? burst : 1;
	if (b->tokens > (int64_t)b->burst)
		b->tokens = (int64_t)b->burst;
}

uint64_t catchup_budget_burst_for(uint64_t rate, uint64_t chunk, unsigned inflight)
{
	uint64_t burst = rate / 1000 * CATCHUP_BURST_MS, most = chunk * (inflight ? inflight : 1);

	return burst < chunk ? chunk : burst > most ? most : burst;
}

unsigned catchup_budget_take(struct catchup_budget *b, uint64_t now_ms, uint64_t bytes)
{
	int64_t need = (int64_t)(bytes < b->burst ? bytes : b->burst);

	if (now_ms < b->hold_until_ms)
		return (unsigned)(b->hold_until_ms - now_ms);
	budget_refill(b, now_ms);
	if (b->tokens >= need) {
		b->tokens -= (int64_t)bytes;
		b->taken += bytes;
		return 0;
	}
	return (unsigned)(((uint64_t)(need - b->tokens) * 1000 + b->rate - 1) / b->rate);
}

bool catchup_node_gone(bool out, uint64_t down_since_ms, uint64_t now_ms, uint64_t out_after_ms,
		       uint64_t *left_ms)
{
	uint64_t down = down_since_ms && now_ms > down_since_ms ? now_ms - down_since_ms : 0;

	if (left_ms)
		*left_ms = 0;
	if (out)
		return true;
	if (!down_since_ms)
		return false;
	if (down >= out_after_ms)
		return true;
	if (left_ms)
		*left_ms = out_after_ms - down;
	return false;
}

unsigned catchup_without_gone(const struct layout_segment *rec,
			      bool (*gone)(void *ctx, const char *id), void *ctx,
			      struct layout_segment *live)
{
	*live = *rec;
	live->nholders = 0;
	for (unsigned h = 0; h < rec->nholders; h++)
		if (!gone(ctx, rec->holders[h]))
			memcpy(live->holders[live->nholders++], rec->holders[h],
			       sizeof(live->holders[0]));
	return rec->nholders - live->nholders;
}

bool catchup_wanted(const struct layout_segment *rec, unsigned replicas)
{
	/* (a stripe recorded with no holder: its replicas went for it, on purpose) */
	return rec->state == LAYOUT_SEG_SEALED && rec->length > 0 && rec->nholders < replicas &&
	       !(rec->stripe.k && rec->nholders == 0);
}

/* ---- the owner's catch-up ---- */

struct cfam {
	uint64_t uid;
	struct catchup_status st;
};

struct cjob;

/* A copy the last scan wanted while every slot was taken: started as soon as one is
 * free (job_end), not at the next scan (a range read of the family's records, and a
 * gap of a scan's wait and read in every slot as it frees). Its START is applied to
 * the record as etcd has it then, as any job's; its live holders are judged when it
 * starts. */
struct cnext {
	uint64_t uid;
	struct layout_segment rec;
	bool remote;
	char to[LAYOUT_ID_MAX + 1];
};
/* A scan reads every record of the family: the copies it finds wait here, and the
 * next scan is asked for once half of them have started (job_end), so that a rebuild
 * reads a family's records every CATCHUP_NEXT_MAX / 2 copies, and its slots never wait
 * for a scan. */
#define CATCHUP_NEXT_MAX 64u

struct catchup {
	struct replicas *rs;
	struct catchup_budget budget;
	struct catchup_rate ctl;     /* sets the budget's rate (catchup_rate.h) */
	struct loop_timer *tick;     /* its next interval's end */
	struct engine_client_load load; /* the clients' figures at the last one */
	uint64_t tick_ms;
	bool worked;                 /* a copy was under way in this interval */
	uint64_t taken_tick;         /* the budget's bytes taken at the interval's start */
	unsigned inflight_max;
	unsigned recording;          /* jobs whose DONE is on its way to etcd: their copy is
					sealed, their slot free (slot_free) */
	struct recscan *scan;
	struct cjob *jobs;
	unsigned njobs;
	struct cfam *fams;
	size_t nfams;
	uint64_t run_start_ms;       /* the catch-up began (0: nothing left to copy) */
	uint64_t run_end_ms;         /* the last copy of the run was recorded */
	uint64_t run_copied;
	uint64_t done_rate;          /* bytes per second of the last run that finished */
	struct cnext next[CATCHUP_NEXT_MAX]; /* the last scan's copies waiting for a slot */
	unsigned next_at, nnext;     /* next[next_at..nnext) wait */
	/* copies whose START or DONE waits to go to etcd with others (record_queue) */
	struct cjob *rec_wait[CLVOL_COPY_BATCH_MAX];
	unsigned nrec_wait;
	struct loop_timer *rec_timer; /* their send, at rec_due_ms */
	uint64_t rec_due_ms;
};

enum cstep { CJ_FETCH, CJ_START, CJ_DROP, CJ_OPEN, CJ_WAIT, CJ_READ, CJ_APPEND, CJ_SEAL, CJ_DONE,
	     CJ_ABORT, CJ_FRAG };

struct cjob {
	struct catchup *c;           /* NULL: abandoned */
	struct cjob *next;
	enum cstep step;
	uint64_t uid;
	uint32_t sno;
	char vol[LAYOUT_ID_MAX + 1];
	int64_t epoch;
	struct rnode *to;
	uint32_t length, at, n;      /* blocks: sealed length, copied, this chunk */
	void *buf;
	struct segfetch *fetch;      /* the source read from the holders, or NULL: the
					owner's local copy */
	struct loop_timer *wait;
	struct cluster_vol_req req;
	uint64_t start_ms;
	struct fragbuild *fb;        /* CJ_FRAG: a fragment rebuilt (fragbuild.h) */
	unsigned frag_index;
	struct clvol_gone gone;      /* the record's holders gone for good: they leave it
					with the DONE once it has R live holders */
	unsigned live;               /* the record's live holders when the copy began */
	bool recording;              /* its DONE is sent or queued: counted in c->recording */
	bool rec_queued;             /* its START or DONE waits in c->rec_wait */
};

/* May another copy start? A copy whose DONE is on its way (or waits to be sent) holds
 * no slot: the next copy's START can share that DONE's txn (record_queue). */
static bool slot_free(const struct catchup *c)
{
	return c->njobs - c->recording < c->inflight_max;
}

static void job_next(struct cjob *j);

static struct cfam *cfam_get(struct catchup *c, uint64_t uid)
{
	struct cfam *v;

	for (size_t i = 0; i < c->nfams; i++)
		if (c->fams[i].uid == uid)
			return &c->fams[i];
	v = realloc(c->fams, (c->nfams + 1) * sizeof(*v));
	if (!v)
		return NULL;
	c->fams = v;
	c->fams[c->nfams] = (struct cfam){ .uid = uid };
	return &c->fams[c->nfams++];
}

static void job_free(struct cjob *j)
{
	segfetch_destroy(j->fetch);
	seg_buf_free(j->buf);
	free(j);
}

static void next_start(struct catchup *c);

/* j is over (its copy recorded, or given up): it leaves the list, and a copy the last
 * scan left waiting takes its slot; the next scan comes soon once half of those have
 * started (CATCHUP_NEXT_MAX). */
static void job_end(struct cjob *j)
{
	struct catchup *c = j->c;
	struct cfam *f = cfam_get(c, j->uid);

	for (struct cjob **p = &c->jobs; *p; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			break;
		}
	c->njobs--;
	if (j->recording)
		c->recording--;
	if (f && f->st.copying)
		f->st.copying--;
	job_free(j);
	next_start(c);
	if (c->nnext - c->next_at <= CATCHUP_NEXT_MAX / 2)
		recscan_kick(c->scan);
}

static void job_id(const struct cjob *j, char *buf, size_t len)
{
	if (j->step == CJ_FRAG)
		snprintf(buf, len, "volume %s segment %016" PRIx64 ".%08" PRIx32 " fragment %u "
			 "to node %s", j->vol, j->uid, j->sno, j->frag_index,
			 j->to ? j->to->id : j->c->rs->self);
	else
		snprintf(buf, len, "volume %s segment %016" PRIx64 ".%08" PRIx32 " to node %s",
			 j->vol, j->uid, j->sno, j->to->id);
}

/* j->req: the copy step phase for j. */
static void job_req_fill(struct cjob *j, enum clvol_copy_phase phase)
{
	memset(&j->req, 0, sizeof(j->req));
	j->req.op = CLUSTER_VOL_SEG_COPY;
	snprintf(j->req.vol.name, sizeof(j->req.vol.name), "%s", j->vol);
	j->req.epoch = j->epoch;
	j->req.seg.id = (struct layout_segid){ .family = j->uid, .seq = j->sno };
	snprintf(j->req.copy_node, sizeof(j->req.copy_node), "%s", j->to->id);
	j->req.copy_phase = phase;
	if (phase == CLVOL_COPY_DONE)
		j->req.copy_gone = j->gone;
}

/* etcd: the copy step phase for j, now. */
static int job_record(struct cjob *j, enum clvol_copy_phase phase, cluster_cb cb)
{
	job_req_fill(j, phase);
	return cluster_volume_async(j->c->rs->cluster, &j->req, cb, j);
}

static void aborted(void *arg, int res, const char *msg)
{
	struct cjob *j = arg;

	if (j->c && res < 0)
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "volume %s: a copy's record keeps naming node "
				"%s (%s): dropped at the next attempt", j->vol, j->to->id, msg);
	if (j->c)
		job_end(j);
	else
		job_free(j);
}

/* The copy failed at its current step (why): "copying" loses the node if it was
 * recorded there; the node's partial copy is then an orphan. */
static void job_fail(struct cjob *j, int err, const char *what)
{
	char id[192];
	bool recorded = j->step > CJ_START;

	job_id(j, id, sizeof(id));
	LOG_RATELIMITED(LOG_WARN, LOG_TAG, "%s: copy failed at %s: %s (tried again later)", id,
			what, err_str(-err));
	j->step = CJ_ABORT;
	if (!recorded || job_record(j, CLVOL_COPY_ABORT, aborted) < 0)
		job_end(j);
}

/* ---- START and DONE sent in groups: one etcd txn for several copies ----
 *
 * Copies end at their own pace, each answer a few ms apart, so steps sent one by one
 * reach an idle session thread one by one: a txn each, and a START's record read
 * alone (etcd ~2 ms CPU per call, a third of a rebuild's CPU). Held for up to
 * RECORD_GATHER_MS and queued together (cluster_volume_async_many), they share one
 * txn and one range read (docs/cluster.md, "Copy steps in one write"). A copy waits
 * for nothing once no other one is under way: nothing else would come. */

static void recorded(void *arg, int res, const char *msg);

/* Is some copy in the middle of its work, its next record step still to come? */
static bool copies_under_way(const struct catchup *c)
{
	for (const struct cjob *j = c->jobs; j; j = j->next)
		if (!j->rec_queued && j->step != CJ_START && j->step != CJ_DONE &&
		    j->step != CJ_ABORT && j->step != CJ_FRAG)
			return true;
	return false;
}

/* In the order of their keys: the session thread batches one volume's steps, and
 * reads a family's unknown records by one range (clvol_segment_copy_batch). */
static int job_key_cmp(const void *a, const void *b)
{
	const struct cjob *x = *(struct cjob *const *)a, *y = *(struct cjob *const *)b;
	int r = strcmp(x->vol, y->vol);

	if (r)
		return r;
	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	return x->sno < y->sno ? -1 : x->sno > y->sno;
}

/* The steps waiting go to the session thread together; if they cannot, a START's
 * copy ends (the next scan tries it again), a DONE's fails (its ABORT follows). */
static void record_flush(struct catchup *c)
{
	struct cjob *js[CLVOL_COPY_BATCH_MAX];
	struct cluster_vol_req *reqs[CLVOL_COPY_BATCH_MAX];
	void *args[CLVOL_COPY_BATCH_MAX];
	unsigned n = c->nrec_wait;
	int r;

	loop_timer_cancel(c->rec_timer); /* NULL ok */
	c->rec_timer = NULL;
	c->nrec_wait = 0;
	if (!n)
		return;
	memcpy(js, c->rec_wait, n * sizeof(js[0]));
	qsort(js, n, sizeof(js[0]), job_key_cmp);
	for (unsigned i = 0; i < n; i++) {
		js[i]->rec_queued = false;
		reqs[i] = &js[i]->req;
		args[i] = js[i];
	}
	r = cluster_volume_async_many(c->rs->cluster, reqs, args, n, recorded);
	for (unsigned i = 0; r < 0 && i < n; i++) {
		if (js[i]->step == CJ_START)
			job_end(js[i]);
		else
			job_fail(js[i], r, "recording the new holder");
	}
}

static void record_fire(void *arg)
{
	struct catchup *c = arg;

	c->rec_timer = NULL; /* fired: freed */
	record_flush(c);
}

/* The steps waiting go in ms at the latest. */
static void record_due(struct catchup *c, unsigned ms)
{
	uint64_t due = loop_now_ms() + ms;

	if (c->rec_timer && c->rec_due_ms <= due)
		return;
	loop_timer_cancel(c->rec_timer); /* NULL ok */
	c->rec_timer = NULL;
	c->rec_due_ms = due;
	if (loop_timer_add(c->rs->loop, ms, record_fire, c, &c->rec_timer) < 0)
		record_flush(c);
}

/* j's START or DONE (j->step says which) waits for others to share its txn: sent at
 * the next loop turn if no other copy is under way, else within RECORD_GATHER_MS, or
 * as soon as a txn's worth waits. j is in c->jobs; it is never freed here (only
 * steps queued before it may be, if they cannot be sent). */
static void record_queue(struct cjob *j, enum clvol_copy_phase phase)
{
	struct catchup *c = j->c;

	while (c->nrec_wait == CLVOL_COPY_BATCH_MAX)
		record_flush(c);
	job_req_fill(j, phase);
	j->rec_queued = true;
	c->rec_wait[c->nrec_wait++] = j;
	record_due(c, c->nrec_wait == CLVOL_COPY_BATCH_MAX || !copies_under_way(c)
			      ? 0 : RECORD_GATHER_MS);
}

void catchup_status_carry(struct catchup_status *now, const struct catchup_status *prev)
{
	now->copying = prev->copying;
	now->copied = prev->segs_left || !now->segs_left ? prev->copied : 0;
}

/* b bytes of j's work are done (copied, or read for a fragment). */
static void job_count(struct cjob *j, uint64_t b)
{
	struct cfam *f = cfam_get(j->c, j->uid);

	j->c->run_copied += b;
	if (f) {
		f->st.bytes_left = f->st.bytes_left > b ? f->st.bytes_left - b : 0;
		f->st.copied += b;
	}
}

/* The chunk just appended counts. */
static void job_progress(struct cjob *j)
{
	j->at += j->n;
	job_count(j, (uint64_t)j->n * ENGINE_BLOCK_SIZE);
}

static void peer_replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
			 size_t len)
{
	static const uint8_t ops[] = { [CJ_DROP] = PEER_OP_SEG_DELETE, [CJ_OPEN] = PEER_OP_SEG_OPEN,
				       [CJ_APPEND] = PEER_OP_SEG_APPEND,
				       [CJ_SEAL] = PEER_OP_SEG_SEAL };
	static const char *const what[] = { [CJ_DROP] = "dropping its old copy",
					    [CJ_OPEN] = "open", [CJ_APPEND] = "append",
					    [CJ_SEAL] = "seal" };
	struct cjob *j = arg;
	int r;

	(void)h;
	if (!j->c) {
		job_free(j);
		return;
	}
	r = replica_reply_result(ops[j->step], res, payload, len);
	if (r == -EINVAL && j->step == CJ_OPEN)
		replica_node_bad_size(j->to);
	if (r < 0) {
		job_fail(j, r, what[j->step]);
		return;
	}
	if (j->step == CJ_APPEND)
		job_progress(j);
	job_next(j);
}

static int job_send(struct cjob *j, uint8_t op, const struct iovec *data)
{
	struct peer_seg_req rq = { .op = op, .sno = j->sno,
				   .segment_blocks = j->c->rs->seg_blocks, .block = j->at,
				   .nblocks = j->n, .length = j->length };
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct peer_msg m = { .op = op, .volume_id = j->uid, .epoch = (uint64_t)j->epoch,
			      .head = head, .data = data, .datacnt = data ? 1 : 0 };

	if (data)
		rq.data_crc = crc32c(data->iov_base, data->iov_len);
	if (!replica_node_live(j->to))
		return -ENOTCONN;
	m.head_len = peer_seg_req_encode(&rq, head);
	return peer_request(j->to->conn, &m, j->c->rs->timeout_ms, peer_replied, j);
}

static void read_done(void *arg, int res)
{
	struct cjob *j = arg;
	struct iovec iov;
	int r;

	if (!j->c) {
		job_free(j);
		return;
	}
	if (res < 0) {
		job_fail(j, res, "reading the local copy");
		return;
	}
	iov = (struct iovec){ j->fetch ? (uint8_t *)segfetch_data(j->fetch) +
					  (size_t)j->at * ENGINE_BLOCK_SIZE : j->buf,
			      (size_t)j->n * ENGINE_BLOCK_SIZE };
	j->step = CJ_APPEND;
	r = job_send(j, PEER_OP_SEG_APPEND, &iov);
	if (r < 0)
		job_fail(j, r, "append");
}

static void wait_fire(void *arg)
{
	struct cjob *j = arg;

	j->wait = NULL;
	job_next(j);
}

/* The step after the one that just succeeded. */
static void job_next(struct cjob *j)
{
	struct catchup *c = j->c;
	uint64_t now = loop_now_ms();
	unsigned ms;
	int r;

	switch (j->step) {
	case CJ_START: /* recorded as copying: a stale copy there goes first */
		j->step = CJ_DROP;
		r = job_send(j, PEER_OP_SEG_DELETE, NULL);
		break;
	case CJ_DROP:
		j->step = CJ_OPEN;
		r = job_send(j, PEER_OP_SEG_OPEN, NULL);
		break;
	case CJ_OPEN:
	case CJ_WAIT:
	case CJ_APPEND:
		if (j->at == j->length) {
			j->step = CJ_SEAL;
			r = job_send(j, PEER_OP_SEG_SEAL, NULL);
			break;
		}
		j->n = j->length - j->at < CATCHUP_CHUNK_BLOCKS ? j->length - j->at
								 : CATCHUP_CHUNK_BLOCKS;
		ms = catchup_budget_take(&c->budget, now, (uint64_t)j->n * ENGINE_BLOCK_SIZE);
		if (ms) {
			j->step = CJ_WAIT;
			r = loop_timer_add(c->rs->loop, ms, wait_fire, j, &j->wait);
			break;
		}
		j->step = CJ_READ;
		if (j->fetch) { /* read from the holders already, and checked */
			read_done(j, 0);
			return;
		}
		r = engine_segment_read_async(c->rs->eng, j->uid, j->sno, j->at, j->buf, j->n,
					      read_done, j);
		break;
	case CJ_SEAL: /* sealed on the node: its slot goes to the next copy */
		j->step = CJ_DONE;
		j->recording = true;
		c->recording++;
		record_queue(j, CLVOL_COPY_DONE);
		next_start(c);
		return;
	default:
		r = -EINVAL;
		break;
	}
	if (r < 0)
		job_fail(j, r, "sending");
}

/* j's DONE is recorded: its gone holders left the record with it when the new copy
 * made R live holders (clvol_copy_apply's rule, on the record as it was scanned; if
 * it differed, the next scan's drop_gone sees what is left). */
static void job_gone_left(struct cjob *j)
{
	if (j->live + 1 < j->gone.keep)
		return;
	for (unsigned i = 0; i < j->gone.n; i++) {
		log_msg(LOG_INFO, LOG_TAG, "volume %s segment %016" PRIx64 ".%08" PRIx32 ": node "
			"%s is gone for good and the segment has %u other holders: it left the "
			"record with the new copy", j->vol, j->uid, j->sno, j->gone.ids[i],
			j->live + 1);
		replica_seg_holder_gone(j->c->rs, j->uid, j->sno, j->gone.ids[i]);
	}
}

static void recorded(void *arg, int res, const char *msg)
{
	struct cjob *j = arg;
	char id[192];

	if (!j->c) {
		job_free(j);
		return;
	}
	if (res < 0) {
		job_id(j, id, sizeof(id));
		if (j->step == CJ_START && res == -EEXIST) {
			job_end(j); /* it holds it already: nothing to do */
			return;
		}
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "%s: the record did not take it (%s)", id, msg);
		if (j->step == CJ_START)
			job_end(j);
		else
			job_fail(j, res, "recording the new holder");
		return;
	}
	if (j->step == CJ_DONE) {
		uint64_t ms = loop_now_ms() - j->start_ms;
		uint64_t bytes = (uint64_t)j->length * ENGINE_BLOCK_SIZE;

		job_id(j, id, sizeof(id));
		j->c->run_end_ms = loop_now_ms();
		log_msg(LOG_INFO, LOG_TAG, "%s: copied (%" PRIu64 " bytes in %" PRIu64 " ms, %.1f "
			"MB/s); it is a holder again", id, bytes, ms,
			ms ? (double)bytes / 1e3 / (double)ms : 0.0);
		replica_seg_holder_added(j->c->rs, j->uid, j->sno, j->to);
		job_gone_left(j);
		job_end(j);
		return;
	}
	job_next(j);
}

/* The segment is read whole from the holders (or not): the copy's record next. */
static void fetched(void *arg, int res, const char *why)
{
	struct cjob *j = arg;
	char id[192];

	job_id(j, id, sizeof(id));
	if (res < 0) {
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "%s: no holder gave a whole copy to copy from "
				"(%s: %s): tried again later", id, err_str(-res), why);
		/* read for nothing, and read again at the next scan: paid for, so that a
		 * segment no holder gives whole is not read over and over at full speed */
		catchup_budget_charge(&j->c->budget, loop_now_ms(),
				      (uint64_t)j->length * ENGINE_BLOCK_SIZE);
		job_end(j);
		return;
	}
	log_msg(LOG_INFO, LOG_TAG, "%s: read from %u holder%s and checked", id,
		segfetch_sources(j->fetch), segfetch_sources(j->fetch) == 1 ? "" : "s");
	j->step = CJ_START;
	record_queue(j, CLVOL_COPY_START);
}

/* j (started) joins the jobs; the run of copies begins with it if none is under way. */
static void job_add(struct catchup *c, struct cfam *cf, struct cjob *j)
{
	j->next = c->jobs;
	c->jobs = j;
	c->njobs++;
	c->worked = true;
	cf->st.copying++;
	if (!c->run_start_ms) {
		c->run_start_ms = j->start_ms;
		c->run_copied = 0;
	}
}

/* The replica sets' nodes as candidates (calloc'd: free() it), this node last (usable:
 * it may hold a fragment; a copy's pick leaves it out), or NULL. */
static struct catchup_cand *cands_new(const struct replicas *rs)
{
	struct catchup_cand *k = calloc(rs->nnodes + 1, sizeof(*k));

	if (!k)
		return NULL;
	for (size_t n = 0; n < rs->nnodes; n++) {
		const struct rnode *r = rs->nodes[n];

		k[n] = (struct catchup_cand){ .id = r->id, .domain = r->domain,
					      .usable = r->in_map && r->ready && !r->bad_size };
	}
	k[rs->nnodes] = (struct catchup_cand){ .id = rs->self, .domain = rs->self_domain,
					       .usable = true };
	return k;
}

/* The holders of rec not in live (gone for good) as a DONE's list: they leave with
 * the new copy if R live holders stay (struct clvol_gone). */
static void job_gone_set(struct cjob *j, const struct layout_segment *rec,
			 const struct layout_segment *live, unsigned replicas)
{
	j->gone = (struct clvol_gone){ .keep = replicas };
	j->live = live->nholders;
	for (unsigned h = 0; h < rec->nholders; h++)
		if (!layout_segment_names(live, rec->holders[h]))
			memcpy(j->gone.ids[j->gone.n++], rec->holders[h], sizeof(j->gone.ids[0]));
}

/* A copy of rec (of family f) to node `to`: from the local copy, or (remote) read
 * from its live holders first. live: rec without its holders gone for good. */
static void job_start(struct catchup *c, const struct family *f,
		      const struct layout_segment *rec, const struct layout_segment *live,
		      bool remote, struct rnode *to)
{
	const struct layout_segment *from = remote ? live : NULL;
	struct cjob *j = calloc(1, sizeof(*j));
	struct cfam *cf = cfam_get(c, f->uid);
	char id[192];
	int r;

	if (!j || !cf || !(j->buf = seg_buf_alloc((size_t)CATCHUP_CHUNK_BLOCKS *
						  ENGINE_BLOCK_SIZE))) {
		free(j);
		return;
	}
	*j = (struct cjob){ .c = c, .step = from ? CJ_FETCH : CJ_START, .uid = f->uid,
			    .sno = rec->id.seq, .epoch = f->epoch, .to = to, .buf = j->buf,
			    .length = (uint32_t)(rec->length / ENGINE_BLOCK_SIZE),
			    .start_ms = loop_now_ms() };
	snprintf(j->vol, sizeof(j->vol), "%s", f->name);
	job_gone_set(j, rec, live, f->replicas);
	r = from ? segfetch_start(c->rs, j->uid, j->sno, j->epoch, j->length, from->holders,
				  from->nholders, fetched, j, &j->fetch)
		 : 0;
	if (r < 0) {
		job_free(j);
		return;
	}
	job_add(c, cf, j);
	if (!from)
		record_queue(j, CLVOL_COPY_START);
	job_id(j, id, sizeof(id));
	log_msg(LOG_INFO, LOG_TAG, "%s: copying %u blocks from %s (the record has %u of %u "
		"live holders)", id, j->length, from ? "the holders" : "the local copy",
		from ? from->nholders : rec->nholders, f->replicas);
}

/* ---- fragments of a stripe whose holder is gone for good (fragbuild.h) ---- */

static void frag_progress(void *arg, uint64_t bytes)
{
	job_count(arg, bytes);
}

static void frag_done(void *arg, int res, const char *why)
{
	struct cjob *j = arg;
	char id[224];

	j->fb = NULL; /* it freed itself */
	job_id(j, id, sizeof(id));
	if (res < 0) {
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "%s: fragment rebuild failed: %s (tried again "
				"later)", id, why);
	} else {
		uint64_t ms = loop_now_ms() - j->start_ms;

		j->c->run_end_ms = loop_now_ms();
		log_msg(LOG_INFO, LOG_TAG, "%s: rebuilt from the other fragments (%u blocks read "
			"in %" PRIu64 " ms) and recorded: the stripe is whole again", id, j->length,
			ms);
	}
	job_end(j);
}

/* Fragment `index` of rec's stripe (of family f), held by a node gone for good,
 * rebuilt on node to (NULL: this node). */
static void frag_job_start(struct catchup *c, const struct family *f,
			   const struct layout_segment *rec, unsigned index, struct rnode *to)
{
	struct cjob *j = calloc(1, sizeof(*j));
	struct cfam *cf = cfam_get(c, f->uid);
	char id[224];

	if (!j || !cf) {
		free(j);
		return;
	}
	*j = (struct cjob){ .c = c, .step = CJ_FRAG, .uid = f->uid, .sno = rec->id.seq,
			    .epoch = f->epoch, .to = to, .frag_index = index,
			    .length = (uint32_t)(rec->length / ENGINE_BLOCK_SIZE),
			    .start_ms = loop_now_ms() };
	snprintf(j->vol, sizeof(j->vol), "%s", f->name);
	if (fragbuild_start(c->rs, &(struct fragbuild_req){ .vol = f->name, .epoch = f->epoch,
							    .rec = rec, .index = index, .to = to,
							    .budget = &c->budget,
							    .progress = frag_progress,
							    .done = frag_done, .arg = j },
			    &j->fb) < 0) {
		free(j);
		return;
	}
	job_add(c, cf, j);
	job_id(j, id, sizeof(id));
	log_msg(LOG_INFO, LOG_TAG, "%s: rebuilding it from the other %u fragments (its holder "
		"%s is gone for good)", id, rec->stripe.k + rec->stripe.m - 1,
		rec->stripe.frags[index]);
}

/* The node to rebuild fragment `lost` of rec on (catchup_pick_frag over cands: the
 * replica sets' nodes and this one, cands_new); *self set when it is this node. NULL
 * and !*self: none. */
static struct rnode *pick_frag_node(struct catchup *c, const struct layout_segment *rec,
				    unsigned lost, const struct catchup_cand *cands, bool *self)
{
	struct replicas *rs = c->rs;
	int i = catchup_pick_frag(rec, lost, cands, rs->nnodes + 1);

	*self = i == (int)rs->nnodes;
	return i < 0 || *self ? NULL : rs->nodes[i];
}

static bool job_running(const struct catchup *c, uint64_t uid, uint32_t sno);
static bool holder_gone(void *arg, const char *id);

enum frags_work { FRAGS_NONE, FRAGS_REBUILD, FRAGS_UNPLACED };

/* rec's stripe names a node gone for good at some index: that fragment is rebuilt on a
 * node of a failure domain the stripe does not use (one at a time per segment; the
 * next scan takes the next), counted in st: FRAGS_REBUILD (the record's replicas, if
 * kept, wait for it); none fits: FRAGS_UNPLACED (counted apart; the replicas go on).
 * cands: the scan's (cands_new). The rendezvous choice is made whether a job slot is
 * free or not (one pick per degraded stripe and scan: a small array and a hash per
 * candidate): with none free it only says whether one fits, for the count. */
static enum frags_work frags_scanned(struct catchup *c, const struct family *f,
			  const struct layout_segment *rec, void *gone_ctx,
			  const struct catchup_cand *cands, struct catchup_status *st)
{
	const struct layout_stripe *s = &rec->stripe;
	unsigned lost = s->k + s->m;
	struct rnode *to = NULL;
	bool self = false;

	for (unsigned i = 0; i < s->k + s->m; i++)
		if (holder_gone(gone_ctx, s->frags[i]) && lost == s->k + s->m)
			lost = i;
	if (lost == s->k + s->m)
		return FRAGS_NONE;
	if (!job_running(c, f->uid, rec->id.seq)) {
		to = pick_frag_node(c, rec, lost, cands, &self);
		if (!to && !self) {
			st->frags_unplaced++; /* degraded until a domain is back or a node joins */
			return FRAGS_UNPLACED;
		}
		if (slot_free(c))
			frag_job_start(c, f, rec, lost, to);
	}
	st->rebuild++;
	st->segs_left++;
	st->bytes_left += rec->length;
	return FRAGS_REBUILD;
}

static bool job_running(const struct catchup *c, uint64_t uid, uint32_t sno)
{
	for (const struct cjob *j = c->jobs; j; j = j->next)
		if (j->uid == uid && j->sno == sno)
			return true;
	return false;
}

/* The node to copy rec to, by catchup_pick over the replica sets' nodes (the scan's
 * cands without this node, their last), or NULL. */
static struct rnode *pick_node(struct catchup *c, const struct layout_segment *rec,
			       const struct catchup_cand *cands)
{
	struct replicas *rs = c->rs;
	int i = catchup_pick(rec, cands, rs->nnodes, rs->self, rs->self_domain);

	return i < 0 ? NULL : rs->nodes[i];
}

/* A `copying` entry no copy of this owner's is behind (one that died, an ABORT that
 * did not land, an earlier owner's): taken out, so that the node's orphan check drops
 * what it holds. Fire and forget: the answer only frees it. */
struct cstale {
	struct cluster_vol_req req;
};

static void stale_cleared(void *arg, int res, const char *msg)
{
	(void)res;
	(void)msg;
	free(arg);
}

/* The copy step phase of node for rec, fire and forget (a retry of a step that took
 * effect succeeds: the next scan may send it again). */
static void record_step(struct catchup *c, const struct family *f,
			const struct layout_segment *rec, const char *node,
			enum clvol_copy_phase phase)
{
	struct cstale *x = calloc(1, sizeof(*x));

	if (!x)
		return;
	x->req.op = CLUSTER_VOL_SEG_COPY;
	snprintf(x->req.vol.name, sizeof(x->req.vol.name), "%s", f->name);
	x->req.epoch = f->epoch;
	x->req.seg.id = rec->id;
	snprintf(x->req.copy_node, sizeof(x->req.copy_node), "%s", node);
	x->req.copy_phase = phase;
	if (cluster_volume_async(c->rs->cluster, &x->req, stale_cleared, x) < 0)
		free(x);
}

static void clear_stale_copying(struct catchup *c, const struct family *f,
				const struct layout_segment *rec)
{
	for (unsigned i = 0; i < rec->ncopying; i++) {
		log_msg(LOG_INFO, LOG_TAG, "volume %s segment %016" PRIx64 ".%08" PRIx32 ": no copy "
			"to node %s is under way: it leaves the record's copying list", f->name,
			rec->id.family, rec->id.seq, rec->copying[i]);
		record_step(c, f, rec, rec->copying[i], CLVOL_COPY_ABORT);
	}
}

/* rec has R live holders: the holders gone for good leave it (their copies, should
 * they come back, are orphans there). *budget: the steps this scan may still send. */
static void drop_gone(struct catchup *c, const struct family *f,
		      const struct layout_segment *rec, const struct layout_segment *live,
		      unsigned *budget)
{
	for (unsigned h = 0; h < rec->nholders && *budget; h++) {
		if (layout_segment_names(live, rec->holders[h]))
			continue;
		log_msg(LOG_INFO, LOG_TAG, "volume %s segment %016" PRIx64 ".%08" PRIx32 ": node %s "
			"is gone for good and the segment has %u other holders: it leaves the "
			"record", f->name, rec->id.family, rec->id.seq, rec->holders[h],
			live->nholders);
		record_step(c, f, rec, rec->holders[h], CLVOL_COPY_DROP);
		(*budget)--;
		replica_seg_holder_gone(c->rs, f->uid, rec->id.seq, rec->holders[h]);
	}
}

/* holder_gone's ctx: the catch-up, and the least wait until a holder down now is
 * gone. */
struct gone_ctx {
	struct catchup *c;
	uint64_t now_ms, out_in_ms;
	bool down;
};

static bool holder_gone(void *arg, const char *id)
{
	struct gone_ctx *g = arg;
	struct replicas *rs = g->c->rs;
	const struct rnode *n = replica_node_find(rs, id);
	uint64_t left;
	bool gone;

	if (!n)
		return false; /* this node, or one the map never showed: not judged */
	gone = catchup_node_gone(n->out, n->down_since_ms, g->now_ms, rs->out_after_ms, &left);
	if (left) {
		g->down = true;
		g->out_in_ms = !g->out_in_ms || left < g->out_in_ms ? left : g->out_in_ms;
	}
	return gone;
}

/* Is some holder of live (other than this node) connected to read a copy from? */
static bool holder_reachable(struct catchup *c, const struct layout_segment *live)
{
	for (unsigned h = 0; h < live->nholders; h++) {
		if (replica_node_live(replica_node_find(c->rs, live->holders[h])))
			return true;
	}
	return false;
}

/* The copies waiting of family uid are forgotten (its scan lists them again); those
 * of other families move to the front. */
static void next_forget(struct catchup *c, uint64_t uid)
{
	unsigned k = 0;

	for (unsigned i = c->next_at; i < c->nnext; i++)
		if (c->next[i].uid != uid)
			c->next[k++] = c->next[i];
	c->next_at = 0;
	c->nnext = k;
}

static void next_add(struct catchup *c, uint64_t uid, const struct layout_segment *rec,
		     bool remote, const struct rnode *to)
{
	struct cnext *x = &c->next[c->nnext++];

	*x = (struct cnext){ .uid = uid, .rec = *rec, .remote = remote };
	snprintf(x->to, sizeof(x->to), "%s", to->id);
}

/* A free slot takes the first copy waiting whose family this node still owns, whose
 * segment no job copies and whose node is still connected. Its live holders are
 * judged now (catchup_without_gone). */
static void next_start(struct catchup *c)
{
	struct layout_segment *live = NULL;
	bool started = false;

	while (!started && c->next_at < c->nnext && slot_free(c)) {
		const struct cnext *x = &c->next[c->next_at++]; /* stays: only a scan
								   (next_forget) moves them */
		struct family *f = replica_family_find(c->rs, x->uid);
		struct rnode *to = replica_node_find(c->rs, x->to);
		struct gone_ctx g = { .c = c, .now_ms = loop_now_ms() };
		unsigned njobs = c->njobs;

		if (!f || f->stale || !to || !replica_node_live(to) ||
		    job_running(c, x->uid, x->rec.id.seq))
			continue;
		if (!live && !(live = malloc(sizeof(*live))))
			break;
		catchup_without_gone(&x->rec, holder_gone, &g, live);
		job_start(c, f, &x->rec, live, x->remote, to);
		started = c->njobs > njobs;
	}
	free(live);
}

/* One family's records (recscan's scanned): the copies it wants are started, up to
 * inflight_max (the next ones wait for a slot, up to CATCHUP_NEXT_MAX), and holders
 * gone for good leave the records that no longer need them; true while any record is
 * below R or names a holder down or gone. */
static bool family_scanned(void *ctx, struct family *f, const struct layout_segment *segs,
			   size_t n)
{
	struct catchup *c = ctx;
	struct catchup_status st = { 0 };
	struct gone_ctx g = { .c = c, .now_ms = loop_now_ms() };
	struct layout_segment *live = malloc(sizeof(*live));
	struct catchup_cand *cands = cands_new(c->rs); /* once per scan: the nodes
						do not change under it (the map's updates
						come through the loop) */
	struct cfam *cf;
	unsigned drops = DROPS_PER_SCAN;
	bool busy = false;

	if (!live || !cands) {
		free(live);
		free(cands);
		return true;
	}
	next_forget(c, f->uid); /* this scan says what waits now */
	for (size_t i = 0; i < n; i++) {
		const struct layout_segment *rec = &segs[i];
		enum frags_work fw;
		struct rnode *to;
		unsigned gone;
		bool remote;
		int have;

		if (rec->id.family != f->uid)
			continue;
		/* the scan's answer may predate a job's DONE, never its START: an entry
		 * without a job here is stale (its ABORT of a copy that was done meanwhile
		 * is a no-op) */
		if (rec->ncopying && !job_running(c, f->uid, rec->id.seq))
			clear_stale_copying(c, f, rec);
		g.down = false;
		fw = rec->stripe.k && rec->state == LAYOUT_SEG_SEALED
			     ? frags_scanned(c, f, rec, &g, cands, &st)
			     : FRAGS_NONE;
		busy |= fw != FRAGS_NONE;
		if (fw == FRAGS_REBUILD)
			continue; /* its replicas (if any) wait for the fragment */
		gone = catchup_without_gone(rec, holder_gone, &g, live);
		st.down_holders += g.down;
		busy |= g.down;
		if (gone && rec->state == LAYOUT_SEG_SEALED) {
			st.rebuild++;
			busy = true;
			if (live->nholders >= f->replicas) {
				drop_gone(c, f, rec, live, &drops);
				continue;
			}
		}
		/* an open segment below R is the replica set's to show (its copies); its
		 * seal kicks a scan */
		if (!catchup_wanted(live, f->replicas))
			continue;
		/* copied from the local copy when it is whole here; one whose last appends
		 * are still being written here (sealed for a failed holder) is copied at a
		 * later scan; else read from the live holders. (A cleaner's leftover, freed
		 * here with its record not deleted yet, is copied too: its record's delete
		 * makes the new copy an orphan.) */
		have = engine_segment_sealed_blocks(c->rs->eng, f->uid, rec->id.seq);
		if (have == -EBUSY) {
			busy = true;
			continue;
		}
		remote = have != (int)(rec->length / ENGINE_BLOCK_SIZE);
		if (remote && !holder_reachable(c, live)) {
			st.no_source++;
			busy = true;
			continue;
		}
		st.segs_left++;
		st.remote += remote;
		busy = true;
		st.bytes_left += rec->length;
		if (job_running(c, f->uid, rec->id.seq))
			continue;
		if (!slot_free(c) && c->nnext >= CATCHUP_NEXT_MAX)
			continue;
		to = pick_node(c, live, cands);
		if (to && slot_free(c))
			job_start(c, f, rec, live, remote, to);
		else if (to)
			next_add(c, f->uid, rec, remote, to);
	}
	free(live);
	free(cands);
	st.out_in_ms = g.out_in_ms;
	cf = cfam_get(c, f->uid);
	if (cf) {
		catchup_status_carry(&st, &cf->st);
		cf->st = st;
	}
	return busy;
}

static bool family_wanted(void *ctx, const struct family *f)
{
	(void)ctx;
	return f->replicas >= 2;
}

/* nothing left: the run's rate stays shown; the next catch-up starts afresh */
static void round_end(void *ctx, bool busy)
{
	struct catchup *c = ctx;

	if (busy || c->njobs || !c->run_start_ms)
		return;
	c->done_rate = c->run_end_ms > c->run_start_ms
			       ? c->run_copied * 1000 / (c->run_end_ms - c->run_start_ms)
			       : 0;
	c->run_start_ms = 0;
}

static const struct recscan_ops scan_ops = { family_wanted, family_scanned, round_end };
static const struct recscan_periods scan_periods = { SCAN_BUSY_MS, SCAN_IDLE_MS,
						     SCAN_KICK_MS };

#define CHUNK_BYTES ((uint64_t)CATCHUP_CHUNK_BLOCKS * ENGINE_BLOCK_SIZE)

/* The budget's burst for c's copies at a rate (catchup_budget_burst_for). */
static uint64_t budget_burst(const struct catchup *c, uint64_t rate)
{
	return catchup_budget_burst_for(rate, CHUNK_BYTES, c->inflight_max);
}

/* An interval ended: the clients' requests and latency in it set the budget's rate
 * (and its burst) for the next (catchup_rate.h). */
static void rate_tick(void *arg)
{
	struct catchup *c = arg;
	struct engine_client_load now;
	uint64_t ms = loop_now_ms(), rate;
	struct catchup_rate_sample s;

	c->tick = NULL;
	engine_get_client_load(c->rs->eng, &now);
	s = (struct catchup_rate_sample){ .ms = ms - c->tick_ms, .ops = now.ops - c->load.ops,
					  .busy_us = now.busy_us - c->load.busy_us,
					  .working = c->worked,
					  .bytes = c->budget.taken - c->taken_tick };
	c->taken_tick = c->budget.taken;
	c->load = now;
	c->tick_ms = ms;
	c->worked = c->njobs > 0;
	rate = catchup_rate_tick(&c->ctl, &s);
	if (rate) {
		catchup_budget_set_rate(&c->budget, ms, rate);
		catchup_budget_set_burst(&c->budget, budget_burst(c, rate));
	} else
		catchup_budget_hold(&c->budget, ms + CATCHUP_RATE_INTERVAL_MS);
	if (loop_timer_add(c->rs->loop, CATCHUP_RATE_INTERVAL_MS, rate_tick, c, &c->tick) < 0)
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "no timer for the budget's next interval: "
				"its rate stays %" PRIu64 " B/s", rate);
}

void catchup_kick(struct catchup *c)
{
	/* with copies under way the scan comes every SCAN_BUSY_MS, and a copy that ends
	 * kicks it when none waits: a kick per record written (each copy step's answer,
	 * each watched change) would read the family's records ten times a second */
	if (c && !c->njobs)
		recscan_kick(c->scan);
}

int catchup_create(struct replicas *rs, unsigned mbps, unsigned client_share,
		   unsigned inflight, struct catchup **out)
{
	struct catchup *c = calloc(1, sizeof(*c));
	uint64_t ceiling = (uint64_t)(mbps ? mbps : CATCHUP_DEFAULT_MBPS) * 1000 * 1000;

	if (!c)
		return -ENOMEM;
	c->rs = rs;
	c->inflight_max = inflight ? inflight : CATCHUP_DEFAULT_INFLIGHT;
	catchup_rate_init(&c->ctl, ceiling, client_share);
	c->tick_ms = loop_now_ms();
	catchup_budget_init(&c->budget, c->ctl.rate, budget_burst(c, c->ctl.rate), c->tick_ms);
	if (client_share)
		engine_client_load_watch(rs->eng);
	engine_get_client_load(rs->eng, &c->load);
	if (recscan_create(rs, LOG_TAG, &scan_periods, &scan_ops, c, &c->scan) < 0)
		goto err_free;
	if (client_share &&
	    loop_timer_add(rs->loop, CATCHUP_RATE_INTERVAL_MS, rate_tick, c, &c->tick) < 0)
		goto err_scan;
	*out = c;
	return 0;
err_scan:
	recscan_destroy(c->scan);
err_free:
	free(c);
	return -ENOMEM;
}

void catchup_destroy(struct catchup *c)
{
	if (!c)
		return;
	recscan_destroy(c->scan);
	loop_timer_cancel(c->tick); /* NULL ok */
	loop_timer_cancel(c->rec_timer); /* NULL ok */
	for (struct cjob *j = c->jobs, *next; j; j = next) {
		next = j->next;
		if (j->rec_queued) {
			job_free(j); /* not sent: no answer will come */
		} else if (j->step == CJ_FRAG) {
			fragbuild_abandon(j->fb); /* it frees itself when its answer comes */
			job_free(j);
		} else if (j->step == CJ_WAIT || j->step == CJ_FETCH) {
			loop_timer_cancel(j->wait); /* NULL ok */
			job_free(j); /* and the fetch's requests drop their answers */
		} else {
			j->c = NULL; /* its one outstanding answer frees it */
		}
	}
	free(c->fams);
	free(c);
}

void catchup_status(const struct catchup *c, uint64_t uid, struct catchup_status *out)
{
	uint64_t ms;

	memset(out, 0, sizeof(*out));
	if (!c)
		return;
	for (size_t i = 0; i < c->nfams; i++)
		if (c->fams[i].uid == uid)
			*out = c->fams[i].st;
	ms = c->run_start_ms ? loop_now_ms() - c->run_start_ms : 0;
	out->rate = !c->run_start_ms ? c->done_rate : ms ? c->run_copied * 1000 / ms : 0;
	out->budget = c->ctl.probe_left ? 0 : c->budget.rate;
	out->budget_why = c->ctl.why;
	out->client_us = c->ctl.lat_us;
	out->client_base_us = c->ctl.base_us;
	out->client_iops = c->ctl.iops;
	out->client_base_iops = c->ctl.base_iops;
	out->client_kept_pct = c->ctl.kept_pct;
}
