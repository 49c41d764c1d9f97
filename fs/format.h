/*
 * format.h - encoding, decoding and checking of the on-disk format.
 *
 * This module owns the rules that turn bytes of fs/ondisk.h into trusted
 * values: crc32c, the little-endian accessors, the superblock (decoded into
 * struct flyfs_sb_info, in host order, after every check the format
 * allows), the metadata block header and the per-inode checksum, and the
 * directory name hash.  It does no I/O except flyfs_sb_read(), a
 * synchronous helper for mkfs, fsck and mount.
 *
 * Errors: every function that can fail returns 0 or a positive errno and,
 * when ERR is not NULL, writes one sentence into ERR saying what is wrong.
 *   EINVAL      not a flyfs superblock (wrong magic)
 *   EBADMSG     checksum mismatch
 *   EOPNOTSUPP  unsupported version or incompatible feature
 *   EUCLEAN     impossible values: sizes, geometry, wrong block number
 *   ENXIO       the image is smaller than the superblock says
 */
#ifndef FLYFS_FORMAT_H
#define FLYFS_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fs/ondisk.h"

struct blockdev;

/* ---- Little-endian accessors ------------------------------------------ */

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define FLYFS_LE(bits, x)	(x)
#else
#define FLYFS_LE(bits, x)	__builtin_bswap##bits(x)
#endif

static inline uint16_t le16_get(le16_t v) { return FLYFS_LE(16, v); }
static inline uint32_t le32_get(le32_t v) { return FLYFS_LE(32, v); }
static inline uint64_t le64_get(le64_t v) { return FLYFS_LE(64, v); }
static inline void le16_set(le16_t *p, uint16_t v) { *p = FLYFS_LE(16, v); }
static inline void le32_set(le32_t *p, uint32_t v) { *p = FLYFS_LE(32, v); }
static inline void le64_set(le64_t *p, uint64_t v) { *p = FLYFS_LE(64, v); }

/* Unaligned loads from a byte buffer (probing foreign signatures). */
static inline uint16_t le16_load(const void *p)
{ le16_t v; memcpy(&v, p, sizeof(v)); return le16_get(v); }
static inline uint32_t le32_load(const void *p)
{ le32_t v; memcpy(&v, p, sizeof(v)); return le32_get(v); }
static inline uint64_t le64_load(const void *p)
{ le64_t v; memcpy(&v, p, sizeof(v)); return le64_get(v); }

/* ---- crc32c (Castagnoli) ------------------------------------------------ */

/*
 * zlib convention: pass 0 to start, pass the previous result to continue.
 * flyfs_crc32c(0, "123456789", 9) == 0xe3069283.  Uses the SSE4.2 crc32
 * instruction when the CPU has it, a slicing-by-8 table otherwise.
 */
uint32_t flyfs_crc32c(uint32_t crc, const void *buf, size_t len);
/* The portable table path alone, for tests comparing the two. */
uint32_t flyfs_crc32c_sw(uint32_t crc, const void *buf, size_t len);
bool flyfs_crc32c_hw_available(void);

/* ---- Superblock ------------------------------------------------------- */

/* The superblock in host byte order.  Field meanings: struct flyfs_super. */
struct flyfs_sb_info {
	uint16_t version_major, version_minor;
	uint32_t state;
	uint64_t feature_compat, feature_ro_compat, feature_incompat;
	uint8_t uuid[FLYFS_UUID_SIZE];
	char label[FLYFS_LABEL_SIZE];		/* always NUL terminated */
	uint32_t block_size, data_block_size;
	uint64_t block_count, free_blocks;
	uint64_t inode_count, free_inodes;
	uint32_t group_blocks, group_count;
	uint64_t gdt_start;
	uint32_t gdt_blocks, inode_size;
	uint64_t bitmap_start, ifile_start;
	uint64_t journal_start, journal_blocks;
	uint64_t root_ino, first_ino;
	uint32_t csum_seed;
	uint8_t default_comp, default_comp_level;
	uint8_t hash_key[16];
	int64_t mkfs_time, write_time, mount_time;
	uint32_t mount_count, error_count;
	uint64_t last_txid, backup_block;

	/* Derived by decode, not stored. */
	bool read_only;		/* unknown ro_compat features: mount ro only */
};

/* Fill the 4 KiB block BLK from SBI (the rest zero) and set the checksum. */
void flyfs_sb_encode(const struct flyfs_sb_info *sbi, void *blk);

