/*
 * super.c - mounting, unmounting and the filesystem-wide calls.
 *
 * This module owns the life of a mounted filesystem: the order in which
 * mount brings up the buffer cache, the journal (and its replay), the
 * allocator, the inode cache and the orphan reclaim; the superblock's
 * mutable state (CLEAN cleared at mount, set with exact counts at a clean
 * unmount); the metadata buffer helpers every module uses
 * (fs_meta_read / fs_meta_new); flyfs_statfs, flyfs_stats_foreach,
 * flyfs_fsync and flyfs_sync; and flyfs_abandon, the test stand-in for
 * kill -9.
 *
 * The superblock is not journaled.  It is written in place at mount (state
 * without CLEAN) and at unmount (CLEAN, counters), each time followed by a
 * barrier.  Everything it would otherwise have to track while mounted is
 * derived at mount from journaled metadata: free blocks from the group
 * descriptors, the inode count from the inode file's size, free inodes
 * from the inode bitmap.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/bufstats.h"
#include "fs/fs_int.h"

/* Only one filesystem per process: the buffer cache is global. */
static pthread_mutex_t mount_lock = PTHREAD_MUTEX_INITIALIZER;
static struct flyfs *mounted_fs;

int
fs_corrupt(struct flyfs *fs, uint64_t blk, uint64_t ino, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (blk != 0)
		fprintf(stderr, "flyfs: corrupt metadata: block %" PRIu64
		    ": %s\n", blk, msg);
	else if (ino != 0)
		fprintf(stderr, "flyfs: corrupt metadata: inode %" PRIu64
		    ": %s\n", ino, msg);
	else
		fprintf(stderr, "flyfs: corrupt metadata: %s\n", msg);
	__atomic_store_n(&fs->s_error, EUCLEAN, __ATOMIC_RELAXED);
	FS_COUNT(fs, meta_errors, 1);
	return EUCLEAN;
}

void
fs_now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

/* ---- Metadata buffers --------------------------------------------------- */

/*
 * B_VFSFLAG1 on a devvp buffer: its content was checked (read from the
 * device and verified) or produced here (fs_meta_new).  Cleared whenever
 * the buffer is found without B_CACHE, so a re-read is verified again.
 */
#define B_METAOK	B_VFSFLAG1

int
fs_meta_read(struct flyfs *fs, uint64_t blk, uint32_t expect_magic,
    uint64_t owner, struct buf **bpp)
{
	const struct flyfs_mblock_hdr *h;
	char err[200];
	struct buf *bp;
	int error;

	*bpp = NULL;
	if (blk == 0 || blk >= fs->s_sb.block_count)
		return fs_corrupt(fs, 0, 0, "reference to block %" PRIu64
		    " outside the filesystem (%" PRIu64 " blocks)", blk,
		    fs->s_sb.block_count);
	bp = getblk(&fs->devvp, fs_blk_off(blk), FLYFS_BLOCK_SIZE, 0, 0);
	if ((bp->b_flags & B_CACHE) == 0) {
		bp->b_flags &= ~B_METAOK;
		FS_COUNT(fs, meta_reads, 1);
		error = breadnx(&fs->devvp, fs_blk_off(blk), FLYFS_BLOCK_SIZE,
		    0, NULL, NULL, 0, &bp);
		if (error) {
			bp->b_flags |= B_INVAL;
			brelse(bp);
			fprintf(stderr, "flyfs: read error on block %" PRIu64
			    ": %s\n", blk, strerror(error));
			return error;
		}
	}
	h = (const struct flyfs_mblock_hdr *)bp->b_data;
	if ((bp->b_flags & B_METAOK) == 0) {
		error = flyfs_mblock_check(bp->b_data, expect_magic, blk,
		    fs->s_seed, err, sizeof(err));
		if (error) {
			bp->b_flags |= B_INVAL;
			brelse(bp);
			return fs_corrupt(fs, blk, 0, "%s", err);
		}
		bp->b_flags |= B_METAOK;
	} else if (le32_get(h->mb_magic) != expect_magic ||
	    le64_get(h->mb_blocknr) != blk) {
		bqrelse(bp);
		return fs_corrupt(fs, blk, 0, "expected magic 0x%08" PRIx32
		    ", cached block has 0x%08" PRIx32, expect_magic,
		    le32_get(h->mb_magic));
	}
	if (owner != FS_OWNER_ANY && le64_get(h->mb_owner) != owner) {
		bqrelse(bp);
		return fs_corrupt(fs, blk, 0, "belongs to inode %" PRIu64
		    ", expected %" PRIu64, le64_get(h->mb_owner), owner);
	}
	*bpp = bp;
	return 0;
}

