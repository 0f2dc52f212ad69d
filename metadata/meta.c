/* metadata/meta.c — metadata/meta.h over RocksDB's C API.
 *
 * RocksDB types stay in this file. Every RocksDB error string is logged once here
 * (component "meta"), freed, and returned as -errno (meta_errno_of). RocksDB's own
 * log goes to quill's log (meta_logger.cc), never to a LOG file in the database
 * directory: Debian's RocksDB aborts the process when that file's disk is full.
 */
#include "metadata/meta.h"

#include "common/err.h"
#include "common/log.h"
#include "metadata/meta_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Bounded memtables: the index is small and RocksDB is off the 4k write path. */
#define META_WRITE_BUFFER_BYTES (16u << 20)
#define META_MAX_WRITE_BUFFERS 2
#define META_BACKGROUND_THREADS 2

/* The database is reopened (meta_recover) under the write side of lock; every other
 * call holds its read side, and an iterator holds it for its whole life. */
struct meta {
	pthread_rwlock_t lock;
	rocksdb_t *db;       /* NULL after a reopen that failed */
	char *path;
	rocksdb_options_t *opts;
	rocksdb_readoptions_t *ro;
	rocksdb_writeoptions_t *wo_sync;
	rocksdb_writeoptions_t *wo_nowal;
	rocksdb_flushoptions_t *fo;
	atomic_int health; /* 0, or the -errno of the last write or flush, if it failed */
	atomic_uint iters; /* live iterators: a reopen waits for none */
	/* META_NOWAL writes since the last meta_flush(), and whether a reopen lost them */
	atomic_bool nowal_unflushed, nowal_lost;
};

struct meta_batch {
	rocksdb_writebatch_t *wb;
};

struct meta_iter {
	struct meta *m; /* whose lock it holds (read side) until destroyed */
	rocksdb_iterator_t *it;
	void *prefix; /* owned copy, plen bytes */
	size_t plen;
	bool valid; /* positioned on a key that starts with prefix */
};

int meta_errno_of(const char *err)
{
	static const struct {
		const char *words;
		int err;
	} map[] = {
		/* RocksDB words a held lock "While lock file: ..." (another process) or
		 * "lock hold by current process" (this one). */
		{ "lock file", -EBUSY },
		{ "lock hold", -EBUSY },
		/* Status::NoSpace ("IO error: No space left on device: While appending
		 * to file: ...") and SpaceLimit (an SstFileManager's limit); a write
		 * refused after a background error carries that error's words. */
		{ "No space left on device", -ENOSPC },
		{ "Max allowed space was reached", -ENOSPC },
		{ "Invalid argument", -EINVAL },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strstr(err, map[i].words))
			return map[i].err;
	return -EIO;
}

/* Consumes err: logs it with what failed, frees it, returns its -errno. */
static int meta_error(char *err, const char *what)
{
	int ret = meta_errno_of(err);

	LOG_RATELIMITED(LOG_ERROR, "meta", "%s: %s", what, err);
	rocksdb_free(err);
	return ret;
}

/* A write's or flush's result, kept for meta_health(). */
static int meta_note(struct meta *m, char *err, const char *what)
{
	int r = err ? meta_error(err, what) : 0;

	atomic_store(&m->health, r);
	return r;
}

int meta_health(struct meta *m)
{
	return atomic_load(&m->health);
}

static rocksdb_writeoptions_t *meta_writeoptions(struct meta *m, enum meta_durability d)
{
	switch (d) {
	case META_SYNC:
		return m->wo_sync;
	case META_NOWAL:
		return m->wo_nowal;
	}
	return NULL;
}

static void meta_free_options(struct meta *m)
{
	if (m->fo)
		rocksdb_flushoptions_destroy(m->fo);
	if (m->wo_nowal)
		rocksdb_writeoptions_destroy(m->wo_nowal);
	if (m->wo_sync)
		rocksdb_writeoptions_destroy(m->wo_sync);
	if (m->ro)
		rocksdb_readoptions_destroy(m->ro);
	if (m->opts)
		rocksdb_options_destroy(m->opts);
}

int meta_open(const char *path, struct meta **out)
{
	rocksdb_logger_t *logger;
	struct meta *m;
	char *err = NULL;
	char what[64];
	int ret;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->path = strdup(path);
	if (!m->path) {
		free(m);
		return -ENOMEM;
	}
	pthread_rwlock_init(&m->lock, NULL);

	m->opts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(m->opts, 1);
	rocksdb_options_increase_parallelism(m->opts, META_BACKGROUND_THREADS);
	rocksdb_options_set_write_buffer_size(m->opts, META_WRITE_BUFFER_BYTES);
	rocksdb_options_set_max_write_buffer_number(m->opts, META_MAX_WRITE_BUFFERS);
	logger = meta_logger_create();
	if (!logger) {
		ret = -ENOMEM;
		goto err_free_options;
	}
	rocksdb_options_set_info_log(m->opts, logger); /* the options hold it now */
	meta_logger_destroy(logger);
	/* The values are packed binary (extent map chunks): compressing them costs CPU the
	 * I/O path needs and saves little. */
	rocksdb_options_set_compression(m->opts, rocksdb_no_compression);

	m->ro = rocksdb_readoptions_create();
	m->wo_sync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(m->wo_sync, 1);
	m->wo_nowal = rocksdb_writeoptions_create();
	rocksdb_writeoptions_disable_WAL(m->wo_nowal, 1);
	m->fo = rocksdb_flushoptions_create();
	rocksdb_flushoptions_set_wait(m->fo, 1);

	/* a new directory is made here: RocksDB would make it too, but only after
	 * logging an ERROR that it could not read it */
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		log_msg(LOG_ERROR, "meta", "cannot create %s: %s", path, err_str(-ret));
		goto err_free_options;
	}
	m->db = rocksdb_open(m->opts, path, &err);
	if (err) {
		snprintf(what, sizeof(what), "open %.50s", path);
		ret = meta_error(err, what);
		goto err_free_options;
	}
	*out = m;
	return 0;

