/*
 * compress.c - compression of file data on flush: codec, skip heuristic,
 * worker pool, policy, statistics.
 *
 * This module owns the decision of what one dirty data block becomes on
 * the image -- a hole, a zstd extent, or raw data -- and the CPU work to
 * get there.  The file module's strategy hands a locked (BUF_KERNPROC'd)
 * data buffer to fs_compress_submit(); the block is classified in the
 * submitting thread (policy, zeros, size, heuristic: all cheap), and only
 * the blocks that must really be compressed go to the pool, whose workers
 * compress and call the file module back to allocate and write.  So the
 * flusher (buf_daemon_hw) keeps walking its queue while up to one worker
 * per CPU compresses, and a file the heuristic gave up on costs nothing
 * but the hand-off.  docs/compression.md explains the heuristic and lists
 * the tunables and figures.
 *
 * It is the only file that includes zstd.h.  It takes no filesystem lock
 * and does no I/O; the engine's own lock (fc_mtx) is a leaf.
 *
 * The idea of trying less often on files that did not compress comes from
 * DragonFly's HAMMER2 (hammer2_strategy.c, comp_heuristic); the shape here
 * is our own: K consecutive failures switch a file to trying one block in
 * N, any success switches it back.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "fs/compress.h"
#include "fs/format.h"
#include "fs/ondisk.h"

#define ALOAD(p)	__atomic_load_n((p), __ATOMIC_RELAXED)
#define ASTORE(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define AADD(p, v)	__atomic_fetch_add((p), (v), __ATOMIC_RELAXED)

/* ---- Codec -------------------------------------------------------------- */

/*
 * One compression and one decompression context per thread, made on first
 * use and freed when the thread exits: contexts are expensive to create
 * (hundreds of KiB of tables) and must not be shared between threads.
 */
struct zctx {
	ZSTD_CCtx	*cctx;
	ZSTD_DCtx	*dctx;
};

static pthread_key_t zctx_key;
static pthread_once_t zctx_once = PTHREAD_ONCE_INIT;

static void
zctx_free(void *p)
{
	struct zctx *z = p;

	ZSTD_freeCCtx(z->cctx);
	ZSTD_freeDCtx(z->dctx);
	free(z);
}

static void
zctx_key_init(void)
{
	if (pthread_key_create(&zctx_key, zctx_free) != 0)
		abort();	/* only with PTHREAD_KEYS_MAX keys in use */
}

static struct zctx *
zctx_get(void)
{
	struct zctx *z;

	pthread_once(&zctx_once, zctx_key_init);
	z = pthread_getspecific(zctx_key);
	if (z == NULL) {
		z = calloc(1, sizeof(*z));
		if (z == NULL || pthread_setspecific(zctx_key, z) != 0) {
			free(z);
			return NULL;
		}
	}
	return z;
}

int
fs_zstd_compress(const void *src, size_t len, int level, void *dst,
    size_t cap, size_t *cbytes)
{
	struct zctx *z = zctx_get();
	size_t r;

	if (z == NULL)
		return ENOMEM;
	if (z->cctx == NULL) {
		if ((z->cctx = ZSTD_createCCtx()) == NULL)
			return ENOMEM;
	} else {
		ZSTD_CCtx_reset(z->cctx, ZSTD_reset_session_and_parameters);
	}
	/*
	 * The content size makes the frame self-describing (fsck and the
	 * read path check it against e_llen); the checksum (4 bytes) makes
	 * a compressed extent verifiable, which design.md promises.
	 */
	if (ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx,
	    ZSTD_c_compressionLevel, level)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx,
	    ZSTD_c_checksumFlag, 1)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx,
	    ZSTD_c_contentSizeFlag, 1)))
		return EIO;
	r = ZSTD_compress2(z->cctx, dst, cap, src, len);
	if (ZSTD_isError(r)) {
		if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall)
			return E2BIG;
		if (ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation)
			return ENOMEM;
		return EIO;
	}
	*cbytes = r;
	return 0;
}

int
fs_zstd_decompress(const void *src, size_t cbytes, void *dst, size_t llen)
{
	struct zctx *z = zctx_get();
	unsigned long long csize;
	size_t r;

	if (z == NULL)
		return ENOMEM;
	if (z->dctx == NULL && (z->dctx = ZSTD_createDCtx()) == NULL)
		return ENOMEM;
	/*
	 * Exactly one frame of exactly CBYTES bytes, declaring exactly
	 * LLEN bytes of content: anything else is not what was written.
	 */
	if (ZSTD_findFrameCompressedSize(src, cbytes) != cbytes)
		return EUCLEAN;
	csize = ZSTD_getFrameContentSize(src, cbytes);
	if (csize != (unsigned long long)llen)
		return EUCLEAN;
	r = ZSTD_decompressDCtx(z->dctx, dst, llen, src, cbytes);
	if (ZSTD_isError(r)) {
		if (ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation)
			return ENOMEM;
		return EUCLEAN;
	}
	return r == llen ? 0 : EUCLEAN;
}

