/*
 * xattr.c - stored extended attributes: user.*, trusted.*, security.*.
 *
 * This module owns an inode's xattr block (FLYFS_MB_XATTR at
 * i_xattr_block, fs/ondisk.h and docs/format.md section 9): records sorted
 * by (namespace, name), each 8 bytes, the name without its prefix, the
 * value, padded to 8.  A change rewrites the record area of the block in
 * one transaction: the block is 4 KiB and one change is rare next to the
 * data it describes, so simplicity wins over in-place edits.
 *
 * Limits and errors (as ext4 without ea_inode):
 *   - a name's suffix is 1..255 bytes (ERANGE beyond, EINVAL if empty);
 *   - a value that could not fit even in an empty block: E2BIG;
 *   - all of an inode's xattrs must fit in one block: ENOSPC;
 *   - other namespaces (system.*, flyfs.*, none): EOPNOTSUPP.  The FUSE
 *     layer answers the virtual flyfs.* names before they reach here.
 * Permission checks (trusted.* needs CAP_SYS_ADMIN, user.* only on files
 * and directories) are the kernel's, done before the request is sent.
 *
 * Locking: ip->i_lock shared for get/list, exclusive for set/remove; the
 * block's buffer lock under it; i_mtx for i_xattr_block and i_blocks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_int.h"

#define XATTR_AREA_OFF	(sizeof(struct flyfs_mblock_hdr) + \
			    sizeof(struct flyfs_xattr_hdr))		/* 48 */
#define XATTR_SPACE	((unsigned)FLYFS_XATTR_SPACE)			/* 4048 */
#define XATTR_SIZE_MAX	65536	/* the VFS limit on one value */

static const struct {
	const char	*prefix;
	size_t		len;
	uint8_t		ns;
} xattr_ns[] = {
	{ "user.", 5, FLYFS_XATTR_NS_USER },
	{ "trusted.", 8, FLYFS_XATTR_NS_TRUSTED },
	{ "security.", 9, FLYFS_XATTR_NS_SECURITY },
};

/* A name split into namespace and suffix. */
struct xname {
	uint8_t		ns;
	const char	*name;
	size_t		len;
};

static int
xname_parse(const char *full, struct xname *x)
{
	for (size_t i = 0; i < sizeof(xattr_ns) / sizeof(xattr_ns[0]); i++) {
		if (strncmp(full, xattr_ns[i].prefix, xattr_ns[i].len) != 0)
			continue;
		x->ns = xattr_ns[i].ns;
		x->name = full + xattr_ns[i].len;
		x->len = strnlen(x->name, FLYFS_NAME_MAX + 1);
		if (x->len == 0)
			return EINVAL;
		if (x->len > FLYFS_NAME_MAX)
			return ERANGE;
		return 0;
	}
	return EOPNOTSUPP;
}

/* Order of records: namespace, then name bytes, a prefix first. */
static int
xname_cmp(const struct xname *a, uint8_t ns, const char *name, size_t len)
{
	int c;

	if (a->ns != ns)
		return a->ns < ns ? -1 : 1;
	c = memcmp(a->name, name, a->len < len ? a->len : len);
	if (c != 0)
		return c;
	return a->len < len ? -1 : a->len > len;
}

static inline struct flyfs_xattr_entry *
xent_at(uint8_t *area, unsigned off)
{
	return (struct flyfs_xattr_entry *)(area + off);
}

static inline unsigned
xent_size(const struct flyfs_xattr_entry *xe)
{
	return (unsigned)FLYFS_XATTR_ENTRY_SIZE(xe->xe_name_len,
	    le16_get(xe->xe_value_len));
}

/* The record area of a block, checked: USED bytes of well-formed records. */
struct xblock {
	uint8_t		area[FLYFS_XATTR_SPACE];
	unsigned	used, count;
};

static uint64_t
xattr_blk(struct fs_inode *ip)
{
	uint64_t blk;

	pthread_mutex_lock(&ip->i_mtx);
	blk = le64_get(ip->i_din.i_xattr_block);
	pthread_mutex_unlock(&ip->i_mtx);
	return blk;
}