int
fs_meta_new(struct fs_trans *tx, uint64_t blk, uint32_t magic,
    uint64_t owner, struct buf **bpp)
{
	struct flyfs *fs = tx->t_fs;
	struct flyfs_mblock_hdr *h;
	struct buf *bp;

	*bpp = NULL;
	if (blk == 0 || blk >= fs->s_sb.block_count)
		return fs_corrupt(fs, 0, 0, "new block %" PRIu64
		    " outside the filesystem", blk);
	bp = getblk(&fs->devvp, fs_blk_off(blk), FLYFS_BLOCK_SIZE, 0, 0);
	memset(bp->b_data, 0, FLYFS_BLOCK_SIZE);
	h = (struct flyfs_mblock_hdr *)bp->b_data;
	le32_set(&h->mb_magic, magic);
	le64_set(&h->mb_blocknr, blk);
	le64_set(&h->mb_owner, owner);
	bp->b_flags |= B_CACHE | B_METAOK;
	bp->b_flags &= ~(B_INVAL | B_ERROR | B_NOCACHE | B_RELBUF);
	fs_trans_dirty(tx, bp);
	*bpp = bp;
	return 0;
}

void
fs_meta_release(struct buf *bp)
{
	bqrelse(bp);
}

/* ---- Superblock --------------------------------------------------------- */

/*
 * Write the primary superblock from fs->s_sb and make it durable.  The
 * caller has made everything the new state claims durable first.
 */
static int
sb_write(struct flyfs *fs)
{
	struct timespec now;
	void *blk;
	int error;

	blk = blockdev_alloc_buf(fs->s_bdev, FLYFS_BLOCK_SIZE);
	if (blk == NULL)
		return ENOMEM;
	fs_now(&now);
	pthread_mutex_lock(&fs->s_sb_lock);
	fs->s_sb.write_time = now.tv_sec;
	flyfs_sb_encode(&fs->s_sb, blk);
	pthread_mutex_unlock(&fs->s_sb_lock);
	error = blockdev_pwrite(fs->s_bdev, blk, FLYFS_BLOCK_SIZE, 0);
	if (error == 0)
		error = blockdev_flush(fs->s_bdev);
	blockdev_free_buf(blk);
	return error;
}

/*
 * Features are static fields: the backup superblock gets them too, first
 * (a crash between the two writes leaves the backup ahead, which fsck
 * reports and mount ignores, rather than a primary without its copy).
 */
int
fs_sb_set_incompat(struct flyfs *fs, uint64_t bit)
{
	static pthread_mutex_t feature_lock = PTHREAD_MUTEX_INITIALIZER;
	void *blk;
	int error = 0;

	pthread_mutex_lock(&feature_lock);
	pthread_mutex_lock(&fs->s_sb_lock);
	if (fs->s_sb.feature_incompat & bit) {
		pthread_mutex_unlock(&fs->s_sb_lock);
		goto out;
	}
	fs->s_sb.feature_incompat |= bit;
	blk = blockdev_alloc_buf(fs->s_bdev, FLYFS_BLOCK_SIZE);
	if (blk == NULL) {
		fs->s_sb.feature_incompat &= ~bit;
		pthread_mutex_unlock(&fs->s_sb_lock);
		error = ENOMEM;
		goto out;
	}
	flyfs_sb_encode(&fs->s_sb, blk);
	pthread_mutex_unlock(&fs->s_sb_lock);
	error = blockdev_pwrite(fs->s_bdev, blk, FLYFS_BLOCK_SIZE,
	    fs_blk_off(fs->s_sb.backup_block));
	blockdev_free_buf(blk);
	if (error == 0)
		error = sb_write(fs);
out:
	pthread_mutex_unlock(&feature_lock);
	return error;
}

