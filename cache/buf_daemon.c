/*
 * buf_daemon.c - accounting, throttles, the flush daemons and the cache's
 * start and stop.  Part of the vfs_bio.c port.
 *
 * This file owns:
 *   - the wakeups that follow the counters (bufspacewakeup,
 *     bufcountwakeup, runningbufwakeup) and the throttles writers call
 *     (waitrunningbufspace, bd_wait with its bd_wake_ary ring);
 *   - buf_daemon (BQUEUE_DIRTY) and buf_daemon_hw (BQUEUE_DIRTY_HW), and
 *     flushbufqueues, their marker walk over the shards;
 *   - bufinit (sizes and watermarks) and buf_shutdown.
 *
 * The daemons are system threads (curthread_is_systhread): they may take
 * bufspace past hibufspace up to maxbufspace and they never sleep in
 * bd_wait -- a flusher must not be throttled by the dirty limit it drains.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/vfs_bio_int.h"
#include "cache/vfs_cluster.h"

int bd_request;				/* (a) buf_daemon wanted */
int bd_request_hw;			/* (a) buf_daemon_hw wanted */
int runningbufreq;			/* (a) waiters in waitrunningbufspace */
static unsigned int bd_wake_ary[BD_WAKE_SIZE];	/* (a) bd_wait sleepers */
static unsigned int bd_wake_index;	/* (a) bytes signalled / MAXBSIZE */

static pthread_t bufdaemon_td, bufdaemonhw_td;
static bool daemons_running;		/* (bufinit/shutdown caller) */
static int bd_shutdown;			/* (a) daemons must exit */
static bool buf_initialized;		/* (bufinit/shutdown caller) */

static int flushbufqueues(struct buf *marker, bufq_type_t q);
static void buf_teardown(void);

/* ---- wakeups ---------------------------------------------------------- */

/* Buffer space may be recoverable: wake getnewbuf "bufspc" sleepers. */
void
bufspacewakeup(void)
{
	int flags;

	for (;;) {
		flags = ALOAD(needsbuffer);
		if ((flags & VFS_BIO_NEED_BUFSPACE) == 0)
			break;
		if (ACMPSET(needsbuffer, flags,
		    flags & ~VFS_BIO_NEED_BUFSPACE)) {
			wakeup(&needsbuffer);
			break;
		}
	}
}

/* A buffer went back on a free queue: wake getnewbuf "newbuf" sleepers. */
void
bufcountwakeup(void)
{
	int flags;

	for (;;) {
		flags = ALOAD(needsbuffer);
		if (flags == 0)
			break;
		if (ACMPSET(needsbuffer, flags, flags & ~VFS_BIO_NEED_ANY)) {
			wakeup(&needsbuffer);
			break;
		}
	}
}

/* A write finished: give back its running-I/O charge and wake waiters. */
void
runningbufwakeup(struct buf *bp)
{
	long totalspace;
	int flags;

	if ((totalspace = bp->b_runningbufspace) != 0) {
		AADD(runningbufspace, -totalspace);
		AADD(runningbufcount, -1);
		bp->b_runningbufspace = 0;

		for (;;) {
			flags = ALOAD(runningbufreq);
			if (flags == 0)
				break;
			if (ACMPSET(runningbufreq, flags, 0)) {
				wakeup(&runningbufreq);
				break;
			}
		}
		bd_signal(totalspace);
	}
}

/* ---- throttles -------------------------------------------------------- */

/*
 * waitrunningbufspace: block ("wdrn1") while writes in flight exceed 4/6
 * of hirunningspace, or while someone else already waits (fairness).
 * A tight caller therefore never keeps more than about hirunningspace in
 * flight.
 */
