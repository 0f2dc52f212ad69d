/* tests/unit/block/test_guard.c — the cluster's guard over client I/O (block/guard.c)
 * on a real engine, with a fake node behind its ops: completions held for the lease
 * and for a claim that may have gone, handles refused and fenced when the node does
 * not own (or no longer owns) their volume, and what a fenced handle's requests get
 * (an error, never a success; writes that had not started never land). */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blk_done.h"
#include "block/block.h"
#include "test_engine_scratch.h"
#include "testutil.h"

#ifndef QUILL_TEST_DIR
#define QUILL_TEST_DIR "/var/tmp"
#endif

#define BS ENGINE_BLOCK_SIZE
#define VOL_SIZE (8u << 20)

/* The node as the guard sees it. */
static struct node {
	bool lease;
	uint64_t gen;
	bool owned;
	bool unowned;      /* not owned by anyone: -EAGAIN */
	bool undecided;    /* the claim lapsed and may come back: -EINPROGRESS */
	int64_t epoch;
	unsigned owns_calls;
	/* a claim in flight (claim op) */
	void (*claim_done)(void *arg, int res);
	void *claim_arg;
	char claimed[64];
} node;

static bool node_lease(void *arg)
{
	cr_assert_eq(arg, &node);
	return node.lease;
}

static uint64_t node_gen(void *arg)
{
	(void)arg;
	return node.gen;
}

static int node_owns(void *arg, const char *vol, int64_t *epoch, char *why, size_t len)
{
	(void)arg;
	node.owns_calls++;
	if (node.undecided) {
		snprintf(why, len, "volume '%s': the claim lapsed", vol);
		return -EINPROGRESS;
	}
	if (node.unowned) {
		snprintf(why, len, "volume '%s' has no owner now", vol);
		return -EAGAIN;
	}
	if (!node.owned) {
		snprintf(why, len, "volume '%s' is owned by node n2 (epoch 9, NBD at "
			 "127.0.0.1:10811): attach it there, not here", vol);
		return -EREMOTE;
	}
	*epoch = node.epoch;
	return 0;
}

static int node_claim(void *arg, const char *vol, void (*done)(void *arg, int res),
		      void *done_arg)
{
	(void)arg;
	cr_assert_null(node.claim_done, "one claim at a time in these tests");
	snprintf(node.claimed, sizeof(node.claimed), "%s", vol);
	node.claim_done = done;
	node.claim_arg = done_arg;
	return 0;
}

/* The node's claim call ends (on the engine's thread, later). */
static void node_claim_ends(int res)
{
	void (*done)(void *arg, int res) = node.claim_done;

	cr_assert_not_null(done, "no claim was made");
	node.claim_done = NULL;
	done(node.claim_arg, res);
}

static const struct blk_guard_ops ops = {
	.lease_valid = node_lease, .claims_gen = node_gen, .owns = node_owns,
	.claim = node_claim,
};

static char dir[PATH_MAX];
static struct engine *eng;
static struct blk_guard *guard;
static struct blk_dev *dev;

static void setup(void)
{
	int r = test_engine_scratch(QUILL_TEST_DIR, "quill-guard", 64u << 20, dir, sizeof(dir),
				    &eng);

	if (r == -EOPNOTSUPP)
		cr_skip_test("%s does not support O_DIRECT", QUILL_TEST_DIR);
	cr_assert_eq(r, 0);
	cr_assert_eq(engine_volume_create(eng, "disk0", VOL_SIZE), 0);
	node = (struct node){ .lease = true, .owned = true, .epoch = 5 };
	cr_assert_eq(blk_guard_create(&ops, &node, &guard), 0);
	cr_assert_eq(blk_open(eng, guard, "disk0", &dev), 0);
}

static void teardown(void)
{
	blk_close(dev);
	dev = NULL;
	blk_guard_destroy(guard);
	guard = NULL;
	engine_close(eng);
	eng = NULL;
	testutil_rm_tree(dir);
}

