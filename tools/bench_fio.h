/* tools/bench_fio.h — run fio on a raw file and read its terse (v3) output. */
#ifndef QUILL_TOOLS_BENCH_FIO_H
#define QUILL_TOOLS_BENCH_FIO_H

#include <stdbool.h>
#include <stdint.h>

struct fio_result {
	double iops;
	double lat_mean_us;  /* total latency (submission to completion) */
	double clat_p99_us;  /* completion latency, 99th percentile */
	double lat_max_us;   /* total latency, the worst */
};

/* Writes the whole file sequentially (1 MiB, QD 16) so that reads hit written extents.
 * Returns 0 or -1 (fio's output is left on stderr). */
int fio_prefill(const char *file, uint64_t size);

/* Runs one time-based job: rw is "randwrite" or "randread", 4 KiB, io_uring, O_DIRECT.
 * Returns 0 and fills out, or -1 (fio failed or printed nothing usable). */
int fio_run(const char *file, uint64_t size, const char *rw, unsigned qd, unsigned runtime_s,
	    struct fio_result *out);

/* Parses one terse v3 line (exposed for testing). write selects the write columns. */
int fio_parse_terse(const char *line, bool write, struct fio_result *out);

#endif
