/*
 * check_cache.c - the buffer cache (cache/vfs_bio*.c) over a RAM block
 * device: hit, miss, recycle, resize, dirty accounting, I/O errors, the
 * release flags, LOCKED and DIRTY_HW queues; and over an image file,
 * synchronous reads completed on the reading thread.  Each test gets a
 * fresh device and a fresh cache (checked fixture, fork mode).
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blockdev/blockdev.h"
#include "cache/buf.h"
#include "cache/bufstats.h"
#include "cache/vnode.h"
#include "image_util.h"

/* Counters are updated by other threads: read them atomically. */
#define G(x)		__atomic_load_n(&(x), __ATOMIC_RELAXED)

#define DEVSIZE		(16L << 20)
#define BSZ		4096

static struct blockdev *bd;
static struct vnode devvp;
static char image[UTIL_IMAGE_PATHLEN];	/* the image cases' file */

/* Fill block N of the device with a pattern derived from N. */
static void
pattern(char *p, long n, int len)
{
	int i;

	for (i = 0; i < len; i++)
		p[i] = (char)(n * 31 + i * 7 + 1);
}

static void
setup_cache_on(bool on_image, long cache_size, long nbufs, bool daemons)
{
	struct bufinit_args a = { 0 };
	char *blk;
	long n;

	if (on_image)
		bd = util_image_open(image, DEVSIZE);
	else
		ck_assert_int_eq(blockdev_open_ram(DEVSIZE, 4096, 0, 0, &bd),
		    0);
	blk = blockdev_alloc_buf(bd, BSZ);
	for (n = 0; n < 1024; n++) {
		pattern(blk, n, BSZ);
		ck_assert_int_eq(blockdev_pwrite(bd, blk, BSZ, n * BSZ), 0);
	}
	blockdev_free_buf(blk);
	a.cache_size = cache_size;
	a.nbuf = nbufs;
	a.nshards = 2;
	a.no_daemons = !daemons;
	ck_assert_int_eq(bufinit(&a), 0);
	vn_devvp_init(&devvp, bd);
}

static void
setup_cache(long cache_size, long nbufs, bool daemons)
{
	setup_cache_on(false, cache_size, nbufs, daemons);
}

static uint64_t
blockdev_get_stats_writes(struct blockdev *d)
{
	struct blockdev_stats st;

	blockdev_get_stats(d, &st);
	return st.writes;
}

static void
setup(void)
{
	setup_cache(4L << 20, 0, false);
}

static void
setup_daemons(void)
{
	setup_cache(4L << 20, 0, true);
}

static void
setup_small(void)
{
	setup_cache(1L << 20, 32, false);
}

static void
setup_mem(void)
{
	setup_cache(8L << 20, 0, false);
}

static void
setup_image(void)
{
	setup_cache_on(true, 4L << 20, 0, false);
}

static void
teardown(void)
{
	ck_assert_int_eq(vinvalbuf(&devvp, 0), 0);
	vn_uninit(&devvp);
	buf_shutdown();
	blockdev_close(bd);
}

static void
teardown_image(void)
{
	teardown();
	unlink(image);
}

static uint64_t
dev_own_reads(void)
{
	struct blockdev_stats st;

	blockdev_get_stats(bd, &st);
	return st.own_reads;
}

static uint64_t
dev_reads(void)
{
	struct blockdev_stats st;

	blockdev_get_stats(bd, &st);
	return st.reads;
}

static uint64_t
dev_writes(void)
{
	struct blockdev_stats st;

	blockdev_get_stats(bd, &st);
	return st.writes;
}

static void
check_block(struct buf *bp, long n)
{
	char want[BSZ];

	pattern(want, n, BSZ);
	ck_assert_mem_eq(bp->b_data, want, BSZ);
}


START_TEST(test_miss_then_hit)
{
	struct buf *bp;
	uint64_t r0 = dev_reads();

	ck_assert_int_eq(bread(&devvp, 5 * BSZ, BSZ, &bp), 0);
	check_block(bp, 5);
	ck_assert(bp->b_flags & B_CACHE);
	ck_assert_uint_eq(dev_reads(), r0 + 1);
	ck_assert_int_eq(G(bufcounters.cachemisses), 1);
	bqrelse(bp);

	ck_assert_int_eq(bread(&devvp, 5 * BSZ, BSZ, &bp), 0);
	check_block(bp, 5);
	ck_assert_uint_eq(dev_reads(), r0 + 1);
	ck_assert_int_eq(G(bufcounters.cachehits), 1);
	ck_assert_int_eq(G(bufspace), BSZ);
	brelse(bp);
	ck_assert(inmem(&devvp, 5 * BSZ));
}
END_TEST

