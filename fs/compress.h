/*
 * compress.h - compression of file data on flush (compress.c).
 *
 * This module owns everything about turning one dirty data block into what
 * reaches the image, and back:
 *   - the zstd codec (compress.c is the only file that includes zstd.h):
 *     per-thread compression / decompression contexts, all-zero detection;
 *   - the encoding decision for one data block: a hole (all zeros), a
 *     compressed extent (only if it saves at least one 4 KiB block: the
 *     rule of fs/ondisk.h) or raw data;
 *   - the skip heuristic that stops trying on incompressible files and
 *     retries now and then (docs/compression.md);
 *   - a pool of worker threads, so that when several dirty buffers wait,
 *     several cores compress;
 *   - the compression policy (none / zstd:LEVEL) of a file: per-file
 *     setting, live or mount setting, image default; its textual form
 *     for the flyfs.compression xattr; inheritance to new files;
 *   - statistics, filesystem-wide and per inode, and the module's
 *     tunables.
 * It does no I/O and takes no filesystem lock: the file module (file.c)
 * allocates, maps and writes what this module hands it.
 *
 * Units: LEN arguments are bytes, always a multiple of FLYFS_BLOCK_SIZE;
 * "llen" / "plen" are 4 KiB block counts as in struct flyfs_extent.
 */
#ifndef FLYFS_COMPRESS_H
#define FLYFS_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct buf;
struct flyfs_inode;

/* ---- Codec ------------------------------------------------------------ */

/*
 * Compress LEN bytes at SRC with zstd at LEVEL into DST (CAP bytes) as one
 * frame that records its content size and a content checksum.  Returns 0
 * and the frame size in *CBYTES; E2BIG if the frame would not fit in CAP
 * (the data does not compress that far: not an error of the codec); ENOMEM
 * or EIO (other codec failure).  Uses the calling thread's context.
 */
int	fs_zstd_compress(const void *src, size_t len, int level, void *dst,
	    size_t cap, size_t *cbytes);
/*
 * Decompress the frame of exactly CBYTES bytes at SRC into exactly LLEN
 * bytes at DST.  EUCLEAN if it is not one valid zstd frame of CBYTES bytes
 * whose content is LLEN bytes with a good checksum (DST contents are then
 * undefined); ENOMEM.  Uses the calling thread's context.
 */
int	fs_zstd_decompress(const void *src, size_t cbytes, void *dst,
	    size_t llen);
/* True if LEN bytes at P are all zero. */
bool	fs_data_is_zero(const void *p, size_t len);

/* ---- Policy ------------------------------------------------------------ */

/*
 * A compression setting as a user writes it: "none", "zstd" (the default
 * level, compress_level), "zstd:N" (1 <= N <= 19), or "default" (no
 * setting at this level: follow the next one).
 */
enum fs_comp_mode {
	FS_COMP_DEFAULT = 0,	/* unset */
	FS_COMP_OFF,		/* none */
	FS_COMP_ZSTD,		/* zstd at level (0: compress_level tunable) */
};
struct fs_comp_setting {
	enum fs_comp_mode mode;
	uint8_t	level;		/* FS_COMP_ZSTD only; 0 = default level */
};

/* Parse S (LEN bytes, need not be NUL terminated).  0 or EINVAL. */
int	fs_comp_parse(const char *s, size_t len, struct fs_comp_setting *out);
/* Write the canonical text of SET ("none", "zstd", "zstd:3", "default")
 * NUL terminated into BUF.  Returns its length (without the NUL), or
 * ERANGE-like -1 if SIZE is too small (16 bytes always suffice). */
int	fs_comp_format(const struct fs_comp_setting *set, char *buf,
	    size_t size);