/*
 * Copy IP's xattr records into XB (empty if IP has no block), checking
 * that they tile the area in order.  The buffer is not kept.
 */
static int
xblock_load(struct fs_inode *ip, struct xblock *xb)
{
	struct flyfs *fs = ip->i_fs;
	uint64_t blk = xattr_blk(ip);
	struct flyfs_xattr_hdr *xh;
	struct buf *bp;
	unsigned off, n = 0;
	int error;

	xb->used = xb->count = 0;
	if (blk == 0)
		return 0;
	error = fs_meta_read(fs, blk, FLYFS_MB_XATTR, ip->i_ino, &bp);
	if (error != 0)
		return error;
	xh = (struct flyfs_xattr_hdr *)(bp->b_data +
	    sizeof(struct flyfs_mblock_hdr));
	xb->used = le16_get(xh->xh_used);
	xb->count = le16_get(xh->xh_count);
	if (xb->used > XATTR_SPACE) {
		fs_meta_release(bp);
		return fs_corrupt(fs, blk, ip->i_ino, "xattr block uses %u",
		    xb->used);
	}
	memcpy(xb->area, bp->b_data + XATTR_AREA_OFF, xb->used);
	fs_meta_release(bp);
	for (off = 0; off < xb->used; off += xent_size(xent_at(xb->area,
	    off)), n++) {
		struct flyfs_xattr_entry *xe = xent_at(xb->area, off);

		if (xb->used - off < sizeof(*xe) || xe->xe_name_len == 0 ||
		    xe->xe_ns < FLYFS_XATTR_NS_USER ||
		    xe->xe_ns > FLYFS_XATTR_NS_SECURITY ||
		    xent_size(xe) > xb->used - off)
			return fs_corrupt(fs, blk, ip->i_ino,
			    "xattr record at %u overruns", off);
	}
	if (n != xb->count)
		return fs_corrupt(fs, blk, ip->i_ino,
		    "xattr block counts %u records, holds %u", xb->count, n);
	return 0;
}

/* Offset of the record named X in XB, or of where it would go; *FOUND. */
static unsigned
xblock_find(struct xblock *xb, const struct xname *x, bool *found)
{
	unsigned off;

	*found = false;
	for (off = 0; off < xb->used; off += xent_size(xent_at(xb->area,
	    off))) {
		struct flyfs_xattr_entry *xe = xent_at(xb->area, off);
		int c = xname_cmp(x, xe->xe_ns, xe->xe_data, xe->xe_name_len);

		if (c == 0)
			*found = true;
		if (c <= 0)
			break;
	}
	return off;
}

/*
 * Write XB as IP's xattrs in TX: into its block, into a new block if it
 * had none, or free the block when XB is empty.  Writes the inode.
 */
static int
xblock_store(struct fs_trans *tx, struct fs_inode *ip, struct xblock *xb)
{
	struct flyfs *fs = ip->i_fs;
	uint64_t blk = xattr_blk(ip);
	struct flyfs_xattr_hdr *xh;
	struct buf *bp;
	int error;

	if (xb->count == 0) {
		if (blk != 0 && (error = fs_xattr_reclaim(tx, ip)) != 0)
			return error;
		return fs_inode_dirty(tx, ip);
	}
	if (blk == 0) {
		if ((error = fs_alloc_meta_block(tx, 0, &blk)) != 0)
			return error;
		error = fs_meta_new(tx, blk, FLYFS_MB_XATTR, ip->i_ino, &bp);
		if (error != 0) {
			fs_trans_free_blocks(tx, blk, 1, FS_FREE_META);
			return error;
		}
		pthread_mutex_lock(&ip->i_mtx);
		le64_set(&ip->i_din.i_xattr_block, blk);
		le64_set(&ip->i_din.i_blocks,
		    le64_get(ip->i_din.i_blocks) + 1);
		pthread_mutex_unlock(&ip->i_mtx);
	} else {
		error = fs_meta_read(fs, blk, FLYFS_MB_XATTR, ip->i_ino, &bp);
		if (error != 0)
			return error;
	}
	xh = (struct flyfs_xattr_hdr *)(bp->b_data +
	    sizeof(struct flyfs_mblock_hdr));
	memset(xh, 0, FLYFS_MB_PAYLOAD);
	le16_set(&xh->xh_count, (uint16_t)xb->count);
	le16_set(&xh->xh_used, (uint16_t)xb->used);
	memcpy(bp->b_data + XATTR_AREA_OFF, xb->area, xb->used);
	fs_trans_dirty(tx, bp);
	fs_meta_release(bp);
	return fs_inode_dirty(tx, ip);
}

