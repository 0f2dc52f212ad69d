/* tests/unit/cluster/fake_etcd.c — a small etcd for unit tests (fake_etcd.h). */
#include "fake_etcd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster/etcd_json.h"

#define KEYS 16
#define VAL_MAX 4096
#define BUF_MAX 65536

struct fkey {
	char key[256];
	char value[VAL_MAX];
	int64_t create, mod; /* create 0: the slot is free */
};

struct fake_etcd {
	int lfd, cfd;
	bool stopping;
	pthread_t thread;
	pthread_mutex_t mu;
	int64_t rev;
	struct fkey keys[KEYS];
	unsigned nrange, ntxn;
	char buf[BUF_MAX + 1]; /* the serving thread's: what a connection sent */
};

static struct fkey *find(struct fake_etcd *f, const char *key)
{
	for (unsigned i = 0; i < KEYS; i++)
		if (f->keys[i].create && strcmp(f->keys[i].key, key) == 0)
			return &f->keys[i];
	return NULL;
}

/* Under mu; rev: the write's revision. */
static void put_locked(struct fake_etcd *f, const char *key, const char *value, int64_t rev)
{
	struct fkey *k = find(f, key);

	for (unsigned i = 0; !k && i < KEYS; i++)
		if (!f->keys[i].create) {
			k = &f->keys[i];
			snprintf(k->key, sizeof(k->key), "%s", key);
			k->create = rev;
		}
	if (!k)
		abort(); /* more keys than a test needs */
	snprintf(k->value, sizeof(k->value), "%s", value);
	k->mod = rev;
}

/* The decoded bytes field name of o into out ("" if absent). */
static void field(struct json_object *o, const char *name, char *out, size_t len)
{
	struct json_object *v;
	size_t n = 0;

	if (!json_object_object_get_ex(o, name, &v) ||
	    etcd_b64_decode(json_object_get_string(v), out, len - 1, &n) < 0)
		n = 0;
	out[n] = '\0';
}

static bool compare_holds(struct fake_etcd *f, struct json_object *c)
{
	char key[256], target[16], want[VAL_MAX];
	struct fkey *k;
	struct json_object *t;
	int64_t n = 0;

	field(c, "key", key, sizeof(key));
	k = find(f, key);
	snprintf(target, sizeof(target), "%s",
		 json_object_object_get_ex(c, "target", &t) ? json_object_get_string(t) : "");
	if (strcmp(target, "VALUE") == 0) {
		field(c, "value", want, sizeof(want));
		return k && strcmp(k->value, want) == 0;
	}
	if (strcmp(target, "MOD") == 0) {
		etcd_json_int64(c, "mod_revision", &n);
		return (k ? k->mod : 0) == n;
	}
	if (strcmp(target, "CREATE") == 0) {
		etcd_json_int64(c, "create_revision", &n);
		return (k ? k->create : 0) == n;
	}
	abort(); /* a compare the fake does not know */
}

static void add_header(struct fake_etcd *f, struct json_object *resp)
{
	struct json_object *h = json_object_new_object();

	etcd_json_add_int64(h, "revision", f->rev);
	json_object_object_add(resp, "header", h);
}

static struct json_object *txn(struct fake_etcd *f, struct json_object *req)
{
	struct json_object *resp = json_object_new_object(), *cmp, *ops, *put;
	bool held = true;

	f->ntxn++;
	if (json_object_object_get_ex(req, "compare", &cmp))
		for (size_t i = 0; held && i < json_object_array_length(cmp); i++)
			held = compare_holds(f, json_object_array_get_idx(cmp, i));
	if (json_object_object_get_ex(req, held ? "success" : "failure", &ops) &&
	    json_object_array_length(ops)) {
		f->rev++; /* one revision for the txn's writes */
		for (size_t i = 0; i < json_object_array_length(ops); i++) {
			char key[256], value[VAL_MAX];

			if (!json_object_object_get_ex(json_object_array_get_idx(ops, i),
						       "request_put", &put))
				abort(); /* only puts */
			field(put, "key", key, sizeof(key));
			field(put, "value", value, sizeof(value));
			put_locked(f, key, value, f->rev);
		}
	}
	add_header(f, resp);
	json_object_object_add(resp, "succeeded", json_object_new_boolean(held));
	return resp;
}

static int fkey_cmp(const void *a, const void *b)
{
	return strcmp((*(const struct fkey *const *)a)->key, (*(const struct fkey *const *)b)->key);
}

/* One key, or with range_end every key in [key, range_end), in key order. */
static struct json_object *range(struct fake_etcd *f, struct json_object *req)
{
	struct json_object *resp = json_object_new_object(), *kvs, *kv;
	char key[256], end[256];
	struct fkey *hit[KEYS];
	unsigned n = 0;