void
waitrunningbufspace(void)
{
	long limit = ALOAD(hirunningspace) * 4 / 6;
	int flags;

	while (ALOAD(runningbufspace) > limit || ALOAD(runningbufreq)) {
		/*
		 * Deviation: only a completing write clears runningbufreq.
		 * If the last write in flight completed after a waiter raised
		 * it, nothing ever will, and in the seed every later caller
		 * sleeps here for good (the kernel escapes through unrelated
		 * I/O).  With nothing in flight the fairness wait is moot:
		 * clear the request and let everyone go.
		 */
		if (ALOAD(runningbufspace) <= limit &&
		    ALOAD(runningbufcount) == 0) {
			flags = ALOAD(runningbufreq);
			if (flags != 0 && ACMPSET(runningbufreq, flags, 0))
				wakeup(&runningbufreq);
			break;
		}
		tsleep_interlock(&runningbufreq, 0);
		flags = AFETCHADD(runningbufreq, 1);
		if (ALOAD(runningbufspace) > limit ||
		    (flags && ALOAD(runningbufcount) > 0)) {
			BUFCOUNT(runningwaits, 1);
			tsleep(&runningbufreq, PINTERLOCKED, "wdrn1", hz);
		}
	}
}

/*
 * The dirty side of the writer throttle.  The seed throttles on bytes
 * (dirtykvaspace) and only uses the dirty buffer *count* to wake the
 * daemons.  Here nbuf is sized for NBUFCALCSIZE buffers, so with small
 * blocks every header can turn dirty long before the bytes reach
 * hidirtybufspace -- and a heavy flush, which needs a fresh metadata buffer
 * to allocate its block, then sleeps in getnewbuf with nothing left to
 * recycle.  So each dirty buffer weighs at least hidirtybufspace/(nbuf/2):
 * nbuf/2 dirty buffers reach the high mark whatever their size.
 */
long
bd_dirty_weight(long size)
{
	long half = nbuf / 2 > 0 ? nbuf / 2 : 1;
	long w = ALOAD(hidirtybufspace) / half;

	return size > w ? size : w;
}

static long
bd_dirtyspace(void)
{
	long kva = ALOAD(dirtykvaspace);
	long cnt = ALOAD(dirtybufcount) * bd_dirty_weight(0);

	return kva > cnt ? kva : cnt;
}

/* True when dirty plus running data is past the high mark. */
int
buf_dirty_count_severe(void)
{
	return ALOAD(runningbufspace) + bd_dirtyspace() >=
	    ALOAD(hidirtybufspace) || ALOAD(dirtybufcount) >= nbuf / 2;
}

/* True when running I/O is heavy enough for the device queue to burst. */
int
buf_runningbufspace_severe(void)
{
	return ALOAD(runningbufspace) >= ALOAD(hirunningspace) * 4 / 6;
}

/*
 * bd_speedup: wake the daemons if there is enough dirty data to be worth
 * flushing.  Each request word is raised once per sleep of its daemon.
 */
void
bd_speedup(void)
{
	long dkva = bd_dirtyspace();
	long lodirty = ALOAD(lodirtybufspace);
	long dcount = ALOAD(dirtybufcount);
	long dcounthw = ALOAD(dirtybufcounthw);

	if (dkva < lodirty && dcount < nbuf / 2)
		return;

	if (ALOAD(bd_request) == 0 &&
	    (dkva > lodirty / 2 || dcount - dcounthw >= nbuf / 2)) {
		if (AFETCHADD(bd_request, 1) == 0)
			wakeup(&bd_request);
	}
	if (ALOAD(bd_request_hw) == 0 &&
	    (dkva > lodirty / 2 || dcounthw >= nbuf / 2)) {
		if (AFETCHADD(bd_request_hw, 1) == 0)
			wakeup(&bd_request_hw);
	}
}

/*
 * bd_heatup: start the daemons once running+dirty passes the midpoint
 * between lo- and hidirtybufspace.  Returns how far it is past the second
 * midpoint (the excess a writer should wait for), or 0.
 */
long
bd_heatup(void)
{
	long mid1;
	long mid2;
	long totalspace;
	long lo = ALOAD(lodirtybufspace), hi = ALOAD(hidirtybufspace);

	mid1 = lo + (hi - lo) / 2;

	totalspace = ALOAD(runningbufspace) + bd_dirtyspace();
	if (totalspace >= mid1 || ALOAD(dirtybufcount) >= nbuf / 2) {
		bd_speedup();
		mid2 = mid1 + (hi - mid1) / 2;
		if (totalspace >= mid2)
			return totalspace - mid2;
	}
	return 0;
}

