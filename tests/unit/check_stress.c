/*
 * check_stress.c - concurrency stress of the buffer cache against a model.
 *
 * Several threads run random bread / getblk / bdwrite / bawrite / bwrite /
 * brelse / bqrelse (and now and then breadn and vfsync) on a device vnode
 * whose data set is many times the cache, so buffers are recycled, the
 * daemons flush and getnewbuf sleeps all the time.  Every block carries its
 * own number and a generation; the model holds the generation each block
 * must have.  Whoever holds a block's buffer lock owns that block's model
 * entry -- the cache promises one buffer per (vnode, offset), so the model
 * needs no lock of its own; an "owner" word per block, claimed with a
 * compare-and-swap, catches two threads holding the same block at once.
 *
 * Every read is checked byte for byte.  At the end buf_shutdown() must write
 * every dirty buffer, and the device, read directly, must equal the model.
 * A watchdog thread dumps the sleeping threads (tsleep_dump) and aborts if
 * the run does not end in time: a deadlock fails loudly, it does not hang.
 *
 * Run time: STRESS_SECONDS (default 6, 3 under TSan, whose overhead cuts
 * the operation count rather than stretching the run); threads:
 * STRESS_THREADS (default 4).
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blockdev/blockdev.h"
#include "cache/buf.h"
#include "cache/bufstats.h"
#include "cache/kern_synch.h"
#include "cache/vnode.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN	1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN	1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN	0
#endif

#define BSIZE		4096			/* block and buffer size */
#define NBLOCKS		4096			/* data set: 16 MiB */
#define HOTBLOCKS	256			/* half the accesses go here */
#define CACHE_SIZE	(2L * 1024 * 1024)	/* cache: 2 MiB, 1/8 of it */
#define MAXTHREADS	16
#define WORDS		(BSIZE / 8)
#define MAGIC		0x666c796673747273ULL	/* "flyfstrs" */

static struct blockdev *bd;
static struct vnode devvn;

/* Per block: the generation it must hold, and who holds it now. */
static uint64_t model_gen[NBLOCKS];
static int model_owner[NBLOCKS];		/* 0 or thread id + 1 */
static struct buf *model_bp[NBLOCKS];		/* the owner's buffer */

static int run_stop;				/* (a) */

struct worker {
	pthread_t	tid;
	int		id;
	uint64_t	rng;
	long		ops, reads, writes, failures;
	char		why[3][256];		/* first failures */
};