/*
 * The per-file setting lives in the on-disk inode:
 *   FLYFS_IFL_NOCOMP set                   -> "none"
 *   i_comp == FLYFS_COMP_ZSTD, i_comp_level -> "zstd[:level]" (0: default)
 *   i_comp == FLYFS_COMP_NONE, no NOCOMP    -> "default" (unset)
 * The caller holds ip->i_mtx (or owns the inode) and writes the inode in a
 * transaction afterwards (fs_inode_dirty).  fs_comp_inode_set: EINVAL for
 * an impossible setting.
 */
void	fs_comp_inode_get(const struct flyfs_inode *din,
	    struct fs_comp_setting *out);
int	fs_comp_inode_set(struct flyfs_inode *din,
	    const struct fs_comp_setting *set);
/*
 * A new inode CHILD created in directory DIR inherits DIR's setting (a
 * directory's setting is for the files created in it).  Call from inode
 * allocation, before the child is first written.
 */
void	fs_comp_inherit(const struct flyfs_inode *dir,
	    struct flyfs_inode *child);

/* ---- Per-inode state ---------------------------------------------------- */

/*
 * Embedded in the in-memory inode (struct fs_inode: i_compst).  All fields
 * atomic: several workers encode blocks of one file at once; races on the
 * heuristic only shift which block is tried, never correctness.  The state
 * is not stored: an inode read in again starts with a clean slate.
 */
struct fs_comp_istats {
	uint64_t logical_bytes;		/* bytes flushed through the encoder */
	uint64_t written_bytes;		/* bytes to the image for them */
	uint64_t compressed_blocks;	/* data blocks stored compressed */
	uint64_t raw_blocks;		/* tried, saved nothing: stored raw */
	uint64_t skipped_blocks;	/* not tried (heuristic): stored raw */
	uint64_t zero_blocks;		/* all zeros: became holes */
	uint64_t comp_ns;		/* thread CPU time compressing */
	uint64_t decomp_ns;		/* thread CPU time decompressing */
};
struct fs_comp_inode {
	uint32_t ci_fails;		/* (a) consecutive tries that failed */
	uint32_t ci_skips;		/* (a) blocks skipped since last try */
	struct fs_comp_istats ci_st;	/* (a) */
};

/* Per-file figures for flyfs.file.compress_*: one call per figure. */
void	fs_compress_inode_stats_foreach(const struct fs_comp_inode *ci,
	    void (*fn)(void *arg, const char *name, uint64_t value), void *arg);

/* ---- The engine: tunables, statistics, worker pool ---------------------- */

struct fs_compress;

struct fs_compress_conf {
	/* Mount option (FS_COMP_DEFAULT: none given) and image default
	 * (sb_default_comp / sb_default_comp_level). */
	struct fs_comp_setting mount;
	struct fs_comp_setting image;
	/* Worker threads; 0 = number of online CPUs. */
	unsigned nworkers;
	/*
	 * Called first on every worker thread.  The filesystem passes a
	 * function that marks the thread a system thread of the buffer
	 * cache (curthread_set_systhread): workers finish flushes, and a
	 * flusher must not be throttled by the limits it drains.
	 */
	void	(*thread_init)(void);
};

/*
 * Start the engine (its workers).  Returns 0 and *FCP, or ENOMEM/EAGAIN.
 * fs_compress_destroy: run every queued job to completion (each callback
 * is called), stop the workers, free.  Submissions racing with destroy
 * are encoded inline in the submitter.
 */
int	fs_compress_create(const struct fs_compress_conf *conf,
	    struct fs_compress **fcp);
void	fs_compress_destroy(struct fs_compress *fc);
/* Wait until no job is queued or running (tests, sync).  May sleep. */
void	fs_compress_drain(struct fs_compress *fc);
/* The byte entropy of a sample of DATA, in millibits per byte (0..8000):
 * the estimate behind compress_entropy_max. */
unsigned fs_compress_entropy(const void *data, size_t len);

/*
 * Live setting (setfattr flyfs.compression on the root): replaces the
 * mount option; FS_COMP_DEFAULT falls back to the image default.
 * fs_compress_get_live returns the setting in effect at this level
 * (mount/live, or the image default when that is unset).
 */
