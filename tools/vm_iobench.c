/* tools/vm_iobench.c — 4 KiB random reads, then random writes, at queue depth 32
 * with Linux AIO and O_DIRECT on a block device, for the guests of
 * scripts/bench_vhost.sh (fio is not in the initramfs). Built static by that
 * script, not by CMake. Raw syscalls: no libaio in the guest.
 *
 *   vm_iobench DEVICE SECONDS [RANGE_MIB]
 *
 * Prints one line per pattern: "QUILL-BENCH <pattern> iops <n> mib_s <x>".
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"

#define BS 4096u
#define QD 32u

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void prep(struct iocb *cb, int fd, void *buf, uint64_t blocks, unsigned op)
{
	memset(cb, 0, sizeof(*cb));
	cb->aio_fildes = (uint32_t)fd;
	cb->aio_lio_opcode = (uint16_t)op;
	cb->aio_buf = (uint64_t)(uintptr_t)buf;
	cb->aio_nbytes = BS;
	cb->aio_offset = (int64_t)((next_rand() % blocks) * BS);
	cb->aio_data = (uint64_t)(uintptr_t)cb;
}

/* Keeps QD requests in flight for secs; returns completed I/Os or -1. */
static long run(int fd, uint8_t *bufs, uint64_t blocks, unsigned op, double secs)
{
	aio_context_t ctx = 0;
	struct iocb cbs[QD], *list[QD];
	struct io_event ev[QD];
	double end = now_s() + secs;
	long done = 0;

	if (syscall(SYS_io_setup, QD, &ctx) < 0)
		return -1;
	for (unsigned i = 0; i < QD; i++) {
		prep(&cbs[i], fd, bufs + (size_t)i * BS, blocks, op);
		list[i] = &cbs[i];
	}
	if (syscall(SYS_io_submit, ctx, QD, list) != QD)
		return -1;
	while (now_s() < end) {
		long n = syscall(SYS_io_getevents, ctx, 1, QD, ev, NULL);

		if (n < 0)
			return -1;
		for (long i = 0; i < n; i++) {
			struct iocb *cb = (struct iocb *)(uintptr_t)ev[i].data;

			if (ev[i].res != BS)
				return -1;
			prep(cb, fd, (void *)(uintptr_t)cb->aio_buf, blocks, op);
			list[i] = cb;
		}
		if (syscall(SYS_io_submit, ctx, n, list) != n)
			return -1;
		done += n;
	}
	syscall(SYS_io_getevents, ctx, QD, QD, ev, NULL); /* drain */
	syscall(SYS_io_destroy, ctx);
	return done;
}

int main(int argc, char **argv)
{
	static const struct { const char *name; unsigned op; } pats[] = {
		{ "randread-4k-qd32", IOCB_CMD_PREAD }, { "randwrite-4k-qd32", IOCB_CMD_PWRITE },
	};
	uint64_t range = (argc > 3 ? strtoull(argv[3], NULL, 10) : 256) << 20;
	double secs = argc > 2 ? atof(argv[2]) : 10;
	uint8_t *bufs;
	int fd;

	if (argc < 3) {
		fprintf(stderr, "usage: vm_iobench DEVICE SECONDS [RANGE_MIB]\n");
		return 2;
	}
	fd = open(argv[1], O_RDWR | O_DIRECT);
	if (fd < 0 || posix_memalign((void **)&bufs, BS, (size_t)QD * BS) != 0) {
		fprintf(stderr, "vm_iobench: %s: %s\n", argv[1], err_str(errno));
		return 1;
	}
	memset(bufs, 0xa5, (size_t)QD * BS);
	for (unsigned p = 0; p < 2; p++) {
		double t0 = now_s();
		long n = run(fd, bufs, range / BS, pats[p].op, secs);
		double t = now_s() - t0;

		if (n < 0) {
			fprintf(stderr, "vm_iobench: %s failed: %s\n", pats[p].name, err_str(errno));
			return 1;
		}
		printf("QUILL-BENCH %s iops %.0f mib_s %.2f\n", pats[p].name, (double)n / t,
		       (double)n * BS / t / (1 << 20));
	}
	fsync(fd);
	close(fd);
	return 0;
}
