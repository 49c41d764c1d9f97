/*
 * fsck_core.c - the flyfs checker and repairer (fsck.flyfs as a library):
 * its entry point.
 *
 * This module owns the order of the passes, the decision that a clean
 * image needs no full check, the result and the exit code, and the
 * plumbing every pass uses: messages (a problem is counted and says
 * what is done about it) and block I/O.  It reads the image through the
 * synchronous blockdev helpers, never through the buffer cache, and the
 * passes trust nothing they read: every number taken from the image is
 * range-checked before it indexes memory or names a block.
 *
 * The check runs in passes, as e2fsck's do:
 *   0  superblock (primary, else the backup), journal: committed
 *      transactions are replayed (-p/-y) or overlaid in memory (-n)
 *      (fsck_super.c);
 *   1  the system files and every inode slot: checksum, number, type,
 *      flags, extent trees (records sorted, in range, compressed extents
 *      decompressed), symlinks, xattr blocks, sizes, i_blocks; every block
 *      used is recorded as a run with its owner (fsck_inode.c);
 *   2  every directory tree: node levels and bounds, the leaf chain, keys
 *      against name hashes, names, entry targets and types, entry counts;
 *   3  connectivity: a walk from the root; extra links to directories,
 *      unreachable directories (to lost+found), ".." against dr_parent;
 *   4  link counts, unattached inodes (to lost+found), orphans
 *      (passes 2 to 4: fsck_dir.c);
 *   5  allocation: the block runs, sorted, give overlaps (blocks with two
 *      owners) and, group by group, the bitmap each group should have;
 *      compared with the on-disk bitmaps, free counts, the inode bitmap,
 *      the orphan file and the superblock counters (fsck_alloc.c).
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
#include "fs/fsck_int.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void __attribute__((format(printf, 2, 3)))
fsck_info(struct fsck *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(f, FLYFS_FSCK_MSG_INFO, fmt, ap);
	va_end(ap);
}

void __attribute__((format(printf, 2, 3)))
fsck_verbose(struct fsck *f, const char *fmt, ...)
{
	va_list ap;

	if (!f->o->verbose)
		return;
	va_start(ap, fmt);
	vsay(f, FLYFS_FSCK_MSG_INFO, fmt, ap);
	va_end(ap);
}

void __attribute__((format(printf, 2, 3)))
fsck_operr(struct fsck *f, const char *fmt, ...)
{
	va_list ap;

	f->opfail = true;
	va_start(ap, fmt);
	vsay(f, FLYFS_FSCK_MSG_ERROR, fmt, ap);
	va_end(ap);
}

/*
 * Report a fsck_problem (one line: the sentence, then what is done about it)
 * and say whether the caller should repair it now.  A caller whose repair
 * then fails calls fsck_unfixed().
 */
bool __attribute__((format(printf, 3, 4)))
fsck_problem(struct fsck *f, enum fixkind kind, const char *fmt, ...)
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