/* Compression workers finish flushes: system threads of the cache. */
static void
compress_thread_init(void)
{
	curthread_set_systhread(true);
}

static int
compress_start(struct flyfs *fs)
{
	struct fs_compress_conf cc;

	memset(&cc, 0, sizeof(cc));
	if (fs->s_opts.compress == FLYFS_COMP_NONE)
		cc.mount.mode = FS_COMP_OFF;
	else if (fs->s_opts.compress == FLYFS_COMP_ZSTD)
		cc.mount.mode = FS_COMP_ZSTD;
	cc.mount.level = cc.mount.mode == FS_COMP_ZSTD &&
	    fs->s_opts.compress_level > 0 ?
	    (uint8_t)fs->s_opts.compress_level : 0;
	cc.image.mode = fs->s_sb.default_comp == FLYFS_COMP_ZSTD ?
	    FS_COMP_ZSTD : FS_COMP_OFF;
	cc.image.level = fs->s_sb.default_comp_level;
	cc.thread_init = compress_thread_init;
	return fs_compress_create(&cc, &fs->s_compress);
}

/* ---- Mount -------------------------------------------------------------- */

static void
fs_free(struct flyfs *fs)
{
	pthread_mutex_destroy(&fs->s_sb_lock);
	pthread_mutex_destroy(&fs->s_res_lock);
	pthread_mutex_destroy(&fs->s_alloc_lock);
	pthread_mutex_destroy(&fs->s_ialloc_lock);
	pthread_mutex_destroy(&fs->s_orphan_lock);
	pthread_mutex_destroy(&fs->s_icache_lock);
	pthread_cond_destroy(&fs->s_icache_cv);
	pthread_mutex_destroy(&fs->s_rename_lock);
	free(fs);
}

static struct flyfs *
fs_create(struct blockdev *bd, const struct flyfs_mount_opts *opts)
{
	struct flyfs *fs = calloc(1, sizeof(*fs));

	if (fs == NULL)
		return NULL;
	fs->s_bdev = bd;
	if (opts)
		fs->s_opts = *opts;
	else
		fs->s_opts.compress = -1;
	fs->s_readonly = fs->s_opts.readonly;
	fs->s_noatime = fs->s_opts.noatime;
	fs->s_commit_interval = fs->s_opts.commit_interval > 0 ?
	    fs->s_opts.commit_interval : 5;
	pthread_mutex_init(&fs->s_sb_lock, NULL);
	pthread_mutex_init(&fs->s_res_lock, NULL);
	pthread_mutex_init(&fs->s_alloc_lock, NULL);
	pthread_mutex_init(&fs->s_ialloc_lock, NULL);
	pthread_mutex_init(&fs->s_orphan_lock, NULL);
	pthread_mutex_init(&fs->s_icache_lock, NULL);
	pthread_cond_init(&fs->s_icache_cv, NULL);
	pthread_mutex_init(&fs->s_rename_lock, NULL);
	return fs;
}

static void
apply_geometry(struct flyfs *fs)
{
	const struct flyfs_sb_info *sbi = &fs->s_sb;

	fs->s_seed = sbi->csum_seed;
	fs->s_dbsize = sbi->data_block_size;
	fs->s_dbshift = (uint32_t)__builtin_ctz(sbi->data_block_size);
	if (fs->s_opts.compress >= 0 && fs->s_opts.compress <= FLYFS_COMP_ZSTD) {
		fs->s_comp = (uint8_t)fs->s_opts.compress;
		fs->s_comp_level = (uint8_t)fs->s_opts.compress_level;
	} else {
		fs->s_comp = sbi->default_comp;
		fs->s_comp_level = sbi->default_comp_level;
	}
	if (fs->s_comp == FLYFS_COMP_ZSTD && fs->s_comp_level == 0)
		fs->s_comp_level = FLYFS_ZSTD_LEVEL_DEFAULT;
	/*
	 * Keep back 1/512 of the image (at least 64 blocks, at most 64 MiB)
	 * from delayed-allocation reservations: flushing reserved data must
	 * always find room for the extent and bitmap blocks it dirties.
	 */
	fs->s_meta_reserve = sbi->block_count / 512;
	if (fs->s_meta_reserve < 64)
		fs->s_meta_reserve = 64;
	if (fs->s_meta_reserve > 16384)
		fs->s_meta_reserve = 16384;
}

