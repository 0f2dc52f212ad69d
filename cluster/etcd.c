/* cluster/etcd.c — etcd v3 over its JSON gateway (etcd.h).
 *
 * Every call runs one curl easy transfer inside a private multi handle: the thread
 * sleeps in curl_multi_poll(), which etcd_interrupt() wakes from any thread
 * (curl_multi_wakeup), so a stopping node never waits for a watch or a slow etcd.
 */
#include "cluster/etcd.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR_MAX 256
#define URL_MAX 512
#define TOKEN_MAX 512
#define BODY_MAX (64u << 20) /* a range of the whole map stays far below */

struct etcd {
	char *endpoint[ETCD_MAX_ENDPOINTS];
	unsigned nendpoints, cur;
	char *user, *password;
	char token[TOKEN_MAX];
	bool auth_disabled;  /* etcd said auth is not enabled: go on without a token */
	unsigned timeout_ms;
	CURLM *multi;
	CURL *easy;
	atomic_bool stopping;
	char err[ERR_MAX];
};

/* What one transfer collects. */
struct xfer {
	struct etcd *e;
	char *body;
	size_t len, cap;
	bool too_big;
	/* a stream (watch): each complete object goes to on_object */
	struct json_tokener *tok;
	int (*on_object)(void *arg, struct json_object *obj);
	void *arg;
	int stream_res; /* what ended the stream from inside */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

__attribute__((format(printf, 3, 4)))
static int fail(struct etcd *e, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->err, sizeof(e->err), fmt, ap);
	va_end(ap);
	return err;
}

static int split_endpoints(struct etcd *e, const char *list)
{
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, ",");

		if (n) {
			if (e->nendpoints == ETCD_MAX_ENDPOINTS || n >= URL_MAX - 32)
				return -EINVAL;
			e->endpoint[e->nendpoints] = strndup(p, n);
			if (!e->endpoint[e->nendpoints])
				return -ENOMEM;
			/* "host:port" alone means http:// */
			if (!strstr(e->endpoint[e->nendpoints], "://")) {
				char *full;

				if (asprintf(&full, "http://%s", e->endpoint[e->nendpoints]) < 0)
					return -ENOMEM;
				free(e->endpoint[e->nendpoints]);
				e->endpoint[e->nendpoints] = full;
			}
			e->nendpoints++;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return e->nendpoints ? 0 : -EINVAL;
}

int etcd_create(const struct etcd_opts *opts, struct etcd **out)
{
	struct etcd *e = calloc(1, sizeof(*e));
	int r;

	if (!e)
		return -ENOMEM;
	pthread_once(&curl_once, curl_init_once);
	etcd_set_timeout(e, opts->timeout_ms);
	r = split_endpoints(e, opts->endpoints ? opts->endpoints : "");
	if (r == 0 && opts->user) {
		e->user = strdup(opts->user);
		e->password = strdup(opts->password ? opts->password : "");
		if (!e->user || !e->password)
			r = -ENOMEM;
	}
	if (r == 0) {
		e->multi = curl_multi_init();
		e->easy = curl_easy_init();
		if (!e->multi || !e->easy)
			r = -ENOMEM;
	}
	if (r < 0) {
		etcd_destroy(e);
		return r;
	}
	*out = e;
	return 0;
}

void etcd_destroy(struct etcd *e)
{
	if (!e)
		return;
	if (e->easy)
		curl_easy_cleanup(e->easy);
	if (e->multi)
		curl_multi_cleanup(e->multi);
	for (unsigned i = 0; i < e->nendpoints; i++)
		free(e->endpoint[i]);
	free(e->user);
	if (e->password) {
		explicit_bzero(e->password, strlen(e->password));
		free(e->password);
	}
	free(e);
}

void etcd_set_timeout(struct etcd *e, unsigned timeout_ms)
{
	e->timeout_ms = timeout_ms ? timeout_ms : 5000;
}

void etcd_interrupt(struct etcd *e)
{
	atomic_store(&e->stopping, true);
	curl_multi_wakeup(e->multi);
}

const char *etcd_last_error(const struct etcd *e)
{
	return e->err;
}

const char *etcd_endpoint(const struct etcd *e)
{
	return e->endpoint[e->cur];
}

/* ---- one transfer ---- */

