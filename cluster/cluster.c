/* cluster/cluster.c — membership: join under a lease, keepalives, the map (cluster.h).
 *
 * Two threads, each with its own etcd connection (etcd.h calls block):
 *  - the session thread: joins (checks that every live node's versions match, takes
 *    a lease, registers alive/ID under it if no one holds that id), sends keepalives
 *    every third of the TTL and moves the lease deadline on each one granted, runs
 *    the operator's node out/in, and revokes the lease when the node stops;
 *  - the watch thread: loads the map with a range of the prefix, then watches it from
 *    the next revision; a compacted or broken watch reloads.
 * The loop learns of news through an eventfd (cl->efd); everything the threads share
 * with it is under cl->mu, but the deadline, which is an atomic.
 */
#include "cluster/cluster.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "cluster/etcd.h"
#include "cluster/lease.h"
#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"

#define LOG_TAG "cluster"
#define KEY_MAX (LAYOUT_PREFIX_MAX + 32 + LAYOUT_ID_MAX)
#define MSG_MAX 256

struct cmd {
	struct cmd *next;
	char id[LAYOUT_ID_MAX + 1];
	bool out;
	struct cluster_vol_req *vreq; /* a volume call, else a node mark */
	bool solo;                    /* a copy step a batch left to run alone */
	cluster_cb cb;
	void *arg;
	int res;
	char msg[MSG_MAX];
};

struct entry {
	struct cluster_node n;
	bool member;
	bool warned; /* its incompatibility was logged */
};

/* A claim this node made (under its current lease). */
struct claim {
	char name[LAYOUT_ID_MAX + 1];
	int64_t epoch;
	int64_t since;  /* the first epoch of this node's unbroken ownership (below) */
	struct layout_claim prev; /* the claim this one replaced (as the claim txn read it) */
};

/* A growable array of n elements of size sz: a new zeroed slot, or NULL. */
static void *grow(void **arr, size_t *n, size_t *cap, size_t sz)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 8;
		void *a = realloc(*arr, c * sz);

		if (!a)
			return NULL;
		*arr = a;
		*cap = c;
	}
	memset((char *)*arr + *n * sz, 0, sz);
	return (char *)*arr + (*n)++ * sz;
}

struct cluster {
	struct loop *lp;
	int efd;
	struct loop_watch *efd_watch;
	char prefix[LAYOUT_PREFIX_MAX + 1];
	char prefix_end[LAYOUT_PREFIX_MAX + 1];
	struct layout_node self;
	unsigned ttl_s;
	void (*on_change)(void *arg);
	void (*on_fatal)(void *arg, const char *why);
	void *arg;
	struct etcd *sess, *watch;
	struct clvol_segcache *segcache; /* the session thread's (clvol_who) */
	pthread_t sess_thread, watch_thread;
	bool sess_started, watch_started;
	atomic_uint_fast64_t deadline_ms;
	atomic_uint_fast64_t claims_gen; /* moves whenever a claim of this node goes */
	atomic_uint_fast64_t segments_gen; /* moves when the watch sees segments/ change */
	atomic_uint_fast64_t map_gen;  /* moves with news of the map (not segment records)
					  or a reload: cluster_map_gen() */
	atomic_bool reclaimed;           /* the first join took this node's volumes again */

	pthread_mutex_t mu;
	pthread_cond_t cond;
	/* under mu */
	bool stopping;
	struct cmd *queue, *done;
	char fatal[MSG_MAX];
	bool fatal_pending;
	struct cluster_info info;
	struct entry *map;
	size_t nmap, capmap;
	struct cluster_volume *vols; /* the map's volumes */
	size_t nvols, capvols;
	struct claim *claims;        /* this node's */
	size_t nclaims, capclaims;
	struct claim *lapsed;        /* claims that went with a lease, until claimed again */
	size_t nlapsed, caplapsed;
	struct layout_space space;   /* this node's, as the loop last sampled it */
	bool space_sampled;

	/* the session thread's own */
	int64_t lease_id;
	bool joined_once;
	bool waiting_logged;
	bool outage_logged;
	bool join_failure_logged;
	bool lapse_seen;   /* a fenced call found a claim lapsed: ask etcd about the lease now */
	unsigned call_timeout_ms; /* of the session's calls while a lease is held */
	struct layout_space space_put; /* what space/ID holds, under space_lease */
	int64_t space_lease;      /* 0: nothing published under the current lease */
	uint64_t space_next;      /* no put before (monotonic ms) */
};

/* ---- shared state ---- */