START_TEST(test_recycle_empty_and_clean)
{
	struct buf *bp;
	long n;

	/* 32 headers, 1 MiB: headers run out before space. */
	for (n = 0; n < 200; n++) {
		ck_assert_int_eq(bread(&devvp, n * BSZ, BSZ, &bp), 0);
		check_block(bp, n);
		bqrelse(bp);
		ck_assert_int_le(G(bufspace), G(hibufspace));
	}
	ck_assert_int_gt(G(bufcounters.bufrecycles), 100);
	ck_assert_int_le(devvp.v_rbhash_tree.rbt_count, 32);
	/* Recycled memory of the same size is handed over, not reallocated. */
	ck_assert_int_gt(G(bufcounters.bufreusemem), 0);
	/* The most recent block is still cached. */
	ck_assert(inmem(&devvp, 199 * BSZ));
}
END_TEST

START_TEST(test_recycle_space)
{
	struct buf *bp;
	long n;

	/* 64 KiB buffers in a 1 MiB cache: space runs out first. */
	for (n = 0; n < 64; n++) {
		ck_assert_int_eq(bread(&devvp, n * 65536, 65536, &bp), 0);
		bqrelse(bp);
		ck_assert_int_le(G(bufspace), G(hibufspace));
	}
	ck_assert_int_gt(G(bufcounters.bufrecycles), 0);
}
END_TEST

/*
 * The bufmem thread populates buffer memory ahead of use, and not past
 * maxbufspace: a cache grown to its limit, and read through three times
 * more, has mapped at most maxbufspace plus one extent (2 MiB) of buffer
 * memory.  (Under AddressSanitizer buffer memory is plain malloc.)
 */
START_TEST(test_bufmem_ahead)
{
#if defined(__SANITIZE_ADDRESS__)
	ck_assert(1);
#else
	const long ext = 2L << 20;
	struct buf *bp;
	long n;
	int i;

	/* The first carve maps its extent itself and wakes the thread. */
	ck_assert_int_eq(bread(&devvp, 0, 65536, &bp), 0);
	bqrelse(bp);
	ck_assert_int_eq(G(bufcounters.bufmemsync), 1);
	for (i = 0; i < 300 && G(bufcounters.bufmemahead) == 0; i++)
		usleep(10000);
	ck_assert_int_gt(G(bufcounters.bufmemahead), 0);
	for (int round = 0; round < 3; round++) {
		for (n = 1; n < DEVSIZE / 65536; n++) {
			ck_assert_int_eq(bread(&devvp, n * 65536, 65536, &bp),
			    0);
			bqrelse(bp);
		}
	}
	ck_assert_int_gt(G(bufcounters.bufrecycles), 0);
	ck_assert_int_le((G(bufcounters.bufmemahead) +
	    G(bufcounters.bufmemsync)) * ext, G(maxbufspace) + ext);
#endif
}
END_TEST

START_TEST(test_allocbuf_resize)
{
	struct buf *bp;

	ck_assert_int_eq(bread(&devvp, 3 * BSZ, BSZ, &bp), 0);
	ck_assert_int_eq(G(bufspace), BSZ);
	allocbuf(bp, 2 * BSZ);
	ck_assert_int_eq(bp->b_bufsize, 2 * BSZ);
	ck_assert_int_eq(bp->b_bcount, 2 * BSZ);
	ck_assert_int_eq(G(bufspace), 2 * BSZ);
	ck_assert((bp->b_flags & B_CACHE) == 0);	/* new part not valid */
	check_block(bp, 3);				/* old part kept */
	allocbuf(bp, 1000);
	ck_assert_int_eq(bp->b_bufsize, 1024);		/* DEV_BSIZE rounding */
	ck_assert_int_eq(G(bufspace), 1024);
	allocbuf(bp, BSZ);
	ck_assert_int_eq(G(bufspace), BSZ);
	memset(bp->b_data, 0x33, BSZ);
	bdwrite(bp);
	ck_assert_int_eq(G(dirtybufspace), BSZ);
	/* Size change of a dirty buffer: written out, then re-created. */
	bp = getblk(&devvp, 3 * BSZ, 2 * BSZ, 0, 0);
	ck_assert_int_eq(G(dirtybufcount), 0);
	ck_assert_int_eq(G(dirtybufspace), 0);
	ck_assert_int_eq(bp->b_bcount, 2 * BSZ);
	ck_assert((bp->b_flags & B_CACHE) == 0);
	bp->b_flags |= B_INVAL;
	brelse(bp);
	ck_assert_int_eq(G(bufspace), 0);
}
END_TEST

