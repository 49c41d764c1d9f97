/*
 * buf_lock.h - the buffer lock (the kernel's lockmgr lock in b_lock).
 *
 * This module owns the exclusive lock that a thread holds while it "owns"
 * a struct buf.  It differs from a pthread mutex in the one way the buffer
 * cache depends on: ownership can be handed to "the kernel" with
 * BUF_KERNPROC() before an asynchronous I/O is issued, and then any thread
 * (the blockdev completion thread running biodone()) may release it.
 *
 * Contract (same as the kernel's BUF_* macros):
 *   BUF_LOCK(bp, LK_EXCLUSIVE)               sleep until acquired ("bufwait")
 *   BUF_LOCK(bp, LK_EXCLUSIVE | LK_NOWAIT)   EBUSY instead of sleeping
 *   BUF_TIMELOCK(bp, flags, wmesg, timo)     EWOULDBLOCK after TIMO ticks;
 *        with LK_SLEEPFAIL: ENOLCK if it had to sleep at all, so the caller
 *        re-validates what it was looking up (getblk's recycle race).
 *   BUF_UNLOCK(bp)                           by the owner, or by anyone once
 *                                            BUF_KERNPROC() was called
 *   BUF_KERNPROC(bp)                         give ownership away
 *   BUF_LOCKINUSE(bp)                        true if locked (by anyone)
 *   BUF_REFCNT(bp)                           1 if locked, else 0 (the lock
 *                                            is never shared or recursive)
 *   BUF_LOCKINIT / BUF_LOCKFREE              set up / tear down
 *
 * The lock word is an atomic int; waiters sleep on the lock's address in
 * kern_synch with the caller's wait-channel name.  The owner is recorded
 * only to catch misuse under INVARIANTS.
 */
#ifndef FLYFS_CACHE_BUF_LOCK_H
#define FLYFS_CACHE_BUF_LOCK_H

#include <stdint.h>

#define LK_EXCLUSIVE	0x0002
#define LK_NOWAIT	0x0010		/* do not sleep: EBUSY */
#define LK_SLEEPFAIL	0x0020		/* ENOLCK if we slept */
#define LK_PCATCH	0x0040		/* accepted, no effect */
#define LK_RETRY	0x0080		/* accepted: blocking lock retries anyway */
#define LK_TIMELOCK	0x0100		/* use the timeout */

#define LK_KERNTHREAD	((void *)(uintptr_t)-2)	/* owner after BUF_KERNPROC */

struct buflock {
	int		bl_state;	/* (a) BL_LOCKED | BL_WAITERS */
	void		*bl_owner;	/* (b) pthread_self() or LK_KERNTHREAD */
};

struct buf;

void	buf_lockinit(struct buflock *bl);
int	buf_lock(struct buflock *bl, int flags, const char *wmesg, int timo);
void	buf_unlock(struct buflock *bl);
void	buf_kernproc(struct buflock *bl);
int	buf_lockinuse(const struct buflock *bl);
int	buf_lock_owned_by_me(const struct buflock *bl);
#ifdef INVARIANTS
/* Tests only: called by a waiter between reading the state and sleeping. */
extern void (*buf_lock_test_hook)(struct buflock *bl);
#endif

#define BUF_WMESG	"bufwait"

#define BUF_LOCKINIT(bp)	buf_lockinit(&(bp)->b_lock)
#define BUF_LOCKFREE(bp)	KKASSERT(!buf_lockinuse(&(bp)->b_lock))
#define BUF_LOCK(bp, flags)	buf_lock(&(bp)->b_lock, (flags), BUF_WMESG, 0)
#define BUF_TIMELOCK(bp, flags, wmesg, timo)				\
	buf_lock(&(bp)->b_lock, (flags) | LK_TIMELOCK, (wmesg), (timo))
#define BUF_UNLOCK(bp)		buf_unlock(&(bp)->b_lock)
#define BUF_KERNPROC(bp)	buf_kernproc(&(bp)->b_lock)
#define BUF_LOCKINUSE(bp)	buf_lockinuse(&(bp)->b_lock)
#define BUF_REFCNT(bp)		buf_lockinuse(&(bp)->b_lock)

#endif /* FLYFS_CACHE_BUF_LOCK_H */
