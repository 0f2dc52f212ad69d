/* tools/engine_bench.c — quill-engine-bench: the volume engine's speed, no network.
 *
 *   quill-engine-bench [--file PATH] [--dir DIR] [--size 1G] [--runtime 10]
 *                      [--volume-pct 50] [--sync-size 8M|0] [--fio] [--keep]
 *
 * Formats a store on PATH (default DIR/engine-store.img; its RocksDB goes to
 * DIR/engine-meta), creates a volume of --volume-pct of the store (50% leaves the
 * cleaner room to keep up with random overwrites), prefills it sequentially so that
 * reads hit data, then runs 4 KiB random writes and reads at QD1 and QD32, keeping QD
 * requests in flight (each completion resubmits). Prints IOPS, mean, p99 and max
 * latency: the max shows a stall (a flush, a checkpoint, the cleaner) that the p99
 * hides. --sync-size sets the engine's write-back pacing (engine_opts.sync_bytes; 0:
 * off), to compare with and without it in one build.
 *
 * --fio runs the same four jobs with fio (io_uring, O_DIRECT) on a raw file of the
 * same size in DIR (prefilled too), and adds fio's numbers and engine/fio ratios.
 * DIR defaults to ./data/bench. The files are removed at the end unless --keep.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_fio.h"
#include "bench_hist.h"
#include "common/err.h"
#include "common/log.h"
#include "common/units.h"
#include "engine/engine.h"

#define VOL_NAME "bench"
#define MAX_QD 32u
#define PREFILL_BLOCKS 128u
#define PREFILL_QD 8u

struct bench_opts {
	char dir[1024];
	char file[2048];
	char meta[2100];
	char fio_file[2100];
	uint64_t size;
	unsigned runtime_s;
	unsigned volume_pct;
	uint64_t sync_bytes; /* engine_opts.sync_bytes */
	bool fio;
	bool keep;
};

enum job_kind { JOB_WRITE, JOB_READ };

struct job_def {
	const char *name;
	const char *fio_rw;
	enum job_kind kind;
	unsigned qd;
};

static const struct job_def jobs[] = {
	{ "randwrite 4k QD1", "randwrite", JOB_WRITE, 1 },
	{ "randwrite 4k QD32", "randwrite", JOB_WRITE, 32 },
	{ "randread 4k QD1", "randread", JOB_READ, 1 },
	{ "randread 4k QD32", "randread", JOB_READ, 32 },
};
#define NJOBS (sizeof(jobs) / sizeof(jobs[0]))

struct job_result {
	double iops;
	double mean_us;
	double p99_us;
	double max_us;
	uint64_t errors;
	struct fio_result fio;
	bool have_fio;
};

/* One running job: up to qd requests, each resubmitted from its callback. */
struct job;
struct req {
	struct job *job;
	uint64_t t0;
	void *buf;
};

