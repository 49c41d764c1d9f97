/*
 * alloc.c - block and inode allocation.
 *
 * This module owns the group descriptors and block bitmaps, the busy
 * extents (blocks freed by a transaction that has not committed yet: not
 * allocatable, so a crash can never find them reused while the old owner
 * still points at them), the delayed-allocation reservations
 * (s_resv_blocks) and the inode bitmap file (inode numbers).  Inode file
 * growth lives here too: when no inode slot is free the inode file takes
 * more blocks, zeroed on the device before the transaction that extends
 * it commits.
 *
 * Policy: first fit at or after a goal, so a streaming writer whose goal
 * is the end of its previous allocation gets one contiguous run; without
 * a goal, allocation starts at the end of mkfs's metadata.  Group free
 * counts (an in-memory mirror of gd_free_blocks) let the scan skip full
 * groups without reading their bitmaps.
 *
 * Locks: s_alloc_lock (level 6) protects struct fs_alloc, s_free_blocks,
 * s_busy_blocks and every bitmap / descriptor change; bitmap and GDT
 * buffers are locked only under it.  s_ialloc_lock (level 5) protects the
 * inode bitmap, s_inode_count, s_free_inodes and the inode file's growth.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_int.h"

struct fs_alloc {
	uint32_t	a_ngroups;
	uint32_t	*a_gfree;	/* free bits per group (busy included) */
	struct fs_brange *a_busy;	/* sorted, disjoint, merged */
	size_t		a_nbusy, a_cap;
	uint64_t	a_default_goal;
};

/* ---- Busy extents ----------------------------------------------------- */