static void notify(struct cluster *cl)
{
	uint64_t one = 1;

	if (write(cl->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		LOG_RATELIMITED(LOG_ERROR, LOG_TAG, "eventfd: %s", err_str(errno));
}

static bool stopping(struct cluster *cl)
{
	bool s;

	pthread_mutex_lock(&cl->mu);
	s = cl->stopping;
	pthread_mutex_unlock(&cl->mu);
	return s;
}

/* Sleeps until the monotonic time `until` (ms), a command, or the stop. */
static void wait_until(struct cluster *cl, uint64_t until, bool wake_for_commands)
{
	uint64_t now = loop_now_ms();
	struct timespec ts;

	if (until <= now)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)((until - now) / 1000);
	ts.tv_nsec += (long)((until - now) % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&cl->mu);
	while (!cl->stopping && !(wake_for_commands && cl->queue)) {
		if (pthread_cond_timedwait(&cl->cond, &cl->mu, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&cl->mu);
}

__attribute__((format(printf, 2, 3)))
static void set_state(struct cluster *cl, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&cl->mu);
	va_start(ap, fmt);
	vsnprintf(cl->info.state, sizeof(cl->info.state), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&cl->mu);
}

/* What the last call to etcd said: answered, or why not. */
static void set_etcd(struct cluster *cl, struct etcd *e, int r)
{
	pthread_mutex_lock(&cl->mu);
	cl->info.etcd_ok = r >= 0 || (r != -ECONNREFUSED && r != -ETIMEDOUT);
	snprintf(cl->info.etcd_error, sizeof(cl->info.etcd_error), "%s",
		 r < 0 ? etcd_last_error(e) : "");
	snprintf(cl->info.endpoint, sizeof(cl->info.endpoint), "%s", etcd_endpoint(e));
	pthread_mutex_unlock(&cl->mu);
}

static void set_fatal(struct cluster *cl, const char *why)
{
	pthread_mutex_lock(&cl->mu);
	snprintf(cl->fatal, sizeof(cl->fatal), "%s", why);
	snprintf(cl->info.state, sizeof(cl->info.state), "refused: %s", why);
	cl->fatal_pending = true;
	pthread_mutex_unlock(&cl->mu);
	notify(cl);
}

/* ---- the map ---- */

static struct entry *map_find(struct cluster *cl, const char *id, bool add)
{
	struct entry *e;

	for (size_t i = 0; i < cl->nmap; i++)
		if (strcmp(cl->map[i].n.rec.id, id) == 0)
			return &cl->map[i];
	if (!add)
		return NULL;
	e = grow((void **)&cl->map, &cl->nmap, &cl->capmap, sizeof(*e));
	if (!e)
		return NULL;
	snprintf(e->n.rec.id, sizeof(e->n.rec.id), "%s", id);
	e->n.self = strcmp(id, cl->self.id) == 0;
	e->n.compatible = true;
	return e;
}

static void map_drop_unused(struct cluster *cl, struct entry *e)
{
	if (e->member || e->n.up || e->n.out || e->n.has_space)
		return;
	*e = cl->map[--cl->nmap];
}

static void map_set_record(struct cluster *cl, struct entry *e, const struct layout_node *rec,
			   bool log_changes)
{
	e->n.rec = *rec;
	e->n.compatible = layout_compatible(rec, &cl->self);
	if (!e->n.compatible && !e->warned && log_changes) {
		log_msg(LOG_ERROR, LOG_TAG, "node %s writes format %u and speaks protocol %u; this "
			"node: format %u, protocol %u: incompatible, it is ignored", rec->id,
			rec->format_version, rec->protocol_version, cl->self.format_version,
			cl->self.protocol_version);
		e->warned = true;
	}
}

static struct cluster_volume *vol_find(struct cluster *cl, const char *name, bool add)
{
	struct cluster_volume *v;

	for (size_t i = 0; i < cl->nvols; i++)
		if (strcmp(cl->vols[i].rec.name, name) == 0)
			return &cl->vols[i];
	if (!add)
		return NULL;
	v = grow((void **)&cl->vols, &cl->nvols, &cl->capvols, sizeof(*v));
	if (v)
		snprintf(v->rec.name, sizeof(v->rec.name), "%s", name);
	return v;
}

/* Under cl->mu: this node's claim on name, or NULL. */
static struct claim *claim_find(struct cluster *cl, const char *name)
{
	for (size_t i = 0; i < cl->nclaims; i++)
		if (strcmp(cl->claims[i].name, name) == 0)
			return &cl->claims[i];
	return NULL;
}

/* Under cl->mu: forgets claim c; the loop learns it from claims_gen (and the
 * notify that the caller's news brings). */
static void claim_forget(struct cluster *cl, struct claim *c)
{
	*c = cl->claims[--cl->nclaims];
	atomic_fetch_add(&cl->claims_gen, 1);
}

/* Under cl->mu: a watch event shows name's claim as now. A claim of this node at a
 * lower epoch is gone (another node claimed since, or this node again after a lease
 * that lapsed): forgotten at once, so that the loop stops serving the volume even
 * before a keepalive tells. A claim at a lower epoch than ours is an older event: it
 * says nothing. (A deleted claim key says nothing either: a late event of an old
 * claim's deletion must not undo the new one; the lease and release cover those.) */
static void claims_check_map(struct cluster *cl, const char *name, const struct layout_claim *now)
{
	struct claim *c = claim_find(cl, name);

	if (!c || now->epoch <= c->epoch)
		return; /* not ours, ours as we know it, or an older event */
	log_msg(LOG_WARN, LOG_TAG, "volume %s: the map shows node %s owning it at epoch "
		"%lld: this node's claim at epoch %lld is gone", name, now->node,
		(long long)now->epoch, (long long)c->epoch);
	claim_forget(cl, c);
}

/* A volumes/ or owners/ key. A claim without a record (seen first) keeps an entry
 * whose record is empty until the record arrives. */
static void vols_apply(struct cluster *cl, enum layout_kind kind, const char *name,
		       const struct etcd_kv *kv, bool put)
{
	struct cluster_volume *v = vol_find(cl, name, put);
	struct layout_volume rec;
	struct layout_claim claim;

	if (!v)
		return;
	if (kind == LAYOUT_VOLUME && !put) {
		*v = cl->vols[--cl->nvols];
		return;
	}
	if (kind == LAYOUT_VOLUME && layout_volume_decode(kv->value, kv->value_len, &rec) == 0) {
		v->rec = rec;
	} else if (kind == LAYOUT_OWNER && !put) {
		v->claimed = false;
	} else if (kind == LAYOUT_OWNER && layout_claim_decode(kv->value, kv->value_len, &claim) == 0) {
		v->claimed = true, v->claim = claim;
		claims_check_map(cl, name, &claim);
	} else
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "cluster map: %s does not decode: skipped", kv->key);
}

/* A node key's value decodes as its kind says. */
static int node_value_decode(enum layout_kind kind, const struct etcd_kv *kv,
			     struct layout_node *rec, int64_t *since, struct layout_space *sp)
{
	if (kind == LAYOUT_OUT)
		return layout_out_decode(kv->value, kv->value_len, since);
	if (kind == LAYOUT_SPACE)
		return layout_space_decode(kv->value, kv->value_len, sp);
	return layout_node_decode(kv->value, kv->value_len, rec);
}

/* Is kv a segment record (segments/...)? Not the map's: its change is a hint for the
 * segment listings (segments_gen), not news of the map (map_gen). */
static bool segment_key(const struct cluster *cl, const struct etcd_kv *kv)
{
	size_t plen = strlen(cl->prefix);

	return kv->key_len > plen + 9 && memcmp(kv->key + plen, "segments/", 9) == 0;
}

/* One key's new value (PUT) or removal; log_changes: a watch event, not a reload.
 * Returns whether the loop should hear of it: a node's space is only shown. */
static bool map_apply(struct cluster *cl, const struct etcd_kv *kv, bool put, bool log_changes)
{
	enum layout_kind kind;
	char id[LAYOUT_ID_MAX + 1];
	struct layout_node rec;
	struct layout_space sp;
	struct entry *e;
	int64_t since;

	if (layout_key_parse(cl->prefix, kv->key, kv->key_len, &kind, id) < 0) {
		if (segment_key(cl, kv)) /* segments/, ...: not the map's */
			atomic_fetch_add(&cl->segments_gen, 1);
		return true;
	}
	if (kind == LAYOUT_VOLUME || kind == LAYOUT_OWNER) {
		vols_apply(cl, kind, id, kv, put);
		return true;
	}
	if (put && node_value_decode(kind, kv, &rec, &since, &sp) < 0) {
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "cluster map: %s does not decode: skipped", kv->key);
		return kind != LAYOUT_SPACE;
	}
	e = map_find(cl, id, put);
	if (!e)
		return kind != LAYOUT_SPACE;
	switch (kind) {
	case LAYOUT_MEMBER:
		e->member = put;
		if (put && !e->n.up)
			map_set_record(cl, e, &rec, log_changes);
		break;
	case LAYOUT_ALIVE:
		if (log_changes && put != e->n.up)
			log_msg(put ? LOG_INFO : LOG_WARN, LOG_TAG, "node %s is %s", id,
				put ? "up" : "down (its lease is gone)");
		e->n.up = put;
		if (put)
			map_set_record(cl, e, &rec, log_changes);
		else
			e->warned = false;
		break;
	case LAYOUT_VOLUME:
	case LAYOUT_OWNER:
		break;
	case LAYOUT_OUT:
		if (log_changes && put != e->n.out)
			log_msg(LOG_INFO, LOG_TAG, "node %s is marked %s", id, put ? "out" : "in");
		e->n.out = put;
		break;
	case LAYOUT_SPACE:
		e->n.has_space = put;
		e->n.space = put ? sp : (struct layout_space){ 0 };
		break;
	}
	if (!put)
		map_drop_unused(cl, e);
	return kind != LAYOUT_SPACE;
}

/* ---- volumes: this node's claims, and the calls (cluster/volume.h) ---- */

/* Under cl->mu: the unbroken ownership a claim at epoch continues. Epochs rise by one
 * per claim, so a claim at E + 1 right after this node's claim at E lapsed with its
 * lease proves that no other node claimed (nor wrote) in between: the volume never
 * left this node, and what its clients have in flight stays good. Anything else
 * starts anew. */
static int64_t claim_since(struct cluster *cl, const char *name, int64_t epoch)
{
	int64_t since = epoch;

	for (size_t i = 0; i < cl->nlapsed; i++) {
		if (strcmp(cl->lapsed[i].name, name) != 0)
			continue;
		if (cl->lapsed[i].epoch + 1 == epoch)
			since = cl->lapsed[i].since;
		cl->lapsed[i] = cl->lapsed[--cl->nlapsed];
		break;
	}
	return since;
}

static void claim_set(struct cluster *cl, const char *name, int64_t epoch,
		      const struct layout_claim *prev)
{
	struct claim *c;

	pthread_mutex_lock(&cl->mu);
	c = claim_find(cl, name);
	if (!c)
		c = grow((void **)&cl->claims, &cl->nclaims, &cl->capclaims, sizeof(*c));
	if (c) {
		snprintf(c->name, sizeof(c->name), "%s", name);
		c->since = claim_since(cl, name, epoch);
		c->epoch = epoch;
		c->prev = *prev;
	}
	pthread_mutex_unlock(&cl->mu);
}

/* The claim on name goes, if its epoch is at most upto: a fenced call under an older
 * epoch refused late (ESTALE) says nothing of a claim this node took again since. */
static void claim_drop(struct cluster *cl, const char *name, int64_t upto)
{
	struct claim *c;

	pthread_mutex_lock(&cl->mu);
	c = claim_find(cl, name);
	if (c && c->epoch <= upto)
		claim_forget(cl, c);
	pthread_mutex_unlock(&cl->mu);
}

