/* engine/engine_internal.h — the engine's state, shared by its .c files only. */
#ifndef QUILL_ENGINE_INTERNAL_H
#define QUILL_ENGINE_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "engine/map.h"
#include "engine/ondisk.h"
#include "engine/segment.h"

struct meta;
struct meta_batch;
struct eng_held;
struct eng_frags;

#define ENG_LOG "engine"
#define ENG_GC_RESERVE_DEFAULT 2
/* A slot more than this % live is not worth cleaning: the cleaner would rewrite ten
 * blocks to win one, and writes would crawl. So the store is full when no slot is
 * below that: about 90% of its blocks hold live data. */
#define ENG_GC_MAX_LIVE_PCT 90u
#define ENG_GC_CKPT_MIN_MS 200u /* between checkpoints the automatic cleaner asks for */
/* The cleaner appends a victim's live blocks this many per poll, and only while its
 * volume has fewer than ENG_GC_MAX_INFLIGHT batches on their way (a slice may spill
 * into one more): the rest of the pipeline stays the clients' (gc.c, "Slices"). */
#define ENG_GC_SLICE_BLOCKS 64u
#define ENG_GC_MAX_INFLIGHT 2u
/* Between two remote victims (their reads are peer requests, their moves the
 * volume's writes), and after a remote victim's read failed. */
#define ENG_GC_REMOTE_GAP_MS 100u
#define ENG_GC_REMOTE_RETRY_MS 5000u
/* After a remote victim whose live blocks were all being written over (a write or trim
 * of each not retired yet): usually they die as those retire and a checkpoint frees
 * the entry; if not, it is taken again after this. */
#define ENG_GC_REMOTE_PENDING_MS 1000u
/* A remote entry is cleaned for the cluster's space, not for lack of room here: it is
 * read whole across the network and its live blocks written again, so only one at
 * least half dead is worth it (at most a block written per block freed). The local
 * rule (90% live) would rewrite once every segment written in small batches, whose
 * summaries count as dead. */
#define ENG_GC_REMOTE_MAX_LIVE_PCT 50u
/* ...and only while the dead blocks of the remote entries that still have live ones
 * (the empty ones wait only for a checkpoint) are more than this share of their
 * blocks (the cluster's space they waste is bounded: at most a third more than
 * their live data). Cleaning each victim as soon as it is half dead moved half a
 * segment for each half freed, while the clients wrote (an EC volume under random
 * writes: a remote victim every ~200 ms, each a whole segment fetched and half of it
 * appended, replicated and encoded again); waiting, the victims are emptier when
 * taken, and a burst of writes is not cleaned under. */
#define ENG_GC_REMOTE_DEAD_PCT 25u
struct engine;
/* Is the cleaner's next slice of moves due now (else a batch's completion wakes it)? */
bool eng_gc_slice_due(const struct engine *eng);
/* The blocks of the remote entries (segments of this log with no local copy), and
 * the live ones among them. */
void eng_remote_space(const struct engine *eng, uint64_t *used, uint64_t *live);
/* Map chunks a checkpoint takes per poll (~5 us each: a RocksDB batch entry of up to
 * 64 map entries): the whole of a 1 GiB volume written at random held the loop 20 ms */
#define ENG_CKPT_SLICE_CHUNKS 128u
/* Copies an adoption reads at once (adopt.c), and the bytes they may take: one read at
 * a time left the device idle between steps; the walk of a copy is fast */
#define ENG_ADOPT_READS 8u
#define ENG_ADOPT_READ_BYTES (16u << 20)

/* A client request (read, write, trim, flush) or the cleaner's relocations. */
struct ioreq {
	engine_cb cb;
	void *arg;
	uint32_t pending; /* parts not finished */
	int result;
	bool fua;
	struct ioreq *next; /* completion, flush or parked list */
	/* a write or trim parked for lack of space: what is left to append */
	struct engine_volume *vol;
	uint64_t lba;
	uint64_t nblocks;
	const uint8_t *src;
	enum ondisk_entry_kind kind; /* DATA (a write), TRIM or ZERO */
	struct defrag_plan *defrag;  /* a read: blocks to rewrite once it is done (defrag.c) */
	bool idle_defrag;            /* a read of the idle defragmenter, not a client's:
					its windows are rewritten (defrag.c) */
	bool seq_stream;             /* a client's read that continues a sequential
					stream: its scattered windows are rewritten */
	bool client;                 /* a client's read, write, trim or zero: counted in
					engine.client_inflight until its callback ran */
};

/* A FIFO of requests, linked through ioreq.next. */
struct req_fifo {
	struct ioreq *head, *tail;
};

enum batch_state { BATCH_FORMING, BATCH_READY, BATCH_INFLIGHT, BATCH_DONE };

struct batch {
	struct engine_volume *vol;
	enum batch_state state;
	uint32_t slot;
	uint32_t first_block; /* block in the slot where this batch's write starts */
	bool with_header;     /* the slot's header block leads the write */
	int result;
	struct summary sum;
	struct ioreq *parts[ONDISK_SUMMARY_MAX_ENTRIES]; /* owner of each entry */
	uint8_t *buf;         /* [header][summary][data...] */
	struct batch *next;
};

struct flatten_job;
struct eng_job;
struct defrag_plan;

/* A block a read wants that holds data: where it is, and its place in the read. */
struct read_block {
	uint32_t slot, block;
	uint32_t idx; /* block of the request */
	uint32_t crc;
};

/* The idle defragmenter (defrag.c): where its scan is, and what it waits for. */
#define DEFRAG_IDLE_READS 2u /* windows read at once */
struct defrag_idle_read {
	struct engine *eng;
	uint8_t *buf;              /* its window's blocks */
	bool busy;
	uint64_t appended_at_read; /* defrag_idle.appended when it started */
};

struct defrag_idle {
	size_t vol_idx;        /* eng->vols[vol_idx]: the layer the scan is in */
	uint64_t lba;          /* its next window */
	uint64_t seen_reqs;    /* eng->client_reqs at the last look */
	uint32_t quiet_ms;     /* no client request for this long: the node is idle */
	uint8_t *buf;          /* the reads' buffers, one allocation (NULL: off) */
	struct defrag_idle_read reads[DEFRAG_IDLE_READS];
	unsigned reading;      /* windows' reads in flight */
	uint64_t appended;     /* blocks rewrite() appended, ever (read reallocation too) */
	bool found;            /* this pass over the layers rewrote something */
	bool clean;            /* the last pass found nothing: wait for client requests */
};

/* A live block of the cleaner's victim: moved in LBA order (gc.c). */
/* A trim the cleaner found in its victim (a TRIM or ZERO entry, or a tomb of a TOMB
 * block): n as in struct ondisk_tomb; idx its order in the victim (ties of seq). */
struct gc_trim {
	uint64_t layer, lba, n, seq;
	uint32_t idx;
};

struct gc_move {
	uint64_t lba;
	uint32_t block; /* in the victim */
	uint32_t crc;
	const uint8_t *data; /* in gc_buf */
};

/* A layer: a volume's live head (rec.kind VOLUME) or a snapshot. Each has its own map
 * and its own log; reads fall through to `parent` where the map has nothing. */