void	fs_compress_set_live(struct fs_compress *fc,
	    const struct fs_comp_setting *set);
void	fs_compress_get_live(const struct fs_compress *fc,
	    struct fs_comp_setting *out);

/*
 * The policy for new data of a file whose on-disk inode is DIN (NULL: no
 * per-file setting): per-file setting, else live/mount, else image
 * default.  *LEVEL is 0 when compression is off.  Lock-free; read DIN
 * under i_mtx or accept a racy (harmless) read.
 */
void	fs_compress_resolve(const struct fs_compress *fc,
	    const struct flyfs_inode *din, uint8_t *comp, int *level);

/*
 * Tunables (one registry, SYSCTL-like: the stats xattrs and the docs table
 * are driven from it).  Names: compress_level, compress_skip_after,
 * compress_retry_every, compress_queue_max, compress_workers (read-only).
 * get: 0 or ENOENT.  set: 0, ENOENT, EPERM (read-only), EINVAL (range).
 */
struct fs_comp_tunable {
	const char *name;
	uint64_t min, max;
	bool	writable;
	const char *descr;
};
int	fs_compress_tunable_get(const struct fs_compress *fc, const char *name,
	    uint64_t *value);
int	fs_compress_tunable_set(struct fs_compress *fc, const char *name,
	    uint64_t value);
void	fs_compress_tunables_foreach(const struct fs_compress *fc,
	    void (*fn)(void *arg, const struct fs_comp_tunable *t,
		uint64_t value), void *arg);

/*
 * Filesystem-wide figures for flyfs.fs.*: one call per figure, names
 * compress_* / decompress_* (docs/compression.md lists them).
 */
void	fs_compress_stats_foreach(const struct fs_compress *fc,
	    void (*fn)(void *arg, const char *name, uint64_t value), void *arg);

/* ---- Encoding a data block ---------------------------------------------- */

enum fs_enc_kind {
	FS_ENC_HOLE = 0,	/* all zeros (whatever the policy): need not
				 * be stored; a hole stays a hole */
	FS_ENC_RAW,		/* write LEN bytes of the buffer, e_comp 0 */
	FS_ENC_ZSTD,		/* write e_plen blocks at e_data, e_comp 1 */
};

/* Why a block was stored raw (statistics, tests). */
enum fs_enc_why {
	FS_WHY_NONE = 0,	/* compressed, or a hole */
	FS_WHY_POLICY,		/* compression off for this file */
	FS_WHY_SMALL,		/* one 4 KiB block: nothing can be saved */
	FS_WHY_NOSAVE,		/* tried: did not save a block */
	FS_WHY_SKIPPED,		/* not tried: the skip heuristic */
	FS_WHY_ENTROPY,		/* not tried: the sample's byte entropy is
				 * too high (counts as raw) */
	FS_WHY_ERROR,		/* codec error (logged once), stored raw */
};

/*
 * The result handed to the caller's callback.  Valid until
 * fs_encoded_release(); e_data / e_iov must stay valid until the device
 * write that uses them has completed, so release it from the write's
 * completion (biodone path), or at once for FS_ENC_HOLE.
 */
struct fs_encoded {
	enum fs_enc_kind e_kind;
	enum fs_enc_why	e_why;
	struct buf	*e_bp;		/* the buffer submitted (may be NULL) */
	uint32_t	e_llen;		/* logical 4 KiB blocks (LEN / 4096) */
	uint32_t	e_plen;		/* blocks to write: llen raw, 0 hole */
	uint32_t	e_cbytes;	/* frame bytes (ZSTD), else 0 */
	uint8_t		e_comp;		/* FLYFS_COMP_* for the extent */
	/*
	 * What to write, e_plen * 4096 bytes: the caller's data for RAW;
	 * for ZSTD a page-aligned buffer owned by this result (the frame,
	 * then zeros to the end of the last block).  e_iov describes the
	 * same bytes, ready for b_xiov / b_xiovcnt = 1.
	 */
	const void	*e_data;
	struct iovec	e_iov;
};

