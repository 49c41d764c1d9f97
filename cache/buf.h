/*
 * buf.h - struct buf and the buffer cache's public interface.
 *
 * This is the contract between cache/ (the port of DragonFly BSD's
 * sys/kern/vfs_bio.c), cache/vfs_cluster.c (clustering, read-ahead) and
 * the filesystem.  Names follow the kernel so the seed can be read beside
 * this code: struct buf with b_* fields, B_* flags, BQUEUE_*, getblk,
 * bread, bdwrite, brelse, biodone ...
 *
 * STABILITY
 *   Stable (code outside cache/ may depend on them):
 *     - struct buf fields marked "(pub)" and their meaning; struct bio,
 *       struct bio_track (bio.h); struct vnode and struct vop_ops (vnode.h);
 *     - the B_*, BUF_CMD_*, GETBLK_*, FINDBLK_* constants below;
 *     - every function declared in this file, with the contract written
 *       beside it (kernel semantics unless a deviation is noted).
 *   Private to cache/ (may change): fields marked "(priv)", the queue
 *   layout (BQUEUE_* values are stable, their per-shard lists are not).
 *
 * LOCK / PROTECTION KEYS used on fields below
 *   (b)  the buffer lock (BUF_LOCK); owner only.
 *   (q)  the buffer's shard spinlock (bufpcpu[b_qcpu].spin).
 *   (v)  the owning vnode's v_token.
 *   (a)  atomic.
 *   (c)  constant after bufinit().
 *
 * MEMORY
 *   A buffer owns b_bufsize bytes at b_data, page-aligned (O_DIRECT), from
 *   blockdev_alloc_buf().  There are no VM pages behind a buffer: once a
 *   buffer is released with B_INVAL / B_RELBUF / B_NOCACHE / B_DIRECT its
 *   memory is freed and the data is gone.  bufspace is the exact sum of
 *   b_bufsize over all buffers.
 */
#ifndef FLYFS_CACHE_BUF_H
#define FLYFS_CACHE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "blockdev/blockdev.h"
#include "cache/bio.h"
#include "cache/buf_lock.h"
#include "cache/buf_rb.h"
#include "cache/kern_synch.h"

struct vnode;

#define NBUF_BIO	4		/* bio layers embedded in a buf */
#define DEV_BSIZE	512		/* b_bufsize granularity */
#define MAXBSIZE	131072		/* largest getblk() size: the largest data
					 * block the format allows (kernel: 64 KiB) */
#define MAXPHYS		(1024 * 1024)	/* largest single device I/O (clusters) */
#define NBUFCALCSIZE	16384		/* bytes of cache per buffer header */

typedef enum buf_cmd {
	BUF_CMD_DONE = 0,		/* no I/O in progress */
	BUF_CMD_READ,
	BUF_CMD_WRITE,
	BUF_CMD_FLUSH,			/* a barrier: blockdev BLOCKDEV_FLUSH */
} buf_cmd_t;

/* The free queues (b_qindex).  Each shard has one list of each. */
typedef enum bufq_type {
	BQUEUE_NONE,			/* not on a queue: locked by someone */
	BQUEUE_LOCKED,			/* B_LOCKED: uncommitted journal metadata */
	BQUEUE_CLEAN,			/* not B_DELWRI: may be recycled */
	BQUEUE_DIRTY,			/* B_DELWRI: written by buf_daemon */
	BQUEUE_DIRTY_HW,		/* B_DELWRI|B_HEAVY: by buf_daemon_hw */
	BQUEUE_EMPTY,			/* no memory, no vnode */
	BUFFER_QUEUES
} bufq_type_t;