static uint64_t
rng_next(uint64_t *s)
{
	/* xorshift64*: good enough and cheap */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

static uint64_t
pattern_word(uint64_t blk, uint64_t gen, int w)
{
	uint64_t x = (blk * 0x9E3779B97F4A7C15ULL) ^ (gen << 20) ^ (uint64_t)w;

	x ^= x >> 31;
	x *= 0xBF58476D1CE4E5B9ULL;
	x ^= x >> 29;
	return x;
}

static void
fill_block(void *data, uint64_t blk, uint64_t gen)
{
	uint64_t *p = data;
	int w;

	p[0] = MAGIC ^ blk;
	p[1] = gen;
	for (w = 2; w < WORDS; w++)
		p[w] = pattern_word(blk, gen, w);
}

/* Returns -1 if DATA is block BLK at generation GEN, else the bad word. */
static int
check_block(const void *data, uint64_t blk, uint64_t gen)
{
	const uint64_t *p = data;
	int w;

	if (p[0] != (MAGIC ^ blk))
		return 0;
	if (p[1] != gen)
		return 1;
	for (w = 2; w < WORDS; w++)
		if (p[w] != pattern_word(blk, gen, w))
			return w;
	return -1;
}

/* A registry value (an atomic snapshot; plain reads would race). */
static long
reg(const char *name)
{
	long v = -1;

	ck_assert_int_eq(bufstat_get(name, &v), 0);
	return v;
}

static double
now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
fail_once(struct worker *wk, const char *what, uint64_t blk, long a, long b)
{
	if (wk->failures < 3)
		snprintf(wk->why[wk->failures], sizeof(wk->why[0]),
		    "thread %d: %s (block %llu: %ld vs %ld)", wk->id, what,
		    (unsigned long long)blk, a, b);
	wk->failures++;
}

/*
 * Claim the model entry of BLK, held through buffer BP; we must be its
 * only owner.  A clash says whether the cache handed out the same buffer
 * twice (a lock bug) or two buffers for one block (an index bug).
 */
static void
own(struct worker *wk, uint64_t blk, struct buf *bp)
{
	int expect = 0;

	if (!__atomic_compare_exchange_n(&model_owner[blk], &expect,
	    wk->id + 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
		struct buf *obp = __atomic_load_n(&model_bp[blk],
		    __ATOMIC_RELAXED);

		fail_once(wk, obp == bp ? "two owners of one buffer lock" :
		    "two buffers for one block", blk, expect - 1, wk->id);
		return;
	}
	__atomic_store_n(&model_bp[blk], bp, __ATOMIC_RELAXED);
}

static void
disown(struct worker *wk, uint64_t blk)
{
	int expect = wk->id + 1;

	/* Only our own claim: a clash must not erase the other's. */
	__atomic_compare_exchange_n(&model_owner[blk], &expect, 0, false,
	    __ATOMIC_RELEASE, __ATOMIC_RELAXED);
}

static uint64_t
model_get(uint64_t blk)
{
	return __atomic_load_n(&model_gen[blk], __ATOMIC_RELAXED);
}

static void
model_set(uint64_t blk, uint64_t gen)
{
	__atomic_store_n(&model_gen[blk], gen, __ATOMIC_RELAXED);
}

static void
verify(struct worker *wk, struct buf *bp, uint64_t blk)
{
	int w;

	if (bp->b_bcount != BSIZE) {
		fail_once(wk, "b_bcount", blk, bp->b_bcount, BSIZE);
		return;
	}
	w = check_block(bp->b_data, blk, model_get(blk));
	if (w >= 0)
		fail_once(wk, w == 1 ? "stale generation" : "corrupt block",
		    blk, (long)((uint64_t *)bp->b_data)[1],
		    (long)model_get(blk));
}

/* Give BLK a new generation in BP's memory and in the model. */
static void
modify(struct buf *bp, uint64_t blk)
{
	uint64_t gen = model_get(blk) + 1;

	fill_block(bp->b_data, blk, gen);
	model_set(blk, gen);
}

static uint64_t
pick_block(struct worker *wk)
{
	uint64_t r = rng_next(&wk->rng);

	if (r & 1)
		return (r >> 1) % HOTBLOCKS;
	return (r >> 1) % NBLOCKS;
}

static void
one_op(struct worker *wk)
{
	uint64_t blk = pick_block(wk);
	off_t off = (off_t)blk * BSIZE;
	unsigned op = (unsigned)(rng_next(&wk->rng) % 100);
	struct buf *bp;
	int error;

	if (op < 10) {
		/* Full overwrite without reading: getblk, fill, bdwrite. */
		bp = getblk(&devvn, off, BSIZE, 0, 0);
		own(wk, blk, bp);
		if (bp->b_flags & B_CACHE)
			verify(wk, bp, blk);
		modify(bp, blk);
		wk->writes++;
		disown(wk, blk);
		bdwrite(bp);
		return;
	}

	if (op < 13) {
		/* Read with read-ahead of the next two blocks. */
		off_t raoff[2];
		int rasize[2] = { BSIZE, BSIZE };
		int cnt = 0;

		if (blk + 1 < NBLOCKS)
			raoff[cnt++] = off + BSIZE;
		if (blk + 2 < NBLOCKS)
			raoff[cnt++] = off + 2 * BSIZE;
		error = breadn(&devvn, off, BSIZE, raoff, rasize, cnt, &bp);
	} else {
		error = bread(&devvn, off, BSIZE, &bp);
	}
	own(wk, blk, bp);
	wk->reads++;
	if (error != 0) {
		fail_once(wk, "bread error", blk, error, 0);
		disown(wk, blk);
		bp->b_flags |= B_INVAL;
		brelse(bp);
		return;
	}
	verify(wk, bp, blk);

	if (op < 40) {
		disown(wk, blk);
		bqrelse(bp);
	} else if (op < 55) {
		disown(wk, blk);
		brelse(bp);
	} else if (op < 62) {
		/* Drop it from the cache if clean: the next read goes to disk. */
		if ((bp->b_flags & B_DELWRI) == 0)
			bp->b_flags |= (op & 1) ? B_NOCACHE : B_RELBUF;
		disown(wk, blk);
		brelse(bp);
	} else if (op < 85) {
		modify(bp, blk);
		wk->writes++;
		disown(wk, blk);
		bdwrite(bp);
	} else if (op < 95) {
		modify(bp, blk);
		wk->writes++;
		disown(wk, blk);
		bawrite(bp);
	} else {
		modify(bp, blk);
		wk->writes++;
		/*
		 * bwrite keeps the buffer locked while it sleeps and releases
		 * it before returning, so give up the claim first: the lock
		 * alone guards the block until then.
		 */
		disown(wk, blk);
		error = bwrite(bp);
		if (error != 0)
			fail_once(wk, "bwrite error", blk, error, 0);
	}
}

static void *
worker_main(void *arg)
{
	struct worker *wk = arg;

	while (!__atomic_load_n(&run_stop, __ATOMIC_RELAXED)) {
		one_op(wk);
		wk->ops++;
		/* Thread 0 also syncs the vnode now and then. */
		if (wk->id == 0 && wk->ops % 4096 == 0) {
			int error = vfsync(&devvn, MNT_WAIT);

			if (error != 0)
				fail_once(wk, "vfsync", 0, error, 0);
		}
	}
	return NULL;
}

/* ---- watchdog ------------------------------------------------------------ */

static pthread_mutex_t wd_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cv;
static int wd_done;
static pthread_t wd_tid;
static int wd_seconds;

static void *
watchdog_main(void *arg)
{
	struct timespec deadline;
	int rc = 0;

	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += wd_seconds;
	pthread_mutex_lock(&wd_mtx);
	while (!wd_done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&wd_cv, &wd_mtx, &deadline);
	if (!wd_done) {
		fprintf(stderr, "check_stress: no progress after %d s; "
		    "sleeping threads:\n", wd_seconds);
		tsleep_dump(stderr);
		fflush(stderr);
		abort();
	}
	pthread_mutex_unlock(&wd_mtx);
	return NULL;
}

static void
watchdog_start(int seconds)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&wd_cv, &attr);
	pthread_condattr_destroy(&attr);
	wd_done = 0;
	wd_seconds = seconds;
	ck_assert_int_eq(pthread_create(&wd_tid, NULL, watchdog_main, NULL), 0);
}

