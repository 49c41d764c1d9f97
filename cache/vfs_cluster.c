/*
 * vfs_cluster.c - write clustering and read-ahead: the port of DragonFly
 * BSD's sys/kern/vfs_cluster.c.
 *
 * This module owns the cluster pbufs: physical-I/O headers that carry one
 * device transfer for several buffers of one vnode.  A cluster's data is
 * never copied: the pbuf's b_xiov lists the children's b_data, the device
 * moves them with one vectored request, and cluster_callback() completes
 * every child as if it had been written or read alone.
 *
 *   cluster_awrite  a dirty buffer and the dirty B_CLUSTEROK buffers that
 *                   follow it (adjacent in the file and on the device) leave
 *                   as one write of at most MAXPHYS (the daemons, vfsync).
 *   cluster_write   bdwrite for sequential writers, pushing each completed
 *                   run at once (write-behind).
 *   cluster_readx   bread that reads the block clustered with its
 *                   neighbours, marks the last block of each window B_RAM,
 *                   and when a reader reaches a B_RAM block starts the next
 *                   window asynchronously.
 *
 * The kernel builds clusters out of VM pages mapped into the pbuf's KVA;
 * here there are no pages, so every page-related test of the original
 * (B_VMIO, bogus_page, partially valid pages, page busying) is replaced by
 * its buffer-level meaning: a buffer is either fully valid (B_CACHE) or
 * not, and the iovec array is the mapping.  docs/port-map.md lists what
 * changed, function by function.
 *
 * Locking: every child is locked (BUF_LOCK) and off its queue while in a
 * cluster, then handed to the kernel (BUF_KERNPROC) so the completion
 * thread can release it.  Neighbours are only ever taken non-blocking
 * (FINDBLK_NBLOCK / GETBLK_NOWAIT): we already hold one buffer lock, and
 * waiting for a second could deadlock against a thread doing the same in
 * the other direction.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "cache/buf.h"
#include "cache/bufstats.h"
#include "cache/vfs_bio_int.h"
#include "cache/vfs_cluster.h"
#include "cache/vnode.h"

int write_behind = 1;
long write_behind_minfilesize = 10L * 1024 * 1024;
int max_readahead = 2 * 1024 * 1024;
/* A fixed pool: enough for MAXPHYS clusters to fill any sane queue depth. */
int cluster_pbuf_freecnt = 256;

static struct buf *cluster_rbuild(struct vnode *vp, off_t filesize,
	    off_t loffset, off_t doffset, int blksize, int run,
	    struct buf *fbp);
static void cluster_callback(struct bio *bio);
static void cluster_setram(struct buf *bp);
static int cluster_wbuild(struct vnode *vp, struct buf **bpp, int blksize,
	    off_t start_loffset, int bytes);

/*
 * The largest cluster for BLKSIZE-byte children: MAXPHYS (the kernel's
 * vmaxiosize), and no more iovecs than one vectored device request takes.
 */
static int
cluster_maxiosize(int blksize)
{
	int bytes = MAXPHYS;

	if (bytes / blksize > IOV_MAX)
		bytes = IOV_MAX * blksize;
	return bytes;
}

/*
 * VOP_BMAP for a read: device offset of LOFFSET and the bytes stored
 * contiguously from there (this block included).  A device vnode without
 * a bmap maps identically.
 */
static int
cluster_vop_bmap(struct vnode *vp, off_t loffset, off_t *doffsetp,
    int *runp, buf_cmd_t cmd)
{
	*runp = 0;
	if (vp->v_ops != NULL && vp->v_ops->vop_bmap != NULL)
		return vp->v_ops->vop_bmap(vp, loffset, doffsetp, runp, NULL,
		    cmd);
	if (vp->v_flag & VDEVVP) {
		*doffsetp = loffset;
		*runp = MAXPHYS;
		return 0;
	}
	*doffsetp = NOOFFSET;
	return 0;
}

