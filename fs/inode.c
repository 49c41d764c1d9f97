/*
 * inode.c - the in-memory inode cache, inode I/O, link counts, orphans.
 *
 * This module owns struct fs_inode's life: lookup in the hash, reading
 * and checking an inode from the inode file, writing it back
 * (fs_inode_dirty, per-inode crc sealed at once), the three reference
 * counts that follow FUSE (internal refs, lookups, opens), the LRU of
 * unreferenced inodes and their eviction, and the deletion of unlinked
 * inodes when their last count goes.  An inode whose last link goes is
 * listed in the orphan file in the same transaction, so a crash before
 * its reclaim leaves it for the next mount (fs_orphan_reclaim_all).
 *
 * It also owns the system files' block maps (inode file, inode bitmap,
 * orphan file): extent trees like any file's (extent.c), mirrored in
 * memory for lookups that must not take buffer locks; they only grow.
 *
 * And flyfs_getattr / setattr / open / release / forget.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <dirent.h>

#include "fs/extent.h"
#include "fs/fs_int.h"

#define ILRU_MAX_DEFAULT	65536

/* ---- Vnode operations for inodes without data buffers ------------------ */

static int
nodata_strategy(struct vnode *vp, struct bio *bio)
{
	struct buf *bp = bio->bio_buf;

	(void)vp;
	bp->b_flags |= B_ERROR;
	bp->b_error = EIO;
	biodone(bio);
	return 0;
}

const struct vop_ops fs_nodata_vops = {
	.vop_strategy = nodata_strategy,
};

static bool
has_data_vnode(mode_t mode, uint32_t flags)
{
	return S_ISREG(mode) || (S_ISLNK(mode) && !(flags & FLYFS_IFL_INLINE));
}

/* ---- Hash ---------------------------------------------------------------- */

int
fs_icache_init(struct flyfs *fs)
{
	uint64_t n = 1u << 14;

	fs->s_ihash = calloc(n, sizeof(*fs->s_ihash));
	if (fs->s_ihash == NULL)
		return ENOMEM;
	fs->s_ihash_mask = n - 1;
	TAILQ_INIT(&fs->s_ilru);
	fs->s_ilru_max = ILRU_MAX_DEFAULT;
	return 0;
}

void
fs_icache_fini(struct flyfs *fs)
{
	free(fs->s_ihash);
	fs->s_ihash = NULL;
}

static struct fs_inode *
ihash_find(struct flyfs *fs, uint64_t ino)
{
	struct fs_inode *ip;

	LIST_FOREACH(ip, &fs->s_ihash[ino & fs->s_ihash_mask], i_hash)
		if (ip->i_ino == ino)
			return ip;
	return NULL;
}

struct fs_sysmap;
static void sysmap_free(struct fs_sysmap *m);

static struct fs_inode *
inode_new(struct flyfs *fs, uint64_t ino)
{
	struct fs_inode *ip = calloc(1, sizeof(*ip));

	if (ip == NULL)
		return NULL;
	ip->i_fs = fs;
	ip->i_ino = ino;
	ip->i_orphan_slot = -1;
	pthread_rwlock_init(&ip->i_lock, NULL);
	pthread_mutex_init(&ip->i_extlock, NULL);
	pthread_mutex_init(&ip->i_mtx, NULL);
	cluster_seq_init(&ip->i_seq);
	return ip;
}

static void
inode_destroy(struct fs_inode *ip)
{
	vinvalbuf(ITOV(ip), 0);
	vn_uninit(ITOV(ip));
	pthread_rwlock_destroy(&ip->i_lock);
	pthread_mutex_destroy(&ip->i_extlock);
	pthread_mutex_destroy(&ip->i_mtx);
	free(ip->i_filepriv);
	free(ip->i_dirpriv);
	sysmap_free(ip->i_sysmap);
	free(ip);
}

/* Give IP its vnode, from the type in i_din. */
static void
inode_vnode_init(struct fs_inode *ip)
{
	const struct vop_ops *ops = &fs_nodata_vops;

	if (has_data_vnode(fs_i_mode(ip), fs_i_flags(ip)) &&
	    !(fs_i_flags(ip) & FLYFS_IFL_SYSTEM))
		ops = &fs_file_vops;
	vn_init(ITOV(ip), ops, ip);
	/*
	 * Regular files' data buffers may be merged into clustered writes
	 * (cluster_awrite); set once here, before the vnode is visible, so
	 * no writer has to set it racily on each call.
	 */
	if (ops == &fs_file_vops && S_ISREG(fs_i_mode(ip)))
		ITOV(ip)->v_flag |= VCLUSTEROK;
	ip->i_comp = ip->i_din.i_comp;
	ip->i_comp_level = ip->i_din.i_comp_level;
	if (fs_i_flags(ip) & FLYFS_IFL_NOCOMP)
		ip->i_comp = FLYFS_COMP_NONE;
}

/* ---- System file maps ----------------------------------------------------- */

/*
 * The inode file, the inode bitmap file and the orphan file are mapped by
 * an ordinary extent tree (extent.c), so they grow without limit.  They
 * only ever grow, one append at a time, and their blocks are looked up
 * from everywhere (fs_inode_dirty of any inode, under any lock of the
 * order), so the lookup cannot walk the tree: that would take buffer
 * locks under the caller's.  Instead each system inode keeps an in-memory
 * copy of its records (struct fs_sysmap), loaded from the tree at mount
 * and appended to by fs_sysfile_extend after the tree changed.  The copy
 * is guarded by the system inode's i_mtx, a leaf lock, so
 * fs_sysfile_bmap takes nothing else and may be called under any lock
 * of levels 1-7.
 */
struct fs_sysmap {
	struct fs_extent *m_ext;	/* (i_mtx) sorted, contiguous from 0 */
	size_t		m_n;		/* (i_mtx) records in use */
	size_t		m_cap;		/* (i_mtx) records allocated */
};

static int
sysmap_append(struct fs_sysmap *m, const struct fs_extent *e)
{
	if (m->m_n == m->m_cap) {
		size_t cap = m->m_cap ? m->m_cap * 2 : 8;
		struct fs_extent *x = realloc(m->m_ext, cap * sizeof(*x));

		if (x == NULL)
			return ENOMEM;
		m->m_ext = x;
		m->m_cap = cap;
	}
	m->m_ext[m->m_n++] = *e;
	return 0;
}

static void
sysmap_free(struct fs_sysmap *m)
{
	if (m == NULL)
		return;
	free(m->m_ext);
	free(m);
}

struct sysmap_load {
	struct fs_inode	*ip;
	struct fs_sysmap *m;
	uint64_t	next;		/* next logical block expected */
};

static int
sysmap_load_cb(void *arg, const struct fs_extent *e)
{
	struct sysmap_load *l = arg;
	struct flyfs *fs = l->ip->i_fs;

	if (!fs_ext_is_raw_data(e) || e->plen != e->llen)
		return fs_corrupt(fs, 0, l->ip->i_ino, "system file has a "
		    "compressed or unwritten extent at %" PRIu64, e->lblk);
	if (e->lblk != l->next)
		return fs_corrupt(fs, 0, l->ip->i_ino, "system file has a "
		    "hole at block %" PRIu64, l->next);
	if (e->pblk == 0 || e->pblk >= fs->s_sb.block_count ||
	    e->plen > fs->s_sb.block_count - e->pblk)
		return fs_corrupt(fs, 0, l->ip->i_ino, "system file extent "
		    "points outside the image");
	l->next = fs_ext_end(e);
	return sysmap_append(l->m, e);
}