struct buf {
	struct buf_rb_node b_rbnode;	/* (v) v_rbclean_tree / v_rbdirty_tree */
	struct buf_rb_node b_rbhash;	/* (v) v_rbhash_tree */
	TAILQ_ENTRY(buf) b_freelist;	/* (q) position on a free queue */
	struct buf	*b_cluster_next; /* (b) vfs_cluster: next child (pub) */
	struct vnode	*b_vp;		/* (b)+(v) owner vnode, NULL if none (pub) */
	struct bio	b_bio_array[NBUF_BIO]; /* (b) translation layers (pub) */
	uint32_t	b_flags;	/* (b) B_* (pub) */
	unsigned short	b_qindex;	/* (q) BQUEUE_* */
	unsigned short	b_qcpu;		/* (c) shard whose queues hold us */
	unsigned char	b_qflags;	/* (q) BQF_* scan state (priv) */
	struct buflock	b_lock;		/* the buffer lock */
	buf_cmd_t	b_cmd;		/* (b) I/O command in progress (pub) */
	int		b_bufsize;	/* (b) bytes owned at b_data (pub) */
	int		b_runningbufspace; /* (b) bytes counted in runningbufspace */
	int		b_bcount;	/* (b) valid/requested bytes (pub) */
	int		b_resid;	/* (b) bytes not transferred (pub) */
	int		b_error;	/* (b) errno when B_ERROR (pub) */
	int		b_refs;		/* (a) holds: bqhold, FINDBLK_REF */
	char		*b_data;	/* (b) the memory (pub) */
	int		b_dirtyoff;	/* (b) dirty range, for the fs (pub) */
	int		b_dirtyend;
	uint32_t	b_pgvalid;	/* (b) B_PARTIAL: the valid 4 KiB pages,
					 * bit i for [i * 4096, i * 4096 + 4096)
					 * -- the kernel's page valid bits
					 * (pub) */
	uint32_t	b_pgclean;	/* (b) a whole dirty buffer: the pages
					 * known to equal the block's place on
					 * disk, same bits; 0: none known.  The
					 * filesystem's (pub) */
	/*
	 * Vectored I/O: when b_xiovcnt > 0 the device strategy moves the
	 * b_xiovcnt iovecs instead of [b_data, b_data + b_bcount).  Used by
	 * cluster pbufs (vfs_cluster) whose data lives in the children.
	 */
	const struct iovec *b_xiov;	/* (b) (pub) */
	int		b_xiovcnt;	/* (b) (pub) */
	void		*b_dep;		/* (b) fs dependency cookie: non-NULL
					 * means the vop_* dependency hooks are
					 * called (the kernel's b_dep list) */
	struct iovec	b_deviov;	/* (b) the single iovec of b_devreq */
	struct blockdev_req b_devreq;	/* (b) the device request of the I/O
					 * in flight (dev_strategy) (priv) */
};

#define b_bio1		b_bio_array[0]	/* logical layer: offset in b_vp */
#define b_bio2		b_bio_array[1]	/* device layer: offset on the device */
#define b_loffset	b_bio1.bio_offset

/*
 * Buffer flags (b_flags).  Values are DragonFly's; flags of the kernel that
 * have no meaning without VM pages or devices (B_VMIO, B_PAGING, B_KVABIO,
 * B_HASBOGUS, B_RAW, B_DIRTY, B_FAILONDIS) are not defined.
 */
#define B_AGE		0x00000001	/* recycle first (skip second pass) */
#define B_NEEDCOMMIT	0x00000002	/* fs-private: written, not committed;
					 * the cache does not interpret it */
#define B_NOTMETA	0x00000004	/* data, not metadata: released clean
					 * with B_AGE so it is recycled first */
#define B_DIRECT	0x00000008	/* O_DIRECT: do not keep after release */
#define B_DEFERRED	0x00000010	/* skipped once by flushbufqueues */
#define B_CACHE		0x00000020	/* b_data [0, b_bcount) fully valid */
#define B_HASHED	0x00000040	/* indexed in b_vp->v_rbhash_tree */
#define B_DELWRI	0x00000080	/* dirty: delayed write */
#define B_BNOCLIP	0x00000100	/* no EOF clipping (always, here) */
#define B_EINTR		0x00000400	/* I/O was interrupted */
#define B_ERROR		0x00000800	/* I/O error, b_error says which */
#define B_IOISSUED	0x00001000	/* I/O issued; consumers may clear */
#define B_INVAL		0x00002000	/* contents invalid: destroy on release */
#define B_LOCKED	0x00004000	/* held in core: BQUEUE_LOCKED, never
					 * written by the daemons nor recycled */
#define B_NOCACHE	0x00008000	/* destroy after use (after the write) */
#define B_CLUSTEROK	0x00020000	/* may be clustered with neighbours */
#define B_MARKER	0x00040000	/* a queue-scan marker, not a buffer */
#define B_HEAVY		0x00100000	/* heavy-weight flush: DIRTY_HW queue */
#define B_RELBUF	0x00400000	/* release memory on brelse */
#define B_VNCLEAN	0x01000000	/* on b_vp->v_rbclean_tree */
#define B_VNDIRTY	0x02000000	/* on b_vp->v_rbdirty_tree */
#define B_ORDERED	0x08000000	/* write after all earlier writes are
					 * durable (device barrier first) */
#define B_RAM		0x10000000	/* read-ahead mark */
#define B_PARTIAL	0x00800000	/* only the b_pgvalid pages of b_data are
					 * valid; never with B_CACHE (flyfs:
					 * sub-block writes not read first) */
