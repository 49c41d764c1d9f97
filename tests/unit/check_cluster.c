/*
 * check_cluster.c - tests of cache/vfs_cluster.c: write clustering
 * (cluster_awrite, cluster_write) and read-ahead (cluster_read).
 *
 * Each test gets a fresh RAM block device, a fresh cache (bufinit without
 * daemons, so nothing is flushed behind the test's back) and one test
 * vnode whose bmap is the identity, optionally with a jump in device
 * offsets (gap_at / gap_len) to make logically adjacent blocks
 * non-contiguous on the device.  Device I/O is counted with
 * blockdev_get_stats and inspected with the write log.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/blockdev.h"
#include "cache/bio.h"
#include "cache/buf.h"
#include "cache/bufstats.h"
#include "cache/vfs_cluster.h"
#include "cache/vnode.h"

/* The cache's counters are updated atomically by other threads. */
#define ALD(v)		__atomic_load_n(&(v), __ATOMIC_RELAXED)

#define BS		4096
#define DEVSIZE		(32L << 20)
#define CACHESIZE	(64L << 20)

struct tvn {
	struct vnode	vn;
	struct blockdev	*bd;
	off_t		gap_at;		/* logical offset where the jump is */
	off_t		gap_len;	/* device offset jump (0: none) */
};

static struct blockdev *bd;
static struct tvn tv;
static struct vnode *vp = &tv.vn;

static int
t_bmap(struct vnode *v, off_t loffset, off_t *doffsetp, int *runp,
    int *runb, buf_cmd_t cmd)
{
	struct tvn *t = v->v_data;

	(void)cmd;
	*doffsetp = loffset;
	if (t->gap_len && loffset >= t->gap_at)
		*doffsetp += t->gap_len;
	if (runp) {
		if (t->gap_len && loffset < t->gap_at &&
		    t->gap_at - loffset < MAXPHYS)
			*runp = (int)(t->gap_at - loffset);
		else
			*runp = MAXPHYS;
	}
	if (runb)
		*runb = 0;
	return 0;
}

static int
t_strategy(struct vnode *v, struct bio *bio)
{
	struct tvn *t = v->v_data;
	struct bio *nbio = push_bio(bio);

	if (nbio->bio_offset == NOOFFSET)
		t_bmap(v, bio->bio_offset, &nbio->bio_offset, NULL, NULL,
		    bio->bio_buf->b_cmd);
	dev_strategy(t->bd, nbio);
	return 0;
}

static const struct vop_ops t_ops = {
	.vop_strategy = t_strategy,
	.vop_bmap = t_bmap,
};

static void
setup(void)
{
	struct bufinit_args a = { .cache_size = CACHESIZE, .no_daemons = true };

	ck_assert_int_eq(blockdev_open_ram(DEVSIZE, 4096, 0, 0, &bd), 0);
	ck_assert_int_eq(bufinit(&a), 0);
	memset(&tv, 0, sizeof(tv));
	tv.bd = bd;
	vn_init(vp, &t_ops, &tv);
	vp->v_flag |= VCLUSTEROK;
}

static void
teardown(void)
{
	struct blockdev_fault off = { .f_mode = BLOCKDEV_FAULT_OFF };

	blockdev_set_fault(bd, &off);
	vinvalbuf(vp, V_SAVE);
	vn_uninit(vp);
	buf_shutdown();
	blockdev_close(bd);
}

/* ---- helpers ---------------------------------------------------------- */

static uint32_t
pattern(long blk, int i, uint32_t seed)
{
	return ((uint32_t)blk << 12) ^ (uint32_t)i ^ seed;
}

static void
fill(void *p, long blk, uint32_t seed)
{
	uint32_t *w = p;

	for (int i = 0; i < BS / 4; i++)
		w[i] = pattern(blk, i, seed);
}

static bool
check(const void *p, long blk, uint32_t seed)
{
	const uint32_t *w = p;

	for (int i = 0; i < BS / 4; i++)
		if (w[i] != pattern(blk, i, seed))
			return false;
	return true;
}

