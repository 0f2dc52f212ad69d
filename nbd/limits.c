/* nbd/limits.c — what clients may hold: connection slots per source, request
 * memory server-wide, and how long they may keep them without progress.
 *
 * Slots. A connection holds a handshake slot from accept until NBD_OPT_GO (or
 * EXPORT_NAME), then a client slot until it closes; each kind is bounded in total
 * and per source (the peer's address for TCP, its uid for the unix socket). A new
 * connection over a handshake bound closes the handshake that has been idle for
 * longest (of the same source if that source is at its bound): connections that
 * say nothing cannot lock anyone out, and a real client, whose handshake takes
 * milliseconds, is never the one idle for longest. A GO over a client bound is
 * refused with NBD_REP_ERR_POLICY: an attached client is never closed for another.
 *
 * Memory. Every request's buffers are charged to the server; a header whose
 * request would take the total over its cap is left unparsed in its connection's
 * input, and the connection stops being read and joins a FIFO. Small requests
 * (NBD_MEM_SMALL) may use all of request_mem, large ones three quarters, each kind
 * in its own FIFO: clients stalled in 32 MiB WRITEs cannot hold up the 4 KiB I/O
 * of the others. Freed memory is granted in FIFO order (a large request at the
 * head is not overtaken by later large ones); with nothing held, the head always
 * gets its request, however large.
 *
 * Time. One periodic sweep closes a handshake that completed no message for
 * handshake_timeout_ms, and an attached client that has been in the middle of a
 * request (part of a header or payload received, and we are reading) or has left
 * its replies unread for request_timeout_ms. A client idle between requests stays.
 */
#include "nbd/nbd_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/loop.h"

#define SWEEP_MIN_MS 10u
#define SWEEP_MAX_MS 1000u
/* A request's cost is its payload, rounded out to blocks, plus the request itself. */
#define NBD_MEM_SLACK (64u << 10)

struct nbd_source {
	struct nbd_source *next;
	char key[48];            /* "127.0.0.1", "::1", "uid 1000" */
	unsigned conns;          /* connections holding a slot */
	unsigned handshakes;
	unsigned clients;
};

/* ---- settings ---- */

static unsigned or_default(unsigned v, unsigned def)
{
	return v ? v : def;
}

int nbd_limits_init(struct nbd_server *srv, const struct nbd_server_limits *in)
{
	struct nbd_server_limits *l = &srv->lim;

	l->max_handshakes = or_default(in->max_handshakes, NBD_DEFAULT_MAX_HANDSHAKES);
	l->max_handshakes_per_source = or_default(in->max_handshakes_per_source,
						  NBD_DEFAULT_MAX_HANDSHAKES_PER_SOURCE);
	l->max_clients = or_default(in->max_clients, NBD_DEFAULT_MAX_CLIENTS);
	l->max_clients_per_source = or_default(in->max_clients_per_source,
					       NBD_DEFAULT_MAX_CLIENTS_PER_SOURCE);
	l->handshake_timeout_ms = or_default(in->handshake_timeout_ms,
					     NBD_DEFAULT_HANDSHAKE_TIMEOUT_MS);
	l->request_timeout_ms = or_default(in->request_timeout_ms, NBD_DEFAULT_REQUEST_TIMEOUT_MS);
	l->request_mem = in->request_mem ? in->request_mem : NBD_DEFAULT_REQUEST_MEM;
	/* a per-source default above an explicit total is the total */
	if (!in->max_handshakes_per_source && l->max_handshakes_per_source > l->max_handshakes)
		l->max_handshakes_per_source = l->max_handshakes;
	if (!in->max_clients_per_source && l->max_clients_per_source > l->max_clients)
		l->max_clients_per_source = l->max_clients;
	if (l->max_handshakes_per_source > l->max_handshakes ||
	    l->max_clients_per_source > l->max_clients) {
		log_msg(LOG_ERROR, NBD_LOG, "a per-source connection bound is above its total");
		return -EINVAL;
	}
	if (l->request_mem < NBD_MIN_REQUEST_MEM) {
		log_msg(LOG_ERROR, NBD_LOG, "request memory %llu bytes is below the minimum %llu",
			(unsigned long long)l->request_mem, (unsigned long long)NBD_MIN_REQUEST_MEM);
		return -EINVAL;
	}
	return 0;
}

