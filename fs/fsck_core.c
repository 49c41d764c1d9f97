/*
 * fsck_core.c - the flyfs checker and repairer (fsck.flyfs as a library).
 *
 * This module owns the rules that decide whether a whole image is
 * consistent, and the repairs that make it so.  It reads the image
 * through the synchronous blockdev helpers, never through the buffer
 * cache, and trusts nothing it reads: every number taken from the image is
 * range-checked before it indexes memory or names a block.
 *
 * The check runs in passes, as e2fsck's do:
 *   0  superblock (primary, else the backup), journal: committed
 *      transactions are replayed (-p/-y) or overlaid in memory (-n);
 *   1  the system files and every inode slot: checksum, number, type,
 *      flags, extent trees (records sorted, in range, compressed extents
 *      decompressed), symlinks, xattr blocks, sizes, i_blocks; every block
 *      used is recorded as a run with its owner;
 *   2  every directory tree: node levels and bounds, the leaf chain, keys
 *      against name hashes, names, entry targets and types, entry counts;
 *   3  connectivity: a walk from the root; extra links to directories,
 *      unreachable directories (to lost+found), ".." against dr_parent;
 *   4  link counts, unattached inodes (to lost+found), orphans;
 *   5  allocation: the block runs, sorted, give overlaps (blocks with two
 *      owners) and, group by group, the bitmap each group should have;
 *      compared with the on-disk bitmaps, free counts, the inode bitmap,
 *      the orphan file and the superblock counters.
 * Memory is one small record per inode plus one run per extent, so the
 * time is linear in metadata; groups whose bitmap was never written
 * (BITMAP_UNINIT) cost nothing, which keeps a fresh 16 TiB image quick.
 *
 * Repairs happen only in -p/-y, after the journal is home, block by block
 * (read, change, reseal, write).  Two guards keep them from making things
 * worse: when some tree could not be walked (its blocks are unknown),
 * nothing is freed (bitmap bits are only ever set); when some directory
 * could not be walked (its entries are unknown), no link count is lowered
 * and nothing is moved to lost+found.
 */
#include "fs/fsck_core.h"
#include "fs/journal_scan.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blockdev/blockdev.h"
#include "fs/format.h"
#include "fs/ondisk.h"

#ifdef FLYFS_HAVE_ZSTD
#include <zstd.h>
#endif

#define BS		FLYFS_BLOCK_SIZE
#define OWNER_FS	UINT64_MAX	/* a run of fixed metadata */
#define DIR_MAX_LEVELS	10		/* as dir.c */
#define DIR_IDX_MAX	(FLYFS_DIR_LEAF_SPACE / sizeof(struct flyfs_dir_idx))
#define DIR_REC_OFF	(sizeof(struct flyfs_mblock_hdr) + \
			    sizeof(struct flyfs_dir_node))
#define LF_NAME		"lost+found"

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
	struct fs_jscan_ref *jov;	/* -n: journal overlay (journal_scan.c) */
	size_t njov;

	/* Inode file: extents of inode 0 (lblk, pblk, len), in lblk order. */
	struct flyfs_extent *ifx;
	size_t nifx;
	uint64_t ninodes;		/* slots = inode file size / 256 */
	struct iinfo *ii;
	uint8_t *ibitmap;		/* on-disk inode bitmap (ninodes bits) */
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

/* ---- Messages ----------------------------------------------------------- */

static void __attribute__((format(printf, 3, 0)))
vsay(struct fsck *f, enum flyfs_fsck_msgkind kind, const char *fmt,
    va_list ap)
{
	char line[1024];

	vsnprintf(line, sizeof(line), fmt, ap);
	if (f->o->msg != NULL)
		f->o->msg(f->o->msg_arg, kind, line);
	else if (f->o->out != NULL)
		fprintf(f->o->out, "%s\n", line);
}

static void __attribute__((format(printf, 2, 3)))
info(struct fsck *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(f, FLYFS_FSCK_MSG_INFO, fmt, ap);
	va_end(ap);
}

static void __attribute__((format(printf, 2, 3)))
verbose(struct fsck *f, const char *fmt, ...)
{
	va_list ap;

	if (!f->o->verbose)
		return;
	va_start(ap, fmt);
	vsay(f, FLYFS_FSCK_MSG_INFO, fmt, ap);
	va_end(ap);
}

static void __attribute__((format(printf, 2, 3)))
operr(struct fsck *f, const char *fmt, ...)
{
	va_list ap;

	f->opfail = true;
	va_start(ap, fmt);
	vsay(f, FLYFS_FSCK_MSG_ERROR, fmt, ap);
	va_end(ap);
}

/*
 * Report a problem (one line: the sentence, then what is done about it)
 * and say whether the caller should repair it now.  A caller whose repair
 * then fails calls unfixed().
 */
static bool __attribute__((format(printf, 3, 4)))
problem(struct fsck *f, enum fixkind kind, const char *fmt, ...)
{
	char line[900];
	const char *what;
	bool fix = false;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	f->r->found++;
	if (kind == FIX_NEVER) {
		what = "cannot be repaired safely, left as is";
	} else if (f->mode == FLYFS_FSCK_NO) {
		what = "not fixed (-n)";
	} else if (kind == FIX_YES && f->mode == FLYFS_FSCK_PREEN) {
		what = "not fixed: needs fsck.flyfs -y";
	} else {
		what = "fixed";
		fix = true;
	}
	if (fix)
		f->r->fixed++;
	else
		f->r->left++;
	fmt = "%s: %s.";
	{
		char full[1024];
		snprintf(full, sizeof(full), fmt, line, what);
		if (f->o->msg != NULL)
			f->o->msg(f->o->msg_arg, FLYFS_FSCK_MSG_PROBLEM, full);
		else if (f->o->out != NULL)
			fprintf(f->o->out, "%s\n", full);
	}
	return fix;
}

static void __attribute__((format(printf, 2, 3)))
unfixed(struct fsck *f, const char *fmt, ...)
{
	char line[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	f->r->fixed--;
	f->r->left++;
	info(f, "  could not repair it: %s", line);
}

/* ---- Block I/O ------------------------------------------------------------ */

static const struct fs_jscan_ref *
jov_find(struct fsck *f, uint64_t blk)
{
	size_t lo = 0, hi = f->njov;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->jov[mid].home < blk)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < f->njov && f->jov[lo].home == blk ? &f->jov[lo] : NULL;
}

/* Read a raw device block, bypassing the overlay. */
static int
read_raw(struct fsck *f, uint64_t blk, uint64_t n, void *buf)
{
	uint64_t dev_blocks = blockdev_size(f->bd) / BS;

	if (blk >= dev_blocks || n > dev_blocks - blk)
		return ENXIO;
	return blockdev_pread(f->bd, buf, (size_t)(n * BS), (off_t)(blk * BS));
}

/*
 * Read N blocks from BLK (inside the filesystem) as the next mount would
 * see them: through the in-memory journal overlay under -n.
 */
static int
read_blocks(struct fsck *f, uint64_t blk, uint64_t n, void *buf)
{
	int error;

	if (blk >= f->sb.block_count || n > f->sb.block_count - blk)
		return ENXIO;
	if ((error = read_raw(f, blk, n, buf)) != 0)
		return error;
	for (uint64_t i = 0; f->njov > 0 && i < n; i++) {
		const struct fs_jscan_ref *j = jov_find(f, blk + i);
		uint8_t *dst = (uint8_t *)buf + i * BS;

		if (j == NULL)
			continue;
		error = fs_jscan_read(f->bd, f->sb.csum_seed, j, f->buf2);
		if (error)
			return error;
		memcpy(dst, f->buf2, BS);
	}
	return 0;
}

static int
write_block(struct fsck *f, uint64_t blk, const void *buf)
{
	int error;

	if (f->mode == FLYFS_FSCK_NO || blk >= f->sb.block_count)
		return EROFS;
	error = blockdev_pwrite(f->bd, buf, BS, (off_t)(blk * BS));
	if (error != 0)
		operr(f, "cannot write block %" PRIu64 ": %s", blk,
		    strerror(error));
	return error;
}

/* Read metadata block BLK and check its header; ERR gets the reason. */
static int
read_mblock(struct fsck *f, uint64_t blk, uint32_t magic, uint64_t owner,
    void *buf, char *err, size_t errlen)
{
	const struct flyfs_mblock_hdr *h = buf;
	int error;

	if (blk == 0 || blk >= f->sb.block_count)
		return flyfs_error(err, errlen, ENXIO,
		    "block %" PRIu64 " is outside the filesystem", blk);
	if ((error = read_blocks(f, blk, 1, buf)) != 0)
		return flyfs_error(err, errlen, EIO,
		    "block %" PRIu64 " cannot be read: %s", blk,
		    strerror(error));
	error = flyfs_mblock_check(buf, magic, blk, f->sb.csum_seed, err,
	    errlen);
	if (error == 0 && owner != OWNER_FS && le64_get(h->mb_owner) != owner)
		return flyfs_error(err, errlen, EUCLEAN,
		    "block %" PRIu64 " belongs to inode %" PRIu64 ", not %"
		    PRIu64, blk, le64_get(h->mb_owner), owner);
	return error;
}

/* A metadata block whose only fault is its checksum: reseal and write. */
static void
reseal_block(struct fsck *f, uint64_t blk, void *buf)
{
	const struct flyfs_mblock_hdr *h = buf;

	flyfs_mblock_seal(buf, le32_get(h->mb_magic), blk,
	    le64_get(h->mb_txid), le64_get(h->mb_owner), f->sb.csum_seed);
	if (write_block(f, blk, buf) != 0)
		unfixed(f, "write failed");
}

/* ---- Runs of used blocks ------------------------------------------------- */

static int
add_run(struct fsck *f, uint64_t blk, uint64_t len, uint64_t owner)
{
	if (len == 0)
		return 0;
	if (f->nruns == f->caprun) {
		size_t cap = f->caprun ? f->caprun * 2 : 1024;
		struct run *n = realloc(f->runs, cap * sizeof(*n));
		if (n == NULL)
			return ENOMEM;
		f->runs = n;
		f->caprun = cap;
	}
	f->runs[f->nruns++] = (struct run){ blk, len, owner };
	return 0;
}

static int
cmp_run(const void *a, const void *b)
{
	const struct run *x = a, *y = b;

	if (x->blk != y->blk)
		return x->blk < y->blk ? -1 : 1;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->owner < y->owner ? -1 : x->owner > y->owner;
}

/* ---- Inode file --------------------------------------------------------- */

/* Physical block holding logical block LBLK of the inode file, 0 if none. */
static uint64_t
ifile_bmap(struct fsck *f, uint64_t lblk)
{
	size_t lo = 0, hi = f->nifx;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct flyfs_extent *e = &f->ifx[mid];
		uint64_t el = le64_get(e->e_lblk);

		if (lblk < el)
			hi = mid;
		else if (lblk >= el + le32_get(e->e_llen))
			lo = mid + 1;
		else
			return le64_get(e->e_pblk) + (lblk - el);
	}
	return 0;
}

/* Read inode INO into *OUT (raw, unchecked). */
static int
inode_read(struct fsck *f, uint64_t ino, struct flyfs_inode *out)
{
	uint64_t pb = ifile_bmap(f, ino / FLYFS_INODES_PER_BLOCK);
	int error;

	if (pb == 0)
		return ENXIO;
	if ((error = read_blocks(f, pb, 1, f->buf2)) != 0)
		return error;
	memcpy(out, f->buf2 + (ino % FLYFS_INODES_PER_BLOCK) * FLYFS_INODE_SIZE,
	    sizeof(*out));
	return 0;
}

/* Write IN as inode INO (sealed unless it is a free slot). */
static int
inode_write(struct fsck *f, uint64_t ino, struct flyfs_inode *in)
{
	uint64_t pb = ifile_bmap(f, ino / FLYFS_INODES_PER_BLOCK);
	int error;

	if (pb == 0)
		return ENXIO;
	if ((error = read_blocks(f, pb, 1, f->buf2)) != 0)
		return error;
	if (!flyfs_inode_is_free(in))
		flyfs_inode_seal(in, f->sb.csum_seed);
	memcpy(f->buf2 + (ino % FLYFS_INODES_PER_BLOCK) * FLYFS_INODE_SIZE, in,
	    sizeof(*in));
	return write_block(f, pb, f->buf2);
}

/* Fields the repairs change in an inode. */
enum ifield { IF_NLINK, IF_PARENT, IF_ENTRIES, IF_BLOCKS, IF_SIZE,
    IF_CLEAR_ORPHAN, IF_RESEAL, IF_ZERO };

static void
inode_fix(struct fsck *f, uint64_t ino, enum ifield field, uint64_t v)
{
	struct flyfs_inode in;
	int error;

	if ((error = inode_read(f, ino, &in)) != 0) {
		unfixed(f, "inode %" PRIu64 " unreadable: %s", ino,
		    strerror(error));
		return;
	}
	switch (field) {
	case IF_NLINK:
		le32_set(&in.i_nlink, (uint32_t)v);
		break;
	case IF_PARENT:
		le64_set(&in.i_dir.dr_parent, v);
		break;
	case IF_ENTRIES:
		le64_set(&in.i_dir.dr_entries, v);
		break;
	case IF_BLOCKS:
		le64_set(&in.i_blocks, v);
		break;
	case IF_SIZE:
		le64_set(&in.i_size, v);
		break;
	case IF_CLEAR_ORPHAN:
		le32_set(&in.i_flags, le32_get(in.i_flags) & ~FLYFS_IFL_ORPHAN);
		break;
	case IF_RESEAL:
		break;
	case IF_ZERO:
		memset(&in, 0, sizeof(in));
		break;
	}
	if ((error = inode_write(f, ino, &in)) != 0)
		unfixed(f, "inode %" PRIu64 " not written: %s", ino,
		    strerror(error));
}

/* ---- Pass 0: superblock --------------------------------------------------- */

/* Static fields that the backup must share with the primary. */
static bool
sb_static_equal(const struct flyfs_sb_info *a, const struct flyfs_sb_info *b)
{
	return a->version_major == b->version_major &&
	    a->feature_compat == b->feature_compat &&
	    a->feature_ro_compat == b->feature_ro_compat &&
	    a->feature_incompat == b->feature_incompat &&
	    memcmp(a->uuid, b->uuid, sizeof(a->uuid)) == 0 &&
	    strcmp(a->label, b->label) == 0 &&
	    a->data_block_size == b->data_block_size &&
	    a->block_count == b->block_count &&
	    a->journal_start == b->journal_start &&
	    a->journal_blocks == b->journal_blocks &&
	    a->ifile_start == b->ifile_start &&
	    a->csum_seed == b->csum_seed &&
	    memcmp(a->hash_key, b->hash_key, sizeof(a->hash_key)) == 0 &&
	    a->default_comp == b->default_comp &&
	    a->default_comp_level == b->default_comp_level;
}

