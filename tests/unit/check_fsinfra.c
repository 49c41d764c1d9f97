/*
 * check_fsinfra.c - the filesystem infrastructure: mount, superblock,
 * statfs, inode allocation and the inode cache, the block allocator, the
 * journal (commit, replay after a simulated kill -9, periodic commit,
 * refusal of a corrupt log, the log space kept for nested handles) and
 * orphan reclaim.  Each test gets a fresh RAM device with a fresh mkfs.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/extent.h"
#include "fs/fs_int.h"
#include "fs/fsck_core.h"
#include "fs/journal_scan.h"
#include "fsinfra_util.h"

static struct blockdev *bd;

static void
setup(void)
{
	bd = util_new_image(TEST_IMAGE_BYTES);
}

static void
teardown(void)
{
	blockdev_close(bd);
}

static const struct flyfs_cred cred = { .uid = 1000, .gid = 100 };

/* Make a regular inode in its own transaction; returns its number. */
static uint64_t
make_inode(struct flyfs *fs, mode_t mode)
{
	struct fs_trans *tx;
	struct fs_inode *ip;
	uint64_t ino;

	ck_assert_int_eq(fs_trans_begin(fs, FS_INODE_ALLOC_BLOCKS, &tx), 0);
	ck_assert_int_eq(fs_inode_alloc(tx, NULL, mode, 0, &cred, &ip), 0);
	ck_assert_int_eq(fs_trans_end(tx), 0);
	ino = ip->i_ino;
	fs_iput(ip);
	return ino;
}

struct stat_q {
	const char	*name;
	uint64_t	v;
	bool		found;
};

static void
stat_fn(void *arg, const char *n, uint64_t v)
{
	struct stat_q *q = arg;

	if (strcmp(n, q->name) == 0) {
		q->v = v;
		q->found = true;
	}
}

static uint64_t
stat_value(struct flyfs *fs, const char *name)
{
	struct stat_q q = { name, 0, false };

	flyfs_stats_foreach(fs, stat_fn, &q);
	ck_assert_msg(q.found, "no stat %s", name);
	return q.v;
}

/* ---- mount ---------------------------------------------------------------- */

START_TEST(test_mount_fresh)
{
	struct flyfs_sb_info sbi;
	struct statvfs sv;
	struct flyfs *fs;
	struct flyfs_attr a;
	char err[256];

	ck_assert_int_eq(flyfs_sb_read(bd, 0, &sbi, err, sizeof(err)), 0);
	ck_assert(sbi.state & FLYFS_STATE_CLEAN);
	fs = util_mount(bd, 0);
	ck_assert_int_eq(flyfs_sb_read(bd, 0, &sbi, err, sizeof(err)), 0);
	ck_assert(!(sbi.state & FLYFS_STATE_CLEAN));
	ck_assert_int_eq(sbi.mount_count, 1);
	ck_assert_int_eq(flyfs_statfs(fs, &sv), 0);
	ck_assert_uint_eq(sv.f_blocks, sbi.block_count);
	ck_assert_uint_eq(sv.f_bfree, sbi.free_blocks);
	ck_assert_uint_eq(sv.f_bsize, 4096);
	ck_assert_uint_eq(sv.f_namemax, 255);
	ck_assert_int_eq(flyfs_getattr(fs, FLYFS_ROOT_INO, &a), 0);
	ck_assert(S_ISDIR(a.mode));
	ck_assert_int_eq(a.nlink, 3);
	ck_assert_int_eq(flyfs_getattr(fs, 5, &a), ENOENT);
	ck_assert_int_eq(flyfs_getattr(fs, 1ULL << 40, &a), ENOENT);
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	ck_assert_int_eq(util_check_image(bd, true, NULL), 0);

	/* Remount: the same figures. */
	fs = util_mount(bd, 0);
	ck_assert_int_eq(flyfs_statfs(fs, &sv), 0);
	ck_assert_uint_eq(sv.f_bfree, sbi.free_blocks);
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	ck_assert_int_eq(flyfs_sb_read(bd, 0, &sbi, err, sizeof(err)), 0);
	ck_assert_int_eq(sbi.mount_count, 2);
	ck_assert_int_eq(util_check_image(bd, true, NULL), 0);
}
END_TEST

START_TEST(test_mount_refuses_garbage)
{
	struct flyfs *fs;
	char err[256] = "";
	void *z = blockdev_alloc_buf(bd, 4096);

	memset(z, 0x5a, 4096);
	ck_assert_int_eq(blockdev_pwrite(bd, z, 4096, 0), 0);
	ck_assert_int_ne(flyfs_mount_bdev(bd, NULL, &fs, err, sizeof(err)), 0);
	ck_assert(strlen(err) > 0);
	blockdev_free_buf(z);
}
END_TEST

