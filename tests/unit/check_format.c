/*
 * check_format.c - unit tests of fs/format.c and fs/ondisk.h: structure
 * layout, crc32c, SipHash, the superblock codec and each of its refusals,
 * metadata block headers and inode checksums.
 *
 * One TCase per behaviour; fork mode, so a crash fails one test.  Tests
 * that need a device get a fresh RAM block device from the fixture.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/blockdev.h"
#include "fs/format.h"
#include "fs/mkfs_core.h"
#include "fs/ondisk.h"

#define RAM_BYTES	(16u << 20)

static struct blockdev *bd;
static char err[512];

static void
ram_setup(void)
{
	ck_assert_int_eq(blockdev_open_ram(RAM_BYTES, 4096, 0, 0, &bd), 0);
}

static void
ram_teardown(void)
{
	blockdev_close(bd);
	bd = NULL;
}

/* A valid superblock for a 16 MiB filesystem with fixed identity. */
static void
make_sbi(struct flyfs_sb_info *sbi, uint64_t bytes)
{
	struct flyfs_mkfs_params p;

	flyfs_mkfs_params_init(&p);
	p.have_uuid = p.have_hash_key = p.have_time = true;
	for (int i = 0; i < 16; i++) {
		p.uuid[i] = (uint8_t)(0x10 + i);
		p.hash_key[i] = (uint8_t)i;
	}
	p.time_sec = 1700000000;
	strcpy(p.label, "unit");
	ck_assert_int_eq(flyfs_mkfs_plan(bytes, &p, sbi, err, sizeof(err)), 0);
}

/* ---- layout ------------------------------------------------------------ */

START_TEST(test_layout_sizes)
{
	ck_assert_uint_eq(sizeof(struct flyfs_super), 512);
	ck_assert_uint_eq(sizeof(struct flyfs_mblock_hdr), 32);
	ck_assert_uint_eq(sizeof(struct flyfs_group_desc), 16);
	ck_assert_uint_eq(sizeof(struct flyfs_gdt_block), 4096);
	ck_assert_uint_eq(sizeof(struct flyfs_bitmap_block), 4096);
	ck_assert_uint_eq(sizeof(struct flyfs_extent), 32);
	ck_assert_uint_eq(sizeof(struct flyfs_extent_idx), 16);
	ck_assert_uint_eq(sizeof(struct flyfs_extent_node), 16);
	ck_assert_uint_eq(sizeof(struct flyfs_inode), 256);
	ck_assert_uint_eq(sizeof(struct flyfs_dir_root), 112);
	ck_assert_uint_eq(sizeof(struct flyfs_dir_node), 16);
	ck_assert_uint_eq(sizeof(struct flyfs_dirent), 24);
	ck_assert_uint_eq(sizeof(struct flyfs_xattr_hdr), 16);
	ck_assert_uint_eq(sizeof(struct flyfs_xattr_entry), 8);
	ck_assert_uint_eq(sizeof(struct flyfs_orphan_block), 4096);
	ck_assert_uint_eq(sizeof(struct flyfs_journal_super), 4096);
	ck_assert_uint_eq(sizeof(struct flyfs_journal_desc), 4096);
	ck_assert_uint_eq(sizeof(struct flyfs_journal_revoke), 4096);
	ck_assert_uint_eq(sizeof(struct flyfs_journal_commit), 4096);
	ck_assert_uint_eq(sizeof(struct flyfs_journal_tag), 16);
}
END_TEST

