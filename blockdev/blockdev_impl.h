/*
 * blockdev_impl.h - state shared by the blockdev core (blockdev.c), its two
 * backends (blockdev_aio.c, blockdev_ram.c) and the test hooks
 * (blockdev_hooks.c).  Nothing outside blockdev/ includes it, except the
 * unit test, which reaches the alignment probe through it.
 *
 * Division of labour: the core validates and accepts requests, owns the
 * ring (the queue-depth limit), the barrier epochs, the soft-completion
 * queue and the counters; a backend only starts data transfers and syncs
 * and runs the one completion thread, which hands every finished request
 * back to the core through bd_complete() or bd_sync_done().
 *
 * Lock order: bd_lock -> h_lock.  w_lock (write log) and a backend's own
 * queue lock are leaves, never held together with bd_lock.
 */
#ifndef FLYFS_BLOCKDEV_IMPL_H
#define FLYFS_BLOCKDEV_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "blockdev/blockdev.h"

void bd_panic(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));

/* KKASSERT is always compiled; KASSERT only with -DINVARIANTS. */
#define KKASSERT(exp) do {						\
	if (__builtin_expect(!(exp), 0))				\
		bd_panic("assertion \"%s\" failed in %s at %s:%d",	\
		    #exp, __func__, __FILE__, __LINE__);		\
} while (0)
#ifdef INVARIANTS
#define KASSERT(exp, msg) do {						\
	if (__builtin_expect(!(exp), 0))				\
		bd_panic("%s: %s (%s:%d)", __func__, (msg),		\
		    __FILE__, __LINE__);				\
} while (0)
#else
#define KASSERT(exp, msg) do { } while (0)
#endif

/*
 * ThreadSanitizer cannot see that io_submit() and io_getevents() order the
 * submitter's stores before the completion thread's loads: the kernel is
 * the channel.  The aio backend tells it explicitly.
 */
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define BD_TSAN_RELEASE(p)	__tsan_release(p)
#define BD_TSAN_ACQUIRE(p)	__tsan_acquire(p)
#else
#define BD_TSAN_RELEASE(p)	do { (void)(p); } while (0)
#define BD_TSAN_ACQUIRE(p)	do { (void)(p); } while (0)
#endif

/* A FIFO of requests linked through r_next. */
struct bd_list {
	struct blockdev_req *l_head;
	struct blockdev_req *l_tail;
};

static inline void
bd_list_append(struct bd_list *l, struct blockdev_req *req)
{
	req->r_next = NULL;
	if (l->l_tail != NULL)
		l->l_tail->r_next = req;
	else
		l->l_head = req;
	l->l_tail = req;
}

static inline struct blockdev_req *
bd_list_pop(struct bd_list *l)
{
	struct blockdev_req *req = l->l_head;

	if (req != NULL) {
		l->l_head = req->r_next;
		if (l->l_head == NULL)
			l->l_tail = NULL;
		req->r_next = NULL;
	}
	return (req);
}

/* What the test hooks decided for a request when it was submitted. */
enum bd_verdict {
	BDV_PASS = 0,		/* goes to the device */
	BDV_FAIL,		/* completes with EIO, device untouched */
	BDV_DROP,		/* power cut: write reported done, not done */
	BDV_NOSYNC,		/* power cut: barrier keeps order, no sync */
};

/*
 * The core's part of a request's r_priv.  Written at submission under
 * bd_lock, read on the completion thread; the fields marked (m) are only
 * touched under bd_lock afterwards.
 */
struct bd_rcore {
	uint64_t rc_pending;		/* (m) FLUSH: writes of its epoch
					 * still outstanding */
	struct blockdev_req *rc_gnext;	/* (m) next barrier of a sync group */
	uint8_t rc_verdict;		/* enum bd_verdict */
	uint8_t rc_slot;		/* holds a ring slot */
	uint8_t rc_log;			/* write log was on at submission */
	uint8_t rc_sync_error;		/* softq entry is a failed sync group */
	uint8_t rc_own;			/* a waited read on the submitting
					 * thread's private context: completed
					 * there, holds no ring slot */
	int rc_error;			/* error for a failed sync group */
};
#define BD_RCORE_SIZE	32
#define BD_RBACK_SIZE	(sizeof(((struct blockdev_req *)0)->r_priv) - \
			    BD_RCORE_SIZE)
_Static_assert(sizeof(struct bd_rcore) <= BD_RCORE_SIZE,
    "struct bd_rcore outgrew its part of r_priv");

static inline struct bd_rcore *
bd_rcore(struct blockdev_req *req)
{
	return ((struct bd_rcore *)(void *)req->r_priv);
}

/* The backend's part of r_priv (BD_RBACK_SIZE bytes, 8-byte aligned). */
static inline void *
bd_rback(struct blockdev_req *req)
{
	return (req->r_priv + BD_RCORE_SIZE);
}

/* Backend operations; see the core's use of each in blockdev.c. */
struct bd_backend_ops {
	/*
	 * Start data request REQ, which holds a ring slot (or is a waited
	 * read, rc_own).  Called without locks, from any thread, and must not
	 * sleep for long.  The backend later calls bd_complete() for it on
	 * the completion thread (rc_own: on the submitting thread).
	 */
	void (*bo_submit)(struct blockdev *bd, struct blockdev_req *req);
	/*
	 * Make every write completed so far durable, then call
	 * bd_sync_done(bd, HEAD, error) on the completion thread.  HEAD is
	 * the first barrier of the group; its r_priv backend part is free for
	 * the backend's use.  Never more than one sync is outstanding.
	 */
	void (*bo_sync)(struct blockdev *bd, struct blockdev_req *head);
	/*
	 * Optional.  May the calling thread start one more waited read on
	 * its private context (BLOCKDEV_REQ_WAITED)?  Asked before REQ is
	 * accepted; if yes, bo_submit then starts REQ there (rc_own set) and
	 * the backend calls bd_complete() for it on this same thread, inside
	 * blockdev_reap_own().
	 */
	bool (*bo_own_ok)(struct blockdev *bd);
	/* Wake the completion thread so that it runs bd_run_softq(). */
	void (*bo_kick)(struct blockdev *bd);
	/*
	 * Nothing is in flight any more: stop and join the completion
	 * thread, release the backend's resources and bd_back.
	 */
	void (*bo_destroy)(struct blockdev *bd);
};