/* ---- inodes --------------------------------------------------------------- */

START_TEST(test_inode_alloc_remount)
{
	enum { N = 600 };	/* > 256 slots: the inode file must grow */
	static uint64_t inos[N];
	struct flyfs_attr a, in;
	struct statvfs sv0, sv1;
	struct flyfs *fs = util_mount(bd, 0);
	uint64_t used;

	ck_assert_int_eq(flyfs_statfs(fs, &sv0), 0);
	for (int i = 0; i < N; i++) {
		inos[i] = make_inode(fs, (i % 2 ? S_IFREG : S_IFIFO) | 0640);
		ck_assert_uint_ge(inos[i], FLYFS_FIRST_INO);
		for (int k = 0; k < i; k++)
			ck_assert_uint_ne(inos[k], inos[i]);
	}
	ck_assert_uint_ge(stat_value(fs, "ifile_grows"), 1);
	memset(&in, 0, sizeof(in));
	in.mode = 0600;
	in.uid = 42;
	in.mtime.tv_sec = 1234567890;
	in.mtime.tv_nsec = 123456789;
	ck_assert_int_eq(flyfs_setattr(fs, inos[7], &in, FLYFS_SET_MODE |
	    FLYFS_SET_UID | FLYFS_SET_MTIME, NULL, &a), 0);
	ck_assert_int_eq(a.mode, S_IFREG | 0600);
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	ck_assert_int_eq(util_check_image(bd, true, &used), 0);
	ck_assert_uint_eq(used, N + 1);		/* + lost+found */

	fs = util_mount(bd, 0);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(flyfs_getattr(fs, inos[i], &a), 0);
		ck_assert_int_eq(a.mode & S_IFMT, i % 2 ? S_IFREG : S_IFIFO);
		ck_assert_int_eq(a.nlink, 1);
		ck_assert_int_eq(a.gid, 100);
	}
	ck_assert_int_eq(flyfs_getattr(fs, inos[7], &a), 0);
	ck_assert_int_eq(a.uid, 42);
	ck_assert_int_eq(a.mode, S_IFREG | 0600);
	ck_assert_int_eq(a.mtime.tv_sec, 1234567890);
	ck_assert_int_eq(a.mtime.tv_nsec, 123456789);

	/* Free half of them: drop the last link, then the reference. */
	for (int i = 0; i < N; i += 2) {
		struct fs_inode *ip;
		struct fs_trans *tx;

		ck_assert_int_eq(fs_iget(fs, inos[i], &ip), 0);
		ck_assert_int_eq(fs_trans_begin(fs, FS_NLINK_BLOCKS, &tx), 0);
		ck_assert_int_eq(fs_inode_nlink_dec(tx, ip), 0);
		ck_assert_int_eq(fs_trans_end(tx), 0);
		fs_iput(ip);
		ck_assert_int_eq(flyfs_getattr(fs, inos[i], &a), ENOENT);
	}
	ck_assert_int_eq(flyfs_statfs(fs, &sv1), 0);
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	ck_assert_int_eq(util_check_image(bd, true, &used), 0);
	ck_assert_uint_eq(used, N / 2 + 1);

	/* A freed number comes back, with a new generation. */
	fs = util_mount(bd, 0);
	{
		uint64_t ino = make_inode(fs, S_IFREG | 0644);

		ck_assert_int_eq(flyfs_getattr(fs, ino, &a), 0);
		ck_assert_uint_ge(ino, FLYFS_FIRST_INO);
	}
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	ck_assert_int_eq(util_check_image(bd, true, NULL), 0);
}
END_TEST

START_TEST(test_lookup_forget_counts)
{
	struct flyfs *fs = util_mount(bd, 0);
	uint64_t ino = make_inode(fs, S_IFREG | 0644);
	struct fs_inode *ip;
	struct fs_trans *tx;
	struct flyfs_attr a;

	/* A looked-up, unlinked inode survives until forget. */
	ck_assert_int_eq(fs_iget(fs, ino, &ip), 0);
	fs_inode_lookup_ref(ip);
	fs_inode_lookup_ref(ip);
	ck_assert_int_eq(fs_trans_begin(fs, FS_NLINK_BLOCKS, &tx), 0);
	ck_assert_int_eq(fs_inode_nlink_dec(tx, ip), 0);
	ck_assert_int_eq(fs_trans_end(tx), 0);
	fs_iput(ip);
	ck_assert_int_eq(stat_value(fs, "orphans"), 1);
	ck_assert_int_eq(flyfs_getattr(fs, ino, &a), 0);
	ck_assert_int_eq(a.nlink, 0);
	ck_assert_int_eq(flyfs_open(fs, ino, 0), 0);
	flyfs_forget(fs, ino, 2);
	ck_assert_int_eq(flyfs_getattr(fs, ino, &a), 0);	/* still open */
	ck_assert_int_eq(flyfs_release(fs, ino), 0);
	ck_assert_int_eq(flyfs_getattr(fs, ino, &a), ENOENT);
	ck_assert_int_eq(stat_value(fs, "orphans"), 0);
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	ck_assert_int_eq(util_check_image(bd, true, NULL), 0);
}
END_TEST

