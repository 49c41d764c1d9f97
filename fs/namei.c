/*
 * namei.c - the namespace operations of flyfs.h: lookup, mknod, mkdir,
 * symlink, readlink, link, unlink, rmdir, rename, readdir.
 *
 * This module owns the rules of the namespace: which names are valid,
 * link counts of files and directories (a directory has 2 + its
 * subdirectories), "..", the sticky-directory rule, the shape of rename
 * (overwrite, RENAME_NOREPLACE, RENAME_EXCHANGE, moving a directory but
 * never under itself), timestamps of the directories and targets touched,
 * and where a symlink target lives (inline up to 112 bytes, else one data
 * block).  The directory trees themselves are dir.c's (fs/dir.h).
 *
 * Every operation is one transaction: all of its changes commit together
 * or not at all.  Each reserves log blocks for its worst case before it
 * starts (fs_trans_begin), with the inodes it changes already locked.
 *
 * Locking (fs_int.h lock order):
 *   - every inode an operation changes or whose namespace state it tests
 *     (the directories, the entry's inode, a target replaced by rename) is
 *     locked exclusively, all together, in ascending inode number;
 *   - since an entry's inode is only known after a lookup, the lookups are
 *     done first under the directory's lock shared, then everything is
 *     locked and the lookups repeated: if the answer changed meanwhile,
 *     all is dropped and the operation starts over;
 *   - a rename between two directories holds fs->s_rename_lock around all
 *     of it, so no other rename can change the ancestry that the "not
 *     into its own subtree" check walks.
 * Inode references are dropped (fs_iput) only after the transaction ended
 * and the locks are gone: the last reference to an unlinked inode
 * reclaims it, which runs transactions of its own.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs/dir.h"
#include "fs/fs_int.h"

/*
 * Highest link count: link() and mkdir() (a directory's count is 2 + its
 * subdirectories) fail with EMLINK beyond it.  ext4 uses 65000 too; the
 * on-disk field is 32 bits, the bound keeps st_nlink small and tools
 * that store it in 16 bits honest.
 */
#define FLYFS_LINK_MAX		65000

/* Longest symlink target stored in the inode. */
#define SYMLINK_INLINE_MAX	FLYFS_INLINE_SYMLINK_MAX

/* ---- Small helpers --------------------------------------------------------- */

static bool
is_dot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' ||
	    (name[1] == '.' && name[2] == '\0'));
}

/* Length of NAME, or ENOENT (empty) / ENAMETOOLONG. */
static int
name_len(const char *name, size_t *lenp)
{
	size_t len = strnlen(name, FLYFS_NAME_MAX + 1);

	if (len == 0)
		return ENOENT;
	if (len > FLYFS_NAME_MAX)
		return ENAMETOOLONG;
	*lenp = len;
	return 0;
}

/* Referenced directory INO in *DPP, or ENOTDIR / ENOENT. */
static int
get_dir(struct flyfs *fs, uint64_t ino, struct fs_inode **dpp)
{
	int error;

	if ((error = fs_iget(fs, ino, dpp)) != 0)
		return error;
	if (!S_ISDIR(fs_i_mode(*dpp))) {
		fs_iput(*dpp);
		*dpp = NULL;
		return ENOTDIR;
	}
	return 0;
}

static void
iput_opt(struct fs_inode *ip)
{
	if (ip != NULL)
		fs_iput(ip);
}

/* A set of inodes locked exclusively in ascending number. */
struct lockset {
	struct fs_inode	*ip[4];
	int		n;
};

static void
lockset_lock(struct lockset *ls, struct fs_inode *a, struct fs_inode *b,
    struct fs_inode *c, struct fs_inode *d)
{
	struct fs_inode *in[4] = { a, b, c, d };

	ls->n = 0;
	for (int i = 0; i < 4; i++) {
		bool dup = in[i] == NULL;
		for (int j = 0; j < ls->n && !dup; j++)
			dup = ls->ip[j] == in[i];
		if (!dup)
			ls->ip[ls->n++] = in[i];
	}
	for (int i = 1; i < ls->n; i++)
		for (int j = i; j > 0 && ls->ip[j - 1]->i_ino >
		    ls->ip[j]->i_ino; j--) {
			struct fs_inode *t = ls->ip[j];
			ls->ip[j] = ls->ip[j - 1];
			ls->ip[j - 1] = t;
		}
	for (int i = 0; i < ls->n; i++)
		pthread_rwlock_wrlock(&ls->ip[i]->i_lock);
}

static void
lockset_unlock(struct lockset *ls)
{
	for (int i = ls->n - 1; i >= 0; i--)
		pthread_rwlock_unlock(&ls->ip[i]->i_lock);
	ls->n = 0;
}

