/* block/block.c — byte-granular I/O on an engine volume (block.h).
 *
 * A request (struct blk_io) runs in stages. Each engine call of a stage counts in
 * io->pending; when the count drops to zero the stage's continuation io->next runs. A
 * stage holds one count itself while it issues its calls, so a synchronous failure
 * cannot finish the request early.
 *
 * Range locks: a mutating request is held on its blocks [first, first + nblk) while
 * it runs. The device keeps the held requests in a list and the waiting ones in a
 * FIFO; a waiter starts once it overlaps neither a held request nor an earlier
 * waiter, so overlapping writes run in arrival order.
 */
#include "block/block_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

/* block.h's names for the engine's sizes: the front ends advertise and bound with them. */
_Static_assert(BLK_BLOCK_SIZE == ENGINE_BLOCK_SIZE, "BLK_BLOCK_SIZE");
_Static_assert(BLK_SECTOR_MAX == ENGINE_SECTOR_SIZE_4K &&
	       ENGINE_SECTOR_SIZE_DEFAULT <= BLK_SECTOR_MAX, "BLK_SECTOR_MAX");
_Static_assert(BLK_HOLDER_MAX == ENGINE_HOLDER_MAX, "BLK_HOLDER_MAX");

#define BS ENGINE_BLOCK_SIZE
#define SPLIT_BLOCKS (BLK_SPLIT_BYTES / BS)

/* Requests kept per handle for reuse: a request's struct is ~250 bytes, and a malloc and
 * free per guest I/O showed as ~10% of quilld's CPU under vhost (bench_vhost.sh). A
 * queue depth's worth is enough. */
#define BLK_SPARE_MAX 128u

/* ---- specs, open, close ---- */

int blk_spec_parse(const char *spec, char vol[VOLSPEC_NAME_MAX + 1],
		   char snap[VOLSPEC_NAME_MAX + 1])
{
	return volspec_parse(spec, vol, snap);
}

int blk_open(struct engine *eng, struct blk_guard *guard, const char *spec,
	     struct blk_dev **out)
{
	struct blk_dev *dev = calloc(1, sizeof(*dev));
	int r;

	if (!dev)
		return -ENOMEM;
	r = guard ? blk_guard_admit(guard, spec, dev) : 0;
	if (r == 0)
		r = engine_volume_open(eng, spec, &dev->vol);
	if (r < 0) {
		free(dev);
		return r;
	}
	dev->eng = eng;
	dev->readonly = engine_volume_readonly(dev->vol);
	dev->sector_size = engine_volume_sector_size(dev->vol);
	if (guard)
		blk_guard_attach(guard, dev);
	*out = dev;
	return 0;
}

void blk_close(struct blk_dev *dev)
{
	if (!dev)
		return;
	if (dev->guard)
		blk_guard_detach(dev);
	engine_volume_close(dev->vol); /* NULL: a fenced handle closed it already */
	while (dev->spare) {
		struct blk_io *io = dev->spare;

		dev->spare = io->next_spare;
		free(io);
	}
	free(dev);
}

struct snap_size {
	const char *name;
	uint64_t size;
	uint32_t sector_size;
	bool found;
};

static int snap_size_one(const struct engine_snap_info *info, void *arg)
{
	struct snap_size *ss = arg;

	if (strcmp(info->name, ss->name) != 0)
		return 0;
	ss->size = info->size;
	ss->sector_size = info->sector_size;
	ss->found = true;
	return 1;
}

int blk_probe(struct engine *eng, const char *spec, struct blk_probe_info *out)
{
	char vol[ENGINE_VOLUME_NAME_MAX + 1], snap[ENGINE_VOLUME_NAME_MAX + 1];
	struct snap_size ss = { .name = snap };
	struct engine_volume_info vi;
	int r;

	if (blk_spec_parse(spec, vol, snap) < 0)
		return -ENOENT;
	out->readonly = snap[0] != '\0';
	if (!out->readonly) {
		r = engine_volume_info(eng, vol, &vi);
		if (r == 0) {
			out->size = vi.size;
			out->sector_size = vi.sector_size;
		}
		return r;
	}
	r = engine_snap_list(eng, vol, snap_size_one, &ss);
	if (r < 0)
		return r;
	if (!ss.found)
		return -ENOENT;
	out->size = ss.size;
	out->sector_size = ss.sector_size;
	return 0;
}