/*
 * Cache BP's device offset in b_bio2 if it is not known yet (what the
 * kernel's bdwrite and cluster_collectbufs do), so write adjacency can be
 * judged.  It stays NOOFFSET for unallocated (delayed allocation) blocks.
 */
static void
cluster_bmap_buf(struct vnode *vp, struct buf *bp)
{
	off_t doffset;
	int run;

	if (bp->b_bio2.bio_offset != NOOFFSET)
		return;
	if (cluster_vop_bmap(vp, bp->b_loffset, &doffset, &run,
	    BUF_CMD_WRITE) == 0)
		bp->b_bio2.bio_offset = doffset;
}

/*
 * Set up pbuf BP as an empty cluster of at most MAXCHILD children with
 * completion cluster_callback.  TRACK is referenced until every child is
 * completed, so a drain on it (vfsync) cannot return while children are
 * still being finished or re-dirtied.  Returns ENOMEM (BP untouched).
 */
static int
cluster_pbuf_setup(struct buf *bp, int maxchild, struct bio_track *track)
{
	struct iovec *iov;

	iov = calloc((size_t)maxchild, sizeof(*iov));
	if (iov == NULL)
		return ENOMEM;
	bp->b_flags |= B_CLUSTER | B_BNOCLIP;
	bp->b_bcount = 0;
	bp->b_bufsize = 0;
	bp->b_xiov = iov;
	bp->b_xiovcnt = 0;
	bp->b_bio1.bio_done = cluster_callback;
	bp->b_bio1.bio_caller_info1.cluster_head = NULL;
	bp->b_bio1.bio_caller_info2.cluster_tail = NULL;
	bp->b_bio1.bio_caller_info3.ptr = track;
	bio_track_ref(track);
	return 0;
}

/* Add TBP's BLKSIZE bytes at the end of cluster BP's transfer. */
static void
cluster_add_child(struct buf *bp, struct buf *tbp, int blksize)
{
	struct iovec *iov = (struct iovec *)(uintptr_t)bp->b_xiov;

	iov[bp->b_xiovcnt].iov_base = tbp->b_data;
	iov[bp->b_xiovcnt].iov_len = (size_t)blksize;
	bp->b_xiovcnt++;
	bp->b_bcount += blksize;
	bp->b_bufsize += blksize;
	BUF_KERNPROC(tbp);
	cluster_append(&bp->b_bio1, tbp);
}

/* ---- The sequential heuristic (the kernel's vn_read side) ------------- */

void
cluster_seq_init(struct cluster_seq *cs)
{
	/* As falloc(): a fresh file starts out presumed sequential. */
	cs->cs_seqcount = 1;
	cs->cs_nextoff = 0;
}

int
sequential_heuristic(struct cluster_seq *cs, off_t offset, size_t resid)
{
	int seq;

	if ((offset == 0 && cs->cs_seqcount > 0) ||
	    offset == cs->cs_nextoff) {
		seq = cs->cs_seqcount + (int)((resid + BKVASIZE - 1) / BKVASIZE);
		if (seq > IO_SEQMAX)
			seq = IO_SEQMAX;
		cs->cs_seqcount = seq;
		return seq;
	}
	/* A seek: fall back quickly so random readers get no read-ahead. */
	cs->cs_seqcount = cs->cs_seqcount > 1 ? 1 : 0;
	return 0;
}

void
cluster_seq_advance(struct cluster_seq *cs, off_t endoff)
{
	cs->cs_nextoff = endoff;
}

/* ---- Reads ---------------------------------------------------------- */

/*
 * Issue read-ahead from LOFFSET for up to MAXRA blocks, as asynchronous
 * (clustered where possible) reads of blocks that are neither cached nor
 * busy.  Stops at the first block it cannot take at once.
 */