START_TEST(test_dirty_accounting)
{
	struct buf *bp;
	char *want;
	long n;
	uint64_t w0 = dev_writes();

	for (n = 0; n < 10; n++) {
		bp = getblk(&devvp, (100 + n) * BSZ, BSZ, 0, 0);
		ck_assert((bp->b_flags & B_CACHE) == 0);
		memset(bp->b_data, (int)n, BSZ);
		if (n & 1)
			bheavy(bp);
		bdwrite(bp);
	}
	ck_assert_int_eq(G(dirtybufcount), 10);
	ck_assert_int_eq(G(dirtybufspace), 10 * BSZ);
	ck_assert_int_eq(G(dirtykvaspace), 10 * BSZ);
	ck_assert_int_eq(G(dirtybufcounthw), 5);
	ck_assert_int_eq(G(dirtybufspacehw), 5 * BSZ);
	ck_assert_int_eq(devvp.v_rbdirty_tree.rbt_count, 10);
	ck_assert_uint_eq(dev_writes(), w0);

	ck_assert_int_eq(vfsync(&devvp, MNT_WAIT), 0);
	ck_assert_uint_eq(dev_writes(), w0 + 10);
	ck_assert_int_eq(G(dirtybufcount), 0);
	ck_assert_int_eq(G(dirtybufspace), 0);
	ck_assert_int_eq(G(dirtykvaspace), 0);
	ck_assert_int_eq(G(dirtybufcounthw), 0);
	ck_assert_int_eq(G(dirtybufspacehw), 0);
	ck_assert_int_eq(G(runningbufspace), 0);
	ck_assert_int_eq(G(runningbufcount), 0);
	ck_assert_int_eq(devvp.v_rbdirty_tree.rbt_count, 0);
	ck_assert_int_eq(devvp.v_rbclean_tree.rbt_count, 10);

	want = blockdev_alloc_buf(bd, BSZ);
	ck_assert_int_eq(blockdev_pread(bd, want, BSZ, 107 * BSZ), 0);
	ck_assert_int_eq(want[0], 7);
	ck_assert_int_eq(want[BSZ - 1], 7);
	blockdev_free_buf(want);

	ck_assert_int_eq(vinvalbuf(&devvp, V_SAVE), 0);
	ck_assert_int_eq(G(bufspace), 0);
	ck_assert_int_eq(devvp.v_rbhash_tree.rbt_count, 0);
	ck_assert_int_eq(devvp.v_rbclean_tree.rbt_count, 0);
}
END_TEST

START_TEST(test_bundirty_by_undirty)
{
	struct buf *bp;

	bp = getblk(&devvp, 0, BSZ, 0, 0);
	vfs_bio_clrbuf(bp);
	bdirty(bp);
	ck_assert_int_eq(G(dirtybufcount), 1);
	bundirty(bp);
	ck_assert_int_eq(G(dirtybufcount), 0);
	ck_assert_int_eq(G(dirtybufspace), 0);
	bqrelse(bp);
	ck_assert_int_eq(devvp.v_rbclean_tree.rbt_count, 1);
}
END_TEST

