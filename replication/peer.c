/* replication/peer.c — peer connections on the loop; see peer.h.
 *
 * Each connection reads what the socket has into its input buffer, cuts whole frames
 * from it with its session (the header first: a frame the session's state does not
 * allow is refused before its payload is waited for, so a stranger cannot make us
 * buffer more than one read's worth), hands session messages to dispatch(), and queues
 * what it sends in its output buffer, written as the socket takes it (by a loop task
 * that runs before the loop sleeps: requests and replies queued in one round go out
 * in one send). A peer that does not read its answers is not read from either, past
 * PEER_OUT_MAX queued bytes of answers (our own requests do not count: a client
 * always reads its replies, so two nodes that both send cannot stall each other).
 *
 * A client's requests wait in a list in the order sent (replies mostly come in that
 * order), with one loop timer per connection armed at the earliest deadline. A
 * server's requests being served are listed too, so that a connection that closes
 * first leaves them orphaned (their replies are dropped), never dangling.
 *
 * Connections are closed from one place, conn_close(), which logs the one line. A
 * close asked for while the connection's own callback runs (a pong callback calling
 * peer_conn_close) waits until that callback has returned.
 */
#include "replication/peer.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/stages.h"
#include "replication/peer_session.h"

#define LOG_TAG "peer"
#define PEER_ACCEPT_BATCH 32
#define PEER_READ_CHUNK (64u << 10)
#define PEER_READ_ROUNDS 16
#define PEER_OUT_MAX (1u << 20) /* queued answers past which we stop reading */
#define PEER_ADDR_MAX 64
#define PEER_STEAL_MIN (64u << 10) /* a served payload this large keeps the read buffer */
/* A served SEG_APPEND's data is put at a 4 KiB boundary (the holder's O_DIRECT writes
 * take it as it is); the data starts this far into its frame. */
#define DATA_ALIGN 4096u
#define APPEND_DATA_OFF (PEER_HDR_BYTES + sizeof(struct peer_seg_append))

/* A request of ours waiting for its reply. */
struct pending {
	struct pending *next, *prev;
	uint64_t id;
	uint64_t deadline; /* loop_now_ms() by which the reply is due; 0: none */
	uint8_t op;
	peer_reply_cb cb;
	void *arg;
};

/* A request of the peer's being served. */
struct peer_req {
	struct peer_conn *c;            /* NULL once the connection closed */
	struct peer_req *next, *prev;   /* c's requests being served */
	struct peer_hdr hdr;
	struct peer_seg_req seg;        /* the payload, decoded: its data points into it */
	const uint8_t *payload;
	uint8_t *mem;                   /* owned: what payload points into */
};

struct peer_conn {
	struct peer_endpoint *ep;
	struct peer_conn *next;
	int fd;
	struct loop_watch *watch;
	unsigned watched;          /* LOOP_* the watch has */
	struct peer_session *s;
	struct peer_buf in, out;
	size_t in_lead;            /* bytes before the frame at the head of in (in_align) */
	size_t out_sent;           /* bytes at the head of out already sent */
	size_t out_reqs;           /* bytes of our requests queued since out last drained */
	struct loop_send ring_send; /* the head of out, handed to the loop's next sleep */
	struct loop_recv *ring_recv; /* the loop's receive in its ring (then the watch has
				       no LOOP_READ), or NULL: the watch reads */
	struct loop_task *task;    /* writes out (and input held back) before the loop sleeps */
	struct loop_timer *hs_timer;
	struct pending *pend_head, *pend_tail;
	unsigned npending;
	uint64_t last_id;          /* our requests' ids: 1, 2, ... */
	struct loop_timer *req_timer; /* at the earliest pending deadline */
	uint64_t req_timer_due;
	struct peer_req *served;
	bool outgoing, connecting, open, closing;
	int send_err;              /* the peer reset the connection while the ring read:
				      nothing more is sent (conn_send_failed) */
	unsigned busy;             /* inside a callback of ours: close later */
	bool close_pending;
	int close_err;
	const char *close_why;
	const struct peer_conn_ops *ops;
	void *arg;
	char addr[PEER_ADDR_MAX];
};

struct peer_endpoint {
	struct loop *lp;
	const struct peer_secret *sec;
	uint64_t node_id;
	uint8_t instance[PEER_INSTANCE_BYTES];
	int listen_fd;
	uint16_t port;
	struct loop_watch *listen_watch;
	struct peer_conn *conns;
	unsigned nconns, handshakes;
	unsigned handshake_timeout_ms, max_handshakes, max_conns;
	void (*serve)(void *arg, struct peer_req *req);
	void *serve_arg;
	bool destroying;
};

static void conn_update_watch(struct peer_conn *c);
static void req_unlink(struct peer_req *req);

/* ---- flow control ---- */

static size_t conn_queued(const struct peer_conn *c)
{
	return c->out.len - c->out_sent;
}

/* Whether we read on: fewer than PEER_OUT_MAX bytes of answers wait to go out (our own
 * requests are not counted: a client reads its replies whatever it has queued). */
static bool conn_may_read(const struct peer_conn *c)
{
	size_t q = conn_queued(c);

	return (q > c->out_reqs ? q - c->out_reqs : 0) < PEER_OUT_MAX;
}

/* Output (or input held back) to move before the loop sleeps. */
static void conn_kick(struct peer_conn *c)
{
	loop_task_schedule(c->task);
}

/* The output buffer, about to grow (and maybe move): a send of it handed to the loop
 * and not made yet is taken back; the task hands it again, with what is added. (One
 * already made, in the sleep, has its fn still to run: conn_sent counts it.) */
