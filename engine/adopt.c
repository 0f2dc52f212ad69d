/* engine/adopt.c — a family taken over from held copies, and released (engine.h,
 * "taking a family over"; docs/engine.md, "Adopting a family"). */
#include "engine/engine.h"

#include <errno.h>

int engine_family_adopt_async(struct engine *eng, uint64_t uid, const uint32_t *snos,
			      size_t n, engine_cb cb, void *arg)
{
	(void)eng; (void)uid; (void)snos; (void)n; (void)cb; (void)arg;
	return -EOPNOTSUPP;
}

int engine_family_adopt(struct engine *eng, uint64_t uid, const uint32_t *snos, size_t n)
{
	(void)eng; (void)uid; (void)snos; (void)n;
	return -EOPNOTSUPP;
}

int engine_family_release_async(struct engine *eng, uint64_t uid, const uint32_t *keep,
				size_t nkeep, engine_cb cb, void *arg)
{
	(void)eng; (void)uid; (void)keep; (void)nkeep; (void)cb; (void)arg;
	return -EOPNOTSUPP;
}

int engine_family_release(struct engine *eng, uint64_t uid, const uint32_t *keep,
			  size_t nkeep)
{
	(void)eng; (void)uid; (void)keep; (void)nkeep;
	return -EOPNOTSUPP;
}

int engine_volume_family(struct engine *eng, const char *name, uint64_t *uid)
{
	(void)eng; (void)name; (void)uid;
	return -EOPNOTSUPP;
}
