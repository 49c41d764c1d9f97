/*
 * mkfs_core.c - lay out and write a new flyfs.
 *
 * This module owns the initial image: it plans the layout (flyfs_mkfs_plan)
 * and writes it (flyfs_mkfs).  Everything mkfs writes is contiguous from
 * block 0, plus the backup superblock in the last block:
 *
 *   0                 primary superblock
 *   1 ..              group descriptor table       (gdt_blocks)
 *   ..                block bitmaps, one per group (group_count)
 *   ifile_start ..    inode file, inodes 0..255    (16 blocks)
 *   +16               inode bitmap file, block 0
 *   +17               orphan file, block 0
 *   +18               root directory leaf
 *   +19               lost+found leaf
 *   journal_start ..  journal                      (journal_blocks)
 *   ..                free
 *   block_count - 1   backup superblock
 *
 * so "the blocks mkfs marks used" is [0, meta_end) plus the last block, and
 * a checker can verify the bitmaps against that without trusting them.
 */
#include "fs/mkfs_core.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <dirent.h>
#include <time.h>

#include "blockdev/blockdev.h"

#define MKFS_MIN_FREE_BLOCKS	256	/* room for the first files */
#define MKFS_TAIL_BLOCKS	(FLYFS_MKFS_IFILE_BLOCKS + 4)
#define MKFS_INITIAL_INODES	(FLYFS_MKFS_IFILE_BLOCKS * FLYFS_INODES_PER_BLOCK)
#define MKFS_LOSTFOUND_INO	FLYFS_FIRST_INO

void
flyfs_mkfs_params_init(struct flyfs_mkfs_params *p)
{
	memset(p, 0, sizeof(*p));
	p->comp = FLYFS_COMP_NONE;
}

/*
 * 1/64 of the image, in whole MiB, between 4 MiB and 1 GiB: a journal must
 * hold the metadata of several seconds of busy commits (the periodic commit
 * is 5 s) without forcing checkpoints, and past 1 GiB a bigger journal only
 * lengthens replay.  mke2fs scales its default the same way.
 */
uint64_t
flyfs_mkfs_default_journal(uint64_t blocks)
{
	uint64_t j = blocks / 64;

	j &= ~(uint64_t)255;			/* whole MiB */
	if (j < FLYFS_JOURNAL_MIN_BLOCKS)
		j = FLYFS_JOURNAL_MIN_BLOCKS;
	if (j > 262144)				/* 1 GiB */
		j = 262144;
	return j;
}

uint64_t
flyfs_mkfs_meta_end(const struct flyfs_sb_info *sbi)
{
	return sbi->journal_start + sbi->journal_blocks;
}

static int
fill_random(void *buf, size_t len, char *err, size_t errlen)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return flyfs_error(err, errlen, errno,
			    "getrandom failed: %s", strerror(errno));
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
check_params(const struct flyfs_mkfs_params *p, char *err, size_t errlen)
{
	uint32_t dbs = p->data_block_size;

	if (dbs != 0 && (dbs < FLYFS_DATA_BLOCK_MIN ||
	    dbs > FLYFS_DATA_BLOCK_MAX || (dbs & (dbs - 1)) != 0))
		return flyfs_error(err, errlen, EINVAL,
		    "data block size %" PRIu32 " is not a power of two "
		    "from %u to %u", dbs, FLYFS_DATA_BLOCK_MIN,
		    FLYFS_DATA_BLOCK_MAX);
	if (memchr(p->label, 0, FLYFS_LABEL_SIZE) == NULL ||
	    strlen(p->label) > FLYFS_LABEL_MAX)
		return flyfs_error(err, errlen, EINVAL,
		    "label is longer than %d bytes", FLYFS_LABEL_MAX);
	if (p->comp == FLYFS_COMP_NONE && p->comp_level != 0)
		return flyfs_error(err, errlen, EINVAL,
		    "a compression level needs a compression algorithm");
	if (p->comp == FLYFS_COMP_ZSTD &&
	    (p->comp_level < FLYFS_ZSTD_LEVEL_MIN ||
	    p->comp_level > FLYFS_ZSTD_LEVEL_MAX))
		return flyfs_error(err, errlen, EINVAL,
		    "zstd level %u is out of range %d..%d", p->comp_level,
		    FLYFS_ZSTD_LEVEL_MIN, FLYFS_ZSTD_LEVEL_MAX);
	if (p->comp > FLYFS_COMP_ZSTD)
		return flyfs_error(err, errlen, EINVAL,
		    "unknown compression algorithm %u", p->comp);
	if (p->journal_bytes != 0 &&
	    (p->journal_bytes % FLYFS_BLOCK_SIZE != 0 ||
	    p->journal_bytes / FLYFS_BLOCK_SIZE < FLYFS_JOURNAL_MIN_BLOCKS ||
	    p->journal_bytes / FLYFS_BLOCK_SIZE > FLYFS_JOURNAL_MAX_BLOCKS))
		return flyfs_error(err, errlen, EINVAL,
		    "journal size %" PRIu64 " bytes is not a multiple of 4 KiB "
		    "from 4 MiB to 4 GiB", p->journal_bytes);
	return 0;
}