/*
 * bd_wait: block ("flstik") until about TOTALSPACE bytes of dirty or
 * running data have been retired, and in any case while running+dirty
 * exceeds hidirtybufspace.  Waiters sleep on a slot of bd_wake_ary that
 * bd_signal reaches after that many bytes; the ring index is read before
 * the counters, so a race errs towards waking early.  System threads
 * return at once.
 */
void
bd_wait(long totalspace)
{
	unsigned int i;
	unsigned int j;
	unsigned int mi;
	long count;

	if (curthread_is_systhread())
		return;

	while (totalspace > 0) {
		bd_heatup();

		i = AFETCHADD(bd_wake_index, 0);
		if (totalspace > ALOAD(runningbufspace) + bd_dirtyspace())
			totalspace = ALOAD(runningbufspace) + bd_dirtyspace();
		count = totalspace / MAXBSIZE;
		if (count >= BD_WAKE_SIZE / 2)
			count = BD_WAKE_SIZE / 2;
		i = i + (unsigned int)count;
		mi = i & BD_WAKE_MASK;

		tsleep_interlock(&bd_wake_ary[mi], 0);
		AADD(bd_wake_ary[mi], 1);
		j = AFETCHADD(bd_wake_index, 0);
		if ((int)(i - j) >= 0) {
			BUFCOUNT(bdwaits, 1);
			tsleep(&bd_wake_ary[mi], PINTERLOCKED, "flstik", hz);
		}

		totalspace = ALOAD(runningbufspace) + bd_dirtyspace() -
		    ALOAD(hidirtybufspace);
	}
}

/*
 * bd_signal: TOTALSPACE bytes of running or dirty data were retired:
 * advance the ring one slot per MAXBSIZE and wake the slots passed.
 */
void
bd_signal(long totalspace)
{
	unsigned int i;

	if (totalspace > 0) {
		if (totalspace > (long)MAXBSIZE * BD_WAKE_SIZE)
			totalspace = (long)MAXBSIZE * BD_WAKE_SIZE;
		while (totalspace > 0) {
			i = AFETCHADD(bd_wake_index, 1);
			i &= BD_WAKE_MASK;
			if (ASWAP(bd_wake_ary[i], 0))
				wakeup(&bd_wake_ary[i]);
			totalspace -= MAXBSIZE;
		}
	}
}

/* ---- the daemons ------------------------------------------------------- */

static int
buf_daemon_limit(long limit)
{
	return ALOAD(runningbufspace) + bd_dirtyspace() > limit ||
	    ALOAD(dirtybufcount) - ALOAD(dirtybufcounthw) >= nbuf / 2;
}

static int
buf_daemon_hw_limit(long limit)
{
	return ALOAD(runningbufspace) + bd_dirtyspace() > limit ||
	    ALOAD(dirtybufcounthw) >= nbuf / 2;
}

struct buf_daemon_desc {
	bufq_type_t	queue;
	int		(*limit_fn)(long);
	int		*bd_req;
};

static struct buf_daemon_desc buf_kp = {
	BQUEUE_DIRTY, buf_daemon_limit, &bd_request
};
static struct buf_daemon_desc bufhw_kp = {
	BQUEUE_DIRTY_HW, buf_daemon_hw_limit, &bd_request_hw
};

static struct buf *
marker_alloc(void)
{
	struct buf *marker = calloc(1, sizeof(*marker));

	if (marker == NULL)
		panic("buf_daemon: out of memory");
	marker->b_flags = B_MARKER;
	marker->b_qflags = BQF_MARKER;
	marker->b_qindex = BQUEUE_NONE;
	marker->b_qcpu = 0;
	return marker;
}

/*
 * The body of both daemons.  Each flushes its queue while running+dirty
 * data is above half of lodirtybufspace (the two share the low mark),
 * keeping running I/O under hirunningspace, then sleeps ("psleep") until
 * bd_speedup raises its request word, or a second passes.
 */