bool
fs_data_is_zero(const void *p, size_t len)
{
	static const uint8_t zero[64];
	const uint8_t *b = p;

	/*
	 * Check a first chunk against zeros, then compare the buffer with
	 * itself shifted by that chunk: memcmp is vectorised and stops at
	 * the first difference, and non-zero data almost always differs in
	 * the first bytes.
	 */
	if (len <= sizeof(zero))
		return memcmp(b, zero, len) == 0;
	if (memcmp(b, zero, sizeof(zero)) != 0)
		return false;
	return memcmp(b, b + sizeof(zero), len - sizeof(zero)) == 0;
}

/* ---- Policy ------------------------------------------------------------- */

int
fs_comp_parse(const char *s, size_t len, struct fs_comp_setting *out)
{
	char buf[16];
	char *end;
	long lvl;

	/* Tolerate what echo and some tools append. */
	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\0'))
		len--;
	if (len == 0 || len >= sizeof(buf))
		return EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	out->level = 0;
	if (strcmp(buf, "none") == 0) {
		out->mode = FS_COMP_OFF;
		return 0;
	}
	if (strcmp(buf, "default") == 0) {
		out->mode = FS_COMP_DEFAULT;
		return 0;
	}
	if (strncmp(buf, "zstd", 4) != 0)
		return EINVAL;
	out->mode = FS_COMP_ZSTD;
	if (buf[4] == '\0')
		return 0;
	if (buf[4] != ':' || buf[5] < '0' || buf[5] > '9')
		return EINVAL;
	errno = 0;
	lvl = strtol(buf + 5, &end, 10);
	if (errno || *end != '\0' || lvl < FLYFS_ZSTD_LEVEL_MIN ||
	    lvl > FLYFS_ZSTD_LEVEL_MAX)
		return EINVAL;
	out->level = (uint8_t)lvl;
	return 0;
}

int
fs_comp_format(const struct fs_comp_setting *set, char *buf, size_t size)
{
	int n;

	switch (set->mode) {
	case FS_COMP_OFF:
		n = snprintf(buf, size, "none");
		break;
	case FS_COMP_ZSTD:
		n = set->level ? snprintf(buf, size, "zstd:%u", set->level) :
		    snprintf(buf, size, "zstd");
		break;
	default:
		n = snprintf(buf, size, "default");
		break;
	}
	return n < 0 || (size_t)n >= size ? -1 : n;
}

void
fs_comp_inode_get(const struct flyfs_inode *din, struct fs_comp_setting *out)
{
	out->level = 0;
	if (le32_get(din->i_flags) & FLYFS_IFL_NOCOMP) {
		out->mode = FS_COMP_OFF;
	} else if (din->i_comp == FLYFS_COMP_ZSTD) {
		out->mode = FS_COMP_ZSTD;
		out->level = din->i_comp_level;
	} else {
		out->mode = FS_COMP_DEFAULT;
	}
}

int
fs_comp_inode_set(struct flyfs_inode *din, const struct fs_comp_setting *set)
{
	uint32_t fl = le32_get(din->i_flags) & ~(uint32_t)FLYFS_IFL_NOCOMP;

	switch (set->mode) {
	case FS_COMP_DEFAULT:
		din->i_comp = FLYFS_COMP_NONE;
		din->i_comp_level = 0;
		break;
	case FS_COMP_OFF:
		din->i_comp = FLYFS_COMP_NONE;
		din->i_comp_level = 0;
		fl |= FLYFS_IFL_NOCOMP;
		break;
	case FS_COMP_ZSTD:
		if (set->level > FLYFS_ZSTD_LEVEL_MAX)
			return EINVAL;
		din->i_comp = FLYFS_COMP_ZSTD;
		din->i_comp_level = set->level;
		break;
	default:
		return EINVAL;
	}
	le32_set(&din->i_flags, fl);
	return 0;
}

void
fs_comp_inherit(const struct flyfs_inode *dir, struct flyfs_inode *child)
{
	struct fs_comp_setting set;

	fs_comp_inode_get(dir, &set);
	(void)fs_comp_inode_set(child, &set);
}

/* ---- Engine state ------------------------------------------------------- */

enum {
	T_LEVEL,
	T_SKIP_AFTER,
	T_RETRY_EVERY,
	T_QUEUE_MAX,
	T_WORKERS,
	T_ENTROPY,
	T_COUNT
};

/*
 * The tunables.  Defaults: level 3 is zstd's own default and near its
 * knee (fast, most of the ratio).  8 failures in a row is enough evidence
 * that a file is incompressible (HAMMER2 uses the same count); after that
 * one block in 16 is tried, so a file whose content changes (an archive
 * followed by text) is noticed within 16 blocks, while an incompressible
 * stream pays 1/16 of the compression cost.  The queue bound keeps the
 * pool from holding more buffers than the workers can start on soon;
 * past it the flusher compresses inline, which also slows it down to the
 * speed the CPUs can compress at (backpressure).
 */
static const struct fs_comp_tunable tunables[T_COUNT] = {
	[T_LEVEL] = { "compress_level", FLYFS_ZSTD_LEVEL_MIN,
	    FLYFS_ZSTD_LEVEL_MAX, true,
	    "zstd level used by \"zstd\" without a level" },
	[T_SKIP_AFTER] = { "compress_skip_after", 0, 1u << 20, true,
	    "consecutive incompressible blocks of a file before it is tried "
	    "only every compress_retry_every blocks (0: always try)" },
	[T_RETRY_EVERY] = { "compress_retry_every", 1, 1u << 20, true,
	    "in skip mode, try one block in this many" },
	[T_QUEUE_MAX] = { "compress_queue_max", 0, 1u << 16, true,
	    "blocks waiting for a compression worker before the flusher "
	    "compresses inline (0: always inline)" },
	[T_WORKERS] = { "compress_workers", 0, 1024, false,
	    "compression worker threads" },
	[T_ENTROPY] = { "compress_entropy_max", 0, 8000, true,
	    "byte entropy of a block's sample, in millibits per byte, above "
	    "which the block is stored raw untried (0: never judge)" },
};