int
flyfs_mkfs_plan(uint64_t dev_bytes, const struct flyfs_mkfs_params *p,
    struct flyfs_sb_info *sbi, char *err, size_t errlen)
{
	uint64_t bytes, nb, front, used;
	struct timespec now;
	int error;

	if ((error = check_params(p, err, errlen)) != 0)
		return error;
	bytes = p->size_bytes != 0 ? p->size_bytes : dev_bytes;
	if (bytes > dev_bytes)
		return flyfs_error(err, errlen, ENOSPC,
		    "requested size %" PRIu64 " bytes exceeds the device "
		    "(%" PRIu64 " bytes)", bytes, dev_bytes);
	nb = bytes / FLYFS_BLOCK_SIZE;
	if (nb < FLYFS_MIN_BLOCKS)
		return flyfs_error(err, errlen, ENOSPC,
		    "%" PRIu64 " bytes is too small for flyfs: the minimum "
		    "is %llu MiB", bytes, FLYFS_MIN_BLOCKS / 256);
	if (nb > FLYFS_MAX_BLOCKS)
		return flyfs_error(err, errlen, EFBIG,
		    "%" PRIu64 " bytes is too large for flyfs: the maximum "
		    "is %llu TiB", bytes, FLYFS_MAX_BLOCKS >> 28);

	memset(sbi, 0, sizeof(*sbi));
	sbi->version_major = FLYFS_VERSION_MAJOR;
	sbi->version_minor = FLYFS_VERSION_MINOR;
	sbi->state = FLYFS_STATE_CLEAN;
	sbi->block_size = FLYFS_BLOCK_SIZE;
	sbi->data_block_size = p->data_block_size != 0 ?
	    p->data_block_size : FLYFS_DATA_BLOCK_DEFAULT;
	sbi->block_count = nb;
	sbi->group_blocks = FLYFS_GROUP_BLOCKS;
	sbi->group_count = flyfs_group_count(nb);
	sbi->gdt_start = 1;
	sbi->gdt_blocks = flyfs_gdt_blocks(sbi->group_count);
	sbi->inode_size = FLYFS_INODE_SIZE;
	sbi->bitmap_start = sbi->gdt_start + sbi->gdt_blocks;
	sbi->ifile_start = sbi->bitmap_start + sbi->group_count;
	sbi->journal_start = sbi->ifile_start + MKFS_TAIL_BLOCKS;
	sbi->journal_blocks = p->journal_bytes != 0 ?
	    p->journal_bytes / FLYFS_BLOCK_SIZE : flyfs_mkfs_default_journal(nb);
	sbi->backup_block = nb - 1;
	sbi->root_ino = FLYFS_INO_ROOT;
	sbi->first_ino = FLYFS_FIRST_INO;
	sbi->inode_count = MKFS_INITIAL_INODES;
	sbi->free_inodes = MKFS_INITIAL_INODES - (FLYFS_FIRST_INO + 1);
	sbi->default_comp = p->comp;
	sbi->default_comp_level = p->comp_level;
	if (p->comp == FLYFS_COMP_ZSTD)
		sbi->feature_incompat |= FLYFS_FEATURE_INCOMPAT_ZSTD;
	memcpy(sbi->label, p->label, FLYFS_LABEL_SIZE);
	sbi->label[FLYFS_LABEL_SIZE - 1] = '\0';

	front = flyfs_mkfs_meta_end(sbi);
	if (front + 1 + MKFS_MIN_FREE_BLOCKS > nb)
		return flyfs_error(err, errlen, ENOSPC,
		    "a %" PRIu64 " MiB image cannot hold its metadata and a %"
		    PRIu64 " MiB journal; use a smaller journal (-J size=) "
		    "or a bigger image", bytes >> 20,
		    sbi->journal_blocks >> 8);
	used = front + 1;
	sbi->free_blocks = nb - used;

