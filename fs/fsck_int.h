/*
 * fsck_int.h - what the files of fsck.flyfs share (private to fs/fsck_*.c).
 *
 * The checker is one run over one image, split by responsibility:
 *   fsck_core.c   entry point, the order of the passes, the result and
 *                 exit code, message plumbing and block I/O (with the -n
 *                 journal overlay);
 *   fsck_super.c  pass 0: the superblock, its backup, the journal; the
 *                 superblock rewrite at the end;
 *   fsck_inode.c  pass 1: the inode file, system files, inodes, extent
 *                 trees, symlinks, xattr blocks;
 *   fsck_dir.c    passes 2-4: directory trees, lost+found, connectivity,
 *                 link counts and orphans;
 *   fsck_alloc.c  pass 5: the runs of used blocks and their owners, block
 *                 and inode bitmaps, free counts, the orphan file.
 * They share one struct fsck, built up pass by pass; nothing here is
 * visible outside fs/ (the public interface is fsck_core.h).
 */
#ifndef FLYFS_FSCK_INT_H
#define FLYFS_FSCK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockdev/blockdev.h"
#include "fs/format.h"
#include "fs/fsck_core.h"
#include "fs/journal_scan.h"
#include "fs/ondisk.h"

#define BS		FLYFS_BLOCK_SIZE
#define OWNER_FS	UINT64_MAX	/* a run of fixed metadata */

/* How a problem may be repaired. */
enum fixkind {
	FIX_PREEN,		/* safe: -p and -y */
	FIX_YES,		/* drops damaged data: -y only */
	FIX_NEVER,		/* no safe repair exists */
};

/* One run of blocks and the inode that uses it (OWNER_FS: fixed metadata). */
struct run {
	uint64_t blk, len, owner;
};

/* An entry of directory PARENT naming directory CHILD. */
struct dedge {
	uint64_t parent, child, leaf, key;
	bool bad;
};

/* Per inode slot.  Directory fields are meaningful for directories only. */
struct iinfo {
	uint32_t nlink;		/* i_nlink as stored */
	uint32_t links;		/* entries naming it (non-directories) */
	uint32_t subdirs;	/* directories: child directories accepted */
	uint8_t type;		/* DT_*, 0 = free slot */
	uint8_t flags;		/* IF_* */
	uint64_t parent;	/* directories: parent found, 0 = none */
	uint64_t dparent;	/* directories: dr_parent */
	uint64_t entries;	/* directories: entries found */
	uint64_t dentries;	/* directories: dr_entries */
};
#define IF_LISTED	0x01	/* in the orphan file */
#define IF_ORPHAN	0x02	/* FLYFS_IFL_ORPHAN set */
#define IF_BAD		0x04	/* unusable, left as is */
#define IF_RECLAIM	0x08	/* orphan being reclaimed: its blocks free */
#define IF_REACHED	0x10	/* directories: reached from the root */
#define IF_WALKED	0x20	/* directories: tree walked completely */

struct fsck {
	struct blockdev *bd;
	const struct flyfs_fsck_opts *o;
	struct flyfs_fsck_result *r;
	enum flyfs_fsck_mode mode;
	struct flyfs_sb_info sb;
	bool sb_dirty;			/* write the primary at the end */
	bool backup_bad;		/* rewrite the backup at the end */
	bool opfail;			/* operational error: exit 8 */
	bool blocks_unknown;		/* some tree not walked: free nothing */
	bool names_unknown;		/* some directory not walked */
	uint8_t *buf, *buf2;		/* BS each, device aligned */

	/* Journal overlay for -n: sorted by home, one per home block. */
	struct fs_jscan_ref
	    *jov;	/* -n: journal overlay (journal_scan.c) */
	size_t njov;

	/* Inode file: extents of inode 0 (lblk, pblk, len), in lblk order. */
	struct flyfs_extent *ifx;
	size_t nifx;
	uint64_t ninodes;		/* slots = inode file size / 256 */
	struct iinfo *ii;
	uint8_t
	    *ibitmap;		/* on-disk inode bitmap (ninodes bits) */
	uint64_t *ibm_blk;		/* its blocks */
	size_t nibm;
	uint64_t *orph_blk;		/* orphan file blocks */
	size_t norph;
	uint64_t lostfound;		/* inode of /lost+found, 0 = none */
	uint64_t lf_leaf;		/* its single leaf, 0 = unusable */

	struct run *runs;
	size_t nruns, caprun;
	struct dedge *edges;
	size_t nedges, capedge;

	uint64_t used_blocks;
	bool have_zstd_ext;
};

/* Fields the repairs change in an inode (fsck_inode_fix). */
enum ifield { IF_NLINK, IF_PARENT, IF_ENTRIES, IF_BLOCKS, IF_SIZE,
    IF_CLEAR_ORPHAN, IF_RESEAL, IF_ZERO };

/* fsck_core.c: messages (a problem is counted and says what is done). */
void	fsck_info(struct fsck *f, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
void	fsck_verbose(struct fsck *f, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
void	fsck_operr(struct fsck *f, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
bool	fsck_problem(struct fsck *f, enum fixkind kind, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
void	fsck_unfixed(struct fsck *f, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

/* fsck_core.c: block I/O, through the journal overlay under -n. */
int	fsck_read_raw(struct fsck *f, uint64_t blk, uint64_t n, void *buf);
int	fsck_read_blocks(struct fsck *f, uint64_t blk, uint64_t n, void *buf);
int	fsck_write_block(struct fsck *f, uint64_t blk, const void *buf);
int	fsck_read_mblock(struct fsck *f, uint64_t blk, uint32_t magic,
	    uint64_t owner, void *buf, char *err, size_t errlen);
void	fsck_reseal_block(struct fsck *f, uint64_t blk, void *buf);

/* fsck_super.c: pass 0 and the final superblock. */
bool	fsck_pass0_super(struct fsck *f);
bool	fsck_pass0_journal(struct fsck *f);
void	fsck_finish_super(struct fsck *f, uint64_t free_blocks,
	    uint64_t used_inodes, bool was_clean);

/* fsck_inode.c: the inode file and pass 1. */
int	fsck_inode_read(struct fsck *f, uint64_t ino, struct flyfs_inode *out);
void	fsck_inode_fix(struct fsck *f, uint64_t ino, enum ifield field,
	    uint64_t v);
bool	fsck_iszero(const void *p, size_t n);
bool	fsck_pass1_system(struct fsck *f);
void	fsck_read_orphans(struct fsck *f);
int	fsck_pass1_inodes(struct fsck *f);

/* fsck_dir.c: passes 2 to 4. */
int	fsck_pass2_dir(struct fsck *f, uint64_t ino);
int	fsck_pass3_connect(struct fsck *f);
void	fsck_pass4_links(struct fsck *f);

/* fsck_alloc.c: runs of used blocks and pass 5. */
int	fsck_add_run(struct fsck *f, uint64_t blk, uint64_t len,
	    uint64_t owner);
int	fsck_add_fixed_runs(struct fsck *f);
int	fsck_pass5_blocks(struct fsck *f, uint64_t *total_free);
uint64_t	fsck_pass5_inodes(struct fsck *f);
void	fsck_pass5_orphans(struct fsck *f);

#endif /* FLYFS_FSCK_INT_H */
