/*
 * fs_int.h - the filesystem core's internal contract.
 *
 * Every core source file (fs/...) includes this header.  It defines the mount
 * state (struct flyfs), the in-memory inode (struct fs_inode), and the
 * services the infrastructure modules give the others:
 *
 *   super.c    mount / unmount / abandon, superblock, statfs, stats,
 *              fsync / sync, flyfs_getattr / setattr / open / release /
 *              forget (with inode.c)
 *   journal.c  transactions (handles), commit, checkpoint, replay, revoke,
 *              ordered data (the log is read by journal_scan.c, which
 *              fsck shares)
 *   alloc.c    block allocator (group descriptors + bitmaps, busy extents,
 *              delayed-allocation reservations), inode allocator (inode
 *              bitmap file, inode file growth)
 *   inode.c    inode cache, inode read/write, generation numbers, link
 *              counts, orphan list, reclaim of unlinked inodes
 *
 * and declares the entry points the other modules implement, which the
 * infrastructure calls (marked "implemented in X.c"):
 *   dir.c / namei.c / xattr.c   (directories, namespace, xattrs)
 *   extent.c / file.c           (extent trees, file data)
 *
 * GENERAL RULES
 *   - Every function returns 0 or a positive errno.  Corrupt metadata is
 *     EUCLEAN, reported through fs_corrupt() (one log line naming the
 *     block or inode), never an assertion or a crash.
 *   - Block numbers are 4 KiB units (FLYFS_BLOCK_SIZE).  All metadata
 *     blocks (descriptor table, bitmaps, inode file blocks, inode bitmap
 *     and orphan file blocks, directory / extent / xattr blocks) are
 *     cached on the device vnode fs->devvp at byte offset blk * 4096, size
 *     4096: see fs_meta_read() / fs_meta_new().  File data is cached on
 *     the inode's own vnode (ip->i_vnode), by file offset.
 *   - Every change to a metadata block happens inside a transaction
 *     handle (fs_trans_begin .. fs_trans_end), with the buffer locked,
 *     followed by fs_trans_dirty() before the buffer is released.  Never
 *     bdwrite/bawrite/bwrite a metadata buffer yourself: the journal owns
 *     when it reaches its home.
 *
 * LOCK ORDER (outermost first).  Taking a lock of a lower number while
 * holding one of a higher number is a bug.
 *
 *   1. fs->s_rename_lock      (mutex)   namei.c: rename that moves a
 *                                       directory to another parent
 *   2. ip->i_lock             (rwlock)  several inodes: ascending i_ino
 *   2a. file data buffer lock getblk / bread / cluster_* on a file vnode
 *                                       (ip->i_vnode).  flyfs_write locks
 *                                       them under i_lock; the data
 *                                       strategy (file.c, run by
 *                                       bwrite / buf_daemon with the
 *                                       buffer locked) begins a handle
 *                                       to allocate on flush.  So a data
 *                                       buffer lock sits above the
 *                                       handle, and consequently:
 *                                       a commit never waits for a data
 *                                       buffer lock (ordered data waits
 *                                       for device bios, not buffers);
 *                                       truncate / punch discard cached
 *                                       data buffers (vtruncbuf /
 *                                       vinvalbuf) before they begin a
 *                                       handle, never while holding one.
 *   3. transaction handle     fs_trans_begin() may sleep until a commit
 *                                       finishes or journal space frees
 *                                       ("jwait"); a thread that already
 *                                       holds a handle nests and never
 *                                       waits.  So: never call
 *                                       fs_trans_begin() holding a lock
 *                                       below this line or a metadata
 *                                       buffer lock, unless nesting.
 *   4. ip->i_extlock          (mutex)   extent tree of one file,
 *                                       directory or symlink
 *   5. fs->s_ialloc_lock      (mutex)   inode bitmap file, inode file growth
 *      fs->s_orphan_lock      (mutex)   orphan file (never with ialloc)
 *   5a. i_extlock of a system inode (inode file, inode bitmap, orphan
 *                                       file): held by fs_sysfile_extend
 *                                       only, under ialloc or orphan
 *                                       lock, while the system file's
 *                                       extent tree grows.  Lookups
 *                                       (fs_sysfile_bmap) do not take it.
 *   6. fs->s_alloc_lock       (mutex)   block bitmaps, group descriptors,
 *                                       busy extents (alloc.c)
 *   7. metadata buffer lock   getblk / bread / fs_meta_read on devvp;
 *                                       several metadata buffers: any
 *                                       order is allowed only inside one
 *                                       inode's tree (parent before
 *                                       child); the allocator's
 *                                       bitmap/GDT buffers are taken
 *                                       under s_alloc_lock only
 *   8. leaf locks, never held across I/O, a sleep or another lock of
 *      this list except each other in this order:
 *        fs->s_icache_lock (inode hash, LRU, counts),
 *        ip->i_mtx (in-memory inode fields; on a system inode also its
 *          in-memory block map, so fs_sysfile_bmap may be called under
 *          any lock of levels 1-7),
 *        fs->s_res_lock (reservation counters),
 *        the journal's internal lock (journal.c)
 *   9. cache internals (v_token, shard spinlocks, kern_synch)
 *
 * WHAT A HANDLE-HOLDER MUST NOT DO
 *   - wait for a commit (fs_journal_commit_wait), for another thread's
 *     handle, or for a data flush (vfsync, bd_wait, bwrite of data);
 *   - hold the handle across bdwrite()/cluster_write() of file data (the
 *     writer may sleep in bd_wait for the daemons, which may need a
 *     commit to proceed).
 */