struct engine_volume {
	struct engine *eng;
	struct volume_record rec;
	struct map *map;
	struct engine_volume *parent; /* rec.parent_id, resolved */
	struct flatten_job *flatten;  /* running */
	int flatten_result;           /* of the last one that ended */
	bool flatten_finished;
	uint64_t flatten_copied;
	uint64_t data_cache;          /* snapshots: blocks read back below data_cache_limit */
	uint64_t data_cache_limit;
	bool data_cache_valid;
	bool open;            /* a handle is out (volume: its one writer; snapshot: readers) */
	bool committing;      /* its creation or deletion is being committed: not opened */
	unsigned readers;     /* snapshots: handles out (read-only opens never conflict) */
	char holder[ENGINE_HOLDER_MAX + 1]; /* who holds the writable handle, or "" */
	int64_t open_slot;    /* -1: the next write allocates a slot */
	bool kicking, kick_again; /* volume_kick runs (a mirror's answer inside it asks again) */
	bool new_segment;     /* it just opened a segment: the family's records that live
				 outside the family's log go into it (catalog.c) */
	/* the newest LAYER SET block of this layer in the log: live, carried by the cleaner */
	struct map_loc rec_loc;
	bool rec_logged;
	struct volume_record rec_in_log; /* what it says (start-up: compared with RocksDB) */
	uint64_t rec_seq;
	struct batch *head;   /* unretired batches in log order; tail is the forming one */
	struct batch *tail;
	unsigned ninflight;   /* submitted, not retired: at most ONDISK_MAX_INFLIGHT_BATCHES */
	struct eng_job *job;  /* the management job working on this layer, or NULL */
	/* the clients' reads in order (defrag.c, engine_opts.seq_defrag): where the last
	 * one ended, and how many blocks were read in order up to there */
	uint64_t seq_next, seq_blocks;
	unsigned holds;       /* >0: new writes wait in `held` (a layer switch is coming) */
	struct req_fifo held;
};

/* A metadata change that must land atomically with the next checkpoint's map (a
 * snapshot merged into its child). Kept until a checkpoint carrying it succeeds. */
enum eng_meta_op_kind { EMO_PUT, EMO_DELETE, EMO_DELETE_RANGE };
struct eng_meta_op {
	enum eng_meta_op_kind kind;
	uint8_t key[ONDISK_MAP_KEY_LEN];
	uint8_t end[ONDISK_MAP_KEY_LEN]; /* EMO_DELETE_RANGE */
	uint8_t klen;
	uint8_t val[sizeof(struct ondisk_volume_record)];
	uint32_t vlen;
};

/* A merged snapshot's id and the layer its slots belong to now; with the snapshot's
 * record and when the merge took effect, as its MERGE block in the log says. */
struct eng_alias {
	uint64_t from, to;
	struct volume_record rec; /* the merged snapshot's (valid when has_rec) */
	uint64_t merge_seq;
	uint64_t child_id, child_overlap; /* its MERGE block's (0: not known here): a
					     family checkpoint's copy names them too */
	bool has_rec;
	bool logged;              /* a MERGE block at loc is live */
	struct map_loc loc;
	uint64_t loc_seq;
};

/* A deleted layer's tombstone (a SET block with ONDISK_LAYER_DELETED): live while
 * older records of it may be on disk, so that a rebuild does not bring it back. */
struct eng_dead {
	uint64_t id;
	struct volume_record rec;
	struct map_loc loc;
	uint64_t seq;
	bool logged;
};

/* A slot and its generation: a slot freed and reused meanwhile is not this one any more */
struct ckpt_free {
	uint32_t slot;
	uint64_t generation;
};

struct ckpt_job {
	struct engine *eng;
	struct meta_batch *mb;
	uint64_t seq;
	uint64_t start_no; /* eng->ckpt_starts when it started */
	size_t nops; /* eng->ops[0..nops) ride with this checkpoint */
	/* zero-live slots that become free once this is durable */
	struct ckpt_free *free_slots;
	size_t nfree;
	int result;
	size_t nchunks;      /* map chunks in mb */
	unsigned slices;     /* polls the capture took */
	uint64_t started_us; /* log_clock_us() at capture: debug lines time the steps */
};

struct engine {
	struct engine_opts opts;
	struct segs *segs;  /* where the segments live (segment.h) */
	const struct seg_mirror_ops *mirror; /* copies elsewhere (segment.h), or NULL */
	void *mirror_ctx;
	unsigned mirror_both; /* mirrored appends with both halves in flight (segment.c):
				 the first half to come wakes the loop for nothing */
	const struct engine_base_ops *base_ops; /* remote bases' transport (base.c), or NULL */
	void *base_ctx;
	struct eng_base *bases; /* families whose root reads through a remote base */
	size_t nbases;
	struct meta *meta;
	struct superblock sb;
	int sb_err[2];          /* decode result of block 0 and of the copy (superblock.c) */
	bool sb_copy_stale;     /* the copy is not the bytes of block 0: rewrite it */
	uint32_t sb_old_version; /* a place holds a superblock of this older format: refused */
	uint32_t blocks_per_seg;
	struct slot *slots;     /* the store's segment_count slots, then the remote entries
				   (slot_cap in all: seg_drop_local) */
	uint32_t slot_cap;
	uint32_t nfree;
	uint32_t gc_reserve;
	uint64_t next_seq;
	uint64_t next_gen;
	uint64_t open_seq;    /* the first seq of this run (summaries carry it) */
	uint64_t durable_seq; /* every batch up to it retired before a completed flush */
	uint64_t flush_seq;   /* what the flush in flight makes durable */
	uint64_t next_volume_id;

	struct engine_volume **vols; /* every layer: volumes and snapshots */
	size_t nvols;
	struct eng_alias *aliases;
	size_t naliases, aliases_cap;
	struct engine_volume *catalog; /* records of layers without a log of their own */
	struct eng_dead *dead;         /* tombstones in the log */
	size_t ndead;
	struct eng_meta_op *ops;     /* for the next checkpoint */
	size_t nops, ops_cap;

	struct engine_client_load client_load; /* engine_client_io_done() */
	bool client_load_on;                   /* engine_client_load_watch() */

	struct ioreq *free_reqs;
	struct batch *free_batches;
	struct req_fifo done;   /* callbacks to run */
	struct req_fifo parked; /* writes waiting for space */

	/* flush: waiting → one fdatasync in flight → completed */
	struct ioreq *flush_wait;
	struct ioreq *flush_running;
	bool flush_inflight;
	/* write-back pacing (eng_store_flush): log bytes written since the last store
	 * flush started, and when it started */
	uint64_t unsynced_bytes;
	uint64_t last_sync_ms;

	/* checkpoint: captured on this thread, written by ckpt_thread */
	pthread_t ckpt_thread;
	pthread_mutex_t ckpt_lock;
	pthread_cond_t ckpt_cond;
	struct ckpt_job *ckpt_todo;     /* handed to the thread */
	struct ckpt_job *ckpt_done;     /* handed back */
	atomic_bool ckpt_ready;
	bool ckpt_stop;
	bool ckpt_busy;                 /* a job between capture and its completion */
	struct ckpt_job *ckpt_capturing; /* a job taking its chunks, a slice per poll */
	size_t ckpt_slice_chunks;       /* chunks a slice takes (ENG_CKPT_SLICE_CHUNKS) */
	bool ckpt_wanted;
	bool ckpt_families;             /* the next one writes family checkpoints too
					   (engine_checkpoint(); periodic ones do anyway) */
	uint64_t ckpt_last_ms;
	uint64_t fckpt_last_ms;         /* the start of the last one with families */
	bool fckpt_open_logs;           /* the next family checkpoints may open a segment
					   (engine_checkpoint_for_stop_async) */
	int ckpt_error;                 /* of the last checkpoint, if it failed */
	unsigned free_jobs;             /* FREE header writes in flight (checkpoint.c) */
	struct eng_fckpt *fckpt;        /* family checkpoints in flight (fckpt.c), or NULL */
	uint64_t *fckpt_want;           /* families whose next one is asked for */
	size_t nfckpt_want;
	bool fckpt_want_all;
	uint32_t *deferred_free;        /* slots waiting for their readers to finish */
	/* segment.c: the segment table as the last checkpoint's capture put it, one
	 * record per slot (used 0: none); unsure after a checkpoint that did not land */
	struct slot_record *seg_table;
	bool seg_table_unsure;
	struct eng_held *held;       /* held.c: copies of other nodes' segments, epochs */
	struct eng_frags *frags;     /* heldfrag.c: fragments of other nodes' segments */
	struct seg_family *families; /* segment.c: every family with segments or layers */
	size_t nfamilies;
	uint32_t *family_index;      /* segment.c: open addressing by uid, 1 + index into
					families (0: empty); a power of two, half full */
	size_t family_index_cap;
	size_t ndeferred_free;