/* ---- allocator ----------------------------------------------------------- */

START_TEST(test_alloc_contiguous)
{
	struct flyfs *fs = util_mount(bd, 0);
	struct fs_trans *tx;
	uint64_t blk, next, first;
	uint32_t got;

	ck_assert_int_eq(fs_trans_begin(fs, 64, &tx), 0);
	ck_assert_int_eq(fs_alloc_blocks(tx, 0, 100, 0, &first, &got), 0);
	ck_assert_uint_eq(got, 100);
	next = first + got;
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(fs_alloc_blocks(tx, next, 64, 0, &blk, &got),
		    0);
		ck_assert_uint_eq(blk, next);
		ck_assert_uint_eq(got, 64);
		next = blk + got;
	}
	/* Across a group boundary (64 MiB = 16384 blocks: one group). */
	ck_assert_int_eq(fs_trans_end(tx), 0);
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	ck_assert_int_eq(util_check_image(bd, true, NULL), 0);
}
END_TEST

START_TEST(test_alloc_no_reuse_before_commit)
{
	struct flyfs *fs = util_mount(bd, 3600);
	struct fs_trans *tx;
	uint64_t blk, b2;
	uint32_t got;
	struct statvfs sv0, sv1, sv2;

	ck_assert_int_eq(fs_trans_begin(fs, 8, &tx), 0);
	ck_assert_int_eq(fs_alloc_blocks(tx, 0, 10, 0, &blk, &got), 0);
	ck_assert_int_eq(fs_trans_end(tx), 0);
	ck_assert_int_eq(fs_journal_commit_all(fs), 0);
	ck_assert_int_eq(flyfs_statfs(fs, &sv0), 0);

	ck_assert_int_eq(fs_trans_begin(fs, 8, &tx), 0);
	ck_assert_int_eq(fs_trans_free_blocks(tx, blk, 10, 0), 0);
	/* Same transaction: the freed blocks are busy. */
	ck_assert_int_eq(fs_alloc_blocks(tx, blk, 10, 0, &b2, &got), 0);
	ck_assert(b2 >= blk + 10 || b2 + got <= blk);
	ck_assert_int_eq(fs_trans_end(tx), 0);
	/* Another transaction before the commit: still busy. */
	ck_assert_int_eq(fs_trans_begin(fs, 8, &tx), 0);
	ck_assert_int_eq(fs_alloc_blocks(tx, blk, 5, 0, &b2, &got), 0);
	ck_assert(b2 >= blk + 10 || b2 + got <= blk);
	ck_assert_int_eq(fs_trans_end(tx), 0);
	ck_assert_int_eq(flyfs_statfs(fs, &sv1), 0);
	/* Busy blocks count as free in statfs, but not as allocatable. */
	ck_assert_uint_eq(sv1.f_bfree, sv0.f_bfree - 10 - 5 + 10);

	ck_assert_int_eq(fs_journal_commit_all(fs), 0);
	ck_assert_int_eq(fs_trans_begin(fs, 8, &tx), 0);
	ck_assert_int_eq(fs_alloc_blocks(tx, blk, 10, 0, &b2, &got), 0);
	ck_assert_uint_eq(b2, blk);
	ck_assert_uint_eq(got, 10);
	ck_assert_int_eq(fs_trans_end(tx), 0);
	ck_assert_int_eq(flyfs_statfs(fs, &sv2), 0);
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	ck_assert_int_eq(util_check_image(bd, true, NULL), 0);
}
END_TEST

