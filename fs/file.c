/*
 * file.c - file data: read, write, truncate, fallocate, SEEK_DATA/HOLE,
 * and the data strategy that the buffer cache calls for file vnodes.
 *
 * This module owns the path of file data between the caller's memory and
 * the image:
 *   - flyfs_read / flyfs_write copy through data buffers of s_dbsize
 *     bytes cached on the inode's vnode (cluster_read with read-ahead for
 *     sequential readers, bdwrite / cluster_write for writers; O_DIRECT
 *     buffers are B_DIRECT and not kept);
 *   - delayed allocation: a write reserves space (fs_reserve_blocks) for
 *     each data block that has no place yet and marks the buffer B_RESV;
 *     the buffer is B_HEAVY, so buf_daemon_hw flushes it, and the
 *     strategy gives it a place then (allocate on flush);
 *   - the strategy (fs_file_vops): a read maps the transfer through the
 *     extent tree (holes and unwritten extents are zero-filled without
 *     I/O); a write maps or allocates, records new extents in a
 *     transaction whose commit waits for the data (ordered data), and
 *     sends the bytes to the device.  A transfer is one buffer or a
 *     cluster pbuf (b_xiov over its children, NOOFFSET bio2); it becomes
 *     one device request per physically contiguous piece ("sub-I/Os", each
 *     a pbuf of its own) and completes when the last piece does.
 *   - compression (compress.c, issue 6): before planning, every data block
 *     of a write transfer is encoded once (hole / raw / zstd, in parallel
 *     on the compression pool); zstd blocks become one compressed extent
 *     each (write_compressed); a read of one decodes it (fs_data_decode).
 *
 * INVARIANTS
 *   - bytes of a cached buffer past i_size are zero, and so are the bytes
 *     past i_size of the 4 KiB block holding i_size on the device: every
 *     path that moves EOF down zeroes them (truncate), every path that
 *     creates a buffer past EOF zero-fills it;
 *   - the extent tree maps nothing at or past roundup(i_size, 4 KiB)
 *     except unwritten extents (fallocate KEEP_SIZE) and the compressed
 *     record of the last data block;
 *   - ip->i_resv == (data block in blocks) x (number of B_RESV buffers),
 *     and those blocks are counted in s_resv_blocks;
 *   - every change of the extent tree of a range happens with the cached
 *     buffers of that range locked (the strategy holds them; truncate,
 *     punch and zero-range take them first), so a flush never sees its
 *     range remapped under it.
 *
 * LOCKING (see fs_int.h for the global order): i_lock (exclusive for
 * write, truncate, fallocate; shared for read and lseek) -> data buffer
 * locks -> transaction handle -> i_extlock -> metadata buffers.  The data
 * buffer locks sit above the handle: the strategy runs with its buffers
 * locked and then joins a transaction, which is safe because a commit
 * never waits for a data buffer lock, and nobody holding a handle waits
 * for one (truncate and punch invalidate buffers before they begin).
 */
#include <errno.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/extent.h"
#include "fs/fs_int.h"

/* The buffer holds a delayed-allocation reservation of one data block. */
#define B_RESV		B_VFSFLAG1

/* Log blocks one data transaction reserves; work is cut to fit. */
#define FILE_TX_BLOCKS	128

#define BLK_MASK	((uint64_t)FLYFS_BLOCK_SIZE - 1)

static inline uint64_t roundup4k(uint64_t x) { return (x + BLK_MASK) & ~BLK_MASK; }

static inline uint32_t dbsize(const struct fs_inode *ip)
{ return ip->i_fs->s_dbsize; }
static inline uint32_t dbblocks(const struct fs_inode *ip)
{ return ip->i_fs->s_dbsize >> FLYFS_BLOCK_SHIFT; }
static inline uint64_t db_down(const struct fs_inode *ip, uint64_t off)
{ return off & ~((uint64_t)dbsize(ip) - 1); }
static inline uint64_t db_up(const struct fs_inode *ip, uint64_t off)
{ return (off + dbsize(ip) - 1) & ~((uint64_t)dbsize(ip) - 1); }

static uint64_t
isize(struct fs_inode *ip)
{
	uint64_t s;

	pthread_mutex_lock(&ip->i_mtx);
	s = fs_i_size(ip);
	pthread_mutex_unlock(&ip->i_mtx);
	return s;
}

static void
set_isize(struct fs_inode *ip, uint64_t s)
{
	pthread_mutex_lock(&ip->i_mtx);
	le64_set(&ip->i_din.i_size, s);
	pthread_mutex_unlock(&ip->i_mtx);
}

/* ---- The transfer of one strategy call ---------------------------------- */

/* The memory of a buffer or cluster pbuf, as one list of iovecs. */
struct xfer {
	const struct iovec *iov;
	int		iovcnt;
	size_t		len;
	struct iovec	one;
};

static void
xfer_init(struct xfer *x, struct buf *bp)
{
	if (bp->b_xiovcnt > 0) {
		x->iov = bp->b_xiov;
		x->iovcnt = bp->b_xiovcnt;
	} else {
		x->one.iov_base = bp->b_data;
		x->one.iov_len = (size_t)bp->b_bcount;
		x->iov = &x->one;
		x->iovcnt = 1;
	}
	x->len = (size_t)bp->b_bcount;
}

/*
 * Call FN on each piece of memory of [OFF, OFF + LEN) of the transfer.
 * Stops when FN returns non-zero.
 */
static int
xfer_each(const struct xfer *x, size_t off, size_t len,
    int (*fn)(void *arg, char *p, size_t n), void *arg)
{
	for (int i = 0; i < x->iovcnt && len > 0; i++) {
		size_t il = x->iov[i].iov_len;
		size_t n;
		int r;

		if (off >= il) {
			off -= il;
			continue;
		}
		n = il - off < len ? il - off : len;
		if ((r = fn(arg, (char *)x->iov[i].iov_base + off, n)) != 0)
			return r;
		off = 0;
		len -= n;
	}
	return 0;
}

static int
zero_fn(void *arg, char *p, size_t n)
{
	(void)arg;
	memset(p, 0, n);
	return 0;
}

static int
nonzero_fn(void *arg, char *p, size_t n)
{
	const uint64_t *w = (const uint64_t *)(void *)p;

	(void)arg;
	for (size_t i = 0; i < n / 8; i++)
		if (w[i] != 0)
			return 1;
	for (size_t i = n & ~(size_t)7; i < n; i++)
		if (p[i] != 0)
			return 1;
	return 0;
}

struct slice {
	struct iovec	*iov;
	int		cnt, cap;
};

static int
slice_fn(void *arg, char *p, size_t n)
{
	struct slice *s = arg;

	if (s->cnt == s->cap)
		return ENOMEM;
	s->iov[s->cnt].iov_base = p;
	s->iov[s->cnt].iov_len = n;
	s->cnt++;
	return 0;
}

/* A malloc'd iovec array for [OFF, OFF + LEN) of the transfer. */
static struct iovec *
xfer_slice(const struct xfer *x, size_t off, size_t len, int *cnt)
{
	struct slice s;

	s.cap = x->iovcnt;
	s.cnt = 0;
	s.iov = calloc((size_t)s.cap, sizeof(*s.iov));
	if (s.iov == NULL)
		return NULL;
	if (xfer_each(x, off, len, slice_fn, &s) != 0) {
		free(s.iov);
		return NULL;
	}
	*cnt = s.cnt;
	return s.iov;
}

/* ---- Compression (compress.c) -------------------------------------------- */

/*
 * fs_data_decode - the other half: turn the CBYTES-byte image of a
 * compressed extent (algorithm COMP) into DSTLEN plain bytes at DST (an
 * iovec list).  Called on the device's completion thread after the read
 * of the extent's physical blocks.  No codec is linked yet: EOPNOTSUPP,
 * which the reader sees as an I/O error.
 */
static int
fs_data_decode(struct fs_inode *ip, uint8_t comp, const void *src,
    size_t cbytes, const struct iovec *dst, int dstcnt, size_t dstlen)
{
	struct flyfs *fs = ip->i_fs;
	char *tmp;
	size_t off = 0;
	int error;

	if (comp != FLYFS_COMP_ZSTD)
		return EUCLEAN;
	/* A compressed extent is one data block: one buffer's memory. */
	if (dstcnt == 1 && dst[0].iov_len == dstlen)
		return fs_compress_decode(fs->s_compress, &ip->i_compst, src,
		    cbytes, dst[0].iov_base, dstlen);
	if ((tmp = malloc(dstlen)) == NULL)
		return ENOMEM;
	error = fs_compress_decode(fs->s_compress, &ip->i_compst, src, cbytes,
	    tmp, dstlen);
	for (int i = 0; error == 0 && i < dstcnt; i++) {
		memcpy(dst[i].iov_base, tmp + off, dst[i].iov_len);
		off += dst[i].iov_len;
	}
	free(tmp);
	return error;
}

/* ---- Sub-I/Os --------------------------------------------------------------- */

/*
 * One strategy call: the bio to complete, the count of pieces still in
 * flight (plus one for the planner while it plans) and the first error.
 */
struct fio {
	struct bio	*parent;
	struct fs_inode	*ip;
	int		pending;	/* (a) */
	int		error;		/* (a) */
	bool		write;
};

/* A compressed extent being read: decoded into DST after the read. */
struct decode_job {
	struct fs_inode	*ip;
	uint64_t	pblk;		/* for the corruption report */
	uint8_t		comp;
	uint32_t	cbytes;
	void		*bounce;
	struct iovec	*dst;
	int		dstcnt;
	size_t		dstlen;
};

