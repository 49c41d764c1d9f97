/*
 * vfs_bio_io.c - starting and finishing buffer I/O: bread/breadn/breadcb,
 * bwrite/bawrite/bdwrite, bdirty/bundirty/bheavy, vn_strategy, biodone and
 * bpdone, biowait, and the bio_track counts.  Part of the vfs_bio.c port
 * (lock order and buffer states: see vfs_bio.c).
 *
 * An I/O owns the buffer: a synchronous caller keeps the lock and waits in
 * biowait(); an asynchronous one hands the lock to the kernel
 * (BUF_KERNPROC) and biodone(), on the blockdev completion thread, releases
 * the buffer.  bpdone() is where a write's outcome changes the buffer's
 * state: success clears B_DELWRI, failure re-dirties it.
 */
#include <errno.h>

#include "cache/vfs_bio_int.h"

/* ---- reads ----------------------------------------------------------- */

/*
 * breadcb: like bread but asynchronous: on a miss the read is issued and
 * FUNC runs from biodone; on a hit FUNC runs now with BIO_DONE set.  FUNC
 * must call bpdone(bp, 0) unless BIO_DONE is set, then clear BIO_DONE and
 * dispose of the buffer.  Without FUNC a hit is simply released.
 */
void
breadcb(struct vnode *vp, off_t loffset, int size, int bflags,
    void (*func)(struct bio *), void *arg)
{
	struct buf *bp;

	bp = getblk(vp, loffset, size, 0, 0);

	if ((bp->b_flags & B_CACHE) == 0) {
		bread_start(bp, bflags, func, arg);
	} else if (func) {
		/* Synchronous callback: no race with BIO_DONE here. */
		bp->b_bio1.bio_caller_info1.ptr = arg;
		bp->b_bio1.bio_flags |= BIO_DONE;
		func(&bp->b_bio1);
	} else {
		bqrelse(bp);
	}
}

/*
 * bread_start: the miss half of breadcb, for a caller that already holds
 * BP locked (from getblk) and has seen it is not B_CACHE: issue the read
 * and return at once.  FUNC runs from biodone, usually on the completion
 * thread, with ARG in bio_caller_info1; it owns BP from then on and must
 * call bpdone(bp, 0) before it releases the buffer (without FUNC, biodone
 * finishes and releases it).  The caller must not touch BP after this
 * returns: it may be released already.
 */
void
bread_start(struct buf *bp, int bflags, biodone_t *func, void *arg)
{
	KKASSERT((bp->b_flags & B_CACHE) == 0);
	bp->b_flags &= ~(B_ERROR | B_EINTR | B_INVAL | B_NOTMETA);
	bp->b_flags |= bflags;
	bp->b_cmd = BUF_CMD_READ;
	bp->b_bio1.bio_done = func;
	bp->b_bio1.bio_caller_info1.ptr = arg;
	BUF_KERNPROC(bp);
	vn_strategy(bp->b_vp, &bp->b_bio1);
}

/*
 * breadnx: get the block (*BPP, or getblk if *BPP is NULL), read it if it
 * is not B_CACHE, and start asynchronous reads of the CNT read-ahead
 * blocks not yet in memory.  Returns 0 or the read's errno; *BPP is
 * returned locked either way.  Sleeps on "biord".
 */
int
breadnx(struct vnode *vp, off_t loffset, int size, int bflags,
    off_t *raoffset, int *rabsize, int cnt, struct buf **bpp)
{
	struct buf *bp, *rabp;
	int i;
	int rv = 0, readwait = 0;

	if (*bpp)
		bp = *bpp;
	else
		*bpp = bp = getblk(vp, loffset, size, 0, 0);

	if ((bp->b_flags & B_CACHE) == 0) {
		bp->b_flags &= ~(B_ERROR | B_EINTR | B_INVAL | B_NOTMETA);
		bp->b_flags |= bflags;
		bp->b_cmd = BUF_CMD_READ;
		bp->b_bio1.bio_done = biodone_sync;
		__atomic_or_fetch(&bp->b_bio1.bio_flags, BIO_SYNC,
		    __ATOMIC_RELAXED);
		vn_strategy(vp, &bp->b_bio1);
		++readwait;
	}

	for (i = 0; i < cnt; i++, raoffset++, rabsize++) {
		if (inmem(vp, *raoffset))
			continue;
		/*
		 * Deviation: the seed blocks here for a busy read-ahead
		 * buffer while holding BP; two readers reading ahead into each
		 * other's buffers would deadlock.  Read-ahead is a hint: skip
		 * a busy buffer (vfs_cluster does the same).
		 */
		rabp = getblk(vp, *raoffset, *rabsize, GETBLK_NOWAIT, 0);
		if (rabp == NULL)
			continue;

		if ((rabp->b_flags & B_CACHE) == 0) {
			rabp->b_flags &= ~(B_ERROR | B_EINTR | B_INVAL |
			    B_NOTMETA);
			rabp->b_flags |= bflags;
			rabp->b_cmd = BUF_CMD_READ;
			BUF_KERNPROC(rabp);
			BUFCOUNT(readahead, 1);
			vn_strategy(vp, &rabp->b_bio1);
		} else {
			brelse(rabp);
		}
	}
	if (readwait)
		rv = biowait(&bp->b_bio1, "biord");
	return rv;
}