	if (p->have_uuid) {
		memcpy(sbi->uuid, p->uuid, FLYFS_UUID_SIZE);
	} else {
		if ((error = fill_random(sbi->uuid, FLYFS_UUID_SIZE, err,
		    errlen)) != 0)
			return error;
		sbi->uuid[6] = (uint8_t)((sbi->uuid[6] & 0x0f) | 0x40);
		sbi->uuid[8] = (uint8_t)((sbi->uuid[8] & 0x3f) | 0x80);
	}
	if (p->have_hash_key)
		memcpy(sbi->hash_key, p->hash_key, sizeof(sbi->hash_key));
	else if ((error = fill_random(sbi->hash_key, sizeof(sbi->hash_key),
	    err, errlen)) != 0)
		return error;
	sbi->csum_seed = flyfs_crc32c(0, sbi->uuid, FLYFS_UUID_SIZE);

	if (p->have_time) {
		sbi->mkfs_time = p->time_sec;
	} else {
		clock_gettime(CLOCK_REALTIME, &now);
		sbi->mkfs_time = now.tv_sec;
	}
	sbi->write_time = sbi->mkfs_time;
	return flyfs_sb_check_geometry(sbi, err, errlen);
}

/* ---- Building blocks ---------------------------------------------------- */

struct mkfs_ctx {
	struct blockdev *bd;
	const struct flyfs_mkfs_params *p;
	struct flyfs_sb_info *sbi;
	int64_t now_sec;
	uint32_t now_nsec;
	char *err;
	size_t errlen;
};

static int
write_blocks(struct mkfs_ctx *c, const void *buf, uint64_t blk, uint64_t n)
{
	int error;

	error = blockdev_pwrite(c->bd, buf, (size_t)(n * FLYFS_BLOCK_SIZE),
	    (off_t)(blk * FLYFS_BLOCK_SIZE));
	if (error != 0)
		return flyfs_error(c->err, c->errlen, error,
		    "%s: cannot write blocks %" PRIu64 "..%" PRIu64 ": %s",
		    blockdev_path(c->bd), blk, blk + n - 1, strerror(error));
	return 0;
}

static int
flush_dev(struct mkfs_ctx *c)
{
	int error = blockdev_flush(c->bd);

	if (error != 0)
		return flyfs_error(c->err, c->errlen, error,
		    "%s: cannot flush: %s", blockdev_path(c->bd),
		    strerror(error));
	return 0;
}

static bool
block_used_by_mkfs(const struct flyfs_sb_info *sbi, uint64_t blk)
{
	return blk < flyfs_mkfs_meta_end(sbi) || blk == sbi->backup_block;
}

/* Groups whose bitmap mkfs writes: those holding any block it uses. */
static bool
group_initialized(const struct flyfs_sb_info *sbi, uint32_t g)
{
	return flyfs_group_first(g) < flyfs_mkfs_meta_end(sbi) ||
	    g == sbi->group_count - 1;
}

static uint32_t
group_used(const struct flyfs_sb_info *sbi, uint32_t g)
{
	uint64_t first = flyfs_group_first(g);
	uint64_t last = first + flyfs_group_size(sbi->block_count, g);
	uint64_t end = flyfs_mkfs_meta_end(sbi), n = 0;

	if (first < end)
		n = (end < last ? end : last) - first;
	if (sbi->backup_block >= first && sbi->backup_block < last &&
	    sbi->backup_block >= end)
		n++;
	return (uint32_t)n;
}

static int
write_gdt(struct mkfs_ctx *c, void *buf)
{
	const struct flyfs_sb_info *sbi = c->sbi;
	int error;

	for (uint32_t b = 0; b < sbi->gdt_blocks; b++) {
		struct flyfs_gdt_block *gb = buf;

		memset(gb, 0, FLYFS_BLOCK_SIZE);
		for (uint32_t i = 0; i < FLYFS_GD_PER_BLOCK; i++) {
			uint64_t g = (uint64_t)b * FLYFS_GD_PER_BLOCK + i;
			uint32_t size, used;

			if (g >= sbi->group_count)
				break;
			size = flyfs_group_size(sbi->block_count, (uint32_t)g);
			used = group_used(sbi, (uint32_t)g);
			le32_set(&gb->gb_desc[i].gd_free_blocks, size - used);
			le32_set(&gb->gb_desc[i].gd_flags,
			    group_initialized(sbi, (uint32_t)g) ? 0 :
			    FLYFS_GD_BITMAP_UNINIT);
		}
		flyfs_mblock_seal(gb, FLYFS_MB_GDT, sbi->gdt_start + b, 0, 0,
		    sbi->csum_seed);
		if ((error = write_blocks(c, gb, sbi->gdt_start + b, 1)) != 0)
			return error;
	}
	return 0;
}