static void
fio_error(struct fio *f, int error)
{
	int zero = 0;

	if (error)
		__atomic_compare_exchange_n(&f->error, &zero, error, false,
		    __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}

static void
fio_put(struct fio *f)
{
	struct buf *bp = f->parent->bio_buf;
	int error;
	int zero = 0;

	if (__atomic_sub_fetch(&f->pending, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	error = __atomic_load_n(&f->error, __ATOMIC_ACQUIRE);
	if (error) {
		bp->b_flags |= B_ERROR;
		bp->b_error = error;
		bp->b_resid = bp->b_bcount;
		if (f->write)
			__atomic_compare_exchange_n(&f->ip->i_error, &zero,
			    error, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
	} else {
		bp->b_resid = 0;
	}
	biodone(f->parent);
	free(f);
}

/* Completion of one piece, on the device's completion thread. */
static void
subio_done(struct bio *bio)
{
	struct buf *pb = bio->bio_buf;
	struct fio *f = pb->b_bio1.bio_caller_info1.ptr;
	struct decode_job *dj = pb->b_bio1.bio_caller_info2.ptr;
	int error = 0;

	if (pb->b_flags & B_ERROR)
		error = pb->b_error ? pb->b_error : EIO;
	else if (pb->b_resid != 0)
		error = EIO;
	if (dj != NULL) {
		/* dst NULL: a compressed write; only its buffer to free. */
		if (error == 0 && dj->dst != NULL) {
			error = fs_data_decode(dj->ip, dj->comp, dj->bounce,
			    dj->cbytes, dj->dst, dj->dstcnt, dj->dstlen);
			if (error == EUCLEAN)
				fs_corrupt(dj->ip->i_fs, dj->pblk,
				    dj->ip->i_ino, "compressed extent does "
				    "not decompress to its length");
		}
		blockdev_free_buf(dj->bounce);
		free(dj->dst);
		free(dj);
	}
	fio_error(f, error);
	free((void *)(uintptr_t)pb->b_xiov);
	pb->b_xiov = NULL;
	pb->b_xiovcnt = 0;
	relpbuf(pb, NULL);
	fio_put(f);
}

/* A list of pieces built under locks and submitted after them. */
struct sublist {
	struct buf	**pb;
	int		n, cap;
};

/*
 * A piece moving the IOV list (LEN bytes, taken over) at device byte
 * DOFF.  Counted in F at once.
 */
static int
subio_add(struct sublist *sl, struct fio *f, buf_cmd_t cmd,
    struct iovec *iov, int cnt, size_t len, uint64_t doff,
    struct decode_job *dj)
{
	struct buf *pb;
	struct bio *nbio;

	if (sl->n == sl->cap) {
		int cap = sl->cap ? sl->cap * 2 : 8;
		struct buf **np = realloc(sl->pb, (size_t)cap * sizeof(*np));

		if (np == NULL)
			return ENOMEM;
		sl->pb = np;
		sl->cap = cap;
	}
	pb = getpbuf(NULL);
	pb->b_cmd = cmd;
	pb->b_xiov = iov;
	pb->b_xiovcnt = cnt;
	pb->b_bcount = (int)len;
	pb->b_bio1.bio_done = subio_done;
	/*
	 * A piece of a synchronous read is submitted by the thread that
	 * will wait for its parent: it may complete there (dev_strategy).
	 */
	if (cmd == BUF_CMD_READ && bio_is_sync(f->parent))
		pb->b_bio1.bio_flags |= BIO_SYNC;
	pb->b_bio1.bio_caller_info1.ptr = f;
	pb->b_bio1.bio_caller_info2.ptr = dj;
	nbio = push_bio(&pb->b_bio1);
	nbio->bio_offset = (off_t)doff;
	BUF_KERNPROC(pb);
	__atomic_add_fetch(&f->pending, 1, __ATOMIC_RELAXED);
	sl->pb[sl->n++] = pb;
	return 0;
}

static void
sublist_submit(struct flyfs *fs, struct sublist *sl, int from)
{
	for (int i = from; i < sl->n; i++)
		dev_strategy(fs->s_bdev, &sl->pb[i]->b_bio2);
}

/* ---- Read strategy ------------------------------------------------------- */

/* Queue the read of compressed extent E into [OFF, OFF + LEN). */
static int
read_compressed(struct fs_inode *ip, struct fio *f, struct sublist *sl,
    const struct xfer *x, size_t off, size_t len, const struct fs_extent *e)
{
	struct decode_job *dj = calloc(1, sizeof(*dj));
	struct iovec *iov;
	size_t plen = (size_t)e->plen << FLYFS_BLOCK_SHIFT;
	int error;

	if (dj == NULL)
		return ENOMEM;
	dj->ip = ip;
	dj->pblk = e->pblk;
	dj->comp = e->comp;
	dj->cbytes = e->cbytes;
	dj->dstlen = len;
	dj->bounce = blockdev_alloc_buf(ip->i_fs->s_bdev, plen);
	dj->dst = xfer_slice(x, off, len, &dj->dstcnt);
	iov = calloc(1, sizeof(*iov));
	if (dj->bounce == NULL || dj->dst == NULL || iov == NULL) {
		blockdev_free_buf(dj->bounce);
		free(dj->dst);
		free(dj);
		free(iov);
		return ENOMEM;
	}
	iov->iov_base = dj->bounce;
	iov->iov_len = plen;
	error = subio_add(sl, f, BUF_CMD_READ, iov, 1, plen,
	    e->pblk << FLYFS_BLOCK_SHIFT, dj);
	if (error) {
		blockdev_free_buf(dj->bounce);
		free(dj->dst);
		free(dj);
		free(iov);
	}
	return error;
}

/* Plan the read of the transfer: zero-fill or queue a piece per run. */
static int
read_plan(struct fs_inode *ip, struct fio *f, struct sublist *sl,
    const struct xfer *x, uint64_t loff)
{
	size_t pos = 0;
	int error = 0;

	while (pos < x->len && error == 0) {
		uint64_t lblk = (loff + pos) >> FLYFS_BLOCK_SHIFT;
		struct fs_extent e;
		size_t n;

		error = fs_extent_find(ip, lblk, &e);
		if (error == ENOENT) {
			xfer_each(x, pos, x->len - pos, zero_fn, NULL);
			return 0;
		}
		if (error)
			break;
		if (e.lblk > lblk) {
			n = (size_t)(e.lblk - lblk) << FLYFS_BLOCK_SHIFT;
			if (n > x->len - pos)
				n = x->len - pos;
			xfer_each(x, pos, n, zero_fn, NULL);
			pos += n;
			continue;
		}
		if (e.comp != 0) {
			/* A compressed extent is one whole data block. */
			n = (size_t)e.llen << FLYFS_BLOCK_SHIFT;
			if (e.lblk != lblk || n > x->len - pos)
				return fs_corrupt(ip->i_fs, 0, ip->i_ino,
				    "compressed extent at %llu not aligned "
				    "to a data block",
				    (unsigned long long)e.lblk);
			error = read_compressed(ip, f, sl, x, pos, n, &e);
			pos += n;
			continue;
		}
		n = (size_t)(fs_ext_end(&e) - lblk) << FLYFS_BLOCK_SHIFT;
		if (n > x->len - pos)
			n = x->len - pos;
		if (e.flags & FLYFS_EXT_UNWRITTEN) {
			xfer_each(x, pos, n, zero_fn, NULL);
		} else {
			struct iovec *iov;
			int cnt;

			iov = xfer_slice(x, pos, n, &cnt);
			if (iov == NULL)
				return ENOMEM;
			error = subio_add(sl, f, BUF_CMD_READ, iov, cnt, n,
			    (e.pblk + (lblk - e.lblk)) << FLYFS_BLOCK_SHIFT,
			    NULL);
			if (error)
				free(iov);
		}
		pos += n;
	}
	return error;
}

static void
file_read_strategy(struct fs_inode *ip, struct bio *bio)
{
	struct buf *bp = bio->bio_buf;
	struct sublist sl = { 0 };
	struct xfer x;
	struct fio *f;
	int error;

	f = calloc(1, sizeof(*f));
	if (f == NULL) {
		bp->b_flags |= B_ERROR;
		bp->b_error = ENOMEM;
		biodone(bio);
		return;
	}
	f->parent = bio;
	f->ip = ip;
	f->pending = 1;
	xfer_init(&x, bp);
	pthread_mutex_lock(&ip->i_extlock);
	error = read_plan(ip, f, &sl, &x, (uint64_t)bio->bio_offset);
	pthread_mutex_unlock(&ip->i_extlock);
	fio_error(f, error);
	sublist_submit(ip->i_fs, &sl, 0);
	free(sl.pb);
	fio_put(f);
}

/* ---- Write strategy: allocate on flush -------------------------------- */

/*
 * The planner's state for one write transfer.  A "segment" is the piece
 * being accumulated: device-contiguous bytes of the transfer, extended
 * while the next run continues it, queued when it stops.
 */
struct wplan {
	struct fs_inode	*ip;
	struct flyfs	*fs;
	struct fio	*f;
	struct xfer	x;
	uint64_t	loff;		/* transfer's file offset */
	size_t		wend;		/* bytes to write (cut at EOF) */
	struct sublist	sl;
	int		tx_first;	/* first piece queued under the handle */
	struct fs_trans	*tx;
	unsigned	budget;
	uint64_t	resv_left;	/* reserved blocks not yet used */
	uint32_t	pgvalid;	/* pages to write (B_PARTIAL: its valid
					 * ones; dirty_pages); 0: all */
	/* the segment being built */
	size_t		seg_off, seg_len;
	uint64_t	seg_doff;
	bool		seg_ordered;
	/* what each data block of the transfer becomes (compress.c) */
	struct fs_encoded *enc;
	struct iovec	*blk;		/* each data block's memory */
	size_t		nenc;
};

static int
seg_flush(struct wplan *w)
{
	struct iovec *iov;
	int cnt, error;

	if (w->seg_len == 0)
		return 0;
	iov = xfer_slice(&w->x, w->seg_off, w->seg_len, &cnt);
	if (iov == NULL)
		return ENOMEM;
	error = subio_add(&w->sl, w->f, BUF_CMD_WRITE, iov, cnt, w->seg_len,
	    w->seg_doff, NULL);
	if (error) {
		free(iov);
		return error;
	}
	if (w->seg_ordered) {
		KKASSERT(w->tx != NULL);
		fs_trans_ordered_bio(w->tx, &w->sl.pb[w->sl.n - 1]->b_bio2);
	}
	FS_COUNT(w->fs, data_flush_blocks, w->seg_len >> FLYFS_BLOCK_SHIFT);
	w->seg_len = 0;
	w->seg_ordered = false;
	return 0;
}

/* Write [OFF, OFF + LEN) of the transfer at device block PBLK. */
static int
seg_add(struct wplan *w, size_t off, size_t len, uint64_t pblk, bool ordered)
{
	uint64_t doff = pblk << FLYFS_BLOCK_SHIFT;
	int error;

	if (w->seg_len > 0 && w->seg_off + w->seg_len == off &&
	    w->seg_doff + w->seg_len == doff &&
	    w->seg_len + len <= MAXPHYS) {
		w->seg_len += len;
		w->seg_ordered |= ordered;
		return 0;
	}
	if ((error = seg_flush(w)) != 0)
		return error;
	w->seg_off = off;
	w->seg_len = len;
	w->seg_doff = doff;
	w->seg_ordered = ordered;
	return 0;
}

/* Where an allocation for LBLK should go: after its left neighbour. */
static uint64_t
alloc_goal(struct fs_inode *ip, uint64_t lblk)
{
	struct fs_extent e;

	if (lblk > 0 && fs_extent_find(ip, lblk - 1, &e) == 0 &&
	    e.lblk <= lblk - 1 && e.comp == 0)
		return e.pblk + (lblk - e.lblk);
	return ip->i_alloc_goal;
}

/*
 * Allocate and map the hole [LBLK, LBLK + N) at transfer offset *POS and
 * queue its data; *POS advances with each allocation, so a stop for the
 * handle's budget (EAGAIN) resumes after what is mapped.
 */
static int
write_hole(struct wplan *w, uint64_t lblk, uint32_t n, size_t *pos)
{
	struct fs_inode *ip = w->ip;
	uint64_t goal = alloc_goal(ip, lblk);
	int error;

	while (n > 0) {
		struct fs_extent e = { 0 };
		unsigned flags = 0;
		uint32_t want = n, got;
		uint64_t blk;

		if (w->budget < fs_extent_op_cost(ip) + 2)
			return EAGAIN;
		if (w->resv_left > 0) {
			flags = FS_ALLOC_RESERVED;
			if (want > w->resv_left)
				want = (uint32_t)w->resv_left;
		}
		error = fs_alloc_blocks(w->tx, goal, want, flags, &blk, &got);
		if (error)
			return error;
		if (flags & FS_ALLOC_RESERVED)
			w->resv_left -= got;
		e.lblk = lblk;
		e.pblk = blk;
		e.llen = e.plen = got;
		if ((error = fs_extent_insert(w->tx, ip, &e)) != 0) {
			fs_trans_free_blocks(w->tx, blk, got, 0);
			return error;
		}
		ip->i_alloc_goal = blk + got;
		goal = blk + got;
		error = seg_add(w, *pos, (size_t)got << FLYFS_BLOCK_SHIFT, blk,
		    true);
		if (error)
			return error;
		w->budget -= fs_extent_op_cost(ip) + 2;
		lblk += got;
		*pos += (size_t)got << FLYFS_BLOCK_SHIFT;
		n -= got;
	}
	return 0;
}

/* Unwritten [LBLK, LBLK + N) of E becomes written; the data goes in place. */
static int
write_unwritten(struct wplan *w, const struct fs_extent *e, uint64_t lblk,
    uint32_t n, size_t off)
{
	struct fs_inode *ip = w->ip;
	struct fs_extent ne = { 0 };
	unsigned budget = 3 * fs_extent_op_cost(ip);
	uint64_t lowest;
	int error;

	ne.lblk = lblk;
	ne.pblk = e->pblk + (lblk - e->lblk);
	ne.llen = ne.plen = n;
	error = fs_extent_remove(w->tx, ip, lblk, lblk + n, 0, &budget,
	    &lowest);
	if (error == 0)
		error = fs_extent_insert(w->tx, ip, &ne);
	if (error)
		return error;
	w->budget -= 3 * fs_extent_op_cost(ip);
	return seg_add(w, off, (size_t)n << FLYFS_BLOCK_SHIFT, ne.pblk, true);
}

/*
 * Unmap (and free) the data block [LBLK, LBLK + LLEN) and whatever
 * compressed extent overlaps it, in W's transaction.
 */
static int
unmap_block(struct wplan *w, uint64_t lblk, uint64_t end)
{
	struct fs_inode *ip = w->ip;
	struct fs_extent e;
	uint64_t lowest;
	int error;

	error = fs_extent_find(ip, lblk, &e);
	if (error == 0 && e.comp != 0 && e.lblk < end && fs_ext_end(&e) > end)
		end = fs_ext_end(&e);
	if (error == 0 && e.comp != 0 && e.lblk < lblk)
		lblk = e.lblk;
	if (error && error != ENOENT)
		return error;
	return fs_extent_remove(w->tx, ip, lblk, end, FS_EXT_FREE, &w->budget,
	    &lowest);
}

/*
 * Store data block [DSTART, DEND) of the transfer as the compressed
 * extent ENC: unmap what was there, allocate e_plen contiguous blocks,
 * map them, queue the write of the frame (ordered data).  Returns 1 if
 * the blocks could not be found contiguous (ENC was turned raw: the
 * caller stores the block the ordinary way).
 */
static int
write_compressed(struct wplan *w, struct fs_encoded *enc, size_t dstart)
{
	struct fs_inode *ip = w->ip;
	uint64_t lblk = (w->loff + dstart) >> FLYFS_BLOCK_SHIFT;
	struct fs_extent e = { 0 };
	struct decode_job *dj;
	struct iovec *iov;
	unsigned flags = 0;
	uint64_t blk;
	uint32_t got;
	int error;

	if (w->tx == NULL || w->budget < 4 * fs_extent_op_cost(ip) + 8)
		return EAGAIN;
	if ((error = unmap_block(w, lblk, lblk + enc->e_llen)) != 0)
		return error;
	if (w->budget < fs_extent_op_cost(ip) + 2)
		return EAGAIN;
	if (w->resv_left >= enc->e_plen)
		flags = FS_ALLOC_RESERVED;
	error = fs_alloc_blocks(w->tx, ip->i_alloc_goal, enc->e_plen, flags,
	    &blk, &got);
	if (error)
		return error;
	if (flags & FS_ALLOC_RESERVED)
		w->resv_left -= got;
	if (got < enc->e_plen) {
		fs_trans_free_blocks(w->tx, blk, got, 0);
		fs_encoded_set_raw(enc, w->blk[dstart / dbsize(ip)].iov_base);
		return 1;
	}
	e.lblk = lblk;
	e.pblk = blk;
	e.llen = enc->e_llen;
	e.plen = enc->e_plen;
	e.comp = enc->e_comp;
	e.cbytes = enc->e_cbytes;
	if ((error = fs_extent_insert(w->tx, ip, &e)) != 0) {
		fs_trans_free_blocks(w->tx, blk, got, 0);
		return error;
	}
	w->budget -= fs_extent_op_cost(ip) + 2;
	ip->i_alloc_goal = blk + got;
	if ((error = seg_flush(w)) != 0)
		return error;
	dj = calloc(1, sizeof(*dj));
	iov = calloc(1, sizeof(*iov));
	if (dj == NULL || iov == NULL) {
		free(dj);
		free(iov);
		return ENOMEM;
	}
	*iov = enc->e_iov;
	dj->ip = ip;
	dj->bounce = fs_encoded_take_buffer(enc);
	error = subio_add(&w->sl, w->f, BUF_CMD_WRITE, iov, 1, iov->iov_len,
	    blk << FLYFS_BLOCK_SHIFT, dj);
	if (error) {
		free(dj->bounce);
		free(dj);
		free(iov);
		return error;
	}
	fs_trans_ordered_bio(w->tx, &w->sl.pb[w->sl.n - 1]->b_bio2);
	FS_COUNT(w->fs, data_flush_blocks, got);
	return 0;
}

/*
 * Where the hole that starts at transfer offset POS, HOLE_BLKS 4 KiB
 * blocks long (UINT64_MAX: to the end), stops being one run to allocate:
 * at its end, at the transfer's end, or at the first data block after
 * POS's that is not to be stored raw.  Allocating across data blocks
 * keeps a sequential flush to one allocation, one extent operation and
 * one device write per run: one per data block spent the handle's log
 * budget after nine blocks and cut a 1 MiB cluster into 128 KiB writes.
 */
static size_t
hole_run_end(const struct wplan *w, size_t pos, uint64_t hole_blks)
{
	size_t dbs = dbsize(w->ip), end = w->wend;

	if (hole_blks < (end - pos) >> FLYFS_BLOCK_SHIFT)
		end = pos + ((size_t)hole_blks << FLYFS_BLOCK_SHIFT);
	for (size_t d = (pos & ~(dbs - 1)) + dbs; d < end; d += dbs)
		if (d / dbs >= w->nenc || w->enc[d / dbs].e_kind != FS_ENC_RAW)
			return d;
	return end;
}

/*
 * Plan [*POS, w->wend) of the transfer: one data block at a time (a run
 * of holes stored raw may span several), one mapping run at a time.
 * Without a handle (w->tx NULL) only in-place
 * overwrites are possible: returns EAGAIN at the first run that needs a
 * transaction, as it does when the handle's budget runs low.
 */
static int
write_plan(struct wplan *w, size_t *pos)
{
	struct fs_inode *ip = w->ip;
	size_t dbs = dbsize(ip);
	int error = 0;

	while (*pos < w->wend) {
		size_t dstart = *pos & ~(dbs - 1), dend;
		struct fs_encoded *enc = &w->enc[dstart / dbs];

		dend = dstart + dbs < w->wend ? dstart + dbs : w->wend;
		if (enc->e_kind == FS_ENC_ZSTD) {
			KKASSERT(*pos == dstart);
			error = write_compressed(w, enc, dstart);
			if (error < 0 || error > 1)
				return error;
			if (error == 0) {
				*pos = dend;
				continue;
			}
			error = 0;	/* stored raw below */
		}
		while (*pos < dend) {
			uint64_t lblk = (w->loff + *pos) >> FLYFS_BLOCK_SHIFT;
			uint32_t n = (uint32_t)((dend - *pos) >>
			    FLYFS_BLOCK_SHIFT);
			struct fs_extent e;
			bool hole, none;

			if (w->pgvalid != 0) {
				/* Pieces (pgvalid): a run of those pages only. */
				uint32_t pg = (uint32_t)(*pos >>
				    FLYFS_BLOCK_SHIFT), run = 0;

				while (run < n && (w->pgvalid >> (pg + run) & 1))
					run++;
				if (run == 0) {
					*pos += FLYFS_BLOCK_SIZE;
					continue;
				}
				n = run;
			}
			error = fs_extent_find(ip, lblk, &e);
			if (error && error != ENOENT)
				return error;
			none = error == ENOENT;
			hole = none || e.lblk > lblk;
			error = 0;
			if (!none && e.lblk > lblk && e.lblk - lblk < n)
				n = (uint32_t)(e.lblk - lblk);
			if (!hole && fs_ext_end(&e) - lblk < n)
				n = (uint32_t)(fs_ext_end(&e) - lblk);

			if (!hole && e.comp != 0) {
				/*
				 * A compressed extent can only be replaced
				 * whole: unmap it, then this is a hole.
				 */
				if (w->tx == NULL || w->budget <
				    3 * fs_extent_op_cost(ip) + 8)
					return EAGAIN;
				error = unmap_block(w, e.lblk, fs_ext_end(&e));
				if (error)
					return error;
				continue;
			}
			if (hole && enc->e_kind == FS_ENC_HOLE) {
				/* Nothing to store: it stays a hole. */
			} else if (!hole && (e.flags & FLYFS_EXT_UNWRITTEN) &&
			    enc->e_kind == FS_ENC_HOLE) {
				/* Unwritten already reads as zeros. */
			} else if (!hole && !(e.flags & FLYFS_EXT_UNWRITTEN)) {
				error = seg_add(w, *pos,
				    (size_t)n << FLYFS_BLOCK_SHIFT,
				    e.pblk + (lblk - e.lblk), false);
			} else if (w->tx == NULL ||
			    w->budget < 3 * fs_extent_op_cost(ip) + 2) {
				return EAGAIN;
			} else if (hole) {
				/*
				 * 4 KiB blocks of zeros in a hole stay holes
				 * (sparse files stay sparse inside a data
				 * block); each run of data is allocated.
				 */
				size_t p4 = *pos, q4;
				size_t e4 = w->pgvalid != 0 ? *pos +
				    ((size_t)n << FLYFS_BLOCK_SHIFT) :
				    hole_run_end(w, *pos, none ? UINT64_MAX :
				    e.lblk - lblk);

				while (p4 < e4 && xfer_each(&w->x, p4,
				    FLYFS_BLOCK_SIZE, nonzero_fn, NULL) == 0)
					p4 += FLYFS_BLOCK_SIZE;
				if (p4 > *pos) {
					*pos = p4;
					continue;
				}
				for (q4 = p4; q4 < e4 && xfer_each(&w->x, q4,
				    FLYFS_BLOCK_SIZE, nonzero_fn, NULL) != 0;)
					q4 += FLYFS_BLOCK_SIZE;
				/* Advances *pos itself. */
				error = write_hole(w, lblk,
				    (uint32_t)((q4 - p4) >> FLYFS_BLOCK_SHIFT),
				    pos);
				if (error)
					return error;
				continue;
			} else {
				error = write_unwritten(w, &e, lblk, n, *pos);
			}
			if (error)
				return error;
			*pos += (size_t)n << FLYFS_BLOCK_SHIFT;
		}
	}
	return 0;
}

/*
 * A buffer's reservation: B_RESV says it holds one, of one block per
 * 4 KiB of its dirty range [b_dirtyoff, b_dirtyend) (what a flush may
 * have to allocate: the rest of the buffer is mapped or zeros).  Taking
 * it clears both.  Buffer locked.
 */
static uint64_t
resv_of(struct buf *bp)
{
	uint64_t n;

	if ((bp->b_flags & B_RESV) == 0)
		return 0;
	n = (uint64_t)(bp->b_dirtyend - bp->b_dirtyoff) >> FLYFS_BLOCK_SHIFT;
	bp->b_flags &= ~B_RESV;
	bp->b_dirtyoff = bp->b_dirtyend = 0;
	return n;
}

/*
 * Take the reservations of the buffers of the transfer: a single buffer,
 * or the children of a cluster pbuf.  Returns the blocks held.
 */
static uint64_t
take_resv(struct fs_inode *ip, struct buf *bp)
{
	uint64_t n = 0;

	(void)ip;
	if (bp->b_flags & B_CLUSTER) {
		for (struct buf *c = bp->b_bio1.bio_caller_info1.cluster_head;
		    c != NULL; c = c->b_cluster_next)
			n += resv_of(c);
	} else {
		n = resv_of(bp);
	}
	return n;
}

/*
 * Decide what each data block of [0, w->wend) becomes, before any lock:
 * the blocks are encoded in parallel on the compression pool (this thread
 * helping), each exactly once however often the planner restarts.  A
 * block that is not one piece of memory (never, with whole buffers) and
 * a failed allocation leave W without results: everything is stored raw.
 */
static int
encode_transfer(struct wplan *w, bool piece)
{
	struct fs_inode *ip = w->ip;
	size_t dbs = dbsize(ip), n = (w->wend + dbs - 1) / dbs;
	uint8_t comp;
	int level, cnt;

	if (n == 0)
		return 0;
	w->enc = calloc(n, sizeof(*w->enc));
	w->blk = calloc(n, sizeof(*w->blk));
	if (w->enc == NULL || w->blk == NULL)
		return ENOMEM;
	if (piece) {
		/* Pieces of a block (pgvalid) are stored raw, in place. */
		KKASSERT(n == 1);
		w->enc[0].e_kind = FS_ENC_RAW;
		w->nenc = 1;
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		size_t off = i * dbs, len = w->wend - off < dbs ?
		    w->wend - off : dbs;
		struct iovec *one = xfer_slice(&w->x, off, len, &cnt);

		if (one == NULL)
			return ENOMEM;
		w->blk[i] = one[0];
		free(one);
		if (cnt != 1)
			return EINVAL;
	}
	pthread_mutex_lock(&ip->i_mtx);
	fs_compress_resolve(w->fs->s_compress, &ip->i_din, &comp, &level);
	pthread_mutex_unlock(&ip->i_mtx);
	fs_compress_encode_batch(w->fs->s_compress, &ip->i_compst, comp,
	    level, w->blk, n, w->enc);
	w->nenc = n;
	for (size_t i = 0; i < n; i++)
		if (w->enc[i].e_kind == FS_ENC_ZSTD)
			return fs_sb_set_incompat(w->fs,
			    FLYFS_FEATURE_INCOMPAT_ZSTD);
	return 0;
}

static void
encode_fini(struct wplan *w)
{
	for (size_t i = 0; i < w->nenc; i++)
		fs_encoded_fini(&w->enc[i]);
	free(w->enc);
	free(w->blk);
}

static uint32_t dirty_pages(struct fs_inode *ip, struct buf *bp);

static void
file_write_strategy(struct fs_inode *ip, struct bio *bio)
{
	struct buf *bp = bio->bio_buf;
	struct flyfs *fs = ip->i_fs;
	struct wplan w;
	uint64_t size, resv;
	size_t pos = 0;
	int error = 0, e;

	memset(&w, 0, sizeof(w));
	w.ip = ip;
	w.fs = fs;
	w.loff = (uint64_t)bio->bio_offset;
	xfer_init(&w.x, bp);
	if (bp->b_flags & B_PARTIAL) {
		/* Only the valid pages go, each over its old place. */
		KKASSERT(bp->b_xiovcnt == 0 && (bp->b_flags & B_RESV) == 0);
		w.pgvalid = bp->b_pgvalid;
	} else if ((w.pgvalid = dirty_pages(ip, bp)) != 0) {
		/* So do the dirty pages of a block stored in place. */
		FS_COUNT(fs, dirty_page_flushes, 1);
	}
	w.f = calloc(1, sizeof(*w.f));
	if (w.f == NULL) {
		bp->b_flags |= B_ERROR;
		bp->b_error = ENOMEM;
		biodone(bio);
		return;
	}
	w.f->parent = bio;
	w.f->ip = ip;
	w.f->pending = 1;
	w.f->write = true;
	KKASSERT((w.loff & BLK_MASK) == 0 && (w.x.len & BLK_MASK) == 0);

	pthread_mutex_lock(&ip->i_extlock);
	resv = take_resv(ip, bp);
	w.resv_left = resv;
	pthread_mutex_unlock(&ip->i_extlock);

	/* Only what lies before EOF reaches the device. */
	size = roundup4k(isize(ip));
	w.wend = size <= w.loff ? 0 : size - w.loff < w.x.len ?
	    (size_t)(size - w.loff) : w.x.len;
	error = encode_transfer(&w, w.pgvalid != 0);
	if (error) {
		/* Without results, the transfer fails as a whole. */
		encode_fini(&w);
		w.nenc = 0;
		w.enc = NULL;
		w.blk = NULL;
		goto out;
	}

	/* First try without a handle: overwrites in place need none. */
	pthread_mutex_lock(&ip->i_extlock);
	error = write_plan(&w, &pos);
	if (error == 0 || error == EAGAIN) {
		int e2 = seg_flush(&w);

		if (e2)
			error = e2;
	}
	pthread_mutex_unlock(&ip->i_extlock);
	sublist_submit(fs, &w.sl, 0);
	w.tx_first = w.sl.n;

	while (error == EAGAIN) {
		error = fs_trans_begin(fs, FILE_TX_BLOCKS, &w.tx);
		if (error)
			break;
		w.budget = FILE_TX_BLOCKS - 1;
		pthread_mutex_lock(&ip->i_extlock);
		error = write_plan(&w, &pos);
		e = seg_flush(&w);
		if (error == 0 || error == EAGAIN)
			error = e ? e : error;
		pthread_mutex_unlock(&ip->i_extlock);
		e = fs_trans_end(w.tx);
		w.tx = NULL;
		if (error == 0 || error == EAGAIN)
			error = e ? e : error;
		sublist_submit(fs, &w.sl, w.tx_first);
		w.tx_first = w.sl.n;
	}
out:
	encode_fini(&w);

	pthread_mutex_lock(&ip->i_extlock);
	KKASSERT(ip->i_resv >= resv);
	ip->i_resv -= resv;
	pthread_mutex_unlock(&ip->i_extlock);
	if (w.resv_left > 0)
		fs_unreserve_blocks(fs, w.resv_left);

	fio_error(w.f, error);
	free(w.sl.pb);
	fio_put(w.f);
}

static int
file_strategy(struct vnode *vp, struct bio *bio)
{
	struct fs_inode *ip = VTOI(vp);
	struct buf *bp = bio->bio_buf;

	switch (bp->b_cmd) {
	case BUF_CMD_READ:
		file_read_strategy(ip, bio);
		break;
	case BUF_CMD_WRITE:
		file_write_strategy(ip, bio);
		break;
	default:
		dev_strategy(ip->i_fs->s_bdev, push_bio(bio));
		break;
	}
	return 0;
}

/*
 * bmap: reads may cluster over raw, written, device-contiguous blocks;
 * writes get NOOFFSET (their place is chosen when they are flushed), so
 * every dirty buffer clusters with its logical neighbours.
 */
static int
file_bmap(struct vnode *vp, off_t loffset, off_t *doffsetp, int *runp,
    int *runb, buf_cmd_t cmd)
{
	struct fs_inode *ip = VTOI(vp);
	uint64_t lblk = (uint64_t)loffset >> FLYFS_BLOCK_SHIFT;
	struct fs_extent e;
	int error;

	*doffsetp = NOOFFSET;
	if (runp)
		*runp = 0;
	if (runb)
		*runb = 0;
	if (cmd != BUF_CMD_READ)
		return 0;
	pthread_mutex_lock(&ip->i_extlock);
	error = fs_extent_find(ip, lblk, &e);
	pthread_mutex_unlock(&ip->i_extlock);
	if (error == ENOENT)
		return 0;
	if (error)
		return error;
	if (e.lblk > lblk || !fs_ext_is_raw_data(&e))
		return 0;
	*doffsetp = (off_t)((e.pblk + (lblk - e.lblk)) << FLYFS_BLOCK_SHIFT) +
	    (loffset & (off_t)BLK_MASK);
	if (runp) {
		uint64_t run = ((fs_ext_end(&e) - lblk) << FLYFS_BLOCK_SHIFT) -
		    ((uint64_t)loffset & BLK_MASK);

		*runp = run > INT_MAX ? INT_MAX : (int)run;
	}
	if (runb) {
		uint64_t run = ((lblk - e.lblk) << FLYFS_BLOCK_SHIFT) +
		    ((uint64_t)loffset & BLK_MASK);

		*runb = run > INT_MAX ? INT_MAX : (int)run;
	}
	return 0;
}

const struct vop_ops fs_file_vops = {
	.vop_strategy = file_strategy,
	.vop_bmap = file_bmap,
};

/* ---- Helpers of the system-call side ------------------------------------ */

static int
file_get(struct flyfs *fs, uint64_t ino, struct fs_inode **ipp)
{
	int error = fs_iget(fs, ino, ipp);
	mode_t mode;

	if (error)
		return error;
	mode = fs_i_mode(*ipp);
	if (S_ISREG(mode) && dbsize(*ipp) <= MAXBSIZE)
		return 0;
	fs_iput(*ipp);
	*ipp = NULL;
	/*
	 * A data block larger than the cache's largest buffer (MAXBSIZE,
	 * 64 KiB; mkfs allows 128 KiB) cannot be cached: refuse data I/O
	 * rather than let getblk panic, until cache/buf.h grows MAXBSIZE.
	 */
	return S_ISDIR(mode) ? EISDIR : S_ISREG(mode) ? EOPNOTSUPP : EINVAL;
}

/*
 * The first 4 KiB block of [FROM, TO) with no raw place of its own (no
 * extent, or a compressed one; with WRITTEN, an unwritten one too), or
 * the block at roundup(TO): the end of the raw run starting at FROM.
 */
static uint64_t
raw_run_end(struct fs_inode *ip, uint64_t from, uint64_t to, bool written)
{
	uint64_t lblk = from >> FLYFS_BLOCK_SHIFT;
	uint64_t end = roundup4k(to) >> FLYFS_BLOCK_SHIFT;
	struct fs_extent e;

	pthread_mutex_lock(&ip->i_extlock);
	while (lblk < end) {
		if (fs_extent_find(ip, lblk, &e) != 0 || e.lblk > lblk ||
		    e.comp != 0 || (written && (e.flags & FLYFS_EXT_UNWRITTEN)))
			break;
		lblk = fs_ext_end(&e);
	}
	pthread_mutex_unlock(&ip->i_extlock);
	return lblk < end ? lblk : end;
}

/* Does any 4 KiB block of [LBASE, LIMIT) lack a raw or unwritten place? */
static bool
needs_space(struct fs_inode *ip, uint64_t lbase, uint64_t limit)
{
	return raw_run_end(ip, lbase, limit, false) <
	    roundup4k(limit) >> FLYFS_BLOCK_SHIFT;
}

/* No record at all in the data block at LBASE? */
static bool
block_is_hole(struct fs_inode *ip, uint64_t lbase)
{
	struct fs_extent e;
	bool hole;
	int error;

	pthread_mutex_lock(&ip->i_extlock);
	error = fs_extent_find(ip, lbase >> FLYFS_BLOCK_SHIFT, &e);
	hole = error == ENOENT || (error == 0 &&
	    e.lblk >= (lbase + dbsize(ip)) >> FLYFS_BLOCK_SHIFT);
	pthread_mutex_unlock(&ip->i_extlock);
	return hole;
}

/* Drop BP's reservation (locked buffer). */
static void
resv_drop(struct fs_inode *ip, struct buf *bp)
{
	uint64_t n = resv_of(bp);

	if (n == 0)
		return;
	pthread_mutex_lock(&ip->i_extlock);
	ip->i_resv -= n;
	pthread_mutex_unlock(&ip->i_extlock);
	fs_unreserve_blocks(ip->i_fs, n);
}

/*
 * Grow BP's reservation to cover [S, E) (4 KiB aligned offsets in the
 * buffer) as well as what it covers: the hull of the two.  May sleep for
 * a commit in fs_reserve_blocks (a data buffer lock may be held there:
 * commits never wait for one).  0 or ENOSPC.
 */
static int
resv_grow(struct fs_inode *ip, struct buf *bp, int s, int e)
{
	int os = 0, oe = 0, ns, ne;
	uint64_t extra;
	int error;

	if (bp->b_flags & B_RESV) {
		os = bp->b_dirtyoff;
		oe = bp->b_dirtyend;
	}
	ns = (bp->b_flags & B_RESV) && os < s ? os : s;
	ne = (bp->b_flags & B_RESV) && oe > e ? oe : e;
	extra = (uint64_t)((ne - ns) - (oe - os)) >> FLYFS_BLOCK_SHIFT;
	if (extra == 0)
		return 0;
	if ((error = fs_reserve_blocks(ip->i_fs, extra)) != 0)
		return error;
	pthread_mutex_lock(&ip->i_extlock);
	ip->i_resv += extra;
	pthread_mutex_unlock(&ip->i_extlock);
	bp->b_flags |= B_RESV;
	bp->b_dirtyoff = ns;
	bp->b_dirtyend = ne;
	return 0;
}

/* Is every 4 KiB block of [FROM, TO) stored raw, written, in place? */
static bool
stored_in_place(struct fs_inode *ip, uint64_t from, uint64_t to)
{
	return raw_run_end(ip, from, to, true) >=
	    roundup4k(to) >> FLYFS_BLOCK_SHIFT;
}

/*
 * May the write of N bytes at BOFF of the block at LBASE leave the rest
 * of the block unread (B_PARTIAL)?  Only 4 KiB-aligned pieces of blocks
 * already stored raw in place qualify: their flush overwrites just those
 * 4 KiB blocks, with nothing to allocate, compress or zero.
 */
static bool
partial_ok(struct fs_inode *ip, uint64_t lbase, size_t boff, size_t n,
    const void *src, int ioflags)
{
	if (src == NULL || (ioflags & FLYFS_O_DIRECT) || n == dbsize(ip) ||
	    ((boff | n) & BLK_MASK) != 0)
		return false;
	return stored_in_place(ip, lbase + boff, lbase + boff + n);
}

/* The B_PARTIAL page bits of [S, E) (4 KiB-aligned offsets in a buffer). */
static uint32_t
page_bits(int s, int e)
{
	int first = s >> FLYFS_BLOCK_SHIFT, n = (e - s) >> FLYFS_BLOCK_SHIFT;

	return (uint32_t)(((1ULL << n) - 1) << first);
}

/* Are the pages holding [OFF, OFF + N) of the B_PARTIAL buffer BP valid? */
static bool
pages_valid(const struct buf *bp, size_t off, size_t n)
{
	uint32_t want = page_bits((int)(off & ~(size_t)BLK_MASK),
	    (int)roundup4k(off + n));

	return (bp->b_pgvalid & want) == want;
}

/*
 * Dirty page tracking for whole buffers.  A 4 KiB write into a cached
 * 16 KiB block used to cost a 16 KiB write at flush; when the block is
 * stored raw in place, only the pages written need to go.  b_pgclean holds
 * the pages of a dirty whole buffer that still equal the block's place on
 * disk: the first write into a clean buffer sets it to every page it did
 * not touch, later writes take theirs out, and anything that cannot vouch
 * for the rest (a buffer zeroed instead of read, an O_DIRECT write, a
 * B_PARTIAL buffer made whole) sets it to 0, which always means "write
 * everything".  It is a hint the flush re-checks (dirty_pages), never the
 * only record of dirty data: B_DELWRI is.
 */
static void
note_dirty_pages(struct fs_inode *ip, struct buf *bp, int s4, int e4,
    bool vouch)
{
	uint32_t all = page_bits(0, (int)dbsize(ip));

	if (!vouch)
		bp->b_pgclean = 0;
	else if ((bp->b_flags & B_DELWRI) == 0)
		bp->b_pgclean = all & ~page_bits(s4, e4);
	else
		bp->b_pgclean &= ~page_bits(s4, e4);
}

/*
 * The pages the flush of BP (a whole dirty buffer, or a cluster pbuf of
 * one) must write when that is not all of them, else 0: one block with
 * pages known clean, still stored raw and written in place (so the clean
 * pages are on disk where they belong).  The buffers are locked.
 */
static uint32_t
dirty_pages(struct fs_inode *ip, struct buf *bp)
{
	struct buf *one = bp;
	uint64_t lbase;

	if (bp->b_flags & B_CLUSTER) {
		one = bp->b_bio1.bio_caller_info1.cluster_head;
		if (one == NULL || one->b_cluster_next != NULL)
			return 0;
	}
	lbase = (uint64_t)one->b_loffset;
	if (one->b_pgclean == 0 || (one->b_flags & B_RESV) ||
	    bp->b_bcount != (int)dbsize(ip) ||
	    !stored_in_place(ip, lbase, lbase + dbsize(ip)))
		return 0;
	return page_bits(0, (int)dbsize(ip)) & ~one->b_pgclean;
}

/*
 * Make the locked B_PARTIAL buffer BP whole: read the block and put the
 * valid pages back over what was read.  On error BP is unchanged (still
 * B_PARTIAL with its dirty pages).  May sleep for the read.
 */
static int
fill_partial(struct fs_inode *ip, struct buf *bp)
{
	uint32_t valid = bp->b_pgvalid;
	size_t len = (size_t)bp->b_bcount;
	char *keep;
	int error;

	KKASSERT((bp->b_flags & (B_PARTIAL | B_CACHE | B_RESV)) == B_PARTIAL);
	if ((keep = malloc(len)) == NULL)
		return ENOMEM;
	memcpy(keep, bp->b_data, len);
	error = breadnx(ITOV(ip), bp->b_loffset, bp->b_bcount, 0, NULL, NULL,
	    0, &bp);
	for (int pg = 0; valid >> pg != 0; pg++)
		if (valid & (1u << pg))
			memcpy(bp->b_data + ((size_t)pg << FLYFS_BLOCK_SHIFT),
			    keep + ((size_t)pg << FLYFS_BLOCK_SHIFT),
			    FLYFS_BLOCK_SIZE);
	free(keep);
	if (error) {
		bp->b_flags &= ~B_ERROR;
		bp->b_flags |= B_PARTIAL;
		bp->b_error = 0;
		return error;
	}
	bp->b_pgvalid = 0;
	bp->b_pgclean = 0;	/* its dirty pages are not known any more */
	FS_COUNT(ip->i_fs, partial_fills, 1);
	return 0;
}

/*
 * Take the write [S, E) of the block into BP without reading it: a buffer
 * that holds no valid data becomes B_PARTIAL with those pages valid, a
 * B_PARTIAL one adds them; all pages valid makes it B_CACHE.  False when
 * BP holds data it cannot take this way (it is left unchanged).
 */
static bool
partial_take(struct fs_inode *ip, struct buf *bp, int s, int e)
{
	uint32_t all = page_bits(0, (int)dbsize(ip));

	if ((bp->b_flags & B_PARTIAL) == 0) {
		if (bp->b_flags & (B_CACHE | B_DELWRI | B_RESV))
			return false;
		/* Light weight: its flush neither allocates nor compresses. */
		bp->b_flags &= ~(B_INVAL | B_ERROR | B_CLUSTEROK | B_HEAVY);
		bp->b_flags |= B_PARTIAL;
		bp->b_pgvalid = 0;
	}
	bp->b_pgvalid |= page_bits(s, e);
	if (bp->b_pgvalid == all) {
		bp->b_flags &= ~B_PARTIAL;
		bp->b_flags |= B_CACHE;
		bp->b_pgvalid = 0;
		bp->b_pgclean = 0;	/* which pages are dirty: not known */
	}
	FS_COUNT(ip->i_fs, partial_writes, 1);
	return true;
}

/*
 * Put N bytes of SRC (zeros if NULL) at BOFF in the data block at LBASE,
 * through the cache: reserve space if the block has no place yet, read
 * the block if the write is partial (unless partial_ok: then the buffer
 * keeps only what was written, B_PARTIAL, Deviation 28 of the port map),
 * mark it dirty (B_HEAVY, delayed allocation).  With EXTEND, i_size grows
 * to the end of the bytes (before the buffer is released: the flush cuts
 * at i_size).  Caller holds i_lock exclusive.  May sleep.
 */
static int
write_block(struct fs_inode *ip, uint64_t lbase, size_t boff,
    const void *src, size_t n, int ioflags, int seqcount, bool extend)
{
	struct vnode *vp = ITOV(ip);
	size_t dbs = dbsize(ip);
	uint64_t size = isize(ip);
	uint64_t wend = lbase + boff + n;
	int s4 = (int)(boff & ~(size_t)BLK_MASK);
	int e4 = (int)roundup4k(boff + n);
	bool need, partial = false, zeroed = false;
	struct buf *bp;
	int error;

	/* Only stored bytes need a place: zeros into a hole stay a hole. */
	need = src != NULL && needs_space(ip, lbase + (uint64_t)s4,
	    lbase + (uint64_t)e4);
	bp = getblk(vp, (off_t)lbase, (int)dbs, GETBLK_BHEAVY | GETBLK_PARTOK,
	    0);
	if ((bp->b_flags & B_CACHE) == 0 && !need &&
	    partial_ok(ip, lbase, boff, n, src, ioflags))
		partial = partial_take(ip, bp, (int)boff, (int)(boff + n));
	if (!partial && (bp->b_flags & B_PARTIAL) &&
	    (error = fill_partial(ip, bp)) != 0) {
		bqrelse(bp);
		return error;
	}
	if (need && (error = resv_grow(ip, bp, s4, e4)) != 0) {
		if (bp->b_flags & (B_CACHE | B_DELWRI)) {
			bqrelse(bp);
		} else {
			bp->b_flags |= B_INVAL;
			brelse(bp);
		}
		return error;
	}
	if ((bp->b_flags & B_CACHE) == 0 && !partial) {
		if (n == dbs) {
			bp->b_flags &= ~(B_INVAL | B_ERROR);
		} else if (lbase >= size) {
			vfs_bio_clrbuf(bp);
			zeroed = true;
		} else {
			error = breadnx(vp, (off_t)lbase, (int)dbs, 0, NULL,
			    NULL, 0, &bp);
			if (error) {
				resv_drop(ip, bp);
				bp->b_flags |= B_INVAL;
				brelse(bp);
				return error;
			}
		}
	}
	if (src)
		memcpy(bp->b_data + boff, src, n);
	else
		memset(bp->b_data + boff, 0, n);
	if ((bp->b_flags & B_PARTIAL) == 0) {
		note_dirty_pages(ip, bp, s4, e4,
		    !zeroed && (ioflags & FLYFS_O_DIRECT) == 0);
		bp->b_flags |= B_CACHE | B_CLUSTEROK;
		bheavy(bp);
	}
	bp->b_bio2.bio_offset = NOOFFSET;
	if (extend && wend > size)
		set_isize(ip, wend);

	if (ioflags & FLYFS_O_DIRECT) {
		bp->b_flags |= B_DIRECT;
		return bwrite(bp);
	}
	if (seqcount > 1 && boff + n == dbs && (bp->b_flags & B_CLUSTEROK))
		cluster_write(bp, (off_t)db_up(ip, isize(ip)), (int)dbs,
		    seqcount);
	else
		bdwrite(bp);
	return 0;
}

/*
 * Discard the cached buffers of IP in [FROM, TO) (dirty ones too),
 * returning their reservations.  Waits for buffers under I/O.  Caller
 * holds i_lock exclusive and no handle.
 */
static void
discard_buffers(struct fs_inode *ip, uint64_t from, uint64_t to)
{
	struct vnode *vp = ITOV(ip);
	off_t off = (off_t)from;

	for (;;) {
		struct buf_rb_node *n;
		struct buf *bp;
		off_t key;

		lwkt_gettoken(&vp->v_token);
		n = buf_rb_nfind(&vp->v_rbhash_tree, off);
		key = n ? n->rbn_key : -1;
		lwkt_reltoken(&vp->v_token);
		if (n == NULL || (uint64_t)key >= to)
			break;
		off = key + 1;
		bp = findblk(vp, key, 0);
		if (bp == NULL)
			continue;
		bremfree(bp);
		resv_drop(ip, bp);
		bp->b_flags |= B_INVAL | B_NOCACHE;
		brelse(bp);
	}
}

/*
 * Unmap [LBLK, END) in as many transactions as it takes, from the end.
 * With SET_SIZE, each transaction also lowers i_size to what is left
 * mapped (never below NEWSIZE), so every committed state is a file of
 * that size with nothing mapped past it; the last one sets NEWSIZE.
 */
static int
remove_range(struct fs_inode *ip, uint64_t lblk, uint64_t end,
    bool set_size, uint64_t newsize)
{
	struct flyfs *fs = ip->i_fs;
	int error = EAGAIN;

	while (error == EAGAIN) {
		struct fs_trans *tx;
		unsigned budget = FILE_TX_BLOCKS - 1;
		uint64_t lowest;
		int e;

		if ((error = fs_trans_begin(fs, FILE_TX_BLOCKS, &tx)) != 0)
			break;
		pthread_mutex_lock(&ip->i_extlock);
		error = fs_extent_remove(tx, ip, lblk, end,
		    FS_EXT_FREE | FS_EXT_KEEPCOMP, &budget, &lowest);
		if (set_size && (error == 0 || error == EAGAIN)) {
			uint64_t s = error == 0 ? newsize :
			    lowest << FLYFS_BLOCK_SHIFT;

			if (s < newsize)
				s = newsize;
			if (s < isize(ip))
				set_isize(ip, s);
		}
		pthread_mutex_unlock(&ip->i_extlock);
		e = fs_inode_dirty(tx, ip);
		if (error == 0)
			error = e;
		e = fs_trans_end(tx);
		if (error == 0)
			error = e;
		end = lowest;
	}
	return error;
}

/* Zero [FROM, TO) inside one data block, through the cache, if it has data. */
static int
zero_partial(struct fs_inode *ip, uint64_t from, uint64_t to)
{
	uint64_t lbase = db_down(ip, from);

	if (to <= from)
		return 0;
	if (findblk(ITOV(ip), (off_t)lbase, FINDBLK_TEST) == NULL &&
	    block_is_hole(ip, lbase))
		return 0;
	return write_block(ip, lbase, (size_t)(from - lbase), NULL,
	    (size_t)(to - from), 0, 0, false);
}

/* ---- Size changes ------------------------------------------------------- */

int
fs_file_truncate(struct fs_inode *ip, uint64_t newsize)
{
	uint64_t oldsize = isize(ip);
	int error = 0, e;

	if (newsize > FLYFS_MAX_FILE_SIZE)
		return EFBIG;
	if (newsize == oldsize)
		return 0;
	if (newsize > oldsize) {
		set_isize(ip, newsize);
	} else {
		struct buf *tail = NULL;

		discard_buffers(ip, db_up(ip, newsize), UINT64_MAX);
		/*
		 * Keep the last data block's buffer locked while its blocks
		 * past the new EOF are unmapped, so that no flush of it is
		 * planning over them meanwhile.
		 */
		if ((newsize & (dbsize(ip) - 1)) != 0 && dbsize(ip) <= MAXBSIZE)
			tail = getblk(ITOV(ip), (off_t)db_down(ip, newsize),
			    (int)dbsize(ip), GETBLK_BHEAVY, 0);
		error = remove_range(ip, roundup4k(newsize) >> FLYFS_BLOCK_SHIFT,
		    FLYFS_MAX_FILE_SIZE >> FLYFS_BLOCK_SHIFT, true, newsize);
		set_isize(ip, newsize);
		if (tail != NULL) {
			if (tail->b_flags & B_CACHE) {
				bqrelse(tail);
			} else {
				tail->b_flags |= B_INVAL;
				brelse(tail);
			}
		}
		/* The rest of the last data block must read as zeros. */
		if (error == 0 && (newsize & (dbsize(ip) - 1)) != 0 &&
		    dbsize(ip) <= MAXBSIZE)
			error = zero_partial(ip, newsize, db_up(ip, newsize));
	}
	fs_inode_touch(ip, FS_T_MTIME | FS_T_CTIME);
	e = fs_inode_write(ip);
	return error ? error : e;
}

int
fs_file_reclaim(struct fs_inode *ip)
{
	struct flyfs *fs = ip->i_fs;
	int error;

	vinvalbuf(ITOV(ip), 0);
	pthread_mutex_lock(&ip->i_extlock);
	if (ip->i_resv > 0) {
		fs_unreserve_blocks(fs, ip->i_resv);
		ip->i_resv = 0;
	}
	pthread_mutex_unlock(&ip->i_extlock);
	error = remove_range(ip, 0, FLYFS_MAX_FILE_SIZE >> FLYFS_BLOCK_SHIFT,
	    false, 0);
	if (error == 0 && le64_get(ip->i_din.i_blocks) != 0) {
		fs_corrupt(fs, 0, ip->i_ino, "%llu blocks still counted after "
		    "freeing the extent tree",
		    (unsigned long long)le64_get(ip->i_din.i_blocks));
		pthread_mutex_lock(&ip->i_mtx);
		le64_set(&ip->i_din.i_blocks, 0);
		pthread_mutex_unlock(&ip->i_mtx);
		error = fs_inode_write(ip);
	}
	return error;
}

/* ---- read / write ---------------------------------------------------------- */

/*
 * Asynchronous reads.  A FUSE read of one uncached block does not need a
 * worker to sleep on the disk: the worker issues the read and goes back to
 * the kernel for the next request, and the completion thread answers this
 * one from the buffer.  The buffer lock, held from getblk until the answer
 * is sent, keeps the block as it was read: truncate, hole punching and
 * inode reclaim all lock each buffer of the range (discard_buffers,
 * vinvalbuf) before they free its blocks, so they wait for the answer.
 * That is why the inode lock need not be held across the I/O, and the
 * inode reference is dropped before the data is in.
 */
struct read_async {
	flyfs_read_cb	*cb;
	void		*arg;
	size_t		boff;		/* where the read starts in the block */
	size_t		len;
};

/* bio_done of an asynchronous read: answer it, then release the buffer. */
static void
read_async_done(struct bio *bio)
{
	struct buf *bp = bio->bio_buf;
	struct read_async *ra = bio->bio_caller_info1.ptr;
	int error = 0;

	bpdone(bp, 0);
	if (bp->b_flags & B_ERROR)
		error = bp->b_error ? bp->b_error : EIO;
	if (error == 0)
		ra->cb(ra->arg, bp->b_data + ra->boff, ra->len, 0);
	else
		ra->cb(ra->arg, NULL, 0, error);
	if (error) {
		bp->b_flags |= B_INVAL;
		brelse(bp);
	} else if (bp->b_flags & B_DIRECT) {
		brelse(bp);
	} else {
		bqrelse(bp);
	}
	free(ra);
}

/*
 * Start the read of [BOFF, BOFF + LEN) of the locked, uncached buffer BP
 * for CB.  False (BP untouched) if there is no memory for it.
 */
static bool
read_async_start(struct fs_inode *ip, struct buf *bp, size_t boff,
    size_t len, int ioflags, flyfs_read_cb *cb, void *arg)
{
	struct read_async *ra;

	if ((ra = malloc(sizeof(*ra))) == NULL)
		return false;
	ra->cb = cb;
	ra->arg = arg;
	ra->boff = boff;
	ra->len = len;
	FS_COUNT(ip->i_fs, async_reads, 1);
	bread_start(bp, (ioflags & FLYFS_O_DIRECT) ? B_DIRECT : 0,
	    read_async_done, ra);
	return true;
}

int
flyfs_read(struct flyfs *fs, uint64_t ino, void *buf, size_t len, off_t off,
    int ioflags, size_t *done)
{
	return flyfs_read_async(fs, ino, buf, len, off, ioflags, done, NULL,
	    NULL);
}

int
flyfs_read_async(struct flyfs *fs, uint64_t ino, void *buf, size_t len,
    off_t off, int ioflags, size_t *done, flyfs_read_cb *cb, void *arg)
{
	struct fs_inode *ip;
	struct vnode *vp;
	uint64_t size, pos, end;
	size_t dbs;
	bool async = false;
	int seq, error = 0;

	*done = 0;
	if (off < 0)
		return EINVAL;
	if ((error = file_get(fs, ino, &ip)) != 0)
		return error;
	vp = ITOV(ip);
	dbs = dbsize(ip);
	pthread_rwlock_rdlock(&ip->i_lock);
	FS_COUNT(fs, data_reads, 1);
	size = isize(ip);
	pos = (uint64_t)off;
	end = pos + len < size ? pos + len : size;
	seq = pos < end ? sequential_heuristic(&ip->i_seq, off,
	    (size_t)(end - pos)) : 0;
	while (pos < end) {
		uint64_t lbase = pos & ~((uint64_t)dbs - 1);
		size_t boff = (size_t)(pos - lbase);
		size_t n = dbs - boff < end - pos ? dbs - boff :
		    (size_t)(end - pos);
		char *dst = (char *)buf + (pos - (uint64_t)off);
		struct buf *bp = NULL;

		/* A hole that is not cached reads as zeros, no buffer. */
		if (findblk(vp, (off_t)lbase, FINDBLK_TEST) == NULL &&
		    block_is_hole(ip, lbase)) {
			memset(dst, 0, n);
			pos += n;
			continue;
		}
		/*
		 * A block written in part and never read: the pages written
		 * are there; for any other, read the rest first.
		 */
		bp = getblk(vp, (off_t)lbase, (int)dbs, GETBLK_PARTOK, 0);
		if ((bp->b_flags & B_PARTIAL) && (ioflags & FLYFS_O_DIRECT) ==
		    0 && pages_valid(bp, boff, n)) {
			memcpy(dst, bp->b_data + boff, n);
			bqrelse(bp);
			FS_COUNT(fs, partial_reads, 1);
			pos += n;
			continue;
		}
		if ((bp->b_flags & B_PARTIAL) &&
		    (error = fill_partial(ip, bp)) != 0) {
			bqrelse(bp);
			break;
		}
		/*
		 * The whole read is this one uncached block, and no read-ahead
		 * is due: let the completion answer it.
		 */
		if (cb != NULL && pos == (uint64_t)off && pos + n == end &&
		    (bp->b_flags & B_CACHE) == 0 &&
		    ((ioflags & FLYFS_O_DIRECT) || seq == 0) &&
		    read_async_start(ip, bp, boff, n, ioflags, cb, arg)) {
			async = true;
			pos = end;
			break;
		}
		if (ioflags & FLYFS_O_DIRECT) {
			error = breadnx(vp, (off_t)lbase, (int)dbs, B_DIRECT,
			    NULL, NULL, 0, &bp);
			bp->b_flags |= B_DIRECT;
		} else {
			error = cluster_readx(vp, (off_t)db_up(ip, size),
			    (off_t)lbase, (int)dbs, (size_t)(end - pos),
			    (size_t)seq * MAXBSIZE, &bp);
		}
		if (error) {
			bp->b_flags |= B_INVAL;
			brelse(bp);
			break;
		}
		memcpy(dst, bp->b_data + boff, n);
		if (ioflags & FLYFS_O_DIRECT)
			brelse(bp);
		else
			bqrelse(bp);
		pos += n;
	}
	cluster_seq_advance(&ip->i_seq, (off_t)pos);
	*done = pos > (uint64_t)off ? (size_t)(pos - (uint64_t)off) : 0;
	FS_COUNT(fs, data_read_bytes, *done);
	pthread_rwlock_unlock(&ip->i_lock);
	if (*done > 0)
		fs_inode_accessed(ip);
	fs_iput(ip);
	if (async) {
		*done = 0;		/* the callback has (or will have) it */
		return EINPROGRESS;
	}
	return *done > 0 ? 0 : error;
}

/*
 * A change of IP's data by CRED (a write, a fallocate) clears the set-id
 * bits as the VFS would (fs_kill_setid), unless CRED is root (CAP_FSETID)
 * or NULL (the kernel writing back its pages).  True if it cleared any.
 * (i_mtx)
 */
static bool
data_kill_setid(struct fs_inode *ip, const struct flyfs_cred *cred)
{
	return cred != NULL && cred->uid != 0 && fs_kill_setid(ip, cred);
}

/*
 * Give the write's side effects to the inode: times, set-id bits
 * (*DROPPED if it cleared any).
 */
static int
write_finish(struct fs_inode *ip, uint64_t oldsize,
    const struct flyfs_cred *cred, bool *dropped)
{
	int64_t old_sec;
	bool persist;

	pthread_mutex_lock(&ip->i_mtx);
	old_sec = (int64_t)le64_get(ip->i_din.i_mtime);
	pthread_mutex_unlock(&ip->i_mtx);
	fs_inode_touch(ip, FS_T_MTIME | FS_T_CTIME);
	pthread_mutex_lock(&ip->i_mtx);
	persist = fs_i_size(ip) != oldsize ||
	    (int64_t)le64_get(ip->i_din.i_mtime) != old_sec;
	if (data_kill_setid(ip, cred))
		persist = *dropped = true;
	/*
	 * The size and a new second of mtime are journaled now; sub-second
	 * changes ride with the next inode write (the strategy's, setattr's)
	 * or are written by sync, unmount or eviction (i_dirty; not by
	 * fsync: see flyfs_fsync).
	 */
	if (!persist)
		ip->i_dirty = true;
	pthread_mutex_unlock(&ip->i_mtx);
	return persist ? fs_inode_write(ip) : 0;
}

int
flyfs_write(struct flyfs *fs, uint64_t ino, const void *buf, size_t len,
    off_t off, int ioflags, const struct flyfs_cred *cred, size_t *done)
{
	struct fs_inode *ip;
	uint64_t pos, end, oldsize;
	size_t dbs;
	long excess;
	bool dropped = false;
	int seq, error = 0, e;

	*done = 0;
	if (off < 0)
		return EINVAL;
	if ((error = file_get(fs, ino, &ip)) != 0)
		return error;
	if (len == 0)
		goto out_put;
	if ((uint64_t)off >= FLYFS_MAX_FILE_SIZE) {
		error = EFBIG;
		goto out_put;
	}
	if (len > FLYFS_MAX_FILE_SIZE - (uint64_t)off)
		len = (size_t)(FLYFS_MAX_FILE_SIZE - (uint64_t)off);
	/* bwillwrite(): wait for the daemons before adding dirty data. */
	if ((excess = bd_heatup()) > 0)
		bd_wait(excess);

	pthread_rwlock_wrlock(&ip->i_lock);
	error = __atomic_exchange_n(&ip->i_error, 0, __ATOMIC_RELAXED);
	if (error == 0)
		error = fs_xattr_kill_cap(ip);
	if (error)
		goto out_unlock;
	FS_COUNT(fs, data_writes, 1);
	dbs = dbsize(ip);
	oldsize = isize(ip);
	seq = sequential_heuristic(&ip->i_seq, off, len);
	pos = (uint64_t)off;
	end = pos + len;
	while (pos < end) {
		uint64_t lbase = pos & ~((uint64_t)dbs - 1);
		size_t boff = (size_t)(pos - lbase);
		size_t n = dbs - boff < end - pos ? dbs - boff :
		    (size_t)(end - pos);

		if (pos > (uint64_t)off && (excess = bd_heatup()) > 0)
			bd_wait(excess);
		error = write_block(ip, lbase, boff,
		    (const char *)buf + (pos - (uint64_t)off), n, ioflags, seq,
		    true);
		if (error)
			break;
		pos += n;
	}
	cluster_seq_advance(&ip->i_seq, (off_t)pos);
	if (pos > (uint64_t)off) {
		*done = (size_t)(pos - (uint64_t)off);
		FS_COUNT(fs, data_write_bytes, *done);
		e = write_finish(ip, oldsize, cred, &dropped);
		error = e;
	}
out_unlock:
	pthread_rwlock_unlock(&ip->i_lock);
	/* Nobody asked for the new mode: tell whoever caches it. */
	if (dropped && fs->s_attr_cb != NULL)
		fs->s_attr_cb(fs->s_attr_arg, ino);
out_put:
	fs_iput(ip);
	return error;
}

/* ---- fallocate ------------------------------------------------------------- */

/* Map every hole of [LBLK, END) to new unwritten extents. */
static int
prealloc(struct fs_inode *ip, uint64_t lblk, uint64_t end)
{
	struct flyfs *fs = ip->i_fs;
	int error = 0, e;

	while (lblk < end && error == 0) {
		struct fs_trans *tx;
		unsigned budget = FILE_TX_BLOCKS - 1;

		if ((error = fs_trans_begin(fs, FILE_TX_BLOCKS, &tx)) != 0)
			break;
		pthread_mutex_lock(&ip->i_extlock);
		while (lblk < end && error == 0 &&
		    budget >= fs_extent_op_cost(ip) + 2) {
			struct fs_extent x, ne = { 0 };
			uint64_t hend = end, blk;
			uint32_t got, want;

			error = fs_extent_find(ip, lblk, &x);
			if (error == 0 && x.lblk <= lblk) {
				lblk = fs_ext_end(&x);
				continue;
			}
			if (error == 0 && x.lblk < hend)
				hend = x.lblk;
			if (error == ENOENT)
				error = 0;
			if (error)
				break;
			want = hend - lblk > FLYFS_EXT_MAX_LEN ?
			    FLYFS_EXT_MAX_LEN : (uint32_t)(hend - lblk);
			error = fs_alloc_blocks(tx, alloc_goal(ip, lblk), want,
			    0, &blk, &got);
			if (error)
				break;
			ne.lblk = lblk;
			ne.pblk = blk;
			ne.llen = ne.plen = got;
			ne.flags = FLYFS_EXT_UNWRITTEN;
			budget -= fs_extent_op_cost(ip) + 2;
			if ((error = fs_extent_insert(tx, ip, &ne)) != 0) {
				fs_trans_free_blocks(tx, blk, got, 0);
				break;
			}
			ip->i_alloc_goal = blk + got;
			lblk += got;
		}
		pthread_mutex_unlock(&ip->i_extlock);
		e = fs_trans_end(tx);
		if (error == 0)
			error = e;
	}
	return error;
}

/* Make [OFF, END) read as zeros and free what it fully covers. */
static int
punch(struct fs_inode *ip, uint64_t off, uint64_t end)
{
	uint64_t size = isize(ip);
	uint64_t a = db_up(ip, off), b = db_down(ip, end);
	int error = 0;

	if (a > b) {
		/* Inside one data block. */
		return zero_partial(ip, off, end < size ? end : size);
	}
	if (off < a && off < size)
		error = zero_partial(ip, off, a < size ? a : size);
	if (error == 0 && b < end && b < size)
		error = zero_partial(ip, b, end < size ? end : size);
	if (error == 0 && a < b) {
		discard_buffers(ip, a, b);
		error = remove_range(ip, a >> FLYFS_BLOCK_SHIFT,
		    b >> FLYFS_BLOCK_SHIFT, false, 0);
	}
	return error;
}

int
flyfs_fallocate(struct flyfs *fs, uint64_t ino, int mode, off_t off,
    off_t len, const struct flyfs_cred *cred)
{
	const int keep = FALLOC_FL_KEEP_SIZE;
	struct fs_inode *ip;
	uint64_t end, size;
	bool dropped;
	int error, e;

	if (mode != 0 && mode != keep &&
	    mode != (FALLOC_FL_PUNCH_HOLE | keep) &&
	    mode != FALLOC_FL_ZERO_RANGE &&
	    mode != (FALLOC_FL_ZERO_RANGE | keep))
		return EOPNOTSUPP;
	if (off < 0 || len <= 0)
		return EINVAL;
	end = (uint64_t)off + (uint64_t)len;
	if (end > FLYFS_MAX_FILE_SIZE || end < (uint64_t)off)
		return EFBIG;
	if ((error = fs_iget(fs, ino, &ip)) != 0)
		return error;
	if (!S_ISREG(fs_i_mode(ip)) || dbsize(ip) > MAXBSIZE) {
		error = S_ISDIR(fs_i_mode(ip)) ? EISDIR :
		    S_ISREG(fs_i_mode(ip)) ? EOPNOTSUPP : ENODEV;
		fs_iput(ip);
		return error;
	}
	pthread_rwlock_wrlock(&ip->i_lock);
	/* First, as ext4's file_modified; written with the times below. */
	pthread_mutex_lock(&ip->i_mtx);
	dropped = data_kill_setid(ip, cred);
	pthread_mutex_unlock(&ip->i_mtx);
	size = isize(ip);
	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		error = punch(ip, (uint64_t)off, end);
	if (error == 0 && (mode & FALLOC_FL_PUNCH_HOLE) == 0) {
		uint64_t from = (uint64_t)off >> FLYFS_BLOCK_SHIFT;

		if (mode & FALLOC_FL_ZERO_RANGE)
			/* Partial data blocks were zeroed in the cache. */
			from = db_up(ip, (uint64_t)off) >> FLYFS_BLOCK_SHIFT;
		error = prealloc(ip, from, (mode & FALLOC_FL_ZERO_RANGE) ?
		    db_down(ip, end) >> FLYFS_BLOCK_SHIFT :
		    roundup4k(end) >> FLYFS_BLOCK_SHIFT);
		if (error == 0 && (mode & keep) == 0 && end > size)
			set_isize(ip, end);
	}
	fs_inode_touch(ip, (mode & (FALLOC_FL_PUNCH_HOLE |
	    FALLOC_FL_ZERO_RANGE)) || isize(ip) != size ?
	    FS_T_MTIME | FS_T_CTIME : FS_T_CTIME);
	e = fs_inode_write(ip);
	if (error == 0)
		error = e;
	pthread_rwlock_unlock(&ip->i_lock);
	if (dropped && fs->s_attr_cb != NULL)
		fs->s_attr_cb(fs->s_attr_arg, ino);
	fs_iput(ip);
	return error;
}

/* ---- SEEK_DATA / SEEK_HOLE ------------------------------------------------ */

/* Offset of the first dirty buffer at or after OFF's data block, or -1. */
static off_t
next_dirty(struct fs_inode *ip, uint64_t off)
{
	struct vnode *vp = ITOV(ip);
	struct buf_rb_node *n;
	off_t key;

	lwkt_gettoken(&vp->v_token);
	n = buf_rb_nfind(&vp->v_rbdirty_tree, (off_t)db_down(ip, off));
	key = n ? n->rbn_key : -1;
	lwkt_reltoken(&vp->v_token);
	return key;
}

/* The first written extent ending after LBLK, or ENOENT. */
static int
next_written(struct fs_inode *ip, uint64_t lblk, struct fs_extent *out)
{
	int error;

	for (;;) {
		error = fs_extent_find(ip, lblk, out);
		if (error || !(out->flags & FLYFS_EXT_UNWRITTEN))
			return error;
		lblk = fs_ext_end(out);
	}
}

int
flyfs_lseek(struct flyfs *fs, uint64_t ino, off_t off, int whence,
    off_t *result)
{
	struct fs_inode *ip;
	uint64_t size, x;
	int error;

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return EINVAL;
	if (off < 0)
		return ENXIO;
	if ((error = file_get(fs, ino, &ip)) != 0)
		return error;
	pthread_rwlock_rdlock(&ip->i_lock);
	size = isize(ip);
	x = (uint64_t)off;
	if (x >= size) {
		error = ENXIO;
		goto out;
	}
	pthread_mutex_lock(&ip->i_extlock);
	if (whence == SEEK_DATA) {
		struct fs_extent e;
		off_t d = next_dirty(ip, x);
		uint64_t cand = UINT64_MAX;

		error = next_written(ip, x >> FLYFS_BLOCK_SHIFT, &e);
		if (error == 0)
			cand = e.lblk << FLYFS_BLOCK_SHIFT;
		else if (error != ENOENT)
			goto out_ext;
		error = 0;
		if (d >= 0 && (uint64_t)d < cand)
			cand = (uint64_t)d;
		if (cand < x)
			cand = x;
		if (cand >= size)
			error = ENXIO;
		else
			*result = (off_t)cand;
	} else {
		for (;;) {
			struct fs_extent e;
			off_t d;

			if (x >= size) {
				x = size;
				break;
			}
			d = next_dirty(ip, x);
			if (d >= 0 && (uint64_t)d <= x) {
				x = (uint64_t)d + dbsize(ip);
				continue;
			}
			error = next_written(ip, x >> FLYFS_BLOCK_SHIFT, &e);
			if (error == ENOENT) {
				error = 0;
				break;
			}
			if (error)
				goto out_ext;
			if (e.lblk > (x >> FLYFS_BLOCK_SHIFT))
				break;
			x = fs_ext_end(&e) << FLYFS_BLOCK_SHIFT;
		}
		*result = (off_t)(x < size ? x : size);
	}
out_ext:
	pthread_mutex_unlock(&ip->i_extlock);
out:
	pthread_rwlock_unlock(&ip->i_lock);
	fs_iput(ip);
	return error;
}

/* ---- Per-file figures ---------------------------------------------------- */

int
flyfs_file_stats_foreach(struct flyfs *fs, uint64_t ino,
    void (*fn)(void *arg, const char *name, uint64_t value), void *arg)
{
	struct fs_inode *ip;
	struct vnode *vp;
	uint64_t extents = 0, cached, dirty, blocks, resv;
	int error;

	if ((error = fs_iget(fs, ino, &ip)) != 0)
		return error;
	vp = ITOV(ip);
	lwkt_gettoken(&vp->v_token);
	cached = (uint64_t)vp->v_rbhash_tree.rbt_count;
	dirty = (uint64_t)vp->v_rbdirty_tree.rbt_count;
	lwkt_reltoken(&vp->v_token);
	if (S_ISREG(fs_i_mode(ip)) || S_ISLNK(fs_i_mode(ip)))
		error = fs_extent_count(ip, &extents);
	pthread_mutex_lock(&ip->i_mtx);
	blocks = le64_get(ip->i_din.i_blocks);
	pthread_mutex_unlock(&ip->i_mtx);
	pthread_mutex_lock(&ip->i_extlock);
	resv = ip->i_resv;
	pthread_mutex_unlock(&ip->i_extlock);
	if (error == 0) {
		fn(arg, "cached_bytes", cached * dbsize(ip));
		fn(arg, "dirty_bytes", dirty * dbsize(ip));
		fn(arg, "extents", extents);
		fn(arg, "disk_bytes", blocks << FLYFS_BLOCK_SHIFT);
		fn(arg, "reserved_bytes", resv << FLYFS_BLOCK_SHIFT);
		fn(arg, "data_block_size", dbsize(ip));
		fs_compress_inode_stats_foreach(&ip->i_compst, fn, arg);
	}
	fs_iput(ip);
	return error;
}