	bool closing;
	bool replaying;  /* entries applied at start-up: the catalog counted them already */
	uint32_t *stale_slots; /* USED headers of layers that are gone (start-up) */
	size_t nstale;
	struct tomb_block *gc_tombs; /* the TOMB block the cleaner is filling */
	struct gc_trim *gc_trims;    /* the victim's trims, gathered (catalog.c) */
	size_t gc_ntrims, gc_trims_cap;
	uint32_t gc_trims_seen, gc_trims_kept; /* the victim's trims, and tombs carried */
	struct eng_job *jobs;           /* management calls under way (job.c), FIFO */
	struct eng_job *job_running;    /* whose step eng_jobs_run() is in */
	/* metacommit.c: a job's synced RocksDB commit, made by mc_thread */
	pthread_t mc_thread;
	pthread_mutex_t mc_lock;
	pthread_cond_t mc_cond;
	bool mc_running, mc_stop;
	struct meta_batch *mc_todo;     /* handed to the thread */
	int mc_result;                  /* handed back, with mc_done */
	atomic_bool mc_done;
	struct eng_job *mc_owner;       /* whose commit is in flight (engine thread) */
	bool mc_parked_later;           /* parked writes not retried meanwhile */
	uint64_t ckpt_failures;         /* checkpoints that did not land */
	/* checkpoints are numbered as they start; a wait for "one captured after now"
	 * notes ckpt_starts and looks for a higher number landed (or failed): checking
	 * ckpt_busy instead never ends when each checkpoint starts as the last lands
	 * (the cleaner asking, or one taking longer than checkpoint_ms) */
	uint64_t ckpt_starts;
	uint64_t ckpt_landed_no, ckpt_failed_no;

	/* cleaner */
	bool gc_busy;
	bool gc_stalled;   /* the last look found nothing worth cleaning */
	bool gc_no_room;   /* the last relocation found no free slot */
	uint64_t gc_next_scan_ms; /* after a scan of the slots that started nothing, the
				     next waits a millisecond (not every poll), or until a
				     checkpoint completes or a write waits for space */
	uint32_t gc_victim;
	uint8_t *gc_buf;
	struct gc_move *gc_moves; /* gc.c: the victim's live blocks, sorted before moving */
	uint32_t gc_nmoves;
	uint32_t gc_npending;     /* live blocks of the victim left for a write or trim of
				     theirs not retired yet (visit_live) */
	uint32_t gc_next_move;    /* the first of gc_moves not yet appended */
	bool gc_moving;           /* gc_moves are being appended, a slice per poll */
	/* gc.c: a remote victim (a remote entry) is read into gc_buf by fetches */
	struct seg_fetch *gc_fetches;     /* ceil(blocks_per_seg / SEG_FETCH_MAX_BLOCKS) */
	struct seg_fetch_block *gc_want;  /* blocks_per_seg: block i's entry */
	uint64_t gc_remote_next_ms;       /* no remote victim is picked before this */
	uint8_t *read_scratch; /* io.c: where reads drop the blocks that join two runs */
	uint32_t defrag_inflight; /* defrag.c: MOVEs appended, not yet retired */
	uint64_t client_reqs;     /* reads, writes, trims and zeroes asked for by clients */
	uint32_t client_inflight; /* of them, not yet called back */
	uint32_t client_burst;    /* the most in flight at once since none was */
	uint32_t client_last_burst; /* ... in the last stretch that ended (1: QD1) */
	uint32_t held_writes;     /* writes to other nodes' segments (a holder's appends) in
				     flight (engine/held.c; io.c's poll_us) */
	uint32_t held_reads;      /* reads of them and of fragments held here, for other
				     nodes, in flight (held.c, heldfrag.c; poll_us) */
	uint64_t client_last_ms;  /* when the last one in flight was called back */
	struct defrag_idle idle;  /* defrag.c: the idle defragmenter */

	/* prezero.c: zeros over unwritten free slots ahead of the log */
	uint64_t pz_cursor;   /* store offset: the next chunk is looked for from here */
	uint64_t pz_busy_ms;  /* store I/O other than ours was last seen in flight */
	uint64_t pz_next_ms;  /* while busy, no chunk before this */
	uint8_t *pz_zeros;
	uint32_t pz_slot;     /* of the chunk in flight */
	bool pz_inflight;
	bool pz_waiting;      /* the lead is reached: the next slot waits for the log */
	bool pz_done;         /* off, nothing left, or an error */
	struct pz_range {     /* unwritten, as the file system said at the walk */
		uint64_t start, end; /* store offsets */
	} *pz_ranges;         /* in order; pz_next: the first that may lie ahead */
	size_t pz_nranges, pz_cap, pz_next;
	uint32_t pz_taken_end; /* slots below this may have been taken since the walk
				* (data now, whatever it said): slot_take() raises it */
	uint64_t pz_credit;   /* bytes small batches appended, not yet zeroed ahead */
	uint64_t pz_queries;  /* of the file system (lseek pairs): at open only */
	struct ioreq gc_req;      /* gc.c: a remote victim's fetches, then the victim's moves */
	unsigned gc_want_free;

	struct engine_stats stats;
	struct repair *repairs; /* repair.c: blocks being read around, then written back */
};

/* superblock.c (docs/format.md, "Superblock") */
/* Reads the superblock and its copy and decides, before anything is written, whether
 * the store is opened (*format false: eng->sb is set) or formatted; opens eng->meta
 * (a missing metadata directory is created only for a store being formatted). A
 * refusal is logged once, with what was found and how to recover. */
int eng_sb_load(struct engine *eng, bool *format);
/* Reads the superblock (either place) and nothing else, for a look at a store that
 * writes nothing (engine_catalog_scan). 0 or the decode error. */
int eng_sb_read(struct engine *eng);
/* Writes a new superblock to both places (the copy first) and syncs. */
int eng_sb_format(struct engine *eng);
/* Once the metadata agrees: rewrites a damaged block 0 from the copy, writes a missing
 * or stale copy, and grows the store if opts.grow. */
int eng_sb_repair(struct engine *eng);
/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" */
void eng_uuid_str(const uint8_t uuid[16], char out[37]);
/* ---- jobs (job.c): management calls that engine_poll() drives ---- */

/* A step's "not yet": it runs again from a later engine_poll(). Not a result any call
 * can have (they are counts or -errno). */
#define ENG_JOB_WAIT INT_MIN
#define ENG_JOB_MAX_LAYERS 2

/* Returns ENG_JOB_WAIT, or the call's result (>= 0, or -errno): then the completion
 * runs once with it and the job is freed. */
typedef int (*eng_job_step_fn)(struct eng_job *job);

/* Embedded first in each call's own struct (allocated with malloc, freed with free
 * unless release says otherwise). */
