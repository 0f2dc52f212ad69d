/* replication/fragscrub.c — the scrub of one striped segment's fragments (fragscrub.h;
 * docs/erasure-coding.md, "Scrub of stripes").
 *
 * A struct fragscrub has exactly one thing outstanding at a time (a peer request, an
 * engine call, or its first timer), so that fragscrub_abandon() leaves the answer to
 * that one thing to free it.
 */
#include "replication/fragscrub.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/worker.h"
#include "engine/engine.h"
#include "replication/ec.h"
#include "replication/ec_format.h"
#include "replication/encode.h"
#include "replication/fragread.h"
#include "replication/holder.h"
#include "replication/peer.h"
#include "replication/peer_proto.h"
#include "replication/replica_internal.h"
#include "replication/scrub.h"

#undef LOG_TAG
#define LOG_TAG "scrub"

enum fstep { S_VERIFY, S_READ, S_DELETE, S_PUT, S_RECHECK };

struct fragscrub {
	struct replicas *rs;           /* NULL: abandoned */
	struct scrub_report *rep;
	uint64_t uid;
	uint32_t sno;
	int64_t epoch;
	struct layout_stripe st;
	struct ec_geom g;
	struct worker_job wj;          /* the decode's, on rs->worker */
	int dec_res;                   /* its result */
	unsigned n;                    /* K + M */
	enum fstep step;
	unsigned i;                    /* the fragment at hand */
	uint32_t at, run;              /* S_READ: the run of fragment i asked */
	struct fragscrub_frag f[EC_N_MAX];
	struct fragscrub_frag re;      /* S_RECHECK: fragment i found again */
	uint8_t *data[EC_N_MAX];       /* F blocks each: read (the basis) or computed */
	uint32_t basis, have;          /* the K chosen; those read whole */
	struct holder_frag_check here; /* this node's own fragment, checked here */
	uint8_t *image;                /* the image put */
	struct loop_timer *kick;
	void (*done)(void *arg);
	void *arg;
};

static size_t frag_bytes(const struct fragscrub *fs)
{
	return (size_t)fs->g.frag_blocks * EC_BLOCK;
}

uint64_t fragscrub_bytes(const struct layout_segment *rec)
{
	struct ec_geom g;

	if (!rec->stripe.k || ec_geom_init(&g, rec->stripe.k, rec->stripe.m,
					   (uint32_t)(rec->length / EC_BLOCK)) < 0)
		return 0;
	return (uint64_t)g.frag_blocks * EC_BLOCK * (2 * g.k + g.m);
}

static void fs_free(struct fragscrub *fs)
{
	loop_timer_cancel(fs->kick);
	for (unsigned i = 0; i < EC_N_MAX; i++) {
		free(fs->f[i].crcs);
		free(fs->data[i]);
	}
	free(fs->re.crcs);
	holder_frag_check_free(&fs->here);
	free(fs->image);
	free(fs);
}

/* Whether the pass abandoned fs: then its one outstanding step just ended, and it is
 * freed here. */
static bool fs_gone(struct fragscrub *fs)
{
	if (fs->rs)
		return false;
	fs_free(fs);
	return true;
}

static const char *frag_node(const struct fragscrub *fs, unsigned i)
{
	return fs->st.frags[i];
}

static bool frag_here(const struct fragscrub *fs, unsigned i)
{
	return strcmp(frag_node(fs, i), fs->rs->self) == 0;
}

static enum scrub_kind state_kind(enum fragscrub_state s)
{
	return s == FRAGSCRUB_WRONG || s == FRAGSCRUB_PARITY ? SCRUB_KIND_PARITY
							     : SCRUB_KIND_FRAGMENT;
}

/* The fragment at hand: fs->i as first found, or found again after its repair. */
static struct fragscrub_frag *fs_frag(struct fragscrub *fs)
{
	return fs->step == S_RECHECK ? &fs->re : &fs->f[fs->i];
}

/* ---- the end: every fragment's finding into the report ---- */

