/*
 * extent.h - the extent B+tree of one file (extent.c), as file.c uses it.
 *
 * A file's logical 4 KiB blocks map to physical blocks through a B+tree
 * whose root lives in the inode (fs/ondisk.h: 3 extents or 6 index
 * records) and whose other nodes are FEXT metadata blocks owned by the
 * inode.  Ranges that no record covers are holes.
 *
 * Every function here is called with ip->i_extlock held, and the
 * modifying ones with a transaction handle that has reserved at least
 * the cost they document (fs_extent_op_cost).  They take the tree's
 * metadata buffers (parent before child), release them before they call
 * the allocator, and write the inode (fs_inode_dirty) when the root or
 * i_blocks changed.  i_blocks counts every physical block a record maps
 * plus every tree block; these functions keep it exact.
 */
#ifndef FLYFS_EXTENT_H
#define FLYFS_EXTENT_H

#include <stdbool.h>
#include <stdint.h>

#include "fs/ondisk.h"

struct fs_inode;
struct fs_trans;

/* One record in host order (struct flyfs_extent on disk). */
struct fs_extent {
	uint64_t lblk;		/* first logical block */
	uint64_t pblk;		/* first physical block */
	uint32_t llen;		/* logical blocks */
	uint32_t plen;		/* physical blocks (< llen only if compressed) */
	uint8_t	comp;		/* FLYFS_COMP_* */
	uint8_t	flags;		/* FLYFS_EXT_UNWRITTEN */
	uint32_t cbytes;	/* compressed bytes, 0 if raw */
};

static inline uint64_t fs_ext_end(const struct fs_extent *e)
{ return e->lblk + e->llen; }
static inline bool fs_ext_is_raw_data(const struct fs_extent *e)
{ return e->comp == 0 && (e->flags & FLYFS_EXT_UNWRITTEN) == 0; }

/*
 * The first record whose range ends after LBLK (it covers LBLK iff
 * ext->lblk <= LBLK).  ENOENT if there is none; EUCLEAN, EIO.
 */
int	fs_extent_find(struct fs_inode *ip, uint64_t lblk, struct fs_extent *ext);

/*
 * Call FN on every record whose range ends after LBLK, in order, until
 * FN returns non-zero (returned).  FN must not take locks or sleep.
 */
int	fs_extent_iter(struct fs_inode *ip, uint64_t lblk,
	    int (*fn)(void *arg, const struct fs_extent *ext), void *arg);

/*
 * Log blocks one insert or one step of a remove may dirty in the tree's
 * current shape (nodes on a path, splits, root growth, bitmaps of the
 * blocks freed or allocated for nodes, the inode).
 */
unsigned fs_extent_op_cost(struct fs_inode *ip);

/*
 * Map E (which must lie in a hole: EEXIST otherwise), merging it with a
 * neighbour that continues it on the device with the same kind.  Grows
 * the tree (new FEXT blocks) as needed.  i_blocks += e->plen.
 */
int	fs_extent_insert(struct fs_trans *tx, struct fs_inode *ip,
	    const struct fs_extent *e);

#define FS_EXT_FREE	0x1	/* free the physical blocks unmapped */
#define FS_EXT_KEEPCOMP	0x2	/* leave compressed records that the range
				 * covers only in part (else EINVAL) */

/*
 * Unmap [LBLK, END), from the end backwards, splitting and trimming
 * records at the edges; with FS_EXT_FREE the physical blocks go back to
 * the allocator in TX (busy until it commits).  Each step costs at most
 * fs_extent_op_cost() log blocks plus 2 per allocation group the freed
 * range spans; *BUDGET holds what the handle has left and is decreased.
 * Returns 0 when the range is empty, or EAGAIN with *LOWEST = the lowest
 * block unmapped so far (everything in [*LOWEST, END) is unmapped) when
 * the budget ran out: the caller ends the handle and calls again.
 * *LOWEST is LBLK on success.
 */
int	fs_extent_remove(struct fs_trans *tx, struct fs_inode *ip,
	    uint64_t lblk, uint64_t end, unsigned flags, unsigned *budget,
	    uint64_t *lowest);

/* Tree depth (0: the root is a leaf). */
int	fs_extent_depth(struct fs_inode *ip);

#endif /* FLYFS_EXTENT_H */
