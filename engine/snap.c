/* engine/snap.c — snapshots, clones, rollback, flatten and diff (being written). */
#include <errno.h>

#include "engine/engine_internal.h"

int engine_snap_create(struct engine *eng, const char *vol, const char *snap)
{ (void)eng; (void)vol; (void)snap; return -ENOSYS; }
int engine_snap_delete(struct engine *eng, const char *vol, const char *snap)
{ (void)eng; (void)vol; (void)snap; return -ENOSYS; }
int engine_snap_dependents(struct engine *eng, const char *vol, const char *snap, char *buf,
			   size_t len)
{ (void)eng; (void)vol; (void)snap; (void)buf; (void)len; return -ENOSYS; }
int engine_snap_rollback(struct engine *eng, const char *vol, const char *snap, bool force)
{ (void)eng; (void)vol; (void)snap; (void)force; return -ENOSYS; }
int engine_snap_list(struct engine *eng, const char *vol,
		     int (*fn)(const struct engine_snap_info *info, void *arg), void *arg)
{ (void)eng; (void)vol; (void)fn; (void)arg; return -ENOSYS; }
int engine_clone(struct engine *eng, const char *snap_spec, const char *newvol)
{ (void)eng; (void)snap_spec; (void)newvol; return -ENOSYS; }
int engine_flatten_start(struct engine *eng, const char *vol)
{ (void)eng; (void)vol; return -ENOSYS; }
int engine_flatten_status(struct engine *eng, const char *vol, struct engine_flatten_status *out)
{ (void)eng; (void)vol; (void)out; return -ENOSYS; }
int engine_diff(struct engine *eng, const char *from, const char *to,
		int (*fn)(const struct engine_extent *ext, void *arg), void *arg)
{ (void)eng; (void)from; (void)to; (void)fn; (void)arg; return -ENOSYS; }
bool engine_volume_readonly(const struct engine_volume *vol) { (void)vol; return false; }
