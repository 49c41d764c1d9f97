/*
 * journal.c - metadata journaling: transactions, commit, checkpoint, replay.
 *
 * This module owns the journal region and the rules that make metadata
 * changes atomic (the ext3/JBD2 model, mapped onto the buffer cache's
 * LOCKED queue):
 *
 *   - Handles join the one running transaction (fs_trans_begin) after
 *     reserving log space for the blocks they may dirty.  A dirtied
 *     metadata buffer is B_LOCKED: the cache keeps it on the LOCKED queue,
 *     the daemons never write it, so it cannot reach its home before the
 *     transaction commits.
 *   - The commit thread closes the running transaction (new handles wait
 *     while it drains), snapshots every block under its buffer lock
 *     (sealing headers: mb_txid, crc) into frozen copies, and reopens for
 *     new handles at once: a block re-dirtied by the next transaction
 *     while this one is written is harmless, the copy is what is logged.
 *   - It then waits for the transaction's ordered data writes, writes
 *     descriptors + copies + revoke blocks, a barrier, the commit block, a
 *     barrier.  Afterwards each buffer loses B_LOCKED and becomes an
 *     ordinary dirty buffer (unless a newer transaction holds it), and the
 *     daemons write it home.
 *   - Checkpoint: a committed transaction stays in the log until every
 *     block it logged is home (or logged again by a later committed
 *     transaction).  A checkpoint writes the dirty committed buffers
 *     (vfsync of the device vnode), a barrier, then advances the log tail
 *     in the journal superblock, and a barrier.
 *   - Replay at mount: journal_scan.c (the log reader fsck shares) scans
 *     from the tail, stops at the first transaction without a valid
 *     commit block, refuses a committed transaction that is damaged,
 *     honours revokes; the newest copy of each block is written home,
 *     barrier, the log is marked empty.  The escape rule of logged
 *     blocks is journal_scan.c's too (fs_jscan_escape).
 *
 * Space: a handle's reservation is counted in the running transaction's
 * credits; a handle joins only if the log has room for all credits, so a
 * running transaction can always commit, and once it has, every older one
 * can be checkpointed (the JBD2 argument).
 *
 * Locks: j_lock (level 8: a leaf) protects everything in struct fs_journal
 * and struct fs_txn below, and every struct jblock.  It is never held
 * across I/O or a buffer lock; buffer lock -> j_lock is the order
 * (fs_trans_dirty is called with the buffer locked).  Commits and
 * checkpoints run only on the commit thread, which serialises them.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/bufstats.h"
#include "fs/fs_int.h"
#include "fs/journal_scan.h"

#define J_HASH_SIZE	65536		/* jblock hash chains */
#define J_MARGIN	16		/* log blocks never promised */
/*
 * Log blocks an outer fs_trans_begin leaves to nested ones.  A nested
 * begin (fs_sysfile_extend: the inode file, inode bitmap or orphan file
 * growing inside a create or an unlink) cannot wait for space, because
 * the transaction it joins cannot close under it; so outer begins keep
 * this much back for them: the three system files growing at once at
 * extent depth 3 (fs_extent_op_cost + 3 = 25 each), with room to spare.
 */
#define J_NEST_RESERVE	96
#define J_IOV_MAX	256		/* iovecs per log write request */

/* What the journal knows about one metadata block.  (j) */
struct jblock {
	uint64_t	jb_blk;
	struct jblock	*jb_hnext;
	struct fs_txn	*jb_run;	/* running transaction holding it */
	uint32_t	jb_run_idx;	/* its index in jb_run->t_blocks */
	struct fs_txn	*jb_commit;	/* committing transaction logging it */
	struct fs_txn	*jb_cp;		/* committed, not yet home */
	struct fs_txn	*jb_freed_by;	/* freed (revoked) by this one */
	bool		jb_raw;		/* no metadata header to seal */
};

enum txn_state { T_RUNNING, T_LOCKED, T_COMMITTING, T_COMMITTED };

struct fs_txn {
	uint64_t	t_tid;
	enum txn_state	t_state;
	int		t_updates;	/* handles in it */
	uint64_t	t_credits;	/* log blocks promised to handles */
	struct jblock	**t_blocks;	/* NULL slots: dropped (freed) */
	uint32_t	t_nblocks, t_cap;
	uint64_t	*t_revoke;
	uint32_t	t_nrevoke, t_rcap;
	struct fs_brange *t_busy;	/* freed ranges, allocatable at commit */
	uint32_t	t_nbusy, t_bcap;
	struct bio_track t_ordered;	/* ordered data writes in flight */
	uint64_t	t_log_start;	/* journal-relative first log block */
	uint64_t	t_log_len;
	uint64_t	t_cp_count;	/* blocks still to reach home */
	TAILQ_ENTRY(fs_txn) t_cplink;
};

struct fs_journal {
	pthread_mutex_t	j_lock;
	pthread_cond_t	j_wait_cv;	/* handles waiting to join */
	pthread_cond_t	j_updates_cv;	/* commit thread: updates drained */
	pthread_cond_t	j_done_cv;	/* commit waiters */
	pthread_cond_t	j_thread_cv;	/* wakes the commit thread */

	struct fs_txn	*j_running;
	struct fs_txn	*j_committing;
	TAILQ_HEAD(, fs_txn) j_cplist;	/* committed, in the log, oldest first */
	uint64_t	j_next_tid;	/* tid of the next transaction made */
	uint64_t	j_committed_tid;
	uint64_t	j_commit_request;

	uint64_t	j_start;	/* (c) absolute block of the jsb */
	uint64_t	j_blocks;	/* (c) journal length incl. jsb */
	uint64_t	j_logsize;	/* (c) j_blocks - 1 */
	uint64_t	j_head;		/* relative: next log block to write */
	uint64_t	j_tail;		/* relative: oldest kept transaction */
	uint64_t	j_tail_tid;
	uint64_t	j_used;		/* log blocks from tail to head */
	uint64_t	j_max_txn;	/* (c) credits at which we commit */

	struct jblock	**j_hash;
	uint64_t	j_njb;

	bool		j_kick, j_stop, j_need_space, j_aborted;
	int		j_errno;
	bool		j_thread_running;
	pthread_t	j_thread;
	struct timespec	j_last_commit;	/* CLOCK_MONOTONIC */
	/* stats (j) */
	uint64_t	j_replayed_tid;
};

static __thread struct fs_trans *cur_handle;

static void *commit_thread(void *arg);

/* ---- Helpers ------------------------------------------------------------ */

static uint64_t
rel_next(const struct fs_journal *j, uint64_t rel, uint64_t k)
{
	/* Relative positions run over [1, j_blocks). */
	return 1 + (rel - 1 + k) % j->j_logsize;
}