static int feed_stream(struct xfer *x, const char *data, size_t len)
{
	while (len) {
		struct json_object *obj = json_tokener_parse_ex(x->tok, data, (int)len);
		enum json_tokener_error jerr = json_tokener_get_error(x->tok);
		size_t used = json_tokener_get_parse_end(x->tok);
		int r;

		if (!obj && jerr == json_tokener_continue)
			return 0;
		if (!obj) {
			x->stream_res = fail(x->e, -EPROTO, "etcd sent a stream that is not JSON: %s",
					     json_tokener_error_desc(jerr));
			return -1;
		}
		json_tokener_reset(x->tok);
		r = x->on_object(x->arg, obj);
		json_object_put(obj);
		if (r != 0) {
			x->stream_res = r;
			return -1;
		}
		if (used > len)
			used = len;
		data += used;
		len -= used;
		/* whitespace between objects */
		while (len && (*data == '\n' || *data == '\r' || *data == ' ')) {
			data++;
			len--;
		}
	}
	return 0;
}

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * nmemb;

	if (x->on_object)
		return feed_stream(x, data, len) < 0 ? 0 : len;
	if (x->len + len + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 4096;
		char *b;

		while (cap < x->len + len + 1)
			cap *= 2;
		if (cap > BODY_MAX || !(b = realloc(x->body, cap))) {
			x->too_big = true;
			return 0;
		}
		x->body = b;
		x->cap = cap;
	}
	memcpy(x->body + x->len, data, len);
	x->len += len;
	x->body[x->len] = '\0';
	return len;
}

/* Runs the easy handle to its end: the CURLcode, or -ECANCELED. */
static int run(struct etcd *e)
{
	int running = 1, res = -EIO;
	CURLMsg *m;
	int left;

	curl_multi_add_handle(e->multi, e->easy);
	while (running) {
		if (atomic_load(&e->stopping)) {
			res = -ECANCELED;
			break;
		}
		if (curl_multi_perform(e->multi, &running) != CURLM_OK)
			break;
		if (running)
			curl_multi_poll(e->multi, NULL, 0, 1000, NULL);
	}
	while ((m = curl_multi_info_read(e->multi, &left)))
		if (m->msg == CURLMSG_DONE && res != -ECANCELED)
			res = (int)m->data.result;
	curl_multi_remove_handle(e->multi, e->easy);
	return res;
}

static bool network_error(int code)
{
	return code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST ||
	       code == CURLE_OPERATION_TIMEDOUT || code == CURLE_RECV_ERROR ||
	       code == CURLE_SEND_ERROR || code == CURLE_GOT_NOTHING ||
	       code == CURLE_PARTIAL_FILE;
}

/* One POST to the current endpoint. stream: no call timeout. Returns the CURLcode
 * (>= 0), or -errno; *http the status. */
