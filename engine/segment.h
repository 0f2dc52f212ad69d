/* engine/segment.h — the engine's one seam to where segments live.
 *
 * The engine's log is a chain of segments per volume. This layer owns where they
 * are: the slot table (which slot holds which volume's segment, in which generation,
 * written how far), allocating and releasing slots, where a block of a segment is,
 * and every call into the device (store/). Above it, the engine names a segment by
 * its slot and a block within it; it never computes a byte offset and never calls
 * store/ (docs/engine.md, "The segment layer").
 *
 * What a segment needs, and nothing more:
 *   open    seg_open: a free slot for a volume's next segment; its USED header goes
 *           out with the first append (one write, not two)
 *   append  seg_append: a batch at the segment's write pointer
 *   read    seg_read: a range of blocks
 *   seal    seg_seal: no more appends
 *   delete  seg_delete: a FREE header, then (once durable) seg_release
 *   list    seg_list_sync: the headers of every slot (start-up)
 *   flush   seg_flush: every append that completed before is durable
 *
 * Where segments live is a `struct seg_ops` table: the local store
 * (segment_local.c) is the first implementation; replication/ will be the second,
 * behind the same calls. So every call that does I/O is asynchronous with the store's
 * contract: it returns 0 and its callback then runs exactly once, from a later
 * seg_poll() (or reap/wait_fd) on the engine's thread, with >= 0 or -errno; or it
 * returns -errno and the callback never runs. Nothing here blocks the loop thread
 * except the *_sync calls, which are for start-up and tools only.
 *
 * Threading: the engine's thread only, like the store.
 */
#ifndef QUILL_ENGINE_SEGMENT_H
#define QUILL_ENGINE_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct engine;
struct loop_wait;
struct engine_volume;
struct segment_header;
struct segs;

typedef void (*seg_cb)(void *arg, int res);

/* Every buffer of segment I/O is aligned to this (seg_buf_alloc's are). */
#define SEG_ALIGN 4096u

/* ---- the slot table ---- */

enum slot_state { SLOT_FREE = 0, SLOT_OPEN, SLOT_SEALED };

/* One slot of the local store and the segment in it. state, volume_id, generation and
 * used are the segment layer's; the rest is the engine's accounting of the segment. */
struct slot {
	enum slot_state state;
	uint64_t volume_id;
	uint64_t family_uid; /* with sno: the id of the segment in it (its header's) */
	uint32_t sno;
	uint64_t generation;
	uint64_t last_seq;  /* newest batch: the segment's age for the cleaner */
	uint32_t live;      /* blocks some volume's map points at */
	uint32_t dead;      /* blocks a map (or the catalog) pointed at and no longer does */
	uint32_t sums;      /* summary blocks (batches) in it: moved, its live blocks
			       need one. Both counted only while dead_known */
	uint32_t used;      /* blocks written: header, summaries, data (the write pointer) */
	uint32_t readers;   /* reads in flight: the slot is not reused meanwhile */
	uint32_t pending;   /* batches written here that have not retired */
	uint32_t local_writes; /* mirrored appends whose local half is in flight: a copy
				  made elsewhere from this slot waits for them */
	bool waits_copies;  /* sealed below the copies its writes need, every append given
			       is on every holder left (engine_family_waits_copies): its
			       batches not yet submitted go past the in-flight bound */
	uint64_t first_seq; /* no batch in it is older (a lower bound): tombstone pins */
	uint32_t tombs;     /* TRIM, ZERO and TOMB entries in it: they hide older blocks */
	uint32_t records;   /* LAYER entries in it (any, current or not) */
	uint32_t fmaps;     /* MAPS blocks of its family's newest complete family
			       checkpoint (fckpt.c): not freed while some are */
	bool carried;       /* the cleaner carried its tombstones forward: not pinned */
	bool freeing;       /* its FREE header is being written: not reused meanwhile */
	bool broken;        /* a write here failed: nothing after it can be replayed */
	bool gc_skip;       /* holds a block that failed its checksum: not cleanable */
	bool dead_known;    /* opened here since the start: `dead` is exact (a slot found
			       at start-up, adopted or held counts none; gc.c guesses) */
	bool mirrored;      /* its family has copies elsewhere: the mirror hooks run */
	bool held;          /* a copy of another node's segment (engine/held.c): volume_id
			       0, never cleaned, freed by a checkpoint, prezeroed or
			       reused until the holder drops it (seg_release) */
	bool remote;        /* a remote entry (index >= the store's slot count): a sealed
			       segment of this node's log with no local copy; its reads go
			       to the copies elsewhere (seg_drop_local) */
	bool dropped;       /* its segment moved to a remote entry: freeing this slot frees
			       the local copy only, never the copies elsewhere */
};