static uint64_t
log_len(uint64_t nblocks, uint64_t nrevoke)
{
	uint64_t ndesc = nblocks == 0 ? 1 :
	    (nblocks + FLYFS_JTAGS_PER_DESC - 1) / FLYFS_JTAGS_PER_DESC;

	return ndesc + nblocks +
	    (nrevoke + FLYFS_JREVOKES_PER_BLOCK - 1) / FLYFS_JREVOKES_PER_BLOCK +
	    1;
}

static struct jblock *
jb_lookup(struct fs_journal *j, uint64_t blk)
{
	struct jblock *jb;

	for (jb = j->j_hash[blk % J_HASH_SIZE]; jb; jb = jb->jb_hnext)
		if (jb->jb_blk == blk)
			return jb;
	return NULL;
}

static struct jblock *
jb_get(struct fs_journal *j, uint64_t blk)
{
	struct jblock *jb = jb_lookup(j, blk);

	if (jb)
		return jb;
	jb = calloc(1, sizeof(*jb));
	if (jb == NULL)
		return NULL;
	jb->jb_blk = blk;
	jb->jb_hnext = j->j_hash[blk % J_HASH_SIZE];
	j->j_hash[blk % J_HASH_SIZE] = jb;
	j->j_njb++;
	return jb;
}

/* Free JB if nothing refers to it any more.  (j) */
static void
jb_maybe_free(struct fs_journal *j, struct jblock *jb)
{
	struct jblock **pp;

	if (jb->jb_run || jb->jb_commit || jb->jb_cp || jb->jb_freed_by)
		return;
	for (pp = &j->j_hash[jb->jb_blk % J_HASH_SIZE]; *pp;
	    pp = &(*pp)->jb_hnext) {
		if (*pp == jb) {
			*pp = jb->jb_hnext;
			free(jb);
			j->j_njb--;
			return;
		}
	}
}

static bool
grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
	uint32_t ncap;
	void *n;

	if (need <= *cap)
		return true;
	ncap = *cap ? *cap * 2 : 64;
	while (ncap < need)
		ncap *= 2;
	n = realloc(*arr, (size_t)ncap * elem);
	if (n == NULL)
		return false;
	*arr = n;
	*cap = ncap;
	return true;
}

static void
txn_free(struct fs_txn *t)
{
	free(t->t_blocks);
	free(t->t_revoke);
	free(t->t_busy);
	free(t);
}

/* Abort: every later begin fails, waiters wake.  (j) */
static void
journal_abort_locked(struct flyfs *fs, int error)
{
	struct fs_journal *j = fs->s_journal;

	if (!j->j_aborted) {
		if (error != ESHUTDOWN)		/* flyfs_abandon: no error */
			fprintf(stderr, "flyfs: journal aborted: %s\n",
			    strerror(error));
		j->j_aborted = true;
		j->j_errno = error;
		__atomic_store_n(&fs->s_error, error, __ATOMIC_RELAXED);
	}
	pthread_cond_broadcast(&j->j_wait_cv);
	pthread_cond_broadcast(&j->j_done_cv);
	pthread_cond_broadcast(&j->j_updates_cv);
}

static void
kick_locked(struct fs_journal *j)
{
	j->j_kick = true;
	pthread_cond_signal(&j->j_thread_cv);
}

void
fs_journal_kick(struct flyfs *fs)
{
	struct fs_journal *j = fs->s_journal;

	pthread_mutex_lock(&j->j_lock);
	kick_locked(j);
	pthread_mutex_unlock(&j->j_lock);
}

/* ---- Synchronous vectored device I/O ------------------------------------ */

struct iogroup {
	pthread_mutex_t	mtx;
	pthread_cond_t	cv;
	int		pending;
	int		error;
};

static void
iogroup_done(struct blockdev_req *req)
{
	struct iogroup *g = req->r_arg;

	pthread_mutex_lock(&g->mtx);
	if (req->r_error && g->error == 0)
		g->error = req->r_error;
	if (--g->pending == 0)
		pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mtx);
}

/*
 * Write NIOV blocks, iov[i] going to absolute block blks[i]; runs of
 * consecutive blocks go out as one vectored request.  Waits for all.
 */
static int
write_blocks_vec(struct blockdev *bd, const struct iovec *iov,
    const uint64_t *blks, size_t niov)
{
	struct iogroup g;
	struct blockdev_req *reqs;
	size_t i = 0, nreq = 0;
	int error = 0;

	reqs = calloc(niov ? niov : 1, sizeof(*reqs));
	if (reqs == NULL)
		return ENOMEM;
	pthread_mutex_init(&g.mtx, NULL);
	pthread_cond_init(&g.cv, NULL);
	g.pending = 0;
	g.error = 0;
	while (i < niov) {
		size_t k = 1;
		struct blockdev_req *r = &reqs[nreq++];

		while (i + k < niov && k < J_IOV_MAX &&
		    blks[i + k] == blks[i] + k)
			k++;
		r->r_op = BLOCKDEV_WRITE;
		r->r_offset = fs_blk_off(blks[i]);
		r->r_iov = &iov[i];
		r->r_iovcnt = (int)k;
		r->r_done = iogroup_done;
		r->r_arg = &g;
		pthread_mutex_lock(&g.mtx);
		g.pending++;
		pthread_mutex_unlock(&g.mtx);
		error = blockdev_submit(bd, r);
		if (error) {
			pthread_mutex_lock(&g.mtx);
			g.pending--;
			pthread_mutex_unlock(&g.mtx);
			break;
		}
		i += k;
	}
	pthread_mutex_lock(&g.mtx);
	while (g.pending > 0)
		pthread_cond_wait(&g.cv, &g.mtx);
	if (error == 0)
		error = g.error;
	pthread_mutex_unlock(&g.mtx);
	pthread_mutex_destroy(&g.mtx);
	pthread_cond_destroy(&g.cv);
	free(reqs);
	return error;
}

/* ---- Journal superblock ------------------------------------------------- */

static int
jsb_write(struct flyfs *fs, uint64_t start, uint64_t seq)
{
	struct fs_journal *j = fs->s_journal;
	struct flyfs_journal_super *js;
	int error;

	js = blockdev_alloc_buf(fs->s_bdev, FLYFS_BLOCK_SIZE);
	if (js == NULL)
		return ENOMEM;
	memset(js, 0, FLYFS_BLOCK_SIZE);
	le32_set(&js->js_block_size, FLYFS_BLOCK_SIZE);
	le64_set(&js->js_first, 1);
	le64_set(&js->js_blocks, j->j_blocks);
	le64_set(&js->js_sequence, seq);
	le64_set(&js->js_start, start);
	le32_set(&js->js_errno, (uint32_t)(j->j_aborted ? j->j_errno : 0));
	memcpy(js->js_uuid, fs->s_sb.uuid, FLYFS_UUID_SIZE);
	flyfs_mblock_seal(js, FLYFS_MB_JSUPER, j->j_start, seq > 0 ? seq - 1 :
	    0, 0, fs->s_seed);
	error = blockdev_pwrite(fs->s_bdev, js, FLYFS_BLOCK_SIZE,
	    fs_blk_off(j->j_start));
	if (error == 0)
		error = blockdev_flush(fs->s_bdev);
	blockdev_free_buf(js);
	return error;
}

