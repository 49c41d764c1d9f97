/*
 * format.c - checksums, superblock codec and the checks that let the rest
 * of flyfs trust what it reads from the image.
 *
 * Everything that decides whether bytes from the image are a valid flyfs
 * structure lives here, so the filesystem, mkfs and fsck apply the same
 * rules and say the same thing when a rule is broken.  See format.h for the
 * error codes and docs/format.md for the format itself.
 */
#include "fs/format.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "blockdev/blockdev.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

int
flyfs_error(char *err, size_t errlen, int error, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return error;
}

/* ---- crc32c ------------------------------------------------------------ */

/*
 * Castagnoli polynomial, reflected.  The table is built once at first use
 * rather than spelled out: 8 KiB of constants in the source would say
 * nothing the ten lines of crc32c_init() do not.
 */
#define CRC32C_POLY	0x82f63b78u

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void
crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1)));
		crc32c_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc32c_table[t][i] = (crc32c_table[t - 1][i] >> 8) ^
			    crc32c_table[0][crc32c_table[t - 1][i] & 0xff];
}

/* Slicing-by-8 on the raw (non-inverted) register value. */
static uint32_t
crc32c_sw_raw(uint32_t c, const uint8_t *p, size_t len)
{
	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		c = crc32c_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
		len--;
	}
	while (len >= 8) {
		uint64_t w = le64_load(p) ^ c;
		c = crc32c_table[7][w & 0xff] ^
		    crc32c_table[6][(w >> 8) & 0xff] ^
		    crc32c_table[5][(w >> 16) & 0xff] ^
		    crc32c_table[4][(w >> 24) & 0xff] ^
		    crc32c_table[3][(w >> 32) & 0xff] ^
		    crc32c_table[2][(w >> 40) & 0xff] ^
		    crc32c_table[1][(w >> 48) & 0xff] ^
		    crc32c_table[0][(w >> 56) & 0xff];
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		c = crc32c_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

uint32_t
flyfs_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc32c_once, crc32c_init);
	return ~crc32c_sw_raw(~crc, buf, len);
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t
crc32c_hw_raw(uint32_t c, const uint8_t *p, size_t len)
{
	uint64_t c64;

	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		c = _mm_crc32_u8(c, *p++);
		len--;
	}
	c64 = c;
	while (len >= 8) {
		c64 = _mm_crc32_u64(c64, le64_load(p));
		p += 8;
		len -= 8;
	}
	c = (uint32_t)c64;
	while (len-- > 0)
		c = _mm_crc32_u8(c, *p++);
	return c;
}

bool
flyfs_crc32c_hw_available(void)
{
	return __builtin_cpu_supports("sse4.2");
}

uint32_t
flyfs_crc32c(uint32_t crc, const void *buf, size_t len)
{
	if (__builtin_cpu_supports("sse4.2"))
		return ~crc32c_hw_raw(~crc, buf, len);
	return flyfs_crc32c_sw(crc, buf, len);
}
#else
bool
flyfs_crc32c_hw_available(void)
{
	return false;
}

uint32_t
flyfs_crc32c(uint32_t crc, const void *buf, size_t len)
{
	return flyfs_crc32c_sw(crc, buf, len);
}
#endif

/*
 * crc32c of LEN bytes at BUF with the 4-byte field at CRC_OFF taken as zero,
 * so a checksum can be verified without copying or modifying the buffer.
 */
static uint32_t
csum_skip_field(uint32_t seed, const void *buf, size_t len, size_t crc_off)
{
	static const uint8_t zero[4];
	const uint8_t *p = buf;
	uint32_t c;

	c = flyfs_crc32c(seed, p, crc_off);
	c = flyfs_crc32c(c, zero, sizeof(zero));
	return flyfs_crc32c(c, p + crc_off + 4, len - crc_off - 4);
}

/* ---- Superblock -------------------------------------------------------- */

static bool
is_pow2(uint64_t v)
{
	return v != 0 && (v & (v - 1)) == 0;
}

