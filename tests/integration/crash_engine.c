/* tests/integration/crash_engine.c — kill -9 crash test of the volume engine.
 *
 * The parent never opens the engine (RocksDB's threads do not survive fork); it
 * forks a writer, kills it with SIGKILL at a random moment, then forks a verifier
 * that reopens the store and checks every block of the volume, and repeats.
 *
 * The writer runs numbered rounds. Round r is a deterministic plan derived from
 * (seed, r): random writes of 1..200 blocks and trims, no block touched twice in a
 * round, QD 1..32, some writes FUA. Each written block is self-describing (itest.h,
 * tag = r). After a round's writes complete the writer calls engine_flush and, from
 * the flush callback, tells the parent "round r durable" over a pipe; it also says
 * "round r started" before submitting anything of round r. It starts the next round
 * without waiting for the flush.
 *
 * Let F be the last round reported durable in this life. After the crash every block
 * must read back either what the last write/trim at or before F left there (or the
 * state seen by the previous verification, for a block untouched since), or what some
 * write/trim of a round after F (up to the last round started) put there. Trim and
 * never-written read as zeros. A read error is a failure. What the verifier finds
 * becomes the model for the next life, which continues with new round numbers.
 *
 * kill -9 never tears a write (the kernel finishes it), so in every 4th life the
 * verifier first tears the newest batch the way a power loss could (tear.h: only a
 * batch above the checkpoint whose blocks all come from rounds after F) and then
 * expects the engine to report a torn batch and still pass the checks above.
 *
 * After each verification quill-inspect (tools/inspect.c) checks the store's format.
 *
 * Env: QUILL_SEED (default from the clock), QUILL_CRASH_ROUNDS (kills, default 25),
 * QUILL_TEST_DIR (scratch base, default the current directory), QUILL_KEEP=1 keeps
 * the scratch directory. Exit 0 pass, 1 failure, 77 skip.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/engine.h"
#include "itest.h"
#include "tear.h"

#define VOL_NAME "crash"
#define VOL_BLOCKS 2048u
#define STORE_SIZE (64 * IT_MIB)
#define SEG_SIZE (1u << 20)
#define MAX_OPS 64u
#define MAX_QD 32u
#define MAX_WRITE 200u
#define MAX_TRIM 64u
#define FLUSHES_IN_FLIGHT 2u
#define READ_CHUNK 32u
#define CLEAN_ROUNDS 6u
#define READY_TIMEOUT_MS 60000
#define VERIFY_TIMEOUT_MS 120000
#define CKPT_FAST_MS 20u
#define CKPT_SLOW_MS 600000u

enum op_kind { OP_NONE = 0, OP_WRITE = 1, OP_TRIM = 2 };

struct op {
	uint8_t kind;
	uint8_t fua;
	uint32_t lba;
	uint32_t n;
};

struct plan {
	unsigned nops;
	unsigned qd;
	struct op ops[MAX_OPS];
	uint8_t touch[VOL_BLOCKS]; /* enum op_kind of the op touching each block */
};

/* Child -> parent messages; 8 bytes, so each write(2) to the pipe is atomic. */
enum msg_type { MSG_READY = 1, MSG_START = 2, MSG_DURABLE = 3, MSG_DONE = 4 };
struct msg {
	uint32_t type;
	uint32_t round;
};

/* Shared (MAP_SHARED) between the parent and its children. */
struct shared {
	uint32_t model[VOL_BLOCKS]; /* round whose data each block held at the last check;
				       0 = zeros */
	uint64_t replayed;          /* engine stats at the last verifier's open */
	uint64_t torn;
	uint32_t data_blocks;
	uint32_t late_blocks;       /* blocks holding a round after F */
	uint64_t torn_seq;          /* batch the last verifier tore, 0 = none */
	bool checkpointed;          /* a checkpoint ran in the writer's life after a round
				       was durable (the cleaner asks for them when the
				       store is full): nothing of it need be replayed */
};

