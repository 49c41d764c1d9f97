/*
 * blockdev_hooks.c - the test hooks that sit above both backends: fault
 * injection, the power cut and the write log.
 *
 * This file owns the hooks' state (struct bd_hooks) and the two decisions
 * the core asks of it: at submission, what happens to a request
 * (bd_hooks_verdict: pass, fail with EIO, drop a write, skip a sync), and
 * at completion, what the write log records (bd_wlog_record).  Deciding at
 * submission makes a hook change apply to requests submitted after it, and
 * lets the core complete failed and dropped requests without the device,
 * so neither touches the image.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/blockdev_impl.h"

void
bd_hooks_init(struct bd_hooks *h)
{
	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->h_lock, NULL);
	pthread_mutex_init(&h->w_lock, NULL);
	h->h_pc_left = -1;
}

void
bd_hooks_destroy(struct bd_hooks *h)
{
	size_t i;

	for (i = 0; i < h->w_count; i++)
		free(h->w_recs[i].w_data);
	free(h->w_recs);
	pthread_mutex_destroy(&h->w_lock);
	pthread_mutex_destroy(&h->h_lock);
}

static void
rearm_locked(struct bd_hooks *h)
{
	atomic_store(&h->h_on, h->h_fault.f_mode != BLOCKDEV_FAULT_OFF ||
	    h->h_pc_left >= 0);
}

/* splitmix64: a small, well-mixed generator that needs only a seed. */
static uint64_t
rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (z ^ (z >> 31));
}

static unsigned
op_bit(enum blockdev_op op)
{
	switch (op) {
	case BLOCKDEV_READ:
		return (BLOCKDEV_FAULT_READS);
	case BLOCKDEV_WRITE:
		return (BLOCKDEV_FAULT_WRITES);
	case BLOCKDEV_FLUSH:
		return (BLOCKDEV_FAULT_FLUSH);
	}
	return (0);
}

/* Does the armed fault fail REQ?  h_lock held. */
static bool
fault_hits_locked(struct bd_hooks *h, const struct blockdev_req *req)
{
	const struct blockdev_fault *f = &h->h_fault;
	uint64_t end, nth;

	if (f->f_mode == BLOCKDEV_FAULT_OFF ||
	    (f->f_ops & op_bit(req->r_op)) == 0)
		return (false);
	switch (f->f_mode) {
	case BLOCKDEV_FAULT_COUNT:
		/* f_nth is 1-based; 0 is taken to mean the next one. */
		nth = f->f_nth != 0 ? f->f_nth : 1;
		h->h_matched++;
		return (h->h_matched >= nth && h->h_matched - nth < f->f_count);
	case BLOCKDEV_FAULT_RANGE:
		/* A barrier has no extent, so a range never matches it. */
		if (req->r_op == BLOCKDEV_FLUSH)
			return (false);
		end = (uint64_t)req->r_offset + req->r_len;
		return ((uint64_t)req->r_offset < (uint64_t)f->f_offset +
		    f->f_len && end > (uint64_t)f->f_offset);
	case BLOCKDEV_FAULT_RANDOM:
		return (rng_next(&h->h_rng) % 1000000 < f->f_ppm);
	case BLOCKDEV_FAULT_OFF:
		break;
	}
	return (false);
}

/*
 * Decide REQ's fate.  Called by blockdev_submit() with bd_lock held (so
 * decisions follow acceptance order); takes h_lock only if a hook is armed.
 */
enum bd_verdict
bd_hooks_verdict(struct blockdev *bd, const struct blockdev_req *req)
{
	struct bd_hooks *h = &bd->bd_hooks;
	enum bd_verdict v = BDV_PASS;

	if (!atomic_load_explicit(&h->h_on, memory_order_relaxed))
		return (BDV_PASS);
	pthread_mutex_lock(&h->h_lock);
	if (fault_hits_locked(h, req)) {
		atomic_fetch_add_explicit(&h->h_injected, 1,
		    memory_order_relaxed);
		v = BDV_FAIL;
	} else if (h->h_pc_left >= 0 && req->r_op == BLOCKDEV_WRITE) {
		if (h->h_pc_left > 0) {
			h->h_pc_left--;
		} else {
			atomic_fetch_add_explicit(&h->h_dropped, 1,
			    memory_order_relaxed);
			v = BDV_DROP;
		}
	} else if (h->h_pc_left == 0 && req->r_op == BLOCKDEV_FLUSH) {
		v = BDV_NOSYNC;
	}
	pthread_mutex_unlock(&h->h_lock);
	return (v);
}

void
blockdev_set_fault(struct blockdev *bd, const struct blockdev_fault *f)
{
	struct bd_hooks *h = &bd->bd_hooks;

	pthread_mutex_lock(&h->h_lock);
	if (f != NULL)
		h->h_fault = *f;
	else
		memset(&h->h_fault, 0, sizeof(h->h_fault));
	h->h_matched = 0;
	h->h_rng = h->h_fault.f_seed;
	rearm_locked(h);
	pthread_mutex_unlock(&h->h_lock);
}

