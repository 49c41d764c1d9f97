/*
 * kern_synch.c - sleep queues keyed by address (tsleep / wakeup /
 * tsleep_interlock), the system-thread flag, spinlocks, panic.
 *
 * This module owns the sleep-queue hash.  Each thread that ever sleeps gets
 * one struct slpthread (allocated on first use, freed when the thread exits)
 * holding its condition variable and the ident it is queued on.  A thread
 * is "queued" from tsleep_interlock() (or the start of tsleep()) until a
 * wakeup removes it, its timeout fires, or it queues itself elsewhere.
 *
 * Locking: a bucket mutex protects the bucket's list and the st_ident /
 * st_bucket / st_wmesg fields of every thread queued on it.  st_bucket goes
 * from NULL to a bucket only by the owning thread, and back to NULL only
 * under that bucket's mutex, so the owner may read it without a lock, then
 * lock the bucket and re-check.  No other lock is ever taken while a bucket
 * mutex is held.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "cache/kern_synch.h"

#define SLPQUE_BUCKETS	1024		/* power of two */

struct slpque_bucket;

struct slpthread {
	TAILQ_ENTRY(slpthread) st_link;	/* (bucket) */
	const volatile void *st_ident;	/* (bucket) queued on, or NULL */
	struct slpque_bucket *st_bucket; /* (bucket, see above) */
	const char	*st_wmesg;	/* (bucket) while sleeping */
	pthread_cond_t	st_cv;
	pthread_t	st_tid;
};

struct slpque_bucket {
	pthread_mutex_t	sb_mtx;
	TAILQ_HEAD(, slpthread) sb_list;
} __attribute__((aligned(64)));

static struct slpque_bucket slpque[SLPQUE_BUCKETS];
static pthread_once_t slpque_once = PTHREAD_ONCE_INIT;
static pthread_key_t slpque_key;
static __thread struct slpthread *curslp;
static __thread bool cursys;

static void slpthread_exit(void *arg);

static void
slpque_init(void)
{
	int i;

	for (i = 0; i < SLPQUE_BUCKETS; i++) {
		pthread_mutex_init(&slpque[i].sb_mtx, NULL);
		TAILQ_INIT(&slpque[i].sb_list);
	}
	if (pthread_key_create(&slpque_key, slpthread_exit) != 0)
		panic("kern_synch: pthread_key_create failed");
}

static struct slpque_bucket *
ident_bucket(const volatile void *ident)
{
	uintptr_t h = (uintptr_t)ident;

	/* Idents are often adjacent fields; mix the low bits well. */
	h ^= h >> 17;
	h *= 0x9E3779B97F4A7C15ULL;
	return &slpque[(h >> 40) & (SLPQUE_BUCKETS - 1)];
}

static struct slpthread *
slpthread_self(void)
{
	struct slpthread *td = curslp;
	pthread_condattr_t attr;

	if (td != NULL)
		return td;
	pthread_once(&slpque_once, slpque_init);
	td = calloc(1, sizeof(*td));
	if (td == NULL)
		panic("kern_synch: out of memory");
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&td->st_cv, &attr);
	pthread_condattr_destroy(&attr);
	td->st_tid = pthread_self();
	curslp = td;
	pthread_setspecific(slpque_key, td);
	return td;
}