static struct peer_buf *conn_out(struct peer_conn *c)
{
	if (c->ring_send.queued && !c->ring_send.done) {
		loop_send_cancel(c->ep->lp, &c->ring_send);
		conn_kick(c);
	}
	return &c->out;
}

/* ---- closing ---- */

static void conn_unlink(struct peer_conn *c)
{
	struct peer_conn **p;

	for (p = &c->ep->conns; *p != c; p = &(*p)->next)
		;
	*p = c->next;
	c->ep->nconns--;
	if (!c->open)
		c->ep->handshakes--;
}

/* Every request of ours ends with res (-ECONNRESET): the connection closes. */
static void pending_fail_all(struct peer_conn *c, int res)
{
	while (c->pend_head) {
		struct pending *p = c->pend_head;

		c->pend_head = p->next;
		c->npending--;
		p->cb(p->arg, res, NULL, NULL, 0);
		free(p);
	}
	c->pend_tail = NULL;
}

/* The requests being served outlive the connection: their replies are dropped. */
static void served_orphan_all(struct peer_conn *c)
{
	while (c->served) {
		struct peer_req *req = c->served;

		c->served = req->next;
		req->c = NULL;
		req->next = req->prev = NULL;
	}
}

/* The one place a connection ends: one log line (a refusal: a warning, rate-limited
 * so that a flood of strangers cannot flood the log), then every request of ours ends
 * (-ECONNRESET), then the outgoing connection's closed callback, then the memory. */
static void conn_close(struct peer_conn *c, int err, const char *why)
{
	if (c->closing)
		return; /* a callback of the close itself asked again */
	if (c->busy) {
		if (!c->close_pending) {
			c->close_pending = true;
			c->close_err = err;
			c->close_why = why;
		}
		return;
	}
	if (err)
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "peer %s: closed: %s (%s)", c->addr, why,
				err_str(err));
	else
		log_msg(LOG_INFO, LOG_TAG, "peer %s: %s", c->addr, why);
	c->closing = true;
	conn_unlink(c);
	loop_watch_remove(c->watch);
	loop_timer_cancel(c->hs_timer);
	loop_timer_cancel(c->req_timer);
	loop_task_destroy(c->task);
	loop_send_cancel(c->ep->lp, &c->ring_send); /* its fn must not run */
	loop_recv_stop(c->ring_recv); /* nor its: the loop frees it once the ring gave it
					 back (the ring holds the socket until then) */
	close(c->fd);
	served_orphan_all(c);
	pending_fail_all(c, -ECONNRESET);
	peer_session_destroy(c->s);
	peer_buf_free(&c->in);
	peer_buf_free(&c->out);
	if (c->ops && c->ops->closed)
		c->ops->closed(c->arg, c, err, why);
	free(c);
}

/* After a callback of ours: a close it asked for happens now. Returns true if c is
 * gone. */
static bool conn_unbusy(struct peer_conn *c)
{
	if (--c->busy == 0 && c->close_pending) {
		conn_close(c, c->close_err, c->close_why);
		return true;
	}
	return false;
}

void peer_conn_close(struct peer_conn *c)
{
	conn_close(c, 0, "closed by this node");
}

/* ---- output ---- */

/* After bytes went: the sent head of the buffer is dropped when all of it went, or
 * moved away once it is the larger half (so each byte is moved at most once on
 * average). */
static void conn_sent_bytes(struct peer_conn *c, size_t n)
{
	c->out_sent += n;
	if (c->outgoing)
		stages_mark("peer.sent");
	else
		stages_end("peer.sent"); /* a holder's reply */
	if (c->out_sent == c->out.len) {
		c->out.len = c->out_sent = c->out_reqs = 0;
	} else if (c->out_sent >= PEER_READ_CHUNK && c->out_sent >= c->out.len / 2) {
		peer_buf_consume(&c->out, c->out_sent);
		c->out_sent = 0;
	}
}

static void conn_out_drop(struct peer_conn *c);
static bool conn_send_failed(struct peer_conn *c, int err);

/* Writes what the socket takes, now. Returns 0 or -errno (the connection must
 * close, or conn_send_failed says otherwise). */
