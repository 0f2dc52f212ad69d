/* metadata/meta.h — a key/value index on RocksDB.
 *
 * Keys and values are byte strings; keys sort bytewise (use big-endian integers in
 * keys so that numeric order is key order). No rocksdb type leaves this module:
 * RocksDB's error strings are logged here and become -errno.
 *
 * Durability of a write is chosen per call:
 *   META_SYNC   written to RocksDB's WAL and fsynced before returning.
 *   META_NOWAL  no WAL: lives in the memtable until meta_flush() or RocksDB's own
 *               memtable flush writes it to an SST file; lost on a crash before that.
 *               (The engine uses this for the extent map, whose truth is the log.)
 *
 * Threading: a struct meta may be used from several threads at once (RocksDB is
 * thread-safe); a batch or an iterator belongs to one thread.
 *
 * Errors: -ENOSPC the metadata disk is full, -EBUSY the database is held, -EIO
 * anything else RocksDB reports. A failed write stops all of RocksDB's writes (a
 * "hard" background error: every later write fails with the same words) until
 * meta_recover() reopens the database; meta_health() says whether the last write
 * failed. Nothing here aborts: RocksDB's own log goes to quill's (meta_logger.cc).
 */
#ifndef QUILL_METADATA_META_H
#define QUILL_METADATA_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct meta;
struct meta_batch;
struct meta_iter;

enum meta_durability { META_SYNC, META_NOWAL };

/* Opens the database at path, creating it if missing. -EIO (logged) on RocksDB
 * errors, -EBUSY if another process holds it. */
int meta_open(const char *path, struct meta **out);
void meta_close(struct meta *m); /* NULL ok */

/* On success *val is malloc()ed (caller frees) and *vlen its length.
 * -ENOENT if the key is absent. */
int meta_get(struct meta *m, const void *key, size_t klen, void **val, size_t *vlen);
int meta_put(struct meta *m, const void *key, size_t klen, const void *val, size_t vlen,
	     enum meta_durability d);
int meta_delete(struct meta *m, const void *key, size_t klen, enum meta_durability d);

/* Atomic batches: all of a batch's operations apply, or none. */
int meta_batch_create(struct meta_batch **out);
void meta_batch_destroy(struct meta_batch *b); /* NULL ok */
void meta_batch_put(struct meta_batch *b, const void *key, size_t klen, const void *val,
		    size_t vlen);
void meta_batch_delete(struct meta_batch *b, const void *key, size_t klen);
/* Deletes every key in [begin, end). */
void meta_batch_delete_range(struct meta_batch *b, const void *begin, size_t blen,
			     const void *end, size_t elen);
size_t meta_batch_count(const struct meta_batch *b);
int meta_batch_commit(struct meta *m, struct meta_batch *b, enum meta_durability d);

/* Writes every memtable to SST files and waits: after it returns 0, every META_NOWAL
 * write that returned before the call is durable. -EIO if some were lost to a
 * meta_recover() since the last flush. */
int meta_flush(struct meta *m);

/* 0, or the -errno of the last write, commit or flush if it failed (-ENOSPC: the
 * metadata disk is full). Any thread. */
int meta_health(struct meta *m);

/* After a failed write: closes and reopens the database, so that writes work again
 * once the cause is gone (space freed). Waits for the calls in progress on other
 * threads; does nothing while an iterator exists. Returns 0 if healthy (at once if
 * the last write did not fail), else the error, and then every call fails with it
 * until a later meta_recover() succeeds. META_NOWAL writes not flushed before the
 * reopen are lost: if no meta_flush() was called since they returned (it would have
 * failed), the next one fails (-EIO) to say so. */
int meta_recover(struct meta *m);

/* The -errno of a RocksDB error string (exposed for tests). */
int meta_errno_of(const char *rocksdb_error);

/* Iterates keys that start with prefix (plen may be 0: all keys), in key order.
 * Pointers from key()/value() are valid until the next meta_iter_next/destroy. */
int meta_iter_create(struct meta *m, const void *prefix, size_t plen, struct meta_iter **out);
bool meta_iter_valid(const struct meta_iter *it);
void meta_iter_next(struct meta_iter *it);
const void *meta_iter_key(const struct meta_iter *it, size_t *klen);
const void *meta_iter_value(const struct meta_iter *it, size_t *vlen);
/* -EIO if iteration stopped on an error rather than at the end. */
int meta_iter_status(const struct meta_iter *it);
void meta_iter_destroy(struct meta_iter *it); /* NULL ok */

#endif
