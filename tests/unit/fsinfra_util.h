/*
 * fsinfra_util.h - shared helpers of check_fsinfra.c and check_crash.c:
 * a fresh RAM image, and an image-level consistency check of what the
 * infrastructure owns (superblock counts, group descriptors against
 * bitmaps, inode bitmap against inode slots and their checksums, the
 * orphan file), done through the block device alone, on an unmounted
 * image.
 */
#ifndef FLYFS_TESTS_FSINFRA_UTIL_H
#define FLYFS_TESTS_FSINFRA_UTIL_H

#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/blockdev.h"
#include "fs/flyfs.h"
#include "fs/format.h"
#include "fs/mkfs_core.h"

#define TEST_IMAGE_BYTES	(64ULL << 20)

static inline struct blockdev *
util_new_image(uint64_t bytes)
{
	struct flyfs_mkfs_params p;
	struct blockdev *bd;
	char err[256];
	int error;

	ck_assert_int_eq(blockdev_open_ram(bytes, 4096, 0, 0, &bd), 0);
	flyfs_mkfs_params_init(&p);
	p.journal_bytes = 4ULL << 20;
	error = flyfs_mkfs(bd, &p, NULL, err, sizeof(err));
	ck_assert_msg(error == 0, "mkfs: %s", err);
	return bd;
}

static inline struct flyfs *
util_mount(struct blockdev *bd, int commit_interval)
{
	struct flyfs_mount_opts o;
	struct flyfs *fs;
	char err[256] = "";
	int error;

	memset(&o, 0, sizeof(o));
	o.compress = -1;
	o.cache_size = 32L << 20;
	o.commit_interval = commit_interval;
	error = flyfs_mount_bdev(bd, &o, &fs, err, sizeof(err));
	ck_assert_msg(error == 0, "mount: %s (%d)", err, error);
	return fs;
}

static inline void *
util_block(struct blockdev *bd, uint64_t blk)
{
	void *b = blockdev_alloc_buf(bd, 4096);

	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(blockdev_pread(bd, b, 4096, (off_t)blk * 4096), 0);
	return b;
}

/*
 * Physical block of logical LBLK in the extent node H (in the inode's
 * root area or after an FEXT block header), walking down through index
 * nodes read from BD.  0 when LBLK is not mapped.
 */
static inline uint64_t
util_node_bmap(struct blockdev *bd, const struct flyfs_extent_node *h,
    uint64_t lblk, int depth)
{
	unsigned n = le16_get(h->en_count);

	if (depth > FLYFS_EXT_MAX_DEPTH + 1)
		return 0;
	if (le16_get(h->en_level) == 0) {
		const struct flyfs_extent *e = (const void *)(h + 1);

		for (unsigned i = 0; i < n; i++) {
			uint64_t l = le64_get(e[i].e_lblk);
			uint32_t len = le32_get(e[i].e_llen);

			if (lblk >= l && lblk < l + len)
				return le64_get(e[i].e_pblk) + lblk - l;
		}
		return 0;
	} else {
		const struct flyfs_extent_idx *x = (const void *)(h + 1);
		uint64_t r = 0;
		unsigned i = 0;

		while (i + 1 < n && le64_get(x[i + 1].ei_lblk) <= lblk)
			i++;
		if (n > 0) {
			char *b = util_block(bd, le64_get(x[i].ei_child));

			r = util_node_bmap(bd, (const void *)(b +
			    sizeof(struct flyfs_mblock_hdr)), lblk, depth + 1);
			blockdev_free_buf(b);
		}
		return r;
	}
}

/* Physical block of logical LBLK of system inode D (an extent tree). */
static inline uint64_t
util_sys_bmap(struct blockdev *bd, const struct flyfs_inode *d, uint64_t lblk)
{
	return util_node_bmap(bd, &d->i_ext_hdr, lblk, 0);
}

/*
 * Check an unmounted image.  Returns the number of problems (printed).
 * With CLEAN, the superblock must say CLEAN and its counts must be exact.
 */
