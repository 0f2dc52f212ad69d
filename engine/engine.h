/* engine/engine.h — the single-node volume engine: a log-structured block store.
 *
 * An engine owns one store (a device or preallocated file, see store/store.h) and a
 * RocksDB directory (metadata/meta.h). Volumes are thin: unwritten blocks read as
 * zeros. Writes are appended to the volume's own log of segments in batches;
 * concurrent writes are group-committed into one batch. The extent map lives in
 * memory, is checkpointed to RocksDB in the background, and is rebuilt at start-up
 * by rolling forward from the batch summaries written after the last checkpoint.
 *
 * Units: the I/O calls take LBAs and block counts in ENGINE_BLOCK_SIZE blocks; byte
 * offsets and partial blocks are the caller's (the NBD server does read-modify-write).
 *
 * Threading: an engine and its volumes belong to the thread that opened it; every
 * call must come from that thread. Completions run from engine_poll().
 *
 * Async contract (engine_read/write/trim/flush and every engine_*_async call):
 * returns 0 → the callback runs exactly once, from a later engine_poll(), with 0 or
 * -errno (or a count, where said); returns <0 → the callback never runs. Buffers and
 * strings passed in need only stay valid until the call returns, except I/O buffers,
 * which must stay valid until the callback.
 *
 * Management calls (volume create/delete/resize, snapshots, clone, flatten start, gc,
 * checkpoint) are asynchronous: the engine_*_async form checks its arguments, then does
 * its work as a job that engine_poll() drives in steps (engine/job.c), so client I/O is
 * served while it waits for batches to retire, a flush or a checkpoint. An event loop
 * (quilld) must use only these. Each has a blocking form of the same name without
 * _async that runs engine_poll() until it is done: for tests and offline tools only,
 * never from a callback or a daemon's loop. A second management call on a layer that
 * one is working on fails with -EBUSY.
 *
 * Durability: a write's callback means its data is in the store's log; it is durable
 * after a later flush completes, or at once with ENGINE_FUA. A flush makes every
 * write completed before it was called durable (on every volume of the engine).
 *
 * Errors: -EINVAL bad arguments, -ERANGE beyond the volume's end, -ENOSPC store full,
 * -EILSEQ a block whose checksum does not match (logged; never wrong data),
 * -EIO device errors, -ENOENT unknown volume, -EEXIST name taken, -EBUSY volume open.
 * Management calls (volume, snapshot, clone) write metadata: for them -ENOSPC means
 * the metadata disk is full (engine_stats.meta_error says so too), -EIO that RocksDB
 * failed otherwise; reads and writes of volumes never need metadata and go on.
 */
#ifndef QUILL_ENGINE_ENGINE_H
#define QUILL_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define ENGINE_BLOCK_SIZE 4096u
#define ENGINE_VOLUME_NAME_MAX 63u
#define ENGINE_SYNC_BYTES_DEFAULT (8u << 20)
#define ENGINE_SYNC_MIN_MS 200u

struct engine;
struct engine_volume;

/* A completion: res is 0 or -errno (or a count, where a call says so). */
typedef void (*engine_cb)(void *arg, int res);

struct engine_opts {
	const char *store_path;    /* block device or file (see store_opts) */
	const char *meta_path;     /* directory for RocksDB */
	uint64_t store_size;       /* file only: a missing file is created at this size; an
				      existing store must have it (-EINVAL, logged), unless
				      grow. 0 = an existing store at its size, no new file */
	bool format;               /* format a blank store: no valid superblock, nothing in
				      the superblock area, no quill log on the device, no
				      store in the metadata directory (a new file is blank) */
	bool reformat;             /* format even a store that is not blank, valid or not
				      (quilld --format); the metadata directory must not
				      hold a store. A device holding a quill log also needs: */
	bool destroy_data;         /* with reformat: its log may be destroyed */
	bool grow;                 /* extend a smaller file to store_size (a block device:
				      use its new size) and add the slots that now fit */
	uint32_t segment_size;     /* at format time; 0 = 4 MiB */
	unsigned queue_depth;      /* io_uring depth; 0 = default */
	unsigned checkpoint_ms;    /* background map checkpoint period; 0 = 5000 */
	uint64_t sync_bytes;       /* log bytes after which a background store flush starts
				      (at most one per ENGINE_SYNC_MIN_MS), so that no flush,
				      a checkpoint's included, has much to write back and
				      holds the device long; engine_opts_init sets
				      ENGINE_SYNC_BYTES_DEFAULT; 0 = never (only flushes
				      asked for) */
	unsigned gc_reserve_segments; /* slots only the cleaner may use; 0 = default */
	bool gc_auto;              /* run the cleaner when free slots run low (default on
				      through engine_opts_init) */
	bool prezero;              /* write zeros, in the background and throttled, over
				      the never-written free segments the log takes next,
				      so that first writes do not pay the file system's
				      unwritten-extent conversion (a fallocate()d file);
				      default on through engine_opts_init */
	bool read_defrag;          /* a read whose blocks lie scattered over the log writes
				      them back in LBA order (MOVE entries), so that the
				      next read of the range is one I/O (engine/defrag.c);
				      off by default: the first read of a scattered range
				      pays a write of it (docs/engine.md) */
	bool seq_defrag;           /* the same, but only for a read that continues a
				      sequential stream of the volume's reads (at least
				      4 MiB read in order before it): a scan, a backup, a
				      boot, not a lone large read; off by default: the
				      first pass pays a write of what it reads, and
				      bench.sh showed no gain (docs/engine.md) */
	bool idle_defrag;          /* when no client request came for a while (100 ms),
				      rewrite the volumes' scattered windows in LBA order, one
				      at a time, so that a later sequential read finds them
				      in one piece (engine/defrag.c); default on through
				      engine_opts_init */
	unsigned poll_us;          /* while one client request is in flight, or one was
				      just answered (QD1), the loop polls the ring for what
				      it waits for (the disk I/O, the next request) at most
				      this long before it sleeps: that comes sooner than a
				      sleeping thread is woken (docs/engine.md, "Polling for
				      a lone request"); the window adapts, waits longer than
				      this end the polls. engine_opts_init sets
				      ENGINE_POLL_US_DEFAULT; 0: sleep at once */
	bool family_records;       /* each family's own log carries its layers' records:
				      when a volume opens a segment, the records (and
				      tombstones) of its family that were written to the
				      store's catalog log go into it too, so that another
				      node can adopt the family from its segments alone
				      (engine_family_adopt; a cluster node sets it). Off:
				      a layer record goes to the catalog log while its
				      volume has no open segment */
	bool rebuild_meta;         /* meta_path is empty: rebuild the catalog, aliases and
				      maps from the store's log alone (docs/format.md) */
	const char *test_pause;    /* crash tests only: "POINT:MS" holds the thread that
				      reaches POINT for MS ms, after an INFO line "test pause
				      at POINT", so that a kill -9 lands there. Points:
				      ckpt-commit (the checkpoint thread, its RocksDB batch
				      committed and not flushed), free-layer (the engine
				      thread, before each pass of a deleted layer's FREE
				      headers), meta-commit (the metadata thread, after a
				      management call's synced commit). Must outlive the
				      engine. NULL: none */
};