START_TEST(test_write_error_redirties)
{
	struct blockdev_fault f = { 0 };
	struct buf *bp;

	bp = getblk(&devvp, 9 * BSZ, BSZ, 0, 0);
	memset(bp->b_data, 0x5a, BSZ);
	bdwrite(bp);

	f.f_mode = BLOCKDEV_FAULT_COUNT;
	f.f_ops = BLOCKDEV_FAULT_WRITES;
	f.f_nth = 1;
	f.f_count = 1;
	blockdev_set_fault(bd, &f);

	bp = getblk(&devvp, 9 * BSZ, BSZ, 0, 0);
	ck_assert(bp->b_flags & B_DELWRI);
	ck_assert_int_eq(bwrite(bp), EIO);
	/* Still dirty, still cached, data intact. */
	ck_assert_int_eq(G(dirtybufcount), 1);
	ck_assert_int_eq(G(bufcounters.writeerrors), 1);
	bp = findblk(&devvp, 9 * BSZ, 0);
	ck_assert_ptr_nonnull(bp);
	ck_assert(bp->b_flags & B_DELWRI);
	ck_assert_int_eq((unsigned char)bp->b_data[100], 0x5a);
	BUF_UNLOCK(bp);

	/* vfsync reports the async failure of a second try, then succeeds. */
	f.f_nth = 1;
	blockdev_set_fault(bd, &f);
	ck_assert_int_eq(vfsync(&devvp, MNT_WAIT), EIO);
	ck_assert_int_eq(G(dirtybufcount), 1);
	f.f_mode = BLOCKDEV_FAULT_OFF;
	blockdev_set_fault(bd, &f);
	ck_assert_int_eq(vfsync(&devvp, MNT_WAIT), 0);
	ck_assert_int_eq(G(dirtybufcount), 0);
}
END_TEST

START_TEST(test_read_error_invalid)
{
	struct blockdev_fault f = { 0 };
	struct buf *bp;

	f.f_mode = BLOCKDEV_FAULT_RANGE;
	f.f_ops = BLOCKDEV_FAULT_READS;
	f.f_offset = 4 * BSZ;
	f.f_len = BSZ;
	blockdev_set_fault(bd, &f);

	ck_assert_int_eq(bread(&devvp, 4 * BSZ, BSZ, &bp), EIO);
	ck_assert(bp->b_flags & B_ERROR);
	ck_assert((bp->b_flags & B_CACHE) == 0);
	brelse(bp);
	ck_assert_ptr_null(findblk(&devvp, 4 * BSZ, FINDBLK_TEST));
	ck_assert_int_eq(G(bufspace), 0);
	ck_assert_int_eq(G(bufcounters.readerrors), 1);

	f.f_mode = BLOCKDEV_FAULT_OFF;
	blockdev_set_fault(bd, &f);
	ck_assert_int_eq(bread(&devvp, 4 * BSZ, BSZ, &bp), 0);
	check_block(bp, 4);
	brelse(bp);
}
END_TEST