/* ---- sources and slots ---- */

/* The peer's address (v4-mapped addresses as v4), or its uid on a unix socket. */
static void source_key(int fd, const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)ss)->sin_addr, host,
			  sizeof(host));
	} else if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a))
			inet_ntop(AF_INET, &a->s6_addr[12], host, sizeof(host));
		else
			inet_ntop(AF_INET6, a, host, sizeof(host));
	} else {
		struct ucred cred;
		socklen_t len = sizeof(cred);

		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
			snprintf(out, outlen, "uid %u", (unsigned)cred.uid);
		else
			snprintf(out, outlen, "unix");
		return;
	}
	snprintf(out, outlen, "%s", host);
}

static struct nbd_source *source_get(struct nbd_server *srv, const char *key)
{
	struct nbd_source *s;

	for (s = srv->sources; s; s = s->next)
		if (strcmp(s->key, key) == 0)
			break;
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		snprintf(s->key, sizeof(s->key), "%s", key);
		s->next = srv->sources;
		srv->sources = s;
	}
	s->conns++;
	return s;
}

static void source_put(struct nbd_server *srv, struct nbd_source *s)
{
	struct nbd_source **p;

	if (--s->conns)
		return;
	for (p = &srv->sources; *p != s; p = &(*p)->next)
		;
	*p = s->next;
	free(s);
}

/* The handshake (of source only, if not NULL) that has been idle for longest; of
 * those idle since the same millisecond, the oldest (the list is newest first). */
static struct nbd_conn *idlest_handshake(struct nbd_server *srv, const struct nbd_source *only)
{
	struct nbd_conn *best = NULL;

	for (struct nbd_conn *c = srv->conns; c; c = c->next)
		if (c->slot == NBD_SLOT_HANDSHAKE && (!only || c->src == only) &&
		    (!best || c->rx_ms <= best->rx_ms))
			best = c;
	return best;
}

static void evict(struct nbd_server *srv, const struct nbd_source *only, const char *bound,
		  unsigned n, const char *newcomer)
{
	struct nbd_conn *victim = idlest_handshake(srv, only);
	char why[160];

	if (!victim)
		return;
	snprintf(why, sizeof(why), "%u handshakes%s%s already (%s): closing the one idle for "
		 "%llu ms for %s", n, only ? " from " : "", only ? only->key : "", bound,
		 (unsigned long long)(loop_now_ms() - victim->rx_ms), newcomer);
	LOG_RATELIMITED(LOG_WARN, NBD_LOG, "%s: %s", victim->peer, why);
	nbd_conn_close(victim, NULL);
}

int nbd_limits_accept(struct nbd_conn *c, const struct sockaddr_storage *ss)
{
	struct nbd_server *srv = c->srv;
	char key[48];

	source_key(c->fd, ss, key, sizeof(key));
	c->src = source_get(srv, key);
	if (!c->src)
		return -ENOMEM;
	c->rx_ms = c->tx_ms = loop_now_ms();
	if (c->src->handshakes >= srv->lim.max_handshakes_per_source)
		evict(srv, c->src, "nbd-max-handshakes-per-source", c->src->handshakes, c->peer);
	if (srv->nhandshakes >= srv->lim.max_handshakes)
		evict(srv, NULL, "nbd-max-handshakes", srv->nhandshakes, c->peer);
	c->slot = NBD_SLOT_HANDSHAKE;
	c->src->handshakes++;
	srv->nhandshakes++;
	return 0;
}