/* A family (the layers sharing a uid): the next number its segments take, and what
 * this store has of it. The index of the family table (eng->families, found by uid in
 * O(1): seg_family_get) is the one place that says whether a family is here; an entry
 * is never removed while the engine runs. */
struct seg_family {
	uint64_t uid;
	uint32_t next_sno; /* numbers below it may have been given out: never again */
	uint32_t saved_sno; /* what its "F" record in the metadata says (0: none) */
	uint32_t nlayers;  /* its layers in eng->vols (seg_family_layer_added/_removed) */
	uint32_t nlog;     /* slots of its own log in use (not held copies; remote entries
			      included, not the slots they were dropped from): kept by
			      seg_slot_set, through which every slot changes */
	bool fckpt_owed;   /* a checkpoint took its dirty chunks and wrote no family
			      checkpoint (one that was not the families' turn, or its log had
			      no open segment): the next family checkpoint writes its */
	bool sno_unsure;   /* adopted here and no reservation since: the old owner may
			      have recorded numbers at or past next_sno, so only a write
			      (after the takeover's reservation) opens a segment of it */
};

/* Who asks for a slot decides how deep into the reserve it may go. */
enum slot_user { SLOT_FOR_WRITE, SLOT_FOR_TRIM, SLOT_FOR_GC };

/* ---- where segments live: the implementations ---- */

/* Blocks are QUILL_BLOCK_SIZE; a range never crosses its segment's end; buffers are
 * seg_buf_alloc()'s alignment. The async calls follow the contract above. */
struct seg_ops {
	int (*readv)(struct segs *sg, uint32_t slot, uint32_t block, const struct iovec *iov,
		     int iovcnt, seg_cb cb, void *arg);
	int (*writev)(struct segs *sg, uint32_t slot, uint32_t block, const struct iovec *iov,
		      int iovcnt, seg_cb cb, void *arg);
	int (*flush)(struct segs *sg, seg_cb cb, void *arg);
	/* blocking forms, for start-up and tools: 0 or -errno */
	int (*read_sync)(struct segs *sg, uint32_t slot, uint32_t block, void *buf, size_t len);
	int (*write_sync)(struct segs *sg, uint32_t slot, uint32_t block, const void *buf,
			  size_t len);
	int (*flush_sync)(struct segs *sg);
	/* completions: store.h's store_poll, store_reap, store_wait_fd, store_event_fd,
	 * store_inflight */
	int (*poll)(struct segs *sg, int timeout_ms);
	int (*reap)(struct segs *sg);
	int (*wait_fd)(struct segs *sg, struct loop_wait *w, int timeout_ms);
	int (*event_fd)(const struct segs *sg);
	unsigned (*inflight)(const struct segs *sg);
	void (*close)(struct segs *sg);
};

/* Embedded first in each implementation's own struct. */
struct segs {
	const struct seg_ops *ops;
	uint32_t count;          /* slots (0 until the layout is known) */
	uint32_t blocks_per_seg;
};

/* ---- a fetch: blocks of a segment from its copies elsewhere ----
 * The one way the engine reads a copy that is not its store's: a remote entry's
 * ordinary read (remote.c) and a repair's read-around of a block whose local copy
 * failed (repair.c) both call seg_fetch(), which asks the mirror's fetch. A fetch is a
 * run: blocks [block, block + nblocks) of one segment, one peer request when one
 * holder has them all good. Wanted blocks name where their good copy goes (any
 * address: the mirror copies each block there from what arrived, no bounce) and the
 * map's CRC32C they must have; the others (dst NULL) are blocks between two runs of
 * wanted ones (a summary, another batch's data), asked only to join the runs.
 * The mirror tries the segment's holders in turn (docs/replication.md, "Fetches"):
 * each block that arrives is checked against its CRC before it is copied to dst;
 * the blocks still missing are asked of the next holder. */

#define SEG_FETCH_MAX_BLOCKS 1024u /* a run: one peer request's worth (4 MiB) */

