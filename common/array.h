/* common/array.h — growing an array of structs by doubling.
 *
 * Make room for one more element: if n has reached *cap, *v is reallocated to twice
 * *cap elements (first when *cap is 0) of size bytes. 0, or -ENOMEM with *v and *cap
 * unchanged.
 */
#ifndef QUILL_COMMON_ARRAY_H
#define QUILL_COMMON_ARRAY_H

#include <stddef.h>

int array_grow(void **v, size_t *cap, size_t n, size_t size, size_t first);

/* ARRAY_GROW(ptr, cap, n, first): the same, typed by ptr. */
#define ARRAY_GROW(ptr, cap, n, first) \
	array_grow((void **)&(ptr), &(cap), (n), sizeof(*(ptr)), (first))

#endif
