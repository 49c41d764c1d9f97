/*
 * check_mkfs.c - unit tests of fs/mkfs_core.c and of the mkfs.flyfs tool.
 *
 * The core is run on a fresh RAM block device per test and everything it
 * wrote is then checked by an independent walk (verify_image): every
 * checksum, the root directory and lost+found, and the allocation bitmaps
 * against the set of blocks the walk found referenced, so that metadata is
 * marked used and nothing else is.  The tool is run as a program on image
 * files in a fresh directory under /var/tmp (O_DIRECT needs a real
 * filesystem): creation, refusal without -f, option errors.
 *
 * The tool is found at $FLYFS_MKFS, or next to this test in the build tree
 * (../../tools/mkfs/mkfs.flyfs).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blockdev/blockdev.h"
#include "fs/format.h"
#include "fs/mkfs_core.h"
#include "fs/ondisk.h"

static struct blockdev *bd;		/* fresh per test, closed by teardown */
static char err[512];

static void
bd_setup(void)
{
	bd = NULL;
}

static void
bd_teardown(void)
{
	if (bd != NULL)
		blockdev_close(bd);
	bd = NULL;
}

static void
ram_open(uint64_t bytes)
{
	ck_assert_int_eq(blockdev_open_ram(bytes, 4096, 0, 0, &bd), 0);
}

static void
fixed_params(struct flyfs_mkfs_params *p)
{
	flyfs_mkfs_params_init(p);
	p->have_uuid = p->have_hash_key = p->have_time = true;
	for (int i = 0; i < 16; i++) {
		p->uuid[i] = (uint8_t)(0xa0 + i);
		p->hash_key[i] = (uint8_t)(i * 3);
	}
	p->time_sec = 1700000000;
	p->time_nsec = 5;
	p->root_uid = 1000;
	p->root_gid = 100;
}

/* ---- The independent walk of a fresh image ------------------------------ */

struct walk {
	struct blockdev *bd;
	struct flyfs_sb_info sb;
	uint8_t *ref;			/* 1 bit per block: referenced */
	uint8_t *blk;			/* 4 KiB scratch, device aligned */
	uint8_t *ifile;			/* the inode file */
	uint64_t ifile_blocks;
};

static void
read_block(struct walk *w, uint64_t b, void *buf)
{
	ck_assert_uint_lt(b, w->sb.block_count);
	ck_assert_int_eq(blockdev_pread(w->bd, buf, 4096, (off_t)(b * 4096)), 0);
}

static void
mark(struct walk *w, uint64_t b, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		if (b + i >= w->sb.block_count || flyfs_bit_test(w->ref, b + i))
			ck_abort_msg("block %llu out of range or referenced "
			    "twice", (unsigned long long)(b + i));
		flyfs_bit_set(w->ref, b + i);
	}
}

static const struct flyfs_inode *
inode_at(struct walk *w, uint64_t ino)
{
	const struct flyfs_inode *in;

	ck_assert_uint_lt(ino, w->sb.inode_count);
	in = (const struct flyfs_inode *)(w->ifile + ino * 256);
	ck_assert_msg(flyfs_inode_check(in, ino, w->sb.csum_seed, err,
	    sizeof(err)) == 0, "%s", err);
	return in;
}

/* Check a system file's one-extent map; mark its blocks; return pblk. */
static uint64_t
system_file(struct walk *w, uint64_t ino, uint32_t want_len)
{
	const struct flyfs_inode *in = inode_at(w, ino);

	ck_assert_uint_eq(le32_get(in->i_mode), S_IFREG | 0600);
	ck_assert(le32_get(in->i_flags) & FLYFS_IFL_SYSTEM);
	ck_assert_uint_eq(le16_get(in->i_ext_hdr.en_magic),
	    FLYFS_EXTENT_NODE_MAGIC);
	ck_assert_uint_eq(le16_get(in->i_ext_hdr.en_count), 1);
	ck_assert_uint_eq(le16_get(in->i_ext_hdr.en_level), 0);
	ck_assert_uint_eq(le64_get(in->i_ext[0].e_lblk), 0);
	ck_assert_uint_eq(le32_get(in->i_ext[0].e_llen), want_len);
	ck_assert_uint_eq(le32_get(in->i_ext[0].e_plen), want_len);
	ck_assert_uint_eq(in->i_ext[0].e_comp, FLYFS_COMP_NONE);
	ck_assert_uint_eq(le64_get(in->i_size), (uint64_t)want_len * 4096);
	ck_assert_uint_eq(le64_get(in->i_blocks), want_len);
	mark(w, le64_get(in->i_ext[0].e_pblk), want_len);
	return le64_get(in->i_ext[0].e_pblk);
}