/*
 * Decode and check the superblock at the start of BLK: magic, checksum,
 * version, features, then geometry (flyfs_sb_check_geometry).  On success
 * *SBI holds it in host order.
 */
int flyfs_sb_decode(const void *blk, struct flyfs_sb_info *sbi,
    char *err, size_t errlen);

/*
 * Check that the sizes and the layout SBI describes are possible: block
 * sizes, counts within limits, regions inside the image and disjoint,
 * derived values (group count, descriptor blocks, checksum seed) agreeing.
 * Used by decode, and by mkfs on the layout it is about to write.
 */
int flyfs_sb_check_geometry(const struct flyfs_sb_info *sbi,
    char *err, size_t errlen);

/* ENXIO unless a device of DEV_BYTES holds the whole filesystem. */
int flyfs_sb_check_device(const struct flyfs_sb_info *sbi, uint64_t dev_bytes,
    char *err, size_t errlen);

/*
 * Read the superblock at block BLKNR of BD, decode it and check it against
 * the device size.  May sleep on the device.
 */
int flyfs_sb_read(struct blockdev *bd, uint64_t blknr,
    struct flyfs_sb_info *sbi, char *err, size_t errlen);

/* ---- Metadata blocks and inodes ----------------------------------------- */

/* crc32c of the 4 KiB block BLK seeded with SEED, mb_crc taken as zero. */
uint32_t flyfs_mblock_csum(const void *blk, uint32_t seed);

/* Fill the header of BLK and checksum the whole block (do this last). */
void flyfs_mblock_seal(void *blk, uint32_t magic, uint64_t blocknr,
    uint64_t txid, uint64_t owner, uint32_t seed);

/*
 * Check BLK, read from block BLOCKNR, is a MAGIC block that is intact and
 * belongs there: EUCLEAN (wrong magic or block number) or EBADMSG.
 */
int flyfs_mblock_check(const void *blk, uint32_t magic, uint64_t blocknr,
    uint32_t seed, char *err, size_t errlen);

uint32_t flyfs_inode_csum(const struct flyfs_inode *ino, uint32_t seed);
void flyfs_inode_seal(struct flyfs_inode *ino, uint32_t seed);
bool flyfs_inode_is_free(const struct flyfs_inode *ino);
/* A used slot for inode INO: EUCLEAN (wrong number or free) or EBADMSG. */
int flyfs_inode_check(const struct flyfs_inode *ino, uint64_t inum,
    uint32_t seed, char *err, size_t errlen);

/* ---- Directory name hash ------------------------------------------------ */

uint64_t flyfs_siphash24(const uint8_t key[16], const void *data, size_t len);
/* The 31-bit, never-zero hash in the high half of a directory key. */
uint32_t flyfs_dir_hash(const uint8_t key[16], const char *name, size_t len);

/* ---- Geometry helpers -------------------------------------------------- */

static inline uint32_t flyfs_group_of(uint64_t blk)
{
	return (uint32_t)(blk / FLYFS_GROUP_BLOCKS);
}

static inline uint64_t flyfs_group_first(uint32_t group)
{
	return (uint64_t)group * FLYFS_GROUP_BLOCKS;
}

/* Blocks in GROUP of a filesystem of BLOCK_COUNT blocks. */
static inline uint32_t flyfs_group_size(uint64_t block_count, uint32_t group)
{
	uint64_t left = block_count - flyfs_group_first(group);
	return left < FLYFS_GROUP_BLOCKS ? (uint32_t)left : FLYFS_GROUP_BLOCKS;
}

static inline uint32_t flyfs_group_count(uint64_t block_count)
{
	return (uint32_t)((block_count + FLYFS_GROUP_BLOCKS - 1) /
	    FLYFS_GROUP_BLOCKS);
}

static inline uint32_t flyfs_gdt_blocks(uint32_t group_count)
{
	return (uint32_t)((group_count + FLYFS_GD_PER_BLOCK - 1) /
	    FLYFS_GD_PER_BLOCK);
}

static inline bool flyfs_bit_test(const uint8_t *map, uint64_t bit)
{
	return (map[bit >> 3] >> (bit & 7)) & 1;
}

static inline void flyfs_bit_set(uint8_t *map, uint64_t bit)
{
	map[bit >> 3] |= (uint8_t)(1u << (bit & 7));
}

/* Write a printf-style sentence into ERR (if not NULL); returns ERROR. */
int flyfs_error(char *err, size_t errlen, int error, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif /* FLYFS_FORMAT_H */