int
fs_journal_open(struct flyfs *fs, char *err, size_t errlen)
{
	struct fs_journal *j;
	struct flyfs_journal_super *js;
	char why[200];
	int error;

	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return flyfs_error(err, errlen, ENOMEM, "out of memory");
	j->j_hash = calloc(J_HASH_SIZE, sizeof(*j->j_hash));
	js = blockdev_alloc_buf(fs->s_bdev, FLYFS_BLOCK_SIZE);
	if (j->j_hash == NULL || js == NULL) {
		free(j->j_hash);
		free(j);
		blockdev_free_buf(js);
		return flyfs_error(err, errlen, ENOMEM, "out of memory");
	}
	pthread_mutex_init(&j->j_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&j->j_thread_cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	pthread_cond_init(&j->j_wait_cv, NULL);
	pthread_cond_init(&j->j_updates_cv, NULL);
	pthread_cond_init(&j->j_done_cv, NULL);
	TAILQ_INIT(&j->j_cplist);
	j->j_start = fs->s_sb.journal_start;
	j->j_blocks = fs->s_sb.journal_blocks;
	j->j_logsize = j->j_blocks - 1;
	j->j_max_txn = j->j_logsize / 4;
	if (j->j_max_txn > 8192)
		j->j_max_txn = 8192;
	fs->s_journal = j;

	error = blockdev_pread(fs->s_bdev, js, FLYFS_BLOCK_SIZE,
	    fs_blk_off(j->j_start));
	if (error) {
		error = flyfs_error(err, errlen, error, "cannot read the "
		    "journal superblock (block %" PRIu64 "): %s", j->j_start,
		    strerror(error));
		goto out;
	}
	error = flyfs_mblock_check(js, FLYFS_MB_JSUPER, j->j_start,
	    fs->s_seed, why, sizeof(why));
	if (error) {
		error = flyfs_error(err, errlen, EUCLEAN, "journal superblock: "
		    "%s; run fsck.flyfs", why);
		goto out;
	}
	if (le64_get(js->js_blocks) != j->j_blocks ||
	    le64_get(js->js_first) != 1 ||
	    le32_get(js->js_block_size) != FLYFS_BLOCK_SIZE ||
	    memcmp(js->js_uuid, fs->s_sb.uuid, FLYFS_UUID_SIZE) != 0 ||
	    le64_get(js->js_start) >= j->j_blocks ||
	    le64_get(js->js_sequence) == 0) {
		error = flyfs_error(err, errlen, EUCLEAN, "journal superblock "
		    "(block %" PRIu64 ") does not match the filesystem; run "
		    "fsck.flyfs", j->j_start);
		goto out;
	}
	j->j_tail = le64_get(js->js_start);
	j->j_tail_tid = le64_get(js->js_sequence);
	j->j_next_tid = j->j_tail_tid;
	j->j_committed_tid = j->j_next_tid - 1;
	j->j_head = j->j_tail ? j->j_tail : 1;
out:
	blockdev_free_buf(js);
	return error;
}

void
fs_journal_close(struct flyfs *fs)
{
	struct fs_journal *j = fs->s_journal;
	struct fs_txn *t;

	if (j == NULL)
		return;
	while ((t = TAILQ_FIRST(&j->j_cplist)) != NULL) {
		TAILQ_REMOVE(&j->j_cplist, t, t_cplink);
		txn_free(t);
	}
	if (j->j_running)
		txn_free(j->j_running);
	for (uint64_t i = 0; i < J_HASH_SIZE; i++) {
		struct jblock *jb, *nx;

		for (jb = j->j_hash[i]; jb; jb = nx) {
			nx = jb->jb_hnext;
			free(jb);
		}
	}
	free(j->j_hash);
	pthread_mutex_destroy(&j->j_lock);
	pthread_cond_destroy(&j->j_wait_cv);
	pthread_cond_destroy(&j->j_updates_cv);
	pthread_cond_destroy(&j->j_done_cv);
	pthread_cond_destroy(&j->j_thread_cv);
	free(j);
	fs->s_journal = NULL;
}

/* ---- Replay ------------------------------------------------------------- */

static int
replay_write(void *arg, uint64_t home, const void *block)
{
	struct flyfs *fs = arg;
	int error;

	error = blockdev_pwrite(fs->s_bdev, block, FLYFS_BLOCK_SIZE,
	    fs_blk_off(home));
	if (error == 0)
		FS_COUNT(fs, replay_blocks, 1);
	return error;
}

/*
 * Mount-time replay, before the cache holds any block of the image: the
 * log is read by journal_scan.c (the same reader fsck uses), the newest
 * copy of each block is written home, a barrier, then the log is marked
 * empty.  A committed transaction that is damaged refuses the mount
 * (EUCLEAN): only fsck may decide to drop it.
 */
int
fs_journal_replay(struct flyfs *fs, char *err, size_t errlen)
{
	struct fs_journal *j = fs->s_journal;
	struct fs_jscan_geom g = {
		.start = j->j_start, .blocks = j->j_blocks, .first = 1,
		.fs_blocks = fs->s_sb.block_count, .seed = fs->s_seed,
	};
	struct fs_jscan s = { 0 };
	void *buf = NULL;
	int error;

	if (j->j_tail == 0)
		return 0;		/* empty log */
	error = fs_jscan_run(fs->s_bdev, &g, j->j_tail, j->j_tail_tid, &s,
	    err, errlen);
	if (error) {
		if (error == EUCLEAN) {
			size_t l = strlen(err);

			snprintf(err + l, errlen > l ? errlen - l : 0,
			    "; refusing to replay: run fsck.flyfs");
		}
		goto out;
	}
	if (s.txns > 0 && fs->s_readonly) {
		error = flyfs_error(err, errlen, EROFS, "the journal holds %"
		    PRIu64 " committed transactions to replay; mount "
		    "read-write (or run fsck.flyfs) first", s.txns);
		goto out;
	}
	if ((buf = blockdev_alloc_buf(fs->s_bdev, FLYFS_BLOCK_SIZE)) == NULL) {
		error = flyfs_error(err, errlen, ENOMEM, "out of memory");
		goto out;
	}
	error = fs_jscan_replay(fs->s_bdev, fs->s_seed, &s, buf, replay_write,
	    fs);
	if (error) {
		flyfs_error(err, errlen, error, "journal replay failed: %s",
		    strerror(error));
		goto out;
	}
	FS_COUNT(fs, replay_txns, s.txns);
	if (fs->s_readonly)
		goto out;
	if ((error = blockdev_flush(fs->s_bdev)) != 0)
		goto out;
	/*
	 * Skip one sequence number: the first new transaction must never
	 * share its number with the uncommitted leftovers of the last one.
	 */
	j->j_next_tid = s.next_seq + 1;
	j->j_committed_tid = j->j_next_tid - 1;
	j->j_head = s.end;
	j->j_tail = 0;
	j->j_tail_tid = j->j_next_tid;
	j->j_replayed_tid = s.txns ? s.next_seq - 1 : 0;
	error = jsb_write(fs, 0, j->j_next_tid);
	if (error)
		flyfs_error(err, errlen, error, "cannot write the journal "
		    "superblock after replay: %s", strerror(error));
out:
	fs_jscan_free(&s);
	blockdev_free_buf(buf);
	return error;
}

/* ---- Handles ------------------------------------------------------------ */

static struct fs_txn *
txn_new(struct fs_journal *j)
{
	struct fs_txn *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->t_tid = j->j_next_tid++;
	t->t_state = T_RUNNING;
	return t;
}

/*
 * Would the running transaction, grown by N credits, still fit with KEEP
 * log blocks to spare?  (j)
 */
static bool
space_ok(struct fs_journal *j, uint64_t n, uint64_t keep)
{
	struct fs_txn *t = j->j_running;
	uint64_t credits = n, nrev = 0;

	if (t) {
		credits += t->t_credits;
		nrev = t->t_nrevoke;
	}
	return j->j_used + log_len(credits, nrev + 8) + keep <= j->j_logsize;
}

int
fs_trans_begin(struct flyfs *fs, unsigned nblocks, struct fs_trans **txp)
{
	struct fs_journal *j = fs->s_journal;
	struct fs_trans *h = cur_handle;
	struct fs_txn *t;

	*txp = NULL;
	if (fs->s_readonly)
		return EROFS;
	if (nblocks > FS_TRANS_MAX_BLOCKS)
		return EINVAL;
	if (h != NULL && h->t_fs == fs) {
		/*
		 * Nested: never wait, the transaction cannot close.  The
		 * outer begins kept J_NEST_RESERVE for this; past it, fail
		 * rather than promise log space that is not there.
		 */
		pthread_mutex_lock(&j->j_lock);
		if (!space_ok(j, nblocks, J_MARGIN)) {
			pthread_mutex_unlock(&j->j_lock);
			return ENOSPC;
		}
		h->t_nest++;
		h->t_reserved += nblocks;
		h->t_txn->t_credits += nblocks;
		pthread_mutex_unlock(&j->j_lock);
		*txp = h;
		return 0;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL)
		return ENOMEM;
	pthread_mutex_lock(&j->j_lock);
	for (;;) {
		t = j->j_running;
		if (j->j_aborted) {
			pthread_mutex_unlock(&j->j_lock);
			free(h);
			return EIO;
		}
		if (t != NULL && t->t_state != T_RUNNING) {
			pthread_cond_wait(&j->j_wait_cv, &j->j_lock);
			continue;
		}
		if (t != NULL && t->t_nblocks > 0 &&
		    (t->t_credits + nblocks > j->j_max_txn ||
		    (long)t->t_nblocks * FLYFS_BLOCK_SIZE > hibufspace / 2)) {
			/* Too big: let it commit first (back-pressure). */
			if (j->j_commit_request < t->t_tid)
				j->j_commit_request = t->t_tid;
			kick_locked(j);
			pthread_cond_wait(&j->j_wait_cv, &j->j_lock);
			continue;
		}
		if (!space_ok(j, nblocks, J_MARGIN + J_NEST_RESERVE)) {
			j->j_need_space = true;
			kick_locked(j);
			pthread_cond_wait(&j->j_wait_cv, &j->j_lock);
			continue;
		}
		break;
	}
	if (t == NULL) {
		t = j->j_running = txn_new(j);
		if (t == NULL) {
			pthread_mutex_unlock(&j->j_lock);
			free(h);
			return ENOMEM;
		}
	}
	t->t_updates++;
	t->t_credits += nblocks;
	pthread_mutex_unlock(&j->j_lock);
	h->t_fs = fs;
	h->t_txn = t;
	h->t_nest = 1;
	h->t_reserved = nblocks;
	cur_handle = h;
	*txp = h;
	return 0;
}

void
fs_trans_set_sync(struct fs_trans *tx)
{
	tx->t_sync = true;
}

void
fs_trans_set_error(struct fs_trans *tx, int error)
{
	if (tx->t_error == 0)
		tx->t_error = error;
}

int
fs_trans_finish(struct fs_trans *tx, int error)
{
	int e2;

	if (error != 0)
		fs_trans_set_error(tx, error);
	e2 = fs_trans_end(tx);
	return error != 0 ? error : e2;
}

uint64_t
fs_trans_tid(const struct fs_trans *tx)
{
	return tx->t_txn->t_tid;
}

int
fs_trans_end(struct fs_trans *tx)
{
	struct flyfs *fs = tx->t_fs;
	struct fs_journal *j = fs->s_journal;
	struct fs_txn *t = tx->t_txn;
	uint64_t tid = t->t_tid;
	int error = tx->t_error;

	if (--tx->t_nest > 0)
		return 0;
	pthread_mutex_lock(&j->j_lock);
	if (tx->t_reserved > tx->t_used) {
		uint64_t unused = tx->t_reserved - tx->t_used;

		t->t_credits = t->t_credits > unused ? t->t_credits - unused : 0;
	}
	if (--t->t_updates == 0)
		pthread_cond_broadcast(&j->j_updates_cv);
	pthread_mutex_unlock(&j->j_lock);
	cur_handle = NULL;
	if (tx->t_sync) {
		int e = fs_journal_commit_wait(fs, tid);

		if (error == 0)
			error = e;
	}
	free(tx);
	return error;
}

static void
trans_dirty(struct fs_trans *tx, struct buf *bp, bool raw)
{
	struct flyfs *fs = tx->t_fs;
	struct fs_journal *j = fs->s_journal;
	struct fs_txn *t = tx->t_txn;
	uint64_t blk = (uint64_t)bp->b_loffset >> FLYFS_BLOCK_SHIFT;
	struct jblock *jb;

	KKASSERT(bp->b_vp == &fs->devvp);
	KKASSERT(BUF_LOCKINUSE(bp));
	bp->b_flags |= B_LOCKED;
	pthread_mutex_lock(&j->j_lock);
	jb = jb_get(j, blk);
	if (jb == NULL) {
		fs_trans_set_error(tx, ENOMEM);
		journal_abort_locked(fs, ENOMEM);
		pthread_mutex_unlock(&j->j_lock);
		return;
	}
	if (jb->jb_run != t) {
		KASSERT(jb->jb_run == NULL, ("block %" PRIu64 " in two "
		    "running transactions", blk));
		if (!grow((void **)&t->t_blocks, &t->t_cap, t->t_nblocks + 1,
		    sizeof(*t->t_blocks))) {
			fs_trans_set_error(tx, ENOMEM);
			journal_abort_locked(fs, ENOMEM);
			pthread_mutex_unlock(&j->j_lock);
			return;
		}
		jb->jb_run = t;
		jb->jb_run_idx = t->t_nblocks;
		jb->jb_raw = raw;
		t->t_blocks[t->t_nblocks++] = jb;
		if (++tx->t_used > tx->t_reserved) {
			/* Over its reservation: a caller bug, kept safe by
			 * J_MARGIN as long as it is small. */
			tx->t_reserved++;
			t->t_credits++;
		}
		if ((long)t->t_nblocks * FLYFS_BLOCK_SIZE > hibufspace / 4 &&
		    !j->j_kick) {
			FS_COUNT(fs, commits_early, 1);
			kick_locked(j);
		}
	}
	pthread_mutex_unlock(&j->j_lock);
}

void
fs_trans_dirty(struct fs_trans *tx, struct buf *bp)
{
	trans_dirty(tx, bp, false);
}

void
fs_trans_dirty_raw(struct fs_trans *tx, struct buf *bp)
{
	trans_dirty(tx, bp, true);
}

void
fs_trans_ordered_bio(struct fs_trans *tx, struct bio *bio)
{
	bio_start_transaction(bio, &tx->t_txn->t_ordered);
}

int
fs_journal_add_busy(struct fs_trans *tx, uint64_t blk, uint64_t n)
{
	struct fs_journal *j = tx->t_fs->s_journal;
	struct fs_txn *t = tx->t_txn;
	int error = 0;

	pthread_mutex_lock(&j->j_lock);
	if (t->t_nbusy > 0 &&
	    t->t_busy[t->t_nbusy - 1].blk + t->t_busy[t->t_nbusy - 1].n == blk)
		t->t_busy[t->t_nbusy - 1].n += n;
	else if (grow((void **)&t->t_busy, &t->t_bcap, t->t_nbusy + 1,
	    sizeof(*t->t_busy)))
		t->t_busy[t->t_nbusy++] = (struct fs_brange){ blk, n };
	else
		error = ENOMEM;
	pthread_mutex_unlock(&j->j_lock);
	return error;
}

int
fs_journal_revoke(struct fs_trans *tx, uint64_t blk)
{
	struct flyfs *fs = tx->t_fs;
	struct fs_journal *j = fs->s_journal;
	struct fs_txn *t = tx->t_txn;
	struct jblock *jb;
	struct buf *bp;
	int error = 0;

	/*
	 * Keep the freed block's buffer from being written home from now
	 * on: after the commit the block may belong to file data.
	 */
	bp = findblk(&fs->devvp, fs_blk_off(blk), 0);
	if (bp != NULL) {
		bremfree(bp);
		bp->b_flags |= B_LOCKED;
	}
	pthread_mutex_lock(&j->j_lock);
	jb = jb_get(j, blk);
	if (jb == NULL ||
	    !grow((void **)&t->t_revoke, &t->t_rcap, t->t_nrevoke + 1,
	    sizeof(*t->t_revoke))) {
		error = ENOMEM;
		journal_abort_locked(fs, ENOMEM);
	} else {
		if (jb->jb_run == t) {
			t->t_blocks[jb->jb_run_idx] = NULL;
			jb->jb_run = NULL;
		}
		jb->jb_freed_by = t;
		t->t_revoke[t->t_nrevoke++] = blk;
	}
	pthread_mutex_unlock(&j->j_lock);
	if (bp != NULL)
		bqrelse(bp);
	return error;
}

/* ---- Commit ------------------------------------------------------------- */

/*
 * Write transaction T's log: descriptors with the frozen copies after
 * them, revoke blocks, barrier, commit block, barrier.
 */
static int
commit_log(struct flyfs *fs, struct fs_txn *t, char *frozen,
    struct jblock **live, uint32_t nlive)
{
	struct fs_journal *j = fs->s_journal;
	uint64_t ndesc = nlive == 0 ? 1 :
	    (nlive + FLYFS_JTAGS_PER_DESC - 1) / FLYFS_JTAGS_PER_DESC;
	uint64_t nrevb = (t->t_nrevoke + FLYFS_JREVOKES_PER_BLOCK - 1) /
	    FLYFS_JREVOKES_PER_BLOCK;
	uint64_t nctl = ndesc + nrevb + 1, nio = t->t_log_len - 1;
	struct iovec *iov = NULL;
	uint64_t *blks = NULL;
	char *ctl;
	uint64_t pos = t->t_log_start, k = 0;
	uint32_t b = 0;
	struct timespec now;
	int error;

	ctl = blockdev_alloc_buf(fs->s_bdev, nctl * FLYFS_BLOCK_SIZE);
	iov = calloc(t->t_log_len, sizeof(*iov));
	blks = calloc(t->t_log_len, sizeof(*blks));
	if (ctl == NULL || iov == NULL || blks == NULL) {
		error = ENOMEM;
		goto out;
	}
	memset(ctl, 0, nctl * FLYFS_BLOCK_SIZE);
	for (uint64_t d = 0; d < ndesc; d++) {
		struct flyfs_journal_desc *jd =
		    (void *)(ctl + d * FLYFS_BLOCK_SIZE);
		uint64_t dpos = pos;
		uint32_t cnt = 0;

		iov[k].iov_base = jd;
		iov[k].iov_len = FLYFS_BLOCK_SIZE;
		blks[k++] = j->j_start + pos;
		pos = rel_next(j, pos, 1);
		for (; b < nlive && cnt < FLYFS_JTAGS_PER_DESC; b++, cnt++) {
			char *data = frozen + (size_t)b * FLYFS_BLOCK_SIZE;
			struct flyfs_journal_tag *tag = &jd->jd_tag[cnt];
			uint32_t flags;

			/* The escape rule: journal_scan.c, format.md 11. */
			flags = fs_jscan_escape(data);
			le64_set(&tag->jt_blocknr, live[b]->jb_blk);
			le32_set(&tag->jt_crc, flyfs_crc32c(fs->s_seed, data,
			    FLYFS_BLOCK_SIZE));
			le32_set(&tag->jt_flags, flags);
			iov[k].iov_base = data;
			iov[k].iov_len = FLYFS_BLOCK_SIZE;
			blks[k++] = j->j_start + pos;
			pos = rel_next(j, pos, 1);
		}
		if (cnt > 0) {
			uint32_t f = le32_get(jd->jd_tag[cnt - 1].jt_flags);

			le32_set(&jd->jd_tag[cnt - 1].jt_flags,
			    f | FLYFS_JTAG_LAST);
		}
		le32_set(&jd->jd_count, cnt);
		flyfs_mblock_seal(jd, FLYFS_MB_JDESC, j->j_start + dpos,
		    t->t_tid, 0, fs->s_seed);
	}
	for (uint64_t r = 0; r < nrevb; r++) {
		struct flyfs_journal_revoke *jr =
		    (void *)(ctl + (ndesc + r) * FLYFS_BLOCK_SIZE);
		uint32_t cnt = 0;

		for (uint64_t i = r * FLYFS_JREVOKES_PER_BLOCK;
		    i < t->t_nrevoke && cnt < FLYFS_JREVOKES_PER_BLOCK;
		    i++, cnt++)
			le64_set(&jr->jr_blocknr[cnt], t->t_revoke[i]);
		le32_set(&jr->jr_count, cnt);
		flyfs_mblock_seal(jr, FLYFS_MB_JREVOKE, j->j_start + pos,
		    t->t_tid, 0, fs->s_seed);
		iov[k].iov_base = jr;
		iov[k].iov_len = FLYFS_BLOCK_SIZE;
		blks[k++] = j->j_start + pos;
		pos = rel_next(j, pos, 1);
	}
	KKASSERT(k == nio);
	error = write_blocks_vec(fs->s_bdev, iov, blks, nio);
	if (error == 0)
		error = blockdev_flush(fs->s_bdev);
	if (error)
		goto out;
	{
		struct flyfs_journal_commit *jc =
		    (void *)(ctl + (nctl - 1) * FLYFS_BLOCK_SIZE);

		fs_now(&now);
		le64_set(&jc->jc_sec, (uint64_t)now.tv_sec);
		le32_set(&jc->jc_nsec, (uint32_t)now.tv_nsec);
		le32_set(&jc->jc_blocks, (uint32_t)t->t_log_len);
		flyfs_mblock_seal(jc, FLYFS_MB_JCOMMIT, j->j_start + pos,
		    t->t_tid, 0, fs->s_seed);
		error = blockdev_pwrite(fs->s_bdev, jc, FLYFS_BLOCK_SIZE,
		    fs_blk_off(j->j_start + pos));
	}
	if (error == 0)
		error = blockdev_flush(fs->s_bdev);
out:
	blockdev_free_buf(ctl);
	free(iov);
	free(blks);
	return error;
}

/*
 * Commit the running transaction.  Called on the commit thread with
 * j_lock held; drops it while waiting and doing I/O; returns with it.
 */
static void
commit_running(struct flyfs *fs)
{
	struct fs_journal *j = fs->s_journal;
	struct fs_txn *t = j->j_running;
	struct jblock **live = NULL;
	char *frozen = NULL;
	uint32_t nlive = 0;
	int error = 0;

	t->t_state = T_LOCKED;
	while (t->t_updates > 0 && !j->j_aborted)
		pthread_cond_wait(&j->j_updates_cv, &j->j_lock);
	if (j->j_aborted)
		return;
	live = malloc((t->t_nblocks ? t->t_nblocks : 1) * sizeof(*live));
	if (live == NULL) {
		journal_abort_locked(fs, ENOMEM);
		return;
	}
	for (uint32_t i = 0; i < t->t_nblocks; i++)
		if (t->t_blocks[i] != NULL)
			live[nlive++] = t->t_blocks[i];
	pthread_mutex_unlock(&j->j_lock);

	/* Snapshot: seal and copy every block under its buffer lock. */
	frozen = blockdev_alloc_buf(fs->s_bdev,
	    (size_t)(nlive ? nlive : 1) * FLYFS_BLOCK_SIZE);
	if (frozen == NULL)
		error = ENOMEM;
	for (uint32_t i = 0; i < nlive && error == 0; i++) {
		struct jblock *jb = live[i];
		struct buf *bp = getblk(&fs->devvp, fs_blk_off(jb->jb_blk),
		    FLYFS_BLOCK_SIZE, 0, 0);

		if ((bp->b_flags & B_CACHE) == 0) {
			fprintf(stderr, "flyfs: journal: block %" PRIu64
			    " of transaction %" PRIu64 " left the cache\n",
			    jb->jb_blk, t->t_tid);
			bp->b_flags |= B_INVAL;
			brelse(bp);
			error = EIO;
			break;
		}
		if (!jb->jb_raw) {
			struct flyfs_mblock_hdr *h = (void *)bp->b_data;

			le64_set(&h->mb_txid, t->t_tid);
			le32_set(&h->mb_crc, flyfs_mblock_csum(bp->b_data,
			    fs->s_seed));
		}
		memcpy(frozen + (size_t)i * FLYFS_BLOCK_SIZE, bp->b_data,
		    FLYFS_BLOCK_SIZE);
		bqrelse(bp);
	}

	pthread_mutex_lock(&j->j_lock);
	if (error) {
		journal_abort_locked(fs, error);
		goto out;
	}
	for (uint32_t i = 0; i < nlive; i++) {
		live[i]->jb_run = NULL;
		live[i]->jb_commit = t;
	}
	t->t_log_len = log_len(nlive, t->t_nrevoke);
	t->t_log_start = j->j_head;
	j->j_head = rel_next(j, j->j_head, t->t_log_len);
	j->j_used += t->t_log_len;
	KKASSERT(j->j_used <= j->j_logsize);
	t->t_state = T_COMMITTING;
	j->j_committing = t;
	j->j_running = NULL;
	pthread_cond_broadcast(&j->j_wait_cv);
	pthread_mutex_unlock(&j->j_lock);

	/* Ordered mode: the data this metadata points to goes first. */
	bio_track_wait(&t->t_ordered, 0, 0);
	error = commit_log(fs, t, frozen, live, nlive);

	pthread_mutex_lock(&j->j_lock);
	j->j_committing = NULL;
	if (error) {
		journal_abort_locked(fs, error);
		goto out;
	}
	FS_COUNT(fs, commits, 1);
	FS_COUNT(fs, commit_blocks, nlive);
	FS_COUNT(fs, commit_log_blocks, t->t_log_len);
	j->j_committed_tid = t->t_tid;
	t->t_state = T_COMMITTED;
	for (uint32_t i = 0; i < nlive; i++) {
		struct jblock *jb = live[i];

		jb->jb_commit = NULL;
		if (jb->jb_cp)
			jb->jb_cp->t_cp_count--;
		jb->jb_cp = t;
		t->t_cp_count++;
	}
	/* Blocks this transaction freed: their old log copies are dead. */
	for (uint32_t i = 0; i < t->t_nrevoke; i++) {
		struct jblock *jb = jb_lookup(j, t->t_revoke[i]);

		if (jb == NULL || jb->jb_freed_by != t)
			continue;
		if (jb->jb_cp) {
			jb->jb_cp->t_cp_count--;
			jb->jb_cp = NULL;
		}
	}
	TAILQ_INSERT_TAIL(&j->j_cplist, t, t_cplink);
	pthread_mutex_unlock(&j->j_lock);

	fs_alloc_busy_done(fs, t->t_busy, t->t_nbusy);

	/* Freed blocks: discard their buffers for good. */
	for (uint32_t i = 0; i < t->t_nrevoke; i++) {
		struct buf *bp = findblk(&fs->devvp,
		    fs_blk_off(t->t_revoke[i]), 0);
		struct jblock *jb;

		pthread_mutex_lock(&j->j_lock);
		jb = jb_lookup(j, t->t_revoke[i]);
		if (jb != NULL && jb->jb_freed_by == t) {
			jb->jb_freed_by = NULL;
			if (bp != NULL && jb->jb_run == NULL) {
				bremfree(bp);
				bp->b_flags &= ~B_LOCKED;
				if (bp->b_flags & B_DELWRI)
					bundirty(bp);
				bp->b_flags |= B_INVAL | B_NOCACHE;
				brelse(bp);
				bp = NULL;
			}
			jb_maybe_free(j, jb);
		}
		pthread_mutex_unlock(&j->j_lock);
		if (bp != NULL)
			BUF_UNLOCK(bp);
	}

	/* Release the logged buffers to the DIRTY queue: checkpointing. */
	for (uint32_t i = 0; i < nlive; i++) {
		struct jblock *jb = live[i];
		struct buf *bp = getblk(&fs->devvp, fs_blk_off(jb->jb_blk),
		    FLYFS_BLOCK_SIZE, 0, 0);
		bool keep;

		pthread_mutex_lock(&j->j_lock);
		keep = jb->jb_run != NULL || jb->jb_freed_by != NULL;
		pthread_mutex_unlock(&j->j_lock);
		if ((bp->b_flags & B_CACHE) == 0) {
			bp->b_flags |= B_INVAL;
			brelse(bp);
		} else if (!keep) {
			bp->b_flags &= ~B_LOCKED;
			bdirty(bp);
			bqrelse(bp);
		} else {
			bqrelse(bp);
		}
	}
	pthread_mutex_lock(&j->j_lock);
out:
	clock_gettime(CLOCK_MONOTONIC, &j->j_last_commit);
	pthread_cond_broadcast(&j->j_done_cv);
	pthread_cond_broadcast(&j->j_wait_cv);
	free(live);
	blockdev_free_buf(frozen);
}

/*
 * Checkpoint: write every committed buffer home, barrier, free the log
 * space of transactions whose blocks are all home, record the new tail.
 * Commit thread, j_lock held on entry and exit.
 */
static void
checkpoint(struct flyfs *fs)
{
	struct fs_journal *j = fs->s_journal;
	uint64_t *blks = NULL, n = 0, cap = 0;
	bool *done = NULL;
	uint64_t tail, tail_tid;
	struct fs_txn *t;
	int error;

	if (TAILQ_EMPTY(&j->j_cplist) && j->j_tail != 0 &&
	    j->j_tail == j->j_head)
		return;
	FS_COUNT(fs, checkpoints, 1);
	for (uint64_t i = 0; i < J_HASH_SIZE; i++) {
		for (struct jblock *jb = j->j_hash[i]; jb; jb = jb->jb_hnext) {
			if (jb->jb_cp == NULL || jb->jb_freed_by != NULL)
				continue;
			if (n == cap) {
				uint64_t *nb;

				cap = cap ? cap * 2 : 256;
				nb = realloc(blks, cap * sizeof(*blks));
				if (nb == NULL) {
					journal_abort_locked(fs, ENOMEM);
					free(blks);
					return;
				}
				blks = nb;
			}
			blks[n++] = jb->jb_blk;
		}
	}
	pthread_mutex_unlock(&j->j_lock);

	done = calloc(n ? n : 1, sizeof(*done));
	error = done ? vfsync(&fs->devvp, MNT_WAIT) : ENOMEM;
	for (uint64_t i = 0; i < n && error == 0; i++) {
		struct buf *bp = findblk(&fs->devvp, fs_blk_off(blks[i]), 0);

		if (bp == NULL) {
			done[i] = true;		/* written, then recycled */
			continue;
		}
		done[i] = (bp->b_flags & (B_DELWRI | B_LOCKED)) == 0;
		BUF_UNLOCK(bp);
	}
	FS_COUNT(fs, checkpoint_writes, n);
	if (error == 0)
		error = blockdev_flush(fs->s_bdev);

	pthread_mutex_lock(&j->j_lock);
	if (error) {
		journal_abort_locked(fs, error);
		goto out;
	}
	for (uint64_t i = 0; i < n; i++) {
		struct jblock *jb;

		if (!done[i] || (jb = jb_lookup(j, blks[i])) == NULL ||
		    jb->jb_cp == NULL || jb->jb_freed_by != NULL)
			continue;
		jb->jb_cp->t_cp_count--;
		jb->jb_cp = NULL;
		jb_maybe_free(j, jb);
	}
	while ((t = TAILQ_FIRST(&j->j_cplist)) != NULL && t->t_cp_count == 0) {
		TAILQ_REMOVE(&j->j_cplist, t, t_cplink);
		j->j_used -= t->t_log_len;
		txn_free(t);
	}
	if ((t = TAILQ_FIRST(&j->j_cplist)) != NULL) {
		tail = t->t_log_start;
		tail_tid = t->t_tid;
	} else {
		tail = j->j_head;
		tail_tid = j->j_committed_tid + 1;
		KKASSERT(j->j_used == 0);
	}
	if (tail != j->j_tail || tail_tid != j->j_tail_tid) {
		pthread_mutex_unlock(&j->j_lock);
		error = jsb_write(fs, tail, tail_tid);
		pthread_mutex_lock(&j->j_lock);
		if (error)
			journal_abort_locked(fs, error);
		j->j_tail = tail;
		j->j_tail_tid = tail_tid;
	}
out:
	pthread_cond_broadcast(&j->j_wait_cv);
	free(blks);
	free(done);
}

static bool
running_nonempty(const struct fs_journal *j)
{
	return j->j_running != NULL &&
	    (j->j_running->t_nblocks > 0 || j->j_running->t_nrevoke > 0);
}

static void *
commit_thread(void *arg)
{
	struct flyfs *fs = arg;
	struct fs_journal *j = fs->s_journal;
	struct timespec deadline, now;

	pthread_mutex_lock(&j->j_lock);
	clock_gettime(CLOCK_MONOTONIC, &j->j_last_commit);
	while (!j->j_stop) {
		deadline = j->j_last_commit;
		deadline.tv_sec += fs->s_commit_interval;
		while (!j->j_kick && !j->j_stop) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec > deadline.tv_sec ||
			    (now.tv_sec == deadline.tv_sec &&
			    now.tv_nsec >= deadline.tv_nsec))
				break;
			pthread_cond_timedwait(&j->j_thread_cv, &j->j_lock,
			    &deadline);
		}
		j->j_kick = false;
		if (j->j_stop || j->j_aborted)
			break;
		if (running_nonempty(j))
			commit_running(fs);
		else
			clock_gettime(CLOCK_MONOTONIC, &j->j_last_commit);
		if (!j->j_aborted &&
		    (j->j_need_space || j->j_used > j->j_logsize / 2)) {
			checkpoint(fs);
			j->j_need_space = false;
		}
		pthread_cond_broadcast(&j->j_done_cv);
		pthread_cond_broadcast(&j->j_wait_cv);
	}
	pthread_mutex_unlock(&j->j_lock);
	return NULL;
}

