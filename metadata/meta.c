/* metadata/meta.c — metadata/meta.h over RocksDB's C API.
 *
 * RocksDB types stay in this file. Every RocksDB error string is logged once here
 * (component "meta"), freed, and returned as -errno: -EBUSY when the database's
 * lock is held, -EIO otherwise.
 */
#include "metadata/meta.h"

#include "common/log.h"

#include <errno.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounded memtables: the index is small and RocksDB is off the 4k write path. */
#define META_WRITE_BUFFER_BYTES (16u << 20)
#define META_MAX_WRITE_BUFFERS 2
#define META_BACKGROUND_THREADS 2

struct meta {
	rocksdb_t *db;
	rocksdb_options_t *opts;
	rocksdb_readoptions_t *ro;
	rocksdb_writeoptions_t *wo_sync;
	rocksdb_writeoptions_t *wo_nowal;
	rocksdb_flushoptions_t *fo;
};

struct meta_batch {
	rocksdb_writebatch_t *wb;
};

struct meta_iter {
	rocksdb_iterator_t *it;
	void *prefix; /* owned copy, plen bytes */
	size_t plen;
	bool valid; /* positioned on a key that starts with prefix */
};

/* Consumes err: logs it with what failed, frees it, returns -EBUSY or -EIO. */
static int meta_error(char *err, const char *what)
{
	int ret = -EIO;

	/* RocksDB words a held lock as "While lock file: ..." (another process) or
	 * "lock hold by current process" (this one). */
	if (strstr(err, "lock file") || strstr(err, "lock hold"))
		ret = -EBUSY;
	log_msg(LOG_ERROR, "meta", "%s: %s", what, err);
	rocksdb_free(err);
	return ret;
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
	struct meta *m;
	char *err = NULL;
	char what[64];
	int ret;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;

	m->opts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(m->opts, 1);
	rocksdb_options_increase_parallelism(m->opts, META_BACKGROUND_THREADS);
	rocksdb_options_set_write_buffer_size(m->opts, META_WRITE_BUFFER_BYTES);
	rocksdb_options_set_max_write_buffer_number(m->opts, META_MAX_WRITE_BUFFERS);
	rocksdb_options_set_info_log_level(m->opts, 2 /* WARN */);
	rocksdb_options_set_keep_log_file_num(m->opts, 3);
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
	free(m);
	return ret;
}

void meta_close(struct meta *m)
{
	if (!m)
		return;
	rocksdb_close(m->db);
	meta_free_options(m);
	free(m);
}

int meta_get(struct meta *m, const void *key, size_t klen, void **val, size_t *vlen)
{
	rocksdb_pinnableslice_t *ps;
	const char *data;
	char *err = NULL;
	size_t len;
	void *copy;

	ps = rocksdb_get_pinned(m->db, m->ro, key, klen, &err);
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

	if (!wo)
		return -EINVAL;
	rocksdb_put(m->db, wo, key, klen, val, vlen, &err);
	return err ? meta_error(err, "put") : 0;
}

int meta_delete(struct meta *m, const void *key, size_t klen, enum meta_durability d)
{
	rocksdb_writeoptions_t *wo = meta_writeoptions(m, d);
	char *err = NULL;

	if (!wo)
		return -EINVAL;
	rocksdb_delete(m->db, wo, key, klen, &err);
	return err ? meta_error(err, "delete") : 0;
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

	if (!wo)
		return -EINVAL;
	rocksdb_write(m->db, wo, b->wb, &err);
	return err ? meta_error(err, "batch commit") : 0;
}

int meta_flush(struct meta *m)
{
	char *err = NULL;

	rocksdb_flush(m->db, m->fo, &err);
	return err ? meta_error(err, "flush") : 0;
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

	it = calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	it->prefix = malloc(plen ? plen : 1);
	if (!it->prefix)
		goto err_free_iter;
	if (plen)
		memcpy(it->prefix, prefix, plen);
	it->plen = plen;

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
	free(it->prefix);
	free(it);
}