static int
try_sb(struct fsck *f, uint64_t blk, struct flyfs_sb_info *sbi, char *err,
    size_t errlen)
{
	int error;

	if ((error = read_raw(f, blk, 1, f->buf)) != 0)
		return flyfs_error(err, errlen, error,
		    "block %" PRIu64 " cannot be read: %s", blk,
		    strerror(error));
	return flyfs_sb_decode(f->buf, sbi, err, errlen);
}

/*
 * Find a superblock to trust: the primary, else the backup in the last
 * block of the device (or where the damaged primary says it is).  Returns
 * false (operational error reported) when neither is usable.
 */
static bool
pass0_super(struct fsck *f)
{
	char perr[512], berr[512];
	struct flyfs_sb_info backup;
	uint64_t dev_blocks = blockdev_size(f->bd) / BS;
	uint64_t bblk = 0;
	int perror_, berror = ENOENT;
	enum fixkind kind;

	if (dev_blocks < 1) {
		operr(f, "the image is empty: not a flyfs filesystem");
		return false;
	}
	perror_ = try_sb(f, 0, &f->sb, perr, sizeof(perr));
	if (perror_ == 0) {
		if (flyfs_sb_check_device(&f->sb, blockdev_size(f->bd), perr,
		    sizeof(perr)) != 0) {
			operr(f, "%s; the check cannot go on (if the image "
			    "was cut short by accident, extend it back to %"
			    PRIu64 " bytes with truncate -s; what was beyond "
			    "is lost)", perr, f->sb.block_count * BS);
			return false;
		}
		/* The backup: compare its static fields. */
		berror = try_sb(f, f->sb.backup_block, &backup, berr,
		    sizeof(berr));
		if (berror != 0) {
			if (problem(f, FIX_PREEN, "the backup superblock at "
			    "block %" PRIu64 " is damaged (%s)",
			    f->sb.backup_block, berr))
				f->backup_bad = true;
		} else if (!sb_static_equal(&f->sb, &backup)) {
			if (problem(f, FIX_PREEN, "the backup superblock at "
			    "block %" PRIu64 " differs from the primary",
			    f->sb.backup_block))
				f->backup_bad = true;
		}
		return true;
	}
	if (perror_ == EOPNOTSUPP) {
		operr(f, "%s", perr);
		return false;
	}

	/* The primary is unusable: look for the backup. */
	bblk = dev_blocks - 1;
	if (bblk > 0)
		berror = try_sb(f, bblk, &backup, berr, sizeof(berr));
	if (berror == 0 && backup.backup_block != bblk)
		berror = flyfs_error(berr, sizeof(berr), EUCLEAN,
		    "it says it belongs at block %" PRIu64,
		    backup.backup_block);
	if (berror != 0 && perror_ != EINVAL) {
		/* Maybe the file grew: try where the primary says. */
		const struct flyfs_super *sb;
		uint64_t nb;

		if (read_raw(f, 0, 1, f->buf) == 0) {
			sb = (const struct flyfs_super *)f->buf;
			nb = le64_get(sb->sb_block_count);
			if (nb >= 2 && nb <= dev_blocks && nb - 1 != bblk) {
				bblk = nb - 1;
				berror = try_sb(f, bblk, &backup, berr,
				    sizeof(berr));
			}
		}
	}
	if (berror != 0) {
		if (perror_ == EINVAL && berror == EINVAL)
			operr(f, "%s, and no flyfs backup superblock was "
			    "found in the last block", perr);
		else
			operr(f, "the superblock is unusable (%s) and so is "
			    "the backup (%s)", perr, berr);
		return false;
	}
	if (flyfs_sb_check_device(&backup, blockdev_size(f->bd), berr,
	    sizeof(berr)) != 0) {
		operr(f, "%s", berr);
		return false;
	}
	/*
	 * A checksum or value error on a block that still says FLYFS_SB is
	 * damage to our own superblock: restoring it is safe.  A wrong
	 * magic may mean another filesystem was made over this one; only
	 * -y overwrites it.
	 */
	kind = perror_ == EINVAL ? FIX_YES : FIX_PREEN;
	f->sb = backup;
	if (problem(f, kind, "the primary superblock is damaged (%s); the "
	    "backup at block %" PRIu64 " is valid and is used instead", perr,
	    bblk)) {
		f->sb.state &= ~FLYFS_STATE_CLEAN;
		f->sb_dirty = true;
	} else {
		/* Go on from the backup, read-only from here. */
		f->sb.state &= ~FLYFS_STATE_CLEAN;
		if (f->mode != FLYFS_FSCK_NO) {
			info(f, "checking with the backup superblock, "
			    "without writing anything");
			f->mode = FLYFS_FSCK_NO;
		}
	}
	return true;
}

/* ---- Pass 0: journal ---------------------------------------------------- */

/* Write a fresh, empty journal superblock: next transaction SEQ. */
static int
journal_reset(struct fsck *f, uint64_t seq)
{
	struct flyfs_journal_super *js = (void *)f->buf;

	memset(f->buf, 0, BS);
	le32_set(&js->js_block_size, BS);
	le64_set(&js->js_first, 1);
	le64_set(&js->js_blocks, f->sb.journal_blocks);
	le64_set(&js->js_sequence, seq);
	le64_set(&js->js_start, 0);
	memcpy(js->js_uuid, f->sb.uuid, FLYFS_UUID_SIZE);
	flyfs_mblock_seal(f->buf, FLYFS_MB_JSUPER, f->sb.journal_start,
	    f->sb.last_txid, 0, f->sb.csum_seed);
	return write_block(f, f->sb.journal_start, f->buf);
}

static int
replay_home(void *arg, uint64_t home, const void *block)
{
	return write_block(arg, home, block);
}

/*
 * The journal is read by journal_scan.c, the reader the mount uses too,
 * so what fsck replays (or overlays in memory under -n) is exactly what
 * the next mount would replay.  A committed transaction that is damaged
 * makes the mount refuse; here the intact transactions before it are
 * kept and it and every later one are dropped (-y), a repair that may
 * lose their changes, which the passes below then check.
 */
static bool
pass0_journal(struct fsck *f)
{
	struct flyfs_journal_super js;
	struct fs_jscan s = { 0 };
	struct fs_jscan_geom g;
	char err[256], serr[256] = "";
	uint64_t seq, jerrno;
	bool ok = true, damaged = false, apply;
	int error;

	if (read_mblock(f, f->sb.journal_start, FLYFS_MB_JSUPER, OWNER_FS,
	    f->buf, err, sizeof(err)) != 0) {
		if (problem(f, FIX_YES, "the journal superblock is damaged "
		    "(%s); whatever the journal held is lost", err) &&
		    journal_reset(f, f->sb.last_txid + 1) != 0)
			unfixed(f, "write failed");
		return true;
	}
	memcpy(&js, f->buf, sizeof(js));
	if (le32_get(js.js_block_size) != BS ||
	    le64_get(js.js_blocks) != f->sb.journal_blocks ||
	    le64_get(js.js_first) < 1 ||
	    le64_get(js.js_first) >= f->sb.journal_blocks ||
	    memcmp(js.js_uuid, f->sb.uuid, FLYFS_UUID_SIZE) != 0 ||
	    (le64_get(js.js_start) != 0 &&
	    (le64_get(js.js_start) < le64_get(js.js_first) ||
	    le64_get(js.js_start) >= f->sb.journal_blocks))) {
		if (problem(f, FIX_YES, "the journal superblock describes "
		    "an impossible journal (size %" PRIu64 ", first block %"
		    PRIu64 ", start %" PRIu64 "); whatever it held is lost",
		    le64_get(js.js_blocks), le64_get(js.js_first),
		    le64_get(js.js_start)) &&
		    journal_reset(f, f->sb.last_txid + 1) != 0)
			unfixed(f, "write failed");
		return true;
	}
	jerrno = le32_get(js.js_errno);
	g = (struct fs_jscan_geom){
		.start = f->sb.journal_start, .blocks = f->sb.journal_blocks,
		.first = le64_get(js.js_first), .fs_blocks = f->sb.block_count,
		.seed = f->sb.csum_seed,
	};
	error = fs_jscan_run(f->bd, &g, le64_get(js.js_start),
	    le64_get(js.js_sequence), &s, serr, sizeof(serr));
	if (error == EUCLEAN) {
		damaged = true;
	} else if (error) {
		operr(f, "cannot scan the journal: %s", serr);
		ok = false;
		goto out;
	}
	seq = s.next_seq;
	f->r->journal_txns = s.txns;
	if (!damaged && s.txns == 0 && le64_get(js.js_start) == 0 &&
	    jerrno == 0)
		goto out;
	/*
	 * Replay (and reset the log) in -p/-y; with a damaged transaction
	 * only in -y, after saying what is lost.
	 */
	apply = f->mode != FLYFS_FSCK_NO;
	if (damaged && !problem(f, FIX_YES, "%s; the %" PRIu64 " intact "
	    "committed transaction%s before it %s kept, it and any later "
	    "ones are dropped", serr, s.txns, s.txns == 1 ? "" : "s",
	    s.txns == 1 ? "is" : "are"))
		apply = false;
	if (!apply) {
		if (s.txns > 0) {
			info(f, "the journal holds %" PRIu64 " committed "
			    "transaction%s (%zu block%s): replayed in memory "
			    "only; the image is checked as %s", s.txns,
			    s.txns == 1 ? "" : "s", s.nrefs,
			    s.nrefs == 1 ? "" : "s", damaged ? "it would be "
			    "once the damaged part is dropped" : "the next "
			    "mount will see it");
			f->r->journal_in_memory = true;
			f->jov = s.refs;
			f->njov = s.nrefs;
			s.refs = NULL;
		} else if (le64_get(js.js_start) != 0 && !damaged) {
			info(f, "the journal holds no committed transaction; "
			    "the next mount will mark it empty");
		}
		if (jerrno != 0)
			problem(f, FIX_PREEN, "the journal was aborted after "
			    "error %" PRIu64 " (%s)", jerrno,
			    strerror((int)jerrno));
		goto out;
	}
	if (s.txns > 0) {
		f->r->found++;
		f->r->fixed++;
		info(f, "replaying %" PRIu64 " committed journal "
		    "transaction%s (%zu block%s)", s.txns,
		    s.txns == 1 ? "" : "s", s.nrefs, s.nrefs == 1 ? "" : "s");
		error = fs_jscan_replay(f->bd, f->sb.csum_seed, &s, f->buf,
		    replay_home, f);
		if (error) {
			operr(f, "journal replay failed: %s", strerror(error));
			ok = false;
			goto out;
		}
		if (blockdev_flush(f->bd) != 0) {
			operr(f, "cannot flush the image after replay");
			ok = false;
			goto out;
		}
		f->r->journal_replayed = true;
		f->sb.last_txid = seq - 1;
		f->sb.state &= ~FLYFS_STATE_CLEAN;
		f->sb_dirty = true;
	}
	if (jerrno != 0)
		problem(f, FIX_PREEN, "the journal was aborted after error %"
		    PRIu64 " (%s)", jerrno, strerror((int)jerrno));
	/* Past a damaged transaction's number too: it must never validate. */
	if (damaged)
		seq++;
	if (journal_reset(f, seq) != 0 || blockdev_flush(f->bd) != 0)
		ok = false;
out:
	fs_jscan_free(&s);
	return ok;
}

/* ---- Extent trees --------------------------------------------------------- */

/* What walking one inode's extent tree found. */
struct ewalk {
	uint64_t ino;
	const struct flyfs_inode *in;
	uint64_t data_blocks;		/* physical blocks of data */
	uint64_t node_blocks;		/* FEXT blocks */
	uint64_t lend;			/* end of the last extent, blocks */
	uint64_t written_end;		/* end of the last written extent */
	uint64_t prev_end;		/* for the order check */
	bool first;
	bool bad;			/* something was not usable */
	bool collect;			/* keep the leaf records (system files) */
	bool norun;			/* do not record blocks (a first look) */
	struct flyfs_extent *ext;
	size_t next, capext;
	/* a record to drop: node block (0 = the inode) and its index */
	uint64_t drop_node;
	int drop_idx;
	bool drop_index_rec;
};

#ifdef FLYFS_HAVE_ZSTD
/* Decompress the frame of compressed extent E; false if it is wrong. */
static bool
zstd_verify(struct fsck *f, const struct flyfs_extent *e, char *why,
    size_t whylen)
{
	uint32_t plen = le32_get(e->e_plen), llen = le32_get(e->e_llen);
	uint32_t cb = le32_get(e->e_cbytes);
	uint8_t *src, *dst;
	size_t got;
	bool ok = false;

	src = blockdev_alloc_buf(f->bd, (size_t)plen * BS);
	dst = malloc((size_t)llen * BS + 1);
	if (src == NULL || dst == NULL) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	if (read_blocks(f, le64_get(e->e_pblk), plen, src) != 0) {
		snprintf(why, whylen, "its blocks cannot be read");
		goto out;
	}
	got = ZSTD_decompress(dst, (size_t)llen * BS + 1, src, cb);
	if (ZSTD_isError(got))
		snprintf(why, whylen, "its zstd frame is damaged (%s)",
		    ZSTD_getErrorName(got));
	else if (got != (size_t)llen * BS)
		snprintf(why, whylen, "it decompresses to %zu bytes, not %"
		    PRIu64, got, (uint64_t)llen * BS);
	else
		ok = true;
out:
	blockdev_free_buf(src);
	free(dst);
	return ok;
}
#endif

/*
 * Check one leaf record.  Returns NULL if it is valid, else why not.
 */