START_TEST(test_release_flags)
{
	struct buf *bp;
	uint64_t w0;
	int n;

	/* B_INVAL on a dirty buffer: dropped without a write. */
	bp = getblk(&devvp, 1 * BSZ, BSZ, 0, 0);
	vfs_bio_clrbuf(bp);
	bdwrite(bp);
	w0 = dev_writes();
	bp = getblk(&devvp, 1 * BSZ, BSZ, 0, 0);
	bp->b_flags |= B_INVAL;
	brelse(bp);
	ck_assert_uint_eq(dev_writes(), w0);
	ck_assert_int_eq(G(dirtybufcount), 0);
	ck_assert_int_eq(G(bufspace), 0);
	ck_assert_ptr_null(findblk(&devvp, 1 * BSZ, FINDBLK_TEST));

	/* B_NOCACHE and B_RELBUF on clean buffers: destroyed. */
	ck_assert_int_eq(bread(&devvp, 2 * BSZ, BSZ, &bp), 0);
	bp->b_flags |= B_NOCACHE;
	brelse(bp);
	ck_assert_ptr_null(findblk(&devvp, 2 * BSZ, FINDBLK_TEST));
	ck_assert_int_eq(bread(&devvp, 2 * BSZ, BSZ, &bp), 0);
	bp->b_flags |= B_RELBUF;
	brelse(bp);
	ck_assert_ptr_null(findblk(&devvp, 2 * BSZ, FINDBLK_TEST));

	/* B_RELBUF does not apply to a held buffer. */
	ck_assert_int_eq(bread(&devvp, 2 * BSZ, BSZ, &bp), 0);
	bqhold(bp);
	bp->b_flags |= B_RELBUF;
	brelse(bp);
	ck_assert_ptr_nonnull(findblk(&devvp, 2 * BSZ, FINDBLK_TEST));
	bqdrop(bp);

	/* B_DIRECT: a clean buffer is not kept, even by bqrelse ... */
	ck_assert_int_eq(bread(&devvp, 6 * BSZ, BSZ, &bp), 0);
	bp->b_flags |= B_DIRECT;
	bqrelse(bp);
	ck_assert_ptr_null(findblk(&devvp, 6 * BSZ, FINDBLK_TEST));
	/* ... and a written one goes once its write completes. */
	bp = getblk(&devvp, 7 * BSZ, BSZ, 0, 0);
	vfs_bio_clrbuf(bp);
	bp->b_flags |= B_DIRECT;
	ck_assert_int_eq(bwrite(bp), 0);
	ck_assert_ptr_null(findblk(&devvp, 7 * BSZ, FINDBLK_TEST));
	bp = getblk(&devvp, 8 * BSZ, BSZ, 0, 0);
	vfs_bio_clrbuf(bp);
	bp->b_flags |= B_DIRECT;
	bawrite(bp);
	/*
	 * Poll without a hold: a blocking findblk() takes a reference while it
	 * waits for the lock, and a held buffer is kept (B_RELBUF does not
	 * apply), so it could keep alive the very buffer it checks for.
	 */
	for (n = 0; n < 5000 && findblk(&devvp, 8 * BSZ, FINDBLK_TEST); n++)
		usleep(1000);
	ck_assert_ptr_null(findblk(&devvp, 8 * BSZ, FINDBLK_TEST));
	ck_assert_int_eq(G(dirtybufcount), 0);
}
END_TEST

START_TEST(test_locked_never_written_nor_recycled)
{
	struct buf *bp;
	uint64_t w0;
	long n;

	bp = getblk(&devvp, 0, BSZ, 0, 0);
	memset(bp->b_data, 0x11, BSZ);
	bp->b_flags |= B_LOCKED;
	bdwrite(bp);
	ck_assert_int_eq(G(dirtybufcount), 1);
	w0 = dev_writes();

	/* The daemons run hot (low marks at zero) ... */
	bufstat_set("lodirtybufspace", 0);
	bufstat_set("hidirtybufspace", 0);
	ck_assert_int_eq(buf_daemon_start(), 0);
	bd_speedup();
	/* ... and the cache is cycled many times over. */
	for (n = 1; n < 300; n++) {
		ck_assert_int_eq(bread(&devvp, n * BSZ, BSZ, &bp), 0);
		bqrelse(bp);
	}
	usleep(100000);
	ck_assert_uint_eq(dev_writes(), w0);
	bp = findblk(&devvp, 0, FINDBLK_TEST);
	ck_assert_ptr_nonnull(bp);
	ck_assert_int_eq(bp->b_qindex, BQUEUE_LOCKED);
	/* vfsync skips it too. */
	ck_assert_int_eq(vfsync(&devvp, MNT_WAIT), 0);
	ck_assert_uint_eq(dev_writes(), w0);

	/* "Commit": release it to DIRTY; now it is written home. */
	regetblk(bp);
	bp->b_flags &= ~B_LOCKED;
	bqrelse(bp);
	ck_assert_int_eq(vfsync(&devvp, MNT_WAIT), 0);
	ck_assert_uint_eq(dev_writes(), w0 + 1);
	ck_assert_int_eq(G(dirtybufcount), 0);
}
END_TEST

START_TEST(test_dirty_hw_by_daemon_hw)
{
	struct buf *bp;
	long n;
	int i;

	for (n = 0; n < 20; n++) {
		bp = getblk(&devvp, n * BSZ, BSZ, (n & 1) ? GETBLK_BHEAVY : 0,
		    0);
		memset(bp->b_data, (int)n, BSZ);
		bdwrite(bp);
	}
	ck_assert_int_eq(G(dirtybufcounthw), 10);
	bufstat_set("lodirtybufspace", 0);
	bd_speedup();
	for (i = 0; i < 5000 && G(dirtybufcount); i++)
		usleep(1000);
	ck_assert_int_eq(G(dirtybufcount), 0);
	ck_assert_int_eq(G(bufcounters.flushes), 20);
	ck_assert_int_eq(G(bufcounters.flushes_hw), 10);
}
END_TEST

