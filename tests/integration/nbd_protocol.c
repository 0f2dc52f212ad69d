/* tests/integration/nbd_protocol.c — the NBD server through libnbd: options, flags,
 * every command, errors, block status, byte-granular I/O, concurrency, multi-conn.
 *
 * Runs nbd-harness (volumes "vol" 64 MiB and "small" 1 MiB) and stops it by PID at
 * the end, expecting a clean exit. QUILL_SEED replays the random parts.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd_test.h"

#define MIB (1ull << 20)

static void fill(uint8_t *buf, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++) {
		if (i % 8 == 0)
			seed = it_mix(seed, i);
		buf[i] = (uint8_t)(seed >> (i % 8 * 8));
	}
}

static void close_handle(struct nbd_handle *h)
{
	if (h) {
		nbd_shutdown(h, 0);
		nbd_close(h);
	}
}

/* ---- options ---- */

struct names {
	unsigned n;
	bool vol, small, snap, long_snap, alloc;
};

static int list_cb(void *arg, const char *name, const char *desc)
{
	struct names *ns = arg;

	(void)desc;
	ns->n++;
	ns->vol = ns->vol || strcmp(name, "vol") == 0;
	ns->small = ns->small || strcmp(name, "small") == 0;
	ns->snap = ns->snap || strcmp(name, NBDT_SNAP) == 0;
	ns->long_snap = ns->long_snap || strcmp(name, NBDT_LONG "@" NBDT_LONG) == 0;
	return 0;
}

static int context_cb(void *arg, const char *name)
{
	struct names *ns = arg;

	ns->alloc = ns->alloc || strcmp(name, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0;
	return 0;
}

static bool t_options(struct nbdt_server *srv, uint64_t seed)
{
	struct nbd_handle *h = nbd_create();
	struct names ns = { 0 };
	bool ok;

	(void)seed;
	CHECK(h && nbd_set_opt_mode(h, true) == 0, "opt mode");
	CHECK(nbd_connect_tcp(h, "127.0.0.1", srv->port_str) == 0, "%s", nbd_get_error());
	/* NBD_OPT_LIST */
	CHECK(nbd_opt_list(h, (nbd_list_callback){ .callback = list_cb, .user_data = &ns }) == 5,
	      "list: %s", nbd_get_error());
	CHECK(ns.vol && ns.small && ns.snap && ns.long_snap && ns.n == 5, "listed %u exports",
	      ns.n);
	/* NBD_OPT_INFO: sizes and block sizes */
	CHECK(nbd_set_export_name(h, "small") == 0 && nbd_opt_info(h) == 0, "%s", nbd_get_error());
	CHECK(nbd_get_size(h) == (int64_t)NBDT_SMALL_SIZE, "size %" PRId64, nbd_get_size(h));
	CHECK(nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM) == 512, "minimum block size: the "
	      "volume's logical sector");
	CHECK(nbd_get_block_size(h, LIBNBD_SIZE_PREFERRED) == 4096, "preferred block size");
	CHECK(nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM) == 32 * (int64_t)MIB, "maximum block size");
	/* unknown export: NBD_REP_ERR_UNKNOWN, and the session goes on */
	CHECK(nbd_set_export_name(h, "no-such-volume") == 0 && nbd_opt_info(h) == -1,
	      "info of an unknown export succeeded");
	CHECK(nbd_opt_go(h) == -1, "go to an unknown export succeeded");
	/* meta contexts: LIST, then GO with base:allocation */
	CHECK(nbd_set_export_name(h, "vol") == 0, "set name");
	CHECK(nbd_opt_list_meta_context(h, (nbd_context_callback){ .callback = context_cb,
								   .user_data = &ns }) >= 1,
	      "list meta: %s", nbd_get_error());
	CHECK(ns.alloc, "base:allocation not listed");
	CHECK(nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0, "add meta");
	CHECK(nbd_opt_go(h) == 0, "go: %s", nbd_get_error());
	CHECK(nbd_get_size(h) == (int64_t)NBDT_VOL_SIZE, "vol size");
	CHECK(nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1, "meta context");
	close_handle(h);

	/* NBD_OPT_ABORT */
	h = nbd_create();
	CHECK(h && nbd_set_opt_mode(h, true) == 0, "opt mode");
	CHECK(nbd_connect_tcp(h, "127.0.0.1", srv->port_str) == 0, "%s", nbd_get_error());
	ok = nbd_opt_abort(h) == 0;
	nbd_close(h);
	CHECK(ok, "abort: %s", nbd_get_error());
	return true;
}