START_TEST(test_alloc_enospc)
{
	struct flyfs *fs = util_mount(bd, 3600);
	struct fs_trans *tx;
	struct statvfs sv;
	uint64_t blk, total = 0;
	uint32_t got;
	int error;

	ck_assert_int_eq(flyfs_statfs(fs, &sv), 0);
	/* Reservations stop at the available space. */
	ck_assert_int_eq(fs_reserve_blocks(fs, sv.f_bavail + 1), ENOSPC);
	ck_assert_int_eq(fs_reserve_blocks(fs, sv.f_bavail), 0);
	ck_assert_int_eq(fs_reserve_blocks(fs, 1), ENOSPC);
	fs_unreserve_blocks(fs, sv.f_bavail);
	/* Ordinary allocations stop at the metadata reserve. */
	for (;;) {
		ck_assert_int_eq(fs_trans_begin(fs, 8, &tx), 0);
		error = fs_alloc_blocks(tx, 0, 4096, 0, &blk, &got);
		ck_assert_int_eq(fs_trans_end(tx), 0);
		if (error)
			break;
		total += got;
	}
	ck_assert_int_eq(error, ENOSPC);
	ck_assert_uint_eq(total, sv.f_bavail);
	/* Metadata may use the reserve, then that runs out too. */
	for (;;) {
		ck_assert_int_eq(fs_trans_begin(fs, 8, &tx), 0);
		error = fs_alloc_blocks(tx, 0, 4096, FS_ALLOC_META, &blk, &got);
		ck_assert_int_eq(fs_trans_end(tx), 0);
		if (error)
			break;
		total += got;
	}
	ck_assert_int_eq(error, ENOSPC);
	ck_assert_uint_eq(total, sv.f_bfree);
	ck_assert_int_eq(flyfs_statfs(fs, &sv), 0);
	ck_assert_uint_eq(sv.f_bfree, 0);
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	ck_assert_int_eq(util_check_image(bd, true, NULL), 0);
}
END_TEST

/* ---- journal -------------------------------------------------------------- */

START_TEST(test_replay_after_abandon)
{
	enum { N = 40 };
	uint64_t committed[N], lost[N];
	struct flyfs_attr a;
	struct flyfs *fs = util_mount(bd, 3600);

	for (int i = 0; i < N; i++)
		committed[i] = make_inode(fs, S_IFREG | 0644);
	ck_assert_int_eq(fs_journal_commit_all(fs), 0);
	ck_assert_uint_ge(stat_value(fs, "commits"), 1);
	for (int i = 0; i < N; i++)
		lost[i] = make_inode(fs, S_IFREG | 0644);
	flyfs_abandon(fs);

	fs = util_mount(bd, 3600);
	ck_assert_uint_ge(stat_value(fs, "replay_txns"), 1);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(flyfs_getattr(fs, committed[i], &a), 0);
		ck_assert_int_eq(a.mode, S_IFREG | 0644);
	}
	for (int i = 0; i < N; i++) {
		int e = flyfs_getattr(fs, lost[i], &a);

		/* Uncommitted: gone (or reused by nothing yet). */
		ck_assert_int_eq(e, ENOENT);
	}
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	ck_assert_int_eq(util_check_image(bd, true, NULL), 0);
}
END_TEST

START_TEST(test_many_commits_wrap)
{
	/* Enough transactions to go round the 4 MiB log several times. */
	struct flyfs *fs = util_mount(bd, 3600);
	struct flyfs_attr a;
	uint64_t last = 0;

	for (int i = 0; i < 3000; i++) {
		last = make_inode(fs, S_IFREG | 0644);
		if (i % 3 == 0)
			ck_assert_int_eq(fs_journal_commit_all(fs), 0);
	}
	ck_assert_uint_ge(stat_value(fs, "checkpoints"), 1);
	ck_assert_int_eq(fs_journal_commit_all(fs), 0);
	flyfs_abandon(fs);
	fs = util_mount(bd, 3600);
	ck_assert_int_eq(flyfs_getattr(fs, last, &a), 0);
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	ck_assert_int_eq(util_check_image(bd, true, NULL), 0);
}
END_TEST

/*
 * Threads that each hold a handle of FS_TRANS_MAX_BLOCKS credits until
 * told to end it (a nested begin is a begin by a thread holding one).
 */
struct holder {
	struct flyfs	*fs;
	pthread_mutex_t	mtx;
	pthread_cond_t	cv;
	int		began;
	bool		release;
	int		error;
};

static void *
hold_handle(void *arg)
{
	struct holder *h = arg;
	struct fs_trans *tx;
	int error = fs_trans_begin(h->fs, FS_TRANS_MAX_BLOCKS, &tx);

	pthread_mutex_lock(&h->mtx);
	if (error)
		h->error = error;
	h->began++;
	pthread_cond_broadcast(&h->cv);
	while (!h->release)
		pthread_cond_wait(&h->cv, &h->mtx);
	pthread_mutex_unlock(&h->mtx);
	if (error == 0)
		fs_trans_end(tx);
	return NULL;
}

/* An outer begin of 120 credits, in a thread of its own. */
static void *
late_begin(void *arg)
{
	struct holder *h = arg;
	struct fs_trans *tx;
	int error = fs_trans_begin(h->fs, 120, &tx);

	if (error == 0)
		error = fs_trans_end(tx);
	pthread_mutex_lock(&h->mtx);
	h->error = error;
	h->began++;
	pthread_mutex_unlock(&h->mtx);
	return NULL;
}