int
fs_journal_start(struct flyfs *fs)
{
	struct fs_journal *j = fs->s_journal;
	int error;

	if (fs->s_readonly)
		return 0;
	/* The log is live from the head on. */
	j->j_tail = j->j_head;
	j->j_tail_tid = j->j_next_tid;
	if ((error = jsb_write(fs, j->j_tail, j->j_tail_tid)) != 0)
		return error;
	error = pthread_create(&j->j_thread, NULL, commit_thread, fs);
	if (error)
		return error;
	j->j_thread_running = true;
	return 0;
}

int
fs_journal_commit_wait(struct flyfs *fs, uint64_t tid)
{
	struct fs_journal *j = fs->s_journal;
	int error;

	if (!j->j_thread_running)
		return fs->s_readonly ? 0 : EIO;
	pthread_mutex_lock(&j->j_lock);
	while (j->j_committed_tid < tid && !j->j_aborted) {
		struct fs_txn *t = j->j_running;

		if (j->j_committing == NULL &&
		    (t == NULL || t->t_tid > tid))
			break;		/* nothing of TID left to write */
		if (t != NULL && t->t_tid == tid && j->j_committing == NULL &&
		    !running_nonempty(j))
			break;		/* empty: nothing to make durable */
		if (j->j_commit_request < tid)
			j->j_commit_request = tid;
		kick_locked(j);
		pthread_cond_wait(&j->j_done_cv, &j->j_lock);
	}
	error = j->j_aborted ? (j->j_errno ? j->j_errno : EIO) : 0;
	pthread_mutex_unlock(&j->j_lock);
	return error;
}