struct job {
	struct engine *eng;
	struct engine_volume *vol;
	enum job_kind kind;
	uint64_t nblocks;
	uint64_t rng;
	uint64_t end_ns;
	unsigned inflight;
	uint64_t errors;
	int first_err;
	uint64_t sequential_next; /* prefill: next LBA, or UINT64_MAX for random */
	uint32_t io_blocks;
	struct hist hist;
	struct req reqs[MAX_QD];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

#define SLOW_NS 5000000ull /* requests logged at LOG_DEBUG */

static void req_cb(void *arg, int res);

/* Submits r's next request; false when the job is over (or submission failed). */
static bool req_submit(struct req *r)
{
	struct job *j = r->job;
	uint32_t n = j->io_blocks;
	uint64_t lba;
	int rc;

	if (j->sequential_next != UINT64_MAX) {
		if (j->sequential_next >= j->nblocks)
			return false;
		lba = j->sequential_next;
		if (n > j->nblocks - lba)
			n = (uint32_t)(j->nblocks - lba);
		j->sequential_next += n;
	} else {
		if (now_ns() >= j->end_ns)
			return false;
		lba = xorshift(&j->rng) % (j->nblocks - j->io_blocks + 1);
	}
	r->t0 = now_ns();
	if (j->kind == JOB_WRITE)
		rc = engine_write(j->vol, lba, n, r->buf, 0, req_cb, r);
	else
		rc = engine_read(j->vol, lba, n, r->buf, req_cb, r);
	if (rc < 0) {
		j->errors++;
		if (!j->first_err)
			j->first_err = rc;
		return false;
	}
	j->inflight++;
	return true;
}

static void req_cb(void *arg, int res)
{
	struct req *r = arg;
	struct job *j = r->job;
	uint64_t ns = now_ns() - r->t0;

	hist_add(&j->hist, ns);
	if (ns >= SLOW_NS) /* QUILL_LOG=debug: matched against the engine's debug lines */
		log_msg(LOG_DEBUG, "bench", "slow %s: %.1f ms", j->kind == JOB_WRITE ? "write" :
			"read", (double)ns / 1e6);
	j->inflight--;
	if (res < 0) {
		j->errors++;
		if (!j->first_err)
			j->first_err = res;
		return;
	}
	req_submit(r);
}

/* Runs a job to its end; returns the elapsed seconds. */
static double job_run(struct job *j, unsigned qd)
{
	uint64_t t0 = now_ns();
	int rc;

	for (unsigned i = 0; i < qd; i++) {
		j->reqs[i].job = j;
		if (!req_submit(&j->reqs[i]))
			break;
	}
	while (j->inflight) {
		rc = engine_poll(j->eng, -1);
		if (rc < 0) {
			fprintf(stderr, "quill-engine-bench: engine_poll: %s\n", err_str(-rc));
			exit(1);
		}
	}
	return (double)(now_ns() - t0) / 1e9;
}

static void job_init(struct job *j, struct engine *eng, struct engine_volume *vol,
		     enum job_kind kind, uint32_t io_blocks, unsigned qd)
{
	memset(j, 0, sizeof(*j));
	j->eng = eng;
	j->vol = vol;
	j->kind = kind;
	j->io_blocks = io_blocks;
	j->nblocks = engine_volume_size(vol) / ENGINE_BLOCK_SIZE;
	j->rng = 0x9e3779b97f4a7c15ull ^ now_ns();
	j->sequential_next = UINT64_MAX;
	for (unsigned i = 0; i < qd; i++) {
		uint64_t *w;

		if (posix_memalign(&j->reqs[i].buf, ENGINE_BLOCK_SIZE,
				   (size_t)io_blocks * ENGINE_BLOCK_SIZE) != 0) {
			fprintf(stderr, "quill-engine-bench: out of memory\n");
			exit(1);
		}
		w = j->reqs[i].buf;
		for (size_t k = 0; k < (size_t)io_blocks * ENGINE_BLOCK_SIZE / 8; k++)
			w[k] = xorshift(&j->rng);
	}
}

static void job_fini(struct job *j, unsigned qd)
{
	for (unsigned i = 0; i < qd; i++)
		free(j->reqs[i].buf);
}

/* ---- setup ---- */

static void usage(void)
{
	fprintf(stderr,
		"usage: quill-engine-bench [--file PATH] [--dir DIR] [--size 1G] [--runtime 10]\n"
		"                          [--volume-pct 50] [--sync-size 8M|0] [--fio] [--keep]\n"
		"  --file PATH       store file to format (default DIR/engine-store.img)\n"
		"  --dir DIR         measurement files (default ./data/bench)\n"
		"  --size SIZE       store size, and fio's file size (default 1G)\n"
		"  --runtime SEC     seconds per job (default 10)\n"
		"  --volume-pct PCT  volume size in percent of the store (default 50)\n"
		"  --sync-size SIZE  background store flush after this much log (default 8M;\n"
		"                    0: only the checkpoint's)\n"
		"  --fio             also run fio on a raw file and compare\n"
		"  --keep            keep the files\n");
}

static int parse_args(struct bench_opts *o, int argc, char **argv)
{
	const char *file = NULL;

	snprintf(o->dir, sizeof(o->dir), "./data/bench");
	o->size = 1ull << 30;
	o->runtime_s = 10;
	o->volume_pct = 50;
	o->sync_bytes = ENGINE_SYNC_BYTES_DEFAULT;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--fio")) {
			o->fio = true;
		} else if (!strcmp(a, "--keep")) {
			o->keep = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage();
			exit(0);
		} else if (!v) {
			return -EINVAL;
		} else if (!strcmp(a, "--file")) {
			file = v;
			i++;
		} else if (!strcmp(a, "--dir")) {
			snprintf(o->dir, sizeof(o->dir), "%s", v);
			i++;
		} else if (!strcmp(a, "--size")) {
			if (units_parse_size(v, &o->size) < 0 ||
			    (o->size &= ~(uint64_t)(ENGINE_BLOCK_SIZE - 1)) == 0)
				return -EINVAL;
			i++;
		} else if (!strcmp(a, "--runtime")) {
			o->runtime_s = (unsigned)atoi(v);
			i++;
		} else if (!strcmp(a, "--sync-size")) {
			if (units_parse_size(v, &o->sync_bytes) < 0)
				return -EINVAL;
			i++;
		} else if (!strcmp(a, "--volume-pct")) {
			o->volume_pct = (unsigned)atoi(v);
			i++;
		} else {
			return -EINVAL;
		}
	}
	if (o->runtime_s == 0 || o->volume_pct == 0 || o->volume_pct > 95 ||
	    o->size < 64ull << 20)
		return -EINVAL;
	snprintf(o->file, sizeof(o->file), "%s", file ? file : "");
	if (!file)
		snprintf(o->file, sizeof(o->file), "%s/engine-store.img", o->dir);
	snprintf(o->meta, sizeof(o->meta), "%s/engine-meta", o->dir);
	snprintf(o->fio_file, sizeof(o->fio_file), "%s/fio-raw.img", o->dir);
	return 0;
}