static void *
buf_daemon1(void *arg)
{
	struct buf_daemon_desc *kp = arg;
	struct buf *marker = marker_alloc();
	long limit;

	curthread_set_systhread(true);
	while (!ALOAD(bd_shutdown)) {
		waitrunningbufspace();
		limit = ALOAD(lodirtybufspace) / 2;
		while (!ALOAD(bd_shutdown) && kp->limit_fn(limit)) {
			if (flushbufqueues(marker, kp->queue) == 0)
				break;
			if (ALOAD(runningbufspace) < ALOAD(hirunningspace))
				continue;
			waitrunningbufspace();
		}

		tsleep_interlock(kp->bd_req, 0);
		if (ASWAP(*kp->bd_req, 0) == 0 && !ALOAD(bd_shutdown))
			tsleep(kp->bd_req, PINTERLOCKED, "psleep", hz);
	}
	free(marker);
	return NULL;
}

/*
 * flushbufqueues: write up to flushperqueue buffers of queue Q, starting
 * at the shard MARKER points to and moving on to the next shards while
 * nothing was found.  The marker sits in the queue after the buffer being
 * worked on, so the walk resumes there after dropping the spinlock.
 * Invalid buffers are released, not written; buffers whose dependencies
 * say "not yet" are deferred once or released.  Returns the number of
 * buffers disposed of.
 */
static int
flushbufqueues(struct buf *marker, bufq_type_t q)
{
	struct bufpcpu *pcpu;
	struct buf *bp;
	int r = 0;
	unsigned int loops = ALOAD(flushperqueue);
	int lcpu = marker->b_qcpu;

	KKASSERT(marker->b_qindex == BQUEUE_NONE);
	KKASSERT(marker->b_flags & B_MARKER);

again:
	pcpu = &bufpcpu[marker->b_qcpu];
	spin_lock(&pcpu->spin);
	marker->b_qindex = q;
	TAILQ_INSERT_HEAD(&pcpu->bufqueues[q], marker, b_freelist);
	bp = marker;

	while ((bp = TAILQ_NEXT(bp, b_freelist)) != NULL) {
		/* The spinlock is held at the top of the loop. */
		if (bp->b_qflags & BQF_MARKER)
			continue;
		if (BUF_LOCK(bp, LK_EXCLUSIVE | LK_NOWAIT))
			continue;
		KKASSERT(bp->b_qcpu == marker->b_qcpu && bp->b_qindex == q);

		/* Park the marker after bp: our resume point. */
		TAILQ_REMOVE(&pcpu->bufqueues[q], marker, b_freelist);
		TAILQ_INSERT_AFTER(&pcpu->bufqueues[q], bp, marker,
		    b_freelist);

		if ((bp->b_flags & B_DELWRI) == 0) {
			spin_unlock(&pcpu->spin);
			BUF_UNLOCK(bp);
			spin_lock(&pcpu->spin);
			bp = marker;
			continue;
		}

		_bremfree(bp);

		if (bp->b_flags & B_INVAL) {
			spin_unlock(&pcpu->spin);
			brelse(bp);
			goto doloop;
		}

		spin_unlock(&pcpu->spin);

		if (bp->b_dep != NULL && (bp->b_flags & B_DEFERRED) == 0 &&
		    buf_countdeps(bp, 0)) {
			spin_lock(&pcpu->spin);
			bp->b_flags |= B_DEFERRED;
			bp->b_qindex = q;
			bp->b_qflags = 0;
			TAILQ_INSERT_TAIL(&pcpu->bufqueues[q], bp, b_freelist);
			spin_unlock(&pcpu->spin);
			BUF_UNLOCK(bp);
			spin_lock(&pcpu->spin);
			bp = marker;
			continue;
		}

		/*
		 * Write it, unless the dependencies refuse.  A buffer whose
		 * last write failed is retried after a tick, so a dead
		 * device does not turn the daemon into a busy loop.
		 */
		if (bp->b_dep != NULL && buf_checkwrite(bp)) {
			brelse(bp);
		} else if (bp->b_flags & B_ERROR) {
			tsleep(bp, 0, "bioer", 1);
			bp->b_flags &= ~B_AGE;
			cluster_awrite(bp);
		} else {
			bp->b_flags |= B_AGE;
			cluster_awrite(bp);
		}
		BUFCOUNT(flushes, 1);
		if (q == BQUEUE_DIRTY_HW)
			BUFCOUNT(flushes_hw, 1);
doloop:
		spin_lock(&pcpu->spin);
		++r;
		if (--loops == 0)
			break;
		bp = marker;
	}

	TAILQ_REMOVE(&pcpu->bufqueues[q], marker, b_freelist);
	marker->b_qindex = BQUEUE_NONE;
	spin_unlock(&pcpu->spin);

	/* Next call starts at the next shard; on an empty pass, go on now. */
	marker->b_qcpu = (unsigned short)((marker->b_qcpu + 1) % ncpus);
	if (bp == NULL) {
		if (marker->b_qcpu != lcpu)
			goto again;
	}
	return r;
}