static void
dirty_block(long blk, bool clusterok, uint32_t seed)
{
	struct buf *bp = getblk(vp, blk * BS, BS, 0, 0);

	ck_assert_ptr_nonnull(bp);
	fill(bp->b_data, blk, seed);
	bp->b_flags |= B_CACHE;
	if (clusterok)
		bp->b_flags |= B_CLUSTEROK;
	bdwrite(bp);
}

/* Write the dirty buffer at BLK through cluster_awrite. */
static int
flush_at(long blk)
{
	struct buf *bp = getblk(vp, blk * BS, BS, 0, 0);

	ck_assert_ptr_nonnull(bp);
	ck_assert(bp->b_flags & B_DELWRI);
	return cluster_awrite(bp);
}

static void
wait_writes(void)
{
	bio_track_wait(&vp->v_track_write, 0, 0);
}

static void
wait_reads(void)
{
	bio_track_wait(&vp->v_track_read, 0, 0);
}

static uint64_t
dev_writes(void)
{
	struct blockdev_stats st;

	blockdev_get_stats(bd, &st);
	return st.writes;
}

static void
dev_reads(uint64_t *n, uint64_t *bytes)
{
	struct blockdev_stats st;

	blockdev_get_stats(bd, &st);
	*n = st.reads;
	*bytes = st.read_bytes;
}

/* Device block at DOFF holds BLK's data with SEED. */
static bool
device_has(off_t doff, long blk, uint32_t seed)
{
	void *p = blockdev_alloc_buf(bd, BS);
	bool ok;

	ck_assert_int_eq(blockdev_pread(bd, p, BS, doff), 0);
	ok = check(p, blk, seed);
	blockdev_free_buf(p);
	return ok;
}

/* Flags of the buffer at BLK, taken under its lock; -1 if not cached. */
static long
flags_of(long blk)
{
	struct buf *bp = findblk(vp, blk * BS, 0);
	long f;

	if (bp == NULL)
		return -1;
	f = bp->b_flags;
	BUF_UNLOCK(bp);
	return f;
}

/*
 * The write log holds exactly the NW writes (offset, length) of WANT, in
 * any order (they complete concurrently).
 */
static void
expect_writes(const off_t want[][2], size_t nw)
{
	struct blockdev_wlog_entry e;
	bool seen[16] = { false };

	ck_assert_uint_eq(blockdev_wlog_count(bd), nw);
	for (size_t k = 0; k < nw; k++) {
		size_t j;

		ck_assert_int_eq(blockdev_wlog_get(bd, k, &e), 0);
		for (j = 0; j < nw; j++)
			if (!seen[j] && want[j][0] == e.e_offset &&
			    (size_t)want[j][1] == e.e_len)
				break;
		ck_assert_msg(j < nw, "unexpected write %jd+%zu",
		    (intmax_t)e.e_offset, e.e_len);
		seen[j] = true;
	}
}

/* ---- write clustering ------------------------------------------------- */

START_TEST(test_contig_one_write)
{
	const int n = 16;
	uint64_t w0;
	long cw0 = ALD(bufcounters.clusterwrites), cb0 = ALD(bufcounters.clusterbufs);

	for (int i = 0; i < n; i++)
		dirty_block(i, true, 0xa5);
	ck_assert_int_eq(ALD(dirtybufcount), n);
	w0 = dev_writes();
	blockdev_wlog_start(bd);
	ck_assert_int_eq(flush_at(0), n * BS);
	wait_writes();

	ck_assert_uint_eq(dev_writes() - w0, 1);
	ck_assert_uint_eq(blockdev_wlog_count(bd), 1);
	{
		struct blockdev_wlog_entry e;

		ck_assert_int_eq(blockdev_wlog_get(bd, 0, &e), 0);
		ck_assert_int_eq(e.e_offset, 0);
		ck_assert_uint_eq(e.e_len, (size_t)n * BS);
	}
	for (int i = 0; i < n; i++) {
		ck_assert(device_has((off_t)i * BS, i, 0xa5));
		ck_assert((flags_of(i) & B_DELWRI) == 0);
	}
	ck_assert_int_eq(ALD(dirtybufcount), 0);
	ck_assert_int_eq(ALD(dirtybufspace), 0);
	ck_assert_int_eq(ALD(runningbufspace), 0);
	ck_assert_int_eq(ALD(bufcounters.clusterwrites) - cw0, 1);
	ck_assert_int_eq(ALD(bufcounters.clusterbufs) - cb0, n);
}
END_TEST

