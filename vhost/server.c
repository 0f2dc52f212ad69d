/* vhost/server.c — exports (one open volume and one listening unix socket each),
 * the front-end's connection and its socket I/O.
 *
 * Input is read one message at a time: the 12-byte header with recvmsg() (its
 * SCM_RIGHTS fds arrive with it), then exactly its payload, so fds never mix
 * between messages. Replies are small; they are written at once and, if the
 * socket is full, the rest waits for LOOP_WRITE.
 */
#include "vhost/vhost_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/unixsock.h"

#define UNEXPORT_GRACE_MS 5000

/* ---- connection output ---- */

static void conn_update_watch(struct vhost_conn *c)
{
	unsigned want = c->state == VHOST_CS_DRAIN ? 0 : LOOP_READ;

	if (c->out_len)
		want |= LOOP_WRITE;
	if (want != c->watch_events && loop_watch_modify(c->watch, want) == 0)
		c->watch_events = want;
}

/* A connection that cannot be written to any more is shut down, not freed: its
 * callers (a handler, a completion) may still hold it. The loop then sees the
 * hang-up and closes it from conn_event. */
static void conn_abort(struct vhost_conn *c, const char *why)
{
	LOG_RATELIMITED(LOG_INFO, VHOST_LOG, "%s: front-end connection failed: %s",
			c->exp->name, why);
	c->out_len = 0;
	shutdown(c->fd, SHUT_RDWR);
}

static void conn_flush(struct vhost_conn *c)
{
	while (c->out_len) {
		ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_abort(c, err_str(errno));
			return;
		}
		memmove(c->out, c->out + n, c->out_len - (size_t)n);
		c->out_len -= (size_t)n;
	}
}

void vhost_conn_reply(struct vhost_conn *c, uint32_t request, const void *payload, uint32_t len)
{
	struct vhost_user_hdr h = { .request = request,
				    .flags = VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY,
				    .size = len };

	if (c->state == VHOST_CS_DEAD)
		return;
	if (c->out_len + sizeof(h) + len > sizeof(c->out)) {
		conn_abort(c, "it does not read its replies");
		return;
	}
	memcpy(c->out + c->out_len, &h, sizeof(h));
	if (len)
		memcpy(c->out + c->out_len + sizeof(h), payload, len);
	c->out_len += sizeof(h) + len;
	conn_flush(c);
	conn_update_watch(c);
}

/* ---- the volume: claimed while a front-end is connected ---- */

static void export_holder(struct vhost_export *exp, const char *state)
{
	char holder[BLK_HOLDER_MAX + 1];

	snprintf(holder, sizeof(holder), "vhost-user by %s (%s)", exp->path, state);
	blk_set_holder(exp->dev, holder);
}

/* A front-end connected: the export opens its volume for it (one writer at a time;
 * a snapshot never conflicts). A front-end that comes back before the last one's
 * release finished keeps the claim. -EBUSY held elsewhere, -ENOENT gone. */
static int export_claim(struct vhost_export *exp)
{
	int r;

	if (exp->dev && blk_fenced(exp->dev)) {
		/* the node lost the volume while the last front-end was here: open it
		 * again (the guard decides), once that one's requests are over */
		if (exp->nreqs || exp->flushing)
			return -ESTALE;
		blk_close(exp->dev);
		exp->dev = NULL;
	}
	exp->releasing = false;
	if (!exp->dev) {
		r = blk_open(exp->srv->eng, exp->srv->guard, exp->name, &exp->dev);
		if (r < 0)
			return r;
	}
	export_holder(exp, "front-end connected");
	return 0;
}

static void release_flushed(void *arg, int res)
{
	struct vhost_export *exp = arg;

	exp->flushing = false;
	if (res < 0)
		log_msg(LOG_WARN, VHOST_LOG, "%s: flush after the front-end left: %s", exp->name,
			err_str(-res));
	if (!exp->releasing)
		return; /* a front-end came back: the claim goes on */
	if (exp->nreqs)
		return; /* one came and went meanwhile: its last request calls again */
	exp->releasing = false;
	blk_close(exp->dev);
	exp->dev = NULL;
	log_msg(LOG_INFO, VHOST_LOG, "%s: volume released (no front-end on %s)", exp->name,
		exp->path);
}

