/*
 * vfs_subr.c - vnodes as the buffer cache sees them: initialisation, the
 * v_token, entering and leaving a vnode's buffer index (bgetvp, brelvp,
 * reassignbuf -- DragonFly's kern/vfs_subr.c), and the per-vnode flush
 * and invalidation the filesystem needs (vfsync, vinvalbuf).
 *
 * The three trees of a vnode and the B_HASHED / B_VNCLEAN / B_VNDIRTY
 * flags and b_vp of its buffers change only under its v_token, and the
 * buffer is locked when they do.
 */
#include <errno.h>

#include "cache/vfs_bio_int.h"

void
lwkt_token_init(struct lwkt_token *tok)
{
	pthread_mutex_init(&tok->t_mtx, NULL);
}

void
lwkt_token_uninit(struct lwkt_token *tok)
{
	pthread_mutex_destroy(&tok->t_mtx);
}

void
lwkt_gettoken(struct lwkt_token *tok)
{
	pthread_mutex_lock(&tok->t_mtx);
}

void
lwkt_gettoken_shared(struct lwkt_token *tok)
{
	pthread_mutex_lock(&tok->t_mtx);
}

void
lwkt_reltoken(struct lwkt_token *tok)
{
	pthread_mutex_unlock(&tok->t_mtx);
}

void
vn_init(struct vnode *vp, const struct vop_ops *ops, void *data)
{
	lwkt_token_init(&vp->v_token);
	buf_rb_init(&vp->v_rbclean_tree);
	buf_rb_init(&vp->v_rbdirty_tree);
	buf_rb_init(&vp->v_rbhash_tree);
	vp->v_track_read.bk_active = 0;
	vp->v_track_write.bk_active = 0;
	vp->v_ops = ops;
	vp->v_data = data;
	vp->v_bdev = NULL;
	vp->v_flag = 0;
	vp->v_lastw = vp->v_cstart = vp->v_lasta = 0;
	vp->v_clen = 0;
}

void
vn_uninit(struct vnode *vp)
{
	KKASSERT(vp->v_rbhash_tree.rbt_count == 0);
	KKASSERT(bio_track_active(&vp->v_track_read) == 0);
	KKASSERT(bio_track_active(&vp->v_track_write) == 0);
	lwkt_token_uninit(&vp->v_token);
}

/*
 * bgetvp: enter the locked buffer in VP's index at b_loffset, clean.
 * Returns EEXIST (and leaves the buffer alone) if another buffer already
 * has that offset.
 */
int
bgetvp(struct vnode *vp, struct buf *bp, int testsize)
{
	(void)testsize;
	KASSERT((bp->b_flags & (B_HASHED | B_DELWRI | B_VNCLEAN |
	    B_VNDIRTY)) == 0, ("bgetvp: bp %p flags %08x", (void *)bp,
	    bp->b_flags));
	lwkt_gettoken(&vp->v_token);
	if (buf_rb_insert(&vp->v_rbhash_tree, &bp->b_rbhash,
	    bp->b_loffset) != NULL) {
		lwkt_reltoken(&vp->v_token);
		return EEXIST;
	}
	bp->b_vp = vp;
	bp->b_flags |= B_HASHED | B_VNCLEAN;
	if (buf_rb_insert(&vp->v_rbclean_tree, &bp->b_rbnode,
	    bp->b_loffset) != NULL)
		panic("bgetvp: clean tree collision");
	lwkt_reltoken(&vp->v_token);
	return 0;
}

/* brelvp: take the locked buffer out of its vnode's index. */
void
brelvp(struct buf *bp)
{
	struct vnode *vp = bp->b_vp;

	KASSERT(vp != NULL, ("brelvp: NULL vp"));
	lwkt_gettoken(&vp->v_token);
	if (bp->b_flags & B_VNDIRTY)
		buf_rb_remove(&vp->v_rbdirty_tree, &bp->b_rbnode);
	if (bp->b_flags & B_VNCLEAN)
		buf_rb_remove(&vp->v_rbclean_tree, &bp->b_rbnode);
	if (bp->b_flags & B_HASHED)
		buf_rb_remove(&vp->v_rbhash_tree, &bp->b_rbhash);
	bp->b_flags &= ~(B_HASHED | B_VNCLEAN | B_VNDIRTY);
	bp->b_vp = NULL;
	lwkt_reltoken(&vp->v_token);
}

/*
 * reassignbuf: move the buffer between its vnode's clean and dirty trees
 * to match B_DELWRI.  Caller holds the buffer lock and the v_token.
 */