START_TEST(test_shutdown_writes_everything)
{
	struct buf *bp;
	char *got;
	long n;

	for (n = 0; n < 16; n++) {
		bp = getblk(&devvp, (200 + n) * BSZ, BSZ, 0, 0);
		memset(bp->b_data, 0x40 + (int)n, BSZ);
		if (n & 1)
			bheavy(bp);
		bdwrite(bp);
	}
	ck_assert_int_eq(buf_shutdown(), 0);
	got = blockdev_alloc_buf(bd, BSZ);
	for (n = 0; n < 16; n++) {
		ck_assert_int_eq(blockdev_pread(bd, got, BSZ,
		    (200 + n) * BSZ), 0);
		ck_assert_int_eq(got[17], 0x40 + n);
	}
	blockdev_free_buf(got);
	ck_assert_int_eq(G(bufspace), 0);
	ck_assert_int_eq(G(dirtybufcount), 0);
	/* Start again so the fixture's teardown has a cache to stop. */
	ck_assert_int_eq(bufinit(NULL), 0);
	vn_uninit(&devvp);
	vn_devvp_init(&devvp, bd);
}
END_TEST

/* buf_abandon: a simulated crash writes nothing, LOCKED or dirty. */
START_TEST(test_abandon_writes_nothing)
{
	struct buf *bp;
	char *got;
	uint64_t writes0 = blockdev_get_stats_writes(bd);
	long n;

	for (n = 0; n < 8; n++) {
		bp = getblk(&devvp, (300 + n) * BSZ, BSZ, 0, 0);
		memset(bp->b_data, 0x60 + (int)n, BSZ);
		if (n & 1)
			bp->b_flags |= B_LOCKED;
		bdwrite(bp);
	}
	buf_abandon();
	got = blockdev_alloc_buf(bd, BSZ);
	for (n = 0; n < 8; n++) {
		ck_assert_int_eq(blockdev_pread(bd, got, BSZ,
		    (300 + n) * BSZ), 0);
		ck_assert_int_ne(got[17], 0x60 + n);
	}
	blockdev_free_buf(got);
	ck_assert_uint_eq(blockdev_get_stats_writes(bd), writes0);
	/* Start again so the fixture's teardown has a cache to stop. */
	ck_assert_int_eq(bufinit(NULL), 0);
	vn_uninit(&devvp);
	vn_devvp_init(&devvp, bd);
}
END_TEST

START_TEST(test_breadn_readahead)
{
	struct buf *bp;
	off_t ra[3] = { 11 * BSZ, 12 * BSZ, 13 * BSZ };
	int rasz[3] = { BSZ, BSZ, BSZ };
	uint64_t r0 = dev_reads();
	int i;

	ck_assert_int_eq(breadn(&devvp, 10 * BSZ, BSZ, ra, rasz, 3, &bp), 0);
	check_block(bp, 10);
	bqrelse(bp);
	ck_assert_int_eq(G(bufcounters.readahead), 3);
	bio_track_wait(&devvp.v_track_read, 0, 0);
	ck_assert_uint_eq(dev_reads(), r0 + 4);
	for (i = 11; i <= 13; i++) {
		ck_assert_int_eq(bread(&devvp, i * BSZ, BSZ, &bp), 0);
		check_block(bp, i);
		bqrelse(bp);
	}
	ck_assert_uint_eq(dev_reads(), r0 + 4);
}
END_TEST

/*
 * On an image, a synchronous read is completed by the thread waiting in
 * biowait() (BLOCKDEV_REQ_WAITED); read-ahead still completes on the
 * device's thread.  Either way every read returns the device's bytes.
 */