void
flyfs_sb_encode(const struct flyfs_sb_info *sbi, void *blk)
{
	struct flyfs_super *sb = blk;

	memset(blk, 0, FLYFS_BLOCK_SIZE);
	le64_set(&sb->sb_magic, FLYFS_SUPER_MAGIC);
	le32_set(&sb->sb_size, sizeof(*sb));
	le16_set(&sb->sb_version_major, sbi->version_major);
	le16_set(&sb->sb_version_minor, sbi->version_minor);
	le32_set(&sb->sb_state, sbi->state);
	le64_set(&sb->sb_feature_compat, sbi->feature_compat);
	le64_set(&sb->sb_feature_ro_compat, sbi->feature_ro_compat);
	le64_set(&sb->sb_feature_incompat, sbi->feature_incompat);
	memcpy(sb->sb_uuid, sbi->uuid, FLYFS_UUID_SIZE);
	memcpy(sb->sb_label, sbi->label,
	    strnlen(sbi->label, FLYFS_LABEL_MAX));
	le32_set(&sb->sb_block_size, sbi->block_size);
	le32_set(&sb->sb_data_block_size, sbi->data_block_size);
	le64_set(&sb->sb_block_count, sbi->block_count);
	le64_set(&sb->sb_free_blocks, sbi->free_blocks);
	le64_set(&sb->sb_inode_count, sbi->inode_count);
	le64_set(&sb->sb_free_inodes, sbi->free_inodes);
	le32_set(&sb->sb_group_blocks, sbi->group_blocks);
	le32_set(&sb->sb_group_count, sbi->group_count);
	le64_set(&sb->sb_gdt_start, sbi->gdt_start);
	le32_set(&sb->sb_gdt_blocks, sbi->gdt_blocks);
	le32_set(&sb->sb_inode_size, sbi->inode_size);
	le64_set(&sb->sb_bitmap_start, sbi->bitmap_start);
	le64_set(&sb->sb_ifile_start, sbi->ifile_start);
	le64_set(&sb->sb_journal_start, sbi->journal_start);
	le64_set(&sb->sb_journal_blocks, sbi->journal_blocks);
	le64_set(&sb->sb_root_ino, sbi->root_ino);
	le64_set(&sb->sb_first_ino, sbi->first_ino);
	le32_set(&sb->sb_csum_seed, sbi->csum_seed);
	sb->sb_default_comp = sbi->default_comp;
	sb->sb_default_comp_level = sbi->default_comp_level;
	memcpy(sb->sb_hash_key, sbi->hash_key, sizeof(sb->sb_hash_key));
	le64_set(&sb->sb_mkfs_time, (uint64_t)sbi->mkfs_time);
	le64_set(&sb->sb_write_time, (uint64_t)sbi->write_time);
	le64_set(&sb->sb_mount_time, (uint64_t)sbi->mount_time);
	le32_set(&sb->sb_mount_count, sbi->mount_count);
	le32_set(&sb->sb_error_count, sbi->error_count);
	le64_set(&sb->sb_last_txid, sbi->last_txid);
	le64_set(&sb->sb_backup_block, sbi->backup_block);
	le32_set(&sb->sb_crc, csum_skip_field(0, sb, sizeof(*sb),
	    offsetof(struct flyfs_super, sb_crc)));
}