#define ENGINE_POLL_US_DEFAULT 100

/* Fills defaults. */
void engine_opts_init(struct engine_opts *opts);

/* Opens the store and its metadata, formatting if asked and needed, then rolls the
 * extent map forward from the log. The superblock has a copy (docs/format.md): a
 * damaged block 0 is rewritten from it. Errors (each logged with what was found):
 * -EINVAL the metadata directory is missing, empty or another store's, or the size
 * asked for differs; -ENOENT a blank store and format is false; -ENOENT/-EILSEQ/-EPROTO
 * no valid superblock and the store is not blank (nothing is written); -ENOTEMPTY
 * reformat of a store holding a log without destroy_data; -EEXIST a store to format
 * whose metadata directory holds a store. */
int engine_open(const struct engine_opts *opts, struct engine **out);
/* Waits for I/O in flight, flushes, writes a final checkpoint, closes. NULL ok.
 * Volumes still open are closed. */
void engine_close(struct engine *eng);

/* Volume management (metadata writes are synced); not for the I/O path. */
enum engine_create_flags {
	ENGINE_CREATE_IMPORTING = 1u << 0, /* marked as an unfinished import, in the same
					      record: see engine_volume_import_done() */
	ENGINE_CREATE_SECTOR_4K = 1u << 1, /* logical sectors of 4096 bytes (a 4Kn disk)
					      instead of 512 (below) */
};
/* The logical sector size is the volume's: fixed when it is created, kept by its
 * snapshots and clones and across resize, rollback, flatten and merges. It is what
 * the front ends advertise (NBD block sizes, virtio-blk blk_size); the engine itself
 * works in ENGINE_BLOCK_SIZE blocks whatever it is. */
#define ENGINE_SECTOR_SIZE_DEFAULT 512u
#define ENGINE_SECTOR_SIZE_4K      4096u
int engine_volume_create_async(struct engine *eng, const char *name, uint64_t size_bytes,
			       unsigned flags, engine_cb cb, void *arg);
int engine_volume_create(struct engine *eng, const char *name, uint64_t size_bytes);
/* Frees the volume's segments and map. -EBUSY if open, -ENOTEMPTY if it has snapshots
 * (remove them first). */
int engine_volume_delete_async(struct engine *eng, const char *name, engine_cb cb,
			       void *arg);
int engine_volume_delete(struct engine *eng, const char *name);
/* Grows or shrinks, atomically across a crash (one record); shrinking drops the blocks
 * past the new end. */
int engine_volume_resize_async(struct engine *eng, const char *name, uint64_t size_bytes,
			       engine_cb cb, void *arg);
int engine_volume_resize(struct engine *eng, const char *name, uint64_t size_bytes);
/* Clears the mark of ENGINE_CREATE_IMPORTING: the import filled the volume. -EINVAL if
 * it has no such mark. */
int engine_volume_import_done_async(struct engine *eng, const char *name, engine_cb cb,
				    void *arg);
int engine_volume_import_done(struct engine *eng, const char *name);

/* A snapshot or clone reference is written "VOL@SNAP"; its longest form: */
#define ENGINE_SNAP_SPEC_MAX (2 * ENGINE_VOLUME_NAME_MAX + 1)
/* The longest description of who holds a volume open (engine_volume_set_holder). */
#define ENGINE_HOLDER_MAX 191u

struct engine_volume_info {
	char name[ENGINE_VOLUME_NAME_MAX + 1];
	uint64_t id;              /* stable for the volume's life (snapshots keep it) */
	uint64_t size;            /* bytes */
	uint64_t mapped_blocks;   /* blocks that read back data (written, not trimmed),
				     wherever they live: its own layer or a snapshot */
	uint64_t own_blocks;      /* of those, the ones only this volume holds (written
				     since its last snapshot, or since it was cloned) */
	uint64_t segments;        /* slots holding this volume's log */
	uint64_t created_ns;
	bool open;
	char parent[ENGINE_SNAP_SPEC_MAX + 1]; /* "VOL@SNAP" a clone reads through, or "" */
	unsigned snapshots;       /* of this volume */
	bool flattening;          /* see engine_flatten_status() */
	bool damaged;             /* replay found a durable batch of it (or of a snapshot it
				     reads through) whose summary was damaged: some blocks
				     may read old data or zeros (docs/format.md) */
	bool importing;           /* an import created it and has not finished */
	char holder[ENGINE_HOLDER_MAX + 1]; /* who has it open (engine_volume_set_holder),
					       "" if nobody or unnamed */
	uint32_t sector_size;     /* logical sector: 512 or 4096 bytes */
};
int engine_volume_info(struct engine *eng, const char *name, struct engine_volume_info *out);
/* Calls fn for every volume in name order; stops and returns fn's value if non-zero. */
int engine_volume_list(struct engine *eng,
		       int (*fn)(const struct engine_volume_info *info, void *arg), void *arg);

/* Opens a volume for I/O, or a snapshot read-only when name is "VOL@SNAP" (writes and
 * trims then fail with -EPERM). A volume has one writer: -EBUSY if it is open. A
 * snapshot may be opened any number of times (each open is closed once); read-only
 * opens never conflict. */
int engine_volume_open(struct engine *eng, const char *name, struct engine_volume **out);
bool engine_volume_readonly(const struct engine_volume *vol);
/* Opens snapshot layer `id` of family uid read-only, as engine_volume_open() opens
 * "VOL@SNAP" (a clone on another node names its base by family and layer id:
 * docs/replication.md, "Snapshots and clones across owners"). -ENOENT if this engine
 * has no such snapshot (removed, never here, or a layer that is not a snapshot);
 * -EAGAIN while a family adoption that rebuilt it has not committed yet. */
int engine_snapshot_open_by_id(struct engine *eng, uint64_t uid, uint64_t id,
			       struct engine_volume **out);