/*
 * Build IP's in-memory map from its extent tree (mount, system inode just
 * read).  Every block below i_size must be mapped.  Takes i_extlock and
 * the tree's buffers; called with no lock held.
 */
static int
sysmap_load(struct fs_inode *ip)
{
	struct sysmap_load l = { .ip = ip };
	int error;

	if ((l.m = calloc(1, sizeof(*l.m))) == NULL)
		return ENOMEM;
	pthread_mutex_lock(&ip->i_extlock);
	error = fs_extent_iter(ip, 0, sysmap_load_cb, &l);
	pthread_mutex_unlock(&ip->i_extlock);
	if (error == 0 && l.next * FLYFS_BLOCK_SIZE < fs_i_size(ip))
		error = fs_corrupt(ip->i_fs, 0, ip->i_ino, "system file is "
		    "shorter than its size");
	if (error) {
		sysmap_free(l.m);
		return error;
	}
	ip->i_sysmap = l.m;
	return 0;
}

int
fs_sysfile_bmap(struct fs_inode *ip, uint64_t lblk, uint64_t *pblk)
{
	struct fs_sysmap *m = ip->i_sysmap;
	size_t lo = 0, hi;

	*pblk = 0;
	KKASSERT(m != NULL);
	pthread_mutex_lock(&ip->i_mtx);
	hi = m->m_n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct fs_extent *e = &m->m_ext[mid];

		if (lblk < e->lblk) {
			hi = mid;
		} else if (lblk >= fs_ext_end(e)) {
			lo = mid + 1;
		} else {
			*pblk = e->pblk + (lblk - e->lblk);
			break;
		}
	}
	pthread_mutex_unlock(&ip->i_mtx);
	return 0;
}

/*
 * Append N blocks to system file IP in TX.  The allocation aims right
 * after the file's last block, so a file that grows while nothing else
 * allocates stays one extent (the tree merges the new record into the
 * last one).  Called under s_ialloc_lock or s_orphan_lock with TX held;
 * takes IP's i_extlock (level 5a), the allocator and the tree's buffers.
 * Grows TX's reservation (a nested begin, which never waits) by what the
 * tree insert may cost, so callers count only their own blocks.
 */
int
fs_sysfile_extend(struct fs_trans *tx, struct fs_inode *ip, uint32_t n,
    uint64_t *first_pblk)
{
	struct fs_sysmap *m = ip->i_sysmap;
	struct fs_trans *ntx;
	struct fs_extent e, got_ext;
	uint64_t goal, pblk, nblocks;
	uint32_t got;
	int error, error2;

	KKASSERT(m != NULL);
	/*
	 * The tree only changes here, under the caller's ialloc or orphan
	 * lock, so its depth (the cost) is stable before i_extlock.
	 */
	error = fs_trans_begin(tx->t_fs, fs_extent_op_cost(ip) + 3, &ntx);
	if (error)
		return error;
	KKASSERT(ntx == tx);
	pthread_mutex_lock(&ip->i_extlock);
	nblocks = fs_i_size(ip) / FLYFS_BLOCK_SIZE;
	pthread_mutex_lock(&ip->i_mtx);
	goal = m->m_n ? m->m_ext[m->m_n - 1].pblk +
	    m->m_ext[m->m_n - 1].plen : 0;
	pthread_mutex_unlock(&ip->i_mtx);

	error = fs_alloc_blocks(tx, goal, n, FS_ALLOC_META, &pblk, &got);
	if (error)
		goto out;
	memset(&e, 0, sizeof(e));
	e.lblk = nblocks;
	e.pblk = pblk;
	e.llen = e.plen = got;
	/* i_size first: an inode written by the insert carries both. */
	pthread_mutex_lock(&ip->i_mtx);
	le64_set(&ip->i_din.i_size, (nblocks + got) * FLYFS_BLOCK_SIZE);
	pthread_mutex_unlock(&ip->i_mtx);
	error = fs_extent_insert(tx, ip, &e);
	if (error == 0)
		error = fs_extent_find(ip, nblocks, &got_ext);
	if (error) {
		pthread_mutex_lock(&ip->i_mtx);
		le64_set(&ip->i_din.i_size, nblocks * FLYFS_BLOCK_SIZE);
		pthread_mutex_unlock(&ip->i_mtx);
		fs_trans_free_blocks(tx, pblk, got, 0);
		goto out;
	}
	/* The new record, or the last one grown by the insert's merge. */
	pthread_mutex_lock(&ip->i_mtx);
	if (m->m_n > 0 && m->m_ext[m->m_n - 1].lblk == got_ext.lblk)
		m->m_ext[m->m_n - 1] = got_ext;
	else
		error = sysmap_append(m, &got_ext);
	pthread_mutex_unlock(&ip->i_mtx);
	if (error == 0)
		error = fs_inode_dirty(tx, ip);
	*first_pblk = pblk;
out:
	error2 = fs_trans_end(ntx);
	pthread_mutex_unlock(&ip->i_extlock);
	return error ? error : error2;
}

/* ---- Inode I/O ----------------------------------------------------------- */

/* The inode file block holding INO, locked (no header check: raw). */
static int
ifile_block(struct flyfs *fs, uint64_t ino, struct buf **bpp)
{
	uint64_t pblk;
	int error;

	*bpp = NULL;
	if (ino < FLYFS_INODES_PER_BLOCK) {
		pblk = fs->s_sb.ifile_start;	/* bootstrap: inode 0 */
	} else {
		error = fs_sysfile_bmap(fs->s_ifile,
		    ino / FLYFS_INODES_PER_BLOCK, &pblk);
		if (error)
			return error;
		if (pblk == 0)
			return ENOENT;
	}
	error = bread(&fs->devvp, fs_blk_off(pblk), FLYFS_BLOCK_SIZE, bpp);
	if (error) {
		(*bpp)->b_flags |= B_INVAL;
		brelse(*bpp);
		*bpp = NULL;
		return error;
	}
	return 0;
}

static struct flyfs_inode *
slot_of(struct buf *bp, uint64_t ino)
{
	return (struct flyfs_inode *)(void *)bp->b_data +
	    ino % FLYFS_INODES_PER_BLOCK;
}

/* Read INO's slot into IP->i_din, checking it.  ENOENT if free. */
static int
inode_read(struct fs_inode *ip)
{
	struct flyfs *fs = ip->i_fs;
	char err[200];
	struct buf *bp;
	const struct flyfs_inode *d;
	mode_t mode;
	int error;

	if ((error = ifile_block(fs, ip->i_ino, &bp)) != 0)
		return error;
	d = slot_of(bp, ip->i_ino);
	if (flyfs_inode_is_free(d)) {
		bqrelse(bp);
		return ENOENT;
	}
	error = flyfs_inode_check(d, ip->i_ino, fs->s_seed, err, sizeof(err));
	if (error == 0)
		memcpy(&ip->i_din, d, sizeof(*d));
	bqrelse(bp);
	if (error)
		return fs_corrupt(fs, 0, ip->i_ino, "%s", err);
	mode = fs_i_mode(ip);
	switch (mode & S_IFMT) {
	case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFCHR: case S_IFBLK:
	case S_IFIFO: case S_IFSOCK:
		break;
	default:
		return fs_corrupt(fs, 0, ip->i_ino, "impossible file type 0%o",
		    (unsigned)(mode & S_IFMT));
	}
	if (has_data_vnode(mode, fs_i_flags(ip)) &&
	    le16_get(ip->i_din.i_ext_hdr.en_magic) != FLYFS_EXTENT_NODE_MAGIC)
		return fs_corrupt(fs, 0, ip->i_ino, "bad extent root magic");
	if (fs_i_size(ip) > FLYFS_MAX_FILE_SIZE)
		return fs_corrupt(fs, 0, ip->i_ino, "size %" PRIu64 " too big",
		    fs_i_size(ip));
	return 0;
}