START_TEST(test_layout_offsets)
{
	ck_assert_uint_eq(offsetof(struct flyfs_super, sb_magic), 0);
	ck_assert_uint_eq(offsetof(struct flyfs_super, sb_crc), 8);
	ck_assert_uint_eq(offsetof(struct flyfs_super, sb_feature_incompat), 40);
	ck_assert_uint_eq(offsetof(struct flyfs_super, sb_block_count), 136);
	ck_assert_uint_eq(offsetof(struct flyfs_super, sb_journal_start), 208);
	ck_assert_uint_eq(offsetof(struct flyfs_super, sb_last_txid), 296);
	ck_assert_uint_eq(offsetof(struct flyfs_mblock_hdr, mb_blocknr), 8);
	ck_assert_uint_eq(offsetof(struct flyfs_extent, e_cbytes), 28);
	ck_assert_uint_eq(offsetof(struct flyfs_inode, i_mode), 4);
	ck_assert_uint_eq(offsetof(struct flyfs_inode, i_atime), 48);
	ck_assert_uint_eq(offsetof(struct flyfs_inode, i_rdev_major), 100);
	ck_assert_uint_eq(offsetof(struct flyfs_inode, i_dir), 128);
	ck_assert_uint_eq(offsetof(struct flyfs_inode, i_ext[0]), 144);
	ck_assert_uint_eq(offsetof(struct flyfs_inode, i_symlink), 128);
	ck_assert_uint_eq(offsetof(struct flyfs_dirent, de_name), 24);
	ck_assert_uint_eq(offsetof(struct flyfs_journal_commit, jc_blocks), 44);
	ck_assert_uint_eq(FLYFS_GROUP_BLOCKS, 32512);
	ck_assert_uint_eq(FLYFS_GD_PER_BLOCK, 254);
	ck_assert_uint_eq(FLYFS_EXT_BLOCK_LEAF_MAX, 126);
	ck_assert_uint_eq(FLYFS_EXT_BLOCK_IDX_MAX, 253);
	ck_assert_uint_eq(FLYFS_INODE_EXT_ROOT_MAX, 3);
	ck_assert_uint_eq(FLYFS_JTAGS_PER_DESC, 253);
	ck_assert_uint_eq(FLYFS_ORPHANS_PER_BLOCK, 506);
	ck_assert_uint_eq(FLYFS_DIRENT_SIZE(10), 40);
	ck_assert_uint_eq(FLYFS_DIRENT_SIZE(255), 280);
	/* The magic reads "FLYFS_SB" in a hexdump. */
	ck_assert_mem_eq((const char *)&(uint64_t){ FLYFS_SUPER_MAGIC },
	    "FLYFS_SB", 8);
}
END_TEST

START_TEST(test_le_helpers)
{
	uint8_t b[8];
	le32_t v32;
	le64_t v64;

	le32_set(&v32, 0x11223344);
	memcpy(b, &v32, 4);
	ck_assert_uint_eq(b[0], 0x44);
	ck_assert_uint_eq(b[3], 0x11);
	ck_assert_uint_eq(le32_get(v32), 0x11223344);
	le64_set(&v64, 0x0102030405060708ULL);
	memcpy(b, &v64, 8);
	ck_assert_uint_eq(b[0], 0x08);
	ck_assert_uint_eq(le64_load(b), 0x0102030405060708ULL);
	ck_assert_uint_eq(le16_load(b + 1), 0x0607);
	ck_assert_uint_eq(le32_load(b + 1), 0x04050607);
}
END_TEST

/* ---- crc32c ------------------------------------------------------------ */

START_TEST(test_crc32c_vectors)
{
	uint8_t buf[32];

	ck_assert_uint_eq(flyfs_crc32c(0, "123456789", 9), 0xe3069283u);
	ck_assert_uint_eq(flyfs_crc32c_sw(0, "123456789", 9), 0xe3069283u);
	ck_assert_uint_eq(flyfs_crc32c(0, "", 0), 0);
	/* RFC 3720 (iSCSI) B.4 */
	memset(buf, 0, sizeof(buf));
	ck_assert_uint_eq(flyfs_crc32c(0, buf, 32), 0x8a9136aau);
	memset(buf, 0xff, sizeof(buf));
	ck_assert_uint_eq(flyfs_crc32c(0, buf, 32), 0x62a8ab43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	ck_assert_uint_eq(flyfs_crc32c(0, buf, 32), 0x46dd794eu);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	ck_assert_uint_eq(flyfs_crc32c(0, buf, 32), 0x113fdb5cu);
	ck_assert_uint_eq(flyfs_crc32c_sw(0, buf, 32), 0x113fdb5cu);
}
END_TEST

START_TEST(test_crc32c_chaining_and_paths)
{
	uint8_t buf[1024 + 8];
	uint32_t whole, c;

	srandom(7);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)random();
	/* Every split point gives the one-shot result. */
	whole = flyfs_crc32c(0, buf, 1024);
	for (size_t cut = 0; cut <= 1024; cut += 37) {
		c = flyfs_crc32c(0, buf, cut);
		ck_assert_uint_eq(flyfs_crc32c(c, buf + cut, 1024 - cut), whole);
	}
	/* Hardware and table paths agree at every alignment and length. */
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len < 200; len += 3)
			ck_assert_uint_eq(flyfs_crc32c(0x1234, buf + off, len),
			    flyfs_crc32c_sw(0x1234, buf + off, len));
}
END_TEST

