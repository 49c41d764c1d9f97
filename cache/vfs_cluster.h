/*
 * vfs_cluster.h - write clustering and read-ahead (the port of DragonFly
 * BSD's sys/kern/vfs_cluster.c).
 *
 * cluster_awrite() is declared in buf.h because the daemons use it; this
 * header adds what a filesystem's read and write paths call: cluster_read /
 * cluster_readx (bread with read-ahead), cluster_write (bdwrite with
 * write-behind) and the per-caller sequential heuristic that sizes the
 * read-ahead.
 *
 * CONTRACT WITH THE FILESYSTEM
 *   - A cluster is one pbuf (B_CLUSTER, no memory, no vnode) whose
 *     b_xiov / b_xiovcnt point at the children's b_data.  It is handed to
 *     vn_strategy(vp, &pbuf->b_bio1) like any buffer.  The strategy must
 *     not expect bio_buf->b_vp to be set, and must move raw bytes: a
 *     cluster covers [b_loffset, b_loffset + b_bcount) of the file.
 *   - Reads: b_bio2.bio_offset is always set (from vop_bmap).  vop_bmap's
 *     *runp must count only the bytes from LOFFSET on (this block
 *     included) that are stored raw and contiguously on the device, so a
 *     compressed extent is never read as a cluster.
 *   - Writes: children are adjacent in logical offsets and, when their
 *     device offsets are known (b_bio2, filled from vop_bmap if missing),
 *     in device offsets too; the pbuf's b_bio2.bio_offset is the first
 *     child's.  When the device offsets are all unknown (NOOFFSET: delayed
 *     allocation), the pbuf arrives with b_bio2.bio_offset == NOOFFSET and
 *     the strategy allocates (and writes) the whole range itself.
 *   - Only vnodes with VCLUSTEROK and buffers with B_CLUSTEROK are merged.
 *
 * The tunables below are the kernel's sysctls of the same names; they
 * belong in the bufstats registry.
 */
#ifndef FLYFS_CACHE_VFS_CLUSTER_H
#define FLYFS_CACHE_VFS_CLUSTER_H

#include <stddef.h>
#include <sys/types.h>

#include "cache/buf.h"

struct vnode;

/* vfs.write_behind: 0 off, 1 push a finished sequential cluster (default),
 * 2 push the cluster before it (backed-off). */
extern int write_behind;
/* vfs.write_behind_minfilesize: no write-behind for smaller files (10 MiB):
 * temporary files are then never written at all. */
extern long write_behind_minfilesize;
/*
 * vfs.max_readahead: bytes of read-ahead at most per trigger (bufinit
 * sets hibufspace / 64 within [2 MiB, 8 MiB]; the seed's is 2 MiB).
 */
extern int max_readahead;
/* Cluster pbufs still available (the kernel's nswbuf / 2); (a). */
extern int cluster_pbuf_freecnt;

/*
 * The sequential heuristic of the kernel's vn_read (f_seqcount, f_nextoff
 * in struct file), kept by the caller: one per open file handle, or per
 * inode.  Not locked: the caller serialises its own reads on it, or
 * accepts a heuristic result.
 */
struct cluster_seq {
	int	cs_seqcount;	/* 0 random .. IO_SEQMAX sequential */
	off_t	cs_nextoff;	/* where a sequential read continues */
};

#define IO_SEQMAX	127		/* the kernel's cap on f_seqcount */
#define BKVASIZE	16384		/* seqcount grows one per 16 KiB read */

void	cluster_seq_init(struct cluster_seq *cs);
/*
 * Score a read of RESID bytes at OFFSET: sequential reads raise the count
 * (by one per BKVASIZE), a seek drops it to 1 and then 0.  Returns the
 * count; the read-ahead a caller asks for is count * MAXBSIZE bytes (the
 * MAXREQ of cluster_readx).  After the read, set cs_nextoff to its end
 * (cluster_seq_advance).
 */
int	sequential_heuristic(struct cluster_seq *cs, off_t offset,
	    size_t resid);
void	cluster_seq_advance(struct cluster_seq *cs, off_t endoff);

/*
 * bread() with clustering and read-ahead.  *BPP: NULL, or the buffer
 * for LOFFSET already locked by the caller (getblk).  Reads BLKSIZE bytes
 * at LOFFSET synchronously (clustered with following blocks when the
 * device layout allows) and starts asynchronous read-ahead of up to MAXREQ
 * bytes (raised to MINREQ, capped by max_readahead and by FILESIZE), or,
 * when the block was cached and carries a B_RAM mark, the next read-ahead
 * window beyond what is cached.  MAXREQ <= BLKSIZE means no read-ahead.
 *
 * Returns 0 or the read's errno; *BPP is always set and locked: the
 * caller releases it (brelse on error).  Errors of read-ahead are not
 * reported (those buffers are simply left invalid).  May sleep ("clurd",
 * "getblk"); never waits for a pbuf (reads fall back to single blocks).
 */
int	cluster_readx(struct vnode *vp, off_t filesize, off_t loffset,
	    int blksize, size_t minreq, size_t maxreq, struct buf **bpp);

static inline int
cluster_read(struct vnode *vp, off_t filesize, off_t loffset, int blksize,
    size_t minreq, size_t maxreq, struct buf **bpp)
{
	*bpp = NULL;
	return cluster_readx(vp, filesize, loffset, blksize, minreq, maxreq,
	    bpp);
}

/*
 * bdwrite() for a sequential writer: BP (locked, filled, B_CACHE) is
 * marked dirty and released; when it completes a run of contiguous
 * blocks as long as one device I/O may be, and the writer is sequential
 * (SEQCOUNT > 1), the run is written now as one cluster (write-behind)
 * instead of waiting for buf_daemon.  FILESIZE: the file's size after
 * this write.  The clustering state lives in the vnode (v_lastw, v_cstart,
 * v_lasta, v_clen): the caller holds the vnode's writer lock.  May sleep
 * (bd_wait in bdwrite, "pbufwt").
 */
void	cluster_write(struct buf *bp, off_t filesize, int blksize,
	    int seqcount);

/* Append TBP to the child list of cluster BIO (b_cluster_next chain). */
void	cluster_append(struct bio *bio, struct buf *tbp);

#endif /* FLYFS_CACHE_VFS_CLUSTER_H */