static int post(struct etcd *e, const char *path, const char *body, struct xfer *x,
		bool stream, long *http)
{
	char url[URL_MAX], auth[TOKEN_MAX + 32];
	struct curl_slist *hdr = NULL, *h2;
	int code;

	snprintf(url, sizeof(url), "%s%s", e->endpoint[e->cur], path);
	h2 = curl_slist_append(hdr, "Content-Type: application/json");
	if (!h2)
		return -ENOMEM;
	hdr = h2;
	if (e->token[0]) {
		snprintf(auth, sizeof(auth), "Authorization: %s", e->token);
		h2 = curl_slist_append(hdr, auth);
		if (!h2) {
			curl_slist_free_all(hdr);
			return -ENOMEM;
		}
		hdr = h2;
	}
	curl_easy_reset(e->easy);
	curl_easy_setopt(e->easy, CURLOPT_URL, url);
	curl_easy_setopt(e->easy, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(e->easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e->easy, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)e->timeout_ms);
	curl_easy_setopt(e->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e->easy, CURLOPT_TCP_KEEPIDLE, 5L);
	curl_easy_setopt(e->easy, CURLOPT_TCP_KEEPINTVL, 2L);
	if (!stream)
		curl_easy_setopt(e->easy, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
	code = run(e);
	*http = 0;
	curl_easy_getinfo(e->easy, CURLINFO_RESPONSE_CODE, http);
	curl_slist_free_all(hdr);
	return code;
}

static int errno_of_code(struct etcd *e, int code, const char *msg)
{
	fail(e, 0, "etcd: %s", msg);
	switch (code) {
	case ETCD_CODE_UNAUTHENTICATED:
		return -EACCES;
	case ETCD_CODE_PERMISSION_DENIED:
		return -EPERM;
	case ETCD_CODE_NOT_FOUND:
		return -ENOENT;
	case ETCD_CODE_OUT_OF_RANGE:
		return strstr(msg, "compacted") ? -ESTALE : -EREMOTEIO;
	case ETCD_CODE_INVALID_ARGUMENT:
		if (strstr(msg, "authentication failed") || strstr(msg, "user name is empty") ||
		    strstr(msg, "invalid auth token"))
			return -EACCES;
		return -EREMOTEIO;
	default:
		return -EREMOTEIO;
	}
}

/* A POST that goes round the endpoints while they cannot be reached. */
static int post_any(struct etcd *e, const char *path, const char *body, struct xfer *x,
		    bool stream, long *http)
{
	int code = -1;

	for (unsigned tries = 0; tries < e->nendpoints; tries++) {
		x->len = 0;
		if (x->body)
			x->body[0] = '\0';
		code = post(e, path, body, x, stream, http);
		if (code < 0)
			return code == -ECANCELED ? fail(e, code, "etcd: interrupted")
						  : fail(e, code, "etcd: %s", strerror(-code));
		if (!network_error(code))
			return code;
		fail(e, 0, "etcd at %s: %s", e->endpoint[e->cur], curl_easy_strerror(code));
		if (!stream || x->len == 0)
			e->cur = (e->cur + 1) % e->nendpoints;
		if (stream)
			break; /* a broken watch is the caller's to restart */
	}
	return code;
}

/* The answer of a finished non-stream transfer. */
static int decode(struct etcd *e, const char *path, int code, long http, struct xfer *x,
		  struct json_object **resp)
{
	int ecode;
	char msg[ERR_MAX];

	if (network_error(code))
		return code == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -ECONNREFUSED;
	if (x->too_big)
		return fail(e, -EPROTO, "etcd: answer to %s is too large", path);
	if (code != CURLE_OK)
		return fail(e, -EIO, "etcd at %s: %s", e->endpoint[e->cur],
			    curl_easy_strerror(code));
	if (http == 404)
		return fail(e, -ENOSYS, "etcd at %s has no %s (not an etcd 3.4 v3 gateway?)",
			    e->endpoint[e->cur], path);
	*resp = x->body ? json_tokener_parse(x->body) : NULL;
	if (!*resp)
		return fail(e, -EPROTO, "etcd at %s answered %s with HTTP %ld and no JSON",
			    e->endpoint[e->cur], path, http);
	if (etcd_json_error(*resp, &ecode, msg, sizeof(msg))) {
		json_object_put(*resp);
		*resp = NULL;
		return errno_of_code(e, ecode, msg);
	}
	e->err[0] = '\0';
	return 0;
}

static int call_raw(struct etcd *e, const char *path, const char *body,
		    struct json_object **resp)
{
	struct xfer x = { .e = e };
	long http;
	int code = post_any(e, path, body, &x, false, &http);
	int r = code < 0 ? code : decode(e, path, code, http, &x, resp);

	free(x.body);
	return r;
}

static int authenticate(struct etcd *e)
{
	struct json_object *req = json_object_new_object(), *resp = NULL, *tok;
	int r = -ENOMEM;

	e->token[0] = '\0';
	if (!req || json_object_object_add(req, "name", json_object_new_string(e->user)) < 0 ||
	    json_object_object_add(req, "password", json_object_new_string(e->password)) < 0)
		goto out_put_req;
	r = call_raw(e, "/v3/auth/authenticate", json_object_to_json_string(req), &resp);
	if (r == -EREMOTEIO && strstr(e->err, "authentication is not enabled")) {
		e->auth_disabled = true; /* a test etcd without auth: no token to send */
		r = 0;
		goto out_put_req;
	}
	if (r == -EACCES)
		fail(e, r, "etcd refused user '%s': wrong user name or password", e->user);
	if (r < 0)
		goto out_put_req;
	if (!json_object_object_get_ex(resp, "token", &tok) ||
	    strlen(json_object_get_string(tok)) >= sizeof(e->token))
		r = fail(e, -EPROTO, "etcd: authenticate answered no usable token");
	else
		snprintf(e->token, sizeof(e->token), "%s", json_object_get_string(tok));
	json_object_put(resp);
out_put_req:
	json_object_put(req);
	return r;
}

/* Ensures a token when there is a user; true if one was just made. */
static int ensure_token(struct etcd *e)
{
	if (!e->user || e->auth_disabled || e->token[0])
		return 0;
	return authenticate(e);
}

int etcd_call(struct etcd *e, const char *path, struct json_object *req,
	      struct json_object **resp)
{
	const char *body = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	int r = ensure_token(e);

	if (r < 0)
		return r;
	*resp = NULL;
	r = call_raw(e, path, body, resp);
	if (r == -EACCES && e->user && e->token[0] && strstr(e->err, "invalid auth token")) {
		/* the token expired: one new one, one more try */
		r = authenticate(e);
		if (r == 0)
			r = call_raw(e, path, body, resp);
	}
	if (r == -EACCES && !e->user)
		fail(e, r, "etcd requires authentication (%s): give quilld --etcd-credentials",
		     e->err);
	return r;
}

/* ---- the calls ---- */

int etcd_range(struct etcd *e, const char *key, const char *range_end, int64_t *revision,
	       struct etcd_kv **kvs, size_t *n)
{
	struct json_object *req = etcd_json_key(key, range_end), *resp;
	int r;

	if (!req)
		return -ENOMEM;
	r = etcd_call(e, "/v3/kv/range", req, &resp);
	json_object_put(req);
	if (r < 0)
		return r;
	r = etcd_json_range(resp, revision, kvs, n);
	json_object_put(resp);
	return r < 0 ? fail(e, r, "etcd: a range answer does not decode") : 0;
}

/* A call whose answer only matters as success or failure. */
static int call_simple(struct etcd *e, const char *path, struct json_object *req)
{
	struct json_object *resp;
	int r;

	if (!req)
		return -ENOMEM;
	r = etcd_call(e, path, req, &resp);
	json_object_put(req);
	if (r == 0)
		json_object_put(resp);
	return r;
}

int etcd_put(struct etcd *e, const char *key, const char *value, int64_t lease)
{
	struct json_object *req = etcd_json_key(key, NULL);

	if (req && (etcd_json_add_bytes(req, "value", value, strlen(value)) < 0 ||
		    (lease && etcd_json_add_int64(req, "lease", lease) < 0))) {
		json_object_put(req);
		req = NULL;
	}
	return call_simple(e, "/v3/kv/put", req);
}

int etcd_delete(struct etcd *e, const char *key)
{
	return call_simple(e, "/v3/kv/deleterange", etcd_json_key(key, NULL));
}

static int add_array(struct json_object *req, const char *name, struct json_object *arr)
{
	if (!arr)
		return 0;
	if (json_object_object_add(req, name, arr) < 0) {
		json_object_put(arr);
		return -ENOMEM;
	}
	return 0;
}

int etcd_txn(struct etcd *e, struct json_object *compare, struct json_object *success,
	     struct json_object *failure, bool *succeeded, struct json_object **resp)
{
	struct json_object *req = json_object_new_object();
	int64_t rev;
	int r = req ? 0 : -ENOMEM;

	if (r == 0)
		r = add_array(req, "compare", compare);
	else
		json_object_put(compare);
	if (r == 0)
		r = add_array(req, "success", success);
	else
		json_object_put(success);
	if (r == 0)
		r = add_array(req, "failure", failure);
	else
		json_object_put(failure);
	if (r == 0)
		r = etcd_call(e, "/v3/kv/txn", req, resp);
	json_object_put(req);
	if (r < 0)
		return r;
	r = etcd_json_txn(*resp, succeeded, &rev);
	if (r < 0) {
		json_object_put(*resp);
		*resp = NULL;
		return fail(e, r, "etcd: a txn answer does not decode");
	}
	return 0;
}

/* A lease call whose request is {name: v} and whose answer is {ID, TTL}. */
static int lease_call(struct etcd *e, const char *path, const char *name, int64_t v,
		      int64_t *id, int64_t *ttl)
{
	struct json_object *req = json_object_new_object(), *resp;
	int r;

	if (!req || etcd_json_add_int64(req, name, v) < 0) {
		json_object_put(req);
		return -ENOMEM;
	}
	r = etcd_call(e, path, req, &resp);
	json_object_put(req);
	if (r < 0)
		return r;
	r = etcd_json_lease(resp, id, ttl);
	json_object_put(resp);
	return r < 0 ? fail(e, r, "etcd: the answer to %s does not decode", path) : 0;
}

int etcd_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id, int64_t *granted_ttl)
{
	int r = lease_call(e, "/v3/lease/grant", "TTL", ttl_s, id, granted_ttl);

	if (r == 0 && *granted_ttl <= 0)
		r = fail(e, -EPROTO, "etcd granted a lease without a TTL");
	return r;
}

int etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl)
{
	int64_t got;
	int r = lease_call(e, "/v3/lease/keepalive", "ID", id, &got, ttl);

	if (r == 0 && got != id)
		r = fail(e, -EPROTO, "etcd answered a keepalive for another lease");
	return r;
}

int etcd_lease_revoke(struct etcd *e, int64_t id)
{
	struct json_object *req = json_object_new_object();

	if (req && etcd_json_add_int64(req, "ID", id) < 0) {
		json_object_put(req);
		req = NULL;
	}
	return call_simple(e, "/v3/lease/revoke", req);
}

/* ---- watch ---- */

struct watch_ctx {
	struct etcd *e;
	etcd_watch_fn fn;
	void *arg;
	int64_t compact_revision;
};

static int watch_object(void *arg, struct json_object *obj)
{
	struct watch_ctx *w = arg;
	struct etcd_watch_msg msg;
	char text[ERR_MAX];
	int code, r;

	if (etcd_json_error(obj, &code, text, sizeof(text)))
		return errno_of_code(w->e, code, text);
	r = etcd_json_watch(obj, &msg);
	if (r < 0)
		return fail(w->e, r, "etcd: a watch message does not decode");
	if (msg.compact_revision > 0) {
		w->compact_revision = msg.compact_revision;
		r = fail(w->e, -ESTALE, "etcd: the watch is past compaction (revision %lld)",
			 (long long)msg.compact_revision);
	} else if (msg.canceled) {
		r = fail(w->e, -EREMOTEIO, "etcd canceled the watch: %s", msg.cancel_reason);
	} else if (msg.nevents) {
		r = w->fn(w->arg, &msg);
	}
	etcd_watch_msg_free(&msg);
	return r;
}