void
reassignbuf(struct buf *bp)
{
	struct vnode *vp = bp->b_vp;

	if (bp->b_flags & B_DELWRI) {
		if (bp->b_flags & B_VNCLEAN) {
			buf_rb_remove(&vp->v_rbclean_tree, &bp->b_rbnode);
			bp->b_flags &= ~B_VNCLEAN;
		}
		if ((bp->b_flags & B_VNDIRTY) == 0) {
			if (buf_rb_insert(&vp->v_rbdirty_tree, &bp->b_rbnode,
			    bp->b_loffset) != NULL)
				panic("reassignbuf: dirty tree collision");
			bp->b_flags |= B_VNDIRTY;
		}
	} else {
		if (bp->b_flags & B_VNDIRTY) {
			buf_rb_remove(&vp->v_rbdirty_tree, &bp->b_rbnode);
			bp->b_flags &= ~B_VNDIRTY;
		}
		if ((bp->b_flags & B_VNCLEAN) == 0) {
			if (buf_rb_insert(&vp->v_rbclean_tree, &bp->b_rbnode,
			    bp->b_loffset) != NULL)
				panic("reassignbuf: clean tree collision");
			bp->b_flags |= B_VNCLEAN;
		}
	}
}

/*
 * Offset of the first buffer of TREE at or after *OFFP; false if none.
 */
static bool
next_offset(struct vnode *vp, struct buf_rb_tree *tree, off_t *offp)
{
	struct buf_rb_node *n;

	lwkt_gettoken(&vp->v_token);
	n = buf_rb_nfind(tree, *offp);
	if (n)
		*offp = n->rbn_key;
	lwkt_reltoken(&vp->v_token);
	return n != NULL;
}

/*
 * vn_next_dirty: the offset of VP's first dirty buffer at or after *OFFP,
 * in *OFFP; false if there is none.  A hint: the buffer may be written
 * or dirtied once v_token is dropped, so the caller locks and checks it.
 */
bool
vn_next_dirty(struct vnode *vp, off_t *offp)
{
	return next_offset(vp, &vp->v_rbdirty_tree, offp);
}

/*
 * vfsync: start a write of every dirty, non-LOCKED buffer of VP; with
 * MNT_WAIT wait ("trwait") for all of VP's writes, then report the
 * errno of a buffer whose write failed (it is dirty again), if any.
 */
int
vfsync(struct vnode *vp, int waitfor)
{
	struct buf *bp;
	off_t off = 0;
	int error = 0;

	while (next_offset(vp, &vp->v_rbdirty_tree, &off)) {
		bp = findblk(vp, off, 0);
		off++;
		if (bp == NULL)
			continue;
		if ((bp->b_flags & (B_DELWRI | B_LOCKED)) != B_DELWRI) {
			BUF_UNLOCK(bp);
			continue;
		}
		bremfree(bp);
		cluster_awrite(bp);
	}
	if (waitfor != MNT_WAIT)
		return 0;
	bio_track_wait(&vp->v_track_write, 0, 0);

	off = 0;
	while (error == 0 && next_offset(vp, &vp->v_rbdirty_tree, &off)) {
		bp = findblk(vp, off, 0);
		off++;
		if (bp == NULL)
			continue;
		if ((bp->b_flags & (B_DELWRI | B_ERROR)) ==
		    (B_DELWRI | B_ERROR))
			error = bp->b_error ? bp->b_error : EIO;
		BUF_UNLOCK(bp);
	}
	return error;
}

/*
 * vinvalbuf: destroy every buffer of VP.  With V_SAVE, dirty buffers are
 * written first; a write error is returned and nothing is destroyed, and
 * LOCKED dirty buffers give EBUSY.  Waits for reads in flight.
 */
int
vinvalbuf(struct vnode *vp, int flags)
{
	struct buf *bp;
	off_t off;
	int error;

	if (flags & V_SAVE) {
		error = vfsync(vp, MNT_WAIT);
		if (error)
			return error;
		off = 0;
		if (next_offset(vp, &vp->v_rbdirty_tree, &off))
			return EBUSY;
	}
	bio_track_wait(&vp->v_track_read, 0, 0);
	off = 0;
	while (next_offset(vp, &vp->v_rbhash_tree, &off)) {
		bp = findblk(vp, off, 0);
		if (bp == NULL)
			continue;
		bremfree(bp);
		bp->b_flags &= ~B_LOCKED;
		bp->b_flags |= B_INVAL | B_NOCACHE;
		brelse(bp);
	}
	bio_track_wait(&vp->v_track_write, 0, 0);
	return 0;
}