int
fs_inode_dirty(struct fs_trans *tx, struct fs_inode *ip)
{
	struct flyfs *fs = ip->i_fs;
	struct flyfs_inode *d;
	struct buf *bp;
	int error;

	if ((error = ifile_block(fs, ip->i_ino, &bp)) != 0)
		return error;
	d = slot_of(bp, ip->i_ino);
	pthread_mutex_lock(&ip->i_mtx);
	le64_set(&ip->i_din.i_ino, ip->i_ino);
	le64_set(&ip->i_din.i_txid, fs_trans_tid(tx));
	memcpy(d, &ip->i_din, sizeof(*d));
	ip->i_dirty = false;
	pthread_mutex_unlock(&ip->i_mtx);
	flyfs_inode_seal(d, fs->s_seed);
	fs_trans_dirty_raw(tx, bp);
	fs_meta_release(bp);
	return 0;
}

/* Zero INO's slot in TX (the inode is being freed). */
static int
inode_clear_slot(struct fs_trans *tx, uint64_t ino)
{
	struct buf *bp;
	int error;

	if ((error = ifile_block(tx->t_fs, ino, &bp)) != 0)
		return error;
	memset(slot_of(bp, ino), 0, FLYFS_INODE_SIZE);
	fs_trans_dirty_raw(tx, bp);
	fs_meta_release(bp);
	return 0;
}

void
fs_inode_touch(struct fs_inode *ip, unsigned which)
{
	struct timespec now;

	fs_now(&now);
	pthread_mutex_lock(&ip->i_mtx);
	if (which & FS_T_ATIME) {
		le64_set(&ip->i_din.i_atime, (uint64_t)now.tv_sec);
		le32_set(&ip->i_din.i_atime_ns, (uint32_t)now.tv_nsec);
	}
	if (which & FS_T_MTIME) {
		le64_set(&ip->i_din.i_mtime, (uint64_t)now.tv_sec);
		le32_set(&ip->i_din.i_mtime_ns, (uint32_t)now.tv_nsec);
	}
	if (which & FS_T_CTIME) {
		le64_set(&ip->i_din.i_ctime, (uint64_t)now.tv_sec);
		le32_set(&ip->i_din.i_ctime_ns, (uint32_t)now.tv_nsec);
	}
	pthread_mutex_unlock(&ip->i_mtx);
}

/*
 * relatime, ext4's default: an access (a read, a readdir) updates atime
 * when it is not newer than mtime or ctime (so "read since the last
 * change?" has an answer), or is a day old.  The kernel never stamps
 * atime on a FUSE inode itself, so this is the only place it happens;
 * reads the page cache serves do not reach us, as with any FUSE
 * filesystem.
 */
static bool
relatime_due(struct fs_inode *ip)
{
	const struct flyfs_inode *d = &ip->i_din;
	struct timespec now;
	int64_t a, an;
	bool due;

	fs_now(&now);
	pthread_mutex_lock(&ip->i_mtx);
	a = (int64_t)le64_get(d->i_atime);
	an = le32_get(d->i_atime_ns);
#define NOT_AFTER(s, ns) (a < (int64_t)le64_get(s) || \
	(a == (int64_t)le64_get(s) && an <= (int64_t)le32_get(ns)))
	due = NOT_AFTER(d->i_mtime, d->i_mtime_ns) ||
	    NOT_AFTER(d->i_ctime, d->i_ctime_ns) ||
	    now.tv_sec - a >= 24 * 3600;
#undef NOT_AFTER
	pthread_mutex_unlock(&ip->i_mtx);
	return due;
}

int
fs_inode_write(struct fs_inode *ip)
{
	struct fs_trans *tx;
	int error;

	if ((error = fs_trans_begin(ip->i_fs, 1, &tx)) != 0)
		return error;
	error = fs_inode_dirty(tx, ip);
	return fs_trans_end(tx) ? : error;
}

void
fs_inode_accessed(struct fs_inode *ip)
{
	struct flyfs *fs = ip->i_fs;

	if (fs->s_readonly || fs->s_noatime || !relatime_due(ip))
		return;
	fs_inode_touch(ip, FS_T_ATIME);
	/* atime is best effort, as in ext4: a failed write is not reported */
	(void)fs_inode_write(ip);
}

int
fs_inode_changed(struct fs_trans *tx, struct fs_inode *ip)
{
	fs_inode_touch(ip, FS_T_CTIME);
	return fs_inode_dirty(tx, ip);
}

unsigned
fs_mode_to_dtype(mode_t mode)
{
	return IFTODT(mode);
}

void
fs_inode_getattr(struct fs_inode *ip, struct flyfs_attr *out)
{
	const struct flyfs_inode *d = &ip->i_din;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&ip->i_mtx);
	out->ino = ip->i_ino;
	out->generation = le32_get(d->i_generation);
	out->mode = (mode_t)le32_get(d->i_mode);
	out->nlink = le32_get(d->i_nlink);
	out->uid = le32_get(d->i_uid);
	out->gid = le32_get(d->i_gid);
	out->rdev = makedev(le32_get(d->i_rdev_major), le32_get(d->i_rdev_minor));
	out->size = le64_get(d->i_size);
	out->blocks = le64_get(d->i_blocks) * (FLYFS_BLOCK_SIZE / 512);
	out->blksize = ip->i_fs->s_dbsize;
	out->atime.tv_sec = (time_t)le64_get(d->i_atime);
	out->atime.tv_nsec = le32_get(d->i_atime_ns);
	out->mtime.tv_sec = (time_t)le64_get(d->i_mtime);
	out->mtime.tv_nsec = le32_get(d->i_mtime_ns);
	out->ctime.tv_sec = (time_t)le64_get(d->i_ctime);
	out->ctime.tv_nsec = le32_get(d->i_ctime_ns);
	out->btime.tv_sec = (time_t)le64_get(d->i_btime);
	out->btime.tv_nsec = le32_get(d->i_btime_ns);
	pthread_mutex_unlock(&ip->i_mtx);
}

/* ---- Lookup --------------------------------------------------------------- */

