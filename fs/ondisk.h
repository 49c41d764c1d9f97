/*
 * ondisk.h - every structure flyfs stores in its image, and nothing else.
 *
 * This header is the single definition of the on-disk format, shared by the
 * filesystem, mkfs.flyfs and fsck.flyfs.  docs/format.md describes the same
 * bytes in prose and tables; when the two disagree this header wins and the
 * document is the bug.
 *
 * Rules every structure here follows:
 *   - fields are fixed-width and little-endian (le16_t/le32_t/le64_t are
 *     plain integers holding little-endian bytes; read and write them only
 *     through the le*_get/le*_set helpers of fs/format.h);
 *   - padding is explicit and must be written as zero;
 *   - sizes and the offsets of fields that other code or the document
 *     relies on are pinned by _Static_assert below each structure.
 *
 * Units: a "block" is FLYFS_BLOCK_SIZE (4 KiB) bytes.  It is the unit of
 * addressing, allocation and metadata.  A "data block" is the file data
 * buffer size chosen by mkfs -b (a power of two, 4..128 KiB); it is the unit
 * in which file data is cached, allocated on flush and compressed.  Every
 * block number on disk is a 64-bit count of 4 KiB blocks from the start of
 * the image; block 0 holds the superblock, so 0 doubles as "none".
 */
#ifndef FLYFS_ONDISK_H
#define FLYFS_ONDISK_H

#include <stddef.h>
#include <stdint.h>

typedef uint16_t le16_t;
typedef uint32_t le32_t;
typedef uint64_t le64_t;

/* ---- Format identity ------------------------------------------------ */

#define FLYFS_VERSION_MAJOR	1	/* a reader refuses any other major */
#define FLYFS_VERSION_MINOR	0	/* minors only add compat features */

/* "FLYFS_SB" read as a little-endian 64-bit integer. */
#define FLYFS_SUPER_MAGIC	0x42535f5346594c46ULL

/* ---- Geometry --------------------------------------------------------- */

#define FLYFS_BLOCK_SHIFT	12
#define FLYFS_BLOCK_SIZE	(1u << FLYFS_BLOCK_SHIFT)	/* 4096 */

#define FLYFS_DATA_BLOCK_MIN	4096u
#define FLYFS_DATA_BLOCK_MAX	131072u
#define FLYFS_DATA_BLOCK_DEFAULT 16384u

/*
 * Image size limits, in blocks.  The minimum leaves room for the smallest
 * journal plus working space; the maximum (1 PiB) is a policy bound well
 * above the 16 TiB the design promises, chosen so group numbers fit 32 bits
 * and the group descriptor table stays small.
 */
#define FLYFS_MIN_BLOCKS	2048ULL			/* 8 MiB */
#define FLYFS_MAX_BLOCKS	(1ULL << 38)		/* 1 PiB */

/* Journal size limits, in blocks. */
#define FLYFS_JOURNAL_MIN_BLOCKS 1024ULL		/* 4 MiB */
#define FLYFS_JOURNAL_MAX_BLOCKS (1ULL << 20)		/* 4 GiB */

#define FLYFS_LABEL_SIZE	64	/* bytes on disk, NUL padded */
#define FLYFS_LABEL_MAX		63	/* usable bytes: one NUL always follows */
#define FLYFS_UUID_SIZE		16
#define FLYFS_NAME_MAX		255	/* a directory entry name, bytes */
#define FLYFS_SYMLINK_MAX	4095	/* a symlink target, bytes */

/* ---- Feature flags ---------------------------------------------------- */

/*
 * compat:    a reader that does not know the bit may read and write.
 * ro_compat: a reader that does not know the bit may only mount read-only.
 * incompat:  a reader that does not know the bit must refuse the image.
 */
#define FLYFS_FEATURE_INCOMPAT_ZSTD	0x1ULL	/* zstd extents may exist */

#define FLYFS_FEATURE_COMPAT_SUPP	0ULL
#define FLYFS_FEATURE_RO_COMPAT_SUPP	0ULL
#define FLYFS_FEATURE_INCOMPAT_SUPP	FLYFS_FEATURE_INCOMPAT_ZSTD