uint64_t
blockdev_faults_injected(struct blockdev *bd)
{
	return (atomic_load(&bd->bd_hooks.h_injected));
}

void
blockdev_set_powercut(struct blockdev *bd, int64_t n_writes)
{
	struct bd_hooks *h = &bd->bd_hooks;

	pthread_mutex_lock(&h->h_lock);
	h->h_pc_left = n_writes < 0 ? -1 : n_writes;
	rearm_locked(h);
	pthread_mutex_unlock(&h->h_lock);
}

uint64_t
blockdev_writes_dropped(struct blockdev *bd)
{
	return (atomic_load(&bd->bd_hooks.h_dropped));
}

/* ---- Write log ---------------------------------------------------- */

void
blockdev_wlog_start(struct blockdev *bd)
{
	atomic_store(&bd->bd_hooks.w_on, true);
}

void
blockdev_wlog_stop(struct blockdev *bd)
{
	atomic_store(&bd->bd_hooks.w_on, false);
}

/*
 * Record a completed write (with a copy of its data, gathered from the
 * caller's iovecs, which are still untouched until r_done) or barrier.
 * Completion thread; takes w_lock.  The log is a test facility: running
 * out of memory for it is fatal rather than a silent gap.
 */
void
bd_wlog_record(struct blockdev *bd, const struct blockdev_req *req)
{
	struct bd_hooks *h = &bd->bd_hooks;
	struct bd_wlog_rec rec = { .w_type = BLOCKDEV_WLOG_FLUSH };
	unsigned char *p;
	int i;

	if (req->r_op == BLOCKDEV_READ)
		return;
	if (req->r_op == BLOCKDEV_WRITE) {
		rec.w_type = BLOCKDEV_WLOG_WRITE;
		rec.w_offset = req->r_offset;
		rec.w_len = req->r_len;
		if (posix_memalign(&rec.w_data, 4096, req->r_len) != 0)
			bd_panic("write log: out of memory for %zu bytes",
			    req->r_len);
		p = rec.w_data;
		for (i = 0; i < req->r_iovcnt; i++) {
			const struct iovec *v = &req->r_iov[i];

			memcpy(p, v->iov_base, v->iov_len);
			p += v->iov_len;
		}
	}
	pthread_mutex_lock(&h->w_lock);
	if (h->w_count == h->w_cap) {
		size_t cap = h->w_cap ? h->w_cap * 2 : 64;
		struct bd_wlog_rec *n = realloc(h->w_recs, cap * sizeof(*n));

		if (n == NULL)
			bd_panic("write log: out of memory for %zu entries",
			    cap);
		h->w_recs = n;
		h->w_cap = cap;
	}
	h->w_recs[h->w_count++] = rec;
	pthread_mutex_unlock(&h->w_lock);
}

size_t
blockdev_wlog_count(struct blockdev *bd)
{
	struct bd_hooks *h = &bd->bd_hooks;
	size_t n;

	pthread_mutex_lock(&h->w_lock);
	n = h->w_count;
	pthread_mutex_unlock(&h->w_lock);
	return (n);
}

int
blockdev_wlog_get(struct blockdev *bd, size_t i, struct blockdev_wlog_entry *e)
{
	struct bd_hooks *h = &bd->bd_hooks;
	int error = 0;

	pthread_mutex_lock(&h->w_lock);
	if (i < h->w_count) {
		e->e_type = h->w_recs[i].w_type;
		e->e_offset = h->w_recs[i].w_offset;
		e->e_len = h->w_recs[i].w_len;
		e->e_data = h->w_recs[i].w_data;
	} else {
		error = ENOENT;
	}
	pthread_mutex_unlock(&h->w_lock);
	return (error);
}

/*
 * Apply entries [0, N) to DST in log order: writes synchronously, barriers
 * as blockdev_flush().  Record data is page-aligned, so it suits any DST.
 */
int
blockdev_wlog_replay(struct blockdev *bd, size_t n, struct blockdev *dst)
{
	struct blockdev_wlog_entry e;
	size_t i;
	int error;

	if (n > blockdev_wlog_count(bd))
		return (EINVAL);
	for (i = 0; i < n; i++) {
		if ((error = blockdev_wlog_get(bd, i, &e)) != 0)
			return (error);
		if (e.e_type == BLOCKDEV_WLOG_WRITE)
			error = blockdev_pwrite(dst, e.e_data, e.e_len,
			    e.e_offset);
		else
			error = blockdev_flush(dst);
		if (error != 0)
			return (error);
	}
	return (0);
}

void
blockdev_wlog_clear(struct blockdev *bd)
{
	struct bd_hooks *h = &bd->bd_hooks;
	size_t i;

	pthread_mutex_lock(&h->w_lock);
	for (i = 0; i < h->w_count; i++)
		free(h->w_recs[i].w_data);
	h->w_count = 0;
	pthread_mutex_unlock(&h->w_lock);
}