START_TEST(test_logical_gap_splits)
{
	uint64_t w0;

	static const off_t want[][2] = { { 0, 6 * BS }, { 7 * BS, 6 * BS } };

	/*
	 * 0..5 and 7..12: block 6 is not dirty.  As in the kernel,
	 * cluster_awrite writes every dirty buffer of the MAXPHYS window
	 * that starts at its buffer: here two clusters.
	 */
	for (int i = 0; i <= 12; i++)
		if (i != 6)
			dirty_block(i, true, 0x11);
	w0 = dev_writes();
	blockdev_wlog_start(bd);
	ck_assert_int_eq(flush_at(0), 12 * BS);
	wait_writes();
	ck_assert_uint_eq(dev_writes() - w0, 2);
	expect_writes(want, 2);
	for (int i = 0; i <= 12; i++)
		if (i != 6)
			ck_assert(device_has((off_t)i * BS, i, 0x11));
	ck_assert_int_eq(flags_of(6), -1);
	ck_assert_int_eq(ALD(dirtybufcount), 0);
}
END_TEST

START_TEST(test_vfsync_clusters)
{
	static const off_t want[][2] = { { 0, 6 * BS }, { 7 * BS, 6 * BS } };

	/* vfsync (MNT_WAIT) goes through cluster_awrite too. */
	for (int i = 0; i <= 12; i++)
		if (i != 6)
			dirty_block(i, true, 0x12);
	blockdev_wlog_start(bd);
	ck_assert_int_eq(vfsync(vp, MNT_WAIT), 0);
	expect_writes(want, 2);
	for (int i = 0; i <= 12; i++)
		if (i != 6)
			ck_assert(device_has((off_t)i * BS, i, 0x12));
	ck_assert_int_eq(ALD(dirtybufcount), 0);
}
END_TEST

/* A cached, clean, fully valid buffer at BLK. */
static void
clean_block(long blk, uint32_t seed)
{
	struct buf *bp = getblk(vp, blk * BS, BS, 0, 0);

	ck_assert_ptr_nonnull(bp);
	fill(bp->b_data, blk, seed);
	bp->b_flags |= B_CACHE | B_CLUSTEROK;
	bqrelse(bp);
}

START_TEST(test_clean_neighbours_skipped)
{
	const long win = MAXPHYS / BS;
	static const off_t want[][2] = {
		{ 0, BS }, { 5 * BS, 2 * BS }, { 30 * BS, BS },
		{ (MAXPHYS / BS - 1) * BS, BS },
	};

	/*
	 * The window of cluster_awrite(0) is full of clean cached buffers,
	 * with dirty ones at 0, 5-6, 30 and the window's last block; one
	 * more is dirty just past the window.  The search of the dirty tree
	 * that replaces the seed's probe of each block must find the same
	 * buffers: the four in the window, in three clusters and one single,
	 * and not the one past it nor any clean one.
	 */
	for (long i = 0; i <= win; i++)
		clean_block(i, 0x20);
	dirty_block(0, true, 0x21);
	dirty_block(5, true, 0x21);
	dirty_block(6, true, 0x21);
	dirty_block(30, true, 0x21);
	dirty_block(win - 1, true, 0x21);
	dirty_block(win, true, 0x21);
	blockdev_wlog_start(bd);
	ck_assert_int_eq(flush_at(0), 5 * BS);
	wait_writes();
	expect_writes(want, 4);
	ck_assert((flags_of(win) & B_DELWRI) != 0);
	/*
	 * A write done alone (win - 1) drops its track before bpdone: its
	 * lock, which flags_of waits for, says when it is finished.
	 */
	for (long i = 0; i < win; i++) {
		long f = flags_of(i);

		ck_assert_int_ne(f, -1);
		ck_assert((f & B_DELWRI) == 0);
		if (i == 0 || i == 5 || i == 6 || i == 30 || i == win - 1)
			ck_assert(device_has((off_t)i * BS, i, 0x21));
	}
	ck_assert_int_eq(ALD(dirtybufcount), 1);
	ck_assert_int_eq(vfsync(vp, MNT_WAIT), 0);
	ck_assert(device_has((off_t)win * BS, win, 0x21));
	ck_assert_int_eq(ALD(dirtybufcount), 0);
}
END_TEST