static const char *
extent_invalid(struct fsck *f, struct ewalk *w, const struct flyfs_extent *e,
    uint64_t lo, uint64_t hi, char *why, size_t whylen)
{
	uint64_t lb = le64_get(e->e_lblk), pb = le64_get(e->e_pblk);
	uint32_t ll = le32_get(e->e_llen), pl = le32_get(e->e_plen);
	uint32_t cb = le32_get(e->e_cbytes);
	uint32_t dbb = f->sb.data_block_size / BS;

	if (ll == 0 || ll > FLYFS_EXT_MAX_LEN || pl == 0)
		return "it has an impossible length";
	if (lb >= FLYFS_MAX_FILE_SIZE / BS ||
	    ll > FLYFS_MAX_FILE_SIZE / BS - lb)
		return "it maps past the largest possible file";
	if (lb < lo || lb + ll > hi)
		return "it lies outside the range its index gives it";
	if (!w->first && lb < w->prev_end)
		return "it overlaps or precedes the previous extent";
	if (pb == 0 || pb >= f->sb.block_count ||
	    pl > f->sb.block_count - pb) {
		snprintf(why, whylen, "blocks %" PRIu64 "..%" PRIu64 " lie "
		    "outside the filesystem (%" PRIu64 " blocks)", pb,
		    pb + pl - 1, f->sb.block_count);
		return why;
	}
	if (e->e_flags & ~FLYFS_EXT_UNWRITTEN)
		return "it has unknown flags";
	if (e->e_comp == FLYFS_COMP_NONE) {
		if (pl != ll || cb != 0)
			return "a raw extent must have equal lengths and no "
			    "compressed size";
		return NULL;
	}
	if (e->e_comp != FLYFS_COMP_ZSTD)
		return "it names an unknown compression algorithm";
	if (e->e_flags & FLYFS_EXT_UNWRITTEN)
		return "an unwritten extent cannot be compressed";
	if (pl >= ll || ll > dbb || lb % dbb != 0)
		return "a compressed extent must be one data block stored in "
		    "fewer blocks";
	if (cb == 0 || cb > (uint64_t)pl * BS ||
	    (cb + BS - 1) / BS != pl) {
		snprintf(why, whylen, "its compressed size %" PRIu32 " does "
		    "not fit its %" PRIu32 " blocks", cb, pl);
		return why;
	}
	f->have_zstd_ext = true;
#ifdef FLYFS_HAVE_ZSTD
	if (!zstd_verify(f, e, why, whylen))
		return why;
#else
	f->r->zstd_unchecked = true;
#endif
	return NULL;
}

static int walk_extent_node(struct fsck *f, struct ewalk *w,
    const struct flyfs_extent_node *h, const void *recs, unsigned max_leaf,
    unsigned max_idx, int level, uint64_t lo, uint64_t hi, uint64_t node);

/*
 * Walk the extent subtree in block BLK (LEVEL expected).  Damage is
 * reported here; a child that cannot be used marks the walk bad.
 */
static int
walk_extent_block(struct fsck *f, struct ewalk *w, uint64_t blk, int level,
    uint64_t lo, uint64_t hi, bool *drop)
{
	char err[256];
	uint8_t *b;
	const struct flyfs_extent_node *h;
	int error, rc;

	*drop = false;
	b = blockdev_alloc_buf(f->bd, BS);
	if (b == NULL)
		return ENOMEM;
	error = read_mblock(f, blk, FLYFS_MB_EXTENT, w->ino, b, err,
	    sizeof(err));
	h = (const void *)(b + sizeof(struct flyfs_mblock_hdr));
	if (error == EBADMSG && le16_get(h->en_magic) ==
	    FLYFS_EXTENT_NODE_MAGIC && le16_get(h->en_level) == level &&
	    le16_get(h->en_count) <= le16_get(h->en_max)) {
		/* Intact structure, wrong checksum: reseal. */
		if (problem(f, FIX_PREEN, "inode %" PRIu64 ": extent block %s",
		    w->ino, err))
			reseal_block(f, blk, b);
		error = 0;
	}
	if (error == 0 && (le16_get(h->en_magic) != FLYFS_EXTENT_NODE_MAGIC ||
	    le16_get(h->en_level) != level ||
	    le16_get(h->en_max) != (level == 0 ? FLYFS_EXT_BLOCK_LEAF_MAX :
	    FLYFS_EXT_BLOCK_IDX_MAX) ||
	    le16_get(h->en_count) > le16_get(h->en_max) ||
	    le16_get(h->en_count) == 0)) {
		error = flyfs_error(err, sizeof(err), EUCLEAN, "extent block %"
		    PRIu64 " has a bad node header (magic 0x%04x, level %u "
		    "(expected %d), %u of %u records)", blk,
		    le16_get(h->en_magic), le16_get(h->en_level), level,
		    le16_get(h->en_count), le16_get(h->en_max));
	}
	if (error != 0) {
		if (problem(f, FIX_YES, "inode %" PRIu64 ": %s; the part of "
		    "the file it maps is dropped", w->ino, err))
			*drop = true;
		else
			w->bad = true;
		blockdev_free_buf(b);
		return 0;
	}
	w->node_blocks++;
	if (!w->norun && (rc = add_run(f, blk, 1, w->ino)) != 0) {
		blockdev_free_buf(b);
		return rc;
	}
	rc = walk_extent_node(f, w, h, h + 1, FLYFS_EXT_BLOCK_LEAF_MAX,
	    FLYFS_EXT_BLOCK_IDX_MAX, level, lo, hi, blk);
	blockdev_free_buf(b);
	return rc;
}

/* Remove record IDX of the node at NODE (0: the inode root) on disk. */
static void
drop_record(struct fsck *f, uint64_t ino, uint64_t node, int idx, int level)
{
	struct flyfs_inode in;
	struct flyfs_extent_node *h;
	size_t rsz = level == 0 ? sizeof(struct flyfs_extent) :
	    sizeof(struct flyfs_extent_idx);
	uint8_t *recs;
	unsigned n;

	if (node == 0) {
		if (inode_read(f, ino, &in) != 0) {
			unfixed(f, "inode %" PRIu64 " unreadable", ino);
			return;
		}
		h = &in.i_ext_hdr;
		recs = (uint8_t *)(h + 1);
	} else {
		if (read_blocks(f, node, 1, f->buf) != 0) {
			unfixed(f, "block %" PRIu64 " unreadable", node);
			return;
		}
		h = (void *)(f->buf + sizeof(struct flyfs_mblock_hdr));
		recs = (uint8_t *)(h + 1);
	}
	n = le16_get(h->en_count);
	if (idx < 0 || (unsigned)idx >= n)
		return;
	memmove(recs + (size_t)idx * rsz, recs + (size_t)(idx + 1) * rsz,
	    (n - (unsigned)idx - 1) * rsz);
	memset(recs + (size_t)(n - 1) * rsz, 0, rsz);
	le16_set(&h->en_count, (uint16_t)(n - 1));
	if (node == 0) {
		if (inode_write(f, ino, &in) != 0)
			unfixed(f, "inode %" PRIu64 " not written", ino);
	} else {
		reseal_block(f, node, f->buf);
	}
}

static int
walk_extent_node(struct fsck *f, struct ewalk *w,
    const struct flyfs_extent_node *h, const void *recs, unsigned max_leaf,
    unsigned max_idx, int level, uint64_t lo, uint64_t hi, uint64_t node)
{
	unsigned n = le16_get(h->en_count);
	char why[256];
	int rc;
	int dropped = 0;

	(void)max_leaf;
	(void)max_idx;
	if (level == 0) {
		struct flyfs_extent ext[FLYFS_EXT_BLOCK_LEAF_MAX];

		memcpy(ext, recs, n * sizeof(ext[0]));
		for (unsigned i = 0; i < n; i++) {
			const struct flyfs_extent *e = &ext[i];
			const char *bad = extent_invalid(f, w, e, lo, hi, why,
			    sizeof(why));
			uint64_t lb = le64_get(e->e_lblk);

			if (bad != NULL) {
				if (problem(f, FIX_YES, "inode %" PRIu64 ": the "
				    "extent for file blocks %" PRIu64 "..%"
				    PRIu64 " is bad: %s; the range becomes a "
				    "hole", w->ino, lb, lb +
				    le32_get(e->e_llen) - 1, bad))
					drop_record(f, w->ino, node,
					    (int)i - dropped++, 0);
				else
					w->bad = true;
				continue;
			}
			w->first = false;
			w->prev_end = lb + le32_get(e->e_llen);
			w->lend = w->prev_end;
			if (!(e->e_flags & FLYFS_EXT_UNWRITTEN))
				w->written_end = w->prev_end;
			w->data_blocks += le32_get(e->e_plen);
			if (!w->norun && (rc = add_run(f, le64_get(e->e_pblk),
			    le32_get(e->e_plen), w->ino)) != 0)
				return rc;
			if (w->collect) {
				if (w->next == w->capext) {
					size_t c = w->capext ? w->capext * 2 : 16;
					struct flyfs_extent *p = realloc(w->ext,
					    c * sizeof(*p));
					if (p == NULL)
						return ENOMEM;
					w->ext = p;
					w->capext = c;
				}
				w->ext[w->next++] = *e;
			}
		}
		return 0;
	}
	{
		struct flyfs_extent_idx ix[FLYFS_EXT_BLOCK_IDX_MAX];

		memcpy(ix, recs, n * sizeof(ix[0]));
		for (unsigned i = 0; i < n; i++) {
			uint64_t k = le64_get(ix[i].ei_lblk);
			uint64_t khi = i + 1 < n ? le64_get(ix[i + 1].ei_lblk) :
			    hi;
			bool drop = false;

			if (k < lo || khi > hi || k >= khi) {
				if (problem(f, FIX_YES, "inode %" PRIu64 ": "
				    "extent index key %" PRIu64 " is out of "
				    "order; the part of the file it maps is "
				    "dropped", w->ino, k))
					drop_record(f, w->ino, node,
					    (int)i - dropped++, level);
				else
					w->bad = true;
				continue;
			}
			if ((rc = walk_extent_block(f, w,
			    le64_get(ix[i].ei_child), level - 1, k, khi,
			    &drop)) != 0)
				return rc;
			if (drop)
				drop_record(f, w->ino, node, (int)i - dropped++,
				    level);
		}
	}
	return 0;
}

/* Walk the extent tree rooted in inode IN. */
static int
walk_extents(struct fsck *f, struct ewalk *w)
{
	const struct flyfs_extent_node *h = &w->in->i_ext_hdr;
	unsigned level = le16_get(h->en_level);
	unsigned max = level == 0 ? FLYFS_INODE_EXT_ROOT_MAX :
	    (FLYFS_INODE_ROOT_SIZE - sizeof(*h)) / sizeof(struct flyfs_extent_idx);

	w->first = true;
	if (le16_get(h->en_magic) != FLYFS_EXTENT_NODE_MAGIC ||
	    level > FLYFS_EXT_MAX_DEPTH || le16_get(h->en_max) != max ||
	    le16_get(h->en_count) > max) {
		w->bad = true;
		return EUCLEAN;
	}
	return walk_extent_node(f, w, h, h + 1, 0, 0, (int)level, 0,
	    FLYFS_MAX_FILE_SIZE / BS, 0);
}

/* ---- Pass 1: system files and inodes -------------------------------------- */

static unsigned
mode_dtype(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return DT_REG;
	case S_IFDIR: return DT_DIR;
	case S_IFLNK: return DT_LNK;
	case S_IFCHR: return DT_CHR;
	case S_IFBLK: return DT_BLK;
	case S_IFIFO: return DT_FIFO;
	case S_IFSOCK: return DT_SOCK;
	default: return DT_UNKNOWN;
	}
}

static bool
iszero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i] != 0)
			return false;
	return true;
}

/*
 * Read system inode INO straight from the first inode file block and walk
 * its extents, collecting them.  False if it is unusable (then the
 * filesystem cannot be checked further).
 */
static bool
system_inode(struct fsck *f, uint64_t ino, struct ewalk *w,
    struct flyfs_inode *in)
{
	char err[256];
	int error;

	if (read_blocks(f, f->sb.ifile_start, 1, f->buf) != 0) {
		operr(f, "the first inode file block %" PRIu64 " cannot be "
		    "read", f->sb.ifile_start);
		return false;
	}
	memcpy(in, f->buf + ino * FLYFS_INODE_SIZE, sizeof(*in));
	error = flyfs_inode_check(in, ino, f->sb.csum_seed, err, sizeof(err));
	if (error == EBADMSG) {
		/* Checked below; a reseal is decided in pass 1. */
		error = 0;
	}
	if (error != 0 || le32_get(in->i_mode) != (S_IFREG | 0600) ||
	    !(le32_get(in->i_flags) & FLYFS_IFL_SYSTEM)) {
		operr(f, "system inode %" PRIu64 " is unusable (%s); the "
		    "filesystem cannot be checked", ino, error ? err :
		    "wrong mode or flags");
		return false;
	}
	memset(w, 0, sizeof(*w));
	w->ino = ino;
	w->in = in;
	w->collect = true;
	w->norun = true;		/* pass 1 walks it again, for real */
	if (walk_extents(f, w) != 0 || w->bad) {
		operr(f, "system inode %" PRIu64 " has an unusable extent "
		    "tree; the filesystem cannot be checked", ino);
		return false;
	}
	return true;
}

/* The logical blocks 0..N-1 of a system file, all mapped, into OUT. */
static bool
sysfile_blocks(struct fsck *f, struct ewalk *w, uint64_t n, uint64_t **out,
    const char *what)
{
	uint64_t *v = calloc(n ? n : 1, sizeof(*v));
	uint64_t covered = 0;

	if (v == NULL) {
		operr(f, "out of memory");
		return false;
	}
	for (size_t i = 0; i < w->next; i++) {
		const struct flyfs_extent *e = &w->ext[i];
		uint64_t lb = le64_get(e->e_lblk);
		for (uint32_t k = 0; k < le32_get(e->e_llen); k++)
			if (lb + k < n) {
				v[lb + k] = le64_get(e->e_pblk) + k;
				covered++;
			}
		if (e->e_comp != FLYFS_COMP_NONE ||
		    (e->e_flags & FLYFS_EXT_UNWRITTEN)) {
			operr(f, "the %s has a compressed or unwritten "
			    "extent", what);
			free(v);
			return false;
		}
	}
	if (covered != n) {
		operr(f, "the %s has holes (%" PRIu64 " of %" PRIu64
		    " blocks mapped)", what, covered, n);
		free(v);
		return false;
	}
	*out = v;
	return true;
}