/* The family uid, layer id and size (bytes) of snapshot vol@snap here: 0, or -ENOENT
 * (what a clone on another node names its base by: LAYER_FIND). */
int engine_snapshot_find(struct engine *eng, const char *vol, const char *snap, uint64_t *uid,
			 uint64_t *id, uint64_t *size);
/* Describes who holds a volume's handle ("NBD by 127.0.0.1:53122"), for the refusals
 * of others and engine_volume_info(); copied, truncated to ENGINE_HOLDER_MAX. Cleared
 * when the handle is closed. Ignored for snapshots (they have no one holder). */
void engine_volume_set_holder(struct engine_volume *vol, const char *holder);
/* Gives the handle back; every request made through it must have completed (its
 * callback has run). Does not wait. NULL ok. */
void engine_volume_close(struct engine_volume *vol);
/* The node lost the volume (docs/cluster.md, fencing): fails with err every write,
 * trim or zeroing of the handle that the engine still queues (waiting for free space,
 * or held while a snapshot or rollback is taken), so that none of them lands later.
 * What is already in a batch ends as usual. */
void engine_volume_abort(struct engine_volume *vol, int err);
uint64_t engine_volume_size(const struct engine_volume *vol);
/* The logical sector size of the volume (or snapshot): 512 or 4096 bytes. */
uint32_t engine_volume_sector_size(const struct engine_volume *vol);

/* ---- Snapshots and clones (docs/engine.md, "Layers") ----
 * A snapshot is a read-only point in time of a volume, taken without copying data: the
 * volume's current layer is frozen and the volume continues in a new, empty layer that
 * reads through to it. A clone is a new volume whose reads fall through to a snapshot.
 * Management calls, like the volume calls above; a snapshot or a rollback holds the
 * volume's new writes for about one store flush (they then go to the new layer). */

/* Every write completed before the call is in the snapshot; none started after it.
 * -ENOENT no volume, -EEXIST snapshot name taken, -EBUSY the volume is being
 * flattened. */
int engine_snap_create_async(struct engine *eng, const char *vol, const char *snap,
			     engine_cb cb, void *arg);
int engine_snap_create(struct engine *eng, const char *vol, const char *snap);
/* Removes a snapshot; the blocks only it held are garbage afterwards. -EBUSY it is open,
 * -ENOTEMPTY other volumes or snapshots still read through it: engine_snap_dependents()
 * names them. */
int engine_snap_delete_async(struct engine *eng, const char *vol, const char *snap,
			     engine_cb cb, void *arg);
int engine_snap_delete(struct engine *eng, const char *vol, const char *snap);
/* Formats "clone c1, snapshot vm0@s2" (the layers that read through vol@snap) into buf;
 * returns how many there are, or -errno. */
int engine_snap_dependents(struct engine *eng, const char *vol, const char *snap, char *buf,
			   size_t len);
/* Makes the volume read what the snapshot holds (its size too); what was written since
 * is discarded. -EBUSY if the volume is open, unless force (its clients then see the
 * snapshot's data). */
int engine_snap_rollback_async(struct engine *eng, const char *vol, const char *snap,
			       bool force, engine_cb cb, void *arg);
int engine_snap_rollback(struct engine *eng, const char *vol, const char *snap, bool force);

struct engine_snap_info {
	char name[ENGINE_VOLUME_NAME_MAX + 1]; /* SNAP of VOL@SNAP */
	uint64_t id;
	uint64_t size;            /* bytes */
	uint64_t created_ns;
	uint64_t own_blocks;      /* blocks that removing it frees (after the cleaner ran):
				     its data that no layer reading through it reads */
	unsigned dependents;      /* clones (and branches) reading through it */
	bool open;
	uint32_t sector_size;     /* its volume's: 512 or 4096 bytes */
};
/* Calls fn for every snapshot of vol, oldest first; stops and returns fn's value if
 * non-zero. */
int engine_snap_list(struct engine *eng, const char *vol,
		     int (*fn)(const struct engine_snap_info *info, void *arg), void *arg);

/* Creates volume newvol reading through snapshot "VOL@SNAP", of the snapshot's size. */
int engine_clone_async(struct engine *eng, const char *snap_spec, const char *newvol,
		       engine_cb cb, void *arg);
int engine_clone(struct engine *eng, const char *snap_spec, const char *newvol);

/* Flatten: copies what a clone still reads from its parent into the clone, online (the
 * volume may be open and written), then drops the parent link. A clone whose root has
 * a remote base (engine_family_base_set) copies every range below the base's end that
 * it does not map, through the base's transport; the base stays set (it is then never
 * read) until the caller clears it, once the cluster's record forgets it. Runs in the background
 * from engine_poll(). -EINVAL not a clone (or a clone with snapshots of its own),
 * -EALREADY running. The callback of the _async form runs once the flatten is under
 * way (noted in the volume's record), not when it ends. */
int engine_flatten_start_async(struct engine *eng, const char *vol, engine_cb cb, void *arg);
int engine_flatten_start(struct engine *eng, const char *vol);
struct engine_flatten_status {
	bool running;
	uint64_t done_blocks;   /* LBAs looked at */
	uint64_t total_blocks;
	uint64_t copied_blocks;
	int result;             /* of the last flatten that ended: 0 or -errno */
	bool finished;          /* a flatten ended since the volume was loaded */
};
int engine_flatten_status(struct engine *eng, const char *vol,
			  struct engine_flatten_status *out);

/* Diff: the extents whose content may differ between `from` and `to` (each "VOL@SNAP"
 * or a live "VOL"; from may be NULL for an empty volume), in offset order and merged.
 * It compares where blocks live, not their bytes: layers that share no history (or a
 * flattened clone) show all their data as changed. data: the extent holds data in
 * `to`; otherwise it reads as zeros there. */
struct engine_extent {
	uint64_t offset; /* bytes */
	uint64_t length;
	bool data;
};
int engine_diff(struct engine *eng, const char *from, const char *to,
		int (*fn)(const struct engine_extent *ext, void *arg), void *arg);

enum engine_io_flags {
	ENGINE_FUA = 1u << 0, /* durable when the callback runs */
};

int engine_read(struct engine_volume *vol, uint64_t lba, uint32_t nblocks, void *buf,
		engine_cb cb, void *arg);
int engine_write(struct engine_volume *vol, uint64_t lba, uint32_t nblocks, const void *buf,
		 unsigned flags, engine_cb cb, void *arg);
/* Discard (and write-zeroes that may leave a hole): afterwards the range reads as
 * zeros, uses no space, and block status reports it a hole. */
