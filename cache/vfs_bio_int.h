/*
 * vfs_bio_int.h - state shared by the files of the buffer cache port
 * (vfs_bio.c, buf_daemon.c, vfs_subr.c, dev_strategy.c).  Not for use
 * outside cache/.
 */
#ifndef FLYFS_CACHE_VFS_BIO_INT_H
#define FLYFS_CACHE_VFS_BIO_INT_H

#include <sys/queue.h>

#include "cache/buf.h"
#include "cache/bufstats.h"
#include "cache/vnode.h"

TAILQ_HEAD(bqueues, buf);

/*
 * One shard of the free queues (the kernel's per-cpu struct bufpcpu).
 * spin protects the lists and b_qindex / b_qflags of the buffers on them.
 */
struct bufpcpu {
	struct spinlock	spin;
	struct bqueues	bufqueues[BUFFER_QUEUES];
	char		flushing;	/* (a) getnewbuf is freeing, not reusing */
} __attribute__((aligned(64)));

/* b_qflags */
#define BQF_AGE		0x01	/* CLEAN scan: second pass done */
#define BQF_MARKER	0x02	/* a scan marker (B_MARKER), not a buffer */

/* needsbuffer flags */
#define VFS_BIO_NEED_ANY	0x01	/* any freeable buffer */
#define VFS_BIO_NEED_BUFSPACE	0x08	/* space, with lo/hi hysteresis */

#define BD_WAKE_SIZE	16384
#define BD_WAKE_MASK	(BD_WAKE_SIZE - 1)

#define BUF_MEMALIGN	4096	/* page alignment: enough for O_DIRECT */

extern struct bufpcpu *bufpcpu;		/* (c) [ncpus] */
extern int ncpus;			/* (c) number of shards */
extern struct buf *buf;			/* (c) [nbuf] header pool */
extern int bd_request, bd_request_hw;	/* (a) */
extern int runningbufreq;		/* (a) */

/* Relaxed atomic helpers for the global counters. */
#define ALOAD(v)	__atomic_load_n(&(v), __ATOMIC_RELAXED)
#define ASTORE(v, x)	__atomic_store_n(&(v), (x), __ATOMIC_RELAXED)
#define AADD(v, x)	__atomic_add_fetch(&(v), (x), __ATOMIC_RELAXED)
#define AFETCHADD(v, x)	__atomic_fetch_add(&(v), (x), __ATOMIC_SEQ_CST)
#define ACMPSET(v, o, n) ({ __typeof__(v) _o = (o);			\
	__atomic_compare_exchange_n(&(v), &_o, (n), false,		\
	    __ATOMIC_SEQ_CST, __ATOMIC_RELAXED); })
#define ASWAP(v, x)	__atomic_exchange_n(&(v), (x), __ATOMIC_SEQ_CST)

int	buf_mycpu(void);
/* buf_mem.c: page-aligned buffer memory, bounded by maxbufspace. */
void	*buf_mem_alloc(long len, bool *zerop);
void	buf_mem_free(void *p, long len);
long	buf_mem_hot_bytes(void);
/* The header array: LEN zeroed bytes (on huge pages); and its free. */
void	*buf_mem_hdr_alloc(size_t len);
void	buf_mem_hdr_free(void *p, size_t len);
/* Stop the thread that populates buffer memory ahead (buf_teardown). */
void	buf_mem_stop(void);
void	bufspacewakeup(void);
void	bufcountwakeup(void);
void	runningbufwakeup(struct buf *bp);
void	bd_signal(long totalspace);
long	bd_dirty_weight(long size);
void	_bremfree(struct buf *bp);
void	bremfree_locked(struct buf *bp);

/* The b_dep hooks through b_vp->v_ops (the kernel's buf_* of buf2.h). */
void	buf_deallocate(struct buf *bp);
int	buf_checkwrite(struct buf *bp);
int	buf_countdeps(struct buf *bp, int n);
void	buf_start(struct buf *bp);
void	buf_complete(struct buf *bp);

/* Initialise globals for bufinit / reset at shutdown (vfs_bio.c). */
void	bufhdr_reset_accounting(void);

#endif /* FLYFS_CACHE_VFS_BIO_INT_H */