TestSuite(block_guard, .init = setup, .fini = teardown);

static void poll_some(int n)
{
	for (int i = 0; i < n; i++)
		cr_assert_geq(engine_poll(eng, 1), 0);
}

/* Polls the engine until n completions are held by the guard. */
static void wait_held(unsigned n)
{
	for (int i = 0; i < 10000 && blk_guard_waiting(guard) < n; i++)
		cr_assert_geq(engine_poll(eng, 10), 0);
	cr_assert_eq(blk_guard_waiting(guard), n);
}

static void wait_for(struct done *d)
{
	cr_assert_eq(engine_wait(eng, &d->done), 0);
}

static void pattern(uint8_t *p, size_t len, unsigned tag)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(tag * 131u + i * 7u + 1u);
}

/* Reads [off, off+len) through a new, unguarded handle (once the fenced one gave the
 * volume back). */
static void read_unguarded(uint64_t off, uint32_t len, uint8_t *buf)
{
	struct blk_dev *other;
	struct done d = { 0 };

	cr_assert_eq(blk_open(eng, NULL, "disk0", &other), 0, "the volume was given back");
	cr_assert_eq(blk_read(other, off, len, buf, on_done, &d), 0);
	wait_for(&d);
	cr_assert_eq(d.res, 0);
	blk_close(other);
}

struct fenced {
	unsigned calls;
	char why[256];
};

static void on_fence(void *arg, const char *why)
{
	struct fenced *f = arg;

	f->calls++;
	snprintf(f->why, sizeof(f->why), "%s", why);
}

/* ---- the lease ---- */

/* Without a valid lease a read, a write, a zeroing and a flush do their work but
 * answer nothing; once the lease is valid again they all complete, without error, in
 * the order they finished. */
Test(block_guard, io_waits_for_the_lease_and_resumes)
{
	uint8_t *w = aligned_alloc(BS, 2 * BS), *r = aligned_alloc(BS, 2 * BS);
	struct done dw = { 0 }, dr = { 0 }, dz = { 0 }, df = { 0 }, d0 = { 0 };

	cr_assert(w && r);
	pattern(w, 2 * BS, 3);
	cr_assert_eq(blk_write(dev, 0, 2 * BS, w, 0, on_done, &d0), 0);
	wait_for(&d0); /* a valid lease: at once */
	cr_assert_eq(d0.res, 0);
	node.lease = false;
	cr_assert_eq(blk_write(dev, 2 * BS, 2 * BS, w, 0, on_done, &dw), 0);
	wait_held(1);
	cr_assert_eq(blk_read(dev, 0, 2 * BS, r, on_done, &dr), 0);
	wait_held(2);
	cr_assert_eq(blk_zero(dev, 100, 50, 0, on_done, &dz), 0);
	wait_held(3);
	cr_assert_eq(blk_flush(dev, on_done, &df), 0);
	wait_held(4);
	poll_some(20);
	cr_assert(!dw.done && !dr.done && !dz.done && !df.done, "completed without a lease");
	blk_guard_recheck(guard); /* still no lease: nothing moves */
	cr_assert_eq(blk_guard_waiting(guard), 4);
	cr_assert(!dw.done);
	node.lease = true;
	blk_guard_recheck(guard);
	cr_assert_eq(blk_guard_waiting(guard), 0);
	cr_assert(dw.done && dr.done && dz.done && df.done);
	cr_assert(dw.res == 0 && dr.res == 0 && dz.res == 0 && df.res == 0);
	cr_assert(dw.seq < dr.seq && dr.seq < dz.seq && dz.seq < df.seq);
	cr_assert_eq(memcmp(r, w, 2 * BS), 0);
	free(w);
	free(r);
}

/* A held write keeps no range lock: an overlapping write behind it runs (and is held
 * too), so a client's queue never deadlocks behind the lease. */