int engine_trim(struct engine_volume *vol, uint64_t lba, uint64_t nblocks, unsigned flags,
		engine_cb cb, void *arg);
/* Write-zeroes that must allocate: afterwards the range reads as zeros and block status
 * reports it allocated (ENGINE_BLOCK_ZERO), yet it holds no data block and no space is
 * reserved for it (a later write of it needs space like any write). */
int engine_zero(struct engine_volume *vol, uint64_t lba, uint64_t nblocks, unsigned flags,
		engine_cb cb, void *arg);
int engine_flush(struct engine *eng, engine_cb cb, void *arg);

/* Is the block mapped (holds data, or may: a range read through a remote base)? */
bool engine_block_mapped(const struct engine_volume *vol, uint64_t lba);
/* Block status, through the layers: data, allocated zeros (engine_zero), or a hole
 * (never written, trimmed, or past the end). */
enum engine_block_state {
	ENGINE_BLOCK_HOLE = 0,
	ENGINE_BLOCK_DATA = 1,
	ENGINE_BLOCK_ZERO = 2,
};
enum engine_block_state engine_block_state(const struct engine_volume *vol, uint64_t lba);

/* Runs completions. Waits up to timeout_ms (-1 forever, 0 not at all) if nothing is
 * ready. Returns the number of callbacks run, or -errno. */
int engine_poll(struct engine *eng, int timeout_ms);
/* Readable when I/O completions are ready (for an epoll loop). The loop reads it to
 * reset it, then calls engine_poll(eng, 0). */
int engine_event_fd(const struct engine *eng);
/* How long an event loop may sleep before it must call engine_poll() again even if
 * the event fd stays quiet (checkpoint timer and thread, cleaner), in ms; 0 when
 * work is queued now. An event loop calls engine_poll(eng, 0) after handling its
 * events (that is when queued writes are submitted), then sleeps at most this. */
int engine_timeout_ms(const struct engine *eng);

/* An event loop that sleeps in the engine's ring instead of watching the event fd
 * (quilld): engine_run() is engine_poll(eng, 0) without entering the kernel to submit
 * (callbacks run, batches are formed and queued; no wait), called after the loop's
 * events; then engine_wait_fd() submits everything queued and sleeps up to
 * timeout_ms (-1: forever) until an I/O completes or w->epfd (the loop's epoll fd) is
 * readable; it reaps the store's completions, whose callbacks then run from the next
 * engine_run(). w's out fields: common/loop.h (on kernels with IORING_OP_EPOLL_WAIT
 * the ring collects the loop's events too: store.h's store_wait_fd). One system call
 * per sleep, none per completion. Both return the number of callbacks run, or -errno.
 * Close the engine before the loop whose events w points to is destroyed. */
struct loop_wait;
int engine_run(struct engine *eng);
int engine_wait_fd(struct engine *eng, struct loop_wait *w, int timeout_ms);

/* Convenience for tools and tests: run engine_poll() until *done is true. Never from
 * a callback or a daemon's loop. */
int engine_wait(struct engine *eng, const bool *done);

/* Space and the cleaner. */
struct engine_stats {
	uint32_t segment_size;
	uint32_t segments_total;
	uint32_t segments_free;
	uint32_t segments_open;
	/* what holds the segments in use (besides the open ones) */
	uint32_t segments_too_live;    /* sealed, over 90% live: not worth cleaning */
	uint32_t segments_trims_only;  /* sealed, nothing live, kept for the trims in them
					  until the cleaner carries those */
	uint32_t segments_empty;       /* sealed, nothing live: the next checkpoint frees them */
	uint32_t segments_held;        /* copies of other nodes' segments (engine_held_*) */
	uint64_t trim_entries;         /* TRIM, ZERO and TOMB entries in segments in use */
	uint64_t live_blocks;     /* blocks referenced by some volume's map */
	uint64_t usable_blocks;   /* live data the store can hold: the cleaner needs the
				     rest (about 10%) to work */
	uint64_t raw_usable_blocks; /* the same share of every slot, held ones included:
				       what the store holds of any node's data (a cluster's
				       capacity counts it: docs/cluster.md, "Space") */
	uint64_t used_blocks;     /* blocks written in non-free segments (live + garbage) */
	uint64_t remote_blocks;   /* blocks of segments with no local copy (remote entries:
				     an EC owner's encoded segments), held elsewhere */
	uint64_t remote_live_blocks; /* ...of them live: the cleaner takes remote victims
				       while over the entries with some live, the dead are
				       more than ENG_GC_REMOTE_DEAD_PCT (25%) of their blocks
				       (an empty one waits for the next checkpoint) */
	uint64_t gc_runs;
	uint64_t gc_remote_runs;   /* of them, remote victims (read through fetches) */
	uint64_t gc_remote_blocks; /* blocks those fetches read */
	uint64_t gc_blocks_moved;
	uint64_t gc_segments_freed;
	uint64_t prezeroed_bytes; /* zeros written ahead of the log (engine_opts.prezero) */
	uint64_t read_ios;        /* store reads issued for client reads: a read of
				     neighbouring blocks in the log is one */
	uint64_t defrag_blocks;   /* blocks rewritten by read reallocation (retired) */
	uint64_t defrag_skipped;  /* scattered windows left as they were (over budget, no
				     room, a job on the volume) */
	uint64_t defrag_idle_reads; /* windows the idle defragmenter read to rewrite */
	uint64_t blocks_repaired;    /* blocks whose local copy failed (checksum or read) and
					were read from a copy elsewhere and written back
					(engine/repair.c) */
	uint64_t blocks_unrecoverable; /* ...and those for which no copy had good data:
					  the read failed */
	uint64_t fetches;         /* runs asked of copies elsewhere (seg_fetch: a remote
				     segment's read, a read-around): each one peer request
				     when its first holder has it good */
	uint64_t fetch_blocks;    /* blocks those runs wanted */
	uint64_t drop_walks;      /* drops of a local copy (engine_segment_drop_local) that
				     walked every layer's whole map: no hint, or one that
				     left entries naming the slot */
	uint64_t fetch_requests;  /* peer requests they took (a holder that fails one
				     costs another) */
	uint64_t checkpoints;
	uint64_t last_checkpoint_seq;
	uint64_t family_checkpoints;      /* complete (END acknowledged) in families' logs */
	uint64_t family_checkpoints_failed; /* begun, no END (a write failed) */
	uint64_t family_maps_blocks;      /* MAPS blocks they wrote */
	uint64_t family_checkpoint_seq;   /* the S of the last one completed */
	uint64_t adopt_fckpt_loads;       /* adoptions that loaded a family checkpoint */
	uint64_t adopt_copies_unread;     /* copies those did not read whole (below S) */
	uint64_t adopt_fckpt_seq;         /* the S the last of them loaded */
	uint64_t adopt_remote_entries;    /* segments adopted with no copy here (remote) */
	uint64_t replayed_batches;   /* at the last open */
	uint64_t torn_batches;       /* dropped at the last open (in flight at a crash) */
	uint64_t corrupt_batches;    /* durable but damaged, found at the last open: kept,
					their bad blocks read as errors (or, for a damaged
					summary, the volume marked damaged) */
	uint32_t segments_read_at_open;    /* used segments whose log the last open read */
	uint32_t segments_settled_at_open; /* ...and those it took from the checkpoint's
					      segment table instead (docs/format.md) */
	int meta_error;              /* 0, or -errno while metadata writes fail (-ENOSPC: the
					metadata disk is full); management calls fail with it,
					client I/O goes on, checkpoints retry */
};
void engine_get_stats(const struct engine *eng, struct engine_stats *out);