struct list_ctx {
	struct engine *eng;
	blk_list_fn fn;
	void *arg;
	const char *vol;
};

static int list_snapshot(const struct engine_snap_info *info, void *arg)
{
	struct list_ctx *lc = arg;
	char spec[VOLSPEC_MAX + 1];

	return lc->fn(volspec_format(spec, sizeof(spec), lc->vol, info->name), lc->arg);
}

static int list_volume(const struct engine_volume_info *info, void *arg)
{
	struct list_ctx *lc = arg;
	int r = lc->fn(info->name, lc->arg);

	if (r != 0 || !info->snapshots)
		return r;
	lc->vol = info->name;
	return engine_snap_list(lc->eng, info->name, list_snapshot, lc);
}

int blk_list(struct engine *eng, blk_list_fn fn, void *arg)
{
	struct list_ctx lc = { .eng = eng, .fn = fn, .arg = arg };

	return engine_volume_list(eng, list_volume, &lc);
}

void blk_set_holder(struct blk_dev *dev, const char *holder)
{
	if (dev->vol)
		engine_volume_set_holder(dev->vol, holder);
}

void blk_busy_reason(struct engine *eng, const char *spec, char *buf, size_t len)
{
	struct engine_volume_info info;

	if (engine_volume_info(eng, spec, &info) == 0 && info.holder[0])
		snprintf(buf, len, "volume '%s' is attached over %s", spec, info.holder);
	else
		snprintf(buf, len, "volume '%s' is attached", spec);
}

bool blk_open_refusal(struct engine *eng, struct blk_guard *guard, const char *spec, int err,
		      char *buf, size_t len)
{
	if (err == -EBUSY)
		blk_busy_reason(eng, spec, buf, len);
	else if (err == -EREMOTE || err == -EAGAIN)
		blk_guard_refusal(guard, spec, buf, len);
	else
		return false;
	return true;
}

uint64_t blk_size(const struct blk_dev *dev)
{
	return dev->vol ? engine_volume_size(dev->vol) : 0;
}

uint32_t blk_sector_size(const struct blk_dev *dev)
{
	return dev->sector_size;
}

bool blk_readonly(const struct blk_dev *dev)
{
	return dev->readonly;
}

enum blk_state blk_state(const struct blk_dev *dev, uint64_t off)
{
	enum engine_block_state st = dev->vol ? engine_block_state(dev->vol, off / BS)
					      : ENGINE_BLOCK_HOLE;

	switch (st) { /* every state named, no default: a new one fails -Wswitch */
	case ENGINE_BLOCK_DATA:
		return BLK_STATE_DATA;
	case ENGINE_BLOCK_ZERO:
		return BLK_STATE_ZERO;
	case ENGINE_BLOCK_HOLE:
		break;
	}
	return BLK_STATE_HOLE;
}

bool blk_mapped(const struct blk_dev *dev, uint64_t off)
{
	return blk_state(dev, off) != BLK_STATE_HOLE;
}

int blk_poll(struct engine *eng, int timeout_ms)
{
	return engine_poll(eng, timeout_ms);
}

unsigned blk_locked(const struct blk_dev *dev)
{
	return dev->nlocked;
}

/* ---- range locks ---- */

static bool overlaps(const struct blk_io *a, const struct blk_io *b)
{
	return a->first < b->first + b->nblk && b->first < a->first + a->nblk;
}

/* Does io overlap a request of the list from head up to (not including) stop? */
static bool overlaps_list(const struct blk_io *io, const struct blk_io *head,
			  const struct blk_io *stop)
{
	for (const struct blk_io *x = head; x && x != stop; x = x->lk_next)
		if (overlaps(io, x))
			return true;
	return false;
}

static void lock_hold(struct blk_dev *dev, struct blk_io *io)
{
	io->locked = true;
	io->lk_prev = NULL;
	io->lk_next = dev->held;
	if (dev->held)
		dev->held->lk_prev = io;
	dev->held = io;
}

/* Runs go(io) once its blocks overlap no running or earlier waiting mutation. */
static void lock_acquire(struct blk_io *io, void (*go)(struct blk_io *io))
{
	struct blk_dev *dev = io->dev;

	dev->nlocked++;
	io->lk_go = go;
	if (!overlaps_list(io, dev->held, NULL) && !overlaps_list(io, dev->wait_head, NULL)) {
		lock_hold(dev, io);
		go(io);
		return;
	}
	io->lk_next = NULL;
	if (dev->wait_tail)
		dev->wait_tail->lk_next = io;
	else
		dev->wait_head = io;
	dev->wait_tail = io;
}