int
fs_iget(struct flyfs *fs, uint64_t ino, struct fs_inode **ipp)
{
	struct fs_inode *ip, *nip = NULL;
	int error;

	*ipp = NULL;
	if (ino >= __atomic_load_n(&fs->s_inode_count, __ATOMIC_RELAXED) ||
	    ino == FLYFS_INO_IFILE)
		return ENOENT;
	pthread_mutex_lock(&fs->s_icache_lock);
	for (;;) {
		ip = ihash_find(fs, ino);
		if (ip == NULL)
			break;
		if (ip->i_state & (I_NEW | I_FREEING)) {
			pthread_cond_wait(&fs->s_icache_cv, &fs->s_icache_lock);
			continue;
		}
		ip->i_ref++;
		if (ip->i_state & I_ONLRU) {
			TAILQ_REMOVE(&fs->s_ilru, ip, i_lru);
			ip->i_state &= ~I_ONLRU;
			fs->s_ilru_count--;
		}
		pthread_mutex_unlock(&fs->s_icache_lock);
		*ipp = ip;
		return 0;
	}
	pthread_mutex_unlock(&fs->s_icache_lock);

	if ((nip = inode_new(fs, ino)) == NULL)
		return ENOMEM;
	pthread_mutex_lock(&fs->s_icache_lock);
	if (ihash_find(fs, ino) != NULL) {
		/* Lost a race: start over with the winner. */
		pthread_mutex_unlock(&fs->s_icache_lock);
		free(nip);
		return fs_iget(fs, ino, ipp);
	}
	nip->i_state = I_NEW;
	nip->i_ref = 1;
	LIST_INSERT_HEAD(&fs->s_ihash[ino & fs->s_ihash_mask], nip, i_hash);
	fs->s_icount++;
	pthread_mutex_unlock(&fs->s_icache_lock);

	error = inode_read(nip);
	if (error == 0)
		inode_vnode_init(nip);
	pthread_mutex_lock(&fs->s_icache_lock);
	if (error) {
		LIST_REMOVE(nip, i_hash);
		fs->s_icount--;
	} else {
		nip->i_state &= ~I_NEW;
	}
	pthread_cond_broadcast(&fs->s_icache_cv);
	pthread_mutex_unlock(&fs->s_icache_lock);
	if (error) {
		pthread_rwlock_destroy(&nip->i_lock);
		pthread_mutex_destroy(&nip->i_extlock);
		pthread_mutex_destroy(&nip->i_mtx);
		free(nip);
		return error;
	}
	*ipp = nip;
	return 0;
}

void
fs_igrab(struct fs_inode *ip)
{
	pthread_mutex_lock(&ip->i_fs->s_icache_lock);
	ip->i_ref++;
	pthread_mutex_unlock(&ip->i_fs->s_icache_lock);
}

void
fs_inode_lookup_ref(struct fs_inode *ip)
{
	pthread_mutex_lock(&ip->i_fs->s_icache_lock);
	ip->i_nlookup++;
	pthread_mutex_unlock(&ip->i_fs->s_icache_lock);
}

/* ---- Reclaim and eviction ------------------------------------------------ */

/*
 * Delete IP (nlink 0, I_FREEING set, no counts): its data, its xattrs,
 * its orphan slot, its inode slot and number.  On error the inode stays
 * listed as an orphan for the next mount.
 */
static int
inode_reclaim(struct fs_inode *ip)
{
	struct flyfs *fs = ip->i_fs;
	mode_t mode = fs_i_mode(ip);
	struct fs_trans *tx;
	int error = 0, e;

	/*
	 * The xattr block first, in its own transaction: i_blocks counts
	 * it, and the data and directory reclaims leave i_blocks at 0 (and
	 * check that they did).  The inode stays listed as an orphan until
	 * the last step, so a crash in between resumes at the next mount.
	 */
	if (le64_get(ip->i_din.i_xattr_block) != 0) {
		if ((error = fs_trans_begin(fs, 12, &tx)) != 0)
			return error;
		error = fs_xattr_reclaim(tx, ip);
		if (error == 0)
			error = fs_inode_dirty(tx, ip);
		if (error)
			fs_trans_set_error(tx, error);
		e = fs_trans_end(tx);
		if ((error = error ? error : e) != 0)
			return error;
	}
	if (has_data_vnode(mode, fs_i_flags(ip))) {
		error = fs_file_reclaim(ip);
		vinvalbuf(ITOV(ip), 0);
	} else if (S_ISDIR(mode)) {
		error = fs_dir_reclaim(ip);
	}
	if (error)
		return error;
	if ((error = fs_trans_begin(fs, 12, &tx)) != 0)
		return error;
	if (error == 0 && ip->i_orphan_slot >= 0)
		error = fs_orphan_del(tx, ip);
	if (error == 0)
		error = inode_clear_slot(tx, ip->i_ino);
	if (error == 0)
		error = fs_ifree(tx, ip->i_ino);
	if (error)
		fs_trans_set_error(tx, error);
	e = fs_trans_end(tx);
	return error ? error : e;
}

/* Remove IP from the cache and free it (I_FREEING set by the caller). */
static void
inode_forget_mem(struct fs_inode *ip)
{
	struct flyfs *fs = ip->i_fs;

	pthread_mutex_lock(&fs->s_icache_lock);
	LIST_REMOVE(ip, i_hash);
	fs->s_icount--;
	pthread_cond_broadcast(&fs->s_icache_cv);
	pthread_mutex_unlock(&fs->s_icache_lock);
	inode_destroy(ip);
}

/* Write IP's inode if it changed outside a transaction. */
static int
inode_write_if_dirty(struct fs_inode *ip)
{
	bool dirty;

	pthread_mutex_lock(&ip->i_mtx);
	dirty = ip->i_dirty;
	pthread_mutex_unlock(&ip->i_mtx);
	return dirty ? fs_inode_write(ip) : 0;
}

/* Evict IP (I_FREEING, not on the LRU): write back, then free. */
static void
inode_evict(struct fs_inode *ip)
{
	struct flyfs *fs = ip->i_fs;
	int error;

	error = vinvalbuf(ITOV(ip), V_SAVE);
	if (error == 0)
		error = inode_write_if_dirty(ip);
	if (error) {
		/* Keep it: it is still dirty.  Back to the LRU. */
		pthread_mutex_lock(&fs->s_icache_lock);
		ip->i_state &= ~I_FREEING;
		ip->i_state |= I_ONLRU;
		TAILQ_INSERT_TAIL(&fs->s_ilru, ip, i_lru);
		fs->s_ilru_count++;
		pthread_cond_broadcast(&fs->s_icache_cv);
		pthread_mutex_unlock(&fs->s_icache_lock);
		return;
	}
	inode_forget_mem(ip);
}

/*
 * A count of IP dropped; s_icache_lock held on entry, released on return.
 * Reclaims an unlinked inode, or parks a linked one on the LRU and evicts
 * the oldest beyond s_ilru_max.
 */