/* Under cl->mu: claim c went with the lease: kept among the lapsed, so that a claim
 * taken again at the next epoch continues it (claim_since) and the guard holds its
 * clients' answers until the join decides. */
static void claim_lapse(struct cluster *cl, struct claim *c)
{
	struct claim *l = grow((void **)&cl->lapsed, &cl->nlapsed, &cl->caplapsed, sizeof(*l));

	if (l)
		*l = *c;
	claim_forget(cl, c);
}

/* Under cl->mu: what made client I/O wait last, for cluster status (cluster_info). */
static void last_wait_set(struct cluster *cl, bool append, const char *fmt, ...)
{
	size_t used = append ? strlen(cl->info.last_wait) : 0;
	va_list ap;

	if (!append) {
		time_t t = time(NULL);
		struct tm tm;

		gmtime_r(&t, &tm);
		used = strftime(cl->info.last_wait, sizeof(cl->info.last_wait), "%H:%M:%SZ ", &tm);
	}
	va_start(ap, fmt);
	vsnprintf(cl->info.last_wait + used, sizeof(cl->info.last_wait) - used, fmt, ap);
	va_end(ap);
}

/* A fenced call under epoch found name's claim lapsed with the lease, nobody's since
 * (-ENOLCK): etcd expired the lease before this node heard (it was stalled, or its
 * keepalives late). The claim waits for the join, as if the keepalive had told. False:
 * this node held no such claim (it released it): the call is simply stale. */
static bool claim_lapsed(struct cluster *cl, const char *name, int64_t epoch)
{
	struct claim *c;
	bool lapsed = false;

	pthread_mutex_lock(&cl->mu);
	c = claim_find(cl, name);
	for (size_t i = 0; i < cl->nlapsed && !lapsed; i++)
		lapsed = strcmp(cl->lapsed[i].name, name) == 0 && cl->lapsed[i].epoch == epoch;
	if (c && c->epoch == epoch) {
		lapsed = true;
		log_msg(LOG_WARN, LOG_TAG, "volume %s: this node's claim at epoch %lld lapsed with "
			"its lease (no other node claimed it): its clients wait for the next join",
			name, (long long)c->epoch);
		last_wait_set(cl, false, "volume %s: its claim lapsed with the lease (etcd did "
			      "not hear from this node for its TTL)", name);
		claim_lapse(cl, c);
	}
	pthread_mutex_unlock(&cl->mu);
	if (lapsed)
		cl->lapse_seen = true; /* the session thread asks about the lease at once */
	return lapsed;
}

/* The lease is gone, and every claim under it. */
static void claims_lost(struct cluster *cl, int64_t lease_id)
{
	pthread_mutex_lock(&cl->mu);
	for (size_t i = 0; i < cl->nclaims; i++)
		log_msg(LOG_WARN, LOG_TAG, "volume %s: no longer owned by this node (its claim at "
			"epoch %lld went with the lease)", cl->claims[i].name,
			(long long)cl->claims[i].epoch);
	if (cl->nclaims || !cl->nlapsed)
		last_wait_set(cl, false, "lease %llx lapsed (etcd did not hear from this node "
			      "for its TTL)", (unsigned long long)lease_id);
	while (cl->nclaims)
		claim_lapse(cl, &cl->claims[cl->nclaims - 1]);
	atomic_fetch_add(&cl->claims_gen, 1);
	pthread_mutex_unlock(&cl->mu);
	notify(cl); /* the loop fences what it serves of them */
}

static bool owned(const struct cluster *cl, const char *name, int64_t *epoch, int64_t *since)
{
	struct cluster *c = (struct cluster *)cl; /* the mutex, only */
	const struct claim *m;

	pthread_mutex_lock(&c->mu);
	m = claim_find(c, name);
	if (m && epoch)
		*epoch = m->epoch;
	if (m && since)
		*since = m->since;
	pthread_mutex_unlock(&c->mu);
	return m != NULL;
}

bool cluster_volume_owned(const struct cluster *cl, const char *name, int64_t *epoch)
{
	return owned(cl, name, epoch, NULL);
}

bool cluster_volume_owned_since(const struct cluster *cl, const char *name, int64_t *since)
{
	return owned(cl, name, NULL, since);
}

bool cluster_volume_replaced(const struct cluster *cl, const char *name,
			     struct layout_claim *prev)
{
	struct cluster *c = (struct cluster *)cl; /* the mutex, only */
	const struct claim *m;

	pthread_mutex_lock(&c->mu);
	m = claim_find(c, name);
	if (m)
		*prev = m->prev;
	pthread_mutex_unlock(&c->mu);
	return m != NULL;
}

bool cluster_volume_lapsed(const struct cluster *cl, const char *name)
{
	struct cluster *c = (struct cluster *)cl; /* the mutex, only */
	bool found = false;

	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < cl->nlapsed && !found; i++)
		found = !name || strcmp(cl->lapsed[i].name, name) == 0;
	pthread_mutex_unlock(&c->mu);
	return found;
}

/* Does this node hold name under a claim newer than epoch that continues, unbroken,
 * its ownership at epoch (claim_since)? A call fenced at epoch was then refused only
 * for its old epoch (made before the claim again, run after it): asked again under the
 * new one it does what it would have done. */
static bool unbroken_since(struct cluster *cl, const char *name, int64_t epoch)
{
	int64_t now = 0, since = 0;
	bool held = owned(cl, name, &now, &since);

	return held && epoch && since <= epoch && epoch < now;
}

static void volume_answered(struct cluster *cl, struct cmd *c, int64_t epoch);

static void run_volume(struct cluster *cl, struct cmd *c)
{
	struct cluster_vol_req *q = c->vreq;
	struct clvol_who w = { cl->prefix, cl->self.id, cl->lease_id, cl->segcache };
	const char *name = q->vol.name;
	char *msg = c->msg;
	size_t len = sizeof(c->msg);
	int64_t epoch = q->epoch;

	if (!cl->lease_id) {
		c->res = -EAGAIN;
		snprintf(msg, len, "this node holds no lease yet (%.160s): try again", cl->info.state);
		return;
	}
	if (!epoch)
		cluster_volume_owned(cl, name, &epoch);
	switch (q->op) {
	case CLUSTER_VOL_CREATE:
		c->res = clvol_create(cl->sess, &w, &q->vol, &q->resumed, msg, len);
		q->epoch = q->vol.epoch;
		/* its layers are made here, now (a resumed create: never served elsewhere) */
		snprintf(q->prev.node, sizeof(q->prev.node), "%s", cl->self.id);
		q->prev.epoch = q->epoch;
		break;
	case CLUSTER_VOL_READY:
		c->res = clvol_ready(cl->sess, &w, name, epoch, msg, len);
		break;
	case CLUSTER_VOL_BASE_DROP:
		c->res = clvol_base_drop(cl->sess, &w, name, epoch, msg, len);
		break;
	case CLUSTER_VOL_CLAIM:
		c->res = clvol_claim(cl->sess, &w, name, &q->epoch, &q->prev, msg, len);
		break;
	case CLUSTER_VOL_RELEASE:
		c->res = clvol_release(cl->sess, &w, name, epoch, msg, len);
		break;
	case CLUSTER_VOL_REMOVE:
		c->res = clvol_remove(cl->sess, &w, name, epoch, msg, len);
		break;
	case CLUSTER_VOL_SEG_OPEN:
		c->res = clvol_segment_open(cl->sess, &w, name, epoch, &q->seg, msg, len);
		break;
	case CLUSTER_VOL_SEG_SEAL:
		c->res = clvol_segment_seal(cl->sess, &w, name, epoch, &q->seg.id, q->seg.length,
					    msg, len);
		break;
	case CLUSTER_VOL_SEG_HOLDERS:
		c->res = clvol_segment_holders(cl->sess, &w, name, epoch, &q->seg, msg, len);
		break;
	case CLUSTER_VOL_SEG_COPY:
		c->res = clvol_segment_copy(cl->sess, &w, name, epoch, &q->seg.id, q->copy_node,
					    q->copy_phase, &q->copy_gone, msg, len);
		break;
	case CLUSTER_VOL_SEG_STRIPE:
		c->res = clvol_segment_stripe(cl->sess, &w, name, epoch, &q->seg,
					      q->drop_replicas, msg, len);
		break;
	case CLUSTER_VOL_SEG_REFRAG:
		c->res = clvol_segment_refrag(cl->sess, &w, name, epoch, &q->seg.id,
					      q->frag_index, q->frag_from, q->copy_node, msg, len);
		break;
	case CLUSTER_VOL_SEG_DELETE:
		c->res = clvol_segment_delete(cl->sess, &w, name, epoch, &q->seg.id, msg, len);
		break;
	case CLUSTER_VOL_SEG_LIST:
		c->res = clvol_segment_list(cl->sess, cl->prefix, name, &q->segs, &q->nsegs, msg,
					    len);
		break;
	case CLUSTER_VOL_SEG_LIST_ALL:
		c->res = clvol_segment_list_all(cl->sess, cl->prefix, &q->segs, &q->seg_vols,
						&q->nsegs, msg, len);
		break;
	}
	volume_answered(cl, c, epoch);
}