static void fs_end(struct fragscrub *fs)
{
	struct scrub_report *r = fs->rep;

	r->stripes++;
	for (unsigned i = 0; i < fs->n; i++) {
		const struct fragscrub_frag *f = &fs->f[i];
		struct scrub_finding x = f->x;

		if (f->state == FRAGSCRUB_OK)
			continue;
		x.kind = state_kind(f->state);
		x.index = (int)i;
		x.sno = fs->sno;
		x.owner = frag_here(fs, i);
		snprintf(x.node, sizeof(x.node), "%s", frag_node(fs, i));
		if (f->state == FRAGSCRUB_UNCHECKED) {
			r->unchecked_frags++;
			snprintf(x.action, sizeof(x.action), "not checked: %s", f->x.action[0]
				 ? f->x.action : err_str(-f->err));
		}
		log_msg(x.nbad && x.nfixed == x.nbad ? LOG_WARN : LOG_ERROR, LOG_TAG,
			"volume %s segment %08" PRIx32 ": fragment %u on node %s: %u bad blocks "
			"(%s): %s", r->vol, fs->sno, i, x.node, x.nbad,
			x.kind == SCRUB_KIND_PARITY ? "parity" : "fragment", x.action);
		scrub_report_add(r, &x);
	}
	fs->done(fs->arg);
	fs_free(fs);
}

/* ---- verify: each fragment where it is ---- */

static void verify_next(struct fragscrub *fs);
static void basis_choose(struct fragscrub *fs);
static void repair_next(struct fragscrub *fs);
static void recheck_done(struct fragscrub *fs);

void fragscrub_verdict(struct fragscrub_frag *f, uint32_t F, uint32_t rec_crc, int res,
		       bool table_bad, uint32_t frag_crc, const uint32_t *bad, uint32_t nbad)
{
	f->err = res;
	if (res == -ENOENT) {
		f->state = FRAGSCRUB_MISSING;
		f->x.nbad = F;
		snprintf(f->x.action, sizeof(f->x.action), "gone: its holder answers it holds no "
			 "such fragment");
	} else if (res < 0) {
		f->state = FRAGSCRUB_UNCHECKED;
	} else {
		f->frag_crc = frag_crc;
		for (uint32_t k = 0; k < nbad; k++)
			scrub_finding_block(&f->x, bad[k]);
		f->state = nbad || table_bad ? FRAGSCRUB_BAD
			 : frag_crc != rec_crc ? FRAGSCRUB_WRONG : FRAGSCRUB_OK;
		if (f->state == FRAGSCRUB_BAD)
			snprintf(f->x.action, sizeof(f->x.action), "%u blocks fail the "
				 "fragment's own %s", f->x.nbad, table_bad ? "header or table"
				 : "table");
		if (f->state == FRAGSCRUB_WRONG) {
			/* a finding even if no decode compares it block by block
			 * (fragscrub_compare then counts the blocks that differ) */
			f->x.nbad = 1;
			snprintf(f->x.action, sizeof(f->x.action), "whole in itself, but not "
				 "the stripe record's fragment");
		}
	}
}

/* Fragment fs->i as found (res 0: its CRCs in fs_frag's crcs, frag_crc, bad/nbad; else
 * why not), into f[i] or, rechecking, into fs->re; then the next step. */
static void verified(struct fragscrub *fs, int res, bool table_bad, uint32_t frag_crc,
		     const uint32_t *bad, uint32_t nbad)
{
	fragscrub_verdict(fs_frag(fs), fs->g.frag_blocks, fs->st.crcs[fs->i], res, table_bad,
			  frag_crc, bad, nbad);
	if (fs->step == S_RECHECK) {
		recheck_done(fs);
		return;
	}
	if (res == 0) {
		fs->rep->frags++;
		fs->rep->bytes += frag_bytes(fs);
	}
	fs->i++;
	verify_next(fs);
}

