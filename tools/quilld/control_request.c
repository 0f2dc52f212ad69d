/* tools/quilld/control_request.c — a request is checked whole before any handler runs.
 *
 * json-c keeps the last of two equal keys ({"cmd":"volume.list","cmd":"volume.rm"}
 * ran volume.rm), has no flag to refuse them, and the parsed object no longer shows
 * that there were two. So the raw text goes through this small strict checker
 * first: RFC 8259 JSON, one object at the top, no two equal keys in any object
 * (compared after unescaping: "c\u006dd" is "cmd"), no NUL (raw or \u0000, which
 * json-c would cut a key at), at most CTL_MAX_DEPTH levels and CTL_MAX_KEYS keys
 * per object. Then the command's key table (control_internal.h) says which keys it
 * takes and of which type, so a handler only ever sees keys it knows.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/quilld/control_internal.h"

#define CTL_MAX_DEPTH 16
#define CTL_MAX_KEYS 64

struct jcheck {
	const char *start, *p, *end;
	char *keys;      /* unescaped keys of the open objects, one after another */
	size_t keys_len;
	char *why;
	size_t whylen;
};

struct jkey {
	size_t off, len; /* in jcheck.keys */
};

__attribute__((format(printf, 2, 3)))
static int jfail(struct jcheck *j, const char *fmt, ...)
{
	char msg[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(j->why, j->whylen, "%s at byte %zu", msg, (size_t)(j->p - j->start));
	return -EINVAL;
}

static void skip_space(struct jcheck *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int hex4(struct jcheck *j, unsigned *out)
{
	unsigned v = 0;

	if (j->end - j->p < 4)
		return jfail(j, "truncated \\u escape");
	for (int i = 0; i < 4; i++) {
		char c = *j->p++;

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return jfail(j, "bad \\u escape");
	}
	*out = v;
	return 0;
}

/* Appends code point cp as UTF-8 to out (if any). */
static void put_utf8(char *out, size_t *n, unsigned cp)
{
	char b[4];
	size_t k;

	if (cp < 0x80) {
		b[0] = (char)cp;
		k = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | cp >> 6);
		b[1] = (char)(0x80 | (cp & 0x3f));
		k = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | cp >> 12);
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		k = 3;
	} else {
		b[0] = (char)(0xf0 | cp >> 18);
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		k = 4;
	}
	if (out)
		memcpy(out + *n, b, k);
	*n += k;
}

/* A \uXXXX escape (the "\u" read), a surrogate pair taken whole. */
static int unicode_escape(struct jcheck *j, char *out, size_t *n)
{
	unsigned cp, lo;
	int r = hex4(j, &cp);

	if (r < 0)
		return r;
	if (cp == 0)
		return jfail(j, "\\u0000 is not allowed");
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return jfail(j, "lone low surrogate");
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
			return jfail(j, "lone high surrogate");
		j->p += 2;
		r = hex4(j, &lo);
		if (r < 0)
			return r;
		if (lo < 0xdc00 || lo > 0xdfff)
			return jfail(j, "bad surrogate pair");
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	}
	put_utf8(out, n, cp);
	return 0;
}

/* A string (at its opening quote); unescaped into out (room for its raw length) if
 * out is not NULL, its length in *n. */
static int jstring(struct jcheck *j, char *out, size_t *n)
{
	static const char plain[] = "\"\\/bfnrt", value[] = "\"\\/\b\f\n\r\t";

	*n = 0;
	j->p++;
	while (j->p < j->end) {
		unsigned char c = (unsigned char)*j->p++;
		const char *e;

		if (c == '"')
			return 0;
		if (c < 0x20)
			return jfail(j, "control character in a string");
		if (c != '\\') {
			if (out)
				out[*n] = (char)c;
			(*n)++;
			continue;
		}
		if (j->p == j->end)
			break;
		c = (unsigned char)*j->p++;
		if (c == 'u') {
			int r = unicode_escape(j, out, n);
			if (r < 0)
				return r;
			continue;
		}
		e = c ? strchr(plain, c) : NULL;
		if (!e)
			return jfail(j, "bad escape \\%c", c);
		if (out)
			out[*n] = value[e - plain];
		(*n)++;
	}
	return jfail(j, "unterminated string");
}

static bool is_digit(const struct jcheck *j)
{
	return j->p < j->end && *j->p >= '0' && *j->p <= '9';
}

static int jnumber(struct jcheck *j)
{
	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (!is_digit(j))
		return jfail(j, "bad number");
	if (*j->p == '0')
		j->p++;
	else
		while (is_digit(j))
			j->p++;
	if (j->p < j->end && *j->p == '.') {
		j->p++;
		if (!is_digit(j))
			return jfail(j, "bad number");
		while (is_digit(j))
			j->p++;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (!is_digit(j))
			return jfail(j, "bad number");
		while (is_digit(j))
			j->p++;
	}
	return 0;
}

static int jliteral(struct jcheck *j)
{
	static const char *const words[] = { "true", "false", "null" };

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		size_t n = strlen(words[i]);

		if ((size_t)(j->end - j->p) >= n && memcmp(j->p, words[i], n) == 0) {
			j->p += n;
			return 0;
		}
	}
	return jfail(j, "not JSON");
}

static int jvalue(struct jcheck *j, unsigned depth);