/* After a volume call c fenced at epoch: this node's claims as its answer says, and
 * the answer as the caller should take it. */
static void volume_answered(struct cluster *cl, struct cmd *c, int64_t epoch)
{
	struct cluster_vol_req *q = c->vreq;
	const char *name = q->vol.name;
	char *msg = c->msg;
	size_t len = sizeof(c->msg);

	if (c->res == 0 && (q->op == CLUSTER_VOL_CREATE || q->op == CLUSTER_VOL_CLAIM)) {
		char after[LAYOUT_ID_MAX + 48] = "";

		claim_set(cl, name, q->epoch, &q->prev);
		if (q->op == CLUSTER_VOL_CLAIM)
			snprintf(after, sizeof(after), " (after %s's epoch %lld)",
				 q->prev.node[0] ? q->prev.node : "no node", (long long)q->prev.epoch);
		log_msg(LOG_INFO, LOG_TAG, "volume %s: owned by this node at epoch %lld%s%s", name,
			(long long)q->epoch, after,
			q->resumed ? " (an unfinished create taken over)" : "");
	}
	if (c->res == 0 && (q->op == CLUSTER_VOL_RELEASE || q->op == CLUSTER_VOL_REMOVE)) {
		claim_drop(cl, name, INT64_MAX);
	} else if (c->res == -ESTALE && unbroken_since(cl, name, epoch)) {
		c->res = -EAGAIN; /* the caller asks again under the new epoch */
		snprintf(msg, len, "volume '%s': claimed again by this node since epoch %lld "
			 "(unbroken): ask again under the new epoch", name, (long long)epoch);
	} else if (c->res == -ESTALE) {
		claim_drop(cl, name, epoch);
	} else if (c->res == -ENOLCK && !claim_lapsed(cl, name, epoch)) {
		c->res = -ESTALE; /* released here: msg says whose it is not */
	}
	if (c->res < 0 && !msg[0])
		snprintf(msg, len, "%s", strerror(-c->res));
}

static bool claim_held(struct cluster *cl, const char *name)
{
	bool held;

	pthread_mutex_lock(&cl->mu);
	held = claim_find(cl, name) != NULL;
	pthread_mutex_unlock(&cl->mu);
	return held;
}

/* After a join: claim again the volumes this node owned last, that no one claimed
 * since (a restart, or a lease that lapsed while no other node wanted them). Also
 * after a keepalive while claims are lapsed with the lease still alive (a claim key
 * deleted by hand): the same rule. */
static void reclaim(struct cluster *cl)
{
	struct clvol_who w = { cl->prefix, cl->self.id, cl->lease_id, cl->segcache };
	char dir[KEY_MAX], end[KEY_MAX], msg[MSG_MAX];
	struct layout_volume vol;
	struct layout_claim prev;
	struct etcd_kv *kvs;
	int64_t rev, epoch;
	size_t n;

	layout_dir(dir, sizeof(dir), cl->prefix, LAYOUT_VOLUME);
	etcd_prefix_end(dir, end);
	if (etcd_range(cl->sess, dir, end, &rev, &kvs, &n) < 0) {
		kvs = NULL; /* nothing taken again: the lapsed claims are lost */
		n = 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (layout_volume_decode(kvs[i].value, kvs[i].value_len, &vol) < 0 ||
		    strcmp(vol.owner, cl->self.id) != 0 || claim_held(cl, vol.name))
			continue;
		if (clvol_claim(cl->sess, &w, vol.name, &epoch, &prev, msg, sizeof(msg)) == 0) {
			claim_set(cl, vol.name, epoch, &prev);
			log_msg(LOG_INFO, LOG_TAG, "volume %s: owned again by this node, epoch %lld",
				vol.name, (long long)epoch);
			pthread_mutex_lock(&cl->mu);
			if (cl->info.last_wait[0])
				last_wait_set(cl, true, "; %s owned again at epoch %lld", vol.name,
					      (long long)epoch);
			pthread_mutex_unlock(&cl->mu);
		} else {
			log_msg(LOG_WARN, LOG_TAG, "volume %s: not claimed again: %s", vol.name, msg);
		}
	}
	etcd_kv_free(kvs, n);
	/* what was not taken again is lost for good: the loop fences it (join notifies) */
	pthread_mutex_lock(&cl->mu);
	for (size_t i = 0; i < cl->nlapsed && cl->info.last_wait[0]; i++)
		last_wait_set(cl, true, "; %s lost (not claimed again)", cl->lapsed[i].name);
	if (cl->nlapsed)
		atomic_fetch_add(&cl->claims_gen, 1);
	cl->nlapsed = 0;
	pthread_mutex_unlock(&cl->mu);
	atomic_store(&cl->reclaimed, true);
}

bool cluster_reclaimed(const struct cluster *cl)
{
	return atomic_load(&((struct cluster *)cl)->reclaimed);
}

/* ---- the session thread ---- */

static int key_of(struct cluster *cl, enum layout_kind kind, const char *id, char *buf)
{
	return layout_key(buf, KEY_MAX, cl->prefix, kind, id);
}

/* Every live node must speak our versions, or we do not join. */
static int check_compatible(struct cluster *cl)
{
	char dir[KEY_MAX], end[KEY_MAX], why[MSG_MAX];
	struct etcd_kv *kvs;
	struct layout_node rec;
	int64_t rev;
	size_t n;
	int r;

	layout_dir(dir, sizeof(dir), cl->prefix, LAYOUT_ALIVE);
	etcd_prefix_end(dir, end);
	r = etcd_range(cl->sess, dir, end, &rev, &kvs, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n && r == 0; i++) {
		if (layout_node_decode(kvs[i].value, kvs[i].value_len, &rec) < 0 ||
		    strcmp(rec.id, cl->self.id) == 0 || layout_compatible(&rec, &cl->self))
			continue;
		snprintf(why, sizeof(why), "node %s writes format %u and speaks protocol %u, this "
			 "node format %u and protocol %u: refusing to join a cluster of "
			 "incompatible nodes", rec.id, rec.format_version, rec.protocol_version,
			 cl->self.format_version, cl->self.protocol_version);
		set_fatal(cl, why);
		r = -EPROTONOSUPPORT;
	}
	etcd_kv_free(kvs, n);
	return r;
}

/* The registration txn: alive/ID (under the lease) and members/ID, if no live lease
 * holds alive/ID. */
static int register_txn(struct cluster *cl, int64_t lease, bool *succeeded)
{
	char alive[KEY_MAX], member[KEY_MAX];
	struct json_object *cmp = json_object_new_array(), *ok = json_object_new_array(), *resp;
	char *rec = layout_node_encode(&cl->self);
	int r = -ENOMEM;

	key_of(cl, LAYOUT_ALIVE, cl->self.id, alive);
	key_of(cl, LAYOUT_MEMBER, cl->self.id, member);
	if (!cmp || !ok || !rec ||
	    json_object_array_add(cmp, etcd_json_compare_eq(alive, ETCD_TARGET_CREATE, 0)) < 0 ||
	    json_object_array_add(ok, etcd_json_put_op(alive, rec, lease)) < 0 ||
	    json_object_array_add(ok, etcd_json_put_op(member, rec, 0)) < 0) {
		json_object_put(cmp);
		json_object_put(ok);
		free(rec);
		return r;
	}
	free(rec);
	r = etcd_txn(cl->sess, cmp, ok, NULL, succeeded, &resp);
	if (r == 0)
		json_object_put(resp);
	return r;
}