static void
cluster_readahead(struct vnode *vp, off_t filesize, off_t loffset,
    int blksize, int maxra, int maxrbuild)
{
	struct buf *rbp;
	off_t doffset;
	int burstbytes;
	int nblks;

	while (maxra > 0) {
		rbp = getblk(vp, loffset, blksize,
		    GETBLK_SZMATCH | GETBLK_NOWAIT, 0);
		if (rbp == NULL)
			return;
		if (rbp->b_flags & (B_CACHE | B_DELWRI)) {
			bqrelse(rbp);
			return;
		}
		/* A bmap failure here is not the caller's error. */
		if (cluster_vop_bmap(vp, loffset, &doffset, &burstbytes,
		    BUF_CMD_READ) != 0 || doffset == NOOFFSET) {
			rbp->b_flags |= B_INVAL;
			brelse(rbp);
			return;
		}
		nblks = maxra < maxrbuild ? maxra : maxrbuild;
		if (nblks > burstbytes / blksize)
			nblks = burstbytes / blksize;

		rbp->b_cmd = BUF_CMD_READ;
		cluster_setram(rbp);
		if (nblks > 1) {
			rbp = cluster_rbuild(vp, filesize, loffset, doffset,
			    blksize, nblks, rbp);
		} else {
			rbp->b_bio2.bio_offset = doffset;
		}
		rbp->b_flags &= ~(B_ERROR | B_INVAL);
		BUF_KERNPROC(rbp);
		loffset += rbp->b_bcount;
		maxra -= rbp->b_bcount / blksize;
		BUFCOUNT(readahead, 1);
		vn_strategy(vp, &rbp->b_bio1);
		/* rbp may be gone already */
	}
}

int
cluster_readx(struct vnode *vp, off_t filesize, off_t loffset, int blksize,
    size_t minreq, size_t maxreq, struct buf **bpp)
{
	struct buf *bp, *reqbp;
	off_t doffset;
	int maxra, maxrbuild;
	int burstbytes;
	int error = 0;
	int nblks;
	int i;

	/*
	 * How much to read ahead (maxra blocks): the sequential heuristic's
	 * MAXREQ, raised to what the caller is about to read anyway
	 * (MINREQ), capped by max_readahead, never beyond FILESIZE (past it a
	 * filesystem may use another block size).
	 */
	if (maxreq < minreq)
		maxreq = minreq;
	if (maxreq > (size_t)max_readahead) {
		maxreq = (size_t)max_readahead;
		if (maxreq > 16 * 1024 * 1024)
			maxreq = 16 * 1024 * 1024;
	}
	if (maxreq < (size_t)blksize)
		maxreq = (size_t)blksize;
	if (loffset + (off_t)maxreq > filesize)
		maxreq = loffset > filesize ? 0 : (size_t)(filesize - loffset);
	maxra = (int)(maxreq / (size_t)blksize);

	if (*bpp != NULL)
		reqbp = bp = *bpp;
	else
		*bpp = reqbp = bp = getblk(vp, loffset, blksize, 0, 0);
	maxrbuild = cluster_maxiosize(blksize) / blksize;

	if (bp->b_flags & B_CACHE) {
		/*
		 * A hit.  Read ahead only for a sequential reader that has
		 * just reached a read-ahead mark.
		 */
		if (maxra <= 1 || (bp->b_flags & B_RAM) == 0)
			return 0;
		bp->b_flags &= ~B_RAM;

		/*
		 * Find the first block of the window that is not cached.
		 * In the steady state every block but the last of the window
		 * was read by the previous trigger, so probing the
		 * second-to-last first keeps this O(1).
		 */
		if (findblk(vp, loffset + (off_t)(maxra - 2) * blksize,
		    FINDBLK_TEST) != NULL)
			i = maxra - 1;
		else
			i = 1;
		while (i < maxra) {
			if (findblk(vp, loffset + (off_t)i * blksize,
			    FINDBLK_TEST) == NULL)
				break;
			++i;
		}
		if (i >= maxra)
			return 0;

		/* Keep the full window size: shrinking it would compound. */
		loffset += (off_t)i * blksize;
		reqbp = bp = NULL;
		if (loffset >= filesize)
			return 0;
		if (loffset + (off_t)maxra * blksize > filesize)
			maxra = (int)((filesize - loffset) / blksize);
	} else {
		/* A miss: the caller's block is read synchronously. */
		KASSERT(bp->b_loffset != NOOFFSET,
		    ("cluster_readx: no buffer offset"));
		bp->b_cmd = BUF_CMD_READ;
		bp->b_bio1.bio_done = biodone_sync;
		__atomic_fetch_or(&bp->b_bio1.bio_flags, BIO_SYNC,
		    __ATOMIC_RELAXED);

		nblks = maxra < maxrbuild ? maxra : maxrbuild;
		if (nblks > 1 &&
		    cluster_vop_bmap(vp, loffset, &doffset, &burstbytes,
		    BUF_CMD_READ) == 0 && doffset != NOOFFSET &&
		    (nblks = nblks < burstbytes / blksize ? nblks :
		    burstbytes / blksize) > 1) {
			bp = cluster_rbuild(vp, filesize, loffset, doffset,
			    blksize, nblks, bp);
			loffset += bp->b_bcount;
			maxra -= bp->b_bcount / blksize;
		} else {
			cluster_setram(bp);
			loffset += blksize;
			--maxra;
		}
	}

	/*
	 * Issue bp: the caller's buffer alone (synchronous) or a cluster
	 * carrying it (asynchronous; the caller's buffer still completes
	 * through biodone_sync).  Either way bp is not ours afterwards.
	 */
	if (bp != NULL) {
		bp->b_flags &= ~(B_ERROR | B_INVAL);
		if (bp->b_flags & B_CLUSTER)
			BUFCOUNT(clusterreads, 1);
		vn_strategy(vp, &bp->b_bio1);
		bp = NULL;
	}

	cluster_readahead(vp, filesize, loffset, blksize, maxra, maxrbuild);

	if (reqbp != NULL) {
		KKASSERT(__atomic_load_n(&reqbp->b_bio1.bio_flags,
		    __ATOMIC_RELAXED) & BIO_SYNC);
		error = biowait(&reqbp->b_bio1, "clurd");
	}
	return error;
}

