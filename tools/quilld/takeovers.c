/* tools/quilld/takeovers.c — the takeovers this node runs (takeovers.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "cluster/layout.h"
#include "common/err.h"
#include "common/log.h"
#include "engine/engine.h"
#include "tools/quilld/takeovers.h"

#define LOG_TAG "quilld"

struct waiter {
	struct waiter *next;
	void (*done)(void *arg, int res);
	void *arg;
};

struct run {
	struct takeovers *tk;
	struct run *next;
	char name[LAYOUT_ID_MAX + 1];
	int64_t epoch;       /* 0: a release alone (until a claim here gives one) */
	uint64_t stale_uid;  /* the stale local family released first (0: none) */
	uint32_t *keep, *keep_len; /* its segments kept as copies, and their lengths */
	size_t nkeep;
	bool orphaned;       /* the takeovers went while its release ran: it only frees */
	struct takeover *t;  /* NULL while the release runs */
	struct waiter *waiters;
};

/* How the last takeover of a volume ended. One that failed is not run again at the
 * same epoch (each map change would start it over); a new claim (a higher epoch) may.
 * One that succeeded made the layers here current at its epoch. */
struct failed {
	struct failed *next;
	char name[LAYOUT_ID_MAX + 1];
	int64_t epoch;
	int res;
	char msg[320];
};

/* A volume whose removal runs here (takeovers_remove_mark). */
struct removing {
	struct removing *next;
	char name[LAYOUT_ID_MAX + 1];
};

struct takeovers {
	struct takeover_opts o;
	char self[LAYOUT_ID_MAX + 1];
	struct run *runs;
	struct failed *failed;
	struct removing *removing;
};

static struct failed *failed_find(const struct takeovers *tk, const char *name)
{
	for (struct failed *f = tk->failed; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static void failed_note(struct takeovers *tk, const char *name, int64_t epoch, int res,
			const char *msg)
{
	struct failed *f = failed_find(tk, name);

	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f)
			return;
		snprintf(f->name, sizeof(f->name), "%s", name);
		f->next = tk->failed;
		tk->failed = f;
	}
	f->epoch = epoch;
	f->res = res;
	snprintf(f->msg, sizeof(f->msg), "%s", msg);
}

static void failed_forget(struct takeovers *tk, const char *name)
{
	for (struct failed **p = &tk->failed; *p; p = &(*p)->next)
		if (strcmp((*p)->name, name) == 0) {
			struct failed *f = *p;

			*p = f->next;
			free(f);
			return;
		}
}

void takeovers_remove_mark(struct takeovers *tk, const char *name, bool on)
{
	struct removing **p, *r;

	if (!tk)
		return;
	failed_forget(tk, name);
	for (p = &tk->removing; *p && strcmp((*p)->name, name) != 0; p = &(*p)->next)
		;
	if (!on && *p) {
		r = *p;
		*p = r->next;
		free(r);
	} else if (on && !*p && (r = calloc(1, sizeof(*r)))) {
		snprintf(r->name, sizeof(r->name), "%s", name);
		r->next = tk->removing;
		tk->removing = r;
	}
}

bool takeovers_removing(const struct takeovers *tk, const char *name)
{
	for (const struct removing *r = tk ? tk->removing : NULL; r; r = r->next)
		if (strcmp(r->name, name) == 0)
			return true;
	return false;
}

int takeovers_create(const struct takeover_opts *o, struct takeovers **out)
{
	struct takeovers *tk = calloc(1, sizeof(*tk));

	if (!tk)
		return -ENOMEM;
	tk->o = *o;
	snprintf(tk->self, sizeof(tk->self), "%s", o->self_id ? o->self_id : "");
	tk->o.self_id = tk->self;
	*out = tk;
	return 0;
}

static struct run *run_find(const struct takeovers *tk, const char *name)
{
	for (struct run *r = tk->runs; r; r = r->next)
		if (strcmp(r->name, name) == 0)
			return r;
	return NULL;
}

static void run_free(struct run *run)
{
	free(run->keep);
	free(run->keep_len);
	free(run);
}