START_TEST(test_device_gap_splits)
{
	uint64_t w0;

	/* Logically contiguous, but block 4 on jumps 1 MiB on the device. */
	tv.gap_at = 4 * BS;
	tv.gap_len = 1 << 20;
	for (int i = 0; i < 8; i++)
		dirty_block(i, true, 0x22);
	const off_t want[][2] = { { 0, 4 * BS }, { 4 * BS + tv.gap_len, 4 * BS } };

	w0 = dev_writes();
	blockdev_wlog_start(bd);
	ck_assert_int_eq(flush_at(0), 8 * BS);
	wait_writes();
	ck_assert_uint_eq(dev_writes() - w0, 2);
	expect_writes(want, 2);
	for (int i = 0; i < 8; i++) {
		off_t doff = (off_t)i * BS + (i >= 4 ? tv.gap_len : 0);

		ck_assert(device_has(doff, i, 0x22));
	}
	ck_assert_int_eq(ALD(dirtybufcount), 0);
}
END_TEST

START_TEST(test_not_clusterok_alone)
{
	uint64_t w0;

	for (int i = 0; i < 8; i++)
		dirty_block(i, false, 0x33);
	w0 = dev_writes();
	ck_assert_int_eq(vfsync(vp, MNT_WAIT), 0);
	ck_assert_uint_eq(dev_writes() - w0, 8);
	for (int i = 0; i < 8; i++)
		ck_assert(device_has((off_t)i * BS, i, 0x33));
}
END_TEST

START_TEST(test_not_clusterok_ends_cluster)
{
	uint64_t w0;

	/* 0..3 clusterable, 4 not, 5..7 clusterable. */
	for (int i = 0; i < 8; i++)
		dirty_block(i, i != 4, 0x44);
	static const off_t want[][2] = {
		{ 0, 4 * BS }, { 4 * BS, BS }, { 5 * BS, 3 * BS } };

	w0 = dev_writes();
	blockdev_wlog_start(bd);
	ck_assert_int_eq(flush_at(0), 8 * BS);
	wait_writes();
	ck_assert_uint_eq(dev_writes() - w0, 3);
	expect_writes(want, 3);
	/* Block 4 went alone: its track ends before bpdone (as in the
	 * seed), so wait for its lock before counting. */
	ck_assert_int_eq(flags_of(4) & B_DELWRI, 0);
	ck_assert_int_eq(ALD(dirtybufcount), 0);
	for (int i = 0; i < 8; i++)
		ck_assert(device_has((off_t)i * BS, i, 0x44));
}
END_TEST

START_TEST(test_novclusterok_vnode)
{
	uint64_t w0;

	vp->v_flag &= ~VCLUSTEROK;
	for (int i = 0; i < 4; i++)
		dirty_block(i, true, 0x55);
	w0 = dev_writes();
	ck_assert_int_eq(flush_at(0), BS);
	wait_writes();
	ck_assert_uint_eq(dev_writes() - w0, 1);
	/* A lone write: wait for its lock (see above) before counting. */
	ck_assert_int_eq(flags_of(0) & B_DELWRI, 0);
	ck_assert_int_eq(ALD(dirtybufcount), 3);
}
END_TEST