/* Client I/O served on this node: the block layer's requests (every front end) that
 * ended, and the sum of their latencies, counted once engine_client_load_watch() was
 * called (the catch-up's adaptive rate, replication/catchup_rate.h, reads it every
 * interval to yield to the clients). Until then a request reads no clock: a single
 * node, or a fixed catch-up rate, pays nothing per request for it.
 * The block layer: engine_client_io_start() as a request arrives (0: not counted),
 * engine_client_io_done() with that as it ends. */
struct engine_client_load {
	uint64_t ops;
	uint64_t busy_us;
};
void engine_client_load_watch(struct engine *eng);
uint64_t engine_client_io_start(const struct engine *eng);
void engine_client_io_done(struct engine *eng, uint64_t start_us);
void engine_get_client_load(const struct engine *eng, struct engine_client_load *out);

/* Runs the cleaner until at least want_free slots are free or nothing is worth
 * cleaning. It cleans one slot per turn of engine_poll(), so client I/O keeps being
 * served in between. The callback gets the number of slots freed, or -errno. */
int engine_gc_async(struct engine *eng, unsigned want_free, engine_cb cb, void *arg);
int engine_gc(struct engine *eng, unsigned want_free);

/* Writes a map checkpoint now (one captured after the call). */
int engine_checkpoint_async(struct engine *eng, engine_cb cb, void *arg);
int engine_checkpoint(struct engine *eng);
/* The same, before a stop: a family checkpoint owed is written even where the
 * family's log has no open segment (one is opened for it), unless the family was
 * adopted here and its numbers are not reserved since. */
int engine_checkpoint_for_stop_async(struct engine *eng, engine_cb cb, void *arg);

/* ---- segments held for other nodes (replication's holders; docs/replication.md) ----
 * A held segment is named by (family uid, segment number); uid != 0. The I/O and
 * management calls follow the async contract above. Blocks are ENGINE_BLOCK_SIZE;
 * offsets are in blocks from the segment's start (block 0: its header).
 *
 * A holder keeps a copy of another node's segment in one of its own slots, byte for
 * byte (block 0 is the owner's header, naming the owner's store uuid and generation).
 * The engine knows such a slot as held: never a volume's, never cleaned, defragmented,
 * prezeroed or reused until the holder drops it (engine/held.c, docs/engine.md "Held
 * segments"). The held table is in memory and in RocksDB: an "H" record per held
 * segment, an "E" record per family (its highest epoch), written off the loop thread
 * and loaded at start-up before the slots are classified. */
struct engine_held_info {
	uint64_t uid;
	uint32_t sno;
	uint64_t epoch;    /* the epoch it was opened (or last appended) under */
	bool sealed;
	uint32_t length;   /* blocks written (open) or the sealed length */
	uint32_t slot;     /* local slot, for tools and tests */
};
/* The segment size every held copy has: this store's (a holder refuses another). */
uint32_t engine_segment_blocks(const struct engine *eng);
/* Opens a copy: allocates a slot (leaving the cleaner's reserve, like a write), persists
 * its "H" record, then cb(0). Already held with the same uid/sno: cb(0) (a retry), its
 * length unchanged. -ENOSPC no slot, -ESTALE epoch below the family's "E". */
int engine_held_open_async(struct engine *eng, uint64_t uid, uint32_t sno, uint64_t epoch,
			   engine_cb cb, void *arg);
/* Writes nblocks at `block` (iov: nblocks * ENGINE_BLOCK_SIZE bytes, aligned buffers
 * are not required: copy if the store needs it). block <= length (a retry of what is
 * there is allowed), block > length: -ERANGE (a hole), past the segment's end -EINVAL,
 * sealed -EROFS, not held -ENOENT. cb(0) when written (not yet durable). length becomes
 * max(length, block + nblocks). */
int engine_held_write(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t block,
		      const struct iovec *iov, int iovcnt, uint32_t nblocks, engine_cb cb,
		      void *arg);
/* Reads nblocks at block (block + nblocks <= length, else -ERANGE) into iov. */
int engine_held_read(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t block,
		     const struct iovec *iov, int iovcnt, uint32_t nblocks, engine_cb cb,
		     void *arg);
/* Seals at `length` blocks (<= what is written: the rest is cut off for good),
 * persisted before cb(0). Sealing again at the same length: cb(0). */
int engine_held_seal_async(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t length,
			   engine_cb cb, void *arg);
/* Drops a copy: its "H" record is deleted (durably), then the slot is free. Not held:
 * cb(0) (a retry). */
int engine_held_delete_async(struct engine *eng, uint64_t uid, uint32_t sno, engine_cb cb,
			     void *arg);
/* Makes every held write that completed before this call durable: this node's store
 * alone, not the engine's flush (engine_flush), which also waits for this node's own
 * segments' copies on other nodes. Two owners each holding the other's copies would
 * otherwise wait on each other's flush until the peer timeout dropped both. */
int engine_held_flush(struct engine *eng, engine_cb cb, void *arg);
/* The family's fence: the highest epoch seen (0: none). raise persists a higher one
 * before cb(0); a lower or equal one: cb(0) at once, unchanged. */
uint64_t engine_held_epoch(const struct engine *eng, uint64_t uid);
int engine_held_epoch_raise_async(struct engine *eng, uint64_t uid, uint64_t epoch,
				  engine_cb cb, void *arg);
/* 0 and *out, or -ENOENT. */
int engine_held_stat(const struct engine *eng, uint64_t uid, uint32_t sno,
		     struct engine_held_info *out);