/* Check a directory inode; mark and return its single leaf. */
static uint64_t
dir_inode(struct walk *w, uint64_t ino, uint32_t nlink, uint64_t entries,
    const struct flyfs_mkfs_params *p)
{
	const struct flyfs_inode *in = inode_at(w, ino);
	uint64_t leaf = le64_get(in->i_dir.dr_root);

	ck_assert(S_ISDIR(le32_get(in->i_mode)));
	ck_assert_uint_eq(le32_get(in->i_nlink), nlink);
	if (p != NULL) {
		ck_assert_uint_eq(le32_get(in->i_uid), p->root_uid);
		ck_assert_uint_eq(le32_get(in->i_gid), p->root_gid);
	}
	ck_assert_uint_eq(le64_get(in->i_dir.dr_parent), FLYFS_INO_ROOT);
	ck_assert_uint_eq(le64_get(in->i_dir.dr_entries), entries);
	ck_assert_uint_eq(le16_get(in->i_dir.dr_levels), 1);
	ck_assert_uint_eq(le32_get(in->i_flags), 0);
	mark(w, leaf, 1);
	read_block(w, leaf, w->blk);
	ck_assert_msg(flyfs_mblock_check(w->blk, FLYFS_MB_DIR, leaf,
	    w->sb.csum_seed, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(le64_get(((struct flyfs_mblock_hdr *)w->blk)->
	    mb_owner), ino);
	return leaf;
}

static void
verify_image(struct blockdev *dev, const struct flyfs_mkfs_params *p)
{
	struct walk w = { .bd = dev };
	struct flyfs_sb_info backup;
	const struct flyfs_dir_node *dn;
	const struct flyfs_dirent *de;
	const struct flyfs_orphan_block *ob;
	const struct flyfs_journal_super *js;
	uint64_t b, gdt_free_total = 0, free_inodes = 0;
	static const char lf[] = "lost+found";

	w.blk = blockdev_alloc_buf(dev, 4096);
	ck_assert_ptr_nonnull(w.blk);

	/* Superblocks: primary valid, backup identical. */
	ck_assert_msg(flyfs_sb_read(dev, 0, &w.sb, err, sizeof(err)) == 0,
	    "%s", err);
	ck_assert_msg(flyfs_sb_read(dev, w.sb.backup_block, &backup, err,
	    sizeof(err)) == 0, "%s", err);
	ck_assert_mem_eq(&w.sb, &backup, sizeof(backup));
	ck_assert_uint_eq(w.sb.state, FLYFS_STATE_CLEAN);
	if (p != NULL) {	/* NULL: identity unknown, skip its checks */
		ck_assert_uint_eq(w.sb.mkfs_time, p->time_sec);
		ck_assert_mem_eq(w.sb.uuid, p->uuid, 16);
		ck_assert_str_eq(w.sb.label, p->label);
	}
	w.ref = calloc(w.sb.block_count / 8 + 1, 1);
	ck_assert_ptr_nonnull(w.ref);
	mark(&w, 0, 1);
	mark(&w, w.sb.backup_block, 1);
	mark(&w, w.sb.gdt_start, w.sb.gdt_blocks);
	mark(&w, w.sb.bitmap_start, w.sb.group_count);
	mark(&w, w.sb.journal_start, w.sb.journal_blocks);

	/* The journal is empty and belongs to this filesystem. */
	read_block(&w, w.sb.journal_start, w.blk);
	ck_assert_msg(flyfs_mblock_check(w.blk, FLYFS_MB_JSUPER,
	    w.sb.journal_start, w.sb.csum_seed, err, sizeof(err)) == 0, "%s",
	    err);
	js = (const struct flyfs_journal_super *)w.blk;
	ck_assert_uint_eq(le64_get(js->js_start), 0);
	ck_assert_uint_eq(le64_get(js->js_sequence), 1);
	ck_assert_uint_eq(le64_get(js->js_first), 1);
	ck_assert_uint_eq(le64_get(js->js_blocks), w.sb.journal_blocks);
	ck_assert_mem_eq(js->js_uuid, w.sb.uuid, 16);

	/* The inode file, via inode 0 at sb_ifile_start. */
	w.ifile_blocks = FLYFS_MKFS_IFILE_BLOCKS;
	ck_assert_uint_eq(w.sb.inode_count, w.ifile_blocks * 16);
	w.ifile = blockdev_alloc_buf(dev, w.ifile_blocks * 4096);
	ck_assert_int_eq(blockdev_pread(dev, w.ifile, w.ifile_blocks * 4096,
	    (off_t)(w.sb.ifile_start * 4096)), 0);
	ck_assert_uint_eq(system_file(&w, FLYFS_INO_IFILE,
	    (uint32_t)w.ifile_blocks), w.sb.ifile_start);

	/* Inode bitmap: exactly the used inodes; every used inode valid. */
	b = system_file(&w, FLYFS_INO_IBITMAP, 1);
	read_block(&w, b, w.blk);
	ck_assert_msg(flyfs_mblock_check(w.blk, FLYFS_MB_IBITMAP, b,
	    w.sb.csum_seed, err, sizeof(err)) == 0, "%s", err);
	for (uint64_t i = 0; i < FLYFS_INODES_PER_IBITMAP; i++) {
		bool used = flyfs_bit_test(w.blk + 32, i);
		bool want = i <= FLYFS_FIRST_INO;
		if (used != want)
			ck_abort_msg("inode bitmap bit %llu",
			    (unsigned long long)i);
		if (i < w.sb.inode_count && !used) {
			free_inodes++;
			ck_assert(flyfs_inode_is_free((const struct
			    flyfs_inode *)(w.ifile + i * 256)));
		}
	}
	ck_assert_uint_eq(free_inodes, w.sb.free_inodes);
	for (uint64_t i = 4; i < FLYFS_FIRST_INO; i++)
		ck_assert(flyfs_inode_is_free((const struct flyfs_inode *)
		    (w.ifile + i * 256)));

	/* Orphan file: one block, empty. */
	b = system_file(&w, FLYFS_INO_ORPHAN, 1);
	read_block(&w, b, w.blk);
	ck_assert_msg(flyfs_mblock_check(w.blk, FLYFS_MB_ORPHAN, b,
	    w.sb.csum_seed, err, sizeof(err)) == 0, "%s", err);
	ob = (const struct flyfs_orphan_block *)w.blk;
	ck_assert_uint_eq(le32_get(ob->ob_count), 0);
	for (size_t i = 0; i < FLYFS_ORPHANS_PER_BLOCK; i++)
		ck_assert_uint_eq(le64_get(ob->ob_ino[i]), 0);

	/* Root: one entry, lost+found, found under its hash key. */
	dir_inode(&w, FLYFS_INO_ROOT, 3, 1, p);
	dn = (const struct flyfs_dir_node *)(w.blk + 32);
	de = (const struct flyfs_dirent *)(dn + 1);
	ck_assert_uint_eq(le16_get(dn->dn_count), 1);
	ck_assert_uint_eq(le16_get(dn->dn_level), 0);
	ck_assert_uint_eq(le16_get(dn->dn_used), FLYFS_DIRENT_SIZE(10));
	ck_assert_uint_eq(le64_get(dn->dn_next), 0);
	ck_assert_uint_eq(le64_get(de->de_key), FLYFS_DIR_KEY(flyfs_dir_hash(
	    w.sb.hash_key, lf, 10), 0));
	ck_assert_uint_eq(le64_get(de->de_ino), FLYFS_FIRST_INO);
	ck_assert_uint_eq(de->de_name_len, 10);
	ck_assert_uint_eq(de->de_type, DT_DIR);
	ck_assert_mem_eq(de->de_name, lf, 10);
	dir_inode(&w, FLYFS_FIRST_INO, 2, 0, p);
	ck_assert_uint_eq(le16_get(dn->dn_count), 0);
	ck_assert_uint_eq(le32_get(inode_at(&w, FLYFS_FIRST_INO)->i_mode),
	    S_IFDIR | 0700);
	ck_assert_uint_eq(le32_get(inode_at(&w, FLYFS_INO_ROOT)->i_mode),
	    S_IFDIR | 0755);

	/* Allocation: bitmaps == referenced set, counts agree. */
	for (uint32_t g = 0; g < w.sb.group_count; g++) {
		const struct flyfs_gdt_block *gb =
		    (const struct flyfs_gdt_block *)w.blk;
		uint64_t gblk = w.sb.gdt_start + g / FLYFS_GD_PER_BLOCK;
		uint32_t size = flyfs_group_size(w.sb.block_count, g);
		uint64_t first = flyfs_group_first(g);
		uint32_t gfree, flags, nfree = 0;

		read_block(&w, gblk, w.blk);
		ck_assert_msg(flyfs_mblock_check(w.blk, FLYFS_MB_GDT, gblk,
		    w.sb.csum_seed, err, sizeof(err)) == 0, "%s", err);
		gfree = le32_get(gb->gb_desc[g % FLYFS_GD_PER_BLOCK].
		    gd_free_blocks);
		flags = le32_get(gb->gb_desc[g % FLYFS_GD_PER_BLOCK].gd_flags);
		gdt_free_total += gfree;
		if (flags & FLYFS_GD_BITMAP_UNINIT) {
			for (uint32_t i = 0; i < size; i++)
				if (flyfs_bit_test(w.ref, first + i))
					ck_abort_msg("block %llu used in an "
					    "UNINIT group", (unsigned long long)
					    (first + i));
			ck_assert_uint_eq(gfree, size);
			continue;
		}
		ck_assert_uint_eq(flags, 0);
		read_block(&w, w.sb.bitmap_start + g, w.blk);
		ck_assert_msg(flyfs_mblock_check(w.blk, FLYFS_MB_BBITMAP,
		    w.sb.bitmap_start + g, w.sb.csum_seed, err,
		    sizeof(err)) == 0, "%s", err);
		for (uint32_t i = 0; i < FLYFS_GROUP_BLOCKS; i++) {
			bool used = flyfs_bit_test(w.blk + 32, i);
			if (i >= size) {
				if (!used)
					ck_abort_msg("padding bit %u clear", i);
				continue;
			}
			if (used != flyfs_bit_test(w.ref, first + i))
				ck_abort_msg("block %llu: bitmap says %d",
				    (unsigned long long)(first + i), used);
			nfree += !used;
		}
		ck_assert_uint_eq(nfree, gfree);
	}
	/* Descriptor slots past the last group are zero. */
	{
		const struct flyfs_gdt_block *gb =
		    (const struct flyfs_gdt_block *)w.blk;
		uint32_t last = w.sb.gdt_blocks - 1;

		read_block(&w, w.sb.gdt_start + last, w.blk);
		for (uint32_t i = w.sb.group_count - last * FLYFS_GD_PER_BLOCK;
		    i < FLYFS_GD_PER_BLOCK; i++)
			ck_assert_uint_eq(le32_get(gb->gb_desc[i].
			    gd_free_blocks), 0);
	}
	ck_assert_uint_eq(gdt_free_total, w.sb.free_blocks);

	free(w.ref);
	blockdev_free_buf(w.ifile);
	blockdev_free_buf(w.blk);
}

/* ---- mkfs core on a RAM device ------------------------------------------ */

static const uint32_t block_sizes[] = { 4096, 131072, 16384, 8192, 65536 };

START_TEST(test_mkfs_block_sizes)
{
	struct flyfs_mkfs_params p;
	struct flyfs_sb_info sbi;

	ram_open(32u << 20);
	fixed_params(&p);
	p.data_block_size = block_sizes[_i];
	snprintf(p.label, sizeof(p.label), "bs%u", block_sizes[_i]);
	ck_assert_msg(flyfs_mkfs(bd, &p, &sbi, err, sizeof(err)) == 0, "%s",
	    err);
	ck_assert_uint_eq(sbi.data_block_size, block_sizes[_i]);
	verify_image(bd, &p);
}
END_TEST

START_TEST(test_mkfs_smallest_image)
{
	struct flyfs_mkfs_params p;
	struct flyfs_sb_info sbi;

	ram_open(FLYFS_MIN_BLOCKS * 4096);
	fixed_params(&p);
	p.data_block_size = FLYFS_DATA_BLOCK_MIN;
	ck_assert_msg(flyfs_mkfs(bd, &p, &sbi, err, sizeof(err)) == 0, "%s",
	    err);
	ck_assert_uint_eq(sbi.block_count, FLYFS_MIN_BLOCKS);
	ck_assert_uint_eq(sbi.journal_blocks, FLYFS_JOURNAL_MIN_BLOCKS);
	verify_image(bd, &p);
}
END_TEST

/* Three groups: the middle one untouched (UNINIT), the last one partial. */
START_TEST(test_mkfs_multi_group)
{
	struct flyfs_mkfs_params p;
	struct flyfs_sb_info sbi;

	ram_open(66560ull * 4096);
	fixed_params(&p);
	ck_assert_msg(flyfs_mkfs(bd, &p, &sbi, err, sizeof(err)) == 0, "%s",
	    err);
	ck_assert_uint_eq(sbi.group_count, 3);
	verify_image(bd, &p);
}
END_TEST

/* A journal that spans a group boundary, and zstd as default. */
START_TEST(test_mkfs_big_journal_zstd)
{
	struct flyfs_mkfs_params p;
	struct flyfs_sb_info sbi;

	ram_open(200u << 20);
	fixed_params(&p);
	p.journal_bytes = 160u << 20;
	p.comp = FLYFS_COMP_ZSTD;
	p.comp_level = 19;
	p.data_block_size = FLYFS_DATA_BLOCK_MAX;
	ck_assert_msg(flyfs_mkfs(bd, &p, &sbi, err, sizeof(err)) == 0, "%s",
	    err);
	ck_assert_uint_eq(sbi.journal_blocks, 40960);
	ck_assert(sbi.feature_incompat & FLYFS_FEATURE_INCOMPAT_ZSTD);
	ck_assert_uint_eq(sbi.default_comp_level, 19);
	verify_image(bd, &p);
}
END_TEST

START_TEST(test_mkfs_partial_device)
{
	struct flyfs_mkfs_params p;
	struct flyfs_sb_info sbi;

	ram_open(32u << 20);
	fixed_params(&p);
	p.size_bytes = (16u << 20) + 1234;	/* rounded down to blocks */
	ck_assert_msg(flyfs_mkfs(bd, &p, &sbi, err, sizeof(err)) == 0, "%s",
	    err);
	ck_assert_uint_eq(sbi.block_count, 4096);
	ck_assert_uint_eq(sbi.backup_block, 4095);
	verify_image(bd, &p);
}
END_TEST

START_TEST(test_mkfs_deterministic)
{
	struct flyfs_mkfs_params p;
	struct blockdev *bd2 = NULL;
	uint8_t *a, *b;
	const size_t len = 16u << 20;

	ram_open(len);
	ck_assert_int_eq(blockdev_open_ram(len, 4096, 0, 0, &bd2), 0);
	fixed_params(&p);
	ck_assert_int_eq(flyfs_mkfs(bd, &p, NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(flyfs_mkfs(bd2, &p, NULL, err, sizeof(err)), 0);
	a = blockdev_alloc_buf(bd, len);
	b = blockdev_alloc_buf(bd, len);
	ck_assert_int_eq(blockdev_pread(bd, a, len, 0), 0);
	ck_assert_int_eq(blockdev_pread(bd2, b, len, 0), 0);
	ck_assert(memcmp(a, b, len) == 0);
	blockdev_free_buf(a);
	blockdev_free_buf(b);
	blockdev_close(bd2);
}
END_TEST

/* Metadata of an earlier filesystem fails the checks of a new one. */
START_TEST(test_mkfs_stale_metadata)
{
	struct flyfs_mkfs_params p;
	struct flyfs_sb_info s1, s2;
	uint8_t *old = NULL, *cur;

	ram_open(16u << 20);
	fixed_params(&p);
	ck_assert_int_eq(flyfs_mkfs(bd, &p, &s1, err, sizeof(err)), 0);
	old = blockdev_alloc_buf(bd, 4096);
	cur = blockdev_alloc_buf(bd, 4096);
	ck_assert_int_eq(blockdev_pread(bd, old, 4096,
	    (off_t)(s1.gdt_start * 4096)), 0);
	p.uuid[0] ^= 0xff;
	ck_assert_int_eq(flyfs_mkfs(bd, &p, &s2, err, sizeof(err)), 0);
	ck_assert_uint_ne(s1.csum_seed, s2.csum_seed);
	ck_assert_int_eq(flyfs_mblock_check(old, FLYFS_MB_GDT, s2.gdt_start,
	    s2.csum_seed, err, sizeof(err)), EBADMSG);
	ck_assert_int_eq(blockdev_pread(bd, cur, 4096,
	    (off_t)(s2.gdt_start * 4096)), 0);
	ck_assert_int_eq(flyfs_mblock_check(cur, FLYFS_MB_GDT, s2.gdt_start,
	    s2.csum_seed, err, sizeof(err)), 0);
	blockdev_free_buf(old);
	blockdev_free_buf(cur);
}
END_TEST

START_TEST(test_mkfs_param_errors)
{
	struct flyfs_mkfs_params p;
	struct flyfs_sb_info sbi;

	ram_open(16u << 20);
	fixed_params(&p);
	p.data_block_size = 12288;
	ck_assert_int_eq(flyfs_mkfs(bd, &p, &sbi, err, sizeof(err)), EINVAL);
	fixed_params(&p);
	p.comp = FLYFS_COMP_ZSTD;
	p.comp_level = 20;
	ck_assert_int_eq(flyfs_mkfs(bd, &p, &sbi, err, sizeof(err)), EINVAL);
	fixed_params(&p);
	p.comp_level = 3;			/* level without algorithm */
	ck_assert_int_eq(flyfs_mkfs(bd, &p, &sbi, err, sizeof(err)), EINVAL);
	fixed_params(&p);
	memset(p.label, 'x', sizeof(p.label));
	ck_assert_int_eq(flyfs_mkfs(bd, &p, &sbi, err, sizeof(err)), EINVAL);
	fixed_params(&p);
	p.journal_bytes = 1u << 20;
	ck_assert_int_eq(flyfs_mkfs(bd, &p, &sbi, err, sizeof(err)), EINVAL);
	fixed_params(&p);
	p.journal_bytes = 16u << 20;		/* the whole image */
	ck_assert_int_eq(flyfs_mkfs(bd, &p, &sbi, err, sizeof(err)), ENOSPC);
	ck_assert_ptr_nonnull(strstr(err, "smaller journal"));
	fixed_params(&p);
	p.size_bytes = 32u << 20;		/* more than the device */
	ck_assert_int_eq(flyfs_mkfs(bd, &p, &sbi, err, sizeof(err)), ENOSPC);
	fixed_params(&p);
	p.size_bytes = 4u << 20;		/* below the minimum */
	ck_assert_int_eq(flyfs_mkfs(bd, &p, &sbi, err, sizeof(err)), ENOSPC);
	ck_assert_ptr_nonnull(strstr(err, "minimum"));
	/* Nothing was written by any refused call. */
	ck_assert_int_eq(flyfs_sb_read(bd, 0, &sbi, err, sizeof(err)), EINVAL);
}
END_TEST

START_TEST(test_mkfs_default_journal)
{
	ck_assert_uint_eq(flyfs_mkfs_default_journal(2048), 1024);
	ck_assert_uint_eq(flyfs_mkfs_default_journal(1ull << 18), 4096);
	ck_assert_uint_eq(flyfs_mkfs_default_journal(1ull << 22), 65536);
	ck_assert_uint_eq(flyfs_mkfs_default_journal(1ull << 32), 262144);
	ck_assert_uint_eq(flyfs_mkfs_default_journal(100000) % 256, 0);
}
END_TEST

/* ---- The mkfs.flyfs tool ------------------------------------------------ */

static char tool[PATH_MAX];
static char tmpdir[] = "/var/tmp/check_mkfs.XXXXXX";
static char img[PATH_MAX + 32];
static char out[8192];

static void
tool_setup(void)
{
	char self[PATH_MAX];
	const char *env = getenv("FLYFS_MKFS");
	ssize_t n;

	if (env != NULL) {
		snprintf(tool, sizeof(tool), "%s", env);
	} else {
		n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		ck_assert_int_gt(n, 0);
		self[n] = '\0';
		snprintf(tool, sizeof(tool), "%s/../../tools/mkfs/mkfs.flyfs",
		    dirname(self));
	}
	ck_assert_msg(access(tool, X_OK) == 0, "mkfs.flyfs not found at %s "
	    "(set FLYFS_MKFS)", tool);
	strcpy(tmpdir, "/var/tmp/check_mkfs.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(img, sizeof(img), "%s/img", tmpdir);
	bd = NULL;
}

static void
tool_teardown(void)
{
	bd_teardown();
	unlink(img);
	rmdir(tmpdir);
}

/* Run the tool with ARGV (NULL terminated, without argv[0]); capture
 * stdout+stderr into OUT; return its exit status. */
static int
run_tool(const char *const *args)
{
	const char *argv[32] = { tool };
	char capture[PATH_MAX + 32];
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int status, fd, i;
	ssize_t n;

	for (i = 0; args[i] != NULL; i++)
		argv[i + 1] = args[i];
	argv[i + 1] = NULL;
	snprintf(capture, sizeof(capture), "%s/out", tmpdir);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, capture,
	    O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	ck_assert_int_eq(posix_spawn(&pid, tool, &fa, NULL,
	    (char *const *)argv, NULL), 0);
	posix_spawn_file_actions_destroy(&fa);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	fd = open(capture, O_RDONLY);
	n = read(fd, out, sizeof(out) - 1);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(capture);
	ck_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

#define RUN(...) run_tool((const char *const[]){ __VA_ARGS__, NULL })

static void
open_img(void)
{
	struct blockdev_opts o = { 0 };

	ck_assert_msg(blockdev_open(img, &o, &bd, err, sizeof(err)) == 0,
	    "%s", err);
}

START_TEST(test_tool_creates_image)
{
	struct flyfs_mkfs_params p;
	struct flyfs_sb_info sbi;
	struct stat st;

	ck_assert_msg(RUN("-L", "lbl", "-U",
	    "a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf", "-b", "64K",
	    "-J", "size=8M", "-C", "zstd:5", img, "20M") == 0, "%s", out);
	ck_assert_ptr_nonnull(strstr(out, "a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf"));
	ck_assert_ptr_nonnull(strstr(out, "zstd level 5"));
	ck_assert_int_eq(stat(img, &st), 0);
	ck_assert_int_eq(st.st_size, 20 << 20);
	open_img();
	ck_assert_int_eq(flyfs_sb_read(bd, 0, &sbi, err, sizeof(err)), 0);
	ck_assert_uint_eq(sbi.data_block_size, 65536);
	ck_assert_uint_eq(sbi.journal_blocks, 2048);
	ck_assert_uint_eq(sbi.default_comp, FLYFS_COMP_ZSTD);
	ck_assert_uint_eq(sbi.default_comp_level, 5);
	/* Validate everything against what the tool was asked for. */
	fixed_params(&p);
	for (int i = 0; i < 16; i++)
		p.uuid[i] = (uint8_t)(0xa0 + i);
	strcpy(p.label, "lbl");
	p.time_sec = sbi.mkfs_time;
	p.root_uid = getuid();
	p.root_gid = getgid();
	verify_image(bd, &p);
}
END_TEST

START_TEST(test_tool_refuses_existing_fs)
{
	struct flyfs_sb_info a, b;

	ck_assert_msg(RUN("-q", img, "16M") == 0, "%s", out);
	ck_assert_str_eq(out, "");
	open_img();
	ck_assert_int_eq(flyfs_sb_read(bd, 0, &a, err, sizeof(err)), 0);
	bd_teardown();
	ck_assert_int_eq(RUN(img), 1);
	ck_assert_ptr_nonnull(strstr(out, "contains a flyfs filesystem"));
	ck_assert_ptr_nonnull(strstr(out, "use -f"));
	/* Untouched. */
	open_img();
	ck_assert_int_eq(flyfs_sb_read(bd, 0, &b, err, sizeof(err)), 0);
	ck_assert_mem_eq(a.uuid, b.uuid, 16);
	bd_teardown();
	/* With -f it is replaced (new UUID), using the file's size. */
	ck_assert_msg(RUN("-f", img) == 0, "%s", out);
	ck_assert_ptr_nonnull(strstr(out, "overwriting"));
	open_img();
	ck_assert_int_eq(flyfs_sb_read(bd, 0, &b, err, sizeof(err)), 0);
	ck_assert(memcmp(a.uuid, b.uuid, 16) != 0);
	ck_assert_uint_eq(b.block_count, 4096);
}
END_TEST

START_TEST(test_tool_refuses_ext4)
{
	uint8_t sb[1024] = { 0 };
	int fd;

	fd = open(img, O_RDWR | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 16 << 20), 0);
	sb[56] = 0x53;				/* s_magic 0xef53 at 1080 */
	sb[57] = 0xef;
	sb[0x60] = 0x40;			/* incompat: extents */
	memcpy(sb + 0x78, "rootfs", 6);
	ck_assert_int_eq(pwrite(fd, sb, sizeof(sb), 1024), (ssize_t)sizeof(sb));
	close(fd);
	ck_assert_int_eq(RUN(img), 1);
	ck_assert_ptr_nonnull(strstr(out, "contains an ext4 filesystem "
	    "(label \"rootfs\")"));
	ck_assert_ptr_nonnull(strstr(out, "-f"));
	ck_assert_msg(RUN("-q", "-f", img) == 0, "%s", out);
	open_img();
	verify_image(bd, NULL);
}
END_TEST

START_TEST(test_tool_dry_run)
{
	ck_assert_msg(RUN("-n", img, "64M") == 0, "%s", out);
	ck_assert_ptr_nonnull(strstr(out, "Dry run"));
	ck_assert_ptr_nonnull(strstr(out, "16384 4k blocks"));
	ck_assert_int_eq(access(img, F_OK), -1);
}
END_TEST

/* Every bad command line: exit 1, a message, and no image created. */
static const char *const bad_cmds[][6] = {
	{ "-b", "3000", "IMG", "16M" },
	{ "-b", "256K", "IMG", "16M" },
	{ "-b", "2K", "IMG", "16M" },
	{ "-C", "zstd:20", "IMG", "16M" },
	{ "-C", "zstd:0", "IMG", "16M" },
	{ "-C", "lz4", "IMG", "16M" },
	{ "-C", "zstd:", "IMG", "16M" },
	{ "-J", "size=1M", "IMG", "16M" },
	{ "-J", "8M", "IMG", "16M" },
	{ "-J", "size=64M", "IMG", "16M" },	/* does not fit */
	{ "-L", "0123456789012345678901234567890123456789012345678901234567890123",
	  "IMG", "16M" },
	{ "-U", "not-a-uuid", "IMG", "16M" },
	{ "-U", "a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeafff", "IMG", "16M" },
	{ "IMG" },				/* missing: SIZE needed */
	{ "IMG", "12Q" },
	{ "IMG", "4M" },			/* too small */
	{ "IMG", "16M", "extra" },
	{ "-x", "IMG", "16M" },
	{ "" },					/* no IMAGE at all */
};
#define N_BAD_CMDS (int)(sizeof(bad_cmds) / sizeof(bad_cmds[0]))

START_TEST(test_tool_usage_errors)
{
	const char *argv[8] = { 0 };
	int n = 0;

	for (int i = 0; bad_cmds[_i][i] != NULL; i++) {
		if (bad_cmds[_i][i][0] == '\0')
			continue;
		argv[n++] = strcmp(bad_cmds[_i][i], "IMG") == 0 ? img :
		    bad_cmds[_i][i];
	}
	argv[n] = NULL;
	ck_assert_int_eq(run_tool(argv), 1);
	ck_assert_msg(strstr(out, "mkfs.flyfs: ") != NULL, "no message: %s",
	    out);
	ck_assert_msg(access(img, F_OK) == -1, "image left behind (%s)", out);
}
END_TEST

START_TEST(test_tool_help_version)
{
	ck_assert_int_eq(RUN("--help"), 0);
	ck_assert_ptr_nonnull(strstr(out, "Usage: mkfs.flyfs"));
	ck_assert_ptr_nonnull(strstr(out, "-J size="));
	ck_assert_int_eq(RUN("-V"), 0);
	ck_assert_ptr_nonnull(strstr(out, "flyfs format 1.0"));
}
END_TEST

START_TEST(test_tool_unaligned_file)
{
	int fd = open(img, O_RDWR | O_CREAT | O_EXCL, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (16 << 20) + 100), 0);
	close(fd);
	ck_assert_int_eq(RUN(img), 1);
	ck_assert_ptr_nonnull(strstr(out, "not a multiple of 4096"));
	/* O_DIRECT cannot open it at all, SIZE or not: said so. */
	ck_assert_int_eq(RUN(img, "16M"), 1);
	ck_assert_ptr_nonnull(strstr(out, "truncate -s"));
}
END_TEST

/*
 * Per test, in seconds.  check's default of 4 s is too tight for the 200
 * MiB images under ASan on a busy machine; a hang still fails in bounded
 * time.
 */
#define TEST_TIMEOUT	120

static Suite *
mkfs_suite(void)
{
	Suite *s = suite_create("mkfs");
	TCase *tc;

#define TC(name, fn, setup, teardown) do {				\
	tc = tcase_create(name);					\
	tcase_set_timeout(tc, TEST_TIMEOUT);				\
	tcase_add_checked_fixture(tc, setup, teardown);			\
	tcase_add_test(tc, fn);						\
	suite_add_tcase(s, tc);						\
} while (0)
	tc = tcase_create("mkfs_block_sizes");
	tcase_set_timeout(tc, TEST_TIMEOUT);
	tcase_add_checked_fixture(tc, bd_setup, bd_teardown);
	tcase_add_loop_test(tc, test_mkfs_block_sizes, 0,
	    (int)(sizeof(block_sizes) / sizeof(block_sizes[0])));
	suite_add_tcase(s, tc);
	TC("mkfs_smallest_image", test_mkfs_smallest_image, bd_setup,
	    bd_teardown);
	TC("mkfs_multi_group", test_mkfs_multi_group, bd_setup, bd_teardown);
	TC("mkfs_big_journal_zstd", test_mkfs_big_journal_zstd, bd_setup,
	    bd_teardown);
	TC("mkfs_partial_device", test_mkfs_partial_device, bd_setup,
	    bd_teardown);
	TC("mkfs_deterministic", test_mkfs_deterministic, bd_setup,
	    bd_teardown);
	TC("mkfs_stale_metadata", test_mkfs_stale_metadata, bd_setup,
	    bd_teardown);
	TC("mkfs_param_errors", test_mkfs_param_errors, bd_setup, bd_teardown);
	TC("mkfs_default_journal", test_mkfs_default_journal, bd_setup,
	    bd_teardown);
	TC("tool_creates_image", test_tool_creates_image, tool_setup,
	    tool_teardown);
	TC("tool_refuses_existing_fs", test_tool_refuses_existing_fs,
	    tool_setup, tool_teardown);
	TC("tool_refuses_ext4", test_tool_refuses_ext4, tool_setup,
	    tool_teardown);
	TC("tool_dry_run", test_tool_dry_run, tool_setup, tool_teardown);
	tc = tcase_create("tool_usage_errors");
	tcase_set_timeout(tc, TEST_TIMEOUT);
	tcase_add_checked_fixture(tc, tool_setup, tool_teardown);
	tcase_add_loop_test(tc, test_tool_usage_errors, 0, N_BAD_CMDS);
	suite_add_tcase(s, tc);
	TC("tool_help_version", test_tool_help_version, tool_setup,
	    tool_teardown);
	TC("tool_unaligned_file", test_tool_unaligned_file, tool_setup,
	    tool_teardown);
#undef TC
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(mkfs_suite());
	int failed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