static bool
pass1_system(struct fsck *f)
{
	struct flyfs_inode in;
	struct ewalk w;
	uint64_t size, nb;
	uint64_t *v;

	/* Inode 0: the inode file.  Its size gives the slot count. */
	if (!system_inode(f, FLYFS_INO_IFILE, &w, &in))
		return false;
	size = le64_get(in.i_size);
	if (size == 0 || size % BS != 0 || size / FLYFS_INODE_SIZE >
	    FLYFS_MAX_INO || w.lend * BS < size) {
		operr(f, "the inode file has an impossible size %" PRIu64,
		    size);
		free(w.ext);
		return false;
	}
	f->ninodes = size / FLYFS_INODE_SIZE;
	f->ifx = w.ext;
	f->nifx = w.next;
	if (!sysfile_blocks(f, &w, size / BS, &v, "inode file")) {
		return false;
	}
	free(v);
	if (ifile_bmap(f, 0) != f->sb.ifile_start) {
		operr(f, "the inode file does not start at block %" PRIu64,
		    f->sb.ifile_start);
		return false;
	}
	f->ii = calloc(f->ninodes, sizeof(*f->ii));
	if (f->ii == NULL) {
		operr(f, "out of memory for %" PRIu64 " inodes", f->ninodes);
		return false;
	}

	/* Inode 2: the inode bitmap file. */
	if (!system_inode(f, FLYFS_INO_IBITMAP, &w, &in))
		return false;
	nb = (f->ninodes + FLYFS_INODES_PER_IBITMAP - 1) /
	    FLYFS_INODES_PER_IBITMAP;
	if (le64_get(in.i_size) < nb * BS) {
		operr(f, "the inode bitmap file is too small for %" PRIu64
		    " inodes", f->ninodes);
		free(w.ext);
		return false;
	}
	if (!sysfile_blocks(f, &w, nb, &f->ibm_blk, "inode bitmap file")) {
		free(w.ext);
		return false;
	}
	free(w.ext);
	f->nibm = nb;
	f->ibitmap = calloc(nb, FLYFS_MB_PAYLOAD);
	if (f->ibitmap == NULL) {
		operr(f, "out of memory");
		return false;
	}
	for (size_t i = 0; i < nb; i++) {
		char err[256];
		int error = read_mblock(f, f->ibm_blk[i], FLYFS_MB_IBITMAP,
		    FLYFS_INO_IBITMAP, f->buf, err, sizeof(err));
		if (error == 0 || error == EBADMSG)
			memcpy(f->ibitmap + i * FLYFS_MB_PAYLOAD,
			    f->buf + sizeof(struct flyfs_mblock_hdr),
			    FLYFS_MB_PAYLOAD);
		if (error != 0) {
			/* Rebuilt in pass 5 from the inodes found. */
			problem(f, FIX_PREEN, "inode bitmap: %s", err);
			f->ibm_blk[i] |= 1ULL << 63;	/* mark: rewrite */
		}
	}

	/* Inode 3: the orphan file. */
	if (!system_inode(f, FLYFS_INO_ORPHAN, &w, &in))
		return false;
	nb = le64_get(in.i_size) / BS;
	if (le64_get(in.i_size) % BS != 0 || nb == 0 || nb > w.lend) {
		operr(f, "the orphan file has an impossible size %" PRIu64,
		    le64_get(in.i_size));
		free(w.ext);
		return false;
	}
	if (!sysfile_blocks(f, &w, nb, &f->orph_blk, "orphan file")) {
		free(w.ext);
		return false;
	}
	free(w.ext);
	f->norph = nb;
	return true;
}

/* Mark the inodes the orphan file lists; problems in it are pass 5's. */
static void
read_orphans(struct fsck *f)
{
	for (size_t b = 0; b < f->norph; b++) {
		const struct flyfs_orphan_block *ob = (const void *)f->buf;
		char err[256];

		if (read_mblock(f, f->orph_blk[b], FLYFS_MB_ORPHAN,
		    FLYFS_INO_ORPHAN, f->buf, err, sizeof(err)) != 0)
			continue;
		for (size_t i = 0; i < FLYFS_ORPHANS_PER_BLOCK; i++) {
			uint64_t ino = le64_get(ob->ob_ino[i]);
			if (ino >= FLYFS_FIRST_INO && ino < f->ninodes)
				f->ii[ino].flags |= IF_LISTED;
		}
	}
}

/* Check a symlink's target: inline or one raw block. */
static const char *
check_symlink(struct fsck *f, const struct flyfs_inode *in, struct ewalk *w)
{
	uint64_t size = le64_get(in->i_size);

	if (size == 0 || size > FLYFS_SYMLINK_MAX)
		return "a symlink target length must be 1..4095 bytes";
	if (le32_get(in->i_flags) & FLYFS_IFL_INLINE) {
		if (size > FLYFS_INLINE_SYMLINK_MAX)
			return "an inline symlink target is longer than 112 "
			    "bytes";
		if (memchr(in->i_symlink, 0, size) != NULL)
			return "the symlink target contains a NUL byte";
		if (!iszero(in->i_symlink + size,
		    FLYFS_INLINE_SYMLINK_MAX - size))
			return "bytes past the inline symlink target are not "
			    "zero";
		return NULL;
	}
	if (w->data_blocks != 1 || w->lend != 1)
		return "a symlink target must be one block";
	(void)f;
	return NULL;
}

/* Check an xattr block: structure and order.  NULL if valid. */
static const char *
check_xattrs(struct fsck *f, uint64_t ino, uint64_t blk, char *why,
    size_t whylen)
{
	const struct flyfs_xattr_hdr *xh;
	const uint8_t *p;
	size_t off = 0, used;
	unsigned count, k = 0;
	int error;
	uint8_t pns = 0;
	const char *pname = NULL;
	size_t plen = 0;

	error = read_mblock(f, blk, FLYFS_MB_XATTR, ino, f->buf, why, whylen);
	if (error != 0)
		return why;
	xh = (const void *)(f->buf + sizeof(struct flyfs_mblock_hdr));
	p = (const uint8_t *)(xh + 1);
	count = le16_get(xh->xh_count);
	used = le16_get(xh->xh_used);
	if (used > FLYFS_XATTR_SPACE || used % 8 != 0)
		return "the xattr block's used size is impossible";
	while (off < used) {
		const struct flyfs_xattr_entry *xe = (const void *)(p + off);
		size_t sz;

		if (used - off < sizeof(*xe))
			return "an xattr record is cut short";
		sz = FLYFS_XATTR_ENTRY_SIZE(xe->xe_name_len,
		    le16_get(xe->xe_value_len));
		if (xe->xe_name_len == 0 || sz > used - off)
			return "an xattr record is cut short or has no name";
		if (xe->xe_ns < FLYFS_XATTR_NS_USER ||
		    xe->xe_ns > FLYFS_XATTR_NS_SECURITY)
			return "an xattr record has an unknown namespace";
		if (pname != NULL) {
			int c = xe->xe_ns != pns ? xe->xe_ns - pns :
			    memcmp(xe->xe_data, pname, xe->xe_name_len < plen ?
			    xe->xe_name_len : plen);
			if (c == 0 && xe->xe_ns == pns)
				c = (int)xe->xe_name_len - (int)plen;
			if (c <= 0)
				return "xattr records are not sorted or "
				    "repeat a name";
		}
		pns = xe->xe_ns;
		pname = xe->xe_data;
		plen = xe->xe_name_len;
		off += sz;
		k++;
	}
	if (k != count)
		return "the xattr record count is wrong";
	return NULL;
}

/* Check inode INO (a used slot, IN) and record what it uses. */
static int
check_inode(struct fsck *f, uint64_t ino, struct flyfs_inode *in)
{
	struct iinfo *ii = &f->ii[ino];
	uint32_t mode = le32_get(in->i_mode), flags = le32_get(in->i_flags);
	unsigned type = mode_dtype(mode);
	char err[256], why[256];
	const char *bad = NULL;
	struct ewalk w;
	uint64_t want_blocks = 0, size = le64_get(in->i_size);
	bool sys = ino == FLYFS_INO_IFILE || ino == FLYFS_INO_IBITMAP ||
	    ino == FLYFS_INO_ORPHAN;
	int error, rc;

	error = flyfs_inode_check(in, ino, f->sb.csum_seed, err, sizeof(err));
	if (error == EUCLEAN) {
		/* Wrong number: a misdirected or stale copy. */
		if (problem(f, FIX_YES, "%s; the inode is cleared", err))
			inode_fix(f, ino, IF_ZERO, 0);
		else
			ii->flags |= IF_BAD;
		if (ii->flags & IF_BAD)
			f->blocks_unknown = true;
		return 0;
	}
	ii->nlink = le32_get(in->i_nlink);
	ii->type = (uint8_t)type;
	if (flags & FLYFS_IFL_ORPHAN)
		ii->flags |= IF_ORPHAN;

	/* What makes an inode unusable as a whole. */
	if (type == DT_UNKNOWN)
		bad = "its file type is unknown";
	else if (sys != ((flags & FLYFS_IFL_SYSTEM) != 0))
		bad = "its SYSTEM flag is wrong";
	else if (ino < FLYFS_FIRST_INO && !sys && ino != FLYFS_INO_ROOT)
		bad = "it is a reserved inode but in use";
	else if (ino == FLYFS_INO_ROOT && type != DT_DIR)
		bad = "the root is not a directory";
	else if (flags & ~FLYFS_IFL_KNOWN)
		bad = "it has unknown flags";
	else if ((flags & FLYFS_IFL_INLINE) && type != DT_LNK)
		bad = "only symlinks may be inline";
	if (bad == NULL && type != DT_DIR && !(flags & FLYFS_IFL_INLINE) &&
	    (type == DT_REG || type == DT_LNK)) {
		memset(&w, 0, sizeof(w));
		w.ino = ino;
		w.in = in;
		if ((rc = walk_extents(f, &w)) == ENOMEM)
			return rc;
		if (rc == EUCLEAN)
			bad = "its extent root is damaged";
		else if (w.bad)
			f->blocks_unknown = true;
		want_blocks = w.data_blocks + w.node_blocks;
		if (bad == NULL && type == DT_LNK)
			bad = check_symlink(f, in, &w);
		if (bad == NULL && type == DT_REG && !sys &&
		    w.written_end * BS > size + f->sb.data_block_size - 1 &&
		    (w.written_end - 1) * BS >= (size +
		    f->sb.data_block_size - 1) / f->sb.data_block_size *
		    f->sb.data_block_size)
			problem(f, FIX_NEVER, "inode %" PRIu64 ": data is "
			    "mapped past its size of %" PRIu64 " bytes", ino,
			    size);
		if (bad == NULL && sys && w.lend * BS < size)
			bad = "a system file is shorter than its size";
	} else if (bad == NULL && type == DT_LNK) {
		bad = check_symlink(f, in, &w);
	} else if (bad == NULL && type == DT_DIR) {
		ii->dparent = le64_get(in->i_dir.dr_parent);
		ii->dentries = le64_get(in->i_dir.dr_entries);
	} else if (bad == NULL && !iszero(in->i_root_raw,
	    sizeof(in->i_root_raw))) {
		bad = "a device, fifo or socket has a non-zero root area";
	}
	if (bad != NULL) {
		if (problem(f, FIX_YES, "inode %" PRIu64 " is unusable: %s; "
		    "it is cleared", ino, bad)) {
			inode_fix(f, ino, IF_ZERO, 0);
			ii->type = 0;
			ii->flags = 0;
		} else {
			ii->flags |= IF_BAD;
			f->blocks_unknown = true;
		}
		return 0;
	}
	if (error == EBADMSG && problem(f, FIX_PREEN, "%s but its contents "
	    "are consistent; the checksum is rewritten", err))
		inode_fix(f, ino, IF_RESEAL, 0);

	/* The xattr block. */
	if (le64_get(in->i_xattr_block) != 0) {
		uint64_t xb = le64_get(in->i_xattr_block);
		const char *xbad = check_xattrs(f, ino, xb, why, sizeof(why));

		if (xbad != NULL) {
			problem(f, FIX_NEVER, "inode %" PRIu64 ": xattr block %"
			    PRIu64 ": %s", ino, xb, xbad);
		}
		if (xb < f->sb.block_count) {
			if ((rc = add_run(f, xb, 1, ino)) != 0)
				return rc;
			want_blocks++;
		}
	}
	if (type == DT_DIR)
		return 0;	/* i_blocks and i_size: pass 2 */
	if (le64_get(in->i_blocks) != want_blocks && !(ii->flags & IF_BAD) &&
	    !(type == DT_REG && w.bad)) {
		if (problem(f, FIX_PREEN, "inode %" PRIu64 ": i_blocks is %"
		    PRIu64 " but it holds %" PRIu64 " blocks", ino,
		    le64_get(in->i_blocks), want_blocks))
			inode_fix(f, ino, IF_BLOCKS, want_blocks);
	}
	return 0;
}

/* Pass 1: every inode slot of the inode file, in chunks. */
static int
pass1_inodes(struct fsck *f)
{
	const uint64_t chunk = 64;
	uint64_t nblocks = f->ninodes / FLYFS_INODES_PER_BLOCK;
	uint8_t *b = blockdev_alloc_buf(f->bd, chunk * BS);
	int rc = 0;

	if (b == NULL)
		return ENOMEM;
	for (uint64_t lb = 0; lb < nblocks; ) {
		uint64_t pb = ifile_bmap(f, lb), n = 1;

		while (n < chunk && lb + n < nblocks &&
		    ifile_bmap(f, lb + n) == pb + n)
			n++;
		if (read_blocks(f, pb, n, b) != 0) {
			problem(f, FIX_NEVER, "inode file blocks %" PRIu64
			    "..%" PRIu64 " cannot be read", pb, pb + n - 1);
			for (uint64_t i = lb * 16; i < (lb + n) * 16; i++)
				f->ii[i].flags |= IF_BAD;
			f->blocks_unknown = f->names_unknown = true;
			lb += n;
			continue;
		}
		for (uint64_t i = 0; i < n * FLYFS_INODES_PER_BLOCK; i++) {
			uint64_t ino = lb * FLYFS_INODES_PER_BLOCK + i;
			struct flyfs_inode in;

			memcpy(&in, b + i * FLYFS_INODE_SIZE, sizeof(in));
			if (flyfs_inode_is_free(&in))
				continue;
			if ((rc = check_inode(f, ino, &in)) != 0)
				goto out;
		}
		lb += n;
	}
out:
	blockdev_free_buf(b);
	return rc;
}

/* ---- Pass 2: directory trees ---------------------------------------------- */

struct dwalk {
	uint64_t ino;
	uint64_t blocks;
	uint64_t entries;
	uint64_t last_key;
	uint64_t last_leaf;
	uint64_t prev_next;		/* dn_next of the last leaf */
	bool bad;
	/* names of the current hash run, to find repeated names */
	char names[8][FLYFS_NAME_MAX];
	uint8_t lens[8];
	unsigned nnames;
	uint32_t run_hash;
};