static int conn_flush_now(struct peer_conn *c)
{
	if (c->send_err) {
		conn_out_drop(c);
		return 0;
	}
	if (c->ring_send.queued)
		return 0; /* made in the sleep (its fn has yet to count it), or about to be */
	while (conn_queued(c)) {
		ssize_t n;

		stages_mark("peer.sending");
		n = send(c->fd, c->out.data + c->out_sent, conn_queued(c),
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		conn_sent_bytes(c, (size_t)n);
	}
	conn_update_watch(c);
	return 0;
}

/* The loop made the send of conn_flush() in its sleep (loop.h's loop_send). */
static void conn_sent(void *arg, long res)
{
	struct peer_conn *c = arg;
	size_t len = c->ring_send.len;

	if (res < 0 && res != -EAGAIN && res != -EWOULDBLOCK && res != -EINTR) {
		conn_send_failed(c, (int)-res);
		return;
	}
	if (res > 0)
		conn_sent_bytes(c, (size_t)res);
	if (res == (long)len && conn_queued(c))
		conn_kick(c); /* more came meanwhile: the socket took all, so hand it on */
	else if (c->in.len && conn_may_read(c))
		conn_kick(c); /* input held back while answers waited */
	conn_update_watch(c); /* a full socket: its room wakes us */
}

/* Writes what is queued: handed to the loop's next sleep (the sleep's system call
 * sends it, see loop.h) when its waiter takes sends, else now. Returns 0 or -errno
 * (the connection must close). */
static int conn_flush(struct peer_conn *c)
{
	if (c->ring_send.queued)
		return 0; /* handed already: conn_sent goes on */
	if (!conn_queued(c) || c->send_err)
		return conn_flush_now(c); /* (after a reset: drops it) */
	c->ring_send.fd = c->fd;
	c->ring_send.buf = c->out.data + c->out_sent;
	c->ring_send.len = conn_queued(c);
	c->ring_send.fn = conn_sent;
	c->ring_send.arg = c;
	if (loop_send_queue(c->ep->lp, &c->ring_send) < 0)
		return conn_flush_now(c);
	stages_mark("peer.sending");
	conn_update_watch(c);
	return 0;
}

/* Whether the loop's receive reads for c: it is in the ring, or goes in at the next
 * sleep (while c may read: flow control holds it back otherwise). */
static bool conn_ring_reads(const struct peer_conn *c)
{
	return c->ring_recv && conn_may_read(c);
}

static void conn_update_watch(struct peer_conn *c)
{
	unsigned want = 0;

	if (c->connecting || (conn_queued(c) && !c->ring_send.queued))
		want |= LOOP_WRITE;
	if (c->ring_recv)
		loop_recv_want(c->ring_recv, conn_ring_reads(c));
	else if (!c->connecting && conn_may_read(c))
		want |= LOOP_READ;
	if (want != c->watched && loop_watch_modify(c->watch, want) == 0)
		c->watched = want;
}

/* The output goes unsent (the peer reset the connection): queued, handed to the loop,
 * or queued from now on. */
static void conn_out_drop(struct peer_conn *c)
{
	loop_send_cancel(c->ep->lp, &c->ring_send);
	c->out.len = c->out_sent = c->out_reqs = 0;
	conn_update_watch(c); /* no LOOP_WRITE; the receive reads (flow control let go) */
}

/* A send failed with err: the connection closes, unless the peer reset it while the
 * ring's receive reads (ECONNRESET, then EPIPE): a holder that answered and closed
 * with a request of ours unread, as we sent the next. Then nothing more is sent, and
 * the receive reads on to the end of what the peer sent before (the socket is closed
 * now: its 0 or error comes at once), which closes (conn_input_end), as a hang-up
 * does while the receive reads (conn_event): its last replies reach their requests.
 * Returns false if c is gone. */
static bool conn_send_failed(struct peer_conn *c, int err)
{
	if (!c->ring_recv || (err != ECONNRESET && err != EPIPE)) {
		conn_close(c, err, "send failed");
		return false;
	}
	c->send_err = err;
	conn_out_drop(c);
	if (c->in.len)
		conn_kick(c); /* input held back while answers waited */
	return true;
}

/* A refusal after authentication tells the peer why (best effort), then closes. */
static void conn_refuse(struct peer_conn *c, int err, const char *why)
{
	uint8_t payload[sizeof(struct peer_error) + PEER_ERROR_MSG_MAX];
	struct peer_hdr h = { .op = PEER_OP_ERROR };

	if (c->open) {
		h.payload_len = (uint32_t)peer_error_encode(err, why, payload);
		if (peer_session_send(c->s, &h, payload, conn_out(c)) == 0)
			conn_flush_now(c);
	}
	conn_close(c, err, why);
}

/* ---- input ---- */

/* The handshake is done. Returns true if c is gone (its ready callback closed it). */
static bool conn_authenticated(struct peer_conn *c)
{
	c->open = true;
	c->ep->handshakes--;
	loop_timer_cancel(c->hs_timer);
	c->hs_timer = NULL;
	log_msg(LOG_INFO, LOG_TAG, "peer %s: authenticated (node %llu)", c->addr,
		(unsigned long long)peer_session_peer_node(c->s));
	if (!c->outgoing || !c->ops || !c->ops->ready)
		return false;
	c->busy++;
	c->ops->ready(c->arg, c);
	return conn_unbusy(c);
}

static int on_error_msg(struct peer_conn *c, const struct peer_frame *m)
{
	struct peer_error_msg e;
	char text[PEER_ERROR_MSG_MAX + 1];

	if (peer_error_decode(m->payload, m->hdr.payload_len, &e) < 0) {
		conn_close(c, EPROTO, "a malformed ERROR");
		return -1;
	}
	memcpy(text, e.msg, e.msg_len);
	text[e.msg_len] = '\0';
	for (char *p = text; *p; p++)
		if (*p < ' ' || *p > '~')
			*p = '?'; /* the peer's text goes to our log: printable only */
	log_msg(LOG_WARN, LOG_TAG, "peer %s: refused us: %s: %s", c->addr, err_str(e.err), text);
	conn_close(c, e.err, "the peer refused us");
	return -1;
}

/* ---- requests of ours and their replies ---- */

static void pending_unlink(struct peer_conn *c, struct pending *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		c->pend_head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		c->pend_tail = p->prev;
	c->npending--;
}

static struct pending *pending_find(const struct peer_conn *c, uint64_t id)
{
	struct pending *p;

	for (p = c->pend_head; p && p->id != id; p = p->next)
		;
	return p;
}

static void req_timeout(void *arg);

/* The request timer fires by due (the earliest deadline). */
static int req_timer_arm(struct peer_conn *c, uint64_t due)
{
	uint64_t now = loop_now_ms();
	int r;

	if (c->req_timer && c->req_timer_due <= due)
		return 0;
	loop_timer_cancel(c->req_timer);
	c->req_timer = NULL;
	r = loop_timer_add(c->ep->lp, due > now ? (unsigned)(due - now) : 0, req_timeout, c,
			   &c->req_timer);
	if (r == 0)
		c->req_timer_due = due;
	return r;
}

/* The earliest deadline came: a request past its own ends -ETIMEDOUT and closes the
 * connection (the others end -ECONNRESET); if none is (the one it was armed for was
 * answered), the timer waits for the next deadline. */
static void req_timeout(void *arg)
{
	struct peer_conn *c = arg;
	uint64_t now = loop_now_ms(), next = 0;
	struct pending *p, *after;
	bool late = false;

	c->req_timer = NULL;
	c->busy++;
	for (p = c->pend_head; p; p = after) {
		after = p->next;
		if (!p->deadline)
			continue;
		if (p->deadline > now) {
			next = next && next < p->deadline ? next : p->deadline;
			continue;
		}
		late = true;
		log_msg(LOG_WARN, LOG_TAG, "peer %s: no reply to %s (request %llu) in time", c->addr,
			peer_op_name(p->op), (unsigned long long)p->id);
		pending_unlink(c, p);
		p->cb(p->arg, -ETIMEDOUT, NULL, NULL, 0);
		free(p);
	}
	c->busy--;
	if (late) {
		conn_close(c, ETIMEDOUT, "a request was not answered in time");
		return;
	}
	if (c->close_pending) {
		conn_close(c, c->close_err, c->close_why);
		return;
	}
	if (next && req_timer_arm(c, next) < 0)
		conn_close(c, ENOMEM, "no memory for a request timer");
}

/* A segment op's reply: to the request it names, whose callback gets it in place. */
static int on_reply(struct peer_conn *c, const struct peer_frame *f)
{
	struct pending *p = pending_find(c, f->hdr.request_id);
	struct peer_seg_reply r;

	if (!p || (p->op | PEER_OP_REPLY) != f->hdr.op) {
		conn_refuse(c, EPROTO, "a reply that answers no request of ours");
		return -1;
	}
	if (peer_seg_reply_decode(f->hdr.op, f->payload, f->hdr.payload_len, &r) < 0) {
		conn_refuse(c, EPROTO, "a malformed reply");
		return -1;
	}
	pending_unlink(c, p);
	c->busy++;
	p->cb(p->arg, 0, &f->hdr, f->payload, f->hdr.payload_len);
	free(p);
	return conn_unbusy(c) ? -1 : 0;
}

/* Queues a frame of ours (a request, a PING): its bytes are not answers, so they do not
 * hold back our reading (conn_may_read). */
static int conn_send_ours(struct peer_conn *c, const struct peer_hdr *h, const void *head,
			  size_t head_len, const struct iovec *data, int datacnt)
{
	size_t before = c->out.len;
	int r = peer_session_sendv(c->s, h, head, head_len, data, datacnt, conn_out(c));

	stages_mark("peer.framed"); /* copied, MACed */
	if (r == 0) {
		c->out_reqs += c->out.len - before;
		conn_kick(c);
	}
	return r;
}

int peer_request(struct peer_conn *c, const struct peer_msg *m, unsigned timeout_ms,
		 peer_reply_cb cb, void *arg)
{
	struct peer_hdr h = { .op = m->op, .request_id = c->last_id + 1,
			      .volume_id = m->volume_id, .epoch = m->epoch };
	struct pending *p;
	int r;

	if (!c->open || c->closing || c->close_pending)
		return -ENOTCONN;
	if (!peer_op_seg_request(m->op) || m->datacnt < 0 || !cb)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->id = h.request_id;
	p->op = m->op;
	p->cb = cb;
	p->arg = arg;
	p->deadline = timeout_ms ? loop_now_ms() + timeout_ms : 0;
	r = p->deadline ? req_timer_arm(c, p->deadline) : 0;
	if (r == 0)
		r = conn_send_ours(c, &h, m->head, m->head_len, m->data, m->datacnt);
	if (r < 0) {
		free(p); /* a timer armed for it finds nothing late, and goes */
		return r;
	}
	c->last_id++;
	p->prev = c->pend_tail;
	if (c->pend_tail)
		c->pend_tail->next = p;
	else
		c->pend_head = p;
	c->pend_tail = p;
	c->npending++;
	return 0;
}

unsigned peer_conn_pending(const struct peer_conn *c)
{
	return c->npending;
}

/* ---- requests of the peer's, served ---- */

/* A served request keeps its payload until the reply. A large one takes the read
 * buffer itself (what follows the frame moves to a new one): no copy of the data
 * (in_align landed an APPEND's aligned); a small one is copied, an APPEND's data to
 * a 4 KiB boundary (the holder's write then needs no bounce copy of it). Returns 0,
 * 1 (the buffer was taken), or -ENOMEM. */
static int req_take_payload(struct peer_conn *c, struct peer_req *req,
			    const struct peer_frame *f, size_t end)
{
	struct peer_buf rest = { 0 };
	size_t len = f->hdr.payload_len, lead;

	if (len < PEER_STEAL_MIN) {
		lead = f->hdr.op == PEER_OP_SEG_APPEND ? DATA_ALIGN - sizeof(struct peer_seg_append)
						       : 0;
		req->mem = lead ? aligned_alloc(DATA_ALIGN, (lead + len + DATA_ALIGN - 1) /
								    DATA_ALIGN * DATA_ALIGN)
				: malloc(len ? len : 1);
		if (!req->mem)
			return -ENOMEM;
		memcpy(req->mem + lead, f->payload, len);
		req->payload = req->mem + lead;
		return 0;
	}
	if (peer_buf_reserve(&rest, PEER_READ_CHUNK) < 0 ||
	    peer_buf_append(&rest, c->in.data + end, c->in.len - end) < 0) {
		peer_buf_free(&rest);
		return -ENOMEM;
	}
	req->mem = c->in.data;
	req->payload = f->payload;
	c->in = rest;
	return 1;
}

static void req_free(struct peer_req *req)
{
	free(req->mem);
	free(req);
}

static void req_unlink(struct peer_req *req)
{
	struct peer_conn *c = req->c;

	if (!c)
		return;
	if (req->prev)
		req->prev->next = req->next;
	else
		c->served = req->next;
	if (req->next)
		req->next->prev = req->prev;
	req->c = NULL;
}

/* A segment op's request (the frame ends at `end` in the input buffer), to the serve
 * hook. Returns 0, 1 (the input buffer was taken: frames after it start at 0), or -1
 * if c is gone. */
static int on_request(struct peer_conn *c, const struct peer_frame *f, size_t end)
{
	struct peer_seg_req sr;
	struct peer_req *req;
	int r, taken;

	if (c->outgoing) {
		conn_refuse(c, EPROTO, "a request on a connection this node opened");
		return -1;
	}
	r = peer_seg_req_decode(f->hdr.op, f->payload, f->hdr.payload_len, &sr);
	if (r < 0) {
		conn_refuse(c, -r, "a malformed segment request");
		return -1;
	}
	req = calloc(1, sizeof(*req));
	taken = req ? req_take_payload(c, req, f, end) : -ENOMEM;
	if (taken < 0) {
		free(req);
		conn_close(c, ENOMEM, "no memory for a request");
		return -1;
	}
	req->hdr = f->hdr;
	req->seg = sr;
	if (sr.data) /* the payload's copy, or the same bytes in the buffer taken */
		req->seg.data = req->payload + (sr.data - f->payload);
	req->c = c;
	req->next = c->served;
	if (c->served)
		c->served->prev = req;
	c->served = req;
	c->busy++;
	stages_mark("peer.served"); /* decoded, MAC checked */
	r = peer_seg_req_check(&sr);
	if (r < 0) /* well formed, but not a request the op allows: its answer says so */
		peer_req_refuse(req, r);
	else if (c->ep->serve)
		c->ep->serve(c->ep->serve_arg, req);
	else
		peer_req_refuse(req, -EOPNOTSUPP);
	return conn_unbusy(c) ? -1 : taken;
}

const struct peer_hdr *peer_req_hdr(const struct peer_req *req)
{
	return &req->hdr;
}

const void *peer_req_payload(const struct peer_req *req, size_t *len)
{
	*len = req->hdr.payload_len;
	return req->payload;
}

const struct peer_seg_req *peer_req_seg(const struct peer_req *req)
{
	return &req->seg;
}

int peer_req_reply(struct peer_req *req, const struct peer_msg *reply)
{
	struct peer_conn *c = req->c;
	struct peer_hdr h = { .op = reply->op, .request_id = req->hdr.request_id,
			      .volume_id = reply->volume_id, .epoch = reply->epoch };
	int r = -ENOTCONN;

	req_unlink(req);
	if (c && !c->closing) {
		r = reply->op == (req->hdr.op | PEER_OP_REPLY) && reply->datacnt >= 0
			    ? peer_session_sendv(c->s, &h, reply->head, reply->head_len,
						 reply->data, reply->datacnt, conn_out(c))
			    : -EINVAL;
		if (r == 0)
			conn_kick(c);
		else
			conn_close(c, -r, "cannot queue a reply");
	}
	req_free(req);
	return r;
}

int peer_req_refuse(struct peer_req *req, int res)
{
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct peer_seg_reply no = { .result = res };
	struct peer_msg m = { .op = req->hdr.op | PEER_OP_REPLY, .volume_id = req->hdr.volume_id,
			      .epoch = req->hdr.epoch, .head = head };

	m.head_len = peer_seg_reply_encode(m.op, &no, head);
	return peer_req_reply(req, &m);
}

void peer_req_drop(struct peer_req *req)
{
	req_unlink(req);
	req_free(req);
}

/* ---- dispatch ---- */

/* A message of an authenticated session (the frame ends at `end` in the input
 * buffer). Returns 0, 1 (the input buffer was taken), or -1 if c is gone. */
static int dispatch(struct peer_conn *c, const struct peer_frame *m, size_t end)
{
	struct peer_hdr reply = m->hdr;
	int r;

	if (peer_op_seg_request(m->hdr.op))
		return on_request(c, m, end);
	if (peer_op_seg_reply(m->hdr.op))
		return on_reply(c, m);
	switch (m->hdr.op) {
	case PEER_OP_PING:
		reply.op = PEER_OP_PONG;
		r = peer_session_send(c->s, &reply, m->payload, conn_out(c));
		if (r < 0) {
			conn_close(c, -r, "cannot queue a PONG");
			return -1;
		}
		return 0;
	case PEER_OP_PONG:
		if (!c->outgoing) {
			conn_refuse(c, EPROTO, "a PONG that answers no PING of ours");
			return -1;
		}
		if (c->ops && c->ops->pong) {
			c->busy++;
			c->ops->pong(c->arg, c, m->hdr.request_id, m->payload, m->hdr.payload_len);
			return conn_unbusy(c) ? -1 : 0;
		}
		return 0;
	default: /* PEER_OP_ERROR: the session lets no other op through */
		return on_error_msg(c, m);
	}
}

/* A large SEG_APPEND whose header is in but not its data (the frame of `need` bytes
 * at `done`): it moves to a new buffer where its data will land 4 KiB aligned, so that
 * the holder writes it as it is (O_DIRECT) instead of copying it to a bounce buffer;
 * the frame then takes that buffer (req_take_payload). Only an optimisation: a frame
 * not moved (no memory, a realloc later) is still whole, just not aligned. Returns 0
 * (room reserved in place), 1 (moved: the frame starts at c->in_lead) or -ENOMEM. */
static int in_align(struct peer_conn *c, size_t done, size_t need)
{
	struct peer_hdr h;
	size_t have = c->in.len - done, lead, cap;
	uint8_t *nb;

	if (c->outgoing || peer_hdr_decode(c->in.data + done, have, &h) < 0 ||
	    h.op != PEER_OP_SEG_APPEND || h.payload_len < PEER_STEAL_MIN)
		return peer_buf_reserve(&c->in, need - have);
	lead = (DATA_ALIGN - APPEND_DATA_OFF % DATA_ALIGN) % DATA_ALIGN;
	cap = (lead + need + PEER_READ_CHUNK + DATA_ALIGN - 1) / DATA_ALIGN * DATA_ALIGN;
	nb = aligned_alloc(DATA_ALIGN, cap);
	if (!nb)
		return peer_buf_reserve(&c->in, need - have);
	memcpy(nb + lead, c->in.data + done, have);
	free(c->in.data);
	c->in = (struct peer_buf){ .data = nb, .len = lead + have, .cap = cap };
	c->in_lead = lead;
	return 1;
}

/* Cuts and handles every whole frame in the input buffer. Returns 0, or -1 if c is
 * gone. */
static int conn_process(struct peer_conn *c)
{
	size_t done = c->in_lead; /* a frame moved by in_align starts after its lead */

	while (conn_may_read(c)) {
		struct peer_frame m;
		const char *why = NULL;
		size_t need;
		int r = peer_session_frame_len(c->s, c->in.data + done, c->in.len - done, &need,
					       &why);

		if (r == 0 && (need == 0 || c->in.len - done < need)) {
			r = need && !c->in_lead && need > c->in.cap - done ? in_align(c, done, need)
									   : 0;
			if (r < 0) {
				why = "no memory for a frame";
			} else {
				if (r == 1)
					done = c->in_lead; /* the frame's place in the new buffer */
				break;
			}
		}
		if (r == 0)
			r = peer_session_input(c->s, c->in.data + done, need, &m, conn_out(c), &why);
		if (r < 0) {
			conn_refuse(c, -r, why);
			return -1;
		}
		done += need;
		c->in_lead = 0;
		if (!c->open && peer_session_is_open(c->s) && conn_authenticated(c))
			return -1;
		if (r == 1) {
			r = dispatch(c, &m, done);
			if (r < 0)
				return -1;
			if (r == 1)
				done = 0; /* a request took the buffer; the rest starts a new one */
		}
	}
	if (done > c->in_lead)
		peer_buf_consume(&c->in, done); /* (a moved frame keeps its place) */
	return 0;
}

/* The end of the byte stream (n: 0) or a failed receive (n: -errno): c closes. */
static void conn_input_end(struct peer_conn *c, long n)
{
	if (n == 0 && c->send_err && c->in.len == 0)
		conn_close(c, c->send_err, "reset by the peer (what it sent before is read)");
	else if (n == 0 && c->open && c->in.len == 0)
		conn_close(c, 0, "closed by the peer");
	else
		conn_close(c, n == 0 ? EPIPE : (int)-n,
			   n < 0 ? "receive failed" :
			   c->open ? "closed by the peer mid-frame (truncated)" :
				     "closed by the peer during the handshake");
}

/* n bytes came into the input buffer: the frames they complete are handled. Returns
 * 0, or -1 if c is gone. */
static int conn_input(struct peer_conn *c, size_t n)
{
	c->in.len += n;
	if (!c->outgoing)
		stages_begin(); /* a holder: a request came */
	stages_mark("peer.recv");
	return conn_process(c);
}

/* Reads what the socket has, a few rounds at most (other connections get their turn).
 * Returns 0, or -1 if c is gone. */
static int conn_read(struct peer_conn *c)
{
	for (int round = 0; round < PEER_READ_ROUNDS && conn_may_read(c); round++) {
		size_t room;
		ssize_t n;

		if (peer_buf_reserve(&c->in, PEER_READ_CHUNK) < 0) {
			conn_close(c, ENOMEM, "no memory for input");
			return -1;
		}
		room = c->in.cap - c->in.len;
		n = recv(c->fd, c->in.data + c->in.len, room, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0) {
			conn_input_end(c, n < 0 ? -errno : 0);
			return -1;
		}
		if (conn_input(c, (size_t)n) < 0)
			return -1;
		/* less than there was room for, and only whole frames: the socket is empty
		 * now, and the next recv would only say EAGAIN (a system call per frame, on
		 * every hop of a replicated write). The watch is level-triggered: what
		 * arrives meanwhile wakes the loop again. The rest of a frame cut short is
		 * read on at once: it is on its way (a large append, sent as it is read). */
		if ((size_t)n < room && c->in.len == c->in_lead)
			return 0;
	}
	return 0;
}

static void conn_pump(void *arg);

/* The loop's receive in its ring completed (loop.h's loop_recv): the bytes join the
 * input buffer (one copy: the ring's buffer is the loop's, so that a close never
 * leaves the kernel one of ours) and are handled as conn_read's; the receive goes in
 * again at the next sleep while c may read. */
static void conn_received(void *arg, const void *data, long res)
{
	struct peer_conn *c = arg;

	if (res == -EINTR || res == -EAGAIN || res == -EWOULDBLOCK)
		return;
	if (res <= 0) {
		conn_input_end(c, res);
		return;
	}
	if (peer_buf_reserve(&c->in, (size_t)res) < 0) {
		conn_close(c, ENOMEM, "no memory for input");
		return;
	}
	memcpy(c->in.data + c->in.len, data, (size_t)res);
	if (conn_input(c, (size_t)res) < 0)
		return;
	/* a full buffer: a large frame is coming (a chunk, a SEG_READ's reply), read
	 * on now with conn_read, while c may read (the receive is out of the ring until
	 * the next sleep, so the bytes stay in order), not one loop turn per 64 KiB */
	if ((size_t)res == PEER_READ_CHUNK && conn_read(c) < 0)
		return;
	conn_pump(c);
}

/* Reads through the loop's ring from now on, when its waiter keeps receives (else the
 * watch reads). 0 or -errno. */
static int conn_ring_recv(struct peer_conn *c)
{
	int r = loop_recv_start(c->ep->lp, c->fd, PEER_READ_CHUNK, conn_received, c,
				&c->ring_recv);

	if (r == -ENOTSUP)
		return 0;
	if (r == 0)
		conn_update_watch(c);
	return r;
}

static int conn_connected(struct peer_conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		conn_close(c, err, "cannot connect");
		return -1;
	}
	c->connecting = false;
	err = -conn_ring_recv(c);
	if (err) {
		conn_close(c, err, "cannot receive through the loop");
		return -1;
	}
	err = -peer_session_hello(c->s, conn_out(c));
	if (err) {
		conn_close(c, err, "cannot start the handshake");
		return -1;
	}
	return 0;
}