/* Every held copy, in (uid, sno) order; stops at fn's first nonzero result. */
int engine_held_list(const struct engine *eng,
		     int (*fn)(void *arg, const struct engine_held_info *h), void *arg);
/* The same for the copies of family uid with first <= sno <= last (a binary search,
 * then those only). */
int engine_held_list_family(const struct engine *eng, uint64_t uid, uint32_t first,
			    uint32_t last, int (*fn)(void *arg, const struct engine_held_info *h),
			    void *arg);

/* ---- fragments of other nodes' erasure-coded segments (engine/heldfrag.c) ----
 * A holder keeps fragment `index` of segment (uid, sno) encoded K+M
 * (docs/erasure-coding.md) as an image in a held slot of its own, from block 0: the
 * image's format (replication/ec_format.h: header block, CRC table, data) is the
 * caller's, which checks it before it puts it and checks what it reads. A node holds at
 * most one fragment of a segment, apart from a copy of it (engine_held_*): both may be
 * here while the segment is being encoded. A "G" record per fragment (RocksDB,
 * committed off the loop thread), loaded at start-up with the "H" records; the image's
 * header block is checked against it then. The slot is held: never cleaned, reused or
 * counted as this store's room until the fragment is deleted. The epoch fence is the
 * family's (engine_held_epoch). */
struct engine_frag_info {
	uint64_t uid;
	uint32_t sno;
	uint64_t epoch;         /* the owner's epoch it was put under */
	uint8_t index, k, m;
	uint32_t seg_blocks;    /* L, the encoded segment's blocks */
	uint32_t frag_blocks;   /* F, the fragment's data blocks */
	uint32_t image_blocks;  /* the image's blocks (header, table, data) */
	uint32_t frag_crc;      /* CRC32C of the data blocks */
	uint32_t slot;          /* local slot, for tools and tests */
};
/* Puts a fragment: fi names it (uid, sno, epoch, index, k, m, seg_blocks, frag_blocks,
 * image_blocks, frag_crc; slot ignored) and image is its image_blocks blocks (any
 * alignment: copied; the caller may free it once this returns). Written, synced, its
 * "G" record committed, then cb(0): a fragment put is durable. Already here with the
 * same index and frag_crc: cb(0) once that put is (a retry; at a newer epoch, the
 * fragment's epoch becomes it); another fragment of the
 * segment here: -EEXIST. -EFBIG an image larger than a slot, -ESTALE an epoch below
 * the family's fence (also when the fence rises while the put waits), -ENOSPC no slot,
 * -EINVAL a geometry that does not hold (k, m 0, index >= k + m, image_blocks <=
 * frag_blocks, uid 0). */
int engine_frag_put_async(struct engine *eng, const struct engine_frag_info *fi,
			  const void *image, engine_cb cb, void *arg);
/* Reads nblocks image blocks at `block` into buf (SEG_ALIGN-aligned: -EINVAL
 * otherwise). -ENOENT not here (or being put or deleted), -ERANGE past the image. */
int engine_frag_read(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t block,
		     void *buf, uint32_t nblocks, engine_cb cb, void *arg);
/* Drops a fragment: its "G" record is deleted (durably, after the reads in flight),
 * then the slot is free. Not here: cb(0) (a retry). */
int engine_frag_delete_async(struct engine *eng, uint64_t uid, uint32_t sno, engine_cb cb,
			     void *arg);
/* The same, but only if the fragment is still one put at `epoch` or below when the drop
 * runs (an orphan check's judgement): put again since at a newer epoch (an encoding that
 * reuses it, engine_frag_put_async), it is kept and cb(-ESTALE). */
int engine_frag_drop_stale_async(struct engine *eng, uint64_t uid, uint32_t sno,
				 uint64_t epoch, engine_cb cb, void *arg);
/* 0 and *out, or -ENOENT (not here, or its put is not durable yet). */
int engine_frag_stat(const struct engine *eng, uint64_t uid, uint32_t sno,
		     struct engine_frag_info *out);
/* Every fragment held, in (uid, sno) order; stops at fn's first nonzero result. */
int engine_frag_list(const struct engine *eng,
		     int (*fn)(void *arg, const struct engine_frag_info *f), void *arg);

/* ---- copies of this engine's own segments (catch-up, engine/segcopy.c) ----
 * Reads nblocks at `block` of this engine's own sealed segment (uid, sno) into buf
 * (SEG_ALIGN-aligned, nblocks * ENGINE_BLOCK_SIZE bytes); the slot is kept from reuse
 * until cb. -ENOENT it is not here (or not sealed, or being freed), -EBUSY appends to
 * it are still being written here (sealed early, docs/replication.md "Seal and
 * reopen"), -ERANGE past what it holds or a misaligned buffer, -ENOMEM. */
int engine_segment_read_async(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t block,
			      void *buf, uint32_t nblocks, engine_cb cb, void *arg);
/* The blocks this engine's own sealed segment (uid, sno) holds, or -ENOENT, or -EBUSY
 * while appends to it are still being written here. */
int engine_segment_sealed_blocks(const struct engine *eng, uint64_t uid, uint32_t sno);
/* Does this engine's own log (not a held copy) have segment (uid, sno), in any state?
 * A segment whose first write never landed is not in it (docs/replication.md,
 * "Segment numbers"). */
bool engine_segment_here(const struct engine *eng, uint64_t uid, uint32_t sno);

/* ---- scrub of this engine's own sealed segments (engine/scrub.c) ----
 * The local copy of sealed segment (uid, sno) is read whole and each block judged by
 * the segment's own log (logcheck_classify): the header and every summary must decode,
 * every data block must have its summary's CRC32C. A bad data block is repaired from a
 * copy elsewhere (the mirror's fetch: the holder checks it before it sends it, this
 * node again on arrival), written back, read back and checked; once every repair is
 * done the store is flushed, so a repair is durable before cb. A block nothing can
 * judge (past the log's end, the data of a damaged summary) is UNCHECKED. */
enum engine_scrub_block {
	ENGINE_SCRUB_UNCHECKED = 0,
	ENGINE_SCRUB_GOOD,      /* checked good */
	ENGINE_SCRUB_BAD,       /* bad, and not repaired (no good copy, or a header or
				   summary: nothing says what it must be) */
	ENGINE_SCRUB_FIXED,     /* was bad, repaired: reads back good */
};
struct engine_scrub_seg {
	uint32_t blocks;        /* the local copy's length */
	uint8_t *state;         /* blocks entries: enum engine_scrub_block */
	uint32_t *crcs;         /* blocks entries: a GOOD or FIXED block's CRC32C */
	uint32_t nbad;          /* blocks found bad (FIXED and BAD) */
	uint32_t nfixed;        /* ... of which repaired */
	uint32_t nunchecked;
};
/* out is filled before cb (engine_scrub_seg_free it, after an error too). The slot is
 * kept from reuse until cb. 0 (cb runs once) or -ENOENT (no such sealed local copy),
 * -EBUSY (its last appends are not written here yet), -ENOMEM. */