Test(block_guard, held_requests_release_their_range)
{
	uint8_t a[BS], b[BS];
	struct done da = { 0 }, db = { 0 };

	memset(a, 0xaa, BS);
	memset(b, 0xbb, BS);
	node.lease = false;
	cr_assert_eq(blk_write(dev, 10, 100, a, 0, on_done, &da), 0);
	cr_assert_eq(blk_write(dev, 50, 100, b, 0, on_done, &db), 0);
	wait_held(2);
	cr_assert_eq(blk_locked(dev), 0);
	node.lease = true;
	blk_guard_recheck(guard);
	cr_assert(da.done && db.done && da.res == 0 && db.res == 0);
}

/* At shutdown, what waits fails with -ESHUTDOWN (the front ends can drain) and later
 * completions without a lease fail at once. */
Test(block_guard, shutdown_fails_what_waits)
{
	uint8_t a[BS];
	struct done d1 = { 0 }, d2 = { 0 };

	memset(a, 1, BS);
	node.lease = false;
	cr_assert_eq(blk_write(dev, 0, BS, a, 0, on_done, &d1), 0);
	wait_held(1);
	blk_guard_shutdown(guard);
	cr_assert(d1.done);
	cr_assert_eq(d1.res, -ESHUTDOWN);
	cr_assert_eq(blk_write(dev, 0, BS, a, 0, on_done, &d2), 0);
	wait_for(&d2);
	cr_assert_eq(d2.res, -ESHUTDOWN);
}

/* ---- ownership ---- */

/* A volume the node does not own is not opened (nor a snapshot of it), and the
 * refusal names the owner and where to attach. */
Test(block_guard, open_of_a_volume_owned_elsewhere_is_refused)
{
	struct blk_dev *d2;
	char why[256], why2[256];

	cr_assert_eq(engine_snap_create(eng, "disk0", "s"), 0);
	node.owned = false;
	cr_assert_eq(blk_open(eng, guard, "disk0@s", &d2), -EREMOTE);
	blk_guard_refusal(guard, "disk0@s", why, sizeof(why));
	cr_assert(strstr(why, "owned by node n2") && strstr(why, "127.0.0.1:10811"), "%s", why);
	/* what a front end says for the error of its open: the same sentence */
	cr_assert(blk_open_refusal(eng, guard, "disk0@s", -EREMOTE, why2, sizeof(why2)));
	cr_assert_str_eq(why2, why);
	cr_assert_not(blk_open_refusal(eng, guard, "disk0@s", -ENOENT, why2, sizeof(why2)),
		      "other errors are the front end's to say");
	node.owned = true;
	cr_assert_eq(blk_open(eng, guard, "disk0@s", &d2), 0);
	blk_close(d2);
}

/* A claim that may have gone (claims_gen moved) holds every completion, even under a
 * valid lease, until a recheck has looked; the node still owns the volume at the same
 * epoch: they complete as they ended. */
Test(block_guard, completions_wait_for_a_recheck_after_a_claim_moved)
{
	uint8_t a[BS];
	struct done d = { 0 };

	memset(a, 7, BS);
	node.gen++;
	cr_assert_eq(blk_write(dev, 0, BS, a, 0, on_done, &d), 0);
	wait_held(1);
	poll_some(10);
	cr_assert_not(d.done, "completed before the guard looked at the claims");
	blk_guard_recheck(guard);
	cr_assert(d.done);
	cr_assert_eq(d.res, 0);
	cr_assert_not(blk_fenced(dev));
}

/* The node lost the volume while requests were held for the lease, waiting for a
 * range lock, and in the engine: all of them end in -ESTALE (never 0), the front end
 * is told once, new requests are refused, and the engine volume is given back once
 * the last request ended. A write that had not started (behind a range lock) never
 * lands. */
