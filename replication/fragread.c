/* replication/fragread.c — a fetch's blocks from the fragments of its stripe
 * (fragread.h; docs/erasure-coding.md, "Reads from fragments").
 *
 * One struct fragread per run, in two phases: the data fragments' pieces of the run
 * (healthy: no decode), then, for what is still missing, the same rows of every
 * fragment not lost yet and a decode, range of rows by range (each at most a
 * FRAG_READ's: ec_pieces_rows_next). Each fragment asked is one request: a FRAG_READ
 * to its holder, or two reads of this node's store (the table's blocks that cover the
 * rows, and the rows) when the fragment is this node's. A healthy piece whose blocks
 * the map has CRCs for is checked against those instead of the table: the FRAG_READ
 * carries them (PEER_SEG_F_CRCS) and the holder reads no table; this node's own
 * fragment is one store read.
 */
#include "replication/fragread.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/stages.h"
#include "engine/engine.h"
#include "replication/ec.h"
#include "replication/ec_format.h"
#include "replication/peer.h"
#include "replication/peer_proto.h"
#include "replication/replica_internal.h"

_Static_assert(SEG_FETCH_MAX_BLOCKS <= PEER_FRAG_READ_MAX_BLOCKS,
	       "a run's piece of a data fragment is one FRAG_READ");

#define STRIPE_BUCKETS 4096u /* chains: a few stripes each for a large store */

struct stripe_ent {
	uint64_t uid;
	uint32_t sno, seg_blocks;
	struct layout_stripe st;
	struct stripe_ent *next;
};

/* The stripes seen and the codes made, in rs->fragcache. */
struct fragcache {
	struct stripe_ent *buckets[STRIPE_BUCKETS];
	/* each K+M made once and kept (a read in flight holds its code): 64 at most */
	struct ec_code *codes[EC_K_MAX][EC_M_MAX];
	struct fragread *live;         /* reads not orphaned (fragread_destroy_all) */
};

struct fragread {
	struct replicas *rs; /* NULL: orphaned (freed when its requests end) */
	uint64_t uid;
	uint32_t sno;
	int64_t epoch;
	struct layout_stripe st;
	struct ec_geom g;
	struct ec_code *code;
	uint32_t first, count;
	struct seg_fetch_block **want; /* count entries */
	bool degraded;                 /* the second phase */
	bool decoded;                  /* some range of its rows was (counted once a run) */
	unsigned ranges;               /* of rows asked in the second phase */
	bool asked_local;              /* some fragment read was this node's own */
	struct ec_piece need[EC_K_MAX]; /* the second phase: what each piece misses */
	unsigned nneed;
	uint32_t row, nrows;           /* the rows asked of every fragment now (≤ a FRAG_READ) */
	uint8_t *bufs[EC_N_MAX];       /* each fragment's blocks asked in this phase */
	uint32_t lost;                 /* fragments lost for this run (a mask) */
	bool saw_bad;                  /* some block read failed a CRC */
	bool no_map_crcs;              /* fragread_run's */
	unsigned pending;
	uint64_t requests;
	struct loop_timer *kick;       /* the first phase had nothing to send */
	char why[256];                 /* "fragment 0 on node2: not connected; ..." */
	void (*done)(void *arg, const char *why);
	void *arg;
	struct fragread *next_live;    /* fragcache.live */
};

/* One fragment's read: remote (a FRAG_READ) or local (table + rows). */
struct frag_req {
	struct fragread *fr;
	unsigned idx;
	uint32_t block, nblocks; /* in the fragment's data */
	uint8_t *table;          /* local: the table's blocks covering the rows */
	uint32_t table_first;    /* ... from this table block */
	unsigned parts;          /* local: reads in flight */
	int part_err;
};

/* ---- the stripes seen, the codes ---- */

static struct fragcache *cache_of(struct replicas *rs)
{
	if (!rs->fragcache)
		rs->fragcache = calloc(1, sizeof(*rs->fragcache));
	return rs->fragcache;
}

static unsigned bucket_of(uint64_t uid, uint32_t sno)
{
	return (unsigned)((uid * 0x9e3779b97f4a7c15ull) >> 40 ^ sno) % STRIPE_BUCKETS;
}

static struct stripe_ent *stripe_find(const struct fragcache *c, uint64_t uid, uint32_t sno)
{
	for (struct stripe_ent *e = c ? c->buckets[bucket_of(uid, sno)] : NULL; e; e = e->next)
		if (e->uid == uid && e->sno == sno)
			return e;
	return NULL;
}