struct eng_job {
	struct engine *eng;
	eng_job_step_fn step;
	void (*release)(struct eng_job *job);
	engine_cb cb;
	void *arg;
	unsigned pc;   /* where the step goes on: each step numbers its own states */
	/* layers this job works on, set before eng_job_start(): claimed while it runs */
	struct engine_volume *layers[ENG_JOB_MAX_LAYERS];
	/* state of the shared waits */
	bool ckpt_asked;
	uint64_t ckpt_after; /* eng->ckpt_starts when asked */
	bool io_started, io_done;
	int io_result;
	/* writes the job started (eng_job_io_begin): it does not end before they are done */
	unsigned io_pending;
	int io_error;  /* the first of theirs that failed */
	bool ending;   /* the step has returned `result`; the job waits for io_pending */
	int result;
	struct eng_job *next;
};

/* Queues job: its first step runs from the next engine_poll(), never from here.
 * -EBUSY if one of job->layers already has a job, -EINVAL without cb: the job is
 * freed then (release, or free()). */
int eng_job_start(struct engine *eng, struct eng_job *job, eng_job_step_fn step,
		  engine_cb cb, void *arg);
/* Steps every job; runs the completions of those that ended. */
int eng_jobs_run(struct engine *eng);
bool eng_jobs_pending(const struct engine *eng);
/* A layer about to be freed drops out of its job's claims. */
void eng_job_forget_layer(struct engine_volume *layer);
/* The waits a step is made of: ENG_JOB_WAIT until done, then 0 or -errno.
 *   ckpt:    a checkpoint captured after the wait began has landed (-EIO: it failed);
 *   settled: record changes queued for a checkpoint (eng->ops) have landed;
 *   quiet:   none of vol's batches is unretired, the cleaner is not moving its blocks,
 *            the idle defragmenter is not reading a window;
 *   flush:   an fdatasync of the store started by the wait has completed. */
int eng_job_wait_ckpt(struct eng_job *job);
int eng_job_wait_settled(struct eng_job *job);
int eng_job_wait_quiet(struct eng_job *job, const struct engine_volume *vol);
int eng_job_wait_flush(struct eng_job *job);
/* The same with this node's store alone: never waits for the mirror's copies
 * elsewhere (held copies: engine/held.c). */
int eng_job_wait_local_flush(struct eng_job *job);
/* The job whose step is running, or NULL: what a step calls learns from it that it must
 * not wait for its writes (catalog.c) but leave them to the job. */
struct eng_job *eng_job_running(const struct engine *eng);
/* A write the job must see done before it ends: begin before it is queued, end from its
 * completion. A job whose step returned its result still waits for these, so that
 * what it wrote is done (durable, with FUA) before its completion answers. */
void eng_job_io_begin(struct eng_job *job);
void eng_job_io_done(void *job, int res); /* an engine_cb */
/* ENG_JOB_WAIT while the job's writes are in flight, then the first one's error or 0 */
int eng_job_wait_io(struct eng_job *job);
/* A segment write (seg_write) or read (seg_read) of nblocks blocks at buf, counted as
 * one of the job's I/Os (eng_job_io_begin): its refusal is its failure, seen by
 * eng_job_wait_io. */
void eng_job_seg_io(struct eng_job *job, bool write, uint32_t slot, uint32_t block, void *buf,
		    uint32_t nblocks);
/* A step's state machine: r is what the state's work or wait returned. ENG_JOB_WAIT
 * and -errno are returned as they are; 0 moves the job to state `next`, which runs
 * from its next step (ENG_JOB_WAIT). */
int eng_job_next(struct eng_job *job, int r, unsigned next);
/* In a job step: commits *mb (META_SYNC) on the metadata thread (metacommit.c).
 * ENG_JOB_WAIT until it has landed: the step is called again and calls this again
 * with the same *mb; then the commit's result, 0 or -errno, with *mb destroyed and
 * NULL. Meanwhile no other job steps and no checkpoint starts. */
int eng_job_meta_commit(struct eng_job *job, struct meta_batch **mb);
bool eng_mc_busy(const struct engine *eng);
/* engine_poll() with nothing else to do: sleeps until the commit lands, 1 ms at most
 * (instead of spinning against the thread that makes it). */
void eng_mc_wait(struct engine *eng, int timeout_ms);
int eng_mc_start_thread(struct engine *eng);
void eng_mc_stop_thread(struct engine *eng); /* ok if never started */

/* The blocking wrappers of the async calls (tools and tests only, never from a
 * callback or quilld's loop): struct eng_sync s = { 0 };
 * return eng_sync_wait(eng, &s, engine_x_async(..., eng_sync_done, &s)); */
struct eng_sync {
	bool done;
	int res;
};
void eng_sync_done(void *arg, int res);
int eng_sync_wait(struct engine *eng, struct eng_sync *s, int started);

/* engine.c, volume.c (the volume catalog) */
struct engine_volume *eng_volume_by_id(struct engine *eng, uint64_t id);
/* A layer of family uid (the catalog layer is family ONDISK_CATALOG_UID's), or NULL. */
struct engine_volume *eng_family_layer(const struct engine *eng, uint64_t uid);
struct engine_volume *eng_volume_by_name(struct engine *eng, const char *name);
uint64_t eng_now_ms(void);
/* io.c: have clients had nothing in flight, and nothing started or ended, for quiet_ms?
 * A request the disk holds for long is in flight: background work that waits for
 * quiet clients must not take a stalled device for an idle node and add to its queue. */
bool eng_clients_quiet(const struct engine *eng, uint64_t now_ms, uint32_t quiet_ms);
/* ms until eng_clients_quiet() may hold: 0 if it does, UINT32_MAX while a request is
 * in flight (its end wakes the loop) */
uint32_t eng_clients_quiet_in(const struct engine *eng, uint64_t now_ms, uint32_t quiet_ms);
/* Where a new store's layer ids and segment generations start: a random 62-bit base
 * of its own (from its uuid), so that a family adopted from another node's store
 * brings ids this one never handed out (docs/format.md, "Ids across the cluster").
 * The store record's next layer id is a floor for generations too: an old store's
 * counters (small) stay as they were. */
uint64_t eng_id_base(const struct engine *eng);
/* engine_opts.test_pause: holds the calling thread if point is the one named. */
void eng_test_pause(const struct engine *eng, const char *point);
uint64_t eng_now_realtime_ns(void);
int eng_valid_name(const char *name);
/* The logical sector size a layer's record says (ONDISK_LAYER_4KN). */
uint32_t eng_sector_size(const struct volume_record *rec);
int eng_volume_add(struct engine *eng, const struct volume_record *rec,
		   struct engine_volume **out);
void eng_volume_remove(struct engine *eng, struct engine_volume *vol);
/* A new volume layer (create, clone): rec (size, name, flags, parent set by the
 * caller) gets a new id (spent into mb), its uid, kind and creation time; it is added
 * and mb committed (synced, then destroyed); on failure nothing of it stays. The
 * caller links its parent and logs its record. */
int eng_volume_commit_new(struct engine *eng, struct meta_batch *mb,
			  struct volume_record *rec, struct engine_volume **out);
/* The same in two halves, for a job whose commit is made in between (metacommit.c):
 * add_new spends the id and adds the layer (flagged committing: not opened until
 * new_committed); new_committed takes the commit's result, removes the layer if it
 * failed (nothing could have opened it), destroys mb. */
int eng_volume_add_new(struct engine *eng, struct meta_batch *mb, struct volume_record *rec,
		       struct engine_volume **out);
int eng_volume_new_committed(struct engine *eng, struct meta_batch *mb,
			     struct engine_volume *vol, int r);