START_TEST(test_maxphys_cap)
{
	const int n = MAXPHYS / BS + 44;
	struct blockdev_wlog_entry e;
	uint64_t w0;

	for (int i = 0; i < n; i++)
		dirty_block(i, true, 0x66);
	w0 = dev_writes();
	blockdev_wlog_start(bd);
	ck_assert_int_eq(vfsync(vp, MNT_WAIT), 0);
	ck_assert_uint_eq(dev_writes() - w0, 2);
	ck_assert_uint_eq(blockdev_wlog_count(bd), 2);
	for (size_t k = 0; k < 2; k++) {
		ck_assert_int_eq(blockdev_wlog_get(bd, k, &e), 0);
		ck_assert_uint_le(e.e_len, MAXPHYS);
		if (e.e_offset == 0)
			ck_assert_uint_eq(e.e_len, MAXPHYS);
		else
			ck_assert_uint_eq(e.e_len, 44 * BS);
	}
	for (int i = 0; i < n; i++)
		ck_assert(device_has((off_t)i * BS, i, 0x66));
	ck_assert_int_eq(ALD(dirtybufcount), 0);
}
END_TEST

START_TEST(test_failed_cluster_redirties)
{
	const int n = 8;
	struct blockdev_fault f = {
		.f_mode = BLOCKDEV_FAULT_COUNT,
		.f_ops = BLOCKDEV_FAULT_WRITES,
		.f_nth = 1,
		.f_count = 1,
	};
	struct blockdev_fault off = { .f_mode = BLOCKDEV_FAULT_OFF };
	uint64_t w0;

	for (int i = 0; i < n; i++)
		dirty_block(i, true, 0x77);
	blockdev_set_fault(bd, &f);
	ck_assert_int_eq(flush_at(0), n * BS);
	wait_writes();
	ck_assert_uint_eq(blockdev_faults_injected(bd), 1);

	/* Every child is dirty again, with its data, and accounted. */
	ck_assert_int_eq(ALD(dirtybufcount), n);
	ck_assert_int_eq(ALD(dirtybufspace), (long)n * BS);
	ck_assert_int_eq(ALD(runningbufspace), 0);
	for (int i = 0; i < n; i++) {
		struct buf *bp = findblk(vp, (off_t)i * BS, 0);

		ck_assert_ptr_nonnull(bp);
		ck_assert(bp->b_flags & B_DELWRI);
		ck_assert(bp->b_flags & B_CACHE);
		ck_assert(check(bp->b_data, i, 0x77));
		BUF_UNLOCK(bp);
		ck_assert(!device_has((off_t)i * BS, i, 0x77));
	}

	/* The retry succeeds, again as one write. */
	blockdev_set_fault(bd, &off);
	w0 = dev_writes();
	ck_assert_int_eq(vfsync(vp, MNT_WAIT), 0);
	ck_assert_uint_eq(dev_writes() - w0, 1);
	for (int i = 0; i < n; i++)
		ck_assert(device_has((off_t)i * BS, i, 0x77));
	ck_assert_int_eq(ALD(dirtybufcount), 0);
}
END_TEST

START_TEST(test_cluster_write_behind)
{
	const int run = MAXPHYS / BS;
	const int n = run + 44;
	struct blockdev_wlog_entry e;
	long save = write_behind_minfilesize;
	uint64_t w0;

	write_behind_minfilesize = 0;
	w0 = dev_writes();
	blockdev_wlog_start(bd);
	for (int i = 0; i < n; i++) {
		struct buf *bp = getblk(vp, (off_t)i * BS, BS, 0, 0);

		fill(bp->b_data, i, 0x88);
		bp->b_flags |= B_CACHE | B_CLUSTEROK;
		cluster_write(bp, (off_t)(i + 1) * BS, BS, IO_SEQMAX);
	}
	wait_writes();
	write_behind_minfilesize = save;

	/* The first full run went out by itself, as one write. */
	ck_assert_uint_eq(dev_writes() - w0, 1);
	ck_assert_int_eq(blockdev_wlog_get(bd, 0, &e), 0);
	ck_assert_int_eq(e.e_offset, 0);
	ck_assert_uint_eq(e.e_len, MAXPHYS);
	ck_assert_int_eq(ALD(dirtybufcount), n - run);
	for (int i = 0; i < run; i++)
		ck_assert(device_has((off_t)i * BS, i, 0x88));
}
END_TEST