/* Remove the entry with KEY from leaf LEAF of directory DIR on disk. */
static bool
dir_remove_entry(struct fsck *f, uint64_t dir, uint64_t leaf, uint64_t key)
{
	struct flyfs_dir_node *dn;
	uint8_t *recs;
	unsigned used, off = 0;
	char err[256];

	if (read_mblock(f, leaf, FLYFS_MB_DIR, dir, f->buf, err,
	    sizeof(err)) != 0 && f->mode != FLYFS_FSCK_NO) {
		unfixed(f, "%s", err);
		return false;
	}
	dn = (void *)(f->buf + sizeof(struct flyfs_mblock_hdr));
	recs = (uint8_t *)(dn + 1);
	used = le16_get(dn->dn_used);
	while (off < used) {
		struct flyfs_dirent *de = (void *)(recs + off);
		unsigned sz = (unsigned)FLYFS_DIRENT_SIZE(de->de_name_len);

		if (le64_get(de->de_key) == key) {
			memmove(recs + off, recs + off + sz, used - off - sz);
			memset(recs + used - sz, 0, sz);
			le16_set(&dn->dn_used, (uint16_t)(used - sz));
			le16_set(&dn->dn_count,
			    (uint16_t)(le16_get(dn->dn_count) - 1));
			reseal_block(f, leaf, f->buf);
			f->ii[dir].entries--;
			if (f->ii[dir].dentries > 0) {
				f->ii[dir].dentries--;
				inode_fix(f, dir, IF_ENTRIES,
				    f->ii[dir].dentries);
			}
			return true;
		}
		off += sz;
	}
	unfixed(f, "entry not found again in block %" PRIu64, leaf);
	return false;
}

static bool
name_ok(const char *name, unsigned len)
{
	if (memchr(name, '/', len) != NULL || memchr(name, 0, len) != NULL)
		return false;
	return !(len == 1 && name[0] == '.') &&
	    !(len == 2 && name[0] == '.' && name[1] == '.');
}

/* Check one leaf's records; count entries, record links and edges. */
static int
dir_leaf(struct fsck *f, struct dwalk *d, uint64_t blk, uint8_t *b,
    uint64_t lo, uint64_t hi)
{
	const struct flyfs_dir_node *dn = (const void *)(b +
	    sizeof(struct flyfs_mblock_hdr));
	const uint8_t *recs = (const uint8_t *)(dn + 1);
	unsigned used = le16_get(dn->dn_used), count = le16_get(dn->dn_count);
	unsigned off = 0, k = 0;
	struct { uint64_t key; char what[320]; enum fixkind kind; }
	    drops[32];
	unsigned ndrops = 0;

	if (used > FLYFS_DIR_LEAF_SPACE || used % 8 != 0) {
		problem(f, FIX_NEVER, "directory %" PRIu64 ": leaf %" PRIu64
		    " says %u bytes are in use", d->ino, blk, used);
		d->bad = true;
		return 0;
	}
	while (off < used) {
		const struct flyfs_dirent *de = (const void *)(recs + off);
		unsigned sz, len;
		uint64_t key, target;
		uint32_t hash;
		char name[FLYFS_NAME_MAX + 1];
		const struct iinfo *t;

		if (used - off < sizeof(*de) ||
		    (sz = (unsigned)FLYFS_DIRENT_SIZE(de->de_name_len)) >
		    used - off || de->de_name_len == 0) {
			problem(f, FIX_NEVER, "directory %" PRIu64 ": leaf %"
			    PRIu64 " has a record cut short at byte %u",
			    d->ino, blk, off);
			d->bad = true;
			return 0;
		}
		len = de->de_name_len;
		memcpy(name, de->de_name, len);
		name[len] = '\0';
		key = le64_get(de->de_key);
		target = le64_get(de->de_ino);
		hash = FLYFS_DIR_HASH_MAJOR(key);
		if (key < lo || key >= hi || key <= d->last_key ||
		    key >= (1ULL << 63)) {
			problem(f, FIX_NEVER, "directory %" PRIu64 ": key 0x%"
			    PRIx64 " of \"%s\" is out of order", d->ino, key,
			    name);
			d->bad = true;
			return 0;
		}
		d->last_key = key;
		off += sz;
		k++;
		d->entries++;
		if (!name_ok(name, len) || hash != flyfs_dir_hash(
		    f->sb.hash_key, name, len)) {
			if (ndrops < 32) {
				drops[ndrops].key = key;
				drops[ndrops].kind = FIX_YES;
				snprintf(drops[ndrops++].what, 320, "entry "
				    "\"%s\" %s", name, !name_ok(name, len) ?
				    "has an impossible name" :
				    "is stored under the wrong hash");
			}
			continue;
		}
		if (hash != d->run_hash) {
			d->run_hash = hash;
			d->nnames = 0;
		}
		for (unsigned i = 0; i < d->nnames && i < 8; i++) {
			if (d->lens[i] == len &&
			    memcmp(d->names[i], name, len) == 0 &&
			    ndrops < 32) {
				drops[ndrops].key = key;
				drops[ndrops].kind = FIX_YES;
				snprintf(drops[ndrops++].what, 320, "entry "
				    "\"%s\" repeats a name", name);
				goto next;
			}
		}
		if (d->nnames < 8) {
			memcpy(d->names[d->nnames], name, len);
			d->lens[d->nnames++] = (uint8_t)len;
		}
		t = target < f->ninodes ? &f->ii[target] : NULL;
		if (t == NULL || t->type == 0 || target == FLYFS_INO_ROOT ||
		    (target < FLYFS_FIRST_INO)) {
			if (ndrops < 32) {
				drops[ndrops].key = key;
				drops[ndrops].kind = FIX_PREEN;
				snprintf(drops[ndrops++].what, 320, "entry "
				    "\"%s\" points to %s inode %" PRIu64, name,
				    target == FLYFS_INO_ROOT ? "the root" :
				    target < FLYFS_FIRST_INO ? "reserved" :
				    t == NULL ? "nonexistent" : "free",
				    target);
			}
			continue;
		}
		if (t->flags & IF_BAD)
			continue;
		if (de->de_type != t->type) {
			/* Reported; the type byte is informational. */
			problem(f, FIX_NEVER, "directory %" PRIu64 ": entry "
			    "\"%s\" says type %u but inode %" PRIu64 " is "
			    "type %u", d->ino, name, de->de_type, target,
			    t->type);
		}
		if (t->type == DT_DIR) {
			if (f->nedges == f->capedge) {
				size_t c = f->capedge ? f->capedge * 2 : 256;
				struct dedge *p = realloc(f->edges,
				    c * sizeof(*p));
				if (p == NULL)
					return ENOMEM;
				f->edges = p;
				f->capedge = c;
			}
			f->edges[f->nedges++] = (struct dedge){ d->ino,
			    target, blk, key, false };
			if (d->ino == FLYFS_INO_ROOT && len == 10 &&
			    memcmp(name, LF_NAME, 10) == 0)
				f->lostfound = target;
		} else {
			f->ii[target].links++;
		}
next:		;
	}
	if (k != count) {
		if (problem(f, FIX_PREEN, "directory %" PRIu64 ": leaf %"
		    PRIu64 " says %u records but holds %u", d->ino, blk,
		    count, k)) {
			struct flyfs_dir_node *w = (void *)(b +
			    sizeof(struct flyfs_mblock_hdr));
			le16_set(&w->dn_count, (uint16_t)k);
			reseal_block(f, blk, b);
		}
	}
	for (unsigned i = 0; i < ndrops; i++)
		if (problem(f, drops[i].kind, "directory %" PRIu64 ": %s; it "
		    "is removed", d->ino, drops[i].what))
			dir_remove_entry(f, d->ino, blk, drops[i].key);
		else if (drops[i].kind == FIX_YES)
			f->names_unknown = true;
	return 0;
}

static int
dir_node(struct fsck *f, struct dwalk *d, uint64_t blk, int level,
    uint64_t lo, uint64_t hi, bool root)
{
	char err[256];
	uint8_t *b;
	const struct flyfs_dir_node *dn;
	int error, rc = 0;

	b = blockdev_alloc_buf(f->bd, BS);
	if (b == NULL)
		return ENOMEM;
	error = read_mblock(f, blk, FLYFS_MB_DIR, d->ino, b, err, sizeof(err));
	dn = (const void *)(b + sizeof(struct flyfs_mblock_hdr));
	if (error == EBADMSG && le16_get(dn->dn_level) == level) {
		if (problem(f, FIX_PREEN, "directory %" PRIu64 ": %s", d->ino,
		    err))
			reseal_block(f, blk, b);
		error = 0;
	}
	if (error == 0 && le16_get(dn->dn_level) != level)
		error = flyfs_error(err, sizeof(err), EUCLEAN, "block %" PRIu64
		    " is at level %u, expected %d", blk,
		    le16_get(dn->dn_level), level);
	if (error != 0) {
		problem(f, FIX_NEVER, "directory %" PRIu64 ": %s", d->ino,
		    err);
		d->bad = true;
		goto out;
	}
	d->blocks++;
	if ((rc = add_run(f, blk, 1, d->ino)) != 0)
		goto out;
	if (level == 0) {
		if (d->last_leaf != 0 && d->prev_next != blk)
			problem(f, FIX_NEVER, "directory %" PRIu64 ": leaf %"
			    PRIu64 " is not chained to the next leaf %" PRIu64,
			    d->ino, d->last_leaf, blk);
		d->prev_next = le64_get(dn->dn_next);
		if (!root && le16_get(dn->dn_count) == 0)
			problem(f, FIX_NEVER, "directory %" PRIu64 ": leaf %"
			    PRIu64 " is empty but not the root", d->ino, blk);
		d->last_leaf = blk;
		rc = dir_leaf(f, d, blk, b, lo, hi);
		goto out;
	}
	{
		unsigned n = le16_get(dn->dn_count);
		struct flyfs_dir_idx ix[DIR_IDX_MAX];

		if (n > DIR_IDX_MAX || n == 0 || (root && n < 2)) {
			problem(f, FIX_NEVER, "directory %" PRIu64 ": index "
			    "block %" PRIu64 " holds %u records", d->ino, blk,
			    n);
			d->bad = true;
			goto out;
		}
		memcpy(ix, dn + 1, n * sizeof(ix[0]));
		for (unsigned i = 0; i < n && rc == 0 && !d->bad; i++) {
			uint64_t k = le64_get(ix[i].di_key);
			uint64_t khi = i + 1 < n ? le64_get(ix[i + 1].di_key) :
			    hi;
			uint64_t child = le64_get(ix[i].di_child);

			if (k < lo || k >= khi || khi > hi) {
				problem(f, FIX_NEVER, "directory %" PRIu64
				    ": index block %" PRIu64 " has keys out "
				    "of order", d->ino, blk);
				d->bad = true;
				break;
			}
			rc = dir_node(f, d, child, level - 1, k, khi, false);
		}
	}
out:
	blockdev_free_buf(b);
	return rc;
}

static int
pass2_dir(struct fsck *f, uint64_t ino)
{
	struct flyfs_inode in;
	struct dwalk *d;
	uint64_t root;
	unsigned levels;
	int rc = 0;

	if (inode_read(f, ino, &in) != 0)
		return 0;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return ENOMEM;
	d->ino = ino;
	d->run_hash = 0;
	root = le64_get(in.i_dir.dr_root);
	levels = le16_get(in.i_dir.dr_levels);
	if (root == 0) {
		if (levels != 0)
			problem(f, FIX_NEVER, "directory %" PRIu64 " has no "
			    "tree but says %u levels", ino, levels);
	} else if (levels == 0 || levels > DIR_MAX_LEVELS) {
		problem(f, FIX_NEVER, "directory %" PRIu64 " has an "
		    "impossible height %u", ino, levels);
		d->bad = true;
	} else {
		rc = dir_node(f, d, root, (int)levels - 1, 0, UINT64_MAX, true);
		if (rc == 0 && !d->bad && d->prev_next != 0)
			problem(f, FIX_NEVER, "directory %" PRIu64 ": its last "
			    "leaf %" PRIu64 " points to a next leaf %" PRIu64,
			    ino, d->last_leaf, d->prev_next);
	}
	f->ii[ino].entries += d->entries;
	if (d->bad) {
		f->names_unknown = true;
		f->blocks_unknown = true;
	} else {
		f->ii[ino].flags |= IF_WALKED;
		if (le64_get(in.i_size) != d->blocks * BS &&
		    problem(f, FIX_PREEN, "directory %" PRIu64 ": size is %"
		    PRIu64 " but its tree has %" PRIu64 " blocks", ino,
		    le64_get(in.i_size), d->blocks))
			inode_fix(f, ino, IF_SIZE, d->blocks * BS);
		if (le64_get(in.i_blocks) != d->blocks +
		    (le64_get(in.i_xattr_block) != 0) &&
		    problem(f, FIX_PREEN, "directory %" PRIu64 ": i_blocks is "
		    "%" PRIu64 " but it holds %" PRIu64 " blocks", ino,
		    le64_get(in.i_blocks), d->blocks +
		    (le64_get(in.i_xattr_block) != 0)))
			inode_fix(f, ino, IF_BLOCKS, d->blocks +
			    (le64_get(in.i_xattr_block) != 0));
	}
	free(d);
	return rc;
}

/* ---- lost+found ------------------------------------------------------------ */

/* Find /lost+found's single leaf; false (said why) if it cannot be used. */
static bool
lf_usable(struct fsck *f, char *why, size_t whylen)
{
	struct flyfs_inode in;

	if (f->lf_leaf != 0)
		return true;
	if (f->lostfound == 0 || f->lostfound >= f->ninodes ||
	    f->ii[f->lostfound].type != DT_DIR ||
	    (f->ii[f->lostfound].flags & IF_BAD)) {
		snprintf(why, whylen, "there is no /lost+found");
		return false;
	}
	if (inode_read(f, f->lostfound, &in) != 0 ||
	    le64_get(in.i_dir.dr_root) == 0 ||
	    le16_get(in.i_dir.dr_levels) != 1) {
		snprintf(why, whylen, "/lost+found is not a single-block "
		    "directory (fsck does not allocate)");
		return false;
	}
	f->lf_leaf = le64_get(in.i_dir.dr_root);
	return true;
}

/*
 * Link inode INO (DT_* TYPE) into /lost+found as "#INO", with the lowest
 * free minor of its hash.  Updates lost+found's inode (entries, and nlink
 * for a directory) at once so pass 4 sees a consistent lost+found.
 */
