/* engine/segtab.h — a table of entries sorted by segment id (family uid, segment
 * number): the held copies (held.c) and the held fragments (heldfrag.c). Internal to
 * the engine.
 *
 * The entries are the caller's, each allocated on its own (I/O completions keep
 * pointers to them); the table holds the pointers and finds one by binary search,
 * learning an entry's id through the caller's key function. Engine thread only.
 */
#ifndef QUILL_ENGINE_SEGTAB_H
#define QUILL_ENGINE_SEGTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct segtab {
	void **v; /* sorted by (uid, sno) */
	size_t n, cap;
};

/* An entry's segment id. */
typedef void (*segtab_key_fn)(const void *e, uint64_t *uid, uint32_t *sno);

/* The index of (uid, sno), or where it would go (*found false). */
size_t segtab_pos(const struct segtab *t, segtab_key_fn key, uint64_t uid, uint32_t sno,
		  bool *found);
/* The entry of (uid, sno), or NULL. t may be NULL. */
void *segtab_find(const struct segtab *t, segtab_key_fn key, uint64_t uid, uint32_t sno);
/* Adds e, whose id must not be there: 0 or -ENOMEM. */
int segtab_insert(struct segtab *t, segtab_key_fn key, void *e);
/* Takes e out (not freed); not there: nothing. */
void segtab_remove(struct segtab *t, segtab_key_fn key, const void *e);
/* Frees the array (not the entries). */
void segtab_release(struct segtab *t);

#endif
