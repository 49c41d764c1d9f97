/*
 * check_throttle.c - the write throttles and the flush daemons' marks,
 * observed over a deliberately slow RAM device.
 *
 * Writers dirty 16 KiB buffers on a device vnode as fast as they can, each
 * first calling the kernel's writer throttle (bwillwrite: bd_wait on what
 * bd_heatup reports past its second midpoint).  The device delays every
 * request by DELAY_MS, so the writers outrun it and the throttles decide
 * what happens.  A sampler thread reads the registry every ~100 us and
 * keeps the maxima.  What the seed guarantees, and so what is asserted:
 *
 *  - bd_wait returns only once runningbufspace + dirtykvaspace is at or
 *    below hidirtybufspace (it re-checks after every wakeup or 1 s tick).
 *    A writer dirties at most one buffer between that check and its next
 *    one, so dirtybufspace <= hidirtybufspace + NWRITERS * BSIZE.  (The
 *    sum running + dirty may go further: a buffer being written is still
 *    B_DELWRI until bpdone, so a daemon's write counts it twice for a
 *    while.  dirtybufspace alone only grows through writers.)
 *
 *  - buf_daemon issues one flushbufqueues() call only while runningbufspace
 *    < hirunningspace, then waits in waitrunningbufspace; one call writes
 *    up to flushperqueue buffers (or clusters).  With flushperqueue = 1 and
 *    no clustering (what this test sets) runningbufspace <= hirunningspace
 *    + one buffer.  With the default 1024 the seed's bound is
 *    hirunningspace + 1024 clusters: the one-buffer bound is a property of
 *    that setting, not of the algorithm.
 *
 *  - getnewbuf never lets bufspace pass maxbufspace (writers stop at
 *    hibufspace, the daemons may use the rest).
 *
 *  - Each daemon flushes while running + dirty > lodirtybufspace / 2 (the
 *    two share the low mark) and then sleeps; it re-evaluates once a second
 *    and on bd_speedup.  After the writers stop, with no writes in flight,
 *    dirtybufspace therefore ends at or below lodirtybufspace / 2.  It
 *    does not end far below: the daemon stops at the first check under the
 *    mark, and since the previous check (which was above it) it flushed
 *    one buffer.  A buffer in flight is counted twice in running + dirty
 *    (still B_DELWRI until bpdone), and at most hirunningspace + BSIZE is
 *    in flight at a check, so what is left dirty once the writes complete
 *    is more than lodirtybufspace / 2 - 2 * (hirunningspace + BSIZE) -
 *    BSIZE.  It then stays put: the daemons stop, they do not drain the
 *    cache.
 */
#include <check.h>
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

#define BSIZE		16384
#define DEV_SIZE	(64L * 1024 * 1024)
#define NDEVBLOCKS	(DEV_SIZE / BSIZE)
#define CACHE_SIZE	(8L * 1024 * 1024)
#define QDEPTH		64			/* > hirunningspace / BSIZE */
#define DELAY_MS	20			/* per request */
#define HIRUNNING	(256L * 1024)		/* 16 buffers; < QDEPTH bufs */
#define NWRITERS	3
#define WRITE_SECONDS	2.5

static struct blockdev *bd;
static struct vnode devvn;

/* Registry entries the sampler reads. */
static const struct bufstat *st_dirty, *st_running, *st_bufspace;

struct sample_max {
	long	dirty, running, bufspace, total;
	long	nsamples;
};

static struct sample_max smax;
static int sampler_stop;			/* (a) */
static int writers_stop;			/* (a) */

