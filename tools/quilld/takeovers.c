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
	struct takeover *t;
	struct waiter *waiters;
};

struct takeovers {
	struct takeover_opts o;
	char self[LAYOUT_ID_MAX + 1];
	struct run *runs;
};

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

	(void)msg; /* logged by the takeover */
	for (p = &run->tk->runs; *p != run; p = &(*p)->next)
		;
	*p = run->next;
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
	int r;

	if (run)
		return waiter_add(run, done, arg);
	run = calloc(1, sizeof(*run));
	if (!run)
		return -ENOMEM;
	run->tk = tk;
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

bool takeovers_step(const struct takeovers *tk, const char *name, char *buf, size_t len)
{
	struct run *run = tk ? run_find(tk, name) : NULL;

	if (run)
		takeover_step(run->t, buf, len);
	return run != NULL;
}

void takeovers_destroy(struct takeovers *tk)
{
	if (!tk)
		return;
	while (tk->runs)
		takeover_cancel(tk->runs->t); /* run_done takes it off the list */
	free(tk);
}