/* sb_state bits (mutable, primary superblock only). */
#define FLYFS_STATE_CLEAN	0x1	/* unmounted cleanly; no fsck needed */
#define FLYFS_STATE_ERROR	0x2	/* the filesystem saw corruption */

/* Compression algorithms (sb_default_comp, e_comp). */
#define FLYFS_COMP_NONE		0
#define FLYFS_COMP_ZSTD		1
#define FLYFS_ZSTD_LEVEL_MIN	1
#define FLYFS_ZSTD_LEVEL_MAX	19
#define FLYFS_ZSTD_LEVEL_DEFAULT 3

/* ---- Reserved inode numbers ------------------------------------------ */

#define FLYFS_INO_IFILE		0	/* the inode file (never in a directory) */
#define FLYFS_INO_ROOT		1	/* root directory: FUSE's FUSE_ROOT_ID */
#define FLYFS_INO_IBITMAP	2	/* inode allocation bitmap file */
#define FLYFS_INO_ORPHAN	3	/* orphan file */
#define FLYFS_FIRST_INO		16	/* first inode for users; 4..15 reserved */
#define FLYFS_MAX_INO		((1ULL << 48) - 1)

/* ---- Superblock ------------------------------------------------------- */

/*
 * The superblock: 512 bytes at byte 0 of block 0 (primary) and of the last
 * block of the filesystem (backup).  The rest of both blocks is zero.
 * sb_crc is crc32c (initial value 0) over the 512 bytes with sb_crc zero.
 * The backup is written by mkfs and whenever a static field changes (label,
 * features, geometry); the counters and sb_state are current only in the
 * primary.
 */
struct flyfs_super {
	le64_t	sb_magic;		/*   0 FLYFS_SUPER_MAGIC */
	le32_t	sb_crc;			/*   8 crc32c of this structure */
	le32_t	sb_size;		/*  12 sizeof(struct flyfs_super) */
	le16_t	sb_version_major;	/*  16 */
	le16_t	sb_version_minor;	/*  18 */
	le32_t	sb_state;		/*  20 FLYFS_STATE_* */
	le64_t	sb_feature_compat;	/*  24 */
	le64_t	sb_feature_ro_compat;	/*  32 */
	le64_t	sb_feature_incompat;	/*  40 */
	uint8_t	sb_uuid[FLYFS_UUID_SIZE];	/*  48 */
	char	sb_label[FLYFS_LABEL_SIZE];	/*  64 NUL padded */
	le32_t	sb_block_size;		/* 128 4096 */
	le32_t	sb_data_block_size;	/* 132 mkfs -b */
	le64_t	sb_block_count;		/* 136 blocks in the filesystem */
	le64_t	sb_free_blocks;		/* 144 exact after a clean unmount */
	le64_t	sb_inode_count;		/* 152 inode slots in the inode file */
	le64_t	sb_free_inodes;		/* 160 free slots among those */
	le32_t	sb_group_blocks;	/* 168 blocks per allocation group */
	le32_t	sb_group_count;		/* 172 */
	le64_t	sb_gdt_start;		/* 176 first group descriptor block */
	le32_t	sb_gdt_blocks;		/* 184 */
	le32_t	sb_inode_size;		/* 188 256 */
	le64_t	sb_bitmap_start;	/* 192 block bitmap of group 0 */
	le64_t	sb_ifile_start;		/* 200 first inode file block (inode 0) */
	le64_t	sb_journal_start;	/* 208 journal superblock */
	le64_t	sb_journal_blocks;	/* 216 journal length, incl. its sb */
	le64_t	sb_root_ino;		/* 224 FLYFS_INO_ROOT */
	le64_t	sb_first_ino;		/* 232 FLYFS_FIRST_INO */
	le32_t	sb_csum_seed;		/* 240 crc32c(0, sb_uuid) */
	uint8_t	sb_default_comp;	/* 244 FLYFS_COMP_* for new files */
	uint8_t	sb_default_comp_level;	/* 245 */
	le16_t	sb_pad0;		/* 246 */
	uint8_t	sb_hash_key[16];	/* 248 SipHash key for directory names */
	le64_t	sb_mkfs_time;		/* 264 seconds since the epoch */
	le64_t	sb_write_time;		/* 272 last superblock write */
	le64_t	sb_mount_time;		/* 280 last mount, 0 = never */
	le32_t	sb_mount_count;		/* 288 */
	le32_t	sb_error_count;		/* 292 */
	le64_t	sb_last_txid;		/* 296 last committed transaction */
	le64_t	sb_backup_block;	/* 304 block of the backup superblock */
	uint8_t	sb_reserved[200];	/* 312 zero */
};
_Static_assert(sizeof(struct flyfs_super) == 512, "superblock size");
_Static_assert(offsetof(struct flyfs_super, sb_crc) == 8, "sb_crc");
_Static_assert(offsetof(struct flyfs_super, sb_uuid) == 48, "sb_uuid");
_Static_assert(offsetof(struct flyfs_super, sb_label) == 64, "sb_label");
_Static_assert(offsetof(struct flyfs_super, sb_block_size) == 128, "sb_bs");
_Static_assert(offsetof(struct flyfs_super, sb_group_blocks) == 168, "sb_gb");
_Static_assert(offsetof(struct flyfs_super, sb_csum_seed) == 240, "seed");
_Static_assert(offsetof(struct flyfs_super, sb_hash_key) == 248, "hkey");
_Static_assert(offsetof(struct flyfs_super, sb_backup_block) == 304, "bkp");
_Static_assert(offsetof(struct flyfs_super, sb_reserved) == 312, "rsv");

