/* engine/held.c — segments held for other nodes (engine.h, "segments held for other
 * nodes"; docs/engine.md, "Held segments").
 *
 * Plan (this first commit declares the API; the calls below are stubs):
 *  - a held table in memory, sorted by (uid, sno): slot, epoch, state, length; and the
 *    families' epochs (the fence);
 *  - a held slot is a segment-layer slot in state OPEN/SEALED with a `held` mark and
 *    volume_id 0: the cleaner, defrag, prezero and the checkpoint's segment table
 *    leave it alone; writes and reads go through the segment layer's I/O;
 *  - "H" (uid, sno) and "E" (uid) records in RocksDB, committed on the metadata
 *    thread (engine/metacommit.c), never on the loop thread;
 *  - start-up loads H/E before the slots are classified; an open copy's length is
 *    found by walking its log with logcheck's decoder (the owner's uuid and
 *    generation, from its header), a sealed one's is the record's.
 */
#include <errno.h>

#include "engine_internal.h"

uint32_t engine_segment_blocks(const struct engine *eng)
{
	return eng->blocks_per_seg;
}

int engine_held_open_async(struct engine *eng, uint64_t uid, uint32_t sno, uint64_t epoch,
			   engine_cb cb, void *arg)
{
	(void)eng, (void)uid, (void)sno, (void)epoch, (void)cb, (void)arg;
	return -EOPNOTSUPP;
}

int engine_held_write(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t block,
		      const struct iovec *iov, int iovcnt, uint32_t nblocks, engine_cb cb,
		      void *arg)
{
	(void)eng, (void)uid, (void)sno, (void)block, (void)iov, (void)iovcnt;
	(void)nblocks, (void)cb, (void)arg;
	return -EOPNOTSUPP;
}

int engine_held_read(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t block,
		     const struct iovec *iov, int iovcnt, uint32_t nblocks, engine_cb cb,
		     void *arg)
{
	(void)eng, (void)uid, (void)sno, (void)block, (void)iov, (void)iovcnt;
	(void)nblocks, (void)cb, (void)arg;
	return -EOPNOTSUPP;
}

int engine_held_seal_async(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t length,
			   engine_cb cb, void *arg)
{
	(void)eng, (void)uid, (void)sno, (void)length, (void)cb, (void)arg;
	return -EOPNOTSUPP;
}

int engine_held_delete_async(struct engine *eng, uint64_t uid, uint32_t sno, engine_cb cb,
			     void *arg)
{
	(void)eng, (void)uid, (void)sno, (void)cb, (void)arg;
	return -EOPNOTSUPP;
}

uint64_t engine_held_epoch(const struct engine *eng, uint64_t uid)
{
	(void)eng, (void)uid;
	return 0;
}

int engine_held_epoch_raise_async(struct engine *eng, uint64_t uid, uint64_t epoch,
				  engine_cb cb, void *arg)
{
	(void)eng, (void)uid, (void)epoch, (void)cb, (void)arg;
	return -EOPNOTSUPP;
}

int engine_held_stat(const struct engine *eng, uint64_t uid, uint32_t sno,
		     struct engine_held_info *out)
{
	(void)eng, (void)uid, (void)sno, (void)out;
	return -ENOENT;
}

int engine_held_list(const struct engine *eng,
		     int (*fn)(void *arg, const struct engine_held_info *h), void *arg)
{
	(void)eng, (void)fn, (void)arg;
	return 0;
}