static void
sb_unpack(const struct flyfs_super *sb, struct flyfs_sb_info *sbi)
{
	memset(sbi, 0, sizeof(*sbi));
	sbi->version_major = le16_get(sb->sb_version_major);
	sbi->version_minor = le16_get(sb->sb_version_minor);
	sbi->state = le32_get(sb->sb_state);
	sbi->feature_compat = le64_get(sb->sb_feature_compat);
	sbi->feature_ro_compat = le64_get(sb->sb_feature_ro_compat);
	sbi->feature_incompat = le64_get(sb->sb_feature_incompat);
	memcpy(sbi->uuid, sb->sb_uuid, FLYFS_UUID_SIZE);
	memcpy(sbi->label, sb->sb_label, FLYFS_LABEL_SIZE);
	sbi->block_size = le32_get(sb->sb_block_size);
	sbi->data_block_size = le32_get(sb->sb_data_block_size);
	sbi->block_count = le64_get(sb->sb_block_count);
	sbi->free_blocks = le64_get(sb->sb_free_blocks);
	sbi->inode_count = le64_get(sb->sb_inode_count);
	sbi->free_inodes = le64_get(sb->sb_free_inodes);
	sbi->group_blocks = le32_get(sb->sb_group_blocks);
	sbi->group_count = le32_get(sb->sb_group_count);
	sbi->gdt_start = le64_get(sb->sb_gdt_start);
	sbi->gdt_blocks = le32_get(sb->sb_gdt_blocks);
	sbi->inode_size = le32_get(sb->sb_inode_size);
	sbi->bitmap_start = le64_get(sb->sb_bitmap_start);
	sbi->ifile_start = le64_get(sb->sb_ifile_start);
	sbi->journal_start = le64_get(sb->sb_journal_start);
	sbi->journal_blocks = le64_get(sb->sb_journal_blocks);
	sbi->root_ino = le64_get(sb->sb_root_ino);
	sbi->first_ino = le64_get(sb->sb_first_ino);
	sbi->csum_seed = le32_get(sb->sb_csum_seed);
	sbi->default_comp = sb->sb_default_comp;
	sbi->default_comp_level = sb->sb_default_comp_level;
	memcpy(sbi->hash_key, sb->sb_hash_key, sizeof(sbi->hash_key));
	sbi->mkfs_time = (int64_t)le64_get(sb->sb_mkfs_time);
	sbi->write_time = (int64_t)le64_get(sb->sb_write_time);
	sbi->mount_time = (int64_t)le64_get(sb->sb_mount_time);
	sbi->mount_count = le32_get(sb->sb_mount_count);
	sbi->error_count = le32_get(sb->sb_error_count);
	sbi->last_txid = le64_get(sb->sb_last_txid);
	sbi->backup_block = le64_get(sb->sb_backup_block);
}

int
flyfs_sb_decode(const void *blk, struct flyfs_sb_info *sbi,
    char *err, size_t errlen)
{
	const struct flyfs_super *sb = blk;
	uint64_t magic, unknown;
	uint32_t want, have;

	magic = le64_get(sb->sb_magic);
	if (magic != FLYFS_SUPER_MAGIC)
		return flyfs_error(err, errlen, EINVAL,
		    "not a flyfs filesystem: superblock magic is 0x%016" PRIx64
		    ", expected 0x%016" PRIx64 " (\"FLYFS_SB\")",
		    magic, (uint64_t)FLYFS_SUPER_MAGIC);
	if (le32_get(sb->sb_size) != sizeof(*sb))
		return flyfs_error(err, errlen, EUCLEAN,
		    "superblock size field is %" PRIu32 ", expected %zu",
		    le32_get(sb->sb_size), sizeof(*sb));
	have = le32_get(sb->sb_crc);
	want = csum_skip_field(0, sb, sizeof(*sb),
	    offsetof(struct flyfs_super, sb_crc));
	if (have != want)
		return flyfs_error(err, errlen, EBADMSG,
		    "superblock checksum mismatch: stored 0x%08" PRIx32
		    ", computed 0x%08" PRIx32 "; the superblock is damaged "
		    "(fsck.flyfs can restore it from the backup)", have, want);

	sb_unpack(sb, sbi);
	if (sbi->version_major != FLYFS_VERSION_MAJOR)
		return flyfs_error(err, errlen, EOPNOTSUPP,
		    "unsupported flyfs format version %u.%u (this build "
		    "reads version %u.x)", sbi->version_major,
		    sbi->version_minor, FLYFS_VERSION_MAJOR);
	unknown = sbi->feature_incompat & ~FLYFS_FEATURE_INCOMPAT_SUPP;
	if (unknown != 0)
		return flyfs_error(err, errlen, EOPNOTSUPP,
		    "unsupported incompatible features 0x%" PRIx64
		    " (this build knows 0x%" PRIx64 ")", unknown,
		    (uint64_t)FLYFS_FEATURE_INCOMPAT_SUPP);
	sbi->read_only =
	    (sbi->feature_ro_compat & ~FLYFS_FEATURE_RO_COMPAT_SUPP) != 0;
	return flyfs_sb_check_geometry(sbi, err, errlen);
}