/*
 * Build a read cluster of up to RUN blocks starting with FBP (locked, not
 * valid, b_cmd set, already set up for synchronous or asynchronous
 * completion) at LOFFSET / DOFFSET.  Returns FBP alone when no cluster can
 * be made, else the cluster pbuf (asynchronous, owned by the kernel).
 * Following blocks join only if they can be had without sleeping, are not
 * valid, not dirty, and map to the next device offset.  The last block of
 * the run gets the read-ahead mark.
 */
static struct buf *
cluster_rbuild(struct vnode *vp, off_t filesize, off_t loffset,
    off_t doffset, int blksize, int run, struct buf *fbp)
{
	struct buf *bp, *tbp;
	off_t boffset;
	int maxiosize = cluster_maxiosize(blksize);
	int i;

	while (loffset + (off_t)run * blksize > filesize)
		--run;

	tbp = fbp;
	tbp->b_bio2.bio_offset = doffset;
	if (run <= 1)
		return tbp;

	/* Reads never wait for a pbuf: a plain read is always possible. */
	bp = trypbuf(&cluster_pbuf_freecnt);
	if (bp == NULL)
		return tbp;
	if (run > maxiosize / blksize)
		run = maxiosize / blksize;
	if (cluster_pbuf_setup(bp, run, &vp->v_track_read) != 0) {
		relpbuf(bp, &cluster_pbuf_freecnt);
		return tbp;
	}
	bp->b_cmd = BUF_CMD_READ;
	bp->b_loffset = loffset;
	bp->b_bio2.bio_offset = doffset;

	for (boffset = doffset, i = 0; i < run; ++i, boffset += blksize) {
		if (i != 0) {
			tbp = getblk(vp, loffset + (off_t)i * blksize, blksize,
			    GETBLK_SZMATCH | GETBLK_NOWAIT, 0);
			if (tbp == NULL)
				break;
			/*
			 * Valid, held for the journal, or dirty (never read
			 * over dirty data): end of the cluster.
			 */
			if (tbp->b_flags & (B_CACHE | B_LOCKED | B_DELWRI)) {
				bqrelse(tbp);
				break;
			}
			if (tbp->b_bio2.bio_offset == NOOFFSET) {
				tbp->b_bio2.bio_offset = boffset;
			} else if (tbp->b_bio2.bio_offset != boffset) {
				bqrelse(tbp);
				break;
			}
			if (i == run - 1)
				cluster_setram(tbp);
			tbp->b_flags &= ~(B_ERROR | B_INVAL);
		}
		tbp->b_cmd = BUF_CMD_READ;
		cluster_add_child(bp, tbp, blksize);
	}
	BUF_KERNPROC(bp);
	return bp;
}

