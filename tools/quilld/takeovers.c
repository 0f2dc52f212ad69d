/* tools/quilld/takeovers.c — the takeovers this node runs (takeovers.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/layout.h"
#include "tools/quilld/takeovers.h"

struct waiter {
	struct waiter *next;
	void (*done)(void *arg, int res);
	void *arg;
};

struct run {
	struct takeovers *tk;
	struct run *next;
	char name[LAYOUT_ID_MAX + 1];
	int64_t epoch;
	struct takeover *t;
	struct waiter *waiters;
};

/* A takeover that failed: not run again at the same epoch (each map change would
 * start it over); a new claim (a higher epoch) may. */
struct failed {
	struct failed *next;
	char name[LAYOUT_ID_MAX + 1];
	int64_t epoch;
	char msg[320];
};

struct takeovers {
	struct takeover_opts o;
	char self[LAYOUT_ID_MAX + 1];
	struct run *runs;
	struct failed *failed;
};

static struct failed *failed_find(const struct takeovers *tk, const char *name)
{
	for (struct failed *f = tk->failed; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static void failed_note(struct takeovers *tk, const char *name, int64_t epoch, const char *msg)
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
	snprintf(f->msg, sizeof(f->msg), "%s", msg);
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

/* The takeover ended: off the list first (a waiter may look), then the waiters. */
static void run_done(void *arg, int res, const char *msg)
{
	struct run *run = arg, **p;

	for (p = &run->tk->runs; *p != run; p = &(*p)->next)
		;
	*p = run->next;
	if (res < 0 && res != -ECANCELED)
		failed_note(run->tk, run->name, run->epoch, msg);
	while (run->waiters) {
		struct waiter *w = run->waiters;

		run->waiters = w->next;
		w->done(w->arg, res);
		free(w);
	}
	free(run);
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

int takeovers_run(struct takeovers *tk, const char *name, int64_t epoch,
		  void (*done)(void *arg, int res), void *arg)
{
	struct run *run = run_find(tk, name);
	struct failed *f = failed_find(tk, name);
	int r;

	if (run)
		return waiter_add(run, done, arg);
	if (f && f->epoch >= epoch)
		return -EIO; /* failed at this claim already: the guard says why */
	run = calloc(1, sizeof(*run));
	if (!run)
		return -ENOMEM;
	run->tk = tk;
	run->epoch = epoch;
	snprintf(run->name, sizeof(run->name), "%s", name);
	r = waiter_add(run, done, arg);
	if (r < 0) {
		free(run);
		return r;
	}
	run->next = tk->runs;
	tk->runs = run;
	r = takeover_start(&tk->o, name, epoch, run_done, run, &run->t);
	if (r < 0) {
		tk->runs = run->next;
		free(run->waiters);
		free(run);
	}
	return r;
}

bool takeovers_running(const struct takeovers *tk, const char *name)
{
	return tk && run_find(tk, name);
}

bool takeovers_state(const struct takeovers *tk, const char *name, int64_t epoch, char *buf,
		     size_t len)
{
	struct run *run = tk ? run_find(tk, name) : NULL;
	struct failed *f = tk ? failed_find(tk, name) : NULL;
	char step[96];

	if (run) {
		takeover_step(run->t, step, sizeof(step));
		snprintf(buf, len, "taking over %s (%s), retry", name, step);
		return true;
	}
	if (f && f->epoch >= epoch) {
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
	while (tk->runs)
		takeover_cancel(tk->runs->t); /* run_done takes it off the list */
	while (tk->failed) {
		struct failed *f = tk->failed;

		tk->failed = f->next;
		free(f);
	}
	free(tk);
}