int
flyfs_mount_bdev(struct blockdev *bd, const struct flyfs_mount_opts *opts,
    struct flyfs **fsp, char *err, size_t errlen)
{
	struct bufinit_args ba;
	struct flyfs *fs;
	struct timespec now;
	uint64_t norphans = 0;
	int error;
	enum { S_NONE, S_CACHE, S_JOURNAL, S_ALLOC, S_ICACHE, S_RUNNING } st;

	*fsp = NULL;
	st = S_NONE;
	pthread_mutex_lock(&mount_lock);
	if (mounted_fs != NULL) {
		pthread_mutex_unlock(&mount_lock);
		return flyfs_error(err, errlen, EBUSY, "a flyfs is already "
		    "mounted in this process (the buffer cache is global)");
	}
	fs = fs_create(bd, opts);
	if (fs == NULL) {
		pthread_mutex_unlock(&mount_lock);
		return flyfs_error(err, errlen, ENOMEM, "out of memory");
	}
	error = flyfs_sb_read(bd, 0, &fs->s_sb, err, errlen);
	if (error)
		goto out;
	if (fs->s_sb.read_only && !fs->s_readonly) {
		error = flyfs_error(err, errlen, EROFS, "the image has "
		    "read-only-compatible features this flyfs does not know; "
		    "mount it read-only");
		goto out;
	}
	apply_geometry(fs);
	fs->s_was_clean = (fs->s_sb.state & FLYFS_STATE_CLEAN) != 0;

	memset(&ba, 0, sizeof(ba));
	ba.cache_size = fs->s_opts.cache_size;
	error = bufinit(&ba);
	if (error) {
		flyfs_error(err, errlen, error, "cannot start the buffer "
		    "cache: %s", strerror(error));
		goto out;
	}
	st = S_CACHE;
	vn_devvp_init(&fs->devvp, bd);
	if ((error = compress_start(fs)) != 0) {
		flyfs_error(err, errlen, error, "cannot start the compression "
		    "workers: %s", strerror(error));
		goto out;
	}

	if ((error = fs_journal_open(fs, err, errlen)) != 0)
		goto out;
	st = S_JOURNAL;
	if ((error = fs_journal_replay(fs, err, errlen)) != 0)
		goto out;
	if ((error = fs_alloc_init(fs)) != 0) {
		flyfs_error(err, errlen, error, "cannot read the group "
		    "descriptors: %s", strerror(error));
		goto out;
	}
	st = S_ALLOC;
	if ((error = fs_icache_init(fs)) != 0 ||
	    (error = fs_icache_load_system(fs)) != 0) {
		flyfs_error(err, errlen, error, "cannot read the system "
		    "inodes: %s", strerror(error));
		goto out;
	}
	st = S_ICACHE;
	if ((error = fs_alloc_count_inodes(fs, &fs->s_free_inodes)) != 0) {
		flyfs_error(err, errlen, error, "cannot read the inode "
		    "bitmap: %s", strerror(error));
		goto out;
	}
	if (!fs->s_readonly) {
		fs_now(&now);
		pthread_mutex_lock(&fs->s_sb_lock);
		fs->s_sb.state &= ~FLYFS_STATE_CLEAN;
		fs->s_sb.mount_time = now.tv_sec;
		fs->s_sb.mount_count++;
		fs->s_sb.free_blocks = fs->s_free_blocks;
		fs->s_sb.free_inodes = fs->s_free_inodes;
		fs->s_sb.inode_count = fs->s_inode_count;
		pthread_mutex_unlock(&fs->s_sb_lock);
		if ((error = sb_write(fs)) != 0) {
			flyfs_error(err, errlen, error, "cannot write the "
			    "superblock: %s", strerror(error));
			goto out;
		}
	}
	if ((error = fs_journal_start(fs)) != 0) {
		flyfs_error(err, errlen, error, "cannot start the journal: %s",
		    strerror(error));
		goto out;
	}
	st = S_RUNNING;
	if (!fs->s_readonly) {
		error = fs_orphan_reclaim_all(fs, &norphans);
		if (error) {
			flyfs_error(err, errlen, error, "cannot reclaim "
			    "orphan inodes: %s", strerror(error));
			goto out;
		}
		FS_COUNT(fs, orphans_reclaimed, norphans);
	}
	mounted_fs = fs;
	pthread_mutex_unlock(&mount_lock);
	*fsp = fs;
	return 0;
out:
	/* Nothing below wrote more than replay and the superblock did. */
	if (st >= S_RUNNING)
		fs_journal_abandon(fs);
	if (st >= S_ICACHE)
		fs_icache_discard_all(fs);
	if (st >= S_ALLOC) {
		fs_icache_fini(fs);
		fs_alloc_fini(fs);
	}
	if (st >= S_JOURNAL)
		fs_journal_close(fs);
	if (st >= S_CACHE) {
		vinvalbuf(&fs->devvp, 0);
		vn_uninit(&fs->devvp);
		buf_shutdown();
	}
	fs_compress_destroy(fs->s_compress);
	fs_free(fs);
	pthread_mutex_unlock(&mount_lock);
	return error;
}