static inline int
util_check_image(struct blockdev *bd, bool clean, uint64_t *used_inodes)
{
	struct flyfs_sb_info sbi;
	char err[256];
	int bad = 0;
	uint64_t free_sum = 0, ifree = 0, iused = 0, orphans = 0;
	struct flyfs_inode ifile, ibm, orph;
	void *b;

	if (flyfs_sb_read(bd, 0, &sbi, err, sizeof(err)) != 0) {
		printf("superblock: %s\n", err);
		return 1;
	}
	if (clean && !(sbi.state & FLYFS_STATE_CLEAN)) {
		printf("superblock not CLEAN\n");
		bad++;
	}
	/* Groups: descriptors against bitmaps. */
	for (uint32_t g = 0; g < sbi.group_count; g++) {
		struct flyfs_gdt_block *gb = util_block(bd, sbi.gdt_start +
		    g / FLYFS_GD_PER_BLOCK);
		struct flyfs_group_desc *gd = &gb->gb_desc[g %
		    FLYFS_GD_PER_BLOCK];
		uint32_t gfree = le32_get(gd->gd_free_blocks), zeros = 0;
		uint32_t size = flyfs_group_size(sbi.block_count, g);

		if (flyfs_mblock_check(gb, FLYFS_MB_GDT, sbi.gdt_start +
		    g / FLYFS_GD_PER_BLOCK, sbi.csum_seed, err,
		    sizeof(err))) {
			printf("gdt: %s\n", err);
			bad++;
		}
		if (le32_get(gd->gd_flags) & FLYFS_GD_BITMAP_UNINIT) {
			zeros = size;
		} else {
			struct flyfs_bitmap_block *bm = util_block(bd,
			    sbi.bitmap_start + g);

			if (flyfs_mblock_check(bm, FLYFS_MB_BBITMAP,
			    sbi.bitmap_start + g, sbi.csum_seed, err,
			    sizeof(err))) {
				printf("bitmap: %s\n", err);
				bad++;
			}
			for (uint32_t i = 0; i < size; i++)
				zeros += !flyfs_bit_test(bm->bm_bits, i);
			blockdev_free_buf(bm);
		}
		if (zeros != gfree) {
			printf("group %u: descriptor says %u free, bitmap %u\n",
			    g, gfree, zeros);
			bad++;
		}
		free_sum += gfree;
		blockdev_free_buf(gb);
	}
	if (clean && free_sum != sbi.free_blocks) {
		printf("superblock free blocks %" PRIu64 ", groups %" PRIu64
		    "\n", sbi.free_blocks, free_sum);
		bad++;
	}
	/* Inodes: slots against the inode bitmap. */
	b = util_block(bd, sbi.ifile_start);
	memcpy(&ifile, (struct flyfs_inode *)b + FLYFS_INO_IFILE, 256);
	memcpy(&ibm, (struct flyfs_inode *)b + FLYFS_INO_IBITMAP, 256);
	memcpy(&orph, (struct flyfs_inode *)b + FLYFS_INO_ORPHAN, 256);
	blockdev_free_buf(b);
	{
		uint64_t count = le64_get(ifile.i_size) / 256;
		struct flyfs_bitmap_block *bm = NULL;
		struct flyfs_inode *blk = NULL;
		uint64_t bml = UINT64_MAX, il = UINT64_MAX;

		if (clean && count != sbi.inode_count) {
			printf("inode count %" PRIu64 " vs sb %" PRIu64 "\n",
			    count, sbi.inode_count);
			bad++;
		}
		for (uint64_t ino = 0; ino < count; ino++) {
			bool bit, used;

			if (ino / FLYFS_INODES_PER_IBITMAP != bml) {
				if (bm)
					blockdev_free_buf(bm);
				bml = ino / FLYFS_INODES_PER_IBITMAP;
				bm = util_block(bd, util_sys_bmap(bd, &ibm, bml));
			}
			if (ino / 16 != il) {
				if (blk)
					blockdev_free_buf(blk);
				il = ino / 16;
				blk = util_block(bd,
				    util_sys_bmap(bd, &ifile, il));
			}
			bit = flyfs_bit_test(bm->bm_bits,
			    ino % FLYFS_INODES_PER_IBITMAP);
			used = !flyfs_inode_is_free(&blk[ino % 16]);
			if (used && flyfs_inode_check(&blk[ino % 16], ino,
			    sbi.csum_seed, err, sizeof(err))) {
				printf("inode %" PRIu64 ": %s\n", ino, err);
				bad++;
			}
			if (ino >= FLYFS_FIRST_INO && bit != used) {
				printf("inode %" PRIu64 ": bitmap %d slot %d\n",
				    ino, bit, used);
				bad++;
			}
			if (ino >= FLYFS_FIRST_INO && used)
				iused++;
			if (!bit)
				ifree++;
			if (used && le32_get(blk[ino % 16].i_nlink) == 0 &&
			    !(le32_get(blk[ino % 16].i_flags) &
			    FLYFS_IFL_ORPHAN)) {
				printf("inode %" PRIu64 ": nlink 0 but not an "
				    "orphan\n", ino);
				bad++;
			}
		}
		if (bm)
			blockdev_free_buf(bm);
		if (blk)
			blockdev_free_buf(blk);
		if (clean && ifree != sbi.free_inodes) {
			printf("free inodes %" PRIu64 " vs sb %" PRIu64 "\n",
			    ifree, sbi.free_inodes);
			bad++;
		}
	}
	/* Orphans: after a clean unmount there are none. */
	for (uint64_t l = 0; l < le64_get(orph.i_size) / 4096; l++) {
		uint64_t pb = util_sys_bmap(bd, &orph, l);
		struct flyfs_orphan_block *ob = util_block(bd, pb);

		if (flyfs_mblock_check(ob, FLYFS_MB_ORPHAN, pb, sbi.csum_seed,
		    err, sizeof(err))) {
			printf("orphan block: %s\n", err);
			bad++;
		}
		orphans += le32_get(ob->ob_count);
		blockdev_free_buf(ob);
	}
	if (clean && orphans != 0) {
		printf("%" PRIu64 " orphans after a clean unmount\n", orphans);
		bad++;
	}
	if (used_inodes)
		*used_inodes = iused;
	return bad;
}

#endif /* FLYFS_TESTS_FSINFRA_UTIL_H */