Test(block_guard, a_lost_volume_fails_every_request_and_is_closed)
{
	uint8_t *held = aligned_alloc(BS, BS), *inflight = aligned_alloc(BS, BS);
	uint8_t *queued = aligned_alloc(BS, BS), *got = aligned_alloc(BS, 4 * BS);
	struct done dh = { 0 }, di = { 0 }, dq = { 0 }, dn = { 0 };
	struct fenced f = { 0 };
	struct blk_dev *other;

	cr_assert(held && inflight && queued && got);
	memset(held, 0x11, BS);
	memset(inflight, 0x22, BS);
	memset(queued, 0x33, BS);
	blk_set_fence_cb(dev, on_fence, &f);
	node.lease = false;
	cr_assert_eq(blk_write(dev, 0, BS, held, 0, on_done, &dh), 0);
	wait_held(1);
	node.lease = true;
	/* in the engine, not yet polled; and one behind it on the same block */
	cr_assert_eq(blk_write(dev, 2 * BS, BS, inflight, 0, on_done, &di), 0);
	cr_assert_eq(blk_write(dev, 2 * BS, BS, queued, 0, on_done, &dq), 0);
	cr_assert_eq(blk_locked(dev), 2);
	node.owned = false;
	node.gen++;
	blk_guard_recheck(guard);
	cr_assert(blk_fenced(dev));
	cr_assert_eq(f.calls, 1);
	cr_assert(strstr(f.why, "lost") && strstr(f.why, "owned by node n2"), "%s", f.why);
	cr_assert(dh.done && dh.res == -ESTALE, "the held write: %d", dh.res);
	cr_assert(dq.done && dq.res == -ESTALE, "the queued write: %d", dq.res);
	cr_assert_eq(blk_write(dev, 0, BS, held, 0, on_done, &dn), -ESTALE);
	cr_assert_eq(blk_flush(dev, on_done, &dn), -ESTALE);
	cr_assert_eq(blk_read(dev, 0, BS, got, on_done, &dn), -ESTALE);
	cr_assert_eq(engine_volume_open(eng, "disk0", (struct engine_volume **)&other), -EBUSY,
		     "a request still runs in the engine: the volume is not given back yet");
	wait_for(&di);
	cr_assert_eq(di.res, -ESTALE, "the write in the engine ends in an error, not 0");
	cr_assert_not(dn.done);
	blk_guard_recheck(guard); /* again: nothing more happens */
	cr_assert_eq(f.calls, 1);
	read_unguarded(2 * BS, BS, got);
	for (size_t i = 0; i < BS; i++)
		cr_assert_neq(got[i], 0x33, "the write that never started landed");
	free(held);
	free(inflight);
	free(queued);
	free(got);
}

/* The claim came back at another epoch (the lease lapsed and the node claimed again,
 * or another node claimed and released): the handle opened under the old epoch is
 * fenced all the same; a new open serves the new epoch. */
Test(block_guard, a_new_epoch_fences_the_old_handle)
{
	struct blk_dev *d2;
	struct done d = { 0 };
	uint8_t a[BS];

	memset(a, 5, BS);
	node.epoch = 6;
	node.gen++;
	blk_guard_recheck(guard);
	cr_assert(blk_fenced(dev));
	cr_assert_eq(blk_write(dev, 0, BS, a, 0, on_done, &d), -ESTALE);
	cr_assert_eq(blk_open(eng, guard, "disk0", &d2), 0, "the fenced handle gave it back");
	cr_assert_eq(blk_write(d2, 0, BS, a, 0, on_done, &d), 0);
	wait_for(&d);
	cr_assert_eq(d.res, 0);
	blk_close(d2);
}

/* An unaligned write whose edge block is being read when the node loses the volume
 * never writes: it ends in -ESTALE and its bytes are not there. */
Test(block_guard, a_read_modify_write_stops_at_the_fence)
{
	uint8_t base[BS], part[100], got[BS];
	struct done d = { 0 }, d0 = { 0 };

	memset(base, 0x44, BS);
	cr_assert_eq(blk_write(dev, 0, BS, base, 0, on_done, &d0), 0);
	wait_for(&d0);
	memset(part, 0x55, sizeof(part));
	cr_assert_eq(blk_write(dev, 10, sizeof(part), part, 0, on_done, &d), 0);
	node.owned = false;
	node.gen++;
	blk_guard_recheck(guard);
	wait_for(&d);
	cr_assert_eq(d.res, -ESTALE);
	read_unguarded(0, BS, got);
	cr_assert_eq(memcmp(got, base, BS), 0, "the patched block was written");
}