void vhost_export_release(struct vhost_export *exp)
{
	int r;

	if (!exp->dev)
		return;
	exp->releasing = true;
	if (exp->flushing)
		return; /* release_flushed looks again */
	if (exp->nreqs) {
		export_holder(exp, "front-end gone, its requests finishing");
		return; /* the last one to complete calls again */
	}
	export_holder(exp, "front-end gone, flushing");
	exp->flushing = true;
	r = blk_flush(exp->dev, release_flushed, exp);
	if (r < 0)
		release_flushed(exp, r);
}

/* ---- connection lifetime ---- */

/* Closes the socket, orphans the requests in flight, unmaps memory, frees c. Only
 * from the connection's own socket event or the export's end (see conn_abort). */
static void vhost_conn_close(struct vhost_conn *c, const char *reason)
{
	struct vhost_export *exp = c->exp;

	if (c->state == VHOST_CS_DEAD)
		return;
	log_msg(LOG_INFO, VHOST_LOG, "%s: front-end disconnected%s%s (%u requests in flight "
		"dropped)", exp->name, reason ? ": " : "", reason ? reason : "", exp->nreqs);
	vhost_proto_stop_queues(c);   /* orphans the requests: they forget guest memory */
	c->state = VHOST_CS_DEAD;
	loop_timer_cancel(c->call_timer);
	loop_watch_remove(c->watch);
	close(c->fd);
	for (unsigned i = 0; i < c->nfds; i++)
		if (c->fds[i] >= 0)
			close(c->fds[i]);
	vhost_mem_put(c->mem);
	exp->conn = NULL;
	free(c);
	vhost_export_release(exp);
}

void vhost_conn_resume(struct vhost_conn *c)
{
	conn_update_watch(c);
}

/* ---- connection input ---- */

static void collect_fds(struct vhost_conn *c, struct msghdr *mh)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		size_t n;
		int fds[VHOST_USER_MAX_REGIONS];

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (n > VHOST_USER_MAX_REGIONS)
			n = VHOST_USER_MAX_REGIONS; /* MSG_CTRUNC closed the rest */
		memcpy(fds, CMSG_DATA(cm), n * sizeof(int));
		for (size_t i = 0; i < n; i++) {
			if (c->nfds < VHOST_USER_MAX_REGIONS)
				c->fds[c->nfds++] = fds[i];
			else
				close(fds[i]);
		}
	}
}