int fragread_stripe_get(const struct replicas *rs, uint64_t uid, uint32_t sno,
			struct layout_stripe *st, uint32_t *seg_blocks)
{
	const struct stripe_ent *e = stripe_find(rs->fragcache, uid, sno);

	if (!e)
		return -ENOENT;
	*st = e->st;
	*seg_blocks = e->seg_blocks;
	return 0;
}

int fragread_stripe_put(struct replicas *rs, const struct layout_segment *seg)
{
	struct fragcache *c;
	struct stripe_ent *e;
	unsigned b;

	if (seg->state != LAYOUT_SEG_SEALED || !seg->stripe.k || !seg->length)
		return 0;
	c = cache_of(rs);
	if (!c)
		return -ENOMEM;
	e = stripe_find(c, seg->id.family, seg->id.seq);
	if (e) {
		/* only a rebuilt fragment's holder changes (CLUSTER_VOL_SEG_REFRAG); a listing
		 * older than that write puts the gone holder back, which costs a degraded
		 * read (it is not connected), never a wrong one */
		e->st = seg->stripe;
		return 0;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	b = bucket_of(seg->id.family, seg->id.seq);
	*e = (struct stripe_ent){ .uid = seg->id.family, .sno = seg->id.seq,
				  .seg_blocks = (uint32_t)(seg->length / EC_BLOCK),
				  .st = seg->stripe, .next = c->buckets[b] };
	c->buckets[b] = e;
	return 0;
}

void fragread_stripe_forget(struct replicas *rs, uint64_t uid, uint32_t sno)
{
	struct fragcache *c = rs->fragcache;

	for (struct stripe_ent **p = c ? &c->buckets[bucket_of(uid, sno)] : NULL; p && *p;
	     p = &(*p)->next)
		if ((*p)->uid == uid && (*p)->sno == sno) {
			struct stripe_ent *e = *p;

			*p = e->next;
			free(e);
			return;
		}
}

void fragread_destroy_all(struct replicas *rs)
{
	struct fragcache *c = rs->fragcache;

	if (!c)
		return;
	for (unsigned b = 0; b < STRIPE_BUCKETS; b++)
		for (struct stripe_ent *e = c->buckets[b], *next; e; e = next) {
			next = e->next;
			free(e);
		}
	while (c->live) /* their requests end later, with rs gone: none may refer to it */
		fragread_orphan(c->live);
	for (unsigned k = 0; k < EC_K_MAX; k++)
		for (unsigned m = 0; m < EC_M_MAX; m++)
			ec_code_destroy(c->codes[k][m]);
	free(c);
	rs->fragcache = NULL;
}

/* The code of K+M for this loop's reads, made at its first use and kept until
 * fragread_destroy_all (a read in flight may hold it): NULL if K or M is out of range
 * or there is no memory. (A code caches decode tables: one thread uses it. The
 * worker's jobs, rs->worker, make their own.) */
static struct ec_code *fragread_code(struct replicas *rs, unsigned k, unsigned m)
{
	struct fragcache *c = cache_of(rs);
	struct ec_code **code;

	if (!c || k < 1 || k > EC_K_MAX || m < 1 || m > EC_M_MAX)
		return NULL;
	code = &c->codes[k - 1][m - 1];
	if (!*code && ec_code_create(k, m, code) < 0)
		return NULL;
	return *code;
}

/* ---- one read ---- */

/* fr leaves fragcache.live (it ends, or is orphaned). */
static void live_unlink(struct fragread *fr)
{
	struct fragcache *c = fr->rs ? fr->rs->fragcache : NULL;

	for (struct fragread **p = c ? &c->live : NULL; p && *p; p = &(*p)->next_live)
		if (*p == fr) {
			*p = fr->next_live;
			return;
		}
}

static void fr_free(struct fragread *fr)
{
	for (unsigned i = 0; i < EC_N_MAX; i++)
		free(fr->bufs[i]);
	free(fr->want);
	free(fr);
}

static void fr_note(struct fragread *fr, unsigned idx, const char *why)
{
	size_t n = strlen(fr->why);

	snprintf(fr->why + n, sizeof(fr->why) - n, "%sfragment %u on node %s: %s", n ? "; " : "",
		 idx, fr->st.frags[idx], why);
}

/* Fragment idx is lost for this run (why: for the log). */
static void fr_lose(struct fragread *fr, unsigned idx, int r, const char *why)
{
	if (fr->lost & (1u << idx))
		return;
	fr->lost |= 1u << idx;
	if (r == -EILSEQ)
		fr->saw_bad = true;
	fr_note(fr, idx, why ? why : r == -EILSEQ ? "fails its checksum" : err_str(-r));
}

static struct seg_fetch_block *fr_want(const struct fragread *fr, uint32_t seg_block)
{
	struct seg_fetch_block *w = fr->want[seg_block - fr->first];

	return w && w->dst && w->res != 0 ? w : NULL;
}

static bool fr_missing(const struct fragread *fr)
{
	for (uint32_t b = fr->first; b < fr->first + fr->count; b++)
		if (fr_want(fr, b))
			return true;
	return false;
}

/* The blocks of data fragment idx from its row `row` (in fr->bufs[idx]) that the run
 * still misses: each checked against the map's CRC and copied. Returns how many
 * failed. */
static unsigned fr_take(struct fragread *fr, unsigned idx, uint32_t row, uint32_t nrows)
{
	unsigned bad = 0;

	for (uint32_t j = 0; j < nrows && idx < fr->g.k; j++) {
		uint64_t b = (uint64_t)idx * fr->g.frag_blocks + row + j;
		struct seg_fetch_block *w;
		const uint8_t *d = fr->bufs[idx] + (size_t)j * EC_BLOCK;

		if (b < fr->first || b >= (uint64_t)fr->first + fr->count)
			continue;
		w = fr_want(fr, (uint32_t)b);
		if (!w)
			continue;
		if (!fr->no_map_crcs && crc32c(d, EC_BLOCK) != w->crc) {
			bad++;
			continue;
		}
		memcpy(w->dst, d, EC_BLOCK);
		w->res = 0;
	}
	return bad;
}

static void fr_step(struct fragread *fr);

/* A fragment's read ended with r (0: fr->bufs[idx] holds its rows, each checked against
 * the fragment's table). */
static void fr_arrived(struct frag_req *q, int r)
{
	struct fragread *fr = q->fr;

	fr->pending--;
	if (fr->rs && !fr->rs->closing) {
		if (r < 0) {
			fr_lose(fr, q->idx, r, NULL);
		} else if (!fr->degraded && fr_take(fr, q->idx, q->block, q->nblocks)) {
			fr->saw_bad = true;
			fr_lose(fr, q->idx, -EILSEQ, "blocks fail the map's checksum");
		}
	}
	free(q->table);
	free(q);
	if (fr->pending)
		return;
	if (!fr->rs)
		fr_free(fr);
	else if (!fr->rs->closing)
		fr_step(fr);
}

static void local_part_done(void *arg, int res)
{
	struct frag_req *q = arg;
	struct fragread *fr = q->fr;

	if (res < 0 && !q->part_err)
		q->part_err = res;
	stages_mark("fragread.local_part");
	if (--q->parts)
		return;
	if (q->part_err == 0 && q->table) /* both in: every block against the table's CRC */
		q->part_err = ec_frag_run_check(q->table, q->table_first, q->block, q->nblocks,
						fr->bufs[q->idx]);
	fr_arrived(q, q->part_err);
}

/* This node's fragment: the table's blocks covering the rows and the rows, at once;
 * in the first phase with the map's CRCs the rows alone (fr_take checks each wanted
 * block against its map CRC, and the others are not used: one read, not two). */
static int ask_local(struct frag_req *q)
{
	struct fragread *fr = q->fr;
	struct engine *eng = fr->rs->eng;
	struct engine_frag_info fi;
	uint32_t table_blocks, count;
	int r = engine_frag_stat(eng, fr->uid, fr->sno, &fi);

	if (r < 0)
		return r;
	if (fi.index != q->idx || fi.frag_blocks != fr->g.frag_blocks)
		return -ENOENT; /* another fragment, of another encoding */
	table_blocks = fi.image_blocks - 1 - fi.frag_blocks;
	if (!fr->degraded && !fr->no_map_crcs) {
		q->parts = 1;
		return engine_frag_read(eng, fr->uid, fr->sno, 1 + table_blocks + q->block,
					fr->bufs[q->idx], q->nblocks, local_part_done, q);
	}
	ec_frag_table_span(q->block, q->nblocks, &q->table_first, &count);
	if (q->table_first + count > table_blocks)
		return -EIO;
	q->table = aligned_alloc(EC_BLOCK, (size_t)count * EC_BLOCK);
	if (!q->table)
		return -ENOMEM;
	q->parts = 2;
	r = engine_frag_read(eng, fr->uid, fr->sno, 1 + q->table_first, q->table, count,
			     local_part_done, q);
	if (r < 0) {
		free(q->table);
		q->table = NULL;
		return r;
	}
	r = engine_frag_read(eng, fr->uid, fr->sno, 1 + table_blocks + q->block,
			     fr->bufs[q->idx], q->nblocks, local_part_done, q);
	if (r < 0) { /* the table's read ends it, with this error */
		q->part_err = r;
		q->parts--;
	}
	return 0;
}

int fragread_reply(int res, const void *payload, size_t len, uint32_t nblocks, void *dst)
{
	struct peer_seg_reply rep = { 0 };

	if (res == 0)
		res = peer_seg_reply_decode(PEER_OP_FRAG_READ, payload, len, &rep) < 0 ? -EPROTO
										      : rep.result;
	if (res == 0 && rep.nblocks != nblocks)
		res = -EPROTO;
	if (res == 0)
		res = peer_layer_read_check(&rep);
	if (res == 0 && dst)
		memcpy(dst, rep.data, (size_t)nblocks * EC_BLOCK);
	return res;
}

static void remote_replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
			   size_t len)
{
	struct frag_req *q = arg;

	(void)h;
	stages_mark("fragread.replied");
	fr_arrived(q, fragread_reply(res, payload, len, q->nblocks,
				     q->fr->rs ? q->fr->bufs[q->idx] : NULL));
}