static bool t_flags(struct nbdt_server *srv, uint64_t seed)
{
	struct nbd_handle *h = nbdt_connect(srv, "vol", true);
	bool ok;

	(void)seed;
	CHECK(h, "connect");
	ok = nbd_get_structured_replies_negotiated(h) == 1 && nbd_can_flush(h) == 1 &&
	     nbd_can_fua(h) == 1 && nbd_can_trim(h) == 1 && nbd_can_zero(h) == 1 &&
	     nbd_can_fast_zero(h) == 1 && nbd_can_df(h) == 1 && nbd_can_multi_conn(h) == 1 &&
	     nbd_can_cache(h) == 1 && nbd_is_read_only(h) == 0 && nbd_is_rotational(h) == 0 &&
	     nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
	close_handle(h);
	CHECK(ok, "an advertised flag is missing");
	/* without structured replies: no DF, no block status */
	h = nbd_create();
	CHECK(h && nbd_set_request_structured_replies(h, false) == 0 &&
	      nbd_set_export_name(h, "vol") == 0 &&
	      nbd_connect_tcp(h, "127.0.0.1", srv->port_str) == 0, "connect");
	ok = nbd_get_structured_replies_negotiated(h) == 0 && nbd_can_df(h) == 0 &&
	     nbd_can_fua(h) == 1;
	close_handle(h);
	CHECK(ok, "flags without structured replies");
	return true;
}

static bool expect_errno(int r, struct nbd_handle *h, int want, const char *what)
{
	CHECK(r == -1, "%s succeeded", what);
	CHECK(nbd_get_errno() == want, "%s: errno %d (%s), expected %d", what, nbd_get_errno(),
	      nbd_get_error(), want);
	(void)h;
	return true;
}

/* A snapshot export: read-only flags, its size, reads; writes, trims and zeroes get
 * EPERM from the server (strict mode off, so that libnbd sends them). */
static bool t_snapshot(struct nbdt_server *srv, uint64_t seed)
{
	struct nbd_handle *h = nbdt_connect(srv, NBDT_SNAP, true);
	static uint8_t buf[8192], zero[8192];
	bool ok;

	(void)seed;
	CHECK(h && nbd_set_strict_mode(h, 0) == 0, "connect: %s", nbd_get_error());
	ok = nbd_is_read_only(h) == 1 && nbd_can_trim(h) == 0 && nbd_can_zero(h) == 0 &&
	     nbd_can_fua(h) == 0 && nbd_can_flush(h) == 1 && nbd_can_multi_conn(h) == 1 &&
	     nbd_get_size(h) == (int64_t)NBDT_SMALL_SIZE;
	CHECK(ok, "read-only flags or size");
	CHECK(nbd_pread(h, buf, sizeof(buf), 4096, 0) == 0 && memcmp(buf, zero, sizeof(buf)) == 0,
	      "read: %s", nbd_get_error());
	if (!expect_errno(nbd_pwrite(h, buf, 4096, 0, 0), h, EPERM, "write to a snapshot") ||
	    !expect_errno(nbd_pwrite(h, buf, 100, 10, 0), h, EPERM, "unaligned write") ||
	    !expect_errno(nbd_trim(h, 4096, 0, 0), h, EPERM, "trim of a snapshot") ||
	    !expect_errno(nbd_zero(h, 4096, 0, 0), h, EPERM, "zero of a snapshot"))
		return false;
	CHECK(nbd_flush(h, 0) == 0 && nbd_pread(h, buf, 4096, 0, 0) == 0, "after EPERM: %s",
	      nbd_get_error());
	close_handle(h);
	/* the longest export name; one byte more is unknown */
	h = nbdt_connect(srv, NBDT_LONG "@" NBDT_LONG, false);
	CHECK(h && nbd_is_read_only(h) == 1, "the longest snapshot name: %s", nbd_get_error());
	close_handle(h);
	h = nbd_create();
	CHECK(h && nbd_set_opt_mode(h, true) == 0, "opt mode");
	CHECK(nbd_connect_tcp(h, "127.0.0.1", srv->port_str) == 0, "%s", nbd_get_error());
	CHECK(nbd_set_export_name(h, NBDT_LONG "@" NBDT_LONG "x") == 0 && nbd_opt_info(h) == -1,
	      "a 128-byte name was found");
	CHECK(nbd_set_export_name(h, "small@nosuch") == 0 && nbd_opt_info(h) == -1,
	      "an unknown snapshot was found");
	CHECK(nbd_set_export_name(h, NBDT_SNAP) == 0 && nbd_opt_info(h) == 0 &&
	      nbd_is_read_only(h) == 1 && nbd_get_size(h) == (int64_t)NBDT_SMALL_SIZE,
	      "info of a snapshot: %s", nbd_get_error());
	close_handle(h);
	return true;
}