static void lease_set(struct cluster *cl, int64_t id, int64_t ttl, uint64_t sent)
{
	atomic_store(&cl->deadline_ms, lease_deadline_ms(sent, ttl));
	pthread_mutex_lock(&cl->mu);
	cl->info.lease_id = id;
	cl->info.ttl_s = (unsigned)ttl;
	pthread_mutex_unlock(&cl->mu);
}

static int join(struct cluster *cl, uint64_t *next_ka)
{
	int64_t id, ttl;
	uint64_t sent;
	bool ok = false;
	int r;

	r = check_compatible(cl);
	if (r < 0)
		return r;
	sent = loop_now_ms();
	r = etcd_lease_grant(cl->sess, cl->ttl_s, &id, &ttl);
	if (r < 0)
		return r;
	r = register_txn(cl, id, &ok);
	if (r < 0 || !ok) {
		etcd_lease_revoke(cl->sess, id); /* best effort: it lapses anyway */
		if (r < 0)
			return r;
		set_state(cl, "waiting for the earlier registration of node %s to lapse (a "
			  "previous run, or another process with this id)", cl->self.id);
		if (!cl->waiting_logged)
			log_msg(LOG_WARN, LOG_TAG, "node %s is still registered (a previous run, or "
				"another process with this node id): waiting for that lease to "
				"lapse", cl->self.id);
		cl->waiting_logged = true;
		return -EBUSY;
	}
	cl->lease_id = id;
	cl->joined_once = true;
	cl->waiting_logged = false;
	cl->outage_logged = false;
	lease_set(cl, id, ttl, sent);
	*next_ka = lease_next_keepalive_ms(sent, ttl);
	set_state(cl, "registered");
	log_msg(LOG_INFO, LOG_TAG, "joined %s as node %s (failure domain %s, lease %llx, TTL %llds)",
		cl->prefix, cl->self.id, cl->self.domain, (unsigned long long)id, (long long)ttl);
	reclaim(cl);
	notify(cl);
	return 0;
}

static void keepalive(struct cluster *cl, uint64_t *next_ka)
{
	uint64_t sent = loop_now_ms();
	int64_t ttl = 0;
	int r = etcd_lease_keepalive(cl->sess, cl->lease_id, &ttl);

	set_etcd(cl, cl->sess, r);
	if (r == 0 && ttl > 0) {
		uint64_t deadline = atomic_load(&cl->deadline_ms), now = loop_now_ms();

		if (deadline && now > deadline) { /* past it: client I/O waited for this */
			pthread_mutex_lock(&cl->mu);
			last_wait_set(cl, false, "the lease deadline passed (no keepalive granted "
				      "in time: etcd away or slow, or this node stalled): client "
				      "I/O waited up to %llu ms, until lease %llx was renewed",
				      (unsigned long long)(now - deadline),
				      (unsigned long long)cl->lease_id);
			pthread_mutex_unlock(&cl->mu);
		}
		lease_set(cl, cl->lease_id, ttl, sent);
		*next_ka = lease_next_keepalive_ms(sent, ttl);
		if (cl->outage_logged)
			log_msg(LOG_INFO, LOG_TAG, "etcd answers again (%s): lease renewed",
				etcd_endpoint(cl->sess));
		cl->outage_logged = false;
		set_state(cl, "registered");
		/* claims lapse under a live lease only when their keys go by hand: the
		 * same rule as at a join */
		if (cluster_volume_lapsed(cl, NULL))
			reclaim(cl);
		notify(cl);
		return;
	}
	if (r == 0 || r == -ENOENT) {
		log_msg(LOG_WARN, LOG_TAG, "lease %llx is gone (etcd did not hear from this node "
			"for its TTL): joining again", (unsigned long long)cl->lease_id);
		claims_lost(cl, cl->lease_id);
		cl->lease_id = 0;
		pthread_mutex_lock(&cl->mu);
		cl->info.lease_id = 0;
		pthread_mutex_unlock(&cl->mu);
		set_state(cl, "lease lost: joining again");
		return;
	}
	if (!cl->outage_logged)
		log_msg(LOG_WARN, LOG_TAG, "keepalive failed: %s (client I/O waits once the lease "
			"deadline passes)", etcd_last_error(cl->sess));
	cl->outage_logged = true;
	set_state(cl, "cannot renew the lease: %s", etcd_last_error(cl->sess));
	*next_ka = sent + lease_retry_ms(cl->ttl_s);
}

static void run_command(struct cluster *cl, struct cmd *c)
{
	char member[KEY_MAX], out[KEY_MAX];
	struct etcd_kv *kvs;
	int64_t rev;
	size_t n;
	char *val;

	if (c->vreq) {
		run_volume(cl, c);
		set_etcd(cl, cl->sess, c->res);
		return;
	}
	key_of(cl, LAYOUT_MEMBER, c->id, member);
	key_of(cl, LAYOUT_OUT, c->id, out);
	c->res = etcd_range(cl->sess, member, NULL, &rev, &kvs, &n);
	if (c->res == 0) {
		etcd_kv_free(kvs, n);
		if (n == 0) {
			c->res = -ENOENT;
			snprintf(c->msg, sizeof(c->msg), "no node '%s' in the cluster", c->id);
			return;
		}
		if (c->out) {
			val = layout_out_encode((int64_t)time(NULL));
			c->res = val ? etcd_put(cl->sess, out, val, 0) : -ENOMEM;
			free(val);
		} else {
			c->res = etcd_delete(cl->sess, out);
		}
	}
	set_etcd(cl, cl->sess, c->res);
	if (c->res < 0)
		snprintf(c->msg, sizeof(c->msg), "%s", etcd_last_error(cl->sess));
	else
		log_msg(LOG_INFO, LOG_TAG, "node %s marked %s", c->id, c->out ? "out" : "in");
}

/* Is c a copy step that may share a txn with other ones (its epoch given, and no
 * batch left it to run alone)? */
static bool copy_step(const struct cmd *c)
{
	return c->vreq && c->vreq->op == CLUSTER_VOL_SEG_COPY && c->vreq->epoch && !c->solo;
}

/* c (taken off the queue) into batch[0], and the copy steps queued right behind it, of
 * its volume and epoch and on other segments, taken off too, up to
 * CLVOL_COPY_BATCH_MAX in all: how many. Under mu. */
static size_t copy_batch_take(struct cluster *cl, struct cmd *c, struct cmd **batch)
{
	const struct cluster_vol_req *q = c->vreq;
	size_t n = 1;

	batch[0] = c;
	while (copy_step(c) && n < CLVOL_COPY_BATCH_MAX && cl->queue && copy_step(cl->queue)) {
		const struct cluster_vol_req *x = cl->queue->vreq;
		bool same_seg = false;

		if (x->epoch != q->epoch || strcmp(x->vol.name, q->vol.name) != 0)
			break;
		for (size_t i = 0; i < n; i++)
			same_seg |= batch[i]->vreq->seg.id.family == x->seg.id.family &&
				    batch[i]->vreq->seg.id.seq == x->seg.id.seq;
		if (same_seg)
			break;
		batch[n++] = cl->queue;
		cl->queue = cl->queue->next;
	}
	return n;
}

/* The steps a batch left to run alone (solo), back at the head of the queue in their
 * order: run_commands runs them one by one, a due keepalive before each. */
static void copy_batch_requeue(struct cluster *cl, struct cmd **solo, size_t n)
{
	pthread_mutex_lock(&cl->mu);
	for (size_t i = n; i-- > 0;) {
		solo[i]->solo = true;
		solo[i]->next = cl->queue;
		cl->queue = solo[i];
	}
	pthread_mutex_unlock(&cl->mu);
}