	f->nrange++;
	field(req, "key", key, sizeof(key));
	field(req, "range_end", end, sizeof(end));
	for (unsigned i = 0; i < KEYS; i++) {
		struct fkey *k = &f->keys[i];

		if (k->create && (end[0] ? strcmp(k->key, key) >= 0 && strcmp(k->key, end) < 0
					 : strcmp(k->key, key) == 0))
			hit[n++] = k;
	}
	qsort(hit, n, sizeof(hit[0]), fkey_cmp);
	add_header(f, resp);
	if (!n)
		return resp;
	kvs = json_object_new_array();
	for (unsigned i = 0; i < n; i++) {
		kv = json_object_new_object();
		etcd_json_add_bytes(kv, "key", hit[i]->key, strlen(hit[i]->key));
		etcd_json_add_bytes(kv, "value", hit[i]->value, strlen(hit[i]->value));
		etcd_json_add_int64(kv, "create_revision", hit[i]->create);
		etcd_json_add_int64(kv, "mod_revision", hit[i]->mod);
		etcd_json_add_int64(kv, "version", 1);
		json_object_array_add(kvs, kv);
	}
	json_object_object_add(resp, "kvs", kvs);
	etcd_json_add_int64(resp, "count", (int64_t)n);
	return resp;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One request whole in buf[0..len): its length, 0 if more is needed. */
static size_t serve_one(struct fake_etcd *f, int fd, char *buf, size_t len, bool *continued)
{
	char *end = memmem(buf, len, "\r\n\r\n", 4), path[64] = "", head[128];
	const char *cl, *out;
	struct json_object *req, *resp;
	size_t hlen, blen;

	if (!end)
		return 0;
	hlen = (size_t)(end - buf) + 4;
	cl = strcasestr(buf, "Content-Length:");
	blen = cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0;
	if (len < hlen + blen) {
		if (!*continued && strcasestr(buf, "Expect: 100-continue")) {
			send_all(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
			*continued = true;
		}
		return 0;
	}
	sscanf(buf, "POST %63s", path);
	req = json_tokener_parse(buf + hlen); /* (buf is NUL-terminated past it) */
	pthread_mutex_lock(&f->mu);
	resp = strcmp(path, "/v3/kv/txn") == 0 ? txn(f, req)
	       : strcmp(path, "/v3/kv/range") == 0 ? range(f, req)
						    : json_object_new_object();
	pthread_mutex_unlock(&f->mu);
	out = json_object_to_json_string_ext(resp, JSON_C_TO_STRING_PLAIN);
	snprintf(head, sizeof(head),
		 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
		 strlen(out));
	send_all(fd, head, strlen(head));
	send_all(fd, out, strlen(out));
	json_object_put(req);
	json_object_put(resp);
	*continued = false;
	return hlen + blen;
}

static void *serve(void *arg)
{
	struct fake_etcd *f = arg;
	char *buf = f->buf;

	for (;;) {
		int fd = accept(f->lfd, NULL, NULL);
		size_t have = 0, used;
		bool continued = false;
		ssize_t n;

		if (fd < 0)
			return NULL; /* stopped */
		pthread_mutex_lock(&f->mu);
		f->cfd = fd;
		pthread_mutex_unlock(&f->mu);
		while ((n = recv(fd, buf + have, BUF_MAX - have, 0)) > 0) {
			have += (size_t)n;
			buf[have] = '\0';
			while ((used = serve_one(f, fd, buf, have, &continued)) > 0) {
				memmove(buf, buf + used, have - used);
				have -= used;
				buf[have] = '\0';
			}
		}
		pthread_mutex_lock(&f->mu);
		f->cfd = -1;
		pthread_mutex_unlock(&f->mu);
		close(fd);
	}
}

int fake_etcd_start(struct fake_etcd **out, char *endpoint, size_t len)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	struct fake_etcd *f = calloc(1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	f->rev = 1;
	f->cfd = -1;
	pthread_mutex_init(&f->mu, NULL);
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(f->lfd, 4) < 0 || getsockname(f->lfd, (struct sockaddr *)&a, &alen) < 0 ||
	    pthread_create(&f->thread, NULL, serve, f) != 0) {
		int r = -errno;

		if (f->lfd >= 0)
			close(f->lfd);
		free(f);
		return r ? r : -EIO;
	}
	snprintf(endpoint, len, "http://127.0.0.1:%u", ntohs(a.sin_port));
	*out = f;
	return 0;
}

void fake_etcd_stop(struct fake_etcd *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->mu);
	if (f->cfd >= 0)
		shutdown(f->cfd, SHUT_RDWR);
	pthread_mutex_unlock(&f->mu);
	shutdown(f->lfd, SHUT_RDWR); /* accept() returns */
	pthread_join(f->thread, NULL);
	close(f->lfd);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

void fake_etcd_put(struct fake_etcd *f, const char *key, const char *value)
{
	pthread_mutex_lock(&f->mu);
	put_locked(f, key, value, ++f->rev);
	pthread_mutex_unlock(&f->mu);
}

const char *fake_etcd_value(struct fake_etcd *f, const char *key, int64_t *mod)
{
	static char copy[VAL_MAX];
	struct fkey *k;

	pthread_mutex_lock(&f->mu);
	k = find(f, key);
	snprintf(copy, sizeof(copy), "%s", k ? k->value : "");
	if (mod)
		*mod = k ? k->mod : 0;
	pthread_mutex_unlock(&f->mu);
	return copy;
}

unsigned fake_etcd_calls(struct fake_etcd *f, const char *path)
{
	unsigned n;

	pthread_mutex_lock(&f->mu);
	n = strcmp(path, "/v3/kv/txn") == 0 ? f->ntxn : strcmp(path, "/v3/kv/range") == 0 ? f->nrange : 0;
	pthread_mutex_unlock(&f->mu);
	return n;
}