/* Is [start, start+len) inside [lo, hi)?  Written to avoid overflow. */
static bool
region_within(uint64_t start, uint64_t len, uint64_t lo, uint64_t hi)
{
	return start >= lo && start <= hi && len <= hi - start;
}

int
flyfs_sb_check_geometry(const struct flyfs_sb_info *sbi,
    char *err, size_t errlen)
{
	uint64_t nb = sbi->block_count, meta_end;

	if (sbi->block_size != FLYFS_BLOCK_SIZE)
		return flyfs_error(err, errlen, EUCLEAN,
		    "impossible block size %" PRIu32 " (flyfs blocks are %u "
		    "bytes)", sbi->block_size, FLYFS_BLOCK_SIZE);
	if (!is_pow2(sbi->data_block_size) ||
	    sbi->data_block_size < FLYFS_DATA_BLOCK_MIN ||
	    sbi->data_block_size > FLYFS_DATA_BLOCK_MAX)
		return flyfs_error(err, errlen, EUCLEAN,
		    "impossible data block size %" PRIu32 " (a power of two "
		    "from %u to %u)", sbi->data_block_size,
		    FLYFS_DATA_BLOCK_MIN, FLYFS_DATA_BLOCK_MAX);
	if (nb < FLYFS_MIN_BLOCKS || nb > FLYFS_MAX_BLOCKS)
		return flyfs_error(err, errlen, EUCLEAN,
		    "impossible block count %" PRIu64 " (must be %llu to %llu)",
		    nb, FLYFS_MIN_BLOCKS, FLYFS_MAX_BLOCKS);
	if (sbi->inode_size != FLYFS_INODE_SIZE)
		return flyfs_error(err, errlen, EUCLEAN,
		    "impossible inode size %" PRIu32 " (expected %u)",
		    sbi->inode_size, FLYFS_INODE_SIZE);
	if (sbi->group_blocks != FLYFS_GROUP_BLOCKS ||
	    sbi->group_count != flyfs_group_count(nb))
		return flyfs_error(err, errlen, EUCLEAN,
		    "impossible group geometry: %" PRIu32 " groups of %" PRIu32
		    " blocks for %" PRIu64 " blocks (expected %" PRIu32
		    " of %zu)", sbi->group_count, sbi->group_blocks, nb,
		    flyfs_group_count(nb), (size_t)FLYFS_GROUP_BLOCKS);
	if (sbi->gdt_start != 1 ||
	    sbi->gdt_blocks != flyfs_gdt_blocks(sbi->group_count))
		return flyfs_error(err, errlen, EUCLEAN,
		    "impossible group descriptor table at block %" PRIu64
		    ", %" PRIu32 " blocks (expected block 1, %" PRIu32 ")",
		    sbi->gdt_start, sbi->gdt_blocks,
		    flyfs_gdt_blocks(sbi->group_count));
	if (sbi->bitmap_start != sbi->gdt_start + sbi->gdt_blocks)
		return flyfs_error(err, errlen, EUCLEAN,
		    "impossible block bitmap start %" PRIu64 " (expected %"
		    PRIu64 ")", sbi->bitmap_start,
		    sbi->gdt_start + sbi->gdt_blocks);
	meta_end = sbi->bitmap_start + sbi->group_count;
	if (sbi->backup_block != nb - 1)
		return flyfs_error(err, errlen, EUCLEAN,
		    "impossible backup superblock location %" PRIu64
		    " (expected the last block, %" PRIu64 ")",
		    sbi->backup_block, nb - 1);
	if (!region_within(sbi->ifile_start, 1, meta_end, nb - 1))
		return flyfs_error(err, errlen, EUCLEAN,
		    "inode file start %" PRIu64 " is outside the data area [%"
		    PRIu64 ", %" PRIu64 ")", sbi->ifile_start, meta_end,
		    nb - 1);
	if (sbi->journal_blocks < FLYFS_JOURNAL_MIN_BLOCKS ||
	    sbi->journal_blocks > FLYFS_JOURNAL_MAX_BLOCKS ||
	    !region_within(sbi->journal_start, sbi->journal_blocks,
	    meta_end, nb - 1))
		return flyfs_error(err, errlen, EUCLEAN,
		    "impossible journal: %" PRIu64 " blocks at block %" PRIu64
		    " (must be %llu..%llu blocks inside [%" PRIu64 ", %" PRIu64
		    "))", sbi->journal_blocks, sbi->journal_start,
		    FLYFS_JOURNAL_MIN_BLOCKS, FLYFS_JOURNAL_MAX_BLOCKS,
		    meta_end, nb - 1);
	if (sbi->ifile_start >= sbi->journal_start &&
	    sbi->ifile_start < sbi->journal_start + sbi->journal_blocks)
		return flyfs_error(err, errlen, EUCLEAN,
		    "inode file start %" PRIu64 " lies inside the journal",
		    sbi->ifile_start);
	if (sbi->free_blocks > nb)
		return flyfs_error(err, errlen, EUCLEAN,
		    "impossible free block count %" PRIu64 " > %" PRIu64
		    " blocks", sbi->free_blocks, nb);
	if (sbi->root_ino != FLYFS_INO_ROOT ||
	    sbi->first_ino != FLYFS_FIRST_INO)
		return flyfs_error(err, errlen, EUCLEAN,
		    "impossible reserved inodes: root %" PRIu64 ", first %"
		    PRIu64 " (expected %d, %d)", sbi->root_ino,
		    sbi->first_ino, FLYFS_INO_ROOT, FLYFS_FIRST_INO);
	if (sbi->inode_count <= FLYFS_FIRST_INO ||
	    sbi->inode_count > FLYFS_MAX_INO ||
	    sbi->inode_count % FLYFS_INODES_PER_BLOCK != 0 ||
	    sbi->free_inodes > sbi->inode_count - FLYFS_FIRST_INO)
		return flyfs_error(err, errlen, EUCLEAN,
		    "impossible inode counts: %" PRIu64 " inodes, %" PRIu64
		    " free", sbi->inode_count, sbi->free_inodes);
	if (sbi->csum_seed != flyfs_crc32c(0, sbi->uuid, FLYFS_UUID_SIZE))
		return flyfs_error(err, errlen, EUCLEAN,
		    "checksum seed 0x%08" PRIx32 " does not match the UUID",
		    sbi->csum_seed);
	if (memchr(sbi->label, 0, FLYFS_LABEL_SIZE) == NULL)
		return flyfs_error(err, errlen, EUCLEAN,
		    "label is not NUL terminated");
	if (sbi->default_comp == FLYFS_COMP_NONE) {
		if (sbi->default_comp_level != 0)
			return flyfs_error(err, errlen, EUCLEAN,
			    "compression level %u given without compression",
			    sbi->default_comp_level);
	} else if (sbi->default_comp == FLYFS_COMP_ZSTD) {
		if (sbi->default_comp_level < FLYFS_ZSTD_LEVEL_MIN ||
		    sbi->default_comp_level > FLYFS_ZSTD_LEVEL_MAX)
			return flyfs_error(err, errlen, EUCLEAN,
			    "impossible zstd level %u (must be %d..%d)",
			    sbi->default_comp_level, FLYFS_ZSTD_LEVEL_MIN,
			    FLYFS_ZSTD_LEVEL_MAX);
		if (!(sbi->feature_incompat & FLYFS_FEATURE_INCOMPAT_ZSTD))
			return flyfs_error(err, errlen, EUCLEAN,
			    "default compression is zstd but the zstd "
			    "feature flag is not set");
	} else {
		return flyfs_error(err, errlen, EUCLEAN,
		    "unknown default compression algorithm %u",
		    sbi->default_comp);
	}
	return 0;
}