#ifndef FLYFS_FS_INT_H
#define FLYFS_FS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "blockdev/blockdev.h"
#include "cache/buf.h"
#include "cache/vfs_cluster.h"
#include "cache/vnode.h"
#include "fs/compress.h"
#include "fs/flyfs.h"
#include "fs/format.h"
#include "fs/ondisk.h"

struct fs_journal;		/* journal.c */
struct fs_alloc;		/* alloc.c */
struct fs_txn;			/* journal.c: one transaction */
struct fs_trans;		/* a handle, below */
struct fs_sysmap;		/* inode.c: a system file's block map */

/* Byte offset of block BLK on the device (and on fs->devvp). */
static inline off_t
fs_blk_off(uint64_t blk)
{
	return (off_t)(blk << FLYFS_BLOCK_SHIFT);
}

/* ---- Counters for flyfs_stats_foreach ---------------------------------- */

/*
 * Filesystem-wide event counters, monotonic, updated with FS_COUNT from
 * any module, read by flyfs_stats_foreach (name = field name).  (a)
 */
struct fs_counters {
	uint64_t commits;		/* transactions committed */
	uint64_t commit_blocks;		/* metadata blocks logged by them */
	uint64_t commit_log_blocks;	/* log blocks written (incl. control) */
	uint64_t commits_fsync;		/* commits forced by fsync/sync */
	uint64_t commits_early;		/* commits forced by LOCKED or journal
					 * pressure before the interval */
	uint64_t checkpoints;		/* checkpoint passes */
	uint64_t checkpoint_writes;	/* home writes issued by checkpoints */
	uint64_t replay_txns;		/* transactions replayed at mount */
	uint64_t replay_blocks;		/* blocks replayed at mount */
	uint64_t meta_reads;		/* metadata blocks read from the device */
	uint64_t meta_errors;		/* metadata blocks that failed checks */
	uint64_t blocks_allocated;
	uint64_t blocks_freed;
	uint64_t inodes_allocated;
	uint64_t inodes_freed;
	uint64_t orphans_reclaimed;	/* at mount */
	uint64_t ifile_grows;		/* inode file extensions */
	/* file data (file.c) */
	uint64_t data_reads;		/* flyfs_read calls */
	uint64_t data_writes;		/* flyfs_write calls */
	uint64_t data_read_bytes;
	uint64_t data_write_bytes;
	uint64_t data_flush_blocks;	/* data blocks written by the strategy */
	uint64_t partial_writes;	/* writes kept B_PARTIAL (not read) */
	uint64_t partial_fills;		/* B_PARTIAL buffers read to whole */
	uint64_t partial_reads;		/* reads served by B_PARTIAL pages */
	uint64_t async_reads;		/* reads answered from I/O completion */
	uint64_t dirty_page_flushes;	/* whole buffers flushed as their
					 * dirty pages only */
	uint64_t xattr_gets;		/* flyfs_getxattr calls (xattr.c) */
	/* compression figures: the engine's (fs_compress_stats_foreach) */
	/* namespace (namei.c) */
	uint64_t lookups;
	uint64_t creates;
	uint64_t unlinks;
	uint64_t renames;
};

#define FS_COUNT(fs, field, n)						\
	__atomic_fetch_add(&(fs)->s_count.field, (uint64_t)(n),		\
	    __ATOMIC_RELAXED)

/* ---- Mount state ------------------------------------------------------- */

/*
 * Protection keys:
 *   (c)  constant while mounted
 *   (a)  atomic
 *   (sb) s_sb_lock
 *   (h)  s_icache_lock
 *   (r)  s_res_lock
 *   (j)  journal.c's lock; (al) s_alloc_lock; (o) s_orphan_lock
 */
struct flyfs {
	struct blockdev	*s_bdev;		/* (c) */
	bool		s_own_bdev;		/* (c) flyfs_mount opened it */
	flyfs_attr_cb	*s_attr_cb;		/* (c) flyfs_set_attr_cb */
	void		*s_attr_arg;		/* (c) */
	/*
	 * The device vnode: every metadata block is cached here at
	 * fs_blk_off(blk).  Its strategy writes straight to the device.
	 */
	struct vnode	devvp;			/* (c) */

	/*
	 * The superblock in host order.  Geometry fields are (c); state,
	 * counters, times are (sb) and written only at mount and unmount
	 * (the journal protects everything else; free counts are
	 * recomputed from the group descriptors and the inode bitmap after
	 * an unclean stop).
	 */
	struct flyfs_sb_info s_sb;
	pthread_mutex_t	s_sb_lock;
	uint32_t	s_seed;			/* (c) = s_sb.csum_seed */
	uint32_t	s_dbsize;		/* (c) data block size, bytes */
	uint32_t	s_dbshift;		/* (c) log2(s_dbsize) */
	bool		s_readonly;		/* (c) */
	bool		s_noatime;		/* (c) -o noatime */
	bool		s_was_clean;		/* (c) CLEAN at mount */

	/* Mount options, resolved (defaults applied).  (c) */
	struct flyfs_mount_opts s_opts;
	int		s_commit_interval;	/* seconds, >= 1 */
	uint8_t		s_comp;			/* FLYFS_COMP_* for new data */
	uint8_t		s_comp_level;