/* ---- attach anywhere ---- */

/* A volume no node owns: the open says -EAGAIN, the front end has the node claim it
 * and is called back once; the open then succeeds. A waiter that went away (cancel)
 * is not called; a claim that ends after the guard went touches nothing of it. */
Test(block_guard, an_unowned_volume_is_claimed_for_the_attach)
{
	struct blk_dev *d2;
	struct done d = { 0 }, gone = { 0 };
	char why[256];

	blk_close(dev);
	dev = NULL;
	node.unowned = true;
	cr_assert_eq(blk_open(eng, guard, "disk0", &d2), -EAGAIN);
	blk_guard_refusal(guard, "disk0", why, sizeof(why));
	cr_assert(strstr(why, "has no owner now"), "%s", why);
	cr_assert_eq(blk_guard_claim(guard, "disk0@snap", on_done, &d), 0);
	cr_assert_str_eq(node.claimed, "disk0", "the volume of the spec is claimed");
	cr_assert_not(d.done, "called back before the claim ended");
	node.unowned = false;
	node.epoch = 7;
	node_claim_ends(0);
	cr_assert(d.done && d.res == 0);
	cr_assert_eq(blk_open(eng, guard, "disk0", &dev), 0);

	/* cancelled: never called */
	cr_assert_eq(blk_guard_claim(guard, "disk0", on_done, &gone), 0);
	blk_guard_claim_cancel(guard, on_done, &gone);
	node_claim_ends(-EBUSY);
	cr_assert_not(gone.done);

	/* the guard goes first */
	cr_assert_eq(blk_guard_claim(guard, "disk0", on_done, &gone), 0);
	blk_close(dev);
	dev = NULL;
	blk_guard_destroy(guard);
	guard = NULL;
	node_claim_ends(0);
	cr_assert_not(gone.done);
}

/* A node whose guard has no claim op does not claim on attach. */
Test(block_guard, no_claim_op_no_claim)
{
	static const struct blk_guard_ops no_claim = {
		.lease_valid = node_lease, .claims_gen = node_gen, .owns = node_owns,
	};
	struct blk_guard *g2;
	struct done d = { 0 };

	cr_assert_eq(blk_guard_create(&no_claim, &node, &g2), 0);
	cr_assert_eq(blk_guard_claim(g2, "disk0", on_done, &d), -ENOTSUP);
	blk_guard_destroy(g2);
	cr_assert_not(d.done);
}

/* The claim lapsed with the lease and the node may take it back unbroken: nothing is
 * fenced, and every completion waits (even under a valid lease) until the node knows;
 * taken back at the same unbroken epoch, they complete as they ended. An open
 * meanwhile is refused (-EAGAIN). */
Test(block_guard, an_undecided_claim_holds_completions_without_fencing)
{
	uint8_t a[BS];
	struct done d = { 0 }, d2 = { 0 };
	struct blk_dev *other;

	memset(a, 9, BS);
	node.undecided = true;
	node.gen++;
	blk_guard_recheck(guard);
	cr_assert_not(blk_fenced(dev));
	cr_assert_eq(blk_write(dev, 0, BS, a, 0, on_done, &d), 0);
	wait_held(1);
	blk_guard_recheck(guard); /* still undecided: still held */
	cr_assert_not(d.done);
	cr_assert_eq(blk_write(dev, BS, BS, a, 0, on_done, &d2), 0);
	wait_held(2);
	cr_assert_eq(blk_open(eng, guard, "disk0@x", &other), -EAGAIN);
	node.undecided = false; /* taken back, ownership unbroken since epoch 5 */
	blk_guard_recheck(guard);
	cr_assert(d.done && d.res == 0 && d2.done && d2.res == 0);
	cr_assert_not(blk_fenced(dev));
}