int
flyfs_mount(const char *path, const struct flyfs_mount_opts *opts,
    struct flyfs **fsp, char *err, size_t errlen)
{
	struct blockdev_opts bo;
	struct blockdev *bd;
	int error;

	memset(&bo, 0, sizeof(bo));
	bo.o_readonly = opts ? opts->readonly : false;
	bo.o_queue_depth = opts ? opts->queue_depth : 0;
	error = blockdev_open(path, &bo, &bd, err, errlen);
	if (error)
		return error;
	error = flyfs_mount_bdev(bd, opts, fsp, err, errlen);
	if (error) {
		blockdev_close(bd);
		return error;
	}
	(*fsp)->s_own_bdev = true;
	return 0;
}

/*
 * Clean unmount: data, inodes, a last commit, a full checkpoint (the log
 * is then empty), and the superblock marked CLEAN with exact counts.
 */
int
flyfs_unmount(struct flyfs *fs)
{
	struct blockdev *bd = fs->s_bdev;
	bool own = fs->s_own_bdev;
	int error = 0, e;

	if (!fs->s_readonly) {
		error = fs_icache_flush_all(fs);
		e = fs_journal_shutdown(fs);
		if (error == 0)
			error = e;
	} else {
		fs_journal_abandon(fs);
	}
	fs_icache_discard_all(fs);
	fs_icache_fini(fs);
	e = vinvalbuf(&fs->devvp, V_SAVE);
	if (error == 0)
		error = e;
	vinvalbuf(&fs->devvp, 0);
	if (!fs->s_readonly) {
		pthread_mutex_lock(&fs->s_sb_lock);
		fs->s_sb.free_blocks = fs->s_free_blocks + fs->s_busy_blocks;
		fs->s_sb.free_inodes = fs->s_free_inodes;
		fs->s_sb.inode_count = fs->s_inode_count;
		if (error == 0 && fs->s_error == 0)
			fs->s_sb.state |= FLYFS_STATE_CLEAN;
		if (fs->s_error != 0) {
			fs->s_sb.state |= FLYFS_STATE_ERROR;
			fs->s_sb.error_count++;
		}
		pthread_mutex_unlock(&fs->s_sb_lock);
		e = sb_write(fs);
		if (error == 0)
			error = e;
	}
	fs_alloc_fini(fs);
	fs_journal_close(fs);
	vn_uninit(&fs->devvp);
	e = buf_shutdown();
	if (error == 0 && e == EIO)
		error = e;
	fs_compress_destroy(fs->s_compress);
	pthread_mutex_lock(&mount_lock);
	mounted_fs = NULL;
	pthread_mutex_unlock(&mount_lock);
	fs_free(fs);
	if (own)
		blockdev_close(bd);
	return error;
}