#define TUN_DEFAULT_LEVEL	FLYFS_ZSTD_LEVEL_DEFAULT
#define TUN_DEFAULT_SKIP_AFTER	8
#define TUN_DEFAULT_RETRY_EVERY	16
#define TUN_DEFAULT_ENTROPY	7500
#define TUN_QUEUE_PER_WORKER	4

/* Filesystem-wide figures.  (a) */
struct fs_comp_stats {
	uint64_t logical_bytes;
	uint64_t written_bytes;
	uint64_t frame_bytes;
	uint64_t compressed_blocks;
	uint64_t raw_blocks;
	uint64_t skipped_blocks;
	uint64_t entropy_blocks;
	uint64_t uncompressed_blocks;
	uint64_t zero_blocks;
	uint64_t errors;
	uint64_t cpu_ns;
	uint64_t jobs_pooled;
	uint64_t jobs_inline;
	uint64_t dec_blocks;
	uint64_t dec_bytes;
	uint64_t dec_errors;
	uint64_t dec_cpu_ns;
};

/*
 * One queued block.  The result is the first member: the callback gets
 * &j_enc and fs_encoded_release() finds the job from it.
 */
struct fs_comp_job {
	struct fs_encoded j_enc;
	TAILQ_ENTRY(fs_comp_job) j_link;	/* (m) on fc_queue */
	struct fs_compress *j_fc;
	struct fs_comp_inode *j_ci;
	const void	*j_src;
	size_t		j_len;
	int		j_level;
	fs_compress_done_t *j_done;
	void		*j_arg;
};

/*
 * The engine.  (m) fc_mtx, (a) atomic, (c) constant after create.
 */
struct fs_compress {
	pthread_mutex_t	fc_mtx;
	pthread_cond_t	fc_work_cv;		/* "cwork": queue not empty */
	pthread_cond_t	fc_idle_cv;		/* "cidle": nothing left */
	pthread_cond_t	fc_resv_cv;		/* "cresv": reserve job free */
	pthread_cond_t	fc_batch_cv;		/* "cbatch": a batch job done */
	TAILQ_HEAD(, fs_comp_job) fc_queue;	/* (m) */
	unsigned	fc_queued;		/* (m) readable (a) */
	unsigned	fc_running;		/* (m) jobs being compressed */
	bool		fc_stopping;		/* (m) readable (a) */
	unsigned	fc_nworkers;		/* (c) started */
	pthread_t	*fc_workers;		/* (c) */
	void		(*fc_thread_init)(void);	/* (c) */
	/*
	 * One job kept back for when malloc fails, so that a block is never
	 * refused: a flush that cannot allocate waits for it ("cresv").
	 */
	struct fs_comp_job fc_resv;		/* (m) while fc_resv_busy */
	bool		fc_resv_busy;		/* (m) */
	uint32_t	fc_live;		/* (a) packed fs_comp_setting */
	struct fs_comp_setting fc_image;	/* (c) */
	uint64_t	fc_tun[T_COUNT];	/* (a) */
	struct fs_comp_stats fc_st;		/* (a) */
	int		fc_logged;		/* (a) codec error logged once */
};

static uint32_t
setting_pack(const struct fs_comp_setting *s)
{
	return (uint32_t)s->mode << 8 | s->level;
}

static void
setting_unpack(uint32_t v, struct fs_comp_setting *s)
{
	s->mode = (enum fs_comp_mode)(v >> 8);
	s->level = (uint8_t)v;
}

static uint64_t
thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- Policy resolution -------------------------------------------------- */

void
fs_compress_set_live(struct fs_compress *fc, const struct fs_comp_setting *set)
{
	ASTORE(&fc->fc_live, setting_pack(set));
}

void
fs_compress_get_live(const struct fs_compress *fc, struct fs_comp_setting *out)
{
	setting_unpack(ALOAD(&fc->fc_live), out);
	if (out->mode == FS_COMP_DEFAULT)
		*out = fc->fc_image;
}

void
fs_compress_resolve(const struct fs_compress *fc,
    const struct flyfs_inode *din, uint8_t *comp, int *level)
{
	struct fs_comp_setting s = { FS_COMP_DEFAULT, 0 };

	if (din != NULL)
		fs_comp_inode_get(din, &s);
	if (s.mode == FS_COMP_DEFAULT)
		fs_compress_get_live(fc, &s);
	if (s.mode != FS_COMP_ZSTD) {
		*comp = FLYFS_COMP_NONE;
		*level = 0;
		return;
	}
	*comp = FLYFS_COMP_ZSTD;
	*level = s.level ? s.level : (int)ALOAD(&fc->fc_tun[T_LEVEL]);
}

/* ---- Tunables and figures ----------------------------------------------- */