/*
 * The newest transaction holding anything: the running one if it is not
 * empty (then *RUNNING, if given, is set true), else the one committing,
 * else the last committed.
 */
static uint64_t
newest_tid(struct fs_journal *j, bool *running)
{
	uint64_t tid;
	bool run;

	pthread_mutex_lock(&j->j_lock);
	run = running_nonempty(j);
	if (running != NULL)
		*running = run;
	if (run)
		tid = j->j_running->t_tid;
	else if (j->j_committing)
		tid = j->j_committing->t_tid;
	else
		tid = j->j_committed_tid;
	pthread_mutex_unlock(&j->j_lock);
	return tid;
}

int
fs_journal_commit_all(struct flyfs *fs)
{
	return fs_journal_commit_wait(fs, newest_tid(fs->s_journal, NULL));
}

int
fs_journal_sync(struct flyfs *fs)
{
	bool commit;
	int error;

	if (fs->s_readonly)
		return 0;
	error = fs_journal_commit_wait(fs, newest_tid(fs->s_journal,
	    &commit));
	/*
	 * Nothing to commit (data overwritten in place, times within the
	 * same second), or only a commit that began before the caller's
	 * writes completed: no barrier of the journal's is known to come
	 * after them, so issue one.
	 */
	if (error == 0 && !commit)
		error = blockdev_flush(fs->s_bdev);
	return error;
}