static void remote_verified(void *arg, int res, const struct peer_hdr *h, const void *payload,
			    size_t len)
{
	struct fragscrub *fs = arg;
	struct fragscrub_frag *f;
	struct peer_seg_reply rep;
	uint32_t *bad = NULL;

	(void)h;
	if (fs_gone(fs))
		return;
	f = fs_frag(fs);
	if (res == 0 && peer_seg_reply_decode(PEER_OP_FRAG_VERIFY, payload, len, &rep) < 0)
		res = -EPROTO;
	else if (res == 0)
		res = rep.result;
	if (res == 0 && rep.length != fs->g.frag_blocks)
		res = -ENOENT; /* another fragment, of another encoding: as verify_ask's own */
	if (res == 0) {
		f->crcs = f->crcs ? f->crcs : malloc(frag_bytes(fs) / EC_BLOCK * sizeof(uint32_t));
		bad = malloc(((size_t)rep.nbad + 1) * sizeof(uint32_t));
		if (!f->crcs || !bad)
			res = -ENOMEM;
	}
	if (res == 0) {
		for (uint32_t k = 0; k < rep.length; k++)
			f->crcs[k] = peer_get32(rep.crcs + (size_t)k * sizeof(uint32_t));
		for (uint32_t k = 0; k < rep.nbad; k++)
			bad[k] = peer_seg_verify_bad(&rep, k);
	}
	verified(fs, res, res == 0 && (rep.vflags & PEER_FRAG_V_TABLE_BAD),
		 res == 0 ? rep.frag_crc : 0, bad, res == 0 ? rep.nbad : 0);
	free(bad);
}

/* This node's own fragment checked here (fs->here), as a holder checks one: its CRCs
 * taken, and its data kept as the basis read of it (not read again). */
static void local_verified(void *arg, int res)
{
	struct fragscrub *fs = arg;
	struct holder_frag_check *c = &fs->here;
	struct fragscrub_frag *f;
	uint32_t *bad = NULL, frag_crc, nbad;
	bool table_bad;

	if (fs_gone(fs))
		return;
	f = fs_frag(fs);
	if (res == 0 && c->fi.frag_blocks != fs->g.frag_blocks)
		res = -ENOENT; /* another fragment, of another encoding: as a holder's answer */
	if (res == 0) {
		free(f->crcs);
		f->crcs = c->crcs; /* (the bad ones' numbers after them) */
		c->crcs = NULL;
		bad = f->crcs + fs->g.frag_blocks;
	}
	if (res == 0 && fs->step == S_VERIFY && !fs->data[fs->i] &&
	    (fs->data[fs->i] = aligned_alloc(EC_BLOCK, frag_bytes(fs)))) {
		memcpy(fs->data[fs->i], c->image + ec_frag_data_offset(&fs->g), frag_bytes(fs));
		fs->have |= 1u << fs->i;
	}
	table_bad = c->table_bad;
	frag_crc = c->frag_crc;
	nbad = res == 0 ? c->nbad : 0;
	/* before verified(): its next step may check the next fragment into fs->here
	 * (and a refused one's CRCs were never taken) */
	holder_frag_check_free(c);
	verified(fs, res, table_bad, frag_crc, bad, nbad);
}

/* Fragment fs->i checked where it is: 0 (an answer comes) or -errno. */
static int verify_ask(struct fragscrub *fs)
{
	struct replicas *rs = fs->rs;

	if (frag_here(fs, fs->i)) {
		return holder_frag_check_async(rs->eng, fs->uid, fs->sno, fs->i, &fs->here,
					       local_verified, fs);
	} else {
		struct peer_seg_req rq = { .op = PEER_OP_FRAG_VERIFY, .sno = fs->sno,
					   .index = (uint8_t)fs->i };

		/* (a whole fragment read and checked: as long as a put may take) */
		return fragread_request(rs, frag_node(fs, fs->i), fs->uid, fs->epoch, &rq, NULL,
					ENCODE_PUT_TIMEOUT_MS, remote_verified, fs);
	}
}

static void verify_next(struct fragscrub *fs)
{
	for (; fs->i < fs->n; fs->i++) {
		int r = verify_ask(fs);

		if (r == 0)
			return;
		holder_frag_check_free(&fs->here);
		fragscrub_verdict(&fs->f[fs->i], fs->g.frag_blocks, fs->st.crcs[fs->i], r, false,
				  0, NULL, 0);
	}
	basis_choose(fs);
}

/* ---- parity consistency: K good fragments read whole, the others computed ---- */

/* Nothing can be repaired (why): each fragment found bad says so, and the end. */
static void fs_unrepaired(struct fragscrub *fs, const char *why)
{
	for (unsigned j = 0; j < fs->n; j++)
		if (fs->f[j].state != FRAGSCRUB_OK && fs->f[j].state != FRAGSCRUB_UNCHECKED)
			snprintf(fs->f[j].x.action, sizeof(fs->f[j].x.action), "not repaired: %s",
				 why);
	fs_end(fs);
}

static void read_next(struct fragscrub *fs);