/* Handles input held back while answers waited, and writes what is queued. When the
 * write made room for input held back, the task comes again before the loop sleeps
 * (no socket event would bring it). */
static void conn_pump(void *arg)
{
	struct peer_conn *c = arg;
	bool held = !conn_may_read(c);
	int r;

	if (c->connecting)
		return;
	if (c->in.len && !held && conn_process(c) < 0)
		return;
	r = conn_flush(c);
	if (r < 0 && !conn_send_failed(c, -r))
		return;
	if (held && c->in.len && conn_may_read(c))
		conn_kick(c);
}

static void conn_event(void *arg, unsigned events)
{
	struct peer_conn *c = arg;

	if (c->connecting && conn_connected(c) < 0)
		return;
	if ((events & LOOP_READ) && c->ring_recv && !conn_ring_reads(c)) {
		/* the watch asks for no input: this is a hang-up or an error (epoll reports
		 * those always, and again at every sleep while they last), and the receive
		 * is held back (flow control): waiting for it would leave this one spinning.
		 * While the receive reads on, a hang-up closes nothing: the socket says it
		 * with frames still unread (a peer's last replies or appends before its
		 * close, when a completion brought part of them), which the receive takes
		 * first, then its 0 or error ends the connection (conn_input_end); each
		 * sleep until then completes the receive, so nothing spins. */
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		conn_close(c, err ? err : EPIPE, "connection hung up");
		return;
	}
	if ((events & LOOP_READ) && !c->ring_recv && conn_may_read(c) && conn_read(c) < 0)
		return;
	conn_pump(c);
}

