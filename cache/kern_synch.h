/*
 * kern_synch.h - sleep queues keyed by address, and spinlocks.
 *
 * This module owns the userspace stand-ins for the kernel's tsleep(),
 * wakeup() and tsleep_interlock(), plus the "spinlock" used by the buffer
 * queues.  Everything in cache/ that waits does so through here, with a
 * named wait channel (wmesg), so that a stuck thread can be listed with
 * tsleep_dump() and the name says what it is waiting for ("wdrn1", "flstik",
 * "bufspc", "biord", "getblk" ...), as in the kernel.
 *
 * Semantics kept from the kernel:
 *   - A wait channel is any address (the ident).  wakeup(ident) wakes every
 *     thread asleep on it; wakeup_one() wakes one.  Wakeups are not counted:
 *     a wakeup with no sleeper is lost.
 *   - tsleep_interlock(ident, flags) queues the calling thread on IDENT
 *     without sleeping.  A wakeup(ident) that happens between it and the
 *     following tsleep(ident, PINTERLOCKED, ...) is not lost: that tsleep
 *     returns at once.  This is what lets a caller test a condition after
 *     announcing itself (the needsbuffer / runningbufreq / bd_wake_ary
 *     idiom) without holding a lock across the sleep.
 *   - A thread that called tsleep_interlock() and then decided not to sleep
 *     simply stays queued until the next wakeup, tsleep_interlock() or
 *     tsleep(); this costs at most one wasted wakeup_one(), as in the kernel.
 *   - Timeouts are in ticks; one tick is one millisecond (hz == 1000).
 *     tsleep() returns 0 when woken and EWOULDBLOCK on timeout.
 *   - PCATCH has no meaning here (no signals are delivered to sleepers); it
 *     is accepted and ignored.
 *
 * Implementation: a fixed hash table of buckets, each a mutex and a list of
 * sleeping threads; each thread owns one condition variable and sleeps on
 * it, so a wakeup only disturbs the threads of its ident.
 */
#ifndef FLYFS_CACHE_KERN_SYNCH_H
#define FLYFS_CACHE_KERN_SYNCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#define hz		1000		/* ticks per second: a tick is 1 ms */

#define PCATCH		0x0100		/* accepted, no effect (no signals) */
#define PINTERLOCKED	0x0400		/* tsleep_interlock() was called */

/*
 * Sleep until wakeup(IDENT), or TIMO ticks (0 = forever).  WMESG names the
 * wait channel and must be a string constant (at most 15 characters are
 * kept).  Returns 0 or EWOULDBLOCK.
 */
int	tsleep(const volatile void *ident, int flags, const char *wmesg,
	    int timo);
void	tsleep_interlock(const volatile void *ident, int flags);
void	wakeup(const volatile void *ident);
void	wakeup_one(const volatile void *ident);

/*
 * Debug aid: print every sleeping thread with its wait channel name and
 * ident to FP.  Returns the number of sleepers.
 */
int	tsleep_dump(FILE *fp);

/*
 * "System threads" (buf_daemon, buf_daemon_hw, the blockdev completion
 * thread when it calls into the cache) may dip into the reserve between
 * hibufspace and maxbufspace and are never throttled by the limits they
 * drain (bd_wait, waitrunningbufspace).  The flag is per thread.
 */
void	curthread_set_systhread(bool on);
bool	curthread_is_systhread(void);

/*
 * Spinlocks.  The buffer queues and the sleep buckets are protected by
 * short critical sections; in userspace a thread can be preempted while
 * holding one, so a true spinning lock would burn the other CPUs' time.
 * struct spinlock is therefore an adaptive mutex (spins briefly, then
 * sleeps).  The name says how it is used: never held across a sleep, a
 * blocking lock or I/O.
 */
struct spinlock {
	pthread_mutex_t	sl_mtx;
	const char	*sl_name;
};

void	spin_init(struct spinlock *spin, const char *name);
void	spin_uninit(struct spinlock *spin);
void	spin_lock(struct spinlock *spin);
void	spin_unlock(struct spinlock *spin);
int	spin_trylock(struct spinlock *spin);	/* 1 if acquired */

/* panic() logs and aborts; KKASSERT is always on, KASSERT with INVARIANTS. */
void	panic(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void	kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define KKASSERT(exp) do {						\
	if (__builtin_expect(!(exp), 0))				\
		panic("assertion \"%s\" failed in %s at %s:%d",	\
		    #exp, __func__, __FILE__, __LINE__);		\
} while (0)

#ifdef INVARIANTS
#define KASSERT(exp, msg) do {						\
	if (__builtin_expect(!(exp), 0))				\
		panic msg;						\
} while (0)
#else
#define KASSERT(exp, msg) do { } while (0)
#endif

/* Current time in ticks (ms), monotonic. */
long	ticks_now(void);

#endif /* FLYFS_CACHE_KERN_SYNCH_H */