/* The blocks of fragment i from `at` (in fs->data[i]) arrived: each must be what its
 * verify saw, then the next run. */
static void read_arrived(struct fragscrub *fs, int res)
{
	struct fragscrub_frag *f = &fs->f[fs->i];

	for (uint32_t k = 0; res == 0 && k < fs->run; k++)
		if (crc32c(fs->data[fs->i] + (size_t)(fs->at + k) * EC_BLOCK, EC_BLOCK) !=
		    f->crcs[fs->at + k])
			res = -EILSEQ; /* it changed since its verify */
	if (res < 0) { /* not a basis: another is chosen if K others check */
		f->state = FRAGSCRUB_UNCHECKED;
		f->err = res;
		snprintf(f->x.action, sizeof(f->x.action), "its read for the parity check failed (%s)",
			 err_str(-res));
		fs->basis &= ~(1u << fs->i);
		basis_choose(fs);
		return;
	}
	fs->rep->bytes += (uint64_t)fs->run * EC_BLOCK;
	fs->at += fs->run;
	read_next(fs);
}

static void remote_read(void *arg, int res, const struct peer_hdr *h, const void *payload,
			size_t len)
{
	struct fragscrub *fs = arg;

	(void)h;
	if (fs_gone(fs))
		return;
	read_arrived(fs, fragread_reply(res, payload, len, fs->run,
					fs->data[fs->i] + (size_t)fs->at * EC_BLOCK));
}

static void local_read(void *arg, int res)
{
	struct fragscrub *fs = arg;

	if (fs_gone(fs))
		return;
	read_arrived(fs, res < 0 ? res : 0);
}

/* The next run of the basis fragment being read; it read whole, the next one; all
 * read: the others computed and compared. */
static void read_next(struct fragscrub *fs)
{
	struct replicas *rs = fs->rs;
	int r;

	if (fs->at >= fs->g.frag_blocks) {
		fs->have |= 1u << fs->i;
		basis_choose(fs);
		return;
	}
	fs->run = fs->g.frag_blocks - fs->at;
	if (fs->run > PEER_FRAG_READ_MAX_BLOCKS)
		fs->run = PEER_FRAG_READ_MAX_BLOCKS;
	if (frag_here(fs, fs->i)) {
		r = engine_frag_read(rs->eng, fs->uid, fs->sno,
				     1 + ec_frag_table_blocks(fs->g.frag_blocks) + fs->at,
				     fs->data[fs->i] + (size_t)fs->at * EC_BLOCK, fs->run,
				     local_read, fs);
	} else {
		struct peer_seg_req rq = { .op = PEER_OP_FRAG_READ, .sno = fs->sno,
					   .block = fs->at, .nblocks = fs->run,
					   .index = (uint8_t)fs->i };

		r = fragread_request(rs, frag_node(fs, fs->i), fs->uid, fs->epoch, &rq, NULL,
				     rs->timeout_ms, remote_read, fs);
	}
	if (r < 0)
		read_arrived(fs, r);
}

void fragscrub_compare(struct fragscrub_frag *f, unsigned n, uint32_t F, uint8_t *const *data,
		       uint32_t lost)
{
	for (unsigned j = 0; j < n; j++) {
		struct fragscrub_frag *fj = &f[j];
		uint32_t ndiff = 0;

		if (!(lost & (1u << j)) ||
		    (fj->state != FRAGSCRUB_OK && fj->state != FRAGSCRUB_WRONG))
			continue;
		for (uint32_t b = 0; b < F; b++)
			if (crc32c(data[j] + (size_t)b * EC_BLOCK, EC_BLOCK) != fj->crcs[b]) {
				ndiff++;
				scrub_finding_block(&fj->x, b);
			}
		if (fj->state == FRAGSCRUB_OK && ndiff) {
			fj->state = FRAGSCRUB_PARITY;
			snprintf(fj->x.action, sizeof(fj->x.action), "%u blocks are not what the "
				 "stripe's other fragments encode to", ndiff);
		} else if (fj->state == FRAGSCRUB_WRONG) {
			fj->x.nbad = ndiff ? ndiff : 1; /* (0: only its CRC is not the record's) */
			snprintf(fj->x.action, sizeof(fj->x.action), "whole in itself, but not the "
				 "stripe record's fragment (%u blocks differ)", ndiff);
		}
	}
}