/* ---- commands ---- */

static int chunk_cb(void *arg, const void *buf, size_t count, uint64_t off, unsigned st, int *err)
{
	unsigned *chunks = arg;

	(void)buf, (void)count, (void)off, (void)err;
	*chunks += st == LIBNBD_READ_DATA;
	return 0;
}

static bool t_read_write(struct nbdt_server *srv, uint64_t seed)
{
	struct nbd_handle *h = nbdt_connect(srv, "vol", true);
	unsigned chunks = 0;
	static uint8_t out[1 << 20], in[1 << 20];

	CHECK(h, "connect");
	fill(out, sizeof(out), seed);
	CHECK(nbd_pwrite(h, out, sizeof(out), MIB, 0) == 0, "%s", nbd_get_error());
	CHECK(nbd_pread(h, in, sizeof(in), MIB, 0) == 0, "%s", nbd_get_error());
	CHECK(memcmp(in, out, sizeof(in)) == 0, "data differs");
	/* FUA write, DF read */
	fill(out, 65536, seed + 1);
	CHECK(nbd_pwrite(h, out, 65536, 3 * MIB, LIBNBD_CMD_FLAG_FUA) == 0, "%s", nbd_get_error());
	memset(in, 0, 65536);
	CHECK(nbd_pread_structured(h, in, 65536, 3 * MIB,
				   (nbd_chunk_callback){ .callback = chunk_cb, .user_data = &chunks },
				   LIBNBD_CMD_FLAG_DF) == 0, "%s", nbd_get_error());
	CHECK(chunks == 1, "DF read in %u chunks", chunks);
	CHECK(memcmp(in, out, 65536) == 0, "DF read differs");
	/* the largest request: 32 MiB */
	{
		uint8_t *big = malloc(32 * MIB), *back = malloc(32 * MIB);

		CHECK(big && back, "malloc");
		fill(big, 32 * MIB, seed + 2);
		CHECK(nbd_pwrite(h, big, 32 * MIB, 16 * MIB + 512, 0) == 0, "%s", nbd_get_error());
		CHECK(nbd_pread(h, back, 32 * MIB, 16 * MIB + 512, 0) == 0, "%s", nbd_get_error());
		CHECK(memcmp(big, back, 32 * MIB) == 0, "32 MiB round trip differs");
		free(big);
		free(back);
	}
	/* unwritten space reads as zeros; CACHE and FLUSH succeed */
	CHECK(nbd_pread(h, in, 4096, 60 * MIB, 0) == 0, "%s", nbd_get_error());
	for (int i = 0; i < 4096; i++)
		CHECK(in[i] == 0, "unwritten byte %d is %u", i, in[i]);
	CHECK(nbd_cache(h, 65536, 0, 0) == 0, "cache: %s", nbd_get_error());
	CHECK(nbd_flush(h, 0) == 0, "flush: %s", nbd_get_error());
	close_handle(h);
	return true;
}

