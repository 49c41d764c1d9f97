/*
 * journal_scan.h - reading the journal log (fs/journal_scan.c).
 *
 * The one reader of the on-disk log (docs/format.md section 11): it finds
 * the committed transactions from the log tail, verifies every logged
 * copy against its tag's crc, applies revokes, and yields the newest
 * replayable copy of each home block, unescaped.  It reads the device
 * directly, never through the buffer cache, so the mount (journal.c,
 * before the cache holds anything of the image) and fsck.flyfs (which
 * links without the cache) share it: one scanner, one escape rule.
 *
 * It also owns the escape rule for the writer (fs_jscan_escape), so the
 * commit path and every reader agree byte for byte.
 */
#ifndef FLYFS_JOURNAL_SCAN_H
#define FLYFS_JOURNAL_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "blockdev/blockdev.h"

/* Where the journal is, from the superblock and the journal superblock. */
struct fs_jscan_geom {
	uint64_t	start;		/* absolute block of the journal sb */
	uint64_t	blocks;		/* journal length, its sb included */
	uint64_t	first;		/* first log block, relative (js_first) */
	uint64_t	fs_blocks;	/* filesystem size: homes lie below */
	uint32_t	seed;		/* checksum seed (sb_csum_seed) */
};

/* One logged copy to replay: home block, where the copy is, its tag. */
struct fs_jscan_ref {
	uint64_t	home;		/* where the block belongs */
	uint64_t	jabs;		/* absolute block of the logged copy */
	uint64_t	seq;		/* transaction that logged it */
	uint32_t	flags;		/* jt_flags (FLYFS_JTAG_*, escape) */
	uint32_t	crc;		/* jt_crc */
};

/* What a scan found.  Zero it before fs_jscan_run; fs_jscan_free after. */
struct fs_jscan {
	uint64_t	txns;		/* committed, intact transactions */
	uint64_t	next_seq;	/* sequence after the last of them */
	uint64_t	end;		/* relative log block after them */
	uint64_t	logged;		/* copies they logged (all) */
	struct fs_jscan_ref *refs;	/* newest unrevoked copy per home,
					 * sorted by home */
	size_t		nrefs;
};

/*
 * Scan the log from relative block TAIL, expecting transaction SEQ there
 * (js_start, js_sequence; TAIL 0 means an empty log: nothing found).
 * Stops at the first transaction without a valid commit block of the
 * expected sequence: that is the end of the log, not an error.
 * Returns 0; EUCLEAN when a committed transaction is damaged (a logged
 * copy fails its crc, a tag names a block outside the filesystem or
 * inside the journal, the commit block's count disagrees): ERR says
 * which, and S describes the intact transactions before it (replaying
 * those is fsck's choice, never the mount's); EIO (device), ENOMEM.
 * Reads the device only; holds no lock; may sleep in I/O.
 */
int	fs_jscan_run(struct blockdev *bd, const struct fs_jscan_geom *g,
	    uint64_t tail, uint64_t seq, struct fs_jscan *s, char *err,
	    size_t errlen);

/*
 * Read the copy R into BUF (4 KiB, blockdev-aligned), check it against
 * the tag's crc again (EUCLEAN if it changed), and unescape it: BUF is
 * then the block as it must be at R->home.
 */
int	fs_jscan_read(struct blockdev *bd, uint32_t seed,
	    const struct fs_jscan_ref *r, void *buf);

/*
 * Call FN(ARG, home, block) for every copy of S in home order, block
 * read with fs_jscan_read into BUF.  Stops at the first non-zero return.
 */
int	fs_jscan_replay(struct blockdev *bd, uint32_t seed,
	    const struct fs_jscan *s, void *buf,
	    int (*fn)(void *arg, uint64_t home, const void *block), void *arg);

void	fs_jscan_free(struct fs_jscan *s);

/*
 * The escape rule, writer side: BLOCK is about to be logged.  If its
 * first four bytes are a journal control magic ("FJSB", "FJDS", "FJCM",
 * "FJRV"), zero them and return the tag flags that restore them
 * (FLYFS_JTAG_ESCAPED | the magic's bytes 2-3 in bits 16-31); else
 * return 0 and leave BLOCK alone.  The tag crc covers BLOCK as logged.
 */
uint32_t fs_jscan_escape(void *block);
/* Reader side: undo fs_jscan_escape given the tag's FLAGS. */
void	fs_jscan_unescape(void *block, uint32_t flags);

#endif /* FLYFS_JOURNAL_SCAN_H */
