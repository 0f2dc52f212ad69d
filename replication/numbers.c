/* replication/numbers.c — a family's segment numbers are never drawn twice
 * (docs/replication.md, "Segment numbers").
 *
 * A number is spent once a segment record in etcd names it, whether or not the
 * segment ever reached the owner's log (the owner may die between its `open` record
 * and its first local write). The engine's counter is rebuilt from the log and from
 * the family's "F" record, so:
 *   reserve    before a segment's open record is written, the "F" record says
 *              durably that numbers up to it (and SNO_AHEAD more, so that this costs
 *              one metadata commit per SNO_AHEAD segments) are spent: a restart never
 *              draws a recorded number again (replica_numbers_ready)
 *   raise      when a family starts here (a restart, a claim, a takeover's end): the
 *              reconciliation with its records (reconcile.c) raises the counter past
 *              every number they name before any segment of it is placed
 * The loop's thread only. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "engine/engine.h"
#include "replication/replica_internal.h"

#define SNO_AHEAD 64u

/* ---- the reservation before a segment is recorded ---- */

static void reserved(void *arg, int res)
{
	struct fam_call *c = arg;
	struct replicas *rs = c->rs;
	struct family *f = replica_fam_call_family(c);

	if (!f)
		return;
	f->reserving = false;
	if (res < 0) {
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "volume %s: its segment numbers are not "
				"reserved (%s): its next segment waits", f->name, err_str(-res));
		f->reserve_failed_ms = loop_now_ms();
	}
	replica_fam_call_free(c);
	replica_segs_retry_placing(rs);
}

int replica_numbers_ready(struct rseg *s)
{
	struct replicas *rs = s->rs;
	struct family *f = s->fam;
	uint32_t ahead = s->sno > UINT32_MAX - SNO_AHEAD ? UINT32_MAX : s->sno + SNO_AHEAD;
	struct fam_call *c;
	int r;

	if (engine_family_durable_sno(rs->eng, f->uid) > s->sno)
		return 0;
	if (f->reserving)
		return -EINPROGRESS; /* its end retries every segment waiting to be placed */
	if (f->reserve_failed_ms && loop_now_ms() - f->reserve_failed_ms < RETRY_MS)
		return -EAGAIN;
	c = replica_fam_call_new(rs, f->uid);
	if (!c)
		return -ENOMEM;
	r = engine_family_reserve_sno_async(rs->eng, f->uid, 0, ahead, reserved, c);
	if (r < 0) {
		replica_fam_call_free(c);
		return r;
	}
	f->reserving = true;
	return -EINPROGRESS;
}

/* ---- the test hooks (QUILL_TEST_CRASH_AFTER_OPEN, QUILL_TEST_CRASH_AFTER_SEAL) ---- */

static void crash_recorded(void *arg, int res, const char *msg)
{
	struct fam_call *c = arg;

	log_msg(LOG_WARN, LOG_TAG, "test: the open record of segment %08" PRIx32 " %s (%s): "
		"killing this node now", c->req.seg.id.seq, res < 0 ? "failed" : "landed", msg);
	raise(SIGKILL);
}

void replica_numbers_test_crash(struct rseg *s)
{
	struct replicas *rs = s->rs;
	struct fam_call *c;

	if (!rs->test_crash_after || rs->test_dying || ++rs->test_opens < rs->test_crash_after)
		return;
	/* record a number open, as an owner that opens ahead of need would, and die
	 * before any write of it: the window between a record and the log */
	c = replica_fam_call_new(rs, s->fam->uid);
	if (!c)
		raise(SIGKILL);
	c->req.op = CLUSTER_VOL_SEG_OPEN;
	snprintf(c->req.vol.name, sizeof(c->req.vol.name), "%s", s->fam->name);
	c->req.epoch = s->fam->epoch;
	replica_fill_holders(s, &c->req.seg);
	/* one past the number the family's next segment takes (two may be opened at once:
	 * not s->sno + 1). Not that number itself: s may be the one opened ahead, which
	 * has it, and a request already in flight may fill the current segment and draw
	 * it while the record is on the way. Nothing draws the one after: no append
	 * leaves from here on, so no write completes and no more comes in. */
	c->req.seg.id.seq = engine_family_next_sno(rs->eng, s->fam->uid) + 1;
	rs->test_dying = true;
	log_msg(LOG_WARN, LOG_TAG, "test: recording segment %08" PRIx32 " open, then dying",
		c->req.seg.id.seq);
	if (cluster_volume_async(rs->cluster, &c->req, crash_recorded, c) < 0)
		raise(SIGKILL);
}

void replica_numbers_test_crash_seal(struct rseg *s)
{
	struct replicas *rs = s->rs;

	if (!rs->test_crash_seal || ++rs->test_seals < rs->test_crash_seal)
		return;
	log_msg(LOG_WARN, LOG_TAG, "test: the sealed record of segment %08" PRIx32 " at %u "
		"blocks landed: killing this node before SEG_SEAL", s->sno, s->seal_len);
	raise(SIGKILL);
}