/* Look NAME up in DP under DP's lock shared.  ENOENT if absent. */
static int
lookup_shared(struct fs_inode *dp, const char *name, size_t len,
    struct fs_dirent *out)
{
	int error;

	pthread_rwlock_rdlock(&dp->i_lock);
	error = fs_dir_lookup(dp, name, len, out);
	pthread_rwlock_unlock(&dp->i_lock);
	return error;
}

static uid_t
i_uid(struct fs_inode *ip)
{
	uid_t uid;

	pthread_mutex_lock(&ip->i_mtx);
	uid = le32_get(ip->i_din.i_uid);
	pthread_mutex_unlock(&ip->i_mtx);
	return uid;
}

/*
 * The sticky-directory rule: in a directory with S_ISVTX only root, the
 * directory's owner or the entry's owner may remove or rename the entry.
 */
static int
sticky_check(struct fs_inode *dp, struct fs_inode *ip,
    const struct flyfs_cred *cred)
{
	if (cred == NULL || cred->uid == 0 || !(fs_i_mode(dp) & S_ISVTX))
		return 0;
	if (cred->uid == i_uid(dp) || cred->uid == i_uid(ip))
		return 0;
	return EPERM;
}

/* Set mtime and ctime of directory DP to now and write it in TX. */
static int
dir_changed(struct fs_trans *tx, struct fs_inode *dp)
{
	fs_inode_touch(dp, FS_T_MTIME | FS_T_CTIME);
	return fs_inode_dirty(tx, dp);
}

/* Attributes of IP in OUT with one lookup reference (flyfs.h "+lookup"). */
static void
hand_out(struct fs_inode *ip, struct flyfs_attr *out)
{
	if (out != NULL)
		fs_inode_getattr(ip, out);
	fs_inode_lookup_ref(ip);
}

/* ---- Lookup --------------------------------------------------------------- */

int
flyfs_lookup(struct flyfs *fs, uint64_t dir, const char *name,
    struct flyfs_attr *out)
{
	struct fs_inode *dp, *ip;
	struct fs_dirent de = { 0, 0, 0 };
	size_t len;
	int error;

	if ((error = name_len(name, &len)) != 0)
		return error;
	if ((error = get_dir(fs, dir, &dp)) != 0)
		return error;
	FS_COUNT(fs, lookups, 1);
	pthread_rwlock_rdlock(&dp->i_lock);
	if (strcmp(name, ".") == 0)
		de.ino = dp->i_ino;
	else if (strcmp(name, "..") == 0)
		de.ino = fs_dir_parent(dp);
	else
		error = fs_dir_lookup(dp, name, len, &de);
	pthread_rwlock_unlock(&dp->i_lock);
	if (error == 0 && (error = fs_iget(fs, de.ino, &ip)) == 0) {
		hand_out(ip, out);
		fs_iput(ip);
	} else if (error == ENOENT && !is_dot(name) && de.ino != 0) {
		/* The entry names a free inode slot. */
		error = fs_corrupt(fs, 0, dp->i_ino, "entry names free inode "
		    "%llu", (unsigned long long)de.ino);
	}
	fs_iput(dp);
	return error;
}

/* ---- Creation ------------------------------------------------------------- */

/*
 * Store TARGET (LEN bytes) as the symlink IP's contents in TX: inline in
 * the root area up to 112 bytes, else in one newly allocated raw block
 * mapped by a one-record extent root.  The block is written to the
 * device before the transaction can commit (it is written here,
 * synchronously), which is what ordered data asks.
 */