typedef void fs_compress_done_t(void *arg, struct fs_encoded *enc);

/*
 * Encode LEN bytes at DATA (one data block, or the file's last shorter
 * one, rounded up to 4 KiB; LEN <= FLYFS_DATA_BLOCK_MAX) for a file whose
 * heuristic state is CI (may be NULL: no heuristic, no per-file figures)
 * and whose policy fs_compress_resolve() gave (COMP, LEVEL).  BP is only
 * carried to the result (e_bp).  DONE(ARG, enc) is called exactly once:
 *   - on a pool worker when the block is to be compressed and the queue
 *     is shorter than compress_queue_max;
 *   - otherwise on the calling thread before fs_compress_submit returns
 *     (compression off, a hole, skipped by the heuristic, a full queue,
 *     the engine stopping): the caller must be ready for that, i.e. hold
 *     no lock DONE takes.
 * DATA must stay unchanged until DONE returns (the caller keeps the
 * buffer locked: BUF_KERNPROC before submitting, since DONE and the write
 * completion run on other threads).  DONE may sleep (transactions,
 * allocation), but should not wait on the flush throttles (bd_wait,
 * waitrunningbufspace): workers are flushers.  Never fails.
 */
void	fs_compress_submit(struct fs_compress *fc, struct fs_comp_inode *ci,
	    uint8_t comp, int level, struct buf *bp, const void *data,
	    size_t len, fs_compress_done_t *done, void *arg);
/*
 * Fork-join form for a strategy that plans a whole transfer at once:
 * encode the N blocks BLOCKS[i] (iov_base, iov_len = LEN as above) into
 * ENCS[i], in parallel on the pool, the calling thread compressing too
 * (it runs queued jobs while it waits).  Returns when all N are done.
 * Release each ENCS[i] with fs_encoded_fini after its write completed.
 * May sleep ("cbatch").  Hold no lock a worker needs (workers take none
 * but fc's own).
 */
void	fs_compress_encode_batch(struct fs_compress *fc,
	    struct fs_comp_inode *ci, uint8_t comp, int level,
	    const struct iovec *blocks, size_t n, struct fs_encoded *encs);
/* The same, synchronously, into *ENC on the calling thread (fsck, tests,
 * a caller that wants no hand-off).  Release *ENC with fs_encoded_fini. */
void	fs_compress_encode(struct fs_compress *fc, struct fs_comp_inode *ci,
	    uint8_t comp, int level, const void *data, size_t len,
	    struct fs_encoded *enc);
/* Free what a result holds: fs_encoded_release for results passed to a
 * DONE callback (frees the result too), fs_encoded_fini for
 * fs_compress_encode's. */
void	fs_encoded_release(struct fs_encoded *enc);
void	fs_encoded_fini(struct fs_encoded *enc);

/*
 * Hand-off helpers for the strategy.  fs_encoded_take_buffer: the caller
 * takes the ZSTD buffer (free() it after the write completes); ENC then
 * owns nothing.  fs_encoded_set_raw: give up a ZSTD result (e.g. the
 * allocator could not find e_plen contiguous blocks) and store DATA raw.
 */
void	*fs_encoded_take_buffer(struct fs_encoded *enc);
void	fs_encoded_set_raw(struct fs_encoded *enc, const void *data);

/*
 * Read side: decompress the extent's frame (CBYTES bytes at FRAME, read
 * from its e_plen blocks) into exactly LEN (= e_llen * 4096) bytes at DST,
 * accounting CPU time to the engine and CI (may be NULL).  0, EUCLEAN
 * (corrupt: the caller reports it through fs_corrupt with the extent's
 * block), ENOMEM.
 */
int	fs_compress_decode(struct fs_compress *fc, struct fs_comp_inode *ci,
	    const void *frame, size_t cbytes, void *dst, size_t len);

#endif /* FLYFS_COMPRESS_H */
