/* tools/bench_fio.c — see bench_fio.h.
 *
 * fio --output-format=terse --terse-version=3 prints one ';'-separated line per job.
 * Columns (1-based) used here, from fio's HOWTO "Terse output":
 *   1 terse version (3)   5 error
 *   read:  8 IOPS, 18..37 clat percentiles "P%=usec", 40 lat mean (usec)
 *   write: 49 IOPS, 59..78 clat percentiles, 81 lat mean (usec)
 */
#include "bench_fio.h"
#include "common/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define TERSE_MAX_FIELDS 160
#define COL_ERROR 5
#define COL_READ_IOPS 8
#define COL_READ_CLAT_PCT 18
#define COL_READ_LAT_MEAN 40
#define COL_WRITE_IOPS 49
#define COL_WRITE_CLAT_PCT 59
#define COL_WRITE_LAT_MEAN 81
#define NPCT 20

/* Runs argv, returns its stdout (malloc'd, NUL-terminated) or NULL. */
static char *run_capture(char *const argv[])
{
	size_t len = 0, cap = 4096;
	char *out = malloc(cap);
	int p[2], status;
	pid_t pid;

	if (!out || pipe(p) < 0) {
		free(out);
		return NULL;
	}
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		free(out);
		return NULL;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM); /* fio stops if the benchmark dies */
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execvp(argv[0], argv);
		fprintf(stderr, "quill-engine-bench: cannot run %s: %s\n", argv[0], err_str(errno));
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		ssize_t n;

		if (len + 1 >= cap) {
			char *bigger = realloc(out, cap * 2);

			if (!bigger)
				break;
			out = bigger;
			cap *= 2;
		}
		n = read(p[0], out + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	out[len] = 0;
	close(p[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "quill-engine-bench: %s failed (status %d)\n", argv[0], status);
		free(out);
		return NULL;
	}
	return out;
}

int fio_parse_terse(const char *line, bool write, struct fio_result *out)
{
	char *copy = strdup(line), *save = NULL, *tok;
	const char *col[TERSE_MAX_FIELDS + 1] = { 0 };
	unsigned n = 0;
	int pct0 = write ? COL_WRITE_CLAT_PCT : COL_READ_CLAT_PCT;
	int rc = -1;

	if (!copy)
		return -1;
	for (tok = strtok_r(copy, ";\n", &save); tok && n < TERSE_MAX_FIELDS;
	     tok = strtok_r(NULL, ";\n", &save))
		col[++n] = tok;
	if (n < COL_WRITE_LAT_MEAN || strcmp(col[1], "3") != 0 || atoi(col[COL_ERROR]) != 0)
		goto out;
	out->iops = atof(col[write ? COL_WRITE_IOPS : COL_READ_IOPS]);
	out->lat_mean_us = atof(col[write ? COL_WRITE_LAT_MEAN : COL_READ_LAT_MEAN]);
	/* lat min, max, mean, stddev */
	out->lat_max_us = atof(col[(write ? COL_WRITE_LAT_MEAN : COL_READ_LAT_MEAN) - 1]);
	out->clat_p99_us = 0;
	for (int i = pct0; i < pct0 + NPCT; i++) {
		const char *eq = strchr(col[i], '=');

		if (eq && atof(col[i]) == 99.0)
			out->clat_p99_us = atof(eq + 1);
	}
	rc = 0;
out:
	free(copy);
	return rc;
}

int fio_prefill(const char *file, uint64_t size)
{
	char fname[4200], sizearg[48];
	char *out;

	snprintf(fname, sizeof(fname), "--filename=%s", file);
	snprintf(sizearg, sizeof(sizearg), "--size=%llu", (unsigned long long)size);
	char *const argv[] = { "fio", "--name=prefill", fname, sizearg, "--ioengine=io_uring",
			       "--direct=1", "--bs=1M", "--rw=write", "--iodepth=16",
			       "--output-format=terse", "--terse-version=3", NULL };

	out = run_capture(argv);
	if (!out)
		return -1;
	free(out);
	return 0;
}

int fio_run(const char *file, uint64_t size, const char *rw, unsigned qd, unsigned runtime_s,
	    struct fio_result *res)
{
	char fname[4200], sizearg[48], rwarg[32], qdarg[32], rtarg[32];
	char *out;
	int rc;

	snprintf(fname, sizeof(fname), "--filename=%s", file);
	snprintf(sizearg, sizeof(sizearg), "--size=%llu", (unsigned long long)size);
	snprintf(rwarg, sizeof(rwarg), "--rw=%s", rw);
	snprintf(qdarg, sizeof(qdarg), "--iodepth=%u", qd);
	snprintf(rtarg, sizeof(rtarg), "--runtime=%u", runtime_s);
	char *const argv[] = { "fio", "--name=bench", fname, sizearg, "--ioengine=io_uring",
			       "--direct=1", "--bs=4k", rwarg, qdarg, rtarg, "--time_based",
			       "--norandommap", "--randrepeat=0", "--output-format=terse",
			       "--terse-version=3", NULL };

	out = run_capture(argv);
	if (!out)
		return -1;
	rc = -1;
	for (char *line = out; line && *line;) {
		char *nl = strchr(line, '\n');

		if (nl)
			*nl = 0;
		if (!strncmp(line, "3;", 2)) {
			rc = fio_parse_terse(line, !strcmp(rw, "randwrite") || !strcmp(rw, "write"),
					     res);
			break;
		}
		line = nl ? nl + 1 : NULL;
	}
	if (rc < 0)
		fprintf(stderr, "quill-engine-bench: no usable terse line from fio:\n%s", out);
	free(out);
	return rc;
}