/* The layer a spec names (common/volspec.h): a volume "VOL" or a snapshot
 * "VOL@SNAP"; NULL if there is none or spec is not one. */
struct engine_volume *eng_layer_by_spec(struct engine *eng, const char *spec);
/* The snapshot layer named "VOL@SNAP", or NULL. */
struct engine_volume *eng_snapshot_by_spec(struct engine *eng, const char *spec);
/* "VOL@SNAP" (or "VOL" for a volume's live layer) into buf. */
void eng_layer_spec(const struct engine *eng, const struct engine_volume *layer, char *buf,
		    size_t len);
/* Hands out a layer id: the store record that spends it goes into mb. */
uint64_t eng_take_layer_id(struct engine *eng, struct meta_batch *mb);
/* A new family's uid (the uid of a created volume or a clone): 63 random bits, never 0 or
 * ONDISK_CATALOG_UID, unique on this node. -errno from getrandom; -EAGAIN if every
 * draw was taken. */
int eng_family_uid_new(struct engine *eng, uint64_t *uid);
void eng_batch_put_record(struct meta_batch *mb, const struct volume_record *rec);
/* A merged snapshot's alias (its id -> the layer it was merged into) into mb. */
void eng_batch_put_alias(struct meta_batch *mb, const struct eng_alias *a);
int eng_volume_record_save(struct engine *eng, const struct volume_record *rec); /* synced */
/* Ends vol's writes waiting for space with err (the layer they aimed at is gone). */
void eng_fail_parked(struct engine *eng, struct engine_volume *vol, int err);
/* Puts into mb the deletion of a layer's record, map chunks and the aliases to it. */
void eng_batch_delete_layer(struct engine *eng, struct meta_batch *mb, uint64_t id);
/* Drops a layer's map and frees its slots (after its record is gone). */
void eng_layer_discard(struct engine *eng, struct engine_volume *vol);
/* Deletes a layer nothing reads through: records (synced), then map, slots, struct. */
int eng_layer_drop(struct engine *eng, struct engine_volume *layer);
/* eng_layer_drop's second half, once its commit has landed (volume delete). */
void eng_layer_dropped(struct engine *eng, struct engine_volume *layer);

/* io.c */
struct ioreq *eng_req_alloc(struct engine *eng, engine_cb cb, void *arg);
void eng_req_put(struct engine *eng, struct ioreq *req, int res);
int eng_append_data(struct engine_volume *vol, uint64_t lba, const void *data,
		    enum ondisk_entry_kind kind, uint32_t src_slot, uint32_t src_block,
		    uint32_t crc, enum slot_user who, struct ioreq *owner);
/* kind: TRIM, or ZERO (allocated zeros; src_block ONDISK_ZERO_FILL: flatten's) */
int eng_append_trim(struct engine_volume *vol, uint64_t lba, uint64_t nblocks,
		    enum ondisk_entry_kind kind, uint16_t src_block, struct ioreq *owner);
void eng_kick(struct engine *eng);
void eng_run_parked(struct engine *eng, bool fail);
void eng_map_ref(void *arg, const struct map_loc *loc, int delta);
int eng_drain(struct engine *eng);
/* Every flush of the segments goes through here (client flushes, the pacing's, a
 * checkpoint's, FREE headers'): it restarts the pacing's count. seg_flush's
 * contract. */
int eng_store_flush(struct engine *eng, void (*cb)(void *arg, int res), void *arg);
/* Stops vol's new writes (they wait, in order) until the matching release, which
 * starts them on whatever layer vol is then. */
void eng_hold_writes(struct engine_volume *vol);
void eng_release_writes(struct engine_volume *vol);
/* engine_read() without the open and range checks: reads through vol's layers. */
int eng_read_layers(struct engine_volume *vol, uint64_t lba, uint32_t nblocks, void *buf,
		    engine_cb cb, void *arg);
/* The same with a request the caller allocated (and flagged): req's reference is
 * spent, its callback runs once. */
void eng_read_req(struct engine_volume *vol, struct ioreq *req, uint64_t lba, uint32_t nblocks,
		  void *buf);
/* Sorts b[0..n) by place in the log and returns how many I/Os a read of them takes
 * (blocks of one slot close together are one). */
uint32_t eng_read_spans(struct read_block *b, uint32_t n);

/* repair.c: read-around and repair of a block whose local copy failed */
/* The block `block` of store slot `slot` (of volume vol's read req, its lba; the map
 * says crc) could not be read here: `why` is -EILSEQ (its checksum failed) or the
 * read's error.
 * If the slot's family has copies elsewhere (the mirror's read), the block is fetched
 * from one into dst (req keeps a reference until then, with the error if none is
 * good) and written back over the bad local copy: true. false when there is no copy
 * to ask (a single node, a held slot, no memory): the caller fails the read. */
bool eng_repair_start(struct engine *eng, struct ioreq *req, const struct engine_volume *vol,
		      uint64_t lba, uint32_t slot, uint32_t block, uint32_t crc, uint8_t *dst,
		      int why);
/* A scrub's repair of a bad block (slot, block) that must have crc: fetched from a copy
 * elsewhere (checked at both ends), written back, read back and checked; cb(arg, 0)
 * once it reads back good, else cb(arg, -errno) (-EAGAIN: the slot is going away, or
 * another repair writes the block). what: the log's name for it. 0 (cb runs once) or
 * -EOPNOTSUPP (no copy elsewhere to ask, no memory). */
int eng_repair_block(struct engine *eng, const char *what, uint32_t slot, uint32_t block,
		     uint32_t crc, engine_cb cb, void *arg);

/* segcopy.c: the store slot of this node's own (not held, not dropped) segment (uid,
 * sno), or -ENOENT; sealed and not being freed only if `sealed` */
int64_t eng_own_slot(const struct engine *eng, uint64_t uid, uint32_t sno, bool sealed);

/* remote.c: reads of remote entries (segment_remote.c) */
/* Reads blocks b[0..n) (one span of one remote entry: ascending, within a fetch) of
 * vol's read req (its block 0 at lba) into dst from the copies elsewhere: one fetch
 * (seg_fetch), one reference of req: 0, or -EIO when no copy can be asked, -ENOMEM. */
int eng_remote_read(struct engine_volume *vol, struct ioreq *req, uint64_t lba, uint8_t *dst,
		    const struct read_block *b, uint32_t n);

/* layer.c */
/* What a read of lba gives: true with *loc for data, false for zeros. */
bool eng_resolve(const struct engine_volume *vol, uint64_t lba, struct map_loc *loc);
/* Where a block of vol reads from: its layers' data (loc filled), zeros, or the remote
 * base of its family's root (base.c). */
enum eng_where { ENG_AT_ZERO = 0, ENG_AT_DATA, ENG_AT_BASE };
enum eng_where eng_locate(const struct engine_volume *vol, uint64_t lba, struct map_loc *loc);

/* ---- remote bases (base.c) ---- */
struct eng_base {
	uint64_t uid; /* the family whose root reads through it */
	struct engine_base base;
};
/* The remote base of vol's family when its root is reached at lba, or NULL. */
const struct engine_base *eng_base_at(const struct engine_volume *root, uint64_t lba);
/* Reads blocks [idx, idx + n) of a request at lba (its block 0) from the base into
 * dst's blocks; the request holds a reference until the read completes. */
int eng_base_read(struct engine_volume *vol, struct ioreq *req, uint64_t lba, uint8_t *dst,
		  uint32_t idx, uint32_t n);