/* Counters behind struct blockdev_stats, all (a) relaxed atomics. */
struct bd_counters {
	_Atomic uint64_t c_reads, c_writes, c_flushes, c_syncs;
	_Atomic uint64_t c_read_bytes, c_write_bytes;
	_Atomic uint64_t c_errors, c_short_retries, c_ring_waits;
	_Atomic uint64_t c_own_reads;
	_Atomic uint64_t c_inflight, c_max_inflight;
	_Atomic uint64_t c_lat_total_ns;
	_Atomic uint64_t c_lat_hist[BLOCKDEV_LAT_BUCKETS];
};

/* One write-log record; e_data is owned by the log. */
struct bd_wlog_rec {
	enum blockdev_wlog_type w_type;
	off_t w_offset;
	size_t w_len;
	void *w_data;
};

/*
 * Test hooks.  h_lock protects the fault and power-cut state (h); h_on
 * lets the submission path skip h_lock when no hook is armed.  w_lock
 * protects the write log (w); w_on is read without it at submission.
 */
struct bd_hooks {
	pthread_mutex_t h_lock;
	atomic_bool h_on;		/* (a) a fault or power cut is armed */
	struct blockdev_fault h_fault;	/* (h) */
	uint64_t h_matched;		/* (h) COUNT: matching requests seen */
	uint64_t h_rng;			/* (h) RANDOM: generator state */
	int64_t h_pc_left;		/* (h) writes before the cut; -1 off */
	_Atomic uint64_t h_injected;	/* (a) requests failed by a fault */
	_Atomic uint64_t h_dropped;	/* (a) writes dropped by the cut */

	pthread_mutex_t w_lock;
	atomic_bool w_on;		/* (a) record requests submitted now */
	struct bd_wlog_rec *w_recs;	/* (w) */
	size_t w_count, w_cap;		/* (w) */
};

/*
 * The device.  (c) constant after open, (m) bd_lock, (a) atomic.
 */
struct blockdev {
	const struct bd_backend_ops *bd_ops;	/* (c) */
	void *bd_back;			/* (c) backend state */
	char *bd_path;			/* (c) "<ram>" for RAM */
	uint64_t bd_size;		/* (c) bytes */
	unsigned bd_align;		/* (c) offset, length and memory */
	unsigned bd_qdepth;		/* (c) ring slots */
	bool bd_readonly;		/* (c) */
	bool bd_buffered;		/* (c) o_allow_buffered fallback */

	pthread_mutex_t bd_lock;
	pthread_cond_t bd_ring_cv;	/* "bdring": submitters, ring full */
	pthread_cond_t bd_drain_cv;	/* "bddrain": blockdev_close() */
	unsigned bd_inflight;		/* (m) data requests holding a slot */
	unsigned bd_own_inflight;	/* (m) waited reads on private contexts */
	unsigned bd_ring_sleepers;	/* (m) submitters asleep on bdring */
	uint64_t bd_accepted;		/* (m) accepted, not yet completed */
	uint64_t bd_next_seq;		/* (m) r_seq of the next request */
	bool bd_closing;		/* (m) refuse new requests */
	uint64_t bd_open_writes;	/* (m) outstanding writes submitted
					 * since the last barrier */
	struct bd_list bd_barq;		/* (m) barriers waiting for writes */
	struct bd_list bd_syncq;	/* (m) barriers ready for a sync */
	bool bd_syncing;		/* (m) a sync group is at the backend */
	struct bd_list bd_softq;	/* (m) to complete without the device */
	struct bd_list bd_overflow;	/* (m) completion-thread submissions
					 * waiting for a slot */

	struct bd_counters bd_cnt;	/* (a) */
	struct bd_hooks bd_hooks;
};

/* Core services for the backends (blockdev.c). */
struct blockdev *bd_alloc(const char *path, uint64_t size, unsigned align,
    unsigned qdepth, bool readonly);
void bd_free(struct blockdev *bd);
void bd_complete(struct blockdev *bd, struct blockdev_req *req);
void bd_complete_soft(struct blockdev *bd, struct blockdev_req *req);
void bd_sync_done(struct blockdev *bd, struct blockdev_req *head, int error);
void bd_sync_failed(struct blockdev *bd, struct blockdev_req *head, int error);
void bd_run_softq(struct blockdev *bd);
void bd_completion_thread_enter(struct blockdev *bd);
bool bd_on_completion_thread(const struct blockdev *bd);
int bd_thread_create(pthread_t *tp, void *(*fn)(void *), void *arg,
    const char *name);
uint64_t bd_now_ns(void);
void bd_count_short_retry(struct blockdev *bd);

/* Test hooks (blockdev_hooks.c). */
void bd_hooks_init(struct bd_hooks *h);
void bd_hooks_destroy(struct bd_hooks *h);
enum bd_verdict bd_hooks_verdict(struct blockdev *bd,
    const struct blockdev_req *req);
void bd_wlog_record(struct blockdev *bd, const struct blockdev_req *req);

/* Image backend (blockdev_aio.c); exposed for the unit test. */
int bd_probe_dio_align(int fd, unsigned *alignp);

#endif /* FLYFS_BLOCKDEV_IMPL_H */