/* Index of the first busy range ending after BLK. */
static size_t
busy_find(const struct fs_alloc *a, uint64_t blk)
{
	size_t lo = 0, hi = a->a_nbusy;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (a->a_busy[mid].blk + a->a_busy[mid].n <= blk)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int
busy_insert(struct fs_alloc *a, uint64_t blk, uint64_t n)
{
	size_t i = busy_find(a, blk);

	if (a->a_nbusy == a->a_cap) {
		size_t ncap = a->a_cap ? a->a_cap * 2 : 64;
		struct fs_brange *nb = realloc(a->a_busy, ncap * sizeof(*nb));

		if (nb == NULL)
			return ENOMEM;
		a->a_busy = nb;
		a->a_cap = ncap;
	}
	memmove(&a->a_busy[i + 1], &a->a_busy[i],
	    (a->a_nbusy - i) * sizeof(*a->a_busy));
	a->a_busy[i] = (struct fs_brange){ blk, n };
	a->a_nbusy++;
	/* Merge with neighbours. */
	if (i + 1 < a->a_nbusy && a->a_busy[i].blk + a->a_busy[i].n ==
	    a->a_busy[i + 1].blk) {
		a->a_busy[i].n += a->a_busy[i + 1].n;
		memmove(&a->a_busy[i + 1], &a->a_busy[i + 2],
		    (a->a_nbusy - i - 2) * sizeof(*a->a_busy));
		a->a_nbusy--;
	}
	if (i > 0 && a->a_busy[i - 1].blk + a->a_busy[i - 1].n ==
	    a->a_busy[i].blk) {
		a->a_busy[i - 1].n += a->a_busy[i].n;
		memmove(&a->a_busy[i], &a->a_busy[i + 1],
		    (a->a_nbusy - i - 1) * sizeof(*a->a_busy));
		a->a_nbusy--;
	}
	return 0;
}

/* Remove [blk, blk+n) from the busy set; returns how many were busy. */
static uint64_t
busy_remove(struct fs_alloc *a, uint64_t blk, uint64_t n)
{
	uint64_t end = blk + n, removed = 0;
	size_t i = busy_find(a, blk);

	while (i < a->a_nbusy && a->a_busy[i].blk < end) {
		struct fs_brange *r = &a->a_busy[i];
		uint64_t rend = r->blk + r->n;
		uint64_t lo = r->blk > blk ? r->blk : blk;
		uint64_t hi = rend < end ? rend : end;

		removed += hi - lo;
		if (r->blk < blk && rend > end) {
			/* Split in two. */
			struct fs_brange tail = { end, rend - end };

			r->n = blk - r->blk;
			if (busy_insert(a, tail.blk, tail.n) != 0)
				r->n = rend - r->blk;	/* keep busy: safe */
			return removed;
		}
		if (r->blk < blk) {
			r->n = blk - r->blk;
			i++;
		} else if (rend > end) {
			r->n = rend - end;
			r->blk = end;
			i++;
		} else {
			memmove(r, r + 1,
			    (a->a_nbusy - i - 1) * sizeof(*a->a_busy));
			a->a_nbusy--;
		}
	}
	return removed;
}

/* First busy block in [blk, blk+n), or UINT64_MAX. */
static uint64_t
busy_first(const struct fs_alloc *a, uint64_t blk, uint64_t n)
{
	size_t i = busy_find(a, blk);

	if (i < a->a_nbusy && a->a_busy[i].blk < blk + n)
		return a->a_busy[i].blk > blk ? a->a_busy[i].blk : blk;
	return UINT64_MAX;
}

void
fs_alloc_busy_done(struct flyfs *fs, const struct fs_brange *r, size_t n)
{
	uint64_t total = 0;

	if (n == 0)
		return;
	pthread_mutex_lock(&fs->s_alloc_lock);
	for (size_t i = 0; i < n; i++)
		total += busy_remove(fs->s_alloc, r[i].blk, r[i].n);
	fs->s_busy_blocks -= total;
	__atomic_fetch_add(&fs->s_free_blocks, total, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&fs->s_alloc_lock);
}

/* ---- Setup -------------------------------------------------------------- */

int
fs_alloc_init(struct flyfs *fs)
{
	const struct flyfs_sb_info *sbi = &fs->s_sb;
	struct fs_alloc *a;
	uint64_t total = 0;
	int error = 0;

	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return ENOMEM;
	a->a_ngroups = sbi->group_count;
	a->a_gfree = calloc(a->a_ngroups, sizeof(*a->a_gfree));
	if (a->a_gfree == NULL) {
		free(a);
		return ENOMEM;
	}
	a->a_default_goal = sbi->journal_start + sbi->journal_blocks;
	for (uint32_t b = 0; b < sbi->gdt_blocks && error == 0; b++) {
		struct buf *bp;
		const struct flyfs_gdt_block *gb;

		error = fs_meta_read(fs, sbi->gdt_start + b, FLYFS_MB_GDT, 0,
		    &bp);
		if (error)
			break;
		gb = (const void *)bp->b_data;
		for (uint32_t i = 0; i < FLYFS_GD_PER_BLOCK; i++) {
			uint32_t g = b * FLYFS_GD_PER_BLOCK + i;
			uint32_t f;

			if (g >= a->a_ngroups)
				break;
			f = le32_get(gb->gb_desc[i].gd_free_blocks);
			if (f > flyfs_group_size(sbi->block_count, g)) {
				error = fs_corrupt(fs, sbi->gdt_start + b, 0,
				    "group %" PRIu32 " claims %" PRIu32
				    " free blocks of %" PRIu32, g, f,
				    flyfs_group_size(sbi->block_count, g));
				break;
			}
			a->a_gfree[g] = f;
			total += f;
		}
		fs_meta_release(bp);
	}
	if (error) {
		free(a->a_gfree);
		free(a);
		return error;
	}
	fs->s_alloc = a;
	fs->s_free_blocks = total;
	fs->s_busy_blocks = 0;
	return 0;
}

void
fs_alloc_fini(struct flyfs *fs)
{
	struct fs_alloc *a = fs->s_alloc;

	if (a == NULL)
		return;
	free(a->a_busy);
	free(a->a_gfree);
	free(a);
	fs->s_alloc = NULL;
}

/* ---- Bitmaps and descriptors -------------------------------------------- */

/* Adjust group G's descriptor by DELTA free blocks in TX.  (al) */
static int
gdt_update(struct fs_trans *tx, uint32_t g, int64_t delta, bool clear_uninit)
{
	struct flyfs *fs = tx->t_fs;
	uint64_t blk = fs->s_sb.gdt_start + g / FLYFS_GD_PER_BLOCK;
	struct flyfs_group_desc *gd;
	struct buf *bp;
	int error;

	if ((error = fs_meta_read(fs, blk, FLYFS_MB_GDT, 0, &bp)) != 0)
		return error;
	gd = &((struct flyfs_gdt_block *)(void *)bp->b_data)->
	    gb_desc[g % FLYFS_GD_PER_BLOCK];
	le32_set(&gd->gd_free_blocks,
	    (uint32_t)((int64_t)le32_get(gd->gd_free_blocks) + delta));
	if (clear_uninit)
		le32_set(&gd->gd_flags,
		    le32_get(gd->gd_flags) & ~FLYFS_GD_BITMAP_UNINIT);
	fs_trans_dirty(tx, bp);
	fs_meta_release(bp);
	return 0;
}

/*
 * The bitmap buffer of group G, locked; an uninitialised group's bitmap is
 * created (all free, bits past the end set) in TX.  (al)
 */
static int
bitmap_get(struct fs_trans *tx, uint32_t g, struct buf **bpp)
{
	struct flyfs *fs = tx->t_fs;
	uint64_t blk = fs->s_sb.bitmap_start + g;
	uint64_t gdblk = fs->s_sb.gdt_start + g / FLYFS_GD_PER_BLOCK;
	const struct flyfs_group_desc *gd;
	struct flyfs_bitmap_block *bm;
	struct buf *gbp;
	bool uninit;
	int error;

	if ((error = fs_meta_read(fs, gdblk, FLYFS_MB_GDT, 0, &gbp)) != 0)
		return error;
	gd = &((struct flyfs_gdt_block *)(void *)gbp->b_data)->
	    gb_desc[g % FLYFS_GD_PER_BLOCK];
	uninit = (le32_get(gd->gd_flags) & FLYFS_GD_BITMAP_UNINIT) != 0;
	fs_meta_release(gbp);
	if (!uninit)
		return fs_meta_read(fs, blk, FLYFS_MB_BBITMAP, 0, bpp);
	if ((error = fs_meta_new(tx, blk, FLYFS_MB_BBITMAP, 0, bpp)) != 0)
		return error;
	bm = (void *)(*bpp)->b_data;
	for (uint32_t b = flyfs_group_size(fs->s_sb.block_count, g);
	    b < FLYFS_GROUP_BLOCKS; b++)
		flyfs_bit_set(bm->bm_bits, b);
	return gdt_update(tx, g, 0, true);
}

/*
 * In group G's bitmap BM, the first run of free, non-busy blocks at or
 * after bit START, at most WANT long.  Returns its length (0: none).
 */
static uint32_t
find_run(struct flyfs *fs, uint32_t g, const uint8_t *bits, uint32_t start,
    uint32_t want, uint32_t *first)
{
	struct fs_alloc *a = fs->s_alloc;
	uint32_t size = flyfs_group_size(fs->s_sb.block_count, g);
	uint64_t base = flyfs_group_first(g);
	uint32_t b = start;

	while (b < size) {
		uint32_t len = 0;
		uint64_t busy;

		/* Skip used blocks a byte at a time when possible. */
		if ((b & 7) == 0 && bits[b >> 3] == 0xff) {
			b += 8;
			continue;
		}
		if (flyfs_bit_test(bits, b)) {
			b++;
			continue;
		}
		busy = busy_first(a, base + b, 1);
		if (busy != UINT64_MAX) {
			/* Jump past the busy range. */
			size_t i = busy_find(a, base + b);

			b = (uint32_t)(a->a_busy[i].blk + a->a_busy[i].n - base);
			continue;
		}
		while (b + len < size && len < want &&
		    !flyfs_bit_test(bits, b + len))
			len++;
		busy = busy_first(a, base + b, len);
		if (busy != UINT64_MAX)
			len = (uint32_t)(busy - (base + b));
		*first = b;
		return len;
	}
	return 0;
}

int
fs_alloc_blocks(struct fs_trans *tx, uint64_t goal, uint32_t want,
    unsigned flags, uint64_t *blkp, uint32_t *gotp)
{
	struct flyfs *fs = tx->t_fs;
	struct fs_alloc *a = fs->s_alloc;
	uint64_t avail, resv;
	uint32_t g0, first = 0, len = 0, g = 0;
	int error = 0;

	*blkp = 0;
	*gotp = 0;
	if (want == 0)
		return EINVAL;
	pthread_mutex_lock(&fs->s_alloc_lock);
	avail = fs->s_free_blocks;
	if ((flags & FS_ALLOC_RESERVED) == 0) {
		pthread_mutex_lock(&fs->s_res_lock);
		resv = fs->s_resv_blocks;
		pthread_mutex_unlock(&fs->s_res_lock);
		if ((flags & FS_ALLOC_META) == 0)
			resv += fs->s_meta_reserve;
		avail = avail > resv ? avail - resv : 0;
	}
	if (avail == 0) {
		pthread_mutex_unlock(&fs->s_alloc_lock);
		return ENOSPC;
	}
	if (want > avail)
		want = (uint32_t)avail;
	if (goal == 0 || goal >= fs->s_sb.block_count)
		goal = a->a_default_goal;
	g0 = flyfs_group_of(goal);
	/* Groups from the goal's on, then the goal's group from its start. */
	for (uint32_t i = 0; i <= a->a_ngroups && len == 0; i++) {
		struct buf *bp;
		uint32_t start;

		g = (g0 + i) % a->a_ngroups;
		start = i == 0 ? (uint32_t)(goal - flyfs_group_first(g)) : 0;
		if (a->a_gfree[g] == 0)
			continue;
		if ((error = bitmap_get(tx, g, &bp)) != 0)
			break;
		len = find_run(fs, g, ((struct flyfs_bitmap_block *)
		    (void *)bp->b_data)->bm_bits, start, want, &first);
		if (len > 0) {
			uint8_t *bits = ((struct flyfs_bitmap_block *)
			    (void *)bp->b_data)->bm_bits;

			for (uint32_t b = first; b < first + len; b++)
				flyfs_bit_set(bits, b);
			fs_trans_dirty(tx, bp);
		}
		fs_meta_release(bp);
	}
	if (error == 0 && len == 0)
		error = ENOSPC;
	if (error == 0)
		error = gdt_update(tx, g, -(int64_t)len, false);
	if (error == 0) {
		a->a_gfree[g] -= len;
		__atomic_fetch_sub(&fs->s_free_blocks, len, __ATOMIC_RELAXED);
		if (flags & FS_ALLOC_RESERVED) {
			pthread_mutex_lock(&fs->s_res_lock);
			fs->s_resv_blocks = fs->s_resv_blocks > len ?
			    fs->s_resv_blocks - len : 0;
			pthread_mutex_unlock(&fs->s_res_lock);
		}
		*blkp = flyfs_group_first(g) + first;
		*gotp = len;
		FS_COUNT(fs, blocks_allocated, len);
	}
	pthread_mutex_unlock(&fs->s_alloc_lock);
	return error;
}

int
fs_alloc_meta_block(struct fs_trans *tx, uint64_t goal, uint64_t *blk)
{
	uint32_t got;

	return fs_alloc_blocks(tx, goal, 1, FS_ALLOC_META, blk, &got);
}

/* Blocks nobody may ever free: the fixed regions of the superblock. */
static bool
fixed_region(const struct flyfs_sb_info *sbi, uint64_t blk, uint64_t n)
{
	uint64_t end = blk + n;
	uint64_t bm_end = sbi->bitmap_start + sbi->group_count;

	if (blk < bm_end)
		return true;		/* sb, gdt, bitmaps */
	if (blk < sbi->journal_start + sbi->journal_blocks &&
	    end > sbi->journal_start)
		return true;
	return end > sbi->backup_block;
}

int
fs_trans_free_blocks(struct fs_trans *tx, uint64_t blk, uint64_t n,
    unsigned flags)
{
	struct flyfs *fs = tx->t_fs;
	struct fs_alloc *a = fs->s_alloc;
	uint64_t done = 0;
	int error = 0;

	if (n == 0)
		return 0;
	if (blk + n < blk || fixed_region(&fs->s_sb, blk, n))
		return fs_corrupt(fs, 0, 0, "attempt to free blocks %" PRIu64
		    "..%" PRIu64 " (fixed metadata or outside the image)",
		    blk, blk + n - 1);
	pthread_mutex_lock(&fs->s_alloc_lock);
	while (done < n && error == 0) {
		uint64_t b0 = blk + done;
		uint32_t g = flyfs_group_of(b0);
		uint32_t off = (uint32_t)(b0 - flyfs_group_first(g));
		uint32_t len = flyfs_group_size(fs->s_sb.block_count, g) - off;
		struct buf *bp;
		uint8_t *bits;

		if (len > n - done)
			len = (uint32_t)(n - done);
		if ((error = bitmap_get(tx, g, &bp)) != 0)
			break;
		bits = ((struct flyfs_bitmap_block *)(void *)bp->b_data)->bm_bits;
		for (uint32_t i = 0; i < len; i++) {
			if (!flyfs_bit_test(bits, off + i)) {
				error = fs_corrupt(fs, fs->s_sb.bitmap_start + g,
				    0, "freeing block %" PRIu64 " which is "
				    "already free", b0 + i);
				break;
			}
		}
		if (error == 0) {
			for (uint32_t i = 0; i < len; i++)
				bits[(off + i) >> 3] &=
				    (uint8_t)~(1u << ((off + i) & 7));
			fs_trans_dirty(tx, bp);
		}
		fs_meta_release(bp);
		if (error == 0)
			error = gdt_update(tx, g, len, false);
		if (error == 0) {
			a->a_gfree[g] += len;
			fs->s_busy_blocks += len;
			if (busy_insert(a, b0, len) != 0 ||
			    fs_journal_add_busy(tx, b0, len) != 0)
				error = ENOMEM;
			FS_COUNT(fs, blocks_freed, len);
		}
		done += len;
	}
	pthread_mutex_unlock(&fs->s_alloc_lock);
	if (error == 0 && (flags & FS_FREE_META)) {
		for (uint64_t i = 0; i < n && error == 0; i++)
			error = fs_journal_revoke(tx, blk + i);
	}
	if (error)
		fs_trans_set_error(tx, error);
	return error;
}

/* ---- Reservations -------------------------------------------------------- */

int
fs_reserve_blocks(struct flyfs *fs, uint64_t n)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		uint64_t free_blocks, need;

		pthread_mutex_lock(&fs->s_res_lock);
		free_blocks = __atomic_load_n(&fs->s_free_blocks,
		    __ATOMIC_RELAXED);
		need = fs->s_resv_blocks + fs->s_meta_reserve + n;
		if (free_blocks >= need) {
			fs->s_resv_blocks += n;
			pthread_mutex_unlock(&fs->s_res_lock);
			return 0;
		}
		pthread_mutex_unlock(&fs->s_res_lock);
		/* Blocks freed by uncommitted transactions come back at commit. */
		if (attempt == 0 &&
		    __atomic_load_n(&fs->s_busy_blocks, __ATOMIC_RELAXED) == 0)
			break;
		if (attempt == 0)
			fs_journal_commit_all(fs);
	}
	return ENOSPC;
}

