/* replication/holder.h — the holder service: keeps copies of other nodes' segments
 * for them, answering the peer protocol's segment ops (docs/peer-protocol.md,
 * "Segment ops"; docs/replication.md) with the engine's held segments
 * (engine_held_* in engine/engine.h).
 *
 * It is a peer endpoint's serve hook: peer.c hands it every segment request of an
 * authenticated connection, decoded and checked; it answers each exactly once with
 * peer_req_reply(). The header's volume_id is the family uid, its epoch the sender's
 * epoch of that family. Fencing (docs/replication.md, "Fencing"):
 *   - an op whose epoch is below the family's fence (engine_held_epoch) is refused
 *     -ESTALE, and so is its reply when the fence rose above it while it ran: nothing
 *     is acknowledged to an owner that another one has fenced off;
 *   - a higher epoch is persisted first (engine_held_epoch_raise_async), then the op
 *     runs; EPOCH_RAISE is just that;
 *   - SEG_OPEN's segment size must be this store's (-EINVAL);
 *   - SEG_APPEND's data CRC is checked before anything is written or raised
 *     (-EILSEQ); with FUA the reply comes after engine_flush().
 * SEG_READ with PEER_SEG_F_CRCS (a read-around) checks each block read against
 * its CRC before answering: a copy that fails is answered -EILSEQ, never sent.
 * SEG_FLUSH flushes the store (no family, no fence). LAYER_READ (a clone on another
 * node reading through a snapshot of a family this node runs: docs/replication.md,
 * "Snapshots and clones across owners") has no fence either: it is answered from the
 * engine's own map of that snapshot, with each block's CRC32C; -ESTALE when this
 * engine does not run the family (the reader looks its owner up again), -ENOENT when
 * the snapshot is not there, -ERANGE past its end. A refused op is a reply with a
 * negative result; the connection stays open.
 *
 * Threading: the loop's thread (the engine's and the endpoint's).
 */
#ifndef QUILL_REPLICATION_HOLDER_H
#define QUILL_REPLICATION_HOLDER_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"

struct holder;
struct peer_req;

/* The engine is borrowed: it outlives the holder. */
int holder_create(struct engine *eng, struct holder **out);
/* Answers nothing more: requests still in the engine are dropped unanswered when it
 * completes them (their requesters time out or see the connection close). NULL ok. */
void holder_destroy(struct holder *h);
/* peer_endpoint_opts.serve, arg = the holder. */
void holder_serve(void *arg, struct peer_req *req);

/* A fragment held here, checked where it is: a FRAG_VERIFY's steps, for a peer's
 * request and for the owner's scrub of the fragment it holds itself. Its image is
 * read whole and checked (ec_frag_scrub) against the geometry of its own record. */
struct holder_frag_check {
	struct engine_frag_info fi;   /* the fragment held */
	bool table_bad;               /* its header or table fails: every block is bad */
	uint32_t frag_crc;            /* CRC32C of its data blocks as they are */
	uint32_t nbad;
	uint32_t *crcs;               /* fi.frag_blocks CRC32Cs, of each data block as it
					 is, then the nbad numbers of those that fail the
					 table (ascending) */
	uint8_t *image;               /* the image read (header, table, data) */
	/* private */
	engine_cb cb;
	void *arg;
};
/* Fragment `index` of (uid, sno), if held here: 0 and cb(arg, res) once (never inside
 * this call), res 0 with c filled, -EIO (its record's geometry does not hold) or the
 * read's error; or -ENOENT (no such fragment here, or another index of it), -EIO,
 * -ENOMEM. c is the caller's, holder_frag_check_free'd after cb (or an error). */
int holder_frag_check_async(struct engine *eng, uint64_t uid, uint32_t sno, unsigned index,
			    struct holder_frag_check *c, engine_cb cb, void *arg);
/* Frees what c holds (not c); c may be zeroed or freed already. */
void holder_frag_check_free(struct holder_frag_check *c);

#endif