/*
 * Completion of a read or write cluster, on the device's completion
 * thread.  The pbuf's outcome is every child's: on error each child gets
 * B_ERROR (a read child is then invalidated, a write child re-dirtied, by
 * bpdone/brelse); on success each is completed as a whole transfer.  The
 * children are completed in file order, then the pbuf is freed.
 */
static void
cluster_callback(struct bio *bio)
{
	struct buf *bp = bio->bio_buf;
	struct buf *tbp;
	struct bio_track *track;
	int error = 0;

	/* A short transfer is an error for the whole cluster. */
	if (bp->b_flags & B_ERROR)
		error = bp->b_error ? bp->b_error : EIO;
	else if (bp->b_resid != 0)
		error = EIO;

	while ((tbp = bio->bio_caller_info1.cluster_head) != NULL) {
		bio->bio_caller_info1.cluster_head = tbp->b_cluster_next;
		tbp->b_cluster_next = NULL;
		if (error) {
			tbp->b_flags |= B_ERROR;
			tbp->b_error = error;
			tbp->b_resid = tbp->b_bcount;
		} else {
			tbp->b_dirtyoff = tbp->b_dirtyend = 0;
			tbp->b_flags &= ~(B_ERROR | B_INVAL);
			tbp->b_error = 0;
			tbp->b_resid = 0;
			/*
			 * O_DIRECT buffers must not stay: bundirty at build
			 * time cannot know, so restore the release here.
			 */
			if (tbp->b_flags & B_DIRECT)
				tbp->b_flags |= B_RELBUF;
		}
		biodone(&tbp->b_bio1);
	}
	bio->bio_caller_info2.cluster_tail = NULL;

	track = bio->bio_caller_info3.ptr;
	free((void *)(uintptr_t)bp->b_xiov);
	bp->b_xiov = NULL;
	bp->b_xiovcnt = 0;
	relpbuf(bp, &cluster_pbuf_freecnt);
	if (track != NULL)
		bio_track_rel(track);
}

/* ---- Writes --------------------------------------------------------- */

/*
 * Write-behind: push the run [START_LOFFSET, START_LOFFSET + LEN) now,
 * or (write_behind 2) the run before it, so the newest run may still be
 * re-written in cache.  Small files are left to the daemons.
 */
static int
cluster_wbuild_wb(struct vnode *vp, int blksize, off_t start_loffset,
    int len, off_t filesize)
{
	int r = 0;

	switch (ALOAD(write_behind)) {
	case 2:
		if (start_loffset < len)
			break;
		start_loffset -= len;
		__attribute__((fallthrough));
	case 1:
		if (filesize >= ALOAD(write_behind_minfilesize))
			r = cluster_wbuild(vp, NULL, blksize, start_loffset,
			    len);
		break;
	default:
		break;
	}
	return r;
}

/* The device offset a block must have to follow PREV on the device. */
static off_t
cluster_next_doffset(off_t prev, int blksize)
{
	return prev == NOOFFSET ? NOOFFSET : prev + blksize;
}