static bool
lf_link(struct fsck *f, uint64_t ino, unsigned type)
{
	char name[32], why[256];
	struct flyfs_dir_node *dn;
	struct flyfs_dirent *de;
	uint8_t *recs;
	unsigned len, used, off = 0, at = 0, sz;
	uint32_t hash, minor = 0;
	uint64_t key, lf = f->lostfound;
	bool have_at = false;

	if (!lf_usable(f, why, sizeof(why))) {
		unfixed(f, "%s", why);
		return false;
	}
	len = (unsigned)snprintf(name, sizeof(name), "#%" PRIu64, ino);
	hash = flyfs_dir_hash(f->sb.hash_key, name, len);
	if (read_mblock(f, f->lf_leaf, FLYFS_MB_DIR, lf, f->buf, why,
	    sizeof(why)) != 0) {
		unfixed(f, "/lost+found: %s", why);
		return false;
	}
	dn = (void *)(f->buf + sizeof(struct flyfs_mblock_hdr));
	recs = (uint8_t *)(dn + 1);
	used = le16_get(dn->dn_used);
	sz = (unsigned)FLYFS_DIRENT_SIZE(len);
	if (used > FLYFS_DIR_LEAF_SPACE || sz > FLYFS_DIR_LEAF_SPACE - used) {
		unfixed(f, "/lost+found is full");
		return false;
	}
	/* Minors of this hash are consecutive keys: take the lowest gap. */
	while (off < used) {
		de = (void *)(recs + off);
		key = le64_get(de->de_key);
		if (FLYFS_DIR_HASH_MAJOR(key) == hash) {
			if ((uint32_t)key == minor)
				minor++;
			if (de->de_name_len == len &&
			    memcmp(de->de_name, name, len) == 0) {
				unfixed(f, "/lost+found already has %s", name);
				return false;
			}
		}
		off += (unsigned)FLYFS_DIRENT_SIZE(de->de_name_len);
	}
	key = FLYFS_DIR_KEY(hash, minor);
	for (off = 0; off < used && !have_at; ) {
		de = (void *)(recs + off);
		if (le64_get(de->de_key) > key) {
			at = off;
			have_at = true;
		} else {
			off += (unsigned)FLYFS_DIRENT_SIZE(de->de_name_len);
		}
	}
	if (!have_at)
		at = used;
	memmove(recs + at + sz, recs + at, used - at);
	memset(recs + at, 0, sz);
	de = (void *)(recs + at);
	le64_set(&de->de_key, key);
	le64_set(&de->de_ino, ino);
	de->de_name_len = (uint8_t)len;
	de->de_type = (uint8_t)type;
	memcpy(de->de_name, name, len);
	le16_set(&dn->dn_used, (uint16_t)(used + sz));
	le16_set(&dn->dn_count, (uint16_t)(le16_get(dn->dn_count) + 1));
	reseal_block(f, f->lf_leaf, f->buf);
	f->ii[lf].entries++;
	f->ii[lf].dentries++;
	inode_fix(f, lf, IF_ENTRIES, f->ii[lf].dentries);
	if (type == DT_DIR) {
		f->ii[lf].subdirs++;
		if (f->ii[lf].nlink == 2 + f->ii[lf].subdirs - 1) {
			f->ii[lf].nlink++;
			inode_fix(f, lf, IF_NLINK, f->ii[lf].nlink);
		}
	}
	return true;
}

/* ---- Pass 3: connectivity ----------------------------------------------- */

static int
cmp_edge(const void *a, const void *b)
{
	const struct dedge *x = a, *y = b;

	if (x->parent != y->parent)
		return x->parent < y->parent ? -1 : 1;
	return x->key < y->key ? -1 : x->key > y->key;
}

/* First edge of PARENT in the sorted edge array. */
static size_t
edges_of(struct fsck *f, uint64_t parent)
{
	size_t lo = 0, hi = f->nedges;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->edges[mid].parent < parent)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Breadth-first from START (already reached): reach what it contains. */
static void
reach_from(struct fsck *f, uint64_t start, uint64_t *queue)
{
	size_t head = 0, tail = 0;

	queue[tail++] = start;
	while (head < tail) {
		uint64_t d = queue[head++];

		for (size_t i = edges_of(f, d); i < f->nedges &&
		    f->edges[i].parent == d; i++) {
			struct dedge *e = &f->edges[i];
			struct iinfo *c = &f->ii[e->child];

			if (c->flags & IF_REACHED) {
				e->bad = true;
				continue;
			}
			c->flags |= IF_REACHED;
			c->parent = d;
			f->ii[d].subdirs++;
			queue[tail++] = e->child;
		}
	}
}

/* The name of the entry KEY in leaf LEAF of DIR, for messages. */
static void
entry_name(struct fsck *f, uint64_t dir, uint64_t leaf, uint64_t key,
    char *name, size_t namelen)
{
	const struct flyfs_dir_node *dn;
	const uint8_t *recs;
	unsigned used, off = 0;
	char err[128];

	snprintf(name, namelen, "?");
	if (read_mblock(f, leaf, FLYFS_MB_DIR, dir, f->buf, err,
	    sizeof(err)) == EUCLEAN)
		return;
	dn = (const void *)(f->buf + sizeof(struct flyfs_mblock_hdr));
	recs = (const uint8_t *)(dn + 1);
	used = le16_get(dn->dn_used);
	if (used > FLYFS_DIR_LEAF_SPACE)
		return;
	while (off + sizeof(struct flyfs_dirent) <= used) {
		const struct flyfs_dirent *de = (const void *)(recs + off);
		if (off + FLYFS_DIRENT_SIZE(de->de_name_len) > used)
			return;
		if (le64_get(de->de_key) == key) {
			snprintf(name, namelen, "%.*s", de->de_name_len,
			    de->de_name);
			return;
		}
		off += (unsigned)FLYFS_DIRENT_SIZE(de->de_name_len);
	}
}

static bool
is_orphan(const struct iinfo *ii)
{
	return ii->nlink == 0 && (ii->flags & (IF_LISTED | IF_ORPHAN));
}

static int
pass3_connect(struct fsck *f)
{
	uint64_t *queue = calloc(f->nedges + 2, sizeof(*queue));
	uint64_t *up = NULL;
	uint32_t *stamp = NULL;
	char name[FLYFS_NAME_MAX + 1];

	if (queue == NULL)
		return ENOMEM;
	qsort(f->edges, f->nedges, sizeof(*f->edges), cmp_edge);
	f->ii[FLYFS_INO_ROOT].flags |= IF_REACHED;
	f->ii[FLYFS_INO_ROOT].parent = FLYFS_INO_ROOT;
	reach_from(f, FLYFS_INO_ROOT, queue);

	/* Unreachable directories: connect the top of each cut subtree. */
	up = calloc(f->ninodes, sizeof(*up));
	stamp = calloc(f->ninodes, sizeof(*stamp));
	if (up == NULL || stamp == NULL) {
		free(queue);
		free(up);
		free(stamp);
		return ENOMEM;
	}
	for (size_t i = 0; i < f->nedges; i++)
		if (up[f->edges[i].child] == 0)
			up[f->edges[i].child] = f->edges[i].parent;
	for (uint64_t ino = FLYFS_FIRST_INO; ino < f->ninodes; ino++) {
		struct iinfo *ii = &f->ii[ino];
		uint64_t top = ino;

		if (ii->type != DT_DIR || (ii->flags & (IF_REACHED | IF_BAD)) ||
		    is_orphan(ii))
			continue;
		/* Up through unreached parents until none, or a loop. */
		stamp[top] = (uint32_t)ino;
		while (up[top] != 0 && !(f->ii[up[top]].flags & IF_REACHED) &&
		    !(f->ii[up[top]].flags & IF_BAD) &&
		    stamp[up[top]] != (uint32_t)ino) {
			top = up[top];
			stamp[top] = (uint32_t)ino;
		}
		if (f->names_unknown) {
			problem(f, FIX_NEVER, "directory %" PRIu64 " is not "
			    "reachable from the root (left: some directories "
			    "could not be read)", top);
		} else if (problem(f, FIX_PREEN, "directory %" PRIu64 " is not "
		    "reachable from the root%s; it is linked into /lost+found "
		    "as #%" PRIu64, top, up[top] != 0 ? " (it is part of a "
		    "directory loop)" : "", top) &&
		    lf_link(f, top, DT_DIR)) {
			f->ii[top].flags |= IF_REACHED;
			f->ii[top].parent = f->lostfound;
			reach_from(f, top, queue);
			continue;
		}
		/* Not connected: check below it anyway, parent unknown. */
		f->ii[top].flags |= IF_REACHED;
		f->ii[top].parent = 0;
		reach_from(f, top, queue);
	}

	/* Extra links to directories (loops, hard links). */
	for (size_t i = 0; i < f->nedges; i++) {
		struct dedge *e = &f->edges[i];

		if (!e->bad)
			continue;
		entry_name(f, e->parent, e->leaf, e->key, name, sizeof(name));
		if (problem(f, FIX_PREEN, "directory %" PRIu64 ": entry \"%s\" "
		    "is a second link to directory %" PRIu64 "%s; it is "
		    "removed", e->parent, name, e->child,
		    f->ii[e->child].parent == e->parent ? "" :
		    " (a directory loop)"))
			dir_remove_entry(f, e->parent, e->leaf, e->key);
	}

	/* ".." against where each directory was found. */
	for (uint64_t ino = FLYFS_INO_ROOT; ino < f->ninodes; ino++) {
		struct iinfo *ii = &f->ii[ino];

		if (ii->type != DT_DIR || !(ii->flags & IF_REACHED) ||
		    ii->parent == 0 || ii->dparent == ii->parent)
			continue;
		if (problem(f, FIX_PREEN, "directory %" PRIu64 ": \"..\" is "
		    "inode %" PRIu64 " but it is in directory %" PRIu64, ino,
		    ii->dparent, ii->parent)) {
			inode_fix(f, ino, IF_PARENT, ii->parent);
			ii->dparent = ii->parent;
		}
	}
	free(queue);
	free(up);
	free(stamp);
	return 0;
}

/* ---- Pass 4: link counts and orphans --------------------------------------- */

static void
check_nlink(struct fsck *f, uint64_t ino, uint32_t want)
{
	struct iinfo *ii = &f->ii[ino];

	if (ii->nlink == want)
		return;
	if (f->names_unknown && want < ii->nlink) {
		problem(f, FIX_NEVER, "inode %" PRIu64 ": link count is %"
		    PRIu32 " but %" PRIu32 " links were found (not lowered: "
		    "some directories could not be read)", ino, ii->nlink,
		    want);
		return;
	}
	if (problem(f, FIX_PREEN, "inode %" PRIu64 ": link count is %" PRIu32
	    " but %" PRIu32 " link%s found", ino, ii->nlink, want,
	    want == 1 ? " was" : "s were")) {
		inode_fix(f, ino, IF_NLINK, want);
		ii->nlink = want;
	}
}

static void
pass4_links(struct fsck *f)
{
	for (uint64_t ino = FLYFS_INO_ROOT; ino < f->ninodes; ino++) {
		struct iinfo *ii = &f->ii[ino];

		if (ii->type == 0 || (ii->flags & IF_BAD) ||
		    (ino < FLYFS_FIRST_INO && ino != FLYFS_INO_ROOT))
			continue;
		if (is_orphan(ii) && (ii->type == DT_DIR ?
		    !(ii->flags & IF_REACHED) : ii->links == 0)) {
			f->r->orphans++;
			if (f->mode == FLYFS_FSCK_NO) {
				info(f, "inode %" PRIu64 " is an orphan (deleted "
				    "while open); the next mount reclaims it",
				    ino);
				continue;
			}
			f->r->found++;
			f->r->fixed++;
			f->r->orphans_reclaimed++;
			info(f, "inode %" PRIu64 " is an orphan (deleted while "
			    "open); reclaimed", ino);
			inode_fix(f, ino, IF_ZERO, 0);
			ii->flags |= IF_RECLAIM;
			ii->type = 0;
			continue;
		}
		if (ii->type == DT_DIR) {
			if (ii->flags & IF_WALKED && ii->entries != ii->dentries &&
			    problem(f, FIX_PREEN, "directory %" PRIu64 " says "
			    "it has %" PRIu64 " entr%s but %" PRIu64 " %s "
			    "found", ino, ii->dentries, ii->dentries == 1 ?
			    "y" : "ies", ii->entries, ii->entries == 1 ?
			    "was" : "were")) {
				inode_fix(f, ino, IF_ENTRIES, ii->entries);
				ii->dentries = ii->entries;
			}
			if (ii->flags & IF_REACHED)
				check_nlink(f, ino, 2 + ii->subdirs);
			continue;
		}
		if (ii->links == 0) {
			if (f->names_unknown) {
				problem(f, FIX_NEVER, "inode %" PRIu64 " is not "
				    "in any directory (left: some directories "
				    "could not be read)", ino);
				continue;
			}
			if (problem(f, FIX_PREEN, "inode %" PRIu64 " is not in "
			    "any directory; it is linked into /lost+found as "
			    "#%" PRIu64, ino, ino) &&
			    lf_link(f, ino, ii->type))
				ii->links = 1;
			else
				continue;
		}
		check_nlink(f, ino, ii->links);
		if ((ii->flags & IF_ORPHAN) && ii->links > 0 &&
		    problem(f, FIX_PREEN, "inode %" PRIu64 " is marked as an "
		    "orphan but is linked", ino)) {
			inode_fix(f, ino, IF_CLEAR_ORPHAN, 0);
			ii->flags &= ~IF_ORPHAN;
		}
	}
}

/* ---- Pass 5: allocation ------------------------------------------------- */

/* Names of the fixed regions, as owners OWNER_FS - n. */
enum { REG_SB, REG_BACKUP, REG_GDT, REG_BITMAPS, REG_JOURNAL, REG_N };
static const char *const region_name[REG_N] = {
	"the superblock", "the backup superblock",
	"the group descriptor table", "the block bitmaps", "the journal",
};

static int
add_fixed_runs(struct fsck *f)
{
	int rc;

	if ((rc = add_run(f, 0, 1, OWNER_FS - REG_SB)) != 0 ||
	    (rc = add_run(f, f->sb.backup_block, 1,
	    OWNER_FS - REG_BACKUP)) != 0 ||
	    (rc = add_run(f, f->sb.gdt_start, f->sb.gdt_blocks,
	    OWNER_FS - REG_GDT)) != 0 ||
	    (rc = add_run(f, f->sb.bitmap_start, f->sb.group_count,
	    OWNER_FS - REG_BITMAPS)) != 0 ||
	    (rc = add_run(f, f->sb.journal_start, f->sb.journal_blocks,
	    OWNER_FS - REG_JOURNAL)) != 0)
		return rc;
	return 0;
}

