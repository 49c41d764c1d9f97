/*
 * flyfs.h - the filesystem core's public interface.
 *
 * This is the contract between the filesystem core (the fs/ sources: namespace,
 * inodes, directories, extents, allocator, journal) and its callers: the
 * FUSE adapter (fs/fuse_ops.c), the unit tests and the crash tests.  It
 * knows nothing of FUSE: inodes are named by number, every function returns
 * 0 or a positive errno, and nothing here sleeps on a FUSE request.
 *
 * Reference counting follows FUSE's lookup/forget protocol, so the adapter
 * can pass counts through unchanged:
 *   - every call that hands out an inode's attributes with "(+lookup)"
 *     below takes one lookup reference on that inode;
 *   - flyfs_forget(ino, n) drops N of them;
 *   - an inode whose link count is zero is reclaimed when its lookup count
 *     and its open count both reach zero; until then it is on the orphan
 *     list, which survives a crash (mount reclaims it).
 * The root inode (FLYFS_ROOT_INO) is never forgotten.
 *
 * Permission checks are the kernel's job (FUSE default_permissions); the
 * core enforces only what the kernel cannot: sticky-directory rules in
 * unlink/rmdir/rename are checked here with the caller's credentials
 * (struct flyfs_cred), and setattr clears setuid/setgid on a write or
 * chown by a non-owner as ext4 does.
 *
 * Threads: every function may be called concurrently from any number of
 * threads.  Locking is internal (docs/design.md has the lock order).
 */
#ifndef FLYFS_FLYFS_H
#define FLYFS_FLYFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>

struct blockdev;
struct flyfs;

#define FLYFS_ROOT_INO		1	/* = FUSE_ROOT_ID */

/* ---- Mount ------------------------------------------------------------ */

struct flyfs_mount_opts {
	long	cache_size;		/* bytes of buffer cache; 0 = default */
	int	commit_interval;	/* seconds between periodic commits;
					 * 0 = default (5) */
	bool	readonly;		/* no writes at all; replay refused if
					 * the journal needs it (EROFS) */
	bool	noatime;		/* reads never update atime (else
					 * relatime, as ext4's default) */
	int	compress;		/* -1 = image default, else FLYFS_COMP_* */
	int	compress_level;		/* 0 = algorithm default */
	unsigned queue_depth;		/* blockdev queue depth; 0 = default */
};

/*
 * Open the image at PATH (O_DIRECT), check the superblock, start the
 * buffer cache (bufinit) if it is not running, replay the journal, reclaim
 * orphans, and return the mounted filesystem.  ERR receives a sentence for
 * the user on failure.  Only one filesystem may be mounted per process
 * (the buffer cache is global, as in the kernel).
 */
int	flyfs_mount(const char *path, const struct flyfs_mount_opts *opts,
	    struct flyfs **fsp, char *err, size_t errlen);
/* The same on an open device (tests: RAM devices, power-cut devices).
 * The filesystem does not own BD: the caller closes it after unmount. */
int	flyfs_mount_bdev(struct blockdev *bd, const struct flyfs_mount_opts *opts,
	    struct flyfs **fsp, char *err, size_t errlen);
/*
 * Commit, write every dirty buffer, mark the superblock clean, stop the
 * buffer cache and close the image (if flyfs_mount opened it).  Returns
 * the first error met (EIO if data could not be written); the filesystem
 * is gone either way.
 */
int	flyfs_unmount(struct flyfs *fs);
/*
 * Crash simulation for tests: stop everything WITHOUT writing dirty
 * buffers or committing, as if the process had been killed.  What reached
 * the device stays; the rest is lost.
 */
void	flyfs_abandon(struct flyfs *fs);

/*
 * Have CB(ARG, ino) called when the core changes an inode's attributes on
 * its own, with no request to return them to: a write that drops set-id
 * bits.  A cache of attributes above (the kernel's, through FUSE) must
 * forget its copy.  Called on the writer's thread, no locks held.  Set
 * before the filesystem is used; NULL (the default) for none.
 */
