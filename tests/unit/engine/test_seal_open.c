/* tests/unit/engine/test_seal_open.c — engine_family_seal_open (engine/io.c): an owner
 * whose holder failed ends the family's open segment at its write pointer, and the
 * next write goes to a fresh segment (docs/replication.md, "Seal and reopen"). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "engine_fixture.h"

TestSuite(seal_open, .init = setup, .fini = teardown);

static const struct slot *open_slot_of(const struct engine_volume *vol)
{
	cr_assert_geq(vol->open_slot, 0, "the volume has no open segment");
	return &eng->slots[vol->open_slot];
}

Test(seal_open, the_next_write_goes_to_a_fresh_segment)
{
	struct engine_volume *vol;
	const struct slot *first;
	int64_t first_slot;
	uint32_t sno, used;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 2, 1);
	first_slot = vol->open_slot;
	first = open_slot_of(vol);
	sno = first->sno;
	used = first->used;
	cr_assert_lt(used, SEG_BLOCKS, "the segment is full already: the case proves nothing");

	cr_assert_eq(engine_family_seal_open(eng, vol->rec.uid, sno), 0);
	cr_assert_eq(first->state, SLOT_SEALED);
	cr_assert_eq(vol->open_slot, -1);
	cr_assert_eq(engine_family_seal_open(eng, vol->rec.uid, sno), -ENOENT,
		     "a sealed segment is not sealed again");

	write_tagged(vol, 2, 1, 2);
	cr_assert_neq(vol->open_slot, first_slot);
	cr_assert_eq(open_slot_of(vol)->sno, sno + 1, "the family's next number");
	cr_assert_eq(first->used, used, "a write after the seal went to the sealed segment");
	expect_tagged(vol, 0, 2, 1);
	expect_tagged(vol, 2, 1, 2);
	engine_volume_close(vol);
}

Test(seal_open, a_batch_not_yet_written_goes_out_in_the_sealed_segment)
{
	struct engine_volume *vol;
	uint8_t *buf = malloc(BLK);
	struct done d = { 0 };
	const struct slot *first;
	uint32_t used;

	cr_assert_not_null(buf);
	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 1, 1);
	fill(buf, 5, 1, 7);
	/* not waited for: its batch is forming in the open segment when it is sealed */
	cr_assert_eq(engine_write(vol, 5, 1, buf, 0, on_done, &d), 0);
	first = open_slot_of(vol);
	used = first->used;
	cr_assert_eq(engine_family_seal_open(eng, vol->rec.uid, first->sno), 0);
	cr_assert_eq(finish(0, &d), 0);
	cr_assert_eq(first->used, used, "the sealed length moved after the seal");
	write_tagged(vol, 6, 1, 8);
	expect_tagged(vol, 5, 1, 7);
	engine_volume_close(vol);
	free(buf);

	/* replay reads a log whose segment ended before it was full */
	reopen_engine();
	vol = open_vol("v");
	expect_tagged(vol, 0, 1, 1);
	expect_tagged(vol, 5, 1, 7);
	expect_tagged(vol, 6, 1, 8);
	engine_volume_close(vol);
}

Test(seal_open, another_family_or_segment_is_not_found)
{
	struct engine_volume *vol;

	open_engine();
	vol = create_and_open("v", VOL_SIZE);
	write_tagged(vol, 0, 1, 1);
	cr_assert_eq(engine_family_seal_open(eng, vol->rec.uid + 1, open_slot_of(vol)->sno),
		     -ENOENT);
	cr_assert_eq(engine_family_seal_open(eng, vol->rec.uid, open_slot_of(vol)->sno + 1),
		     -ENOENT);
	cr_assert_eq(open_slot_of(vol)->state, SLOT_OPEN);
	engine_volume_close(vol);
}