/* What the parent learned about one life of the writer. */
struct life {
	uint32_t first;      /* first round of this life */
	uint32_t durable;    /* F: last round reported durable (first - 1 if none) */
	uint32_t started;    /* last round started (first - 1 if none) */
	unsigned checkpoint_ms;
	bool ready;
	bool done;
	bool clean;          /* ended with engine_close: nothing left to replay */
	bool tear;           /* tear the newest batch before reopening, if it may be */
};

struct crash_cfg {
	struct it_env env; /* seed, scratch store */
	uint64_t seed;
	unsigned kills;
};

static pid_t g_child = -1;

/* ---- the plan of a round ---- */

static bool range_free(const uint8_t *touch, uint32_t lba, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (touch[lba + i])
			return false;
	return true;
}

static void plan_round(uint64_t seed, uint32_t round, struct plan *p)
{
	uint64_t s = it_mix(seed, 0x524f554e44000000ull | round);
	unsigned want = (unsigned)it_rand_range(&s, 8, MAX_OPS);

	memset(p, 0, sizeof(*p));
	p->qd = it_rand_below(&s, 4) == 0 ? 1 : (unsigned)it_rand_range(&s, 2, MAX_QD);
	for (unsigned i = 0; i < want; i++) {
		unsigned pick = (unsigned)it_rand_below(&s, 100);
		struct op o = { .kind = OP_WRITE, .n = 1 };

		if (pick >= 90) {
			o.kind = OP_TRIM;
			o.n = (uint32_t)it_rand_range(&s, 1, MAX_TRIM);
		} else if (pick >= 85) {
			o.n = (uint32_t)it_rand_range(&s, 17, MAX_WRITE);
		} else if (pick >= 60) {
			o.n = (uint32_t)it_rand_range(&s, 2, 16);
		}
		o.lba = (uint32_t)it_rand_below(&s, VOL_BLOCKS - o.n + 1);
		o.fua = o.kind == OP_WRITE && it_rand_below(&s, 8) == 0;
		if (!range_free(p->touch, o.lba, o.n))
			continue;
		memset(p->touch + o.lba, o.kind, o.n);
		p->ops[p->nops++] = o;
	}
}

/* ---- engine helpers ---- */

static int open_engine(const struct crash_cfg *cfg, bool format, unsigned checkpoint_ms,
		       struct engine **eng)
{
	struct engine_opts o;

	engine_opts_init(&o);
	o.store_path = cfg->env.store;
	o.meta_path = cfg->env.meta;
	o.store_size = STORE_SIZE;
	o.format = format;
	o.segment_size = SEG_SIZE;
	o.checkpoint_ms = checkpoint_ms;
	return engine_open(&o, eng);
}

static void child_die(const char *what, int err)
{
	fprintf(stderr, "crash_engine[%d]: %s: %s\n", (int)getpid(), what, strerror(-err));
	fflush(stderr);
	_exit(3);
}

/* ---- the writer (child) ---- */

struct writer {
	struct shared *sh;
	uint64_t checkpoints;  /* the engine's count at open */
	struct engine *eng;
	struct engine_volume *vol;
	int fd;
	uint64_t seed;
	unsigned inflight;
	unsigned flushes;
};

struct wio {
	struct writer *w;
	void *buf;
	uint32_t round;
	struct op op;
};

struct wflush {
	struct writer *w;
	uint32_t round;
};

static void send_msg(int fd, uint32_t type, uint32_t round)
{
	struct msg m = { type, round };

	if (write(fd, &m, sizeof(m)) != (ssize_t)sizeof(m))
		_exit(3);
}

static void wio_done(void *arg, int res)
{
	struct wio *io = arg;

	if (res < 0) {
		char what[128];

		snprintf(what, sizeof(what), "round %u %s of lba %u+%u", io->round,
			 io->op.kind == OP_TRIM ? "trim" : "write", io->op.lba, io->op.n);
		child_die(what, res);
	}
	io->w->inflight--;
	free(io->buf);
	free(io);
}

/* A checkpoint after a durable round covers it: replay then has nothing to do. Noted
 * at each durable round, after its message (the flag may only err towards "ran"). */