typedef void flyfs_attr_cb(void *arg, uint64_t ino);
void	flyfs_set_attr_cb(struct flyfs *fs, flyfs_attr_cb *cb, void *arg);

/* ---- Attributes --------------------------------------------------------- */

struct flyfs_attr {
	uint64_t	ino;
	uint32_t	generation;	/* with ino, unique over the image's life */
	mode_t		mode;
	nlink_t		nlink;
	uid_t		uid;
	gid_t		gid;
	dev_t		rdev;
	uint64_t	size;
	uint64_t	blocks;		/* 512-byte units, as st_blocks */
	uint32_t	blksize;	/* preferred I/O size */
	struct timespec	atime, mtime, ctime, btime;
};

/* The caller, for ownership of new inodes and the sticky-bit rules. */
struct flyfs_cred {
	uid_t	uid;
	gid_t	gid;
	/* Optional: is the caller a member of supplementary group GID?  Asked
	 * only to decide whether a write clears S_ISGID (rare, may be slow);
	 * NULL means "no supplementary groups". */
	bool	(*in_group)(const struct flyfs_cred *cred, gid_t gid);
	void	*ctx;			/* for in_group */
};

/* flyfs_setattr() TO_SET bits. */
#define FLYFS_SET_MODE		0x0001
#define FLYFS_SET_UID		0x0002
#define FLYFS_SET_GID		0x0004
#define FLYFS_SET_SIZE		0x0008
#define FLYFS_SET_ATIME		0x0010
#define FLYFS_SET_MTIME		0x0020
#define FLYFS_SET_ATIME_NOW	0x0040
#define FLYFS_SET_MTIME_NOW	0x0080
#define FLYFS_SET_CTIME		0x0100

int	flyfs_getattr(struct flyfs *fs, uint64_t ino, struct flyfs_attr *out);
/*
 * Change what TO_SET says, from IN.  Size changes truncate or extend (holes).
 * ctime is updated by every change.  A size change by a caller other than
 * root clears S_ISUID and S_ISGID (S_ISGID by fs_kill_sgid's rule); a
 * chown of a non-directory clears them whoever makes it (root keeps a
 * S_ISGID without S_IXGRP).  Both drop a regular file's
 * security.capability, whoever makes them.
 * OUT (may be NULL) receives the new attributes.
 */
int	flyfs_setattr(struct flyfs *fs, uint64_t ino, const struct flyfs_attr *in,
	    int to_set, const struct flyfs_cred *cred, struct flyfs_attr *out);

/* ---- Namespace --------------------------------------------------------- */

/* Find NAME in DIR.  OUT (+lookup).  ENOENT, ENOTDIR, ENAMETOOLONG. */
int	flyfs_lookup(struct flyfs *fs, uint64_t dir, const char *name,
	    struct flyfs_attr *out);
/* Drop NLOOKUP lookup references on INO (FUSE forget). */
void	flyfs_forget(struct flyfs *fs, uint64_t ino, uint64_t nlookup);

/*
 * Create NAME in DIR: regular file, fifo, socket, char or block device per
 * MODE's type (S_IFREG if none); RDEV for devices.  OUT (+lookup).
 * EEXIST, ENOTDIR, ENAMETOOLONG, ENOSPC, EMLINK (dir link count).
 */
int	flyfs_mknod(struct flyfs *fs, uint64_t dir, const char *name,
	    mode_t mode, dev_t rdev, const struct flyfs_cred *cred,
	    struct flyfs_attr *out);
int	flyfs_mkdir(struct flyfs *fs, uint64_t dir, const char *name,
	    mode_t mode, const struct flyfs_cred *cred, struct flyfs_attr *out);
int	flyfs_symlink(struct flyfs *fs, uint64_t dir, const char *name,
	    const char *target, const struct flyfs_cred *cred,
	    struct flyfs_attr *out);
/* Copy the target into BUF (not NUL terminated); *LEN = its length.
 * ERANGE if SIZE is too small; EINVAL if INO is not a symlink. */
int	flyfs_readlink(struct flyfs *fs, uint64_t ino, char *buf, size_t size,
	    size_t *len);
