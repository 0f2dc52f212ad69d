/* nbd/server.c — listeners, connections and their sockets, exports.
 *
 * A connection's socket is non-blocking and watched by the loop. Input is read into
 * a per-connection buffer (as much as is available) and every complete message in
 * it is parsed (handshake.c, requests.c); large WRITE payloads are received straight
 * into the request's buffer. Output is a queue of messages written with sendmsg()
 * (gathered, MSG_NOSIGNAL) by the connection's loop task, before the loop sleeps:
 * engine completions only queue replies and schedule the task, so the replies of one
 * loop iteration go out in one sendmsg and no epoll_ctl is made per request;
 * LOOP_WRITE is watched only while the socket is full. A connection that holds more
 * than NBD_CONN_MEM_MAX bytes of request buffers stops reading until replies have
 * gone out; limits.c bounds connections, request memory server-wide and stalls.
 *
 * A plain connection in transmission moves its socket's bytes through the loop's ring
 * instead ("plain transmission" below): a RECV waits there for requests and the replies
 * go as one SENDMSG made in the system call that sleeps, so a QD1 request costs two
 * io_uring_enter and no recv()/sendmsg(); docs/nbd.md "How a request travels".
 *
 * The socket is read and written through nbd_conn_recv/nbd_conn_send (tls.c): plain,
 * or a TLS session after NBD_OPT_STARTTLS. During the TLS handshake the connection
 * waits for whatever direction gnutls asks for; afterwards, input that waits
 * decrypted inside the session (the socket will not signal it) is read from a
 * zero-delay timer, the "kick".
 */
#include "nbd/nbd_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/stages.h"
#include "common/unixsock.h"
#include "nbd/nbd_tls.h"

#define NBD_DEFAULT_PORT      10809
#define NBD_ACCEPT_BATCH      32
#define NBD_READ_ROUNDS       16
#define NBD_SHUTDOWN_GRACE_MS 3000
#define NBD_UNIX_DEFAULT_MODE 0600

/* ---- exports ---- */

/* The live export of name (a fenced one only drains its clients: a new attach opens
 * the volume again, through the guard). */