/*
 * A nested begin cannot wait for log space (its transaction cannot close
 * under it), so outer begins keep some back for it, and one that would
 * still overrun the log fails with ENOSPC instead of promising blocks the
 * log does not have.  The test image's log is 4 MiB (1023 blocks usable):
 * three held handles of 256 credits and this thread's own 24 leave room
 * for a nested 60 but not for a nested 256, and an outer 120 after them
 * would fit only in the reserve, so it waits until the handles end.
 */
START_TEST(test_journal_nested_reserve)
{
	enum { HOLDERS = 3 };
	struct holder h = { .fs = util_mount(bd, 3600) };
	pthread_t th[HOLDERS], late;
	struct fs_trans *tx, *ntx;
	struct fs_inode *ip;
	struct flyfs_attr a;
	uint64_t ino;

	pthread_mutex_init(&h.mtx, NULL);
	pthread_cond_init(&h.cv, NULL);
	ck_assert_int_eq(fs_journal_commit_all(h.fs), 0);
	for (int i = 0; i < HOLDERS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, hold_handle, &h),
		    0);
	pthread_mutex_lock(&h.mtx);
	while (h.began < HOLDERS)
		pthread_cond_wait(&h.cv, &h.mtx);
	pthread_mutex_unlock(&h.mtx);
	ck_assert_int_eq(h.error, 0);

	ck_assert_int_eq(fs_trans_begin(h.fs, FS_INODE_ALLOC_BLOCKS, &tx), 0);
	ck_assert_int_eq(fs_trans_begin(h.fs, FS_TRANS_MAX_BLOCKS, &ntx),
	    ENOSPC);
	ck_assert_int_eq(fs_trans_begin(h.fs, 60, &ntx), 0);
	ck_assert_ptr_eq(ntx, tx);
	ck_assert_int_eq(fs_trans_end(ntx), 0);

	/*
	 * Nothing is dirty yet, so only log space can hold the late begin
	 * back.  Not a timing assertion: without the reserve it returns at
	 * once.
	 */
	ck_assert_int_eq(pthread_create(&late, NULL, late_begin, &h), 0);
	usleep(300000);
	pthread_mutex_lock(&h.mtx);
	ck_assert_int_eq(h.began, HOLDERS);
	pthread_mutex_unlock(&h.mtx);

	/* The handle still works after the refusal. */
	ck_assert_int_eq(fs_inode_alloc(tx, NULL, S_IFREG | 0600, 0, &cred,
	    &ip), 0);
	ck_assert_int_eq(fs_trans_end(tx), 0);
	fs_iput(ip);

	pthread_mutex_lock(&h.mtx);
	h.release = true;
	pthread_cond_broadcast(&h.cv);
	pthread_mutex_unlock(&h.mtx);
	for (int i = 0; i < HOLDERS; i++)
		pthread_join(th[i], NULL);
	pthread_join(late, NULL);
	ck_assert_int_eq(h.began, HOLDERS + 1);
	ck_assert_int_eq(h.error, 0);
	ino = make_inode(h.fs, S_IFREG | 0644);
	ck_assert_int_eq(fs_journal_commit_all(h.fs), 0);
	flyfs_abandon(h.fs);
	h.fs = util_mount(bd, 3600);
	ck_assert_int_eq(flyfs_getattr(h.fs, ino, &a), 0);
	ck_assert_int_eq(flyfs_unmount(h.fs), 0);
	ck_assert_int_eq(util_check_image(bd, true, NULL), 0);
	pthread_cond_destroy(&h.cv);
	pthread_mutex_destroy(&h.mtx);
}
END_TEST

START_TEST(test_periodic_commit)
{
	struct flyfs *fs = util_mount(bd, 1);
	struct flyfs_attr a;
	uint64_t ino = make_inode(fs, S_IFREG | 0644);
	uint64_t c0 = stat_value(fs, "commits");

	for (int i = 0; i < 40 && stat_value(fs, "commits") == c0; i++)
		usleep(100000);
	ck_assert_uint_gt(stat_value(fs, "commits"), c0);
	flyfs_abandon(fs);
	fs = util_mount(bd, 1);
	ck_assert_int_eq(flyfs_getattr(fs, ino, &a), 0);
	ck_assert_int_eq(flyfs_unmount(fs), 0);
}
END_TEST