/*
 * kill -9 stand-in.  The journal stops first (its thread joins, and the
 * abort makes any later fs_trans_begin fail, so a flusher caught in a
 * data strategy cannot start a transaction).  Then buf_abandon() stops
 * the cache's daemons, waits for the writes already issued (as a real
 * device completes what it was given before the process died: their
 * completions still find every inode and the journal alive), and
 * destroys every buffer, dirty and LOCKED included, without writing.
 * Only then are the inodes and the mount state freed: no buffer is left
 * on their vnodes.
 */
void
flyfs_abandon(struct flyfs *fs)
{
	struct blockdev *bd = fs->s_bdev;
	bool own = fs->s_own_bdev;

	fs_journal_abandon(fs);
	buf_abandon();
	fs_icache_discard_all(fs);
	fs_icache_fini(fs);
	fs_alloc_fini(fs);
	fs_journal_close(fs);
	vn_uninit(&fs->devvp);
	fs_compress_destroy(fs->s_compress);
	pthread_mutex_lock(&mount_lock);
	mounted_fs = NULL;
	pthread_mutex_unlock(&mount_lock);
	fs_free(fs);
	if (own)
		blockdev_close(bd);
}

/* ---- Filesystem-wide calls ---------------------------------------------- */

void
flyfs_set_attr_cb(struct flyfs *fs, flyfs_attr_cb *cb, void *arg)
{
	fs->s_attr_cb = cb;
	fs->s_attr_arg = arg;
}

int
flyfs_statfs(struct flyfs *fs, struct statvfs *out)
{
	uint64_t free_blocks, resv, avail;

	memset(out, 0, sizeof(*out));
	free_blocks = __atomic_load_n(&fs->s_free_blocks, __ATOMIC_RELAXED) +
	    __atomic_load_n(&fs->s_busy_blocks, __ATOMIC_RELAXED);
	pthread_mutex_lock(&fs->s_res_lock);
	resv = fs->s_resv_blocks;
	pthread_mutex_unlock(&fs->s_res_lock);
	avail = free_blocks > resv + fs->s_meta_reserve ?
	    free_blocks - resv - fs->s_meta_reserve : 0;
	out->f_bsize = FLYFS_BLOCK_SIZE;
	out->f_frsize = FLYFS_BLOCK_SIZE;
	out->f_blocks = fs->s_sb.block_count;
	out->f_bfree = free_blocks > resv ? free_blocks - resv : 0;
	out->f_bavail = avail;
	/*
	 * Inodes are dynamic: the inode file grows into free space, one
	 * 4 KiB block per 16 inodes.  Report what could still be made.
	 */
	out->f_files = __atomic_load_n(&fs->s_inode_count, __ATOMIC_RELAXED) +
	    avail * FLYFS_INODES_PER_BLOCK;
	out->f_ffree = __atomic_load_n(&fs->s_free_inodes, __ATOMIC_RELAXED) +
	    avail * FLYFS_INODES_PER_BLOCK;
	out->f_favail = out->f_ffree;
	out->f_fsid = le32_load(fs->s_sb.uuid) ^ le32_load(fs->s_sb.uuid + 4);
	out->f_flag = fs->s_readonly ? ST_RDONLY : 0;
	out->f_namemax = FLYFS_NAME_MAX;
	return 0;
}

/* Pass the compression engine's figures on, noting what bytes_saved needs. */
struct comp_fig {
	void	(*fn)(void *arg, const char *name, uint64_t value);
	void	*arg;
	uint64_t logical, written;
};

static void
comp_fig_cb(void *arg, const char *name, uint64_t value)
{
	struct comp_fig *cf = arg;

	if (strcmp(name, "compress_logical_bytes") == 0)
		cf->logical = value;
	else if (strcmp(name, "compress_written_bytes") == 0)
		cf->written = value;
	cf->fn(cf->arg, name, value);
}

