/* nbd/handshake.c — the fixed newstyle handshake as a state machine.
 *
 *   CLIENT_FLAGS --4 bytes--> OPT_HDR --16 bytes--> OPT_DATA --length--> (option) --+
 *                                ^         \--length too big--> OPT_SKIP --> TOO_BIG |
 *                                +-----------------------------------------------------+
 *   (option) = GO or EXPORT_NAME: REQ_HDR (transmission, requests.c)
 *              ABORT: ACK, DRAIN (close once sent)
 *              STARTTLS: ACK, TLS_ACK --ACK sent--> TLS_HANDSHAKE --done--> OPT_HDR
 *                        (server.c, tls.c; what was negotiated before is forgotten)
 *              anything else: replies, back to OPT_HDR
 *
 * With TLS required (nbd_tls.h), a TCP client that has not upgraded gets
 * NBD_REP_ERR_TLS_REQD for every option but STARTTLS and ABORT (EXPORT_NAME, which
 * cannot be refused, closes the connection). A unix socket is never upgraded.
 *
 * Protocol violations that leave no way to answer (unknown client flags, a wrong
 * option magic, EXPORT_NAME of an unknown export) close the connection; everything
 * else gets an NBD_REP_ERR_* with a message and the session continues.
 */
#include "nbd/nbd_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "nbd/nbd_tls.h"

#define META_CONTEXT_ID 1u /* our id for base:allocation */

static const uint8_t zeroes[124];

static struct nbd_out *out_new(struct nbd_conn *c)
{
	struct nbd_out *o = calloc(1, sizeof(*o));

	if (!o) {
		nbd_conn_close(c, "out of memory");
		return NULL;
	}
	o->heap = true;
	return o;
}

/* Queues an option reply whose data is copied (into the header room if it fits). */
static void opt_reply(struct nbd_conn *c, uint32_t type, const void *data, size_t len)
{
	struct nbd_out *o = out_new(c);

	if (!o)
		return;
	o->hdr_len = (uint32_t)nbd_encode_option_reply(o->hdr, c->opt.option, type, (uint32_t)len);
	if (len <= sizeof(o->hdr) - o->hdr_len) {
		if (len)
			memcpy(o->hdr + o->hdr_len, data, len);
		o->hdr_len += (uint32_t)len;
	} else {
		o->owned = malloc(len);
		if (!o->owned) {
			free(o);
			nbd_conn_close(c, "out of memory");
			return;
		}
		memcpy(o->owned, data, len);
		o->data = o->owned;
		o->data_len = len;
	}
	nbd_conn_queue(c, o);
}

static void opt_ack(struct nbd_conn *c)
{
	opt_reply(c, NBD_REP_ACK, NULL, 0);
}

/* An error reply with a message for the human, also logged at debug level. */
__attribute__((format(printf, 3, 4)))
static void opt_error(struct nbd_conn *c, uint32_t type, const char *fmt, ...)
{
	char msg[512]; /* a refusal names a holder: up to a socket path long */
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	log_msg(LOG_DEBUG, NBD_LOG, "%s: %s: %s", c->peer, nbd_opt_name(c->opt.option), msg);
	opt_reply(c, type, msg, (size_t)n);
}

/* A wire name as a C string, if it could name a volume or a snapshot ("VOL@SNAP":
 * short, no NUL inside). */
static bool volume_name(const char *wire, size_t len, char out[VOLSPEC_MAX + 1])
{
	if (len > VOLSPEC_MAX || memchr(wire, 0, len))
		return false;
	memcpy(out, wire, len);
	out[len] = '\0';
	return true;
}

uint16_t nbd_hs_tx_flags(const struct nbd_conn *c, bool readonly)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_CAN_MULTI_CONN |
		     NBD_FLAG_SEND_CACHE;

	if (readonly)
		f |= NBD_FLAG_READ_ONLY;
	else
		f |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
		     NBD_FLAG_SEND_FAST_ZERO;
	if (c->structured)
		f |= NBD_FLAG_SEND_DF;
	return f;
}