/* Log blocks of one set or remove: block, bitmap + descriptor, inode. */
#define XATTR_TRANS_BLOCKS	6

/*
 * The end of a set or remove: store XB as IP's xattrs and stamp the
 * change time, in one transaction of its own.
 */
static int
xblock_commit(struct flyfs *fs, struct fs_inode *ip, struct xblock *xb)
{
	struct fs_trans *tx;
	int error;

	if ((error = fs_trans_begin(fs, XATTR_TRANS_BLOCKS, &tx)) != 0)
		return error;
	error = xblock_store(tx, ip, xb);
	if (error == 0)
		error = fs_inode_changed(tx, ip);
	return fs_trans_finish(tx, error);
}

int
fs_xattr_reclaim(struct fs_trans *tx, struct fs_inode *ip)
{
	uint64_t blk;

	pthread_mutex_lock(&ip->i_mtx);
	blk = le64_get(ip->i_din.i_xattr_block);
	if (blk != 0) {
		le64_set(&ip->i_din.i_xattr_block, 0);
		le64_set(&ip->i_din.i_blocks,
		    le64_get(ip->i_din.i_blocks) - 1);
	}
	pthread_mutex_unlock(&ip->i_mtx);
	if (blk == 0)
		return 0;
	return fs_trans_free_blocks(tx, blk, 1, FS_FREE_META);
}

int
flyfs_setxattr(struct flyfs *fs, uint64_t ino, const char *name,
    const void *value, size_t size, int flags)
{
	struct fs_inode *ip;
	struct xblock *xb;
	struct xname x;
	unsigned off, osz = 0, nsz;
	bool found;
	int error;

	if ((error = xname_parse(name, &x)) != 0)
		return error;
	if ((flags & ~(FLYFS_XATTR_CREATE | FLYFS_XATTR_REPLACE)) ||
	    flags == (FLYFS_XATTR_CREATE | FLYFS_XATTR_REPLACE))
		return EINVAL;
	if (size > XATTR_SIZE_MAX ||
	    FLYFS_XATTR_ENTRY_SIZE(x.len, size) > XATTR_SPACE)
		return E2BIG;
	nsz = (unsigned)FLYFS_XATTR_ENTRY_SIZE(x.len, size);
	if ((xb = malloc(sizeof(*xb))) == NULL)
		return ENOMEM;
	if ((error = fs_iget(fs, ino, &ip)) != 0) {
		free(xb);
		return error;
	}
	pthread_rwlock_wrlock(&ip->i_lock);
	if ((error = xblock_load(ip, xb)) != 0)
		goto out;
	off = xblock_find(xb, &x, &found);
	if (found && (flags & FLYFS_XATTR_CREATE)) {
		error = EEXIST;
		goto out;
	}
	if (!found && (flags & FLYFS_XATTR_REPLACE)) {
		error = ENODATA;
		goto out;
	}
	if (found)
		osz = xent_size(xent_at(xb->area, off));
	if (xb->used - osz + nsz > XATTR_SPACE) {
		error = ENOSPC;
		goto out;
	}
	/* Replace the old record (if any) by the new one at OFF. */
	memmove(xb->area + off + nsz, xb->area + off + osz,
	    xb->used - off - osz);
	{
		struct flyfs_xattr_entry *xe = xent_at(xb->area, off);

		memset(xe, 0, nsz);
		xe->xe_ns = x.ns;
		xe->xe_name_len = (uint8_t)x.len;
		le16_set(&xe->xe_value_len, (uint16_t)size);
		memcpy(xe->xe_data, x.name, x.len);
		if (size > 0)
			memcpy(xe->xe_data + x.len, value, size);
	}
	xb->used = xb->used - osz + nsz;
	if (!found)
		xb->count++;
	error = xblock_commit(fs, ip, xb);
out:
	pthread_rwlock_unlock(&ip->i_lock);
	fs_iput(ip);
	free(xb);
	return error;
}