START_TEST(test_replay_refuses_corrupt_log)
{
	struct flyfs_sb_info sbi;
	struct flyfs_journal_super *js;
	struct flyfs_journal_desc *jd;
	char err[256] = "";
	struct flyfs *fs = util_mount(bd, 3600);
	uint64_t start, data;
	uint8_t *b;

	make_inode(fs, S_IFREG | 0644);
	ck_assert_int_eq(fs_journal_commit_all(fs), 0);
	flyfs_abandon(fs);

	ck_assert_int_eq(flyfs_sb_read(bd, 0, &sbi, err, sizeof(err)), 0);
	js = util_block(bd, sbi.journal_start);
	start = le64_get(js->js_start);
	ck_assert_uint_ne(start, 0);
	jd = util_block(bd, sbi.journal_start + start);
	ck_assert_uint_eq(le32_get(jd->jd_hdr.mb_magic), FLYFS_MB_JDESC);
	ck_assert_uint_ge(le32_get(jd->jd_count), 1);
	data = sbi.journal_start + start + 1;
	b = util_block(bd, data);
	b[100] ^= 0xff;
	ck_assert_int_eq(blockdev_pwrite(bd, b, 4096, (off_t)data * 4096), 0);
	ck_assert_int_eq(flyfs_mount_bdev(bd, NULL, &fs, err, sizeof(err)),
	    EUCLEAN);
	ck_assert_msg(strstr(err, "checksum") != NULL, "message: %s", err);
	blockdev_free_buf(b);
	blockdev_free_buf(jd);
	blockdev_free_buf(js);
}
END_TEST

START_TEST(test_orphan_reclaim_after_abandon)
{
	struct flyfs *fs = util_mount(bd, 3600);
	uint64_t ino = make_inode(fs, S_IFREG | 0644), keep;
	struct fs_inode *ip;
	struct fs_trans *tx;
	struct flyfs_attr a;
	struct statvfs sv0, sv1;

	keep = make_inode(fs, S_IFREG | 0644);
	ck_assert_int_eq(fs_journal_commit_all(fs), 0);
	ck_assert_int_eq(flyfs_statfs(fs, &sv0), 0);
	ck_assert_int_eq(flyfs_open(fs, ino, 0), 0);
	ck_assert_int_eq(fs_iget(fs, ino, &ip), 0);
	ck_assert_int_eq(fs_trans_begin(fs, FS_NLINK_BLOCKS, &tx), 0);
	ck_assert_int_eq(fs_inode_nlink_dec(tx, ip), 0);
	ck_assert_int_eq(fs_trans_end(tx), 0);
	fs_iput(ip);
	ck_assert_int_eq(fs_journal_commit_all(fs), 0);
	flyfs_abandon(fs);		/* killed with the file open */

	fs = util_mount(bd, 3600);
	ck_assert_int_eq(stat_value(fs, "orphans_reclaimed"), 1);
	ck_assert_int_eq(flyfs_getattr(fs, ino, &a), ENOENT);
	ck_assert_int_eq(flyfs_getattr(fs, keep, &a), 0);
	ck_assert_int_eq(flyfs_statfs(fs, &sv1), 0);
	ck_assert_uint_eq(sv1.f_ffree, sv0.f_ffree + 1);
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	ck_assert_int_eq(util_check_image(bd, true, NULL), 0);
}
END_TEST

START_TEST(test_fsync_sync)
{
	struct flyfs *fs = util_mount(bd, 3600);
	uint64_t ino = make_inode(fs, S_IFREG | 0644);
	struct flyfs_attr a, in;

	memset(&in, 0, sizeof(in));
	in.uid = 7;
	ck_assert_int_eq(flyfs_setattr(fs, ino, &in, FLYFS_SET_UID, NULL,
	    NULL), 0);
	ck_assert_int_eq(flyfs_fsync(fs, ino, false), 0);
	flyfs_abandon(fs);
	fs = util_mount(bd, 3600);
	ck_assert_int_eq(flyfs_getattr(fs, ino, &a), 0);
	ck_assert_int_eq(a.uid, 7);
	in.uid = 8;
	ck_assert_int_eq(flyfs_setattr(fs, ino, &in, FLYFS_SET_UID, NULL,
	    NULL), 0);
	ck_assert_int_eq(flyfs_sync(fs), 0);
	flyfs_abandon(fs);
	fs = util_mount(bd, 3600);
	ck_assert_int_eq(flyfs_getattr(fs, ino, &a), 0);
	ck_assert_int_eq(a.uid, 8);
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	ck_assert_int_eq(util_check_image(bd, true, NULL), 0);
}
END_TEST

/*
 * The inode file, the inode bitmap and the orphan file are extent trees:
 * 100k inodes, their creation interleaved with data allocations so the
 * inode file cannot stay one extent, across remounts, with every 97th
 * inode unlinked while open (orphans) to grow the orphan file too.
 */