int engine_segment_scrub_async(struct engine *eng, uint64_t uid, uint32_t sno,
			       struct engine_scrub_seg *out, engine_cb cb, void *arg);
void engine_scrub_seg_free(struct engine_scrub_seg *s);

/* Ends the family's open segment sno now, at its write pointer, as if it were full:
 * the batches already given blocks in it go out there, the next one opens the family's
 * next segment. For an owner whose holder of sno failed (docs/replication.md,
 * "Seal and reopen"): the mirror's sealed hook runs from inside this call. Engine
 * thread, not from inside an engine callback or a mirror hook. 0, or -ENOENT: sno is
 * not the open segment of a layer of uid (sealed already, or another family's). */
int engine_family_seal_open(struct engine *eng, uint64_t uid, uint32_t sno);
/* The mirror's word on the family's segment sno, sealed (engine_family_seal_open)
 * with fewer copies than its writes need: waits, every append given is on every
 * holder left and only waits for copies, which catch-up makes from the whole segment,
 * so the batches of sno not submitted yet go now (one at a time, past the in-flight
 * bound that would hold them behind the waiting ones for ever); !waits: an append
 * given since is not on every holder yet. 0, or -ENOENT (not a sealed segment of this
 * log). Engine thread; may submit batches (the mirror's append runs inside). */
int engine_family_waits_copies(struct engine *eng, uint64_t uid, uint32_t sno, bool waits);

/* Every segment of family uid in this engine's own log (not a held copy, not being
 * freed), in slot order: fn(arg, sno, blocks), blocks the length of a sealed one or
 * -EBUSY for an open one; stops at fn's first nonzero result, which it returns. One
 * pass over the slots: a replicated family's start-up checks its segment records
 * against it (replica.c, docs/cluster.md "After a restart or an adopt"). */
int engine_segment_own_each(const struct engine *eng, uint64_t uid,
			    int (*fn)(void *arg, uint32_t sno, int blocks), void *arg);

/* ---- taking a family over (docs/replication.md, "Takeover") ----
 * The sealed held copies (uid, snos[0..n-1]) become this engine's own log of family
 * uid, and the family's layers (its volume, snapshots, clones' roots in it) are rebuilt
 * from those logs alone, the way rebuild.c rebuilds a store (LAYER blocks, batches,
 * trims, merges, in sequence order). Every copy must be held here and sealed (-ENOENT,
 * -EBUSY otherwise); a layer id or a volume name of the family already in use here
 * refuses it (-EEXIST), and nothing changes. After cb(0): the volumes open by name like
 * any other; the family's next segments take numbers past every adopted one; the
 * store's sequence and generation counters are past the adopted ones; and all of it is
 * durable (a crash at any point leaves either the held copies or the adopted family,
 * never neither: docs/engine.md, "Adopting a family"). The reads of the copies are
 * asynchronous (a job, engine/job.c); the loop serves other volumes meanwhile. */
int engine_family_adopt_async(struct engine *eng, uint64_t uid, const uint32_t *snos,
			      size_t n, engine_cb cb, void *arg);
int engine_family_adopt(struct engine *eng, uint64_t uid, const uint32_t *snos, size_t n);

/* A sealed segment of the family with no copy here (an erasure-coded stripe whose
 * replicas are gone): adopted as a remote entry (docs/engine.md, "Segments without a
 * local slot"), its reads fetches, its map from the family checkpoint. */
struct engine_adopt_remote {
	uint32_t sno;
	uint32_t length;      /* its sealed length, blocks (> 0) */
	const void *header;   /* its block 0 (the segment header), read from elsewhere */
	bool whole;           /* out: its log is needed (it is above the family checkpoint
				 found, or none was): the adoption ended -EREMOTE */
};

/* engine_family_adopt_async with, besides the held copies snos[0..n-1] (n may be 0),
 * rem[0..nrem-1] (owned by the caller until cb): each becomes a remote entry, in the
 * same commit as the layers (its "T" record beside their maps). A remote segment the
 * adoption would have to read whole ends it with -EREMOTE before anything is written,
 * with `whole` set on each such one (make them held copies and adopt again); a header
 * that is not that segment's, USED, of the family: -EILSEQ. */
int engine_family_adopt_remote_async(struct engine *eng, uint64_t uid, const uint32_t *snos,
				     size_t n, struct engine_adopt_remote *rem, size_t nrem,
				     engine_cb cb, void *arg);
/* The reverse, for a node that lost a family to another owner: the family's layers
 * leave the catalog and each of its sealed segments numbered in keep[0..nkeep-1]
 * becomes a held copy (the rest are freed); open ones are sealed at their length first.
 * Volumes of the family must not be open (-EBUSY), and no layer of another family
 * (a clone made here) may read through one of its snapshots (-EMLINK: the clone would
 * lose its base; flatten or remove it first). */
int engine_family_release_async(struct engine *eng, uint64_t uid, const uint32_t *keep,
				size_t nkeep, engine_cb cb, void *arg);
/* The same, each kept copy sealed at keep_len[i] blocks (the length its segment record
 * gives it: blocks past it were never acknowledged, and a takeover compares the two);
 * a segment shorter than that is freed instead. keep_len NULL, or keep_len[i]
 * UINT32_MAX: where it ends. */
int engine_family_release_to_async(struct engine *eng, uint64_t uid, const uint32_t *keep,
				   const uint32_t *keep_len, size_t nkeep, engine_cb cb,
				   void *arg);
int engine_family_release(struct engine *eng, uint64_t uid, const uint32_t *keep,
			  size_t nkeep);
/* The layers of other families (clones made here) that read through a layer of family
 * uid: their number, and "c1 (of vm0@base), c2 (of vm0@s2)" into buf (cut to len). */