static void
watchdog_stop(void)
{
	pthread_mutex_lock(&wd_mtx);
	wd_done = 1;
	pthread_cond_signal(&wd_cv);
	pthread_mutex_unlock(&wd_mtx);
	pthread_join(wd_tid, NULL);
}

/* ---- fixture ------------------------------------------------------------- */

static int
env_int(const char *name, int dflt, int lo, int hi)
{
	const char *s = getenv(name);
	int v;

	if (s == NULL || *s == '\0')
		return dflt;
	v = atoi(s);
	return v < lo ? lo : v > hi ? hi : v;
}

static void
setup(void)
{
	void *blk;
	uint64_t i;

	ck_assert_int_eq(blockdev_open_ram((uint64_t)NBLOCKS * BSIZE, 4096, 64,
	    0, &bd), 0);
	/* Every block starts at generation 0, written straight to the device. */
	blk = blockdev_alloc_buf(bd, BSIZE);
	ck_assert_ptr_nonnull(blk);
	for (i = 0; i < NBLOCKS; i++) {
		fill_block(blk, i, 0);
		ck_assert_int_eq(blockdev_pwrite(bd, blk, BSIZE,
		    (off_t)i * BSIZE), 0);
		model_gen[i] = 0;
		model_owner[i] = 0;
		model_bp[i] = NULL;
	}
	blockdev_free_buf(blk);
	vn_devvp_init(&devvn, bd);
}

static void
teardown(void)
{
	vn_uninit(&devvn);
	blockdev_close(bd);
	bd = NULL;
}

