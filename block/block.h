/* block/block.h — the block layer between the front ends (nbd/, vhost/) and the
 * engine: byte-granular I/O on a volume or a "VOL@SNAP" snapshot (read-only).
 *
 * The engine works in whole BLK_BLOCK_SIZE blocks; this layer serves any byte
 * offset and length. Aligned requests go straight to the engine (split into pieces of
 * at most BLK_SPLIT_BYTES); a partial block at either end of a write or zeroing is
 * read, patched and written back (read-modify-write). Every mutating request holds a
 * lock on the blocks it covers while it runs (FIFO among overlapping requests), so
 * overlapping unaligned writes from several connections or queues never lose each
 * other's bytes. Reads take no lock: a read sees each block before or after a write.
 *
 * Async contract (blk_read/write/zero/trim/flush): returns 0 → cb runs exactly once
 * with 0 or -errno (it may run before the call returns, when nothing needs I/O or an
 * engine call fails at once); returns <0 → cb never runs. Buffers must stay valid
 * until cb. Errors: -ERANGE beyond the end, -EINVAL zero length or too long
 * (BLK_IO_MAX), -EPERM a write to a snapshot, -ENOMEM; the engine's errors are passed
 * on through cb.
 *
 * The front ends (nbd/, vhost/) see the engine through this header only: quilld opens
 * the engine and hands it to them as an opaque struct engine, which they pass back
 * here (blk_open, blk_probe, blk_list, blk_poll). Sizes they advertise or bound are
 * the block layer's constants below (block.c asserts they are the engine's); a name's
 * and a spec's, common/volspec.h's, which the engine's are too.
 *
 * Threading: the engine's thread only (completions run from blk_poll()).
 */
#ifndef QUILL_BLOCK_BLOCK_H
#define QUILL_BLOCK_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/volspec.h"

#define BLK_IO_MAX       (64u << 20)  /* bytes of one read or write */
#define BLK_SPLIT_BYTES  (1u << 20)   /* largest engine call a request is split into */

/* The engine's, under the block layer's names (block.c asserts each equal). A name's
 * and a spec's bounds are common/volspec.h's (VOLSPEC_NAME_MAX, VOLSPEC_MAX). */
#define BLK_BLOCK_SIZE   4096u  /* the unit of mapping and block status: the physical block */
#define BLK_SECTOR_MAX   4096u  /* the largest logical sector of a volume; divides a block */
#define BLK_HOLDER_MAX   191u   /* blk_set_holder's phrase */

struct engine; /* the node's engine (quilld's): the front ends only pass it on */
struct blk_dev;

typedef void (*blk_cb)(void *arg, int res);

enum blk_io_flags {
	BLK_FUA = 1u << 0,     /* durable when cb runs */
	BLK_NO_HOLE = 1u << 1, /* blk_zero: the zeros must be allocated, not a hole */
};

/* Volume specs: "VOL" or "VOL@SNAP", read by the one parser (common/volspec.h) that
 * the engine and the CLI use too. Fills vol and snap (snap "" for a volume). -EINVAL
 * empty names, a second '@', or a name longer than VOLSPEC_NAME_MAX. */
int blk_spec_parse(const char *spec, char vol[VOLSPEC_NAME_MAX + 1],
		   char snap[VOLSPEC_NAME_MAX + 1]);

/* What a spec is, read from its record without opening it (so whoever holds it is
 * not disturbed). */
struct blk_probe_info {
	uint64_t size;        /* bytes, now */
	uint32_t sector_size; /* the volume's logical sector: 512 or 4096 */
	bool readonly;        /* a snapshot */
};
/* -ENOENT no such volume or snapshot (or a spec that cannot name one). */
int blk_probe(struct engine *eng, const char *spec, struct blk_probe_info *out);

/* Calls fn with the spec of every exportable volume and snapshot: each volume in name
 * order, then its snapshots ("VOL@SNAP"). Stops and returns fn's value if non-zero;
 * 0 when all were listed; -errno if the catalog cannot be read. */
typedef int (*blk_list_fn)(const char *spec, void *arg);
int blk_list(struct engine *eng, blk_list_fn fn, void *arg);
struct blk_guard;
/* Opens spec for I/O (engine_volume_open: -ENOENT, -EBUSY, ...). A volume has one
 * writer: -EBUSY while another handle is out (blk_busy_reason says whose). A snapshot
 * opens any number of times: read-only opens never conflict. guard: the node's (see
 * "the guard" below), NULL on a single node; with one, a volume this node does not
 * own is refused with -EREMOTE (blk_guard_refusal says why). */