static void writer_note_checkpoints(struct writer *w)
{
	struct engine_stats st;

	engine_get_stats(w->eng, &st);
	if (st.checkpoints > w->checkpoints)
		w->sh->checkpointed = true;
}

static void wflush_done(void *arg, int res)
{
	struct wflush *f = arg;

	if (res < 0)
		child_die("flush", res);
	f->w->flushes--;
	send_msg(f->w->fd, MSG_DURABLE, f->round);
	writer_note_checkpoints(f->w);
	free(f);
}

static void writer_poll(struct writer *w)
{
	int rc = engine_poll(w->eng, -1);

	if (rc < 0)
		child_die("engine_poll", rc);
}

static void writer_submit(struct writer *w, const struct op *op, uint32_t round)
{
	struct wio *io = calloc(1, sizeof(*io));
	int rc;

	if (!io)
		child_die("calloc", -ENOMEM);
	io->w = w;
	io->round = round;
	io->op = *op;
	if (op->kind == OP_TRIM) {
		rc = engine_trim(w->vol, op->lba, op->n, 0, wio_done, io);
	} else {
		io->buf = it_alloc((size_t)op->n * ENGINE_BLOCK_SIZE);
		for (uint32_t i = 0; i < op->n; i++)
			it_block_fill((char *)io->buf + (size_t)i * ENGINE_BLOCK_SIZE, w->seed,
				      op->lba + i, round);
		rc = engine_write(w->vol, op->lba, op->n, io->buf, op->fua ? ENGINE_FUA : 0,
				  wio_done, io);
	}
	if (rc < 0)
		child_die(op->kind == OP_TRIM ? "engine_trim" : "engine_write", rc);
	w->inflight++;
}

static void writer_flush(struct writer *w, uint32_t round)
{
	struct wflush *f = calloc(1, sizeof(*f));
	int rc;

	if (!f)
		child_die("calloc", -ENOMEM);
	f->w = w;
	f->round = round;
	rc = engine_flush(w->eng, wflush_done, f);
	if (rc < 0)
		child_die("engine_flush", rc);
	w->flushes++;
}

/* Runs rounds first.. forever (rounds == 0) or `rounds` of them, then closes cleanly. */
static int writer_main(const struct crash_cfg *cfg, struct shared *sh, int fd,
		       const struct life *lf, unsigned rounds)
{
	struct writer w = { .sh = sh, .fd = fd, .seed = cfg->seed };
	struct engine_stats st;
	struct plan *p = malloc(sizeof(*p));
	int rc;

	if (!p)
		child_die("malloc", -ENOMEM);
	rc = open_engine(cfg, false, lf->checkpoint_ms, &w.eng);
	if (rc < 0)
		child_die("engine_open", rc);
	rc = engine_volume_open(w.eng, VOL_NAME, &w.vol);
	if (rc < 0)
		child_die("engine_volume_open", rc);
	engine_get_stats(w.eng, &st);
	w.checkpoints = st.checkpoints;
	sh->checkpointed = false;
	send_msg(fd, MSG_READY, 0);
	for (uint32_t r = lf->first; rounds == 0 || r < lf->first + rounds; r++) {
		plan_round(cfg->seed, r, p);
		send_msg(fd, MSG_START, r);
		for (unsigned i = 0; i < p->nops; i++) {
			while (w.inflight >= p->qd)
				writer_poll(&w);
			writer_submit(&w, &p->ops[i], r);
		}
		while (w.inflight)
			writer_poll(&w);
		while (w.flushes >= FLUSHES_IN_FLIGHT)
			writer_poll(&w);
		writer_flush(&w, r);
	}
	while (w.flushes)
		writer_poll(&w);
	engine_volume_close(w.vol);
	engine_close(w.eng);
	send_msg(fd, MSG_DONE, 0);
	free(p);
	return 0;
}

/* ---- the verifier (child) ---- */

static void state_str(uint32_t v, char *out, size_t len)
{
	if (v == 0)
		snprintf(out, len, "zeros");
	else
		snprintf(out, len, "round %u", v);
}

/* Expected states: exp[] after the rounds up to F, late[k][lba] = what round F+1+k
 * did to each block. */