START_TEST(test_image_sync_reads)
{
	struct buf *bp;
	off_t ra[2] = { 21 * BSZ, 22 * BSZ };
	int rasz[2] = { BSZ, BSZ };
	uint64_t r0 = dev_reads(), o0 = dev_own_reads();

	ck_assert_int_eq(bread(&devvp, 20 * BSZ, BSZ, &bp), 0);
	check_block(bp, 20);
	bqrelse(bp);
	ck_assert_uint_eq(dev_reads(), r0 + 1);
	ck_assert_uint_eq(dev_own_reads(), o0 + 1);
	ck_assert(!blockdev_reap_own());

	/* breadn: the wanted block here, the two read-ahead blocks not. */
	ck_assert_int_eq(breadn(&devvp, 30 * BSZ, BSZ, ra, rasz, 2, &bp), 0);
	check_block(bp, 30);
	bqrelse(bp);
	bio_track_wait(&devvp.v_track_read, 0, 0);
	ck_assert_uint_eq(dev_reads(), r0 + 4);
	ck_assert_uint_le(dev_own_reads(), o0 + 2);
	ck_assert(!blockdev_reap_own());
	ck_assert_int_eq(bread(&devvp, 21 * BSZ, BSZ, &bp), 0);
	check_block(bp, 21);
	bqrelse(bp);
	ck_assert_uint_eq(dev_reads(), r0 + 4);
}
END_TEST

/* Four threads read the same 256 blocks, in different orders. */
#define IR_THREADS	4
#define IR_BLOCKS	256

static void *
image_reader(void *arg)
{
	long t = (long)(intptr_t)arg, i, n;
	struct buf *bp;
	char want[BSZ];

	for (i = 0; i < IR_BLOCKS; i++) {
		n = (i * 37 + t * 61) % IR_BLOCKS;
		if (bread(&devvp, n * BSZ, BSZ, &bp) != 0)
			return NULL;
		pattern(want, n, BSZ);
		if (memcmp(bp->b_data, want, BSZ) != 0) {
			brelse(bp);
			return NULL;
		}
		bqrelse(bp);
	}
	return arg;
}

START_TEST(test_image_concurrent_reads)
{
	pthread_t th[IR_THREADS];
	void *ret;
	long t;

	for (t = 0; t < IR_THREADS; t++)
		ck_assert_int_eq(pthread_create(&th[t], NULL, image_reader,
		    (void *)(intptr_t)(t + 1)), 0);
	for (t = 0; t < IR_THREADS; t++) {
		ck_assert_int_eq(pthread_join(th[t], &ret), 0);
		ck_assert_ptr_eq(ret, (void *)(intptr_t)(t + 1));
	}
	ck_assert_uint_le(dev_reads(), 1024 + IR_BLOCKS);
	ck_assert_uint_gt(dev_own_reads(), 0);
}
END_TEST

static Suite *
cache_suite(void)
{
	Suite *s = suite_create("cache");
	TCase *tc;

	tc = tcase_create("paths");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_miss_then_hit);
	tcase_add_test(tc, test_allocbuf_resize);
	tcase_add_test(tc, test_dirty_accounting);
	tcase_add_test(tc, test_bundirty_by_undirty);
	tcase_add_test(tc, test_write_error_redirties);
	tcase_add_test(tc, test_read_error_invalid);
	tcase_add_test(tc, test_release_flags);
	tcase_add_test(tc, test_breadn_readahead);
	suite_add_tcase(s, tc);

	tc = tcase_create("recycle");
	tcase_add_checked_fixture(tc, setup_small, teardown);
	tcase_add_test(tc, test_recycle_empty_and_clean);
	tcase_add_test(tc, test_recycle_space);
	tcase_add_test(tc, test_locked_never_written_nor_recycled);
	suite_add_tcase(s, tc);

	tc = tcase_create("memory");
	tcase_add_checked_fixture(tc, setup_mem, teardown);
	tcase_add_test(tc, test_bufmem_ahead);
	suite_add_tcase(s, tc);

	tc = tcase_create("daemons");
	tcase_add_checked_fixture(tc, setup_daemons, teardown);
	tcase_add_test(tc, test_dirty_hw_by_daemon_hw);
	tcase_add_test(tc, test_shutdown_writes_everything);
	tcase_add_test(tc, test_abandon_writes_nothing);
	suite_add_tcase(s, tc);

	tc = tcase_create("image");
	tcase_add_checked_fixture(tc, setup_image, teardown_image);
	tcase_add_test(tc, test_image_sync_reads);
	tcase_add_test(tc, test_image_concurrent_reads);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(cache_suite());
	int nfailed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	nfailed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nfailed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