static void
inode_maybe_release(struct fs_inode *ip)
{
	struct flyfs *fs = ip->i_fs;
	struct fs_inode *victim = NULL;
	uint32_t nlink;

	if (ip->i_ref > 0 || ip->i_nlookup > 0 || ip->i_nopen > 0 ||
	    (ip->i_state & (I_FREEING | I_SYSTEM | I_NEW | I_ONLRU))) {
		pthread_mutex_unlock(&fs->s_icache_lock);
		return;
	}
	pthread_mutex_lock(&ip->i_mtx);
	nlink = fs_i_nlink(ip);
	pthread_mutex_unlock(&ip->i_mtx);
	if (nlink == 0 && !fs->s_readonly) {
		ip->i_state |= I_FREEING;
		pthread_mutex_unlock(&fs->s_icache_lock);
		if (inode_reclaim(ip) != 0)
			fprintf(stderr, "flyfs: inode %" PRIu64 " could not be "
			    "freed; it stays an orphan until the next "
			    "mount\n", ip->i_ino);
		inode_forget_mem(ip);
		return;
	}
	ip->i_state |= I_ONLRU;
	TAILQ_INSERT_TAIL(&fs->s_ilru, ip, i_lru);
	fs->s_ilru_count++;
	if (fs->s_ilru_count > fs->s_ilru_max) {
		victim = TAILQ_FIRST(&fs->s_ilru);
		TAILQ_REMOVE(&fs->s_ilru, victim, i_lru);
		victim->i_state &= ~I_ONLRU;
		victim->i_state |= I_FREEING;
		fs->s_ilru_count--;
	}
	pthread_mutex_unlock(&fs->s_icache_lock);
	if (victim)
		inode_evict(victim);
}

void
fs_iput(struct fs_inode *ip)
{
	struct flyfs *fs = ip->i_fs;

	pthread_mutex_lock(&fs->s_icache_lock);
	KKASSERT(ip->i_ref > 0);
	ip->i_ref--;
	inode_maybe_release(ip);
}

/* ---- Allocation and link counts ------------------------------------------- */

int
fs_inode_alloc(struct fs_trans *tx, struct fs_inode *dir, mode_t mode,
    dev_t rdev, const struct flyfs_cred *cred, struct fs_inode **ipp)
{
	struct flyfs *fs = tx->t_fs;
	struct fs_inode *ip;
	struct flyfs_inode *d;
	struct timespec now;
	uint64_t ino;
	uint32_t gid, flags = 0;
	int error;

	*ipp = NULL;
	if ((mode & S_IFMT) == 0)
		mode |= S_IFREG;
	if ((error = fs_ialloc(tx, &ino)) != 0)
		return error;
	ip = inode_new(fs, ino);
	if (ip == NULL) {
		fs_ifree(tx, ino);
		return ENOMEM;
	}
	gid = cred ? cred->gid : 0;
	if (dir != NULL) {
		pthread_mutex_lock(&dir->i_mtx);
		if (fs_i_mode(dir) & S_ISGID) {
			gid = le32_get(dir->i_din.i_gid);
			if (S_ISDIR(mode))
				mode |= S_ISGID;
		}
		pthread_mutex_unlock(&dir->i_mtx);
	}
	fs_now(&now);
	d = &ip->i_din;
	le32_set(&d->i_mode, (uint32_t)mode);
	le64_set(&d->i_ino, ino);
	le32_set(&d->i_uid, cred ? cred->uid : 0);
	le32_set(&d->i_gid, gid);
	le32_set(&d->i_nlink, S_ISDIR(mode) ? 2 : 1);
	le32_set(&d->i_flags, flags);
	le64_set(&d->i_atime, (uint64_t)now.tv_sec);
	le64_set(&d->i_mtime, (uint64_t)now.tv_sec);
	le64_set(&d->i_ctime, (uint64_t)now.tv_sec);
	le64_set(&d->i_btime, (uint64_t)now.tv_sec);
	le32_set(&d->i_atime_ns, (uint32_t)now.tv_nsec);
	le32_set(&d->i_mtime_ns, (uint32_t)now.tv_nsec);
	le32_set(&d->i_ctime_ns, (uint32_t)now.tv_nsec);
	le32_set(&d->i_btime_ns, (uint32_t)now.tv_nsec);
	le32_set(&d->i_generation,
	    __atomic_add_fetch(&fs->s_next_gen, 1, __ATOMIC_RELAXED));
	if (S_ISCHR(mode) || S_ISBLK(mode)) {
		le32_set(&d->i_rdev_major, major(rdev));
		le32_set(&d->i_rdev_minor, minor(rdev));
	}
	/*
	 * Compression: a new inode copies its directory's own setting
	 * (flyfs.compression on a directory is for the files created in
	 * it); none means "follow the mount" (fs_compress_resolve).  Not
	 * from the root: its flyfs.compression is the live mount-wide
	 * setting, which the files follow by having none of their own.
	 */
	if (dir != NULL && dir->i_ino != FLYFS_ROOT_INO) {
		pthread_mutex_lock(&dir->i_mtx);
		fs_comp_inherit(&dir->i_din, d);
		pthread_mutex_unlock(&dir->i_mtx);
	}
	if (S_ISREG(mode) || S_ISLNK(mode)) {
		le16_set(&d->i_ext_hdr.en_magic, FLYFS_EXTENT_NODE_MAGIC);
		le16_set(&d->i_ext_hdr.en_max, FLYFS_INODE_EXT_ROOT_MAX);
	}
	inode_vnode_init(ip);
	ip->i_ref = 1;

	pthread_mutex_lock(&fs->s_icache_lock);
	/* A freed inode of this number may still be leaving the cache. */
	while (ihash_find(fs, ino) != NULL)
		pthread_cond_wait(&fs->s_icache_cv, &fs->s_icache_lock);
	LIST_INSERT_HEAD(&fs->s_ihash[ino & fs->s_ihash_mask], ip, i_hash);
	fs->s_icount++;
	pthread_mutex_unlock(&fs->s_icache_lock);

	if ((error = fs_inode_dirty(tx, ip)) != 0) {
		/* The slot was not written; the number goes back. */
		fs_ifree(tx, ino);
		pthread_mutex_lock(&fs->s_icache_lock);
		ip->i_state |= I_FREEING;
		pthread_mutex_unlock(&fs->s_icache_lock);
		inode_forget_mem(ip);
		return error;
	}
	*ipp = ip;
	return 0;
}

static int
nlink_change(struct fs_trans *tx, struct fs_inode *ip, int64_t delta,
    bool set, uint32_t value)
{
	uint32_t old, nl;
	int error;

	pthread_mutex_lock(&ip->i_mtx);
	old = fs_i_nlink(ip);
	if (set) {
		nl = value;
	} else if (delta < 0 && old == 0) {
		pthread_mutex_unlock(&ip->i_mtx);
		return fs_corrupt(ip->i_fs, 0, ip->i_ino, "link count "
		    "would go below zero");
	} else {
		nl = (uint32_t)((int64_t)old + delta);
	}
	le32_set(&ip->i_din.i_nlink, nl);
	pthread_mutex_unlock(&ip->i_mtx);
	fs_inode_touch(ip, FS_T_CTIME);
	if (nl == 0 && old != 0 && ip->i_orphan_slot < 0) {
		if ((error = fs_orphan_add(tx, ip)) != 0)
			return error;
	}
	return fs_inode_dirty(tx, ip);
}

int
fs_inode_nlink_inc(struct fs_trans *tx, struct fs_inode *ip)
{
	return nlink_change(tx, ip, 1, false, 0);
}

int
fs_inode_nlink_dec(struct fs_trans *tx, struct fs_inode *ip)
{
	return nlink_change(tx, ip, -1, false, 0);
}

int
fs_inode_nlink_set(struct fs_trans *tx, struct fs_inode *ip, uint32_t nlink)
{
	return nlink_change(tx, ip, 0, true, nlink);
}

/* ---- Orphans ------------------------------------------------------------- */