/* ---- writes ---------------------------------------------------------- */

/*
 * bwrite: write the locked buffer and wait ("biows"), then brelse it.
 * Returns 0 or the write's errno (the buffer is then dirty again).  An
 * invalid buffer is released without I/O.
 */
int
bwrite(struct buf *bp)
{
	int error;

	if (bp->b_flags & B_INVAL) {
		brelse(bp);
		return 0;
	}
	if (BUF_LOCKINUSE(bp) == 0)
		panic("bwrite: buffer is not busy???");

	/*
	 * B_DELWRI stays set (the buffer stays on the vnode's dirty tree)
	 * until bpdone() sees the write succeed.
	 */
	bp->b_flags &= ~(B_ERROR | B_EINTR);
	if ((bp->b_flags & B_PARTIAL) == 0)	/* Deviation 28 */
		bp->b_flags |= B_CACHE;
	bp->b_cmd = BUF_CMD_WRITE;
	bp->b_error = 0;
	bp->b_bio1.bio_done = biodone_sync;
	__atomic_or_fetch(&bp->b_bio1.bio_flags, BIO_SYNC, __ATOMIC_RELAXED);

	bsetrunningbufspace(bp, bp->b_bufsize);
	vn_strategy(bp->b_vp, &bp->b_bio1);
	error = biowait(&bp->b_bio1, "biows");
	brelse(bp);
	return error;
}

/*
 * bawrite: start writing the locked buffer and return; biodone releases
 * it.  The lock is handed to the kernel.
 */
void
bawrite(struct buf *bp)
{
	if (bp->b_flags & B_INVAL) {
		brelse(bp);
		return;
	}
	if (BUF_LOCKINUSE(bp) == 0)
		panic("bawrite: buffer is not busy???");

	bp->b_flags &= ~(B_ERROR | B_EINTR);
	if ((bp->b_flags & B_PARTIAL) == 0)	/* Deviation 28 */
		bp->b_flags |= B_CACHE;
	bp->b_cmd = BUF_CMD_WRITE;
	bp->b_error = 0;
	KKASSERT(bp->b_bio1.bio_done == NULL);

	bsetrunningbufspace(bp, bp->b_bufsize);
	BUF_KERNPROC(bp);
	vn_strategy(bp->b_vp, &bp->b_bio1);
}

/*
 * bdwrite: mark the locked buffer dirty (and fully valid, unless it is
 * B_PARTIAL) and release it;
 * the daemons or an fsync write it later.  The block's device offset is
 * looked up now (vop_bmap), while whatever the lookup needs is likely
 * cached.  No I/O is started here.
 */
void
bdwrite(struct buf *bp)
{
	const struct vop_ops *ops;

	if (BUF_LOCKINUSE(bp) == 0)
		panic("bdwrite: buffer is not busy");

	if (bp->b_flags & B_INVAL) {
		brelse(bp);
		return;
	}
	bdirty(bp);
	if ((bp->b_flags & B_PARTIAL) == 0)	/* Deviation 28 */
		bp->b_flags |= B_CACHE;

	ops = bp->b_vp->v_ops;
	if (bp->b_bio2.bio_offset == NOOFFSET && ops->vop_bmap != NULL) {
		ops->vop_bmap(bp->b_vp, bp->b_loffset, &bp->b_bio2.bio_offset,
		    NULL, NULL, BUF_CMD_WRITE);
	}
	bqrelse(bp);
}