struct expect {
	uint32_t exp[VOL_BLOCKS];
	unsigned nlate;
	uint8_t (*late)[VOL_BLOCKS];
};

static void build_expect(const struct crash_cfg *cfg, const struct shared *sh,
			 const struct life *lf, struct expect *e)
{
	struct plan *p = malloc(sizeof(*p));

	if (!p)
		child_die("malloc", -ENOMEM);
	memcpy(e->exp, sh->model, sizeof(e->exp));
	for (uint32_t r = lf->first; r <= lf->durable; r++) {
		plan_round(cfg->seed, r, p);
		for (uint32_t b = 0; b < VOL_BLOCKS; b++)
			if (p->touch[b])
				e->exp[b] = p->touch[b] == OP_WRITE ? r : 0;
	}
	e->nlate = lf->started - lf->durable;
	e->late = calloc(e->nlate ? e->nlate : 1, sizeof(*e->late));
	if (!e->late)
		child_die("calloc", -ENOMEM);
	for (unsigned k = 0; k < e->nlate; k++) {
		plan_round(cfg->seed, lf->durable + 1 + k, p);
		memcpy(e->late[k], p->touch, VOL_BLOCKS);
	}
	free(p);
}

/* 0 if found is allowed for block b; 1 if it is one of the late rounds' states. */
static int check_state(const struct expect *e, const struct life *lf, uint32_t b,
		       uint32_t found, bool *late)
{
	*late = false;
	if (found == e->exp[b])
		return 0;
	for (unsigned k = 0; k < e->nlate; k++) {
		uint8_t t = e->late[k][b];

		if ((t == OP_WRITE && found == lf->durable + 1 + k) || (t == OP_TRIM && found == 0)) {
			*late = true;
			return 0;
		}
	}
	return -1;
}

static void report_block(const struct expect *e, const struct life *lf, uint32_t b,
			 const char *found)
{
	char want[32], alt[256] = "";
	size_t off = 0;

	state_str(e->exp[b], want, sizeof(want));
	for (unsigned k = 0; k < e->nlate && off < sizeof(alt) - 40; k++) {
		uint8_t t = e->late[k][b];

		if (t)
			off += (size_t)snprintf(alt + off, sizeof(alt) - off, "%s round %u (%s)",
						off ? "," : " or one of", lf->durable + 1 + k,
						t == OP_WRITE ? "write" : "trim -> zeros");
	}
	printf("FAIL lba %u: expected %s (state after rounds <= F=%u)%s; found %s\n", b, want,
	       lf->durable, alt, found);
}

struct vstate {
	unsigned failures;
	uint32_t data;
	uint32_t late;
	uint32_t found[VOL_BLOCKS];
};

static void verify_block(const struct crash_cfg *cfg, const struct expect *e,
			 const struct life *lf, struct engine_volume *vol, uint32_t b,
			 const void *buf, struct vstate *vs)
{
	char desc[160];
	uint64_t tag;
	bool late;
	enum it_block_kind k = it_block_check(buf, cfg->seed, b, &tag);

	if (k == IT_BLOCK_BAD || tag > UINT32_MAX || (k == IT_BLOCK_DATA && tag == 0)) {
		char d[128];

		it_block_describe(buf, d, sizeof(d));
		snprintf(desc, sizeof(desc), "garbage: %s", d);
		report_block(e, lf, b, desc);
		vs->failures++;
		return;
	}
	vs->found[b] = (uint32_t)tag;
	if (check_state(e, lf, b, (uint32_t)tag, &late) < 0) {
		state_str((uint32_t)tag, desc, sizeof(desc));
		report_block(e, lf, b, desc);
		vs->failures++;
	}
	vs->data += tag != 0;
	vs->late += late;
	if (engine_block_mapped(vol, b) != (tag != 0)) {
		printf("FAIL lba %u: engine_block_mapped says %s but the block reads %s\n", b,
		       tag ? "unmapped" : "mapped", tag ? "data" : "zeros");
		vs->failures++;
	}
}

