/* metadata/meta_internal.h — what meta.c takes from meta_logger.cc. */
#ifndef QUILL_METADATA_META_INTERNAL_H
#define QUILL_METADATA_META_INTERNAL_H

#include <rocksdb/c.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A RocksDB logger that writes through common/log.h (component "rocksdb") instead
 * of a LOG file in the database directory: RocksDB's WARN and ERROR lines at quill's
 * info level, all of them at debug. NULL without memory. The options it is given to
 * keep their own reference: destroy it after rocksdb_options_set_info_log(). */
rocksdb_logger_t *meta_logger_create(void);
void meta_logger_destroy(rocksdb_logger_t *l); /* NULL ok */

#ifdef __cplusplus
}
#endif

#endif