static int
symlink_store(struct fs_trans *tx, struct fs_inode *ip, const char *target,
    size_t len)
{
	struct flyfs *fs = ip->i_fs;
	struct flyfs_inode *din = &ip->i_din;
	uint64_t blk;
	uint32_t got;
	void *buf;
	int error;

	if (len <= SYMLINK_INLINE_MAX) {
		pthread_mutex_lock(&ip->i_mtx);
		memset(din->i_root_raw, 0, sizeof(din->i_root_raw));
		memcpy(din->i_symlink, target, len);
		le32_set(&din->i_flags, le32_get(din->i_flags) |
		    FLYFS_IFL_INLINE);
		le64_set(&din->i_size, len);
		pthread_mutex_unlock(&ip->i_mtx);
		return 0;
	}
	if ((error = fs_alloc_blocks(tx, 0, 1, 0, &blk, &got)) != 0)
		return error;
	if ((buf = blockdev_alloc_buf(fs->s_bdev, FLYFS_BLOCK_SIZE)) == NULL) {
		fs_trans_free_blocks(tx, blk, 1, 0);
		return ENOMEM;
	}
	memset(buf, 0, FLYFS_BLOCK_SIZE);
	memcpy(buf, target, len);
	error = blockdev_pwrite(fs->s_bdev, buf, FLYFS_BLOCK_SIZE,
	    fs_blk_off(blk));
	blockdev_free_buf(buf);
	if (error != 0) {
		fs_trans_free_blocks(tx, blk, 1, 0);
		return error;
	}
	pthread_mutex_lock(&ip->i_mtx);
	memset(din->i_root_raw, 0, sizeof(din->i_root_raw));
	le16_set(&din->i_ext_hdr.en_magic, FLYFS_EXTENT_NODE_MAGIC);
	le16_set(&din->i_ext_hdr.en_count, 1);
	le16_set(&din->i_ext_hdr.en_max, FLYFS_INODE_EXT_ROOT_MAX);
	le16_set(&din->i_ext_hdr.en_level, 0);
	le64_set(&din->i_ext[0].e_lblk, 0);
	le64_set(&din->i_ext[0].e_pblk, blk);
	le32_set(&din->i_ext[0].e_llen, 1);
	le32_set(&din->i_ext[0].e_plen, 1);
	din->i_ext[0].e_comp = FLYFS_COMP_NONE;
	le64_set(&din->i_size, len);
	le64_set(&din->i_blocks, 1);
	pthread_mutex_unlock(&ip->i_mtx);
	return 0;
}

/*
 * The common part of mknod, mkdir and symlink: a new inode of MODE named
 * NAME in DIR, in one transaction.  OUT (+lookup).
 */
static int
create_node(struct flyfs *fs, uint64_t dir, const char *name, mode_t mode,
    dev_t rdev, const char *target, const struct flyfs_cred *cred,
    struct flyfs_attr *out)
{
	static const struct flyfs_cred root_cred = { .uid = 0, .gid = 0 };
	struct fs_inode *dp, *ip = NULL;
	struct fs_trans *tx;
	struct fs_dirent de;
	size_t len, tlen = 0;
	unsigned nblocks;
	int error;

	if ((error = name_len(name, &len)) != 0)
		return error;
	if (target != NULL) {
		tlen = strnlen(target, FLYFS_SYMLINK_MAX + 1);
		if (tlen == 0)
			return ENOENT;
		if (tlen > FLYFS_SYMLINK_MAX)
			return ENAMETOOLONG;
	}
	if (cred == NULL)
		cred = &root_cred;
	if ((error = get_dir(fs, dir, &dp)) != 0)
		return error;
	pthread_rwlock_wrlock(&dp->i_lock);
	if (is_dot(name)) {
		error = EEXIST;
		goto unlock;
	}
	if (fs_i_nlink(dp) == 0) {
		error = ENOENT;		/* the directory was removed */
		goto unlock;
	}
	error = fs_dir_lookup(dp, name, len, &de);
	if (error != ENOENT) {
		if (error == 0)
			error = EEXIST;
		goto unlock;
	}
	if (S_ISDIR(mode) && fs_i_nlink(dp) >= FLYFS_LINK_MAX) {
		error = EMLINK;
		goto unlock;
	}
	nblocks = FS_INODE_ALLOC_BLOCKS + fs_dir_insert_blocks(dp) +
	    FS_NLINK_BLOCKS + 4;
	if ((error = fs_trans_begin(fs, nblocks, &tx)) != 0)
		goto unlock;
	error = fs_inode_alloc(tx, dp, mode, rdev, cred, &ip);
	if (error != 0) {
		error = fs_trans_finish(tx, error);
		goto unlock;
	}
	if (S_ISDIR(mode))
		fs_dir_init(ip, dp->i_ino);
	if (target != NULL)
		error = symlink_store(tx, ip, target, tlen);
	if (error == 0)
		error = fs_inode_dirty(tx, ip);
	if (error == 0)
		error = fs_dir_insert(tx, dp, name, len, ip->i_ino,
		    fs_mode_to_dtype(fs_i_mode(ip)), NULL);
	if (error == 0 && S_ISDIR(mode))
		error = fs_inode_nlink_inc(tx, dp);
	if (error == 0)
		error = dir_changed(tx, dp);
	if (error != 0) {
		/* Unnamed: let the last reference reclaim it. */
		fs_inode_nlink_set(tx, ip, 0);
	}
	error = fs_trans_finish(tx, error);
	if (error == 0) {
		hand_out(ip, out);
		FS_COUNT(fs, creates, 1);
	}
unlock:
	pthread_rwlock_unlock(&dp->i_lock);
	iput_opt(ip);
	fs_iput(dp);
	return error;
}