/* The takeover ended: off the list first (a waiter may look), then the waiters. */
static void run_done(void *arg, int res, const char *msg)
{
	struct run *run = arg, **p;

	for (p = &run->tk->runs; *p != run; p = &(*p)->next)
		;
	*p = run->next;
	if (res != -ECANCELED && run->epoch)
		failed_note(run->tk, run->name, run->epoch, res, msg);
	while (run->waiters) {
		struct waiter *w = run->waiters;

		run->waiters = w->next;
		w->done(w->arg, res);
		free(w);
	}
	run_free(run);
}

static int waiter_add(struct run *run, void (*done)(void *arg, int res), void *arg)
{
	struct waiter *w;

	if (!done)
		return 0;
	w = malloc(sizeof(*w));
	if (!w)
		return -ENOMEM;
	*w = (struct waiter){ .next = run->waiters, .done = done, .arg = arg };
	run->waiters = w;
	return 0;
}

/* The stale local family is gone (its layers out of the catalog, its segments freed
 * or held as copies): now the takeover, as on a node that never had it, if this node
 * claimed the volume. */
static void stale_released(void *arg, int res)
{
	struct run *run = arg;
	char msg[160] = "";

	if (run->orphaned) {
		run_free(run);
		return;
	}
	if (res == 0 && !run->epoch) {
		run_done(run, 0, msg);
		return;
	}
	if (res == 0)
		res = takeover_start(&run->tk->o, run->name, run->epoch, run_done, run, &run->t);
	if (res < 0) {
		snprintf(msg, sizeof(msg), "its stale local layers could not be released: %s%s",
			 err_str(-res), res == -EBUSY ? " (open here)"
				: res == -EMLINK ? " (a clone made here reads through one of its "
						   "snapshots: flatten the clone or remove it)"
				: "");
		log_msg(LOG_ERROR, LOG_TAG, "volume %s: %s", run->name, msg);
		run_done(run, res, msg);
	}
}

static struct run *run_new(struct takeovers *tk, const char *name, int64_t epoch,
			   uint64_t stale_uid)
{
	struct run *run = calloc(1, sizeof(*run));

	if (!run)
		return NULL;
	run->tk = tk;
	run->epoch = epoch;
	run->stale_uid = stale_uid;
	snprintf(run->name, sizeof(run->name), "%s", name);
	return run;
}

/* The SEG_LIST call of a stale family's release. */
struct lost_list {
	struct cluster_vol_req req;
	struct run *run;
};

/* The family's segment records are here: the copies its release keeps, then the
 * release. */
static void stale_listed(void *arg, int res, const char *msg)
{
	struct lost_list *ll = arg;
	struct cluster_vol_req *req = &ll->req;
	struct run *run = ll->run;
	size_t n = req->nsegs;

	(void)msg;
	if (run->orphaned || res < 0) {
		free(req->segs);
		free(ll);
		stale_released(run, res < 0 ? res : -ECANCELED);
		return;
	}
	run->keep = malloc((n ? n : 1) * sizeof(*run->keep));
	run->keep_len = malloc((n ? n : 1) * sizeof(*run->keep_len));
	if (run->keep && run->keep_len)
		run->nkeep = layout_segments_kept(req->segs, n, run->tk->self, ENGINE_BLOCK_SIZE,
						  run->keep, run->keep_len);
	free(req->segs);
	free(ll);
	res = run->keep && run->keep_len ?
		engine_family_release_to_async(run->tk->o.eng, run->stale_uid, run->keep,
					       run->keep_len, run->nkeep, stale_released, run) :
		-ENOMEM;
	if (res < 0)
		stale_released(run, res);
}

/* The run's first step: the takeover itself, or the release of the stale family:
 * first its segment records, for the copies it keeps (stale_listed). */