void
cluster_write(struct buf *bp, off_t filesize, int blksize, int seqcount)
{
	struct vnode *vp = bp->b_vp;
	off_t loffset = bp->b_loffset;
	off_t boffset, doffset;
	int maxclen, cursize;
	int run;

	KASSERT(loffset != NOOFFSET, ("cluster_write: no buffer offset"));

	/* Writing from the start of the file: forget the old state. */
	if (loffset == 0) {
		vp->v_lasta = NOOFFSET;
		vp->v_clen = 0;
		vp->v_cstart = 0;
		vp->v_lastw = 0;
	}
	/* BP is released below: remember its device offset now. */
	cluster_bmap_buf(vp, bp);
	boffset = bp->b_bio2.bio_offset;

	if (vp->v_clen == 0 || loffset != vp->v_lastw + blksize ||
	    boffset != cluster_next_doffset(vp->v_lasta, blksize)) {
		if (vp->v_clen != 0) {
			/*
			 * Not the next block of the pending run (a seek, or
			 * not contiguous on the device): push that run if the
			 * writer is sequential, otherwise leave it to the
			 * daemons, which may still cluster it.  The kernel's
			 * VOP_REALLOCBLKS attempt has no counterpart here:
			 * delayed allocation already places runs together.
			 */
			cursize = (int)(vp->v_lastw - vp->v_cstart) + blksize;
			if (seqcount > 0)
				cluster_wbuild_wb(vp, blksize, vp->v_cstart,
				    cursize, filesize);
		}
		/*
		 * Consider beginning a run here.  Its length is what the
		 * device layout allows (the whole I/O size for unallocated
		 * blocks, which the filesystem places on flush).
		 */
		maxclen = cluster_maxiosize(blksize);
		if (boffset != NOOFFSET &&
		    cluster_vop_bmap(vp, loffset, &doffset, &run,
		    BUF_CMD_WRITE) == 0 && doffset == boffset &&
		    run < maxclen)
			maxclen = run;
		vp->v_clen = maxclen > blksize ? maxclen - blksize : 0;
		vp->v_cstart = vp->v_clen == 0 ? loffset + blksize : loffset;
		bdwrite(bp);
	} else if (loffset == vp->v_cstart + vp->v_clen) {
		/* The run is complete: write it now if sequential. */
		bdwrite(bp);
		if (seqcount > 1)
			cluster_wbuild_wb(vp, blksize, vp->v_cstart,
			    vp->v_clen + blksize, filesize);
		vp->v_clen = 0;
		vp->v_cstart = loffset + blksize;
	} else if (buf_dirty_count_severe() &&
	    loffset + blksize < filesize) {
		/*
		 * Dirty memory is short: start this one now.  Not the
		 * partial last block of the file, which is likely to be
		 * written again.
		 */
		bawrite(bp);
	} else {
		/* In the middle of a run: delay. */
		bdwrite(bp);
	}
	vp->v_lastw = loffset;
	vp->v_lasta = boffset;
}

/*
 * The clustered bawrite(): BP (locked, off its queue, usually B_DELWRI)
 * is written, together with the dirty buffers that follow it when it is
 * B_CLUSTEROK on a VCLUSTEROK vnode.  Consumes BP.  Returns the bytes
 * queued for writing.  May sleep ("pbufwt").
 */
int
cluster_awrite(struct buf *bp)
{
	struct vnode *vp;
	int total;

	if ((bp->b_flags & B_CLUSTEROK) == 0 || bp->b_vp == NULL ||
	    (bp->b_vp->v_flag & VCLUSTEROK) == 0) {
		total = bp->b_bufsize;
		bawrite(bp);
		return total;
	}
	/*
	 * Once cluster_wbuild has let BP go it still walks the vnode's buffer
	 * index, with no buffer of the vnode locked: hold a write-tracking
	 * reference so that vinvalbuf(), which waits for v_track_write, cannot
	 * finish and let the filesystem free the vnode under us (the kernel
	 * holds the vnode instead).  BP is locked, so the vnode is alive now.
	 */
	vp = bp->b_vp;
	bio_track_ref(&vp->v_track_write);
	total = cluster_wbuild(vp, &bp, bp->b_bcount, bp->b_loffset,
	    cluster_maxiosize(bp->b_bcount));
	if (bp != NULL)
		bawrite(bp);
	bio_track_rel(&vp->v_track_write);
	return total;
}

