/*
 * buf_mem.c - memory for buffer data (b_data): the userspace stand-in for
 * the kernel's VM pages behind a buffer.
 *
 * This module owns the buffer memory allocator.  Why not malloc: the
 * cache frees and allocates buffer memory all the time (recycling,
 * getnewbuf's bulk-free hysteresis, drop_caches, O_DIRECT buffers), from
 * many threads.  glibc keeps freed memory in per-thread arenas, so memory
 * freed by one FUSE worker is not reused by another and the process grew
 * far past maxbufspace (1.35 GiB RSS for a 1 GiB cache in the fio suite);
 * and every first touch of fresh heap memory is a 4 KiB page fault, which
 * dominated the daemon's profile of a streaming write.
 *
 * Design:
 *  - Chunks are whole pages (4 KiB .. MAXBSIZE), page aligned (O_DIRECT).
 *  - New chunks are carved from 2 MiB extents mapped 2 MiB aligned and
 *    advised MADV_HUGEPAGE, so fresh memory faults in 2 MiB at a time.
 *    One extent is carved at a time; a freed chunk never goes back to it.
 *  - Freed chunks go on their size class's stack.  A "hot" chunk keeps its
 *    pages and is handed out first; it is kept only while
 *    bufspace + hot bytes <= maxbufspace, so resident buffer memory never
 *    exceeds maxbufspace (plus at most one partly carved extent).  Other
 *    freed chunks give their pages back (MADV_DONTNEED) and become "cold":
 *    address space only, zero-filled again on reuse.
 *  - Allocating fresh or cold memory when hot memory of other sizes would
 *    push the total over maxbufspace releases hot chunks first (trim).
 *  - Populating ahead: the first touch of a fresh extent is a page fault
 *    in which the kernel zeroes 2 MiB, on the thread that first writes a
 *    buffer.  In a streaming write into an empty cache that was two
 *    thirds of the daemon's CPU (perf: clear_page_erms under the memcpy
 *    into b_data), on the writer's critical path.  The "bufmem" thread
 *    maps and touches extents ahead of the carve pointer instead: at most
 *    BM_AHEAD of them wait ready, and only while every extent mapped so
 *    far plus the next stays within maxbufspace.  The ready extents are
 *    resident and counted nowhere else, so the bound above becomes
 *    maxbufspace plus BM_AHEAD extents (8 MiB) at most: ready extents
 *    can still be waiting when reused cold chunks have brought bufspace
 *    and hot bytes up to maxbufspace.  Once the extents mapped reach
 *    maxbufspace the thread stops, and a rare later carve maps its
 *    extent itself (bufcounters: bufmemahead, bufmemsync).
 *  - The header array (buf[], bufinit) is mapped the same way, in one
 *    piece (buf_mem_hdr_alloc): tree walks over it then miss no TLB.
 * Under AddressSanitizer it is plain posix_memalign (calloc for the
 * headers), so that overruns stay detectable in the sanitizer builds.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cache/vfs_bio_int.h"

#if defined(__SANITIZE_ADDRESS__)
#define BUF_MEM_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUF_MEM_MALLOC 1
#endif
#endif

#define BM_PAGE		4096L
#define BM_CLASSES	((int)(MAXBSIZE / BM_PAGE))
#define BM_EXTENT	(2L * 1024 * 1024)
#define BM_AHEAD	4		/* extents kept populated ahead */

#ifndef BUF_MEM_MALLOC

struct bm_stack {
	void	**v;
	size_t	n, cap;
};

struct bm_class {
	pthread_mutex_t	lock;
	struct bm_stack	hot;		/* pages resident */
	struct bm_stack	cold;		/* pages given back */
} __attribute__((aligned(64)));

static struct bm_class bm_class[BM_CLASSES + 1];	/* index: pages */
/*
 * bm_carve_lock protects the carve pointer, the ready extents and the
 * populate thread's state (everything down to bm_ahead_stop).
 */
static pthread_mutex_t bm_carve_lock = PTHREAD_MUTEX_INITIALIZER;
static char *bm_carve_p;
static long bm_carve_left;
static char *bm_ready[BM_AHEAD];	/* populated extents, not yet carved */
static int bm_nready;
static long bm_mapped;			/* bytes of extents ever mapped */
static pthread_cond_t bm_ahead_cv = PTHREAD_COND_INITIALIZER;
static pthread_t bm_ahead_td;
static bool bm_ahead_running;		/* bm_ahead_td is to be joined */
static bool bm_ahead_exited;		/* ... and has returned */
static bool bm_ahead_stop;
static long bm_hot_bytes;		/* bytes on the hot stacks */
static pthread_once_t bm_once = PTHREAD_ONCE_INIT;

static void
bm_init(void)
{
	int i;

	for (i = 0; i <= BM_CLASSES; i++)
		pthread_mutex_init(&bm_class[i].lock, NULL);
}