static struct nbd_export *export_find(const struct nbd_server *srv, const char *name)
{
	for (struct nbd_export *e = srv->exports; e; e = e->next)
		if (!blk_fenced(e->dev) && strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

static void conn_pump(struct nbd_conn *c);
static void conn_maybe_free(struct nbd_conn *c);
static bool conn_flush_ring(struct nbd_conn *c);
static bool conn_ring_reads(const struct nbd_conn *c);

/* The node lost the volume (block.h, the guard): its requests end in errors (the
 * block layer's); the clients' connections read nothing more and close once those
 * replies went out. A WRITE whose payload is still arriving is dropped unanswered. */
static void export_fenced(void *arg, const char *why)
{
	struct nbd_export *exp = arg;
	struct nbd_conn *next;

	for (struct nbd_conn *c = exp->srv->conns; c; c = next) {
		next = c->next;
		if (c->exp != exp || c->state == NBD_CS_DEAD || c->state == NBD_CS_DRAIN)
			continue;
		log_msg(LOG_WARN, NBD_LOG, "%s: volume %s: hanging up (%s)", c->peer, exp->name,
			why);
		if (c->cur) {
			struct nbd_req *r = c->cur;

			c->cur = NULL;
			nbd_req_free(r);
		}
		c->state = NBD_CS_DRAIN;
		c->busy++;
		conn_pump(c);
		c->busy--;
		conn_maybe_free(c);
	}
}

static void export_free(struct nbd_export *exp)
{
	struct nbd_export **p;

	for (p = &exp->srv->exports; *p != exp; p = &(*p)->next)
		;
	*p = exp->next;
	blk_close(exp->dev);
	log_msg(LOG_INFO, NBD_LOG, "volume %s: last client detached, closed", exp->name);
	free(exp);
}

static void export_close_timer(void *arg)
{
	struct nbd_export *exp = arg;

	exp->close_timer = NULL;
	if (exp->refs == 0)
		export_free(exp);
}

int nbd_export_get(struct nbd_server *srv, const char *name, struct nbd_export **out)
{
	struct nbd_export *exp = export_find(srv, name);
	int r;

	if (srv->shutting_down)
		return -ESHUTDOWN;
	if (exp) {
		exp->size = blk_size(exp->dev); /* a resize shows on attach */
		exp->refs++;
		*out = exp;
		return 0;
	}
	if (strlen(name) > VOLSPEC_MAX)
		return -ENOENT;
	exp = calloc(1, sizeof(*exp));
	if (!exp)
		return -ENOMEM;
	r = blk_open(srv->eng, srv->guard, name, &exp->dev);
	if (r < 0) {
		free(exp);
		return r;
	}
	blk_set_fence_cb(exp->dev, export_fenced, exp);
	snprintf(exp->name, sizeof(exp->name), "%s", name);
	exp->srv = srv;
	exp->size = blk_size(exp->dev);
	exp->readonly = blk_readonly(exp->dev);
	exp->refs = 1;
	exp->next = srv->exports;
	srv->exports = exp;
	log_msg(LOG_INFO, NBD_LOG, "volume %s: opened for export (%llu bytes%s)", name,
		(unsigned long long)exp->size, exp->readonly ? ", read-only" : "");
	*out = exp;
	return 0;
}

int nbd_export_probe(struct nbd_server *srv, const char *name, uint64_t *size, bool *readonly,
		     uint32_t *sector_size)
{
	struct nbd_export *exp = export_find(srv, name);
	struct blk_probe_info info;
	uint32_t sector;
	int r;

	if (srv->shutting_down)
		return -ESHUTDOWN;
	if (!sector_size)
		sector_size = &sector;
	if (exp) {
		*size = blk_size(exp->dev);
		*readonly = exp->readonly;
		*sector_size = blk_sector_size(exp->dev);
		return 0;
	}
	r = blk_probe(srv->eng, name, &info);
	if (r < 0)
		return r;
	*size = info.size;
	*readonly = info.readonly;
	*sector_size = info.sector_size;
	return 0;
}

void nbd_export_describe(struct nbd_export *exp)
{
	const struct nbd_conn *first = NULL;
	char holder[BLK_HOLDER_MAX + 1];
	unsigned n = 0;

	for (const struct nbd_conn *c = exp->srv->conns; c; c = c->next) {
		if (c->exp != exp || c->state == NBD_CS_DEAD)
			continue;
		first = first ? first : c;
		n++;
	}
	if (!first)
		return;
	if (n == 1)
		snprintf(holder, sizeof(holder), "NBD by %s", first->peer);
	else
		snprintf(holder, sizeof(holder), "NBD by %s and %u other clients", first->peer,
			 n - 1);
	blk_set_holder(exp->dev, holder);
}

/* The volume is closed from a loop timer, never from inside an engine callback
 * (engine_volume_close polls the engine). */
void nbd_export_put(struct nbd_export *exp)
{
	if (!exp)
		return;
	if (--exp->refs > 0) {
		nbd_export_describe(exp); /* a client left: the others still hold it */
		return;
	}
	if (exp->close_timer)
		return;
	if (exp->srv->shutting_down ||
	    loop_timer_add(exp->srv->lp, 0, export_close_timer, exp, &exp->close_timer) < 0)
		exp->close_timer = NULL; /* closed by nbd_server_destroy */
}

/* ---- connections: output ---- */

static void out_release(struct nbd_conn *c, struct nbd_out *o)
{
	if (!o->req)
		c->hs_out_bytes -= o->hdr_len + o->data_len;
	free(o->owned);
	if (o->req)
		nbd_req_free(o->req);
	else if (o->heap)
		free(o);
}

void nbd_conn_queue(struct nbd_conn *c, struct nbd_out *o)
{
	o->next = NULL;
	o->sent = 0;
	if (!o->req)
		c->hs_out_bytes += o->hdr_len + o->data_len;
	if (c->state == NBD_CS_DEAD) {
		out_release(c, o);
		return;
	}
	if (!c->out_head)
		c->tx_ms = loop_now_ms(); /* the client has request_timeout_ms to read it */
	if (c->out_tail)
		c->out_tail->next = o;
	else
		c->out_head = o;
	c->out_tail = o;
	if (!(c->watch_events & LOOP_WRITE)) /* else the socket is full: LOOP_WRITE sends */
		loop_task_schedule(c->send_task);
}

/* After send/recv failed: true to retry (EINTR); a real error closes the connection,
 * EAGAIN just returns false. */
static bool sock_retry(struct nbd_conn *c)
{
	if (errno == EINTR)
		return true;
	if (errno != EAGAIN && errno != EWOULDBLOCK)
		nbd_conn_close(c, err_str(errno));
	return false;
}

static bool conn_output_pending(const struct nbd_conn *c)
{
	return c->out_head || nbd_conn_send_pending(c);
}

/* Gathers the queued output, from what was sent of the head on, into iov (at most
 * NBD_IOV_MAX pieces). Returns the pieces; *len gets their bytes. */
static int conn_gather(const struct nbd_conn *c, struct iovec *iov, size_t *len)
{
	int k = 0;

	*len = 0;
	for (struct nbd_out *o = c->out_head; o && k < (int)NBD_IOV_MAX - 1; o = o->next) {
		size_t s = o->sent;

		if (s < o->hdr_len) {
			iov[k++] = (struct iovec){ o->hdr + s, o->hdr_len - s };
			s = o->hdr_len;
		}
		if (s - o->hdr_len < o->data_len)
			iov[k++] = (struct iovec){ (void *)(o->data + (s - o->hdr_len)),
						   o->data_len - (s - o->hdr_len) };
	}
	for (int i = 0; i < k; i++)
		*len += iov[i].iov_len;
	return k;
}

/* n bytes of the queued output went out: the messages sent whole are released. */
static void conn_sent_bytes(struct nbd_conn *c, size_t n)
{
	c->tx_ms = loop_now_ms();
	stages_end("nbd.reply_sent");
	while (n && c->out_head) {
		struct nbd_out *o = c->out_head;
		size_t rest = o->hdr_len + o->data_len - o->sent;

		if (n < rest) {
			o->sent += n;
			break;
		}
		n -= rest;
		c->out_head = o->next;
		if (!c->out_head) {
			c->out_tail = NULL;
			c->tx_full = false; /* it took everything */
		}
		out_release(c, o);
	}
}

/* Writes queued output now, until the socket is full (then tx_full). A send handed to
 * the loop and not made yet is taken back first: these bytes go now. */
static void conn_flush_now(struct nbd_conn *c)
{
	if (c->ring_send.queued) {
		if (c->ring_send.done)
			return; /* made in the sleep: its fn counts what went first */
		loop_send_cancel(c->srv->lp, &c->ring_send);
	}
	while (conn_output_pending(c) && c->state != NBD_CS_DEAD) {
		struct iovec iov[NBD_IOV_MAX];
		size_t want;
		int k = conn_gather(c, iov, &want);
		ssize_t n = nbd_conn_send(c, iov, k);

		if (n < 0) {
			if (sock_retry(c))
				continue;
			c->tx_full = true;
			return;
		}
		conn_sent_bytes(c, (size_t)n);
		if ((size_t)n < want) {
			c->tx_full = true;
			return;
		}
	}
}

/* Writes queued output: handed to the loop's sleep (conn_flush_ring), else now. */
static void conn_flush(struct nbd_conn *c)
{
	if (!conn_flush_ring(c))
		conn_flush_now(c);
}

/* ---- connections: lifetime ---- */

static void conn_maybe_free(struct nbd_conn *c)
{
	struct nbd_server *srv = c->srv;

	if (c->state != NBD_CS_DEAD || c->nreqs || c->busy)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->nconns--;
	nbd_export_put(c->exp);
	loop_task_destroy(c->send_task);
	free(c);
}

void nbd_conn_close(struct nbd_conn *c, const char *reason)
{
	if (c->claim_wait)
		nbd_hs_cancel(c);
	if (c->state == NBD_CS_DEAD)
		return;
	if (reason)
		LOG_RATELIMITED(LOG_INFO, NBD_LOG, "%s: closing connection: %s", c->peer, reason);
	c->busy++;
	nbd_limits_release(c);
	loop_timer_cancel(c->kick);
	c->kick = NULL;
	loop_watch_remove(c->watch);
	c->watch = NULL;
	loop_send_cancel(c->srv->lp, &c->ring_send); /* its fn must not run */
	loop_recv_stop(c->ring_recv); /* nor its: the loop frees it (and its buffer) once
					 the ring gave it back, cancelled */
	c->ring_recv = NULL;
	nbd_tls_session_free(c);
	close(c->fd);
	c->fd = -1;
	c->state = NBD_CS_DEAD;
	while (c->out_head) {
		struct nbd_out *o = c->out_head;

		c->out_head = o->next;
		out_release(c, o);
	}
	c->out_tail = NULL;
	if (c->cur) { /* a WRITE whose payload never arrived: never submitted */
		struct nbd_req *r = c->cur;

		c->cur = NULL;
		nbd_req_free(r);
	}
	free(c->in);
	c->in = NULL;
	c->busy--;
	conn_maybe_free(c);
}

void nbd_conn_req_gone(struct nbd_conn *c, size_t mem)
{
	c->mem -= mem;
	nbd_mem_charge(c->srv, -(int64_t)mem);
	c->nreqs--;
	conn_maybe_free(c);
}

/* Reading NBD messages (not while TLS is being set up on the socket). */
static bool conn_reading(const struct nbd_conn *c)
{
	return c->state < NBD_CS_DRAIN && c->state != NBD_CS_TLS_ACK &&
	       c->state != NBD_CS_TLS_HANDSHAKE;
}

void nbd_conn_update_watch(struct nbd_conn *c)
{
	unsigned want = 0;

	if (c->state == NBD_CS_DEAD)
		return;
	if (c->state == NBD_CS_TLS_HANDSHAKE)
		want = nbd_tls_session_events(c);
	if (c->ring_recv)
		loop_recv_want(c->ring_recv, conn_ring_reads(c));
	else if (conn_reading(c) && !c->paused)
		want |= LOOP_READ;
	if (conn_output_pending(c) && !c->ring_send.queued)
		want |= LOOP_WRITE; /* a full socket (a send in the loop's hands: its fn) */
	if (want != c->watch_events && loop_watch_modify(c->watch, want) == 0)
		c->watch_events = want;
}

static bool conn_mem_ok(const struct nbd_conn *c)
{
	if (c->mem_waiting)
		return false; /* its turn comes from limits.c */
	if (c->claim_wait)
		return false; /* its turn comes from the claim (handshake.c) */
	if (c->state < NBD_CS_REQ_HDR)
		return c->hs_out_bytes <= NBD_HS_OUT_MAX;
	return c->mem == 0 || c->mem + c->mem_need <= NBD_CONN_MEM_MAX;
}

/* Parses every complete message in the input buffer. */
static void conn_parse(struct nbd_conn *c)
{
	for (;;) {
		bool more;

		if (c->paused)
			return;
		if (c->state < NBD_CS_REQ_HDR) {
			size_t before = c->in_start;

			more = nbd_hs_step(c);
			if (c->state == NBD_CS_OPT_HDR && c->in_start != before)
				c->rx_ms = loop_now_ms(); /* a whole message: progress */
		} else if (c->state < NBD_CS_DRAIN)
			more = nbd_tx_step(c);
		else
			return;
		if (!more)
			return;
	}
}

/* The client closed its end: between messages, a clean close. */
static void conn_input_end(struct nbd_conn *c)
{
	bool mid = c->in_end > c->in_start || c->state == NBD_CS_REQ_PAYLOAD;

	nbd_conn_close(c, mid ? "client vanished in the middle of a message" : NULL);
}

/* Where the next input goes: straight into a WRITE payload's buffer (*direct), or the
 * input buffer's free end, its unparsed bytes moved to the front first when less than
 * room is free there. Returns how many bytes fit. */
static size_t conn_in_space(struct nbd_conn *c, size_t room, uint8_t **dst, bool *direct)
{
	size_t n;

	if (c->in_start == c->in_end)
		c->in_start = c->in_end = 0;
	n = nbd_tx_payload_window(c, dst);
	*direct = n > 0;
	if (*direct)
		return n;
	if (c->in_start > 0 && NBD_INBUF_SIZE - c->in_end < room) {
		memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
		c->in_end -= c->in_start;
		c->in_start = 0;
	}
	*dst = c->in + c->in_end;
	return NBD_INBUF_SIZE - c->in_end;
}

/* n bytes of input went where conn_in_space said: counted, then parsed. */
static void conn_in_got(struct nbd_conn *c, size_t n, bool direct)
{
	if (direct)
		nbd_tx_payload_got(c, n);
	else
		c->in_end += n;
	conn_parse(c);
}

static void conn_read(struct nbd_conn *c)
{
	for (int round = 0; round < NBD_READ_ROUNDS; round++) {
		uint8_t *dst;
		size_t want;
		bool direct;
		ssize_t n;

		if (!conn_reading(c) || c->paused)
			return;
		want = conn_in_space(c, NBD_INBUF_SIZE / 2, &dst, &direct);
		n = nbd_conn_recv(c, dst, want);
		if (n == 0) {
			conn_input_end(c);
			return;
		}
		if (n < 0) {
			if (sock_retry(c))
				continue;
			return;
		}
		if (c->slot == NBD_SLOT_CLIENT)
			c->rx_ms = loop_now_ms(); /* any bytes: not stalled */
		conn_in_got(c, (size_t)n, direct);
		if ((size_t)n < want)
			return;
	}
}

/* ---- plain transmission: the socket's I/O in the loop's ring ----
 *
 * Why: a QD1 request cost four system calls of the loop thread — recv() of the
 * request (after the ring's EPOLL_WAIT said the socket was readable), io_uring_enter
 * to submit its I/O and sleep, sendmsg() of the reply, io_uring_enter to sleep — and
 * most of a request's CPU is the kernel's. A plain connection in transmission keeps a
 * RECV in the ring the loop sleeps on (loop.h's loop_recv): a request arrives as a
 * completion of that ring, like the disk's; and its replies go as one SENDMSG made
 * in the io_uring_enter that sleeps (loop_send): two system calls a request, both
 * io_uring_enter. The handshake and TLS connections (gnutls reads and writes the
 * socket itself) keep recv()/sendmsg() on the watch; so does everything once the
 * server shuts down (the loop no longer runs). The watch stays, asking for nothing
 * but LOOP_WRITE while the socket is full; the hang-ups that epoll always says count
 * only while the ring does not read (a unix socket says one with bytes still unread,
 * which the ring's receive takes first, then its 0). */

static void conn_sent(void *arg, long res);
static void conn_received(void *arg, const void *data, long res);

/* Hands the queued output to the loop's next sleep, as one gathered send of
 * ring_send, on a plain connection receiving through the ring. Returns false when
 * the caller sends itself (TLS, the handshake, a server shutting down). */
static bool conn_flush_ring(struct nbd_conn *c)
{
	struct loop_send *s = &c->ring_send;

	if (!c->ring_recv || c->srv->shutting_down)
		return false; /* (conn_flush_now takes back a send not made) */
	if (s->queued && s->done)
		return true; /* made in the sleep: conn_sent goes on from what it took */
	if (s->queued) /* not made yet: handed again with what was queued since */
		loop_send_cancel(c->srv->lp, s);
	if (!c->out_head || c->tx_full)
		return true; /* nothing to send, or LOOP_WRITE will say when */
	s->fd = c->fd;
	s->iov = c->ring_iov;
	s->iovcnt = conn_gather(c, c->ring_iov, &s->len);
	s->fn = conn_sent;
	s->arg = c;
	return loop_send_queue(c->srv->lp, s) == 0; /* else (no waiter's sends) send now */
}

/* The loop made ring_send in its sleep: res bytes went, or -errno. */
static void conn_sent(void *arg, long res)
{
	struct nbd_conn *c = arg;

	c->busy++;
	if (res > 0)
		conn_sent_bytes(c, (size_t)res);
	if (res < 0 && res != -EAGAIN && res != -EWOULDBLOCK && res != -EINTR)
		nbd_conn_close(c, err_str((int)-res));
	else if (res != -EINTR && (res < 0 || (size_t)res < c->ring_send.len))
		c->tx_full = true; /* the rest when LOOP_WRITE says there is room */
	conn_pump(c); /* what is left, or came meanwhile, goes in the next sleep */
	c->busy--;
	conn_maybe_free(c);
}

/* A plain connection that entered transmission receives through the loop's ring from
 * now on (nbd_conn_update_watch stops the watch's reading). Input already buffered
 * stays: the ring's bytes come after it. A loop that keeps no receives (-ENOTSUP) or
 * no memory for one leaves the watch reading, as before. */
static void conn_ring_start(struct nbd_conn *c)
{
	if (c->ring_recv || c->ring_off || c->tls || c->state < NBD_CS_REQ_HDR ||
	    c->state >= NBD_CS_DRAIN || c->srv->shutting_down)
		return;
	if (loop_recv_start(c->srv->lp, c->fd, NBD_RING_RECV_SIZE, conn_received, c,
			    &c->ring_recv) < 0) {
		c->ring_recv = NULL;
		c->ring_off = true;
	}
}

/* Whether the ring's receive reads for c (it is in the ring, or goes in at the next
 * sleep): c reads on, and a completion (up to NBD_RING_RECV_SIZE bytes) fits in the
 * input buffer beside what waits there unparsed. */
static bool conn_ring_reads(const struct nbd_conn *c)
{
	return c->ring_recv && conn_reading(c) && !c->paused &&
	       c->in_end - c->in_start <= NBD_INBUF_SIZE - NBD_RING_RECV_SIZE;
}

/* Takes n bytes the ring received: a WRITE payload's share straight into its
 * request's buffer, the rest into the input buffer, parsing as it goes (a frame split
 * over completions waits there for its rest). Returns false if c stopped reading
 * (closed, or draining: bytes after NBD_CMD_DISC are dropped). */
static bool conn_take(struct nbd_conn *c, const uint8_t *p, size_t n)
{
	if (c->slot == NBD_SLOT_CLIENT)
		c->rx_ms = loop_now_ms(); /* any bytes: not stalled */
	while (n > 0) {
		uint8_t *dst;
		size_t m;
		bool direct;

		if (!conn_reading(c))
			return false;
		m = conn_in_space(c, n, &dst, &direct);
		if (m == 0) { /* the receive goes in only with room: cannot happen */
			nbd_conn_close(c, "input buffer overrun");
			return false;
		}
		if (m > n)
			m = n;
		memcpy(dst, p, m);
		p += m;
		n -= m;
		conn_in_got(c, m, direct);
	}
	return true;
}

/* The ring's receive completed: res bytes of input, 0 when the client closed, or
 * -errno. The receive goes in again at the next sleep while c reads on. */
static void conn_received(void *arg, const void *data, long res)
{
	struct nbd_conn *c = arg;

	if (res == -EINTR || res == -EAGAIN || res == -EWOULDBLOCK)
		return;
	c->busy++;
	if (res == 0)
		conn_input_end(c);
	else if (res < 0)
		nbd_conn_close(c, err_str((int)-res));
	else if (conn_take(c, data, (size_t)res) && (size_t)res == NBD_RING_RECV_SIZE)
		conn_read(c); /* a full one: a large payload comes; read on now, straight
				 into its buffer (the receive is out of the ring until the
				 next sleep, so the bytes stay in order) */
	conn_pump(c);
	c->busy--;
	conn_maybe_free(c);
}

/* Readiness while we asked for no input: only a hang-up or an error can do that. */
static void conn_check_hangup(struct nbd_conn *c)
{
	if (unixsock_hung_up(c->fd))
		nbd_conn_close(c, "client hung up with requests in flight");
}

static void conn_event(void *arg, unsigned events);

static void conn_kicked(void *arg)
{
	struct nbd_conn *c = arg;

	c->kick = NULL; /* the loop frees a timer that fired */
	conn_event(c, LOOP_READ);
}

/* Input decrypted and waiting in the TLS session wakes no one: read it from a timer. */
static void conn_kick_pending(struct nbd_conn *c)
{
	if (c->kick || !conn_reading(c) || c->paused || !nbd_conn_recv_pending(c))
		return;
	if (loop_timer_add(c->srv->lp, 0, conn_kicked, c, &c->kick) < 0)
		c->kick = NULL; /* read when more comes in */
}

/* The ACK to STARTTLS went out: from here on the socket speaks TLS. */
static void conn_tls_handshake(struct nbd_conn *c)
{
	const char *why = NULL;
	int r;

	if (!c->tls) {
		r = nbd_tls_session_start(c);
		if (r < 0) {
			nbd_conn_close(c, "cannot start a TLS session: out of memory");
			return;
		}
		c->state = NBD_CS_TLS_HANDSHAKE;
	}
	r = nbd_tls_session_handshake(c, &why);
	if (r == -EAGAIN)
		return;
	if (r < 0) {
		char msg[160];

		snprintf(msg, sizeof(msg), "TLS handshake failed: %s", why ? why : err_str(-r));
		nbd_conn_close(c, msg);
		return;
	}
	c->rx_ms = loop_now_ms(); /* a complete message, for the handshake timeout */
	c->state = NBD_CS_OPT_HDR;
}

/* Output, then input that was left waiting (paused) if it may go on now. */
static void conn_pump(struct nbd_conn *c)
{
	while (c->state != NBD_CS_DEAD) {
		conn_flush(c);
		if (c->state == NBD_CS_DEAD || !c->paused || !conn_mem_ok(c))
			break;
		c->paused = false;
		c->rx_ms = loop_now_ms(); /* what was buffered waited for us, not the client */
		conn_parse(c);
	}
	if (c->state == NBD_CS_TLS_ACK && !conn_output_pending(c))
		conn_tls_handshake(c);
	if (c->state == NBD_CS_DRAIN && !c->nreqs && !conn_output_pending(c))
		nbd_conn_close(c, NULL);
	conn_ring_start(c);
	nbd_conn_update_watch(c);
	conn_kick_pending(c);
}

static void conn_event(void *arg, unsigned events)
{
	struct nbd_conn *c = arg;

	c->busy++;
	if (c->state == NBD_CS_TLS_HANDSHAKE)
		conn_tls_handshake(c); /* whichever way gnutls waited */
	else if (events & LOOP_WRITE) {
		c->tx_full = false;
		conn_flush_now(c); /* room, and we are awake: no need to wait for a sleep */
	}
	if ((events & LOOP_READ) && c->state != NBD_CS_DEAD && c->state != NBD_CS_TLS_HANDSHAKE) {
		if (conn_reading(c) && !c->paused && !c->ring_recv)
			conn_read(c);
		else if (!conn_ring_reads(c)) /* (the ring's receive reads on to the input's
						 end: a hang-up is its 0, after the bytes) */
			conn_check_hangup(c);
	}
	conn_pump(c);
	c->busy--;
	conn_maybe_free(c);
}

void nbd_conn_resume(struct nbd_conn *c)
{
	c->busy++;
	conn_pump(c); /* then the watch reads on: epoll is level-triggered */
	c->busy--;
	conn_maybe_free(c);
}

static void conn_send_task(void *arg)
{
	nbd_conn_resume(arg);
}

static void conn_create(struct nbd_server *srv, int fd, const char *peer,
			const struct sockaddr_storage *ss)
{
	struct nbd_conn *c = calloc(1, sizeof(*c));

	if (!c || !(c->in = malloc(NBD_INBUF_SIZE)) ||
	    loop_task_create(srv->lp, conn_send_task, c, &c->send_task) < 0) {
		LOG_RATELIMITED(LOG_WARN, NBD_LOG, "%s: out of memory, refused", peer);
		if (c)
			free(c->in);
		free(c);
		close(fd);
		return;
	}
	c->srv = srv;
	c->fd = fd;
	c->tcp = ss->ss_family != AF_UNIX;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	if (loop_watch_add(srv->lp, fd, LOOP_READ, conn_event, c, &c->watch) < 0) {
		LOG_RATELIMITED(LOG_WARN, NBD_LOG, "%s: cannot watch socket, refused", peer);
		loop_task_destroy(c->send_task);
		free(c->in);
		free(c);
		close(fd);
		return;
	}
	c->watch_events = LOOP_READ;
	c->next = srv->conns;
	if (c->next)
		c->next->prev = c;
	srv->conns = c;
	srv->nconns++;
	log_msg(LOG_DEBUG, NBD_LOG, "%s: connected", peer);
	if (nbd_limits_accept(c, ss) < 0) {
		LOG_RATELIMITED(LOG_WARN, NBD_LOG, "%s: out of memory, refused", peer);
		nbd_conn_close(c, NULL);
		return;
	}
	nbd_hs_start(c);
}

/* ---- listeners ---- */

static void peer_name(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	} else {
		snprintf(out, outlen, "unix");
		return;
	}
	snprintf(out, outlen, "%s:%u", host, port);
}

/* A unix client is named by its process: "unix socket (pid 1234)". */
static void peer_name_unix(int fd, char *out, size_t outlen)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid > 0)
		snprintf(out, outlen, "unix socket (pid %ld)", (long)cred.pid);
}