/* Copy steps of one volume and epoch on distinct segments (copy_batch_take), in one
 * txn (clvol_segment_copy_batch: a rebuild's START and DONE of several segments, one
 * etcd write instead of one each); a batch of one, or with no lease, as any call.
 * Returns how many are answered, moved to the front of batch; the others are queued
 * again to run alone. */
static size_t run_copy_batch(struct cluster *cl, struct cmd **batch, size_t n)
{
	struct cmd *solo[CLVOL_COPY_BATCH_MAX];
	size_t nsolo = 0, ndone = 0;
	struct clvol_who w = { cl->prefix, cl->self.id, cl->lease_id, cl->segcache };
	struct clvol_copy_item items[CLVOL_COPY_BATCH_MAX];
	const struct cluster_vol_req *q0 = batch[0]->vreq;
	int r = -EINVAL;

	if (n > 1 && cl->lease_id) {
		for (size_t i = 0; i < n; i++) {
			struct cluster_vol_req *q = batch[i]->vreq;

			items[i] = (struct clvol_copy_item){ .id = q->seg.id, .node = q->copy_node,
							     .phase = q->copy_phase,
							     .gone = &q->copy_gone,
							     .msg = batch[i]->msg,
							     .msg_len = sizeof(batch[i]->msg) };
		}
		r = clvol_segment_copy_batch(cl->sess, &w, q0->vol.name, q0->epoch, items, n);
	}
	for (size_t i = 0; i < n; i++) {
		struct cmd *c = batch[i];

		if (r < 0 || items[i].alone) { /* not taken as a batch: each as any call */
			solo[nsolo++] = c;
			continue;
		}
		c->res = items[i].res;
		volume_answered(cl, c, q0->epoch);
		set_etcd(cl, cl->sess, c->res);
		batch[ndone++] = c;
	}
	copy_batch_requeue(cl, solo, nsolo);
	return ndone;
}

/* The queued commands, until the queue is empty or, under a lease, its keepalive is
 * due (next_ka: loop ms): a stream of commands (a rebuild's copy steps, each answer
 * bringing the next) must not hold the keepalive back until the lease lapses; what is
 * left runs after it. (With no lease, next_ka is the next join's try: they all run.) */
static void run_commands(struct cluster *cl, uint64_t next_ka)
{
	for (;;) {
		struct cmd *c, **tail, *batch[CLVOL_COPY_BATCH_MAX];
		size_t n = 0;

		/* a keepalive due, or a claim found lapsed ("ask at once"), goes before the
		 * calls still queued */
		if (cl->lease_id && (cl->lapse_seen || loop_now_ms() >= next_ka))
			return;
		pthread_mutex_lock(&cl->mu);
		c = cl->queue;
		if (c) {
			cl->queue = c->next;
			n = copy_batch_take(cl, c, batch);
		}
		pthread_mutex_unlock(&cl->mu);
		if (!c)
			return;
		if (n > 1)
			n = run_copy_batch(cl, batch, n);
		else
			run_command(cl, c);
		pthread_mutex_lock(&cl->mu);
		for (tail = &cl->done; *tail; tail = &(*tail)->next)
			;
		for (size_t i = 0; i < n; i++) {
			batch[i]->next = NULL;
			*tail = batch[i];
			tail = &batch[i]->next;
		}
		pthread_mutex_unlock(&cl->mu);
		notify(cl);
	}
}

/* This node's space under its lease (space/ID): when the loop's sample differs from
 * what is there, at most once per second (the session wakes at least per keepalive:
 * a third of the TTL), and again under each new lease. A failed put is tried at the
 * next wake; the key goes with the lease, so a node down shows no space. */
#define SPACE_MIN_MS 1000

static void space_publish(struct cluster *cl)
{
	char key[KEY_MAX], *val;
	struct layout_space sp;
	bool sampled;
	int r;

	pthread_mutex_lock(&cl->mu);
	sp = cl->space;
	sampled = cl->space_sampled;
	pthread_mutex_unlock(&cl->mu);
	if (!sampled || !cl->lease_id || loop_now_ms() < cl->space_next ||
	    (cl->space_lease == cl->lease_id && !memcmp(&sp, &cl->space_put, sizeof(sp))))
		return;
	cl->space_next = loop_now_ms() + SPACE_MIN_MS;
	val = layout_space_encode(&sp);
	if (!val || key_of(cl, LAYOUT_SPACE, cl->self.id, key) < 0) {
		free(val);
		return;
	}
	r = etcd_put(cl->sess, key, val, cl->lease_id);
	free(val);
	set_etcd(cl, cl->sess, r);
	if (r < 0) {
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "cannot publish this node's space: %s",
				etcd_last_error(cl->sess));
		return;
	}
	cl->space_put = sp;
	cl->space_lease = cl->lease_id;
}

void cluster_space_set(struct cluster *cl, const struct layout_space *sp)
{
	pthread_mutex_lock(&cl->mu);
	cl->space = *sp;
	cl->space_sampled = true;
	pthread_mutex_unlock(&cl->mu);
}

/* Joining holds no lease yet, so no deadline waits on its calls: they get the time a
 * loaded etcd needs (a raft write's fsync, the password's bcrypt), where a keepalive's
 * TTL/3 would time out on every try and the node would never join. */
#define JOIN_TIMEOUT_MS 5000

static unsigned patient_timeout_ms(const struct cluster *cl)
{
	return cl->call_timeout_ms > JOIN_TIMEOUT_MS ? cl->call_timeout_ms : JOIN_TIMEOUT_MS;
}

static int join_patiently(struct cluster *cl, uint64_t *next_ka)
{
	int r;

	etcd_set_timeout(cl->sess, patient_timeout_ms(cl));
	r = join(cl, next_ka);
	etcd_set_timeout(cl->sess, cl->call_timeout_ms);
	if (r == 0 && cl->join_failure_logged)
		log_msg(LOG_INFO, LOG_TAG, "etcd answers again (%s)", etcd_endpoint(cl->sess));
	if (r == 0)
		cl->join_failure_logged = false;
	return r;
}

/* Said once per outage in the log, always in the state `cluster status` shows. */
static void join_failed(struct cluster *cl)
{
	set_state(cl, "joining: %s", etcd_last_error(cl->sess));
	if (!cl->join_failure_logged)
		log_msg(LOG_WARN, LOG_TAG, "cannot join %s yet: %s (retrying)", cl->prefix,
			etcd_last_error(cl->sess));
	cl->join_failure_logged = true;
}

/* Errors a join cannot get past by waiting: this node is not welcome. */
static bool join_fatal(int r)
{
	return r == -EACCES || r == -EPERM || r == -ENOSYS || r == -EPROTONOSUPPORT;
}

static void *session_main(void *arg)
{
	struct cluster *cl = arg;
	uint64_t next = 0;

	while (!stopping(cl)) {
		run_commands(cl, next);
		if (cl->lapse_seen)
			next = 0; /* a claim lapsed: is the lease gone too? (once) */
		cl->lapse_seen = false;
		if (loop_now_ms() >= next) {
			if (cl->lease_id) {
				keepalive(cl, &next);
			} else {
				int r = join_patiently(cl, &next);

				if (r != -EPROTONOSUPPORT)
					set_etcd(cl, cl->sess, r == -EBUSY ? 0 : r);
				if (r < 0 && join_fatal(r) && !cl->joined_once) {
					if (r != -EPROTONOSUPPORT)
						set_fatal(cl, etcd_last_error(cl->sess));
					break;
				}
				if (r < 0) {
					if (r != -EBUSY)
						join_failed(cl);
					next = loop_now_ms() + (r == -EBUSY ? 500 : lease_retry_ms(cl->ttl_s));
				}
			}
		}
		space_publish(cl);
		wait_until(cl, next, true);
	}
	/* revoked, the node is down at once rather than after its TTL; not tried when
	 * etcd has not answered for a while (the stop would wait for the timeout) */
	if (cl->lease_id && lease_valid(atomic_load(&cl->deadline_ms), loop_now_ms()) &&
	    etcd_lease_revoke(cl->sess, cl->lease_id) == 0)
		log_msg(LOG_INFO, LOG_TAG, "left %s: lease revoked", cl->prefix);
	atomic_store(&cl->deadline_ms, 0);
	return NULL;
}