static int
write_bitmaps(struct mkfs_ctx *c, void *buf)
{
	const struct flyfs_sb_info *sbi = c->sbi;
	int error;

	for (uint32_t g = 0; g < sbi->group_count; g++) {
		struct flyfs_bitmap_block *bm = buf;
		uint64_t first = flyfs_group_first(g);
		uint32_t size = flyfs_group_size(sbi->block_count, g);

		if (!group_initialized(sbi, g))
			continue;
		memset(bm, 0, FLYFS_BLOCK_SIZE);
		for (uint32_t b = 0; b < FLYFS_GROUP_BLOCKS; b++)
			if (b >= size || block_used_by_mkfs(sbi, first + b))
				flyfs_bit_set(bm->bm_bits, b);
		flyfs_mblock_seal(bm, FLYFS_MB_BBITMAP, sbi->bitmap_start + g,
		    0, 0, sbi->csum_seed);
		if ((error = write_blocks(c, bm, sbi->bitmap_start + g, 1)) != 0)
			return error;
	}
	return 0;
}

static void
inode_init(struct mkfs_ctx *c, struct flyfs_inode *ino, uint64_t inum,
    uint32_t mode, uint32_t nlink, uint32_t flags, uint32_t uid, uint32_t gid)
{
	memset(ino, 0, sizeof(*ino));
	le32_set(&ino->i_mode, mode);
	le64_set(&ino->i_ino, inum);
	le32_set(&ino->i_uid, uid);
	le32_set(&ino->i_gid, gid);
	le32_set(&ino->i_nlink, nlink);
	le32_set(&ino->i_flags, flags);
	le64_set(&ino->i_atime, (uint64_t)c->now_sec);
	le64_set(&ino->i_mtime, (uint64_t)c->now_sec);
	le64_set(&ino->i_ctime, (uint64_t)c->now_sec);
	le64_set(&ino->i_btime, (uint64_t)c->now_sec);
	le32_set(&ino->i_atime_ns, c->now_nsec);
	le32_set(&ino->i_mtime_ns, c->now_nsec);
	le32_set(&ino->i_ctime_ns, c->now_nsec);
	le32_set(&ino->i_btime_ns, c->now_nsec);
	le32_set(&ino->i_generation, 1);
}

/* A system file mapped by one raw extent of LEN blocks at PBLK. */
static void
inode_system_file(struct mkfs_ctx *c, struct flyfs_inode *ino, uint64_t inum,
    uint64_t pblk, uint32_t len)
{
	inode_init(c, ino, inum, S_IFREG | 0600, 1, FLYFS_IFL_SYSTEM |
	    FLYFS_IFL_NOCOMP, 0, 0);
	le64_set(&ino->i_size, (uint64_t)len * FLYFS_BLOCK_SIZE);
	le64_set(&ino->i_blocks, len);
	le16_set(&ino->i_ext_hdr.en_magic, FLYFS_EXTENT_NODE_MAGIC);
	le16_set(&ino->i_ext_hdr.en_count, 1);
	le16_set(&ino->i_ext_hdr.en_max, FLYFS_INODE_EXT_ROOT_MAX);
	le16_set(&ino->i_ext_hdr.en_level, 0);
	le64_set(&ino->i_ext[0].e_lblk, 0);
	le64_set(&ino->i_ext[0].e_pblk, pblk);
	le32_set(&ino->i_ext[0].e_llen, len);
	le32_set(&ino->i_ext[0].e_plen, len);
}