void eng_base_free(struct engine *eng);
/* LBAs below this read through what lies under vol (its parent's overlap, or its
 * remote base's end): where a flatten copies, and a FILL applies. */
uint64_t eng_fill_limit(const struct engine_volume *vol);
/* Applies one summary entry to vol's map (at retire and at replay alike); loc is where
 * a data entry's block was written. */
int eng_apply_entry(struct engine_volume *vol, const struct summary_entry *e,
		    const struct map_loc *loc);
int eng_link_layers(struct engine *eng);
int eng_alias_add(struct engine *eng, uint64_t from, uint64_t to);
/* Room for `more` aliases and ops, so that a merge, once started, cannot fail half way
 * for want of memory (eng_alias_add, snap.c's merge). */
int eng_reserve_records(struct engine *eng, size_t more);
/* snap.c */
/* The in-memory part of snap rm's merge of snapshot s into its only child: maps,
 * record, slots, aliases; s is left for the caller to remove. */
int eng_merge_layer(struct engine *eng, struct engine_volume *s, struct engine_volume *child);
/* layer.c */
int eng_load_aliases(struct engine *eng);
/* The layer owning a slot whose header names layer id (following merges), or NULL. */
struct engine_volume *eng_layer_for_owner(struct engine *eng, uint64_t id);
/* Blocks that read back data through vol's layers. */
uint64_t eng_layer_data_blocks(struct engine_volume *vol);
/* flatten.c */
void eng_flatten_kick(struct engine *eng);
/* Restarts the flattens a crash or a stop interrupted (engine_open). */
void eng_flatten_resume(struct engine *eng);
bool eng_flatten_active(const struct engine *eng);
void eng_flatten_free(struct engine_volume *vol);

/* replay.c */
int eng_replay(struct engine *eng, uint64_t ckpt_seq);

/* segment.c: calls load on every RocksDB record under the one-letter prefix p; stops at
 * load's first nonzero result. */
int eng_load_prefix(struct engine *eng, char p,
		    int (*load)(struct engine *eng, const void *key, size_t klen,
				const void *val, size_t vlen));

/* held.c: segments held for other nodes (engine.h) */
/* Start-up, before replay classifies the slots: the "E" and "H" records; each held
 * slot is marked (seg_hold_restore), an open copy's length found by walking its log. */
int eng_held_load(struct engine *eng);
void eng_held_free(struct engine *eng);
/* heldfrag.c: fragments held for other nodes (engine.h). Start-up, from eng_held_load:
 * the "G" records, each slot marked held and its header block checked. */
int eng_frag_load(struct engine *eng);
/* Does slot hold a fragment (not a copy) of the segment its slot entry names? A node
 * may hold both of one segment (while it is encoded, and after, until the replicas
 * go): lookups of a segment's copy by (family, sno) skip these. */
bool eng_frag_slot(const struct engine *eng, uint32_t slot);
void eng_frag_free(struct engine *eng);
/* Into mb: the "H" record of (uid, sno). */
void eng_held_put(struct meta_batch *mb, uint64_t uid, uint32_t sno,
		  const struct held_record *r);
/* Release: a sealed segment of this node's (slot r->slot, r->length blocks) becomes
 * the held copy (uid, sno), once eng_held_put's record has landed. -ENOMEM. */
int eng_held_keep(struct engine *eng, uint64_t uid, uint32_t sno, const struct held_record *r);
/* Into mb: the deletion of the "H" record of (uid, sno). */
void eng_held_put_drop(struct meta_batch *mb, uint64_t uid, uint32_t sno);
/* Adoption: a sealed copy, not being read, is set aside (a delete or a seal of it
 * waits) and its slot and length given; -ENOENT not held, -EBUSY open or busy. end:
 * adopted, it leaves the table and its slot is no longer held (the slot is the
 * caller's); otherwise it is an ordinary held copy again. */
int eng_held_adopt_begin(struct engine *eng, uint64_t uid, uint32_t sno, uint32_t *slot,
			 uint32_t *length);
void eng_held_adopt_end(struct engine *eng, uint64_t uid, uint32_t sno, bool adopted);

/* checkpoint.c */
int eng_ckpt_start_thread(struct engine *eng);
void eng_ckpt_stop_thread(struct engine *eng);
void eng_ckpt_maybe(struct engine *eng);
void eng_ckpt_reap(struct engine *eng);
int eng_ckpt_sync(struct engine *eng);
/* Into mb: every chunk of vol's map changed since the last capture (as a checkpoint
 * writes them), its dirty bits cleared. */
int eng_map_put_dirty(struct meta_batch *mb, struct engine_volume *vol);
/* One less than the oldest batch submitted and not retired (the newest seq if none):
 * every batch up to it is in the map, and a flush started now makes it durable. */
uint64_t eng_stable_seq(const struct engine *eng);
/* A store flush that started when eng_stable_seq() was seq has completed. */
void eng_mark_durable(struct engine *eng, uint64_t seq);
/* Writes FREE headers on slots without blocking the engine thread, then flushes; the
 * slots are released once their headers are durable, and meanwhile are `freeing` (not
 * reused, not cleaned). Slots already freeing, or not the same generation any more,
 * are left out. ENG_FREE_ORDERED: the slots holding LAYER entries are written and
 * flushed before the others (eng_slots_write_free's rule); ENG_FREE_ONLY_EMPTY: a
 * slot is released only if still sealed and empty (a checkpoint's). cb, if not NULL,
 * runs once with 0 or -errno, after the slots are released. -ENOMEM: nothing started. */
enum { ENG_FREE_ORDERED = 1u << 0, ENG_FREE_ONLY_EMPTY = 1u << 1 };
int eng_slots_free_async(struct engine *eng, const struct ckpt_free *slots, size_t n,
			 unsigned flags, engine_cb cb, void *arg);

/* catalog.c — the catalog in the log (docs/format.md, "The catalog in the log") */
/* Appends a SET block of vol->rec to vol's log and waits until it is durable. After
 * the RocksDB record: a failure is logged and repaired at the next start. */
int eng_catalog_log(struct engine_volume *vol);
/* Both records, in one batch when they share a log (snap create: the new head a,
 * then the snapshot b); waits. */
int eng_catalog_log_pair(struct engine_volume *a, struct engine_volume *b);
/* The same without waiting (from engine_poll: flatten's end). */
void eng_catalog_log_async(struct engine_volume *vol);
/* The MERGE block of snapshot srec merged into child at merge_seq; waits. child_overlap
 * is the child's before the merge; NULL: the block does not name the child (child may
 * be a layer the real one was merged into since). */
int eng_catalog_log_merge(struct engine_volume *child, const struct volume_record *srec,
			  uint64_t merge_seq, const uint64_t *child_overlap);
/* A LAYER, TOMB or TRIM entry retired into loc (eng_apply_entry). */
void eng_catalog_retired(struct engine_volume *vol, const struct summary_entry *e,
			 const struct map_loc *loc);
/* Start-up: a valid batch of slot whose data blocks start at block first_data (data
 * points at them). */
void eng_catalog_note_batch(struct engine *eng, uint32_t slot, const struct summary *sum,
			    const uint8_t *data, uint32_t first_data);
/* Start-up: slot has a USED header of a layer that does not exist. */
void eng_catalog_stale_slot(struct engine *eng, uint32_t slot);
/* Start-up, after replay: stale slots get FREE headers; the log gets what RocksDB has
 * and it lacks (a crash between a RocksDB commit and its log record). */
int eng_catalog_reconcile(struct engine *eng);
/* Layers (other than id) whose current record block lies in a slot of layer id,
 * about to be freed, lose it; eng_catalog_relog() then writes them again. */