static void handshake_timeout(void *arg)
{
	struct peer_conn *c = arg;

	c->hs_timer = NULL;
	conn_close(c, ETIMEDOUT, c->connecting ? "connect timed out"
					       : "handshake not finished in time");
}

/* ---- connections ---- */

static void format_addr(const struct sockaddr *sa, socklen_t len, char *out)
{
	char host[INET6_ADDRSTRLEN], port[8];

	if (getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(out, PEER_ADDR_MAX, "(unknown)");
		return;
	}
	snprintf(out, PEER_ADDR_MAX, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

/* Takes fd (closed on failure). */
static int conn_create(struct peer_endpoint *ep, int fd, bool outgoing, const char *addr,
		       struct peer_conn **out)
{
	struct peer_session_opts so = { .role = outgoing ? PEER_CLIENT : PEER_SERVER,
					.secret = ep->sec, .node_id = ep->node_id,
					.instance = ep->instance };
	struct peer_conn *c = calloc(1, sizeof(*c));
	int one = 1, r = -ENOMEM;

	if (!c)
		goto err_close_fd;
	c->ep = ep;
	c->fd = fd;
	c->outgoing = outgoing;
	c->connecting = outgoing;
	snprintf(c->addr, sizeof(c->addr), "%s", addr);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	r = peer_session_create(&so, &c->s);
	if (r < 0)
		goto err_free_conn;
	c->watched = outgoing ? LOOP_WRITE : LOOP_READ;
	r = loop_task_create(ep->lp, conn_pump, c, &c->task);
	if (r < 0)
		goto err_destroy_session;
	r = loop_watch_add(ep->lp, fd, c->watched, conn_event, c, &c->watch);
	if (r < 0)
		goto err_destroy_task;
	r = loop_timer_add(ep->lp, ep->handshake_timeout_ms, handshake_timeout, c, &c->hs_timer);
	if (r < 0)
		goto err_remove_watch;
	r = outgoing ? 0 : conn_ring_recv(c);
	if (r < 0)
		goto err_cancel_timer;
	c->next = ep->conns;
	ep->conns = c;
	ep->nconns++;
	ep->handshakes++;
	*out = c;
	return 0;

err_cancel_timer:
	loop_timer_cancel(c->hs_timer);
err_remove_watch:
	loop_watch_remove(c->watch);
err_destroy_task:
	loop_task_destroy(c->task);
err_destroy_session:
	peer_session_destroy(c->s);
err_free_conn:
	free(c);
err_close_fd:
	close(fd);
	return r;
}

static void accept_one(struct peer_endpoint *ep, int fd, const struct sockaddr *sa,
		       socklen_t len)
{
	char addr[PEER_ADDR_MAX];
	struct peer_conn *c;
	int r;

	format_addr(sa, len, addr);
	if (ep->handshakes >= ep->max_handshakes || ep->nconns >= ep->max_conns) {
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "peer %s: refused: %s", addr,
				ep->nconns >= ep->max_conns ? "too many peer connections"
							    : "too many handshakes at once");
		close(fd);
		return;
	}
	r = conn_create(ep, fd, false, addr, &c);
	if (r < 0)
		LOG_RATELIMITED(LOG_WARN, LOG_TAG, "peer %s: refused: %s", addr, err_str(-r));
}

static void listener_event(void *arg, unsigned events)
{
	struct peer_endpoint *ep = arg;

	(void)events;
	for (int i = 0; i < PEER_ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(ep->listen_fd, (struct sockaddr *)&ss, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				LOG_RATELIMITED(LOG_WARN, LOG_TAG, "accept: %s", err_str(errno));
			return;
		}
		accept_one(ep, fd, (struct sockaddr *)&ss, len);
	}
}

static int resolve(const char *addr, uint16_t port, bool passive, struct addrinfo **res)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV |
					      (passive ? AI_PASSIVE : 0) };
	char service[8];

	snprintf(service, sizeof(service), "%u", port);
	return getaddrinfo(addr, service, &hints, res) == 0 ? 0 : -EINVAL;
}