/*
 * buwrite: the kernel's "dirty the VM pages, keep the buffer clean".
 * There are no pages behind a buffer here, so this is bdwrite().
 */
void
buwrite(struct buf *bp)
{
	bdwrite(bp);
}

/*
 * bdirty: make the locked, off-queue buffer a delayed write: B_DELWRI,
 * onto the vnode's dirty tree, into the dirty counters.  Clears
 * B_NOCACHE and B_RELBUF.  Takes the v_token.
 */
void
bdirty(struct buf *bp)
{
	KASSERT(bp->b_qindex == BQUEUE_NONE,
	    ("bdirty: buffer %p still on queue %d", (void *)bp, bp->b_qindex));
	if (bp->b_flags & B_NOCACHE) {
		kprintf("bdirty: clearing B_NOCACHE on buf %p\n", (void *)bp);
		bp->b_flags &= ~B_NOCACHE;
	}
	if (bp->b_flags & B_INVAL)
		kprintf("bdirty: warning, dirtying invalid buffer %p\n",
		    (void *)bp);
	bp->b_flags &= ~B_RELBUF;

	if ((bp->b_flags & B_DELWRI) == 0) {
		lwkt_gettoken(&bp->b_vp->v_token);
		bp->b_flags |= B_DELWRI;
		reassignbuf(bp);
		lwkt_reltoken(&bp->b_vp->v_token);

		AADD(dirtybufcount, 1);
		AADD(dirtykvaspace, bp->b_bufsize);
		AADD(dirtybufspace, bp->b_bufsize);
		if (bp->b_flags & B_HEAVY) {
			AADD(dirtybufcounthw, 1);
			AADD(dirtybufspacehw, bp->b_bufsize);
		}
		bd_heatup();
	}
}

/*
 * bheavy: mark the buffer heavy-weight: flushing it needs work that may
 * itself need buffers (allocation, compression), so buf_daemon_hw, not
 * buf_daemon, writes it (DIRTY_HW queue).
 */
void
bheavy(struct buf *bp)
{
	if ((bp->b_flags & B_HEAVY) == 0) {
		bp->b_flags |= B_HEAVY;
		if (bp->b_flags & B_DELWRI) {
			AADD(dirtybufcounthw, 1);
			AADD(dirtybufspacehw, bp->b_bufsize);
		}
	}
}

/* bundirty: clear B_DELWRI (locked buffer), inverse of bdirty. */
void
bundirty(struct buf *bp)
{
	if (bp->b_flags & B_DELWRI) {
		lwkt_gettoken(&bp->b_vp->v_token);
		bp->b_flags &= ~B_DELWRI;
		reassignbuf(bp);
		lwkt_reltoken(&bp->b_vp->v_token);

		AADD(dirtybufcount, -1);
		AADD(dirtykvaspace, -bp->b_bufsize);
		AADD(dirtybufspace, -bp->b_bufsize);
		if (bp->b_flags & B_HEAVY) {
			AADD(dirtybufcounthw, -1);
			AADD(dirtybufspacehw, -bp->b_bufsize);
		}
		bd_signal(bd_dirty_weight(bp->b_bufsize));
	}
	bp->b_flags &= ~B_DEFERRED;
}

/* Count BYTES of the buffer's write as running I/O until biodone. */
void
bsetrunningbufspace(struct buf *bp, int bytes)
{
	bp->b_runningbufspace = bytes;
	if (bytes) {
		AADD(runningbufspace, bytes);
		AADD(runningbufcount, 1);
	}
}

/* ---- waiting for I/O ----------------------------------------------------- */

/*
 * Wait for b_bio1 to complete (BIO_DONE, set by biodone_sync), up to TO
 * ticks (0 = forever; a read completed on this thread is waited for
 * without the limit: the device always answers).  On return bpdone() has
 * run and the buffer is still locked.  Returns 0, EINTR, the I/O's errno,
 * or EWOULDBLOCK on timeout (the I/O then is probably still running).
 */