	/*
	 * Space (alloc.c).  s_free_blocks: blocks free in the bitmaps and
	 * usable now (blocks freed by a transaction that has not committed
	 * are not counted until it commits).  s_resv_blocks: promised to
	 * delayed-allocation data (fs_reserve_blocks).  s_meta_reserve:
	 * kept back from reservations so flushing reserved data can always
	 * allocate the extent blocks it needs.
	 */
	uint64_t	s_free_blocks;		/* (al) readable (a) */
	uint64_t	s_busy_blocks;		/* (al) freed, awaiting commit */
	uint64_t	s_resv_blocks;		/* (r) */
	uint64_t	s_meta_reserve;		/* (c) */
	pthread_mutex_t	s_res_lock;
	pthread_mutex_t	s_alloc_lock;
	struct fs_alloc	*s_alloc;		/* (al) private to alloc.c */

	/* Inodes (alloc.c, inode.c). */
	uint64_t	s_inode_count;		/* (ialloc) slots in the inode file */
	uint64_t	s_free_inodes;		/* (ialloc) readable (a) */
	uint64_t	s_ialloc_hint;		/* (ialloc) next number to try */
	uint32_t	s_next_gen;		/* (a) generation of the next inode */
	pthread_mutex_t	s_ialloc_lock;
	struct fs_inode *s_ifile;		/* (c) inode 0, always referenced */
	struct fs_inode *s_ibitmap;		/* (c) inode 2 */
	struct fs_inode *s_orphan;		/* (c) inode 3 */
	pthread_mutex_t	s_orphan_lock;
	uint64_t	s_orphan_count;		/* (o) listed inodes */

	/* The inode cache (inode.c): hash by number, LRU of unused inodes. */
	pthread_mutex_t	s_icache_lock;
	pthread_cond_t	s_icache_cv;		/* I_NEW / I_FREEING done */
	LIST_HEAD(, fs_inode) *s_ihash;	/* (h) s_ihash_mask + 1 chains */
	uint64_t	s_ihash_mask;		/* (c) */
	TAILQ_HEAD(, fs_inode) s_ilru;	/* (h) unreferenced, nlink > 0 */
	uint64_t	s_icount;		/* (h) inodes in memory */
	uint64_t	s_ilru_count;		/* (h) */
	uint64_t	s_ilru_max;		/* (c) evict beyond this */

	pthread_mutex_t	s_rename_lock;		/* namei.c, see lock order */

	/* The journal (journal.c). */
	struct fs_journal *s_journal;

	/* Set once corruption was seen: FLYFS_STATE_ERROR at unmount. (a) */
	int		s_error;
	struct fs_counters s_count;		/* (a) */
	/* Compression engine: policy, pool, figures (compress.c).  (c) */
	struct fs_compress *s_compress;
};

/* ---- In-memory inode ------------------------------------------------- */

/*
 * One per inode in use (referenced, looked up, open, or cached on the
 * LRU).  i_vnode holds the file's data buffers; its v_data points back
 * here (VTOI / ITOV).
 *
 * Counts (all (h)):
 *   i_ref      internal references: fs_iget / fs_igrab .. fs_iput; held
 *              for the duration of an operation.
 *   i_nlookup  FUSE lookup references (flyfs.h "(+lookup)"), dropped by
 *              flyfs_forget.
 *   i_nopen    flyfs_open .. flyfs_release.
 * When all three are zero: nlink > 0 -> the inode goes on the LRU (still
 * findable; evicted beyond s_ilru_max after its buffers are written);
 * nlink == 0 -> it is reclaimed (data freed, slot freed, orphan entry
 * removed) by the thread that dropped the last count.
 *
 * Locks:
 *   i_lock (rwlock) the "vnode lock" of an operation: exclusive for every
 *       operation that changes the inode's namespace or data (write,
 *       truncate/setattr, fallocate, create/unlink/rename/link in a
 *       directory, xattr set/remove); shared for read, readdir, lookup,
 *       readlink, xattr get/list, lseek.  Not taken by getattr (i_mtx
 *       suffices) nor by the data strategy (i_extlock).
 *   i_extlock (mutex) the extent tree and the delayed-allocation state of
 *       a file: taken by the data strategy (allocation on flush, from
 *       buf_daemon_hw), by truncate / punch, by bmap.  Taken after the
 *       transaction handle.  On the system inodes (0, 2, 3) it is
 *       lock level 5a: held while their tree grows (fs_sysfile_extend);
 *       their in-memory map copy (i_sysmap) is guarded by i_mtx.
 *   i_mtx (mutex, leaf) the fields of i_din other than the root area and
 *       i_flags below: copy-in/copy-out of attributes; held briefly.
 * The root area of i_din (extent root / directory root / inline symlink):
 *   extent root: i_extlock; directory root: i_lock exclusive (readers
 *   shared); inline symlink target: written once at creation.
 */
struct fs_inode {
	struct vnode	i_vnode;		/* (c) v_data == this */
	struct flyfs	*i_fs;			/* (c) */
	uint64_t	i_ino;			/* (c) */
	LIST_ENTRY(fs_inode) i_hash;		/* (h) */
	TAILQ_ENTRY(fs_inode) i_lru;		/* (h) on s_ilru if I_ONLRU */
	int		i_ref;			/* (h) */
	uint64_t	i_nlookup;		/* (h) */
	uint32_t	i_nopen;		/* (h) */
	uint32_t	i_state;		/* (h) I_* below */