/* ---- Metadata block header ------------------------------------------- */

/*
 * Every metadata block except inode file blocks starts with this header.
 * mb_crc is crc32c seeded with sb_csum_seed over the whole 4 KiB block with
 * mb_crc taken as zero.  The seed makes a block left over from an earlier
 * filesystem in the same image fail its check; mb_blocknr makes a block
 * written to the wrong place (or read from the wrong place) fail it too.
 * Magic numbers are four ASCII letters, readable in a hexdump.
 */
struct flyfs_mblock_hdr {
	le32_t	mb_magic;		/*  0 FLYFS_MB_* */
	le32_t	mb_crc;			/*  4 */
	le64_t	mb_blocknr;		/*  8 this block's own number */
	le64_t	mb_txid;		/* 16 transaction that last wrote it */
	le64_t	mb_owner;		/* 24 owning inode, 0 = the filesystem */
};
_Static_assert(sizeof(struct flyfs_mblock_hdr) == 32, "mblock header");

#define FLYFS_MAGIC4(a, b, c, d) \
	((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | \
	 (uint32_t)(d) << 24)
#define FLYFS_MB_GDT		FLYFS_MAGIC4('F', 'G', 'D', 'T')
#define FLYFS_MB_BBITMAP	FLYFS_MAGIC4('F', 'B', 'B', 'M')
#define FLYFS_MB_IBITMAP	FLYFS_MAGIC4('F', 'I', 'B', 'M')
#define FLYFS_MB_EXTENT		FLYFS_MAGIC4('F', 'E', 'X', 'T')
#define FLYFS_MB_DIR		FLYFS_MAGIC4('F', 'D', 'I', 'R')
#define FLYFS_MB_XATTR		FLYFS_MAGIC4('F', 'X', 'A', 'T')
#define FLYFS_MB_ORPHAN		FLYFS_MAGIC4('F', 'O', 'R', 'P')
#define FLYFS_MB_JSUPER		FLYFS_MAGIC4('F', 'J', 'S', 'B')
#define FLYFS_MB_JDESC		FLYFS_MAGIC4('F', 'J', 'D', 'S')
#define FLYFS_MB_JCOMMIT	FLYFS_MAGIC4('F', 'J', 'C', 'M')
#define FLYFS_MB_JREVOKE	FLYFS_MAGIC4('F', 'J', 'R', 'V')

#define FLYFS_MB_PAYLOAD	(FLYFS_BLOCK_SIZE - sizeof(struct flyfs_mblock_hdr))

/* ---- Allocation: groups, descriptors, bitmaps ------------------------ */

/*
 * The image is cut into allocation groups of FLYFS_GROUP_BLOCKS blocks
 * (the last group may be shorter).  Group g's block bitmap is block
 * sb_bitmap_start + g; bit b of its payload (byte b/8, bit b%8) is block
 * g * FLYFS_GROUP_BLOCKS + b, 1 = in use.  Bits past the end of the
 * filesystem in the last group are 1.  A group's size is the number of bits
 * one bitmap block holds after its header, so a group never needs two.
 */
#define FLYFS_GROUP_BLOCKS	(FLYFS_MB_PAYLOAD * 8)		/* 32512 */

struct flyfs_group_desc {
	le32_t	gd_free_blocks;		/*  0 free blocks in the group */
	le32_t	gd_flags;		/*  4 FLYFS_GD_* */
	le64_t	gd_reserved;		/*  8 zero */
};
_Static_assert(sizeof(struct flyfs_group_desc) == 16, "group desc");

/*
 * The bitmap block was never written: every block of the group is free
 * (mkfs puts no metadata in such groups).  The first allocation writes a
 * zeroed bitmap and clears the flag in the same transaction.
 */
#define FLYFS_GD_BITMAP_UNINIT	0x1

#define FLYFS_GD_PER_BLOCK	(FLYFS_MB_PAYLOAD / sizeof(struct flyfs_group_desc))

struct flyfs_gdt_block {
	struct flyfs_mblock_hdr	gb_hdr;		/* FLYFS_MB_GDT */
	struct flyfs_group_desc	gb_desc[FLYFS_GD_PER_BLOCK];
};
_Static_assert(sizeof(struct flyfs_gdt_block) == FLYFS_BLOCK_SIZE, "gdt blk");
_Static_assert(FLYFS_GD_PER_BLOCK == 254, "descriptors per block");

/* Block bitmaps (FLYFS_MB_BBITMAP) and inode bitmaps (FLYFS_MB_IBITMAP). */
struct flyfs_bitmap_block {
	struct flyfs_mblock_hdr	bm_hdr;
	uint8_t			bm_bits[FLYFS_MB_PAYLOAD];
};
_Static_assert(sizeof(struct flyfs_bitmap_block) == FLYFS_BLOCK_SIZE, "bitmap");
_Static_assert(FLYFS_GROUP_BLOCKS == 32512, "group size");

#define FLYFS_INODES_PER_IBITMAP FLYFS_GROUP_BLOCKS	/* 32512 */

/* ---- Extents ---------------------------------------------------------- */

/*
 * File data is mapped by a B+tree of extents keyed by logical block (4 KiB
 * units).  A leaf record maps e_llen logical blocks from e_lblk to e_plen
 * physical blocks from e_pblk:
 *   - raw (e_comp == FLYFS_COMP_NONE): e_plen == e_llen, e_cbytes == 0;
 *   - compressed: exactly one data block (or the file's last, shorter data
 *     block), e_plen < e_llen, its bytes are one zstd frame of e_cbytes
 *     bytes at the start of e_pblk, decompressing to e_llen blocks (the
 *     tail of the last block beyond i_size is zero);
 *   - unwritten (FLYFS_EXT_UNWRITTEN): allocated by fallocate, reads as
 *     zeros; always raw.
 * Logical ranges not covered by a record are holes.
 */
struct flyfs_extent {
	le64_t	e_lblk;			/*  0 first logical block */
	le64_t	e_pblk;			/*  8 first physical block */
	le32_t	e_llen;			/* 16 logical length, blocks */
	le32_t	e_plen;			/* 20 physical length, blocks */
	uint8_t	e_comp;			/* 24 FLYFS_COMP_* */
	uint8_t	e_flags;		/* 25 FLYFS_EXT_* */
	le16_t	e_pad;			/* 26 zero */
	le32_t	e_cbytes;		/* 28 compressed bytes, 0 if raw */
};
_Static_assert(sizeof(struct flyfs_extent) == 32, "extent");

#define FLYFS_EXT_UNWRITTEN	0x1
#define FLYFS_EXT_MAX_LEN	(1u << 20)	/* blocks per record: 4 GiB */

/* Interior record: the subtree at ei_child holds keys >= ei_lblk. */
struct flyfs_extent_idx {
	le64_t	ei_lblk;
	le64_t	ei_child;
};
_Static_assert(sizeof(struct flyfs_extent_idx) == 16, "extent index");

/* Node header: in the inode's root area and after an FEXT block header. */
struct flyfs_extent_node {
	le16_t	en_magic;		/*  0 FLYFS_EXTENT_NODE_MAGIC */
	le16_t	en_count;		/*  2 records in use */
	le16_t	en_max;			/*  4 records that fit */
	le16_t	en_level;		/*  6 0 = leaf (extents), else index */
	le64_t	en_reserved;		/*  8 zero */
};
_Static_assert(sizeof(struct flyfs_extent_node) == 16, "extent node hdr");
#define FLYFS_EXTENT_NODE_MAGIC	0xf1e7

#define FLYFS_EXT_BLOCK_LEAF_MAX \
	((FLYFS_MB_PAYLOAD - sizeof(struct flyfs_extent_node)) / \
	 sizeof(struct flyfs_extent))				/* 126 */
#define FLYFS_EXT_BLOCK_IDX_MAX \
	((FLYFS_MB_PAYLOAD - sizeof(struct flyfs_extent_node)) / \
	 sizeof(struct flyfs_extent_idx))			/* 253 */
#define FLYFS_EXT_MAX_DEPTH	5	/* 3 * 253^4 * 126 leaves: ample */

#define FLYFS_MAX_FILE_SIZE	(1ULL << 48)	/* 256 TiB */

/* ---- Inodes ----------------------------------------------------------- */

/*
 * The inode root area, 112 bytes.  Its meaning depends on the file type:
 * an extent root for regular files, long symlinks and the system files; a
 * directory root for directories; an inline target for short symlinks
 * (FLYFS_IFL_INLINE); unused (zero) for devices, fifos and sockets.
 */
#define FLYFS_INODE_ROOT_SIZE	112
#define FLYFS_INODE_EXT_ROOT_MAX \
	((FLYFS_INODE_ROOT_SIZE - sizeof(struct flyfs_extent_node)) / \
	 sizeof(struct flyfs_extent))				/* 3 */
#define FLYFS_INLINE_SYMLINK_MAX FLYFS_INODE_ROOT_SIZE	/* no NUL stored */

struct flyfs_dir_root {
	le64_t	dr_root;		/*  0 root node block, 0 = empty dir */
	le64_t	dr_parent;		/*  8 parent directory inode ("..") */
	le64_t	dr_entries;		/* 16 entries, "." and ".." excluded */
	le16_t	dr_levels;		/* 24 tree height; 1 = root is a leaf */
	le16_t	dr_pad0;		/* 26 */
	le32_t	dr_pad1;		/* 28 */
	uint8_t	dr_reserved[80];	/* 32 zero */
};
_Static_assert(sizeof(struct flyfs_dir_root) == FLYFS_INODE_ROOT_SIZE, "dr");

/*
 * An inode: 256 bytes, 16 to a block of the inode file.  Inode N lives at
 * byte N * 256 of the inode file (inode 0), whose first block is
 * sb_ifile_start.  Inode file blocks carry no block header: each inode
 * carries its own crc32c (seeded, over 256 bytes with i_crc zero) and its
 * own number, which give the same protection per inode.  A free slot is
 * all zeros and has no checksum.
 */
struct flyfs_inode {
	le32_t	i_crc;			/*   0 */
	le32_t	i_mode;			/*   4 st_mode: type and permissions */
	le64_t	i_ino;			/*   8 this inode's number */
	le32_t	i_uid;			/*  16 */
	le32_t	i_gid;			/*  20 */
	le32_t	i_nlink;		/*  24 */
	le32_t	i_flags;		/*  28 FLYFS_IFL_* */
	le64_t	i_size;			/*  32 bytes */
	le64_t	i_blocks;		/*  40 4 KiB blocks held, incl. metadata */
	le64_t	i_atime;		/*  48 seconds, signed */
	le64_t	i_mtime;		/*  56 */
	le64_t	i_ctime;		/*  64 */
	le64_t	i_btime;		/*  72 creation time */
	le32_t	i_atime_ns;		/*  80 nanoseconds */
	le32_t	i_mtime_ns;		/*  84 */
	le32_t	i_ctime_ns;		/*  88 */
	le32_t	i_btime_ns;		/*  92 */
	le32_t	i_generation;		/*  96 bumped when the slot is reused */
	le32_t	i_rdev_major;		/* 100 char/block devices */
	le32_t	i_rdev_minor;		/* 104 */
	uint8_t	i_comp;			/* 108 FLYFS_COMP_* for new data */
	uint8_t	i_comp_level;		/* 109 */
	le16_t	i_pad0;			/* 110 */
	le64_t	i_xattr_block;		/* 112 xattr block, 0 = none */
	le64_t	i_txid;			/* 120 last transaction changing it */
	union {				/* 128 */
		uint8_t			i_root_raw[FLYFS_INODE_ROOT_SIZE];
		struct {
			struct flyfs_extent_node i_ext_hdr;
			struct flyfs_extent	 i_ext[FLYFS_INODE_EXT_ROOT_MAX];
		};
		struct flyfs_dir_root	i_dir;
		char			i_symlink[FLYFS_INLINE_SYMLINK_MAX];
	};
	le64_t	i_reserved[2];		/* 240 zero */
};
_Static_assert(sizeof(struct flyfs_inode) == 256, "inode size");
_Static_assert(offsetof(struct flyfs_inode, i_ino) == 8, "i_ino");
_Static_assert(offsetof(struct flyfs_inode, i_size) == 32, "i_size");
_Static_assert(offsetof(struct flyfs_inode, i_generation) == 96, "i_gen");
_Static_assert(offsetof(struct flyfs_inode, i_xattr_block) == 112, "i_xattr");
_Static_assert(offsetof(struct flyfs_inode, i_ext_hdr) == 128, "i_root");
_Static_assert(offsetof(struct flyfs_inode, i_reserved) == 240, "i_rsv");

#define FLYFS_INODE_SIZE	256u
#define FLYFS_INODES_PER_BLOCK	(FLYFS_BLOCK_SIZE / FLYFS_INODE_SIZE)	/* 16 */

/* i_flags */
#define FLYFS_IFL_SYSTEM	0x01	/* inodes 0, 2, 3: not in the namespace */
#define FLYFS_IFL_INLINE	0x02	/* symlink target is in i_symlink */
#define FLYFS_IFL_ORPHAN	0x04	/* listed in the orphan file */
#define FLYFS_IFL_NOCOMP	0x08	/* never compress this file's data */
#define FLYFS_IFL_KNOWN		0x0f

/* ---- Directories ------------------------------------------------------ */

/*
 * A directory is a B+tree of metadata blocks (FLYFS_MB_DIR) rooted at
 * i_dir.dr_root and keyed by a 64-bit key: the name's 31-bit hash (SipHash
 * -2-4 keyed by sb_hash_key, low 31 bits, 0 replaced by 1) in the high 32
 * bits and a collision minor in the low 32.  A new name takes the lowest
 * minor not used by another entry of the same hash; keys never change while
 * the entry lives, so the key is the readdir offset (cookie) and stays valid
 * while the directory changes.  Cookies 1 and 2 are "." and ".." (not
 * stored; ".." is dr_parent) and every stored key is >= 2^32.
 */
struct flyfs_dir_node {
	le16_t	dn_count;		/*  0 records in this node */
	le16_t	dn_level;		/*  2 0 = leaf */
	le16_t	dn_used;		/*  4 leaf: bytes of records in use */
	le16_t	dn_pad;			/*  6 */
	le64_t	dn_next;		/*  8 leaf: right sibling, 0 = last */
};
_Static_assert(sizeof(struct flyfs_dir_node) == 16, "dir node");

/*
 * Leaf record, 8-byte aligned, sorted by de_key, packed from the node
 * header on: 24 bytes then the name (not NUL terminated), padded with
 * zeros to a multiple of 8.  de_type is the DT_* value of the target.
 */
struct flyfs_dirent {
	le64_t	de_key;			/*  0 */
	le64_t	de_ino;			/*  8 */
	uint8_t	de_name_len;		/* 16 1..255 */
	uint8_t	de_type;		/* 17 DT_* */
	le16_t	de_pad0;		/* 18 */
	le32_t	de_pad1;		/* 20 */
	char	de_name[];		/* 24 */
};
_Static_assert(sizeof(struct flyfs_dirent) == 24, "dirent");
#define FLYFS_DIRENT_SIZE(namelen) (((size_t)24 + (namelen) + 7) & ~(size_t)7)
#define FLYFS_DIR_LEAF_SPACE \
	(FLYFS_MB_PAYLOAD - sizeof(struct flyfs_dir_node))	/* 4048 */

/* Interior record: the subtree at di_child holds keys >= di_key. */
struct flyfs_dir_idx {
	le64_t	di_key;
	le64_t	di_child;
};
_Static_assert(sizeof(struct flyfs_dir_idx) == 16, "dir idx");

#define FLYFS_DIR_HASH_MAJOR(key)	((uint32_t)((key) >> 32))
#define FLYFS_DIR_KEY(hash, minor)	((uint64_t)(hash) << 32 | (minor))
#define FLYFS_DIR_COOKIE_DOT		1
#define FLYFS_DIR_COOKIE_DOTDOT		2

/* ---- Extended attributes ---------------------------------------------- */

/*
 * An inode's xattrs live in one block (FLYFS_MB_XATTR) at i_xattr_block:
 * after the header, records sorted by (namespace, name), each 8 bytes then
 * the name then the value, padded to 8.  Names are stored without their
 * namespace prefix ("user.").  A value is at most what fits the block.
 */
struct flyfs_xattr_hdr {
	le16_t	xh_count;		/* 0 records */
	le16_t	xh_used;		/* 2 bytes of records in use */
	le32_t	xh_pad;			/* 4 */
	le64_t	xh_reserved;		/* 8 zero */
};
_Static_assert(sizeof(struct flyfs_xattr_hdr) == 16, "xattr hdr");

struct flyfs_xattr_entry {
	uint8_t	xe_ns;			/* 0 FLYFS_XATTR_NS_* */
	uint8_t	xe_name_len;		/* 1 1..255 */
	le16_t	xe_value_len;		/* 2 */
	le32_t	xe_pad;			/* 4 zero */
	char	xe_data[];		/* 8 name, then value */
};
_Static_assert(sizeof(struct flyfs_xattr_entry) == 8, "xattr entry");
#define FLYFS_XATTR_NS_USER	1
#define FLYFS_XATTR_NS_TRUSTED	2
#define FLYFS_XATTR_NS_SECURITY	3
#define FLYFS_XATTR_SPACE \
	(FLYFS_MB_PAYLOAD - sizeof(struct flyfs_xattr_hdr))	/* 4048 */
#define FLYFS_XATTR_ENTRY_SIZE(nl, vl) (((size_t)8 + (nl) + (vl) + 7) & ~(size_t)7)

/* ---- Orphans ---------------------------------------------------------- */

/*
 * The orphan file (inode 3) is an array of slots: blocks of FLYFS_MB_ORPHAN
 * after which come 64-bit inode numbers, 0 = free slot.  An inode whose
 * last link goes while it is open gets a slot (and FLYFS_IFL_ORPHAN) in the
 * same transaction as the unlink; mount reclaims every listed inode.  A
 * slot array rather than a chain through the inodes means adding or
 * removing an orphan touches one block and no other inode.
 */
struct flyfs_orphan_block {
	struct flyfs_mblock_hdr	ob_hdr;
	le32_t	ob_count;		/* slots in use in this block */
	le32_t	ob_pad;
	le64_t	ob_reserved;
	le64_t	ob_ino[(FLYFS_MB_PAYLOAD - 16) / 8];
};
_Static_assert(sizeof(struct flyfs_orphan_block) == FLYFS_BLOCK_SIZE, "orph");
#define FLYFS_ORPHANS_PER_BLOCK	((FLYFS_MB_PAYLOAD - 16) / 8)	/* 506 */

/* ---- Journal ---------------------------------------------------------- */

/*
 * The journal is sb_journal_blocks contiguous blocks from sb_journal_start.
 * Its first block is the journal superblock; the rest is a circular log of
 * transactions, each: one or more descriptor blocks, each followed by the
 * data blocks its tags describe; optional revoke blocks; one commit block.
 * Every control block has the metadata header with mb_txid = the
 * transaction's sequence number, and is checksummed (seeded) like any
 * metadata block.  Logged data blocks are verbatim copies of the new
 * contents, except that when their first four bytes equal a journal magic
 * they are stored as zero and the tag says FLYFS_JTAG_ESCAPED.
 */
struct flyfs_journal_super {
	struct flyfs_mblock_hdr	js_hdr;		/*  0 FLYFS_MB_JSUPER */
	le32_t	js_block_size;			/* 32 4096 */
	le32_t	js_flags;			/* 36 zero */
	le64_t	js_first;			/* 40 first log block (rel.), 1 */
	le64_t	js_blocks;			/* 48 = sb_journal_blocks */
	le64_t	js_sequence;			/* 56 sequence of first txn to replay */
	le64_t	js_start;			/* 64 rel. block of it; 0 = empty */
	le32_t	js_errno;			/* 72 journal aborted with this */
	le32_t	js_pad;				/* 76 */
	uint8_t	js_uuid[FLYFS_UUID_SIZE];	/* 80 = sb_uuid */
	uint8_t	js_reserved[FLYFS_BLOCK_SIZE - 96];
};
_Static_assert(sizeof(struct flyfs_journal_super) == FLYFS_BLOCK_SIZE, "jsb");
_Static_assert(offsetof(struct flyfs_journal_super, js_start) == 64, "js_st");

struct flyfs_journal_tag {
	le64_t	jt_blocknr;		/*  0 home location of the logged block */
	le32_t	jt_flags;		/*  8 FLYFS_JTAG_* */
	le32_t	jt_crc;			/* 12 crc32c (seeded) of the block as logged */
};
_Static_assert(sizeof(struct flyfs_journal_tag) == 16, "jtag");
#define FLYFS_JTAG_ESCAPED	0x1
#define FLYFS_JTAG_LAST		0x2	/* last tag of this descriptor */

struct flyfs_journal_desc {
	struct flyfs_mblock_hdr	jd_hdr;		/* FLYFS_MB_JDESC */
	le32_t	jd_count;			/* tags in use */
	le32_t	jd_pad;
	le64_t	jd_reserved;
	struct flyfs_journal_tag jd_tag[(FLYFS_MB_PAYLOAD - 16) / 16];
};
_Static_assert(sizeof(struct flyfs_journal_desc) == FLYFS_BLOCK_SIZE, "jdesc");
#define FLYFS_JTAGS_PER_DESC	((FLYFS_MB_PAYLOAD - 16) / 16)	/* 253 */

/* Blocks listed here must not be replayed from transactions <= this one. */
struct flyfs_journal_revoke {
	struct flyfs_mblock_hdr	jr_hdr;		/* FLYFS_MB_JREVOKE */
	le32_t	jr_count;
	le32_t	jr_pad;
	le64_t	jr_reserved;
	le64_t	jr_blocknr[(FLYFS_MB_PAYLOAD - 16) / 8];
};
_Static_assert(sizeof(struct flyfs_journal_revoke) == FLYFS_BLOCK_SIZE, "jrv");
#define FLYFS_JREVOKES_PER_BLOCK ((FLYFS_MB_PAYLOAD - 16) / 8)	/* 506 */

/*
 * A transaction is committed iff its commit block is present, checksums,
 * and carries the expected sequence; jc_blocks lets replay verify that it
 * saw every block of the transaction.
 */
struct flyfs_journal_commit {
	struct flyfs_mblock_hdr	jc_hdr;		/* FLYFS_MB_JCOMMIT */
	le64_t	jc_sec;				/* 32 commit time */
	le32_t	jc_nsec;			/* 40 */
	le32_t	jc_blocks;			/* 44 log blocks in txn, commit incl. */
	uint8_t	jc_reserved[FLYFS_BLOCK_SIZE - 48];
};
_Static_assert(sizeof(struct flyfs_journal_commit) == FLYFS_BLOCK_SIZE, "jcm");

#endif /* FLYFS_ONDISK_H */