static void
owner_name(uint64_t owner, char *buf, size_t len)
{
	if (owner > OWNER_FS - REG_N)
		snprintf(buf, len, "%s", region_name[OWNER_FS - owner]);
	else
		snprintf(buf, len, "inode %" PRIu64, owner);
}

/* Split runs at group boundaries (so each lies in one group), sort. */
static int
runs_prepare(struct fsck *f)
{
	size_t n = f->nruns;

	for (size_t i = 0; i < n; i++) {
		struct run *r = &f->runs[i];
		uint64_t gend = flyfs_group_first(flyfs_group_of(r->blk)) +
		    FLYFS_GROUP_BLOCKS;

		while (r->blk + r->len > gend) {
			struct run tail = { gend, r->blk + r->len - gend,
			    r->owner };
			int rc;

			r->len = gend - r->blk;
			if ((rc = add_run(f, tail.blk, tail.len,
			    tail.owner)) != 0)
				return rc;
			r = &f->runs[f->nruns - 1];
			gend += FLYFS_GROUP_BLOCKS;
		}
	}
	qsort(f->runs, f->nruns, sizeof(*f->runs), cmp_run);
	return 0;
}

/* Report blocks used twice: overlapping runs (sorted by start). */
static void
find_overlaps(struct fsck *f)
{
	uint64_t end = 0, owner = 0, oa = 0, ob = 0, from = 0, to = 0;
	bool open = false;
	char a[64], b[64];

	for (size_t i = 0; i <= f->nruns; i++) {
		const struct run *r = i < f->nruns ? &f->runs[i] : NULL;
		bool ov = r != NULL && r->blk < end;
		uint64_t os = 0, oe = 0;

		if (ov) {
			os = r->blk;
			oe = r->blk + r->len < end ? r->blk + r->len : end;
		}
		/* Merge reports of the same two owners in adjacent blocks. */
		if (open && ov && owner == oa && r->owner == ob && os <= to) {
			if (oe > to)
				to = oe;
		} else {
			if (open) {
				owner_name(oa, a, sizeof(a));
				owner_name(ob, b, sizeof(b));
				if (to - from == 1)
					problem(f, FIX_NEVER, "block %" PRIu64
					    " is used by both %s and %s", from,
					    a, b);
				else
					problem(f, FIX_NEVER, "blocks %" PRIu64
					    "..%" PRIu64 " are used by both %s "
					    "and %s", from, to - 1, a, b);
			}
			open = ov;
			oa = owner;
			ob = ov ? r->owner : 0;
			from = os;
			to = oe;
		}
		if (r != NULL && r->blk + r->len > end) {
			end = r->blk + r->len;
			owner = r->owner;
		}
	}
}

static void
bits_set_range(uint8_t *map, uint64_t from, uint64_t n)
{
	while (n > 0 && (from & 7) != 0) {
		flyfs_bit_set(map, from++);
		n--;
	}
	if (n >= 8) {
		memset(map + from / 8, 0xff, n / 8);
		from += n / 8 * 8;
		n %= 8;
	}
	while (n-- > 0)
		flyfs_bit_set(map, from++);
}

static uint64_t
popcount_bits(const uint8_t *map, uint64_t nbits)
{
	uint64_t c = 0, w;

	for (uint64_t i = 0; i < nbits / 64; i++) {
		memcpy(&w, map + i * 8, 8);
		c += (uint64_t)__builtin_popcountll(w);
	}
	for (uint64_t i = nbits / 64 * 64; i < nbits; i++)
		c += flyfs_bit_test(map, i);
	return c;
}

/*
 * Describe up to a few ranges of bits that are set in A and clear in B
 * (of N bits, numbered from BASE) into BUF; returns how many bits.
 */
static uint64_t
diff_ranges(const uint8_t *a, const uint8_t *b, uint64_t n, uint64_t base,
    char *buf, size_t len)
{
	uint64_t count = 0, shown = 0;
	size_t used = 0;

	buf[0] = '\0';
	for (uint64_t i = 0; i < n; ) {
		uint64_t j = i;

		if (!(flyfs_bit_test(a, i) && !flyfs_bit_test(b, i))) {
			i++;
			continue;
		}
		while (j < n && flyfs_bit_test(a, j) && !flyfs_bit_test(b, j))
			j++;
		count += j - i;
		if (shown++ < 4 && used < len) {
			int w = j - i == 1 ?
			    snprintf(buf + used, len - used, "%s%" PRIu64,
			    used ? ", " : "", base + i) :
			    snprintf(buf + used, len - used, "%s%" PRIu64 "..%"
			    PRIu64, used ? ", " : "", base + i, base + j - 1);
			used += w > 0 ? (size_t)w : 0;
		} else if (shown == 5 && used < len) {
			int w = snprintf(buf + used, len - used, ", ...");
			used += w > 0 ? (size_t)w : 0;
		}
		i = j;
	}
	return count;
}

/* One group: expected bitmap from the runs, against the disk. */
static void
check_group(struct fsck *f, uint32_t g, struct flyfs_group_desc *gd,
    bool gdt_bad, size_t *ri, uint8_t *want, bool *gdt_dirty,
    uint64_t *total_free)
{
	uint64_t first = flyfs_group_first(g);
	uint32_t size = flyfs_group_size(f->sb.block_count, g);
	uint32_t flags = le32_get(gd->gd_flags);
	uint64_t bblk = f->sb.bitmap_start + g, nfree, nused, pfree;
	bool any = false, write = false, have_disk = false, reclaimed;
	uint8_t *disk = f->buf, pre[FLYFS_MB_PAYLOAD];
	char err[256], list[160];

	/* Fast path: a never-used group with nothing in it (most of a big,
	 * fresh image) needs no bitmap at all. */
	if (!gdt_bad && (flags & FLYFS_GD_BITMAP_UNINIT) &&
	    (*ri >= f->nruns || f->runs[*ri].blk >= first + size)) {
		if (le32_get(gd->gd_free_blocks) != size &&
		    problem(f, FIX_PREEN, "group %" PRIu32 ": the descriptor "
		    "says %" PRIu32 " free blocks, there are %" PRIu32, g,
		    le32_get(gd->gd_free_blocks), size)) {
			le32_set(&gd->gd_free_blocks, size);
			*gdt_dirty = true;
		}
		*total_free += size;
		return;
	}
	/*
	 * WANT is what the bitmap must say; PRE is the same with the blocks
	 * of orphans reclaimed by this run still counted, so that freeing
	 * them is not reported again as a separate problem.
	 */
	memset(want, 0, FLYFS_MB_PAYLOAD);
	memset(pre, 0, FLYFS_MB_PAYLOAD);
	while (*ri < f->nruns && f->runs[*ri].blk < first + size) {
		const struct run *r = &f->runs[(*ri)++];
		bits_set_range(pre, r->blk - first, r->len);
		any = true;
		if (r->owner < f->ninodes &&
		    (f->ii[r->owner].flags & IF_RECLAIM))
			continue;
		bits_set_range(want, r->blk - first, r->len);
	}
	if (size < FLYFS_GROUP_BLOCKS) {
		bits_set_range(want, size, FLYFS_GROUP_BLOCKS - size);
		bits_set_range(pre, size, FLYFS_GROUP_BLOCKS - size);
	}
	reclaimed = memcmp(want, pre, FLYFS_MB_PAYLOAD) != 0;
	nused = popcount_bits(want, size);
	f->used_blocks += nused;

	if (!gdt_bad && (flags & FLYFS_GD_BITMAP_UNINIT)) {
		if (any) {
			if (problem(f, FIX_PREEN, "group %" PRIu32 " is marked "
			    "as never used, but %" PRIu64 " of its blocks are "
			    "in use", g, nused)) {
				flags &= ~FLYFS_GD_BITMAP_UNINIT;
				write = true;
			}
		}
	} else if (!gdt_bad) {
		int error = read_mblock(f, bblk, FLYFS_MB_BBITMAP, 0, f->buf,
		    err, sizeof(err));
		if (error == 0) {
			have_disk = true;
		} else if (problem(f, f->blocks_unknown ? FIX_NEVER :
		    FIX_PREEN, "group %" PRIu32 ": the block bitmap is "
		    "damaged (%s); it is rebuilt", g, err)) {
			write = true;
		}
	} else {
		/* Descriptor lost: rebuild as if the group were fresh. */
		flags = any ? 0 : FLYFS_GD_BITMAP_UNINIT;
		write = any;
	}
	if (have_disk) {
		uint8_t *bits = disk + sizeof(struct flyfs_mblock_hdr);
		uint64_t n;

		n = diff_ranges(bits, pre, FLYFS_GROUP_BLOCKS, first, list,
		    sizeof(list));
		if (n > 0) {
			if (f->blocks_unknown) {
				problem(f, FIX_NEVER, "group %" PRIu32 ": %"
				    PRIu64 " block%s marked in use but not "
				    "used by anything (%s); not freed: some "
				    "trees could not be read", g, n,
				    n == 1 ? " is" : "s are", list);
				for (uint32_t i = 0; i < FLYFS_GROUP_BLOCKS; i++)
					if (flyfs_bit_test(bits, i)) {
						flyfs_bit_set(want, i);
						flyfs_bit_set(pre, i);
					}
			} else if (problem(f, FIX_PREEN, "group %" PRIu32 ": %"
			    PRIu64 " block%s marked in use but not used by "
			    "anything (%s)", g, n, n == 1 ? " is" : "s are",
			    list)) {
				write = true;
			} else {
				for (uint32_t i = 0; i < FLYFS_GROUP_BLOCKS; i++)
					if (flyfs_bit_test(bits, i)) {
						flyfs_bit_set(want, i);
						flyfs_bit_set(pre, i);
					}
			}
		}
		n = diff_ranges(want, bits, FLYFS_GROUP_BLOCKS, first, list,
		    sizeof(list));
		if (n > 0 && problem(f, FIX_PREEN, "group %" PRIu32 ": %"
		    PRIu64 " block%s in use but marked free (%s)", g, n,
		    n == 1 ? " is" : "s are", list))
			write = true;
		if (reclaimed)
			write = true;
	}
	nfree = size - popcount_bits(want, size);
	pfree = size - popcount_bits(pre, size);
	if (!gdt_bad && le32_get(gd->gd_free_blocks) != pfree &&
	    problem(f, FIX_PREEN, "group %" PRIu32 ": the descriptor says %"
	    PRIu32 " free blocks, there are %" PRIu64, g,
	    le32_get(gd->gd_free_blocks), pfree))
		*gdt_dirty = true;
	if (nfree != pfree && f->mode != FLYFS_FSCK_NO)
		*gdt_dirty = true;
	if (gdt_bad || *gdt_dirty || flags != le32_get(gd->gd_flags)) {
		le32_set(&gd->gd_free_blocks, (uint32_t)nfree);
		le32_set(&gd->gd_flags, flags);
		*gdt_dirty = true;
	}
	*total_free += nfree;
	if (write && f->mode != FLYFS_FSCK_NO) {
		memset(f->buf, 0, BS);
		memcpy(f->buf + sizeof(struct flyfs_mblock_hdr), want,
		    FLYFS_MB_PAYLOAD);
		flyfs_mblock_seal(f->buf, FLYFS_MB_BBITMAP, bblk,
		    f->sb.last_txid, 0, f->sb.csum_seed);
		if (write_block(f, bblk, f->buf) != 0)
			unfixed(f, "bitmap not written");
	}
}

static int
pass5_blocks(struct fsck *f, uint64_t *total_free)
{
	uint8_t *gdt = blockdev_alloc_buf(f->bd, BS);
	uint8_t *want = malloc(FLYFS_MB_PAYLOAD);
	size_t ri = 0;
	int rc;

	if (gdt == NULL || want == NULL) {
		blockdev_free_buf(gdt);
		free(want);
		return ENOMEM;
	}
	if ((rc = runs_prepare(f)) != 0)
		goto out;
	find_overlaps(f);
	*total_free = 0;
	for (uint32_t b = 0; b < f->sb.gdt_blocks; b++) {
		struct flyfs_gdt_block *gb = (void *)gdt;
		uint64_t blk = f->sb.gdt_start + b;
		bool bad = false, dirty = false;
		char err[256];
		int error = read_mblock(f, blk, FLYFS_MB_GDT, 0, gdt, err,
		    sizeof(err));

		if (error != 0) {
			if (problem(f, f->blocks_unknown ? FIX_NEVER :
			    FIX_PREEN, "group descriptor block %" PRIu64
			    " is damaged (%s); it is rebuilt", blk, err)) {
				memset(gdt, 0, BS);
				bad = true;
			} else {
				/* Compare with what it would say. */
				memset(gdt, 0, BS);
				bad = true;
			}
		}
		for (uint32_t i = 0; i < FLYFS_GD_PER_BLOCK; i++) {
			uint64_t g = (uint64_t)b * FLYFS_GD_PER_BLOCK + i;

			if (g >= f->sb.group_count) {
				if (!bad && !iszero(&gb->gb_desc[i],
				    sizeof(gb->gb_desc[i])) &&
				    problem(f, FIX_PREEN, "group descriptor %"
				    PRIu64 " past the last group is not zero",
				    g)) {
					memset(&gb->gb_desc[i], 0,
					    sizeof(gb->gb_desc[i]));
					dirty = true;
				}
				continue;
			}
			check_group(f, (uint32_t)g, &gb->gb_desc[i], bad, &ri,
			    want, &dirty, total_free);
		}
		if ((dirty || bad) && f->mode != FLYFS_FSCK_NO) {
			flyfs_mblock_seal(gdt, FLYFS_MB_GDT, blk,
			    f->sb.last_txid, 0, f->sb.csum_seed);
			if (write_block(f, blk, gdt) != 0)
				unfixed(f, "descriptor block not written");
		}
	}
out:
	blockdev_free_buf(gdt);
	free(want);
	return rc;
}

