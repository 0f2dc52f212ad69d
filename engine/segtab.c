/* engine/segtab.c — the sorted table of segtab.h. */
#include "engine/segtab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/array.h"

static int cmp(const void *e, segtab_key_fn key, uint64_t uid, uint32_t sno)
{
	uint64_t eu;
	uint32_t es;

	key(e, &eu, &es);
	if (eu != uid)
		return eu < uid ? -1 : 1;
	return es < sno ? -1 : es > sno;
}

size_t segtab_pos(const struct segtab *t, segtab_key_fn key, uint64_t uid, uint32_t sno,
		  bool *found)
{
	size_t lo = 0, hi = t->n;

	*found = false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp(t->v[mid], key, uid, sno);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void *segtab_find(const struct segtab *t, segtab_key_fn key, uint64_t uid, uint32_t sno)
{
	bool found;
	size_t i;

	if (!t)
		return NULL;
	i = segtab_pos(t, key, uid, sno, &found);
	return found ? t->v[i] : NULL;
}

int segtab_insert(struct segtab *t, segtab_key_fn key, void *e)
{
	uint64_t uid;
	uint32_t sno;
	bool found;
	size_t i;

	if (ARRAY_GROW(t->v, t->cap, t->n, 16) < 0)
		return -ENOMEM;
	key(e, &uid, &sno);
	i = segtab_pos(t, key, uid, sno, &found);
	memmove(&t->v[i + 1], &t->v[i], (t->n - i) * sizeof(*t->v));
	t->v[i] = e;
	t->n++;
	return 0;
}

void segtab_remove(struct segtab *t, segtab_key_fn key, const void *e)
{
	uint64_t uid;
	uint32_t sno;
	bool found;
	size_t i;

	key(e, &uid, &sno);
	i = segtab_pos(t, key, uid, sno, &found);
	if (!found || t->v[i] != e)
		return;
	memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(*t->v));
	t->n--;
}

void segtab_release(struct segtab *t)
{
	free(t->v);
	*t = (struct segtab){ 0 };
}