struct seg_fetch_block {
	uint8_t *dst; /* where its good copy goes; NULL: not wanted */
	uint32_t crc; /* the map's CRC32C of it (wanted blocks) */
	int res;      /* set before done: 0 (dst holds a good copy), -EILSEQ (copies were
			 read and each failed the CRC), another -errno (none was read) */
};

struct seg_fetch {
	/* the caller's (seg_fetch's arguments): owned by it until cb */
	uint32_t block, nblocks; /* 1..SEG_FETCH_MAX_BLOCKS, within the segment */
	struct seg_fetch_block *want; /* nblocks entries */
	seg_cb cb;                    /* res: 0 when every wanted block arrived good, else
					 the first wanted block's error */
	void *arg;
	bool no_crcs; /* the wanted blocks have no map CRC (crc unused): the cleaner's read
			 of a whole remote segment, summaries included. A block is good when
			 its copy's own checks pass it (a fragment's CRC table; a replica's
			 block as it arrives): the caller checks what it uses */
	/* filled by seg_fetch for the mirror (eng: the segment layer's own) */
	struct engine *eng;
	uint64_t uid;
	uint32_t sno, slot;
	bool remote; /* the segment has no local copy: this is its ordinary read (quiet),
			not a read-around of a failed one */
	void (*done)(struct seg_fetch *f, int res); /* the mirror's completion, once */
	uint32_t requests; /* set by the mirror before done: the peer requests it took */
};

/* ---- copies beyond the local store (replication/replica.c) ----
 * Copies of a family's segments on other nodes. Each hook is called by segment.c on
 * the engine's thread, only for the segments of families for which wants() was true
 * at seg_open (slot.mirrored). append and flush follow the async contract above; the
 * engine's call (seg_append, seg_flush) completes when the local I/O AND the mirror's
 * have, with the first error of the two. opened's epoch is 0: the mirror knows the
 * family's. sealed's length is the blocks the segment will hold (appends still in
 * flight or not yet submitted included); deleted comes with the FREE header's write,
 * and the slot may be given to another segment right after. deleted is also told of
 * a segment that was not opened in this process (slot.mirrored false: a restart, an
 * adopt) when its family is wanted now, so (uid, sno) name the segment: its copies
 * and its record elsewhere would leak otherwise. Without a mirror (or for a family it
 * does not want) nothing of this runs: the local path is unchanged. */
struct seg_mirror_ops {
	bool (*wants)(void *ctx, uint64_t uid);
	void (*opened)(void *ctx, uint32_t slot, uint64_t uid, uint32_t sno, uint64_t epoch);
	int (*append)(void *ctx, uint32_t slot, uint32_t block, const struct iovec *iov,
		      int iovcnt, uint32_t nblocks, bool fua, seg_cb cb, void *arg);
	int (*flush)(void *ctx, seg_cb cb, void *arg);
	void (*sealed)(void *ctx, uint32_t slot, uint32_t length);
	void (*deleted)(void *ctx, uint32_t slot, uint64_t uid, uint32_t sno);
	/* fetch (optional, NULL: no copy can be read): f's blocks of segment (f->uid,
	 * f->sno), of a family it wants, from copies elsewhere into f->want[] (struct
	 * seg_fetch above; seg_fetch() is the one caller). Every wanted block's res is set
	 * before f->done(f, res) (res: the first wanted block's error, or 0). The async
	 * contract above: done runs from the loop, never inside this call; -errno: it
	 * never runs. Which copies it tried and why each failed is its to log. */
	int (*fetch)(void *ctx, struct seg_fetch *f);
	/* replies_awaited (optional): how many replies from other nodes the appends in
	 * flight still wait for, each a wake-up of the loop of its own (a reply read in
	 * the ring): the engine sleeps for all of them at once (engine_wait_fd). */
	unsigned (*replies_awaited)(void *ctx);
};
/* Sets (ops NULL: clears) the mirror; the engine's thread, with no segment I/O of a
 * mirrored family in flight. ops and ctx outlive the engine or the next call. Once
 * cleared, segments that were mirrored go on locally only (a node that stops). */
void seg_mirror_set(struct engine *eng, const struct seg_mirror_ops *ops, void *ctx);

/* Closes whatever implementation sg is; NULL is fine. Waits for its I/O in flight. */
void seg_close(struct segs *sg);
/* Buffers fit for every implementation's I/O (aligned, zeroed); NULL without memory. */
void *seg_buf_alloc(size_t len);
/* ... and a copy of src in one (not zeroed first) */
void *seg_buf_dup(const void *src, size_t len);
void seg_buf_free(void *buf);