void
fs_unreserve_blocks(struct flyfs *fs, uint64_t n)
{
	pthread_mutex_lock(&fs->s_res_lock);
	fs->s_resv_blocks = fs->s_resv_blocks > n ? fs->s_resv_blocks - n : 0;
	pthread_mutex_unlock(&fs->s_res_lock);
}

/* ---- Inode numbers ------------------------------------------------------- */

/* Read inode bitmap block LBLK (covering inodes LBLK * 32512 ...). */
static int
ibitmap_read(struct flyfs *fs, uint64_t lblk, struct buf **bpp)
{
	uint64_t pblk;
	int error;

	if ((error = fs_sysfile_bmap(fs->s_ibitmap, lblk, &pblk)) != 0)
		return error;
	if (pblk == 0)
		return fs_corrupt(fs, 0, FLYFS_INO_IBITMAP, "inode bitmap "
		    "block %" PRIu64 " is missing", lblk);
	return fs_meta_read(fs, pblk, FLYFS_MB_IBITMAP, FLYFS_INO_IBITMAP, bpp);
}

int
fs_alloc_count_inodes(struct flyfs *fs, uint64_t *freep)
{
	uint64_t used = 0, count = fs->s_inode_count;
	int error = 0;

	for (uint64_t l = 0; l * FLYFS_INODES_PER_IBITMAP < count; l++) {
		struct buf *bp;
		const uint8_t *bits;
		uint64_t base = l * FLYFS_INODES_PER_IBITMAP;
		uint64_t lim = count - base < FLYFS_INODES_PER_IBITMAP ?
		    count - base : FLYFS_INODES_PER_IBITMAP;

		if ((error = ibitmap_read(fs, l, &bp)) != 0)
			return error;
		bits = ((struct flyfs_bitmap_block *)(void *)bp->b_data)->bm_bits;
		for (uint64_t i = 0; i < lim; i++)
			used += flyfs_bit_test(bits, i);
		fs_meta_release(bp);
	}
	*freep = count - used;
	return 0;
}