void __attribute__((format(printf, 2, 3)))
fsck_unfixed(struct fsck *f, const char *fmt, ...)
{
	char line[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	f->r->fixed--;
	f->r->left++;
	fsck_info(f, "  could not repair it: %s", line);
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
int
fsck_read_raw(struct fsck *f, uint64_t blk, uint64_t n, void *buf)
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
int
fsck_read_blocks(struct fsck *f, uint64_t blk, uint64_t n, void *buf)
{
	int error;

	if (blk >= f->sb.block_count || n > f->sb.block_count - blk)
		return ENXIO;
	if ((error = fsck_read_raw(f, blk, n, buf)) != 0)
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

int
fsck_write_block(struct fsck *f, uint64_t blk, const void *buf)
{
	int error;

	if (f->mode == FLYFS_FSCK_NO || blk >= f->sb.block_count)
		return EROFS;
	error = blockdev_pwrite(f->bd, buf, BS, (off_t)(blk * BS));
	if (error != 0)
		fsck_operr(f, "cannot write block %" PRIu64 ": %s", blk,
		    strerror(error));
	return error;
}

/* Read metadata block BLK and check its header; ERR gets the reason. */
int
fsck_read_mblock(struct fsck *f, uint64_t blk, uint32_t magic, uint64_t owner,
    void *buf, char *err, size_t errlen)
{
	const struct flyfs_mblock_hdr *h = buf;
	int error;

	if (blk == 0 || blk >= f->sb.block_count)
		return flyfs_error(err, errlen, ENXIO,
		    "block %" PRIu64 " is outside the filesystem", blk);
	if ((error = fsck_read_blocks(f, blk, 1, buf)) != 0)
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
void
fsck_reseal_block(struct fsck *f, uint64_t blk, void *buf)
{
	const struct flyfs_mblock_hdr *h = buf;

	flyfs_mblock_seal(buf, le32_get(h->mb_magic), blk,
	    le64_get(h->mb_txid), le64_get(h->mb_owner), f->sb.csum_seed);
	if (fsck_write_block(f, blk, buf) != 0)
		fsck_unfixed(f, "write failed");
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
	if (fsck_read_mblock(f, f->sb.journal_start, FLYFS_MB_JSUPER, OWNER_FS,
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

static int
check_all(struct fsck *f)
{
	uint64_t free_blocks = 0, used_inodes;
	bool was_clean = (f->sb.state & FLYFS_STATE_CLEAN) &&
	    !f->r->journal_replayed && !f->r->journal_in_memory;
	int rc;

	f->r->checked = true;
	if (f->sb.read_only && f->mode != FLYFS_FSCK_NO) {
		fsck_info(f, "the filesystem has read-only features this fsck "
		    "does not know (0x%" PRIx64 "); checking without writing",
		    (uint64_t)(f->sb.feature_ro_compat &
		    ~FLYFS_FEATURE_RO_COMPAT_SUPP));
		f->mode = FLYFS_FSCK_NO;
	}
	fsck_verbose(f, "pass 1: inodes, extents, symlinks, xattrs");
	if ((rc = fsck_add_fixed_runs(f)) != 0)
		return rc;
	if (!fsck_pass1_system(f))
		return 0;
	fsck_read_orphans(f);
	if ((rc = fsck_pass1_inodes(f)) != 0)
		return rc;
	if (f->ii[FLYFS_INO_ROOT].type != DT_DIR ||
	    (f->ii[FLYFS_INO_ROOT].flags & IF_BAD)) {
		fsck_operr(f,
		    "the root directory (inode 1) is missing or unusable; the "
		    "namespace cannot be checked");
		return 0;
	}
	fsck_verbose(f, "pass 2: directory trees");
	for (uint64_t ino = FLYFS_INO_ROOT; ino < f->ninodes; ino++)
		if (f->ii[ino].type == DT_DIR && !(f->ii[ino].flags & IF_BAD) &&
		    (rc = fsck_pass2_dir(f, ino)) != 0)
			return rc;
	fsck_verbose(f, "pass 3: directory connectivity");
	if ((rc = fsck_pass3_connect(f)) != 0)
		return rc;
	fsck_verbose(f, "pass 4: link counts and orphans");
	fsck_pass4_links(f);
	fsck_verbose(f, "pass 5: block and inode allocation, orphan file");
	if ((rc = fsck_pass5_blocks(f, &free_blocks)) != 0)
		return rc;
	used_inodes = fsck_pass5_inodes(f);
	fsck_pass5_orphans(f);
	if (f->have_zstd_ext &&
	    !(f->sb.feature_incompat & FLYFS_FEATURE_INCOMPAT_ZSTD) &&
	    fsck_problem(f, FIX_PREEN, "compressed extents exist but the zstd "
	    "feature flag is not set"))
		f->sb_dirty = true;
	count_types(f);
	f->r->blocks = f->sb.block_count;
	f->r->blocks_used = f->sb.block_count - free_blocks;
	f->r->inodes = f->ninodes;
	f->r->inodes_used = used_inodes;
	fsck_finish_super(f, free_blocks, used_inodes, was_clean);
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
	if (!fsck_pass0_super(f))
		goto out;
	label = f->sb.label[0] != '\0' ? f->sb.label : "flyfs";
	if (!o->force && f->r->found == 0 && is_clean(f)) {
		uint64_t ui = f->sb.inode_count - f->sb.free_inodes;
		uint64_t ub = f->sb.block_count - f->sb.free_blocks;

		fsck_info(f, "%s: clean, %" PRIu64 "/%" PRIu64 " inodes, %"
		    PRIu64 "/%" PRIu64 " blocks", label, ui, f->sb.inode_count,
		    ub, f->sb.block_count);
		r->inodes = f->sb.inode_count;
		r->inodes_used = ui;
		r->blocks = f->sb.block_count;
		r->blocks_used = ub;
		goto out;
	}
	if (!fsck_pass0_journal(f))
		goto out;
	rc = check_all(f);
	if (rc == 0 && !f->opfail) {
		fsck_info(f, "%s: %" PRIu64 "/%" PRIu64 " inodes, %" PRIu64 "/%"
		    PRIu64 " blocks; %" PRIu64 " files, %" PRIu64
		    " directories, %" PRIu64 " symlinks, %" PRIu64
		    " other files", label, r->inodes_used, r->inodes,
		    r->blocks_used, r->blocks, r->files, r->dirs, r->symlinks,
		    r->others);
		if (r->left > 0)
			fsck_info(f, "%" PRIu64
			    " problem%s left uncorrected: the filesystem still "
			    "has errors", r->left, r->left == 1 ? "" : "s");
		else if (r->fixed > 0)
			fsck_info(f, "%" PRIu64 " problem%s corrected: the "
			    "filesystem is now consistent", r->fixed,
			    r->fixed == 1 ? "" : "s");
		else
			fsck_info(f, "the filesystem is consistent%s",
			    r->journal_in_memory ? " once the journal is "
			    "replayed" : "");
	}
out:
	if (rc != 0) {
		fsck_operr(f, "fsck stopped: %s", strerror(rc));
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