static void listener_resume(void *arg)
{
	struct loop_watch *w = arg;

	loop_watch_modify(w, LOOP_READ);
}

static void accept_batch(struct nbd_server *srv, int lfd, struct loop_watch *w)
{
	for (int i = 0; i < NBD_ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		char peer[64];
		int one = 1;
		int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* EMFILE and friends: the listener stays readable; pause it a while */
			LOG_RATELIMITED(LOG_WARN, NBD_LOG, "accept: %s", err_str(errno));
			if (loop_watch_modify(w, 0) == 0 &&
			    loop_timer_add(srv->lp, 100, listener_resume, w, NULL) < 0)
				loop_watch_modify(w, LOOP_READ);
			return;
		}
		peer_name(&ss, peer, sizeof(peer));
		if (ss.ss_family == AF_UNIX)
			peer_name_unix(fd, peer, sizeof(peer));
		if (ss.ss_family != AF_UNIX)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		conn_create(srv, fd, peer, &ss);
	}
}

static void tcp_event(void *arg, unsigned events)
{
	struct nbd_server *srv = arg;

	(void)events;
	accept_batch(srv, srv->tcp_fd, srv->tcp_watch);
}

static void unix_event(void *arg, unsigned events)
{
	struct nbd_server *srv = arg;

	(void)events;
	accept_batch(srv, srv->unix_fd, srv->unix_watch);
}