int blk_open(struct engine *eng, struct blk_guard *guard, const char *spec,
	     struct blk_dev **out);
/* Who holds the handle, for others' refusals and `quill volume info`: a phrase that
 * reads after "attached over", e.g. "NBD by 127.0.0.1:53122". Copied; the front end
 * updates it as its clients come and go. Ignored for snapshots. */
void blk_set_holder(struct blk_dev *dev, const char *holder);
/* The sentence for an open of spec refused with -EBUSY: "volume 'v' is attached over
 * NBD by 127.0.0.1:53122" (without a holder named: "volume 'v' is attached"). */
void blk_busy_reason(struct engine *eng, const char *spec, char *buf, size_t len);
/* Waits for I/O in flight and closes the volume. NULL ok. */
void blk_close(struct blk_dev *dev);
uint64_t blk_size(const struct blk_dev *dev);     /* bytes, now */
/* The volume's logical sector size (512 or 4096): what a front end advertises (NBD's
 * minimum block size, virtio-blk's blk_size). Requests are still served at any byte
 * offset and length, whatever it is. */
uint32_t blk_sector_size(const struct blk_dev *dev);
bool blk_readonly(const struct blk_dev *dev);
/* Does the engine block holding byte off hold data or allocated zeros (is it not a
 * hole)? */
bool blk_mapped(const struct blk_dev *dev, uint64_t off);
/* Block status of the engine block holding byte off. */
enum blk_state {
	BLK_STATE_HOLE,
	BLK_STATE_DATA,
	BLK_STATE_ZERO, /* allocated zeros: blk_zero with BLK_NO_HOLE */
};
enum blk_state blk_state(const struct blk_dev *dev, uint64_t off);
/* Mutating requests running or waiting for their range (tests, stats). */
unsigned blk_locked(const struct blk_dev *dev);

int blk_read(struct blk_dev *dev, uint64_t off, uint32_t len, void *buf, blk_cb cb,
	     void *arg);
int blk_write(struct blk_dev *dev, uint64_t off, uint32_t len, const void *buf,
	      unsigned flags, blk_cb cb, void *arg);
/* Afterwards [off, off+len) reads as zeros. Without BLK_NO_HOLE (a trim, or a
 * write-zeroes that may punch holes) the whole blocks inside it are freed and block
 * status reports them holes. With BLK_NO_HOLE (a write-zeroes that must allocate) they
 * become allocated zeros: freed of their data all the same (zeros need no data block),
 * but block status reports them allocated; a partial block at either end is written
 * (read-modify-write) where it holds data, and turned into allocated zeros where it is
 * a hole (it reads as zeros whole). */
int blk_zero(struct blk_dev *dev, uint64_t off, uint64_t len, unsigned flags, blk_cb cb,
	     void *arg);
/* Makes every write completed before the call durable (the engine's flush). */
int blk_flush(struct blk_dev *dev, blk_cb cb, void *arg);

/* Runs the engine's completions, blk_* callbacks among them (engine_poll): waits up
 * to timeout_ms (-1 forever, 0 not at all) if nothing is ready; returns the number of
 * callbacks run, or -errno. The front ends drain their requests with it before they
 * close; the node's loop drives the engine itself. A direct call: nothing more. */
int blk_poll(struct engine *eng, int timeout_ms);

/* ---- the guard: ownership and the lease (docs/cluster.md) ----
 * In a cluster a node serves a volume only while it owns it, and completes client
 * I/O only while its lease is valid. The node (quilld) makes one guard, owned by it,
 * and gives it to every blk_open (through its front ends); a single node gives NULL,
 * and then nothing below happens and a request costs nothing more.
 *
 * The lease: before a request of a guarded handle calls its cb, lease_valid(arg) and
 * claims_gen(arg) are asked. While the lease is not valid, or a claim may have been
 * lost since the last blk_guard_recheck() (claims_gen moved), the request is finished
 * (its data where it would be, its range lock released) but its completion waits, in
 * arrival order, for a recheck: the client sees a slow request, never an error.
 *
 * Ownership: blk_open asks owns(arg, VOL) (VOL of a snapshot's spec too) and keeps
 * the epoch. Each recheck asks again for every open handle; a handle whose volume
 * this node no longer owns at that epoch is FENCED: one log line, then every request
 * waiting for its range lock or for the guard fails with -ESTALE (none completes as a
 * success), the requests still in the engine fail with -ESTALE when they end (writes
 * the engine still queues are failed there and never land: engine_volume_abort), new
 * ones are refused with -ESTALE, the handle's fence callback runs (the front end
 * hangs up its clients), and once its last request ended the engine volume is closed
 * (another open may then succeed, if the node owns the volume again). The handle
 * itself stays until blk_close.
 * Engine's thread only. */