/* New name NEWNAME in NEWDIR for INO.  OUT (+lookup).  EPERM on dirs. */
int	flyfs_link(struct flyfs *fs, uint64_t ino, uint64_t newdir,
	    const char *newname, struct flyfs_attr *out);
int	flyfs_unlink(struct flyfs *fs, uint64_t dir, const char *name,
	    const struct flyfs_cred *cred);
int	flyfs_rmdir(struct flyfs *fs, uint64_t dir, const char *name,
	    const struct flyfs_cred *cred);

#define FLYFS_RENAME_NOREPLACE	0x1	/* = RENAME_NOREPLACE */
#define FLYFS_RENAME_EXCHANGE	0x2	/* = RENAME_EXCHANGE */
int	flyfs_rename(struct flyfs *fs, uint64_t olddir, const char *oldname,
	    uint64_t newdir, const char *newname, unsigned flags,
	    const struct flyfs_cred *cred);

/*
 * Readdir.  Calls FILL for each entry whose cookie is > COOKIE, in cookie
 * order, starting with "." (cookie 1) and ".." (cookie 2) when COOKIE is 0.
 * The cookie passed to FILL is the value to resume after it; cookies stay
 * valid while the directory changes (an entry added or removed meanwhile
 * may or may not be seen; no other entry is skipped or repeated).  FILL
 * returns non-zero to stop (buffer full).  With PLUS, FILL also gets the
 * attributes and the entry takes a lookup reference when FILL returns 0
 * (READDIRPLUS); "." and ".." never take one.
 */
typedef int flyfs_filldir_t(void *arg, const char *name, size_t namelen,
	    uint64_t ino, unsigned dtype, uint64_t cookie,
	    const struct flyfs_attr *attr);
int	flyfs_readdir(struct flyfs *fs, uint64_t dir, uint64_t cookie,
	    bool plus, flyfs_filldir_t *fill, void *arg);

/* ---- Open files and data ---------------------------------------------- */

/*
 * Open-count bookkeeping for orphans: an unlinked inode stays while open.
 * FLYFS_O_DIRECT marks the handle's I/O as B_DIRECT (buffers not kept).
 */
#define FLYFS_O_DIRECT	0x1
int	flyfs_open(struct flyfs *fs, uint64_t ino, int flags);
int	flyfs_release(struct flyfs *fs, uint64_t ino);

/*
 * Read up to LEN bytes at OFF into BUF through the buffer cache; holes and
 * unwritten extents read as zeros; *DONE < LEN only at end of file.
 * IOFLAGS: FLYFS_O_DIRECT.  EISDIR on directories.
 */
int	flyfs_read(struct flyfs *fs, uint64_t ino, void *buf, size_t len,
	    off_t off, int ioflags, size_t *done);
/*
 * The end of a read flyfs_read_async() finished later: DATA holds LEN
 * bytes, valid only during the call; on error DATA is NULL, LEN 0 and
 * ERROR the read's errno.  Runs on whichever thread completed the device
 * read (usually the block device's completion thread), with a buffer
 * locked: it must not call back into the core.
 */
typedef void flyfs_read_cb(void *arg, const void *data, size_t len,
	    int error);
/*
 * flyfs_read, except that a read which needs exactly one block from the
 * device (a random read within one data block that is not cached) is
 * issued and left: it returns EINPROGRESS, and CB(ARG, ...) runs once when
 * the data is in, instead of the caller waiting for it.  Any other read is
 * done as flyfs_read does it, into BUF, and CB is not called.
 */
int	flyfs_read_async(struct flyfs *fs, uint64_t ino, void *buf,
	    size_t len, off_t off, int ioflags, size_t *done,
	    flyfs_read_cb *cb, void *arg);
/*
 * Write LEN bytes at OFF through the buffer cache (delayed write; the
 * writer may block in bd_wait).  Extends the file, updates mtime/ctime,
 * clears S_ISUID/S_ISGID when CRED is not root, drops security.capability
 * (the kernel leaves both to us: fs/fuse_wire.c).  EFBIG past the maximum
 * file size, ENOSPC when the image is full (space is reserved at write
 * time, allocated at flush), EIO if an earlier asynchronous write of this
 * file failed (reported once).
 */