int nbd_limits_attach(struct nbd_conn *c, char *msg, size_t msglen)
{
	struct nbd_server *srv = c->srv;
	struct nbd_source *s = c->src;

	if (c->slot == NBD_SLOT_CLIENT)
		return 0;
	if (srv->nclients >= srv->lim.max_clients)
		snprintf(msg, msglen, "too many clients: %u attached (nbd-max-clients)", srv->nclients);
	else if (s->clients >= srv->lim.max_clients_per_source)
		snprintf(msg, msglen, "too many clients from %s: %u attached "
			 "(nbd-max-clients-per-source)", s->key, s->clients);
	else
		msg = NULL;
	if (msg) {
		LOG_RATELIMITED(LOG_WARN, NBD_LOG, "%s: refused: %s", c->peer, msg);
		return -EUSERS;
	}
	s->handshakes--;
	srv->nhandshakes--;
	c->slot = NBD_SLOT_CLIENT;
	s->clients++;
	srv->nclients++;
	c->rx_ms = loop_now_ms();
	return 0;
}

static void mem_grant(struct nbd_server *srv);

/* ---- FIFOs of memory waiters ---- */

static unsigned memq_of(size_t cost)
{
	return cost > NBD_MEM_SMALL + NBD_MEM_SLACK ? 1 : 0;
}

static void memq_push(struct nbd_memq *q, struct nbd_conn *c)
{
	c->mem_next = NULL;
	if (q->tail)
		q->tail->mem_next = c;
	else
		q->head = c;
	q->tail = c;
	c->mem_waiting = true;
}

static void memq_remove(struct nbd_memq *q, struct nbd_conn *c)
{
	struct nbd_conn **p, *prev = NULL;

	for (p = &q->head; *p != c; p = &(*p)->mem_next)
		prev = *p;
	*p = c->mem_next;
	if (q->tail == c)
		q->tail = prev;
	c->mem_waiting = false;
}

void nbd_limits_release(struct nbd_conn *c)
{
	struct nbd_server *srv = c->srv;

	if (c->mem_waiting)
		memq_remove(&srv->memq[memq_of(c->mem_need)], c);
	srv->mem_reserved -= c->mem_reserved;
	c->mem_reserved = 0;
	c->mem_granted = false;
	if (c->slot == NBD_SLOT_HANDSHAKE) {
		c->src->handshakes--;
		srv->nhandshakes--;
	} else if (c->slot == NBD_SLOT_CLIENT) {
		c->src->clients--;
		srv->nclients--;
	}
	c->slot = NBD_SLOT_NONE;
	if (c->src)
		source_put(srv, c->src);
	c->src = NULL;
	mem_grant(srv);
}

/* ---- request memory ---- */

static bool mem_fits(const struct nbd_server *srv, size_t cost)
{
	uint64_t held = srv->mem + srv->mem_reserved;
	uint64_t cap = srv->lim.request_mem;

	if (memq_of(cost))
		cap -= cap / 4; /* the last quarter is for small requests */
	return held == 0 || held + cost <= cap;
}

static void wake_granted(void *arg)
{
	struct nbd_server *srv = arg;
	struct nbd_conn *next;

	srv->wake_timer = NULL; /* fired: freed by the loop */
	for (struct nbd_conn *c = srv->conns; c; c = next) {
		next = c->next;
		if (c->mem_granted) {
			c->mem_granted = false;
			nbd_conn_resume(c);
		}
	}
}

/* Grants memory to a waiter; it resumes from a timer (never inside the engine
 * callback or the other connection's event that freed the memory). */
static void mem_grant_one(struct nbd_server *srv, struct nbd_conn *c, struct nbd_memq *q)
{
	memq_remove(q, c);
	c->mem_granted = true;
	c->mem_reserved = c->mem_need;
	srv->mem_reserved += c->mem_need;
	if (!srv->wake_timer && !srv->shutting_down &&
	    loop_timer_add(srv->lp, 0, wake_granted, srv, &srv->wake_timer) < 0)
		srv->wake_timer = NULL; /* resumed by its next socket event */
}