	pthread_rwlock_t i_lock;
	pthread_mutex_t	i_extlock;
	pthread_mutex_t	i_mtx;

	/*
	 * The inode as stored (little-endian fields; read them with
	 * le*_get or the accessors below).  fs_inode_dirty() seals a copy
	 * of it into the inode file block.  i_crc here is meaningless.
	 */
	struct flyfs_inode i_din;

	/*
	 * The first asynchronous write error of this file's data (file.c
	 * sets it from the strategy's completion), reported once by the next
	 * flyfs_fsync or flyfs_write and then cleared.  (a)
	 */
	int		i_error;
	/*
	 * i_din changed without a transaction (a write's sub-second mtime,
	 * write_finish): set it under i_mtx; written by the next
	 * fs_inode_dirty, sync, unmount or eviction.  (i_mtx)
	 */
	bool		i_dirty;
	/* Effective compression for new data (mount option / inode). (i_mtx) */
	uint8_t		i_comp;
	uint8_t		i_comp_level;
	/* Orphan file slot index while listed, else -1.  (o) */
	int64_t		i_orphan_slot;

	/*
	 * File data state for file.c / extent.c ((i_extlock) unless noted):
	 *   i_resv        blocks reserved (fs_reserve_blocks) for dirty,
	 *                 not yet allocated data of this file;
	 *   i_alloc_goal  where the next allocation for this file should go
	 *                 (physical block after the last one allocated);
	 *   i_seq         read heuristic (i_lock shared holders race on it:
	 *                 a heuristic, see vfs_cluster.h);
	 *   i_filepriv    anything else file.c wants; free()d at eviction.
	 * For dir.c: i_dirpriv, free()d at eviction.
	 */
	uint64_t	i_resv;
	uint64_t	i_alloc_goal;
	struct cluster_seq i_seq;
	void		*i_filepriv;
	void		*i_dirpriv;
	/* System inodes only: in-memory copy of the block map (inode.c,
	 * fs_sysfile_bmap).  (i_mtx) */
	struct fs_sysmap *i_sysmap;
	/* Skip heuristic and per-file figures of compress.c.  (a) */
	struct fs_comp_inode i_compst;
};

/* i_state */
#define I_NEW		0x0001	/* being read in; wait on s_icache_cv */
#define I_FREEING	0x0002	/* being reclaimed or evicted; wait */
#define I_ONLRU		0x0004	/* on s_ilru */
#define I_SYSTEM	0x0010	/* inode 0, 2 or 3 */

#define VTOI(vp)	((struct fs_inode *)(vp)->v_data)
#define ITOV(ip)	(&(ip)->i_vnode)

/* Accessors on i_din (read under i_mtx when the value must be coherent). */
static inline mode_t fs_i_mode(const struct fs_inode *ip)
{ return (mode_t)le32_get(ip->i_din.i_mode); }
static inline uint64_t fs_i_size(const struct fs_inode *ip)
{ return le64_get(ip->i_din.i_size); }
static inline uint32_t fs_i_nlink(const struct fs_inode *ip)
{ return le32_get(ip->i_din.i_nlink); }
static inline uint32_t fs_i_flags(const struct fs_inode *ip)
{ return le32_get(ip->i_din.i_flags); }

/* ---- Errors ------------------------------------------------------------ */

/*
 * Log one line "flyfs: corrupt metadata: block N (or inode N): <why>",
 * mark the filesystem in error (FLYFS_STATE_ERROR at unmount) and return
 * EUCLEAN.  WHAT_BLK / WHAT_INO: 0 when not applicable.
 */
