/* metadata/meta_logger.cc — RocksDB's info log goes to quill's log, never to a file.
 *
 * Why: Debian 12's librocksdb 7.8 is built with assertions, and its file logger
 * (EnvLogger) aborts the process on the first line it writes after one write to its
 * LOG file failed: WritableFileWriter::AssertFalseAndGetStatusForPrevError(),
 * "writable_file_writer.h:312: Assertion 'sync_without_flush_called_' failed". The
 * LOG lives in the metadata directory, so a full metadata disk killed quilld, the
 * line that did it being RocksDB's own "free space ... is less than required disk
 * buffer" from its recovery thread (SstFileManagerImpl::ClearError). Opening the
 * database on a full disk would die the same way, on the LOG's second header line.
 * A logger without a file has nothing to fail.
 *
 * RocksDB 7.8's C API can install a logger (rocksdb_options_set_info_log) but not
 * make one (rocksdb_logger_create_* came in 8.x). rocksdb_logger_t is, in every
 * release from 7.x to 9.x, a struct holding one std::shared_ptr<Logger> (db/c.cc);
 * it is defined here the same way.
 */
#include "metadata/meta_internal.h"

#include <cstdarg>
#include <cstdio>
#include <memory>
#include <new>
#include <rocksdb/env.h>

extern "C" {
#include "common/log.h"
}

struct rocksdb_logger_t {
	std::shared_ptr<rocksdb::Logger> rep;
};

namespace {

class QuillLogger : public rocksdb::Logger {
public:
	explicit QuillLogger(rocksdb::InfoLogLevel level) : rocksdb::Logger(level) {}

	using rocksdb::Logger::Logv;

	/* Lines without a level are RocksDB's INFO. */
	void Logv(const char *format, va_list ap) override
	{
		Emit(LOG_DEBUG, format, ap);
	}

	void Logv(const rocksdb::InfoLogLevel level, const char *format, va_list ap) override
	{
		if (level < GetInfoLogLevel())
			return;
		switch (level) {
		case rocksdb::InfoLogLevel::WARN_LEVEL:
			Emit(LOG_WARN, format, ap);
			break;
		case rocksdb::InfoLogLevel::ERROR_LEVEL:
		case rocksdb::InfoLogLevel::FATAL_LEVEL:
			Emit(LOG_ERROR, format, ap);
			break;
		default: /* DEBUG, INFO, HEADER (the options dump at open) */
			Emit(LOG_DEBUG, format, ap);
			break;
		}
	}

private:
	static void Emit(enum log_level level, const char *format, va_list ap)
	{
		char line[1024];

		if (level < log_get_level())
			return;
		vsnprintf(line, sizeof(line), format, ap);
		for (char *p = line; *p; p++) /* one line per event (a VersionEdit dump has 8) */
			if (*p == '\n' && p[1])
				*p = ' ';
		log_msg(level, "rocksdb", "%s", line);
	}
};

} // namespace

rocksdb_logger_t *meta_logger_create(void)
{
	rocksdb::InfoLogLevel level = log_get_level() == LOG_DEBUG
					      ? rocksdb::InfoLogLevel::INFO_LEVEL
					      : rocksdb::InfoLogLevel::WARN_LEVEL;
	rocksdb_logger_t *l = new (std::nothrow) rocksdb_logger_t;

	if (!l)
		return nullptr;
	try {
		l->rep = std::make_shared<QuillLogger>(level);
	} catch (const std::bad_alloc &) {
		delete l;
		return nullptr;
	}
	return l;
}

void meta_logger_destroy(rocksdb_logger_t *l)
{
	delete l;
}