int
flyfs_getxattr(struct flyfs *fs, uint64_t ino, const char *name,
    void *value, size_t size, size_t *lenp)
{
	struct fs_inode *ip;
	struct xblock *xb;
	struct xname x;
	unsigned off;
	bool found;
	int error;

	FS_COUNT(fs, xattr_gets, 1);
	if ((error = xname_parse(name, &x)) != 0)
		return error == ERANGE || error == EINVAL ? ENODATA : error;
	if ((xb = malloc(sizeof(*xb))) == NULL)
		return ENOMEM;
	if ((error = fs_iget(fs, ino, &ip)) != 0) {
		free(xb);
		return error;
	}
	pthread_rwlock_rdlock(&ip->i_lock);
	error = xblock_load(ip, xb);
	pthread_rwlock_unlock(&ip->i_lock);
	fs_iput(ip);
	if (error != 0)
		goto out;
	off = xblock_find(xb, &x, &found);
	if (!found) {
		error = ENODATA;
		goto out;
	}
	{
		struct flyfs_xattr_entry *xe = xent_at(xb->area, off);
		size_t vlen = le16_get(xe->xe_value_len);

		*lenp = vlen;
		if (size == 0)
			goto out;
		if (size < vlen) {
			error = ERANGE;
			goto out;
		}
		memcpy(value, xe->xe_data + xe->xe_name_len, vlen);
	}
out:
	free(xb);
	return error;
}

int
flyfs_listxattr(struct flyfs *fs, uint64_t ino, char *list, size_t size,
    size_t *lenp)
{
	struct fs_inode *ip;
	struct xblock *xb;
	size_t need = 0;
	int error;

	if ((xb = malloc(sizeof(*xb))) == NULL)
		return ENOMEM;
	if ((error = fs_iget(fs, ino, &ip)) != 0) {
		free(xb);
		return error;
	}
	pthread_rwlock_rdlock(&ip->i_lock);
	error = xblock_load(ip, xb);
	pthread_rwlock_unlock(&ip->i_lock);
	fs_iput(ip);
	for (unsigned off = 0; error == 0 && off < xb->used;
	    off += xent_size(xent_at(xb->area, off))) {
		struct flyfs_xattr_entry *xe = xent_at(xb->area, off);
		size_t plen = xattr_ns[xe->xe_ns - 1].len;
		size_t n = plen + xe->xe_name_len + 1;

		if (size > 0) {
			if (need + n > size) {
				error = ERANGE;
				break;
			}
			memcpy(list + need, xattr_ns[xe->xe_ns - 1].prefix,
			    plen);
			memcpy(list + need + plen, xe->xe_data,
			    xe->xe_name_len);
			list[need + n - 1] = '\0';
		}
		need += n;
	}
	if (error == 0)
		*lenp = need;
	free(xb);
	return error;
}

/*
 * Remove the record X from IP's xattrs (i_lock held exclusive).  ENODATA
 * if there is none.
 */
static int
xattr_remove(struct fs_inode *ip, const struct xname *x)
{
	struct xblock *xb;
	unsigned off, sz;
	bool found;
	int error;

	if ((xb = malloc(sizeof(*xb))) == NULL)
		return ENOMEM;
	if ((error = xblock_load(ip, xb)) != 0)
		goto out;
	off = xblock_find(xb, x, &found);
	if (!found) {
		error = ENODATA;
		goto out;
	}
	sz = xent_size(xent_at(xb->area, off));
	memmove(xb->area + off, xb->area + off + sz, xb->used - off - sz);
	xb->used -= sz;
	xb->count--;
	error = xblock_commit(ip->i_fs, ip, xb);
out:
	free(xb);
	return error;
}