static void
comp_tun_cb(void *arg, const struct fs_comp_tunable *t, uint64_t value)
{
	struct comp_fig *cf = arg;

	cf->fn(cf->arg, t->name, value);
}

void
flyfs_stats_foreach(struct flyfs *fs,
    void (*fn)(void *arg, const char *name, uint64_t value), void *arg)
{
	const struct fs_counters *c = &fs->s_count;
	struct statvfs sv;

#define C(f) fn(arg, #f, __atomic_load_n(&c->f, __ATOMIC_RELAXED))
	C(commits); C(commit_blocks); C(commit_log_blocks); C(commits_fsync);
	C(commits_early); C(checkpoints); C(checkpoint_writes);
	C(replay_txns); C(replay_blocks); C(meta_reads); C(meta_errors);
	C(blocks_allocated); C(blocks_freed); C(inodes_allocated);
	C(inodes_freed); C(orphans_reclaimed); C(ifile_grows);
	C(data_reads); C(data_writes); C(data_read_bytes);
	C(data_write_bytes); C(data_flush_blocks); C(partial_writes);
	C(partial_fills); C(partial_reads); C(async_reads);
	C(dirty_page_flushes); C(xattr_gets); C(lookups); C(creates);
	C(unlinks); C(renames);
#undef C
	flyfs_statfs(fs, &sv);
	fn(arg, "block_count", fs->s_sb.block_count);
	fn(arg, "free_blocks", sv.f_bfree);
	fn(arg, "avail_blocks", sv.f_bavail);
	fn(arg, "reserved_blocks", fs->s_resv_blocks);
	fn(arg, "inode_count", fs->s_inode_count);
	fn(arg, "free_inodes", fs->s_free_inodes);
	fn(arg, "inodes_cached", fs->s_icount);
	fn(arg, "orphans", fs->s_orphan_count);
	fn(arg, "data_block_size", fs->s_dbsize);
	fn(arg, "commit_interval", (uint64_t)fs->s_commit_interval);
	fs_journal_stats(fs, fn, arg);
	if (fs->s_compress != NULL) {
		struct comp_fig cf = { .fn = fn, .arg = arg };

		/* The engine's figures are the single source (compress.c). */
		fs_compress_stats_foreach(fs->s_compress, comp_fig_cb, &cf);
		fn(arg, "bytes_saved", cf.logical > cf.written ?
		    cf.logical - cf.written : 0);
		/* Its tunables, flyfs.fs.compress_level etc. (fuse_stats.c). */
		fs_compress_tunables_foreach(fs->s_compress, comp_tun_cb, &cf);
	}
}

/*
 * fsync: write the file's dirty data (the strategy allocates it in
 * transactions whose commits wait for it: ordered mode), then commit
 * every transaction so far.  fdatasync is the same: the transactions
 * that allocated the data must commit anyway, and the inode's size and
 * times ride in them.  A write journals the size and each new second of
 * mtime at once (write_finish); the sub-second rest (i_dirty) is left to
 * sync, unmount and eviction: writing it here would make every fsync of
 * overwritten data a commit (two barriers instead of one: fio's
 * randwrite4k-fsync32 lost a quarter of its rate).
 */
int
flyfs_fsync(struct flyfs *fs, uint64_t ino, bool datasync)
{
	struct fs_inode *ip;
	int error, e;

	(void)datasync;
	if ((error = fs_iget(fs, ino, &ip)) != 0)
		return error;
	error = vfsync(ITOV(ip), MNT_WAIT);
	e = __atomic_exchange_n(&ip->i_error, 0, __ATOMIC_RELAXED);
	if (error == 0)
		error = e;
	e = fs_journal_sync(fs);
	if (error == 0)
		error = e;
	FS_COUNT(fs, commits_fsync, 1);
	fs_iput(ip);
	return error;
}

int
flyfs_sync(struct flyfs *fs)
{
	int error, e;

	if (fs->s_readonly)
		return 0;
	error = fs_icache_sync_data(fs, MNT_WAIT);
	e = fs_journal_sync(fs);
	FS_COUNT(fs, commits_fsync, 1);
	return error ? error : e;
}