int
flyfs_mknod(struct flyfs *fs, uint64_t dir, const char *name, mode_t mode,
    dev_t rdev, const struct flyfs_cred *cred, struct flyfs_attr *out)
{
	switch (mode & S_IFMT) {
	case 0:
		mode |= S_IFREG;
		break;
	case S_IFREG:
	case S_IFIFO:
	case S_IFSOCK:
	case S_IFCHR:
	case S_IFBLK:
		break;
	default:
		return EINVAL;
	}
	if (!S_ISCHR(mode) && !S_ISBLK(mode))
		rdev = 0;
	return create_node(fs, dir, name, mode, rdev, NULL, cred, out);
}

int
flyfs_mkdir(struct flyfs *fs, uint64_t dir, const char *name, mode_t mode,
    const struct flyfs_cred *cred, struct flyfs_attr *out)
{
	mode = (mode & (ALLPERMS | S_ISVTX)) | S_IFDIR;
	return create_node(fs, dir, name, mode, 0, NULL, cred, out);
}

int
flyfs_symlink(struct flyfs *fs, uint64_t dir, const char *name,
    const char *target, const struct flyfs_cred *cred,
    struct flyfs_attr *out)
{
	return create_node(fs, dir, name, S_IFLNK | 0777, 0, target, cred,
	    out);
}

/* ---- Readlink -------------------------------------------------------------- */

/*
 * Read the target of the extent-mapped symlink IP into a malloc'd string
 * of LEN bytes.  The block is read from the device directly: it is
 * written once, at creation, and never cached.
 */
static int
symlink_read_block(struct fs_inode *ip, size_t len, char **outp)
{
	struct flyfs *fs = ip->i_fs;
	struct flyfs_inode *din = &ip->i_din;
	uint64_t pblk;
	void *buf;
	char *s;
	int error;

	if (le16_get(din->i_ext_hdr.en_magic) != FLYFS_EXTENT_NODE_MAGIC ||
	    le16_get(din->i_ext_hdr.en_count) != 1 ||
	    le16_get(din->i_ext_hdr.en_level) != 0 ||
	    le64_get(din->i_ext[0].e_lblk) != 0 ||
	    din->i_ext[0].e_comp != FLYFS_COMP_NONE ||
	    (pblk = le64_get(din->i_ext[0].e_pblk)) == 0 ||
	    pblk >= fs->s_sb.block_count || len > FLYFS_SYMLINK_MAX)
		return fs_corrupt(fs, 0, ip->i_ino, "bad symlink mapping");
	if ((buf = blockdev_alloc_buf(fs->s_bdev, FLYFS_BLOCK_SIZE)) == NULL)
		return ENOMEM;
	error = blockdev_pread(fs->s_bdev, buf, FLYFS_BLOCK_SIZE,
	    fs_blk_off(pblk));
	if (error == 0) {
		if ((s = malloc(len + 1)) == NULL) {
			error = ENOMEM;
		} else {
			memcpy(s, buf, len);
			s[len] = '\0';
			*outp = s;
		}
	}
	blockdev_free_buf(buf);
	return error;
}

int
flyfs_readlink(struct flyfs *fs, uint64_t ino, char *buf, size_t size,
    size_t *lenp)
{
	struct fs_inode *ip;
	size_t len;
	char *s = NULL;
	int error = 0;

	if ((error = fs_iget(fs, ino, &ip)) != 0)
		return error;
	if (!S_ISLNK(fs_i_mode(ip))) {
		fs_iput(ip);
		return EINVAL;
	}
	pthread_rwlock_rdlock(&ip->i_lock);
	len = fs_i_size(ip);
	if (fs_i_flags(ip) & FLYFS_IFL_INLINE) {
		if (len > SYMLINK_INLINE_MAX)
			error = fs_corrupt(fs, 0, ino, "inline symlink of %zu",
			    len);
		else if (len > size)
			error = ERANGE;
		else
			memcpy(buf, ip->i_din.i_symlink, len);
	} else {
		/*
		 * i_dirpriv caches the target (the inode is not a
		 * directory); shared holders race to fill it, one wins.
		 */
		char *cached = __atomic_load_n((char **)&ip->i_dirpriv,
		    __ATOMIC_ACQUIRE);
		if (cached == NULL) {
			error = symlink_read_block(ip, len, &s);
			if (error == 0) {
				void *expect = NULL;
				if (__atomic_compare_exchange_n(&ip->i_dirpriv,
				    &expect, s, false, __ATOMIC_ACQ_REL,
				    __ATOMIC_ACQUIRE)) {
					cached = s;
					s = NULL;
				} else {
					cached = expect;
				}
			}
		}
		if (error == 0) {
			if (len > size)
				error = ERANGE;
			else
				memcpy(buf, cached, len);
		}
		free(s);
	}
	pthread_rwlock_unlock(&ip->i_lock);
	if (error == 0)
		*lenp = len;
	fs_iput(ip);
	return error;
}

/* ---- Link ---------------------------------------------------------------- */

