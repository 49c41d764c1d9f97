/*
 * vfs_bio.c - the buffer cache: lookup, life cycle and I/O of struct buf.
 * A userspace port of DragonFly BSD's sys/kern/vfs_bio.c.
 *
 * This file owns the buffer state machine: findblk/getblk/getnewbuf/
 * allocbuf create and find buffers, brelse/bqrelse put them back on the
 * shard queues, bread/bwrite/bawrite/bdwrite start I/O, and biodone/bpdone
 * finish it.  The throttles, the daemons and bufinit live in buf_daemon.c;
 * vnode association (bgetvp, brelvp, reassignbuf) in vfs_subr.c.
 *
 * LOCK ORDER (one order for all of cache/):
 *
 *	buffer lock (BUF_LOCK)
 *	  -> vnode v_token
 *	    -> shard spinlock (bufpcpu[].spin)
 *	      -> sleep-queue bucket mutex (kern_synch, leaf)
 *
 *   A shard spinlock may be held while *trying* a buffer lock
 *   (LK_NOWAIT) -- never while blocking on one -- and is never held across
 *   BUF_UNLOCK, I/O submission, a vop_* call or a sleep.  The v_token is
 *   never held while sleeping.  Nothing in cache/ is held across
 *   blockdev_submit() except the buffer lock being handed to the kernel
 *   (BUF_KERNPROC), because the completion thread takes the others.
 *
 * BUFFER STATES (b_qindex, with the buffer lock):
 *   on a queue, unlocked        idle: LOCKED / CLEAN / DIRTY / DIRTY_HW /
 *                               EMPTY (a findblk()er may hold the lock
 *                               briefly before bremfree)
 *   BQUEUE_NONE, locked         owned by a thread, or by the kernel while
 *                               b_cmd != BUF_CMD_DONE (I/O in flight)
 *
 * Memory: a buffer owns b_bufsize bytes; bufspace is their exact sum.  Only
 * system threads (the daemons) may take bufspace above hibufspace, up to
 * maxbufspace; getnewbuf enforces both with a reservation.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "cache/vfs_bio_int.h"

struct bufpcpu *bufpcpu;
int ncpus = 1;
struct buf *buf;

static void	buf_mem_set(struct buf *bp, long newbsize);

int
buf_mycpu(void)
{
	int c = sched_getcpu();

	if (c < 0)
		c = 0;
	return c % ncpus;
}

/*
 * Reserve BYTES of bufspace if that keeps it at or under LIMIT.  The
 * reservation is what makes hibufspace / maxbufspace hard limits here
 * (the kernel's bound came from fixed per-buffer KVA).
 */