/*
 * No free inode slot: extend the inode file by a run of zeroed blocks
 * (a quarter of its size, 16 to 1024 blocks), and the inode bitmap file
 * by a block when the new slots need one.  (ialloc)
 */
static int
ifile_grow(struct fs_trans *tx)
{
	struct flyfs *fs = tx->t_fs;
	struct fs_inode *ifp = fs->s_ifile;
	uint64_t nblocks = fs->s_inode_count / FLYFS_INODES_PER_BLOCK;
	uint64_t want = nblocks / 4, pblk, old_count = fs->s_inode_count;
	uint32_t got;
	void *zero;
	int error;

	if (want < 16)
		want = 16;
	if (want > 1024)
		want = 1024;
	if (old_count + want * FLYFS_INODES_PER_BLOCK > FLYFS_MAX_INO)
		return ENOSPC;
	/* New inode bitmap block first, if the new slots need one. */
	if ((old_count + want * FLYFS_INODES_PER_BLOCK - 1) /
	    FLYFS_INODES_PER_IBITMAP >= fs_i_size(fs->s_ibitmap) /
	    FLYFS_BLOCK_SIZE) {
		struct buf *bp;

		error = fs_sysfile_extend(tx, fs->s_ibitmap, 1, &pblk);
		if (error)
			return error;
		error = fs_meta_new(tx, pblk, FLYFS_MB_IBITMAP,
		    FLYFS_INO_IBITMAP, &bp);
		if (error)
			return error;
		fs_meta_release(bp);
	}
	error = fs_sysfile_extend(tx, ifp, (uint32_t)want, &pblk);
	if (error)
		return error;
	got = (uint32_t)(fs_i_size(ifp) / FLYFS_BLOCK_SIZE - nblocks);
	/*
	 * Zero the new blocks on the device now, before the transaction
	 * that makes them part of the inode file can commit (ordered, like
	 * file data), and cache them clean.
	 */
	zero = blockdev_alloc_buf(fs->s_bdev, 64 * FLYFS_BLOCK_SIZE);
	if (zero == NULL)
		return ENOMEM;
	memset(zero, 0, 64 * FLYFS_BLOCK_SIZE);
	for (uint32_t done = 0; done < got && error == 0;) {
		uint32_t k = got - done < 64 ? got - done : 64;

		error = blockdev_pwrite(fs->s_bdev, zero,
		    (size_t)k * FLYFS_BLOCK_SIZE, fs_blk_off(pblk + done));
		done += k;
	}
	blockdev_free_buf(zero);
	if (error)
		return error;
	fs->s_inode_count += (uint64_t)got * FLYFS_INODES_PER_BLOCK;
	fs->s_free_inodes += (uint64_t)got * FLYFS_INODES_PER_BLOCK;
	fs->s_ialloc_hint = old_count;
	FS_COUNT(fs, ifile_grows, 1);
	return 0;
}