int
flyfs_sb_check_device(const struct flyfs_sb_info *sbi, uint64_t dev_bytes,
    char *err, size_t errlen)
{
	uint64_t need = sbi->block_count * FLYFS_BLOCK_SIZE;

	if (dev_bytes < need)
		return flyfs_error(err, errlen, ENXIO,
		    "image is truncated: the superblock says %" PRIu64
		    " bytes (%" PRIu64 " blocks) but the image has %" PRIu64
		    " bytes", need, sbi->block_count, dev_bytes);
	return 0;
}

int
flyfs_sb_read(struct blockdev *bd, uint64_t blknr, struct flyfs_sb_info *sbi,
    char *err, size_t errlen)
{
	void *buf;
	int error;

	if ((blknr + 1) * FLYFS_BLOCK_SIZE > blockdev_size(bd))
		return flyfs_error(err, errlen, ENXIO,
		    "%s: block %" PRIu64 " is beyond the end of the image (%"
		    PRIu64 " bytes)", blockdev_path(bd), blknr,
		    blockdev_size(bd));
	buf = blockdev_alloc_buf(bd, FLYFS_BLOCK_SIZE);
	if (buf == NULL)
		return flyfs_error(err, errlen, ENOMEM, "out of memory");
	error = blockdev_pread(bd, buf, FLYFS_BLOCK_SIZE,
	    (off_t)(blknr * FLYFS_BLOCK_SIZE));
	if (error != 0) {
		flyfs_error(err, errlen, error, "%s: cannot read block %" PRIu64
		    ": %s", blockdev_path(bd), blknr, strerror(error));
		goto out;
	}
	error = flyfs_sb_decode(buf, sbi, err, errlen);
	if (error == 0)
		error = flyfs_sb_check_device(sbi, blockdev_size(bd), err,
		    errlen);
out:
	blockdev_free_buf(buf);
	return error;
}