int	fs_corrupt(struct flyfs *fs, uint64_t blk, uint64_t ino,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/*
 * Set incompat feature BIT in the superblock and write it (synchronously)
 * if it is not set yet.  For the first compressed extent: the bit is
 * durable before any extent that needs it.  May sleep (I/O).
 */
int	fs_sb_set_incompat(struct flyfs *fs, uint64_t bit);
/* Current time for timestamps (CLOCK_REALTIME). */
void	fs_now(struct timespec *ts);

/* ---- Metadata buffers (super.c) --------------------------------------- */

#define FS_OWNER_ANY	UINT64_MAX	/* fs_meta_read: do not check mb_owner */

/*
 * Read metadata block BLK through the cache (bread on fs->devvp) and check
 * it: header magic EXPECT_MAGIC, mb_blocknr == BLK, mb_owner == OWNER
 * (unless FS_OWNER_ANY) and, when the block came from the device rather
 * than from the cache, its crc.  On success *BPP is the locked buffer
 * (b_data: the 4 KiB block).  On failure *BPP is NULL, the buffer is
 * released, and the return is EIO (device error) or EUCLEAN (logged with
 * the block number).  Blocks outside the image: EUCLEAN.  May sleep
 * ("getblk", "biord").  Caller holds no lock of level 8.
 * Release with fs_meta_release() (or, after changing it inside a
 * transaction, fs_trans_dirty() then fs_meta_release()).
 */
int	fs_meta_read(struct flyfs *fs, uint64_t blk, uint32_t expect_magic,
	    uint64_t owner, struct buf **bpp);
/*
 * A new metadata block BLK (just allocated by the caller in TX): getblk on
 * devvp, zero it, fill the header (MAGIC, BLK, OWNER), mark it valid and
 * part of TX (fs_trans_dirty).  Returns it locked in *BPP.  May sleep.
 */
int	fs_meta_new(struct fs_trans *tx, uint64_t blk, uint32_t magic,
	    uint64_t owner, struct buf **bpp);
/* Release a metadata buffer obtained above (bqrelse: keep it cached). */
void	fs_meta_release(struct buf *bp);

/* ---- Transactions (journal.c) ----------------------------------------- */

/*
 * A handle: one thread's membership in the running transaction, from
 * fs_trans_begin to fs_trans_end.  One thread holds at most one handle;
 * calling fs_trans_begin again on the same thread nests (the same handle
 * is returned, its reservation grown; each begin needs its end).
 * Fields are private to journal.c except t_fs.
 */
struct fs_trans {
	struct flyfs	*t_fs;		/* (c) */
	struct fs_txn	*t_txn;		/* the transaction joined */
	int		t_nest;		/* begins not yet ended */
	unsigned	t_reserved;	/* blocks reserved in the log */
	unsigned	t_used;		/* distinct blocks this handle added */
	bool		t_sync;		/* fs_trans_end waits for the commit */
	int		t_error;	/* first error recorded on the handle */
};

/*
 * Largest NBLOCKS one handle may ask for; an operation that may touch
 * more splits itself into several transactions (truncate of a huge file).
 */
#define FS_TRANS_MAX_BLOCKS	256

/*
 * Join the running transaction, reserving log space for NBLOCKS distinct
 * metadata blocks this handle may dirty (an upper bound; count every
 * block: bitmaps, group descriptors, inode file blocks, tree nodes
 * touched by splits).  May sleep ("jwait") while the transaction is
 * being closed for commit or the journal lacks space (a commit and a
 * checkpoint run first).  Returns 0 and the handle in *TXP, or EROFS
 * (read-only mount), EIO (journal aborted after a write error), EINVAL
 * (NBLOCKS > FS_TRANS_MAX_BLOCKS).  Called by a thread that already holds
 * a handle, it nests: it adds NBLOCKS to that handle and never sleeps,
 * using log space every outer begin leaves for nested ones; ENOSPC if
 * that is used up.  Lock order: level 3 (see top).
 */
int	fs_trans_begin(struct flyfs *fs, unsigned nblocks,
	    struct fs_trans **txp);
/*
 * Leave the transaction.  With fs_trans_set_sync() called on the handle,
 * wait until the transaction is committed (only on the outermost end).
 * Returns the handle's recorded error, or the commit's error when sync.
 * The handle is freed.  Never sleeps unless sync.
 */
int	fs_trans_end(struct fs_trans *tx);
void	fs_trans_set_sync(struct fs_trans *tx);
/* Record an error on the handle (returned by fs_trans_end). */
void	fs_trans_set_error(struct fs_trans *tx, int error);
/* Record ERROR (if any) and end TX: ERROR, else what the end returns. */
int	fs_trans_finish(struct fs_trans *tx, int error);
/* The id of the transaction the handle belongs to. */
uint64_t fs_trans_tid(const struct fs_trans *tx);

/*
 * BP (a metadata buffer on fs->devvp, locked by the caller, B_CACHE)
 * was changed by TX.  Marks it B_LOCKED (it goes to the LOCKED queue on
 * release and cannot reach its home before the commit) and records it in
 * the transaction.  The header's mb_txid and mb_crc are set by the
 * commit, when it snapshots the block (under the buffer lock), not now:
 * a block changed ten times in one transaction is checksummed once.
 * Counts against the handle's reservation the first time a block joins
 * the transaction.  Does not sleep; takes the journal lock (level 8).
 */
void	fs_trans_dirty(struct fs_trans *tx, struct buf *bp);
/* Same, for a block without a metadata header (inode file blocks). */
void	fs_trans_dirty_raw(struct fs_trans *tx, struct buf *bp);

/*
 * Ordered data.  A data write to blocks allocated by TX (allocation on
 * flush) must be durable before TX's commit record.  Call this on the
 * device-level bio (normally b_bio2 after push_bio, before
 * dev_strategy()) while still holding the handle; TX's commit waits
 * ("jorder") until that bio completes (biodone releases it).  Writes
 * that fail still release it: the error belongs to the inode (i_error).
 * Overwrites of blocks already allocated need nothing.
 */
void	fs_trans_ordered_bio(struct fs_trans *tx, struct bio *bio);

/*
 * Force a commit of the running transaction (if it has any block) and
 * wait until it and every earlier one are durable.  For fsync / sync /
 * unmount.  Caller holds no handle.  Returns 0 or the commit's error.
 */
int	fs_journal_commit_all(struct flyfs *fs);
/*
 * fsync's and sync's end: make durable every write that completed before
 * the call, data included.  A commit of the running transaction does it
 * when there is one to make (its barrier follows those writes); otherwise
 * a barrier of its own (blockdev_flush) does: data overwritten in place
 * changes no metadata, and would otherwise be left in a volatile cache.
 */
int	fs_journal_sync(struct flyfs *fs);
/* Wait until transaction TID is committed (start its commit if needed). */
int	fs_journal_commit_wait(struct flyfs *fs, uint64_t tid);
/* Ask the commit thread to commit soon (pressure), without waiting. */
void	fs_journal_kick(struct flyfs *fs);

/* journal.c internals used by super.c */
int	fs_journal_open(struct flyfs *fs, char *err, size_t errlen);
int	fs_journal_replay(struct flyfs *fs, char *err, size_t errlen);
int	fs_journal_start(struct flyfs *fs);	/* commit thread, log head */
/* Commit, checkpoint everything, mark the log empty, stop the thread. */
int	fs_journal_shutdown(struct flyfs *fs);
void	fs_journal_abandon(struct flyfs *fs);	/* stop thread, write nothing */
void	fs_journal_close(struct flyfs *fs);	/* free memory */
void	fs_journal_stats(struct flyfs *fs,
	    void (*fn)(void *arg, const char *name, uint64_t value), void *arg);

/* ---- Block allocation (alloc.c) ---------------------------------------- */

#define FS_ALLOC_RESERVED 0x1	/* take the blocks from the caller's
				 * reservation (fs_reserve_blocks): the
				 * allocation cannot fail for lack of space
				 * and s_resv_blocks drops by *GOT */
#define FS_ALLOC_META	0x2	/* metadata: may use s_meta_reserve */

/*
 * Allocate up to WANT contiguous blocks in TX, as close after GOAL as
 * possible (0: no preference): the first free run at or after GOAL (then
 * wrapping around the image), of length min(WANT, run).  Blocks freed by
 * a transaction that has not yet committed are never returned.  Marks
 * them used in the bitmap and the group descriptor (both join TX).
 * Returns 0 with *BLK, *GOT >= 1, or ENOSPC, EUCLEAN.  Counts: the
 * handle must have reserved 2 log blocks per allocation call (bitmap +
 * descriptor).  Takes s_alloc_lock (level 6), bitmap buffers (7).
 * Streaming writers pass GOAL = previous allocation's end (i_alloc_goal).
 */
int	fs_alloc_blocks(struct fs_trans *tx, uint64_t goal, uint32_t want,
	    unsigned flags, uint64_t *blk, uint32_t *got);
/* One metadata block near GOAL (FS_ALLOC_META). */
int	fs_alloc_meta_block(struct fs_trans *tx, uint64_t goal, uint64_t *blk);

#define FS_FREE_META	0x1	/* the blocks held journaled metadata: the
				 * journal records a revoke so replay never
				 * writes an old copy over their next owner,
				 * and their cached buffers are discarded */
/*
 * Free [BLK, BLK + N) in TX: bits cleared in the bitmap and descriptor
 * (journaled), but the blocks stay "busy" (not allocatable, not counted
 * free) until TX commits.  Data buffers cached on a file vnode for them
 * are the caller's business (file.c invalidates them).  Returns 0 or
 * EUCLEAN (a block already free: logged, nothing changed).  Handle
 * reservation: 2 blocks per group touched.
 */
int	fs_trans_free_blocks(struct fs_trans *tx, uint64_t blk, uint64_t n,
	    unsigned flags);

/*
 * Delayed allocation: promise N blocks to data that is dirty but not yet
 * allocated, at write() time, so ENOSPC is reported by write and not lost
 * at flush.  May start and wait for a commit (freed blocks become free
 * at commit) before failing.  Caller holds no handle.  0 or ENOSPC.
 */
int	fs_reserve_blocks(struct flyfs *fs, uint64_t n);
void	fs_unreserve_blocks(struct flyfs *fs, uint64_t n);

/* alloc.c internals used by super.c */
int	fs_alloc_init(struct flyfs *fs);	/* read GDT, count free */
void	fs_alloc_fini(struct flyfs *fs);
/* A freeing transaction committed: these ranges become allocatable. */
struct fs_brange {
	uint64_t	blk;
	uint64_t	n;
};
void	fs_alloc_busy_done(struct flyfs *fs, const struct fs_brange *r,
	    size_t n);
/* journal.c: remember a busy range of TX's transaction (alloc.c calls). */
int	fs_journal_add_busy(struct fs_trans *tx, uint64_t blk, uint64_t n);
/* journal.c: BLK (journaled metadata) is freed by TX: revoke it, drop it
 * from TX, keep its buffer from reaching home, discard it at commit. */
int	fs_journal_revoke(struct fs_trans *tx, uint64_t blk);
int	fs_alloc_count_inodes(struct flyfs *fs, uint64_t *freep);

/* ---- Inodes (inode.c, alloc.c) ----------------------------------------- */

/*
 * Find or read inode INO: returns it referenced (+1 i_ref) in *IPP, no
 * lock held.  ENOENT if the slot is free (or INO >= inode count),
 * EUCLEAN if it fails its checks (logged).  May sleep (I/O, "iget").
 * Caller holds no lock of levels 5-8.
 */
int	fs_iget(struct flyfs *fs, uint64_t ino, struct fs_inode **ipp);
/* Take another reference on an inode already referenced. */
void	fs_igrab(struct fs_inode *ip);
/*
 * Drop a reference.  If it was the last count of an unlinked inode, the
 * inode is reclaimed now (in transactions: the caller must hold no
 * handle and no inode lock); otherwise it may be cached on the LRU.
 */
void	fs_iput(struct fs_inode *ip);
/* +1 FUSE lookup reference (for results marked "(+lookup)"). */
void	fs_inode_lookup_ref(struct fs_inode *ip);

/*
 * Allocate a new inode of MODE (type bits included) owned by CRED (group
 * from DIR if DIR is set-group-ID; S_ISGID inherited by directories),
 * RDEV for devices, times now, nlink 1 (2 for directories: the caller's
 * mkdir adjusts DIR's count), a fresh generation, an empty extent root
 * for regular files and symlinks (dir.c fills the directory root).
 * Written into the inode file in TX.  Returns it referenced (i_ref 1,
 * no lookup reference) in *IPP.  ENOSPC (no inode and no space to grow
 * the inode file).  Handle reservation: FS_INODE_ALLOC_BLOCKS.
 */
#define FS_INODE_ALLOC_BLOCKS	24
int	fs_inode_alloc(struct fs_trans *tx, struct fs_inode *dir,
	    mode_t mode, dev_t rdev, const struct flyfs_cred *cred,
	    struct fs_inode **ipp);

/*
 * Write IP's in-memory inode (i_din, under i_mtx) into its inode file
 * block in TX (sealed with its crc).  Clears i_dirty.  1 log block.
 * Takes the inode file block's buffer lock (level 7), then i_mtx.
 */
int	fs_inode_dirty(struct fs_trans *tx, struct fs_inode *ip);

/* Set the times named by FS_T_* to now (under i_mtx); no write. */
#define FS_T_ATIME	0x1
#define FS_T_MTIME	0x2
#define FS_T_CTIME	0x4
void	fs_inode_touch(struct fs_inode *ip, unsigned which);
/* Write IP's inode in a transaction of its own. */
int	fs_inode_write(struct fs_inode *ip);
/*
 * IP was read or listed: stamp atime under relatime (unless the mount is
 * read-only or noatime) and write it, best effort.  No locks held.
 */
void	fs_inode_accessed(struct fs_inode *ip);
/* Set the ctime of IP to now and write the inode in TX. */
int	fs_inode_changed(struct fs_trans *tx, struct fs_inode *ip);
bool	fs_kill_sgid(mode_t mode, gid_t fgid, const struct flyfs_cred *cred);
/* Clear S_ISUID, and S_ISGID if fs_kill_sgid says so for CRED; true if
 * either was set.  (i_mtx) */
bool	fs_kill_setid(struct fs_inode *ip, const struct flyfs_cred *cred);

/*
 * Link counts, in TX (the inode is written).  Dropping the last link
 * lists the inode in the orphan file in the same transaction (its
 * reclaim happens when the last reference goes, or at the next mount
 * after a crash).  Handle reservation: FS_NLINK_BLOCKS.
 * fs_inode_nlink_set is for rmdir (directories go from 2 to 0).
 */
#define FS_NLINK_BLOCKS		8
int	fs_inode_nlink_inc(struct fs_trans *tx, struct fs_inode *ip);
int	fs_inode_nlink_dec(struct fs_trans *tx, struct fs_inode *ip);
int	fs_inode_nlink_set(struct fs_trans *tx, struct fs_inode *ip,
	    uint32_t nlink);

/* Attributes of IP (under i_mtx). */
void	fs_inode_getattr(struct fs_inode *ip, struct flyfs_attr *out);

/* DT_* value for MODE (directory entries). */
unsigned fs_mode_to_dtype(mode_t mode);

/* Orphan list (inode.c), called by the nlink functions and reclaim. */
int	fs_orphan_add(struct fs_trans *tx, struct fs_inode *ip);
int	fs_orphan_del(struct fs_trans *tx, struct fs_inode *ip);
/* Mount: reclaim every listed inode.  Returns how many in *N. */
int	fs_orphan_reclaim_all(struct flyfs *fs, uint64_t *n);

/*
 * System file block map (inode.c): physical block of logical block LBLK
 * of system inode IP (inode file, inode bitmap, orphan file), 0 if
 * beyond its end.  Takes only IP's i_mtx (leaf): callable under any lock.
 * fs_sysfile_extend appends N blocks in TX (fewer if no run of N is
 * free: the file's new size says), right after the file's last block
 * when that is free, through the extent tree; call it under
 * s_ialloc_lock (inode file, inode bitmap) or s_orphan_lock (orphan
 * file) with no metadata buffer locked.  It grows TX's reservation by
 * the tree's cost itself; callers count 1 block for the inode.
 */
int	fs_sysfile_bmap(struct fs_inode *ip, uint64_t lblk, uint64_t *pblk);
int	fs_sysfile_extend(struct fs_trans *tx, struct fs_inode *ip,
	    uint32_t n, uint64_t *first_pblk);

/* inode.c internals used by super.c and alloc.c */
int	fs_icache_init(struct flyfs *fs);
int	fs_icache_load_system(struct flyfs *fs);	/* inodes 0, 2, 3 */
/* Write back, then drop every cached inode (unmount).  First error. */
int	fs_icache_flush_all(struct flyfs *fs);
/* vfsync every cached file vnode (sync).  MNT_WAIT / MNT_NOWAIT. */
int	fs_icache_sync_data(struct flyfs *fs, int waitfor);
void	fs_icache_discard_all(struct flyfs *fs);	/* abandon */
void	fs_icache_fini(struct flyfs *fs);
/* alloc.c: inode number allocation / free (inode bitmap file). */
int	fs_ialloc(struct fs_trans *tx, uint64_t *inop);
int	fs_ifree(struct fs_trans *tx, uint64_t ino);
/* Vnode ops for inodes without data buffers (dirs, devices, system). */
extern const struct vop_ops fs_nodata_vops;

/* ---- Implemented in dir.c (colleague A) -------------------------------- */

/*
 * Free every block of directory DP's tree (DP is empty or being
 * reclaimed after a crash; entries, if any, are dropped without touching
 * their targets).  Runs its own transactions.  Called with no lock and
 * no handle held, DP referenced and unreachable (nlink 0).  The inode is
 * written (dr_root 0) but not freed.
 */
int	fs_dir_reclaim(struct fs_inode *dp);

/* ---- Implemented in xattr.c (colleague A) ------------------------------ */

/*
 * Free IP's xattr block (if any) in TX and clear i_xattr_block (the
 * caller writes the inode).  Handle reservation: 3 blocks.
 */
int	fs_xattr_reclaim(struct fs_trans *tx, struct fs_inode *ip);
/*
 * Drop IP's security.capability, as a write, truncate or chown of a
 * regular file must (the VFS's "killpriv"; the FUSE daemon promises the
 * kernel to do it, fs/fuse_wire.c).  i_lock held exclusive; costs one
 * i_mtx round when IP has no xattrs.  Its own transaction if there is
 * something to drop.
 */
int	fs_xattr_kill_cap(struct fs_inode *ip);

/* ---- Implemented in file.c / extent.c (colleague B) --------------------- */

/*
 * DATA BUFFERS AND DELAYED-ALLOCATION RESERVATIONS (file.c).
 * A file's data buffers live on ip->i_vnode at their file offset, one
 * data block (s_dbsize) each; VCLUSTEROK is set on regular files' vnodes
 * at vn_init (inode.c), so the cache may cluster their writes.  A dirty
 * buffer whose range has no place on the device yet holds a reservation
 * (fs_reserve_blocks) so that its flush cannot fail for space:
 *   - B_VFSFLAG1 (file.c's B_RESV) set: the buffer holds one;
 *   - [b_dirtyoff, b_dirtyend): then the 4 KiB-aligned byte range of the
 *     buffer the reservation covers, one block per 4 KiB (only while
 *     B_VFSFLAG1 is set; the cache's own use of these fields does not
 *     apply to file data buffers);
 *   - ip->i_resv (i_extlock) is the sum over the file's buffers, and
 *     fs->s_resv_blocks (s_res_lock) the sum over every file.
 * All three change under the buffer lock: write() grows the range (may
 * sleep for a commit in fs_reserve_blocks with the buffer locked: commits
 * never wait for data buffer locks); the strategy takes the reservation
 * when it allocates (FS_ALLOC_RESERVED) and returns what it did not use;
 * invalidation (truncate, punch, reclaim) returns it before the buffer
 * goes.  The flag and range are cleared together, so a buffer without
 * B_VFSFLAG1 holds nothing.
 */

/*
 * Vnode operations of regular files and extent-mapped symlinks: the data
 * strategy (read: map and read, decompress; write: allocate on flush,
 * compress, insert extents, ordered-data bio), bmap.  The inode cache
 * vn_init()s S_IFREG and non-inline S_IFLNK inodes with it; others get
 * fs_nodata_vops.
 */
extern const struct vop_ops fs_file_vops;

/*
 * Set IP's size to NEWSIZE: shrink (free the blocks past it, discard
 * cached buffers past it, zero the tail of the last block) or grow (a
 * hole).  Updates i_size, i_blocks, mtime/ctime and writes the inode.
 * Runs its own transactions (several for a big file; each leaves a
 * consistent state).  Called with ip->i_lock exclusive, no handle held.
 */
int	fs_file_truncate(struct fs_inode *ip, uint64_t newsize);

/*
 * IP (nlink 0, no references but the caller's, unreachable) is being
 * deleted: discard all its cached buffers (vinvalbuf(vp, 0)), release
 * its delayed-allocation reservation (i_resv), free every data and
 * extent block, leave an empty extent root and i_blocks 0, inode
 * written.  Own transactions, no lock or handle held on entry.  Also
 * used at mount for orphans (then nothing is cached).
 */
int	fs_file_reclaim(struct fs_inode *ip);

/* Number of extent records of IP (flyfs.file.extents).  i_extlock taken. */
int	fs_extent_count(struct fs_inode *ip, uint64_t *count);

/* flyfs_read, flyfs_write, flyfs_fallocate, flyfs_lseek and
 * flyfs_file_stats_foreach (flyfs.h) are implemented in file.c. */

/* ---- Implemented in namei.c (colleague A) ------------------------------- */

/* flyfs_lookup, flyfs_mknod, flyfs_mkdir, flyfs_symlink, flyfs_readlink,
 * flyfs_link, flyfs_unlink, flyfs_rmdir, flyfs_rename, flyfs_readdir and
 * the xattr calls (xattr.c) of flyfs.h. */

/* ---- Implemented in super.c / inode.c (infrastructure) ------------------ */

/* flyfs_mount, flyfs_mount_bdev, flyfs_unmount, flyfs_abandon,
 * flyfs_getattr, flyfs_setattr (size part: fs_file_truncate),
 * flyfs_forget, flyfs_open, flyfs_release, flyfs_fsync, flyfs_sync,
 * flyfs_statfs, flyfs_stats_foreach. */

#endif /* FLYFS_FS_INT_H */