/* ---- start and stop ---------------------------------------------------- */

static long
default_cache_size(void)
{
	long pages = sysconf(_SC_PHYS_PAGES);
	long psize = sysconf(_SC_PAGESIZE);
	long size;

	if (pages <= 0 || psize <= 0)
		return 64L << 20;
	size = pages / 8 * psize;
	if (size < (16L << 20))
		size = 16L << 20;
	if (size > (2L << 30))
		size = 2L << 30;
	return size;
}

void
bufhdr_reset_accounting(void)
{
	ASTORE(bufspace, 0);
	ASTORE(dirtykvaspace, 0);
	ASTORE(dirtybufspace, 0);
	ASTORE(dirtybufspacehw, 0);
	ASTORE(dirtybufcount, 0);
	ASTORE(dirtybufcounthw, 0);
	ASTORE(runningbufspace, 0);
	ASTORE(runningbufcount, 0);
	ASTORE(getnewbufcalls, 0);
	ASTORE(needsbuffer, 0);
	ASTORE(runningbufreq, 0);
	ASTORE(bd_request, 0);
	ASTORE(bd_request_hw, 0);
	ASTORE(bd_wake_index, 0);
	memset(bd_wake_ary, 0, sizeof(bd_wake_ary));
	memset(&bufcounters, 0, sizeof(bufcounters));
}

/*
 * bufinit: size the cache and set the watermarks.
 *
 *   maxbufspace  = the cache size: the absolute bound on buffer memory.
 *                  Only the daemons (system threads) may use the last part;
 *   hibufspace   = max(3/4 of it, all but 10 MAXBSIZE buffers): everyone
 *                  else stops here, so a flush can always get buffers;
 *   lobufspace   = 7/8 of hibufspace (gap at most 64 MiB, at least one
 *                  MAXBSIZE): once getnewbuf starts freeing space at
 *                  hibufspace it frees down to here, in one burst;
 *   hidirtybufspace = hibufspace / 2: dirty + running data above this
 *                  blocks writers (bd_wait), so that most of the cache
 *                  stays available to clean data and to the flushes;
 *   lodirtybufspace = hidirtybufspace / 2: the daemons flush until
 *                  dirty + running falls back under it;
 *   hirunningspace  = hibufspace / 16, at least 1 MiB: bound on writes
 *                  in flight, which hold their buffers locked;
 *   lorunningspace  = 512 KiB;
 *   max_readahead   = hibufspace / 64 within [2 MiB, 8 MiB] (vfs_cluster;
 *                  a cold 1 GiB sequential read through the mount: median
 *                  1.14 GB/s with the seed's fixed 2 MiB, 1.26 with 8 MiB,
 *                  six runs each).
 */