int
flyfs_link(struct flyfs *fs, uint64_t ino, uint64_t newdir,
    const char *newname, struct flyfs_attr *out)
{
	struct fs_inode *ip, *dp;
	struct fs_trans *tx;
	struct fs_dirent de;
	struct lockset ls;
	size_t len;
	int error;

	if ((error = name_len(newname, &len)) != 0)
		return error;
	if ((error = fs_iget(fs, ino, &ip)) != 0)
		return error;
	if (S_ISDIR(fs_i_mode(ip))) {
		fs_iput(ip);
		return EPERM;
	}
	if ((error = get_dir(fs, newdir, &dp)) != 0) {
		fs_iput(ip);
		return error;
	}
	lockset_lock(&ls, dp, ip, NULL, NULL);
	if (is_dot(newname))
		error = EEXIST;
	else if (fs_i_nlink(dp) == 0 || fs_i_nlink(ip) == 0)
		error = ENOENT;
	else if (fs_i_nlink(ip) >= FLYFS_LINK_MAX)
		error = EMLINK;
	else if ((error = fs_dir_lookup(dp, newname, len, &de)) != ENOENT)
		error = error == 0 ? EEXIST : error;
	else
		error = fs_trans_begin(fs, fs_dir_insert_blocks(dp) +
		    FS_NLINK_BLOCKS + 2, &tx);
	if (error == 0) {
		error = fs_dir_insert(tx, dp, newname, len, ip->i_ino,
		    fs_mode_to_dtype(fs_i_mode(ip)), NULL);
		if (error == 0)
			error = fs_inode_nlink_inc(tx, ip);
		if (error == 0)
			error = fs_inode_changed(tx, ip);
		if (error == 0)
			error = dir_changed(tx, dp);
		error = fs_trans_finish(tx, error);
		if (error == 0)
			hand_out(ip, out);
	}
	lockset_unlock(&ls);
	fs_iput(dp);
	fs_iput(ip);
	return error;
}

/* ---- Unlink and rmdir ------------------------------------------------------- */

/*
 * Find NAME in DP and lock DP and its inode: on success *IPP is the
 * entry's inode, referenced, and both are locked in LS.
 */
static int
lock_entry(struct flyfs *fs, struct fs_inode *dp, const char *name,
    size_t len, struct lockset *ls, struct fs_inode **ipp)
{
	struct fs_dirent de, de2;
	struct fs_inode *ip;
	int error;

	for (;;) {
		if ((error = lookup_shared(dp, name, len, &de)) != 0)
			return error;
		if ((error = fs_iget(fs, de.ino, &ip)) != 0)
			return error == ENOENT ? fs_corrupt(fs, 0, dp->i_ino,
			    "entry names free inode %llu",
			    (unsigned long long)de.ino) : error;
		lockset_lock(ls, dp, ip, NULL, NULL);
		error = fs_dir_lookup(dp, name, len, &de2);
		if (error == 0 && de2.ino == de.ino) {
			*ipp = ip;
			return 0;
		}
		lockset_unlock(ls);
		fs_iput(ip);
		if (error != 0)
			return error;
	}
}

static int
remove_entry(struct flyfs *fs, uint64_t dir, const char *name,
    const struct flyfs_cred *cred, bool rmdir)
{
	struct fs_inode *dp, *ip = NULL;
	struct fs_trans *tx;
	struct lockset ls = { .n = 0 };
	size_t len;
	int error;

	if ((error = name_len(name, &len)) != 0)
		return error;
	if ((error = get_dir(fs, dir, &dp)) != 0)
		return error;
	if (is_dot(name)) {
		fs_iput(dp);
		if (!rmdir)
			return EISDIR;
		return name[1] == '\0' ? EINVAL : ENOTEMPTY;
	}
	if ((error = lock_entry(fs, dp, name, len, &ls, &ip)) != 0)
		goto out;
	if (rmdir && !S_ISDIR(fs_i_mode(ip)))
		error = ENOTDIR;
	else if (!rmdir && S_ISDIR(fs_i_mode(ip)))
		error = EISDIR;
	else if ((error = sticky_check(dp, ip, cred)) != 0)
		;
	else if (rmdir && !fs_dir_is_empty(ip))
		error = ENOTEMPTY;
	else
		error = fs_trans_begin(fs, fs_dir_remove_blocks(dp) +
		    2 * FS_NLINK_BLOCKS + 2, &tx);
	if (error == 0) {
		error = fs_dir_remove(tx, dp, name, len, NULL);
		if (error == 0 && rmdir) {
			error = fs_inode_nlink_set(tx, ip, 0);
			if (error == 0)
				error = fs_inode_nlink_dec(tx, dp);
		} else if (error == 0) {
			error = fs_inode_nlink_dec(tx, ip);
		}
		if (error == 0)
			error = fs_inode_changed(tx, ip);
		if (error == 0)
			error = dir_changed(tx, dp);
		error = fs_trans_finish(tx, error);
		if (error == 0)
			FS_COUNT(fs, unlinks, 1);
	}
	lockset_unlock(&ls);
out:
	iput_opt(ip);
	fs_iput(dp);
	return error;
}

