/*
 * blockdev.c - the backend-independent core of the block device.
 *
 * This file owns what both backends must do identically: validating and
 * accepting requests, the ring (at most bd_qdepth data requests at the
 * device, submitters sleeping on "bdring" beyond that), the barrier epochs
 * that decide when a flush may sync, the soft-completion queue for requests
 * the hooks finish without the device, the counters, the synchronous
 * helpers and the drain at close.
 *
 * Barriers.  Every write belongs to the epoch opened by the last barrier
 * submitted before it.  A barrier closes the open epoch and remembers how
 * many of its writes are still outstanding (rc_pending); barriers wait in
 * bd_barq in submission order.  When the head of bd_barq has no pending
 * writes, every write submitted before it has completed, so it moves to
 * bd_syncq; all barriers in bd_syncq when a sync is started share that one
 * sync.  Later writes are not held back: they only open a new epoch.
 *
 * Every callback runs on the backend's single completion thread, so a
 * barrier's r_done always runs after the r_done of every earlier write.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blockdev/blockdev_impl.h"

/* The completion thread of the device it serves, for re-entry checks. */
static __thread const struct blockdev *bd_completion_of;

void
bd_panic(const char *fmt, ...)
{
	va_list ap;

	fputs("flyfs blockdev panic: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

uint64_t
bd_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

void
bd_completion_thread_enter(struct blockdev *bd)
{
	bd_completion_of = bd;
}

bool
bd_on_completion_thread(const struct blockdev *bd)
{
	return (bd_completion_of == bd);
}

/*
 * Start a device thread with every signal blocked, so that signals meant
 * for the process never interrupt io_getevents() or a condvar wait there.
 */
int
bd_thread_create(pthread_t *tp, void *(*fn)(void *), void *arg,
    const char *name)
{
	sigset_t all, old;
	int error;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	error = pthread_create(tp, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (error == 0)
		pthread_setname_np(*tp, name);
	return (error);
}

struct blockdev *
bd_alloc(const char *path, uint64_t size, unsigned align, unsigned qdepth,
    bool readonly)
{
	struct blockdev *bd;
	pthread_condattr_t ca;

	if ((bd = calloc(1, sizeof(*bd))) == NULL)
		return (NULL);
	if ((bd->bd_path = strdup(path)) == NULL) {
		free(bd);
		return (NULL);
	}
	bd->bd_size = size;
	bd->bd_align = align;
	bd->bd_qdepth = qdepth;
	bd->bd_readonly = readonly;
	pthread_mutex_init(&bd->bd_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&bd->bd_ring_cv, &ca);
	pthread_cond_init(&bd->bd_drain_cv, &ca);
	pthread_condattr_destroy(&ca);
	bd_hooks_init(&bd->bd_hooks);
	return (bd);
}

void
bd_free(struct blockdev *bd)
{
	bd_hooks_destroy(&bd->bd_hooks);
	pthread_cond_destroy(&bd->bd_drain_cv);
	pthread_cond_destroy(&bd->bd_ring_cv);
	pthread_mutex_destroy(&bd->bd_lock);
	free(bd->bd_path);
	free(bd);
}

/*
 * Check REQ against the device's geometry and fill r_len.  Every address,
 * length and offset must be a multiple of bd_align, the transfer must lie
 * inside the device, and empty segments are refused: a zero-length iovec
 * is always a caller's bug.
 */
static int
validate(const struct blockdev *bd, struct blockdev_req *req)
{
	uint64_t mask = bd->bd_align - 1, len = 0;
	int i;

	if (req->r_done == NULL)
		return (EINVAL);
	switch (req->r_op) {
	case BLOCKDEV_FLUSH:
		req->r_len = 0;
		return (0);
	case BLOCKDEV_WRITE:
		if (bd->bd_readonly)
			return (EROFS);
		break;
	case BLOCKDEV_READ:
		break;
	default:
		return (EINVAL);
	}
	if (req->r_iov == NULL || req->r_iovcnt <= 0 ||
	    req->r_iovcnt > IOV_MAX)
		return (EINVAL);
	if (req->r_offset < 0 || ((uint64_t)req->r_offset & mask) != 0)
		return (EINVAL);
	for (i = 0; i < req->r_iovcnt; i++) {
		const struct iovec *v = &req->r_iov[i];

		if (v->iov_len == 0 || (v->iov_len & mask) != 0 ||
		    ((uintptr_t)v->iov_base & mask) != 0)
			return (EINVAL);
		if (v->iov_len > bd->bd_size - len)
			return (EINVAL);
		len += v->iov_len;
	}
	if ((uint64_t)req->r_offset > bd->bd_size - len)
		return (EINVAL);
	req->r_len = len;
	return (0);
}

static void
publish_inflight_locked(struct blockdev *bd)
{
	struct bd_counters *c = &bd->bd_cnt;

	atomic_store_explicit(&c->c_inflight, bd->bd_inflight,
	    memory_order_relaxed);
	if (bd->bd_inflight > atomic_load_explicit(&c->c_max_inflight,
	    memory_order_relaxed))
		atomic_store_explicit(&c->c_max_inflight, bd->bd_inflight,
		    memory_order_relaxed);
}

/*
 * Move barriers whose epochs have drained from bd_barq to bd_syncq (or, for
 * barriers the hooks fail or exempt from syncing, to bd_softq), and return
 * the head of a new sync group if one may start now.  bd_lock held.
 */
static struct blockdev_req *
barriers_advance_locked(struct blockdev *bd)
{
	struct blockdev_req *b, *head, *prev;

	while ((b = bd->bd_barq.l_head) != NULL &&
	    bd_rcore(b)->rc_pending == 0) {
		bd_list_pop(&bd->bd_barq);
		if (bd_rcore(b)->rc_verdict == BDV_PASS)
			bd_list_append(&bd->bd_syncq, b);
		else
			bd_list_append(&bd->bd_softq, b);
	}
	if (bd->bd_syncing || bd->bd_syncq.l_head == NULL)
		return (NULL);

	/* The whole of bd_syncq rides on one sync. */
	head = prev = NULL;
	while ((b = bd_list_pop(&bd->bd_syncq)) != NULL) {
		bd_rcore(b)->rc_gnext = NULL;
		if (prev != NULL)
			bd_rcore(prev)->rc_gnext = b;
		else
			head = b;
		prev = b;
	}
	bd->bd_syncing = true;
	return (head);
}

/* A write finished: retire it from its epoch.  bd_lock held. */
static void
write_retired_locked(struct blockdev *bd, const struct blockdev_req *req)
{
	struct blockdev_req *b;

	for (b = bd->bd_barq.l_head; b != NULL; b = b->r_next) {
		if (b->r_seq > req->r_seq) {
			KKASSERT(bd_rcore(b)->rc_pending > 0);
			bd_rcore(b)->rc_pending--;
			return;
		}
	}
	KKASSERT(bd->bd_open_writes > 0);
	bd->bd_open_writes--;
}

static void
kick_unless_completion_thread(struct blockdev *bd)
{
	/* The completion thread runs bd_run_softq() after every batch. */
	if (!bd_on_completion_thread(bd))
		bd->bd_ops->bo_kick(bd);
}

int
blockdev_submit(struct blockdev *bd, struct blockdev_req *req)
{
	struct bd_rcore *rc = bd_rcore(req);
	struct blockdev_req *synchead = NULL;
	bool soft = false, start = false, own;
	int error;

	if ((error = validate(bd, req)) != 0)
		return (error);
	/*
	 * May it go to the calling thread's private context?  bo_own_ok
	 * looks at thread-local state only, so it needs no lock.
	 */
	own = req->r_op == BLOCKDEV_READ &&
	    (req->r_flags & BLOCKDEV_REQ_WAITED) != 0 &&
	    bd->bd_ops->bo_own_ok != NULL && !bd_on_completion_thread(bd) &&
	    bd->bd_ops->bo_own_ok(bd);
	memset(rc, 0, sizeof(*rc));
	req->r_error = 0;
	req->r_bytes = 0;
	req->r_done_bytes = 0;
	req->r_next = NULL;
	req->r_start_ns = bd_now_ns();

	pthread_mutex_lock(&bd->bd_lock);
	if (bd->bd_closing) {
		pthread_mutex_unlock(&bd->bd_lock);
		return (ESHUTDOWN);
	}
	rc->rc_verdict = bd_hooks_verdict(bd, req);
	rc->rc_log = atomic_load_explicit(&bd->bd_hooks.w_on,
	    memory_order_relaxed);

	/*
	 * A waited read goes to the thread's own context only on an idle
	 * device.  Under concurrency the shared context does better: its
	 * submissions combine into one io_submit() and one device
	 * notification, its completions into one io_getevents(), where
	 * private contexts would make one of each per read (measured in
	 * docs/blockdev.md).
	 */
	if (own && rc->rc_verdict == BDV_PASS && bd->bd_inflight == 0 &&
	    bd->bd_own_inflight == 0) {
		/* No ring slot (see BLOCKDEV_REQ_WAITED). */
		rc->rc_own = 1;
		bd->bd_own_inflight++;
		start = true;
	} else if (req->r_op != BLOCKDEV_FLUSH &&
	    rc->rc_verdict == BDV_PASS) {
		/*
		 * Take a ring slot.  The completion thread cannot sleep for
		 * one (it is the thread that frees them), so its requests
		 * queue on bd_overflow and inherit the next freed slot.
		 */
		if (bd->bd_inflight < bd->bd_qdepth) {
			bd->bd_inflight++;
			rc->rc_slot = 1;
			start = true;
			publish_inflight_locked(bd);
		} else if (bd_on_completion_thread(bd)) {
			bd_list_append(&bd->bd_overflow, req);
		} else {
			atomic_fetch_add_explicit(&bd->bd_cnt.c_ring_waits, 1,
			    memory_order_relaxed);
			bd->bd_ring_sleepers++;
			while (bd->bd_inflight >= bd->bd_qdepth &&
			    !bd->bd_closing)
				pthread_cond_wait(&bd->bd_ring_cv,
				    &bd->bd_lock);
			bd->bd_ring_sleepers--;
			if (bd->bd_closing) {
				pthread_cond_broadcast(&bd->bd_drain_cv);
				pthread_mutex_unlock(&bd->bd_lock);
				return (ESHUTDOWN);
			}
			bd->bd_inflight++;
			rc->rc_slot = 1;
			start = true;
			publish_inflight_locked(bd);
		}
	}

	/* Accepted: from here r_done will be called exactly once. */
	req->r_seq = bd->bd_next_seq++;
	bd->bd_accepted++;
	if (req->r_op == BLOCKDEV_WRITE) {
		bd->bd_open_writes++;
	} else if (req->r_op == BLOCKDEV_FLUSH) {
		rc->rc_pending = bd->bd_open_writes;
		bd->bd_open_writes = 0;
		bd_list_append(&bd->bd_barq, req);
		synchead = barriers_advance_locked(bd);
		soft = bd->bd_softq.l_head != NULL;
	}
	if (req->r_op != BLOCKDEV_FLUSH && rc->rc_verdict != BDV_PASS) {
		bd_list_append(&bd->bd_softq, req);
		soft = true;
	}
	pthread_mutex_unlock(&bd->bd_lock);

	if (start)
		bd->bd_ops->bo_submit(bd, req);
	if (synchead != NULL)
		bd->bd_ops->bo_sync(bd, synchead);
	if (soft)
		kick_unless_completion_thread(bd);
	return (0);
}

static void
account(struct blockdev *bd, const struct blockdev_req *req)
{
	struct bd_counters *c = &bd->bd_cnt;
	uint64_t ns = bd_now_ns() - req->r_start_ns, us = ns / 1000;
	unsigned b = us == 0 ? 0 : 63 - (unsigned)__builtin_clzll(us);

	switch (req->r_op) {
	case BLOCKDEV_READ:
		atomic_fetch_add_explicit(&c->c_reads, 1,
		    memory_order_relaxed);
		atomic_fetch_add_explicit(&c->c_read_bytes, req->r_bytes,
		    memory_order_relaxed);
		break;
	case BLOCKDEV_WRITE:
		atomic_fetch_add_explicit(&c->c_writes, 1,
		    memory_order_relaxed);
		atomic_fetch_add_explicit(&c->c_write_bytes, req->r_bytes,
		    memory_order_relaxed);
		break;
	case BLOCKDEV_FLUSH:
		atomic_fetch_add_explicit(&c->c_flushes, 1,
		    memory_order_relaxed);
		break;
	}
	if (req->r_error != 0)
		atomic_fetch_add_explicit(&c->c_errors, 1,
		    memory_order_relaxed);
	if (b >= BLOCKDEV_LAT_BUCKETS)
		b = BLOCKDEV_LAT_BUCKETS - 1;
	atomic_fetch_add_explicit(&c->c_lat_hist[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->c_lat_total_ns, ns, memory_order_relaxed);
}

/*
 * REQ is finished (r_error and r_bytes set).  Called without locks on the
 * completion thread (a waited read: on the thread that waits for it).
 * Frees its ring slot (or hands it to the oldest overflow request),
 * retires a write from its epoch, possibly starts a sync, and finally
 * calls r_done; REQ is not touched after that.
 */
void
bd_complete(struct blockdev *bd, struct blockdev_req *req)
{
	struct bd_rcore *rc = bd_rcore(req);
	struct blockdev_req *next = NULL, *synchead = NULL;

	KASSERT(bd_on_completion_thread(bd) || rc->rc_own,
	    "not on the completion thread");
	account(bd, req);
	if (rc->rc_own && !bd_on_completion_thread(bd))
		atomic_fetch_add_explicit(&bd->bd_cnt.c_own_reads, 1,
		    memory_order_relaxed);
	if (rc->rc_log && req->r_error == 0 && rc->rc_verdict == BDV_PASS)
		bd_wlog_record(bd, req);

	pthread_mutex_lock(&bd->bd_lock);
	if (rc->rc_own) {
		KKASSERT(bd->bd_own_inflight > 0);
		bd->bd_own_inflight--;
	}
	if (rc->rc_slot) {
		next = bd_list_pop(&bd->bd_overflow);
		if (next != NULL) {
			bd_rcore(next)->rc_slot = 1;
		} else {
			bd->bd_inflight--;
			publish_inflight_locked(bd);
			if (bd->bd_ring_sleepers > 0)
				pthread_cond_signal(&bd->bd_ring_cv);
		}
	}
	if (req->r_op == BLOCKDEV_WRITE) {
		write_retired_locked(bd, req);
		synchead = barriers_advance_locked(bd);
	}
	KKASSERT(bd->bd_accepted > 0);
	if (--bd->bd_accepted == 0 && bd->bd_closing)
		pthread_cond_broadcast(&bd->bd_drain_cv);
	pthread_mutex_unlock(&bd->bd_lock);

	if (next != NULL)
		bd->bd_ops->bo_submit(bd, next);
	if (synchead != NULL)
		bd->bd_ops->bo_sync(bd, synchead);
	req->r_done(req);
}

/*
 * Queue REQ (r_error and r_bytes set) for completion by the completion
 * thread.  For backends that cannot start a request they hold.
 */
void
bd_complete_soft(struct blockdev *bd, struct blockdev_req *req)
{
	pthread_mutex_lock(&bd->bd_lock);
	bd_list_append(&bd->bd_softq, req);
	pthread_mutex_unlock(&bd->bd_lock);
	kick_unless_completion_thread(bd);
}

/* The backend could not start the sync of group HEAD. */
void
bd_sync_failed(struct blockdev *bd, struct blockdev_req *head, int error)
{
	bd_rcore(head)->rc_sync_error = 1;
	bd_rcore(head)->rc_error = error;
	bd_complete_soft(bd, head);
}

/*
 * The sync of group HEAD finished with ERROR: complete its barriers and
 * start the next group if barriers became ready meanwhile.  Completion
 * thread, no locks.
 */
void
bd_sync_done(struct blockdev *bd, struct blockdev_req *head, int error)
{
	struct blockdev_req *b, *next, *synchead;

	atomic_fetch_add_explicit(&bd->bd_cnt.c_syncs, 1, memory_order_relaxed);
	pthread_mutex_lock(&bd->bd_lock);
	KKASSERT(bd->bd_syncing);
	bd->bd_syncing = false;
	synchead = barriers_advance_locked(bd);
	pthread_mutex_unlock(&bd->bd_lock);
	if (synchead != NULL)
		bd->bd_ops->bo_sync(bd, synchead);

	for (b = head; b != NULL; b = next) {
		next = bd_rcore(b)->rc_gnext;
		b->r_error = error;
		b->r_bytes = 0;
		bd_complete(bd, b);
	}
}

/*
 * Complete everything on the soft queue: requests the hooks decided at
 * submission, barriers that need no sync, and requests a backend could not
 * start.  Completion thread, no locks.  Loops because a callback may
 * submit more.
 */
void
bd_run_softq(struct blockdev *bd)
{
	struct blockdev_req *req;
	struct bd_rcore *rc;

	for (;;) {
		pthread_mutex_lock(&bd->bd_lock);
		req = bd_list_pop(&bd->bd_softq);
		pthread_mutex_unlock(&bd->bd_lock);
		if (req == NULL)
			return;
		rc = bd_rcore(req);
		if (rc->rc_sync_error) {
			rc->rc_sync_error = 0;
			bd_sync_done(bd, req, rc->rc_error);
			continue;
		}
		switch (rc->rc_verdict) {
		case BDV_FAIL:
			req->r_error = EIO;
			req->r_bytes = 0;
			break;
		case BDV_DROP:
			req->r_error = 0;
			req->r_bytes = req->r_len;
			break;
		case BDV_NOSYNC:
			req->r_error = 0;
			req->r_bytes = 0;
			break;
		case BDV_PASS:
			/* A backend's refusal: r_error and r_bytes are set. */
			break;
		}
		bd_complete(bd, req);
	}
}

void
blockdev_close(struct blockdev *bd)
{
	if (bd == NULL)
		return;
	KKASSERT(!bd_on_completion_thread(bd));
	pthread_mutex_lock(&bd->bd_lock);
	bd->bd_closing = true;
	pthread_cond_broadcast(&bd->bd_ring_cv);
	/*
	 * Wait ("bddrain") until every accepted request has completed and
	 * every submitter asleep on the ring has left blockdev_submit().
	 */
	while (bd->bd_accepted > 0 || bd->bd_ring_sleepers > 0)
		pthread_cond_wait(&bd->bd_drain_cv, &bd->bd_lock);
	pthread_mutex_unlock(&bd->bd_lock);
	/* Joining the completion thread waits for the last r_done. */
	bd->bd_ops->bo_destroy(bd);
	bd_free(bd);
}

/* ---- Synchronous helpers ------------------------------------------ */

struct sync_wait {
	pthread_mutex_t sw_lock;
	pthread_cond_t sw_cv;		/* "bdwait" */
	bool sw_done;			/* (sw_lock) */
};

static void
sync_wait_done(struct blockdev_req *req)
{
	struct sync_wait *sw = req->r_arg;

	pthread_mutex_lock(&sw->sw_lock);
	sw->sw_done = true;
	pthread_cond_signal(&sw->sw_cv);
	pthread_mutex_unlock(&sw->sw_lock);
}

/* Submit one request and sleep on "bdwait" until it completes. */
static int
sync_io(struct blockdev *bd, enum blockdev_op op, void *buf, size_t len,
    off_t off)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct blockdev_req req = {
		.r_op = op, .r_offset = off, .r_iov = &iov, .r_iovcnt = 1,
		.r_done = sync_wait_done, .r_flags = BLOCKDEV_REQ_WAITED,
	};
	struct sync_wait sw = { .sw_done = false };
	int error;

	/* The completion thread would wait for itself. */
	if (bd_on_completion_thread(bd))
		return (EDEADLK);
	pthread_mutex_init(&sw.sw_lock, NULL);
	pthread_cond_init(&sw.sw_cv, NULL);
	req.r_arg = &sw;
	error = blockdev_submit(bd, &req);
	if (error == 0) {
		/*
		 * A waited read completes in here, or on the completion
		 * thread; either way sw_done is then set.
		 */
		while (blockdev_reap_own())
			continue;
		pthread_mutex_lock(&sw.sw_lock);
		while (!sw.sw_done)
			pthread_cond_wait(&sw.sw_cv, &sw.sw_lock);
		pthread_mutex_unlock(&sw.sw_lock);
		error = req.r_error;
	}
	pthread_cond_destroy(&sw.sw_cv);
	pthread_mutex_destroy(&sw.sw_lock);
	return (error);
}

int
blockdev_pread(struct blockdev *bd, void *buf, size_t len, off_t off)
{
	return (sync_io(bd, BLOCKDEV_READ, buf, len, off));
}

int
blockdev_pwrite(struct blockdev *bd, const void *buf, size_t len, off_t off)
{
	/* The iovec is not const, but a write only reads through it. */
	return (sync_io(bd, BLOCKDEV_WRITE, (void *)(uintptr_t)buf, len, off));
}

int
blockdev_flush(struct blockdev *bd)
{
	return (sync_io(bd, BLOCKDEV_FLUSH, NULL, 0, 0));
}

/* ---- Geometry, memory, counters ---------------------------------- */

uint64_t
blockdev_size(const struct blockdev *bd)
{
	return (bd->bd_size);
}

unsigned
blockdev_align(const struct blockdev *bd)
{
	return (bd->bd_align);
}

const char *
blockdev_path(const struct blockdev *bd)
{
	return (bd->bd_path);
}

void *
blockdev_alloc_buf(const struct blockdev *bd, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t al = bd->bd_align > page ? bd->bd_align : page;
	void *p;

	if (posix_memalign(&p, al, len == 0 ? al : len) != 0)
		return (NULL);
	return (p);
}

void
blockdev_free_buf(void *p)
{
	free(p);
}

void
blockdev_get_stats(struct blockdev *bd, struct blockdev_stats *st)
{
	struct bd_counters *c = &bd->bd_cnt;
	int i;

#define LD(f)	atomic_load_explicit(&c->f, memory_order_relaxed)
	memset(st, 0, sizeof(*st));
	st->reads = LD(c_reads);
	st->writes = LD(c_writes);
	st->flushes = LD(c_flushes);
	st->syncs = LD(c_syncs);
	st->read_bytes = LD(c_read_bytes);
	st->write_bytes = LD(c_write_bytes);
	st->errors = LD(c_errors);
	st->short_retries = LD(c_short_retries);
	st->ring_waits = LD(c_ring_waits);
	st->own_reads = LD(c_own_reads);
	st->inflight = LD(c_inflight);
	st->max_inflight = LD(c_max_inflight);
	st->lat_total_ns = LD(c_lat_total_ns);
	for (i = 0; i < BLOCKDEV_LAT_BUCKETS; i++)
		st->lat_hist[i] = LD(c_lat_hist[i]);
#undef LD
	st->buffered_fallback = bd->bd_buffered;
}

void
bd_count_short_retry(struct blockdev *bd)
{
	atomic_fetch_add_explicit(&bd->bd_cnt.c_short_retries, 1,
	    memory_order_relaxed);
}