err_free_options:
	meta_free_options(m);
	pthread_rwlock_destroy(&m->lock);
	free(m->path);
	free(m);
	return ret;
}

void meta_close(struct meta *m)
{
	if (!m)
		return;
	if (m->db)
		rocksdb_close(m->db);
	meta_free_options(m);
	pthread_rwlock_destroy(&m->lock);
	free(m->path);
	free(m);
}

/* Why not RocksDB's own recovery: it resumes after a full disk only once
 * META_WRITE_BUFFER_BYTES are free, and 7.8 does not get past a failed WAL append at
 * all (the WAL writer keeps its error, the recovery's memtable switch fails on it:
 * "Failed to switch from #10 to #13 WAL file ... Seen error. Skip writing buffer"),
 * and the C API has no Resume(). Close and open is what works: open replays the WAL
 * up to the torn record (kPointInTimeRecovery), whose write had failed anyway.
 * META_NOWAL writes not yet flushed are lost with the memtable: if no meta_flush()
 * was called since (which would have failed), the next one says so (-EIO), so that
 * a caller never takes them as durable. */
int meta_recover(struct meta *m)
{
	int r = atomic_load(&m->health);
	char *err = NULL;

	if (r == 0 || atomic_load(&m->iters))
		return r; /* healthy, or an iterator still reads this database */
	pthread_rwlock_wrlock(&m->lock);
	if (atomic_load(&m->health) == 0) { /* another thread reopened it meanwhile */
		pthread_rwlock_unlock(&m->lock);
		return 0;
	}
	if (m->db)
		rocksdb_close(m->db); /* its flush fails on a full disk: the WAL has the rest */
	if (atomic_load(&m->nowal_unflushed))
		atomic_store(&m->nowal_lost, true);
	m->db = rocksdb_open(m->opts, m->path, &err);
	r = err ? meta_error(err, "reopen") : 0;
	if (err)
		m->db = NULL;
	atomic_store(&m->health, r);
	pthread_rwlock_unlock(&m->lock);
	if (r == 0)
		log_msg(LOG_INFO, "meta", "%s: reopened after a failed write; writes go on",
			m->path);
	return r;
}

/* The read side of the lock and the database, or the error it failed with. */
static int meta_enter(struct meta *m)
{
	pthread_rwlock_rdlock(&m->lock);
	if (m->db)
		return 0;
	pthread_rwlock_unlock(&m->lock);
	return atomic_load(&m->health) ? atomic_load(&m->health) : -EIO;
}

static void meta_leave(struct meta *m)
{
	pthread_rwlock_unlock(&m->lock);
}

/* Ends a write that meta_enter() let in. */
static int meta_write_done(struct meta *m, enum meta_durability d, char *err,
			   const char *what)
{
	if (!err && d == META_NOWAL)
		atomic_store(&m->nowal_unflushed, true);
	meta_leave(m);
	return meta_note(m, err, what);
}

int meta_get(struct meta *m, const void *key, size_t klen, void **val, size_t *vlen)
{
	rocksdb_pinnableslice_t *ps;
	const char *data;
	char *err = NULL;
	size_t len;
	void *copy;
	int r = meta_enter(m);

	if (r < 0)
		return r;
	ps = rocksdb_get_pinned(m->db, m->ro, key, klen, &err);
	meta_leave(m);
	if (err)
		return meta_error(err, "get");
	if (!ps)
		return -ENOENT;

	data = rocksdb_pinnableslice_value(ps, &len);
	copy = malloc(len ? len : 1); /* never NULL for an empty value */
	if (!copy) {
		rocksdb_pinnableslice_destroy(ps);
		return -ENOMEM;
	}
	if (len)
		memcpy(copy, data, len);
	rocksdb_pinnableslice_destroy(ps);
	*val = copy;
	*vlen = len;
	return 0;
}

int meta_put(struct meta *m, const void *key, size_t klen, const void *val, size_t vlen,
	     enum meta_durability d)
{
	rocksdb_writeoptions_t *wo = meta_writeoptions(m, d);
	char *err = NULL;
	int r;

