/* tests/testutil/testutil.c — see testutil.h. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	remove(path); /* go on past what cannot be removed: remove what can */
	return 0;
}

void testutil_rm_tree(const char *path)
{
	nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int testutil_scratch_dir(const char *default_base, const char *prefix, char *out, size_t len)
{
	const char *base = getenv("QUILL_TEST_DIR");
	char probe[PATH_MAX + 16];
	int fd;

	snprintf(out, len, "%s/%s-XXXXXX", base && *base ? base : default_base, prefix);
	if (!mkdtemp(out))
		return -errno;
	snprintf(probe, sizeof(probe), "%s/probe", out);
	fd = open(probe, O_RDWR | O_CREAT | O_DIRECT, 0600);
	if (fd < 0)
		return -EOPNOTSUPP;
	close(fd);
	unlink(probe);
	return 0;
}

unsigned testutil_seed(void)
{
	const char *env = getenv("QUILL_TEST_SEED");
	unsigned seed = env ? (unsigned)strtoul(env, NULL, 0)
			    : (unsigned)time(NULL) ^ (unsigned)getpid();

	fprintf(stderr, "test seed %u (rerun with QUILL_TEST_SEED=%u)\n", seed, seed);
	return seed;
}
