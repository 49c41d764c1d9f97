/*
 * mkfs_core.h - make a new flyfs on a block device.
 *
 * This module owns the initial layout: where mkfs puts the group
 * descriptors, bitmaps, the first inode file blocks, the system files, the
 * root directory, lost+found and the journal, and how it sizes them.  The
 * mkfs.flyfs tool and the tests call it; the filesystem never does.  It
 * writes only through struct blockdev (synchronous helpers) and never
 * touches the buffer cache.
 */
#ifndef FLYFS_MKFS_CORE_H
#define FLYFS_MKFS_CORE_H

#include <stdbool.h>
#include <stdint.h>

#include "fs/format.h"

struct blockdev;

/* Blocks mkfs places after the bitmaps, in this order (see docs/format.md). */
#define FLYFS_MKFS_IFILE_BLOCKS	16	/* initial inode file: 256 inodes */

struct flyfs_mkfs_params {
	uint64_t size_bytes;		/* 0: the whole device */
	uint32_t data_block_size;	/* 0: FLYFS_DATA_BLOCK_DEFAULT */
	uint64_t journal_bytes;		/* 0: flyfs_mkfs_default_journal() */
	char label[FLYFS_LABEL_SIZE];	/* NUL terminated, may be empty */
	uint8_t uuid[FLYFS_UUID_SIZE];
	bool have_uuid;			/* else random (getrandom) */
	uint8_t hash_key[16];
	bool have_hash_key;		/* else random (getrandom) */
	uint8_t comp;			/* FLYFS_COMP_* */
	uint8_t comp_level;		/* 0 with FLYFS_COMP_NONE */
	uint32_t root_uid, root_gid;	/* owner of / and lost+found */
	int64_t time_sec;		/* timestamps; see have_time */
	uint32_t time_nsec;
	bool have_time;			/* else the current time */
};

/* Defaults: everything automatic, no compression, root owned by 0:0. */
void flyfs_mkfs_params_init(struct flyfs_mkfs_params *p);

/* Default journal size in blocks for a filesystem of BLOCKS blocks. */
uint64_t flyfs_mkfs_default_journal(uint64_t blocks);

/*
 * Compute the superblock of a new filesystem of P on a device of DEV_BYTES
 * without writing anything (mkfs -n, and mkfs itself).  Draws the UUID and
 * hash key from getrandom unless P supplies them.  Returns 0 or a positive
 * errno with a sentence in ERR (EINVAL bad parameter, ENOSPC too small).
 */
int flyfs_mkfs_plan(uint64_t dev_bytes, const struct flyfs_mkfs_params *p,
    struct flyfs_sb_info *sbi, char *err, size_t errlen);

/*
 * Make the filesystem on BD and make it durable (flush).  The primary
 * superblock is zeroed first and written last, so an interrupted mkfs
 * leaves no valid-looking filesystem.  If SBI is not NULL it receives the
 * superblock written.  Sleeps on the device.
 */
int flyfs_mkfs(struct blockdev *bd, const struct flyfs_mkfs_params *p,
    struct flyfs_sb_info *sbi, char *err, size_t errlen);

/* Blocks mkfs uses at the front: [0, flyfs_mkfs_meta_end()). */
uint64_t flyfs_mkfs_meta_end(const struct flyfs_sb_info *sbi);

/* The fixed blocks mkfs allocates after the inode file. */
static inline uint64_t flyfs_mkfs_ibitmap_block(const struct flyfs_sb_info *s)
{ return s->ifile_start + FLYFS_MKFS_IFILE_BLOCKS; }
static inline uint64_t flyfs_mkfs_orphan_block(const struct flyfs_sb_info *s)
{ return s->ifile_start + FLYFS_MKFS_IFILE_BLOCKS + 1; }
static inline uint64_t flyfs_mkfs_rootdir_block(const struct flyfs_sb_info *s)
{ return s->ifile_start + FLYFS_MKFS_IFILE_BLOCKS + 2; }
static inline uint64_t flyfs_mkfs_lostfound_block(const struct flyfs_sb_info *s)
{ return s->ifile_start + FLYFS_MKFS_IFILE_BLOCKS + 3; }

#endif /* FLYFS_MKFS_CORE_H */