int fragread_request(struct replicas *rs, const char *node, uint64_t uid, int64_t epoch,
		     const struct peer_seg_req *rq, const struct iovec *data,
		     unsigned timeout_ms, peer_reply_cb cb, void *arg)
{
	struct rnode *n = replica_node_find(rs, node);
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct peer_msg m = { .op = rq->op, .volume_id = uid, .epoch = (uint64_t)epoch,
			      .head = head, .data = data, .datacnt = data ? 1 : 0 };

	if (!replica_node_live(n))
		return -ENOTCONN;
	m.head_len = peer_seg_req_encode(rq, head);
	return peer_request(n->conn, &m, timeout_ms, cb, arg);
}

/* In the first phase, when every block of data fragment q->idx's piece is wanted and
 * the map has its CRC: those CRCs into crcs (4 bytes each), true. The holder then
 * checks its blocks against them and reads no table (PEER_SEG_F_CRCS). */
static bool map_crcs(const struct frag_req *q, uint8_t *crcs)
{
	const struct fragread *fr = q->fr;

	if (fr->degraded || fr->no_map_crcs || q->idx >= fr->g.k)
		return false;
	for (uint32_t j = 0; j < q->nblocks; j++) {
		uint64_t b = (uint64_t)q->idx * fr->g.frag_blocks + q->block + j;
		const struct seg_fetch_block *w;

		if (b < fr->first || b >= (uint64_t)fr->first + fr->count)
			return false;
		w = fr_want(fr, (uint32_t)b);
		if (!w)
			return false;
		peer_put32(crcs + (size_t)j * sizeof(uint32_t), w->crc);
	}
	return true;
}