/* A shadow copy of a region, checked against reads. */
static bool compare_region(struct nbd_handle *h, const uint8_t *model, uint64_t base, size_t len,
			   const char *what)
{
	uint8_t *in = malloc(len);
	bool ok;

	CHECK(in, "malloc");
	ok = nbd_pread(h, in, len, base, 0) == 0;
	if (!ok)
		fprintf(stderr, "  %s: read: %s\n", what, nbd_get_error());
	for (size_t i = 0; ok && i < len; i++) {
		if (in[i] != model[i]) {
			fprintf(stderr, "  %s: byte %zu (offset %" PRIu64 ") is %u, expected %u\n",
				what, i, base + i, in[i], model[i]);
			ok = false;
		}
	}
	free(in);
	return ok;
}

/* Random writes, zeroes and trims at odd offsets against a model; reads through
 * structured and simple replies. */
static bool t_unaligned(struct nbdt_server *srv, uint64_t seed)
{
	const uint64_t base = 8 * MIB;
	const size_t span = 256 * 1024;
	struct nbd_handle *h = nbdt_connect(srv, "vol", true), *hs = NULL;
	uint8_t *model = calloc(1, span), *buf = malloc(span);
	uint64_t rng = seed;

	CHECK(h && model && buf, "setup");
	fill(model, span, seed);
	CHECK(nbd_pwrite(h, model, span, base, 0) == 0, "%s", nbd_get_error());
	for (int op = 0; op < 300; op++) {
		uint64_t off = it_rand_below(&rng, span - 1);
		uint64_t max = span - off < 20000 ? span - off : 20000;
		size_t len = (size_t)it_rand_range(&rng, 1, max);
		unsigned kind = (unsigned)it_rand_below(&rng, 10);

		if (kind < 6) {
			fill(buf, len, it_rand(&rng));
			CHECK(nbd_pwrite(h, buf, len, base + off, kind == 0 ? LIBNBD_CMD_FLAG_FUA : 0) == 0,
			      "write %zu at %" PRIu64 ": %s", len, off, nbd_get_error());
			memcpy(model + off, buf, len);
		} else if (kind < 8) {
			uint32_t f = kind == 6 ? LIBNBD_CMD_FLAG_NO_HOLE : LIBNBD_CMD_FLAG_FAST_ZERO;

			CHECK(nbd_zero(h, len, base + off, f) == 0, "zero %zu at %" PRIu64 ": %s", len,
			      off, nbd_get_error());
			memset(model + off, 0, len);
		} else if (kind == 8) {
			CHECK(nbd_trim(h, len, base + off, 0) == 0, "trim: %s", nbd_get_error());
			memset(model + off, 0, len); /* ours: trimmed bytes read as zeros */
		} else {
			uint64_t roff = it_rand_below(&rng, span - 1);
			size_t rlen = (size_t)it_rand_range(&rng, 1, span - roff < 30000 ? span - roff : 30000);

			if (!compare_region(h, model + roff, base + roff, rlen, "random read"))
				return false;
		}
	}
	CHECK(compare_region(h, model, base, span, "structured"), "after the random ops");
	hs = nbd_create();
	CHECK(hs && nbd_set_request_structured_replies(hs, false) == 0 &&
	      nbd_set_export_name(hs, "vol") == 0 &&
	      nbd_connect_tcp(hs, "127.0.0.1", srv->port_str) == 0, "connect simple");
	CHECK(compare_region(hs, model, base, span, "simple replies"), "simple replies");
	close_handle(hs);
	close_handle(h);
	free(model);
	free(buf);
	return true;
}

/* ---- block status ---- */

struct extents {
	unsigned n;
	uint32_t len[64], flags[64];
};