	if (!wo)
		return -EINVAL;
	r = meta_enter(m);
	if (r < 0)
		return r;
	rocksdb_put(m->db, wo, key, klen, val, vlen, &err);
	return meta_write_done(m, d, err, "put");
}

int meta_delete(struct meta *m, const void *key, size_t klen, enum meta_durability d)
{
	rocksdb_writeoptions_t *wo = meta_writeoptions(m, d);
	char *err = NULL;
	int r;

	if (!wo)
		return -EINVAL;
	r = meta_enter(m);
	if (r < 0)
		return r;
	rocksdb_delete(m->db, wo, key, klen, &err);
	return meta_write_done(m, d, err, "delete");
}

int meta_batch_create(struct meta_batch **out)
{
	struct meta_batch *b = malloc(sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->wb = rocksdb_writebatch_create();
	*out = b;
	return 0;
}

void meta_batch_destroy(struct meta_batch *b)
{
	if (!b)
		return;
	rocksdb_writebatch_destroy(b->wb);
	free(b);
}

void meta_batch_put(struct meta_batch *b, const void *key, size_t klen, const void *val,
		    size_t vlen)
{
	rocksdb_writebatch_put(b->wb, key, klen, val, vlen);
}

void meta_batch_delete(struct meta_batch *b, const void *key, size_t klen)
{
	rocksdb_writebatch_delete(b->wb, key, klen);
}

void meta_batch_delete_range(struct meta_batch *b, const void *begin, size_t blen,
			     const void *end, size_t elen)
{
	rocksdb_writebatch_delete_range(b->wb, begin, blen, end, elen);
}

size_t meta_batch_count(const struct meta_batch *b)
{
	/* The C API takes a non-const batch but only reads its count. */
	return (size_t)rocksdb_writebatch_count((rocksdb_writebatch_t *)b->wb);
}

int meta_batch_commit(struct meta *m, struct meta_batch *b, enum meta_durability d)
{
	rocksdb_writeoptions_t *wo = meta_writeoptions(m, d);
	char *err = NULL;
	int r;

	if (!wo)
		return -EINVAL;
	r = meta_enter(m);
	if (r < 0)
		return r;
	rocksdb_write(m->db, wo, b->wb, &err);
	return meta_write_done(m, d, err, "batch commit");
}

int meta_flush(struct meta *m)
{
	char *err = NULL;
	int r = meta_enter(m);

	if (r < 0)
		return r;
	if (atomic_exchange(&m->nowal_lost, false)) {
		/* what this flush was to make durable went with a reopen */
		meta_leave(m);
		log_msg(LOG_WARN, "meta", "flush: unflushed META_NOWAL writes were lost when "
			"the database was reopened");
		return -EIO;
	}
	/* a failed flush tells its caller too: a later reopen need not say it again */
	atomic_store(&m->nowal_unflushed, false);
	rocksdb_flush(m->db, m->fo, &err);
	meta_leave(m);
	return meta_note(m, err, "flush");
}

static void meta_iter_update(struct meta_iter *it)
{
	const char *key;
	size_t klen;

	it->valid = false;
	if (!rocksdb_iter_valid(it->it))
		return;
	key = rocksdb_iter_key(it->it, &klen);
	it->valid = klen >= it->plen && memcmp(key, it->prefix, it->plen) == 0;
}

int meta_iter_create(struct meta *m, const void *prefix, size_t plen, struct meta_iter **out)
{
	struct meta_iter *it;
	int r;

	it = calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	it->prefix = malloc(plen ? plen : 1);
	if (!it->prefix)
		goto err_free_iter;
	if (plen)
		memcpy(it->prefix, prefix, plen);
	it->plen = plen;

	r = meta_enter(m);
	if (r < 0) {
		free(it->prefix);
		free(it);
		return r;
	}
	atomic_fetch_add(&m->iters, 1);
	it->m = m;
	it->it = rocksdb_create_iterator(m->db, m->ro);
	if (plen)
		rocksdb_iter_seek(it->it, it->prefix, plen);
	else
		rocksdb_iter_seek_to_first(it->it);
	meta_iter_update(it);
	*out = it;
	return 0;

err_free_iter:
	free(it);
	return -ENOMEM;
}

bool meta_iter_valid(const struct meta_iter *it)
{
	return it->valid;
}

void meta_iter_next(struct meta_iter *it)
{
	if (!it->valid)
		return;
	rocksdb_iter_next(it->it);
	meta_iter_update(it);
}

const void *meta_iter_key(const struct meta_iter *it, size_t *klen)
{
	return rocksdb_iter_key(it->it, klen);
}

const void *meta_iter_value(const struct meta_iter *it, size_t *vlen)
{
	return rocksdb_iter_value(it->it, vlen);
}

int meta_iter_status(const struct meta_iter *it)
{
	char *err = NULL;

	rocksdb_iter_get_error(it->it, &err);
	return err ? meta_error(err, "iterate") : 0;
}

void meta_iter_destroy(struct meta_iter *it)
{
	if (!it)
		return;
	rocksdb_iter_destroy(it->it);
	atomic_fetch_sub(&it->m->iters, 1);
	meta_leave(it->m);
	free(it->prefix);
	free(it);
}