/*
 * May TBP (locked) follow cluster BP as its child at byte I of the
 * cluster?  Same kind, same size, contiguous on the device (or, for an
 * unallocated cluster, unallocated as well).
 */
static bool
cluster_wcompatible(struct vnode *vp, struct buf *bp, struct buf *tbp,
    int i, int blksize)
{
	if ((tbp->b_flags & (B_CLUSTEROK | B_INVAL | B_DELWRI |
	    B_NEEDCOMMIT | B_LOCKED)) !=
	    (B_DELWRI | B_CLUSTEROK | (bp->b_flags & B_NEEDCOMMIT)))
		return false;
	if (tbp->b_bcount != blksize || tbp->b_cmd != BUF_CMD_DONE)
		return false;
	cluster_bmap_buf(vp, tbp);
	if (bp->b_bio2.bio_offset == NOOFFSET) {
		if (tbp->b_bio2.bio_offset != NOOFFSET)
			return false;
	} else if (tbp->b_bio2.bio_offset != bp->b_bio2.bio_offset + i) {
		return false;
	}
	/* The dependency check must come last: passing it commits us. */
	if (tbp->b_dep != NULL && buf_checkwrite(tbp))
		return false;
	return true;
}

/*
 * Advance *LOFFP (and shrink *BYTESP to match) to the first dirty buffer
 * of VP on the BLKSIZE grid from *LOFFP, within *BYTESP; false if there is
 * none.  The seed probes every block of the range with findblk(); in a
 * cache full of clean buffers that is a tree search and a lock try for
 * each of up to MAXPHYS / BLKSIZE blocks per cluster, the bulk of an
 * fsync's cost.  One search of the dirty tree finds the same buffers.
 */
static bool
cluster_skip_clean(struct vnode *vp, off_t *loffp, int *bytesp, int blksize)
{
	off_t base = *loffp, off = base, skip;

	for (;;) {
		if (!vn_next_dirty(vp, &off) || off - base >= *bytesp)
			return false;
		skip = (off - base) % blksize;
		if (skip == 0)
			break;
		off += blksize - skip;		/* off the grid: next slot */
	}
	*bytesp -= (int)(off - base);
	*loffp = off;
	return *bytesp > 0;
}

/*
 * Write the dirty buffers of VP in [START_LOFFSET, START_LOFFSET + BYTES)
 * as clusters of contiguous BLKSIZE-byte buffers.  If BPP is not NULL,
 * *BPP (locked, off its queue) is the buffer at START_LOFFSET: it is
 * always written and *BPP is set to NULL.  Other buffers are taken only if
 * they can be locked without sleeping and are dirty, clusterable and not
 * held by the journal (B_LOCKED) or by a dependency (checkwrite).  A
 * buffer that cannot be clustered is written alone.  Returns the bytes
 * queued.  May sleep waiting for a pbuf ("pbufwt").
 */
