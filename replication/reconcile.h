/* replication/reconcile.h — the rule that one reconciliation of a family's segment
 * records applies to each record (docs/replication.md, "Reconciliation with the
 * records"). The reconciliation itself is replica-internal (replica_internal.h:
 * replica_reconcile_start); the rule is a pure function, here so that it is tested
 * row by row. */
#ifndef QUILL_REPLICATION_RECONCILE_H
#define QUILL_REPLICATION_RECONCILE_H

#include <stdbool.h>
#include <stdint.h>

/* What the record says. */
enum recon_rec {
	RECON_REC_OPEN,         /* "open" */
	RECON_REC_SEALED_EMPTY, /* "sealed" below one block (a takeover's seal of a
				   number its owner never wrote) */
	RECON_REC_SEALED,       /* "sealed" at one block or more */
};

/* What this engine's own log says of the segment. */
enum recon_log {
	RECON_LOG_SEALED,       /* sealed at L blocks */
	RECON_LOG_OPEN,         /* still open */
	RECON_LOG_GONE_OLDER,   /* not there, older than a recorded segment it has: freed */
	RECON_LOG_GONE_NEWER,   /* not there, newer than every recorded segment it has (or
				   it has none): never written, or not this log's */
};

/* What this process knows of the segment. */
enum recon_proc {
	RECON_PROC_NONE,        /* nothing: written before a restart, adopted, or never */
	RECON_PROC_LIVE,        /* opened (or opened ahead, or already taken in hand) here */
	RECON_PROC_DEAD,        /* opened here under an epoch lost since */
};

enum recon_action {
	RECON_KEEP,             /* nothing to do */
	RECON_SEAL,             /* seal the record at L, then SEG_SEAL to its holders */
	RECON_DELETE,           /* delete the record, then SEG_DELETE to its holders */
	RECON_RESEAL,           /* SEG_SEAL again, at the record's length, to the holders
				   whose copy is not sealed at it (each is asked first:
				   SEG_STAT, recon_seal_owed): a seal owed from before a
				   restart */
};

/* The action for one record: every combination has one (docs/replication.md). */
enum recon_action recon_rule(enum recon_rec rec, enum recon_log log, enum recon_proc proc);
/* Its name in logs and tests: "keep", "seal", "delete", "reseal". */
const char *recon_action_name(enum recon_action a);

/* RECON_RESEAL, for one holder that answered SEG_STAT with its copy (sealed or open,
 * `length` blocks): is SEG_SEAL at the record's rec_blocks owed to it? Only a copy
 * sealed at exactly that length owes nothing; one sealed at another length is sent
 * the seal all the same (it refuses: EROFS, logged), one open is sealed. */
bool recon_seal_owed(bool sealed, uint32_t length, uint32_t rec_blocks);

#endif