START_TEST(test_inode_file_grows_100k)
{
	enum { N = 100000, ROUNDS = 4 };
	static uint64_t inos[N];
	struct flyfs_attr a;
	struct flyfs *fs = util_mount(bd, 3600);
	uint64_t used, nextents;
	int i = 0;

	for (int r = 0; r < ROUNDS; r++) {
		for (; i < (r + 1) * N / ROUNDS; i++) {
			inos[i] = make_inode(fs, S_IFREG | 0644);
			if (i % 500 == 0) {
				/* A data block right where the inode file
				 * would grow next. */
				struct fs_trans *tx;
				uint64_t blk;
				uint32_t got;

				ck_assert_int_eq(fs_trans_begin(fs, 4, &tx), 0);
				ck_assert_int_eq(fs_alloc_blocks(tx, 0, 1, 0,
				    &blk, &got), 0);
				ck_assert_int_eq(fs_trans_end(tx), 0);
			}
		}
		ck_assert_int_eq(fs_extent_count(fs->s_ifile, &nextents), 0);
		ck_assert_int_eq(flyfs_unmount(fs), 0);
		fs = util_mount(bd, 3600);
		for (int k = 0; k < i; k += 1009) {
			ck_assert_int_eq(flyfs_getattr(fs, inos[k], &a), 0);
			ck_assert_int_eq(a.mode, S_IFREG | 0644);
		}
	}
	ck_assert_uint_gt(nextents, FLYFS_INODE_EXT_ROOT_MAX);
	ck_assert_int_gt(fs_extent_depth(fs->s_ifile), 0);
	for (int k = 1; k < N; k++)
		ck_assert_uint_ne(inos[k], inos[k - 1]);
	ck_assert_uint_ge(fs->s_inode_count, N);

	/* Orphans: unlinked while referenced, so listed; then reclaimed. */
	{
		enum { NORPH = 1100 };	/* > two orphan blocks (506 slots each) */
		static struct fs_inode *held[NORPH];

		for (int k = 0; k < NORPH; k++) {
			struct fs_trans *tx;

			ck_assert_int_eq(fs_iget(fs, inos[k * 37], &held[k]),
			    0);
			ck_assert_int_eq(fs_trans_begin(fs, FS_NLINK_BLOCKS,
			    &tx), 0);
			ck_assert_int_eq(fs_inode_nlink_dec(tx, held[k]), 0);
			ck_assert_int_eq(fs_trans_end(tx), 0);
		}
		ck_assert_uint_ge(fs_i_size(fs->s_orphan),
		    2 * FLYFS_BLOCK_SIZE);
		for (int k = 0; k < NORPH; k++)
			fs_iput(held[k]);
		ck_assert_int_eq(flyfs_unmount(fs), 0);
		ck_assert_int_eq(util_check_image(bd, true, &used), 0);
		ck_assert_uint_eq(used, N - NORPH + 1);
	}
}
END_TEST

/*
 * The escape rule, byte for byte (docs/format.md section 11): a logged
 * block whose first word is a journal magic is stored with it zeroed and
 * the magic's bytes 2-3 in jt_flags bits 16-31.  A hand-made committed
 * transaction logging such a block must come back exactly, both through
 * fsck -n's in-memory replay and through the mount's replay.
 */