#define B_CLUSTER	0x40000000	/* a cluster pbuf (vfs_cluster) */
#define B_VFSFLAG1	0x80000000	/* fs-private */

/* getblk() flags */
#define GETBLK_PCATCH	0x0001		/* accepted, no effect (no signals) */
#define GETBLK_BHEAVY	0x0002		/* new buffer is B_HEAVY */
#define GETBLK_SZMATCH	0x0004		/* existing buffer must have this size */
#define GETBLK_NOWAIT	0x0008		/* do not block: NULL instead */
#define GETBLK_PARTOK	0x0100		/* return a dirty B_PARTIAL buffer as
					 * it is (the caller fills or extends
					 * it) instead of writing it first */

/* findblk() flags */
#define FINDBLK_TEST	0x0010		/* do not lock */
#define FINDBLK_NBLOCK	0x0020		/* lock non-blocking, NULL if busy */
#define FINDBLK_REF	0x0040		/* return with b_refs held */

/* bufinit() parameters; zero-initialise and set what you need. */
struct bufinit_args {
	long	cache_size;	/* bytes; 0 = 1/8 of RAM, clamped to
				 * [16 MiB, 2 GiB] */
	long	nbuf;		/* buffer headers; 0 = cache_size / NBUFCALCSIZE */
	int	nshards;	/* queue shards; 0 = number of CPUs (max 64) */
	bool	no_daemons;	/* tests: do not start buf_daemon[_hw] */
};

/* ---- Life of the cache ------------------------------------------------ */

/*
 * Size the cache, compute the watermarks (bufinit's formulas), preallocate
 * nbuf headers on the EMPTY queues and start buf_daemon and buf_daemon_hw.
 * Returns 0 or an errno (EBUSY if already initialised, ENOMEM).
 */
int	bufinit(const struct bufinit_args *args);
/*
 * Write every dirty buffer (DIRTY and DIRTY_HW queues; LOCKED buffers are
 * left alone and reported), wait for all I/O, stop the daemons, destroy
 * every buffer and free the headers.  No buffer may be locked by a caller.
 * Returns 0, or EIO if some dirty buffer could not be written (its data is
 * lost), or EBUSY if LOCKED buffers remained (they are destroyed).
 */
int	buf_shutdown(void);
/*
 * Simulated crash (tests): stop the daemons, wait for writes already
 * issued, destroy every buffer (dirty and LOCKED included) without
 * writing.  Afterwards bufinit() may be called again.
 */
void	buf_abandon(void);
/* Start the daemons after bufinit(no_daemons = true). */
int	buf_daemon_start(void);

/* ---- Lookup and life cycle -------------------------------------------- */

/* Returns the buffer locked (FINDBLK_TEST: unlocked), or NULL. */
struct buf *findblk(struct vnode *vp, off_t loffset, int flags);
/*
 * Returns the buffer for (vp, loffset) of SIZE bytes, locked and removed
 * from its queue, creating it if needed.  If B_CACHE is clear the caller
 * must read it, fill it and set B_CACHE, or release it with B_INVAL.
 * Returns NULL only with GETBLK_NOWAIT / GETBLK_SZMATCH / SLPTIMEO.
 * May sleep ("getblk", "bufspc", "newbuf").
 */
struct buf *getblk(struct vnode *vp, off_t loffset, int size, int blkflags,
	    int slptimeo);
/* Only a fully valid buffer without B_RAM, locked; else NULL. */
struct buf *getcacheblk(struct vnode *vp, off_t loffset, int blksize,
	    int blkflags);
/* A locked, unassociated buffer with SIZE bytes reserved, or NULL. */
struct buf *getnewbuf(int blkflags, int slptimeo, int size, int maxsize);
/* Re-lock a B_LOCKED (or dependency-held) buffer and take it off its queue. */
void	regetblk(struct buf *bp);
/* Resize the locked buffer's memory to SIZE (b_bcount = SIZE). */
void	allocbuf(struct buf *bp, int size);
int	inmem(struct vnode *vp, off_t loffset);
/* Release a locked buffer: queue it, or destroy it (B_INVAL etc.). */
void	brelse(struct buf *bp);
/* Release a locked buffer we expect to use again soon. */
void	bqrelse(struct buf *bp);
/* Hold/drop a reference that keeps the buffer from being recycled. */
void	bqhold(struct buf *bp);
void	bqdrop(struct buf *bp);
void	bremfree(struct buf *bp);
/*
 * Call CALLBACK on every buffer header (unlocked: the callback must lock
 * and re-validate).  A negative return stops the scan and is returned;
 * otherwise the sum of the returns.
 */