/* An object's key (at its quote): unescaped into j->keys, refused if seen before. */
static int jkey(struct jcheck *j, struct jkey *keys, unsigned nkeys)
{
	struct jkey *k = &keys[nkeys];
	const char *at = j->p;
	int r;

	if (nkeys == CTL_MAX_KEYS)
		return jfail(j, "more than %d keys in an object", CTL_MAX_KEYS);
	k->off = j->keys_len;
	r = jstring(j, j->keys + k->off, &k->len);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < nkeys; i++) {
		if (keys[i].len == k->len &&
		    memcmp(j->keys + keys[i].off, j->keys + k->off, k->len) == 0) {
			j->p = at;
			return jfail(j, "duplicate key \"%.*s\"", (int)(k->len < 40 ? k->len : 40),
				     j->keys + k->off);
		}
	}
	j->keys_len += k->len;
	return 0;
}

/* After a member of an object or an element of an array: 1 if a ',' follows (one
 * more), 0 at the closing bracket (consumed), or the error. */
static int jnext(struct jcheck *j, char close, const char *what)
{
	skip_space(j);
	if (j->p < j->end && (*j->p == ',' || *j->p == close))
		return *j->p++ == ',';
	if (j->p == j->end)
		return jfail(j, "truncated %s", what);
	return jfail(j, "expected ',' or '%c'", close);
}

static int jobject(struct jcheck *j, unsigned depth)
{
	struct jkey keys[CTL_MAX_KEYS + 1];
	size_t keys_mark = j->keys_len;
	unsigned nkeys = 0;
	int r;

	j->p++;
	skip_space(j);
	if (j->p < j->end && *j->p == '}') {
		j->p++;
		return 0;
	}
	do {
		skip_space(j);
		if (j->p == j->end || *j->p != '"')
			return jfail(j, j->p == j->end ? "truncated object" : "expected a key");
		r = jkey(j, keys, nkeys++);
		if (r < 0)
			return r;
		skip_space(j);
		if (j->p == j->end || *j->p != ':')
			return jfail(j, "expected ':'");
		j->p++;
		r = jvalue(j, depth + 1);
		if (r == 0)
			r = jnext(j, '}', "object");
	} while (r > 0);
	j->keys_len = keys_mark; /* this object's keys are done with */
	return r;
}

static int jarray(struct jcheck *j, unsigned depth)
{
	int r;

	j->p++;
	skip_space(j);
	if (j->p < j->end && *j->p == ']') {
		j->p++;
		return 0;
	}
	do {
		r = jvalue(j, depth + 1);
		if (r == 0)
			r = jnext(j, ']', "array");
	} while (r > 0);
	return r;
}

static int jvalue(struct jcheck *j, unsigned depth)
{
	size_t n;

	if (depth > CTL_MAX_DEPTH)
		return jfail(j, "nested deeper than %d levels", CTL_MAX_DEPTH);
	skip_space(j);
	if (j->p == j->end)
		return jfail(j, "truncated");
	switch (*j->p) {
	case '{':
		return jobject(j, depth);
	case '[':
		return jarray(j, depth);
	case '"':
		return jstring(j, NULL, &n);
	default:
		return *j->p == '-' || is_digit(j) ? jnumber(j) : jliteral(j);
	}
}

int ctl_request_check(const char *text, size_t len, char *why, size_t whylen)
{
	struct jcheck j = { .start = text, .p = text, .end = text + len, .why = why,
			    .whylen = whylen };
	int r;

	if (memchr(text, '\0', len)) {
		snprintf(why, whylen, "a NUL byte in the request");
		return -EINVAL;
	}
	skip_space(&j);
	if (j.p == j.end || *j.p != '{') {
		if (j.p == j.end)
			snprintf(why, whylen, "an empty request");
		else
			jfail(&j, "not a JSON object");
		return -EINVAL;
	}
	j.keys = malloc(len ? len : 1); /* unescaped keys are never longer than the text */
	if (!j.keys) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	r = jvalue(&j, 0);
	if (r == 0) {
		skip_space(&j);
		if (j.p != j.end)
			r = jfail(&j, "text after the object");
	}
	free(j.keys);
	return r;
}

static const char *const type_words[] = {
	[CTL_STRING] = "a string",
	[CTL_UINT] = "a non-negative integer",
	[CTL_BOOL] = "true or false",
};

static bool type_ok(enum ctl_type t, struct json_object *v)
{
	switch (t) {
	case CTL_STRING:
		return json_object_is_type(v, json_type_string);
	case CTL_UINT:
		return json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0;
	case CTL_BOOL:
		return json_object_is_type(v, json_type_boolean);
	}
	return false;
}

/* "name, size" for an error sentence. */
static void key_list(const struct control_cmd *c, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < CTL_MAX_CMD_KEYS && c->keys[i].name && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "",
					c->keys[i].name);
}

int ctl_request_check_keys(const struct control_cmd *c, struct json_object *req, char *why,
			   size_t whylen)
{
	json_object_object_foreach(req, key, val) {
		const struct ctl_key *k = NULL;
		char keys[128];

		if (strcmp(key, "cmd") == 0)
			continue;
		for (size_t i = 0; i < CTL_MAX_CMD_KEYS && c->keys[i].name && !k; i++)
			if (strcmp(c->keys[i].name, key) == 0)
				k = &c->keys[i];
		if (!k) {
			key_list(c, keys, sizeof(keys));
			snprintf(why, whylen, "%s takes no key \"%.40s\" (%s%s)", c->cmd, key,
				 keys[0] ? "its keys: " : "it takes none besides cmd", keys);
			return -EINVAL;
		}
		if (!type_ok(k->type, val)) {
			snprintf(why, whylen, "%s: \"%s\" must be %s", c->cmd, k->name,
				 type_words[k->type]);
			return -EINVAL;
		}
	}
	return 0;
}