/* ---- the segment calls (segment.c): by slot, on eng's slot table ---- */

/* open: gives vol a fresh slot (vol->open_slot; the one it had is sealed) for the next
 * segment of its family (vol->rec.uid), numbered by the family's counter. Writes
 * leave gc_reserve slots to the cleaner; trims, which free space, may use all but the
 * last one. -ENOSPC when none is left for `who`; -ENOMEM; -EOVERFLOW when the family
 * has used up its 2^32 segment numbers. */
int seg_open(struct engine *eng, struct engine_volume *vol, enum slot_user who);
/* append: nblocks blocks of buf at block `block` of slot's segment (its write
 * pointer, reserved by the caller in slot.used). The first append (block 0) carries
 * the segment's USED header in buf's first block: encoded here, naming the slot's
 * volume and generation and seq, the first batch's sequence number. */
int seg_append(struct engine *eng, uint32_t slot, uint32_t block, void *buf, uint32_t nblocks,
	       uint64_t seq, seg_cb cb, void *arg);
/* read: blocks starting at `block` of slot's segment into iov. -EREMOTE for a remote
 * entry (seg_is_remote): the caller fetches from the copies. */
int seg_read(struct engine *eng, uint32_t slot, uint32_t block, const struct iovec *iov,
	     int iovcnt, seg_cb cb, void *arg);
/* hold: a free slot (leaving gc_reserve slots to the cleaner, as a write does) for a
 * copy of segment (uid, sno) of another node: OPEN, held, volume_id 0. Its blocks are
 * the owner's, header included (seg_write). -ENOSPC. */
int seg_hold(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t *slot);
/* Start-up: slot holds the copy of (uid, sno) that the held table names, `used`
 * blocks of it written; sealed or open. */
void seg_hold_restore(struct engine *eng, uint32_t slot, uint64_t uid, uint32_t sno,
		      bool sealed, uint32_t used);
/* write: blocks of a held slot as they are (no header of this store's is encoded). */
int seg_write(struct engine *eng, uint32_t slot, uint32_t block, const struct iovec *iov,
	      int iovcnt, seg_cb cb, void *arg);
/* seal: the segment takes no more appends (its slot stays in use). */
void seg_seal(struct engine *eng, uint32_t slot);
/* delete: writes slot's FREE header (buf: one block of the caller's, kept until cb);
 * the slot is released by seg_release once the header is durable (seg_flush). */
int seg_delete(struct engine *eng, uint32_t slot, void *buf, seg_cb cb, void *arg);
/* The slot becomes free (no-op if it is); with reads in flight it is noted and
 * released by seg_release_deferred() once they are done. */
void seg_release(struct engine *eng, uint32_t slot);
void seg_release_deferred(struct engine *eng);
/* flush: every append and delete that completed before this call is durable at cb. */
int seg_flush(struct engine *eng, seg_cb cb, void *arg);
/* flush_local: the same for this node's store alone, never waiting for the mirror:
 * for copies held for other nodes (engine_held_flush), whose owner asks for them
 * while its own flush may be waiting on this node's. */
int seg_flush_local(struct engine *eng, seg_cb cb, void *arg);

/* ---- remote entries (segment_remote.c): sealed segments with no local copy ---- */

/* The slot table: the store's segment_count slots, then as many remote entries
 * (eng->slot_cap set); NULL without memory. */
struct slot *seg_slots_alloc(struct engine *eng);
/* Is slot a remote entry (its reads go to the copies elsewhere)? */
bool seg_is_remote(const struct engine *eng, uint32_t slot);
/* drop_local: the sealed segment in store slot `slot` (settled: nothing in flight in
 * it, no LAYER entry) gets a remote entry *remote with its id and accounting, live 0;
 * the store slot is marked dropped (its freeing frees the local copy only). The caller
 * moves every map entry from slot to *remote. -EBUSY (not such a segment now),
 * -ENOSPC (no remote entry free). */
int seg_drop_local(struct engine *eng, uint32_t slot, uint32_t *remote);
/* The delete of a remote entry (not seg_delete: there is no header to write, and so
 * nothing to wait for): the mirror deletes the copies; the entry is released with the
 * store slots freed beside it (seg_release). */
void seg_remote_delete(struct engine *eng, uint32_t slot);
/* Family uid went to another owner (a release): its remote entries are forgotten, its
 * copies left alone (they are the new owner's segments now). */