static int ask_remote(struct frag_req *q)
{
	struct fragread *fr = q->fr;
	uint8_t crcs[SEG_FETCH_MAX_BLOCKS * sizeof(uint32_t)];
	struct iovec data = { crcs, (size_t)q->nblocks * sizeof(uint32_t) };
	struct peer_seg_req rq = { .op = PEER_OP_FRAG_READ, .sno = fr->sno, .block = q->block,
				   .nblocks = q->nblocks, .index = (uint8_t)q->idx };
	bool with_crcs = q->nblocks <= SEG_FETCH_MAX_BLOCKS && map_crcs(q, crcs);

	rq.flags = with_crcs ? PEER_SEG_F_CRCS : 0;
	return fragread_request(fr->rs, fr->st.frags[q->idx], fr->uid, fr->epoch, &rq,
				with_crcs ? &data : NULL, fr->rs->timeout_ms, remote_replied, q);
}

/* Asks fragment idx for nblocks from `block` into fr->bufs[idx] (allocated here):
 * 0 (fr_arrived runs) or the fragment is lost. */
static void fr_ask(struct fragread *fr, unsigned idx, uint32_t block, uint32_t nblocks)
{
	struct frag_req *q = calloc(1, sizeof(*q));
	bool local = strcmp(fr->st.frags[idx], fr->rs->self) == 0;
	int r = -ENOMEM;

	free(fr->bufs[idx]);
	fr->bufs[idx] = aligned_alloc(EC_BLOCK, (size_t)nblocks * EC_BLOCK);
	if (q && fr->bufs[idx]) {
		*q = (struct frag_req){ .fr = fr, .idx = idx, .block = block, .nblocks = nblocks };
		r = local ? ask_local(q) : ask_remote(q);
		fr->asked_local |= local && r == 0;
	}
	if (r == 0) {
		stages_mark("fragread.asked");
		fr->pending++;
		fr->requests++;
		return;
	}
	free(q);
	fr_lose(fr, idx, r, r == -ENOTCONN ? "not connected" : NULL);
}