int
bufinit(const struct bufinit_args *args)
{
	struct bufinit_args a = { 0 };
	struct bufpcpu *pcpu;
	struct buf *bp;
	long n;
	int i, j;

	if (buf_initialized)
		return EBUSY;
	if (args)
		a = *args;
	if (a.cache_size <= 0)
		a.cache_size = default_cache_size();
	if (a.cache_size < 16L * MAXBSIZE)
		a.cache_size = 16L * MAXBSIZE;
	if (a.nbuf <= 0)
		a.nbuf = a.cache_size / NBUFCALCSIZE;
	if (a.nbuf < 16)
		a.nbuf = 16;
	if (a.nshards <= 0)
		a.nshards = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (a.nshards <= 0)
		a.nshards = 1;
	if (a.nshards > 64)
		a.nshards = 64;

	bufhdr_reset_accounting();
	ncpus = a.nshards;
	nbuf = a.nbuf;
	bufpcpu = aligned_alloc(64, sizeof(*bufpcpu) * (size_t)ncpus);
	buf = buf_mem_hdr_alloc((size_t)nbuf * sizeof(*buf));
	if (bufpcpu == NULL || buf == NULL) {
		free(bufpcpu);
		buf_mem_hdr_free(buf, (size_t)nbuf * sizeof(*buf));
		bufpcpu = NULL;
		buf = NULL;
		return ENOMEM;
	}
	memset(bufpcpu, 0, sizeof(*bufpcpu) * (size_t)ncpus);
	for (i = 0; i < ncpus; ++i) {
		pcpu = &bufpcpu[i];
		spin_init(&pcpu->spin, "bufinit");
		for (j = 0; j < BUFFER_QUEUES; j++)
			TAILQ_INIT(&pcpu->bufqueues[j]);
	}

	/* Every header starts empty and invalid, spread over the shards. */
	for (n = 0; n < nbuf; n++) {
		bp = &buf[n];
		bp->b_flags = B_INVAL;
		bp->b_cmd = BUF_CMD_DONE;
		bp->b_qindex = BQUEUE_EMPTY;
		bp->b_qcpu = (unsigned short)(n % ncpus);
		initbufbio(bp);
		TAILQ_INSERT_TAIL(&bufpcpu[bp->b_qcpu].bufqueues[BQUEUE_EMPTY],
		    bp, b_freelist);
	}

	maxbufspace = a.cache_size;
	hibufspace = 3 * maxbufspace / 4;
	if (hibufspace < maxbufspace - MAXBSIZE * 10)
		hibufspace = maxbufspace - MAXBSIZE * 10;
	lobufspace = hibufspace * 7 / 8;
	if (hibufspace - lobufspace > 64 * 1024 * 1024)
		lobufspace = hibufspace - 64 * 1024 * 1024;
	if (lobufspace > hibufspace - MAXBSIZE)
		lobufspace = hibufspace - MAXBSIZE;

	lorunningspace = 512 * 1024;
	hidirtybufspace = hibufspace / 2;
	hirunningspace = hibufspace / 16;
	if (hirunningspace < 1024 * 1024)
		hirunningspace = 1024 * 1024;
	lodirtybufspace = hidirtybufspace / 2;
	/* Read-ahead per trigger follows the cache (see the comment above). */
	max_readahead = (int)(hibufspace / 64);
	if (max_readahead > 8 * 1024 * 1024)
		max_readahead = 8 * 1024 * 1024;
	if (max_readahead < 2 * 1024 * 1024)
		max_readahead = 2 * 1024 * 1024;

	buf_initialized = true;
	ASTORE(bd_shutdown, 0);
	if (!a.no_daemons)
		return buf_daemon_start();
	return 0;
}

int
buf_daemon_start(void)
{
	int error;

	if (daemons_running)
		return EBUSY;
	ASTORE(bd_shutdown, 0);
	error = pthread_create(&bufdaemon_td, NULL, buf_daemon1, &buf_kp);
	if (error)
		return error;
	error = pthread_create(&bufdaemonhw_td, NULL, buf_daemon1, &bufhw_kp);
	if (error) {
		ASTORE(bd_shutdown, 1);
		wakeup(&bd_request);
		pthread_join(bufdaemon_td, NULL);
		return error;
	}
	daemons_running = true;
	return 0;
}