static int mkdir_p(const char *path)
{
	char tmp[2048];

	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int run_cmd(const char *const argv[])
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

/* A fresh store: an old superblock would not match the new metadata. */
static int wipe_store(const struct bench_opts *o)
{
	const char *rm[] = { "rm", "-rf", "--", o->meta, NULL };
	struct stat sb;

	if (run_cmd(rm) < 0)
		return -EIO;
	if (stat(o->file, &sb) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (S_ISREG(sb.st_mode))
		return unlink(o->file) < 0 ? -errno : 0;
	/* a block device: clear the superblock */
	{
		int fd = open(o->file, O_WRONLY | O_DIRECT);
		void *zero = NULL;
		int rc = 0;

		if (fd < 0)
			return -errno;
		if (posix_memalign(&zero, ENGINE_BLOCK_SIZE, ENGINE_BLOCK_SIZE) != 0) {
			close(fd);
			return -ENOMEM;
		}
		memset(zero, 0, ENGINE_BLOCK_SIZE);
		if (pwrite(fd, zero, ENGINE_BLOCK_SIZE, 0) != ENGINE_BLOCK_SIZE)
			rc = -EIO;
		free(zero);
		close(fd);
		return rc;
	}
}

static void check_same_fs(const struct bench_opts *o)
{
	struct stat a, b;

	if (stat(o->file, &a) == 0 && stat(o->dir, &b) == 0 && a.st_dev != b.st_dev)
		fprintf(stderr, "quill-engine-bench: note: %s and %s are on different filesystems; "
			"the fio comparison is not like for like\n", o->file, o->dir);
}

/* ---- the runs ---- */

static void print_gc(struct engine *eng, const char *when)
{
	struct engine_stats st;

	engine_get_stats(eng, &st);
	printf("  [%s] segments free %u/%u, gc runs %" PRIu64 ", blocks moved %" PRIu64
	       ", segments freed %" PRIu64 "\n", when, st.segments_free, st.segments_total,
	       st.gc_runs, st.gc_blocks_moved, st.gc_segments_freed);
}

static int prefill(struct engine *eng, struct engine_volume *vol)
{
	struct job *j = malloc(sizeof(*j));
	uint64_t bytes = engine_volume_size(vol);
	double secs;
	int rc = 0;

	if (!j)
		return -ENOMEM;
	job_init(j, eng, vol, JOB_WRITE, PREFILL_BLOCKS, PREFILL_QD);
	j->sequential_next = 0;
	secs = job_run(j, PREFILL_QD);
	if (j->errors) {
		fprintf(stderr, "quill-engine-bench: prefill: %" PRIu64 " errors (%s)\n", j->errors,
			err_str(-j->first_err));
		rc = j->first_err;
	} else {
		printf("prefill: %" PRIu64 " MiB sequential in %.1f s (%.0f MiB/s, 512k QD%u)\n",
		       bytes >> 20, secs, (double)bytes / 1048576.0 / secs, PREFILL_QD);
	}
	job_fini(j, PREFILL_QD);
	free(j);
	return rc;
}

static int engine_jobs(const struct bench_opts *o, struct job_result *res)
{
	struct engine_opts eo;
	struct engine *eng;
	struct engine_volume *vol = NULL;
	struct job *j = malloc(sizeof(*j));
	uint64_t vol_size = (o->size * o->volume_pct / 100) & ~((1ull << 20) - 1);
	struct stat st;
	int rc;

	if (!j)
		return -ENOMEM;
	/* Write the store file once before formatting it, as fio's raw file is: a
	 * fallocate()d file has unwritten extents that ext4 converts on first write,
	 * a cost that neither fio's prefilled file nor a real device has. */
	if (stat(o->file, &st) < 0 && fio_prefill(o->file, o->size) < 0)
		fprintf(stderr, "quill-engine-bench: could not precondition %s; going on\n", o->file);
	engine_opts_init(&eo);
	eo.store_path = o->file;
	eo.meta_path = o->meta;
	eo.store_size = o->size;
	eo.format = true;
	eo.sync_bytes = o->sync_bytes;
	/* the prefilled file is not blank, and the bench formats on purpose */
	eo.reformat = true;
	eo.destroy_data = true;
	rc = engine_open(&eo, &eng);
	if (rc < 0) {
		fprintf(stderr, "quill-engine-bench: engine_open %s: %s\n", o->file, err_str(-rc));
		free(j);
		return rc;
	}
	rc = engine_volume_create(eng, VOL_NAME, vol_size);
	if (rc == 0)
		rc = engine_volume_open(eng, VOL_NAME, &vol);
	if (rc < 0) {
		fprintf(stderr, "quill-engine-bench: volume of %" PRIu64 " bytes: %s\n", vol_size,
			err_str(-rc));
		goto out_close;
	}
	printf("engine: store %s (%" PRIu64 " MiB), volume %" PRIu64 " MiB\n", o->file,
	       o->size >> 20, vol_size >> 20);
	rc = prefill(eng, vol);
	if (rc < 0)
		goto out_vol;
	print_gc(eng, "after prefill");
	for (size_t i = 0; i < NJOBS; i++) {
		double secs;

		job_init(j, eng, vol, jobs[i].kind, 1, jobs[i].qd);
		j->end_ns = now_ns() + (uint64_t)o->runtime_s * 1000000000ull;
		secs = job_run(j, jobs[i].qd);
		res[i].iops = (double)j->hist.count / secs;
		res[i].mean_us = hist_mean_ns(&j->hist) / 1000.0;
		res[i].p99_us = (double)hist_percentile_ns(&j->hist, 99.0) / 1000.0;
		res[i].max_us = (double)j->hist.max_ns / 1000.0;
		res[i].errors = j->errors;
		printf("  %-18s %9.0f IOPS  mean %8.1f us  p99 %8.1f us  max %8.1f us%s\n",
		       jobs[i].name, res[i].iops, res[i].mean_us, res[i].p99_us, res[i].max_us,
		       j->errors ? "  ERRORS" : "");
		if (j->errors) {
			fprintf(stderr, "quill-engine-bench: %s: %" PRIu64 " errors (first: %s)\n",
				jobs[i].name, j->errors, err_str(-j->first_err));
			rc = -EIO;
		}
		job_fini(j, jobs[i].qd);
		if (jobs[i].kind == JOB_WRITE)
			print_gc(eng, jobs[i].name);
	}
out_vol:
	engine_volume_close(vol);
out_close:
	engine_close(eng);
	free(j);
	return rc;
}

static int fio_jobs(const struct bench_opts *o, struct job_result *res)
{
	uint64_t t0 = now_ns();

	printf("fio: prefilling %s (%" PRIu64 " MiB)\n", o->fio_file, o->size >> 20);
	if (fio_prefill(o->fio_file, o->size) < 0)
		return -EIO;
	printf("fio: prefill took %.1f s\n", (double)(now_ns() - t0) / 1e9);
	for (size_t i = 0; i < NJOBS; i++) {
		if (fio_run(o->fio_file, o->size, jobs[i].fio_rw, jobs[i].qd, o->runtime_s,
			    &res[i].fio) < 0)
			continue;
		res[i].have_fio = true;
		printf("  %-18s %9.0f IOPS  mean %8.1f us  p99 %8.1f us (clat)  max %8.1f us\n",
		       jobs[i].name, res[i].fio.iops, res[i].fio.lat_mean_us, res[i].fio.clat_p99_us,
		       res[i].fio.lat_max_us);
	}
	return 0;
}

static void print_table(const struct bench_opts *o, const struct job_result *res)
{
	printf("\nquill-engine-bench: store %" PRIu64 " MiB, volume %u%%, %u s per job\n",
	       o->size >> 20, o->volume_pct, o->runtime_s);
	printf("%-18s %8s %8s %8s %9s", "job", "IOPS", "mean us", "p99 us", "max us");
	if (o->fio)
		printf(" | %8s %8s %8s %9s | %5s %5s %5s", "fio IOPS", "fio mean", "fio p99",
		       "fio max", "IOPS", "p99", "max");
	printf("\n");
	for (size_t i = 0; i < NJOBS; i++) {
		const struct fio_result *f = &res[i].fio;

		printf("%-18s %8.0f %8.1f %8.1f %9.1f", jobs[i].name, res[i].iops, res[i].mean_us,
		       res[i].p99_us, res[i].max_us);
		if (o->fio && res[i].have_fio && f->iops > 0 && f->clat_p99_us > 0 &&
		    f->lat_max_us > 0)
			printf(" | %8.0f %8.1f %8.1f %9.1f | %5.2f %5.2f %5.2f", f->iops,
			       f->lat_mean_us, f->clat_p99_us, f->lat_max_us, res[i].iops / f->iops,
			       res[i].p99_us / f->clat_p99_us, res[i].max_us / f->lat_max_us);
		else if (o->fio)
			printf(" | %8s %8s %8s %9s | %5s %5s %5s", "-", "-", "-", "-", "-", "-", "-");
		printf("\n");
	}
	if (o->fio)
		printf("(engine/fio ratios on the right. fio p99 is its completion latency; the "
		       "engine's is\n submission to callback. Run both on a quiet machine: any "
		       "flush on the disk stalls both)\n");
}

int main(int argc, char **argv)
{
	struct bench_opts o = { 0 };
	struct job_result res[NJOBS] = { 0 };
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (parse_args(&o, argc, argv) < 0) {
		usage();
		return 2;
	}
	rc = mkdir_p(o.dir);
	if (rc < 0) {
		fprintf(stderr, "quill-engine-bench: %s: %s\n", o.dir, err_str(-rc));
		return 1;
	}
	rc = wipe_store(&o);
	if (rc < 0) {
		fprintf(stderr, "quill-engine-bench: cannot reset %s: %s\n", o.file, err_str(-rc));
		return 1;
	}
	rc = engine_jobs(&o, res);
	check_same_fs(&o);
	if (rc == 0 && o.fio)
		rc = fio_jobs(&o, res);
	if (rc == 0)
		print_table(&o, res);
	if (!o.keep) {
		wipe_store(&o);
		unlink(o.fio_file);
	}
	return rc < 0 ? 1 : 0;
}