static void lock_release(struct blk_io *io)
{
	struct blk_dev *dev = io->dev;
	struct blk_io *grant = NULL, *prev = NULL, *w, *next;

	if (!io->locked)
		return;
	io->locked = false;
	dev->nlocked--;
	if (io->lk_prev)
		io->lk_prev->lk_next = io->lk_next;
	else
		dev->held = io->lk_next;
	if (io->lk_next)
		io->lk_next->lk_prev = io->lk_prev;
	/* grant in FIFO order; run them after the scan (go may release again) */
	for (w = dev->wait_head; w; w = next) {
		next = w->lk_next;
		if (overlaps_list(w, dev->held, NULL) || overlaps_list(w, dev->wait_head, w)) {
			prev = w;
			continue;
		}
		if (prev)
			prev->lk_next = next;
		else
			dev->wait_head = next;
		if (dev->wait_tail == w)
			dev->wait_tail = prev;
		lock_hold(dev, w);
		w->lk_granted = grant;
		grant = w;
	}
	while (grant) {
		w = grant;
		grant = w->lk_granted;
		w->lk_go(w);
	}
}

void blk_dev_fail_waiters(struct blk_dev *dev, int err)
{
	struct blk_io *w = dev->wait_head;

	dev->wait_head = dev->wait_tail = NULL;
	while (w) {
		struct blk_io *next = w->lk_next;

		dev->nlocked--;
		w->err = err;
		blk_io_complete(w);
		w = next;
	}
}

/* ---- requests ---- */

static int check_range(const struct blk_dev *dev, uint64_t off, uint64_t len, bool write)
{
	uint64_t size;

	if (dev->fenced)
		return dev->fenced;
	size = blk_size(dev);
	if (len == 0)
		return -EINVAL;
	if (write && blk_readonly(dev))
		return -EPERM;
	if (off > size || len > size - off)
		return -ERANGE;
	return 0;
}

static struct blk_io *io_new(struct blk_dev *dev, uint64_t off, uint64_t len, unsigned flags,
			     blk_cb cb, void *arg)
{
	struct blk_io *io = dev->spare;

	if (io) {
		dev->spare = io->next_spare;
		dev->nspare--;
		memset(io, 0, sizeof(*io));
	} else {
		io = calloc(1, sizeof(*io));
		if (!io)
			return NULL;
	}
	io->dev = dev;
	io->off = off;
	io->len = len;
	io->first = off / BS;
	io->nblk = (off + len + BS - 1) / BS - io->first;
	io->flags = flags;
	io->cb = cb;
	io->arg = arg;
	io->start_us = engine_client_io_start(dev->eng);
	if (dev->guard)
		dev->inflight++;
	return io;
}

static int io_bounce(struct blk_io *io, uint64_t nblk)
{
	if (posix_memalign((void **)&io->bounce, BS, (size_t)nblk * BS) != 0) {
		io->bounce = NULL;
		return -ENOMEM;
	}
	return 0;
}

static void io_free(struct blk_io *io)
{
	struct blk_dev *dev = io->dev;

	free(io->bounce);
	if (dev->nspare >= BLK_SPARE_MAX) {
		free(io);
	} else {
		io->next_spare = dev->spare;
		dev->spare = io;
		dev->nspare++;
	}
	if (dev->guard)
		blk_guard_io_gone(dev);
}

void blk_io_complete(struct blk_io *io)
{
	blk_cb cb = io->cb;
	void *arg = io->arg;
	int err = io->err;

	/* what the client waited, the guard's hold included: the catch-up yields to it */
	engine_client_io_done(io->dev->eng, io->start_us);
	io_free(io);
	cb(arg, err);
}

/* The request is over: its range is free for the next; the caller learns, unless the
 * guard holds the answer back (a single node has no guard: nothing more per request). */
static void io_finish(struct blk_io *io)
{
	lock_release(io);
	if (io->dev->guard && blk_guard_hold(io))
		return;
	blk_io_complete(io);
}

static void fail(struct blk_io *io, int err)
{
	if (!io->err)
		io->err = err;
}

