/* cluster/credentials.c — the etcd credentials file (cluster.h,
 * cluster_credentials_load): who may read it is checked before it is read. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "common/err.h"

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int parse_credentials(FILE *f, const char *path, char *user, char *password,
			     char *why, size_t whylen)
{
	char line[CLUSTER_CRED_MAX + 64];
	unsigned lineno = 0;

	user[0] = password[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		char *eq, *key = trim(line), *val, *dst;

		lineno++;
		if (!*key || *key == '#')
			continue;
		eq = strchr(key, '=');
		if (!eq)
			goto bad;
		*eq = '\0';
		val = trim(eq + 1);
		key = trim(key);
		dst = strcmp(key, "user") == 0 ? user : strcmp(key, "password") == 0 ? password : NULL;
		if (!dst || strlen(val) >= CLUSTER_CRED_MAX)
			goto bad;
		strcpy(dst, val);
	}
	if (user[0] && password[0])
		return 0;
	snprintf(why, whylen, "credentials file %s: needs a 'user = NAME' and a "
		 "'password = SECRET' line", path);
	return -EINVAL;
bad:
	snprintf(why, whylen, "credentials file %s:%u: expected 'user = NAME' or "
		 "'password = SECRET' (under %d bytes)", path, lineno, CLUSTER_CRED_MAX);
	return -EINVAL;
}

int cluster_credentials_load(const char *path, char user[CLUSTER_CRED_MAX],
			     char password[CLUSTER_CRED_MAX], char *why, size_t whylen)
{
	struct stat st;
	FILE *f;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		r = -errno;
		snprintf(why, whylen, "cannot read credentials file %s: %s", path, err_str(-r));
		return r == -ELOOP ? -EACCES : r;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		snprintf(why, whylen, "credentials file %s is not a regular file", path);
		return -EACCES;
	}
	if (st.st_mode & 077) {
		close(fd);
		snprintf(why, whylen, "credentials file %s is mode %04o: another user could read "
			 "it and rewrite the cluster map; make it readable by its owner only "
			 "(chmod 600 %s)", path, (unsigned)(st.st_mode & 07777), path);
		return -EACCES;
	}
	if (st.st_uid != geteuid()) {
		close(fd);
		snprintf(why, whylen, "credentials file %s belongs to uid %u, not to this user "
			 "(uid %u)", path, (unsigned)st.st_uid, (unsigned)geteuid());
		return -EACCES;
	}
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	r = parse_credentials(f, path, user, password, why, whylen);
	fclose(f);
	return r;
}