/* The first phase: each data fragment's piece of the run that still misses blocks. */
static void fr_healthy(struct fragread *fr)
{
	struct ec_piece p[EC_K_MAX];
	int n = ec_geom_run(&fr->g, fr->first, fr->count, p);

	for (int i = 0; i < n; i++) {
		bool need = false;

		for (uint32_t b = p[i].seg_block; b < p[i].seg_block + p[i].nblocks && !need; b++)
			need = fr_want(fr, b) != NULL;
		if (need)
			fr_ask(fr, p[i].frag, p[i].frag_block, p[i].nblocks);
	}
}

/* The second phase begins: the part of each piece that still misses blocks (its rows
 * are then read range by range, fr_rows_ask). */
static void fr_degrade(struct fragread *fr)
{
	struct ec_piece p[EC_K_MAX];
	int n = ec_geom_run(&fr->g, fr->first, fr->count, p);

	for (int i = 0; i < n; i++) {
		uint32_t lo = UINT32_MAX, hi = 0;

		for (uint32_t b = p[i].seg_block; b < p[i].seg_block + p[i].nblocks; b++)
			if (fr_want(fr, b)) {
				lo = lo < b ? lo : b;
				hi = b + 1;
			}
		if (hi)
			fr->need[fr->nneed++] = (struct ec_piece){
				.frag = p[i].frag, .seg_block = lo, .nblocks = hi - lo,
				.frag_block = p[i].frag_block + (lo - p[i].seg_block) };
	}
	fr->degraded = true;
	fr->row = fr->nrows = 0;
}

/* The next range of rows the missing blocks need (at most a FRAG_READ's: a run across
 * a fragment's end needs rows at both ends of the fragments, and a fragment of more
 * than PEER_FRAG_READ_MAX_BLOCKS rows cannot be asked for between them), asked of
 * every fragment not lost: false when no range is left. */
static bool fr_rows_ask(struct fragread *fr)
{
	if (!ec_pieces_rows_next(fr->need, fr->nneed, fr->row + fr->nrows,
				 PEER_FRAG_READ_MAX_BLOCKS, &fr->row, &fr->nrows))
		return false;
	fr->ranges++;
	for (unsigned i = 0; i < fr->g.k + fr->g.m; i++)
		if (!(fr->lost & (1u << i)))
			fr_ask(fr, i, fr->row, fr->nrows);
	return true;
}

/* Every wanted block still missing ends with this error. */
static void fr_fail_missing(struct fragread *fr)
{
	for (uint32_t b = fr->first; b < fr->first + fr->count; b++) {
		struct seg_fetch_block *w = fr_want(fr, b);

		if (w)
			w->res = fr->saw_bad ? -EILSEQ : -EIO;
	}
}

static void fr_count(struct fragread_status *c, const struct fragread *fr, bool missing)
{
	c->runs++;
	c->requests += fr->requests;
	c->degraded += fr->degraded;
	c->decodes += fr->decoded;
	c->split += fr->ranges > 1;
	c->failed += missing;
}

static void fr_end(struct fragread *fr)
{
	struct family *fam = replica_family_find(fr->rs, fr->uid);
	bool missing = fr_missing(fr);

	if (missing)
		fr_fail_missing(fr);
	if (fam)
		fr_count(&fam->frag, fr, missing);
	fr_count(&fr->rs->frag_total, fr, missing);
	live_unlink(fr);
	stages_mark(fr->asked_local ? "fragread.end_local" : "fragread.end_remote");
	fr->done(fr->arg, fr->why);
	fr_free(fr);
}