/* Grants freed memory to the waiters of each FIFO in order. */
static void mem_grant(struct nbd_server *srv)
{
	for (unsigned q = 0; q < 2; q++)
		while (srv->memq[q].head && mem_fits(srv, srv->memq[q].head->mem_need))
			mem_grant_one(srv, srv->memq[q].head, &srv->memq[q]);
}

bool nbd_mem_admit(struct nbd_conn *c, size_t cost)
{
	struct nbd_server *srv = c->srv;

	if (c->mem_reserved) { /* granted: the reservation becomes the request's charge */
		srv->mem_reserved -= c->mem_reserved;
		c->mem_reserved = 0;
		return true;
	}
	if (c->mem_waiting)
		return false;
	if (!srv->memq[memq_of(cost)].head && mem_fits(srv, cost))
		return true;
	LOG_RATELIMITED(LOG_INFO, NBD_LOG, "%s: request of %zu bytes waits for memory "
			"(%llu of %llu held by requests)", c->peer, cost,
			(unsigned long long)(srv->mem + srv->mem_reserved),
			(unsigned long long)srv->lim.request_mem);
	c->mem_need = cost;
	memq_push(&srv->memq[memq_of(cost)], c);
	return false;
}

void nbd_mem_charge(struct nbd_server *srv, int64_t delta)
{
	srv->mem += (uint64_t)delta;
	if (delta < 0)
		mem_grant(srv);
}

/* ---- timeouts ---- */

/* Why c must go now, or NULL. */
static const char *overdue(const struct nbd_conn *c, uint64_t now, const struct nbd_server_limits *l)
{
	bool mid;

	if (c->state == NBD_CS_DEAD)
		return NULL;
	if (c->slot == NBD_SLOT_HANDSHAKE)
		return now - c->rx_ms >= l->handshake_timeout_ms ?
			       "no handshake message for nbd-handshake-timeout-ms" : NULL;
	if (c->out_head && now - c->tx_ms >= l->request_timeout_ms)
		return "replies unread for nbd-request-timeout-ms";
	if (c->paused || c->mem_waiting || c->mem_granted)
		return NULL; /* we are not reading it: not the client's stall */
	mid = c->state == NBD_CS_REQ_PAYLOAD || (c->state == NBD_CS_REQ_HDR && c->in_end > c->in_start);
	return mid && now - c->rx_ms >= l->request_timeout_ms ?
		       "stalled in the middle of a request for nbd-request-timeout-ms" : NULL;
}

static unsigned sweep_period(const struct nbd_server_limits *l)
{
	unsigned t = l->handshake_timeout_ms < l->request_timeout_ms ? l->handshake_timeout_ms
								      : l->request_timeout_ms;

	t /= 4;
	return t < SWEEP_MIN_MS ? SWEEP_MIN_MS : t > SWEEP_MAX_MS ? SWEEP_MAX_MS : t;
}

static void sweep(void *arg)
{
	struct nbd_server *srv = arg;
	uint64_t now = loop_now_ms();
	struct nbd_conn *next;

	srv->sweep_timer = NULL; /* fired: freed by the loop */
	for (struct nbd_conn *c = srv->conns; c; c = next) {
		const char *why = overdue(c, now, &srv->lim);

		next = c->next; /* closing frees c at most */
		if (why)
			nbd_conn_close(c, why);
	}
	nbd_limits_start(srv);
}

int nbd_limits_start(struct nbd_server *srv)
{
	if (srv->shutting_down)
		return 0;
	return loop_timer_add(srv->lp, sweep_period(&srv->lim), sweep, srv, &srv->sweep_timer);
}

void nbd_limits_stop(struct nbd_server *srv)
{
	loop_timer_cancel(srv->sweep_timer);
	srv->sweep_timer = NULL;
	loop_timer_cancel(srv->wake_timer);
	srv->wake_timer = NULL;
}