static int extent_cb(void *arg, const char *ctx, uint64_t off, uint32_t *e, size_t n, int *err)
{
	struct extents *x = arg;

	(void)off;
	(void)err;
	if (strcmp(ctx, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
		return 0;
	for (size_t i = 0; i + 1 < n && x->n < 64; i += 2, x->n++) {
		x->len[x->n] = e[i];
		x->flags[x->n] = e[i + 1];
	}
	return 0;
}

static bool status(struct nbd_handle *h, uint64_t len, uint64_t off, uint32_t flags,
		   struct extents *x)
{
	memset(x, 0, sizeof(*x));
	CHECK(nbd_block_status(h, len, off, (nbd_extent_callback){ .callback = extent_cb,
								     .user_data = x }, flags) == 0,
	      "block status: %s", nbd_get_error());
	return true;
}

#define HZ (LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO)

static bool t_block_status(struct nbdt_server *srv, uint64_t seed)
{
	const uint64_t b = 56 * MIB; /* untouched by the other checks */
	struct nbd_handle *h = nbdt_connect(srv, "vol", true);
	uint8_t buf[8192];
	struct extents x;

	CHECK(h, "connect");
	fill(buf, sizeof(buf), seed);
	CHECK(status(h, 1 * MIB, b, 0, &x), "status");
	CHECK(x.n == 1 && x.len[0] == MIB && x.flags[0] == HZ, "fresh: %u extents, flags %u", x.n,
	      x.flags[0]);
	/* one written block in the middle */
	CHECK(nbd_pwrite(h, buf, 4096, b + 8192, 0) == 0, "%s", nbd_get_error());
	CHECK(status(h, 65536, b, 0, &x), "status");
	CHECK(x.n == 3 && x.len[0] == 8192 && x.flags[0] == HZ && x.len[1] == 4096 &&
	      x.flags[1] == 0 && x.len[2] == 65536 - 12288 && x.flags[2] == HZ,
	      "after a write: %u extents (%u/%u %u/%u)", x.n, x.len[0], x.flags[0], x.len[1],
	      x.flags[1]);
	/* REQ_ONE: one extent */
	CHECK(status(h, 65536, b, LIBNBD_CMD_FLAG_REQ_ONE, &x), "status");
	CHECK(x.n == 1 && x.len[0] == 8192 && x.flags[0] == HZ, "REQ_ONE: %u extents", x.n);
	/* an unaligned query starts inside the written block */
	CHECK(status(h, 10000, b + 9000, 0, &x), "status");
	CHECK(x.n == 2 && x.len[0] == 12288 - 9000 && x.flags[0] == 0 && x.flags[1] == HZ,
	      "unaligned: %u extents, first %u", x.n, x.len[0]);
	/* write-zeroes and trim of whole blocks make holes again */
	CHECK(nbd_pwrite(h, buf, 8192, b + 16384, 0) == 0, "%s", nbd_get_error());
	CHECK(nbd_zero(h, 4096, b + 8192, 0) == 0 && nbd_trim(h, 8192, b + 16384, 0) == 0, "%s",
	      nbd_get_error());
	CHECK(status(h, 65536, b, 0, &x), "status");
	CHECK(x.n == 1 && x.flags[0] == HZ, "after zero/trim: %u extents", x.n);
	/* a partial zero leaves the block mapped (its other bytes are data) */
	CHECK(nbd_pwrite(h, buf, 4096, b, 0) == 0 && nbd_zero(h, 100, b + 10, 0) == 0, "%s",
	      nbd_get_error());
	CHECK(status(h, 8192, b, 0, &x), "status");
	CHECK(x.n == 2 && x.len[0] == 4096 && x.flags[0] == 0, "partial zero: %u extents", x.n);
	close_handle(h);
	return true;
}

/* WRITE_ZEROES with NO_HOLE: allocated zeros (ZERO, not HOLE), surviving a reconnect;
 * without it, or TRIM: holes (HOLE|ZERO). FAST_ZERO is accepted either way. */
static bool t_zero_no_hole(struct nbdt_server *srv, uint64_t seed)
{
	const uint64_t b = 58 * MIB; /* untouched by the other checks */
	struct nbd_handle *h = nbdt_connect(srv, "vol", true);
	uint8_t buf[16384], in[16384], zero[16384] = { 0 };
	struct extents x;

	CHECK(h, "connect");
	fill(buf, sizeof(buf), seed);
	CHECK(nbd_pwrite(h, buf, sizeof(buf), b, 0) == 0, "%s", nbd_get_error());
	CHECK(nbd_zero(h, 8192, b, LIBNBD_CMD_FLAG_NO_HOLE) == 0, "%s", nbd_get_error());
	CHECK(nbd_zero(h, 4096, b + 8192, 0) == 0, "%s", nbd_get_error());
	/* past the written data: a hole becomes allocated zeros too */
	CHECK(nbd_zero(h, 8192, b + 16384, LIBNBD_CMD_FLAG_NO_HOLE | LIBNBD_CMD_FLAG_FAST_ZERO) ==
	      0, "%s", nbd_get_error());
	CHECK(nbd_pread(h, in, sizeof(in), b, 0) == 0, "%s", nbd_get_error());
	CHECK(memcmp(in, zero, 12288) == 0 && memcmp(in + 12288, buf + 12288, 4096) == 0,
	      "zeroed blocks read back wrong");
	CHECK(nbd_pread(h, in, 8192, b + 16384, 0) == 0 && memcmp(in, zero, 8192) == 0,
	      "allocated zeros over a hole read back wrong");
	CHECK(status(h, 65536, b, 0, &x), "status");
	CHECK(x.n == 5 && x.len[0] == 8192 && x.flags[0] == LIBNBD_STATE_ZERO &&
	      x.len[1] == 4096 && x.flags[1] == HZ && x.len[2] == 4096 && x.flags[2] == 0 &&
	      x.len[3] == 8192 && x.flags[3] == LIBNBD_STATE_ZERO && x.flags[4] == HZ,
	      "NO_HOLE: %u extents (%u/%u %u/%u %u/%u %u/%u)", x.n, x.len[0], x.flags[0],
	      x.len[1], x.flags[1], x.len[2], x.flags[2], x.len[3], x.flags[3]);
	/* a trim makes a hole of allocated zeros */
	CHECK(nbd_trim(h, 4096, b + 16384, 0) == 0, "%s", nbd_get_error());
	CHECK(nbd_flush(h, 0) == 0, "%s", nbd_get_error());
	close_handle(h);
	h = nbdt_connect(srv, "vol", true);
	CHECK(h, "reconnect");
	CHECK(status(h, 32768, b, 0, &x), "status");
	CHECK(x.n == 6 && x.flags[0] == LIBNBD_STATE_ZERO && x.flags[1] == HZ &&
	      x.flags[2] == 0 && x.flags[3] == HZ && x.len[4] == 4096 &&
	      x.flags[4] == LIBNBD_STATE_ZERO && x.flags[5] == HZ,
	      "after a trim and a reconnect: %u extents", x.n);
	close_handle(h);
	return true;
}

/* ---- errors ---- */

static bool t_errors(struct nbdt_server *srv, uint64_t seed)
{
	struct nbd_handle *h = nbdt_connect(srv, "vol", true), *hn;
	static uint8_t buf[33 << 20];
	const uint64_t size = NBDT_VOL_SIZE;

	(void)seed;
	CHECK(h && nbd_set_strict_mode(h, 0) == 0, "connect");
	if (!expect_errno(nbd_pread(h, buf, 4096, size - 100, 0), h, EINVAL, "read past the end") ||
	    !expect_errno(nbd_pread(h, buf, 1, size, 0), h, EINVAL, "read at the end") ||
	    !expect_errno(nbd_pwrite(h, buf, 4096, size - 4095, 0), h, ENOSPC, "write past the end") ||
	    !expect_errno(nbd_trim(h, 8192, size - 4096, 0), h, EINVAL, "trim past the end") ||
	    !expect_errno(nbd_zero(h, 8192, size - 4096, 0), h, ENOSPC, "zero past the end") ||
	    !expect_errno(nbd_cache(h, 8192, size, 0), h, EINVAL, "cache past the end") ||
	    !expect_errno(nbd_pread(h, buf, 33 << 20, 0, 0), h, EINVAL, "33 MiB read") ||
	    !expect_errno(nbd_pread(h, buf, 0, 0, 0), h, EINVAL, "zero-length read") ||
	    !expect_errno(nbd_pwrite(h, buf, 512, 0, LIBNBD_CMD_FLAG_DF), h, EINVAL, "DF on a write"))
		return false;
	{
		struct extents x;
		int r = nbd_block_status(h, 8192, size - 4096,
					 (nbd_extent_callback){ .callback = extent_cb, .user_data = &x },
					 0);
		if (!expect_errno(r, h, EINVAL, "block status past the end"))
			return false;
	}
	/* the connection still works */
	CHECK(nbd_pread(h, buf, 4096, 0, 0) == 0, "read after errors: %s", nbd_get_error());
	close_handle(h);
	/* block status without a negotiated context */
	hn = nbdt_connect(srv, "vol", false);
	CHECK(hn && nbd_set_strict_mode(hn, 0) == 0, "connect");
	{
		struct extents x;
		int r = nbd_block_status(hn, 4096, 0,
					 (nbd_extent_callback){ .callback = extent_cb, .user_data = &x },
					 0);
		if (!expect_errno(r, hn, EINVAL, "block status without a context"))
			return false;
	}
	close_handle(hn);
	return true;
}

/* ---- concurrency ---- */

struct op {
	uint64_t off;
	uint32_t len;
	uint8_t val;      /* 0 = write-zeroes */
	uint8_t *buf;
};

/* Many overlapping unaligned writes and zeroes in flight at once: afterwards every
 * byte holds the value of one of the requests that covered it (or the original), and
 * requests sharing blocks without sharing bytes never lose each other's data. */
static bool t_concurrent(struct nbdt_server *srv, uint64_t seed)
{
	enum { NOPS = 256, SPAN = 64 * 1024 };
	const uint64_t base = 20 * MIB;
	struct nbd_handle *h = nbdt_connect(srv, "vol", true);
	static struct op ops[NOPS];
	static uint8_t orig[SPAN], in[SPAN];
	uint64_t rng = seed;

	CHECK(h, "connect");
	memset(orig, 0xee, sizeof(orig));
	CHECK(nbd_pwrite(h, orig, SPAN, base, 0) == 0, "%s", nbd_get_error());
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < NOPS; i++) {
			struct op *o = &ops[i];

			if (round == 0) { /* disjoint bytes, shared blocks */
				o->off = (uint64_t)i * (SPAN / NOPS) + 1;
				o->len = SPAN / NOPS - 2;
			} else {
				o->off = it_rand_below(&rng, SPAN - 1);
				o->len = (uint32_t)it_rand_range(&rng, 1, SPAN - o->off < 9000 ?
									  SPAN - o->off : 9000);
			}
			o->val = round == 2 && i % 4 == 0 ? 0 : (uint8_t)(1 + i % 200 + round);
			o->buf = malloc(o->len);
			CHECK(o->buf, "malloc");
			memset(o->buf, o->val, o->len);
			CHECK((o->val ? nbd_aio_pwrite(h, o->buf, o->len, base + o->off,
						       NBD_NULL_COMPLETION, 0) :
					nbd_aio_zero(h, o->len, base + o->off, NBD_NULL_COMPLETION, 0)) > 0,
			      "aio: %s", nbd_get_error());
		}
		while (nbd_aio_in_flight(h) > 0)
			CHECK(nbd_poll(h, -1) >= 0, "poll: %s", nbd_get_error());
		for (int64_t c; (c = nbd_aio_peek_command_completed(h)) > 0;)
			CHECK(nbd_aio_command_completed(h, (uint64_t)c) == 1, "a request failed: %s",
			      nbd_get_error());
		CHECK(nbd_pread(h, in, SPAN, base, 0) == 0, "%s", nbd_get_error());
		for (size_t b = 0; b < SPAN; b++) {
			bool covered = false, match = false;

			for (int i = 0; i < NOPS; i++) {
				if (b >= ops[i].off && b < ops[i].off + ops[i].len) {
					covered = true;
					match = match || in[b] == ops[i].val;
				}
			}
			CHECK(covered ? match : in[b] == orig[b], "round %d: byte %zu is %u (%s)", round,
			      b, in[b], covered ? "no request wrote that" : "was not written");
		}
		memcpy(orig, in, SPAN);
		for (int i = 0; i < NOPS; i++)
			free(ops[i].buf);
	}
	close_handle(h);
	return true;
}