static int run_start(struct run *run)
{
	struct takeovers *tk = run->tk;
	struct lost_list *ll;
	int r;

	if (!run->stale_uid)
		return takeover_start(&tk->o, run->name, run->epoch, run_done, run, &run->t);
	ll = calloc(1, sizeof(*ll));
	if (!ll)
		return -ENOMEM;
	ll->run = run;
	ll->req.op = CLUSTER_VOL_SEG_LIST;
	snprintf(ll->req.vol.name, sizeof(ll->req.vol.name), "%s", run->name);
	r = cluster_volume_async(tk->o.cluster, &ll->req, stale_listed, ll);
	if (r < 0)
		free(ll);
	return r;
}

/* Puts run on the list and starts it; frees it if it does not start. */
static int run_add(struct takeovers *tk, struct run *run)
{
	int r;

	run->next = tk->runs;
	tk->runs = run;
	r = run_start(run);
	if (r < 0) {
		tk->runs = run->next;
		free(run->waiters);
		run_free(run);
	}
	return r;
}

int takeovers_release(struct takeovers *tk, const char *name, uint64_t uid)
{
	struct run *run;

	if (run_find(tk, name))
		return -EBUSY;
	run = run_new(tk, name, 0, uid);
	if (!run)
		return -ENOMEM;
	log_msg(LOG_INFO, LOG_TAG, "volume %s: this node no longer owns it: its layers here "
		"are stale from now on: releasing them (its segments stay as copies)", name);
	return run_add(tk, run);
}

int takeovers_run(struct takeovers *tk, const char *name, int64_t epoch, uint64_t stale_uid,
		  void (*done)(void *arg, int res), void *arg)
{
	struct run *run = run_find(tk, name);
	struct failed *f = failed_find(tk, name);
	int r;

	if (run && !run->epoch)
		run->epoch = epoch; /* a release runs: the takeover follows it */
	if (run)
		return waiter_add(run, done, arg);
	if (f && f->res < 0 && f->epoch >= epoch)
		return -EIO; /* failed at this claim already: the guard says why */
	run = run_new(tk, name, epoch, stale_uid);
	if (!run)
		return -ENOMEM;
	r = waiter_add(run, done, arg);
	if (r < 0) {
		run_free(run);
		return r;
	}
	return run_add(tk, run);
}

bool takeovers_running(const struct takeovers *tk, const char *name)
{
	return tk && run_find(tk, name);
}

bool takeovers_taken(const struct takeovers *tk, const char *name, int64_t epoch)
{
	const struct failed *f = tk ? failed_find(tk, name) : NULL;

	return f && f->res == 0 && f->epoch == epoch;
}

bool takeovers_state(const struct takeovers *tk, const char *name, int64_t epoch, char *buf,
		     size_t len)
{
	struct run *run = tk ? run_find(tk, name) : NULL;
	struct failed *f = tk ? failed_find(tk, name) : NULL;
	char step[96];

	if (run) {
		if (run->t)
			takeover_step(run->t, step, sizeof(step));
		else
			snprintf(step, sizeof(step), "releasing its stale local layers");
		snprintf(buf, len, "taking over %s (%s), retry", name, step);
		return true;
	}
	if (f && f->res < 0 && f->epoch >= epoch) {
		snprintf(buf, len, "the takeover of %s at epoch %lld failed (%s): release it and "
			 "claim it again", name, (long long)f->epoch, f->msg);
		return true;
	}
	return false;
}

void takeovers_destroy(struct takeovers *tk)
{
	if (!tk)
		return;
	while (tk->runs) {
		struct run *run = tk->runs;

		if (run->t) {
			takeover_cancel(run->t); /* run_done takes it off the list */
			continue;
		}
		/* its release is the engine's job: it ends in engine_close, and frees it */
		tk->runs = run->next;
		run->orphaned = true;
		while (run->waiters) {
			struct waiter *w = run->waiters;

			run->waiters = w->next;
			w->done(w->arg, -ECANCELED);
			free(w);
		}
	}
	while (tk->failed) {
		struct failed *f = tk->failed;

		tk->failed = f->next;
		free(f);
	}
	while (tk->removing) {
		struct removing *r = tk->removing;

		tk->removing = r->next;
		free(r);
	}
	free(tk);
}