int
fs_ialloc(struct fs_trans *tx, uint64_t *inop)
{
	struct flyfs *fs = tx->t_fs;
	int error = 0;

	*inop = 0;
	pthread_mutex_lock(&fs->s_ialloc_lock);
	if (fs->s_free_inodes == 0 && (error = ifile_grow(tx)) != 0)
		goto out;
	if (fs->s_ialloc_hint < fs->s_sb.first_ino ||
	    fs->s_ialloc_hint >= fs->s_inode_count)
		fs->s_ialloc_hint = fs->s_sb.first_ino;
	for (int pass = 0; pass < 2 && *inop == 0; pass++) {
		uint64_t start = pass == 0 ? fs->s_ialloc_hint :
		    fs->s_sb.first_ino;
		uint64_t end = pass == 0 ? fs->s_inode_count :
		    fs->s_ialloc_hint;

		for (uint64_t ino = start; ino < end && *inop == 0;) {
			uint64_t l = ino / FLYFS_INODES_PER_IBITMAP;
			uint64_t base = l * FLYFS_INODES_PER_IBITMAP;
			uint64_t lim = end - base < FLYFS_INODES_PER_IBITMAP ?
			    end - base : FLYFS_INODES_PER_IBITMAP;
			struct buf *bp;
			uint8_t *bits;

			if ((error = ibitmap_read(fs, l, &bp)) != 0)
				goto out;
			bits = ((struct flyfs_bitmap_block *)(void *)
			    bp->b_data)->bm_bits;
			for (uint64_t i = ino - base; i < lim; i++) {
				if ((i & 7) == 0 && i + 8 <= lim &&
				    bits[i >> 3] == 0xff) {
					i += 7;
					continue;
				}
				if (!flyfs_bit_test(bits, i)) {
					flyfs_bit_set(bits, i);
					fs_trans_dirty(tx, bp);
					*inop = base + i;
					break;
				}
			}
			fs_meta_release(bp);
			ino = base + lim;
		}
	}
	if (*inop == 0) {
		error = fs_corrupt(fs, 0, FLYFS_INO_IBITMAP, "inode bitmap "
		    "has no free bit but %" PRIu64 " inodes are counted free",
		    fs->s_free_inodes);
		goto out;
	}
	fs->s_free_inodes--;
	fs->s_ialloc_hint = *inop + 1;
	FS_COUNT(fs, inodes_allocated, 1);
out:
	pthread_mutex_unlock(&fs->s_ialloc_lock);
	return error;
}