int
flyfs_removexattr(struct flyfs *fs, uint64_t ino, const char *name)
{
	struct fs_inode *ip;
	struct xname x;
	int error;

	if ((error = xname_parse(name, &x)) != 0)
		return error == ERANGE || error == EINVAL ? ENODATA : error;
	if ((error = fs_iget(fs, ino, &ip)) != 0)
		return error;
	pthread_rwlock_wrlock(&ip->i_lock);
	error = xattr_remove(ip, &x);
	pthread_rwlock_unlock(&ip->i_lock);
	fs_iput(ip);
	return error;
}

int
fs_xattr_kill_cap(struct fs_inode *ip)
{
	static const struct xname cap = {
		FLYFS_XATTR_NS_SECURITY, "capability", sizeof("capability") - 1
	};
	int error;

	if (xattr_blk(ip) == 0)
		return 0;		/* the common case: no xattrs at all */
	error = xattr_remove(ip, &cap);
	return error == ENODATA ? 0 : error;
}

/* ---- flyfs.compression (virtual: the inode's compression setting) ------ */

int
flyfs_compression_get(struct flyfs *fs, uint64_t ino, char *value,
    size_t size, size_t *lenp)
{
	struct fs_comp_setting set;
	struct fs_inode *ip;
	char buf[16];
	int error, n;

	if (ino == FLYFS_ROOT_INO) {
		fs_compress_get_live(fs->s_compress, &set);
	} else {
		if ((error = fs_iget(fs, ino, &ip)) != 0)
			return error;
		pthread_mutex_lock(&ip->i_mtx);
		fs_comp_inode_get(&ip->i_din, &set);
		pthread_mutex_unlock(&ip->i_mtx);
		fs_iput(ip);
	}
	if ((n = fs_comp_format(&set, buf, sizeof(buf))) < 0)
		return EIO;
	*lenp = (size_t)n;
	if (size == 0)
		return 0;
	if (size < (size_t)n)
		return ERANGE;
	memcpy(value, buf, (size_t)n);
	return 0;
}

int
flyfs_compression_set(struct flyfs *fs, uint64_t ino, const char *value,
    size_t size, uint32_t uid)
{
	struct fs_comp_setting set;
	struct fs_inode *ip;
	struct fs_trans *tx;
	int error;

	if ((error = fs_comp_parse(value, size, &set)) != 0)
		return error;
	if (ino == FLYFS_ROOT_INO) {
		fs_compress_set_live(fs->s_compress, &set);
		return 0;
	}
	if (fs->s_readonly)
		return EROFS;
	if ((error = fs_iget(fs, ino, &ip)) != 0)
		return error;
	pthread_rwlock_wrlock(&ip->i_lock);
	if (uid != 0 && uid != le32_get(ip->i_din.i_uid)) {
		error = EPERM;
		goto out;
	}
	if ((error = fs_trans_begin(fs, 1, &tx)) != 0)
		goto out;
	pthread_mutex_lock(&ip->i_mtx);
	error = fs_comp_inode_set(&ip->i_din, &set);
	if (error == 0) {
		/* The in-memory copy, as inode_vnode_init() sets it. */
		ip->i_comp = ip->i_din.i_comp;
		ip->i_comp_level = ip->i_din.i_comp_level;
		if (set.mode == FS_COMP_OFF)
			ip->i_comp = FLYFS_COMP_NONE;
	}
	pthread_mutex_unlock(&ip->i_mtx);
	if (error == 0)
		error = fs_inode_changed(tx, ip);
	error = fs_trans_finish(tx, error);
out:
	pthread_rwlock_unlock(&ip->i_lock);
	fs_iput(ip);
	return error;
}