static int
cluster_wbuild(struct vnode *vp, struct buf **bpp, int blksize,
    off_t start_loffset, int bytes)
{
	struct buf *bp, *tbp;
	int maxiosize = cluster_maxiosize(blksize);
	int totalwritten = 0;
	int maxchild;
	int i;

	while (bytes > 0) {
		if (bpp != NULL && (*bpp)->b_loffset == start_loffset) {
			tbp = *bpp;
			*bpp = NULL;
			bpp = NULL;
		} else {
			if (!cluster_skip_clean(vp, &start_loffset, &bytes,
			    blksize))
				break;
			tbp = findblk(vp, start_loffset, FINDBLK_NBLOCK);
			if (tbp == NULL ||
			    (tbp->b_flags & (B_LOCKED | B_INVAL | B_DELWRI)) !=
			    B_DELWRI ||
			    (tbp->b_dep != NULL && buf_checkwrite(tbp))) {
				if (tbp != NULL)
					BUF_UNLOCK(tbp);
				start_loffset += blksize;
				bytes -= blksize;
				continue;
			}
			bremfree(tbp);
		}
		KKASSERT(tbp->b_cmd == BUF_CMD_DONE);
		cluster_bmap_buf(vp, tbp);

		/* Alone: not clusterable, odd size, or nothing to join. */
		maxchild = (bytes < maxiosize ? bytes : maxiosize) / blksize;
		bp = NULL;
		if ((tbp->b_flags & B_CLUSTEROK) == 0 ||
		    tbp->b_bcount != blksize || maxchild <= 1 ||
		    (bp = getpbuf(&cluster_pbuf_freecnt)) == NULL ||
		    cluster_pbuf_setup(bp, maxchild, &vp->v_track_write) != 0) {
			if (bp != NULL)
				relpbuf(bp, &cluster_pbuf_freecnt);
			totalwritten += tbp->b_bufsize;
			bawrite(tbp);
			start_loffset += blksize;
			bytes -= blksize;
			continue;
		}

		bp->b_loffset = tbp->b_loffset;
		bp->b_bio2.bio_offset = tbp->b_bio2.bio_offset;
		bp->b_flags |= tbp->b_flags & B_NEEDCOMMIT;

		/*
		 * Collect the dirty buffers that follow.  The first one is
		 * committed already (our caller's, or one we took off its
		 * queue); the scan stops at the first that does not fit.
		 */
		for (i = 0; i < bytes && i < maxiosize;
		    i += blksize, start_loffset += blksize) {
			if (i != 0) {
				tbp = findblk(vp, start_loffset,
				    FINDBLK_NBLOCK);
				if (tbp == NULL)
					break;
				if (!cluster_wcompatible(vp, bp, tbp, i,
				    blksize)) {
					BUF_UNLOCK(tbp);
					break;
				}
				bremfree(tbp);
			}
			/*
			 * The child stays B_DELWRI (on the dirty tree) until
			 * bpdone: un-dirtied on success, kept on error.
			 */
			tbp->b_flags &= ~B_ERROR;
			tbp->b_cmd = BUF_CMD_WRITE;
			cluster_add_child(bp, tbp, blksize);
			if (tbp->b_dep != NULL)
				buf_start(tbp);
		}

		totalwritten += bp->b_bcount;
		bp->b_dirtyoff = 0;
		bp->b_dirtyend = bp->b_bcount;
		bp->b_cmd = BUF_CMD_WRITE;
		BUFCOUNT(clusterwrites, 1);
		BUFCOUNT(clusterbufs, bp->b_xiovcnt);
		bsetrunningbufspace(bp, bp->b_bcount);
		BUF_KERNPROC(bp);
		vn_strategy(vp, &bp->b_bio1);
		/* bp may be gone already */
		bytes -= i;
	}
	return totalwritten;
}

/* ---- Helpers -------------------------------------------------------- */

void
cluster_append(struct bio *bio, struct buf *tbp)
{
	tbp->b_cluster_next = NULL;
	if (bio->bio_caller_info1.cluster_head == NULL) {
		bio->bio_caller_info1.cluster_head = tbp;
		bio->bio_caller_info2.cluster_tail = tbp;
	} else {
		bio->bio_caller_info2.cluster_tail->b_cluster_next = tbp;
		bio->bio_caller_info2.cluster_tail = tbp;
	}
}

/* Mark BP as the block whose cached read starts the next read-ahead. */
static void
cluster_setram(struct buf *bp)
{
	bp->b_flags |= B_RAM;
}