static unsigned verify_volume(const struct crash_cfg *cfg, struct engine *eng,
			      const struct expect *e, const struct life *lf, struct vstate *vs)
{
	struct engine_volume_info info;
	struct engine_volume *vol;
	void *buf = it_alloc(READ_CHUNK * ENGINE_BLOCK_SIZE);
	int rc;

	rc = engine_volume_open(eng, VOL_NAME, &vol);
	if (rc < 0)
		child_die("verifier: engine_volume_open", rc);
	for (uint32_t lba = 0; lba < VOL_BLOCKS; lba += READ_CHUNK) {
		rc = it_read(eng, vol, lba, READ_CHUNK, buf);
		if (rc < 0) {
			printf("FAIL read of lba %u+%u: %s\n", lba, READ_CHUNK, strerror(-rc));
			vs->failures++;
			continue;
		}
		for (uint32_t i = 0; i < READ_CHUNK; i++)
			verify_block(cfg, e, lf, vol, lba + i,
				     (char *)buf + (size_t)i * ENGINE_BLOCK_SIZE, vs);
	}
	engine_volume_close(vol);
	rc = engine_volume_info(eng, VOL_NAME, &info);
	if (rc < 0)
		child_die("verifier: engine_volume_info", rc);
	if (info.mapped_blocks != vs->data) {
		printf("FAIL volume info: mapped_blocks %" PRIu64 ", but %u blocks read back data\n",
		       info.mapped_blocks, vs->data);
		vs->failures++;
	}
	free(buf);
	return vs->failures;
}

struct tear_arg {
	uint64_t seed;
	uint32_t durable;
};

/* A block may be torn if a round after F wrote it: no flush promised it. */
static bool tear_eligible(const void *block, uint64_t lba, void *arg)
{
	const struct tear_arg *ta = arg;
	uint64_t tag;

	return it_block_check(block, ta->seed, lba, &tag) == IT_BLOCK_DATA && tag > ta->durable;
}

/* Simulates a power loss that tore the newest batch (tear.h). */
static void maybe_tear(const struct crash_cfg *cfg, struct shared *sh, const struct life *lf)
{
	struct tear_arg ta = { cfg->seed, lf->durable };
	int rc;

	sh->torn_seq = 0;
	if (!lf->tear)
		return;
	rc = tear_newest_batch(cfg->env.store, cfg->env.meta, tear_eligible, &ta, &sh->torn_seq);
	if (rc < 0)
		child_die("tear_newest_batch", rc);
	if (rc == 0)
		sh->torn_seq = 0;
}

static int verify_main(const struct crash_cfg *cfg, struct shared *sh, const struct life *lf)
{
	struct expect *e = calloc(1, sizeof(*e));
	struct vstate *vs = calloc(1, sizeof(*vs));
	struct engine_stats st;
	struct engine *eng;
	int rc;

	if (!e || !vs)
		child_die("calloc", -ENOMEM);
	build_expect(cfg, sh, lf, e);
	maybe_tear(cfg, sh, lf);
	rc = open_engine(cfg, false, CKPT_SLOW_MS, &eng);
	if (rc < 0) {
		printf("FAIL verifier: engine_open after the crash: %s\n", strerror(-rc));
		return 1;
	}
	engine_get_stats(eng, &st);
	sh->replayed = st.replayed_batches;
	sh->torn = st.torn_batches;
	/* Some round became durable after the last checkpoint (the writer's checkpoint
	 * period is longer than its life): its batches must be replayed. */
	if (sh->torn_seq && st.torn_batches == 0) {
		printf("FAIL stats: batch seq %" PRIu64 " was torn on purpose, but torn_batches "
		       "is 0\n", sh->torn_seq);
		vs->failures++;
	}
	if (lf->clean && (st.replayed_batches || st.torn_batches)) {
		printf("FAIL stats: after engine_close, replayed %" PRIu64 " batches and %" PRIu64
		       " torn (the final checkpoint should cover everything)\n",
		       st.replayed_batches, st.torn_batches);
		vs->failures++;
	} else if (!lf->clean && lf->checkpoint_ms == CKPT_SLOW_MS && lf->durable >= lf->first &&
		   !sh->checkpointed && st.replayed_batches == 0) {
		printf("FAIL stats: rounds %u..%u were durable but replayed_batches is 0\n",
		       lf->first, lf->durable);
		vs->failures++;
	}
	verify_volume(cfg, eng, e, lf, vs);
	engine_close(eng);
	sh->data_blocks = vs->data;
	sh->late_blocks = vs->late;
	if (vs->failures == 0)
		memcpy(sh->model, vs->found, sizeof(sh->model));
	else
		printf("FAIL %u problems after life with rounds %u..%u, F=%u\n", vs->failures,
		       lf->first, lf->started, lf->durable);
	rc = vs->failures ? 1 : 0;
	free(e->late);
	free(e);
	free(vs);
	return rc;
}