int peer_addr_parse(const char *text, char *addr, size_t size, uint16_t *port)
{
	const char *colon = strrchr(text, ':'), *start = text;
	struct addrinfo *ai;
	unsigned long p;
	size_t len;
	char *end;

	if (!colon)
		return -EINVAL;
	len = (size_t)(colon - text);
	if (*start == '[' && len >= 2 && colon[-1] == ']') {
		start++;
		len -= 2;
	}
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (len == 0 || len >= size || !colon[1] || *end || errno || p == 0 || p > 65535)
		return -EINVAL;
	memcpy(addr, start, len);
	addr[len] = '\0';
	*port = (uint16_t)p;
	if (resolve(addr, *port, false, &ai) < 0)
		return -EINVAL;
	freeaddrinfo(ai);
	return 0;
}

int peer_connect(struct peer_endpoint *ep, const char *addr, uint16_t port,
		 const struct peer_conn_ops *ops, void *arg, struct peer_conn **out)
{
	struct addrinfo *ai;
	struct peer_conn *c;
	char name[PEER_ADDR_MAX];
	int fd, r = ep->destroying ? -ESHUTDOWN : resolve(addr, port, false, &ai);

	if (r < 0)
		return r;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)) {
		r = -errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return r;
	}
	format_addr(ai->ai_addr, ai->ai_addrlen, name);
	freeaddrinfo(ai);
	r = conn_create(ep, fd, true, name, &c);
	if (r < 0)
		return r;
	c->ops = ops;
	c->arg = arg;
	*out = c;
	return 0;
}