static int
tunable_index(const char *name)
{
	for (int i = 0; i < T_COUNT; i++)
		if (strcmp(tunables[i].name, name) == 0)
			return i;
	return -1;
}

int
fs_compress_tunable_get(const struct fs_compress *fc, const char *name,
    uint64_t *value)
{
	int i = tunable_index(name);

	if (i < 0)
		return ENOENT;
	*value = ALOAD(&fc->fc_tun[i]);
	return 0;
}

int
fs_compress_tunable_set(struct fs_compress *fc, const char *name,
    uint64_t value)
{
	int i = tunable_index(name);

	if (i < 0)
		return ENOENT;
	if (!tunables[i].writable)
		return EPERM;
	if (value < tunables[i].min || value > tunables[i].max)
		return EINVAL;
	ASTORE(&fc->fc_tun[i], value);
	return 0;
}

void
fs_compress_tunables_foreach(const struct fs_compress *fc,
    void (*fn)(void *arg, const struct fs_comp_tunable *t, uint64_t value),
    void *arg)
{
	for (int i = 0; i < T_COUNT; i++)
		fn(arg, &tunables[i], ALOAD(&fc->fc_tun[i]));
}

void
fs_compress_stats_foreach(const struct fs_compress *fc,
    void (*fn)(void *arg, const char *name, uint64_t value), void *arg)
{
	const struct fs_comp_stats *s = &fc->fc_st;

#define S(name, f)	fn(arg, name, ALOAD(&s->f))
	S("compress_logical_bytes", logical_bytes);
	S("compress_written_bytes", written_bytes);
	S("compress_frame_bytes", frame_bytes);
	S("compress_compressed_blocks", compressed_blocks);
	S("compress_raw_blocks", raw_blocks);
	S("compress_skipped_blocks", skipped_blocks);
	S("compress_entropy_blocks", entropy_blocks);
	S("compress_uncompressed_blocks", uncompressed_blocks);
	S("compress_zero_blocks", zero_blocks);
	S("compress_errors", errors);
	S("compress_cpu_ns", cpu_ns);
	S("compress_jobs_pooled", jobs_pooled);
	S("compress_jobs_inline", jobs_inline);
	S("decompress_blocks", dec_blocks);
	S("decompress_bytes", dec_bytes);
	S("decompress_errors", dec_errors);
	S("decompress_cpu_ns", dec_cpu_ns);
#undef S
	fn(arg, "compress_queue_depth", ALOAD(&fc->fc_queued));
}

void
fs_compress_inode_stats_foreach(const struct fs_comp_inode *ci,
    void (*fn)(void *arg, const char *name, uint64_t value), void *arg)
{
	const struct fs_comp_istats *s = &ci->ci_st;

#define S(name, f)	fn(arg, name, ALOAD(&s->f))
	S("compress_logical_bytes", logical_bytes);
	S("compress_written_bytes", written_bytes);
	S("compress_compressed_blocks", compressed_blocks);
	S("compress_raw_blocks", raw_blocks);
	S("compress_skipped_blocks", skipped_blocks);
	S("compress_zero_blocks", zero_blocks);
	S("compress_cpu_ns", comp_ns);
	S("decompress_cpu_ns", decomp_ns);
#undef S
}

/* ---- The skip heuristic -------------------------------------------------- */

/*
 * Should a block of the file whose state is CI be compressed?  Below
 * compress_skip_after consecutive failures: yes.  Beyond: one block in
 * compress_retry_every (the skipped ones count towards the next try).
 * Called in the submitting thread, before the block is queued.
 */
static bool
heur_should_try(struct fs_compress *fc, struct fs_comp_inode *ci)
{
	uint64_t k = ALOAD(&fc->fc_tun[T_SKIP_AFTER]);
	uint64_t n = ALOAD(&fc->fc_tun[T_RETRY_EVERY]);

	if (ci == NULL || k == 0 || ALOAD(&ci->ci_fails) < k)
		return true;
	if (__atomic_add_fetch(&ci->ci_skips, 1, __ATOMIC_RELAXED) >= n) {
		ASTORE(&ci->ci_skips, 0);
		return true;
	}
	return false;
}

/* A try finished: success resets the file to "always try". */
static void
heur_record(struct fs_comp_inode *ci, bool saved)
{
	if (ci == NULL)
		return;
	if (saved) {
		if (ALOAD(&ci->ci_fails) != 0)
			ASTORE(&ci->ci_fails, 0);
		ASTORE(&ci->ci_skips, 0);
	} else if (ALOAD(&ci->ci_fails) < UINT32_MAX / 2) {
		AADD(&ci->ci_fails, 1);
	}
}

/* ---- The entropy estimate ------------------------------------------------ */

/* log2(X) in units of 1/65536, for X >= 1: integer part, then 16 bits of
 * fraction by repeated squaring of the mantissa (held in Q30). */
static uint32_t
log2_q16(uint32_t x)
{
	int ip = 31 - __builtin_clz(x);
	uint64_t y = ((uint64_t)x << 30) >> ip;
	uint32_t frac = 0;

	for (int b = 15; b >= 0; b--) {
		y = (y * y) >> 30;
		if (y >= (2ULL << 30)) {
			y >>= 1;
			frac |= 1u << b;
		}
	}
	return ((uint32_t)ip << 16) | frac;
}