void nbd_hs_start(struct nbd_conn *c)
{
	struct nbd_out *o = out_new(c);

	if (!o)
		return;
	nbd_put64(o->hdr + offsetof(struct nbd_greeting, magic), NBD_MAGIC);
	nbd_put64(o->hdr + offsetof(struct nbd_greeting, opt_magic), NBD_IHAVEOPT);
	nbd_put16(o->hdr + offsetof(struct nbd_greeting, handshake_flags),
		  NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	o->hdr_len = sizeof(struct nbd_greeting);
	c->state = NBD_CS_CLIENT_FLAGS;
	nbd_conn_queue(c, o);
}

static void enter_transmission(struct nbd_conn *c, struct nbd_export *exp)
{
	c->exp = exp;
	c->tx_flags = nbd_hs_tx_flags(c, exp->readonly);
	if (c->meta_alloc && strcmp(c->meta_export, exp->name) != 0)
		c->meta_alloc = false; /* selected for another export */
	c->state = NBD_CS_REQ_HDR;
	nbd_export_describe(exp);
	log_msg(LOG_INFO, NBD_LOG, "%s: attached %s %s%s%s", c->peer,
		exp->readonly ? "snapshot" : "volume", exp->name,
		c->structured ? " (structured replies" : "",
		c->structured ? (c->meta_alloc ? ", base:allocation)" : ")") : "");
}

/* ---- attach anywhere: a volume no node owns is claimed first ---- */

static void claim_done(void *arg, int res)
{
	struct nbd_conn *c = arg;

	(void)res; /* the option read again says what came of it */
	c->claim_wait = false;
	c->claim_retry = true;
	nbd_conn_resume(c);
}

void nbd_hs_cancel(struct nbd_conn *c)
{
	blk_guard_claim_cancel(c->srv->guard, claim_done, c);
	c->claim_wait = false;
}

/* The open said -EAGAIN (no node owns the volume): the node claims it, and the
 * option (len bytes of data, just consumed) is read again once it did. False: not
 * this time (it was read again already, or the node does not claim): refuse. */
static bool claim_first(struct nbd_conn *c, const char *name, size_t len)
{
	if (c->claim_retry || blk_guard_claim(c->srv->guard, name, claim_done, c) < 0)
		return false;
	c->claim_wait = true;
	c->paused = true;
	c->in_start -= len;
	c->state = NBD_CS_OPT_DATA;
	return true;
}

static void opt_export_name(struct nbd_conn *c, const uint8_t *data, size_t len)
{
	char name[VOLSPEC_MAX + 1];
	struct nbd_out *o;
	struct nbd_export *exp;
	char why[BLK_HOLDER_MAX + VOLSPEC_MAX + 64];
	int r = volume_name((const char *)data, len, name) ? 0 : -ENOENT;

	if (r == 0)
		r = nbd_export_get(c->srv, name, &exp);
	if (r == -EAGAIN && claim_first(c, name, len))
		return;
	if (r == 0 && nbd_limits_attach(c, why, sizeof(why)) < 0) {
		nbd_export_put(exp);
		nbd_conn_close(c, NULL); /* refused (logged); no way to say why */
		return;
	}
	if (r < 0) {
		/* EXPORT_NAME cannot answer with an error: the spec says close */
		if (!blk_open_refusal(c->srv->eng, c->srv->guard, name, r, why, sizeof(why)))
			snprintf(why, sizeof(why), "%s", err_str(-r));
		LOG_RATELIMITED(LOG_WARN, NBD_LOG, "%s: NBD_OPT_EXPORT_NAME '%.*s': %s", c->peer,
				(int)(len > 64 ? 64 : len), (const char *)data, why);
		nbd_conn_close(c, NULL);
		return;
	}
	o = out_new(c);
	if (!o) {
		nbd_export_put(exp);
		return;
	}
	enter_transmission(c, exp);
	nbd_put64(o->hdr + offsetof(struct nbd_export_name_reply, size), exp->size);
	nbd_put16(o->hdr + offsetof(struct nbd_export_name_reply, flags), c->tx_flags);
	o->hdr_len = offsetof(struct nbd_export_name_reply, zeroes);
	if (!c->no_zeroes) {
		o->data = zeroes;
		o->data_len = sizeof(zeroes);
	}
	nbd_conn_queue(c, o);
}

static void list_reply(struct nbd_conn *c, const char *name)
{
	uint8_t buf[4 + VOLSPEC_MAX];
	size_t n = strlen(name);

	nbd_put32(buf, (uint32_t)n);
	memcpy(buf + 4, name, n);
	opt_reply(c, NBD_REP_SERVER, buf, 4 + n);
}

/* Every volume, then its snapshots (read-only exports). */
static int list_one(const char *spec, void *arg)
{
	struct nbd_conn *c = arg;

	list_reply(c, spec);
	return c->state == NBD_CS_DEAD ? -ENOMEM : 0;
}

static void opt_list(struct nbd_conn *c, size_t len)
{
	int r;

	if (len) {
		opt_error(c, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
		return;
	}
	r = blk_list(c->srv->eng, list_one, c);
	if (c->state == NBD_CS_DEAD)
		return;
	if (r < 0)
		opt_error(c, NBD_REP_ERR_PLATFORM, "cannot list volumes: %s", err_str(-r));
	else
		opt_ack(c);
}

/* Replies for an export lookup that failed; true if it did. */
static bool export_error(struct nbd_conn *c, const char *name, int r)
{
	char why[BLK_HOLDER_MAX + VOLSPEC_MAX + 64];

	if (r == 0)
		return false;
	if (r == -ENOENT)
		opt_error(c, NBD_REP_ERR_UNKNOWN, "no volume or snapshot named '%s'", name);
	else if (r == -ESHUTDOWN)
		opt_error(c, NBD_REP_ERR_SHUTDOWN, "the server is shutting down");
	else if (blk_open_refusal(c->srv->eng, c->srv->guard, name, r, why, sizeof(why)))
		/* another writer (named), or another node owns it, or none does */
		opt_error(c, NBD_REP_ERR_POLICY, "%s%s", why,
			  r == -EBUSY ? ": a volume has one writer at a time" : "");
	else
		opt_error(c, NBD_REP_ERR_POLICY, "volume '%s': %s", name, err_str(-r));
	return true;
}

/* The export's size and flags, then its block sizes: the minimum is the volume's
 * logical sector (a 4Kn volume says 4096), though any byte range is served. */
static void info_export(struct nbd_conn *c, uint64_t size, bool readonly, uint32_t sector)
{
	uint8_t b[sizeof(struct nbd_info_block_size)];

	nbd_put16(b + offsetof(struct nbd_info_export, info), NBD_INFO_EXPORT);
	nbd_put64(b + offsetof(struct nbd_info_export, size), size);
	nbd_put16(b + offsetof(struct nbd_info_export, flags), nbd_hs_tx_flags(c, readonly));
	opt_reply(c, NBD_REP_INFO, b, sizeof(struct nbd_info_export));
	nbd_put16(b + offsetof(struct nbd_info_block_size, info), NBD_INFO_BLOCK_SIZE);
	nbd_put32(b + offsetof(struct nbd_info_block_size, minimum), sector);
	nbd_put32(b + offsetof(struct nbd_info_block_size, preferred), NBD_PREF_BLOCK);
	nbd_put32(b + offsetof(struct nbd_info_block_size, maximum), NBD_MAX_PAYLOAD);
	opt_reply(c, NBD_REP_INFO, b, sizeof(struct nbd_info_block_size));
}

static void info_name(struct nbd_conn *c, const char *name)
{
	uint8_t b[2 + VOLSPEC_MAX];
	size_t n = strlen(name);

	nbd_put16(b, NBD_INFO_NAME);
	memcpy(b + 2, name, n);
	opt_reply(c, NBD_REP_INFO, b, 2 + n);
}

/* NBD_OPT_INFO and NBD_OPT_GO. */
static void opt_info(struct nbd_conn *c, const uint8_t *data, size_t len, bool go)
{
	char name[VOLSPEC_MAX + 1] = "";
	struct nbd_info_opt io;
	struct nbd_export *exp = NULL;
	bool readonly = false;
	uint64_t size = 0;
	uint32_t sector = 0;
	char why[160];
	int r;

	if (nbd_decode_info_opt(data, len, &io) < 0) {
		opt_error(c, NBD_REP_ERR_INVALID, "malformed option data");
		return;
	}
	if (!volume_name(io.name, io.name_len, name)) {
		opt_error(c, NBD_REP_ERR_UNKNOWN, "no volume by that name");
		return;
	}
	if (go) {
		r = nbd_export_get(c->srv, name, &exp);
		if (r == -EAGAIN && claim_first(c, name, len))
			return;
		size = exp ? exp->size : 0;
		readonly = exp && exp->readonly;
		sector = exp ? blk_sector_size(exp->dev) : 0;
	} else {
		r = nbd_export_probe(c->srv, name, &size, &readonly, &sector);
	}
	if (export_error(c, name, r))
		return;
	if (go && nbd_limits_attach(c, why, sizeof(why)) < 0) {
		nbd_export_put(exp); /* stays in the handshake: it may try again */
		opt_error(c, NBD_REP_ERR_POLICY, "%s", why);
		return;
	}
	info_export(c, size, readonly, sector);
	for (uint16_t i = 0; i < io.nreqs; i++) {
		if (nbd_info_opt_req(&io, i) == NBD_INFO_NAME) {
			info_name(c, name);
			break;
		}
	}
	opt_ack(c);
	if (go && c->state != NBD_CS_DEAD)
		enter_transmission(c, exp);
	else if (go)
		nbd_export_put(exp);
}

static bool query_is(const char *q, uint32_t qlen, const char *s)
{
	return qlen == strlen(s) && memcmp(q, s, qlen) == 0;
}

static void meta_context_reply(struct nbd_conn *c, uint32_t id)
{
	uint8_t b[4 + sizeof(NBD_META_BASE_ALLOCATION) - 1];

	nbd_put32(b, id);
	memcpy(b + 4, NBD_META_BASE_ALLOCATION, sizeof(b) - 4);
	opt_reply(c, NBD_REP_META_CONTEXT, b, sizeof(b));
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT: we know base:allocation. */
static void opt_meta(struct nbd_conn *c, const uint8_t *data, size_t len, bool set)
{
	char name[VOLSPEC_MAX + 1] = "";
	struct nbd_meta_opt mo;
	bool match = false, readonly;
	uint64_t size;
	const char *q;
	uint32_t qlen;
	size_t pos = 0;

	if (!c->structured) {
		opt_error(c, NBD_REP_ERR_INVALID, "negotiate structured replies first");
		return;
	}
	if (nbd_decode_meta_opt(data, len, &mo) < 0) {
		opt_error(c, NBD_REP_ERR_INVALID, "malformed option data");
		return;
	}
	if (!volume_name(mo.name, mo.name_len, name) ||
	    nbd_export_probe(c->srv, name, &size, &readonly, NULL) < 0) {
		opt_error(c, NBD_REP_ERR_UNKNOWN, "no volume by that name");
		return;
	}
	if (set) {
		c->meta_alloc = false;
		snprintf(c->meta_export, sizeof(c->meta_export), "%s", name);
	}
	if (mo.nqueries == 0 && !set)
		match = true; /* LIST with no query: every context */
	while (nbd_meta_opt_next(&mo, &pos, &q, &qlen))
		if (query_is(q, qlen, NBD_META_BASE_ALLOCATION) || (!set && query_is(q, qlen, "base:")))
			match = true;
	if (match) {
		meta_context_reply(c, set ? META_CONTEXT_ID : 0);
		c->meta_alloc = c->meta_alloc || set;
	}
	opt_ack(c);
}

/* TLS on a TCP connection that has not upgraded yet, when the server requires it. */
static bool tls_missing(const struct nbd_conn *c)
{
	return c->tcp && !c->tls && nbd_tls_mode(c->srv->tls) == NBD_TLS_REQUIRE;
}

static void opt_starttls(struct nbd_conn *c, size_t len)
{
	if (len) {
		opt_error(c, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
		return;
	}
	if (!c->srv->tls) {
		opt_error(c, NBD_REP_ERR_UNSUP, "TLS is not enabled on this server");
		return;
	}
	if (c->tls) {
		opt_error(c, NBD_REP_ERR_INVALID, "TLS is already in use");
		return;
	}
	if (!c->tcp) {
		opt_error(c, NBD_REP_ERR_POLICY, "TLS is offered on TCP only: this unix socket "
			  "is protected by its file permissions");
		return;
	}
	if (c->in_end != c->in_start) {
		/* the client must wait for our ACK: bytes before it are not TLS */
		nbd_conn_close(c, "data after NBD_OPT_STARTTLS before its reply");
		return;
	}
	opt_ack(c);
	if (c->state == NBD_CS_DEAD)
		return;
	/* nothing negotiated in plain text survives the upgrade (the spec's MUST) */
	c->structured = false;
	c->meta_alloc = false;
	c->meta_export[0] = '\0';
	c->state = NBD_CS_TLS_ACK;
}

static void handle_option(struct nbd_conn *c, const uint8_t *data, size_t len)
{
	uint32_t opt = c->opt.option;

	if (tls_missing(c) && opt != NBD_OPT_STARTTLS && opt != NBD_OPT_ABORT) {
		if (opt == NBD_OPT_EXPORT_NAME) {
			LOG_RATELIMITED(LOG_WARN, NBD_LOG, "%s: NBD_OPT_EXPORT_NAME without TLS, "
					"which this server requires: closed", c->peer);
			nbd_conn_close(c, NULL);
			return;
		}
		opt_error(c, NBD_REP_ERR_TLS_REQD, "this server requires TLS (NBD_OPT_STARTTLS; "
			  "nbds:// URIs, QEMU's tls-creds)");
		return;
	}
	switch (opt) {
	case NBD_OPT_EXPORT_NAME:
		opt_export_name(c, data, len);
		break;
	case NBD_OPT_ABORT:
		opt_ack(c);
		if (c->state != NBD_CS_DEAD)
			c->state = NBD_CS_DRAIN;
		break;
	case NBD_OPT_LIST:
		opt_list(c, len);
		break;
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		opt_info(c, data, len, c->opt.option == NBD_OPT_GO);
		break;
	case NBD_OPT_STRUCTURED_REPLY:
		if (len) {
			opt_error(c, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
			break;
		}
		c->structured = true;
		opt_ack(c);
		break;
	case NBD_OPT_LIST_META_CONTEXT:
	case NBD_OPT_SET_META_CONTEXT:
		opt_meta(c, data, len, c->opt.option == NBD_OPT_SET_META_CONTEXT);
		break;
	case NBD_OPT_STARTTLS:
		opt_starttls(c, len);
		break;
	default:
		opt_error(c, NBD_REP_ERR_UNSUP, "option %u (%s) is not supported", c->opt.option,
			  nbd_opt_name(c->opt.option));
		break;
	}
}

bool nbd_hs_step(struct nbd_conn *c)
{
	const uint8_t *p = c->in + c->in_start;
	size_t avail = c->in_end - c->in_start;
	uint32_t flags;
	size_t n;

	switch (c->state) {
	case NBD_CS_CLIENT_FLAGS:
		if (avail < sizeof(struct nbd_client_flags))
			return false;
		flags = nbd_get32(p);
		c->in_start += sizeof(struct nbd_client_flags);
		if (flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
			nbd_conn_close(c, "unknown client flags (not an NBD client?)");
			return false;
		}
		c->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
		c->state = NBD_CS_OPT_HDR;
		return true;
	case NBD_CS_OPT_HDR:
		if (c->hs_out_bytes > NBD_HS_OUT_MAX) {
			c->paused = true; /* the client sends options but reads no replies */
			return false;
		}
		if (avail < sizeof(struct nbd_option_hdr))
			return false;
		if (nbd_decode_option_hdr(p, avail, &c->opt) < 0) {
			nbd_conn_close(c, "bad option magic");
			return false;
		}
		c->in_start += sizeof(struct nbd_option_hdr);
		if (c->opt.length <= NBD_MAX_OPTION_LEN) {
			c->state = NBD_CS_OPT_DATA;
		} else if (c->opt.option == NBD_OPT_EXPORT_NAME) {
			nbd_conn_close(c, "NBD_OPT_EXPORT_NAME too long");
			return false;
		} else {
			c->skip_left = c->opt.length;
			c->state = NBD_CS_OPT_SKIP;
		}
		return true;
	case NBD_CS_OPT_SKIP:
		n = avail < c->skip_left ? avail : (size_t)c->skip_left;
		c->in_start += n;
		c->skip_left -= n;
		if (c->skip_left)
			return false;
		c->state = NBD_CS_OPT_HDR;
		opt_error(c, NBD_REP_ERR_TOO_BIG, "option data longer than %u bytes",
			  NBD_MAX_OPTION_LEN);
		return c->state != NBD_CS_DEAD;
	case NBD_CS_OPT_DATA:
		if (avail < c->opt.length)
			return false;
		c->in_start += c->opt.length;
		c->state = NBD_CS_OPT_HDR;
		handle_option(c, p, c->opt.length);
		if (!c->claim_wait)
			c->claim_retry = false; /* done with it: a later option may claim */
		return c->state != NBD_CS_DEAD;
	default:
		return false;
	}
}