/* The inode bitmap against the slots in use; returns inodes in use. */
static uint64_t
pass5_inodes(struct fsck *f)
{
	uint64_t used = 0;

	for (size_t b = 0; b < f->nibm; b++) {
		uint8_t want[FLYFS_MB_PAYLOAD], pre[FLYFS_MB_PAYLOAD];
		uint8_t *disk = f->ibitmap + b * FLYFS_MB_PAYLOAD;
		uint64_t base = (uint64_t)b * FLYFS_INODES_PER_IBITMAP, n;
		bool rewrite = (f->ibm_blk[b] >> 63) != 0, write = rewrite;
		uint64_t blk = f->ibm_blk[b] & ~(1ULL << 63);
		char list[160];

		memset(want, 0, sizeof(want));
		memset(pre, 0, sizeof(pre));
		for (uint64_t i = 0; i < FLYFS_INODES_PER_IBITMAP &&
		    base + i < f->ninodes; i++) {
			const struct iinfo *ii = &f->ii[base + i];
			if (base + i < FLYFS_FIRST_INO || ii->type != 0 ||
			    (ii->flags & IF_BAD)) {
				flyfs_bit_set(want, i);
				flyfs_bit_set(pre, i);
				used++;
			} else if (ii->flags & IF_RECLAIM) {
				flyfs_bit_set(pre, i);
				write = true;
			}
		}
		if (!rewrite) {
			n = diff_ranges(disk, pre, FLYFS_INODES_PER_IBITMAP,
			    base, list, sizeof(list));
			if (n > 0 && problem(f, FIX_PREEN, "%" PRIu64 " inode%s "
			    "marked in use but free (%s)", n, n == 1 ?
			    " is" : "s are", list))
				write = true;
			n = diff_ranges(pre, disk, FLYFS_INODES_PER_IBITMAP,
			    base, list, sizeof(list));
			if (n > 0 && problem(f, FIX_PREEN, "%" PRIu64 " inode%s "
			    "in use but marked free (%s)", n, n == 1 ?
			    " is" : "s are", list))
				write = true;
		}
		if (write && f->mode != FLYFS_FSCK_NO) {
			memset(f->buf, 0, BS);
			memcpy(f->buf + sizeof(struct flyfs_mblock_hdr), want,
			    sizeof(want));
			flyfs_mblock_seal(f->buf, FLYFS_MB_IBITMAP, blk,
			    f->sb.last_txid, FLYFS_INO_IBITMAP,
			    f->sb.csum_seed);
			if (write_block(f, blk, f->buf) != 0)
				unfixed(f, "inode bitmap not written");
		}
	}
	return used;
}

/* The orphan file: slots name orphans, once each; counts right. */
static void
pass5_orphans(struct fsck *f)
{
	for (size_t b = 0; b < f->norph; b++) {
		struct flyfs_orphan_block *ob = (void *)f->buf;
		uint64_t blk = f->orph_blk[b];
		uint32_t count = 0;
		bool write = false;
		char err[256];
		int error = read_mblock(f, blk, FLYFS_MB_ORPHAN,
		    FLYFS_INO_ORPHAN, f->buf, err, sizeof(err));

		if (error == EUCLEAN || error == ENXIO || error == EIO) {
			if (problem(f, FIX_YES, "orphan file block %" PRIu64
			    " is damaged (%s); it is emptied", blk, err)) {
				memset(f->buf, 0, BS);
				write = true;
			}
		} else if (error == EBADMSG) {
			if (problem(f, FIX_PREEN, "orphan file: %s", err))
				write = true;
		}
		for (size_t i = 0; error != EUCLEAN && i <
		    FLYFS_ORPHANS_PER_BLOCK; i++) {
			uint64_t ino = le64_get(ob->ob_ino[i]);
			struct iinfo *ii;

			if (ino == 0)
				continue;
			ii = ino >= FLYFS_FIRST_INO && ino < f->ninodes ?
			    &f->ii[ino] : NULL;
			if (ii != NULL && (ii->flags & IF_RECLAIM)) {
				le64_set(&ob->ob_ino[i], 0);
				write = true;
				continue;
			}
			if (ii == NULL || ii->type == 0 || ii->nlink != 0 ||
			    !(ii->flags & IF_LISTED)) {
				if (problem(f, FIX_PREEN, "the orphan file lists "
				    "inode %" PRIu64 ", which is %s", ino,
				    ii == NULL ? "not a valid inode number" :
				    ii->type == 0 ? "free" : ii->nlink != 0 ?
				    "still linked" : "listed twice")) {
					le64_set(&ob->ob_ino[i], 0);
					write = true;
				}
				continue;
			}
			ii->flags &= ~IF_LISTED;	/* a second is a dup */
			count++;
		}
		if (error != EUCLEAN && le32_get(ob->ob_count) != count &&
		    !write && problem(f, FIX_PREEN, "orphan file block %"
		    PRIu64 " says %" PRIu32 " slots are in use, %" PRIu32
		    " are", blk, le32_get(ob->ob_count), count))
			write = true;
		if (write && f->mode != FLYFS_FSCK_NO) {
			le32_set(&ob->ob_count, count);
			flyfs_mblock_seal(f->buf, FLYFS_MB_ORPHAN, blk,
			    f->sb.last_txid, FLYFS_INO_ORPHAN,
			    f->sb.csum_seed);
			if (write_block(f, blk, f->buf) != 0)
				unfixed(f, "orphan block not written");
		}
	}
}

/* ---- The whole check --------------------------------------------------- */

/* Without -f: a clean filesystem with an empty journal is only summarised. */
static bool
is_clean(struct fsck *f)
{
	const struct flyfs_journal_super *js = (const void *)f->buf;
	char err[256];

	if (!(f->sb.state & FLYFS_STATE_CLEAN) ||
	    (f->sb.state & FLYFS_STATE_ERROR) || f->sb_dirty || f->backup_bad)
		return false;
	if (read_mblock(f, f->sb.journal_start, FLYFS_MB_JSUPER, OWNER_FS,
	    f->buf, err, sizeof(err)) != 0)
		return false;
	return le64_get(js->js_start) == 0 && le32_get(js->js_errno) == 0;
}

static void
count_types(struct fsck *f)
{
	for (uint64_t ino = FLYFS_INO_ROOT; ino < f->ninodes; ino++) {
		if (ino > FLYFS_INO_ROOT && ino < FLYFS_FIRST_INO)
			continue;
		switch (f->ii[ino].type) {
		case 0: break;
		case DT_REG: f->r->files++; break;
		case DT_DIR: f->r->dirs++; break;
		case DT_LNK: f->r->symlinks++; break;
		default: f->r->others++; break;
		}
	}
}

/* Superblock counters, the state, and the backup, at the end. */
static void
finish_super(struct fsck *f, uint64_t free_blocks, uint64_t used_inodes,
    bool was_clean)
{
	uint64_t free_inodes = f->ninodes - used_inodes;
	bool counts = f->sb.free_blocks != free_blocks ||
	    f->sb.free_inodes != free_inodes || f->sb.inode_count != f->ninodes;
	uint32_t state;

	if (counts && was_clean) {
		if (!problem(f, FIX_PREEN, "the superblock counts (%" PRIu64
		    " free blocks, %" PRIu64 " inodes, %" PRIu64 " free) "
		    "should be %" PRIu64 ", %" PRIu64 ", %" PRIu64,
		    f->sb.free_blocks, f->sb.inode_count, f->sb.free_inodes,
		    free_blocks, f->ninodes, free_inodes))
			counts = false;
	} else if (counts) {
		verbose(f, "superblock counts updated (not current after an "
		    "unclean stop)");
	}
	if (f->mode == FLYFS_FSCK_NO)
		return;
	state = f->r->left == 0 ? FLYFS_STATE_CLEAN : FLYFS_STATE_ERROR;
	if (!counts && !f->sb_dirty && state == f->sb.state && !f->backup_bad)
		return;
	if (counts) {
		f->sb.free_blocks = free_blocks;
		f->sb.free_inodes = free_inodes;
		f->sb.inode_count = f->ninodes;
	}
	if (f->have_zstd_ext)
		f->sb.feature_incompat |= FLYFS_FEATURE_INCOMPAT_ZSTD;
	f->sb.state = state;
	flyfs_sb_encode(&f->sb, f->buf);
	if (f->backup_bad || f->sb_dirty) {
		struct flyfs_sb_info b = f->sb;

		/* The backup keeps mkfs-time counters; state is irrelevant. */
		flyfs_sb_encode(&b, f->buf);
		if (write_block(f, f->sb.backup_block, f->buf) != 0)
			return;
		flyfs_sb_encode(&f->sb, f->buf);
	}
	if (blockdev_flush(f->bd) != 0 || write_block(f, 0, f->buf) != 0 ||
	    blockdev_flush(f->bd) != 0)
		operr(f, "cannot write the superblock");
}

static int
check_all(struct fsck *f)
{
	uint64_t free_blocks = 0, used_inodes;
	bool was_clean = (f->sb.state & FLYFS_STATE_CLEAN) &&
	    !f->r->journal_replayed && !f->r->journal_in_memory;
	int rc;

	f->r->checked = true;
	if (f->sb.read_only && f->mode != FLYFS_FSCK_NO) {
		info(f, "the filesystem has read-only features this fsck "
		    "does not know (0x%" PRIx64 "); checking without writing",
		    (uint64_t)(f->sb.feature_ro_compat &
		    ~FLYFS_FEATURE_RO_COMPAT_SUPP));
		f->mode = FLYFS_FSCK_NO;
	}
	verbose(f, "pass 1: inodes, extents, symlinks, xattrs");
	if ((rc = add_fixed_runs(f)) != 0)
		return rc;
	if (!pass1_system(f))
		return 0;
	read_orphans(f);
	if ((rc = pass1_inodes(f)) != 0)
		return rc;
	if (f->ii[FLYFS_INO_ROOT].type != DT_DIR ||
	    (f->ii[FLYFS_INO_ROOT].flags & IF_BAD)) {
		operr(f, "the root directory (inode 1) is missing or unusable; "
		    "the namespace cannot be checked");
		return 0;
	}
	verbose(f, "pass 2: directory trees");
	for (uint64_t ino = FLYFS_INO_ROOT; ino < f->ninodes; ino++)
		if (f->ii[ino].type == DT_DIR && !(f->ii[ino].flags & IF_BAD) &&
		    (rc = pass2_dir(f, ino)) != 0)
			return rc;
	verbose(f, "pass 3: directory connectivity");
	if ((rc = pass3_connect(f)) != 0)
		return rc;
	verbose(f, "pass 4: link counts and orphans");
	pass4_links(f);
	verbose(f, "pass 5: block and inode allocation, orphan file");
	if ((rc = pass5_blocks(f, &free_blocks)) != 0)
		return rc;
	used_inodes = pass5_inodes(f);
	pass5_orphans(f);
	if (f->have_zstd_ext &&
	    !(f->sb.feature_incompat & FLYFS_FEATURE_INCOMPAT_ZSTD) &&
	    problem(f, FIX_PREEN, "compressed extents exist but the zstd "
	    "feature flag is not set"))
		f->sb_dirty = true;
	if (f->r->zstd_unchecked)
		info(f, "cannot verify compressed extents: this fsck was "
		    "built without zstd");
	count_types(f);
	f->r->blocks = f->sb.block_count;
	f->r->blocks_used = f->sb.block_count - free_blocks;
	f->r->inodes = f->ninodes;
	f->r->inodes_used = used_inodes;
	finish_super(f, free_blocks, used_inodes, was_clean);
	return 0;
}

int
flyfs_fsck(struct blockdev *bd, const struct flyfs_fsck_opts *o,
    struct flyfs_fsck_result *r)
{
	struct flyfs_fsck_result dummy;
	struct fsck *f;
	const char *label;
	int rc = 0;

	if (r == NULL)
		r = &dummy;
	memset(r, 0, sizeof(*r));
	f = calloc(1, sizeof(*f));
	if (f == NULL) {
		r->error = ENOMEM;
		return r->exit_code = FLYFS_FSCK_OPERROR;
	}
	f->bd = bd;
	f->o = o;
	f->r = r;
	f->mode = o->mode;
	f->buf = blockdev_alloc_buf(bd, BS);
	f->buf2 = blockdev_alloc_buf(bd, BS);
	if (f->buf == NULL || f->buf2 == NULL) {
		rc = ENOMEM;
		goto out;
	}
	if (!pass0_super(f))
		goto out;
	label = f->sb.label[0] != '\0' ? f->sb.label : "flyfs";
	if (!o->force && f->r->found == 0 && is_clean(f)) {
		uint64_t ui = f->sb.inode_count - f->sb.free_inodes;
		uint64_t ub = f->sb.block_count - f->sb.free_blocks;

		info(f, "%s: clean, %" PRIu64 "/%" PRIu64 " inodes, %" PRIu64
		    "/%" PRIu64 " blocks", label, ui, f->sb.inode_count, ub,
		    f->sb.block_count);
		r->inodes = f->sb.inode_count;
		r->inodes_used = ui;
		r->blocks = f->sb.block_count;
		r->blocks_used = ub;
		goto out;
	}
	if (!pass0_journal(f))
		goto out;
	rc = check_all(f);
	if (rc == 0 && !f->opfail) {
		info(f, "%s: %" PRIu64 "/%" PRIu64 " inodes, %" PRIu64 "/%"
		    PRIu64 " blocks; %" PRIu64 " files, %" PRIu64
		    " directories, %" PRIu64 " symlinks, %" PRIu64 " other files",
		    label, r->inodes_used, r->inodes, r->blocks_used,
		    r->blocks, r->files, r->dirs, r->symlinks, r->others);
		if (r->left > 0)
			info(f, "%" PRIu64 " problem%s left uncorrected: the "
			    "filesystem still has errors", r->left,
			    r->left == 1 ? "" : "s");
		else if (r->fixed > 0)
			info(f, "%" PRIu64 " problem%s corrected: the "
			    "filesystem is now consistent", r->fixed,
			    r->fixed == 1 ? "" : "s");
		else
			info(f, "the filesystem is consistent%s",
			    r->journal_in_memory ? " once the journal is "
			    "replayed" : "");
	}
out:
	if (rc != 0) {
		operr(f, "fsck stopped: %s", strerror(rc));
		r->error = rc;
	}
	if (f->opfail) {
		r->exit_code = FLYFS_FSCK_OPERROR;
		if (r->error == 0)
			r->error = EIO;
	} else if (r->left > 0) {
		r->exit_code = FLYFS_FSCK_UNCORRECTED;
	} else if (r->fixed > 0) {
		r->exit_code = FLYFS_FSCK_CORRECTED;
	} else {
		r->exit_code = FLYFS_FSCK_OK;
	}
	blockdev_free_buf(f->buf);
	blockdev_free_buf(f->buf2);
	free(f->jov);
	free(f->ifx);
	free(f->ii);
	free(f->ibitmap);
	free(f->ibm_blk);
	free(f->orph_blk);
	free(f->runs);
	free(f->edges);
	free(f);
	return r->exit_code;
}