static int
orphan_block(struct flyfs *fs, uint64_t lblk, struct buf **bpp)
{
	uint64_t pblk;
	int error;

	if ((error = fs_sysfile_bmap(fs->s_orphan, lblk, &pblk)) != 0)
		return error;
	if (pblk == 0)
		return ENOENT;
	return fs_meta_read(fs, pblk, FLYFS_MB_ORPHAN, FLYFS_INO_ORPHAN, bpp);
}

int
fs_orphan_add(struct fs_trans *tx, struct fs_inode *ip)
{
	struct flyfs *fs = tx->t_fs;
	uint64_t nblocks, lblk;
	int64_t slot = -1;
	int error = 0;

	pthread_mutex_lock(&fs->s_orphan_lock);
	nblocks = fs_i_size(fs->s_orphan) / FLYFS_BLOCK_SIZE;
	for (lblk = 0; lblk <= nblocks && slot < 0; lblk++) {
		struct flyfs_orphan_block *ob;
		struct buf *bp;

		if (lblk == nblocks) {
			uint64_t pblk;

			error = fs_sysfile_extend(tx, fs->s_orphan, 1, &pblk);
			if (error == 0)
				error = fs_meta_new(tx, pblk, FLYFS_MB_ORPHAN,
				    FLYFS_INO_ORPHAN, &bp);
		} else {
			error = orphan_block(fs, lblk, &bp);
		}
		if (error)
			break;
		ob = (void *)bp->b_data;
		if (le32_get(ob->ob_count) < FLYFS_ORPHANS_PER_BLOCK) {
			for (unsigned i = 0; i < FLYFS_ORPHANS_PER_BLOCK; i++) {
				if (le64_get(ob->ob_ino[i]) != 0)
					continue;
				le64_set(&ob->ob_ino[i], ip->i_ino);
				le32_set(&ob->ob_count,
				    le32_get(ob->ob_count) + 1);
				slot = (int64_t)(lblk * FLYFS_ORPHANS_PER_BLOCK
				    + i);
				fs_trans_dirty(tx, bp);
				break;
			}
		}
		fs_meta_release(bp);
	}
	if (error == 0 && slot < 0)
		error = fs_corrupt(fs, 0, FLYFS_INO_ORPHAN, "orphan file "
		    "counts disagree with its slots");
	if (error == 0) {
		ip->i_orphan_slot = slot;
		fs->s_orphan_count++;
	}
	pthread_mutex_unlock(&fs->s_orphan_lock);
	if (error)
		return error;
	pthread_mutex_lock(&ip->i_mtx);
	le32_set(&ip->i_din.i_flags, fs_i_flags(ip) | FLYFS_IFL_ORPHAN);
	pthread_mutex_unlock(&ip->i_mtx);
	return fs_inode_dirty(tx, ip);
}

int
fs_orphan_del(struct fs_trans *tx, struct fs_inode *ip)
{
	struct flyfs *fs = tx->t_fs;
	struct flyfs_orphan_block *ob;
	struct buf *bp;
	uint64_t slot;
	int error;

	if (ip->i_orphan_slot < 0)
		return 0;
	slot = (uint64_t)ip->i_orphan_slot;
	pthread_mutex_lock(&fs->s_orphan_lock);
	error = orphan_block(fs, slot / FLYFS_ORPHANS_PER_BLOCK, &bp);
	if (error == 0) {
		ob = (void *)bp->b_data;
		if (le64_get(ob->ob_ino[slot % FLYFS_ORPHANS_PER_BLOCK]) ==
		    ip->i_ino) {
			le64_set(&ob->ob_ino[slot % FLYFS_ORPHANS_PER_BLOCK], 0);
			if (le32_get(ob->ob_count) > 0)
				le32_set(&ob->ob_count,
				    le32_get(ob->ob_count) - 1);
			fs_trans_dirty(tx, bp);
		}
		fs_meta_release(bp);
		ip->i_orphan_slot = -1;
		if (fs->s_orphan_count > 0)
			fs->s_orphan_count--;
	}
	pthread_mutex_unlock(&fs->s_orphan_lock);
	if (error)
		return error;
	pthread_mutex_lock(&ip->i_mtx);
	le32_set(&ip->i_din.i_flags, fs_i_flags(ip) & ~FLYFS_IFL_ORPHAN);
	pthread_mutex_unlock(&ip->i_mtx);
	return fs_inode_dirty(tx, ip);
}

/* Clear orphan slot SLOT (its inode is unreadable or already free). */
static int
orphan_clear_slot(struct flyfs *fs, uint64_t slot)
{
	struct fs_trans *tx;
	struct buf *bp;
	int error;

	if ((error = fs_trans_begin(fs, 2, &tx)) != 0)
		return error;
	error = orphan_block(fs, slot / FLYFS_ORPHANS_PER_BLOCK, &bp);
	if (error == 0) {
		struct flyfs_orphan_block *ob = (void *)bp->b_data;

		le64_set(&ob->ob_ino[slot % FLYFS_ORPHANS_PER_BLOCK], 0);
		if (le32_get(ob->ob_count) > 0)
			le32_set(&ob->ob_count, le32_get(ob->ob_count) - 1);
		fs_trans_dirty(tx, bp);
		fs_meta_release(bp);
	}
	return fs_trans_end(tx) ? : error;
}

int
fs_orphan_reclaim_all(struct flyfs *fs, uint64_t *np)
{
	uint64_t nblocks = fs_i_size(fs->s_orphan) / FLYFS_BLOCK_SIZE;
	uint64_t *slots = NULL, *inos = NULL, n = 0, cap = 0;
	int error = 0;

	*np = 0;
	for (uint64_t l = 0; l < nblocks && error == 0; l++) {
		const struct flyfs_orphan_block *ob;
		struct buf *bp;

		if ((error = orphan_block(fs, l, &bp)) != 0)
			break;
		ob = (const void *)bp->b_data;
		for (unsigned i = 0; i < FLYFS_ORPHANS_PER_BLOCK; i++) {
			uint64_t ino = le64_get(ob->ob_ino[i]);

			if (ino == 0)
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				slots = realloc(slots, cap * sizeof(*slots));
				inos = realloc(inos, cap * sizeof(*inos));
				if (slots == NULL || inos == NULL) {
					error = ENOMEM;
					break;
				}
			}
			slots[n] = l * FLYFS_ORPHANS_PER_BLOCK + i;
			inos[n++] = ino;
		}
		fs_meta_release(bp);
	}
	fs->s_orphan_count = n;
	for (uint64_t i = 0; i < n && error == 0; i++) {
		struct fs_inode *ip;
		int e = fs_iget(fs, inos[i], &ip);

		if (e != 0) {
			fprintf(stderr, "flyfs: orphan inode %" PRIu64 " is "
			    "unreadable (%s); dropping it from the orphan "
			    "list\n", inos[i], strerror(e));
			error = orphan_clear_slot(fs, slots[i]);
			fs->s_orphan_count--;
			continue;
		}
		ip->i_orphan_slot = (int64_t)slots[i];
		if (fs_i_nlink(ip) != 0) {
			struct fs_trans *tx;

			if ((error = fs_trans_begin(fs, 4, &tx)) == 0) {
				error = fs_orphan_del(tx, ip);
				error = fs_trans_end(tx) ? : error;
			}
		} else {
			(*np)++;
		}
		fs_iput(ip);	/* nlink 0: reclaimed here */
	}
	free(slots);
	free(inos);
	return error;
}