int peer_ping(struct peer_conn *c, uint64_t request_id, const void *payload, size_t len)
{
	struct peer_hdr h = { .op = PEER_OP_PING, .request_id = request_id };

	if (!c->open)
		return -ENOTCONN;
	if (len > PEER_PING_MAX)
		return -EMSGSIZE;
	if (c->closing || c->close_pending)
		return -ENOTCONN;
	return conn_send_ours(c, &h, payload, len, NULL, 0);
}

/* ---- the endpoint ---- */

static int listen_on(struct peer_endpoint *ep, const char *addr, uint16_t port)
{
	struct addrinfo *ai;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int one = 1, r = resolve(addr, port, true, &ai);

	if (r < 0) {
		log_msg(LOG_ERROR, LOG_TAG, "peer-listen %s: not a numeric address", addr);
		return r;
	}
	ep->listen_fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ep->listen_fd < 0 ||
	    setsockopt(ep->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(ep->listen_fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(ep->listen_fd, 128) < 0 ||
	    getsockname(ep->listen_fd, (struct sockaddr *)&ss, &len) < 0) {
		r = -errno;
		log_msg(LOG_ERROR, LOG_TAG, "peer listener on %s:%u: %s", addr, port, err_str(r));
		freeaddrinfo(ai);
		return r;
	}
	freeaddrinfo(ai);
	ep->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						  : ((struct sockaddr_in *)&ss)->sin_port);
	return loop_watch_add(ep->lp, ep->listen_fd, LOOP_READ, listener_event, ep,
			      &ep->listen_watch);
}

