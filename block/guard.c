/* block/guard.c — the cluster's guard over client I/O (block.h, "the guard"): one per
 * node, owned by whoever made it (quilld), holding the handles it guards and the
 * completions it holds back for the lease.
 *
 * A handle records the epoch of the claim it was opened under. A recheck asks the
 * owner again for each handle; a handle whose claim is gone, or now of another epoch
 * (the claim lapsed and was taken again, here or elsewhere), is fenced. Completions
 * wait while the lease is invalid or while claims_gen moved since the last recheck:
 * between a claim lost and the recheck that fences its handles, no completion of any
 * handle goes out as a success.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_internal.h"
#include "common/log.h"
#include "common/volspec.h"

#define LOG_TAG "block"
#define WHY_MAX 320

/* A front end waiting for a claim made on its attach. Freed by claim_done (the
 * node's claim calls back exactly once, even after the guard went). */
struct claim_wait {
	struct claim_wait *next;
	struct blk_guard *g;             /* NULL: the guard went */
	blk_cb cb;                       /* NULL: cancelled */
	void *arg;
};

struct blk_guard {
	struct blk_guard_ops ops;
	void *arg;
	bool shutdown;
	uint64_t gen_seen;               /* claims_gen at the last recheck */
	unsigned pass;                   /* rechecks so far */
	bool undecided;                  /* the last recheck met a claim that may come back:
					    every completion waits */
	struct blk_io *head, *tail;      /* completions held back, oldest first */
	unsigned n;
	struct blk_dev *devs;            /* the open handles */
	struct claim_wait *waits;        /* claims made on attach, in flight */
};

int blk_guard_create(const struct blk_guard_ops *ops, void *arg, struct blk_guard **out)
{
	struct blk_guard *g;

	if (!ops || !ops->lease_valid || !ops->claims_gen || !ops->owns)
		return -EINVAL;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->ops = *ops;
	g->arg = arg;
	g->gen_seen = ops->claims_gen(arg);
	*out = g;
	return 0;
}

/* Completes the held requests of handle `only` (NULL: all), with err (0: their own
 * result), in order. */
static void release_held(struct blk_guard *g, const struct blk_dev *only, int err)
{
	struct blk_io *keep_head = NULL, *keep_tail = NULL, *go = NULL, **go_tail = &go;
	struct blk_io *io = g->head;
	unsigned kept = 0;

	while (io) {
		struct blk_io *next = io->next_held;

		io->next_held = NULL;
		if (only && io->dev != only) {
			if (keep_tail)
				keep_tail->next_held = io;
			else
				keep_head = io;
			keep_tail = io;
			kept++;
		} else {
			*go_tail = io;
			go_tail = &io->next_held;
		}
		io = next;
	}
	g->head = keep_head;
	g->tail = keep_tail;
	g->n = kept;
	/* the list is settled before any cb runs: a cb may issue (and hold) more */
	while (go) {
		io = go;
		go = io->next_held;
		if (err)
			io->err = err;
		blk_io_complete(io);
	}
}

void blk_guard_destroy(struct blk_guard *g)
{
	if (!g)
		return;
	release_held(g, NULL, -ESHUTDOWN);
	while (g->devs)
		blk_guard_detach(g->devs);
	for (struct claim_wait *w = g->waits; w; w = w->next) {
		w->g = NULL; /* claim_done frees it */
		w->cb = NULL;
	}
	free(g);
}

int blk_guard_admit(struct blk_guard *g, const char *spec, struct blk_dev *dev)
{
	char snap[ENGINE_VOLUME_NAME_MAX + 1], why[WHY_MAX];
	int r;

	if (volspec_parse(spec, dev->vol_name, snap) < 0)
		return 0; /* the engine refuses it */
	r = g->ops.owns(g->arg, dev->vol_name, &dev->epoch, why, sizeof(why));
	return r == -EINPROGRESS ? -EAGAIN : r; /* not served while undecided */
}

void blk_guard_attach(struct blk_guard *g, struct blk_dev *dev)
{
	dev->guard = g;
	dev->pass = g->pass;
	dev->g_prev = NULL;
	dev->g_next = g->devs;
	if (g->devs)
		g->devs->g_prev = dev;
	g->devs = dev;
}

void blk_guard_detach(struct blk_dev *dev)
{
	struct blk_guard *g = dev->guard;

	if (dev->g_prev)
		dev->g_prev->g_next = dev->g_next;
	else
		g->devs = dev->g_next;
	if (dev->g_next)
		dev->g_next->g_prev = dev->g_prev;
	dev->g_prev = dev->g_next = NULL;
	dev->guard = NULL;
}

void blk_guard_refusal(struct blk_guard *g, const char *spec, char *buf, size_t len)
{
	char vol[ENGINE_VOLUME_NAME_MAX + 1], snap[ENGINE_VOLUME_NAME_MAX + 1];
	int64_t epoch;

	buf[0] = '\0';
	if (!g || volspec_parse(spec, vol, snap) < 0 ||
	    g->ops.owns(g->arg, vol, &epoch, buf, len) == 0 || !buf[0])
		snprintf(buf, len, "volume '%s' is not served by this node", spec);
}

static void claim_done(void *arg, int res)
{
	struct claim_wait *w = arg, **p;

	if (w->g) {
		for (p = &w->g->waits; *p != w; p = &(*p)->next)
			;
		*p = w->next;
	}
	if (w->cb)
		w->cb(w->arg, res);
	free(w);
}