bool nbd_addr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

/* Anyone who reaches a plain NBD port can read and write every volume. */
static void warn_if_exposed(const struct nbd_server *srv, const struct sockaddr *sa,
			    const char *addr, uint16_t port)
{
	if (nbd_addr_is_loopback(sa) || nbd_tls_mode(srv->tls) == NBD_TLS_REQUIRE)
		return;
	log_msg(LOG_WARN, NBD_LOG, "NBD listens on %s:%u, beyond loopback, %s: anyone who can "
		"reach it can read and write every volume (require TLS: --nbd-tls require with "
		"--nbd-tls-psk-file or --nbd-tls-x509-dir)", addr, port,
		srv->tls ? "with TLS offered but not required" : "without TLS");
}

static int listen_tcp(struct nbd_server *srv, const char *addr, uint16_t port)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res, *ai;
	char portstr[8];
	int r, err = -EADDRNOTAVAIL;

	snprintf(portstr, sizeof(portstr), "%u", port);
	r = getaddrinfo(addr, portstr, &hints, &res);
	if (r != 0) {
		log_msg(LOG_ERROR, NBD_LOG, "cannot resolve %s: %s", addr, gai_strerror(r));
		return -EADDRNOTAVAIL;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		int one = 1;
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				ai->ai_protocol);

		if (fd < 0) {
			err = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
			err = -errno;
			close(fd);
			continue;
		}
		srv->tcp_fd = fd;
		warn_if_exposed(srv, ai->ai_addr, addr, port);
		break;
	}
	freeaddrinfo(res);
	if (srv->tcp_fd < 0) {
		log_msg(LOG_ERROR, NBD_LOG, "cannot listen on %s:%u: %s", addr, port, err_str(-err));
		return err;
	}
	{
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		if (getsockname(srv->tcp_fd, (struct sockaddr *)&ss, &len) == 0)
			srv->tcp_port = ntohs(ss.ss_family == AF_INET6 ?
					      ((struct sockaddr_in6 *)&ss)->sin6_port :
					      ((struct sockaddr_in *)&ss)->sin_port);
	}
	return loop_watch_add(srv->lp, srv->tcp_fd, LOOP_READ, tcp_event, srv, &srv->tcp_watch);
}