static int
_biowait(struct bio *bio, const char *wmesg, int to)
{
	struct buf *bp = bio->bio_buf;
	uint32_t flags;
	uint32_t nflags;
	int error;

	KKASSERT(bio == &bp->b_bio1);
	for (;;) {
		flags = __atomic_load_n(&bio->bio_flags, __ATOMIC_ACQUIRE);
		if (flags & BIO_DONE)
			break;
		/*
		 * Deviation: reads this thread submitted synchronously
		 * complete here, on this thread (dev_strategy); reap them
		 * before sleeping for anything another thread completes.
		 */
		if (blockdev_reap_own())
			continue;
		nflags = flags | BIO_WANT;
		tsleep_interlock(bio, 0);
		if (__atomic_compare_exchange_n(&bio->bio_flags, &flags,
		    nflags, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
			BUFCOUNT(biowaits, 1);
			if (wmesg == NULL)
				wmesg = bp->b_cmd == BUF_CMD_READ ?
				    "biord" : "biowr";
			error = tsleep(bio, PINTERLOCKED, wmesg, to);
			if (error)
				return error;
		}
	}

	KKASSERT(bp->b_cmd == BUF_CMD_DONE);
	__atomic_and_fetch(&bio->bio_flags, ~(BIO_DONE | BIO_SYNC),
	    __ATOMIC_RELAXED);
	if (bp->b_flags & B_EINTR)
		return EINTR;
	if (bp->b_flags & B_ERROR)
		return bp->b_error ? bp->b_error : EIO;
	return 0;
}

int
biowait(struct bio *bio, const char *wmesg)
{
	return _biowait(bio, wmesg, 0);
}

int
biowait_timeout(struct bio *bio, const char *wmesg, int to)
{
	return _biowait(bio, wmesg, to);
}

/* ---- I/O tracking --------------------------------------------------------- */

void
bio_track_ref(struct bio_track *track)
{
	__atomic_add_fetch(&track->bk_active, 1, __ATOMIC_SEQ_CST);
}

/*
 * Drop one tracked I/O.  The wanted bit is cleared only together with
 * the last reference, so the count can never be left at "wanted, zero".
 */
void
bio_track_rel(struct bio_track *track)
{
	int active;
	int desired;

	active = __atomic_load_n(&track->bk_active, __ATOMIC_RELAXED);
	if (active == 1 && ACMPSET(track->bk_active, 1, 0))
		return;

	for (;;) {
		desired = (active & 0x7FFFFFFF) - 1;
		if (desired)
			desired |= active & (int)BIO_TRACK_WANTED;
		if (__atomic_compare_exchange_n(&track->bk_active, &active,
		    desired, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
			if (desired & 0x40000000)
				panic("bio_track_rel: bad count: %p",
				    (void *)track);
			if (active & (int)BIO_TRACK_WANTED)
				wakeup(track);
			break;
		}
	}
}

/*
 * Wait ("trwait") until no I/O is tracked by TRACK.  The wanted bit is
 * set only while the count is non-zero.  Returns 0 or EWOULDBLOCK.
 */
int
bio_track_wait(struct bio_track *track, int slp_flags, int slp_timo)
{
	int active;
	int desired;
	int error;

	if (__atomic_load_n(&track->bk_active, __ATOMIC_ACQUIRE) == 0)
		return 0;

	error = 0;
	while ((active = __atomic_load_n(&track->bk_active,
	    __ATOMIC_ACQUIRE)) != 0) {
		desired = active | (int)BIO_TRACK_WANTED;
		tsleep_interlock(track, slp_flags);
		if (ACMPSET(track->bk_active, active, desired)) {
			error = tsleep(track, slp_flags | PINTERLOCKED,
			    "trwait", slp_timo);
			if (error)
				break;
		}
	}
	return error;
}

int
bio_track_active(const struct bio_track *track)
{
	return __atomic_load_n(&track->bk_active, __ATOMIC_RELAXED) &
	    0x7FFFFFFF;
}

/*
 * Count an I/O on TRACK for a layer that is bypassed (a strategy that
 * goes straight to a lower layer with a cached translation).
 */
void
bio_start_transaction(struct bio *bio, struct bio_track *track)
{
	bio->bio_track = track;
	bio_track_ref(track);
}

/* ---- issuing and completing -------------------------------------------- */

/*
 * vn_strategy: issue BIO on VP through its vop_strategy.  Marks
 * B_IOISSUED, tracks the I/O on v_track_read / v_track_write, and tells
 * the dependency hooks a write is starting.
 */
void
vn_strategy(struct vnode *vp, struct bio *bio)
{
	struct bio_track *track;
	struct buf *bp = bio->bio_buf;

	KKASSERT(bp->b_cmd != BUF_CMD_DONE);
	bp->b_flags |= B_IOISSUED;

	if (bp->b_cmd == BUF_CMD_READ) {
		track = &vp->v_track_read;
		BUFCOUNT(readsissued, 1);
	} else {
		track = &vp->v_track_write;
		if (bp->b_cmd == BUF_CMD_WRITE) {
			BUFCOUNT(writesissued, 1);
			if (bp->b_dep != NULL)
				buf_start(bp);
		}
	}
	KKASSERT((__atomic_load_n(&bio->bio_flags, __ATOMIC_RELAXED) &
	    BIO_DONE) == 0);
	bio->bio_track = track;
	bio_track_ref(track);
	vp->v_ops->vop_strategy(vp, bio);
}

/*
 * bpdone: finish the buffer once every bio layer is done.  A write that
 * failed re-dirties the buffer (unless B_INVAL); one that succeeded
 * clears B_DELWRI -- only now, so the buffer stays on the vnode's dirty
 * tree while the write runs.  A successful read sets B_CACHE.  With
 * ELSEIT the buffer is then released (brelse for junk or errors, bqrelse
 * otherwise), consuming the lock.
 */
void
bpdone(struct buf *bp, int elseit)
{
	buf_cmd_t cmd;

	KASSERT(BUF_LOCKINUSE(bp), ("bpdone: bp %p not busy", (void *)bp));
	KASSERT(bp->b_cmd != BUF_CMD_DONE, ("bpdone: bp %p already done!",
	    (void *)bp));

	cmd = bp->b_cmd;
	bp->b_cmd = BUF_CMD_DONE;

	if (cmd != BUF_CMD_READ && cmd != BUF_CMD_WRITE) {
		if (elseit)
			brelse(bp);
		return;
	}

	if (cmd == BUF_CMD_WRITE) {
		if ((bp->b_flags & (B_ERROR | B_INVAL)) == B_ERROR) {
			bp->b_flags &= ~B_NOCACHE;
			if (bp->b_vp)
				bdirty(bp);
		} else {
			if (bp->b_vp)
				bundirty(bp);
		}
	}

	/* The dependency hook may re-dirty the buffer. */
	if (bp->b_dep != NULL)
		buf_complete(bp);

	if (bp->b_vp && cmd == BUF_CMD_READ &&
	    (bp->b_flags & (B_INVAL | B_NOCACHE | B_ERROR)) == 0) {
		bp->b_flags |= B_CACHE;
		bp->b_flags &= ~B_PARTIAL;
	}

	if (elseit) {
		if (bp->b_flags &
		    (B_NOCACHE | B_INVAL | B_ERROR | B_RELBUF | B_DIRECT))
			brelse(bp);
		else
			bqrelse(bp);
	}
}

/*
 * biodone: complete BIO.  Releases the buffer's running-I/O charge, then
 * walks up the layers dropping their tracking; the first bio_done found
 * takes over (and may free the buffer).  With none, bpdone(bp, 1)
 * finishes and releases the buffer.  Called on the completion thread.
 */
void
biodone(struct bio *bio)
{
	struct buf *bp = bio->bio_buf;

	runningbufwakeup(bp);

	while (bio) {
		biodone_t *done_func;
		struct bio_track *track;

		if ((track = bio->bio_track) != NULL) {
			bio_track_rel(track);
			bio->bio_track = NULL;
		}
		if ((done_func = bio->bio_done) != NULL) {
			bio->bio_done = NULL;
			done_func(bio);
			return;
		}
		bio = bio->bio_prev;
	}
	bpdone(bp, 1);
}

/*
 * biodone_sync: the bio_done of synchronous I/O.  Finishes the buffer
 * without releasing it, sets BIO_DONE and wakes the biowait()er.
 */
void
biodone_sync(struct bio *bio)
{
	struct buf *bp = bio->bio_buf;
	uint32_t flags;
	uint32_t nflags;

	KKASSERT(bio == &bp->b_bio1);
	bpdone(bp, 0);

	flags = __atomic_load_n(&bio->bio_flags, __ATOMIC_RELAXED);
	for (;;) {
		nflags = (flags | BIO_DONE) & ~BIO_WANT;
		if (__atomic_compare_exchange_n(&bio->bio_flags, &flags,
		    nflags, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
			if (flags & BIO_WANT)
				wakeup(bio);
			break;
		}
	}
}