static struct json_object *watch_request(const char *key, const char *range_end, int64_t start)
{
	struct json_object *create = etcd_json_key(key, range_end), *req;

	if (create && etcd_json_add_int64(create, "start_revision", start) < 0) {
		json_object_put(create);
		create = NULL;
	}
	req = create ? json_object_new_object() : NULL;
	if (!req || json_object_object_add(req, "create_request", create) < 0) {
		json_object_put(create);
		json_object_put(req);
		return NULL;
	}
	return req;
}

int etcd_watch(struct etcd *e, const char *key, const char *range_end, int64_t start_revision,
	       etcd_watch_fn fn, void *arg, int64_t *compact_revision)
{
	struct watch_ctx w = { .e = e, .fn = fn, .arg = arg };
	struct xfer x = { .e = e, .on_object = watch_object, .arg = &w };
	struct json_object *req = watch_request(key, range_end, start_revision);
	long http;
	int code, r;

	if (!req)
		return -ENOMEM;
	r = ensure_token(e);
	x.tok = r == 0 ? json_tokener_new() : NULL;
	if (r == 0 && !x.tok)
		r = -ENOMEM;
	for (int tries = 0; r == 0 && tries < 2; tries++) {
		code = post_any(e, "/v3/watch", json_object_to_json_string_ext(req,
				JSON_C_TO_STRING_PLAIN), &x, true, &http);
		if (code < 0) {
			r = code;
		} else if (x.stream_res) {
			r = x.stream_res;
		} else if (network_error(code) || code == CURLE_OK) {
			/* the stream ended: etcd went away (or closed it) */
			if (code == CURLE_OK)
				fail(e, 0, "etcd at %s closed the watch", e->endpoint[e->cur]);
			r = -ECONNREFUSED;
		} else if (code == CURLE_WRITE_ERROR) {
			r = fail(e, -EIO, "etcd: watch aborted");
		} else {
			r = fail(e, -EIO, "etcd at %s: %s", e->endpoint[e->cur],
				 curl_easy_strerror(code));
		}
		if (r == -EACCES && e->user && strstr(e->err, "invalid auth token") &&
		    tries == 0) {
			json_tokener_reset(x.tok);
			x.stream_res = 0;
			r = authenticate(e); /* the token expired: once more */
			continue;
		}
		break;
	}
	*compact_revision = w.compact_revision;
	if (x.tok)
		json_tokener_free(x.tok);
	json_object_put(req);
	return r;
}