/* ---- Metadata blocks and inodes ----------------------------------------- */

uint32_t
flyfs_mblock_csum(const void *blk, uint32_t seed)
{
	return csum_skip_field(seed, blk, FLYFS_BLOCK_SIZE,
	    offsetof(struct flyfs_mblock_hdr, mb_crc));
}

void
flyfs_mblock_seal(void *blk, uint32_t magic, uint64_t blocknr, uint64_t txid,
    uint64_t owner, uint32_t seed)
{
	struct flyfs_mblock_hdr *h = blk;

	le32_set(&h->mb_magic, magic);
	le64_set(&h->mb_blocknr, blocknr);
	le64_set(&h->mb_txid, txid);
	le64_set(&h->mb_owner, owner);
	le32_set(&h->mb_crc, flyfs_mblock_csum(blk, seed));
}

/* Render a magic as its four letters, or hex when they are not printable. */
static void
magic_name(uint32_t m, char out[12])
{
	for (int i = 0; i < 4; i++) {
		unsigned char c = (unsigned char)(m >> (8 * i));
		if (c < 0x20 || c > 0x7e) {
			snprintf(out, 12, "0x%08" PRIx32, m);
			return;
		}
		out[i] = (char)c;
	}
	out[4] = '\0';
}

int
flyfs_mblock_check(const void *blk, uint32_t magic, uint64_t blocknr,
    uint32_t seed, char *err, size_t errlen)
{
	const struct flyfs_mblock_hdr *h = blk;
	uint32_t have, want;
	char hm[12], wm[12];

	if (le32_get(h->mb_magic) != magic) {
		magic_name(le32_get(h->mb_magic), hm);
		magic_name(magic, wm);
		return flyfs_error(err, errlen, EUCLEAN,
		    "block %" PRIu64 ": expected a %s block, found magic %s",
		    blocknr, wm, hm);
	}
	if (le64_get(h->mb_blocknr) != blocknr)
		return flyfs_error(err, errlen, EUCLEAN,
		    "block %" PRIu64 " says it is block %" PRIu64
		    " (misdirected write or stale copy)", blocknr,
		    le64_get(h->mb_blocknr));
	have = le32_get(h->mb_crc);
	want = flyfs_mblock_csum(blk, seed);
	if (have != want)
		return flyfs_error(err, errlen, EBADMSG,
		    "block %" PRIu64 ": checksum mismatch (stored 0x%08" PRIx32
		    ", computed 0x%08" PRIx32 ")", blocknr, have, want);
	return 0;
}