int
flyfs_unlink(struct flyfs *fs, uint64_t dir, const char *name,
    const struct flyfs_cred *cred)
{
	return remove_entry(fs, dir, name, cred, false);
}

int
flyfs_rmdir(struct flyfs *fs, uint64_t dir, const char *name,
    const struct flyfs_cred *cred)
{
	return remove_entry(fs, dir, name, cred, true);
}

/* ---- Rename ------------------------------------------------------------------ */

struct rename_ctx {
	struct flyfs	*fs;
	struct fs_inode	*odp, *ndp;	/* directories */
	struct fs_inode	*sp, *tp;	/* source, target (NULL: none) */
	const char	*oname, *nname;
	size_t		olen, nlen;
	unsigned	flags;
	const struct flyfs_cred *cred;
};

/*
 * Is directory ANC DP itself or one of its ancestors?  Walks ".." up to
 * the root; the caller holds s_rename_lock, so no ".." changes meanwhile.
 */
static int
is_ancestor(struct flyfs *fs, struct fs_inode *anc, struct fs_inode *dp,
    bool *res)
{
	uint64_t ino = dp->i_ino, steps = 0;
	struct fs_inode *ip;
	int error;

	*res = false;
	while (ino != anc->i_ino) {
		if (ino == FLYFS_ROOT_INO)
			return 0;
		if (++steps > (1u << 24))
			return fs_corrupt(fs, 0, dp->i_ino,
			    "directory loop above it");
		if ((error = fs_iget(fs, ino, &ip)) != 0)
			return error;
		if (!S_ISDIR(fs_i_mode(ip))) {
			fs_iput(ip);
			return fs_corrupt(fs, 0, ino, "\"..\" not a directory");
		}
		ino = fs_dir_parent(ip);
		fs_iput(ip);
	}
	*res = true;
	return 0;
}

/* Find both names and lock everything (see the top of the file). */
static int
rename_lock(struct rename_ctx *c, struct lockset *ls)
{
	struct fs_dirent sde, tde, sde2, tde2;
	int error, terr, terr2;

	for (;;) {
		if ((error = lookup_shared(c->odp, c->oname, c->olen,
		    &sde)) != 0)
			return error;
		terr = lookup_shared(c->ndp, c->nname, c->nlen, &tde);
		if (terr != 0 && terr != ENOENT)
			return terr;
		if ((error = fs_iget(c->fs, sde.ino, &c->sp)) != 0)
			return error;
		c->tp = NULL;
		if (terr == 0 && (error = fs_iget(c->fs, tde.ino,
		    &c->tp)) != 0) {
			fs_iput(c->sp);
			c->sp = NULL;
			return error;
		}
		lockset_lock(ls, c->odp, c->ndp, c->sp, c->tp);
		error = fs_dir_lookup(c->odp, c->oname, c->olen, &sde2);
		terr2 = fs_dir_lookup(c->ndp, c->nname, c->nlen, &tde2);
		if (error == 0 && sde2.ino == sde.ino &&
		    (terr2 == 0 || terr2 == ENOENT) && terr2 == terr &&
		    (terr != 0 || tde2.ino == tde.ino))
			return 0;
		lockset_unlock(ls);
		iput_opt(c->tp);
		fs_iput(c->sp);
		c->sp = c->tp = NULL;
		if (error != 0)
			return error;
		if (terr2 != 0 && terr2 != ENOENT)
			return terr2;
	}
}