static bool
bufspace_reserve(long bytes, long limit)
{
	long cur = ALOAD(bufspace);

	do {
		if (cur + bytes > limit)
			return false;
	} while (!__atomic_compare_exchange_n(&bufspace, &cur, cur + bytes,
	    false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
	return true;
}

static long
bufspace_limit(void)
{
	return curthread_is_systhread() ? ALOAD(maxbufspace) :
	    ALOAD(hibufspace);
}

/* ---- bio layers ----------------------------------------------------- */

void
initbufbio(struct buf *bp)
{
	bp->b_bio1.bio_buf = bp;
	bp->b_bio1.bio_prev = NULL;
	bp->b_bio1.bio_offset = NOOFFSET;
	bp->b_bio1.bio_next = &bp->b_bio2;
	bp->b_bio1.bio_done = NULL;
	bp->b_bio1.bio_flags = 0;

	bp->b_bio2.bio_buf = bp;
	bp->b_bio2.bio_prev = &bp->b_bio1;
	bp->b_bio2.bio_offset = NOOFFSET;
	bp->b_bio2.bio_next = NULL;
	bp->b_bio2.bio_done = NULL;
	bp->b_bio2.bio_flags = 0;

	BUF_LOCKINIT(bp);
}

/* Forget every layer's completion and cached translation. */
void
reinitbufbio(struct buf *bp)
{
	struct bio *bio;

	for (bio = &bp->b_bio1; bio; bio = bio->bio_next) {
		bio->bio_done = NULL;
		bio->bio_offset = NOOFFSET;
	}
}

void
uninitbufbio(struct buf *bp)
{
	BUF_LOCKFREE(bp);
}

/*
 * Return the layer below BIO, creating it if it was never pushed.  A layer
 * that exists keeps its cached bio_offset (translation).
 */
struct bio *
push_bio(struct bio *bio)
{
	struct bio *nbio;
	int index;

	if ((nbio = bio->bio_next) == NULL) {
		index = (int)(bio - &bio->bio_buf->b_bio_array[0]);
		if (index >= NBUF_BIO - 1)
			panic("push_bio: too many layers %d for bp %p",
			    index, (void *)bio->bio_buf);
		nbio = &bio->bio_buf->b_bio_array[index + 1];
		bio->bio_next = nbio;
		nbio->bio_prev = bio;
		nbio->bio_buf = bio->bio_buf;
		nbio->bio_offset = NOOFFSET;
		nbio->bio_done = NULL;
		nbio->bio_next = NULL;
	}
	KKASSERT(nbio->bio_done == NULL);
	return nbio;
}

struct bio *
pop_bio(struct bio *bio)
{
	return bio->bio_prev;
}

void
clearbiocache(struct bio *bio)
{
	while (bio) {
		bio->bio_offset = NOOFFSET;
		bio = bio->bio_next;
	}
}

/* ---- the b_dep hooks ---------------------------------------------------- */

static const struct vop_ops *
bp_ops(struct buf *bp)
{
	return bp->b_vp ? bp->b_vp->v_ops : NULL;
}

void
buf_deallocate(struct buf *bp)
{
	const struct vop_ops *ops = bp_ops(bp);

	if (bp->b_dep && ops && ops->vop_deallocate)
		ops->vop_deallocate(bp);
}

int
buf_checkwrite(struct buf *bp)
{
	const struct vop_ops *ops = bp_ops(bp);

	if (bp->b_dep && ops && ops->vop_checkwrite)
		return ops->vop_checkwrite(bp);
	return 0;
}

int
buf_countdeps(struct buf *bp, int n)
{
	const struct vop_ops *ops = bp_ops(bp);

	if (bp->b_dep && ops && ops->vop_countdeps)
		return ops->vop_countdeps(bp, n);
	return 0;
}

void
buf_start(struct buf *bp)
{
	const struct vop_ops *ops = bp_ops(bp);

	if (bp->b_dep && ops && ops->vop_start)
		ops->vop_start(bp);
}

void
buf_complete(struct buf *bp)
{
	const struct vop_ops *ops = bp_ops(bp);

	if (bp->b_dep && ops && ops->vop_complete)
		ops->vop_complete(bp);
}

/* ---- queues --------------------------------------------------------- */

/*
 * Take a locked buffer off its queue.  Caller holds the buffer lock and
 * the shard spinlock.
 */
void
_bremfree(struct buf *bp)
{
	struct bufpcpu *pcpu = &bufpcpu[bp->b_qcpu];

	if (bp->b_qindex != BQUEUE_NONE) {
		KASSERT(BUF_LOCKINUSE(bp), ("bremfree: bp %p not locked",
		    (void *)bp));
		TAILQ_REMOVE(&pcpu->bufqueues[bp->b_qindex], bp, b_freelist);
		bp->b_qindex = BQUEUE_NONE;
	} else if (!BUF_LOCKINUSE(bp)) {
		panic("bremfree: removing a buffer not on a queue");
	}
}

/* Caller holds the buffer lock; takes the shard spinlock. */
void
bremfree(struct buf *bp)
{
	struct bufpcpu *pcpu = &bufpcpu[bp->b_qcpu];

	spin_lock(&pcpu->spin);
	_bremfree(bp);
	spin_unlock(&pcpu->spin);
}

/* Caller holds the buffer lock and the shard spinlock. */
void
bremfree_locked(struct buf *bp)
{
	_bremfree(bp);
}

/* Insert a locked, off-queue buffer on queue Q of its shard (spin held). */
static void
bufq_insert(struct bufpcpu *pcpu, struct buf *bp, bufq_type_t q, bool head)
{
	bp->b_qindex = q;
	bp->b_qflags = (bp->b_flags & B_AGE) ? BQF_AGE : 0;
	if (head)
		TAILQ_INSERT_HEAD(&pcpu->bufqueues[q], bp, b_freelist);
	else
		TAILQ_INSERT_TAIL(&pcpu->bufqueues[q], bp, b_freelist);
}

/* ---- memory ------------------------------------------------------------ */

/*
 * Give BP exactly NEWBSIZE bytes of memory, keeping the first
 * min(old, new) bytes and zeroing the rest.  Adjusts no counters; the
 * caller accounts for the difference.  Sleeps ("bufmem") and retries if
 * the allocator is out of memory.
 */
static void
buf_mem_set(struct buf *bp, long newbsize)
{
	void *p = NULL;
	long keep;
	bool zeroed;

	if (newbsize == 0) {
		buf_mem_free(bp->b_data, bp->b_bufsize);
		bp->b_data = NULL;
		return;
	}
	while ((p = buf_mem_alloc(newbsize, &zeroed)) == NULL)
		tsleep(&p, 0, "bufmem", hz / 10);
	keep = bp->b_bufsize < newbsize ? bp->b_bufsize : newbsize;
	if (keep && bp->b_data)
		memcpy(p, bp->b_data, (size_t)keep);
	/* Fresh pages are zero already: touching them here would only
	 * fault them in early. */
	if (newbsize > keep && !zeroed)
		memset((char *)p + keep, 0, (size_t)(newbsize - keep));
	buf_mem_free(bp->b_data, bp->b_bufsize);
	bp->b_data = p;
}

/* ---- releasing buffers ------------------------------------------------ */

/*
 * brelse: release a locked buffer.  It goes back on a queue as a cache
 * entry, or -- B_INVAL, B_NOCACHE, B_RELBUF, B_DIRECT, a failed read -- is
 * destroyed: memory freed, vnode association dropped, EMPTY queue.
 * A re-dirtied (B_DELWRI) buffer survives everything but B_INVAL.
 * Consumes the buffer lock.  Does not sleep (except in vop_deallocate).
 */
void
brelse(struct buf *bp)
{
	struct bufpcpu *pcpu;

	KASSERT(!(bp->b_flags & B_CLUSTER),
	    ("brelse: cluster pbuf %p", (void *)bp));

	/* B_NOCACHE destroys even dirty contents. */
	if ((bp->b_flags & (B_NOCACHE | B_DELWRI)) == (B_NOCACHE | B_DELWRI))
		bundirty(bp);

	if ((bp->b_flags & (B_INVAL | B_DELWRI)) == B_DELWRI) {
		/* Dirty and not invalidated: keep it, errors or not. */
	} else if ((bp->b_flags & (B_NOCACHE | B_INVAL | B_ERROR)) ||
	    bp->b_bufsize <= 0) {
		/*
		 * A failed read, or an explicit request to throw the buffer
		 * away.  Dirty here only if B_INVAL: drop the dirty
		 * accounting without a write.
		 */
		bp->b_flags |= B_INVAL;
		if (bp->b_dep != NULL)
			buf_deallocate(bp);
		if (bp->b_flags & B_DELWRI) {
			AADD(dirtybufcount, -1);
			AADD(dirtykvaspace, -bp->b_bufsize);
			AADD(dirtybufspace, -bp->b_bufsize);
			if (bp->b_flags & B_HEAVY) {
				AADD(dirtybufcounthw, -1);
				AADD(dirtybufspacehw, -bp->b_bufsize);
			}
			bd_signal(bd_dirty_weight(bp->b_bufsize));
		}
		bp->b_flags &= ~(B_DELWRI | B_CACHE | B_PARTIAL);
	}

	/*
	 * B_RELBUF cannot apply to a dirty, locked or held buffer.  B_DIRECT
	 * (O_DIRECT) asks for it on any buffer that may go: that is the
	 * userspace form of the kernel freeing a B_DIRECT buffer's pages.
	 */
	if ((bp->b_flags & (B_DELWRI | B_LOCKED)) || ALOAD(bp->b_refs)) {
		bp->b_flags &= ~B_RELBUF;
	} else if (bp->b_flags & B_DIRECT) {
		bp->b_flags |= B_RELBUF;
	}

	bp->b_cmd = BUF_CMD_DONE;

	/*
	 * Destroy: free the memory and leave the vnode.  The kernel's VM
	 * page rundown reduces to this because a buffer's memory is its own.
	 */
	if (bp->b_flags & (B_INVAL | B_RELBUF)) {
		if (bp->b_bufsize)
			allocbuf(bp, 0);
		if (bp->b_vp)
			brelvp(bp);
	}

	if (bp->b_qindex != BQUEUE_NONE)
		panic("brelse: free buffer onto another queue???");

	pcpu = &bufpcpu[bp->b_qcpu];
	spin_lock(&pcpu->spin);
	if (bp->b_flags & B_LOCKED) {
		/* Held in core whatever its state. */
		bufq_insert(pcpu, bp, BQUEUE_LOCKED, false);
	} else if (bp->b_bufsize == 0) {
		/* No memory: must be disassociated. */
		bp->b_flags |= B_INVAL;
		KASSERT(bp->b_vp == NULL, ("brelse: empty bp %p still has "
		    "vnode %p", (void *)bp, (void *)bp->b_vp));
		KKASSERT((bp->b_flags & B_HASHED) == 0);
		bufq_insert(pcpu, bp, BQUEUE_EMPTY, true);
	} else if (bp->b_flags & (B_INVAL | B_NOCACHE | B_RELBUF)) {
		/* Junk kept memory (B_LOCKED cleared meanwhile): recycle first. */
		KASSERT(bp->b_vp == NULL, ("brelse: junk bp %p still has "
		    "vnode %p", (void *)bp, (void *)bp->b_vp));
		KKASSERT((bp->b_flags & B_HASHED) == 0);
		bp->b_flags |= B_INVAL;
		bufq_insert(pcpu, bp, BQUEUE_CLEAN, true);
	} else {
		switch (bp->b_flags & (B_DELWRI | B_HEAVY)) {
		case B_DELWRI:
			bufq_insert(pcpu, bp, BQUEUE_DIRTY, false);
			break;
		case B_DELWRI | B_HEAVY:
			bufq_insert(pcpu, bp, BQUEUE_DIRTY_HW, false);
			break;
		default:
			/*
			 * Tail of CLEAN.  Without B_AGE getnewbuf passes it
			 * over once before taking it; data (B_NOTMETA) goes
			 * on the first pass.
			 */
			if (bp->b_flags & B_NOTMETA)
				bp->b_flags |= B_AGE;
			bufq_insert(pcpu, bp, BQUEUE_CLEAN, false);
			break;
		}
	}
	spin_unlock(&pcpu->spin);

	if ((bp->b_flags & (B_LOCKED | B_DELWRI)) == 0)
		bufcountwakeup();
	if (bp->b_bufsize)
		bufspacewakeup();

	bp->b_flags &= ~(B_NOCACHE | B_RELBUF | B_DIRECT);
	BUF_UNLOCK(bp);
}

/*
 * bqrelse: release a locked buffer that will probably be used again soon,
 * never destroying it (bdwrite, read-ahead completion).  B_DIRECT clean
 * buffers are the exception: they go through brelse and are freed.
 * Consumes the buffer lock.
 */
void
bqrelse(struct buf *bp)
{
	struct bufpcpu *pcpu;

	KASSERT(!(bp->b_flags & B_CLUSTER),
	    ("bqrelse: cluster pbuf %p", (void *)bp));
	if (bp->b_qindex != BQUEUE_NONE)
		panic("bqrelse: free buffer onto another queue???");

	if ((bp->b_flags & (B_DIRECT | B_DELWRI | B_LOCKED)) == B_DIRECT) {
		brelse(bp);
		return;
	}

	pcpu = &bufpcpu[bp->b_qcpu];
	spin_lock(&pcpu->spin);
	if (bp->b_flags & B_LOCKED) {
		bufq_insert(pcpu, bp, BQUEUE_LOCKED, false);
	} else if (bp->b_flags & B_DELWRI) {
		bufq_insert(pcpu, bp, (bp->b_flags & B_HEAVY) ?
		    BQUEUE_DIRTY_HW : BQUEUE_DIRTY, false);
	} else {
		if (bp->b_flags & B_NOTMETA)
			bp->b_flags |= B_AGE;
		bufq_insert(pcpu, bp, BQUEUE_CLEAN, false);
	}
	spin_unlock(&pcpu->spin);

	if ((bp->b_flags & B_LOCKED) == 0 &&
	    ((bp->b_flags & B_INVAL) || (bp->b_flags & B_DELWRI) == 0))
		bufcountwakeup();
	if (bp->b_bufsize && !(bp->b_flags & B_DELWRI))
		bufspacewakeup();

	bp->b_flags &= ~(B_NOCACHE | B_RELBUF);
	BUF_UNLOCK(bp);
}

/*
 * A hold keeps the buffer from being recycled by getnewbuf (not from
 * B_INVAL).  bqhold needs the buffer locked; bqdrop does not.
 */
void
bqhold(struct buf *bp)
{
	AADD(bp->b_refs, 1);
}

void
bqdrop(struct buf *bp)
{
	KKASSERT(ALOAD(bp->b_refs) > 0);
	AADD(bp->b_refs, -1);
}

/* ---- finding and creating buffers --------------------------------------- */

/*
 * getnewbuf: find a free header, recycling a CLEAN buffer if need be, and
 * give it SIZE bytes of memory within the caller's limit (hibufspace, or
 * maxbufspace for system threads).  Returns it locked, off every queue,
 * without vnode, B_INVAL and B_CACHE clear, b_bcount 0.  Returns NULL
 * after sleeping, so that the caller (getblk) looks its block up again
 * before retrying.  Sleeps on needsbuffer
 * ("newbuf" for headers, "bufspc" for space) when nothing is free; never
 * writes a dirty buffer itself (it asks the daemons).
 */
struct buf *
getnewbuf(int blkflags, int slptimeo, int size, int maxsize)
{
	struct bufpcpu *pcpu;
	struct buf *bp;
	struct buf *nbp;
	int nqindex;
	int nqcpu;
	int mycpu;
	int maxloops = 200000;
	int restart_reason = 0;
	struct buf *restart_bp = NULL;
	char *flushingp;
	long newbsize = ((long)size + DEV_BSIZE - 1) & ~(long)(DEV_BSIZE - 1);
	bool keepmem;

	(void)maxsize;
	AADD(getnewbufcalls, 1);
	mycpu = nqcpu = buf_mycpu();
	flushingp = &bufpcpu[mycpu].flushing;
restart:
	if (restart_reason)
		BUFCOUNT(getnewbufrestarts, 1);
	if (ALOAD(bufspace) < ALOAD(lobufspace))
		ASTORE(*flushingp, 0);

	if (ALOAD(debug_bufbio) && --maxloops == 0)
		panic("getnewbuf, excessive loops on cpu %d restart %d (%p)",
		    mycpu, restart_reason, (void *)restart_bp);

	/* Scan EMPTY, then CLEAN; skip EMPTY while we are freeing space. */
	pcpu = &bufpcpu[nqcpu];
	spin_lock(&pcpu->spin);
	nqindex = BQUEUE_EMPTY;
	nbp = TAILQ_FIRST(&pcpu->bufqueues[BQUEUE_EMPTY]);
	if (nbp == NULL || ALOAD(*flushingp)) {
		nqindex = BQUEUE_CLEAN;
		nbp = TAILQ_FIRST(&pcpu->bufqueues[BQUEUE_CLEAN]);
	}

	while ((bp = nbp) != NULL) {
		int qindex = nqindex;

		nbp = TAILQ_NEXT(bp, b_freelist);

		/*
		 * Second chance: a CLEAN buffer without B_AGE is sent to
		 * the tail once.  The pass is recorded in b_qflags (under
		 * the spinlock) rather than in b_flags, which belongs to
		 * whoever holds the buffer lock.
		 */
		if (qindex == BQUEUE_CLEAN &&
		    (bp->b_qflags & (BQF_AGE | BQF_MARKER)) == 0 && nbp) {
			bp->b_qflags |= BQF_AGE;
			TAILQ_REMOVE(&pcpu->bufqueues[qindex], bp, b_freelist);
			TAILQ_INSERT_TAIL(&pcpu->bufqueues[qindex], bp,
			    b_freelist);
			continue;
		}

		if (nbp == NULL && qindex == BQUEUE_EMPTY) {
			nqindex = BQUEUE_CLEAN;
			nbp = TAILQ_FIRST(&pcpu->bufqueues[BQUEUE_CLEAN]);
		}

		if (bp->b_qflags & BQF_MARKER)
			continue;
		KASSERT(bp->b_qindex == qindex,
		    ("getnewbuf: inconsistent queue %d bp %p", qindex,
		    (void *)bp));

		/* Held buffers may not be reused (re-checked once locked). */
		if (ALOAD(bp->b_refs))
			continue;

		if (BUF_LOCK(bp, LK_EXCLUSIVE | LK_NOWAIT) != 0) {
			spin_unlock(&pcpu->spin);
			tsleep(&bd_request, 0, "gnbxxx", (hz + 99) / 100);
			restart_reason = 1;
			restart_bp = bp;
			goto restart;
		}
		if (bp->b_qindex != qindex || ALOAD(bp->b_refs)) {
			spin_unlock(&pcpu->spin);
			BUF_UNLOCK(bp);
			restart_reason = 2;
			restart_bp = bp;
			goto restart;
		}
		KASSERT((bp->b_flags & B_DELWRI) == 0,
		    ("delwri buffer %p found in queue %d", (void *)bp, qindex));
		bremfree_locked(bp);
		spin_unlock(&pcpu->spin);

		/* Dependencies go before the vnode; the fs may keep it. */
		if (bp->b_dep != NULL) {
			buf_deallocate(bp);
			if (bp->b_flags & B_LOCKED) {
				bqrelse(bp);
				restart_reason = 3;
				restart_bp = bp;
				goto restart;
			}
			KKASSERT(bp->b_dep == NULL);
		}

		if (qindex == BQUEUE_CLEAN) {
			if (bp->b_vp)
				brelvp(bp);
			BUFCOUNT(bufrecycles, 1);
		}
		KASSERT(bp->b_vp == NULL, ("bp3 %p flags %08x vnode %p "
		    "qindex %d still associated", (void *)bp, bp->b_flags,
		    (void *)bp->b_vp, qindex));
		KKASSERT((bp->b_flags & B_HASHED) == 0);

		/*
		 * Memory of exactly the size we need is handed over rather
		 * than freed and allocated again; anything else is freed now.
		 */
		keepmem = bp->b_bufsize == newbsize && !ALOAD(*flushingp);
		if (bp->b_bufsize && !keepmem)
			allocbuf(bp, 0);

		bp->b_flags = B_BNOCLIP;
		bp->b_cmd = BUF_CMD_DONE;
		bp->b_vp = NULL;
		bp->b_error = 0;
		bp->b_resid = 0;
		bp->b_bcount = 0;
		bp->b_dirtyoff = bp->b_dirtyend = 0;
		bp->b_xiov = NULL;
		bp->b_xiovcnt = 0;
		bp->b_cluster_next = NULL;
		reinitbufbio(bp);
		if (blkflags & GETBLK_BHEAVY)
			bp->b_flags |= B_HEAVY;

		/*
		 * Hysteresis: once bufspace reaches hibufspace, free CLEAN
		 * buffers instead of reusing them until it is under
		 * lobufspace, so that space is recovered in bulk.
		 */
		if (ALOAD(bufspace) >= ALOAD(hibufspace))
			ASTORE(*flushingp, 1);
		if (ALOAD(bufspace) < ALOAD(lobufspace))
			ASTORE(*flushingp, 0);
		if (ALOAD(*flushingp)) {
			bp->b_flags |= B_INVAL;
			brelse(bp);
			restart_reason = 5;
			restart_bp = bp;
			goto restart;
		}

		/* A findblk() may have referenced it while we held it. */
		if (ALOAD(bp->b_refs)) {
			bp->b_flags |= B_INVAL;
			brelse(bp);
			restart_reason = 6;
			restart_bp = bp;
			goto restart;
		}

		/*
		 * Charge the memory.  If it does not fit under our limit,
		 * free space in bulk (flushing mode) and try again.
		 */
		if (keepmem) {
			BUFCOUNT(bufreusemem, 1);
		} else if (newbsize) {
			if (!bufspace_reserve(newbsize, bufspace_limit())) {
				ASTORE(*flushingp, 1);
				bp->b_flags |= B_INVAL;
				brelse(bp);
				restart_reason = 8;
				restart_bp = bp;
				goto restart;
			}
			buf_mem_set(bp, newbsize);
			bp->b_bufsize = (int)newbsize;
		}
		break;
	}

	/*
	 * Nothing here: try the other shards, then sleep until a buffer or
	 * space is released, having asked the daemons to hurry.
	 */
	if (bp == NULL) {
		int flags;
		const char *waitmsg;

		spin_unlock(&pcpu->spin);

		nqcpu = (nqcpu + 1) % ncpus;
		if (nqcpu != mycpu) {
			restart_reason = 7;
			restart_bp = bp;
			goto restart;
		}

		if (ALOAD(bufspace) >= ALOAD(hibufspace)) {
			waitmsg = "bufspc";
			flags = VFS_BIO_NEED_BUFSPACE;
		} else {
			waitmsg = "newbuf";
			flags = VFS_BIO_NEED_ANY;
		}

		bd_speedup();
		BUFCOUNT(getnewbufsleeps, 1);
		__atomic_or_fetch(&needsbuffer, flags, __ATOMIC_SEQ_CST);
		while (ALOAD(needsbuffer) & flags) {
			int value;

			tsleep_interlock(&needsbuffer, 0);
			value = AFETCHADD(needsbuffer, 0);
			if (value & flags) {
				if (tsleep(&needsbuffer, PINTERLOCKED, waitmsg,
				    slptimeo ? slptimeo : hz) && slptimeo)
					return NULL;
			}
		}
		/* NULL: the caller looks the block up again and retries. */
	}
	return bp;
}

/*
 * inmem: true if the block is in the cache (no I/O needed to find it).
 * There is no VM page cache behind the buffers to look into.
 */
int
inmem(struct vnode *vp, off_t loffset)
{
	return findblk(vp, loffset, FINDBLK_TEST) != NULL;
}

/*
 * findblk: look up (vp, loffset).  Returns the buffer locked (still on its
 * queue: bremfree it to use it), unlocked with FINDBLK_TEST, or NULL.
 * FINDBLK_NBLOCK: NULL rather than sleep on the lock.  FINDBLK_REF: with
 * b_refs held, which prevents recycling but not invalidation.
 */
struct buf *
findblk(struct vnode *vp, off_t loffset, int flags)
{
	struct buf *bp;
	int lkflags;

	lkflags = LK_EXCLUSIVE;
	if (flags & FINDBLK_NBLOCK)
		lkflags |= LK_NOWAIT;

	for (;;) {
		/* The hold under v_token keeps it from being reused. */
		lwkt_gettoken_shared(&vp->v_token);
		bp = buf_rb_entry(buf_rb_lookup(&vp->v_rbhash_tree, loffset),
		    b_rbhash);
		if (bp == NULL) {
			lwkt_reltoken(&vp->v_token);
			return NULL;
		}
		bqhold(bp);
		lwkt_reltoken(&vp->v_token);

		if (flags & FINDBLK_TEST)
			break;

		if (BUF_LOCK(bp, lkflags)) {
			bqdrop(bp);
			return NULL;
		}

		/* It may have been recycled while we waited for the lock. */
		if (bp->b_vp == vp && bp->b_loffset == loffset)
			break;
		bqdrop(bp);
		BUF_UNLOCK(bp);
	}

	if ((flags & FINDBLK_REF) == 0)
		bqdrop(bp);
	return bp;
}

/*
 * getcacheblk: the buffer only if it is fully valid, locked and off its
 * queue; NULL otherwise.  A B_RAM buffer also gives NULL so the caller
 * goes through cluster_read and keeps read-ahead going.  With BLKSIZE 0
 * the buffer must already exist; otherwise getblk() is used.
 */
struct buf *
getcacheblk(struct vnode *vp, off_t loffset, int blksize, int blkflags)
{
	struct buf *bp;
	int fndflags = 0;

	if (blkflags & GETBLK_NOWAIT)
		fndflags |= FINDBLK_NBLOCK;

	if (blksize) {
		bp = getblk(vp, loffset, blksize, blkflags, 0);
		if (bp) {
			if ((bp->b_flags & (B_INVAL | B_CACHE)) == B_CACHE) {
				bp->b_flags &= ~B_AGE;
				if (bp->b_flags & B_RAM) {
					bqrelse(bp);
					bp = NULL;
				}
			} else {
				brelse(bp);
				bp = NULL;
			}
		}
	} else {
		bp = findblk(vp, loffset, fndflags);
		if (bp) {
			if ((bp->b_flags & (B_INVAL | B_CACHE | B_RAM)) ==
			    B_CACHE) {
				bp->b_flags &= ~B_AGE;
				bremfree(bp);
			} else {
				BUF_UNLOCK(bp);
				bp = NULL;
			}
		}
	}
	return bp;
}

/*
 * getblk: the buffer for (vp, loffset, size), locked and off its queue.
 *
 * Existing buffer: B_CACHE is cleared if it is B_INVAL.  A size mismatch
 * is resolved by writing it (if dirty or with dependencies) or releasing
 * it, then starting over.  A dirty buffer without B_CACHE is written first
 * (B_NOCACHE) so the caller cannot read over dirty data -- except a
 * B_PARTIAL one asked for with GETBLK_PARTOK (Deviation 28).
 * New buffer: B_INVAL and B_CACHE clear; the caller reads or fills it.
 *
 * Returns NULL only for GETBLK_NOWAIT (would block), GETBLK_SZMATCH (size
 * differs) or an expired SLPTIMEO.  May sleep: "getblk" on the buffer
 * lock, "newbuf"/"bufspc" in getnewbuf.
 */
struct buf *
getblk(struct vnode *vp, off_t loffset, int size, int blkflags, int slptimeo)
{
	struct buf *bp;
	int error;
	int lkflags;

	if (size > MAXBSIZE || size < 0)
		panic("getblk: size(%d) > MAXBSIZE(%d)", size, MAXBSIZE);
loop:
	if ((bp = findblk(vp, loffset, FINDBLK_REF | FINDBLK_TEST)) != NULL) {
		/*
		 * Found.  The ref keeps it from being recycled while we wait
		 * for the lock (which would make us wait on some other
		 * block); it can still be disassociated, hence the re-check.
		 */
		if (BUF_LOCK(bp, LK_EXCLUSIVE | LK_NOWAIT)) {
			if (blkflags & GETBLK_NOWAIT) {
				bqdrop(bp);
				return NULL;
			}
			lkflags = LK_EXCLUSIVE | LK_SLEEPFAIL;
			error = BUF_TIMELOCK(bp, lkflags, "getblk", slptimeo);
			if (error) {
				bqdrop(bp);
				if (error == ENOLCK)
					goto loop;
				return NULL;
			}
		}
		bqdrop(bp);

		if (bp->b_vp != vp || bp->b_loffset != loffset) {
			BUF_UNLOCK(bp);
			goto loop;
		}

		if ((blkflags & GETBLK_SZMATCH) && size != bp->b_bcount) {
			BUF_UNLOCK(bp);
			return NULL;
		}

		KKASSERT(bp->b_cmd == BUF_CMD_DONE);
		bp->b_flags &= ~B_AGE;

		if ((bp->b_flags & B_INVAL) &&
		    bp->b_bio2.bio_offset != NOOFFSET)
			clearbiocache(&bp->b_bio2);

		if (bp->b_flags & B_INVAL)
			bp->b_flags &= ~(B_CACHE | B_PARTIAL);
		bremfree(bp);

		/*
		 * Size changes: never resize a dirty or dependent buffer in
		 * place; write it out and start over.  A clean one is simply
		 * destroyed and re-created at the new size.
		 */
		if (size != bp->b_bcount) {
			bp->b_flags |= B_RELBUF;
			if ((bp->b_flags & B_DELWRI) || bp->b_dep != NULL)
				bwrite(bp);
			else
				brelse(bp);
			goto loop;
		}
		KASSERT(bp->b_loffset != NOOFFSET, ("getblk: no buffer offset"));

		/*
		 * Dirty but not fully valid: the caller would read over the
		 * dirty data.  Write it and throw it away, then start over.
		 */
		if ((bp->b_flags & (B_CACHE | B_DELWRI)) == B_DELWRI &&
		    ((bp->b_flags & B_PARTIAL) == 0 ||
		    (blkflags & GETBLK_PARTOK) == 0)) {
			/* B_PARTIAL is such a buffer by design (Deviation 28). */
			if ((bp->b_flags & B_PARTIAL) == 0)
				kprintf("getblk: Warning, bp %p loff=%jx "
				    "DELWRI set and CACHE clear, b_flags "
				    "%08x\n", (void *)bp,
				    (uintmax_t)bp->b_loffset, bp->b_flags);
			bp->b_flags |= B_NOCACHE;
			bwrite(bp);
			goto loop;
		}
	} else {
		/*
		 * Not in the cache: get a fresh buffer and enter it in the
		 * vnode's index.  Losing the insertion race to another
		 * thread means starting over to find its buffer.
		 */
		bp = getnewbuf(blkflags, slptimeo, size, size);
		if (bp == NULL) {
			if (slptimeo)
				return NULL;
			goto loop;
		}

		bp->b_loffset = loffset;
		bp->b_bio2.bio_offset = NOOFFSET;

		if (bgetvp(vp, bp, size)) {
			bp->b_flags |= B_INVAL;
			brelse(bp);
			goto loop;
		}
		KKASSERT(bp->b_cmd == BUF_CMD_DONE);
		allocbuf(bp, size);
		bp->b_flags &= ~B_CACHE;
	}
	if (bp->b_flags & B_CACHE)
		BUFCOUNT(cachehits, 1);
	else
		BUFCOUNT(cachemisses, 1);
	return bp;
}

/*
 * regetblk: lock again a buffer that sits on the LOCKED queue (or that the
 * fs kept through vop_deallocate) and take it off its queue.
 */
void
regetblk(struct buf *bp)
{
	KKASSERT((bp->b_flags & B_LOCKED) || bp->b_dep != NULL);
	BUF_LOCK(bp, LK_EXCLUSIVE | LK_RETRY);
	bremfree(bp);
}

/*
 * allocbuf: resize a locked buffer to SIZE bytes (b_bcount = SIZE; memory
 * rounded to DEV_BSIZE).  Grown memory is zeroed and clears B_CACHE (it
 * holds no valid data); a zero size sets B_CACHE.  bufspace and, for a
 * dirty buffer, dirtybufspace follow exactly.  Growing keeps bufspace
 * under hibufspace (maxbufspace for the daemons), recycling clean buffers
 * through getnewbuf when it must; may sleep ("bufspc", "newbuf").
 */
void
allocbuf(struct buf *bp, int size)
{
	long newbsize;
	long delta;

	if (BUF_LOCKINUSE(bp) == 0)
		panic("allocbuf: buffer not busy");
	if (size > MAXBSIZE || size < 0)
		panic("allocbuf: buffer too small");

	newbsize = ((long)size + DEV_BSIZE - 1) & ~(long)(DEV_BSIZE - 1);
	delta = newbsize - bp->b_bufsize;

	if (size == 0)
		bp->b_flags |= B_CACHE;
	else if (size > bp->b_bcount)
		bp->b_flags &= ~B_CACHE;

	if (delta > 0) {
		/*
		 * Growth obeys the same limit as getnewbuf: hibufspace for
		 * ordinary threads, maxbufspace for the daemons.  When it does
		 * not fit, let getnewbuf recover space in bulk (its flushing
		 * mode frees CLEAN buffers down to lobufspace, or sleeps on
		 * "bufspc" until the daemons have cleaned some) and give the
		 * scratch buffer straight back; then try again.
		 */
		while (!bufspace_reserve(delta, bufspace_limit())) {
			struct buf *scratch;

			scratch = getnewbuf(0, 0, (int)delta, (int)delta);
			if (scratch != NULL) {
				scratch->b_flags |= B_INVAL;
				brelse(scratch);
			}
		}
	} else if (delta < 0) {
		AADD(bufspace, delta);
	}
	if (delta)
		buf_mem_set(bp, newbsize);

	if (bp->b_flags & B_DELWRI) {
		AADD(dirtybufspace, delta);
		AADD(dirtykvaspace, delta);
		if (bp->b_flags & B_HEAVY)
			AADD(dirtybufspacehw, delta);
	}
	bp->b_bufsize = (int)newbsize;
	bp->b_bcount = size;
	if (delta < 0)
		bufspacewakeup();
}

/*
 * scan_all_buffers: call CALLBACK on every header.  Headers are not
 * locked; the callback locks and re-validates.
 */
int
scan_all_buffers(int (*callback)(struct buf *, void *), void *info)
{
	int count = 0;
	int error;
	long n;

	for (n = 0; n < nbuf; ++n) {
		if ((error = callback(&buf[n], info)) < 0) {
			count = error;
			break;
		}
		count += error;
	}
	return count;
}

/*
 * buf_drop_clean: destroy every clean, idle buffer -- the cache's
 * counterpart of /proc/sys/vm/drop_caches, so that cold-cache measurements
 * are honest.  Not in the seed (the kernel leaves that to the VM).  A
 * buffer we can lock without sleeping sits on a free queue; only those on
 * BQUEUE_CLEAN with memory and no filesystem dependencies go.  Dirty,
 * LOCKED, held (bqhold) and busy buffers stay.  Returns the number
 * dropped.  May be called from any thread; takes buffer locks NOWAIT only.
 */
static int
buf_drop_one(struct buf *bp, void *arg)
{
	(void)arg;
	if (BUF_LOCK(bp, LK_EXCLUSIVE | LK_NOWAIT) != 0)
		return 0;
	if (bp->b_qindex != BQUEUE_CLEAN || bp->b_dep != NULL ||
	    bp->b_bufsize == 0 || ALOAD(bp->b_refs) != 0) {
		BUF_UNLOCK(bp);
		return 0;
	}
	bremfree(bp);
	bp->b_flags |= B_RELBUF;
	brelse(bp);
	return 1;
}

long
buf_drop_clean(void)
{
	return scan_all_buffers(buf_drop_one, NULL);
}

/* Zero a locked buffer and mark it valid, as if it had been read. */
void
vfs_bio_clrbuf(struct buf *bp)
{
	bp->b_flags &= ~(B_INVAL | B_EINTR | B_ERROR | B_PARTIAL);
	if (bp->b_bufsize)
		memset(bp->b_data, 0, (size_t)bp->b_bufsize);
	bp->b_flags |= B_CACHE;
	bp->b_resid = 0;
}

/* ---- pbufs (vfs_cluster) ------------------------------------------------ */

static struct buf *
pbuf_alloc(void)
{
	struct buf *bp = calloc(1, sizeof(*bp));

	if (bp == NULL)
		panic("getpbuf: out of memory");
	initbufbio(bp);
	bp->b_cmd = BUF_CMD_DONE;
	bp->b_qindex = BQUEUE_NONE;
	BUF_LOCK(bp, LK_EXCLUSIVE);
	return bp;
}

struct buf *
trypbuf(int *pfreecnt)
{
	int n;

	if (pfreecnt) {
		do {
			n = ALOAD(*pfreecnt);
			if (n <= 0)
				return NULL;
		} while (!ACMPSET(*pfreecnt, n, n - 1));
	}
	return pbuf_alloc();
}

struct buf *
getpbuf(int *pfreecnt)
{
	struct buf *bp;

	while ((bp = trypbuf(pfreecnt)) == NULL) {
		tsleep_interlock(pfreecnt, 0);
		if (ALOAD(*pfreecnt) <= 0)
			tsleep(pfreecnt, PINTERLOCKED, "pbufwt", hz);
	}
	return bp;
}

/* Release a pbuf; any thread may call this once the lock is the kernel's. */
void
relpbuf(struct buf *bp, int *pfreecnt)
{
	BUF_UNLOCK(bp);
	uninitbufbio(bp);
	free(bp);
	if (pfreecnt) {
		AADD(*pfreecnt, 1);
		wakeup(pfreecnt);
	}
}

void
buf_print(const struct buf *bp, const char *why)
{
	kprintf("%s: bp %p vp %p loff %jd flags %08x q %d cmd %d bufsize %d "
	    "bcount %d resid %d error %d refs %d bio2 %jd\n", why,
	    (const void *)bp, (void *)bp->b_vp, (intmax_t)bp->b_loffset,
	    bp->b_flags, bp->b_qindex, bp->b_cmd, bp->b_bufsize, bp->b_bcount,
	    bp->b_resid, bp->b_error, ALOAD(((struct buf *)bp)->b_refs),
	    (intmax_t)bp->b_bio2.bio_offset);
}