/* A directory whose tree is the single leaf at LEAF. */
static void
inode_dir(struct mkfs_ctx *c, struct flyfs_inode *ino, uint64_t inum,
    uint32_t perm, uint32_t nlink, uint64_t parent, uint64_t leaf,
    uint64_t entries)
{
	inode_init(c, ino, inum, S_IFDIR | perm, nlink, 0, c->p->root_uid,
	    c->p->root_gid);
	le64_set(&ino->i_size, FLYFS_BLOCK_SIZE);
	le64_set(&ino->i_blocks, 1);
	ino->i_comp = c->sbi->default_comp;
	ino->i_comp_level = c->sbi->default_comp_level;
	le64_set(&ino->i_dir.dr_root, leaf);
	le64_set(&ino->i_dir.dr_parent, parent);
	le64_set(&ino->i_dir.dr_entries, entries);
	le16_set(&ino->i_dir.dr_levels, 1);
}

static int
write_inode_file(struct mkfs_ctx *c)
{
	const struct flyfs_sb_info *sbi = c->sbi;
	size_t len = FLYFS_MKFS_IFILE_BLOCKS * FLYFS_BLOCK_SIZE;
	struct flyfs_inode *it;
	int error;

	it = blockdev_alloc_buf(c->bd, len);
	if (it == NULL)
		return flyfs_error(c->err, c->errlen, ENOMEM, "out of memory");
	memset(it, 0, len);
	inode_system_file(c, &it[FLYFS_INO_IFILE], FLYFS_INO_IFILE,
	    sbi->ifile_start, FLYFS_MKFS_IFILE_BLOCKS);
	inode_system_file(c, &it[FLYFS_INO_IBITMAP], FLYFS_INO_IBITMAP,
	    flyfs_mkfs_ibitmap_block(sbi), 1);
	inode_system_file(c, &it[FLYFS_INO_ORPHAN], FLYFS_INO_ORPHAN,
	    flyfs_mkfs_orphan_block(sbi), 1);
	/* "/": ".", its own "..", and lost+found's "..". */
	inode_dir(c, &it[FLYFS_INO_ROOT], FLYFS_INO_ROOT, 0755, 3,
	    FLYFS_INO_ROOT, flyfs_mkfs_rootdir_block(sbi), 1);
	inode_dir(c, &it[MKFS_LOSTFOUND_INO], MKFS_LOSTFOUND_INO, 0700, 2,
	    FLYFS_INO_ROOT, flyfs_mkfs_lostfound_block(sbi), 0);
	for (uint64_t i = 0; i < MKFS_INITIAL_INODES; i++)
		if (!flyfs_inode_is_free(&it[i]))
			flyfs_inode_seal(&it[i], sbi->csum_seed);
	error = write_blocks(c, it, sbi->ifile_start, FLYFS_MKFS_IFILE_BLOCKS);
	blockdev_free_buf(it);
	return error;
}