int peer_endpoint_create(const struct peer_endpoint_opts *opts, struct peer_endpoint **out)
{
	struct peer_endpoint *ep;
	int r;

	if (!opts->loop || !opts->secret)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return -ENOMEM;
	ep->lp = opts->loop;
	ep->sec = opts->secret;
	ep->node_id = opts->node_id;
	ep->listen_fd = -1;
	ep->handshake_timeout_ms = opts->handshake_timeout_ms ? opts->handshake_timeout_ms
							      : PEER_DEFAULT_HANDSHAKE_TIMEOUT_MS;
	ep->max_handshakes = opts->max_handshakes ? opts->max_handshakes
						  : PEER_DEFAULT_MAX_HANDSHAKES;
	ep->max_conns = opts->max_conns ? opts->max_conns : PEER_DEFAULT_MAX_CONNS;
	ep->serve = opts->serve;
	ep->serve_arg = opts->serve_arg;
	randombytes_buf(ep->instance, sizeof(ep->instance));
	if (opts->listen_addr) {
		r = listen_on(ep, opts->listen_addr, opts->listen_port);
		if (r < 0) {
			peer_endpoint_destroy(ep);
			return r;
		}
	}
	*out = ep;
	return 0;
}

void peer_endpoint_destroy(struct peer_endpoint *ep)
{
	if (!ep)
		return;
	ep->destroying = true; /* the closes' callbacks cannot connect again */
	while (ep->conns)
		conn_close(ep->conns, 0, "this node stops");
	loop_watch_remove(ep->listen_watch);
	if (ep->listen_fd >= 0)
		close(ep->listen_fd);
	free(ep);
}

uint16_t peer_endpoint_port(const struct peer_endpoint *ep)
{
	return ep->port;
}
