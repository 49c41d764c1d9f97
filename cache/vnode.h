/*
 * vnode.h - the in-memory object whose blocks the buffer cache holds.
 *
 * This module owns struct vnode as the cache sees it: the buffer index of
 * one file (or of the device itself), the I/O tracking counts used to
 * drain it, and the operations vector through which the cache calls the
 * filesystem -- the only way cache/ reaches fs/, as the kernel's buffer
 * cache reaches a filesystem through VOP_STRATEGY and VOP_BMAP and softdep
 * through the b_dep hooks.
 *
 * The filesystem embeds a struct vnode in its inode, calls vn_init() with
 * its vop_ops, and must vinvalbuf() it (no buffers left) before freeing it.
 *
 * A "device vnode" (vn_devvp_init) is a vnode whose logical offsets are
 * device offsets: metadata at fixed homes is cached on it and its strategy
 * hands the bio straight to the blockdev.  A filesystem strategy translates
 * b_bio1 into b_bio2 and calls dev_strategy() itself.
 */
#ifndef FLYFS_CACHE_VNODE_H
#define FLYFS_CACHE_VNODE_H

#include <pthread.h>

#include "cache/buf.h"

/*
 * The kernel's per-vnode LWKT token, as a mutex: protects the vnode's
 * three trees and the B_HASHED/B_VNCLEAN/B_VNDIRTY flags and b_vp of its
 * buffers.  Never held across a sleep other than acquiring it, nor across
 * I/O.  Lock order: buffer lock -> v_token -> shard spinlock.
 */
struct lwkt_token {
	pthread_mutex_t	t_mtx;
};

void	lwkt_token_init(struct lwkt_token *tok);
void	lwkt_token_uninit(struct lwkt_token *tok);
void	lwkt_gettoken(struct lwkt_token *tok);
void	lwkt_gettoken_shared(struct lwkt_token *tok);	/* = exclusive */
void	lwkt_reltoken(struct lwkt_token *tok);

struct vop_ops {
	/*
	 * Start the I/O described by BIO (bio->bio_buf->b_cmd, b_bcount,
	 * b_data).  Must eventually call biodone() on BIO exactly once --
	 * directly on error (set B_ERROR and b_error first), or by passing a
	 * pushed layer to dev_strategy().  Called with the buffer locked (or
	 * owned by the kernel after BUF_KERNPROC).  May sleep.
	 */
	int	(*vop_strategy)(struct vnode *vp, struct bio *bio);
	/*
	 * Translate logical offset LOFFSET to a device offset (*DOFFSETP, or
	 * NOOFFSET if unallocated).  *RUNP / *RUNB (if not NULL): contiguous
	 * bytes after / before.  May be NULL: the cache then leaves
	 * b_bio2.bio_offset at NOOFFSET (delayed allocation).
	 */
	int	(*vop_bmap)(struct vnode *vp, off_t loffset, off_t *doffsetp,
		    int *runp, int *runb, buf_cmd_t cmd);
	/*
	 * Dependency hooks (the kernel's bioops / b_ops), called only when
	 * bp->b_dep != NULL; each may be NULL.
	 *   checkwrite: non-zero to refuse a daemon flush now (buffer released
	 *               and retried later);
	 *   countdeps:  non-zero if the buffer has dependencies that make it a
	 *               poor candidate to flush first (deferred once);
	 *   start:      a write is being issued;
	 *   complete:   the I/O finished (may re-dirty the buffer);
	 *   deallocate: the buffer is being destroyed or recycled; may set
	 *               B_LOCKED to keep it (the fs then owns its release).
	 */
	int	(*vop_checkwrite)(struct buf *bp);
	int	(*vop_countdeps)(struct buf *bp, int n);
	void	(*vop_start)(struct buf *bp);
	void	(*vop_complete)(struct buf *bp);
	void	(*vop_deallocate)(struct buf *bp);
};

#define VCLUSTEROK	0x0001		/* cluster_awrite may merge writes */
#define VDEVVP		0x0002		/* a device vnode */

struct vnode {
	struct lwkt_token v_token;
	struct buf_rb_tree v_rbclean_tree;	/* (v) clean buffers */
	struct buf_rb_tree v_rbdirty_tree;	/* (v) B_DELWRI buffers */
	struct buf_rb_tree v_rbhash_tree;	/* (v) every buffer, by loffset */
	struct bio_track v_track_read;		/* (a) reads in progress */
	struct bio_track v_track_write;		/* (a) writes in progress */
	const struct vop_ops *v_ops;		/* (c) */
	void		*v_data;		/* (c) the filesystem's inode */
	struct blockdev	*v_bdev;		/* (c) device vnodes only */
	int		v_flag;			/* (c) V* */
	/* write-clustering state of vfs_cluster (fs vnode lock) */
	off_t		v_lastw;		/* last write offset */
	off_t		v_cstart;		/* start of the pending cluster */
	off_t		v_lasta;		/* last allocation (device offset) */
	int		v_clen;			/* length of the pending cluster */
};

void	vn_init(struct vnode *vp, const struct vop_ops *ops, void *data);
/* The vnode must have no buffers left (vinvalbuf). */
void	vn_uninit(struct vnode *vp);

/* Offset of VP's first dirty buffer at or after *OFFP (a hint). */
bool	vn_next_dirty(struct vnode *vp, off_t *offp);

/* Device vnode over BD: logical offset == device offset. */
void	vn_devvp_init(struct vnode *vp, struct blockdev *bd);

/*
 * Submit BIO (usually b_bio2, offset = device offset) to BD: reads and
 * writes move b_bcount bytes at b_data, or b_xiov when set; BUF_CMD_FLUSH
 * is a barrier.  A B_ORDERED write first waits for a barrier.  On
 * completion, on the device's completion thread: b_resid, b_error and
 * B_ERROR are set and biodone(bio) is called.  Refused requests complete
 * at once with the errno.
 */
void	dev_strategy(struct blockdev *bd, struct bio *bio);

/*
 * Write every dirty buffer of VP (asynchronously), and with WAITFOR wait
 * for all writes of VP to finish.  Returns the first write error seen.
 * LOCKED buffers are skipped.
 */
#define MNT_WAIT	1
#define MNT_NOWAIT	2
int	vfsync(struct vnode *vp, int waitfor);

/*
 * Destroy every buffer of VP.  With V_SAVE dirty buffers are written
 * first (an error is returned and the buffer kept if a write fails).
 * Without it dirty data is discarded.
 */
#define V_SAVE		0x0001
int	vinvalbuf(struct vnode *vp, int flags);

#endif /* FLYFS_CACHE_VNODE_H */