static bool
bm_push(struct bm_stack *s, void *p)
{
	void **nv;
	size_t ncap;

	if (s->n == s->cap) {
		ncap = s->cap ? 2 * s->cap : 256;
		if ((nv = realloc(s->v, ncap * sizeof(*nv))) == NULL)
			return false;
		s->v = nv;
		s->cap = ncap;
	}
	s->v[s->n++] = p;
	return true;
}

static void *
bm_pop(struct bm_stack *s)
{
	return s->n ? s->v[--s->n] : NULL;
}

/* Give a chunk's pages back to the kernel; it stays ours as address space. */
static void
bm_release(void *p, long len)
{
	(void)madvise(p, (size_t)len, MADV_DONTNEED);
}

/*
 * Map LEN bytes (a multiple of BM_EXTENT), 2 MiB-aligned and advised
 * MADV_HUGEPAGE, zero-filled; NULL if out of address space.  Used for the
 * extents and for the header array.
 */
static void *
bm_map_huge(size_t len)
{
	char *p, *a;
	size_t maplen = len + (size_t)BM_EXTENT;

	KKASSERT(len % (size_t)BM_EXTENT == 0);
	p = mmap(NULL, maplen, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	a = (char *)(((uintptr_t)p + BM_EXTENT - 1) & ~(uintptr_t)(BM_EXTENT - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	if (a + len < p + maplen)
		munmap(a + len, (size_t)(p + maplen - (a + len)));
	(void)madvise(a, len, MADV_HUGEPAGE);
	return a;
}

static char *
bm_map_extent(void)
{
	return bm_map_huge((size_t)BM_EXTENT);
}

/* Another ready extent is wanted, and allowed.  (bm_carve_lock) */
static bool
bm_ahead_wanted(void)
{
	return bm_nready < BM_AHEAD &&
	    bm_mapped + BM_EXTENT <= ALOAD(maxbufspace);
}

/*
 * The populate thread: map an extent and fault every page of it in (a
 * zero written per page; with huge pages the first write does it all),
 * outside the lock, then offer it.  Zeroes written are what the kernel
 * gives anyway, so a chunk carved from it is still "fresh" (*zerop).
 */
static void *
bm_ahead_main(void *arg)
{
	char *a;

	(void)arg;
	pthread_mutex_lock(&bm_carve_lock);
	for (;;) {
		while (!bm_ahead_stop && !bm_ahead_wanted())
			pthread_cond_wait(&bm_ahead_cv, &bm_carve_lock);
		if (bm_ahead_stop)
			break;
		bm_mapped += BM_EXTENT;
		pthread_mutex_unlock(&bm_carve_lock);
		if ((a = bm_map_extent()) != NULL)
			for (long off = 0; off < BM_EXTENT; off += BM_PAGE)
				((volatile char *)a)[off] = 0;
		pthread_mutex_lock(&bm_carve_lock);
		if (a == NULL) {
			/* Out of address space: leave it to the carvers. */
			bm_mapped -= BM_EXTENT;
			break;
		}
		bm_ready[bm_nready++] = a;
		BUFCOUNT(bufmemahead, 1);
	}
	bm_ahead_exited = true;
	pthread_mutex_unlock(&bm_carve_lock);
	return NULL;
}

/* Start the populate thread if it is not running.  (bm_carve_lock) */
static void
bm_ahead_start(void)
{
	sigset_t all, old;

	if (bm_ahead_running && bm_ahead_exited) {
		/* It gave up (no address space): reap it, try again. */
		pthread_join(bm_ahead_td, NULL);
		bm_ahead_running = bm_ahead_exited = false;
	}
	if (bm_ahead_running || bm_ahead_stop)
		return;
	/* Signals belong to the daemon's main thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	bm_ahead_running = pthread_create(&bm_ahead_td, NULL, bm_ahead_main,
	    NULL) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/*
 * Make a new extent the carve extent: a ready one if there is one, else
 * one mapped here.  (bm_carve_lock)
 */
static bool
bm_new_extent(void)
{
	char *a;

	if (bm_nready > 0) {
		a = bm_ready[--bm_nready];
	} else {
		if ((a = bm_map_extent()) == NULL)
			return false;
		bm_mapped += BM_EXTENT;
		BUFCOUNT(bufmemsync, 1);
	}
	/* The unused tail of the previous extent is simply abandoned
	 * untouched (a carve is at most MAXBSIZE, so < 128 KiB of VA). */
	bm_carve_p = a;
	bm_carve_left = BM_EXTENT;
	bm_ahead_start();
	pthread_cond_signal(&bm_ahead_cv);
	return true;
}

static void *
bm_carve(long len)
{
	void *p = NULL;

	pthread_mutex_lock(&bm_carve_lock);
	if (bm_carve_left < len && !bm_new_extent())
		goto out;
	p = bm_carve_p;
	bm_carve_p += len;
	bm_carve_left -= len;
out:
	pthread_mutex_unlock(&bm_carve_lock);
	return p;
}

/*
 * Keep bufspace + hot bytes <= maxbufspace after LEN more bytes become
 * resident: release hot chunks, largest classes first.
 */
static void
bm_trim(long len)
{
	long excess;
	void *p;
	int k;

	for (k = BM_CLASSES; k >= 1; k--) {
		excess = ALOAD(bufspace) + ALOAD(bm_hot_bytes) + len -
		    ALOAD(maxbufspace);
		if (excess <= 0 || ALOAD(bm_hot_bytes) <= 0)
			return;
		pthread_mutex_lock(&bm_class[k].lock);
		while (excess > 0 && (p = bm_pop(&bm_class[k].hot)) != NULL) {
			AADD(bm_hot_bytes, -(k * BM_PAGE));
			bm_release(p, k * BM_PAGE);
			if (!bm_push(&bm_class[k].cold, p)) {
				/* No room to remember it: unmap it for good. */
				munmap(p, (size_t)(k * BM_PAGE));
			}
			excess -= k * BM_PAGE;
		}
		pthread_mutex_unlock(&bm_class[k].lock);
	}
}

/*
 * Allocate LEN bytes (rounded up to pages), page aligned.  *ZEROP is set
 * when the memory is known to be zero-filled (fresh or given-back pages).
 * NULL when out of memory.
 */
void *
buf_mem_alloc(long len, bool *zerop)
{
	struct bm_class *c;
	void *p;
	int k;

	pthread_once(&bm_once, bm_init);
	k = (int)((len + BM_PAGE - 1) / BM_PAGE);
	KKASSERT(k >= 1 && k <= BM_CLASSES);
	c = &bm_class[k];
	pthread_mutex_lock(&c->lock);
	if ((p = bm_pop(&c->hot)) != NULL) {
		AADD(bm_hot_bytes, -(k * BM_PAGE));
		pthread_mutex_unlock(&c->lock);
		*zerop = false;
		return p;
	}
	p = bm_pop(&c->cold);
	pthread_mutex_unlock(&c->lock);
	/* New resident memory: make room among the hot chunks first. */
	bm_trim(0);
	if (p == NULL)
		p = bm_carve(k * BM_PAGE);
	*zerop = true;
	return p;
}

void
buf_mem_free(void *p, long len)
{
	struct bm_class *c;
	long sz;
	int k;

	if (p == NULL)
		return;
	k = (int)((len + BM_PAGE - 1) / BM_PAGE);
	KKASSERT(k >= 1 && k <= BM_CLASSES);
	sz = k * BM_PAGE;
	c = &bm_class[k];
	pthread_mutex_lock(&c->lock);
	if (ALOAD(bufspace) + ALOAD(bm_hot_bytes) + sz <= ALOAD(maxbufspace) &&
	    bm_push(&c->hot, p)) {
		AADD(bm_hot_bytes, sz);
	} else {
		bm_release(p, sz);
		if (!bm_push(&c->cold, p))
			munmap(p, (size_t)sz);
	}
	pthread_mutex_unlock(&c->lock);
}

/* Bytes of freed buffer memory kept resident for reuse. */
long
buf_mem_hot_bytes(void)
{
	return ALOAD(bm_hot_bytes);
}

void
buf_mem_stop(void)
{
	pthread_mutex_lock(&bm_carve_lock);
	if (!bm_ahead_running) {
		pthread_mutex_unlock(&bm_carve_lock);
		return;
	}
	bm_ahead_stop = true;
	pthread_cond_signal(&bm_ahead_cv);
	pthread_mutex_unlock(&bm_carve_lock);
	pthread_join(bm_ahead_td, NULL);
	pthread_mutex_lock(&bm_carve_lock);
	bm_ahead_running = bm_ahead_exited = false;
	bm_ahead_stop = false;		/* the next carve may start it again */
	pthread_mutex_unlock(&bm_carve_lock);
}

/*
 * The header array (bufinit), zeroed, on huge pages: a findblk walks ~16
 * headers spread over it, and on 4 KiB pages each step was a TLB miss
 * too (docs/port-map.md, Deviation 31).
 */
void *
buf_mem_hdr_alloc(size_t len)
{
	return bm_map_huge((len + BM_EXTENT - 1) & ~(size_t)(BM_EXTENT - 1));
}

void
buf_mem_hdr_free(void *p, size_t len)
{
	if (p != NULL)
		munmap(p, (len + BM_EXTENT - 1) & ~(size_t)(BM_EXTENT - 1));
}

#else /* BUF_MEM_MALLOC */

/* Under ASan the header array is a calloc, so its overruns are caught. */
void *
buf_mem_hdr_alloc(size_t len)
{
	return calloc(1, len);
}

void
buf_mem_hdr_free(void *p, size_t len)
{
	(void)len;
	free(p);
}

void *
buf_mem_alloc(long len, bool *zerop)
{
	void *p;

	*zerop = false;
	if (posix_memalign(&p, BUF_MEMALIGN, (size_t)len) != 0)
		return NULL;
	return p;
}

void
buf_mem_free(void *p, long len)
{
	(void)len;
	free(p);
}

long
buf_mem_hot_bytes(void)
{
	return 0;
}

void
buf_mem_stop(void)
{
}

#endif /* BUF_MEM_MALLOC */
