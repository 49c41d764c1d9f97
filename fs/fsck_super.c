/*
 * fsck_super.c - fsck.flyfs pass 0 and the final superblock.
 *
 * This module owns the checker's view of the superblock and the journal:
 * choosing a superblock to trust (the primary, else the backup), comparing
 * the backup's static fields with the primary's, and bringing the journal
 * home before anything else is read.  The journal is read by
 * journal_scan.c, as the mount reads it: under -p/-y its committed
 * transactions are replayed, under -n they are kept as an in-memory
 * overlay that fsck_read_blocks() applies.  At the end it rewrites the
 * superblock: counters, state, feature flags and the backup.
 */
#include "fs/fsck_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

	if ((error = fsck_read_raw(f, blk, 1, f->buf)) != 0)
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
bool
fsck_pass0_super(struct fsck *f)
{
	char perr[512], berr[512];
	struct flyfs_sb_info backup;
	uint64_t dev_blocks = blockdev_size(f->bd) / BS;
	uint64_t bblk = 0;
	int perror_, berror = ENOENT;
	enum fixkind kind;

	if (dev_blocks < 1) {
		fsck_operr(f, "the image is empty: not a flyfs filesystem");
		return false;
	}
	perror_ = try_sb(f, 0, &f->sb, perr, sizeof(perr));
	if (perror_ == 0) {
		if (flyfs_sb_check_device(&f->sb, blockdev_size(f->bd), perr,
		    sizeof(perr)) != 0) {
			fsck_operr(f,
			    "%s; the check cannot go on (if the image was cut "
			    "short by accident, extend it back to %" PRIu64
			    " bytes with truncate -s; what was beyond is lost)",
			    perr, f->sb.block_count * BS);
			return false;
		}
		/* The backup: compare its static fields. */
		berror = try_sb(f, f->sb.backup_block, &backup, berr,
		    sizeof(berr));
		if (berror != 0) {
			if (fsck_problem(f, FIX_PREEN,
			    "the backup superblock at block %" PRIu64
			    " is damaged (%s)", f->sb.backup_block, berr))
				f->backup_bad = true;
		} else if (!sb_static_equal(&f->sb, &backup)) {
			if (fsck_problem(f, FIX_PREEN,
			    "the backup superblock at block %" PRIu64
			    " differs from the primary", f->sb.backup_block))
				f->backup_bad = true;
		}
		return true;
	}
	if (perror_ == EOPNOTSUPP) {
		fsck_operr(f, "%s", perr);
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

		if (fsck_read_raw(f, 0, 1, f->buf) == 0) {
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
			fsck_operr(f, "%s, and no flyfs backup superblock was "
			    "found in the last block", perr);
		else
			fsck_operr(f,
			    "the superblock is unusable (%s) and so is the "
			    "backup (%s)", perr, berr);
		return false;
	}
	if (flyfs_sb_check_device(&backup, blockdev_size(f->bd), berr,
	    sizeof(berr)) != 0) {
		fsck_operr(f, "%s", berr);
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
	if (fsck_problem(f, kind, "the primary superblock is damaged (%s); the "
	    "backup at block %" PRIu64 " is valid and is used instead", perr,
	    bblk)) {
		f->sb.state &= ~FLYFS_STATE_CLEAN;
		f->sb_dirty = true;
	} else {
		/* Go on from the backup, read-only from here. */
		f->sb.state &= ~FLYFS_STATE_CLEAN;
		if (f->mode != FLYFS_FSCK_NO) {
			fsck_info(f, "checking with the backup superblock, "
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
	return fsck_write_block(f, f->sb.journal_start, f->buf);
}

static int
replay_home(void *arg, uint64_t home, const void *block)
{
	return fsck_write_block(arg, home, block);
}

/*
 * The journal is read by journal_scan.c, the reader the mount uses too,
 * so what fsck replays (or overlays in memory under -n) is exactly what
 * the next mount would replay.  A committed transaction that is damaged
 * makes the mount refuse; here the intact transactions before it are
 * kept and it and every later one are dropped (-y), a repair that may
 * lose their changes, which the passes below then check.
 */
bool
fsck_pass0_journal(struct fsck *f)
{
	struct flyfs_journal_super js;
	struct fs_jscan s = { 0 };
	struct fs_jscan_geom g;
	char err[256], serr[256] = "";
	uint64_t seq, jerrno;
	bool ok = true, damaged = false, apply;
	int error;

	if (fsck_read_mblock(f, f->sb.journal_start, FLYFS_MB_JSUPER, OWNER_FS,
	    f->buf, err, sizeof(err)) != 0) {
		if (fsck_problem(f, FIX_YES,
		    "the journal superblock is damaged (%s); whatever the "
		    "journal held is lost", err) &&
		    journal_reset(f, f->sb.last_txid + 1) != 0)
			fsck_unfixed(f, "write failed");
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
		if (fsck_problem(f, FIX_YES, "the journal superblock describes "
		    "an impossible journal (size %" PRIu64 ", first block %"
		    PRIu64 ", start %" PRIu64 "); whatever it held is lost",
		    le64_get(js.js_blocks), le64_get(js.js_first),
		    le64_get(js.js_start)) &&
		    journal_reset(f, f->sb.last_txid + 1) != 0)
			fsck_unfixed(f, "write failed");
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
		fsck_operr(f, "cannot scan the journal: %s", serr);
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
	if (damaged && !fsck_problem(f, FIX_YES, "%s; the %" PRIu64 " intact "
	    "committed transaction%s before it %s kept, it and any later "
	    "ones are dropped", serr, s.txns, s.txns == 1 ? "" : "s",
	    s.txns == 1 ? "is" : "are"))
		apply = false;
	if (!apply) {
		if (s.txns > 0) {
			fsck_info(f, "the journal holds %" PRIu64 " committed "
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
			fsck_info(f,
			    "the journal holds no committed transaction; the "
			    "next mount will mark it empty");
		}
		if (jerrno != 0)
			fsck_problem(f, FIX_PREEN,
			    "the journal was aborted after error %" PRIu64
			    " (%s)", jerrno, strerror((int)jerrno));
		goto out;
	}
	if (s.txns > 0) {
		f->r->found++;
		f->r->fixed++;
		fsck_info(f, "replaying %" PRIu64 " committed journal "
		    "transaction%s (%zu block%s)", s.txns,
		    s.txns == 1 ? "" : "s", s.nrefs, s.nrefs == 1 ? "" : "s");
		error = fs_jscan_replay(f->bd, f->sb.csum_seed, &s, f->buf,
		    replay_home, f);
		if (error) {
			fsck_operr(f, "journal replay failed: %s",
			    strerror(error));
			ok = false;
			goto out;
		}
		if (blockdev_flush(f->bd) != 0) {
			fsck_operr(f, "cannot flush the image after replay");
			ok = false;
			goto out;
		}
		f->r->journal_replayed = true;
		f->sb.last_txid = seq - 1;
		f->sb.state &= ~FLYFS_STATE_CLEAN;
		f->sb_dirty = true;
	}
	if (jerrno != 0)
		fsck_problem(f, FIX_PREEN,
		    "the journal was aborted after error %" PRIu64 " (%s)",
		    jerrno, strerror((int)jerrno));
	/* Past a damaged transaction's number too: it must never validate. */
	if (damaged)
		seq++;
	if (journal_reset(f, seq) != 0 || blockdev_flush(f->bd) != 0)
		ok = false;
out:
	fs_jscan_free(&s);
	return ok;
}

/* ---- The end: superblock rewrite ------------------------------------------ */

/* Superblock counters, the state, and the backup, at the end. */
void
fsck_finish_super(struct fsck *f, uint64_t free_blocks, uint64_t used_inodes,
    bool was_clean)
{
	uint64_t free_inodes = f->ninodes - used_inodes;
	bool counts = f->sb.free_blocks != free_blocks ||
	    f->sb.free_inodes != free_inodes || f->sb.inode_count != f->ninodes;
	uint32_t state;

	if (counts && was_clean) {
		if (!fsck_problem(f, FIX_PREEN, "the superblock counts (%"
		    PRIu64 " free blocks, %" PRIu64 " inodes, %" PRIu64
		    " free) should be %" PRIu64 ", %" PRIu64 ", %" PRIu64,
		    f->sb.free_blocks, f->sb.inode_count, f->sb.free_inodes,
		    free_blocks, f->ninodes, free_inodes))
			counts = false;
	} else if (counts) {
		fsck_verbose(f,
		    "superblock counts updated (not current after an unclean "
		    "stop)");
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
		if (fsck_write_block(f, f->sb.backup_block, f->buf) != 0)
			return;
		flyfs_sb_encode(&f->sb, f->buf);
	}
	if (blockdev_flush(f->bd) != 0 || fsck_write_block(f, 0, f->buf) != 0 ||
	    blockdev_flush(f->bd) != 0)
		fsck_operr(f, "cannot write the superblock");
}