/*
 * The Shannon entropy of the byte values of a sample of the block, in
 * millibits per byte: 64 bytes of every 512 (an eighth; 2 KiB of a 16 KiB
 * block, 16 KiB of a 128 KiB one).  Random or already-compressed data
 * comes out near 8000 (a little less for a small sample), text near
 * 4500-5000, data that is a quarter zeros about 6800.  The estimate sees
 * byte statistics only: data whose bytes are random but repeat at a
 * distance (the same 4 KiB record many times) looks incompressible here
 * although zstd would shrink it -- the price of deciding in microseconds.
 * btrfs's heuristic makes the same trade.
 */
unsigned
fs_compress_entropy(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t cnt[256] = { 0 };
	uint64_t sum = 0;
	uint32_t n = 0;

	for (size_t off = 0; off + 64 <= len; off += 512) {
		for (int i = 0; i < 64; i++)
			cnt[p[off + (size_t)i]]++;
		n += 64;
	}
	if (n == 0)
		return 0;
	for (int v = 0; v < 256; v++)
		if (cnt[v] > 1)
			sum += (uint64_t)cnt[v] * log2_q16(cnt[v]);
	/* H = log2(n) - sum(c log2 c) / n */
	return (unsigned)((((uint64_t)log2_q16(n) - sum / n) * 1000) >> 16);
}

static bool
entropy_high(struct fs_compress *fc, const void *data, size_t len)
{
	uint64_t lim = ALOAD(&fc->fc_tun[T_ENTROPY]);

	return lim != 0 && fs_compress_entropy(data, len) > lim;
}

/* ---- Encoding ------------------------------------------------------------- */

static void
enc_init(struct fs_encoded *enc, struct buf *bp, const void *data, size_t len)
{
	memset(enc, 0, sizeof(*enc));
	enc->e_bp = bp;
	enc->e_llen = (uint32_t)(len >> FLYFS_BLOCK_SHIFT);
	enc->e_comp = FLYFS_COMP_NONE;
	enc->e_data = data;
}

static void
enc_set_raw(struct fs_encoded *enc, enum fs_enc_why why)
{
	enc->e_kind = FS_ENC_RAW;
	enc->e_why = why;
	enc->e_plen = enc->e_llen;
	enc->e_iov.iov_base = (void *)(uintptr_t)enc->e_data;
	enc->e_iov.iov_len = (size_t)enc->e_plen << FLYFS_BLOCK_SHIFT;
}

/*
 * The decisions that need no compression: returns true and fills ENC if
 * the block's fate is settled (off, hole, too small, skipped).
 */
static bool
enc_classify(struct fs_compress *fc, struct fs_comp_inode *ci, uint8_t comp,
    struct fs_encoded *enc, size_t len)
{
	/*
	 * Zeros first, whatever the policy: a zero block written into a
	 * hole need not be stored (sparse files stay sparse), and the test
	 * stops at the first non-zero byte, so it costs nothing on data.
	 */
	if (fs_data_is_zero(enc->e_data, len)) {
		enc->e_kind = FS_ENC_HOLE;
		enc->e_why = FS_WHY_NONE;
		enc->e_plen = 0;
		enc->e_data = NULL;
		return true;
	}
	if (comp != FLYFS_COMP_ZSTD) {
		enc_set_raw(enc, FS_WHY_POLICY);
		return true;
	}
	if (enc->e_llen < 2) {
		enc_set_raw(enc, FS_WHY_SMALL);
		return true;
	}
	if (!heur_should_try(fc, ci)) {
		enc_set_raw(enc, FS_WHY_SKIPPED);
		return true;
	}
	if (entropy_high(fc, enc->e_data, len)) {
		heur_record(ci, false);
		enc_set_raw(enc, FS_WHY_ENTROPY);
		return true;
	}
	return false;
}

static void
log_codec_error(struct fs_compress *fc, int error)
{
	if (__atomic_exchange_n(&fc->fc_logged, 1, __ATOMIC_RELAXED) == 0)
		fprintf(stderr, "flyfs: zstd compression failed (%s); "
		    "storing data uncompressed\n", strerror(error));
}

/*
 * Compress: the frame must fit in llen - 1 blocks to be worth keeping,
 * so that is the output capacity; zstd gives up (E2BIG) as soon as it
 * knows it will not fit.  Returns the CPU time spent.
 */
static uint64_t
enc_compress(struct fs_compress *fc, struct fs_comp_inode *ci, int level,
    struct fs_encoded *enc, const void *src, size_t len)
{
	size_t cap = (size_t)(enc->e_llen - 1) << FLYFS_BLOCK_SHIFT;
	size_t cbytes = 0, pbytes;
	uint64_t t0, t1;
	void *out = NULL;
	int error;