int engine_family_clones(struct engine *eng, uint64_t uid, char *buf, size_t len);
/* The family uid of a volume (0 and *uid, or -ENOENT). */
int engine_volume_family(struct engine *eng, const char *name, uint64_t *uid);
/* The sealed segment (uid, sno) of this node's own log gives up its local copy: its
 * reads go to its copies elsewhere (the mirror's read) from now on, and its store slot
 * is freed by the next checkpoint (engine/remote.c). For a segment whose every copy
 * elsewhere is whole and sealed: the caller (replication/) knows, the engine does not.
 * Engine thread, not from inside an engine callback. 0; -ENOENT (no such segment
 * here); -EOPNOTSUPP (its family has no copies elsewhere to read); -EBUSY (not sealed
 * and settled yet, a checkpoint or the cleaner or a job on it: try later); -ENOTEMPTY
 * (it holds LAYER records, which start-up reads from the store: it stays until the
 * cleaner carries them); -ENOSPC (no remote entry free); -ENOMEM (the segment stays
 * local, in part). */
int engine_segment_drop_local(struct engine *eng, uint64_t uid, uint32_t sno);
/* The same, with the segment's own list of what it holds: lba[b] the LBA that block b
 * was written for, UINT64_MAX where b is no data (logcheck_image_lbas() of its image).
 * Only those LBAs are looked up in each layer's map, instead of a walk of every layer's
 * whole map (a 100 GiB volume: 26M entries, ~100 ms of the loop per segment dropped).
 * A hint that leaves entries naming the slot (stale, short) costs the walk after all:
 * never a wrong map. lba NULL: the walk. */
int engine_segment_drop_local_hinted(struct engine *eng, uint64_t uid, uint32_t sno,
				     const uint64_t *lba, uint32_t nblocks);
/* Does this engine run family uid (it has layers of it), rather than hold copies of it
 * for another owner? A node that lost a family runs it until its release is done. */
bool engine_family_here(const struct engine *eng, uint64_t uid);
/* Segment numbers of family uid (docs/replication.md, "Segment numbers"). A number is
 * spent once anything outside this engine may name it (a segment record in etcd), even
 * if no segment of it ever reached the log: never draw it again.
 * reserve: the counter rises to `next` at least, at once (a segment opened after
 * this call takes a number past it), and the family's "F" record says at least
 * max(counter, `durable`) durably before cb(0): a restart starts the counter there.
 * An owner reserves ahead (durable past the segment it is about to record) so that
 * its restart never redraws a recorded number; a new owner reserves past every
 * number its records name. A family without layers here loses its record at the next
 * checkpoint (nothing opens its segments): reserve after an adopt, not before.
 * -EINVAL (uid 0, the catalog's), -ENOMEM. The blocking form: tools and tests. */
int engine_family_reserve_sno_async(struct engine *eng, uint64_t uid, uint32_t next,
				    uint32_t durable, engine_cb cb, void *arg);
int engine_family_reserve_sno(struct engine *eng, uint64_t uid, uint32_t next,
			      uint32_t durable);
/* The number family uid's next segment takes (0: none was ever numbered here). */
uint32_t engine_family_next_sno(const struct engine *eng, uint64_t uid);
/* What the family's "F" record says durably: numbers below it are never drawn again
 * after a restart (0: no record). */
uint32_t engine_family_durable_sno(const struct engine *eng, uint64_t uid);

/* ---- A family whose root reads through a remote base (docs/engine.md, "Remote bases")
 * A clone made on another node than its parent's owner is a family of its own whose
 * root reads, where no layer of the family maps a block, through a snapshot that this
 * engine does not run (docs/replication.md, "Snapshots and clones across owners").
 * The engine does not know where that snapshot is: it hands each such range to the
 * registered ops (replication/ implements them), as segment.h's mirror. The base is
 * kept in memory only: whoever opens or adopts the family sets it again from the
 * cluster's record, before the first read and before an adopt's replay. */
struct engine_base {
	uint64_t uid;    /* the parent family */
	uint64_t layer;  /* the snapshot's layer id in it */
	uint64_t blocks; /* LBAs at or past this never read through (the snapshot's size) */
	char volume[ENGINE_VOLUME_NAME_MAX + 1]; /* the parent volume's name: the transport's,
						    to find who runs the family */
};
struct engine_base_ops {
	/* Reads nblocks (1..ENGINE_BASE_READ_MAX) blocks at lba of base into buf (any
	 * alignment). Returns 0 and cb then runs exactly once, from the engine's thread
	 * (a later engine_poll or the transport's own loop), with 0 once every byte is in
	 * buf, or -errno; returns -errno and cb never runs. cb must not run from inside
	 * this call. Waiting for a base that has no owner is the transport's (bounded by
	 * its own timeout): the engine fails the client read with whatever it answers. */
	int (*read)(void *ctx, const struct engine_base *base, uint64_t lba, uint32_t nblocks,
		    void *buf, engine_cb cb, void *arg);
};
#define ENGINE_BASE_READ_MAX 256u
/* Sets (ops NULL: clears) the transport; ops and ctx outlive the engine or the next
 * call. Without one a read that falls through to a base fails with -ENOTCONN. */
void engine_base_ops_set(struct engine *eng, const struct engine_base_ops *ops, void *ctx);
/* Family uid's root reads through base (NULL: no base any more, e.g. after a flatten).
 * May be called before the family has layers here (an adopt to come). Trims of the
 * family are written as allocated zeros while it has a base, so that the range stops
 * reading through whatever replays them. -EINVAL uid 0 or base->uid == uid, -ENOMEM. */
int engine_family_base_set(struct engine *eng, uint64_t uid, const struct engine_base *base);
/* 0 and *out, or -ENOENT: family uid has no remote base here. */
int engine_family_base_get(const struct engine *eng, uint64_t uid, struct engine_base *out);

/* ---- The catalog a rebuild would produce (quill-inspect --catalog) ----
 * Reads the store's log alone (no RocksDB, nothing written) and calls fn for every
 * layer that engine_open() with rebuild_meta would create, oldest first. */
struct engine_layer_info {
	uint64_t id;
	uint64_t uid;             /* the volume's identity (snapshots share it) */
	bool snapshot;
	char name[ENGINE_VOLUME_NAME_MAX + 1];   /* the volume's, or the snapshot's */
	char volume[ENGINE_VOLUME_NAME_MAX + 1]; /* snapshots: their volume's ("?": none) */
	uint64_t size;            /* bytes */
	uint64_t parent_id;       /* 0: none */
	uint64_t overlap;         /* blocks read through the parent */
	bool flattening;
	uint64_t own_blocks;      /* data blocks its own map holds */
	uint64_t merged;          /* snapshots merged into it (aliases) */
	uint32_t sector_size;     /* logical sector: 512 or 4096 bytes */
};
int engine_catalog_scan(const char *store_path,
			int (*fn)(const struct engine_layer_info *info, void *arg), void *arg);

#endif