void eng_catalog_orphans(struct engine *eng, uint64_t id);
void eng_catalog_relog(struct engine *eng, uint64_t skip); /* all but layer skip */
/* vol opened a segment for the entry owner's request just appended: the records of
 * its family's layers (and tombstones) whose newest block lies outside the family's
 * log (in the catalog log: the head had no open slot then) are appended to it, so
 * that the family's own segments carry its catalog (a node that adopts the family
 * reads nothing else: adopt.c). */
void eng_catalog_family_relog(struct engine_volume *vol, struct ioreq *owner);
/* Appends every SET record of log's family (its layers, its tombstones) and a copy of
 * the MERGE block of each snapshot merged into one of its layers (alias_to: where it
 * leads) to log, for a family checkpoint. 0 or eng_append_data()'s error. */
int eng_catalog_family_records(struct engine_volume *log, struct ioreq *owner);
/* The layer whose log is layer's family's (its head volume), or NULL: the family's
 * records go to the catalog log (it has no segment of its own). */
struct engine_volume *eng_catalog_family_log(struct engine *eng, struct engine_volume *layer);
/* The in-memory layer (id 0) whose log holds records of layers without an open slot
 * of their own, and tombstones. */
int eng_catalog_layer_add(struct engine *eng);
/* After the layer's RocksDB records are gone: its tombstone goes to the log (waits). */
int eng_catalog_tombstone(struct engine *eng, const struct volume_record *rec);
/* A merged layer's record block is no longer live. */
void eng_catalog_forget(struct engine_volume *vol);
/* Writes FREE headers on slots (those holding LAYER blocks first), then flushes. */
int eng_slots_write_free(struct engine *eng, const uint32_t *slots, size_t n);
/* Is slot i kept for its tombstones (an older slot of its layer is still in use)? */
bool eng_slot_pinned(const struct slot *slots, uint32_t nslots, uint32_t i);
/* Cleaner: LAYER, TOMB and TRIM entries of the victim (data: the entry's block). */
int eng_catalog_carry(struct engine_volume *vol, const struct summary *sum,
		      const struct summary_entry *e, uint32_t block, const uint8_t *data);
int eng_catalog_carry_end(struct engine_volume *vol);
/* Would a relocation of lba race a write or trim of vol not yet retired? */
bool eng_lba_pending(const struct engine_volume *vol, uint64_t lba);

/* replay.c: walks the log of a slot already read into gc_buf (block 0 its header h)
 * with logcheck's walker, batches above check_above with their data checked: visit
 * sees every item (sum filled and data at its first data block for a batch). Seals
 * the slot's state and sets its write pointer to the log's end. 0 or visit's -errno. */
struct logcheck_item;
typedef int (*eng_walk_fn)(void *arg, const struct logcheck_item *it, const struct summary *sum,
			   const uint8_t *data);
int eng_walk_slot(struct engine *eng, uint32_t slot, const struct segment_header *h,
		  uint64_t check_above, eng_walk_fn visit, void *arg);
/* The same over buf (the slot's blocks, read whole) instead of gc_buf. */
int eng_walk_buf(struct engine *eng, uint32_t slot, const struct segment_header *h,
		 const uint8_t *buf, uint64_t check_above, eng_walk_fn visit, void *arg);

/* rebuild.c */
/* engine_open() with opts.rebuild_meta: the catalog and the maps from the log alone. */
/* keep: write the result into the (empty) RocksDB directory; otherwise only look. */
int eng_rebuild(struct engine *eng, bool keep);
/* The machinery a whole-store rebuild and a family's adoption (adopt.c) share:
 * slots are fed one at a time (their header and their blocks read whole), then the
 * layers they name are created and every batch, carried trim and merge applied in
 * sequence order (the top of rebuild.c). */
struct eng_rebuild;
int eng_rebuild_begin(struct engine *eng, struct eng_rebuild **out);
/* Notes slot's header h (of this store's layout: the caller decoded it) and, for a
 * USED one, walks its log in buf (blocks_per_seg blocks, block 0 the header). */
int eng_rebuild_slot(struct eng_rebuild *rb, uint32_t slot, const struct segment_header *h,
		     const uint8_t *buf);
/* The layers the fed slots name (LAYER blocks), before eng_rebuild_apply: layer i's
 * oldest record (its id at least); false if a tombstone names it. */
size_t eng_rebuild_nlayers(const struct eng_rebuild *rb);
bool eng_rebuild_layer(const struct eng_rebuild *rb, size_t i, struct volume_record *rec);
/* Judges bad batches, creates the layers, applies, marks damaged layers, and makes
 * the newest record blocks live. */
int eng_rebuild_apply(struct eng_rebuild *rb);
/* A family checkpoint's: judges, creates the layers that have a record above base_seq
 * (S), calls load (the checkpoint's maps into them), applies only what is above S,
 * and settles as eng_rebuild_apply does. */
int eng_rebuild_apply_base(struct eng_rebuild *rb, uint64_t base_seq,
			   int (*load)(void *arg), void *arg);
/* Notes a USED header h of a slot that is not walked (older than a family checkpoint
 * an adoption loads): the family's counters and the maxima, as eng_rebuild_slot. */
int eng_rebuild_note(struct eng_rebuild *rb, uint32_t slot, const struct segment_header *h);
/* Does a batch or carried trim above `above`, among those fed, map layer's lba? */
bool eng_rebuild_remaps(const struct eng_rebuild *rb, uint64_t layer, uint64_t lba,
			uint64_t above);
/* Is layer merged away or deleted above `above`, among the records fed? */
bool eng_rebuild_goes_above(const struct eng_rebuild *rb, uint64_t layer, uint64_t above);
/* Keeps every family checkpoint block (BEGIN, END, MAPS) the walks meet, whole. */
void eng_rebuild_keep_fckpt(struct eng_rebuild *rb);
struct eng_rb_fblock {
	uint32_t slot, block;
	enum ondisk_entry_kind kind;
	uint64_t seq;  /* its batch's */
	uint8_t *data; /* one block */
};
size_t eng_rebuild_fblocks(const struct eng_rebuild *rb, const struct eng_rb_fblock **out);
/* The highest sequence number, generation and layer id the fed slots hold. */
void eng_rebuild_maxima(const struct eng_rebuild *rb, uint64_t *seq, uint64_t *gen,
			uint64_t *id);
void eng_rebuild_end(struct eng_rebuild *rb); /* NULL ok */

/* gc.c */
void eng_gc_maybe(struct engine *eng);
/* Free slots the automatic cleaner keeps (others stay clear of them). */
unsigned eng_gc_low_water(const struct engine *eng);

/* defrag.c: read reallocation */
/* Does a window of n mapped blocks that took `ios` I/Os want rewriting? */
bool eng_defrag_wanted(uint32_t n, uint32_t ios);
/* A read of vol found such a window, b[0..n) (lba: the request's block 0, dst: its
 * buffer): the blocks vol's own map holds are noted in req, rewritten when it ends. */
void eng_defrag_note(struct engine_volume *vol, struct ioreq *req, uint64_t lba, uint8_t *dst,
		     const struct read_block *b, uint32_t n);
/* A client's read of [lba, lba + nblocks) of vol arrives: does it continue a
 * sequential stream long enough for its scattered windows to be rewritten
 * (engine_opts.seq_defrag)? Updates vol's stream either way. */
bool eng_defrag_seq_read(struct engine_volume *vol, uint64_t lba, uint32_t nblocks);
/* Before a read's callback (req->defrag set): appends what still qualifies as MOVEs,
 * in LBA order, from req's buffer; frees the plan. */