/* Reads into dst; returns bytes, 0 on EOF, -EAGAIN, or -errno. */
static ssize_t conn_recv(struct vhost_conn *c, void *dst, size_t len, bool with_fds)
{
	union {
		char buf[CMSG_SPACE(VHOST_USER_MAX_REGIONS * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { dst, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (with_fds) {
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
	}
	do
		n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (with_fds)
		collect_fds(c, &mh);
	return n;
}

/* Reads what is available of the current message; true when it is complete. */
static bool read_message(struct vhost_conn *c)
{
	ssize_t n;

	if (c->state == VHOST_CS_HDR) {
		n = conn_recv(c, (uint8_t *)&c->hdr + c->hdr_got, sizeof(c->hdr) - c->hdr_got, true);
		if (n > 0 && (c->hdr_got += (size_t)n) == sizeof(c->hdr)) {
			if ((c->hdr.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION) {
				vhost_conn_close(c, "unknown vhost-user version");
				return false;
			}
			if (c->hdr.size > VHOST_USER_PAYLOAD_MAX) {
				vhost_conn_close(c, "message too large");
				return false;
			}
			c->state = VHOST_CS_PAYLOAD;
			c->payload_got = 0;
			if (c->hdr.size == 0)
				return true;
		}
	} else {
		n = conn_recv(c, c->payload + c->payload_got, c->hdr.size - c->payload_got, false);
		if (n > 0 && (c->payload_got += (size_t)n) == c->hdr.size)
			return true;
	}
	if (n == 0)
		vhost_conn_close(c, c->hdr_got || c->state == VHOST_CS_PAYLOAD ?
					    "in the middle of a message" : NULL);
	else if (n < 0 && n != -EAGAIN)
		vhost_conn_close(c, err_str((int)-n));
	return false;
}

static void conn_read(struct vhost_conn *c)
{
	struct vhost_export *exp = c->exp;

	while (exp->conn == c && (c->state == VHOST_CS_HDR || c->state == VHOST_CS_PAYLOAD)) {
		bool more;

		if (!read_message(c)) {
			/* an EAGAIN leaves c alive; a close frees it */
			return;
		}
		c->state = VHOST_CS_HDR;
		c->hdr_got = 0;
		vhost_proto_dispatch(c);
		more = exp->conn == c;
		if (!more)
			return;
	}
}

static void conn_event(void *arg, unsigned events)
{
	struct vhost_conn *c = arg;
	struct vhost_export *exp = c->exp;

	if (events & LOOP_WRITE)
		conn_flush(c);
	if (exp->conn != c)
		return;
	if (events & LOOP_READ) {
		/* while draining no input is wanted: only a hang-up wakes us */
		if (c->state == VHOST_CS_DRAIN && unixsock_hung_up(c->fd))
			vhost_conn_close(c, "hung up while its requests were draining");
		else if (c->state != VHOST_CS_DRAIN)
			conn_read(c);
	}
	if (exp->conn == c)
		conn_update_watch(c);
}

static void conn_create(struct vhost_export *exp, int fd)
{
	struct vhost_conn *c = calloc(1, sizeof(*c));

	if (!c) {
		LOG_RATELIMITED(LOG_WARN, VHOST_LOG, "%s: out of memory, front-end refused",
				exp->name);
		close(fd);
		vhost_export_release(exp);
		return;
	}
	c->exp = exp;
	c->fd = fd;
	c->state = VHOST_CS_HDR;
	c->nqueues = exp->srv->num_queues;
	for (unsigned i = 0; i < VHOST_QUEUES_MAX; i++) {
		c->queues[i].conn = c;
		c->queues[i].index = i;
		c->queues[i].kick_fd = c->queues[i].call_fd = -1;
		c->queues[i].enabled = true;
	}
	if (loop_watch_add(exp->srv->lp, fd, LOOP_READ, conn_event, c, &c->watch) < 0) {
		close(fd);
		free(c);
		vhost_export_release(exp);
		return;
	}
	c->watch_events = LOOP_READ;
	exp->size = blk_size(exp->dev); /* a resize shows on reconnect */
	exp->conn = c;
	exp->connections++;
	log_msg(LOG_INFO, VHOST_LOG, "%s: front-end connected on %s", exp->name, exp->path);
}

/* The volume cannot be claimed: the connection is closed before any message is
 * answered, so QEMU's device fails to start (vhost-user has no way to say why:
 * quilld's log does). */
static void refuse(struct vhost_export *exp, int fd, int err)
{
	char why[BLK_HOLDER_MAX + VOLSPEC_MAX + 64];

	if (!blk_open_refusal(exp->srv->eng, exp->srv->guard, exp->name, err, why, sizeof(why)))
		snprintf(why, sizeof(why), "volume '%s': %s", exp->name, err_str(-err));
	LOG_RATELIMITED(LOG_WARN, VHOST_LOG, "%s: front-end on %s refused: %s%s", exp->name,
			exp->path, why, err == -EBUSY ? ": a volume has one writer at a time "
			"(the VM's disk fails to start; detach the other client first)" : "");
	exp->refused++;
	close(fd);
}

static void accept_ready(void *arg, unsigned events)
{
	struct vhost_export *exp = arg;
	int fd, r;

	(void)events;
	fd = accept4(exp->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (exp->conn) {
		LOG_RATELIMITED(LOG_WARN, VHOST_LOG, "%s: refused a second front-end: one at a "
				"time", exp->name);
		close(fd);
		return;
	}
	r = export_claim(exp);
	if (r < 0) {
		refuse(exp, fd, r);
		return;
	}
	conn_create(exp, fd);
}

/* ---- exports ---- */

static struct vhost_export *export_find(const struct vhost_server *srv, const char *name)
{
	for (struct vhost_export *e = srv->exports; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

static int export_listen(struct vhost_export *exp, const char *path)
{
	int fd = unixsock_listen(path, 0600, 4);

	if (fd < 0)
		return fd;
	exp->listen_fd = fd;
	snprintf(exp->path, sizeof(exp->path), "%s", path);
	return loop_watch_add(exp->srv->lp, fd, LOOP_READ, accept_ready, exp, &exp->listen_watch);
}

/* Not from an engine callback: it polls the engine until the orphans are gone. */
static void export_free(struct vhost_export *exp)
{
	uint64_t deadline = loop_now_ms() + UNEXPORT_GRACE_MS;

	loop_watch_remove(exp->listen_watch);
	if (exp->listen_fd >= 0)
		close(exp->listen_fd);
	if (exp->path[0])
		unlink(exp->path);
	if (exp->conn)
		vhost_conn_close(exp->conn, "export stopped");
	while ((exp->nreqs || exp->flushing) && loop_now_ms() < deadline)
		if (blk_poll(exp->srv->eng, 10) < 0)
			break;
	if (exp->nreqs || exp->flushing) {
		/* the engine is stuck: leak the orphans rather than free what it may use */
		log_msg(LOG_ERROR, VHOST_LOG, "%s: %u requests never completed", exp->name,
			exp->nreqs);
		return;
	}
	blk_close(exp->dev);
	free(exp);
}

int vhost_server_export(struct vhost_server *srv, const char *volume, const char *socket_path)
{
	struct blk_probe_info info;
	struct vhost_export *exp;
	int r;

	if (!srv || !volume || !socket_path)
		return -EINVAL;
	if (export_find(srv, volume))
		return -EEXIST;
	if (strlen(volume) > VOLSPEC_MAX)
		return -ENOENT;
	exp = calloc(1, sizeof(*exp));
	if (!exp)
		return -ENOMEM;
	exp->srv = srv;
	exp->listen_fd = -1;
	snprintf(exp->name, sizeof(exp->name), "%s", volume);
	/* defined, not claimed: a front-end's connect claims the volume */
	r = blk_probe(srv->eng, volume, &info);
	if (r < 0) {
		free(exp);
		return r;
	}
	exp->size = info.size;
	exp->sector_size = info.sector_size;
	exp->readonly = info.readonly;
	r = export_listen(exp, socket_path);
	if (r < 0) {
		log_msg(LOG_ERROR, VHOST_LOG, "%s: cannot listen on %s: %s", volume, socket_path,
			r == -EADDRINUSE ? "another server is listening there" : err_str(-r));
		export_free(exp);
		return r;
	}
	exp->next = srv->exports;
	srv->exports = exp;
	log_msg(LOG_INFO, VHOST_LOG, "%s: exported over vhost-user-blk on %s (%llu bytes)",
		volume, socket_path, (unsigned long long)exp->size);
	return 0;
}

int vhost_server_unexport(struct vhost_server *srv, const char *volume)
{
	struct vhost_export **p;

	if (!srv || !volume)
		return -EINVAL;
	for (p = &srv->exports; *p; p = &(*p)->next) {
		struct vhost_export *exp = *p;

		if (strcmp(exp->name, volume) != 0)
			continue;
		*p = exp->next;
		log_msg(LOG_INFO, VHOST_LOG, "%s: vhost-user export on %s stopped", exp->name,
			exp->path);
		export_free(exp);
		return 0;
	}
	return -ENOENT;
}

int vhost_server_list(const struct vhost_server *srv,
		      int (*fn)(const struct vhost_export_info *info, void *arg), void *arg)
{
	for (const struct vhost_export *e = srv ? srv->exports : NULL; e; e = e->next) {
		struct vhost_export_info info = {
			.volume = e->name, .socket_path = e->path, .connected = e->conn != NULL,
			.claimed = e->dev != NULL, .requests = e->nreqs,
			.connections = e->connections, .refused = e->refused,
		};
		int r = fn(&info, arg);

		if (r)
			return r;
	}
	return 0;
}

bool vhost_server_exported(const struct vhost_server *srv, const char *volume)
{
	return srv && volume && export_find(srv, volume) != NULL;
}

int vhost_server_create(const struct vhost_server_opts *opts, struct vhost_server **out)
{
	struct vhost_server *srv;

	if (!opts || !opts->eng || !opts->loop || opts->num_queues > VHOST_QUEUES_MAX)
		return -EINVAL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->eng = opts->eng;
	srv->guard = opts->guard;
	srv->lp = opts->loop;
	srv->num_queues = opts->num_queues ? opts->num_queues : VHOST_QUEUES_DEFAULT;
	*out = srv;
	return 0;
}

void vhost_server_destroy(struct vhost_server *srv)
{
	if (!srv)
		return;
	while (srv->exports)
		vhost_server_unexport(srv, srv->exports->name);
	free(srv);
}
