/*
 * dev_strategy.c - the bottom of the buffer cache: handing a bio to the
 * blockdev and turning its completion into biodone(), plus the "device
 * vnode" whose logical offsets are device offsets.
 *
 * This module owns the use of struct buf's b_devreq: one device request
 * per buffer I/O, alive from submission until the completion callback,
 * which calls biodone().  It runs on the blockdev completion thread, or,
 * for a synchronous read (BIO_SYNC), on the thread waiting in biowait().
 */
#include <errno.h>
#include <string.h>

#include "cache/vfs_bio_int.h"

static void
dev_strategy_done(struct blockdev_req *req)
{
	struct bio *bio = req->r_arg;
	struct buf *bp = bio->bio_buf;

	if (req->r_error) {
		bp->b_error = req->r_error;
		bp->b_flags |= B_ERROR;
		if (req->r_op == BLOCKDEV_READ)
			BUFCOUNT(readerrors, 1);
		else if (req->r_op == BLOCKDEV_WRITE)
			BUFCOUNT(writeerrors, 1);
	} else if (req->r_op == BLOCKDEV_READ) {
		BUFCOUNT(bytesread, (long)req->r_bytes);
	} else if (req->r_op == BLOCKDEV_WRITE) {
		BUFCOUNT(byteswritten, (long)req->r_bytes);
	}
	bp->b_resid = req->r_op == BLOCKDEV_FLUSH ? 0 :
	    bp->b_bcount - (int)req->r_bytes;
	biodone(bio);
}

/* Complete BIO at once with ERROR (refused or impossible request). */
static void
dev_strategy_fail(struct bio *bio, int error)
{
	struct buf *bp = bio->bio_buf;

	bp->b_error = error;
	bp->b_flags |= B_ERROR;
	bp->b_resid = bp->b_bcount;
	biodone(bio);
}

void
dev_strategy(struct blockdev *bd, struct bio *bio)
{
	struct buf *bp = bio->bio_buf;
	struct blockdev_req *req = &bp->b_devreq;
	int error;

	memset(req, 0, sizeof(*req));
	switch (bp->b_cmd) {
	case BUF_CMD_READ:
		req->r_op = BLOCKDEV_READ;
		break;
	case BUF_CMD_WRITE:
		req->r_op = BLOCKDEV_WRITE;
		break;
	case BUF_CMD_FLUSH:
		req->r_op = BLOCKDEV_FLUSH;
		break;
	default:
		dev_strategy_fail(bio, EINVAL);
		return;
	}
	if (req->r_op != BLOCKDEV_FLUSH) {
		if (bio->bio_offset == NOOFFSET) {
			dev_strategy_fail(bio, EINVAL);
			return;
		}
		if (bp->b_xiovcnt > 0) {
			req->r_iov = bp->b_xiov;
			req->r_iovcnt = bp->b_xiovcnt;
		} else {
			bp->b_deviov.iov_base = bp->b_data;
			bp->b_deviov.iov_len = (size_t)bp->b_bcount;
			req->r_iov = &bp->b_deviov;
			req->r_iovcnt = 1;
		}
		req->r_offset = bio->bio_offset;
	}
	/*
	 * B_ORDERED: everything written before must be durable first.  The
	 * barrier is waited for here, in the submitting thread, because
	 * chaining the write from the completion thread could block that
	 * thread on a full device queue that only it can drain.
	 */
	if (req->r_op == BLOCKDEV_WRITE && (bp->b_flags & B_ORDERED)) {
		error = blockdev_flush(bd);
		if (error) {
			dev_strategy_fail(bio, error);
			return;
		}
	}
	/*
	 * A synchronous read: the thread submitting it is the one that will
	 * sleep in biowait(), which reaps it there (BLOCKDEV_REQ_WAITED).
	 */
	if (req->r_op == BLOCKDEV_READ && bio_is_sync(&bp->b_bio1))
		req->r_flags = BLOCKDEV_REQ_WAITED;
	req->r_done = dev_strategy_done;
	req->r_arg = bio;
	error = blockdev_submit(bd, req);
	if (error)
		dev_strategy_fail(bio, error);
}

/* The device vnode's strategy: bio1's offset is already the device's. */
static int
devvp_strategy(struct vnode *vp, struct bio *bio)
{
	struct bio *nbio = push_bio(bio);

	nbio->bio_offset = bio->bio_offset;
	dev_strategy(vp->v_bdev, nbio);
	return 0;
}

static int
devvp_bmap(struct vnode *vp, off_t loffset, off_t *doffsetp, int *runp,
    int *runb, buf_cmd_t cmd)
{
	(void)vp;
	(void)cmd;
	*doffsetp = loffset;
	if (runp)
		*runp = MAXPHYS;
	if (runb)
		*runb = MAXPHYS;
	return 0;
}

static const struct vop_ops devvp_ops = {
	.vop_strategy = devvp_strategy,
	.vop_bmap = devvp_bmap,
};

void
vn_devvp_init(struct vnode *vp, struct blockdev *bd)
{
	vn_init(vp, &devvp_ops, NULL);
	vp->v_bdev = bd;
	vp->v_flag |= VDEVVP | VCLUSTEROK;
}