/* The others, computed from the basis, and compared (fragscrub_compare). On the
 * worker (rs->worker: the loop leaves fs alone meanwhile), with its own code
 * (fragread's are the loop's). */
static void compute_run(void *arg)
{
	struct fragscrub *fs = arg;
	uint32_t lost = ((1u << fs->n) - 1) & ~fs->basis;
	struct ec_code *code = NULL;

	fs->dec_res = ec_code_create(fs->g.k, fs->g.m, &code);
	if (fs->dec_res == 0)
		fs->dec_res = ec_decode(code, frag_bytes(fs), fs->data, lost);
	ec_code_destroy(code);
	if (fs->dec_res < 0)
		return;
	fragscrub_compare(fs->f, fs->n, fs->g.frag_blocks, fs->data, lost);
}

/* The worker computed (res: -ECANCELED, it stopped first): the repairs, on the loop. */
static void compute_done(void *arg, int res)
{
	struct fragscrub *fs = arg;

	if (fs_gone(fs))
		return;
	if (res < 0 || fs->dec_res < 0) {
		fs_unrepaired(fs, "the decode failed");
		return;
	}
	fs->i = 0;
	repair_next(fs);
}

static void compute(struct fragscrub *fs)
{
	fs->wj = (struct worker_job){ .run = compute_run, .done = compute_done, .arg = fs };
	worker_submit(fs->rs->worker, &fs->wj);
}

/* The first K fragments found good are the basis: read whole (those not yet), then
 * compute. Fewer than K: nothing can be checked against parity or repaired. */
static void basis_choose(struct fragscrub *fs)
{
	unsigned nb = 0;

	fs->step = S_READ;
	fs->basis = 0;
	for (unsigned j = 0; j < fs->n && nb < fs->g.k; j++)
		if (fs->f[j].state == FRAGSCRUB_OK) {
			fs->basis |= 1u << j;
			nb++;
		}
	if (nb < fs->g.k) {
		char why[64];

		snprintf(why, sizeof(why), "fewer than %u fragments of the stripe check", fs->g.k);
		fs_unrepaired(fs, why);
		return;
	}
	for (unsigned j = 0; j < fs->n; j++) {
		if (!fs->data[j])
			fs->data[j] = aligned_alloc(EC_BLOCK, frag_bytes(fs));
		if (!fs->data[j]) {
			fs_unrepaired(fs, "no memory");
			return;
		}
	}
	for (unsigned j = 0; j < fs->n; j++)
		if ((fs->basis & (1u << j)) && !(fs->have & (1u << j))) {
			fs->i = j;
			fs->at = 0;
			read_next(fs);
			return;
		}
	compute(fs);
}

/* ---- repair: the rebuilt image put again, then checked again ---- */

static void put_sent(void *arg, int res);

static void put_answered(void *arg, int res)
{
	struct fragscrub *fs = arg;

	if (fs_gone(fs))
		return;
	put_sent(fs, res);
}

/* The delete (fs->step S_DELETE) or the put (S_PUT) of fragment i's image. */
static int put_step(struct fragscrub *fs)
{
	struct encode_frag f = { .uid = fs->uid, .sno = fs->sno, .epoch = fs->epoch,
				 .g = &fs->g, .index = fs->i, .image = fs->image,
				 .image_bytes = ec_frag_image_bytes(&fs->g) };

	if (!frag_here(fs, fs->i)) { /* (encode_frag_send takes no node for this one) */
		f.to = replica_node_find(fs->rs, frag_node(fs, fs->i));
		if (!f.to)
			return -ENOTCONN;
	}
	return encode_frag_send(fs->rs, &f, fs->step == S_DELETE, put_answered, fs);
}

/* Fragment i's repair failed at its step (r): said, and the next one. */
static void repair_failed(struct fragscrub *fs, int r)
{
	struct fragscrub_frag *f = &fs->f[fs->i];

	snprintf(f->x.action, sizeof(f->x.action), "not repaired: its %s failed (%s)",
		 fs->step == S_DELETE ? "delete" : fs->step == S_PUT ? "put" : "check after the put",
		 err_str(-r));
	free(fs->image);
	fs->image = NULL;
	fs->i++;
	repair_next(fs);
}