void seg_remote_forget(struct engine *eng, uint64_t uid);
/* An adoption's remote entry (adopt.c): a free entry made the sealed segment (uid,
 * sno) of `used` blocks, generation gen, held (no "T" record, never freed by a
 * checkpoint) until seg_remote_adopt_end. *slot: the entry; -ENOSPC. */
int seg_remote_adopt_begin(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t used,
			   uint64_t gen, uint32_t *slot);
/* adopted: the entry is the family's (its "T" record is in the adoption's commit:
 * seg_table_put); else it is free again. */
void seg_remote_adopt_end(struct engine *eng, uint32_t slot, bool adopted);
/* Start-up, after the segment table is loaded and the maps counted: the remote
 * entries the table records. */
void seg_remote_restore(struct engine *eng);
/* Before a grow (at open, the segment table not loaded yet): -EBUSY when the metadata
 * records a remote entry. Its number lies past the store's slots, where a grow puts
 * new store slots, so it would become one: the maps naming it would read an unwritten
 * slot, and the entry would be lost. */
int seg_remote_check_grow(struct engine *eng);

/* fetch: f->nblocks blocks of slot's segment from f->block, from its copies elsewhere
 * (struct seg_fetch above; f filled by the caller: block, nblocks, want, cb, arg).
 * The slot is held (its readers count) until cb, so it is not reused meanwhile.
 * -EOPNOTSUPP: no copy to ask (no mirror, no fetch op, a family it does not want, a
 * held slot). Otherwise the async contract: 0 and cb(arg, res) once, or -errno. */
int seg_fetch(struct engine *eng, uint32_t slot, struct seg_fetch *f);

/* Start-up and tools only (block the thread): */
int seg_read_sync(struct engine *eng, uint32_t slot, uint32_t block, void *buf,
		  uint32_t nblocks);
int seg_delete_sync(struct engine *eng, uint32_t slot, void *buf); /* not flushed */
int seg_flush_sync(struct engine *eng);
/* A repair of a sealed segment at start-up: block `block` of slot becomes zeros (a
 * torn summary, so that its log ends there for good). */
int seg_zero_block_sync(struct engine *eng, uint32_t slot, uint32_t block);
/* list: every slot's header in slot order: fn(arg, slot, h) with h the decoded header
 * of this store's segment there, or NULL (never used, garbage, another store's). Stops
 * at fn's first nonzero result, or a read's -errno. The headers are read many at a
 * time through seg_read and seg_poll, which also runs the completions of whatever
 * else is in flight: start-up and tools only. */
int seg_list_sync(struct engine *eng,
		  int (*fn)(void *arg, uint32_t slot, const struct segment_header *h), void *arg);
/* Decodes a segment's header block (buf: QUILL_BLOCK_SIZE): 0 if it is one of this
 * store's, -EINVAL otherwise. */
int seg_header_decode(const struct engine *eng, const void *buf, struct segment_header *h);
/* Start-up, for every header found (USED or FREE): the slot takes the segment's id
 * (USED), and its family's counter restarts past its number, so that no number is
 * given out twice. -ENOMEM. */
int seg_note_header(struct engine *eng, uint32_t slot, const struct segment_header *h);
/* A metadata rebuild (--rebuild-meta) lost the "F" records, and with them the numbers
 * reserved past the log (engine_family_reserve_sno: a segment record elsewhere may
 * name them, with no header of them here). Every family's counter goes
 * SEG_REBUILD_SNO_MARGIN past the newest number its headers name: a reservation goes
 * at most 64 numbers past the segment being placed (replication/numbers.c), and
 * numbers are 32 bits, so skipping costs nothing. The cluster's reconciliation raises
 * it past every record as well before a segment is placed (docs/replication.md). */
#define SEG_REBUILD_SNO_MARGIN 1024u
void seg_families_rebuilt(struct engine *eng);
/* Family uid's entry (O(1): a hash index by uid), or NULL. */
const struct seg_family *seg_family_get(const struct engine *eng, uint64_t uid);
/* Sets family uid's fckpt_owed (a family not here: nothing). */
void seg_family_fckpt_owed(struct engine *eng, uint64_t uid, bool owed);
/* Sets family uid's sno_unsure (a family not here: nothing). */
void seg_family_sno_unsure(struct engine *eng, uint64_t uid, bool unsure);
/* A layer of family uid joined eng->vols / left it. added: 0 or -ENOMEM (the entry
 * could not be made: the layer is not added). */