static int listen_unix(struct nbd_server *srv, const struct nbd_server_opts *opts)
{
	const char *path = opts->unix_path;
	struct unixsock_access acc = {
		.mode = opts->unix_mode ? opts->unix_mode : NBD_UNIX_DEFAULT_MODE,
		.uid = opts->unix_set_owner ? opts->unix_uid : (uid_t)-1,
		.gid = opts->unix_set_group ? opts->unix_gid : (gid_t)-1,
	};

	srv->unix_fd = unixsock_listen_access(path, &acc, SOMAXCONN);
	if (srv->unix_fd < 0) {
		int r = srv->unix_fd;

		log_msg(LOG_ERROR, NBD_LOG, "cannot listen on %s: %s%s", path,
			r == -EADDRINUSE ? "another server is listening there" : err_str(-r),
			r == -EPERM ? " (setting its owner needs root, its group root or "
				      "membership of the group)" : "");
		return r;
	}
	if (acc.mode & 0002)
		log_msg(LOG_WARN, NBD_LOG, "NBD unix socket %s has mode %04o: every local user can "
			"read and write every volume", path, (unsigned)acc.mode);
	snprintf(srv->unix_path, sizeof(srv->unix_path), "%s", path);
	return loop_watch_add(srv->lp, srv->unix_fd, LOOP_READ, unix_event, srv, &srv->unix_watch);
}