	if (posix_memalign(&out, FLYFS_BLOCK_SIZE, cap) != 0) {
		log_codec_error(fc, ENOMEM);
		enc_set_raw(enc, FS_WHY_ERROR);
		return 0;
	}
	t0 = thread_cpu_ns();
	error = fs_zstd_compress(src, len, level, out, cap, &cbytes);
	t1 = thread_cpu_ns();
	if (error) {
		free(out);
		if (error == E2BIG) {
			heur_record(ci, false);
			enc_set_raw(enc, FS_WHY_NOSAVE);
		} else {
			log_codec_error(fc, error);
			enc_set_raw(enc, FS_WHY_ERROR);
		}
		return t1 - t0;
	}
	heur_record(ci, true);
	pbytes = (cbytes + FLYFS_BLOCK_SIZE - 1) & ~(size_t)(FLYFS_BLOCK_SIZE - 1);
	memset((char *)out + cbytes, 0, pbytes - cbytes);
	enc->e_kind = FS_ENC_ZSTD;
	enc->e_why = FS_WHY_NONE;
	enc->e_comp = FLYFS_COMP_ZSTD;
	enc->e_cbytes = (uint32_t)cbytes;
	enc->e_plen = (uint32_t)(pbytes >> FLYFS_BLOCK_SHIFT);
	enc->e_data = out;
	enc->e_iov.iov_base = out;
	enc->e_iov.iov_len = pbytes;
	return t1 - t0;
}

static void
account(struct fs_compress *fc, struct fs_comp_inode *ci,
    const struct fs_encoded *enc, uint64_t ns)
{
	struct fs_comp_stats *s = &fc->fc_st;
	uint64_t lb = (uint64_t)enc->e_llen << FLYFS_BLOCK_SHIFT;
	uint64_t wb = (uint64_t)enc->e_plen << FLYFS_BLOCK_SHIFT;
	uint64_t *is = NULL;

	AADD(&s->logical_bytes, lb);
	AADD(&s->written_bytes, wb);
	if (ns)
		AADD(&s->cpu_ns, ns);
	switch (enc->e_kind) {
	case FS_ENC_HOLE:
		AADD(&s->zero_blocks, 1);
		is = ci ? &ci->ci_st.zero_blocks : NULL;
		break;
	case FS_ENC_ZSTD:
		AADD(&s->compressed_blocks, 1);
		AADD(&s->frame_bytes, enc->e_cbytes);
		is = ci ? &ci->ci_st.compressed_blocks : NULL;
		break;
	case FS_ENC_RAW:
		switch (enc->e_why) {
		case FS_WHY_ENTROPY:
			AADD(&s->entropy_blocks, 1);
			/* judged incompressible: a raw block as well */
			__attribute__((fallthrough));
		case FS_WHY_NOSAVE:
			AADD(&s->raw_blocks, 1);
			is = ci ? &ci->ci_st.raw_blocks : NULL;
			break;
		case FS_WHY_SKIPPED:
			AADD(&s->skipped_blocks, 1);
			is = ci ? &ci->ci_st.skipped_blocks : NULL;
			break;
		case FS_WHY_ERROR:
			AADD(&s->errors, 1);
			break;
		default:
			AADD(&s->uncompressed_blocks, 1);
			break;
		}
		break;
	}
	if (ci == NULL)
		return;
	AADD(&ci->ci_st.logical_bytes, lb);
	AADD(&ci->ci_st.written_bytes, wb);
	if (ns)
		AADD(&ci->ci_st.comp_ns, ns);
	if (is)
		AADD(is, 1);
}

void
fs_compress_encode(struct fs_compress *fc, struct fs_comp_inode *ci,
    uint8_t comp, int level, const void *data, size_t len,
    struct fs_encoded *enc)
{
	uint64_t ns = 0;

	enc_init(enc, NULL, data, len);
	if (!enc_classify(fc, ci, comp, enc, len))
		ns = enc_compress(fc, ci, level, enc, data, len);
	account(fc, ci, enc, ns);
}

void
fs_encoded_fini(struct fs_encoded *enc)
{
	if (enc->e_kind == FS_ENC_ZSTD)
		free((void *)(uintptr_t)enc->e_data);
	enc->e_data = NULL;
	enc->e_kind = FS_ENC_HOLE;
}

void *
fs_encoded_take_buffer(struct fs_encoded *enc)
{
	void *p = NULL;

	if (enc->e_kind == FS_ENC_ZSTD) {
		p = (void *)(uintptr_t)enc->e_data;
		enc->e_data = NULL;
		enc->e_kind = FS_ENC_HOLE;
	}
	return p;
}

void
fs_encoded_set_raw(struct fs_encoded *enc, const void *data)
{
	fs_encoded_fini(enc);
	enc->e_data = data;
	enc->e_comp = FLYFS_COMP_NONE;
	enc->e_cbytes = 0;
	enc_set_raw(enc, FS_WHY_NOSAVE);
}

/* ---- The pool -------------------------------------------------------------- */

static struct fs_comp_job *
job_get(struct fs_compress *fc)
{
	struct fs_comp_job *j = malloc(sizeof(*j));

	if (j != NULL)
		return j;
	pthread_mutex_lock(&fc->fc_mtx);
	while (fc->fc_resv_busy)
		pthread_cond_wait(&fc->fc_resv_cv, &fc->fc_mtx);
	fc->fc_resv_busy = true;
	pthread_mutex_unlock(&fc->fc_mtx);
	return &fc->fc_resv;
}

/* Free the job of a result whose contents were moved elsewhere. */
static void
job_free_shell(struct fs_comp_job *j)
{
	struct fs_compress *fc = j->j_fc;

	if (j != &fc->fc_resv) {
		free(j);
		return;
	}
	pthread_mutex_lock(&fc->fc_mtx);
	fc->fc_resv_busy = false;
	pthread_cond_signal(&fc->fc_resv_cv);
	pthread_mutex_unlock(&fc->fc_mtx);
}