START_TEST(test_cluster_write_random_delays)
{
	uint64_t w0 = dev_writes();

	/* A non-sequential writer (seqcount 0) leaves everything dirty. */
	for (int i = 0; i < 64; i++) {
		long blk = (i * 37) % 512;
		struct buf *bp = getblk(vp, blk * BS, BS, 0, 0);

		fill(bp->b_data, blk, 0x99);
		bp->b_flags |= B_CACHE | B_CLUSTEROK;
		cluster_write(bp, 512L * BS, BS, 0);
	}
	wait_writes();
	ck_assert_uint_eq(dev_writes() - w0, 0);
	ck_assert_int_eq(ALD(dirtybufcount), 64);
}
END_TEST

/* ---- read-ahead ------------------------------------------------------- */

static void
prefill_device(long nblk, uint32_t seed)
{
	void *p = blockdev_alloc_buf(bd, BS);

	for (long i = 0; i < nblk; i++) {
		fill(p, i, seed);
		ck_assert_int_eq(blockdev_pwrite(bd, p, BS, i * BS), 0);
	}
	blockdev_free_buf(p);
}

START_TEST(test_sequential_readahead)
{
	const long n = 512;
	const off_t filesize = n * BS;
	struct cluster_seq cs;
	uint64_t r0, b0, r1, b1;
	long ra0 = ALD(bufcounters.readahead);
	long cr0 = ALD(bufcounters.clusterreads);

	prefill_device(n, 0xbeef);
	cluster_seq_init(&cs);
	dev_reads(&r0, &b0);
	for (long j = 0; j < n; j++) {
		struct buf *bp;
		int seq;

		if (j > 0) {
			/* Already cached before the reader asks for it. */
			wait_reads();
			ck_assert_msg((flags_of(j) & B_CACHE) && flags_of(j) != -1,
			    "block %ld not read ahead", j);
		}
		seq = sequential_heuristic(&cs, j * BS, BS);
		ck_assert_int_eq(cluster_read(vp, filesize, j * BS, BS, BS,
		    (size_t)seq * MAXBSIZE, &bp), 0);
		ck_assert(check(bp->b_data, j, 0xbeef));
		bqrelse(bp);
		cluster_seq_advance(&cs, (j + 1) * BS);
	}
	wait_reads();
	dev_reads(&r1, &b1);
	/* Every block read exactly once, in a few large transfers. */
	ck_assert_uint_eq(b1 - b0, (uint64_t)n * BS);
	ck_assert_uint_le(r1 - r0, 8);
	ck_assert_int_gt(ALD(bufcounters.readahead) - ra0, 0);
	ck_assert_int_gt(ALD(bufcounters.clusterreads) - cr0, 0);
}
END_TEST

START_TEST(test_ram_mark_triggers_next_window)
{
	const long n = 1024;
	const off_t filesize = n * BS;
	struct buf *bp;
	uint64_t r0, b0, r1, b1;
	long ram = -1;

	prefill_device(n, 0xcafe);
	dev_reads(&r0, &b0);
	/* A miss with a 128 KiB window: 32 blocks, the last one marked. */
	ck_assert_int_eq(cluster_read(vp, filesize, 0, BS, BS, 32 * BS, &bp),
	    0);
	bqrelse(bp);
	wait_reads();
	for (long i = 1; i < 64; i++) {
		long f = flags_of(i);

		if (f != -1 && (f & B_RAM))
			ram = i;
	}
	ck_assert_int_eq(ram, 31);
	ck_assert_int_eq(flags_of(32), -1);

	/* Hitting the mark starts the next window, asynchronously. */
	ck_assert_int_eq(cluster_read(vp, filesize, 31 * BS, BS, BS,
	    32 * BS, &bp), 0);
	ck_assert((bp->b_flags & B_RAM) == 0);
	bqrelse(bp);
	wait_reads();
	for (long i = 32; i < 64; i++)
		ck_assert(flags_of(i) & B_CACHE);
	ck_assert_int_eq(flags_of(64), -1);
	dev_reads(&r1, &b1);
	ck_assert_uint_eq(r1 - r0, 2);
	ck_assert_uint_eq(b1 - b0, 64 * BS);
}
END_TEST