static int setup_main(const struct crash_cfg *cfg)
{
	struct engine *eng;
	int rc = open_engine(cfg, true, 0, &eng);

	if (rc < 0)
		child_die("setup: engine_open (format)", rc);
	rc = engine_volume_create(eng, VOL_NAME, (uint64_t)VOL_BLOCKS * ENGINE_BLOCK_SIZE);
	if (rc < 0)
		child_die("setup: engine_volume_create", rc);
	engine_close(eng);
	return 0;
}

/* ---- the parent ---- */

static void kill_child(void)
{
	if (g_child > 0) {
		kill(g_child, SIGKILL);
		waitpid(g_child, NULL, 0);
		g_child = -1;
	}
}

static void on_signal(int sig)
{
	kill_child();
	signal(sig, SIG_DFL);
	raise(sig);
}

enum child_role { ROLE_SETUP, ROLE_WRITER, ROLE_VERIFY };

static pid_t spawn(const struct crash_cfg *cfg, struct shared *sh, enum child_role role,
		   const struct life *lf, unsigned rounds, int pipefd[2])
{
	pid_t parent = getpid();
	pid_t pid;
	int rc = 3;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid != 0) {
		if (pid > 0)
			g_child = pid;
		return pid;
	}
	g_child = -1;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(3);
	switch (role) {
	case ROLE_SETUP:
		rc = setup_main(cfg);
		break;
	case ROLE_WRITER:
		close(pipefd[0]);
		rc = writer_main(cfg, sh, pipefd[1], lf, rounds);
		break;
	case ROLE_VERIFY:
		rc = verify_main(cfg, sh, lf);
		break;
	}
	fflush(stdout);
	fflush(stderr);
	_exit(rc);
}

/* Waits for the current child up to timeout_ms; returns its wait status or -1. */
static int reap(int timeout_ms)
{
	uint64_t end = it_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	int status;

	for (;;) {
		pid_t r = waitpid(g_child, &status, WNOHANG);

		if (r == g_child) {
			g_child = -1;
			return status;
		}
		if (r < 0 || it_now_ns() > end) {
			printf("FAIL child %d did not exit within %d ms; killing it\n", (int)g_child,
			       timeout_ms);
			kill_child();
			return -1;
		}
		usleep(2000);
	}
}

