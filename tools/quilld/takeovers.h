/* tools/quilld/takeovers.h — the takeovers this node runs (replication/takeover.h): at
 * most one per volume, each with the attaches waiting for it.
 *
 * A claim of a replicated volume that this node's engine does not have (its owner
 * died elsewhere) starts one; until it ends, the guard refuses attaches with "taking
 * over NAME (step), retry", and the attach that made the claim waits for it.
 * The loop's thread only. */
#ifndef QUILL_QUILLD_TAKEOVERS_H
#define QUILL_QUILLD_TAKEOVERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replication/takeover.h"

struct takeovers;

int takeovers_create(const struct takeover_opts *o, struct takeovers **out);
/* Cancels those still running (their waiters get -ECANCELED). NULL ok. */
void takeovers_destroy(struct takeovers *tk);
/* Takes name over at epoch unless this runs already; done (may be NULL) runs once
 * with its result. 0, or -errno (done never runs): -EIO it failed at this epoch
 * already (it is not run again until a new claim). */
int takeovers_run(struct takeovers *tk, const char *name, int64_t epoch,
		  void (*done)(void *arg, int res), void *arg);
/* Is name being taken over? NULL tk: false. */
bool takeovers_running(const struct takeovers *tk, const char *name);
/* Is name being taken over, or did its takeover at epoch (or later) fail? Then a
 * sentence for people in buf ("taking over NAME (STEP), retry"). */
bool takeovers_state(const struct takeovers *tk, const char *name, int64_t epoch, char *buf,
		     size_t len);

#endif
