/* tools/quilld/takeovers.h — the takeovers this node runs (replication/takeover.h): at
 * most one per volume, each with the attaches waiting for it.
 *
 * A claim of a replicated volume that this node's engine does not have (its owner
 * died elsewhere), or whose layers here are stale (another node owned it since this
 * node did), starts one; until it ends, the guard refuses attaches with "taking
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
 * with its result. stale_uid: the family of name's stale local layers (this node's
 * ownership was broken: layout_local_current), released first with all its segments
 * freed (engine_family_release_async), so that the takeover starts from the copies
 * alone; 0: none here. 0, or -errno (done never runs): -EIO it failed at this epoch
 * already (it is not run again until a new claim). */
int takeovers_run(struct takeovers *tk, const char *name, int64_t epoch, uint64_t stale_uid,
		  void (*done)(void *arg, int res), void *arg);
/* Releases the local family uid of name, a volume this node lost to another: its
 * segment records are listed, and the sealed segments they name this node a holder of
 * stay as copies sealed at their recorded lengths (layout_segments_kept,
 * engine_family_release_to_async); the rest are freed. It runs like a takeover (the
 * guard refuses attaches meanwhile); a claim here meanwhile (takeovers_run) has the
 * takeover follow it. 0, or -errno: -EBUSY one runs already. */
int takeovers_release(struct takeovers *tk, const char *name, uint64_t uid);
/* name's removal runs on this node (on) or has ended (!on). Meanwhile no takeover of
 * it starts (takeovers_removing): its local layers go before its record and claim do,
 * and in between the map shows a volume this node owns without layers here, as after
 * its owner died elsewhere; a takeover then would find no copies and fail, and that
 * failure would refuse a volume created again under the name. How its last takeover
 * ended is forgotten both times. NULL tk: nothing. */
void takeovers_remove_mark(struct takeovers *tk, const char *name, bool on);
/* Is name's removal running here? NULL tk: false. */
bool takeovers_removing(const struct takeovers *tk, const char *name);
/* Is name being taken over? NULL tk: false. */
bool takeovers_running(const struct takeovers *tk, const char *name);
/* Was name taken over at exactly epoch (its layers here are current under that claim)?
 * NULL tk: false. */
bool takeovers_taken(const struct takeovers *tk, const char *name, int64_t epoch);
/* Is name being taken over, or did its takeover at epoch (or later) fail? Then a
 * sentence for people in buf ("taking over NAME (STEP), retry"). */
bool takeovers_state(const struct takeovers *tk, const char *name, int64_t epoch, char *buf,
		     size_t len);

#endif
