/*
 * dir.h - directory trees (dir.c), as the namespace code (namei.c) uses them.
 *
 * A directory is a B+tree of FDIR blocks keyed by (name hash << 32 | minor)
 * (fs/ondisk.h, docs/format.md section 7).  This interface hides the tree:
 * callers name entries by name, and see keys only as readdir cookies.
 *
 * Locking: every function takes the directory DP with dp->i_lock held by
 * the caller -- shared for fs_dir_lookup / fs_dir_iterate, exclusive for
 * everything that takes a transaction handle TX.  The functions lock the
 * tree's buffers themselves (parent before child) and take dp->i_mtx for
 * i_size / i_blocks.  Changing functions write the directory inode
 * (fs_inode_dirty) in TX themselves.  Every function may sleep (I/O).
 * Errors: ENOENT, EEXIST, ENOSPC, EIO, EUCLEAN (corrupt tree, logged).
 */
#ifndef FLYFS_DIR_H
#define FLYFS_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fs_inode;
struct fs_trans;

/* What a directory entry says. */
struct fs_dirent {
	uint64_t	key;		/* stable readdir cookie */
	uint64_t	ino;
	unsigned	type;		/* DT_* */
};

/* Fill the directory root of a new directory (no tree yet) in memory. */
void	fs_dir_init(struct fs_inode *dp, uint64_t parent);
/* ".." of DP, and setting it (rename of a directory; caller writes DP). */
uint64_t fs_dir_parent(struct fs_inode *dp);
void	fs_dir_set_parent(struct fs_inode *dp, uint64_t parent);
/* Entries of DP, "." and ".." excluded. */
uint64_t fs_dir_entries(struct fs_inode *dp);
bool	fs_dir_is_empty(struct fs_inode *dp);

/*
 * Log blocks a handle must reserve for one fs_dir_insert / fs_dir_remove /
 * fs_dir_replace on DP, at its current height (the inode block included).
 */
unsigned fs_dir_insert_blocks(struct fs_inode *dp);
unsigned fs_dir_remove_blocks(struct fs_inode *dp);
unsigned fs_dir_replace_blocks(struct fs_inode *dp);

/* Find NAME (LEN bytes, 1..255).  ENOENT if absent. */
int	fs_dir_lookup(struct fs_inode *dp, const char *name, size_t len,
	    struct fs_dirent *out);
/*
 * Add NAME -> INO (DT_* TYPE) with the lowest free collision minor.
 * EEXIST if NAME is there.  *KEYP (may be NULL) receives the new key.
 */
int	fs_dir_insert(struct fs_trans *tx, struct fs_inode *dp,
	    const char *name, size_t len, uint64_t ino, unsigned type,
	    uint64_t *keyp);
/* Remove NAME; OUT (may be NULL) receives what it said.  ENOENT. */
int	fs_dir_remove(struct fs_trans *tx, struct fs_inode *dp,
	    const char *name, size_t len, struct fs_dirent *out);
/* Point the existing NAME at INO / TYPE, keeping its key.  ENOENT. */
int	fs_dir_replace(struct fs_trans *tx, struct fs_inode *dp,
	    const char *name, size_t len, uint64_t ino, unsigned type);

/*
 * Call FN for every stored entry whose key is > COOKIE, in key order,
 * until FN returns non-zero (a stop, not an error: 0 is returned).  No
 * buffer is held while FN runs; DP's i_lock (shared) is.  Errors: reading
 * the tree (EIO, EUCLEAN), ENOMEM.
 */
typedef int fs_dir_iter_t(void *arg, const char *name, size_t len,
	    uint64_t ino, unsigned type, uint64_t key);
int	fs_dir_iterate(struct fs_inode *dp, uint64_t cookie,
	    fs_dir_iter_t *fn, void *arg);

/*
 * Check the whole tree of DP (tests, fsck-like): node levels, key order,
 * separator bounds, the leaf chain, the entry count and i_size.  0 or
 * EUCLEAN with a sentence in ERR.
 */
int	fs_dir_check(struct fs_inode *dp, char *err, size_t errlen);

#endif /* FLYFS_DIR_H */