int blk_guard_claim(struct blk_guard *g, const char *spec, blk_cb cb, void *arg)
{
	char vol[ENGINE_VOLUME_NAME_MAX + 1], snap[ENGINE_VOLUME_NAME_MAX + 1];
	struct claim_wait *w;
	int r;

	if (!g || !g->ops.claim)
		return -ENOTSUP;
	if (volspec_parse(spec, vol, snap) < 0)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	*w = (struct claim_wait){ .next = g->waits, .g = g, .cb = cb, .arg = arg };
	g->waits = w;
	r = g->ops.claim(g->arg, vol, claim_done, w);
	if (r < 0) {
		g->waits = w->next;
		free(w);
	}
	return r;
}

void blk_guard_claim_cancel(struct blk_guard *g, blk_cb cb, void *arg)
{
	for (struct claim_wait *w = g ? g->waits : NULL; w; w = w->next)
		if (w->cb == cb && w->arg == arg)
			w->cb = NULL;
}

bool blk_guard_hold(struct blk_io *io)
{
	struct blk_dev *dev = io->dev;
	struct blk_guard *g = dev->guard;

	if (dev->fenced) {
		io->err = dev->fenced;
		return false;
	}
	if (!g->undecided && g->ops.lease_valid(g->arg) &&
	    g->ops.claims_gen(g->arg) == g->gen_seen)
		return false;
	if (g->shutdown) {
		io->err = -ESHUTDOWN;
		return false;
	}
	io->next_held = NULL;
	if (g->tail)
		g->tail->next_held = io;
	else
		g->head = io;
	g->tail = io;
	g->n++;
	return true;
}

/* The engine volume goes back once nothing of the fenced handle runs in it. */
static void close_if_idle(struct blk_dev *dev)
{
	if (dev->fenced && !dev->inflight && dev->vol) {
		engine_volume_close(dev->vol);
		dev->vol = NULL;
	}
}

void blk_guard_io_gone(struct blk_dev *dev)
{
	dev->inflight--;
	close_if_idle(dev);
}

static void fence(struct blk_guard *g, struct blk_dev *dev, const char *why)
{
	log_msg(LOG_WARN, LOG_TAG, "volume %s: %s: its clients are cut off (%u requests end "
		"with an error)", dev->vol_name, why, dev->inflight);
	dev->fenced = -ESTALE;
	if (dev->vol && !dev->readonly)
		engine_volume_abort(dev->vol, -ESTALE);
	blk_dev_fail_waiters(dev, -ESTALE);
	release_held(g, dev, -ESTALE);
	if (dev->on_fence)
		dev->on_fence(dev->fence_arg, why);
	close_if_idle(dev);
}

/* Does this node still own dev's volume at the epoch it was opened under? If not,
 * why (a sentence). Undecided (g->undecided) counts as owned, for now. */
static bool still_owned(struct blk_guard *g, struct blk_dev *dev, char *why, size_t len)
{
	char refusal[WHY_MAX] = "";
	int64_t epoch = 0;
	int r = g->ops.owns(g->arg, dev->vol_name, &epoch, refusal, sizeof(refusal));

	if (r == -EINPROGRESS) {
		g->undecided = true;
		return true;
	}
	if (r < 0) {
		snprintf(why, len, "this node lost it (%s)", refusal[0] ? refusal : "no claim");
		return false;
	}
	if (dev->epoch && epoch != dev->epoch) {
		snprintf(why, len, "this node's claim at epoch %lld was lost (it holds epoch %lld "
			 "now)", (long long)dev->epoch, (long long)epoch);
		return false;
	}
	dev->epoch = epoch; /* a volume the map learned of since it was opened */
	return true;
}

/* The next handle this recheck has not looked at (a fence callback may close
 * handles: the scan starts over after each one). */
static struct blk_dev *next_unchecked(struct blk_guard *g)
{
	for (struct blk_dev *d = g->devs; d; d = d->g_next)
		if (d->pass != g->pass)
			return d;
	return NULL;
}

void blk_guard_recheck(struct blk_guard *g)
{
	struct blk_dev *dev;
	char why[WHY_MAX + 96];
	uint64_t gen;

	if (!g)
		return;
	gen = g->ops.claims_gen(g->arg); /* before the owners: a later move is seen by the
					    next recheck */
	g->pass++;
	g->undecided = false;
	while ((dev = next_unchecked(g))) {
		dev->pass = g->pass;
		if (!dev->fenced && !still_owned(g, dev, why, sizeof(why)))
			fence(g, dev, why);
	}
	g->gen_seen = gen;
	if (g->head && !g->undecided && g->ops.lease_valid(g->arg) &&
	    g->ops.claims_gen(g->arg) == gen)
		release_held(g, NULL, 0);
}

unsigned blk_guard_waiting(const struct blk_guard *g)
{
	return g ? g->n : 0;
}

void blk_guard_shutdown(struct blk_guard *g)
{
	if (!g)
		return;
	g->shutdown = true;
	blk_guard_recheck(g);              /* fences what was lost, completes what may go */
	release_held(g, NULL, -ESHUTDOWN); /* what still waits */
}

void blk_set_fence_cb(struct blk_dev *dev, blk_fence_fn fn, void *arg)
{
	dev->on_fence = fn;
	dev->fence_arg = arg;
}

bool blk_fenced(const struct blk_dev *dev)
{
	return dev->fenced != 0;
}
