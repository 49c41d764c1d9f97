/*
 * buf_lock.c - the buffer lock: exclusive, non-recursive, and transferable
 * to "the kernel" (BUF_KERNPROC) so another thread may release it.
 *
 * This module owns struct buflock.  bl_state holds BL_LOCKED and
 * BL_WAITERS; a waiter, after tsleep_interlock() on the lock's address,
 * sets BL_WAITERS with a compare-and-swap against the state it last read,
 * so an unlock that clears the word and sees BL_WAITERS wakes every
 * sleeper and none can miss it.  Losers of the following race set
 * BL_WAITERS again.  bl_owner is informational (INVARIANTS checks).
 */
#include <errno.h>
#include <pthread.h>

#include "cache/buf_lock.h"
#include "cache/kern_synch.h"

#define BL_LOCKED	0x1
#define BL_WAITERS	0x2

#ifdef INVARIANTS
void (*buf_lock_test_hook)(struct buflock *bl);
#endif

static void *
self_id(void)
{
	return (void *)pthread_self();
}

void
buf_lockinit(struct buflock *bl)
{
	__atomic_store_n(&bl->bl_state, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&bl->bl_owner, NULL, __ATOMIC_RELAXED);
}

/*
 * Acquire BL.  Sleeps on the lock's address with WMESG unless LK_NOWAIT
 * (EBUSY).  With LK_TIMELOCK and TIMO > 0 gives up with EWOULDBLOCK; with
 * LK_SLEEPFAIL returns ENOLCK, not holding the lock, once it had to sleep.
 */
int
buf_lock(struct buflock *bl, int flags, const char *wmesg, int timo)
{
	int s, error;

	for (;;) {
		s = __atomic_load_n(&bl->bl_state, __ATOMIC_RELAXED);
		if ((s & BL_LOCKED) == 0) {
			if (__atomic_compare_exchange_n(&bl->bl_state, &s,
			    s | BL_LOCKED, false, __ATOMIC_ACQUIRE,
			    __ATOMIC_RELAXED)) {
				__atomic_store_n(&bl->bl_owner, self_id(),
				    __ATOMIC_RELAXED);
				return 0;
			}
			continue;
		}
		if (flags & LK_NOWAIT)
			return EBUSY;
#ifdef INVARIANTS
		if (buf_lock_test_hook != NULL)
			buf_lock_test_hook(bl);
#endif
		tsleep_interlock(bl, 0);
		/*
		 * S was read before the interlock: an unlock since then has
		 * already sent its wakeup, and this thread would sleep on a
		 * free lock for good.  Always compare-and-swap, even when S
		 * already has BL_WAITERS, so that the sleep is only taken on
		 * the state the interlock covers.
		 */
		if (!__atomic_compare_exchange_n(&bl->bl_state, &s,
		    s | BL_WAITERS, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
			continue;
		error = tsleep(bl, PINTERLOCKED, wmesg,
		    (flags & LK_TIMELOCK) ? timo : 0);
		if (error)
			return error;
		if (flags & LK_SLEEPFAIL)
			return ENOLCK;
	}
}

void
buf_unlock(struct buflock *bl)
{
	void *owner = __atomic_load_n(&bl->bl_owner, __ATOMIC_RELAXED);
	int s;

	KASSERT(owner == self_id() || owner == LK_KERNTHREAD,
	    ("buf_unlock: lock %p owned by %p, not by us", (void *)bl, owner));
	(void)owner;
	__atomic_store_n(&bl->bl_owner, NULL, __ATOMIC_RELAXED);
	s = __atomic_exchange_n(&bl->bl_state, 0, __ATOMIC_RELEASE);
	KKASSERT(s & BL_LOCKED);
	if (s & BL_WAITERS)
		wakeup(bl);
}

void
buf_kernproc(struct buflock *bl)
{
	KKASSERT(__atomic_load_n(&bl->bl_state, __ATOMIC_RELAXED) & BL_LOCKED);
	__atomic_store_n(&bl->bl_owner, LK_KERNTHREAD, __ATOMIC_RELAXED);
}

int
buf_lockinuse(const struct buflock *bl)
{
	return (__atomic_load_n(&bl->bl_state, __ATOMIC_RELAXED) &
	    BL_LOCKED) != 0;
}

int
buf_lock_owned_by_me(const struct buflock *bl)
{
	return buf_lockinuse(bl) &&
	    __atomic_load_n(&bl->bl_owner, __ATOMIC_RELAXED) == self_id();
}