/* ---- the watch thread ---- */

static int watch_events(void *arg, const struct etcd_watch_msg *msg)
{
	struct cluster *cl = arg;
	bool news = false, map_news = false;

	pthread_mutex_lock(&cl->mu);
	for (size_t i = 0; i < msg->nevents; i++) {
		const struct etcd_event *ev = &msg->events[i];
		bool n = map_apply(cl, &ev->kv, ev->type == ETCD_EVENT_PUT, true);

		news |= n;
		map_news |= n && !segment_key(cl, &ev->kv);
		if (ev->kv.mod_revision > cl->info.map_revision)
			cl->info.map_revision = ev->kv.mod_revision;
	}
	pthread_mutex_unlock(&cl->mu);
	if (map_news)
		atomic_fetch_add(&cl->map_gen, 1);
	if (news) /* nodes' space alone changes nothing the loop acts on */
		notify(cl);
	return 0;
}

static int reload(struct cluster *cl, int64_t *rev)
{
	struct etcd_kv *kvs;
	size_t n;
	int r = etcd_range(cl->watch, cl->prefix, cl->prefix_end, rev, &kvs, &n);

	if (r < 0)
		return r;
	pthread_mutex_lock(&cl->mu);
	cl->nmap = 0;
	cl->nvols = 0;
	for (size_t i = 0; i < n; i++)
		map_apply(cl, &kvs[i], true, false);
	cl->info.map_revision = *rev;
	pthread_mutex_unlock(&cl->mu);
	atomic_fetch_add(&cl->segments_gen, 1); /* events may have been missed */
	atomic_fetch_add(&cl->map_gen, 1);
	etcd_kv_free(kvs, n);
	notify(cl);
	return 0;
}

static void *watch_main(void *arg)
{
	struct cluster *cl = arg;
	bool logged = false;

	while (!stopping(cl)) {
		int64_t rev = 0, compact = 0;
		int r = reload(cl, &rev);

		if (r == 0 && logged) {
			log_msg(LOG_INFO, LOG_TAG, "map watch: etcd answers again");
			logged = false;
		}
		if (r == 0)
			r = etcd_watch(cl->watch, cl->prefix, cl->prefix_end, rev + 1, watch_events,
				       cl, &compact);
		if (r == -ECANCELED || stopping(cl))
			break;
		if (r == -ESTALE) {
			log_msg(LOG_INFO, LOG_TAG, "map watch compacted at revision %lld: reloading",
				(long long)compact);
			continue;
		}
		if (!logged)
			log_msg(LOG_WARN, LOG_TAG, "map watch: %s (retrying)", etcd_last_error(cl->watch));
		logged = true;
		wait_until(cl, loop_now_ms() + lease_retry_ms(cl->ttl_s), false);
	}
	return NULL;
}

/* ---- the loop's side ---- */

static void complete_commands(struct cmd *c, int force_res)
{
	while (c) {
		struct cmd *next = c->next;

		if (force_res)
			c->cb(c->arg, force_res, "quilld is stopping");
		else
			c->cb(c->arg, c->res, c->msg);
		free(c);
		c = next;
	}
}

static void efd_ready(void *arg, unsigned events)
{
	struct cluster *cl = arg;
	struct cmd *done;
	char fatal[MSG_MAX] = "";
	uint64_t v;

	(void)events;
	if (read(cl->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		LOG_RATELIMITED(LOG_ERROR, LOG_TAG, "eventfd: %s", err_str(errno));
	pthread_mutex_lock(&cl->mu);
	done = cl->done;
	cl->done = NULL;
	if (cl->fatal_pending) {
		snprintf(fatal, sizeof(fatal), "%s", cl->fatal);
		cl->fatal_pending = false;
	}
	pthread_mutex_unlock(&cl->mu);
	complete_commands(done, 0);
	if (cl->on_change)
		cl->on_change(cl->arg);
	if (fatal[0] && cl->on_fatal)
		cl->on_fatal(cl->arg, fatal);
}

uint64_t cluster_claims_gen(const struct cluster *cl)
{
	return atomic_load(&cl->claims_gen);
}

int cluster_node_get(const struct cluster *cl, const char *id, struct cluster_node *out)
{
	struct cluster *c = (struct cluster *)cl; /* the mutex, only */
	struct entry *e;

	pthread_mutex_lock(&c->mu);
	e = map_find(c, id, false);
	if (e)
		*out = e->n;
	pthread_mutex_unlock(&c->mu);
	return e ? 0 : -ENOENT;
}

bool cluster_lease_valid(const struct cluster *cl)
{
	return lease_valid(atomic_load(&cl->deadline_ms), loop_now_ms());
}

void cluster_info(const struct cluster *cl, struct cluster_info *info)
{
	struct cluster *c = (struct cluster *)cl; /* the mutex, only */
	uint64_t deadline = atomic_load(&cl->deadline_ms), now = loop_now_ms();

	pthread_mutex_lock(&c->mu);
	*info = cl->info;
	info->lapsed = (unsigned)cl->nlapsed;
	pthread_mutex_unlock(&c->mu);
	info->lease_valid = lease_valid(deadline, now);
	info->lease_remaining_ms = deadline ? (int64_t)deadline - (int64_t)now : 0;
}

int cluster_nodes(const struct cluster *cl, struct cluster_node **nodes, size_t *n)
{
	struct cluster *c = (struct cluster *)cl;
	int r = 0;

	pthread_mutex_lock(&c->mu);
	*n = cl->nmap;
	*nodes = calloc(cl->nmap ? cl->nmap : 1, sizeof(**nodes));
	if (!*nodes)
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < cl->nmap; i++)
		(*nodes)[i] = cl->map[i].n;
	pthread_mutex_unlock(&c->mu);
	return r;
}

/* A command for the session thread: a node mark (id, out) or a volume call (vreq);
 * NULL without memory. */
static struct cmd *cmd_new(const char *id, bool out, struct cluster_vol_req *vreq,
			   cluster_cb cb, void *arg)
{
	struct cmd *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	snprintf(c->id, sizeof(c->id), "%s", id);
	c->out = out;
	c->vreq = vreq;
	c->cb = cb;
	c->arg = arg;
	return c;
}

/* Queues cmds[0..n) in their order, under one lock: the session thread finds them
 * together (copy_batch_take). */
static void queue_cmds(struct cluster *cl, struct cmd **cmds, size_t n)
{
	struct cmd **tail;

	pthread_mutex_lock(&cl->mu);
	for (tail = &cl->queue; *tail; tail = &(*tail)->next)
		;
	for (size_t i = 0; i < n; i++) {
		*tail = cmds[i];
		tail = &cmds[i]->next;
	}
	pthread_cond_broadcast(&cl->cond);
	pthread_mutex_unlock(&cl->mu);
}

int cluster_node_mark(struct cluster *cl, const char *id, bool out, cluster_cb cb, void *arg)
{
	struct cmd *c;

	if (!layout_id_valid(id))
		return -EINVAL;
	c = cmd_new(id, out, NULL, cb, arg);
	if (!c)
		return -ENOMEM;
	queue_cmds(cl, &c, 1);
	return 0;
}

int cluster_volume_async(struct cluster *cl, struct cluster_vol_req *req, cluster_cb cb,
			 void *arg)
{
	return cluster_volume_async_many(cl, &req, &arg, 1, cb);
}

int cluster_volume_async_many(struct cluster *cl, struct cluster_vol_req *const *reqs,
			      void *const *args, size_t n, cluster_cb cb)
{
	struct cmd *cmds[CLVOL_COPY_BATCH_MAX];
	size_t k;

	if (n > CLVOL_COPY_BATCH_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) /* a list of every volume's records names none */
		if (reqs[i]->op != CLUSTER_VOL_SEG_LIST_ALL && !layout_id_valid(reqs[i]->vol.name))
			return -EINVAL;
	for (k = 0; k < n; k++)
		if (!(cmds[k] = cmd_new("", false, reqs[k], cb, args[k])))
			break;
	if (k < n) {
		while (k-- > 0)
			free(cmds[k]);
		return -ENOMEM;
	}
	queue_cmds(cl, cmds, n);
	return 0;
}

uint64_t cluster_segments_gen(const struct cluster *cl)
{
	return atomic_load(&cl->segments_gen);
}

uint64_t cluster_map_gen(const struct cluster *cl)
{
	return atomic_load(&cl->map_gen);
}

int cluster_volumes(const struct cluster *cl, struct cluster_volume **vols, size_t *n)
{
	struct cluster *c = (struct cluster *)cl;
	int r = 0;

	pthread_mutex_lock(&c->mu);
	*n = 0;
	*vols = calloc(cl->nvols ? cl->nvols : 1, sizeof(**vols));
	if (!*vols)
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < cl->nvols; i++)
		if (cl->vols[i].rec.replicas) /* a claim seen before its record: not yet */
			(*vols)[(*n)++] = cl->vols[i];
	pthread_mutex_unlock(&c->mu);
	return r;
}