void eng_defrag_finish(struct engine *eng, struct ioreq *req);
/* The idle defragmenter (engine_opts.idle_defrag): when no client request came for a
 * while, finds a volume's next scattered window and rewrites it (one at a time). */
void eng_defrag_idle_init(struct engine *eng); /* engine_open, once the log is replayed */
void eng_defrag_idle_free(struct engine *eng);
void eng_defrag_idle_maybe(struct engine *eng);
/* ms until eng_defrag_idle_maybe() has work, INT_MAX when only an event brings it */
int eng_defrag_idle_timeout(const struct engine *eng);
/* Has it a read or rewritten blocks in flight (a job that drops a layer waits)? */
bool eng_defrag_idle_busy(const struct engine *eng);

/* prezero.c: zeros over the never-written free slots the log takes next */
void eng_prezero_init(struct engine *eng);
/* A batch of `bytes` went to the log: small ones earn zeros ahead while clients are busy */
void eng_prezero_appended(struct engine *eng, uint64_t bytes);
void eng_prezero_maybe(struct engine *eng);
/* ms until eng_prezero_maybe() has work, INT_MAX when nothing but an event brings it */
int eng_prezero_timeout(const struct engine *eng);
/* Is slot i empty, waiting only for a checkpoint to be freed (gc.c)? Sealed, nothing
 * live or pending in it, not a held copy, and not kept for trims that still hide older
 * blocks (the cleaner carries them first). */
bool eng_slot_frees_at_checkpoint(const struct slot *slots, uint32_t nslots, uint32_t i);
/* The slot the cleaner should take next (cost-benefit), or -1. *empty_waiting counts
 * the slots that are already empty and only wait for a checkpoint. */
int64_t eng_gc_pick_victim(const struct slot *slots, uint32_t nslots, uint32_t blocks_per_seg,
			   uint64_t next_seq, uint32_t *empty_waiting);
/* Whether the slots the cleaner emptied are worth a checkpoint at now_ms (gc.c). */
bool eng_gc_ckpt_due(const struct engine *eng, uint64_t now_ms);

/* What holds the slots in use (gc.c): the store-full message and the cleaner's debug
 * log say it, so that "full" is explained rather than asserted. */
struct eng_space {
	uint32_t used;      /* slots not free */
	uint32_t busy;      /* open, batches or reads in flight, being freed */
	uint32_t too_live;  /* sealed, more than ENG_GC_MAX_LIVE_PCT live or too little died in
			       it (gc.c, reclaims()): not worth cleaning */
	uint32_t pinned;    /* sealed, nothing live, kept for the trims in them */
	uint32_t waiting;   /* sealed, nothing live: the next checkpoint frees them */
	uint32_t skipped;   /* hold a block that failed its checksum */
	uint32_t cleanable; /* the rest: the cleaner can take them */
	uint32_t held;      /* copies of other nodes' segments (held.c): counted nowhere else */
	uint64_t live;      /* live blocks in all of them */
	uint64_t tombs;     /* TRIM, ZERO and TOMB entries in them */
};
void eng_space_census(const struct engine *eng, struct eng_space *sp);
/* One line of it, for a log message. */
void eng_space_describe(const struct engine *eng, char *buf, size_t len);

/* ---- family checkpoints (fckpt.c; docs/replication.md, "Family checkpoints") ---- */

/* Called by capture_begin() after the maps' dirty chunks are set aside, with S: with
 * engine_opts.family_records, each family asked for (eng_fckpt_want) and, with dirty,
 * each some of whose chunks are set aside gets a family checkpoint in its own log:
 * BEGIN, its layers' SET records, MAPS blocks of its layers' whole maps, then (once
 * those are acknowledged) END. eng->fckpt is set while any is in flight. */
void eng_fckpt_start(struct engine *eng, uint64_t seq, bool dirty);
/* Start-up, before its first checkpoint: `fmaps` is not stored, so every slot of a
 * family run here may hold blocks of the family's newest complete checkpoint (its
 * MAPS, or an END that went on into the next segment): each counts one until the
 * family's next one completes (eng_fckpt_forget), or the family gives it up short of
 * room. Freed as empty before that, an END-only segment took the newest checkpoint
 * with it, and a new owner read every segment above an older one (cluster_ec_read's
 * flake). */
void eng_fckpt_pin_unknown(struct engine *eng);
/* No slot of family uid counts blocks of a newest family checkpoint any more (a newer
 * one will, or none: the family is not run here). */
void eng_fckpt_forget(struct engine *eng, uint64_t uid);
/* A MAPS or FCKPT entry retired at loc (layer.c): where a MAPS block landed. */
void eng_fckpt_retired(struct engine_volume *vol, const struct summary_entry *e,
		       const struct map_loc *loc);
/* The slots a landed checkpoint found empty: freed now, or once the family
 * checkpoints it started have their END (or failed). Takes slots (malloc'd). */
void eng_fckpt_free_after(struct engine *eng, struct ckpt_free *slots, size_t n);
/* Family uid's next family checkpoint is written even if none of its chunks is dirty
 * (the cleaner wants a slot holding its MAPS blocks; a start; an adoption). */
void eng_fckpt_want(struct engine *eng, uint64_t uid);
void eng_fckpt_want_all(struct engine *eng);
void eng_fckpt_destroy(struct engine *eng);
/* The loader (an adoption): the newest complete family checkpoint of uid among the
 * blocks rb kept whose MAPS blocks rb kept too and whose maps name only segments held
 * here; b->k 0: none. 0 or -ENOMEM. */
struct eng_fckpt_base {
	uint64_t k, seq;  /* K and its S */
	size_t *maps;     /* its MAPS blocks: indices into eng_rebuild_fblocks() */
	size_t nmaps;
};
int eng_fckpt_find(const struct engine *eng, uint64_t uid, const struct eng_rebuild *rb,
		   struct eng_fckpt_base *b);
/* b's maps into the family's layers (created by eng_rebuild_apply_base). */
int eng_fckpt_load(struct engine *eng, uint64_t uid, const struct eng_rebuild *rb,
		   const struct eng_fckpt_base *b);
void eng_fckpt_base_free(struct eng_fckpt_base *b);

/* Adds chunk (n entries, slot-addressed as map_take_dirty() emits them; n 0: the chunk
 * is empty now) to MAPS block m, each slot turned into its segment number. -ENOSPC: m
 * is full (encode it, start another); -ERANGE: a chunk or slot out of range; -EXDEV:
 * an entry's slot is not a segment of family uid. m is unchanged on error but for the
 * chunk being added (not counted). */
int eng_fmaps_add(const struct engine *eng, uint64_t uid, struct fmaps_block *m,
		  uint64_t chunk, const struct ondisk_map_entry *e, size_t n);

/* Segment number -> the slot holding that segment of one family here. */
struct eng_sno_table {
	uint32_t base, n;
	uint32_t *slot; /* UINT32_MAX: not here */
};
/* Of every non-free slot of family uid (held copies too, not the held fragments of
 * its stripes: a fragment is no copy of the segment's log). 0 or -ENOMEM. */
int eng_sno_table_build(const struct engine *eng, uint64_t uid, struct eng_sno_table *t);
void eng_sno_table_free(struct eng_sno_table *t);
/* Replaces each chunk of m in layer v's map (m names v). -EINVAL: another layer;
 * -ENOENT: a segment m names is not in t (chunks before it are loaded); -EPROTO,
 * -ERANGE, -ENOMEM as map_load_chunk. */
int eng_fmaps_load(struct engine_volume *v, const struct eng_sno_table *t,
		   const struct fmaps_block *m);

#endif