void
fs_encoded_release(struct fs_encoded *enc)
{
	struct fs_comp_job *j = (struct fs_comp_job *)enc;
	struct fs_compress *fc = j->j_fc;

	(void)fc;
	fs_encoded_fini(enc);
	job_free_shell(j);
}

/* Compress a queued job and hand the result over (worker or inline). */
static void
job_run(struct fs_comp_job *j)
{
	uint64_t ns;

	ns = enc_compress(j->j_fc, j->j_ci, j->j_level, &j->j_enc, j->j_src,
	    j->j_len);
	account(j->j_fc, j->j_ci, &j->j_enc, ns);
	j->j_done(j->j_arg, &j->j_enc);
}

static void *
worker_main(void *arg)
{
	struct fs_compress *fc = arg;
	struct fs_comp_job *j;

	if (fc->fc_thread_init)
		fc->fc_thread_init();
	pthread_mutex_lock(&fc->fc_mtx);
	for (;;) {
		while ((j = TAILQ_FIRST(&fc->fc_queue)) == NULL &&
		    !fc->fc_stopping)
			pthread_cond_wait(&fc->fc_work_cv, &fc->fc_mtx);
		if (j == NULL)
			break;		/* stopping, and nothing left */
		TAILQ_REMOVE(&fc->fc_queue, j, j_link);
		ASTORE(&fc->fc_queued, fc->fc_queued - 1);
		fc->fc_running++;
		pthread_mutex_unlock(&fc->fc_mtx);

		job_run(j);

		pthread_mutex_lock(&fc->fc_mtx);
		if (--fc->fc_running == 0 && fc->fc_queued == 0)
			pthread_cond_broadcast(&fc->fc_idle_cv);
	}
	pthread_mutex_unlock(&fc->fc_mtx);
	return NULL;
}

void
fs_compress_submit(struct fs_compress *fc, struct fs_comp_inode *ci,
    uint8_t comp, int level, struct buf *bp, const void *data, size_t len,
    fs_compress_done_t *done, void *arg)
{
	struct fs_comp_job *j = job_get(fc);

	enc_init(&j->j_enc, bp, data, len);
	j->j_fc = fc;
	j->j_ci = ci;
	j->j_src = data;
	j->j_len = len;
	j->j_level = level;
	j->j_done = done;
	j->j_arg = arg;
	if (enc_classify(fc, ci, comp, &j->j_enc, len)) {
		account(fc, ci, &j->j_enc, 0);
		done(arg, &j->j_enc);
		return;
	}
	pthread_mutex_lock(&fc->fc_mtx);
	if (!fc->fc_stopping && fc->fc_nworkers > 0 &&
	    fc->fc_queued < ALOAD(&fc->fc_tun[T_QUEUE_MAX])) {
		TAILQ_INSERT_TAIL(&fc->fc_queue, j, j_link);
		ASTORE(&fc->fc_queued, fc->fc_queued + 1);
		pthread_cond_signal(&fc->fc_work_cv);
		pthread_mutex_unlock(&fc->fc_mtx);
		AADD(&fc->fc_st.jobs_pooled, 1);
		return;
	}
	pthread_mutex_unlock(&fc->fc_mtx);
	/* Queue full or engine stopping: this thread compresses. */
	AADD(&fc->fc_st.jobs_inline, 1);
	job_run(j);
}

/* One block of a batch: where its result goes, and the batch's count. */
struct batch_slot {
	struct fs_encoded *dst;
	unsigned	*left;		/* (m) */
};

static void
batch_done(void *arg, struct fs_encoded *enc)
{
	struct batch_slot *bs = arg;
	struct fs_comp_job *j = (struct fs_comp_job *)enc;
	struct fs_compress *fc = j->j_fc;

	*bs->dst = *enc;	/* the result (and its buffer) moves out */
	job_free_shell(j);
	pthread_mutex_lock(&fc->fc_mtx);
	if (--*bs->left == 0)
		pthread_cond_broadcast(&fc->fc_batch_cv);
	pthread_mutex_unlock(&fc->fc_mtx);
}

void
fs_compress_encode_batch(struct fs_compress *fc, struct fs_comp_inode *ci,
    uint8_t comp, int level, const struct iovec *blocks, size_t n,
    struct fs_encoded *encs)
{
	struct batch_slot *slots;
	struct fs_comp_job *j;
	unsigned left = (unsigned)n;

	slots = n > 1 ? calloc(n, sizeof(*slots)) : NULL;
	if (slots == NULL) {
		/* One block, or no memory: this thread does it all. */
		for (size_t i = 0; i < n; i++)
			fs_compress_encode(fc, ci, comp, level,
			    blocks[i].iov_base, blocks[i].iov_len, &encs[i]);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		slots[i].dst = &encs[i];
		slots[i].left = &left;
		fs_compress_submit(fc, ci, comp, level, NULL,
		    blocks[i].iov_base, blocks[i].iov_len, batch_done,
		    &slots[i]);
	}
	/*
	 * Help while waiting: the flusher is a CPU like the workers, and
	 * with it the batch uses every core even when all workers are busy
	 * with other files' blocks.
	 */
	pthread_mutex_lock(&fc->fc_mtx);
	while (left > 0) {
		if ((j = TAILQ_FIRST(&fc->fc_queue)) != NULL) {
			TAILQ_REMOVE(&fc->fc_queue, j, j_link);
			ASTORE(&fc->fc_queued, fc->fc_queued - 1);
			fc->fc_running++;
			pthread_mutex_unlock(&fc->fc_mtx);
			job_run(j);
			pthread_mutex_lock(&fc->fc_mtx);
			if (--fc->fc_running == 0 && fc->fc_queued == 0)
				pthread_cond_broadcast(&fc->fc_idle_cv);
			continue;
		}
		pthread_cond_wait(&fc->fc_batch_cv, &fc->fc_mtx);
	}
	pthread_mutex_unlock(&fc->fc_mtx);
	free(slots);
}