/* ---- System inodes and the whole cache ---------------------------------- */

static int
load_system(struct flyfs *fs, uint64_t ino, struct fs_inode **ipp)
{
	struct fs_inode *ip;
	int error;

	if (ino == FLYFS_INO_IFILE) {
		ip = inode_new(fs, ino);
		if (ip == NULL)
			return ENOMEM;
		if ((error = inode_read(ip)) != 0) {
			free(ip);
			return error == ENOENT ? fs_corrupt(fs, 0, ino,
			    "the inode file's own inode is free") : error;
		}
		inode_vnode_init(ip);
		ip->i_ref = 1;
		pthread_mutex_lock(&fs->s_icache_lock);
		LIST_INSERT_HEAD(&fs->s_ihash[0], ip, i_hash);
		fs->s_icount++;
		pthread_mutex_unlock(&fs->s_icache_lock);
	} else if ((error = fs_iget(fs, ino, &ip)) != 0) {
		return error == ENOENT ? fs_corrupt(fs, 0, ino, "system inode "
		    "is free") : error;
	}
	if (!(fs_i_flags(ip) & FLYFS_IFL_SYSTEM) || !S_ISREG(fs_i_mode(ip)))
		return fs_corrupt(fs, 0, ino, "not a system file");
	ip->i_state |= I_SYSTEM;
	if ((error = sysmap_load(ip)) != 0)
		return error;
	*ipp = ip;
	return 0;
}

int
fs_icache_load_system(struct flyfs *fs)
{
	uint64_t size;
	int error;

	fs->s_inode_count = FLYFS_INODES_PER_BLOCK;	/* for the bootstrap */
	if ((error = load_system(fs, FLYFS_INO_IFILE, &fs->s_ifile)) != 0)
		return error;
	size = fs_i_size(fs->s_ifile);
	if (size == 0 || size % FLYFS_BLOCK_SIZE != 0 ||
	    size / FLYFS_INODE_SIZE > FLYFS_MAX_INO)
		return fs_corrupt(fs, 0, 0, "inode file size %" PRIu64
		    " is impossible", size);
	fs->s_inode_count = size / FLYFS_INODE_SIZE;
	if ((error = load_system(fs, FLYFS_INO_IBITMAP, &fs->s_ibitmap)) != 0 ||
	    (error = load_system(fs, FLYFS_INO_ORPHAN, &fs->s_orphan)) != 0)
		return error;
	if (fs_i_size(fs->s_ibitmap) / FLYFS_BLOCK_SIZE *
	    FLYFS_INODES_PER_IBITMAP < fs->s_inode_count)
		return fs_corrupt(fs, 0, FLYFS_INO_IBITMAP, "inode bitmap "
		    "smaller than the inode file");
	{
		uint32_t seed;
		struct timespec now;

		fs_now(&now);
		seed = (uint32_t)now.tv_nsec ^ (uint32_t)now.tv_sec * 2654435761u;
		fs->s_next_gen = seed;
	}
	return 0;
}

/* Snapshot of the cached inodes, each with a reference.  (not system) */
static struct fs_inode **
icache_snapshot(struct flyfs *fs, size_t *np)
{
	struct fs_inode **v, *ip;
	size_t n = 0;

	pthread_mutex_lock(&fs->s_icache_lock);
	v = calloc(fs->s_icount + 1, sizeof(*v));
	if (v != NULL) {
		for (uint64_t h = 0; h <= fs->s_ihash_mask; h++) {
			LIST_FOREACH(ip, &fs->s_ihash[h], i_hash) {
				if (ip->i_state & (I_SYSTEM | I_NEW |
				    I_FREEING))
					continue;
				ip->i_ref++;
				if (ip->i_state & I_ONLRU) {
					TAILQ_REMOVE(&fs->s_ilru, ip, i_lru);
					ip->i_state &= ~I_ONLRU;
					fs->s_ilru_count--;
				}
				v[n++] = ip;
			}
		}
	}
	pthread_mutex_unlock(&fs->s_icache_lock);
	*np = n;
	return v;
}

int
fs_icache_sync_data(struct flyfs *fs, int waitfor)
{
	struct fs_inode **v;
	size_t n;
	int error = 0, e;

	if ((v = icache_snapshot(fs, &n)) == NULL)
		return ENOMEM;
	for (size_t i = 0; i < n; i++) {
		e = vfsync(ITOV(v[i]), waitfor);
		if (e == 0)
			e = inode_write_if_dirty(v[i]);
		if (e == 0)
			e = __atomic_exchange_n(&v[i]->i_error, 0,
			    __ATOMIC_RELAXED);
		if (error == 0)
			error = e;
	}
	for (size_t i = 0; i < n; i++)
		fs_iput(v[i]);
	free(v);
	return error;
}

int
fs_icache_flush_all(struct flyfs *fs)
{
	struct fs_inode **v;
	size_t n;
	int error;

	error = fs_icache_sync_data(fs, MNT_WAIT);
	if ((v = icache_snapshot(fs, &n)) == NULL)
		return ENOMEM;
	/*
	 * Drop every count: FUSE does not forget everything at unmount.
	 * Unlinked inodes are reclaimed now, the others evicted below.
	 */
	for (size_t i = 0; i < n; i++) {
		pthread_mutex_lock(&fs->s_icache_lock);
		v[i]->i_nlookup = 0;
		v[i]->i_nopen = 0;
		pthread_mutex_unlock(&fs->s_icache_lock);
		fs_iput(v[i]);
	}
	free(v);
	/* Evict the LRU. */
	for (;;) {
		struct fs_inode *ip;

		pthread_mutex_lock(&fs->s_icache_lock);
		ip = TAILQ_FIRST(&fs->s_ilru);
		if (ip != NULL) {
			TAILQ_REMOVE(&fs->s_ilru, ip, i_lru);
			ip->i_state &= ~I_ONLRU;
			ip->i_state |= I_FREEING;
			fs->s_ilru_count--;
		}
		pthread_mutex_unlock(&fs->s_icache_lock);
		if (ip == NULL)
			break;
		if (vinvalbuf(ITOV(ip), V_SAVE) != 0 && error == 0)
			error = EIO;
		if (inode_write_if_dirty(ip) != 0 && error == 0)
			error = EIO;
		inode_forget_mem(ip);
	}
	return error;
}

void
fs_icache_discard_all(struct flyfs *fs)
{
	if (fs->s_ihash == NULL)
		return;
	for (uint64_t h = 0; h <= fs->s_ihash_mask; h++) {
		struct fs_inode *ip;

		while ((ip = LIST_FIRST(&fs->s_ihash[h])) != NULL) {
			LIST_REMOVE(ip, i_hash);
			if (ip->i_state & I_ONLRU)
				TAILQ_REMOVE(&fs->s_ilru, ip, i_lru);
			inode_destroy(ip);
		}
	}
	fs->s_icount = 0;
	fs->s_ilru_count = 0;
	fs->s_ifile = fs->s_ibitmap = fs->s_orphan = NULL;
}

/* ---- flyfs.h: attributes and counts ------------------------------------- */

int
flyfs_getattr(struct flyfs *fs, uint64_t ino, struct flyfs_attr *out)
{
	struct fs_inode *ip;
	int error;

	if ((error = fs_iget(fs, ino, &ip)) != 0)
		return error;
	fs_inode_getattr(ip, out);
	fs_iput(ip);
	return 0;
}