struct blk_guard_ops {
	/* May client I/O complete now (the lease deadline is ahead)? Per completion:
	 * must be cheap (an atomic). */
	bool (*lease_valid)(void *arg);
	/* A number that moves whenever this node may have lost a claim; per completion,
	 * as cheap. The node calls blk_guard_recheck() after it moved. */
	uint64_t (*claims_gen)(void *arg);
	/* Does this node own vol? 0 and *epoch (the first epoch of its unbroken
	 * ownership; 0: a volume the cluster does not know, which this node serves);
	 * -EREMOTE another node owns it, -EAGAIN no node does (this node may claim it),
	 * -EINPROGRESS undecided (this node's claim lapsed and it may take it back
	 * unbroken: handles are not fenced, completions wait), with a sentence for the
	 * client in why. */
	int (*owns)(void *arg, const char *vol, int64_t *epoch, char *why, size_t whylen);
	/* Claims vol for this node (the clean handoff of a volume whose claim was given
	 * up), then done(done_arg, 0 or -errno) once, on the engine's thread, later;
	 * <0: not started (done never runs). NULL: an attach never claims. */
	int (*claim)(void *arg, const char *vol, void (*done)(void *done_arg, int res),
		     void *done_arg);
};
/* ops is copied. 0, -EINVAL (an op missing: all but claim are needed), -ENOMEM. */
int blk_guard_create(const struct blk_guard_ops *ops, void *arg, struct blk_guard **out);
/* What still waits fails with -ESHUTDOWN; handles still open are no longer guarded.
 * NULL ok. */
void blk_guard_destroy(struct blk_guard *g);
/* Fences the handles of volumes this node lost, then, if the lease is valid,
 * completes the requests that wait (quilld: after every keepalive granted and every
 * change of the map or of its claims). */
void blk_guard_recheck(struct blk_guard *g);
/* Requests whose completion waits for the guard (cluster status, tests). */
unsigned blk_guard_waiting(const struct blk_guard *g);
/* The node stops: from now on a completion that the guard would hold back fails
 * with -ESHUTDOWN instead (what already waits fails now), so the front ends can
 * drain; completions under a valid lease go on as before. */
void blk_guard_shutdown(struct blk_guard *g);
/* The sentence for an open of spec refused with -EREMOTE or -EAGAIN: "volume 'v1' is
 * owned by node node1 (epoch 3, NBD at 127.0.0.1:10810): attach it there". */
void blk_guard_refusal(struct blk_guard *g, const char *spec, char *buf, size_t len);
/* The sentence for an open of spec refused with err, as a front end gives it to its
 * client or its log: blk_busy_reason's for -EBUSY, blk_guard_refusal's for -EREMOTE
 * and -EAGAIN (guard may be NULL). False for any other err (buf untouched): the
 * front end says that one its own way. */
bool blk_open_refusal(struct engine *eng, struct blk_guard *guard, const char *spec, int err,
		      char *buf, size_t len);
/* Attach anywhere: blk_open(spec) said -EAGAIN (no node owns the volume now): claims
 * it for this node, then cb(arg, 0 or -errno), after which the front end opens again
 * (the open decides: served, or refused if another node won the race). Returns 0
 * (cb runs once, later) or -errno (-ENOTSUP: the guard's node does not claim on
 * attach; cb never runs). A waiter that goes away first calls
 * blk_guard_claim_cancel(g, cb, arg): its cb then never runs. */
int blk_guard_claim(struct blk_guard *g, const char *spec, blk_cb cb, void *arg);
void blk_guard_claim_cancel(struct blk_guard *g, blk_cb cb, void *arg);

/* The front end learns that its handle was fenced (why: the log line's reason), on
 * the engine's thread, from inside blk_guard_recheck(): it must not close the handle
 * there (its requests are still ending), only stop taking requests (NBD hangs up
 * once the errors went out). */
typedef void (*blk_fence_fn)(void *arg, const char *why);
void blk_set_fence_cb(struct blk_dev *dev, blk_fence_fn fn, void *arg);
/* Was the handle fenced? */
bool blk_fenced(const struct blk_dev *dev);

#endif