static void
stop_thread(struct fs_journal *j)
{
	if (!j->j_thread_running)
		return;
	pthread_mutex_lock(&j->j_lock);
	j->j_stop = true;
	pthread_cond_signal(&j->j_thread_cv);
	pthread_mutex_unlock(&j->j_lock);
	pthread_join(j->j_thread, NULL);
	j->j_thread_running = false;
}

int
fs_journal_shutdown(struct flyfs *fs)
{
	struct fs_journal *j = fs->s_journal;
	int error;

	error = fs_journal_commit_all(fs);
	stop_thread(j);
	pthread_mutex_lock(&j->j_lock);
	if (!j->j_aborted) {
		/* Everything committed: a checkpoint empties the log. */
		checkpoint(fs);
		if (!TAILQ_EMPTY(&j->j_cplist) && !j->j_aborted) {
			fprintf(stderr, "flyfs: journal: %" PRIu64 " blocks "
			    "could not be checkpointed at unmount\n",
			    TAILQ_FIRST(&j->j_cplist)->t_cp_count);
			journal_abort_locked(fs, EIO);
		}
	}
	if (!j->j_aborted) {
		pthread_mutex_unlock(&j->j_lock);
		error = jsb_write(fs, 0, j->j_committed_tid + 1);
		pthread_mutex_lock(&j->j_lock);
	}
	if (error == 0 && j->j_aborted)
		error = j->j_errno ? j->j_errno : EIO;
	pthread_mutex_unlock(&j->j_lock);
	return error;
}