START_TEST(test_random_no_readahead)
{
	const long n = 1024;
	const off_t filesize = n * BS;
	const int nreads = 32;
	struct cluster_seq cs;
	uint64_t r0, b0, r1, b1;
	long ra0 = ALD(bufcounters.readahead);

	prefill_device(n, 0xf00d);
	cluster_seq_init(&cs);
	dev_reads(&r0, &b0);
	for (int j = 1; j <= nreads; j++) {
		long blk = (j * 37) % n;
		struct buf *bp;
		int seq;

		seq = sequential_heuristic(&cs, blk * BS, BS);
		ck_assert_int_eq(seq, 0);
		ck_assert_int_eq(cluster_read(vp, filesize, blk * BS, BS, BS,
		    (size_t)seq * MAXBSIZE, &bp), 0);
		ck_assert(check(bp->b_data, blk, 0xf00d));
		bqrelse(bp);
		cluster_seq_advance(&cs, (blk + 1) * BS);
		wait_reads();
		ck_assert_int_eq(flags_of(blk + 1), -1);
	}
	dev_reads(&r1, &b1);
	ck_assert_uint_eq(r1 - r0, nreads);
	ck_assert_uint_eq(b1 - b0, (uint64_t)nreads * BS);
	ck_assert_int_eq(ALD(bufcounters.readahead) - ra0, 0);
}
END_TEST

START_TEST(test_readahead_stops_at_device_gap)
{
	const long n = 64;
	struct buf *bp;
	uint64_t r0, b0, r1, b1;

	/* Blocks 8.. live 1 MiB further on: a read cluster must stop there. */
	tv.gap_at = 8 * BS;
	tv.gap_len = 1 << 20;
	prefill_device(8, 0x1234);
	{
		void *p = blockdev_alloc_buf(bd, BS);

		for (long i = 8; i < n; i++) {
			fill(p, i, 0x1234);
			ck_assert_int_eq(blockdev_pwrite(bd, p, BS,
			    i * BS + tv.gap_len), 0);
		}
		blockdev_free_buf(p);
	}
	dev_reads(&r0, &b0);
	ck_assert_int_eq(cluster_read(vp, n * BS, 0, BS, BS, 32 * BS, &bp), 0);
	bqrelse(bp);
	wait_reads();
	dev_reads(&r1, &b1);
	/* 0..7 as one cluster, then read-ahead from 8 as another. */
	ck_assert_uint_eq(r1 - r0, 2);
	for (long i = 0; i < 32; i++) {
		struct buf *b;

		ck_assert_int_eq(bread(vp, i * BS, BS, &b), 0);
		ck_assert(check(b->b_data, i, 0x1234));
		bqrelse(b);
	}
	dev_reads(&r1, &b1);
	ck_assert_uint_eq(r1 - r0, 2);
}
END_TEST

static Suite *
cluster_suite(void)
{
	Suite *s = suite_create("cluster");
	struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "contig_one_write", test_contig_one_write },
		{ "logical_gap_splits", test_logical_gap_splits },
		{ "vfsync_clusters", test_vfsync_clusters },
		{ "clean_neighbours_skipped", test_clean_neighbours_skipped },
		{ "device_gap_splits", test_device_gap_splits },
		{ "not_clusterok_alone", test_not_clusterok_alone },
		{ "not_clusterok_ends_cluster", test_not_clusterok_ends_cluster },
		{ "novclusterok_vnode", test_novclusterok_vnode },
		{ "maxphys_cap", test_maxphys_cap },
		{ "failed_cluster_redirties", test_failed_cluster_redirties },
		{ "cluster_write_behind", test_cluster_write_behind },
		{ "cluster_write_random_delays",
		    test_cluster_write_random_delays },
		{ "sequential_readahead", test_sequential_readahead },
		{ "ram_mark_triggers_next_window",
		    test_ram_mark_triggers_next_window },
		{ "random_no_readahead", test_random_no_readahead },
		{ "readahead_stops_at_device_gap",
		    test_readahead_stops_at_device_gap },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = tcase_create(cases[i].name);

		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_add_test(tc, cases[i].test);
		suite_add_tcase(s, tc);
	}
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(cluster_suite());
	int failed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