int
fs_ifree(struct fs_trans *tx, uint64_t ino)
{
	struct flyfs *fs = tx->t_fs;
	uint64_t l = ino / FLYFS_INODES_PER_IBITMAP;
	uint64_t bit = ino % FLYFS_INODES_PER_IBITMAP;
	struct buf *bp;
	uint8_t *bits;
	int error;

	if (ino < fs->s_sb.first_ino || ino >= fs->s_inode_count)
		return fs_corrupt(fs, 0, ino, "freeing a reserved or "
		    "out-of-range inode number");
	pthread_mutex_lock(&fs->s_ialloc_lock);
	if ((error = ibitmap_read(fs, l, &bp)) != 0)
		goto out;
	bits = ((struct flyfs_bitmap_block *)(void *)bp->b_data)->bm_bits;
	if (!flyfs_bit_test(bits, bit)) {
		fs_meta_release(bp);
		error = fs_corrupt(fs, 0, ino, "freeing an inode that the "
		    "inode bitmap says is free");
		goto out;
	}
	bits[bit >> 3] &= (uint8_t)~(1u << (bit & 7));
	fs_trans_dirty(tx, bp);
	fs_meta_release(bp);
	fs->s_free_inodes++;
	FS_COUNT(fs, inodes_freed, 1);
out:
	pthread_mutex_unlock(&fs->s_ialloc_lock);
	return error;
}