/* ---- SipHash / directory hash ----------------------------------------- */

START_TEST(test_siphash_vectors)
{
	uint8_t key[16], msg[15];

	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 15; i++)
		msg[i] = (uint8_t)i;
	/* The reference implementation's vectors, lengths 0 and 15. */
	ck_assert_uint_eq(flyfs_siphash24(key, msg, 0), 0x726fdb47dd0e0e31ULL);
	ck_assert_uint_eq(flyfs_siphash24(key, msg, 15), 0xa129ca6149be45e5ULL);
	ck_assert_uint_eq(flyfs_siphash24(key, msg, 8), 0x93f5f5799a932462ULL);
}
END_TEST

START_TEST(test_dir_hash_range)
{
	uint8_t key[16] = { 1, 2, 3 };
	char name[16];

	for (int i = 0; i < 10000; i++) {
		int n = snprintf(name, sizeof(name), "f%d", i);
		uint32_t h = flyfs_dir_hash(key, name, (size_t)n);
		ck_assert_uint_ne(h, 0);
		ck_assert_uint_le(h, 0x7fffffffu);
		/* A key is >= 2^32 (above the "." and ".." cookies). */
		ck_assert(FLYFS_DIR_KEY(h, 0) > FLYFS_DIR_COOKIE_DOTDOT);
		ck_assert((int64_t)FLYFS_DIR_KEY(h, 0xffffffffu) > 0);
	}
	/* Keyed: another key moves the hash. */
	ck_assert_uint_ne(flyfs_dir_hash(key, "abc", 3),
	    flyfs_dir_hash((uint8_t[16]){ 9 }, "abc", 3));
}
END_TEST

/* ---- superblock ------------------------------------------------------- */

START_TEST(test_sb_roundtrip)
{
	static _Alignas(4096) uint8_t blk[4096];
	struct flyfs_sb_info a, b;

	make_sbi(&a, RAM_BYTES);
	a.mount_count = 7;
	a.last_txid = 123456789012ULL;
	a.mount_time = -5;
	flyfs_sb_encode(&a, blk);
	ck_assert_int_eq(flyfs_sb_decode(blk, &b, err, sizeof(err)), 0);
	ck_assert_mem_eq(&a, &b, sizeof(a));
	/* The rest of the block is zero. */
	for (size_t i = sizeof(struct flyfs_super); i < 4096; i++)
		ck_assert_uint_eq(blk[i], 0);
	ck_assert_mem_eq(blk, "FLYFS_SB", 8);
}
END_TEST

static int
decode_err(const void *blk)
{
	struct flyfs_sb_info s;

	err[0] = '\0';
	return flyfs_sb_decode(blk, &s, err, sizeof(err));
}

START_TEST(test_sb_wrong_magic)
{
	static _Alignas(4096) uint8_t blk[4096];
	struct flyfs_sb_info a;

	make_sbi(&a, RAM_BYTES);
	flyfs_sb_encode(&a, blk);
	blk[0] ^= 0x20;
	ck_assert_int_eq(decode_err(blk), EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "not a flyfs filesystem"));
	memset(blk, 0, sizeof(blk));
	ck_assert_int_eq(decode_err(blk), EINVAL);
}
END_TEST