static void put_sent(void *arg, int res)
{
	struct fragscrub *fs = arg;
	int r;

	if (res < 0) {
		repair_failed(fs, res);
		return;
	}
	if (fs->step == S_DELETE) {
		fs->step = S_PUT;
		r = put_step(fs);
	} else {
		free(fs->image);
		fs->image = NULL;
		fs->step = S_RECHECK;
		free(fs->re.crcs);
		fs->re = (struct fragscrub_frag){ 0 };
		r = verify_ask(fs);
	}
	if (r < 0)
		repair_failed(fs, r);
}

/* The recheck of fragment i ended (fs->re): fixed if it now checks. */
static void recheck_done(struct fragscrub *fs)
{
	struct fragscrub_frag *f = &fs->f[fs->i];
	bool here = frag_here(fs, fs->i);

	if (fs->re.state != FRAGSCRUB_OK) {
		repair_failed(fs, fs->re.err < 0 ? fs->re.err : -EILSEQ);
		return;
	}
	f->x.nfixed = f->x.nbad;
	snprintf(f->x.action, sizeof(f->x.action), "rebuilt from %u fragments that check, put "
		 "again %s (its bad image deleted first), checked again: good", fs->g.k,
		 here ? "here" : "on its holder");
	fs->i++;
	repair_next(fs);
}

/* The next fragment to repair from fs->i: its image made from the computed data (its
 * CRC must be the record's: the record names the fragment, a put of another would be
 * dropped as an orphan), then deleted and put again; none left: the end. */
static void repair_next(struct fragscrub *fs)
{
	for (; fs->i < fs->n; fs->i++) {
		struct fragscrub_frag *f = &fs->f[fs->i];
		struct ec_frag_info hi = { .geom = fs->g, .index = fs->i, .family = fs->uid,
					   .seq = fs->sno, .epoch = (uint64_t)fs->epoch };
		int r;

		if (f->state == FRAGSCRUB_OK || f->state == FRAGSCRUB_UNCHECKED || f->tried)
			continue;
		f->tried = true;
		if (crc32c(fs->data[fs->i], frag_bytes(fs)) != fs->st.crcs[fs->i]) {
			snprintf(f->x.action, sizeof(f->x.action), "not repaired: the fragment its "
				 "stripe encodes to is not the record's CRC (the encoding itself "
				 "disagrees)");
			continue;
		}
		fs->image = aligned_alloc(EC_BLOCK, ec_frag_image_bytes(&fs->g));
		if (!fs->image) {
			snprintf(f->x.action, sizeof(f->x.action), "not repaired: no memory");
			continue;
		}
		memcpy(fs->image + ec_frag_data_offset(&fs->g), fs->data[fs->i], frag_bytes(fs));
		ec_frag_seal(&hi, fs->image);
		fs->step = S_DELETE;
		r = put_step(fs);
		if (r == 0)
			return;
		repair_failed(fs, r);
		return;
	}
	fs_end(fs);
}

/* ---- start ---- */

static void kicked(void *arg)
{
	struct fragscrub *fs = arg;

	fs->kick = NULL;
	verify_next(fs);
}

int fragscrub_start(struct replicas *rs, uint64_t uid, int64_t epoch,
		    const struct layout_segment *rec, struct scrub_report *rep,
		    void (*done)(void *arg), void *arg, struct fragscrub **out)
{
	struct fragscrub *fs = calloc(1, sizeof(*fs));
	int r;

	if (!fs)
		return -ENOMEM;
	*fs = (struct fragscrub){ .rs = rs, .rep = rep, .uid = uid, .sno = rec->id.seq,
				  .epoch = epoch, .st = rec->stripe, .done = done, .arg = arg };
	r = ec_geom_init(&fs->g, rec->stripe.k, rec->stripe.m,
			 (uint32_t)(rec->length / EC_BLOCK));
	if (r == 0 && loop_timer_add(rs->loop, 0, kicked, fs, &fs->kick) < 0)
		r = -ENOMEM;
	if (r < 0) {
		fs_free(fs);
		return r;
	}
	fs->n = fs->g.k + fs->g.m;
	*out = fs;
	return 0;
}

void fragscrub_abandon(struct fragscrub *fs)
{
	if (!fs)
		return;
	fs->rs = NULL;
	if (fs->kick) /* nothing else outstanding */
		fs_free(fs);
}