static bool t_multi_conn(struct nbdt_server *srv, uint64_t seed)
{
	struct nbd_handle *a = nbdt_connect(srv, "vol", true), *b = nbdt_connect(srv, "vol", true);
	uint8_t out[12345], in[12345];

	CHECK(a && b, "connect");
	fill(out, sizeof(out), seed);
	CHECK(nbd_pwrite(a, out, sizeof(out), 30 * MIB + 77, 0) == 0, "%s", nbd_get_error());
	CHECK(nbd_flush(b, 0) == 0, "flush on the other: %s", nbd_get_error());
	CHECK(nbd_pread(b, in, sizeof(in), 30 * MIB + 77, 0) == 0, "%s", nbd_get_error());
	CHECK(memcmp(in, out, sizeof(in)) == 0, "not visible on the other connection");
	fill(out, sizeof(out), seed + 1);
	CHECK(nbd_pwrite(b, out, sizeof(out), 30 * MIB + 5000, LIBNBD_CMD_FLAG_FUA) == 0, "%s",
	      nbd_get_error());
	CHECK(nbd_pread(a, in, sizeof(in), 30 * MIB + 5000, 0) == 0, "%s", nbd_get_error());
	CHECK(memcmp(in, out, sizeof(in)) == 0, "FUA write not visible");
	close_handle(a);
	close_handle(b);
	return true;
}