void
fs_journal_abandon(struct flyfs *fs)
{
	struct fs_journal *j = fs->s_journal;

	if (j == NULL)
		return;
	pthread_mutex_lock(&j->j_lock);
	j->j_stop = true;
	journal_abort_locked(fs, ESHUTDOWN);
	pthread_mutex_unlock(&j->j_lock);
	stop_thread(j);
	/* The abort was a simulation, not an error of the image. */
	__atomic_store_n(&fs->s_error, 0, __ATOMIC_RELAXED);
}

void
fs_journal_stats(struct flyfs *fs,
    void (*fn)(void *arg, const char *name, uint64_t value), void *arg)
{
	struct fs_journal *j = fs->s_journal;
	uint64_t used, running_blocks, committed, njb;

	pthread_mutex_lock(&j->j_lock);
	used = j->j_used;
	running_blocks = j->j_running ? j->j_running->t_nblocks : 0;
	committed = j->j_committed_tid;
	njb = j->j_njb;
	pthread_mutex_unlock(&j->j_lock);
	fn(arg, "journal_blocks", j->j_blocks);
	fn(arg, "journal_used", used);
	fn(arg, "journal_running_blocks", running_blocks);
	fn(arg, "journal_committed_tid", committed);
	fn(arg, "journal_tracked_blocks", njb);
}