static int
write_small_blocks(struct mkfs_ctx *c, void *buf)
{
	const struct flyfs_sb_info *sbi = c->sbi;
	struct flyfs_bitmap_block *ib = buf;
	struct flyfs_journal_super *js = buf;
	struct flyfs_dir_node *dn;
	struct flyfs_dirent *de;
	static const char lf[] = "lost+found";
	uint64_t blk;
	int error;

	/* Inode bitmap: 0..15 (reserved, used or not) and lost+found. */
	memset(buf, 0, FLYFS_BLOCK_SIZE);
	for (uint64_t i = 0; i <= MKFS_LOSTFOUND_INO; i++)
		flyfs_bit_set(ib->bm_bits, i);
	blk = flyfs_mkfs_ibitmap_block(sbi);
	flyfs_mblock_seal(buf, FLYFS_MB_IBITMAP, blk, 0, FLYFS_INO_IBITMAP,
	    sbi->csum_seed);
	if ((error = write_blocks(c, buf, blk, 1)) != 0)
		return error;

	/* Orphan file: one block of free slots. */
	memset(buf, 0, FLYFS_BLOCK_SIZE);
	blk = flyfs_mkfs_orphan_block(sbi);
	flyfs_mblock_seal(buf, FLYFS_MB_ORPHAN, blk, 0, FLYFS_INO_ORPHAN,
	    sbi->csum_seed);
	if ((error = write_blocks(c, buf, blk, 1)) != 0)
		return error;

	/* Root directory leaf with its one entry. */
	memset(buf, 0, FLYFS_BLOCK_SIZE);
	dn = (struct flyfs_dir_node *)((uint8_t *)buf +
	    sizeof(struct flyfs_mblock_hdr));
	de = (struct flyfs_dirent *)(dn + 1);
	le64_set(&de->de_key, FLYFS_DIR_KEY(flyfs_dir_hash(sbi->hash_key, lf,
	    sizeof(lf) - 1), 0));
	le64_set(&de->de_ino, MKFS_LOSTFOUND_INO);
	de->de_name_len = sizeof(lf) - 1;
	de->de_type = DT_DIR;
	memcpy(de->de_name, lf, sizeof(lf) - 1);
	le16_set(&dn->dn_count, 1);
	le16_set(&dn->dn_used, (uint16_t)FLYFS_DIRENT_SIZE(sizeof(lf) - 1));
	blk = flyfs_mkfs_rootdir_block(sbi);
	flyfs_mblock_seal(buf, FLYFS_MB_DIR, blk, 0, FLYFS_INO_ROOT,
	    sbi->csum_seed);
	if ((error = write_blocks(c, buf, blk, 1)) != 0)
		return error;

	/*
	 * lost+found: an empty leaf, preallocated so that fsck can link
	 * files into it without allocating (as e2fsck expects).
	 */
	memset(buf, 0, FLYFS_BLOCK_SIZE);
	blk = flyfs_mkfs_lostfound_block(sbi);
	flyfs_mblock_seal(buf, FLYFS_MB_DIR, blk, 0, MKFS_LOSTFOUND_INO,
	    sbi->csum_seed);
	if ((error = write_blocks(c, buf, blk, 1)) != 0)
		return error;

	/* An empty journal: nothing to replay, next transaction is 1. */
	memset(buf, 0, FLYFS_BLOCK_SIZE);
	le32_set(&js->js_block_size, FLYFS_BLOCK_SIZE);
	le64_set(&js->js_first, 1);
	le64_set(&js->js_blocks, sbi->journal_blocks);
	le64_set(&js->js_sequence, 1);
	le64_set(&js->js_start, 0);
	memcpy(js->js_uuid, sbi->uuid, FLYFS_UUID_SIZE);
	flyfs_mblock_seal(buf, FLYFS_MB_JSUPER, sbi->journal_start, 0, 0,
	    sbi->csum_seed);
	return write_blocks(c, buf, sbi->journal_start, 1);
}

int
flyfs_mkfs(struct blockdev *bd, const struct flyfs_mkfs_params *p,
    struct flyfs_sb_info *out, char *err, size_t errlen)
{
	struct flyfs_sb_info sbi;
	struct mkfs_ctx c = { .bd = bd, .p = p, .sbi = &sbi, .err = err,
	    .errlen = errlen };
	struct timespec now;
	void *buf;
	int error;

	if (blockdev_align(bd) > FLYFS_BLOCK_SIZE)
		return flyfs_error(err, errlen, EINVAL,
		    "%s: device alignment %u exceeds the 4 KiB block size",
		    blockdev_path(bd), blockdev_align(bd));
	if ((error = flyfs_mkfs_plan(blockdev_size(bd), p, &sbi, err,
	    errlen)) != 0)
		return error;
	if (p->have_time) {
		c.now_sec = p->time_sec;
		c.now_nsec = p->time_nsec;
	} else {
		clock_gettime(CLOCK_REALTIME, &now);
		c.now_sec = sbi.mkfs_time;
		c.now_nsec = (uint32_t)now.tv_nsec;
	}
	buf = blockdev_alloc_buf(bd, FLYFS_BLOCK_SIZE);
	if (buf == NULL)
		return flyfs_error(err, errlen, ENOMEM, "out of memory");

	/* Invalidate whatever was there before writing anything else. */
	memset(buf, 0, FLYFS_BLOCK_SIZE);
	if ((error = write_blocks(&c, buf, 0, 1)) != 0 ||
	    (error = flush_dev(&c)) != 0)
		goto out;
	if ((error = write_gdt(&c, buf)) != 0 ||
	    (error = write_bitmaps(&c, buf)) != 0 ||
	    (error = write_inode_file(&c)) != 0 ||
	    (error = write_small_blocks(&c, buf)) != 0 ||
	    (error = flush_dev(&c)) != 0)
		goto out;

	/* The superblocks last: the filesystem exists once they do. */
	flyfs_sb_encode(&sbi, buf);
	if ((error = write_blocks(&c, buf, sbi.backup_block, 1)) != 0 ||
	    (error = write_blocks(&c, buf, 0, 1)) != 0 ||
	    (error = flush_dev(&c)) != 0)
		goto out;
	if (out != NULL)
		*out = sbi;
out:
	blockdev_free_buf(buf);
	return error;
}
