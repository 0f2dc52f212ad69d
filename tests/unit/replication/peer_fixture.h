/* tests/unit/replication/peer_fixture.h — what the replication tests share. */
#ifndef QUILL_TESTS_PEER_FIXTURE_H
#define QUILL_TESTS_PEER_FIXTURE_H

#include <criterion/criterion.h>
#include <string.h>

#include "replication/peer_session.h"

/* A secret of 32 bytes of fill (two fills: two clusters). */
static inline struct peer_secret *peer_fixture_secret(uint8_t fill)
{
	uint8_t key[PEER_SECRET_BYTES];
	struct peer_secret *sec;

	memset(key, fill, sizeof(key));
	cr_assert_eq(peer_secret_from_bytes(key, &sec), 0);
	return sec;
}

#endif