void
fs_compress_drain(struct fs_compress *fc)
{
	pthread_mutex_lock(&fc->fc_mtx);
	while (fc->fc_queued > 0 || fc->fc_running > 0)
		pthread_cond_wait(&fc->fc_idle_cv, &fc->fc_mtx);
	pthread_mutex_unlock(&fc->fc_mtx);
}

int
fs_compress_decode(struct fs_compress *fc, struct fs_comp_inode *ci,
    const void *frame, size_t cbytes, void *dst, size_t len)
{
	uint64_t t0, ns;
	int error;

	t0 = thread_cpu_ns();
	error = fs_zstd_decompress(frame, cbytes, dst, len);
	ns = thread_cpu_ns() - t0;
	if (fc != NULL) {
		AADD(&fc->fc_st.dec_cpu_ns, ns);
		if (error) {
			AADD(&fc->fc_st.dec_errors, 1);
		} else {
			AADD(&fc->fc_st.dec_blocks, 1);
			AADD(&fc->fc_st.dec_bytes, (uint64_t)len);
		}
	}
	if (ci != NULL)
		AADD(&ci->ci_st.decomp_ns, ns);
	return error;
}

/* ---- Life ------------------------------------------------------------------ */

static unsigned
online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

static void
engine_free(struct fs_compress *fc)
{
	pthread_cond_destroy(&fc->fc_work_cv);
	pthread_cond_destroy(&fc->fc_idle_cv);
	pthread_cond_destroy(&fc->fc_resv_cv);
	pthread_cond_destroy(&fc->fc_batch_cv);
	pthread_mutex_destroy(&fc->fc_mtx);
	free(fc->fc_workers);
	free(fc);
}

/* Stop the workers after they emptied the queue. */
static void
engine_stop(struct fs_compress *fc)
{
	pthread_mutex_lock(&fc->fc_mtx);
	fc->fc_stopping = true;
	pthread_cond_broadcast(&fc->fc_work_cv);
	pthread_mutex_unlock(&fc->fc_mtx);
	for (unsigned i = 0; i < fc->fc_nworkers; i++)
		pthread_join(fc->fc_workers[i], NULL);
	pthread_mutex_lock(&fc->fc_mtx);
	fc->fc_nworkers = 0;
	pthread_mutex_unlock(&fc->fc_mtx);
}

int
fs_compress_create(const struct fs_compress_conf *conf,
    struct fs_compress **fcp)
{
	struct fs_compress *fc = calloc(1, sizeof(*fc));
	unsigned n;
	int error;

	if (fc == NULL)
		return ENOMEM;
	n = conf->nworkers ? conf->nworkers : online_cpus();
	fc->fc_workers = calloc(n, sizeof(*fc->fc_workers));
	if (fc->fc_workers == NULL) {
		free(fc);
		return ENOMEM;
	}
	pthread_mutex_init(&fc->fc_mtx, NULL);
	pthread_cond_init(&fc->fc_work_cv, NULL);
	pthread_cond_init(&fc->fc_idle_cv, NULL);
	pthread_cond_init(&fc->fc_resv_cv, NULL);
	pthread_cond_init(&fc->fc_batch_cv, NULL);
	TAILQ_INIT(&fc->fc_queue);
	fc->fc_resv.j_fc = fc;
	fc->fc_thread_init = conf->thread_init;
	fc->fc_image = conf->image;
	fc->fc_live = setting_pack(&conf->mount);
	fc->fc_tun[T_LEVEL] = TUN_DEFAULT_LEVEL;
	fc->fc_tun[T_SKIP_AFTER] = TUN_DEFAULT_SKIP_AFTER;
	fc->fc_tun[T_RETRY_EVERY] = TUN_DEFAULT_RETRY_EVERY;
	fc->fc_tun[T_ENTROPY] = TUN_DEFAULT_ENTROPY;
	fc->fc_tun[T_QUEUE_MAX] = (uint64_t)n * TUN_QUEUE_PER_WORKER;
	for (unsigned i = 0; i < n; i++) {
		error = pthread_create(&fc->fc_workers[i], NULL, worker_main,
		    fc);
		if (error) {
			engine_stop(fc);
			engine_free(fc);
			return error;
		}
		fc->fc_nworkers++;
	}
	fc->fc_tun[T_WORKERS] = n;
	*fcp = fc;
	return 0;
}

void
fs_compress_destroy(struct fs_compress *fc)
{
	if (fc == NULL)
		return;
	engine_stop(fc);
	engine_free(fc);
}