int cluster_volume_get(const struct cluster *cl, const char *name, struct cluster_volume *out)
{
	struct cluster *c = (struct cluster *)cl;
	struct cluster_volume *v;
	bool found;

	pthread_mutex_lock(&c->mu);
	v = vol_find(c, name, false);
	found = v && v->rec.replicas; /* not a claim seen before its record */
	if (found)
		*out = *v;
	pthread_mutex_unlock(&c->mu);
	return found ? 0 : -ENOENT;
}

unsigned cluster_domains(const struct cluster *cl, char *names, size_t len)
{
	struct cluster *c = (struct cluster *)cl;
	unsigned nd = 0;
	size_t off = 0;

	names[0] = '\0';
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < cl->nmap; i++) {
		const struct cluster_node *n = &cl->map[i].n;
		bool seen = false;

		if (!n->up || n->out || !n->compatible)
			continue;
		for (size_t j = 0; j < i && !seen; j++) {
			const struct cluster_node *m = &cl->map[j].n;

			seen = m->up && !m->out && m->compatible &&
			       strcmp(m->rec.domain, n->rec.domain) == 0;
		}
		if (seen)
			continue;
		nd++;
		if (off < len)
			off += (size_t)snprintf(names + off, len - off, "%s%s", nd > 1 ? ", " : "",
						n->rec.domain);
	}
	pthread_mutex_unlock(&c->mu);
	return nd;
}

/* ---- start, stop ---- */

static int make_clients(struct cluster *cl, const struct cluster_opts *opts)
{
	char user[CLUSTER_CRED_MAX] = "", password[CLUSTER_CRED_MAX] = "", why[3 * 4096];
	struct etcd_opts eo = { .endpoints = opts->endpoints };
	unsigned timeout = cl->ttl_s * 1000 / 3;
	int r = 0;

	eo.timeout_ms = timeout < 300 ? 300 : timeout > 5000 ? 5000 : timeout;
	cl->call_timeout_ms = eo.timeout_ms;
	if (opts->credentials_file) {
		r = cluster_credentials_load(opts->credentials_file, user, password, why,
					     sizeof(why));
		if (r < 0) {
			log_msg(LOG_ERROR, LOG_TAG, "%s", why);
			return r;
		}
		eo.user = user;
		eo.password = password;
	}
	r = etcd_create(&eo, &cl->sess);
	if (r == 0)
		r = etcd_create(&eo, &cl->watch);
	if (r == 0)
		r = clvol_segcache_create(&cl->segcache);
	/* The watch holds no deadline either: its reads of the map get a joining call's
	 * patience (the first one pays the password's bcrypt), where TTL/3 timed out on a
	 * loaded etcd at every start, logged a warning and left the map empty a while. */
	if (r == 0)
		etcd_set_timeout(cl->watch, patient_timeout_ms(cl));
	if (r == -EINVAL)
		log_msg(LOG_ERROR, LOG_TAG, "etcd endpoints '%s': expected http://HOST:PORT[,...] "
			"(at most %d)", opts->endpoints, ETCD_MAX_ENDPOINTS);
	explicit_bzero(password, sizeof(password));
	return r;
}

static int check_opts(const struct cluster_opts *opts)
{
	const char *prefix = opts->prefix ? opts->prefix : CLUSTER_DEFAULT_PREFIX;

	if (!layout_prefix_valid(prefix)) {
		log_msg(LOG_ERROR, LOG_TAG, "etcd prefix '%s': must start and end with '/' (%d "
			"bytes at most)", prefix, LAYOUT_PREFIX_MAX);
		return -EINVAL;
	}
	if (!layout_id_valid(opts->self->id) || !layout_id_valid(opts->self->domain)) {
		log_msg(LOG_ERROR, LOG_TAG, "node id '%s' or failure domain '%s': 1 to %d of "
			"A-Z a-z 0-9 . _ -", opts->self->id, opts->self->domain, LAYOUT_ID_MAX);
		return -EINVAL;
	}
	return 0;
}

int cluster_start(const struct cluster_opts *opts, struct cluster **out)
{
	struct cluster *cl;
	int r = check_opts(opts);

	if (r < 0)
		return r;
	cl = calloc(1, sizeof(*cl));
	if (!cl)
		return -ENOMEM;
	pthread_mutex_init(&cl->mu, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&cl->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	cl->lp = opts->loop;
	cl->efd = -1;
	snprintf(cl->prefix, sizeof(cl->prefix), "%s", opts->prefix ? opts->prefix : CLUSTER_DEFAULT_PREFIX);
	etcd_prefix_end(cl->prefix, cl->prefix_end);
	cl->self = *opts->self;
	cl->self.up_since = (int64_t)time(NULL);
	cl->ttl_s = opts->ttl_s ? opts->ttl_s : CLUSTER_DEFAULT_TTL_S;
	cl->on_change = opts->on_change;
	cl->on_fatal = opts->on_fatal;
	cl->arg = opts->arg;
	snprintf(cl->info.node_id, sizeof(cl->info.node_id), "%s", cl->self.id);
	snprintf(cl->info.prefix, sizeof(cl->info.prefix), "%s", cl->prefix);
	snprintf(cl->info.state, sizeof(cl->info.state), "joining");
	cl->info.etcd_ok = true;
	r = make_clients(cl, opts);
	if (r == 0) {
		snprintf(cl->info.endpoint, sizeof(cl->info.endpoint), "%s", etcd_endpoint(cl->sess));
		cl->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		r = cl->efd < 0 ? -errno : 0;
	}
	if (r == 0)
		r = loop_watch_add(cl->lp, cl->efd, LOOP_READ, efd_ready, cl, &cl->efd_watch);
	if (r == 0) {
		r = -pthread_create(&cl->sess_thread, NULL, session_main, cl);
		cl->sess_started = r == 0;
	}
	if (r == 0) {
		r = -pthread_create(&cl->watch_thread, NULL, watch_main, cl);
		cl->watch_started = r == 0;
	}
	if (r < 0) {
		cluster_stop(cl);
		return r;
	}
	*out = cl;
	return 0;
}

void cluster_stop(struct cluster *cl)
{
	struct cmd *left;

	if (!cl)
		return;
	pthread_mutex_lock(&cl->mu);
	cl->stopping = true;
	pthread_cond_broadcast(&cl->cond);
	pthread_mutex_unlock(&cl->mu);
	if (cl->watch)
		etcd_interrupt(cl->watch);
	if (cl->watch_started)
		pthread_join(cl->watch_thread, NULL);
	if (cl->sess_started)
		pthread_join(cl->sess_thread, NULL); /* its calls time out within a TTL/3 */
	left = cl->queue;
	cl->queue = NULL;
	complete_commands(cl->done, 0);
	complete_commands(left, -ESHUTDOWN);
	loop_watch_remove(cl->efd_watch);
	if (cl->efd >= 0)
		close(cl->efd);
	etcd_destroy(cl->sess);
	etcd_destroy(cl->watch);
	clvol_segcache_destroy(cl->segcache);
	free(cl->map);
	free(cl->vols);
	free(cl->claims);
	free(cl->lapsed);
	pthread_cond_destroy(&cl->cond);
	pthread_mutex_destroy(&cl->mu);
	free(cl);
}