/* Clients on both volumes at once, over TCP and the unix socket. */
static bool t_many_clients(struct nbdt_server *srv, uint64_t seed)
{
	enum { N = 8 };
	struct nbd_handle *h[N];
	uint8_t out[N][3000], in[3000];

	for (int i = 0; i < N; i++) {
		const char *vol = i % 2 ? "small" : "vol";

		if (i % 4 == 3) {
			h[i] = nbd_create();
			CHECK(h[i] && nbdt_allow_unaligned(h[i]) == 0 &&
			      nbd_set_export_name(h[i], vol) == 0 &&
			      nbd_connect_unix(h[i], srv->unix_path) == 0, "unix: %s", nbd_get_error());
		} else {
			h[i] = nbdt_connect(srv, vol, false);
			CHECK(h[i], "connect %d", i);
		}
		fill(out[i], sizeof(out[i]), seed + (uint64_t)i);
		CHECK(nbd_pwrite(h[i], out[i], sizeof(out[i]), (uint64_t)i * 4099, 0) == 0, "%s",
		      nbd_get_error());
	}
	for (int i = 0; i < N; i++) {
		CHECK(nbd_pread(h[i], in, sizeof(in), (uint64_t)i * 4099, 0) == 0, "%s", nbd_get_error());
		CHECK(memcmp(in, out[i], sizeof(in)) == 0, "client %d reads other data", i);
		close_handle(h[i]);
	}
	return true;
}

int main(void)
{
	static const struct nbdt_check checks[] = {
		{ "options: LIST, INFO, unknown export, meta contexts, GO, ABORT", t_options },
		{ "transmission flags", t_flags },
		{ "snapshot exports: read-only, EPERM, the longest name", t_snapshot },
		{ "read, write, FUA, DF, 32 MiB, cache, flush", t_read_write },
		{ "unaligned writes, zeroes and trims against a model", t_unaligned },
		{ "block status (base:allocation)", t_block_status },
		{ "write-zeroes with NO_HOLE allocates, without it and trim make holes",
		  t_zero_no_hole },
		{ "errors: out of range, too long, bad flags, no context", t_errors },
		{ "concurrent overlapping unaligned requests", t_concurrent },
		{ "multi-conn: flush and FUA visible across connections", t_multi_conn },
		{ "many clients on two volumes, TCP and unix", t_many_clients },
	};

	return nbdt_main("nbd_protocol", checks, sizeof(checks) / sizeof(checks[0]));
}