static void
buf_daemon_stop(void)
{
	if (!daemons_running)
		return;
	ASTORE(bd_shutdown, 1);
	wakeup(&bd_request);
	wakeup(&bd_request_hw);
	pthread_join(bufdaemon_td, NULL);
	pthread_join(bufdaemonhw_td, NULL);
	daemons_running = false;
}

/* Destroy one idle header at shutdown (scan_all_buffers callback). */
static int
shutdown_destroy(struct buf *bp, void *info)
{
	int *nlocked = info;

	BUF_LOCK(bp, LK_EXCLUSIVE);
	if (bp->b_qindex != BQUEUE_NONE)
		bremfree(bp);
	if (bp->b_flags & B_LOCKED) {
		(*nlocked)++;
		bp->b_flags &= ~B_LOCKED;
	}
	bp->b_flags |= B_INVAL | B_NOCACHE;
	brelse(bp);
	return 0;
}

/*
 * buf_shutdown: write all DIRTY and DIRTY_HW buffers (a few rounds, so a
 * transient error gets retried), wait for every write, stop the daemons,
 * destroy every buffer and free the headers.  Afterwards every counter
 * is zero and bufinit() may be called again.
 */
int
buf_shutdown(void)
{
	struct buf *marker;
	int nlocked = 0;
	int round, i, n, error = 0;
	long passes;
	bool was_sys = curthread_is_systhread();

	if (!buf_initialized)
		return 0;
	marker = marker_alloc();
	curthread_set_systhread(true);
	for (round = 0; round < 4; round++) {
		/*
		 * A buffer whose write fails goes back on its queue and
		 * would be found again for ever: bound the passes.
		 */
		passes = 2 + nbuf / (long)ALOAD(flushperqueue);
		do {
			n = 0;
			for (i = 0; i < ncpus; i++) {
				n += flushbufqueues(marker, BQUEUE_DIRTY);
				n += flushbufqueues(marker, BQUEUE_DIRTY_HW);
			}
		} while (n > 0 && --passes > 0);
		while (ALOAD(runningbufcount) > 0)
			tsleep(&runningbufreq, 0, "shutdn", 1);
		if (ALOAD(dirtybufcount) == 0)
			break;
	}
	buf_daemon_stop();
	curthread_set_systhread(was_sys);
	free(marker);

	/* Whatever is still dirty now is either LOCKED or unwritable. */
	if (ALOAD(dirtybufcount) > 0)
		error = EIO;
	scan_all_buffers(shutdown_destroy, &nlocked);
	if (nlocked)
		error = error ? error : EBUSY;
	buf_teardown();
	return error;
}

/*
 * buf_abandon: the cache's half of a simulated crash (kill -9) for the
 * crash tests.  Stop the daemons, let the writes already issued finish
 * (they were handed to the device: a real crash may or may not keep
 * them, the device's power-cut mode decides), then destroy every buffer
 * -- dirty and LOCKED ones included -- without writing anything.  Not in
 * the seed.  No buffer may be locked by a caller.
 */
void
buf_abandon(void)
{
	int nlocked = 0;

	if (!buf_initialized)
		return;
	buf_daemon_stop();
	while (ALOAD(runningbufcount) > 0)
		tsleep(&runningbufreq, 0, "abandn", 1);
	scan_all_buffers(shutdown_destroy, &nlocked);
	buf_teardown();
}

/* Free the headers and queues; every counter must be back to zero. */
static void
buf_teardown(void)
{
	int i;
	long n;

	KKASSERT(ALOAD(bufspace) == 0 && ALOAD(dirtybufcount) == 0 &&
	    ALOAD(runningbufspace) == 0);
	buf_mem_stop();
	for (n = 0; n < nbuf; n++)
		uninitbufbio(&buf[n]);
	for (i = 0; i < ncpus; i++)
		spin_uninit(&bufpcpu[i].spin);
	buf_mem_hdr_free(buf, (size_t)nbuf * sizeof(*buf));
	free(bufpcpu);
	buf = NULL;
	bufpcpu = NULL;
	nbuf = 0;
	buf_initialized = false;
}
