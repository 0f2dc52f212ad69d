/* replication/scrub.h — the owner's scrub of its replicated families' sealed segments
 * (docs/replication.md, "Scrub").
 *
 * A pass over one family reads its segment records (one CLUSTER_VOL_SEG_LIST) and,
 * for each sealed segment this node holds whole, one after another:
 *
 *   1. the owner's copy: read whole and judged by the segment's own log, every bad
 *      data block repaired from a holder and flushed (engine_segment_scrub_async)
 *   2. each holder's copy: SEG_VERIFY runs of the blocks the owner's copy has good,
 *      with their CRC32Cs; the holder reads and checks its copy where it is and answers
 *      the numbers of the blocks that differ (the bytes stay there)
 *   3. a holder copy with bad blocks, when the owner's copy is good whole: the holder
 *      leaves the record's holders (CLVOL_COPY_DROP, fenced by the owner's epoch) and
 *      catch-up copies the segment there again from the owner's verified copy (its
 *      SEG_DELETE first: the bad copy goes). A copy is never repaired from one that
 *      was not verified: with bad blocks left in the owner's copy, a holder's bad
 *      copy is only reported.
 *
 * Throttle: a byte budget per second over what every copy reads (the owner's and each
 * holder's: scrub_mbps), taken before a segment starts. A background round runs a
 * pass over every replicated family this node owns every interval (mbps 0: none); an
 * on-demand pass (scrub_start) runs at the same rate, or SCRUB_ON_DEMAND_MBPS when the
 * background is off. One pass per family at a time.
 *
 * A striped segment (its record has a stripe) is scrubbed by its fragments too, with or
 * without a local copy (replication/fragscrub.h: each holder checks its fragment,
 * parity is checked against data by re-encoding, a bad fragment is rebuilt from K
 * good ones and put again).
 *
 * Not built: replicated segments this node has no local copy of.
 *
 * Threading: the loop's thread (the engine's), like replica.c.
 */
#ifndef QUILL_REPLICATION_SCRUB_H
#define QUILL_REPLICATION_SCRUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/layout.h"

struct replicas;
struct scrub;

#define SCRUB_DEFAULT_INTERVAL_S 86400u /* background: a pass a day */
#define SCRUB_ON_DEMAND_MBPS 64u        /* on demand while the background is off */
#define SCRUB_FINDINGS_MAX 64u          /* copies with bad blocks kept per report */
#define SCRUB_FIRST_BLOCKS 8u           /* bad block numbers kept per copy */

/* What a finding is about. */
enum scrub_kind {
	SCRUB_KIND_REPLICA,  /* a copy of a segment's log: blocks that fail their CRC */
	SCRUB_KIND_FRAGMENT, /* a fragment: blocks that fail its own table (or it is gone) */
	SCRUB_KIND_PARITY,   /* a fragment whole in itself that disagrees with its stripe:
				not the record's CRC, or not what the others encode to */
	SCRUB_KINDS
};

/* One copy of one segment (or fragment of its stripe) found with bad blocks (or that
 * could not be checked). */
struct scrub_finding {
	enum scrub_kind kind;
	int index;                     /* the fragment's index; -1: a copy */
	uint32_t sno;
	char node[LAYOUT_ID_MAX + 1];  /* whose copy (the owner's: this node's id) */
	bool owner;                    /* the owner's own copy */
	uint32_t nbad;                 /* its blocks found bad */
	uint32_t nfirst;
	uint32_t first[SCRUB_FIRST_BLOCKS]; /* the first of them */
	uint32_t nfixed;               /* owner: blocks rewritten and read back good;
					  holder: nbad once its copy left the record */
	char action[160];              /* what was done, for people */
};

/* A pass: the last one of a family, or the one running. */
struct scrub_report {
	char vol[LAYOUT_ID_MAX + 1];
	bool running;
	bool background;               /* started by the background round */
	int64_t started, ended;        /* unix seconds (ended 0: running) */
	uint64_t elapsed_ms;           /* from its start to its end (or now) */
	int result;                    /* 0, or why the pass stopped (-errno) */
	unsigned segments;             /* sealed segments scrubbed */
	unsigned skipped;              /* sealed records not scrubbed (no whole local copy
					  here, or still being written here) */
	unsigned copies;               /* copies checked (the owner's and holders') */
	unsigned unchecked_copies;     /* holder copies that could not be asked */
	uint64_t bytes;                /* bytes read and checked, over every copy */
	uint64_t blocks_bad, blocks_fixed; /* over every copy */
	unsigned copies_bad, copies_fixed; /* over every copy and fragment */
	unsigned stripes;              /* striped segments whose fragments were scrubbed */
	unsigned frags;                /* fragments checked */
	unsigned unchecked_frags;      /* fragments that could not be asked */
	unsigned found[SCRUB_KINDS];   /* copies or fragments found bad, per kind */
	unsigned fixed[SCRUB_KINDS];   /* ... and repaired */
	unsigned nfind;
	struct scrub_finding find[SCRUB_FINDINGS_MAX];
	/* since this process started, over the family's passes that ended */
	unsigned passes;
	uint64_t total_bad, total_fixed;
};

/* ---- pure parts (unit-tested) ---- */

/* f is kept in r's findings (while there is room) and counted (a finding with no bad
 * blocks is one not checked: kept, not counted): found per kind, and fixed when it is
 * (nfixed == nbad); copies_bad, blocks_bad, blocks_fixed, copies_fixed. */
void scrub_report_add(struct scrub_report *r, const struct scrub_finding *f);
/* Block `block` of f's copy found bad: counted, and kept among the first ones. */
void scrub_finding_block(struct scrub_finding *f, uint32_t block);

/* The next run of blocks to verify on a holder: from `from`, the first block the
 * owner's copy has good (ENGINE_SCRUB_GOOD or FIXED in state), and as many good ones
 * after it as follow, at most max. 0 and *start, *n; -ENOENT when none is left. */
int scrub_next_run(const uint8_t *state, uint32_t blocks, uint32_t from, uint32_t max,
		   uint32_t *start, uint32_t *n);

/* mbps: the background's (0: no background round), interval_s 0: the default. 0 or
 * -ENOMEM. */
int scrub_create(struct replicas *rs, unsigned mbps, unsigned interval_s, struct scrub **out);
/* Passes in flight are abandoned (their one outstanding answer frees each). NULL ok. */
void scrub_destroy(struct scrub *sc);
/* A pass over family `name` now: 0 and cb(arg, res) once at its end (its report:
 * scrub_report_get), or -ENOENT (no replicated family of that name runs here), -EBUSY
 * (a pass of it is running), -ENOMEM. */
int scrub_start(struct scrub *sc, const char *name, void (*cb)(void *arg, int res), void *arg);
/* A pass over every replicated family that runs here, at once (each one at the
 * budget's rate: they share it): 0 and cb(arg, res) once all ended (res: the first
 * error), or -ENOENT (none runs here), -ENOMEM. A family whose pass runs already is
 * left to it. */
int scrub_start_all(struct scrub *sc, void (*cb)(void *arg, int res), void *arg);
/* fn for each family's last pass (or the one running), by volume name. */
void scrub_each_report(const struct scrub *sc,
		       void (*fn)(void *arg, const struct scrub_report *r), void *arg);
/* The family's last pass (or the one running): 0, or -ENOENT (none since start). */
int scrub_report_get(const struct scrub *sc, const char *name, struct scrub_report *out);
/* The background's settings. */
void scrub_settings(const struct scrub *sc, unsigned *mbps, unsigned *interval_s);

#endif