START_TEST(test_journal_escape_rule)
{
	static const uint32_t magics[] = { FLYFS_MB_JSUPER, FLYFS_MB_JDESC,
	    FLYFS_MB_JCOMMIT, FLYFS_MB_JREVOKE };
	struct flyfs_sb_info sbi;
	struct flyfs_journal_super *js;
	struct flyfs_fsck_opts fo;
	struct flyfs_fsck_result fr;
	struct flyfs *fs;
	char err[256] = "";
	uint8_t *blk, *want, *got;
	uint64_t seq, home, jb;
	uint32_t flags;

	/* The rule on its own. */
	for (unsigned i = 0; i < 4; i++) {
		uint8_t b[16], o[16];

		memset(b, 0xa5, sizeof(b));
		le32_set((le32_t *)(void *)b, magics[i]);
		memcpy(o, b, sizeof(o));
		flags = fs_jscan_escape(b);
		ck_assert_uint_eq(flags, FLYFS_JTAG_ESCAPED |
		    ((uint32_t)o[2] << 16) | ((uint32_t)o[3] << 24));
		ck_assert(b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0);
		ck_assert_int_eq(memcmp(b + 4, o + 4, 12), 0);
		fs_jscan_unescape(b, flags);
		ck_assert_int_eq(memcmp(b, o, 16), 0);
	}
	{
		uint8_t b[8] = { 'F', 'J', 'x', 'y', 1, 2, 3, 4 };

		ck_assert_uint_eq(fs_jscan_escape(b), 0);
		ck_assert_int_eq(b[0], 'F');
	}

	/* One committed transaction, by hand, at the start of the log. */
	ck_assert_int_eq(flyfs_sb_read(bd, 0, &sbi, err, sizeof(err)), 0);
	js = util_block(bd, sbi.journal_start);
	ck_assert_uint_eq(le64_get(js->js_start), 0);
	seq = le64_get(js->js_sequence);
	home = sbi.block_count - 1;		/* free: never allocated */
	jb = sbi.journal_start;
	want = util_block(bd, home);
	for (unsigned i = 0; i < 4096; i++)
		want[i] = (uint8_t)(i * 7 + 3);
	le32_set((le32_t *)(void *)want, FLYFS_MB_JCOMMIT);
	blk = util_block(bd, jb + 2);
	memcpy(blk, want, 4096);
	flags = fs_jscan_escape(blk) | FLYFS_JTAG_LAST;
	ck_assert_int_eq(blockdev_pwrite(bd, blk, 4096, (off_t)(jb + 2) * 4096),
	    0);
	{
		struct flyfs_journal_desc *d = util_block(bd, jb + 1);

		memset(d, 0, 4096);
		le32_set(&d->jd_count, 1);
		le64_set(&d->jd_tag[0].jt_blocknr, home);
		le32_set(&d->jd_tag[0].jt_flags, flags);
		le32_set(&d->jd_tag[0].jt_crc, flyfs_crc32c(sbi.csum_seed, blk,
		    4096));
		flyfs_mblock_seal(d, FLYFS_MB_JDESC, jb + 1, seq, 0,
		    sbi.csum_seed);
		ck_assert_int_eq(blockdev_pwrite(bd, d, 4096,
		    (off_t)(jb + 1) * 4096), 0);
		blockdev_free_buf(d);
	}
	{
		struct flyfs_journal_commit *c = util_block(bd, jb + 3);

		memset(c, 0, 4096);
		le32_set(&c->jc_blocks, 3);
		flyfs_mblock_seal(c, FLYFS_MB_JCOMMIT, jb + 3, seq, 0,
		    sbi.csum_seed);
		ck_assert_int_eq(blockdev_pwrite(bd, c, 4096,
		    (off_t)(jb + 3) * 4096), 0);
		blockdev_free_buf(c);
	}
	le64_set(&js->js_start, 1);
	flyfs_mblock_seal(js, FLYFS_MB_JSUPER, jb, le64_get(js->js_hdr.mb_txid),
	    0, sbi.csum_seed);
	ck_assert_int_eq(blockdev_pwrite(bd, js, 4096, (off_t)jb * 4096), 0);

	/* fsck -n sees one transaction, in memory only. */
	memset(&fo, 0, sizeof(fo));
	fo.mode = FLYFS_FSCK_NO;
	fo.force = true;
	ck_assert_int_eq(flyfs_fsck(bd, &fo, &fr), 0);
	ck_assert_uint_eq(fr.journal_txns, 1);
	ck_assert(fr.journal_in_memory);

	/* The mount replays it: the home block is back, magic included. */
	fs = util_mount(bd, 3600);
	ck_assert_int_eq(flyfs_unmount(fs), 0);
	got = util_block(bd, home);
	ck_assert_int_eq(memcmp(got, want, 4096), 0);
	blockdev_free_buf(got);
	blockdev_free_buf(want);
	blockdev_free_buf(blk);
	blockdev_free_buf(js);
}
END_TEST

static Suite *
fsinfra_suite(void)
{
	Suite *s = suite_create("fsinfra");
	TCase *tc;

#define ADD(name, fn) do {						\
	tc = tcase_create(name);					\
	tcase_add_checked_fixture(tc, setup, teardown);			\
	tcase_set_timeout(tc, 120);					\
	tcase_add_test(tc, fn);						\
	suite_add_tcase(s, tc);						\
} while (0)
	ADD("mount_fresh", test_mount_fresh);
	ADD("mount_refuses_garbage", test_mount_refuses_garbage);
	ADD("inode_alloc_remount", test_inode_alloc_remount);
	ADD("lookup_forget_counts", test_lookup_forget_counts);
	ADD("alloc_contiguous", test_alloc_contiguous);
	ADD("alloc_no_reuse_before_commit", test_alloc_no_reuse_before_commit);
	ADD("alloc_enospc", test_alloc_enospc);
	ADD("replay_after_abandon", test_replay_after_abandon);
	ADD("many_commits_wrap", test_many_commits_wrap);
	ADD("periodic_commit", test_periodic_commit);
	ADD("journal_nested_reserve", test_journal_nested_reserve);
	ADD("replay_refuses_corrupt_log", test_replay_refuses_corrupt_log);
	ADD("orphan_reclaim_after_abandon", test_orphan_reclaim_after_abandon);
	ADD("fsync_sync", test_fsync_sync);
	ADD("inode_file_grows_100k", test_inode_file_grows_100k);
	ADD("journal_escape_rule", test_journal_escape_rule);
#undef ADD
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(fsinfra_suite());
	int failed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