static void
set_time(le64_t *sec, le32_t *nsec, const struct timespec *ts)
{
	le64_set(sec, (uint64_t)ts->tv_sec);
	le32_set(nsec, (uint32_t)ts->tv_nsec);
}

bool
fs_kill_setid(struct fs_inode *ip, const struct flyfs_cred *cred)
{
	uint32_t old = le32_get(ip->i_din.i_mode), mode = old;

	mode &= ~(uint32_t)S_ISUID;
	if (fs_kill_sgid(mode, le32_get(ip->i_din.i_gid), cred))
		mode &= ~(uint32_t)S_ISGID;
	le32_set(&ip->i_din.i_mode, mode);
	return mode != old;
}

/*
 * Linux's rule (setattr_should_drop_sgid, since 6.2): S_ISGID goes with a
 * write, truncate or chown by an unprivileged caller when the file is
 * group-executable (a real set-gid program), or when the caller is not a
 * member of the file's group (it cannot have set the bit itself).  Without
 * group-execute it is mandatory-locking's mark, kept for group members.
 */
bool
fs_kill_sgid(mode_t mode, gid_t fgid, const struct flyfs_cred *cred)
{
	if (!(mode & S_ISGID))
		return false;
	if (mode & S_IXGRP)
		return true;
	if (cred == NULL || cred->gid == fgid)
		return false;
	return cred->in_group == NULL || !cred->in_group(cred, fgid);
}

int
flyfs_setattr(struct flyfs *fs, uint64_t ino, const struct flyfs_attr *in,
    int to_set, const struct flyfs_cred *cred, struct flyfs_attr *out)
{
	bool root = cred == NULL || cred->uid == 0;
	struct fs_inode *ip;
	struct fs_trans *tx;
	struct timespec now;
	int error;

	if (fs->s_readonly)
		return EROFS;
	if ((error = fs_iget(fs, ino, &ip)) != 0)
		return error;
	pthread_rwlock_wrlock(&ip->i_lock);
	if (to_set & FLYFS_SET_SIZE) {
		mode_t mode = fs_i_mode(ip);

		if (S_ISDIR(mode))
			error = EISDIR;
		else if (!S_ISREG(mode))
			error = EINVAL;
		else if (in->size > FLYFS_MAX_FILE_SIZE)
			error = EFBIG;
		else {
			error = fs_file_truncate(ip, in->size);
		}
		if (error)
			goto out;
		if (!root) {
			pthread_mutex_lock(&ip->i_mtx);
			(void)fs_kill_setid(ip, cred);
			pthread_mutex_unlock(&ip->i_mtx);
		}
	}
	/*
	 * A truncate or a chown drops a file's capability, whoever makes it
	 * (as the VFS); once, if the call does both.
	 */
	if ((to_set & (FLYFS_SET_SIZE | FLYFS_SET_UID | FLYFS_SET_GID)) &&
	    S_ISREG(fs_i_mode(ip)) && (error = fs_xattr_kill_cap(ip)) != 0)
		goto out;
	if ((error = fs_trans_begin(fs, 2, &tx)) != 0)
		goto out;
	fs_now(&now);
	pthread_mutex_lock(&ip->i_mtx);
	if (to_set & FLYFS_SET_MODE)
		le32_set(&ip->i_din.i_mode, (le32_get(ip->i_din.i_mode) &
		    S_IFMT) | ((uint32_t)in->mode & 07777));
	if (to_set & FLYFS_SET_UID)
		le32_set(&ip->i_din.i_uid, in->uid);
	if (to_set & FLYFS_SET_GID)
		le32_set(&ip->i_din.i_gid, in->gid);
	/*
	 * A chown drops S_ISUID whoever makes it, and S_ISGID by
	 * fs_kill_sgid's rule, root keeping a non-executable one (the VFS's
	 * rule; under HANDLE_KILLPRIV_V2 the kernel leaves it to us).
	 */
	if ((to_set & (FLYFS_SET_UID | FLYFS_SET_GID)) &&
	    !S_ISDIR(fs_i_mode(ip)))
		(void)fs_kill_setid(ip, root ? NULL : cred);
	if (to_set & FLYFS_SET_ATIME_NOW)
		set_time(&ip->i_din.i_atime, &ip->i_din.i_atime_ns, &now);
	else if (to_set & FLYFS_SET_ATIME)
		set_time(&ip->i_din.i_atime, &ip->i_din.i_atime_ns, &in->atime);
	if (to_set & FLYFS_SET_MTIME_NOW)
		set_time(&ip->i_din.i_mtime, &ip->i_din.i_mtime_ns, &now);
	else if (to_set & FLYFS_SET_MTIME)
		set_time(&ip->i_din.i_mtime, &ip->i_din.i_mtime_ns, &in->mtime);
	else if (to_set & FLYFS_SET_SIZE)
		/* truncate(2) stamps mtime even when the size is unchanged;
		 * the kernel sends a bare size and leaves that to us. */
		set_time(&ip->i_din.i_mtime, &ip->i_din.i_mtime_ns, &now);
	if (to_set & FLYFS_SET_CTIME)
		set_time(&ip->i_din.i_ctime, &ip->i_din.i_ctime_ns, &in->ctime);
	else
		set_time(&ip->i_din.i_ctime, &ip->i_din.i_ctime_ns, &now);
	pthread_mutex_unlock(&ip->i_mtx);
	error = fs_inode_dirty(tx, ip);
	if (error)
		fs_trans_set_error(tx, error);
	error = fs_trans_end(tx);
out:
	pthread_rwlock_unlock(&ip->i_lock);
	if (error == 0 && out != NULL)
		fs_inode_getattr(ip, out);
	fs_iput(ip);
	return error;
}

int
flyfs_open(struct flyfs *fs, uint64_t ino, int flags)
{
	struct fs_inode *ip;
	int error;

	(void)flags;
	if ((error = fs_iget(fs, ino, &ip)) != 0)
		return error;
	pthread_mutex_lock(&fs->s_icache_lock);
	ip->i_nopen++;
	pthread_mutex_unlock(&fs->s_icache_lock);
	fs_iput(ip);
	return 0;
}

int
flyfs_release(struct flyfs *fs, uint64_t ino)
{
	struct fs_inode *ip;

	pthread_mutex_lock(&fs->s_icache_lock);
	ip = ihash_find(fs, ino);
	if (ip == NULL || (ip->i_state & (I_NEW | I_FREEING)) ||
	    ip->i_nopen == 0) {
		pthread_mutex_unlock(&fs->s_icache_lock);
		return ip == NULL ? ENOENT : EINVAL;
	}
	ip->i_nopen--;
	inode_maybe_release(ip);
	return 0;
}

void
flyfs_forget(struct flyfs *fs, uint64_t ino, uint64_t nlookup)
{
	struct fs_inode *ip;

	pthread_mutex_lock(&fs->s_icache_lock);
	ip = ihash_find(fs, ino);
	if (ip == NULL || (ip->i_state & (I_NEW | I_FREEING))) {
		pthread_mutex_unlock(&fs->s_icache_lock);
		return;
	}
	ip->i_nlookup = ip->i_nlookup > nlookup ? ip->i_nlookup - nlookup : 0;
	inode_maybe_release(ip);
}