/* The checks of rename(2), with everything locked. */
static int
rename_check(struct rename_ctx *c)
{
	bool sdir = S_ISDIR(fs_i_mode(c->sp));
	bool tdir = c->tp != NULL && S_ISDIR(fs_i_mode(c->tp));
	bool cross = c->odp != c->ndp, under;
	int error;

	if (c->tp == NULL && (c->flags & FLYFS_RENAME_EXCHANGE))
		return ENOENT;
	if (c->tp != NULL && (c->flags & FLYFS_RENAME_NOREPLACE))
		return EEXIST;
	if (fs_i_nlink(c->ndp) == 0)
		return ENOENT;
	if ((error = sticky_check(c->odp, c->sp, c->cred)) != 0)
		return error;
	if (c->tp != NULL &&
	    (error = sticky_check(c->ndp, c->tp, c->cred)) != 0)
		return error;
	if (c->tp != NULL && !(c->flags & FLYFS_RENAME_EXCHANGE)) {
		if (sdir && !tdir)
			return ENOTDIR;
		if (!sdir && tdir)
			return EISDIR;
		if (tdir && !fs_dir_is_empty(c->tp))
			return ENOTEMPTY;
	}
	if (!cross)
		return 0;
	/* A directory may not move under itself. */
	if (sdir) {
		if ((error = is_ancestor(c->fs, c->sp, c->ndp, &under)) != 0)
			return error;
		if (under)
			return EINVAL;
	}
	if (tdir && (c->flags & FLYFS_RENAME_EXCHANGE)) {
		if ((error = is_ancestor(c->fs, c->tp, c->odp, &under)) != 0)
			return error;
		if (under)
			return EINVAL;
	}
	/* The receiving directory gains a subdirectory. */
	if (sdir && !tdir && fs_i_nlink(c->ndp) >= FLYFS_LINK_MAX)
		return EMLINK;
	if (tdir && !sdir && (c->flags & FLYFS_RENAME_EXCHANGE) &&
	    fs_i_nlink(c->odp) >= FLYFS_LINK_MAX)
		return EMLINK;
	return 0;
}

/* Directory IP moved from FROM to TO: "..", and the parents' counts. */
static int
move_dir(struct fs_trans *tx, struct fs_inode *ip, struct fs_inode *from,
    struct fs_inode *to)
{
	int error;

	fs_dir_set_parent(ip, to->i_ino);
	if ((error = fs_inode_nlink_dec(tx, from)) != 0)
		return error;
	return fs_inode_nlink_inc(tx, to);
}

static int
rename_exchange(struct fs_trans *tx, struct rename_ctx *c)
{
	bool sdir = S_ISDIR(fs_i_mode(c->sp));
	bool tdir = S_ISDIR(fs_i_mode(c->tp));
	int error;

	error = fs_dir_replace(tx, c->odp, c->oname, c->olen, c->tp->i_ino,
	    fs_mode_to_dtype(fs_i_mode(c->tp)));
	if (error == 0)
		error = fs_dir_replace(tx, c->ndp, c->nname, c->nlen,
		    c->sp->i_ino, fs_mode_to_dtype(fs_i_mode(c->sp)));
	if (error == 0 && c->odp != c->ndp) {
		if (sdir && tdir) {
			fs_dir_set_parent(c->sp, c->ndp->i_ino);
			fs_dir_set_parent(c->tp, c->odp->i_ino);
		} else if (sdir) {
			error = move_dir(tx, c->sp, c->odp, c->ndp);
		} else if (tdir) {
			error = move_dir(tx, c->tp, c->ndp, c->odp);
		}
	}
	if (error == 0)
		error = fs_inode_changed(tx, c->tp);
	return error;
}

static int
rename_move(struct fs_trans *tx, struct rename_ctx *c)
{
	bool sdir = S_ISDIR(fs_i_mode(c->sp));
	int error;

	if (c->tp != NULL) {
		error = fs_dir_replace(tx, c->ndp, c->nname, c->nlen,
		    c->sp->i_ino, fs_mode_to_dtype(fs_i_mode(c->sp)));
		if (error != 0)
			return error;
		if (S_ISDIR(fs_i_mode(c->tp))) {
			/* The replaced directory's ".." link goes too. */
			error = fs_inode_nlink_set(tx, c->tp, 0);
			if (error == 0)
				error = fs_inode_nlink_dec(tx, c->ndp);
		} else {
			error = fs_inode_nlink_dec(tx, c->tp);
		}
		if (error == 0)
			error = fs_inode_changed(tx, c->tp);
	} else {
		error = fs_dir_insert(tx, c->ndp, c->nname, c->nlen,
		    c->sp->i_ino, fs_mode_to_dtype(fs_i_mode(c->sp)), NULL);
	}
	if (error == 0)
		error = fs_dir_remove(tx, c->odp, c->oname, c->olen, NULL);
	if (error == 0 && sdir && c->odp != c->ndp)
		error = move_dir(tx, c->sp, c->odp, c->ndp);
	return error;
}