static bool status_ok(int status, const char *who)
{
	if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return true;
	if (status == -1)
		return false;
	if (WIFEXITED(status))
		printf("FAIL %s exited with status %d\n", who, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		printf("FAIL %s died of signal %d\n", who, WTERMSIG(status));
	return false;
}

static void take_msg(struct life *lf, const struct msg *m)
{
	switch (m->type) {
	case MSG_READY:
		lf->ready = true;
		break;
	case MSG_START:
		lf->started = m->round;
		break;
	case MSG_DURABLE:
		if (m->round > lf->durable)
			lf->durable = m->round;
		break;
	case MSG_DONE:
		lf->done = true;
		break;
	}
}

/* Reads messages until deadline_ns (0 = until EOF). Returns 1 on EOF, 0 at the
 * deadline. A deadline is armed at READY when arm_ms > 0. */
static int pump(int fd, struct life *lf, uint64_t deadline_ns, unsigned arm_ms)
{
	static char acc[4096];
	static size_t have;

	for (;;) {
		uint64_t now = it_now_ns();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int timeout = -1;
		ssize_t n;

		if (deadline_ns) {
			if (now >= deadline_ns)
				return 0;
			timeout = (int)((deadline_ns - now + 999999) / 1000000);
		}
		if (poll(&pfd, 1, timeout) < 0 && errno != EINTR)
			return 1;
		if (!(pfd.revents & (POLLIN | POLLHUP)))
			continue;
		n = read(fd, acc + have, sizeof(acc) - have);
		if (n <= 0) {
			have = 0;
			return 1;
		}
		have += (size_t)n;
		size_t off = 0;

		for (; have - off >= sizeof(struct msg); off += sizeof(struct msg)) {
			struct msg m;
			bool was_ready = lf->ready;

			memcpy(&m, acc + off, sizeof(m));
			take_msg(lf, &m);
			if (!was_ready && lf->ready && arm_ms)
				deadline_ns = it_now_ns() + (uint64_t)arm_ms * 1000000ull;
		}
		memmove(acc, acc + off, have - off);
		have -= off;
	}
}

/* Runs quill-inspect on the closed store: the format's invariants (unique generations
 * and sequence numbers, no bad batch in the middle of a log) must hold after every
 * recovery. Its report is printed only when it finds damage. */
static bool inspect_store(const struct crash_cfg *cfg)
{
#ifdef QUILL_INSPECT
	char log[PATH_MAX + 32], line[512];
	FILE *f;
	int status;
	pid_t pid;

	snprintf(log, sizeof(log), "%s/inspect.log", cfg->env.dir);
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		int fd = open(log, O_CREAT | O_TRUNC | O_WRONLY, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		execl(QUILL_INSPECT, "quill-inspect", cfg->env.store, (char *)NULL);
		_exit(127);
	}
	g_child = pid;
	status = reap(VERIFY_TIMEOUT_MS);
	if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return true;
	printf("FAIL quill-inspect %s: status %d; its report:\n", cfg->env.store, status);
	f = fopen(log, "r");
	while (f && fgets(line, sizeof(line), f))
		printf("  | %s", line);
	if (f)
		fclose(f);
	return false;
#else
	(void)cfg;
	return true;
#endif
}

static bool run_verifier(const struct crash_cfg *cfg, struct shared *sh, const struct life *lf)
{
	if (spawn(cfg, sh, ROLE_VERIFY, lf, 0, NULL) < 0) {
		perror("fork");
		return false;
	}
	return status_ok(reap(VERIFY_TIMEOUT_MS), "verifier") && inspect_store(cfg);
}

/* One life: start a writer, kill it, verify. Returns true if all is well. */
static bool crash_life(const struct crash_cfg *cfg, struct shared *sh, uint64_t *rng,
		       unsigned idx, uint32_t *next_round, uint64_t *torn_total, unsigned *tears)
{
	struct life lf = { .first = *next_round };
	/* Every 5th life (and some others) is timed from the fork with a short delay, so
	 * that the kill often lands in engine_open: a crash during replay. */
	bool from_fork = idx % 5 == 0 || it_rand_below(rng, 100) < 10;
	unsigned delay_ms = (unsigned)(from_fork ? it_rand_range(rng, 1, 60)
						 : it_rand_range(rng, 5, 300));
	uint64_t t0 = it_now_ns();
	int p[2];
	int eof;

	lf.durable = lf.started = lf.first - 1;
	lf.checkpoint_ms = idx % 3 == 0 ? CKPT_FAST_MS : CKPT_SLOW_MS;
	lf.tear = idx % 4 == 2;
	if (pipe2(p, O_CLOEXEC) < 0 || spawn(cfg, sh, ROLE_WRITER, &lf, 0, p) < 0) {
		perror("pipe/fork");
		return false;
	}
	close(p[1]);
	if (from_fork)
		eof = pump(p[0], &lf, t0 + (uint64_t)delay_ms * 1000000ull, 0);
	else
		eof = pump(p[0], &lf, t0 + (uint64_t)READY_TIMEOUT_MS * 1000000ull, delay_ms);
	if (eof || (!from_fork && !lf.ready)) {
		printf("FAIL life %u: writer %s before the kill\n", idx,
		       eof ? "exited" : "was not ready in time");
		kill_child();
		close(p[0]);
		return false;
	}
	kill(g_child, SIGKILL);
	reap(10000);
	pump(p[0], &lf, 0, 0);
	close(p[0]);
	if (lf.started < lf.first)
		printf("life %2u: killed %3u ms after %s, %s\n", idx, delay_ms,
		       from_fork ? "fork" : "ready", lf.ready ? "before round 1" : "during engine_open");
	else
		printf("life %2u: killed %3u ms after %s; rounds %u..%u started, durable through %u%s\n",
		       idx, delay_ms, from_fork ? "fork" : "ready", lf.first, lf.started, lf.durable,
		       lf.started > lf.durable ? " (mid-round)" : "");
	if (!run_verifier(cfg, sh, &lf))
		return false;
	if (sh->torn_seq)
		printf("         tore batch seq %" PRIu64 " (power loss simulated)\n", sh->torn_seq);
	printf("         reopened: replayed %" PRIu64 " batches, %" PRIu64 " torn; %u data blocks, "
	       "%u from rounds after F\n", sh->replayed, sh->torn, sh->data_blocks, sh->late_blocks);
	*torn_total += sh->torn;
	*tears += sh->torn_seq != 0;
	*next_round = lf.started + 1;
	return true;
}

/* The last life ends with engine_close: every round must be there. */
static bool clean_life(const struct crash_cfg *cfg, struct shared *sh, uint32_t *next_round)
{
	struct life lf = { .first = *next_round, .checkpoint_ms = CKPT_SLOW_MS, .clean = true };
	int p[2];

	lf.durable = lf.started = lf.first - 1;
	if (pipe2(p, O_CLOEXEC) < 0 || spawn(cfg, sh, ROLE_WRITER, &lf, CLEAN_ROUNDS, p) < 0) {
		perror("pipe/fork");
		return false;
	}
	close(p[1]);
	pump(p[0], &lf, 0, 0);
	close(p[0]);
	if (!status_ok(reap(VERIFY_TIMEOUT_MS), "clean writer"))
		return false;
	if (!lf.done || lf.durable != lf.first + CLEAN_ROUNDS - 1) {
		printf("FAIL clean life: rounds %u..%u, durable through %u, done %d\n", lf.first,
		       lf.started, lf.durable, lf.done);
		return false;
	}
	printf("clean  : rounds %u..%u written, engine closed\n", lf.first, lf.started);
	if (!run_verifier(cfg, sh, &lf))
		return false;
	*next_round = lf.started + 1;
	return true;
}

int main(void)
{
	struct crash_cfg cfg = { 0 };
	struct shared *sh;
	uint64_t rng, torn_total = 0, t0 = it_now_ns();
	uint32_t next_round = 1;
	unsigned tears = 0;
	bool ok = true;
	int rc;

	rc = it_begin(&cfg.env, "crash_engine");
	if (rc)
		return rc;
	cfg.seed = cfg.env.seed;
	cfg.kills = it_env_unsigned("QUILL_CRASH_ROUNDS", 25);
	printf("crash_engine: %u kills\n", cfg.kills);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	atexit(kill_child);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	rng = it_mix(cfg.seed, 0x4b494c4cull);

	if (spawn(&cfg, sh, ROLE_SETUP, NULL, 0, NULL) < 0 ||
	    !status_ok(reap(VERIFY_TIMEOUT_MS), "setup"))
		ok = false;
	for (unsigned i = 1; ok && i <= cfg.kills; i++)
		ok = crash_life(&cfg, sh, &rng, i, &next_round, &torn_total, &tears);
	if (ok)
		ok = clean_life(&cfg, sh, &next_round);

	printf("crash_engine: %u rounds, %u batches torn on purpose, %" PRIu64 " torn batches "
	       "dropped by replay, %.1f s\n", next_round - 1, tears, torn_total,
	       (double)(it_now_ns() - t0) / 1e9);
	return it_end(&cfg.env, ok);
}