int	flyfs_write(struct flyfs *fs, uint64_t ino, const void *buf, size_t len,
	    off_t off, int ioflags, const struct flyfs_cred *cred,
	    size_t *done);

/*
 * MODE: 0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE|KEEP_SIZE,
 * FALLOC_FL_ZERO_RANGE[|KEEP_SIZE].  Others: EOPNOTSUPP.  Clears
 * S_ISUID/S_ISGID as a write does when CRED is not root (ext4's
 * file_modified; FUSE does not pass that on).  The kernel itself removes
 * security.capability first.
 */
int	flyfs_fallocate(struct flyfs *fs, uint64_t ino, int mode, off_t off,
	    off_t len, const struct flyfs_cred *cred);
/* WHENCE: SEEK_DATA or SEEK_HOLE.  ENXIO past the end. */
int	flyfs_lseek(struct flyfs *fs, uint64_t ino, off_t off, int whence,
	    off_t *result);

/* Make INO's data (and with !DATASYNC all its metadata) durable. */
int	flyfs_fsync(struct flyfs *fs, uint64_t ino, bool datasync);
/* Make everything durable (syncfs). */
int	flyfs_sync(struct flyfs *fs);

/* ---- Extended attributes (user.*, trusted.*, security.*) -------------- */

#define FLYFS_XATTR_CREATE	0x1	/* = XATTR_CREATE */
#define FLYFS_XATTR_REPLACE	0x2	/* = XATTR_REPLACE */
int	flyfs_setxattr(struct flyfs *fs, uint64_t ino, const char *name,
	    const void *value, size_t size, int flags);
/* SIZE 0: *LEN = the value's size.  ENODATA, ERANGE. */
int	flyfs_getxattr(struct flyfs *fs, uint64_t ino, const char *name,
	    void *value, size_t size, size_t *len);
/* NUL-separated names; SIZE 0: *LEN = the size needed.  ERANGE. */
int	flyfs_listxattr(struct flyfs *fs, uint64_t ino, char *list,
	    size_t size, size_t *len);
int	flyfs_removexattr(struct flyfs *fs, uint64_t ino, const char *name);

/*
 * The compression setting behind the virtual xattr flyfs.compression
 * (docs/compression.md): "none", "zstd", "zstd:N" or "default".  On the
 * root inode it is the live mount-wide setting (get: the one in effect
 * there, i.e. the mount option or the image default; set: no permission
 * check here, the caller allows only root or the mounting user).  On any
 * other inode it is the inode's own setting, stored in the inode (set:
 * EPERM unless UID is 0 or the owner), inherited by files created in a
 * directory.  get: *LEN = the text's length, ERANGE if SIZE is too small
 * (SIZE 0: only *LEN).  set: EINVAL for a bad value, EROFS.
 */
int	flyfs_compression_get(struct flyfs *fs, uint64_t ino, char *value,
	    size_t size, size_t *len);
int	flyfs_compression_set(struct flyfs *fs, uint64_t ino,
	    const char *value, size_t size, uint32_t uid);

/* ---- Filesystem-wide ----------------------------------------------------- */

int	flyfs_statfs(struct flyfs *fs, struct statvfs *out);

/*
 * Filesystem-wide figures for the flyfs.fs.* xattrs and flyfs-stat: calls
 * FN once per figure (name, value), e.g. "commits", "free_blocks".  The
 * buffer cache's own registry (cache/bufstats.h) is separate.
 */
void	flyfs_stats_foreach(struct flyfs *fs,
	    void (*fn)(void *arg, const char *name, uint64_t value), void *arg);
/* Per-file figures for flyfs.file.*: cached_bytes, dirty_bytes, extents,
 * disk_bytes, ... */
int	flyfs_file_stats_foreach(struct flyfs *fs, uint64_t ino,
	    void (*fn)(void *arg, const char *name, uint64_t value), void *arg);

#endif /* FLYFS_FLYFS_H */