int
flyfs_rename(struct flyfs *fs, uint64_t olddir, const char *oldname,
    uint64_t newdir, const char *newname, unsigned flags,
    const struct flyfs_cred *cred)
{
	struct rename_ctx c = { .fs = fs, .oname = oldname,
	    .nname = newname, .flags = flags, .cred = cred };
	struct lockset ls = { .n = 0 };
	struct fs_trans *tx;
	bool cross;
	unsigned nblocks;
	int error;

	if ((flags & ~(FLYFS_RENAME_NOREPLACE | FLYFS_RENAME_EXCHANGE)) ||
	    flags == (FLYFS_RENAME_NOREPLACE | FLYFS_RENAME_EXCHANGE))
		return EINVAL;
	if ((error = name_len(oldname, &c.olen)) != 0 ||
	    (error = name_len(newname, &c.nlen)) != 0)
		return error;
	if (is_dot(oldname) || is_dot(newname))
		return EINVAL;
	if ((error = get_dir(fs, olddir, &c.odp)) != 0)
		return error;
	if ((error = get_dir(fs, newdir, &c.ndp)) != 0) {
		fs_iput(c.odp);
		return error;
	}
	cross = c.odp != c.ndp;
	if (cross)
		pthread_mutex_lock(&fs->s_rename_lock);
	if ((error = rename_lock(&c, &ls)) != 0)
		goto out;
	if (c.tp != NULL && (flags & FLYFS_RENAME_NOREPLACE)) {
		error = EEXIST;
		goto unlock;
	}
	if (c.sp == c.tp)		/* two names of one inode: no-op */
		goto unlock;
	if ((error = rename_check(&c)) != 0)
		goto unlock;
	nblocks = fs_dir_insert_blocks(c.ndp) + fs_dir_remove_blocks(c.odp) +
	    fs_dir_replace_blocks(c.odp) + fs_dir_replace_blocks(c.ndp) +
	    4 * FS_NLINK_BLOCKS + 6;
	if ((error = fs_trans_begin(fs, nblocks, &tx)) != 0)
		goto unlock;
	if (flags & FLYFS_RENAME_EXCHANGE)
		error = rename_exchange(tx, &c);
	else
		error = rename_move(tx, &c);
	if (error == 0)
		error = fs_inode_changed(tx, c.sp);
	if (error == 0)
		error = dir_changed(tx, c.odp);
	if (error == 0 && cross)
		error = dir_changed(tx, c.ndp);
	error = fs_trans_finish(tx, error);
	if (error == 0)
		FS_COUNT(fs, renames, 1);
unlock:
	lockset_unlock(&ls);
out:
	if (cross)
		pthread_mutex_unlock(&fs->s_rename_lock);
	iput_opt(c.tp);
	iput_opt(c.sp);
	fs_iput(c.ndp);
	fs_iput(c.odp);
	return error;
}

/* ---- Readdir ------------------------------------------------------------------ */

struct rd_ctx {
	struct flyfs	*fs;
	bool		plus;
	flyfs_filldir_t	*fill;
	void		*arg;
	int		error;
};

/* One entry to FILL; with PLUS its attributes and, if taken, +lookup. */
static int
rd_emit(struct rd_ctx *c, const char *name, size_t len, uint64_t ino,
    unsigned type, uint64_t cookie, bool ref)
{
	struct flyfs_attr attr;
	struct fs_inode *ip;
	int r, error;

	if (!c->plus)
		return c->fill(c->arg, name, len, ino, type, cookie, NULL);
	if ((error = fs_iget(c->fs, ino, &ip)) != 0) {
		c->error = error;
		return 1;
	}
	fs_inode_getattr(ip, &attr);
	r = c->fill(c->arg, name, len, ino, type, cookie, &attr);
	if (r == 0 && ref)
		fs_inode_lookup_ref(ip);
	fs_iput(ip);
	return r;
}

static int
rd_entry(void *arg, const char *name, size_t len, uint64_t ino,
    unsigned type, uint64_t key)
{
	return rd_emit(arg, name, len, ino, type, key, true);
}

int
flyfs_readdir(struct flyfs *fs, uint64_t dir, uint64_t cookie, bool plus,
    flyfs_filldir_t *fill, void *arg)
{
	struct rd_ctx c = { .fs = fs, .plus = plus, .fill = fill, .arg = arg };
	struct fs_inode *dp;
	int error = 0;

	if ((error = get_dir(fs, dir, &dp)) != 0)
		return error;
	pthread_rwlock_rdlock(&dp->i_lock);
	if (cookie < FLYFS_DIR_COOKIE_DOT &&
	    rd_emit(&c, ".", 1, dp->i_ino, DT_DIR, FLYFS_DIR_COOKIE_DOT,
	    false) != 0)
		goto out;
	if (cookie < FLYFS_DIR_COOKIE_DOTDOT &&
	    rd_emit(&c, "..", 2, fs_dir_parent(dp), DT_DIR,
	    FLYFS_DIR_COOKIE_DOTDOT, false) != 0)
		goto out;
	error = fs_dir_iterate(dp, cookie, rd_entry, &c);
out:
	pthread_rwlock_unlock(&dp->i_lock);
	if (c.error != 0)
		error = c.error;
	if (error == 0)
		fs_inode_accessed(dp);	/* as ext4's iterate_dir does */
	fs_iput(dp);
	return error;
}