int	scan_all_buffers(int (*callback)(struct buf *, void *), void *info);

/*
 * Destroy every clean, idle buffer (drop_caches).  Returns how many went.
 * Not in the seed.
 */
long	buf_drop_clean(void);

/* ---- I/O ---------------------------------------------------------------- */

int	breadnx(struct vnode *vp, off_t loffset, int size, int bflags,
	    off_t *raoffset, int *rabsize, int cnt, struct buf **bpp);
void	breadcb(struct vnode *vp, off_t loffset, int size, int bflags,
	    void (*func)(struct bio *), void *arg);
void	bread_start(struct buf *bp, int bflags, biodone_t *func, void *arg);
int	bwrite(struct buf *bp);		/* synchronous; releases bp */
void	bawrite(struct buf *bp);	/* asynchronous; releases bp */
void	bdwrite(struct buf *bp);	/* delayed: mark dirty, release */
void	buwrite(struct buf *bp);	/* = bdwrite here (no VM pages) */
void	bdirty(struct buf *bp);
void	bundirty(struct buf *bp);
void	bheavy(struct buf *bp);
void	bsetrunningbufspace(struct buf *bp, int bytes);
void	vfs_bio_clrbuf(struct buf *bp);	/* zero b_data, mark valid */

/*
 * *BPP == NULL: getblk; then read if not B_CACHE.  Returns 0 or an errno;
 * *BPP is always set and locked: the caller brelse()s it even on error.
 */
static inline int
bread(struct vnode *vp, off_t loffset, int size, struct buf **bpp)
{
	*bpp = NULL;
	return breadnx(vp, loffset, size, 0, NULL, NULL, 0, bpp);
}

static inline int
breadn(struct vnode *vp, off_t loffset, int size, off_t *raoffset,
    int *rabsize, int cnt, struct buf **bpp)
{
	*bpp = NULL;
	return breadnx(vp, loffset, size, 0, raoffset, rabsize, cnt, bpp);
}

/*
 * Hand bio to the vnode's strategy (vp->v_ops->vop_strategy) after
 * marking B_IOISSUED and taking a v_track_read/v_track_write reference.
 */
void	vn_strategy(struct vnode *vp, struct bio *bio);
void	biodone(struct bio *bio);	/* any thread; may release the buf */
void	biodone_sync(struct bio *bio);
void	bpdone(struct buf *bp, int elseit);
int	biowait(struct bio *bio, const char *wmesg);
int	biowait_timeout(struct bio *bio, const char *wmesg, int to);
void	bio_start_transaction(struct bio *bio, struct bio_track *track);

void	initbufbio(struct buf *bp);
void	reinitbufbio(struct buf *bp);
void	uninitbufbio(struct buf *bp);
struct bio *push_bio(struct bio *bio);
struct bio *pop_bio(struct bio *bio);
void	clearbiocache(struct bio *bio);

/* ---- Accounting and throttles ------------------------------------------ */

void	waitrunningbufspace(void);
int	buf_dirty_count_severe(void);
int	buf_runningbufspace_severe(void);
long	bd_heatup(void);
void	bd_speedup(void);
void	bd_wait(long totalspace);

/* ---- vnode association (the kernel's vfs_subr.c) ----------------------- */

int	bgetvp(struct vnode *vp, struct buf *bp, int testsize);
void	brelvp(struct buf *bp);
void	reassignbuf(struct buf *bp);

/* ---- Helpers for vfs_cluster ------------------------------------------- */

/*
 * Physical-I/O buffer headers: not cached, no memory, no vnode.  Returned
 * locked with b_flags == 0.  PFREECNT, if not NULL, is a caller pool limit
 * (sleeps on "pbufwt" while it is zero); trypbuf returns NULL instead.
 */
struct buf *getpbuf(int *pfreecnt);
struct buf *trypbuf(int *pfreecnt);
void	relpbuf(struct buf *bp, int *pfreecnt);

/*
 * Write BP (locked, B_DELWRI), clustering it with contiguous dirty
 * neighbours when B_CLUSTEROK.  Returns the bytes queued.  Defined in
 * vfs_cluster.c; the daemons flush through it.
 */
int	cluster_awrite(struct buf *bp);

/* Debug: print a buffer's state to stderr. */
void	buf_print(const struct buf *bp, const char *why);

#endif /* FLYFS_CACHE_BUF_H */