struct writer {
	pthread_t	tid;
	int		id;
	long		writes;
	long		throttled;		/* bwillwrite calls that waited */
	long		writes_after_block;
	double		blocked_sec;
};

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
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void *
sampler_main(void *arg)
{
	struct timespec ts = { 0, 100 * 1000 };
	long d, r, b;

	(void)arg;
	while (!__atomic_load_n(&sampler_stop, __ATOMIC_RELAXED)) {
		d = bufstat_read(st_dirty);
		r = bufstat_read(st_running);
		b = bufstat_read(st_bufspace);
		if (d > smax.dirty)
			smax.dirty = d;
		if (r > smax.running)
			smax.running = r;
		if (b > smax.bufspace)
			smax.bufspace = b;
		if (d + r > smax.total)
			smax.total = d + r;
		smax.nsamples++;
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/*
 * The kernel's writer throttle (bwillwrite in DragonFly's write path):
 * past bd_heatup's second midpoint, wait for the excess to drain and for
 * running + dirty to come back under hidirtybufspace.  Returns true if it
 * had to wait.
 */
static bool
writer_throttle(void)
{
	long excess = bd_heatup();

	if (excess <= 0)
		return false;
	bd_wait(excess);
	return true;
}

static void *
writer_main(void *arg)
{
	struct writer *w = arg;
	long k = 0;
	double t;
	struct buf *bp;
	off_t off;

	while (!__atomic_load_n(&writers_stop, __ATOMIC_RELAXED)) {
		t = now_sec();
		if (writer_throttle()) {
			w->throttled++;
			w->blocked_sec += now_sec() - t;
		}
		off = (off_t)((w->id + k * NWRITERS) % NDEVBLOCKS) * BSIZE;
		k++;
		bp = getblk(&devvn, off, BSIZE, 0, 0);
		memset(bp->b_data, 'a' + w->id, BSIZE);
		/* One buffer per write: the bound on running I/O is per buffer. */
		bp->b_flags &= ~B_CLUSTEROK;
		bdwrite(bp);
		w->writes++;
		if (w->throttled)
			w->writes_after_block++;
	}
	return NULL;
}

static void
setup(void)
{
	struct bufinit_args args = { 0 };

	ck_assert_int_eq(blockdev_open_ram(DEV_SIZE, 4096, QDEPTH,
	    (uint64_t)DELAY_MS * 1000000, &bd), 0);
	vn_devvp_init(&devvn, bd);
	devvn.v_flag &= ~VCLUSTEROK;

	args.cache_size = CACHE_SIZE;
	args.nshards = 2;
	ck_assert_int_eq(bufinit(&args), 0);
	/* See the file comment: these make the running bound one buffer. */
	ck_assert_int_eq(bufstat_set("flushperqueue", 1), 0);
	ck_assert_int_eq(bufstat_set("hirunningspace", HIRUNNING), 0);

	st_dirty = bufstat_lookup("dirtybufspace");
	st_running = bufstat_lookup("runningbufspace");
	st_bufspace = bufstat_lookup("bufspace");
	ck_assert_ptr_nonnull(st_dirty);
	ck_assert_ptr_nonnull(st_running);
	ck_assert_ptr_nonnull(st_bufspace);
	memset(&smax, 0, sizeof(smax));
}

static void
teardown(void)
{
	ck_assert_int_eq(buf_shutdown(), 0);
	vn_uninit(&devvn);
	blockdev_close(bd);
	bd = NULL;
}

/*
 * Run NWRITERS writers for WRITE_SECONDS with the sampler on; the sampler
 * keeps running until all writes have completed.
 */
static void
run_writers(struct writer *w)
{
	pthread_t sampler;
	double t0;
	int i;

	__atomic_store_n(&sampler_stop, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&writers_stop, 0, __ATOMIC_RELAXED);
	ck_assert_int_eq(pthread_create(&sampler, NULL, sampler_main, NULL), 0);
	for (i = 0; i < NWRITERS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].id = i;
		ck_assert_int_eq(pthread_create(&w[i].tid, NULL, writer_main,
		    &w[i]), 0);
	}
	t0 = now_sec();
	while (now_sec() - t0 < WRITE_SECONDS)
		sleep_ms(20);
	__atomic_store_n(&writers_stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < NWRITERS; i++)
		pthread_join(w[i].tid, NULL);
	/* Let the daemons finish their round while still sampling. */
	t0 = now_sec();
	while (reg("runningbufspace") > 0 && now_sec() - t0 < 10)
		sleep_ms(5);
	__atomic_store_n(&sampler_stop, 1, __ATOMIC_RELAXED);
	pthread_join(sampler, NULL);

	fprintf(stderr, "check_throttle: hidirty %ld lodirty %ld hirunning %ld "
	    "maxbufspace %ld | max dirty %ld running %ld dirty+running %ld "
	    "bufspace %ld (%ld samples)\n", hidirtybufspace, lodirtybufspace,
	    hirunningspace, maxbufspace, smax.dirty, smax.running, smax.total,
	    smax.bufspace, smax.nsamples);
	for (i = 0; i < NWRITERS; i++)
		fprintf(stderr, "check_throttle: writer %d: %ld writes, %ld "
		    "throttled (%.2f s blocked), %ld writes after first block\n",
		    i, w[i].writes, w[i].throttled, w[i].blocked_sec,
		    w[i].writes_after_block);
	ck_assert_int_gt(smax.nsamples, 100);
}

/*
 * Writers block in bd_wait once running + dirty passes the marks, and
 * resume as the daemons bring it down: they keep writing after blocking,
 * far more than the cache can hold dirty, while dirtybufspace stays within
 * hidirtybufspace plus one buffer per writer.
 */
START_TEST(writers_block_and_resume)
{
	struct writer w[NWRITERS];
	long total_after = 0, throttled = 0;
	int i;

	run_writers(w);
	for (i = 0; i < NWRITERS; i++) {
		throttled += w[i].throttled;
		total_after += w[i].writes_after_block;
	}
	ck_assert_int_gt(throttled, 0);
	ck_assert_int_gt(reg("bdwaits"), 0);
	ck_assert_int_le(smax.dirty, hidirtybufspace + (long)NWRITERS * BSIZE);
	/* Resumed, repeatedly: more bytes written after blocking than the
	 * dirty high mark could ever hold. */
	ck_assert_int_gt(total_after * BSIZE, 2 * hidirtybufspace);
	/* ... and the dirty high mark was really reached. */
	ck_assert_int_ge(smax.dirty + smax.running,
	    lodirtybufspace + (hidirtybufspace - lodirtybufspace) / 2);
}
END_TEST

/*
 * runningbufspace never exceeds hirunningspace by more than one buffer,
 * and the bound is exercised (writes in flight reach past 4/6 of it,
 * which a device of QDEPTH slots would otherwise far exceed).  bufspace
 * never exceeds maxbufspace.
 */
START_TEST(running_and_bufspace_bounded)
{
	struct writer w[NWRITERS];

	run_writers(w);
	ck_assert_int_le(smax.running, hirunningspace + BSIZE);
	ck_assert_int_ge(smax.running, hirunningspace * 4 / 6);
	ck_assert_int_le(smax.bufspace, maxbufspace);
	ck_assert_int_gt(reg("runningwaits"), 0);
}
END_TEST

/*
 * The daemons stop at the low mark: after the writers stop, dirtybufspace
 * settles in (lodirtybufspace / 2 - 2 (hirunningspace + BSIZE) - BSIZE,
 * lodirtybufspace / 2] and stays there across the daemons' 1 s rechecks.
 */
START_TEST(daemons_stop_at_lodirty)
{
	struct writer w[NWRITERS];
	long limit, d1, d2, lo_bound;
	double t0;

	run_writers(w);
	limit = lodirtybufspace / 2;
	lo_bound = limit - 2 * (hirunningspace + BSIZE) - BSIZE;

	/* Settled: nothing in flight and no change over 1.2 s. */
	t0 = now_sec();
	d1 = reg("dirtybufspace");
	for (;;) {
		sleep_ms(1200);
		d2 = reg("dirtybufspace");
		if (d2 == d1 && reg("runningbufspace") == 0)
			break;
		ck_assert_msg(now_sec() - t0 < 30,
		    "dirtybufspace did not settle (%ld -> %ld)", d1, d2);
		d1 = d2;
	}
	fprintf(stderr, "check_throttle: settled dirtybufspace %ld in (%ld, "
	    "%ld]\n", d2, lo_bound, limit);
	if (d2 > limit || d2 <= lo_bound)
		tsleep_dump(stderr);	/* where are the daemons? */
	ck_assert_int_le(d2, limit);
	ck_assert_int_gt(d2, lo_bound);
	ck_assert_int_gt(d2, 0);

	/* Two more daemon ticks: still the same. */
	sleep_ms(2100);
	ck_assert_int_eq(reg("dirtybufspace"), d2);
	ck_assert_int_eq(reg("runningbufspace"), 0);

	/* Shutdown writes the rest. */
	ck_assert_int_eq(buf_shutdown(), 0);
	ck_assert_int_eq(reg("dirtybufspace"), 0);
	ck_assert_int_eq(reg("dirtybufcount"), 0);
	ck_assert_int_eq(reg("bufspace"), 0);
	/* teardown's buf_shutdown is then a no-op */
}
END_TEST

static Suite *
throttle_suite(void)
{
	Suite *s = suite_create("throttle");
	TCase *tc = tcase_create("slowdev");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, writers_block_and_resume);
	tcase_add_test(tc, running_and_bufspace_bounded);
	tcase_add_test(tc, daemons_stop_at_lodirty);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(throttle_suite());
	int nfailed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	nfailed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nfailed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