int seg_family_layer_added(struct engine *eng, uint64_t uid);
void seg_family_layer_removed(struct engine *eng, uint64_t uid);
/* Gives slot its new value `to`: the one way a slot is taken, freed or changes owner
 * (state from or to FREE, held, family_uid), so that its family's count of own-log
 * slots (nlog) follows. Any other field (OPEN to SEALED too) may be written in place. */
void seg_slot_set(struct engine *eng, uint32_t slot, const struct slot *to);
/* Does the family table agree with a walk of eng->vols and the slots (tests, tools)?
 * 0, or -EUCLEAN with the first disagreement logged. */
int seg_families_check(const struct engine *eng);

/* The completions of the calls above (engine_poll and friends): store.h's meaning. */
int seg_poll(struct engine *eng, int timeout_ms);
int seg_reap(struct engine *eng);
int seg_wait_fd(struct engine *eng, struct loop_wait *w, int timeout_ms);
int seg_event_fd(const struct engine *eng);
unsigned seg_inflight(const struct engine *eng);

/* ---- the segment table in the checkpoint (docs/format.md, "The segment table") ----
 * A settled segment (sealed, every batch retired and covered by the checkpoint, no
 * LAYER entry) is recorded with the checkpoint; start-up then takes its state from
 * the record instead of reading its log, when its header still names the same
 * generation. */

struct meta_batch;
/* Puts into mb the records that changed since the last capture (engine thread, with
 * the map of the checkpoint at seq). -ENOMEM: nothing put. */
int seg_table_capture(struct engine *eng, struct meta_batch *mb, uint64_t seq);
/* Puts into mb the "F" record of every family that has a layer, at its counter (a
 * metadata rebuild's first commit: rebuild.c). */
void seg_families_put(struct engine *eng, struct meta_batch *mb);
/* The checkpoint of the last capture did not land: the next one writes every record. */
void seg_table_unsure(struct engine *eng);
/* Start-up: the records of the stored table, and the families' counters. */
int seg_table_load(struct engine *eng);
/* slot's "T" record into mb as it is now (whatever the checkpoint's rules: an adoption
 * commits its remote entries' with their maps), and noted as stored. */
int seg_table_put(struct engine *eng, struct meta_batch *mb, uint32_t slot);
/* Start-up: if slot's record says the segment whose header is h is settled and the
 * checkpoint at ckpt_seq covers it, sets the slot's state from it (sealed, owned by
 * volume_id) and returns true: its log need not be read. */
bool seg_table_restore(struct engine *eng, uint32_t slot, const struct segment_header *h,
		       uint64_t ckpt_seq, uint64_t volume_id);

/* ---- the local store (segment_local.c) ----
 * Its device also holds the superblock (superblock.c) and free space that prezero.c
 * readies; those are the local store's own upkeep, by byte offset, and have no
 * meaning for another implementation: hence the seg_dev_* calls below. */

/* Opens the store at path (created with create_size if missing and create_size > 0;
 * queue_depth 0: the store's default). */
int seg_local_open(const char *path, uint64_t create_size, unsigned queue_depth,
		   struct segs **out);
/* Where the slots are, once the superblock says: slot i starts at data_offset +
 * i * segment_size. */
void seg_local_layout(struct segs *sg, uint64_t data_offset, uint32_t segment_size,
		      uint32_t count);
/* store.h's store_size, store_created, store_grow, store_next_data, the sync I/O and
 * store_write, on the device of a local sg. */
uint64_t seg_dev_size(const struct segs *sg);
bool seg_dev_created(const struct segs *sg);
int seg_dev_grow(struct segs *sg, uint64_t size);
int seg_dev_next_data(struct segs *sg, uint64_t off, uint64_t *start, uint64_t *end);
int seg_dev_read_sync(struct segs *sg, uint64_t off, void *buf, size_t len);
int seg_dev_write_sync(struct segs *sg, uint64_t off, const void *buf, size_t len);
int seg_dev_flush_sync(struct segs *sg);
int seg_dev_write(struct segs *sg, uint64_t off, const void *buf, size_t len, seg_cb cb,
		  void *arg);
/* Byte offset of slot's block 0 on the device (slot == count: the end of the slots). */
uint64_t seg_dev_slot_offset(const struct segs *sg, uint32_t slot);

#endif