/* The decode of the rows read: every lost fragment rebuilt, the missing blocks taken.
 * false: no decode (more than M lost, or no memory), the read ends. */
static bool fr_decode(struct fragread *fr)
{
	unsigned lost = (unsigned)__builtin_popcount(fr->lost);
	unsigned bad;

	if (lost > fr->g.m) {
		char n[64];

		snprintf(n, sizeof(n), "; %u fragments lost, %u can be", lost, fr->g.m);
		strncat(fr->why, n, sizeof(fr->why) - strlen(fr->why) - 1);
		return false;
	}
	for (unsigned i = 0; i < fr->g.k + fr->g.m; i++)
		if (fr->lost & (1u << i)) { /* (a first phase's piece is of another size) */
			free(fr->bufs[i]);
			fr->bufs[i] = aligned_alloc(EC_BLOCK, (size_t)fr->nrows * EC_BLOCK);
			if (!fr->bufs[i])
				return false;
		}
	if (ec_decode(fr->code, (size_t)fr->nrows * EC_BLOCK, fr->bufs, fr->lost) < 0)
		return false;
	fr->decoded = true;
	bad = 0;
	for (unsigned i = 0; i < fr->g.k; i++)
		bad += fr_take(fr, i, fr->row, fr->nrows);
	if (bad) { /* a survivor bad in a way its own table did not catch */
		fr->saw_bad = true;
		strncat(fr->why, "; decoded blocks fail the map's checksum",
			sizeof(fr->why) - strlen(fr->why) - 1);
	}
	return true;
}

/* A phase, or a range of rows of the second, ended (no request in flight): the range's
 * decode, then the next range, or the end. */
static void fr_step(struct fragread *fr)
{
	bool go = fr_missing(fr);

	if (go && !fr->degraded)
		fr_degrade(fr);
	else if (go)
		go = fr_decode(fr); /* the range just read */
	while (go && fr_missing(fr) && fr_rows_ask(fr)) {
		if (fr->pending)
			return;
		go = fr_decode(fr); /* (every fragment was lost at once: fails) */
	}
	fr_end(fr);
}

static void fr_kicked(void *arg)
{
	struct fragread *fr = arg;

	fr->kick = NULL;
	fr_step(fr);
}

int fragread_start(struct replicas *rs, const struct fragread_run *run,
		   void (*done)(void *arg, const char *why), void *arg, struct fragread **out)
{
	struct fragread *fr = calloc(1, sizeof(*fr));
	uint32_t first = run->first, count = run->count;
	int r = -ENOMEM;

	if (!fr)
		return -ENOMEM;
	*fr = (struct fragread){ .rs = rs, .uid = run->uid, .sno = run->sno,
				 .epoch = run->epoch, .st = *run->st, .first = first,
				 .count = count, .no_map_crcs = run->no_map_crcs, .done = done,
				 .arg = arg };
	if (ec_geom_init(&fr->g, run->st->k, run->st->m, run->seg_blocks) < 0 || count == 0 ||
	    count > SEG_FETCH_MAX_BLOCKS || first >= run->seg_blocks ||
	    count > run->seg_blocks - first) {
		r = -EINVAL;
		goto err_free;
	}
	fr->code = fragread_code(rs, run->st->k, run->st->m);
	fr->want = malloc(count * sizeof(fr->want[0]));
	if (!fr->code || !fr->want)
		goto err_free;
	memcpy(fr->want, run->want, count * sizeof(fr->want[0]));
	fr_healthy(fr);
	if (!fr->pending && loop_timer_add(rs->loop, 0, fr_kicked, fr, &fr->kick) < 0)
		goto err_free; /* (nothing was sent: no request refers to it) */
	fr->next_live = rs->fragcache->live; /* (fragread_code made the cache) */
	rs->fragcache->live = fr;
	*out = fr;
	return 0;

err_free:
	fr_free(fr);
	return r;
}

void fragread_orphan(struct fragread *fr)
{
	if (!fr)
		return;
	loop_timer_cancel(fr->kick);
	fr->kick = NULL;
	live_unlink(fr);
	fr->rs = NULL;
	if (!fr->pending)
		fr_free(fr);
}