/* ---- the server ---- */

int nbd_server_create(const struct nbd_server_opts *opts, struct nbd_server **out)
{
	struct nbd_server *srv;
	int r = 0;

	if (!opts || !opts->eng || !opts->loop || (!opts->tcp_addr && !opts->unix_path))
		return -EINVAL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->eng = opts->eng;
	srv->lp = opts->loop;
	srv->tls = opts->tls;
	srv->guard = opts->guard;
	srv->tcp_fd = srv->unix_fd = -1;
	r = nbd_limits_init(srv, &opts->limits);
	if (r == 0 && opts->tcp_addr)
		r = listen_tcp(srv, opts->tcp_addr, opts->tcp_port ? opts->tcp_port : NBD_DEFAULT_PORT);
	if (r == 0 && opts->unix_path)
		r = listen_unix(srv, opts);
	if (r == 0)
		r = nbd_limits_start(srv);
	if (r < 0) {
		nbd_server_destroy(srv);
		return r;
	}
	*out = srv;
	return 0;
}

/* Stops reading every connection, lets requests finish and their replies go out
 * (for a grace period), then closes everything. */
static void drain_connections(struct nbd_server *srv)
{
	uint64_t deadline = loop_now_ms() + NBD_SHUTDOWN_GRACE_MS;

	for (struct nbd_conn *c = srv->conns; c; c = c->next) {
		if (c->state == NBD_CS_DEAD)
			continue;
		if (c->cur) {
			struct nbd_req *r = c->cur;

			c->cur = NULL;
			nbd_req_free(r);
		}
		c->state = NBD_CS_DRAIN;
	}
	while (srv->nconns) {
		bool late = loop_now_ms() > deadline;
		struct nbd_conn *next;

		for (struct nbd_conn *c = srv->conns; c; c = next) {
			c->busy++;
			conn_flush(c);
			if (late || (!c->nreqs && !conn_output_pending(c)))
				nbd_conn_close(c, late && c->state != NBD_CS_DEAD ?
						  "server shutting down" : NULL);
			c->busy--;
			next = c->next;
			conn_maybe_free(c);
		}
		if (srv->nconns && blk_poll(srv->eng, 10) < 0 && late)
			break; /* the engine is broken: nothing will complete */
	}
}

void nbd_server_destroy(struct nbd_server *srv)
{
	if (!srv)
		return;
	srv->shutting_down = true;
	loop_watch_remove(srv->tcp_watch);
	loop_watch_remove(srv->unix_watch);
	if (srv->tcp_fd >= 0)
		close(srv->tcp_fd);
	if (srv->unix_fd >= 0)
		close(srv->unix_fd);
	if (srv->unix_path[0])
		unlink(srv->unix_path);
	drain_connections(srv);
	nbd_limits_stop(srv);
	while (srv->exports) {
		loop_timer_cancel(srv->exports->close_timer);
		export_free(srv->exports);
	}
	free(srv);
}

bool nbd_server_volume_attached(const struct nbd_server *srv, const char *name)
{
	if (!srv || !name)
		return false;
	for (struct nbd_export *e = srv->exports; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return true; /* a fenced one too: its clients are still draining */
	return false;
}

uint16_t nbd_server_tcp_port(const struct nbd_server *srv)
{
	return srv && srv->tcp_fd >= 0 ? srv->tcp_port : 0;
}