static void part_done(struct blk_io *io, int res)
{
	if (res < 0)
		fail(io, res);
	if (--io->pending == 0)
		io->next(io);
}

static void engine_done(void *arg, int res)
{
	part_done(arg, res);
}

/* One engine call of the current stage: a synchronous failure ends its part. */
static void issued(struct blk_io *io, int res)
{
	if (res < 0) {
		fail(io, res);
		io->pending--;
	}
}

static unsigned engine_flags(const struct blk_io *io)
{
	return io->flags & BLK_FUA ? ENGINE_FUA : 0;
}

/* Reads or writes whole blocks, in engine calls of at most SPLIT_BLOCKS. */
static void io_blocks(struct blk_io *io, bool write, uint64_t lba, uint64_t nblk, uint8_t *buf)
{
	struct engine_volume *vol = io->dev->vol;

	if (io->dev->fenced)
		fail(io, io->dev->fenced); /* the node lost the volume: nothing more is written */
	while (nblk && !io->err) {
		uint32_t n = nblk < SPLIT_BLOCKS ? (uint32_t)nblk : SPLIT_BLOCKS;

		io->pending++;
		issued(io, write ? engine_write(vol, lba, n, buf, engine_flags(io), engine_done, io)
				 : engine_read(vol, lba, n, buf, engine_done, io));
		lba += n;
		nblk -= n;
		buf += (size_t)n * BS;
	}
}

/* Reads block lba into dst (zeros without I/O if it is unmapped). */
static void edge_read(struct blk_io *io, uint64_t lba, uint8_t *dst)
{
	if (io->dev->fenced) {
		fail(io, io->dev->fenced);
		return;
	}
	if (!engine_block_mapped(io->dev->vol, lba)) {
		memset(dst, 0, BS);
		return;
	}
	io->pending++;
	issued(io, engine_read(io->dev->vol, lba, 1, dst, engine_done, io));
}

static bool aligned(uint64_t off, uint64_t len, const void *buf)
{
	return off % BS == 0 && len % BS == 0 && (uintptr_t)buf % BS == 0;
}

/* ---- read ---- */

static void read_done(struct blk_io *io)
{
	if (!io->err && io->bounce)
		memcpy(io->user, io->bounce + io->off % BS, io->len);
	io_finish(io);
}

int blk_read(struct blk_dev *dev, uint64_t off, uint32_t len, void *buf, blk_cb cb, void *arg)
{
	struct blk_io *io;
	int r = len > BLK_IO_MAX ? -EINVAL : check_range(dev, off, len, false);

	if (r < 0)
		return r;
	io = io_new(dev, off, len, 0, cb, arg);
	if (!io)
		return -ENOMEM;
	io->user = buf;
	if (!aligned(off, len, buf) && io_bounce(io, io->nblk) < 0) {
		io_free(io);
		return -ENOMEM;
	}
	io->next = read_done;
	io->pending = 1;
	io_blocks(io, false, io->first, io->nblk, io->bounce ? io->bounce : io->user);
	part_done(io, 0);
	return 0;
}

/* ---- write ---- */

/* The edge blocks are in the bounce buffer: lay the payload over them, write. */
static void write_patched(struct blk_io *io)
{
	if (io->err) {
		io_finish(io);
		return;
	}
	memcpy(io->bounce + io->off % BS, io->user, io->len);
	io->next = io_finish;
	io->pending = 1;
	io_blocks(io, true, io->first, io->nblk, io->bounce);
	part_done(io, 0);
}

static void write_start(struct blk_io *io)
{
	uint32_t head = (uint32_t)(io->off % BS);
	uint32_t tail = (uint32_t)((io->off + io->len) % BS);

	io->pending = 1;
	if (!io->bounce) {
		io->next = io_finish;
		io_blocks(io, true, io->first, io->nblk, io->user);
		part_done(io, 0);
		return;
	}
	io->next = write_patched;
	if (head)
		edge_read(io, io->first, io->bounce);
	if (tail && (io->nblk > 1 || !head))
		edge_read(io, io->first + io->nblk - 1, io->bounce + (io->nblk - 1) * BS);
	part_done(io, 0);
}