/* Remove TD from whatever bucket it is queued on (owner only). */
static void
slpthread_dequeue(struct slpthread *td)
{
	struct slpque_bucket *b;

	b = __atomic_load_n(&td->st_bucket, __ATOMIC_ACQUIRE);
	if (b == NULL)
		return;
	pthread_mutex_lock(&b->sb_mtx);
	if (td->st_bucket == b) {
		TAILQ_REMOVE(&b->sb_list, td, st_link);
		td->st_ident = NULL;
		__atomic_store_n(&td->st_bucket, NULL, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&b->sb_mtx);
}

/* Queue TD on IDENT; B is IDENT's bucket and is locked. */
static void
slpthread_enqueue_locked(struct slpthread *td, struct slpque_bucket *b,
    const volatile void *ident)
{
	td->st_ident = ident;
	td->st_wmesg = NULL;
	TAILQ_INSERT_TAIL(&b->sb_list, td, st_link);
	__atomic_store_n(&td->st_bucket, b, __ATOMIC_RELEASE);
}

static void
slpthread_exit(void *arg)
{
	struct slpthread *td = arg;

	slpthread_dequeue(td);
	pthread_cond_destroy(&td->st_cv);
	free(td);
	curslp = NULL;
}

void
tsleep_interlock(const volatile void *ident, int flags)
{
	struct slpthread *td = slpthread_self();
	struct slpque_bucket *b = ident_bucket(ident);

	(void)flags;
	slpthread_dequeue(td);
	pthread_mutex_lock(&b->sb_mtx);
	slpthread_enqueue_locked(td, b, ident);
	pthread_mutex_unlock(&b->sb_mtx);
}

int
tsleep(const volatile void *ident, int flags, const char *wmesg, int timo)
{
	struct slpthread *td = slpthread_self();
	struct slpque_bucket *b = ident_bucket(ident);
	struct timespec deadline;
	int error = 0;
	int rc;

	if ((flags & PINTERLOCKED) == 0)
		slpthread_dequeue(td);
	if (timo > 0) {
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += timo / 1000;
		deadline.tv_nsec += (long)(timo % 1000) * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
	}

	pthread_mutex_lock(&b->sb_mtx);
	if (flags & PINTERLOCKED) {
		/*
		 * Interlocked: if a wakeup already took us off the queue
		 * since tsleep_interlock(), it was meant for us.
		 */
		if (td->st_bucket != b || td->st_ident != ident) {
			pthread_mutex_unlock(&b->sb_mtx);
			return 0;
		}
	} else {
		slpthread_enqueue_locked(td, b, ident);
	}
	td->st_wmesg = wmesg;
	while (td->st_bucket == b) {
		if (timo > 0) {
			rc = pthread_cond_timedwait(&td->st_cv, &b->sb_mtx,
			    &deadline);
			if (rc == ETIMEDOUT && td->st_bucket == b) {
				TAILQ_REMOVE(&b->sb_list, td, st_link);
				td->st_ident = NULL;
				__atomic_store_n(&td->st_bucket, NULL,
				    __ATOMIC_RELEASE);
				error = EWOULDBLOCK;
			}
		} else {
			pthread_cond_wait(&td->st_cv, &b->sb_mtx);
		}
	}
	td->st_wmesg = NULL;
	pthread_mutex_unlock(&b->sb_mtx);
	return error;
}

static void
wakeup_common(const volatile void *ident, bool one)
{
	struct slpque_bucket *b;
	struct slpthread *td, *ntd;

	pthread_once(&slpque_once, slpque_init);
	b = ident_bucket(ident);
	pthread_mutex_lock(&b->sb_mtx);
	for (td = TAILQ_FIRST(&b->sb_list); td != NULL; td = ntd) {
		ntd = TAILQ_NEXT(td, st_link);
		if (td->st_ident != ident)
			continue;
		TAILQ_REMOVE(&b->sb_list, td, st_link);
		td->st_ident = NULL;
		/*
		 * Signal before publishing "not queued": a sleeper that is
		 * exiting reads st_bucket without the bucket lock and, on
		 * NULL, destroys st_cv and frees TD at once.
		 */
		pthread_cond_signal(&td->st_cv);
		__atomic_store_n(&td->st_bucket, NULL, __ATOMIC_RELEASE);
		if (one)
			break;
	}
	pthread_mutex_unlock(&b->sb_mtx);
}

void
wakeup(const volatile void *ident)
{
	wakeup_common(ident, false);
}

void
wakeup_one(const volatile void *ident)
{
	wakeup_common(ident, true);
}

int
tsleep_dump(FILE *fp)
{
	struct slpthread *td;
	int i, n = 0;

	pthread_once(&slpque_once, slpque_init);
	for (i = 0; i < SLPQUE_BUCKETS; i++) {
		pthread_mutex_lock(&slpque[i].sb_mtx);
		TAILQ_FOREACH(td, &slpque[i].sb_list, st_link) {
			if (td->st_wmesg == NULL)
				continue;
			fprintf(fp, "thread %#lx asleep on \"%s\" (%p)\n",
			    (unsigned long)td->st_tid, td->st_wmesg,
			    (const void *)td->st_ident);
			n++;
		}
		pthread_mutex_unlock(&slpque[i].sb_mtx);
	}
	return n;
}

void
curthread_set_systhread(bool on)
{
	cursys = on;
}

bool
curthread_is_systhread(void)
{
	return cursys;
}

void
spin_init(struct spinlock *spin, const char *name)
{
	pthread_mutexattr_t attr;

	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
	pthread_mutex_init(&spin->sl_mtx, &attr);
	pthread_mutexattr_destroy(&attr);
	spin->sl_name = name;
}

void
spin_uninit(struct spinlock *spin)
{
	pthread_mutex_destroy(&spin->sl_mtx);
}

void
spin_lock(struct spinlock *spin)
{
	pthread_mutex_lock(&spin->sl_mtx);
}

void
spin_unlock(struct spinlock *spin)
{
	pthread_mutex_unlock(&spin->sl_mtx);
}

int
spin_trylock(struct spinlock *spin)
{
	return pthread_mutex_trylock(&spin->sl_mtx) == 0;
}

void
panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "panic: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	fflush(stderr);
	abort();
}

void
kprintf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

long
ticks_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