START_TEST(test_sb_bad_checksum)
{
	static _Alignas(4096) uint8_t blk[4096];
	struct flyfs_sb_info a;

	make_sbi(&a, RAM_BYTES);
	flyfs_sb_encode(&a, blk);
	blk[offsetof(struct flyfs_super, sb_label)] ^= 1;
	ck_assert_int_eq(decode_err(blk), EBADMSG);
	ck_assert_ptr_nonnull(strstr(err, "checksum mismatch"));
	flyfs_sb_encode(&a, blk);
	blk[offsetof(struct flyfs_super, sb_crc)] ^= 0x80;
	ck_assert_int_eq(decode_err(blk), EBADMSG);
}
END_TEST

START_TEST(test_sb_bad_version)
{
	static _Alignas(4096) uint8_t blk[4096];
	struct flyfs_sb_info a, b;

	make_sbi(&a, RAM_BYTES);
	a.version_major = 2;
	flyfs_sb_encode(&a, blk);
	ck_assert_int_eq(decode_err(blk), EOPNOTSUPP);
	ck_assert_ptr_nonnull(strstr(err, "unsupported flyfs format version 2"));
	/* A newer minor is fine. */
	make_sbi(&a, RAM_BYTES);
	a.version_minor = 9;
	flyfs_sb_encode(&a, blk);
	ck_assert_int_eq(flyfs_sb_decode(blk, &b, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_sb_features)
{
	static _Alignas(4096) uint8_t blk[4096];
	struct flyfs_sb_info a, b;

	make_sbi(&a, RAM_BYTES);
	a.feature_incompat |= 0x8000;
	flyfs_sb_encode(&a, blk);
	ck_assert_int_eq(decode_err(blk), EOPNOTSUPP);
	ck_assert_ptr_nonnull(strstr(err, "incompatible features 0x8000"));
	/* Unknown ro_compat: readable, read-only. */
	make_sbi(&a, RAM_BYTES);
	a.feature_ro_compat |= 0x4;
	flyfs_sb_encode(&a, blk);
	ck_assert_int_eq(flyfs_sb_decode(blk, &b, err, sizeof(err)), 0);
	ck_assert(b.read_only);
	/* Unknown compat: fully usable. */
	make_sbi(&a, RAM_BYTES);
	a.feature_compat |= 0x4;
	flyfs_sb_encode(&a, blk);
	ck_assert_int_eq(flyfs_sb_decode(blk, &b, err, sizeof(err)), 0);
	ck_assert(!b.read_only);
}
END_TEST

/* One impossible value per iteration of the loop test. */
static void
corrupt_geometry(struct flyfs_sb_info *s, int which)
{
	switch (which) {
	case 0: s->block_size = 8192; break;
	case 1: s->data_block_size = 12288; break;
	case 2: s->data_block_size = 2048; break;
	case 3: s->data_block_size = 1u << 20; break;
	case 4: s->block_count = 100; s->group_count = 1;
		s->backup_block = 99; break;
	case 5: s->block_count = FLYFS_MAX_BLOCKS + 1; break;
	case 6: s->group_count++; break;
	case 7: s->gdt_blocks = 0; break;
	case 8: s->bitmap_start = 1; break;
	case 9: s->backup_block = 5; break;
	case 10: s->journal_blocks = 10; break;
	case 11: s->journal_start = s->block_count - 100; break;
	case 12: s->ifile_start = 1; break;
	case 13: s->ifile_start = s->journal_start + 1; break;
	case 14: s->inode_size = 128; break;
	case 15: s->free_blocks = s->block_count + 1; break;
	case 16: s->root_ino = 2; break;
	case 17: s->inode_count = 17; break;
	case 18: s->free_inodes = s->inode_count; break;
	case 19: s->csum_seed ^= 1; break;
	case 20: s->label[0] = 'x'; break;	/* see the raw fix-up below */
	case 21: s->default_comp = 7; break;
	case 22: s->default_comp = FLYFS_COMP_ZSTD;
		s->default_comp_level = 3; break;	/* flag missing */
	case 23: s->default_comp = FLYFS_COMP_ZSTD;
		s->feature_incompat |= FLYFS_FEATURE_INCOMPAT_ZSTD;
		s->default_comp_level = 20; break;
	case 24: s->default_comp_level = 1; break;
	case 25: s->group_blocks = 32768; break;
	case 26: s->journal_start = UINT64_MAX - 10; break;
	}
}
#define N_GEOMETRY_CASES 27

START_TEST(test_sb_impossible_sizes)
{
	static _Alignas(4096) uint8_t blk[4096];
	struct flyfs_sb_info a;

	make_sbi(&a, RAM_BYTES);
	corrupt_geometry(&a, _i);
	flyfs_sb_encode(&a, blk);
	if (_i == 20) {
		/* encode always terminates the label: break it in the bytes */
		struct flyfs_super *sb = (struct flyfs_super *)blk;

		memset(sb->sb_label, 'x', sizeof(sb->sb_label));
		sb->sb_crc = 0;
		le32_set(&sb->sb_crc, flyfs_crc32c(0, sb, sizeof(*sb)));
	}
	ck_assert_msg(decode_err(blk) == EUCLEAN, "case %d: decoded (%s)",
	    _i, err);
	ck_assert_msg(strlen(err) > 10, "case %d: no message", _i);
}
END_TEST

START_TEST(test_sb_truncated_image)
{
	static _Alignas(4096) uint8_t blk[4096];
	struct flyfs_sb_info a, b;

	/* A superblock for 32 MiB on the 16 MiB device. */
	make_sbi(&a, 2 * RAM_BYTES);
	flyfs_sb_encode(&a, blk);
	ck_assert_int_eq(blockdev_pwrite(bd, blk, 4096, 0), 0);
	ck_assert_int_eq(flyfs_sb_read(bd, 0, &b, err, sizeof(err)), ENXIO);
	ck_assert_ptr_nonnull(strstr(err, "truncated"));
	ck_assert_int_eq(flyfs_sb_check_device(&a, 2 * RAM_BYTES - 4096, NULL,
	    0), ENXIO);
	ck_assert_int_eq(flyfs_sb_check_device(&a, 2 * RAM_BYTES, NULL, 0), 0);
	/* Reading past the end is refused, not attempted. */
	ck_assert_int_eq(flyfs_sb_read(bd, RAM_BYTES / 4096, &b, err,
	    sizeof(err)), ENXIO);
	/* And the right size reads back. */
	make_sbi(&a, RAM_BYTES);
	flyfs_sb_encode(&a, blk);
	ck_assert_int_eq(blockdev_pwrite(bd, blk, 4096, 0), 0);
	ck_assert_int_eq(flyfs_sb_read(bd, 0, &b, err, sizeof(err)), 0);
	ck_assert_uint_eq(b.block_count, RAM_BYTES / 4096);
}
END_TEST

START_TEST(test_sb_plan_large)
{
	struct flyfs_sb_info a;
	static _Alignas(4096) uint8_t blk[4096];
	struct flyfs_sb_info b;

	/* 16 TiB and the 1 PiB maximum plan and decode cleanly. */
	make_sbi(&a, 16ULL << 40);
	ck_assert_uint_eq(a.block_count, 1ULL << 32);
	ck_assert_uint_eq(a.group_count, 132105);
	ck_assert_uint_eq(a.gdt_blocks, 521);
	ck_assert_uint_eq(a.journal_blocks, 262144);
	flyfs_sb_encode(&a, blk);
	ck_assert_int_eq(flyfs_sb_decode(blk, &b, err, sizeof(err)), 0);
	make_sbi(&a, FLYFS_MAX_BLOCKS * 4096);
	flyfs_sb_encode(&a, blk);
	ck_assert_int_eq(flyfs_sb_decode(blk, &b, err, sizeof(err)), 0);
}
END_TEST

/* ---- metadata blocks and inodes ----------------------------------------- */

START_TEST(test_mblock_check)
{
	static _Alignas(4096) uint8_t blk[4096];
	const uint32_t seed = 0xabcdef01;

	for (int i = 32; i < 4096; i++)
		blk[i] = (uint8_t)(i * 7);
	flyfs_mblock_seal(blk, FLYFS_MB_DIR, 1234, 5, 16, seed);
	ck_assert_mem_eq(blk, "FDIR", 4);
	ck_assert_int_eq(flyfs_mblock_check(blk, FLYFS_MB_DIR, 1234, seed, err,
	    sizeof(err)), 0);
	/* Read from another place: misdirected. */
	ck_assert_int_eq(flyfs_mblock_check(blk, FLYFS_MB_DIR, 1235, seed, err,
	    sizeof(err)), EUCLEAN);
	ck_assert_ptr_nonnull(strstr(err, "says it is block 1234"));
	/* Expected another kind of block. */
	ck_assert_int_eq(flyfs_mblock_check(blk, FLYFS_MB_EXTENT, 1234, seed,
	    err, sizeof(err)), EUCLEAN);
	ck_assert_ptr_nonnull(strstr(err, "expected a FEXT block, found "
	    "magic FDIR"));
	/* Another filesystem's block (other seed). */
	ck_assert_int_eq(flyfs_mblock_check(blk, FLYFS_MB_DIR, 1234, seed + 1,
	    err, sizeof(err)), EBADMSG);
	/* A torn or flipped byte anywhere. */
	blk[4095] ^= 1;
	ck_assert_int_eq(flyfs_mblock_check(blk, FLYFS_MB_DIR, 1234, seed, err,
	    sizeof(err)), EBADMSG);
	ck_assert_ptr_nonnull(strstr(err, "checksum mismatch"));
}
END_TEST

START_TEST(test_inode_check)
{
	struct flyfs_inode ino;
	const uint32_t seed = 42;

	memset(&ino, 0, sizeof(ino));
	ck_assert(flyfs_inode_is_free(&ino));
	ck_assert_int_eq(flyfs_inode_check(&ino, 20, seed, err, sizeof(err)),
	    EUCLEAN);
	le64_set(&ino.i_ino, 20);
	le32_set(&ino.i_mode, 0100644);
	le64_set(&ino.i_size, 99);
	flyfs_inode_seal(&ino, seed);
	ck_assert(!flyfs_inode_is_free(&ino));
	ck_assert_int_eq(flyfs_inode_check(&ino, 20, seed, err, sizeof(err)), 0);
	ck_assert_int_eq(flyfs_inode_check(&ino, 21, seed, err, sizeof(err)),
	    EUCLEAN);
	ck_assert_ptr_nonnull(strstr(err, "says it is inode 20"));
	ino.i_reserved[1] = 1;
	ck_assert_int_eq(flyfs_inode_check(&ino, 20, seed, err, sizeof(err)),
	    EBADMSG);
}
END_TEST

static Suite *
format_suite(void)
{
	Suite *s = suite_create("format");
	TCase *tc;

#define TC(name, fn) do {						\
	tc = tcase_create(name);					\
	tcase_add_test(tc, fn);						\
	suite_add_tcase(s, tc);						\
} while (0)
	TC("layout_sizes", test_layout_sizes);
	TC("layout_offsets", test_layout_offsets);
	TC("le_helpers", test_le_helpers);
	TC("crc32c_vectors", test_crc32c_vectors);
	TC("crc32c_chaining_and_paths", test_crc32c_chaining_and_paths);
	TC("siphash_vectors", test_siphash_vectors);
	TC("dir_hash_range", test_dir_hash_range);
	TC("sb_roundtrip", test_sb_roundtrip);
	TC("sb_wrong_magic", test_sb_wrong_magic);
	TC("sb_bad_checksum", test_sb_bad_checksum);
	TC("sb_bad_version", test_sb_bad_version);
	TC("sb_features", test_sb_features);
	tc = tcase_create("sb_impossible_sizes");
	tcase_add_loop_test(tc, test_sb_impossible_sizes, 0, N_GEOMETRY_CASES);
	suite_add_tcase(s, tc);
	tc = tcase_create("sb_truncated_image");
	tcase_add_checked_fixture(tc, ram_setup, ram_teardown);
	tcase_add_test(tc, test_sb_truncated_image);
	suite_add_tcase(s, tc);
	TC("sb_plan_large", test_sb_plan_large);
	TC("mblock_check", test_mblock_check);
	TC("inode_check", test_inode_check);
#undef TC
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(format_suite());
	int failed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
