/* common/volspec.h — the one parser of volume specs: "VOL" names a volume, "VOL@SNAP"
 * its snapshot SNAP. The engine, the block layer (blk_spec_parse wraps it), quilld's
 * control commands and the CLI all read specs through it, so that every front end
 * and command agrees on what a spec is. It checks the shape only (one '@' at most,
 * both parts non-empty and short enough); which characters a name may hold is the
 * engine's rule when it creates one, so a lookup of any other name just misses.
 */
#ifndef QUILL_COMMON_VOLSPEC_H
#define QUILL_COMMON_VOLSPEC_H

#include <stdbool.h>
#include <stddef.h>

#define VOLSPEC_NAME_MAX 63u                          /* bytes of VOL or of SNAP */
#define VOLSPEC_MAX      (2 * VOLSPEC_NAME_MAX + 1)   /* bytes of "VOL@SNAP" */

/* Fills vol and snap ("" for a volume). -EINVAL (vol and snap untouched): NULL or
 * empty spec, an empty VOL or SNAP around the '@', a second '@', or a part longer
 * than VOLSPEC_NAME_MAX. */
int volspec_parse(const char *spec, char vol[VOLSPEC_NAME_MAX + 1],
		  char snap[VOLSPEC_NAME_MAX + 1]);

/* Writes "VOL@SNAP" (or "VOL" when snap is NULL or "") into buf, truncated to len;
 * returns buf. */
char *volspec_format(char *buf, size_t len, const char *vol, const char *snap);

#endif