int blk_write(struct blk_dev *dev, uint64_t off, uint32_t len, const void *buf,
	      unsigned flags, blk_cb cb, void *arg)
{
	struct blk_io *io;
	int r = len > BLK_IO_MAX ? -EINVAL : check_range(dev, off, len, true);

	if (r < 0)
		return r;
	io = io_new(dev, off, len, flags, cb, arg);
	if (!io)
		return -ENOMEM;
	io->user = (uint8_t *)buf; /* only read from */
	if (!aligned(off, len, buf) && io_bounce(io, io->nblk) < 0) {
		io_free(io);
		return -ENOMEM;
	}
	lock_acquire(io, write_start);
	return 0;
}

/* ---- zero ---- */

/* The edge block was read: zero its bytes, write it back. */
static void zero_edge_read(void *arg, int res)
{
	struct blk_edge *e = arg;
	struct blk_io *io = e->io;

	if (res == 0 && io->dev->fenced)
		res = io->dev->fenced;
	if (res < 0) {
		part_done(io, res);
		return;
	}
	memset(e->blk + e->zoff, 0, e->zlen);
	/* the read's count carries over to the write */
	res = engine_write(io->dev->vol, e->lba, 1, e->blk, engine_flags(io), engine_done, io);
	if (res < 0)
		part_done(io, res);
}

static void zero_edge(struct blk_io *io, unsigned i, uint64_t lba, uint32_t zoff, uint32_t zlen)
{
	struct blk_edge *e = &io->edges[i];
	enum engine_block_state st = engine_block_state(io->dev->vol, lba);

	if (st == ENGINE_BLOCK_HOLE && (io->flags & BLK_NO_HOLE)) {
		/* reads as zeros whole: allocating it changes no byte */
		io->pending++;
		issued(io, engine_zero(io->dev->vol, lba, 1, engine_flags(io), engine_done, io));
		return;
	}
	if (st != ENGINE_BLOCK_DATA)
		return; /* reads as zeros already */
	*e = (struct blk_edge){ .io = io, .lba = lba, .blk = io->bounce + (size_t)i * BS,
				.zoff = zoff, .zlen = zlen };
	io->pending++;
	issued(io, engine_read(io->dev->vol, lba, 1, e->blk, zero_edge_read, e));
}

static void zero_start(struct blk_io *io)
{
	uint64_t end = io->off + io->len;
	uint64_t ib = (io->off + BS - 1) / BS, ie = end / BS;
	uint32_t head = (uint32_t)(io->off % BS), tail = (uint32_t)(end % BS);

	io->next = io_finish;
	io->pending = 1;
	if (io->dev->fenced) {
		fail(io, io->dev->fenced);
		part_done(io, 0);
		return;
	}
	if (ie > ib) {
		/* the whole blocks: allocated zeros, or holes */
		int (*zero)(struct engine_volume *, uint64_t, uint64_t, unsigned, engine_cb,
			    void *) = io->flags & BLK_NO_HOLE ? engine_zero : engine_trim;

		io->pending++;
		issued(io, zero(io->dev->vol, ib, ie - ib, engine_flags(io), engine_done, io));
	}
	if (head)
		zero_edge(io, 0, io->first, head,
			  (uint32_t)(io->len < BS - head ? io->len : BS - head));
	if (tail && (io->nblk > 1 || !head))
		zero_edge(io, 1, io->first + io->nblk - 1, 0, tail);
	part_done(io, 0);
}

int blk_zero(struct blk_dev *dev, uint64_t off, uint64_t len, unsigned flags, blk_cb cb,
	     void *arg)
{
	struct blk_io *io;
	int r = check_range(dev, off, len, true);

	if (r < 0)
		return r;
	io = io_new(dev, off, len, flags, cb, arg);
	if (!io)
		return -ENOMEM;
	if ((off % BS || len % BS) && io_bounce(io, 2) < 0) {
		io_free(io);
		return -ENOMEM;
	}
	lock_acquire(io, zero_start);
	return 0;
}

int blk_flush(struct blk_dev *dev, blk_cb cb, void *arg)
{
	struct blk_io *io;
	int r;

	if (dev->fenced)
		return dev->fenced;
	io = io_new(dev, 0, 0, 0, cb, arg);
	if (!io)
		return -ENOMEM;
	io->next = io_finish; /* through the guard like every other request */
	io->pending = 1;
	r = engine_flush(dev->eng, engine_done, io);
	if (r < 0)
		io_free(io);
	return r;
}
