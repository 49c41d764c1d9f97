/*
 * fsck_core.h - check (and repair) a flyfs image, as a library.
 *
 * This module owns fsck.flyfs's logic: it reads an image through struct
 * blockdev (synchronous helpers, no buffer cache, never mounted), checks
 * everything docs/format.md promises, and in the repair modes rewrites
 * what can be rewritten without guessing.  tools/fsck/fsck.c is its
 * command line; the unit tests and the crash tests call flyfs_fsck()
 * directly on RAM or power-cut devices.
 *
 * Modes follow e2fsck:
 *   FLYFS_FSCK_NO     -n: never write.  A journal holding committed
 *                     transactions is replayed into memory only (reads of
 *                     the blocks it logs return the logged copies), so the
 *                     check describes the image as the next mount will see
 *                     it; the report says so.
 *   FLYFS_FSCK_PREEN  -p: repair what is safe without asking (counts,
 *                     bitmaps, link counts, checksums of intact structures,
 *                     orphans, a damaged primary superblock with the right
 *                     magic); anything else is left and gives exit 4.
 *   FLYFS_FSCK_YES    -y: also the repairs that drop damaged data (bad
 *                     extents, bad inodes, extra links to directories) and
 *                     a primary superblock that is not a flyfs one at all.
 *
 * Exit codes (the return value of flyfs_fsck and r->exit_code), as e2fsck:
 *   0 no problem, 1 problems corrected, 4 problems left uncorrected,
 *   8 operational error (unreadable device, no usable superblock, out of
 *   memory).  Pending work that is not damage (a journal to replay, orphan
 *   inodes to reclaim) does not make -n fail; doing it in -p/-y counts as
 *   a correction.
 *
 * Messages are one sentence a line, in plain words, without the image
 * path, sent to o->msg (if set), else written to o->out (if set).
 */
#ifndef FLYFS_FSCK_CORE_H
#define FLYFS_FSCK_CORE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct blockdev;

enum flyfs_fsck_mode {
	FLYFS_FSCK_NO = 0,
	FLYFS_FSCK_PREEN,
	FLYFS_FSCK_YES,
};

#define FLYFS_FSCK_OK		0
#define FLYFS_FSCK_CORRECTED	1
#define FLYFS_FSCK_UNCORRECTED	4
#define FLYFS_FSCK_OPERROR	8

/* What a message line is, for callers that filter. */
enum flyfs_fsck_msgkind {
	FLYFS_FSCK_MSG_INFO,		/* progress, summaries, notes */
	FLYFS_FSCK_MSG_PROBLEM,		/* damage found (fixed or not) */
	FLYFS_FSCK_MSG_ERROR,		/* operational error */
};

typedef void flyfs_fsck_msg_t(void *arg, enum flyfs_fsck_msgkind kind,
    const char *line);

struct flyfs_fsck_opts {
	enum flyfs_fsck_mode mode;
	bool force;		/* -f: check even a clean filesystem */
	bool verbose;		/* -v: per-pass lines and statistics */
	flyfs_fsck_msg_t *msg;	/* receives each line (no newline) */
	void *msg_arg;
	FILE *out;		/* used when msg is NULL; NULL = silent */
};

struct flyfs_fsck_result {
	int exit_code;		/* FLYFS_FSCK_* */
	int error;		/* errno of an operational error, else 0 */
	bool checked;		/* a full check ran (not just a summary) */
	uint64_t found;		/* problems found */
	uint64_t fixed;		/* of which corrected */
	uint64_t left;		/* of which left as they were */
	bool journal_replayed;	/* written home (-p/-y) */
	bool journal_in_memory;	/* -n: replayed into memory only */
	uint64_t journal_txns;	/* committed transactions found */
	uint64_t orphans;	/* orphan inodes found */
	uint64_t orphans_reclaimed;
	/* Figures of the filesystem as checked. */
	uint64_t blocks, blocks_used, inodes, inodes_used;
	uint64_t files, dirs, symlinks, others;
};

/*
 * Check the filesystem on BD (opened read-write unless O->mode is NO).
 * R may be NULL.  Returns the exit code.  Never aborts on bad input: every
 * on-disk value is range-checked before it is used.  Sleeps on the device.
 */
int flyfs_fsck(struct blockdev *bd, const struct flyfs_fsck_opts *o,
    struct flyfs_fsck_result *r);

#endif /* FLYFS_FSCK_CORE_H */