uint32_t
flyfs_inode_csum(const struct flyfs_inode *ino, uint32_t seed)
{
	return csum_skip_field(seed, ino, sizeof(*ino),
	    offsetof(struct flyfs_inode, i_crc));
}

void
flyfs_inode_seal(struct flyfs_inode *ino, uint32_t seed)
{
	le32_set(&ino->i_crc, flyfs_inode_csum(ino, seed));
}

bool
flyfs_inode_is_free(const struct flyfs_inode *ino)
{
	const uint8_t *p = (const uint8_t *)ino;

	for (size_t i = 0; i < sizeof(*ino); i++)
		if (p[i] != 0)
			return false;
	return true;
}

int
flyfs_inode_check(const struct flyfs_inode *ino, uint64_t inum, uint32_t seed,
    char *err, size_t errlen)
{
	uint32_t have, want;

	if (flyfs_inode_is_free(ino))
		return flyfs_error(err, errlen, EUCLEAN,
		    "inode %" PRIu64 " is a free slot", inum);
	if (le64_get(ino->i_ino) != inum)
		return flyfs_error(err, errlen, EUCLEAN,
		    "inode %" PRIu64 " says it is inode %" PRIu64, inum,
		    le64_get(ino->i_ino));
	have = le32_get(ino->i_crc);
	want = flyfs_inode_csum(ino, seed);
	if (have != want)
		return flyfs_error(err, errlen, EBADMSG,
		    "inode %" PRIu64 ": checksum mismatch (stored 0x%08" PRIx32
		    ", computed 0x%08" PRIx32 ")", inum, have, want);
	return 0;
}

/* ---- Directory name hash ------------------------------------------------ */

#define ROTL64(x, b)	(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND(v0, v1, v2, v3) do {					\
	v0 += v1; v1 = ROTL64(v1, 13); v1 ^= v0; v0 = ROTL64(v0, 32);	\
	v2 += v3; v3 = ROTL64(v3, 16); v3 ^= v2;			\
	v0 += v3; v3 = ROTL64(v3, 21); v3 ^= v0;			\
	v2 += v1; v1 = ROTL64(v1, 17); v1 ^= v2; v2 = ROTL64(v2, 32);	\
} while (0)

/*
 * SipHash-2-4 (Aumasson and Bernstein).  A keyed hash, so that nobody who
 * does not know sb_hash_key can craft names that all collide and turn a
 * directory's O(log n) lookup into a scan of one collision run; crc32c is
 * linear and would not resist that.
 */
uint64_t
flyfs_siphash24(const uint8_t key[16], const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t k0 = le64_load(key), k1 = le64_load(key + 8);
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
	uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
	uint64_t v3 = 0x7465646279746573ULL ^ k1;
	uint64_t m, b = (uint64_t)len << 56;
	size_t left = len & 7;

	for (const uint8_t *end = p + (len - left); p != end; p += 8) {
		m = le64_load(p);
		v3 ^= m;
		SIPROUND(v0, v1, v2, v3);
		SIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	for (size_t i = 0; i < left; i++)
		b |= (uint64_t)p[i] << (8 * i);
	v3 ^= b;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	for (int i = 0; i < 4; i++)
		SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

uint32_t
flyfs_dir_hash(const uint8_t key[16], const char *name, size_t len)
{
	uint32_t h = (uint32_t)flyfs_siphash24(key, name, len) & 0x7fffffffu;

	return h == 0 ? 1 : h;
}