static void
run_stress(int nthreads, int seconds, int nshards)
{
	struct bufinit_args args = { 0 };
	struct worker wk[MAXTHREADS];
	void *blk;
	long ops = 0, reads = 0, writes = 0;
	double t0;
	uint64_t i;
	int t, w, bad = 0;

	args.cache_size = CACHE_SIZE;
	args.nshards = nshards;
	ck_assert_int_eq(bufinit(&args), 0);

	/* Run time + generous time to drain and shut down (TSan is slow). */
	watchdog_start(seconds + (UNDER_TSAN ? 240 : 90));
	__atomic_store_n(&run_stop, 0, __ATOMIC_RELAXED);
	t0 = now_sec();
	for (t = 0; t < nthreads; t++) {
		memset(&wk[t], 0, sizeof(wk[t]));
		wk[t].id = t;
		wk[t].rng = 0x1234567ULL * (uint64_t)(t + 1) + 0x9E37ULL;
		ck_assert_int_eq(pthread_create(&wk[t].tid, NULL, worker_main,
		    &wk[t]), 0);
	}
	while (now_sec() - t0 < seconds) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		nanosleep(&ts, NULL);
		/* bufspace must never pass the hard cap. */
		ck_assert_int_le(reg("bufspace"), reg("maxbufspace"));
	}
	__atomic_store_n(&run_stop, 1, __ATOMIC_RELAXED);
	for (t = 0; t < nthreads; t++) {
		pthread_join(wk[t].tid, NULL);
		ops += wk[t].ops;
		reads += wk[t].reads;
		writes += wk[t].writes;
		for (w = 0; w < 3 && w < wk[t].failures; w++)
			fprintf(stderr, "check_stress: %ld failures: %s\n",
			    wk[t].failures, wk[t].why[w]);
	}
	fprintf(stderr, "check_stress: %d threads, %d shards, %.1f s: %ld ops "
	    "(%ld reads, %ld writes)%s\n", nthreads, nshards, now_sec() - t0,
	    ops, reads, writes, UNDER_TSAN ? " [tsan]" : "");
	for (t = 0; t < nthreads; t++)
		ck_assert_msg(wk[t].failures == 0, "%s", wk[t].why[0]);
	ck_assert_int_gt(ops, 1000);

	/* The cache really was recycling, not holding the data set. */
	ck_assert_int_gt(reg("bufrecycles"), 0);

	/* Shutdown writes every dirty buffer; then the device is the model. */
	ck_assert_int_eq(buf_shutdown(), 0);
	watchdog_stop();
	ck_assert_int_eq(reg("dirtybufspace"), 0);
	ck_assert_int_eq(reg("runningbufspace"), 0);
	ck_assert_int_eq(reg("bufspace"), 0);

	blk = blockdev_alloc_buf(bd, BSIZE);
	ck_assert_ptr_nonnull(blk);
	for (i = 0; i < NBLOCKS; i++) {
		ck_assert_int_eq(blockdev_pread(bd, blk, BSIZE,
		    (off_t)i * BSIZE), 0);
		w = check_block(blk, i, model_gen[i]);
		if (w >= 0 && bad++ < 5)
			fprintf(stderr, "check_stress: device block %llu: word "
			    "%d wrong (gen on disk %llu, model %llu)\n",
			    (unsigned long long)i, w,
			    (unsigned long long)((uint64_t *)blk)[1],
			    (unsigned long long)model_gen[i]);
	}
	blockdev_free_buf(blk);
	ck_assert_msg(bad == 0, "%d device blocks differ from the model", bad);
}

static int
stress_seconds(void)
{
	return env_int("STRESS_SECONDS", UNDER_TSAN ? 3 : 6, 1, 600);
}

static int
stress_threads(void)
{
	return env_int("STRESS_THREADS", 4, 1, MAXTHREADS);
}

/* Several threads over one shard: maximal contention on one queue lock. */
START_TEST(stress_one_shard)
{
	run_stress(stress_threads(), stress_seconds(), 1);
}
END_TEST

/* Several shards: buffers move between shards' queues and the daemons'
 * marker walks cross shards. */
START_TEST(stress_four_shards)
{
	run_stress(stress_threads(), stress_seconds(), 4);
}
END_TEST

static Suite *
stress_suite(void)
{
	Suite *s = suite_create("stress");
	TCase *tc = tcase_create("model");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, UNDER_TSAN ? 600 : 300);
	tcase_add_test(tc, stress_one_shard);
	tcase_add_test(tc, stress_four_shards);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(stress_suite());
	int nfailed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	nfailed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nfailed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
